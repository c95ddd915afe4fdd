//! Every tree the domain keeps, with its key layout. Values are versioned rows
//! (`…V1`, JSON; entries in a compact binary form) whose secret parts are
//! sealed under a data key; keys are random
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
/// blind(NHS login `sub`) → account id.
pub const ACCOUNTS_BY_NHS_LOGIN: TreeName = TreeName::new("accounts_by_nhs_login");
/// SHA-256(mailed link token) → what the link is for (confirm, reset).
pub const EMAIL_TOKENS: TreeName = TreeName::new("email_tokens");
/// Sign-ins in progress at NHS login: start time ‖ SHA-256(cookie token).
pub const LOGIN_FLOWS: TreeName = TreeName::new("login_flows");
/// `sha256(session token)` → `SessionRowV1`. The token itself is never stored.
pub const SESSIONS: TreeName = TreeName::new("sessions");
/// `patient_id` → `PatientRowV1` (sealed demographics).
pub const PATIENTS: TreeName = TreeName::by_patient("patients");
/// `blind("nhs-number", digits)` → `patient_id`.
pub const PATIENTS_BY_NHS: TreeName = TreeName::new("patients_by_nhs");
/// `patient_id ‖ entry_id` → `EntryRowV1` (sealed entry; compact, not JSON:
/// see `EntryRowV1::encode`).
pub const ENTRIES: TreeName = TreeName::by_patient("entries");
/// `patient_id ‖ document_id` → `DocumentRowV1` (sealed metadata, chunk count).
pub const DOCUMENTS: TreeName = TreeName::by_patient("documents");
/// `patient_id ‖ document_id ‖ chunk index (u32 BE)` → sealed chunk.
pub const DOC_CHUNKS: TreeName = TreeName::by_patient("doc_chunks");
/// `seq (u64 BE)` → audit entry (see `audit::entry`): hash-chained, append-only.
pub const AUDIT: TreeName = TreeName::new("audit");
/// `patient_id ‖ seq (u64 BE)` → empty: that patient's audit entries.
pub const AUDIT_BY_PATIENT: TreeName = TreeName::by_patient("audit_by_patient");
/// `patient_id ‖ grant_id` → `GrantRowV1` (the grant, sealed under the patient's key).
pub const GRANTS: TreeName = TreeName::by_patient("grants");
/// `account_id ‖ patient_id ‖ grant_id` → empty: grants to an account.
pub const GRANTS_BY_ACCOUNT: TreeName = TreeName::new("grants_by_account");
/// `org_id ‖ patient_id ‖ grant_id` → empty: grants to an organisation, so a
/// professional's person search looks only at people who shared with them.
pub const GRANTS_BY_ORG: TreeName = TreeName::new("grants_by_org");
/// `sha256(invitation token)` → `InviteRowV1`. The token itself is never stored.
pub const INVITES: TreeName = TreeName::new("invites");
/// `org_id` → `OrgRowV1` (an organisation's name is public, not personal, data).
pub const ORGS: TreeName = TreeName::new("orgs");
/// `org_id ‖ account_id` → `MemberRowV1`.
pub const MEMBERS: TreeName = TreeName::new("members");
/// `account_id ‖ org_id` → `MemberRowV1` (the same row, found from the account).
pub const MEMBERS_BY_ACCOUNT: TreeName = TreeName::new("members_by_account");
/// `org_id ‖ staff_invite_id` → `StaffInviteRowV1` (address sealed under the org's key).
pub const STAFF_INVITES: TreeName = TreeName::new("staff_invites");
/// `patient_id ‖ break_glass_id` → `BreakGlassRowV1` (reason sealed).
pub const BREAK_GLASS: TreeName = TreeName::by_patient("break_glass");
/// `org_id ‖ break_glass_id` → `patient_id`: an organisation's uses, for its report.
pub const BREAK_GLASS_BY_ORG: TreeName = TreeName::new("break_glass_by_org");
/// `client_id` → `FeedClientRowV1` (an organisation's system and its public keys).
pub const FEED_CLIENTS: TreeName = TreeName::new("feed_clients");
/// `org_id ‖ client_id` → empty: an organisation's feed clients.
pub const FEED_CLIENTS_BY_ORG: TreeName = TreeName::new("feed_clients_by_org");
/// `expiry (i64 BE) ‖ sha256(client_id ‖ jti)` → empty: client assertions
/// already used, kept until they expire so none is accepted twice.
pub const FEED_ASSERTIONS: TreeName = TreeName::new("feed_assertions");
/// `expiry (i64 BE) ‖ sha256(token)` → `FeedTokenRowV1`. The token itself is never stored.
pub const FEED_TOKENS: TreeName = TreeName::new("feed_tokens");
/// `blind("feed-identifier", org ‖ system ‖ value)` → `patient_id ‖ entry_id`:
/// where a feed's business identifier landed, so a re-post updates it.
pub const FEED_IDENTIFIERS: TreeName = TreeName::new("feed_identifiers");
/// `size (u64 BE)` → signed checkpoint note (see `checkpoint`).
pub const CHECKPOINTS: TreeName = TreeName::new("checkpoints");
/// `patient_id ‖ assignment_id` → `AssignmentRowV1` (see `assignments`): a
/// questionnaire sent to the patient, by whom and what became of it, sealed
/// under the patient's key.
pub const QUESTIONNAIRE_ASSIGNMENTS: TreeName = TreeName::by_patient("questionnaire_assignments");
/// `account_id ‖ org_id` → `SealedListRowV1` (see `worklists`): the last 20
/// records a professional opened for an organisation, sealed under their
/// account's key. Who they looked at is theirs alone.
pub const RECENT_RECORDS: TreeName = TreeName::new("recent_records");
/// `account_id ‖ org_id` → `SealedListRowV1`: a professional's worklists in an
/// organisation (ids and names), sealed under their account's key. Every
/// change of names goes through this one row, so names stay unique.
pub const WORKLIST_NAMES: TreeName = TreeName::new("worklist_names");
/// `account_id ‖ org_id ‖ worklist_id` → `SealedListRowV1`: the people on one
/// worklist, sealed under the professional's account key.
pub const WORKLISTS: TreeName = TreeName::new("worklists");
/// `request_id` → `RequestRowV1` (see `access_requests`): a subject access
/// request, its state and clock in the clear, its answers sealed under the
/// request's own key.
pub const ACCESS_REQUESTS: TreeName = TreeName::new("access_requests");
/// `org_id ‖ request_id` → empty: an organisation's queue.
pub const ACCESS_REQUESTS_BY_ORG: TreeName = TreeName::new("access_requests_by_org");
/// `requester key ‖ request_id` → empty: a requester's list; the key is
/// `'a' ‖ account_id`, or `'g' ‖ blind(guest email)` for a guest.
pub const ACCESS_REQUESTS_BY_REQUESTER: TreeName = TreeName::new("access_requests_by_requester");
/// `patient_id ‖ request_id` → `org_id`: requests about a Keyhold patient,
/// which the policy reads as facts (a records officer's basis).
pub const ACCESS_REQUESTS_BY_PATIENT: TreeName = TreeName::by_patient("access_requests_by_patient");
/// reference (ASCII) → `request_id`: references are unique.
pub const ACCESS_REQUEST_REFS: TreeName = TreeName::new("access_request_refs");
/// `request_id ‖ seq (u32 BE)` → `MessageRowV1` (text sealed).
pub const ACCESS_REQUEST_MESSAGES: TreeName = TreeName::new("access_request_messages");
/// `request_id ‖ file_id` → `FileRowV1` (metadata sealed).
pub const ACCESS_REQUEST_FILES: TreeName = TreeName::new("access_request_files");
/// `request_id ‖ file_id ‖ chunk (u32 BE)` → sealed chunk.
pub const ACCESS_REQUEST_CHUNKS: TreeName = TreeName::new("access_request_chunks");
/// `expiry (i64 BE) ‖ request_id` → empty: disclosures by when they lapse.
pub const ACCESS_REQUEST_EXPIRY: TreeName = TreeName::new("access_request_expiry");
/// `sha256(token)` → `GuestRowV1`: a guest's mailed link, then their
/// session (the token itself is never stored).
pub const GUEST_TOKENS: TreeName = TreeName::new("guest_tokens");

/// `time (i64 BE) ‖ hash`: the key of a row that lapses at (or started at)
/// `time`, so lapsed rows sort first and are swept by a prefix scan.
pub(crate) fn expiry_key(time: i64, hash: &[u8; 32]) -> Vec<u8> {
    let mut k = Vec::with_capacity(40);
    k.extend_from_slice(&time.to_be_bytes());
    k.extend_from_slice(hash);
    k
}

/// Adds to `batch` the deletion of up to `max` rows of an expiry-keyed tree
/// whose time is before `before`.
pub(crate) fn sweep_expired(
    store: &dyn keyhold_storage::Store,
    batch: &mut keyhold_storage::Batch,
    tree: TreeName,
    before: i64,
    max: usize,
) -> Result<(), keyhold_storage::StorageError> {
    for item in store.scan(tree, b"").take(max) {
        let (k, _) = item?;
        let at = k
            .get(..8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(i64::from_be_bytes)
            .unwrap_or(i64::MIN);
        if at >= before {
            break;
        }
        batch.delete(tree, k);
    }
    Ok(())
}

/// The schema this build writes. Bump on any incompatible change to a row or
/// key layout; the server refuses a store with a version it cannot read.
/// 2: entry rows compact (`EntryRowV1::encode`), not JSON.
pub const SCHEMA_VERSION: u32 = 2;

/// Older schemas this build still reads; a store of one is marked
/// [`SCHEMA_VERSION`] when opened (its old rows stay readable), so an older
/// build then refuses it rather than misread the new rows.
pub const READABLE_SCHEMAS: [u32; 1] = [1];

pub(crate) fn pair(a: &[u8; 16], b: &[u8; 16]) -> Vec<u8> {
    let mut k = Vec::with_capacity(32);
    k.extend_from_slice(a);
    k.extend_from_slice(b);
    k
}
