//! Signed audit checkpoints: what lets `keyhold audit verify` see a truncated
//! audit tail, which the hash chain alone cannot.
//!
//! A checkpoint is a [C2SP signed note] whose text is a [C2SP tlog-checkpoint]
//! body:
//!
//! ```text
//! keyhold/audit/3f9c…e1          origin: this store's audit log, for good
//! 1234                           size: entries 0..=1233 are covered
//! q83vEjRWeJq8…=                 root: base64 of entry 1233's chain hash
//!
//! — keyhold-audit AbCdEf…        key name, base64(key id[4] ‖ Ed25519 signature[64])
//! ```
//!
//! The signature is over the text (the three lines with their newlines), the
//! key id is `SHA-256("keyhold-audit" ‖ "\n" ‖ 0x01 ‖ public key)[..4]`, as the
//! signed-note spec recommends for Ed25519.
//!
//! **The root is a chain head, not a Merkle root.** tlog-checkpoint means an
//! RFC 6962 Merkle tree hash; ours is the hash of entry `size - 1` of the hash
//! chain (`audit.rs`), which already commits to every entry before it. A
//! Merkle root buys short inclusion and consistency proofs for third parties
//! who cannot read the log; our only verifier is the operator, who holds the
//! whole log and proves "append-only since the checkpoint" by walking the
//! chain again: if entry `size - 1` still has the signed hash, entries
//! `0..size` are exactly those signed. So the format is shared (and a note
//! reader can parse it) but a generic tlog client must not take the root for
//! a Merkle root.
//!
//! Checkpoints are written twice: to an append-only file outside the store
//! (which the operator should copy off the host: a disk attacker who can cut
//! the store's tail can also delete the store's checkpoints) and to the
//! [`CHECKPOINTS`] tree, keyed by size. [`verify_checkpoints`] walks the chain
//! once and checks every checkpoint from both: signature, origin, size within
//! the chain (else the tail was truncated) and root equal to the chain's hash
//! at that size (else the history was rewritten).
//!
//! The key name is one fixed name for every store, rather than the origin as
//! tlog-checkpoint suggests, so a note's key id depends on the public key
//! alone; the origin line is what binds a note to one store.
//!
//! [C2SP signed note]: https://c2sp.org/signed-note
//! [C2SP tlog-checkpoint]: https://c2sp.org/tlog-checkpoint

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::OpenOptions;
use std::future::Future;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use keyhold_crypto::{random_array, sha256, verify_signature, AuditSigningKey};
use keyhold_storage::{Batch, StorageError, Store};

use crate::audit::{self, ChainBreak};
use crate::trees::{AUDIT, CHECKPOINTS, META};
use crate::{DomainError, Keyhold};

/// The signed-note key name of every Keyhold audit signing key.
pub const KEY_NAME: &str = "keyhold-audit";
/// Origins are this prefix and 32 random hex digits, created once per store.
pub const ORIGIN_PREFIX: &str = "keyhold/audit/";
/// `META` key holding the store's origin (UTF-8).
pub const ORIGIN_KEY: &[u8] = b"audit_origin";
/// The signed-note signature type of Ed25519.
const ED25519: u8 = 0x01;
/// A signature line starts with an em dash and a space.
const SIG_PREFIX: &str = "\u{2014} ";
/// Notes longer than this are refused unread (ours are under 200 bytes; this
/// leaves room for the 16 signatures a note reader must accept).
pub const MAX_NOTE_BYTES: usize = 8 * 1024;
/// Signature lines accepted in one note.
const MAX_SIGNATURES: usize = 16;
/// How much of the checkpoints file the writer reads to find its last note.
const TAIL_BYTES: u64 = 16 * 1024;
const MAX_ORIGIN_BYTES: usize = 256;

/// The signed statement "this log had `size` entries, the last with hash `root`".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: [u8; 32],
}

impl Checkpoint {
    /// The note text that is signed: `origin\nsize\nbase64(root)\n`.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        )
    }

    /// The whole signed note: the body, a blank line, one signature line.
    pub fn sign(&self, key: &AuditSigningKey) -> String {
        let body = self.body();
        let mut sig = Vec::with_capacity(4 + 64);
        sig.extend_from_slice(&key_id(KEY_NAME, &key.public_key()));
        sig.extend_from_slice(&key.sign(body.as_bytes()));
        format!("{body}\n{SIG_PREFIX}{KEY_NAME} {}\n", STANDARD.encode(sig))
    }
}

/// The signed-note key id of an Ed25519 key:
/// `SHA-256(name ‖ "\n" ‖ 0x01 ‖ public key)[..4]`.
pub fn key_id(name: &str, public_key: &[u8; 32]) -> [u8; 4] {
    let mut m = Vec::with_capacity(name.len() + 2 + 32);
    m.extend_from_slice(name.as_bytes());
    m.push(b'\n');
    m.push(ED25519);
    m.extend_from_slice(public_key);
    let h = sha256(&m);
    [h[0], h[1], h[2], h[3]]
}

/// Why a note was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoteError {
    /// Not a signed note, or not a checkpoint body; says which rule it breaks.
    Malformed(&'static str),
    /// Well formed, but no signature line is by the audit signing key.
    NotSigned,
    /// A signature line names the audit key (name and key id) but does not
    /// verify: the text was changed after signing, or the signature forged.
    BadSignature,
}

impl fmt::Display for NoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoteError::Malformed(why) => write!(f, "not a well-formed signed checkpoint: {why}"),
            NoteError::NotSigned => write!(
                f,
                "it carries no signature by this store's audit signing key ({KEY_NAME}): \
                 signed by another key, or forged"
            ),
            NoteError::BadSignature => write!(
                f,
                "its {KEY_NAME} signature does not verify: the note was altered after signing, or forged"
            ),
        }
    }
}

fn malformed<T>(why: &'static str) -> Result<T, NoteError> {
    Err(NoteError::Malformed(why))
}

/// A valid key name or origin: non-empty, no Unicode space, no `+`, no control
/// character (signed-note's rule for key names, tlog-checkpoint's advice for
/// origins).
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ORIGIN_BYTES
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || c.is_control())
}

/// Opens a signed note: checks its shape and that a signature by `name` with
/// `public_key` verifies over its text; returns the text (with its final
/// newline). Signatures by other keys are ignored, as the spec requires; a
/// signature that claims to be ours but fails refuses the whole note.
pub fn open_signed<'a>(
    note: &'a str,
    name: &str,
    public_key: &[u8; 32],
) -> Result<&'a str, NoteError> {
    if note.len() > MAX_NOTE_BYTES {
        return malformed("longer than a checkpoint can be");
    }
    if note.chars().any(|c| c < ' ' && c != '\n') {
        return malformed("it holds a control character");
    }
    if !note.ends_with('\n') {
        return malformed("it does not end with a newline");
    }
    let Some(split) = note.rfind("\n\n") else {
        return malformed("no blank line separates the text from the signatures");
    };
    let (Some(text), Some(sigs)) = (note.get(..split + 1), note.get(split + 2..)) else {
        return malformed("no blank line separates the text from the signatures");
    };
    if sigs.is_empty() {
        return malformed("no signature line after the blank line");
    }
    let want_id = key_id(name, public_key);
    let mut verified = false;
    for (i, line) in sigs
        .strip_suffix('\n')
        .unwrap_or(sigs)
        .split('\n')
        .enumerate()
    {
        if i >= MAX_SIGNATURES {
            return malformed("too many signature lines");
        }
        let Some(rest) = line.strip_prefix(SIG_PREFIX) else {
            return malformed("a signature line does not start with an em dash and a space");
        };
        let Some((signer, b64)) = rest.split_once(' ') else {
            return malformed("a signature line has no key name and signature");
        };
        if !valid_name(signer) {
            return malformed("a signature line has an invalid key name");
        }
        let Ok(bytes) = STANDARD.decode(b64) else {
            return malformed("a signature is not base64");
        };
        if bytes.len() < 4 {
            return malformed("a signature is shorter than its key id");
        }
        if signer != name || bytes.get(..4) != Some(&want_id[..]) {
            continue; // someone else's signature: ignored
        }
        match bytes.get(4..) {
            Some(sig) if sig.len() == 64 && verify_signature(public_key, text.as_bytes(), sig) => {
                verified = true;
            }
            _ => return Err(NoteError::BadSignature),
        }
    }
    if verified {
        Ok(text)
    } else {
        Err(NoteError::NotSigned)
    }
}

/// Opens a checkpoint signed by the audit key `public_key`. The text is read
/// only once the signature has verified.
pub fn open_note(note: &str, public_key: &[u8; 32]) -> Result<Checkpoint, NoteError> {
    let text = open_signed(note, KEY_NAME, public_key)?;
    let mut lines = text.strip_suffix('\n').unwrap_or(text).split('\n');
    let (Some(origin), Some(size), Some(root), None) =
        (lines.next(), lines.next(), lines.next(), lines.next())
    else {
        return malformed("the text is not exactly origin, size and root hash lines");
    };
    if !valid_name(origin) {
        return malformed("the origin line is empty or holds spaces or '+'");
    }
    if size.is_empty()
        || !size.bytes().all(|b| b.is_ascii_digit())
        || (size.len() > 1 && size.starts_with('0'))
    {
        return malformed("the size line is not a decimal number without leading zeros");
    }
    let Ok(size) = size.parse::<u64>() else {
        return malformed("the size is too large");
    };
    if size == 0 {
        return malformed("a checkpoint of an empty log is never signed");
    }
    let root_bytes = STANDARD.decode(root).ok();
    let Some(root_arr) = root_bytes.and_then(|b| <[u8; 32]>::try_from(b).ok()) else {
        return malformed("the root hash line is not 32 bytes of base64");
    };
    if STANDARD.encode(root_arr) != root {
        return malformed("the root hash is not in canonical base64");
    }
    Ok(Checkpoint {
        origin: origin.to_string(),
        size,
        root: root_arr,
    })
}

/// Splits the text of a checkpoints file into notes, each with the line it
/// starts on (1-based). A note is text lines, one blank line, signature lines;
/// blank lines between notes are skipped. A fragment left by a torn write
/// becomes a note of its own (which then fails to open), so the notes after
/// it still stand alone.
pub fn split_notes(text: &str) -> Vec<(usize, &str)> {
    #[derive(PartialEq)]
    enum State {
        Between,
        Text,
        Blank,
        Sigs,
    }
    let mut out = Vec::new();
    let mut state = State::Between;
    let mut start = (0usize, 0usize); // (byte offset, line number)
    let mut offset = 0usize;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let blank = line == "\n";
        let sig = line.starts_with(SIG_PREFIX);
        let mut push = |from: (usize, usize), to: usize| {
            if let Some(note) = text.get(from.0..to) {
                out.push((from.1, note));
            }
        };
        state = match (state, blank, sig) {
            (State::Between, true, _) => State::Between,
            (State::Between, false, s) => {
                start = (offset, i + 1);
                if s {
                    State::Sigs
                } else {
                    State::Text
                }
            }
            (State::Text, true, _) => State::Blank,
            (State::Text, false, true) => State::Sigs,
            (State::Text, false, false) => State::Text,
            (State::Blank, _, true) => State::Sigs,
            (State::Blank, true, false) => {
                push(start, offset);
                State::Between
            }
            (State::Blank, false, false) | (State::Sigs, false, false) => {
                push(start, offset);
                start = (offset, i + 1);
                State::Text
            }
            (State::Sigs, true, _) => {
                push(start, offset);
                State::Between
            }
            (State::Sigs, false, true) => State::Sigs,
        };
        offset += line.len();
    }
    if state != State::Between {
        if let Some(note) = text.get(start.0..) {
            out.push((start.1, note));
        }
    }
    out
}

/// This store's origin, if it has one yet.
pub fn read_origin(store: &dyn Store) -> Result<Option<String>, DomainError> {
    Ok(store
        .get(META, ORIGIN_KEY)?
        .map(|v| String::from_utf8_lossy(&v).into_owned()))
}

/// This store's origin, created on first use. `require_absent` makes a race
/// between two creators harmless: the loser reads the winner's.
async fn ensure_origin(store: &dyn Store) -> Result<String, DomainError> {
    let origin = match read_origin(store)? {
        Some(o) => o,
        None => {
            let id: [u8; 16] = random_array()?;
            let origin = format!("{ORIGIN_PREFIX}{}", hex::encode(id));
            let mut b = Batch::new();
            b.require_absent(META, ORIGIN_KEY.to_vec());
            b.put(META, ORIGIN_KEY.to_vec(), origin.clone().into_bytes());
            match store.submit(b).await {
                Ok(_) => origin,
                Err(StorageError::Conflict) => read_origin(store)?.ok_or_else(|| {
                    DomainError::Internal("the audit origin vanished after a conflict".into())
                })?,
                Err(e) => return Err(e.into()),
            }
        }
    };
    if !valid_name(&origin) {
        return Err(refuse(format!(
            "the store's audit origin (meta/{}) is malformed",
            String::from_utf8_lossy(ORIGIN_KEY)
        )));
    }
    Ok(origin)
}

fn refuse(why: String) -> DomainError {
    DomainError::Internal(format!("audit checkpoint refused: {why}"))
}

/// What one [`Keyhold::checkpoint_now`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckpointOutcome {
    /// Entries covered by the latest checkpoint (0: the log is empty).
    pub size: u64,
    /// A note was appended to the checkpoints file.
    pub appended_to_file: bool,
    /// A note was put in the store's `checkpoints` tree.
    pub stored: bool,
}

/// The size and head hash of the chain as stored now (not verified: signing
/// what is there is the point; `verify` checks it).
fn chain_head(store: &dyn Store) -> Result<Option<(u64, [u8; 32])>, DomainError> {
    let Some((key, value)) = store.last(AUDIT)? else {
        return Ok(None);
    };
    let (seq, hash) = audit::seq_and_hash(&value)
        .ok_or_else(|| refuse("the last audit entry cannot be decoded".into()))?;
    if key.as_slice() != seq.to_be_bytes() {
        return Err(refuse(
            "the last audit entry is stored under another sequence number".into(),
        ));
    }
    let size = seq
        .checked_add(1)
        .ok_or_else(|| refuse("the audit sequence number is out of range".into()))?;
    Ok(Some((size, hash)))
}

/// The number of entries in the audit log, read cheaply from its last key.
pub fn chain_size(store: &dyn Store) -> Result<u64, DomainError> {
    Ok(chain_head(store)?.map(|(size, _)| size).unwrap_or(0))
}

/// Refuses to sign a history that does not extend `prev` (a checkpoint we
/// signed before): the spec forbids signing inconsistent checkpoints, and
/// refusing makes the server's log say so at once.
fn check_extends(
    store: &dyn Store,
    prev: &Checkpoint,
    where_: &str,
    origin: &str,
    size: u64,
    head: &[u8; 32],
) -> Result<(), DomainError> {
    if prev.origin != origin {
        return Err(refuse(format!(
            "the latest checkpoint in {where_} belongs to another audit log ({}), not this store's ({origin})",
            prev.origin
        )));
    }
    if prev.size > size {
        return Err(refuse(format!(
            "the latest checkpoint in {where_} covers {} entries but the audit log holds {size}: \
             its tail was truncated; run `keyhold audit verify`",
            prev.size
        )));
    }
    let hash_then = if prev.size == size {
        Some(*head)
    } else {
        store
            .get(AUDIT, &(prev.size - 1).to_be_bytes())?
            .and_then(|v| audit::seq_and_hash(&v))
            .map(|(_, h)| h)
    };
    if hash_then != Some(prev.root) {
        return Err(refuse(format!(
            "entry {} no longer has the hash the latest checkpoint in {where_} signed: \
             the audit history was rewritten; run `keyhold audit verify`",
            prev.size - 1
        )));
    }
    Ok(())
}

/// The end of the checkpoints file: its last note, if it opens, and whether
/// the file needs a separator before the next note (it ends with something
/// that is not a whole note, e.g. after a torn write).
struct FileTail {
    last: Option<Result<Checkpoint, NoteError>>,
    needs_separator: Option<&'static str>,
}

fn read_tail(path: &Path, public_key: &[u8; 32]) -> std::io::Result<FileTail> {
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(FileTail {
                last: None,
                needs_separator: None,
            })
        }
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len();
    let from = len.saturating_sub(TAIL_BYTES);
    f.seek(SeekFrom::Start(from))?;
    let mut bytes = Vec::new();
    f.take(TAIL_BYTES).read_to_end(&mut bytes)?;
    if bytes.is_empty() {
        return Ok(FileTail {
            last: None,
            needs_separator: None,
        });
    }
    let ends_with_newline = bytes.last() == Some(&b'\n');
    if from > 0 {
        // Drop the partial first line.
        let cut = bytes
            .iter()
            .position(|b| *b == b'\n')
            .map_or(bytes.len(), |i| i + 1);
        bytes.drain(..cut);
    }
    let last = match std::str::from_utf8(&bytes) {
        Ok(text) => split_notes(text)
            .last()
            .map(|(_, note)| open_note(note, public_key)),
        Err(_) => Some(Err(NoteError::Malformed("it is not UTF-8 text"))),
    };
    let needs_separator = match &last {
        Some(Ok(_)) => None,
        _ if ends_with_newline => Some("\n"),
        _ => Some("\n\n"),
    };
    Ok(FileTail {
        last,
        needs_separator,
    })
}

/// Appends `note` to the checkpoints file (created 0600) and makes it durable.
fn append_note(path: &Path, separator: Option<&str>, note: &str) -> std::io::Result<()> {
    let (mut f, created) = match OpenOptions::new()
        .append(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(f) => (f, true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            (OpenOptions::new().append(true).open(path)?, false)
        }
        Err(e) => return Err(e),
    };
    // One write, so a crash leaves at worst one torn note at the end.
    let mut buf = String::with_capacity(note.len() + 2);
    buf.push_str(separator.unwrap_or(""));
    buf.push_str(note);
    f.write_all(buf.as_bytes())?;
    f.sync_all()?;
    if created {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)?.sync_all()?;
        }
    }
    Ok(())
}

impl Keyhold {
    /// The audit signing key's public half, for [`verify_checkpoints`].
    pub fn audit_public_key(&self) -> [u8; 32] {
        self.signing.public_key()
    }

    /// Signs a checkpoint of the audit log as it stands and writes it to
    /// `file` (appended, fsynced, created 0600) and then to the store. Writes
    /// nowhere that already holds a checkpoint of this size: a head that has
    /// not moved costs nothing. Refuses (with an error naming the problem) to
    /// sign a log that does not extend the latest checkpoint in the store or
    /// in the file.
    ///
    /// Not for concurrent calls on one file (the checkpointer is the one
    /// caller); a race would at worst write the same note twice.
    pub async fn checkpoint_now(&self, file: &Path) -> Result<CheckpointOutcome, DomainError> {
        let store = self.store.as_ref();
        let Some((size, root)) = chain_head(store)? else {
            return Ok(CheckpointOutcome::default());
        };
        let origin = ensure_origin(store).await?;
        let public_key = self.signing.public_key();

        let stored_last = match store.last(CHECKPOINTS)? {
            None => None,
            Some((_, note)) => {
                let note = std::str::from_utf8(&note).map_err(|_| {
                    refuse("the latest checkpoint in the store is not UTF-8 text".into())
                })?;
                let cp = open_note(note, &public_key).map_err(|e| {
                    refuse(format!(
                        "the latest checkpoint in the store is refused: {e}"
                    ))
                })?;
                check_extends(store, &cp, "the store", &origin, size, &root)?;
                Some(cp.size)
            }
        };

        let path = file.to_path_buf();
        let tail = tokio::task::spawn_blocking(move || read_tail(&path, &public_key))
            .await
            .map_err(|e| DomainError::Internal(format!("checkpoint task: {e}")))?
            .map_err(|e| refuse(format!("cannot read {}: {e}", file.display())))?;
        let file_last = match tail.last {
            Some(Ok(cp)) => {
                check_extends(
                    store,
                    &cp,
                    &file.display().to_string(),
                    &origin,
                    size,
                    &root,
                )?;
                Some(cp.size)
            }
            Some(Err(e)) => {
                tracing::warn!(
                    file = %file.display(),
                    "the last note of the checkpoints file is refused ({e}); \
                     appending after it (`keyhold audit verify --checkpoints` will name it)"
                );
                None
            }
            None => None,
        };

        let note = Checkpoint { origin, size, root }.sign(&self.signing);
        let mut outcome = CheckpointOutcome {
            size,
            ..Default::default()
        };
        if file_last != Some(size) {
            let path = file.to_path_buf();
            let n = note.clone();
            let sep = tail.needs_separator;
            tokio::task::spawn_blocking(move || append_note(&path, sep, &n))
                .await
                .map_err(|e| DomainError::Internal(format!("checkpoint task: {e}")))?
                .map_err(|e| {
                    DomainError::Internal(format!(
                        "cannot append a checkpoint to {}: {e}",
                        file.display()
                    ))
                })?;
            outcome.appended_to_file = true;
        }
        if stored_last != Some(size) {
            let mut b = Batch::new();
            b.require_absent(CHECKPOINTS, size.to_be_bytes().to_vec());
            b.put(CHECKPOINTS, size.to_be_bytes().to_vec(), note.into_bytes());
            match store.submit(b).await {
                Ok(_) => outcome.stored = true,
                // Already there (an earlier attempt that crashed after storing).
                Err(StorageError::Conflict) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if outcome.appended_to_file || outcome.stored {
            tracing::info!(
                size,
                file = %file.display(),
                to_file = outcome.appended_to_file,
                to_store = outcome.stored,
                "audit checkpoint signed"
            );
        }
        Ok(outcome)
    }
}

/// When the background checkpointer signs.
#[derive(Debug, Clone)]
pub struct CheckpointConfig {
    /// The append-only checkpoints file (outside the store's folder).
    pub file: PathBuf,
    /// Sign once this many entries have been added since the last checkpoint.
    pub every_entries: u64,
    /// Sign once this long has passed since the last checkpoint, if any entry
    /// has been added.
    pub every: Duration,
    /// How often the log's size is read (one key lookup).
    pub poll: Duration,
}

impl CheckpointConfig {
    pub const DEFAULT_EVERY_ENTRIES: u64 = 1000;
    pub const DEFAULT_EVERY: Duration = Duration::from_secs(60);

    /// Defaults: every 1000 entries or 60 seconds, polled once a second.
    pub fn new(file: PathBuf) -> Self {
        CheckpointConfig {
            file,
            every_entries: Self::DEFAULT_EVERY_ENTRIES,
            every: Self::DEFAULT_EVERY,
            poll: Duration::from_secs(1),
        }
    }
}

/// Signs checkpoints in the background until `shutdown` resolves, then once
/// more so the final state is covered. Signs at start if anything is
/// uncovered, then when `every_entries` entries have been added or `every`
/// has passed with at least one. Errors are logged and retried at the next
/// poll; nothing here panics or stops the server.
pub async fn run_checkpointer(
    core: Arc<Keyhold>,
    cfg: CheckpointConfig,
    shutdown: impl Future<Output = ()>,
) {
    let checkpoint = |core: Arc<Keyhold>, file: PathBuf| async move {
        match core.checkpoint_now(&file).await {
            Ok(o) => Some(o.size),
            Err(e) => {
                tracing::error!(file = %file.display(), "audit checkpoint failed, will retry: {e}");
                None
            }
        }
    };
    let mut covered = checkpoint(core.clone(), cfg.file.clone()).await;
    let mut since = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(cfg.poll.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tick.tick() => {}
        }
        let size = match chain_size(core.store().as_ref()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("audit checkpointer cannot read the audit log: {e}");
                continue;
            }
        };
        let due = match covered {
            // The last attempt failed: retry now.
            None => true,
            Some(c) if size == c => false,
            Some(c) => {
                size.saturating_sub(c) >= cfg.every_entries.max(1)
                    || since.elapsed() >= cfg.every
                    || size < c
            }
        };
        if due {
            covered = checkpoint(core.clone(), cfg.file.clone()).await;
            if covered.is_some() {
                since = tokio::time::Instant::now();
            }
        }
    }
    let size = chain_size(core.store().as_ref()).ok();
    if covered.is_none() || size != covered {
        checkpoint(core, cfg.file).await;
    }
}

/// Where a checkpoint was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// In the store's `checkpoints` tree, under this size key (None: the key
    /// is not a size).
    Store { key: Option<u64> },
    /// In the checkpoints file, starting on this line.
    File { line: usize },
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Store { key: Some(k) } => write!(f, "the checkpoint stored for size {k}"),
            Source::Store { key: None } => {
                write!(f, "a checkpoint stored under a key that is not a size")
            }
            Source::File { line } => {
                write!(f, "the checkpoint at line {line} of the checkpoints file")
            }
        }
    }
}

/// What is wrong with one checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointProblem {
    /// Malformed, unsigned or forged.
    Note(NoteError),
    /// A stored checkpoint whose key is not the size it signs.
    Misfiled { size: u64 },
    /// Signed for another log, or this store has lost its origin.
    Origin {
        found: String,
        expected: Option<String>,
    },
    /// It covers more entries than the log holds: the tail was cut off.
    Truncated { size: u64, entries: u64 },
    /// The log's entry `size - 1` has another hash than the one signed.
    Rewritten { size: u64 },
}

impl fmt::Display for CheckpointProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckpointProblem::Note(e) => write!(f, "{e}"),
            CheckpointProblem::Misfiled { size } => write!(
                f,
                "it signs size {size}, not the size it is stored under: moved or forged"
            ),
            CheckpointProblem::Origin {
                found,
                expected: Some(expected),
            } => write!(
                f,
                "it is for the audit log {found}, but this store's is {expected}: \
                 the store or the checkpoint belongs elsewhere, or the store was replaced"
            ),
            CheckpointProblem::Origin {
                found,
                expected: None,
            } => write!(
                f,
                "it is for the audit log {found}, but this store has no audit origin \
                 (meta/audit_origin was removed, or the store was replaced)"
            ),
            CheckpointProblem::Truncated { size, entries } => write!(
                f,
                "it signs {size} entries but the audit log holds only {entries}: \
                 the TRUNCATED TAIL lost {} entries (sequence numbers {entries} to {})",
                size.saturating_sub(*entries),
                size.saturating_sub(1)
            ),
            CheckpointProblem::Rewritten { size } => write!(
                f,
                "entry {} does not have the hash it signs for size {size}: \
                 the history up to entry {} was REWRITTEN",
                size.saturating_sub(1),
                size.saturating_sub(1)
            ),
        }
    }
}

/// One checkpoint that failed, and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointFailure {
    pub at: Source,
    pub problem: CheckpointProblem,
}

impl fmt::Display for CheckpointFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.problem)
    }
}

/// Why the audit trail does not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditBreak {
    /// The hash chain itself is broken (see [`audit::verify`]).
    Chain(ChainBreak),
    /// The chain is whole but some checkpoints refute it or do not verify; in
    /// the order found (store first, by size; then the file, by line). Never
    /// empty.
    Checkpoints(Vec<CheckpointFailure>),
}

impl fmt::Display for AuditBreak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuditBreak::Chain(b) => write!(f, "{b}"),
            AuditBreak::Checkpoints(list) => {
                if let Some(first) = list.first() {
                    write!(f, "{first}")?;
                }
                if list.len() > 1 {
                    write!(f, " (and {} more failing checkpoints)", list.len() - 1)?;
                }
                Ok(())
            }
        }
    }
}

/// What a successful verification covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointReport {
    pub entries: u64,
    pub head: [u8; 32],
    pub origin: Option<String>,
    /// Checkpoints verified from the store's tree.
    pub in_store: usize,
    /// Checkpoints verified from the file (0 when no file was given).
    pub in_file: usize,
    /// The largest size any verified checkpoint covers.
    pub latest: Option<u64>,
}

/// Walks the audit chain once and checks every checkpoint in the store and in
/// `external` (the contents of a checkpoints file): each must be a note signed
/// by `public_key`, for this store's origin, no larger than the chain (else the
/// tail was truncated), with the chain's hash at its size (else the history
/// was rewritten).
pub fn verify_checkpoints(
    store: &dyn Store,
    public_key: &[u8; 32],
    external: Option<&[u8]>,
) -> Result<Result<CheckpointReport, AuditBreak>, DomainError> {
    let origin = read_origin(store)?;
    let mut failures = Vec::new();
    let mut good: Vec<(Source, Checkpoint)> = Vec::new();
    let mut judge = |at: Source, note: Result<Checkpoint, CheckpointProblem>| match note {
        Err(problem) => failures.push(CheckpointFailure { at, problem }),
        Ok(cp) if origin.as_deref() != Some(cp.origin.as_str()) => {
            failures.push(CheckpointFailure {
                at,
                problem: CheckpointProblem::Origin {
                    found: cp.origin,
                    expected: origin.clone(),
                },
            })
        }
        Ok(cp) => good.push((at, cp)),
    };

    for item in store.scan(CHECKPOINTS, b"") {
        let (key, value) = item?;
        let key = <[u8; 8]>::try_from(key.as_slice())
            .ok()
            .map(u64::from_be_bytes);
        let note = std::str::from_utf8(&value)
            .map_err(|_| NoteError::Malformed("it is not UTF-8 text"))
            .and_then(|n| open_note(n, public_key))
            .map_err(CheckpointProblem::Note)
            .and_then(|cp| match key {
                Some(k) if k == cp.size => Ok(cp),
                _ => Err(CheckpointProblem::Misfiled { size: cp.size }),
            });
        judge(Source::Store { key }, note);
    }
    if let Some(bytes) = external {
        let text = match std::str::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                let valid = bytes.get(..e.valid_up_to()).unwrap_or_default();
                let line = 1 + valid.iter().filter(|b| **b == b'\n').count();
                judge(
                    Source::File { line },
                    Err(CheckpointProblem::Note(NoteError::Malformed(
                        "the file is not UTF-8 text here",
                    ))),
                );
                // Check the valid part all the same.
                std::str::from_utf8(valid).unwrap_or_default()
            }
        };
        for (line, note) in split_notes(text) {
            judge(
                Source::File { line },
                open_note(note, public_key).map_err(CheckpointProblem::Note),
            );
        }
    }

    // One walk of the chain, keeping the hashes at the checkpointed sizes.
    let wanted: BTreeSet<u64> = good.iter().map(|(_, cp)| cp.size - 1).collect();
    let mut hashes: BTreeMap<u64, [u8; 32]> = BTreeMap::new();
    let summary = match audit::verify_with(store, |seq, hash| {
        if wanted.contains(&seq) {
            hashes.insert(seq, *hash);
        }
    })? {
        Ok(s) => s,
        Err(brk) => return Ok(Err(AuditBreak::Chain(brk))),
    };

    let (mut in_store, mut in_file, mut latest) = (0usize, 0usize, None::<u64>);
    for (at, cp) in good {
        let problem = if cp.size > summary.entries {
            Some(CheckpointProblem::Truncated {
                size: cp.size,
                entries: summary.entries,
            })
        } else if hashes.get(&(cp.size - 1)) != Some(&cp.root) {
            Some(CheckpointProblem::Rewritten { size: cp.size })
        } else {
            None
        };
        match problem {
            Some(problem) => failures.push(CheckpointFailure { at, problem }),
            None => {
                match at {
                    Source::Store { .. } => in_store += 1,
                    Source::File { .. } => in_file += 1,
                }
                latest = latest.max(Some(cp.size));
            }
        }
    }
    if !failures.is_empty() {
        failures.sort_by_key(|f| match f.at {
            Source::Store { key } => (0u8, key.unwrap_or(u64::MAX), 0usize),
            Source::File { line } => (1u8, 0u64, line),
        });
        return Ok(Err(AuditBreak::Checkpoints(failures)));
    }
    Ok(Ok(CheckpointReport {
        entries: summary.entries,
        head: summary.head,
        origin,
        in_store,
        in_file,
        latest,
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    use std::os::unix::fs::PermissionsExt;

    use keyhold_storage::ChainLink;
    use proptest::prelude::*;

    use crate::audit::AuditChain;
    use crate::clock::SystemClock;
    use crate::keystore::{init_keys, load_keys};
    use crate::{open_memory_store, Settings};

    fn signing_key() -> AuditSigningKey {
        AuditSigningKey::from_pkcs8(&AuditSigningKey::generate_pkcs8().unwrap()).unwrap()
    }

    fn sample() -> Checkpoint {
        Checkpoint {
            origin: "keyhold/audit/00112233445566778899aabbccddeeff".into(),
            size: 1234,
            root: sha256(b"head"),
        }
    }

    /// A signed note over any `text`, signed as the audit key would.
    fn sign_text(text: &str, key: &AuditSigningKey) -> String {
        let mut sig = key_id(KEY_NAME, &key.public_key()).to_vec();
        sig.extend_from_slice(&key.sign(text.as_bytes()));
        format!("{text}\n\u{2014} {KEY_NAME} {}\n", STANDARD.encode(sig))
    }

    // golang.org/x/mod/sumdb/note's test vector (also quoted by C2SP's
    // signed-note): verifier key "PeterNeumann+c74f20a3+ARpc2Q…", whose base64
    // is the type byte 0x01 then the Ed25519 public key.
    const GO_NAME: &str = "PeterNeumann";
    const GO_KEY: &str = "ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                           then you don't know what your problem is.\n";
    const GO_SIG: &str =
        "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=";

    fn go_public_key() -> [u8; 32] {
        let raw = STANDARD.decode(GO_KEY).unwrap();
        assert_eq!(raw[0], ED25519);
        raw[1..].try_into().unwrap()
    }

    #[test]
    fn key_id_matches_the_reference_implementation() {
        assert_eq!(hex::encode(key_id(GO_NAME, &go_public_key())), "c74f20a3");
        // The id depends on the name and on the key.
        let pk = go_public_key();
        assert_ne!(key_id("PeterNeumann2", &pk), key_id(GO_NAME, &pk));
        let mut other = pk;
        other[0] ^= 1;
        assert_ne!(key_id(GO_NAME, &other), key_id(GO_NAME, &pk));
    }

    #[test]
    fn opens_the_reference_note_and_refuses_it_altered() {
        let note = format!("{GO_TEXT}\n\u{2014} {GO_NAME} {GO_SIG}\n");
        assert_eq!(open_signed(&note, GO_NAME, &go_public_key()), Ok(GO_TEXT));
        let altered = note.replacen("problem,", "problem;", 1);
        assert_eq!(
            open_signed(&altered, GO_NAME, &go_public_key()),
            Err(NoteError::BadSignature)
        );
    }

    #[test]
    fn a_checkpoint_round_trips_in_the_documented_format() {
        let key = signing_key();
        let cp = sample();
        let note = cp.sign(&key);
        let lines: Vec<&str> = note.split('\n').collect();
        assert_eq!(lines.len(), 6, "{note:?}");
        assert_eq!(lines[0], cp.origin);
        assert_eq!(lines[1], "1234");
        assert_eq!(STANDARD.decode(lines[2]).unwrap(), cp.root);
        assert_eq!(lines[3], "");
        assert_eq!(lines[5], "", "the note ends with a newline");
        let sig_b64 = lines[4]
            .strip_prefix("\u{2014} keyhold-audit ")
            .expect("an em dash, a space, the key name and a space");
        let sig = STANDARD.decode(sig_b64).unwrap();
        assert_eq!(sig.len(), 4 + 64);
        assert_eq!(sig[..4], key_id(KEY_NAME, &key.public_key()));
        assert!(verify_signature(
            &key.public_key(),
            cp.body().as_bytes(),
            &sig[4..]
        ));
        assert_eq!(open_note(&note, &key.public_key()), Ok(cp));
    }

    #[test]
    fn forged_or_altered_notes_are_refused() {
        let key = signing_key();
        let pk = key.public_key();
        let note = sample().sign(&key);

        // The body changed after signing: size, root, origin.
        for (from, to) in [
            ("\n1234\n", "\n1235\n"),
            ("keyhold/audit/0", "keyhold/audit/1"),
        ] {
            let forged = note.replacen(from, to, 1);
            assert_ne!(forged, note);
            assert_eq!(
                open_note(&forged, &pk),
                Err(NoteError::BadSignature),
                "{to}"
            );
        }
        let mut other_root = sample();
        other_root.root[0] ^= 1;
        let forged = format!("{}{}", other_root.body(), &note[sample().body().len()..]);
        assert_eq!(open_note(&forged, &pk), Err(NoteError::BadSignature));

        // One bit of the signature flipped.
        let (head, sig_line) = note.split_at(note.rfind(SIG_PREFIX).unwrap());
        let b64 = sig_line.trim_end().rsplit(' ').next().unwrap();
        let mut sig = STANDARD.decode(b64).unwrap();
        sig[10] ^= 0x01;
        let forged = format!("{head}{SIG_PREFIX}{KEY_NAME} {}\n", STANDARD.encode(&sig));
        assert_eq!(open_note(&forged, &pk), Err(NoteError::BadSignature));

        // Our name and key id, a signature of the wrong length.
        let forged = format!(
            "{head}{SIG_PREFIX}{KEY_NAME} {}\n",
            STANDARD.encode(&sig[..40])
        );
        assert_eq!(open_note(&forged, &pk), Err(NoteError::BadSignature));

        // The signature line removed.
        assert!(open_note(head, &pk).is_err());
    }

    #[test]
    fn a_note_signed_by_another_key_is_refused() {
        let ours = signing_key();
        let theirs = signing_key();
        let note = sample().sign(&theirs);
        assert_eq!(
            open_note(&note, &ours.public_key()),
            Err(NoteError::NotSigned)
        );

        // Their signature relabelled with our key id: it must not verify.
        let (head, sig_line) = note.split_at(note.rfind(SIG_PREFIX).unwrap());
        let b64 = sig_line.trim_end().rsplit(' ').next().unwrap();
        let mut sig = STANDARD.decode(b64).unwrap();
        sig[..4].copy_from_slice(&key_id(KEY_NAME, &ours.public_key()));
        let relabelled = format!("{head}{SIG_PREFIX}{KEY_NAME} {}\n", STANDARD.encode(&sig));
        assert_eq!(
            open_note(&relabelled, &ours.public_key()),
            Err(NoteError::BadSignature)
        );

        // Our own key under another name is not ours either.
        let renamed = sample()
            .sign(&ours)
            .replace("\u{2014} keyhold-audit ", "\u{2014} someone-else ");
        assert_eq!(
            open_note(&renamed, &ours.public_key()),
            Err(NoteError::NotSigned)
        );

        // A cosignature by an unknown key beside ours is ignored, as the spec says.
        let cosigned = format!(
            "{}{}",
            sample().sign(&ours),
            sample()
                .sign(&theirs)
                .rsplit('\n')
                .nth(1)
                .map(|l| format!("{}\n", l.replace("keyhold-audit", "witness.example/w1")))
                .unwrap()
        );
        assert_eq!(open_note(&cosigned, &ours.public_key()), Ok(sample()));
    }

    #[test]
    fn malformed_notes_are_refused_with_a_reason() {
        let key = signing_key();
        let pk = key.public_key();
        let good = sample().sign(&key);
        let root = STANDARD.encode(sample().root);
        let origin = sample().origin;
        // Signed correctly, so these reach the body checks.
        let signed_bodies = [
            format!("{origin}\n1234\n"),
            format!("{origin}\n1234\n{root}\nextension\n"),
            format!("\n1234\n{root}\n"),
            format!("keyhold audit\n1234\n{root}\n"),
            format!("a+b\n1234\n{root}\n"),
            format!("{origin}\n01234\n{root}\n"),
            format!("{origin}\n0\n{root}\n"),
            format!("{origin}\n-1\n{root}\n"),
            format!("{origin}\n+1\n{root}\n"),
            format!("{origin}\n 1\n{root}\n"),
            format!("{origin}\n18446744073709551616\n{root}\n"),
            format!("{origin}\n1234\n{}\n", STANDARD.encode([0u8; 31])),
            format!("{origin}\n1234\n{}\n", STANDARD.encode([0u8; 33])),
            format!("{origin}\n1234\n{}\n", root.trim_end_matches('=')),
            format!("{origin}\n1234\n{}\n", hex::encode(sample().root)),
            format!("{origin}\n\n1234\n{root}\n"),
        ];
        for text in &signed_bodies {
            let note = sign_text(text, &key);
            assert!(
                matches!(open_note(&note, &pk), Err(NoteError::Malformed(_))),
                "accepted or misjudged {text:?}: {:?}",
                open_note(&note, &pk)
            );
        }
        // Non-canonical base64 of the root: the last character's unused bits set.
        let mut noncanon = root.clone().into_bytes();
        let at = noncanon.len() - 2;
        noncanon[at] = match noncanon[at] {
            b'A' => b'B',
            _ => b'A',
        };
        let noncanon = String::from_utf8(noncanon).unwrap();
        if STANDARD.decode(&noncanon).ok().as_deref() == Some(&sample().root[..]) {
            let note = sign_text(&format!("{origin}\n1234\n{noncanon}\n"), &key);
            assert!(matches!(
                open_note(&note, &pk),
                Err(NoteError::Malformed(_))
            ));
        }

        let shapes = [
            String::new(),
            "\n".into(),
            good.trim_end_matches('\n').to_string(),
            good.replacen("\n\n", "\n", 1),
            good.replacen("\u{2014} ", "- ", 1),
            good.replacen("\u{2014} ", "\u{2014}", 1),
            good.replacen("\u{2014} keyhold-audit ", "\u{2014}  ", 1),
            good.replacen("\u{2014} keyhold-audit ", "\u{2014} keyhold-audit", 1),
            format!("{good}\n"),
            good.replace('\n', "\r\n"),
            good.replacen("1234", "12\t34", 1),
            good.replacen("1234", "12\u{0}34", 1),
            format!("{}\u{2014} keyhold-audit !!!!\n", good),
            format!("{}\u{2014} keyhold-audit AAA=\n", good),
            format!("{}\u{2014} keyhold+audit AAAAAAAA\n", good),
            format!("{good}{}", "x".repeat(MAX_NOTE_BYTES)),
            format!(
                "{good}{}",
                "\u{2014} witness AAAAAAAA\n".repeat(MAX_SIGNATURES)
            ),
        ];
        for note in &shapes {
            assert!(
                matches!(open_note(note, &pk), Err(NoteError::Malformed(_))),
                "accepted or misjudged {note:?}: {:?}",
                open_note(note, &pk)
            );
        }
        // A second blank line makes it part of the signed text: refused too.
        let two_blanks = good.replacen("\n\u{2014}", "\n\n\u{2014}", 1);
        assert_eq!(open_note(&two_blanks, &pk), Err(NoteError::BadSignature));
        // Every refusal reads as a sentence naming the rule.
        let e = open_note(&good.replacen("\n\n", "\n", 1), &pk).unwrap_err();
        assert!(e.to_string().contains("blank line"), "{e}");
    }

    #[test]
    fn split_notes_finds_each_note_and_isolates_a_torn_one() {
        let key = signing_key();
        let a = sample().sign(&key);
        let mut b_cp = sample();
        b_cp.size = 2000;
        let b = b_cp.sign(&key);
        // Cut inside the root line, as a crash mid-append could.
        let torn = &a[..a.find("\n1234\n").unwrap() + 6 + 10];
        // Back to back, a blank line, a torn note, the separator the writer adds.
        let file = format!("{a}{b}\n{torn}\n\n{a}");
        let notes = split_notes(&file);
        let lines: Vec<usize> = notes.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, vec![1, 6, 12, 16], "{notes:#?}");
        assert_eq!(notes[0].1, a);
        assert_eq!(notes[1].1, b);
        assert!(open_note(notes[2].1, &key.public_key()).is_err());
        assert_eq!(notes[3].1, a);
        assert!(split_notes("").is_empty());
        assert!(split_notes("\n\n\n").is_empty());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Arbitrary text never panics the parsers, and nothing unsigned opens.
        #[test]
        fn arbitrary_text_never_panics_or_opens(
            text in prop_oneof![any::<String>(), "[\u{2014} a-zA-Z0-9+/=\n]{0,300}"]
        ) {
            let pk = [7u8; 32];
            prop_assert!(open_note(&text, &pk).is_err());
            let _ = open_signed(&text, KEY_NAME, &pk);
            for (line, note) in split_notes(&text) {
                prop_assert!(line >= 1);
                prop_assert!(text.contains(note));
                prop_assert!(open_note(note, &pk).is_err());
            }
        }

        /// Arbitrary bytes as the checkpoints file never panic verification,
        /// and never verify as a checkpoint.
        #[test]
        fn arbitrary_checkpoint_files_never_panic_verify(
            bytes in prop::collection::vec(any::<u8>(), 0..600),
            splice in any::<bool>(),
        ) {
            let env = shared_env();
            let mut file = if splice { env.1.clone().into_bytes() } else { Vec::new() };
            file.extend_from_slice(&bytes);
            let r = verify_checkpoints(env.0.store(), &env.0.core.audit_public_key(), Some(&file))
                .unwrap();
            if let Ok(report) = r {
                prop_assert_eq!(report.in_file, usize::from(splice));
            }
        }

        /// Any one character of a signed checkpoint changed: refused.
        #[test]
        fn any_change_to_a_signed_note_is_refused(at in 0usize..400, c in any::<char>()) {
            let key = test_key();
            let note = sample().sign(key);
            let chars: Vec<char> = note.chars().collect();
            let at = at % chars.len();
            prop_assume!(chars[at] != c);
            let mut changed = chars.clone();
            changed[at] = c;
            let changed: String = changed.into_iter().collect();
            prop_assert!(open_note(&changed, &key.public_key()).is_err(), "{changed:?}");
        }
    }

    /// One store with two entries and its checkpoint note, for the proptests.
    fn shared_env() -> &'static (Env, String) {
        static ENV: std::sync::OnceLock<(Env, String)> = std::sync::OnceLock::new();
        ENV.get_or_init(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            let env = Env::new();
            rt.block_on(async {
                env.add_entries(2).await;
                env.core.checkpoint_now(&env.file()).await.unwrap();
            });
            let note = std::fs::read_to_string(env.file()).unwrap();
            (env, note)
        })
    }

    fn test_key() -> &'static AuditSigningKey {
        static KEY: std::sync::OnceLock<AuditSigningKey> = std::sync::OnceLock::new();
        KEY.get_or_init(signing_key)
    }

    // ---- over a store -------------------------------------------------------

    struct Env {
        dir: tempfile::TempDir,
        core: Arc<Keyhold>,
    }

    impl Env {
        fn new() -> Env {
            let dir = tempfile::tempdir().unwrap();
            let keys = dir.path().join("keys");
            init_keys(&keys).unwrap();
            let settings = Settings {
                danger_fast_hashing: true,
                ..Default::default()
            };
            let core = Keyhold::with_store(
                open_memory_store().unwrap(),
                load_keys(&keys).unwrap(),
                settings,
                Arc::new(SystemClock),
            )
            .unwrap();
            Env { dir, core }
        }

        fn file(&self) -> PathBuf {
            self.dir.path().join("audit-checkpoints.txt")
        }

        fn store(&self) -> &dyn Store {
            self.core.store().as_ref()
        }

        async fn add_entries(&self, n: usize) {
            for i in 0..n {
                let event = serde_json::from_value(serde_json::json!({
                    "at": "2026-01-15T09:00:00Z",
                    "actor": {"account": null, "role": "operator", "organisation": null, "acting_for": null},
                    "action": "read",
                    "patient": null,
                    "resource": format!("test/{i}"),
                    "purpose": "checkpoint test",
                    "outcome": "success"
                }))
                .unwrap();
                self.core.audit_log().record(&event).await.unwrap();
            }
        }

        fn verify(&self) -> Result<CheckpointReport, AuditBreak> {
            let file = std::fs::read(self.file()).ok();
            verify_checkpoints(self.store(), &self.core.audit_public_key(), file.as_deref())
                .unwrap()
        }

        fn failures(&self) -> Vec<CheckpointFailure> {
            match self.verify() {
                Err(AuditBreak::Checkpoints(list)) => list,
                other => panic!("expected failing checkpoints, got {other:?}"),
            }
        }

        async fn write(&self, batch: Batch) {
            self.store().submit(batch).await.unwrap();
        }
    }

    fn seq_key(seq: u64) -> Vec<u8> {
        seq.to_be_bytes().to_vec()
    }

    #[tokio::test]
    async fn checkpoints_are_written_once_per_size_and_verify() {
        let env = Env::new();
        // An empty log: nothing to sign, nothing written, and it verifies.
        let o = env.core.checkpoint_now(&env.file()).await.unwrap();
        assert_eq!(o, CheckpointOutcome::default());
        assert!(!env.file().exists());
        assert!(read_origin(env.store()).unwrap().is_none());

        env.add_entries(3).await;
        let o = env.core.checkpoint_now(&env.file()).await.unwrap();
        assert_eq!(
            o,
            CheckpointOutcome {
                size: 3,
                appended_to_file: true,
                stored: true
            }
        );
        let mode = std::fs::metadata(env.file()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the checkpoints file is created 0600");
        let origin = read_origin(env.store()).unwrap().unwrap();
        assert!(origin.starts_with(ORIGIN_PREFIX) && origin.len() == ORIGIN_PREFIX.len() + 32);

        // The head has not moved: nothing written anywhere.
        let before = std::fs::read(env.file()).unwrap();
        let o = env.core.checkpoint_now(&env.file()).await.unwrap();
        assert!(!o.appended_to_file && !o.stored && o.size == 3);
        assert_eq!(std::fs::read(env.file()).unwrap(), before);

        env.add_entries(2).await;
        env.core.checkpoint_now(&env.file()).await.unwrap();
        let text = std::fs::read_to_string(env.file()).unwrap();
        assert_eq!(split_notes(&text).len(), 2);
        let stored: Vec<u64> = env
            .store()
            .scan(CHECKPOINTS, b"")
            .map(|r| u64::from_be_bytes(r.unwrap().0.try_into().unwrap()))
            .collect();
        assert_eq!(stored, vec![3, 5]);
        // The origin stays the same.
        assert_eq!(read_origin(env.store()).unwrap().unwrap(), origin);

        let report = env.verify().unwrap();
        assert_eq!(
            (
                report.entries,
                report.in_store,
                report.in_file,
                report.latest
            ),
            (5, 2, 2, Some(5))
        );
        assert_eq!(report.origin.as_deref(), Some(origin.as_str()));

        // A new, empty file (the old one moved off the host) gets the current
        // checkpoint even though the head has not moved.
        std::fs::rename(env.file(), env.dir.path().join("old.txt")).unwrap();
        let o = env.core.checkpoint_now(&env.file()).await.unwrap();
        assert!(o.appended_to_file && !o.stored);
        assert_eq!(env.verify().unwrap().in_file, 1);
    }

    #[tokio::test]
    async fn a_truncated_tail_is_named_with_its_size() {
        let env = Env::new();
        env.add_entries(4).await;
        env.core.checkpoint_now(&env.file()).await.unwrap();
        env.add_entries(4).await;
        env.core.checkpoint_now(&env.file()).await.unwrap();
        assert!(env.verify().is_ok());

        // Cut the last 3 entries and the store's checkpoint of size 8; the file
        // keeps it. The shorter chain is whole: only the checkpoint shows it.
        let mut b = Batch::new();
        for seq in 5..8 {
            b.delete(AUDIT, seq_key(seq));
        }
        b.delete(CHECKPOINTS, seq_key(8));
        env.write(b).await;
        assert_eq!(audit::verify(env.store()).unwrap().unwrap().entries, 5);

        let failures = env.failures();
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert_eq!(failures[0].at, Source::File { line: 6 });
        assert_eq!(
            failures[0].problem,
            CheckpointProblem::Truncated {
                size: 8,
                entries: 5
            }
        );
        let msg = failures[0].to_string();
        assert!(
            msg.contains("TRUNCATED") && msg.contains('8') && msg.contains('5'),
            "{msg}"
        );

        // Without the file the store's own checkpoints cannot see it: why the
        // file must be kept elsewhere.
        let r = verify_checkpoints(env.store(), &env.core.audit_public_key(), None).unwrap();
        assert!(r.is_ok());

        // The writer refuses to sign the shorter history.
        let e = env.core.checkpoint_now(&env.file()).await.unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
    }

    #[tokio::test]
    async fn a_rewritten_history_is_named() {
        let env = Env::new();
        env.add_entries(4).await;
        env.core.checkpoint_now(&env.file()).await.unwrap();
        // Rewrite entries 2 and 3 with fresh, correctly chained hashes: the
        // chain is whole, the checkpoint of size 4 is not.
        let (_, prev) = env.store().last(AUDIT).unwrap().unwrap();
        let one = env.store().get(AUDIT, &seq_key(1)).unwrap().unwrap();
        let body = |s: &[u8]| s[73..].to_vec();
        let forged_body = String::from_utf8(body(&prev))
            .unwrap()
            .replace("checkpoint test", "checkpoint tesT")
            .into_bytes();
        assert_ne!(forged_body, body(&prev));
        let two = AuditChain.link(2, Some(&one), &body(&one)).unwrap();
        let three = AuditChain.link(3, Some(&two), &forged_body).unwrap();
        if serde_json::from_slice::<crate::audit::AuditEvent>(&forged_body).is_err() {
            panic!("the forged body should stay a valid event");
        }
        let mut b = Batch::new();
        b.put(AUDIT, seq_key(2), two);
        b.put(AUDIT, seq_key(3), three);
        env.write(b).await;
        assert!(
            audit::verify(env.store()).unwrap().is_ok(),
            "the forgery is self-consistent"
        );

        let failures = env.failures();
        assert_eq!(failures.len(), 2, "store and file copies: {failures:?}");
        assert_eq!(failures[0].at, Source::Store { key: Some(4) });
        assert_eq!(failures[1].at, Source::File { line: 1 });
        for f in &failures {
            assert_eq!(f.problem, CheckpointProblem::Rewritten { size: 4 });
            assert!(f.to_string().contains("REWRITTEN"), "{f}");
        }
        let e = env.core.checkpoint_now(&env.file()).await.unwrap_err();
        assert!(e.to_string().contains("rewritten"), "{e}");
    }

    #[tokio::test]
    async fn a_chain_break_is_reported_before_checkpoints() {
        let env = Env::new();
        env.add_entries(3).await;
        env.core.checkpoint_now(&env.file()).await.unwrap();
        let mut b = Batch::new();
        b.delete(AUDIT, seq_key(1));
        env.write(b).await;
        assert!(matches!(
            env.verify(),
            Err(AuditBreak::Chain(ChainBreak::Sequence {
                position: 1,
                found: 2
            }))
        ));
    }

    #[tokio::test]
    async fn origin_misfiled_forged_and_foreign_checkpoints_fail() {
        let env = Env::new();
        env.add_entries(2).await;
        env.core.checkpoint_now(&env.file()).await.unwrap();
        let good = env.store().get(CHECKPOINTS, &seq_key(2)).unwrap().unwrap();

        // Stored under another size.
        let mut b = Batch::new();
        b.put(CHECKPOINTS, seq_key(1), good.clone());
        env.write(b).await;
        let f = env.failures();
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].at, Source::Store { key: Some(1) });
        assert_eq!(f[0].problem, CheckpointProblem::Misfiled { size: 2 });
        let mut b = Batch::new();
        b.delete(CHECKPOINTS, seq_key(1));
        env.write(b).await;
        assert!(env.verify().is_ok());

        // Another store's checkpoint (same key, other origin), appended to the file.
        let foreign = Checkpoint {
            origin: "keyhold/audit/ffffffffffffffffffffffffffffffff".into(),
            size: 2,
            root: [0; 32],
        }
        .sign(&env.core.signing);
        std::fs::OpenOptions::new()
            .append(true)
            .open(env.file())
            .unwrap()
            .write_all(foreign.as_bytes())
            .unwrap();
        let f = env.failures();
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].at, Source::File { line: 6 });
        assert!(matches!(f[0].problem, CheckpointProblem::Origin { .. }));
        // The writer will not append to another log's file.
        env.add_entries(1).await;
        let e = env.core.checkpoint_now(&env.file()).await.unwrap_err();
        assert!(e.to_string().contains("another audit log"), "{e}");

        // The store's origin changed: every checkpoint fails on origin.
        std::fs::remove_file(env.file()).unwrap();
        let mut b = Batch::new();
        b.put(META, ORIGIN_KEY.to_vec(), b"keyhold/audit/other".to_vec());
        env.write(b).await;
        let f = env.failures();
        assert!(
            matches!(f[0].problem, CheckpointProblem::Origin { .. }),
            "{f:?}"
        );

        // Removed origin.
        let mut b = Batch::new();
        b.delete(META, ORIGIN_KEY.to_vec());
        env.write(b).await;
        let f = env.failures();
        assert!(
            matches!(
                &f[0].problem,
                CheckpointProblem::Origin { expected: None, .. }
            ),
            "{f:?}"
        );
    }

    #[tokio::test]
    async fn a_store_checkpoint_signed_by_another_key_fails() {
        let env = Env::new();
        env.add_entries(2).await;
        env.core.checkpoint_now(&env.file()).await.unwrap();
        let origin = read_origin(env.store()).unwrap().unwrap();
        let (_, head) = env.store().last(AUDIT).unwrap().unwrap();
        let (_, root) = audit::seq_and_hash(&head).unwrap();
        let note = Checkpoint {
            origin,
            size: 2,
            root,
        }
        .sign(&signing_key());
        let mut b = Batch::new();
        b.put(CHECKPOINTS, seq_key(2), note.into_bytes());
        env.write(b).await;
        let f = env.failures();
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].problem, CheckpointProblem::Note(NoteError::NotSigned));
        // Garbage in the file, too, is named by line.
        std::fs::write(env.file(), b"hello\nworld\n").unwrap();
        let f = env.failures();
        assert_eq!(f.len(), 2);
        assert_eq!(f[1].at, Source::File { line: 1 });
        // Not UTF-8: named by line, not a panic.
        std::fs::write(env.file(), b"\n\nabc\xff\xfe\n").unwrap();
        let f = env.failures();
        assert_eq!(f[1].at, Source::File { line: 3 });
    }

    #[tokio::test]
    async fn after_a_torn_write_the_next_note_stands_alone() {
        let env = Env::new();
        env.add_entries(2).await;
        env.core.checkpoint_now(&env.file()).await.unwrap();
        let whole = std::fs::read_to_string(env.file()).unwrap();
        // A crash cut the next append short.
        std::fs::OpenOptions::new()
            .append(true)
            .open(env.file())
            .unwrap()
            .write_all(&whole.as_bytes()[..40])
            .unwrap();
        env.add_entries(1).await;
        let o = env.core.checkpoint_now(&env.file()).await.unwrap();
        assert!(o.appended_to_file);
        let f = env.failures();
        assert_eq!(f.len(), 1, "only the torn fragment fails: {f:?}");
        assert_eq!(f[0].at, Source::File { line: 6 });
        assert!(matches!(
            f[0].problem,
            CheckpointProblem::Note(NoteError::Malformed(_))
        ));
    }

    #[tokio::test]
    async fn the_checkpointer_signs_by_count_and_at_shutdown() {
        let env = Env::new();
        env.add_entries(2).await;
        let cfg = CheckpointConfig {
            file: env.file(),
            every_entries: 3,
            every: Duration::from_secs(3600),
            poll: Duration::from_millis(10),
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run_checkpointer(env.core.clone(), cfg, async {
            let _ = stopped.await;
        }));
        let latest = |env: &Env| {
            env.store()
                .last(CHECKPOINTS)
                .unwrap()
                .map(|(k, _)| u64::from_be_bytes(k.try_into().unwrap()))
        };

        // At start: the two uncovered entries.
        poll_until(|| latest(&env) == Some(2)).await;
        // Two more: below the count, and the interval is an hour: no checkpoint.
        env.add_entries(2).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(latest(&env), Some(2));
        // A third: 3 new entries, signed.
        env.add_entries(1).await;
        poll_until(|| latest(&env) == Some(5)).await;
        // One more, then shutdown: signed on the way out.
        env.add_entries(1).await;
        stop.send(()).unwrap();
        task.await.unwrap();
        assert_eq!(latest(&env), Some(6));
        let report = env.verify().unwrap();
        assert_eq!(
            (report.in_store, report.in_file, report.latest),
            (3, 3, Some(6))
        );
    }

    async fn poll_until(mut cond: impl FnMut() -> bool) {
        for _ in 0..1000 {
            if cond() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("condition not reached within 10 s");
    }

    #[tokio::test]
    async fn the_checkpointer_signs_by_time_and_survives_errors() {
        let env = Env::new();
        env.add_entries(1).await;
        // A file that cannot be written (its folder does not exist): errors are
        // logged and retried, the loop does not stop.
        let cfg = CheckpointConfig {
            file: env.dir.path().join("missing-folder").join("cp.txt"),
            every_entries: 1000,
            every: Duration::from_millis(50),
            poll: Duration::from_millis(10),
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run_checkpointer(env.core.clone(), cfg, async {
            let _ = stopped.await;
        }));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!task.is_finished());
        std::fs::create_dir(env.dir.path().join("missing-folder")).unwrap();
        let file = env.dir.path().join("missing-folder").join("cp.txt");
        poll_until(|| file.exists()).await;
        // By time: one entry, far below the count, signed after the interval.
        env.add_entries(1).await;
        poll_until(|| {
            std::fs::read_to_string(&file)
                .map(|t| split_notes(&t).len() == 2)
                .unwrap_or(false)
        })
        .await;
        stop.send(()).unwrap();
        task.await.unwrap();
    }
}
