//! The few primitives a backend must offer. Everything else (trees as key
//! prefixes, preconditions, sequencing, group commit) is built once on top.

use crate::kv::Pair;
use crate::StorageError;

/// A single write: `None` deletes.
pub(crate) type Write = (Vec<u8>, Option<Vec<u8>>);

pub(crate) type RawIter<'a> = Box<dyn Iterator<Item = Result<Pair, StorageError>> + Send + 'a>;

pub(crate) trait Engine: Send + Sync + 'static {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;
    fn scan_prefix(&self, prefix: &[u8]) -> RawIter<'_>;
    fn last_with_prefix(&self, prefix: &[u8]) -> Result<Option<Pair>, StorageError>;
    /// Applies every write or none.
    fn apply(&self, writes: Vec<Write>) -> Result<(), StorageError>;
    /// Makes every applied write durable.
    fn flush(&self) -> Result<(), StorageError>;
    fn size_on_disk(&self) -> Result<u64, StorageError>;
    fn name(&self) -> &'static str;
}
