//! The policy decision (`policy::decide`), as every read and write makes it:
//! the owner's fast path, a professional allowed through their
//! organisation's grant, an unrelated professional denied, emergency access,
//! and the 100 decisions a record of 100 entries costs a professional (one
//! per entry, by category and contributor). The consent state is a realistic
//! one: grants to a carer, to two organisations (one revoked) and to a
//! pending invitation, and an ended emergency access.
//!   cargo bench -p keyhold-domain --bench policy
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use keyhold_domain::consent::{BreakGlass, Grant, Grantee, Membership, Permissions, StaffRole};
use keyhold_domain::policy::{decide, Action, Facts, Principal, Resource};
use keyhold_domain::{
    AccountId, BreakGlassId, Category, Email, GrantId, IdentityLevel, OrgId, PatientId, Source,
};
use time::{Duration, OffsetDateTime};

fn now() -> OffsetDateTime {
    OffsetDateTime::UNIX_EPOCH + Duration::days(20_000)
}

fn grant(patient: PatientId, grantee: Grantee, revoked: bool, categories: &[Category]) -> Grant {
    let t = now();
    Grant {
        id: GrantId::new_random(),
        patient,
        grantee,
        permissions: Permissions {
            read: true,
            contribute: true,
            act_on_behalf: false,
        },
        categories: categories.iter().copied().collect(),
        starts: t - Duration::days(30),
        ends: t + Duration::days(300),
        purpose: "care".into(),
        created_by: AccountId::new_random(),
        created_at: t - Duration::days(30),
        proxy: None,
        revoked_at: revoked.then(|| t - Duration::days(1)),
        version: 1,
    }
}

fn professional(org: OrgId) -> Principal {
    Principal {
        account: AccountId::new_random(),
        own_patient: None,
        level: IdentityLevel::P9,
        memberships: vec![Membership {
            org,
            role: StaffRole::Doctor,
        }],
    }
}

fn bench(c: &mut Criterion) {
    let patient = PatientId::new_random();
    let (gp, hospital, other) = (
        OrgId::new_random(),
        OrgId::new_random(),
        OrgId::new_random(),
    );
    let general = [Category::General, Category::MentalHealth];
    let grants = vec![
        grant(
            patient,
            Grantee::Account {
                account: AccountId::new_random(),
            },
            false,
            &[Category::General, Category::SocialCare],
        ),
        grant(
            patient,
            Grantee::Organisation { org: other },
            true,
            &general,
        ),
        grant(
            patient,
            Grantee::Invitation {
                email: Email::parse("invited@example.test").unwrap(),
            },
            false,
            &general,
        ),
        grant(patient, Grantee::Organisation { org: gp }, false, &general),
    ];
    let doctor = professional(hospital);
    let break_glass = vec![
        BreakGlass {
            id: BreakGlassId::new_random(),
            patient,
            account: AccountId::new_random(),
            org: hospital,
            opened_at: now() - Duration::days(2),
            expires_at: now() - Duration::days(2) + Duration::hours(1),
        },
        BreakGlass {
            id: BreakGlassId::new_random(),
            patient,
            account: doctor.account,
            org: hospital,
            opened_at: now() - Duration::minutes(5),
            expires_at: now() + Duration::minutes(55),
        },
    ];
    let facts = Facts {
        grants: &grants,
        break_glass: &break_glass,
        subject_access: &[],
    };
    let owner = Principal::patient(AccountId::new_random(), Some(patient), IdentityLevel::P9);
    let gp_doctor = professional(gp);
    let unrelated = professional(OrgId::new_random());
    let whole = Resource::whole(patient);
    let entry =
        Resource::in_category(patient, Category::MentalHealth).entered_by(&Source::Organisation {
            name: "St Oswald's".into(),
            org: Some(hospital),
        });
    // A record's entries: categories and sources as the demo data mixes them.
    let entries: Vec<Resource> = (0..100)
        .map(|i| {
            let category = Category::ALL[i % Category::ALL.len()];
            let source = match i % 3 {
                0 => Source::PatientEntered,
                1 => Source::Organisation {
                    name: "Riverside".into(),
                    org: Some(gp),
                },
                _ => Source::Organisation {
                    name: "Imported".into(),
                    org: None,
                },
            };
            Resource::in_category(patient, category).entered_by(&source)
        })
        .collect();

    let mut g = c.benchmark_group("policy_decide");
    g.throughput(Throughput::Elements(1));
    for (name, who, what) in [
        ("owner_whole_record", &owner, &whole),
        ("organisation_grant_entry", &gp_doctor, &entry),
        ("unrelated_denied", &unrelated, &whole),
        ("break_glass_whole_record", &doctor, &whole),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                decide(
                    black_box(who),
                    Action::Read,
                    black_box(what),
                    black_box(&facts),
                    now(),
                )
            })
        });
    }
    g.throughput(Throughput::Elements(entries.len() as u64));
    g.bench_function("organisation_grant_100_entries", |b| {
        b.iter(|| {
            entries
                .iter()
                .filter(|r| {
                    decide(&gp_doctor, Action::Read, r, black_box(&facts), now()).is_allowed()
                })
                .count()
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = bench
}
criterion_main!(benches);
