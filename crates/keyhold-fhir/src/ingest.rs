//! Transaction Bundles from organisations' systems, read into feed items.
//!
//! Strict about what it reads (a field of the wrong JSON type, a date that is
//! not a day, an unknown category or resource type refuses the item) and
//! silent about elements it does not use. Every problem is collected, with the
//! entry it is in, so the system learns everything wrong in one reply; if
//! there is any, nothing is written.

use keyhold_domain::feeds::{BusinessId, FeedItem, FeedSubject, MAX_BATCH_ENTRIES};
use keyhold_domain::{Category, NewEntry, NhsNumber, PatientId};
use serde_json::{json, Value};
use time::Date;

use crate::clinical::{kind_of, CATEGORY_SYSTEM};
use crate::NHS_NUMBER_SYSTEM;

/// The resource types a feed may post.
pub const INGESTIBLE: [&str; 7] = [
    "AllergyIntolerance",
    "Condition",
    "MedicationStatement",
    "Immunization",
    "Encounter",
    "Appointment",
    "CarePlan",
];

/// One item of a transaction, with the type it came as (for the response).
#[derive(Debug)]
pub struct Posted {
    pub resource_type: &'static str,
    pub item: FeedItem,
}

/// A problem with the Bundle (`entry: None`) or one of its entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub entry: Option<usize>,
    pub message: String,
}

impl Problem {
    /// Where in the Bundle, as a FHIRPath expression.
    pub fn expression(&self) -> String {
        match self.entry {
            Some(i) => format!("Bundle.entry[{i}]"),
            None => "Bundle".into(),
        }
    }
}

/// Where each type keeps what an entry needs.
struct Shape {
    subject: &'static str,
    /// Paths tried in order for the title; a CodeableConcept gives its text or
    /// first coding's display.
    title: &'static [&'static str],
    date: &'static [&'static str],
    end: &'static [&'static str],
    details: &'static [&'static str],
}

fn shape(resource_type: &str) -> Option<Shape> {
    Some(match resource_type {
        "AllergyIntolerance" => Shape {
            subject: "patient",
            title: &["code"],
            date: &["onsetDateTime", "recordedDate"],
            end: &[],
            details: &["note.0.text"],
        },
        "Condition" => Shape {
            subject: "subject",
            title: &["code"],
            date: &["onsetDateTime", "recordedDate"],
            end: &["abatementDateTime"],
            details: &["note.0.text"],
        },
        "MedicationStatement" => Shape {
            subject: "subject",
            title: &["medicationCodeableConcept"],
            date: &["effectivePeriod.start", "effectiveDateTime", "dateAsserted"],
            end: &["effectivePeriod.end"],
            details: &["note.0.text"],
        },
        "Immunization" => Shape {
            subject: "patient",
            title: &["vaccineCode"],
            date: &["occurrenceDateTime", "recorded"],
            end: &[],
            details: &["note.0.text"],
        },
        "Encounter" => Shape {
            subject: "subject",
            title: &["type.0", "serviceType", "reasonCode.0"],
            date: &["period.start"],
            end: &["period.end"],
            details: &[],
        },
        "Appointment" => Shape {
            subject: "participant",
            title: &["description", "serviceType.0", "appointmentType"],
            date: &["start"],
            end: &[],
            details: &["comment"],
        },
        "CarePlan" => Shape {
            subject: "subject",
            title: &["title", "category.0"],
            date: &["period.start", "created"],
            end: &["period.end"],
            details: &["description", "note.0.text"],
        },
        _ => return None,
    })
}

/// The value at a dotted path (`a.0.b`); `Ok(None)` when absent.
fn at<'v>(v: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.')
        .try_fold(v, |v, step| match step.parse::<usize>() {
            Ok(i) => v.get(i),
            Err(_) => v.get(step),
        })
}

fn string_at(v: &Value, path: &str) -> Result<Option<String>, String> {
    match at(v, path) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("{path} must be a string")),
    }
}

/// Text of a string or a CodeableConcept.
fn text_at(v: &Value, path: &str) -> Result<Option<String>, String> {
    match at(v, path) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(c @ Value::Object(_)) => {
            if let Some(t) = string_at(c, "text")? {
                return Ok(Some(t));
            }
            string_at(c, "coding.0.display").map_err(|_| format!("{path}.coding must hold Codings"))
        }
        Some(_) => Err(format!("{path} must be a string or a CodeableConcept")),
    }
}

/// The day of a FHIR date or dateTime; a year or month alone is not a day.
fn day(s: &str) -> Option<Date> {
    let d = s.get(..10)?;
    if s.len() > 10 && !s[10..].starts_with('T') {
        return None;
    }
    Date::parse(d, time::macros::format_description!("[year]-[month]-[day]")).ok()
}

fn first_day(v: &Value, paths: &[&str]) -> Result<Option<Date>, String> {
    for p in paths {
        if let Some(s) = string_at(v, p)? {
            return day(&s)
                .map(Some)
                .ok_or_else(|| format!("{p} must be a date like 2024-03-14"));
        }
    }
    Ok(None)
}

/// A reference to the patient: by NHS number (an identifier, or a conditional
/// `Patient?identifier=` reference) or by Keyhold's own `Patient/{id}`.
fn subject(reference: &Value) -> Result<FeedSubject, String> {
    let nhs = |digits: &str| {
        NhsNumber::parse(digits)
            .map(FeedSubject::NhsNumber)
            .map_err(|_| "the patient's NHS number is not valid".to_string())
    };
    if let Some(id) = reference.get("identifier") {
        let system = string_at(id, "system")?;
        let value = string_at(id, "value")?;
        return match (system.as_deref(), value) {
            (Some(NHS_NUMBER_SYSTEM), Some(v)) => nhs(&v),
            _ => Err(format!(
                "the patient's identifier must be an NHS number ({NHS_NUMBER_SYSTEM})"
            )),
        };
    }
    let Some(r) = string_at(reference, "reference")? else {
        return Err("the patient reference needs an identifier or a reference".into());
    };
    if let Some(q) = r.strip_prefix("Patient?identifier=") {
        let prefix = format!("{NHS_NUMBER_SYSTEM}|");
        return match q.strip_prefix(&prefix) {
            Some(v) => nhs(v),
            None => Err(format!(
                "a conditional patient reference must search by {NHS_NUMBER_SYSTEM}"
            )),
        };
    }
    match r.strip_prefix("Patient/").map(str::parse::<PatientId>) {
        Some(Ok(id)) => Ok(FeedSubject::Patient(id)),
        _ => Err("the patient reference must be Patient/{id} or Patient?identifier=…".into()),
    }
}

fn patient_of(resource: &Value, shape: &Shape) -> Result<FeedSubject, String> {
    if shape.subject == "participant" {
        let list = match resource.get("participant") {
            Some(Value::Array(l)) => l,
            _ => return Err("participant must list the patient".into()),
        };
        let patient = list.iter().find_map(|p| {
            let actor = p.get("actor")?;
            let r = actor.get("reference").and_then(Value::as_str).unwrap_or("");
            let nhs_identifier = actor
                .get("identifier")
                .and_then(|i| i.get("system"))
                .and_then(Value::as_str)
                == Some(NHS_NUMBER_SYSTEM);
            // A clinician may carry an identifier too: only a Patient
            // reference, a Patient type or an NHS number names the patient.
            let is_patient = r.starts_with("Patient/")
                || r.starts_with("Patient?")
                || actor.get("type").and_then(Value::as_str) == Some("Patient")
                || (r.is_empty() && nhs_identifier);
            is_patient.then_some(actor)
        });
        return subject(patient.ok_or("participant must list the patient")?);
    }
    match resource.get(shape.subject) {
        Some(r @ Value::Object(_)) => subject(r),
        Some(_) => Err(format!("{} must be a Reference", shape.subject)),
        None => Err(format!("{} (the patient) is required", shape.subject)),
    }
}

fn category(resource: &Value) -> Result<Category, String> {
    let Some(tags) = at(resource, "meta.tag") else {
        return Ok(Category::General);
    };
    let Value::Array(tags) = tags else {
        return Err("meta.tag must be a list".into());
    };
    for t in tags {
        if string_at(t, "system")?.as_deref() == Some(CATEGORY_SYSTEM) {
            let code = string_at(t, "code")?.unwrap_or_default();
            return Category::parse(&code)
                .ok_or_else(|| format!("{code} is not a Keyhold category"));
        }
    }
    Ok(Category::General)
}

fn identifier(resource: &Value) -> Result<BusinessId, String> {
    let first = match resource.get("identifier") {
        Some(Value::Array(l)) => l.first(),
        Some(_) => return Err("identifier must be a list".into()),
        None => None,
    };
    let first = first.ok_or("identifier (the system's own id for this record) is required")?;
    let system = string_at(first, "system")?.unwrap_or_default();
    let value = string_at(first, "value")?.unwrap_or_default();
    BusinessId::parse(&system, &value)
}

/// The value, or its error noted.
fn keep<T>(errors: &mut Vec<String>, r: Result<T, String>) -> Option<T> {
    r.map_err(|e| errors.push(e)).ok()
}

fn item(entry: &Value) -> Result<(&'static str, FeedItem), Vec<String>> {
    let resource = match entry.get("resource") {
        Some(r @ Value::Object(_)) => r,
        _ => return Err(vec!["resource is required and must be an object".into()]),
    };
    let rtype = match resource.get("resourceType") {
        Some(Value::String(t)) => t.as_str(),
        _ => return Err(vec!["resource.resourceType must be a string".into()]),
    };
    let (Some(name), Some(kind), Some(shape)) = (
        INGESTIBLE.iter().find(|t| **t == rtype).copied(),
        kind_of(rtype),
        shape(rtype),
    ) else {
        return Err(vec![format!(
            "{} is not a type feeds may post (they may post {})",
            rtype.chars().take(64).collect::<String>(),
            INGESTIBLE.join(", ")
        )]);
    };
    let mut errors = Vec::new();
    let method = string_at(entry, "request.method").unwrap_or(None);
    let url = string_at(entry, "request.url").unwrap_or(None);
    match (method.as_deref(), url.as_deref()) {
        (Some("POST" | "PUT"), Some(u)) if u.split(['?', '/']).next() == Some(name) => {}
        _ => errors.push(format!(
            "request must be POST or PUT to {name} (a conditional PUT by identifier updates)"
        )),
    }
    let identifier = keep(&mut errors, identifier(resource));
    let subject = keep(&mut errors, patient_of(resource, &shape));
    let title = keep(
        &mut errors,
        shape
            .title
            .iter()
            .map(|p| text_at(resource, p))
            .find_map(|r| r.transpose())
            .transpose()
            .and_then(|t| t.ok_or_else(|| format!("{} is required", shape.title[0]))),
    );
    let date = keep(
        &mut errors,
        first_day(resource, shape.date)
            .and_then(|d| d.ok_or_else(|| format!("{} is required", shape.date[0]))),
    );
    let end = keep(&mut errors, first_day(resource, shape.end)).flatten();
    let details = keep(
        &mut errors,
        shape
            .details
            .iter()
            .map(|p| string_at(resource, p))
            .find_map(|r| r.transpose())
            .transpose(),
    )
    .flatten();
    let category = keep(&mut errors, category(resource));
    match (identifier, subject, title, date, category) {
        (Some(identifier), Some(subject), Some(title), Some(date), Some(category))
            if errors.is_empty() =>
        {
            Ok((
                name,
                FeedItem {
                    subject,
                    identifier,
                    entry: NewEntry {
                        kind,
                        title,
                        date,
                        end_date: end,
                        category,
                        details: details.unwrap_or_default(),
                    },
                },
            ))
        }
        _ => Err(errors),
    }
}

/// Reads a transaction Bundle; any problem refuses it whole.
pub fn parse_transaction(bundle: &Value) -> Result<Vec<Posted>, Vec<Problem>> {
    let whole = |m: &str| {
        vec![Problem {
            entry: None,
            message: m.to_string(),
        }]
    };
    if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(whole("the body must be a Bundle"));
    }
    if bundle.get("type").and_then(Value::as_str) != Some("transaction") {
        return Err(whole("the Bundle's type must be transaction"));
    }
    let entries = match bundle.get("entry") {
        Some(Value::Array(l)) if !l.is_empty() => l,
        _ => return Err(whole("the Bundle has no entries")),
    };
    if entries.len() > MAX_BATCH_ENTRIES {
        return Err(whole(&format!(
            "a Bundle may hold at most {MAX_BATCH_ENTRIES} entries"
        )));
    }
    let mut posted = Vec::with_capacity(entries.len());
    let mut problems = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        match item(e) {
            Ok((resource_type, item)) => posted.push(Posted {
                resource_type,
                item,
            }),
            Err(errors) => problems.extend(errors.into_iter().map(|message| Problem {
                entry: Some(i),
                message,
            })),
        }
    }
    if problems.is_empty() {
        Ok(posted)
    } else {
        Err(problems)
    }
}

/// The reply to a transaction that was written.
pub fn transaction_response(results: &[(&str, String, u32, bool)]) -> Value {
    let entries: Vec<Value> = results
        .iter()
        .map(|(rtype, id, version, created)| {
            json!({ "response": {
                "status": if *created { "201 Created" } else { "200 OK" },
                "location": format!("{rtype}/{id}/_history/{version}"),
                "etag": format!("W/\"{version}\""),
            }})
        })
        .collect();
    json!({ "resourceType": "Bundle", "type": "transaction-response", "entry": entries })
}

/// An OperationOutcome listing every problem, each with where it is.
pub fn problems_outcome(problems: &[Problem]) -> Value {
    let issues: Vec<Value> = problems
        .iter()
        .take(100)
        .map(|p| {
            json!({
                "severity": "error",
                "code": "invalid",
                "diagnostics": p.message,
                "expression": [p.expression()],
            })
        })
        .collect();
    json!({ "resourceType": "OperationOutcome", "issue": issues })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use keyhold_domain::EntryKind;

    fn condition(id: &str) -> Value {
        json!({
            "fullUrl": "urn:uuid:1",
            "resource": {
                "resourceType": "Condition",
                "identifier": [{ "system": "https://gp.example/conditions", "value": id }],
                "subject": { "identifier": { "system": NHS_NUMBER_SYSTEM, "value": "9990000018" } },
                "code": { "coding": [{ "system": "http://snomed.info/sct", "code": "38341003", "display": "Hypertension" }] },
                "onsetDateTime": "2021-05-04T10:00:00Z",
                "note": [{ "text": "Home readings" }],
                "meta": { "tag": [{ "system": CATEGORY_SYSTEM, "code": "mental_health" }] }
            },
            "request": { "method": "PUT", "url": format!("Condition?identifier=https://gp.example/conditions|{id}") }
        })
    }

    fn bundle(entries: Vec<Value>) -> Value {
        json!({ "resourceType": "Bundle", "type": "transaction", "entry": entries })
    }

    #[test]
    fn a_condition_reads_into_an_item() {
        let got = parse_transaction(&bundle(vec![condition("C1")])).unwrap();
        assert_eq!(got.len(), 1);
        let i = &got[0].item;
        assert_eq!(got[0].resource_type, "Condition");
        assert_eq!(i.entry.kind, EntryKind::Condition);
        assert_eq!(i.entry.title, "Hypertension");
        assert_eq!(i.entry.date.to_string(), "2021-05-04");
        assert_eq!(i.entry.details, "Home readings");
        assert_eq!(i.identifier.value(), "C1");
        assert!(matches!(i.subject, FeedSubject::NhsNumber(_)));
    }

    #[test]
    fn every_problem_is_named_with_its_entry() {
        let mut bad = condition("C2");
        bad["resource"]["code"] = json!(42);
        bad["resource"]["onsetDateTime"] = json!("2021");
        let mut unknown = condition("C3");
        unknown["resource"]["resourceType"] = json!("Observation");
        let err = parse_transaction(&bundle(vec![condition("C1"), bad, unknown])).unwrap_err();
        assert!(
            err.iter().all(|p| p.entry.is_some() && p.entry != Some(0)),
            "{err:?}"
        );
        assert!(
            err.iter().any(|p| p.message.contains("code must be")),
            "{err:?}"
        );
        assert!(err
            .iter()
            .any(|p| p.message.contains("onsetDateTime must be a date")));
        assert!(err
            .iter()
            .any(|p| p.entry == Some(2) && p.message.contains("Observation")));
    }

    #[test]
    fn an_appointment_finds_the_patient_after_a_clinician_with_an_identifier() {
        let a = json!({
            "resource": {
                "resourceType": "Appointment",
                "identifier": [{ "system": "https://gp.example/appts", "value": "AP-1" }],
                "status": "booked",
                "description": "Asthma review",
                "start": "2026-12-01T09:00:00Z",
                "participant": [
                    { "actor": { "reference": "Practitioner/abc", "identifier": { "system": "https://fhir.nhs.uk/Id/sds-user-id", "value": "123456789012" } }, "status": "accepted" },
                    { "actor": { "reference": format!("Patient?identifier={NHS_NUMBER_SYSTEM}|9990000018") }, "status": "accepted" }
                ]
            },
            "request": { "method": "POST", "url": "Appointment" }
        });
        let got = parse_transaction(&bundle(vec![a])).unwrap();
        assert!(
            matches!(got[0].item.subject, FeedSubject::NhsNumber(n) if n.digits() == "9990000018")
        );
    }

    #[test]
    fn not_a_transaction_is_refused_whole() {
        for b in [
            json!({ "resourceType": "Patient" }),
            json!({ "resourceType": "Bundle", "type": "batch", "entry": [condition("x")] }),
            json!({ "resourceType": "Bundle", "type": "transaction", "entry": [] }),
            json!([1, 2]),
        ] {
            let err = parse_transaction(&b).unwrap_err();
            assert_eq!(err[0].entry, None, "{b}");
        }
    }

    #[test]
    fn a_bad_nhs_number_or_category_refuses_the_item() {
        let mut c = condition("C1");
        c["resource"]["subject"]["identifier"]["value"] = json!("9990000019");
        assert!(parse_transaction(&bundle(vec![c])).is_err());
        let mut c = condition("C1");
        c["resource"]["meta"]["tag"][0]["code"] = json!("secret");
        assert!(parse_transaction(&bundle(vec![c])).is_err());
    }
}
