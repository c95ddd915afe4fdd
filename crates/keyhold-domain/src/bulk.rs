//! Bulk loading of new records, for benchmarks and large synthetic data sets:
//! the same rows the demo seeder and the services write (a data key, sealed
//! demographics, the NHS number index, every entry sealed under the patient's
//! key, an audit event), built apart from writing them.
//!
//! [`Keyhold::prepare_patient`] does the work that needs a core (key wrapping,
//! sealing, JSON) and touches no store, so callers run it on every core at
//! once; [`Keyhold::write_prepared`] hands the batch to the store's one
//! committer without waiting, so many patients in flight share each flush
//! (group commit). Each patient is one atomic batch; it is durable once its
//! [`PendingWrite`] resolves.

use keyhold_storage::{Batch, Ticket};

use crate::audit::{AuditAction, AuditActor, AuditEvent, Outcome};
use crate::ids::KeyOwner;
use crate::{ContactDetails, Demographics, DomainError, Keyhold, NewEntry, PatientId, Source};

/// A new patient and their entries, sealed and ready to write.
pub struct PreparedPatient {
    pub patient: PatientId,
    batch: Batch,
}

impl PreparedPatient {
    /// Writes (and preconditions) in the batch.
    pub fn operations(&self) -> usize {
        self.batch.len()
    }
}

/// One prepared patient's write, on its way to disk.
#[must_use = "a write is not durable until it is waited for"]
pub struct PendingWrite {
    patient: PatientId,
    ticket: Ticket,
}

impl PendingWrite {
    /// Blocks the calling thread until the write is durable.
    pub fn wait(self) -> Result<PatientId, DomainError> {
        self.ticket.wait()?;
        Ok(self.patient)
    }

    /// As [`PendingWrite::wait`], from async code.
    pub async fn done(self) -> Result<PatientId, DomainError> {
        self.ticket.await?;
        Ok(self.patient)
    }
}

impl Keyhold {
    /// Builds, without writing, a new patient with `entries` (a care network
    /// contact carries its details): the rows `seed_patient` writes, and one
    /// audit event (the operator created the record, for `purpose`) for the
    /// whole, in one batch. CPU work only: call it from many threads.
    pub fn prepare_patient(
        &self,
        demographics: &Demographics,
        entries: Vec<(NewEntry, Source, Option<ContactDetails>)>,
        purpose: &str,
    ) -> Result<PreparedPatient, DomainError> {
        let mut batch = Batch::new();
        let patient = self.new_patient(&mut batch, demographics)?;
        for (entry, source, contact) in entries {
            Self::validate_entry(&entry)?;
            self.entry_with_contact_into(&mut batch, patient, entry, source, contact)?;
        }
        self.audit.add(
            &mut batch,
            &AuditEvent {
                at: self.clock.now(),
                actor: AuditActor::operator(),
                action: AuditAction::Create,
                patient: Some(patient),
                resource: "record".into(),
                purpose: purpose.into(),
                outcome: Outcome::Success,
                basis: None,
            },
        )?;
        // The key is in the batch; the cache need not keep it for a patient
        // nobody reads yet (a bulk load would only churn it).
        self.vault.forget(KeyOwner::Patient(patient));
        Ok(PreparedPatient { patient, batch })
    }

    /// Queues a prepared patient for the committer and returns at once.
    pub fn write_prepared(&self, prepared: PreparedPatient) -> PendingWrite {
        PendingWrite {
            patient: prepared.patient,
            ticket: self.store.submit(prepared.batch),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::Arc;

    use super::*;
    use crate::clock::SystemClock;
    use crate::keystore::{init_keys, load_keys};
    use crate::policy::Principal;
    use crate::{AccountId, Category, EntryKind, IdentityLevel, Settings};

    #[tokio::test]
    async fn a_prepared_patient_reads_back_whole_and_audited() {
        let dir = tempfile::tempdir().unwrap();
        init_keys(&dir.path().join("keys")).unwrap();
        let core = Keyhold::with_store(
            crate::open_memory_store().unwrap(),
            load_keys(&dir.path().join("keys")).unwrap(),
            Settings {
                danger_fast_hashing: true,
                ..Settings::default()
            },
            Arc::new(SystemClock),
        )
        .unwrap();
        let mut d = Demographics::empty();
        d.family_name = "Bulk".into();
        let entries = (0..3)
            .map(|i| {
                (
                    NewEntry {
                        kind: EntryKind::Condition,
                        title: format!("Condition {i}"),
                        date: time::macros::date!(2024 - 01 - 01),
                        end_date: None,
                        category: Category::General,
                        details: "Synthetic.".into(),
                    },
                    Source::PatientEntered,
                    None,
                )
            })
            .collect();
        let prepared = core.prepare_patient(&d, entries, "bulk test").unwrap();
        let patient = core.write_prepared(prepared).done().await.unwrap();
        let owner = Principal::patient(AccountId::new_random(), Some(patient), IdentityLevel::P9);
        let view = core.record(&owner, patient).await.unwrap();
        assert_eq!(view.demographics.family_name, "Bulk");
        assert_eq!(view.entries.len(), 3);
        let audited = crate::audit::verify(core.store().as_ref())
            .unwrap()
            .unwrap();
        // The creation, and the read.
        assert_eq!(audited.entries, 2);
    }
}
