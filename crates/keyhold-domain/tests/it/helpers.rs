//! A `Keyhold` over sled in a temporary folder, and small tools to look at
//! (and tamper with) what it stores.

use std::path::Path;
use std::sync::Arc;

use keyhold_domain::audit::{self, AuditEntry};
use keyhold_domain::clock::{Clock, ManualClock};
use keyhold_domain::keystore::{init_keys, load_keys};
use keyhold_domain::policy::Principal;
use keyhold_domain::trees::AUDIT;
use keyhold_domain::{
    Category, DomainError, EntryKind, Keyhold, NewDocument, NewEntry, PatientId, SessionToken,
    Settings,
};
use keyhold_storage::{Batch, Store, TreeName};
use tempfile::TempDir;
use time::macros::{date, datetime};

pub const PASSWORD: &str = "correct horse battery";

/// Cheap argon2, everything else as in production.
pub fn fast() -> Settings {
    Settings {
        danger_fast_hashing: true,
        ..Default::default()
    }
}

/// One service over its own data and keys folders.
pub struct Env {
    pub dir: TempDir,
    pub clock: Arc<ManualClock>,
    pub core: Arc<Keyhold>,
}

impl Env {
    pub fn new() -> Env {
        Env::with(fast())
    }

    pub fn with(settings: Settings) -> Env {
        let dir = tempfile::tempdir().unwrap();
        init_keys(&dir.path().join("keys")).unwrap();
        let clock = Arc::new(ManualClock::new(datetime!(2026-01-15 09:00 UTC)));
        let core =
            open(dir.path(), &dir.path().join("keys"), settings, &clock).unwrap_or_else(|e| {
                panic!("open failed: {e}");
            });
        let mailer = keyhold_mail::Mailer::new(
            keyhold_mail::MailTransport::Outbox(dir.path().join("outbox")),
            keyhold_mail::DEFAULT_FROM,
        )
        .unwrap();
        let core = core.with_mailer(mailer).unwrap();
        Env { dir, clock, core }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        self.core.store()
    }

    /// Every message written to the outbox so far, oldest first.
    pub fn mails(&self) -> Vec<String> {
        let dir = self.dir.path().join("outbox");
        let mut files: Vec<_> = match std::fs::read_dir(&dir) {
            Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
            Err(_) => return Vec::new(),
        };
        files.sort_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap());
        files
            .into_iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect()
    }

    /// The token of the newest invitation link mailed to `to`.
    pub fn invitation_to(&self, to: &str) -> String {
        let mail = self
            .mails()
            .into_iter()
            .rev()
            .find(|m| m.contains(to))
            .unwrap_or_else(|| panic!("no mail to {to}"));
        let at = mail.find("/invitations/").expect("an invitation link") + "/invitations/".len();
        mail[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect()
    }

    /// The token of the newest link to `path` (e.g. "/account/confirm/")
    /// mailed to `to`.
    pub fn link_token(&self, to: &str, path: &str) -> String {
        let mail = self
            .mails()
            .into_iter()
            .rev()
            .find(|m| m.to_lowercase().contains(&to.to_lowercase()) && m.contains(path))
            .unwrap_or_else(|| panic!("no mail to {to} with a {path} link"));
        let at = mail.find(path).unwrap() + path.len();
        mail[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect()
    }

    /// Signs up and confirms the address from the mailed link, as a person
    /// would; the token stands for their browser.
    pub async fn signed_up(&self, name: &str, email: &str) -> keyhold_domain::SignedIn {
        self.core.sign_up(name, email, PASSWORD, "/").await.unwrap();
        let token = self.link_token(email, "/account/confirm/");
        self.core.confirm_email(&token).await.unwrap().0
    }

    /// Signs up someone by name; the token stands for their browser.
    pub async fn person(&self, name: &str, email: &str) -> SessionToken {
        self.signed_up(name, email).await.token
    }

    /// The principal as their next request sees it (memberships re-read).
    pub async fn now(&self, token: &SessionToken) -> Principal {
        self.core
            .session(token)
            .await
            .unwrap()
            .expect("a live session")
    }

    /// Signs up a new patient; returns who they are and their record.
    pub async fn patient(&self, email: &str) -> (Principal, PatientId, SessionToken) {
        let s = self.signed_up("Test Person", email).await;
        let patient = s
            .principal
            .own_patient
            .expect("a sign-up has its own record");
        (s.principal, patient, s.token)
    }
}

/// Opens the service over `root/data` with the keys in `keys`.
pub fn open(
    root: &Path,
    keys: &Path,
    settings: Settings,
    clock: &Arc<ManualClock>,
) -> Result<Arc<Keyhold>, DomainError> {
    let clock: Arc<dyn Clock> = clock.clone();
    Keyhold::open(&root.join("data"), load_keys(keys)?, settings, clock)
}

pub fn new_entry(title: &str) -> NewEntry {
    NewEntry {
        kind: EntryKind::Allergy,
        title: title.to_string(),
        date: date!(2024 - 03 - 14),
        end_date: None,
        category: Category::General,
        details: format!("details of {title}"),
    }
}

/// A PDF of exactly `len` bytes whose content differs from chunk to chunk, so
/// reordering chunks would change the bytes.
pub fn pdf(len: usize) -> Vec<u8> {
    let mut v = b"%PDF-1.4\n".to_vec();
    let mut i: u32 = 0;
    while v.len() < len {
        v.extend_from_slice(format!("{i:08} ").as_bytes());
        i += 1;
    }
    v.truncate(len);
    v
}

pub fn new_document(title: &str, bytes: Vec<u8>) -> NewDocument {
    NewDocument {
        title: title.to_string(),
        kind: keyhold_domain::DocumentKind::Letter,
        category: Category::General,
        filename: format!("{title}.pdf"),
        bytes,
    }
}

/// Writes raw bytes straight into the store, as an attacker with the disk could.
pub async fn put(store: &Arc<dyn Store>, tree: TreeName, key: Vec<u8>, value: Vec<u8>) {
    let mut b = Batch::new();
    b.put(tree, key, value);
    store.submit(b).await.unwrap();
}

/// Waits until every batch submitted before it has been applied (the
/// committer applies batches in order), e.g. a fire-and-forget session refresh.
pub async fn barrier(store: &Arc<dyn Store>) {
    store.submit(Batch::new()).await.unwrap();
}

pub fn get(store: &Arc<dyn Store>, tree: TreeName, key: &[u8]) -> Vec<u8> {
    store.get(tree, key).unwrap().expect("row exists")
}

pub fn pair(a: &[u8; 16], b: &[u8; 16]) -> Vec<u8> {
    let mut k = a.to_vec();
    k.extend_from_slice(b);
    k
}

pub fn count(store: &Arc<dyn Store>, tree: TreeName) -> usize {
    let mut n = 0;
    for row in store.scan(tree, b"") {
        row.unwrap();
        n += 1;
    }
    n
}

pub fn audit_count(store: &Arc<dyn Store>) -> usize {
    count(store, AUDIT)
}

pub fn last_audit(store: &Arc<dyn Store>) -> AuditEntry {
    let (_, v) = store.last(AUDIT).unwrap().expect("an audit entry");
    audit::decode(&v).expect("a well-formed audit entry")
}

/// The whole chain verifies and holds exactly `n` entries.
pub fn assert_chain(store: &Arc<dyn Store>, n: usize) {
    match audit::verify(store.as_ref()).unwrap() {
        Ok(summary) => assert_eq!(summary.entries, n as u64, "entries in the verified chain"),
        Err(brk) => panic!("audit chain broken: {brk}"),
    }
}
