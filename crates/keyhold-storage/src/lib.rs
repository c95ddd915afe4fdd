//! Keyhold's storage boundary: bytes in, bytes out.
//!
//! The domain layer sees only the object-safe [`Store`] trait. Everything that
//! reaches it is already ciphertext, a hash or a blind index: this crate never
//! sees plaintext and knows nothing of patients, keys or HTTP.
//!
//! Writes go through one path, [`Store::submit`], which takes a [`Batch`]
//! (atomic: all of it or none of it) and returns a [`Ticket`] that resolves only
//! once the batch is durable on disk. A single committer thread applies batches
//! in submission order and makes each group durable with one flush, so
//! concurrent requests share the cost of an fsync (group commit).
//!
//! Architecture invariant: a write is acknowledged only after the flush that
//! covers it has returned.

mod batch;
mod committer;
mod engine;
mod error;
mod kv;
mod memory;
mod pg;
mod sled_engine;

pub use batch::{Batch, ChainLink, Committed, Ticket, TreeName, PATIENT_ID_LEN};
pub use error::StorageError;
pub use kv::{KvIter, Pair, RowSink, Store, StoreStats, GROUP_SIZE_BOUNDS};
pub use memory::open_memory;
pub use pg::{create_database, open_postgres, test_database, PgOptions, SCHEMA as POSTGRES_SCHEMA};
pub use sled_engine::{open_sled, open_sled_tuned, restore_sled, SledTuning};
