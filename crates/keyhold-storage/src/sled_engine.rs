//! The embedded default: one sled tree, logical trees as key prefixes, so that a
//! batch spanning several logical trees is one atomic `apply_batch`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::batch::{ChainLink, TreeName};
use crate::engine::{Engine, RawIter, Write};
use crate::kv::Pair;
use crate::kv::{KvStore, Store};
use crate::StorageError;

/// Marks a folder as written by this backend; another backend refuses it.
const BACKEND_KEY: &[u8] = b"\x00backend";
const BACKEND: &[u8] = b"sled-0.34/v1";

struct SledEngine {
    db: sled::Db,
    tree: sled::Tree,
}

impl Engine for SledEngine {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.tree.get(key)?.map(|v| v.to_vec()))
    }

    fn scan_prefix(&self, prefix: &[u8]) -> RawIter<'_> {
        Box::new(
            self.tree
                .scan_prefix(prefix)
                .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(Into::into)),
        )
    }

    fn last_with_prefix(&self, prefix: &[u8]) -> Result<Option<Pair>, StorageError> {
        match self.tree.scan_prefix(prefix).next_back() {
            None => Ok(None),
            Some(r) => {
                let (k, v) = r?;
                Ok(Some((k.to_vec(), v.to_vec())))
            }
        }
    }

    fn apply(&self, writes: Vec<Write>) -> Result<(), StorageError> {
        let mut batch = sled::Batch::default();
        for (k, v) in writes {
            match v {
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            }
        }
        self.tree.apply_batch(batch)?;
        Ok(())
    }

    fn flush(&self) -> Result<(), StorageError> {
        self.db.flush()?;
        Ok(())
    }

    fn size_on_disk(&self) -> Result<u64, StorageError> {
        Ok(self.db.size_on_disk()?)
    }

    fn name(&self) -> &'static str {
        "sled"
    }
}

/// How long to wait for another process (or a just-closed handle in this one)
/// to let go of the folder lock. sled releases it only when its background
/// threads drop their last handle, which on a loaded machine can take seconds
/// after the owner is gone; a second process that really holds the store is
/// reported once this wait is over.
const LOCK_WAIT: Duration = Duration::from_secs(20);

/// How the embedded store runs; nothing here changes what is stored.
#[derive(Clone, Copy, Debug)]
pub struct SledTuning {
    /// sled's page cache, in bytes. sled's own default is 1 GiB; on top of it
    /// sled keeps every page's location in memory (about 450 MiB for a 7.6 GB
    /// store of 100,000 patients), and the cache fills with each audited
    /// read's new pages, so 1 GiB (or 512 MiB) took the process past a 1 GiB
    /// budget. At 128 MiB reads were as fast in the benchmark (PERFORMANCE, P4).
    pub cache_bytes: u64,
}

impl Default for SledTuning {
    fn default() -> Self {
        SledTuning {
            cache_bytes: 128 * 1024 * 1024,
        }
    }
}

fn open_db(dir: &Path, cache_bytes: u64) -> Result<sled::Db, StorageError> {
    let started = Instant::now();
    let mut told = false;
    loop {
        match sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .open()
        {
            Ok(db) => return Ok(db),
            Err(sled::Error::Io(e)) if is_lock_busy(&e) && started.elapsed() < LOCK_WAIT => {
                if !told && started.elapsed() > Duration::from_secs(1) {
                    tracing::info!(
                        store = %dir.display(),
                        "the store is locked; waiting up to {} s for it (is another keyhold process using it?)",
                        LOCK_WAIT.as_secs()
                    );
                    told = true;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => {
                return Err(StorageError::Incompatible(format!(
                    "cannot open the store in {} (is another keyhold process using it?): {e}",
                    dir.display()
                )))
            }
        }
    }
}

/// Whether sled failed only because the folder lock is held. sled 0.34 wraps
/// the `WouldBlock` from its lock call in an `Other` error with a message, so
/// the kind alone does not tell.
fn is_lock_busy(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::WouldBlock
        || e.to_string().starts_with("could not acquire lock")
}

/// Opens (or creates) the sled store in `dir`, with the default tuning.
pub fn open_sled(
    dir: &Path,
    chains: Vec<(TreeName, Arc<dyn ChainLink>)>,
) -> Result<Arc<dyn Store>, StorageError> {
    open_sled_tuned(dir, chains, SledTuning::default())
}

/// Opens (or creates) the sled store in `dir`.
pub fn open_sled_tuned(
    dir: &Path,
    chains: Vec<(TreeName, Arc<dyn ChainLink>)>,
    tuning: SledTuning,
) -> Result<Arc<dyn Store>, StorageError> {
    let db = open_db(dir, tuning.cache_bytes)?;
    let tree = db.open_tree("kv")?;
    match db.get(BACKEND_KEY)? {
        None => {
            db.insert(BACKEND_KEY, BACKEND)?;
            db.flush()?;
        }
        Some(b) if b.as_ref() == BACKEND => {}
        Some(other) => {
            return Err(StorageError::Incompatible(format!(
                "{} was written by another storage backend ({}); refusing to open it",
                dir.display(),
                String::from_utf8_lossy(&other)
            )))
        }
    }
    Ok(Arc::new(KvStore::new(SledEngine { db, tree }, chains)?))
}

/// Rows written per batch while restoring, so memory stays bounded.
const RESTORE_BATCH: usize = 4096;

/// Builds a new sled store in `dir` from exported rows (see [`Store::export`]).
/// `dir` must not exist yet: a restore never merges into live data. Returns
/// the row count once everything is durable; on error the caller removes `dir`.
pub fn restore_sled(
    dir: &Path,
    rows: &mut dyn Iterator<Item = Result<Pair, StorageError>>,
) -> Result<u64, StorageError> {
    if dir.exists() {
        return Err(StorageError::Incompatible(format!(
            "{} already exists; restore only into a new folder",
            dir.display()
        )));
    }
    let db = open_db(dir, SledTuning::default().cache_bytes)?;
    db.insert(BACKEND_KEY, BACKEND)?;
    let tree = db.open_tree("kv")?;
    let mut batch = sled::Batch::default();
    let mut pending = 0usize;
    let mut total = 0u64;
    for row in rows {
        let (k, v) = row?;
        batch.insert(k, v);
        pending += 1;
        total += 1;
        if pending == RESTORE_BATCH {
            tree.apply_batch(std::mem::take(&mut batch))?;
            pending = 0;
        }
    }
    tree.apply_batch(batch)?;
    db.flush()?;
    Ok(total)
}
