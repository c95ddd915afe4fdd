//! DESIGN.md, "Encryption": rotation re-wraps every data key under a new master
//! key, so the old one can be deleted and every record still opens; and a keys
//! folder whose master key does not belong to the data folder is refused.

use std::ffi::OsStr;

use keyhold_domain::PatientId;

use crate::common::{
    assert_healthy, field, init_keys, open_core, run_ok, runtime, seed_demo, serve, serve_refused,
};

const PASSWORD: &str = "rotation test password 2026";

#[test]
fn rotation_keeps_records_readable_without_the_old_key() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path().join("keys");
    let data = tmp.path().join("data");
    init_keys(&keys);
    let identities = seed_demo(&data, &keys, 5, &tmp.path().join("identities.json"));
    assert_eq!(identities.len(), 5);

    let server = serve(&data, &keys, &[]);
    assert_healthy(&server, "before rotation");
    server.stop();

    let rotated = run_ok([
        OsStr::new("keys"),
        OsStr::new("rotate"),
        OsStr::new("--keys"),
        keys.as_os_str(),
        OsStr::new("--data"),
        data.as_os_str(),
    ]);
    assert!(
        keys.join("master-2.key").is_file(),
        "rotation should create master-2.key:\n{}",
        rotated.describe()
    );
    let rewrapped: usize = rotated
        .stdout
        .split_once("re-wrapped ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "rotation should say how many data keys it re-wrapped:\n{}",
                rotated.describe()
            )
        });
    assert!(
        rewrapped >= 5,
        "rotation re-wrapped {rewrapped} data keys, but there are 5 patients"
    );

    std::fs::remove_file(keys.join("master-1.key")).unwrap();

    let server = serve(&data, &keys, &[]);
    assert_healthy(&server, "after rotation, with master-1.key deleted");
    server.stop();

    // End to end through the domain: every patient's record (each under its own
    // data key) still opens with only the new master key.
    let core = open_core(&data, &keys);
    let rt = runtime();
    for (i, p) in identities.iter().enumerate() {
        let patient: PatientId = field(p, "patient_id").parse().unwrap();
        let email = field(p, "email");
        let view = rt.block_on(async {
            core.create_account_for("Test Person", email, PASSWORD, Some(patient))
                .await
                .unwrap_or_else(|e| panic!("patient #{i}: creating an account: {e}"));
            let signed = core
                .sign_in(email, PASSWORD, None)
                .await
                .unwrap_or_else(|e| panic!("patient #{i}: signing in: {e}"));
            core.record(&signed.principal, patient)
                .await
                .unwrap_or_else(|e| panic!("patient #{i}: reading the record after rotation: {e}"))
        });
        assert_eq!(
            view.demographics.family_name,
            field(p, "family_name"),
            "patient #{i}: demographics after rotation"
        );
        let note = field(p, "note_phrase");
        assert!(
            view.entries.iter().any(|e| e.details == note),
            "patient #{i}: the seeded note is not among the {} entries read after rotation",
            view.entries.len()
        );
    }
    drop(core);
    drop(rt);

    // Negative: a keys folder with the right index and audit keys but an
    // unrelated master key (from another `init`) must be refused.
    let other = tmp.path().join("unrelated-init");
    init_keys(&other);
    let wrong = tmp.path().join("foreign-kek");
    std::fs::create_dir(&wrong).unwrap();
    for f in ["index.key", "audit-signing.key", "audit-signing.pub"] {
        std::fs::copy(keys.join(f), wrong.join(f)).unwrap();
    }
    std::fs::copy(other.join("master-1.key"), wrong.join("master-1.key")).unwrap();
    let refused = serve_refused(&data, &wrong);
    assert!(
        refused.stderr.contains("master key"),
        "the refusal should say the master keys do not fit this data folder:\n{}",
        refused.describe()
    );
}
