//! Erasing a patient: their data key is deleted (crypto-shredding: every
//! sealed row of theirs, wherever a copy survives, can no longer be opened)
//! and so is every row and index entry that belongs to their record.
//!
//! The erasure ledger, a file beside the master keys, lists every patient
//! erased. It is written (and synced) before the store is touched and is
//! applied whenever a store is opened, so a restore from a backup taken
//! before an erasure, or an erasure cut short by a crash, is finished on the
//! next start. It lives with the keys, not the data, because it must outlive
//! the data folder: a restore replaces that folder, the keys stay.
//!
//! Audit entries are kept (DESIGN: they survive erasure); they hold ids and
//! labels, no personal or clinical content.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use keyhold_storage::{Batch, StorageError, TreeName};
use serde::Deserialize;
use time::OffsetDateTime;

use crate::audit::{AuditAction, AuditActor, AuditEvent, Outcome};
use crate::ids::KeyOwner;
use crate::rows::AccountRowV1;
use crate::trees::{
    ACCOUNTS, ACCOUNTS_BY_EMAIL, ACCOUNTS_BY_NHS_LOGIN, BREAK_GLASS, BREAK_GLASS_BY_ORG, DEKS,
    DOCUMENTS, DOC_CHUNKS, EMAIL_TOKENS, ENTRIES, FEED_IDENTIFIERS, GRANTS, GRANTS_BY_ACCOUNT,
    GRANTS_BY_ORG, INVITES, MEMBERS_BY_ACCOUNT, PATIENTS, PATIENTS_BY_NHS,
    QUESTIONNAIRE_ASSIGNMENTS, RECENT_RECORDS, SESSIONS, WORKLISTS, WORKLIST_NAMES,
};
use crate::{AccountId, DomainError, Keyhold, PatientId};

/// The ledger's file name in the keys folder.
pub const LEDGER_FILE: &str = "erasures.txt";

/// How many times the sweep runs before giving up: a write that raced the
/// first sweep (an entry added as the erasure ran) is caught by the next.
const SWEEPS: usize = 4;

/// The list of erased patients, one line each: `<patient id> <RFC 3339 time>`.
/// Ids are random and say nothing about the person.
#[derive(Clone, Debug)]
pub struct ErasureLedger {
    path: PathBuf,
}

impl ErasureLedger {
    /// The ledger kept in the keys folder `keys`.
    pub fn in_keys(keys: &Path) -> Self {
        ErasureLedger {
            path: keys.join(LEDGER_FILE),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every patient erased so far (none if the file does not exist yet).
    /// A line that does not parse stops everything: a damaged ledger must be
    /// looked at by a person, not half-applied.
    pub fn read(&self) -> Result<Vec<PatientId>, DomainError> {
        let text = match fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(DomainError::Keys(format!(
                    "cannot read the erasure ledger {}: {e}",
                    self.path.display()
                )))
            }
        };
        let mut out = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let id = line.split_whitespace().next().unwrap_or_default();
            let patient = id.parse::<PatientId>().map_err(|_| {
                DomainError::Keys(format!(
                    "line {} of the erasure ledger {} is not `<patient id> <time>`",
                    n + 1,
                    self.path.display()
                ))
            })?;
            out.push(patient);
        }
        Ok(out)
    }

    /// Appends `patient` and syncs the file (created mode 0600) and its folder.
    pub fn record(&self, patient: PatientId, at: OffsetDateTime) -> Result<(), DomainError> {
        let fail = |e: std::io::Error| {
            DomainError::Keys(format!(
                "cannot write the erasure ledger {}: {e}",
                self.path.display()
            ))
        };
        let mut f = fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&self.path)
            .map_err(fail)?;
        let when = at
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(|e| DomainError::Internal(e.to_string()))?;
        writeln!(f, "{patient} {when}").map_err(fail)?;
        f.sync_all().map_err(fail)?;
        if let Some(dir) = self.path.parent() {
            if let Ok(d) = fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

/// What an erasure removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErasureReport {
    /// Rows deleted, indexes included.
    pub rows: usize,
    /// Sign-in accounts deleted (those that were only this patient's).
    pub accounts_deleted: usize,
    /// Accounts kept but unlinked from the record, because they also work for
    /// an organisation or act for someone else.
    pub accounts_unlinked: usize,
}

/// Just enough of an email-token row to see whose it is.
#[derive(Deserialize)]
struct Owned {
    account: AccountId,
}

/// Just enough of an invitation row to see which record it shares.
#[derive(Deserialize)]
struct InviteTargetOnly {
    target: serde_json::Value,
}

impl Keyhold {
    /// Erases `patient`: records the erasure in `ledger` first, then deletes
    /// their data key, every row of their record, the indexes that point to
    /// it and the sign-in accounts that were only theirs; adds an audit entry.
    /// Erasing a patient already erased (or unknown) is refused as not found.
    pub async fn erase_patient(
        &self,
        patient: PatientId,
        ledger: &ErasureLedger,
        actor: AuditActor,
    ) -> Result<ErasureReport, DomainError> {
        if !self.holds_patient(patient)? {
            return Err(DomainError::NotFound);
        }
        ledger.record(patient, self.clock.now())?;
        self.erase_rows(patient, actor, "erasure").await
    }

    /// Finishes every erasure in `ledger` that the store does not reflect (a
    /// restored older backup, or a crash during an erasure). Returns the
    /// patients erased now.
    pub async fn apply_erasure_ledger(
        &self,
        ledger: &ErasureLedger,
    ) -> Result<Vec<PatientId>, DomainError> {
        let mut done = Vec::new();
        for patient in ledger.read()? {
            if self.holds_patient(patient)? {
                self.erase_rows(
                    patient,
                    AuditActor::operator(),
                    "erasure re-applied from the erasure ledger",
                )
                .await?;
                done.push(patient);
            }
        }
        Ok(done)
    }

    /// Whether anything of the record is left: its data key or its row.
    fn holds_patient(&self, patient: PatientId) -> Result<bool, DomainError> {
        Ok(self
            .store
            .get(DEKS, &KeyOwner::Patient(patient).key())?
            .is_some()
            || self.store.get(PATIENTS, patient.as_bytes())?.is_some()
            || self
                .store
                .scan(ENTRIES, patient.as_bytes())
                .next()
                .is_some())
    }

    async fn erase_rows(
        &self,
        patient: PatientId,
        actor: AuditActor,
        purpose: &str,
    ) -> Result<ErasureReport, DomainError> {
        let mut report = ErasureReport::default();
        let mut audited = false;
        for _ in 0..SWEEPS {
            let mut batch = Batch::new();
            let mut accounts = (0, 0);
            let rows = self.collect_erasure(patient, &mut batch, &mut accounts)?;
            if rows == 0 && audited {
                self.vault.forget(KeyOwner::Patient(patient));
                return Ok(report);
            }
            if !audited {
                self.audit.add(
                    &mut batch,
                    &AuditEvent {
                        at: self.clock.now(),
                        actor: actor.clone(),
                        action: AuditAction::Erase,
                        patient: Some(patient),
                        resource: "record".into(),
                        purpose: purpose.into(),
                        outcome: Outcome::Success,
                        basis: None,
                    },
                )?;
            }
            match self.store.submit(batch).await {
                Ok(_) => {
                    audited = true;
                    report.rows += rows;
                    report.accounts_deleted += accounts.0;
                    report.accounts_unlinked += accounts.1;
                }
                // An account row changed under us: read again.
                Err(StorageError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
            self.vault.forget(KeyOwner::Patient(patient));
        }
        if audited {
            Err(DomainError::Internal(
                "the record kept receiving writes during its erasure; it is in the erasure \
                 ledger and will be swept again at the next start"
                    .into(),
            ))
        } else {
            Err(DomainError::Conflict)
        }
    }

    /// Adds to `batch` the deletion of everything of `patient`; returns the
    /// number of rows. `accounts` counts (deleted, unlinked) accounts.
    fn collect_erasure(
        &self,
        patient: PatientId,
        batch: &mut Batch,
        accounts: &mut (usize, usize),
    ) -> Result<usize, DomainError> {
        let p = patient.as_bytes();
        let mut rows = 0;
        let mut delete = |batch: &mut Batch, tree: TreeName, key: Vec<u8>| {
            batch.delete(tree, key);
            rows += 1;
        };
        // The data key first in the list; the batch is atomic anyway.
        let dek = KeyOwner::Patient(patient).key();
        if self.store.get(DEKS, &dek)?.is_some() {
            delete(batch, DEKS, dek);
        }
        // Trees keyed by the patient.
        for tree in [
            PATIENTS,
            ENTRIES,
            DOCUMENTS,
            DOC_CHUNKS,
            GRANTS,
            BREAK_GLASS,
            QUESTIONNAIRE_ASSIGNMENTS,
        ] {
            for item in self.store.scan(tree, p) {
                delete(batch, tree, item?.0);
            }
        }
        // Indexes that name the patient in their key (`x ‖ patient ‖ …`) or value.
        for tree in [GRANTS_BY_ACCOUNT, GRANTS_BY_ORG] {
            for item in self.store.scan(tree, b"") {
                let (k, _) = item?;
                if k.get(16..32) == Some(&p[..]) {
                    delete(batch, tree, k);
                }
            }
        }
        for tree in [PATIENTS_BY_NHS, BREAK_GLASS_BY_ORG, FEED_IDENTIFIERS] {
            for item in self.store.scan(tree, b"") {
                let (k, v) = item?;
                if v.starts_with(p) {
                    delete(batch, tree, k);
                }
            }
        }
        for item in self.store.scan(INVITES, b"") {
            let (k, v) = item?;
            let shares_this = serde_json::from_slice::<InviteTargetOnly>(&v)
                .ok()
                .and_then(|r| r.target.get("patient").cloned())
                .and_then(|id| serde_json::from_value::<PatientId>(id).ok())
                == Some(patient);
            if shares_this {
                delete(batch, INVITES, k);
            }
        }
        // The accounts that are this patient's sign-in.
        let mut owned: Vec<(Vec<u8>, Vec<u8>, AccountRowV1)> = Vec::new();
        for item in self.store.scan(ACCOUNTS, b"") {
            let (k, v) = item?;
            if let Ok(row) = serde_json::from_slice::<AccountRowV1>(&v) {
                if row.patient == Some(patient) {
                    owned.push((k, v, row));
                }
            }
        }
        for (key, raw, mut row) in owned {
            let Some(account) = AccountId::from_bytes(&key) else {
                continue;
            };
            let a = account.as_bytes();
            let works = self.store.scan(MEMBERS_BY_ACCOUNT, a).next().is_some();
            let acts_for_others = self.store.scan(GRANTS_BY_ACCOUNT, a).any(|item| {
                item.map(|(k, _)| k.get(16..32) != Some(&p[..]))
                    .unwrap_or(true)
            });
            batch.require_equals(ACCOUNTS, key.clone(), Some(raw));
            if works || acts_for_others {
                row.patient = None;
                batch.put(ACCOUNTS, key, serde_json::to_vec(&row)?);
                accounts.1 += 1;
                continue;
            }
            delete(batch, ACCOUNTS, key);
            accounts.0 += 1;
            let account_dek = KeyOwner::Account(account).key();
            if self.store.get(DEKS, &account_dek)?.is_some() {
                delete(batch, DEKS, account_dek);
            }
            for tree in [ACCOUNTS_BY_EMAIL, ACCOUNTS_BY_NHS_LOGIN] {
                for item in self.store.scan(tree, b"") {
                    let (k, v) = item?;
                    if v == a {
                        delete(batch, tree, k);
                    }
                }
            }
            for tree in [SESSIONS, EMAIL_TOKENS] {
                for item in self.store.scan(tree, b"") {
                    let (k, v) = item?;
                    if serde_json::from_slice::<Owned>(&v)
                        .map(|o| o.account == account)
                        .unwrap_or(false)
                    {
                        delete(batch, tree, k);
                    }
                }
            }
            for tree in [RECENT_RECORDS, WORKLIST_NAMES, WORKLISTS] {
                for item in self.store.scan(tree, a) {
                    delete(batch, tree, item?.0);
                }
            }
            self.vault.forget(KeyOwner::Account(account));
        }
        Ok(rows)
    }
}
