//! Two-factor sign-in for email accounts: a TOTP authenticator app (RFC 6238:
//! SHA-1, 6 digits, 30 seconds, one step of drift either way) and single-use
//! recovery codes. NHS login accounts use NHS login's own second factor.
//!
//! The secret is sealed under the account's data key; recovery codes are
//! random (50 bits each), so their SHA-256 is enough to store. A code is
//! accepted once: the step it belongs to is remembered, and a recovery code is
//! deleted when used.
//!
//! Also here: asking again ("confirm it's you") before sensitive changes —
//! the session remembers when its holder last gave their password or a code.

use keyhold_crypto::{constant_time_eq, random_array, sha256};
use keyhold_storage::{Batch, StorageError};
use serde::Serialize;
use time::{Duration, OffsetDateTime};
use totp_rs::{Algorithm, TOTP};
use zeroize::Zeroizing;

use crate::accounts::SessionToken;
use crate::accounts::{account_event, put_account};
use crate::audit::{AuditAction, Outcome};
use crate::ids::KeyOwner;
use crate::policy::Principal;
use crate::rows::{SessionRowV1, TotpRowV1};
use crate::trees::SESSIONS;
use crate::vault::Aad;
use crate::{AccountId, DomainError, Keyhold, SignedIn};

/// How many recovery codes an enrolment gives.
pub const RECOVERY_CODES: usize = 10;
/// How long a sign-in or a confirmation counts for sensitive changes.
pub const CONFIRM_FOR: Duration = Duration::minutes(15);
/// Wrong codes allowed on one sign-in before the password is asked again.
pub const CODE_ATTEMPTS: u8 = 5;
const STEP: u64 = 30;
const ISSUER: &str = "Keyhold";
const SECOND_FACTOR: &[u8] = b"second-factor";

/// What an authenticator app needs to start: shown as a QR code and as text.
#[derive(Debug, Clone, Serialize)]
pub struct Enrolment {
    pub secret_base32: String,
    pub otpauth_url: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct TwoFactorStatus {
    pub enabled: bool,
    pub recovery_left: usize,
}

fn totp(secret: Vec<u8>, account_name: String) -> Result<TOTP, DomainError> {
    TOTP::new(
        Algorithm::SHA1,
        6,
        1,
        STEP,
        secret,
        Some(ISSUER.into()),
        account_name,
    )
    .map_err(|e| DomainError::Internal(format!("totp: {e}")))
}

fn hash_code(code: &str) -> String {
    hex::encode(sha256(normalise_code(code).as_bytes()))
}

/// Recovery codes are shown as `xxxxx-xxxxx`; people type them in any case,
/// with or without the dash or spaces.
fn normalise_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn new_recovery_code() -> Result<String, DomainError> {
    // 10 characters from a 32-letter alphabet without look-alikes: 50 bits.
    const ALPHABET: &[u8; 32] = b"abcdefghjkmnpqrstuvwxyz23456789z";
    let bytes: [u8; 10] = random_array()?;
    let s: String = bytes
        .iter()
        .map(|b| ALPHABET[(*b & 31) as usize] as char)
        .collect();
    Ok(format!("{}-{}", &s[..5], &s[5..]))
}

impl Keyhold {
    fn totp_of(&self, account: AccountId, row: &TotpRowV1) -> Result<TOTP, DomainError> {
        let dek = self.vault.key(KeyOwner::Account(account))?;
        let secret = Zeroizing::new(self.vault.open(
            &dek,
            &Aad::account_totp(&account, row.version),
            &row.secret,
        )?);
        let name = self.account_email(account)?.as_str().to_string();
        totp(secret.to_vec(), name)
    }

    /// Whether two-factor is on, and how many recovery codes are left.
    pub fn two_factor_status(&self, account: AccountId) -> Result<TwoFactorStatus, DomainError> {
        let row = self.account_row(account)?;
        Ok(match row.totp {
            Some(t) if t.enabled => TwoFactorStatus {
                enabled: true,
                recovery_left: t.recovery.len(),
            },
            _ => TwoFactorStatus {
                enabled: false,
                recovery_left: 0,
            },
        })
    }

    /// Starts enrolling (or shows the enrolment under way): a new secret,
    /// not yet in force until a code from the app is checked.
    pub async fn begin_two_factor(&self, p: &Principal) -> Result<Enrolment, DomainError> {
        let mut row = self.account_row(p.account)?;
        if row.password.is_empty() {
            return Err(DomainError::invalid(
                "code",
                "Your account signs in with NHS login, which has its own second step",
            ));
        }
        if let Some(t) = &row.totp {
            if t.enabled {
                return Err(DomainError::invalid(
                    "code",
                    "Two-factor sign-in is already on",
                ));
            }
            let totp = self.totp_of(p.account, t)?;
            return Ok(Enrolment {
                secret_base32: totp.get_secret_base32(),
                otpauth_url: totp.get_url(),
            });
        }
        let old = serde_json::to_vec(&row)?;
        let secret: Zeroizing<[u8; 20]> = Zeroizing::new(random_array()?);
        let version = 1;
        let dek = self.vault.key(KeyOwner::Account(p.account))?;
        let sealed = self.vault.seal(
            &dek,
            &Aad::account_totp(&p.account, version),
            secret.as_ref(),
        )?;
        row.totp = Some(TotpRowV1 {
            version,
            secret: sealed,
            enabled: false,
            last_step: 0,
            recovery: Vec::new(),
        });
        let mut batch = Batch::new();
        put_account(&mut batch, p.account, old, &row)?;
        self.store.submit(batch).await.map_err(conflict)?;
        let totp = totp(
            secret.to_vec(),
            self.account_email(p.account)?.as_str().to_string(),
        )?;
        Ok(Enrolment {
            secret_base32: totp.get_secret_base32(),
            otpauth_url: totp.get_url(),
        })
    }

    /// Finishes enrolling with a code from the app; returns the recovery
    /// codes, which are shown once and never again.
    pub async fn enable_two_factor(
        &self,
        p: &Principal,
        code: &str,
    ) -> Result<Vec<String>, DomainError> {
        let mut row = self.account_row(p.account)?;
        let old = serde_json::to_vec(&row)?;
        let Some(t) = row.totp.as_mut().filter(|t| !t.enabled) else {
            return Err(DomainError::invalid(
                "code",
                "Start setting up two-factor sign-in first",
            ));
        };
        let totp = self.totp_of(p.account, t)?;
        let Some(step) = matching_step(&totp, code, self.clock.now()) else {
            return Err(wrong_code());
        };
        let codes = (0..RECOVERY_CODES)
            .map(|_| new_recovery_code())
            .collect::<Result<Vec<_>, _>>()?;
        t.enabled = true;
        t.last_step = step;
        t.recovery = codes.iter().map(|c| hash_code(c)).collect();
        self.save_account_change(
            p.account,
            old,
            &row,
            AuditAction::Update,
            "turn on two-factor sign-in",
        )
        .await?;
        Ok(codes)
    }

    /// Turns two-factor off. The caller has just confirmed it is them.
    pub async fn disable_two_factor(&self, p: &Principal) -> Result<(), DomainError> {
        let mut row = self.account_row(p.account)?;
        let old = serde_json::to_vec(&row)?;
        row.totp = None;
        self.save_account_change(
            p.account,
            old,
            &row,
            AuditAction::Update,
            "turn off two-factor sign-in",
        )
        .await
    }

    /// Checks a code (from the app, or a recovery code) for `account`, using
    /// it up. Writes only when it is right.
    async fn use_code(&self, account: AccountId, code: &str) -> Result<bool, DomainError> {
        let mut row = self.account_row(account)?;
        let old = serde_json::to_vec(&row)?;
        let Some(t) = row.totp.as_mut().filter(|t| t.enabled) else {
            return Ok(false);
        };
        let digits: String = code.chars().filter(|c| !c.is_whitespace()).collect();
        let accepted = if digits.len() == 6 && digits.bytes().all(|b| b.is_ascii_digit()) {
            let totp = self.totp_of(account, t)?;
            match matching_step(&totp, &digits, self.clock.now()) {
                Some(step) if step > t.last_step => {
                    t.last_step = step;
                    true
                }
                _ => false,
            }
        } else {
            let h = hash_code(code);
            match t
                .recovery
                .iter()
                .position(|r| constant_time_eq(r.as_bytes(), h.as_bytes()))
            {
                Some(i) => {
                    t.recovery.remove(i);
                    true
                }
                None => false,
            }
        };
        if accepted {
            let mut batch = Batch::new();
            put_account(&mut batch, account, old, &row)?;
            match self.store.submit(batch).await {
                Ok(_) => {}
                // Another request used a code at the same moment: this one loses.
                Err(StorageError::Conflict) => return Ok(false),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(accepted)
    }

    /// Whether the account asks for a code at sign-in.
    pub(crate) fn needs_second_factor(&self, account: AccountId) -> Result<bool, DomainError> {
        Ok(self.account_row(account)?.totp.is_some_and(|t| t.enabled))
    }

    /// Holds a sign-in whose password was right, until its code comes.
    pub(crate) async fn hold_second_factor(
        &self,
        account: AccountId,
        attempts: u8,
        next: &str,
    ) -> Result<String, DomainError> {
        let mut payload = SECOND_FACTOR.to_vec();
        payload.push(attempts);
        self.hold_login_flow(payload, next, Some(account)).await
    }

    /// The code step of a sign-in. Right: signed in (and the next page).
    /// Wrong: the error says so, with a new pending value to try again,
    /// until `CODE_ATTEMPTS` wrong codes end the sign-in.
    pub async fn complete_second_factor(
        &self,
        pending: &str,
        code: &str,
    ) -> Result<(SignedIn, String), SecondFactorError> {
        let flow = self
            .take_login_flow(pending)
            .await
            .map_err(SecondFactorError::Domain)?
            .ok_or(SecondFactorError::Expired)?;
        let (Some(account), Some((&attempts, tag))) = (flow.link, flow.payload.split_last()) else {
            return Err(SecondFactorError::Expired);
        };
        if tag != SECOND_FACTOR {
            return Err(SecondFactorError::Expired);
        }
        let ok = self
            .use_code(account, code)
            .await
            .map_err(SecondFactorError::Domain)?;
        let now = self.clock.now();
        self.audit
            .record(&account_event(
                now,
                account,
                if ok {
                    AuditAction::SignIn
                } else {
                    AuditAction::SignInFailed
                },
                if ok {
                    "sign in: two-factor code accepted"
                } else {
                    "sign in: wrong two-factor code"
                },
                outcome(ok),
            ))
            .await
            .map_err(SecondFactorError::Domain)?;
        if !ok {
            let used = attempts.saturating_add(1);
            if used >= CODE_ATTEMPTS {
                return Err(SecondFactorError::TooManyWrong);
            }
            let again = self
                .hold_second_factor(account, used, &flow.next)
                .await
                .map_err(SecondFactorError::Domain)?;
            return Err(SecondFactorError::Wrong {
                pending: again,
                left: CODE_ATTEMPTS - used,
            });
        }
        let row = self
            .account_row(account)
            .map_err(SecondFactorError::Domain)?;
        let token = self
            .start_session(account, now)
            .await
            .map_err(SecondFactorError::Domain)?;
        Ok((
            SignedIn {
                principal: Principal {
                    account,
                    own_patient: row.patient,
                    level: row.level,
                    memberships: self
                        .memberships_of(account)
                        .map_err(SecondFactorError::Domain)?,
                },
                token,
            },
            flow.next,
        ))
    }

    /// Whether this session's holder proved it was them within `CONFIRM_FOR`.
    pub fn recently_confirmed(&self, token: &SessionToken) -> Result<bool, DomainError> {
        let Some(raw) = self.store.get(SESSIONS, &token.key())? else {
            return Ok(false);
        };
        let row: SessionRowV1 = serde_json::from_slice(&raw)?;
        let at = row.confirmed_at.unwrap_or(row.created_at);
        Ok(self.clock.now() - at <= CONFIRM_FOR)
    }

    /// "Confirm it's you": the password, or with two-factor on, a code.
    pub async fn confirm_it_is_you(
        &self,
        p: &Principal,
        token: &SessionToken,
        answer: &str,
    ) -> Result<(), DomainError> {
        let ok = self
            .limited_check(p.account, async {
                if self.needs_second_factor(p.account)? {
                    self.use_code(p.account, answer).await
                } else {
                    let phc = self.account_row(p.account)?.password;
                    let answer = Zeroizing::new(answer.to_string());
                    Ok(!phc.is_empty()
                        && self
                            .hashing
                            .run(move |h| h.verify(answer.as_bytes(), &phc))
                            .await?)
                }
            })
            .await?;
        self.audit
            .record(&account_event(
                self.clock.now(),
                p.account,
                AuditAction::Update,
                if ok {
                    "confirm it is them"
                } else {
                    "confirm it is them: refused"
                },
                outcome(ok),
            ))
            .await?;
        if !ok {
            return Err(DomainError::invalid(
                "answer",
                "That is not right. Try again",
            ));
        }
        let key = token.key();
        let raw = self
            .store
            .get(SESSIONS, &key)?
            .ok_or(DomainError::Unauthenticated)?;
        let mut row: SessionRowV1 = serde_json::from_slice(&raw)?;
        row.confirmed_at = Some(self.clock.now());
        let mut batch = Batch::new();
        batch.require_equals(SESSIONS, key.to_vec(), Some(raw));
        batch.put(SESSIONS, key.to_vec(), serde_json::to_vec(&row)?);
        self.store.submit(batch).await.map(drop).map_err(conflict)
    }
}

/// Why the code step did not sign in.
#[derive(Debug)]
pub enum SecondFactorError {
    /// Wrong code; try again with this pending value.
    Wrong {
        pending: String,
        left: u8,
    },
    /// Too many wrong codes: start again with the password.
    TooManyWrong,
    /// No such sign-in in progress (used, expired, or never started).
    Expired,
    Domain(DomainError),
}

/// The step (time / 30 s) whose code matches, allowing one step of drift.
fn matching_step(totp: &TOTP, code: &str, now: OffsetDateTime) -> Option<u64> {
    let t = u64::try_from(now.unix_timestamp()).ok()?;
    let step = t / STEP;
    [step.saturating_sub(1), step, step + 1]
        .into_iter()
        .find(|s| constant_time_eq(totp.generate(s * STEP).as_bytes(), code.trim().as_bytes()))
}

fn outcome(ok: bool) -> Outcome {
    if ok {
        Outcome::Success
    } else {
        Outcome::Denied
    }
}

fn wrong_code() -> DomainError {
    DomainError::invalid(
        "code",
        "Enter the 6-digit code your authenticator app shows now",
    )
}

fn conflict(e: StorageError) -> DomainError {
    match e {
        StorageError::Conflict => DomainError::Conflict,
        e => e.into(),
    }
}

/// A code for `secret` at `now`, for tests that play the authenticator app.
pub fn code_at(secret_base32: &str, now: OffsetDateTime) -> Result<String, DomainError> {
    let secret = totp_rs::Secret::Encoded(secret_base32.to_string())
        .to_bytes()
        .map_err(|e| DomainError::Internal(format!("totp secret: {e:?}")))?;
    let t = totp(secret, "test".into())?;
    Ok(t.generate(u64::try_from(now.unix_timestamp()).unwrap_or(0)))
}
