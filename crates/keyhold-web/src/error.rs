//! One error type for every handler. It tells the person little and clearly,
//! with the right status, and logs the rest (never health data: domain errors
//! carry ids and kinds, not values).

use axum::extract::{Request, State};
use axum::http::header::{CONTENT_TYPE, LOCATION, RETRY_AFTER};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use keyhold_domain::DomainError;

use crate::csrf::CsrfSecret;
use crate::extract::Viewer;
use crate::AppState;

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("not found")]
    NotFound,
    #[error("sign in required")]
    Unauthenticated,
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("csrf token missing or wrong")]
    Csrf,
    #[error("upload too large (limit {limit} bytes)")]
    TooLarge { limit: usize },
    /// A form body over the form limit (no form of ours comes near it).
    #[error("form too large")]
    FormTooLarge,
    #[error("overloaded")]
    Overloaded,
    /// Sign-in refused by the limits on failed attempts (429).
    #[error("too many attempts (retry after {retry_after_secs} s)")]
    TooManyAttempts { retry_after_secs: u64 },
    #[error("internal: {0}")]
    Internal(String),
}

/// Marks a 503 given because the password-hashing queue was full, for the
/// `/metrics` counter of shed requests (it survives the error page).
#[derive(Clone, Copy, Debug)]
pub struct HashingShed;

/// Marks an answer meant for a program (the `/metrics` 401 and its
/// `WWW-Authenticate`): [`render_error_pages`] leaves it as it is.
#[derive(Clone, Copy, Debug)]
pub struct NoErrorPage;

/// What the error page says; attached to the response and rendered by
/// [`render_error_pages`], which knows the visitor.
#[derive(Clone, Debug)]
pub struct ErrorPage {
    pub heading: String,
    pub message: String,
}

impl From<DomainError> for WebError {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::NotFound => WebError::NotFound,
            DomainError::Unauthenticated => WebError::Unauthenticated,
            DomainError::Overloaded => WebError::Overloaded,
            DomainError::TooManyAttempts { retry_after_secs } => {
                WebError::TooManyAttempts { retry_after_secs }
            }
            DomainError::TooLarge { limit } => WebError::TooLarge { limit },
            DomainError::BadCredentials | DomainError::Invalid(_) | DomainError::Conflict => {
                WebError::BadRequest(e.to_string())
            }
            other => WebError::Internal(other.to_string()),
        }
    }
}

fn mib(bytes: usize) -> String {
    format!("{} MB", bytes / (1024 * 1024))
}

/// "30 seconds", "1 minute", "15 minutes": a wait in words, rounded up.
fn wait_in_words(secs: u64) -> String {
    let plural = |n: u64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    if secs < 60 {
        plural(secs.max(1), "second")
    } else {
        plural(secs.div_ceil(60), "minute")
    }
}

impl WebError {
    fn status_and_page(&self) -> (StatusCode, ErrorPage) {
        let page = |h: &str, m: &str| ErrorPage {
            heading: h.into(),
            message: m.into(),
        };
        match self {
            WebError::NotFound => (StatusCode::NOT_FOUND, page("Page not found", "If you typed the web address, check it is correct. If you pasted the web address, check you copied the entire address.")),
            WebError::Unauthenticated => (StatusCode::UNAUTHORIZED, page("Sign in to continue", "Your session has ended. Sign in again to continue.")),
            WebError::BadRequest(_) => (StatusCode::BAD_REQUEST, page("Sorry, we could not understand that request", "Go back, check what you entered and try again.")),
            WebError::Csrf => (StatusCode::FORBIDDEN, page("Sorry, this form has expired", "For your security, forms stop working when you sign in or out in another tab. Go back, reload the page and try again.")),
            WebError::TooLarge { limit } => (StatusCode::PAYLOAD_TOO_LARGE, ErrorPage {
                heading: "The file is too large".into(),
                message: format!("The file you selected is larger than {}. Choose a smaller file, or scan the document at a lower resolution, and try again.", mib(*limit)),
            }),
            WebError::FormTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, page("What you sent is too large", "Go back, shorten what you entered and try again.")),
            WebError::Overloaded => (StatusCode::SERVICE_UNAVAILABLE, page("Sorry, the service is busy", "Too many people are signing in right now. Wait a minute and try again.")),
            WebError::TooManyAttempts { retry_after_secs } => (StatusCode::TOO_MANY_REQUESTS, ErrorPage {
                heading: "Too many attempts to sign in".into(),
                message: format!("For your security, signing in is paused after several attempts with a wrong email address or password. Wait {} and try again.", wait_in_words(*retry_after_secs)),
            }),
            WebError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, page("Sorry, there is a problem with the service", "Try again later. Nothing you entered was saved unless you saw a confirmation.")),
        }
    }

    /// The response before the page is rendered (or a redirect).
    pub fn into_page(self) -> Response {
        if matches!(self, WebError::Unauthenticated) {
            return (
                StatusCode::SEE_OTHER,
                [(LOCATION, HeaderValue::from_static("/signin"))],
            )
                .into_response();
        }
        if let WebError::Internal(detail) = &self {
            tracing::error!(%detail, "request failed");
        }
        let (status, page) = self.status_and_page();
        let mut resp = status.into_response();
        if matches!(self, WebError::Overloaded) {
            resp.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("30"));
            resp.extensions_mut().insert(HashingShed);
        }
        if let WebError::TooManyAttempts { retry_after_secs } = self {
            resp.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        resp.extensions_mut().insert(page);
        resp
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        self.into_page()
    }
}

fn generic(status: StatusCode) -> ErrorPage {
    let heading = match status {
        StatusCode::NOT_FOUND => "Page not found",
        StatusCode::METHOD_NOT_ALLOWED => "Sorry, that page cannot be used that way",
        StatusCode::PAYLOAD_TOO_LARGE => "What you sent is too large",
        StatusCode::REQUEST_TIMEOUT => "Your request took too long to arrive",
        s if s.is_client_error() => "Sorry, we could not understand that request",
        _ => "Sorry, there is a problem with the service",
    };
    ErrorPage {
        heading: heading.into(),
        message: "Go back and try again. If the problem continues, try again later.".into(),
    }
}

/// Renders error pages: for our own errors (which carry an [`ErrorPage`]) and
/// for axum's rejections (plain text), so every failure a browser sees is a page.
pub async fn render_error_pages(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let secret = req.extensions().get::<CsrfSecret>().cloned();
    let headers = req.headers().clone();
    let resp = next.run(req).await;
    if resp.extensions().get::<NoErrorPage>().is_some() {
        return resp;
    }
    let status = resp.status();
    let page = match resp.extensions().get::<ErrorPage>() {
        Some(p) => p.clone(),
        None => {
            let ct = resp
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let ours = ct.starts_with("text/html") || ct.contains("json");
            if !(status.is_client_error() || status.is_server_error()) || ours {
                return resp;
            }
            generic(status)
        }
    };
    let Some(secret) = secret else { return resp };
    let viewer = Viewer::resolve(&state, &headers, secret).await;
    let mut out = crate::pages::error_page(&state, &viewer, status, &page);
    for name in [RETRY_AFTER] {
        if let Some(v) = resp.headers().get(&name) {
            out.headers_mut().insert(name, v.clone());
        }
    }
    for v in resp.headers().get_all(axum::http::header::SET_COOKIE) {
        out.headers_mut()
            .append(axum::http::header::SET_COOKIE, v.clone());
    }
    if resp.extensions().get::<HashingShed>().is_some() {
        out.extensions_mut().insert(HashingShed);
    }
    out
}

/// Someone else's record answers "not found" for anything the policy refuses
/// (so nothing tells a stranger whether a record exists). Say it in words a
/// carer whose access just ended will understand; the status stays 404.
pub async fn not_shared(mut resp: Response) -> Response {
    if resp.status() == StatusCode::NOT_FOUND {
        resp.extensions_mut().insert(ErrorPage {
            heading: "You cannot see this record".into(),
            message: "It is not shared with you, or the sharing has ended. If you think you should see it, ask the person (or their care team) to share it with you again.".into(),
        });
    }
    resp
}
