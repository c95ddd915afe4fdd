//! Organisation feeds over the real server: an administrator registers a
//! system's public keys on the page, the system gets a token with a signed
//! JWT (ES256 here; the browser suite signs RS512), posts transaction
//! Bundles that are written whole or not at all, and reads back under the
//! same policy as everyone. Hostile bodies are refused with an
//! OperationOutcome and change nothing.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use keyhold_domain::consent::Permissions;
use keyhold_domain::trees::{ENTRIES, FEED_IDENTIFIERS};
use keyhold_domain::{
    Category, Demographics, Email, EntryKind, GrantTerms, IdentityLevel, NewGrantee, NhsNumber,
    OrgId, PatientId,
};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Client, StatusCode};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};
use time::Duration;

use crate::helpers::{
    bare_client, csrf_token, post_form, principal_of, signed_in, spawn_app, TestApp, PASSWORD,
};

const NHS_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhs-number";
const IDS: &str = "https://riverside.example/ids";

/// A system's signing key, made fresh by ring.
struct SystemKey {
    pkcs8: Vec<u8>,
    jwk: Value,
}

fn system_key(kid: &str) -> SystemKey {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .unwrap()
        .as_ref()
        .to_vec();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng).unwrap();
    let point = pair.public_key().as_ref();
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
    });
    SystemKey { pkcs8, jwk }
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn token_url(app: &TestApp) -> String {
    format!("{}/fhir/R4/token", app.core.settings().public_url)
}

/// A client assertion; `edit` changes its claims before signing.
fn assertion(
    app: &TestApp,
    key: &SystemKey,
    client: &str,
    edit: impl FnOnce(&mut Value),
) -> String {
    let mut claims = json!({
        "iss": client, "sub": client, "aud": token_url(app),
        "jti": uuid::Uuid::new_v4().to_string(),
        "iat": now(), "exp": now() + 120,
    });
    edit(&mut claims);
    let mut header = Header::new(Algorithm::ES256);
    header.kid = key.jwk["kid"].as_str().map(String::from);
    encode(&header, &claims, &EncodingKey::from_ec_der(&key.pkcs8)).unwrap()
}

async fn ask_token(app: &TestApp, jwt: &str) -> (StatusCode, Value) {
    let resp = bare_client()
        .post(app.url("/fhir/R4/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", jwt),
        ])
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (
        status,
        serde_json::from_str(&resp.text().await.unwrap()).unwrap_or(Value::Null),
    )
}

async fn token(app: &TestApp, key: &SystemKey, client: &str) -> String {
    let (status, body) = ask_token(app, &assertion(app, key, client, |_| {})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 300);
    body["access_token"].as_str().unwrap().to_string()
}

async fn post_bundle(
    app: &TestApp,
    bearer: &str,
    body: impl Into<reqwest::Body>,
) -> (StatusCode, Value) {
    let resp = bare_client()
        .post(app.url("/fhir/R4"))
        .header(AUTHORIZATION, format!("Bearer {bearer}"))
        .header(CONTENT_TYPE, "application/fhir+json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Riverside, its administrator signed in, and one registered system.
struct Setup {
    app: TestApp,
    org: OrgId,
    admin: Client,
    client_id: String,
    key: SystemKey,
}

async fn setup() -> Setup {
    let app = spawn_app().await;
    let admin = signed_in(&app, "admin@riverside.test").await;
    let (org, _) = app
        .core
        .create_organisation("Riverside Medical Practice", "admin@riverside.test")
        .await
        .unwrap();
    let key = system_key("k1");
    let page = format!("/organisations/{org}/feeds");
    let csrf = csrf_token(&app, &admin, &page).await;
    let jwks = json!({ "keys": [key.jwk] }).to_string();
    let resp = post_form(
        &app,
        &admin,
        &page,
        &[
            ("csrf_token", &csrf),
            ("name", "Riverside EMIS"),
            ("jwks", &jwks),
        ],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let html = admin
        .get(app.url(&page))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let client_id = html
        .split("<code class=\"keyhold-client-id\">")
        .nth(1)
        .and_then(|s| s.split('<').next())
        .unwrap()
        .to_string();
    Setup {
        app,
        org,
        admin,
        client_id,
        key,
    }
}

/// A patient with an account verified to P9 who lets `org` read and, when
/// `contribute`, add General entries.
async fn patient(app: &TestApp, org: OrgId, nhs: &str, email: &str, contribute: bool) -> PatientId {
    let mut d = Demographics::empty();
    d.given_name = "Pat".into();
    d.family_name = "Feedwell".into();
    d.nhs_number = Some(NhsNumber::parse(nhs).unwrap());
    let record = app.core.register_patient(d).await.unwrap();
    app.core
        .create_account_for("Pat Feedwell", email, PASSWORD, Some(record))
        .await
        .unwrap();
    app.core
        .verify_identity(
            &Email::parse(email).unwrap(),
            IdentityLevel::P9,
            Some(NhsNumber::parse(nhs).unwrap()),
            "checked in person (test)",
        )
        .await
        .unwrap();
    let p = principal_of(app, email).await;
    app.core
        .share(
            &p,
            record,
            NewGrantee::Organisation(org),
            GrantTerms {
                permissions: Permissions {
                    read: true,
                    contribute,
                    act_on_behalf: false,
                },
                categories: [Category::General].into_iter().collect(),
                last_day: app.core.today() + Duration::days(30),
                purpose: "My GP surgery".into(),
            },
        )
        .await
        .unwrap();
    record
}

fn condition(nhs: &str, id: &str, title: &str) -> Value {
    json!({
        "fullUrl": format!("urn:uuid:{}", uuid::Uuid::new_v4()),
        "resource": {
            "resourceType": "Condition",
            "identifier": [{ "system": IDS, "value": id }],
            "subject": { "identifier": { "system": NHS_SYSTEM, "value": nhs } },
            "code": { "text": title },
            "onsetDateTime": "2021-05-04",
            "note": [{ "text": "Diagnosed at the practice" }]
        },
        "request": { "method": "PUT", "url": format!("Condition?identifier={IDS}|{id}") }
    })
}

fn allergy(nhs: &str, id: &str) -> Value {
    json!({
        "resource": {
            "resourceType": "AllergyIntolerance",
            "identifier": [{ "system": IDS, "value": id }],
            "patient": { "reference": format!("Patient?identifier={NHS_SYSTEM}|{nhs}") },
            "code": { "coding": [{ "system": "http://snomed.info/sct", "code": "91936005", "display": "Penicillin allergy" }] },
            "onsetDateTime": "2019-02-01T09:30:00Z"
        },
        "request": { "method": "POST", "url": "AllergyIntolerance" }
    })
}

fn bundle(entries: Vec<Value>) -> String {
    json!({ "resourceType": "Bundle", "type": "transaction", "entry": entries }).to_string()
}

const NHS_A: &str = "9434765919";
const NHS_B: &str = "9434765870";

#[tokio::test]
async fn a_system_feeds_entries_the_patient_sees_and_a_repost_updates_them() {
    let s = setup().await;
    let app = &s.app;
    let record = patient(app, s.org, NHS_A, "pat@example.test", true).await;
    let bearer = token(app, &s.key, &s.client_id).await;

    let (status, body) = post_bundle(
        app,
        &bearer,
        bundle(vec![
            condition(NHS_A, "C-1", "Hypertension"),
            allergy(NHS_A, "A-1"),
        ]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["type"], "transaction-response");
    assert_eq!(body["entry"][0]["response"]["status"], "201 Created");
    assert_eq!(body["entry"][1]["response"]["status"], "201 Created");
    let location = body["entry"][0]["response"]["location"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        location.starts_with("Condition/") && location.ends_with("/_history/1"),
        "{location}"
    );

    // The patient sees both, attributed to the practice.
    let pat = principal_of(app, "pat@example.test").await;
    let view = app.core.record(&pat, record).await.unwrap();
    let fed: Vec<_> = view
        .entries
        .iter()
        .filter(|e| e.source.org() == Some(s.org))
        .collect();
    assert_eq!(fed.len(), 2);
    assert!(fed
        .iter()
        .any(|e| e.kind == EntryKind::Condition && e.title == "Hypertension"));
    assert!(fed
        .iter()
        .any(|e| e.kind == EntryKind::Allergy && e.title == "Penicillin allergy"));

    // The same identifier again updates the entry instead of adding one.
    let entries_before = app.rows(ENTRIES);
    let (status, body) = post_bundle(
        app,
        &bearer,
        bundle(vec![condition(NHS_A, "C-1", "Essential hypertension")]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["entry"][0]["response"]["status"], "200 OK");
    let updated = body["entry"][0]["response"]["location"].as_str().unwrap();
    assert_eq!(updated.replace("_history/2", "_history/1"), location);
    assert_eq!(app.rows(ENTRIES), entries_before);
    let view = app.core.record(&pat, record).await.unwrap();
    let titles: Vec<_> = view.entries.iter().map(|e| e.title.as_str()).collect();
    assert!(titles.contains(&"Essential hypertension"), "{titles:?}");
    assert!(!titles.contains(&"Hypertension"), "{titles:?}");

    // The same identifier on another type is another entry, never an overwrite.
    let (status, body) = post_bundle(
        app,
        &bearer,
        bundle(vec![{
            let mut a = allergy(NHS_A, "C-1");
            a["resource"]["code"] = json!({ "text": "Latex allergy" });
            a
        }]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["entry"][0]["response"]["status"], "201 Created");
    let view = app.core.record(&pat, record).await.unwrap();
    let titles: Vec<_> = view.entries.iter().map(|e| e.title.as_str()).collect();
    assert!(
        titles.contains(&"Essential hypertension") && titles.contains(&"Latex allergy"),
        "{titles:?}"
    );

    // The system reads back what it sent, over the same policy.
    let resp = bare_client()
        .get(app.url(&format!("/fhir/R4/Condition?patient={record}")))
        .header(AUTHORIZATION, format!("Bearer {bearer}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let search: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    assert_eq!(search["total"], 1, "{search}");
    assert_eq!(
        search["entry"][0]["resource"]["code"]["text"],
        "Essential hypertension"
    );

    // Every write is in the patient's access log, under the organisation.
    let log = app
        .core
        .access_log(&pat, record, &Default::default())
        .await
        .unwrap();
    let by_system: Vec<_> = log
        .entries
        .iter()
        .filter(|e| e.role == "Organisation's system")
        .collect();
    assert!(by_system.len() >= 4, "{by_system:?}");
    assert!(by_system
        .iter()
        .all(|e| e.organisation.as_deref() == Some("Riverside Medical Practice")));
    assert!(by_system.iter().any(|e| e.what.starts_with("Changed")));
    s.app.stop().await;
}

#[tokio::test]
async fn a_bundle_with_any_bad_entry_writes_nothing() {
    let s = setup().await;
    let app = &s.app;
    patient(app, s.org, NHS_A, "pat@example.test", true).await;
    patient(app, s.org, NHS_B, "reader@example.test", false).await;
    let bearer = token(app, &s.key, &s.client_id).await;
    let before = (app.rows(ENTRIES), app.rows(FEED_IDENTIFIERS));

    // One entry does not parse: 400, the problem named by its place.
    let mut bad = condition(NHS_A, "C-3", "Asthma");
    bad["resource"]["onsetDateTime"] = json!("last spring");
    let (status, body) = post_bundle(
        app,
        &bearer,
        bundle(vec![
            condition(NHS_A, "C-1", "Hypertension"),
            allergy(NHS_A, "A-1"),
            bad,
        ]),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["resourceType"], "OperationOutcome");
    assert_eq!(
        body["issue"][0]["expression"][0], "Bundle.entry[2]",
        "{body}"
    );
    assert_eq!((app.rows(ENTRIES), app.rows(FEED_IDENTIFIERS)), before);

    // One entry is for a patient who only lets the practice read: 422, nothing written.
    let (status, body) = post_bundle(
        app,
        &bearer,
        bundle(vec![
            condition(NHS_A, "C-1", "Hypertension"),
            condition(NHS_B, "C-2", "Gout"),
        ]),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        body["issue"][0]["expression"][0], "Bundle.entry[1]",
        "{body}"
    );
    assert_eq!((app.rows(ENTRIES), app.rows(FEED_IDENTIFIERS)), before);

    // A title over the limit and an identifier used twice: 422, nothing written.
    let (status, body) = post_bundle(
        app,
        &bearer,
        bundle(vec![
            condition(NHS_A, "C-1", &"x".repeat(5000)),
            condition(NHS_A, "C-9", "One"),
            condition(NHS_A, "C-9", "Two"),
        ]),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let where_: Vec<_> = body["issue"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["expression"][0].as_str().unwrap().to_string())
        .collect();
    assert!(where_.contains(&"Bundle.entry[0]".to_string()), "{body}");
    assert!(where_.contains(&"Bundle.entry[2]".to_string()), "{body}");
    assert_eq!((app.rows(ENTRIES), app.rows(FEED_IDENTIFIERS)), before);
    s.app.stop().await;
}

#[tokio::test]
async fn hostile_bodies_get_an_operation_outcome_and_change_nothing() {
    let s = setup().await;
    let app = &s.app;
    patient(app, s.org, NHS_A, "pat@example.test", true).await;
    let bearer = token(app, &s.key, &s.client_id).await;
    let before = app.rows(ENTRIES);
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let unknown = bundle(vec![json!({
        "resource": { "resourceType": "Lizard", "identifier": [{ "system": "s", "value": "v" }] },
        "request": { "method": "POST", "url": "Lizard" }
    })]);
    let wrong_types = bundle(vec![json!({
        "resource": {
            "resourceType": "Condition", "identifier": "C-1", "subject": [1, 2],
            "code": { "text": ["not", "a", "string"] }, "onsetDateTime": 20210504
        },
        "request": { "method": "POST", "url": "Condition" }
    })]);
    let not_transaction = json!({ "resourceType": "Bundle", "type": "collection", "entry": [condition(NHS_A, "C-1", "x")] }).to_string();
    let too_many = bundle(
        (0..1001)
            .map(|i| condition(NHS_A, &format!("N-{i}"), "x"))
            .collect(),
    );
    let cases: Vec<(&str, String, StatusCode)> = vec![
        ("deep nesting", deep, StatusCode::BAD_REQUEST),
        (
            "not JSON",
            "{\"resourceType\": \"Bundle\",".into(),
            StatusCode::BAD_REQUEST,
        ),
        ("unknown resource type", unknown, StatusCode::BAD_REQUEST),
        ("wrong types", wrong_types, StatusCode::BAD_REQUEST),
        (
            "not a transaction",
            not_transaction,
            StatusCode::BAD_REQUEST,
        ),
        ("too many entries", too_many, StatusCode::BAD_REQUEST),
        (
            "huge body",
            format!("\"{}\"", "a".repeat(9 * 1024 * 1024)),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ];
    for (what, body, expected) in cases {
        let (status, outcome) = post_bundle(app, &bearer, body).await;
        assert_eq!(status, expected, "{what}: {outcome}");
        assert_eq!(outcome["resourceType"], "OperationOutcome", "{what}");
        assert_eq!(app.rows(ENTRIES), before, "{what}");
    }

    // Not FHIR JSON: 415. No token, a made-up token, a signed-in person: refused.
    let resp = bare_client()
        .post(app.url("/fhir/R4"))
        .header(AUTHORIZATION, format!("Bearer {bearer}"))
        .header(CONTENT_TYPE, "text/plain")
        .body(bundle(vec![condition(NHS_A, "C-1", "x")]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let good = bundle(vec![condition(NHS_A, "C-1", "x")]);
    let resp = bare_client()
        .post(app.url("/fhir/R4"))
        .header(CONTENT_TYPE, "application/fhir+json")
        .body(good.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let (status, _) = post_bundle(app, &format!("{}.forged", now() + 200), good.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let resp = s
        .admin
        .post(app.url("/fhir/R4"))
        .header(CONTENT_TYPE, "application/fhir+json")
        .body(good)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.rows(ENTRIES), before);
    s.app.stop().await;
}

#[tokio::test]
async fn the_token_endpoint_refuses_every_bad_assertion() {
    let s = setup().await;
    let app = &s.app;
    let c = s.client_id.as_str();

    // A good assertion works once; the same assertion again is refused.
    let jwt = assertion(app, &s.key, c, |_| {});
    assert_eq!(ask_token(app, &jwt).await.0, StatusCode::OK);
    let (status, body) = ask_token(app, &jwt).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_client");
    assert!(
        body["error_description"].as_str().unwrap().contains("jti"),
        "{body}"
    );

    let other = system_key("k1");
    let refusals: Vec<(&str, String)> = vec![
        (
            "wrong audience",
            assertion(app, &s.key, c, |v| {
                v["aud"] = json!("https://elsewhere.example/token")
            }),
        ),
        (
            "expired",
            assertion(app, &s.key, c, |v| v["exp"] = json!(now() - 600)),
        ),
        (
            "lives too long",
            assertion(app, &s.key, c, |v| v["exp"] = json!(now() + 3600)),
        ),
        (
            "sub is not the client",
            assertion(app, &s.key, c, |v| v["sub"] = json!("someone-else")),
        ),
        (
            "no jti",
            assertion(app, &s.key, c, |v| {
                v.as_object_mut().unwrap().remove("jti");
            }),
        ),
        (
            "unknown client",
            assertion(app, &s.key, &uuid::Uuid::new_v4().to_string(), |_| {}),
        ),
        ("another key", assertion(app, &other, c, |_| {})),
        ("HS256 with the client id as secret", {
            let claims =
                json!({ "iss": c, "sub": c, "aud": token_url(app), "jti": "h", "exp": now() + 60 });
            encode(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(c.as_bytes()),
            )
            .unwrap()
        }),
        ("unsigned", {
            let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
            let p = URL_SAFE_NO_PAD.encode(
                json!({ "iss": c, "sub": c, "aud": token_url(app), "jti": "n", "exp": now() + 60 })
                    .to_string(),
            );
            format!("{h}.{p}.")
        }),
        ("not a JWT", "hello".into()),
    ];
    for (what, jwt) in refusals {
        let (status, body) = ask_token(app, &jwt).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
        assert_eq!(body["error"], "invalid_client", "{what}");
    }

    // The wrong grant type is a bad request.
    let resp = bare_client()
        .post(app.url("/fhir/R4/token"))
        .form(&[("grant_type", "password"), ("client_assertion", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    // Stopping the system ends its token at once and refuses new ones.
    let bearer = token(app, &s.key, c).await;
    let read = |bearer: String| {
        let url = app.url("/fhir/R4/Condition?patient=00000000-0000-4000-8000-000000000000");
        async move {
            bare_client()
                .get(url)
                .header(AUTHORIZATION, format!("Bearer {bearer}"))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(read(bearer.clone()).await, StatusCode::NOT_FOUND);
    let page = format!("/organisations/{}/feeds", s.org);
    let csrf = csrf_token(app, &s.admin, &page).await;
    let resp = post_form(
        app,
        &s.admin,
        &format!("{page}/{c}/revoke"),
        &[("csrf_token", &csrf)],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(read(bearer).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        ask_token(app, &assertion(app, &s.key, c, |_| {})).await.0,
        StatusCode::UNAUTHORIZED
    );
    s.app.stop().await;
}

#[tokio::test]
async fn only_the_organisations_administrator_registers_systems_and_never_a_private_key() {
    let s = setup().await;
    let app = &s.app;
    let page = format!("/organisations/{}/feeds", s.org);

    // A private key is refused with the reason, and nothing is registered.
    let csrf = csrf_token(app, &s.admin, &page).await;
    let mut private = s.key.jwk.clone();
    private["d"] = json!("jpsQnnGQmL-YBIffH1136cLV3bQk");
    let resp = post_form(
        app,
        &s.admin,
        &page,
        &[
            ("csrf_token", &csrf),
            ("name", "Leaky"),
            ("jwks", &json!({ "keys": [private] }).to_string()),
        ],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = resp.text().await.unwrap();
    assert!(html.contains("private key"), "{html}");
    assert!(
        !html.contains("jpsQnnGQmL"),
        "the private key is not sent back"
    );
    assert!(!html.contains("Leaky</td>"));

    // No CSRF token: refused.
    let resp = post_form(app, &s.admin, &page, &[("name", "x"), ("jwks", "{}")]).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);

    // Someone who is not an administrator of Riverside sees nothing and registers nothing.
    let stranger = signed_in(app, "stranger@example.test").await;
    assert_eq!(
        stranger.get(app.url(&page)).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    let p = principal_of(app, "stranger@example.test").await;
    assert!(app
        .core
        .register_feed_client(&p, s.org, "x", &json!({ "keys": [s.key.jwk] }).to_string())
        .await
        .is_err());
    s.app.stop().await;
}
