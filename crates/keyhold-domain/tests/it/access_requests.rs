//! Subject access requests over the real store and the demo data: a request
//! from draft to disclosure and purge, the statutory clock, the state
//! machine's refusals, guests, the records team's isolation, what the
//! compiled disclosure holds, and the mails (which carry no record content).

use std::collections::{BTreeMap, BTreeSet};

use keyhold_domain::access_requests::{
    Asker, QueueFilter, Reference, RequestKind, RequestState, Step, Upload,
};
use keyhold_domain::audit::AuditAction;
use keyhold_domain::demo::{
    DEMO_CARER, DEMO_DECEASED_NHS_NUMBER, DEMO_HOSPITAL_RECORDS, DEMO_PASSWORD, DEMO_PATIENT,
    DEMO_RECORDS,
};
use keyhold_domain::policy::Principal;
use keyhold_domain::trees::{ACCESS_REQUEST_CHUNKS, ACCESS_REQUEST_FILES, DEKS};
use keyhold_domain::{AccessFilter, Category, DomainError, Email, OrgId, RequestId, Source};
use time::Duration;

use crate::helpers::{new_document, pdf, Env};

async fn sign_in(env: &Env, email: &str) -> Principal {
    let s = env.core.sign_in(email, DEMO_PASSWORD, None).await.unwrap();
    env.now(&s.token).await
}

fn form(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn upload(name: &str) -> Vec<Upload> {
    vec![Upload {
        filename: name.into(),
        bytes: pdf(3000),
    }]
}

fn invalid_fields(e: DomainError) -> Vec<&'static str> {
    match e {
        DomainError::Invalid(errors) => errors.iter().map(|e| e.field).collect(),
        other => panic!("expected a form error, got {other:?}"),
    }
}

struct World {
    env: Env,
    patient: Principal,
    officer: Principal,
    riverside: OrgId,
    elsewhere: Principal,
    hospital: OrgId,
}

async fn world() -> World {
    let env = Env::new();
    env.core.seed_demo().await.unwrap();
    let patient = sign_in(&env, DEMO_PATIENT).await;
    let officer = sign_in(&env, DEMO_RECORDS).await;
    let elsewhere = sign_in(&env, DEMO_HOSPITAL_RECORDS).await;
    let riverside = officer.memberships[0].org;
    let hospital = elsewhere.memberships[0].org;
    World {
        env,
        patient,
        officer,
        riverside,
        elsewhere,
        hospital,
    }
}

/// An own-records request by the demo patient, sent.
async fn own_request(w: &World) -> (Asker, RequestId, Reference) {
    let asker = Asker::Account(w.patient.clone());
    let core = &w.env.core;
    let id = core
        .start_request(&asker, w.riverside, RequestKind::OwnRecords)
        .await
        .unwrap();
    core.save_step(
        &asker,
        id,
        Step::Patient,
        &form(&[
            ("patient-given-name", "Testa"),
            ("patient-family-name", "Quill"),
            ("patient-dob-day", "1"),
            ("patient-dob-month", "2"),
            ("patient-dob-year", "1970"),
            ("patient-address", "9 Nowhere Lane"),
            ("patient-postcode", "LS1 9ZZ"),
        ]),
    )
    .await
    .unwrap();
    core.save_step(
        &asker,
        id,
        Step::Records,
        &form(&[("records-description", "Everything about my asthma")]),
    )
    .await
    .unwrap();
    core.add_evidence(&asker, id, true, upload("passport.pdf"))
        .await
        .unwrap();
    let reference = core.submit_request(&asker, id).await.unwrap();
    (asker, id, reference)
}

#[tokio::test]
async fn a_request_goes_from_draft_to_disclosure_and_is_shredded_a_month_later() {
    let w = world().await;
    let core = &w.env.core;
    let (asker, id, reference) = own_request(&w).await;
    assert_eq!(
        Reference::parse(&reference.to_string()),
        Some(reference.clone())
    );

    // The confirmation mail names the reference and nothing of the record.
    let mails = w.env.mails();
    let confirmation = mails
        .iter()
        .rev()
        .find(|m| m.contains(&reference.to_string()))
        .expect("a confirmation mail");
    assert!(confirmation.contains(DEMO_PATIENT));
    for secret in ["Testa", "Quill", "asthma", "Nowhere"] {
        assert!(!confirmation.contains(secret), "{secret} in the mail");
    }

    // The queue: due a calendar month after receipt (15 Jan → 15 Feb).
    let queue = core
        .request_queue(&w.officer, w.riverside, QueueFilter::Open, "")
        .await
        .unwrap();
    assert_eq!(queue.len(), 1);
    assert_eq!(
        queue[0].reference.as_deref(),
        Some(reference.to_string().as_str())
    );
    assert_eq!(queue[0].due, Some(time::macros::date!(2026 - 02 - 15)));
    assert_eq!(queue[0].state, RequestState::Received);

    // Assign; then a question with a file pauses the clock for 3 days.
    core.assign_request(&w.officer, w.riverside, id, w.officer.account)
        .await
        .unwrap();
    core.ask_requester(
        &w.officer,
        w.riverside,
        id,
        "Which years do you mean?",
        upload("form.pdf"),
    )
    .await
    .unwrap();
    let mine = core.my_requests(&asker, "").unwrap();
    assert!(
        mine[0].message_for_requester,
        "the marker shows a message awaits them"
    );
    assert_eq!(mine[0].state, RequestState::AwaitingRequester);
    let asked = w.env.mails().last().cloned().unwrap();
    assert!(
        asked.contains(&reference.to_string()) && !asked.contains("Which years"),
        "the mail announces, never carries, the message"
    );
    w.env.clock.advance(Duration::days(3));
    let view = core.my_request(&asker, id).await.unwrap();
    assert_eq!(view.messages[0].text, "Which years do you mean?");
    assert_eq!(view.messages[0].files.len(), 1);
    let file = core
        .open_my_file(&asker, id, view.messages[0].files[0].id)
        .await
        .unwrap();
    assert_eq!(file.read_all().unwrap(), pdf(3000));
    core.requester_message(&asker, id, "All of them, please.", upload("letter.pdf"))
        .await
        .unwrap();
    let queue = core
        .request_queue(&w.officer, w.riverside, QueueFilter::Open, "")
        .await
        .unwrap();
    assert_eq!(queue[0].state, RequestState::InProgress);
    assert!(queue[0].message_for_team);
    assert_eq!(
        queue[0].due,
        Some(time::macros::date!(2026 - 02 - 18)),
        "three paused days added"
    );

    // Compile from the record, add an upload, complete.
    let all: BTreeSet<Category> = Category::ALL.into_iter().collect();
    core.compile_disclosure(&w.officer, w.riverside, id, None, None, &all)
        .await
        .unwrap();
    core.add_disclosure_files(&w.officer, w.riverside, id, upload("letters.pdf"))
        .await
        .unwrap();
    core.complete_request(&w.officer, w.riverside, id)
        .await
        .unwrap();
    let ready = w.env.mails().last().cloned().unwrap();
    assert!(ready.contains("ready") && ready.contains(&reference.to_string()));
    let view = core.my_request(&asker, id).await.unwrap();
    assert_eq!(view.summary.state, RequestState::Disclosed);
    assert_eq!(view.disclosure.len(), 2);
    let (_, zip) = core.open_my_disclosure(&asker, id).await.unwrap();
    assert_eq!(zip.len(), 2);
    let compiled = view
        .disclosure
        .iter()
        .find(|f| f.label.contains("Compiled"))
        .unwrap();
    let bytes = core
        .open_my_file(&asker, id, compiled.id)
        .await
        .unwrap()
        .read_all()
        .unwrap();
    assert!(bytes.starts_with(b"%PDF-"));

    // The patient reads the disclosure in their access log.
    let patient = w.patient.own_patient.unwrap();
    let log = core
        .access_log(&w.patient, patient, &AccessFilter::default())
        .await
        .unwrap();
    assert!(
        log.entries.iter().any(|e| e.action == AuditAction::Disclose
            && e.organisation.as_deref() == Some("Riverside Medical Practice")),
        "{:?}",
        log.entries
            .iter()
            .map(|e| (e.action, e.what.clone()))
            .collect::<Vec<_>>()
    );

    // A month later the files are gone and their key destroyed.
    w.env.clock.advance(Duration::days(31));
    assert!(matches!(
        core.open_my_disclosure(&asker, id).await,
        Err(DomainError::NotFound)
    ));
    assert_eq!(core.purge_expired_disclosures().await.unwrap(), 1);
    assert_eq!(core.purge_expired_disclosures().await.unwrap(), 0, "once");
    let mut dkey = vec![b'd'];
    dkey.extend_from_slice(id.as_bytes());
    assert!(
        w.env.store().get(DEKS, &dkey).unwrap().is_none(),
        "the disclosure key is destroyed"
    );
    let files = w
        .env
        .store()
        .scan(ACCESS_REQUEST_FILES, id.as_bytes())
        .count();
    assert_eq!(
        files, 3,
        "the requester's and the team's files stay; the two disclosed went"
    );
    let view = core.my_request(&asker, id).await.unwrap();
    assert_eq!(view.summary.state, RequestState::Expired);
    assert!(view.disclosure.is_empty());
    let chunks_left: usize = w
        .env
        .store()
        .scan(ACCESS_REQUEST_CHUNKS, id.as_bytes())
        .count();
    assert_eq!(
        chunks_left, 3,
        "one chunk each for passport, form and letter"
    );
    let log = core
        .access_log(&w.patient, patient, &AccessFilter::default())
        .await
        .unwrap();
    assert!(log
        .entries
        .iter()
        .any(|e| e.action == AuditAction::Delete && e.what.contains("copies of the record")));

    // Every step left its audit entry, and none carries what was written.
    let events: Vec<_> = w
        .env
        .store()
        .scan(keyhold_domain::trees::AUDIT, b"")
        .map(|r| keyhold_domain::audit::decode(&r.unwrap().1).unwrap().event)
        .filter(|e| e.resource.contains(&id.to_string()))
        .collect();
    for purpose in [
        "started a draft access request",
        "submitted an access request",
        "records team read the queue",
        "assigned an access request",
        "records team asked the requester",
        "requester replied",
        "records team added a disclosure file",
        "requester downloaded the disclosure",
        "requester downloaded a disclosed file",
        "disclosure expired: files purged and their key destroyed",
    ] {
        let all: Vec<_> = w
            .env
            .store()
            .scan(keyhold_domain::trees::AUDIT, b"")
            .map(|r| keyhold_domain::audit::decode(&r.unwrap().1).unwrap().event)
            .collect();
        assert!(
            all.iter().any(|e| e.purpose == purpose),
            "no audit entry: {purpose}"
        );
    }
    assert!(events
        .iter()
        .any(|e| e.action == AuditAction::Disclose && e.patient == Some(patient)));
    assert!(events.iter().any(|e| e.action == AuditAction::Export
        && e.resource.ends_with("/compile")
        && e.patient == Some(patient)));
    let text = serde_json::to_string(&events).unwrap();
    for secret in ["Testa", "Quill", "asthma", "Which years", "All of them"] {
        assert!(!text.contains(secret), "{secret} in the audit");
    }

    // On disk: the answers, the messages and the files are sealed. The
    // reference is stored in the clear (it is the refs tree's key), so
    // finding it shows the search reads the store's files.
    let raw = raw_store(&w.env);
    assert!(
        contains(
            &raw,
            &String::from_utf8_lossy(reference.key()).to_ascii_lowercase()
        ),
        "the control value is found"
    );
    for secret in [
        "9 nowhere lane",
        "everything about my asthma",
        "which years do you mean?",
        "all of them, please.",
        "00000007 00000008",
    ] {
        assert!(
            !contains(&raw, secret),
            "{secret:?} is on disk in the clear"
        );
    }
}

/// Every byte of the store's files, lower-cased.
fn raw_store(env: &Env) -> Vec<u8> {
    let mut out = Vec::new();
    let mut dirs = vec![env.dir.path().join("data")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                out.extend(std::fs::read(&p).unwrap());
            }
        }
    }
    assert!(out.len() > 10_000, "the store holds {} bytes", out.len());
    out.make_ascii_lowercase();
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn invalid_moves_are_refused_and_the_deadline_extends_by_two_months_at_most() {
    let w = world().await;
    let core = &w.env.core;
    let asker = Asker::Account(w.patient.clone());
    // A draft cannot be sent without its answers and its document.
    let id = core
        .start_request(&asker, w.riverside, RequestKind::OwnRecords)
        .await
        .unwrap();
    assert_eq!(
        invalid_fields(core.submit_request(&asker, id).await.unwrap_err()),
        ["patient"]
    );
    // Nobody else sees a draft, and a records officer does not either.
    assert!(matches!(
        core.team_request(&w.officer, w.riverside, id).await,
        Err(DomainError::NotFound)
    ));

    let (_, id, _) = own_request(&w).await;
    // Complete before work starts, or with nothing to disclose: refused.
    assert_eq!(
        invalid_fields(
            core.complete_request(&w.officer, w.riverside, id)
                .await
                .unwrap_err()
        ),
        ["request"]
    );
    core.assign_request(&w.officer, w.riverside, id, w.officer.account)
        .await
        .unwrap();
    assert_eq!(
        invalid_fields(
            core.complete_request(&w.officer, w.riverside, id)
                .await
                .unwrap_err()
        ),
        ["files"]
    );
    // Only a records officer of this organisation can be assigned.
    assert_eq!(
        invalid_fields(
            core.assign_request(&w.officer, w.riverside, id, w.patient.account)
                .await
                .unwrap_err()
        ),
        ["assignee"]
    );
    core.extend_request(&w.officer, w.riverside, id, 1, "Records held off site")
        .await
        .unwrap();
    assert_eq!(
        invalid_fields(
            core.extend_request(&w.officer, w.riverside, id, 2, "More")
                .await
                .unwrap_err()
        ),
        ["months"]
    );
    assert_eq!(
        invalid_fields(
            core.extend_request(&w.officer, w.riverside, id, 1, "  ")
                .await
                .unwrap_err()
        ),
        ["reason"]
    );
    core.extend_request(&w.officer, w.riverside, id, 1, "Archive recall")
        .await
        .unwrap();
    let view = core
        .team_request(&w.officer, w.riverside, id)
        .await
        .unwrap();
    assert_eq!(
        view.summary.due,
        Some(time::macros::date!(2026 - 04 - 15)),
        "one month and two more"
    );
    assert_eq!(view.extension_months_left, 0);
    assert_eq!(view.extensions[1].reason, "Archive recall");
    // Withdrawn: nothing more can happen to it.
    core.withdraw_request(&asker, id).await.unwrap();
    assert_eq!(
        invalid_fields(core.withdraw_request(&asker, id).await.unwrap_err()),
        ["request"]
    );
    assert_eq!(
        invalid_fields(
            core.requester_message(&asker, id, "hello", vec![])
                .await
                .unwrap_err()
        ),
        ["request"]
    );
    assert_eq!(
        invalid_fields(
            core.ask_requester(&w.officer, w.riverside, id, "?", vec![])
                .await
                .unwrap_err()
        ),
        ["request"]
    );
    assert_eq!(
        invalid_fields(
            core.reject_request(&w.officer, w.riverside, id, "no")
                .await
                .unwrap_err()
        ),
        ["request"]
    );
}

#[tokio::test]
async fn another_organisations_records_officer_sees_nothing() {
    let w = world().await;
    let core = &w.env.core;
    let (_, id, _) = own_request(&w).await;
    assert!(core
        .request_queue(&w.elsewhere, w.hospital, QueueFilter::All, "")
        .await
        .unwrap()
        .is_empty());
    assert!(matches!(
        core.team_request(&w.elsewhere, w.hospital, id).await,
        Err(DomainError::NotFound)
    ));
    assert!(matches!(
        core.team_request(&w.elsewhere, w.riverside, id).await,
        Err(DomainError::NotFound)
    ));
    assert!(matches!(
        core.request_queue(&w.elsewhere, w.riverside, QueueFilter::All, "")
            .await,
        Err(DomainError::NotFound)
    ));
    // A doctor of the same practice is not its records team either.
    let gp = sign_in(&w.env, keyhold_domain::demo::DEMO_GP).await;
    assert!(matches!(
        core.team_request(&gp, w.riverside, id).await,
        Err(DomainError::NotFound)
    ));
    // Nor does another requester see it.
    let carer = sign_in(&w.env, DEMO_CARER).await;
    assert!(matches!(
        core.my_request(&Asker::Account(carer.clone()), id).await,
        Err(DomainError::NotFound)
    ));
    assert!(core
        .my_requests(&Asker::Account(carer), "")
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_compiled_disclosure_holds_only_what_the_organisation_contributed() {
    let w = world().await;
    let core = &w.env.core;
    let (_, id, _) = own_request(&w).await;
    core.assign_request(&w.officer, w.riverside, id, w.officer.account)
        .await
        .unwrap();
    let patient = w.patient.own_patient.unwrap();
    let record = core.record(&w.patient, patient).await.unwrap();
    let (ours, others): (Vec<_>, Vec<_>) = record.entries.iter().partition(
        |e| matches!(&e.source, Source::Organisation { org: Some(o), .. } if *o == w.riverside),
    );
    assert!(!ours.is_empty() && !others.is_empty(), "the demo has both");
    // A letter the practice filed goes with it; one the patient filed does not.
    let gp = sign_in(&w.env, keyhold_domain::demo::DEMO_GP).await;
    core.add_document(&gp, patient, new_document("Referral letter", pdf(5000)))
        .await
        .unwrap();
    core.add_document(&w.patient, patient, new_document("My own notes", pdf(4000)))
        .await
        .unwrap();
    let all: BTreeSet<Category> = Category::ALL.into_iter().collect();
    core.compile_disclosure(&w.officer, w.riverside, id, None, None, &all)
        .await
        .unwrap();
    let view = core
        .team_request(&w.officer, w.riverside, id)
        .await
        .unwrap();
    let names: Vec<&str> = view.disclosure.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.contains(&"Referral letter.pdf"), "{names:?}");
    let compiled = view
        .disclosure
        .iter()
        .find(|f| f.label == "Compiled from the Keyhold record")
        .unwrap();
    let pdf = core
        .open_team_file(&w.officer, w.riverside, id, compiled.id)
        .await
        .unwrap()
        .read_all()
        .unwrap();
    let has = |t: &str| pdf.windows(t.len()).any(|win| win == t.as_bytes());
    let ascii = |t: &str| t.is_ascii() && t.len() < 60;
    let shown: Vec<_> = ours.iter().filter(|e| ascii(&e.title)).collect();
    assert!(!shown.is_empty());
    for e in shown {
        assert!(has(&e.title), "{} is missing", e.title);
    }
    for e in others
        .iter()
        .filter(|e| ascii(&e.title) && !ours.iter().any(|o| o.title == e.title))
    {
        assert!(
            !has(&e.title),
            "{} ({:?}) must not be disclosed",
            e.title,
            e.source
        );
    }
    // After completion the basis is gone: no more compiling.
    core.complete_request(&w.officer, w.riverside, id)
        .await
        .unwrap();
    assert!(core.subject_access_of(patient).unwrap().is_empty());
}

#[tokio::test]
async fn an_executor_request_matches_the_deceased_patient_by_nhs_number_and_birth_date() {
    let w = world().await;
    let core = &w.env.core;
    let carer = sign_in(&w.env, DEMO_CARER).await;
    let asker = Asker::Account(carer);
    let id = core
        .start_request(&asker, w.riverside, RequestKind::Executor)
        .await
        .unwrap();
    let mut patient = form(&[
        ("patient-given-name", "Arthur"),
        ("patient-family-name", "Hughes"),
        ("patient-dob-day", "14"),
        ("patient-dob-month", "3"),
        ("patient-dob-year", "1941"),
        ("patient-dod-day", "1"),
        ("patient-dod-month", "1"),
        ("patient-dod-year", "2026"),
        ("patient-nhs-number", DEMO_DECEASED_NHS_NUMBER),
        ("patient-address", "4 Mill Row"),
        ("patient-postcode", "LS2 7QQ"),
    ]);
    // A wrong birth date: sent, but it matches no record.
    patient.insert("patient-dob-day".into(), "15".into());
    core.save_step(&asker, id, Step::Patient, &patient)
        .await
        .unwrap();
    assert_eq!(
        invalid_fields(
            core.save_step(&asker, id, Step::Requester, &form(&[]))
                .await
                .unwrap_err()
        ),
        [
            "requester-name",
            "requester-relationship",
            "requester-address"
        ]
    );
    core.save_step(
        &asker,
        id,
        Step::Requester,
        &form(&[
            ("requester-name", "Sam Reid"),
            ("requester-relationship", "Nephew and executor"),
            ("requester-address", "1 Oak Road"),
        ]),
    )
    .await
    .unwrap();
    core.save_step(
        &asker,
        id,
        Step::Records,
        &form(&[("records-description", "His last year of GP records")]),
    )
    .await
    .unwrap();
    assert_eq!(
        invalid_fields(core.submit_request(&asker, id).await.unwrap_err()),
        ["documents"]
    );
    core.add_evidence(&asker, id, true, upload("probate.pdf"))
        .await
        .unwrap();
    core.submit_request(&asker, id).await.unwrap();
    core.assign_request(&w.officer, w.riverside, id, w.officer.account)
        .await
        .unwrap();
    let all: BTreeSet<Category> = Category::ALL.into_iter().collect();
    assert_eq!(
        invalid_fields(
            core.compile_disclosure(&w.officer, w.riverside, id, None, None, &all)
                .await
                .unwrap_err()
        ),
        ["compile"],
        "no record matches a wrong birth date"
    );
    // The officer asks; the executor corrects it in a reply, and the team
    // re-checks against the request as sent: still no match, so upload.
    core.ask_requester(
        &w.officer,
        w.riverside,
        id,
        "Please check the date of birth.",
        vec![],
    )
    .await
    .unwrap();
    core.requester_message(&asker, id, "Sorry: 14 March 1941.", vec![])
        .await
        .unwrap();
    core.add_disclosure_files(&w.officer, w.riverside, id, upload("gp-records.pdf"))
        .await
        .unwrap();
    core.complete_request(&w.officer, w.riverside, id)
        .await
        .unwrap();
    assert_eq!(
        core.open_my_disclosure(&asker, id).await.unwrap().1.len(),
        1
    );

    // Asked again with the right date of birth: the record is found, and
    // compiling works while the request is open.
    let deceased = core
        .patient_by_nhs_number(&keyhold_domain::NhsNumber::parse(DEMO_DECEASED_NHS_NUMBER).unwrap())
        .unwrap()
        .unwrap();
    let id = core
        .start_request(&asker, w.riverside, RequestKind::Executor)
        .await
        .unwrap();
    patient.insert("patient-dob-day".into(), "14".into());
    core.save_step(&asker, id, Step::Patient, &patient)
        .await
        .unwrap();
    core.save_step(
        &asker,
        id,
        Step::Requester,
        &form(&[
            ("requester-name", "Sam Reid"),
            ("requester-relationship", "Executor"),
            ("requester-address", "1 Oak Road"),
        ]),
    )
    .await
    .unwrap();
    core.save_step(
        &asker,
        id,
        Step::Records,
        &form(&[("records-description", "All")]),
    )
    .await
    .unwrap();
    core.add_evidence(&asker, id, true, upload("probate.pdf"))
        .await
        .unwrap();
    core.submit_request(&asker, id).await.unwrap();
    assert!(
        core.subject_access_of(deceased).unwrap().is_empty(),
        "not linked before the officer matches it"
    );
    core.assign_request(&w.officer, w.riverside, id, w.officer.account)
        .await
        .unwrap();
    core.compile_disclosure(&w.officer, w.riverside, id, None, None, &all)
        .await
        .unwrap();
    assert_eq!(core.subject_access_of(deceased).unwrap().len(), 1);
    let view = core
        .team_request(&w.officer, w.riverside, id)
        .await
        .unwrap();
    assert!(view.linked);
    assert_eq!(view.disclosure.len(), 1);
    core.complete_request(&w.officer, w.riverside, id)
        .await
        .unwrap();
    assert!(
        core.subject_access_of(deceased).unwrap().is_empty(),
        "closed with the request"
    );
}

#[tokio::test]
async fn a_guest_proves_their_address_and_cannot_be_asked_questions() {
    let w = world().await;
    let core = &w.env.core;
    let email = Email::parse("guest.person@example.test").unwrap();
    core.start_guest(&email).await.unwrap();
    let token = w
        .env
        .link_token("guest.person@example.test", "/access-requests/guest/");
    assert!(core.guest_link_is_live(&token).unwrap());
    let session = core.open_guest_link(&token).await.unwrap();
    assert!(
        core.open_guest_link(&token).await.is_err(),
        "a link works once"
    );
    let guest = core
        .guest_session(&session)
        .unwrap()
        .expect("a guest session");
    let asker = Asker::Guest(guest);
    let id = core
        .start_request(&asker, w.riverside, RequestKind::ThirdParty)
        .await
        .unwrap();
    // About the demo patient (with their consent), by NHS number and birth date.
    let record = w.patient.own_patient.unwrap();
    let d = core.record(&w.patient, record).await.unwrap().demographics;
    let dob = d.date_of_birth.unwrap();
    let nhs = d.nhs_number.unwrap().digits();
    let (day, month, year) = (
        dob.day().to_string(),
        (dob.month() as u8).to_string(),
        dob.year().to_string(),
    );
    core.save_step(
        &asker,
        id,
        Step::Patient,
        &form(&[
            ("patient-given-name", "Pat"),
            ("patient-family-name", "Other"),
            ("patient-dob-day", &day),
            ("patient-dob-month", &month),
            ("patient-dob-year", &year),
            ("patient-nhs-number", &nhs),
            ("patient-address", "2 Elm Close"),
            ("patient-postcode", "LS3 1AB"),
        ]),
    )
    .await
    .unwrap();
    core.save_step(
        &asker,
        id,
        Step::Requester,
        &form(&[
            ("requester-name", "Guest Person"),
            ("requester-relationship", "Sister"),
            ("requester-address", "5 Ash Way"),
        ]),
    )
    .await
    .unwrap();
    core.save_step(
        &asker,
        id,
        Step::Records,
        &form(&[("records-description", "Her discharge letter")]),
    )
    .await
    .unwrap();
    core.add_evidence(&asker, id, true, upload("consent.pdf"))
        .await
        .unwrap();
    let reference = core.submit_request(&asker, id).await.unwrap();
    assert!(w
        .env
        .mails()
        .last()
        .unwrap()
        .contains(&reference.to_string()));
    // The team cannot ask a guest anything; the guest cannot send messages.
    core.assign_request(&w.officer, w.riverside, id, w.officer.account)
        .await
        .unwrap();
    assert_eq!(
        invalid_fields(
            core.ask_requester(&w.officer, w.riverside, id, "?", vec![])
                .await
                .unwrap_err()
        ),
        ["text"]
    );
    assert_eq!(
        invalid_fields(
            core.requester_message(&asker, id, "hi", vec![])
                .await
                .unwrap_err()
        ),
        ["text"]
    );
    // Disclosed as uploaded files: the patient it matches still reads it,
    // and the guest receives it.
    core.add_disclosure_files(&w.officer, w.riverside, id, upload("discharge.pdf"))
        .await
        .unwrap();
    core.complete_request(&w.officer, w.riverside, id)
        .await
        .unwrap();
    let log = core
        .access_log(&w.patient, record, &AccessFilter::default())
        .await
        .unwrap();
    assert!(log
        .entries
        .iter()
        .any(|e| e.action == AuditAction::Disclose));
    assert_eq!(
        core.open_my_disclosure(&asker, id).await.unwrap().1.len(),
        1
    );
    // A later session from the same address sees it; another address does not.
    core.start_guest(&email).await.unwrap();
    let again = core
        .open_guest_link(
            &w.env
                .link_token("guest.person@example.test", "/access-requests/guest/"),
        )
        .await
        .unwrap();
    let again = Asker::Guest(core.guest_session(&again).unwrap().unwrap());
    assert_eq!(core.my_requests(&again, "").unwrap().len(), 1);
    let other = Email::parse("someone.else@example.test").unwrap();
    core.start_guest(&other).await.unwrap();
    let theirs = core
        .open_guest_link(
            &w.env
                .link_token("someone.else@example.test", "/access-requests/guest/"),
        )
        .await
        .unwrap();
    let theirs = Asker::Guest(core.guest_session(&theirs).unwrap().unwrap());
    assert!(core.my_requests(&theirs, "").unwrap().is_empty());
    assert!(matches!(
        core.my_request(&theirs, id).await,
        Err(DomainError::NotFound)
    ));
    // Sessions lapse.
    w.env.clock.advance(Duration::hours(3));
    assert!(core.guest_session(&session).unwrap().is_none());
}

#[tokio::test]
async fn a_rejection_gives_its_reason_and_drops_a_prepared_disclosure_with_its_key() {
    let w = world().await;
    let core = &w.env.core;
    let (asker, id, reference) = own_request(&w).await;
    core.assign_request(&w.officer, w.riverside, id, w.officer.account)
        .await
        .unwrap();
    core.add_disclosure_files(&w.officer, w.riverside, id, upload("draft.pdf"))
        .await
        .unwrap();
    let mut dkey = vec![b'd'];
    dkey.extend_from_slice(id.as_bytes());
    assert!(w.env.store().get(DEKS, &dkey).unwrap().is_some());
    assert_eq!(
        invalid_fields(
            core.reject_request(&w.officer, w.riverside, id, " ")
                .await
                .unwrap_err()
        ),
        ["reject-reason"]
    );
    core.reject_request(
        &w.officer,
        w.riverside,
        id,
        "We hold no records for this person.",
    )
    .await
    .unwrap();
    assert!(w.env.store().get(DEKS, &dkey).unwrap().is_none());
    let view = core.my_request(&asker, id).await.unwrap();
    assert_eq!(view.summary.state, RequestState::Rejected);
    assert_eq!(
        view.rejection.as_deref(),
        Some("We hold no records for this person.")
    );
    assert!(view.disclosure.is_empty());
    let mail = w.env.mails().last().cloned().unwrap();
    assert!(mail.contains(&reference.to_string()) && !mail.contains("no records for"));
    // Rejected is final.
    assert_eq!(
        invalid_fields(core.withdraw_request(&asker, id).await.unwrap_err()),
        ["request"]
    );
}

#[tokio::test]
async fn a_mail_that_fails_does_not_undo_or_hide_the_request() {
    let w = world().await;
    // The outbox cannot be written: every mail fails.
    let outbox = w.env.dir.path().join("outbox");
    let _ = std::fs::remove_dir_all(&outbox);
    std::fs::write(&outbox, b"not a folder").unwrap();
    let (asker, id, reference) = own_request(&w).await;
    let mine = w.env.core.my_requests(&asker, "").unwrap();
    assert_eq!(mine[0].id, id);
    assert_eq!(
        mine[0].reference.as_deref(),
        Some(reference.to_string().as_str())
    );
    assert_eq!(mine[0].state, RequestState::Received);
}

#[tokio::test]
async fn an_address_gets_at_most_three_unused_guest_links_at_once() {
    let w = world().await;
    let core = &w.env.core;
    let links = |env: &Env| {
        env.mails()
            .iter()
            .filter(|m| {
                m.contains("flood.target@example.test") && m.contains("/access-requests/guest/")
            })
            .count()
    };
    let email = Email::parse("flood.target@example.test").unwrap();
    for _ in 0..6 {
        core.start_guest(&email).await.unwrap();
    }
    assert_eq!(links(&w.env), 3, "three links, then no more mail");
    // Using one frees a place; so does a day passing.
    let token = w
        .env
        .link_token("flood.target@example.test", "/access-requests/guest/");
    core.open_guest_link(&token).await.unwrap();
    core.start_guest(&email).await.unwrap();
    assert_eq!(links(&w.env), 4);
    core.start_guest(&email).await.unwrap();
    assert_eq!(links(&w.env), 4);
    w.env.clock.advance(Duration::hours(25));
    core.start_guest(&email).await.unwrap();
    assert_eq!(links(&w.env), 5);
    // Another address is not held back.
    core.start_guest(&Email::parse("someone.else@example.test").unwrap())
        .await
        .unwrap();
    assert!(w
        .env
        .mails()
        .last()
        .unwrap()
        .contains("someone.else@example.test"));
}
