//! The health check and static assets; no way out of the assets folder.

use reqwest::StatusCode;

use crate::helpers::{browser, header, raw_request, spawn_app};

#[tokio::test]
async fn healthz_answers_ok_in_json() {
    let app = spawn_app().await;
    let resp = browser().get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let ct = header(&resp, "content-type").unwrap();
    assert!(ct.starts_with("application/json"), "{ct}");
    let body: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(body, serde_json::json!({ "status": "ok" }));
    app.stop().await;
}

#[tokio::test]
async fn assets_are_served_with_their_type() {
    let app = spawn_app().await;
    let resp = browser()
        .get(app.url("/assets/nhsuk-frontend.min.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let ct = header(&resp, "content-type").unwrap();
    assert!(ct.starts_with("text/css"), "{ct}");
    let on_disk = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/assets/nhsuk-frontend.min.css"
    ))
    .unwrap();
    assert_eq!(resp.bytes().await.unwrap().to_vec(), on_disk);
    app.stop().await;
}

#[tokio::test]
async fn unknown_assets_and_paths_out_of_the_folder_are_not_found() {
    let app = spawn_app().await;
    for path in [
        "/assets/nope.css",
        "/assets/README.md",
        "/assets/",
        "/assets/../Cargo.toml",
    ] {
        let resp = browser().get(app.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "GET {path}");
    }
    // Sent byte for byte, without the client tidying the path first.
    let raw = [
        "/assets/../Cargo.toml",
        "/assets/../../Cargo.toml",
        "/assets/..%2FCargo.toml",
        "/assets/..%2F..%2FCargo.toml",
        "/assets/%2e%2e%2fCargo.toml",
        "/assets/..%5CCargo.toml",
        "/assets/%2e%2e/Cargo.toml",
        "/assets/build.rs",
        "/assets/..%2Fbuild.rs",
        "/assets/..%2Fsrc%2Flib.rs",
    ];
    for path in raw {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            app.addr
        );
        let (status, response) = raw_request(app.addr, request).await;
        assert_eq!(status, 404, "GET {path}: {response}");
        assert!(
            !response.contains("[package]") && !response.contains("fn main"),
            "GET {path} leaked a file"
        );
    }
    app.stop().await;
}
