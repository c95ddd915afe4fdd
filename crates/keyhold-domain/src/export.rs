//! The patient's whole record, for taking it elsewhere: demographics, every
//! entry and every document the principal may export, decided once and
//! audited once ("Downloaded the whole record").

use crate::audit::AuditAction;
use crate::policy::{Action, Principal, Resource};
use crate::{Demographics, DocumentReader, DomainError, Entry, Keyhold, PatientId};

/// Everything the principal may take away, opened for one export.
pub struct RecordExport {
    pub demographics: Demographics,
    /// Oldest first, as a record is read from the start.
    pub entries: Vec<Entry>,
    pub documents: Vec<DocumentReader>,
}

impl Keyhold {
    /// The whole record for an export (`Patient/$everything`, the zip).
    pub async fn export_record(
        &self,
        p: &Principal,
        patient: PatientId,
    ) -> Result<RecordExport, DomainError> {
        const WHAT: &str = "record-export";
        let access = self
            .authorize(
                p,
                Action::Export,
                Resource::whole(patient),
                AuditAction::Export,
                WHAT,
            )
            .await?;
        let demographics = Self::as_seen(self.load_demographics(patient)?, access.basis);
        let mut entries: Vec<Entry> = self
            .load_entries(patient)?
            .into_iter()
            .filter(|e| access.allows_item(p, Action::Export, patient, e.category, &e.source))
            .collect();
        entries.sort_by(|a, b| a.date.cmp(&b.date).then(a.recorded_at.cmp(&b.recorded_at)));
        let documents = self.visible_documents(p, patient, &access, Action::Export)?;
        self.audit
            .record(&self.event(p, &access, AuditAction::Export, patient, WHAT.into()))
            .await?;
        Ok(RecordExport {
            demographics,
            entries,
            documents,
        })
    }
}
