//! The patient's record: demographics and entries. Every path checks the
//! policy, seals before saving, and audits before returning anything.

use keyhold_storage::Batch;
use time::OffsetDateTime;

use crate::audit::{AuditAction, AuditActor, AuditEvent, Outcome};
use crate::ids::KeyOwner;
use crate::policy::{decide, Action, Principal, Resource};
use crate::record::{MAX_DETAILS_CHARS, MAX_TITLE_CHARS};
use crate::rows::{EntryRowV1, PatientRowV1};
use crate::trees::{pair, ENTRIES, PATIENTS, PATIENTS_BY_NHS};
use crate::vault::Aad;
use crate::{
    Category, Demographics, DomainError, Entry, EntryId, FieldError, Keyhold, NewEntry, PatientId,
    Source,
};

const NHS_INDEX: &str = "nhs-number";

/// What the record page shows: who, and every entry the principal may see.
#[derive(Debug, Clone)]
pub struct RecordView {
    pub demographics: Demographics,
    pub entries: Vec<Entry>,
}

impl Keyhold {
    pub(crate) fn actor_for(&self, p: &Principal) -> AuditActor {
        AuditActor::patient(p.account)
    }

    /// Checks the policy; a denial is audited and looks like "not found".
    pub(crate) async fn authorize(
        &self,
        p: &Principal,
        action: Action,
        resource: Resource,
        audit_action: AuditAction,
        what: &str,
    ) -> Result<OffsetDateTime, DomainError> {
        let now = self.clock.now();
        if decide(p, action, &resource, now).is_allowed() {
            return Ok(now);
        }
        self.audit
            .record(&AuditEvent {
                at: now,
                actor: self.actor_for(p),
                action: audit_action,
                patient: Some(resource.patient),
                resource: what.to_string(),
                purpose: "no relationship".into(),
                outcome: Outcome::Denied,
            })
            .await?;
        Err(DomainError::NotFound)
    }

    pub(crate) fn event(
        &self,
        p: &Principal,
        at: OffsetDateTime,
        action: AuditAction,
        patient: PatientId,
        resource: String,
    ) -> AuditEvent {
        AuditEvent {
            at,
            actor: self.actor_for(p),
            action,
            patient: Some(patient),
            resource,
            purpose: "own record".into(),
            outcome: Outcome::Success,
        }
    }

    /// Adds a new patient (data key, sealed demographics, NHS number index) to `batch`.
    pub(crate) fn new_patient(
        &self,
        batch: &mut Batch,
        d: &Demographics,
    ) -> Result<PatientId, DomainError> {
        let id = PatientId::new_random();
        let owner = KeyOwner::Patient(id);
        let dek = self.vault.create_key(owner, batch)?;
        let sealed = self
            .vault
            .seal(&dek, &Aad::demographics(&id, 1), &serde_json::to_vec(d)?)?;
        let row = PatientRowV1 {
            version: 1,
            demographics: sealed,
            created_at: self.clock.now(),
        };
        batch.require_absent(PATIENTS, id.as_bytes().to_vec());
        batch.put(PATIENTS, id.as_bytes().to_vec(), serde_json::to_vec(&row)?);
        if let Some(nhs) = d.nhs_number {
            let key = self.vault.blind(NHS_INDEX, &nhs.digits()).to_vec();
            batch.require_absent(PATIENTS_BY_NHS, key.clone());
            batch.put(PATIENTS_BY_NHS, key, id.as_bytes().to_vec());
        }
        Ok(id)
    }

    /// The patient with this NHS number, by blind index.
    pub fn patient_by_nhs_number(
        &self,
        nhs: &crate::NhsNumber,
    ) -> Result<Option<PatientId>, DomainError> {
        let key = self.vault.blind(NHS_INDEX, &nhs.digits());
        Ok(self
            .store
            .get(PATIENTS_BY_NHS, &key)?
            .and_then(|b| PatientId::from_bytes(&b)))
    }

    fn load_demographics(&self, patient: PatientId) -> Result<Demographics, DomainError> {
        let raw = self
            .store
            .get(PATIENTS, patient.as_bytes())?
            .ok_or(DomainError::NotFound)?;
        let row: PatientRowV1 = serde_json::from_slice(&raw)?;
        let owner = KeyOwner::Patient(patient);
        let dek = self.vault.key(owner)?;
        let plain = self.vault.open(
            &dek,
            &Aad::demographics(&patient, row.version),
            &row.demographics,
        )?;
        Ok(serde_json::from_slice(&plain)?)
    }

    fn load_entries(&self, patient: PatientId) -> Result<Vec<Entry>, DomainError> {
        let owner = KeyOwner::Patient(patient);
        let dek = self.vault.key(owner)?;
        let mut out = Vec::new();
        for item in self.store.scan(ENTRIES, patient.as_bytes()) {
            let (key, raw) = item?;
            let row: EntryRowV1 = serde_json::from_slice(&raw)?;
            let plain = self.vault.open(
                &dek,
                &Aad::entry(patient, &key[16..], row.version),
                &row.sealed,
            )?;
            out.push(serde_json::from_slice(&plain)?);
        }
        Ok(out)
    }

    /// Demographics only (the banner and the demographics page).
    pub async fn demographics(
        &self,
        p: &Principal,
        patient: PatientId,
    ) -> Result<Demographics, DomainError> {
        let resource = Resource::whole(patient);
        let now = self
            .authorize(p, Action::Read, resource, AuditAction::Read, "demographics")
            .await?;
        let d = self.load_demographics(patient)?;
        self.audit
            .record(&self.event(p, now, AuditAction::Read, patient, "demographics".into()))
            .await?;
        Ok(d)
    }

    /// The whole record as the principal may see it, newest entries first.
    pub async fn record(
        &self,
        p: &Principal,
        patient: PatientId,
    ) -> Result<RecordView, DomainError> {
        let resource = Resource::whole(patient);
        let now = self
            .authorize(p, Action::Read, resource, AuditAction::Read, "record")
            .await?;
        let demographics = self.load_demographics(patient)?;
        let mut entries: Vec<Entry> = self
            .load_entries(patient)?
            .into_iter()
            .filter(|e| {
                decide(
                    p,
                    Action::Read,
                    &Resource::in_category(patient, e.category),
                    now,
                )
                .is_allowed()
            })
            .collect();
        entries.sort_by(|a, b| b.date.cmp(&a.date).then(b.recorded_at.cmp(&a.recorded_at)));
        self.audit
            .record(&self.event(p, now, AuditAction::Read, patient, "record".into()))
            .await?;
        Ok(RecordView {
            demographics,
            entries,
        })
    }

    /// One entry.
    pub async fn entry(
        &self,
        p: &Principal,
        patient: PatientId,
        id: EntryId,
    ) -> Result<Entry, DomainError> {
        let what = format!("entry/{id}");
        let now = self
            .authorize(
                p,
                Action::Read,
                Resource::whole(patient),
                AuditAction::Read,
                &what,
            )
            .await?;
        let raw = self
            .store
            .get(ENTRIES, &pair(patient.as_bytes(), id.as_bytes()))?
            .ok_or(DomainError::NotFound)?;
        let row: EntryRowV1 = serde_json::from_slice(&raw)?;
        let owner = KeyOwner::Patient(patient);
        let dek = self.vault.key(owner)?;
        let plain = self.vault.open(
            &dek,
            &Aad::entry(patient, id.as_bytes(), row.version),
            &row.sealed,
        )?;
        let entry: Entry = serde_json::from_slice(&plain)?;
        if !decide(
            p,
            Action::Read,
            &Resource::in_category(patient, entry.category),
            now,
        )
        .is_allowed()
        {
            return Err(DomainError::NotFound);
        }
        self.audit
            .record(&self.event(p, now, AuditAction::Read, patient, what))
            .await?;
        Ok(entry)
    }

    /// Checks a new entry's free text.
    pub fn validate_entry(new: &NewEntry) -> Result<(), DomainError> {
        let mut errors = Vec::new();
        let title = new.title.trim();
        if title.is_empty() {
            errors.push(FieldError::new("title", "Enter a title"));
        } else if title.chars().count() > MAX_TITLE_CHARS {
            errors.push(FieldError::new(
                "title",
                format!("Title must be {MAX_TITLE_CHARS} characters or fewer"),
            ));
        }
        if new.details.chars().count() > MAX_DETAILS_CHARS {
            errors.push(FieldError::new(
                "details",
                format!("Details must be {MAX_DETAILS_CHARS} characters or fewer"),
            ));
        }
        if let Some(end) = new.end_date {
            if end < new.date {
                errors.push(FieldError::new(
                    "end-date-day",
                    "The end date must be the same as or after the start date",
                ));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(DomainError::Invalid(errors))
        }
    }

    /// Builds and seals an entry into `batch` (no audit; callers add theirs).
    pub(crate) fn entry_into(
        &self,
        batch: &mut Batch,
        patient: PatientId,
        new: NewEntry,
        source: Source,
    ) -> Result<EntryId, DomainError> {
        let id = EntryId::new_random();
        let entry = Entry {
            id,
            kind: new.kind,
            title: new.title.trim().to_string(),
            date: new.date,
            end_date: new.end_date,
            category: new.category,
            source,
            details: new.details.trim_end().to_string(),
            recorded_at: self.clock.now(),
        };
        let owner = KeyOwner::Patient(patient);
        let dek = self.vault.key(owner)?;
        let sealed = self.vault.seal(
            &dek,
            &Aad::entry(patient, id.as_bytes(), 1),
            &serde_json::to_vec(&entry)?,
        )?;
        let key = pair(patient.as_bytes(), id.as_bytes());
        batch.require_absent(ENTRIES, key.clone());
        batch.put(
            ENTRIES,
            key,
            serde_json::to_vec(&EntryRowV1 { version: 1, sealed })?,
        );
        Ok(id)
    }

    /// Adds an entry the principal wrote. The entry and its audit entry are one
    /// atomic write.
    pub async fn add_entry(
        &self,
        p: &Principal,
        patient: PatientId,
        new: NewEntry,
    ) -> Result<EntryId, DomainError> {
        Self::validate_entry(&new)?;
        let category: Category = new.category;
        let now = self
            .authorize(
                p,
                Action::Contribute,
                Resource::in_category(patient, category),
                AuditAction::Create,
                "entry",
            )
            .await?;
        let mut batch = Batch::new();
        let id = self.entry_into(&mut batch, patient, new, Source::PatientEntered)?;
        self.audit.add(
            &mut batch,
            &self.event(p, now, AuditAction::Create, patient, format!("entry/{id}")),
        )?;
        self.store.submit(batch).await?;
        Ok(id)
    }
}
