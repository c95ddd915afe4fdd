//! Authorization: one pure function decides every access to patient data, for
//! pages and APIs alike. No I/O, no clock of its own: everything it needs is
//! passed in, so it can be tested as a table.
//!
//! Today a record is reachable only by its own patient. The consent work adds
//! grants (carers, organisations, professionals) and break-glass as further
//! inputs; every caller already goes through this function, so they inherit it.

use time::OffsetDateTime;

use crate::{AccountId, Category, PatientId};

/// Who is asking, as established by sign-in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub account: AccountId,
    /// The record this account is the patient of, if any.
    pub own_patient: Option<PatientId>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Read demographics, entries or documents.
    Read,
    /// Add an entry or a document.
    Contribute,
    /// Download documents or the whole record.
    Export,
}

/// What is being touched: the patient, and the category when the resource has one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resource {
    pub patient: PatientId,
    pub category: Option<Category>,
}

impl Resource {
    /// The record as a whole (demographics, lists, exports).
    pub fn whole(patient: PatientId) -> Self {
        Resource {
            patient,
            category: None,
        }
    }

    /// One entry or document, whose category decides who may see it.
    pub fn in_category(patient: PatientId, category: Category) -> Self {
        Resource {
            patient,
            category: Some(category),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllowReason {
    OwnRecord,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DenyReason {
    /// No relationship between the principal and this patient.
    NoRelationship,
}

/// Deny wins: `Allow` is returned only when a rule positively grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow(AllowReason),
    Deny(DenyReason),
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }
}

pub fn decide(
    principal: &Principal,
    action: Action,
    resource: &Resource,
    now: OffsetDateTime,
) -> Decision {
    // `action` and `now` matter once grants exist (permissions, end dates);
    // the owner may do everything with their own record, at any time.
    let _ = (action, now);
    if principal.own_patient == Some(resource.patient) {
        return Decision::Allow(AllowReason::OwnRecord);
    }
    Decision::Deny(DenyReason::NoRelationship)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check(
        own: Option<PatientId>,
        target: PatientId,
        action: Action,
        category: Option<Category>,
        allowed: bool,
    ) {
        let p = Principal {
            account: AccountId::new_random(),
            own_patient: own,
        };
        let d = decide(
            &p,
            action,
            &Resource {
                patient: target,
                category,
            },
            OffsetDateTime::UNIX_EPOCH,
        );
        assert_eq!(
            d.is_allowed(),
            allowed,
            "own={own:?} target={target} {action:?} {category:?}"
        );
    }

    #[test]
    fn table_owner_versus_everyone_else() {
        let mine = PatientId::new_random();
        let theirs = PatientId::new_random();
        let cats = Category::ALL.map(Some).into_iter().chain([None]);
        for category in cats {
            for action in [Action::Read, Action::Contribute, Action::Export] {
                check(Some(mine), mine, action, category, true);
                check(Some(mine), theirs, action, category, false);
                check(None, mine, action, category, false);
            }
        }
    }

    proptest! {
        #[test]
        fn nobody_reads_a_record_that_is_not_theirs(a in any::<u128>(), b in any::<u128>(), c in 0usize..5) {
            let own = PatientId::from_bytes(&a.to_be_bytes());
            let target = PatientId::from_bytes(&b.to_be_bytes());
            if let (Some(own), Some(target)) = (own, target) {
                let p = Principal { account: AccountId::new_random(), own_patient: Some(own) };
                let d = decide(&p, Action::Read, &Resource { patient: target, category: Some(Category::ALL[c]) }, OffsetDateTime::UNIX_EPOCH);
                prop_assert_eq!(d.is_allowed(), own == target);
            }
        }
    }
}
