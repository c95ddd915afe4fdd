//! `Keyhold`: the application core that every front end (web, command line)
//! drives. It owns the store, the vault, the audit log and the clock.

use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use keyhold_crypto::PasswordHasher;
use keyhold_mail::{Mailer, OutgoingMail};
use keyhold_storage::{open_memory, open_sled, Batch, ChainLink, Store};
use time::{Duration, OffsetDateTime};
use tokio::sync::Semaphore;

use crate::audit::{AuditChain, AuditLog};
use crate::clock::Clock;
use crate::ids::KeyOwner;
use crate::keystore::LoadedKeys;
use crate::trees::{AUDIT, DEKS, META, READABLE_SCHEMAS, SCHEMA_VERSION};
use crate::vault::Vault;
use crate::DomainError;

/// Tunables, with defaults fit for one machine.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Unwrapped data keys kept in memory.
    pub dek_cache_size: usize,
    /// Largest accepted upload, in bytes.
    pub max_upload_bytes: usize,
    /// Password hashes computed at once (each takes ~19 MiB and a core).
    pub hashing_concurrency: usize,
    /// Hashing requests allowed to wait; beyond this they are shed (503).
    pub hashing_max_waiting: usize,
    pub session_idle: Duration,
    pub session_absolute: Duration,
    /// Use the cheapest argon2 parameters. Tests only: never in production.
    pub danger_fast_hashing: bool,
    /// How long an invitation link (to a grant or to join an organisation) works.
    pub invitation_ttl: Duration,
    /// How long emergency access lasts once opened.
    pub break_glass_duration: Duration,
    /// The address people reach the service at, for links in mail.
    pub public_url: String,
    /// Failed sign-ins allowed per address and per account, and the waits
    /// after them (see `throttle`).
    pub sign_in_limits: crate::SignInLimits,
    /// Where the records are kept: the embedded sled store under the data
    /// folder (the default), or a PostgreSQL database several instances share.
    pub store: StoreBackend,
}

/// The storage backend [`Keyhold::open`] uses.
#[derive(Clone, Debug)]
pub enum StoreBackend {
    /// sled, in `DATA/store`.
    Sled(keyhold_storage::SledTuning),
    /// PostgreSQL (see `keyhold_storage::open_postgres`).
    Postgres(keyhold_storage::PgOptions),
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            dek_cache_size: 10_000,
            max_upload_bytes: 20 * 1024 * 1024,
            // Half the cores (at least one): hashing is bounded so that
            // reads keep the rest even while sign-ins flood in.
            hashing_concurrency: std::thread::available_parallelism()
                .map(|n| (n.get() / 2).max(1))
                .unwrap_or(1),
            hashing_max_waiting: 64,
            session_idle: Duration::minutes(30),
            session_absolute: Duration::hours(12),
            danger_fast_hashing: false,
            invitation_ttl: Duration::days(7),
            break_glass_duration: Duration::hours(1),
            public_url: "http://127.0.0.1:8080".into(),
            sign_in_limits: crate::SignInLimits::default(),
            store: StoreBackend::Sled(keyhold_storage::SledTuning::default()),
        }
    }
}

/// Password hashing off the async runtime, bounded: a flood of sign-ins waits
/// for a permit or is shed, and cannot starve other requests of threads.
pub(crate) struct Hashing {
    hasher: Arc<PasswordHasher>,
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_waiting: usize,
    /// Hashes started since the service opened.
    started: AtomicU64,
}

/// Holds one place in the hashing queue and gives it back when dropped, so a
/// request cancelled while it waits (a client that hung up) frees its place.
struct QueuePlace<'a>(&'a AtomicUsize);

impl Drop for QueuePlace<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Hashing {
    /// Whether a request for a hash now would be shed: callers check this
    /// before any other work, so that a flood of sign-ins beyond the queue
    /// costs as little as possible (the answer is the same either way).
    pub(crate) fn is_full(&self) -> bool {
        self.waiting.load(Ordering::SeqCst) >= self.max_waiting
    }

    /// Requests waiting for a hashing permit now (for `/metrics`).
    pub(crate) fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    pub(crate) async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&PasswordHasher) -> T + Send + 'static,
    ) -> Result<T, DomainError> {
        let place = QueuePlace(&self.waiting);
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.max_waiting {
            return Err(DomainError::Overloaded);
        }
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| DomainError::Internal("hashing closed".into()))?;
        drop(place);
        self.started.fetch_add(1, Ordering::Relaxed);
        let hasher = self.hasher.clone();
        // The permit travels with the work: if the request is cancelled now, the
        // hash still finishes on its thread, and only then is the slot free, so
        // no more than `hashing_concurrency` hashes ever run at once.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            f(&hasher)
        })
        .await
        .map_err(|e| DomainError::Internal(format!("hashing task: {e}")))
    }
}

pub struct Keyhold {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) vault: Vault,
    pub(crate) audit: AuditLog,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) hashing: Hashing,
    /// Sign-in limits per address and per account (in memory).
    pub(crate) throttle: crate::throttle::Throttle,
    pub(crate) settings: Settings,
    /// Outgoing mail (invitations, emergency-access notices). `None`: mail is
    /// not configured, and anything that must send one fails loudly.
    pub(crate) mailer: Option<Arc<Mailer>>,
    /// Signs audit checkpoints (see `checkpoint`).
    pub(crate) signing: Arc<keyhold_crypto::AuditSigningKey>,
}

fn chains() -> Vec<(keyhold_storage::TreeName, Arc<dyn ChainLink>)> {
    vec![(AUDIT, Arc::new(AuditChain))]
}

/// Opens the sled store under `data_dir` (created if absent).
pub fn open_store(data_dir: &Path) -> Result<Arc<dyn Store>, DomainError> {
    std::fs::create_dir_all(data_dir)
        .map_err(|e| DomainError::Internal(format!("cannot create {}: {e}", data_dir.display())))?;
    Ok(open_sled(&data_dir.join("store"), chains())?)
}

/// Opens the store `backend` names: sled under `data_dir`, or PostgreSQL.
pub fn open_backend(
    data_dir: &Path,
    backend: &StoreBackend,
) -> Result<Arc<dyn Store>, DomainError> {
    match backend {
        StoreBackend::Sled(tuning) => {
            std::fs::create_dir_all(data_dir).map_err(|e| {
                DomainError::Internal(format!("cannot create {}: {e}", data_dir.display()))
            })?;
            Ok(keyhold_storage::open_sled_tuned(
                &data_dir.join("store"),
                chains(),
                *tuning,
            )?)
        }
        StoreBackend::Postgres(options) => Ok(keyhold_storage::open_postgres(options, chains())?),
    }
}

/// An in-memory store, for tests of the layers above.
pub fn open_memory_store() -> Result<Arc<dyn Store>, DomainError> {
    Ok(open_memory(chains())?)
}

impl Keyhold {
    /// Opens the service over the store `settings.store` names (by default,
    /// sled in `data_dir`).
    pub fn open(
        data_dir: &Path,
        keys: LoadedKeys,
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Self>, DomainError> {
        Self::with_store(
            open_backend(data_dir, &settings.store)?,
            keys,
            settings,
            clock,
        )
    }

    /// Opens the service over any store; checks the schema version and that the
    /// master keys open this store's data keys.
    pub fn with_store(
        store: Arc<dyn Store>,
        keys: LoadedKeys,
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Self>, DomainError> {
        check_schema(store.as_ref())?;
        let vault = Vault::new(
            store.clone(),
            keys.keyring,
            keys.index,
            settings.dek_cache_size,
        );
        check_canary(store.as_ref(), &vault)?;
        let hasher = if settings.danger_fast_hashing {
            PasswordHasher::danger_fast_for_tests()
        } else {
            PasswordHasher::owasp()
        };
        let hashing = Hashing {
            hasher: Arc::new(hasher),
            permits: Arc::new(Semaphore::new(settings.hashing_concurrency.max(1))),
            waiting: AtomicUsize::new(0),
            max_waiting: settings.hashing_max_waiting,
            started: AtomicU64::new(0),
        };
        Ok(Arc::new(Keyhold {
            audit: AuditLog::new(store.clone()),
            store,
            vault,
            clock,
            hashing,
            throttle: crate::throttle::Throttle::new(settings.sign_in_limits),
            settings,
            signing: Arc::new(keys.audit),
            mailer: None,
        }))
    }

    /// Gives the service a way to send mail. Call once, before serving.
    pub fn with_mailer(mut self: Arc<Self>, mailer: Mailer) -> Result<Arc<Self>, DomainError> {
        let me = Arc::get_mut(&mut self).ok_or_else(|| {
            DomainError::Internal("set the mailer before sharing the service".into())
        })?;
        me.mailer = Some(Arc::new(mailer));
        Ok(self)
    }

    /// Sets the address mailed links start with, when the configuration did
    /// not (the server's own address once bound). Call before serving.
    pub fn with_public_url(mut self: Arc<Self>, url: String) -> Result<Arc<Self>, DomainError> {
        let me = Arc::get_mut(&mut self).ok_or_else(|| {
            DomainError::Internal("set the public URL before sharing the service".into())
        })?;
        me.settings.public_url = url;
        Ok(self)
    }

    /// A link to `path` on this service, for mail.
    pub(crate) fn link(&self, path: &str) -> String {
        format!("{}{path}", self.settings.public_url.trim_end_matches('/'))
    }

    /// Sends one message. Bodies carry links and notices only: never record
    /// content, never a password.
    pub(crate) async fn send_mail(
        &self,
        to: &crate::Email,
        subject: &str,
        text: &str,
    ) -> Result<(), DomainError> {
        let mailer = self
            .mailer
            .as_ref()
            .ok_or_else(|| DomainError::Internal("mail is not configured".into()))?;
        mailer
            .send(OutgoingMail {
                to: to.as_str().to_string(),
                subject: subject.to_string(),
                text: text.to_string(),
            })
            .await
            .map_err(|e| DomainError::Mail(e.to_string()))
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The service's clock (fixed in tests).
    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Password hashes (and dummy verifications) started since the service
    /// opened: for monitoring, and for tests that a refusal spent none.
    pub fn password_hashes_started(&self) -> u64 {
        self.hashing.started.load(Ordering::Relaxed)
    }

    pub fn audit_log(&self) -> &AuditLog {
        &self.audit
    }

    /// A MAC key derived from the index key for one purpose (e.g. "csrf"), so the
    /// web layer needs no key file of its own and purposes cannot be confused.
    pub fn mac_key(&self, purpose: &str) -> keyhold_crypto::MacKey {
        self.vault.index_key().derive(purpose)
    }

    /// Today's date by the service's clock (ages, "future appointments").
    pub fn today(&self) -> time::Date {
        self.clock.now().date()
    }

    /// The store answers and the master keys open its data keys.
    pub fn health(&self) -> Result<(), DomainError> {
        self.store.get(META, b"schema_version")?;
        check_canary(self.store.as_ref(), &self.vault)
    }

    /// Where to read the master keys again when a data key is wrapped under
    /// one this process lacks: after another instance on a shared database
    /// rotated (see `Vault::reload_keyring_from`). Call before serving.
    pub fn reload_keys_from(&self, source: crate::vault::KeyringSource) -> Result<(), DomainError> {
        self.vault.reload_keyring_from(source)
    }

    /// Re-wraps every data key under the newest key of `keys` (rotation).
    pub fn rewrap_data_keys(
        &self,
        keys: keyhold_crypto::MasterKeyring,
    ) -> Result<usize, DomainError> {
        self.vault.rewrap_all(keys)
    }
}

fn check_schema(store: &dyn Store) -> Result<(), DomainError> {
    loop {
        let current = store.get(META, b"schema_version")?;
        let found = current.as_ref().map(|v| {
            <[u8; 4]>::try_from(v.as_slice())
                .map(u32::from_be_bytes)
                .unwrap_or(0)
        });
        match found {
            Some(SCHEMA_VERSION) => return Ok(()),
            Some(old) if READABLE_SCHEMAS.contains(&old) => {}
            Some(other) => {
                return Err(DomainError::Schema(format!(
                    "this store has schema version {other}, but this keyhold reads versions \
                     {READABLE_SCHEMAS:?} and {SCHEMA_VERSION}; use the matching keyhold release \
                     (or its migration) for this data folder"
                )))
            }
            None => {}
        }
        // New, or an older schema this build reads: mark it as this one.
        let mut b = Batch::new();
        b.require_equals(META, b"schema_version".to_vec(), current);
        b.put(
            META,
            b"schema_version".to_vec(),
            SCHEMA_VERSION.to_be_bytes().to_vec(),
        );
        match store.submit(b).wait() {
            Ok(_) => return Ok(()),
            // Another instance marked it meanwhile: look again.
            Err(keyhold_storage::StorageError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// The canary is a data key like any other; if it does not unwrap, the keys
/// folder does not belong to this data folder, and nothing would open.
fn check_canary(store: &dyn Store, vault: &Vault) -> Result<(), DomainError> {
    if store.get(DEKS, &KeyOwner::Canary.key())?.is_none() {
        let mut b = Batch::new();
        vault.create_key(KeyOwner::Canary, &mut b)?;
        store.submit(b).wait()?;
        return Ok(());
    }
    vault.forget(KeyOwner::Canary);
    vault
        .key(KeyOwner::Canary)
        .map(|_| ())
        .map_err(|e| match e {
            DomainError::Crypto(_) => DomainError::Keys(
                "the master keys in the keys folder cannot open this store's data keys: \
             is --keys the folder that belongs to this --data folder?"
                    .into(),
            ),
            other => other,
        })
}
