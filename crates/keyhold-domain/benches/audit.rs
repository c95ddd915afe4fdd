//! Audit append on the real sled store: one append at a time (each waits for
//! its own flush) and 64 concurrent appends (sharing flushes: group commit).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use keyhold_domain::audit::{AuditAction, AuditActor, AuditEvent, Outcome};
use keyhold_domain::clock::SystemClock;
use keyhold_domain::keystore::{init_keys, load_keys};
use keyhold_domain::{AccountId, Keyhold, PatientId, Settings};

fn event() -> AuditEvent {
    AuditEvent {
        at: time::OffsetDateTime::now_utc(),
        actor: AuditActor::patient(AccountId::new_random()),
        action: AuditAction::Read,
        patient: Some(PatientId::new_random()),
        resource: "record".into(),
        purpose: "own record".into(),
        outcome: Outcome::Success,
        basis: Some(keyhold_domain::audit::AuditBasis::Owner),
    }
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    init_keys(&dir.path().join("keys")).unwrap();
    let core = Keyhold::open(
        &dir.path().join("data"),
        load_keys(&dir.path().join("keys")).unwrap(),
        Settings {
            danger_fast_hashing: true,
            ..Settings::default()
        },
        Arc::new(SystemClock),
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();

    let mut g = c.benchmark_group("audit_append");
    g.throughput(Throughput::Elements(1));
    g.bench_function("one_durable_append", |b| {
        b.iter(|| rt.block_on(core.audit_log().record(&event())).unwrap())
    });
    g.throughput(Throughput::Elements(64));
    g.bench_function("64_concurrent_durable_appends", |b| {
        b.iter(|| {
            rt.block_on(async {
                let tasks: Vec<_> = (0..64)
                    .map(|_| {
                        let core = core.clone();
                        tokio::spawn(async move { core.audit_log().record(&event()).await })
                    })
                    .collect();
                for t in tasks {
                    t.await.unwrap().unwrap();
                }
            })
        })
    });
    g.finish();
    let s = core.store().stats();
    eprintln!(
        "store: {} batches in {} flushes (largest group {})",
        s.batches_committed, s.flushes, s.largest_group
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
