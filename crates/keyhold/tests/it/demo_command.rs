//! `keyhold demo` writes plaintext identities, so it refuses to write them into
//! the data folder (where they would end up in backups of the store).

use std::ffi::OsStr;
use std::path::Path;

use crate::common::{init_keys, run, run_in, Run};

fn demo(data: &Path, keys: &Path, identities: &Path) -> Run {
    run([
        OsStr::new("demo"),
        OsStr::new("--data"),
        data.as_os_str(),
        OsStr::new("--keys"),
        keys.as_os_str(),
        OsStr::new("--patients"),
        OsStr::new("1"),
        OsStr::new("--identities"),
        identities.as_os_str(),
    ])
}

fn assert_refused(data: &Path, keys: &Path, identities: &Path, case: &str) {
    let r = demo(data, keys, identities);
    assert!(
        !r.success(),
        "{case}: demo should refuse --identities inside --data:\n{}",
        r.describe()
    );
    assert!(
        r.stderr.contains("outside the data folder"),
        "{case}: the refusal should say why:\n{}",
        r.describe()
    );
    assert!(
        !identities.exists(),
        "{case}: the identities file was written anyway: {}",
        identities.display()
    );
}

#[test]
fn demo_refuses_identities_inside_the_data_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path().join("keys");
    let data = tmp.path().join("data");
    init_keys(&keys);

    // Before the data folder exists, and with it in place and populated.
    assert_refused(
        &data,
        &keys,
        &data.join("identities.json"),
        "data folder not yet created",
    );
    let outside = tmp.path().join("identities.json");
    let ok = demo(&data, &keys, &outside);
    assert!(
        ok.success() && outside.is_file(),
        "control: identities outside the folder:\n{}",
        ok.describe()
    );
    assert_refused(
        &data,
        &keys,
        &data.join("identities.json"),
        "directly inside",
    );
    std::fs::create_dir_all(data.join("sub")).unwrap();
    assert_refused(
        &data,
        &keys,
        &data.join("sub").join("identities.json"),
        "in a subfolder",
    );
    // The same folder named relative to the working directory.
    let r = run_in(
        Some(tmp.path()),
        [
            "demo",
            "--data",
            "data",
            "--keys",
            "keys",
            "--patients",
            "1",
            "--identities",
            "data/identities.json",
        ],
    );
    assert!(
        !r.success(),
        "relative paths: demo should refuse:\n{}",
        r.describe()
    );
    assert!(
        !data.join("identities.json").exists(),
        "relative paths: the identities file was written anyway"
    );
}

/// The check compares canonical paths: neither `..` nor a symlink to the data
/// folder can slip the plaintext identities file into it.
#[test]
fn demo_refuses_identities_inside_the_data_folder_by_another_path() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path().join("keys");
    let data = tmp.path().join("data");
    init_keys(&keys);
    std::fs::create_dir_all(&data).unwrap();
    let other = tmp.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    assert_refused(
        &data,
        &keys,
        &other.join("..").join("data").join("identities.json"),
        "a path through `..`",
    );
    let link = tmp.path().join("link-to-data");
    std::os::unix::fs::symlink(&data, &link).unwrap();
    assert_refused(
        &data,
        &keys,
        &link.join("identities.json"),
        "a symlink to the data folder",
    );
}
