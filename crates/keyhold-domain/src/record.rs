//! The contents of a patient's record: demographics and entries. These are the
//! plaintext shapes; they exist only in memory and are sealed before storage.

use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};

use crate::{Category, Email, EntryId, NhsNumber, OrgId};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Gender {
    Female,
    Male,
    Other,
    Unknown,
}

impl Gender {
    pub fn label(&self) -> &'static str {
        match self {
            Gender::Female => "Female",
            Gender::Male => "Male",
            Gender::Other => "Other",
            Gender::Unknown => "Not known",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmergencyContact {
    pub name: String,
    pub relationship: String,
    pub phone: String,
}

/// Who a person is. Sealed as one value under the patient's data key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Demographics {
    pub given_name: String,
    pub family_name: String,
    pub date_of_birth: Option<Date>,
    pub gender: Gender,
    pub nhs_number: Option<NhsNumber>,
    pub address_lines: Vec<String>,
    pub postcode: String,
    pub phones: Vec<String>,
    pub email: Option<Email>,
    pub gp_practice: String,
    pub ethnicity: String,
    pub languages: Vec<String>,
    pub interpreter_needed: bool,
    pub religion: String,
    pub marital_status: String,
    pub disabilities: Vec<String>,
    pub lives_alone: Option<bool>,
    pub aliases: Vec<String>,
    pub emergency_contacts: Vec<EmergencyContact>,
    /// Set when the person has died: the banner shows the age at death.
    pub date_of_death: Option<Date>,
    /// A sensitive record shows only name, NHS number, date of birth and gender
    /// outside the patient's own view.
    pub sensitive: bool,
}

impl Demographics {
    /// The shell a new self-registered account starts with.
    pub fn empty() -> Self {
        Demographics {
            given_name: String::new(),
            family_name: String::new(),
            date_of_birth: None,
            gender: Gender::Unknown,
            nhs_number: None,
            address_lines: Vec::new(),
            postcode: String::new(),
            phones: Vec::new(),
            email: None,
            gp_practice: String::new(),
            ethnicity: String::new(),
            languages: Vec::new(),
            interpreter_needed: false,
            religion: String::new(),
            marital_status: String::new(),
            disabilities: Vec::new(),
            lives_alone: None,
            aliases: Vec::new(),
            emergency_contacts: Vec::new(),
            date_of_death: None,
            sensitive: false,
        }
    }

    /// What others see of a sensitive record: who it is, nothing about where
    /// they are or how to reach them.
    pub fn redacted(self) -> Self {
        Demographics {
            given_name: self.given_name,
            family_name: self.family_name,
            date_of_birth: self.date_of_birth,
            gender: self.gender,
            nhs_number: self.nhs_number,
            date_of_death: self.date_of_death,
            sensitive: true,
            ..Demographics::empty()
        }
    }

    pub fn full_name(&self) -> String {
        let n = format!("{} {}", self.given_name, self.family_name);
        n.trim().to_string()
    }

    /// Age in whole years on `on` (or at death, if earlier).
    pub fn age_on(&self, on: Date) -> Option<u32> {
        let dob = self.date_of_birth?;
        let until = match self.date_of_death {
            Some(d) if d < on => d,
            _ => on,
        };
        let mut years = until.year() - dob.year();
        if (until.month() as u8, until.day()) < (dob.month() as u8, dob.day()) {
            years -= 1;
        }
        u32::try_from(years).ok()
    }
}

/// The kinds of entry a record holds (documents are held apart, with their files).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    Encounter,
    Appointment,
    Medication,
    Allergy,
    Immunisation,
    Condition,
    CarePlan,
    CareContact,
    QuestionnaireResponse,
    Note,
}

impl EntryKind {
    pub const ALL: [EntryKind; 10] = [
        EntryKind::Encounter,
        EntryKind::Appointment,
        EntryKind::Medication,
        EntryKind::Allergy,
        EntryKind::Immunisation,
        EntryKind::Condition,
        EntryKind::CarePlan,
        EntryKind::CareContact,
        EntryKind::QuestionnaireResponse,
        EntryKind::Note,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.slug() == s)
    }

    pub fn slug(&self) -> &'static str {
        match self {
            EntryKind::Encounter => "encounter",
            EntryKind::Appointment => "appointment",
            EntryKind::Medication => "medication",
            EntryKind::Allergy => "allergy",
            EntryKind::Immunisation => "immunisation",
            EntryKind::Condition => "condition",
            EntryKind::CarePlan => "care_plan",
            EntryKind::CareContact => "care_contact",
            EntryKind::QuestionnaireResponse => "questionnaire_response",
            EntryKind::Note => "note",
        }
    }

    /// Singular, for a form's select.
    pub fn label(&self) -> &'static str {
        match self {
            EntryKind::Encounter => "Event or encounter",
            EntryKind::Appointment => "Appointment",
            EntryKind::Medication => "Medication",
            EntryKind::Allergy => "Allergy",
            EntryKind::Immunisation => "Immunisation",
            EntryKind::Condition => "Condition",
            EntryKind::CarePlan => "Care plan",
            EntryKind::CareContact => "Care network contact",
            EntryKind::QuestionnaireResponse => "Questionnaire response",
            EntryKind::Note => "Note",
        }
    }

    /// Plural, for a section heading.
    pub fn heading(&self) -> &'static str {
        match self {
            EntryKind::Encounter => "Events and encounters",
            EntryKind::Appointment => "Appointments",
            EntryKind::Medication => "Medications",
            EntryKind::Allergy => "Allergies",
            EntryKind::Immunisation => "Immunisations",
            EntryKind::Condition => "Conditions",
            EntryKind::CarePlan => "Care plans",
            EntryKind::CareContact => "Care network",
            EntryKind::QuestionnaireResponse => "Questionnaires and outcome measures",
            EntryKind::Note => "Your notes",
        }
    }
}

/// Where an entry came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Source {
    PatientEntered,
    Organisation {
        name: String,
        /// The Keyhold organisation that contributed it, when it is one (feeds
        /// and professionals); absent for history imported by name only.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        org: Option<OrgId>,
    },
}

impl Source {
    /// The organisation that keeps reading what it contributed (see `policy`).
    pub fn org(&self) -> Option<OrgId> {
        match self {
            Source::Organisation { org, .. } => *org,
            Source::PatientEntered => None,
        }
    }

    pub fn label(&self) -> String {
        match self {
            Source::PatientEntered => "Patient entered".to_string(),
            Source::Organisation { name, .. } => name.clone(),
        }
    }
}

/// Whether a care network contact looks after the person professionally or
/// is someone in their life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContactKind {
    Professional,
    Personal,
}

impl ContactKind {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "professional" => Some(ContactKind::Professional),
            "personal" => Some(ContactKind::Personal),
            _ => None,
        }
    }

    pub fn slug(&self) -> &'static str {
        match self {
            ContactKind::Professional => "professional",
            ContactKind::Personal => "personal",
        }
    }
}

/// How a care network contact fits in and how to reach them. The entry's
/// title is their name; its details are free notes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactDetails {
    pub kind: ContactKind,
    /// A professional's role ("District nurse"), or a person's relationship
    /// ("Daughter").
    pub role: String,
    /// Where a professional works; empty for a personal contact.
    #[serde(default)]
    pub organisation: String,
    #[serde(default)]
    pub phone: String,
    #[serde(default)]
    pub email: Option<Email>,
}

/// One entry. `version` counts updates; it is bound into the seal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub id: EntryId,
    pub kind: EntryKind,
    pub title: String,
    pub date: Date,
    pub end_date: Option<Date>,
    pub category: Category,
    pub source: Source,
    pub details: String,
    #[serde(with = "time::serde::rfc3339")]
    pub recorded_at: OffsetDateTime,
    /// Set on care network contacts added with their role and how to reach
    /// them (older contacts carry these in their title and details).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<ContactDetails>,
}

/// What a person types to add an entry, before it has an id and a time.
#[derive(Clone, Debug)]
pub struct NewEntry {
    pub kind: EntryKind,
    pub title: String,
    pub date: Date,
    pub end_date: Option<Date>,
    pub category: Category,
    pub details: String,
}

/// Limits that keep a record's entries readable and the store bounded.
pub const MAX_TITLE_CHARS: usize = 200;
pub const MAX_DETAILS_CHARS: usize = 20_000;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn age_counts_birthdays_and_stops_at_death() {
        let mut d = Demographics::empty();
        d.date_of_birth = Some(date!(1980 - 05 - 12));
        assert_eq!(d.age_on(date!(2026 - 05 - 11)), Some(45));
        assert_eq!(d.age_on(date!(2026 - 05 - 12)), Some(46));
        d.date_of_death = Some(date!(2020 - 01 - 01));
        assert_eq!(d.age_on(date!(2026 - 05 - 12)), Some(39));
    }

    #[test]
    fn entry_kinds_round_trip() {
        for k in EntryKind::ALL {
            assert_eq!(EntryKind::parse(k.slug()), Some(k));
        }
        assert_eq!(EntryKind::parse("document"), None);
    }
}
