//! Two-factor sign-in pages: setting it up (a QR code drawn on the server as
//! SVG, no script needed), the code step of sign-in, turning it off, and
//! "confirm it's you" before sensitive changes (sharing, two-factor).

use axum::extract::{OriginalUri, Query, Request, State};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use keyhold_domain::two_factor::{SecondFactorError, CODE_ATTEMPTS};
use keyhold_domain::{DomainError, FieldError, SessionToken};
use serde::Deserialize;
use tera::Context;

use super::auth::{safe_next, signed_in};
use crate::error::WebError;
use crate::extract::{csrf_field, CsrfOnly, Submitted, Viewer};
use crate::pages::{insert_errors, query_value, render, render_form, see_other};
use crate::{cookies, AppState};

/// Holds a sign-in whose password was right until its code comes.
pub const PENDING_COOKIE: &str = "keyhold_pending";

fn set_pending(resp: &mut Response, state: &AppState, value: Option<&str>) {
    let name = cookies::name(PENDING_COOKIE, state.config.secure_cookies);
    let cookie = match value {
        Some(v) => cookies::set(&name, v, state.config.secure_cookies, "Strict", Some(600)),
        None => cookies::clear(&name, state.config.secure_cookies),
    };
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().append(SET_COOKIE, v);
    }
}

/// After a right password for an account with two-factor on.
pub fn ask_for_code(
    state: &AppState,
    pending: &str,
    next: &str,
    keep: bool,
) -> Result<Response, WebError> {
    let mut to = format!(
        "/signin/code?next={}",
        query_value(safe_next(next).unwrap_or("/"))
    );
    if keep {
        to.push_str("&keep=yes");
    }
    let mut resp = see_other(&to)?;
    set_pending(&mut resp, state, Some(pending));
    Ok(resp)
}

#[derive(Deserialize, Default)]
pub struct CodeQuery {
    #[serde(default)]
    next: String,
    #[serde(default)]
    keep: String,
}

fn code_form(
    state: &AppState,
    viewer: &Viewer,
    next: &str,
    keep: bool,
    errors: &[FieldError],
) -> Result<Response, WebError> {
    let mut ctx = Context::new();
    ctx.insert("next", safe_next(next).unwrap_or("/"));
    ctx.insert("keep", &keep);
    render_form(
        state,
        viewer,
        "signin_code.html",
        "Enter your security code",
        ctx,
        errors,
    )
}

pub async fn code_page(
    State(state): State<AppState>,
    Query(q): Query<CodeQuery>,
    viewer: Viewer,
) -> Result<Response, WebError> {
    code_form(&state, &viewer, &q.next, q.keep == "yes", &[])
}

csrf_field!(CodeForm);

#[derive(Deserialize)]
pub struct CodeForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    next: String,
    #[serde(default)]
    keep: String,
}

pub async fn code(
    State(state): State<AppState>,
    headers: HeaderMap,
    s: Submitted<CodeForm>,
) -> Result<Response, WebError> {
    let Submitted { viewer, form } = s;
    let keep = form.keep == "yes";
    let name = cookies::name(PENDING_COOKIE, state.config.secure_cookies);
    let pending = cookies::get(&headers, &name).unwrap_or_default();
    match state
        .core
        .complete_second_factor(&pending, &form.code)
        .await
    {
        Ok((signed, _)) => {
            let mut resp = signed_in(&state, &viewer, signed, &form.next, keep).await;
            set_pending(&mut resp, &state, None);
            Ok(resp)
        }
        Err(SecondFactorError::Wrong { pending, left }) => {
            let mut resp = code_form(
                &state,
                &viewer,
                &form.next,
                keep,
                &[FieldError::new(
                    "code",
                    format!(
                        "That code is not right. You can try {left} more time{}",
                        if left == 1 { "" } else { "s" }
                    ),
                )],
            )?;
            set_pending(&mut resp, &state, Some(&pending));
            Ok(resp)
        }
        Err(SecondFactorError::TooManyWrong | SecondFactorError::Expired) => {
            let mut ctx = Context::new();
            ctx.insert("attempts", &CODE_ATTEMPTS);
            let mut resp = render(
                &state,
                &viewer,
                StatusCode::BAD_REQUEST,
                "signin_code_over.html",
                "Sign in again",
                ctx,
            )?;
            set_pending(&mut resp, &state, None);
            Ok(resp)
        }
        Err(SecondFactorError::Domain(e)) => Err(e.into()),
    }
}

// --- setting it up and turning it off --------------------------------------

/// An SVG QR code of `text`, as a data URI for an `<img>` (the CSP allows
/// `data:` images; nothing inline runs).
fn qr_data_uri(text: &str) -> Result<String, WebError> {
    let code =
        qrcode::QrCode::new(text.as_bytes()).map_err(|e| WebError::Internal(format!("qr: {e}")))?;
    let svg = code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .build();
    Ok(format!(
        "data:image/svg+xml;base64,{}",
        STANDARD.encode(svg)
    ))
}

pub async fn show(State(state): State<AppState>, viewer: Viewer) -> Result<Response, WebError> {
    let Some(p) = &viewer.principal else {
        return Err(WebError::Unauthenticated);
    };
    let status = state.core.two_factor_status(p.account)?;
    let mut ctx = Context::new();
    ctx.insert("status", &status);
    if !status.enabled {
        match state.core.begin_two_factor(p).await {
            Ok(e) => {
                ctx.insert("qr", &qr_data_uri(&e.otpauth_url)?);
                ctx.insert("secret", &e.secret_base32);
            }
            Err(DomainError::Invalid(errors)) => {
                ctx.insert("unavailable", &errors.first().map(|e| e.message.clone()));
            }
            Err(e) => return Err(e.into()),
        }
    }
    render(
        &state,
        &viewer,
        StatusCode::OK,
        "two_factor.html",
        "Two-factor sign-in",
        ctx,
    )
}

csrf_field!(EnableForm);

#[derive(Deserialize)]
pub struct EnableForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    code: String,
}

pub async fn enable(
    State(state): State<AppState>,
    s: Submitted<EnableForm>,
) -> Result<Response, WebError> {
    let Submitted { viewer, form } = s;
    let Some(p) = viewer.principal.clone() else {
        return Err(WebError::Unauthenticated);
    };
    match state.core.enable_two_factor(&p, &form.code).await {
        Ok(codes) => {
            let mut ctx = Context::new();
            ctx.insert("codes", &codes);
            render(
                &state,
                &viewer,
                StatusCode::OK,
                "two_factor_codes.html",
                "Two-factor sign-in is on",
                ctx,
            )
        }
        Err(DomainError::Invalid(errors)) => {
            let e = state.core.begin_two_factor(&p).await?;
            let mut ctx = Context::new();
            ctx.insert("status", &state.core.two_factor_status(p.account)?);
            ctx.insert("qr", &qr_data_uri(&e.otpauth_url)?);
            ctx.insert("secret", &e.secret_base32);
            insert_errors(&mut ctx, &errors);
            render(
                &state,
                &viewer,
                StatusCode::UNPROCESSABLE_ENTITY,
                "two_factor.html",
                "Two-factor sign-in",
                ctx,
            )
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn disable(
    State(state): State<AppState>,
    s: Submitted<CsrfOnly>,
) -> Result<Response, WebError> {
    let Some(p) = &s.viewer.principal else {
        return Err(WebError::Unauthenticated);
    };
    state.core.disable_two_factor(p).await?;
    see_other("/account")
}

// --- confirm it's you ------------------------------------------------------

/// In front of sensitive pages: a session whose holder has not given their
/// password or a code for a while is asked to, then sent back. A form posted
/// after that while goes back to the page it came from (the path up to the
/// feature's root, e.g. `…/sharing`).
pub async fn require_recent_confirmation(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let name = cookies::name(crate::csrf::SESSION_COOKIE, state.config.secure_cookies);
    let fresh = match cookies::get(req.headers(), &name) {
        Some(raw) => state
            .core
            .recently_confirmed(&SessionToken::from_cookie(&raw))
            .unwrap_or(false),
        // Not signed in: the page itself sends them to sign in.
        None => true,
    };
    if fresh {
        return next.run(req).await;
    }
    // Under a nested router the URI is cut to the inner path; send them back
    // to the whole one.
    let uri = req
        .extensions()
        .get::<OriginalUri>()
        .map(|o| o.0.clone())
        .unwrap_or_else(|| req.uri().clone());
    let path = uri.path().to_string();
    let back = if req.method() == Method::GET {
        match uri.query() {
            Some(q) => format!("{path}?{q}"),
            None => path,
        }
    } else {
        match path.find("/sharing") {
            Some(i) => path[..i + "/sharing".len()].to_string(),
            None => "/account/two-factor".to_string(),
        }
    };
    see_other(&format!(
        "/account/confirm-it-is-you?next={}",
        query_value(&back)
    ))
    .unwrap_or_else(|e| e.into_response())
}

#[derive(Deserialize, Default)]
pub struct NextQuery {
    #[serde(default)]
    next: String,
}

fn confirm_form(
    state: &AppState,
    viewer: &Viewer,
    next: &str,
    errors: &[FieldError],
) -> Result<Response, WebError> {
    let Some(p) = &viewer.principal else {
        return Err(WebError::Unauthenticated);
    };
    let next = safe_next(next).unwrap_or("/account");
    let mut ctx = Context::new();
    ctx.insert("next", next);
    ctx.insert("next_query", &query_value(next));
    ctx.insert(
        "with_code",
        &state.core.two_factor_status(p.account)?.enabled,
    );
    ctx.insert(
        "nhs_login_only",
        &!state.core.identity_status(p.account)?.has_password,
    );
    render_form(
        state,
        viewer,
        "confirm_it_is_you.html",
        "Confirm it is you",
        ctx,
        errors,
    )
}

pub async fn confirm_page(
    State(state): State<AppState>,
    Query(q): Query<NextQuery>,
    viewer: Viewer,
) -> Result<Response, WebError> {
    confirm_form(&state, &viewer, &q.next, &[])
}

csrf_field!(ConfirmForm);

#[derive(Deserialize)]
pub struct ConfirmForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    answer: String,
    #[serde(default)]
    next: String,
}

pub async fn confirm(
    State(state): State<AppState>,
    s: Submitted<ConfirmForm>,
) -> Result<Response, WebError> {
    let Submitted { viewer, form } = s;
    let (Some(p), Some(raw)) = (viewer.principal.clone(), viewer.session.clone()) else {
        return Err(WebError::Unauthenticated);
    };
    match state
        .core
        .confirm_it_is_you(&p, &SessionToken::from_cookie(&raw), &form.answer)
        .await
    {
        Ok(()) => see_other(safe_next(&form.next).unwrap_or("/account")),
        Err(DomainError::Invalid(errors)) => confirm_form(&state, &viewer, &form.next, &errors),
        Err(e) => Err(e.into()),
    }
}
