//! The service refuses to start with a master key that does not belong to
//! the data folder, rather than start and fail on every read.

use std::fs;
use std::sync::Arc;

use keyhold_domain::clock::Clock;
use keyhold_domain::keystore::{init_keys, load_keys, AUDIT_FILE, INDEX_FILE};
use keyhold_domain::{DomainError, Keyhold};

use crate::helpers::{fast, new_entry, open, Env};

#[tokio::test]
async fn a_master_key_from_another_keys_folder_is_refused_at_open() {
    let env = Env::new();
    let (p, patient, _) = env.patient("ann@example.test").await;
    env.core
        .add_entry(&p, patient, new_entry("Peanut allergy"))
        .await
        .unwrap();
    let root = env.dir.path().to_path_buf();
    let Env { dir, clock, core } = env;
    drop(core);

    // A keys folder with another master key, but this folder's index and
    // audit-signing keys.
    let other = root.join("other-keys");
    init_keys(&other).unwrap();
    let mixed = root.join("mixed-keys");
    fs::create_dir(&mixed).unwrap();
    fs::copy(other.join("master-1.key"), mixed.join("master-1.key")).unwrap();
    for f in [INDEX_FILE, AUDIT_FILE] {
        fs::copy(root.join("keys").join(f), mixed.join(f)).unwrap();
    }

    // The folder itself loads: the refusal must come from the store check.
    let loaded = load_keys(&mixed).unwrap_or_else(|e| panic!("the mixed keys folder loads: {e}"));
    let as_clock: Arc<dyn Clock> = clock.clone();
    match Keyhold::open(&root.join("data"), loaded, fast(), as_clock) {
        Err(DomainError::Keys(_)) => {}
        Err(e) => panic!("refused, but with the wrong error: {e:?}"),
        Ok(_) => panic!("opened a data folder with a master key that does not belong to it"),
    }

    // Control: the right keys still open it, and the record reads.
    let core = open(&root, &root.join("keys"), fast(), &clock).unwrap();
    let view = core.record(&p, patient).await.unwrap();
    assert_eq!(view.entries.len(), 1);
    drop(dir);
}

/// A rotation while the service creates data keys: every key, made before,
/// during or after, ends up wrapped under the new master key, so the old one
/// can go. (Were the new keyring made current only after the re-wrap, a key
/// created in between would stay under the old master key and be lost with it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_while_keys_are_being_made_leaves_none_under_the_old_key() {
    use keyhold_domain::keystore::add_master_key;
    use keyhold_domain::trees::DEKS;
    let env = Env::new();
    let keys = env.dir.path().join("keys");
    // A bounded number of keys, made while the rotations run: every scan of a
    // rotation is then short, and the makers keep racing it.
    const EACH: usize = 40;
    let makers: Vec<_> = (0..3)
        .map(|m| {
            let core = env.core.clone();
            tokio::spawn(async move {
                for n in 0..EACH {
                    let email = format!("p{m}-{n}@rotation.test");
                    core.create_account_for("Test Person", &email, "a long enough password", None)
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    let mut rotations = 0;
    while !makers.iter().all(|m| m.is_finished()) && rotations < 50 {
        add_master_key(&keys).unwrap();
        let ring = load_keys(&keys).unwrap().keyring;
        let core = env.core.clone();
        tokio::task::spawn_blocking(move || core.rewrap_data_keys(ring))
            .await
            .unwrap()
            .unwrap();
        rotations += 1;
    }
    for m in makers {
        m.await.unwrap();
    }
    let made = 3 * EACH;
    assert!(
        rotations >= 2,
        "only {rotations} rotations overlapped the makers"
    );
    let newest = load_keys(&keys).unwrap().keyring.newest_only();
    let mut checked = 0;
    for row in env.store().scan(DEKS, b"") {
        let (_, wrapped) = row.unwrap();
        assert!(
            newest.unwrap(&wrapped).is_ok(),
            "a data key is not under the newest master key"
        );
        checked += 1;
    }
    assert!(checked > made, "{checked} keys for {made} accounts");
}
