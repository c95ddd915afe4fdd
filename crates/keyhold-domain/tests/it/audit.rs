//! Every read and write of patient data appends exactly one audit entry
//! naming the action, the patient and the actor; a refused read is audited
//! too and looks like "not found"; the chain verifies and survives a restart.

use std::future::Future;

use keyhold_domain::audit::{AuditAction, Outcome};
use keyhold_domain::policy::Principal;
use keyhold_domain::{DomainError, PatientId};

use crate::helpers::{
    assert_chain, audit_count, fast, last_audit, new_document, new_entry, open, pdf, Env,
};

/// What one call must append to the audit trail.
struct Expect<'a> {
    action: AuditAction,
    outcome: Outcome,
    patient: PatientId,
    by: &'a Principal,
    /// The resource, when the caller knows it in advance.
    resource: Option<String>,
}

/// Runs `call` and checks it appended exactly one entry, the expected one.
async fn check<T>(
    env: &Env,
    what: &str,
    expect: Expect<'_>,
    call: impl Future<Output = Result<T, DomainError>>,
) -> Result<T, DomainError> {
    let before = audit_count(env.store());
    let result = call.await;
    assert_eq!(
        audit_count(env.store()),
        before + 1,
        "{what}: audit entries appended"
    );
    let e = last_audit(env.store()).event;
    assert_eq!(e.action, expect.action, "{what}: action");
    assert_eq!(e.outcome, expect.outcome, "{what}: outcome");
    assert_eq!(e.patient, Some(expect.patient), "{what}: patient");
    assert_eq!(e.actor.account, Some(expect.by.account), "{what}: actor");
    if let Some(r) = expect.resource {
        assert_eq!(e.resource, r, "{what}: resource");
    }
    result
}

fn ok<'a>(
    action: AuditAction,
    patient: PatientId,
    by: &'a Principal,
    resource: Option<String>,
) -> Expect<'a> {
    Expect {
        action,
        outcome: Outcome::Success,
        patient,
        by,
        resource,
    }
}

fn denied(action: AuditAction, patient: PatientId, by: &Principal) -> Expect<'_> {
    Expect {
        action,
        outcome: Outcome::Denied,
        patient,
        by,
        resource: None,
    }
}

#[tokio::test]
async fn every_read_and_write_appends_one_audit_entry() {
    use AuditAction::{Create, Export, Read};
    let env = Env::new();
    let (p, a, _) = env.patient("ann@example.test").await;
    let core = &env.core;

    let e = check(
        &env,
        "add_entry",
        ok(Create, a, &p, None),
        core.add_entry(&p, a, new_entry("Asthma")),
    )
    .await
    .unwrap();
    assert_eq!(last_audit(env.store()).event.resource, format!("entry/{e}"));
    let view = check(
        &env,
        "record",
        ok(Read, a, &p, Some("record".into())),
        core.record(&p, a),
    )
    .await
    .unwrap();
    assert_eq!(view.entries.len(), 1);
    let entry = check(
        &env,
        "entry",
        ok(Read, a, &p, Some(format!("entry/{e}"))),
        core.entry(&p, a, e),
    )
    .await
    .unwrap();
    assert_eq!(entry.title, "Asthma");
    let demo = ok(Read, a, &p, Some("demographics".into()));
    check(&env, "demographics", demo, core.demographics(&p, a))
        .await
        .unwrap();

    let add = core.add_document(&p, a, new_document("letter", pdf(1_000)));
    let d = check(&env, "add_document", ok(Create, a, &p, None), add)
        .await
        .unwrap();
    assert_eq!(
        last_audit(env.store()).event.resource,
        format!("document/{d}")
    );
    let docs = check(
        &env,
        "documents",
        ok(Read, a, &p, Some("documents".into())),
        core.documents(&p, a),
    )
    .await
    .unwrap();
    assert_eq!(docs.len(), 1);
    let open_one = ok(Export, a, &p, Some(format!("document/{d}")));
    let reader = check(
        &env,
        "open_document",
        open_one,
        core.open_document(&p, a, d),
    )
    .await
    .unwrap();
    assert_eq!(reader.read_all().unwrap(), pdf(1_000));
    let open_all = ok(Export, a, &p, Some("documents.zip".into()));
    let all = check(
        &env,
        "open_all_documents",
        open_all,
        core.open_all_documents(&p, a),
    )
    .await
    .unwrap();
    assert_eq!(all.len(), 1);

    // sign-up and confirming the address, then the eight calls above.
    assert_chain(env.store(), 10);
}

#[tokio::test]
async fn a_refused_read_looks_like_not_found_and_is_audited() {
    use AuditAction::{Create, Export, Read};
    let env = Env::new();
    let (pa, _, _) = env.patient("ann@example.test").await;
    let (pb, b, _) = env.patient("bob@example.test").await;
    let core = &env.core;
    let eb = core
        .add_entry(&pb, b, new_entry("Hay fever"))
        .await
        .unwrap();
    let db = core
        .add_document(&pb, b, new_document("scan", pdf(500)))
        .await
        .unwrap();

    fn not_found<T>(what: &str, r: Result<T, DomainError>) {
        match r {
            Err(DomainError::NotFound) => {}
            Err(e) => panic!("{what}: refused with {e:?}, not as not-found"),
            Ok(_) => panic!("{what}: A was let into B's record"),
        }
    }
    // A, signed in, aims each call at B's record and B's real ids.
    not_found(
        "record",
        check(&env, "record", denied(Read, b, &pa), core.record(&pa, b)).await,
    );
    not_found(
        "entry",
        check(&env, "entry", denied(Read, b, &pa), core.entry(&pa, b, eb)).await,
    );
    let demographics = core.demographics(&pa, b);
    not_found(
        "demographics",
        check(&env, "demographics", denied(Read, b, &pa), demographics).await,
    );
    not_found(
        "documents",
        check(
            &env,
            "documents",
            denied(Read, b, &pa),
            core.documents(&pa, b),
        )
        .await,
    );
    let open_one = core.open_document(&pa, b, db);
    not_found(
        "open_document",
        check(&env, "open_document", denied(Export, b, &pa), open_one).await,
    );
    let open_all = core.open_all_documents(&pa, b);
    not_found(
        "open_all",
        check(&env, "open_all", denied(Export, b, &pa), open_all).await,
    );
    let add = core.add_entry(&pa, b, new_entry("Planted"));
    not_found(
        "add_entry",
        check(&env, "add_entry", denied(Create, b, &pa), add).await,
    );
    let add = core.add_document(&pa, b, new_document("planted", pdf(300)));
    not_found(
        "add_document",
        check(&env, "add_document", denied(Create, b, &pa), add).await,
    );

    // Nothing was planted in B's record.
    assert_eq!(core.record(&pb, b).await.unwrap().entries.len(), 1);
    assert_eq!(core.documents(&pb, b).await.unwrap().len(), 1);
    // 2 sign-ups and their confirmations, 2 additions, 8 refusals, 2 reads.
    assert_chain(env.store(), 16);
}

#[tokio::test]
async fn the_audit_trail_survives_a_restart_and_verifies() {
    let env = Env::new();
    let (p, a, _) = env.patient("ann@example.test").await;
    let e = env
        .core
        .add_entry(&p, a, new_entry("Asthma"))
        .await
        .unwrap();
    env.core.entry(&p, a, e).await.unwrap();
    env.core.record(&p, a).await.unwrap();
    let n = audit_count(env.store());
    // sign-up, confirmation, addition, entry read, record read.
    assert_eq!(n, 5);
    let last = last_audit(env.store());
    assert_chain(env.store(), n);

    let root = env.dir.path().to_path_buf();
    let Env { dir, clock, core } = env;
    drop(core);
    let core = open(&root, &root.join("keys"), fast(), &clock).unwrap();
    assert_eq!(audit_count(core.store()), n, "entries after a restart");
    assert_eq!(last_audit(core.store()), last);
    assert_chain(core.store(), n);

    // Appending continues the same chain.
    core.record(&p, a).await.unwrap();
    assert_chain(core.store(), n + 1);
    assert_eq!(last_audit(core.store()).prev, last.hash);
    drop(dir);
}
