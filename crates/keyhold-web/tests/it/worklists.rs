//! A professional's "recently accessed" records and worklists: opening a
//! shared record lists it, worklists are made, renamed, filled, emptied and
//! deleted with clear field errors, a person whose record can no longer be
//! read shows only as "Access has ended", nobody else reaches these pages,
//! every form needs its CSRF token, and the store holds no name in the clear.

use keyhold_domain::consent::{Permissions, StaffRole};
use keyhold_domain::policy::Principal;
use keyhold_domain::trees::{RECENT_RECORDS, WORKLISTS, WORKLIST_NAMES};
use keyhold_domain::{
    AccountId, Category, Demographics, GrantId, GrantTerms, IdentityLevel, NewGrantee, OrgId,
    PatientId,
};
use reqwest::{Client, StatusCode};
use time::macros::date;
use time::Duration;

use crate::helpers::{
    csrf_token, get, h1, location, member, nhs, organisation, post_form, signed_in, spawn_app,
    TestApp,
};

/// A patient "Pat {family}" (NHS number `nhs(n)`), and the patient's own
/// principal to share and revoke with.
async fn patient(app: &TestApp, n: u32, family: &str) -> (PatientId, Principal) {
    let mut d = Demographics::empty();
    d.given_name = "Pat".into();
    d.family_name = family.into();
    d.nhs_number = Some(nhs(n));
    d.date_of_birth = Some(date!(1971 - 08 - 23));
    let record = app.core.register_patient(d).await.unwrap();
    let owner = Principal::patient(AccountId::new_random(), Some(record), IdentityLevel::P9);
    (record, owner)
}

/// The patient shares their General entries with `org`.
async fn share(app: &TestApp, owner: &Principal, org: OrgId) -> GrantId {
    app.core
        .share(
            owner,
            owner.own_patient.unwrap(),
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
        .unwrap()
}

async fn shared_patient(app: &TestApp, org: OrgId, n: u32, family: &str) -> PatientId {
    let (record, owner) = patient(app, n, family).await;
    share(app, &owner, org).await;
    record
}

async fn open_record(app: &TestApp, client: &Client, record: PatientId) {
    let (status, _) = get(app, client, &format!("/people/{record}/record")).await;
    assert_eq!(status, StatusCode::OK, "opening {record}");
}

/// Where a POST redirected to (asserting it did).
async fn post_redirect(
    app: &TestApp,
    client: &Client,
    path: &str,
    fields: &[(&str, &str)],
) -> String {
    let resp = post_form(app, client, path, fields).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER, "POST {path}");
    location(&resp).unwrap()
}

/// Creates a worklist through the form; returns its id.
async fn create_list(app: &TestApp, client: &Client, org: OrgId, name: &str) -> String {
    let lists = format!("/organisations/{org}/worklists");
    let token = csrf_token(app, client, &lists).await;
    let to = post_redirect(
        app,
        client,
        &lists,
        &[("csrf_token", &token), ("name", name)],
    )
    .await;
    let id = to
        .strip_prefix(&format!("{lists}/"))
        .and_then(|rest| rest.strip_suffix("?done=created"))
        .unwrap_or_else(|| panic!("redirect to the new list, not {to}"));
    id.to_string()
}

fn link_to(record: PatientId) -> String {
    format!("href=\"/people/{record}/record\"")
}

#[tokio::test]
async fn opening_shared_records_lists_them_newest_first_once_each_and_at_most_twenty() {
    let app = spawn_app().await;
    let (org, _) = organisation(&app, "Riverside Surgery", "admin@riverside.test").await;
    let doctor = member(&app, org, "doc@riverside.test", StaffRole::Doctor).await;
    let recent = format!("/organisations/{org}/recent");
    let mut records = Vec::new();
    for n in 0..21 {
        records.push(shared_patient(&app, org, n, &format!("Recent{n:02}")).await);
    }

    let (status, page) = get(&app, &doctor, &recent).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h1(&page), "Recently accessed records");
    assert!(page.contains("You have not opened any records"));

    open_record(&app, &doctor, records[0]).await;
    let (_, page) = get(&app, &doctor, &recent).await;
    assert!(page.contains(&link_to(records[0])));
    assert!(page.contains("Pat Recent00"));
    assert!(page.contains(&nhs(0).to_string()));
    assert!(page.contains("23 August 1971"));

    open_record(&app, &doctor, records[1]).await;
    let (_, page) = get(&app, &doctor, &recent).await;
    let at = |page: &str, r: PatientId| page.find(&link_to(r)).unwrap();
    assert!(
        at(&page, records[1]) < at(&page, records[0]),
        "newest first"
    );

    // Reopening moves it to the top, without a second row.
    open_record(&app, &doctor, records[0]).await;
    let (_, page) = get(&app, &doctor, &recent).await;
    assert!(at(&page, records[0]) < at(&page, records[1]));
    assert_eq!(page.matches(&link_to(records[0])).count(), 1);

    // 21 distinct records opened: the one opened longest ago falls off.
    for r in &records[2..] {
        open_record(&app, &doctor, *r).await;
    }
    let (_, page) = get(&app, &doctor, &recent).await;
    assert_eq!(page.matches("href=\"/people/").count(), 20);
    assert!(!page.contains(&link_to(records[1])));
    assert!(page.contains(&link_to(records[0])));
    assert!(at(&page, records[20]) < at(&page, records[2]));
}

#[tokio::test]
async fn a_worklist_is_created_renamed_filled_emptied_and_deleted() {
    let app = spawn_app().await;
    let (org, _) = organisation(&app, "Riverside Surgery", "admin@riverside.test").await;
    let doctor = member(&app, org, "doc@riverside.test", StaffRole::Doctor).await;
    let record = shared_patient(&app, org, 1, "Listed").await;
    let lists = format!("/organisations/{org}/worklists");

    let (status, page) = get(&app, &doctor, &lists).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("You have no worklists yet"));
    let token = csrf_token(&app, &doctor, &lists).await;

    // Field errors: empty, too long.
    for (name, message) in [
        ("   ", "Enter a name for the worklist"),
        (&"x".repeat(81)[..], "80 characters or fewer"),
    ] {
        let resp = post_form(
            &app,
            &doctor,
            &lists,
            &[("csrf_token", &token), ("name", name)],
        )
        .await;
        assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let page = resp.text().await.unwrap();
        assert!(page.contains(message), "{message}");
        assert!(
            page.contains("href=\"#name\""),
            "error summary links the field"
        );
    }

    let ward = create_list(&app, &doctor, org, "Ward 3").await;
    let clinic = create_list(&app, &doctor, org, "Clinic").await;
    // A name in use, in any case, is refused.
    let resp = post_form(
        &app,
        &doctor,
        &lists,
        &[("csrf_token", &token), ("name", "ward 3")],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(resp
        .text()
        .await
        .unwrap()
        .contains("already have a worklist with this name"));
    let (_, page) = get(&app, &doctor, &lists).await;
    assert!(page.contains(&format!("href=\"{lists}/{ward}\"")));
    assert!(page.contains("Ward 3") && page.contains("Clinic"));

    // Add from the record's "Add to a worklist" page.
    open_record(&app, &doctor, record).await;
    let add = format!("{lists}/add?patient={record}");
    let (status, page) = get(&app, &doctor, &add).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Pat Listed"));
    assert!(page.contains(&format!("action=\"{lists}/{ward}/add\"")));
    let to = post_redirect(
        &app,
        &doctor,
        &format!("{lists}/{ward}/add"),
        &[("csrf_token", &token), ("patient", &record.to_string())],
    )
    .await;
    assert_eq!(to, format!("{lists}/{ward}?done=added"));
    let (_, page) = get(&app, &doctor, &to).await;
    assert_eq!(h1(&page), "Ward 3");
    assert!(page.contains("Added to this worklist."));
    assert!(page.contains(&link_to(record)));
    assert!(page.contains("Pat Listed") && page.contains(&nhs(1).to_string()));
    assert!(page
        .contains("Remove<span class=\"nhsuk-u-visually-hidden\"> Pat Listed from this worklist"));
    // Adding again keeps one row; the add page says it is there already.
    let to = post_redirect(
        &app,
        &doctor,
        &format!("{lists}/{ward}/add"),
        &[("csrf_token", &token), ("patient", &record.to_string())],
    )
    .await;
    assert_eq!(to, format!("{lists}/{ward}?done=already"));
    let (_, page) = get(&app, &doctor, &to).await;
    assert_eq!(page.matches(&link_to(record)).count(), 1);
    let (_, page) = get(&app, &doctor, &add).await;
    assert!(page.contains("Already on this list"));

    // "Create a new list and add": a duplicate name is a field error, on the add page.
    let resp = post_form(
        &app,
        &doctor,
        &lists,
        &[
            ("csrf_token", &token),
            ("name", "CLINIC"),
            ("patient", &record.to_string()),
        ],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = resp.text().await.unwrap();
    assert_eq!(h1(&page), "Add to a worklist");
    assert!(page.contains("already have a worklist with this name"));
    let to = post_redirect(
        &app,
        &doctor,
        &lists,
        &[
            ("csrf_token", &token),
            ("name", "Home visits"),
            ("patient", &record.to_string()),
        ],
    )
    .await;
    assert!(to.ends_with("?done=added"), "{to}");
    let (_, page) = get(&app, &doctor, &to).await;
    assert_eq!(h1(&page), "Home visits");
    assert!(page.contains(&link_to(record)));

    // Rename: errors, then done.
    let rename = format!("{lists}/{ward}/rename");
    for (name, message) in [
        ("", "Enter a name for the worklist"),
        ("clinic", "already have a worklist with this name"),
    ] {
        let resp = post_form(
            &app,
            &doctor,
            &rename,
            &[("csrf_token", &token), ("name", name)],
        )
        .await;
        assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(resp.text().await.unwrap().contains(message));
    }
    let to = post_redirect(
        &app,
        &doctor,
        &rename,
        &[("csrf_token", &token), ("name", "Ward 3 north")],
    )
    .await;
    assert_eq!(to, format!("{lists}/{ward}?done=renamed"));
    assert_eq!(h1(&get(&app, &doctor, &to).await.1), "Ward 3 north");

    // Remove.
    let to = post_redirect(
        &app,
        &doctor,
        &format!("{lists}/{ward}/remove"),
        &[("csrf_token", &token), ("patient", &record.to_string())],
    )
    .await;
    assert_eq!(to, format!("{lists}/{ward}?done=removed"));
    let (_, page) = get(&app, &doctor, &to).await;
    assert!(!page.contains(&link_to(record)));
    assert!(page.contains("There is no one on this worklist yet"));

    // Delete: only with the box ticked.
    let delete = format!("{lists}/{ward}/delete");
    let resp = post_form(&app, &doctor, &delete, &[("csrf_token", &token)]).await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(resp.text().await.unwrap().contains("Tick the box"));
    assert_eq!(
        get(&app, &doctor, &format!("{lists}/{ward}")).await.0,
        StatusCode::OK
    );
    let to = post_redirect(
        &app,
        &doctor,
        &delete,
        &[("csrf_token", &token), ("confirm", "yes")],
    )
    .await;
    assert_eq!(to, format!("{lists}?done=deleted"));
    assert_eq!(
        get(&app, &doctor, &format!("{lists}/{ward}")).await.0,
        StatusCode::NOT_FOUND
    );
    let (_, page) = get(&app, &doctor, &to).await;
    assert!(page.contains("Worklist deleted."));
    assert!(!page.contains("Ward 3 north"));
    assert!(page.contains(&format!("{lists}/{clinic}")));
}

#[tokio::test]
async fn a_person_whose_record_can_no_longer_be_read_shows_only_as_access_ended() {
    let app = spawn_app().await;
    let (org, _) = organisation(&app, "Riverside Surgery", "admin@riverside.test").await;
    let doctor = member(&app, org, "doc@riverside.test", StaffRole::Doctor).await;
    let (record, owner) = patient(&app, 2, "Withdrawn").await;
    let grant = share(&app, &owner, org).await;
    let lists = format!("/organisations/{org}/worklists");
    let recent = format!("/organisations/{org}/recent");
    let list = create_list(&app, &doctor, org, "Ward 5").await;
    let token = csrf_token(&app, &doctor, &lists).await;
    let patient_id = record.to_string();

    open_record(&app, &doctor, record).await;
    post_redirect(
        &app,
        &doctor,
        &format!("{lists}/{list}/add"),
        &[("csrf_token", &token), ("patient", &patient_id)],
    )
    .await;
    let (_, page) = get(&app, &doctor, &format!("{lists}/{list}")).await;
    assert!(page.contains("Pat Withdrawn"));
    assert!(!page.contains("Access has ended"));

    // The patient stops sharing.
    app.core.revoke_grant(&owner, record, grant).await.unwrap();

    let nhs_shown = nhs(2).to_string();
    let nhs_digits = nhs(2).digits();
    for path in [recent.clone(), format!("{lists}/{list}")] {
        let (status, page) = get(&app, &doctor, &path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(page.contains("Access has ended"), "{path}");
        assert!(!page.contains("Withdrawn"), "{path} shows the name");
        assert!(
            !page.contains(&nhs_shown) && !page.contains(&nhs_digits),
            "{path} shows the NHS number"
        );
        assert!(!page.contains("1971"), "{path} shows the date of birth");
        assert!(!page.contains(&link_to(record)), "{path} links the record");
    }
    assert_eq!(
        get(&app, &doctor, &format!("/people/{record}/record"))
            .await
            .0,
        StatusCode::NOT_FOUND
    );

    // They cannot be added again, nor offered; they can be removed.
    let resp = post_form(
        &app,
        &doctor,
        &format!("{lists}/{list}/add"),
        &[("csrf_token", &token), ("patient", &patient_id)],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        get(&app, &doctor, &format!("{lists}/add?patient={record}"))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let page = get(&app, &doctor, &format!("{lists}/{list}")).await.1;
    assert!(page.contains("whose access has ended, from this worklist"));
    post_redirect(
        &app,
        &doctor,
        &format!("{lists}/{list}/remove"),
        &[("csrf_token", &token), ("patient", &patient_id)],
    )
    .await;
    let page = get(&app, &doctor, &format!("{lists}/{list}")).await.1;
    assert!(!page.contains("Access has ended") && !page.contains(&patient_id));

    // Someone who never shared cannot be added, to a list or a new one.
    let (stranger, _) = patient(&app, 3, "Stranger").await;
    let stranger = stranger.to_string();
    for (path, fields) in [
        (
            format!("{lists}/{list}/add"),
            vec![
                ("csrf_token", token.as_str()),
                ("patient", stranger.as_str()),
            ],
        ),
        (
            lists.clone(),
            vec![
                ("csrf_token", token.as_str()),
                ("name", "New"),
                ("patient", stranger.as_str()),
            ],
        ),
    ] {
        let resp = post_form(&app, &doctor, &path, &fields).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
    }
    assert_eq!(
        get(&app, &doctor, &format!("{lists}/add?patient={stranger}"))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert!(!get(&app, &doctor, &lists).await.1.contains(">New<"));
}

#[tokio::test]
async fn nobody_else_reaches_a_professionals_lists_and_every_form_needs_its_token() {
    let app = spawn_app().await;
    let (org, admin) = organisation(&app, "Riverside Surgery", "admin@riverside.test").await;
    let doctor = member(&app, org, "doc@riverside.test", StaffRole::Doctor).await;
    let nurse = member(&app, org, "nurse@riverside.test", StaffRole::Nurse).await;
    let officer = member(
        &app,
        org,
        "records@riverside.test",
        StaffRole::RecordsOfficer,
    )
    .await;
    let outsider = signed_in(&app, "someone@example.test").await;
    let (elsewhere_org, _) = organisation(&app, "Hilltop Clinic", "admin@hilltop.test").await;
    let elsewhere = member(&app, elsewhere_org, "doc@hilltop.test", StaffRole::Doctor).await;
    let record = shared_patient(&app, org, 4, "Private").await;
    let lists = format!("/organisations/{org}/worklists");
    let list = create_list(&app, &doctor, org, "Doctor's private list").await;
    let token = csrf_token(&app, &doctor, &lists).await;
    let patient_id = record.to_string();
    open_record(&app, &doctor, record).await;
    post_redirect(
        &app,
        &doctor,
        &format!("{lists}/{list}/add"),
        &[("csrf_token", &token), ("patient", &patient_id)],
    )
    .await;

    // Another professional of the same organisation sees none of it.
    let (status, page) = get(&app, &nurse, &lists).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!page.contains("private list") && page.contains("You have no worklists yet"));
    let (status, page) = get(&app, &nurse, &format!("/organisations/{org}/recent")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!page.contains("Pat Private"));
    let nurse_token = csrf_token(&app, &nurse, &lists).await;
    for (path, fields) in [
        (format!("{lists}/{list}/rename"), vec![("name", "Mine now")]),
        (
            format!("{lists}/{list}/add"),
            vec![("patient", patient_id.as_str())],
        ),
        (
            format!("{lists}/{list}/remove"),
            vec![("patient", patient_id.as_str())],
        ),
        (format!("{lists}/{list}/delete"), vec![("confirm", "yes")]),
    ] {
        let mut fields = fields;
        fields.push(("csrf_token", nurse_token.as_str()));
        let resp = post_form(&app, &nurse, &path, &fields).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "nurse POST {path}");
    }
    assert_eq!(
        get(&app, &nurse, &format!("{lists}/{list}")).await.0,
        StatusCode::NOT_FOUND
    );

    // An administrator, a records officer (not clinical roles), someone in no
    // organisation and a doctor elsewhere: not found on every route.
    let gets = [
        format!("/organisations/{org}/recent"),
        lists.clone(),
        format!("{lists}/{list}"),
        format!("{lists}/add?patient={record}"),
    ];
    let posts = [
        (lists.clone(), vec![("name", "Sneaky")]),
        (format!("{lists}/{list}/rename"), vec![("name", "Sneaky")]),
        (
            format!("{lists}/{list}/add"),
            vec![("patient", patient_id.as_str())],
        ),
        (
            format!("{lists}/{list}/remove"),
            vec![("patient", patient_id.as_str())],
        ),
        (format!("{lists}/{list}/delete"), vec![("confirm", "yes")]),
    ];
    for (who, client) in [
        ("administrator", &admin),
        ("records officer", &officer),
        ("outsider", &outsider),
        ("doctor elsewhere", &elsewhere),
    ] {
        for path in &gets {
            assert_eq!(
                get(&app, client, path).await.0,
                StatusCode::NOT_FOUND,
                "{who} GET {path}"
            );
        }
        let their_token = csrf_token(&app, client, "/organisations").await;
        for (path, fields) in &posts {
            let mut fields = fields.clone();
            fields.push(("csrf_token", their_token.as_str()));
            let resp = post_form(&app, client, path, &fields).await;
            assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{who} POST {path}");
        }
    }

    // Without the CSRF token, every form is refused and nothing changes.
    for (path, fields) in &posts {
        let resp = post_form(&app, &doctor, path, fields).await;
        assert_eq!(
            resp.status(),
            StatusCode::FORBIDDEN,
            "POST {path} without a token"
        );
        let mut wrong = fields.clone();
        wrong.push(("csrf_token", "not-the-token"));
        let resp = post_form(&app, &doctor, path, &wrong).await;
        assert_eq!(
            resp.status(),
            StatusCode::FORBIDDEN,
            "POST {path} with a wrong token"
        );
    }
    let (status, page) = get(&app, &doctor, &format!("{lists}/{list}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h1(&page), "Doctor&#x27;s private list");
    assert!(page.contains(&link_to(record)));
    assert!(!get(&app, &doctor, &lists).await.1.contains("Sneaky"));
}

#[tokio::test]
async fn the_store_holds_no_list_name_or_patient_in_the_clear() {
    let app = spawn_app().await;
    let (org, _) = organisation(&app, "Riverside Surgery", "admin@riverside.test").await;
    let doctor = member(&app, org, "doc@riverside.test", StaffRole::Doctor).await;
    let record = shared_patient(&app, org, 5, "Quixotefamily").await;
    let list = create_list(&app, &doctor, org, "Zanzibar Confidential Ward").await;
    let lists = format!("/organisations/{org}/worklists");
    let token = csrf_token(&app, &doctor, &lists).await;
    open_record(&app, &doctor, record).await;
    post_redirect(
        &app,
        &doctor,
        &format!("{lists}/{list}/add"),
        &[("csrf_token", &token), ("patient", &record.to_string())],
    )
    .await;
    // What the pages show is there, so the search below is not vacuous.
    let page = get(&app, &doctor, &format!("{lists}/{list}")).await.1;
    assert!(page.contains("Zanzibar Confidential Ward") && page.contains("Pat Quixotefamily"));
    for tree in [RECENT_RECORDS, WORKLIST_NAMES, WORKLISTS] {
        assert_eq!(app.rows(tree), 1, "{}", tree.as_str());
    }

    let digits = nhs(5).digits();
    let shown = nhs(5).to_string();
    let id_text = record.to_string();
    let simple_id = record.uuid().simple().to_string();
    let needles: [&[u8]; 8] = [
        b"Zanzibar",
        b"Confidential",
        b"Quixotefamily",
        digits.as_bytes(),
        shown.as_bytes(),
        id_text.as_bytes(),
        simple_id.as_bytes(),
        &record.as_bytes()[..],
    ];
    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    for tree in [RECENT_RECORDS, WORKLIST_NAMES, WORKLISTS] {
        for row in app.core.store().scan(tree, b"") {
            let (key, value) = row.unwrap();
            for needle in needles {
                assert!(
                    !contains(&key, needle),
                    "{} key holds a secret",
                    tree.as_str()
                );
                assert!(
                    !contains(&value, needle),
                    "{} value holds a secret",
                    tree.as_str()
                );
            }
        }
    }
}
