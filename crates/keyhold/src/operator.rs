//! What the operator's commands do to an open service: rotate the master key,
//! take a snapshot, erase a patient. Each runs the same way whether the
//! command opened the store itself or the running server does it on the
//! command's behalf through the control socket (see `control`).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use keyhold_domain::audit::{AuditAction, AuditActor, AuditEvent, Outcome};
use keyhold_domain::erasure::{ErasureLedger, ErasureReport};
use keyhold_domain::keystore::{add_master_key, load_keys};
use keyhold_domain::{DomainError, Keyhold, NhsNumber, PatientId};
use serde::{Deserialize, Serialize};

/// What a rotation did.
#[derive(Debug, Serialize, Deserialize)]
pub struct Rotated {
    pub new_key: PathBuf,
    pub rewrapped: usize,
    /// Master key files no longer needed once the next backup is taken.
    pub older: Vec<PathBuf>,
}

/// Adds a master key to `keys` and re-wraps every data key under it.
/// `exclusive` says no one else writes to the store: then a failure leaves
/// nothing wrapped under the new key and its file is withdrawn; a running
/// server may already have wrapped new data keys with it, so there it stays.
pub fn rotate(core: &Keyhold, keys: &Path, exclusive: bool) -> Result<Rotated> {
    let new_key = add_master_key(keys)?;
    let loaded = load_keys(keys)?;
    let older: Vec<PathBuf> = loaded
        .master_files
        .iter()
        .filter(|p| **p != new_key)
        .cloned()
        .collect();
    let rewrapped = match core.rewrap_data_keys(loaded.keyring) {
        Ok(n) => n,
        Err(e) if exclusive => {
            let _ = std::fs::remove_file(&new_key);
            bail!("rotation failed, nothing changed: {e}");
        }
        Err(e) => bail!(
            "rotation stopped part-way: {e}; the new key {} is in use, run the rotation again",
            new_key.display()
        ),
    };
    operator_event(
        core,
        AuditAction::KeyRotation,
        None,
        "keys",
        "master key rotation",
    )?;
    Ok(Rotated {
        new_key,
        rewrapped,
        older,
    })
}

/// Who to erase: the operator names a record by NHS number or by its id.
/// No `Debug`: the NHS number must not end up in a log line.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErasureTarget {
    NhsNumber(String),
    Patient(PatientId),
}

/// Erases one patient (see `keyhold_domain::erasure`).
pub fn erase(
    core: &Keyhold,
    keys: &Path,
    target: &ErasureTarget,
) -> Result<(PatientId, ErasureReport)> {
    let patient = match target {
        ErasureTarget::Patient(p) => *p,
        ErasureTarget::NhsNumber(n) => {
            let nhs = NhsNumber::parse(n).map_err(|e| anyhow::anyhow!("--nhs-number: {e}"))?;
            core.patient_by_nhs_number(&nhs)?
                .context("no record has that NHS number")?
        }
    };
    let ledger = ErasureLedger::in_keys(keys);
    let report =
        block_on(core.erase_patient(patient, &ledger, AuditActor::operator())).map_err(|e| {
            match e.downcast_ref::<DomainError>() {
                Some(DomainError::NotFound) => {
                    anyhow::anyhow!("no record {patient} (already erased?)")
                }
                _ => e,
            }
        })?;
    Ok((patient, report))
}

/// Finishes the erasures the ledger in `keys` lists but the store does not
/// reflect (a restored older backup; an erasure cut short).
pub fn apply_ledger(core: &Keyhold, keys: &Path) -> Result<Vec<PatientId>> {
    let ledger = ErasureLedger::in_keys(keys);
    let done = block_on(core.apply_erasure_ledger(&ledger))?;
    for p in &done {
        tracing::warn!(patient = %p, "erased again: the store still held a patient the erasure ledger lists");
    }
    Ok(done)
}

/// Writes a consistent snapshot of the store to `out`, audited.
pub fn snapshot(core: &Keyhold, out: &mut dyn Write) -> Result<u64> {
    let rows = keyhold_domain::backup::write_snapshot(core.store().as_ref(), core.now(), out)?;
    operator_event(
        core,
        AuditAction::Export,
        None,
        "store/backup",
        "encrypted backup",
    )?;
    Ok(rows)
}

fn operator_event(
    core: &Keyhold,
    action: AuditAction,
    patient: Option<PatientId>,
    resource: &str,
    purpose: &str,
) -> Result<()> {
    block_on(core.audit_log().record(&AuditEvent {
        at: core.now(),
        actor: AuditActor::operator(),
        action,
        patient,
        resource: resource.into(),
        purpose: purpose.into(),
        outcome: Outcome::Success,
        basis: None,
    }))?;
    Ok(())
}

/// Runs a domain future from synchronous operator code: the command line
/// before it starts a runtime, or the control socket's own thread (never a
/// runtime worker, which must not block).
fn block_on<T>(f: impl std::future::Future<Output = Result<T, DomainError>>) -> Result<T> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a runtime")?;
    Ok(rt.block_on(f)?)
}

/// One line for the operator about an erasure.
pub fn describe_erasure(patient: PatientId, r: &ErasureReport) -> String {
    format!(
        "erased record {patient}: its data key and {} rows deleted; {} sign-in account(s) deleted, {} unlinked (they also work for an organisation or act for someone); \
         the audit trail keeps its entries; recorded in the erasure ledger",
        r.rows, r.accounts_deleted, r.accounts_unlinked
    )
}

/// Prints what a rotation did, the same whichever process ran it.
pub fn print_rotated(r: &Rotated) {
    println!("created {}", r.new_key.display());
    println!(
        "re-wrapped {} data keys under it; records were not re-encrypted",
        r.rewrapped
    );
    if !r.older.is_empty() {
        println!(
            "these older master keys open only backups taken before now: keep them (off this host) \
             while you keep those backups, then delete them:"
        );
        for p in &r.older {
            println!("  {}", p.display());
        }
    }
}
