//! The whole record as one Bundle: `Patient/$everything`, and the
//! `record.json` inside the patient's export zip. Entry kinds with no FHIR
//! resource of their own (notes, care network contacts) travel as `Basic`,
//! so an export never silently drops what the patient wrote.

use keyhold_domain::{Demographics, DocumentMeta, Entry, PatientId};
use serde_json::{json, Value};
use time::Date;

use crate::clinical::{entry_resource, recorder, reference};
use crate::ids::resource_id;
use crate::CATEGORY_SYSTEM;

/// Where Keyhold names its entry kinds, for `Basic.code`.
pub const ENTRY_KIND_SYSTEM: &str = "https://keyhold.example/fhir/CodeSystem/entry-kind";

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// An entry kind FHIR has no resource for here, as `Basic` with a narrative.
fn basic(patient: PatientId, e: &Entry) -> Value {
    let mut div = format!("<p><b>{}</b></p>", escape(&e.title));
    for para in e.details.split("\n\n").filter(|p| !p.trim().is_empty()) {
        div.push_str(&format!("<p>{}</p>", escape(para.trim())));
    }
    json!({
        "resourceType": "Basic",
        "id": resource_id(patient, e.id.as_bytes()),
        "meta": { "tag": [{ "system": CATEGORY_SYSTEM, "code": e.category.slug(), "display": e.category.label() }] },
        "text": { "status": "generated", "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{div}</div>") },
        "code": { "coding": [{ "system": ENTRY_KIND_SYSTEM, "code": e.kind.slug(), "display": e.kind.label() }], "text": e.kind.label() },
        "subject": reference(patient),
        "created": e.date.to_string(),
        "author": recorder(&e.source),
    })
}

/// Every entry (as its resource, or `Basic`) and every document's
/// DocumentReference, after the Patient. `attachment_url` says where each
/// document's content is (`Binary/{id}` over the API, a path in a zip).
pub fn everything(
    base: &str,
    bundle_type: &str,
    patient: PatientId,
    demographics: &Demographics,
    entries: &[Entry],
    documents: &[(DocumentMeta, String)],
    today: Date,
) -> Value {
    let mut resources = vec![crate::patient(patient, demographics)];
    resources.extend(
        entries
            .iter()
            .map(|e| entry_resource(patient, e, today).unwrap_or_else(|| basic(patient, e))),
    );
    for (meta, url) in documents {
        let mut d = crate::document_reference(patient, meta);
        d["content"][0]["attachment"]["url"] = url.clone().into();
        resources.push(d);
    }
    let searchset = bundle_type == "searchset";
    let entry: Vec<Value> = resources
        .into_iter()
        .map(|r| {
            let url = format!(
                "{base}/{}/{}",
                r["resourceType"].as_str().unwrap_or_default(),
                r["id"].as_str().unwrap_or_default()
            );
            if searchset {
                json!({ "fullUrl": url, "resource": r, "search": { "mode": "match" } })
            } else {
                json!({ "fullUrl": url, "resource": r })
            }
        })
        .collect();
    let mut bundle = json!({ "resourceType": "Bundle", "type": bundle_type });
    if searchset {
        bundle["total"] = entry.len().into();
        bundle["link"] =
            json!([{ "relation": "self", "url": format!("{base}/Patient/{patient}/$everything") }]);
    }
    bundle["entry"] = entry.into();
    bundle
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use keyhold_domain::{Category, EntryId, EntryKind, Source};
    use time::macros::{date, datetime};

    fn entry(kind: EntryKind, title: &str) -> Entry {
        Entry {
            id: EntryId::new_random(),
            kind,
            title: title.into(),
            date: date!(2024 - 03 - 14),
            end_date: None,
            category: Category::General,
            source: Source::PatientEntered,
            details: "First <para>\n\nSecond & last".into(),
            recorded_at: datetime!(2024-03-14 10:00 UTC),
            contact: None,
        }
    }

    #[test]
    fn a_note_travels_as_basic_with_its_text_escaped() {
        let p = PatientId::new_random();
        let mut d = Demographics::empty();
        d.given_name = "Ann".into();
        let b = everything(
            "https://k.example/fhir/R4",
            "collection",
            p,
            &d,
            &[
                entry(EntryKind::Note, "Knee <sore>"),
                entry(EntryKind::Allergy, "Nuts"),
            ],
            &[],
            date!(2025 - 01 - 01),
        );
        assert_eq!(b["type"], "collection");
        assert!(b.get("total").is_none());
        let types: Vec<_> = b["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["resource"]["resourceType"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(types, ["Patient", "Basic", "AllergyIntolerance"]);
        let div = b["entry"][1]["resource"]["text"]["div"].as_str().unwrap();
        assert!(
            div.contains("Knee &lt;sore&gt;") && div.contains("Second &amp; last"),
            "{div}"
        );
        assert!(!div.contains("<sore>"));
    }
}
