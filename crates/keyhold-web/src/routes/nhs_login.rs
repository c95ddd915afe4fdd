//! Sign-in with NHS login (OpenID Connect, see `keyhold-oidc`): the start, the
//! callback, and a page for each way it can fail.
//!
//! The start holds the relying party's state, nonce and PKCE verifier in the
//! store under a random cookie (SameSite=Lax, so the provider's redirect back
//! carries it); the callback takes it once. What the verified identity may
//! see is the domain's decision (`identity`).

use axum::extract::{Query, State};
use axum::http::header::{LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use keyhold_domain::{DomainError, Email, IdentityLevel, NhsNumber, VerifiedIdentity};
use keyhold_oidc::{NhsIdentity, OidcError, PendingLogin, ProofingLevel};
use serde::Deserialize;
use tera::Context;

use super::auth::{safe_next, signed_in};
use crate::error::WebError;
use crate::extract::Viewer;
use crate::pages::render;
use crate::{cookies, AppState};

const FLOW_COOKIE: &str = "keyhold_nhs_login";

#[derive(Deserialize, Default)]
pub struct StartQuery {
    #[serde(default)]
    next: String,
    /// `1`: link NHS login to the account signed in now.
    #[serde(default)]
    link: String,
}

/// Sends the browser to NHS login.
pub async fn start(
    State(state): State<AppState>,
    Query(q): Query<StartQuery>,
    viewer: Viewer,
) -> Result<Response, WebError> {
    let Some(rp) = state.config.nhs_login.clone() else {
        return Err(WebError::NotFound);
    };
    let link = if q.link == "1" {
        match &viewer.principal {
            Some(p) => Some(p.account),
            None => return Err(WebError::Unauthenticated),
        }
    } else {
        None
    };
    let (url, pending) = match rp.begin().await {
        Ok(x) => x,
        Err(e) => return failure(&state, &viewer, &e, link.is_some()),
    };
    let payload = serde_json::to_vec(&pending).map_err(|e| WebError::Internal(e.to_string()))?;
    let next = safe_next(&q.next).unwrap_or(if link.is_some() { "/account" } else { "/" });
    let flow = state.core.hold_login_flow(payload, next, link).await?;
    let name = cookies::name(FLOW_COOKIE, state.config.secure_cookies);
    // Lax: the provider's redirect back is a top-level GET from another site.
    let cookie = cookies::set(&name, &flow, state.config.secure_cookies, "Lax", Some(600));
    let mut resp = (
        StatusCode::SEE_OTHER,
        [(
            LOCATION,
            HeaderValue::from_str(url.as_str()).map_err(|e| WebError::Internal(e.to_string()))?,
        )],
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().append(SET_COOKIE, v);
    }
    Ok(resp)
}

#[derive(Deserialize, Default)]
pub struct CallbackQuery {
    #[serde(default)]
    code: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
    /// The provider names itself on the way back (RFC 9207): a reply naming
    /// another issuer is not ours to use (mix-up defence).
    #[serde(default)]
    iss: String,
}

/// Where NHS login sends the browser back. Whatever the outcome, the flow
/// cookie is cleared: its flow has been taken.
pub async fn callback(
    State(state): State<AppState>,
    Query(q): Query<CallbackQuery>,
    headers: HeaderMap,
    viewer: Viewer,
) -> Result<Response, WebError> {
    let mut resp = finish(&state, &q, &headers, &viewer).await?;
    let name = cookies::name(FLOW_COOKIE, state.config.secure_cookies);
    if let Ok(v) = HeaderValue::from_str(&cookies::clear(&name, state.config.secure_cookies)) {
        resp.headers_mut().append(SET_COOKIE, v);
    }
    Ok(resp)
}

async fn finish(
    state: &AppState,
    q: &CallbackQuery,
    headers: &HeaderMap,
    viewer: &Viewer,
) -> Result<Response, WebError> {
    let Some(rp) = state.config.nhs_login.clone() else {
        return Err(WebError::NotFound);
    };
    let name = cookies::name(FLOW_COOKIE, state.config.secure_cookies);
    let flow = match cookies::get(headers, &name) {
        Some(c) => state.core.take_login_flow(&c).await?,
        None => None,
    };
    let Some(flow) = flow else {
        return page(
            state,
            viewer,
            StatusCode::BAD_REQUEST,
            "expired",
            "This sign-in has already been used, has expired, or was started in another browser.",
            false,
        );
    };
    let linking = flow.link.is_some();
    if !q.error.is_empty() {
        let e = OidcError::Provider(if q.error_description.is_empty() {
            q.error.clone()
        } else {
            format!("{}: {}", q.error, q.error_description)
        });
        return failure(state, viewer, &e, linking);
    }
    if !q.iss.is_empty()
        && q.iss.trim_end_matches('/') != rp.config().issuer.as_str().trim_end_matches('/')
    {
        return failure(
            state,
            viewer,
            &OidcError::Token(format!("the reply names another issuer ({})", q.iss)),
            linking,
        );
    }
    if q.code.is_empty() || q.state.is_empty() {
        return failure(state, viewer, &OidcError::StateMismatch, linking);
    }
    let pending: PendingLogin = serde_json::from_slice(&flow.payload)
        .map_err(|e| WebError::Internal(format!("held sign-in: {e}")))?;
    let now = state.core.now().unix_timestamp();
    let identity = match rp.finish(pending, &q.state, &q.code, now).await {
        Ok(i) => i,
        Err(e) => return failure(state, viewer, &e, linking),
    };
    let verified = match to_domain(&identity) {
        Ok(v) => v,
        Err(why) => return failure(state, viewer, &OidcError::Token(why), linking),
    };
    match state.core.nhs_login(&verified, flow.link).await {
        Ok(signed) => {
            tracing::info!(level = %verified.level, linked = flow.link.is_some(), "signed in with NHS login");
            Ok(signed_in(state, viewer, signed, &flow.next, false).await)
        }
        Err(DomainError::Invalid(errors)) => {
            // Field messages have no full stop; on this page they are a sentence.
            let message = errors
                .first()
                .map(|e| format!("{}.", e.message.trim_end_matches('.')))
                .unwrap_or_else(|| "NHS login's answer could not be used.".into());
            page(
                state,
                viewer,
                StatusCode::CONFLICT,
                "account",
                &message,
                linking,
            )
        }
        Err(e) => Err(e.into()),
    }
}

/// NHS login's claims as the domain's types; a claim that does not parse is
/// a refusal, not a guess.
fn to_domain(i: &NhsIdentity) -> Result<VerifiedIdentity, String> {
    let nhs_number = match &i.nhs_number {
        Some(n) => Some(NhsNumber::parse(n).map_err(|e| format!("nhs_number: {e}"))?),
        None => None,
    };
    let birthdate = match &i.birthdate {
        Some(b) => Some(
            time::Date::parse(b, time::macros::format_description!("[year]-[month]-[day]"))
                .map_err(|e| format!("birthdate {b:?}: {e}"))?,
        ),
        None => None,
    };
    let email = match &i.email {
        Some(e) => Some(Email::parse(e).map_err(|e| format!("email: {e}"))?),
        None => None,
    };
    Ok(VerifiedIdentity {
        subject: i.subject.clone(),
        level: match i.level {
            ProofingLevel::P0 => IdentityLevel::P0,
            ProofingLevel::P5 => IdentityLevel::P5,
            ProofingLevel::P9 => IdentityLevel::P9,
        },
        vot: i.vot.clone(),
        nhs_number,
        given_name: i.given_name.clone().unwrap_or_default(),
        family_name: i.family_name.clone().unwrap_or_default(),
        birthdate,
        email,
        phone: i.phone_number.clone(),
    })
}

/// The page for a sign-in that did not complete: what happened, in words,
/// and a reason code the tests (and support staff) can read.
fn failure(
    state: &AppState,
    viewer: &Viewer,
    e: &OidcError,
    linking: bool,
) -> Result<Response, WebError> {
    let (status, reason, message) = match e {
        OidcError::Config(_) | OidcError::Internal(_) => {
            tracing::error!(error = %e, "NHS login is misconfigured");
            (StatusCode::INTERNAL_SERVER_ERROR, "config", "Sign-in with NHS login is not working here at the moment. Try again later, or sign in with your email address.".to_string())
        }
        OidcError::Unavailable(_) => {
            tracing::warn!(error = %e, "NHS login unavailable");
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable", "NHS login could not be reached. Try again in a few minutes.".to_string())
        }
        OidcError::StateMismatch => (StatusCode::BAD_REQUEST, "state", "The reply from NHS login did not match the sign-in started in this browser, so it was not used.".to_string()),
        OidcError::Provider(_) => (StatusCode::BAD_REQUEST, "provider", "NHS login did not complete the sign-in. You may have cancelled it.".to_string()),
        OidcError::CodeRefused(_) => (StatusCode::BAD_REQUEST, "code", "NHS login did not accept this sign-in. It may have been used already or taken too long.".to_string()),
        OidcError::Nonce => (StatusCode::BAD_REQUEST, "nonce", "NHS login's answer belongs to a different sign-in, so it was not used.".to_string()),
        OidcError::Signature => (StatusCode::BAD_REQUEST, "signature", "NHS login's answer was not signed by NHS login, so it was not used.".to_string()),
        OidcError::Expired => (StatusCode::BAD_REQUEST, "expired-token", "NHS login's answer had expired, so it was not used.".to_string()),
        OidcError::Token(_) => (StatusCode::BAD_REQUEST, "token", "NHS login's answer was not valid, so it was not used.".to_string()),
        OidcError::WeakerThanRequested { got, .. } => (
            StatusCode::FORBIDDEN,
            "level",
            format!("NHS login confirmed your identity to level {}, and this service needs a higher level. Prove who you are in NHS login, then try again.", got.split('.').next().unwrap_or(got)),
        ),
    };
    if !matches!(
        e,
        OidcError::Config(_) | OidcError::Internal(_) | OidcError::Unavailable(_)
    ) {
        tracing::warn!(reason, error = %e, "NHS login sign-in refused");
    }
    page(state, viewer, status, reason, &message, linking)
}

/// `linking`: the attempt was to link NHS login to the account signed in,
/// which stays signed in; the page says the link failed, not the sign-in.
fn page(
    state: &AppState,
    viewer: &Viewer,
    status: StatusCode,
    reason: &str,
    message: &str,
    linking: bool,
) -> Result<Response, WebError> {
    let mut ctx = Context::new();
    ctx.insert("reason", reason);
    ctx.insert("message", message);
    ctx.insert("linking", &linking);
    let title = if linking {
        "NHS login was not linked"
    } else {
        "You have not been signed in"
    };
    render(state, viewer, status, "nhs_login_failed.html", title, ctx)
}
