//! A professional's person search: by NHS number (optionally with date of
//! birth), or by name and date of birth. It looks only among people whose
//! consent covers the professional's organisation now; nothing else is
//! searched, so a search can never widen what a professional sees. A record
//! that exists but is not shared is reported only for an exact NHS number,
//! so that emergency access (break-glass) can be offered for it.

use time::Date;

use crate::audit::{AuditAction, AuditEvent, Outcome};
use crate::policy::{decide, Action, Basis, Principal, Resource};
use crate::{Demographics, DomainError, Gender, Keyhold, NhsNumber, OrgId, PatientId};

/// The most people one search lists; past this, the page asks for more detail.
pub const MAX_RESULTS: usize = 25;

/// What a professional typed, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PersonQuery {
    NhsNumber {
        nhs: NhsNumber,
        date_of_birth: Option<Date>,
    },
    /// Every word of `name` must begin a word of the person's given name,
    /// family name or another name they are known by (case-insensitive).
    Name { name: String, date_of_birth: Date },
}

/// One person found, as the professional may see them: a sensitive record
/// shows name, NHS number, date of birth and gender only.
#[derive(Debug, Clone)]
pub struct PersonMatch {
    pub patient: PatientId,
    pub name: String,
    pub nhs_number: Option<NhsNumber>,
    pub date_of_birth: Option<Date>,
    pub gender: Gender,
    pub sensitive: bool,
    pub date_of_death: Option<Date>,
    /// Empty for a sensitive record.
    pub postcode: String,
}

#[derive(Debug, Clone)]
pub enum SearchOutcome {
    /// People whose consent covers the organisation (possibly none). `more`
    /// says the list was cut at [`MAX_RESULTS`].
    Found {
        people: Vec<PersonMatch>,
        more: bool,
    },
    /// An exact NHS number (and date of birth, if given) names a record that
    /// is not shared with the organisation: emergency access may be offered.
    NotShared { patient: PatientId },
    /// No Keyhold record has this NHS number.
    NoRecord,
}

fn words(s: &str) -> Vec<String> {
    s.split(|c: char| c.is_whitespace() || c == '-' || c == '\'' || c == ',')
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Whether every word typed begins some word the person is known by.
fn name_matches(d: &Demographics, typed: &str) -> bool {
    let typed = words(typed);
    if typed.is_empty() {
        return false;
    }
    let mut known = words(&d.given_name);
    known.extend(words(&d.family_name));
    for alias in &d.aliases {
        known.extend(words(alias));
    }
    typed
        .iter()
        .all(|t| known.iter().any(|k| k.starts_with(t.as_str())))
}

impl PersonMatch {
    fn of(patient: PatientId, d: &Demographics) -> Self {
        PersonMatch {
            patient,
            name: d.full_name(),
            nhs_number: d.nhs_number,
            date_of_birth: d.date_of_birth,
            gender: d.gender,
            sensitive: d.sensitive,
            date_of_death: d.date_of_death,
            postcode: if d.sensitive {
                String::new()
            } else {
                d.postcode.clone()
            },
        }
    }
}

impl Keyhold {
    /// Whether `p` may read `patient`'s record through `org` now (a grant to
    /// the organisation, or emergency access opened for it). Unaudited: the
    /// caller audits what it shows.
    fn readable_through(
        &self,
        p: &Principal,
        org: OrgId,
        patient: PatientId,
    ) -> Result<Option<Basis>, DomainError> {
        let consent = self.consent_state(patient)?;
        Ok(
            match decide(
                p,
                Action::Read,
                &Resource::whole(patient),
                &consent.facts(),
                self.clock.now(),
            ) {
                crate::policy::Decision::Allow(basis) if basis.org() == Some(org) => Some(basis),
                _ => None,
            },
        )
    }

    /// Searches for a person on behalf of `org`. Only an active clinical
    /// member of `org` may search; anyone else gets "not found". Every
    /// person listed is audited as found by a search (the patient sees it in
    /// their access log), and so is a lookup of an NHS number that is not
    /// shared.
    pub async fn search_people(
        &self,
        p: &Principal,
        org: OrgId,
        query: &PersonQuery,
    ) -> Result<SearchOutcome, DomainError> {
        if !p.clinical_orgs().any(|o| o == org) {
            return Err(DomainError::NotFound);
        }
        match query {
            PersonQuery::NhsNumber { nhs, date_of_birth } => {
                let Some(patient) = self.patient_by_nhs_number(nhs)? else {
                    self.audit_search(p, org, None, "looked up an NHS number")
                        .await?;
                    return Ok(SearchOutcome::NoRecord);
                };
                let d = self.load_demographics(patient)?;
                if date_of_birth.is_some() && d.date_of_birth != *date_of_birth {
                    self.audit_search(p, org, None, "looked up an NHS number")
                        .await?;
                    return Ok(SearchOutcome::Found {
                        people: Vec::new(),
                        more: false,
                    });
                }
                match self.readable_through(p, org, patient)? {
                    Some(basis) => {
                        let seen = Self::as_seen(d, basis);
                        self.audit_search(p, org, Some(patient), "found by NHS number")
                            .await?;
                        Ok(SearchOutcome::Found {
                            people: vec![PersonMatch::of(patient, &seen)],
                            more: false,
                        })
                    }
                    None => {
                        self.audit_search(
                            p,
                            org,
                            Some(patient),
                            "looked up an NHS number (not shared)",
                        )
                        .await?;
                        Ok(SearchOutcome::NotShared { patient })
                    }
                }
            }
            PersonQuery::Name {
                name,
                date_of_birth,
            } => {
                let mut people = Vec::new();
                let mut more = false;
                for patient in self.patients_sharing_with(org)? {
                    let Some(basis) = self.readable_through(p, org, patient)? else {
                        continue;
                    };
                    let d = self.load_demographics(patient)?;
                    if d.date_of_birth != Some(*date_of_birth) || !name_matches(&d, name) {
                        continue;
                    }
                    if people.len() == MAX_RESULTS {
                        more = true;
                        break;
                    }
                    people.push(PersonMatch::of(patient, &Self::as_seen(d, basis)));
                }
                people.sort_by_key(|a| a.name.to_lowercase());
                for m in &people {
                    self.audit_search(p, org, Some(m.patient), "found by name and date of birth")
                        .await?;
                }
                if people.is_empty() {
                    self.audit_search(p, org, None, "searched by name and date of birth")
                        .await?;
                }
                Ok(SearchOutcome::Found { people, more })
            }
        }
    }

    async fn audit_search(
        &self,
        p: &Principal,
        org: OrgId,
        patient: Option<PatientId>,
        purpose: &str,
    ) -> Result<(), DomainError> {
        let mut actor = Self::refused_actor(p);
        actor.organisation = Some(org.to_string());
        self.audit
            .record(&AuditEvent {
                at: self.clock.now(),
                actor,
                action: AuditAction::Read,
                patient,
                resource: "search".into(),
                purpose: purpose.into(),
                outcome: if patient.is_some() {
                    Outcome::Success
                } else {
                    Outcome::Failed
                },
                basis: None,
            })
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(given: &str, family: &str, aliases: &[&str]) -> Demographics {
        let mut d = Demographics::empty();
        d.given_name = given.into();
        d.family_name = family.into();
        d.aliases = aliases.iter().map(|s| s.to_string()).collect();
        d
    }

    #[test]
    fn names_match_by_word_prefixes_in_any_order() {
        let d = person("Mary-Jane", "O'Connor", &["Mary Smith"]);
        assert!(name_matches(&d, "mary o'connor"));
        assert!(name_matches(&d, "O'CONNOR"));
        assert!(name_matches(&d, "conn jane"));
        assert!(name_matches(&d, "smith"));
        assert!(name_matches(&d, "Jan"));
        assert!(!name_matches(&d, "connors"));
        assert!(!name_matches(&d, "mary jones"));
        assert!(!name_matches(&d, "   "));
        assert!(!name_matches(&d, "onnor"));
    }
}
