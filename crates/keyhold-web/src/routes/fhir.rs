//! The FHIR R4 API at `/fhir/R4` (JSON only). Reads go through the same
//! domain calls as the pages, so the one policy function decides them and each
//! is audited; `keyhold-fhir` turns what comes back into resources. Every
//! error is an OperationOutcome with the status that fits.

use axum::extract::{Path, State};
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use keyhold_domain::{DomainError, PatientId};
use keyhold_fhir::{IssueType, OperationOutcome, FHIR_JSON};
use serde_json::Value;

use crate::extract::Viewer;
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/metadata", get(metadata))
        .route("/Patient/{id}", get(read_patient))
        .fallback(not_supported)
}

fn fhir(status: StatusCode, body: &Value) -> Response {
    let mut resp = (status, body.to_string()).into_response();
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    resp
}

fn outcome(status: StatusCode, issue: IssueType, diagnostics: &str) -> Response {
    fhir(status, &OperationOutcome::new(issue, diagnostics).to_json())
}

/// JSON is all we speak: a client that accepts neither FHIR JSON nor JSON
/// (nor anything) gets 406.
fn accepts_json(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(ACCEPT).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    accept.split(',').any(|part| {
        let media = part.split(';').next().unwrap_or("").trim();
        matches!(
            media,
            "application/fhir+json" | "application/json" | "application/*" | "*/*" | ""
        )
    })
}

fn not_acceptable() -> Response {
    outcome(
        StatusCode::NOT_ACCEPTABLE,
        IssueType::NotSupported,
        "This server answers in FHIR JSON only (application/fhir+json)",
    )
}

async fn metadata(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !accepts_json(&headers) {
        return not_acceptable();
    }
    let base = format!(
        "{}/fhir/R4",
        state.core.settings().public_url.trim_end_matches('/')
    );
    fhir(
        StatusCode::OK,
        &keyhold_fhir::capability_statement(&base, env!("CARGO_PKG_VERSION"), state.core.now()),
    )
}

async fn read_patient(
    State(state): State<AppState>,
    headers: HeaderMap,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Response {
    if !accepts_json(&headers) {
        return not_acceptable();
    }
    let Some(p) = &viewer.principal else {
        return outcome(
            StatusCode::UNAUTHORIZED,
            IssueType::Login,
            "Sign in to Keyhold to use this API",
        );
    };
    let gone = || {
        outcome(
            StatusCode::NOT_FOUND,
            IssueType::NotFound,
            &format!("Patient/{id} is not known, or not shared with you"),
        )
    };
    // A malformed id answers as an unknown one: nothing to tell them apart.
    let Ok(patient) = id.parse::<PatientId>() else {
        return gone();
    };
    match state.core.demographics(p, patient).await {
        Ok(d) => fhir(StatusCode::OK, &keyhold_fhir::patient(patient, &d)),
        Err(DomainError::NotFound) => gone(),
        Err(e) => {
            tracing::error!(error = %e, "FHIR Patient read failed");
            outcome(
                StatusCode::INTERNAL_SERVER_ERROR,
                IssueType::Exception,
                "The server could not answer; try again later",
            )
        }
    }
}

async fn not_supported() -> Response {
    outcome(
        StatusCode::NOT_FOUND,
        IssueType::NotSupported,
        "This server does not offer that resource or interaction; see /fhir/R4/metadata",
    )
}
