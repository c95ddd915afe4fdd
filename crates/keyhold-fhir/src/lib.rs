//! Keyhold's record as FHIR R4 JSON (`application/fhir+json`), for the API at
//! `/fhir/R4`. Pure mapping: no I/O, no policy. The web layer asks the domain
//! (which decides and audits every read) and hands what it returns here.
//!
//! FHIR's own Rust crates are large generated models of every resource; we
//! emit the few we serve with `serde_json` and check them against an
//! independent validator in the tests instead.

mod audit_event;
mod capability;
mod clinical;
mod consent;
mod document;
mod everything;
mod ids;
pub mod ingest;
mod outcome;
mod patient;
mod questionnaire;

pub use audit_event::audit_event;
pub use capability::capability_statement;
pub use clinical::{entry_resource, kind_of, resource_type, searchset, CATEGORY_SYSTEM};
pub use consent::{consent, PURPOSE_EXTENSION};
pub use document::{binary, document_id, document_reference};
pub use everything::{everything, ENTRY_KIND_SYSTEM};
pub use ids::{parse_resource_id, resource_id};
pub use outcome::{IssueType, OperationOutcome};
pub use patient::patient;
pub use questionnaire::{questionnaire, QUESTIONNAIRE_BASE};

/// The media type every answer carries.
pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";
/// The FHIR version served.
pub const FHIR_VERSION: &str = "4.0.1";
/// The NHS number's identifier system.
pub const NHS_NUMBER_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhs-number";
