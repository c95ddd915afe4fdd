//! Identity assurance: how sure we are that an account's holder is the patient
//! whose record it opens, and what that lets them see of it.
//!
//! | level | how it is reached | own record |
//! | --- | --- | --- |
//! | P0 | email sign-up; NHS login without a proofed identity | only a record they started themselves, without entries from organisations |
//! | P5 | NHS login at P5 with an NHS number; an operator's basic check | that NHS number's record: demographics and what the patient entered; no entries or documents from organisations |
//! | P9 | NHS login at P9 with an NHS number; an operator's in-person check | the whole record |
//!
//! The owner rule in `policy::decide` enforces the last column; this module
//! sets the level and links the account to its record. A level is what the
//! latest sign-in (or the operator's latest check) established, so it can go
//! down as well as up. Grants to carers and organisations do not depend on the
//! grantee's level: the patient chose them.

use keyhold_storage::{Batch, StorageError};
use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};

use crate::accounts::put_account;
use crate::audit::{AuditAction, AuditActor, AuditEvent, AuditRole, Outcome};
use crate::ids::KeyOwner;
use crate::policy::Principal;
use crate::rows::AccountRowV1;
use crate::trees::{
    ACCOUNTS_BY_EMAIL, ACCOUNTS_BY_NHS_LOGIN, DOCUMENTS, ENTRIES, GRANTS, LOGIN_FLOWS,
};
use crate::{AccountId, Demographics, DomainError, Email, Keyhold, NhsNumber, PatientId, SignedIn};

/// Identity proofing level, as NHS login names them.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub enum IdentityLevel {
    #[default]
    P0,
    P5,
    P9,
}

impl IdentityLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityLevel::P0 => "P0",
            IdentityLevel::P5 => "P5",
            IdentityLevel::P9 => "P9",
        }
    }

    /// Whether the holder sees entries and documents from organisations in
    /// their own record.
    pub fn sees_clinical_entries(self) -> bool {
        self == IdentityLevel::P9
    }

    pub fn parse(s: &str) -> Result<Self, DomainError> {
        match s.trim().to_ascii_uppercase().as_str() {
            "P0" => Ok(IdentityLevel::P0),
            "P5" => Ok(IdentityLevel::P5),
            "P9" => Ok(IdentityLevel::P9),
            _ => Err(DomainError::invalid("level", "Choose P0, P5 or P9")),
        }
    }
}

impl std::fmt::Display for IdentityLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the account's level was last established.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum VerifiedBy {
    /// NHS login answered with this vector of trust.
    NhsLogin { vot: String },
    /// An operator (later a records officer) checked the person.
    Operator,
}

/// A person as an identity provider vouched for them, already checked by the
/// relying party (signature, nonce, expiry, vector of trust).
#[derive(Clone, Debug)]
pub struct VerifiedIdentity {
    /// The provider's stable id for the person.
    pub subject: String,
    pub level: IdentityLevel,
    pub vot: String,
    pub nhs_number: Option<NhsNumber>,
    pub given_name: String,
    pub family_name: String,
    pub birthdate: Option<Date>,
    pub email: Option<Email>,
    pub phone: Option<String>,
}

/// What the account page shows about identity.
#[derive(Clone, Debug, Serialize)]
pub struct IdentityStatus {
    pub level: IdentityLevel,
    pub nhs_login: bool,
    pub verified_by: Option<String>,
    pub verified_at: Option<OffsetDateTime>,
    /// Whether the account can sign in with a password (NHS-login accounts
    /// start without one).
    pub has_password: bool,
}

const NHS_LOGIN_INDEX: &str = "nhs-login-sub";

impl Keyhold {
    fn nhs_login_key(&self, subject: &str) -> Vec<u8> {
        self.vault.blind(NHS_LOGIN_INDEX, subject).to_vec()
    }

    fn account_by_nhs_login(&self, subject: &str) -> Result<Option<AccountId>, DomainError> {
        Ok(self
            .store
            .get(ACCOUNTS_BY_NHS_LOGIN, &self.nhs_login_key(subject))?
            .and_then(|b| AccountId::from_bytes(&b)))
    }

    /// Signs in with an identity NHS login vouched for. A known subject signs
    /// in to its account; with `link` (someone signed in with email and
    /// password who chose to link), the subject is attached to that account;
    /// otherwise a new account is made. An email address already used by a
    /// password account is not taken over: its holder signs in and links.
    pub async fn nhs_login(
        &self,
        id: &VerifiedIdentity,
        link: Option<AccountId>,
    ) -> Result<SignedIn, DomainError> {
        let known = self.account_by_nhs_login(&id.subject)?;
        let account = match (known, link) {
            (Some(a), Some(l)) if a != l => {
                return Err(DomainError::invalid(
                    "nhs-login",
                    "This NHS login is already linked to another Keyhold account",
                ))
            }
            (Some(a), _) => a,
            (None, Some(l)) => l,
            (None, None) => self.new_nhs_login_account(id).await?,
        };
        let mut row = self.account_row(account)?;
        let old = serde_json::to_vec(&row)?;
        let patient = self.record_for(&row, id.level, id.nhs_number, Some(id))?;
        let mut batch = Batch::new();
        if known.is_none() {
            let key = self.nhs_login_key(&id.subject);
            batch.require_absent(ACCOUNTS_BY_NHS_LOGIN, key.clone());
            batch.put(ACCOUNTS_BY_NHS_LOGIN, key, account.as_bytes().to_vec());
        }
        let linked_now = !matches!(patient.change, Change::None);
        self.apply_link(&mut batch, &patient, Some(id))?;
        row.patient = patient.id;
        row.level = id.level;
        row.nhs_login = true;
        row.verified_by = Some(VerifiedBy::NhsLogin {
            vot: id.vot.clone(),
        });
        row.verified_at = Some(self.clock.now());
        put_account(&mut batch, account, old, &row)?;
        let now = self.clock.now();
        self.audit.add(
            &mut batch,
            &AuditEvent {
                at: now,
                actor: AuditActor {
                    account: Some(account),
                    role: AuditRole::Patient,
                    organisation: None,
                    acting_for: None,
                },
                action: AuditAction::SignIn,
                patient: row.patient,
                resource: "session".into(),
                purpose: format!(
                    "sign in with NHS login ({}{})",
                    id.vot,
                    if linked_now { "; record linked" } else { "" }
                ),
                outcome: Outcome::Success,
                basis: None,
            },
        )?;
        match self.store.submit(batch).await {
            Ok(_) => {}
            Err(StorageError::Conflict) => return Err(DomainError::Conflict),
            Err(e) => return Err(e.into()),
        }
        let token = self.start_session(account, now).await?;
        Ok(SignedIn {
            principal: Principal {
                account,
                own_patient: row.patient,
                level: row.level,
                memberships: self.memberships_of(account)?,
            },
            token,
        })
    }

    async fn new_nhs_login_account(&self, id: &VerifiedIdentity) -> Result<AccountId, DomainError> {
        let email = id.email.as_ref().ok_or_else(|| {
            DomainError::invalid(
                "email",
                "NHS login did not share your email address, which Keyhold needs to reach you",
            )
        })?;
        if self
            .store
            .get(ACCOUNTS_BY_EMAIL, &self.email_key(email))?
            .is_some()
        {
            return Err(DomainError::invalid(
                "email",
                "A Keyhold account already uses this email address. Sign in with your email and password, then link NHS login from your account page",
            ));
        }
        let name = format!("{} {}", id.given_name.trim(), id.family_name.trim());
        let mut batch = Batch::new();
        // No password: this account signs in through NHS login only.
        let account = self.new_account(
            &mut batch,
            name.trim(),
            email,
            String::new(),
            None,
            crate::accounts::Address::Confirmed,
        )?;
        match self.store.submit(batch).await {
            Ok(_) => Ok(account),
            Err(StorageError::Conflict) => {
                self.vault.forget(KeyOwner::Account(account));
                Err(DomainError::Conflict)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The record an account at `level` with `nhs` should open: the record
    /// with that NHS number; else the record the account started itself, which
    /// takes the NHS number; else a new record made from the identity's
    /// details. Below P5, or without an NHS number, the account keeps what it
    /// has (for NHS login alone, nothing). Moving away from a record the
    /// account started itself is refused while that record holds anything, so
    /// nothing the patient entered is left behind unseen.
    fn record_for(
        &self,
        row: &AccountRowV1,
        level: IdentityLevel,
        nhs: Option<NhsNumber>,
        id: Option<&VerifiedIdentity>,
    ) -> Result<LinkedRecord, DomainError> {
        let keep = LinkedRecord {
            id: row.patient,
            change: Change::None,
        };
        let Some(nhs) = nhs.filter(|_| level >= IdentityLevel::P5) else {
            return Ok(keep);
        };
        let target = self.patient_by_nhs_number(&nhs)?;
        if target.is_some() && target == row.patient {
            return Ok(keep);
        }
        let own_shell = match row.patient {
            Some(current) => match self.load_demographics(current)?.nhs_number {
                None => Some(current),
                // The account opens the record of another NHS number: this
                // identity is someone else's, or the earlier link was wrong.
                // Either way nobody is moved silently.
                Some(_) => {
                    return Err(DomainError::invalid(
                        "nhs-number",
                        "This account already opens the record of a different NHS number, so it cannot be linked to this identity. Ask support to check",
                    ))
                }
            },
            None => None,
        };
        match (target, own_shell) {
            (None, Some(current)) => Ok(LinkedRecord {
                id: Some(current),
                change: Change::Stamp(current, nhs),
            }),
            (Some(_), Some(current)) if !self.record_is_empty(current)? => {
                Err(DomainError::invalid(
                    "nhs-number",
                    "Your Keyhold record already holds entries, documents or sharing, and your verified NHS number belongs to another record. Ask support to bring the two together",
                ))
            }
            (Some(p), _) => Ok(LinkedRecord {
                id: Some(p),
                change: Change::None,
            }),
            (None, None) => {
                let mut d = Demographics::empty();
                d.nhs_number = Some(nhs);
                if let Some(id) = id {
                    d.given_name = id.given_name.clone();
                    d.family_name = id.family_name.clone();
                    d.date_of_birth = id.birthdate;
                    d.email = id.email.clone();
                    d.phones = id.phone.iter().cloned().collect();
                }
                let new_id = PatientId::new_random();
                Ok(LinkedRecord {
                    id: Some(new_id),
                    change: Change::Create(new_id, Box::new(d)),
                })
            }
        }
    }

    /// Adds the record change `record_for` decided on to `batch`.
    fn apply_link(
        &self,
        batch: &mut Batch,
        linked: &LinkedRecord,
        id: Option<&VerifiedIdentity>,
    ) -> Result<(), DomainError> {
        match &linked.change {
            Change::None => Ok(()),
            Change::Create(p, d) => self.new_patient_with_id(batch, *p, d),
            Change::Stamp(p, nhs) => self.change_demographics_into(batch, *p, |d| {
                d.nhs_number = Some(*nhs);
                if let Some(id) = id {
                    if d.date_of_birth.is_none() {
                        d.date_of_birth = id.birthdate;
                    }
                    if d.phones.is_empty() {
                        d.phones = id.phone.iter().cloned().collect();
                    }
                }
            }),
        }
    }

    fn record_is_empty(&self, patient: PatientId) -> Result<bool, DomainError> {
        Ok([ENTRIES, DOCUMENTS, GRANTS]
            .into_iter()
            .all(|t| self.store.scan(t, patient.as_bytes()).next().is_none()))
    }

    /// Operator (and later a records officer): records an identity check of
    /// an email account and links it to the record of `nhs` at `level`.
    pub async fn verify_identity(
        &self,
        email: &Email,
        level: IdentityLevel,
        nhs: Option<NhsNumber>,
        note: &str,
    ) -> Result<(AccountId, Option<PatientId>), DomainError> {
        let note = note.trim();
        if note.is_empty() || note.chars().count() > 500 {
            return Err(DomainError::invalid(
                "note",
                "Say how the identity was checked, in 1 to 500 characters",
            ));
        }
        if level >= IdentityLevel::P5 && nhs.is_none() {
            return Err(DomainError::invalid(
                "nhs-number",
                "A P5 or P9 check needs the NHS number it confirmed",
            ));
        }
        let account = self
            .account_by_email(email)?
            .ok_or_else(|| DomainError::invalid("email", "No account has this email address"))?;
        let mut row = self.account_row(account)?;
        let old = serde_json::to_vec(&row)?;
        let linked = self.record_for(&row, level, nhs, None)?;
        let mut batch = Batch::new();
        self.apply_link(&mut batch, &linked, None)?;
        row.patient = linked.id;
        row.level = level;
        row.verified_by = Some(VerifiedBy::Operator);
        row.verified_at = Some(self.clock.now());
        put_account(&mut batch, account, old, &row)?;
        self.audit.add(
            &mut batch,
            &AuditEvent {
                at: self.clock.now(),
                actor: AuditActor::operator(),
                action: AuditAction::VerifyIdentity,
                patient: row.patient,
                resource: format!("account/{account}"),
                purpose: format!("identity checked to {level}: {note}"),
                outcome: Outcome::Success,
                basis: None,
            },
        )?;
        match self.store.submit(batch).await {
            Ok(_) => Ok((account, row.patient)),
            Err(StorageError::Conflict) => Err(DomainError::Conflict),
            Err(e) => Err(e.into()),
        }
    }

    /// The account's identity level and how it was reached.
    pub fn identity_status(&self, account: AccountId) -> Result<IdentityStatus, DomainError> {
        let row = self.account_row(account)?;
        Ok(IdentityStatus {
            level: row.level,
            nhs_login: row.nhs_login,
            verified_by: row.verified_by.map(|v| match v {
                VerifiedBy::NhsLogin { vot } => format!("NHS login ({vot})"),
                VerifiedBy::Operator => "an identity check by Keyhold".into(),
            }),
            verified_at: row.verified_at,
            has_password: !row.password.is_empty(),
        })
    }
}

struct LinkedRecord {
    id: Option<PatientId>,
    /// What to write beside the account change, in the same batch.
    change: Change,
}

enum Change {
    None,
    /// A new record for the verified NHS number.
    Create(PatientId, Box<Demographics>),
    /// The account's own record takes the verified NHS number.
    Stamp(PatientId, NhsNumber),
}

/// How long a sign-in started at the provider may take to come back.
const LOGIN_FLOW_TTL: time::Duration = time::Duration::minutes(10);

/// A sign-in in progress at an identity provider, held between the start and
/// the callback. The payload is the relying party's (state, nonce, PKCE
/// verifier); it is single use and kept at most ten minutes.
#[derive(Debug)]
pub struct LoginFlow {
    pub payload: Vec<u8>,
    /// Where to go afterwards (already checked to be a local path).
    pub next: String,
    /// Set when a signed-in account asked to link the provider's identity.
    pub link: Option<AccountId>,
}

#[derive(Serialize, Deserialize)]
struct LoginFlowRowV1 {
    #[serde(with = "crate::rows::b64")]
    payload: Vec<u8>,
    next: String,
    link: Option<AccountId>,
}

impl Keyhold {
    /// The store key of a flow: its start time first, so expired flows are
    /// swept from the front, then the SHA-256 of the browser's token.
    fn flow_key(started: i64, token: &str) -> Vec<u8> {
        crate::trees::expiry_key(started, &keyhold_crypto::sha256(token.as_bytes()))
    }

    /// Holds a flow; returns the value for the browser's cookie.
    pub async fn hold_login_flow(
        &self,
        payload: Vec<u8>,
        next: &str,
        link: Option<AccountId>,
    ) -> Result<String, DomainError> {
        let now = self.clock.now().unix_timestamp();
        let token = keyhold_crypto::random_token()?;
        let mut batch = Batch::new();
        // Sweep flows that were never finished.
        let oldest = now - LOGIN_FLOW_TTL.whole_seconds();
        crate::trees::sweep_expired(self.store.as_ref(), &mut batch, LOGIN_FLOWS, oldest, 1000)?;
        let row = LoginFlowRowV1 {
            payload,
            next: next.to_string(),
            link,
        };
        batch.put(
            LOGIN_FLOWS,
            Self::flow_key(now, &token),
            serde_json::to_vec(&row)?,
        );
        self.store.submit(batch).await?;
        Ok(format!("{now}.{token}"))
    }

    /// Takes (and ends) the flow behind a cookie value, if it is live.
    pub async fn take_login_flow(&self, cookie: &str) -> Result<Option<LoginFlow>, DomainError> {
        let Some((started, token)) = cookie.split_once('.') else {
            return Ok(None);
        };
        let Ok(started) = started.parse::<i64>() else {
            return Ok(None);
        };
        let key = Self::flow_key(started, token);
        let Some(raw) = self.store.get(LOGIN_FLOWS, &key)? else {
            return Ok(None);
        };
        let mut batch = Batch::new();
        // Only one request can take it: the delete requires it unchanged.
        batch.require_equals(LOGIN_FLOWS, key.clone(), Some(raw.clone()));
        batch.delete(LOGIN_FLOWS, key);
        match self.store.submit(batch).await {
            Ok(_) => {}
            Err(StorageError::Conflict) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        if self.clock.now().unix_timestamp() - started > LOGIN_FLOW_TTL.whole_seconds() {
            return Ok(None);
        }
        let row: LoginFlowRowV1 = serde_json::from_slice(&raw)?;
        Ok(Some(LoginFlow {
            payload: row.payload,
            next: row.next,
            link: row.link,
        }))
    }
}
