//! The care network: the professionals who look after a person and the
//! people in their life, with their roles and how to reach them. Contacts
//! are entries (so consent and attribution work as for any entry); the
//! emergency contacts of the person's details are listed with them.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use keyhold_domain::{
    Category, ContactDetails, ContactKind, Demographics, DomainError, Email, Entry, EntryKind,
    FieldError, NewEntry,
};
use serde::{Deserialize, Serialize};

use crate::error::WebError;
use crate::extract::{csrf_field, Subject, Submitted};
use crate::pages::{insert_errors, long_date, record_context, render, see_other};
use crate::routes::record::whose;
use crate::AppState;

csrf_field!(ContactForm);

#[derive(Serialize)]
struct ContactRow {
    href: Option<String>,
    name: String,
    role: String,
    organisation: String,
    phone: String,
    email: String,
    notes: String,
    source: String,
    since: String,
}

fn row(p: &Subject, e: &Entry, c: Option<&ContactDetails>) -> ContactRow {
    ContactRow {
        href: Some(p.at(&format!("/entries/{}", e.id))),
        name: e.title.clone(),
        role: c.map(|c| c.role.clone()).unwrap_or_default(),
        organisation: c.map(|c| c.organisation.clone()).unwrap_or_default(),
        phone: c.map(|c| c.phone.clone()).unwrap_or_default(),
        email: c
            .and_then(|c| c.email.as_ref())
            .map(|e| e.to_string())
            .unwrap_or_default(),
        notes: e.details.clone(),
        source: e.source.label(),
        since: long_date(e.date),
    }
}

/// Professional contacts, personal contacts (with the emergency contacts
/// from the person's details), and contacts added before they had fields.
fn network(
    p: &Subject,
    entries: &[Entry],
    d: &Demographics,
) -> (Vec<ContactRow>, Vec<ContactRow>, Vec<ContactRow>) {
    let (mut professional, mut personal, mut other) = (Vec::new(), Vec::new(), Vec::new());
    for e in entries.iter().filter(|e| e.kind == EntryKind::CareContact) {
        match &e.contact {
            Some(c) if c.kind == ContactKind::Professional => professional.push(row(p, e, Some(c))),
            Some(c) => personal.push(row(p, e, Some(c))),
            None => other.push(row(p, e, None)),
        }
    }
    for c in &d.emergency_contacts {
        personal.push(ContactRow {
            href: None,
            name: c.name.clone(),
            role: if c.relationship.is_empty() {
                "Emergency contact".into()
            } else {
                format!("{} (emergency contact)", c.relationship)
            },
            organisation: String::new(),
            phone: c.phone.clone(),
            email: String::new(),
            notes: String::new(),
            source: "Personal details".into(),
            since: String::new(),
        });
    }
    (professional, personal, other)
}

#[derive(Deserialize, Serialize, Default)]
pub struct ContactForm {
    #[serde(default, skip_serializing)]
    csrf_token: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    organisation: String,
    #[serde(default)]
    phone: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    notes: String,
}

#[derive(Deserialize, Default)]
pub struct Done {
    done: Option<String>,
}

async fn page(
    state: &AppState,
    p: &Subject,
    status: StatusCode,
    form: &ContactForm,
    errors: &[FieldError],
    notice: Option<&str>,
) -> Result<Response, WebError> {
    let view = state.core.record(&p.principal, p.patient).await?;
    let (professional, personal, other) = network(p, &view.entries, &view.demographics);
    let mut ctx = record_context(state, p, &view.demographics, &view.standing);
    ctx.insert("professional", &professional);
    ctx.insert("personal", &personal);
    ctx.insert("other", &other);
    let categories: Vec<_> = Category::ALL
        .into_iter()
        .map(|c| serde_json::json!({ "value": c.slug(), "label": c.label(), "hint": c.hint() }))
        .collect();
    ctx.insert("categories", &categories);
    ctx.insert("values", form);
    if let Some(n) = notice {
        ctx.insert("notice", n);
    }
    insert_errors(&mut ctx, errors);
    let title = whose(p, &view.demographics, "Your care network", "care network");
    render(state, &p.viewer, status, "care_network.html", &title, ctx)
}

pub async fn show(
    State(state): State<AppState>,
    p: Subject,
    Query(q): Query<Done>,
) -> Result<Response, WebError> {
    let form = ContactForm {
        kind: "professional".into(),
        category: Category::General.slug().into(),
        ..Default::default()
    };
    let notice = q
        .done
        .is_some()
        .then_some("Contact added to the care network.");
    page(&state, &p, StatusCode::OK, &form, &[], notice).await
}

/// The form as typed, parsed; errors name the fields.
fn parse(
    form: &ContactForm,
    today: time::Date,
) -> Result<(NewEntry, ContactDetails), Vec<FieldError>> {
    let mut errors = Vec::new();
    let kind = ContactKind::parse(&form.kind);
    if kind.is_none() {
        errors.push(FieldError::new(
            "kind",
            "Select whether this is a professional or someone in their life",
        ));
    }
    if form.name.trim().is_empty() {
        errors.push(FieldError::new("name", "Enter their name"));
    }
    let email = if form.email.trim().is_empty() {
        None
    } else {
        Email::parse(form.email.trim())
            .map_err(|_| {
                errors.push(FieldError::new(
                    "email",
                    "Enter an email address in the correct format, like name@example.com",
                ))
            })
            .ok()
    };
    let category = Category::parse(&form.category);
    if category.is_none() {
        errors.push(FieldError::new(
            "category",
            "Select who this contact is for",
        ));
    }
    match (kind, category) {
        (Some(kind), Some(category)) if errors.is_empty() => Ok((
            NewEntry {
                kind: EntryKind::CareContact,
                title: form.name.clone(),
                date: today,
                end_date: None,
                category,
                details: form.notes.clone(),
            },
            ContactDetails {
                kind,
                role: form.role.clone(),
                organisation: if kind == ContactKind::Professional {
                    form.organisation.clone()
                } else {
                    String::new()
                },
                phone: form.phone.clone(),
                email,
            },
        )),
        _ => Err(errors),
    }
}

pub async fn add(
    State(state): State<AppState>,
    p: Subject,
    s: Submitted<ContactForm>,
) -> Result<Response, WebError> {
    let form = s.form;
    // Someone who may not add to this record gets "not found", whatever
    // they sent.
    if !state
        .core
        .header(&p.principal, p.patient)
        .await?
        .standing
        .can
        .contribute
    {
        return Err(WebError::NotFound);
    }
    let (new, contact) = match parse(&form, state.core.today()) {
        Ok(parsed) => parsed,
        Err(errors) => {
            return page(
                &state,
                &p,
                StatusCode::UNPROCESSABLE_ENTITY,
                &form,
                &errors,
                None,
            )
            .await;
        }
    };
    match state
        .core
        .add_care_contact(&p.principal, p.patient, new, contact)
        .await
    {
        Ok(_) => see_other(&p.at("/care-network?done=added")),
        Err(DomainError::Invalid(errors)) => {
            // The entry's title is the contact's name on this form.
            let errors: Vec<FieldError> = errors
                .into_iter()
                .map(|e| {
                    if e.field == "title" {
                        FieldError::new("name", e.message.replace("a title", "their name"))
                    } else {
                        e
                    }
                })
                .collect();
            page(
                &state,
                &p,
                StatusCode::UNPROCESSABLE_ENTITY,
                &form,
                &errors,
                None,
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}
