//! Erasure: a patient's record, data key, indexes and own sign-in go; the
//! audit trail stays; the erasure ledger brings an erasure back after a
//! restore from an older snapshot.

use std::os::unix::fs::PermissionsExt as _;

use keyhold_domain::audit::{self, AuditAction, AuditActor};
use keyhold_domain::backup::{restore_snapshot, write_snapshot};
use keyhold_domain::demo::{DEMO_CARER, DEMO_PASSWORD, DEMO_PATIENT, DEMO_SENSITIVE};
use keyhold_domain::erasure::ErasureLedger;
use keyhold_domain::keystore::load_keys;
use keyhold_domain::{DomainError, Keyhold, PatientId};
use keyhold_storage::Store;

use keyhold_domain::trees::AUDIT;

use crate::helpers::{fast, Env};

/// Every stored row (raw key, value) that names `patient`, outside the audit
/// trail (which keeps its ids by design).
fn rows_naming(store: &dyn Store, patient: PatientId) -> Vec<String> {
    let id = patient.as_bytes();
    let mut found = Vec::new();
    store
        .export(&mut |k, v| {
            let tree = k.split(|b| *b == 0).next().unwrap_or_default();
            let audit_tree = tree == b"audit" || tree == b"audit_by_patient";
            let names = k.windows(16).any(|w| w == id) || v.windows(16).any(|w| w == id);
            let text = patient.to_string();
            let names_as_text = String::from_utf8_lossy(v).contains(&text);
            if !audit_tree && (names || names_as_text) {
                found.push(String::from_utf8_lossy(tree).into_owned());
            }
            Ok(())
        })
        .unwrap();
    found
}

async fn demo_patient(env: &Env) -> PatientId {
    let s = env
        .core
        .sign_in(DEMO_PATIENT, DEMO_PASSWORD, None)
        .await
        .unwrap();
    s.principal
        .own_patient
        .expect("the demo patient has a record")
}

#[tokio::test]
async fn erasure_removes_the_record_and_its_sign_in_but_keeps_the_audit_trail() {
    let env = Env::new();
    env.core.seed_demo().await.unwrap();
    let patient = demo_patient(&env).await;
    let carer = env
        .core
        .sign_in(DEMO_CARER, DEMO_PASSWORD, None)
        .await
        .unwrap();
    assert!(env.core.record(&carer.principal, patient).await.is_ok());
    assert!(!rows_naming(env.store().as_ref(), patient).is_empty());

    let ledger = ErasureLedger::in_keys(&env.dir.path().join("keys"));
    let report = env
        .core
        .erase_patient(patient, &ledger, AuditActor::operator())
        .await
        .unwrap();
    assert!(report.rows > 10, "{report:?}");
    assert_eq!(report.accounts_deleted, 1, "{report:?}");

    assert_eq!(
        rows_naming(env.store().as_ref(), patient),
        Vec::<String>::new()
    );
    assert!(env
        .core
        .sign_in(DEMO_PATIENT, DEMO_PASSWORD, None)
        .await
        .is_err());
    let carer = env
        .core
        .sign_in(DEMO_CARER, DEMO_PASSWORD, None)
        .await
        .unwrap();
    assert!(env.core.record(&carer.principal, patient).await.is_err());
    // Others are untouched.
    let other = env
        .core
        .sign_in(DEMO_SENSITIVE, DEMO_PASSWORD, None)
        .await
        .unwrap();
    let own = other.principal.own_patient.unwrap();
    assert!(env.core.record(&other.principal, own).await.is_ok());

    // The trail stays whole and says what happened.
    let erasures: Vec<_> = env
        .store()
        .scan(AUDIT, b"")
        .map(|r| audit::decode(&r.unwrap().1).unwrap())
        .filter(|e| e.event.action == AuditAction::Erase)
        .collect();
    assert_eq!(erasures.len(), 1);
    assert_eq!(erasures[0].event.patient, Some(patient));
    assert!(audit::verify(env.store().as_ref()).unwrap().is_ok());

    assert_eq!(ledger.read().unwrap(), vec![patient]);
    let mode = std::fs::metadata(ledger.path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "the ledger is private: {mode:o}");
    assert!(matches!(
        env.core
            .erase_patient(patient, &ledger, AuditActor::operator())
            .await,
        Err(DomainError::NotFound)
    ));
}

#[tokio::test]
async fn a_restore_from_before_an_erasure_is_erased_again_at_open() {
    let env = Env::new();
    env.core.seed_demo().await.unwrap();
    let patient = demo_patient(&env).await;
    let mut snapshot = Vec::new();
    write_snapshot(env.store().as_ref(), env.core.now(), &mut snapshot).unwrap();

    let keys = env.dir.path().join("keys");
    let ledger = ErasureLedger::in_keys(&keys);
    env.core
        .erase_patient(patient, &ledger, AuditActor::operator())
        .await
        .unwrap();

    let restored = env.dir.path().join("restored");
    restore_snapshot(&snapshot[..], &restored).unwrap();
    let core = Keyhold::open(
        &restored,
        load_keys(&keys).unwrap(),
        fast(),
        env.clock.clone(),
    )
    .unwrap();
    assert!(
        !rows_naming(core.store().as_ref(), patient).is_empty(),
        "the old snapshot has them"
    );
    assert!(core
        .sign_in(DEMO_PATIENT, DEMO_PASSWORD, None)
        .await
        .is_ok());

    assert_eq!(
        core.apply_erasure_ledger(&ledger).await.unwrap(),
        vec![patient]
    );
    assert_eq!(
        rows_naming(core.store().as_ref(), patient),
        Vec::<String>::new()
    );
    assert!(core
        .sign_in(DEMO_PATIENT, DEMO_PASSWORD, None)
        .await
        .is_err());
    assert!(audit::verify(core.store().as_ref()).unwrap().is_ok());
    // Once done, it is not done again.
    assert!(core.apply_erasure_ledger(&ledger).await.unwrap().is_empty());
}

#[test]
fn a_damaged_ledger_is_refused_not_half_applied() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = ErasureLedger::in_keys(dir.path());
    assert!(
        ledger.read().unwrap().is_empty(),
        "no file: nothing erased yet"
    );
    ledger
        .record(PatientId::new_random(), time::OffsetDateTime::UNIX_EPOCH)
        .unwrap();
    std::fs::write(
        ledger.path(),
        format!(
            "{}\nnot-an-id 2026-01-01T00:00:00Z\n",
            std::fs::read_to_string(ledger.path()).unwrap().trim()
        ),
    )
    .unwrap();
    assert!(ledger.read().is_err());
}
