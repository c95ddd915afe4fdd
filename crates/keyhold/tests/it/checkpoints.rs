//! DESIGN.md, "Audit": signed checkpoints seal the chain. With the
//! checkpoints file, `keyhold audit verify` finds every kind of tampering,
//! including the two the hash chain alone cannot see: a truncated tail, and a
//! tail cut and regrown with freshly chained entries. And `keyhold serve`
//! writes checkpoints by itself, by count and once more when it stops.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use keyhold_domain::audit::AuditEvent;
use keyhold_domain::checkpoint::{open_note, split_notes, Checkpoint};
use keyhold_domain::keystore::load_keys;
use keyhold_domain::open_store;
use keyhold_domain::trees::{AUDIT, CHECKPOINTS};
use keyhold_storage::{Batch, Store};

use crate::common::{
    copy_dir, init_keys, keyhold, open_core, run, runtime, seed_demo, signed_in, Run, LIMIT,
};

fn key(seq: u64) -> Vec<u8> {
    seq.to_be_bytes().to_vec()
}

fn verify(data: &Path, keys: &Path, file: Option<&Path>) -> Run {
    let mut args = vec![
        OsStr::new("audit"),
        OsStr::new("verify"),
        OsStr::new("--data"),
        data.as_os_str(),
        OsStr::new("--keys"),
        keys.as_os_str(),
    ];
    if let Some(f) = file {
        args.extend([OsStr::new("--checkpoints"), f.as_os_str()]);
    }
    run(args)
}

/// An audit event as JSON, so the test does not depend on how events are
/// built in Rust.
fn event(i: usize) -> AuditEvent {
    serde_json::from_value(serde_json::json!({
        "at": "2026-01-15T09:00:00Z",
        "actor": {"account": null, "role": "operator", "organisation": null, "acting_for": null},
        "action": "read",
        "patient": null,
        "resource": format!("checkpoint-test/{i}"),
        "purpose": "checkpoint test",
        "outcome": "success"
    }))
    .expect("a valid audit event")
}

/// Every audit entry, in key order.
fn entries(data: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let store = open_store(data).unwrap();
    let all = store.scan(AUDIT, b"").map(|r| r.unwrap()).collect();
    drop(store);
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

fn assert_broken(r: &Run, case: &str, names: &[&str]) {
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
    for n in names {
        assert!(
            r.stderr.contains(n),
            "{case}: the report should name {n:?}:\n{}",
            r.describe()
        );
    }
    assert!(
        !r.stdout.contains("intact"),
        "{case}: `audit verify` also claimed the chain intact:\n{}",
        r.describe()
    );
}

fn assert_intact(r: &Run, case: &str, entries: usize) {
    assert!(
        r.success()
            && r.stdout.contains("intact")
            && r.stdout.contains(&format!("{entries} entries")),
        "{case}: expected an intact chain of {entries} entries:\n{}",
        r.describe()
    );
}

#[test]
fn audit_verify_with_checkpoints_detects_every_tampering() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path().join("keys");
    let data = tmp.path().join("data");
    let file = tmp.path().join("audit-checkpoints.txt");
    init_keys(&keys);
    seed_demo(&data, &keys, 3, &tmp.path().join("identities.json"));

    // More entries, and two checkpoints, through the domain.
    {
        let core = open_core(&data, &keys);
        runtime().block_on(async {
            for i in 0..3 {
                core.audit_log().record(&event(i)).await.unwrap();
            }
            core.checkpoint_now(&file).await.unwrap();
            for i in 3..7 {
                core.audit_log().record(&event(i)).await.unwrap();
            }
            let o = core.checkpoint_now(&file).await.unwrap();
            assert!(o.appended_to_file && o.stored, "{o:?}");
        });
    }
    let original = entries(&data);
    let n = original.len() as u64;
    assert!(n >= 10, "expected at least 10 audit entries, found {n}");
    let entry = |seq: u64| original[seq as usize].1.clone();

    let intact = verify(&data, &keys, Some(&file));
    assert_intact(&intact, "untouched store", n as usize);
    assert!(
        intact.stdout.contains("4 signed checkpoints verified")
            && intact
                .stdout
                .contains(&format!("latest covers {n} entries, 0 added since")),
        "the summary should count the checkpoints and give the latest size:\n{}",
        intact.describe()
    );

    let root = tmp.path().join("copies");
    let r = verify(&copy_of(&data, &root, "untouched"), &keys, Some(&file));
    assert_intact(&r, "untouched copy", n as usize);

    // (a) One byte of entry 2's body changed.
    let dir = tampered(&data, &root, "changed", |_, b| {
        let mut v = entry(2);
        let at = v.len() - 3;
        v[at] ^= 0x20;
        b.put(AUDIT, key(2), v);
    });
    assert_broken(
        &verify(&dir, &keys, Some(&file)),
        "entry 2 changed",
        &["CHAIN", "entry 2"],
    );

    // (b) Entry 2 removed.
    let dir = tampered(&data, &root, "removed", |_, b| b.delete(AUDIT, key(2)));
    assert_broken(
        &verify(&dir, &keys, Some(&file)),
        "entry 2 removed",
        &["CHAIN", "position 2", "removed, inserted or reordered"],
    );

    // (c) A copy of entry 1 inserted at position 3, the rest moved up one.
    let dir = tampered(&data, &root, "inserted", |_, b| {
        for seq in 3..n {
            b.put(AUDIT, key(seq + 1), entry(seq));
        }
        b.put(AUDIT, key(3), entry(1));
    });
    assert_broken(
        &verify(&dir, &keys, Some(&file)),
        "entry inserted at 3",
        &["CHAIN", "position 3", "removed, inserted or reordered"],
    );

    // (d) Entries 4 and 5 swapped.
    let dir = tampered(&data, &root, "reordered", |_, b| {
        b.put(AUDIT, key(4), entry(5));
        b.put(AUDIT, key(5), entry(4));
    });
    assert_broken(
        &verify(&dir, &keys, Some(&file)),
        "entries 4 and 5 swapped",
        &["CHAIN", "position 4"],
    );

    // (e) The tail truncated: the last 3 entries and the store's checkpoint
    // of the full size deleted. The shorter chain is whole; the file's
    // checkpoint is what shows the cut.
    let k = 3;
    let dir = tampered(&data, &root, "truncated", |_, b| {
        for seq in n - k..n {
            b.delete(AUDIT, key(seq));
        }
        b.delete(CHECKPOINTS, key(n));
    });
    let r = verify(&dir, &keys, Some(&file));
    assert_broken(
        &r,
        "tail truncated by 3",
        &[
            "CHECKPOINTS BROKEN",
            "TRUNCATED",
            &format!("signs {n} entries but the audit log holds only {}", n - k),
            &format!("{}, line ", file.display()),
        ],
    );
    // Without the file, the cut goes unseen: why the file must live elsewhere.
    let r = verify(&dir, &keys, None);
    assert_intact(&r, "truncated, without the file", (n - k) as usize);
    assert!(
        r.stderr.contains("no --checkpoints file"),
        "verify without the file should warn that it checked less:\n{}",
        r.describe()
    );

    // (f) The tail cut and regrown: the same length, freshly and correctly
    // chained by the store itself, so the chain is whole again.
    let dir = tampered(&data, &root, "regrown-cut", |_, b| {
        for seq in n - k..n {
            b.delete(AUDIT, key(seq));
        }
        b.delete(CHECKPOINTS, key(n));
    });
    {
        // A fresh open, so the committer chains after the new last entry.
        let store = open_store(&dir).unwrap();
        let mut b = Batch::new();
        for i in 0..k {
            b.append(AUDIT, serde_json::to_vec(&event(100 + i as usize)).unwrap());
        }
        store.submit(b).wait().unwrap();
    }
    let r = verify(&dir, &keys, None);
    assert_intact(&r, "regrown chain, without the file", n as usize);
    assert_broken(
        &verify(&dir, &keys, Some(&file)),
        "tail regrown",
        &["REWRITTEN", &format!("entry {}", n - 1)],
    );

    // (g) The file's last checkpoint edited to claim a larger size.
    let forged_file = tmp.path().join("forged.txt");
    let text = std::fs::read_to_string(&file).unwrap();
    let at = text.rfind(&format!("\n{n}\n")).unwrap();
    let forged = format!(
        "{}\n{}\n{}",
        &text[..at],
        n + 5,
        &text[at + 2 + n.to_string().len()..]
    );
    std::fs::write(&forged_file, forged).unwrap();
    assert_broken(
        &verify(&data, &keys, Some(&forged_file)),
        "forged checkpoint",
        &["does not verify", "line 6"],
    );

    // (h) A checkpoints file signed by another key.
    let other_keys = tmp.path().join("other-keys");
    init_keys(&other_keys);
    let other = load_keys(&other_keys).unwrap().audit;
    let (_, head) = original.last().unwrap().clone();
    let origin = String::from_utf8(
        open_store(&data)
            .unwrap()
            .get(
                keyhold_domain::trees::META,
                keyhold_domain::checkpoint::ORIGIN_KEY,
            )
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    let foreign = Checkpoint {
        origin,
        size: n,
        root: head[41..73].try_into().unwrap(),
    }
    .sign(&other);
    let foreign_file = tmp.path().join("foreign.txt");
    std::fs::write(&foreign_file, foreign).unwrap();
    assert_broken(
        &verify(&data, &keys, Some(&foreign_file)),
        "checkpoint by another key",
        &["no signature by this store's audit signing key"],
    );

    // (i) Another store's checkpoints file (same keys, another origin).
    let data2 = tmp.path().join("data2");
    let file2 = tmp.path().join("other-store-checkpoints.txt");
    seed_demo(&data2, &keys, 1, &tmp.path().join("identities2.json"));
    {
        let core = open_core(&data2, &keys);
        runtime().block_on(core.checkpoint_now(&file2)).unwrap();
    }
    assert_broken(
        &verify(&data, &keys, Some(&file2)),
        "another store's checkpoints",
        &["is for the audit log keyhold/audit/", "but this store's is"],
    );

    // A missing file is an error, not a pass.
    let r = verify(&data, &keys, Some(&tmp.path().join("missing.txt")));
    assert!(
        !r.success() && r.stderr.contains("missing.txt"),
        "a missing checkpoints file should fail, naming it:\n{}",
        r.describe()
    );
}

fn copy_of(base: &Path, root: &Path, name: &str) -> PathBuf {
    let dir = root.join(name);
    copy_dir(base, &dir);
    dir
}

/// `keyhold serve`, owned here so the test can stop it with SIGTERM (a
/// graceful stop) rather than a kill.
struct Serving {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(data: &Path, keys: &Path, extra: &[&OsStr]) -> Serving {
    let mut args: Vec<&OsStr> = vec![
        OsStr::new("serve"),
        OsStr::new("--data"),
        data.as_os_str(),
        OsStr::new("--keys"),
        keys.as_os_str(),
        OsStr::new("--bind"),
        OsStr::new("127.0.0.1:0"),
    ];
    args.extend_from_slice(extra);
    let mut child = keyhold()
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start keyhold serve");
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(a) = line.strip_prefix("keyhold listening on http://") {
                let _ = tx.send(a.trim().parse::<SocketAddr>());
            }
        }
    });
    let addr = rx
        .recv_timeout(LIMIT)
        .expect("serve printed its listening line")
        .expect("a socket address");
    Serving { child, addr }
}

/// The sizes of the checkpoints in `file` that verify under `keys`' audit key.
fn file_sizes(file: &Path, keys: &Path) -> Vec<u64> {
    let public_key = load_keys(keys).unwrap().audit.public_key();
    let text = std::fs::read_to_string(file).unwrap_or_default();
    split_notes(&text)
        .into_iter()
        .map(|(line, note)| {
            open_note(note, &public_key)
                .unwrap_or_else(|e| panic!("the note at line {line} of the file: {e}"))
                .size
        })
        .collect()
}

/// A client signed in as the demo patient (the sign-in is audited).
async fn signed_in_client(base: &str) -> reqwest::Client {
    signed_in(
        base,
        "patient@demo.keyhold.test",
        keyhold_domain::demo::DEMO_PASSWORD,
    )
    .await
    .expect("demo sign-in")
}

#[test]
fn the_server_signs_checkpoints_by_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path().join("keys");
    let data = tmp.path().join("data");
    let file = tmp.path().join("off-host").join("checkpoints.txt");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();

    let mut server = serve(
        &data,
        &keys,
        &[
            OsStr::new("--demo"),
            OsStr::new("--checkpoints"),
            file.as_os_str(),
            OsStr::new("--checkpoint-every"),
            OsStr::new("5"),
            OsStr::new("--checkpoint-interval"),
            OsStr::new("3600"),
        ],
    );
    let wait_until = |what: &str, cond: &dyn Fn() -> bool| {
        let started = Instant::now();
        while !cond() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "timed out waiting until {what}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    // At start: the seeded demo data is covered.
    wait_until("the server signs its first checkpoint", &|| {
        !file_sizes(&file, &keys).is_empty()
    });
    let first = *file_sizes(&file, &keys).last().unwrap();
    assert!(first > 0);

    // Seven audited requests: a sign-in and six record reads.
    let base = format!("http://{}", server.addr);
    let rt = runtime();
    let client = rt.block_on(signed_in_client(&base));
    rt.block_on(async {
        for _ in 0..6 {
            let r = client.get(format!("{base}/record")).send().await.unwrap();
            assert_eq!(r.status(), reqwest::StatusCode::OK, "GET /record");
        }
    });
    // Five or more new entries: signed while running, without waiting an hour.
    wait_until("the server signs a checkpoint after 5 new entries", &|| {
        file_sizes(&file, &keys)
            .last()
            .is_some_and(|s| *s >= first + 5)
    });

    // One more audited read: below the count (at most 3 uncovered, even if
    // the count checkpoint came after the fifth of the seven), and the
    // interval is an hour.
    let before_stop = *file_sizes(&file, &keys).last().unwrap();
    rt.block_on(async {
        let r = client.get(format!("{base}/record")).send().await.unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::OK, "GET /record");
    });
    drop(client);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        file_sizes(&file, &keys).last(),
        Some(&before_stop),
        "no checkpoint is due yet"
    );

    // A graceful stop signs whatever is left.
    let status = std::process::Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let started = Instant::now();
    let exit = loop {
        if let Some(s) = server.child.try_wait().unwrap() {
            break s;
        }
        assert!(started.elapsed() < LIMIT, "serve did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "serve exited with {exit}");
    drop(server);

    let sizes = file_sizes(&file, &keys);
    assert!(
        sizes.windows(2).all(|w| w[0] < w[1]),
        "checkpoint sizes should only grow: {sizes:?}"
    );
    let total = entries(&data).len() as u64;
    assert!(total > before_stop);
    assert_eq!(
        sizes.last(),
        Some(&total),
        "the last checkpoint should cover every entry after a graceful stop"
    );
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the checkpoints file is created 0600");

    let r = verify(&data, &keys, Some(&file));
    assert_intact(&r, "after serving", total as usize);
    assert!(
        r.stdout.contains(&format!(
            "{} signed checkpoints verified ({} in the store, {} in {})",
            2 * sizes.len(),
            sizes.len(),
            sizes.len(),
            file.display()
        )) && r.stdout.contains("0 added since"),
        "{}",
        r.describe()
    );
}
