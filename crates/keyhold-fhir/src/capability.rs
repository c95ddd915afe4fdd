//! The CapabilityStatement at `GET /fhir/R4/metadata`: what this server
//! offers. It lists only what is implemented; it grows as the API does.

use serde_json::{json, Value};
use time::OffsetDateTime;

use keyhold_domain::EntryKind;

use crate::{resource_type, FHIR_VERSION};

fn param(name: &str, kind: &str, documentation: &str) -> Value {
    json!({ "name": name, "type": kind, "documentation": documentation })
}

fn patient_param() -> Value {
    param(
        "patient",
        "reference",
        "Required: whose record (an id, or Patient/<id>)",
    )
}

fn date_param(what: &str) -> Value {
    param(
        "date",
        "date",
        &format!("{what}: ge, le, gt, lt or eq a YYYY-MM-DD date; repeat for a range"),
    )
}

fn tag_param() -> Value {
    param(
        "_tag",
        "token",
        "a Keyhold category (general, mental_health, sexual_health, social_care, restricted)",
    )
}

fn paging_params() -> [Value; 2] {
    [
        param("_count", "number", "page size, 1 to 100 (default 50)"),
        param(
            "_offset",
            "number",
            "how many matches to skip (the Bundle's next link sets it)",
        ),
    ]
}

fn resource(t: &str, interactions: &[&str], params: Vec<Value>, documentation: &str) -> Value {
    let mut r = json!({
        "type": t,
        "profile": format!("http://hl7.org/fhir/StructureDefinition/{t}"),
        "documentation": documentation,
        "interaction": interactions.iter().map(|c| json!({ "code": c })).collect::<Vec<_>>(),
    });
    if !params.is_empty() {
        r["searchParam"] = Value::Array(params);
    }
    r
}

/// Every type served, with what may be done with it.
fn resources() -> Value {
    let mut list = vec![resource(
        "Patient",
        &["read"],
        Vec::new(),
        "Demographics; a sensitive record shows only name, NHS number, date of birth and gender to anyone but the patient.",
    )];
    for kind in EntryKind::ALL {
        if let Some(t) = resource_type(kind) {
            let mut params = vec![patient_param(), date_param("the entry's date"), tag_param()];
            params.extend(paging_params());
            list.push(resource(
                t,
                &["read", "search-type"],
                params,
                "Entries of the record; the id is the patient's 32 hex digits followed by the entry's.",
            ));
        }
    }
    let mut params = vec![
        patient_param(),
        date_param("the upload's date"),
        tag_param(),
    ];
    params.extend(paging_params());
    list.push(resource(
        "DocumentReference",
        &["read", "search-type"],
        params,
        "Uploaded and received documents; content.attachment.url is the Binary holding the file.",
    ));
    list.push(resource(
        "Binary",
        &["read"],
        Vec::new(),
        "A document's content: a Binary resource (base64) when application/fhir+json is asked for, otherwise the file itself as an attachment. Each read is audited as a download.",
    ));
    list.push(resource(
        "Questionnaire",
        &["read", "search-type"],
        Vec::new(),
        "The outcome measures Keyhold defines: phq-9 and gad-7.",
    ));
    let mut params = vec![patient_param()];
    params.extend(paging_params());
    list.push(resource(
        "Consent",
        &["search-type"],
        params,
        "The patient's grants; only the patient, or a carer who acts on their behalf, may search them.",
    ));
    let mut params = vec![patient_param(), date_param("when it happened")];
    params.extend(paging_params());
    list.push(resource(
        "AuditEvent",
        &["search-type"],
        params,
        "Who has seen or changed the record, oldest first; only the patient, or a carer who acts on their behalf, may search it.",
    ));
    Value::Array(list)
}

/// `base` is the API's own address (`https://…/fhir/R4`); `software_version`
/// the server's build.
pub fn capability_statement(base: &str, software_version: &str, now: OffsetDateTime) -> Value {
    let date = now.date().to_string();
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": date,
        "publisher": "Keyhold",
        "kind": "instance",
        "software": { "name": "Keyhold", "version": software_version },
        "implementation": {
            "description": "Keyhold personal health record: each read is decided by the patient's consent and audited",
            "url": base,
        },
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "documentation": "Reads answer only what the signed-in person may see under the patient's consent; a record they may not see answers 404, as one that does not exist.",
            "security": {
                "cors": false,
                "description": "A Keyhold session (the browser's session cookie). Every read is audited and shown to the patient.",
            },
            "resource": resources(),
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_what_is_served() {
        let c = capability_statement(
            "http://127.0.0.1:8080/fhir/R4",
            "0.0.0",
            OffsetDateTime::UNIX_EPOCH,
        );
        assert_eq!(c["resourceType"], "CapabilityStatement");
        assert_eq!(c["fhirVersion"], "4.0.1");
        assert_eq!(c["date"], "1970-01-01");
        assert_eq!(c["rest"][0]["resource"][0]["type"], "Patient");
        assert_eq!(
            c["rest"][0]["resource"][0]["interaction"][0]["code"],
            "read"
        );
    }

    #[test]
    fn every_served_type_is_listed_once_with_its_interactions() {
        let c = capability_statement("http://x/fhir/R4", "0.0.0", OffsetDateTime::UNIX_EPOCH);
        let list = c["rest"][0]["resource"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let find = |t: &str| {
            let found: Vec<&Value> = list.iter().filter(|r| r["type"] == t).collect();
            assert_eq!(found.len(), 1, "{t} listed once");
            found[0].clone()
        };
        let codes = |r: &Value| -> Vec<String> {
            r["interaction"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|i| i["code"].as_str().map(String::from))
                .collect()
        };
        for t in [
            "AllergyIntolerance",
            "MedicationStatement",
            "Immunization",
            "Appointment",
            "Encounter",
            "Condition",
            "CarePlan",
            "QuestionnaireResponse",
            "DocumentReference",
            "Questionnaire",
        ] {
            assert_eq!(codes(&find(t)), ["read", "search-type"], "{t}");
        }
        for t in ["Patient", "Binary"] {
            assert_eq!(codes(&find(t)), ["read"], "{t}");
        }
        for t in ["Consent", "AuditEvent"] {
            let r = find(t);
            assert_eq!(codes(&r), ["search-type"], "{t}");
            assert_eq!(r["searchParam"][0]["name"], "patient");
        }
        assert_eq!(list.len(), 14);
    }
}
