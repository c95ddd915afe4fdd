//! `seed_demo` seeds a consent demo that works through the public API: each
//! printed account signs in with the demo password and sees what its side of
//! consent should, and nothing more.

use std::collections::BTreeSet;

use keyhold_domain::consent::StaffRole;
use keyhold_domain::demo::{
    DEMO_CARER, DEMO_DOCTOR, DEMO_EMAILS, DEMO_GP, DEMO_GP_ADMIN, DEMO_PASSWORD, DEMO_PATIENT,
    DEMO_RECORDS,
};
use keyhold_domain::policy::{Basis, Principal};
use keyhold_domain::{Category, DomainError};

use crate::helpers::Env;

const GP: &str = "Riverside Medical Practice";
const HOSPITAL: &str = "St Oswald's Hospital NHS Foundation Trust";

async fn sign_in(env: &Env, email: &str) -> Principal {
    let signed_in = env
        .core
        .sign_in(email, DEMO_PASSWORD, None)
        .await
        .unwrap_or_else(|e| panic!("{email} cannot sign in with the demo password: {e:?}"));
    env.now(&signed_in.token).await
}

fn categories(entries: &[keyhold_domain::Entry]) -> BTreeSet<Category> {
    entries.iter().map(|e| e.category).collect()
}

#[tokio::test]
async fn the_demo_seeds_every_side_of_consent() {
    let env = Env::new();
    assert!(env.core.is_empty().unwrap());
    let accounts = env.core.seed_demo().await.unwrap();
    let printed: Vec<&str> = accounts.iter().map(|a| a.email.as_str()).collect();
    assert_eq!(printed, DEMO_EMAILS, "patients first, then the others");
    assert!(accounts.iter().all(|a| a.password == DEMO_PASSWORD));
    assert!(!env.core.is_empty().unwrap());

    let orgs = env.core.organisations().unwrap();
    let org = |name: &str| {
        orgs.iter()
            .find(|(_, n)| n == name)
            .unwrap_or_else(|| panic!("no organisation {name} in {orgs:?}"))
            .0
    };
    let (riverside, hospital) = (org(GP), org(HOSPITAL));

    // The demo patient: the whole record, and both grants on the sharing page.
    let patient = sign_in(&env, DEMO_PATIENT).await;
    let record = patient.own_patient.expect("the demo patient has a record");
    let own = env.core.record(&patient, record).await.unwrap();
    assert!(categories(&own.entries).contains(&Category::SocialCare));
    assert!(categories(&own.entries).contains(&Category::MentalHealth));
    let from_gp: Vec<_> = own
        .entries
        .iter()
        .filter(|e| e.source.label() == GP)
        .collect();
    assert!(!from_gp.is_empty());
    assert!(
        from_gp.iter().all(|e| e.source.org() == Some(riverside)),
        "the GP's entries should name the practice as contributor"
    );
    assert!(own
        .entries
        .iter()
        .filter(|e| e.source.label() != GP)
        .all(|e| e.source.org().is_none()));
    let grants = env.core.grants(&patient, record).await.unwrap();
    assert_eq!(grants.len(), 2);
    assert!(grants
        .iter()
        .all(|g| g.state == keyhold_domain::consent::GrantState::Active));

    // The GP reads through the practice's grant: General and Mental health only.
    let gp = sign_in(&env, DEMO_GP).await;
    assert_eq!(gp.memberships.len(), 1);
    assert_eq!(gp.memberships[0].org, riverside);
    assert_eq!(gp.memberships[0].role, StaffRole::Doctor);
    let seen = env.core.record(&gp, record).await.unwrap();
    assert!(matches!(seen.basis, Basis::Organisation { org, .. } if org == riverside));
    assert_eq!(
        categories(&seen.entries),
        BTreeSet::from([Category::General, Category::MentalHealth])
    );
    assert!(seen.standing.can.contribute);

    // The carer: no record of their own, General and Social care only.
    let carer = sign_in(&env, DEMO_CARER).await;
    assert_eq!(carer.own_patient, None);
    assert!(carer.memberships.is_empty());
    let cared = env.core.cared_for(&carer).await.unwrap();
    assert_eq!(cared.len(), 1);
    assert_eq!(cared[0].patient, record);
    let seen = env.core.record(&carer, record).await.unwrap();
    assert!(matches!(seen.basis, Basis::Carer { .. }));
    assert_eq!(
        categories(&seen.entries),
        BTreeSet::from([Category::General, Category::SocialCare])
    );
    assert!(!seen.standing.can.contribute);

    // The hospital doctor has no grant: refused, until emergency access.
    let doctor = sign_in(&env, DEMO_DOCTOR).await;
    assert_eq!(doctor.memberships.len(), 1);
    assert_eq!(doctor.memberships[0].org, hospital);
    assert_eq!(doctor.memberships[0].role, StaffRole::Doctor);
    assert!(matches!(
        env.core.record(&doctor, record).await,
        Err(DomainError::NotFound)
    ));
    env.core
        .break_glass(
            &doctor,
            hospital,
            record,
            "unconscious in the emergency department",
        )
        .await
        .unwrap();
    let doctor = sign_in(&env, DEMO_DOCTOR).await;
    let seen = env.core.record(&doctor, record).await.unwrap();
    assert!(matches!(seen.basis, Basis::BreakGlass { .. }));

    // The practice administrator sees the GP and the records officer on the
    // staff page; nobody else is a member of the practice.
    let admin = sign_in(&env, DEMO_GP_ADMIN).await;
    assert_eq!(admin.memberships.len(), 1);
    assert_eq!(admin.memberships[0].role, StaffRole::Administrator);
    let (staff, pending) = env.core.staff(&admin, riverside).unwrap();
    assert!(pending.is_empty());
    let mut members: Vec<_> = staff
        .iter()
        .map(|m| (m.email.as_str(), m.role, m.active))
        .collect();
    members.sort_by_key(|m| m.0);
    assert_eq!(
        members,
        vec![
            (DEMO_GP_ADMIN, StaffRole::Administrator, true),
            (DEMO_GP, StaffRole::Doctor, true),
            (DEMO_RECORDS, StaffRole::RecordsOfficer, true),
        ]
    );
    assert!(matches!(
        env.core.staff(&admin, hospital),
        Err(DomainError::NotFound)
    ));
    // Administrators are not clinicians: no record through the grant.
    assert!(matches!(
        env.core.record(&admin, record).await,
        Err(DomainError::NotFound)
    ));

    // The audit chain holds together over the whole seeding.
    match keyhold_domain::audit::verify(env.store().as_ref()).unwrap() {
        Ok(_) => {}
        Err(brk) => panic!("audit chain broken: {brk}"),
    }
}

/// `serve --demo` seeds only an empty store: an account alone (or a demo run
/// cut short after its accounts) is enough to leave the store alone.
#[tokio::test]
async fn a_store_with_only_an_account_is_not_empty() {
    let env = Env::new();
    assert!(env.core.is_empty().unwrap());
    env.core
        .create_account_for(
            "Only Account",
            "only@example.test",
            "a long enough password",
            None,
        )
        .await
        .unwrap();
    assert!(!env.core.is_empty().unwrap());
}
