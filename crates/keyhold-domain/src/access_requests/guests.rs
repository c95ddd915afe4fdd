//! Guests: someone without an account proves their email address by a
//! mailed link, and then holds a short session that can make requests and
//! see the requests made from that address. A guest is known by the blind
//! index of the address; the address itself is sealed (the `Guests` key).
//! Guests cannot be asked questions: they have no inbox here to answer.

use keyhold_crypto::{random_token, sha256};
use keyhold_storage::{Batch, StorageError};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::audit::{AuditAction, AuditActor, AuditEvent, Outcome};
use crate::ids::KeyOwner;
use crate::trees::{DEKS, GUEST_TOKENS};
use crate::vault::Aad;
use crate::{DomainError, Email, Keyhold};

/// How long the mailed link works.
pub const GUEST_LINK_TTL: Duration = Duration::hours(24);
/// How long a guest stays signed in after opening it.
pub const GUEST_SESSION_TTL: Duration = Duration::hours(2);
/// Unused links one address may hold at once (each lives a day).
pub const MAX_LIVE_GUEST_LINKS: usize = 3;

const GUEST_INDEX: &str = "guest-email";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum GuestToken {
    Link,
    Session,
}

#[derive(Serialize, Deserialize)]
struct GuestRowV1 {
    kind: GuestToken,
    blind: [u8; 32],
    /// The address, sealed under the guests' key and bound to this row.
    email: Vec<u8>,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
}

/// A live link or session row: its key, its bytes as read, the guest.
struct Live {
    key: Vec<u8>,
    raw: Vec<u8>,
    guest: GuestSession,
}

/// A guest who proved their address.
#[derive(Clone, Debug)]
pub struct GuestSession {
    pub(crate) blind: [u8; 32],
    pub email: Email,
}

impl Keyhold {
    /// The guests' data key, made the first time a guest needs it.
    async fn guests_key(&self) -> Result<std::sync::Arc<keyhold_crypto::DataKey>, DomainError> {
        if self.store.get(DEKS, &KeyOwner::Guests.key())?.is_some() {
            return self.vault.key(KeyOwner::Guests);
        }
        let mut batch = Batch::new();
        let made = self.vault.create_key(KeyOwner::Guests, &mut batch)?;
        match self.store.submit(batch).await {
            Ok(_) => Ok(made),
            // Another request (or instance) made it first: use theirs.
            Err(StorageError::Conflict) => {
                self.vault.forget(KeyOwner::Guests);
                self.vault.key(KeyOwner::Guests)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Stores a new link or session for the address behind `blind`, and
    /// deletes the `lapsed` rows in the same write.
    async fn guest_row(
        &self,
        kind: GuestToken,
        email: &Email,
        blind: [u8; 32],
        ttl: Duration,
        lapsed: Vec<Vec<u8>>,
    ) -> Result<String, DomainError> {
        let token = random_token()?;
        let key = sha256(token.as_bytes()).to_vec();
        let dek = self.guests_key().await?;
        let row = GuestRowV1 {
            kind,
            blind,
            email: self
                .vault
                .seal(&dek, &Aad::guest_email(&key), email.as_str().as_bytes())?,
            expires_at: self.clock.now() + ttl,
        };
        let mut batch = Batch::new();
        batch.require_absent(GUEST_TOKENS, key.clone());
        batch.put(GUEST_TOKENS, key, serde_json::to_vec(&row)?);
        for k in lapsed {
            batch.delete(GUEST_TOKENS, k);
        }
        self.store.submit(batch).await?;
        Ok(token)
    }

    /// One pass over the guest rows: how many unused, unexpired links the
    /// address behind `blind` holds, and the rows that have lapsed (at most
    /// 2,000 a pass), which go as new ones come.
    fn survey_guest_tokens(&self, blind: &[u8; 32]) -> Result<(usize, Vec<Vec<u8>>), DomainError> {
        let now = self.clock.now();
        let (mut live_links, mut lapsed) = (0, Vec::new());
        for item in self.store.scan(GUEST_TOKENS, b"") {
            let (k, raw) = item?;
            match serde_json::from_slice::<GuestRowV1>(&raw) {
                Ok(r) if r.expires_at > now && r.kind == GuestToken::Link && r.blind == *blind => {
                    live_links += 1
                }
                Ok(r) if r.expires_at > now => {}
                _ if lapsed.len() < 2_000 => lapsed.push(k),
                _ => {}
            }
        }
        Ok((live_links, lapsed))
    }

    /// Mails a guest the link that proves their address. Says nothing of
    /// whether the address has asked before. An address with
    /// [`MAX_LIVE_GUEST_LINKS`] unused links already gets no more until one
    /// is used or lapses, so the form cannot be used to flood a mailbox.
    pub async fn start_guest(&self, email: &Email) -> Result<(), DomainError> {
        let blind = self.vault.blind(GUEST_INDEX, &email.normalised());
        let (live_links, lapsed) = self.survey_guest_tokens(&blind)?;
        if live_links >= MAX_LIVE_GUEST_LINKS {
            tracing::info!("guest link not sent: the address has enough unused links");
            return Ok(());
        }
        let token = self
            .guest_row(GuestToken::Link, email, blind, GUEST_LINK_TTL, lapsed)
            .await?;
        let link = self.link(&format!("/access-requests/guest/{token}"));
        self.send_mail(
            email,
            "Confirm your email address to ask for health records",
            &format!(
                "To ask for copies of health records as a guest, or to see requests you made from this address, open this link:\n\n{link}\n\n\
                 The link works once and expires in 24 hours. If you did not ask for it, you can ignore this message.\n"
            ),
        )
        .await
    }

    fn live_guest(&self, token: &str, kind: GuestToken) -> Result<Option<Live>, DomainError> {
        if token.is_empty() || token.len() > 100 {
            return Ok(None);
        }
        let key = sha256(token.as_bytes()).to_vec();
        let Some(raw) = self.store.get(GUEST_TOKENS, &key)? else {
            return Ok(None);
        };
        let row: GuestRowV1 = serde_json::from_slice(&raw)?;
        if row.kind != kind || row.expires_at <= self.clock.now() {
            return Ok(None);
        }
        let dek = self.vault.key(KeyOwner::Guests)?;
        let plain = self.vault.open(&dek, &Aad::guest_email(&key), &row.email)?;
        let email = Email::parse(&String::from_utf8_lossy(&plain))
            .map_err(|e| DomainError::Internal(format!("a guest's address: {e}")))?;
        Ok(Some(Live {
            key,
            raw,
            guest: GuestSession {
                blind: row.blind,
                email,
            },
        }))
    }

    pub fn guest_link_is_live(&self, token: &str) -> Result<bool, DomainError> {
        Ok(self.live_guest(token, GuestToken::Link)?.is_some())
    }

    /// Uses a mailed link (once): the guest's session token.
    pub async fn open_guest_link(&self, token: &str) -> Result<String, DomainError> {
        let gone =
            || DomainError::invalid("link", "This link has expired or has already been used");
        let Live { key, raw, guest } =
            self.live_guest(token, GuestToken::Link)?.ok_or_else(gone)?;
        let mut batch = Batch::new();
        batch.require_equals(GUEST_TOKENS, key.clone(), Some(raw));
        batch.delete(GUEST_TOKENS, key);
        batch_audit(self, &mut batch)?;
        match self.store.submit(batch).await {
            Ok(_) => {}
            Err(StorageError::Conflict) => return Err(gone()),
            Err(e) => return Err(e.into()),
        }
        let (_, lapsed) = self.survey_guest_tokens(&guest.blind)?;
        self.guest_row(
            GuestToken::Session,
            &guest.email,
            guest.blind,
            GUEST_SESSION_TTL,
            lapsed,
        )
        .await
    }

    /// The guest behind a session cookie, while it lasts.
    pub fn guest_session(&self, token: &str) -> Result<Option<GuestSession>, DomainError> {
        Ok(self
            .live_guest(token, GuestToken::Session)?
            .map(|l| l.guest))
    }

    pub async fn end_guest_session(&self, token: &str) -> Result<(), DomainError> {
        let mut batch = Batch::new();
        batch.delete(GUEST_TOKENS, sha256(token.as_bytes()).to_vec());
        self.store.submit(batch).await?;
        Ok(())
    }
}

fn batch_audit(core: &Keyhold, batch: &mut Batch) -> Result<(), DomainError> {
    core.audit.add(
        batch,
        &AuditEvent {
            at: core.clock.now(),
            actor: AuditActor::anonymous(),
            action: AuditAction::SignIn,
            patient: None,
            resource: "guest".into(),
            purpose: "guest proved their email address".into(),
            outcome: Outcome::Success,
            basis: None,
        },
    )
}
