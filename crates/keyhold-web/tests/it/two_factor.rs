//! Two-factor pages over a real server: turning it on (the QR code and key),
//! the code step of sign-in, and "confirm it's you" in front of sharing.

use keyhold_domain::trees::SESSIONS;
use keyhold_domain::two_factor::code_at;
use keyhold_storage::Batch;
use reqwest::StatusCode;
use time::OffsetDateTime;

use crate::helpers::{
    browser, csrf_token, location, post_form, set_cookie, signed_in, spawn_app, TestApp, PASSWORD,
};

async fn page(app: &TestApp, client: &reqwest::Client, path: &str) -> (StatusCode, String) {
    let resp = client.get(app.url(path)).send().await.unwrap();
    (resp.status(), resp.text().await.unwrap())
}

fn between<'a>(html: &'a str, start: &str, end: &str) -> &'a str {
    let at = html
        .find(start)
        .unwrap_or_else(|| panic!("{start} not in page"))
        + start.len();
    &html[at..at + html[at..].find(end).unwrap()]
}

/// Makes every session look signed in 20 minutes ago (past "confirm it's you").
async fn age_sessions(app: &TestApp) {
    let old = (OffsetDateTime::now_utc() - time::Duration::minutes(20))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let mut batch = Batch::new();
    for row in app.core.store().scan(SESSIONS, b"") {
        let (k, v) = row.unwrap();
        let mut json: serde_json::Value = serde_json::from_slice(&v).unwrap();
        json["created_at"] = old.clone().into();
        json.as_object_mut().unwrap().remove("confirmed_at");
        batch.put(SESSIONS, k, serde_json::to_vec(&json).unwrap());
    }
    app.core.store().submit(batch).await.unwrap();
}

#[tokio::test]
async fn two_factor_is_turned_on_and_then_asked_at_sign_in() {
    let app = spawn_app().await;
    let me = signed_in(&app, "tia@example.test").await;

    let (status, html) = page(&app, &me, "/account/two-factor").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("src=\"data:image/svg+xml;base64,"),
        "a QR code image"
    );
    let secret = between(&html, "<code id=\"secret\">", "</code>").to_string();
    assert!(secret.len() >= 32, "a 160-bit key in base32: {secret}");

    let token = csrf_token(&app, &me, "/account/two-factor").await;
    let wrong = post_form(
        &app,
        &me,
        "/account/two-factor",
        &[("csrf_token", &token), ("code", "000000")],
    )
    .await;
    assert_eq!(wrong.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let code = code_at(&secret, OffsetDateTime::now_utc()).unwrap();
    let on = post_form(
        &app,
        &me,
        "/account/two-factor",
        &[("csrf_token", &token), ("code", &code)],
    )
    .await;
    assert_eq!(on.status(), StatusCode::OK);
    let html = on.text().await.unwrap();
    let list = between(
        &html,
        "<ul class=\"nhsuk-list\" id=\"recovery-codes\">",
        "</ul>",
    );
    let codes: Vec<&str> = list
        .split("<code>")
        .skip(1)
        .map(|c| &c[..c.find("</code>").unwrap()])
        .collect();
    assert_eq!(codes.len(), 10);

    // Another browser: the password leads to the code step, not a session.
    let other = browser();
    let token = csrf_token(&app, &other, "/signin").await;
    let resp = post_form(
        &app,
        &other,
        "/signin",
        &[
            ("csrf_token", &token),
            ("email", "tia@example.test"),
            ("password", PASSWORD),
        ],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert!(location(&resp).unwrap().starts_with("/signin/code"));
    assert!(
        set_cookie(&resp, "keyhold_session").is_none(),
        "no session before the code"
    );
    assert!(set_cookie(&resp, "keyhold_pending").is_some());
    let (status, _) = page(&app, &other, "/record").await;
    assert_eq!(status, StatusCode::SEE_OTHER, "still signed out");

    let token = csrf_token(&app, &other, "/signin/code").await;
    let bad = post_form(
        &app,
        &other,
        "/signin/code",
        &[("csrf_token", &token), ("code", "123456"), ("next", "/")],
    )
    .await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.text().await.unwrap().contains("4 more times"));
    let good = post_form(
        &app,
        &other,
        "/signin/code",
        &[("csrf_token", &token), ("code", codes[0]), ("next", "/")],
    )
    .await;
    assert_eq!(good.status(), StatusCode::SEE_OTHER);
    assert!(set_cookie(&good, "keyhold_session").is_some());
    let (status, _) = page(&app, &other, "/record").await;
    assert_eq!(status, StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn sharing_asks_to_confirm_it_is_you_after_a_while() {
    let app = spawn_app().await;
    let me = signed_in(&app, "uma@example.test").await;
    let (status, _) = page(&app, &me, "/record/sharing").await;
    assert_eq!(status, StatusCode::OK, "just signed in: no question");

    age_sessions(&app).await;
    let resp = me.get(app.url("/record/sharing/new")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        location(&resp).as_deref(),
        Some("/account/confirm-it-is-you?next=%2Frecord%2Fsharing%2Fnew")
    );
    // A form posted meanwhile changes nothing and goes the same way.
    let token = csrf_token(&app, &me, "/record").await;
    let resp = post_form(&app, &me, "/record/sharing", &[("csrf_token", &token)]).await;
    assert_eq!(
        location(&resp).as_deref(),
        Some("/account/confirm-it-is-you?next=%2Frecord%2Fsharing")
    );
    // Two-factor settings too.
    let resp = me.get(app.url("/account/two-factor")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);

    let token = csrf_token(
        &app,
        &me,
        "/account/confirm-it-is-you?next=%2Frecord%2Fsharing%2Fnew",
    )
    .await;
    let wrong = post_form(
        &app,
        &me,
        "/account/confirm-it-is-you",
        &[
            ("csrf_token", &token),
            ("answer", "not my password"),
            ("next", "/record/sharing/new"),
        ],
    )
    .await;
    assert_eq!(wrong.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let right = post_form(
        &app,
        &me,
        "/account/confirm-it-is-you",
        &[
            ("csrf_token", &token),
            ("answer", PASSWORD),
            ("next", "/record/sharing/new"),
        ],
    )
    .await;
    assert_eq!(right.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&right).as_deref(), Some("/record/sharing/new"));
    let (status, _) = page(&app, &me, "/record/sharing/new").await;
    assert_eq!(status, StatusCode::OK);
    app.stop().await;
}
