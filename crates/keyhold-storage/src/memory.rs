//! An in-memory engine for fast unit tests of the layers above. Same committer,
//! same semantics; "durable" means "in this process".

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use crate::batch::{ChainLink, TreeName};
use crate::engine::{Engine, RawIter, Write};
use crate::kv::Pair;
use crate::kv::{KvStore, Store};
use crate::StorageError;

#[derive(Default)]
struct Memory {
    map: RwLock<BTreeMap<Vec<u8>, Vec<u8>>>,
}

fn poisoned() -> StorageError {
    StorageError::Engine("memory store lock poisoned".into())
}

impl Engine for Memory {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.map.read().map_err(|_| poisoned())?.get(key).cloned())
    }

    fn scan_prefix(&self, prefix: &[u8]) -> RawIter<'_> {
        // Copy out under the lock: iterators must not hold it across the caller's work.
        let items: Result<Vec<_>, _> = self.map.read().map_err(|_| poisoned()).map(|m| {
            m.range(prefix.to_vec()..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(k, v)| Ok((k.clone(), v.clone())))
                .collect::<Vec<_>>()
        });
        match items {
            Ok(v) => Box::new(v.into_iter()),
            Err(e) => Box::new(std::iter::once(Err(e))),
        }
    }

    fn last_with_prefix(&self, prefix: &[u8]) -> Result<Option<Pair>, StorageError> {
        let m = self.map.read().map_err(|_| poisoned())?;
        Ok(m.range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .last()
            .map(|(k, v)| (k.clone(), v.clone())))
    }

    fn apply(&self, writes: Vec<Write>) -> Result<(), StorageError> {
        let mut m = self.map.write().map_err(|_| poisoned())?;
        for (k, v) in writes {
            match v {
                Some(v) => {
                    m.insert(k, v);
                }
                None => {
                    m.remove(&k);
                }
            }
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), StorageError> {
        Ok(())
    }

    fn size_on_disk(&self) -> Result<u64, StorageError> {
        Ok(0)
    }

    fn name(&self) -> &'static str {
        "memory"
    }
}

/// A store that lives in memory only.
pub fn open_memory(
    chains: Vec<(TreeName, Arc<dyn ChainLink>)>,
) -> Result<Arc<dyn Store>, StorageError> {
    Ok(Arc::new(KvStore::new(Memory::default(), chains)?))
}
