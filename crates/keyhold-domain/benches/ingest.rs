//! Feed ingest rate: 10,000 entries from an organisation's system through
//! `Keyhold::ingest` (policy per patient and category, sealed under the
//! patient's key, identifier index, one audit event each, one durable batch
//! per 100), beside raw sled inserts of the same sealed-row-sized bytes,
//! also 100 to a durable batch, in the same run; and raw sled inserts of the
//! very rows the first pass wrote (entries, identifier index, audit entries
//! and their index: the same bytes), in as many batches. Then the same
//! 10,000 new entries from four feeds at once (four batches in flight,
//! sharing flushes).
//! Plain timing (not criterion): one pass over 10,000 is the figure asked
//! for. The last line is a JSON summary (`scripts/bench.sh` reads it).
//!   cargo bench -p keyhold-domain --bench ingest
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Instant;

use keyhold_domain::clock::SystemClock;
use keyhold_domain::consent::{Membership, Permissions, StaffRole};
use keyhold_domain::feeds::{BusinessId, FeedItem, FeedSubject};
use keyhold_domain::keystore::{init_keys, load_keys};
use keyhold_domain::policy::Principal;
use keyhold_domain::{
    AccountId, Category, Demographics, EntryKind, GrantTerms, IdentityLevel, Keyhold, NewEntry,
    NewGrantee, Settings,
};

const TOTAL: usize = 10_000;
const BATCH: usize = 100;
const PATIENTS: usize = 20;
/// Feeds posting at once in the concurrent pass.
const FEEDS: usize = 4;

fn main() {
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
    .unwrap()
    .with_mailer(
        keyhold_mail::Mailer::new(
            keyhold_mail::MailTransport::Outbox(dir.path().join("outbox")),
            "Keyhold <keyhold@bench.invalid>",
        )
        .unwrap(),
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();

    // An organisation, and patients who let it contribute General entries.
    let (org, patients) = rt.block_on(async {
        let (org, _) = core
            .create_organisation("Bench Practice", "admin@bench.test")
            .await
            .unwrap();
        let mut patients = Vec::new();
        for i in 0..PATIENTS {
            let mut d = Demographics::empty();
            d.family_name = format!("Bench{i}");
            let patient = core.register_patient(d).await.unwrap();
            let email = format!("p{i}@bench.test");
            core.create_account_for("Bench", &email, "bench password 1", Some(patient))
                .await
                .unwrap();
            let signed = core
                .sign_in(&email, "bench password 1", None)
                .await
                .unwrap();
            core.share(
                &signed.principal,
                patient,
                NewGrantee::Organisation(org),
                GrantTerms {
                    permissions: Permissions {
                        read: true,
                        contribute: true,
                        act_on_behalf: false,
                    },
                    categories: [Category::General].into_iter().collect(),
                    last_day: core.today() + time::Duration::days(30),
                    purpose: "bench".into(),
                },
            )
            .await
            .unwrap();
            patients.push(patient);
        }
        (org, patients)
    });
    let system = Principal {
        account: AccountId::new_random(),
        own_patient: None,
        level: IdentityLevel::P0,
        memberships: vec![Membership {
            org,
            role: StaffRole::System,
        }],
    };
    let item = |n: usize| FeedItem {
        subject: FeedSubject::Patient(patients[n % PATIENTS]),
        identifier: BusinessId::parse("https://bench.example/ids", &format!("E-{n}")).unwrap(),
        entry: NewEntry {
            kind: EntryKind::Condition,
            title: format!("Synthetic condition {n}"),
            date: time::macros::date!(2024 - 01 - 01),
            end_date: None,
            category: Category::General,
            details: "Synthetic details for a benchmark entry, about a line long.".into(),
        },
    };
    let before = rows_of(core.store().as_ref());
    let started = Instant::now();
    rt.block_on(async {
        for b in 0..TOTAL / BATCH {
            let items = (b * BATCH..(b + 1) * BATCH).map(item).collect();
            core.ingest(&system, items).await.unwrap();
        }
    });
    let keyhold_secs = started.elapsed().as_secs_f64();
    // Every row that pass wrote (entry, identifier index, audit entry and its
    // index by patient), for the raw comparison with the same bytes.
    let mut written: Vec<(Vec<u8>, Vec<u8>)> = rows_of(core.store().as_ref())
        .into_iter()
        .filter(|(k, v)| before.get(k) != Some(v))
        .collect();

    // The same again with the same identifiers: every item is an update.
    let started = Instant::now();
    rt.block_on(async {
        for b in 0..TOTAL / BATCH {
            let items = (b * BATCH..(b + 1) * BATCH).map(item).collect();
            core.ingest(&system, items).await.unwrap();
        }
    });
    let update_secs = started.elapsed().as_secs_f64();

    // New entries again (other identifiers), from four feeds at once.
    let started = Instant::now();
    rt.block_on(async {
        let tasks: Vec<_> = (0..FEEDS)
            .map(|f| {
                let (core, system, patients) = (core.clone(), system.clone(), patients.clone());
                tokio::spawn(async move {
                    let per_feed = TOTAL / FEEDS;
                    for b in 0..per_feed / BATCH {
                        let items = (0..BATCH)
                            .map(|i| {
                                let n = f * per_feed + b * BATCH + i;
                                FeedItem {
                                    subject: FeedSubject::Patient(patients[n % PATIENTS]),
                                    identifier: BusinessId::parse(
                                        "https://bench.example/ids",
                                        &format!("C-{n}"),
                                    )
                                    .unwrap(),
                                    entry: NewEntry {
                                        kind: EntryKind::Condition,
                                        title: format!("Synthetic condition {n}"),
                                        date: time::macros::date!(2024 - 01 - 01),
                                        end_date: None,
                                        category: Category::General,
                                        details: "Synthetic details for a benchmark entry, about a line long.".into(),
                                    },
                                }
                            })
                            .collect();
                        core.ingest(&system, items).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    let concurrent_secs = started.elapsed().as_secs_f64();

    // The raw writes carry the same bytes per row as the sealed entry rows.
    let rows: Vec<usize> = core
        .store()
        .scan(keyhold_domain::trees::ENTRIES, b"")
        .map(|r| r.unwrap().1.len())
        .collect();
    let row_bytes = rows.iter().sum::<usize>() / rows.len();

    let raw_dir = tempfile::tempdir().unwrap();
    let db = sled::open(raw_dir.path()).unwrap();
    let tree = db.open_tree("entries").unwrap();
    let value = vec![0x5a; row_bytes];
    let started = Instant::now();
    for b in 0..TOTAL / BATCH {
        let mut batch = sled::Batch::default();
        for _ in b * BATCH..(b + 1) * BATCH {
            batch.insert(uuid::Uuid::new_v4().as_bytes().to_vec(), value.clone());
        }
        tree.apply_batch(batch).unwrap();
        db.flush().unwrap();
    }
    let raw_secs = started.elapsed().as_secs_f64();

    // Raw sled again, with the very rows the first pass wrote (same keys,
    // same bytes), in random order, as many batches, each flushed.
    use rand::seq::SliceRandom;
    written.shuffle(&mut rand::thread_rng());
    let same_rows = written.len();
    let same_bytes: usize = written.iter().map(|(k, v)| k.len() + v.len()).sum();
    let same_dir = tempfile::tempdir().unwrap();
    let db = sled::open(same_dir.path()).unwrap();
    let tree = db.open_tree("kv").unwrap();
    let per_batch = same_rows.div_ceil(TOTAL / BATCH);
    let started = Instant::now();
    for chunk in written.chunks(per_batch) {
        let mut batch = sled::Batch::default();
        for (k, v) in chunk {
            batch.insert(k.clone(), v.clone());
        }
        tree.apply_batch(batch).unwrap();
        db.flush().unwrap();
    }
    let same_secs = started.elapsed().as_secs_f64();

    println!(
        "ingest of {TOTAL} entries in batches of {BATCH}, {PATIENTS} patients, durable per batch"
    );
    println!(
        "  keyhold ingest (new):     {:>8.0} entries/s  ({keyhold_secs:.2} s)",
        TOTAL as f64 / keyhold_secs
    );
    println!(
        "  keyhold ingest (updates): {:>8.0} entries/s  ({update_secs:.2} s)",
        TOTAL as f64 / update_secs
    );
    println!(
        "  keyhold ingest ({FEEDS} feeds at once): {:>8.0} entries/s  ({concurrent_secs:.2} s)",
        TOTAL as f64 / concurrent_secs
    );
    println!(
        "  raw sled, {row_bytes}-byte rows: {:>8.0} rows/s     ({raw_secs:.2} s)",
        TOTAL as f64 / raw_secs
    );
    println!(
        "  raw sled, the {same_rows} rows ingest wrote ({} bytes an entry): {:>8.0} entries/s ({same_secs:.2} s)",
        same_bytes / TOTAL,
        TOTAL as f64 / same_secs
    );
    println!(
        "{}",
        serde_json::json!({
            "entries": TOTAL,
            "batch": BATCH,
            "keyhold_new_per_s": (TOTAL as f64 / keyhold_secs).round() as u64,
            "keyhold_update_per_s": (TOTAL as f64 / update_secs).round() as u64,
            "keyhold_concurrent_per_s": (TOTAL as f64 / concurrent_secs).round() as u64,
            "feeds": FEEDS,
            "raw_per_s": (TOTAL as f64 / raw_secs).round() as u64,
            "raw_same_rows_per_s": (TOTAL as f64 / same_secs).round() as u64,
            "same_rows": same_rows,
            "same_bytes": same_bytes,
            "row_bytes": row_bytes,
        })
    );
}

/// Every row of the store (raw keys, tree prefix included).
fn rows_of(store: &dyn keyhold_storage::Store) -> std::collections::HashMap<Vec<u8>, Vec<u8>> {
    let mut rows = std::collections::HashMap::new();
    store
        .export(&mut |k: &[u8], v: &[u8]| {
            rows.insert(k.to_vec(), v.to_vec());
            Ok(())
        })
        .unwrap();
    rows
}
