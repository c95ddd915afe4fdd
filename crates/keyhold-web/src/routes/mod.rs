//! The route table. Every route is listed here, with its layers.

mod auth;
mod documents;
mod record;
mod system;

use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post};
use axum::Router;

use crate::{csrf, error, headers, AppState};

/// Forms are small; only the upload route accepts more.
const FORM_LIMIT: usize = 64 * 1024;

pub fn router(state: AppState) -> Router {
    let upload_cap = documents::upload_body_cap(state.core.settings().max_upload_bytes);
    Router::new()
        .route("/", get(system::home))
        .route("/signup", get(auth::signup_page).post(auth::signup))
        .route("/signin", get(auth::signin_page).post(auth::signin))
        .route("/signout", post(auth::signout))
        .route("/record", get(record::overview))
        .route("/record/demographics", get(record::demographics))
        .route("/record/entries/new", get(record::new_entry_page))
        .route("/record/entries", post(record::create_entry))
        .route("/record/entries/{id}", get(record::entry))
        .route(
            "/record/documents",
            get(documents::list)
                .post(documents::upload)
                .layer(DefaultBodyLimit::max(upload_cap)),
        )
        .route("/record/documents.zip", get(documents::zip_all))
        .route("/record/documents/{id}", get(documents::download))
        .route("/healthz", get(system::healthz))
        .route("/assets/{file}", get(system::asset))
        .fallback(system::not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            error::render_error_pages,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            csrf::ensure_secret,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            headers::security_headers,
        ))
        .layer(DefaultBodyLimit::max(FORM_LIMIT))
        .with_state(state)
}
