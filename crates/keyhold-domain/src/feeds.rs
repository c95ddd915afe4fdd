//! Organisation feeds: how an organisation's own system puts records in.
//!
//! 1. The organisation's administrator registers the system's public keys (a
//!    JWKS). Keyhold keeps only public keys; the private key never leaves the
//!    organisation.
//! 2. The system trades a client assertion — a JWT it signed (RS512 or
//!    ES256), naming itself as `iss` and `sub`, our token endpoint as `aud`,
//!    with a fresh `jti` and at most five minutes to live — for a bearer token
//!    that lasts five minutes (OAuth 2.0 client credentials, RFC 7523). An
//!    assertion is accepted once.
//! 3. With the token it acts as a member of its organisation in the system
//!    role: the one policy function decides its reads and writes like a
//!    professional's. It writes only into records whose patient lets the
//!    organisation contribute, and keeps reading what it contributed.
//! 4. Entries are matched by the organisation's business identifier, so a
//!    re-post updates the entry rather than adding a second one. A batch is
//!    checked whole before anything is written, then written (entries,
//!    identifier index, one audit event each) in one atomic batch.

use std::collections::{BTreeMap, HashSet};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use keyhold_crypto::{random_token, sha256};
use keyhold_storage::{Batch, StorageError};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::audit::{AuditAction, AuditActor, AuditEvent, AuditRole, Outcome};
use crate::consent::{Membership, StaffRole};
use crate::identity::IdentityLevel;
use crate::ids::KeyOwner;
use crate::policy::{Action, Basis, Principal, Resource};
use crate::records::Access;
use crate::rows::EntryRowV1;
use crate::trees::{
    expiry_key, pair, sweep_expired, ENTRIES, FEED_ASSERTIONS, FEED_CLIENTS, FEED_CLIENTS_BY_ORG,
    FEED_IDENTIFIERS, FEED_TOKENS,
};
use crate::vault::Aad;
use crate::{
    AccountId, DomainError, Entry, EntryId, EntryKind, FeedClientId, Keyhold, NewEntry, NhsNumber,
    OrgId, PatientId, Source,
};

/// How long a bearer token lasts.
pub const TOKEN_TTL: Duration = Duration::minutes(5);
/// The longest a client assertion may live; a longer one is refused, so the
/// record of used assertions stays small.
pub const MAX_ASSERTION_TTL: Duration = Duration::minutes(5);
/// Clock skew allowed between the organisation's system and us.
const LEEWAY_SECS: u64 = 30;
/// Entries one batch may carry.
pub const MAX_BATCH_ENTRIES: usize = 1000;
/// The longest business identifier system or value accepted.
pub const MAX_IDENTIFIER_CHARS: usize = 256;
/// Keys a JWKS may hold (two are enough to roll keys over).
const MAX_KEYS: usize = 10;
const IDENTIFIER_INDEX: &str = "feed-identifier";

#[derive(Serialize, Deserialize)]
struct FeedClientRowV1 {
    org: OrgId,
    /// The principal's account id: never an account anyone signs in to; it
    /// names the system in the policy's terms.
    account: AccountId,
    name: String,
    /// The JWKS as registered (public keys only).
    jwks: String,
    #[serde(with = "time::serde::rfc3339")]
    registered_at: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    revoked_at: Option<OffsetDateTime>,
}

#[derive(Serialize, Deserialize)]
struct FeedTokenRowV1 {
    client: FeedClientId,
}

/// A registered system, as its organisation's administrators see it.
#[derive(Clone, Debug, Serialize)]
pub struct FeedClient {
    pub id: FeedClientId,
    pub name: String,
    pub key_ids: Vec<String>,
    pub registered_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
}

/// A token for an organisation's system.
#[derive(Clone, Debug)]
pub struct FeedToken {
    pub access_token: String,
    pub expires_in: i64,
}

/// Why a client assertion was refused. OAuth's `invalid_client` for all but
/// `Replayed`, which says what went wrong without helping a forger.
#[derive(Debug, thiserror::Error)]
pub enum TokenRefusal {
    #[error("the client assertion is not a JWT this server can read")]
    Malformed,
    #[error("the assertion must be signed with RS512 or ES256")]
    Algorithm,
    #[error("no active client with that id")]
    UnknownClient,
    #[error("the signature does not verify against the registered keys")]
    Signature,
    #[error("the assertion's claims are not acceptable: {0}")]
    Claims(String),
    #[error("this assertion (its jti) was already used")]
    Replayed,
    #[error(transparent)]
    Domain(#[from] DomainError),
}

/// A business identifier: the organisation's own id for what it sent.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BusinessId {
    system: String,
    value: String,
}

impl BusinessId {
    pub fn parse(system: &str, value: &str) -> Result<Self, String> {
        let (system, value) = (system.trim(), value.trim());
        if system.is_empty() || value.is_empty() {
            return Err("an identifier needs a system and a value".into());
        }
        if system.chars().count() > MAX_IDENTIFIER_CHARS
            || value.chars().count() > MAX_IDENTIFIER_CHARS
        {
            return Err(format!(
                "an identifier's system and value must be {MAX_IDENTIFIER_CHARS} characters or fewer"
            ));
        }
        if system.chars().chain(value.chars()).any(char::is_control) {
            return Err("an identifier must not hold control characters".into());
        }
        Ok(BusinessId {
            system: system.to_string(),
            value: value.to_string(),
        })
    }

    pub fn system(&self) -> &str {
        &self.system
    }

    pub fn value(&self) -> &str {
        &self.value
    }
}

/// Whose record an item is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeedSubject {
    NhsNumber(NhsNumber),
    Patient(PatientId),
}

/// One entry a feed sends.
#[derive(Clone, Debug)]
pub struct FeedItem {
    pub subject: FeedSubject,
    pub identifier: BusinessId,
    pub entry: NewEntry,
}

/// What became of one item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ingested {
    pub patient: PatientId,
    pub entry: EntryId,
    pub version: u32,
    pub created: bool,
}

/// One item's problem, by its place in the batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemProblem {
    pub index: usize,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Some items cannot be taken; nothing was written.
    #[error("{} item(s) refused", .0.len())]
    Refused(Vec<ItemProblem>),
    #[error(transparent)]
    Domain(#[from] DomainError),
}

impl From<StorageError> for IngestError {
    fn from(e: StorageError) -> Self {
        IngestError::Domain(e.into())
    }
}

impl From<keyhold_crypto::CryptoError> for IngestError {
    fn from(e: keyhold_crypto::CryptoError) -> Self {
        IngestError::Domain(e.into())
    }
}

impl From<serde_json::Error> for IngestError {
    fn from(e: serde_json::Error) -> Self {
        IngestError::Domain(e.into())
    }
}

/// Claims a client assertion must carry.
#[derive(Deserialize)]
struct AssertionClaims {
    iss: String,
    /// Checked equal to the client id by `Validation::sub`.
    #[allow(dead_code)]
    sub: String,
    jti: String,
    exp: i64,
    #[serde(default)]
    iat: Option<i64>,
}

/// Checks a pasted JWKS: public RSA (2048 bits or more) or P-256 keys only.
pub fn parse_jwks(text: &str) -> Result<JwkSet, String> {
    let raw: serde_json::Value =
        serde_json::from_str(text).map_err(|_| "The key set is not JSON".to_string())?;
    let keys = raw
        .get("keys")
        .and_then(|k| k.as_array())
        .ok_or("The key set must be a JWKS: an object with a \"keys\" list")?;
    if keys.is_empty() || keys.len() > MAX_KEYS {
        return Err(format!("The key set must hold 1 to {MAX_KEYS} keys"));
    }
    if keys
        .iter()
        .any(|k| k.get("d").is_some() || k.get("p").is_some())
    {
        return Err(
            "This key set holds a private key. Register only the public keys, and keep the private key in your system".into(),
        );
    }
    let set: JwkSet = serde_json::from_value(raw)
        .map_err(|_| "A key in the set is not a valid JWK".to_string())?;
    for k in &set.keys {
        match &k.algorithm {
            AlgorithmParameters::RSA(rsa) => {
                let n = base64::Engine::decode(
                    &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                    rsa.n.trim_end_matches('='),
                )
                .map_err(|_| "An RSA key's modulus is not base64url".to_string())?;
                let bits = n.iter().skip_while(|b| **b == 0).count() * 8;
                if bits < 2048 {
                    return Err("RSA keys must be 2048 bits or more".into());
                }
            }
            AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {}
            _ => return Err("Keys must be RSA (for RS512) or EC P-256 (for ES256)".into()),
        }
        DecodingKey::from_jwk(k).map_err(|_| "A key in the set cannot be used".to_string())?;
    }
    Ok(set)
}

fn key_algorithm(k: &Jwk) -> Algorithm {
    match k.algorithm {
        AlgorithmParameters::EllipticCurve(_) => Algorithm::ES256,
        _ => Algorithm::RS512,
    }
}

impl Keyhold {
    fn feed_client_row(&self, id: FeedClientId) -> Result<Option<FeedClientRowV1>, DomainError> {
        match self.store.get(FEED_CLIENTS, id.as_bytes())? {
            Some(raw) => Ok(Some(serde_json::from_slice(&raw)?)),
            None => Ok(None),
        }
    }

    /// Administrators: registers a system of the organisation by its public keys.
    pub async fn register_feed_client(
        &self,
        p: &Principal,
        org: OrgId,
        name: &str,
        jwks: &str,
    ) -> Result<FeedClientId, DomainError> {
        Self::require_admin(p, org)?;
        let name = name.trim();
        let mut errors = Vec::new();
        if name.is_empty() || name.chars().count() > 100 {
            errors.push(crate::FieldError::new(
                "name",
                "Enter the system's name, 100 characters or fewer",
            ));
        }
        if let Err(why) = parse_jwks(jwks) {
            errors.push(crate::FieldError::new("jwks", why));
        }
        if !errors.is_empty() {
            return Err(DomainError::Invalid(errors));
        }
        let id = FeedClientId::new_random();
        let now = self.clock.now();
        let row = FeedClientRowV1 {
            org,
            account: AccountId::new_random(),
            name: name.to_string(),
            jwks: jwks.trim().to_string(),
            registered_at: now,
            revoked_at: None,
        };
        let mut batch = Batch::new();
        batch.require_absent(FEED_CLIENTS, id.as_bytes().to_vec());
        batch.put(
            FEED_CLIENTS,
            id.as_bytes().to_vec(),
            serde_json::to_vec(&row)?,
        );
        batch.put(
            FEED_CLIENTS_BY_ORG,
            pair(org.as_bytes(), id.as_bytes()),
            Vec::new(),
        );
        self.audit.add(
            &mut batch,
            &self.admin_event(p, org, AuditAction::Create, id),
        )?;
        self.store.submit(batch).await?;
        Ok(id)
    }

    fn admin_event(
        &self,
        p: &Principal,
        org: OrgId,
        action: AuditAction,
        id: FeedClientId,
    ) -> AuditEvent {
        AuditEvent {
            at: self.clock.now(),
            actor: AuditActor {
                account: Some(p.account),
                role: AuditRole::OrgAdmin,
                organisation: Some(org.to_string()),
                acting_for: None,
            },
            action,
            patient: None,
            resource: format!("feed-client/{id}"),
            purpose: "organisation feed".into(),
            outcome: Outcome::Success,
            basis: None,
        }
    }

    /// Administrators: the organisation's systems, newest first.
    pub fn feed_clients(&self, p: &Principal, org: OrgId) -> Result<Vec<FeedClient>, DomainError> {
        Self::require_admin(p, org)?;
        let mut out = Vec::new();
        for item in self.store.scan(FEED_CLIENTS_BY_ORG, org.as_bytes()) {
            let (k, _) = item?;
            let Some(id) = k.get(16..).and_then(FeedClientId::from_bytes) else {
                continue;
            };
            let Some(row) = self.feed_client_row(id)? else {
                continue;
            };
            let key_ids = parse_jwks(&row.jwks)
                .map(|s| {
                    s.keys
                        .iter()
                        .map(|k| k.common.key_id.clone().unwrap_or_else(|| "(no kid)".into()))
                        .collect()
                })
                .unwrap_or_default();
            out.push(FeedClient {
                id,
                name: row.name,
                key_ids,
                registered_at: row.registered_at,
                revoked_at: row.revoked_at,
            });
        }
        out.sort_by_key(|c| std::cmp::Reverse(c.registered_at));
        Ok(out)
    }

    /// Administrators: stops a system at once (its tokens stop working on
    /// their next use).
    pub async fn revoke_feed_client(
        &self,
        p: &Principal,
        org: OrgId,
        id: FeedClientId,
    ) -> Result<(), DomainError> {
        Self::require_admin(p, org)?;
        let raw = self
            .store
            .get(FEED_CLIENTS, id.as_bytes())?
            .ok_or(DomainError::NotFound)?;
        let mut row: FeedClientRowV1 = serde_json::from_slice(&raw)?;
        if row.org != org {
            return Err(DomainError::NotFound);
        }
        if row.revoked_at.is_some() {
            return Ok(());
        }
        row.revoked_at = Some(self.clock.now());
        let mut batch = Batch::new();
        batch.require_equals(FEED_CLIENTS, id.as_bytes().to_vec(), Some(raw));
        batch.put(
            FEED_CLIENTS,
            id.as_bytes().to_vec(),
            serde_json::to_vec(&row)?,
        );
        self.audit.add(
            &mut batch,
            &self.admin_event(p, org, AuditAction::Revoke, id),
        )?;
        self.store.submit(batch).await?;
        Ok(())
    }

    /// The token endpoint: checks a client assertion and issues a token.
    /// `audience` is the token endpoint's own URL, which the assertion must name.
    pub async fn feed_token(
        &self,
        assertion: &str,
        audience: &str,
    ) -> Result<FeedToken, TokenRefusal> {
        let header = jsonwebtoken::decode_header(assertion).map_err(|_| TokenRefusal::Malformed)?;
        if !matches!(header.alg, Algorithm::RS512 | Algorithm::ES256) {
            return Err(TokenRefusal::Algorithm);
        }
        // Who it claims to be, before we know which keys to check it with.
        let mut peek = Validation::new(header.alg);
        peek.insecure_disable_signature_validation();
        peek.validate_exp = false;
        peek.validate_aud = false;
        peek.required_spec_claims = HashSet::new();
        let claimed: AssertionClaims =
            jsonwebtoken::decode(assertion, &DecodingKey::from_secret(&[]), &peek)
                .map_err(|_| TokenRefusal::Claims("iss, sub, jti and exp are required".into()))?
                .claims;
        let client: FeedClientId = claimed
            .iss
            .parse()
            .map_err(|_| TokenRefusal::UnknownClient)?;
        let row = self
            .feed_client_row(client)?
            .filter(|r| r.revoked_at.is_none())
            .ok_or(TokenRefusal::UnknownClient)?;
        if self.organisation_name(row.org).is_err() {
            return Err(TokenRefusal::UnknownClient);
        }
        let keys = parse_jwks(&row.jwks).map_err(|_| TokenRefusal::UnknownClient)?;
        let candidates: Vec<&Jwk> = keys
            .keys
            .iter()
            .filter(|k| key_algorithm(k) == header.alg)
            .filter(|k| header.kid.is_none() || k.common.key_id == header.kid)
            .collect();
        let client_id = client.to_string();
        let mut v = Validation::new(header.alg);
        v.set_audience(&[audience]);
        v.set_issuer(&[client_id.as_str()]);
        v.sub = Some(client_id.clone());
        v.leeway = LEEWAY_SECS;
        v.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
        let mut verified = None;
        for k in candidates {
            let Ok(key) = DecodingKey::from_jwk(k) else {
                continue;
            };
            match jsonwebtoken::decode::<AssertionClaims>(assertion, &key, &v) {
                Ok(t) => {
                    verified = Some(t.claims);
                    break;
                }
                Err(e) => match e.kind() {
                    jsonwebtoken::errors::ErrorKind::InvalidSignature => continue,
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                        return Err(TokenRefusal::Claims("the assertion has expired".into()))
                    }
                    jsonwebtoken::errors::ErrorKind::InvalidAudience => {
                        return Err(TokenRefusal::Claims(format!("aud must be {audience}")))
                    }
                    jsonwebtoken::errors::ErrorKind::InvalidIssuer
                    | jsonwebtoken::errors::ErrorKind::InvalidSubject => {
                        return Err(TokenRefusal::Claims(
                            "iss and sub must both be the client id".into(),
                        ))
                    }
                    _ => return Err(TokenRefusal::Claims("the claims do not parse".into())),
                },
            }
        }
        let claims = verified.ok_or(TokenRefusal::Signature)?;
        let now = self.clock.now().unix_timestamp();
        if claims.exp > now + MAX_ASSERTION_TTL.whole_seconds() + LEEWAY_SECS as i64 {
            return Err(TokenRefusal::Claims(
                "the assertion must expire within 5 minutes".into(),
            ));
        }
        if claims.iat.is_some_and(|iat| iat > now + LEEWAY_SECS as i64) {
            return Err(TokenRefusal::Claims("iat is in the future".into()));
        }
        let jti = claims.jti.trim();
        if jti.is_empty() || jti.len() > 256 {
            return Err(TokenRefusal::Claims(
                "jti must be 1 to 256 characters".into(),
            ));
        }

        let mut batch = Batch::new();
        let store = self.store.as_ref();
        sweep_expired(
            store,
            &mut batch,
            FEED_ASSERTIONS,
            now - LEEWAY_SECS as i64,
            500,
        )
        .map_err(DomainError::from)?;
        sweep_expired(store, &mut batch, FEED_TOKENS, now, 500).map_err(DomainError::from)?;
        let mut seen = client.as_bytes().to_vec();
        seen.extend_from_slice(jti.as_bytes());
        // The same assertion again has the same key: the precondition refuses it.
        let used = expiry_key(claims.exp, &sha256(&seen));
        batch.require_absent(FEED_ASSERTIONS, used.clone());
        batch.put(FEED_ASSERTIONS, used, Vec::new());
        let secret = random_token().map_err(DomainError::from)?;
        let expires = now + TOKEN_TTL.whole_seconds();
        batch.put(
            FEED_TOKENS,
            expiry_key(expires, &sha256(secret.as_bytes())),
            serde_json::to_vec(&FeedTokenRowV1 { client }).map_err(DomainError::from)?,
        );
        self.audit.add(
            &mut batch,
            &AuditEvent {
                at: self.clock.now(),
                actor: Self::system_actor(row.org),
                action: AuditAction::SignIn,
                patient: None,
                resource: format!("feed-client/{client}"),
                purpose: "organisation feed".into(),
                outcome: Outcome::Success,
                basis: None,
            },
        )?;
        match self.store.submit(batch).await {
            Ok(_) => {}
            Err(StorageError::Conflict) => return Err(TokenRefusal::Replayed),
            Err(e) => return Err(DomainError::from(e).into()),
        }
        Ok(FeedToken {
            access_token: format!("{expires}.{secret}"),
            expires_in: TOKEN_TTL.whole_seconds(),
        })
    }

    fn system_actor(org: OrgId) -> AuditActor {
        AuditActor {
            account: None,
            role: AuditRole::System,
            organisation: Some(org.to_string()),
            acting_for: None,
        }
    }

    /// The principal behind a bearer token, if it is live and its client
    /// still registered.
    pub fn feed_principal(&self, token: &str) -> Result<Option<Principal>, DomainError> {
        let Some((expires, secret)) = token.split_once('.') else {
            return Ok(None);
        };
        let Ok(expires) = expires.parse::<i64>() else {
            return Ok(None);
        };
        if expires <= self.clock.now().unix_timestamp() {
            return Ok(None);
        }
        let key = expiry_key(expires, &sha256(secret.as_bytes()));
        let Some(raw) = self.store.get(FEED_TOKENS, &key)? else {
            return Ok(None);
        };
        let t: FeedTokenRowV1 = serde_json::from_slice(&raw)?;
        let Some(row) = self.feed_client_row(t.client)? else {
            return Ok(None);
        };
        if row.revoked_at.is_some() || self.organisation_name(row.org).is_err() {
            return Ok(None);
        }
        Ok(Some(Principal {
            account: row.account,
            own_patient: None,
            level: IdentityLevel::P0,
            memberships: vec![Membership {
                org: row.org,
                role: StaffRole::System,
            }],
        }))
    }

    /// Identifiers are scoped like FHIR's: per organisation and resource
    /// kind, so the same value on an allergy and a condition names two entries.
    fn identifier_key(&self, org: OrgId, kind: EntryKind, id: &BusinessId) -> Vec<u8> {
        // Length-prefixed so ("ab","c") and ("a","bc") differ.
        let mut raw = org.as_bytes().to_vec();
        raw.extend_from_slice(kind.slug().as_bytes());
        raw.push(0);
        raw.extend_from_slice(&(id.system.len() as u64).to_be_bytes());
        raw.extend_from_slice(id.system.as_bytes());
        raw.extend_from_slice(id.value.as_bytes());
        let text = hex::encode(raw);
        self.vault.blind(IDENTIFIER_INDEX, &text).to_vec()
    }

    /// Takes a batch of entries from an organisation's system: all or none.
    pub async fn ingest(
        &self,
        p: &Principal,
        items: Vec<FeedItem>,
    ) -> Result<Vec<Ingested>, IngestError> {
        let org = p
            .memberships
            .iter()
            .find(|m| m.role == StaffRole::System)
            .map(|m| m.org)
            .ok_or(DomainError::NotFound)?;
        let mut problems = Vec::new();
        if items.len() > MAX_BATCH_ENTRIES {
            return Err(IngestError::Refused(vec![ItemProblem {
                index: MAX_BATCH_ENTRIES,
                message: format!("a batch holds at most {MAX_BATCH_ENTRIES} entries"),
            }]));
        }
        let mut seen = HashSet::new();
        let mut resolved = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            let mut refuse = |m: String| problems.push(ItemProblem { index, message: m });
            if let Err(DomainError::Invalid(errors)) = Self::validate_entry(&item.entry) {
                for e in errors {
                    refuse(e.message);
                }
            }
            if !seen.insert((item.entry.kind, item.identifier.clone())) {
                refuse("the same identifier appears twice in this batch".into());
            }
            let patient = match item.subject {
                FeedSubject::Patient(id) => Some(id),
                FeedSubject::NhsNumber(nhs) => self.patient_by_nhs_number(&nhs)?,
            };
            let Some(patient) = patient else {
                refuse("no record shared with this organisation has that NHS number".into());
                resolved.push(None);
                continue;
            };
            resolved.push(Some(patient));
        }
        // One decision per item, over each patient's consent state as it is now.
        let mut checked: BTreeMap<(PatientId, crate::Category), Option<Basis>> = BTreeMap::new();
        let mut bases = Vec::with_capacity(items.len());
        for (index, (item, patient)) in items.iter().zip(&resolved).enumerate() {
            let Some(patient) = *patient else {
                bases.push(None);
                continue;
            };
            let key = (patient, item.entry.category);
            let basis = match checked.get(&key) {
                Some(b) => *b,
                None => {
                    let b = match self
                        .authorize(
                            p,
                            Action::Contribute,
                            Resource::in_category(patient, item.entry.category),
                            AuditAction::Create,
                            "entry",
                        )
                        .await
                    {
                        Ok(access) => Some(access.basis),
                        Err(DomainError::NotFound) => None,
                        Err(e) => return Err(e.into()),
                    };
                    checked.insert(key, b);
                    b
                }
            };
            if basis.is_none() {
                problems.push(ItemProblem {
                    index,
                    message: "no record shared with this organisation has that NHS number, or its patient has not let the organisation add entries in this category".into(),
                });
            }
            bases.push(basis);
        }
        let now = self.clock.now();
        let source = Source::Organisation {
            name: self.organisation_name(org)?,
            org: Some(org),
        };
        let mut batch = Batch::new();
        let mut out = Vec::with_capacity(items.len());
        let mut pending = Vec::new();
        for (index, ((item, patient), basis)) in
            items.into_iter().zip(resolved).zip(bases).enumerate()
        {
            let (Some(patient), Some(basis)) = (patient, basis) else {
                continue;
            };
            let index_key = self.identifier_key(org, item.entry.kind, &item.identifier);
            let existing = self.store.get(FEED_IDENTIFIERS, &index_key)?;
            let (entry_id, version, created) = match existing {
                Some(at) => {
                    let (Some(was_patient), Some(id)) = (
                        at.get(..16).and_then(PatientId::from_bytes),
                        at.get(16..).and_then(EntryId::from_bytes),
                    ) else {
                        return Err(DomainError::Internal("bad feed identifier row".into()).into());
                    };
                    if was_patient != patient {
                        problems.push(ItemProblem {
                            index,
                            message: "this identifier was already used for another patient's entry"
                                .into(),
                        });
                        continue;
                    }
                    let key = pair(patient.as_bytes(), id.as_bytes());
                    let Some(raw) = self.store.get(ENTRIES, &key)? else {
                        return Err(DomainError::Internal(
                            "feed identifier names a missing entry".into(),
                        )
                        .into());
                    };
                    let row = EntryRowV1::decode(&raw)?;
                    let version = row.version + 1;
                    batch.require_equals(ENTRIES, key, Some(raw));
                    batch.require_equals(FEED_IDENTIFIERS, index_key.clone(), Some(at));
                    (id, version, false)
                }
                None => {
                    let id = EntryId::new_random();
                    batch.require_absent(FEED_IDENTIFIERS, index_key.clone());
                    batch.require_absent(ENTRIES, pair(patient.as_bytes(), id.as_bytes()));
                    batch.put(
                        FEED_IDENTIFIERS,
                        index_key,
                        pair(patient.as_bytes(), id.as_bytes()),
                    );
                    (id, 1, true)
                }
            };
            pending.push((patient, entry_id, version, created, item.entry, basis));
        }
        if !problems.is_empty() {
            problems.sort_by_key(|p| p.index);
            return Err(IngestError::Refused(problems));
        }
        for (patient, id, version, created, new, basis) in pending {
            let entry = Entry {
                id,
                kind: new.kind,
                title: new.title.trim().to_string(),
                date: new.date,
                end_date: new.end_date,
                category: new.category,
                source: source.clone(),
                details: new.details.trim_end().to_string(),
                recorded_at: now,
                contact: None,
            };
            let dek = self.vault.key(KeyOwner::Patient(patient))?;
            let sealed = self.vault.seal(
                &dek,
                &Aad::entry(patient, id.as_bytes(), version),
                &serde_json::to_vec(&entry).map_err(DomainError::from)?,
            )?;
            batch.put(
                ENTRIES,
                pair(patient.as_bytes(), id.as_bytes()),
                EntryRowV1 { version, sealed }.encode(),
            );
            let access = Access {
                now,
                basis,
                consent: Default::default(),
            };
            let action = if created {
                AuditAction::Create
            } else {
                AuditAction::Update
            };
            self.audit.add(
                &mut batch,
                &self.event(p, &access, action, patient, format!("entry/{id}")),
            )?;
            out.push(Ingested {
                patient,
                entry: id,
                version,
                created,
            });
        }
        match self.store.submit(batch).await {
            Ok(_) => Ok(out),
            // Another batch changed one of these entries meanwhile: nothing
            // of this one was written; the system may send it again.
            Err(StorageError::Conflict) => Err(IngestError::Refused(vec![ItemProblem {
                index: 0,
                message: "another batch changed these entries at the same time; send it again"
                    .into(),
            }])),
            Err(e) => Err(DomainError::from(e).into()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn business_ids_are_bounded_and_plain() {
        assert!(BusinessId::parse("https://gp.example/id", "ENC-1").is_ok());
        assert!(BusinessId::parse("", "x").is_err());
        assert!(BusinessId::parse("s", " ").is_err());
        assert!(BusinessId::parse("s", &"x".repeat(MAX_IDENTIFIER_CHARS + 1)).is_err());
        assert!(BusinessId::parse("s", "a\u{0}b").is_err());
    }

    #[test]
    fn a_jwks_must_hold_only_usable_public_keys() {
        assert!(parse_jwks("not json").is_err());
        assert!(parse_jwks(r#"{"keys":[]}"#).is_err());
        // A private EC key is refused by its "d".
        let private = r#"{"keys":[{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0","d":"jpsQnnGQmL-YBIffH1136cLV3bQk"}]}"#;
        assert!(parse_jwks(private).unwrap_err().contains("private"));
        let public = r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"k1","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;
        assert_eq!(parse_jwks(public).unwrap().keys.len(), 1);
        // A 1024-bit RSA key is too weak.
        let n = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            [0xc1u8; 128],
        );
        let weak = format!(r#"{{"keys":[{{"kty":"RSA","n":"{n}","e":"AQAB"}}]}}"#);
        assert!(parse_jwks(&weak).unwrap_err().contains("2048"));
    }
}
