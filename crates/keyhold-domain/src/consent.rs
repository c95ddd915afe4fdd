//! The consent model's types: grants, their grantees and permissions, proxy
//! legal bases, organisation roles and break-glass. Pure data: the services
//! that store them live in `sharing`, `orgs` and `break_glass`; the rules that
//! read them live in `policy`.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{AccountId, BreakGlassId, Category, Email, GrantId, OrgId, PatientId};

/// Who a grant is for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Grantee {
    /// A person's account (a carer, a relative, a proxy).
    Account { account: AccountId },
    /// Every active professional of an organisation, in a clinical role.
    Organisation { org: OrgId },
    /// Sent to an email address and not yet accepted. Accepting turns it into
    /// `Account`; until then it allows nothing.
    Invitation { email: Email },
}

/// What a grantee may do. Independent switches: reading does not imply
/// contributing, and only `act_on_behalf` lets a carer manage sharing or read
/// the access log for the patient.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permissions {
    pub read: bool,
    pub contribute: bool,
    pub act_on_behalf: bool,
}

impl Permissions {
    pub fn labels(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.read {
            v.push("View");
        }
        if self.contribute {
            v.push("Add entries and documents");
        }
        if self.act_on_behalf {
            v.push("Act on their behalf");
        }
        v
    }

    pub fn is_empty(&self) -> bool {
        !(self.read || self.contribute || self.act_on_behalf)
    }
}

/// Why an organisation set up proxy access for someone who cannot consent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LegalBasis {
    /// A parent or guardian of a child.
    ParentalResponsibility,
    /// A registered Lasting Power of Attorney for health and welfare.
    LastingPowerOfAttorney,
    /// A deputy appointed by the Court of Protection.
    CourtAppointedDeputy,
    /// A best-interests decision under the Mental Capacity Act 2005.
    BestInterests,
}

impl LegalBasis {
    pub const ALL: [LegalBasis; 4] = [
        LegalBasis::ParentalResponsibility,
        LegalBasis::LastingPowerOfAttorney,
        LegalBasis::CourtAppointedDeputy,
        LegalBasis::BestInterests,
    ];

    pub fn slug(&self) -> &'static str {
        match self {
            LegalBasis::ParentalResponsibility => "parental_responsibility",
            LegalBasis::LastingPowerOfAttorney => "lasting_power_of_attorney",
            LegalBasis::CourtAppointedDeputy => "court_appointed_deputy",
            LegalBasis::BestInterests => "best_interests",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.slug() == s)
    }

    pub fn label(&self) -> &'static str {
        match self {
            LegalBasis::ParentalResponsibility => "Parental responsibility for a child",
            LegalBasis::LastingPowerOfAttorney => {
                "Lasting Power of Attorney for health and welfare"
            }
            LegalBasis::CourtAppointedDeputy => "Deputy appointed by the Court of Protection",
            LegalBasis::BestInterests => "Best-interests decision (Mental Capacity Act 2005)",
        }
    }
}

/// A proxy grant records who set it up and on what legal basis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proxy {
    pub org: OrgId,
    pub set_up_by: AccountId,
    pub basis: LegalBasis,
}

/// One grant of consent, as the patient (or an organisation, for a proxy) made it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub id: GrantId,
    pub patient: PatientId,
    pub grantee: Grantee,
    pub permissions: Permissions,
    /// The categories covered. `Restricted` is covered only when named here.
    pub categories: BTreeSet<Category>,
    #[serde(with = "time::serde::rfc3339")]
    pub starts: OffsetDateTime,
    /// Every grant ends; the patient can shorten or extend it.
    #[serde(with = "time::serde::rfc3339")]
    pub ends: OffsetDateTime,
    pub purpose: String,
    /// The account that made or last changed it (the patient or a carer acting
    /// for them), or the organisation administrator for a proxy.
    pub created_by: AccountId,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub proxy: Option<Proxy>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
    /// Bumped on every change; bound into the seal.
    pub version: u32,
}

/// A grant's state at a moment. Computed, never stored, so expiry needs no job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantState {
    /// Invitation not yet accepted, or the start date is still to come.
    Pending,
    Active,
    Revoked,
    Expired,
}

impl GrantState {
    pub const ALL: [GrantState; 4] = [
        GrantState::Pending,
        GrantState::Active,
        GrantState::Revoked,
        GrantState::Expired,
    ];

    pub fn label(&self) -> &'static str {
        match self {
            GrantState::Pending => "Pending",
            GrantState::Active => "Active",
            GrantState::Revoked => "Stopped",
            GrantState::Expired => "Ended",
        }
    }
}

/// The last day something ending at `ends` runs: grants end at the start of
/// the day after the last day the patient chose (see `GrantTerms`).
pub fn last_day(ends: OffsetDateTime) -> time::Date {
    (ends - time::Duration::nanoseconds(1)).date()
}

impl Grant {
    pub fn state(&self, now: OffsetDateTime) -> GrantState {
        if self.revoked_at.is_some_and(|r| r <= now) {
            GrantState::Revoked
        } else if now >= self.ends {
            GrantState::Expired
        } else if matches!(self.grantee, Grantee::Invitation { .. }) || now < self.starts {
            GrantState::Pending
        } else {
            GrantState::Active
        }
    }

    pub fn covers(&self, category: Category) -> bool {
        self.categories.contains(&category)
    }
}

/// Roles a member of an organisation can hold. Only clinical roles read
/// records through the organisation's grants; administrators manage people and
/// see reports, records officers work access requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StaffRole {
    Administrator,
    Doctor,
    Nurse,
    SocialWorker,
    RecordsOfficer,
    /// An organisation's own system (a feed), signed in with a bearer token.
    /// Never held by a person, so not among the roles an administrator gives.
    System,
}

impl StaffRole {
    pub const ALL: [StaffRole; 5] = [
        StaffRole::Doctor,
        StaffRole::Nurse,
        StaffRole::SocialWorker,
        StaffRole::RecordsOfficer,
        StaffRole::Administrator,
    ];

    pub fn slug(&self) -> &'static str {
        match self {
            StaffRole::Administrator => "administrator",
            StaffRole::Doctor => "doctor",
            StaffRole::Nurse => "nurse",
            StaffRole::SocialWorker => "social_worker",
            StaffRole::RecordsOfficer => "records_officer",
            StaffRole::System => "system",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.slug() == s)
    }

    pub fn label(&self) -> &'static str {
        match self {
            StaffRole::Administrator => "Administrator",
            StaffRole::Doctor => "Doctor",
            StaffRole::Nurse => "Nurse",
            StaffRole::SocialWorker => "Social worker",
            StaffRole::RecordsOfficer => "Records officer",
            StaffRole::System => "Organisation system",
        }
    }

    /// Reads (and contributes to) patient records when the organisation holds
    /// a grant, and may use break-glass. The system role reads and writes
    /// through grants like a clinician; it has no way to open break-glass.
    pub fn is_clinical(&self) -> bool {
        matches!(
            self,
            StaffRole::Doctor | StaffRole::Nurse | StaffRole::SocialWorker | StaffRole::System
        )
    }
}

/// An active membership of an organisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    pub org: OrgId,
    pub role: StaffRole,
}

/// One use of emergency access.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BreakGlass {
    pub id: BreakGlassId,
    pub patient: PatientId,
    pub account: AccountId,
    pub org: OrgId,
    pub opened_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

impl BreakGlass {
    pub fn is_open(&self, now: OffsetDateTime) -> bool {
        self.opened_at <= now && now < self.expires_at
    }
}
