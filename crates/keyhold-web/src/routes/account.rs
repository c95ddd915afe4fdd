//! "Your account": how the holder signed in, how sure Keyhold is of who they
//! are, and (where NHS login is set up) linking it to this account.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use tera::Context;

use crate::error::WebError;
use crate::extract::Viewer;
use crate::pages::render;
use crate::AppState;

pub async fn show(State(state): State<AppState>, viewer: Viewer) -> Result<Response, WebError> {
    let Some(p) = &viewer.principal else {
        return Err(WebError::Unauthenticated);
    };
    let status = state.core.identity_status(p.account)?;
    let mut ctx = Context::new();
    ctx.insert("identity", &status);
    ctx.insert(
        "verified_on",
        &status
            .verified_at
            .map(|t| crate::pages::long_date(t.date()))
            .unwrap_or_default(),
    );
    ctx.insert("has_record", &p.own_patient.is_some());
    ctx.insert("has_password", &status.has_password);
    ctx.insert(
        "two_factor",
        &state.core.two_factor_status(p.account)?.enabled,
    );
    ctx.insert("nhs_login_available", &state.config.nhs_login.is_some());
    render(
        &state,
        &viewer,
        StatusCode::OK,
        "account.html",
        "Your account",
        ctx,
    )
}
