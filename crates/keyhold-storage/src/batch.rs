//! Atomic write batches, their preconditions, and durability tickets.

use std::future::IntoFuture;
use std::pin::Pin;

use crate::StorageError;

/// The name of a logical tree (a table, for a SQL backend). Names are short,
/// static and free of NUL bytes; the domain declares them with their key layout.
///
/// A tree declared with [`TreeName::by_patient`] promises that every key starts
/// with the 16-byte id of the patient the row belongs to. The embedded backends
/// ignore this; PostgreSQL stores such rows in `patient_rows`, keyed (and, on
/// Citus, distributed) by that id, so one patient's rows live together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TreeName {
    name: &'static str,
    by_patient: bool,
}

/// Length of the patient id that begins every key of a [`TreeName::by_patient`] tree.
pub const PATIENT_ID_LEN: usize = 16;

impl TreeName {
    /// Declares a tree. Names must be non-empty ASCII without NUL; this is checked
    /// in const context so a bad name fails to compile.
    pub const fn new(name: &'static str) -> Self {
        let bytes = name.as_bytes();
        assert!(!bytes.is_empty(), "tree name must not be empty");
        let mut i = 0;
        while i < bytes.len() {
            assert!(
                bytes[i] != 0 && bytes[i].is_ascii(),
                "tree name must be ASCII without NUL"
            );
            i += 1;
        }
        TreeName {
            name,
            by_patient: false,
        }
    }

    /// Declares a tree whose every key starts with a patient id
    /// ([`PATIENT_ID_LEN`] bytes).
    pub const fn by_patient(name: &'static str) -> Self {
        TreeName {
            by_patient: true,
            ..TreeName::new(name)
        }
    }

    pub fn as_str(&self) -> &'static str {
        self.name
    }

    /// Whether keys start with a patient id (see [`TreeName::by_patient`]).
    pub fn is_by_patient(&self) -> bool {
        self.by_patient
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Op {
    Put(TreeName, Vec<u8>, Vec<u8>),
    Delete(TreeName, Vec<u8>),
    /// Appended to a sequenced log; the committer chooses the key (the next
    /// sequence number, big-endian u64) and, for chained trees, the final bytes.
    /// Each index gets an empty value at `prefix ‖ seq`, in the same write.
    Append(TreeName, Vec<u8>, Vec<(TreeName, Vec<u8>)>),
}

#[derive(Debug, Clone)]
pub(crate) enum Precondition {
    Absent(TreeName, Vec<u8>),
    Equals(TreeName, Vec<u8>, Option<Vec<u8>>),
}

/// A set of writes applied atomically, after its preconditions are checked
/// against the store as it stands when the batch's turn comes.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    pub(crate) ops: Vec<Op>,
    pub(crate) preconditions: Vec<Precondition>,
}

impl Batch {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn put(&mut self, tree: TreeName, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push(Op::Put(tree, key.into(), value.into()));
    }

    pub fn delete(&mut self, tree: TreeName, key: impl Into<Vec<u8>>) {
        self.ops.push(Op::Delete(tree, key.into()));
    }

    /// Appends to a sequenced (possibly chained) log tree. The sequence numbers
    /// the committer assigned come back in [`Committed::appended`], in order.
    pub fn append(&mut self, tree: TreeName, payload: impl Into<Vec<u8>>) {
        self.ops.push(Op::Append(tree, payload.into(), Vec::new()));
    }

    /// Like [`Batch::append`], and also writes an empty value at
    /// `prefix ‖ seq (u64 BE)` in each index tree, so entries can later be found
    /// by prefix (e.g. one patient's audit entries) without a full scan. The
    /// index keys exist only once the committer has chosen `seq`, which is why
    /// this is a storage operation and not the caller's.
    pub fn append_indexed(
        &mut self,
        tree: TreeName,
        payload: impl Into<Vec<u8>>,
        indexes: Vec<(TreeName, Vec<u8>)>,
    ) {
        self.ops.push(Op::Append(tree, payload.into(), indexes));
    }

    /// The batch is refused with [`StorageError::Conflict`] if `key` exists.
    pub fn require_absent(&mut self, tree: TreeName, key: impl Into<Vec<u8>>) {
        self.preconditions
            .push(Precondition::Absent(tree, key.into()));
    }

    /// The batch is refused unless `key` currently holds `expected` (None: absent).
    pub fn require_equals(
        &mut self,
        tree: TreeName,
        key: impl Into<Vec<u8>>,
        expected: Option<Vec<u8>>,
    ) {
        self.preconditions
            .push(Precondition::Equals(tree, key.into(), expected));
    }

    /// Moves every write and precondition of `other` into this batch.
    pub fn extend(&mut self, other: Batch) {
        self.ops.extend(other.ops);
        self.preconditions.extend(other.preconditions);
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.preconditions.is_empty()
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }
}

/// Turns the payload of an append into the bytes stored, given the entry
/// before it. The audit log uses this to hash-chain entries in exactly the order
/// the committer writes them, whatever order requests arrived in.
pub trait ChainLink: Send + Sync + 'static {
    fn link(&self, seq: u64, previous: Option<&[u8]>, payload: &[u8]) -> Result<Vec<u8>, String>;
}

/// What a durable batch reports back.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The sequence numbers given to this batch's appends, in order.
    pub appended: Vec<u64>,
}

/// Resolves once the batch it stands for is durable (or has failed). Waiting is
/// possible from async code (`ticket.await`) or from a plain thread
/// ([`Ticket::wait`]).
#[must_use = "a write is not durable until its ticket resolves"]
pub struct Ticket(pub(crate) TicketInner);

pub(crate) enum TicketInner {
    Pending(oneshot::Receiver<Result<Committed, StorageError>>),
    Failed(StorageError),
}

impl Ticket {
    pub(crate) fn failed(e: StorageError) -> Self {
        Ticket(TicketInner::Failed(e))
    }

    /// Blocks the calling thread until the batch is durable.
    pub fn wait(self) -> Result<Committed, StorageError> {
        match self.0 {
            TicketInner::Pending(rx) => rx.recv().map_err(|_| StorageError::Closed)?,
            TicketInner::Failed(e) => Err(e),
        }
    }
}

impl IntoFuture for Ticket {
    type Output = Result<Committed, StorageError>;
    type IntoFuture = Pin<Box<dyn std::future::Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            match self.0 {
                TicketInner::Pending(rx) => rx.await.map_err(|_| StorageError::Closed)?,
                TicketInner::Failed(e) => Err(e),
            }
        })
    }
}
