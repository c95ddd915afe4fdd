//! Crash loop (kill -9): the real server is killed with SIGKILL at a random
//! moment while several clients write to it (record entries, document
//! uploads, sharing and stopping sharing). After every kill, `keyhold audit
//! verify` must pass on the store exactly as the kill left it; then the server
//! is started again on the same folders and the record owners check, over
//! HTTP, that every write a client saw acknowledged is there exactly as sent.
//! A write whose answer never came may be there or not, but never half: every
//! entry listed opens with the text sent, every document listed downloads with
//! the bytes sent. What such a write turned out to be is then fixed: it must
//! stay so in every later round.
//!
//! `KEYHOLD_CRASH_ROUNDS` (default 4) sets the rounds; `KEYHOLD_CRASH_SEED`
//! the random choices (printed at the start, so a failure can be replayed).
//! The seed fixes what is written and when the kill comes; which requests the
//! kill catches is still up to the scheduler. See docs/RELIABILITY.md.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use reqwest::header::LOCATION;
use reqwest::StatusCode;
use time::Date;

use crate::common::{hidden_input, keyhold, run, runtime, Run, LIMIT};

const PASSWORD: &str = "keyhold-demo-2026";
const PATIENT: &str = "patient@demo.keyhold.test";
const SENSITIVE: &str = "sensitive@demo.keyhold.test";
const CARER: &str = "carer@demo.keyhold.test";
const GP: &str = "gp@demo.keyhold.test";
const DOCTOR: &str = "doctor@demo.keyhold.test";
const GP_ADMIN: &str = "gp-admin@demo.keyhold.test";
/// The records the clients write to (each by its owner), by index.
const OWNERS: [&str; 2] = [PATIENT, SENSITIVE];

/// Everything the loop writes starts with one of these, so it can tell its
/// own items from the seeded ones.
const ENTRY_PREFIX: &str = "Crash loop entry ";
const DOC_PREFIX: &str = "Crash loop document ";
const GRANT_PREFIX: &str = "Crash loop sharing ";

/// Concurrent requests while checking (downloads and entry pages).
const CHECK_WIDTH: usize = 8;

const WORDS: &[&str] = &[
    "lantern", "harbour", "meadow", "copper", "thimble", "orchard", "velvet", "compass", "saffron",
    "quill", "pebble", "juniper", "blood", "pressure", "review", "tablet", "morning", "inhaler",
    "clinic", "follow", "up", "weeks", "dose", "rash", "sleep", "walk", "ankle", "x-ray",
];

// --- the server ---------------------------------------------------------------

const LISTENING: &str = "keyhold listening on http://";

/// `keyhold serve --demo` on a free loopback port. Dropping it kills the
/// process, so no server outlives the test, whether it passes or fails.
struct Server {
    child: Option<Child>,
    addr: SocketAddr,
    lines: Receiver<String>,
    seen: Vec<String>,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `keyhold serve --data D --keys K --bind 127.0.0.1:0 --demo` (port 0:
    /// the kernel picks a free port) and waits for its listening line.
    fn start(data: &Path, keys: &Path) -> Server {
        let mut cmd = keyhold();
        cmd.env_remove("KEYHOLD_SMTP_URL")
            .env_remove("KEYHOLD_PUBLIC_URL")
            .arg("serve")
            .arg("--data")
            .arg(data)
            .arg("--keys")
            .arg(keys)
            .args(["--bind", "127.0.0.1:0", "--demo"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start keyhold serve");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut stderr_pipe = child.stderr.take().expect("stderr is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Only the end of stderr is kept: it is for failure messages.
        let stderr = Arc::new(Mutex::new(String::new()));
        let keep = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = stderr_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut s = keep.lock().unwrap();
                s.push_str(&String::from_utf8_lossy(&buf[..n]));
                if s.len() > 64 * 1024 {
                    let cut = s.len() - 32 * 1024;
                    let cut = (cut..s.len()).find(|i| s.is_char_boundary(*i)).unwrap();
                    s.drain(..cut);
                }
            }
        });
        let mut server = Server {
            child: Some(child),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            lines: rx,
            seen: Vec::new(),
            stderr,
        };
        let line = server.wait_for_line("the listening line", |l| l.starts_with(LISTENING));
        server.addr = line[LISTENING.len()..]
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("bad listening line {line:?}: {e}"));
        server
    }

    fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn stderr_tail(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The first stdout line that satisfies `pred`, waiting for it if need be.
    fn wait_for_line(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        if let Some(l) = self.seen.iter().find(|l| pred(l)) {
            return l.clone();
        }
        let deadline = Instant::now() + LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(e @ (RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected)) => panic!(
                    "no stdout line with {what} ({e:?}); stdout: {:?}\nstderr:\n{}",
                    self.seen,
                    self.stderr_tail()
                ),
            }
        }
    }

    /// SIGKILL, and proof that it was one: the exit status names signal 9.
    fn kill9(&mut self) {
        let mut child = self.child.take().expect("the server is running");
        child.kill().expect("kill the server");
        let status = child.wait().expect("wait for the killed server");
        assert_eq!(
            status.signal(),
            Some(9),
            "the server should have died of SIGKILL, but ended with {status}"
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// --- HTML and HTTP helpers ----------------------------------------------------

fn unescape(s: &str) -> String {
    s.replace("&#x2F;", "/")
        .replace("&#47;", "/")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The text between `start` (after it) and the next `end`.
fn between<'a>(html: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = html.find(start)? + start.len();
    let len = html[from..].find(end)?;
    Some(&html[from..from + len])
}

/// `(id, link text)` of every `<a href="PREFIX{id}">` in the page, in order.
fn links(html: &str, prefix: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for part in html.split("<a href=\"").skip(1) {
        let Some(end) = part.find('"') else { continue };
        let href = unescape(&part[..end]);
        let Some(id) = href.strip_prefix(prefix) else {
            continue;
        };
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            continue;
        }
        if id == "new" {
            continue;
        }
        let rest = &part[end..];
        let Some(text) = between(rest, ">", "</a>") else {
            continue;
        };
        out.push((id.to_string(), unescape(text.trim())));
    }
    out
}

/// A client for one person: its own cookies, no redirects followed.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        // A guard against a hung test, not a measure of speed.
        .timeout(Duration::from_secs(300))
        .build()
        .unwrap()
}

/// A signed-in person: the client holding the session and the CSRF token
/// their forms carry (the token is bound to the session).
#[derive(Clone)]
struct Session {
    http: reqwest::Client,
    base: String,
    csrf: String,
}

async fn get(http: &reqwest::Client, url: &str) -> Result<(StatusCode, Vec<u8>), String> {
    let resp = http
        .get(url)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = resp.status();
    let body = resp
        .bytes()
        .await
        .map_err(|e| format!("GET {url}: reading the body: {e}"))?;
    Ok((status, body.to_vec()))
}

/// `GET url`, insisting on 200; the page's text.
async fn page(http: &reqwest::Client, url: &str) -> Result<String, String> {
    let (status, body) = get(http, url).await?;
    let text = String::from_utf8_lossy(&body).into_owned();
    if status != StatusCode::OK {
        return Err(format!(
            "GET {url} gave {status}, expected 200:\n{}",
            excerpt(&text)
        ));
    }
    Ok(text)
}

fn excerpt(s: &str) -> String {
    s.chars().take(2000).collect()
}

async fn sign_in(base: &str, email: &str) -> Result<Session, String> {
    let http = client();
    let form = page(&http, &format!("{base}/signin")).await?;
    let token = hidden_input(&form, "csrf_token")?;
    let resp = http
        .post(format!("{base}/signin"))
        .form(&[
            ("email", email),
            ("password", PASSWORD),
            ("csrf_token", token.as_str()),
        ])
        .send()
        .await
        .map_err(|e| format!("signing in as {email}: {e}"))?;
    if resp.status() != StatusCode::SEE_OTHER {
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        return Err(format!(
            "signing in as {email} gave {status}:\n{}",
            excerpt(&body)
        ));
    }
    // The account page answers 200 only when signed in, and carries the
    // token for this session.
    let account = page(&http, &format!("{base}/account")).await?;
    let csrf = hidden_input(&account, "csrf_token")?;
    Ok(Session {
        http,
        base: base.to_string(),
        csrf,
    })
}

// --- what the clients write -----------------------------------------------------

#[derive(Clone, Debug)]
enum Grantee {
    Organisation { id: String, name: String },
    Person { email: String },
}

impl Grantee {
    /// How the sharing page names them.
    fn label(&self) -> &str {
        match self {
            Grantee::Organisation { name, .. } => name,
            Grantee::Person { email } => email,
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    Entry {
        owner: usize,
        kind: &'static str,
        category: &'static str,
        date: Date,
        title: String,
        details: String,
    },
    Document {
        owner: usize,
        title: String,
        filename: String,
        mime: &'static str,
        bytes: Arc<Vec<u8>>,
    },
    Share {
        purpose: String,
        to: Grantee,
        last_day: Date,
        contribute: bool,
    },
    Stop {
        purpose: String,
        id: String,
    },
}

impl Op {
    /// Index into the per-kind figures.
    fn kind(&self) -> usize {
        match self {
            Op::Entry { .. } => ENTRY,
            Op::Document { .. } => DOCUMENT,
            Op::Share { .. } => SHARE,
            Op::Stop { .. } => STOP,
        }
    }
}

const ENTRY: usize = 0;
const DOCUMENT: usize = 1;
const SHARE: usize = 2;
const STOP: usize = 3;
const KINDS: [&str; 4] = ["entries", "documents", "grants", "revocations"];

/// How a write ended, as the client saw it.
#[derive(Clone, Debug)]
enum Fate {
    /// The success answer came (for an entry, with its id).
    Acked(Option<String>),
    /// Sent, but no answer: the server died first. May or may not be stored.
    Unknown,
    /// The connection was refused: the server never saw it.
    NotDelivered,
}

#[derive(Debug)]
struct Sent {
    op: Op,
    fate: Fate,
}

/// Why a write did not succeed.
enum Failure {
    Connect,
    Lost,
    /// An HTTP answer other than the expected redirect: a real error.
    Refused(String),
}

fn failure(e: reqwest::Error) -> Failure {
    if e.is_connect() {
        Failure::Connect
    } else {
        Failure::Lost
    }
}

/// Sends one write; `Ok` only for the redirect the handler answers on success.
async fn perform(s: &Session, op: &Op) -> Result<Option<String>, Failure> {
    let base = &s.base;
    let csrf = s.csrf.as_str();
    let (req, expect): (reqwest::RequestBuilder, String) = match op {
        Op::Entry {
            kind,
            category,
            date,
            title,
            details,
            ..
        } => (
            s.http.post(format!("{base}/record/entries")).form(&[
                ("csrf_token", csrf),
                ("kind", kind),
                ("title", title.as_str()),
                ("date-day", &date.day().to_string()),
                ("date-month", &u8::from(date.month()).to_string()),
                ("date-year", &date.year().to_string()),
                ("category", category),
                ("details", details.as_str()),
            ]),
            "/record/entries/".to_string(),
        ),
        Op::Document {
            title,
            filename,
            mime,
            bytes,
            ..
        } => {
            let file = reqwest::multipart::Part::bytes(bytes.as_ref().clone())
                .file_name(filename.clone())
                .mime_str(mime)
                .unwrap();
            // The token first: the handler refuses anything before it.
            let form = reqwest::multipart::Form::new()
                .text("csrf_token", csrf.to_string())
                .text("title", title.clone())
                .text("kind", "")
                .text("category", "general")
                .part("file", file);
            (
                s.http
                    .post(format!("{base}/record/documents"))
                    .multipart(form),
                "/record/documents?uploaded=1".to_string(),
            )
        }
        Op::Share {
            purpose,
            to,
            last_day,
            contribute,
        } => {
            let mut form: Vec<(&str, String)> = vec![
                ("csrf_token", csrf.to_string()),
                ("may-read", "on".into()),
                ("category-general", "on".into()),
                ("category-social_care", "on".into()),
                ("ends-day", last_day.day().to_string()),
                ("ends-month", u8::from(last_day.month()).to_string()),
                ("ends-year", last_day.year().to_string()),
                ("purpose", purpose.clone()),
            ];
            if *contribute {
                form.push(("may-contribute", "on".into()));
            }
            let done = match to {
                Grantee::Organisation { id, .. } => {
                    form.push(("grantee-kind", "organisation".into()));
                    form.push(("organisation", id.clone()));
                    "shared-organisation"
                }
                Grantee::Person { email } => {
                    form.push(("grantee-kind", "person".into()));
                    form.push(("email", email.clone()));
                    "shared-person"
                }
            };
            (
                s.http.post(format!("{base}/record/sharing")).form(&form),
                format!("/record/sharing?done={done}"),
            )
        }
        Op::Stop { id, .. } => (
            s.http
                .post(format!("{base}/record/sharing/{id}/stop"))
                .form(&[("csrf_token", csrf)]),
            "/record/sharing?done=stopped".to_string(),
        ),
    };
    let resp = req.send().await.map_err(failure)?;
    let status = resp.status();
    let location = resp
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if status == StatusCode::SEE_OTHER {
        if let Op::Entry { .. } = op {
            if let Some(id) = location.strip_prefix(&expect) {
                if !id.is_empty() {
                    return Ok(Some(id.to_string()));
                }
            }
        } else if location == expect {
            return Ok(None);
        }
    }
    let body = resp.text().await.unwrap_or_default();
    Err(Failure::Refused(format!(
        "{op:?} was answered {status} (Location {location:?}), expected 303 to {expect}:\n{}",
        excerpt(&body)
    )))
}

/// What one writer does, over and over until the kill.
#[derive(Clone, Copy, Debug)]
enum Mix {
    Entries(usize),
    Documents(usize),
    EntriesAndDocuments(usize),
    Sharing,
}

/// The writers: who signs in and what they write. Two on each kind of write
/// to the demo patient's record, two on the sensitive patient's.
const WRITERS: [Mix; 6] = [
    Mix::Entries(0),
    Mix::Documents(0),
    Mix::Sharing,
    Mix::EntriesAndDocuments(0),
    Mix::Entries(1),
    Mix::Documents(1),
];

impl Mix {
    fn owner(self) -> usize {
        match self {
            Mix::Entries(o) | Mix::Documents(o) | Mix::EntriesAndDocuments(o) => o,
            Mix::Sharing => 0,
        }
    }
}

/// What the writers share during a round.
struct Shared {
    killed: AtomicBool,
    in_flight: AtomicUsize,
    organisations: Vec<(String, String)>,
    today: Date,
}

/// Between `lo` and `hi` (exclusive) random words.
fn words(rng: &mut StdRng, lo: usize, hi: usize) -> String {
    let n = rng.gen_range(lo..hi);
    (0..n)
        .map(|_| *WORDS.choose(rng).unwrap())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A valid PNG (RGB, no compression: stored deflate blocks) of random pixels.
fn png(rng: &mut StdRng, w: u32, h: u32) -> Vec<u8> {
    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&u32::try_from(data.len()).unwrap().to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32(&body).to_be_bytes());
    }
    // Each row: filter type 0 (none), then random RGB bytes.
    let row = 1 + 3 * w as usize;
    let mut raw = vec![0u8; row * h as usize];
    for (i, b) in raw.iter_mut().enumerate() {
        if i % row != 0 {
            *b = rng.gen();
        }
    }
    let mut zlib = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65_535).collect();
    for (i, block) in blocks.iter().enumerate() {
        zlib.push(u8::from(i + 1 == blocks.len()));
        let len = u16::try_from(block.len()).unwrap();
        zlib.extend_from_slice(&len.to_le_bytes());
        zlib.extend_from_slice(&(!len).to_le_bytes());
        zlib.extend_from_slice(block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &x in &raw {
        a = (a + u32::from(x)) % 65_521;
        b = (b + a) % 65_521;
    }
    zlib.extend_from_slice(&((b << 16) | a).to_be_bytes());
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &zlib);
    chunk(&mut out, b"IEND", &[]);
    out
}

/// The next write of a writer. Sizes vary so that some documents span
/// several of the store's 64 KiB chunks (a half-written one would show).
fn next_op(
    rng: &mut StdRng,
    mix: Mix,
    tag: &str,
    shared: &Shared,
    stops: &mut Vec<(String, String)>,
) -> Op {
    let entry = |rng: &mut StdRng, owner: usize| {
        let details = match rng.gen_range(0..10) {
            0 => String::new(),
            1..=6 => words(rng, 1, 40),
            _ => {
                let lines = rng.gen_range(20..300);
                (0..lines)
                    .map(|_| words(rng, 1, 12))
                    .collect::<Vec<_>>()
                    .join("\n")
            }
        };
        Op::Entry {
            owner,
            kind: ["note", "condition", "medication", "allergy"]
                .choose(rng)
                .unwrap(),
            category: ["general", "mental_health", "social_care", "sexual_health"]
                .choose(rng)
                .unwrap(),
            date: shared.today - time::Duration::days(rng.gen_range(0..1500)),
            title: format!("{ENTRY_PREFIX}{tag} {}", words(rng, 1, 5)),
            details,
        }
    };
    let document = |rng: &mut StdRng, owner: usize| {
        let title = format!("{DOC_PREFIX}{tag} {}", words(rng, 1, 4));
        let large = rng.gen_bool(0.2);
        if rng.gen_bool(0.6) {
            let n = if large {
                rng.gen_range(1500..3000)
            } else {
                rng.gen_range(1..30)
            };
            let mut lines = vec![format!("Keyhold crash loop {tag}")];
            lines.extend((0..n).map(|_| words(rng, 3, 9)));
            let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
            Op::Document {
                owner,
                title,
                filename: format!("crash-{tag}.pdf"),
                mime: "application/pdf",
                bytes: Arc::new(keyhold_domain::demo::simple_pdf(&lines)),
            }
        } else {
            let side = if large {
                rng.gen_range(140..200)
            } else {
                rng.gen_range(1..24)
            };
            Op::Document {
                owner,
                title,
                filename: format!("crash-{tag}.png"),
                mime: "image/png",
                bytes: Arc::new(png(rng, side, side)),
            }
        }
    };
    match mix {
        Mix::Entries(owner) => entry(rng, owner),
        Mix::Documents(owner) => document(rng, owner),
        Mix::EntriesAndDocuments(owner) => {
            if rng.gen_bool(0.5) {
                entry(rng, owner)
            } else {
                document(rng, owner)
            }
        }
        Mix::Sharing => {
            if !stops.is_empty() && rng.gen_bool(0.35) {
                let (purpose, id) = stops.swap_remove(rng.gen_range(0..stops.len()));
                return Op::Stop { purpose, id };
            }
            let to = if rng.gen_bool(0.6) {
                let (id, name) = shared.organisations.choose(rng).unwrap().clone();
                Grantee::Organisation { id, name }
            } else if rng.gen_bool(0.5) {
                Grantee::Person {
                    email: CARER.to_string(),
                }
            } else {
                Grantee::Person {
                    email: format!("friend-{tag}@example.test"),
                }
            };
            Op::Share {
                purpose: format!("{GRANT_PREFIX}{tag} {}", words(rng, 1, 6)),
                to,
                last_day: shared.today + time::Duration::days(rng.gen_range(30..300)),
                contribute: rng.gen_bool(0.3),
            }
        }
    }
}

/// One writer: writes until the server dies. Returns every write it sent and
/// how each ended; an HTTP error answer fails the test (it is not a crash).
async fn writer(
    session: Session,
    mix: Mix,
    mut rng: StdRng,
    name: String,
    shared: Arc<Shared>,
    mut stops: Vec<(String, String)>,
) -> Result<Vec<Sent>, String> {
    let mut sent = Vec::new();
    let mut n = 0;
    while !shared.killed.load(Ordering::SeqCst) {
        n += 1;
        let op = next_op(&mut rng, mix, &format!("{name}n{n}"), &shared, &mut stops);
        shared.in_flight.fetch_add(1, Ordering::SeqCst);
        let result = perform(&session, &op).await;
        shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        match result {
            Ok(id) => sent.push(Sent {
                op,
                fate: Fate::Acked(id),
            }),
            Err(Failure::Connect) => {
                sent.push(Sent {
                    op,
                    fate: Fate::NotDelivered,
                });
                break;
            }
            Err(Failure::Lost) => {
                sent.push(Sent {
                    op,
                    fate: Fate::Unknown,
                });
                break;
            }
            Err(Failure::Refused(e)) => {
                if shared.killed.load(Ordering::SeqCst) {
                    // Cannot happen (a dead server answers nothing), but say
                    // so plainly if it does.
                    return Err(format!("an error answer around the kill: {e}"));
                }
                return Err(e);
            }
        }
    }
    Ok(sent)
}

// --- what must be there ------------------------------------------------------

/// What is known of a write: stored, not stored, or not known yet (no answer
/// came; the first check after the restart settles it for good).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Known {
    Present,
    Absent,
    Unknown,
}

#[derive(Clone, Debug)]
struct EntryWant {
    owner: usize,
    details: String,
    id: Option<String>,
    known: Known,
    acked: bool,
    round: usize,
}

#[derive(Clone, Debug)]
struct DocWant {
    owner: usize,
    sha: [u8; 32],
    len: usize,
    known: Known,
    acked: bool,
    round: usize,
}

#[derive(Clone, Debug)]
struct GrantWant {
    to: Grantee,
    known: Known,
    acked: bool,
    round: usize,
    /// The id, once seen live on the sharing page.
    id: Option<String>,
    /// Whether it was stopped: Present = stopped.
    stopped: Known,
    stop_acked: bool,
    /// A stop is on its way this round (not offered again).
    stopping: bool,
}

#[derive(Clone, Default)]
struct Model {
    /// Ours, by title (unique).
    entries: BTreeMap<String, EntryWant>,
    /// Ours, by title (unique).
    docs: BTreeMap<String, DocWant>,
    /// Ours, by purpose (unique).
    grants: BTreeMap<String, GrantWant>,
    /// Seeded, per owner: entry id → title.
    seeded_entries: [BTreeMap<String, String>; 2],
    /// Seeded, per owner: document id → (title, SHA-256).
    seeded_docs: [BTreeMap<String, (String, [u8; 32])>; 2],
    /// Seeded grants of the demo patient: purpose → FHIR status.
    seeded_grants: BTreeMap<String, String>,
    patient_ids: [String; 2],
}

impl Model {
    /// Takes in what the writers saw this round.
    fn record(&mut self, round: usize, sent: Vec<Sent>, stats: &mut Stats) {
        for Sent { op, fate } in sent {
            let kind = op.kind();
            let (known, acked, id) = match &fate {
                Fate::Acked(id) => (Known::Present, true, id.clone()),
                Fate::Unknown => (Known::Unknown, false, None),
                Fate::NotDelivered => (Known::Absent, false, None),
            };
            match fate {
                Fate::Acked(_) => stats.acked[kind] += 1,
                Fate::Unknown => stats.unknown[kind] += 1,
                Fate::NotDelivered => stats.not_delivered += 1,
            }
            match op {
                Op::Entry {
                    owner,
                    title,
                    details,
                    ..
                } => {
                    let old = self.entries.insert(
                        title.clone(),
                        EntryWant {
                            owner,
                            details,
                            id,
                            known,
                            acked,
                            round,
                        },
                    );
                    assert!(old.is_none(), "entry title {title:?} used twice");
                }
                Op::Document {
                    owner,
                    title,
                    bytes,
                    ..
                } => {
                    let old = self.docs.insert(
                        title.clone(),
                        DocWant {
                            owner,
                            sha: keyhold_crypto::sha256(&bytes),
                            len: bytes.len(),
                            known,
                            acked,
                            round,
                        },
                    );
                    assert!(old.is_none(), "document title {title:?} used twice");
                }
                Op::Share { purpose, to, .. } => {
                    let old = self.grants.insert(
                        purpose.clone(),
                        GrantWant {
                            to,
                            known,
                            acked,
                            round,
                            id: None,
                            stopped: Known::Absent,
                            stop_acked: false,
                            stopping: false,
                        },
                    );
                    assert!(old.is_none(), "grant purpose {purpose:?} used twice");
                }
                Op::Stop { purpose, .. } => {
                    let g = self
                        .grants
                        .get_mut(&purpose)
                        .expect("a stop of a known grant");
                    g.stopping = false;
                    match known {
                        Known::Present => {
                            g.stopped = Known::Present;
                            g.stop_acked = true;
                        }
                        Known::Unknown => g.stopped = Known::Unknown,
                        Known::Absent => {}
                    }
                }
            }
        }
        // Stops offered to a writer that never got to them.
        for g in self.grants.values_mut() {
            g.stopping = false;
        }
    }

    /// Our live grants with a known id: what the sharing writer may stop.
    fn stoppable(&self) -> Vec<(String, String)> {
        self.grants
            .iter()
            .filter(|(_, g)| g.known == Known::Present && g.stopped == Known::Absent && !g.stopping)
            .filter_map(|(p, g)| g.id.clone().map(|id| (p.clone(), id)))
            .collect()
    }
}

#[derive(Default)]
struct Stats {
    acked: [usize; 4],
    unknown: [usize; 4],
    unknown_present: [usize; 4],
    unknown_absent: [usize; 4],
    not_delivered: usize,
    kills: usize,
    restarts: usize,
    in_flight_at_kill: Vec<usize>,
    kill_after: Vec<Duration>,
    rounds: Vec<Duration>,
    write_phase: Duration,
    audit_verify: Duration,
    restart: Duration,
    check: Duration,
    /// What the last `audit verify` said of the chain.
    audit: String,
    entries_opened: usize,
    documents_downloaded: usize,
    bytes_downloaded: usize,
}

impl Stats {
    fn settle(&mut self, kind: usize, present: bool) {
        if present {
            self.unknown_present[kind] += 1;
        } else {
            self.unknown_absent[kind] += 1;
        }
    }
}

/// Whether a listed item of ours matches what is known of it; settles an
/// unknown one. `what` names it for messages.
fn settle(
    known: &mut Known,
    listed: bool,
    acked: bool,
    what: &str,
) -> Result<Option<bool>, String> {
    match (*known, listed) {
        (Known::Present, true) | (Known::Absent, false) => Ok(None),
        (Known::Present, false) => Err(format!(
            "LOST: {what} ({}) is not there after the restart",
            if acked {
                "acknowledged to the client"
            } else {
                "seen stored in an earlier round"
            }
        )),
        (Known::Absent, true) => Err(format!(
            "APPEARED: {what} is there, but was never delivered or was absent in an earlier round"
        )),
        (Known::Unknown, l) => {
            *known = if l { Known::Present } else { Known::Absent };
            Ok(Some(l))
        }
    }
}

/// GETs every URL, `CHECK_WIDTH` at a time, each answer through `f`.
async fn fetch_all<T: Send + 'static>(
    http: &reqwest::Client,
    urls: Vec<String>,
    f: impl Fn(&str, StatusCode, Vec<u8>) -> Result<T, String> + Send + Sync + 'static,
) -> Result<Vec<T>, String> {
    let f = Arc::new(f);
    let mut buckets: Vec<Vec<String>> = vec![Vec::new(); CHECK_WIDTH];
    for (i, u) in urls.into_iter().enumerate() {
        buckets[i % CHECK_WIDTH].push(u);
    }
    let mut set = tokio::task::JoinSet::new();
    for bucket in buckets {
        let http = http.clone();
        let f = f.clone();
        set.spawn(async move {
            let mut out = Vec::new();
            for url in bucket {
                let (status, body) = get(&http, &url).await?;
                out.push(f(&url, status, body)?);
            }
            Ok::<_, String>(out)
        });
    }
    let mut all = Vec::new();
    while let Some(done) = set.join_next().await {
        all.extend(done.map_err(|e| format!("a fetch task failed: {e}"))??);
    }
    Ok(all)
}

/// The title and details an entry page shows.
fn entry_page_text(html: &str) -> Result<(String, String), String> {
    let h1 = between(html, "<h1>", "</h1>").ok_or("the entry page has no heading")?;
    let title = h1.rsplit("</span>").next().unwrap_or("").trim();
    let row = html
        .split("<dt class=\"nhsuk-summary-list__key\">Details</dt>")
        .nth(1)
        .ok_or("the entry page has no Details row")?;
    let dd = between(row, "<dd", "</dd>").ok_or("the Details row has no value")?;
    let value = dd.split_once('>').map(|(_, v)| v).unwrap_or("");
    Ok((unescape(title), unescape(value)))
}

/// Checks one owner's entries and documents (and, for the demo patient, the
/// sharing); with `baseline`, records the seeded items instead.
async fn check_record(
    base: &str,
    owner: usize,
    model: &mut Model,
    stats: &mut Stats,
    baseline: bool,
) -> Result<(), String> {
    let s = sign_in(base, OWNERS[owner]).await?;
    let who = OWNERS[owner];

    // Entries: the overview lists them all.
    let overview = page(&s.http, &format!("{base}/record")).await?;
    if baseline {
        let id =
            between(&overview, "keyhold-banner__id\">", "<").ok_or("no record id in the banner")?;
        model.patient_ids[owner] = id.trim().to_string();
    }
    let listed = links(&overview, "/record/entries/");
    let ids: BTreeSet<&String> = listed.iter().map(|(id, _)| id).collect();
    if ids.len() != listed.len() {
        return Err(format!("{who}: an entry is listed twice on the overview"));
    }
    let mut ours: BTreeMap<String, String> = BTreeMap::new();
    let mut seeded: BTreeMap<String, String> = BTreeMap::new();
    for (id, title) in &listed {
        if title.starts_with(ENTRY_PREFIX) {
            if ours.insert(title.clone(), id.clone()).is_some() {
                return Err(format!("{who}: entry {title:?} is listed twice"));
            }
        } else {
            seeded.insert(id.clone(), title.clone());
        }
    }
    if baseline {
        if seeded.is_empty() {
            return Err(format!("{who}: the seeded record shows no entries"));
        }
        model.seeded_entries[owner] = seeded;
    } else if seeded != model.seeded_entries[owner] {
        return Err(format!(
            "{who}: the seeded entries changed: were {:?}, now {:?}",
            model.seeded_entries[owner], seeded
        ));
    }
    for (title, want) in model.entries.iter_mut().filter(|(_, w)| w.owner == owner) {
        let found = ours.get(title);
        let what = format!("{who}'s entry {title:?} (round {})", want.round);
        if let Some(present) = settle(&mut want.known, found.is_some(), want.acked, &what)? {
            stats.settle(ENTRY, present);
        }
        if let Some(id) = found {
            match &want.id {
                Some(known) if known != id => {
                    return Err(format!("{what}: listed as {id}, but was stored as {known}"))
                }
                _ => want.id = Some(id.clone()),
            }
        }
    }
    for title in ours.keys() {
        if model.entries.get(title).is_none_or(|w| w.owner != owner) {
            return Err(format!(
                "{who}: entry {title:?} is listed, but no client wrote it"
            ));
        }
    }
    // Every listed entry opens; ours show exactly what was sent.
    let expected: BTreeMap<String, (String, String)> = listed
        .iter()
        .map(|(id, title)| {
            let details = model
                .entries
                .get(title)
                .filter(|_| title.starts_with(ENTRY_PREFIX))
                .map(|w| w.details.clone());
            (
                format!("{base}/record/entries/{id}"),
                (title.clone(), details.unwrap_or_default()),
            )
        })
        .collect();
    let urls: Vec<String> = expected.keys().cloned().collect();
    let expected = Arc::new(expected);
    let want = expected.clone();
    let opened = fetch_all(&s.http, urls, move |url, status, body| {
        let html = String::from_utf8_lossy(&body);
        if status != StatusCode::OK {
            return Err(format!("GET {url} gave {status}:\n{}", excerpt(&html)));
        }
        let (title, details) = &want[url];
        let (shown_title, shown_details) = entry_page_text(&html)?;
        if &shown_title != title {
            return Err(format!(
                "CORRUPT: {url} shows title {shown_title:?}, expected {title:?}"
            ));
        }
        if title.starts_with(ENTRY_PREFIX) {
            let shown = if details.is_empty() {
                "None added"
            } else {
                details.as_str()
            };
            if shown_details != shown {
                return Err(format!(
                    "CORRUPT: {url} ({title:?}) shows details {:?}, expected {:?}",
                    excerpt(&shown_details),
                    excerpt(shown)
                ));
            }
        }
        Ok(())
    })
    .await
    .map_err(|e| format!("{who}: {e}"))?;
    stats.entries_opened += opened.len();

    // Documents: the list names them; each downloads whole.
    let list = page(&s.http, &format!("{base}/record/documents")).await?;
    let listed = links(&list, "/record/documents/");
    let ids: BTreeSet<&String> = listed.iter().map(|(id, _)| id).collect();
    if ids.len() != listed.len() {
        return Err(format!("{who}: a document is listed twice"));
    }
    let urls: Vec<String> = listed
        .iter()
        .map(|(id, _)| format!("{base}/record/documents/{id}"))
        .collect();
    let downloads = fetch_all(&s.http, urls, |url, status, body| {
        if status != StatusCode::OK {
            return Err(format!(
                "CORRUPT? GET {url} gave {status}:\n{}",
                excerpt(&String::from_utf8_lossy(&body))
            ));
        }
        Ok((url.to_string(), keyhold_crypto::sha256(&body), body.len()))
    })
    .await
    .map_err(|e| format!("{who}: {e} (a document that does not download whole is corrupt)"))?;
    let got: BTreeMap<String, ([u8; 32], usize)> = downloads
        .into_iter()
        .map(|(url, sha, len)| (url, (sha, len)))
        .collect();
    stats.documents_downloaded += got.len();
    stats.bytes_downloaded += got.values().map(|(_, n)| n).sum::<usize>();
    let mut ours: BTreeMap<String, ([u8; 32], usize)> = BTreeMap::new();
    let mut seeded = BTreeMap::new();
    for (id, title) in &listed {
        let content = got[&format!("{base}/record/documents/{id}")];
        if title.starts_with(DOC_PREFIX) {
            if ours.insert(title.clone(), content).is_some() {
                return Err(format!("{who}: document {title:?} is listed twice"));
            }
        } else {
            seeded.insert(id.clone(), (title.clone(), content.0));
        }
    }
    if baseline {
        if seeded.is_empty() {
            return Err(format!("{who}: the seeded record shows no documents"));
        }
        model.seeded_docs[owner] = seeded;
    } else if seeded != model.seeded_docs[owner] {
        return Err(format!(
            "{who}: the seeded documents changed (titles or bytes): were {:?}, now {:?}",
            model.seeded_docs[owner]
                .values()
                .map(|v| &v.0)
                .collect::<Vec<_>>(),
            seeded.values().map(|v| &v.0).collect::<Vec<_>>()
        ));
    }
    for (title, want) in model.docs.iter_mut().filter(|(_, w)| w.owner == owner) {
        let found = ours.get(title);
        let what = format!("{who}'s document {title:?} (round {})", want.round);
        if let Some(present) = settle(&mut want.known, found.is_some(), want.acked, &what)? {
            stats.settle(DOCUMENT, present);
        }
        if let Some((sha, len)) = found {
            if *sha != want.sha || *len != want.len {
                return Err(format!(
                    "CORRUPT: {what} downloads as {len} bytes that differ from the {} sent",
                    want.len
                ));
            }
        }
    }
    for title in ours.keys() {
        if model.docs.get(title).is_none_or(|w| w.owner != owner) {
            return Err(format!(
                "{who}: document {title:?} is listed, but no client uploaded it"
            ));
        }
    }

    if owner == 0 {
        check_sharing(&s, model, stats, baseline).await?;
    }

    // The other pages of the record answer too.
    for path in [
        "/record/demographics",
        "/record/access",
        "/record/medicines",
        "/record/care-network",
        "/record/export",
        "/account",
    ] {
        page(&s.http, &format!("{base}{path}")).await?;
    }
    let (status, zip) = get(&s.http, &format!("{base}/record/documents.zip")).await?;
    if status != StatusCode::OK || !zip.starts_with(b"PK") {
        return Err(format!(
            "{who}: GET /record/documents.zip gave {status} and {} bytes that are not a zip",
            zip.len()
        ));
    }
    Ok(())
}

/// A grant as the FHIR API reports it.
struct Consent {
    status: String,
    actor_org: bool,
}

async fn consents(s: &Session, patient: &str) -> Result<BTreeMap<String, Consent>, String> {
    let mut out = BTreeMap::new();
    let mut offset = 0;
    loop {
        let url = format!(
            "{}/fhir/R4/Consent?patient={patient}&_count=100&_offset={offset}",
            s.base
        );
        let resp = s
            .http
            .get(&url)
            .header("accept", "application/fhir+json")
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| format!("GET {url}: {e}"))?;
        if status != StatusCode::OK {
            return Err(format!("GET {url} gave {status}:\n{}", excerpt(&text)));
        }
        let bundle: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("GET {url}: not JSON: {e}"))?;
        let total = bundle["total"]
            .as_u64()
            .ok_or("a Consent bundle without total")?;
        let page: Vec<serde_json::Value> = bundle["entry"].as_array().cloned().unwrap_or_default();
        for e in &page {
            let r = &e["resource"];
            let purpose = r["extension"]
                .as_array()
                .and_then(|x| x.iter().find_map(|x| x["valueString"].as_str()))
                .unwrap_or("")
                .to_string();
            let consent = Consent {
                status: r["status"].as_str().unwrap_or("").to_string(),
                actor_org: r.to_string().contains("\"Organization\""),
            };
            if out.insert(purpose.clone(), consent).is_some() {
                return Err(format!("two grants with the purpose {purpose:?}"));
            }
        }
        offset += page.len();
        if page.is_empty() || offset as u64 >= total {
            return Ok(out);
        }
    }
}

/// A live grant's card on the sharing page.
struct Card {
    id: String,
    heading: String,
    state: String,
}

fn live_cards(html: &str) -> Result<BTreeMap<String, Card>, String> {
    let mut out = BTreeMap::new();
    let live = html
        .split("<h2>Sharing that has ended</h2>")
        .next()
        .unwrap_or("");
    for part in live.split("<div class=\"nhsuk-card\" id=\"grant-").skip(1) {
        let id = part.split('"').next().unwrap_or("").to_string();
        let heading = between(part, "nhsuk-heading-m\">", "<strong").unwrap_or("");
        let state = between(part, "<strong class=\"nhsuk-tag", "</strong>")
            .and_then(|s| s.split_once('>'))
            .map(|(_, s)| s)
            .unwrap_or("");
        let purpose = part
            .split("<dt class=\"nhsuk-summary-list__key\">Why</dt>")
            .nth(1)
            .and_then(|r| between(r, "<dd class=\"nhsuk-summary-list__value\">", "</dd>"))
            .ok_or_else(|| format!("grant card {id} has no Why row"))?;
        let card = Card {
            id,
            heading: unescape(heading.trim()),
            state: unescape(state.trim()),
        };
        if out.insert(unescape(purpose.trim()), card).is_some() {
            return Err(format!("two live grants with the purpose {purpose:?}"));
        }
    }
    Ok(out)
}

/// Checks the demo patient's sharing: the FHIR Consents (every grant with its
/// status) and the sharing page (the live ones, with their ids).
async fn check_sharing(
    s: &Session,
    model: &mut Model,
    stats: &mut Stats,
    baseline: bool,
) -> Result<(), String> {
    let listed = consents(s, &model.patient_ids[0]).await?;
    let html = page(&s.http, &format!("{}/record/sharing", s.base)).await?;
    let cards = live_cards(&html)?;
    page(&s.http, &format!("{}/record/sharing/new", s.base)).await?;

    let seeded: BTreeMap<String, String> = listed
        .iter()
        .filter(|(p, _)| !p.starts_with(GRANT_PREFIX))
        .map(|(p, c)| (p.clone(), c.status.clone()))
        .collect();
    if baseline {
        if seeded.is_empty() {
            return Err("the demo patient's seeded sharing is not listed".into());
        }
        model.seeded_grants = seeded;
    } else if seeded != model.seeded_grants {
        return Err(format!(
            "the seeded sharing changed: was {:?}, now {seeded:?}",
            model.seeded_grants
        ));
    }
    for (purpose, want) in model.grants.iter_mut() {
        let found = listed.get(purpose);
        let what = format!(
            "grant {purpose:?} to {} (round {})",
            want.to.label(),
            want.round
        );
        if let Some(present) = settle(&mut want.known, found.is_some(), want.acked, &what)? {
            stats.settle(SHARE, present);
        }
        let Some(c) = found else { continue };
        let org = matches!(want.to, Grantee::Organisation { .. });
        if c.actor_org != org {
            return Err(format!(
                "CORRUPT: {what}: the FHIR Consent names the wrong kind of grantee"
            ));
        }
        let live_status = if org { "active" } else { "proposed" };
        let stopped = match (want.stopped, c.status.as_str()) {
            (Known::Present | Known::Unknown, "rejected") => true,
            (Known::Absent | Known::Unknown, s) if s == live_status => false,
            (known, s) => {
                return Err(format!(
                    "{}: {what} has status {s:?}; stopped: {known:?} (acknowledged: {})",
                    if want.stop_acked {
                        "LOST STOP"
                    } else {
                        "WRONG STATE"
                    },
                    want.stop_acked
                ))
            }
        };
        if want.stopped == Known::Unknown {
            want.stopped = if stopped {
                Known::Present
            } else {
                Known::Absent
            };
            stats.settle(STOP, stopped);
        }
        match (stopped, cards.get(purpose)) {
            (false, Some(card)) => {
                let state = if org { "Active" } else { "Pending" };
                if !card.heading.contains(want.to.label()) || card.state != state {
                    return Err(format!(
                        "CORRUPT: {what}: the sharing page shows {:?} {:?}, expected {:?} {state:?}",
                        card.heading,
                        card.state,
                        want.to.label()
                    ));
                }
                match &want.id {
                    Some(id) if *id != card.id => {
                        return Err(format!("{what}: id was {id}, now {}", card.id))
                    }
                    _ => want.id = Some(card.id.clone()),
                }
            }
            (false, None) => return Err(format!("{what} is live but not on the sharing page")),
            (true, Some(_)) => {
                return Err(format!(
                    "{what} is stopped but still on the sharing page as live"
                ))
            }
            (true, None) => {}
        }
    }
    for purpose in listed.keys().filter(|p| p.starts_with(GRANT_PREFIX)) {
        if !model.grants.contains_key(purpose) {
            return Err(format!(
                "grant {purpose:?} is listed, but no client made it"
            ));
        }
    }
    for purpose in cards.keys() {
        if !listed.contains_key(purpose) {
            return Err(format!(
                "the sharing page shows a grant {purpose:?} that the API does not list"
            ));
        }
    }
    Ok(())
}

/// The other demo people still sign in, and the carer and the GP still see
/// the demo patient's record through the seeded sharing.
async fn check_people(base: &str, model: &Model) -> Result<(), String> {
    for email in [CARER, GP] {
        let s = sign_in(base, email).await?;
        page(&s.http, &format!("{base}/people")).await?;
        page(
            &s.http,
            &format!("{base}/people/{}/record", model.patient_ids[0]),
        )
        .await
        .map_err(|e| format!("{email} reading the demo patient's record: {e}"))?;
    }
    for email in [DOCTOR, GP_ADMIN] {
        sign_in(base, email).await?;
    }
    Ok(())
}

/// Proof that the check compares content: against a model that is wrong in
/// one place (an entry never stored, other details, other document bytes, a
/// grant never made), it must fail, naming the loss.
async fn the_check_can_fail(base: &str, model: &Model) -> Result<(), String> {
    let mut stats = Stats::default();
    let pick = |m: &Model| -> Option<(String, String)> {
        let e = m
            .entries
            .iter()
            .find(|(_, w)| w.owner == 1 && w.known == Known::Present)?;
        let d = m
            .docs
            .iter()
            .find(|(_, w)| w.owner == 1 && w.known == Known::Present)?;
        Some((e.0.clone(), d.0.clone()))
    };
    let Some((entry, doc)) = pick(model) else {
        return Err("nothing of the sensitive patient's was stored to tamper with".into());
    };
    let mut wrong: Vec<(&str, usize, Model)> = Vec::new();
    let mut m = model.clone();
    let mut fake = m.entries[&entry].clone();
    fake.id = None;
    fake.acked = true;
    m.entries
        .insert(format!("{ENTRY_PREFIX}never written"), fake);
    wrong.push(("LOST", 1, m));
    let mut m = model.clone();
    m.entries.get_mut(&entry).unwrap().details.push('x');
    wrong.push(("CORRUPT", 1, m));
    let mut m = model.clone();
    m.docs.get_mut(&doc).unwrap().sha[0] ^= 1;
    wrong.push(("CORRUPT", 1, m));
    let mut m = model.clone();
    m.grants.insert(
        format!("{GRANT_PREFIX}never made"),
        GrantWant {
            to: Grantee::Person {
                email: CARER.into(),
            },
            known: Known::Present,
            acked: true,
            round: 0,
            id: None,
            stopped: Known::Absent,
            stop_acked: false,
            stopping: false,
        },
    );
    wrong.push(("LOST", 0, m));
    for (marker, owner, mut m) in wrong {
        match check_record(base, owner, &mut m, &mut stats, false).await {
            Err(e) if e.contains(marker) => {}
            other => {
                return Err(format!(
                    "the check should have failed with {marker} against a tampered model, but gave {other:?}"
                ))
            }
        }
    }
    println!("  self-check: the check failed, as it should, against each of 4 tampered models");
    Ok(())
}

/// `keyhold audit verify` on the store as the kill left it (the server is
/// gone, so nothing else holds the store), with and without the checkpoints
/// file `serve` writes.
fn audit_verify(data: &Path, keys: &Path) -> Vec<Run> {
    let d = data.to_str().unwrap();
    let k = keys.to_str().unwrap();
    let checkpoints = data.join("audit-checkpoints.txt");
    let mut runs = vec![run(["audit", "verify", "--data", d, "--keys", k])];
    if checkpoints.exists() {
        runs.push(run([
            "audit",
            "verify",
            "--data",
            d,
            "--keys",
            k,
            "--checkpoints",
            checkpoints.to_str().unwrap(),
        ]));
    }
    runs
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, not {v:?}"))
    })
}

/// Mixes the seed with a round and a writer into one writer's RNG seed.
fn sub_seed(seed: u64, round: usize, writer: usize) -> u64 {
    seed ^ (round as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (writer as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9)
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let rounds = env_number("KEYHOLD_CRASH_ROUNDS").unwrap_or(4) as usize;
    let seed = env_number("KEYHOLD_CRASH_SEED").unwrap_or_else(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        t.as_nanos() as u64 ^ u64::from(std::process::id())
    });
    println!("crash loop: {rounds} rounds, seed {seed} (replay: KEYHOLD_CRASH_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);

    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let keys = tmp.path().join("keys");
    let rt = runtime();
    let started = Instant::now();

    let mut server = Server::start(&data, &keys);
    server.wait_for_line("the demo seeding", |l| l.contains("demo data seeded"));
    let mut model = Model::default();
    let mut stats = Stats::default();
    let fail = |server: &Server, round: usize, e: String| -> ! {
        panic!(
            "crash loop failed in round {round} (seed {seed}; replay with KEYHOLD_CRASH_SEED={seed}):\n{e}\n--- server stderr (tail) ---\n{}",
            server.stderr_tail()
        )
    };

    // What the seeding stored is acknowledged too: record it before any kill.
    let base = server.base_url();
    let organisations = rt.block_on(async {
        for owner in 0..OWNERS.len() {
            check_record(&base, owner, &mut model, &mut stats, true).await?;
        }
        let s = sign_in(&base, PATIENT).await?;
        let html = page(&s.http, &format!("{base}/record/sharing/new")).await?;
        let orgs: Vec<(String, String)> = html
            .split("<option value=\"")
            .skip(1)
            .filter_map(|o| {
                let (id, rest) = o.split_once("\"")?;
                let name = between(rest, ">", "</option>")?;
                (!id.is_empty()).then(|| (id.to_string(), unescape(name.trim())))
            })
            .collect();
        if orgs.is_empty() {
            return Err("the sharing form offers no organisation".to_string());
        }
        Ok(orgs)
    });
    let organisations = organisations.unwrap_or_else(|e| fail(&server, 0, e));

    for round in 1..=rounds {
        let round_start = Instant::now();
        let base = server.base_url();
        let shared = Arc::new(Shared {
            killed: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            organisations: organisations.clone(),
            today: time::OffsetDateTime::now_utc().date(),
        });
        let kill_after = Duration::from_millis(rng.gen_range(20..=500));

        // Sign the writers in first, so the kill lands among writes.
        let sessions = rt
            .block_on(async {
                let mut out = Vec::new();
                for mix in WRITERS {
                    out.push(sign_in(&base, OWNERS[mix.owner()]).await?);
                }
                Ok::<_, String>(out)
            })
            .unwrap_or_else(|e| fail(&server, round, e));
        let mut stops = model.stoppable();
        stops.shuffle(&mut rng);
        for (p, _) in &stops {
            model.grants.get_mut(p).unwrap().stopping = true;
        }

        let write_start = Instant::now();
        let (sent, in_flight) = rt
            .block_on(async {
                let mut tasks = Vec::new();
                for (i, (mix, session)) in WRITERS.into_iter().zip(sessions).enumerate() {
                    let rng = StdRng::seed_from_u64(sub_seed(seed, round, i));
                    let mine = if matches!(mix, Mix::Sharing) {
                        std::mem::take(&mut stops)
                    } else {
                        Vec::new()
                    };
                    tasks.push(tokio::spawn(writer(
                        session,
                        mix,
                        rng,
                        format!("r{round}w{i}"),
                        shared.clone(),
                        mine,
                    )));
                }
                tokio::time::sleep(kill_after).await;
                // Kill while a write is on its way (the writers never pause, so
                // this is at once; the bound only guards against a stuck test).
                let wait = Instant::now();
                while shared.in_flight.load(Ordering::SeqCst) == 0 && wait.elapsed() < LIMIT {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                let in_flight = shared.in_flight.load(Ordering::SeqCst);
                server.kill9();
                shared.killed.store(true, Ordering::SeqCst);
                let mut sent = Vec::new();
                let mut errors = Vec::new();
                for t in tasks {
                    match t.await {
                        Ok(Ok(s)) => sent.extend(s),
                        Ok(Err(e)) => errors.push(e),
                        Err(e) => errors.push(format!("a writer panicked: {e}")),
                    }
                }
                if errors.is_empty() {
                    Ok((sent, in_flight))
                } else {
                    Err(errors.join("\n"))
                }
            })
            .unwrap_or_else(|e| fail(&server, round, e));
        stats.write_phase += write_start.elapsed();
        stats.kills += 1;
        stats.in_flight_at_kill.push(in_flight);
        stats.kill_after.push(kill_after);
        let acked_now = sent
            .iter()
            .filter(|s| matches!(s.fate, Fate::Acked(_)))
            .count();
        model.record(round, sent, &mut stats);

        let verify_start = Instant::now();
        for r in audit_verify(&data, &keys) {
            if let Some(l) = r
                .stdout
                .lines()
                .find(|l| l.starts_with("audit chain intact"))
            {
                stats.audit = l.to_string();
            }
            if !r.success() {
                fail(
                    &server,
                    round,
                    format!("audit verify failed after the kill:\n{}", r.describe()),
                );
            }
        }
        stats.audit_verify += verify_start.elapsed();

        let restart_start = Instant::now();
        server = Server::start(&data, &keys);
        stats.restarts += 1;
        server.wait_for_line("the note that data exists", |l| {
            l.contains("already holds data")
        });
        stats.restart += restart_start.elapsed();
        assert!(
            !server.seen.iter().any(|l| l.contains("demo data seeded")),
            "--demo seeded again over existing data: {:?}",
            server.seen
        );

        let check_start = Instant::now();
        let base = server.base_url();
        let checked = rt.block_on(async {
            for owner in 0..OWNERS.len() {
                check_record(&base, owner, &mut model, &mut stats, false).await?;
            }
            check_people(&base, &model).await
        });
        if let Err(e) = checked {
            fail(&server, round, e);
        }
        stats.check += check_start.elapsed();
        let took = round_start.elapsed();
        stats.rounds.push(took);
        println!(
            "round {round}/{rounds}: killed {} after the writers started, {in_flight} writes in flight, {acked_now} acknowledged; round took {}",
            ms(kill_after),
            ms(took)
        );
    }
    let base = server.base_url();
    if let Err(e) = rt.block_on(the_check_can_fail(&base, &model)) {
        fail(&server, rounds, e);
    }
    drop(server);

    let stored = [
        model
            .entries
            .values()
            .filter(|w| w.known == Known::Present)
            .count(),
        model
            .docs
            .values()
            .filter(|w| w.known == Known::Present)
            .count(),
        model
            .grants
            .values()
            .filter(|w| w.known == Known::Present)
            .count(),
    ];
    let mut times = stats.rounds.clone();
    times.sort();
    let mean = |d: Duration| d / u32::try_from(rounds.max(1)).unwrap();
    println!("crash loop figures (seed {seed}):");
    println!(
        "  rounds {rounds}, kills (SIGKILL) {}, restarts {}, total {:.0} s",
        stats.kills,
        stats.restarts,
        started.elapsed().as_secs_f64()
    );
    for (k, name) in KINDS.iter().enumerate() {
        println!(
            "  {name:<12} acknowledged {:>5}; no answer {:>3}: found applied {:>3}, not applied {:>3}",
            stats.acked[k], stats.unknown[k], stats.unknown_present[k], stats.unknown_absent[k]
        );
    }
    println!(
        "  refused connection after the kill (never delivered, checked absent): {}",
        stats.not_delivered
    );
    println!(
        "  stored at the end: {} entries, {} documents, {} grants of ours ({} stopped)",
        stored[ENTRY],
        stored[DOCUMENT],
        stored[SHARE],
        model
            .grants
            .values()
            .filter(|g| g.stopped == Known::Present)
            .count()
    );
    if !times.is_empty() {
        println!(
            "  time per round: min {}, median {}, max {}; mean write phase {}, audit verify {}, restart {}, check {}",
            ms(times[0]),
            ms(times[times.len() / 2]),
            ms(times[times.len() - 1]),
            ms(mean(stats.write_phase)),
            ms(mean(stats.audit_verify)),
            ms(mean(stats.restart)),
            ms(mean(stats.check)),
        );
        println!(
            "  writes in flight at the kill: min {}, max {}; kill {}–{} after the writers started",
            stats.in_flight_at_kill.iter().min().unwrap(),
            stats.in_flight_at_kill.iter().max().unwrap(),
            ms(*stats.kill_after.iter().min().unwrap()),
            ms(*stats.kill_after.iter().max().unwrap()),
        );
    }
    println!("  last audit verify: {}", stats.audit);
    println!(
        "  checked: {} entry pages opened, {} documents downloaded ({} MB)",
        stats.entries_opened,
        stats.documents_downloaded,
        stats.bytes_downloaded / (1024 * 1024)
    );
    let acked: usize = stats.acked.iter().sum();
    assert!(acked > 0, "no write was acknowledged in {rounds} rounds");
}
