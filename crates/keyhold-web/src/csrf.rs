//! CSRF protection: a signed double-submit token. Every visitor gets a random
//! HttpOnly `keyhold_csrf` cookie; forms carry `MAC(csrf key, cookie ‖ session)`,
//! which a cross-site page can neither read nor compute. Binding the session in
//! means a token stops working when the session changes (sign-in, sign-out).

use axum::extract::{Request, State};
use axum::http::header::SET_COOKIE;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine as _;

use crate::{cookies, AppState};

pub const CSRF_COOKIE: &str = "keyhold_csrf";
pub const SESSION_COOKIE: &str = "keyhold_session";

/// This request's CSRF secret (from its cookie, or fresh).
#[derive(Clone)]
pub struct CsrfSecret(pub String);

fn mac_input(secret: &str, session: Option<&str>) -> Vec<u8> {
    format!("{secret}|{}", session.unwrap_or("")).into_bytes()
}

/// The token forms must carry.
pub fn token(state: &AppState, secret: &CsrfSecret, session: Option<&str>) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(state.csrf.mac(&mac_input(&secret.0, session)))
}

/// Checks a submitted token in constant time.
pub fn verify(
    state: &AppState,
    secret: &CsrfSecret,
    session: Option<&str>,
    submitted: &str,
) -> bool {
    match base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(submitted.trim()) {
        Ok(tag) => state.csrf.verify(&mac_input(&secret.0, session), &tag),
        Err(_) => false,
    }
}

/// Makes sure every request has a CSRF secret, setting the cookie when new.
pub async fn ensure_secret(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let name = cookies::name(CSRF_COOKIE, state.config.secure_cookies);
    let existing = cookies::get(req.headers(), &name).filter(|v| cookies::is_token(v));
    let (secret, fresh) = match existing {
        Some(v) => (v, false),
        None => match keyhold_domain::random_token() {
            Ok(v) => (v, true),
            Err(_) => return crate::error::WebError::Internal("random".into()).into_page(),
        },
    };
    req.extensions_mut().insert(CsrfSecret(secret.clone()));
    let mut resp = next.run(req).await;
    if fresh {
        let c = cookies::set(&name, &secret, state.config.secure_cookies, "Strict", None);
        if let Ok(v) = HeaderValue::from_str(&c) {
            resp.headers_mut().append(SET_COOKIE, v);
        }
    }
    resp
}
