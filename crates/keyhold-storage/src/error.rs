/// What can go wrong below the domain layer.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The underlying engine failed (I/O, corruption). The detail never holds
    /// plaintext: keys and values here are ciphertext or opaque ids.
    #[error("storage engine error: {0}")]
    Engine(String),
    /// A precondition of a batch did not hold; nothing of it was written.
    #[error("conflict: a precondition of the batch did not hold")]
    Conflict,
    /// The committer is gone (the store is shutting down).
    #[error("the store is closed")]
    Closed,
    /// A chained log refused to link an entry.
    #[error("chain link failed: {0}")]
    Chain(String),
    /// The folder holds a store written by another backend or is unusable.
    #[error("{0}")]
    Incompatible(String),
    /// Where a snapshot was being written to (or read from) failed.
    #[error("snapshot stream: {0}")]
    Stream(#[from] std::io::Error),
}

impl From<sled::Error> for StorageError {
    fn from(e: sled::Error) -> Self {
        StorageError::Engine(e.to_string())
    }
}
