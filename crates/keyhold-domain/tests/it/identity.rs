//! identity.rs: NHS login identities and operator checks link accounts to
//! records, and the identity level decides what the owner sees of them.

use keyhold_domain::audit::AuditAction;
use keyhold_domain::{
    DomainError, Email, IdentityLevel, NhsNumber, PatientId, Source, VerifiedIdentity,
};
use time::macros::date;
use time::Duration;

use crate::helpers::{last_audit, Env, PASSWORD};

fn identity(sub: &str, level: IdentityLevel, nhs: Option<&str>, email: &str) -> VerifiedIdentity {
    VerifiedIdentity {
        subject: sub.into(),
        level,
        vot: format!("{level}.Cp.Cd"),
        nhs_number: nhs.map(|n| NhsNumber::parse(n).unwrap()),
        given_name: "Nina".into(),
        family_name: "Example".into(),
        birthdate: Some(date!(1980 - 04 - 15)),
        email: Some(Email::parse(email).unwrap()),
        phone: Some("+447700900001".into()),
    }
}

/// A seeded record with entries from organisations and one the patient
/// entered; returns it and its NHS number.
async fn seeded(env: &Env) -> (PatientId, String) {
    let seeded = env.core.seed_patients(1).await.unwrap();
    (seeded[0].patient_id, seeded[0].nhs_number.clone())
}

fn from_organisation(s: &Source) -> bool {
    matches!(s, Source::Organisation { .. })
}

#[tokio::test]
async fn p9_sees_the_whole_record_p5_what_the_patient_entered_p0_none() {
    let env = Env::new();
    let (record, nhs) = seeded(&env).await;

    let p9 = env
        .core
        .nhs_login(
            &identity("sub-9", IdentityLevel::P9, Some(&nhs), "nine@example.test"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(p9.principal.own_patient, Some(record));
    let view = env.core.record(&p9.principal, record).await.unwrap();
    assert!(view.entries.iter().any(|e| from_organisation(&e.source)));
    assert!(view.entries.iter().any(|e| !from_organisation(&e.source)));
    let docs = env.core.documents(&p9.principal, record).await.unwrap();
    assert!(!docs.is_empty(), "P9 sees the hospital's letter");

    let p5 = env
        .core
        .nhs_login(
            &identity("sub-5", IdentityLevel::P5, Some(&nhs), "five@example.test"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(p5.principal.own_patient, Some(record));
    let view = env.core.record(&p5.principal, record).await.unwrap();
    assert!(
        !view.demographics.given_name.is_empty(),
        "P5 sees demographics"
    );
    assert!(
        view.entries.iter().all(|e| !from_organisation(&e.source)),
        "P5 must not see entries from organisations"
    );
    assert!(view.entries.iter().any(|e| !from_organisation(&e.source)));
    let org_entry = env
        .core
        .record(&p9.principal, record)
        .await
        .unwrap()
        .entries
        .into_iter()
        .find(|e| from_organisation(&e.source))
        .unwrap();
    assert!(matches!(
        env.core.entry(&p5.principal, record, org_entry.id).await,
        Err(DomainError::NotFound)
    ));
    assert!(env
        .core
        .documents(&p5.principal, record)
        .await
        .unwrap()
        .is_empty());

    let p0 = env
        .core
        .nhs_login(
            &identity("sub-0", IdentityLevel::P0, None, "zero@example.test"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(p0.principal.own_patient, None, "P0 has no record");
    assert!(matches!(
        env.core.record(&p0.principal, record).await,
        Err(DomainError::NotFound)
    ));
    // A P0 answer that carries an NHS number still links nothing.
    let p0n = env
        .core
        .nhs_login(
            &identity(
                "sub-0n",
                IdentityLevel::P0,
                Some(&nhs),
                "zero-n@example.test",
            ),
            None,
        )
        .await
        .unwrap();
    assert_eq!(p0n.principal.own_patient, None);
}

#[tokio::test]
async fn a_new_nhs_number_gets_a_record_made_from_the_identity() {
    let env = Env::new();
    let s = env
        .core
        .nhs_login(
            &identity(
                "sub-new",
                IdentityLevel::P9,
                Some("9990000026"),
                "new@example.test",
            ),
            None,
        )
        .await
        .unwrap();
    let record = s.principal.own_patient.expect("a record shell");
    let d = env
        .core
        .record(&s.principal, record)
        .await
        .unwrap()
        .demographics;
    assert_eq!(d.family_name, "Example");
    assert_eq!(d.date_of_birth, Some(date!(1980 - 04 - 15)));
    assert_eq!(d.nhs_number.unwrap().digits(), "9990000026");
    assert_eq!(
        env.core
            .patient_by_nhs_number(&NhsNumber::parse("9990000026").unwrap())
            .unwrap(),
        Some(record)
    );
}

#[tokio::test]
async fn the_same_subject_returns_to_its_account_at_its_latest_level() {
    let env = Env::new();
    let (record, nhs) = seeded(&env).await;
    let first = env
        .core
        .nhs_login(
            &identity("sub-a", IdentityLevel::P9, Some(&nhs), "a@example.test"),
            None,
        )
        .await
        .unwrap();
    let again = env
        .core
        .nhs_login(
            &identity("sub-a", IdentityLevel::P5, Some(&nhs), "a@example.test"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(first.principal.account, again.principal.account);
    assert_eq!(
        again.principal.level,
        IdentityLevel::P5,
        "a level can go down"
    );
    let view = env.core.record(&again.principal, record).await.unwrap();
    assert!(view.entries.iter().all(|e| !from_organisation(&e.source)));
    let status = env.core.identity_status(again.principal.account).unwrap();
    assert!(status.nhs_login);
    assert_eq!(status.level, IdentityLevel::P5);
    assert_eq!(status.verified_by.as_deref(), Some("NHS login (P5.Cp.Cd)"));
    // Sessions: the new sign-in's principal matches what the session says.
    let from_session = env.now(&again.token).await;
    assert_eq!(from_session.level, IdentityLevel::P5);
}

#[tokio::test]
async fn an_email_account_is_not_taken_over_but_can_link() {
    let env = Env::new();
    let (record, nhs) = seeded(&env).await;
    let token = env.person("Nina Example", "nina@example.test").await;
    let mine = env.now(&token).await;
    assert_eq!(mine.level, IdentityLevel::P0);

    // Same email, not signed in: refused, with what to do.
    let refused = env
        .core
        .nhs_login(
            &identity("sub-n", IdentityLevel::P9, Some(&nhs), "nina@example.test"),
            None,
        )
        .await;
    match refused {
        Err(DomainError::Invalid(e)) => assert!(e[0].message.contains("link NHS login")),
        other => panic!("expected a refusal, got {other:?}"),
    }

    // Signed in with the password, she links: her empty record gives way to
    // the record of her verified NHS number.
    let linked = env
        .core
        .nhs_login(
            &identity("sub-n", IdentityLevel::P9, Some(&nhs), "nina@example.test"),
            Some(mine.account),
        )
        .await
        .unwrap();
    assert_eq!(linked.principal.account, mine.account);
    assert_eq!(linked.principal.own_patient, Some(record));
    assert_eq!(linked.principal.level, IdentityLevel::P9);
    // Her password still works, and now opens the whole record.
    let by_password = env
        .core
        .sign_in("nina@example.test", PASSWORD, None)
        .await
        .unwrap();
    assert_eq!(by_password.principal.level, IdentityLevel::P9);

    // The same NHS login cannot then be linked to someone else.
    let other = env.person("Someone Else", "else@example.test").await;
    let other = env.now(&other).await;
    assert!(matches!(
        env.core
            .nhs_login(
                &identity("sub-n", IdentityLevel::P9, Some(&nhs), "nina@example.test"),
                Some(other.account),
            )
            .await,
        Err(DomainError::Invalid(_))
    ));
}

#[tokio::test]
async fn an_nhs_login_account_has_no_password_to_guess() {
    let env = Env::new();
    env.core
        .nhs_login(
            &identity("sub-p", IdentityLevel::P0, None, "nopw@example.test"),
            None,
        )
        .await
        .unwrap();
    for guess in ["", "x", PASSWORD] {
        assert!(matches!(
            env.core.sign_in("nopw@example.test", guess, None).await,
            Err(DomainError::BadCredentials)
        ));
    }
}

#[tokio::test]
async fn a_record_with_entries_is_not_left_behind_by_linking() {
    let env = Env::new();
    let (_other_record, nhs) = seeded(&env).await;
    let (p, own, token) = env.patient("busy@example.test").await;
    env.core
        .add_entry(&p, own, crate::helpers::new_entry("My own note"))
        .await
        .unwrap();
    let refused = env
        .core
        .nhs_login(
            &identity("sub-b", IdentityLevel::P9, Some(&nhs), "busy@example.test"),
            Some(p.account),
        )
        .await;
    assert!(matches!(refused, Err(DomainError::Invalid(_))));
    let after = env.now(&token).await;
    assert_eq!(after.own_patient, Some(own), "nothing changed");
    assert_eq!(after.level, IdentityLevel::P0);
}

#[tokio::test]
async fn an_operator_check_links_and_is_audited() {
    let env = Env::new();
    let (p, own, token) = env.patient("checked@example.test").await;
    let email = Email::parse("checked@example.test").unwrap();
    let nhs = NhsNumber::parse("9990000034").unwrap();
    assert!(matches!(
        env.core
            .verify_identity(&email, IdentityLevel::P9, None, "passport seen")
            .await,
        Err(DomainError::Invalid(_))
    ));
    assert!(matches!(
        env.core
            .verify_identity(&email, IdentityLevel::P9, Some(nhs), "  ")
            .await,
        Err(DomainError::Invalid(_))
    ));
    let (account, linked) = env
        .core
        .verify_identity(&email, IdentityLevel::P9, Some(nhs), "passport seen")
        .await
        .unwrap();
    assert_eq!(account, p.account);
    assert_eq!(linked, Some(own), "their own record takes the NHS number");
    let audited = last_audit(env.store()).event;
    assert_eq!(
        audited.action,
        AuditAction::VerifyIdentity,
        "the check is audited"
    );
    assert_eq!(audited.patient, Some(own));
    assert!(audited.purpose.contains("passport seen"));
    let now = env.now(&token).await;
    assert_eq!(now.level, IdentityLevel::P9);
    let d = env.core.record(&now, own).await.unwrap().demographics;
    assert_eq!(d.nhs_number, Some(nhs));
    assert_eq!(
        env.core
            .identity_status(account)
            .unwrap()
            .verified_by
            .as_deref(),
        Some("an identity check by Keyhold")
    );
}

#[tokio::test]
async fn a_login_flow_is_taken_once_and_expires() {
    let env = Env::new();
    let cookie = env
        .core
        .hold_login_flow(b"pending".to_vec(), "/record", None)
        .await
        .unwrap();
    let flow = env.core.take_login_flow(&cookie).await.unwrap().unwrap();
    assert_eq!(flow.payload, b"pending");
    assert_eq!(flow.next, "/record");
    assert!(
        env.core.take_login_flow(&cookie).await.unwrap().is_none(),
        "single use"
    );
    assert!(env.core.take_login_flow("garbage").await.unwrap().is_none());
    assert!(env.core.take_login_flow("1.nope").await.unwrap().is_none());

    let late = env
        .core
        .hold_login_flow(b"late".to_vec(), "/", None)
        .await
        .unwrap();
    env.clock.advance(Duration::minutes(11));
    assert!(
        env.core.take_login_flow(&late).await.unwrap().is_none(),
        "expired"
    );
}

#[tokio::test]
async fn an_account_is_not_moved_to_another_persons_record() {
    let env = Env::new();
    let (first, nhs_a) = seeded(&env).await;
    let other = env.core.seed_patients(1).await.unwrap();
    let s = env
        .core
        .nhs_login(
            &identity("sub-a2", IdentityLevel::P9, Some(&nhs_a), "a2@example.test"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(s.principal.own_patient, Some(first));
    // The same account, now vouched for with another NHS number.
    let refused = env
        .core
        .nhs_login(
            &identity(
                "sub-a2",
                IdentityLevel::P9,
                Some(&other[0].nhs_number),
                "a2@example.test",
            ),
            None,
        )
        .await;
    assert!(matches!(refused, Err(DomainError::Invalid(_))));
    let now = env.now(&s.token).await;
    assert_eq!(now.own_patient, Some(first), "still the first record");
}
