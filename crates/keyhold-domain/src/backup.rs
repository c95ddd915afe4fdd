//! The snapshot format inside a backup file (which `keyhold backup` encrypts
//! to the operator's age recipient): every row of the store, as stored, so a
//! backup holds data keys only in their wrapped form and no plaintext at all.
//!
//! Layout: `MAGIC`, one JSON header line, then frames `0x01 ‖ key length (u32
//! BE) ‖ key ‖ value length (u32 BE) ‖ value`, then `0x00 ‖ row count (u64
//! BE)`. age's authenticated encryption already refuses a changed or cut-off
//! file; the count and end marker catch a snapshot that stopped early before
//! it was encrypted.

use std::io::{Read, Write};
use std::path::Path;

use keyhold_storage::{restore_sled, Pair, StorageError, Store};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::trees::{READABLE_SCHEMAS, SCHEMA_VERSION};
use crate::DomainError;

const MAGIC: &[u8] = b"keyhold-backup/v1\n";
const ROW: u8 = 1;
const END: u8 = 0;
/// No key or value of ours comes near this; a larger length means a damaged
/// file, and must not make the reader allocate it.
const MAX_FIELD: u32 = 256 * 1024 * 1024;

/// The header line: what wrote the snapshot, and when.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SnapshotHeader {
    pub schema: u32,
    pub backend: String,
    #[serde(with = "time::serde::rfc3339")]
    pub taken_at: OffsetDateTime,
}

/// Writes a consistent snapshot of `store` to `out` (see
/// [`Store::export`]: writes wait while the rows are read). Returns the rows.
pub fn write_snapshot(
    store: &dyn Store,
    taken_at: OffsetDateTime,
    out: &mut dyn Write,
) -> Result<u64, DomainError> {
    let header = SnapshotHeader {
        schema: SCHEMA_VERSION,
        backend: store.backend().to_string(),
        taken_at,
    };
    out.write_all(MAGIC).map_err(io)?;
    let mut line = serde_json::to_vec(&header)?;
    line.push(b'\n');
    out.write_all(&line).map_err(io)?;
    let rows = store.export(&mut |k, v| {
        out.write_all(&[ROW])?;
        for field in [k, v] {
            let len = u32::try_from(field.len())
                .ok()
                .filter(|l| *l <= MAX_FIELD)
                .ok_or_else(|| std::io::Error::other("a row is too large for a snapshot"))?;
            out.write_all(&len.to_be_bytes())?;
            out.write_all(field)?;
        }
        Ok(())
    })?;
    out.write_all(&[END]).map_err(io)?;
    out.write_all(&rows.to_be_bytes()).map_err(io)?;
    out.flush().map_err(io)?;
    Ok(rows)
}

fn io(e: std::io::Error) -> DomainError {
    DomainError::Storage(StorageError::Stream(e))
}

fn damaged(what: &str) -> StorageError {
    StorageError::Incompatible(format!("the backup is damaged: {what}"))
}

/// Reads a snapshot's header, then yields its rows; the last item is an error
/// unless the end marker and the row count are there and agree.
pub struct SnapshotReader<R: Read> {
    input: R,
    rows: u64,
    done: bool,
}

impl<R: Read> SnapshotReader<R> {
    pub fn new(mut input: R) -> Result<(SnapshotHeader, Self), DomainError> {
        let mut magic = [0u8; MAGIC.len()];
        input
            .read_exact(&mut magic)
            .map_err(|_| DomainError::Storage(damaged("too short")))?;
        if magic != MAGIC {
            return Err(DomainError::Storage(damaged(
                "it does not start as a keyhold backup",
            )));
        }
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            input
                .read_exact(&mut byte)
                .map_err(|_| DomainError::Storage(damaged("no header")))?;
            if byte[0] == b'\n' {
                break;
            }
            line.push(byte[0]);
            if line.len() > 4096 {
                return Err(DomainError::Storage(damaged("header too long")));
            }
        }
        let header: SnapshotHeader = serde_json::from_slice(&line)
            .map_err(|_| DomainError::Storage(damaged("unreadable header")))?;
        Ok((
            header,
            SnapshotReader {
                input,
                rows: 0,
                done: false,
            },
        ))
    }

    fn field(&mut self) -> Result<Vec<u8>, StorageError> {
        let mut len = [0u8; 4];
        self.input.read_exact(&mut len)?;
        let len = u32::from_be_bytes(len);
        if len > MAX_FIELD {
            return Err(damaged("a row length is impossible"));
        }
        let mut v = vec![0u8; len as usize];
        self.input.read_exact(&mut v)?;
        Ok(v)
    }

    fn next_row(&mut self) -> Result<Option<Pair>, StorageError> {
        let mut tag = [0u8; 1];
        self.input.read_exact(&mut tag)?;
        match tag[0] {
            ROW => {
                let k = self.field()?;
                let v = self.field()?;
                self.rows += 1;
                Ok(Some((k, v)))
            }
            END => {
                let mut n = [0u8; 8];
                self.input.read_exact(&mut n)?;
                if u64::from_be_bytes(n) != self.rows {
                    return Err(damaged("the row count does not match"));
                }
                let mut rest = [0u8; 1];
                if self.input.read(&mut rest)? != 0 {
                    return Err(damaged("bytes after the end"));
                }
                Ok(None)
            }
            _ => Err(damaged("unknown frame")),
        }
    }
}

impl<R: Read> Iterator for SnapshotReader<R> {
    type Item = Result<Pair, StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_row() {
            Ok(Some(row)) => Some(Ok(row)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Restores the snapshot read from `input` as the sled store of the data
/// folder `data` (which must not hold one yet). It is built beside, under a
/// temporary name, and moved into place only once every row is in and
/// durable, so a failed restore leaves no half-store behind.
pub fn restore_snapshot(input: impl Read, data: &Path) -> Result<u64, DomainError> {
    let (header, mut rows) = SnapshotReader::new(input)?;
    // An older schema restores as it was; opening it marks it as this one.
    if header.schema != SCHEMA_VERSION && !READABLE_SCHEMAS.contains(&header.schema) {
        return Err(DomainError::Schema(format!(
            "the backup has schema version {}, but this keyhold reads version {SCHEMA_VERSION}",
            header.schema
        )));
    }
    // All three export the same rows (trees as key prefixes), so a
    // PostgreSQL backup also restores into the embedded store.
    if !matches!(header.backend.as_str(), "sled" | "memory" | "postgres") {
        return Err(DomainError::Storage(StorageError::Incompatible(format!(
            "the backup was taken from a {} store; restore it with that backend's tools",
            header.backend
        ))));
    }
    let target = data.join("store");
    if target.exists() {
        return Err(DomainError::Storage(StorageError::Incompatible(format!(
            "{} already holds a store; restore into a new data folder",
            data.display()
        ))));
    }
    std::fs::create_dir_all(data)
        .map_err(|e| DomainError::Internal(format!("cannot create {}: {e}", data.display())))?;
    let partial = data.join("store.restoring");
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(|e| {
            DomainError::Internal(format!("cannot clear {}: {e}", partial.display()))
        })?;
    }
    match restore_sled(&partial, &mut rows) {
        Ok(n) => {
            std::fs::rename(&partial, &target).map_err(|e| {
                DomainError::Internal(format!("cannot move the restored store into place: {e}"))
            })?;
            if let Ok(d) = std::fs::File::open(data) {
                let _ = d.sync_all();
            }
            Ok(n)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&partial);
            Err(e.into())
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn snapshot_bytes() -> (Vec<u8>, u64) {
        let store = crate::open_memory_store().unwrap();
        let mut b = keyhold_storage::Batch::new();
        b.put(crate::trees::META, b"one".to_vec(), vec![1; 10]);
        b.put(crate::trees::DEKS, b"two".to_vec(), vec![2; 300]);
        store.submit(b).wait().unwrap();
        let mut out = Vec::new();
        let n = write_snapshot(store.as_ref(), OffsetDateTime::UNIX_EPOCH, &mut out).unwrap();
        (out, n)
    }

    #[test]
    fn a_snapshot_reads_back_row_for_row() {
        let (bytes, n) = snapshot_bytes();
        let (header, rows) = SnapshotReader::new(&bytes[..]).unwrap();
        assert_eq!(header.schema, SCHEMA_VERSION);
        let rows: Vec<Pair> = rows.collect::<Result<_, _>>().unwrap();
        assert_eq!(rows.len() as u64, n);
        assert!(rows.iter().any(|(_, v)| v == &vec![2u8; 300]));
    }

    #[test]
    fn a_cut_or_changed_snapshot_is_refused_and_restores_nothing() {
        let (bytes, _) = snapshot_bytes();
        let dir = tempfile::tempdir().unwrap();
        for (i, bad) in [
            bytes[..bytes.len() - 9].to_vec(), // no end marker
            {
                let mut b = bytes.clone();
                let last = b.len() - 1;
                b[last] ^= 1; // wrong count
                b
            },
            {
                let mut b = bytes.clone();
                b.push(0); // trailing bytes
                b
            },
            b"not a backup at all".to_vec(),
        ]
        .into_iter()
        .enumerate()
        {
            let data = dir.path().join(format!("d{i}"));
            assert!(restore_snapshot(&bad[..], &data).is_err(), "case {i}");
            assert!(!data.join("store").exists(), "case {i} left a store");
            assert!(!data.join("store.restoring").exists(), "case {i}");
        }
        let good = dir.path().join("good");
        assert_eq!(restore_snapshot(&bytes[..], &good).unwrap(), 2);
        assert!(
            restore_snapshot(&bytes[..], &good).is_err(),
            "never over a store"
        );
    }
}
