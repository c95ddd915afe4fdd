//! Invitation links from mail: see what is offered, then accept it with an
//! account whose address is the invited one.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use keyhold_domain::{Accepted, DomainError, FieldError, InvitationView};
use tera::Context;

use keyhold_domain::consent::last_day;

use crate::error::WebError;
use crate::extract::{CsrfOnly, Submitted, Viewer};
use crate::pages::{insert_errors, long_date, query_value, render, see_other};
use crate::AppState;

/// Tokens are 43 url-safe characters; anything else is not worth a lookup.
fn plausible(token: &str) -> bool {
    (16..=128).contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn gone(state: &AppState, viewer: &Viewer) -> Result<Response, WebError> {
    render(
        state,
        viewer,
        StatusCode::NOT_FOUND,
        "invitation_gone.html",
        "This invitation link does not work",
        Context::new(),
    )
}

async fn page(
    state: &AppState,
    viewer: &Viewer,
    token: &str,
    status: StatusCode,
    errors: &[FieldError],
) -> Result<Response, WebError> {
    if !plausible(token) {
        return gone(state, viewer);
    }
    let offer = match state.core.invitation(token).await {
        Ok(v) => v,
        Err(DomainError::NotFound) => return gone(state, viewer),
        Err(e) => return Err(e.into()),
    };
    let mut ctx = Context::new();
    let here = format!("/invitations/{token}");
    ctx.insert("action", &here);
    ctx.insert("next_query", &query_value(&here));
    let title = match &offer {
        InvitationView::Grant {
            from,
            patient_name,
            permissions,
            categories,
            ends,
            purpose,
            invited,
        } => {
            ctx.insert(
                "grant",
                &serde_json::json!({
                    "from": from,
                    "patient_name": patient_name,
                    "permissions": permissions.labels(),
                    "categories": categories.iter().map(|c| c.label()).collect::<Vec<_>>(),
                    "until": long_date(last_day(*ends)),
                    "purpose": purpose,
                    "invited": invited,
                }),
            );
            format!("{patient_name} wants to share their health record with you")
        }
        InvitationView::Staff { org_name, role } => {
            ctx.insert(
                "staff",
                &serde_json::json!({ "org": org_name, "role": role.label() }),
            );
            format!("Join {org_name} on Keyhold")
        }
    };
    insert_errors(&mut ctx, errors);
    render(state, viewer, status, "invitation.html", &title, ctx)
}

pub async fn show(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(token): Path<String>,
) -> Result<Response, WebError> {
    page(&state, &viewer, &token, StatusCode::OK, &[]).await
}

pub async fn accept(
    State(state): State<AppState>,
    Path(token): Path<String>,
    s: Submitted<CsrfOnly>,
) -> Result<Response, WebError> {
    let viewer = s.viewer;
    let principal = viewer.principal.clone().ok_or(WebError::Unauthenticated)?;
    if !plausible(&token) {
        return gone(&state, &viewer);
    }
    let to = match state.core.accept_invitation(&principal, &token).await {
        Ok(Accepted::Grant(patient)) => format!("/people/{patient}/record"),
        Ok(Accepted::Staff(org)) => format!("/organisations/{org}"),
        Err(DomainError::NotFound) => return gone(&state, &viewer),
        Err(DomainError::Invalid(errors)) => {
            return page(
                &state,
                &viewer,
                &token,
                StatusCode::UNPROCESSABLE_ENTITY,
                &errors,
            )
            .await
        }
        Err(e) => return Err(e.into()),
    };
    see_other(&to)
}
