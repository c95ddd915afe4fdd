//! `keyhold identity verify` records an operator's identity check and links
//! the account to the NHS number's record; `keyhold oidc jwks` prints the
//! client key's public half for registering with NHS login.

use std::ffi::OsStr;
use std::path::Path;

use crate::common::{field, init_keys, open_core, read_identities, run, runtime, seed_demo};

fn verify(data: &Path, keys: &Path, args: &[&str]) -> crate::common::Run {
    let mut all = vec![
        OsStr::new("identity"),
        OsStr::new("verify"),
        OsStr::new("--data"),
        data.as_os_str(),
        OsStr::new("--keys"),
        keys.as_os_str(),
    ];
    all.extend(args.iter().map(OsStr::new));
    run(all)
}

#[test]
fn identity_verify_links_an_account_to_the_checked_record() {
    let dir = tempfile::tempdir().unwrap();
    let (data, keys) = (dir.path().join("data"), dir.path().join("keys"));
    init_keys(&keys);
    let ids = dir.path().join("ids.json");
    seed_demo(&data, &keys, 1, &ids);
    let seeded = &read_identities(&ids)[0];
    let nhs = field(seeded, "nhs_number").to_string();
    let patient = field(seeded, "patient_id").to_string();
    {
        let core = open_core(&data, &keys);
        runtime()
            .block_on(core.create_account_for(
                "Pat Example",
                "pat@example.test",
                "a long passphrase",
                None,
            ))
            .unwrap();
    }

    let ok = verify(
        &data,
        &keys,
        &[
            "--email",
            "pat@example.test",
            "--level",
            "P9",
            "--nhs-number",
            &nhs,
            "--note",
            "passport seen at reception",
        ],
    );
    assert!(ok.success(), "{}", ok.describe());
    assert!(
        ok.stdout.contains("identity recorded as P9"),
        "{}",
        ok.describe()
    );
    assert!(
        ok.stdout.contains(&format!("linked to record {patient}")),
        "{}",
        ok.describe()
    );

    for (bad, field) in [
        (vec!["--level", "P7"], "level"),
        (vec!["--level", "P9"], "nhs-number"),
        (
            vec!["--level", "P9", "--nhs-number", "1234567890"],
            "nhs-number",
        ),
    ] {
        let mut args = vec!["--email", "pat@example.test", "--note", "seen"];
        args.extend(bad);
        let refused = verify(&data, &keys, &args);
        assert_eq!(refused.status.code(), Some(2), "{}", refused.describe());
        assert!(refused.stderr.contains(field), "{}", refused.describe());
    }
    let unknown = verify(
        &data,
        &keys,
        &[
            "--email",
            "nobody@example.test",
            "--level",
            "P0",
            "--note",
            "seen",
        ],
    );
    assert_eq!(unknown.status.code(), Some(2), "{}", unknown.describe());
}

#[test]
fn oidc_jwks_prints_the_public_key_only() {
    let dir = tempfile::tempdir().unwrap();
    let key =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../keyhold-oidc/tests/test-client-key.pem");
    let out = run([
        OsStr::new("oidc"),
        OsStr::new("jwks"),
        OsStr::new("--keys"),
        dir.path().as_os_str(),
        OsStr::new("--key"),
        key.as_os_str(),
    ]);
    assert!(out.success(), "{}", out.describe());
    let jwks: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let k = &jwks["keys"][0];
    assert_eq!(k["kty"], "RSA");
    assert_eq!(k["alg"], "RS512");
    assert!(k["n"].as_str().unwrap().len() > 300);
    assert!(
        k.get("d").is_none() && k.get("p").is_none(),
        "no private part"
    );

    let missing = run([
        OsStr::new("oidc"),
        OsStr::new("jwks"),
        OsStr::new("--keys"),
        dir.path().as_os_str(),
    ]);
    assert!(!missing.success());
    assert!(
        missing.stderr.contains("oidc-client.pem"),
        "{}",
        missing.describe()
    );
}
