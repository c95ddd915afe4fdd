//! Email + password accounts and server-side sessions.
//!
//! Seams for the sign-in work: email verification, reset, two-factor and
//! NHS-login linking attach to `AccountRowV1` and to `SignedIn`; nothing here
//! assumes a password is the only way in.

use std::fmt;

use keyhold_crypto::{random_token, sha256};
use keyhold_storage::{Batch, StorageError};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::audit::{AuditAction, AuditActor, AuditEvent, Outcome};
use crate::identity::IdentityLevel;
use crate::ids::KeyOwner;
use crate::policy::Principal;
use crate::rows::{AccountRowV1, SessionRowV1};
use crate::trees::{ACCOUNTS, ACCOUNTS_BY_EMAIL, SESSIONS};
use crate::vault::Aad;
use crate::{AccountId, Demographics, DomainError, Email, FieldError, Keyhold, PatientId};

pub const MIN_PASSWORD_CHARS: usize = 8;
pub const MAX_PASSWORD_CHARS: usize = 128;
pub const MAX_NAME_CHARS: usize = 100;

/// A password that meets the length rules (no composition rules, as NIST and
/// the NCSC advise) and is not in the common-passwords list. Zeroized on
/// drop; never printed.
pub struct Password(Zeroizing<String>);

impl Password {
    pub fn parse(input: &str) -> Result<Self, FieldError> {
        let n = input.chars().count();
        if n == 0 {
            return Err(FieldError::new("password", "Enter a password"));
        }
        if n < MIN_PASSWORD_CHARS {
            return Err(FieldError::new(
                "password",
                format!("Your password must be at least {MIN_PASSWORD_CHARS} characters"),
            ));
        }
        if n > MAX_PASSWORD_CHARS {
            return Err(FieldError::new(
                "password",
                format!("Your password must be {MAX_PASSWORD_CHARS} characters or fewer"),
            ));
        }
        if crate::common_passwords::is_common(input) {
            return Err(FieldError::new(
                "password",
                "This password is too common and easy to guess. Try three or four random words together",
            ));
        }
        Ok(Password(Zeroizing::new(input.to_string())))
    }
}

impl Password {
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// The secret in a session cookie. Only its SHA-256 is stored, so a copy of the
/// store cannot be used to sign in.
#[derive(Clone)]
pub struct SessionToken(String);

impl SessionToken {
    pub fn from_cookie(value: &str) -> Self {
        SessionToken(value.to_string())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub(crate) fn key(&self) -> [u8; 32] {
        sha256(self.0.as_bytes())
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken(<redacted>)")
    }
}

/// The result of a successful sign-up or sign-in.
#[derive(Debug)]
pub struct SignedIn {
    pub principal: Principal,
    pub token: SessionToken,
}

const EMAIL_INDEX: &str = "email";

/// Whether a new account's address is known to reach its holder. Only
/// sign-up leaves it to confirm; the operator, the demo and NHS login (which
/// checked it) make confirmed accounts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Address {
    Confirmed,
    ToConfirm,
}

/// Adds a changed account row to `batch`, requiring the stored row to be
/// `old` (the bytes it was read as), so two changes made at once cannot both
/// land: the second fails with a conflict instead of undoing the first.
pub(crate) fn put_account(
    batch: &mut Batch,
    id: AccountId,
    old: Vec<u8>,
    row: &AccountRowV1,
) -> Result<(), DomainError> {
    batch.require_equals(ACCOUNTS, id.as_bytes().to_vec(), Some(old));
    batch.put(ACCOUNTS, id.as_bytes().to_vec(), serde_json::to_vec(row)?);
    Ok(())
}

impl Keyhold {
    /// Writes a changed account row (requiring it as it was read, `old`) and
    /// the holder's audit event in one batch. A change made meanwhile by
    /// another request makes this one fail with `Conflict`.
    pub(crate) async fn save_account_change(
        &self,
        account: AccountId,
        old: Vec<u8>,
        row: &AccountRowV1,
        action: AuditAction,
        purpose: &str,
    ) -> Result<(), DomainError> {
        let mut batch = Batch::new();
        put_account(&mut batch, account, old, row)?;
        self.audit.add(
            &mut batch,
            &account_event(self.clock.now(), account, action, purpose, Outcome::Success),
        )?;
        match self.store.submit(batch).await {
            Ok(_) => Ok(()),
            Err(StorageError::Conflict) => Err(DomainError::Conflict),
            Err(e) => Err(e.into()),
        }
    }
}

/// An audit event about an account, by its holder.
pub(crate) fn account_event(
    at: OffsetDateTime,
    account: AccountId,
    action: AuditAction,
    purpose: &str,
    outcome: Outcome,
) -> AuditEvent {
    AuditEvent {
        at,
        actor: AuditActor::patient(account),
        action,
        patient: None,
        resource: format!("account/{account}"),
        purpose: purpose.into(),
        outcome,
        basis: None,
    }
}

impl Keyhold {
    pub(crate) fn email_key(&self, email: &Email) -> Vec<u8> {
        self.vault.blind(EMAIL_INDEX, &email.normalised()).to_vec()
    }

    /// Adds a new account to `batch`. The email index entry carries a
    /// precondition, so two sign-ups with one email cannot both succeed.
    pub(crate) fn new_account(
        &self,
        batch: &mut Batch,
        name: &str,
        email: &Email,
        password_phc: String,
        patient: Option<PatientId>,
        address: Address,
    ) -> Result<AccountId, DomainError> {
        let id = AccountId::new_random();
        let owner = KeyOwner::Account(id);
        let dek = self.vault.create_key(owner, batch)?;
        let sealed = self
            .vault
            .seal(&dek, &Aad::account_email(&id), email.as_str().as_bytes())?;
        let name = self
            .vault
            .seal(&dek, &Aad::account_name(&id), name.trim().as_bytes())?;
        let row = AccountRowV1 {
            email: sealed,
            password: password_phc,
            patient,
            name: Some(name),
            created_at: self.clock.now(),
            level: IdentityLevel::P0,
            nhs_login: false,
            verified_by: None,
            verified_at: None,
            email_unverified: address == Address::ToConfirm,
            sessions_valid_after: None,
            totp: None,
        };
        let key = self.email_key(email);
        batch.require_absent(ACCOUNTS_BY_EMAIL, key.clone());
        batch.put(ACCOUNTS_BY_EMAIL, key, id.as_bytes().to_vec());
        batch.put(ACCOUNTS, id.as_bytes().to_vec(), serde_json::to_vec(&row)?);
        Ok(id)
    }

    fn parse_name(name: &str, errors: &mut Vec<FieldError>) {
        let n = name.trim().chars().count();
        if n == 0 {
            errors.push(FieldError::new("name", "Enter your full name"));
        } else if n > MAX_NAME_CHARS {
            errors.push(FieldError::new(
                "name",
                format!("Your name must be {MAX_NAME_CHARS} characters or fewer"),
            ));
        }
    }

    fn parse_credentials(email: &str, password: &str) -> Result<(Email, Password), DomainError> {
        let mut errors = Vec::new();
        let email =
            Email::parse(email).map_err(|e| errors.push(FieldError::new("email", e.to_string())));
        let password = Password::parse(password).map_err(|e| errors.push(e));
        match (email, password) {
            (Ok(e), Ok(p)) if errors.is_empty() => Ok((e, p)),
            _ => Err(DomainError::Invalid(errors)),
        }
    }

    /// Starts an account: the holder gets a mailed link to confirm the
    /// address, and is signed in when they open it (`confirm_email`). An
    /// address that already has an account gets a mail saying so instead; the
    /// caller shows the same "check your email" page either way, and both
    /// paths hash the password and send one message, so neither the page nor
    /// its timing tells whether the address is registered.
    pub async fn sign_up(
        &self,
        name: &str,
        email: &str,
        password: &str,
        next: &str,
    ) -> Result<(), DomainError> {
        let mut errors = Vec::new();
        Self::parse_name(name, &mut errors);
        let (email, password) = match Self::parse_credentials(email, password) {
            Ok(c) if errors.is_empty() => c,
            Ok(_) => return Err(DomainError::Invalid(errors)),
            Err(DomainError::Invalid(more)) => {
                errors.extend(more);
                errors.sort_by_key(|e| {
                    ["name", "email", "password"]
                        .iter()
                        .position(|f| *f == e.field)
                });
                return Err(DomainError::Invalid(errors));
            }
            Err(e) => return Err(e),
        };
        let phc = self.hash_password(password).await?;
        if self.account_by_email(&email)?.is_some() {
            return self.mail_already_registered(&email).await;
        }
        let mut batch = Batch::new();
        let mut demographics = Demographics::empty();
        demographics.email = Some(email.clone());
        let (given, family) = match name.trim().rsplit_once(' ') {
            Some((g, f)) => (g.trim().to_string(), f.to_string()),
            None => (name.trim().to_string(), String::new()),
        };
        demographics.given_name = given;
        demographics.family_name = family;
        let patient = self.new_patient(&mut batch, &demographics)?;
        let account = self.new_account(
            &mut batch,
            name,
            &email,
            phc,
            Some(patient),
            Address::ToConfirm,
        )?;
        let token = self.email_token_into(
            &mut batch,
            account,
            crate::credentials::LinkPurpose::ConfirmEmail,
            next,
        )?;
        self.audit.add(
            &mut batch,
            &AuditEvent {
                at: self.clock.now(),
                actor: AuditActor::patient(account),
                action: AuditAction::SignUp,
                patient: Some(patient),
                resource: format!("account/{account}"),
                purpose: "create an account".into(),
                outcome: Outcome::Success,
                basis: None,
            },
        )?;
        match self.store.submit(batch).await {
            Ok(_) => {}
            Err(StorageError::Conflict) => {
                // Registered by a concurrent sign-up: tell the holder, as above.
                self.vault.forget(KeyOwner::Account(account));
                self.vault.forget(KeyOwner::Patient(patient));
                return self.mail_already_registered(&email).await;
            }
            Err(e) => return Err(e.into()),
        }
        self.mail_confirmation(&email, &token).await
    }

    /// Checks an email and password. An unknown email costs the same hashing
    /// time as a known one and gives the same answer as a wrong password.
    ///
    /// Throttled per account and per `client` address (see `throttle`): while
    /// a limit waits, the attempt is refused with `TooManyAttempts` before any
    /// password is checked, the right one included. `None`: the address is
    /// unknown (the command line), and only the account's limits apply.
    pub async fn sign_in(
        &self,
        email: &str,
        password: &str,
        client: Option<std::net::IpAddr>,
    ) -> Result<SignedIn, DomainError> {
        let bad = || DomainError::BadCredentials;
        // Shed before looking anything up: known or not, the same answer.
        if self.hashing.is_full() {
            return Err(DomainError::Overloaded);
        }
        let Ok(email) = Email::parse(email) else {
            return Err(bad());
        };
        let password = Zeroizing::new(password.to_string());
        let found = match self.store.get(ACCOUNTS_BY_EMAIL, &self.email_key(&email))? {
            Some(id) => {
                let id = AccountId::from_bytes(&id)
                    .ok_or_else(|| DomainError::Internal("bad account index".into()))?;
                let row = self.account_row(id)?;
                Some((id, row))
            }
            None => None,
        };
        let now = self.clock.now();
        // Known or not, the email's blind index is the account's key here, so
        // the limits behave alike for both and reveal nothing.
        let attempt = match self.throttle.admit(&self.email_key(&email), client, now) {
            Ok(attempt) => attempt,
            Err(refusal) => {
                // The first refusal of each wait is audited; repeats are not,
                // so a flood of refused requests cannot grow the log.
                if refusal.first {
                    let mut actor = AuditActor::anonymous();
                    actor.account = found.as_ref().map(|(id, _)| *id);
                    self.audit
                        .record(&AuditEvent {
                            at: now,
                            actor,
                            action: AuditAction::SignInFailed,
                            patient: found.as_ref().and_then(|(_, row)| row.patient),
                            resource: "session".into(),
                            purpose: "sign in (too many attempts)".into(),
                            outcome: Outcome::Denied,
                            basis: None,
                        })
                        .await?;
                }
                return Err(DomainError::TooManyAttempts {
                    retry_after_secs: refusal.retry_after_secs,
                });
            }
        };
        let (right_password, account, patient, level, unconfirmed) = match found {
            // An account made through NHS login has no password to match.
            Some((id, row)) if !row.password.is_empty() => {
                let phc = row.password.clone();
                let ok = self
                    .hashing
                    .run(move |h| h.verify(password.as_bytes(), &phc))
                    .await?;
                (ok, Some(id), row.patient, row.level, row.email_unverified)
            }
            found => {
                self.hashing
                    .run(move |h| h.dummy_verify(password.as_bytes()))
                    .await?;
                (
                    false,
                    found.map(|(id, _)| id),
                    None,
                    IdentityLevel::P0,
                    false,
                )
            }
        };
        // The right password for an address not yet confirmed does not sign
        // in: whoever typed it has not shown the address is theirs.
        let ok = right_password && !unconfirmed;
        // Counted before anything else can be cancelled. The right password
        // counts as a success even where sign-in goes no further.
        if right_password {
            attempt.succeeded(now);
        } else {
            attempt.failed(now);
        }
        let mut actor = AuditActor::anonymous();
        actor.account = account;
        if ok {
            actor.role = crate::audit::AuditRole::Patient;
        }
        self.audit
            .record(&AuditEvent {
                at: now,
                actor,
                action: if ok {
                    AuditAction::SignIn
                } else {
                    AuditAction::SignInFailed
                },
                patient,
                resource: "session".into(),
                purpose: if right_password && unconfirmed {
                    "sign in (email address not confirmed)".into()
                } else {
                    "sign in".into()
                },
                outcome: if ok {
                    Outcome::Success
                } else {
                    Outcome::Denied
                },
                basis: None,
            })
            .await?;
        match (ok, account) {
            (true, Some(account)) if self.needs_second_factor(account)? => {
                // The password was right; the session waits for the code.
                let pending = self.hold_second_factor(account, 0, "/").await?;
                Err(DomainError::SecondFactorNeeded { pending })
            }
            (true, Some(account)) => {
                let token = self.start_session(account, now).await?;
                Ok(SignedIn {
                    principal: Principal {
                        account,
                        own_patient: patient,
                        level,
                        memberships: self.memberships_of(account)?,
                    },
                    token,
                })
            }
            _ if right_password && unconfirmed => Err(DomainError::EmailUnconfirmed),
            _ => Err(bad()),
        }
    }

    /// A password (or code) check for a signed-in account, under the same
    /// limits as sign-in for that account: guessing through "change your
    /// password" or "confirm it's you" counts as guessing at sign-in.
    pub(crate) async fn limited_check(
        &self,
        account: AccountId,
        check: impl std::future::Future<Output = Result<bool, DomainError>>,
    ) -> Result<bool, DomainError> {
        let key = self.email_key(&self.account_email(account)?);
        let now = self.clock.now();
        let attempt =
            self.throttle
                .admit(&key, None, now)
                .map_err(|r| DomainError::TooManyAttempts {
                    retry_after_secs: r.retry_after_secs,
                })?;
        let ok = check.await?;
        if ok {
            attempt.succeeded(self.clock.now());
        } else {
            attempt.failed(self.clock.now());
        }
        Ok(ok)
    }

    pub(crate) fn account_row(&self, id: AccountId) -> Result<AccountRowV1, DomainError> {
        let raw = self
            .store
            .get(ACCOUNTS, id.as_bytes())?
            .ok_or(DomainError::NotFound)?;
        Ok(serde_json::from_slice(&raw)?)
    }

    /// The account with this email address, if any.
    pub(crate) fn account_by_email(&self, email: &Email) -> Result<Option<AccountId>, DomainError> {
        Ok(self
            .store
            .get(ACCOUNTS_BY_EMAIL, &self.email_key(email))?
            .and_then(|b| AccountId::from_bytes(&b)))
    }

    /// The name others see for this account (access logs, sharing, staff
    /// lists). Falls back to a neutral label rather than failing a page.
    pub fn display_name(&self, id: AccountId) -> String {
        let opened = self.account_row(id).and_then(|row| {
            let dek = self.vault.key(KeyOwner::Account(id))?;
            match row.name {
                Some(sealed) => Ok(Some(self.vault.open(
                    &dek,
                    &Aad::account_name(&id),
                    &sealed,
                )?)),
                None => Ok(None),
            }
        });
        match opened {
            Ok(Some(n)) if !n.is_empty() => String::from_utf8_lossy(&n).into_owned(),
            Ok(_) => "Name not given".into(),
            Err(e) => {
                tracing::warn!(error = %e, account = %id, "account name unavailable");
                "Unknown person".into()
            }
        }
    }

    /// The account's email address (opened with the account's key).
    pub fn account_email(&self, id: AccountId) -> Result<Email, DomainError> {
        let row = self.account_row(id)?;
        let owner = KeyOwner::Account(id);
        let dek = self.vault.key(owner)?;
        let plain = self
            .vault
            .open(&dek, &Aad::account_email(&id), &row.email)?;
        let s = std::str::from_utf8(&plain)
            .map_err(|_| DomainError::Internal("email is not text".into()))?;
        Email::parse(s).map_err(|_| DomainError::Internal("stored email does not parse".into()))
    }

    pub(crate) async fn start_session(
        &self,
        account: AccountId,
        now: OffsetDateTime,
    ) -> Result<SessionToken, DomainError> {
        let token = SessionToken(random_token()?);
        let row = SessionRowV1 {
            account,
            created_at: now,
            last_seen_at: now,
            confirmed_at: None,
        };
        let mut b = Batch::new();
        b.require_absent(SESSIONS, token.key().to_vec());
        b.put(SESSIONS, token.key().to_vec(), serde_json::to_vec(&row)?);
        self.store.submit(b).await?;
        Ok(token)
    }

    /// The principal behind a session cookie, if the session is live. Ends
    /// sessions idle for longer than `session_idle` or older than
    /// `session_absolute`.
    pub async fn session(&self, token: &SessionToken) -> Result<Option<Principal>, DomainError> {
        let key = token.key();
        let Some(raw) = self.store.get(SESSIONS, &key)? else {
            return Ok(None);
        };
        let mut row: SessionRowV1 = serde_json::from_slice(&raw)?;
        let now = self.clock.now();
        if now - row.last_seen_at > self.settings.session_idle
            || now - row.created_at > self.settings.session_absolute
        {
            let mut b = Batch::new();
            b.delete(SESSIONS, key.to_vec());
            self.store.submit(b).await?;
            return Ok(None);
        }
        // Refresh the idle clock at most once a minute, to keep reads cheap.
        if now - row.last_seen_at > time::Duration::minutes(1) {
            row.last_seen_at = now;
            let mut b = Batch::new();
            b.require_equals(SESSIONS, key.to_vec(), Some(raw));
            b.put(SESSIONS, key.to_vec(), serde_json::to_vec(&row)?);
            // Best effort: a lost refresh only shortens the session.
            drop(self.store.submit(b));
        }
        let account = self.account_row(row.account)?;
        if account
            .sessions_valid_after
            .is_some_and(|after| row.created_at < after)
        {
            // Password changed or signed out everywhere since this began.
            let mut b = Batch::new();
            b.delete(SESSIONS, key.to_vec());
            self.store.submit(b).await?;
            return Ok(None);
        }
        Ok(Some(Principal {
            account: row.account,
            own_patient: account.patient,
            level: account.level,
            memberships: self.memberships_of(row.account)?,
        }))
    }

    /// Ends one session and records the sign-out.
    pub async fn sign_out(&self, token: &SessionToken) -> Result<(), DomainError> {
        let key = token.key();
        let Some(raw) = self.store.get(SESSIONS, &key)? else {
            return Ok(());
        };
        let row: SessionRowV1 = serde_json::from_slice(&raw)?;
        let mut b = Batch::new();
        b.delete(SESSIONS, key.to_vec());
        self.audit.add(
            &mut b,
            &AuditEvent {
                at: self.clock.now(),
                actor: AuditActor::patient(row.account),
                action: AuditAction::SignOut,
                patient: None,
                resource: "session".into(),
                purpose: "sign out".into(),
                outcome: Outcome::Success,
                basis: None,
            },
        )?;
        self.store.submit(b).await?;
        Ok(())
    }

    /// Creates an account for an existing record, or with no record of its own
    /// (demo seeding and the operator; later, identity verification links
    /// accounts to records the same way).
    pub async fn create_account_for(
        &self,
        name: &str,
        email: &str,
        password: &str,
        patient: Option<PatientId>,
    ) -> Result<AccountId, DomainError> {
        let (email, password) = Self::parse_credentials(email, password)?;
        let phc = self
            .hashing
            .run(move |h| h.hash(password.0.as_bytes()))
            .await??;
        let mut batch = Batch::new();
        let account =
            self.new_account(&mut batch, name, &email, phc, patient, Address::Confirmed)?;
        self.audit.add(
            &mut batch,
            &AuditEvent {
                at: self.clock.now(),
                actor: AuditActor::operator(),
                action: AuditAction::Create,
                patient,
                resource: format!("account/{account}"),
                purpose: "link an account to a record".into(),
                outcome: Outcome::Success,
                basis: None,
            },
        )?;
        match self.store.submit(batch).await {
            Ok(_) => Ok(account),
            Err(StorageError::Conflict) => Err(DomainError::Conflict),
            Err(e) => Err(e.into()),
        }
    }
}
