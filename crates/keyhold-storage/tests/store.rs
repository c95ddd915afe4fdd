//! One conformance suite, run against every backend.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use keyhold_storage::{
    open_memory, open_sled, restore_sled, Batch, ChainLink, StorageError, Store, TreeName,
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

fn both(check: impl Fn(Arc<dyn Store>)) {
    check(open_memory(chains()).unwrap());
    let dir = tempfile::tempdir().unwrap();
    check(open_sled(dir.path(), chains()).unwrap());
}

#[test]
fn put_get_scan_delete() {
    both(|s| {
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
    both(|s| {
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
    both(|s| {
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

#[tokio::test]
async fn tickets_can_be_awaited() {
    let s = open_memory(chains()).unwrap();
    let mut b = Batch::new();
    b.append(LOG, b"a".to_vec());
    b.append(LOG, b"b".to_vec());
    assert_eq!(s.submit(b).await.unwrap().appended, vec![0, 1]);
}

#[test]
fn sled_reopens_with_data_and_log_head() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open_sled(dir.path(), chains()).unwrap();
        let mut b = Batch::new();
        b.put(T, b"k".to_vec(), b"v".to_vec());
        b.append(LOG, b"first".to_vec());
        s.submit(b).wait().unwrap();
    }
    let s = open_sled(dir.path(), chains()).unwrap();
    assert_eq!(s.get(T, b"k").unwrap().as_deref(), Some(&b"v"[..]));
    let mut b = Batch::new();
    b.append(LOG, b"second".to_vec());
    assert_eq!(s.submit(b).wait().unwrap().appended, vec![1]);
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
    both(|s| {
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
    const U: TreeName = TreeName::new("mirror");
    let dir = tempfile::tempdir().unwrap();
    let s = open_sled(&dir.path().join("live"), chains()).unwrap();
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

    let restored_dir = dir.path().join("restored");
    let mut it = rows.clone().into_iter().map(Ok);
    assert_eq!(restore_sled(&restored_dir, &mut it).unwrap(), n);
    let r = open_sled(&restored_dir, chains()).unwrap();
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
    assert!(restore_sled(&restored_dir, &mut again).is_err());
}
