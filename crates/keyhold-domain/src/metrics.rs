//! What the service counts about itself, for the web layer's `/metrics`:
//! the store's commit groups, the data-key cache and the password-hashing
//! queue. Numbers only: nothing here names a person, a record or a key.

use std::sync::atomic::Ordering;

use keyhold_storage::StoreStats;

use crate::Keyhold;

/// One reading of the service's counters. Each is read on its own (relaxed
/// atomics, no lock), so two fields may be a request apart: fine for
/// monitoring, not for accounting.
#[derive(Debug, Clone, Copy)]
pub struct ServiceMetrics {
    /// Batches, flushes and group sizes since the store opened.
    pub store: StoreStats,
    /// Data keys found in the cache / unwrapped from the store, since the
    /// service opened.
    pub dek_cache_hits: u64,
    pub dek_cache_misses: u64,
    /// Requests waiting for a password-hashing permit now (sign-ins, sign-ups,
    /// password changes). Beyond `hashing_max_waiting` they are shed (503).
    pub hashes_waiting: u64,
    /// Password hashes allowed to run at once.
    pub hashing_concurrency: u64,
    /// Requests allowed to wait for a hash before the next is shed.
    pub hashing_max_waiting: u64,
    /// Password hashes (and dummy verifications) started since the service opened.
    pub hashes_started: u64,
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

impl Keyhold {
    /// The service's counters now (see [`ServiceMetrics`]).
    pub fn metrics(&self) -> ServiceMetrics {
        ServiceMetrics {
            store: self.store.stats(),
            dek_cache_hits: self.vault.cache_hits.load(Ordering::Relaxed),
            dek_cache_misses: self.vault.cache_misses.load(Ordering::Relaxed),
            hashes_waiting: count(self.hashing.waiting()),
            // As the semaphore was sized in `Keyhold::with_store`.
            hashing_concurrency: count(self.settings.hashing_concurrency.max(1)),
            hashing_max_waiting: count(self.settings.hashing_max_waiting),
            hashes_started: self.password_hashes_started(),
        }
    }
}
