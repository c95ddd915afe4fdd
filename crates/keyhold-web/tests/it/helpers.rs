//! `spawn_app()` and the small tools a browser-like client needs: reading the
//! CSRF token out of a page, submitting forms, signing up.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use keyhold_domain::clock::SystemClock;
use keyhold_domain::consent::StaffRole;
use keyhold_domain::keystore::{init_keys, load_keys};
use keyhold_domain::policy::Principal;
use keyhold_domain::{FirstAdministrator, Keyhold, NhsNumber, OrgId, Settings};
use keyhold_storage::TreeName;
use keyhold_web::{AppState, Application, WebConfig};
use reqwest::header::{CONTENT_TYPE, LOCATION, SET_COOKIE};
use reqwest::{Client, Response, StatusCode};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const PASSWORD: &str = "correct horse battery";

/// Cheap argon2, everything else as in production.
pub fn fast() -> Settings {
    Settings {
        danger_fast_hashing: true,
        ..Default::default()
    }
}

/// A running application. `stop` shuts it down gracefully; dropping it
/// without `stop` also ends the server (its shutdown signal fires).
pub struct TestApp {
    pub base: String,
    pub addr: SocketAddr,
    pub core: Arc<Keyhold>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
    _dir: TempDir,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Shuts the server down and waits for it (bounded, so a hang fails).
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            let ended = tokio::time::timeout(Duration::from_secs(10), server).await;
            ended
                .expect("server stops within 10 s")
                .expect("server task")
                .expect("server result");
        }
    }

    /// Every mail sent so far, as raw RFC 5322 text, oldest first.
    pub fn mails(&self) -> Vec<String> {
        let Ok(dir) = std::fs::read_dir(self._dir.path().join("outbox")) else {
            return Vec::new();
        };
        let mut files: Vec<_> = dir.map(|e| e.unwrap().path()).collect();
        files.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
        files
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect()
    }

    /// Rows in one of the domain's trees (to check that nothing was stored).
    pub fn rows(&self, tree: TreeName) -> usize {
        let mut n = 0;
        for row in self.core.store().scan(tree, b"") {
            row.unwrap();
            n += 1;
        }
        n
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_with(
        fast(),
        WebConfig {
            secure_cookies: false,
            nhs_login: None,
            ..Default::default()
        },
    )
    .await
}

pub async fn spawn_with(settings: Settings, config: WebConfig) -> TestApp {
    // The server's errors appear with a failing test's output.
    let _ = tracing_subscriber::fmt()
        .with_env_filter("warn")
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    init_keys(&keys).unwrap();
    let core = Keyhold::open(
        &dir.path().join("data"),
        load_keys(&keys).unwrap(),
        settings,
        Arc::new(SystemClock),
    )
    .unwrap_or_else(|e| panic!("open: {e}"));
    // Mail lands as files in the app's temp folder (see `TestApp::mails`).
    let outbox = dir.path().join("outbox");
    let core = core
        .with_mailer(
            keyhold_mail::Mailer::new(
                keyhold_mail::MailTransport::Outbox(outbox),
                "Keyhold <keyhold@test.invalid>",
            )
            .unwrap(),
        )
        .unwrap();
    let state = AppState::new(core.clone(), config).unwrap_or_else(|e| panic!("state: {e}"));
    let app = Application::build(state, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = app.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run(async move {
        let _ = rx.await;
    }));
    TestApp {
        base: format!("http://{addr}"),
        addr,
        core,
        stop: Some(tx),
        server: Some(server),
        _dir: dir,
    }
}

/// A browser: keeps cookies, does not follow redirects.
pub fn browser() -> Client {
    Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A client that keeps no cookies (to see and send them by hand).
pub fn bare_client() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The value of the hidden `csrf_token` field of a page.
pub fn csrf_in(html: &str) -> Option<String> {
    let marker = "name=\"csrf_token\" value=\"";
    let start = html.find(marker)? + marker.len();
    let len = html[start..].find('"')?;
    Some(html[start..start + len].to_string())
}

/// GETs `path` and returns the page's CSRF token.
pub async fn csrf_token(app: &TestApp, client: &Client, path: &str) -> String {
    let resp = client.get(app.url(path)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "GET {path}");
    let html = resp.text().await.unwrap();
    csrf_in(&html).unwrap_or_else(|| panic!("no csrf_token on {path}"))
}

/// The text of the page's first `<h1>`.
pub fn h1(html: &str) -> String {
    let start = html
        .find("<h1")
        .and_then(|i| html[i..].find('>').map(|j| i + j + 1));
    let start = start.unwrap_or_else(|| panic!("no <h1> in page: {html}"));
    let end = html[start..].find("</h1>").expect("</h1>") + start;
    html[start..end].trim().to_string()
}

pub fn is_html(resp: &Response) -> bool {
    header(resp, CONTENT_TYPE.as_str()).is_some_and(|ct| ct.starts_with("text/html"))
}

pub fn header(resp: &Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
}

pub fn location(resp: &Response) -> Option<String> {
    header(resp, LOCATION.as_str())
}

/// The Set-Cookie header that sets cookie `name`, if any.
pub fn set_cookie(resp: &Response, name: &str) -> Option<String> {
    resp.headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| {
            c.split(';')
                .next()
                .and_then(|kv| kv.split_once('='))
                .is_some_and(|(k, _)| k.trim() == name)
        })
}

/// The attributes of a Set-Cookie value, lower-cased, without the name=value.
pub fn attributes(set_cookie: &str) -> Vec<String> {
    set_cookie
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_ascii_lowercase())
        .collect()
}

/// The value a Set-Cookie header gives its cookie.
pub fn cookie_value(set_cookie: &str) -> String {
    let first = set_cookie.split(';').next().unwrap();
    first.split_once('=').unwrap().1.to_string()
}

pub async fn post_form(
    app: &TestApp,
    client: &Client,
    path: &str,
    fields: &[(&str, &str)],
) -> Response {
    client
        .post(app.url(path))
        .form(fields)
        .send()
        .await
        .unwrap()
}

/// Signs up through the pages, as a person would; the browser is then signed in.
pub async fn sign_up(app: &TestApp, client: &Client, email: &str) {
    sign_up_as(app, client, "Test Person", email).await
}

/// Signs up with a name of one's own.
pub async fn sign_up_as(app: &TestApp, client: &Client, name: &str, email: &str) {
    let token = csrf_token(app, client, "/signup").await;
    let resp = post_form(
        app,
        client,
        "/signup",
        &[
            ("csrf_token", &token),
            ("name", name),
            ("email", email),
            ("password", PASSWORD),
        ],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK, "sign-up of {email}");
    let page = resp.text().await.unwrap();
    assert!(
        page.contains("Check your email"),
        "sign-up of {email}:\n{page}"
    );
    confirm_from_mail(app, client, email).await;
}

/// The token of the newest link to `path` (e.g. "/account/confirm/") mailed to `to`.
pub fn mailed_token(app: &TestApp, to: &str, path: &str) -> String {
    let mail = app
        .mails()
        .into_iter()
        .rev()
        .find(|m| m.contains(to) && m.contains(path))
        .unwrap_or_else(|| panic!("no mail to {to} with a {path} link"));
    let at = mail.find(path).unwrap() + path.len();
    mail[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

/// Opens the confirmation link mailed to `email` and presses its button; the
/// browser is then signed in.
pub async fn confirm_from_mail(app: &TestApp, client: &Client, email: &str) {
    let path = format!(
        "/account/confirm/{}",
        mailed_token(app, email, "/account/confirm/")
    );
    let token = csrf_token(app, client, &path).await;
    let resp = post_form(app, client, &path, &[("csrf_token", &token)]).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER, "confirming {email}");
}

/// A new browser, signed up and signed in as `email`.
pub async fn signed_in(app: &TestApp, email: &str) -> Client {
    let client = browser();
    sign_up(app, &client, email).await;
    client
}

/// A new entry through the form; returns its id.
pub async fn add_entry(app: &TestApp, client: &Client, title: &str) -> String {
    let token = csrf_token(app, client, "/record/entries/new").await;
    let resp = post_form(app, client, "/record/entries", &entry_fields(&token, title)).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER, "adding {title}");
    let to = location(&resp).unwrap();
    to.strip_prefix("/record/entries/")
        .expect("redirect to the new entry")
        .to_string()
}

pub fn entry_fields<'a>(token: &'a str, title: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("csrf_token", token),
        ("kind", "allergy"),
        ("title", title),
        ("date-day", "14"),
        ("date-month", "3"),
        ("date-year", "2024"),
        ("category", "general"),
        ("details", "Anaphylaxis in 2019"),
    ]
}

/// A multipart upload form; `token` first, as the page sends it.
pub fn upload_form(
    token: Option<&str>,
    title: &str,
    filename: &str,
    bytes: Vec<u8>,
) -> reqwest::multipart::Form {
    let mut form = reqwest::multipart::Form::new();
    if let Some(t) = token {
        form = form.text("csrf_token", t.to_string());
    }
    let part = reqwest::multipart::Part::bytes(bytes)
        .file_name(filename.to_string())
        .mime_str("application/octet-stream")
        .unwrap();
    form.text("title", title.to_string())
        .text("category", "general")
        .part("file", part)
}

/// Uploads a document through the form; returns its id (read off the list).
pub async fn upload(
    app: &TestApp,
    client: &Client,
    title: &str,
    filename: &str,
    bytes: Vec<u8>,
) -> String {
    let before = document_ids(app, client).await;
    let token = csrf_token(app, client, "/record/documents").await;
    let form = upload_form(Some(&token), title, filename, bytes);
    let resp = client
        .post(app.url("/record/documents"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER, "uploading {filename}");
    let after = document_ids(app, client).await;
    let new: Vec<_> = after
        .into_iter()
        .filter(|id| !before.contains(id))
        .collect();
    assert_eq!(new.len(), 1, "one new document listed");
    new[0].clone()
}

/// The ids of the documents linked from the documents page.
pub async fn document_ids(app: &TestApp, client: &Client) -> Vec<String> {
    let html = client
        .get(app.url("/record/documents"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let marker = "href=\"/record/documents/";
    html.match_indices(marker)
        .map(|(i, _)| {
            let rest = &html[i + marker.len()..];
            rest[..rest.find('"').unwrap()].to_string()
        })
        .collect()
}

/// A PDF by its magic bytes, carrying a marker that must not leak elsewhere.
pub fn pdf(marker: &str) -> Vec<u8> {
    format!("%PDF-1.4\n% {marker}\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n").into_bytes()
}

/// Sends `request` (raw HTTP/1.1 text) and returns the status code and the
/// whole response, so paths reach the server exactly as written.
pub async fn raw_request(addr: SocketAddr, request: String) -> (u16, String) {
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        let text = String::from_utf8_lossy(&out).to_string();
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (status, text)
    })
    .await
    .unwrap()
}

/// A valid NHS number, different for each `n`.
pub fn nhs(n: u32) -> NhsNumber {
    (0..100)
        .find_map(|k| {
            let nine = 943_476_000 + n * 100 + k;
            let digits: Vec<u8> = nine.to_string().bytes().map(|b| b - b'0').collect();
            NhsNumber::from_nine(digits.try_into().unwrap())
        })
        .unwrap()
}

/// Who `email` is, as their next request sees it (memberships included).
pub async fn principal_of(app: &TestApp, email: &str) -> Principal {
    let signed = app.core.sign_in(email, PASSWORD, None).await.unwrap();
    app.core.session(&signed.token).await.unwrap().unwrap()
}

/// GETs `path` as `client`: the status and the body.
pub async fn get(app: &TestApp, client: &Client, path: &str) -> (StatusCode, String) {
    let resp = client.get(app.url(path)).send().await.unwrap();
    let status = resp.status();
    (status, resp.text().await.unwrap())
}

/// An organisation whose first administrator signed up through the pages;
/// returns it and the administrator's browser.
pub async fn organisation(app: &TestApp, name: &str, admin_email: &str) -> (OrgId, Client) {
    let admin = signed_in(app, admin_email).await;
    let (org, first) = app
        .core
        .create_organisation(name, admin_email)
        .await
        .unwrap();
    assert!(matches!(first, FirstAdministrator::Existing(_)));
    (org, admin)
}

/// A signed-in member of `org` with `role`.
pub async fn member(app: &TestApp, org: OrgId, email: &str, role: StaffRole) -> Client {
    let client = signed_in(app, email).await;
    let account = principal_of(app, email).await.account;
    app.core.add_member(org, account, role).await.unwrap();
    client
}
