//! Consent end to end over the real store: invitations, carers, organisations,
//! removal, break-glass, sensitive records and the access log. Each test goes
//! through `session()` between steps, as the next web request would.

use keyhold_domain::consent::{LegalBasis, Permissions, StaffRole};
use keyhold_domain::policy::Basis;
use keyhold_domain::{
    Accepted, AccessFilter, Category, DomainError, Email, FirstAdministrator, GrantTerms,
    IdentityLevel, NewEntry, NewGrantee, NhsNumber, ProxyRequest,
};
use time::macros::date;
use time::Duration;

use crate::helpers::{new_entry, Env};

fn terms(categories: &[Category], read: bool, contribute: bool, act: bool) -> GrantTerms {
    GrantTerms {
        permissions: Permissions {
            read,
            contribute,
            act_on_behalf: act,
        },
        categories: categories.iter().copied().collect(),
        last_day: date!(2026 - 12 - 31),
        purpose: "Help with appointments".into(),
    }
}

fn entry_in(title: &str, category: Category) -> NewEntry {
    NewEntry {
        category,
        ..new_entry(title)
    }
}

fn is_not_found<T: std::fmt::Debug>(r: Result<T, DomainError>) -> bool {
    matches!(r, Err(DomainError::NotFound))
}

#[tokio::test]
async fn a_carer_accepts_by_mail_sees_only_what_was_shared_and_loses_it_on_revocation() {
    let env = Env::new();
    let ann = env.person("Ann Patient", "ann@example.test").await;
    let a = env.now(&ann).await;
    let record = a.own_patient.unwrap();
    env.core
        .add_entry(
            &a,
            record,
            entry_in("Penicillin allergy", Category::General),
        )
        .await
        .unwrap();
    env.core
        .add_entry(&a, record, entry_in("Counselling", Category::MentalHealth))
        .await
        .unwrap();
    env.core
        .add_entry(&a, record, entry_in("Private matter", Category::Restricted))
        .await
        .unwrap();

    let grant = env
        .core
        .share(
            &a,
            record,
            NewGrantee::Person(Email::parse("cara@example.test").unwrap()),
            terms(&[Category::General], true, false, false),
        )
        .await
        .unwrap();
    let token = env.invitation_to("cara@example.test");

    // Someone else holding the forwarded link cannot use it.
    let mallory = env.person("Mallory", "mallory@example.test").await;
    let m = env.now(&mallory).await;
    assert!(matches!(
        env.core.accept_invitation(&m, &token).await,
        Err(DomainError::Invalid(_))
    ));

    let cara = env.person("Cara Carer", "cara@example.test").await;
    let c = env.now(&cara).await;
    // Before accepting, nothing.
    assert!(is_not_found(env.core.record(&c, record).await));
    assert!(
        matches!(env.core.accept_invitation(&c, &token).await.unwrap(), Accepted::Grant(p) if p == record)
    );
    // Single use.
    assert!(is_not_found(env.core.accept_invitation(&c, &token).await));

    let c = env.now(&cara).await;
    let view = env.core.record(&c, record).await.unwrap();
    assert!(matches!(view.basis, Basis::Carer { grant: g } if g == grant));
    let titles: Vec<_> = view.entries.iter().map(|e| e.title.as_str()).collect();
    assert_eq!(titles, vec!["Penicillin allergy"]);
    // Not granted: contributing, sharing, the access log.
    assert!(is_not_found(
        env.core.add_entry(&c, record, new_entry("x")).await
    ));
    assert!(is_not_found(env.core.grants(&c, record).await));
    assert!(is_not_found(
        env.core
            .access_log(&c, record, &AccessFilter::default())
            .await
    ));
    assert_eq!(env.core.cared_for(&c).await.unwrap().len(), 1);

    env.core.revoke_grant(&a, record, grant).await.unwrap();
    let c = env.now(&cara).await;
    assert!(is_not_found(env.core.record(&c, record).await));
    assert!(env.core.cared_for(&c).await.unwrap().is_empty());

    // The patient's log names the carer's access, marked as a carer's.
    let log = env
        .core
        .access_log(&a, record, &AccessFilter::default())
        .await
        .unwrap();
    let carer_reads: Vec<_> = log
        .entries
        .iter()
        .filter(|e| e.carer && e.outcome == "Allowed")
        .collect();
    assert!(carer_reads
        .iter()
        .any(|e| e.who == "Cara Carer" && e.why.contains("Help with appointments")));
    assert!(log
        .entries
        .iter()
        .any(|e| e.who == "Cara Carer" && e.outcome == "Refused"));
    let only_cara = AccessFilter {
        who: carer_reads[0].account,
        ..Default::default()
    };
    let filtered = env.core.access_log(&a, record, &only_cara).await.unwrap();
    assert!(!filtered.entries.is_empty());
    assert!(filtered.entries.iter().all(|e| e.who == "Cara Carer"));
}

#[tokio::test]
async fn an_invitation_expires_and_a_grant_ends_on_its_last_day() {
    let env = Env::new();
    let ann = env.person("Ann Patient", "ann@example.test").await;
    let a = env.now(&ann).await;
    let record = a.own_patient.unwrap();
    env.core
        .share(
            &a,
            record,
            NewGrantee::Person(Email::parse("late@example.test").unwrap()),
            terms(&[Category::General], true, false, false),
        )
        .await
        .unwrap();
    let token = env.invitation_to("late@example.test");
    env.clock.advance(Duration::days(8));
    let late = env.person("Late Carer", "late@example.test").await;
    let l = env.now(&late).await;
    assert!(is_not_found(env.core.accept_invitation(&l, &token).await));

    // A grant to the last day of the year: read on that day, not a second after.
    let a = env
        .now(&env.person("Bea Patient", "bea@example.test").await)
        .await;
    let bea_record = a.own_patient.unwrap();
    let mut t = terms(&[Category::General], true, false, false);
    t.last_day = env.core.today() + Duration::days(2);
    env.core
        .share(
            &a,
            bea_record,
            NewGrantee::Person(Email::parse("late@example.test").unwrap()),
            t,
        )
        .await
        .unwrap();
    let token = env.invitation_to("late@example.test");
    let l = env.now(&late).await;
    env.core.accept_invitation(&l, &token).await.unwrap();
    assert!(env.core.record(&l, bea_record).await.is_ok());
    env.clock.advance(Duration::days(3));
    let late = {
        // Sessions expire when idle; sign in again as the next day's visit.
        env.core
            .sign_in("late@example.test", crate::helpers::PASSWORD, None)
            .await
            .unwrap()
            .token
    };
    let l = env.now(&late).await;
    assert!(is_not_found(env.core.record(&l, bea_record).await));
}

#[tokio::test]
async fn organisations_read_what_is_shared_until_a_professional_is_removed() {
    let env = Env::new();
    let admin = env.person("Ada Admin", "ada@riverside.test").await;
    let (org, first) = env
        .core
        .create_organisation("Riverside Surgery", "ada@riverside.test")
        .await
        .unwrap();
    assert!(matches!(first, FirstAdministrator::Existing(_)));
    let ad = env.now(&admin).await;
    env.core
        .invite_staff(&ad, org, "doc@riverside.test", StaffRole::Doctor)
        .await
        .unwrap();
    let token = env.invitation_to("doc@riverside.test");
    let doc = env.person("Dr Dee", "doc@riverside.test").await;
    let d = env.now(&doc).await;
    assert!(
        matches!(env.core.accept_invitation(&d, &token).await.unwrap(), Accepted::Staff(o) if o == org)
    );

    let ann = env.person("Ann Patient", "ann@example.test").await;
    let a = env.now(&ann).await;
    let record = a.own_patient.unwrap();
    let d = env.now(&doc).await;
    assert!(is_not_found(env.core.record(&d, record).await));
    env.core
        .share(
            &a,
            record,
            NewGrantee::Organisation(org),
            terms(&[Category::General], true, true, false),
        )
        .await
        .unwrap();
    let d = env.now(&doc).await;
    assert!(matches!(
        env.core.record(&d, record).await.unwrap().basis,
        Basis::Organisation { .. }
    ));
    // The administrator is not a clinician: no reading through the grant.
    let ad = env.now(&admin).await;
    assert!(is_not_found(env.core.record(&ad, record).await));
    // The doctor contributes; the entry is attributed to the organisation.
    let added = env
        .core
        .add_entry(&d, record, new_entry("Blood pressure review"))
        .await
        .unwrap();
    // Until her identity is checked, Ann does not see what the practice entered.
    assert!(is_not_found(env.core.entry(&a, record, added).await));
    env.core
        .verify_identity(
            &Email::parse("ann@example.test").unwrap(),
            IdentityLevel::P9,
            Some(NhsNumber::parse("9990000018").unwrap()),
            "photo ID seen at reception",
        )
        .await
        .unwrap();
    let a = env.now(&ann).await;
    assert_eq!(
        a.own_patient,
        Some(record),
        "her own record takes the NHS number"
    );
    let e = env.core.entry(&a, record, added).await.unwrap();
    assert_eq!(e.source.label(), "Riverside Surgery");
    assert_eq!(e.source.org(), Some(org));

    // Removal ends access on the next request.
    let doc_account = d.account;
    env.core.remove_staff(&ad, org, doc_account).await.unwrap();
    let d = env.now(&doc).await;
    assert!(d.memberships.is_empty());
    assert!(is_not_found(env.core.record(&d, record).await));
    assert!(is_not_found(env.core.entry(&d, record, added).await));
    // An administrator cannot remove themselves (the organisation keeps one).
    assert!(matches!(
        env.core.remove_staff(&ad, org, ad.account).await,
        Err(DomainError::Invalid(_))
    ));
}

#[tokio::test]
async fn an_organisation_keeps_reading_its_own_entries_after_revocation() {
    let env = Env::new();
    let doc = env.person("Dr Dee", "doc@riverside.test").await;
    let (org, _) = env
        .core
        .create_organisation("Riverside Surgery", "doc@riverside.test")
        .await
        .unwrap();
    let d = env.now(&doc).await;
    env.core
        .add_member(org, d.account, StaffRole::Doctor)
        .await
        .unwrap();
    let a = env
        .now(&env.person("Ann Patient", "ann@example.test").await)
        .await;
    let record = a.own_patient.unwrap();
    let own = env
        .core
        .add_entry(&a, record, new_entry("Patient's own note"))
        .await
        .unwrap();
    let grant = env
        .core
        .share(
            &a,
            record,
            NewGrantee::Organisation(org),
            terms(&[Category::General], true, true, false),
        )
        .await
        .unwrap();
    let d = env.now(&doc).await;
    let theirs = env
        .core
        .add_entry(&d, record, new_entry("Surgery letter"))
        .await
        .unwrap();
    env.core.revoke_grant(&a, record, grant).await.unwrap();
    let d = env.now(&doc).await;
    assert!(env.core.entry(&d, record, theirs).await.is_ok());
    assert!(is_not_found(env.core.entry(&d, record, own).await));
    assert!(is_not_found(env.core.record(&d, record).await));
}

#[tokio::test]
async fn break_glass_opens_for_an_hour_hides_restricted_tells_the_patient_and_is_reported() {
    let env = Env::new();
    let admin = env.person("Hal Admin", "admin@hillside.test").await;
    let (org, _) = env
        .core
        .create_organisation("Hillside Hospital", "admin@hillside.test")
        .await
        .unwrap();
    let nurse = env.person("Nina Nurse", "nina@hillside.test").await;
    let n = env.now(&nurse).await;
    env.core
        .add_member(org, n.account, StaffRole::Nurse)
        .await
        .unwrap();

    let a = env
        .now(&env.person("Ann Patient", "ann@example.test").await)
        .await;
    let record = a.own_patient.unwrap();
    env.core
        .add_entry(&a, record, entry_in("Asthma", Category::General))
        .await
        .unwrap();
    env.core
        .add_entry(&a, record, entry_in("Private matter", Category::Restricted))
        .await
        .unwrap();

    let n = env.now(&nurse).await;
    assert!(is_not_found(env.core.record(&n, record).await));
    // A reason is required.
    assert!(matches!(
        env.core.break_glass(&n, org, record, "urgent").await,
        Err(DomainError::Invalid(_))
    ));
    // Someone who is not a clinician of the organisation cannot.
    let ad = env.now(&admin).await;
    assert!(is_not_found(
        env.core
            .break_glass(&ad, org, record, "Unconscious in the emergency department")
            .await
    ));
    let mails_before = env.mails().len();
    let bg = env
        .core
        .break_glass(&n, org, record, "Unconscious in the emergency department")
        .await
        .unwrap();
    assert_eq!(bg.expires_at - bg.opened_at, Duration::hours(1));
    let view = env.core.record(&n, record).await.unwrap();
    assert!(matches!(view.basis, Basis::BreakGlass { .. }));
    let titles: Vec<_> = view.entries.iter().map(|e| e.title.as_str()).collect();
    assert_eq!(titles, vec!["Asthma"]);
    // Break-glass reads; it does not contribute.
    assert!(is_not_found(
        env.core.add_entry(&n, record, new_entry("x")).await
    ));
    // The patient was told, without record content.
    let mails = env.mails();
    assert_eq!(mails.len(), mails_before + 1);
    let told = mails.last().unwrap();
    assert!(told.contains("ann@example.test") && told.contains("emergency access"));
    assert!(!told.contains("Unconscious") && !told.contains("Asthma"));

    env.clock.advance(Duration::minutes(61));
    let n = env
        .now(
            &env.core
                .sign_in("nina@hillside.test", crate::helpers::PASSWORD, None)
                .await
                .unwrap()
                .token,
        )
        .await;
    assert!(is_not_found(env.core.record(&n, record).await));

    let ad = env
        .now(
            &env.core
                .sign_in("admin@hillside.test", crate::helpers::PASSWORD, None)
                .await
                .unwrap()
                .token,
        )
        .await;
    let report = env.core.break_glass_report(&ad, org).await.unwrap();
    assert_eq!(report.len(), 1);
    assert_eq!(report[0].professional, "Nina Nurse");
    assert_eq!(report[0].reason, "Unconscious in the emergency department");
    // Only administrators read the report.
    assert!(is_not_found(env.core.break_glass_report(&n, org).await));

    let log = env
        .core
        .access_log(&a, record, &AccessFilter::default())
        .await
        .unwrap();
    assert!(log
        .entries
        .iter()
        .any(|e| e.break_glass && e.who == "Nina Nurse" && e.why.contains("Unconscious")));
    let _ = admin;
}

#[tokio::test]
async fn a_sensitive_record_shows_others_only_who_it_is() {
    let env = Env::new();
    let doc = env.person("Dr Dee", "doc@riverside.test").await;
    let (org, _) = env
        .core
        .create_organisation("Riverside Surgery", "doc@riverside.test")
        .await
        .unwrap();
    let d = env.now(&doc).await;
    env.core
        .add_member(org, d.account, StaffRole::Doctor)
        .await
        .unwrap();
    let mut d = keyhold_domain::Demographics::empty();
    d.given_name = "Sam".into();
    d.family_name = "Sensitive".into();
    d.address_lines = vec!["1 Secret Lane".into()];
    d.email = Some(Email::parse("sam@example.test").unwrap());
    d.sensitive = true;
    let record = env.core.register_patient(d).await.unwrap();
    env.core
        .create_account_for(
            "Sam Sensitive",
            "sam@example.test",
            crate::helpers::PASSWORD,
            Some(record),
        )
        .await
        .unwrap();
    let a = env
        .now(
            &env.core
                .sign_in("sam@example.test", crate::helpers::PASSWORD, None)
                .await
                .unwrap()
                .token,
        )
        .await;
    env.core
        .share(
            &a,
            record,
            NewGrantee::Organisation(org),
            terms(&[Category::General], true, false, false),
        )
        .await
        .unwrap();
    let own = env.core.demographics(&a, record).await.unwrap();
    assert_eq!(own.address_lines, vec!["1 Secret Lane".to_string()]);
    let d = env.now(&doc).await;
    let seen = env.core.demographics(&d, record).await.unwrap();
    assert_eq!(seen.full_name(), "Sam Sensitive");
    assert!(seen.address_lines.is_empty() && seen.email.is_none() && seen.phones.is_empty());
}

#[tokio::test]
async fn an_organisation_sets_up_a_proxy_the_patient_can_see_and_end() {
    let env = Env::new();
    let admin = env.person("Ada Admin", "ada@riverside.test").await;
    let (org, _) = env
        .core
        .create_organisation("Riverside Surgery", "ada@riverside.test")
        .await
        .unwrap();
    let nhs = NhsNumber::parse("9434765919").unwrap();
    let mut d = keyhold_domain::Demographics::empty();
    d.given_name = "Cam".into();
    d.family_name = "Child".into();
    d.nhs_number = Some(nhs);
    let record = env.core.register_patient(d).await.unwrap();
    env.core
        .create_account_for(
            "Cam Child",
            "cam@example.test",
            crate::helpers::PASSWORD,
            Some(record),
        )
        .await
        .unwrap();
    let c = env
        .now(
            &env.core
                .sign_in("cam@example.test", crate::helpers::PASSWORD, None)
                .await
                .unwrap()
                .token,
        )
        .await;
    let ad = env.now(&admin).await;
    let req = ProxyRequest {
        nhs_number: nhs,
        carer_email: Email::parse("parent@example.test").unwrap(),
        basis: LegalBasis::ParentalResponsibility,
        terms: terms(&[Category::General], true, false, true),
    };
    env.core.set_up_proxy(&ad, org, req.clone()).await.unwrap();
    let token = env.invitation_to("parent@example.test");
    let parent = env.person("Pat Parent", "parent@example.test").await;
    let p = env.now(&parent).await;
    env.core.accept_invitation(&p, &token).await.unwrap();
    let p = env.now(&parent).await;
    assert!(env.core.record(&p, record).await.is_ok());
    // Acting on behalf: the proxy may see the sharing page.
    assert!(env.core.grants(&p, record).await.is_ok());
    // Someone who is not an administrator cannot set one up.
    assert!(is_not_found(env.core.set_up_proxy(&p, org, req).await));

    let grants = env.core.grants(&c, record).await.unwrap();
    let proxy = grants.iter().find(|g| g.grant.proxy.is_some()).unwrap();
    assert_eq!(proxy.proxy_org.as_deref(), Some("Riverside Surgery"));
    env.core
        .revoke_grant(&c, record, proxy.grant.id)
        .await
        .unwrap();
    let p = env.now(&parent).await;
    assert!(is_not_found(env.core.record(&p, record).await));
}
