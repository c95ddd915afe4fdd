//! Helpers shared by the tests: running the binary with a time limit, a server
//! guard that always stops the child, a tiny HTTP client for `/healthz`, folder
//! walking and copying, and opening the domain core in-process.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use keyhold_domain::clock::SystemClock;
use keyhold_domain::keystore::load_keys;
use keyhold_domain::{Keyhold, Settings};

/// How long any one command (or a server start) may take before the test gives up.
pub const LIMIT: Duration = Duration::from_secs(60);

/// The real binary, with test-only fast password hashing and a predictable
/// environment (plain-HTTP cookies, default log filter).
pub fn keyhold() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_keyhold"));
    c.env("KEYHOLD_DANGER_FAST_HASH", "1")
        .env_remove("KEYHOLD_SECURE_COOKIES")
        .env_remove("KEYHOLD_DATABASE_URL")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    c
}

/// What a finished command left behind.
pub struct Run {
    pub what: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Everything about the run, for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "`{}` exited with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.what, self.status, self.stdout, self.stderr
        )
    }
}

fn command_line<I, S>(args: I) -> (Vec<std::ffi::OsString>, String)
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<std::ffi::OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let shown = std::iter::once("keyhold".to_string())
        .chain(args.iter().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ");
    (args, shown)
}

fn reader_thread(mut r: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Runs `keyhold ARGS` to completion (killing it after [`LIMIT`]).
pub fn run<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_in(None, args)
}

/// [`run`], in the working directory `dir` when given.
pub fn run_in<I, S>(dir: Option<&Path>, args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let (args, what) = command_line(args);
    let mut cmd = keyhold();
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    let mut child = cmd
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{what}`: {e}"));
    let out = reader_thread(child.stdout.take().expect("stdout is piped"));
    let err = reader_thread(child.stderr.take().expect("stderr is piped"));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if started.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`{what}` did not finish within {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Run {
        what,
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

/// Runs `keyhold ARGS` and insists that it succeeds.
pub fn run_ok<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let r = run(args);
    assert!(r.success(), "expected success:\n{}", r.describe());
    r
}

/// `keyhold init --keys DIR`.
pub fn init_keys(keys: &Path) {
    run_ok([OsStr::new("init"), OsStr::new("--keys"), keys.as_os_str()]);
}

/// `keyhold demo --data D --keys K --patients N --identities I`, parsed identities.
pub fn seed_demo(
    data: &Path,
    keys: &Path,
    patients: usize,
    identities: &Path,
) -> Vec<serde_json::Value> {
    let n = patients.to_string();
    run_ok([
        OsStr::new("demo"),
        OsStr::new("--data"),
        data.as_os_str(),
        OsStr::new("--keys"),
        keys.as_os_str(),
        OsStr::new("--patients"),
        OsStr::new(&n),
        OsStr::new("--identities"),
        identities.as_os_str(),
    ]);
    read_identities(identities)
}

/// The `patients` array of an identities file.
pub fn read_identities(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let json: serde_json::Value =
        serde_json::from_slice(&text).expect("the identities file is JSON");
    json.get("patients")
        .and_then(|p| p.as_array())
        .cloned()
        .expect("the identities file has a `patients` array")
}

/// A string field of one identity.
pub fn field<'a>(patient: &'a serde_json::Value, name: &str) -> &'a str {
    patient
        .get(name)
        .and_then(|v| v.as_str())
        .unwrap_or_else(|| panic!("identity has no string field `{name}`"))
}

/// A running `keyhold serve`. Dropping it kills the process, so a failing test
/// never leaves a server behind.
pub struct Server {
    child: Option<Child>,
    pub addr: SocketAddr,
    lines: Receiver<String>,
    /// Every stdout line seen so far.
    pub seen: Vec<String>,
    stderr: Option<JoinHandle<String>>,
}

/// How a server start ended.
pub enum Start {
    Running(Server),
    Exited(Run),
}

const LISTENING: &str = "keyhold listening on http://";

/// Starts `keyhold serve --data D --keys K --bind 127.0.0.1:0 [EXTRA]` and waits
/// until it prints its listening line, or exits.
pub fn start_serve(data: &Path, keys: &Path, extra: &[&str]) -> Start {
    start_serve_env(data, keys, extra, &[])
}

/// [`start_serve`] with extra environment variables.
pub fn start_serve_env(data: &Path, keys: &Path, extra: &[&str], env: &[(&str, &str)]) -> Start {
    let mut args: Vec<&OsStr> = vec![
        OsStr::new("serve"),
        OsStr::new("--data"),
        data.as_os_str(),
        OsStr::new("--keys"),
        keys.as_os_str(),
        OsStr::new("--bind"),
        OsStr::new("127.0.0.1:0"),
    ];
    args.extend(extra.iter().map(OsStr::new));
    let (args, what) = command_line(args);
    let mut child = keyhold()
        .args(&args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{what}`: {e}"));
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = reader_thread(child.stderr.take().expect("stderr is piped"));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let started = Instant::now();
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(line) => {
                let found = line
                    .strip_prefix(LISTENING)
                    .map(|a| a.trim().parse::<SocketAddr>());
                seen.push(line);
                if let Some(addr) = found {
                    let addr = addr.unwrap_or_else(|e| {
                        panic!("bad listening address in {:?}: {e}", seen.last())
                    });
                    return Start::Running(Server {
                        child: Some(child),
                        addr,
                        lines: rx,
                        seen,
                        stderr: Some(stderr),
                    });
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                // stdout closed: the process is ending.
                let status = child.wait().expect("wait for serve");
                return Start::Exited(Run {
                    what,
                    status,
                    stdout: seen.join("\n"),
                    stderr: stderr.join().expect("stderr reader"),
                });
            }
        }
        if started.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`{what}` neither listened nor exited within {LIMIT:?}; stdout so far: {seen:?}"
            );
        }
    }
}

/// Starts the server and insists that it comes up.
pub fn serve(data: &Path, keys: &Path, extra: &[&str]) -> Server {
    serve_env(data, keys, extra, &[])
}

/// [`serve`] with extra environment variables.
pub fn serve_env(data: &Path, keys: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
    match start_serve_env(data, keys, extra, env) {
        Start::Running(s) => s,
        Start::Exited(r) => panic!("expected the server to start:\n{}", r.describe()),
    }
}

/// Starts the server and insists that it refuses to run. If it does come up,
/// the test fails (after checking that it at least does not claim health).
pub fn serve_refused(data: &Path, keys: &Path) -> Run {
    match start_serve(data, keys, &[]) {
        Start::Exited(r) => {
            assert!(
                !r.success(),
                "serve exited, but with success:\n{}",
                r.describe()
            );
            r
        }
        Start::Running(s) => {
            let health = http_status(s.addr, "/healthz");
            let seen = s.seen.clone();
            let stderr = s.stop();
            assert!(
                health.as_ref().map(|c| *c != 200).unwrap_or(true),
                "serve started with unusable keys or store AND /healthz said 200; stdout {seen:?}; stderr:\n{stderr}"
            );
            panic!("serve should have refused to start, but listened (healthz: {health:?}); stdout {seen:?}; stderr:\n{stderr}");
        }
    }
}

impl Server {
    /// Waits for a stdout line that satisfies `pred`; returns it.
    pub fn wait_for_line(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
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
                Err(e) => panic!(
                    "no stdout line with {what} ({e:?}); stdout so far: {:?}",
                    self.seen
                ),
            }
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn shutdown(&mut self) -> String {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default()
    }

    /// Kills the server, waits for it, and returns what it wrote to stderr.
    pub fn stop(mut self) -> String {
        self.shutdown()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// `GET path` over plain HTTP/1.1; the status code.
pub fn http_status(addr: SocketAddr, path: &str) -> std::io::Result<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut head = String::new();
    BufReader::new(s).read_line(&mut head)?;
    head.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP status line: {head:?}")))
}

/// Asserts that `/healthz` answers 200.
pub fn assert_healthy(server: &Server, when: &str) {
    let status = http_status(server.addr, "/healthz");
    assert!(
        matches!(status, Ok(200)),
        "{when}: GET /healthz gave {status:?}, expected 200"
    );
}

/// Every regular file under `dir`, recursively (symlinks are not followed).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in
            std::fs::read_dir(&d).unwrap_or_else(|e| panic!("reading {}: {e}", d.display()))
        {
            let entry = entry.expect("directory entry");
            let ty = entry.file_type().expect("file type");
            if ty.is_dir() {
                todo.push(entry.path());
            } else if ty.is_file() {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    out
}

/// Copies a folder recursively (file modes included). Nothing may hold it open.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("creating {}: {e}", to.display()));
    for entry in
        std::fs::read_dir(from).unwrap_or_else(|e| panic!("reading {}: {e}", from.display()))
    {
        let entry = entry.expect("directory entry");
        let ty = entry.file_type().expect("file type");
        let dest = to.join(entry.file_name());
        if ty.is_dir() {
            copy_dir(&entry.path(), &dest);
        } else if ty.is_file() {
            std::fs::copy(entry.path(), &dest).unwrap_or_else(|e| {
                panic!(
                    "copying {} to {}: {e}",
                    entry.path().display(),
                    dest.display()
                )
            });
        }
    }
}

/// A tokio runtime for the async domain API and HTTP clients.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Opens the domain core in-process (no server may hold the folder: sled locks it).
pub fn open_core(data: &Path, keys: &Path) -> Arc<Keyhold> {
    let loaded =
        load_keys(keys).unwrap_or_else(|e| panic!("loading keys from {}: {e}", keys.display()));
    let settings = Settings {
        danger_fast_hashing: true,
        ..Default::default()
    };
    Keyhold::open(data, loaded, settings, Arc::new(SystemClock))
        .unwrap_or_else(|e| panic!("opening {} in-process: {e}", data.display()))
}

/// The value of `<input … name="NAME" value="…">` in `html` (a CSRF token, say).
pub fn hidden_input(html: &str, name: &str) -> Result<String, String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .map(|i| i + marker.len())
        .ok_or_else(|| format!("no `{name}` input in the page"))?;
    let len = html[start..]
        .find('"')
        .ok_or_else(|| format!("the `{name}` input's value is not closed"))?;
    Ok(html[start..start + len].to_string())
}

/// A client (cookies kept, redirects not followed) signed in through the
/// sign-in form as `email`; an error says which step failed.
pub async fn signed_in(base: &str, email: &str, password: &str) -> Result<reqwest::Client, String> {
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())?;
    let page = client
        .get(format!("{base}/signin"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let csrf = hidden_input(&page.text().await.map_err(|e| e.to_string())?, "csrf_token")?;
    let r = client
        .post(format!("{base}/signin"))
        .form(&[
            ("email", email),
            ("password", password),
            ("csrf_token", csrf.as_str()),
        ])
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if r.status() != reqwest::StatusCode::SEE_OTHER {
        return Err(format!("sign-in: {}", r.status()));
    }
    Ok(client)
}

/// A new database on the test PostgreSQL server, or `None` without one (see
/// `keyhold_storage::test_database`).
pub fn postgres_database(tag: &str) -> Option<String> {
    keyhold_storage::test_database(tag).expect("a test database")
}
