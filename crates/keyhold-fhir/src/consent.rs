//! Consent: a patient's grants, as the domain returns them to someone allowed
//! to manage that patient's sharing (the patient, or a carer who acts on their
//! behalf). One grant is one opt-in privacy consent that permits one grantee
//! some actions on some categories for a period.

use keyhold_domain::consent::{GrantState, Grantee};
use keyhold_domain::GrantView;
use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::clinical::reference;
use crate::ids::resource_id;
use crate::CATEGORY_SYSTEM;

/// The extension that carries the purpose the patient stated, in their words
/// (FHIR's `provision.purpose` is a coded PurposeOfUse, not free text).
pub const PURPOSE_EXTENSION: &str =
    "https://keyhold.example/fhir/StructureDefinition/grant-purpose";

const ACTION_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/consentaction";

fn instant(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// Pending (an invitation not yet accepted, or a start still to come) is
/// proposed; revoked is rejected (the patient, who executes the consent,
/// withdrew it); expired is inactive (it ran its term).
fn status(s: GrantState) -> &'static str {
    match s {
        GrantState::Pending => "proposed",
        GrantState::Active => "active",
        GrantState::Revoked => "rejected",
        GrantState::Expired => "inactive",
    }
}

/// One grant as a Consent.
pub fn consent(v: &GrantView) -> Value {
    let g = &v.grant;
    let patient = g.patient;
    let mut actions = Vec::new();
    if g.permissions.read {
        actions.push(json!({ "coding": [{ "system": ACTION_SYSTEM, "code": "access", "display": "Access" }] }));
    }
    if g.permissions.contribute {
        actions.push(json!({ "coding": [{ "system": ACTION_SYSTEM, "code": "collect", "display": "Collect" }] }));
    }
    if g.permissions.act_on_behalf {
        // No code fits: manage sharing and read the access log for them.
        actions.push(json!({ "text": "Act on the patient's behalf" }));
    }
    let labels: Vec<Value> = g
        .categories
        .iter()
        .map(|c| json!({ "system": CATEGORY_SYSTEM, "code": c.slug(), "display": c.label() }))
        .collect();
    // Stopped early: the period ends when it was stopped.
    let end = match g.revoked_at {
        Some(r) if r < g.ends => r,
        _ => g.ends,
    };
    let actor_type = match g.grantee {
        Grantee::Organisation { .. } => "Organization",
        Grantee::Account { .. } | Grantee::Invitation { .. } => "RelatedPerson",
    };
    let mut c = Map::new();
    c.insert("resourceType".into(), "Consent".into());
    c.insert("id".into(), resource_id(patient, g.id.as_bytes()).into());
    if !g.purpose.trim().is_empty() {
        c.insert(
            "extension".into(),
            json!([{ "url": PURPOSE_EXTENSION, "valueString": g.purpose.trim() }]),
        );
    }
    c.insert("status".into(), status(v.state).into());
    c.insert(
        "scope".into(),
        json!({ "coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/consentscope",
            "code": "patient-privacy",
            "display": "Privacy Consent",
        }]}),
    );
    c.insert(
        "category".into(),
        json!([{ "coding": [{ "system": "http://loinc.org", "code": "59284-0", "display": "Patient Consent" }] }]),
    );
    c.insert("patient".into(), reference(patient));
    c.insert("dateTime".into(), instant(g.created_at).into());
    // Who agreed: the patient, or the organisation that set up a proxy.
    let performer = match &v.proxy_org {
        Some(org) => json!({ "type": "Organization", "display": org }),
        None => reference(patient),
    };
    c.insert("performer".into(), json!([performer]));
    c.insert(
        "policyRule".into(),
        json!({ "coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": "OPTIN",
            "display": "opt-in",
        }]}),
    );
    let mut provision = Map::new();
    provision.insert("type".into(), "permit".into());
    provision.insert(
        "period".into(),
        json!({ "start": instant(g.starts), "end": instant(end) }),
    );
    provision.insert(
        "actor".into(),
        json!([{
            "role": { "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                "code": "IRCP",
                "display": "information recipient",
            }]},
            "reference": { "type": actor_type, "display": v.grantee_label },
        }]),
    );
    if !actions.is_empty() {
        provision.insert("action".into(), Value::Array(actions));
    }
    if !labels.is_empty() {
        provision.insert("securityLabel".into(), Value::Array(labels));
    }
    c.insert("provision".into(), Value::Object(provision));
    Value::Object(c)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use keyhold_domain::consent::{Grant, Permissions};
    use keyhold_domain::{AccountId, Category, GrantId, PatientId};
    use time::macros::datetime;

    fn view(state: GrantState) -> GrantView {
        GrantView {
            grant: Grant {
                id: GrantId::new_random(),
                patient: PatientId::new_random(),
                grantee: Grantee::Account {
                    account: AccountId::new_random(),
                },
                permissions: Permissions {
                    read: true,
                    contribute: true,
                    act_on_behalf: false,
                },
                categories: [Category::General, Category::SocialCare]
                    .into_iter()
                    .collect(),
                starts: datetime!(2025-01-01 09:00 UTC),
                ends: datetime!(2026-01-01 00:00 UTC),
                purpose: "Helps me with appointments".into(),
                created_by: AccountId::new_random(),
                created_at: datetime!(2025-01-01 09:00 UTC),
                proxy: None,
                revoked_at: None,
                version: 1,
            },
            state,
            grantee_label: "Sam Reid".into(),
            grantee_kind: "person",
            proxy_org: None,
        }
    }

    #[test]
    fn a_grant_is_an_opt_in_permit_for_its_grantee() {
        let v = view(GrantState::Active);
        let c = consent(&v);
        let p = v.grant.patient;
        assert_eq!(c["resourceType"], "Consent");
        assert_eq!(c["id"], resource_id(p, v.grant.id.as_bytes()));
        assert_eq!(c["status"], "active");
        assert_eq!(c["scope"]["coding"][0]["code"], "patient-privacy");
        assert_eq!(c["category"][0]["coding"][0]["code"], "59284-0");
        assert_eq!(c["patient"]["reference"], format!("Patient/{p}"));
        assert_eq!(c["policyRule"]["coding"][0]["code"], "OPTIN");
        let pr = &c["provision"];
        assert_eq!(pr["type"], "permit");
        assert_eq!(pr["period"]["start"], "2025-01-01T09:00:00Z");
        assert_eq!(pr["period"]["end"], "2026-01-01T00:00:00Z");
        assert_eq!(pr["actor"][0]["reference"]["display"], "Sam Reid");
        assert_eq!(pr["action"][0]["coding"][0]["code"], "access");
        assert_eq!(pr["action"][1]["coding"][0]["code"], "collect");
        let labels: Vec<&str> = pr["securityLabel"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["code"].as_str().unwrap())
            .collect();
        assert_eq!(labels, ["general", "social_care"]);
        assert_eq!(c["extension"][0]["url"], PURPOSE_EXTENSION);
        assert_eq!(
            c["extension"][0]["valueString"],
            "Helps me with appointments"
        );
    }

    #[test]
    fn each_state_has_its_status_and_a_revoked_grant_ends_when_stopped() {
        for (s, want) in [
            (GrantState::Pending, "proposed"),
            (GrantState::Active, "active"),
            (GrantState::Revoked, "rejected"),
            (GrantState::Expired, "inactive"),
        ] {
            assert_eq!(consent(&view(s))["status"], want);
        }
        let mut v = view(GrantState::Revoked);
        v.grant.revoked_at = Some(datetime!(2025-02-03 12:00 UTC));
        assert_eq!(
            consent(&v)["provision"]["period"]["end"],
            "2025-02-03T12:00:00Z"
        );
    }
}
