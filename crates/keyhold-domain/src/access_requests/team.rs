//! The records team's side: an organisation's queue and the work on one
//! request. Only records officers of the organisation see any of it;
//! everyone else (other organisations' officers included) gets "not
//! found". Every look and every change is audited.

use keyhold_storage::Batch;
use serde::Serialize;

use super::files::FileRole;
use super::{
    check_message, matches_query, next, refused, Loaded, Party, RequestState, RequestSummary,
    RequestView, Transition, Upload,
};
use crate::audit::AuditAction;
use crate::consent::StaffRole;
use crate::ids::KeyOwner;
use crate::policy::Principal;
use crate::rows::MemberRowV1;
use crate::trees::{ACCESS_REQUESTS_BY_ORG, DEKS, MEMBERS};
use crate::{AccountId, DomainError, Keyhold, OrgId, RequestId};

/// Which part of the queue to show.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum QueueFilter {
    /// Received, in progress or awaiting the requester.
    #[default]
    Open,
    /// Open and past due.
    Overdue,
    /// Completed, rejected, withdrawn or expired.
    Closed,
    All,
}

impl QueueFilter {
    pub fn parse(s: &str) -> Self {
        match s {
            "overdue" => QueueFilter::Overdue,
            "closed" => QueueFilter::Closed,
            "all" => QueueFilter::All,
            _ => QueueFilter::Open,
        }
    }

    pub fn slug(self) -> &'static str {
        match self {
            QueueFilter::Open => "open",
            QueueFilter::Overdue => "overdue",
            QueueFilter::Closed => "closed",
            QueueFilter::All => "all",
        }
    }

    fn keeps(self, s: &RequestSummary) -> bool {
        match self {
            QueueFilter::Open => s.state.is_open(),
            QueueFilter::Overdue => s.overdue,
            QueueFilter::Closed => !s.state.is_open(),
            QueueFilter::All => true,
        }
    }
}

/// A records officer a request can be assigned to.
#[derive(Clone, Debug, Serialize)]
pub struct TeamMember {
    pub account: AccountId,
    pub name: String,
}

impl Keyhold {
    /// Records officers of `org` only; anyone else: not found.
    pub fn require_records_officer(p: &Principal, org: OrgId) -> Result<(), DomainError> {
        if p.memberships
            .iter()
            .any(|m| m.org == org && m.role == StaffRole::RecordsOfficer)
        {
            Ok(())
        } else {
            Err(DomainError::NotFound)
        }
    }

    /// A submitted request of `org`; drafts and other organisations'
    /// requests are not found.
    pub(crate) fn teams_request(
        &self,
        p: &Principal,
        org: OrgId,
        id: RequestId,
    ) -> Result<Loaded, DomainError> {
        Self::require_records_officer(p, org)?;
        let l = self.load_request(id)?;
        if l.row.org != org || l.row.state == RequestState::Draft {
            return Err(DomainError::NotFound);
        }
        Ok(l)
    }

    /// The organisation's records officers, by name.
    pub fn records_team(&self, p: &Principal, org: OrgId) -> Result<Vec<TeamMember>, DomainError> {
        Self::require_records_officer(p, org)?;
        let mut out = Vec::new();
        for item in self.store.scan(MEMBERS, org.as_bytes()) {
            let (k, raw) = item?;
            let row: MemberRowV1 = serde_json::from_slice(&raw)?;
            if !row.active || row.role != StaffRole::RecordsOfficer {
                continue;
            }
            if let Some(account) = AccountId::from_bytes(&k[16..]) {
                out.push(TeamMember {
                    account,
                    name: self.display_name(account),
                });
            }
        }
        out.sort_by_key(|m| m.name.to_lowercase());
        Ok(out)
    }

    /// The queue: earliest due first (overdue at the top), then the rest.
    pub async fn request_queue(
        &self,
        p: &Principal,
        org: OrgId,
        filter: QueueFilter,
        q: &str,
    ) -> Result<Vec<RequestSummary>, DomainError> {
        Self::require_records_officer(p, org)?;
        let mut out = Vec::new();
        let mut names = super::Names::default();
        for item in self.store.scan(ACCESS_REQUESTS_BY_ORG, org.as_bytes()) {
            let (k, _) = item?;
            let Some(id) = RequestId::from_bytes(&k[16..]) else {
                continue;
            };
            let l = self.load_request(id)?;
            let answers = self.open_answers(&l)?;
            let s = self.summary(&l, &answers, &mut names)?;
            if filter.keeps(&s) && matches_query(&s, q) {
                out.push(s);
            }
        }
        out.sort_by(|a, b| {
            (!a.state.is_open(), a.due, std::cmp::Reverse(a.submitted_at)).cmp(&(
                !b.state.is_open(),
                b.due,
                std::cmp::Reverse(b.submitted_at),
            ))
        });
        self.audit
            .record(&self.org_audit(
                p,
                org,
                AuditAction::Read,
                "access-requests",
                "records team read the queue",
            ))
            .await?;
        Ok(out)
    }

    fn org_audit(
        &self,
        p: &Principal,
        org: OrgId,
        action: AuditAction,
        resource: &str,
        purpose: &str,
    ) -> crate::audit::AuditEvent {
        crate::audit::AuditEvent {
            at: self.clock.now(),
            actor: Self::officer_actor(p, org),
            action,
            patient: None,
            resource: format!("org/{org}/{resource}"),
            purpose: purpose.into(),
            outcome: crate::audit::Outcome::Success,
            basis: None,
        }
    }

    /// One request, for the records team; reading it clears the "new
    /// message" marker on their side.
    pub async fn team_request(
        &self,
        p: &Principal,
        org: OrgId,
        id: RequestId,
    ) -> Result<RequestView, DomainError> {
        let mut l = self.teams_request(p, org, id)?;
        let view = self.view(&l, true)?;
        let mut batch = Batch::new();
        if l.row.message_for_team {
            l.row.message_for_team = false;
            self.put_request(&mut batch, &l)?;
        }
        self.audit.add(
            &mut batch,
            &self.officer_event(
                p,
                org,
                AuditAction::Read,
                &l,
                "",
                "records team read an access request",
            ),
        )?;
        self.submit_request_batch(batch).await?;
        Ok(view)
    }

    /// Assigns the request to one of the team (a received request is
    /// thereby started).
    pub async fn assign_request(
        &self,
        p: &Principal,
        org: OrgId,
        id: RequestId,
        to: AccountId,
    ) -> Result<(), DomainError> {
        let mut l = self.teams_request(p, org, id)?;
        if !l.row.state.is_open() {
            return Err(refused(l.row.state));
        }
        if !self.records_team(p, org)?.iter().any(|m| m.account == to) {
            return Err(DomainError::invalid(
                "assignee",
                "Choose a records officer of this organisation",
            ));
        }
        l.row.assigned = Some(to);
        if let Some(s) = next(l.row.state, Transition::Start, l.row.requester.is_guest()) {
            l.row.state = s;
        }
        let mut batch = Batch::new();
        self.put_request(&mut batch, &l)?;
        self.audit.add(
            &mut batch,
            &self.officer_event(
                p,
                org,
                AuditAction::Update,
                &l,
                &format!("assigned/{to}"),
                "assigned an access request",
            ),
        )?;
        self.submit_request_batch(batch).await
    }

    /// Asks the requester a question (with files); the clock pauses until
    /// they reply. Refused for guests and for requests not open.
    pub async fn ask_requester(
        &self,
        p: &Principal,
        org: OrgId,
        id: RequestId,
        text: &str,
        uploads: Vec<Upload>,
    ) -> Result<(), DomainError> {
        let mut l = self.teams_request(p, org, id)?;
        if l.row.requester.is_guest() {
            return Err(DomainError::invalid("text", "This request was made by a guest, who cannot be asked questions. Complete or reject it."));
        }
        let to = next(l.row.state, Transition::Ask, false).ok_or_else(|| refused(l.row.state))?;
        let text = check_message(text)?;
        let mut batch = Batch::new();
        let files = self.add_files_into(
            &mut batch,
            &l,
            uploads,
            FileRole::Team,
            "Sent by the records team",
        )?;
        l.row.state = to;
        l.row.message_for_requester = true;
        if let Some(c) = l.row.clock.as_mut() {
            c.pause(self.clock.now().date());
        }
        if l.row.assigned.is_none() {
            l.row.assigned = Some(p.account);
        }
        self.message_into(
            &mut batch,
            &mut l,
            Party::Team { account: p.account },
            &text,
            files,
        )?;
        self.audit.add(
            &mut batch,
            &self.officer_event(
                p,
                org,
                AuditAction::Update,
                &l,
                "messages",
                "records team asked the requester",
            ),
        )?;
        self.submit_request_batch(batch).await?;
        let reference = l.reference();
        self.mail_requester(
            &l,
            &format!("A message about your request {reference}"),
            &format!(
                "The records team has a question about your request {reference}. \
                 We have paused the time limit until you reply.\n\nRead and reply to it here:\n\n{}\n",
                self.request_link(&l)
            ),
        )
        .await
    }

    /// Extends the deadline by `months` (the total at most two), with a reason.
    pub async fn extend_request(
        &self,
        p: &Principal,
        org: OrgId,
        id: RequestId,
        months: u8,
        reason: &str,
    ) -> Result<(), DomainError> {
        let mut l = self.teams_request(p, org, id)?;
        if !l.row.state.is_open() {
            return Err(refused(l.row.state));
        }
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(DomainError::invalid(
                "reason",
                "Enter why the request needs more time",
            ));
        }
        if reason.chars().count() > 1_000 {
            return Err(DomainError::invalid(
                "reason",
                "The reason must be 1,000 characters or fewer",
            ));
        }
        let clock = l
            .row
            .clock
            .as_mut()
            .ok_or_else(|| DomainError::Internal("an open request without a clock".into()))?;
        clock.extend(months).map_err(|left| {
            DomainError::invalid(
                "months",
                if left == 0 {
                    "The deadline has already been extended by the most the law allows (2 months)"
                        .to_string()
                } else {
                    format!(
                        "The deadline can be extended by {left} more month{} at most",
                        if left == 1 { "" } else { "s" }
                    )
                },
            )
        })?;
        let i = l.row.extensions.len() as u32;
        let record = [l.id.as_bytes().as_slice(), &i.to_be_bytes()].concat();
        let sealed = self.seal_text(l.id, "extension", &record, reason)?;
        l.row.extensions.push(super::ExtensionRowV1 {
            months,
            at: self.clock.now(),
            by: p.account,
            reason: sealed,
        });
        let mut batch = Batch::new();
        self.put_request(&mut batch, &l)?;
        self.audit.add(
            &mut batch,
            &self.officer_event(
                p,
                org,
                AuditAction::Update,
                &l,
                "deadline",
                "records team extended the deadline",
            ),
        )?;
        self.submit_request_batch(batch).await?;
        let reference = l.reference();
        self.mail_requester(
            &l,
            &format!("More time is needed for your request {reference}"),
            &format!(
                "The records team needs more time to answer your request {reference}, as the law allows for complex requests. \
                 You can see the new date and the reason here:\n\n{}\n",
                self.request_link(&l)
            ),
        )
        .await
    }

    /// Rejects the request with a reason the requester reads.
    pub async fn reject_request(
        &self,
        p: &Principal,
        org: OrgId,
        id: RequestId,
        reason: &str,
    ) -> Result<(), DomainError> {
        let mut l = self.teams_request(p, org, id)?;
        let to = next(l.row.state, Transition::Reject, l.row.requester.is_guest())
            .ok_or_else(|| refused(l.row.state))?;
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(DomainError::invalid(
                "reject-reason",
                "Enter why the request is rejected",
            ));
        }
        if reason.chars().count() > super::MAX_MESSAGE_CHARS {
            return Err(DomainError::invalid(
                "reject-reason",
                "The reason must be 5,000 characters or fewer",
            ));
        }
        l.row.state = to;
        l.row.rejection = Some(self.seal_text(l.id, "rejection", l.id.as_bytes(), reason)?);
        l.row.message_for_requester = true;
        let mut batch = Batch::new();
        // Disclosure files prepared before the rejection go with it, key and all.
        for (file, row) in self.files_of_role(l.id, FileRole::Disclosure)? {
            self.delete_file_into(&mut batch, l.id, file, &row);
        }
        batch.delete(DEKS, KeyOwner::Disclosure(l.id).key());
        self.close_links(&mut batch, &l);
        self.put_request(&mut batch, &l)?;
        self.audit.add(
            &mut batch,
            &self.officer_event(
                p,
                org,
                AuditAction::Update,
                &l,
                "",
                "records team rejected the request",
            ),
        )?;
        self.submit_request_batch(batch).await?;
        let reference = l.reference();
        self.mail_requester(
            &l,
            &format!("A decision on your request {reference}"),
            &format!("The records team has made a decision on your request {reference}. You can read it here:\n\n{}\n", self.request_link(&l)),
        )
        .await
    }
}
