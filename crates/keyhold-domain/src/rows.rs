//! On-disk rows, versioned and kept apart from the domain types. Secret parts
//! are sealed bytes (base64 in JSON); everything else is ids, counters and times.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{AccountId, PatientId};

/// Sealed bytes travel as base64 inside the JSON rows.
pub(crate) mod b64 {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD_NO_PAD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(s)
            .map_err(serde::de::Error::custom)
    }
}

#[derive(Serialize, Deserialize)]
pub(crate) struct AccountRowV1 {
    /// The email address, sealed under the account's own data key.
    #[serde(with = "b64")]
    pub email: Vec<u8>,
    /// argon2id PHC string (salted hash; not reversible).
    pub password: String,
    /// The record this account is the patient of.
    pub patient: Option<PatientId>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct SessionRowV1 {
    pub account: AccountId,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen_at: OffsetDateTime,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct PatientRowV1 {
    pub version: u32,
    #[serde(with = "b64")]
    pub demographics: Vec<u8>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct EntryRowV1 {
    pub version: u32,
    #[serde(with = "b64")]
    pub sealed: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct DocumentRowV1 {
    pub version: u32,
    #[serde(with = "b64")]
    pub meta: Vec<u8>,
    /// How many sealed chunks hold the content (each binds its index and this count).
    pub chunks: u32,
}
