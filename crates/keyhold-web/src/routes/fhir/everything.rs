//! `GET /fhir/R4/Patient/{id}/$everything`: the whole record the caller may
//! export, as one searchset Bundle (Patient, every entry, every
//! DocumentReference, whose content is at `Binary/{id}`). One export
//! decision, audited once.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use keyhold_domain::{DomainError, PatientId};
use keyhold_fhir::IssueType;

use super::{accepts_json, api_base, fhir, not_acceptable, outcome, FhirCaller};
use crate::route_table::Routes;
use crate::AppState;

pub(crate) fn routes() -> Routes {
    Routes::new().route("/Patient/{id}/$everything", get(everything))
}

async fn everything(
    State(state): State<AppState>,
    headers: HeaderMap,
    caller: FhirCaller,
    Path(id): Path<String>,
) -> Response {
    if !accepts_json(&headers) {
        return not_acceptable();
    }
    let gone = || {
        outcome(
            StatusCode::NOT_FOUND,
            IssueType::NotFound,
            &format!("Patient/{id} is not known, or you may not export it"),
        )
    };
    let Ok(patient) = id.parse::<PatientId>() else {
        return gone();
    };
    let export = match state.core.export_record(&caller.principal, patient).await {
        Ok(e) => e,
        Err(DomainError::NotFound) => return gone(),
        Err(e) => {
            tracing::error!(error = %e, "FHIR $everything failed");
            return outcome(
                StatusCode::INTERNAL_SERVER_ERROR,
                IssueType::Exception,
                "The server could not answer; try again later",
            );
        }
    };
    let documents: Vec<_> = export
        .documents
        .into_iter()
        .map(|d| {
            let url = format!("Binary/{}", keyhold_fhir::document_id(patient, &d.meta));
            (d.meta, url)
        })
        .collect();
    let base = api_base(&state);
    fhir(
        StatusCode::OK,
        &keyhold_fhir::everything(
            &base,
            "searchset",
            patient,
            &export.demographics,
            &export.entries,
            &documents,
            state.core.today(),
        ),
    )
}
