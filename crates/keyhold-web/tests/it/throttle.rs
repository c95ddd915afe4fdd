//! Sign-in limits through the real server: repeated failures get a 429 page
//! that says how long to wait, with a numeric `Retry-After`; the client's
//! address is the connection's; other pages and other people are unaffected.

use keyhold_domain::{Limit, Settings, SignInLimits};
use reqwest::{Client, StatusCode};
use time::Duration;

use crate::helpers::{browser, csrf_token, fast, h1, header, post_form, spawn_with, TestApp};
use crate::helpers::{is_html, PASSWORD};

/// Waits of ten minutes, so that a slow machine cannot outlast one mid-test.
fn slow() -> Settings {
    let limit = |free_failures| Limit {
        free_failures,
        base: Duration::minutes(10),
        cap: Duration::minutes(15),
    };
    Settings {
        sign_in_limits: SignInLimits {
            per_address: limit(20),
            per_account_address: limit(5),
            per_account: limit(50),
            ..SignInLimits::default()
        },
        ..fast()
    }
}

async fn app() -> TestApp {
    spawn_with(
        slow(),
        keyhold_web::WebConfig {
            secure_cookies: false,
            nhs_login: None,
            ..Default::default()
        },
    )
    .await
}

async fn sign_in(app: &TestApp, client: &Client, email: &str, password: &str) -> reqwest::Response {
    let token = csrf_token(app, client, "/signin").await;
    post_form(
        app,
        client,
        "/signin",
        &[
            ("csrf_token", &token),
            ("email", email),
            ("password", password),
        ],
    )
    .await
}

#[tokio::test]
async fn repeated_failures_get_a_429_page_that_says_how_long_to_wait() {
    let app = app().await;
    app.core
        .create_account_for("Ann Smith", "ann@example.test", PASSWORD, None)
        .await
        .unwrap();
    let client = browser();
    for i in 0..5 {
        let resp = sign_in(&app, &client, "ann@example.test", "not the password").await;
        assert_eq!(
            resp.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "failure {i}: the form again"
        );
    }

    // Now even the right password is turned away, with a page that says why.
    let resp = sign_in(&app, &client, "ann@example.test", PASSWORD).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = header(&resp, "retry-after")
        .expect("a Retry-After header")
        .parse()
        .expect("Retry-After in seconds");
    assert!((541..=600).contains(&retry), "Retry-After: {retry}");
    assert!(is_html(&resp));
    let html = resp.text().await.unwrap();
    assert_eq!(h1(&html), "Too many attempts to sign in");
    assert!(html.contains("Wait 10 minutes and try again"), "{html}");

    // Pages are served as usual, to this browser and to others.
    for path in ["/", "/signin"] {
        let resp = client.get(app.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "GET {path}");
    }
    // Someone else signing in from the same address is not held up.
    app.core
        .create_account_for("Bob Jones", "bob@example.test", PASSWORD, None)
        .await
        .unwrap();
    let resp = sign_in(&app, &browser(), "bob@example.test", PASSWORD).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER, "Bob signs in");
    app.stop().await;
}

#[tokio::test]
async fn the_limit_per_address_uses_the_connections_address() {
    let app = app().await;
    let client = browser();
    // Twenty different (unknown) accounts from one address...
    for i in 0..20 {
        let resp = sign_in(
            &app,
            &client,
            &format!("guess{i}@example.test"),
            "password1",
        )
        .await;
        assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY, "guess {i}");
    }
    // ...and the next, for yet another account, waits: only the address
    // links it to the others.
    let resp = sign_in(&app, &client, "guess20@example.test", "password1").await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(header(&resp, "retry-after").is_some());
    app.stop().await;
}
