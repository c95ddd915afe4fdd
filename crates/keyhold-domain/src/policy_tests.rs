//! The policy as a table (every role × action × grant state × category) and as
//! properties over random consent states.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use proptest::prelude::*;
use time::{Duration, OffsetDateTime};

use super::*;
use crate::consent::{Permissions, StaffRole};
use crate::Email;

fn now() -> OffsetDateTime {
    OffsetDateTime::UNIX_EPOCH + Duration::days(20_000)
}

fn grant(patient: PatientId, grantee: Grantee, state: GrantState, perms: Permissions) -> Grant {
    let t = now();
    let (starts, ends, revoked_at) = match state {
        GrantState::Active => (t - Duration::days(1), t + Duration::days(1), None),
        GrantState::Pending => (t + Duration::hours(1), t + Duration::days(1), None),
        GrantState::Revoked => (
            t - Duration::days(1),
            t + Duration::days(1),
            Some(t - Duration::seconds(1)),
        ),
        GrantState::Expired => (t - Duration::days(2), t, None),
    };
    Grant {
        id: GrantId::new_random(),
        patient,
        grantee,
        permissions: perms,
        categories: [Category::General, Category::MentalHealth].into(),
        starts,
        ends,
        purpose: "care".into(),
        created_by: AccountId::new_random(),
        created_at: t - Duration::days(3),
        proxy: None,
        revoked_at,
        version: 1,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Owner,
    Carer,
    Clinician,
    OrgAdministrator,
    RemovedProfessional,
    BreakGlass,
    Unrelated,
}

const ROLES: [Role; 7] = [
    Role::Owner,
    Role::Carer,
    Role::Clinician,
    Role::OrgAdministrator,
    Role::RemovedProfessional,
    Role::BreakGlass,
    Role::Unrelated,
];

/// What each role may do while its grant (or break-glass) is active, with a
/// grant covering General and Mental health. `None` is the record as a whole.
/// Any other state allows nobody but the owner.
fn expected_when_active(role: Role, action: Action) -> &'static [Option<Category>] {
    use Category::*;
    const ALL: &[Option<Category>] = &[
        None,
        Some(General),
        Some(MentalHealth),
        Some(SexualHealth),
        Some(SocialCare),
        Some(Restricted),
    ];
    const GRANTED: &[Option<Category>] = &[None, Some(General), Some(MentalHealth)];
    const ALL_BUT_RESTRICTED: &[Option<Category>] = &[
        None,
        Some(General),
        Some(MentalHealth),
        Some(SexualHealth),
        Some(SocialCare),
    ];
    match (role, action) {
        (Role::Owner, _) => ALL,
        (Role::Carer, _) => GRANTED,
        (Role::Clinician, Action::Read | Action::Contribute | Action::Export) => GRANTED,
        (Role::BreakGlass, Action::Read) => ALL_BUT_RESTRICTED,
        _ => &[],
    }
}

struct Scene {
    principal: Principal,
    grants: Vec<Grant>,
    break_glass: Vec<BreakGlass>,
}

fn scene(role: Role, patient: PatientId, state: GrantState) -> Scene {
    let account = AccountId::new_random();
    let org = OrgId::new_random();
    let all = Permissions {
        read: true,
        contribute: true,
        act_on_behalf: true,
    };
    let member = |role| vec![Membership { org, role }];
    let org_grant = || vec![grant(patient, Grantee::Organisation { org }, state, all)];
    let (own, memberships, grants, break_glass) = match role {
        Role::Owner => (Some(patient), vec![], vec![], vec![]),
        Role::Carer => (
            Some(PatientId::new_random()),
            vec![],
            vec![grant(patient, Grantee::Account { account }, state, all)],
            vec![],
        ),
        Role::Clinician => (None, member(StaffRole::Doctor), org_grant(), vec![]),
        Role::OrgAdministrator => (None, member(StaffRole::Administrator), org_grant(), vec![]),
        Role::RemovedProfessional => (None, vec![], org_grant(), vec![]),
        Role::BreakGlass => {
            // The state column means the break-glass's own: open, not yet
            // open, ended, or the professional since removed.
            let t = now();
            let (opened_at, expires_at) = match state {
                GrantState::Active | GrantState::Revoked => {
                    (t - Duration::minutes(5), t + Duration::minutes(55))
                }
                GrantState::Pending => (t + Duration::minutes(5), t + Duration::minutes(65)),
                GrantState::Expired => (t - Duration::minutes(60), t),
            };
            let memberships = if state == GrantState::Revoked {
                vec![]
            } else {
                member(StaffRole::Nurse)
            };
            let bg = BreakGlass {
                id: BreakGlassId::new_random(),
                patient,
                account,
                org,
                opened_at,
                expires_at,
            };
            (None, memberships, vec![], vec![bg])
        }
        Role::Unrelated => (
            Some(PatientId::new_random()),
            member(StaffRole::Doctor),
            vec![grant(
                patient,
                Grantee::Organisation {
                    org: OrgId::new_random(),
                },
                state,
                all,
            )],
            vec![],
        ),
    };
    Scene {
        principal: Principal {
            account,
            own_patient: own,
            level: IdentityLevel::P9,
            memberships,
        },
        grants,
        break_glass,
    }
}

#[test]
fn table_every_role_action_state_and_category() {
    let patient = PatientId::new_random();
    let cats: Vec<Option<Category>> = std::iter::once(None)
        .chain(Category::ALL.map(Some))
        .collect();
    let mut checked = 0;
    for role in ROLES {
        for state in GrantState::ALL {
            let s = scene(role, patient, state);
            let facts = Facts {
                grants: &s.grants,
                break_glass: &s.break_glass,
                subject_access: &[],
            };
            for action in Action::ALL {
                for &category in &cats {
                    let resource = Resource {
                        patient,
                        category,
                        contributed_by: None,
                        from_organisation: false,
                    };
                    let allowed =
                        decide(&s.principal, action, &resource, &facts, now()).is_allowed();
                    let expected = (state == GrantState::Active || role == Role::Owner)
                        && expected_when_active(role, action).contains(&category);
                    assert_eq!(
                        allowed, expected,
                        "{role:?} {state:?} {action:?} {category:?}"
                    );
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 7 * 4 * 5 * 6);
}

#[test]
fn restricted_is_seen_only_when_a_grant_names_it() {
    let patient = PatientId::new_random();
    let mut s = scene(Role::Carer, patient, GrantState::Active);
    let r = Resource::in_category(patient, Category::Restricted);
    let read = |s: &Scene| {
        decide(
            &s.principal,
            Action::Read,
            &r,
            &Facts {
                grants: &s.grants,
                break_glass: &s.break_glass,
                subject_access: &[],
            },
            now(),
        )
    };
    assert_eq!(read(&s), Decision::Deny(DenyReason::NotCovered));
    s.grants[0].categories.insert(Category::Restricted);
    assert!(read(&s).is_allowed());
}

#[test]
fn an_organisation_keeps_reading_only_what_it_contributed() {
    let patient = PatientId::new_random();
    let s = scene(Role::Clinician, patient, GrantState::Revoked);
    let org = s.principal.memberships[0].org;
    let facts = Facts {
        grants: &s.grants,
        break_glass: &s.break_glass,
        subject_access: &[],
    };
    let theirs = Resource::in_category(patient, Category::General).contributed_by(Some(org));
    let others =
        Resource::in_category(patient, Category::General).contributed_by(Some(OrgId::new_random()));
    assert_eq!(
        decide(&s.principal, Action::Read, &theirs, &facts, now()),
        Decision::Allow(Basis::Contributor { org })
    );
    assert!(!decide(&s.principal, Action::Contribute, &theirs, &facts, now()).is_allowed());
    assert!(!decide(&s.principal, Action::Read, &others, &facts, now()).is_allowed());
    assert!(!decide(
        &s.principal,
        Action::Read,
        &Resource::whole(patient),
        &facts,
        now()
    )
    .is_allowed());
}

#[test]
fn an_invitation_allows_nothing_until_accepted() {
    let patient = PatientId::new_random();
    let mut s = scene(Role::Carer, patient, GrantState::Active);
    let email = Email::parse("carer@example.test").unwrap();
    s.grants[0].grantee = Grantee::Invitation { email };
    assert_eq!(s.grants[0].state(now()), GrantState::Pending);
    let facts = Facts {
        grants: &s.grants,
        break_glass: &[],
        subject_access: &[],
    };
    for action in Action::ALL {
        assert!(!decide(
            &s.principal,
            action,
            &Resource::whole(patient),
            &facts,
            now()
        )
        .is_allowed());
    }
}

#[test]
fn a_grant_for_another_patient_does_not_leak() {
    let patient = PatientId::new_random();
    let s = scene(Role::Carer, PatientId::new_random(), GrantState::Active);
    let facts = Facts {
        grants: &s.grants,
        break_glass: &[],
        subject_access: &[],
    };
    assert!(!decide(
        &s.principal,
        Action::Read,
        &Resource::whole(patient),
        &facts,
        now()
    )
    .is_allowed());
}

// ---------------------------------------------------------------- properties

const ACCOUNTS: usize = 3;
const ORGS: usize = 2;

#[derive(Debug, Clone)]
struct World {
    accounts: Vec<AccountId>,
    orgs: Vec<OrgId>,
    patient: PatientId,
}

fn world() -> World {
    World {
        accounts: (0..ACCOUNTS).map(|_| AccountId::new_random()).collect(),
        orgs: (0..ORGS).map(|_| OrgId::new_random()).collect(),
        patient: PatientId::new_random(),
    }
}

fn arb_category() -> impl Strategy<Value = Category> {
    (0..Category::ALL.len()).prop_map(|i| Category::ALL[i])
}

fn arb_role() -> impl Strategy<Value = StaffRole> {
    (0..StaffRole::ALL.len()).prop_map(|i| StaffRole::ALL[i])
}

/// Times are minutes around `now()`, so every boundary is reachable.
fn at(min: i64) -> OffsetDateTime {
    now() + Duration::minutes(min)
}

#[derive(Debug, Clone)]
struct GrantSpec {
    grantee: (u8, usize),
    perms: (bool, bool, bool),
    cats: Vec<Category>,
    starts: i64,
    len: i64,
    revoked: Option<i64>,
}

fn arb_grant() -> impl Strategy<Value = GrantSpec> {
    (
        (0u8..3, 0usize..3),
        any::<(bool, bool, bool)>(),
        prop::collection::vec(arb_category(), 0..4),
        -30i64..30,
        0i64..60,
        prop::option::of(-30i64..30),
    )
        .prop_map(|(grantee, perms, cats, starts, len, revoked)| GrantSpec {
            grantee,
            perms,
            cats,
            starts,
            len,
            revoked,
        })
}

#[derive(Debug, Clone)]
struct Case {
    me: usize,
    own: bool,
    memberships: Vec<(usize, StaffRole)>,
    grants: Vec<GrantSpec>,
    break_glass: Vec<(usize, usize, i64, i64)>,
    category: Option<Category>,
    contributed_by: Option<usize>,
    level: IdentityLevel,
    from_organisation: bool,
}

fn arb_case() -> impl Strategy<Value = Case> {
    (
        0..ACCOUNTS,
        prop::bool::weighted(0.1),
        prop::collection::vec((0..ORGS, arb_role()), 0..3),
        prop::collection::vec(arb_grant(), 0..5),
        prop::collection::vec((0..ACCOUNTS, 0..ORGS, -90i64..30, 1i64..90), 0..3),
        prop::option::of(arb_category()),
        prop::option::of(0..ORGS),
        prop::sample::select(vec![
            IdentityLevel::P0,
            IdentityLevel::P5,
            IdentityLevel::P9,
        ]),
        any::<bool>(),
    )
        .prop_map(
            |(
                me,
                own,
                memberships,
                grants,
                break_glass,
                category,
                contributed_by,
                level,
                from_organisation,
            )| Case {
                me,
                own,
                memberships,
                grants,
                break_glass,
                category,
                // An organisation's contribution is always from an organisation.
                from_organisation: from_organisation || contributed_by.is_some(),
                contributed_by,
                level,
            },
        )
}

fn build(w: &World, c: &Case) -> (Principal, Vec<Grant>, Vec<BreakGlass>, Resource) {
    let principal = Principal {
        account: w.accounts[c.me],
        own_patient: if c.own { Some(w.patient) } else { None },
        level: c.level,
        memberships: c
            .memberships
            .iter()
            .map(|&(o, role)| Membership {
                org: w.orgs[o],
                role,
            })
            .collect(),
    };
    let grants = c
        .grants
        .iter()
        .map(|g| {
            let grantee = match g.grantee.0 {
                0 => Grantee::Account {
                    account: w.accounts[g.grantee.1 % ACCOUNTS],
                },
                1 => Grantee::Organisation {
                    org: w.orgs[g.grantee.1 % ORGS],
                },
                _ => Grantee::Invitation {
                    email: Email::parse("someone@example.test").unwrap(),
                },
            };
            Grant {
                id: GrantId::new_random(),
                patient: w.patient,
                grantee,
                permissions: Permissions {
                    read: g.perms.0,
                    contribute: g.perms.1,
                    act_on_behalf: g.perms.2,
                },
                categories: g.cats.iter().copied().collect::<BTreeSet<_>>(),
                starts: at(g.starts),
                ends: at(g.starts + g.len),
                purpose: String::new(),
                created_by: w.accounts[0],
                created_at: at(-100),
                proxy: None,
                revoked_at: g.revoked.map(at),
                version: 1,
            }
        })
        .collect();
    let break_glass = c
        .break_glass
        .iter()
        .map(|&(a, o, start, len)| BreakGlass {
            id: BreakGlassId::new_random(),
            patient: w.patient,
            account: w.accounts[a],
            org: w.orgs[o],
            opened_at: at(start),
            expires_at: at(start + len),
        })
        .collect();
    let resource = Resource {
        patient: w.patient,
        category: c.category,
        contributed_by: c.contributed_by.map(|o| w.orgs[o]),
        from_organisation: c.from_organisation,
    };
    (principal, grants, break_glass, resource)
}

/// The rule stated independently of `decide`: a read needs ownership, an
/// active grant to this account or to one of its clinical organisations with
/// read covering the category, the organisation's own contribution, or an open
/// break-glass of its own outside the restricted category.
fn read_is_justified(p: &Principal, grants: &[Grant], bgs: &[BreakGlass], r: &Resource) -> bool {
    let clinical: Vec<OrgId> = p
        .memberships
        .iter()
        .filter(|m| {
            matches!(
                m.role,
                StaffRole::Doctor | StaffRole::Nurse | StaffRole::SocialWorker
            )
        })
        .map(|m| m.org)
        .collect();
    let t = now();
    // The owner stands on ownership alone: everything at P9, and below it
    // nothing an organisation entered.
    if p.own_patient == Some(r.patient) {
        return !r.from_organisation || p.level == IdentityLevel::P9;
    }
    grants.iter().any(|g| {
        let mine = match &g.grantee {
            Grantee::Account { account } => *account == p.account,
            Grantee::Organisation { org } => clinical.contains(org),
            Grantee::Invitation { .. } => false,
        };
        mine && g.revoked_at.is_none_or(|x| x > t)
            && g.starts <= t
            && t < g.ends
            && g.permissions.read
            && r.category.is_none_or(|c| g.categories.contains(&c))
    }) || r.contributed_by.is_some_and(|o| clinical.contains(&o))
        || bgs.iter().any(|b| {
            b.account == p.account
                && clinical.contains(&b.org)
                && b.opened_at <= t
                && t < b.expires_at
                && r.category != Some(Category::Restricted)
        })
}

#[test]
fn the_owner_sees_organisation_entries_only_at_p9() {
    let patient = PatientId::new_random();
    let org = OrgId::new_random();
    let own = Resource::in_category(patient, Category::General).entered_by(&Source::PatientEntered);
    let theirs =
        Resource::in_category(patient, Category::General).entered_by(&Source::Organisation {
            name: "Riverside Medical Practice".into(),
            org: Some(org),
        });
    let imported =
        Resource::in_category(patient, Category::General).entered_by(&Source::Organisation {
            name: "St Oswald's Hospital".into(),
            org: None,
        });
    let facts = Facts::default();
    for (level, sees_org) in [
        (IdentityLevel::P0, false),
        (IdentityLevel::P5, false),
        (IdentityLevel::P9, true),
    ] {
        let p = Principal::patient(AccountId::new_random(), Some(patient), level);
        for action in Action::ALL {
            assert!(
                decide(&p, action, &own, &facts, now()).is_allowed(),
                "{level} owner: {action:?} of what they entered"
            );
            assert!(
                decide(&p, action, &Resource::whole(patient), &facts, now()).is_allowed(),
                "{level} owner: {action:?} of the record as a whole"
            );
        }
        for r in [&theirs, &imported] {
            assert_eq!(
                decide(&p, Action::Read, r, &facts, now()).is_allowed(),
                sees_org,
                "{level} owner reading an organisation's entry"
            );
            assert_eq!(
                decide(&p, Action::Export, r, &facts, now()).is_allowed(),
                sees_org,
                "{level} owner downloading an organisation's document"
            );
        }
    }
}

/// The grant a decision rests on, if it rests on one.
fn granted_by(d: Decision) -> Option<GrantId> {
    match d {
        Decision::Allow(Basis::Carer { grant })
        | Decision::Allow(Basis::Organisation { grant, .. }) => Some(grant),
        _ => None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn no_read_succeeds_without_a_basis(c in arb_case()) {
        let w = world();
        let (p, grants, bgs, r) = build(&w, &c);
        let facts = Facts { grants: &grants, break_glass: &bgs, ..Default::default() };
        let allowed = decide(&p, Action::Read, &r, &facts, now()).is_allowed();
        prop_assert_eq!(allowed, read_is_justified(&p, &grants, &bgs, &r));
    }

    #[test]
    fn revocation_and_expiry_act_at_once(c in arb_case(), action in 0..Action::ALL.len()) {
        let w = world();
        let (p, mut grants, bgs, r) = build(&w, &c);
        let action = Action::ALL[action];
        let decision = decide(&p, action, &r, &Facts { grants: &grants, break_glass: &bgs, ..Default::default() }, now());
        let Some(used) = granted_by(decision) else {
            return Ok(());
        };
        let i = grants.iter().position(|g| g.id == used).unwrap();
        // Revoked this very instant: the same request is no longer allowed by it.
        let mut revoked = grants.clone();
        revoked[i].revoked_at = Some(now());
        let after = decide(&p, action, &r, &Facts { grants: &revoked, break_glass: &bgs, ..Default::default() }, now());
        prop_assert_ne!(granted_by(after), Some(used), "still allowed by the revoked or ended grant");
        // Ending this very instant: the same.
        grants[i].ends = now();
        let after = decide(&p, action, &r, &Facts { grants: &grants, break_glass: &bgs, ..Default::default() }, now());
        prop_assert_ne!(granted_by(after), Some(used), "still allowed by the revoked or ended grant");
    }

    #[test]
    fn only_the_owner_and_their_carers_manage_sharing(c in arb_case()) {
        let w = world();
        let (p, grants, bgs, r) = build(&w, &c);
        let facts = Facts { grants: &grants, break_glass: &bgs, ..Default::default() };
        if let Decision::Allow(basis) = decide(&p, Action::Share, &r, &facts, now()) {
            let by_owner_or_carer = matches!(basis, Basis::Owner | Basis::Carer { .. });
            prop_assert!(by_owner_or_carer, "sharing allowed by {:?}", basis);
            if let Basis::Carer { grant } = basis {
                let g = grants.iter().find(|g| g.id == grant).unwrap();
                prop_assert!(g.permissions.act_on_behalf);
            }
        }
    }
}

/// Rule 6: a records officer working an open request about the patient
/// exports what their organisation contributed, and nothing more: not
/// reading, not another organisation's entries, not without the open
/// request, and not as another role of the same organisation.
#[test]
fn a_records_officer_exports_only_their_organisations_entries_for_an_open_request() {
    let patient = PatientId::new_random();
    let org = OrgId::new_random();
    let other = OrgId::new_random();
    let member = |role| Principal {
        account: AccountId::new_random(),
        own_patient: None,
        level: crate::identity::IdentityLevel::P0,
        memberships: vec![Membership { org, role }],
    };
    let officer = member(StaffRole::RecordsOfficer);
    let open = [SubjectAccess {
        request: RequestId::new_random(),
        patient,
        org,
    }];
    let with = Facts {
        subject_access: &open,
        ..Default::default()
    };
    let ours = Resource::in_category(patient, Category::Restricted).contributed_by(Some(org));
    let theirs = Resource::in_category(patient, Category::General).contributed_by(Some(other));
    let patients_own = Resource::in_category(patient, Category::General);
    assert_eq!(
        decide(&officer, Action::Export, &ours, &with, now()),
        Decision::Allow(Basis::SubjectAccess {
            request: open[0].request,
            org
        })
    );
    for action in [
        Action::Read,
        Action::Contribute,
        Action::Share,
        Action::ReadAccessLog,
    ] {
        assert!(
            !decide(&officer, action, &ours, &with, now()).is_allowed(),
            "{action:?}"
        );
    }
    assert!(!decide(&officer, Action::Export, &theirs, &with, now()).is_allowed());
    assert!(!decide(&officer, Action::Export, &patients_own, &with, now()).is_allowed());
    assert!(!decide(&officer, Action::Export, &ours, &Facts::default(), now()).is_allowed());
    let elsewhere = [SubjectAccess {
        org: other,
        ..open[0]
    }];
    let elsewhere = Facts {
        subject_access: &elsewhere,
        ..Default::default()
    };
    assert!(!decide(&officer, Action::Export, &ours, &elsewhere, now()).is_allowed());
    let another_patient = [SubjectAccess {
        patient: PatientId::new_random(),
        ..open[0]
    }];
    let another_patient = Facts {
        subject_access: &another_patient,
        ..Default::default()
    };
    assert!(!decide(&officer, Action::Export, &ours, &another_patient, now()).is_allowed());
    for role in [
        StaffRole::Doctor,
        StaffRole::Administrator,
        StaffRole::Nurse,
    ] {
        assert!(
            !decide(&member(role), Action::Export, &ours, &with, now()).is_allowed(),
            "{role:?}"
        );
    }
}
