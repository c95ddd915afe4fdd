//! Files in and out: the requester's documents while drafting, downloads
//! on both sides, the disclosure (uploaded, or compiled from the patient's
//! Keyhold record), completion, and the purge a month after disclosure.
//!
//! What a records officer may compile is the policy's decision
//! (`policy::decide`, the subject-access rule): entries their own
//! organisation contributed to the record of the patient the open request
//! is about, nothing else.

use std::collections::BTreeSet;

use keyhold_storage::Batch;
use time::{Date, OffsetDateTime};

use super::files::{FileRole, RequestFile};
use super::pdf::{render, Section, TextDocument};
use super::{
    add_months, long_date, next, patient_name, refused, Asker, Loaded, RequestState, Transition,
    Upload,
};
use crate::audit::{AuditAction, AuditActor, AuditEvent, AuditRole, Outcome};
use crate::ids::KeyOwner;
use crate::policy::{Action, Principal, Resource};
use crate::trees::{ACCESS_REQUEST_EXPIRY, DEKS};
use crate::upload::FileType;
use crate::{Category, DomainError, Keyhold, OrgId, PatientId, RequestFileId, RequestId};

fn expiry_key(at: OffsetDateTime, id: RequestId) -> Vec<u8> {
    let mut k = at.unix_timestamp().to_be_bytes().to_vec();
    k.extend_from_slice(id.as_bytes());
    k
}

impl Keyhold {
    // ------------------------------------------------------------------
    // The requester's documents while drafting

    /// Adds documents to a draft: `required` files count as the document
    /// the kind of request needs; the rest are "Other document".
    pub async fn add_evidence(
        &self,
        asker: &Asker,
        id: RequestId,
        required: bool,
        uploads: Vec<Upload>,
    ) -> Result<(), DomainError> {
        let l = self.requesters_request(asker, id)?;
        if l.row.state != RequestState::Draft {
            return Err(DomainError::NotFound);
        }
        if uploads.is_empty() {
            return Err(DomainError::invalid("files", "Choose a file to upload"));
        }
        let label = if required {
            l.row.kind.required_document()
        } else {
            "Other document"
        };
        let mut batch = Batch::new();
        self.add_files_into(&mut batch, &l, uploads, FileRole::Requester, label)?;
        // The row is required unchanged, so a file cannot join a request
        // that was sent meanwhile.
        self.put_request(&mut batch, &l)?;
        self.submit_request_batch(batch).await
    }

    pub async fn remove_evidence(
        &self,
        asker: &Asker,
        id: RequestId,
        file: RequestFileId,
    ) -> Result<(), DomainError> {
        let l = self.requesters_request(asker, id)?;
        if l.row.state != RequestState::Draft {
            return Err(DomainError::NotFound);
        }
        let row = self.file_row(id, file)?;
        let mut batch = Batch::new();
        self.delete_file_into(&mut batch, id, file, &row);
        self.put_request(&mut batch, &l)?;
        self.submit_request_batch(batch).await
    }

    // ------------------------------------------------------------------
    // Downloads

    fn disclosure_live(&self, l: &Loaded) -> bool {
        l.row.state == RequestState::Disclosed
            && l.row.expires_at.is_some_and(|t| t > self.clock.now())
    }

    /// One file for the requester: what they sent, what the team sent them,
    /// and the disclosure while it lasts. Disclosure downloads are audited.
    pub async fn open_my_file(
        &self,
        asker: &Asker,
        id: RequestId,
        file: RequestFileId,
    ) -> Result<RequestFile, DomainError> {
        let l = self.requesters_request(asker, id)?;
        let row = self.file_row(id, file)?;
        if row.role == FileRole::Disclosure && !self.disclosure_live(&l) {
            return Err(DomainError::NotFound);
        }
        let f = self.open_file(id, file)?;
        if row.role == FileRole::Disclosure {
            self.audit
                .record(&self.request_event(
                    asker.actor(),
                    AuditAction::Export,
                    &l,
                    &format!("disclosure/{file}"),
                    "requester downloaded a disclosed file",
                ))
                .await?;
        }
        Ok(f)
    }

    /// Every disclosure file, for one zip; one audit entry.
    pub async fn open_my_disclosure(
        &self,
        asker: &Asker,
        id: RequestId,
    ) -> Result<(String, Vec<RequestFile>), DomainError> {
        let l = self.requesters_request(asker, id)?;
        if !self.disclosure_live(&l) {
            return Err(DomainError::NotFound);
        }
        let (_, disclosed) = self.request_files(&l)?;
        let files = disclosed
            .iter()
            .map(|f| self.open_file(id, f.id))
            .collect::<Result<Vec<_>, _>>()?;
        self.audit
            .record(&self.request_event(
                asker.actor(),
                AuditAction::Export,
                &l,
                "disclosure.zip",
                "requester downloaded the disclosure",
            ))
            .await?;
        let reference = l
            .row
            .reference
            .as_ref()
            .map(|r| r.to_string())
            .unwrap_or_else(|| id.to_string());
        Ok((reference, files))
    }

    /// Any file of a request, for its records team; audited.
    pub async fn open_team_file(
        &self,
        p: &Principal,
        org: OrgId,
        id: RequestId,
        file: RequestFileId,
    ) -> Result<RequestFile, DomainError> {
        let l = self.teams_request(p, org, id)?;
        let f = self.open_file(id, file)?;
        self.audit
            .record(&self.officer_event(
                p,
                org,
                AuditAction::Read,
                &l,
                &format!("file/{file}"),
                "records team opened a file",
            ))
            .await?;
        Ok(f)
    }

    // ------------------------------------------------------------------
    // The disclosure

    fn officers_open_request(
        &self,
        p: &Principal,
        org: OrgId,
        id: RequestId,
    ) -> Result<Loaded, DomainError> {
        let l = self.teams_request(p, org, id)?;
        if l.row.state != RequestState::InProgress {
            return Err(DomainError::invalid(
                "request",
                match l.row.state {
                    RequestState::Received => {
                        "Assign the request to someone before preparing the disclosure".to_string()
                    }
                    RequestState::AwaitingRequester => {
                        "The request is awaiting the requester's reply".to_string()
                    }
                    s => format!(
                        "That cannot be done to a request that is {}",
                        s.team_label().to_lowercase()
                    ),
                },
            ));
        }
        Ok(l)
    }

    /// The disclosure key, made with the first disclosure file.
    fn disclosure_key_into(&self, batch: &mut Batch, id: RequestId) -> Result<(), DomainError> {
        if self
            .store
            .get(DEKS, &KeyOwner::Disclosure(id).key())?
            .is_none()
        {
            self.vault.create_key(KeyOwner::Disclosure(id), batch)?;
        }
        Ok(())
    }

    pub async fn add_disclosure_files(
        &self,
        p: &Principal,
        org: OrgId,
        id: RequestId,
        uploads: Vec<Upload>,
    ) -> Result<(), DomainError> {
        let l = self.officers_open_request(p, org, id)?;
        if uploads.is_empty() {
            return Err(DomainError::invalid("files", "Choose a file to upload"));
        }
        let mut batch = Batch::new();
        self.disclosure_key_into(&mut batch, id)?;
        self.add_files_into(&mut batch, &l, uploads, FileRole::Disclosure, "Disclosure")?;
        self.put_request(&mut batch, &l)?;
        self.audit.add(
            &mut batch,
            &self.officer_event(
                p,
                org,
                AuditAction::Create,
                &l,
                "disclosure",
                "records team added a disclosure file",
            ),
        )?;
        self.submit_request_batch(batch).await
    }

    pub async fn remove_disclosure_file(
        &self,
        p: &Principal,
        org: OrgId,
        id: RequestId,
        file: RequestFileId,
    ) -> Result<(), DomainError> {
        let l = self.officers_open_request(p, org, id)?;
        let row = self.file_row(id, file)?;
        if row.role != FileRole::Disclosure {
            return Err(DomainError::NotFound);
        }
        let mut batch = Batch::new();
        self.delete_file_into(&mut batch, id, file, &row);
        self.put_request(&mut batch, &l)?;
        self.audit.add(
            &mut batch,
            &self.officer_event(
                p,
                org,
                AuditAction::Delete,
                &l,
                &format!("disclosure/{file}"),
                "records team removed a disclosure file",
            ),
        )?;
        self.submit_request_batch(batch).await
    }

    /// The Keyhold record the request is about: the requester's own, or
    /// the one whose NHS number and date of birth both match the answers.
    fn matching_patient(&self, l: &Loaded) -> Result<Option<PatientId>, DomainError> {
        if let Some(p) = l.row.patient {
            return Ok(Some(p));
        }
        let answers = self.open_answers(l)?;
        let (Some(nhs), Some(dob)) = (
            answers.get("patient-nhs-number"),
            answers.get("patient-dob"),
        ) else {
            return Ok(None);
        };
        let Ok(nhs) = crate::NhsNumber::parse(nhs) else {
            return Ok(None);
        };
        let Some(patient) = self.patient_by_nhs_number(&nhs)? else {
            return Ok(None);
        };
        let d = self.load_demographics(patient)?;
        Ok(
            (d.date_of_birth.map(|x| x.to_string()).as_deref() == Some(dob.as_str()))
                .then_some(patient),
        )
    }

    /// Compiles a PDF of the entries this organisation contributed to the
    /// patient's Keyhold record, between two dates and in the chosen
    /// categories, and adds it to the disclosure with the organisation's
    /// documents of the same dates and categories, as they were filed.
    pub async fn compile_disclosure(
        &self,
        p: &Principal,
        org: OrgId,
        id: RequestId,
        from: Option<Date>,
        to: Option<Date>,
        categories: &BTreeSet<Category>,
    ) -> Result<(), DomainError> {
        let mut l = self.officers_open_request(p, org, id)?;
        if categories.is_empty() {
            return Err(DomainError::invalid(
                "categories",
                "Choose at least one category",
            ));
        }
        if let (Some(f), Some(t)) = (from, to) {
            if f > t {
                return Err(DomainError::invalid(
                    "to",
                    "The end date must be on or after the start date",
                ));
            }
        }
        let patient = self.matching_patient(&l)?.ok_or_else(|| {
            DomainError::invalid(
                "compile",
                "No Keyhold record matches this request's NHS number and date of birth. Upload the disclosure files instead.",
            )
        })?;
        if l.row.patient.is_none() {
            // Linked now: the patient will see the disclosure in their log.
            l.row.patient = Some(patient);
            let mut batch = Batch::new();
            self.link_patient_into(&mut batch, &l);
            self.put_request(&mut batch, &l)?;
            self.audit.add(
                &mut batch,
                &self.officer_event(
                    p,
                    org,
                    AuditAction::Update,
                    &l,
                    "patient",
                    "records team matched the request to a Keyhold record",
                ),
            )?;
            self.submit_request_batch(batch).await?;
            l = self.load_request(id)?;
        }
        let what = format!("access-request/{id}/compile");
        let access = self
            .authorize(
                p,
                Action::Export,
                Resource::whole(patient).contributed_by(Some(org)),
                AuditAction::Export,
                &what,
            )
            .await?;
        let mut entries: Vec<_> = self
            .load_entries(patient)?
            .into_iter()
            .filter(|e| access.allows_item(p, Action::Export, patient, e.category, &e.source))
            .filter(|e| categories.contains(&e.category))
            .filter(|e| from.is_none_or(|f| e.date >= f) && to.is_none_or(|t| e.date <= t))
            .collect();
        entries.sort_by(|a, b| a.date.cmp(&b.date).then(a.recorded_at.cmp(&b.recorded_at)));
        // The organisation's documents (letters, summaries) go as they are,
        // by the date they were filed.
        let documents: Vec<_> = self
            .visible_documents(p, patient, &access, Action::Export)?
            .into_iter()
            .filter(|d| categories.contains(&d.meta.category))
            .filter(|d| {
                let on = d.meta.uploaded_at.date();
                from.is_none_or(|f| on >= f) && to.is_none_or(|t| on <= t)
            })
            .collect();
        let answers = self.open_answers(&l)?;
        let org_name = self.organisation_name(org)?;
        let reference = l.reference();
        let range = match (from, to) {
            (None, None) => "All dates".to_string(),
            (Some(f), None) => format!("From {}", long_date(f)),
            (None, Some(t)) => format!("Up to {}", long_date(t)),
            (Some(f), Some(t)) => format!("{} to {}", long_date(f), long_date(t)),
        };
        let mut intro = vec![
            format!("Patient: {}", patient_name(&answers)),
            format!("Records held by: {org_name}"),
            format!("Dates: {range}"),
            format!(
                "Categories: {}",
                categories
                    .iter()
                    .map(|c| c.label())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            format!(
                "Prepared: {} for request {reference}",
                long_date(self.today())
            ),
        ];
        if entries.is_empty() {
            intro.push("No entries of these categories and dates are held.".into());
        }
        if !documents.is_empty() {
            intro.push(format!(
                "With this file: {} document(s) as filed: {}.",
                documents.len(),
                documents
                    .iter()
                    .map(|d| d.meta.filename.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let mut sections: Vec<Section> = Vec::new();
        for e in &entries {
            let heading = format!("{} - {}", long_date(e.date), e.kind.label());
            let mut paragraphs = vec![e.title.clone()];
            if let Some(end) = e.end_date {
                paragraphs.push(format!("Until {}", long_date(end)));
            }
            if !e.details.trim().is_empty() {
                paragraphs.push(String::new());
                paragraphs.extend(e.details.lines().map(str::to_string));
            }
            paragraphs.push(format!(
                "Category: {}. Recorded {}.",
                e.category.label(),
                long_date(e.recorded_at.date())
            ));
            sections.push(Section {
                heading,
                paragraphs,
            });
        }
        let pdf = render(&TextDocument {
            title: format!("Health records from {org_name}"),
            intro,
            sections,
            footer: format!("{reference} - confidential health information"),
        });
        let name = format!("records-{}.pdf", self.today());
        let mut batch = Batch::new();
        self.disclosure_key_into(&mut batch, id)?;
        self.file_into(
            &mut batch,
            id,
            FileRole::Disclosure,
            &name,
            "Compiled from the Keyhold record",
            FileType::Pdf,
            &pdf,
        )?;
        let document_count = documents.len();
        for d in documents {
            let (filename, title, file_type) = (
                d.meta.filename.clone(),
                d.meta.title.clone(),
                d.meta.file_type,
            );
            let bytes = d.read_all()?;
            self.file_into(
                &mut batch,
                id,
                FileRole::Disclosure,
                &filename,
                &format!("From the Keyhold record: {title}"),
                file_type,
                &bytes,
            )?;
        }
        self.put_request(&mut batch, &l)?;
        let mut event = self.event(p, &access, AuditAction::Export, patient, what);
        event.purpose = format!(
            "compiled for subject access request {reference} ({} entries, {document_count} documents)",
            entries.len()
        );
        self.audit.add(&mut batch, &event)?;
        self.submit_request_batch(batch).await
    }

    /// Completes the request: the disclosure is released to the requester
    /// for one calendar month.
    pub async fn complete_request(
        &self,
        p: &Principal,
        org: OrgId,
        id: RequestId,
    ) -> Result<(), DomainError> {
        let mut l = self.officers_open_request(p, org, id)?;
        let to = next(
            l.row.state,
            Transition::Complete,
            l.row.requester.is_guest(),
        )
        .ok_or_else(|| refused(l.row.state))?;
        let (_, disclosed) = self.request_files(&l)?;
        if disclosed.is_empty() {
            return Err(DomainError::invalid(
                "files",
                "Add at least one disclosure file before completing the request",
            ));
        }
        let now = self.clock.now();
        let expires = add_months(now.date(), 1).with_time(now.time()).assume_utc();
        // A disclosure of uploaded files still names the Keyhold record the
        // request matches, so that patient reads it in their access log.
        if l.row.patient.is_none() {
            l.row.patient = self.matching_patient(&l)?;
        }
        l.row.state = to;
        l.row.disclosed_at = Some(now);
        l.row.expires_at = Some(expires);
        l.row.message_for_requester = true;
        let mut batch = Batch::new();
        batch.put(ACCESS_REQUEST_EXPIRY, expiry_key(expires, id), Vec::new());
        self.close_links(&mut batch, &l);
        self.put_request(&mut batch, &l)?;
        let reference = l.reference();
        self.audit.add(
            &mut batch,
            &self.officer_event(
                p,
                org,
                AuditAction::Disclose,
                &l,
                "disclosure",
                &format!(
                    "disclosed {} file(s) to the requester of subject access request {reference}",
                    disclosed.len()
                ),
            ),
        )?;
        self.submit_request_batch(batch).await?;
        self.mail_requester(
            &l,
            &format!("Your records are ready: {reference}"),
            &format!(
                "The records you asked for ({reference}) are ready to download until {}.\n\n\
                 Download them here:\n\n{}\n\n\
                 They are health records: keep them somewhere safe that only you can open.\n",
                long_date(expires.date()),
                self.request_link(&l)
            ),
        )
        .await
    }

    /// Purges every disclosure whose month is over: its files and its key
    /// (crypto-shredding what any copy of the rows still holds). Audited.
    /// Returns how many were purged.
    pub async fn purge_expired_disclosures(&self) -> Result<usize, DomainError> {
        let now = self.clock.now();
        let mut due = Vec::new();
        for item in self.store.scan(ACCESS_REQUEST_EXPIRY, b"").take(500) {
            let (k, _) = item?;
            let at = k
                .get(..8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(i64::from_be_bytes)
                .unwrap_or(i64::MIN);
            if at > now.unix_timestamp() {
                break;
            }
            if let Some(id) = k.get(8..).and_then(RequestId::from_bytes) {
                due.push((k, id));
            }
        }
        let mut purged = 0;
        for (k, id) in due {
            let mut l = self.load_request(id)?;
            let mut batch = Batch::new();
            batch.delete(ACCESS_REQUEST_EXPIRY, k);
            for (file, row) in self.files_of_role(id, FileRole::Disclosure)? {
                self.delete_file_into(&mut batch, id, file, &row);
            }
            batch.delete(DEKS, KeyOwner::Disclosure(id).key());
            if let Some(to) = next(l.row.state, Transition::Expire, l.row.requester.is_guest()) {
                l.row.state = to;
            }
            l.row.purged_at = Some(now);
            self.put_request(&mut batch, &l)?;
            self.audit.add(
                &mut batch,
                &AuditEvent {
                    at: now,
                    actor: AuditActor {
                        account: None,
                        role: AuditRole::System,
                        organisation: Some(l.row.org.to_string()),
                        acting_for: None,
                    },
                    action: AuditAction::Delete,
                    patient: l.row.patient,
                    resource: format!("access-request/{id}/disclosure"),
                    purpose: "disclosure expired: files purged and their key destroyed".into(),
                    outcome: Outcome::Success,
                    basis: None,
                },
            )?;
            match self.store.submit(batch).await {
                Ok(_) => {}
                // Another instance purged it (or its row changed) first.
                Err(keyhold_storage::StorageError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
            self.vault.forget(KeyOwner::Disclosure(id));
            purged += 1;
        }
        Ok(purged)
    }
}
