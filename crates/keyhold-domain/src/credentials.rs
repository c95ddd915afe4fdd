//! The life of an email account's credentials: confirming the address,
//! forgotten and changed passwords, signing out everywhere.
//!
//! Links mailed for these carry a random token; the store keeps only its
//! SHA-256, with the account, what it is for, when it expires and where to go
//! next. A link works once (taking it requires the row unchanged) and expires
//! (a day to confirm an address, an hour to reset a password).
//!
//! Asking for a reset says the same thing, in about the same time, whether or
//! not the address has an account: the caller answers at once and the work
//! (look-up, token, mail) runs afterwards.
//!
//! Sessions end when the password changes or the holder signs out
//! everywhere: the account records `sessions_valid_after`, and a session
//! started before it is over.

use keyhold_crypto::{random_token, sha256};
use keyhold_storage::{Batch, StorageError};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

use crate::accounts::Password;
use crate::accounts::{account_event, put_account};
use crate::audit::{AuditAction, Outcome};
use crate::policy::Principal;
use crate::trees::EMAIL_TOKENS;
use crate::{AccountId, DomainError, Email, Keyhold, SessionToken, SignedIn};

/// How long a link to confirm an email address works.
pub const CONFIRM_TTL: Duration = Duration::hours(24);
/// How long a password reset link works.
pub const RESET_TTL: Duration = Duration::hours(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LinkPurpose {
    ConfirmEmail,
    ResetPassword,
}

#[derive(Serialize, Deserialize)]
struct EmailTokenRowV1 {
    account: AccountId,
    purpose: LinkPurpose,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
    /// A local path to go to afterwards (an invitation, say).
    next: String,
}

fn token_key(token: &str) -> Vec<u8> {
    sha256(token.as_bytes()).to_vec()
}

impl Keyhold {
    /// Makes a single-use link token for `account` and adds it to `batch`.
    pub(crate) fn email_token_into(
        &self,
        batch: &mut Batch,
        account: AccountId,
        purpose: LinkPurpose,
        next: &str,
    ) -> Result<String, DomainError> {
        let token = random_token()?;
        let ttl = match purpose {
            LinkPurpose::ConfirmEmail => CONFIRM_TTL,
            LinkPurpose::ResetPassword => RESET_TTL,
        };
        let row = EmailTokenRowV1 {
            account,
            purpose,
            expires_at: self.clock.now() + ttl,
            next: next.to_string(),
        };
        let key = token_key(&token);
        batch.require_absent(EMAIL_TOKENS, key.clone());
        batch.put(EMAIL_TOKENS, key, serde_json::to_vec(&row)?);
        Ok(token)
    }

    /// Whether a link is live, without using it (to show its form, or a page
    /// saying it has expired).
    pub fn email_link_is_live(
        &self,
        token: &str,
        purpose: LinkPurpose,
    ) -> Result<bool, DomainError> {
        Ok(self.live_token(token, purpose)?.is_some())
    }

    fn live_token(
        &self,
        token: &str,
        purpose: LinkPurpose,
    ) -> Result<Option<(Vec<u8>, EmailTokenRowV1)>, DomainError> {
        if token.is_empty() || token.len() > 100 {
            return Ok(None);
        }
        let Some(raw) = self.store.get(EMAIL_TOKENS, &token_key(token))? else {
            return Ok(None);
        };
        let row: EmailTokenRowV1 = serde_json::from_slice(&raw)?;
        if row.purpose != purpose || row.expires_at <= self.clock.now() {
            return Ok(None);
        }
        Ok(Some((raw, row)))
    }

    /// Takes a link: the token row is deleted in `batch`, which must then be
    /// submitted for the link to count as used.
    fn take_token_into(
        &self,
        batch: &mut Batch,
        token: &str,
        purpose: LinkPurpose,
    ) -> Result<EmailTokenRowV1, DomainError> {
        let (raw, row) = self.live_token(token, purpose)?.ok_or_else(link_gone)?;
        let key = token_key(token);
        batch.require_equals(EMAIL_TOKENS, key.clone(), Some(raw));
        batch.delete(EMAIL_TOKENS, key);
        Ok(row)
    }

    /// Mails the link that confirms an address (sign-up, or asking again).
    pub(crate) async fn mail_confirmation(
        &self,
        to: &Email,
        token: &str,
    ) -> Result<(), DomainError> {
        let link = self.link(&format!("/account/confirm/{token}"));
        self.send_mail(
            to,
            "Confirm your email address for Keyhold",
            &format!(
                "To finish creating your Keyhold account, open this link:\n\n{link}\n\n\
                 The link works once and expires in 24 hours. If you did not create an account, you can ignore this message.\n"
            ),
        )
        .await
    }

    /// Mailed when someone signs up with an address that already has an
    /// account: the page they saw is the same, so nothing is revealed to them.
    pub(crate) async fn mail_already_registered(&self, to: &Email) -> Result<(), DomainError> {
        let signin = self.link("/signin");
        let forgot = self.link("/password/forgot");
        self.send_mail(
            to,
            "You already have a Keyhold account",
            &format!(
                "Someone (probably you) tried to create a Keyhold account with this email address, which already has one.\n\n\
                 Sign in here: {signin}\n\nIf you have forgotten your password, reset it here: {forgot}\n\n\
                 If this was not you, you can ignore this message: nothing has changed.\n"
            ),
        )
        .await
    }

    /// Confirms an address from its link, and signs the holder in.
    pub async fn confirm_email(&self, token: &str) -> Result<(SignedIn, String), DomainError> {
        let mut batch = Batch::new();
        let t = self.take_token_into(&mut batch, token, LinkPurpose::ConfirmEmail)?;
        let mut row = self.account_row(t.account)?;
        let old = serde_json::to_vec(&row)?;
        row.email_unverified = false;
        put_account(&mut batch, t.account, old, &row)?;
        self.audit.add(
            &mut batch,
            &account_event(
                self.clock.now(),
                t.account,
                AuditAction::Update,
                "confirm the email address",
                Outcome::Success,
            ),
        )?;
        submit_link(self, batch).await?;
        let signed = self.signed_in_now(t.account).await?;
        Ok((signed, t.next))
    }

    /// Sends a fresh confirmation link to an account that has not confirmed
    /// its address; nothing for any other address. Answers the same either way.
    pub async fn resend_confirmation(self: &std::sync::Arc<Self>, email: &str) {
        let core = self.clone();
        let email = email.to_string();
        tokio::spawn(async move {
            if let Err(e) = core.resend_confirmation_now(&email).await {
                tracing::warn!(error = %e, "sending a confirmation link failed");
            }
        });
    }

    async fn resend_confirmation_now(&self, email: &str) -> Result<(), DomainError> {
        let Ok(email) = Email::parse(email) else {
            return Ok(());
        };
        let Some(account) = self.account_by_email(&email)? else {
            return Ok(());
        };
        if !self.account_row(account)?.email_unverified {
            return Ok(());
        }
        let mut batch = Batch::new();
        let token = self.email_token_into(&mut batch, account, LinkPurpose::ConfirmEmail, "/")?;
        self.store.submit(batch).await?;
        self.mail_confirmation(&email, &token).await
    }

    /// Forgotten password: mails a reset link if the address has an account.
    /// Returns at once; the caller shows the same page whatever happens.
    pub async fn request_password_reset(self: &std::sync::Arc<Self>, email: &str) {
        let core = self.clone();
        let email = email.to_string();
        tokio::spawn(async move {
            if let Err(e) = core.request_password_reset_now(&email).await {
                tracing::warn!(error = %e, "sending a password reset link failed");
            }
        });
    }

    /// The work behind `request_password_reset`, awaited (tests use it).
    pub async fn request_password_reset_now(&self, email: &str) -> Result<(), DomainError> {
        let Ok(email) = Email::parse(email) else {
            return Ok(());
        };
        let Some(account) = self.account_by_email(&email)? else {
            return Ok(());
        };
        let mut batch = Batch::new();
        let token = self.email_token_into(&mut batch, account, LinkPurpose::ResetPassword, "/")?;
        self.audit.add(
            &mut batch,
            &account_event(
                self.clock.now(),
                account,
                AuditAction::Update,
                "ask for a password reset link",
                Outcome::Success,
            ),
        )?;
        self.store.submit(batch).await?;
        let link = self.link(&format!("/password/reset/{token}"));
        self.send_mail(
            &email,
            "Reset your Keyhold password",
            &format!(
                "Someone (probably you) asked to reset the password of your Keyhold account.\n\n\
                 To choose a new password, open this link:\n\n{link}\n\n\
                 The link works once and expires in 1 hour. If you did not ask for this, you can ignore this message: your password has not changed.\n"
            ),
        )
        .await
    }

    /// Sets a new password from a reset link. Every session of the account
    /// ends; the address counts as confirmed (the link reached it); the holder
    /// is signed in afresh.
    pub async fn reset_password(
        &self,
        token: &str,
        password: &str,
    ) -> Result<SignedIn, DomainError> {
        let password = Password::parse(password).map_err(|e| DomainError::Invalid(vec![e]))?;
        // Check the link before spending a hash on it.
        if self
            .live_token(token, LinkPurpose::ResetPassword)?
            .is_none()
        {
            return Err(link_gone());
        }
        let phc = self.hash_password(password).await?;
        let mut batch = Batch::new();
        let t = self.take_token_into(&mut batch, token, LinkPurpose::ResetPassword)?;
        let mut row = self.account_row(t.account)?;
        let old = serde_json::to_vec(&row)?;
        row.password = phc;
        row.email_unverified = false;
        row.sessions_valid_after = Some(self.clock.now());
        put_account(&mut batch, t.account, old, &row)?;
        self.audit.add(
            &mut batch,
            &account_event(
                self.clock.now(),
                t.account,
                AuditAction::Update,
                "reset the password",
                Outcome::Success,
            ),
        )?;
        submit_link(self, batch).await?;
        self.signed_in_now(t.account).await
    }

    /// Changes the password of a signed-in account; the current one is
    /// required. Every other session ends; the caller gets a new one.
    pub async fn change_password(
        &self,
        p: &Principal,
        current: &str,
        new: &str,
    ) -> Result<SessionToken, DomainError> {
        let new = Password::parse(new).map_err(|e| {
            DomainError::Invalid(vec![crate::FieldError::new("new-password", e.message)])
        })?;
        let row = self.account_row(p.account)?;
        let phc = row.password.clone();
        let current = Zeroizing::new(current.to_string());
        let ok = self
            .limited_check(p.account, async {
                Ok(!phc.is_empty()
                    && self
                        .hashing
                        .run(move |h| h.verify(current.as_bytes(), &phc))
                        .await?)
            })
            .await?;
        if !ok {
            return Err(DomainError::invalid(
                "current-password",
                "Enter your current password correctly",
            ));
        }
        let new_phc = self.hash_password(new).await?;
        let mut row = self.account_row(p.account)?;
        let old = serde_json::to_vec(&row)?;
        row.password = new_phc;
        row.sessions_valid_after = Some(self.clock.now());
        self.save_account_change(
            p.account,
            old,
            &row,
            AuditAction::Update,
            "change the password",
        )
        .await?;
        self.start_session(p.account, self.clock.now()).await
    }

    /// Ends every session of the account, this one included.
    pub async fn sign_out_everywhere(&self, p: &Principal) -> Result<(), DomainError> {
        let mut row = self.account_row(p.account)?;
        let old = serde_json::to_vec(&row)?;
        // Strictly after now: a session begun this very instant ends too.
        row.sessions_valid_after = Some(self.clock.now() + Duration::nanoseconds(1));
        self.save_account_change(
            p.account,
            old,
            &row,
            AuditAction::SignOut,
            "sign out everywhere",
        )
        .await
    }

    pub(crate) async fn hash_password(&self, password: Password) -> Result<String, DomainError> {
        Ok(self
            .hashing
            .run(move |h| h.hash(password.expose().as_bytes()))
            .await??)
    }

    /// A new session for `account`, with the principal as it stands.
    async fn signed_in_now(&self, account: AccountId) -> Result<SignedIn, DomainError> {
        let row = self.account_row(account)?;
        let token = self.start_session(account, self.clock.now()).await?;
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
}

fn link_gone() -> DomainError {
    DomainError::invalid("link", "This link has expired or has already been used")
}

async fn submit_link(core: &Keyhold, batch: Batch) -> Result<(), DomainError> {
    match core.store.submit(batch).await {
        Ok(_) => Ok(()),
        // Someone used the link (or changed the account) first.
        Err(StorageError::Conflict) => Err(link_gone()),
        Err(e) => Err(e.into()),
    }
}
