//! `keyhold-bench`: the tools `scripts/bench.sh` drives (see docs/PERFORMANCE.md).
//!
//! - `seed`: fills an empty data folder with synthetic patients, each with the
//!   same number of entries, through the domain's own write path (sealed,
//!   indexed, audited, durable), on every core; adds the accounts a load
//!   generator signs in with; reports the plaintext JSON size of what it wrote.
//! - `bare`: an axum server answering every GET with one file's bytes: what a
//!   read would cost with no session, policy, store, crypto or audit at all.
//!
//! All data is synthetic (see `keyhold_domain::demo`).

use std::collections::VecDeque;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use keyhold_domain::bulk::{PendingWrite, PreparedPatient};
use keyhold_domain::clock::SystemClock;
use keyhold_domain::demo::Generator;
use keyhold_domain::keystore::{init_keys, load_keys};
use keyhold_domain::{
    ContactDetails, ContactKind, Demographics, Email, Entry, EntryId, EntryKind, IdentityLevel,
    Keyhold, NewEntry, PatientId, Settings, Source,
};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::Serialize;

/// The account whose own record the load generator reads.
const READER_EMAIL: &str = "reader@bench.keyhold.test";
/// Every bench account's password (synthetic data only).
const PASSWORD: &str = "keyhold-bench-2026-synthetic";
/// Accounts for the sign-in flood: `bench01@…` to `bench50@…`. The sign-in
/// limits let at most 5 attempts per account run at once, so a flood of 200
/// needs many accounts (see `scripts/bench-signin.sh`).
const FLOOD_ACCOUNTS: usize = 50;
/// Patients queued for the committer before the oldest is waited for.
const IN_FLIGHT: usize = 512;

#[derive(Parser)]
#[command(name = "keyhold-bench", about = "Keyhold benchmark tools")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Seed an empty data folder with synthetic patients and bench accounts.
    Seed {
        #[arg(long)]
        data: PathBuf,
        /// Created (with new keys) if it holds none.
        #[arg(long)]
        keys: PathBuf,
        #[arg(long)]
        patients: usize,
        /// Entries per patient.
        #[arg(long, default_value_t = 100)]
        entries: usize,
        /// Threads preparing patients [default: one per core].
        #[arg(long)]
        threads: Option<usize>,
        /// Writes the summary (counts, rate, plaintext JSON bytes, the bench
        /// accounts and the reader's patient id) here as JSON.
        #[arg(long, value_name = "FILE")]
        json_out: Option<PathBuf>,
    },
    /// Serve FILE's bytes to every GET (the bare baseline of a read).
    Bare {
        #[arg(long, default_value = "127.0.0.1:0")]
        bind: SocketAddr,
        #[arg(long, value_name = "FILE")]
        body: PathBuf,
        #[arg(long, default_value = "application/fhir+json")]
        content_type: String,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Seed {
            data,
            keys,
            patients,
            entries,
            threads,
            json_out,
        } => {
            let threads = threads
                .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
                .unwrap_or(2)
                .max(1);
            let summary = seed(&data, &keys, patients, entries, threads)?;
            let text = serde_json::to_string_pretty(&summary)?;
            match json_out {
                Some(path) => std::fs::write(&path, format!("{text}\n"))
                    .with_context(|| format!("writing {}", path.display()))?,
                None => println!("{text}"),
            }
            Ok(())
        }
        Command::Bare {
            bind,
            body,
            content_type,
        } => bare(bind, &body, &content_type),
    }
}

/// What `seed` reports.
#[derive(Serialize)]
struct SeedSummary {
    patients: usize,
    entries_per_patient: usize,
    entries: usize,
    /// Compact JSON of every patient's demographics and entries (ids, times
    /// and sources included): the plaintext the store holds sealed.
    plaintext_json_bytes: u64,
    /// Keys and values the store holds, all trees (what the engine is given,
    /// before its own overhead).
    store_row_bytes: u64,
    /// Bytes under the data folder once the store is closed.
    data_bytes: u64,
    seconds: f64,
    patients_per_second: f64,
    entries_per_second: f64,
    threads: usize,
    reader: Reader,
    flood: Flood,
}

#[derive(Serialize)]
struct Reader {
    email: String,
    password: String,
    /// The reader's own record.
    patient: PatientId,
}

#[derive(Serialize)]
struct Flood {
    /// `bench01@bench.keyhold.test` … in turn.
    accounts: usize,
    email_format: String,
    password: String,
}

/// One patient as plaintext JSON, for the size the store is compared with.
#[derive(Serialize)]
struct PlainPatient<'a> {
    id: PatientId,
    demographics: &'a Demographics,
    entries: Vec<Entry>,
}

type Prepared = (PreparedPatient, u64, Option<Demographics>);

fn seed(
    data: &Path,
    keys: &Path,
    patients: usize,
    entries: usize,
    threads: usize,
) -> Result<SeedSummary> {
    if patients == 0 {
        bail!("--patients must be at least 1");
    }
    init_keys(keys)?;
    let core = Keyhold::open(
        data,
        load_keys(keys)?,
        // The accounts get real (OWASP) password hashes, as sign-ins check.
        Settings::default(),
        Arc::new(SystemClock),
    )?;
    if !core.is_empty()? {
        bail!(
            "{} already holds data; seed only into an empty folder",
            data.display()
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;

    // People come from one generator, so NHS numbers stay unique; entries from
    // one per thread.
    let people = Mutex::new(Generator::new(StdRng::from_entropy()));
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::sync_channel::<Result<Prepared>>(IN_FLIGHT);
    let started = Instant::now();
    let today = core.today();
    println!(
        "seeding {patients} patients x {entries} entries into {} ({threads} threads preparing, one committer)",
        data.display()
    );
    let (plaintext, first) =
        std::thread::scope(|s| -> Result<(u64, Option<(PatientId, Demographics)>)> {
            for _ in 0..threads {
                let tx = tx.clone();
                let (core, people, next) = (&core, &people, &next);
                s.spawn(move || {
                    let mut gen = Generator::new(StdRng::from_entropy());
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= patients {
                            break;
                        }
                        let made = prepare(core, people, &mut gen, today, entries, i == 0);
                        let failed = made.is_err();
                        if tx.send(made).is_err() || failed {
                            break;
                        }
                    }
                });
            }
            drop(tx);
            write_all(&core, rx, patients, entries, started)
        })?;
    let secs = started.elapsed().as_secs_f64();
    let Some((patient, demographics)) = first else {
        bail!("the first patient was not seeded");
    };
    println!(
        "{patients} patients ({} entries) in {secs:.1} s: {:.0} patients/s, {:.0} entries/s",
        patients * entries,
        patients as f64 / secs,
        (patients * entries) as f64 / secs
    );

    rt.block_on(accounts(&core, patient, &demographics))?;
    let mut rows = 0u64;
    core.store().export(&mut |k: &[u8], v: &[u8]| {
        rows += (k.len() + v.len()) as u64;
        Ok(())
    })?;
    drop(core);
    Ok(SeedSummary {
        patients,
        entries_per_patient: entries,
        entries: patients * entries,
        plaintext_json_bytes: plaintext,
        store_row_bytes: rows,
        data_bytes: dir_bytes(data)?,
        seconds: secs,
        patients_per_second: patients as f64 / secs,
        entries_per_second: (patients * entries) as f64 / secs,
        threads,
        reader: Reader {
            email: READER_EMAIL.into(),
            password: PASSWORD.into(),
            patient,
        },
        flood: Flood {
            accounts: FLOOD_ACCOUNTS,
            email_format: "bench{:02}@bench.keyhold.test".into(),
            password: PASSWORD.into(),
        },
    })
}

/// One synthetic patient with `count` entries, sealed; its plaintext JSON size.
fn prepare(
    core: &Keyhold,
    people: &Mutex<Generator<StdRng>>,
    gen: &mut Generator<StdRng>,
    today: time::Date,
    count: usize,
    keep_demographics: bool,
) -> Result<Prepared> {
    let (demographics, identity) = people
        .lock()
        .map_err(|_| anyhow::anyhow!("generator lock poisoned"))?
        .person()?;
    let mut entries = Vec::with_capacity(count);
    while entries.len() < count {
        for (mut entry, source) in gen.entries(today, &identity.note_phrase) {
            if entries.len() == count {
                break;
            }
            // A care network contact carries its details, as the demo's do.
            let contact = (entry.kind == EntryKind::CareContact).then(|| {
                entry.details = String::new();
                ContactDetails {
                    kind: ContactKind::Professional,
                    role: "GP".into(),
                    organisation: "Riverside Medical Practice".into(),
                    phone: "0113 496 0123".into(),
                    email: None,
                }
            });
            entries.push((entry, source, contact));
        }
    }
    let plain = plaintext_bytes(&demographics, &entries, core.now())?;
    let prepared = core.prepare_patient(&demographics, entries, "seed synthetic bench data")?;
    Ok((prepared, plain, keep_demographics.then_some(demographics)))
}

fn plaintext_bytes(
    demographics: &Demographics,
    entries: &[(NewEntry, Source, Option<ContactDetails>)],
    now: time::OffsetDateTime,
) -> Result<u64> {
    let plain = PlainPatient {
        id: PatientId::new_random(),
        demographics,
        entries: entries
            .iter()
            .map(|(e, source, contact)| Entry {
                id: EntryId::new_random(),
                kind: e.kind,
                title: e.title.clone(),
                date: e.date,
                end_date: e.end_date,
                category: e.category,
                source: source.clone(),
                details: e.details.clone(),
                recorded_at: now,
                contact: contact.clone(),
            })
            .collect(),
    };
    Ok(serde_json::to_vec(&plain)?.len() as u64)
}

/// Queues prepared patients for the committer, keeping up to `IN_FLIGHT`
/// unacknowledged so they share flushes, and reports progress.
fn write_all(
    core: &Keyhold,
    rx: mpsc::Receiver<Result<Prepared>>,
    patients: usize,
    entries: usize,
    started: Instant,
) -> Result<(u64, Option<(PatientId, Demographics)>)> {
    let mut pending: VecDeque<PendingWrite> = VecDeque::with_capacity(IN_FLIGHT + 1);
    let mut plaintext = 0u64;
    let mut first = None;
    let mut durable = 0usize;
    let mut last_report = Instant::now();
    let mut report = |durable: usize| {
        if last_report.elapsed() >= Duration::from_secs(5) || durable == patients {
            last_report = Instant::now();
            let secs = started.elapsed().as_secs_f64();
            let rate = durable as f64 / secs;
            let left = (patients - durable) as f64 / rate.max(f64::MIN_POSITIVE);
            println!(
                "  {durable}/{patients} patients durable, {secs:.0} s: {rate:.0} patients/s ({:.0} entries/s), about {left:.0} s to go",
                rate * entries as f64
            );
            let _ = std::io::stdout().flush();
        }
    };
    for made in rx {
        let (prepared, plain, demographics) = made?;
        plaintext += plain;
        if let Some(d) = demographics {
            first = Some((prepared.patient, d));
        }
        pending.push_back(core.write_prepared(prepared));
        while pending.len() > IN_FLIGHT {
            if let Some(w) = pending.pop_front() {
                w.wait()?;
                durable += 1;
                report(durable);
            }
        }
    }
    for w in pending {
        w.wait()?;
        durable += 1;
        report(durable);
    }
    if durable != patients {
        bail!("{durable} of {patients} patients were written");
    }
    Ok((plaintext, first))
}

/// The reader (owner of the first record, identity checked to P9 so they
/// see every entry) and the accounts the sign-in flood uses.
async fn accounts(core: &Arc<Keyhold>, patient: PatientId, d: &Demographics) -> Result<()> {
    let started = Instant::now();
    core.create_account_for("Bench Reader", READER_EMAIL, PASSWORD, Some(patient))
        .await?;
    core.verify_identity(
        &Email::parse(READER_EMAIL)?,
        IdentityLevel::P9,
        d.nhs_number,
        "synthetic bench patient",
    )
    .await?;
    let mut tasks = Vec::with_capacity(FLOOD_ACCOUNTS);
    for i in 1..=FLOOD_ACCOUNTS {
        let core = core.clone();
        tasks.push(tokio::spawn(async move {
            core.create_account_for(
                &format!("Bench Person {i:02}"),
                &format!("bench{i:02}@bench.keyhold.test"),
                PASSWORD,
                None,
            )
            .await
        }));
    }
    for t in tasks {
        t.await??;
    }
    println!(
        "accounts: {READER_EMAIL} (owner of record {patient}) and {FLOOD_ACCOUNTS} for the sign-in flood, in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Bytes of every file under `dir` (as `du -sb` counts them, less folders).
fn dir_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_bytes(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

fn bare(bind: SocketAddr, body: &Path, content_type: &str) -> Result<()> {
    let bytes = axum::body::Bytes::from(
        std::fs::read(body).with_context(|| format!("reading {}", body.display()))?,
    );
    let content_type = axum::http::HeaderValue::from_str(content_type)
        .context("--content-type is not a header value")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let app = axum::Router::new().fallback(axum::routing::get(move || {
            let (bytes, content_type) = (bytes.clone(), content_type.clone());
            async move { ([(axum::http::header::CONTENT_TYPE, content_type)], bytes) }
        }));
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .with_context(|| format!("binding {bind}"))?;
        println!("bare listening on http://{}", listener.local_addr()?);
        std::io::stdout().flush()?;
        axum::serve(listener, app).await?;
        Ok(())
    })
}
