//! Bad input gets a clear page with the right status, is never stored, and
//! never reaches a 500 or a panic.

use keyhold_domain::trees::{DOCUMENTS, ENTRIES};
use keyhold_domain::Settings;
use keyhold_web::WebConfig;
use reqwest::{Client, StatusCode};

use crate::helpers::{
    browser, csrf_token, entry_fields, fast, h1, is_html, pdf, post_form, signed_in, spawn_app,
    spawn_with, TestApp,
};

#[tokio::test]
async fn malformed_ids_in_paths_get_the_not_found_page() {
    let app = spawn_app().await;
    let client = signed_in(&app, "ann@example.test").await;
    let id = uuid::Uuid::new_v4();
    let paths = [
        "/record/entries/not-a-uuid".to_string(),
        "/record/entries/1234".to_string(),
        format!("/record/entries/{id}x"),
        format!("/record/entries/{}", &id.to_string()[..35]),
        "/record/entries/%00".to_string(),
        "/record/documents/zzz".to_string(),
        format!("/record/documents/{id}%20"),
        "/record/documents/..%2f..%2fCargo.toml".to_string(),
    ];
    for path in &paths {
        let resp = client.get(app.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "GET {path}");
        assert!(is_html(&resp), "GET {path}: an HTML page");
        assert_eq!(
            h1(&resp.text().await.unwrap()),
            "Page not found",
            "GET {path}"
        );
    }
    app.stop().await;
}

/// The page is a 422 whose error summary links to each field in `fields`,
/// and each link has a target on the page.
async fn assert_form_errors(what: &str, resp: reqwest::Response, fields: &[&str]) -> String {
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY, "{what}");
    assert!(is_html(&resp), "{what}: an HTML page");
    let html = resp.text().await.unwrap();
    let summary_at = html
        .find("nhsuk-error-summary")
        .unwrap_or_else(|| panic!("{what}: no error summary"));
    let summary = &html[summary_at..];
    let summary = &summary[..summary.find("</ul>").unwrap()];
    for field in fields {
        assert!(
            summary.contains(&format!("href=\"#{field}\"")),
            "{what}: no link to #{field} in {summary}"
        );
        assert!(
            html.contains(&format!("id=\"{field}\"")),
            "{what}: the link to #{field} has no target"
        );
    }
    assert_eq!(
        summary.matches("<li>").count(),
        fields.len(),
        "{what}: {summary}"
    );
    assert!(
        html.contains("<title>Error: "),
        "{what}: the title says there is an error"
    );
    html
}

/// What is wrong, the fields changed from a valid form, the fields in error.
type EntryCase<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<&'a str>);
/// What is wrong, title, category, file name, content, the field in error.
type UploadCase = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Vec<u8>,
    &'static str,
);
/// What is sent, by whom, where, with which content type, and the body.
type BodyCase<'a> = (&'a str, &'a Client, &'a str, Option<&'a str>, Vec<u8>);

#[tokio::test]
async fn an_invalid_entry_is_explained_and_not_stored() {
    let app = spawn_app().await;
    let client = signed_in(&app, "ann@example.test").await;
    let long_title = "x".repeat(201);
    let date = [
        ("date-day", "31"),
        ("date-month", "2"),
        ("date-year", "2024"),
    ];
    let cases: Vec<EntryCase> = vec![
        ("31 February", date.to_vec(), vec!["date-day"]),
        (
            "no date",
            vec![("date-day", ""), ("date-month", ""), ("date-year", "")],
            vec!["date-day"],
        ),
        (
            "letters in the date",
            vec![("date-month", "March")],
            vec!["date-day"],
        ),
        ("empty title", vec![("title", "   ")], vec!["title"]),
        ("long title", vec![("title", &long_title)], vec!["title"]),
        ("unknown kind", vec![("kind", "document")], vec!["kind"]),
        (
            "unknown category",
            vec![("category", "secret")],
            vec!["category"],
        ),
        (
            "all at once",
            vec![
                ("kind", ""),
                ("title", ""),
                ("date-day", "31"),
                ("date-month", "2"),
                ("date-year", "2024"),
                ("category", ""),
            ],
            vec!["kind", "title", "date-day", "category"],
        ),
    ];
    for (what, changes, fields) in cases {
        let token = csrf_token(&app, &client, "/record/entries/new").await;
        let mut form = entry_fields(&token, "Peanut allergy");
        for (name, value) in changes {
            form.iter_mut().find(|(n, _)| *n == name).unwrap().1 = value;
        }
        let resp = post_form(&app, &client, "/record/entries", &form).await;
        let html = assert_form_errors(what, resp, &fields).await;
        assert_eq!(app.rows(ENTRIES), 0, "{what}: nothing stored");

        // The page carries a working token: corrected, the form goes through.
        let again = crate::helpers::csrf_in(&html).unwrap();
        let resp = post_form(
            &app,
            &client,
            "/record/entries",
            &entry_fields(&again, what),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "{what}: corrected");
        let mut b = keyhold_storage::Batch::new();
        for item in app.core.store().scan(ENTRIES, b"") {
            b.delete(ENTRIES, item.unwrap().0);
        }
        app.core.store().submit(b).await.unwrap();
    }
    app.stop().await;
}

async fn upload_as(
    app: &TestApp,
    client: &Client,
    title: &str,
    category: &str,
    filename: &str,
    bytes: Vec<u8>,
) -> reqwest::Response {
    let token = csrf_token(app, client, "/record/documents").await;
    let part = reqwest::multipart::Part::bytes(bytes).file_name(filename.to_string());
    let form = reqwest::multipart::Form::new()
        .text("csrf_token", token)
        .text("title", title.to_string())
        .text("category", category.to_string())
        .part("file", part);
    client
        .post(app.url("/record/documents"))
        .multipart(form)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_file_that_is_not_what_it_claims_is_refused() {
    let app = spawn_app().await;
    let client = signed_in(&app, "ann@example.test").await;
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    // (what, title, category, file name, content, the field in error)
    let bad = |what, filename, bytes| (what, "Letter", "general", filename, bytes, "file");
    let cases: Vec<UploadCase> = vec![
        bad(
            "html as .pdf",
            "letter.pdf",
            b"<html><script>alert(1)</script>".to_vec(),
        ),
        bad("png as .pdf", "letter.pdf", png.clone()),
        bad("pdf as .png", "letter.png", pdf("x")),
        bad("an .exe", "setup.exe", b"MZ\x90\0".to_vec()),
        bad("no extension", "letter", pdf("x")),
        bad("an empty file", "letter.pdf", Vec::new()),
        ("no title", " ", "general", "letter.pdf", pdf("x"), "title"),
        (
            "unknown category",
            "Letter",
            "secret",
            "letter.pdf",
            pdf("x"),
            "category",
        ),
    ];
    for (what, title, category, filename, bytes, field) in cases {
        let resp = upload_as(&app, &client, title, category, filename, bytes).await;
        assert_form_errors(what, resp, &[field]).await;
        assert_eq!(app.rows(DOCUMENTS), 0, "{what}: nothing stored");
    }
    // Control: a real PNG named .png is taken.
    let resp = upload_as(&app, &client, "Scan", "general", "scan.png", png).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.rows(DOCUMENTS), 1);
    app.stop().await;
}

#[tokio::test]
async fn an_upload_over_the_limit_gets_the_too_large_page() {
    let settings = Settings {
        max_upload_bytes: 100_000,
        ..fast()
    };
    let app = spawn_with(
        settings,
        WebConfig {
            secure_cookies: false,
            nhs_login: None,
        },
    )
    .await;
    let client = signed_in(&app, "ann@example.test").await;

    // Just over the limit, and far over it (beyond what the route reads).
    for size in [100_001, 150_000, 3_000_000] {
        let mut big = pdf("big");
        big.resize(size, b' ');
        let resp = upload_as(&app, &client, "Scan", "general", "scan.pdf", big).await;
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE, "{size} bytes");
        assert!(is_html(&resp), "{size} bytes: an HTML page");
        assert_eq!(
            h1(&resp.text().await.unwrap()),
            "The file is too large",
            "{size} bytes"
        );
        assert_eq!(app.rows(DOCUMENTS), 0, "{size} bytes: nothing stored");
    }
    // Control: exactly at the limit is fine.
    let mut fits = pdf("fits");
    fits.resize(100_000, b' ');
    let resp = upload_as(&app, &client, "Scan", "general", "scan.pdf", fits).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.rows(DOCUMENTS), 1);
    app.stop().await;
}

#[tokio::test]
async fn bodies_of_the_wrong_kind_get_a_client_error_page() {
    let app = spawn_app().await;
    let anonymous = browser();
    let token = csrf_token(&app, &anonymous, "/signin").await;
    let signed = signed_in(&app, "ann@example.test").await;
    let json = format!(r#"{{"csrf_token":"{token}","email":"ann@example.test","password":"x"}}"#);
    let form = Some("application/x-www-form-urlencoded");
    let multipart = Some("multipart/form-data; boundary=x");
    let json_type = Some("application/json");
    let (anon, signed) = (&anonymous, &signed);
    // (what, who, where, content type, body)
    let cases: Vec<BodyCase> = vec![
        (
            "json sign-in",
            anon,
            "/signin",
            json_type,
            json.clone().into_bytes(),
        ),
        (
            "text sign-in",
            anon,
            "/signin",
            Some("text/plain"),
            b"email=a".to_vec(),
        ),
        (
            "untyped sign-in",
            anon,
            "/signin",
            None,
            b"email=a".to_vec(),
        ),
        (
            "xml sign-in",
            anon,
            "/signin",
            Some("application/xml"),
            b"<a/>".to_vec(),
        ),
        (
            "multipart sign-in",
            anon,
            "/signin",
            multipart,
            b"--x--".to_vec(),
        ),
        (
            "binary sign-in",
            anon,
            "/signin",
            form,
            vec![0xff, 0xfe, b'%', 0],
        ),
        ("huge sign-in", anon, "/signin", form, vec![b'a'; 200_000]),
        (
            "json sign-up",
            anon,
            "/signup",
            json_type,
            json.into_bytes(),
        ),
        (
            "json entry",
            signed,
            "/record/entries",
            json_type,
            b"{}".to_vec(),
        ),
        (
            "form upload",
            signed,
            "/record/documents",
            form,
            b"title=x".to_vec(),
        ),
        (
            "bad multipart upload",
            signed,
            "/record/documents",
            multipart,
            b"junk".to_vec(),
        ),
    ];
    for (what, client, path, content_type, body) in cases {
        let mut req = client.post(app.url(path)).body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{what}: no response: {e}"));
        assert!(resp.status().is_client_error(), "{what}: {}", resp.status());
        assert!(is_html(&resp), "{what}: an HTML page");
        let html = resp.text().await.unwrap();
        assert!(!h1(&html).is_empty(), "{what}: a heading");
    }
    let health = anonymous.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK, "the server is still up");
    app.stop().await;
}

#[tokio::test]
async fn a_too_long_password_is_refused_not_hashed() {
    let app = spawn_app().await;
    let client = browser();
    let token = csrf_token(&app, &client, "/signup").await;
    let long = "p".repeat(10_000);
    let fields = [
        ("csrf_token", token.as_str()),
        ("name", "Ann Smith"),
        ("email", "ann@example.test"),
        ("password", long.as_str()),
    ];
    let resp = post_form(&app, &client, "/signup", &fields).await;
    assert_form_errors("a 10 000 character password", resp, &["password"]).await;
    app.stop().await;
}
