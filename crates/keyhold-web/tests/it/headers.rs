//! Security headers on every page, and no caching of record pages.

use reqwest::{Client, StatusCode};

use crate::helpers::{add_entry, browser, header, pdf, signed_in, spawn_app, upload, TestApp};

async fn check(app: &TestApp, client: &Client, path: &str, status: StatusCode, record_page: bool) {
    let resp = client.get(app.url(path)).send().await.unwrap();
    assert_eq!(resp.status(), status, "GET {path}");
    let get = |name: &str| header(&resp, name).unwrap_or_else(|| panic!("{path}: no {name}"));

    let csp = get("content-security-policy");
    assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
    assert!(!csp.contains("unsafe-eval"), "{path}: {csp}");
    assert!(
        csp.split(';').any(|d| d.trim() == "frame-ancestors 'none'"),
        "{path}: {csp}"
    );
    assert!(
        csp.split(';').any(|d| d.trim().starts_with("default-src")),
        "{path}: {csp}"
    );
    assert_eq!(get("x-content-type-options"), "nosniff", "{path}");
    assert_eq!(get("x-frame-options"), "DENY", "{path}");
    let referrer = get("referrer-policy");
    assert!(
        [
            "no-referrer",
            "same-origin",
            "strict-origin",
            "strict-origin-when-cross-origin"
        ]
        .contains(&referrer.as_str()),
        "{path}: referrer policy {referrer}"
    );
    if record_page {
        let cache = get("cache-control");
        assert!(
            cache.split(',').any(|d| d.trim() == "no-store"),
            "{path}: cache-control {cache}"
        );
    }
}

#[tokio::test]
async fn every_page_carries_the_security_headers() {
    let app = spawn_app().await;
    let anonymous = browser();
    for path in ["/", "/signin", "/signup"] {
        check(&app, &anonymous, path, StatusCode::OK, false).await;
    }
    check(
        &app,
        &anonymous,
        "/no-such-page",
        StatusCode::NOT_FOUND,
        false,
    )
    .await;
    check(&app, &anonymous, "/healthz", StatusCode::OK, false).await;
    check(&app, &anonymous, "/record", StatusCode::SEE_OTHER, false).await;

    let client = signed_in(&app, "ann@example.test").await;
    let entry = add_entry(&app, &client, "Peanut allergy").await;
    let doc = upload(&app, &client, "Letter", "letter.pdf", pdf("letter")).await;
    let record_pages = [
        "/record".to_string(),
        "/record/demographics".to_string(),
        "/record/entries/new".to_string(),
        format!("/record/entries/{entry}"),
        "/record/documents".to_string(),
        format!("/record/documents/{doc}"),
        "/record/documents.zip".to_string(),
    ];
    for path in &record_pages {
        check(&app, &client, path, StatusCode::OK, true).await;
    }
    check(
        &app,
        &client,
        "/record/entries/not-an-id",
        StatusCode::NOT_FOUND,
        true,
    )
    .await;
    app.stop().await;
}
