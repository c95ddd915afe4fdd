//! The single writer: applies batches in arrival order and makes each group of
//! them durable with one flush before answering any of them.

use std::collections::HashMap;
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use crate::batch::{Batch, ChainLink, Committed, Op, Precondition, Ticket, TicketInner, TreeName};
use crate::engine::{Engine, Write};
use crate::kv::{close_and_join, full_key, Counters, StoreStats};
use crate::StorageError;

/// Upper bound on batches that share one flush, so one group's latency stays
/// bounded under a flood.
const MAX_GROUP: usize = 512;

type Reply = oneshot::Sender<Result<Committed, StorageError>>;

/// What the single writer is asked to do.
enum Job {
    Write(Batch, Reply),
    /// Stop taking writes once everything before is durable, say so on the
    /// first channel, and wait until the second one closes (a consistent
    /// snapshot is read meanwhile).
    Pause(mpsc::Sender<()>, mpsc::Receiver<()>),
}

/// Writes are held while this lives; dropping it lets them go on.
pub(crate) struct Paused {
    _resume: mpsc::Sender<()>,
}

pub(crate) struct Committer {
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    handle: Mutex<Option<JoinHandle<()>>>,
    counters: Arc<Counters>,
}

/// Where a sequenced log tree stands: the next number and the last stored bytes.
struct LogHead {
    next: u64,
    last: Option<Vec<u8>>,
}

struct Worker<E: Engine> {
    engine: Arc<E>,
    chains: HashMap<TreeName, Arc<dyn ChainLink>>,
    heads: HashMap<TreeName, LogHead>,
}

impl Committer {
    pub(crate) fn start<E: Engine>(
        engine: Arc<E>,
        chains: Vec<(TreeName, Arc<dyn ChainLink>)>,
    ) -> Result<Self, StorageError> {
        let (tx, rx) = mpsc::channel::<Job>();
        let counters = Arc::new(Counters::default());
        let mut worker = Worker {
            engine,
            chains: chains.into_iter().collect(),
            heads: HashMap::new(),
        };
        let c = counters.clone();
        let handle = std::thread::Builder::new()
            .name("keyhold-committer".into())
            .spawn(move || worker.run(rx, &c))
            .map_err(|e| StorageError::Engine(format!("cannot start committer: {e}")))?;
        Ok(Committer {
            tx: Mutex::new(Some(tx)),
            handle: Mutex::new(Some(handle)),
            counters,
        })
    }

    fn send(&self, job: Job) -> bool {
        match self.tx.lock() {
            Ok(guard) => match guard.as_ref() {
                Some(tx) => tx.send(job).is_ok(),
                None => false,
            },
            Err(_) => false,
        }
    }

    pub(crate) fn submit(&self, batch: Batch) -> Ticket {
        let (reply, rx) = oneshot::channel();
        if self.send(Job::Write(batch, reply)) {
            Ticket(TicketInner::Pending(rx))
        } else {
            Ticket::failed(StorageError::Closed)
        }
    }

    /// Holds every later write until the guard drops; returns once all earlier
    /// writes are applied and durable. Reads go on meanwhile.
    pub(crate) fn pause(&self) -> Result<Paused, StorageError> {
        let (paused_tx, paused_rx) = mpsc::channel();
        let (resume_tx, resume_rx) = mpsc::channel();
        if !self.send(Job::Pause(paused_tx, resume_rx)) {
            return Err(StorageError::Closed);
        }
        paused_rx.recv().map_err(|_| StorageError::Closed)?;
        Ok(Paused { _resume: resume_tx })
    }

    pub(crate) fn stats(&self) -> StoreStats {
        self.counters.stats()
    }
}

impl Drop for Committer {
    /// Closing the channel lets the worker finish and flush what it has.
    fn drop(&mut self) {
        let thread = self.handle.lock().ok().and_then(|mut h| h.take());
        close_and_join(&self.tx, thread);
    }
}

impl<E: Engine> Worker<E> {
    fn run(&mut self, rx: mpsc::Receiver<Job>, counters: &Counters) {
        let mut next = rx.recv().ok();
        while let Some(job) = next.take() {
            let first = match job {
                Job::Pause(paused, resume) => {
                    // Everything before was answered, so it is durable.
                    let _ = paused.send(());
                    let _ = resume.recv();
                    next = rx.recv().ok();
                    continue;
                }
                Job::Write(batch, reply) => (batch, reply),
            };
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(Job::Write(batch, reply)) => group.push((batch, reply)),
                    Ok(pause) => {
                        // Served right after this group is durable.
                        next = Some(pause);
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.commit_group(group, counters);
            if next.is_none() {
                next = rx.recv().ok();
            }
        }
    }

    fn commit_group(&mut self, group: Vec<(Batch, Reply)>, counters: &Counters) {
        let n = group.len() as u64;
        let mut results = Vec::with_capacity(group.len());
        for (batch, reply) in group {
            results.push((self.apply(batch), reply));
        }
        let flushed = self.engine.flush();
        counters.group(n);
        for (result, reply) in results {
            let answer = match (&flushed, result) {
                (Ok(()), r) => r,
                (Err(e), _) => Err(StorageError::Engine(format!("flush failed: {e}"))),
            };
            // The requester may have gone away; the write stands regardless.
            let _ = reply.send(answer);
        }
        if flushed.is_err() {
            // What the engine holds in memory no longer matches what is
            // durable; re-read log heads from the engine before going on.
            self.heads.clear();
        }
    }

    fn check(&self, p: &Precondition) -> Result<bool, StorageError> {
        Ok(match p {
            Precondition::Absent(t, k) => self.engine.get(&full_key(*t, k))?.is_none(),
            Precondition::Equals(t, k, expected) => {
                self.engine.get(&full_key(*t, k))?.as_deref() == expected.as_deref()
            }
        })
    }

    fn head(&mut self, tree: TreeName) -> Result<&mut LogHead, StorageError> {
        if !self.heads.contains_key(&tree) {
            let prefix = full_key(tree, b"");
            let head = match self.engine.last_with_prefix(&prefix)? {
                None => LogHead {
                    next: 0,
                    last: None,
                },
                Some((k, v)) => {
                    let raw: [u8; 8] = k[prefix.len()..].try_into().map_err(|_| {
                        StorageError::Incompatible(format!(
                            "log tree {} holds a key that is not a sequence number",
                            tree.as_str()
                        ))
                    })?;
                    LogHead {
                        next: u64::from_be_bytes(raw) + 1,
                        last: Some(v),
                    }
                }
            };
            self.heads.insert(tree, head);
        }
        self.heads
            .get_mut(&tree)
            .ok_or_else(|| StorageError::Engine("log head vanished".into()))
    }

    fn apply(&mut self, batch: Batch) -> Result<Committed, StorageError> {
        for p in &batch.preconditions {
            if !self.check(p)? {
                return Err(StorageError::Conflict);
            }
        }
        let mut writes: Vec<Write> = Vec::with_capacity(batch.ops.len());
        let mut appended = Vec::new();
        // Heads move only once the engine has taken the writes.
        let mut new_heads: HashMap<TreeName, LogHead> = HashMap::new();
        for op in batch.ops {
            match op {
                Op::Put(t, k, v) => writes.push((full_key(t, &k), Some(v))),
                Op::Delete(t, k) => writes.push((full_key(t, &k), None)),
                Op::Append(t, payload, indexes) => {
                    let (seq, prev) = match new_heads.get(&t) {
                        Some(h) => (h.next, h.last.clone()),
                        None => {
                            let h = self.head(t)?;
                            (h.next, h.last.clone())
                        }
                    };
                    let value = match self.chains.get(&t) {
                        Some(chain) => chain
                            .link(seq, prev.as_deref(), &payload)
                            .map_err(StorageError::Chain)?,
                        None => payload,
                    };
                    writes.push((full_key(t, &seq.to_be_bytes()), Some(value.clone())));
                    for (index, mut prefix) in indexes {
                        prefix.extend_from_slice(&seq.to_be_bytes());
                        writes.push((full_key(index, &prefix), Some(Vec::new())));
                    }
                    new_heads.insert(
                        t,
                        LogHead {
                            next: seq + 1,
                            last: Some(value),
                        },
                    );
                    appended.push(seq);
                }
            }
        }
        self.engine.apply(writes)?;
        self.heads.extend(new_heads);
        Ok(Committed { appended })
    }
}
