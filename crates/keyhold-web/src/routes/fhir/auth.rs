//! Who is calling the FHIR API: a signed-in person (the session cookie, as
//! the pages use) or an organisation's system (a bearer token from the token
//! endpoint). Either way the caller is a `Principal`, and the one policy
//! function decides every read and write.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::Response;
use keyhold_domain::policy::Principal;
use keyhold_fhir::IssueType;

use super::outcome;
use crate::csrf::CsrfSecret;
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
        let secret = parts
            .extensions
            .get::<CsrfSecret>()
            .cloned()
            .ok_or_else(unauthorised)?;
        let viewer = Viewer::resolve(state, &parts.headers, secret).await;
        viewer
            .principal
            .map(|principal| FhirCaller { principal })
            .ok_or_else(unauthorised)
    }
}
