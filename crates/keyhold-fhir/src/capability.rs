//! The CapabilityStatement at `GET /fhir/R4/metadata`: what this server
//! offers. It lists only what is implemented; it grows as the API does.

use serde_json::{json, Value};
use time::OffsetDateTime;

use keyhold_domain::EntryKind;

use crate::{resource_type, FHIR_VERSION};

/// Patient is read by id; the record's entries are searched by patient.
fn resources() -> Value {
    let mut list = vec![json!({
        "type": "Patient",
        "profile": "http://hl7.org/fhir/StructureDefinition/Patient",
        "interaction": [{ "code": "read" }],
    })];
    for kind in EntryKind::ALL {
        if let Some(t) = resource_type(kind) {
            list.push(json!({
                "type": t,
                "profile": format!("http://hl7.org/fhir/StructureDefinition/{t}"),
                "interaction": [{ "code": "search-type" }],
                "searchParam": [
                    { "name": "patient", "type": "reference", "documentation": "Required: whose record" },
                    { "name": "date", "type": "date", "documentation": "ge, le, gt, lt or eq a YYYY-MM-DD date; repeat for a range" },
                    { "name": "_tag", "type": "token", "documentation": "a Keyhold category (general, mental_health, sexual_health, social_care, restricted)" },
                    { "name": "_count", "type": "number", "documentation": "page size, 1 to 100 (default 50)" },
                ],
            }));
        }
    }
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
}
