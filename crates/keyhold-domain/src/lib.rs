//! Keyhold's domain: the types of a health record, the policy that decides who
//! may touch it, the services that seal, store and audit it. No HTTP here; the
//! web layer and the command line both drive [`Keyhold`].
//!
//! Architecture invariant: every service method that returns patient data has
//! called [`policy::decide`] and waited for its audit entry to be durable.

mod access_log;
pub mod access_requests;
mod accounts;
pub mod assignments;
pub mod audit;
pub mod backup;
mod break_glass;
pub mod bulk;
mod category;
pub mod checkpoint;
pub mod clock;
mod common_passwords;
pub mod consent;
mod credentials;
pub mod demo;
mod documents;
mod email;
pub mod erasure;
mod error;
mod export;
pub mod feeds;
mod identity;
mod ids;
pub mod keystore;
mod metrics;
mod nhs_number;
mod orgs;
pub mod policy;
pub mod questionnaires;
mod record;
mod records;
mod rows;
pub mod search;
mod service;
mod sharing;
mod throttle;
pub mod trees;
pub mod two_factor;
pub mod upload;
mod vault;
pub use vault::KeyringSource;
mod worklists;

pub use access_log::{AccessFilter, AccessLog, AccessLogEntry};
pub use accounts::{Password, SessionToken, SignedIn, MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS};
pub use assignments::{
    Assignment, AssignmentId, AssignmentStatus, AssignmentView, Completion, QuestionnaireRights,
    Questionnaires,
};
pub use break_glass::BreakGlassUse;
pub use category::Category;
pub use credentials::{LinkPurpose, CONFIRM_TTL, RESET_TTL};
pub use documents::{DocumentKind, DocumentMeta, DocumentReader, NewDocument, CHUNK_SIZE};
pub use email::{Email, EmailError};
pub use error::{DomainError, FieldError};
pub use export::RecordExport;
pub use identity::{IdentityLevel, IdentityStatus, LoginFlow, VerifiedBy, VerifiedIdentity};
pub use ids::{
    AccountId, BreakGlassId, DocumentId, EntryId, FeedClientId, GrantId, OrgId, PatientId,
    RequestFileId, RequestId, StaffInviteId,
};
pub use keyhold_storage::{PgOptions, SledTuning};
pub use metrics::ServiceMetrics;
pub use nhs_number::{NhsNumber, NhsNumberError};
pub use orgs::{FirstAdministrator, PendingStaff, StaffMember};
pub use record::{
    ContactDetails, ContactKind, Demographics, EmergencyContact, Entry, EntryKind, Gender,
    NewEntry, Source,
};
pub use records::{Capabilities, Header, RecordView, Standing};
pub use service::{open_backend, open_memory_store, open_store, Keyhold, Settings, StoreBackend};
pub use sharing::{
    Accepted, CaredFor, GrantTerms, GrantView, InvitationView, NewGrantee, ProxyRequest,
};
pub use throttle::{Limit, SignInLimits};
pub use worklists::{
    ListedPerson, PersonSeen, Worklist, WorklistId, WorklistSummary, MAX_PEOPLE_PER_WORKLIST,
    MAX_RECENT_RECORDS, MAX_WORKLISTS, MAX_WORKLIST_NAME_CHARS,
};

/// Re-exported so the binary can build key rings without naming the crypto crate.
pub use keyhold_crypto::passphrase;
pub use keyhold_crypto::{
    constant_time_eq, decrypt_stream, encrypt_stream_to_recipient, random_token, sha256, MacKey,
    MasterKey, MasterKeyring,
};
/// Re-exported for the web layer's `/metrics` (the group-size histogram).
pub use keyhold_storage::{StoreStats, GROUP_SIZE_BOUNDS};
