//! trees.rs: the server refuses a store written with a schema version it cannot read,
//! and marks an older one it can read as its own.

use std::path::Path;

use keyhold_domain::open_store;
use keyhold_domain::trees::{META, SCHEMA_VERSION};
use keyhold_storage::Batch;

use crate::common::{assert_healthy, init_keys, open_core, serve, serve_refused};

const KEY: &[u8] = b"schema_version";

fn schema_version(data: &Path) -> Option<Vec<u8>> {
    let store = open_store(data).unwrap();
    let v = store.get(META, KEY).unwrap();
    drop(store);
    v
}

fn set_schema_version(data: &Path, version: u32) {
    let store = open_store(data).unwrap();
    let mut b = Batch::new();
    b.put(META, KEY.to_vec(), version.to_be_bytes().to_vec());
    store.submit(b).wait().unwrap();
    drop(store);
}

#[test]
fn schema_version_mismatch_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path().join("keys");
    let data = tmp.path().join("data");
    init_keys(&keys);
    drop(open_core(&data, &keys)); // creates the store and records its version

    assert_eq!(
        schema_version(&data),
        Some(SCHEMA_VERSION.to_be_bytes().to_vec()),
        "a new store should record this build's schema version under meta/schema_version"
    );

    set_schema_version(&data, 999);
    let refused = serve_refused(&data, &keys);
    assert!(
        refused.stderr.contains("schema version") && refused.stderr.contains("999"),
        "the refusal should name the store's schema version (999):\n{}",
        refused.describe()
    );

    // Control: with the right version back, the same folder serves.
    set_schema_version(&data, SCHEMA_VERSION);
    let server = serve(&data, &keys, &[]);
    assert_healthy(&server, "with the schema version restored");
    server.stop();
}

/// A store of an older schema this build reads (1: entry rows as JSON) is
/// served, and marked as this build's schema so an older build refuses it.
#[test]
fn an_older_readable_schema_is_served_and_marked_current() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path().join("keys");
    let data = tmp.path().join("data");
    init_keys(&keys);
    drop(open_core(&data, &keys));
    set_schema_version(&data, 1);
    let server = serve(&data, &keys, &[]);
    assert_healthy(&server, "with schema 1");
    server.stop();
    assert_eq!(
        schema_version(&data),
        Some(SCHEMA_VERSION.to_be_bytes().to_vec())
    );
    assert_ne!(SCHEMA_VERSION, 1);
}
