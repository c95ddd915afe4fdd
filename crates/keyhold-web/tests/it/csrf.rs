//! Every state-changing route refuses a missing, wrong or borrowed CSRF token
//! with a 403 page and changes nothing; the page's own token works.

use keyhold_domain::trees::{ACCOUNTS, DOCUMENTS, ENTRIES, SESSIONS};
use keyhold_domain::DomainError;
use reqwest::{Response, StatusCode};

use crate::helpers::{
    browser, csrf_token, entry_fields, h1, is_html, location, pdf, post_form, set_cookie, sign_up,
    signed_in, spawn_app, upload_form, PASSWORD,
};

/// Tokens that must not work: none, empty, the right one altered, one from
/// another browser, and one that is not even base64.
fn bad_tokens(right: &str, other_browser: &str) -> Vec<(&'static str, Option<String>)> {
    let mut altered = right.to_string();
    let last = altered.pop().unwrap();
    altered.push(if last == 'A' { 'B' } else { 'A' });
    vec![
        ("missing", None),
        ("empty", Some(String::new())),
        ("altered", Some(altered)),
        ("another browser's", Some(other_browser.to_string())),
        ("not base64", Some("!!not-a-token!!".to_string())),
    ]
}

async fn assert_refused(what: &str, resp: Response) {
    assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{what}");
    assert!(is_html(&resp), "{what}: an HTML page");
    assert!(
        set_cookie(&resp, "keyhold_session").is_none(),
        "{what}: no session started or ended"
    );
    let html = resp.text().await.unwrap();
    assert_eq!(h1(&html), "Sorry, this form has expired", "{what}");
}

fn with_token<'a>(
    token: &'a Option<String>,
    rest: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut fields: Vec<(&str, &str)> = token.iter().map(|t| ("csrf_token", t.as_str())).collect();
    fields.extend_from_slice(rest);
    fields
}

#[tokio::test]
async fn sign_up_needs_the_pages_token() {
    let app = spawn_app().await;
    let other = csrf_token(&app, &browser(), "/signup").await;
    for i in 0..bad_tokens("x", &other).len() {
        let client = browser();
        let right = csrf_token(&app, &client, "/signup").await;
        let (what, token) = bad_tokens(&right, &other).swap_remove(i);
        let email = format!("ann{i}@example.test");
        let resp = post_form(
            &app,
            &client,
            "/signup",
            &with_token(
                &token,
                &[("name", "Ann"), ("email", &email), ("password", PASSWORD)],
            ),
        )
        .await;
        assert_refused(&format!("sign-up with a {what} token"), resp).await;
        match app.core.sign_in(&email, PASSWORD, None).await {
            Err(DomainError::BadCredentials) => {}
            r => panic!(
                "{what}: an account was created: {:?}",
                r.map(|s| s.principal)
            ),
        }
    }
    assert_eq!(app.rows(ACCOUNTS), 0);

    // Control: the page's own token works.
    let client = browser();
    let right = csrf_token(&app, &client, "/signup").await;
    let resp = post_form(
        &app,
        &client,
        "/signup",
        &[
            ("csrf_token", &right),
            ("name", "Ann Smith"),
            ("email", "ann@example.test"),
            ("password", PASSWORD),
        ],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK, "the check-your-email page");
    assert_eq!(app.rows(ACCOUNTS), 1);
    app.stop().await;
}

#[tokio::test]
async fn sign_in_needs_the_pages_token() {
    let app = spawn_app().await;
    sign_up(&app, &browser(), "ann@example.test").await;
    let sessions = app.rows(SESSIONS);
    let other = csrf_token(&app, &browser(), "/signin").await;
    let client = browser();
    let right = csrf_token(&app, &client, "/signin").await;
    for (what, token) in bad_tokens(&right, &other) {
        let fields = with_token(
            &token,
            &[("email", "ann@example.test"), ("password", PASSWORD)],
        );
        let resp = post_form(&app, &client, "/signin", &fields).await;
        assert_refused(&format!("sign-in with a {what} token"), resp).await;
        assert_eq!(
            app.rows(SESSIONS),
            sessions,
            "{what}: no session was started"
        );
        let record = client.get(app.url("/record")).send().await.unwrap();
        assert_eq!(
            record.status(),
            StatusCode::SEE_OTHER,
            "{what}: not signed in"
        );
    }

    let fields = [
        ("csrf_token", right.as_str()),
        ("email", "ann@example.test"),
        ("password", PASSWORD),
    ];
    let resp = post_form(&app, &client, "/signin", &fields).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert!(set_cookie(&resp, "keyhold_session").is_some());
    assert_eq!(
        client
            .get(app.url("/record"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    app.stop().await;
}

#[tokio::test]
async fn sign_out_needs_the_pages_token() {
    let app = spawn_app().await;
    let client = browser();
    // A token from before sign-in: bound to no session, so no good after it.
    let stale = csrf_token(&app, &client, "/signin").await;
    crate::helpers::sign_up(&app, &client, "ann@example.test").await;
    let other = csrf_token(&app, &signed_in(&app, "bob@example.test").await, "/record").await;
    let right = csrf_token(&app, &client, "/record").await;
    assert_ne!(stale, right, "the token changes with the session");

    let mut tokens = bad_tokens(&right, &other);
    tokens.push(("pre-sign-in", Some(stale)));
    for (what, token) in tokens {
        let resp = post_form(&app, &client, "/signout", &with_token(&token, &[])).await;
        assert_refused(&format!("sign-out with a {what} token"), resp).await;
        let record = client.get(app.url("/record")).send().await.unwrap();
        assert_eq!(record.status(), StatusCode::OK, "{what}: still signed in");
    }

    let resp = post_form(&app, &client, "/signout", &[("csrf_token", &right)]).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&resp).as_deref(), Some("/"));
    let record = client.get(app.url("/record")).send().await.unwrap();
    assert_eq!(record.status(), StatusCode::SEE_OTHER, "signed out");
    app.stop().await;
}

#[tokio::test]
async fn adding_an_entry_needs_the_pages_token() {
    let app = spawn_app().await;
    let client = signed_in(&app, "ann@example.test").await;
    let other = csrf_token(
        &app,
        &signed_in(&app, "bob@example.test").await,
        "/record/entries/new",
    )
    .await;
    let right = csrf_token(&app, &client, "/record/entries/new").await;
    for (what, token) in bad_tokens(&right, &other) {
        let fields = entry_fields("", "Peanut allergy");
        let resp = post_form(
            &app,
            &client,
            "/record/entries",
            &with_token(&token, &fields[1..]),
        )
        .await;
        assert_refused(&format!("an entry with a {what} token"), resp).await;
        assert_eq!(app.rows(ENTRIES), 0, "{what}: nothing stored");
    }
    let record = client
        .get(app.url("/record"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!record.contains("Peanut allergy"));

    let resp = post_form(
        &app,
        &client,
        "/record/entries",
        &entry_fields(&right, "Peanut allergy"),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.rows(ENTRIES), 1);
    app.stop().await;
}

#[tokio::test]
async fn uploading_needs_the_pages_token() {
    let app = spawn_app().await;
    let client = signed_in(&app, "ann@example.test").await;
    let other = csrf_token(
        &app,
        &signed_in(&app, "bob@example.test").await,
        "/record/documents",
    )
    .await;
    let right = csrf_token(&app, &client, "/record/documents").await;
    for (what, token) in bad_tokens(&right, &other) {
        let form = upload_form(token.as_deref(), "Letter", "letter.pdf", pdf("forged"));
        let resp = client
            .post(app.url("/record/documents"))
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_refused(&format!("an upload with a {what} token"), resp).await;
        assert_eq!(app.rows(DOCUMENTS), 0, "{what}: nothing stored");
    }
    // A token that comes after the file is refused too: the file would be
    // read before the token was checked.
    let late = reqwest::multipart::Form::new()
        .text("title", "Letter")
        .text("category", "general")
        .part(
            "file",
            reqwest::multipart::Part::bytes(pdf("late")).file_name("letter.pdf"),
        )
        .text("csrf_token", right.clone());
    let resp = client
        .post(app.url("/record/documents"))
        .multipart(late)
        .send()
        .await
        .unwrap();
    assert_refused("an upload with its token last", resp).await;
    assert_eq!(app.rows(DOCUMENTS), 0);

    let form = upload_form(Some(&right), "Letter", "letter.pdf", pdf("real"));
    let resp = client
        .post(app.url("/record/documents"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.rows(DOCUMENTS), 1);
    app.stop().await;
}
