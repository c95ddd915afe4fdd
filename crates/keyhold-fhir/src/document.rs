//! DocumentReference (a document's metadata, as the domain returns it to a
//! reader allowed to see it) and Binary (its content, once the domain has
//! opened it for download). Both carry the document's FHIR id: the patient's
//! 32 hex digits followed by the document's (see `ids`).

use keyhold_domain::{DocumentMeta, PatientId};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;

use crate::clinical::{recorder, reference};
use crate::ids::resource_id;
use crate::CATEGORY_SYSTEM;

/// The FHIR id of a patient's document (the same for its DocumentReference
/// and its Binary).
pub fn document_id(patient: PatientId, d: &DocumentMeta) -> String {
    resource_id(patient, d.id.as_bytes())
}

/// A document's metadata; its content is at `Binary/{id}`.
pub fn document_reference(patient: PatientId, d: &DocumentMeta) -> Value {
    let id = document_id(patient, d);
    let uploaded = d.uploaded_at.format(&Rfc3339).unwrap_or_default();
    json!({
        "resourceType": "DocumentReference",
        "id": id,
        "meta": { "tag": [{ "system": CATEGORY_SYSTEM, "code": d.category.slug(), "display": d.category.label() }] },
        "status": "current",
        "type": { "text": d.kind.label() },
        "subject": reference(patient),
        "date": uploaded,
        "author": [recorder(&d.source)],
        "description": d.title,
        "content": [{
            "attachment": {
                "contentType": d.file_type.content_type(),
                "url": format!("Binary/{id}"),
                "size": d.size,
                "title": d.filename,
                "creation": uploaded,
            },
        }],
    })
}

/// A document's content as a Binary resource; `data_base64` is the content,
/// already encoded.
pub fn binary(patient: PatientId, d: &DocumentMeta, data_base64: String) -> Value {
    json!({
        "resourceType": "Binary",
        "id": document_id(patient, d),
        "contentType": d.file_type.content_type(),
        "securityContext": reference(patient),
        "data": data_base64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyhold_domain::upload::FileType;
    use keyhold_domain::{Category, DocumentId, Source};
    use time::macros::datetime;

    fn meta() -> DocumentMeta {
        DocumentMeta {
            id: DocumentId::new_random(),
            kind: keyhold_domain::DocumentKind::Letter,
            title: "Discharge summary".into(),
            filename: "discharge-summary.pdf".into(),
            file_type: FileType::Pdf,
            size: 1234,
            category: Category::General,
            source: Source::PatientEntered,
            uploaded_at: datetime!(2024-03-14 10:00 UTC),
        }
    }

    #[test]
    fn a_document_points_at_its_binary_under_one_id() {
        let p = PatientId::new_random();
        let d = meta();
        let r = document_reference(p, &d);
        let id = resource_id(p, d.id.as_bytes());
        assert_eq!(r["id"], id);
        assert_eq!(r["subject"]["reference"], format!("Patient/{p}"));
        assert_eq!(r["date"], "2024-03-14T10:00:00Z");
        assert_eq!(r["description"], "Discharge summary");
        let a = &r["content"][0]["attachment"];
        assert_eq!(a["contentType"], "application/pdf");
        assert_eq!(a["url"], format!("Binary/{id}"));
        assert_eq!(a["size"], 1234);
        assert_eq!(a["title"], "discharge-summary.pdf");
        assert_eq!(r["meta"]["tag"][0]["code"], "general");

        let b = binary(p, &d, "JVBERg==".into());
        assert_eq!(b["id"], id);
        assert_eq!(b["contentType"], "application/pdf");
        assert_eq!(b["data"], "JVBERg==");
        assert_eq!(b["securityContext"]["reference"], format!("Patient/{p}"));
    }
}
