//! Organisation feeds: the token endpoint (client credentials with a signed
//! JWT) and transaction Bundles posted to the base.

use axum::Router;

use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
}
