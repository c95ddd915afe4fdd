//! Questionnaires sent to a patient: a professional assigns a PHQ-9 or a
//! GAD-7, the patient (or a carer acting for them) answers it, and the score
//! lands in the record as an outcome measure (an entry of kind
//! `QuestionnaireResponse`, category mental health).
//!
//! Who may do what, decided by `policy::decide` over the patient's consent
//! state as it stands for this request, on `Resource::in_category(patient,
//! MentalHealth)` (both questionnaires measure mental health):
//! - **assign**: `Contribute` allowed on an organisation's grant (a
//!   professional in a clinical role whose organisation may add to the mental
//!   health part). Nobody else assigns, not even the patient: a questionnaire
//!   is a request from a care team. Refused as "not found".
//! - **complete**: the patient (`Contribute` as owner), or a carer whose
//!   active grant allows, in mental health, `Contribute` *and* acting on
//!   their behalf *and* `Read`: the answers are the patient's own report, so
//!   a carer gives them only when they may act for the patient, and only
//!   what they can see (every page of a record needs a read, and the mail
//!   must not send anyone to a page they cannot open). Professionals never
//!   answer for the patient.
//! - **see**: `Read` in mental health lists every assignment with its score.
//!
//! An assignment (which questionnaire, from whom, its state) is sealed under
//! the patient's data key, bound to the patient, the assignment id and the
//! row version. Completing writes the response entry and the completed
//! assignment in one atomic batch that requires the assignment row it read,
//! so a double submit cannot complete it twice.

use std::fmt;
use std::str::FromStr;

use keyhold_storage::{Batch, StorageError};
use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::audit::{AuditAction, AuditEvent, Outcome};
use crate::consent::{Grant, GrantState, Grantee};
use crate::ids::KeyOwner;
use crate::policy::{decide, Action, Basis, Decision, DenyReason, Principal, Resource};
use crate::questionnaires::{Completed, Questionnaire, ResponseError, Score, Severity};
use crate::records::{Access, ConsentState};
use crate::trees::{pair, QUESTIONNAIRE_ASSIGNMENTS};
use crate::vault::Aad;
use crate::{
    AccountId, Category, Demographics, DomainError, EntryId, EntryKind, Keyhold, NewEntry, OrgId,
    PatientId, Source,
};

/// The category both questionnaires and their responses belong to.
pub const QUESTIONNAIRE_CATEGORY: Category = Category::MentalHealth;

/// The form field of each item, item 1 first (a validation error names the
/// item it is about through these).
pub const ITEM_FIELDS: [&str; 9] = [
    "item-1", "item-2", "item-3", "item-4", "item-5", "item-6", "item-7", "item-8", "item-9",
];

/// One questionnaire sent to one patient. Random (UUID v4), like every id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AssignmentId(Uuid);

impl AssignmentId {
    pub fn new_random() -> Self {
        Self(Uuid::new_v4())
    }
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        Uuid::from_slice(b).ok().map(Self)
    }
}

impl fmt::Display for AssignmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for AssignmentId {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s)
            .map(Self)
            .map_err(|_| DomainError::NotFound)
    }
}

/// The short name people know a questionnaire by ("PHQ-9").
pub fn short_name(q: Questionnaire) -> &'static str {
    match q {
        Questionnaire::Phq9 => "PHQ-9",
        Questionnaire::Gad7 => "GAD-7",
    }
}

/// The severity bands of `q`, lowest first, as (first total, last total,
/// band): derived from `Questionnaire::severity`, the one source of truth.
pub fn bands(q: Questionnaire) -> Vec<(u8, u8, Severity)> {
    let mut out: Vec<(u8, u8, Severity)> = Vec::new();
    for total in 0..=q.max_score() {
        let s = q.severity(total);
        match out.last_mut() {
            Some(last) if last.2 == s => last.1 = total,
            _ => out.push((total, total, s)),
        }
    }
    out
}

/// Stored as its stable id ("phq-9").
mod questionnaire_id {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    use crate::questionnaires::Questionnaire;

    pub fn serialize<S: Serializer>(q: &Questionnaire, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(q.id())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Questionnaire, D::Error> {
        let id = String::deserialize(d)?;
        Questionnaire::parse(&id).ok_or_else(|| D::Error::custom("unknown questionnaire"))
    }
}

/// Where an assignment stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum AssignmentStatus {
    Pending,
    Completed {
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
        /// The account that gave the answers (the patient, or a carer).
        by: AccountId,
        /// The entry the response became.
        response: EntryId,
        total: u8,
        /// PHQ-9 item 9 was answered above "Not at all": follow-up is needed
        /// whatever the total.
        #[serde(default)]
        follow_up: bool,
    },
}

/// A questionnaire sent to a patient, and what became of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub id: AssignmentId,
    pub patient: PatientId,
    #[serde(with = "questionnaire_id")]
    pub questionnaire: Questionnaire,
    /// The organisation that sent it, and its name when it did.
    pub org: OrgId,
    pub org_name: String,
    pub assigned_by: AccountId,
    #[serde(with = "time::serde::rfc3339")]
    pub assigned_at: OffsetDateTime,
    pub status: AssignmentStatus,
}

impl Assignment {
    pub fn is_pending(&self) -> bool {
        matches!(self.status, AssignmentStatus::Pending)
    }

    /// The total and its band, once completed.
    pub fn score(&self) -> Option<(u8, Severity)> {
        match self.status {
            AssignmentStatus::Completed { total, .. } => {
                Some((total, self.questionnaire.severity(total)))
            }
            AssignmentStatus::Pending => None,
        }
    }

    pub fn completed_at(&self) -> Option<OffsetDateTime> {
        match self.status {
            AssignmentStatus::Completed { at, .. } => Some(at),
            AssignmentStatus::Pending => None,
        }
    }
}

/// What the principal may do with the patient's questionnaires, decided over
/// the same consent state as the request that returned it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct QuestionnaireRights {
    /// See every assignment and its score (read in mental health).
    pub read: bool,
    /// Answer a pending one (the patient, or a carer who may act for them).
    pub complete: bool,
    /// Send one (a professional whose organisation may add to mental health).
    pub assign: bool,
}

/// The questionnaires page: the assignments the principal may see, newest
/// first, and what they may do.
#[derive(Clone, Debug)]
pub struct Questionnaires {
    pub assignments: Vec<Assignment>,
    pub can: QuestionnaireRights,
}

impl Questionnaires {
    /// The completed scores of `q`, oldest first: (completion date, total,
    /// band).
    pub fn history(&self, q: Questionnaire) -> Vec<(Date, u8, Severity)> {
        let mut done: Vec<(OffsetDateTime, u8, Severity)> = self
            .assignments
            .iter()
            .filter(|a| a.questionnaire == q)
            .filter_map(|a| Some((a.completed_at()?, a.score()?)))
            .map(|(at, (total, band))| (at, total, band))
            .collect();
        done.sort_by_key(|d| d.0);
        done.into_iter()
            .map(|(at, total, band)| (at.date(), total, band))
            .collect()
    }
}

/// One assignment and what the principal may do with it.
#[derive(Clone, Debug)]
pub struct AssignmentView {
    pub assignment: Assignment,
    pub can: QuestionnaireRights,
}

/// What completing returned: the entry written and its score.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    pub assignment: AssignmentId,
    pub entry: EntryId,
    pub score: Score,
}

#[derive(Serialize, Deserialize)]
struct AssignmentRowV1 {
    /// Bumped on every change; bound into the seal.
    version: u32,
    /// The `Assignment`, sealed under the patient's data key.
    #[serde(with = "crate::rows::b64")]
    sealed: Vec<u8>,
}

/// What a request needs to be allowed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Need {
    /// The list, one assignment, scores over time.
    Read,
    Complete,
    Assign,
}

impl Need {
    fn met(self, can: QuestionnaireRights) -> bool {
        match self {
            Need::Read => can.read,
            Need::Complete => can.complete,
            Need::Assign => can.assign,
        }
    }
}

/// A carer's grant that lets them answer for the patient.
fn lets_carer_complete(g: &Grant, account: AccountId, now: OffsetDateTime) -> bool {
    g.grantee == (Grantee::Account { account })
        && g.state(now) == GrantState::Active
        && g.permissions.read
        && g.permissions.contribute
        && g.permissions.act_on_behalf
        && g.covers(QUESTIONNAIRE_CATEGORY)
}

fn key(patient: PatientId, id: AssignmentId) -> Vec<u8> {
    pair(patient.as_bytes(), id.as_bytes())
}

fn response_error(e: ResponseError) -> DomainError {
    match e {
        ResponseError::WrongCount { got, expected, .. } => DomainError::invalid(
            ITEM_FIELDS
                .get(got.min(expected.saturating_sub(1)))
                .copied()
                .unwrap_or("item-1"),
            "Answer every question",
        ),
        ResponseError::OutOfRange { item, .. } => DomainError::invalid(
            ITEM_FIELDS
                .get(item.saturating_sub(1))
                .copied()
                .unwrap_or("item-1"),
            format!("Select one of the answers to question {item}"),
        ),
    }
}

/// The response entry's details: every item with its answer, then the total
/// and band (and the PHQ-9 item 9 flag).
fn response_details(
    a: &Assignment,
    completed: &Completed,
    score: &Score,
    by_carer: bool,
) -> String {
    let q = a.questionnaire;
    let mut s = format!("{}\nSent by {}.\n", q.title(), a.org_name);
    if by_carer {
        s.push_str("Answered by a carer acting for the patient.\n");
    }
    s.push('\n');
    s.push_str(q.stem());
    s.push('\n');
    for (i, (item, answer)) in q.items().iter().zip(completed.answers()).enumerate() {
        s.push_str(&format!(
            "{}. {}: {} ({})\n",
            i + 1,
            item,
            answer.label(),
            answer.score()
        ));
    }
    s.push_str(&format!(
        "\nTotal: {} out of {} ({}).\n",
        score.total,
        score.max,
        score.severity.label()
    ));
    if score.self_harm_flag {
        s.push_str(
            "Question 9 was answered above \"Not at all\": this needs follow-up whatever the total.\n",
        );
    }
    s
}

impl Keyhold {
    /// Decides the request over the patient's current consent state: what the
    /// principal may do with the questionnaires, and whether that covers
    /// `need`. A refusal is audited and looks like "not found".
    async fn questionnaire_access(
        &self,
        p: &Principal,
        patient: PatientId,
        need: Need,
        audit_action: AuditAction,
        what: &str,
    ) -> Result<(Access, QuestionnaireRights), DomainError> {
        let now = self.clock.now();
        let consent = if p.own_patient == Some(patient) {
            ConsentState::default()
        } else {
            self.consent_state(patient)?
        };
        let resource = Resource::in_category(patient, QUESTIONNAIRE_CATEGORY);
        let read = decide(p, Action::Read, &resource, &consent.facts(), now);
        let contribute = decide(p, Action::Contribute, &resource, &consent.facts(), now);
        let can = QuestionnaireRights {
            read: read.is_allowed(),
            complete: match contribute {
                Decision::Allow(Basis::Owner) => true,
                Decision::Allow(Basis::Carer { .. }) => consent
                    .grants
                    .iter()
                    .any(|g| lets_carer_complete(g, p.account, now)),
                _ => false,
            },
            assign: !p.is_system() && matches!(contribute, Decision::Allow(b) if b.org().is_some()),
        };
        let basis = match (need, read, contribute) {
            (Need::Read, Decision::Allow(b), _) => Some(b),
            (_, _, Decision::Allow(b)) => Some(b),
            _ => None,
        };
        match basis {
            Some(basis) if need.met(can) => Ok((
                Access {
                    now,
                    basis,
                    consent,
                },
                can,
            )),
            _ => {
                let unrelated = matches!(
                    (read, contribute),
                    (
                        Decision::Deny(DenyReason::NoRelationship),
                        Decision::Deny(DenyReason::NoRelationship)
                    )
                );
                self.audit
                    .record(&AuditEvent {
                        at: now,
                        actor: Self::refused_actor(p),
                        action: audit_action,
                        patient: Some(patient),
                        resource: what.to_string(),
                        purpose: if unrelated {
                            "no relationship".into()
                        } else {
                            "not covered by consent".into()
                        },
                        outcome: Outcome::Denied,
                        basis: None,
                    })
                    .await?;
                Err(DomainError::NotFound)
            }
        }
    }

    /// Adds the sealed assignment, as `version`, to `batch`.
    fn put_assignment(
        &self,
        batch: &mut Batch,
        a: &Assignment,
        version: u32,
    ) -> Result<(), DomainError> {
        let dek = self.vault.key(KeyOwner::Patient(a.patient))?;
        let sealed = self.vault.seal(
            &dek,
            &Aad::questionnaire_assignment(a.patient, &a.id, version),
            &serde_json::to_vec(a)?,
        )?;
        batch.put(
            QUESTIONNAIRE_ASSIGNMENTS,
            key(a.patient, a.id),
            serde_json::to_vec(&AssignmentRowV1 { version, sealed })?,
        );
        Ok(())
    }

    fn open_assignment(
        &self,
        patient: PatientId,
        id: AssignmentId,
        raw: &[u8],
    ) -> Result<(u32, Assignment), DomainError> {
        let row: AssignmentRowV1 = serde_json::from_slice(raw)?;
        let dek = self.vault.key(KeyOwner::Patient(patient))?;
        let plain = self.vault.open(
            &dek,
            &Aad::questionnaire_assignment(patient, &id, row.version),
            &row.sealed,
        )?;
        Ok((row.version, serde_json::from_slice(&plain)?))
    }

    /// One assignment with its stored row (for a compare-and-swap) and version.
    fn load_assignment(
        &self,
        patient: PatientId,
        id: AssignmentId,
    ) -> Result<Option<(Vec<u8>, u32, Assignment)>, DomainError> {
        let Some(raw) = self
            .store
            .get(QUESTIONNAIRE_ASSIGNMENTS, &key(patient, id))?
        else {
            return Ok(None);
        };
        let (version, a) = self.open_assignment(patient, id, &raw)?;
        Ok(Some((raw, version, a)))
    }

    /// Every assignment of `patient` (no policy: callers decide).
    fn load_assignments(&self, patient: PatientId) -> Result<Vec<Assignment>, DomainError> {
        let mut out = Vec::new();
        for item in self
            .store
            .scan(QUESTIONNAIRE_ASSIGNMENTS, patient.as_bytes())
        {
            let (k, raw) = item?;
            let id = k
                .get(16..)
                .and_then(AssignmentId::from_bytes)
                .ok_or_else(|| DomainError::Internal("bad assignment key".into()))?;
            out.push(self.open_assignment(patient, id, &raw)?.1);
        }
        Ok(out)
    }

    /// A professional sends a questionnaire to the patient. Allowed when their
    /// organisation's grant lets them add to the mental health part of the
    /// record; anyone else (the patient, a carer, a professional without that
    /// permission) is refused as "not found". The assignment and its audit
    /// entry are one atomic write.
    ///
    /// Then the patient (at the address in their record) and every carer who
    /// may answer for them are emailed a link to the questionnaires page. The
    /// mail names the organisation only: never the questionnaire, a score or
    /// an answer. As with emergency-access notices, a mail that cannot be
    /// sent is logged and does not undo the assignment, which the patient
    /// sees on their questionnaires page whether or not the mail arrived.
    pub async fn assign_questionnaire(
        &self,
        p: &Principal,
        patient: PatientId,
        questionnaire: Questionnaire,
    ) -> Result<AssignmentId, DomainError> {
        let (access, _) = self
            .questionnaire_access(
                p,
                patient,
                Need::Assign,
                AuditAction::Create,
                "questionnaire-assignment",
            )
            .await?;
        let org = access.basis.org().ok_or(DomainError::NotFound)?;
        let org_name = self.organisation_name(org)?;
        let demographics = self.load_demographics(patient)?;
        let a = Assignment {
            id: AssignmentId::new_random(),
            patient,
            questionnaire,
            org,
            org_name,
            assigned_by: p.account,
            assigned_at: access.now,
            status: AssignmentStatus::Pending,
        };
        let mut batch = Batch::new();
        batch.require_absent(QUESTIONNAIRE_ASSIGNMENTS, key(patient, a.id));
        self.put_assignment(&mut batch, &a, 1)?;
        self.audit.add(
            &mut batch,
            &self.event(
                p,
                &access,
                AuditAction::Create,
                patient,
                format!("questionnaire-assignment/{}", a.id),
            ),
        )?;
        self.store.submit(batch).await?;
        self.mail_assignment(&a, &demographics, &access).await;
        Ok(a.id)
    }

    /// "You have a questionnaire to complete", to the patient and to each
    /// carer who may answer for them. Failures are logged, never returned.
    async fn mail_assignment(&self, a: &Assignment, d: &Demographics, access: &Access) {
        const SUBJECT: &str = "You have a questionnaire to complete";
        let org = &a.org_name;
        let mut sent_to = Vec::new();
        match &d.email {
            Some(email) => {
                let text = format!(
                    "{org} has sent you a questionnaire to complete on Keyhold.\n\n\
                     To answer it, sign in to Keyhold and open Questionnaires in your record:\n\n\
                     {}\n\n\
                     This message does not include the questions or any answers.\n",
                    self.link("/record/questionnaires")
                );
                if let Err(e) = self.send_mail(email, SUBJECT, &text).await {
                    tracing::error!(error = %e, assignment = %a.id, "could not email the patient about a questionnaire");
                }
                sent_to.push(email.clone());
            }
            None => {
                tracing::warn!(assignment = %a.id, "patient has no email address: not told of a questionnaire by mail");
            }
        }
        let mut carers: Vec<AccountId> = access
            .consent
            .grants
            .iter()
            .filter_map(|g| match g.grantee {
                Grantee::Account { account } if lets_carer_complete(g, account, access.now) => {
                    Some(account)
                }
                _ => None,
            })
            .collect();
        carers.sort();
        carers.dedup();
        for account in carers {
            let email = match self.account_email(account) {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(error = %e, assignment = %a.id, "carer's address unavailable: not told of a questionnaire");
                    continue;
                }
            };
            if sent_to.contains(&email) {
                continue;
            }
            let text = format!(
                "{org} has sent a questionnaire on Keyhold for someone you help, which you may complete for them.\n\n\
                 To answer it, sign in to Keyhold and open Questionnaires in their record:\n\n\
                 {}\n\n\
                 This message does not include the questions or any answers.\n",
                self.link(&format!("/people/{}/record/questionnaires", a.patient))
            );
            if let Err(e) = self.send_mail(&email, SUBJECT, &text).await {
                tracing::error!(error = %e, assignment = %a.id, "could not email a carer about a questionnaire");
            }
            sent_to.push(email);
        }
    }

    /// The patient's questionnaires, pending and completed, newest first,
    /// for whoever may read the mental health part (the patient always).
    /// Audited as a read.
    pub async fn questionnaires_for(
        &self,
        p: &Principal,
        patient: PatientId,
    ) -> Result<Questionnaires, DomainError> {
        let (access, can) = self
            .questionnaire_access(p, patient, Need::Read, AuditAction::Read, "questionnaires")
            .await?;
        let mut assignments = self.load_assignments(patient)?;
        assignments.sort_by(|a, b| b.assigned_at.cmp(&a.assigned_at).then(b.id.cmp(&a.id)));
        self.audit
            .record(&self.event(
                p,
                &access,
                AuditAction::Read,
                patient,
                "questionnaires".into(),
            ))
            .await?;
        Ok(Questionnaires { assignments, can })
    }

    /// One assignment, as `questionnaires_for` would show it. Audited as a read.
    pub async fn questionnaire(
        &self,
        p: &Principal,
        patient: PatientId,
        id: AssignmentId,
    ) -> Result<AssignmentView, DomainError> {
        let what = format!("questionnaire-assignment/{id}");
        let (access, can) = self
            .questionnaire_access(p, patient, Need::Read, AuditAction::Read, &what)
            .await?;
        let (_, _, assignment) = self
            .load_assignment(patient, id)?
            .ok_or(DomainError::NotFound)?;
        self.audit
            .record(&self.event(p, &access, AuditAction::Read, patient, what))
            .await?;
        Ok(AssignmentView { assignment, can })
    }

    /// The patient, or a carer who may act for them, answers a pending
    /// questionnaire: `answers` holds one answer from 0 to 3 for every item,
    /// item 1 first (anything else is `Invalid`, naming the item). One that
    /// is no longer pending is refused with `Conflict`.
    ///
    /// The response becomes an entry (kind `QuestionnaireResponse`, mental
    /// health, dated today, titled like "PHQ-9: 12 (moderate)", every item's
    /// answer, the total and band in its details) and the assignment is marked
    /// completed with that entry and total, in one atomic write with their
    /// audit entries. The write requires the assignment row as read, so of two
    /// submissions at once only one completes.
    ///
    /// The entry's source is "patient entered", not the organisation that
    /// sent the questionnaire: the answers are the patient's own report (given
    /// by them or by a carer for them), the organisation did not write them.
    /// It also keeps the response visible to the patient at every identity
    /// level (below P9, owners do not see what organisations entered) and
    /// keeps the organisation from reading it through the contributor rule
    /// once its grant ends. The details say which organisation sent it.
    pub async fn complete_questionnaire(
        &self,
        p: &Principal,
        patient: PatientId,
        id: AssignmentId,
        answers: &[u8],
    ) -> Result<Completion, DomainError> {
        let what = format!("questionnaire-assignment/{id}");
        let (access, _) = self
            .questionnaire_access(p, patient, Need::Complete, AuditAction::Update, &what)
            .await?;
        let (raw, version, mut a) = self
            .load_assignment(patient, id)?
            .ok_or(DomainError::NotFound)?;
        if !a.is_pending() {
            return Err(DomainError::Conflict);
        }
        let completed = Completed::parse(a.questionnaire, answers).map_err(response_error)?;
        let score = completed.score();
        let by_carer = matches!(access.basis, Basis::Carer { .. });
        let new = NewEntry {
            kind: EntryKind::QuestionnaireResponse,
            title: format!(
                "{}: {} ({})",
                short_name(a.questionnaire),
                score.total,
                score.severity.label()
            ),
            date: access.now.date(),
            end_date: None,
            category: QUESTIONNAIRE_CATEGORY,
            details: response_details(&a, &completed, &score, by_carer),
        };
        let mut batch = Batch::new();
        let entry = self.entry_into(&mut batch, patient, new, Source::PatientEntered)?;
        a.status = AssignmentStatus::Completed {
            at: access.now,
            by: p.account,
            response: entry,
            total: score.total,
            follow_up: score.self_harm_flag,
        };
        batch.require_equals(QUESTIONNAIRE_ASSIGNMENTS, key(patient, id), Some(raw));
        self.put_assignment(&mut batch, &a, version + 1)?;
        self.audit.add(
            &mut batch,
            &self.event(
                p,
                &access,
                AuditAction::Create,
                patient,
                format!("entry/{entry}"),
            ),
        )?;
        self.audit.add(
            &mut batch,
            &self.event(p, &access, AuditAction::Update, patient, what),
        )?;
        match self.store.submit(batch).await {
            Ok(_) => Ok(Completion {
                assignment: id,
                entry,
                score,
            }),
            Err(StorageError::Conflict) => Err(DomainError::Conflict),
            Err(e) => Err(e.into()),
        }
    }

    /// The scores of `questionnaire` over time, oldest first, from the
    /// completed assignments the principal may read. Audited as a read.
    pub async fn score_history(
        &self,
        p: &Principal,
        patient: PatientId,
        questionnaire: Questionnaire,
    ) -> Result<Vec<(Date, u8, Severity)>, DomainError> {
        let (access, can) = self
            .questionnaire_access(p, patient, Need::Read, AuditAction::Read, "questionnaires")
            .await?;
        let view = Questionnaires {
            assignments: self.load_assignments(patient)?,
            can,
        };
        self.audit
            .record(&self.event(
                p,
                &access,
                AuditAction::Read,
                patient,
                "questionnaires".into(),
            ))
            .await?;
        Ok(view.history(questionnaire))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use std::sync::Arc;

    use time::macros::datetime;
    use time::Duration;

    use super::*;
    use crate::clock::ManualClock;
    use crate::consent::{Membership, Permissions, StaffRole};
    use crate::identity::IdentityLevel;
    use crate::keystore::{init_keys, load_keys};
    use crate::trees::{AUDIT, ENTRIES};
    use crate::{open_memory_store, Email, Settings};

    const PASSWORD: &str = "correct horse battery";

    struct Env {
        dir: tempfile::TempDir,
        clock: Arc<ManualClock>,
        core: Arc<Keyhold>,
        org: OrgId,
        patient: PatientId,
        owner: Principal,
    }

    fn perms(read: bool, contribute: bool, act_on_behalf: bool) -> Permissions {
        Permissions {
            read,
            contribute,
            act_on_behalf,
        }
    }

    impl Env {
        async fn new() -> Env {
            Env::with_mail(true).await
        }

        async fn with_mail(mail: bool) -> Env {
            let dir = tempfile::tempdir().unwrap();
            let keys = dir.path().join("keys");
            init_keys(&keys).unwrap();
            let clock = Arc::new(ManualClock::new(datetime!(2026-01-15 09:00 UTC)));
            let core = Keyhold::with_store(
                open_memory_store().unwrap(),
                load_keys(&keys).unwrap(),
                Settings {
                    danger_fast_hashing: true,
                    ..Default::default()
                },
                clock.clone(),
            )
            .unwrap();
            let core = if mail {
                core.with_mailer(
                    keyhold_mail::Mailer::new(
                        keyhold_mail::MailTransport::Outbox(dir.path().join("outbox")),
                        keyhold_mail::DEFAULT_FROM,
                    )
                    .unwrap(),
                )
                .unwrap()
            } else {
                core
            };
            // An administrator with an account already: no invitation to mail.
            core.create_account_for("Ada Admin", "admin@riverside.test", PASSWORD, None)
                .await
                .unwrap();
            let (org, _) = core
                .create_organisation("Riverside Wellbeing", "admin@riverside.test")
                .await
                .unwrap();
            let mut d = Demographics::empty();
            d.given_name = "Pat".into();
            d.family_name = "Quill".into();
            d.email = Some(Email::parse("pat@example.test").unwrap());
            let patient = core.register_patient(d).await.unwrap();
            let owner =
                Principal::patient(AccountId::new_random(), Some(patient), IdentityLevel::P0);
            Env {
                dir,
                clock,
                core,
                org,
                patient,
                owner,
            }
        }

        fn mails(&self) -> Vec<String> {
            let Ok(rd) = std::fs::read_dir(self.dir.path().join("outbox")) else {
                return Vec::new();
            };
            rd.map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
                .collect()
        }

        async fn grant(&self, grantee: Grantee, permissions: Permissions, cats: &[Category]) {
            let now = self.core.now();
            self.core
                .seed_grant(Grant {
                    id: crate::GrantId::new_random(),
                    patient: self.patient,
                    grantee,
                    permissions,
                    categories: cats.iter().copied().collect(),
                    starts: now,
                    ends: now + Duration::days(365),
                    purpose: "care".into(),
                    created_by: self.owner.account,
                    created_at: now,
                    proxy: None,
                    revoked_at: None,
                    version: 1,
                })
                .await
                .unwrap();
        }

        /// A doctor of `org` (the grant to the organisation is separate).
        fn doctor(&self, org: OrgId) -> Principal {
            Principal {
                account: AccountId::new_random(),
                own_patient: None,
                level: IdentityLevel::P0,
                memberships: vec![Membership {
                    org,
                    role: StaffRole::Doctor,
                }],
            }
        }

        /// A doctor whose organisation may read and add to mental health.
        async fn clinician(&self) -> Principal {
            self.grant(
                Grantee::Organisation { org: self.org },
                perms(true, true, false),
                &[Category::MentalHealth],
            )
            .await;
            self.doctor(self.org)
        }

        /// A carer with an account (so mail can reach them) and a grant.
        async fn carer(&self, email: &str, permissions: Permissions) -> Principal {
            let account = self
                .core
                .create_account_for("Carrie Carer", email, PASSWORD, None)
                .await
                .unwrap();
            self.grant(
                Grantee::Account { account },
                permissions,
                &[Category::MentalHealth],
            )
            .await;
            Principal::patient(account, None, IdentityLevel::P0)
        }

        fn raw_rows(&self) -> Vec<Vec<u8>> {
            self.core
                .store()
                .scan(QUESTIONNAIRE_ASSIGNMENTS, b"")
                .map(|r| r.unwrap().1)
                .collect()
        }

        fn count(&self, tree: keyhold_storage::TreeName) -> usize {
            self.core.store().scan(tree, b"").count()
        }
    }

    fn is_not_found<T: fmt::Debug>(r: Result<T, DomainError>) -> bool {
        matches!(r, Err(DomainError::NotFound))
    }

    #[tokio::test]
    async fn only_a_professional_whose_organisation_may_add_to_mental_health_assigns() {
        let env = Env::new().await;
        let q = Questionnaire::Phq9;
        // No grant at all.
        let stranger = env.doctor(env.org);
        assert!(is_not_found(
            env.core
                .assign_questionnaire(&stranger, env.patient, q)
                .await
        ));
        // General only, with contribute.
        env.grant(
            Grantee::Organisation { org: env.org },
            perms(true, true, false),
            &[Category::General],
        )
        .await;
        assert!(is_not_found(
            env.core
                .assign_questionnaire(&stranger, env.patient, q)
                .await
        ));
        // Mental health, read only.
        env.grant(
            Grantee::Organisation { org: env.org },
            perms(true, false, false),
            &[Category::MentalHealth],
        )
        .await;
        assert!(is_not_found(
            env.core
                .assign_questionnaire(&stranger, env.patient, q)
                .await
        ));
        // The patient and a carer who may add and act for them: not an organisation.
        assert!(is_not_found(
            env.core
                .assign_questionnaire(&env.owner, env.patient, q)
                .await
        ));
        let carer = env
            .carer("carrie@example.test", perms(true, true, true))
            .await;
        assert!(is_not_found(
            env.core.assign_questionnaire(&carer, env.patient, q).await
        ));
        assert_eq!(env.count(QUESTIONNAIRE_ASSIGNMENTS), 0, "nothing stored");

        // Mental health with contribute: allowed, sealed, audited.
        let doctor = env.clinician().await;
        let audit_before = env.count(AUDIT);
        let id = env
            .core
            .assign_questionnaire(&doctor, env.patient, q)
            .await
            .unwrap();
        assert_eq!(env.count(AUDIT), audit_before + 1);
        let rows = env.raw_rows();
        assert_eq!(rows.len(), 1);
        let raw = String::from_utf8_lossy(&rows[0]).to_lowercase();
        for secret in ["phq-9", "riverside", "pending"] {
            assert!(!raw.contains(secret), "{secret} in the stored row");
        }
        let view = env
            .core
            .questionnaire(&doctor, env.patient, id)
            .await
            .unwrap();
        assert_eq!(view.assignment.questionnaire, q);
        assert_eq!(view.assignment.org, env.org);
        assert_eq!(view.assignment.org_name, "Riverside Wellbeing");
        assert_eq!(view.assignment.assigned_by, doctor.account);
        assert!(view.assignment.is_pending());
        assert_eq!(
            view.can,
            QuestionnaireRights {
                read: true,
                complete: false,
                assign: true
            }
        );
    }

    #[tokio::test]
    async fn the_patient_and_carers_who_may_answer_are_mailed_without_clinical_content() {
        let env = Env::new().await;
        let doctor = env.clinician().await;
        env.carer("helper@example.test", perms(true, true, true))
            .await;
        env.carer("viewer@example.test", perms(true, false, true))
            .await;
        env.carer("adder@example.test", perms(true, true, false))
            .await;
        env.carer("blind@example.test", perms(false, true, true))
            .await;
        let before = env.mails().len();
        env.core
            .assign_questionnaire(&doctor, env.patient, Questionnaire::Phq9)
            .await
            .unwrap();
        let mails = env.mails();
        assert_eq!(mails.len(), before + 2, "the patient and one carer");
        let to = |addr: &str| {
            mails
                .iter()
                .find(|m| m.contains(&format!("To: {addr}")))
                .cloned()
        };
        let patient = to("pat@example.test").expect("patient mailed");
        assert!(patient.contains("You have a questionnaire to complete"));
        assert!(patient.contains("Riverside Wellbeing"));
        assert!(patient.contains("/record/questionnaires"));
        let carer = to("helper@example.test").expect("carer mailed");
        assert!(carer.contains(&format!("/people/{}/record/questionnaires", env.patient)));
        assert!(to("viewer@example.test").is_none(), "may not add");
        assert!(to("adder@example.test").is_none(), "may not act for them");
        assert!(to("blind@example.test").is_none(), "may not view");
        for m in [&patient, &carer] {
            let lower = m.to_lowercase();
            for clinical in ["phq", "gad", "depress", "anxi", "score", "pat quill"] {
                assert!(!lower.contains(clinical), "{clinical} in mail:\n{m}");
            }
        }
    }

    #[tokio::test]
    async fn a_mail_that_cannot_be_sent_does_not_undo_the_assignment() {
        let env = Env::with_mail(false).await;
        let doctor = env.clinician().await;
        let id = env
            .core
            .assign_questionnaire(&doctor, env.patient, Questionnaire::Gad7)
            .await
            .unwrap();
        let list = env
            .core
            .questionnaires_for(&env.owner, env.patient)
            .await
            .unwrap();
        assert_eq!(list.assignments.len(), 1);
        assert_eq!(list.assignments[0].id, id);
    }

    #[tokio::test]
    async fn the_patient_completes_once_and_the_score_lands_in_the_record() {
        let env = Env::new().await;
        let doctor = env.clinician().await;
        let id = env
            .core
            .assign_questionnaire(&doctor, env.patient, Questionnaire::Phq9)
            .await
            .unwrap();
        // Invalid answers: refused, nothing written.
        let short = env
            .core
            .complete_questionnaire(&env.owner, env.patient, id, &[1; 8])
            .await;
        assert!(
            matches!(&short, Err(DomainError::Invalid(e)) if e[0].field == "item-9"),
            "{short:?}"
        );
        let wild = env
            .core
            .complete_questionnaire(&env.owner, env.patient, id, &[1, 1, 4, 1, 1, 1, 1, 1, 0])
            .await;
        assert!(
            matches!(&wild, Err(DomainError::Invalid(e)) if e[0].field == "item-3"),
            "{wild:?}"
        );
        assert_eq!(env.count(ENTRIES), 0);

        // 3+3+3+3+0+0+0+0+0 = 12: moderate.
        let answers = [3, 3, 3, 3, 0, 0, 0, 0, 0];
        let done = env
            .core
            .complete_questionnaire(&env.owner, env.patient, id, &answers)
            .await
            .unwrap();
        assert_eq!(done.score.total, 12);
        assert_eq!(done.score.severity, Severity::Moderate);
        let entry = env
            .core
            .entry(&env.owner, env.patient, done.entry)
            .await
            .unwrap();
        assert_eq!(entry.kind, EntryKind::QuestionnaireResponse);
        assert_eq!(entry.category, Category::MentalHealth);
        assert_eq!(entry.title, "PHQ-9: 12 (moderate)");
        assert_eq!(entry.source, Source::PatientEntered);
        assert_eq!(entry.date, env.core.today());
        assert!(entry.details.contains("Sent by Riverside Wellbeing."));
        assert!(entry
            .details
            .contains("1. Little interest or pleasure in doing things: Nearly every day (3)"));
        assert!(entry.details.contains("Total: 12 out of 27 (moderate)."));
        assert!(!entry.details.contains("Question 9"));

        // Completed: the second submission is refused and writes nothing.
        let again = env
            .core
            .complete_questionnaire(&env.owner, env.patient, id, &answers)
            .await;
        assert!(matches!(again, Err(DomainError::Conflict)), "{again:?}");
        assert_eq!(env.count(ENTRIES), 1);
        let view = env
            .core
            .questionnaire(&doctor, env.patient, id)
            .await
            .unwrap();
        assert!(matches!(
            view.assignment.status,
            AssignmentStatus::Completed { total: 12, response, by, follow_up: false, .. }
                if response == done.entry && by == env.owner.account
        ));
        // The stored entry and assignment hold no plaintext.
        for (_, v) in env
            .core
            .store()
            .scan(ENTRIES, b"")
            .chain(env.core.store().scan(QUESTIONNAIRE_ASSIGNMENTS, b""))
            .map(|r| r.unwrap())
        {
            let raw = String::from_utf8_lossy(&v).to_lowercase();
            assert!(!raw.contains("phq-9") && !raw.contains("moderate"));
        }
    }

    #[tokio::test]
    async fn two_submissions_at_once_complete_it_once() {
        let env = Env::new().await;
        let doctor = env.clinician().await;
        let id = env
            .core
            .assign_questionnaire(&doctor, env.patient, Questionnaire::Gad7)
            .await
            .unwrap();
        let (a, b) = tokio::join!(
            env.core
                .complete_questionnaire(&env.owner, env.patient, id, &[1; 7]),
            env.core
                .complete_questionnaire(&env.owner, env.patient, id, &[2; 7]),
        );
        let ok = [a.is_ok(), b.is_ok()].iter().filter(|x| **x).count();
        assert_eq!(ok, 1, "{a:?} {b:?}");
        assert!(matches!(a, Err(DomainError::Conflict)) || matches!(b, Err(DomainError::Conflict)));
        assert_eq!(env.count(ENTRIES), 1);
    }

    #[tokio::test]
    async fn who_may_complete() {
        let env = Env::new().await;
        let doctor = env.clinician().await;
        let id = env
            .core
            .assign_questionnaire(&doctor, env.patient, Questionnaire::Gad7)
            .await
            .unwrap();
        let answers = [1u8; 7];
        // Professionals never answer for the patient.
        assert!(is_not_found(
            env.core
                .complete_questionnaire(&doctor, env.patient, id, &answers)
                .await
        ));
        // Carers missing one of view, add, act on their behalf: they may see
        // it (when they may view) but not answer it.
        for (email, p) in [
            ("adder@example.test", perms(true, true, false)),
            ("viewer@example.test", perms(true, false, true)),
            ("blind@example.test", perms(false, true, true)),
        ] {
            let c = env.carer(email, p).await;
            assert!(
                is_not_found(
                    env.core
                        .complete_questionnaire(&c, env.patient, id, &answers)
                        .await
                ),
                "{email}"
            );
            let seen = env.core.questionnaires_for(&c, env.patient).await;
            match p.read {
                true => assert!(!seen.unwrap().can.complete, "{email}"),
                false => assert!(is_not_found(seen), "{email}"),
            }
        }
        // Another patient.
        let other = Principal::patient(
            AccountId::new_random(),
            Some(PatientId::new_random()),
            IdentityLevel::P9,
        );
        assert!(is_not_found(
            env.core
                .complete_questionnaire(&other, env.patient, id, &answers)
                .await
        ));
        assert!(is_not_found(
            env.core.questionnaires_for(&other, env.patient).await
        ));
        assert!(is_not_found(
            env.core.questionnaire(&other, env.patient, id).await
        ));
        assert_eq!(env.count(ENTRIES), 0);

        // A carer who may view, add and act for them completes it.
        let helper = env
            .carer("helper@example.test", perms(true, true, true))
            .await;
        let list = env
            .core
            .questionnaires_for(&helper, env.patient)
            .await
            .unwrap();
        assert_eq!(list.assignments.len(), 1);
        assert_eq!(
            list.can,
            QuestionnaireRights {
                read: true,
                complete: true,
                assign: false
            }
        );
        let done = env
            .core
            .complete_questionnaire(&helper, env.patient, id, &answers)
            .await
            .unwrap();
        assert_eq!((done.score.total, done.score.severity), (7, Severity::Mild));
        let history = env
            .core
            .score_history(&helper, env.patient, Questionnaire::Gad7)
            .await
            .unwrap();
        assert_eq!(history, vec![(env.core.today(), 7, Severity::Mild)]);
        let entry = env
            .core
            .entry(&env.owner, env.patient, done.entry)
            .await
            .unwrap();
        assert!(entry
            .details
            .contains("Answered by a carer acting for the patient."));
    }

    #[tokio::test]
    async fn scores_over_time_and_the_list_newest_first() {
        let env = Env::new().await;
        let doctor = env.clinician().await;
        let mut ids = Vec::new();
        for answers in [[3u8; 9], [1; 9], [0, 0, 0, 0, 0, 0, 0, 0, 1]] {
            let id = env
                .core
                .assign_questionnaire(&doctor, env.patient, Questionnaire::Phq9)
                .await
                .unwrap();
            env.clock.advance(Duration::days(14));
            env.core
                .complete_questionnaire(&env.owner, env.patient, id, &answers)
                .await
                .unwrap();
            ids.push(id);
        }
        let gad = env
            .core
            .assign_questionnaire(&doctor, env.patient, Questionnaire::Gad7)
            .await
            .unwrap();
        let history = env
            .core
            .score_history(&doctor, env.patient, Questionnaire::Phq9)
            .await
            .unwrap();
        let start = datetime!(2026-01-15 09:00 UTC).date();
        assert_eq!(
            history,
            vec![
                (start + Duration::days(14), 27, Severity::Severe),
                (start + Duration::days(28), 9, Severity::Mild),
                (start + Duration::days(42), 1, Severity::Minimal),
            ]
        );
        assert!(env
            .core
            .score_history(&doctor, env.patient, Questionnaire::Gad7)
            .await
            .unwrap()
            .is_empty());
        let list = env
            .core
            .questionnaires_for(&doctor, env.patient)
            .await
            .unwrap();
        let order: Vec<_> = list.assignments.iter().map(|a| a.id).collect();
        assert_eq!(order, vec![gad, ids[2], ids[1], ids[0]]);
        // The last one flagged item 9.
        assert!(matches!(
            list.assignments[1].status,
            AssignmentStatus::Completed {
                follow_up: true,
                ..
            }
        ));
        // A professional whose organisation reads only general parts sees none.
        let other_org = env
            .core
            .create_organisation("Elsewhere Clinic", "admin@elsewhere.test")
            .await
            .unwrap()
            .0;
        env.grant(
            Grantee::Organisation { org: other_org },
            perms(true, true, false),
            &[Category::General],
        )
        .await;
        let elsewhere = env.doctor(other_org);
        assert!(is_not_found(
            env.core.questionnaires_for(&elsewhere, env.patient).await
        ));
        assert!(is_not_found(
            env.core
                .score_history(&elsewhere, env.patient, Questionnaire::Phq9)
                .await
        ));
    }

    #[tokio::test]
    async fn a_sealed_assignment_moved_to_another_id_does_not_open() {
        let env = Env::new().await;
        let doctor = env.clinician().await;
        let id = env
            .core
            .assign_questionnaire(&doctor, env.patient, Questionnaire::Phq9)
            .await
            .unwrap();
        let raw = env.raw_rows().remove(0);
        let other = AssignmentId::new_random();
        let mut b = Batch::new();
        b.put(QUESTIONNAIRE_ASSIGNMENTS, key(env.patient, other), raw);
        env.core.store().submit(b).await.unwrap();
        assert!(env.core.load_assignment(env.patient, id).is_ok());
        assert!(matches!(
            env.core.load_assignment(env.patient, other),
            Err(DomainError::Crypto(_))
        ));
    }

    #[test]
    fn bands_follow_the_scoring() {
        use Severity::*;
        assert_eq!(
            bands(Questionnaire::Phq9),
            vec![
                (0, 4, Minimal),
                (5, 9, Mild),
                (10, 14, Moderate),
                (15, 19, ModeratelySevere),
                (20, 27, Severe)
            ]
        );
        assert_eq!(
            bands(Questionnaire::Gad7),
            vec![
                (0, 4, Minimal),
                (5, 9, Mild),
                (10, 14, Moderate),
                (15, 21, Severe)
            ]
        );
        assert_eq!(short_name(Questionnaire::Gad7), "GAD-7");
        let id = AssignmentId::new_random();
        assert_eq!(id.to_string().parse::<AssignmentId>().unwrap(), id);
        assert!("nope".parse::<AssignmentId>().is_err());
    }
}
