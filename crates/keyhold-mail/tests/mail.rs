//! keyhold-mail against a real folder and a real SMTP server on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod sink;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyhold_mail::{MailError, MailTransport, Mailer, OutgoingMail, DEFAULT_FROM};
use mailparse::{MailHeaderMap, ParsedMail};

use sink::{Silent, Sink};

const LINK: &str = "https://keyhold.example/account/verify/\
    Yq3vJ9kLmN0pQrStUvWxYz0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJ";

fn mail(to: &str) -> OutgoingMail {
    OutgoingMail {
        to: to.to_owned(),
        subject: "Vérifiez your email address".to_owned(),
        // Non-ASCII, a line longer than 76 characters, and a line starting with
        // a dot (SMTP dot-stuffing).
        text: format!("Hello,\n\nOpen this link to verify (café, naïve):\n{LINK}\n.\nKeyhold\n"),
    }
}

fn eml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn header(parsed: &ParsedMail<'_>, name: &str) -> String {
    parsed
        .headers
        .get_first_value(name)
        .unwrap_or_else(|| panic!("no {name} header"))
}

/// Checks the headers and body every message must have. Over SMTP the received
/// body may end in one more line break than was sent: lettre always ends the data
/// with `CRLF . CRLF`, and the first CRLF belongs to the data when the body
/// already ends with one.
fn check_message(raw: &[u8], to: &str, expected: &OutgoingMail) {
    let parsed = mailparse::parse_mail(raw).unwrap();
    assert_eq!(header(&parsed, "From"), DEFAULT_FROM);
    assert_eq!(header(&parsed, "To"), to);
    assert_eq!(header(&parsed, "Subject"), expected.subject);
    let id = header(&parsed, "Message-ID");
    assert!(
        id.starts_with('<') && id.ends_with("@keyhold.invalid>") && id.len() > 30,
        "{id}"
    );
    let date = mailparse::dateparse(&header(&parsed, "Date")).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((now - date).abs() < 120, "Date is {date}, now is {now}");
    assert_eq!(header(&parsed, "MIME-Version"), "1.0");
    assert_eq!(header(&parsed, "Auto-Submitted"), "auto-generated");
    assert_eq!(parsed.ctype.mimetype, "text/plain");
    assert_eq!(parsed.ctype.charset.to_ascii_lowercase(), "utf-8");
    assert!(parsed.subparts.is_empty());
    assert!(parsed.headers.get_first_value("Bcc").is_none());
    let body = parsed.get_body().unwrap().replace("\r\n", "\n");
    let body = match body.strip_suffix("\n\n") {
        Some(stripped) if expected.text.ends_with('\n') => format!("{stripped}\n"),
        _ => body,
    };
    assert_eq!(body, expected.text);
    // Every line of the wire form is within SMTP's limit.
    for line in raw.split(|b| *b == b'\n') {
        assert!(line.len() <= 998, "line of {} bytes", line.len());
    }
}

#[tokio::test]
async fn outbox_writes_a_parseable_eml_readable_only_by_its_owner() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data").join("outbox");
    let mailer = Mailer::new(MailTransport::Outbox(dir.clone()), DEFAULT_FROM).unwrap();
    assert_eq!(mailer.describe(), format!("outbox {}", dir.display()));
    assert_eq!(mode(&dir), 0o700, "the folder is created 0700");

    let sent = mail("bob@example.test");
    mailer.send(sent.clone()).await.unwrap();

    let files = eml_files(&dir);
    assert_eq!(files.len(), 1, "{files:?}");
    let file = &files[0];
    let name = file.file_name().unwrap().to_str().unwrap();
    assert!(name.ends_with(".eml") && !name.starts_with('.'), "{name}");
    assert_eq!(mode(file), 0o600);
    check_message(&std::fs::read(file).unwrap(), "bob@example.test", &sent);

    // A second message is a second file; names sort by time.
    mailer.send(mail("carol@example.test")).await.unwrap();
    assert_eq!(eml_files(&dir).len(), 2);
}

#[tokio::test]
async fn ascii_bodies_keep_long_links_whole_in_the_raw_message() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("outbox");
    let mailer = Mailer::new(MailTransport::Outbox(dir.clone()), DEFAULT_FROM).unwrap();
    let link = format!("{LINK}?next=/record&x={}", "y".repeat(100));
    let sent = OutgoingMail {
        to: "bob@example.test".into(),
        subject: "Reset your password".into(),
        text: format!("Open this link:\n{link}\n.hidden dot\n"),
    };
    mailer.send(sent.clone()).await.unwrap();
    let raw = std::fs::read_to_string(&eml_files(&dir)[0]).unwrap();
    assert!(raw.contains("Content-Transfer-Encoding: 7bit\r\n"), "{raw}");
    assert!(raw.contains(&format!("\r\n{link}\r\n")), "{raw}");
    check_message(raw.as_bytes(), "bob@example.test", &sent);
}

#[tokio::test]
async fn outbox_folder_open_to_others_is_tightened_and_a_removed_one_recreated() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("outbox");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mailer = Mailer::new(MailTransport::Outbox(dir.clone()), DEFAULT_FROM).unwrap();
    assert_eq!(mode(&dir), 0o700);

    std::fs::remove_dir(&dir).unwrap();
    mailer.send(mail("bob@example.test")).await.unwrap();
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(eml_files(&dir).len(), 1);
}

#[tokio::test]
async fn outbox_that_is_a_file_is_an_io_error() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("outbox");
    std::fs::write(&file, b"x").unwrap();
    let err = Mailer::new(MailTransport::Outbox(file), DEFAULT_FROM).unwrap_err();
    assert!(matches!(err, MailError::Io(_)), "{err:?}");
}

#[tokio::test]
async fn bad_recipients_are_refused_without_writing_or_echoing_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("outbox");
    let mailer = Mailer::new(MailTransport::Outbox(dir.clone()), DEFAULT_FROM).unwrap();
    for to in [
        "",
        "not-an-address",
        "secretname@",
        "@example.test",
        "Bob <bob@example.test>",
        "bob@example.test\r\nBcc: eve@example.test",
        "bob smith@example.test",
    ] {
        let err = mailer.send(mail(to)).await.unwrap_err();
        assert!(matches!(err, MailError::BadAddress(_)), "{to:?}: {err:?}");
        let shown = err.to_string();
        assert!(
            !shown.contains("secretname") && !shown.contains("bob@") && !shown.contains("eve@"),
            "{shown}"
        );
    }
    assert!(eml_files(&dir).is_empty());
}

#[tokio::test]
async fn a_subject_cannot_add_headers() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("outbox");
    let mailer = Mailer::new(MailTransport::Outbox(dir.clone()), DEFAULT_FROM).unwrap();
    let mut m = mail("bob@example.test");
    m.subject = "Hello\r\nBcc: eve@example.test\r\n\r\nfake body".to_owned();
    mailer.send(m).await.unwrap();
    let raw = std::fs::read(&eml_files(&dir)[0]).unwrap();
    let parsed = mailparse::parse_mail(&raw).unwrap();
    assert!(parsed.headers.get_first_value("Bcc").is_none());
    assert_eq!(
        header(&parsed, "Subject"),
        "Hello  Bcc: eve@example.test    fake body"
    );
    assert!(parsed.get_body().unwrap().starts_with("Hello,"));
}

#[test]
fn sender_and_url_are_checked_up_front_and_never_leak_the_password() {
    let tmp = tempfile::tempdir().unwrap();
    let outbox = MailTransport::Outbox(tmp.path().join("outbox"));
    for from in ["", "nope", "Keyhold <no-reply@>", "a@b@c"] {
        let err = Mailer::new(outbox.clone(), from).unwrap_err();
        assert!(matches!(err, MailError::BadAddress(_)), "{from:?}: {err:?}");
    }
    assert!(Mailer::new(outbox.clone(), "no-reply@keyhold.example").is_ok());

    for url in [
        "not a url",
        "http://mail.example.org",
        "smtp://mail.example.org?tls=maybe",
        "smtp:///nohost",
        // A password over plain or opportunistic SMTP to another host: refused.
        "smtp://user:hunter2@mail.example.org:25",
        "smtp://user:hunter2@mail.example.org:587?tls=opportunistic",
        // A user name with no password: surely a mistake.
        "smtps://user@mail.example.org",
    ] {
        let err = Mailer::new(MailTransport::Smtp(url.into()), DEFAULT_FROM).unwrap_err();
        assert!(matches!(err, MailError::Config(_)), "{url}: {err:?}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}

#[test]
fn describe_names_the_server_and_its_protection_but_no_credentials() {
    let cases = [
        ("smtp://127.0.0.1:2525", "smtp 127.0.0.1:2525"),
        ("smtp://localhost", "smtp localhost:25"),
        // Credentials over plain SMTP are allowed to a loopback relay.
        ("smtp://user:hunter2@127.0.0.1:2525", "smtp 127.0.0.1:2525"),
        (
            "smtps://user:hunter2@mail.example.org",
            "smtps mail.example.org:465 (implicit TLS)",
        ),
        (
            "smtp://user:hunter%40x@mail.example.org:587?tls=required",
            "smtp mail.example.org:587 (STARTTLS required)",
        ),
        (
            "smtp://mail.example.org?tls=opportunistic",
            "smtp mail.example.org:587 (STARTTLS if offered)",
        ),
        ("smtp://[::1]:2525", "smtp [::1]:2525"),
    ];
    for (url, expected) in cases {
        let mailer = Mailer::new(MailTransport::Smtp(url.into()), DEFAULT_FROM).unwrap();
        assert_eq!(mailer.describe(), expected, "{url}");
        let debug = format!("{mailer:?}");
        assert!(
            !debug.contains("hunter") && !debug.contains("user"),
            "{debug}"
        );
    }
}

#[test]
fn transport_from_setting() {
    let data = Path::new("/var/lib/keyhold");
    assert_eq!(
        MailTransport::from_setting(None, data),
        MailTransport::Outbox(data.join("outbox"))
    );
    assert_eq!(
        MailTransport::from_setting(Some("  "), data),
        MailTransport::Outbox(data.join("outbox"))
    );
    assert_eq!(
        MailTransport::from_setting(Some(" smtp://127.0.0.1:2525 "), data),
        MailTransport::Smtp("smtp://127.0.0.1:2525".into())
    );
}

#[tokio::test]
async fn smtp_delivers_to_a_real_server() {
    let sink = Sink::start().await;
    let mailer = Mailer::new(MailTransport::Smtp(sink.url()), DEFAULT_FROM).unwrap();
    assert_eq!(mailer.describe(), format!("smtp 127.0.0.1:{}", sink.port));

    let sent = mail("bob@example.test");
    mailer.send(sent.clone()).await.unwrap();

    let received = sink.received();
    assert_eq!(received.len(), 1);
    let got = &received[0];
    assert_eq!(got.mail_from, "no-reply@keyhold.invalid");
    assert_eq!(got.rcpt_to, vec!["bob@example.test".to_owned()]);
    assert!(!got.helo.is_empty());
    check_message(got.data.as_bytes(), "bob@example.test", &sent);
}

#[tokio::test]
async fn one_mailer_is_shared_by_concurrent_senders() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Mailer>();

    let sink = Sink::start().await;
    let mailer = Arc::new(Mailer::new(MailTransport::Smtp(sink.url()), DEFAULT_FROM).unwrap());
    let tasks: Vec<_> = (0..5)
        .map(|i| {
            let mailer = Arc::clone(&mailer);
            tokio::spawn(async move { mailer.send(mail(&format!("user{i}@example.test"))).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let mut to: Vec<String> = sink
        .received()
        .into_iter()
        .flat_map(|r| r.rcpt_to)
        .collect();
    to.sort();
    assert_eq!(
        to,
        (0..5)
            .map(|i| format!("user{i}@example.test"))
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_refused_recipient_is_a_send_error_that_does_not_repeat_the_address() {
    let sink = Sink::start().await;
    let mailer = Mailer::new(MailTransport::Smtp(sink.url()), DEFAULT_FROM).unwrap();
    let err = mailer.send(mail("nobody@example.test")).await.unwrap_err();
    let MailError::Send(text) = &err else {
        panic!("{err:?}")
    };
    assert!(text.contains("550"), "{text}");
    assert!(text.contains("n***@example.test"), "{text}");
    assert!(!text.contains("nobody@"), "{text}");
    assert!(sink.received().is_empty());
}

#[tokio::test]
async fn nothing_listening_is_a_prompt_send_error() {
    // A port that was free a moment ago: connecting is refused.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mailer = Mailer::new(
        MailTransport::Smtp(format!("smtp://127.0.0.1:{port}")),
        DEFAULT_FROM,
    )
    .unwrap();
    let started = Instant::now();
    let err = mailer.send(mail("bob@example.test")).await.unwrap_err();
    assert!(matches!(err, MailError::Send(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_server_that_never_answers_is_a_send_error_after_the_timeout() {
    let silent = Silent::start().await;
    let mailer = Mailer::new(
        MailTransport::Smtp(format!("smtp://127.0.0.1:{}", silent.port)),
        DEFAULT_FROM,
    )
    .unwrap()
    .with_timeout(Duration::from_millis(500));
    let started = Instant::now();
    let err = mailer.send(mail("bob@example.test")).await.unwrap_err();
    let elapsed = started.elapsed();
    let MailError::Send(text) = &err else {
        panic!("{err:?}")
    };
    assert!(text.contains("did not finish within 500 ms"), "{text}");
    assert!(
        elapsed >= Duration::from_millis(450) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn tls_that_the_server_cannot_speak_is_a_send_error_not_a_panic() {
    // Exercises the rustls set-up (crypto provider, roots) for both TLS modes
    // against a server that speaks only plain SMTP.
    let sink = Sink::start().await;
    for url in [
        format!("smtps://127.0.0.1:{}", sink.port),
        format!("smtp://127.0.0.1:{}?tls=required", sink.port),
    ] {
        let mailer = Mailer::new(MailTransport::Smtp(url.clone()), DEFAULT_FROM)
            .unwrap()
            .with_timeout(Duration::from_secs(3));
        let err = mailer.send(mail("bob@example.test")).await.unwrap_err();
        assert!(matches!(err, MailError::Send(_)), "{url}: {err:?}");
    }
    assert!(sink.received().is_empty());
}
