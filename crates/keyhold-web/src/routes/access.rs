//! "Who has seen this record": every access, newest first, filtered by date
//! and by person. Break-glass and carer access stand out.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use keyhold_domain::{AccessFilter, AccountId, FieldError};
use serde::{Deserialize, Serialize};

use crate::error::WebError;
use crate::extract::Subject;
use crate::pages::{date_time, insert_errors, record_context, render};
use crate::routes::record::{parse_date, whose};
use crate::AppState;

/// The page shows this many lines; narrower dates reach older ones.
const SHOWN: usize = 200;

#[derive(Deserialize, Serialize, Default)]
pub struct FilterForm {
    #[serde(default, rename = "from-day")]
    from_day: String,
    #[serde(default, rename = "from-month")]
    from_month: String,
    #[serde(default, rename = "from-year")]
    from_year: String,
    #[serde(default, rename = "to-day")]
    to_day: String,
    #[serde(default, rename = "to-month")]
    to_month: String,
    #[serde(default, rename = "to-year")]
    to_year: String,
    #[serde(default)]
    who: String,
}

fn optional_date(
    field: &'static str,
    d: &str,
    m: &str,
    y: &str,
    errors: &mut Vec<FieldError>,
) -> Option<time::Date> {
    if d.trim().is_empty() && m.trim().is_empty() && y.trim().is_empty() {
        return None;
    }
    parse_date(field, d, m, y).map_err(|e| errors.push(e)).ok()
}

impl FilterForm {
    fn parse(&self) -> (AccessFilter, Vec<FieldError>) {
        let mut errors = Vec::new();
        let from = optional_date(
            "from-day",
            &self.from_day,
            &self.from_month,
            &self.from_year,
            &mut errors,
        );
        let to = optional_date(
            "to-day",
            &self.to_day,
            &self.to_month,
            &self.to_year,
            &mut errors,
        );
        if let (Some(f), Some(t)) = (from, to) {
            if t < f {
                errors.push(FieldError::new(
                    "to-day",
                    "The end date must be the same as or after the start date",
                ));
            }
        }
        let who = match self.who.trim() {
            "" => None,
            w => match w.parse::<AccountId>() {
                Ok(a) => Some(a),
                Err(_) => {
                    errors.push(FieldError::new("who", "Choose someone from the list"));
                    None
                }
            },
        };
        (AccessFilter { from, to, who }, errors)
    }
}

pub async fn log(
    State(state): State<AppState>,
    p: Subject,
    Query(form): Query<FilterForm>,
) -> Result<Response, WebError> {
    let (filter, errors) = form.parse();
    // A filter with a mistake shows everything, and says what is wrong.
    let filter = if errors.is_empty() {
        filter
    } else {
        AccessFilter::default()
    };
    let log = state
        .core
        .access_log(&p.principal, p.patient, &filter)
        .await?;
    let header = state.core.header(&p.principal, p.patient).await?;
    let mut ctx = record_context(&state, &p, &header.demographics, &header.standing);
    let total = log.entries.len();
    let rows: Vec<_> = log
        .entries
        .iter()
        .take(SHOWN)
        .map(|e| {
            serde_json::json!({
                "at": date_time(e.at),
                "who": e.who,
                "role": e.role,
                "organisation": e.organisation,
                "what": e.what,
                "why": e.why,
                "outcome": e.outcome,
                "refused": e.outcome != "Allowed",
                "break_glass": e.break_glass,
                "carer": e.carer,
            })
        })
        .collect();
    let people: Vec<_> = log
        .people
        .iter()
        .map(|(id, name)| serde_json::json!({ "id": id.to_string(), "name": name }))
        .collect();
    ctx.insert("entries", &rows);
    ctx.insert("total", &total);
    ctx.insert("shown", &rows.len());
    ctx.insert("people", &people);
    ctx.insert("filter", &form);
    ctx.insert(
        "filtered",
        &(filter.from.is_some() || filter.to.is_some() || filter.who.is_some()),
    );
    if p.principal.own_patient == Some(p.patient) {
        ctx.insert("nav", "access");
    }
    insert_errors(&mut ctx, &errors);
    let title = whose(
        &p,
        &header.demographics,
        "Who has seen your record",
        "record: who has seen it",
    );
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    render(&state, &p.viewer, status, "access_log.html", &title, ctx)
}
