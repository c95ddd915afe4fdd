//! Every tree the domain keeps, with its key layout. Values are versioned rows
//! (`…V1`, JSON) whose secret parts are sealed under a data key; keys are random
//! ids, sequence numbers or blind indexes, never a plaintext value.

use keyhold_storage::TreeName;

/// `"schema_version"` → u32 BE.
pub const META: TreeName = TreeName::new("meta");
/// `KeyOwner::key()` (`'p'‖patient` | `'a'‖account` | `'c'`) → age-wrapped data key.
pub const DEKS: TreeName = TreeName::new("deks");
/// `account_id` → `AccountRowV1`.
pub const ACCOUNTS: TreeName = TreeName::new("accounts");
/// `blind("email", normalised email)` → `account_id`.
pub const ACCOUNTS_BY_EMAIL: TreeName = TreeName::new("accounts_by_email");
/// `sha256(session token)` → `SessionRowV1`. The token itself is never stored.
pub const SESSIONS: TreeName = TreeName::new("sessions");
/// `patient_id` → `PatientRowV1` (sealed demographics).
pub const PATIENTS: TreeName = TreeName::new("patients");
/// `blind("nhs-number", digits)` → `patient_id`.
pub const PATIENTS_BY_NHS: TreeName = TreeName::new("patients_by_nhs");
/// `patient_id ‖ entry_id` → `EntryRowV1` (sealed entry).
pub const ENTRIES: TreeName = TreeName::new("entries");
/// `patient_id ‖ document_id` → `DocumentRowV1` (sealed metadata, chunk count).
pub const DOCUMENTS: TreeName = TreeName::new("documents");
/// `patient_id ‖ document_id ‖ chunk index (u32 BE)` → sealed chunk.
pub const DOC_CHUNKS: TreeName = TreeName::new("doc_chunks");
/// `seq (u64 BE)` → audit entry (see `audit::entry`): hash-chained, append-only.
pub const AUDIT: TreeName = TreeName::new("audit");

/// The schema this build reads and writes. Bump on any incompatible change to a
/// row or key layout; the server refuses a store with another version.
pub const SCHEMA_VERSION: u32 = 1;

pub(crate) fn pair(a: &[u8; 16], b: &[u8; 16]) -> Vec<u8> {
    let mut k = Vec::with_capacity(32);
    k.extend_from_slice(a);
    k.extend_from_slice(b);
    k
}
