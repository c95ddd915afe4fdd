//! DESIGN.md, "Audit": `keyhold audit verify` finds any changed, removed or
//! reordered entry (and exits non-zero).
//!
//! Not tested here, because the hash chain alone cannot detect them: truncating
//! the tail, and rewriting a suffix of the chain with freshly computed hashes.
//! Signed checkpoints catch those; see `checkpoints.rs`. Neither catches a
//! correctly chained forged entry appended after the latest checkpoint.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use keyhold_domain::trees::AUDIT;
use keyhold_domain::{open_store, DomainError, PatientId};
use keyhold_storage::{Batch, Store};

use crate::common::{copy_dir, field, init_keys, open_core, run, runtime, seed_demo, Run};

const PASSWORD: &str = "audit test password 2026";
/// `0x01 ‖ seq (u64 BE) ‖ prev (32) ‖ hash (32) ‖ body (JSON)`, see audit.rs.
const HEADER: usize = 1 + 8 + 32 + 32;

fn key(seq: u64) -> Vec<u8> {
    seq.to_be_bytes().to_vec()
}

fn verify(data: &Path, keys: &Path) -> Run {
    run([
        OsStr::new("audit"),
        OsStr::new("verify"),
        OsStr::new("--data"),
        data.as_os_str(),
        OsStr::new("--keys"),
        keys.as_os_str(),
    ])
}

/// Every audit entry, in key order.
fn entries(data: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let store = open_store(data).unwrap();
    let all = store.scan(AUDIT, b"").map(|r| r.unwrap()).collect();
    drop(store); // releases sled's lock on the folder
    all
}

/// A copy of `base` changed by `tamper` through the storage layer.
fn tampered(
    base: &Path,
    root: &Path,
    name: &str,
    tamper: impl FnOnce(&dyn Store, &mut Batch),
) -> PathBuf {
    let dir = root.join(name);
    copy_dir(base, &dir);
    let store = open_store(&dir).unwrap();
    let mut batch = Batch::new();
    tamper(store.as_ref(), &mut batch);
    assert!(!batch.is_empty(), "{name}: the tampering wrote nothing");
    store.submit(batch).wait().unwrap();
    drop(store);
    dir
}

fn assert_broken(r: &Run, case: &str) {
    assert_eq!(
        r.status.code(),
        Some(2),
        "{case}: `audit verify` should exit with code 2:\n{}",
        r.describe()
    );
    assert!(
        r.stderr.contains("BROKEN"),
        "{case}: `audit verify` should report BROKEN:\n{}",
        r.describe()
    );
    assert!(
        !r.stdout.contains("intact"),
        "{case}: `audit verify` also claimed the chain intact:\n{}",
        r.describe()
    );
}

#[test]
fn audit_verify_detects_tampering() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path().join("keys");
    let data = tmp.path().join("data");
    init_keys(&keys);
    // Three seeded patients: one audit entry each.
    let identities = seed_demo(&data, &keys, 3, &tmp.path().join("identities.json"));

    // A few more entries through the domain: account creation, a sign-in, a
    // failed sign-in and a record read.
    {
        let core = open_core(&data, &keys);
        let patient: PatientId = field(&identities[0], "patient_id").parse().unwrap();
        let email = field(&identities[0], "email");
        runtime().block_on(async {
            core.create_account_for("Test Person", email, PASSWORD, Some(patient))
                .await
                .unwrap();
            let signed = core.sign_in(email, PASSWORD, None).await.unwrap();
            let wrong = core.sign_in(email, "not the password at all", None).await;
            assert!(
                matches!(wrong, Err(DomainError::BadCredentials)),
                "a wrong password signed in: {wrong:?}"
            );
            core.record(&signed.principal, patient).await.unwrap();
        });
    }

    let original = entries(&data);
    let n = original.len() as u64;
    assert!(n >= 5, "expected at least 5 audit entries, found {n}");
    for (i, (k, _)) in original.iter().enumerate() {
        assert_eq!(
            k,
            &key(i as u64),
            "audit keys should be 0, 1, 2, … as u64 big-endian"
        );
    }
    let entry = |seq: u64| original[seq as usize].1.clone();

    let intact = verify(&data, &keys);
    assert!(
        intact.success(),
        "`audit verify` on an untouched store:\n{}",
        intact.describe()
    );
    assert!(
        intact.stdout.contains("intact") && intact.stdout.contains(&format!("{n} entries")),
        "`audit verify` should report an intact chain of {n} entries:\n{}",
        intact.describe()
    );

    // Control: a copy made the same way but left alone still verifies, so the
    // failures below come from the tampering, not from the copying.
    let root = tmp.path().join("copies");
    let untouched = root.join("untouched");
    copy_dir(&data, &untouched);
    let r = verify(&untouched, &keys);
    assert!(
        r.success() && r.stdout.contains("intact"),
        "an untouched copy should verify:\n{}",
        r.describe()
    );

    // (a) One byte of entry 2's JSON body changed (the body stays valid JSON).
    let dir = tampered(&data, &root, "changed", |_, b| {
        let mut v = entry(2);
        let marker = b"\"purpose\":\"";
        let at = HEADER
            + memchr::memmem::find(&v[HEADER..], marker).expect("entry 2 has a purpose field")
            + marker.len();
        v[at] ^= 0x20; // flips the case of a letter
        assert!(
            serde_json::from_slice::<serde_json::Value>(&v[HEADER..]).is_ok(),
            "the changed body should still be JSON"
        );
        assert_ne!(v, entry(2));
        b.put(AUDIT, key(2), v);
    });
    assert_broken(&verify(&dir, &keys), "entry 2 changed by one byte");

    // (b) Entry 2 removed.
    let dir = tampered(&data, &root, "removed", |s, b| {
        assert!(s.get(AUDIT, &key(2)).unwrap().is_some());
        b.delete(AUDIT, key(2));
    });
    assert_broken(&verify(&dir, &keys), "entry 2 removed");

    // (c) Entries 1 and 2 swapped.
    let dir = tampered(&data, &root, "swapped", |_, b| {
        b.put(AUDIT, key(1), entry(2));
        b.put(AUDIT, key(2), entry(1));
    });
    assert_broken(&verify(&dir, &keys), "entries 1 and 2 swapped");

    // (d) A forged entry appended with the right sequence number but the wrong
    // `prev` (the last entry's own `prev`, not its hash).
    let dir = tampered(&data, &root, "forged", |_, b| {
        let mut v = entry(n - 1);
        v[1..9].copy_from_slice(&n.to_be_bytes());
        b.put(AUDIT, key(n), v);
    });
    assert_broken(
        &verify(&dir, &keys),
        "forged entry appended with a wrong prev",
    );

    // (e) A byte-for-byte copy of entry 1 inserted at the end.
    let dir = tampered(&data, &root, "duplicated", |_, b| {
        b.put(AUDIT, key(n), entry(1));
    });
    assert_broken(&verify(&dir, &keys), "copy of entry 1 inserted at the end");

    // (f) Entry 2's stored hash changed (header only, body untouched).
    let dir = tampered(&data, &root, "rehashed", |_, b| {
        let mut v = entry(2);
        v[41] ^= 0x01;
        b.put(AUDIT, key(2), v);
    });
    assert_broken(&verify(&dir, &keys), "entry 2's stored hash changed");
}
