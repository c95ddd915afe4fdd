//! No account enumeration: sign-up, sign-in and the forgotten-password form
//! answer an address that has an account exactly as one that has not (the
//! same status and the same page, once the address typed and the form's
//! CSRF token are set aside). Only the mailbox learns the difference.

use reqwest::{Client, StatusCode};

use crate::helpers::{browser, csrf_token, post_form, signed_in, spawn_app, TestApp, PASSWORD};

/// The page with the address typed and every CSRF token blanked out.
fn normalised(html: &str, email: &str) -> String {
    let mut out = html.replace(email, "EMAIL");
    let marker = "name=\"csrf_token\" value=\"";
    let mut at = 0;
    while let Some(i) = out[at..].find(marker) {
        let start = at + i + marker.len();
        let end = start + out[start..].find('"').unwrap();
        out.replace_range(start..end, "TOKEN");
        at = start;
    }
    out
}

async fn answer(
    app: &TestApp,
    client: &Client,
    page: &str,
    action: &str,
    fields: &[(&str, &str)],
    email: &str,
) -> (StatusCode, String) {
    let token = csrf_token(app, client, page).await;
    let mut all = vec![("csrf_token", token.as_str())];
    all.extend_from_slice(fields);
    let resp = post_form(app, client, action, &all).await;
    let status = resp.status();
    (status, normalised(&resp.text().await.unwrap(), email))
}

#[tokio::test]
async fn known_and_unknown_addresses_get_the_same_answers() {
    let app = spawn_app().await;
    signed_in(&app, "ann@example.test").await;
    let known = "ann@example.test";
    let unknown = "nobody@example.test";

    let mut answers = Vec::new();
    for email in [known, unknown] {
        // Signing up last: until then the unknown address has no account.
        let c = browser();
        let forgot = answer(
            &app,
            &c,
            "/password/forgot",
            "/password/forgot",
            &[("email", email)],
            email,
        )
        .await;
        let c = browser();
        let signin = answer(
            &app,
            &c,
            "/signin",
            "/signin",
            &[("email", email), ("password", "not the password at all")],
            email,
        )
        .await;
        let c = browser();
        let signup = answer(
            &app,
            &c,
            "/signup",
            "/signup",
            &[
                ("name", "Someone"),
                ("email", email),
                ("password", PASSWORD),
            ],
            email,
        )
        .await;
        answers.push([signup, signin, forgot]);
    }
    for (i, form) in ["sign-up", "sign-in", "forgotten password"]
        .iter()
        .enumerate()
    {
        let (k, u) = (&answers[0][i], &answers[1][i]);
        assert_eq!(k.0, u.0, "{form}: the same status");
        assert_eq!(k.1, u.1, "{form}: the same page");
    }
    // The answers are the forms' real ones, not an error both share.
    assert_eq!(answers[0][0].0, StatusCode::OK);
    assert!(answers[0][0].1.contains("Check your email"));
    assert_eq!(answers[0][1].0, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answers[0][2].0, StatusCode::OK);
    // Only the mailbox tells them apart: the known address is told it
    // already has an account and sent a reset link; the unknown one gets
    // the confirmation of a new sign-up and no reset.
    let mails = app.mails();
    let to_known: Vec<_> = mails
        .iter()
        .filter(|m| m.contains("To: ann@example.test"))
        .collect();
    assert!(to_known.iter().any(|m| m.contains("/password/reset/")));
    let to_unknown: Vec<_> = mails
        .iter()
        .filter(|m| m.contains("To: nobody@example.test"))
        .collect();
    assert!(!to_unknown.iter().any(|m| m.contains("/password/reset/")));
    app.stop().await;
}
