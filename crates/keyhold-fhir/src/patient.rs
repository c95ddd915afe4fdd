//! Patient: the demographics the reader may see. A sensitive record read by
//! anyone but its patient arrives here already cut to name, NHS number, date
//! of birth and gender (the domain's `as_seen`), and nothing more is added.

use keyhold_domain::{Demographics, Gender, PatientId};
use serde_json::{json, Map, Value};

use crate::NHS_NUMBER_SYSTEM;

fn gender(g: Gender) -> &'static str {
    match g {
        Gender::Female => "female",
        Gender::Male => "male",
        Gender::Other => "other",
        Gender::Unknown => "unknown",
    }
}

pub fn patient(id: PatientId, d: &Demographics) -> Value {
    let mut p = Map::new();
    p.insert("resourceType".into(), "Patient".into());
    p.insert("id".into(), id.to_string().into());
    if let Some(nhs) = d.nhs_number {
        p.insert(
            "identifier".into(),
            json!([{ "system": NHS_NUMBER_SYSTEM, "value": nhs.digits() }]),
        );
    }
    let mut name = Map::new();
    name.insert("use".into(), "official".into());
    if !d.family_name.trim().is_empty() {
        name.insert("family".into(), d.family_name.trim().into());
    }
    let given: Vec<&str> = d.given_name.split_whitespace().collect();
    if !given.is_empty() {
        name.insert("given".into(), json!(given));
    }
    if name.len() > 1 {
        p.insert("name".into(), Value::Array(vec![Value::Object(name)]));
    }
    p.insert("gender".into(), gender(d.gender).into());
    if let Some(dob) = d.date_of_birth {
        p.insert("birthDate".into(), dob.to_string().into());
    }
    if let Some(died) = d.date_of_death {
        p.insert("deceasedDateTime".into(), died.to_string().into());
    }
    let mut telecom: Vec<Value> = d
        .phones
        .iter()
        .filter(|n| !n.trim().is_empty())
        .map(|n| json!({ "system": "phone", "value": n.trim() }))
        .collect();
    if let Some(e) = &d.email {
        telecom.push(json!({ "system": "email", "value": e.as_str() }));
    }
    if !telecom.is_empty() {
        p.insert("telecom".into(), Value::Array(telecom));
    }
    let lines: Vec<&str> = d
        .address_lines
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .collect();
    if !lines.is_empty() || !d.postcode.trim().is_empty() {
        let mut a = Map::new();
        a.insert("use".into(), "home".into());
        if !lines.is_empty() {
            a.insert("line".into(), json!(lines));
        }
        if !d.postcode.trim().is_empty() {
            a.insert("postalCode".into(), d.postcode.trim().into());
        }
        p.insert("address".into(), json!([a]));
    }
    Value::Object(p)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use keyhold_domain::NhsNumber;

    #[test]
    fn maps_what_is_there_and_leaves_out_what_is_not() {
        let mut d = Demographics::empty();
        d.given_name = "Ada May".into();
        d.family_name = "Example".into();
        d.nhs_number = Some(NhsNumber::parse("9990000018").unwrap());
        d.gender = Gender::Female;
        d.date_of_birth = Some(time::macros::date!(1980 - 04 - 15));
        let id = PatientId::new_random();
        let p = patient(id, &d);
        assert_eq!(p["id"], id.to_string());
        assert_eq!(p["identifier"][0]["system"], NHS_NUMBER_SYSTEM);
        assert_eq!(p["identifier"][0]["value"], "9990000018");
        assert_eq!(p["name"][0]["family"], "Example");
        assert_eq!(p["name"][0]["given"], json!(["Ada", "May"]));
        assert_eq!(p["gender"], "female");
        assert_eq!(p["birthDate"], "1980-04-15");
        for absent in ["telecom", "address", "deceasedDateTime"] {
            assert!(
                p.get(absent).is_none(),
                "{absent} should be left out when empty"
            );
        }
    }
}
