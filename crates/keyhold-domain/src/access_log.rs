//! "Who has seen my record": the patient's view of their audit entries, found
//! through the `audit_by_patient` index, with names and reasons joined in from
//! sealed rows (the audit itself holds only ids and labels).

use std::collections::HashMap;

use serde::Serialize;
use time::{Date, OffsetDateTime};

use crate::audit::{decode, AuditAction, AuditBasis, AuditRole, Outcome};
use crate::policy::{Action, Principal, Resource};
use crate::trees::{AUDIT, AUDIT_BY_PATIENT};
use crate::{AccountId, DomainError, Keyhold, OrgId, PatientId};

/// Narrows the log.
#[derive(Debug, Clone, Default)]
pub struct AccessFilter {
    pub from: Option<Date>,
    pub to: Option<Date>,
    pub who: Option<AccountId>,
}

/// One line of the log.
#[derive(Debug, Clone, Serialize)]
pub struct AccessLogEntry {
    /// Stable and unique: the first 16 bytes of the audit entry's chain hash,
    /// in hex (says nothing the entry does not).
    pub id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// What was done, and how it ended, as the audit holds them.
    pub action: AuditAction,
    pub result: Outcome,
    pub who: String,
    pub account: Option<AccountId>,
    pub role: &'static str,
    pub organisation: Option<String>,
    pub what: String,
    pub why: String,
    pub outcome: &'static str,
    pub break_glass: bool,
    pub carer: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct AccessLog {
    pub entries: Vec<AccessLogEntry>,
    /// Everyone who appears in the whole log, for the "who" filter.
    pub people: Vec<(AccountId, String)>,
}

fn role_label(role: AuditRole) -> &'static str {
    match role {
        AuditRole::Patient => "Patient",
        AuditRole::Carer => "Carer",
        AuditRole::Professional => "Professional",
        AuditRole::OrgAdmin => "Organisation administrator",
        AuditRole::RecordsOfficer => "Records officer",
        AuditRole::Operator => "Service operator",
        AuditRole::Anonymous => "Not signed in",
        AuditRole::System => "Organisation's system",
    }
}

/// A resource reference (`entry/<id>`, `record`) in words.
fn what_label(action: AuditAction, resource: &str) -> String {
    let thing = match resource.split('/').next().unwrap_or("") {
        "record" => "the record",
        "record-export" => "the whole record",
        "demographics" => "personal details",
        "entry" => "an entry",
        "documents" | "documents.zip" => "documents",
        "document" => "a document",
        "grant" | "grants" => "sharing",
        "break-glass" => "emergency access",
        "access-log" => "who has seen the record",
        "name" => "the name",
        "search" => "a search that found the record",
        "questionnaire-assignment" => "a questionnaire",
        "questionnaires" => "questionnaires",
        "invitation" => "an invitation",
        "account" => "the account",
        "feed-client" => "a data feed",
        "access-request" => match resource.split('/').nth(2) {
            Some("disclosure") | Some("disclosure.zip") => "copies of the record (access request)",
            Some("compile") => "the record, for an access request",
            _ => "an access request about the record",
        },
        _ => "the record",
    };
    format!("{} {thing}", action.label())
}

impl Keyhold {
    /// The access log of `patient`, newest first (needs `ReadAccessLog`). Its
    /// own reading is recorded too.
    pub async fn access_log(
        &self,
        p: &Principal,
        patient: PatientId,
        filter: &AccessFilter,
    ) -> Result<AccessLog, DomainError> {
        let access = self
            .authorize(
                p,
                Action::ReadAccessLog,
                Resource::whole(patient),
                AuditAction::Read,
                "access-log",
            )
            .await?;
        let mut names: HashMap<AccountId, String> = HashMap::new();
        let mut orgs: HashMap<String, Option<String>> = HashMap::new();
        // Purposes of every grant, read once: the log joins them by id.
        let purposes: HashMap<_, _> = self
            .grants_of(patient)?
            .into_iter()
            .map(|g| (g.id, g.purpose))
            .collect();
        let mut entries = Vec::new();
        for item in self.store.scan(AUDIT_BY_PATIENT, patient.as_bytes()) {
            let (k, _) = item?;
            let Some(raw) = self.store.get(AUDIT, &k[16..])? else {
                continue;
            };
            let Some(e) = decode(&raw) else {
                continue;
            };
            let ev = e.event;
            if ev.patient != Some(patient) {
                continue;
            }
            let who = match ev.actor.account {
                Some(a) => names
                    .entry(a)
                    .or_insert_with(|| self.display_name(a))
                    .clone(),
                None => role_label(ev.actor.role).to_string(),
            };
            let organisation = ev.actor.organisation.as_ref().and_then(|o| {
                orgs.entry(o.clone())
                    .or_insert_with(|| {
                        o.parse::<OrgId>()
                            .ok()
                            .and_then(|id| self.organisation_name(id).ok())
                    })
                    .clone()
            });
            let date = ev.at.date();
            if filter.from.is_some_and(|f| date < f)
                || filter.to.is_some_and(|t| date > t)
                || filter.who.is_some_and(|w| ev.actor.account != Some(w))
            {
                continue;
            }
            let (why, break_glass) = match ev.basis {
                Some(AuditBasis::BreakGlass { id }) => (
                    format!(
                        "Emergency access: {}",
                        self.break_glass_reason(patient, id)
                            .unwrap_or_else(|_| "reason unavailable".into())
                    ),
                    true,
                ),
                Some(AuditBasis::Grant { grant }) => match purposes.get(&grant) {
                    Some(p) if !p.is_empty() => (format!("Shared: {p}"), false),
                    _ => (capitalise(&ev.purpose), false),
                },
                _ => (
                    capitalise(&ev.purpose),
                    ev.action == AuditAction::BreakGlass,
                ),
            };
            entries.push(AccessLogEntry {
                id: hex::encode(&e.hash[..16]),
                at: ev.at,
                action: ev.action,
                result: ev.outcome,
                who,
                account: ev.actor.account,
                role: role_label(ev.actor.role),
                organisation,
                what: what_label(ev.action, &ev.resource),
                why,
                outcome: match ev.outcome {
                    Outcome::Success => "Allowed",
                    Outcome::Denied => "Refused",
                    Outcome::Failed => "Failed",
                },
                break_glass,
                carer: ev.actor.role == AuditRole::Carer,
            });
        }
        entries.reverse();
        let mut people: Vec<(AccountId, String)> = names.into_iter().collect();
        people.sort_by_key(|p| p.1.to_lowercase());
        self.audit
            .record(&self.event(p, &access, AuditAction::Read, patient, "access-log".into()))
            .await?;
        Ok(AccessLog { entries, people })
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_audited_resource_reads_as_plain_words() {
        assert_eq!(
            what_label(AuditAction::Read, "questionnaire-assignment/abc"),
            format!("{} a questionnaire", AuditAction::Read.label())
        );
        assert_eq!(
            what_label(AuditAction::Read, "search"),
            format!(
                "{} a search that found the record",
                AuditAction::Read.label()
            )
        );
        assert_eq!(
            what_label(AuditAction::Read, "something-new"),
            format!("{} the record", AuditAction::Read.label())
        );
    }
}
