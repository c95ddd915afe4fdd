//! The patient's record: overview, demographics, entries.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use keyhold_domain::{
    Category, Demographics, DomainError, Entry, EntryId, EntryKind, FieldError, NewEntry,
};
use serde::{Deserialize, Serialize};
use tera::Context;
use time::{Date, Month};

use crate::error::WebError;
use crate::extract::{csrf_field, param, Params, Subject, Submitted};
use crate::pages::{date_time, insert_errors, long_date, record_context, render, see_other};
use crate::AppState;

csrf_field!(EntryForm);

#[derive(Serialize)]
struct Row {
    id: String,
    title: String,
    date: String,
    category_label: &'static str,
    source: String,
}

#[derive(Serialize)]
struct Section {
    kind: &'static str,
    label: &'static str,
    empty_text: String,
    entries: Vec<Row>,
}

/// "Your …" on one's own record, "Name's …" on anyone else's.
pub fn whose(p: &Subject, d: &Demographics, own: &str, other: &str) -> String {
    if p.principal.own_patient == Some(p.patient) {
        own.to_string()
    } else {
        let name = d.full_name();
        let name = if name.is_empty() {
            "This person"
        } else {
            &name
        };
        format!("{name}'s {other}")
    }
}

pub async fn overview(State(state): State<AppState>, p: Subject) -> Result<Response, WebError> {
    let view = state.core.record(&p.principal, p.patient).await?;
    let today = state.core.today();
    let row = |e: &Entry| Row {
        id: e.id.to_string(),
        title: e.title.clone(),
        date: long_date(e.date),
        category_label: e.category.label(),
        source: e.source.label(),
    };
    let section =
        |kind: &'static str, label: &'static str, keep: &dyn Fn(&Entry) -> bool| Section {
            kind,
            label,
            empty_text: format!("No {} recorded.", label.to_lowercase()),
            entries: view.entries.iter().filter(|e| keep(e)).map(row).collect(),
        };
    // Appointments split by today's date: what is coming up matters most, and
    // comes soonest first.
    let mut upcoming = section("appointment_upcoming", "Upcoming appointments", &|e| {
        e.kind == EntryKind::Appointment && e.date >= today
    });
    upcoming.entries.reverse();
    let mut sections = vec![upcoming];
    for kind in EntryKind::ALL {
        if kind == EntryKind::Appointment {
            sections.push(section("appointment_past", "Past appointments", &|e| {
                e.kind == EntryKind::Appointment && e.date < today
            }));
        } else {
            sections.push(section(kind.slug(), kind.heading(), &|e| e.kind == kind));
        }
    }
    let mut ctx = record_context(&state, &p, &view.demographics, &view.standing);
    ctx.insert("sections", &sections);
    if !matches!(view.basis, keyhold_domain::policy::Basis::Owner) {
        ctx.insert(
            "hidden_note",
            "You see only the parts of this record that are shared with you. Other entries are not listed.",
        );
    }
    let title = whose(
        &p,
        &view.demographics,
        "Your health record",
        "health record",
    );
    render(
        &state,
        &p.viewer,
        StatusCode::OK,
        "record.html",
        &title,
        ctx,
    )
}

fn or_not_recorded(s: &str) -> String {
    if s.trim().is_empty() {
        "Not recorded".into()
    } else {
        s.to_string()
    }
}

pub async fn demographics(State(state): State<AppState>, p: Subject) -> Result<Response, WebError> {
    let header = state.core.header(&p.principal, p.patient).await?;
    let d = &header.demographics;
    let mut ctx = record_context(&state, &p, d, &header.standing);
    // The id apps and the FHIR API use for this record (`Patient/{id}`).
    ctx.insert("record_id", &p.patient.to_string());
    ctx.insert(
        "d",
        &serde_json::json!({
            "name": or_not_recorded(&d.full_name()),
            "date_of_birth": d.date_of_birth.map(long_date).unwrap_or_else(|| "Not recorded".into()),
            "gender": d.gender.label(),
            "nhs_number": d.nhs_number.map(|n| n.to_string()).unwrap_or_else(|| "Not recorded".into()),
            "address_lines": d.address_lines.iter().chain(std::iter::once(&d.postcode)).filter(|l| !l.trim().is_empty()).collect::<Vec<_>>(),
            "phones": d.phones,
            "email": d.email.as_ref().map(|e| e.to_string()).unwrap_or_default(),
            "gp_practice": d.gp_practice,
            "ethnicity": d.ethnicity,
            "languages": d.languages,
            "interpreter_needed": d.interpreter_needed,
            "religion": d.religion,
            "marital_status": d.marital_status,
            "disabilities": d.disabilities,
            "lives_alone": match d.lives_alone { Some(true) => "Yes", Some(false) => "No", None => "Not recorded" },
            "aliases": d.aliases,
            "emergency_contacts": d.emergency_contacts,
        }),
    );
    let title = whose(&p, d, "Your personal details", "personal details");
    render(
        &state,
        &p.viewer,
        StatusCode::OK,
        "demographics.html",
        &title,
        ctx,
    )
}

#[derive(Deserialize, Default, Serialize)]
pub struct EntryForm {
    #[serde(default, skip_serializing)]
    csrf_token: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    title: String,
    #[serde(default, rename(deserialize = "date-day"))]
    day: String,
    #[serde(default, rename(deserialize = "date-month"))]
    month: String,
    #[serde(default, rename(deserialize = "date-year"))]
    year: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    details: String,
}

#[derive(Deserialize)]
pub struct NewEntryQuery {
    kind: Option<String>,
}

/// The entry form, under the record's banner; refused unless the viewer may
/// add to this record.
async fn entry_form_context(
    state: &AppState,
    p: &Subject,
    form: &EntryForm,
    errors: &[FieldError],
) -> Result<Context, WebError> {
    let header = state.core.header(&p.principal, p.patient).await?;
    if !header.standing.can.contribute {
        return Err(WebError::NotFound);
    }
    let mut ctx = record_context(state, p, &header.demographics, &header.standing);
    let kinds: Vec<_> = EntryKind::ALL
        .into_iter()
        .map(|k| serde_json::json!({ "value": k.slug(), "label": k.label() }))
        .collect();
    let categories: Vec<_> = Category::ALL
        .into_iter()
        .map(|c| serde_json::json!({ "value": c.slug(), "label": c.label(), "hint": c.hint() }))
        .collect();
    ctx.insert("kinds", &kinds);
    ctx.insert("categories", &categories);
    ctx.insert("values", form);
    insert_errors(&mut ctx, errors);
    Ok(ctx)
}

pub async fn new_entry_page(
    State(state): State<AppState>,
    p: Subject,
    Query(q): Query<NewEntryQuery>,
) -> Result<Response, WebError> {
    let kind = q
        .kind
        .and_then(|k| EntryKind::parse(&k))
        .unwrap_or(EntryKind::Note);
    let form = EntryForm {
        kind: kind.slug().into(),
        category: Category::General.slug().into(),
        ..Default::default()
    };
    let title = if kind == EntryKind::Note {
        "Add a note"
    } else {
        "Add an entry"
    };
    let ctx = entry_form_context(&state, &p, &form, &[]).await?;
    render(
        &state,
        &p.viewer,
        StatusCode::OK,
        "entry_new.html",
        title,
        ctx,
    )
}

/// Day, month and year as typed into an NHS date input; errors name `field`
/// (the day box, which the error summary links to).
pub fn parse_date(
    field: &'static str,
    day: &str,
    month: &str,
    year: &str,
) -> Result<Date, FieldError> {
    if day.trim().is_empty() && month.trim().is_empty() && year.trim().is_empty() {
        return Err(FieldError::new(field, "Enter the date"));
    }
    let num = |s: &str| s.trim().parse::<i32>().ok();
    let (Some(d), Some(m), Some(y)) = (num(day), num(month), num(year)) else {
        return Err(FieldError::new(
            field,
            "Date must include a day, month and year, in numbers",
        ));
    };
    if !(1900..=2200).contains(&y) {
        return Err(FieldError::new(
            field,
            "Year must include 4 numbers, like 2024",
        ));
    }
    let month = u8::try_from(m).ok().and_then(|m| Month::try_from(m).ok());
    let date = month.and_then(|m| {
        u8::try_from(d)
            .ok()
            .and_then(|d| Date::from_calendar_date(y, m, d).ok())
    });
    date.ok_or_else(|| FieldError::new(field, "Date must be a real date"))
}

fn parse_entry(form: &EntryForm) -> Result<NewEntry, Vec<FieldError>> {
    let mut errors = Vec::new();
    let kind = EntryKind::parse(&form.kind);
    if kind.is_none() {
        errors.push(FieldError::new("kind", "Select what kind of entry this is"));
    }
    if form.title.trim().is_empty() {
        errors.push(FieldError::new("title", "Enter a title"));
    }
    let date = parse_date("date-day", &form.day, &form.month, &form.year)
        .map_err(|e| errors.push(e))
        .ok();
    let category = Category::parse(&form.category);
    if category.is_none() {
        errors.push(FieldError::new(
            "category",
            "Select who this part of your record is for",
        ));
    }
    match (kind, date, category) {
        (Some(kind), Some(date), Some(category)) if errors.is_empty() => Ok(NewEntry {
            kind,
            title: form.title.clone(),
            date,
            end_date: None,
            category,
            details: form.details.clone(),
        }),
        _ => Err(errors),
    }
}

pub async fn create_entry(
    State(state): State<AppState>,
    p: Subject,
    s: Submitted<EntryForm>,
) -> Result<Response, WebError> {
    let form = s.form;
    let invalid = async |errors: Vec<FieldError>| {
        let ctx = entry_form_context(&state, &p, &form, &errors).await?;
        render(
            &state,
            &p.viewer,
            StatusCode::UNPROCESSABLE_ENTITY,
            "entry_new.html",
            "Add an entry",
            ctx,
        )
    };
    let new = match parse_entry(&form) {
        Ok(n) => n,
        Err(errors) => return invalid(errors).await,
    };
    match state.core.add_entry(&p.principal, p.patient, new).await {
        Ok(id) => see_other(&p.at(&format!("/entries/{id}"))),
        Err(DomainError::Invalid(errors)) => invalid(errors).await,
        Err(e) => Err(e.into()),
    }
}

pub async fn entry(
    State(state): State<AppState>,
    p: Subject,
    Path(params): Params,
) -> Result<Response, WebError> {
    let id: EntryId = param(&params, "id")?;
    let e = state.core.entry(&p.principal, p.patient, id).await?;
    let header = state.core.header(&p.principal, p.patient).await?;
    let mut ctx = record_context(&state, &p, &header.demographics, &header.standing);
    ctx.insert(
        "entry",
        &serde_json::json!({
            "id": e.id.to_string(),
            "kind_label": e.kind.label(),
            "title": e.title,
            "date": long_date(e.date),
            "end_date": e.end_date.map(long_date),
            "category_label": e.category.label(),
            "source": e.source.label(),
            "details": e.details,
            "recorded_at": date_time(e.recorded_at),
        }),
    );
    render(
        &state,
        &p.viewer,
        StatusCode::OK,
        "entry.html",
        &e.title,
        ctx,
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn dates_parse_like_the_nhs_date_input() {
        assert!(parse_date("date-day", "14", "3", "2024").is_ok());
        assert_eq!(
            parse_date("date-day", "", "", "").unwrap_err().message,
            "Enter the date"
        );
        assert_eq!(
            parse_date("date-day", "31", "2", "2024")
                .unwrap_err()
                .message,
            "Date must be a real date"
        );
        assert_eq!(
            parse_date("date-day", "1", "13", "2024")
                .unwrap_err()
                .message,
            "Date must be a real date"
        );
        assert!(parse_date("date-day", "x", "3", "2024").is_err());
        assert!(parse_date("date-day", "1", "3", "24").is_err());
    }
}
