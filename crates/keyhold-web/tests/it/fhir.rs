//! The FHIR API's first slice over a real server: the CapabilityStatement,
//! Patient read under the same policy as the pages, and OperationOutcome for
//! every error.

use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{Client, StatusCode};
use serde_json::Value;

use crate::helpers::{browser, signed_in, spawn_app, TestApp, PASSWORD};

async fn fhir_get(
    app: &TestApp,
    client: &Client,
    path: &str,
    accept: Option<&str>,
) -> (StatusCode, String, Value) {
    let mut req = client.get(app.url(path));
    if let Some(a) = accept {
        req = req.header(ACCEPT, a);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let ct = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap_or(Value::Null);
    (status, ct, body)
}

/// The record `email` is the patient of (the account signed up through the pages).
async fn own_record(app: &TestApp, email: &str) -> keyhold_domain::PatientId {
    app.core
        .sign_in(email, PASSWORD, None)
        .await
        .unwrap()
        .principal
        .own_patient
        .unwrap()
}

fn assert_outcome(body: &Value, code: &str) {
    assert_eq!(body["resourceType"], "OperationOutcome", "{body}");
    assert_eq!(body["issue"][0]["severity"], "error", "{body}");
    assert_eq!(body["issue"][0]["code"], code, "{body}");
}

#[tokio::test]
async fn metadata_is_a_capability_statement_for_anyone() {
    let app = spawn_app().await;
    let (status, ct, body) = fhir_get(
        &app,
        &browser(),
        "/fhir/R4/metadata",
        Some("application/fhir+json"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(ct.starts_with("application/fhir+json"), "{ct}");
    assert_eq!(body["resourceType"], "CapabilityStatement");
    assert_eq!(body["fhirVersion"], "4.0.1");
    assert_eq!(body["rest"][0]["resource"][0]["type"], "Patient");

    let (status, ct, body) = fhir_get(
        &app,
        &browser(),
        "/fhir/R4/metadata",
        Some("application/xml"),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_ACCEPTABLE);
    assert!(ct.starts_with("application/fhir+json"), "{ct}");
    assert_outcome(&body, "not-supported");

    let (status, _, body) = fhir_get(&app, &browser(), "/fhir/R4/Observation/123", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_outcome(&body, "not-supported");
    app.stop().await;
}

#[tokio::test]
async fn a_patient_is_read_only_by_whom_the_policy_allows() {
    let app = spawn_app().await;
    let ann = signed_in(&app, "ann@example.test").await;
    let bob = signed_in(&app, "bob@example.test").await;
    let ann_record = own_record(&app, "ann@example.test").await;
    let path = format!("/fhir/R4/Patient/{ann_record}");

    let (status, ct, body) = fhir_get(&app, &ann, &path, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(ct.starts_with("application/fhir+json"), "{ct}");
    assert_eq!(body["resourceType"], "Patient");
    assert_eq!(body["id"], ann_record.to_string());
    assert_eq!(body["name"][0]["family"], "Person", "{body}");
    assert_eq!(body["telecom"][0]["value"], "ann@example.test", "{body}");

    // Another person's record, a malformed id and an unknown one look alike.
    for (who, p) in [
        (&bob, path.clone()),
        (&ann, "/fhir/R4/Patient/not-an-id".to_string()),
        (
            &ann,
            format!(
                "/fhir/R4/Patient/{}",
                keyhold_domain::PatientId::new_random()
            ),
        ),
    ] {
        let (status, _, body) = fhir_get(&app, who, &p, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{p}: {body}");
        assert_outcome(&body, "not-found");
        assert!(!body.to_string().contains("ann@example.test"));
    }

    // Not signed in: 401, in FHIR.
    let (status, _, body) = fhir_get(&app, &browser(), &path, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_outcome(&body, "login");
    app.stop().await;
}

#[tokio::test]
async fn entries_are_searched_by_patient_date_and_category_with_paging() {
    let app = spawn_app().await;
    let ann = signed_in(&app, "ann@example.test").await;
    let bob = signed_in(&app, "bob@example.test").await;
    for title in ["Penicillin", "Peanuts", "Latex"] {
        crate::helpers::add_entry(&app, &ann, title).await;
    }
    let id = own_record(&app, "ann@example.test").await;
    let search = |q: &str| format!("/fhir/R4/AllergyIntolerance?patient={id}{q}");

    let (status, _, body) = fhir_get(&app, &ann, &search(""), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["resourceType"], "Bundle");
    assert_eq!(body["type"], "searchset");
    assert_eq!(body["total"], 3);
    let titles: Vec<&str> = body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["code"]["text"].as_str().unwrap())
        .collect();
    assert!(
        titles.contains(&"Penicillin") && titles.contains(&"Latex"),
        "{titles:?}"
    );
    assert_eq!(
        body["entry"][0]["resource"]["patient"]["reference"],
        format!("Patient/{id}")
    );

    // The helper's entries are dated 14 March 2024, in General.
    for (q, n) in [
        ("&date=ge2024-03-14", 3),
        ("&date=gt2024-03-14", 0),
        ("&date=ge2024-01-01&date=le2024-12-31", 3),
        ("&date=2024-03-15", 0),
        ("&_tag=general", 3),
        ("&_tag=mental_health", 0),
    ] {
        let (status, _, body) = fhir_get(&app, &ann, &search(q), None).await;
        assert_eq!(status, StatusCode::OK, "{q}: {body}");
        assert_eq!(body["total"], n, "{q}");
    }
    // Another kind of entry: none of these.
    let (_, _, body) = fhir_get(
        &app,
        &ann,
        &format!("/fhir/R4/Condition?patient={id}"),
        None,
    )
    .await;
    assert_eq!(body["total"], 0);

    // Paging: two, then the rest through the `next` link.
    let (_, _, first) = fhir_get(&app, &ann, &search("&_count=2"), None).await;
    assert_eq!(first["entry"].as_array().unwrap().len(), 2);
    let next = first["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "next")
        .expect("a next link")["url"]
        .as_str()
        .unwrap()
        .to_string();
    let next_path = &next[next.find("/fhir/R4/").unwrap()..];
    let (_, _, second) = fhir_get(&app, &ann, next_path, None).await;
    assert_eq!(second["entry"].as_array().unwrap().len(), 1);
    assert!(second["link"]
        .as_array()
        .unwrap()
        .iter()
        .all(|l| l["relation"] != "next"));

    // Malformed searches are 400 OperationOutcomes; another person's, 404.
    for q in [
        format!("/fhir/R4/AllergyIntolerance?patient={id}&date=yesterday"),
        format!("/fhir/R4/AllergyIntolerance?patient={id}&colour=blue"),
        format!("/fhir/R4/AllergyIntolerance?patient={id}&_count=0"),
        "/fhir/R4/AllergyIntolerance".to_string(),
    ] {
        let (status, _, body) = fhir_get(&app, &ann, &q, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{q}: {body}");
        assert_outcome(&body, "invalid");
    }
    let (status, _, body) = fhir_get(&app, &bob, &search(""), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_outcome(&body, "not-found");
    assert!(!body.to_string().contains("Penicillin"));
    app.stop().await;
}
