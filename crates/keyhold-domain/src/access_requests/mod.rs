//! Access to records: subject access requests, from the form to the
//! disclosure. A requester (a signed-in account, or a guest who proved
//! their email address) fills in a form in steps, uploads the document
//! their kind of request needs and sends it to an organisation; its records
//! team works it within the statutory month (`status`), asks questions,
//! and discloses files that the requester downloads until they expire.
//!
//! Each request has a data key of its own (`KeyOwner::Request`): the
//! answers, the messages and the requester's files are sealed under it.
//! Disclosure files have another (`KeyOwner::Disclosure`), deleted when
//! they expire, so the purge shreds them even in old backups' future
//! restores of this store. State, dates and ids are in the clear: the
//! queue is sorted and the clock kept without opening anything.

mod disclosure;
mod files;
mod guests;
mod kinds;
pub(crate) mod pdf;
mod reference;
mod status;
mod team;

use std::collections::BTreeMap;

use keyhold_storage::{Batch, StorageError};
use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};

pub use files::{RequestFile, Upload, MAX_FILES_PER_UPLOAD};
pub use guests::{GuestSession, GUEST_LINK_TTL, GUEST_SESSION_TTL, MAX_LIVE_GUEST_LINKS};
pub use kinds::{complete, read_step, Field, FieldType, RequestKind, Step};
pub use reference::Reference;
pub use status::{add_months, next, DueClock, RequestState, Transition, MAX_EXTENSION_MONTHS};
pub use team::{QueueFilter, TeamMember};

use crate::audit::{AuditAction, AuditActor, AuditEvent, AuditRole, Outcome};
use crate::ids::KeyOwner;
use crate::policy::Principal;
use crate::trees::{
    ACCESS_REQUESTS, ACCESS_REQUESTS_BY_ORG, ACCESS_REQUESTS_BY_PATIENT,
    ACCESS_REQUESTS_BY_REQUESTER, ACCESS_REQUEST_MESSAGES, ACCESS_REQUEST_REFS, ORGS,
};
use crate::vault::Aad;
use crate::{AccountId, DomainError, Email, Keyhold, OrgId, PatientId, RequestFileId, RequestId};

/// Longest message, either way.
pub const MAX_MESSAGE_CHARS: usize = 5_000;

/// Who asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Requester {
    Account {
        account: AccountId,
    },
    /// A guest, known by the blind index of the address they proved.
    Guest {
        email: [u8; 32],
    },
}

impl Requester {
    fn index_key(&self) -> Vec<u8> {
        match self {
            Requester::Account { account } => {
                let mut k = vec![b'a'];
                k.extend_from_slice(account.as_bytes());
                k
            }
            Requester::Guest { email } => {
                let mut k = vec![b'g'];
                k.extend_from_slice(email);
                k
            }
        }
    }

    pub fn is_guest(&self) -> bool {
        matches!(self, Requester::Guest { .. })
    }
}

/// The person asking, as the web layer found them.
pub enum Asker {
    Account(Principal),
    Guest(GuestSession),
}

impl Asker {
    pub(crate) fn requester(&self) -> Requester {
        match self {
            Asker::Account(p) => Requester::Account { account: p.account },
            Asker::Guest(g) => Requester::Guest { email: g.blind },
        }
    }

    fn actor(&self) -> AuditActor {
        match self {
            Asker::Account(p) => AuditActor::patient(p.account),
            Asker::Guest(_) => AuditActor::anonymous(),
        }
    }
}

/// One extension of the deadline.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ExtensionRowV1 {
    months: u8,
    #[serde(with = "time::serde::rfc3339")]
    at: OffsetDateTime,
    by: AccountId,
    /// The reason, sealed under the request's key.
    reason: Vec<u8>,
}

/// A request as stored. Only the answers, reasons and texts are personal,
/// and they are sealed; the rest drives the queue and the clock.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct RequestRowV1 {
    org: OrgId,
    kind: RequestKind,
    state: RequestState,
    requester: Requester,
    reference: Option<Reference>,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    submitted_at: Option<OffsetDateTime>,
    clock: Option<DueClock>,
    #[serde(default)]
    extensions: Vec<ExtensionRowV1>,
    assigned: Option<AccountId>,
    /// The Keyhold record the request is about, once known.
    patient: Option<PatientId>,
    /// A message from the records team awaits the requester (the marker).
    message_for_requester: bool,
    /// A message from the requester awaits the records team.
    message_for_team: bool,
    /// Sealed `BTreeMap<String, String>` of the form's answers.
    answers: Vec<u8>,
    answers_version: u32,
    /// Sealed reason, when rejected.
    rejection: Option<Vec<u8>>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    disclosed_at: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    expires_at: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    purged_at: Option<OffsetDateTime>,
    messages: u32,
}

/// Who wrote a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Party {
    Requester,
    Team { account: AccountId },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct MessageRowV1 {
    #[serde(with = "time::serde::rfc3339")]
    at: OffsetDateTime,
    from: Party,
    /// The text, sealed under the request's key.
    text: Vec<u8>,
    files: Vec<RequestFileId>,
}

/// A row read with the bytes it was read as, so a change can require it unchanged.
pub(crate) struct Loaded {
    id: RequestId,
    raw: Vec<u8>,
    row: RequestRowV1,
}

impl Loaded {
    /// The reference as people read it (empty for a draft).
    fn reference(&self) -> String {
        self.row
            .reference
            .as_ref()
            .map(|r| r.to_string())
            .unwrap_or_default()
    }
}

/// A request in a list: the requester's, or the records team's queue.
#[derive(Clone, Debug, Serialize)]
pub struct RequestSummary {
    pub id: RequestId,
    pub reference: Option<String>,
    pub kind: RequestKind,
    pub kind_label: &'static str,
    /// Whose records (the patient's name as the requester gave it).
    pub name: String,
    pub org: OrgId,
    pub org_name: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub submitted_at: Option<OffsetDateTime>,
    pub state: RequestState,
    pub state_label: &'static str,
    pub team_state_label: &'static str,
    pub tag: &'static str,
    /// A message awaits the requester (on their list) or the team (on the queue).
    pub message_for_requester: bool,
    pub message_for_team: bool,
    pub due: Option<Date>,
    pub paused: bool,
    pub overdue: bool,
    pub assigned: Option<AccountId>,
    pub assigned_name: Option<String>,
    pub guest: bool,
}

/// One file as a page lists it.
#[derive(Clone, Debug, Serialize)]
pub struct FileView {
    pub id: RequestFileId,
    pub name: String,
    pub label: String,
    pub size: u64,
    pub type_label: &'static str,
    #[serde(with = "time::serde::rfc3339")]
    pub uploaded_at: OffsetDateTime,
}

#[derive(Clone, Debug, Serialize)]
pub struct MessageView {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub from_team: bool,
    /// The records officer's name to the team; "Records team" to the requester.
    pub author: String,
    pub text: String,
    pub files: Vec<FileView>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ExtensionView {
    pub months: u8,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub by: String,
    pub reason: String,
}

/// A question and its answer, for the check page and the request page.
#[derive(Clone, Debug, Serialize)]
pub struct Answer {
    pub step: Step,
    pub name: &'static str,
    pub label: String,
    pub value: String,
}

/// Everything one request page shows.
#[derive(Clone, Debug, Serialize)]
pub struct RequestView {
    pub summary: RequestSummary,
    pub answers: Vec<Answer>,
    /// The raw answers by field name (to fill a form again).
    pub values: BTreeMap<String, String>,
    /// Documents the requester sent with the form.
    pub evidence: Vec<FileView>,
    pub messages: Vec<MessageView>,
    pub disclosure: Vec<FileView>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub disclosed_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    pub rejection: Option<String>,
    pub extensions: Vec<ExtensionView>,
    pub extension_months_left: u8,
    /// The Keyhold record is known (it can be compiled from).
    pub linked: bool,
}

impl RequestView {
    /// The document this kind of request needs is among the evidence.
    pub fn has_required_document(&self) -> bool {
        has_required_document(self.summary.kind, &self.evidence)
    }
}

fn has_required_document(kind: RequestKind, evidence: &[FileView]) -> bool {
    evidence.iter().any(|f| f.label == kind.required_document())
}

/// The patient's name as the requester gave it.
pub(crate) fn patient_name(answers: &BTreeMap<String, String>) -> String {
    let part = |k: &str| answers.get(k).map(String::as_str).unwrap_or("");
    format!(
        "{} {}",
        part("patient-given-name"),
        part("patient-family-name")
    )
    .trim()
    .to_string()
}

/// Organisation and account names, looked up once per page rather than
/// once per row (an account's name is a sealed value to open).
#[derive(Default)]
pub(crate) struct Names {
    orgs: std::collections::HashMap<OrgId, String>,
    people: std::collections::HashMap<AccountId, String>,
}

impl Names {
    fn org(&mut self, core: &Keyhold, org: OrgId) -> String {
        self.orgs
            .entry(org)
            .or_insert_with(|| core.organisation_name(org).unwrap_or_default())
            .clone()
    }

    fn person(&mut self, core: &Keyhold, account: AccountId) -> String {
        self.people
            .entry(account)
            .or_insert_with(|| core.display_name(account))
            .clone()
    }
}

fn now_date(now: OffsetDateTime) -> Date {
    now.date()
}

/// "Someone changed it first": two tabs, or two officers at once.
fn changed_meanwhile() -> DomainError {
    DomainError::invalid(
        "request",
        "This request changed while you were working on it. Look at it again and retry.",
    )
}

/// A move the state machine refuses, said the way a page can show it.
fn refused(state: RequestState) -> DomainError {
    DomainError::invalid(
        "request",
        format!(
            "That cannot be done to a request that is {}",
            state.team_label().to_lowercase()
        ),
    )
}

impl Keyhold {
    // ------------------------------------------------------------------
    // Rows

    pub(crate) fn load_request(&self, id: RequestId) -> Result<Loaded, DomainError> {
        let raw = self
            .store
            .get(ACCESS_REQUESTS, id.as_bytes())?
            .ok_or(DomainError::NotFound)?;
        let row = serde_json::from_slice(&raw)?;
        Ok(Loaded { id, raw, row })
    }

    /// Adds the changed row to `batch`, on condition that nobody changed it
    /// since it was read.
    pub(crate) fn put_request(&self, batch: &mut Batch, l: &Loaded) -> Result<(), DomainError> {
        batch.require_equals(
            ACCESS_REQUESTS,
            l.id.as_bytes().to_vec(),
            Some(l.raw.clone()),
        );
        batch.put(
            ACCESS_REQUESTS,
            l.id.as_bytes().to_vec(),
            serde_json::to_vec(&l.row)?,
        );
        Ok(())
    }

    pub(crate) async fn submit_request_batch(&self, batch: Batch) -> Result<(), DomainError> {
        match self.store.submit(batch).await {
            Ok(_) => Ok(()),
            Err(StorageError::Conflict) => Err(changed_meanwhile()),
            Err(e) => Err(e.into()),
        }
    }

    fn open_answers(&self, l: &Loaded) -> Result<BTreeMap<String, String>, DomainError> {
        if l.row.answers.is_empty() {
            return Ok(BTreeMap::new());
        }
        let dek = self.vault.key(KeyOwner::Request(l.id))?;
        let plain = self.vault.open(
            &dek,
            &Aad::access_request(
                KeyOwner::Request(l.id),
                "answers",
                l.id.as_bytes(),
                l.row.answers_version,
            ),
            &l.row.answers,
        )?;
        Ok(serde_json::from_slice(&plain)?)
    }

    fn seal_answers(
        &self,
        l: &mut Loaded,
        answers: &BTreeMap<String, String>,
    ) -> Result<(), DomainError> {
        let dek = self.vault.key(KeyOwner::Request(l.id))?;
        l.row.answers_version += 1;
        l.row.answers = self.vault.seal(
            &dek,
            &Aad::access_request(
                KeyOwner::Request(l.id),
                "answers",
                l.id.as_bytes(),
                l.row.answers_version,
            ),
            &serde_json::to_vec(answers)?,
        )?;
        Ok(())
    }

    pub(crate) fn seal_text(
        &self,
        id: RequestId,
        kind: &'static str,
        record: &[u8],
        text: &str,
    ) -> Result<Vec<u8>, DomainError> {
        let dek = self.vault.key(KeyOwner::Request(id))?;
        self.vault.seal(
            &dek,
            &Aad::access_request(KeyOwner::Request(id), kind, record, 0),
            text.as_bytes(),
        )
    }

    pub(crate) fn open_text(
        &self,
        id: RequestId,
        kind: &'static str,
        record: &[u8],
        sealed: &[u8],
    ) -> Result<String, DomainError> {
        let dek = self.vault.key(KeyOwner::Request(id))?;
        let plain = self.vault.open(
            &dek,
            &Aad::access_request(KeyOwner::Request(id), kind, record, 0),
            sealed,
        )?;
        Ok(String::from_utf8_lossy(&plain).into_owned())
    }

    /// An audit event about a request; `patient` when the request is linked
    /// to a Keyhold record, so the patient reads it in their access log.
    pub(crate) fn request_event(
        &self,
        actor: AuditActor,
        action: AuditAction,
        l: &Loaded,
        what: &str,
        purpose: &str,
    ) -> AuditEvent {
        AuditEvent {
            at: self.clock.now(),
            actor,
            action,
            patient: l.row.patient,
            resource: if what.is_empty() {
                format!("access-request/{}", l.id)
            } else {
                format!("access-request/{}/{what}", l.id)
            },
            purpose: purpose.into(),
            outcome: Outcome::Success,
            basis: None,
        }
    }

    /// An audit event by a records officer of `org` about a request.
    pub(crate) fn officer_event(
        &self,
        p: &Principal,
        org: OrgId,
        action: AuditAction,
        l: &Loaded,
        what: &str,
        purpose: &str,
    ) -> AuditEvent {
        self.request_event(Self::officer_actor(p, org), action, l, what, purpose)
    }

    pub(crate) fn officer_actor(p: &Principal, org: OrgId) -> AuditActor {
        AuditActor {
            account: Some(p.account),
            role: AuditRole::RecordsOfficer,
            organisation: Some(org.to_string()),
            acting_for: None,
        }
    }

    /// The request, if `asker` made it; anyone else gets "not found".
    fn requesters_request(&self, asker: &Asker, id: RequestId) -> Result<Loaded, DomainError> {
        let l = self.load_request(id)?;
        if l.row.requester != asker.requester() {
            return Err(DomainError::NotFound);
        }
        Ok(l)
    }

    pub(crate) fn summary(
        &self,
        l: &Loaded,
        answers: &BTreeMap<String, String>,
        names: &mut Names,
    ) -> Result<RequestSummary, DomainError> {
        let today = self.today();
        let name = patient_name(answers);
        let r = &l.row;
        Ok(RequestSummary {
            id: l.id,
            reference: r.reference.as_ref().map(|x| x.to_string()),
            kind: r.kind,
            kind_label: r.kind.short_label(),
            name,
            org: r.org,
            org_name: names.org(self, r.org),
            submitted_at: r.submitted_at,
            state: r.state,
            state_label: r.state.label(),
            team_state_label: r.state.team_label(),
            tag: r.state.tag(),
            message_for_requester: r.message_for_requester && r.state.is_open(),
            message_for_team: r.message_for_team && r.state.is_open(),
            due: r.clock.filter(|_| r.state.is_open()).map(|c| c.due(today)),
            paused: r.clock.is_some_and(|c| c.paused_since.is_some()) && r.state.is_open(),
            overdue: r.clock.is_some_and(|c| c.is_overdue(r.state, today)),
            assigned: r.assigned,
            assigned_name: r.assigned.map(|a| names.person(self, a)),
            guest: r.requester.is_guest(),
        })
    }

    fn view(&self, l: &Loaded, team: bool) -> Result<RequestView, DomainError> {
        let values = self.open_answers(l)?;
        let mut names = Names::default();
        let summary = self.summary(l, &values, &mut names)?;
        let mut answers = Vec::new();
        for step in l.row.kind.steps() {
            for f in l.row.kind.fields(step) {
                if let Some(v) = values.get(f.name) {
                    let value = match f.kind {
                        FieldType::Date => {
                            Date::parse(v, &time::format_description::well_known::Iso8601::DATE)
                                .map(long_date)
                                .unwrap_or_else(|_| v.clone())
                        }
                        FieldType::NhsNumber => crate::NhsNumber::parse(v)
                            .map(|n| n.to_string())
                            .unwrap_or_else(|_| v.clone()),
                        _ => v.clone(),
                    };
                    answers.push(Answer {
                        step,
                        name: f.name,
                        label: if team {
                            f.team_label()
                        } else {
                            f.short_label().to_string()
                        },
                        value,
                    });
                }
            }
        }
        let (evidence, disclosure) = self.request_files(l)?;
        let mut messages = Vec::new();
        for item in self.store.scan(ACCESS_REQUEST_MESSAGES, l.id.as_bytes()) {
            let (k, raw) = item?;
            let m: MessageRowV1 = serde_json::from_slice(&raw)?;
            let text = self.open_text(l.id, "message", &k, &m.text)?;
            let files = m
                .files
                .iter()
                .filter_map(|f| evidence.iter().find(|e| e.id == *f).cloned())
                .collect();
            let (from_team, author) = match m.from {
                Party::Requester => (false, summary_requester_name(&values, l.row.kind)),
                Party::Team { account } => (
                    true,
                    if team {
                        names.person(self, account)
                    } else {
                        "Records team".to_string()
                    },
                ),
            };
            messages.push(MessageView {
                at: m.at,
                from_team,
                author,
                text,
                files,
            });
        }
        let in_messages: std::collections::HashSet<RequestFileId> = messages
            .iter()
            .flat_map(|m| m.files.iter().map(|f| f.id))
            .collect();
        let evidence = evidence
            .into_iter()
            .filter(|f| !in_messages.contains(&f.id))
            .collect();
        let rejection = match &l.row.rejection {
            Some(sealed) => Some(self.open_text(l.id, "rejection", l.id.as_bytes(), sealed)?),
            None => None,
        };
        let mut extensions = Vec::new();
        for (i, e) in l.row.extensions.iter().enumerate() {
            let record = [l.id.as_bytes().as_slice(), &(i as u32).to_be_bytes()].concat();
            extensions.push(ExtensionView {
                months: e.months,
                at: e.at,
                by: names.person(self, e.by),
                reason: self.open_text(l.id, "extension", &record, &e.reason)?,
            });
        }
        Ok(RequestView {
            summary,
            answers,
            values,
            evidence,
            messages,
            disclosure,
            disclosed_at: l.row.disclosed_at,
            expires_at: l.row.expires_at,
            rejection,
            extensions,
            extension_months_left: MAX_EXTENSION_MONTHS
                - l.row.clock.map(|c| c.extension_months).unwrap_or(0),
            linked: l.row.patient.is_some(),
        })
    }

    // ------------------------------------------------------------------
    // The requester's side

    /// Every organisation one can ask, by name.
    pub fn organisations_to_ask(&self) -> Result<Vec<(OrgId, String)>, DomainError> {
        let mut out = Vec::new();
        for item in self.store.scan(ORGS, b"") {
            let (k, _) = item?;
            if let Some(org) = OrgId::from_bytes(&k) {
                out.push((org, self.organisation_name(org)?));
            }
        }
        out.sort_by_key(|(_, n)| n.to_lowercase());
        Ok(out)
    }

    /// Starts a draft request to `org` of `kind`; only its requester sees it.
    pub async fn start_request(
        &self,
        asker: &Asker,
        org: OrgId,
        kind: RequestKind,
    ) -> Result<RequestId, DomainError> {
        self.organisation_name(org)?;
        let id = RequestId::new_random();
        let mut batch = Batch::new();
        self.vault.create_key(KeyOwner::Request(id), &mut batch)?;
        let row = RequestRowV1 {
            org,
            kind,
            state: RequestState::Draft,
            requester: asker.requester(),
            reference: None,
            created_at: self.clock.now(),
            submitted_at: None,
            clock: None,
            extensions: Vec::new(),
            assigned: None,
            patient: None,
            message_for_requester: false,
            message_for_team: false,
            answers: Vec::new(),
            answers_version: 0,
            rejection: None,
            disclosed_at: None,
            expires_at: None,
            purged_at: None,
            messages: 0,
        };
        let mut l = Loaded {
            id,
            raw: Vec::new(),
            row,
        };
        let mut answers = BTreeMap::new();
        if let Asker::Guest(g) = asker {
            answers.insert("contact-email".to_string(), g.email.as_str().to_string());
        }
        self.seal_answers(&mut l, &answers)?;
        batch.require_absent(ACCESS_REQUESTS, id.as_bytes().to_vec());
        batch.put(
            ACCESS_REQUESTS,
            id.as_bytes().to_vec(),
            serde_json::to_vec(&l.row)?,
        );
        let mut by = l.row.requester.index_key();
        by.extend_from_slice(id.as_bytes());
        batch.put(ACCESS_REQUESTS_BY_REQUESTER, by, Vec::new());
        self.audit.add(
            &mut batch,
            &self.request_event(
                asker.actor(),
                AuditAction::Create,
                &l,
                "",
                "started a draft access request",
            ),
        )?;
        self.submit_request_batch(batch).await?;
        Ok(id)
    }

    /// A draft and its answers so far, for the form.
    pub fn draft(&self, asker: &Asker, id: RequestId) -> Result<RequestView, DomainError> {
        let l = self.requesters_request(asker, id)?;
        if l.row.state != RequestState::Draft {
            return Err(DomainError::NotFound);
        }
        self.view(&l, false)
    }

    /// Saves one step of a draft; the answers of other steps are kept.
    pub async fn save_step(
        &self,
        asker: &Asker,
        id: RequestId,
        step: Step,
        form: &BTreeMap<String, String>,
    ) -> Result<(), DomainError> {
        let mut l = self.requesters_request(asker, id)?;
        if l.row.state != RequestState::Draft || !l.row.kind.steps().contains(&step) {
            return Err(DomainError::NotFound);
        }
        let mut answers = self.open_answers(&l)?;
        read_step(l.row.kind, step, form, self.today(), &mut answers)
            .map_err(DomainError::Invalid)?;
        self.seal_answers(&mut l, &answers)?;
        let mut batch = Batch::new();
        self.put_request(&mut batch, &l)?;
        self.submit_request_batch(batch).await
    }

    /// Sends a complete draft: a reference, the clock starts, the
    /// organisation's queue shows it, and a confirmation is mailed.
    pub async fn submit_request(
        &self,
        asker: &Asker,
        id: RequestId,
    ) -> Result<Reference, DomainError> {
        let mut l = self.requesters_request(asker, id)?;
        let to = next(l.row.state, Transition::Submit, l.row.requester.is_guest())
            .ok_or(DomainError::NotFound)?;
        let answers = self.open_answers(&l)?;
        if let Some(step) = complete(l.row.kind, &answers) {
            return Err(DomainError::invalid(
                step.slug(),
                format!(
                    "Answer the questions in \u{201c}{}\u{201d} first",
                    step.heading(l.row.kind)
                ),
            ));
        }
        let (evidence, _) = self.request_files(&l)?;
        if !has_required_document(l.row.kind, &evidence) {
            return Err(DomainError::invalid(
                "documents",
                l.row.kind.missing_document_message(),
            ));
        }
        let now = self.clock.now();
        l.row.state = to;
        l.row.submitted_at = Some(now);
        l.row.clock = Some(DueClock::new(now_date(now)));
        if let (Asker::Account(p), RequestKind::OwnRecords) = (asker, l.row.kind) {
            l.row.patient = p.own_patient;
        }
        let mut batch = Batch::new();
        let mut by_org = l.row.org.as_bytes().to_vec();
        by_org.extend_from_slice(id.as_bytes());
        batch.put(ACCESS_REQUESTS_BY_ORG, by_org, Vec::new());
        self.link_patient_into(&mut batch, &l);
        // A fresh reference until one is free (a clash is a 1 in 2^40 event).
        let mut reference = Reference::random()?;
        for _ in 0..8 {
            if self
                .store
                .get(ACCESS_REQUEST_REFS, reference.key())?
                .is_none()
            {
                break;
            }
            reference = Reference::random()?;
        }
        batch.require_absent(ACCESS_REQUEST_REFS, reference.key().to_vec());
        batch.put(
            ACCESS_REQUEST_REFS,
            reference.key().to_vec(),
            id.as_bytes().to_vec(),
        );
        l.row.reference = Some(reference.clone());
        self.put_request(&mut batch, &l)?;
        self.audit.add(
            &mut batch,
            &self.request_event(
                asker.actor(),
                AuditAction::Create,
                &l,
                "",
                "submitted an access request",
            ),
        )?;
        self.submit_request_batch(batch).await?;
        let org = self.organisation_name(l.row.org)?;
        self.mail_requester(
            &l,
            &format!("Your request for records: {reference}"),
            &format!(
                "We have received your request for copies of health records from {org}.\n\n\
                 Your reference is {reference}. Please quote it if you contact us.\n\n\
                 The records team will usually reply within one calendar month. You can see your request, \
                 and any message about it, here:\n\n{}\n",
                self.request_link(&l)
            ),
        )
        .await?;
        Ok(reference)
    }

    /// The requester's requests (drafts included), newest first; `q`
    /// narrows them by reference, name, type or status.
    pub fn my_requests(&self, asker: &Asker, q: &str) -> Result<Vec<RequestSummary>, DomainError> {
        let mut out = Vec::new();
        let mut names = Names::default();
        let prefix = asker.requester().index_key();
        for item in self.store.scan(ACCESS_REQUESTS_BY_REQUESTER, &prefix) {
            let (k, _) = item?;
            let Some(id) = RequestId::from_bytes(&k[prefix.len()..]) else {
                continue;
            };
            let l = match self.load_request(id) {
                Ok(l) => l,
                Err(DomainError::NotFound) => continue,
                Err(e) => return Err(e),
            };
            let answers = self.open_answers(&l)?;
            let s = self.summary(&l, &answers, &mut names)?;
            if matches_query(&s, q) {
                out.push(s);
            }
        }
        // Drafts first, then the newest.
        out.sort_by_key(|s| std::cmp::Reverse((s.submitted_at.is_none(), s.submitted_at)));
        Ok(out)
    }

    /// One of the requester's requests; reading it clears the message marker.
    pub async fn my_request(
        &self,
        asker: &Asker,
        id: RequestId,
    ) -> Result<RequestView, DomainError> {
        let mut l = self.requesters_request(asker, id)?;
        if l.row.state == RequestState::Draft {
            return Err(DomainError::NotFound);
        }
        let view = self.view(&l, false)?;
        let mut batch = Batch::new();
        if l.row.message_for_requester && l.row.state != RequestState::AwaitingRequester {
            l.row.message_for_requester = false;
            self.put_request(&mut batch, &l)?;
        }
        self.audit.add(
            &mut batch,
            &self.request_event(
                asker.actor(),
                AuditAction::Read,
                &l,
                "",
                "requester read their access request",
            ),
        )?;
        self.submit_request_batch(batch).await?;
        Ok(view)
    }

    /// The requester's message (a reply while a question awaits them
    /// restarts the clock).
    pub async fn requester_message(
        &self,
        asker: &Asker,
        id: RequestId,
        text: &str,
        uploads: Vec<Upload>,
    ) -> Result<(), DomainError> {
        let mut l = self.requesters_request(asker, id)?;
        if !l.row.state.is_open() {
            return Err(refused(l.row.state));
        }
        if l.row.requester.is_guest() {
            return Err(DomainError::invalid("text", "Guests cannot send messages. The records team will contact you by email if they need to."));
        }
        let text = check_message(text)?;
        let mut batch = Batch::new();
        let files = self.add_files_into(
            &mut batch,
            &l,
            uploads,
            files::FileRole::Requester,
            "Sent with a message",
        )?;
        if l.row.state == RequestState::AwaitingRequester {
            if let Some(to) = next(l.row.state, Transition::Reply, false) {
                l.row.state = to;
            }
            if let Some(c) = l.row.clock.as_mut() {
                c.resume(self.today());
            }
        }
        l.row.message_for_requester = false;
        l.row.message_for_team = true;
        self.message_into(&mut batch, &mut l, Party::Requester, &text, files)?;
        self.audit.add(
            &mut batch,
            &self.request_event(
                asker.actor(),
                AuditAction::Update,
                &l,
                "messages",
                "requester replied",
            ),
        )?;
        self.submit_request_batch(batch).await
    }

    /// Withdraws an open request (the team stops work on it).
    pub async fn withdraw_request(&self, asker: &Asker, id: RequestId) -> Result<(), DomainError> {
        let mut l = self.requesters_request(asker, id)?;
        let to = next(
            l.row.state,
            Transition::Withdraw,
            l.row.requester.is_guest(),
        )
        .ok_or_else(|| refused(l.row.state))?;
        l.row.state = to;
        l.row.message_for_requester = false;
        let mut batch = Batch::new();
        self.close_links(&mut batch, &l);
        self.put_request(&mut batch, &l)?;
        self.audit.add(
            &mut batch,
            &self.request_event(
                asker.actor(),
                AuditAction::Update,
                &l,
                "",
                "requester withdrew the request",
            ),
        )?;
        self.submit_request_batch(batch).await
    }

    /// An open request linked to a Keyhold record is the policy's basis
    /// for its records officers to compile from that record (rule 6).
    pub(crate) fn link_patient_into(&self, batch: &mut Batch, l: &Loaded) {
        if let Some(patient) = l.row.patient {
            batch.put(
                ACCESS_REQUESTS_BY_PATIENT,
                crate::trees::pair(patient.as_bytes(), l.id.as_bytes()),
                l.row.org.as_bytes().to_vec(),
            );
        }
    }

    /// A finished request no longer gives a records officer a basis to
    /// compile from the patient's record.
    pub(crate) fn close_links(&self, batch: &mut Batch, l: &Loaded) {
        if let Some(patient) = l.row.patient {
            batch.delete(
                ACCESS_REQUESTS_BY_PATIENT,
                crate::trees::pair(patient.as_bytes(), l.id.as_bytes()),
            );
        }
    }

    pub(crate) fn message_into(
        &self,
        batch: &mut Batch,
        l: &mut Loaded,
        from: Party,
        text: &str,
        files: Vec<RequestFileId>,
    ) -> Result<(), DomainError> {
        let seq = l.row.messages;
        l.row.messages += 1;
        let mut key = l.id.as_bytes().to_vec();
        key.extend_from_slice(&seq.to_be_bytes());
        let sealed = self.seal_text(l.id, "message", &key, text)?;
        batch.require_absent(ACCESS_REQUEST_MESSAGES, key.clone());
        batch.put(
            ACCESS_REQUEST_MESSAGES,
            key,
            serde_json::to_vec(&MessageRowV1 {
                at: self.clock.now(),
                from,
                text: sealed,
                files,
            })?,
        );
        self.put_request(batch, l)
    }

    fn request_link(&self, l: &Loaded) -> String {
        match l.row.requester {
            Requester::Account { .. } => self.link(&format!("/access-requests/{}", l.id)),
            // A guest signs in again by email; the link says where.
            Requester::Guest { .. } => self.link("/access-requests/guest"),
        }
    }

    /// Mails the requester at the address of their account, or the one a
    /// guest proved. Notices and links only: never record content. The
    /// change it announces is already stored, so a failure is logged, not
    /// returned: the requester still sees the change on their list.
    pub(crate) async fn mail_requester(
        &self,
        l: &Loaded,
        subject: &str,
        text: &str,
    ) -> Result<(), DomainError> {
        let sent = async {
            let to = match l.row.requester {
                Requester::Account { account } => self.account_email(account)?,
                Requester::Guest { .. } => Email::parse(
                    self.open_answers(l)?
                        .get("contact-email")
                        .map(String::as_str)
                        .unwrap_or(""),
                )
                .map_err(|e| DomainError::Internal(format!("a guest request's address: {e}")))?,
            };
            self.send_mail(&to, subject, text).await
        };
        if let Err(e) = sent.await {
            tracing::warn!(request = %l.id, error = %e, "access request mail failed");
        }
        Ok(())
    }
}

fn summary_requester_name(values: &BTreeMap<String, String>, kind: RequestKind) -> String {
    match values.get("requester-name") {
        Some(n) if kind != RequestKind::OwnRecords => n.clone(),
        _ => patient_name(values),
    }
}

pub(crate) fn check_message(text: &str) -> Result<String, DomainError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(DomainError::invalid("text", "Enter a message"));
    }
    if t.chars().count() > MAX_MESSAGE_CHARS {
        return Err(DomainError::invalid(
            "text",
            format!("The message must be {MAX_MESSAGE_CHARS} characters or fewer"),
        ));
    }
    Ok(t.to_string())
}

/// "10 December 1950".
pub(crate) fn long_date(d: Date) -> String {
    format!("{} {} {}", d.day(), d.month(), d.year())
}

/// Every word of `q` is in the reference, name, type or status.
pub(crate) fn matches_query(s: &RequestSummary, q: &str) -> bool {
    let hay = format!(
        "{} {} {} {} {} {}",
        s.reference.as_deref().unwrap_or(""),
        s.reference
            .as_deref()
            .map(|r| r.replace('-', ""))
            .unwrap_or_default(),
        s.name,
        s.kind_label,
        s.state_label,
        s.org_name
    )
    .to_lowercase();
    q.split_whitespace()
        .all(|w| hay.contains(&w.to_lowercase()))
}

impl Keyhold {
    /// The open requests about `patient` (the policy's subject-access facts).
    pub fn subject_access_of(
        &self,
        patient: PatientId,
    ) -> Result<Vec<crate::policy::SubjectAccess>, DomainError> {
        let mut out = Vec::new();
        for item in self
            .store
            .scan(ACCESS_REQUESTS_BY_PATIENT, patient.as_bytes())
        {
            let (k, v) = item?;
            if let (Some(request), Some(org)) =
                (RequestId::from_bytes(&k[16..]), OrgId::from_bytes(&v))
            {
                out.push(crate::policy::SubjectAccess {
                    request,
                    patient,
                    org,
                });
            }
        }
        Ok(out)
    }
}
