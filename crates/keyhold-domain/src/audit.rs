//! The audit trail: typed events, appended through one path, hash-chained by
//! the store's committer in the order it writes them.
//!
//! Stored entry (binary, so verification hashes exactly the bytes stored):
//! `0x01 ‖ seq (u64 BE) ‖ prev hash (32) ‖ hash (32) ‖ body (JSON)`, where
//! `hash = SHA-256("keyhold-audit/v1" ‖ seq ‖ prev ‖ body)` and the first entry's
//! `prev` is 32 zero bytes. The body holds ids and labels, never clinical
//! content, names or contact details.

use std::fmt;
use std::sync::Arc;

use keyhold_crypto::sha256;
use keyhold_storage::{Batch, ChainLink, Store};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::trees::{AUDIT, AUDIT_BY_PATIENT};
use crate::{AccountId, BreakGlassId, DomainError, GrantId, PatientId};

const VERSION: u8 = 1;
const HEADER: usize = 1 + 8 + 32 + 32;

/// What was done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    Read,
    Create,
    Update,
    Delete,
    Export,
    SignUp,
    SignIn,
    SignInFailed,
    SignOut,
    Grant,
    Revoke,
    BreakGlass,
    KeyRotation,
    VerifyIdentity,
    /// A patient's record erased (crypto-shredded).
    Erase,
    /// Copies of records released to a subject access requester.
    Disclose,
}

impl AuditAction {
    pub fn label(&self) -> &'static str {
        match self {
            AuditAction::Read => "Viewed",
            AuditAction::Create => "Added",
            AuditAction::Update => "Changed",
            AuditAction::Delete => "Deleted",
            AuditAction::Export => "Downloaded",
            AuditAction::SignUp => "Created an account",
            AuditAction::SignIn => "Signed in",
            AuditAction::SignInFailed => "Failed sign-in",
            AuditAction::SignOut => "Signed out",
            AuditAction::Grant => "Shared",
            AuditAction::Revoke => "Stopped sharing",
            AuditAction::BreakGlass => "Emergency access",
            AuditAction::VerifyIdentity => "Identity checked",
            AuditAction::KeyRotation => "Rotated keys",
            AuditAction::Erase => "Erased the record",
            AuditAction::Disclose => "Disclosed",
        }
    }
}

/// The role the actor acted in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditRole {
    Patient,
    Carer,
    Professional,
    OrgAdmin,
    RecordsOfficer,
    Operator,
    Anonymous,
    /// An organisation's system (a feed), not a person.
    System,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Denied,
    Failed,
}

/// Who acted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditActor {
    pub account: Option<AccountId>,
    pub role: AuditRole,
    pub organisation: Option<String>,
    pub acting_for: Option<PatientId>,
}

impl AuditActor {
    pub fn patient(account: AccountId) -> Self {
        AuditActor {
            account: Some(account),
            role: AuditRole::Patient,
            organisation: None,
            acting_for: None,
        }
    }

    pub fn operator() -> Self {
        AuditActor {
            account: None,
            role: AuditRole::Operator,
            organisation: None,
            acting_for: None,
        }
    }

    pub fn anonymous() -> Self {
        AuditActor {
            account: None,
            role: AuditRole::Anonymous,
            organisation: None,
            acting_for: None,
        }
    }
}

/// One audited event, before the committer gives it a place in the chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub actor: AuditActor,
    pub action: AuditAction,
    pub patient: Option<PatientId>,
    /// A resource reference made of kinds and ids only: `record`, `entry/<id>`.
    pub resource: String,
    pub purpose: String,
    pub outcome: Outcome,
    /// What allowed it: ownership, which grant, or which break-glass. Absent
    /// for events that are not accesses to a record (sign-in, denials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basis: Option<AuditBasis>,
}

/// Why an access was allowed, by reference (ids only, never the grant's
/// purpose or the break-glass reason, which stay sealed with the record).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AuditBasis {
    Owner,
    Grant {
        grant: GrantId,
    },
    Contributor,
    BreakGlass {
        id: BreakGlassId,
    },
    /// A records officer compiling a subject access request's disclosure.
    SubjectAccess {
        request: crate::RequestId,
    },
}

/// A decoded, stored entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    pub seq: u64,
    pub prev: [u8; 32],
    pub hash: [u8; 32],
    pub event: AuditEvent,
}

fn entry_hash(seq: u64, prev: &[u8; 32], body: &[u8]) -> [u8; 32] {
    let mut m = Vec::with_capacity(16 + 8 + 32 + body.len());
    m.extend_from_slice(b"keyhold-audit/v1");
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(prev);
    m.extend_from_slice(body);
    sha256(&m)
}

/// Raw parts of a stored entry, without parsing the body.
struct RawEntry<'a> {
    seq: u64,
    prev: [u8; 32],
    hash: [u8; 32],
    body: &'a [u8],
}

fn split(bytes: &[u8]) -> Option<RawEntry<'_>> {
    if bytes.len() < HEADER || bytes[0] != VERSION {
        return None;
    }
    Some(RawEntry {
        seq: u64::from_be_bytes(bytes[1..9].try_into().ok()?),
        prev: bytes[9..41].try_into().ok()?,
        hash: bytes[41..73].try_into().ok()?,
        body: &bytes[HEADER..],
    })
}

/// Decodes a stored entry; `None` if it is malformed.
pub fn decode(bytes: &[u8]) -> Option<AuditEntry> {
    let raw = split(bytes)?;
    let event = serde_json::from_slice(raw.body).ok()?;
    Some(AuditEntry {
        seq: raw.seq,
        prev: raw.prev,
        hash: raw.hash,
        event,
    })
}

/// Links entries in the committer: the only place a hash is chosen.
pub struct AuditChain;

impl ChainLink for AuditChain {
    fn link(&self, seq: u64, previous: Option<&[u8]>, payload: &[u8]) -> Result<Vec<u8>, String> {
        let prev = match previous {
            None => [0u8; 32],
            Some(p) => {
                split(p)
                    .ok_or("the previous audit entry is malformed")?
                    .hash
            }
        };
        let hash = entry_hash(seq, &prev, payload);
        let mut v = Vec::with_capacity(HEADER + payload.len());
        v.push(VERSION);
        v.extend_from_slice(&seq.to_be_bytes());
        v.extend_from_slice(&prev);
        v.extend_from_slice(&hash);
        v.extend_from_slice(payload);
        Ok(v)
    }
}

/// The one path events take into the store.
#[derive(Clone)]
pub struct AuditLog {
    store: Arc<dyn Store>,
}

impl AuditLog {
    pub fn new(store: Arc<dyn Store>) -> Self {
        AuditLog { store }
    }

    /// Adds `event` to `batch`, so it is written atomically with the change it
    /// describes.
    /// An event about a patient is also indexed under that patient, so the
    /// patient's access log reads only their entries.
    pub fn add(&self, batch: &mut Batch, event: &AuditEvent) -> Result<(), DomainError> {
        let body = serde_json::to_vec(event)?;
        match event.patient {
            Some(p) => {
                batch.append_indexed(AUDIT, body, vec![(AUDIT_BY_PATIENT, p.as_bytes().to_vec())])
            }
            None => batch.append(AUDIT, body),
        }
        Ok(())
    }

    /// Writes `event` on its own and waits until it is durable. Reads call this
    /// before they return any patient data.
    pub async fn record(&self, event: &AuditEvent) -> Result<(), DomainError> {
        let mut b = Batch::new();
        self.add(&mut b, event)?;
        self.store.submit(b).await?;
        Ok(())
    }
}

/// What `verify` found wrong, with the position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainBreak {
    /// The key and the sequence number inside disagree, or numbers skip: an
    /// entry was removed, inserted or moved.
    Sequence { position: u64, found: u64 },
    /// The entry does not link to the one before it.
    Link { seq: u64 },
    /// The entry's contents do not match its hash: it was changed.
    Hash { seq: u64 },
    /// The entry cannot be decoded at all.
    Malformed { seq: u64 },
}

impl fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChainBreak::Sequence { position, found } => write!(
                f,
                "entry at position {position} has sequence number {found}: an entry was removed, inserted or reordered"
            ),
            ChainBreak::Link { seq } => write!(f, "entry {seq} does not link to the entry before it"),
            ChainBreak::Hash { seq } => write!(f, "entry {seq} was changed: its hash does not match its contents"),
            ChainBreak::Malformed { seq } => write!(f, "entry {seq} cannot be decoded"),
        }
    }
}

/// The result of a full verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainSummary {
    pub entries: u64,
    pub head: [u8; 32],
}

/// Walks the whole chain. Finds any changed, removed, inserted or reordered
/// entry. A truncated tail leaves a shorter chain that is still whole: only a
/// signed checkpoint of the longer chain can show it (see
/// [`crate::checkpoint::verify_checkpoints`], which walks the chain through
/// [`verify_with`]).
pub fn verify(store: &dyn Store) -> Result<Result<ChainSummary, ChainBreak>, DomainError> {
    verify_with(store, |_, _| {})
}

/// [`verify`], calling `seen(seq, hash)` for every entry found intact, in order,
/// so a caller can compare chosen positions with what was signed, in the same
/// single walk.
pub fn verify_with(
    store: &dyn Store,
    mut seen: impl FnMut(u64, &[u8; 32]),
) -> Result<Result<ChainSummary, ChainBreak>, DomainError> {
    let mut prev = [0u8; 32];
    let mut position = 0u64;
    for item in store.scan(AUDIT, b"") {
        let (key, value) = item?;
        let key_seq = <[u8; 8]>::try_from(key.as_slice())
            .map(u64::from_be_bytes)
            .unwrap_or(u64::MAX);
        let Some(raw) = split(&value) else {
            return Ok(Err(ChainBreak::Malformed { seq: position }));
        };
        if raw.seq != position || key_seq != position {
            return Ok(Err(ChainBreak::Sequence {
                position,
                found: if key_seq != position {
                    key_seq
                } else {
                    raw.seq
                },
            }));
        }
        if raw.prev != prev {
            return Ok(Err(ChainBreak::Link { seq: raw.seq }));
        }
        if entry_hash(raw.seq, &raw.prev, raw.body) != raw.hash {
            return Ok(Err(ChainBreak::Hash { seq: raw.seq }));
        }
        if serde_json::from_slice::<AuditEvent>(raw.body).is_err() {
            return Ok(Err(ChainBreak::Malformed { seq: raw.seq }));
        }
        seen(raw.seq, &raw.hash);
        prev = raw.hash;
        position += 1;
    }
    Ok(Ok(ChainSummary {
        entries: position,
        head: prev,
    }))
}

/// The sequence number and stored hash of one stored entry, without checking
/// either (checkpoints sign what is there; `verify` checks it).
pub(crate) fn seq_and_hash(bytes: &[u8]) -> Option<(u64, [u8; 32])> {
    split(bytes).map(|raw| (raw.seq, raw.hash))
}
