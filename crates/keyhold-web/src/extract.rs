//! Extractors: who is asking (`Viewer`), who must be signed in (`SignedIn`),
//! whose record a path names (`Subject`), and
//! forms that are only accepted with a valid CSRF token (`Submitted`).

use std::collections::HashMap;

use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use axum::Form;
use keyhold_domain::policy::Principal;
use keyhold_domain::{PatientId, SessionToken};
use serde::de::DeserializeOwned;

use crate::csrf::{self, CsrfSecret, SESSION_COOKIE};
use crate::error::WebError;
use crate::{cookies, AppState};

/// Whoever is making the request, signed in or not.
pub struct Viewer {
    pub principal: Option<Principal>,
    /// The raw session cookie, when it names a live session.
    pub session: Option<String>,
    pub secret: CsrfSecret,
    pub account_email: Option<String>,
}

impl Viewer {
    pub async fn resolve(state: &AppState, headers: &HeaderMap, secret: CsrfSecret) -> Viewer {
        let mut viewer = Viewer {
            principal: None,
            session: None,
            secret,
            account_email: None,
        };
        if let Some((p, raw)) = Self::session_principal(state, headers).await {
            // For the page header; opening it costs an AES-GCM open, so
            // callers that show no page (the FHIR API) use `session_principal`.
            viewer.account_email = state
                .core
                .account_email(p.account)
                .ok()
                .map(|e| e.to_string());
            viewer.principal = Some(p);
            viewer.session = Some(raw);
        }
        viewer
    }

    /// The principal behind the request's session cookie, and the cookie.
    pub async fn session_principal(
        state: &AppState,
        headers: &HeaderMap,
    ) -> Option<(Principal, String)> {
        let name = cookies::name(SESSION_COOKIE, state.config.secure_cookies);
        let raw = cookies::get(headers, &name).filter(|v| cookies::is_token(v))?;
        match state.core.session(&SessionToken::from_cookie(&raw)).await {
            Ok(Some(p)) => Some((p, raw)),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "session lookup failed");
                None
            }
        }
    }

    pub fn csrf_token(&self, state: &AppState) -> String {
        csrf::token(state, &self.secret, self.session.as_deref())
    }

    pub fn check_csrf(&self, state: &AppState, submitted: &str) -> Result<(), WebError> {
        if csrf::verify(state, &self.secret, self.session.as_deref(), submitted) {
            Ok(())
        } else {
            Err(WebError::Csrf)
        }
    }
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = WebError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let secret = parts
            .extensions
            .get::<CsrfSecret>()
            .cloned()
            .ok_or_else(|| WebError::Internal("csrf middleware missing".into()))?;
        Ok(Viewer::resolve(state, &parts.headers, secret).await)
    }
}

/// A signed-in person and the record they are looking at: their own under
/// `/record`, or someone else's under `/people/{patient}/record` (a carer
/// acting for them, a professional, emergency access). Whether they may is
/// the domain's decision, made on every call; this only says which record.
pub struct Subject {
    pub viewer: Viewer,
    pub principal: Principal,
    pub patient: PatientId,
    /// Where this record's pages live, for links and redirects.
    pub base: String,
}

impl Subject {
    /// A path inside this record, e.g. `subject.at("/entries/new")`.
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// The named path parameters of the route, whatever their number.
pub type Params = Path<HashMap<String, String>>;

/// One path parameter, parsed; a missing or malformed one is "not found".
pub fn param<T: std::str::FromStr>(
    params: &HashMap<String, String>,
    name: &str,
) -> Result<T, WebError> {
    params
        .get(name)
        .and_then(|raw| raw.parse().ok())
        .ok_or(WebError::NotFound)
}

impl FromRequestParts<AppState> for Subject {
    type Rejection = WebError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let viewer = Viewer::from_request_parts(parts, state).await?;
        let principal = viewer.principal.clone().ok_or(WebError::Unauthenticated)?;
        let Path(params) = Params::from_request_parts(parts, state)
            .await
            .map_err(|_| WebError::NotFound)?;
        let (patient, base) = match params.get("patient") {
            Some(raw) => {
                let id: PatientId = raw.parse().map_err(|_| WebError::NotFound)?;
                (id, format!("/people/{id}/record"))
            }
            None => (
                principal.own_patient.ok_or(WebError::NotFound)?,
                "/record".to_string(),
            ),
        };
        Ok(Subject {
            viewer,
            principal,
            patient,
            base,
        })
    }
}

/// A signed-in person, with or without a record.
pub struct SignedIn {
    pub viewer: Viewer,
    pub principal: Principal,
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = WebError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let viewer = Viewer::from_request_parts(parts, state).await?;
        let principal = viewer.principal.clone().ok_or(WebError::Unauthenticated)?;
        Ok(SignedIn { viewer, principal })
    }
}

/// A form that carries a CSRF token.
pub trait CsrfField {
    fn csrf_token(&self) -> &str;
}

/// Implements [`CsrfField`] for forms whose token is the `csrf_token` field.
macro_rules! csrf_field {
    ($($form:ty),+ $(,)?) => {
        $(impl $crate::extract::CsrfField for $form {
            fn csrf_token(&self) -> &str {
                &self.csrf_token
            }
        })+
    };
}
pub(crate) use csrf_field;

/// A form with nothing but its CSRF token (a button that does one thing).
#[derive(serde::Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    csrf_token: String,
}

csrf_field!(CsrfOnly);

/// A url-encoded form, accepted only with a valid CSRF token for this viewer.
pub struct Submitted<T> {
    pub viewer: Viewer,
    pub form: T,
}

impl<T> FromRequest<AppState> for Submitted<T>
where
    T: DeserializeOwned + CsrfField + Send,
{
    type Rejection = WebError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let viewer = Viewer::from_request_parts(&mut parts, state).await?;
        let req = Request::from_parts(parts, body);
        let Form(form) = Form::<T>::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                WebError::FormTooLarge
            } else {
                WebError::BadRequest(e.body_text())
            }
        })?;
        viewer.check_csrf(state, form.csrf_token())?;
        Ok(Submitted { viewer, form })
    }
}
