//! `keyhold org add`: an organisation and its first administrator, invited by
//! mail (the outbox here) with a single-use link; bad input refused with exit 2.

use std::ffi::OsStr;
use std::path::Path;

use crate::common::{init_keys, run, seed_demo};

fn org_add(data: &Path, keys: &Path, name: &str, email: &str) -> crate::common::Run {
    run([
        OsStr::new("org"),
        OsStr::new("add"),
        OsStr::new("--data"),
        data.as_os_str(),
        OsStr::new("--keys"),
        keys.as_os_str(),
        OsStr::new("--name"),
        OsStr::new(name),
        OsStr::new("--admin-email"),
        OsStr::new(email),
    ])
}

#[test]
fn org_add_invites_the_first_administrator_by_mail_and_refuses_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let (data, keys) = (dir.path().join("data"), dir.path().join("keys"));
    init_keys(&keys);
    seed_demo(&data, &keys, 1, &dir.path().join("ids.json"));

    let ok = org_add(&data, &keys, "Riverside Surgery", "ada@riverside.test");
    assert!(ok.success(), "{}", ok.describe());
    assert!(
        ok.stdout.contains("invited ada@riverside.test"),
        "{}",
        ok.describe()
    );
    // The token is mailed, never printed.
    assert!(!ok.stdout.contains("/invitations/"), "{}", ok.describe());
    let outbox: Vec<_> = std::fs::read_dir(data.join("outbox")).unwrap().collect();
    assert_eq!(outbox.len(), 1);
    let mail = std::fs::read_to_string(outbox[0].as_ref().unwrap().path()).unwrap();
    assert!(mail.contains("ada@riverside.test") && mail.contains("/invitations/"));

    let bad = org_add(&data, &keys, "  ", "not-an-address");
    assert_eq!(bad.status.code(), Some(2), "{}", bad.describe());
    assert!(
        bad.stderr.contains("name") && bad.stderr.contains("email"),
        "{}",
        bad.describe()
    );

    // No store there: refused rather than creating an empty one.
    let missing = org_add(&dir.path().join("nowhere"), &keys, "X", "x@example.test");
    assert!(!missing.success());
}
