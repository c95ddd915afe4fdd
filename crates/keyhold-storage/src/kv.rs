//! The [`Store`] trait the domain sees, and its one implementation over any
//! [`Engine`]: logical trees are key prefixes (`name ‖ 0x00 ‖ key`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::batch::{Batch, Ticket, TreeName};
use crate::committer::Committer;
use crate::engine::Engine;
use crate::StorageError;

/// A key and its value.
pub type Pair = (Vec<u8>, Vec<u8>);

/// Iterator over `(key, value)` pairs of one tree, keys without the tree prefix.
/// Errors are yielded, never dropped.
pub type KvIter<'a> = Box<dyn Iterator<Item = Result<Pair, StorageError>> + Send + 'a>;

/// Receives each row of a snapshot (see [`Store::export`]); an error stops it.
pub type RowSink<'a> = dyn FnMut(&[u8], &[u8]) -> std::io::Result<()> + 'a;

/// Upper bounds of the group-size histogram in [`StoreStats::group_sizes`]:
/// batches made durable by one flush (one commit, for PostgreSQL).
pub const GROUP_SIZE_BOUNDS: [u64; 10] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512];

/// Counters a `/metrics` page or a benchmark can read.
#[derive(Debug, Default, Clone, Copy)]
pub struct StoreStats {
    pub batches_committed: u64,
    pub flushes: u64,
    pub largest_group: u64,
    /// How many groups had at most `GROUP_SIZE_BOUNDS[i]` batches (and more
    /// than the bound before): not cumulative.
    pub group_sizes: [u64; GROUP_SIZE_BOUNDS.len()],
}

/// Closes a worker thread's queue (so it finishes what it holds) and waits
/// for the threads to end: how every backend's threads stop on drop.
pub(crate) fn close_and_join<T>(
    tx: &std::sync::Mutex<Option<std::sync::mpsc::Sender<T>>>,
    threads: impl IntoIterator<Item = std::thread::JoinHandle<()>>,
) {
    if let Ok(mut tx) = tx.lock() {
        tx.take();
    }
    for t in threads {
        let _ = t.join();
    }
}

/// What a committer counts as it goes (every backend's the same way), read
/// as [`StoreStats`].
#[derive(Default)]
pub(crate) struct Counters {
    batches: AtomicU64,
    flushes: AtomicU64,
    largest_group: AtomicU64,
    group_sizes: [AtomicU64; GROUP_SIZE_BOUNDS.len()],
}

impl Counters {
    /// One group of `n` batches made durable by one flush (or commit).
    pub(crate) fn group(&self, n: u64) {
        self.flushes.fetch_add(1, Ordering::Relaxed);
        self.batches.fetch_add(n, Ordering::Relaxed);
        self.largest_group.fetch_max(n, Ordering::Relaxed);
        let bucket = GROUP_SIZE_BOUNDS
            .iter()
            .position(|b| n <= *b)
            .unwrap_or(GROUP_SIZE_BOUNDS.len() - 1);
        self.group_sizes[bucket].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn stats(&self) -> StoreStats {
        StoreStats {
            batches_committed: self.batches.load(Ordering::Relaxed),
            flushes: self.flushes.load(Ordering::Relaxed),
            largest_group: self.largest_group.load(Ordering::Relaxed),
            group_sizes: std::array::from_fn(|i| self.group_sizes[i].load(Ordering::Relaxed)),
        }
    }
}

/// The storage boundary. Object-safe so the domain holds `Arc<dyn Store>` and a
/// PostgreSQL backend can stand beside sled without the domain changing.
pub trait Store: Send + Sync + 'static {
    fn get(&self, tree: TreeName, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;
    /// Every entry of `tree` whose key starts with `prefix`, in key order.
    fn scan(&self, tree: TreeName, prefix: &[u8]) -> KvIter<'_>;
    /// The entry with the greatest key in `tree`.
    fn last(&self, tree: TreeName) -> Result<Option<Pair>, StorageError>;
    /// Queues an atomic batch; the ticket resolves once it is durable.
    fn submit(&self, batch: Batch) -> Ticket;
    fn stats(&self) -> StoreStats;
    fn size_on_disk(&self) -> Result<u64, StorageError>;
    /// "sled", "memory", …
    fn backend(&self) -> &'static str;
    /// Hands every row of the store (raw keys, tree prefix included) to
    /// `sink`, in key order, as one consistent snapshot: writes submitted
    /// meanwhile wait until it is taken; reads go on. Returns the row count.
    fn export(&self, sink: &mut RowSink<'_>) -> Result<u64, StorageError>;
}

pub(crate) fn full_key(tree: TreeName, key: &[u8]) -> Vec<u8> {
    let name = tree.as_str().as_bytes();
    let mut k = Vec::with_capacity(name.len() + 1 + key.len());
    k.extend_from_slice(name);
    k.push(0);
    k.extend_from_slice(key);
    k
}

pub(crate) struct KvStore<E: Engine> {
    engine: Arc<E>,
    committer: Committer,
}

impl<E: Engine> KvStore<E> {
    pub(crate) fn new(
        engine: E,
        chains: Vec<(TreeName, Arc<dyn crate::ChainLink>)>,
    ) -> Result<Self, StorageError> {
        let engine = Arc::new(engine);
        let committer = Committer::start(engine.clone(), chains)?;
        Ok(KvStore { engine, committer })
    }
}

impl<E: Engine> Store for KvStore<E> {
    fn get(&self, tree: TreeName, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.engine.get(&full_key(tree, key))
    }

    fn scan(&self, tree: TreeName, prefix: &[u8]) -> KvIter<'_> {
        let strip = tree.as_str().len() + 1;
        Box::new(
            self.engine
                .scan_prefix(&full_key(tree, prefix))
                .map(move |r| r.map(|(k, v)| (k[strip..].to_vec(), v))),
        )
    }

    fn last(&self, tree: TreeName) -> Result<Option<Pair>, StorageError> {
        let strip = tree.as_str().len() + 1;
        Ok(self
            .engine
            .last_with_prefix(&full_key(tree, b""))?
            .map(|(k, v)| (k[strip..].to_vec(), v)))
    }

    fn submit(&self, batch: Batch) -> Ticket {
        self.committer.submit(batch)
    }

    fn stats(&self) -> StoreStats {
        self.committer.stats()
    }

    fn size_on_disk(&self) -> Result<u64, StorageError> {
        self.engine.size_on_disk()
    }

    fn backend(&self) -> &'static str {
        self.engine.name()
    }

    fn export(&self, sink: &mut RowSink<'_>) -> Result<u64, StorageError> {
        let _paused = self.committer.pause()?;
        let mut rows = 0u64;
        for row in self.engine.scan_prefix(b"") {
            let (k, v) = row?;
            sink(&k, &v)?;
            rows += 1;
        }
        Ok(rows)
    }
}
