//! A professional's own lists in an organisation: the records they opened
//! recently, and their worklists (create, rename, add and remove people,
//! delete). Every decision is the domain's: anyone but an active clinical
//! member of the organisation gets "not found", and a person whose record the
//! professional may no longer read shows only as "Access has ended".

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use keyhold_domain::policy::Principal;
use keyhold_domain::{
    DomainError, FieldError, ListedPerson, OrgId, PatientId, WorklistId, WorklistSummary,
    MAX_RECENT_RECORDS,
};
use serde::{Deserialize, Serialize};
use tera::Context;

use crate::error::WebError;
use crate::extract::{csrf_field, param, Params, SignedIn, Submitted, Viewer};
use crate::pages::{date_time, insert_errors, long_date, render, see_other};
use crate::route_table::Routes;
use crate::AppState;

csrf_field!(NameForm, PersonForm, DeleteForm);

pub(crate) fn routes() -> Routes {
    Routes::new()
        .route("/organisations/{org}/recent", get(recent))
        .route("/organisations/{org}/worklists", get(list).post(create))
        .route("/organisations/{org}/worklists/add", get(add_page))
        .route("/organisations/{org}/worklists/{list}", get(show))
        .route("/organisations/{org}/worklists/{list}/rename", post(rename))
        .route("/organisations/{org}/worklists/{list}/add", post(add))
        .route("/organisations/{org}/worklists/{list}/remove", post(remove))
        .route("/organisations/{org}/worklists/{list}/delete", post(delete))
}

// ---------------------------------------------------------------------------
// Shared pieces

#[derive(Deserialize, Default)]
pub struct Done {
    done: Option<String>,
}

fn notice(done: Option<&str>) -> Option<&'static str> {
    Some(match done? {
        "created" => "Worklist created.",
        "renamed" => "Worklist renamed.",
        "added" => "Added to this worklist.",
        "already" => "Already on this worklist.",
        "removed" => "Removed from this worklist.",
        "deleted" => "Worklist deleted.",
        _ => return None,
    })
}

fn signed_in(viewer: &Viewer) -> Result<Principal, WebError> {
    viewer.principal.clone().ok_or(WebError::Unauthenticated)
}

fn org_context(state: &AppState, org: OrgId) -> Result<Context, WebError> {
    let mut ctx = Context::new();
    ctx.insert("nav", "organisations");
    ctx.insert("org", &org.to_string());
    ctx.insert("org_name", &state.core.organisation_name(org)?);
    Ok(ctx)
}

/// What someone else changed at the same moment, as a field error.
fn conflict(field: &'static str) -> Vec<FieldError> {
    vec![FieldError::new(
        field,
        "This list was changed at the same time somewhere else. Check it and try again",
    )]
}

/// One row of a list of people. `ended` rows carry nothing of who the person is.
#[derive(Serialize)]
struct PersonRow {
    patient: String,
    ended: bool,
    name: String,
    nhs_number: String,
    date_of_birth: String,
    at: String,
}

fn person_row(p: ListedPerson) -> PersonRow {
    match p.seen {
        Some(seen) => PersonRow {
            patient: p.patient.to_string(),
            ended: false,
            name: if seen.name.is_empty() {
                "Name not recorded".into()
            } else {
                seen.name
            },
            nhs_number: seen.nhs_number.unwrap_or_else(|| "Not recorded".into()),
            date_of_birth: seen
                .date_of_birth
                .map(long_date)
                .unwrap_or_else(|| "Not recorded".into()),
            at: date_time(p.at),
        },
        None => PersonRow {
            patient: p.patient.to_string(),
            ended: true,
            name: String::new(),
            nhs_number: String::new(),
            date_of_birth: String::new(),
            at: date_time(p.at),
        },
    }
}

#[derive(Serialize)]
struct ListRow {
    id: String,
    name: String,
    people: usize,
    includes: bool,
}

fn list_rows(lists: Vec<WorklistSummary>) -> Vec<ListRow> {
    lists
        .into_iter()
        .map(|l| ListRow {
            id: l.id.to_string(),
            name: l.name,
            people: l.people,
            includes: l.includes,
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Recently accessed

pub async fn recent(
    State(state): State<AppState>,
    s: SignedIn,
    Path(params): Params,
) -> Result<Response, WebError> {
    let org: OrgId = param(&params, "org")?;
    let people: Vec<PersonRow> = state
        .core
        .recent_records(&s.principal, org)?
        .into_iter()
        .map(person_row)
        .collect();
    let mut ctx = org_context(&state, org)?;
    ctx.insert("people", &people);
    ctx.insert("max", &MAX_RECENT_RECORDS);
    render(
        &state,
        &s.viewer,
        StatusCode::OK,
        "org_recent.html",
        "Recently accessed records",
        ctx,
    )
}

// ---------------------------------------------------------------------------
// The list of worklists, and creating one

/// A worklist's name (create, rename); `patient` when creating from the
/// "add to a worklist" page, who goes on the new list.
#[derive(Deserialize, Serialize, Default)]
pub struct NameForm {
    #[serde(default, skip_serializing)]
    csrf_token: String,
    #[serde(default)]
    name: String,
    #[serde(default, skip_serializing)]
    patient: String,
}

#[allow(clippy::too_many_arguments)]
fn lists_page(
    state: &AppState,
    viewer: &Viewer,
    p: &Principal,
    org: OrgId,
    status: StatusCode,
    form: &NameForm,
    errors: &[FieldError],
    done: Option<&str>,
) -> Result<Response, WebError> {
    let lists = list_rows(state.core.worklists(p, org)?);
    let mut ctx = org_context(state, org)?;
    ctx.insert("lists", &lists);
    ctx.insert("values", form);
    insert_errors(&mut ctx, errors);
    if let Some(n) = notice(done) {
        ctx.insert("notice", n);
    }
    render(
        state,
        viewer,
        status,
        "org_worklists.html",
        "Worklists",
        ctx,
    )
}

pub async fn list(
    State(state): State<AppState>,
    s: SignedIn,
    Path(params): Params,
    Query(q): Query<Done>,
) -> Result<Response, WebError> {
    let org: OrgId = param(&params, "org")?;
    lists_page(
        &state,
        &s.viewer,
        &s.principal,
        org,
        StatusCode::OK,
        &NameForm::default(),
        &[],
        q.done.as_deref(),
    )
}

pub async fn create(
    State(state): State<AppState>,
    Path(params): Params,
    s: Submitted<NameForm>,
) -> Result<Response, WebError> {
    let org: OrgId = param(&params, "org")?;
    let p = signed_in(&s.viewer)?;
    // From the "add to a worklist" page: the new list starts with them.
    let first: Option<PatientId> = match s.form.patient.trim() {
        "" => None,
        id => Some(id.parse().map_err(|_| WebError::NotFound)?),
    };
    let invalid = |errors: Vec<FieldError>| match first {
        Some(patient) => add_page_for(
            &state,
            &s.viewer,
            &p,
            org,
            patient,
            StatusCode::UNPROCESSABLE_ENTITY,
            &s.form,
            &errors,
        ),
        None => lists_page(
            &state,
            &s.viewer,
            &p,
            org,
            StatusCode::UNPROCESSABLE_ENTITY,
            &s.form,
            &errors,
            None,
        ),
    };
    match state
        .core
        .create_worklist(&p, org, &s.form.name, first)
        .await
    {
        Ok(id) => {
            let done = if first.is_some() { "added" } else { "created" };
            see_other(&format!("/organisations/{org}/worklists/{id}?done={done}"))
        }
        Err(DomainError::Invalid(errors)) => invalid(errors),
        Err(DomainError::Conflict) => invalid(conflict("name")),
        Err(e) => Err(e.into()),
    }
}

// ---------------------------------------------------------------------------
// One worklist

#[allow(clippy::too_many_arguments)]
fn worklist_page(
    state: &AppState,
    viewer: &Viewer,
    p: &Principal,
    org: OrgId,
    id: WorklistId,
    status: StatusCode,
    rename: Option<&NameForm>,
    errors: &[FieldError],
    done: Option<&str>,
) -> Result<Response, WebError> {
    let list = state.core.worklist(p, org, id)?;
    let people: Vec<PersonRow> = list.people.into_iter().map(person_row).collect();
    let mut ctx = org_context(state, org)?;
    ctx.insert("list", &id.to_string());
    ctx.insert("people", &people);
    ctx.insert(
        "values",
        &NameForm {
            name: rename.map_or(list.name.clone(), |f| f.name.clone()),
            ..Default::default()
        },
    );
    insert_errors(&mut ctx, errors);
    if let Some(n) = notice(done) {
        ctx.insert("notice", n);
    }
    render(state, viewer, status, "org_worklist.html", &list.name, ctx)
}

pub async fn show(
    State(state): State<AppState>,
    s: SignedIn,
    Path(params): Params,
    Query(q): Query<Done>,
) -> Result<Response, WebError> {
    let org: OrgId = param(&params, "org")?;
    let id: WorklistId = param(&params, "list")?;
    worklist_page(
        &state,
        &s.viewer,
        &s.principal,
        org,
        id,
        StatusCode::OK,
        None,
        &[],
        q.done.as_deref(),
    )
}

pub async fn rename(
    State(state): State<AppState>,
    Path(params): Params,
    s: Submitted<NameForm>,
) -> Result<Response, WebError> {
    let org: OrgId = param(&params, "org")?;
    let id: WorklistId = param(&params, "list")?;
    let p = signed_in(&s.viewer)?;
    let errors = match state.core.rename_worklist(&p, org, id, &s.form.name).await {
        Ok(()) => return see_other(&format!("/organisations/{org}/worklists/{id}?done=renamed")),
        Err(DomainError::Invalid(errors)) => errors,
        Err(DomainError::Conflict) => conflict("name"),
        Err(e) => return Err(e.into()),
    };
    worklist_page(
        &state,
        &s.viewer,
        &p,
        org,
        id,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some(&s.form),
        &errors,
        None,
    )
}

/// One person (add, remove): their record's id.
#[derive(Deserialize, Default)]
pub struct PersonForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    patient: String,
}

pub async fn remove(
    State(state): State<AppState>,
    Path(params): Params,
    s: Submitted<PersonForm>,
) -> Result<Response, WebError> {
    let org: OrgId = param(&params, "org")?;
    let id: WorklistId = param(&params, "list")?;
    let p = signed_in(&s.viewer)?;
    let patient: PatientId = s.form.patient.parse().map_err(|_| WebError::NotFound)?;
    let errors = match state.core.remove_from_worklist(&p, org, id, patient).await {
        Ok(()) => return see_other(&format!("/organisations/{org}/worklists/{id}?done=removed")),
        Err(DomainError::Conflict) => conflict("worklist"),
        Err(e) => return Err(e.into()),
    };
    worklist_page(
        &state,
        &s.viewer,
        &p,
        org,
        id,
        StatusCode::UNPROCESSABLE_ENTITY,
        None,
        &errors,
        None,
    )
}

/// Deleting needs the box ticked: "Yes, delete this worklist".
#[derive(Deserialize, Default)]
pub struct DeleteForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    confirm: String,
}

pub async fn delete(
    State(state): State<AppState>,
    Path(params): Params,
    s: Submitted<DeleteForm>,
) -> Result<Response, WebError> {
    let org: OrgId = param(&params, "org")?;
    let id: WorklistId = param(&params, "list")?;
    let p = signed_in(&s.viewer)?;
    let errors = if s.form.confirm != "yes" {
        // Checked after the list is known to be theirs (the page renders it).
        vec![FieldError::new(
            "confirm",
            "Tick the box to confirm you want to delete this worklist",
        )]
    } else {
        match state.core.delete_worklist(&p, org, id).await {
            Ok(()) => return see_other(&format!("/organisations/{org}/worklists?done=deleted")),
            Err(DomainError::Conflict) => conflict("confirm"),
            Err(e) => return Err(e.into()),
        }
    };
    worklist_page(
        &state,
        &s.viewer,
        &p,
        org,
        id,
        StatusCode::UNPROCESSABLE_ENTITY,
        None,
        &errors,
        None,
    )
}

// ---------------------------------------------------------------------------
// Adding someone (linked from their record)

#[derive(Deserialize)]
pub struct AddQuery {
    #[serde(default)]
    patient: String,
}

#[allow(clippy::too_many_arguments)]
fn add_page_for(
    state: &AppState,
    viewer: &Viewer,
    p: &Principal,
    org: OrgId,
    patient: PatientId,
    status: StatusCode,
    form: &NameForm,
    errors: &[FieldError],
) -> Result<Response, WebError> {
    let (seen, lists) = state.core.worklist_choices(p, org, patient)?;
    let mut ctx = org_context(state, org)?;
    ctx.insert("patient", &patient.to_string());
    ctx.insert(
        "person_name",
        &seen.map(|s| s.name).filter(|n| !n.is_empty()),
    );
    ctx.insert("lists", &list_rows(lists));
    ctx.insert("values", form);
    insert_errors(&mut ctx, errors);
    render(
        state,
        viewer,
        status,
        "org_worklist_add.html",
        "Add to a worklist",
        ctx,
    )
}

pub async fn add_page(
    State(state): State<AppState>,
    s: SignedIn,
    Path(params): Params,
    Query(q): Query<AddQuery>,
) -> Result<Response, WebError> {
    let org: OrgId = param(&params, "org")?;
    let patient: PatientId = q.patient.parse().map_err(|_| WebError::NotFound)?;
    add_page_for(
        &state,
        &s.viewer,
        &s.principal,
        org,
        patient,
        StatusCode::OK,
        &NameForm::default(),
        &[],
    )
}

pub async fn add(
    State(state): State<AppState>,
    Path(params): Params,
    s: Submitted<PersonForm>,
) -> Result<Response, WebError> {
    let org: OrgId = param(&params, "org")?;
    let id: WorklistId = param(&params, "list")?;
    let p = signed_in(&s.viewer)?;
    let patient: PatientId = s.form.patient.parse().map_err(|_| WebError::NotFound)?;
    let errors = match state.core.add_to_worklist(&p, org, id, patient).await {
        Ok(added) => {
            let done = if added { "added" } else { "already" };
            return see_other(&format!("/organisations/{org}/worklists/{id}?done={done}"));
        }
        Err(DomainError::Invalid(errors)) => errors,
        Err(DomainError::Conflict) => conflict("worklist"),
        Err(e) => return Err(e.into()),
    };
    add_page_for(
        &state,
        &s.viewer,
        &p,
        org,
        patient,
        StatusCode::UNPROCESSABLE_ENTITY,
        &NameForm::default(),
        &errors,
    )
}
