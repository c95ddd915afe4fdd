//! Organisations and their people. The operator creates an organisation and
//! its first administrator; administrators invite professionals, set their
//! roles and remove them. Memberships are read fresh on every request (see
//! `Keyhold::session`), so a removal ends access at once.

use keyhold_storage::{Batch, StorageError};
use serde::Serialize;
use time::OffsetDateTime;

use crate::audit::{AuditAction, AuditActor, AuditEvent, AuditRole, Outcome};
use crate::consent::{Membership, StaffRole};
use crate::ids::KeyOwner;
use crate::policy::Principal;
use crate::rows::{InviteRowV1, InviteTarget, MemberRowV1, OrgRowV1, StaffInviteRowV1};
use crate::trees::{pair, INVITES, MEMBERS, MEMBERS_BY_ACCOUNT, ORGS, STAFF_INVITES};
use crate::vault::Aad;
use crate::{AccountId, DomainError, Email, Keyhold, OrgId, StaffInviteId};

pub const MAX_ORG_NAME_CHARS: usize = 120;

/// A person on an organisation's staff page.
#[derive(Debug, Clone, Serialize)]
pub struct StaffMember {
    pub account: AccountId,
    pub name: String,
    pub email: String,
    pub role: StaffRole,
    pub active: bool,
}

/// An invitation to join that has not been accepted yet.
#[derive(Debug, Clone, Serialize)]
pub struct PendingStaff {
    pub id: StaffInviteId,
    pub email: String,
    pub role: StaffRole,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// How the first administrator came to be.
#[derive(Debug)]
pub enum FirstAdministrator {
    /// The address already had an account: it is a member now.
    Existing(AccountId),
    /// A single-use link to accept (also sent by mail).
    Invited { token: String },
}

impl Keyhold {
    fn org_event(
        &self,
        actor: AuditActor,
        action: AuditAction,
        resource: String,
        purpose: &str,
    ) -> AuditEvent {
        AuditEvent {
            at: self.clock.now(),
            actor,
            action,
            patient: None,
            resource,
            purpose: purpose.into(),
            outcome: Outcome::Success,
            basis: None,
        }
    }

    pub(crate) fn admin_actor(p: &Principal, org: OrgId) -> AuditActor {
        AuditActor {
            account: Some(p.account),
            role: AuditRole::OrgAdmin,
            organisation: Some(org.to_string()),
            acting_for: None,
        }
    }

    /// Operator: creates an organisation and its first administrator (an
    /// existing account joins at once; a new address gets an invitation).
    pub async fn create_organisation(
        &self,
        name: &str,
        admin_email: &str,
    ) -> Result<(OrgId, FirstAdministrator), DomainError> {
        let name = name.trim();
        let mut errors = Vec::new();
        if name.is_empty() {
            errors.push(crate::FieldError::new(
                "name",
                "Enter the organisation's name",
            ));
        } else if name.chars().count() > MAX_ORG_NAME_CHARS {
            errors.push(crate::FieldError::new(
                "name",
                format!("The name must be {MAX_ORG_NAME_CHARS} characters or fewer"),
            ));
        }
        let email = Email::parse(admin_email)
            .map_err(|e| errors.push(crate::FieldError::new("email", e.to_string())));
        let email = match email {
            Ok(e) if errors.is_empty() => e,
            _ => return Err(DomainError::Invalid(errors)),
        };
        let org = OrgId::new_random();
        let now = self.clock.now();
        let mut batch = Batch::new();
        self.vault
            .create_key(KeyOwner::Organisation(org), &mut batch)?;
        batch.require_absent(ORGS, org.as_bytes().to_vec());
        batch.put(
            ORGS,
            org.as_bytes().to_vec(),
            serde_json::to_vec(&OrgRowV1 {
                name: name.to_string(),
                created_at: now,
            })?,
        );
        self.audit.add(
            &mut batch,
            &self.org_event(
                AuditActor::operator(),
                AuditAction::Create,
                format!("org/{org}"),
                "create an organisation",
            ),
        )?;
        let first = match self.account_by_email(&email)? {
            Some(account) => {
                self.member_into(&mut batch, org, account, StaffRole::Administrator, now)?;
                self.audit.add(
                    &mut batch,
                    &self.org_event(
                        AuditActor::operator(),
                        AuditAction::Grant,
                        format!("org/{org}/staff/{account}"),
                        "first administrator",
                    ),
                )?;
                FirstAdministrator::Existing(account)
            }
            None => {
                let token =
                    self.staff_invite_into(&mut batch, org, &email, StaffRole::Administrator, now)?;
                FirstAdministrator::Invited { token }
            }
        };
        self.store.submit(batch).await?;
        if let FirstAdministrator::Invited { token } = &first {
            self.mail_staff_invitation(&email, name, StaffRole::Administrator, token)
                .await?;
        }
        Ok((org, first))
    }

    /// Operator and demo: makes an existing account a member straight away.
    pub async fn add_member(
        &self,
        org: OrgId,
        account: AccountId,
        role: StaffRole,
    ) -> Result<(), DomainError> {
        self.organisation_name(org)?;
        let mut batch = Batch::new();
        self.member_into(&mut batch, org, account, role, self.clock.now())?;
        self.audit.add(
            &mut batch,
            &self.org_event(
                AuditActor::operator(),
                AuditAction::Grant,
                format!("org/{org}/staff/{account}"),
                role.label(),
            ),
        )?;
        self.store.submit(batch).await?;
        Ok(())
    }

    pub(crate) fn member_into(
        &self,
        batch: &mut Batch,
        org: OrgId,
        account: AccountId,
        role: StaffRole,
        now: OffsetDateTime,
    ) -> Result<(), DomainError> {
        let row = serde_json::to_vec(&MemberRowV1 {
            role,
            active: true,
            added_at: now,
            removed_at: None,
        })?;
        batch.put(
            MEMBERS,
            pair(org.as_bytes(), account.as_bytes()),
            row.clone(),
        );
        batch.put(
            MEMBERS_BY_ACCOUNT,
            pair(account.as_bytes(), org.as_bytes()),
            row,
        );
        Ok(())
    }

    fn staff_invite_into(
        &self,
        batch: &mut Batch,
        org: OrgId,
        email: &Email,
        role: StaffRole,
        now: OffsetDateTime,
    ) -> Result<String, DomainError> {
        let id = StaffInviteId::new_random();
        let dek = self.vault.key(KeyOwner::Organisation(org))?;
        let sealed = self.vault.seal(
            &dek,
            &Aad::staff_invite(org, &id),
            email.as_str().as_bytes(),
        )?;
        let expires_at = now + self.settings.invitation_ttl;
        let (token, key) = self.new_invite_token()?;
        batch.put(
            STAFF_INVITES,
            pair(org.as_bytes(), id.as_bytes()),
            serde_json::to_vec(&StaffInviteRowV1 {
                role,
                email: sealed,
                token_key: key.to_vec(),
                expires_at,
            })?,
        );
        batch.require_absent(INVITES, key.to_vec());
        batch.put(
            INVITES,
            key.to_vec(),
            serde_json::to_vec(&InviteRowV1 {
                target: InviteTarget::Staff { org, invite: id },
                expires_at,
            })?,
        );
        Ok(token)
    }

    /// The organisation's name (public information).
    pub fn organisation_name(&self, org: OrgId) -> Result<String, DomainError> {
        let raw = self
            .store
            .get(ORGS, org.as_bytes())?
            .ok_or(DomainError::NotFound)?;
        Ok(serde_json::from_slice::<OrgRowV1>(&raw)?.name)
    }

    /// Every organisation, by name (a patient chooses one to share with).
    pub fn organisations(&self) -> Result<Vec<(OrgId, String)>, DomainError> {
        let mut out = Vec::new();
        for item in self.store.scan(ORGS, b"") {
            let (k, v) = item?;
            if let Some(id) = OrgId::from_bytes(&k) {
                out.push((id, serde_json::from_slice::<OrgRowV1>(&v)?.name));
            }
        }
        out.sort_by_key(|o| o.1.to_lowercase());
        Ok(out)
    }

    /// The account's active memberships, read from the store now.
    pub(crate) fn memberships_of(
        &self,
        account: AccountId,
    ) -> Result<Vec<Membership>, DomainError> {
        let mut out = Vec::new();
        for item in self.store.scan(MEMBERS_BY_ACCOUNT, account.as_bytes()) {
            let (k, v) = item?;
            let row: MemberRowV1 = serde_json::from_slice(&v)?;
            if let (true, Some(org)) = (row.active, OrgId::from_bytes(&k[16..])) {
                out.push(Membership {
                    org,
                    role: row.role,
                });
            }
        }
        Ok(out)
    }

    /// Administrators of `org` only; anyone else gets "not found".
    pub fn require_admin(p: &Principal, org: OrgId) -> Result<(), DomainError> {
        if p.memberships
            .iter()
            .any(|m| m.org == org && m.role == StaffRole::Administrator)
        {
            Ok(())
        } else {
            Err(DomainError::NotFound)
        }
    }

    /// Administrators: the organisation's people and pending invitations.
    pub fn staff(
        &self,
        p: &Principal,
        org: OrgId,
    ) -> Result<(Vec<StaffMember>, Vec<PendingStaff>), DomainError> {
        Self::require_admin(p, org)?;
        let mut members = Vec::new();
        for item in self.store.scan(MEMBERS, org.as_bytes()) {
            let (k, v) = item?;
            let row: MemberRowV1 = serde_json::from_slice(&v)?;
            let Some(account) = AccountId::from_bytes(&k[16..]) else {
                continue;
            };
            members.push(StaffMember {
                account,
                name: self.display_name(account),
                email: self
                    .account_email(account)
                    .map(|e| e.to_string())
                    .unwrap_or_default(),
                role: row.role,
                active: row.active,
            });
        }
        members.sort_by(|a, b| {
            (!a.active, a.name.to_lowercase()).cmp(&(!b.active, b.name.to_lowercase()))
        });
        let dek = self.vault.key(KeyOwner::Organisation(org))?;
        let now = self.clock.now();
        let mut pending = Vec::new();
        for item in self.store.scan(STAFF_INVITES, org.as_bytes()) {
            let (k, v) = item?;
            let row: StaffInviteRowV1 = serde_json::from_slice(&v)?;
            let Some(id) = StaffInviteId::from_bytes(&k[16..]) else {
                continue;
            };
            if row.expires_at <= now {
                continue;
            }
            let email = self
                .vault
                .open(&dek, &Aad::staff_invite(org, &id), &row.email)?;
            pending.push(PendingStaff {
                id,
                email: String::from_utf8_lossy(&email).into_owned(),
                role: row.role,
                expires_at: row.expires_at,
            });
        }
        Ok((members, pending))
    }

    /// Administrators: invites a professional by email, with a role.
    pub async fn invite_staff(
        &self,
        p: &Principal,
        org: OrgId,
        email: &str,
        role: StaffRole,
    ) -> Result<(), DomainError> {
        Self::require_admin(p, org)?;
        let email =
            Email::parse(email).map_err(|e| DomainError::invalid("email", e.to_string()))?;
        let name = self.organisation_name(org)?;
        let mut batch = Batch::new();
        let token = self.staff_invite_into(&mut batch, org, &email, role, self.clock.now())?;
        self.audit.add(
            &mut batch,
            &self.org_event(
                Self::admin_actor(p, org),
                AuditAction::Grant,
                format!("org/{org}/staff-invitation"),
                role.label(),
            ),
        )?;
        self.store.submit(batch).await?;
        self.mail_staff_invitation(&email, &name, role, &token)
            .await
    }

    async fn mail_staff_invitation(
        &self,
        to: &Email,
        org_name: &str,
        role: StaffRole,
        token: &str,
    ) -> Result<(), DomainError> {
        let link = self.link(&format!("/invitations/{token}"));
        let days = self.settings.invitation_ttl.whole_days();
        self.send_mail(
            to,
            "You are invited to join a team on Keyhold",
            &format!(
                "{org_name} has invited you to join its team on Keyhold as: {}.\n\n\
                 To accept, open this link and sign in (or create an account) with this email address:\n\n\
                 {link}\n\n\
                 The link works once and expires in {days} days. If you did not expect this, you can ignore this message.\n",
                role.label()
            ),
        )
        .await
    }

    fn member_row(
        &self,
        org: OrgId,
        account: AccountId,
    ) -> Result<(Vec<u8>, MemberRowV1), DomainError> {
        let raw = self
            .store
            .get(MEMBERS, &pair(org.as_bytes(), account.as_bytes()))?
            .ok_or(DomainError::NotFound)?;
        let row = serde_json::from_slice(&raw)?;
        Ok((raw, row))
    }

    /// Administrators: changes a member's role. Administrators cannot change
    /// their own, so an organisation always keeps the one who acts.
    pub async fn set_staff_role(
        &self,
        p: &Principal,
        org: OrgId,
        account: AccountId,
        role: StaffRole,
    ) -> Result<(), DomainError> {
        self.change_member(p, org, account, "change role", |row| row.role = role)
            .await
    }

    /// Administrators: removes a member; their access through the
    /// organisation ends on their next request.
    pub async fn remove_staff(
        &self,
        p: &Principal,
        org: OrgId,
        account: AccountId,
    ) -> Result<(), DomainError> {
        let now = self.clock.now();
        self.change_member(p, org, account, "remove", |row| {
            row.active = false;
            row.removed_at = Some(now);
        })
        .await
    }

    async fn change_member(
        &self,
        p: &Principal,
        org: OrgId,
        account: AccountId,
        what: &str,
        change: impl FnOnce(&mut MemberRowV1),
    ) -> Result<(), DomainError> {
        Self::require_admin(p, org)?;
        if account == p.account {
            return Err(DomainError::invalid(
                "staff",
                "You cannot change your own membership. Ask another administrator",
            ));
        }
        let (raw, mut row) = self.member_row(org, account)?;
        change(&mut row);
        let mut batch = Batch::new();
        batch.require_equals(MEMBERS, pair(org.as_bytes(), account.as_bytes()), Some(raw));
        self.member_into_row(&mut batch, org, account, &row)?;
        self.audit.add(
            &mut batch,
            &self.org_event(
                Self::admin_actor(p, org),
                if row.active {
                    AuditAction::Update
                } else {
                    AuditAction::Revoke
                },
                format!("org/{org}/staff/{account}"),
                what,
            ),
        )?;
        match self.store.submit(batch).await {
            Ok(_) => Ok(()),
            Err(StorageError::Conflict) => Err(DomainError::Conflict),
            Err(e) => Err(e.into()),
        }
    }

    fn member_into_row(
        &self,
        batch: &mut Batch,
        org: OrgId,
        account: AccountId,
        row: &MemberRowV1,
    ) -> Result<(), DomainError> {
        let bytes = serde_json::to_vec(row)?;
        batch.put(
            MEMBERS,
            pair(org.as_bytes(), account.as_bytes()),
            bytes.clone(),
        );
        batch.put(
            MEMBERS_BY_ACCOUNT,
            pair(account.as_bytes(), org.as_bytes()),
            bytes,
        );
        Ok(())
    }

    /// Accepts a staff invitation (called from `accept_invitation`).
    pub(crate) fn accept_staff_into(
        &self,
        batch: &mut Batch,
        p: &Principal,
        org: OrgId,
        invite: StaffInviteId,
    ) -> Result<StaffRole, DomainError> {
        let key = pair(org.as_bytes(), invite.as_bytes());
        let raw = self
            .store
            .get(STAFF_INVITES, &key)?
            .ok_or(DomainError::NotFound)?;
        let row: StaffInviteRowV1 = serde_json::from_slice(&raw)?;
        let dek = self.vault.key(KeyOwner::Organisation(org))?;
        let invited = self
            .vault
            .open(&dek, &Aad::staff_invite(org, &invite), &row.email)?;
        self.require_invited_address(p, &invited)?;
        batch.require_equals(STAFF_INVITES, key.clone(), Some(raw));
        batch.delete(STAFF_INVITES, key);
        self.member_into(batch, org, p.account, row.role, self.clock.now())?;
        self.audit.add(
            batch,
            &self.org_event(
                AuditActor {
                    account: Some(p.account),
                    role: AuditRole::Professional,
                    organisation: Some(org.to_string()),
                    acting_for: None,
                },
                AuditAction::Grant,
                format!("org/{org}/staff/{}", p.account),
                "accepted an invitation to join",
            ),
        )?;
        Ok(row.role)
    }
}
