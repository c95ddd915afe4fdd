//! The CapabilityStatement at `GET /fhir/R4/metadata`: what this server
//! offers. It lists only what is implemented; it grows as the API does.

use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::FHIR_VERSION;

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
            "resource": [{
                "type": "Patient",
                "profile": "http://hl7.org/fhir/StructureDefinition/Patient",
                "interaction": [{ "code": "read" }],
            }],
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
