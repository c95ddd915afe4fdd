//! One conformance suite, run against every backend.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use keyhold_storage::{
    open_memory, open_postgres, open_sled, restore_sled, test_database, Batch, ChainLink,
    PgOptions, StorageError, Store, TreeName,
};

const T: TreeName = TreeName::new("things");
const LOG: TreeName = TreeName::new("log");

/// A toy chain: each stored entry is `previous-last-byte + 1 ‖ payload`, so a
/// wrong order or a missing previous is visible.
struct Counting;
impl ChainLink for Counting {
    fn link(&self, seq: u64, previous: Option<&[u8]>, payload: &[u8]) -> Result<Vec<u8>, String> {
        let prev_seq = previous.map(|p| u64::from_be_bytes(p[..8].try_into().unwrap()));
        if seq > 0 && prev_seq != Some(seq - 1) {
            return Err(format!("entry {seq} linked after {prev_seq:?}"));
        }
        let mut v = seq.to_be_bytes().to_vec();
        v.extend_from_slice(payload);
        Ok(v)
    }
}

fn chains() -> Vec<(TreeName, Arc<dyn ChainLink>)> {
    vec![(LOG, Arc::new(Counting))]
}

/// A new database on the test server, or `None` (see `test_database`).
fn postgres_database() -> Option<String> {
    test_database("store").unwrap()
}

fn postgres_store(url: &str) -> Arc<dyn Store> {
    open_postgres(&PgOptions::new(url), chains()).unwrap()
}

/// Runs `check` against every backend: memory, sled, and PostgreSQL when a
/// test server is there.
fn every_backend(check: impl Fn(Arc<dyn Store>)) {
    check(open_memory(chains()).unwrap());
    let dir = tempfile::tempdir().unwrap();
    check(open_sled(dir.path(), chains()).unwrap());
    if let Some(url) = postgres_database() {
        check(postgres_store(&url));
    }
}

#[test]
fn put_get_scan_delete() {
    every_backend(|s| {
        let mut b = Batch::new();
        b.put(T, b"a/1".to_vec(), b"one".to_vec());
        b.put(T, b"a/2".to_vec(), b"two".to_vec());
        b.put(T, b"b/1".to_vec(), b"other".to_vec());
        s.submit(b).wait().unwrap();
        assert_eq!(s.get(T, b"a/1").unwrap().as_deref(), Some(&b"one"[..]));
        let a: Vec<_> = s.scan(T, b"a/").map(|r| r.unwrap().0).collect();
        assert_eq!(a, vec![b"a/1".to_vec(), b"a/2".to_vec()]);
        assert_eq!(s.last(T).unwrap().unwrap().0, b"b/1".to_vec());
        let mut d = Batch::new();
        d.delete(T, b"a/1".to_vec());
        s.submit(d).wait().unwrap();
        assert_eq!(s.get(T, b"a/1").unwrap(), None);
        // Another tree with a name that is a prefix of this one sees nothing.
        assert_eq!(s.scan(TreeName::new("thing"), b"").count(), 0);
    });
}

#[test]
fn failed_precondition_writes_nothing() {
    every_backend(|s| {
        let mut first = Batch::new();
        first.put(T, b"email-index".to_vec(), b"acct-1".to_vec());
        s.submit(first).wait().unwrap();

        let mut b = Batch::new();
        b.require_absent(T, b"email-index".to_vec());
        b.put(T, b"email-index".to_vec(), b"acct-2".to_vec());
        b.put(T, b"acct-2".to_vec(), b"record".to_vec());
        b.append(LOG, b"x".to_vec());
        assert!(matches!(s.submit(b).wait(), Err(StorageError::Conflict)));
        assert_eq!(
            s.get(T, b"email-index").unwrap().as_deref(),
            Some(&b"acct-1"[..])
        );
        assert_eq!(s.get(T, b"acct-2").unwrap(), None);
        assert_eq!(
            s.scan(LOG, b"").count(),
            0,
            "a refused batch appended to the log"
        );

        let mut cas = Batch::new();
        cas.require_equals(T, b"email-index".to_vec(), Some(b"acct-1".to_vec()));
        cas.put(T, b"email-index".to_vec(), b"acct-3".to_vec());
        s.submit(cas).wait().unwrap();
        assert_eq!(
            s.get(T, b"email-index").unwrap().as_deref(),
            Some(&b"acct-3"[..])
        );
    });
}

#[test]
fn concurrent_appends_are_contiguous_and_chained() {
    every_backend(|s| {
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let s = s.clone();
                std::thread::spawn(move || {
                    let mut seqs = Vec::new();
                    for i in 0..50 {
                        let mut b = Batch::new();
                        b.put(T, format!("k{t}-{i}").into_bytes(), b"v".to_vec());
                        b.append(LOG, format!("{t}-{i}").into_bytes());
                        seqs.extend(s.submit(b).wait().unwrap().appended);
                    }
                    seqs
                })
            })
            .collect();
        let mut all: Vec<u64> = threads
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..400).collect::<Vec<_>>());
        for (i, r) in s.scan(LOG, b"").enumerate() {
            let (k, v) = r.unwrap();
            assert_eq!(k, (i as u64).to_be_bytes().to_vec());
            assert_eq!(&v[..8], &(i as u64).to_be_bytes());
        }
        assert!(s.stats().batches_committed >= 400);
    });
}

/// From async code too: the PostgreSQL client runs its own runtime, which must
/// never be started on the caller's.
#[tokio::test]
async fn tickets_can_be_awaited() {
    let mut stores = vec![open_memory(chains()).unwrap()];
    if let Some(url) = postgres_database() {
        stores.push(postgres_store(&url));
    }
    for s in stores {
        let mut b = Batch::new();
        b.append(LOG, b"a".to_vec());
        b.append(LOG, b"b".to_vec());
        assert_eq!(s.submit(b).await.unwrap().appended, vec![0, 1]);
        assert_eq!(
            s.get(LOG, &1u64.to_be_bytes()).unwrap().unwrap()[8..],
            *b"b"
        );
    }
}

#[test]
fn a_reopened_store_keeps_its_data_and_log_head() {
    let dir = tempfile::tempdir().unwrap();
    let pg = postgres_database();
    let open = |which: &str| match which {
        "sled" => open_sled(dir.path(), chains()).unwrap(),
        _ => postgres_store(pg.as_deref().unwrap()),
    };
    let mut backends = vec!["sled"];
    if pg.is_some() {
        backends.push("postgres");
    }
    for which in backends {
        {
            let s = open(which);
            let mut b = Batch::new();
            b.put(T, b"k".to_vec(), b"v".to_vec());
            b.append(LOG, b"first".to_vec());
            s.submit(b).wait().unwrap();
        }
        let s = open(which);
        assert_eq!(s.get(T, b"k").unwrap().as_deref(), Some(&b"v"[..]));
        let mut b = Batch::new();
        b.append(LOG, b"second".to_vec());
        assert_eq!(s.submit(b).wait().unwrap().appended, vec![1], "{which}");
    }
}

#[test]
fn a_chain_that_refuses_refuses_the_whole_batch() {
    struct Refuse;
    impl ChainLink for Refuse {
        fn link(&self, _: u64, _: Option<&[u8]>, _: &[u8]) -> Result<Vec<u8>, String> {
            Err("no".into())
        }
    }
    let s = open_memory(vec![(LOG, Arc::new(Refuse) as Arc<dyn ChainLink>)]).unwrap();
    let mut b = Batch::new();
    b.put(T, b"k".to_vec(), b"v".to_vec());
    b.append(LOG, b"x".to_vec());
    assert!(matches!(s.submit(b).wait(), Err(StorageError::Chain(_))));
    assert_eq!(s.get(T, b"k").unwrap(), None);
}

#[test]
fn indexed_appends_write_one_index_key_per_entry_with_its_sequence() {
    const BY: TreeName = TreeName::new("log_by_owner");
    every_backend(|s| {
        let mut b = Batch::new();
        b.append_indexed(LOG, b"a".to_vec(), vec![(BY, b"ann/".to_vec())]);
        b.append_indexed(LOG, b"b".to_vec(), vec![(BY, b"bob/".to_vec())]);
        b.append(LOG, b"c".to_vec());
        let committed = s.submit(b).wait().unwrap();
        let mut b = Batch::new();
        b.append_indexed(LOG, b"d".to_vec(), vec![(BY, b"ann/".to_vec())]);
        let later = s.submit(b).wait().unwrap();
        let ann: Vec<u64> = s
            .scan(BY, b"ann/")
            .map(|r| u64::from_be_bytes(r.unwrap().0[4..].try_into().unwrap()))
            .collect();
        assert_eq!(ann, vec![committed.appended[0], later.appended[0]]);
        let bob: Vec<_> = s.scan(BY, b"bob/").map(|r| r.unwrap().0).collect();
        assert_eq!(bob.len(), 1);
        // The index points at the entry written in the same batch.
        let seq = &bob[0][4..];
        assert!(s.get(LOG, seq).unwrap().unwrap().ends_with(b"b"));
    });
}

#[test]
fn sled_waits_for_a_lock_that_is_let_go() {
    let dir = tempfile::tempdir().unwrap();
    let first = open_sled(dir.path(), chains()).unwrap();
    let mut b = Batch::new();
    b.put(T, b"k".to_vec(), b"v".to_vec());
    first.submit(b).wait().unwrap();
    // Let go of the first handle a little later, from another thread, as
    // sled's own background threads do after a close.
    let holder = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(700));
        drop(first);
    });
    let second = open_sled(dir.path(), chains())
        .expect("a second open should wait for the lock rather than fail at once");
    assert_eq!(second.get(T, b"k").unwrap().as_deref(), Some(&b"v"[..]));
    holder.join().unwrap();
}

/// A snapshot taken while writers run sees each batch whole or not at all
/// (every batch writes the same counter to two trees), and a store restored
/// from it holds exactly those rows and goes on appending to the log.
#[test]
fn export_is_a_consistent_snapshot_that_restores() {
    let dir = tempfile::tempdir().unwrap();
    export_restores(
        open_sled(&dir.path().join("live"), chains()).unwrap(),
        &dir.path().join("restored"),
    );
    if let Some(url) = postgres_database() {
        // A PostgreSQL snapshot restores into sled: the rows are the same.
        export_restores(postgres_store(&url), &dir.path().join("from-postgres"));
    }
}

fn export_restores(s: Arc<dyn Store>, restored_dir: &std::path::Path) {
    const U: TreeName = TreeName::new("mirror");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..4u8)
        .map(|w| {
            let (s, stop) = (s.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut i = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let mut b = Batch::new();
                    let v = i.to_be_bytes().to_vec();
                    b.put(T, vec![w], v.clone());
                    b.put(U, vec![w], v);
                    b.append(LOG, vec![w]);
                    s.submit(b).wait().unwrap();
                    i += 1;
                }
                i
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(50));
    let mut rows: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let n = s
        .export(&mut |k, v| {
            rows.push((k.to_vec(), v.to_vec()));
            Ok(())
        })
        .unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written: u32 = writers.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(n as usize, rows.len());
    assert!(written > 0);

    let mut it = rows.clone().into_iter().map(Ok);
    assert_eq!(restore_sled(restored_dir, &mut it).unwrap(), n);
    let r = open_sled(restored_dir, chains()).unwrap();
    let mut log_len = 0;
    for w in 0..4u8 {
        let t = r.get(T, &[w]).unwrap();
        assert_eq!(
            t,
            r.get(U, &[w]).unwrap(),
            "a batch was cut by the snapshot"
        );
        if let Some(t) = t {
            log_len += u32::from_be_bytes(t[..4].try_into().unwrap()) + 1;
        }
    }
    assert_eq!(r.scan(LOG, b"").count() as u32, log_len);
    let mut b = Batch::new();
    b.append(LOG, b"after".to_vec());
    assert_eq!(
        r.submit(b).wait().unwrap().appended,
        vec![u64::from(log_len)]
    );
    // Restoring never merges into an existing folder.
    let mut again = rows.into_iter().map(Ok);
    assert!(restore_sled(restored_dir, &mut again).is_err());
}

const BY_PATIENT: TreeName = TreeName::by_patient("records");

fn patient_key(patient: u8, rest: &[u8]) -> Vec<u8> {
    let mut k = vec![patient; 16];
    k.extend_from_slice(rest);
    k
}

/// Scans longer than a page (PostgreSQL fetches 512 rows at a time), with and
/// without the patient in the prefix, stop exactly at the prefix's end.
#[test]
fn long_scans_cross_pages_and_stop_at_the_prefix() {
    every_backend(|s| {
        for patient in [1u8, 2, 0xFF] {
            let mut b = Batch::new();
            for i in 0..1200u32 {
                b.put(
                    BY_PATIENT,
                    patient_key(patient, &i.to_be_bytes()),
                    vec![patient],
                );
            }
            s.submit(b).wait().unwrap();
        }
        let two: Vec<_> = s
            .scan(BY_PATIENT, &patient_key(2, b""))
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(two.len(), 1200);
        assert!(two.windows(2).all(|w| w[0].0 < w[1].0), "not in key order");
        assert!(two.iter().all(|(k, v)| k[..16] == [2; 16] && v == &[2]));
        assert_eq!(s.scan(BY_PATIENT, &patient_key(0xFF, b"")).count(), 1200);
        assert_eq!(s.scan(BY_PATIENT, b"").count(), 3600);
        assert_eq!(
            s.scan(BY_PATIENT, &patient_key(1, &[0, 0, 1])).count(),
            256,
            "a prefix inside one patient's rows"
        );
        assert_eq!(s.last(BY_PATIENT).unwrap().unwrap().1, vec![0xFF]);
        let mut d = Batch::new();
        d.delete(BY_PATIENT, patient_key(2, &7u32.to_be_bytes()));
        s.submit(d).wait().unwrap();
        assert_eq!(
            s.get(BY_PATIENT, &patient_key(2, &7u32.to_be_bytes()))
                .unwrap(),
            None
        );
        assert_eq!(s.scan(BY_PATIENT, &patient_key(2, b"")).count(), 1199);
    });
}

/// Two stores on one database stand for two keyhold instances: their appends
/// interleave into one contiguous, correctly chained log, and a precondition
/// raced from both sides is won by exactly one.
#[test]
fn two_postgres_instances_share_one_log_and_one_order() {
    let Some(url) = postgres_database() else {
        return;
    };
    let a = postgres_store(&url);
    let b = postgres_store(&url);
    let writers: Vec<_> = [a.clone(), b.clone()]
        .into_iter()
        .enumerate()
        .flat_map(|(n, s)| {
            (0..4).map(move |t| {
                let s = s.clone();
                std::thread::spawn(move || {
                    let mut won = 0;
                    for i in 0..40 {
                        let mut batch = Batch::new();
                        batch.append(LOG, format!("{n}-{t}-{i}").into_bytes());
                        s.submit(batch).wait().unwrap();
                        // Everyone tries to claim the same slot; one may.
                        let mut claim = Batch::new();
                        let slot = format!("slot-{i}").into_bytes();
                        claim.require_absent(T, slot.clone());
                        claim.put(T, slot, format!("{n}-{t}").into_bytes());
                        claim.append(LOG, b"claim".to_vec());
                        match s.submit(claim).wait() {
                            Ok(_) => won += 1,
                            Err(StorageError::Conflict) => {}
                            Err(e) => panic!("{e}"),
                        }
                    }
                    won
                })
            })
        })
        .collect();
    let claims: u32 = writers.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(
        claims, 40,
        "each slot is claimed exactly once across both instances"
    );
    let log: Vec<_> = b.scan(LOG, b"").map(|r| r.unwrap()).collect();
    assert_eq!(log.len(), 8 * 40 + 40);
    for (i, (k, v)) in log.iter().enumerate() {
        // `Counting` refuses an entry not linked to the one before it.
        assert_eq!(k, &(i as u64).to_be_bytes().to_vec());
        assert_eq!(&v[..8], &(i as u64).to_be_bytes());
    }
    // Each sees the other's writes at once.
    let mut w = Batch::new();
    w.put(T, b"from-a".to_vec(), b"1".to_vec());
    a.submit(w).wait().unwrap();
    assert_eq!(b.get(T, b"from-a").unwrap().as_deref(), Some(&b"1"[..]));
}

/// Rows of a patient-keyed tree land in `patient_rows` under that patient's
/// id (the column a Citus deployment distributes by); the rest in `shared_rows`.
#[test]
fn postgres_keys_patient_rows_by_patient() {
    let Some(url) = postgres_database() else {
        return;
    };
    let s = postgres_store(&url);
    let mut b = Batch::new();
    b.put(BY_PATIENT, patient_key(9, b"entry"), b"sealed".to_vec());
    b.put(T, b"shared".to_vec(), b"x".to_vec());
    s.submit(b).wait().unwrap();
    let mut short = Batch::new();
    short.put(BY_PATIENT, b"too short".to_vec(), b"x".to_vec());
    assert!(
        s.submit(short).wait().is_err(),
        "a key without a patient id was taken"
    );
    let rows = std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        let p: Vec<(Vec<u8>, String)> = c
            .query("SELECT patient_id, tree FROM patient_rows", &[])
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let shared: i64 = c
            .query_one(
                "SELECT count(*) FROM shared_rows WHERE tree = 'things'",
                &[],
            )
            .unwrap()
            .get(0);
        (p, shared)
    })
    .join()
    .unwrap();
    assert_eq!(rows.0, vec![(vec![9u8; 16], "records".to_string())]);
    assert_eq!(rows.1, 1);
}

/// Connections the server drops (a restart, a failover) cost the requests in
/// flight, not the store: the next reads and writes reconnect, and a write
/// that failed left nothing behind.
#[test]
fn postgres_reconnects_after_its_connections_are_dropped() {
    let Some(url) = postgres_database() else {
        return;
    };
    let s = postgres_store(&url);
    let mut b = Batch::new();
    b.put(T, b"before".to_vec(), b"1".to_vec());
    b.append(LOG, b"first".to_vec());
    s.submit(b).wait().unwrap();
    let admin = url.clone();
    let dropped = std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
        c.query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .unwrap()
        .len()
    })
    .join()
    .unwrap();
    assert!(
        dropped >= 2,
        "the store's connections were not found: {dropped}"
    );
    // The first use of each dropped connection may fail; later ones must not.
    let mut wrote = false;
    for _ in 0..3 {
        let mut b = Batch::new();
        b.put(T, b"after".to_vec(), b"2".to_vec());
        b.append(LOG, b"second".to_vec());
        if s.submit(b).wait().is_ok() {
            wrote = true;
            break;
        }
    }
    assert!(
        wrote,
        "writes did not recover after the connections were dropped"
    );
    let mut read = None;
    for _ in 0..8 {
        if let Ok(v) = s.get(T, b"before") {
            read = v;
            break;
        }
    }
    assert_eq!(read.as_deref(), Some(&b"1"[..]));
    assert_eq!(s.get(T, b"after").unwrap().as_deref(), Some(&b"2"[..]));
    // The log stayed one contiguous chain: nothing half-written.
    let log: Vec<_> = s.scan(LOG, b"").map(|r| r.unwrap().0).collect();
    assert_eq!(
        log,
        vec![0u64.to_be_bytes().to_vec(), 1u64.to_be_bytes().to_vec()]
    );
}
