//! Outgoing mail for Keyhold: one plain-text message at a time, either written
//! to an outbox folder as an `.eml` file or handed to an SMTP relay (lettre).
//!
//! This crate knows nothing of patients or records. The domain decides *what*
//! to send and calls [`Mailer::send`]; the binary decides *how* from its
//! environment ([`Mailer::from_env`], or [`Mailer::new`] with an explicit
//! [`MailTransport`]).
//!
//! # What may go in a message (the callers' rule)
//!
//! - Bodies never carry record content (no health data, name, NHS number, date of
//!   birth, address, note) and never a password. They carry a short fixed notice and,
//!   at most, a link holding a single-use token. This crate cannot check that; it
//!   is the rule for every caller.
//! - Subjects are written to the log, so they are fixed texts with no personal data.
//!
//! # What is logged
//!
//! "mail sent" (or "mail written to outbox", with the file's path) with the subject
//! and the Message-ID only. Never the recipient, never the body. The errors that
//! [`Mailer::send`] returns replace the recipient's address with a redacted form
//! (SMTP servers often repeat it in their replies), so callers may log them.

use std::fmt;
use std::fs::{self, DirBuilder, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use lettre::message::header::ContentTransferEncoding;
use lettre::message::header::{ContentType, HeaderName, HeaderValue, MIME_VERSION_1_0};
use lettre::message::{Body, Mailbox};
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tracing::{info, warn};
use uuid::Uuid;

/// Environment variable: the SMTP URL. When set (and not empty) mail goes over SMTP,
/// otherwise to the outbox folder `<data>/outbox`.
pub const ENV_SMTP_URL: &str = "KEYHOLD_SMTP_URL";
/// Environment variable: the `From` mailbox.
pub const ENV_MAIL_FROM: &str = "KEYHOLD_MAIL_FROM";
/// The `From` mailbox when [`ENV_MAIL_FROM`] is not set.
pub const DEFAULT_FROM: &str = "Keyhold <no-reply@keyhold.invalid>";
/// The outbox folder's name inside the data folder.
pub const OUTBOX_DIR: &str = "outbox";
/// How long one SMTP delivery (connect, TLS, the whole conversation) may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// RFC 3834: tells mail systems not to answer automatically (holiday replies).
const AUTO_SUBMITTED: HeaderName = HeaderName::new_from_ascii_str("Auto-Submitted");

/// One plain-text message.
///
/// `text` never carries record content or passwords, and `subject` is logged: see the
/// crate documentation. `Debug` redacts the recipient and leaves the body out.
#[derive(Clone, PartialEq, Eq)]
pub struct OutgoingMail {
    /// The recipient: a bare address (`someone@example.org`), no display name.
    pub to: String,
    /// One line; control characters (line breaks included) become spaces.
    pub subject: String,
    /// The text/plain UTF-8 body. Line ends become CRLF on the wire. ASCII text with
    /// lines up to 998 characters goes as `7bit` (links stay whole in the raw
    /// message); anything else as quoted-printable or base64.
    pub text: String,
}

impl fmt::Debug for OutgoingMail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutgoingMail")
            .field("to", &redact_address(&self.to))
            .field("subject", &self.subject)
            .field("text", &format_args!("<{} bytes>", self.text.len()))
            .finish()
    }
}

/// Where messages go.
#[derive(Clone, PartialEq, Eq)]
pub enum MailTransport {
    /// Each message written as an RFC 5322 `.eml` file in this folder (created 0700,
    /// files 0600); the path is logged. For development and tests: the files hold
    /// recipients' addresses and links in plain text.
    Outbox(PathBuf),
    /// SMTP via lettre. The URL as lettre's `from_url` understands it:
    /// `smtp://127.0.0.1:2525` (plain, for a local sink), `smtps://user:pass@host:465`
    /// (implicit TLS), `smtp://user:pass@host:587?tls=required` (STARTTLS, required),
    /// `?tls=opportunistic` (STARTTLS when offered). User and password are
    /// percent-decoded; a path (`smtp://host/name`) sets the EHLO name.
    Smtp(String),
}

impl MailTransport {
    /// The transport the binary's settings ask for: SMTP when `smtp_url` is set and
    /// not blank, else the outbox folder `<data_dir>/outbox`.
    pub fn from_setting(smtp_url: Option<&str>, data_dir: &Path) -> MailTransport {
        match smtp_url.map(str::trim) {
            Some(url) if !url.is_empty() => MailTransport::Smtp(url.to_owned()),
            _ => MailTransport::Outbox(data_dir.join(OUTBOX_DIR)),
        }
    }
}

impl fmt::Debug for MailTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MailTransport::Outbox(dir) => f.debug_tuple("Outbox").field(dir).finish(),
            MailTransport::Smtp(url) => f
                .debug_tuple("Smtp")
                .field(&redact_url_secrets(url))
                .finish(),
        }
    }
}

/// Why a message could not be built or sent.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The recipient (or configured sender) is not an address. The recipient appears
    /// only in redacted form.
    #[error("bad address: {0}")]
    BadAddress(String),
    /// The transport setting is unusable (bad URL, unknown scheme, credentials over
    /// an unencrypted connection). Never holds the password.
    #[error("mail configuration: {0}")]
    Config(String),
    /// The SMTP server could not be reached, refused the message, or did not answer
    /// in time. The recipient appears only in redacted form.
    #[error("mail not sent: {0}")]
    Send(String),
    /// Writing to the outbox folder failed.
    #[error("mail outbox: {0}")]
    Io(#[from] io::Error),
}

/// Sends [`OutgoingMail`]. `Send + Sync`; share it in an `Arc`. Every SMTP message
/// opens its own connection (no pool: mail is rare, and a stale pooled connection
/// is one more failure mode).
pub struct Mailer {
    from: Mailbox,
    /// The right-hand side of generated Message-IDs: the sender's domain.
    id_domain: String,
    timeout: Duration,
    route: Route,
}

enum Route {
    Outbox(PathBuf),
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        endpoint: String,
    },
}

impl fmt::Debug for Mailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mailer")
            .field("transport", &self.describe())
            .field("from", &self.from.to_string())
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Mailer {
    /// Checks `from` (a mailbox: `Name <addr>` or a bare address) and the transport up
    /// front. For the outbox, creates the folder (0700) or tightens an existing one's
    /// permissions to 0700. For SMTP, parses the URL; refuses credentials over a
    /// connection that is not sure to be encrypted (unless the host is loopback), and
    /// warns when mail would cross the network unencrypted. Connects to nothing.
    pub fn new(transport: MailTransport, from: &str) -> Result<Mailer, MailError> {
        let from = Mailbox::from_str(from.trim())
            .map_err(|e| MailError::BadAddress(format!("sender {from:?}: {e}")))?;
        let id_domain = from.email.domain().to_owned();
        let route = match transport {
            MailTransport::Outbox(dir) => {
                ensure_private_dir(&dir)?;
                Route::Outbox(dir)
            }
            MailTransport::Smtp(url) => smtp_route(&url)?,
        };
        Ok(Mailer {
            from,
            id_domain,
            timeout: DEFAULT_TIMEOUT,
            route,
        })
    }

    /// The mailer the binary's environment asks for: [`ENV_SMTP_URL`] (SMTP when set,
    /// else the outbox `<data_dir>/outbox`) and [`ENV_MAIL_FROM`] (default
    /// [`DEFAULT_FROM`]). Empty values count as unset.
    pub fn from_env(data_dir: &Path) -> Result<Mailer, MailError> {
        let smtp_url = env_value(ENV_SMTP_URL)?;
        let from = env_value(ENV_MAIL_FROM)?;
        let from = from
            .as_deref()
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .unwrap_or(DEFAULT_FROM);
        Mailer::new(
            MailTransport::from_setting(smtp_url.as_deref(), data_dir),
            from,
        )
    }

    /// Replaces the SMTP time limit ([`DEFAULT_TIMEOUT`]): the whole delivery of one
    /// message, from connecting to the server's answer after the data, must fit in
    /// it. No effect on the outbox.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Mailer {
        self.timeout = timeout;
        self
    }

    /// For start-up logs: `outbox /x/outbox`, `smtp 127.0.0.1:2525`,
    /// `smtp mail.example.org:587 (STARTTLS required)`,
    /// `smtps mail.example.org:465 (implicit TLS)`. Never the user name or password.
    pub fn describe(&self) -> String {
        match &self.route {
            Route::Outbox(dir) => format!("outbox {}", dir.display()),
            Route::Smtp { endpoint, .. } => endpoint.clone(),
        }
    }

    /// Builds the message (`From`, `To`, `Subject`, `Date`, `Message-ID`,
    /// `MIME-Version`, `Content-Type: text/plain; charset=utf-8`, `Auto-Submitted`)
    /// and writes it to the outbox or delivers it to the SMTP server, which has
    /// accepted it when this returns `Ok`.
    pub async fn send(&self, mail: OutgoingMail) -> Result<(), MailError> {
        let OutgoingMail { to, subject, text } = mail;
        let recipient = Address::from_str(&to).map_err(|e| {
            MailError::BadAddress(format!("recipient {}: {e}", redact_address(&to)))
        })?;
        let subject = one_line(&subject);
        let message_id = format!("<{}@{}>", Uuid::new_v4().simple(), self.id_domain);
        let message = Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(None, recipient))
            .subject(subject.clone())
            .message_id(Some(message_id.clone()))
            .header(MIME_VERSION_1_0)
            .header(ContentType::TEXT_PLAIN)
            .raw_header(HeaderValue::new(
                AUTO_SUBMITTED,
                "auto-generated".to_owned(),
            ))
            .body(text_body(text))
            .map_err(|e| MailError::Send(format!("could not build the message: {e}")))?;

        match &self.route {
            Route::Outbox(dir) => {
                let dir = dir.clone();
                let bytes = message.formatted();
                let name = outbox_file_name()?;
                let written = tokio::task::spawn_blocking(move || write_eml(&dir, &name, &bytes))
                    .await
                    .map_err(|e| MailError::Io(io::Error::other(e.to_string())))?;
                match written {
                    Ok(path) => {
                        info!(subject = %subject, message_id = %message_id, path = %path.display(), "mail written to outbox");
                        Ok(())
                    }
                    Err(e) => {
                        warn!(subject = %subject, message_id = %message_id, error = %e, "mail not written to outbox");
                        Err(MailError::Io(e))
                    }
                }
            }
            Route::Smtp {
                transport,
                endpoint,
            } => {
                let outcome = tokio::time::timeout(self.timeout, transport.send(message)).await;
                let error = match outcome {
                    Ok(Ok(_response)) => {
                        info!(subject = %subject, message_id = %message_id, via = %endpoint, "mail sent");
                        return Ok(());
                    }
                    Ok(Err(e)) => redact_recipient(&e.to_string(), &to),
                    Err(_elapsed) => format!(
                        "{endpoint} did not finish within {} ms",
                        self.timeout.as_millis()
                    ),
                };
                warn!(subject = %subject, message_id = %message_id, via = %endpoint, error = %error, "mail not sent");
                Err(MailError::Send(error))
            }
        }
    }
}

/// Reads an environment variable; unset is `None`, non-UTF-8 is a `Config` error.
fn env_value(name: &str) -> Result<Option<String>, MailError> {
    match std::env::var(name) {
        Ok(v) => Ok(Some(v)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => {
            Err(MailError::Config(format!("{name} is not valid UTF-8")))
        }
    }
}

/// How the connection to the relay is protected, from the URL.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Protection {
    Plain,
    StartTlsIfOffered,
    StartTlsRequired,
    ImplicitTls,
}

fn smtp_route(raw: &str) -> Result<Route, MailError> {
    // Error texts never include the URL: it may hold a password.
    let url = url::Url::parse(raw)
        .map_err(|e| MailError::Config(format!("the SMTP URL does not parse: {e}")))?;
    let tls = url
        .query_pairs()
        .find(|(k, _)| k == "tls")
        .map(|(_, v)| v.into_owned());
    let (protection, default_port) = match (url.scheme(), tls.as_deref()) {
        ("smtp", None) => (Protection::Plain, 25),
        ("smtp", Some("required")) => (Protection::StartTlsRequired, 587),
        ("smtp", Some("opportunistic")) => (Protection::StartTlsIfOffered, 587),
        ("smtp", Some(other)) => {
            return Err(MailError::Config(format!(
                "unknown tls={other:?} in the SMTP URL (use tls=required or tls=opportunistic)"
            )))
        }
        ("smtps", _) => (Protection::ImplicitTls, 465),
        (scheme, _) => {
            return Err(MailError::Config(format!(
                "unknown scheme {scheme:?} in the SMTP URL (use smtp:// or smtps://)"
            )))
        }
    };
    let host = match url.host() {
        Some(host) => host,
        None => return Err(MailError::Config("the SMTP URL has no host".to_owned())),
    };
    let loopback = match &host {
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
        // `smtp` is not a "special" URL scheme, so the url crate leaves IPv4
        // addresses as opaque host names.
        url::Host::Domain(name) => {
            name.eq_ignore_ascii_case("localhost")
                || name
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
    };
    let port = url.port().unwrap_or(default_port);
    let has_credentials = url.password().is_some();
    let encrypted = matches!(
        protection,
        Protection::StartTlsRequired | Protection::ImplicitTls
    );
    if has_credentials && !encrypted && !loopback {
        return Err(MailError::Config(
            "the SMTP URL sends a password over a connection that may not be encrypted; \
             use smtps:// or ?tls=required"
                .to_owned(),
        ));
    }
    if !url.username().is_empty() && !has_credentials {
        return Err(MailError::Config(
            "the SMTP URL has a user name but no password".to_owned(),
        ));
    }

    let host_port = match &host {
        url::Host::Ipv6(ip) => format!("[{ip}]:{port}"),
        other => format!("{other}:{port}"),
    };
    let endpoint = match protection {
        Protection::Plain => format!("smtp {host_port}"),
        Protection::StartTlsIfOffered => format!("smtp {host_port} (STARTTLS if offered)"),
        Protection::StartTlsRequired => format!("smtp {host_port} (STARTTLS required)"),
        Protection::ImplicitTls => format!("smtps {host_port} (implicit TLS)"),
    };
    if !encrypted && !loopback {
        warn!(via = %endpoint, "mail to this SMTP server may travel unencrypted: links in it could be read on the way; use smtps:// or ?tls=required");
    }

    let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(raw)
        .map_err(|e| MailError::Config(format!("the SMTP URL is not usable: {e}")))?
        // Our own time limit covers the whole delivery (see `send`); lettre's only
        // covers connecting.
        .timeout(None)
        .build();
    Ok(Route::Smtp {
        transport,
        endpoint,
    })
}

/// Creates `dir` (and parents) with mode 0700, or tightens an existing folder to 0700.
fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    let context = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", dir.display()));
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                fs::set_permissions(dir, Permissions::from_mode(0o700)).map_err(context)?;
                warn!(path = %dir.display(), was = %format!("{mode:o}"), "outbox folder was open to group or others; set to 0700");
            }
            Ok(())
        }
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a folder", dir.display()),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(context)?;
            // The umask may have taken bits away, never added them; make it exact.
            fs::set_permissions(dir, Permissions::from_mode(0o700)).map_err(context)
        }
        Err(e) => Err(context(e)),
    }
}

/// `20250102T030405Z-<uuid>.eml`: sorts by time, never collides.
fn outbox_file_name() -> Result<String, MailError> {
    let stamp = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .map_err(|e| MailError::Io(io::Error::other(e.to_string())))?;
    Ok(format!("{stamp}-{}.eml", Uuid::new_v4().simple()))
}

/// Writes the file under a hidden temporary name (0600), syncs it, then renames it,
/// so a reader of the folder never sees half a message.
fn write_eml(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<PathBuf> {
    ensure_private_dir(dir)?;
    let tmp = dir.join(format!(".{name}.tmp"));
    let path = dir.join(name);
    let write = || -> io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, &path)
    };
    match write() {
        Ok(()) => Ok(path),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(io::Error::new(e.kind(), format!("{}: {e}", path.display())))
        }
    }
}

/// Longest line SMTP and RFC 5322 allow, without its CRLF.
const MAX_LINE: usize = 998;

/// The body, as `7bit` when it is ASCII text whose lines fit SMTP's limit (so links
/// stay whole and greppable in an outbox file), else whatever lettre finds best
/// (quoted-printable or base64). Line ends become CRLF either way.
fn text_body(text: String) -> Body {
    let unified = text.replace("\r\n", "\n").replace('\r', "\n");
    let plain_ascii = unified.split('\n').all(|line| {
        line.len() <= MAX_LINE
            && line
                .bytes()
                .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
    });
    if plain_ascii {
        // Checked above: ASCII, no NUL or other control characters, short lines.
        Body::dangerous_pre_encoded(
            unified.replace('\n', "\r\n").into_bytes(),
            ContentTransferEncoding::SevenBit,
        )
    } else {
        Body::new(text)
    }
}

/// The subject on one line: control characters (CR, LF, tab…) become spaces.
fn one_line(subject: &str) -> String {
    subject
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
}

/// `someone@example.org` → `s***@example.org`; anything without an `@` → `***`.
fn redact_address(address: &str) -> String {
    match address.rsplit_once('@') {
        Some((local, domain)) => match local.chars().next() {
            Some(first) => format!("{first}***@{domain}"),
            None => format!("***@{domain}"),
        },
        None => "***".to_owned(),
    }
}

/// Replaces every occurrence of `address` in `text` (ASCII case-insensitively, as
/// servers may change its case) with its redacted form.
fn redact_recipient(text: &str, address: &str) -> String {
    if address.is_empty() {
        return text.to_owned();
    }
    let hay = text.to_ascii_lowercase();
    let needle = address.to_ascii_lowercase();
    let replacement = redact_address(address);
    let mut out = String::with_capacity(text.len());
    let mut rest = 0;
    // ASCII lowercasing keeps byte offsets, so positions in `hay` are positions in `text`.
    for (at, _) in hay.match_indices(&needle) {
        if at < rest {
            continue;
        }
        out.push_str(&text[rest..at]);
        out.push_str(&replacement);
        rest = at + needle.len();
    }
    out.push_str(&text[rest..]);
    out
}

/// The URL with its password (and user name) replaced, for `Debug`.
fn redact_url_secrets(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) => {
            if url.password().is_some() {
                let _ = url.set_password(Some("***"));
            }
            if !url.username().is_empty() {
                let _ = url.set_username("***");
            }
            url.to_string()
        }
        Err(_) => "<unparsable URL>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_addresses() {
        assert_eq!(redact_address("someone@example.org"), "s***@example.org");
        assert_eq!(redact_address("@example.org"), "***@example.org");
        assert_eq!(redact_address("nonsense"), "***");
        assert_eq!(
            redact_recipient(
                "permanent error (550): <Bob@Example.test>: no such user bob@example.test",
                "bob@example.test"
            ),
            "permanent error (550): <b***@example.test>: no such user b***@example.test"
        );
    }

    #[test]
    fn subjects_stay_on_one_line() {
        assert_eq!(one_line("Hi\r\nBcc: x@y.z\t!"), "Hi  Bcc: x@y.z !");
    }

    #[test]
    fn url_secrets_never_print() {
        let t = MailTransport::Smtp("smtps://user:s3cret@mail.example.org:465".into());
        let shown = format!("{t:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("user"),
            "{shown}"
        );
        assert_eq!(
            format!("{:?}", MailTransport::Smtp("not a url".into())),
            "Smtp(\"<unparsable URL>\")"
        );
    }

    #[test]
    fn debug_of_a_mail_hides_recipient_and_body() {
        let mail = OutgoingMail {
            to: "someone@example.org".into(),
            subject: "Verify your email address".into(),
            text: "https://keyhold.example/verify/TOKEN".into(),
        };
        let shown = format!("{mail:?}");
        assert!(
            !shown.contains("someone@") && !shown.contains("TOKEN"),
            "{shown}"
        );
    }
}
