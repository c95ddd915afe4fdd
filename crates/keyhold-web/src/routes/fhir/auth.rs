//! Who is calling the FHIR API: a signed-in person (the session cookie, as
//! the pages use) or an organisation's system (a bearer token from the token
//! endpoint). Either way the caller is a `Principal`, and the one policy
//! function decides every read and write.

use axum::extract::FromRequestParts;
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use keyhold_domain::policy::Principal;
use keyhold_fhir::IssueType;

use super::outcome;
use crate::extract::Viewer;
use crate::AppState;

/// A caller the API knows; anyone else gets a 401 OperationOutcome.
pub struct FhirCaller {
    pub principal: Principal,
}

impl FromRequestParts<AppState> for FhirCaller {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let unauthorised = || {
            outcome(
                StatusCode::UNAUTHORIZED,
                IssueType::Login,
                "Sign in to Keyhold, or send a bearer token from /fhir/R4/token",
            )
        };
        if let Some(auth) = parts.headers.get(AUTHORIZATION) {
            // A bearer token is the only credential looked at when sent: a
            // bad one is refused, never passed over for a session cookie.
            let token = auth
                .to_str()
                .ok()
                .and_then(|v| {
                    v.strip_prefix("Bearer ")
                        .or_else(|| v.strip_prefix("bearer "))
                })
                .map(str::trim)
                .filter(|t| !t.is_empty() && t.len() <= 200);
            let principal = match token.map(|t| state.core.feed_principal(t)) {
                Some(Ok(p)) => p,
                Some(Err(e)) => {
                    tracing::error!(error = %e, "bearer token lookup failed");
                    None
                }
                None => None,
            };
            return principal.map(|principal| FhirCaller { principal }).ok_or_else(|| {
                let mut resp = outcome(
                    StatusCode::UNAUTHORIZED,
                    IssueType::Login,
                    "The bearer token is not valid or has expired; get a new one from /fhir/R4/token",
                );
                resp.headers_mut().insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                );
                resp
            });
        }
        Viewer::session_principal(state, &parts.headers)
            .await
            .map(|(principal, _)| FhirCaller { principal })
            .ok_or_else(unauthorised)
    }
}
