//! The rest of the FHIR read API over a real server: entries read by id,
//! CarePlan and QuestionnaireResponse, Questionnaire, DocumentReference and
//! Binary, Consent and AuditEvent. Each read goes through the domain, so the
//! policy decides it: another person, and a carer beyond what was shared,
//! get the same 404 as an id that does not exist.

use base64::Engine;
use keyhold_domain::consent::Permissions;
use keyhold_domain::{Category, Email, EntryKind, GrantTerms, NewEntry, NewGrantee, PatientId};
use reqwest::header::{ACCEPT, CONTENT_DISPOSITION, CONTENT_TYPE};
use reqwest::{Client, StatusCode};
use serde_json::Value;
use time::Duration;

use crate::helpers::{
    browser, mailed_token, pdf, principal_of, sign_up_as, signed_in, spawn_app, upload, TestApp,
};

struct Answer {
    status: StatusCode,
    content_type: String,
    disposition: String,
    nosniff: bool,
    bytes: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or(Value::Null)
    }
}

async fn get_as(app: &TestApp, client: &Client, path: &str, accept: Option<&str>) -> Answer {
    let mut req = client.get(app.url(path));
    if let Some(a) = accept {
        req = req.header(ACCEPT, a);
    }
    let resp = req.send().await.unwrap();
    let h = |name| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let content_type = h(CONTENT_TYPE);
    let disposition = h(CONTENT_DISPOSITION);
    let nosniff = h(reqwest::header::X_CONTENT_TYPE_OPTIONS) == "nosniff";
    Answer {
        status: resp.status(),
        content_type,
        disposition,
        nosniff,
        bytes: resp.bytes().await.unwrap().to_vec(),
    }
}

/// GET as FHIR JSON: the status and the parsed body (which must be FHIR JSON).
async fn get(app: &TestApp, client: &Client, path: &str) -> (StatusCode, Value) {
    let a = get_as(app, client, path, Some("application/fhir+json")).await;
    assert!(
        a.content_type.starts_with("application/fhir+json"),
        "{path}: {}",
        a.content_type
    );
    (a.status, a.json())
}

fn assert_outcome(body: &Value, code: &str) {
    assert_eq!(body["resourceType"], "OperationOutcome", "{body}");
    assert_eq!(body["issue"][0]["code"], code, "{body}");
}

/// A 404 not-found that says nothing of `secret`.
fn assert_hidden(status: StatusCode, body: &Value, secret: &str, what: &str) {
    assert_eq!(status, StatusCode::NOT_FOUND, "{what}: {body}");
    assert_outcome(body, "not-found");
    assert!(!body.to_string().contains(secret), "{what} leaks {secret}");
}

async fn own_record(app: &TestApp, email: &str) -> PatientId {
    principal_of(app, email).await.own_patient.unwrap()
}

fn hex(p: PatientId) -> String {
    p.uuid().simple().to_string()
}

/// An entry the patient adds to their own record.
async fn add(
    app: &TestApp,
    email: &str,
    kind: EntryKind,
    title: &str,
    category: Category,
    end: Option<i64>,
) {
    let p = principal_of(app, email).await;
    let today = app.core.today();
    app.core
        .add_entry(
            &p,
            p.own_patient.unwrap(),
            NewEntry {
                kind,
                title: title.into(),
                date: today - Duration::days(30),
                end_date: end.map(|d| today + Duration::days(d)),
                category,
                details: format!("Details of {title}"),
            },
        )
        .await
        .unwrap();
}

/// `patient_email` shares `categories` with `carer_email` (who has an
/// account, signed in on the returned browser) by invitation, accepted.
async fn carer(
    app: &TestApp,
    patient_email: &str,
    carer_name: &str,
    carer_email: &str,
    categories: &[Category],
    act_on_behalf: bool,
) -> Client {
    let client = browser();
    sign_up_as(app, &client, carer_name, carer_email).await;
    let p = principal_of(app, patient_email).await;
    app.core
        .share(
            &p,
            p.own_patient.unwrap(),
            NewGrantee::Person(Email::parse(carer_email).unwrap()),
            GrantTerms {
                permissions: Permissions {
                    read: true,
                    contribute: false,
                    act_on_behalf,
                },
                categories: categories.iter().copied().collect(),
                last_day: app.core.today() + Duration::days(30),
                purpose: format!("Helps {carer_name} help me"),
            },
        )
        .await
        .unwrap();
    let token = mailed_token(app, carer_email, "/invitations/");
    let c = principal_of(app, carer_email).await;
    app.core.accept_invitation(&c, &token).await.unwrap();
    client
}

/// The resources of a searchset.
fn resources(bundle: &Value) -> Vec<Value> {
    assert_eq!(bundle["resourceType"], "Bundle", "{bundle}");
    assert_eq!(bundle["type"], "searchset", "{bundle}");
    bundle["entry"]
        .as_array()
        .map(|es| es.iter().map(|e| e["resource"].clone()).collect())
        .unwrap_or_default()
}

fn next_link(bundle: &Value) -> Option<String> {
    bundle["link"]
        .as_array()?
        .iter()
        .find(|l| l["relation"] == "next")
        .and_then(|l| l["url"].as_str())
        .map(|u| u[u.find("/fhir/R4/").unwrap()..].to_string())
}

#[tokio::test]
async fn an_entry_is_read_by_its_id_only_by_whom_the_policy_allows() {
    let app = spawn_app().await;
    let ann = signed_in(&app, "ann@example.test").await;
    let bob = signed_in(&app, "bob@example.test").await;
    crate::helpers::add_entry(&app, &ann, "Penicillin").await;
    let ann_id = own_record(&app, "ann@example.test").await;
    let bob_id = own_record(&app, "bob@example.test").await;

    let (_, bundle) = get(
        &app,
        &ann,
        &format!("/fhir/R4/AllergyIntolerance?patient={ann_id}"),
    )
    .await;
    let found = resources(&bundle);
    assert_eq!(found.len(), 1);
    let id = found[0]["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 64);
    assert!(id.starts_with(&hex(ann_id)), "{id}");
    assert!(bundle["entry"][0]["fullUrl"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/fhir/R4/AllergyIntolerance/{id}")));

    let path = format!("/fhir/R4/AllergyIntolerance/{id}");
    let (status, read) = get(&app, &ann, &path).await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert_eq!(read, found[0]);

    // Someone else, the same entry under another type, a malformed id, and
    // Bob's own record with Ann's entry id: all the same 404.
    let entry_hex = &id[32..];
    for (who, p) in [
        (&bob, path.clone()),
        (&ann, format!("/fhir/R4/Condition/{id}")),
        (&ann, format!("/fhir/R4/CarePlan/{id}")),
        (
            &ann,
            format!("/fhir/R4/AllergyIntolerance/{}", id.to_uppercase()),
        ),
        (&ann, format!("/fhir/R4/AllergyIntolerance/{}", &id[..63])),
        (&ann, "/fhir/R4/AllergyIntolerance/not-an-id".to_string()),
        (
            &bob,
            format!("/fhir/R4/AllergyIntolerance/{}{entry_hex}", hex(bob_id)),
        ),
        (
            &ann,
            format!("/fhir/R4/AllergyIntolerance/{}{entry_hex}", hex(bob_id)),
        ),
    ] {
        let (status, body) = get(&app, who, &p).await;
        assert_hidden(status, &body, "Penicillin", &p);
    }

    // Not signed in: 401; a type not read by id: not supported.
    let (status, body) = get(&app, &browser(), &path).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_outcome(&body, "login");
    let (status, body) = get(&app, &ann, &format!("/fhir/R4/Consent/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_outcome(&body, "not-supported");
    app.stop().await;
}

#[tokio::test]
async fn care_plans_and_questionnaire_responses_follow_what_was_shared() {
    let app = spawn_app().await;
    let ann = signed_in(&app, "ann@example.test").await;
    let bob = signed_in(&app, "bob@example.test").await;
    let ann_id = own_record(&app, "ann@example.test").await;
    add(
        &app,
        "ann@example.test",
        EntryKind::CarePlan,
        "Care and support plan",
        Category::SocialCare,
        Some(90),
    )
    .await;
    add(
        &app,
        "ann@example.test",
        EntryKind::QuestionnaireResponse,
        "PHQ-9 depression score",
        Category::MentalHealth,
        None,
    )
    .await;
    let sam = carer(
        &app,
        "ann@example.test",
        "Sam Reid",
        "sam@example.test",
        &[Category::General, Category::SocialCare],
        false,
    )
    .await;

    let (status, bundle) = get(&app, &ann, &format!("/fhir/R4/CarePlan?patient={ann_id}")).await;
    assert_eq!(status, StatusCode::OK, "{bundle}");
    let plans = resources(&bundle);
    assert_eq!(plans.len(), 1);
    assert_eq!(plans[0]["status"], "active");
    assert_eq!(plans[0]["intent"], "plan");
    assert_eq!(plans[0]["title"], "Care and support plan");
    assert_eq!(plans[0]["author"]["display"], "Patient entered");
    let plan_path = format!("/fhir/R4/CarePlan/{}", plans[0]["id"].as_str().unwrap());

    let (_, bundle) = get(
        &app,
        &ann,
        &format!("/fhir/R4/QuestionnaireResponse?patient={ann_id}&_tag=mental_health"),
    )
    .await;
    let responses = resources(&bundle);
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0]["status"], "completed");
    assert_eq!(responses[0]["item"][0]["text"], "PHQ-9 depression score");
    let response_path = format!(
        "/fhir/R4/QuestionnaireResponse/{}",
        responses[0]["id"].as_str().unwrap()
    );
    let (status, read) = get(&app, &ann, &response_path).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read, responses[0]);

    // Sam has Social care, not Mental health: the plan, and not the score,
    // whether searched or read by id.
    let (status, read) = get(&app, &sam, &plan_path).await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert_eq!(read, plans[0]);
    let (status, body) = get(&app, &sam, &response_path).await;
    assert_hidden(status, &body, "PHQ-9", "a response outside Sam's grant");
    let (status, bundle) = get(
        &app,
        &sam,
        &format!("/fhir/R4/QuestionnaireResponse?patient={ann_id}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bundle["total"], 0);

    // Bob, unrelated, sees neither.
    for p in [plan_path, response_path] {
        let (status, body) = get(&app, &bob, &p).await;
        assert_hidden(status, &body, "support plan", &p);
    }
    let (status, body) = get(&app, &bob, &format!("/fhir/R4/CarePlan?patient={ann_id}")).await;
    assert_hidden(status, &body, "Care and support", "Bob's CarePlan search");
    app.stop().await;
}

#[tokio::test]
async fn questionnaires_are_served_to_signed_in_callers() {
    let app = spawn_app().await;
    let ann = signed_in(&app, "ann@example.test").await;

    let (status, bundle) = get(&app, &ann, "/fhir/R4/Questionnaire").await;
    assert_eq!(status, StatusCode::OK, "{bundle}");
    let ids: Vec<String> = resources(&bundle)
        .iter()
        .map(|q| q["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["phq-9", "gad-7"]);
    assert_eq!(bundle["total"], 2);

    let (status, phq) = get(&app, &ann, "/fhir/R4/Questionnaire/phq-9").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(phq["resourceType"], "Questionnaire");
    let items = phq["item"].as_array().unwrap();
    assert_eq!(items.iter().filter(|i| i["type"] == "choice").count(), 9);
    assert_eq!(
        items[9]["text"],
        "Thoughts that you would be better off dead or of hurting yourself in some way"
    );
    let (_, gad) = get(&app, &ann, "/fhir/R4/Questionnaire/gad-7").await;
    assert_eq!(gad["item"].as_array().unwrap().len(), 8);

    let (status, body) = get(&app, &ann, "/fhir/R4/Questionnaire/phq-10").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_outcome(&body, "not-found");
    let (status, body) = get(&app, &ann, "/fhir/R4/Questionnaire?patient=x").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_outcome(&body, "invalid");
    for p in ["/fhir/R4/Questionnaire", "/fhir/R4/Questionnaire/phq-9"] {
        let (status, body) = get(&app, &browser(), p).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{p}");
        assert_outcome(&body, "login");
    }
    app.stop().await;
}

#[tokio::test]
async fn documents_and_their_content_are_read_only_by_whom_the_policy_allows() {
    let app = spawn_app().await;
    let ann = signed_in(&app, "ann@example.test").await;
    let bob = signed_in(&app, "bob@example.test").await;
    let ann_id = own_record(&app, "ann@example.test").await;
    let bytes = pdf("ANN-LETTER-MARKER");
    let doc = upload(&app, &ann, "Clinic letter", "letter.pdf", bytes.clone()).await;
    let doc_hex = doc.replace('-', "");
    let id = format!("{}{doc_hex}", hex(ann_id));

    let (status, bundle) = get(
        &app,
        &ann,
        &format!("/fhir/R4/DocumentReference?patient={ann_id}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{bundle}");
    let docs = resources(&bundle);
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0]["id"], id);
    assert_eq!(docs[0]["description"], "Clinic letter");
    let att = &docs[0]["content"][0]["attachment"];
    assert_eq!(att["contentType"], "application/pdf");
    assert_eq!(att["url"], format!("Binary/{id}"));
    assert_eq!(att["size"], bytes.len());
    let (status, read) = get(&app, &ann, &format!("/fhir/R4/DocumentReference/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read, docs[0]);
    for (q, n) in [
        ("&_tag=general", 1),
        ("&_tag=restricted", 0),
        ("&date=lt2000-01-01", 0),
    ] {
        let (_, b) = get(
            &app,
            &ann,
            &format!("/fhir/R4/DocumentReference?patient={ann_id}{q}"),
        )
        .await;
        assert_eq!(b["total"], n, "{q}");
    }

    // The file itself, as an attachment that is not sniffed.
    let binary = format!("/fhir/R4/Binary/{id}");
    let raw = get_as(&app, &ann, &binary, None).await;
    assert_eq!(raw.status, StatusCode::OK);
    assert_eq!(raw.content_type, "application/pdf");
    assert!(
        raw.disposition.starts_with("attachment"),
        "{}",
        raw.disposition
    );
    assert!(raw.nosniff);
    assert_eq!(raw.bytes, bytes);
    // As a Binary resource when FHIR JSON is asked for.
    let (status, b) = get(&app, &ann, &binary).await;
    assert_eq!(status, StatusCode::OK, "{b}");
    assert_eq!(b["resourceType"], "Binary");
    assert_eq!(b["contentType"], "application/pdf");
    let data = base64::engine::general_purpose::STANDARD
        .decode(b["data"].as_str().unwrap())
        .unwrap();
    assert_eq!(data, bytes);

    // Bob: nothing, whichever way he asks.
    for p in [
        binary.clone(),
        format!("/fhir/R4/DocumentReference/{id}"),
        format!("/fhir/R4/DocumentReference?patient={ann_id}"),
        format!(
            "/fhir/R4/Binary/{}{doc_hex}",
            hex(own_record(&app, "bob@example.test").await)
        ),
    ] {
        let (status, body) = get(&app, &bob, &p).await;
        assert_hidden(status, &body, "Clinic letter", &p);
        let raw = get_as(&app, &bob, &p, None).await;
        assert_eq!(raw.status, StatusCode::NOT_FOUND, "{p}");
        assert!(!String::from_utf8_lossy(&raw.bytes).contains("ANN-LETTER-MARKER"));
    }
    for p in [
        format!("/fhir/R4/Binary/{}", &id[..40]),
        "/fhir/R4/Binary/x".into(),
    ] {
        let (status, body) = get(&app, &ann, &p).await;
        assert_hidden(status, &body, "Clinic letter", &p);
    }
    let raw = get_as(&app, &browser(), &binary, None).await;
    assert_eq!(raw.status, StatusCode::UNAUTHORIZED);

    // Each download is in Ann's audit, as is Bob's refused attempt.
    let (_, bundle) = get(
        &app,
        &ann,
        &format!("/fhir/R4/AuditEvent?patient={ann_id}&_count=100"),
    )
    .await;
    let events = resources(&bundle);
    let downloads: Vec<&Value> = events
        .iter()
        .filter(|e| e["entity"][0]["description"] == "Downloaded a document")
        .collect();
    assert!(
        downloads
            .iter()
            .filter(|e| e["outcome"] == "0" && e["action"] == "R")
            .count()
            >= 2,
        "{downloads:?}"
    );
    assert!(
        downloads.iter().any(|e| e["outcome"] == "4"),
        "Bob's refused download is audited: {downloads:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn consents_are_listed_for_the_patient_and_whoever_acts_for_them_only() {
    let app = spawn_app().await;
    let ann = signed_in(&app, "ann@example.test").await;
    let bob = signed_in(&app, "bob@example.test").await;
    let ann_id = own_record(&app, "ann@example.test").await;
    let sam = carer(
        &app,
        "ann@example.test",
        "Sam Reid",
        "sam@example.test",
        &[Category::General],
        false,
    )
    .await;
    let kit = carer(
        &app,
        "ann@example.test",
        "Kit Walker",
        "kit@example.test",
        &[Category::General, Category::SocialCare],
        true,
    )
    .await;
    let search = format!("/fhir/R4/Consent?patient={ann_id}");

    let (status, bundle) = get(&app, &ann, &search).await;
    assert_eq!(status, StatusCode::OK, "{bundle}");
    let consents = resources(&bundle);
    assert_eq!(consents.len(), 2);
    let sams = consents
        .iter()
        .find(|c| c["provision"]["actor"][0]["reference"]["display"] == "Sam Reid")
        .expect("Sam's grant");
    assert_eq!(sams["status"], "active");
    assert_eq!(sams["patient"]["reference"], format!("Patient/{ann_id}"));
    assert_eq!(sams["provision"]["type"], "permit");
    assert_eq!(
        sams["provision"]["action"][0]["coding"][0]["code"],
        "access"
    );
    assert_eq!(sams["provision"]["securityLabel"][0]["code"], "general");
    assert_eq!(sams["policyRule"]["coding"][0]["code"], "OPTIN");
    assert_eq!(
        sams["extension"][0]["valueString"],
        "Helps Sam Reid help me"
    );

    // Kit acts on Ann's behalf: Kit may list them too.
    let (status, bundle) = get(&app, &kit, &search).await;
    assert_eq!(status, StatusCode::OK, "{bundle}");
    assert_eq!(resources(&bundle).len(), 2);

    // Sam only reads; Bob is nobody to Ann.
    for (who, what) in [
        (&sam, "a carer who only reads"),
        (&bob, "an unrelated person"),
    ] {
        let (status, body) = get(&app, who, &search).await;
        assert_hidden(status, &body, "Sam Reid", what);
    }

    // A stopped grant is listed as rejected, with its period cut short.
    let p = principal_of(&app, "ann@example.test").await;
    let grant = app
        .core
        .grants(&p, ann_id)
        .await
        .unwrap()
        .into_iter()
        .find(|g| g.grantee_label == "Sam Reid")
        .unwrap()
        .grant
        .id;
    app.core.revoke_grant(&p, ann_id, grant).await.unwrap();
    let (_, bundle) = get(&app, &ann, &format!("{search}&_count=1")).await;
    assert_eq!(bundle["total"], 2);
    assert_eq!(resources(&bundle).len(), 1);
    let next = next_link(&bundle).expect("a next link");
    let (_, rest) = get(&app, &ann, &next).await;
    let all: Vec<Value> = resources(&bundle)
        .into_iter()
        .chain(resources(&rest))
        .collect();
    let sams = all
        .iter()
        .find(|c| c["provision"]["actor"][0]["reference"]["display"] == "Sam Reid")
        .unwrap();
    assert_eq!(sams["status"], "rejected");
    // Sam's access ended with it.
    let (status, _) = get(&app, &sam, &format!("/fhir/R4/Patient/{ann_id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, body) = get(&app, &ann, &format!("{search}&date=ge2024-01-01")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_outcome(&body, "invalid");
    app.stop().await;
}

#[tokio::test]
async fn the_access_log_is_served_as_audit_events_to_whom_may_read_it() {
    let app = spawn_app().await;
    let ann = signed_in(&app, "ann@example.test").await;
    let bob = signed_in(&app, "bob@example.test").await;
    let ann_id = own_record(&app, "ann@example.test").await;
    crate::helpers::add_entry(&app, &ann, "Penicillin").await;
    let sam = carer(
        &app,
        "ann@example.test",
        "Sam Reid",
        "sam@example.test",
        &[Category::General],
        false,
    )
    .await;
    // Sam reads the record through the API: it shows in Ann's log.
    let (status, _) = get(&app, &sam, &format!("/fhir/R4/Patient/{ann_id}")).await;
    assert_eq!(status, StatusCode::OK);
    let search = format!("/fhir/R4/AuditEvent?patient={ann_id}");

    let (status, bundle) = get(&app, &ann, &format!("{search}&_count=100")).await;
    assert_eq!(status, StatusCode::OK, "{bundle}");
    let events = resources(&bundle);
    assert!(events.len() >= 3, "{bundle}");
    for e in &events {
        assert_eq!(e["type"]["code"], "110110");
        assert_eq!(e["source"]["observer"]["display"], "Keyhold");
        assert_eq!(
            e["entity"][0]["what"]["reference"],
            format!("Patient/{ann_id}")
        );
        assert_eq!(e["agent"][0]["requestor"], true);
        assert!(["C", "R", "U", "D", "E"].contains(&e["action"].as_str().unwrap()));
        assert!(["0", "4", "8"].contains(&e["outcome"].as_str().unwrap()));
    }
    let sams: Vec<&Value> = events
        .iter()
        .filter(|e| e["agent"][0]["who"]["display"] == "Sam Reid")
        .collect();
    // Accepting the invitation made the grant his; then he read.
    assert_eq!(sams[0]["action"], "C", "{sams:?}");
    let sams_read = sams
        .iter()
        .find(|e| e["action"] == "R")
        .expect("Sam's read is in the log");
    assert_eq!(sams_read["outcome"], "0");
    assert_eq!(sams_read["agent"][0]["role"][0]["text"], "Carer");
    // Oldest first.
    let times: Vec<&str> = events
        .iter()
        .map(|e| e["recorded"].as_str().unwrap())
        .collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted);

    // Paging: two at a time, through the next links, reaches every event
    // there was when paging began.
    let first_total = bundle["total"].as_u64().unwrap() as usize;
    let mut seen = Vec::new();
    let mut next = Some(format!("{search}&_count=2"));
    while let Some(p) = next {
        let (status, page) = get(&app, &ann, &p).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let r = resources(&page);
        assert!(r.len() <= 2);
        seen.extend(r.into_iter().map(|e| e["id"].as_str().unwrap().to_string()));
        next = next_link(&page);
        assert!(seen.len() < 100, "paging ends");
    }
    let unique: std::collections::HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no event twice");
    assert!(seen.len() >= first_total);

    let (_, bundle) = get(&app, &ann, &format!("{search}&date=lt2000-01-01")).await;
    assert_eq!(bundle["total"], 0);
    let (status, body) = get(&app, &ann, &format!("{search}&_tag=general")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_outcome(&body, "invalid");

    // A carer who only reads, and an unrelated person: not theirs to see.
    for (who, what) in [
        (&sam, "a carer who only reads"),
        (&bob, "an unrelated person"),
    ] {
        let (status, body) = get(&app, who, &search).await;
        assert_hidden(status, &body, "Sam Reid", what);
    }
    let (status, body) = get(&app, &browser(), &search).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_outcome(&body, "login");
    app.stop().await;
}
