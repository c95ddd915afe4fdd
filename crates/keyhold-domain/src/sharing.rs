//! Grants: made, changed and stopped by the patient (or a carer allowed to act
//! for them), accepted by invitation, set up as proxies by organisations. Every
//! change is one atomic write with its audit entry; a grant is sealed under the
//! patient's key, since its purpose and invited address are personal.

use std::collections::BTreeSet;

use keyhold_crypto::{constant_time_eq, random_token, sha256};
use keyhold_storage::{Batch, StorageError};
use serde::Serialize;
use time::{Date, Duration, OffsetDateTime, Time};

use crate::audit::{AuditAction, AuditActor, AuditEvent, AuditRole, Outcome};
use crate::consent::{Grant, GrantState, Grantee, LegalBasis, Permissions, Proxy, StaffRole};
use crate::ids::KeyOwner;
use crate::policy::{Action, Basis, Principal, Resource};
use crate::rows::{GrantRowV1, InviteRowV1, InviteTarget};
use crate::trees::{pair, GRANTS, GRANTS_BY_ACCOUNT, GRANTS_BY_ORG, INVITES, META};
use crate::vault::Aad;
use crate::{
    AccountId, Category, DomainError, Email, FieldError, GrantId, Keyhold, NhsNumber, OrgId,
    PatientId,
};

pub const MAX_PURPOSE_CHARS: usize = 500;
/// The longest a grant may run before the patient renews it.
pub const MAX_GRANT_YEARS: i64 = 5;

/// Who a new grant is for, as the patient chose.
#[derive(Debug, Clone)]
pub enum NewGrantee {
    /// A person, invited by email (they accept with an account).
    Person(Email),
    Organisation(OrgId),
}

/// The terms of a grant, as a form submits them.
#[derive(Debug, Clone)]
pub struct GrantTerms {
    pub permissions: Permissions,
    pub categories: BTreeSet<Category>,
    /// The last day it runs (it ends at the start of the next day, UTC).
    pub last_day: Date,
    pub purpose: String,
}

/// A proxy an organisation administrator sets up.
#[derive(Debug, Clone)]
pub struct ProxyRequest {
    pub nhs_number: NhsNumber,
    pub carer_email: Email,
    pub basis: LegalBasis,
    pub terms: GrantTerms,
}

/// A grant as the sharing page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct GrantView {
    pub grant: Grant,
    pub state: GrantState,
    pub grantee_label: String,
    pub grantee_kind: &'static str,
    pub proxy_org: Option<String>,
}

/// A person whose record the account may open (as a carer or proxy).
#[derive(Debug, Clone, Serialize)]
pub struct CaredFor {
    pub patient: PatientId,
    pub name: String,
    pub permissions: Permissions,
    pub categories: Vec<Category>,
    #[serde(with = "time::serde::rfc3339")]
    pub ends: OffsetDateTime,
}

/// What an invitation link offers, shown before accepting.
#[derive(Debug, Clone, Serialize)]
pub enum InvitationView {
    Grant {
        from: String,
        patient_name: String,
        permissions: Permissions,
        categories: Vec<Category>,
        #[serde(with = "time::serde::rfc3339")]
        ends: OffsetDateTime,
        purpose: String,
        invited: String,
    },
    Staff {
        org_name: String,
        role: StaffRole,
    },
}

/// What accepting led to.
#[derive(Debug, Clone, Copy)]
pub enum Accepted {
    Grant(PatientId),
    Staff(OrgId),
}

fn grant_key(patient: PatientId, id: GrantId) -> Vec<u8> {
    pair(patient.as_bytes(), id.as_bytes())
}

fn org_grant_key(org: OrgId, patient: PatientId, id: GrantId) -> Vec<u8> {
    let mut k = org.as_bytes().to_vec();
    k.extend_from_slice(&grant_key(patient, id));
    k
}

/// `META` key set once every organisation grant is in `GRANTS_BY_ORG`.
const GRANTS_BY_ORG_BUILT: &[u8] = b"grants_by_org_built";

/// Hides most of an address for display to someone who may not own it.
fn mask(email: &str) -> String {
    match email.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".into(),
    }
}

impl GrantTerms {
    fn check(&self, now: OffsetDateTime, for_org: bool) -> Result<OffsetDateTime, DomainError> {
        let mut errors = Vec::new();
        if self.permissions.is_empty() {
            errors.push(FieldError::new("permissions", "Choose what they may do"));
        }
        if for_org && self.permissions.act_on_behalf {
            errors.push(FieldError::new(
                "permissions",
                "An organisation cannot act on your behalf. Share with a person for that",
            ));
        }
        if self.categories.is_empty() {
            errors.push(FieldError::new(
                "categories",
                "Choose at least one part of your record to share",
            ));
        }
        let ends = self
            .last_day
            .next_day()
            .map(|d| d.with_time(Time::MIDNIGHT).assume_utc());
        match ends {
            Some(e) if e <= now => errors.push(FieldError::new(
                "ends-day",
                "The end date must be today or in the future",
            )),
            Some(e) if e > now + Duration::days(366 * MAX_GRANT_YEARS) => {
                errors.push(FieldError::new(
                    "ends-day",
                    format!("The end date must be within {MAX_GRANT_YEARS} years"),
                ))
            }
            None => errors.push(FieldError::new("ends-day", "Enter a real date")),
            _ => {}
        }
        let purpose = self.purpose.trim();
        if purpose.is_empty() {
            errors.push(FieldError::new("purpose", "Say why you are sharing"));
        } else if purpose.chars().count() > MAX_PURPOSE_CHARS {
            errors.push(FieldError::new(
                "purpose",
                format!("The reason must be {MAX_PURPOSE_CHARS} characters or fewer"),
            ));
        }
        match (errors.is_empty(), ends) {
            (true, Some(e)) => Ok(e),
            _ => Err(DomainError::Invalid(errors)),
        }
    }
}

impl Keyhold {
    /// Every grant of `patient`, opened (no policy: internal callers decide).
    pub(crate) fn grants_of(&self, patient: PatientId) -> Result<Vec<Grant>, DomainError> {
        let mut out = Vec::new();
        let mut dek = None;
        for item in self.store.scan(GRANTS, patient.as_bytes()) {
            let (k, v) = item?;
            let row: GrantRowV1 = serde_json::from_slice(&v)?;
            let id = GrantId::from_bytes(&k[16..])
                .ok_or_else(|| DomainError::Internal("bad grant key".into()))?;
            let dek = match &dek {
                Some(d) => d,
                None => dek.insert(self.vault.key(KeyOwner::Patient(patient))?),
            };
            let plain =
                self.vault
                    .open(dek, &Aad::grant(patient, &id, row.version), &row.sealed)?;
            out.push(serde_json::from_slice(&plain)?);
        }
        Ok(out)
    }

    fn grant_row(&self, patient: PatientId, id: GrantId) -> Result<(Vec<u8>, Grant), DomainError> {
        let raw = self
            .store
            .get(GRANTS, &grant_key(patient, id))?
            .ok_or(DomainError::NotFound)?;
        let row: GrantRowV1 = serde_json::from_slice(&raw)?;
        let dek = self.vault.key(KeyOwner::Patient(patient))?;
        let plain = self
            .vault
            .open(&dek, &Aad::grant(patient, &id, row.version), &row.sealed)?;
        Ok((raw, serde_json::from_slice(&plain)?))
    }

    fn put_grant(&self, batch: &mut Batch, g: &Grant) -> Result<(), DomainError> {
        let dek = self.vault.key(KeyOwner::Patient(g.patient))?;
        let sealed = self.vault.seal(
            &dek,
            &Aad::grant(g.patient, &g.id, g.version),
            &serde_json::to_vec(g)?,
        )?;
        batch.put(
            GRANTS,
            grant_key(g.patient, g.id),
            serde_json::to_vec(&GrantRowV1 {
                version: g.version,
                sealed,
            })?,
        );
        if let Grantee::Account { account } = g.grantee {
            let mut k = account.as_bytes().to_vec();
            k.extend_from_slice(&grant_key(g.patient, g.id));
            batch.put(GRANTS_BY_ACCOUNT, k, Vec::new());
        }
        if let Grantee::Organisation { org } = g.grantee {
            batch.put(
                GRANTS_BY_ORG,
                org_grant_key(org, g.patient, g.id),
                Vec::new(),
            );
        }
        Ok(())
    }

    /// Builds `GRANTS_BY_ORG` for grants stored before it existed. Runs once
    /// per store (a `META` flag marks it done); idempotent if cut short, since
    /// it only adds index rows. Called by `serve` before it listens.
    pub async fn index_grants_by_org(&self) -> Result<usize, DomainError> {
        if self.store.get(META, GRANTS_BY_ORG_BUILT)?.is_some() {
            return Ok(0);
        }
        let mut patients = Vec::new();
        for item in self.store.scan(GRANTS, b"") {
            let (k, _) = item?;
            if let Some(p) = k.get(..16).and_then(PatientId::from_bytes) {
                if patients.last() != Some(&p) {
                    patients.push(p);
                }
            }
        }
        let mut batch = Batch::new();
        let mut indexed = 0;
        for patient in patients {
            for g in self.grants_of(patient)? {
                if let Grantee::Organisation { org } = g.grantee {
                    batch.put(GRANTS_BY_ORG, org_grant_key(org, patient, g.id), Vec::new());
                    indexed += 1;
                }
            }
        }
        batch.put(META, GRANTS_BY_ORG_BUILT.to_vec(), b"1".to_vec());
        self.store.submit(batch).await?;
        Ok(indexed)
    }

    /// The patients with any grant (of any state) to `org`; the policy still
    /// decides each one.
    pub(crate) fn patients_sharing_with(&self, org: OrgId) -> Result<Vec<PatientId>, DomainError> {
        let mut out: Vec<PatientId> = Vec::new();
        for item in self.store.scan(GRANTS_BY_ORG, org.as_bytes()) {
            let (k, _) = item?;
            if let Some(p) = k.get(16..32).and_then(PatientId::from_bytes) {
                if out.last() != Some(&p) {
                    out.push(p);
                }
            }
        }
        Ok(out)
    }

    /// Demo seeding only: stores a grant as given (an account grant is active
    /// at once, with no invitation to accept), audited as the operator's, in
    /// one write. Request paths go through `share`, which checks the policy.
    pub(crate) async fn seed_grant(&self, grant: Grant) -> Result<(), DomainError> {
        let mut batch = Batch::new();
        batch.require_absent(GRANTS, grant_key(grant.patient, grant.id));
        self.put_grant(&mut batch, &grant)?;
        self.audit.add(
            &mut batch,
            &AuditEvent {
                at: self.clock.now(),
                actor: AuditActor::operator(),
                action: AuditAction::Grant,
                patient: Some(grant.patient),
                resource: format!("grant/{}", grant.id),
                purpose: "seed synthetic demo data".into(),
                outcome: Outcome::Success,
                basis: None,
            },
        )?;
        self.store.submit(batch).await?;
        Ok(())
    }

    /// A fresh invitation token and the key it is stored under (its hash).
    pub(crate) fn new_invite_token(&self) -> Result<(String, [u8; 32]), DomainError> {
        let token = random_token()?;
        let key = sha256(token.as_bytes());
        Ok((token, key))
    }

    fn grant_invite_into(&self, batch: &mut Batch, g: &Grant) -> Result<String, DomainError> {
        let (token, key) = self.new_invite_token()?;
        batch.require_absent(INVITES, key.to_vec());
        batch.put(
            INVITES,
            key.to_vec(),
            serde_json::to_vec(&InviteRowV1 {
                target: InviteTarget::Grant {
                    patient: g.patient,
                    grant: g.id,
                },
                expires_at: (self.clock.now() + self.settings.invitation_ttl).min(g.ends),
            })?,
        );
        Ok(token)
    }

    fn grantee_label(&self, g: &Grantee) -> (String, &'static str) {
        match g {
            Grantee::Account { account } => (self.display_name(*account), "person"),
            Grantee::Organisation { org } => (
                self.organisation_name(*org)
                    .unwrap_or_else(|_| "Unknown organisation".into()),
                "organisation",
            ),
            Grantee::Invitation { email } => (email.to_string(), "invitation"),
        }
    }

    /// The patient's grants, for the sharing page (needs `Share`).
    pub async fn grants(
        &self,
        p: &Principal,
        patient: PatientId,
    ) -> Result<Vec<GrantView>, DomainError> {
        let access = self
            .authorize(
                p,
                Action::Share,
                Resource::whole(patient),
                AuditAction::Read,
                "grants",
            )
            .await?;
        let now = access.now;
        let mut out: Vec<GrantView> = self
            .grants_of(patient)?
            .into_iter()
            .map(|grant| {
                let (grantee_label, grantee_kind) = self.grantee_label(&grant.grantee);
                let proxy_org = grant
                    .proxy
                    .as_ref()
                    .and_then(|x| self.organisation_name(x.org).ok());
                GrantView {
                    state: grant.state(now),
                    grant,
                    grantee_label,
                    grantee_kind,
                    proxy_org,
                }
            })
            .collect();
        out.sort_by_key(|v| {
            (
                !matches!(v.state, GrantState::Active | GrantState::Pending),
                std::cmp::Reverse(v.grant.created_at),
            )
        });
        self.audit
            .record(&self.event(p, &access, AuditAction::Read, patient, "grants".into()))
            .await?;
        Ok(out)
    }

    /// One grant (for its change form).
    pub async fn grant(
        &self,
        p: &Principal,
        patient: PatientId,
        id: GrantId,
    ) -> Result<GrantView, DomainError> {
        self.grants(p, patient)
            .await?
            .into_iter()
            .find(|v| v.grant.id == id)
            .ok_or(DomainError::NotFound)
    }

    /// Shares part of the record. A person is invited by email; an
    /// organisation's grant is active from now.
    pub async fn share(
        &self,
        p: &Principal,
        patient: PatientId,
        grantee: NewGrantee,
        terms: GrantTerms,
    ) -> Result<GrantId, DomainError> {
        let now = self.clock.now();
        let ends = terms.check(now, matches!(grantee, NewGrantee::Organisation(_)))?;
        if let NewGrantee::Organisation(org) = grantee {
            self.organisation_name(org)
                .map_err(|_| DomainError::invalid("organisation", "Choose an organisation"))?;
        }
        let access = self
            .authorize(
                p,
                Action::Share,
                Resource::whole(patient),
                AuditAction::Grant,
                "grant",
            )
            .await?;
        let grant = Grant {
            id: GrantId::new_random(),
            patient,
            grantee: match &grantee {
                NewGrantee::Person(email) => Grantee::Invitation {
                    email: email.clone(),
                },
                NewGrantee::Organisation(org) => Grantee::Organisation { org: *org },
            },
            permissions: terms.permissions,
            categories: terms.categories,
            starts: now,
            ends,
            purpose: terms.purpose.trim().to_string(),
            created_by: p.account,
            created_at: now,
            proxy: None,
            revoked_at: None,
            version: 1,
        };
        let mut batch = Batch::new();
        batch.require_absent(GRANTS, grant_key(patient, grant.id));
        self.put_grant(&mut batch, &grant)?;
        let token = match grantee {
            NewGrantee::Person(_) => Some(self.grant_invite_into(&mut batch, &grant)?),
            NewGrantee::Organisation(_) => None,
        };
        self.audit.add(
            &mut batch,
            &self.event(
                p,
                &access,
                AuditAction::Grant,
                patient,
                format!("grant/{}", grant.id),
            ),
        )?;
        self.store.submit(batch).await?;
        if let (Some(token), NewGrantee::Person(email)) = (token, &grantee) {
            self.mail_grant_invitation(email, &token, &grant).await?;
        }
        Ok(grant.id)
    }

    async fn mail_grant_invitation(
        &self,
        to: &Email,
        token: &str,
        g: &Grant,
    ) -> Result<(), DomainError> {
        let from_kind = if g.proxy.is_some() {
            "set up by a care organisation"
        } else {
            "a patient"
        };
        let link = self.link(&format!("/invitations/{token}"));
        let days = self.settings.invitation_ttl.whole_days();
        self.send_mail(
            to,
            "You have been invited to see a health record on Keyhold",
            &format!(
                "Someone has invited you to see parts of their health record on Keyhold ({from_kind}).\n\n\
                 Open the link to see who, and what they want to share, before you decide.\n\n\
                 To accept, open this link and sign in (or create an account) with this email address:\n\n\
                 {link}\n\n\
                 The link works once and expires in {} days. If you did not expect this, you can ignore this message.\n",
                days.min((g.ends - self.clock.now()).whole_days().max(1))
            ),
        )
        .await
    }

    /// Changes what a grant allows, or when it ends.
    pub async fn change_grant(
        &self,
        p: &Principal,
        patient: PatientId,
        id: GrantId,
        terms: GrantTerms,
    ) -> Result<(), DomainError> {
        let (raw, mut g) = self.grant_row(patient, id)?;
        let now = self.clock.now();
        let ends = terms.check(now, matches!(g.grantee, Grantee::Organisation { .. }))?;
        let access = self
            .authorize(
                p,
                Action::Share,
                Resource::whole(patient),
                AuditAction::Update,
                "grant",
            )
            .await?;
        if matches!(g.state(now), GrantState::Revoked | GrantState::Expired) {
            return Err(DomainError::invalid(
                "grant",
                "This sharing has ended. Share again to start it afresh",
            ));
        }
        g.permissions = terms.permissions;
        g.categories = terms.categories;
        g.ends = ends;
        g.purpose = terms.purpose.trim().to_string();
        g.version += 1;
        let mut batch = Batch::new();
        batch.require_equals(GRANTS, grant_key(patient, id), Some(raw));
        self.put_grant(&mut batch, &g)?;
        self.audit.add(
            &mut batch,
            &self.event(
                p,
                &access,
                AuditAction::Update,
                patient,
                format!("grant/{id}"),
            ),
        )?;
        self.submit_or_conflict(batch).await
    }

    /// Stops a grant, from this instant.
    pub async fn revoke_grant(
        &self,
        p: &Principal,
        patient: PatientId,
        id: GrantId,
    ) -> Result<(), DomainError> {
        let access = self
            .authorize(
                p,
                Action::Share,
                Resource::whole(patient),
                AuditAction::Revoke,
                "grant",
            )
            .await?;
        let (raw, mut g) = self.grant_row(patient, id)?;
        if g.revoked_at.is_some() {
            return Ok(());
        }
        g.revoked_at = Some(access.now);
        g.version += 1;
        let mut batch = Batch::new();
        batch.require_equals(GRANTS, grant_key(patient, id), Some(raw));
        self.put_grant(&mut batch, &g)?;
        self.audit.add(
            &mut batch,
            &self.event(
                p,
                &access,
                AuditAction::Revoke,
                patient,
                format!("grant/{id}"),
            ),
        )?;
        self.submit_or_conflict(batch).await
    }

    async fn submit_or_conflict(&self, batch: Batch) -> Result<(), DomainError> {
        match self.store.submit(batch).await {
            Ok(_) => Ok(()),
            Err(StorageError::Conflict) => Err(DomainError::Conflict),
            Err(e) => Err(e.into()),
        }
    }

    fn invite(&self, token: &str) -> Result<(Vec<u8>, InviteRowV1), DomainError> {
        let key = sha256(token.as_bytes());
        let raw = self
            .store
            .get(INVITES, &key)?
            .ok_or(DomainError::NotFound)?;
        let row: InviteRowV1 = serde_json::from_slice(&raw)?;
        if row.expires_at <= self.clock.now() {
            return Err(DomainError::NotFound);
        }
        Ok((raw, row))
    }

    /// What an invitation offers, for whoever holds the link. Unknown, used
    /// and expired links all look the same.
    pub async fn invitation(&self, token: &str) -> Result<InvitationView, DomainError> {
        let (_, row) = self.invite(token)?;
        match row.target {
            InviteTarget::Grant { patient, grant } => {
                let (_, g) = self.grant_row(patient, grant)?;
                let Grantee::Invitation { email } = &g.grantee else {
                    return Err(DomainError::NotFound);
                };
                if g.state(self.clock.now()) != GrantState::Pending {
                    return Err(DomainError::NotFound);
                }
                let d = self.patient_name(patient)?;
                self.audit
                    .record(&AuditEvent {
                        at: self.clock.now(),
                        actor: AuditActor::anonymous(),
                        action: AuditAction::Read,
                        patient: Some(patient),
                        resource: format!("invitation/grant/{grant}"),
                        purpose: "opened an invitation link".into(),
                        outcome: Outcome::Success,
                        basis: None,
                    })
                    .await?;
                Ok(InvitationView::Grant {
                    from: self.display_name(g.created_by),
                    patient_name: d,
                    permissions: g.permissions,
                    categories: g.categories.iter().copied().collect(),
                    ends: g.ends,
                    purpose: g.purpose.clone(),
                    invited: mask(email.as_str()),
                })
            }
            InviteTarget::Staff { org, invite: _ } => {
                let role = self.staff_invite_role(&row)?;
                Ok(InvitationView::Staff {
                    org_name: self.organisation_name(org)?,
                    role,
                })
            }
        }
    }

    fn staff_invite_role(&self, row: &InviteRowV1) -> Result<StaffRole, DomainError> {
        let InviteTarget::Staff { org, invite } = row.target else {
            return Err(DomainError::NotFound);
        };
        let raw = self
            .store
            .get(
                crate::trees::STAFF_INVITES,
                &pair(org.as_bytes(), invite.as_bytes()),
            )?
            .ok_or(DomainError::NotFound)?;
        Ok(serde_json::from_slice::<crate::rows::StaffInviteRowV1>(&raw)?.role)
    }

    /// The person's name only (invitations, the carer's list).
    fn patient_name(&self, patient: PatientId) -> Result<String, DomainError> {
        let d = self.load_demographics(patient)?;
        Ok(match d.full_name() {
            n if n.is_empty() => "a Keyhold user".into(),
            n => n,
        })
    }

    /// The signed-in account must hold the address the invitation went to, so
    /// a forwarded link is no use to anyone else.
    pub(crate) fn require_invited_address(
        &self,
        p: &Principal,
        invited: &[u8],
    ) -> Result<(), DomainError> {
        let mine = self.account_email(p.account)?;
        let invited = String::from_utf8_lossy(invited).to_lowercase();
        if constant_time_eq(mine.normalised().as_bytes(), invited.as_bytes()) {
            Ok(())
        } else {
            Err(DomainError::invalid(
                "invitation",
                format!(
                    "This invitation was sent to {}. Sign in with that email address to accept it",
                    mask(&invited)
                ),
            ))
        }
    }

    /// Accepts an invitation for the signed-in account: single use (the token
    /// row is deleted in the same write, on the condition it is unchanged).
    pub async fn accept_invitation(
        &self,
        p: &Principal,
        token: &str,
    ) -> Result<Accepted, DomainError> {
        let (raw, row) = self.invite(token)?;
        let key = sha256(token.as_bytes()).to_vec();
        let mut batch = Batch::new();
        batch.require_equals(INVITES, key.clone(), Some(raw));
        batch.delete(INVITES, key);
        let accepted = match row.target {
            InviteTarget::Grant { patient, grant } => {
                let (graw, mut g) = self.grant_row(patient, grant)?;
                let Grantee::Invitation { email } = &g.grantee else {
                    return Err(DomainError::NotFound);
                };
                if g.state(self.clock.now()) != GrantState::Pending {
                    return Err(DomainError::NotFound);
                }
                self.require_invited_address(p, email.normalised().as_bytes())?;
                if p.own_patient == Some(patient) {
                    return Err(DomainError::invalid(
                        "invitation",
                        "This is an invitation to your own record",
                    ));
                }
                g.grantee = Grantee::Account { account: p.account };
                g.version += 1;
                batch.require_equals(GRANTS, grant_key(patient, grant), Some(graw));
                self.put_grant(&mut batch, &g)?;
                self.audit.add(
                    &mut batch,
                    &AuditEvent {
                        at: self.clock.now(),
                        actor: AuditActor {
                            account: Some(p.account),
                            role: AuditRole::Carer,
                            organisation: None,
                            acting_for: Some(patient),
                        },
                        action: AuditAction::Grant,
                        patient: Some(patient),
                        resource: format!("grant/{grant}"),
                        purpose: "accepted an invitation".into(),
                        outcome: Outcome::Success,
                        basis: Some(crate::audit::AuditBasis::Grant { grant }),
                    },
                )?;
                Accepted::Grant(patient)
            }
            InviteTarget::Staff { org, invite } => {
                self.accept_staff_into(&mut batch, p, org, invite)?;
                Accepted::Staff(org)
            }
        };
        match self.store.submit(batch).await {
            Ok(_) => Ok(accepted),
            // Accepted twice at once: the second finds the token gone.
            Err(StorageError::Conflict) => Err(DomainError::NotFound),
            Err(e) => Err(e.into()),
        }
    }

    /// People whose records this account may open through a grant to it.
    pub async fn cared_for(&self, p: &Principal) -> Result<Vec<CaredFor>, DomainError> {
        let now = self.clock.now();
        let mut out = Vec::new();
        let mut batch = Batch::new();
        for item in self.store.scan(GRANTS_BY_ACCOUNT, p.account.as_bytes()) {
            let (k, _) = item?;
            let (Some(patient), Some(grant)) = (
                PatientId::from_bytes(&k[16..32]),
                GrantId::from_bytes(&k[32..]),
            ) else {
                continue;
            };
            let (_, g) = self.grant_row(patient, grant)?;
            if g.state(now) != GrantState::Active
                || g.grantee != (Grantee::Account { account: p.account })
                || !(g.permissions.read || g.permissions.act_on_behalf || g.permissions.contribute)
            {
                continue;
            }
            let name = self.patient_name(patient)?;
            self.audit.add(
                &mut batch,
                &AuditEvent {
                    at: now,
                    actor: Self::actor(p, Basis::Carer { grant }, patient),
                    action: AuditAction::Read,
                    patient: Some(patient),
                    resource: "name".into(),
                    purpose: "list of people they care for".into(),
                    outcome: Outcome::Success,
                    basis: Some(crate::audit::AuditBasis::Grant { grant }),
                },
            )?;
            out.push(CaredFor {
                patient,
                name,
                permissions: g.permissions,
                categories: g.categories.iter().copied().collect(),
                ends: g.ends,
            });
        }
        if !batch.is_empty() {
            self.store.submit(batch).await?;
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Organisation administrators: sets up proxy access to a patient who
    /// cannot consent (a child, a person who lacks capacity), recording the
    /// legal basis. The carer is invited by email; the patient sees the grant
    /// on their sharing page and can stop it.
    pub async fn set_up_proxy(
        &self,
        p: &Principal,
        org: OrgId,
        req: ProxyRequest,
    ) -> Result<GrantId, DomainError> {
        Self::require_admin(p, org)?;
        let now = self.clock.now();
        let ends = req.terms.check(now, false)?;
        let patient = self
            .patient_by_nhs_number(&req.nhs_number)?
            .ok_or_else(|| {
                DomainError::invalid("nhs-number", "No Keyhold record has this NHS number")
            })?;
        let grant = Grant {
            id: GrantId::new_random(),
            patient,
            grantee: Grantee::Invitation {
                email: req.carer_email.clone(),
            },
            permissions: req.terms.permissions,
            categories: req.terms.categories,
            starts: now,
            ends,
            purpose: req.terms.purpose.trim().to_string(),
            created_by: p.account,
            created_at: now,
            proxy: Some(Proxy {
                org,
                set_up_by: p.account,
                basis: req.basis,
            }),
            revoked_at: None,
            version: 1,
        };
        let mut batch = Batch::new();
        batch.require_absent(GRANTS, grant_key(patient, grant.id));
        self.put_grant(&mut batch, &grant)?;
        let token = self.grant_invite_into(&mut batch, &grant)?;
        self.audit.add(
            &mut batch,
            &AuditEvent {
                at: now,
                actor: Self::admin_actor(p, org),
                action: AuditAction::Grant,
                patient: Some(patient),
                resource: format!("grant/{}", grant.id),
                purpose: format!("proxy: {}", req.basis.label()),
                outcome: Outcome::Success,
                basis: None,
            },
        )?;
        self.store.submit(batch).await?;
        self.mail_grant_invitation(&req.carer_email, &token, &grant)
            .await?;
        Ok(grant.id)
    }

    /// The account's organisations where it is a clinician, with names.
    pub fn clinical_organisations(&self, p: &Principal) -> Vec<(OrgId, String)> {
        p.clinical_orgs()
            .filter_map(|o| self.organisation_name(o).ok().map(|n| (o, n)))
            .collect()
    }

    /// Whether this account has any grant (active or not) naming it: used to
    /// show "People you care for" only to those it concerns.
    pub fn has_grants(&self, account: AccountId) -> Result<bool, DomainError> {
        Ok(self
            .store
            .scan(GRANTS_BY_ACCOUNT, account.as_bytes())
            .next()
            .is_some())
    }
}
