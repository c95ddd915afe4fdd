//! The professional's view: person search kept to people who shared with
//! the organisation, the banner (contact details withheld on sensitive
//! records), the summary's cards and date filter, the document tree, the
//! medicines page and the care network, with contributions attributed to
//! the organisation.

use keyhold_domain::consent::{Permissions, StaffRole};
use keyhold_domain::{
    Category, Demographics, EmergencyContact, Gender, GrantTerms, NewGrantee, OrgId, PatientId,
};
use reqwest::{Client, StatusCode};
use time::macros::date;
use time::Duration;

use crate::helpers::{
    csrf_token, get, h1, member, nhs, organisation, pdf, post_form, principal_of, spawn_app,
    TestApp, PASSWORD,
};

/// An organisation with a doctor (signed in) and an administrator.
async fn practice(app: &TestApp, name: &str, domain: &str) -> (OrgId, Client, Client) {
    let (org, admin) = organisation(app, name, &format!("admin@{domain}")).await;
    let doctor = member(app, org, &format!("doc@{domain}"), StaffRole::Doctor).await;
    (org, doctor, admin)
}

/// A synthetic person with full contact details.
fn person(n: u32, given: &str, family: &str) -> Demographics {
    let mut d = Demographics::empty();
    d.given_name = given.into();
    d.family_name = family.into();
    d.date_of_birth = Some(date!(1980 - 03 - 31));
    d.gender = Gender::Female;
    d.nhs_number = Some(nhs(n));
    d.address_lines = vec![format!("{n} Synthetic Row"), "Leeds".into()];
    d.postcode = format!("LS{n} 9ZZ");
    d.phones = vec![format!("0113 496 00{n:02}")];
    d.gp_practice = "Riverside Medical Practice".into();
    d.aliases = vec![format!("{given} Maiden{n}")];
    d.emergency_contacts = vec![EmergencyContact {
        name: format!("Kin Of{n}"),
        relationship: "Sister".into(),
        phone: format!("07700 900 0{n:02}"),
    }];
    d
}

/// Registers `d` with an account `email` and, if `org` is given, shares
/// `categories` with it (read, and contribute if asked).
async fn patient(
    app: &TestApp,
    d: Demographics,
    email: &str,
    org: Option<(OrgId, bool)>,
) -> PatientId {
    let record = app.core.register_patient(d).await.unwrap();
    app.core
        .create_account_for("Synthetic Patient", email, PASSWORD, Some(record))
        .await
        .unwrap();
    if let Some((org, contribute)) = org {
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
                    purpose: "My GP practice".into(),
                },
            )
            .await
            .unwrap();
    }
    record
}

async fn search(
    app: &TestApp,
    client: &Client,
    org: OrgId,
    fields: &[(&str, &str)],
) -> (StatusCode, String) {
    let home = format!("/organisations/{org}");
    let token = csrf_token(app, client, &home).await;
    let mut all = vec![("csrf_token", token.as_str())];
    all.extend_from_slice(fields);
    let resp = post_form(app, client, &format!("{home}/find"), &all).await;
    let status = resp.status();
    (status, resp.text().await.unwrap())
}

const BY_NAME: [(&str, &str); 4] = [
    ("by", "name"),
    ("dob-day", "31"),
    ("dob-month", "3"),
    ("dob-year", "1980"),
];

#[tokio::test]
async fn person_search_finds_only_people_who_shared_with_the_organisation() {
    let app = spawn_app().await;
    let (org, doctor, admin) = practice(&app, "Riverside Surgery", "riverside.test").await;
    let shared = patient(
        &app,
        person(1, "Quentin", "Zebedee"),
        "q1@example.test",
        Some((org, false)),
    )
    .await;
    // Same name and birthday, not shared: never listed.
    let unshared = patient(
        &app,
        person(2, "Quentin", "Zebedee"),
        "q2@example.test",
        None,
    )
    .await;
    let mut sensitive = person(3, "Quinn", "Zebedee");
    sensitive.sensitive = true;
    let sensitive = patient(&app, sensitive, "q3@example.test", Some((org, false))).await;

    let mut fields = BY_NAME.to_vec();
    fields.push(("name", "zeb q"));
    let (status, html) = search(&app, &doctor, org, &fields).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("2 people found"), "{html}");
    assert!(html.contains(&format!("/people/{shared}/record")));
    assert!(html.contains(&format!("/people/{sensitive}/record")));
    assert!(
        !html.contains(&unshared.to_string()),
        "a record not shared with the organisation is not found by name"
    );
    assert!(!html.contains(&nhs(2).to_string()));
    // The sensitive record: name, NHS number, birth and gender only.
    assert!(html.contains("Sensitive record"));
    assert!(html.contains("LS1 9ZZ"), "a postcode tells people apart");
    assert!(!html.contains("LS3 9ZZ"), "but not a sensitive record's");

    // A name that begins no word, or another birthday: nobody.
    for (name, year) in [("ebedee", "1980"), ("Zebedee", "1981")] {
        let fields = [
            ("by", "name"),
            ("name", name),
            ("dob-day", "31"),
            ("dob-month", "3"),
            ("dob-year", year),
        ];
        let (status, html) = search(&app, &doctor, org, &fields).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            html.contains("No one who has shared their record"),
            "{name} {year}"
        );
        assert!(!html.contains("/people/"), "{name} {year}");
    }

    // By NHS number: the shared record is listed; the unshared one offers
    // emergency access (break-glass), never the record itself.
    let (status, html) = search(
        &app,
        &doctor,
        org,
        &[("by", "nhs"), ("nhs-number", &nhs(1).digits())],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(&format!("/people/{shared}/record")));
    let (status, html) = search(
        &app,
        &doctor,
        org,
        &[("by", "nhs"), ("nhs-number", &nhs(2).digits())],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h1(&html), "You do not have access to this record");
    assert!(!html.contains("Quentin"));
    // With a date of birth that does not match: nobody, and no break-glass.
    let (status, html) = search(
        &app,
        &doctor,
        org,
        &[
            ("by", "nhs"),
            ("nhs-number", &nhs(1).digits()),
            ("nhs-dob-day", "1"),
            ("nhs-dob-month", "1"),
            ("nhs-dob-year", "1990"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("No one who has shared their record"));
    assert!(!html.contains("Open emergency access"));

    // Bad input names its fields.
    let (status, html) = search(&app, &doctor, org, &[("by", "name"), ("name", " ")]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("href=\"#name\""));
    assert!(html.contains("href=\"#dob-day\""));
    assert!(html.contains("Enter their date of birth"));

    // Revoking the grant takes the person out of the next search.
    let owner = principal_of(&app, "q1@example.test").await;
    let grant = app.core.grants(&owner, shared).await.unwrap()[0].grant.id;
    app.core.revoke_grant(&owner, shared, grant).await.unwrap();
    let mut fields = BY_NAME.to_vec();
    fields.push(("name", "Quentin"));
    let (_, html) = search(&app, &doctor, org, &fields).await;
    assert!(!html.contains(&shared.to_string()), "revoked: not found");

    // An administrator (not a clinical role) cannot search.
    let (status, _) = search(&app, &admin, org, &fields).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await;
}

#[tokio::test]
async fn the_banner_shows_how_to_reach_the_person_unless_the_record_is_sensitive() {
    let app = spawn_app().await;
    let (org, doctor, _) = practice(&app, "Riverside Surgery", "riverside.test").await;
    let open = patient(
        &app,
        person(4, "Olive", "Open"),
        "o@example.test",
        Some((org, false)),
    )
    .await;
    let mut s = person(5, "Sasha", "Sensitive");
    s.sensitive = true;
    let sensitive = patient(&app, s, "s@example.test", Some((org, false))).await;

    for page in [
        "",
        "/demographics",
        "/documents",
        "/medicines",
        "/care-network",
    ] {
        let (status, html) = get(&app, &doctor, &format!("/people/{open}/record{page}")).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        for shown in [
            "Olive Open",
            "4 Synthetic Row, Leeds, LS4 9ZZ",
            "0113 496 0004",
            "Riverside Medical Practice",
            &nhs(4).to_string(),
            "Olive Maiden4",
            &open.to_string(),
            "(aged ",
        ] {
            assert!(html.contains(shown), "{page}: {shown}");
        }
        assert!(html.contains("<details class=\"keyhold-banner__toggle\" open>"));
    }
    let (status, html) = get(&app, &doctor, &format!("/people/{sensitive}/record")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Sasha Sensitive"));
    assert!(html.contains(&nhs(5).to_string()));
    assert!(html.contains("Sensitive record"));
    for hidden in [
        "5 Synthetic Row",
        "LS5 9ZZ",
        "0113 496 0005",
        "Maiden5",
        "Kin Of5",
    ] {
        assert!(!html.contains(hidden), "sensitive: {hidden} withheld");
    }
    // The patient sees their own record whole.
    let me = signed_in_as(&app, "s@example.test").await;
    let (_, html) = get(&app, &me, "/record").await;
    assert!(html.contains("LS5 9ZZ"));
    app.stop().await;
}

#[tokio::test]
async fn the_demographics_page_shows_everything_and_a_death_is_flagged_with_the_age() {
    let app = spawn_app().await;
    let (org, doctor, _) = practice(&app, "Riverside Surgery", "riverside.test").await;
    let mut d = person(6, "Dora", "Departed");
    d.email = Some(keyhold_domain::Email::parse("dora@example.test").unwrap());
    d.ethnicity = "White: Irish".into();
    d.languages = vec!["English".into(), "Irish".into()];
    d.interpreter_needed = true;
    d.religion = "Roman Catholic".into();
    d.marital_status = "Widowed".into();
    d.disabilities = vec!["Partially sighted".into()];
    d.lives_alone = Some(true);
    d.date_of_death = Some(date!(2024 - 03 - 30));
    let record = patient(&app, d, "d@example.test", Some((org, false))).await;

    let (status, html) = get(
        &app,
        &doctor,
        &format!("/people/{record}/record/demographics"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    for (label, value) in [
        ("Ethnicity", "White: Irish"),
        ("Languages", "Irish"),
        ("Needs an interpreter", "Yes"),
        ("Religion or belief", "Roman Catholic"),
        ("Marital status", "Widowed"),
        ("Disabilities", "Partially sighted"),
        ("Lives alone", "Yes"),
        ("Other names", "Dora Maiden6"),
        ("Emergency contacts", "Kin Of6"),
        (
            "Primary care provider (GP practice)",
            "Riverside Medical Practice",
        ),
        ("Identifiers", &nhs(6).to_string()),
        ("Keyhold record ID", &record.to_string()),
        ("Email address", "dora@example.test"),
    ] {
        let at = html.find(label).unwrap_or_else(|| panic!("{label} shown"));
        assert!(html[at..].contains(value), "{label}: {value}");
    }
    // The banner: the flag before the name, the age at death (she died the
    // day before her 44th birthday), and no current age.
    let flag = html.find(">Deceased</strong>").expect("deceased flag");
    let name = html[flag..].find("Dora Departed").map(|i| i + flag);
    assert!(name.is_some(), "the flag comes before the name");
    assert!(html.contains("30 March 2024 aged 43"));
    assert!(!html.contains("(aged "), "no current age for the dead");
    app.stop().await;
}

/// A browser signed in to an account made with `create_account_for`.
async fn signed_in_as(app: &TestApp, email: &str) -> Client {
    let client = crate::helpers::browser();
    let token = csrf_token(app, &client, "/signin").await;
    let resp = post_form(
        app,
        &client,
        "/signin",
        &[
            ("csrf_token", &token),
            ("email", email),
            ("password", PASSWORD),
        ],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER, "signing in {email}");
    client
}

async fn add(
    app: &TestApp,
    client: &Client,
    base: &str,
    kind: &str,
    title: &str,
    d: (u8, u8, i32),
) {
    let token = csrf_token(app, client, &format!("{base}/entries/new")).await;
    let (day, month, year) = (d.0.to_string(), d.1.to_string(), d.2.to_string());
    let resp = post_form(
        app,
        client,
        &format!("{base}/entries"),
        &[
            ("csrf_token", &token),
            ("kind", kind),
            ("title", title),
            ("date-day", &day),
            ("date-month", &month),
            ("date-year", &year),
            ("category", "general"),
            ("details", ""),
        ],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER, "adding {title}");
}

#[tokio::test]
async fn the_summary_keeps_every_card_and_filters_by_date() {
    let app = spawn_app().await;
    let (org, doctor, _) = practice(&app, "Riverside Surgery", "riverside.test").await;
    let record = patient(
        &app,
        person(6, "Sam", "Summary"),
        "sum@example.test",
        Some((org, true)),
    )
    .await;
    let me = signed_in_as(&app, "sum@example.test").await;
    add(&app, &me, "/record", "medication", "Old-Med", (1, 2, 2019)).await;
    add(
        &app,
        &me,
        "/record",
        "encounter",
        "Recent-Visit",
        (5, 6, 2025),
    )
    .await;
    let base = format!("/people/{record}/record");
    add(&app, &doctor, &base, "allergy", "GP-Allergy", (1, 1, 2025)).await;

    let (status, html) = get(&app, &doctor, &base).await;
    assert_eq!(status, StatusCode::OK);
    for card in [
        "Upcoming appointments",
        "Events and past appointments",
        "Documents",
        "Medications",
        "Allergies",
    ] {
        assert!(html.contains(card), "{card}");
    }
    assert!(html.contains("No upcoming appointments recorded."));
    assert!(html.contains("No documents."));
    assert!(html.contains("Old-Med") && html.contains("Recent-Visit"));
    // Each row says where it came from.
    assert!(html.contains("Patient entered"));
    assert!(
        html.contains("Riverside Surgery"),
        "the professional's entry is the organisation's"
    );

    let (status, html) = get(
        &app,
        &doctor,
        &format!(
            "{base}?from-day=1&from-month=1&from-year=2025&to-day=31&to-month=12&to-year=2025"
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Recent-Visit") && html.contains("GP-Allergy"));
    assert!(!html.contains("Old-Med"), "outside the dates");
    assert!(html.contains("No medications in these dates."));
    assert!(html.contains("Clear dates"));

    // Collapse all, compact: state in the URL, kept by every link.
    let (_, html) = get(&app, &doctor, &format!("{base}?cards=closed&view=compact")).await;
    assert!(html.contains("keyhold-compact"));
    assert!(!html.contains("<details class=\"keyhold-card-toggle\" open>"));
    assert!(html.contains("Expand all"));
    assert!(html.contains("Comfortable view"));
    let (_, html) = get(&app, &doctor, &base).await;
    assert!(html.contains("<details class=\"keyhold-card-toggle\" open>"));
    assert!(!html.contains("keyhold-compact"));

    // Dates that are not dates, or the wrong way round.
    for q in [
        "from-day=31&from-month=2&from-year=2025",
        "from-day=1&from-month=1&from-year=2025&to-day=1&to-month=1&to-year=2024",
    ] {
        let (status, html) = get(&app, &doctor, &format!("{base}?{q}")).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{q}");
        assert!(html.contains("nhsuk-error-summary"), "{q}");
        assert!(html.contains("Old-Med"), "{q}: no filter applied");
    }
    app.stop().await;
}

async fn upload_kind(app: &TestApp, client: &Client, title: &str, kind: &str) -> StatusCode {
    upload_to(app, client, "/record", title, kind).await
}

async fn upload_to(
    app: &TestApp,
    client: &Client,
    base: &str,
    title: &str,
    kind: &str,
) -> StatusCode {
    let page = format!("{base}/documents");
    let token = csrf_token(app, client, &page).await;
    let part = reqwest::multipart::Part::bytes(pdf(title))
        .file_name(format!("{title}.pdf"))
        .mime_str("application/pdf")
        .unwrap();
    let form = reqwest::multipart::Form::new()
        .text("csrf_token", token)
        .text("title", title.to_string())
        .text("kind", kind.to_string())
        .text("category", "general")
        .part("file", part);
    client
        .post(app.url(&page))
        .multipart(form)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn documents_form_a_tree_by_source_and_kind_that_can_be_searched_and_sorted() {
    let app = spawn_app().await;
    patient(
        &app,
        person(7, "Dee", "Documents"),
        "doc7@example.test",
        None,
    )
    .await;
    let me = signed_in_as(&app, "doc7@example.test").await;
    assert_eq!(
        upload_kind(&app, &me, "Alpha clinic letter", "letter").await,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        upload_kind(&app, &me, "Zulu discharge", "discharge_summary").await,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        upload_kind(&app, &me, "Bad kind", "shopping_list").await,
        StatusCode::UNPROCESSABLE_ENTITY
    );

    let (_, html) = get(&app, &me, "/record/documents").await;
    assert!(html.contains("Patient entered"));
    assert!(html.contains("Letters <span class=\"keyhold-secondary-text\">(1)</span>"));
    assert!(html.contains("Discharge summaries <span class=\"keyhold-secondary-text\">(1)</span>"));
    assert!(
        !html.contains("Bad kind"),
        "the refused upload stored nothing"
    );

    let (_, html) = get(&app, &me, "/record/documents?q=zulu").await;
    assert!(html.contains("Zulu discharge"));
    assert!(!html.contains("Alpha clinic letter"));
    assert!(html.contains("1 of 2 documents match"));

    let (_, html) = get(&app, &me, "/record/documents?q=nothing-like-this").await;
    assert!(html.contains("No documents match this search."));

    // Within one heading, by title or by date.
    upload_kind(&app, &me, "Mike letter", "letter").await;
    let (_, html) = get(&app, &me, "/record/documents?sort=title").await;
    assert!(html.find("Alpha clinic letter").unwrap() < html.find("Mike letter").unwrap());
    let (_, html) = get(&app, &me, "/record/documents?sort=newest").await;
    assert!(html.find("Mike letter").unwrap() < html.find("Alpha clinic letter").unwrap());
    app.stop().await;
}

#[tokio::test]
async fn a_professional_adds_to_the_care_network_for_their_organisation() {
    let app = spawn_app().await;
    let (org, doctor, _) = practice(&app, "Riverside Surgery", "riverside.test").await;
    let (other_org, reader, _) = practice(&app, "Hillside Clinic", "hillside.test").await;
    let record = patient(
        &app,
        person(8, "Cara", "Network"),
        "net@example.test",
        Some((org, true)),
    )
    .await;
    // Hillside may read, not contribute.
    let owner = principal_of(&app, "net@example.test").await;
    app.core
        .share(
            &owner,
            record,
            NewGrantee::Organisation(other_org),
            GrantTerms {
                permissions: Permissions {
                    read: true,
                    contribute: false,
                    act_on_behalf: false,
                },
                categories: [Category::General].into_iter().collect(),
                last_day: app.core.today() + Duration::days(30),
                purpose: "Clinic".into(),
            },
        )
        .await
        .unwrap();
    let page = format!("/people/{record}/record/care-network");
    let token = csrf_token(&app, &doctor, &page).await;
    let contact = |phone: &'static str, email: &'static str| {
        vec![
            ("csrf_token", token.clone()),
            ("kind", "professional".to_string()),
            ("name", "Nadia Nurse".to_string()),
            ("role", "Practice nurse".to_string()),
            ("organisation", "Riverside Surgery".to_string()),
            ("phone", phone.to_string()),
            ("email", email.to_string()),
            ("category", "general".to_string()),
            ("notes", String::new()),
        ]
    };
    let send = |fields: Vec<(&'static str, String)>, who: &Client| {
        who.post(app.url(&page)).form(&fields).send()
    };
    // No way to reach them: refused, nothing stored.
    let resp = send(contact("", ""), &doctor).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = resp.text().await.unwrap();
    assert!(html.contains("href=\"#phone\""));
    assert!(html.contains("Nadia Nurse"), "what was typed is kept");
    let resp = send(contact("0113 496 0999", "x@"), &doctor).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = resp.text().await.unwrap();
    assert!(html.contains("href=\"#email\""));
    let resp = send(contact("not a phone", ""), &doctor).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = resp.text().await.unwrap();
    assert!(html.contains("href=\"#phone\"") && html.contains("Enter a phone number, like"));

    let resp = send(contact("0113 496 0999", "nadia@riverside.example"), &doctor)
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let (status, html) = get(&app, &doctor, &page).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Contact added to the care network.") || html.contains("Nadia Nurse"));
    assert!(html.contains("Practice nurse"));
    assert!(html.contains("0113 496 0999"));
    assert!(html.contains("nadia@riverside.example"));
    // Attributed to the organisation; the person's own emergency contact
    // is listed with the people in their life.
    assert!(html.contains("<td class=\"nhsuk-table__cell\">Riverside Surgery</td>"));
    assert!(html.contains("Kin Of8") && html.contains("Sister (emergency contact)"));

    // Hillside reads it but may not add: the form is not offered, and a
    // post is "not found" and stores nothing.
    let (status, html) = get(&app, &reader, &page).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Nadia Nurse"));
    assert!(!html.contains("Add someone to the care network"));
    let token = csrf_token(&app, &reader, &page).await;
    let mut fields = contact("0113 496 0111", "");
    fields[0].1 = token;
    fields[2].1 = "Hillside Intruder".into();
    let resp = send(fields, &reader).await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let (_, html) = get(&app, &doctor, &page).await;
    assert!(!html.contains("Hillside Intruder"));

    // The patient (identity checked, so they see what organisations added)
    // sees it in their record, read-only, with its source.
    app.core
        .verify_identity(
            &keyhold_domain::Email::parse("net@example.test").unwrap(),
            keyhold_domain::IdentityLevel::P9,
            Some(nhs(8)),
            "checked in person (test)",
        )
        .await
        .unwrap();
    let me = signed_in_as(&app, "net@example.test").await;
    let (_, html) = get(&app, &me, "/record/care-network").await;
    assert!(html.contains("Nadia Nurse") && html.contains("Riverside Surgery"));
    app.stop().await;
}

#[tokio::test]
async fn the_medicines_page_lists_allergies_medications_and_immunisations() {
    let app = spawn_app().await;
    patient(&app, person(9, "Mo", "Medicines"), "med@example.test", None).await;
    let me = signed_in_as(&app, "med@example.test").await;
    add(
        &app,
        &me,
        "/record",
        "allergy",
        "Penicillin-X",
        (1, 2, 2020),
    )
    .await;
    add(
        &app,
        &me,
        "/record",
        "medication",
        "Metformin-X",
        (1, 2, 2021),
    )
    .await;
    add(&app, &me, "/record", "immunisation", "Flu-X", (1, 10, 2024)).await;
    let (status, html) = get(&app, &me, "/record/medicines").await;
    assert_eq!(status, StatusCode::OK);
    let allergies = html.find("Allergies and adverse reactions").unwrap();
    let current = html.find("Current medications").unwrap();
    let immunisations = html
        .find("<h2 class=\"nhsuk-card__heading nhsuk-heading-m\">Immunisations")
        .unwrap();
    let at = |s: &str| html.find(s).unwrap();
    assert!(allergies < at("Penicillin-X") && at("Penicillin-X") < current);
    assert!(current < at("Metformin-X") && at("Metformin-X") < immunisations);
    assert!(immunisations < at("Flu-X"));
    assert!(html.contains("No past medications recorded."));
    app.stop().await;
}

#[tokio::test]
async fn a_professional_files_a_document_under_their_organisation_and_a_reader_cannot() {
    let app = spawn_app().await;
    let (org, doctor, _) = practice(&app, "Riverside Surgery", "riverside.test").await;
    let (other, reader, _) = practice(&app, "Hillside Clinic", "hillside.test").await;
    let record = patient(
        &app,
        person(10, "Una", "Upload"),
        "up@example.test",
        Some((org, true)),
    )
    .await;
    let owner = principal_of(&app, "up@example.test").await;
    app.core
        .share(
            &owner,
            record,
            NewGrantee::Organisation(other),
            GrantTerms {
                permissions: Permissions {
                    read: true,
                    contribute: false,
                    act_on_behalf: false,
                },
                categories: [Category::General].into_iter().collect(),
                last_day: app.core.today() + Duration::days(30),
                purpose: "Clinic".into(),
            },
        )
        .await
        .unwrap();
    let base = format!("/people/{record}/record");
    assert_eq!(
        upload_to(&app, &doctor, &base, "Referral to physio", "referral").await,
        StatusCode::SEE_OTHER
    );
    let (_, html) = get(&app, &reader, &format!("{base}/documents")).await;
    let branch = html.find("<span class=\"keyhold-tree__name\">Riverside Surgery</span>");
    assert!(
        branch.is_some(),
        "filed under the contributing organisation"
    );
    assert!(branch.unwrap() < html.find("Referrals <span").unwrap());
    assert!(html.contains("Referral to physio"));
    assert!(
        !html.contains("Upload a document"),
        "a reader is not offered the upload form"
    );
    assert_eq!(
        upload_to(&app, &reader, &base, "Not allowed", "letter").await,
        StatusCode::NOT_FOUND
    );
    let (_, html) = get(&app, &doctor, &format!("{base}/documents")).await;
    assert!(!html.contains("Not allowed"));
    app.stop().await;
}
