//! "People you care for": the records this account may open through a grant
//! to it, each a way into acting for that person.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use tera::Context;

use keyhold_domain::consent::last_day;

use crate::error::WebError;
use crate::extract::SignedIn;
use crate::pages::{long_date, render};
use crate::AppState;

pub async fn list(State(state): State<AppState>, s: SignedIn) -> Result<Response, WebError> {
    let people = state.core.cared_for(&s.principal).await?;
    let rows: Vec<_> = people
        .iter()
        .map(|c| {
            serde_json::json!({
                "id": c.patient.to_string(),
                "name": c.name,
                "permissions": c.permissions.labels(),
                "categories": c.categories.iter().map(|c| c.label()).collect::<Vec<_>>(),
                "until": long_date(last_day(c.ends)),
            })
        })
        .collect();
    let mut ctx = Context::new();
    ctx.insert("people", &rows);
    ctx.insert("nav", "people");
    render(
        &state,
        &s.viewer,
        StatusCode::OK,
        "people.html",
        "People you care for",
        ctx,
    )
}
