//! The six kinds of request and what each asks for: the steps of the form,
//! each step's fields (with which are mandatory) and the document that must
//! come with it. The web layer renders these specs; the domain validates
//! against them, so a field cannot be required on the page and not here.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::{Date, Month};

use crate::{FieldError, NhsNumber};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    /// A person asking for their own records.
    OwnRecords,
    /// Someone asking for a living patient's records with their signed consent.
    ThirdParty,
    /// A solicitor, insurer or the police, with the patient's consent.
    OrganisationWithConsent,
    /// A court or coroner, whose order or authority needs no consent.
    OrganisationNoConsent,
    /// The executor or personal representative of a patient who has died.
    Executor,
    /// Someone else with a claim arising from a patient's death (Access to
    /// Health Records Act 1990).
    NonExecutor,
}

impl RequestKind {
    pub const ALL: [RequestKind; 6] = [
        RequestKind::OwnRecords,
        RequestKind::ThirdParty,
        RequestKind::OrganisationWithConsent,
        RequestKind::OrganisationNoConsent,
        RequestKind::Executor,
        RequestKind::NonExecutor,
    ];

    pub fn slug(self) -> &'static str {
        match self {
            RequestKind::OwnRecords => "own",
            RequestKind::ThirdParty => "third-party",
            RequestKind::OrganisationWithConsent => "organisation-consent",
            RequestKind::OrganisationNoConsent => "organisation-no-consent",
            RequestKind::Executor => "executor",
            RequestKind::NonExecutor => "non-executor",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.slug() == s)
    }

    pub fn label(self) -> &'static str {
        match self {
            RequestKind::OwnRecords => "My own records",
            RequestKind::ThirdParty => "Someone else's records, with their consent",
            RequestKind::OrganisationWithConsent => "An organisation, with the patient's consent",
            RequestKind::OrganisationNoConsent => "A court or coroner (no consent needed)",
            RequestKind::Executor => "A patient who has died: I am the executor",
            RequestKind::NonExecutor => "A patient who has died: I have a claim",
        }
    }

    /// What the list's Type column says.
    pub fn short_label(self) -> &'static str {
        match self {
            RequestKind::OwnRecords => "Own records",
            RequestKind::ThirdParty => "Third party",
            RequestKind::OrganisationWithConsent => "Organisation (consent)",
            RequestKind::OrganisationNoConsent => "Court or coroner",
            RequestKind::Executor => "Executor",
            RequestKind::NonExecutor => "Deceased (claim)",
        }
    }

    pub fn hint(self) -> &'static str {
        match self {
            RequestKind::OwnRecords => "You are the patient. You will need proof of your identity.",
            RequestKind::ThirdParty => {
                "For example a relative. You will need the patient's signed consent."
            }
            RequestKind::OrganisationWithConsent => {
                "A solicitor, insurer or the police. You will need the patient's signed consent form."
            }
            RequestKind::OrganisationNoConsent => {
                "A court or coroner. You will need the order or the legal authority."
            }
            RequestKind::Executor => "You will need proof that you are the executor, such as the grant of probate.",
            RequestKind::NonExecutor => {
                "Under the Access to Health Records Act 1990. You will need evidence of your claim."
            }
        }
    }

    /// The patient has died.
    pub fn deceased(self) -> bool {
        matches!(self, RequestKind::Executor | RequestKind::NonExecutor)
    }

    fn organisation(self) -> bool {
        matches!(
            self,
            RequestKind::OrganisationWithConsent | RequestKind::OrganisationNoConsent
        )
    }

    /// The document that must be uploaded before the request can be sent.
    pub fn required_document(self) -> &'static str {
        match self {
            RequestKind::OwnRecords => "Proof of your identity",
            RequestKind::ThirdParty => "The patient's signed consent",
            RequestKind::OrganisationWithConsent => "The patient's signed consent form",
            RequestKind::OrganisationNoConsent => "The court order or legal authority",
            RequestKind::Executor => "Proof that you are the executor",
            RequestKind::NonExecutor => "Evidence of your claim",
        }
    }

    /// What to say when the required document is missing.
    pub fn missing_document_message(self) -> String {
        let doc = self.required_document();
        let mut c = doc.chars();
        match c.next() {
            Some(f) => format!("Upload {}{}", f.to_lowercase(), c.as_str()),
            None => String::new(),
        }
    }

    pub fn required_document_hint(self) -> &'static str {
        match self {
            RequestKind::OwnRecords => {
                "A photo of your passport or driving licence, or a recent utility bill."
            }
            RequestKind::ThirdParty | RequestKind::OrganisationWithConsent => {
                "Signed and dated by the patient in the last 6 months, naming you."
            }
            RequestKind::OrganisationNoConsent => "The order, or a letter citing the authority.",
            RequestKind::Executor => "The grant of probate, or the will naming you as executor.",
            RequestKind::NonExecutor => "A letter or document that shows your claim.",
        }
    }

    /// The steps of the form, in order, after choosing the kind.
    pub fn steps(self) -> Vec<Step> {
        let mut steps = vec![Step::Patient];
        if self != RequestKind::OwnRecords {
            steps.push(Step::Requester);
        }
        steps.extend([Step::Records, Step::Documents, Step::Check]);
        steps
    }

    /// The fields of one step (none for documents and check).
    pub fn fields(self, step: Step) -> Vec<Field> {
        let own = self == RequestKind::OwnRecords;
        let dead = self.deceased();
        match step {
            Step::Patient => {
                let mut f = vec![
                    Field::text(
                        "patient-given-name",
                        if own {
                            "Your first name"
                        } else {
                            "Patient's first name"
                        },
                        true,
                    ),
                    Field::text(
                        "patient-family-name",
                        if own {
                            "Your last name"
                        } else {
                            "Patient's last name"
                        },
                        true,
                    ),
                    Field::text("patient-former-names", "Any previous names", false)
                        .hint("For example a name before marriage. Leave blank if none."),
                    Field::date("patient-dob", "Date of birth", true)
                        .hint("For example, 31 3 1980"),
                    Field::nhs("patient-nhs-number", "NHS number (if known)").hint(
                        "A 10 digit number, like 943 476 5919. It helps us find the right records.",
                    ),
                ];
                if dead {
                    f.push(
                        Field::date("patient-dod", "Date of death", true)
                            .hint("For example, 2 11 2026"),
                    );
                }
                f.push(Field::textarea(
                    "patient-address",
                    if dead {
                        "Last known address"
                    } else if own {
                        "Your address"
                    } else {
                        "Patient's address"
                    },
                    true,
                ));
                f.push(Field::text("patient-postcode", "Postcode", true).width(10));
                if own {
                    f.push(
                        Field::text("requester-phone", "Phone number (optional)", false).width(20),
                    );
                }
                f
            }
            Step::Requester => {
                let mut f = Vec::new();
                if self.organisation() {
                    f.push(Field::text(
                        "requester-organisation",
                        if self == RequestKind::OrganisationNoConsent {
                            "Court or coroner's office"
                        } else {
                            "Organisation"
                        },
                        true,
                    ));
                    f.push(Field::text("requester-name", "Your name", true));
                    f.push(
                        Field::text("requester-reference", "Your reference (optional)", false)
                            .width(20),
                    );
                } else {
                    f.push(Field::text("requester-name", "Your full name", true));
                    f.push(Field::text(
                        "requester-relationship",
                        "Your relationship to the patient",
                        true,
                    ));
                }
                if self == RequestKind::OrganisationNoConsent {
                    f.push(Field::textarea("requester-authority", "The order or legal authority for the request", true)
                        .hint("For example, an order of the court, or Schedule 5 of the Coroners and Justice Act 2009."));
                }
                if self == RequestKind::NonExecutor {
                    f.push(Field::textarea("requester-claim", "Your claim arising from the patient's death", true)
                        .hint("Under section 3(1)(f) of the Access to Health Records Act 1990, only records relevant to the claim can be disclosed."));
                }
                f.push(Field::textarea("requester-address", "Your address", true));
                f.push(Field::text("requester-phone", "Phone number (optional)", false).width(20));
                f
            }
            Step::Records => vec![
                Field::textarea("records-description", "Which records do you want?", true).hint(
                    "For example: all my GP records, or letters about my knee operation in 2024.",
                ),
                Field::date("records-from", "From (optional)", false)
                    .hint("Leave blank for records from the start."),
                Field::date("records-to", "To (optional)", false)
                    .hint("Leave blank for records up to today."),
            ],
            Step::Documents | Step::Check => Vec::new(),
        }
    }
}

/// One page of the form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Patient,
    Requester,
    Records,
    Documents,
    Check,
}

impl Step {
    pub fn slug(self) -> &'static str {
        match self {
            Step::Patient => "patient",
            Step::Requester => "requester",
            Step::Records => "records",
            Step::Documents => "documents",
            Step::Check => "check",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Step::Patient,
            Step::Requester,
            Step::Records,
            Step::Documents,
            Step::Check,
        ]
        .into_iter()
        .find(|x| x.slug() == s)
    }

    pub fn heading(self, kind: RequestKind) -> &'static str {
        match self {
            Step::Patient if kind == RequestKind::OwnRecords => "About you",
            Step::Patient => "About the patient",
            Step::Requester => "About you",
            Step::Records => "The records you want",
            Step::Documents => "Documents",
            Step::Check => "Check your answers",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    Text,
    Textarea,
    Date,
    NhsNumber,
}

/// One question of the form.
#[derive(Clone, Debug, Serialize)]
pub struct Field {
    pub name: &'static str,
    pub label: &'static str,
    pub hint: &'static str,
    pub kind: FieldType,
    pub required: bool,
    /// The NHS.UK input width class (characters), 0 for full width.
    pub width: u8,
}

const MAX_TEXT: usize = 200;
const MAX_TEXTAREA: usize = 5_000;

impl Field {
    fn new(name: &'static str, label: &'static str, kind: FieldType, required: bool) -> Self {
        Field {
            name,
            label,
            hint: "",
            kind,
            required,
            width: 0,
        }
    }
    fn text(name: &'static str, label: &'static str, required: bool) -> Self {
        Self::new(name, label, FieldType::Text, required)
    }
    fn textarea(name: &'static str, label: &'static str, required: bool) -> Self {
        Self::new(name, label, FieldType::Textarea, required)
    }
    fn date(name: &'static str, label: &'static str, required: bool) -> Self {
        Self::new(name, label, FieldType::Date, required)
    }
    fn nhs(name: &'static str, label: &'static str) -> Self {
        Self::new(name, label, FieldType::NhsNumber, false).width(10)
    }
    fn hint(mut self, hint: &'static str) -> Self {
        self.hint = hint;
        self
    }
    fn width(mut self, w: u8) -> Self {
        self.width = w;
        self
    }

    /// The label without "(optional)" or "(if known)", for error messages
    /// and the check page.
    pub fn short_label(&self) -> &'static str {
        self.label.split(" (").next().unwrap_or(self.label)
    }

    /// The label as the records team reads it: "Your address" is the
    /// patient's or the requester's, by the field.
    pub fn team_label(&self) -> String {
        let short = self.short_label();
        if self.name == "records-description" {
            return "Records wanted".into();
        }
        match short.strip_prefix("Your ") {
            Some(rest) if self.name.starts_with("patient-") => format!("Patient's {rest}"),
            Some(rest) => format!("Requester's {rest}"),
            None => short.to_string(),
        }
    }

    /// Checks what was typed; a date arrives as `name-day`, `name-month`,
    /// `name-year` and is kept as `YYYY-MM-DD`.
    fn read(
        &self,
        form: &BTreeMap<String, String>,
        errors: &mut Vec<FieldError>,
    ) -> Option<String> {
        let get = |n: &str| {
            form.get(n)
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        let lower = self.short_label().to_lowercase();
        match self.kind {
            FieldType::Date => {
                let (d, m, y) = (
                    get(&format!("{}-day", self.name)),
                    get(&format!("{}-month", self.name)),
                    get(&format!("{}-year", self.name)),
                );
                if d.is_empty() && m.is_empty() && y.is_empty() {
                    if self.required {
                        errors.push(FieldError::new(self.name, format!("Enter the {lower}")));
                    }
                    return None;
                }
                match parse_date(&d, &m, &y) {
                    Some(date) => Some(date.to_string()),
                    None => {
                        errors.push(FieldError::new(
                            self.name,
                            format!("The {lower} must be a real date, like 31 3 1980"),
                        ));
                        None
                    }
                }
            }
            _ => {
                let v = get(self.name);
                if v.is_empty() {
                    if self.required {
                        errors.push(FieldError::new(
                            self.name,
                            format!("Enter {}", article(&lower)),
                        ));
                    }
                    return None;
                }
                let max = if self.kind == FieldType::Textarea {
                    MAX_TEXTAREA
                } else {
                    MAX_TEXT
                };
                if v.chars().count() > max {
                    errors.push(FieldError::new(
                        self.name,
                        format!("The {lower} must be {max} characters or fewer"),
                    ));
                    return None;
                }
                if self.kind == FieldType::NhsNumber {
                    return match NhsNumber::parse(&v) {
                        Ok(n) => Some(n.digits()),
                        Err(e) => {
                            errors.push(FieldError::new(self.name, e.to_string()));
                            None
                        }
                    };
                }
                Some(v)
            }
        }
    }
}

/// "Enter your first name", "Enter the patient's address".
fn article(lower: &str) -> String {
    if lower.starts_with("your ") || lower.starts_with("patient's ") || lower.starts_with("which ")
    {
        lower.replacen("patient's", "the patient's", 1)
    } else {
        format!("the {lower}")
    }
}

fn parse_date(d: &str, m: &str, y: &str) -> Option<Date> {
    let day: u8 = d.parse().ok()?;
    let month: u8 = m.parse().ok()?;
    let year: i32 = y.parse().ok()?;
    if !(1900..=2200).contains(&year) {
        return None;
    }
    Date::from_calendar_date(year, Month::try_from(month).ok()?, day).ok()
}

/// Reads one step's fields from a submitted form into `answers` (blank
/// fields removed), or the errors to show. Dates must not be in the future,
/// and a range must run forwards.
pub fn read_step(
    kind: RequestKind,
    step: Step,
    form: &BTreeMap<String, String>,
    today: Date,
    answers: &mut BTreeMap<String, String>,
) -> Result<(), Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut read = BTreeMap::new();
    for field in kind.fields(step) {
        if let Some(v) = field.read(form, &mut errors) {
            if field.kind == FieldType::Date && v.as_str() > today.to_string().as_str() {
                errors.push(FieldError::new(
                    field.name,
                    format!(
                        "The {} must be today or in the past",
                        field.short_label().to_lowercase()
                    ),
                ));
                continue;
            }
            read.insert(field.name.to_string(), v);
        }
    }
    if let (Some(from), Some(to)) = (read.get("records-from"), read.get("records-to")) {
        if from > to {
            errors.push(FieldError::new(
                "records-to",
                "The end date must be on or after the start date",
            ));
        }
    }
    if let (Some(dob), Some(dod)) = (read.get("patient-dob"), read.get("patient-dod")) {
        if dod < dob {
            errors.push(FieldError::new(
                "patient-dod",
                "The date of death must be after the date of birth",
            ));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    for field in kind.fields(step) {
        answers.remove(field.name);
    }
    answers.extend(read);
    Ok(())
}

/// Whether every mandatory field of every step has an answer (a request
/// is sent only then).
pub fn complete(kind: RequestKind, answers: &BTreeMap<String, String>) -> Option<Step> {
    kind.steps().into_iter().find(|s| {
        kind.fields(*s)
            .iter()
            .any(|f| f.required && !answers.contains_key(f.name))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use time::macros::date;

    fn form(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn each_kind_asks_its_own_questions() {
        let names =
            |k: RequestKind, s: Step| -> Vec<&str> { k.fields(s).iter().map(|f| f.name).collect() };
        assert!(!RequestKind::OwnRecords.steps().contains(&Step::Requester));
        assert!(names(RequestKind::Executor, Step::Patient).contains(&"patient-dod"));
        assert!(!names(RequestKind::ThirdParty, Step::Patient).contains(&"patient-dod"));
        assert!(names(RequestKind::NonExecutor, Step::Requester).contains(&"requester-claim"));
        assert!(names(RequestKind::OrganisationNoConsent, Step::Requester)
            .contains(&"requester-authority"));
        assert!(names(RequestKind::OrganisationWithConsent, Step::Requester)
            .contains(&"requester-organisation"));
        assert!(names(RequestKind::ThirdParty, Step::Requester).contains(&"requester-relationship"));
        let docs: std::collections::HashSet<_> = RequestKind::ALL
            .iter()
            .map(|k| k.required_document())
            .collect();
        assert_eq!(docs.len(), 6, "each kind names its own document");
    }

    #[test]
    fn the_records_team_reads_whose_answer_each_is() {
        let label = |k: RequestKind, s: Step, n: &str| {
            k.fields(s)
                .into_iter()
                .find(|f| f.name == n)
                .unwrap()
                .team_label()
        };
        let own = RequestKind::OwnRecords;
        assert_eq!(
            label(own, Step::Patient, "patient-address"),
            "Patient's address"
        );
        assert_eq!(label(own, Step::Patient, "requester-phone"), "Phone number");
        let third = RequestKind::ThirdParty;
        assert_eq!(
            label(third, Step::Requester, "requester-name"),
            "Requester's full name"
        );
        assert_eq!(
            label(third, Step::Patient, "patient-address"),
            "Patient's address"
        );
        assert_eq!(
            label(third, Step::Records, "records-description"),
            "Records wanted"
        );
    }

    #[test]
    fn mandatory_fields_dates_and_nhs_numbers_are_checked() {
        let mut answers = BTreeMap::new();
        let today = date!(2026 - 12 - 04);
        let errs = read_step(
            RequestKind::Executor,
            Step::Patient,
            &form(&[]),
            today,
            &mut answers,
        )
        .unwrap_err();
        let fields: Vec<_> = errs.iter().map(|e| e.field).collect();
        for f in [
            "patient-given-name",
            "patient-family-name",
            "patient-dob",
            "patient-dod",
            "patient-address",
            "patient-postcode",
        ] {
            assert!(fields.contains(&f), "{f} in {fields:?}");
        }
        let good = [
            ("patient-given-name", "Ada"),
            ("patient-family-name", "Lovelace"),
            ("patient-dob-day", "10"),
            ("patient-dob-month", "12"),
            ("patient-dob-year", "1950"),
            ("patient-dod-day", "27"),
            ("patient-dod-month", "11"),
            ("patient-dod-year", "2026"),
            ("patient-address", "1 High Street"),
            ("patient-postcode", "LS1 1AA"),
        ];
        let mut bad = form(&good);
        bad.insert("patient-nhs-number".into(), "943 476 5918".into());
        bad.insert("patient-dob-day".into(), "31".into());
        bad.insert("patient-dob-month".into(), "2".into());
        let errs = read_step(
            RequestKind::Executor,
            Step::Patient,
            &bad,
            today,
            &mut answers,
        )
        .unwrap_err();
        let fields: Vec<_> = errs.iter().map(|e| e.field).collect();
        assert_eq!(fields, ["patient-dob", "patient-nhs-number"]);
        assert!(answers.is_empty(), "nothing kept from a step with errors");
        let mut ok = form(&good);
        ok.insert("patient-nhs-number".into(), "943 476 5919".into());
        read_step(
            RequestKind::Executor,
            Step::Patient,
            &ok,
            today,
            &mut answers,
        )
        .unwrap();
        assert_eq!(answers["patient-dob"], "1950-12-10");
        assert_eq!(answers["patient-nhs-number"], "9434765919");
        assert_eq!(
            complete(RequestKind::Executor, &answers),
            Some(Step::Requester)
        );
    }

    #[test]
    fn a_range_runs_forwards_and_not_into_the_future() {
        let mut answers = BTreeMap::new();
        let today = date!(2026 - 12 - 04);
        let f = form(&[
            ("records-description", "All"),
            ("records-from-day", "1"),
            ("records-from-month", "1"),
            ("records-from-year", "2026"),
            ("records-to-day", "1"),
            ("records-to-month", "1"),
            ("records-to-year", "2025"),
        ]);
        let errs = read_step(
            RequestKind::OwnRecords,
            Step::Records,
            &f,
            today,
            &mut answers,
        )
        .unwrap_err();
        assert_eq!(errs[0].field, "records-to");
        let f = form(&[
            ("records-description", "All"),
            ("records-to-day", "1"),
            ("records-to-month", "1"),
            ("records-to-year", "2027"),
        ]);
        let errs = read_step(
            RequestKind::OwnRecords,
            Step::Records,
            &f,
            today,
            &mut answers,
        )
        .unwrap_err();
        assert_eq!(errs[0].field, "records-to");
    }
}
