//! Data keys: one per patient (and per account), stored only wrapped by the
//! master key; unwrapped copies live in a bounded cache and are zeroized when the
//! last reference drops (`DataKey` zeroizes itself).

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use keyhold_crypto::{open, seal, DataKey, IndexKey, MasterKeyring};
use keyhold_storage::{Batch, Store};
use lru::LruCache;
use zeroize::Zeroizing;

use crate::ids::KeyOwner;
use crate::trees::DEKS;
use crate::{
    AccountId, BreakGlassId, DocumentId, DomainError, GrantId, OrgId, PatientId, StaffInviteId,
};

/// What a sealed value is bound to. A ciphertext opens only with the same
/// owner, kind, record id, version and part: moved anywhere else, it fails.
/// Built only through the constructors below, one per kind of sealed value, so
/// the seal and the open of a kind cannot bind different things.
pub struct Aad<'a> {
    owner: KeyOwner,
    kind: &'static str,
    record: &'a [u8],
    version: u32,
    part: u32,
}

impl<'a> Aad<'a> {
    /// An account's email address (accounts have one version today).
    pub fn account_email(account: &'a AccountId) -> Self {
        Aad {
            owner: KeyOwner::Account(*account),
            kind: "account-email",
            record: account.as_bytes(),
            version: 1,
            part: 0,
        }
    }

    /// An account holder's name (what others see in access logs and lists).
    pub fn account_name(account: &'a AccountId) -> Self {
        Aad {
            owner: KeyOwner::Account(*account),
            kind: "account-name",
            record: account.as_bytes(),
            version: 1,
            part: 0,
        }
    }

    /// An account's TOTP secret; `version` counts enrolments, so a secret from
    /// an earlier enrolment does not open as the current one.
    pub fn account_totp(account: &'a AccountId, version: u32) -> Self {
        Aad {
            owner: KeyOwner::Account(*account),
            kind: "account-totp",
            record: account.as_bytes(),
            version,
            part: 0,
        }
    }

    /// A professional's own list in one organisation (`kind`: recently opened
    /// records, worklist names, the people on one worklist), sealed under
    /// their account's key. `key` is the row's store key (account ‖ org, then
    /// the list id for a worklist), so a list moved to another professional,
    /// organisation or list, or to another version, fails to open.
    pub fn professional_list(
        account: AccountId,
        kind: ProfessionalList,
        key: &'a [u8],
        version: u32,
    ) -> Self {
        Aad {
            owner: KeyOwner::Account(account),
            kind: match kind {
                ProfessionalList::RecentRecords => "recent-records",
                ProfessionalList::WorklistNames => "worklist-names",
                ProfessionalList::Worklist => "worklist",
            },
            record: key,
            version,
            part: 0,
        }
    }

    pub fn grant(patient: PatientId, grant: &'a GrantId, version: u32) -> Self {
        Aad {
            owner: KeyOwner::Patient(patient),
            kind: "grant",
            record: grant.as_bytes(),
            version,
            part: 0,
        }
    }

    /// A questionnaire sent to the patient (which one, from whom, its state).
    pub fn questionnaire_assignment(
        patient: PatientId,
        id: &'a crate::assignments::AssignmentId,
        version: u32,
    ) -> Self {
        Aad {
            owner: KeyOwner::Patient(patient),
            kind: "questionnaire-assignment",
            record: id.as_bytes(),
            version,
            part: 0,
        }
    }

    /// The reason given for emergency access.
    pub fn break_glass(patient: PatientId, id: &'a BreakGlassId) -> Self {
        Aad {
            owner: KeyOwner::Patient(patient),
            kind: "break-glass",
            record: id.as_bytes(),
            version: 1,
            part: 0,
        }
    }

    /// The address a professional was invited at, sealed under the org's key.
    pub fn staff_invite(org: OrgId, invite: &'a StaffInviteId) -> Self {
        Aad {
            owner: KeyOwner::Organisation(org),
            kind: "staff-invite",
            record: invite.as_bytes(),
            version: 1,
            part: 0,
        }
    }

    /// A value of a subject access request (its answers, a message, a file's
    /// metadata or chunk): `owner` is the request's key or its disclosure
    /// key, `record` the request, message or file it belongs to.
    pub fn access_request(
        owner: KeyOwner,
        kind: &'static str,
        record: &'a [u8],
        part: u32,
    ) -> Self {
        Aad {
            owner,
            kind,
            record,
            version: 1,
            part,
        }
    }

    /// A guest's email address, bound to the hash of their link or session.
    pub fn guest_email(token_hash: &'a [u8]) -> Self {
        Aad {
            owner: KeyOwner::Guests,
            kind: "guest-email",
            record: token_hash,
            version: 1,
            part: 0,
        }
    }

    pub fn demographics(patient: &'a PatientId, version: u32) -> Self {
        Aad {
            owner: KeyOwner::Patient(*patient),
            kind: "demographics",
            record: patient.as_bytes(),
            version,
            part: 0,
        }
    }

    pub fn entry(patient: PatientId, entry: &'a [u8], version: u32) -> Self {
        Aad {
            owner: KeyOwner::Patient(patient),
            kind: "entry",
            record: entry,
            version,
            part: 0,
        }
    }

    pub fn document(patient: PatientId, document: &'a DocumentId, version: u32) -> Self {
        Aad {
            owner: KeyOwner::Patient(patient),
            kind: "document",
            record: document.as_bytes(),
            version,
            part: 0,
        }
    }

    /// `record` is the document id and chunk count (so truncation fails); `index`
    /// is the chunk's position.
    pub fn document_chunk(patient: PatientId, record: &'a [u8], version: u32, index: u32) -> Self {
        Aad {
            owner: KeyOwner::Patient(patient),
            kind: "document-chunk",
            record,
            version,
            part: index,
        }
    }
}

/// Which of a professional's lists a sealed value is (see [`Aad::professional_list`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProfessionalList {
    RecentRecords,
    WorklistNames,
    Worklist,
}

impl Aad<'_> {
    pub(crate) fn bytes(&self) -> Vec<u8> {
        let owner = self.owner.key();
        let mut v = Vec::with_capacity(16 + owner.len() + self.kind.len() + self.record.len() + 8);
        v.extend_from_slice(b"keyhold/v1");
        for part in [owner.as_slice(), self.kind.as_bytes(), self.record] {
            v.extend_from_slice(&(part.len() as u32).to_be_bytes());
            v.extend_from_slice(part);
        }
        v.extend_from_slice(&self.version.to_be_bytes());
        v.extend_from_slice(&self.part.to_be_bytes());
        v
    }
}

/// Passes of a rotation before it gives up on a store whose keys keep changing.
const REWRAP_PASSES: usize = 5;

/// Reads the master keys again (the binary: the keys folder). Called when a
/// data key is wrapped under a master key this process does not hold: another
/// instance on the same database rotated.
pub type KeyringSource = Box<dyn Fn() -> Result<MasterKeyring, DomainError> + Send + Sync>;

/// The least time between two reloads, so a data key no master key opens
/// (damage, a foreign keys folder) does not read the keys folder per request.
const RELOAD_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

struct Reload {
    source: KeyringSource,
    last: Option<std::time::Instant>,
}

pub struct Vault {
    keyring: RwLock<Arc<MasterKeyring>>,
    index: IndexKey,
    cache: Mutex<LruCache<KeyOwner, Arc<DataKey>>>,
    store: Arc<dyn Store>,
    /// [`Vault::key`] calls answered from the cache (for `/metrics`).
    pub(crate) cache_hits: AtomicU64,
    /// [`Vault::key`] calls that unwrapped the key from the store.
    pub(crate) cache_misses: AtomicU64,
    reload: Mutex<Option<Reload>>,
}

fn poisoned() -> DomainError {
    DomainError::Internal("key cache lock poisoned".into())
}

impl Vault {
    pub fn new(
        store: Arc<dyn Store>,
        keyring: MasterKeyring,
        index: IndexKey,
        cache_size: usize,
    ) -> Self {
        let cap = NonZeroUsize::new(cache_size.max(1)).unwrap_or(NonZeroUsize::MIN);
        Vault {
            keyring: RwLock::new(Arc::new(keyring)),
            index,
            cache: Mutex::new(LruCache::new(cap)),
            store,
            cache_hits: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
            reload: Mutex::new(None),
        }
    }

    /// Where to read the master keys again when a data key does not unwrap.
    pub fn reload_keyring_from(&self, source: KeyringSource) -> Result<(), DomainError> {
        *self.reload.lock().map_err(|_| poisoned())? = Some(Reload { source, last: None });
        Ok(())
    }

    /// The master keys read again, if there is a source and the last read
    /// was not within [`RELOAD_EVERY`]; they become current.
    fn reloaded(&self) -> Result<Option<Arc<MasterKeyring>>, DomainError> {
        let mut guard = self.reload.lock().map_err(|_| poisoned())?;
        let Some(reload) = guard.as_mut() else {
            return Ok(None);
        };
        if reload.last.is_some_and(|t| t.elapsed() < RELOAD_EVERY) {
            return Ok(None);
        }
        reload.last = Some(std::time::Instant::now());
        match (reload.source)() {
            Ok(keyring) => {
                let keyring = Arc::new(keyring);
                *self.keyring.write().map_err(|_| poisoned())? = keyring.clone();
                tracing::info!("master keys read again: a data key was wrapped under a newer one");
                Ok(Some(keyring))
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not read the master keys again");
                Ok(None)
            }
        }
    }

    pub fn index_key(&self) -> &IndexKey {
        &self.index
    }

    fn keyring(&self) -> Result<Arc<MasterKeyring>, DomainError> {
        Ok(self.keyring.read().map_err(|_| poisoned())?.clone())
    }

    /// Makes a fresh data key for `owner` and adds its wrapped form to `batch`,
    /// refusing to overwrite an existing one.
    pub fn create_key(
        &self,
        owner: KeyOwner,
        batch: &mut Batch,
    ) -> Result<Arc<DataKey>, DomainError> {
        let dek = DataKey::generate()?;
        let wrapped = self.keyring()?.wrap(&dek)?;
        batch.require_absent(DEKS, owner.key());
        batch.put(DEKS, owner.key(), wrapped);
        let dek = Arc::new(dek);
        self.cache
            .lock()
            .map_err(|_| poisoned())?
            .put(owner, dek.clone());
        Ok(dek)
    }

    /// The owner's data key, from the cache or unwrapped from the store.
    pub fn key(&self, owner: KeyOwner) -> Result<Arc<DataKey>, DomainError> {
        if let Some(k) = self.cache.lock().map_err(|_| poisoned())?.get(&owner) {
            self.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(k.clone());
        }
        self.cache_misses.fetch_add(1, Ordering::Relaxed);
        let wrapped = self
            .store
            .get(DEKS, &owner.key())?
            .ok_or(DomainError::NotFound)?;
        let dek = match self.keyring()?.unwrap(&wrapped) {
            Ok(dek) => dek,
            // Perhaps wrapped under a key another instance made: read ours again.
            Err(e) => match self.reloaded()? {
                Some(keyring) => keyring.unwrap(&wrapped)?,
                None => return Err(e.into()),
            },
        };
        let dek = Arc::new(dek);
        self.cache
            .lock()
            .map_err(|_| poisoned())?
            .put(owner, dek.clone());
        Ok(dek)
    }

    /// Drops a cached key (after erasure, or when a batch that created it failed).
    pub fn forget(&self, owner: KeyOwner) {
        if let Ok(mut c) = self.cache.lock() {
            c.pop(&owner);
        }
    }

    pub fn seal(
        &self,
        dek: &DataKey,
        aad: &Aad<'_>,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, DomainError> {
        Ok(seal(dek, &aad.bytes(), plaintext)?)
    }

    pub fn open(
        &self,
        dek: &DataKey,
        aad: &Aad<'_>,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, DomainError> {
        Ok(open(dek, &aad.bytes(), sealed)?)
    }

    /// A blind index: equal inputs give equal outputs, and nothing else can be
    /// learnt from it without the index key.
    pub fn blind(&self, domain: &str, value: &str) -> [u8; 32] {
        self.index.blind(domain, value.as_bytes())
    }

    /// Re-wraps every data key in the store under the newest master key of
    /// `keyring`. Records are not touched. Safe while the service runs: the
    /// new keyring becomes current first, so keys made meanwhile are wrapped
    /// under the new master key, and each pass re-wraps (compare-and-swap)
    /// only keys the newest master key cannot open yet, until none is left.
    /// Returns how many keys were re-wrapped.
    pub fn rewrap_all(&self, keyring: MasterKeyring) -> Result<usize, DomainError> {
        let keyring = Arc::new(keyring);
        let newest = keyring.newest_only();
        *self.keyring.write().map_err(|_| poisoned())? = keyring.clone();
        let mut total = 0;
        for _ in 0..REWRAP_PASSES {
            let mut batch = Batch::new();
            let mut n = 0;
            for item in self.store.scan(DEKS, b"") {
                let (k, wrapped) = item?;
                if newest.unwrap(&wrapped).is_ok() {
                    continue;
                }
                let dek = keyring.unwrap(&wrapped)?;
                let rewrapped = keyring.wrap(&dek)?;
                // Compare-and-swap: a key changed meanwhile (e.g. erased) is not revived.
                batch.require_equals(DEKS, k.clone(), Some(wrapped));
                batch.put(DEKS, k, rewrapped);
                n += 1;
            }
            if n == 0 {
                return Ok(total);
            }
            match self.store.submit(batch).wait() {
                Ok(_) => total += n,
                // A key was erased or created under us: scan again.
                Err(keyhold_storage::StorageError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(DomainError::Internal(
            "data keys kept changing during the rotation; run it again".into(),
        ))
    }
}
