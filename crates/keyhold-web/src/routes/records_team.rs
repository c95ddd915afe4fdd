//! Access to records, the records team's side: the organisation's queue
//! and one request's page with its actions (assign, ask, extend, prepare
//! the disclosure, complete, reject). Records officers of the organisation
//! only: for anyone else every page is "not found".

use std::collections::BTreeSet;

use axum::extract::{Multipart, Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use keyhold_domain::access_requests::{QueueFilter, RequestState};
use keyhold_domain::{
    AccountId, Category, DomainError, FieldError, Keyhold, OrgId, RequestFileId, RequestId,
};
use serde::Deserialize;
use tera::Context;

use crate::error::WebError;
use crate::extract::{csrf_field, param, CsrfOnly, Params, SignedIn, Submitted};
use crate::pages::{date_time, long_date, render, render_form, see_other};
use crate::route_table::Routes;
use crate::routes::access_requests::{file_response, file_rows, message_rows, read_multipart};
use crate::routes::record::parse_date;
use crate::AppState;

pub(crate) fn routes(upload_cap: usize) -> Routes {
    use axum::extract::DefaultBodyLimit;
    let uploads = || DefaultBodyLimit::max(upload_cap);
    let base = "/organisations/{org}/access-requests";
    Routes::new()
        .route(base, get(queue))
        .route(&format!("{base}/{{id}}"), get(show))
        .route(&format!("{base}/{{id}}/assign"), post(assign))
        .route(
            &format!("{base}/{{id}}/messages"),
            post(ask).layer(uploads()),
        )
        .route(&format!("{base}/{{id}}/extend"), post(extend))
        .route(
            &format!("{base}/{{id}}/disclosure"),
            post(upload_disclosure).layer(uploads()),
        )
        .route(&format!("{base}/{{id}}/disclosure/compile"), post(compile))
        .route(
            &format!("{base}/{{id}}/disclosure/{{attachment}}/remove"),
            post(remove_file),
        )
        .route(&format!("{base}/{{id}}/complete"), post(complete))
        .route(&format!("{base}/{{id}}/reject"), post(reject))
        .route(
            &format!("{base}/{{id}}/files/{{attachment}}"),
            get(download),
        )
}

fn org_of(
    params: &std::collections::HashMap<String, String>,
    s: &SignedIn,
) -> Result<OrgId, WebError> {
    let org: OrgId = param(params, "org")?;
    Keyhold::require_records_officer(&s.principal, org)?;
    Ok(org)
}

fn ids(
    params: &std::collections::HashMap<String, String>,
    s: &SignedIn,
) -> Result<(OrgId, RequestId), WebError> {
    Ok((org_of(params, s)?, param(params, "id")?))
}

fn context(state: &AppState, org: OrgId) -> Result<Context, WebError> {
    let mut ctx = Context::new();
    ctx.insert("nav", "organisations");
    ctx.insert("org", &org.to_string());
    ctx.insert("org_name", &state.core.organisation_name(org)?);
    Ok(ctx)
}

#[derive(Deserialize, Default)]
pub struct QueueQuery {
    #[serde(default)]
    show: String,
    #[serde(default)]
    q: String,
}

pub async fn queue(
    State(state): State<AppState>,
    s: SignedIn,
    Path(params): Params,
    Query(q): Query<QueueQuery>,
) -> Result<Response, WebError> {
    let org = org_of(&params, &s)?;
    let filter = QueueFilter::parse(&q.show);
    let list = state
        .core
        .request_queue(&s.principal, org, filter, q.q.trim())
        .await?;
    let rows: Vec<_> = list
        .iter()
        .map(|r| {
            serde_json::json!({
                "id": r.id.to_string(),
                "reference": r.reference,
                "kind": r.kind_label,
                "name": r.name,
                "received": r.submitted_at.map(date_time),
                "due": r.due.map(long_date),
                "paused": r.paused,
                "overdue": r.overdue,
                "status": r.team_state_label,
                "tag": r.tag,
                "assigned": r.assigned_name,
                "message": r.message_for_team,
                "guest": r.guest,
            })
        })
        .collect();
    let mut ctx = context(&state, org)?;
    ctx.insert("requests", &rows);
    ctx.insert("show", filter.slug());
    ctx.insert("q", q.q.trim());
    ctx.insert("overdue_count", &list.iter().filter(|r| r.overdue).count());
    render(
        &state,
        &s.viewer,
        StatusCode::OK,
        "org_access_requests.html",
        "Subject access requests",
        ctx,
    )
}

#[derive(Deserialize, Default)]
pub struct Done {
    done: Option<String>,
}

fn notice(done: Option<&str>) -> Option<&'static str> {
    Some(match done? {
        "assigned" => "Request assigned.",
        "asked" => "Message sent. The clock is paused until the requester replies.",
        "extended" => "Deadline extended. The requester has been told.",
        "added" => "Disclosure file added.",
        "compiled" => "Records compiled and added to the disclosure.",
        "removed" => "Disclosure file removed.",
        "completed" => {
            "Request completed. The requester has been emailed that the records are ready."
        }
        "rejected" => "Request rejected. The requester has been told.",
        _ => return None,
    })
}

pub async fn show(
    State(state): State<AppState>,
    s: SignedIn,
    Path(params): Params,
    Query(d): Query<Done>,
) -> Result<Response, WebError> {
    let (org, id) = ids(&params, &s)?;
    page(&state, &s, org, id, &[], notice(d.done.as_deref())).await
}

async fn page(
    state: &AppState,
    s: &SignedIn,
    org: OrgId,
    id: RequestId,
    errors: &[FieldError],
    notice: Option<&str>,
) -> Result<Response, WebError> {
    let view = state.core.team_request(&s.principal, org, id).await?;
    let team = state.core.records_team(&s.principal, org)?;
    let sm = &view.summary;
    let mut ctx = context(state, org)?;
    ctx.insert("id", &id.to_string());
    ctx.insert("reference", &sm.reference);
    ctx.insert("kind_label", sm.kind.label());
    ctx.insert("required_document", sm.kind.required_document());
    ctx.insert("name", &sm.name);
    ctx.insert("received", &sm.submitted_at.map(date_time));
    ctx.insert("status", sm.team_state_label);
    ctx.insert("tag", sm.tag);
    ctx.insert("state", &sm.state);
    ctx.insert("open", &sm.state.is_open());
    ctx.insert("working", &(sm.state == RequestState::InProgress));
    ctx.insert("due", &sm.due.map(long_date));
    ctx.insert("paused", &sm.paused);
    ctx.insert("overdue", &sm.overdue);
    ctx.insert("guest", &sm.guest);
    ctx.insert("assigned", &sm.assigned.map(|a| a.to_string()));
    ctx.insert("assigned_name", &sm.assigned_name);
    ctx.insert("me", &s.principal.account.to_string());
    ctx.insert(
        "team",
        &team
            .iter()
            .map(|m| serde_json::json!({"id": m.account.to_string(), "name": m.name}))
            .collect::<Vec<_>>(),
    );
    ctx.insert(
        "answers",
        &view
            .answers
            .iter()
            .map(|a| serde_json::json!({"label": a.label, "value": a.value}))
            .collect::<Vec<_>>(),
    );
    ctx.insert("evidence", &file_rows(&view.evidence));
    ctx.insert("messages", &message_rows(&view));
    ctx.insert("disclosure", &file_rows(&view.disclosure));
    ctx.insert("expires", &view.expires_at.map(|t| long_date(t.date())));
    ctx.insert("rejection", &view.rejection);
    ctx.insert("linked", &view.linked);
    ctx.insert("months_left", &view.extension_months_left);
    let ext: Vec<_> = view
        .extensions
        .iter()
        .map(|e| serde_json::json!({"months": e.months, "at": date_time(e.at), "by": e.by, "reason": e.reason}))
        .collect();
    ctx.insert("extensions", &ext);
    let cats: Vec<_> = Category::ALL
        .iter()
        .map(|c| serde_json::json!({"value": c.slug(), "label": c.label()}))
        .collect();
    ctx.insert("categories", &cats);
    ctx.insert(
        "max_mb",
        &(state.core.settings().max_upload_bytes / (1024 * 1024)),
    );
    if let Some(n) = notice {
        ctx.insert("notice", n);
    }
    let title = sm.reference.clone().unwrap_or_default();
    render_form(
        state,
        &s.viewer,
        "org_access_request.html",
        &format!("Request {title}"),
        ctx,
        errors,
    )
}

/// After an action: back to the page with its notice, or the page again
/// with the errors.
async fn after(
    state: &AppState,
    s: &SignedIn,
    org: OrgId,
    id: RequestId,
    done: &str,
    result: Result<(), DomainError>,
) -> Result<Response, WebError> {
    match result {
        Ok(()) => see_other(&format!(
            "/organisations/{org}/access-requests/{id}?done={done}"
        )),
        Err(DomainError::Invalid(errors)) => page(state, s, org, id, &errors, None).await,
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub struct AssignForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    assignee: String,
}

#[derive(Deserialize)]
pub struct ExtendForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    months: String,
    #[serde(default)]
    reason: String,
}

#[derive(Deserialize)]
pub struct RejectForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    reason: String,
}

/// The compile form: dates as day, month, year; categories as repeated
/// checkboxes (read from the raw body, since a url-encoded list repeats
/// its name).
#[derive(Deserialize)]
pub struct CompileForm {
    #[serde(default)]
    csrf_token: String,
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
    /// Checkboxes named `category-<slug>`.
    #[serde(flatten)]
    rest: std::collections::BTreeMap<String, String>,
}

csrf_field!(AssignForm, ExtendForm, RejectForm, CompileForm);

pub async fn assign(
    State(state): State<AppState>,
    s: SignedIn,
    Path(params): Params,
    f: Submitted<AssignForm>,
) -> Result<Response, WebError> {
    let (org, id) = ids(&params, &s)?;
    let result = match f.form.assignee.parse::<AccountId>() {
        Ok(to) => state.core.assign_request(&s.principal, org, id, to).await,
        Err(_) => Err(DomainError::invalid(
            "assignee",
            "Choose a records officer of this organisation",
        )),
    };
    after(&state, &s, org, id, "assigned", result).await
}

pub async fn ask(
    State(state): State<AppState>,
    s: SignedIn,
    Path(params): Params,
    multipart: Multipart,
) -> Result<Response, WebError> {
    let form = read_multipart(&state, &s.viewer, multipart).await?;
    let (org, id) = ids(&params, &s)?;
    let text = form.fields.get("text").cloned().unwrap_or_default();
    let result = state
        .core
        .ask_requester(&s.principal, org, id, &text, form.files)
        .await;
    after(&state, &s, org, id, "asked", result).await
}

pub async fn extend(
    State(state): State<AppState>,
    s: SignedIn,
    Path(params): Params,
    f: Submitted<ExtendForm>,
) -> Result<Response, WebError> {
    let (org, id) = ids(&params, &s)?;
    let result = match f.form.months.parse::<u8>() {
        Ok(m) => {
            state
                .core
                .extend_request(&s.principal, org, id, m, &f.form.reason)
                .await
        }
        Err(_) => Err(DomainError::invalid(
            "months",
            "Choose how many months to extend by",
        )),
    };
    after(&state, &s, org, id, "extended", result).await
}

pub async fn upload_disclosure(
    State(state): State<AppState>,
    s: SignedIn,
    Path(params): Params,
    multipart: Multipart,
) -> Result<Response, WebError> {
    let form = read_multipart(&state, &s.viewer, multipart).await?;
    let (org, id) = ids(&params, &s)?;
    let result = state
        .core
        .add_disclosure_files(&s.principal, org, id, form.files)
        .await;
    after(&state, &s, org, id, "added", result).await
}

pub async fn compile(
    State(state): State<AppState>,
    s: SignedIn,
    Path(params): Params,
    f: Submitted<CompileForm>,
) -> Result<Response, WebError> {
    let (org, id) = ids(&params, &s)?;
    let c = &f.form;
    let blank = |d: &str, m: &str, y: &str| {
        d.trim().is_empty() && m.trim().is_empty() && y.trim().is_empty()
    };
    let mut errors = Vec::new();
    let from = if blank(&c.from_day, &c.from_month, &c.from_year) {
        None
    } else {
        parse_date("from", &c.from_day, &c.from_month, &c.from_year)
            .map_err(|e| errors.push(e))
            .ok()
    };
    let to = if blank(&c.to_day, &c.to_month, &c.to_year) {
        None
    } else {
        parse_date("to", &c.to_day, &c.to_month, &c.to_year)
            .map_err(|e| errors.push(e))
            .ok()
    };
    let categories: BTreeSet<Category> = c
        .rest
        .keys()
        .filter_map(|k| k.strip_prefix("category-").and_then(Category::parse))
        .collect();
    if !errors.is_empty() {
        return page(&state, &s, org, id, &errors, None).await;
    }
    let result = state
        .core
        .compile_disclosure(&s.principal, org, id, from, to, &categories)
        .await;
    after(&state, &s, org, id, "compiled", result).await
}

pub async fn remove_file(
    State(state): State<AppState>,
    s: SignedIn,
    Path(params): Params,
    _f: Submitted<CsrfOnly>,
) -> Result<Response, WebError> {
    let (org, id) = ids(&params, &s)?;
    let file: RequestFileId = param(&params, "attachment")?;
    let result = state
        .core
        .remove_disclosure_file(&s.principal, org, id, file)
        .await;
    after(&state, &s, org, id, "removed", result).await
}

pub async fn complete(
    State(state): State<AppState>,
    s: SignedIn,
    Path(params): Params,
    _f: Submitted<CsrfOnly>,
) -> Result<Response, WebError> {
    let (org, id) = ids(&params, &s)?;
    let result = state.core.complete_request(&s.principal, org, id).await;
    after(&state, &s, org, id, "completed", result).await
}

pub async fn reject(
    State(state): State<AppState>,
    s: SignedIn,
    Path(params): Params,
    f: Submitted<RejectForm>,
) -> Result<Response, WebError> {
    let (org, id) = ids(&params, &s)?;
    let result = state
        .core
        .reject_request(&s.principal, org, id, &f.form.reason)
        .await;
    after(&state, &s, org, id, "rejected", result).await
}

pub async fn download(
    State(state): State<AppState>,
    s: SignedIn,
    Path(params): Params,
) -> Result<Response, WebError> {
    let (org, id) = ids(&params, &s)?;
    let file: RequestFileId = param(&params, "attachment")?;
    let f = state
        .core
        .open_team_file(&s.principal, org, id, file)
        .await?;
    Ok(file_response(f))
}
