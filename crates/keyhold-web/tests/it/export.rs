//! "Download everything": the whole record and its documents in one zip,
//! optionally sealed with the person's passphrase (age), audited, and
//! refused to anyone who may not export the record. The same export backs
//! `Patient/$everything`.

use std::io::Read;

use keyhold_domain::passphrase::decrypt_with_passphrase;
use reqwest::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use reqwest::{Client, StatusCode};
use serde_json::Value;

use crate::helpers::{
    add_entry, csrf_token, header, pdf, post_form, signed_in, spawn_app, upload, TestApp, PASSWORD,
};

async fn download(app: &TestApp, client: &Client, pass: &str, again: &str) -> reqwest::Response {
    let token = csrf_token(app, client, "/record/export").await;
    post_form(
        app,
        client,
        "/record/export",
        &[
            ("csrf_token", &token),
            ("passphrase", pass),
            ("passphrase-again", again),
        ],
    )
    .await
}

/// The zip's files by name.
fn unzip(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    (0..z.len())
        .map(|i| {
            let mut f = z.by_index(i).unwrap();
            let mut out = Vec::new();
            f.read_to_end(&mut out).unwrap();
            (f.name().unwrap().to_string(), out)
        })
        .collect()
}

fn file<'a>(files: &'a [(String, Vec<u8>)], name: &str) -> &'a [u8] {
    &files
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("{name} in zip"))
        .1
}

#[tokio::test]
async fn the_patient_downloads_everything_plain_or_sealed_with_a_passphrase() {
    let app = spawn_app().await;
    let ann = signed_in(&app, "ann@example.test").await;
    add_entry(&app, &ann, "Peanut allergy").await;
    let letter = pdf("export-letter-marker");
    upload(&app, &ann, "Clinic letter", "letter.pdf", letter.clone()).await;

    // Plain: a zip with the README, the FHIR Bundle and the document.
    let resp = download(&app, &ann, "", "").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        header(&resp, CONTENT_TYPE.as_str()).as_deref(),
        Some("application/zip")
    );
    assert!(header(&resp, CONTENT_DISPOSITION.as_str())
        .unwrap()
        .contains("keyhold-record.zip"));
    let plain = resp.bytes().await.unwrap().to_vec();
    let files = unzip(&plain);
    assert_eq!(file(&files, "documents/letter.pdf"), letter.as_slice());
    assert!(String::from_utf8_lossy(file(&files, "README.txt")).contains("health information"));
    let bundle: Value = serde_json::from_slice(file(&files, "record.json")).unwrap();
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "collection");
    let resources: Vec<&Value> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .collect();
    assert_eq!(resources[0]["resourceType"], "Patient");
    assert!(resources.iter().any(
        |r| r["resourceType"] == "AllergyIntolerance" && r["code"]["text"] == "Peanut allergy"
    ));
    let doc = resources
        .iter()
        .find(|r| r["resourceType"] == "DocumentReference")
        .unwrap();
    assert_eq!(
        doc["content"][0]["attachment"]["url"],
        "documents/letter.pdf"
    );

    // Sealed: not a zip, no plaintext, and only the passphrase opens it.
    let pass = "a long enough passphrase";
    let resp = download(&app, &ann, pass, pass).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(header(&resp, CONTENT_DISPOSITION.as_str())
        .unwrap()
        .contains("keyhold-record.zip.age"));
    let sealed = resp.bytes().await.unwrap().to_vec();
    assert!(sealed.starts_with(b"age-encryption.org/v1"));
    assert!(!sealed
        .windows(b"export-letter-marker".len())
        .any(|w| w == b"export-letter-marker"));
    assert!(!sealed.windows(b"Peanut".len()).any(|w| w == b"Peanut"));
    assert!(decrypt_with_passphrase("the wrong passphrase!", &sealed).is_none());
    let opened = decrypt_with_passphrase(pass, &sealed).unwrap();
    let files = unzip(&opened);
    assert_eq!(file(&files, "documents/letter.pdf"), letter.as_slice());

    // Each export is in the access log.
    let log = ann
        .get(app.url("/record/access"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        log.matches("Downloaded the whole record").count(),
        2,
        "{log}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_weak_or_mistyped_passphrase_is_refused_and_nothing_is_downloaded() {
    let app = spawn_app().await;
    let ann = signed_in(&app, "ann@example.test").await;
    for (pass, again, message) in [
        ("short", "short", "12 characters or more"),
        (
            "a long enough passphrase",
            "a long enough passphrasf",
            "do not match",
        ),
        ("", "a long enough passphrase", "12 characters or more"),
    ] {
        let resp = download(&app, &ann, pass, again).await;
        assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let html = resp.text().await.unwrap();
        assert!(html.contains(message), "{message}");
        assert!(html.contains("nhsuk-error-summary"));
    }
    let log = ann
        .get(app.url("/record/access"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!log.contains("Downloaded the whole record"));
    app.stop().await;
}

#[tokio::test]
async fn nobody_else_exports_a_record_and_a_form_without_its_token_is_refused() {
    let app = spawn_app().await;
    let ann = signed_in(&app, "ann@example.test").await;
    add_entry(&app, &ann, "Peanut allergy").await;
    let record = app
        .core
        .sign_in("ann@example.test", PASSWORD, None)
        .await
        .unwrap()
        .principal
        .own_patient
        .unwrap();
    let bob = signed_in(&app, "bob@example.test").await;
    let theirs = format!("/people/{record}/record/export");
    assert_eq!(
        bob.get(app.url(&theirs)).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    let token = csrf_token(&app, &bob, "/record/export").await;
    let resp = post_form(
        &app,
        &bob,
        &theirs,
        &[
            ("csrf_token", &token),
            ("passphrase", ""),
            ("passphrase-again", ""),
        ],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = post_form(
        &app,
        &ann,
        "/record/export",
        &[("passphrase", ""), ("passphrase-again", "")],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);

    // The same rule over FHIR.
    let everything = format!("/fhir/R4/Patient/{record}/$everything");
    let resp = bob.get(app.url(&everything)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = ann.get(app.url(&everything)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let bundle: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    assert_eq!(bundle["type"], "searchset");
    assert_eq!(bundle["entry"][0]["resource"]["id"], record.to_string());
    assert!(bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["resource"]["code"]["text"] == "Peanut allergy"));
    app.stop().await;
}
