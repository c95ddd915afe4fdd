//! The FHIR R4 API at `/fhir/R4` (JSON only). Reads go through the same
//! domain calls as the pages, so the one policy function decides them and each
//! is audited; `keyhold-fhir` turns what comes back into resources. Every
//! error is an OperationOutcome with the status that fits.

use axum::extract::{Path, RawQuery, State};
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use keyhold_domain::{Category, DomainError, PatientId};
use keyhold_fhir::{IssueType, OperationOutcome, FHIR_JSON};
use serde_json::Value;

use crate::route_table::Routes;
use crate::AppState;

mod auth;
mod everything;
pub mod feed;
mod resources;

pub use auth::FhirCaller;
pub use feed::token_url;

pub(crate) fn routes() -> Routes {
    Routes::new()
        .merge(feed::routes())
        .merge(everything::routes())
        .route("/metadata", get(metadata))
        .route("/Patient/{id}", get(read_patient))
        .route("/Questionnaire", get(resources::search_questionnaires))
        .route("/Questionnaire/{id}", get(resources::read_questionnaire))
        .route("/Binary/{id}", get(resources::read_binary))
        .route("/{resource_type}", get(search))
        .route("/{resource_type}/{id}", get(resources::read))
        .map(|r| r.fallback(not_supported))
}

pub(crate) fn fhir(status: StatusCode, body: &Value) -> Response {
    let mut resp = (status, body.to_string()).into_response();
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    resp
}

pub(crate) fn outcome(status: StatusCode, issue: IssueType, diagnostics: &str) -> Response {
    fhir(status, &OperationOutcome::new(issue, diagnostics).to_json())
}

/// JSON is all we speak: a client that accepts neither FHIR JSON nor JSON
/// (nor anything) gets 406.
pub(crate) fn accepts_json(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(ACCEPT).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    accept.split(',').any(|part| {
        let media = part.split(';').next().unwrap_or("").trim();
        matches!(
            media,
            "application/fhir+json" | "application/json" | "application/*" | "*/*" | ""
        )
    })
}

pub(crate) fn not_acceptable() -> Response {
    outcome(
        StatusCode::NOT_ACCEPTABLE,
        IssueType::NotSupported,
        "This server answers in FHIR JSON only (application/fhir+json)",
    )
}

/// The API's own address, `https://…/fhir/R4`.
pub(crate) fn api_base(state: &AppState) -> String {
    format!(
        "{}/fhir/R4",
        state.core.settings().public_url.trim_end_matches('/')
    )
}

/// 404 not-found: for what does not exist and for what this caller may not
/// see alike (nothing tells them apart).
pub(crate) fn not_found(what: &str) -> Response {
    let what: String = what.chars().take(200).collect();
    outcome(
        StatusCode::NOT_FOUND,
        IssueType::NotFound,
        &format!("{what} is not known, or not shared with you"),
    )
}

/// 500, logged with `context` (never record content).
pub(crate) fn server_error(context: &'static str, e: &DomainError) -> Response {
    tracing::error!(error = %e, "{context}");
    outcome(
        StatusCode::INTERNAL_SERVER_ERROR,
        IssueType::Exception,
        "The server could not answer; try again later",
    )
}

async fn metadata(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !accepts_json(&headers) {
        return not_acceptable();
    }
    let base = api_base(&state);
    fhir(
        StatusCode::OK,
        &keyhold_fhir::capability_statement(&base, env!("CARGO_PKG_VERSION"), state.core.now()),
    )
}

async fn read_patient(
    State(state): State<AppState>,
    headers: HeaderMap,
    caller: FhirCaller,
    Path(id): Path<String>,
) -> Response {
    if !accepts_json(&headers) {
        return not_acceptable();
    }
    let p = &caller.principal;
    let gone = || not_found(&format!("Patient/{id}"));
    // A malformed id answers as an unknown one: nothing to tell them apart.
    let Ok(patient) = id.parse::<PatientId>() else {
        return gone();
    };
    match state.core.demographics(p, patient).await {
        Ok(d) => fhir(StatusCode::OK, &keyhold_fhir::patient(patient, &d)),
        Err(DomainError::NotFound) => gone(),
        Err(e) => server_error("FHIR Patient read failed", &e),
    }
}

const DEFAULT_COUNT: usize = 50;
const MAX_COUNT: usize = 100;

/// One `date` parameter: a comparison with a day.
#[derive(Clone, Copy)]
pub(crate) enum DateBound {
    From(time::Date, bool),
    To(time::Date, bool),
    On(time::Date),
}

impl DateBound {
    fn parse(v: &str) -> Option<Self> {
        let (prefix, day) = if v.len() > 10 && v.as_bytes()[0].is_ascii_alphabetic() {
            v.split_at(2)
        } else {
            ("eq", v)
        };
        let day = time::Date::parse(
            day,
            time::macros::format_description!("[year]-[month]-[day]"),
        )
        .ok()?;
        Some(match prefix {
            "eq" => DateBound::On(day),
            "ge" => DateBound::From(day, true),
            "gt" => DateBound::From(day, false),
            "le" => DateBound::To(day, true),
            "lt" => DateBound::To(day, false),
            _ => return None,
        })
    }

    pub(crate) fn admits(self, d: time::Date) -> bool {
        match self {
            DateBound::From(b, incl) => d > b || (incl && d == b),
            DateBound::To(b, incl) => d < b || (incl && d == b),
            DateBound::On(b) => d == b,
        }
    }
}

/// What a search asked for, parsed; anything malformed is a 400.
pub(crate) struct Search {
    pub patient: PatientId,
    pub dates: Vec<DateBound>,
    pub category: Option<Category>,
    pub count: usize,
    pub offset: usize,
}

impl Search {
    /// True when every `date` bound admits `d`.
    pub fn admits_date(&self, d: time::Date) -> bool {
        self.dates.iter().all(|b| b.admits(d))
    }
}

/// Which optional parameters a type is searched by (besides `patient`,
/// `_count` and `_offset`, which every patient search takes).
#[derive(Clone, Copy)]
pub(crate) struct SearchBy {
    pub date: bool,
    pub tag: bool,
}

/// Entries and documents: by date and category too.
pub(crate) const BY_DATE_AND_TAG: SearchBy = SearchBy {
    date: true,
    tag: true,
};

/// A 400 for a parameter this type is not searched by.
fn unknown_param(name: &str) -> String {
    format!("{name}: this server does not search by it; see /fhir/R4/metadata")
}

pub(crate) fn parse_search(query: &str, params: SearchBy) -> Result<Search, String> {
    let mut patient = None;
    let mut dates = Vec::new();
    let mut category = None;
    let mut count = DEFAULT_COUNT;
    let mut offset = 0;
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        match k.as_ref() {
            "patient" | "subject" => {
                let id = v.strip_prefix("Patient/").unwrap_or(&v);
                patient = Some(
                    id.parse::<PatientId>()
                        .map_err(|_| format!("patient: {v} is not a Patient id"))?,
                );
            }
            "date" if !params.date => return Err(unknown_param("date")),
            "_tag" if !params.tag => return Err(unknown_param("_tag")),
            "date" => dates.push(
                DateBound::parse(&v)
                    .ok_or_else(|| format!("date: {v} is not a date like ge2024-01-31"))?,
            ),
            "_tag" => {
                let code = v.rsplit('|').next().unwrap_or(&v);
                category = Some(
                    Category::parse(code)
                        .ok_or_else(|| format!("_tag: {v} is not a Keyhold category"))?,
                );
            }
            "_count" => {
                count = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_COUNT).contains(n))
                    .ok_or_else(|| format!("_count: {v} is not a number from 1 to {MAX_COUNT}"))?;
            }
            "_offset" => {
                offset = v
                    .parse::<usize>()
                    .map_err(|_| format!("_offset: {v} is not a number"))?;
            }
            "_format" => {}
            other => return Err(unknown_param(other)),
        }
    }
    let patient = patient.ok_or("patient: say whose record to search (patient=<id>)")?;
    Ok(Search {
        patient,
        dates,
        category,
        count,
        offset,
    })
}

/// A page of a search's matches as a searchset Bundle: `total` counts every
/// match, and a `next` link (the same query with `_offset` moved on) follows
/// while there are more.
pub(crate) fn paged_bundle(
    state: &AppState,
    resource_type: &str,
    query: &str,
    q: &Search,
    total: usize,
    page: Vec<Value>,
) -> Value {
    let base = api_base(state);
    let self_url = format!("{base}/{resource_type}?{query}");
    let mut bundle = keyhold_fhir::searchset(&self_url, page, &base);
    bundle["total"] = total.into();
    if q.offset.saturating_add(q.count) < total {
        let mut next = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            if k != "_offset" {
                next.append_pair(&k, &v);
            }
        }
        next.append_pair("_offset", &(q.offset + q.count).to_string());
        if let Some(links) = bundle["link"].as_array_mut() {
            links.push(serde_json::json!({
                "relation": "next",
                "url": format!("{base}/{resource_type}?{}", next.finish()),
            }));
        }
    }
    bundle
}

/// `GET /fhir/R4/{type}?patient=…`: a record's entries of one kind, as far
/// as the policy lets this principal see them (the read is audited), in a
/// searchset Bundle with `next` links. Documents, consents and the access log
/// are searched in `resources`.
async fn search(
    State(state): State<AppState>,
    headers: HeaderMap,
    caller: FhirCaller,
    Path(resource_type): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    if !accepts_json(&headers) {
        return not_acceptable();
    }
    let query = query.unwrap_or_default();
    match resource_type.as_str() {
        "DocumentReference" => return resources::search_documents(&state, &caller, &query).await,
        "Consent" => return resources::search_consents(&state, &caller, &query).await,
        "AuditEvent" => return resources::search_audit_events(&state, &caller, &query).await,
        _ => {}
    }
    let Some(kind) = keyhold_fhir::kind_of(&resource_type) else {
        return not_supported().await;
    };
    let p = &caller.principal;
    let q = match parse_search(&query, BY_DATE_AND_TAG) {
        Ok(q) => q,
        Err(why) => return outcome(StatusCode::BAD_REQUEST, IssueType::Invalid, &why),
    };
    let view = match state.core.record(p, q.patient).await {
        Ok(v) => v,
        Err(DomainError::NotFound) => return not_found(&format!("Patient/{}", q.patient)),
        Err(e) => return server_error("FHIR search failed", &e),
    };
    let today = state.core.now().date();
    let mut matches: Vec<_> = view
        .entries
        .iter()
        .filter(|e| e.kind == kind)
        .filter(|e| q.category.is_none_or(|c| e.category == c))
        .filter(|e| q.admits_date(e.date))
        .collect();
    matches.sort_by(|a, b| {
        b.date
            .cmp(&a.date)
            .then(a.id.to_string().cmp(&b.id.to_string()))
    });
    let total = matches.len();
    let page: Vec<Value> = matches
        .into_iter()
        .skip(q.offset)
        .take(q.count)
        .filter_map(|e| keyhold_fhir::entry_resource(q.patient, e, today))
        .collect();
    let bundle = paged_bundle(&state, &resource_type, &query, &q, total, page);
    fhir(StatusCode::OK, &bundle)
}

pub(crate) async fn not_supported() -> Response {
    outcome(
        StatusCode::NOT_FOUND,
        IssueType::NotSupported,
        "This server does not offer that resource or interaction; see /fhir/R4/metadata",
    )
}
