//! The `keyhold` command. Thin: it parses arguments, loads keys and settings,
//! and hands over to the domain and web crates.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};

/// mimalloc instead of glibc's malloc: allocation was a fifth of a read's
/// instructions, and audited reads ran 20-25% faster with it (PERFORMANCE, P1).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use clap::{Parser, Subcommand};
use keyhold_domain::checkpoint::{
    run_checkpointer, verify_checkpoints, AuditBreak, CheckpointConfig, CheckpointFailure, Source,
};
use keyhold_domain::clock::SystemClock;
use keyhold_domain::keystore::{init_keys, load_keys};
use keyhold_domain::PatientId;
use keyhold_domain::{DomainError, FirstAdministrator, Keyhold, Settings};
use keyhold_web::{AppState, Application, MetricsToken, ServerLimits, WebConfig};

mod control;
mod operator;

use operator::ErasureTarget;

#[derive(Parser)]
#[command(
    name = "keyhold",
    version,
    about = "An encrypted, consent-centric personal health record"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the key files (mode 0600) in DIR; existing keys are kept.
    Init {
        #[arg(long)]
        keys: PathBuf,
    },
    /// Run the service.
    Serve {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        keys: PathBuf,
        #[arg(long, default_value = "127.0.0.1:8080")]
        bind: SocketAddr,
        /// On an empty data folder: create keys if missing, seed synthetic
        /// patients and demo accounts, and print the sign-ins.
        #[arg(long)]
        demo: bool,
        /// Append signed audit checkpoints to FILE (created mode 0600; copy it
        /// off this host) [default: DATA/audit-checkpoints.txt].
        #[arg(long, value_name = "FILE")]
        checkpoints: Option<PathBuf>,
        /// Sign a checkpoint once this many audit entries have been added.
        #[arg(long, value_name = "N", default_value_t = CheckpointConfig::DEFAULT_EVERY_ENTRIES,
              value_parser = clap::value_parser!(u64).range(1..))]
        checkpoint_every: u64,
        /// Sign a checkpoint once this many seconds have passed with any new entry.
        #[arg(long, value_name = "SECONDS", default_value_t = CheckpointConfig::DEFAULT_EVERY.as_secs(),
              value_parser = clap::value_parser!(u64).range(1..))]
        checkpoint_interval: u64,
    },
    /// Seed N synthetic patients and write the plaintext values seeded to FILE.
    Demo {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        keys: PathBuf,
        #[arg(long)]
        patients: usize,
        /// JSON file, outside the data folder.
        #[arg(long)]
        identities: PathBuf,
    },
    /// Key management.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Audit trail checks.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Organisations (GP practices, hospitals, care teams).
    Org {
        #[command(subcommand)]
        command: OrgCommand,
    },
    /// Identity checks of email accounts.
    Identity {
        #[command(subcommand)]
        command: IdentityCommand,
    },
    /// NHS login (OpenID Connect) set-up.
    Oidc {
        #[command(subcommand)]
        command: OidcCommand,
    },
    /// Write an encrypted backup of the store (while the server runs, too).
    Backup {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        keys: PathBuf,
        /// The backup file to create (refused if it exists).
        #[arg(long)]
        to: PathBuf,
        /// The age recipient (`age1…`) the backup is encrypted to; keep its
        /// identity off this host.
        #[arg(long)]
        recipient: String,
    },
    /// Restore a backup into a new data folder.
    Restore {
        #[arg(long)]
        from: PathBuf,
        /// The age identity file (`AGE-SECRET-KEY-1…`) of the backup's recipient.
        #[arg(long)]
        identity: PathBuf,
        /// A data folder with no store in it.
        #[arg(long)]
        data: PathBuf,
        /// The keys folder: if given, its erasure ledger is applied at once
        /// (otherwise at the next start).
        #[arg(long)]
        keys: Option<PathBuf>,
    },
    /// Patients' records.
    Patient {
        #[command(subcommand)]
        command: PatientCommand,
    },
}

#[derive(Subcommand)]
enum PatientCommand {
    /// Erase a patient's record for good (crypto-shredding), and the sign-in
    /// that is only theirs. Recorded in the erasure ledger in the keys folder.
    Erase {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        keys: PathBuf,
        /// The record's NHS number.
        #[arg(long, conflicts_with = "patient", required_unless_present = "patient")]
        nhs_number: Option<String>,
        /// The record's id (as the audit trail shows it).
        #[arg(long)]
        patient: Option<PatientId>,
    },
}

#[derive(Subcommand)]
enum IdentityCommand {
    /// Record that you checked an account holder's identity, and link the
    /// account to the record of the NHS number you confirmed.
    Verify {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        keys: PathBuf,
        /// The account's email address.
        #[arg(long)]
        email: String,
        /// P9: photo ID seen (sees the whole record); P5: basic check
        /// (demographics and what they entered); P0: withdraws a check.
        #[arg(long)]
        level: String,
        /// The NHS number the check confirmed (needed for P5 and P9).
        #[arg(long)]
        nhs_number: Option<String>,
        /// How you checked, for the audit trail (for example "passport seen at reception").
        #[arg(long)]
        note: String,
    },
}

#[derive(Subcommand)]
enum OidcCommand {
    /// Print the public JWKS of the client key, to register with NHS login.
    Jwks {
        /// The client's RSA private key, PKCS#8 PEM [default: KEYS/oidc-client.pem].
        #[arg(long)]
        key: Option<PathBuf>,
        #[arg(long)]
        keys: PathBuf,
    },
}

#[derive(Subcommand)]
enum OrgCommand {
    /// Create an organisation and its first administrator: an existing
    /// account joins at once; a new address is sent a single-use invitation.
    Add {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        keys: PathBuf,
        /// The organisation's name, as patients will see it.
        #[arg(long)]
        name: String,
        /// The first administrator's email address.
        #[arg(long)]
        admin_email: String,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Add a new master key and re-wrap every data key under it (records are not re-encrypted).
    Rotate {
        #[arg(long)]
        keys: PathBuf,
        #[arg(long)]
        data: PathBuf,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the whole hash chain and every signed checkpoint (the store's own,
    /// and FILE's); exit 2 on any break.
    Verify {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        keys: PathBuf,
        /// The checkpoints file `serve` appends to (best: a copy kept off the host).
        /// Without it a tail cut together with the store's checkpoints goes unseen.
        #[arg(long, value_name = "FILE")]
        checkpoints: Option<PathBuf>,
    },
}

/// Settings from the environment. `KEYHOLD_DANGER_FAST_HASH=1` (tests only)
/// selects the cheapest argon2 parameters; `KEYHOLD_SECURE_COOKIES=1` is for
/// deployments behind TLS; `KEYHOLD_PUBLIC_URL` is the address in mailed links;
/// `KEYHOLD_BREAK_GLASS_MINUTES` how long emergency access lasts (default 60).
fn settings() -> Result<Settings> {
    let mut s = Settings::default();
    if let Ok(url) = std::env::var("KEYHOLD_PUBLIC_URL") {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            bail!("KEYHOLD_PUBLIC_URL must start with https:// (or http:// for local use)");
        }
        s.public_url = url;
    }
    if let Ok(m) = std::env::var("KEYHOLD_BREAK_GLASS_MINUTES") {
        let m: i64 = m
            .parse()
            .ok()
            .filter(|m| (1..=24 * 60).contains(m))
            .context(
                "KEYHOLD_BREAK_GLASS_MINUTES must be a whole number of minutes from 1 to 1440",
            )?;
        s.break_glass_duration = time::Duration::minutes(m);
    }
    let mut tuning = keyhold_domain::SledTuning::default();
    if let Some(mb) = env_number("KEYHOLD_SLED_CACHE_MB", 16..=1_048_576)? {
        tuning.cache_bytes = mb * 1024 * 1024;
    }
    s.store = keyhold_domain::StoreBackend::Sled(tuning);
    if let Some(n) = env_number("KEYHOLD_HASHING_CONCURRENCY", 1..=1024)? {
        s.hashing_concurrency = usize::try_from(n).context("KEYHOLD_HASHING_CONCURRENCY")?;
    }
    if let Some(url) = database_url() {
        let mut options = keyhold_domain::PgOptions::new(url);
        if let Some(n) = env_number("KEYHOLD_DATABASE_READERS", 2..=256)? {
            options.readers = usize::try_from(n).context("KEYHOLD_DATABASE_READERS")?;
        }
        s.store = keyhold_domain::StoreBackend::Postgres(options);
    }
    if std::env::var("KEYHOLD_DANGER_FAST_HASH").as_deref() == Ok("1") {
        eprintln!(
            "WARNING: KEYHOLD_DANGER_FAST_HASH=1: passwords are hashed with test-only parameters"
        );
        s.danger_fast_hashing = true;
    }
    Ok(s)
}

/// A whole number from the environment variable `name`, within `range`.
fn env_number(name: &str, range: std::ops::RangeInclusive<u64>) -> Result<Option<u64>> {
    match std::env::var(name) {
        Err(_) => Ok(None),
        Ok(v) => v
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|n| range.contains(n))
            .map(Some)
            .with_context(|| {
                format!(
                    "{name} must be a whole number from {} to {}",
                    range.start(),
                    range.end()
                )
            }),
    }
}

/// Timeouts and the connection cap: `KEYHOLD_HEADER_TIMEOUT_SECS` (default
/// 10), `KEYHOLD_REQUEST_TIMEOUT_SECS` (60), `KEYHOLD_UPLOAD_TIMEOUT_SECS` (600),
/// `KEYHOLD_MAX_CONNECTIONS` (1024), `KEYHOLD_MAX_STREAMS` (32 per HTTP/2 connection).
fn server_limits() -> Result<ServerLimits> {
    let mut l = ServerLimits::default();
    if let Some(s) = env_number("KEYHOLD_HEADER_TIMEOUT_SECS", 1..=300)? {
        l.header_read_timeout = std::time::Duration::from_secs(s);
    }
    if let Some(s) = env_number("KEYHOLD_REQUEST_TIMEOUT_SECS", 1..=3600)? {
        l.request_timeout = std::time::Duration::from_secs(s);
    }
    if let Some(s) = env_number("KEYHOLD_UPLOAD_TIMEOUT_SECS", 1..=86_400)? {
        l.upload_timeout = std::time::Duration::from_secs(s);
    }
    if let Some(n) = env_number("KEYHOLD_MAX_CONNECTIONS", 1..=1_000_000)? {
        l.max_connections = usize::try_from(n).context("KEYHOLD_MAX_CONNECTIONS")?;
    }
    if let Some(n) = env_number("KEYHOLD_MAX_STREAMS", 1..=1000)? {
        l.max_streams_per_connection = u32::try_from(n).context("KEYHOLD_MAX_STREAMS")?;
    }
    Ok(l)
}

/// `KEYHOLD_METRICS_TOKEN`: when set, `GET /metrics` answers a scrape that
/// presents it as a bearer token (see OPERATIONS, Monitoring); unset, 404.
fn metrics_token() -> Result<Option<MetricsToken>> {
    match std::env::var("KEYHOLD_METRICS_TOKEN") {
        Err(std::env::VarError::NotPresent) => Ok(None),
        t => {
            let t = t.context("KEYHOLD_METRICS_TOKEN")?;
            Ok(Some(
                MetricsToken::new(&t).context("KEYHOLD_METRICS_TOKEN")?,
            ))
        }
    }
}

/// Opens the service with mail from the environment (`KEYHOLD_SMTP_URL`, else
/// the outbox folder `DATA/outbox`; see OPERATIONS).
/// Erasures listed in the keys folder's ledger but not reflected in the store
/// (a restored older backup) are finished before anything else.
fn open(data: &Path, keys: &Path) -> Result<Arc<Keyhold>> {
    Ok(open_reporting(data, keys)?.0)
}

/// [`open`], and the patients the erasure ledger erased again.
fn open_reporting(data: &Path, keys: &Path) -> Result<(Arc<Keyhold>, Vec<PatientId>)> {
    let loaded = load_keys(keys)?;
    let mailer = keyhold_mail::Mailer::from_env(data)?;
    tracing::info!(mail = %mailer.describe(), "mail");
    let settings = settings()?;
    let store = match &settings.store {
        keyhold_domain::StoreBackend::Sled(_) => format!("sled {}", data.join("store").display()),
        keyhold_domain::StoreBackend::Postgres(o) => o.describe(),
    };
    tracing::info!(%store, "store");
    let core = Keyhold::open(data, loaded, settings, Arc::new(SystemClock))?.with_mailer(mailer)?;
    // Another instance on the same database may rotate: its new master key
    // appears in the keys folder, and this process reads the folder again
    // when a data key does not unwrap.
    let folder = keys.to_path_buf();
    core.reload_keys_from(Box::new(move || Ok(load_keys(&folder)?.keyring)))?;
    let erased = operator::apply_ledger(&core, keys)?;
    Ok((core, erased))
}

/// `keyhold backup`: a consistent snapshot, from the running server if there
/// is one, streamed through age to `to` (written under a temporary name and
/// renamed once complete and synced, so `to` is never a partial backup).
fn backup(data: &Path, keys: &Path, to: &Path, recipient: &str) -> Result<()> {
    use std::io::{Read as _, Write as _};
    use std::os::unix::fs::OpenOptionsExt as _;
    // A bad recipient fails before anything is read or written.
    keyhold_domain::encrypt_stream_to_recipient(recipient, std::io::sink())
        .map_err(|_| anyhow::anyhow!("--recipient must be an age X25519 recipient (age1…)"))?;
    if to.exists() {
        bail!("{} exists; a backup never overwrites a file", to.display());
    }
    let mut partial = to.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial)
        .with_context(|| format!("creating {}", partial.display()))?;
    let written = (|| -> Result<(u64, &'static str)> {
        let mut w =
            keyhold_domain::encrypt_stream_to_recipient(recipient, std::io::BufWriter::new(file))?;
        let taken = match control::connect(data) {
            Some(server) => {
                let (reply, reader) = control::call(server, &control::Request::Snapshot)?;
                let copied = std::io::copy(&mut reader.take(reply.bytes), &mut w)?;
                if copied != reply.bytes {
                    bail!(
                        "the running server sent {copied} of {} snapshot bytes",
                        reply.bytes
                    );
                }
                (reply.rows, "from the running server")
            }
            None => {
                existing_store(data)?;
                let core = open(data, keys)?;
                (operator::snapshot(&core, &mut w)?, "from the store")
            }
        };
        let mut inner = w.finish()?;
        inner.flush()?;
        let file = inner
            .into_inner()
            .map_err(|e| anyhow::anyhow!("writing the backup: {}", e.error()))?;
        file.sync_all()?;
        Ok(taken)
    })();
    let (rows, source) = match written {
        Ok(t) => t,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    std::fs::rename(&partial, to).with_context(|| format!("renaming to {}", to.display()))?;
    if let Some(dir) = to.parent().filter(|p| !p.as_os_str().is_empty()) {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    let size = std::fs::metadata(to).map(|m| m.len()).unwrap_or(0);
    println!(
        "backup of {rows} rows ({source}) written to {} ({size} bytes), encrypted to {}",
        to.display(),
        recipient.trim()
    );
    println!(
        "it holds data keys only wrapped by your master keys: keep the keys folder's master keys \
         as long as you keep this backup"
    );
    Ok(())
}

/// `keyhold restore`: decrypts with the identity and rebuilds the store in a
/// new data folder; with `--keys`, applies the erasure ledger at once.
fn restore(from: &Path, identity: &Path, data: &Path, keys: Option<&Path>) -> Result<()> {
    if database_url().is_some() {
        bail!(
            "restore builds an embedded store in --data; unset KEYHOLD_DATABASE_URL \
             (a PostgreSQL database is restored with PostgreSQL's own tools: see OPERATIONS)"
        );
    }
    let text = std::fs::read_to_string(identity)
        .with_context(|| format!("reading {}", identity.display()))?;
    let identity =
        keyhold_domain::MasterKey::parse(&text).map_err(|e| anyhow::anyhow!("--identity: {e}"))?;
    let file = std::fs::File::open(from).with_context(|| format!("opening {}", from.display()))?;
    let reader = keyhold_domain::decrypt_stream(&identity, std::io::BufReader::new(file))
        .map_err(|_| anyhow::anyhow!("{} does not decrypt with that identity", from.display()))?;
    let rows = keyhold_domain::backup::restore_snapshot(std::io::BufReader::new(reader), data)?;
    println!("restored {rows} rows into {}", data.join("store").display());
    match keys {
        Some(keys) => {
            let (_, erased) = open_reporting(data, keys)?;
            println!(
                "erasure ledger applied: {} patient(s) erased since the backup were erased again",
                erased.len()
            );
        }
        None => println!(
            "`keyhold serve --data {} --keys DIR` applies the erasure ledger in DIR before it serves",
            data.display()
        ),
    }
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "keyhold=info,keyhold_web=info,warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("keyhold: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Init { keys } => {
            let created = init_keys(&keys)?;
            if created.is_empty() {
                println!(
                    "{} already holds every key; nothing created",
                    keys.display()
                );
            }
            for p in created {
                println!("created {}", p.display());
            }
        }
        Command::Serve {
            data,
            keys,
            bind,
            demo,
            checkpoints,
            checkpoint_every,
            checkpoint_interval,
        } => {
            let mut cfg = CheckpointConfig::new(
                checkpoints.unwrap_or_else(|| data.join("audit-checkpoints.txt")),
            );
            cfg.every_entries = checkpoint_every;
            cfg.every = std::time::Duration::from_secs(checkpoint_interval);
            serve(&data, &keys, bind, demo, cfg)?
        }
        Command::Demo {
            data,
            keys,
            patients,
            identities,
        } => {
            // Open first: it creates the data folder, so both paths can be
            // resolved for real (`..` and symlinks included) before comparing.
            let core = open(&data, &keys)?;
            ensure_outside(&identities, &data)?;
            let seeded = runtime()?.block_on(core.seed_patients(patients))?;
            let json = serde_json::to_vec_pretty(&serde_json::json!({ "patients": seeded }))?;
            std::fs::write(&identities, json)
                .with_context(|| format!("writing {}", identities.display()))?;
            println!(
                "seeded {} synthetic patients; plaintext values in {}",
                seeded.len(),
                identities.display()
            );
        }
        Command::Keys {
            command: KeysCommand::Rotate { keys, data },
        } => {
            let rotated = match control::connect(&data) {
                Some(server) => {
                    let (reply, _) = control::call(server, &control::Request::Rotate)?;
                    println!("rotated by the running server");
                    serde_json::from_str(&reply.message)
                        .context("the running server's rotation report is unreadable")?
                }
                None => {
                    existing_store(&data)?;
                    // Open with the current keys first: the canary proves they
                    // belong to this store before anything is added to the keys folder.
                    let core = open(&data, &keys)?;
                    operator::rotate(&core, &keys, true)?
                }
            };
            operator::print_rotated(&rotated);
        }
        Command::Backup {
            data,
            keys,
            to,
            recipient,
        } => backup(&data, &keys, &to, &recipient)?,
        Command::Restore {
            from,
            identity,
            data,
            keys,
        } => restore(&from, &identity, &data, keys.as_deref())?,
        Command::Patient {
            command:
                PatientCommand::Erase {
                    data,
                    keys,
                    nhs_number,
                    patient,
                },
        } => {
            let target = match (nhs_number, patient) {
                (Some(n), None) => ErasureTarget::NhsNumber(n),
                (None, Some(p)) => ErasureTarget::Patient(p),
                _ => bail!("give one of --nhs-number and --patient"),
            };
            let message = match control::connect(&data) {
                Some(server) => {
                    control::call(server, &control::Request::Erase { target })?
                        .0
                        .message
                }
                None => {
                    existing_store(&data)?;
                    let core = open(&data, &keys)?;
                    let (patient, report) = operator::erase(&core, &keys, &target)?;
                    operator::describe_erasure(patient, &report)
                }
            };
            println!("{message}");
        }
        Command::Audit {
            command:
                AuditCommand::Verify {
                    data,
                    keys,
                    checkpoints,
                },
        } => return audit_verify(&data, &keys, checkpoints.as_deref()),
        Command::Org {
            command:
                OrgCommand::Add {
                    data,
                    keys,
                    name,
                    admin_email,
                },
        } => {
            existing_store(&data)?;
            let core = open(&data, &keys)?;
            match runtime()?.block_on(core.create_organisation(&name, &admin_email)) {
                Ok((org, first)) => {
                    println!("created organisation {org}");
                    match first {
                        FirstAdministrator::Existing(_) => {
                            println!("{admin_email} already had an account and is its administrator")
                        }
                        FirstAdministrator::Invited { .. } => println!(
                            "invited {admin_email} to be its administrator: the link was mailed (single use, expires in 7 days)"
                        ),
                    }
                }
                Err(DomainError::Invalid(errors)) => {
                    for e in errors {
                        eprintln!("{}: {}", e.field, e.message);
                    }
                    return Ok(ExitCode::from(2));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Command::Identity {
            command:
                IdentityCommand::Verify {
                    data,
                    keys,
                    email,
                    level,
                    nhs_number,
                    note,
                },
        } => {
            existing_store(&data)?;
            let core = open(&data, &keys)?;
            let parsed = (|| {
                let email = keyhold_domain::Email::parse(&email)
                    .map_err(|e| DomainError::invalid("email", e.to_string()))?;
                let level = keyhold_domain::IdentityLevel::parse(&level)?;
                let nhs = match &nhs_number {
                    Some(n) => Some(
                        keyhold_domain::NhsNumber::parse(n)
                            .map_err(|e| DomainError::invalid("nhs-number", e.to_string()))?,
                    ),
                    None => None,
                };
                Ok::<_, DomainError>((email, level, nhs))
            })();
            let result = match parsed {
                Ok((email, level, nhs)) => runtime()?
                    .block_on(core.verify_identity(&email, level, nhs, &note))
                    .map(|r| (r, level)),
                Err(e) => Err(e),
            };
            match result {
                Ok(((account, patient), level)) => {
                    println!("account {account}: identity recorded as {level}");
                    match patient {
                        Some(p) => println!("linked to record {p}"),
                        None => println!("no record linked"),
                    }
                }
                Err(DomainError::Invalid(errors)) => {
                    for e in errors {
                        eprintln!("{}: {}", e.field, e.message);
                    }
                    return Ok(ExitCode::from(2));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Command::Oidc {
            command: OidcCommand::Jwks { key, keys },
        } => {
            let key = key.unwrap_or_else(|| keys.join(OIDC_CLIENT_KEY));
            let key = keyhold_oidc::ClientKey::load(&key)?;
            println!("{}", serde_json::to_string_pretty(&key.jwks())?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The client key's file name in the keys folder.
const OIDC_CLIENT_KEY: &str = "oidc-client.pem";

/// NHS login from the environment, if `KEYHOLD_OIDC_ISSUER` is set:
/// `KEYHOLD_OIDC_CLIENT_ID` (required), `KEYHOLD_OIDC_CLIENT_KEY` (default
/// KEYS/oidc-client.pem), `KEYHOLD_OIDC_REDIRECT_URL` (default
/// PUBLIC_URL/auth/nhs/callback), `KEYHOLD_OIDC_VTR` (a JSON array; default
/// NHS login's P9 vectors).
fn nhs_login(keys: &Path, public_url: &str) -> Result<Option<Arc<keyhold_oidc::RelyingParty>>> {
    let Ok(issuer) = std::env::var("KEYHOLD_OIDC_ISSUER") else {
        return Ok(None);
    };
    let client_id = std::env::var("KEYHOLD_OIDC_CLIENT_ID")
        .context("KEYHOLD_OIDC_ISSUER is set, so KEYHOLD_OIDC_CLIENT_ID must be too")?;
    let key = std::env::var_os("KEYHOLD_OIDC_CLIENT_KEY")
        .map(PathBuf::from)
        .unwrap_or_else(|| keys.join(OIDC_CLIENT_KEY));
    let redirect = std::env::var("KEYHOLD_OIDC_REDIRECT_URL")
        .unwrap_or_else(|_| format!("{}/auth/nhs/callback", public_url.trim_end_matches('/')));
    let vtr = std::env::var("KEYHOLD_OIDC_VTR").ok();
    let config =
        keyhold_oidc::OidcConfig::new(&issuer, &client_id, key, &redirect, vtr.as_deref())?;
    tracing::info!(issuer = %config.issuer.as_str(), client_id = %config.client_id, vtr = %config.vtr.to_json(), redirect = %config.redirect_url, "NHS login");
    Ok(Some(Arc::new(keyhold_oidc::RelyingParty::new(config)?)))
}

/// Refuses an output file inside `dir`, comparing canonical paths so neither
/// `..` nor a symlink can smuggle plaintext into the data folder.
fn ensure_outside(file: &Path, dir: &Path) -> Result<()> {
    let dir = std::fs::canonicalize(dir).with_context(|| format!("resolving {}", dir.display()))?;
    let parent = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let parent = std::fs::canonicalize(&parent)
        .with_context(|| format!("the folder for {} must exist", file.display()))?;
    let target = match std::fs::canonicalize(file) {
        Ok(existing) => existing,
        Err(_) => parent.join(file.file_name().unwrap_or_default()),
    };
    if target.starts_with(&dir) {
        bail!("--identities must be outside the data folder: it holds plaintext");
    }
    Ok(())
}

/// Commands that work on existing data refuse a folder with no store, rather
/// than creating an empty one (a mistyped --data must not look like success).
/// `KEYHOLD_DATABASE_URL`: when set, the records live in that PostgreSQL
/// database instead of `DATA/store`.
fn database_url() -> Option<String> {
    std::env::var("KEYHOLD_DATABASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
}

fn existing_store(data: &Path) -> Result<()> {
    // A database is created on first open, as the sled folder is; there is
    // no folder to check.
    if database_url().is_some() {
        return Ok(());
    }
    if !data.join("store").is_dir() {
        bail!(
            "no Keyhold store in {} (expected {}); check --data",
            data.display(),
            data.join("store").display()
        );
    }
    Ok(())
}

fn hex_head(h: &[u8; 32]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

/// `keyhold audit verify`: the chain, then every checkpoint. Exit 2 on any
/// break, naming what and where.
fn audit_verify(data: &Path, keys: &Path, checkpoints: Option<&Path>) -> Result<ExitCode> {
    let external = match checkpoints {
        Some(c) => Some(
            std::fs::read(c)
                .with_context(|| format!("reading the checkpoints file {}", c.display()))?,
        ),
        None => None,
    };
    existing_store(data)?;
    let public_key = load_keys(keys)?.audit.public_key();
    let store = keyhold_domain::open_backend(data, &settings()?.store)?;
    let report = match verify_checkpoints(store.as_ref(), &public_key, external.as_deref())? {
        Ok(report) => report,
        Err(AuditBreak::Chain(br)) => {
            eprintln!("AUDIT CHAIN BROKEN: {br}");
            return Ok(ExitCode::from(2));
        }
        Err(AuditBreak::Checkpoints(failures)) => {
            eprintln!(
                "AUDIT CHECKPOINTS BROKEN: {} signed checkpoint(s) do not match the audit log \
                 ({} entries, whole as a chain):",
                failures.len(),
                keyhold_domain::checkpoint::chain_size(store.as_ref()).unwrap_or(0)
            );
            const SHOWN: usize = 20;
            for f in failures.iter().take(SHOWN) {
                eprintln!("  {}", describe_failure(f, checkpoints));
            }
            if failures.len() > SHOWN {
                eprintln!("  … and {} more", failures.len() - SHOWN);
            }
            return Ok(ExitCode::from(2));
        }
    };
    println!(
        "audit chain intact: {} entries, head {}",
        report.entries,
        hex_head(&report.head)
    );
    let verified = report.in_store + report.in_file;
    match report.latest {
        Some(latest) => {
            let file = match checkpoints {
                Some(c) => format!(", {} in {}", report.in_file, c.display()),
                None => String::new(),
            };
            println!(
                "{verified} signed checkpoints verified ({} in the store{file}); latest covers {latest} entries, {} added since",
                report.in_store,
                report.entries.saturating_sub(latest)
            );
        }
        None => println!("no signed checkpoints yet: `keyhold serve` writes them"),
    }
    if let (Some(c), 0) = (checkpoints, report.in_file) {
        eprintln!(
            "note: {} holds no checkpoints: is it the file `serve --checkpoints` writes?",
            c.display()
        );
    }
    if checkpoints.is_none() {
        eprintln!(
            "note: no --checkpoints file given: a tail cut together with the store's own \
             checkpoints would not show; pass the file `serve` writes (or its off-host copy)"
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn describe_failure(f: &CheckpointFailure, file: Option<&Path>) -> String {
    match (&f.at, file) {
        (Source::File { line }, Some(path)) => {
            format!("{}, line {line}: {}", path.display(), f.problem)
        }
        _ => f.to_string(),
    }
}

fn serve(
    data: &Path,
    keys: &Path,
    bind: SocketAddr,
    demo: bool,
    checkpoints: CheckpointConfig,
) -> Result<()> {
    // A bad setting fails before anything is opened or seeded.
    let limits = server_limits()?;
    let metrics_token = metrics_token()?;
    if demo {
        for p in init_keys(keys)? {
            println!("created key file {}", p.display());
        }
    }
    let core = open(data, keys)?;
    checkpoint_file_usable(&checkpoints.file, data)?;
    let listener = std::net::TcpListener::bind(bind).with_context(|| format!("binding {bind}"))?;
    let addr = listener.local_addr()?;
    // Mailed links need an address; without KEYHOLD_PUBLIC_URL, the one we
    // listen on (right for local use; set the variable behind a proxy).
    let core = if std::env::var_os("KEYHOLD_PUBLIC_URL").is_none() {
        core.with_public_url(format!("http://{addr}"))?
    } else {
        core
    };
    // Without it the server still serves; only the operator commands need it
    // stopped (a data path too long for a socket, say).
    let control = match control::listen(core.clone(), data, keys) {
        Ok(path) => Some(path),
        Err(e) => {
            tracing::warn!(
                "no control socket ({e:#}): backup, key rotation and erasure will need the server stopped"
            );
            None
        }
    };
    let rt = runtime()?;
    rt.block_on(async move {
        let indexed = core.index_grants_by_org().await?;
        if indexed > 0 {
            tracing::info!(indexed, "indexed organisation grants for person search");
        }
        let accounts = if demo && core.is_empty()? {
            Some(core.seed_demo().await?)
        } else {
            None
        };
        let state = AppState::new(
            core.clone(),
            WebConfig {
                secure_cookies: std::env::var("KEYHOLD_SECURE_COOKIES").as_deref() == Ok("1"),
                nhs_login: nhs_login(keys, &core.settings().public_url)?,
                limits,
                metrics_token,
            },
        )?;
        let app = Application::from_std(state, listener).with_context(|| format!("listening on {addr}"))?;
        println!("keyhold listening on http://{addr}");
        if demo {
            match accounts {
                Some(accounts) => {
                    println!("demo data seeded (synthetic). Sign in with:");
                    for a in accounts {
                        println!("  {}  password: {}  ({})", a.email, a.password, a.who);
                    }
                    use keyhold_domain::demo::{
                        DEMO_DECEASED_BORN, DEMO_DECEASED_NAME, DEMO_DECEASED_NHS_NUMBER,
                    };
                    let (d, m, y) = DEMO_DECEASED_BORN;
                    println!(
                        "  for an executor's request: {} {}, NHS number {}, born {d} {m} {y}, died recently (registered at Riverside)",
                        DEMO_DECEASED_NAME.0, DEMO_DECEASED_NAME.1, DEMO_DECEASED_NHS_NUMBER
                    );
                }
                None => {
                    use keyhold_domain::demo::{DEMO_EMAILS, DEMO_PASSWORD, DEMO_PATIENT};
                    println!(
                        "demo: the data folder already holds data; sign in with {DEMO_PATIENT} / {DEMO_PASSWORD}"
                    );
                    let others: Vec<&str> =
                        DEMO_EMAILS.into_iter().filter(|e| *e != DEMO_PATIENT).collect();
                    println!(
                        "demo: if --demo seeded it, these demo sign-ins exist too (same password): {}",
                        others.join(", ")
                    );
                }
            }
        }
        use std::io::Write;
        let _ = std::io::stdout().flush();
        tracing::info!(
            file = %checkpoints.file.display(),
            every_entries = checkpoints.every_entries,
            every_seconds = checkpoints.every.as_secs(),
            "signing audit checkpoints"
        );
        let (stop_checkpoints, stopped) = tokio::sync::oneshot::channel::<()>();
        let checkpointer = tokio::spawn(run_checkpointer(core.clone(), checkpoints, async {
            let _ = stopped.await;
        }));
        let housekeeping = tokio::spawn(run_housekeeping(core.clone()));
        let served = app.run(shutdown_signal()).await;
        housekeeping.abort();
        // Requests are finished: sign the final state before the store closes.
        let _ = stop_checkpoints.send(());
        if let Err(e) = checkpointer.await {
            tracing::error!("the audit checkpointer failed: {e}");
        }
        if let Some(path) = &control {
            let _ = std::fs::remove_file(path);
        }
        served?;
        tracing::info!("stopped");
        Ok::<(), anyhow::Error>(())
    })
}

/// Purges access-request disclosures whose month is over, at start and
/// every ten minutes after (each instance may run it: the purge of one
/// request is one conditional write, so two instances cannot both do it).
async fn run_housekeeping(core: std::sync::Arc<keyhold_domain::Keyhold>) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(600));
    loop {
        every.tick().await;
        match core.purge_expired_disclosures().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "expired access-request disclosures purged"),
            Err(e) => tracing::warn!(error = %e, "purging expired disclosures failed; will retry"),
        }
    }
}

/// The checkpoints file's folder must exist, and the file must not be inside
/// the store's own folder (sled owns it; and the file is meant to outlive it).
fn checkpoint_file_usable(file: &Path, data: &Path) -> Result<()> {
    let parent = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let parent = std::fs::canonicalize(&parent).with_context(|| {
        format!(
            "the folder for the checkpoints file {} must exist",
            file.display()
        )
    })?;
    if database_url().is_some() {
        // The records are in the database; no store folder to keep out of.
        return Ok(());
    }
    let store = std::fs::canonicalize(data.join("store"))
        .with_context(|| format!("resolving {}", data.join("store").display()))?;
    if parent.starts_with(&store) {
        bail!(
            "--checkpoints must be outside the store folder {}",
            store.display()
        );
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
