//! Organisation pages: a professional's lookup and emergency access, the
//! administrator's pages kept to their own organisation, CSRF on every form,
//! removal ending access at once, and staff invitations by mail.

use keyhold_domain::consent::{Permissions, StaffRole};
use keyhold_domain::trees::{BREAK_GLASS, GRANTS, MEMBERS, STAFF_INVITES};
use keyhold_domain::{
    Category, Demographics, Email, GrantTerms, NewGrantee, NhsNumber, OrgId, PatientId,
};
use reqwest::StatusCode;
use time::Duration;

use crate::helpers::{
    csrf_token, get, h1, location, member, nhs, organisation, post_form, principal_of, signed_in,
    spawn_app, TestApp, PASSWORD,
};

/// A registered patient with an NHS number and an email address.
async fn patient(app: &TestApp, number: NhsNumber, family: &str, email: &str) -> PatientId {
    let mut d = Demographics::empty();
    d.given_name = "Pat".into();
    d.family_name = family.into();
    d.nhs_number = Some(number);
    d.email = Some(Email::parse(email).unwrap());
    app.core.register_patient(d).await.unwrap()
}

/// The patient (given an account) shares their General entries with `org`.
async fn share_with(app: &TestApp, record: PatientId, email: &str, org: OrgId) {
    app.core
        .create_account_for("Pat Shared", email, PASSWORD, Some(record))
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
                    contribute: false,
                    act_on_behalf: false,
                },
                categories: [Category::General].into_iter().collect(),
                last_day: app.core.today() + Duration::days(30),
                purpose: "My GP surgery".into(),
            },
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_doctor_opens_an_unshared_record_only_with_a_reason_and_the_admin_sees_it() {
    let app = spawn_app().await;
    let (org, admin) = organisation(&app, "Riverside Surgery", "admin@riverside.test").await;
    let doctor = member(&app, org, "doc@riverside.test", StaffRole::Doctor).await;
    let number = nhs(1);
    let record = patient(&app, number, "Zebedee-Unshared", "pat@example.test").await;
    let home = format!("/organisations/{org}");
    let record_page = format!("/people/{record}/record");

    // The lookup finds a record not shared with Riverside: the break-glass
    // page, naming nothing but the number typed.
    let token = csrf_token(&app, &doctor, &home).await;
    let resp = post_form(
        &app,
        &doctor,
        &format!("{home}/find"),
        &[("csrf_token", &token), ("nhs-number", &number.digits())],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let html = resp.text().await.unwrap();
    assert_eq!(h1(&html), "You do not have access to this record");
    assert!(html.contains(&number.to_string()), "the number typed");
    assert!(html.contains("nhsuk-warning-callout"));
    assert!(html.contains(&format!("action=\"{home}/emergency\"")));
    assert!(html.contains("Open emergency access"));
    assert!(
        !html.contains("Zebedee"),
        "no patient details before access"
    );
    let (status, _) = get(&app, &doctor, &record_page).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no access yet");

    // Too short a reason: the form again, and still no access.
    let resp = post_form(
        &app,
        &doctor,
        &format!("{home}/emergency"),
        &[
            ("csrf_token", &token),
            ("patient", &record.to_string()),
            ("nhs-number", &number.to_string()),
            ("reason", "abc"),
        ],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = resp.text().await.unwrap();
    assert!(html.contains("nhsuk-error-summary"));
    assert!(html.contains("href=\"#reason\""));
    assert!(!html.contains("Zebedee"));
    assert_eq!(app.rows(BREAK_GLASS), 0);
    let (status, _) = get(&app, &doctor, &record_page).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a refused reason opens nothing"
    );
    let mails_before = app.mails().len();

    // A proper reason opens the record, under the emergency strip.
    let reason = "Unconscious in A&E, need allergy history";
    let resp = post_form(
        &app,
        &doctor,
        &format!("{home}/emergency"),
        &[
            ("csrf_token", &token),
            ("patient", &record.to_string()),
            ("reason", reason),
        ],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&resp).as_deref(), Some(record_page.as_str()));
    let (status, html) = get(&app, &doctor, &record_page).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Emergency access"));
    assert!(html.contains("Zebedee-Unshared"));

    // The patient was told.
    let mails = app.mails();
    assert_eq!(mails.len(), mails_before + 1);
    let mail = mails.last().unwrap();
    assert!(mail.contains("To: pat@example.test"), "{mail}");
    assert!(mail.contains("Your health record was opened in an emergency"));

    // The administrator's report lists it, with the reason.
    let (status, html) = get(&app, &admin, &format!("{home}/emergency-access")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h1(&html), "Emergency access report");
    assert!(html.contains("Zebedee-Unshared"));
    assert!(html.contains(&number.to_string()));
    assert!(html.contains("Unconscious in A&amp;E, need allergy history"));
    app.stop().await;
}

#[tokio::test]
async fn the_lookup_explains_bad_and_unknown_numbers() {
    let app = spawn_app().await;
    let (org, _admin) = organisation(&app, "Riverside Surgery", "admin@riverside.test").await;
    let doctor = member(&app, org, "doc@riverside.test", StaffRole::Doctor).await;
    let home = format!("/organisations/{org}");
    let token = csrf_token(&app, &doctor, &home).await;
    for (typed, message) in [
        ("12345", "Enter an NHS number with 10 digits"),
        (&*nhs(7).digits(), "No Keyhold record has this NHS number"),
    ] {
        let resp = post_form(
            &app,
            &doctor,
            &format!("{home}/find"),
            &[("csrf_token", &token), ("nhs-number", typed)],
        )
        .await;
        assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY, "{typed}");
        let html = resp.text().await.unwrap();
        assert!(html.contains("href=\"#nhs-number\""), "{typed}");
        assert!(html.contains(message), "{typed}");
    }
    app.stop().await;
}

#[tokio::test]
async fn organisation_pages_are_not_found_for_anyone_without_the_role_there() {
    let app = spawn_app().await;
    let (a, admin_a) = organisation(&app, "Riverside Surgery", "admin@riverside.test").await;
    let (b, admin_b) = organisation(&app, "Hillside Hospital", "admin@hillside.test").await;
    let b_admin = principal_of(&app, "admin@hillside.test").await.account;
    member(&app, b, "nurse@hillside.test", StaffRole::Nurse).await;
    let b_nurse_id = principal_of(&app, "nurse@hillside.test").await.account;
    let doctor_a = member(&app, a, "doc@riverside.test", StaffRole::Doctor).await;
    let stranger = signed_in(&app, "stranger@example.test").await;
    patient(&app, nhs(2), "Bystander", "by@example.test").await;

    // Controls: each administrator reaches their own pages.
    for (client, org) in [(&admin_a, a), (&admin_b, b)] {
        for page in ["", "/staff", "/proxies/new", "/emergency-access"] {
            let (status, _) = get(&app, client, &format!("/organisations/{org}{page}")).await;
            assert_eq!(status, StatusCode::OK, "own page {page}");
        }
    }

    // A's administrator, on B's pages.
    for page in ["", "/staff", "/proxies/new", "/emergency-access"] {
        let (status, html) = get(&app, &admin_a, &format!("/organisations/{b}{page}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "B{page}");
        assert!(!html.contains("Hillside"), "B{page} names nothing");
    }
    let members_before = app.rows(MEMBERS);
    let mails_before = app.mails().len();
    let token = csrf_token(&app, &admin_a, &format!("/organisations/{a}/staff")).await;
    let posts = [
        (
            format!("/organisations/{b}/staff"),
            vec![("email", "mole@example.test"), ("role", "administrator")],
        ),
        (
            format!("/organisations/{b}/staff/{b_nurse_id}/role"),
            vec![("role", "administrator")],
        ),
        (
            format!("/organisations/{b}/staff/{b_nurse_id}/remove"),
            vec![],
        ),
        (format!("/organisations/{b}/staff/{b_admin}/remove"), vec![]),
        (
            format!("/organisations/{b}/proxies/new"),
            vec![
                ("nhs-number", "9434765919"),
                ("carer-email", "mole@example.test"),
                ("basis", "best_interests"),
            ],
        ),
        (
            format!("/organisations/{b}/find"),
            vec![("nhs-number", "9434765919")],
        ),
    ];
    for (path, fields) in &posts {
        let mut form = vec![("csrf_token", token.as_str())];
        form.extend(fields.iter().copied());
        let resp = post_form(&app, &admin_a, path, &form).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "POST {path}");
    }
    assert_eq!(app.rows(MEMBERS), members_before);
    assert_eq!(app.rows(STAFF_INVITES), 0);
    assert_eq!(app.rows(GRANTS), 0);
    assert_eq!(app.mails().len(), mails_before, "no invitation sent");
    let b_admin_p = principal_of(&app, "admin@hillside.test").await;
    let (members, _) = app.core.staff(&b_admin_p, b).unwrap();
    assert!(members.iter().all(|m| m.active));
    let nurse = members.iter().find(|m| m.account == b_nurse_id).unwrap();
    assert_eq!(nurse.role, StaffRole::Nurse);

    // A doctor of A is not an administrator of A.
    let (status, _) = get(&app, &doctor_a, &format!("/organisations/{a}")).await;
    assert_eq!(status, StatusCode::OK, "control: the doctor's home");
    for page in ["/staff", "/proxies/new", "/emergency-access"] {
        let (status, _) = get(&app, &doctor_a, &format!("/organisations/{a}{page}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "doctor on A{page}");
    }
    let token = csrf_token(&app, &doctor_a, &format!("/organisations/{a}")).await;
    let resp = post_form(
        &app,
        &doctor_a,
        &format!("/organisations/{a}/staff"),
        &[
            ("csrf_token", &token),
            ("email", "mole@example.test"),
            ("role", "administrator"),
        ],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND, "doctor inviting");
    assert_eq!(app.rows(STAFF_INVITES), 0);

    // Someone in no organisation, and a made-up organisation.
    let (status, _) = get(&app, &stranger, &format!("/organisations/{a}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "stranger on A");
    let (status, html) = get(&app, &stranger, "/organisations").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("not a member of any organisation"));
    for path in [
        format!("/organisations/{}", uuid::Uuid::new_v4()),
        "/organisations/not-an-id".to_string(),
    ] {
        let (status, _) = get(&app, &admin_a, &path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    app.stop().await;
}

#[tokio::test]
async fn every_organisation_form_needs_the_pages_csrf_token() {
    let app = spawn_app().await;
    let (org, admin) = organisation(&app, "Riverside Surgery", "admin@riverside.test").await;
    let doctor = member(&app, org, "doc@riverside.test", StaffRole::Doctor).await;
    let doctor_id = principal_of(&app, "doc@riverside.test").await.account;
    let number = nhs(3);
    let record = patient(&app, number, "Unshared", "pat@example.test").await;
    let other = csrf_token(
        &app,
        &signed_in(&app, "other@example.test").await,
        "/record",
    )
    .await;
    let home = format!("/organisations/{org}");
    let right = csrf_token(&app, &admin, &home).await;
    let digits = number.digits();

    let admin_posts = [
        (
            format!("{home}/staff"),
            vec![("email", "new@riverside.test"), ("role", "nurse")],
        ),
        (
            format!("{home}/staff/{doctor_id}/role"),
            vec![("role", "administrator")],
        ),
        (format!("{home}/staff/{doctor_id}/remove"), vec![]),
        (
            format!("{home}/proxies/new"),
            vec![
                ("nhs-number", digits.as_str()),
                ("carer-email", "carer@example.test"),
                ("basis", "best_interests"),
                ("may-read", "on"),
                ("category-general", "on"),
                ("ends-day", "31"),
                ("ends-month", "12"),
                ("ends-year", "2030"),
                ("purpose", "Cares for her mother"),
            ],
        ),
    ];
    let record_id = record.to_string();
    let doctor_posts = [
        (format!("{home}/find"), vec![("nhs-number", "9434765919")]),
        (
            format!("{home}/emergency"),
            vec![
                ("patient", record_id.as_str()),
                ("reason", "Unconscious in A&E, need allergy history"),
            ],
        ),
    ];
    let mails_before = app.mails().len();
    for (client, posts) in [(&admin, &admin_posts[..]), (&doctor, &doctor_posts[..])] {
        for (path, fields) in posts {
            for token in [None, Some(""), Some("wrong"), Some(other.as_str())] {
                let mut form: Vec<(&str, &str)> =
                    token.iter().map(|t| ("csrf_token", *t)).collect();
                form.extend(fields.iter().copied());
                let resp = post_form(&app, client, path, &form).await;
                assert_eq!(
                    resp.status(),
                    StatusCode::FORBIDDEN,
                    "POST {path} with token {token:?}"
                );
                assert_eq!(
                    h1(&resp.text().await.unwrap()),
                    "Sorry, this form has expired"
                );
            }
        }
    }
    let admin_p = principal_of(&app, "admin@riverside.test").await;
    let (members, pending) = app.core.staff(&admin_p, org).unwrap();
    assert_eq!(members.len(), 2);
    assert!(members.iter().all(|m| m.active));
    let doc = members.iter().find(|m| m.account == doctor_id).unwrap();
    assert_eq!(doc.role, StaffRole::Doctor);
    assert!(pending.is_empty());
    assert_eq!(app.rows(GRANTS), 0);
    assert_eq!(app.rows(BREAK_GLASS), 0);
    assert_eq!(app.mails().len(), mails_before);
    let (status, _) = get(&app, &doctor, &format!("/people/{record}/record")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Control: the page's own token works for a change.
    let resp = post_form(
        &app,
        &admin,
        &format!("{home}/staff/{doctor_id}/role"),
        &[("csrf_token", &right), ("role", "nurse")],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        location(&resp).as_deref(),
        Some(format!("{home}/staff?done=role").as_str())
    );
    app.stop().await;
}

#[tokio::test]
async fn removing_a_doctor_ends_their_access_on_the_next_request() {
    let app = spawn_app().await;
    let (org, admin) = organisation(&app, "Riverside Surgery", "admin@riverside.test").await;
    let doctor = member(&app, org, "doc@riverside.test", StaffRole::Doctor).await;
    let doctor_id = principal_of(&app, "doc@riverside.test").await.account;
    let number = nhs(4);
    let record = patient(&app, number, "Shared", "pat@example.test").await;
    share_with(&app, record, "pat@example.test", org).await;
    let home = format!("/organisations/{org}");
    let record_page = format!("/people/{record}/record");

    let token = csrf_token(&app, &doctor, &home).await;
    let resp = post_form(
        &app,
        &doctor,
        &format!("{home}/find"),
        &[("csrf_token", &token), ("nhs-number", &number.to_string())],
    )
    .await;
    // The search lists the one match, linking to the record.
    assert_eq!(resp.status(), StatusCode::OK);
    let html = resp.text().await.unwrap();
    assert!(html.contains(&format!("href=\"{record_page}\"")));
    let (status, html) = get(&app, &doctor, &record_page).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Pat Shared"));

    // The staff page offers the removal; the administrator cannot remove
    // themselves.
    let staff = format!("{home}/staff");
    let (status, html) = get(&app, &admin, &staff).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(&format!("action=\"{staff}/{doctor_id}/remove\"")));
    let admin_token = csrf_token(&app, &admin, &staff).await;
    let admin_id = principal_of(&app, "admin@riverside.test").await.account;
    let resp = post_form(
        &app,
        &admin,
        &format!("{staff}/{admin_id}/remove"),
        &[("csrf_token", &admin_token)],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = resp.text().await.unwrap();
    assert!(html.contains("nhsuk-error-summary"));
    assert!(html.contains("href=\"#staff\""));

    let resp = post_form(
        &app,
        &admin,
        &format!("{staff}/{doctor_id}/remove"),
        &[("csrf_token", &admin_token)],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        location(&resp).as_deref(),
        Some(format!("{staff}?done=removed").as_str())
    );

    // The very next request of the same browser is refused.
    let (status, html) = get(&app, &doctor, &record_page).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!html.contains("Pat Shared"), "nothing of the record");
    let (status, _) = get(&app, &doctor, &home).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, html) = get(&app, &admin, &format!("{staff}?done=removed")).await;
    assert!(html.contains("Removed"));
    app.stop().await;
}

#[tokio::test]
async fn an_invitation_from_the_staff_page_is_mailed_to_the_invited_address() {
    let app = spawn_app().await;
    let (org, admin) = organisation(&app, "Riverside Surgery", "admin@riverside.test").await;
    let staff = format!("/organisations/{org}/staff");
    let token = csrf_token(&app, &admin, &staff).await;
    let before = app.mails().len();

    // A bad address: the form again, nothing sent.
    let resp = post_form(
        &app,
        &admin,
        &staff,
        &[
            ("csrf_token", &token),
            ("email", "not an address"),
            ("role", "nurse"),
        ],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(resp.text().await.unwrap().contains("href=\"#email\""));
    assert_eq!(app.mails().len(), before);

    let resp = post_form(
        &app,
        &admin,
        &staff,
        &[
            ("csrf_token", &token),
            ("email", "nina@riverside.test"),
            ("role", "nurse"),
        ],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        location(&resp).as_deref(),
        Some(format!("{staff}?done=invited").as_str())
    );
    let mails = app.mails();
    assert_eq!(mails.len(), before + 1);
    let mail = mails.last().unwrap();
    assert!(mail.contains("To: nina@riverside.test"), "{mail}");
    assert!(mail.contains("/invitations/"));
    assert!(mail.contains("Nurse"));

    let (status, html) = get(&app, &admin, &format!("{staff}?done=invited")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Invitation sent"));
    assert!(html.contains("nina@riverside.test"), "listed as pending");
    app.stop().await;
}

#[tokio::test]
async fn an_administrator_sets_up_proxy_access_through_the_form() {
    let app = spawn_app().await;
    let (org, admin) = organisation(&app, "Riverside Surgery", "admin@riverside.test").await;
    let number = nhs(5);
    patient(&app, number, "Child", "child@example.test").await;
    let page = format!("/organisations/{org}/proxies/new");
    let (status, html) = get(&app, &admin, &page).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h1(&html), "Set up proxy access");
    assert!(html.contains("value=\"parental_responsibility\""));
    let token = csrf_token(&app, &admin, &page).await;
    let digits = number.digits();
    let mut fields = vec![
        ("csrf_token", token.as_str()),
        ("nhs-number", digits.as_str()),
        ("carer-email", "parent@example.test"),
        ("may-read", "on"),
        ("category-general", "on"),
        ("ends-day", "31"),
        ("ends-month", "12"),
        ("ends-year", "2030"),
        ("purpose", "Parent of a young child"),
    ];

    // No legal basis: the form again, with the terms kept.
    let resp = post_form(&app, &admin, &page, &fields).await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = resp.text().await.unwrap();
    assert!(html.contains("href=\"#basis\""));
    assert!(html.contains("Parent of a young child"));
    assert_eq!(app.rows(GRANTS), 0);

    fields.push(("basis", "parental_responsibility"));
    let resp = post_form(&app, &admin, &page, &fields).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        location(&resp).as_deref(),
        Some(format!("/organisations/{org}?done=proxy").as_str())
    );
    assert_eq!(app.rows(GRANTS), 1);
    assert!(app
        .mails()
        .iter()
        .any(|m| m.contains("To: parent@example.test")));
    let (_, html) = get(&app, &admin, &format!("/organisations/{org}?done=proxy")).await;
    assert!(html.contains("Proxy access set up"));
    app.stop().await;
}
