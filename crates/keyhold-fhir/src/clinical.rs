//! A record's entries as FHIR resources, one type per entry kind, and the
//! searchset Bundle that carries them. Each resource says who recorded it
//! (the organisation, or the patient) and its Keyhold category as a tag.
//!
//! Ids: an entry's id is unique only within its patient, so a resource's `id`
//! is the patient's 32 hex digits followed by the entry's (see `ids`); it is
//! read by that id or found by search (`?patient=`).

use keyhold_domain::{Entry, EntryKind, PatientId, Source};
use serde_json::{json, Map, Value};
use time::Date;

use crate::ids::resource_id;

/// Where Keyhold's categories are named, for `meta.tag`.
pub const CATEGORY_SYSTEM: &str = "https://keyhold.example/fhir/CodeSystem/category";

/// The FHIR type that carries an entry kind, for the kinds the API serves.
pub fn resource_type(kind: EntryKind) -> Option<&'static str> {
    Some(match kind {
        EntryKind::Allergy => "AllergyIntolerance",
        EntryKind::Medication => "MedicationStatement",
        EntryKind::Immunisation => "Immunization",
        EntryKind::Appointment => "Appointment",
        EntryKind::Encounter => "Encounter",
        EntryKind::Condition => "Condition",
        EntryKind::CarePlan => "CarePlan",
        EntryKind::QuestionnaireResponse => "QuestionnaireResponse",
        EntryKind::CareContact | EntryKind::Note => return None,
    })
}

/// The entry kind a FHIR type name stands for.
pub fn kind_of(resource_type: &str) -> Option<EntryKind> {
    EntryKind::ALL
        .into_iter()
        .find(|k| self::resource_type(*k) == Some(resource_type))
}

pub(crate) fn reference(patient: PatientId) -> Value {
    json!({ "reference": format!("Patient/{patient}") })
}

pub(crate) fn concept(text: &str) -> Value {
    json!({ "text": text })
}

/// The organisation that recorded something, or the patient, by name.
pub(crate) fn recorder(source: &Source) -> Value {
    match source {
        Source::PatientEntered => json!({ "display": "Patient entered" }),
        Source::Organisation { name, .. } => json!({ "display": name }),
    }
}

fn period(start: Date, end: Option<Date>) -> Value {
    let mut p = Map::new();
    p.insert("start".into(), start.to_string().into());
    if let Some(e) = end {
        p.insert("end".into(), e.to_string().into());
    }
    Value::Object(p)
}

/// An entry as its FHIR resource; `None` for kinds the API does not serve.
pub fn entry_resource(patient: PatientId, e: &Entry, today: Date) -> Option<Value> {
    let kind = resource_type(e.kind)?;
    let mut r = Map::new();
    r.insert("resourceType".into(), kind.into());
    r.insert("id".into(), resource_id(patient, e.id.as_bytes()).into());
    r.insert(
        "meta".into(),
        json!({ "tag": [{ "system": CATEGORY_SYSTEM, "code": e.category.slug(), "display": e.category.label() }] }),
    );
    let note = (!e.details.trim().is_empty()).then(|| json!([{ "text": e.details.trim() }]));
    let date = e.date.to_string();
    let subject = reference(patient);
    match e.kind {
        EntryKind::Allergy => {
            r.insert("patient".into(), subject);
            r.insert("code".into(), concept(&e.title));
            r.insert("onsetDateTime".into(), date.into());
            r.insert("recorder".into(), recorder(&e.source));
        }
        EntryKind::Condition => {
            r.insert("subject".into(), subject);
            r.insert("code".into(), concept(&e.title));
            r.insert("onsetDateTime".into(), date.into());
            if let Some(end) = e.end_date {
                r.insert("abatementDateTime".into(), end.to_string().into());
            }
            r.insert("recorder".into(), recorder(&e.source));
        }
        EntryKind::Medication => {
            let over = e.end_date.is_some_and(|end| end < today);
            r.insert(
                "status".into(),
                if over { "completed" } else { "active" }.into(),
            );
            r.insert("medicationCodeableConcept".into(), concept(&e.title));
            r.insert("subject".into(), subject);
            r.insert("effectivePeriod".into(), period(e.date, e.end_date));
            r.insert("informationSource".into(), recorder(&e.source));
        }
        EntryKind::Immunisation => {
            r.insert("status".into(), "completed".into());
            r.insert("vaccineCode".into(), concept(&e.title));
            r.insert("patient".into(), subject);
            r.insert("occurrenceDateTime".into(), date.into());
            r.insert(
                "performer".into(),
                json!([{ "actor": recorder(&e.source) }]),
            );
        }
        EntryKind::Encounter => {
            r.insert("status".into(), "finished".into());
            r.insert(
                "class".into(),
                json!({ "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory" }),
            );
            r.insert("type".into(), json!([concept(&e.title)]));
            r.insert("subject".into(), subject);
            r.insert("period".into(), period(e.date, e.end_date));
            r.insert("serviceProvider".into(), recorder(&e.source));
            // Encounter has no `note` element in R4: the details stay out.
            return Some(Value::Object(r));
        }
        EntryKind::Appointment => {
            let status = if e.date < today {
                "fulfilled"
            } else {
                "booked"
            };
            r.insert("status".into(), status.into());
            r.insert("description".into(), e.title.clone().into());
            r.insert("start".into(), format!("{date}T00:00:00Z").into());
            r.insert(
                "participant".into(),
                json!([
                    { "actor": subject, "status": "accepted" },
                    { "actor": recorder(&e.source), "status": "accepted" },
                ]),
            );
            if let Some(n) = note {
                r.insert("comment".into(), n[0]["text"].clone());
            }
            return Some(Value::Object(r));
        }
        EntryKind::CarePlan => {
            // Over once its end date has passed; until then it is running.
            let over = e.end_date.is_some_and(|end| end < today);
            r.insert(
                "status".into(),
                if over { "completed" } else { "active" }.into(),
            );
            r.insert("intent".into(), "plan".into());
            r.insert("title".into(), e.title.clone().into());
            if let Some(n) = note {
                r.insert("description".into(), n[0]["text"].clone());
            }
            r.insert("subject".into(), subject);
            r.insert("period".into(), period(e.date, e.end_date));
            r.insert("author".into(), recorder(&e.source));
            return Some(Value::Object(r));
        }
        EntryKind::QuestionnaireResponse => {
            // Keyhold holds a response as its title (which measure) and its
            // details (the score, in words): one item carries both.
            r.insert("status".into(), "completed".into());
            r.insert("subject".into(), subject);
            r.insert("authored".into(), date.into());
            r.insert("author".into(), recorder(&e.source));
            let mut item = Map::new();
            item.insert("linkId".into(), "1".into());
            item.insert("text".into(), e.title.clone().into());
            if let Some(n) = note {
                item.insert("answer".into(), json!([{ "valueString": n[0]["text"] }]));
            }
            r.insert("item".into(), json!([item]));
            return Some(Value::Object(r));
        }
        EntryKind::CareContact | EntryKind::Note => return None,
    }
    if let Some(n) = note {
        r.insert("note".into(), n);
    }
    Some(Value::Object(r))
}

/// A searchset Bundle of `resources`, with the search's own URL as `self`.
pub fn searchset(self_url: &str, resources: Vec<Value>, base: &str) -> Value {
    let entries: Vec<Value> = resources
        .into_iter()
        .map(|r| {
            let url = format!(
                "{base}/{}/{}",
                r["resourceType"].as_str().unwrap_or_default(),
                r["id"].as_str().unwrap_or_default()
            );
            json!({ "fullUrl": url, "resource": r, "search": { "mode": "match" } })
        })
        .collect();
    json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "total": entries.len(),
        "link": [{ "relation": "self", "url": self_url }],
        "entry": entries,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use keyhold_domain::{Category, EntryId};
    use time::macros::{date, datetime};

    fn entry(kind: EntryKind) -> Entry {
        Entry {
            id: EntryId::new_random(),
            kind,
            title: "Penicillin".into(),
            date: date!(2024 - 03 - 14),
            end_date: None,
            category: Category::General,
            source: Source::Organisation {
                name: "Riverside Medical Practice".into(),
                org: None,
            },
            details: "Rash".into(),
            recorded_at: datetime!(2024-03-14 10:00 UTC),
            contact: None,
        }
    }

    #[test]
    fn every_served_kind_maps_to_its_type_and_back() {
        let p = PatientId::new_random();
        for kind in EntryKind::ALL {
            let r = entry_resource(p, &entry(kind), date!(2025 - 01 - 01));
            match resource_type(kind) {
                Some(t) => {
                    let r = r.unwrap();
                    assert_eq!(r["resourceType"], t);
                    assert_eq!(kind_of(t), Some(kind));
                    assert_eq!(r["meta"]["tag"][0]["code"], "general");
                    assert!(r.to_string().contains(&format!("Patient/{p}")), "{r}");
                }
                None => assert!(r.is_none()),
            }
        }
    }

    #[test]
    fn an_entry_is_named_by_its_patient_and_its_own_id() {
        let p = PatientId::new_random();
        let e = entry(EntryKind::Condition);
        let r = entry_resource(p, &e, date!(2025 - 01 - 01)).unwrap();
        assert_eq!(
            r["id"],
            format!("{}{}", p.uuid().simple(), e.id.uuid().simple())
        );
        let bundle = searchset(
            "http://x/fhir/R4/Condition?patient=p",
            vec![r.clone()],
            "http://x/fhir/R4",
        );
        assert_eq!(
            bundle["entry"][0]["fullUrl"],
            format!("http://x/fhir/R4/Condition/{}", r["id"].as_str().unwrap())
        );
    }

    #[test]
    fn a_care_plan_runs_until_its_end_date_and_a_response_carries_its_text() {
        let p = PatientId::new_random();
        let mut c = entry(EntryKind::CarePlan);
        c.title = "Care and support plan".into();
        c.end_date = Some(date!(2024 - 09 - 14));
        let r = entry_resource(p, &c, date!(2024 - 09 - 14)).unwrap();
        assert_eq!(r["status"], "active");
        assert_eq!(r["intent"], "plan");
        assert_eq!(r["title"], "Care and support plan");
        assert_eq!(r["description"], "Rash");
        assert_eq!(r["period"]["start"], "2024-03-14");
        assert_eq!(r["period"]["end"], "2024-09-14");
        assert_eq!(r["author"]["display"], "Riverside Medical Practice");
        assert_eq!(r["subject"]["reference"], format!("Patient/{p}"));
        let r = entry_resource(p, &c, date!(2024 - 09 - 15)).unwrap();
        assert_eq!(r["status"], "completed");

        let mut q = entry(EntryKind::QuestionnaireResponse);
        q.title = "PHQ-9 depression score".into();
        q.details = "Score 7 of 27: mild.".into();
        let r = entry_resource(p, &q, date!(2025 - 01 - 01)).unwrap();
        assert_eq!(r["status"], "completed");
        assert_eq!(r["authored"], "2024-03-14");
        assert_eq!(r["item"][0]["text"], "PHQ-9 depression score");
        assert_eq!(
            r["item"][0]["answer"][0]["valueString"],
            "Score 7 of 27: mild."
        );
        q.details = " ".into();
        let r = entry_resource(p, &q, date!(2025 - 01 - 01)).unwrap();
        assert!(r["item"][0].get("answer").is_none(), "{r}");
    }

    #[test]
    fn a_medication_that_ended_is_completed_and_a_future_appointment_booked() {
        let p = PatientId::new_random();
        let mut m = entry(EntryKind::Medication);
        m.end_date = Some(date!(2024 - 04 - 01));
        assert_eq!(
            entry_resource(p, &m, date!(2025 - 01 - 01)).unwrap()["status"],
            "completed"
        );
        assert_eq!(
            entry_resource(p, &m, date!(2024 - 03 - 20)).unwrap()["status"],
            "active"
        );
        let a = entry(EntryKind::Appointment);
        assert_eq!(
            entry_resource(p, &a, date!(2024 - 01 - 01)).unwrap()["status"],
            "booked"
        );
        assert_eq!(
            entry_resource(p, &a, date!(2025 - 01 - 01)).unwrap()["status"],
            "fulfilled"
        );
    }
}
