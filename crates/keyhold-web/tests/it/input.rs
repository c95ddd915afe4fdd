//! Bad input gets a clear page with the right status, is never stored, and
//! never reaches a 500 or a panic.

use std::io::Cursor;

use keyhold_domain::trees::{DOCUMENTS, ENTRIES};
use keyhold_domain::Settings;
use keyhold_web::WebConfig;
use reqwest::{Client, StatusCode};

use crate::helpers::{
    browser, csrf_token, document_ids, entry_fields, fast, h1, header, is_html, pdf, post_form,
    signed_in, spawn_app, spawn_with, TestApp,
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
            ..Default::default()
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

/// A Word document (a zip with the two parts Word needs), with `extra`
/// further empty entries.
fn docx(extra: usize) -> Vec<u8> {
    use std::io::Write;
    let mut buf = Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut buf);
        let o = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        z.start_file("[Content_Types].xml", o).unwrap();
        z.write_all(b"<Types/>").unwrap();
        z.start_file("word/document.xml", o).unwrap();
        z.write_all(b"<w:document/>").unwrap();
        for i in 0..extra {
            z.start_file(format!("x/{i}"), o).unwrap();
        }
        z.finish().unwrap();
    }
    buf.into_inner()
}

/// `docx(0)` whose directory claims `word/document.xml` expands to 4 GiB:
/// what a zip bomb declares, without the test having to build one.
fn docx_bomb() -> Vec<u8> {
    let mut bytes = docx(0);
    let name = b"word/document.xml";
    let at = (0..bytes.len() - 4)
        .find(|&i| bytes[i..].starts_with(b"PK\x01\x02") && bytes[i + 46..].starts_with(name))
        .unwrap();
    // Central directory header: the uncompressed size is at offset 24.
    bytes[at + 24..at + 28].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    bytes
}

#[tokio::test]
async fn upload_attacks_are_refused_cleanly_and_names_cannot_escape() {
    let app = spawn_app().await;
    let client = signed_in(&app, "ann@example.test").await;
    let jpeg = [0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F', b'I', b'F', 0];
    let mut html_then_pdf = b"<html><script>alert(1)</script>".to_vec();
    html_then_pdf.extend_from_slice(&pdf("x"));
    let mut jpeg_then_zip = jpeg.to_vec();
    jpeg_then_zip.extend_from_slice(&docx(0));
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        ("a zip bomb inside a .docx", "letter.docx", docx_bomb()),
        ("a .docx of 10,001 parts", "letter.docx", docx(10_000)),
        ("html with a PDF inside", "letter.pdf", html_then_pdf),
        (
            "a JPEG with a Word document after it",
            "letter.docx",
            jpeg_then_zip,
        ),
        ("an HTML name", "letter.html", pdf("x")),
        ("a double extension", "letter.pdf.html", pdf("x")),
    ];
    for (what, filename, bytes) in cases {
        let resp = upload_as(&app, &client, "Letter", "general", filename, bytes).await;
        assert_form_errors(what, resp, &["file"]).await;
        assert_eq!(app.rows(DOCUMENTS), 0, "{what}: nothing stored");
    }
    // Control: the same document without the forged size is a Word file.
    let resp = upload_as(&app, &client, "Letter", "general", "letter.docx", docx(0)).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER, "a real .docx");

    // Control characters in a part's headers never reach the handler: the
    // multipart parser refuses them, with the error page, storing nothing.
    let resp = upload_as(
        &app,
        &client,
        "Scan",
        "general",
        "evil\u{7}\u{1b}[31m.jpg",
        jpeg.to_vec(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(is_html(&resp));
    assert_eq!(app.rows(DOCUMENTS), 1, "only the real .docx");

    // A name with a path and odd characters: stored as its last part,
    // cleaned, and sent back only as an attachment of the detected type.
    let resp = upload_as(
        &app,
        &client,
        "Scan",
        "general",
        "..\\..\\windows\\evil<b>\"name\".jpg",
        jpeg.to_vec(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let (_, html) = crate::helpers::get(&app, &client, "/record/documents").await;
    assert!(
        !html.contains('\u{1b}') && !html.contains("windows"),
        "{html}"
    );
    let scan = document_ids(&app, &client).await;
    let mut downloaded = Vec::new();
    for id in scan {
        let resp = client
            .get(app.url(&format!("/record/documents/{id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let disposition = header(&resp, "content-disposition").unwrap();
        assert!(
            disposition.starts_with("attachment; filename=\""),
            "{disposition}"
        );
        assert!(
            !disposition.contains(['/', '\\', '<']) && !disposition.contains(".."),
            "{disposition}"
        );
        assert_eq!(
            header(&resp, "x-content-type-options").as_deref(),
            Some("nosniff")
        );
        downloaded.push((disposition, header(&resp, "content-type").unwrap()));
    }
    assert!(
        downloaded
            .iter()
            .any(|(d, t)| d == "attachment; filename=\"evil_b_name.jpg\"" && t == "image/jpeg"),
        "{downloaded:?}"
    );
    app.stop().await;
}
