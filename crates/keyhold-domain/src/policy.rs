//! Authorization: one pure function decides every access to patient data, for
//! pages and APIs alike. No I/O and no clock of its own: the caller loads the
//! patient's grants and break-glass uses fresh from the store on every request
//! and passes them in, so a revocation or an expiry holds on the very next
//! request and the whole thing can be tested as a table.
//!
//! The rules, in the order they are tried (the first that allows wins, and
//! names the basis the audit records):
//! 1. **Owner**: the patient may do everything with their own record, except
//!    that below identity level P9 they do not see what organisations entered
//!    (`identity` has the table).
//! 2. **Account grant** (a carer or proxy): an active grant to this account,
//!    with the permission the action needs and, for a categorised resource, a
//!    category it names.
//! 3. **Organisation grant**: an active grant to an organisation in which the
//!    principal holds an active clinical role; same permission and category
//!    checks. Organisations never act on the patient's behalf.
//! 4. **Contributor**: an organisation keeps reading what it contributed itself
//!    (it is the controller of those records), entry by entry, even with no
//!    grant — but not the rest of the record.
//! 5. **Break-glass**: an open emergency access by this account, whose
//!    organisation membership is still active and clinical, reads everything
//!    except the restricted category; it never contributes, exports or shares.
//! 6. **Subject access**: a records officer of an organisation working an
//!    open subject access request about this patient may export what that
//!    organisation contributed (to compile the disclosure), nothing else.
//!
//! The restricted category is covered only by a grant that names it, so only
//! the patient sees it otherwise. Anything else is denied.

use time::OffsetDateTime;

use crate::consent::{BreakGlass, Grant, GrantState, Grantee, Membership, StaffRole};
use crate::identity::IdentityLevel;
use crate::record::Source;
use crate::{AccountId, BreakGlassId, Category, GrantId, OrgId, PatientId, RequestId};

/// Who is asking, as established by sign-in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub account: AccountId,
    /// The record this account is the patient of, if any.
    pub own_patient: Option<PatientId>,
    /// How sure we are the account holder is that patient; below P9 the
    /// owner does not see what organisations entered (see `identity`).
    pub level: IdentityLevel,
    /// Active memberships of organisations (removed ones are not loaded).
    pub memberships: Vec<Membership>,
}

impl Principal {
    /// Someone with an account and a record, and no organisation.
    pub fn patient(
        account: AccountId,
        own_patient: Option<PatientId>,
        level: IdentityLevel,
    ) -> Self {
        Principal {
            account,
            own_patient,
            level,
            memberships: Vec::new(),
        }
    }

    /// An organisation's system (a feed's bearer token), not a person.
    pub fn is_system(&self) -> bool {
        self.memberships
            .iter()
            .any(|m| m.role == crate::consent::StaffRole::System)
    }

    pub fn clinical_orgs(&self) -> impl Iterator<Item = OrgId> + '_ {
        self.memberships
            .iter()
            .filter(|m| m.role.is_clinical())
            .map(|m| m.org)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Read demographics, entries or documents.
    Read,
    /// Add an entry or a document.
    Contribute,
    /// Download documents or the whole record.
    Export,
    /// See, make, change and stop the patient's grants.
    Share,
    /// Read who accessed the record.
    ReadAccessLog,
}

impl Action {
    pub const ALL: [Action; 5] = [
        Action::Read,
        Action::Contribute,
        Action::Export,
        Action::Share,
        Action::ReadAccessLog,
    ];
}

/// What is being touched: the patient, the category when the resource has one,
/// and the organisation that contributed it, when one did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resource {
    pub patient: PatientId,
    pub category: Option<Category>,
    pub contributed_by: Option<OrgId>,
    /// Entered by an organisation (a Keyhold one or history imported by
    /// name), not by the patient.
    pub from_organisation: bool,
}

impl Resource {
    /// The record as a whole (demographics, lists, exports, sharing).
    pub fn whole(patient: PatientId) -> Self {
        Resource {
            patient,
            category: None,
            contributed_by: None,
            from_organisation: false,
        }
    }

    /// One entry or document, whose category decides who may see it.
    pub fn in_category(patient: PatientId, category: Category) -> Self {
        Resource {
            patient,
            category: Some(category),
            contributed_by: None,
            from_organisation: false,
        }
    }

    pub fn contributed_by(mut self, org: Option<OrgId>) -> Self {
        self.contributed_by = org;
        self
    }

    /// Where an entry or document came from.
    pub fn entered_by(mut self, source: &Source) -> Self {
        self.contributed_by = source.org();
        self.from_organisation = matches!(source, Source::Organisation { .. });
        self
    }
}

/// The patient's consent state, loaded fresh for each decision.
#[derive(Clone, Copy, Debug, Default)]
pub struct Facts<'a> {
    pub grants: &'a [Grant],
    pub break_glass: &'a [BreakGlass],
    /// Open subject access requests about the patient, and to whom.
    pub subject_access: &'a [SubjectAccess],
}

/// An open subject access request about `patient`, made to `org`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubjectAccess {
    pub request: RequestId,
    pub patient: PatientId,
    pub org: OrgId,
}

/// Why an access was allowed; the audit records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Basis {
    Owner,
    Carer { grant: GrantId },
    Organisation { grant: GrantId, org: OrgId },
    Contributor { org: OrgId },
    BreakGlass { id: BreakGlassId, org: OrgId },
    SubjectAccess { request: RequestId, org: OrgId },
}

impl Basis {
    /// The organisation the principal acted for, if any.
    pub fn org(&self) -> Option<OrgId> {
        match self {
            Basis::Organisation { org, .. }
            | Basis::Contributor { org }
            | Basis::BreakGlass { org, .. }
            | Basis::SubjectAccess { org, .. } => Some(*org),
            Basis::Owner | Basis::Carer { .. } => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DenyReason {
    /// No owner, grant, contribution or break-glass relates the two.
    NoRelationship,
    /// A relationship exists but does not allow this action or category.
    NotCovered,
}

/// Deny wins: `Allow` is returned only when a rule positively grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow(Basis),
    Deny(DenyReason),
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }
}

fn grant_allows(g: &Grant, action: Action, category: Option<Category>, carer: bool) -> bool {
    let p = g.permissions;
    let by_action = match action {
        Action::Read | Action::Export => p.read,
        Action::Contribute => p.contribute,
        Action::Share | Action::ReadAccessLog => carer && p.act_on_behalf,
    };
    by_action && category.is_none_or(|c| g.covers(c))
}

pub fn decide(
    principal: &Principal,
    action: Action,
    resource: &Resource,
    facts: &Facts<'_>,
    now: OffsetDateTime,
) -> Decision {
    if principal.own_patient == Some(resource.patient) {
        if resource.from_organisation && !principal.level.sees_clinical_entries() {
            return Decision::Deny(DenyReason::NotCovered);
        }
        return Decision::Allow(Basis::Owner);
    }
    let mut related = false;
    let live = facts
        .grants
        .iter()
        .filter(|g| g.patient == resource.patient && g.state(now) == GrantState::Active);
    for g in live.clone() {
        if g.grantee
            == (Grantee::Account {
                account: principal.account,
            })
        {
            related = true;
            if grant_allows(g, action, resource.category, true) {
                return Decision::Allow(Basis::Carer { grant: g.id });
            }
        }
    }
    for g in live {
        if let Grantee::Organisation { org } = g.grantee {
            if principal.clinical_orgs().any(|o| o == org) {
                related = true;
                if grant_allows(g, action, resource.category, false) {
                    return Decision::Allow(Basis::Organisation { grant: g.id, org });
                }
            }
        }
    }
    if let Some(org) = resource.contributed_by {
        if action == Action::Read && principal.clinical_orgs().any(|o| o == org) {
            return Decision::Allow(Basis::Contributor { org });
        }
    }
    for bg in facts.break_glass {
        if bg.patient == resource.patient
            && bg.account == principal.account
            && bg.is_open(now)
            && principal.clinical_orgs().any(|o| o == bg.org)
        {
            related = true;
            if action == Action::Read && resource.category != Some(Category::Restricted) {
                return Decision::Allow(Basis::BreakGlass {
                    id: bg.id,
                    org: bg.org,
                });
            }
        }
    }
    if action == Action::Export {
        if let Some(org) = resource.contributed_by {
            let officer = principal
                .memberships
                .iter()
                .any(|m| m.org == org && m.role == StaffRole::RecordsOfficer);
            if officer {
                if let Some(sa) = facts
                    .subject_access
                    .iter()
                    .find(|sa| sa.patient == resource.patient && sa.org == org)
                {
                    return Decision::Allow(Basis::SubjectAccess {
                        request: sa.request,
                        org,
                    });
                }
            }
        }
    }
    Decision::Deny(if related {
        DenyReason::NotCovered
    } else {
        DenyReason::NoRelationship
    })
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
