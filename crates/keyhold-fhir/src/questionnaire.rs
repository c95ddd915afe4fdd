//! Questionnaire: the outcome measures the domain defines (PHQ-9, GAD-7), as
//! FHIR forms. Not patient data: the same for everyone.

use keyhold_domain::questionnaires::{Frequency, Questionnaire};
use serde_json::{json, Value};

/// Where Keyhold's questionnaires are named (their canonical URLs start here).
pub const QUESTIONNAIRE_BASE: &str = "https://keyhold.example/fhir/Questionnaire";
/// The core extension that gives an answer its score.
pub const ORDINAL_VALUE: &str = "http://hl7.org/fhir/StructureDefinition/ordinalValue";

/// LOINC's answer code for each option.
fn loinc_answer(f: Frequency) -> &'static str {
    match f {
        Frequency::NotAtAll => "LA6568-5",
        Frequency::SeveralDays => "LA6569-3",
        Frequency::MoreThanHalfTheDays => "LA6570-1",
        Frequency::NearlyEveryDay => "LA6571-9",
    }
}

/// LOINC's code for each panel.
fn loinc(q: Questionnaire) -> (&'static str, &'static str) {
    match q {
        Questionnaire::Phq9 => ("44249-1", "PHQ-9 quick depression assessment panel"),
        Questionnaire::Gad7 => ("69737-5", "Generalized anxiety disorder 7 item (GAD-7)"),
    }
}

/// One questionnaire. Its items are the scored questions, in order, after a
/// display item carrying the shared stem; each offers the four answers (LOINC
/// answer codes), each with its score (0–3) as `ordinalValue`.
pub fn questionnaire(q: Questionnaire) -> Value {
    let options: Vec<Value> = Frequency::ALL
        .iter()
        .map(|f| {
            json!({ "valueCoding": {
                "extension": [{ "url": ORDINAL_VALUE, "valueDecimal": f.score() }],
                "system": "http://loinc.org",
                "code": loinc_answer(*f),
                "display": f.label(),
            }})
        })
        .collect();
    let mut items = vec![json!({ "linkId": "stem", "text": q.stem(), "type": "display" })];
    for (i, text) in q.items().iter().enumerate() {
        items.push(json!({
            "linkId": (i + 1).to_string(),
            "text": text,
            "type": "choice",
            "required": true,
            "answerOption": options,
        }));
    }
    let (code, display) = loinc(q);
    json!({
        "resourceType": "Questionnaire",
        "id": q.id(),
        "url": format!("{QUESTIONNAIRE_BASE}/{}", q.id()),
        "name": q.name(),
        "title": q.title(),
        "status": "active",
        "subjectType": ["Patient"],
        "publisher": "Keyhold",
        "description": q.purpose(),
        "copyright": "Developed by Drs Robert L. Spitzer, Janet B.W. Williams, Kurt Kroenke and colleagues, with an educational grant from Pfizer Inc. No permission required to reproduce, translate, display or distribute.",
        "code": [{ "system": "http://loinc.org", "code": code, "display": display }],
        "item": items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_item_offers_the_four_scored_answers() {
        for q in Questionnaire::ALL {
            let r = questionnaire(q);
            assert_eq!(r["resourceType"], "Questionnaire");
            assert_eq!(r["id"], q.id());
            assert_eq!(r["url"], format!("{QUESTIONNAIRE_BASE}/{}", q.id()));
            let items = r["item"].as_array().cloned().unwrap_or_default();
            assert_eq!(items.len(), q.items().len() + 1, "stem + items");
            assert_eq!(items[0]["type"], "display");
            for (i, item) in items[1..].iter().enumerate() {
                assert_eq!(item["linkId"], (i + 1).to_string());
                assert_eq!(item["text"], q.items()[i]);
                let first = &item["answerOption"][0]["valueCoding"];
                assert_eq!(first["code"], "LA6568-5");
                assert_eq!(first["extension"][0]["valueDecimal"], 0);
                assert_eq!(
                    item["answerOption"][3]["valueCoding"]["display"],
                    "Nearly every day"
                );
            }
        }
    }
}
