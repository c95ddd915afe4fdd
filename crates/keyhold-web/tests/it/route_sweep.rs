//! Sweeps over every route the router holds (`keyhold_web::route_paths`,
//! taken from the router itself, so a new route is probed without anyone
//! adding it here): every state-changing method refuses a missing or a
//! wrong CSRF token with 403 and changes nothing; the FHIR API takes no
//! write on a session cookie; every answer carries the security headers and
//! only HttpOnly, SameSite cookies; and every route of someone else's record
//! answers 404, revealing nothing, to another patient, a revoked carer and a
//! professional whose organisation was never given access.

use keyhold_domain::trees::{
    ACCESS_REQUESTS, ACCESS_REQUEST_FILES, ACCESS_REQUEST_MESSAGES, ACCOUNTS, BREAK_GLASS,
    DOCUMENTS, EMAIL_TOKENS, ENTRIES, FEED_CLIENTS, GRANTS, GUEST_TOKENS, INVITES, MEMBERS, ORGS,
    PATIENTS, QUESTIONNAIRE_ASSIGNMENTS, SESSIONS, STAFF_INVITES, WORKLISTS, WORKLIST_NAMES,
};
use keyhold_storage::TreeName;
use keyhold_web::{route_paths, AppState, WebConfig};
use reqwest::multipart::Form;
use reqwest::{Client, Method, Response, StatusCode};

use crate::helpers::{add_entry, csrf_token, get, principal_of, signed_in, spawn_app, TestApp};

/// Trees a refused request must leave as they were.
const GUARDED: [TreeName; 20] = [
    ACCOUNTS,
    PATIENTS,
    SESSIONS,
    EMAIL_TOKENS,
    ENTRIES,
    DOCUMENTS,
    GRANTS,
    INVITES,
    ORGS,
    MEMBERS,
    STAFF_INVITES,
    BREAK_GLASS,
    FEED_CLIENTS,
    QUESTIONNAIRE_ASSIGNMENTS,
    WORKLIST_NAMES,
    WORKLISTS,
    ACCESS_REQUESTS,
    ACCESS_REQUEST_MESSAGES,
    ACCESS_REQUEST_FILES,
    GUEST_TOKENS,
];

const CHANGING: [Method; 4] = [Method::POST, Method::PUT, Method::PATCH, Method::DELETE];

/// The FHIR API: its writes take an organisation system's bearer token (or,
/// at `/token`, a signed client assertion); a person's session cookie may
/// read through it but is refused any write, so a cross-site form has
/// nothing to ride on and the CSRF token does not apply.
const TOKEN_API: &str = "/fhir/R4";

fn counts(app: &TestApp) -> Vec<(&'static str, usize)> {
    GUARDED.iter().map(|t| (t.as_str(), app.rows(*t))).collect()
}

/// Every route path with its placeholders filled: `patient` and `org` with
/// the signed-in person's own, everything else with a well-formed stranger.
fn concrete(path: &str, patient: &str, org: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = open + rest[open..].find('}').unwrap();
        out.push_str(match &rest[open + 1..close] {
            "patient" => patient,
            "org" => org,
            "resource_type" => "Observation",
            "file" => "keyhold.css",
            _ => "00000000000000000000000000000000",
        });
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

async fn send(
    app: &TestApp,
    client: &Client,
    method: &Method,
    path: &str,
    token: Option<&str>,
    multipart: bool,
) -> Response {
    let req = client.request(method.clone(), app.url(path));
    let req = if multipart {
        // The token first: uploads check it before reading any file.
        let mut form = Form::new();
        if let Some(t) = token {
            form = form.text("csrf_token", t.to_owned());
        }
        req.multipart(form.text("title", "Probe"))
    } else {
        let mut fields = vec![("title", "Probe")];
        if let Some(t) = token {
            fields.push(("csrf_token", t));
        }
        req.form(&fields)
    };
    req.send().await.unwrap()
}

#[tokio::test]
async fn every_state_changing_route_refuses_a_missing_or_wrong_csrf_token() {
    let app = spawn_app().await;
    let ann = signed_in(&app, "ann@example.test").await;
    add_entry(&app, &ann, "Peanut allergy").await;
    let patient = principal_of(&app, "ann@example.test")
        .await
        .own_patient
        .unwrap()
        .to_string();
    let (org, _) = app
        .core
        .create_organisation("Riverside Surgery", "ann@example.test")
        .await
        .unwrap();
    let org = org.to_string();
    // A real token, but minted for another browser's session.
    let bob = signed_in(&app, "bob@example.test").await;
    let wrong = csrf_token(&app, &bob, "/account").await;

    let state = AppState::new(app.core.clone(), WebConfig::default()).unwrap();
    let paths = route_paths(&state);
    let before = counts(&app);
    let mut probed = Vec::new();
    for template in &paths {
        let path = concrete(template, &patient, &org);
        for method in &CHANGING {
            for token in [None, Some(wrong.as_str())] {
                let resp = send(&app, &ann, method, &path, token, false).await;
                let mut status = resp.status();
                if status == StatusCode::METHOD_NOT_ALLOWED {
                    continue;
                }
                if template.starts_with(TOKEN_API) {
                    assert!(
                        status.is_client_error(),
                        "{method} {path}: a session cookie must not write through the FHIR API, got {status}"
                    );
                    continue;
                }
                if status == StatusCode::UNSUPPORTED_MEDIA_TYPE || status == StatusCode::BAD_REQUEST
                {
                    // An upload route: the same probe as a multipart form.
                    status = send(&app, &ann, method, &path, token, true).await.status();
                }
                assert_eq!(
                    status,
                    StatusCode::FORBIDDEN,
                    "{method} {path} with {} token",
                    if token.is_some() { "a wrong" } else { "no" }
                );
                probed.push(format!("{method} {template}"));
            }
        }
    }
    // The sweep saw the router, not an empty list: the forms people use
    // most are among what it probed.
    for must in [
        "POST /signout",
        "POST /record/entries",
        "POST /record/documents",
        "POST /people/{patient}/record/documents",
        "POST /record/sharing/{grant}/stop",
        "POST /organisations/{org}/find",
        "POST /organisations/{org}/worklists/{list}/delete",
        "POST /people/{patient}/record/questionnaires/{id}",
        "POST /account/password",
        "POST /access-requests/{id}/documents",
        "POST /access-requests/{id}/messages",
        "POST /organisations/{org}/access-requests/{id}/complete",
        "POST /access-requests/guest/{token}",
    ] {
        assert!(probed.iter().any(|p| p == must), "{must} was not probed");
    }
    assert_eq!(counts(&app), before, "a refused request changed the store");
    // Nor did the refused sign-out end the session.
    let (status, _) = get(&app, &ann, "/record").await;
    assert_eq!(status, StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn every_route_answers_with_the_security_headers_and_safe_cookies() {
    let app = spawn_app().await;
    let ann = signed_in(&app, "ann@example.test").await;
    let patient = principal_of(&app, "ann@example.test")
        .await
        .own_patient
        .unwrap()
        .to_string();
    let state = AppState::new(app.core.clone(), WebConfig::default()).unwrap();
    let mut seen = 0;
    for template in route_paths(&state) {
        let path = concrete(&template, &patient, "00000000000000000000000000000000");
        // Signed in and not: a fresh browser also gets its CSRF cookie set.
        for client in [&ann, &crate::helpers::browser()] {
            let resp = client.get(app.url(&path)).send().await.unwrap();
            if resp.status() == StatusCode::METHOD_NOT_ALLOWED {
                continue;
            }
            seen += 1;
            let h = |name: &str| {
                resp.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
                    .unwrap_or_else(|| panic!("GET {path}: no {name}"))
            };
            let csp = h("content-security-policy");
            assert!(
                csp.split(';').any(|d| d.trim() == "frame-ancestors 'none'"),
                "GET {path}: {csp}"
            );
            assert!(!csp.contains("unsafe-inline"), "GET {path}: {csp}");
            assert_eq!(h("x-content-type-options"), "nosniff", "GET {path}");
            assert_eq!(h("x-frame-options"), "DENY", "GET {path}");
            assert!(!h("referrer-policy").is_empty());
            for cookie in resp.headers().get_all("set-cookie") {
                let c = cookie.to_str().unwrap().to_ascii_lowercase();
                assert!(c.contains("httponly"), "GET {path}: {c}");
                assert!(
                    c.contains("samesite=strict") || c.contains("samesite=lax"),
                    "GET {path}: {c}"
                );
            }
        }
    }
    assert!(seen > 40, "only {seen} GET answers checked");
    app.stop().await;
}

/// Fills a route under `/people/{patient}/record` for Ann's record: her
/// entry, document and (stopped) grant where the path names one.
fn anns(template: &str, ids: &AnnsIds) -> String {
    let entry = template.contains("/entries/{id}");
    let document = template.contains("/documents/{id}");
    let filled = template
        .replace("{patient}", &ids.patient)
        .replace("{grant}", &ids.grant);
    if entry {
        filled.replace("{id}", &ids.entry)
    } else if document {
        filled.replace("{id}", &ids.document)
    } else {
        filled.replace("{id}", "00000000000000000000000000000000")
    }
}

struct AnnsIds {
    patient: String,
    entry: String,
    document: String,
    grant: String,
}

#[tokio::test]
async fn no_route_of_a_record_serves_another_patient_a_revoked_carer_or_an_unrelated_professional()
{
    use keyhold_domain::consent::{Permissions, StaffRole};
    use keyhold_domain::{Category, Email, GrantTerms, NewGrantee};
    use time::Duration;

    use crate::helpers::{mailed_token, member, organisation, pdf, upload};

    let app = spawn_app().await;
    let ann = signed_in(&app, "ann@example.test").await;
    let entry = add_entry(&app, &ann, "Peanut allergy").await;
    let document = upload(&app, &ann, "Letter", "letter.pdf", pdf("letter")).await;
    let owner = principal_of(&app, "ann@example.test").await;
    let patient = owner.own_patient.unwrap();

    // Cat was Ann's carer until Ann stopped it.
    let cat = signed_in(&app, "cat@example.test").await;
    let grant = app
        .core
        .share(
            &owner,
            patient,
            NewGrantee::Person(Email::parse("cat@example.test").unwrap()),
            GrantTerms {
                permissions: Permissions {
                    read: true,
                    contribute: true,
                    act_on_behalf: true,
                },
                categories: Category::ALL.into_iter().collect(),
                last_day: app.core.today() + Duration::days(30),
                purpose: "Helps with appointments".into(),
            },
        )
        .await
        .unwrap();
    let token = mailed_token(&app, "cat@example.test", "/invitations/");
    let cat_p = principal_of(&app, "cat@example.test").await;
    app.core.accept_invitation(&cat_p, &token).await.unwrap();
    let record = format!("/people/{patient}/record");
    assert_eq!(get(&app, &cat, &record).await.0, StatusCode::OK, "before");
    app.core.revoke_grant(&owner, patient, grant).await.unwrap();

    // Eve is another patient; Dan a doctor at a practice Ann never chose.
    let eve = signed_in(&app, "eve@example.test").await;
    let (hillside, _) = organisation(&app, "Hillside", "admin@hillside.test").await;
    let dan = member(&app, hillside, "dan@hillside.test", StaffRole::Doctor).await;

    let ids = AnnsIds {
        patient: patient.to_string(),
        entry,
        document,
        grant: grant.to_string(),
    };
    let state = AppState::new(app.core.clone(), WebConfig::default()).unwrap();
    let routes: Vec<String> = route_paths(&state)
        .into_iter()
        .filter(|p| p.starts_with("/people/{patient}/record"))
        .collect();
    assert!(routes.len() > 15, "{routes:?}");
    let before = counts(&app);
    let mut probes = 0;
    for (who, client) in [
        ("another patient", &eve),
        ("a revoked carer", &cat),
        ("an unrelated doctor", &dan),
    ] {
        // Each prober's own valid token: the refusal must be the policy's.
        let token = csrf_token(&app, client, "/account").await;
        for template in &routes {
            let path = anns(template, &ids);
            for method in std::iter::once(Method::GET).chain(CHANGING) {
                let mut resp = send(&app, client, &method, &path, Some(&token), false).await;
                if resp.status() == StatusCode::METHOD_NOT_ALLOWED {
                    continue;
                }
                // An upload route reads its token from a multipart body.
                if [
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    StatusCode::BAD_REQUEST,
                    StatusCode::FORBIDDEN,
                ]
                .contains(&resp.status())
                {
                    resp = send(&app, client, &method, &path, Some(&token), true).await;
                }
                let status = resp.status();
                let body = resp.text().await.unwrap();
                assert_eq!(status, StatusCode::NOT_FOUND, "{who}: {method} {path}");
                // "Not yours" reads exactly like "not there".
                assert!(
                    !body.contains("Peanut"),
                    "{who}: {method} {path} leaked an entry"
                );
                assert!(
                    !body.contains("letter.pdf"),
                    "{who}: {method} {path} leaked a document"
                );
                probes += 1;
            }
        }
    }
    assert!(probes > 60, "only {probes} probes");
    assert_eq!(counts(&app), before, "a refused request changed the store");
    // Ann, of course, still reads all of it.
    let (status, html) = get(&app, &ann, "/record").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Peanut allergy"));
    app.stop().await;
}
