//! Record pages need a session; and one person's ids lead nowhere for
//! another: "not yours" looks exactly like "not there".

use std::io::Cursor;

use reqwest::{Client, StatusCode};

use crate::helpers::{
    add_entry, browser, h1, is_html, location, pdf, signed_in, spawn_app, upload, TestApp,
};

fn record_paths() -> Vec<String> {
    let id = uuid::Uuid::new_v4();
    vec![
        "/record".into(),
        "/record/demographics".into(),
        "/record/entries/new".into(),
        "/record/documents".into(),
        "/record/documents.zip".into(),
        format!("/record/entries/{id}"),
        format!("/record/documents/{id}"),
    ]
}

async fn assert_sent_to_sign_in(app: &TestApp, client: &Client, what: &str) {
    for path in record_paths() {
        let resp = client.get(app.url(&path)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "{what}: GET {path}");
        assert_eq!(
            location(&resp).as_deref(),
            Some("/signin"),
            "{what}: GET {path}"
        );
    }
}

#[tokio::test]
async fn record_pages_send_a_visitor_without_a_session_to_sign_in() {
    let app = spawn_app().await;
    assert_sent_to_sign_in(&app, &browser(), "never signed in").await;

    // A made-up session cookie is no session.
    let forged = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for path in record_paths() {
        let resp = forged
            .get(app.url(&path))
            .header(
                "cookie",
                "keyhold_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            StatusCode::SEE_OTHER,
            "forged session: GET {path}"
        );
    }

    // Control, then after signing out.
    let client = signed_in(&app, "ann@example.test").await;
    assert_eq!(
        client
            .get(app.url("/record"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let token = crate::helpers::csrf_token(&app, &client, "/record").await;
    let out = crate::helpers::post_form(&app, &client, "/signout", &[("csrf_token", &token)]).await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert_sent_to_sign_in(&app, &client, "signed out").await;
    app.stop().await;
}

/// Status, heading and title of a page: what a person can tell apart.
async fn looks(client: &Client, url: &str) -> (StatusCode, String, String) {
    let resp = client.get(url).send().await.unwrap();
    let status = resp.status();
    assert!(is_html(&resp), "{url}: an HTML page");
    let html = resp.text().await.unwrap();
    let title = html
        .split("<title>")
        .nth(1)
        .and_then(|t| t.split("</title>").next())
        .unwrap_or("")
        .to_string();
    (status, h1(&html), title)
}

fn zip_names(bytes: Vec<u8>) -> Vec<String> {
    let zip = zip::ZipArchive::new(Cursor::new(bytes)).expect("a readable zip");
    zip.file_names().map(|n| n.unwrap().into_owned()).collect()
}

#[tokio::test]
async fn another_persons_ids_look_like_ids_that_do_not_exist() {
    let app = spawn_app().await;
    let ann = signed_in(&app, "ann@example.test").await;
    let bob = signed_in(&app, "bob@example.test").await;
    let ann_pdf = pdf("ANN-SECRET-LETTER-7f3a");
    let entry = add_entry(&app, &ann, "Ann peanut allergy").await;
    let doc = upload(&app, &ann, "Ann letter", "ann-letter.pdf", ann_pdf.clone()).await;
    upload(&app, &bob, "Bob scan", "bob-scan.pdf", pdf("bob")).await;

    // Control: Ann reaches both.
    let resp = ann
        .get(app.url(&format!("/record/entries/{entry}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.text().await.unwrap().contains("Ann peanut allergy"));
    let resp = ann
        .get(app.url(&format!("/record/documents/{doc}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/pdf");
    assert_eq!(resp.bytes().await.unwrap().to_vec(), ann_pdf);

    // Bob gets what a random id gets.
    let random = uuid::Uuid::new_v4();
    for kind in ["entries", "documents"] {
        let real = if kind == "entries" { &entry } else { &doc };
        let theirs = looks(&bob, &app.url(&format!("/record/{kind}/{real}"))).await;
        let nothing = looks(&bob, &app.url(&format!("/record/{kind}/{random}"))).await;
        assert_eq!(theirs.0, StatusCode::NOT_FOUND, "{kind}: Ann's id for Bob");
        assert_eq!(
            theirs, nothing,
            "{kind}: Ann's id and a random id look different to Bob"
        );
    }

    // Bob's zip holds Bob's file only; Ann's holds Ann's.
    let bobs = bob
        .get(app.url("/record/documents.zip"))
        .send()
        .await
        .unwrap();
    assert_eq!(bobs.status(), StatusCode::OK);
    let bytes = bobs.bytes().await.unwrap().to_vec();
    assert!(
        !bytes.windows(22).any(|w| w == b"ANN-SECRET-LETTER-7f3a"),
        "Ann's content in Bob's zip"
    );
    assert_eq!(zip_names(bytes), vec!["bob-scan.pdf".to_string()]);
    let anns = ann
        .get(app.url("/record/documents.zip"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    assert_eq!(zip_names(anns), vec!["ann-letter.pdf".to_string()]);

    // And Bob's record shows nothing of Ann's.
    let record = bob
        .get(app.url("/record"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!record.contains("peanut"));
    app.stop().await;
}
