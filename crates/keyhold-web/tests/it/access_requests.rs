//! Access requests through the pages: the form in steps with its errors,
//! uploads refused by content and by size with nothing stored, sending, the
//! records team's queue and its isolation, and the guest's cookie.

use keyhold_domain::consent::StaffRole;
use keyhold_domain::trees::{ACCESS_REQUESTS, ACCESS_REQUEST_FILES};
use reqwest::multipart::{Form, Part};
use reqwest::StatusCode;

use crate::helpers::{
    attributes, browser, csrf_token, get, location, mailed_token, member, organisation, pdf,
    post_form, set_cookie, signed_in, spawn_app, TestApp,
};

async fn upload(
    app: &TestApp,
    client: &reqwest::Client,
    path: &str,
    name: &str,
    bytes: Vec<u8>,
) -> reqwest::Response {
    let token = csrf_token(app, client, path).await;
    let form = Form::new()
        .text("csrf_token", token)
        .text("purpose", "required")
        .part("files", Part::bytes(bytes).file_name(name.to_string()))
        .text("action", "upload");
    client
        .post(app.url(path))
        .multipart(form)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_request_is_filled_in_step_by_step_and_reaches_only_its_organisations_queue() {
    let app = spawn_app().await;
    let (org, _admin) = organisation(&app, "Riverside Surgery", "admin@riverside.test").await;
    let officer = member(
        &app,
        org,
        "records@riverside.test",
        StaffRole::RecordsOfficer,
    )
    .await;
    let (other, _) = organisation(&app, "Hillside Hospital", "admin@hillside.test").await;
    let outsider = member(
        &app,
        other,
        "records@hillside.test",
        StaffRole::RecordsOfficer,
    )
    .await;
    let ann = signed_in(&app, "ann@example.test").await;

    let token = csrf_token(&app, &ann, "/access-requests/new").await;
    let org_s = org.to_string();
    let resp = post_form(
        &app,
        &ann,
        "/access-requests/new",
        &[("csrf_token", &token), ("org", &org_s)],
    )
    .await;
    assert_eq!(
        resp.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "no kind chosen"
    );
    let resp = post_form(
        &app,
        &ann,
        "/access-requests/new",
        &[("csrf_token", &token), ("org", &org_s), ("kind", "own")],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let step = location(&resp).unwrap();
    assert!(step.ends_with("/step/patient"), "{step}");
    let base = step.trim_end_matches("/step/patient").to_string();

    // Missing answers: 422, the errors listed, nothing kept.
    let token = csrf_token(&app, &ann, &step).await;
    let resp = post_form(
        &app,
        &ann,
        &step,
        &[("csrf_token", &token), ("patient-given-name", "Ann")],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = resp.text().await.unwrap();
    assert!(
        html.contains("There is a problem") && html.contains("Enter your last name"),
        "{html}"
    );
    assert!(
        html.contains("value=\"Ann\""),
        "what was typed is shown again"
    );
    let fields = [
        ("csrf_token", token.as_str()),
        ("patient-given-name", "Ann"),
        ("patient-family-name", "Example"),
        ("patient-dob-day", "2"),
        ("patient-dob-month", "5"),
        ("patient-dob-year", "1981"),
        ("patient-address", "1 Test Street"),
        ("patient-postcode", "LS1 1AA"),
    ];
    let resp = post_form(&app, &ann, &step, &fields).await;
    assert_eq!(
        location(&resp).as_deref(),
        Some(format!("{base}/step/records").as_str())
    );
    let token = csrf_token(&app, &ann, &format!("{base}/step/records")).await;
    let resp = post_form(
        &app,
        &ann,
        &format!("{base}/step/records"),
        &[
            ("csrf_token", &token),
            ("records-description", "All of them"),
        ],
    )
    .await;
    assert_eq!(
        location(&resp).as_deref(),
        Some(format!("{base}/documents").as_str())
    );

    // A file whose content is not an accepted type, and one over the limit:
    // refused, nothing stored.
    let docs = format!("{base}/documents");
    let resp = upload(
        &app,
        &ann,
        &docs,
        "id.pdf",
        b"MZ\x90\x00 not a pdf".to_vec(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let limit = app.core.settings().max_upload_bytes;
    let resp = upload(&app, &ann, &docs, "big.pdf", vec![b'%'; limit + 1]).await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(app.rows(ACCESS_REQUEST_FILES), 0);
    let resp = upload(&app, &ann, &docs, "passport.pdf", pdf("passport")).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.rows(ACCESS_REQUEST_FILES), 1);

    // The declaration is required; then the request goes.
    let check = format!("{base}/check");
    let token = csrf_token(&app, &ann, &check).await;
    let resp = post_form(&app, &ann, &check, &[("csrf_token", &token)]).await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let resp = post_form(
        &app,
        &ann,
        &check,
        &[("csrf_token", &token), ("declaration", "yes")],
    )
    .await;
    assert_eq!(
        location(&resp).as_deref(),
        Some(format!("{base}/sent").as_str())
    );
    let (status, sent) = get(&app, &ann, &format!("{base}/sent")).await;
    assert_eq!(status, StatusCode::OK);
    let at = sent.find("KH-").expect("a reference on the page");
    let reference = &sent[at..at + 14];
    assert!(
        app.mails().iter().any(|m| m.contains(reference)),
        "and in the confirmation mail"
    );
    let (_, list) = get(&app, &ann, "/access-requests").await;
    assert!(list.contains(reference));
    let (_, found) = get(
        &app,
        &ann,
        &format!("/access-requests?q={}", &reference[3..7]),
    )
    .await;
    assert!(found.contains(reference), "found by part of its reference");

    // The practice's records officer sees it; the hospital's does not, nor
    // can it open it by address; nor can another person.
    let (status, queue) = get(
        &app,
        &officer,
        &format!("/organisations/{org}/access-requests"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(queue.contains(reference));
    let id = base.trim_start_matches("/access-requests/");
    for path in [
        format!("/organisations/{org}/access-requests"),
        format!("/organisations/{org}/access-requests/{id}"),
        format!("/organisations/{other}/access-requests/{id}"),
    ] {
        let (status, _) = get(&app, &outsider, &path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let (_, theirs) = get(
        &app,
        &outsider,
        &format!("/organisations/{other}/access-requests"),
    )
    .await;
    assert!(!theirs.contains(reference));
    let bob = signed_in(&app, "bob@example.test").await;
    let (status, _) = get(&app, &bob, &base).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(app.rows(ACCESS_REQUESTS), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_guest_gets_an_httponly_cookie_from_the_mailed_link_and_loses_it_on_sign_out() {
    let app = spawn_app().await;
    let guest = browser();
    let (status, start) = get(&app, &guest, "/access-requests").await;
    assert_eq!(status, StatusCode::OK);
    assert!(start.contains("Continue as a guest"));
    let token = csrf_token(&app, &guest, "/access-requests/guest").await;
    let resp = post_form(
        &app,
        &guest,
        "/access-requests/guest",
        &[("csrf_token", &token), ("email", "not an address")],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let resp = post_form(
        &app,
        &guest,
        "/access-requests/guest",
        &[("csrf_token", &token), ("email", "gail@example.test")],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let link = mailed_token(&app, "gail@example.test", "/access-requests/guest/");
    let path = format!("/access-requests/guest/{link}");
    let token = csrf_token(&app, &guest, &path).await;
    let resp = post_form(&app, &guest, &path, &[("csrf_token", &token)]).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let cookie = set_cookie(&resp, "keyhold_guest").expect("a guest cookie");
    let attrs = attributes(&cookie);
    assert!(
        attrs.contains(&"httponly".to_string()) && attrs.contains(&"samesite=lax".to_string()),
        "{cookie}"
    );
    let (_, list) = get(&app, &guest, "/access-requests").await;
    assert!(
        list.contains("signed in as a guest with gail@example.test"),
        "{list}"
    );
    // The link worked once: after that it is gone, and says how to get another.
    let (status, gone) = get(&app, &browser(), &path).await;
    assert_eq!(status, StatusCode::GONE);
    assert!(gone.contains("/access-requests/guest\""), "{gone}");
    let resp = post_form(&app, &guest, &path, &[("csrf_token", &token)]).await;
    assert_eq!(resp.status(), StatusCode::GONE);
    let token = csrf_token(&app, &guest, "/access-requests").await;
    let resp = post_form(
        &app,
        &guest,
        "/access-requests/guest/signout",
        &[("csrf_token", &token)],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let (_, after) = get(&app, &guest, "/access-requests").await;
    assert!(after.contains("Continue as a guest"), "signed out");
    app.stop().await;
}
