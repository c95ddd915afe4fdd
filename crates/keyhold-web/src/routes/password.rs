//! Confirming an email address, forgotten and changed passwords, signing out
//! everywhere. The domain (`credentials`) holds the rules; these pages ask
//! and answer. Mailed links open a page with a button rather than acting on
//! GET, so a mail scanner that fetches links cannot use them up.

use axum::extract::{Path, State};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use keyhold_domain::{DomainError, FieldError, LinkPurpose, SessionToken};
use serde::Deserialize;
use tera::Context;

use super::auth::signed_in;
use crate::csrf::SESSION_COOKIE;
use crate::error::WebError;
use crate::extract::{csrf_field, param, CsrfOnly, Params, Submitted, Viewer};
use crate::pages::{render, render_form};
use crate::{cookies, AppState};

/// "Check your email": the same page whether or not the address has an account.
pub fn check_email(
    state: &AppState,
    viewer: &Viewer,
    lead: &str,
    hours: &str,
    resend_to: Option<&str>,
) -> Result<Response, WebError> {
    let mut ctx = Context::new();
    ctx.insert("lead", lead);
    ctx.insert("hours", hours);
    ctx.insert("resend", &resend_to.is_some());
    ctx.insert("email", resend_to.unwrap_or(""));
    render(
        state,
        viewer,
        StatusCode::OK,
        "check_email.html",
        "Check your email",
        ctx,
    )
}

fn link_gone(state: &AppState, viewer: &Viewer, purpose: &str) -> Result<Response, WebError> {
    let mut ctx = Context::new();
    ctx.insert("purpose", purpose);
    render(
        state,
        viewer,
        StatusCode::NOT_FOUND,
        "link_gone.html",
        "This link cannot be used",
        ctx,
    )
}

fn is_link_gone(e: &DomainError) -> bool {
    matches!(e, DomainError::Invalid(errs) if errs.iter().any(|f| f.field == "link"))
}

// --- confirming an address -------------------------------------------------

pub async fn confirm_page(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(params): Params,
) -> Result<Response, WebError> {
    let token: String = param(&params, "token")?;
    if !state
        .core
        .email_link_is_live(&token, LinkPurpose::ConfirmEmail)?
    {
        return link_gone(&state, &viewer, "confirm");
    }
    let mut ctx = Context::new();
    ctx.insert("token", &token);
    render(
        &state,
        &viewer,
        StatusCode::OK,
        "confirm_email.html",
        "Confirm your email address",
        ctx,
    )
}

pub async fn confirm(
    State(state): State<AppState>,
    Path(params): Params,
    s: Submitted<CsrfOnly>,
) -> Result<Response, WebError> {
    let token: String = param(&params, "token")?;
    match state.core.confirm_email(&token).await {
        Ok((signed, next)) => Ok(signed_in(&state, &s.viewer, signed, &next, false).await),
        Err(e) if is_link_gone(&e) => link_gone(&state, &s.viewer, "confirm"),
        Err(e) => Err(e.into()),
    }
}

csrf_field!(EmailForm);

#[derive(Deserialize)]
pub struct EmailForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    email: String,
}

/// "Send the link again" (from sign-in, for an unconfirmed address).
pub async fn resend(
    State(state): State<AppState>,
    s: Submitted<EmailForm>,
) -> Result<Response, WebError> {
    state.core.resend_confirmation(&s.form.email).await;
    check_email(
        &state,
        &s.viewer,
        "If that address has an account still to be confirmed, we have sent it a new link.",
        "24 hours",
        None,
    )
}

// --- forgotten password ----------------------------------------------------

fn forgot_form(
    state: &AppState,
    viewer: &Viewer,
    email: &str,
    errors: &[FieldError],
) -> Result<Response, WebError> {
    let mut ctx = Context::new();
    ctx.insert("values", &serde_json::json!({ "email": email }));
    render_form(
        state,
        viewer,
        "password_forgot.html",
        "Reset your password",
        ctx,
        errors,
    )
}

pub async fn forgot_page(
    State(state): State<AppState>,
    viewer: Viewer,
) -> Result<Response, WebError> {
    forgot_form(&state, &viewer, "", &[])
}

pub async fn forgot(
    State(state): State<AppState>,
    s: Submitted<EmailForm>,
) -> Result<Response, WebError> {
    if keyhold_domain::Email::parse(&s.form.email).is_err() {
        return forgot_form(
            &state,
            &s.viewer,
            &s.form.email,
            &[FieldError::new(
                "email",
                "Enter an email address in the correct format, like name@example.com",
            )],
        );
    }
    // Answers at once; the look-up and the mail happen afterwards, so the
    // page and its timing are the same for an address with no account.
    state.core.request_password_reset(&s.form.email).await;
    check_email(
        &state,
        &s.viewer,
        "If that address has a Keyhold account, we have sent it a link to choose a new password.",
        "1 hour",
        None,
    )
}

fn reset_form(
    state: &AppState,
    viewer: &Viewer,
    token: &str,
    errors: &[FieldError],
) -> Result<Response, WebError> {
    let mut ctx = Context::new();
    ctx.insert("token", token);
    render_form(
        state,
        viewer,
        "password_reset.html",
        "Choose a new password",
        ctx,
        errors,
    )
}

pub async fn reset_page(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(params): Params,
) -> Result<Response, WebError> {
    let token: String = param(&params, "token")?;
    if !state
        .core
        .email_link_is_live(&token, LinkPurpose::ResetPassword)?
    {
        return link_gone(&state, &viewer, "reset");
    }
    reset_form(&state, &viewer, &token, &[])
}

csrf_field!(NewPassword);

#[derive(Deserialize)]
pub struct NewPassword {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    password: String,
}

pub async fn reset(
    State(state): State<AppState>,
    Path(params): Params,
    s: Submitted<NewPassword>,
) -> Result<Response, WebError> {
    let token: String = param(&params, "token")?;
    match state.core.reset_password(&token, &s.form.password).await {
        Ok(signed) => Ok(signed_in(&state, &s.viewer, signed, "/", false).await),
        Err(e) if is_link_gone(&e) => link_gone(&state, &s.viewer, "reset"),
        Err(DomainError::Invalid(errors)) => reset_form(&state, &s.viewer, &token, &errors),
        Err(e) => Err(e.into()),
    }
}

// --- changing the password, signing out everywhere -------------------------

fn change_form(
    state: &AppState,
    viewer: &Viewer,
    errors: &[FieldError],
) -> Result<Response, WebError> {
    let ctx = Context::new();
    render_form(
        state,
        viewer,
        "password_change.html",
        "Change your password",
        ctx,
        errors,
    )
}

pub async fn change_page(
    State(state): State<AppState>,
    viewer: Viewer,
) -> Result<Response, WebError> {
    if viewer.principal.is_none() {
        return Err(WebError::Unauthenticated);
    }
    change_form(&state, &viewer, &[])
}

csrf_field!(ChangePassword);

#[derive(Deserialize)]
pub struct ChangePassword {
    #[serde(default)]
    csrf_token: String,
    #[serde(default, rename = "current-password")]
    current: String,
    #[serde(default, rename = "new-password")]
    new: String,
}

pub async fn change(
    State(state): State<AppState>,
    s: Submitted<ChangePassword>,
) -> Result<Response, WebError> {
    let Submitted { viewer, form } = s;
    let Some(p) = viewer.principal.clone() else {
        return Err(WebError::Unauthenticated);
    };
    match state
        .core
        .change_password(&p, &form.current, &form.new)
        .await
    {
        Ok(token) => {
            // The old session ended with the change; this browser gets the new one.
            let name = cookies::name(SESSION_COOKIE, state.config.secure_cookies);
            let cookie = cookies::set(
                &name,
                token.as_str(),
                state.config.secure_cookies,
                "Lax",
                None,
            );
            let mut resp = crate::pages::see_other("/account")?;
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                resp.headers_mut().append(SET_COOKIE, v);
            }
            Ok(resp)
        }
        Err(DomainError::Invalid(errors)) => change_form(&state, &viewer, &errors),
        Err(e) => Err(e.into()),
    }
}

pub async fn sign_out_everywhere(
    State(state): State<AppState>,
    s: Submitted<CsrfOnly>,
) -> Result<Response, WebError> {
    let Some(p) = &s.viewer.principal else {
        return Err(WebError::Unauthenticated);
    };
    state.core.sign_out_everywhere(p).await?;
    if let Some(token) = &s.viewer.session {
        state
            .core
            .sign_out(&SessionToken::from_cookie(token))
            .await?;
    }
    let name = cookies::name(SESSION_COOKIE, state.config.secure_cookies);
    let mut resp = crate::pages::see_other("/signin")?.into_response();
    if let Ok(v) = HeaderValue::from_str(&cookies::clear(&name, state.config.secure_cookies)) {
        resp.headers_mut().append(SET_COOKIE, v);
    }
    Ok(resp)
}
