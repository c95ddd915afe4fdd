//! On-disk rows, versioned and kept apart from the domain types. Secret parts
//! are sealed bytes (base64 in JSON); everything else is ids, counters and times.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::consent::StaffRole;
use crate::{AccountId, GrantId, OrgId, PatientId, StaffInviteId};

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

/// Optional sealed bytes.
pub(crate) mod b64_opt {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => super::b64::serialize(v, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        #[derive(Deserialize)]
        struct W(#[serde(with = "super::b64")] Vec<u8>);
        Ok(Option::<W>::deserialize(d)?.map(|w| w.0))
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
    /// The account holder's name, sealed under the account's key (absent on
    /// accounts made before names were asked for).
    #[serde(default, with = "b64_opt", skip_serializing_if = "Option::is_none")]
    pub name: Option<Vec<u8>>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Identity proofing level (P0 until a check or NHS login says more).
    #[serde(default)]
    pub level: crate::identity::IdentityLevel,
    /// Whether an NHS login identity is linked (its index holds the `sub`).
    #[serde(default)]
    pub nhs_login: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_by: Option<crate::identity::VerifiedBy>,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub verified_at: Option<OffsetDateTime>,
    /// Set at sign-up until the mailed link is opened (rows from before
    /// confirmation existed lack it: they count as confirmed).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub email_unverified: bool,
    /// Sessions started before this have ended (password changed, signed out
    /// everywhere).
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub sessions_valid_after: Option<OffsetDateTime>,
    /// Two-factor: the TOTP secret (sealed) and the recovery codes (hashed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp: Option<TotpRowV1>,
}

#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct TotpRowV1 {
    /// Counts enrolments; part of the secret's AAD.
    pub version: u32,
    #[serde(with = "b64")]
    pub secret: Vec<u8>,
    /// False while enrolling (the code from the app not yet checked).
    pub enabled: bool,
    /// The last 30-second step whose code was accepted: a code is used once.
    #[serde(default)]
    pub last_step: u64,
    /// SHA-256 (hex) of each unused recovery code.
    #[serde(default)]
    pub recovery: Vec<String>,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct SessionRowV1 {
    pub account: AccountId,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen_at: OffsetDateTime,
    /// When the holder last proved it was them (sign-in, or asked again
    /// before a sensitive change); absent means at `created_at`.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub confirmed_at: Option<OffsetDateTime>,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct PatientRowV1 {
    pub version: u32,
    #[serde(with = "b64")]
    pub demographics: Vec<u8>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// One sealed entry. Entries are nearly all of a record's bytes, so since
/// schema 2 they are stored as `0x01 ‖ version (u32 BE) ‖ sealed` (see
/// [`EntryRowV1::encode`]) rather than as JSON with the sealed bytes in
/// base64, which made them a third larger. Rows written as JSON (schema 1,
/// starting with `{`) still read.
#[derive(Serialize, Deserialize)]
pub(crate) struct EntryRowV1 {
    pub version: u32,
    #[serde(with = "b64")]
    pub sealed: Vec<u8>,
}

impl EntryRowV1 {
    /// The first byte of the compact form (JSON rows start with `{`).
    const COMPACT: u8 = 0x01;

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(5 + self.sealed.len());
        out.push(Self::COMPACT);
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&self.sealed);
        out
    }

    pub fn decode(raw: &[u8]) -> Result<Self, crate::DomainError> {
        match raw.split_first() {
            Some((&Self::COMPACT, rest)) if rest.len() >= 4 => {
                let (version, sealed) = rest.split_at(4);
                let version = <[u8; 4]>::try_from(version)
                    .map(u32::from_be_bytes)
                    .map_err(|_| crate::DomainError::Internal("entry row version".into()))?;
                Ok(EntryRowV1 {
                    version,
                    sealed: sealed.to_vec(),
                })
            }
            Some((b'{', _)) => Ok(serde_json::from_slice(raw)?),
            _ => Err(crate::DomainError::Internal(
                "an entry row in no known format".into(),
            )),
        }
    }
}

#[cfg(test)]
mod entry_row_tests {
    use super::EntryRowV1;

    #[test]
    fn both_forms_read_and_the_compact_one_is_smaller() {
        let row = EntryRowV1 {
            version: 7,
            sealed: (0..=255u8).collect(),
        };
        let compact = row.encode();
        let json = serde_json::to_vec(&row).unwrap_or_default();
        assert_eq!(compact.len(), 5 + 256);
        assert!(json.len() > compact.len() * 4 / 3, "{}", json.len());
        for raw in [compact, json] {
            let back = EntryRowV1::decode(&raw).map_err(|e| e.to_string());
            let back = back.as_ref().map(|r| (r.version, r.sealed.clone()));
            assert_eq!(back, Ok((7, (0..=255u8).collect())));
        }
        assert!(EntryRowV1::decode(&[]).is_err());
        assert!(EntryRowV1::decode(&[0x01, 0, 0]).is_err());
        assert!(EntryRowV1::decode(b"[1]").is_err());
    }
}

#[derive(Serialize, Deserialize)]
pub(crate) struct DocumentRowV1 {
    pub version: u32,
    #[serde(with = "b64")]
    pub meta: Vec<u8>,
    /// How many sealed chunks hold the content (each binds its index and this count).
    pub chunks: u32,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct GrantRowV1 {
    pub version: u32,
    /// The whole `Grant`, sealed under the patient's key.
    #[serde(with = "b64")]
    pub sealed: Vec<u8>,
}

/// What an invitation token leads to.
#[derive(Serialize, Deserialize, Clone, Copy, Debug)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum InviteTarget {
    Grant { patient: PatientId, grant: GrantId },
    Staff { org: OrgId, invite: StaffInviteId },
}

#[derive(Serialize, Deserialize)]
pub(crate) struct InviteRowV1 {
    pub target: InviteTarget,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct OrgRowV1 {
    pub name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[derive(Serialize, Deserialize, Clone)]
pub(crate) struct MemberRowV1 {
    pub role: StaffRole,
    pub active: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub added_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub removed_at: Option<OffsetDateTime>,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct StaffInviteRowV1 {
    pub role: StaffRole,
    /// The invited address, sealed under the organisation's key.
    #[serde(with = "b64")]
    pub email: Vec<u8>,
    /// `sha256(token)`, so the invitation can be withdrawn.
    #[serde(with = "b64")]
    pub token_key: Vec<u8>,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct BreakGlassRowV1 {
    pub account: AccountId,
    pub org: OrgId,
    #[serde(with = "time::serde::rfc3339")]
    pub opened_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// The reason given, sealed under the patient's key.
    #[serde(with = "b64")]
    pub reason: Vec<u8>,
}
