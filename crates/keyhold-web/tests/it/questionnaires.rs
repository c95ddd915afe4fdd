//! Questionnaires through the pages: a professional whose organisation may
//! add to the mental health part assigns a PHQ-9; the patient is emailed (a
//! link, nothing clinical), completes it (a 422 naming each unanswered
//! question first, answers kept), and the score lands in the record; the
//! professional sees it with the chart. Who may assign and complete is the
//! domain's decision: everyone else gets 404, a form without its CSRF token
//! 403, a second submission 409 and no second entry. The store holds no
//! plaintext of it.

use keyhold_domain::consent::{Permissions, StaffRole};
use keyhold_domain::trees::{
    AUDIT, AUDIT_BY_PATIENT, ENTRIES, GRANTS, PATIENTS, QUESTIONNAIRE_ASSIGNMENTS,
};
use keyhold_domain::{Category, Email, GrantTerms, NewGrantee, OrgId, PatientId};
use reqwest::{Client, StatusCode};
use time::Duration;

use crate::helpers::{
    browser, csrf_token, get, location, mailed_token, post_form, principal_of, sign_up_as,
    signed_in, spawn_app, TestApp, PASSWORD,
};

/// A link to `path` as mail carries it.
fn link(app: &TestApp, path: &str) -> String {
    format!(
        "{}{path}",
        app.core.settings().public_url.trim_end_matches('/')
    )
}

fn perms(read: bool, contribute: bool, act_on_behalf: bool) -> Permissions {
    Permissions {
        read,
        contribute,
        act_on_behalf,
    }
}

fn terms(app: &TestApp, permissions: Permissions, categories: &[Category]) -> GrantTerms {
    GrantTerms {
        permissions,
        categories: categories.iter().copied().collect(),
        last_day: app.core.today() + Duration::days(30),
        purpose: "My care".into(),
    }
}

/// A patient signed up through the pages: their browser and record.
async fn patient(app: &TestApp, name: &str, email: &str) -> (Client, PatientId) {
    let client = browser();
    sign_up_as(app, &client, name, email).await;
    let record = principal_of(app, email).await.own_patient.unwrap();
    (client, record)
}

/// A doctor of a new organisation `name` with which `patient_email` shares
/// `categories` with `permissions`.
async fn doctor_at(
    app: &TestApp,
    name: &str,
    doctor_email: &str,
    patient_email: &str,
    permissions: Permissions,
    categories: &[Category],
) -> (OrgId, Client) {
    let admin = format!("admin@{}", doctor_email.split('@').nth(1).unwrap());
    app.core
        .create_account_for("Ada Admin", &admin, PASSWORD, None)
        .await
        .unwrap();
    let (org, _) = app.core.create_organisation(name, &admin).await.unwrap();
    let doctor = signed_in(app, doctor_email).await;
    let account = principal_of(app, doctor_email).await.account;
    app.core
        .add_member(org, account, StaffRole::Doctor)
        .await
        .unwrap();
    let p = principal_of(app, patient_email).await;
    app.core
        .share(
            &p,
            p.own_patient.unwrap(),
            NewGrantee::Organisation(org),
            terms(app, permissions, categories),
        )
        .await
        .unwrap();
    (org, doctor)
}

/// A carer invited by `patient_email` with `permissions` on mental health,
/// who accepted; signed in on the returned browser.
async fn carer(
    app: &TestApp,
    patient_email: &str,
    name: &str,
    email: &str,
    permissions: Permissions,
) -> Client {
    let client = browser();
    sign_up_as(app, &client, name, email).await;
    let p = principal_of(app, patient_email).await;
    app.core
        .share(
            &p,
            p.own_patient.unwrap(),
            NewGrantee::Person(Email::parse(email).unwrap()),
            terms(app, permissions, &[Category::MentalHealth]),
        )
        .await
        .unwrap();
    let token = mailed_token(app, email, "/invitations/");
    let c = principal_of(app, email).await;
    app.core.accept_invitation(&c, &token).await.unwrap();
    client
}

/// Sends `questionnaire` through the list page's form; returns the response.
async fn assign(
    app: &TestApp,
    client: &Client,
    base: &str,
    questionnaire: &str,
) -> reqwest::Response {
    let path = format!("{base}/questionnaires");
    let token = csrf_token(app, client, &path).await;
    post_form(
        app,
        client,
        &path,
        &[("csrf_token", &token), ("questionnaire", questionnaire)],
    )
    .await
}

/// The id of the first pending questionnaire linked from a list page.
fn first_pending(html: &str, base: &str) -> String {
    let marker = format!("href=\"{base}/questionnaires/");
    let at = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no pending questionnaire in {html}"))
        + marker.len();
    html[at..].split('"').next().unwrap().to_string()
}

/// A PHQ-9 form's fields: `answers[i]` for item i+1, `None` left out.
fn answers<'a>(token: &'a str, answers: &[Option<&'a str>]) -> Vec<(String, &'a str)> {
    let mut f = vec![("csrf_token".to_string(), token)];
    for (i, a) in answers.iter().enumerate() {
        if let Some(a) = a {
            f.push((format!("item-{}", i + 1), *a));
        }
    }
    f
}

async fn submit(
    app: &TestApp,
    client: &Client,
    path: &str,
    fields: &[(String, &str)],
) -> reqwest::Response {
    client
        .post(app.url(path))
        .form(fields)
        .send()
        .await
        .unwrap()
}

/// 3+3+3+3+0+0+0+0+0 = 12: moderate.
const TWELVE: [Option<&str>; 9] = [
    Some("3"),
    Some("3"),
    Some("3"),
    Some("3"),
    Some("0"),
    Some("0"),
    Some("0"),
    Some("0"),
    Some("0"),
];

/// The inline `<svg …>…</svg>` of a page.
fn svg_in(html: &str) -> &str {
    let start = html.find("<svg xmlns").expect("an inline chart");
    let end = html[start..].find("</svg>").unwrap() + start + "</svg>".len();
    &html[start..end]
}

/// Every stored value of the trees a questionnaire touches, as text.
fn stored_text(app: &TestApp) -> String {
    let mut all = String::new();
    for tree in [
        QUESTIONNAIRE_ASSIGNMENTS,
        ENTRIES,
        AUDIT,
        AUDIT_BY_PATIENT,
        GRANTS,
        PATIENTS,
    ] {
        for row in app.core.store().scan(tree, b"") {
            let (k, v) = row.unwrap();
            all.push_str(&String::from_utf8_lossy(&k));
            all.push_str(&String::from_utf8_lossy(&v));
        }
    }
    all.to_lowercase()
}

#[tokio::test]
async fn a_phq9_goes_from_the_professional_to_the_patient_and_back_as_a_score_and_a_chart() {
    let app = spawn_app().await;
    let (pat, record) = patient(&app, "Pat Quill", "pat@example.test").await;
    let (_, doctor) = doctor_at(
        &app,
        "Riverside Wellbeing",
        "doc@riverside.test",
        "pat@example.test",
        perms(true, true, false),
        &[Category::General, Category::MentalHealth],
    )
    .await;
    let theirs = format!("/people/{record}/record");

    // The professional sees the assign form; choosing nothing is a 422.
    let (status, html) = get(&app, &doctor, &format!("{theirs}/questionnaires")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Assign a questionnaire"));
    assert!(html.contains(&format!("action=\"{theirs}/questionnaires\"")));
    assert!(html.contains("There are no questionnaires to complete."));
    let resp = assign(&app, &doctor, &theirs, "").await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = resp.text().await.unwrap();
    assert!(html.contains("href=\"#questionnaire\""), "error summary");
    assert_eq!(app.rows(QUESTIONNAIRE_ASSIGNMENTS), 0);

    let mails_before = app.mails().len();
    let resp = assign(&app, &doctor, &theirs, "phq-9").await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let to = location(&resp).unwrap();
    assert_eq!(to, format!("{theirs}/questionnaires?done=assigned"));
    let (_, html) = get(&app, &doctor, &to).await;
    assert!(html.contains("Questionnaire sent. Pat Quill has been asked to complete it."));
    assert!(html.contains("Waiting for Pat Quill to complete this."));
    assert_eq!(app.rows(QUESTIONNAIRE_ASSIGNMENTS), 1);

    // The patient is emailed a link, and nothing clinical.
    let mails = app.mails();
    assert_eq!(mails.len(), mails_before + 1);
    let mail = mails.last().unwrap();
    assert!(mail.contains("To: pat@example.test"), "{mail}");
    assert!(mail.contains("You have a questionnaire to complete"));
    assert!(
        mail.contains(&link(&app, "/record/questionnaires")),
        "{mail}"
    );
    assert!(mail.contains("Riverside Wellbeing"));
    let lower = mail.to_lowercase();
    for clinical in ["phq", "patient health", "depress", "score", "moderate"] {
        assert!(!lower.contains(clinical), "{clinical} in the mail:\n{mail}");
    }

    // The patient opens it from their list.
    let (status, html) = get(&app, &pat, "/record/questionnaires").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Patient Health Questionnaire (PHQ-9)"));
    assert!(html.contains("Sent by Riverside Wellbeing"));
    let id = first_pending(&html, "/record");
    let form = format!("/record/questionnaires/{id}");
    let (status, html) = get(&app, &pat, &form).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(html.matches("<fieldset").count(), 9, "one per question");
    assert!(html.contains("Little interest or pleasure in doing things"));
    assert!(html.contains("Over the last 2 weeks, how often have you been bothered"));

    // Two questions unanswered: 422, each named, the other answers kept.
    let token = csrf_token(&app, &pat, &form).await;
    let mut partial = TWELVE;
    partial[2] = None;
    partial[8] = None;
    let resp = submit(&app, &pat, &form, &answers(&token, &partial)).await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = resp.text().await.unwrap();
    assert!(html.contains("nhsuk-error-summary"));
    assert!(html.contains("href=\"#item-3\""));
    assert!(html.contains("href=\"#item-9\""));
    assert!(!html.contains("href=\"#item-1\""));
    assert!(html.contains("Select an answer to question 3: Trouble falling or staying asleep"));
    assert!(html.contains("id=\"item-1-4\" name=\"item-1\" type=\"radio\" value=\"3\" checked"));
    assert!(html.contains("id=\"item-5\" name=\"item-5\" type=\"radio\" value=\"0\" checked"));
    assert!(!html.contains("name=\"item-3\" type=\"radio\" value=\"3\" checked"));
    assert_eq!(app.rows(ENTRIES), 0, "nothing saved");

    // All answered: the score, in a notice after the redirect.
    let resp = submit(&app, &pat, &form, &answers(&token, &TWELVE)).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let to = location(&resp).unwrap();
    assert_eq!(to, format!("/record/questionnaires?done=completed&a={id}"));
    let (_, html) = get(&app, &pat, &to).await;
    assert!(
        html.contains("Thank you. PHQ-9 completed: the score is 12 out of 27 (moderate)."),
        "{html}"
    );
    assert!(html.contains("There are no questionnaires to complete."));
    assert!(!html.contains("If you need help now"), "item 9 not flagged");

    // The entry is in the record.
    assert_eq!(app.rows(ENTRIES), 1);
    let (_, html) = get(&app, &pat, "/record").await;
    assert!(html.contains("PHQ-9: 12 (moderate)"));

    // A second submission completes nothing.
    let resp = submit(&app, &pat, &form, &answers(&token, &TWELVE)).await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    assert!(resp
        .text()
        .await
        .unwrap()
        .contains("This questionnaire has already been completed"));
    assert_eq!(app.rows(ENTRIES), 1);

    // The professional sees the score and the chart, and the same as a table.
    let (status, html) = get(&app, &doctor, &format!("{theirs}/questionnaires")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("12 out of 27"));
    assert!(html.contains("Moderate"));
    assert!(html.contains("PHQ-9 scores over time"));
    let svg = svg_in(&html);
    assert!(svg.contains("role=\"img\""));
    assert!(svg.contains("<title id=\"chart-phq-9-title\">PHQ-9 scores over time</title>"));
    let today = app.core.today();
    let spoken = format!(
        "12 (moderate) on {} {} {}",
        today.day(),
        today.month(),
        today.year()
    );
    assert!(svg.contains(&spoken), "the desc says it in words: {svg}");
    assert_eq!(svg.matches("<circle ").count(), 1, "one point");
    assert!(svg.contains(">12</text>"), "the point's label");
    assert!(
        !html.contains(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" aria-labelledby=\"chart-gad-7"
        ),
        "no GAD-7 scores, no chart"
    );
    assert!(
        html.contains("PHQ-9 scores, oldest first (out of 27)"),
        "the table"
    );
    // The completed one, read-only, for the professional.
    let (status, html) = get(&app, &doctor, &format!("{theirs}/questionnaires/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("This questionnaire was completed on"));
    assert!(
        !html.contains("<form action=\"/people"),
        "no form to answer"
    );

    // The store holds none of it in plaintext. (Needles of five letters or
    // more: a shorter one turns up in random ciphertext now and then.)
    let stored = stored_text(&app);
    for secret in [
        "phq-9",
        "patient health",
        "nearly every day",
        "moderate",
        "little interest",
        "riverside",
    ] {
        assert!(!stored.contains(secret), "{secret} in the store");
    }
    app.stop().await;
}

#[tokio::test]
async fn only_whom_the_consent_allows_assigns_sees_and_completes() {
    let app = spawn_app().await;
    let (_, record) = patient(&app, "Pat Quill", "pat@example.test").await;
    let theirs = format!("/people/{record}/record");
    let helper = carer(
        &app,
        "pat@example.test",
        "Hal Helper",
        "hal@example.test",
        perms(true, true, true),
    )
    .await;
    let viewer = carer(
        &app,
        "pat@example.test",
        "Vic Viewer",
        "vic@example.test",
        perms(true, false, true),
    )
    .await;
    let adder = carer(
        &app,
        "pat@example.test",
        "Ada Adder",
        "ada@example.test",
        perms(true, true, false),
    )
    .await;
    let (_, reader) = doctor_at(
        &app,
        "Readers Practice",
        "doc@readers.test",
        "pat@example.test",
        perms(true, false, false),
        &[Category::MentalHealth],
    )
    .await;
    let (_, general) = doctor_at(
        &app,
        "General Practice",
        "doc@general.test",
        "pat@example.test",
        perms(true, true, false),
        &[Category::General],
    )
    .await;
    let (_, clinician) = doctor_at(
        &app,
        "Wellbeing Team",
        "doc@wellbeing.test",
        "pat@example.test",
        perms(true, true, false),
        &[Category::MentalHealth],
    )
    .await;

    // Read only in mental health: sees the page, no form, cannot assign.
    let (status, html) = get(&app, &reader, &format!("{theirs}/questionnaires")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!html.contains("Assign a questionnaire"));
    let token = csrf_token(&app, &reader, &format!("{theirs}/questionnaires")).await;
    let resp = post_form(
        &app,
        &reader,
        &format!("{theirs}/questionnaires"),
        &[("csrf_token", &token), ("questionnaire", "phq-9")],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    // Contribute, but not in mental health: told it is not shared, cannot assign.
    let (status, html) = get(&app, &general, &format!("{theirs}/questionnaires")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("which is not shared with you"));
    assert!(!html.contains("Assign a questionnaire"));
    let token = csrf_token(&app, &general, &format!("{theirs}/questionnaires")).await;
    let resp = post_form(
        &app,
        &general,
        &format!("{theirs}/questionnaires"),
        &[("csrf_token", &token), ("questionnaire", "gad-7")],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    // A carer, even one who may add and act for the patient, cannot assign.
    let token = csrf_token(&app, &helper, &format!("{theirs}/questionnaires")).await;
    let resp = post_form(
        &app,
        &helper,
        &format!("{theirs}/questionnaires"),
        &[("csrf_token", &token), ("questionnaire", "gad-7")],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.rows(QUESTIONNAIRE_ASSIGNMENTS), 0);

    // The team that may add to mental health assigns a GAD-7.
    let mails_before = app.mails().len();
    let resp = assign(&app, &clinician, &theirs, "gad-7").await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let mails = app.mails()[mails_before..].to_vec();
    let to = |addr: &str| mails.iter().find(|m| m.contains(&format!("To: {addr}")));
    assert!(to("pat@example.test").is_some(), "the patient");
    let hal = to("hal@example.test").expect("the carer who may answer");
    assert!(
        hal.contains(&link(&app, &format!("{theirs}/questionnaires"))),
        "{hal}"
    );
    assert!(!hal.to_lowercase().contains("gad"));
    assert!(to("vic@example.test").is_none(), "may not add");
    assert!(to("ada@example.test").is_none(), "may not act for them");
    assert_eq!(mails.len(), 2);

    let (_, html) = get(&app, &clinician, &format!("{theirs}/questionnaires")).await;
    let id = first_pending(&html, &theirs);
    let form = format!("{theirs}/questionnaires/{id}");
    let seven = |token: &str| -> Vec<(String, String)> {
        let mut f = vec![("csrf_token".to_string(), token.to_string())];
        for i in 1..=7 {
            f.push((format!("item-{i}"), "1".to_string()));
        }
        f
    };
    let post_answers = |client: &Client, fields: Vec<(String, String)>| {
        client.post(app.url(&form)).form(&fields).send()
    };

    // The professional sees it read-only and cannot answer it.
    let (status, html) = get(&app, &clinician, &form).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Waiting for Pat Quill to complete this."));
    assert!(!html.contains("name=\"item-1\""));
    let token = csrf_token(&app, &clinician, &form).await;
    let resp = post_answers(&clinician, seven(&token)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    // Carers who may not act for the patient, or may not add: read-only, 404.
    for (who, client) in [("viewer", &viewer), ("adder", &adder)] {
        let (status, html) = get(&app, client, &format!("{theirs}/questionnaires")).await;
        assert_eq!(status, StatusCode::OK, "{who}");
        assert!(
            html.contains("Waiting for Pat Quill to complete this."),
            "{who}"
        );
        let (status, html) = get(&app, client, &form).await;
        assert_eq!(status, StatusCode::OK, "{who}");
        assert!(!html.contains("name=\"item-1\""), "{who}: no form");
        let token = csrf_token(&app, client, &form).await;
        let resp = post_answers(client, seven(&token)).await.unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{who}");
    }
    // Another person altogether: 404 whichever way they try.
    let bob = signed_in(&app, "bob@example.test").await;
    for path in [
        format!("{theirs}/questionnaires"),
        form.clone(),
        format!("/record/questionnaires/{id}"),
    ] {
        let (status, html) = get(&app, &bob, &path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert!(!html.contains("Pat Quill"), "{path}");
    }
    let token = csrf_token(&app, &bob, "/record/questionnaires").await;
    let resp = post_answers(&bob, seven(&token)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = post_form(
        &app,
        &bob,
        &format!("{theirs}/questionnaires"),
        &[("csrf_token", &token), ("questionnaire", "phq-9")],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.rows(ENTRIES), 0);

    // The carer who may add and act for the patient completes it.
    let (status, html) = get(&app, &helper, &form).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("name=\"item-7\""));
    assert!(html.contains("You are answering for Pat Quill."));
    let token = csrf_token(&app, &helper, &form).await;
    let resp = post_answers(&helper, seven(&token)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let (_, html) = get(&app, &helper, &location(&resp).unwrap()).await;
    assert!(html.contains("GAD-7 completed: the score is 7 out of 21 (mild)."));
    assert_eq!(app.rows(ENTRIES), 1);
    let (_, html) = get(&app, &clinician, &format!("{theirs}/questionnaires")).await;
    assert!(html.contains("7 out of 21"));
    assert!(svg_in(&html).contains(">7</text>"));
    app.stop().await;
}

#[tokio::test]
async fn questionnaire_forms_refuse_a_missing_csrf_token_and_a_double_submit_saves_once() {
    let app = spawn_app().await;
    let (pat, record) = patient(&app, "Pat Quill", "pat@example.test").await;
    let (_, doctor) = doctor_at(
        &app,
        "Riverside Wellbeing",
        "doc@riverside.test",
        "pat@example.test",
        perms(true, true, false),
        &[Category::MentalHealth],
    )
    .await;
    let theirs = format!("/people/{record}/record");

    for fields in [
        vec![("questionnaire", "phq-9")],
        vec![("csrf_token", "forged"), ("questionnaire", "phq-9")],
    ] {
        let resp = post_form(&app, &doctor, &format!("{theirs}/questionnaires"), &fields).await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    }
    assert_eq!(app.rows(QUESTIONNAIRE_ASSIGNMENTS), 0);
    assert_eq!(
        assign(&app, &doctor, &theirs, "phq-9").await.status(),
        StatusCode::SEE_OTHER
    );
    let (_, html) = get(&app, &pat, "/record/questionnaires").await;
    let id = first_pending(&html, "/record");
    let form = format!("/record/questionnaires/{id}");

    let resp = submit(&app, &pat, &form, &answers("", &TWELVE)[1..]).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN, "no token");
    let resp = submit(&app, &pat, &form, &answers("forged", &TWELVE)).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN, "a wrong token");
    assert_eq!(app.rows(ENTRIES), 0);

    // Two submissions at once (a double click): one entry.
    let token = csrf_token(&app, &pat, &form).await;
    let fields = answers(&token, &TWELVE);
    let (a, b) = tokio::join!(
        submit(&app, &pat, &form, &fields),
        submit(&app, &pat, &form, &fields)
    );
    let mut statuses = [a.status(), b.status()];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::SEE_OTHER, StatusCode::CONFLICT]);
    assert_eq!(app.rows(ENTRIES), 1);
    let (_, html) = get(&app, &pat, "/record").await;
    assert_eq!(html.matches("PHQ-9: 12 (moderate)").count(), 1);
    app.stop().await;
}
