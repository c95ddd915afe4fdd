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
