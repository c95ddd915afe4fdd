//! Organisation feeds: the token endpoint (OAuth 2.0 client credentials with
//! a signed-JWT client assertion, RFC 7523) and transaction Bundles posted to
//! the base. The domain checks the assertion, decides every write with the
//! one policy function, and writes a Bundle whole or not at all.

use axum::body::{to_bytes, Body};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Form, Json};
use keyhold_domain::feeds::{IngestError, TokenRefusal};
use keyhold_fhir::ingest::{parse_transaction, problems_outcome, transaction_response, Problem};
use keyhold_fhir::IssueType;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{fhir, outcome, FhirCaller};
use crate::route_table::Routes;
use crate::AppState;

/// The largest Bundle accepted (1,000 entries of a few kilobytes).
pub const BUNDLE_LIMIT: usize = 8 * 1024 * 1024;

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

pub(crate) fn routes() -> Routes {
    Routes::new()
        .route("/token", post(token))
        .route("/", post(transaction).layer(DefaultBodyLimit::disable()))
}

/// The token endpoint's own URL: what a client assertion's `aud` must be.
pub fn token_url(state: &AppState) -> String {
    format!("{}/token", super::api_base(state))
}

#[derive(Deserialize)]
struct TokenRequest {
    #[serde(default)]
    grant_type: String,
    #[serde(default)]
    client_assertion_type: String,
    #[serde(default)]
    client_assertion: String,
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut resp = (
        status,
        Json(json!({ "error": error, "error_description": description })),
    )
        .into_response();
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

async fn token(State(state): State<AppState>, Form(req): Form<TokenRequest>) -> Response {
    if req.grant_type != "client_credentials" {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type must be client_credentials",
        );
    }
    if req.client_assertion_type != JWT_BEARER || req.client_assertion.is_empty() {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "send client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer and a client_assertion",
        );
    }
    match state
        .core
        .feed_token(&req.client_assertion, &token_url(&state))
        .await
    {
        Ok(t) => {
            let mut resp = Json(json!({
                "access_token": t.access_token,
                "token_type": "Bearer",
                "expires_in": t.expires_in,
            }))
            .into_response();
            resp.headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        }
        Err(TokenRefusal::Domain(e)) => {
            tracing::error!(error = %e, "feed token failed");
            oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "the server could not answer; try again later",
            )
        }
        Err(refusal) => {
            tracing::info!(reason = %refusal, "feed client assertion refused");
            oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                &refusal.to_string(),
            )
        }
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    let ct = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    matches!(
        ct.split(';').next().unwrap_or("").trim(),
        "application/fhir+json" | "application/json"
    )
}

/// `POST /fhir/R4`: a transaction Bundle from an organisation's system.
async fn transaction(
    State(state): State<AppState>,
    caller: FhirCaller,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let p = &caller.principal;
    if !p.is_system() {
        return outcome(
            StatusCode::FORBIDDEN,
            IssueType::Forbidden,
            "Only an organisation's system, with a token from /fhir/R4/token, may post Bundles",
        );
    }
    if !is_json(&headers) {
        return outcome(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IssueType::NotSupported,
            "Send the Bundle as application/fhir+json",
        );
    }
    let Ok(bytes) = to_bytes(body, BUNDLE_LIMIT).await else {
        return outcome(
            StatusCode::PAYLOAD_TOO_LARGE,
            IssueType::Invalid,
            &format!(
                "A Bundle may be at most {} MiB; send smaller ones",
                BUNDLE_LIMIT / 1024 / 1024
            ),
        );
    };
    // serde_json refuses nesting deeper than 128 levels: a hostile Bundle
    // cannot exhaust the stack.
    let bundle: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => {
            return outcome(
                StatusCode::BAD_REQUEST,
                IssueType::Invalid,
                &format!(
                    "The body is not JSON this server can read (line {}, column {})",
                    e.line(),
                    e.column()
                ),
            )
        }
    };
    let posted = match parse_transaction(&bundle) {
        Ok(p) => p,
        Err(problems) => return fhir(StatusCode::BAD_REQUEST, &problems_outcome(&problems)),
    };
    let types: Vec<&'static str> = posted.iter().map(|p| p.resource_type).collect();
    let items = posted.into_iter().map(|p| p.item).collect();
    match state.core.ingest(p, items).await {
        Ok(done) => {
            let results: Vec<(&str, String, u32, bool)> = done
                .iter()
                .zip(types)
                .map(|(d, t)| {
                    (
                        t,
                        keyhold_fhir::resource_id(d.patient, d.entry.as_bytes()),
                        d.version,
                        d.created,
                    )
                })
                .collect();
            fhir(StatusCode::OK, &transaction_response(&results))
        }
        Err(IngestError::Refused(problems)) => {
            let problems: Vec<Problem> = problems
                .into_iter()
                .map(|p| Problem {
                    entry: Some(p.index),
                    message: p.message,
                })
                .collect();
            fhir(
                StatusCode::UNPROCESSABLE_ENTITY,
                &problems_outcome(&problems),
            )
        }
        Err(IngestError::Domain(e)) => {
            tracing::error!(error = %e, "feed transaction failed");
            outcome(
                StatusCode::INTERNAL_SERVER_ERROR,
                IssueType::Exception,
                "The server could not write the Bundle; nothing was written. Try again later",
            )
        }
    }
}
