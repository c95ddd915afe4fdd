//! AuditEvent: one line of a patient's access log ("who has seen my record"),
//! as the domain returns it to someone allowed to read that log. The log holds
//! names, roles and reasons already joined in; this only shapes them.

use keyhold_domain::audit::{AuditAction, Outcome};
use keyhold_domain::{AccessLogEntry, PatientId};
use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;

use crate::clinical::reference;

/// C, R, U, D or E (execute: anything that is not a change to a resource).
pub fn action_code(a: AuditAction) -> &'static str {
    match a {
        AuditAction::Create | AuditAction::Grant | AuditAction::SignUp => "C",
        AuditAction::Read | AuditAction::Export | AuditAction::Disclose => "R",
        AuditAction::Update | AuditAction::Revoke => "U",
        AuditAction::Delete | AuditAction::Erase => "D",
        AuditAction::SignIn
        | AuditAction::SignInFailed
        | AuditAction::SignOut
        | AuditAction::BreakGlass
        | AuditAction::KeyRotation
        | AuditAction::VerifyIdentity => "E",
    }
}

/// 0 success, 4 minor failure (refused), 8 serious failure.
pub fn outcome_code(o: Outcome) -> &'static str {
    match o {
        Outcome::Success => "0",
        Outcome::Denied => "4",
        Outcome::Failed => "8",
    }
}

/// One access-log line about `patient`.
pub fn audit_event(patient: PatientId, e: &AccessLogEntry) -> Value {
    let mut r = Map::new();
    r.insert("resourceType".into(), "AuditEvent".into());
    r.insert("id".into(), e.id.clone().into());
    r.insert(
        "type".into(),
        json!({
            "system": "http://dicom.nema.org/resources/ontology/DCM",
            "code": "110110",
            "display": "Patient Record",
        }),
    );
    r.insert("action".into(), action_code(e.action).into());
    r.insert(
        "recorded".into(),
        e.at.format(&Rfc3339).unwrap_or_default().into(),
    );
    r.insert("outcome".into(), outcome_code(e.result).into());
    r.insert("outcomeDesc".into(), e.outcome.into());
    if !e.why.trim().is_empty() {
        let mut why = Map::new();
        if e.break_glass {
            why.insert(
                "coding".into(),
                json!([{
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
                    "code": "ETREAT",
                    "display": "Emergency Treatment",
                }]),
            );
        }
        why.insert("text".into(), e.why.trim().into());
        r.insert("purposeOfEvent".into(), json!([why]));
    }
    let mut agents = vec![json!({
        "role": [{ "text": e.role }],
        "who": { "display": e.who },
        "requestor": true,
    })];
    if let Some(org) = &e.organisation {
        agents.push(json!({
            "role": [{ "text": "Organisation" }],
            "who": { "type": "Organization", "display": org },
            "requestor": false,
        }));
    }
    r.insert("agent".into(), Value::Array(agents));
    r.insert(
        "source".into(),
        json!({ "observer": { "display": "Keyhold" } }),
    );
    r.insert(
        "entity".into(),
        json!([{ "what": reference(patient), "description": e.what }]),
    );
    Value::Object(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn line() -> AccessLogEntry {
        AccessLogEntry {
            id: "00112233445566778899aabbccddeeff".into(),
            at: datetime!(2025-05-02 08:30 UTC),
            action: AuditAction::Read,
            result: Outcome::Success,
            who: "Dr Imran Haque".into(),
            account: None,
            role: "Professional",
            organisation: Some("Riverside Medical Practice".into()),
            what: "Viewed the record".into(),
            why: "Shared: My GP practice".into(),
            outcome: "Allowed",
            break_glass: false,
            carer: false,
        }
    }

    #[test]
    fn a_line_is_a_patient_record_event_with_its_agent_and_outcome() {
        let p = PatientId::new_random();
        let a = audit_event(p, &line());
        assert_eq!(a["resourceType"], "AuditEvent");
        assert_eq!(a["type"]["code"], "110110");
        assert_eq!(a["action"], "R");
        assert_eq!(a["recorded"], "2025-05-02T08:30:00Z");
        assert_eq!(a["outcome"], "0");
        assert_eq!(a["agent"][0]["who"]["display"], "Dr Imran Haque");
        assert_eq!(a["agent"][0]["requestor"], true);
        assert_eq!(a["agent"][0]["role"][0]["text"], "Professional");
        assert_eq!(
            a["agent"][1]["who"]["display"],
            "Riverside Medical Practice"
        );
        assert_eq!(a["source"]["observer"]["display"], "Keyhold");
        assert_eq!(a["entity"][0]["what"]["reference"], format!("Patient/{p}"));
        assert_eq!(a["purposeOfEvent"][0]["text"], "Shared: My GP practice");
        assert!(a["purposeOfEvent"][0].get("coding").is_none());
    }

    #[test]
    fn refusals_failures_and_emergencies_say_so() {
        let p = PatientId::new_random();
        let mut l = line();
        l.result = Outcome::Denied;
        l.break_glass = true;
        l.action = AuditAction::BreakGlass;
        let a = audit_event(p, &l);
        assert_eq!(a["outcome"], "4");
        assert_eq!(a["action"], "E");
        assert_eq!(a["purposeOfEvent"][0]["coding"][0]["code"], "ETREAT");
        l.result = Outcome::Failed;
        assert_eq!(audit_event(p, &l)["outcome"], "8");
        for (action, code) in [
            (AuditAction::Create, "C"),
            (AuditAction::Export, "R"),
            (AuditAction::Update, "U"),
            (AuditAction::Revoke, "U"),
            (AuditAction::Delete, "D"),
            (AuditAction::SignIn, "E"),
        ] {
            assert_eq!(action_code(action), code, "{action:?}");
        }
    }
}
