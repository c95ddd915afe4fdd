//! The rest of the read API: entries and documents read by id, documents'
//! content (Binary), the questionnaires Keyhold defines, and the patient's
//! consents (grants) and access log (AuditEvent). Every read of patient data
//! is one domain call, which asks the policy and audits; a refusal and a
//! missing or malformed id answer the same 404.

use std::io::Write;

use axum::extract::{Path, RawQuery, State};
use axum::http::header::{ACCEPT, CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use keyhold_domain::questionnaires::Questionnaire;
use keyhold_domain::{AccessFilter, DocumentId, DomainError, EntryId};
use serde_json::Value;

use super::{
    accepts_json, fhir, not_acceptable, not_found, not_supported, outcome, paged_bundle,
    parse_search, server_error, FhirCaller, SearchBy, BY_DATE_AND_TAG,
};
use crate::routes::documents::{copy_document, disposition, stream_from_blocking};
use crate::AppState;
use keyhold_fhir::IssueType;

/// Consents: whose, and paging; no dates or categories.
const BY_PATIENT_ONLY: SearchBy = SearchBy {
    date: false,
    tag: false,
};
/// The access log: by when, not by category.
const BY_DATE: SearchBy = SearchBy {
    date: true,
    tag: false,
};

fn bad_request(why: &str) -> Response {
    outcome(StatusCode::BAD_REQUEST, IssueType::Invalid, why)
}

/// `GET /fhir/R4/{type}/{id}`: one entry (by its kind's type) or one
/// document's metadata. Other types are not read by id, which is said to
/// anyone (as the fallback does) before asking who calls.
pub async fn read(
    State(state): State<AppState>,
    headers: HeaderMap,
    caller: Result<FhirCaller, Response>,
    Path((resource_type, id)): Path<(String, String)>,
) -> Response {
    if !accepts_json(&headers) {
        return not_acceptable();
    }
    let kind = keyhold_fhir::kind_of(&resource_type);
    if kind.is_none() && resource_type != "DocumentReference" {
        return not_supported().await;
    }
    let caller = match caller {
        Ok(c) => c,
        Err(unauthorised) => return unauthorised,
    };
    let Some(kind) = kind else {
        return read_document(&state, &caller, &id).await;
    };
    let gone = || not_found(&format!("{resource_type}/{id}"));
    let Some((patient, item)) = keyhold_fhir::parse_resource_id(&id) else {
        return gone();
    };
    let Some(entry_id) = EntryId::from_bytes(&item) else {
        return gone();
    };
    match state.core.entry(&caller.principal, patient, entry_id).await {
        // An entry of another kind is not a resource of this type.
        Ok(e) if e.kind == kind => {
            match keyhold_fhir::entry_resource(patient, &e, state.core.now().date()) {
                Some(r) => fhir(StatusCode::OK, &r),
                None => gone(),
            }
        }
        Ok(_) | Err(DomainError::NotFound) => gone(),
        Err(e) => server_error("FHIR entry read failed", &e),
    }
}

/// One document's metadata, from the documents the principal may see.
async fn read_document(state: &AppState, caller: &FhirCaller, id: &str) -> Response {
    let gone = || not_found(&format!("DocumentReference/{id}"));
    let Some((patient, item)) = keyhold_fhir::parse_resource_id(id) else {
        return gone();
    };
    let Some(doc) = DocumentId::from_bytes(&item) else {
        return gone();
    };
    match state.core.documents(&caller.principal, patient).await {
        Ok(docs) => match docs.iter().find(|d| d.id == doc) {
            Some(d) => fhir(
                StatusCode::OK,
                &keyhold_fhir::document_reference(patient, d),
            ),
            None => gone(),
        },
        Err(DomainError::NotFound) => gone(),
        Err(e) => server_error("FHIR DocumentReference read failed", &e),
    }
}

/// `DocumentReference?patient=…`: the documents the principal may see,
/// newest first, by upload date and category.
pub(super) async fn search_documents(
    state: &AppState,
    caller: &FhirCaller,
    query: &str,
) -> Response {
    let q = match parse_search(query, BY_DATE_AND_TAG) {
        Ok(q) => q,
        Err(why) => return bad_request(&why),
    };
    let docs = match state.core.documents(&caller.principal, q.patient).await {
        Ok(d) => d,
        Err(DomainError::NotFound) => return not_found(&format!("Patient/{}", q.patient)),
        Err(e) => return server_error("FHIR DocumentReference search failed", &e),
    };
    let matches: Vec<_> = docs
        .iter()
        .filter(|d| q.category.is_none_or(|c| d.category == c))
        .filter(|d| q.admits_date(d.uploaded_at.date()))
        .collect();
    let total = matches.len();
    let page = matches
        .into_iter()
        .skip(q.offset)
        .take(q.count)
        .map(|d| keyhold_fhir::document_reference(q.patient, d))
        .collect();
    fhir(
        StatusCode::OK,
        &paged_bundle(state, "DocumentReference", query, &q, total, page),
    )
}

/// Whether the client asked for the Binary resource rather than the file:
/// FHIR JSON (or JSON) named in `Accept`, or `_format=json`.
fn wants_binary_resource(headers: &HeaderMap, query: Option<&str>) -> bool {
    let named = |media: &str| {
        matches!(
            media.trim(),
            "application/fhir+json" | "application/json" | "json"
        )
    };
    let by_format = query.is_some_and(|q| {
        url::form_urlencoded::parse(q.as_bytes()).any(|(k, v)| k == "_format" && named(&v))
    });
    let by_accept = headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| {
            accept
                .split(',')
                .any(|part| named(part.split(';').next().unwrap_or("")))
        });
    by_format || by_accept
}

/// `GET /fhir/R4/Binary/{id}`: a document's content. Opened through the
/// domain, which decides (as a download) and audits before a byte is read.
/// As a Binary resource (base64) when FHIR JSON is asked for; otherwise the
/// file itself, as an attachment that is never sniffed into something else.
pub async fn read_binary(
    State(state): State<AppState>,
    headers: HeaderMap,
    caller: FhirCaller,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let gone = || not_found(&format!("Binary/{id}"));
    let Some((patient, item)) = keyhold_fhir::parse_resource_id(&id) else {
        return gone();
    };
    let Some(doc_id) = DocumentId::from_bytes(&item) else {
        return gone();
    };
    let doc = match state
        .core
        .open_document(&caller.principal, patient, doc_id)
        .await
    {
        Ok(d) => d,
        Err(DomainError::NotFound) => return gone(),
        Err(e) => return server_error("FHIR Binary read failed", &e),
    };
    if wants_binary_resource(&headers, query.as_deref()) {
        let meta = doc.meta.clone();
        let bytes = match tokio::task::spawn_blocking(move || doc.read_all()).await {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => return server_error("FHIR Binary read failed", &e),
            Err(e) => {
                tracing::error!(error = %e, "FHIR Binary read task failed");
                return server_error(
                    "FHIR Binary read failed",
                    &DomainError::Internal("read task".into()),
                );
            }
        };
        let data = base64::engine::general_purpose::STANDARD.encode(&bytes);
        return fhir(StatusCode::OK, &keyhold_fhir::binary(patient, &meta, data));
    }
    let headers = [
        (
            CONTENT_TYPE,
            HeaderValue::from_static(doc.meta.file_type.content_type()),
        ),
        (CONTENT_DISPOSITION, disposition(&doc.meta.filename)),
        (CONTENT_LENGTH, HeaderValue::from(doc.meta.size)),
        (
            axum::http::header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
    ];
    let body = stream_from_blocking(move |mut w| {
        copy_document(doc, &mut w)?;
        w.flush()
    });
    (headers, body).into_response()
}

/// `GET /fhir/R4/Questionnaire`: both questionnaires. Not patient data, but
/// the API answers only callers it knows.
pub async fn search_questionnaires(
    State(state): State<AppState>,
    headers: HeaderMap,
    _caller: FhirCaller,
    RawQuery(query): RawQuery,
) -> Response {
    if !accepts_json(&headers) {
        return not_acceptable();
    }
    let query = query.unwrap_or_default();
    if let Some((k, _)) =
        url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k != "_format")
    {
        return bad_request(&format!(
            "{k}: this server does not search questionnaires by it; see /fhir/R4/metadata"
        ));
    }
    let base = super::api_base(&state);
    let all: Vec<Value> = Questionnaire::ALL
        .into_iter()
        .map(keyhold_fhir::questionnaire)
        .collect();
    let self_url = if query.is_empty() {
        format!("{base}/Questionnaire")
    } else {
        format!("{base}/Questionnaire?{query}")
    };
    fhir(
        StatusCode::OK,
        &keyhold_fhir::searchset(&self_url, all, &base),
    )
}

/// `GET /fhir/R4/Questionnaire/{phq-9|gad-7}`.
pub async fn read_questionnaire(
    headers: HeaderMap,
    _caller: FhirCaller,
    Path(id): Path<String>,
) -> Response {
    if !accepts_json(&headers) {
        return not_acceptable();
    }
    match Questionnaire::parse(&id) {
        Some(q) => fhir(StatusCode::OK, &keyhold_fhir::questionnaire(q)),
        None => not_found(&format!("Questionnaire/{id}")),
    }
}

/// `Consent?patient=…`: the patient's grants (the domain allows only those
/// who may manage the patient's sharing).
pub(super) async fn search_consents(
    state: &AppState,
    caller: &FhirCaller,
    query: &str,
) -> Response {
    let q = match parse_search(query, BY_PATIENT_ONLY) {
        Ok(q) => q,
        Err(why) => return bad_request(&why),
    };
    let grants = match state.core.grants(&caller.principal, q.patient).await {
        Ok(g) => g,
        Err(DomainError::NotFound) => return not_found(&format!("Patient/{}", q.patient)),
        Err(e) => return server_error("FHIR Consent search failed", &e),
    };
    let total = grants.len();
    let page = grants
        .iter()
        .skip(q.offset)
        .take(q.count)
        .map(keyhold_fhir::consent)
        .collect();
    fhir(
        StatusCode::OK,
        &paged_bundle(state, "Consent", query, &q, total, page),
    )
}

/// `AuditEvent?patient=…`: the patient's access log (the domain allows only
/// those who may read it), oldest first so that pages stay put while new
/// events are added (this search adds one itself).
pub(super) async fn search_audit_events(
    state: &AppState,
    caller: &FhirCaller,
    query: &str,
) -> Response {
    let q = match parse_search(query, BY_DATE) {
        Ok(q) => q,
        Err(why) => return bad_request(&why),
    };
    let log = match state
        .core
        .access_log(&caller.principal, q.patient, &AccessFilter::default())
        .await
    {
        Ok(l) => l,
        Err(DomainError::NotFound) => return not_found(&format!("Patient/{}", q.patient)),
        Err(e) => return server_error("FHIR AuditEvent search failed", &e),
    };
    let matches: Vec<_> = log
        .entries
        .iter()
        .rev()
        .filter(|e| q.admits_date(e.at.date()))
        .collect();
    let total = matches.len();
    let page = matches
        .into_iter()
        .skip(q.offset)
        .take(q.count)
        .map(|e| keyhold_fhir::audit_event(q.patient, e))
        .collect();
    fhir(
        StatusCode::OK,
        &paged_bundle(state, "AuditEvent", query, &q, total, page),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_binary_resource_is_given_only_to_who_asks_for_it() {
        let with = |accept: &str| {
            let mut h = HeaderMap::new();
            h.insert(
                ACCEPT,
                HeaderValue::from_str(accept).unwrap_or(HeaderValue::from_static("")),
            );
            h
        };
        assert!(wants_binary_resource(&with("application/fhir+json"), None));
        assert!(wants_binary_resource(
            &with("text/html, application/json;q=0.9"),
            None
        ));
        assert!(!wants_binary_resource(&with("*/*"), None));
        assert!(!wants_binary_resource(&with("application/pdf"), None));
        assert!(!wants_binary_resource(&HeaderMap::new(), None));
        assert!(wants_binary_resource(
            &HeaderMap::new(),
            Some("_format=application%2Ffhir%2Bjson")
        ));
        assert!(wants_binary_resource(
            &HeaderMap::new(),
            Some("_format=json")
        ));
    }
}
