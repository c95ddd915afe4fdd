//! Consent through the pages: a patient shares by email, the carer accepts
//! with their own account, sees only what was shared, and loses it on the very
//! next request after the patient stops it. Every form refuses a missing
//! CSRF token, and nobody reaches another person's sharing or access log.

use keyhold_domain::trees::{GRANTS, INVITES};
use reqwest::{Client, StatusCode};

use crate::helpers::{
    browser, csrf_token, location, post_form, principal_of, sign_up_as, spawn_app, TestApp,
};

/// Adds an entry in `category` through the form; returns its title.
async fn entry_in(app: &TestApp, client: &Client, title: &str, category: &str) {
    let token = csrf_token(app, client, "/record/entries/new").await;
    let resp = post_form(
        app,
        client,
        "/record/entries",
        &[
            ("csrf_token", &token),
            ("kind", "condition"),
            ("title", title),
            ("date-day", "2"),
            ("date-month", "5"),
            ("date-year", "2025"),
            ("category", category),
            ("details", ""),
        ],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER, "adding {title}");
}

async fn page(app: &TestApp, client: &Client, path: &str) -> (StatusCode, String) {
    let resp = client.get(app.url(path)).send().await.unwrap();
    (resp.status(), resp.text().await.unwrap())
}

/// Next year, for an end date that is always in range.
fn next_year() -> &'static str {
    let y = (time::OffsetDateTime::now_utc().year() + 1).to_string();
    Box::leak(y.into_boxed_str())
}

/// The share form, filled: a person by email, view only, these categories.
fn share_fields<'a>(token: &'a str, email: &'a str, cats: &[&'a str]) -> Vec<(&'a str, &'a str)> {
    let mut f = vec![
        ("csrf_token", token),
        ("grantee-kind", "person"),
        ("email", email),
        ("may-read", "on"),
        ("ends-day", "31"),
        ("ends-month", "12"),
        ("ends-year", next_year()),
        ("purpose", "Helps with appointments"),
    ];
    for c in cats {
        f.push((c, "on"));
    }
    f
}

/// The invitation link's token from the newest mail to `to`.
fn invitation_token(app: &TestApp, to: &str) -> String {
    let mails = app.mails();
    let mail = mails
        .iter()
        .rev()
        .find(|m| m.contains(&format!("To: {to}")) || m.contains(&format!("<{to}>")))
        .unwrap_or_else(|| panic!("no mail to {to} in {mails:?}"));
    let at = mail.find("/invitations/").expect("an invitation link") + "/invitations/".len();
    mail[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

/// The id of the first grant listed on a sharing page.
fn grant_in(html: &str) -> String {
    let at = html.find("id=\"grant-").expect("a grant on the page") + "id=\"grant-".len();
    html[at..].split('"').next().unwrap().to_string()
}

/// The patient's record path as others reach it.
async fn record_of(app: &TestApp, email: &str) -> String {
    let patient = principal_of(app, email).await.own_patient.unwrap();
    format!("/people/{patient}/record")
}

#[tokio::test]
async fn a_carer_invited_by_mail_sees_only_what_was_shared_until_it_is_stopped() {
    let app = spawn_app().await;
    let ann = browser();
    sign_up_as(&app, &ann, "Ann Patient", "ann@example.test").await;
    entry_in(&app, &ann, "Hay fever", "general").await;
    entry_in(&app, &ann, "Counselling for anxiety", "mental_health").await;

    // Ann shares General with her daughter by email.
    let token = csrf_token(&app, &ann, "/record/sharing/new").await;
    let resp = post_form(
        &app,
        &ann,
        "/record/sharing",
        &share_fields(&token, "bea@example.test", &["category-general"]),
    )
    .await;
    let status = resp.status();
    let to = location(&resp);
    assert_eq!(
        status,
        StatusCode::SEE_OTHER,
        "{}",
        resp.text().await.unwrap()
    );
    assert_eq!(to.as_deref(), Some("/record/sharing?done=shared-person"));
    let (_, html) = page(&app, &ann, "/record/sharing").await;
    assert!(
        html.contains("bea@example.test") && html.contains("Pending"),
        "{html}"
    );

    // Bea opens the link signed out: she sees the offer, not the record.
    let invite = invitation_token(&app, "bea@example.test");
    let bea = browser();
    let (status, html) = page(&app, &bea, &format!("/invitations/{invite}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Ann Patient wants to share"), "{html}");
    assert!(!html.contains("Hay fever"));
    assert!(
        html.contains(&format!("/signup?next=%2Finvitations%2F{invite}")),
        "{html}"
    );

    // Someone else signed in cannot take it.
    let eve = browser();
    sign_up_as(&app, &eve, "Eve Other", "eve@example.test").await;
    let t = csrf_token(&app, &eve, &format!("/invitations/{invite}")).await;
    let resp = post_form(
        &app,
        &eve,
        &format!("/invitations/{invite}"),
        &[("csrf_token", &t)],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(resp.text().await.unwrap().contains("b***@example.test"));

    // The sign-up and sign-in pages keep the way back to the invitation.
    for path in ["/signup", "/signin"] {
        let (status, html) = page(
            &app,
            &bea,
            &format!("{path}?next=%2Finvitations%2F{invite}"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "GET {path} with next");
        assert!(
            html.contains(&format!("next=%2Finvitations%2F{invite}")),
            "{html}"
        );
    }

    // Bea signs up and accepts.
    sign_up_as(&app, &bea, "Bea Carer", "bea@example.test").await;
    let t = csrf_token(&app, &bea, &format!("/invitations/{invite}")).await;
    let resp = post_form(
        &app,
        &bea,
        &format!("/invitations/{invite}"),
        &[("csrf_token", &t)],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let ann_record = record_of(&app, "ann@example.test").await;
    assert_eq!(location(&resp).as_deref(), Some(ann_record.as_str()));

    // The link worked once.
    let (status, _) = page(&app, &bea, &format!("/invitations/{invite}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // She is acting for Ann, and sees General only.
    let (status, html) = page(&app, &bea, &ann_record).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(
        html.contains("You are acting for <strong>Ann Patient</strong>"),
        "{html}"
    );
    assert!(html.contains("Hay fever"));
    assert!(
        !html.contains("Counselling for anxiety"),
        "a category not shared"
    );
    // No sharing or access log for a view-only carer, and no way in by URL.
    assert!(!html.contains(&format!("{ann_record}/sharing")));
    let (status, _) = page(&app, &bea, &format!("{ann_record}/sharing")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = page(&app, &bea, &format!("{ann_record}/access")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = page(&app, &bea, &format!("{ann_record}/entries/new")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "view only: no adding");
    let (_, html) = page(&app, &bea, "/people").await;
    assert!(html.contains("Act for Ann Patient"), "{html}");

    // Ann's access log shows Bea's reading, as a carer.
    let (_, html) = page(&app, &ann, "/record/access").await;
    assert!(
        html.contains("Bea Carer") && html.contains(">Carer</strong>"),
        "{html}"
    );
    assert!(html.contains("Shared: Helps with appointments"), "{html}");

    // Ann stops sharing; Bea's very next page is refused.
    let (_, html) = page(&app, &ann, "/record/sharing").await;
    let grant = grant_in(&html);
    let t = csrf_token(&app, &ann, "/record/sharing").await;
    let resp = post_form(
        &app,
        &ann,
        &format!("/record/sharing/{grant}/stop"),
        &[("csrf_token", &t)],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let (status, html) = page(&app, &bea, &ann_record).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(html.contains("You cannot see this record"), "{html}");
    assert!(!html.contains("Hay fever"));

    // And the refusal is in Ann's log.
    let (_, html) = page(&app, &ann, "/record/access").await;
    assert!(html.contains("Refused"), "{html}");
    app.stop().await;
}

#[tokio::test]
async fn sharing_forms_refuse_a_missing_or_wrong_csrf_token_and_change_nothing() {
    let app = spawn_app().await;
    let ann = browser();
    sign_up_as(&app, &ann, "Ann Patient", "ann@example.test").await;
    let mails = app.mails().len();
    let grants = app.rows(GRANTS);
    for token in ["", "not-the-token"] {
        let resp = post_form(
            &app,
            &ann,
            "/record/sharing",
            &share_fields(token, "bea@example.test", &["category-general"]),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    }
    assert_eq!(app.rows(GRANTS), grants, "no grant was made");
    assert_eq!(app.mails().len(), mails, "no invitation was sent");

    // A real grant, then attempts to stop, change and accept it without a token.
    let token = csrf_token(&app, &ann, "/record/sharing/new").await;
    post_form(
        &app,
        &ann,
        "/record/sharing",
        &share_fields(&token, "bea@example.test", &["category-general"]),
    )
    .await;
    let (_, html) = page(&app, &ann, "/record/sharing").await;
    let grant = grant_in(&html);
    let resp = post_form(&app, &ann, &format!("/record/sharing/{grant}/stop"), &[]).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = post_form(
        &app,
        &ann,
        &format!("/record/sharing/{grant}"),
        &share_fields("", "", &["category-restricted"])[1..],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let (_, html) = page(&app, &ann, "/record/sharing").await;
    assert!(
        html.contains("Pending") && !html.contains("Stopped"),
        "{html}"
    );

    let invite = invitation_token(&app, "bea@example.test");
    let bea = browser();
    sign_up_as(&app, &bea, "Bea Carer", "bea@example.test").await;
    let invites = app.rows(INVITES);
    let resp = post_form(
        &app,
        &bea,
        &format!("/invitations/{invite}"),
        &[("csrf_token", "x")],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.rows(INVITES), invites, "the invitation is still there");
    app.stop().await;
}

#[tokio::test]
async fn nobody_reaches_another_persons_sharing_or_access_log() {
    let app = spawn_app().await;
    let ann = browser();
    sign_up_as(&app, &ann, "Ann Patient", "ann@example.test").await;
    let token = csrf_token(&app, &ann, "/record/sharing/new").await;
    post_form(
        &app,
        &ann,
        "/record/sharing",
        &share_fields(&token, "bea@example.test", &["category-general"]),
    )
    .await;
    let (_, html) = page(&app, &ann, "/record/sharing").await;
    let grant = grant_in(&html);
    let ann_record = record_of(&app, "ann@example.test").await;

    let mallory = browser();
    sign_up_as(&app, &mallory, "Mallory", "mallory@example.test").await;
    for path in [
        ann_record.clone(),
        format!("{ann_record}/sharing"),
        format!("{ann_record}/sharing/new"),
        format!("{ann_record}/sharing/{grant}"),
        format!("{ann_record}/access"),
        format!("{ann_record}/demographics"),
        format!("{ann_record}/documents"),
    ] {
        let (status, html) = page(&app, &mallory, &path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "GET {path}");
        assert!(
            !html.contains("Ann Patient"),
            "GET {path} named the patient"
        );
    }
    // Her own CSRF token is valid, but not her record: stopping Ann's grant
    // through either path is refused and the grant stays.
    let t = csrf_token(&app, &mallory, "/record").await;
    for path in [
        format!("{ann_record}/sharing/{grant}/stop"),
        format!("/record/sharing/{grant}/stop"),
    ] {
        let resp = post_form(&app, &mallory, &path, &[("csrf_token", &t)]).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "POST {path}");
    }
    let (_, html) = page(&app, &ann, "/record/sharing").await;
    assert!(!html.contains("Stopped"), "{html}");
    // A made-up patient id and a malformed one look the same.
    for path in [
        "/people/00000000000000000000000000000000/record".to_string(),
        "/people/not-an-id/record/access".to_string(),
    ] {
        let (status, _) = page(&app, &mallory, &path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "GET {path}");
    }
    // Signed out: to sign-in.
    let anon = browser();
    let resp = anon
        .get(app.url(&format!("{ann_record}/sharing")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    app.stop().await;
}

#[tokio::test]
async fn the_access_log_filters_by_person_and_date_and_names_a_bad_date() {
    let app = spawn_app().await;
    let ann = browser();
    sign_up_as(&app, &ann, "Ann Patient", "ann@example.test").await;
    let (status, html) = page(&app, &ann, "/record/access").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Ann Patient"), "her own sign-up and views");
    let ann_id = principal_of(&app, "ann@example.test").await.account;
    let (_, html) = page(&app, &ann, &format!("/record/access?who={ann_id}")).await;
    assert!(html.contains("Ann Patient"));
    let (_, html) = page(
        &app,
        &ann,
        "/record/access?from-day=1&from-month=1&from-year=2000&to-day=31&to-month=12&to-year=2000",
    )
    .await;
    assert!(html.contains("Nothing matches this filter"), "{html}");
    let (status, html) = page(
        &app,
        &ann,
        "/record/access?from-day=31&from-month=2&from-year=2026",
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("Date must be a real date"), "{html}");
    let (status, _) = page(&app, &ann, "/record/access?who=nobody").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    app.stop().await;
}
