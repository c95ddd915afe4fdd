//! The landing page, health check, static assets and the 404 fallback.

use axum::extract::{Path, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use tera::Context;

use crate::error::WebError;
use crate::extract::Viewer;
use crate::pages::{render, ASSETS};
use crate::AppState;

pub async fn home(State(state): State<AppState>, viewer: Viewer) -> Result<Response, WebError> {
    if let Some(p) = &viewer.principal {
        // Where a signed-in person starts: their record; else their
        // organisation; else the people they care for.
        let start = if p.own_patient.is_some() {
            "/record"
        } else if !p.memberships.is_empty() {
            "/organisations"
        } else {
            "/people"
        };
        return Ok((
            StatusCode::SEE_OTHER,
            [(LOCATION, HeaderValue::from_static(start))],
        )
            .into_response());
    }
    render(
        &state,
        &viewer,
        StatusCode::OK,
        "index.html",
        "Your health record, in your hands",
        Context::new(),
    )
}

/// 200 when the store answers and the keys open it; 503 otherwise. Says no more.
pub async fn healthz(State(state): State<AppState>) -> Response {
    match state.core.health() {
        Ok(()) => (StatusCode::OK, Json(serde_json::json!({ "status": "ok" }))).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "health check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({ "status": "unavailable" })),
            )
                .into_response()
        }
    }
}

fn content_type(file: &str) -> &'static str {
    match file.rsplit_once('.').map(|(_, e)| e) {
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        _ => "application/octet-stream",
    }
}

pub async fn asset(Path(file): Path<String>) -> Result<Response, WebError> {
    let (_, bytes) = ASSETS
        .iter()
        .find(|(name, _)| *name == file)
        .ok_or(WebError::NotFound)?;
    Ok((
        [
            (CONTENT_TYPE, HeaderValue::from_static(content_type(&file))),
            (
                CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        *bytes,
    )
        .into_response())
}

pub async fn not_found() -> WebError {
    WebError::NotFound
}
