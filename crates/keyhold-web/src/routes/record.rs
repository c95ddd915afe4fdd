//! The patient's record: overview, demographics, entries.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use keyhold_domain::{
    Category, Demographics, DocumentMeta, DomainError, Entry, EntryId, EntryKind, FieldError,
    NewEntry,
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
    /// Where the row links to, inside the record.
    href: String,
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

/// The summary's query: a date range, the density, and whether the cards
/// start open. Everything is in the URL, so it works without JavaScript and
/// "Reload" keeps the view.
#[derive(Deserialize, Serialize, Default, Clone)]
pub struct SummaryQuery {
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
    view: String,
    #[serde(default)]
    cards: String,
    #[serde(default)]
    done: String,
}

/// A date range, each end optional and inclusive.
#[derive(Clone, Copy, Default)]
struct Range {
    from: Option<Date>,
    to: Option<Date>,
}

impl Range {
    fn holds(&self, d: Date) -> bool {
        self.from.is_none_or(|f| d >= f) && self.to.is_none_or(|t| d <= t)
    }
}

impl SummaryQuery {
    fn range(&self) -> Result<Range, Vec<FieldError>> {
        let blank = |a: &str, b: &str, c: &str| {
            a.trim().is_empty() && b.trim().is_empty() && c.trim().is_empty()
        };
        let mut errors = Vec::new();
        let mut end = |field, d: &str, m: &str, y: &str| {
            if blank(d, m, y) {
                None
            } else {
                parse_date(field, d, m, y).map_err(|e| errors.push(e)).ok()
            }
        };
        let from = end(
            "from-day",
            &self.from_day,
            &self.from_month,
            &self.from_year,
        );
        let to = end("to-day", &self.to_day, &self.to_month, &self.to_year);
        if let (Some(f), Some(t)) = (from, to) {
            if t < f {
                errors.push(FieldError::new(
                    "to-day",
                    "The end date must be the same as or after the start date",
                ));
            }
        }
        if errors.is_empty() {
            Ok(Range { from, to })
        } else {
            Err(errors)
        }
    }

    /// This page's URL with `change` applied to a copy of the query.
    fn link(&self, base: &str, change: impl FnOnce(&mut SummaryQuery)) -> String {
        let mut q = SummaryQuery {
            done: String::new(),
            ..self.clone()
        };
        change(&mut q);
        let pairs: Vec<(&str, &str)> = [
            ("from-day", q.from_day.as_str()),
            ("from-month", q.from_month.as_str()),
            ("from-year", q.from_year.as_str()),
            ("to-day", q.to_day.as_str()),
            ("to-month", q.to_month.as_str()),
            ("to-year", q.to_year.as_str()),
            ("view", q.view.as_str()),
            ("cards", q.cards.as_str()),
        ]
        .into_iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .collect();
        if pairs.is_empty() {
            return base.to_string();
        }
        let query = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs.iter().map(|(k, v)| (k, v.trim())))
            .finish();
        format!("{base}?{query}")
    }
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

/// The cards of the summary, in the order a clinician reads them: what is
/// coming up, what happened, documents, medicines, allergies, then the rest.
/// Every card is there even when it is empty, so "none" is never mistaken
/// for "not shown".
fn sections(
    p: &Subject,
    entries: &[Entry],
    documents: &[DocumentMeta],
    range: Range,
    today: Date,
) -> Vec<Section> {
    let own = p.principal.own_patient == Some(p.patient);
    let visible: Vec<&Entry> = entries.iter().filter(|e| range.holds(e.date)).collect();
    let row = |e: &&Entry| Row {
        href: p.at(&format!("/entries/{}", e.id)),
        title: e.title.clone(),
        date: long_date(e.date),
        category_label: e.category.label(),
        source: e.source.label(),
    };
    let section =
        |kind: &'static str, label: &'static str, keep: &dyn Fn(&Entry) -> bool| Section {
            kind,
            label,
            empty_text: if range.from.is_some() || range.to.is_some() {
                format!("No {} in these dates.", label.to_lowercase())
            } else {
                format!("No {} recorded.", label.to_lowercase())
            },
            entries: visible.iter().filter(|e| keep(e)).map(row).collect(),
        };
    // Upcoming appointments come soonest first; everything else newest first.
    let mut upcoming = section("appointment_upcoming", "Upcoming appointments", &|e| {
        e.kind == EntryKind::Appointment && e.date >= today
    });
    upcoming.entries.reverse();
    let events = section("events", "Events and past appointments", &|e| {
        e.kind == EntryKind::Encounter || (e.kind == EntryKind::Appointment && e.date < today)
    });
    let docs = Section {
        kind: "documents",
        label: "Documents",
        empty_text: if range.from.is_some() || range.to.is_some() {
            "No documents in these dates.".into()
        } else {
            "No documents.".into()
        },
        entries: documents
            .iter()
            .filter(|d| range.holds(d.uploaded_at.date()))
            .map(|d| Row {
                href: p.at(&format!("/documents/{}", d.id)),
                title: d.title.clone(),
                date: long_date(d.uploaded_at.date()),
                category_label: d.category.label(),
                source: d.source.label(),
            })
            .collect(),
    };
    let mut out = vec![upcoming, events, docs];
    for kind in [
        EntryKind::Medication,
        EntryKind::Allergy,
        EntryKind::Condition,
        EntryKind::Immunisation,
        EntryKind::CarePlan,
        EntryKind::CareContact,
        EntryKind::QuestionnaireResponse,
        EntryKind::Note,
    ] {
        let label = if kind == EntryKind::Note && !own {
            "Notes"
        } else {
            kind.heading()
        };
        out.push(section(kind.slug(), label, &|e| e.kind == kind));
    }
    out
}

pub async fn overview(
    State(state): State<AppState>,
    p: Subject,
    Query(q): Query<SummaryQuery>,
) -> Result<Response, WebError> {
    let (range, errors) = match q.range() {
        Ok(r) => (r, Vec::new()),
        Err(e) => (Range::default(), e),
    };
    let view = state.core.record(&p.principal, p.patient).await?;
    let documents = state.core.documents(&p.principal, p.patient).await?;
    let today = state.core.today();
    let mut ctx = record_context(&state, &p, &view.demographics, &view.standing);
    ctx.insert(
        "sections",
        &sections(&p, &view.entries, &documents, range, today),
    );
    ctx.insert("filters", &q);
    ctx.insert("filtered", &(range.from.is_some() || range.to.is_some()));
    let compact = q.view == "compact";
    let closed = q.cards == "closed";
    ctx.insert("compact", &compact);
    ctx.insert("closed", &closed);
    let base = p.base.clone();
    ctx.insert(
        "links",
        &serde_json::json!({
            "expand": q.link(&base, |q| q.cards = String::new()),
            "collapse": q.link(&base, |q| q.cards = "closed".into()),
            "compact": q.link(&base, |q| q.view = "compact".into()),
            "comfortable": q.link(&base, |q| q.view = String::new()),
            "reload": q.link(&base, |_| {}),
            "clear": q.link(&base, |q| {
                q.from_day.clear();
                q.from_month.clear();
                q.from_year.clear();
                q.to_day.clear();
                q.to_month.clear();
                q.to_year.clear();
            }),
        }),
    );
    if let Some(n) = match q.done.as_str() {
        "worklist" => Some("Added to your worklist."),
        _ => None,
    } {
        ctx.insert("notice", n);
    }
    if !matches!(view.basis, keyhold_domain::policy::Basis::Owner) {
        ctx.insert(
            "hidden_note",
            "You see only the parts of this record that are shared with you. Other entries are not listed.",
        );
    }
    insert_errors(&mut ctx, &errors);
    let title = whose(
        &p,
        &view.demographics,
        "Your health record",
        "health record",
    );
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    render(&state, &p.viewer, status, "record.html", &title, ctx)
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
            "contact": e.contact.as_ref().map(|c| serde_json::json!({
                "role_key": match c.kind {
                    keyhold_domain::ContactKind::Professional => "Role",
                    keyhold_domain::ContactKind::Personal => "Relationship",
                },
                "role": c.role,
                "organisation": c.organisation,
                "phone": c.phone,
                "email": c.email.as_ref().map(|m| m.to_string()),
            })),
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
