//! Opaque identifiers. Random (UUID v4), so they say nothing about the person
//! and can appear in store keys and audit entries in the clear.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            pub fn new_random() -> Self {
                Self(Uuid::new_v4())
            }
            pub fn as_bytes(&self) -> &[u8; 16] {
                self.0.as_bytes()
            }
            pub fn from_bytes(b: &[u8]) -> Option<Self> {
                Uuid::from_slice(b).ok().map(Self)
            }
            pub fn uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = crate::DomainError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s)
                    .map(Self)
                    .map_err(|_| crate::DomainError::NotFound)
            }
        }
    };
}

id_type!(
    /// A patient (the subject of a record).
    PatientId
);
id_type!(
    /// A sign-in account. A patient's own account links to their `PatientId`.
    AccountId
);
id_type!(
    /// One entry of a record (an allergy, an appointment, a note, …).
    EntryId
);
id_type!(
    /// One uploaded or received document.
    DocumentId
);

id_type!(
    /// An organisation (a GP practice, a hospital trust, a council's social care team).
    OrgId
);
id_type!(
    /// One grant of consent.
    GrantId
);
id_type!(
    /// One use of emergency (break-glass) access.
    BreakGlassId
);
id_type!(
    /// A pending invitation for a professional to join an organisation.
    StaffInviteId
);
id_type!(
    /// An organisation's system that feeds records in (its OAuth client id).
    FeedClientId
);

id_type!(
    /// A subject access request (a request for copies of health records).
    RequestId
);
id_type!(
    /// A file attached to a subject access request (a document the requester
    /// sent, a file in a message, or a disclosure).
    RequestFileId
);

/// Whose data key seals a value: a patient's record or an account's own details.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyOwner {
    Patient(PatientId),
    Account(AccountId),
    /// An organisation's own secrets (the addresses of professionals it invited).
    Organisation(OrgId),
    /// A subject access request: its answers, messages and the requester's files.
    Request(RequestId),
    /// A request's disclosure files, under a key of their own so that deleting
    /// it when they expire shreds them (the request itself is kept).
    Disclosure(RequestId),
    /// Guests' email addresses while they verify them (access requests).
    Guests,
    /// The canary that proves at start-up that the master keys open this store.
    Canary,
}

impl KeyOwner {
    /// The 16-byte key of this owner's wrapped data key in the `deks` tree.
    pub(crate) fn key(&self) -> Vec<u8> {
        let mut k = Vec::with_capacity(17);
        match self {
            KeyOwner::Patient(p) => {
                k.push(b'p');
                k.extend_from_slice(p.as_bytes());
            }
            KeyOwner::Account(a) => {
                k.push(b'a');
                k.extend_from_slice(a.as_bytes());
            }
            KeyOwner::Organisation(o) => {
                k.push(b'o');
                k.extend_from_slice(o.as_bytes());
            }
            KeyOwner::Request(r) => {
                k.push(b'r');
                k.extend_from_slice(r.as_bytes());
            }
            KeyOwner::Disclosure(r) => {
                k.push(b'd');
                k.extend_from_slice(r.as_bytes());
            }
            KeyOwner::Guests => k.push(b'g'),
            KeyOwner::Canary => k.push(b'c'),
        }
        k
    }
}
