//! Break-glass: emergency access without a grant. A clinician gives a reason;
//! access lasts `Settings::break_glass_duration`; the audit marks every read
//! made under it; the patient is emailed; the organisation's administrators
//! have a report of every use. It never shows the restricted category (see
//! `policy`).

use keyhold_storage::Batch;
use serde::Serialize;
use time::OffsetDateTime;

use crate::audit::{AuditAction, AuditActor, AuditBasis, AuditEvent, AuditRole, Outcome};
use crate::consent::BreakGlass;
use crate::ids::KeyOwner;
use crate::policy::Principal;
use crate::rows::BreakGlassRowV1;
use crate::trees::{pair, BREAK_GLASS, BREAK_GLASS_BY_ORG};
use crate::vault::Aad;
use crate::{BreakGlassId, DomainError, FieldError, Keyhold, OrgId, PatientId};

pub const MIN_REASON_CHARS: usize = 10;
pub const MAX_REASON_CHARS: usize = 500;

/// One use, as the organisation's report shows it.
#[derive(Debug, Clone, Serialize)]
pub struct BreakGlassUse {
    pub id: BreakGlassId,
    pub professional: String,
    pub patient_name: String,
    pub nhs_number: String,
    pub reason: String,
    #[serde(with = "time::serde::rfc3339")]
    pub opened_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

impl Keyhold {
    fn break_glass_row(patient: PatientId, id: BreakGlassId, row: &BreakGlassRowV1) -> BreakGlass {
        BreakGlass {
            id,
            patient,
            account: row.account,
            org: row.org,
            opened_at: row.opened_at,
            expires_at: row.expires_at,
        }
    }

    /// Every break-glass use on `patient` (no policy: internal callers decide).
    pub(crate) fn break_glass_of(
        &self,
        patient: PatientId,
    ) -> Result<Vec<BreakGlass>, DomainError> {
        let mut out = Vec::new();
        for item in self.store.scan(BREAK_GLASS, patient.as_bytes()) {
            let (k, v) = item?;
            let row: BreakGlassRowV1 = serde_json::from_slice(&v)?;
            if let Some(id) = BreakGlassId::from_bytes(&k[16..]) {
                out.push(Self::break_glass_row(patient, id, &row));
            }
        }
        Ok(out)
    }

    /// The reason given for one use (sealed with the patient's record).
    pub(crate) fn break_glass_reason(
        &self,
        patient: PatientId,
        id: BreakGlassId,
    ) -> Result<String, DomainError> {
        let raw = self
            .store
            .get(BREAK_GLASS, &pair(patient.as_bytes(), id.as_bytes()))?
            .ok_or(DomainError::NotFound)?;
        let row: BreakGlassRowV1 = serde_json::from_slice(&raw)?;
        let dek = self.vault.key(KeyOwner::Patient(patient))?;
        let plain = self
            .vault
            .open(&dek, &Aad::break_glass(patient, &id), &row.reason)?;
        Ok(String::from_utf8_lossy(&plain).into_owned())
    }

    /// Opens emergency access for a clinician of `org`, with a reason.
    pub async fn break_glass(
        &self,
        p: &Principal,
        org: OrgId,
        patient: PatientId,
        reason: &str,
    ) -> Result<BreakGlass, DomainError> {
        if !p.clinical_orgs().any(|o| o == org) {
            return Err(DomainError::NotFound);
        }
        let reason = reason.trim();
        let n = reason.chars().count();
        if n < MIN_REASON_CHARS {
            return Err(DomainError::Invalid(vec![FieldError::new(
                "reason",
                format!(
                    "Give the reason for emergency access, at least {MIN_REASON_CHARS} characters"
                ),
            )]));
        }
        if n > MAX_REASON_CHARS {
            return Err(DomainError::Invalid(vec![FieldError::new(
                "reason",
                format!("The reason must be {MAX_REASON_CHARS} characters or fewer"),
            )]));
        }
        let demographics = self.load_demographics(patient)?;
        let now = self.clock.now();
        let id = BreakGlassId::new_random();
        let dek = self.vault.key(KeyOwner::Patient(patient))?;
        let row = BreakGlassRowV1 {
            account: p.account,
            org,
            opened_at: now,
            expires_at: now + self.settings.break_glass_duration,
            reason: self
                .vault
                .seal(&dek, &Aad::break_glass(patient, &id), reason.as_bytes())?,
        };
        let mut batch = Batch::new();
        let key = pair(patient.as_bytes(), id.as_bytes());
        batch.require_absent(BREAK_GLASS, key.clone());
        batch.put(BREAK_GLASS, key, serde_json::to_vec(&row)?);
        batch.put(
            BREAK_GLASS_BY_ORG,
            pair(org.as_bytes(), id.as_bytes()),
            patient.as_bytes().to_vec(),
        );
        self.audit.add(
            &mut batch,
            &AuditEvent {
                at: now,
                actor: AuditActor {
                    account: Some(p.account),
                    role: AuditRole::Professional,
                    organisation: Some(org.to_string()),
                    acting_for: None,
                },
                action: AuditAction::BreakGlass,
                patient: Some(patient),
                resource: format!("break-glass/{id}"),
                purpose: "emergency access".into(),
                outcome: Outcome::Success,
                basis: Some(AuditBasis::BreakGlass { id }),
            },
        )?;
        self.store.submit(batch).await?;
        let bg = Self::break_glass_row(patient, id, &row);
        // The patient is told; a failed mail is logged, not allowed to stop
        // care in an emergency (the audit entry is already durable).
        if let Some(email) = &demographics.email {
            let org_name = self.organisation_name(org)?;
            let sent = self
                .send_mail(
                    email,
                    "Your health record was opened in an emergency",
                    &format!(
                        "Someone at {org_name} used emergency access to open your Keyhold health record.\n\n\
                         Emergency access is for when care cannot wait for your consent. It lasts {} minutes and is recorded.\n\n\
                         To see who opened your record and the reason they gave, sign in to Keyhold and go to \"Who has seen my record\":\n\n{}\n",
                        self.settings.break_glass_duration.whole_minutes(),
                        self.link("/record/access")
                    ),
                )
                .await;
            if let Err(e) = sent {
                tracing::error!(error = %e, break_glass = %id, "could not email the patient about emergency access");
            }
        } else {
            tracing::warn!(break_glass = %id, "patient has no email address: not told of emergency access by mail");
        }
        Ok(bg)
    }

    /// Administrators: every break-glass use by the organisation's people,
    /// newest first. Reading it is audited against each patient named.
    pub async fn break_glass_report(
        &self,
        p: &Principal,
        org: OrgId,
    ) -> Result<Vec<BreakGlassUse>, DomainError> {
        Self::require_admin(p, org)?;
        let now = self.clock.now();
        let mut out = Vec::new();
        let mut batch = Batch::new();
        for item in self.store.scan(BREAK_GLASS_BY_ORG, org.as_bytes()) {
            let (k, v) = item?;
            let (Some(id), Some(patient)) = (
                BreakGlassId::from_bytes(&k[16..]),
                PatientId::from_bytes(&v),
            ) else {
                continue;
            };
            let raw = self
                .store
                .get(BREAK_GLASS, &pair(patient.as_bytes(), id.as_bytes()))?
                .ok_or_else(|| DomainError::Internal("break-glass index without its row".into()))?;
            let row: BreakGlassRowV1 = serde_json::from_slice(&raw)?;
            let d = self.load_demographics(patient)?;
            out.push(BreakGlassUse {
                id,
                professional: self.display_name(row.account),
                patient_name: d.full_name(),
                nhs_number: d.nhs_number.map(|n| n.to_string()).unwrap_or_default(),
                reason: self.break_glass_reason(patient, id)?,
                opened_at: row.opened_at,
                expires_at: row.expires_at,
            });
            self.audit.add(
                &mut batch,
                &AuditEvent {
                    at: now,
                    actor: Self::admin_actor(p, org),
                    action: AuditAction::Read,
                    patient: Some(patient),
                    resource: format!("break-glass/{id}"),
                    purpose: "reviewed emergency access".into(),
                    outcome: Outcome::Success,
                    basis: None,
                },
            )?;
        }
        if !batch.is_empty() {
            self.store.submit(batch).await?;
        }
        out.sort_by_key(|u| std::cmp::Reverse(u.opened_at));
        Ok(out)
    }
}
