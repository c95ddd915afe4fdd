//! DESIGN.md, "Encryption" and the fixed interface: `keyhold backup` takes a
//! consistent, encrypted snapshot while the server runs; `keyhold restore`
//! brings it back; an erasure outlives a restore of an older backup; and a
//! rotation run while the server serves, after an erasure, leaves no key to
//! the erased record anywhere in the raw files.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use keyhold_crypto::{decrypt_with_identity, MasterKey};
use keyhold_domain::trees::{DEKS, PATIENTS};
use keyhold_domain::PatientId;
use memchr::memmem;

use crate::common::{
    assert_healthy, field, files_under, init_keys, open_core, run, run_ok, runtime, seed_demo,
    serve, signed_in, Server,
};

const PASSWORD: &str = "backup test password 2026";

/// The identity fields searched for in raw bytes (see `plaintext` for why
/// these are long enough not to match ciphertext by chance).
const FIELDS: &[&str] = &[
    "full_name",
    "nhs_number",
    "nhs_number_formatted",
    "email",
    "address_line",
    "phone",
    "note_phrase",
];

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// An age identity for the operator's backups, kept outside data and keys.
pub(crate) fn backup_identity(dir: &Path) -> (PathBuf, String) {
    let key = MasterKey::generate();
    let path = dir.join("backup-identity.txt");
    std::fs::write(&path, key.to_secret_string().as_bytes()).unwrap();
    (path, key.recipient())
}

fn backup(data: &Path, keys: &Path, to: &Path, recipient: &str) -> crate::common::Run {
    run([
        os("backup"),
        os("--data"),
        data.as_os_str(),
        os("--keys"),
        keys.as_os_str(),
        os("--to"),
        to.as_os_str(),
        os("--recipient"),
        os(recipient),
    ])
}

fn restore(from: &Path, identity: &Path, data: &Path, keys: Option<&Path>) -> crate::common::Run {
    let mut args = vec![
        os("restore"),
        os("--from"),
        from.as_os_str(),
        os("--identity"),
        identity.as_os_str(),
        os("--data"),
        data.as_os_str(),
    ];
    if let Some(k) = keys {
        args.extend([os("--keys"), k.as_os_str()]);
    }
    run(args)
}

fn verify_audit(data: &Path, keys: &Path) {
    run_ok([
        os("audit"),
        os("verify"),
        os("--data"),
        data.as_os_str(),
        os("--keys"),
        keys.as_os_str(),
    ]);
}

/// Gives seeded patient `who` an account (in-process; no server may run).
fn give_account(data: &Path, keys: &Path, who: &serde_json::Value) {
    let core = open_core(data, keys);
    let patient: PatientId = field(who, "patient_id").parse().unwrap();
    runtime()
        .block_on(core.create_account_for(
            "Test Person",
            field(who, "email"),
            PASSWORD,
            Some(patient),
        ))
        .unwrap();
}

/// Every seeded patient listed opens with `keys`: demographics and the note.
fn assert_records_open(data: &Path, keys: &Path, who: &[&serde_json::Value]) {
    let core = open_core(data, keys);
    let rt = runtime();
    for p in who {
        let patient: PatientId = field(p, "patient_id").parse().unwrap();
        let email = field(p, "email");
        let view = rt.block_on(async {
            if core.sign_in(email, PASSWORD, None).await.is_err() {
                core.create_account_for("Test Person", email, PASSWORD, Some(patient))
                    .await
                    .unwrap();
            }
            let signed = core.sign_in(email, PASSWORD, None).await.unwrap();
            core.record(&signed.principal, patient).await.unwrap()
        });
        assert_eq!(view.demographics.family_name, field(p, "family_name"));
        assert!(view
            .entries
            .iter()
            .any(|e| e.details == field(p, "note_phrase")));
    }
}

/// Keeps the server busy with audited writes (a sign-in, then record reads,
/// each read durably audited) until stopped; returns the requests made and
/// fails on any error, so a command that disturbs serving is caught.
struct Load {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
}

impl Load {
    fn start(server: &Server, email: &str) -> Load {
        let base = server.base_url();
        let email = email.to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicUsize::new(0));
        let (s, d) = (stop.clone(), done.clone());
        let thread = std::thread::spawn(move || {
            runtime().block_on(async move {
                while !s.load(Ordering::Relaxed) {
                    let client = signed_in(&base, &email, PASSWORD).await?;
                    for _ in 0..5 {
                        let r = client
                            .get(format!("{base}/record"))
                            .send()
                            .await
                            .map_err(|e| e.to_string())?;
                        if r.status() != reqwest::StatusCode::OK {
                            return Err(format!("GET /record: {}", r.status()));
                        }
                        d.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(())
            })
        });
        Load {
            stop,
            done,
            thread: Some(thread),
        }
    }

    /// Waits until at least `n` more requests were answered.
    fn wait_for(&self, n: usize) {
        let start = self.done.load(Ordering::Relaxed);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while self.done.load(Ordering::Relaxed) < start + n {
            assert!(
                std::time::Instant::now() < deadline,
                "the load made no progress"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn finish(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        let result = self.thread.take().unwrap().join().unwrap();
        if let Err(e) = result {
            panic!("a request failed while the command ran: {e}");
        }
        self.done.load(Ordering::Relaxed)
    }
}

/// The data key of `patient`, unwrapped with the master key file `master`
/// (read through the storage layer: no server may hold the folder).
fn data_key(data: &Path, master: &Path, patient: PatientId) -> Vec<u8> {
    let store = keyhold_domain::open_store(data).unwrap();
    let wrapped = store
        .get(DEKS, &dek_key(patient))
        .unwrap()
        .expect("the patient has a data key");
    let key = MasterKey::parse(&std::fs::read_to_string(master).unwrap()).unwrap();
    decrypt_with_identity(&key, &wrapped).unwrap().to_vec()
}

fn holds(data: &Path, tree: keyhold_storage::TreeName, key: &[u8]) -> bool {
    let store = keyhold_domain::open_store(data).unwrap();
    let found = store.get(tree, key).unwrap().is_some();
    drop(store);
    found
}

fn dek_key(patient: PatientId) -> Vec<u8> {
    let mut k = vec![b'p'];
    k.extend_from_slice(patient.as_bytes());
    k
}

#[test]
fn a_backup_taken_while_serving_restores_every_record() {
    let tmp = tempfile::tempdir().unwrap();
    let (keys, data) = (tmp.path().join("keys"), tmp.path().join("data"));
    init_keys(&keys);
    let ids = seed_demo(&data, &keys, 4, &tmp.path().join("identities.json"));
    give_account(&data, &keys, &ids[0]);
    let (identity, recipient) = backup_identity(tmp.path());

    let server = serve(&data, &keys, &[]);
    let load = Load::start(&server, field(&ids[0], "email"));
    load.wait_for(5);
    let file = tmp.path().join("backups").join("keyhold.age");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let taken = backup(&data, &keys, &file, &recipient);
    assert!(taken.success(), "{}", taken.describe());
    assert!(
        taken.stdout.contains("from the running server"),
        "{}",
        taken.describe()
    );
    load.wait_for(5);
    let requests = load.finish();
    assert!(requests >= 10);
    // A second backup to the same file is refused: backups are never overwritten.
    let again = backup(&data, &keys, &file, &recipient);
    assert!(
        !again.success() && again.stderr.contains("exists"),
        "{}",
        again.describe()
    );
    // A recipient that is not one is refused before anything is written.
    let bad = tmp.path().join("bad.age");
    assert!(!backup(&data, &keys, &bad, "age1notarecipient").success());
    assert!(!bad.exists());
    drop(server);

    // The file: age, private, and inside no plaintext and no unwrapped data key.
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o077,
        0
    );
    let sealed = std::fs::read(&file).unwrap();
    assert!(sealed.starts_with(b"age-encryption.org/v1\n"));
    let id = MasterKey::parse(&std::fs::read_to_string(&identity).unwrap()).unwrap();
    let mut inner = decrypt_with_identity(&id, &sealed).unwrap().to_vec();
    assert!(inner.starts_with(b"keyhold-backup/v1\n"));
    for (i, p) in ids.iter().enumerate() {
        let patient: PatientId = field(p, "patient_id").parse().unwrap();
        let dek = data_key(&data, &keys.join("master-1.key"), patient);
        assert!(
            memmem::find(&inner, &dek).is_none(),
            "patient #{i}'s unwrapped data key is in the backup"
        );
        assert!(
            memmem::find(&inner, patient.as_bytes()).is_some(),
            "control: the backup holds patient #{i}'s rows"
        );
    }
    inner.make_ascii_lowercase();
    for (i, p) in ids.iter().enumerate() {
        for f in FIELDS {
            let v = field(p, f).to_ascii_lowercase();
            assert!(
                memmem::find(&inner, v.as_bytes()).is_none(),
                "patient #{i}'s {f} is in the backup in plain text"
            );
        }
    }

    // The wrong identity opens nothing and leaves nothing behind.
    let (other, _) = backup_identity(&tmp.path().join("backups"));
    let wrong = tmp.path().join("wrong");
    let refused = restore(&file, &other, &wrong, None);
    assert!(!refused.success(), "{}", refused.describe());
    assert!(!wrong.join("store").exists());

    let restored = tmp.path().join("restored");
    let done = restore(&file, &identity, &restored, Some(&keys));
    assert!(done.success(), "{}", done.describe());
    assert!(
        done.stdout.contains("0 patient(s) erased"),
        "{}",
        done.describe()
    );
    // Never over an existing store.
    assert!(!restore(&file, &identity, &restored, None).success());
    verify_audit(&restored, &keys);
    let server = serve(&restored, &keys, &[]);
    assert_healthy(&server, "serving the restored store");
    drop(server);
    assert_records_open(&restored, &keys, &ids.iter().collect::<Vec<_>>());
}

#[test]
fn a_restore_from_before_an_erasure_does_not_bring_the_patient_back() {
    let tmp = tempfile::tempdir().unwrap();
    let (keys, data) = (tmp.path().join("keys"), tmp.path().join("data"));
    init_keys(&keys);
    let ids = seed_demo(&data, &keys, 3, &tmp.path().join("identities.json"));
    let erased: PatientId = field(&ids[0], "patient_id").parse().unwrap();
    let (identity, recipient) = backup_identity(tmp.path());

    let server = serve(&data, &keys, &[]);
    let file = tmp.path().join("before-erasure.age");
    assert!(backup(&data, &keys, &file, &recipient).success());
    let erase = run_ok([
        os("patient"),
        os("erase"),
        os("--data"),
        data.as_os_str(),
        os("--keys"),
        keys.as_os_str(),
        os("--nhs-number"),
        os(field(&ids[0], "nhs_number")),
    ]);
    assert!(
        erase.stdout.contains(&format!("erased record {erased}")),
        "{}",
        erase.describe()
    );
    assert_healthy(&server, "after the erasure");
    let log = server.stop();
    assert!(
        log.contains("control request"),
        "the request is logged:\n{log}"
    );
    for f in ["nhs_number", "nhs_number_formatted"] {
        assert!(
            !log.contains(field(&ids[0], f)),
            "the NHS number reached the log:\n{log}"
        );
    }
    assert!(!holds(&data, DEKS, &dek_key(erased)));

    // Restored without the keys folder, the old store still has the patient…
    let restored = tmp.path().join("restored");
    let done = restore(&file, &identity, &restored, None);
    assert!(done.success(), "{}", done.describe());
    assert!(holds(&restored, DEKS, &dek_key(erased)));
    assert!(holds(&restored, PATIENTS, erased.as_bytes()));
    // …until it is served: the ledger in the keys folder is applied first.
    let server = serve(&restored, &keys, &[]);
    assert_healthy(&server, "serving the restored store");
    drop(server);
    assert!(!holds(&restored, DEKS, &dek_key(erased)));
    assert!(!holds(&restored, PATIENTS, erased.as_bytes()));
    verify_audit(&restored, &keys);
    assert_records_open(&restored, &keys, &[&ids[1], &ids[2]]);
}

/// Every age file (binary format) found in `bytes`: header through the MAC
/// line, then the 64-byte payload of a 32-byte key (nonce, one chunk, tag).
fn age_blobs(bytes: &[u8]) -> Vec<&[u8]> {
    let magic = b"age-encryption.org/v1\n";
    let mut out = Vec::new();
    for start in memmem::find_iter(bytes, magic) {
        let rest = &bytes[start..];
        let Some(mac) = memmem::find(rest, b"\n--- ") else {
            continue;
        };
        let Some(eol) = rest[mac + 1..].iter().position(|b| *b == b'\n') else {
            continue;
        };
        let end = mac + 1 + eol + 1 + 64;
        if end <= rest.len() {
            out.push(&rest[..end]);
        }
    }
    out
}

#[test]
fn rotation_while_serving_after_an_erasure_leaves_no_key_to_the_erased_record() {
    let tmp = tempfile::tempdir().unwrap();
    let (keys, data) = (tmp.path().join("keys"), tmp.path().join("data"));
    init_keys(&keys);
    let ids = seed_demo(&data, &keys, 4, &tmp.path().join("identities.json"));
    let erased: PatientId = field(&ids[0], "patient_id").parse().unwrap();
    let dek = data_key(&data, &keys.join("master-1.key"), erased);
    give_account(&data, &keys, &ids[1]);

    let server = serve(&data, &keys, &[]);
    let load = Load::start(&server, field(&ids[1], "email"));
    load.wait_for(5);
    run_ok([
        os("patient"),
        os("erase"),
        os("--data"),
        data.as_os_str(),
        os("--keys"),
        keys.as_os_str(),
        os("--patient"),
        os(&erased.to_string()),
    ]);
    load.wait_for(5);
    let rotated = run_ok([
        os("keys"),
        os("rotate"),
        os("--keys"),
        keys.as_os_str(),
        os("--data"),
        data.as_os_str(),
    ]);
    assert!(
        rotated.stdout.contains("rotated by the running server"),
        "{}",
        rotated.describe()
    );
    load.wait_for(5);
    load.finish();
    drop(server);

    // The old master key goes (as the rotation's report advises once no
    // backup needs it); the service runs on the new one alone.
    std::fs::remove_file(keys.join("master-1.key")).unwrap();
    let server = serve(&data, &keys, &[]);
    assert_healthy(&server, "on the new master key alone");
    drop(server);
    verify_audit(&data, &keys);
    assert_records_open(&data, &keys, &[&ids[1], &ids[2], &ids[3]]);

    // Raw files: none of the erased patient's values, not their data key, and
    // no wrapped key that the remaining master key opens to it.
    let new_key =
        MasterKey::parse(&std::fs::read_to_string(keys.join("master-2.key")).unwrap()).unwrap();
    let (mut blobs, mut opened) = (0, 0);
    for file in files_under(&data) {
        let mut bytes = std::fs::read(&file).unwrap();
        assert!(
            memmem::find(&bytes, &dek).is_none(),
            "the erased patient's data key is in {}",
            file.display()
        );
        for blob in age_blobs(&bytes) {
            blobs += 1;
            if let Ok(key) = decrypt_with_identity(&new_key, blob) {
                opened += 1;
                assert_ne!(
                    &key[..],
                    &dek[..],
                    "a wrapped copy of the erased key opens, in {}",
                    file.display()
                );
            }
        }
        bytes.make_ascii_lowercase();
        for f in FIELDS {
            let v = field(&ids[0], f).to_ascii_lowercase();
            assert!(
                memmem::find(&bytes, v.as_bytes()).is_none(),
                "{f} in {}",
                file.display()
            );
        }
    }
    // Control: the scan really finds and opens the other wrapped keys.
    assert!(
        opened >= 3,
        "only {opened} of {blobs} wrapped keys opened with the new master key"
    );
}

/// A data folder whose path is too long for a Unix socket still serves; the
/// log says the operator commands need the server stopped.
#[test]
fn a_data_path_too_long_for_the_control_socket_still_serves() {
    let tmp = tempfile::tempdir().unwrap();
    let deep = tmp.path().join("d".repeat(60)).join("e".repeat(60));
    let (keys, data) = (deep.join("keys"), deep.join("data"));
    init_keys(&keys);
    let server = serve(&data, &keys, &[]);
    assert_healthy(&server, "without a control socket");
    let log = server.stop();
    assert!(log.contains("no control socket"), "{log}");
}
