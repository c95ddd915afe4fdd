//! Sign up, sign in, sign out.

use axum::extract::{Query, State};
use axum::http::header::{LOCATION, SET_COOKIE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use keyhold_domain::{DomainError, FieldError, SessionToken, SignedIn};
use serde::Deserialize;
use tera::Context;

use crate::csrf::SESSION_COOKIE;
use crate::error::WebError;
use crate::extract::{csrf_field, CsrfOnly, Submitted, Viewer};
use crate::pages::{query_value, render_form};
use crate::{cookies, AppState};

csrf_field!(Credentials);

#[derive(Deserialize)]
pub struct Credentials {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    email: String,
    /// Where to go after signing in (an invitation link, for one).
    #[serde(default)]
    next: String,
    #[serde(default)]
    password: String,
    /// "Keep me signed in": the cookie outlives the browser session (the
    /// session's own idle and absolute limits still apply).
    #[serde(default)]
    keep: String,
}

/// Where to go next: a path on this site only (`/x`, never `//host` or a URL),
/// so the parameter cannot send anyone elsewhere.
pub fn safe_next(next: &str) -> Option<&str> {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && next.len() <= 512
        && next.bytes().all(|b| b.is_ascii_graphic() && b != b'\\');
    ok.then_some(next)
}

#[derive(Deserialize, Default)]
pub struct NextQuery {
    #[serde(default)]
    next: String,
}

fn form_page(
    state: &AppState,
    viewer: &Viewer,
    template: &str,
    title: &str,
    values: (&str, &str, &str),
    errors: &[FieldError],
) -> Result<Response, WebError> {
    let (name, email, next) = values;
    let mut ctx = Context::new();
    ctx.insert(
        "values",
        &serde_json::json!({ "name": name, "email": email, "next": safe_next(next).unwrap_or(""), "next_query": query_value(safe_next(next).unwrap_or("")) }),
    );
    ctx.insert("nhs_login_available", &state.config.nhs_login.is_some());
    render_form(state, viewer, template, title, ctx, errors)
}

pub async fn signup_page(
    State(state): State<AppState>,
    Query(q): Query<NextQuery>,
    viewer: Viewer,
) -> Result<Response, WebError> {
    form_page(
        &state,
        &viewer,
        "signup.html",
        "Create an account",
        ("", "", &q.next),
        &[],
    )
}

pub async fn signin_page(
    State(state): State<AppState>,
    Query(q): Query<NextQuery>,
    viewer: Viewer,
) -> Result<Response, WebError> {
    form_page(
        &state,
        &viewer,
        "signin.html",
        "Sign in",
        ("", "", &q.next),
        &[],
    )
}

/// Starts the new session: a fresh cookie (the old session, if any, ends), then
/// on to the record. A `persistent` cookie lasts as long as the session may
/// (12 hours); otherwise the browser drops it when it closes.
pub(crate) async fn signed_in(
    state: &AppState,
    viewer: &Viewer,
    s: SignedIn,
    next: &str,
    persistent: bool,
) -> Response {
    if let Some(old) = &viewer.session {
        if let Err(e) = state.core.sign_out(&SessionToken::from_cookie(old)).await {
            tracing::warn!(error = %e, "ending the previous session failed");
        }
    }
    let name = cookies::name(SESSION_COOKIE, state.config.secure_cookies);
    let max_age = persistent.then(|| state.core.settings().session_absolute.whole_seconds());
    let cookie = cookies::set(
        &name,
        s.token.as_str(),
        state.config.secure_cookies,
        "Lax",
        max_age,
    );
    let mut resp = (
        StatusCode::SEE_OTHER,
        [(
            LOCATION,
            HeaderValue::from_str(safe_next(next).unwrap_or("/"))
                .unwrap_or(HeaderValue::from_static("/")),
        )],
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().append(SET_COOKIE, v);
    }
    resp
}

pub async fn signup(
    State(state): State<AppState>,
    s: Submitted<Credentials>,
) -> Result<Response, WebError> {
    let Submitted { viewer, form } = s;
    match state
        .core
        .sign_up(
            &form.name,
            &form.email,
            &form.password,
            safe_next(&form.next).unwrap_or("/"),
        )
        .await
    {
        Ok(()) => super::password::check_email(
            &state,
            &viewer,
            &format!(
                "We have sent an email to {}. It has a link to confirm your address and finish creating your account.",
                form.email.trim()
            ),
            "24 hours",
            Some(form.email.trim()),
        ),
        Err(DomainError::Invalid(errors)) => form_page(
            &state,
            &viewer,
            "signup.html",
            "Create an account",
            (&form.name, &form.email, &form.next),
            &errors,
        ),
        Err(e) => Err(e.into()),
    }
}

/// The client's address is the TCP peer's (`ConnectInfo`), never a header a
/// client could write: behind a proxy every client shares the proxy's, and the
/// per-account limits still apply. Absent (a router driven without a socket),
/// only the per-account limits apply.
pub async fn signin(
    State(state): State<AppState>,
    connect: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    s: Submitted<Credentials>,
) -> Result<Response, WebError> {
    let client = connect.map(|c| c.0 .0.ip());
    let Submitted { viewer, form } = s;
    let mut missing = Vec::new();
    if form.email.trim().is_empty() {
        missing.push(FieldError::new("email", "Enter your email address"));
    }
    if form.password.is_empty() {
        missing.push(FieldError::new("password", "Enter your password"));
    }
    if !missing.is_empty() {
        return form_page(
            &state,
            &viewer,
            "signin.html",
            "Sign in",
            ("", &form.email, &form.next),
            &missing,
        );
    }
    match state
        .core
        .sign_in(&form.email, &form.password, client)
        .await
    {
        Ok(signed) => Ok(signed_in(&state, &viewer, signed, &form.next, form.keep == "yes").await),
        Err(DomainError::BadCredentials) => form_page(
            &state,
            &viewer,
            "signin.html",
            "Sign in",
            ("", &form.email, &form.next),
            &[FieldError::new(
                "email",
                "Enter a correct email address and password",
            )],
        ),
        Err(DomainError::SecondFactorNeeded { pending }) => {
            super::two_factor::ask_for_code(&state, &pending, &form.next, form.keep == "yes")
        }
        Err(DomainError::EmailUnconfirmed) => {
            // Only someone who knows the password gets here: send a new link.
            state.core.resend_confirmation(&form.email).await;
            super::password::check_email(
                &state,
                &viewer,
                "You need to confirm your email address before you can sign in. We have sent you a new link.",
                "24 hours",
                None,
            )
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn signout(
    State(state): State<AppState>,
    s: Submitted<CsrfOnly>,
) -> Result<Response, WebError> {
    if let Some(token) = &s.viewer.session {
        state
            .core
            .sign_out(&SessionToken::from_cookie(token))
            .await?;
    }
    let name = cookies::name(SESSION_COOKIE, state.config.secure_cookies);
    let mut resp = (
        StatusCode::SEE_OTHER,
        [(LOCATION, HeaderValue::from_static("/"))],
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&cookies::clear(&name, state.config.secure_cookies)) {
        resp.headers_mut().append(SET_COOKIE, v);
    }
    Ok(resp)
}
