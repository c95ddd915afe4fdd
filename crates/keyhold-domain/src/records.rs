//! The patient's record: demographics and entries. Every path checks the
//! policy, seals before saving, and audits before returning anything.

use keyhold_storage::Batch;
use time::OffsetDateTime;

use crate::audit::{AuditAction, AuditActor, AuditBasis, AuditEvent, AuditRole, Outcome};
use crate::consent::{BreakGlass, Grant};
use crate::ids::KeyOwner;
use crate::policy::{decide, Action, Basis, Decision, DenyReason, Facts, Principal, Resource};
use crate::record::{MAX_DETAILS_CHARS, MAX_TITLE_CHARS};
use crate::rows::{EntryRowV1, PatientRowV1};
use crate::trees::{pair, ENTRIES, PATIENTS, PATIENTS_BY_NHS};
use crate::vault::Aad;
use crate::{
    Category, ContactDetails, ContactKind, Demographics, DomainError, Entry, EntryId, EntryKind,
    FieldError, Keyhold, NewEntry, PatientId, Source,
};

const NHS_INDEX: &str = "nhs-number";

/// What the record page shows: who, and every entry the principal may see.
#[derive(Debug, Clone)]
pub struct RecordView {
    pub demographics: Demographics,
    pub entries: Vec<Entry>,
    /// What allowed this view (the page says whose record it is and why).
    pub basis: Basis,
    pub standing: Standing,
}

/// Whose record a page shows and on what footing: every page of a record
/// says it, and offers only what the same decision allows.
#[derive(Debug, Clone)]
pub struct Header {
    pub demographics: Demographics,
    pub standing: Standing,
}

/// What the principal may do with a record, decided over the same consent
/// state as the read that came with it (so a page never offers what the
/// next request would refuse because of a stale view).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Capabilities {
    pub contribute: bool,
    pub export: bool,
    pub share: bool,
    pub read_access_log: bool,
}

#[derive(Debug, Clone)]
pub struct Standing {
    pub basis: Basis,
    pub can: Capabilities,
    /// The organisation the principal reads for, by name.
    pub org_name: Option<String>,
    /// When emergency access ends, if that is the basis.
    pub emergency_until: Option<OffsetDateTime>,
}

/// One request's decision: when it was made, what allowed it, and the consent
/// state it was made over (loaded from the store for this request only, so no
/// decision outlives a change). Items inside the record (entries, documents)
/// are filtered against the same state.
pub(crate) struct Access {
    pub now: OffsetDateTime,
    pub basis: Basis,
    pub consent: ConsentState,
}

/// A patient's grants and break-glass uses, as stored right now.
#[derive(Default)]
pub(crate) struct ConsentState {
    pub grants: Vec<Grant>,
    pub break_glass: Vec<BreakGlass>,
    pub subject_access: Vec<crate::policy::SubjectAccess>,
}

impl ConsentState {
    pub fn facts(&self) -> Facts<'_> {
        Facts {
            grants: &self.grants,
            break_glass: &self.break_glass,
            subject_access: &self.subject_access,
        }
    }
}

impl Access {
    /// Whether the same principal may also do `action` on `resource`, within
    /// this request.
    pub fn allows(&self, p: &Principal, action: Action, resource: &Resource) -> bool {
        decide(p, action, resource, &self.consent.facts(), self.now).is_allowed()
    }

    /// Entries and documents: by category and contributing organisation.
    pub fn allows_item(
        &self,
        p: &Principal,
        action: Action,
        patient: PatientId,
        category: Category,
        source: &Source,
    ) -> bool {
        self.allows(
            p,
            action,
            &Resource::in_category(patient, category).entered_by(source),
        )
    }
}

impl Keyhold {
    fn standing(&self, p: &Principal, patient: PatientId, access: &Access) -> Standing {
        let whole = Resource::whole(patient);
        let can = Capabilities {
            contribute: access.allows(p, Action::Contribute, &whole),
            export: access.allows(p, Action::Export, &whole),
            share: access.allows(p, Action::Share, &whole),
            read_access_log: access.allows(p, Action::ReadAccessLog, &whole),
        };
        let emergency_until = match access.basis {
            Basis::BreakGlass { id, .. } => access
                .consent
                .break_glass
                .iter()
                .find(|b| b.id == id)
                .map(|b| b.expires_at),
            _ => None,
        };
        Standing {
            basis: access.basis,
            can,
            org_name: access
                .basis
                .org()
                .and_then(|o| self.organisation_name(o).ok()),
            emergency_until,
        }
    }

    /// The actor an audit entry names, from what allowed the access.
    pub(crate) fn actor(p: &Principal, basis: Basis, patient: PatientId) -> AuditActor {
        if p.is_system() {
            // A system is named by its organisation; its account id is no person's.
            return AuditActor {
                account: None,
                role: AuditRole::System,
                organisation: basis.org().map(|o| o.to_string()),
                acting_for: None,
            };
        }
        let (role, acting_for) = match basis {
            Basis::Owner => (AuditRole::Patient, None),
            Basis::Carer { .. } => (AuditRole::Carer, Some(patient)),
            Basis::Organisation { .. } | Basis::Contributor { .. } | Basis::BreakGlass { .. } => {
                (AuditRole::Professional, None)
            }
            Basis::SubjectAccess { .. } => (AuditRole::RecordsOfficer, None),
        };
        AuditActor {
            account: Some(p.account),
            role,
            organisation: basis.org().map(|o| o.to_string()),
            acting_for,
        }
    }

    /// An account refused access: named as what it is, without a basis.
    pub(crate) fn refused_actor(p: &Principal) -> AuditActor {
        if p.is_system() {
            return AuditActor {
                account: None,
                role: AuditRole::System,
                organisation: p.memberships.first().map(|m| m.org.to_string()),
                acting_for: None,
            };
        }
        let clinical = p.clinical_orgs().next();
        AuditActor {
            account: Some(p.account),
            role: if clinical.is_some() {
                AuditRole::Professional
            } else {
                AuditRole::Patient
            },
            organisation: clinical.map(|o| o.to_string()),
            acting_for: None,
        }
    }

    /// The grants and break-glass uses of `patient`, read from the store now.
    pub(crate) fn consent_state(&self, patient: PatientId) -> Result<ConsentState, DomainError> {
        Ok(ConsentState {
            grants: self.grants_of(patient)?,
            break_glass: self.break_glass_of(patient)?,
            subject_access: self.subject_access_of(patient)?,
        })
    }

    /// Checks the policy over the patient's current consent state; a denial
    /// is audited and looks like "not found".
    pub(crate) async fn authorize(
        &self,
        p: &Principal,
        action: Action,
        resource: Resource,
        audit_action: AuditAction,
        what: &str,
    ) -> Result<Access, DomainError> {
        let now = self.clock.now();
        let consent = if p.own_patient == Some(resource.patient) {
            // The owner needs no grants; skip loading them.
            ConsentState::default()
        } else {
            self.consent_state(resource.patient)?
        };
        match decide(p, action, &resource, &consent.facts(), now) {
            Decision::Allow(basis) => Ok(Access {
                now,
                basis,
                consent,
            }),
            Decision::Deny(reason) => {
                self.audit
                    .record(&AuditEvent {
                        at: now,
                        actor: Self::refused_actor(p),
                        action: audit_action,
                        patient: Some(resource.patient),
                        resource: what.to_string(),
                        purpose: match reason {
                            DenyReason::NoRelationship => "no relationship".into(),
                            DenyReason::NotCovered => "not covered by consent".into(),
                        },
                        outcome: Outcome::Denied,
                        basis: None,
                    })
                    .await?;
                Err(DomainError::NotFound)
            }
        }
    }

    pub(crate) fn event(
        &self,
        p: &Principal,
        access: &Access,
        action: AuditAction,
        patient: PatientId,
        resource: String,
    ) -> AuditEvent {
        let (purpose, basis) = match access.basis {
            Basis::Owner => ("own record", AuditBasis::Owner),
            Basis::Carer { grant } => ("shared with them", AuditBasis::Grant { grant }),
            Basis::Organisation { grant, .. } => (
                "shared with their organisation",
                AuditBasis::Grant { grant },
            ),
            Basis::Contributor { .. } => {
                ("their organisation's own entry", AuditBasis::Contributor)
            }
            Basis::BreakGlass { id, .. } => ("emergency access", AuditBasis::BreakGlass { id }),
            Basis::SubjectAccess { request, .. } => (
                "subject access request",
                AuditBasis::SubjectAccess { request },
            ),
        };
        AuditEvent {
            at: access.now,
            actor: Self::actor(p, access.basis, patient),
            action,
            patient: Some(patient),
            resource,
            purpose: purpose.into(),
            outcome: Outcome::Success,
            basis: Some(basis),
        }
    }

    /// Adds a new patient (data key, sealed demographics, NHS number index) to `batch`.
    pub(crate) fn new_patient(
        &self,
        batch: &mut Batch,
        d: &Demographics,
    ) -> Result<PatientId, DomainError> {
        let id = PatientId::new_random();
        self.new_patient_with_id(batch, id, d)?;
        Ok(id)
    }

    /// As `new_patient`, under an id the caller chose.
    pub(crate) fn new_patient_with_id(
        &self,
        batch: &mut Batch,
        id: PatientId,
        d: &Demographics,
    ) -> Result<(), DomainError> {
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
        Ok(())
    }

    /// Operator and organisations: registers a patient's record (the demo,
    /// and later registration feeds). Audited as the operator's.
    pub async fn register_patient(&self, d: Demographics) -> Result<PatientId, DomainError> {
        let mut batch = Batch::new();
        let id = self.new_patient(&mut batch, &d)?;
        self.audit.add(
            &mut batch,
            &AuditEvent {
                at: self.clock.now(),
                actor: AuditActor::operator(),
                action: AuditAction::Create,
                patient: Some(id),
                resource: "record".into(),
                purpose: "register a patient".into(),
                outcome: Outcome::Success,
                basis: None,
            },
        )?;
        match self.store.submit(batch).await {
            Ok(_) => Ok(id),
            Err(keyhold_storage::StorageError::Conflict) => Err(DomainError::invalid(
                "nhs-number",
                "A record with this NHS number already exists",
            )),
            Err(e) => Err(e.into()),
        }
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

    /// Adds to `batch` a new version of the patient's demographics, changed
    /// by `change`; the write requires the version it read, so a concurrent
    /// change makes the batch fail rather than be lost. A new NHS number is
    /// indexed (and must be free).
    pub(crate) fn change_demographics_into(
        &self,
        batch: &mut Batch,
        patient: PatientId,
        change: impl FnOnce(&mut Demographics),
    ) -> Result<(), DomainError> {
        let raw = self
            .store
            .get(PATIENTS, patient.as_bytes())?
            .ok_or(DomainError::NotFound)?;
        let row: PatientRowV1 = serde_json::from_slice(&raw)?;
        let mut d = self.load_demographics(patient)?;
        let before = d.nhs_number;
        change(&mut d);
        let dek = self.vault.key(KeyOwner::Patient(patient))?;
        let version = row.version + 1;
        let sealed = self.vault.seal(
            &dek,
            &Aad::demographics(&patient, version),
            &serde_json::to_vec(&d)?,
        )?;
        let new_row = PatientRowV1 {
            version,
            demographics: sealed,
            created_at: row.created_at,
        };
        batch.require_equals(PATIENTS, patient.as_bytes().to_vec(), Some(raw));
        batch.put(
            PATIENTS,
            patient.as_bytes().to_vec(),
            serde_json::to_vec(&new_row)?,
        );
        if d.nhs_number != before {
            if let Some(old) = before {
                batch.delete(
                    PATIENTS_BY_NHS,
                    self.vault.blind(NHS_INDEX, &old.digits()).to_vec(),
                );
            }
            if let Some(nhs) = d.nhs_number {
                let key = self.vault.blind(NHS_INDEX, &nhs.digits()).to_vec();
                batch.require_absent(PATIENTS_BY_NHS, key.clone());
                batch.put(PATIENTS_BY_NHS, key, patient.as_bytes().to_vec());
            }
        }
        Ok(())
    }

    pub(crate) fn load_demographics(
        &self,
        patient: PatientId,
    ) -> Result<Demographics, DomainError> {
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

    pub(crate) fn load_entries(&self, patient: PatientId) -> Result<Vec<Entry>, DomainError> {
        let owner = KeyOwner::Patient(patient);
        let dek = self.vault.key(owner)?;
        let mut out = Vec::new();
        for item in self.store.scan(ENTRIES, patient.as_bytes()) {
            let (key, raw) = item?;
            let row = EntryRowV1::decode(&raw)?;
            let plain = self.vault.open(
                &dek,
                &Aad::entry(patient, &key[16..], row.version),
                &row.sealed,
            )?;
            out.push(serde_json::from_slice(&plain)?);
        }
        Ok(out)
    }

    /// Demographics only (the banner and the demographics page). Anyone but
    /// the patient sees a sensitive record's identity only (see `redacted`).
    pub async fn demographics(
        &self,
        p: &Principal,
        patient: PatientId,
    ) -> Result<Demographics, DomainError> {
        Ok(self.header(p, patient).await?.demographics)
    }

    /// Whether the principal may open this record now, decided as a read
    /// would be but neither audited nor revealing anything: for a lookup
    /// page choosing between opening the record and offering emergency
    /// access (the lookup itself is audited by `search_people`).
    pub fn may_read(&self, p: &Principal, patient: PatientId) -> Result<bool, DomainError> {
        if p.own_patient == Some(patient) {
            return Ok(true);
        }
        let consent = self.consent_state(patient)?;
        Ok(decide(
            p,
            Action::Read,
            &Resource::whole(patient),
            &consent.facts(),
            self.clock.now(),
        )
        .is_allowed())
    }

    /// Demographics with the principal's standing: the banner of every page
    /// of a record. Audited as a read of the demographics.
    pub async fn header(&self, p: &Principal, patient: PatientId) -> Result<Header, DomainError> {
        let resource = Resource::whole(patient);
        let access = self
            .authorize(p, Action::Read, resource, AuditAction::Read, "demographics")
            .await?;
        let d = Self::as_seen(self.load_demographics(patient)?, access.basis);
        self.audit
            .record(&self.event(
                p,
                &access,
                AuditAction::Read,
                patient,
                "demographics".into(),
            ))
            .await?;
        Ok(Header {
            demographics: d,
            standing: self.standing(p, patient, &access),
        })
    }

    /// A sensitive record shows others only name, NHS number, date of birth
    /// and gender (and the deceased flag): no contact or location details.
    pub(crate) fn as_seen(d: Demographics, basis: Basis) -> Demographics {
        if d.sensitive && basis != Basis::Owner {
            d.redacted()
        } else {
            d
        }
    }

    /// The whole record as the principal may see it, newest entries first.
    pub async fn record(
        &self,
        p: &Principal,
        patient: PatientId,
    ) -> Result<RecordView, DomainError> {
        let resource = Resource::whole(patient);
        let access = self
            .authorize(p, Action::Read, resource, AuditAction::Read, "record")
            .await?;
        let demographics = Self::as_seen(self.load_demographics(patient)?, access.basis);
        let mut entries: Vec<Entry> = self
            .load_entries(patient)?
            .into_iter()
            .filter(|e| access.allows_item(p, Action::Read, patient, e.category, &e.source))
            .collect();
        entries.sort_by(|a, b| b.date.cmp(&a.date).then(b.recorded_at.cmp(&a.recorded_at)));
        self.audit
            .record(&self.event(p, &access, AuditAction::Read, patient, "record".into()))
            .await?;
        if let Some(org) = access.basis.org() {
            // A professional's "recently accessed"; never fails the read.
            self.remember_recent(p, org, patient, &demographics).await;
        }
        Ok(RecordView {
            demographics,
            entries,
            basis: access.basis,
            standing: self.standing(p, patient, &access),
        })
    }

    /// One entry. Reached without a whole-record permission only by the
    /// organisation that contributed it.
    pub async fn entry(
        &self,
        p: &Principal,
        patient: PatientId,
        id: EntryId,
    ) -> Result<Entry, DomainError> {
        let what = format!("entry/{id}");
        let raw = self
            .store
            .get(ENTRIES, &pair(patient.as_bytes(), id.as_bytes()))?;
        let entry: Option<Entry> = match raw {
            Some(raw) => {
                let row = EntryRowV1::decode(&raw)?;
                let dek = self.vault.key(KeyOwner::Patient(patient))?;
                let plain = self.vault.open(
                    &dek,
                    &Aad::entry(patient, id.as_bytes(), row.version),
                    &row.sealed,
                )?;
                Some(serde_json::from_slice(&plain)?)
            }
            None => None,
        };
        // Missing and not allowed are decided (and audited) the same way.
        let resource = match &entry {
            Some(e) => Resource::in_category(patient, e.category).entered_by(&e.source),
            None => Resource::whole(patient),
        };
        let access = self
            .authorize(p, Action::Read, resource, AuditAction::Read, &what)
            .await?;
        let entry = entry.ok_or(DomainError::NotFound)?;
        self.audit
            .record(&self.event(p, &access, AuditAction::Read, patient, what))
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
        self.entry_with_contact_into(batch, patient, new, source, None)
    }

    /// As `entry_into`, for a care network contact with its details.
    pub(crate) fn entry_with_contact_into(
        &self,
        batch: &mut Batch,
        patient: PatientId,
        new: NewEntry,
        source: Source,
        contact: Option<ContactDetails>,
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
            contact,
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
        batch.put(ENTRIES, key, EntryRowV1 { version: 1, sealed }.encode());
        Ok(id)
    }

    /// Adds an entry the principal wrote: the patient or a carer as "patient
    /// entered"; a professional on behalf of their organisation. The entry
    /// and its audit entry are one atomic write.
    pub async fn add_entry(
        &self,
        p: &Principal,
        patient: PatientId,
        new: NewEntry,
    ) -> Result<EntryId, DomainError> {
        Self::validate_entry(&new)?;
        let category: Category = new.category;
        let access = self
            .authorize(
                p,
                Action::Contribute,
                Resource::in_category(patient, category),
                AuditAction::Create,
                "entry",
            )
            .await?;
        let source = self.source_for(access.basis)?;
        let mut batch = Batch::new();
        let id = self.entry_into(&mut batch, patient, new, source)?;
        self.audit.add(
            &mut batch,
            &self.event(
                p,
                &access,
                AuditAction::Create,
                patient,
                format!("entry/{id}"),
            ),
        )?;
        self.store.submit(batch).await?;
        Ok(id)
    }

    /// Adds someone to the care network: a professional who looks after the
    /// person, or someone in their life, with their role and how to reach
    /// them. Decided, attributed and audited as any other entry.
    pub async fn add_care_contact(
        &self,
        p: &Principal,
        patient: PatientId,
        new: NewEntry,
        contact: ContactDetails,
    ) -> Result<EntryId, DomainError> {
        let mut errors = match Self::validate_entry(&new) {
            Ok(()) => Vec::new(),
            Err(DomainError::Invalid(e)) => e,
            Err(e) => return Err(e),
        };
        if new.kind != EntryKind::CareContact {
            return Err(DomainError::Internal("a care contact must be one".into()));
        }
        if contact.role.trim().is_empty() {
            errors.push(FieldError::new(
                "role",
                match contact.kind {
                    ContactKind::Professional => "Enter their role",
                    ContactKind::Personal => "Enter how they are related to the person",
                },
            ));
        } else if contact.role.chars().count() > 100 {
            errors.push(FieldError::new(
                "role",
                "Role must be 100 characters or fewer",
            ));
        }
        if contact.organisation.chars().count() > 200 {
            errors.push(FieldError::new(
                "organisation",
                "Organisation must be 200 characters or fewer",
            ));
        }
        let phone = contact.phone.trim();
        if !phone.is_empty() {
            let digits = phone.chars().filter(char::is_ascii_digit).count();
            let allowed = phone
                .chars()
                .all(|c| c.is_ascii_digit() || " +()-".contains(c));
            if !allowed || !(6..=15).contains(&digits) {
                errors.push(FieldError::new(
                    "phone",
                    "Enter a phone number, like 01632 960 001 or +44 7700 900 982",
                ));
            }
        }
        if phone.is_empty() && contact.email.is_none() {
            errors.push(FieldError::new(
                "phone",
                "Enter a phone number or an email address, so they can be reached",
            ));
        }
        if !errors.is_empty() {
            return Err(DomainError::Invalid(errors));
        }
        let contact = ContactDetails {
            role: contact.role.trim().to_string(),
            organisation: contact.organisation.trim().to_string(),
            phone: phone.to_string(),
            ..contact
        };
        let access = self
            .authorize(
                p,
                Action::Contribute,
                Resource::in_category(patient, new.category),
                AuditAction::Create,
                "entry",
            )
            .await?;
        let source = self.source_for(access.basis)?;
        let mut batch = Batch::new();
        let id = self.entry_with_contact_into(&mut batch, patient, new, source, Some(contact))?;
        self.audit.add(
            &mut batch,
            &self.event(
                p,
                &access,
                AuditAction::Create,
                patient,
                format!("entry/{id}"),
            ),
        )?;
        self.store.submit(batch).await?;
        Ok(id)
    }

    /// Who an addition is attributed to.
    pub(crate) fn source_for(&self, basis: Basis) -> Result<Source, DomainError> {
        Ok(match basis.org() {
            Some(org) => Source::Organisation {
                name: self.organisation_name(org)?,
                org: Some(org),
            },
            None => Source::PatientEntered,
        })
    }
}
