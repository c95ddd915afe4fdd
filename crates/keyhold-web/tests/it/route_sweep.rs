//! Sweeps over every route the router holds (`keyhold_web::route_paths`,
//! taken from the router itself, so a new route is probed without anyone
//! adding it here): every state-changing method refuses a missing or a
//! wrong CSRF token with 403 and changes nothing, the token API ignores
//! session cookies, and every answer carries the security headers and only
//! HttpOnly, SameSite cookies.

use keyhold_domain::trees::{
    ACCOUNTS, BREAK_GLASS, DOCUMENTS, EMAIL_TOKENS, ENTRIES, FEED_CLIENTS, GRANTS, INVITES,
    MEMBERS, ORGS, PATIENTS, QUESTIONNAIRE_ASSIGNMENTS, SESSIONS, STAFF_INVITES, WORKLISTS,
    WORKLIST_NAMES,
};
use keyhold_storage::TreeName;
use keyhold_web::{route_paths, AppState, WebConfig};
use reqwest::multipart::Form;
use reqwest::{Client, Method, Response, StatusCode};

use crate::helpers::{add_entry, csrf_token, get, principal_of, signed_in, spawn_app, TestApp};

/// Trees a refused request must leave as they were.
const GUARDED: [TreeName; 16] = [
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
        let mut form = Form::new().text("title", "Probe");
        if let Some(t) = token {
            form = form.text("csrf_token", t.to_owned());
        }
        req.multipart(form)
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
