//! Access to records, the requester's side: the list, the form in steps
//! (kept on the server between steps, so it works without JavaScript),
//! documents, the check page, sending, the request page with its messages
//! and downloads, and the guest's email link. Every decision is the
//! domain's (`access_requests`); a request that is not the asker's is
//! "not found".

use std::collections::BTreeMap;
use std::io::Write;

use axum::extract::{FromRequestParts, Multipart, Path, Query, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use keyhold_domain::access_requests::{
    Asker, Field, FieldType, RequestKind, RequestView, Step, MAX_FILES_PER_UPLOAD,
};
use keyhold_domain::{DomainError, Email, FieldError, OrgId, RequestFileId, RequestId};
use serde::{Deserialize, Serialize};
use tera::Context;

use crate::error::WebError;
use crate::extract::{csrf_field, param, CsrfOnly, Params, Submitted, Viewer};
use crate::pages::{
    date_time, insert_errors, long_date, render, render_form, see_other, size_display,
};
use crate::route_table::Routes;
use crate::routes::documents::{copy_document, disposition, stream_from_blocking, unique_name};
pub(crate) use crate::routes::multipart::read_multipart;
use crate::{cookies, AppState};

/// The guest's session cookie (a guest has no account session).
pub const GUEST_COOKIE: &str = "keyhold_guest";

pub(crate) fn routes(upload_cap: usize) -> Routes {
    use axum::extract::DefaultBodyLimit;
    let uploads = || DefaultBodyLimit::max(upload_cap);
    Routes::new()
        .route("/access-requests", get(list))
        .route("/access-requests/new", get(new_page).post(create))
        .route("/access-requests/guest", get(guest_page).post(guest_start))
        .route("/access-requests/guest/signout", post(guest_signout))
        .route(
            "/access-requests/guest/{token}",
            get(guest_link_page).post(guest_link),
        )
        .route("/access-requests/{id}", get(show))
        .route(
            "/access-requests/{id}/step/{step}",
            get(step_page).post(step_save),
        )
        .route(
            "/access-requests/{id}/documents",
            get(documents_page).post(documents_upload).layer(uploads()),
        )
        .route(
            "/access-requests/{id}/documents/{attachment}/remove",
            post(documents_remove),
        )
        .route("/access-requests/{id}/check", get(check_page).post(send))
        .route("/access-requests/{id}/sent", get(sent))
        .route(
            "/access-requests/{id}/messages",
            post(reply).layer(uploads()),
        )
        .route("/access-requests/{id}/withdraw", post(withdraw))
        .route("/access-requests/{id}/files/{attachment}", get(download))
        .route("/access-requests/{id}/disclosure.zip", get(download_zip))
}

// ---------------------------------------------------------------------------
// Who is asking

/// A signed-in account, a guest who proved their address, or neither.
pub struct Requesting {
    pub viewer: Viewer,
    pub asker: Option<Asker>,
}

impl Requesting {
    fn asker(&self) -> Result<&Asker, WebError> {
        self.asker.as_ref().ok_or(WebError::Unauthenticated)
    }
    fn guest_email(&self) -> Option<String> {
        match &self.asker {
            Some(Asker::Guest(g)) => Some(g.email.as_str().to_string()),
            _ => None,
        }
    }
}

impl FromRequestParts<AppState> for Requesting {
    type Rejection = WebError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let viewer = Viewer::from_request_parts(parts, state).await?;
        let asker = match &viewer.principal {
            Some(p) => Some(Asker::Account(p.clone())),
            None => {
                let name = cookies::name(GUEST_COOKIE, state.config.secure_cookies);
                match cookies::get(&parts.headers, &name).filter(|v| cookies::is_token(v)) {
                    Some(token) => state.core.guest_session(&token)?.map(Asker::Guest),
                    None => None,
                }
            }
        };
        Ok(Requesting { viewer, asker })
    }
}

fn base(r: &Requesting) -> Context {
    let mut ctx = Context::new();
    ctx.insert("nav", "requests");
    if let Some(e) = r.guest_email() {
        ctx.insert("guest_email", &e);
    }
    ctx
}

// ---------------------------------------------------------------------------
// The list

#[derive(Deserialize, Default)]
pub struct ListQuery {
    #[serde(default)]
    q: String,
    done: Option<String>,
}

fn notice(done: Option<&str>) -> Option<&'static str> {
    Some(match done? {
        "withdrawn" => "Request withdrawn. The records team will not work on it any further.",
        "sent" => "Message sent to the records team.",
        "guest" => "Email address confirmed. You can now ask for records as a guest.",
        _ => return None,
    })
}

pub async fn list(
    State(state): State<AppState>,
    r: Requesting,
    Query(q): Query<ListQuery>,
) -> Result<Response, WebError> {
    let mut ctx = base(&r);
    match &r.asker {
        None => {
            return render(
                &state,
                &r.viewer,
                StatusCode::OK,
                "access_requests_start.html",
                "Ask for copies of health records",
                ctx,
            );
        }
        Some(asker) => {
            let all = state.core.my_requests(asker, q.q.trim())?;
            let (drafts, sent): (Vec<_>, Vec<_>) =
                all.into_iter().partition(|s| s.submitted_at.is_none());
            let rows: Vec<_> = sent
                .iter()
                .map(|s| {
                    serde_json::json!({
                        "id": s.id.to_string(),
                        "reference": s.reference,
                        "kind": s.kind_label,
                        "name": s.name,
                        "org": s.org_name,
                        "submitted": s.submitted_at.map(date_time),
                        "status": s.state_label,
                        "tag": s.tag,
                        "message": s.message_for_requester,
                    })
                })
                .collect();
            let drafts: Vec<_> = drafts
                .iter()
                .map(|s| serde_json::json!({"id": s.id.to_string(), "kind": s.kind_label, "org": s.org_name, "name": s.name}))
                .collect();
            ctx.insert("requests", &rows);
            ctx.insert("drafts", &drafts);
            ctx.insert("q", q.q.trim());
            if let Some(n) = notice(q.done.as_deref()) {
                ctx.insert("notice", n);
            }
        }
    }
    render(
        &state,
        &r.viewer,
        StatusCode::OK,
        "access_requests.html",
        "Your requests for records",
        ctx,
    )
}

// ---------------------------------------------------------------------------
// Starting: which organisation, which kind

#[derive(Deserialize, Serialize, Default)]
pub struct NewForm {
    #[serde(default, skip_serializing)]
    csrf_token: String,
    #[serde(default)]
    org: String,
    #[serde(default)]
    kind: String,
}

csrf_field!(NewForm, GuestForm);

async fn new_form(
    state: &AppState,
    r: &Requesting,
    status: StatusCode,
    values: &NewForm,
    errors: &[FieldError],
) -> Result<Response, WebError> {
    let mut ctx = base(r);
    let orgs: Vec<_> = state
        .core
        .organisations_to_ask()?
        .into_iter()
        .map(|(id, name)| serde_json::json!({"id": id.to_string(), "name": name}))
        .collect();
    let kinds: Vec<_> = RequestKind::ALL
        .iter()
        .map(|k| serde_json::json!({"value": k.slug(), "label": k.label(), "hint": k.hint()}))
        .collect();
    ctx.insert("orgs", &orgs);
    ctx.insert("kinds", &kinds);
    ctx.insert("values", values);
    ctx.insert("guest", &matches!(r.asker, Some(Asker::Guest(_))));
    insert_errors(&mut ctx, errors);
    render(
        state,
        &r.viewer,
        status,
        "access_request_new.html",
        "Ask for copies of health records",
        ctx,
    )
}

pub async fn new_page(State(state): State<AppState>, r: Requesting) -> Result<Response, WebError> {
    if r.asker.is_none() {
        return see_other("/access-requests");
    }
    new_form(&state, &r, StatusCode::OK, &NewForm::default(), &[]).await
}

pub async fn create(
    State(state): State<AppState>,
    r: Requesting,
    s: Submitted<NewForm>,
) -> Result<Response, WebError> {
    let asker = r.asker()?;
    let mut errors = Vec::new();
    let org: Option<OrgId> = s.form.org.parse().ok();
    if org.is_none() {
        errors.push(FieldError::new(
            "org",
            "Select the organisation that holds the records",
        ));
    }
    let kind = RequestKind::parse(&s.form.kind);
    if kind.is_none() {
        errors.push(FieldError::new(
            "kind",
            "Select whose records you are asking for",
        ));
    }
    let (Some(org), Some(kind)) = (org, kind) else {
        return new_form(
            &state,
            &r,
            StatusCode::UNPROCESSABLE_ENTITY,
            &s.form,
            &errors,
        )
        .await;
    };
    match state.core.start_request(asker, org, kind).await {
        Ok(id) => see_other(&format!("/access-requests/{id}/step/patient")),
        Err(DomainError::NotFound) => {
            let errors = [FieldError::new(
                "org",
                "Select the organisation that holds the records",
            )];
            new_form(
                &state,
                &r,
                StatusCode::UNPROCESSABLE_ENTITY,
                &s.form,
                &errors,
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

// ---------------------------------------------------------------------------
// The steps

/// Where each step goes next, and back.
fn neighbours(kind: RequestKind, step: Step) -> (Option<Step>, Option<Step>) {
    let steps = kind.steps();
    let i = steps.iter().position(|s| *s == step).unwrap_or(0);
    (
        i.checked_sub(1).and_then(|j| steps.get(j).copied()),
        steps.get(i + 1).copied(),
    )
}

fn step_href(id: RequestId, step: Step) -> String {
    match step {
        Step::Documents => format!("/access-requests/{id}/documents"),
        Step::Check => format!("/access-requests/{id}/check"),
        s => format!("/access-requests/{id}/step/{}", s.slug()),
    }
}

/// The fields as the template draws them, with the value to show (what
/// was typed, after an error; what was saved, otherwise).
fn field_rows(fields: &[Field], shown: &BTreeMap<String, String>) -> Vec<serde_json::Value> {
    fields
        .iter()
        .map(|f| {
            let get = |n: &str| shown.get(n).cloned().unwrap_or_default();
            serde_json::json!({
                "name": f.name,
                "label": f.label,
                "hint": f.hint,
                "kind": f.kind,
                "required": f.required,
                "width": f.width,
                "value": get(f.name),
                "day": get(&format!("{}-day", f.name)),
                "month": get(&format!("{}-month", f.name)),
                "year": get(&format!("{}-year", f.name)),
            })
        })
        .collect()
}

/// Saved answers in the shape of the form (dates split into their parts).
fn as_form(fields: &[Field], answers: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for f in fields {
        let Some(v) = answers.get(f.name) else {
            continue;
        };
        if f.kind == FieldType::Date {
            let mut parts = v.split('-');
            if let (Some(y), Some(m), Some(d)) = (parts.next(), parts.next(), parts.next()) {
                out.insert(
                    format!("{}-day", f.name),
                    d.trim_start_matches('0').to_string(),
                );
                out.insert(
                    format!("{}-month", f.name),
                    m.trim_start_matches('0').to_string(),
                );
                out.insert(format!("{}-year", f.name), y.to_string());
            }
        } else {
            out.insert(f.name.to_string(), v.clone());
        }
    }
    out
}

fn draft_context(r: &Requesting, id: RequestId, draft: &RequestView, step: Step) -> Context {
    let kind = draft.summary.kind;
    let mut ctx = base(r);
    let (back, _) = neighbours(kind, step);
    ctx.insert("id", &id.to_string());
    ctx.insert("kind_label", kind.label());
    ctx.insert("org_name", &draft.summary.org_name);
    ctx.insert("heading", step.heading(kind));
    ctx.insert("step", step.slug());
    let steps = kind.steps();
    ctx.insert(
        "step_number",
        &(steps.iter().position(|s| *s == step).unwrap_or(0) + 1),
    );
    ctx.insert("step_count", &steps.len());
    ctx.insert(
        "back",
        &back
            .map(|b| step_href(id, b))
            .unwrap_or_else(|| "/access-requests".into()),
    );
    ctx
}

async fn step_form(
    state: &AppState,
    r: &Requesting,
    id: RequestId,
    step: Step,
    submitted: Option<&BTreeMap<String, String>>,
    errors: &[FieldError],
) -> Result<Response, WebError> {
    let asker = r.asker()?;
    let draft = state.core.draft(asker, id)?;
    let kind = draft.summary.kind;
    if !kind.steps().contains(&step) || matches!(step, Step::Documents | Step::Check) {
        return Err(WebError::NotFound);
    }
    let fields = kind.fields(step);
    let shown = match submitted {
        Some(s) => s.clone(),
        None => as_form(&fields, &draft.values),
    };
    let mut ctx = draft_context(r, id, &draft, step);
    ctx.insert("fields", &field_rows(&fields, &shown));
    ctx.insert("guest", &matches!(asker, Asker::Guest(_)));
    render_form(
        state,
        &r.viewer,
        "access_request_step.html",
        step.heading(kind),
        ctx,
        errors,
    )
}

fn ids(params: &std::collections::HashMap<String, String>) -> Result<(RequestId, Step), WebError> {
    let id: RequestId = param(params, "id")?;
    let step = params
        .get("step")
        .and_then(|s| Step::parse(s))
        .ok_or(WebError::NotFound)?;
    Ok((id, step))
}

pub async fn step_page(
    State(state): State<AppState>,
    r: Requesting,
    Path(params): Params,
) -> Result<Response, WebError> {
    let (id, step) = ids(&params)?;
    step_form(&state, &r, id, step, None, &[]).await
}

/// Any form of fields plus its CSRF token.
#[derive(Deserialize)]
pub struct AnyForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(flatten)]
    fields: BTreeMap<String, String>,
}

csrf_field!(AnyForm);

pub async fn step_save(
    State(state): State<AppState>,
    r: Requesting,
    Path(params): Params,
    s: Submitted<AnyForm>,
) -> Result<Response, WebError> {
    let (id, step) = ids(&params)?;
    let asker = r.asker()?;
    let draft = state.core.draft(asker, id)?;
    match state.core.save_step(asker, id, step, &s.form.fields).await {
        Ok(()) => {
            let (_, next) = neighbours(draft.summary.kind, step);
            see_other(&step_href(id, next.unwrap_or(Step::Check)))
        }
        Err(DomainError::Invalid(errors)) => {
            step_form(&state, &r, id, step, Some(&s.form.fields), &errors).await
        }
        Err(e) => Err(e.into()),
    }
}

// ---------------------------------------------------------------------------
// Documents while drafting

pub(crate) fn file_rows(
    files: &[keyhold_domain::access_requests::FileView],
) -> Vec<serde_json::Value> {
    files
        .iter()
        .map(|f| {
            serde_json::json!({
                "id": f.id.to_string(),
                "name": f.name,
                "label": f.label,
                "size": size_display(f.size),
                "type": f.type_label,
                "uploaded": date_time(f.uploaded_at),
            })
        })
        .collect()
}

async fn documents_form(
    state: &AppState,
    r: &Requesting,
    id: RequestId,
    errors: &[FieldError],
) -> Result<Response, WebError> {
    let asker = r.asker()?;
    let draft = state.core.draft(asker, id)?;
    let kind = draft.summary.kind;
    let mut ctx = draft_context(r, id, &draft, Step::Documents);
    ctx.insert("files", &file_rows(&draft.evidence));
    ctx.insert("required", kind.required_document());
    ctx.insert("required_hint", kind.required_document_hint());
    ctx.insert("has_required", &draft.has_required_document());
    ctx.insert("max_files", &MAX_FILES_PER_UPLOAD);
    ctx.insert(
        "max_mb",
        &(state.core.settings().max_upload_bytes / (1024 * 1024)),
    );
    render_form(
        state,
        &r.viewer,
        "access_request_documents.html",
        "Documents",
        ctx,
        errors,
    )
}

pub async fn documents_page(
    State(state): State<AppState>,
    r: Requesting,
    Path(params): Params,
) -> Result<Response, WebError> {
    let id: RequestId = param(&params, "id")?;
    documents_form(&state, &r, id, &[]).await
}

pub async fn documents_upload(
    State(state): State<AppState>,
    r: Requesting,
    Path(params): Params,
    multipart: Multipart,
) -> Result<Response, WebError> {
    let form = read_multipart(&state, &r.viewer, multipart).await?;
    let id: RequestId = param(&params, "id")?;
    let asker = r.asker()?;
    let continuing = form.fields.get("action").map(String::as_str) == Some("continue");
    let required = form.fields.get("purpose").map(String::as_str) != Some("other");
    if !form.files.is_empty() || !continuing {
        match state
            .core
            .add_evidence(asker, id, required, form.files)
            .await
        {
            Ok(()) => {}
            Err(DomainError::Invalid(errors)) => {
                return documents_form(&state, &r, id, &errors).await
            }
            Err(e) => return Err(e.into()),
        }
    }
    if continuing {
        let draft = state.core.draft(asker, id)?;
        if !draft.has_required_document() {
            let errors = [FieldError::new(
                "files",
                draft.summary.kind.missing_document_message(),
            )];
            return documents_form(&state, &r, id, &errors).await;
        }
        return see_other(&step_href(id, Step::Check));
    }
    see_other(&format!("/access-requests/{id}/documents"))
}

pub async fn documents_remove(
    State(state): State<AppState>,
    r: Requesting,
    Path(params): Params,
    _s: Submitted<CsrfOnly>,
) -> Result<Response, WebError> {
    let id: RequestId = param(&params, "id")?;
    let file: RequestFileId = param(&params, "attachment")?;
    state.core.remove_evidence(r.asker()?, id, file).await?;
    see_other(&format!("/access-requests/{id}/documents"))
}

// ---------------------------------------------------------------------------
// Check and send

fn answer_rows(view: &RequestView, id: RequestId, editable: bool) -> Vec<serde_json::Value> {
    view.answers
        .iter()
        .map(|a| {
            serde_json::json!({
                "label": a.label,
                "value": a.value,
                "change": editable.then(|| format!("{}#{}", step_href(id, a.step), a.name)),
            })
        })
        .collect()
}

async fn check_form(
    state: &AppState,
    r: &Requesting,
    id: RequestId,
    errors: &[FieldError],
) -> Result<Response, WebError> {
    let asker = r.asker()?;
    let draft = state.core.draft(asker, id)?;
    let mut ctx = draft_context(r, id, &draft, Step::Check);
    ctx.insert("answers", &answer_rows(&draft, id, true));
    ctx.insert("files", &file_rows(&draft.evidence));
    ctx.insert("documents_href", &step_href(id, Step::Documents));
    ctx.insert("guest", &matches!(asker, Asker::Guest(_)));
    render_form(
        state,
        &r.viewer,
        "access_request_check.html",
        "Check your answers",
        ctx,
        errors,
    )
}

pub async fn check_page(
    State(state): State<AppState>,
    r: Requesting,
    Path(params): Params,
) -> Result<Response, WebError> {
    let id: RequestId = param(&params, "id")?;
    check_form(&state, &r, id, &[]).await
}

#[derive(Deserialize)]
pub struct SendForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    declaration: String,
}

csrf_field!(SendForm);

pub async fn send(
    State(state): State<AppState>,
    r: Requesting,
    Path(params): Params,
    s: Submitted<SendForm>,
) -> Result<Response, WebError> {
    let id: RequestId = param(&params, "id")?;
    if s.form.declaration != "yes" {
        let errors = [FieldError::new(
            "declaration",
            "Confirm that the information you gave is true",
        )];
        return check_form(&state, &r, id, &errors).await;
    }
    match state.core.submit_request(r.asker()?, id).await {
        Ok(_) => see_other(&format!("/access-requests/{id}/sent")),
        Err(DomainError::Invalid(errors)) => check_form(&state, &r, id, &errors).await,
        Err(e) => Err(e.into()),
    }
}

pub async fn sent(
    State(state): State<AppState>,
    r: Requesting,
    Path(params): Params,
) -> Result<Response, WebError> {
    let id: RequestId = param(&params, "id")?;
    let view = state.core.my_request(r.asker()?, id).await?;
    let mut ctx = base(&r);
    ctx.insert("id", &id.to_string());
    ctx.insert("reference", &view.summary.reference);
    ctx.insert("org_name", &view.summary.org_name);
    ctx.insert("due", &view.summary.due.map(long_date));
    ctx.insert("guest", &view.summary.guest);
    render(
        &state,
        &r.viewer,
        StatusCode::OK,
        "access_request_sent.html",
        "Request sent",
        ctx,
    )
}

// ---------------------------------------------------------------------------
// The request page

pub(crate) fn message_rows(view: &RequestView) -> Vec<serde_json::Value> {
    view.messages
        .iter()
        .map(|m| {
            serde_json::json!({
                "at": date_time(m.at),
                "from_team": m.from_team,
                "author": m.author,
                "text": m.text,
                "files": file_rows(&m.files),
            })
        })
        .collect()
}

pub async fn show(
    State(state): State<AppState>,
    r: Requesting,
    Path(params): Params,
) -> Result<Response, WebError> {
    let id: RequestId = param(&params, "id")?;
    show_request(&state, &r, id, &[], None).await
}

async fn show_request(
    state: &AppState,
    r: &Requesting,
    id: RequestId,
    errors: &[FieldError],
    text: Option<&str>,
) -> Result<Response, WebError> {
    let view = state.core.my_request(r.asker()?, id).await?;
    let s = &view.summary;
    let mut ctx = base(r);
    ctx.insert("id", &id.to_string());
    ctx.insert("reference", &s.reference);
    ctx.insert("kind_label", s.kind.label());
    ctx.insert("name", &s.name);
    ctx.insert("org_name", &s.org_name);
    ctx.insert("submitted", &s.submitted_at.map(date_time));
    ctx.insert("status", s.state_label);
    ctx.insert("tag", s.tag);
    ctx.insert("open", &s.state.is_open());
    ctx.insert(
        "awaiting",
        &(s.state == keyhold_domain::access_requests::RequestState::AwaitingRequester),
    );
    ctx.insert("due", &s.due.map(long_date));
    ctx.insert("paused", &s.paused);
    ctx.insert("guest", &s.guest);
    ctx.insert("answers", &answer_rows(&view, id, false));
    ctx.insert("evidence", &file_rows(&view.evidence));
    ctx.insert("messages", &message_rows(&view));
    ctx.insert("disclosure", &file_rows(&view.disclosure));
    ctx.insert(
        "disclosed",
        &(s.state == keyhold_domain::access_requests::RequestState::Disclosed),
    );
    ctx.insert(
        "expired",
        &(s.state == keyhold_domain::access_requests::RequestState::Expired),
    );
    ctx.insert("expires", &view.expires_at.map(|t| long_date(t.date())));
    ctx.insert("rejection", &view.rejection);
    let ext: Vec<_> = view
        .extensions
        .iter()
        .map(|e| serde_json::json!({"months": e.months, "at": date_time(e.at), "reason": e.reason}))
        .collect();
    ctx.insert("extensions", &ext);
    ctx.insert("text", text.unwrap_or(""));
    ctx.insert(
        "max_mb",
        &(state.core.settings().max_upload_bytes / (1024 * 1024)),
    );
    let title = s.reference.clone().unwrap_or_else(|| "Your request".into());
    render_form(
        state,
        &r.viewer,
        "access_request.html",
        &format!("Request {title}"),
        ctx,
        errors,
    )
}

pub async fn reply(
    State(state): State<AppState>,
    r: Requesting,
    Path(params): Params,
    multipart: Multipart,
) -> Result<Response, WebError> {
    let form = read_multipart(&state, &r.viewer, multipart).await?;
    let id: RequestId = param(&params, "id")?;
    let text = form.fields.get("text").cloned().unwrap_or_default();
    match state
        .core
        .requester_message(r.asker()?, id, &text, form.files)
        .await
    {
        Ok(()) => see_other(&format!("/access-requests/{id}?done=sent#messages")),
        Err(DomainError::Invalid(errors)) => {
            show_request(&state, &r, id, &errors, Some(&text)).await
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn withdraw(
    State(state): State<AppState>,
    r: Requesting,
    Path(params): Params,
    _s: Submitted<CsrfOnly>,
) -> Result<Response, WebError> {
    let id: RequestId = param(&params, "id")?;
    match state.core.withdraw_request(r.asker()?, id).await {
        Ok(()) => see_other("/access-requests?done=withdrawn"),
        Err(DomainError::Invalid(errors)) => show_request(&state, &r, id, &errors, None).await,
        Err(e) => Err(e.into()),
    }
}

// ---------------------------------------------------------------------------
// Downloads

/// One file, streamed; never cached by the browser or a proxy.
pub(crate) fn file_response(f: keyhold_domain::access_requests::RequestFile) -> Response {
    let headers = [
        (CONTENT_TYPE, HeaderValue::from_static(f.content_type)),
        (CONTENT_DISPOSITION, disposition(&f.name)),
        (CONTENT_LENGTH, HeaderValue::from(f.size)),
        (
            axum::http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ),
    ];
    let body = stream_from_blocking(move |mut w| {
        copy_document(f, &mut w)?;
        w.flush()
    });
    (headers, body).into_response()
}

pub async fn download(
    State(state): State<AppState>,
    r: Requesting,
    Path(params): Params,
) -> Result<Response, WebError> {
    let id: RequestId = param(&params, "id")?;
    let file: RequestFileId = param(&params, "attachment")?;
    let f = state.core.open_my_file(r.asker()?, id, file).await?;
    Ok(file_response(f))
}

pub async fn download_zip(
    State(state): State<AppState>,
    r: Requesting,
    Path(params): Params,
) -> Result<Response, WebError> {
    let id: RequestId = param(&params, "id")?;
    let (reference, files) = state.core.open_my_disclosure(r.asker()?, id).await?;
    let body = stream_from_blocking(move |w| {
        let mut zip = zip::ZipWriter::new_stream(w);
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .large_file(false);
        let mut seen = std::collections::HashSet::new();
        for f in files {
            let name = unique_name(&mut seen, &f.name);
            zip.start_file(name, options)
                .map_err(std::io::Error::other)?;
            copy_document(f, &mut zip)?;
        }
        let mut w = zip.finish().map_err(std::io::Error::other)?.into_inner();
        w.flush()
    });
    let name = format!("attachment; filename=\"records-{reference}.zip\"");
    Ok((
        [
            (CONTENT_TYPE, HeaderValue::from_static("application/zip")),
            (
                CONTENT_DISPOSITION,
                HeaderValue::from_str(&name).map_err(|e| WebError::Internal(e.to_string()))?,
            ),
            (
                axum::http::header::CACHE_CONTROL,
                HeaderValue::from_static("no-store"),
            ),
        ],
        body,
    )
        .into_response())
}

// ---------------------------------------------------------------------------
// Guests

#[derive(Deserialize, Serialize, Default)]
pub struct GuestForm {
    #[serde(default, skip_serializing)]
    csrf_token: String,
    #[serde(default)]
    email: String,
}

pub async fn guest_page(
    State(state): State<AppState>,
    r: Requesting,
) -> Result<Response, WebError> {
    let mut ctx = base(&r);
    ctx.insert("values", &GuestForm::default());
    render(
        &state,
        &r.viewer,
        StatusCode::OK,
        "access_request_guest.html",
        "Continue as a guest",
        ctx,
    )
}

pub async fn guest_start(
    State(state): State<AppState>,
    r: Requesting,
    s: Submitted<GuestForm>,
) -> Result<Response, WebError> {
    let email = match Email::parse(&s.form.email) {
        Ok(e) => e,
        Err(e) => {
            let mut ctx = base(&r);
            ctx.insert("values", &s.form);
            insert_errors(&mut ctx, &[FieldError::new("email", e.to_string())]);
            return render(
                &state,
                &r.viewer,
                StatusCode::UNPROCESSABLE_ENTITY,
                "access_request_guest.html",
                "Continue as a guest",
                ctx,
            );
        }
    };
    state.core.start_guest(&email).await?;
    let mut ctx = base(&r);
    ctx.insert("email", email.as_str());
    render(
        &state,
        &r.viewer,
        StatusCode::OK,
        "access_request_guest_sent.html",
        "Check your email",
        ctx,
    )
}

/// A used or expired guest link: 410, and the way to a new one.
fn guest_link_gone(state: &AppState, r: &Requesting) -> Result<Response, WebError> {
    let mut ctx = base(r);
    ctx.insert("purpose", "guest");
    render(
        state,
        &r.viewer,
        StatusCode::GONE,
        "link_gone.html",
        "This link has expired",
        ctx,
    )
}

pub async fn guest_link_page(
    State(state): State<AppState>,
    r: Requesting,
    Path(params): Params,
) -> Result<Response, WebError> {
    let token = params.get("token").cloned().unwrap_or_default();
    let mut ctx = base(&r);
    if !state.core.guest_link_is_live(&token)? {
        return guest_link_gone(&state, &r);
    }
    ctx.insert("token", &token);
    render(
        &state,
        &r.viewer,
        StatusCode::OK,
        "access_request_guest_link.html",
        "Confirm your email address",
        ctx,
    )
}

pub async fn guest_link(
    State(state): State<AppState>,
    r: Requesting,
    Path(params): Params,
    _s: Submitted<CsrfOnly>,
) -> Result<Response, WebError> {
    let token = params.get("token").cloned().unwrap_or_default();
    let session = match state.core.open_guest_link(&token).await {
        Ok(s) => s,
        Err(DomainError::Invalid(_)) => return guest_link_gone(&state, &r),
        Err(e) => return Err(e.into()),
    };
    let name = cookies::name(GUEST_COOKIE, state.config.secure_cookies);
    let cookie = cookies::set(&name, &session, state.config.secure_cookies, "Lax", None);
    let mut resp = see_other("/access-requests?done=guest")?;
    resp.headers_mut().append(
        SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(|e| WebError::Internal(e.to_string()))?,
    );
    Ok(resp)
}

pub async fn guest_signout(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    _s: Submitted<CsrfOnly>,
) -> Result<Response, WebError> {
    let name = cookies::name(GUEST_COOKIE, state.config.secure_cookies);
    if let Some(token) = cookies::get(&headers, &name).filter(|v| cookies::is_token(v)) {
        state.core.end_guest_session(&token).await?;
    }
    let mut resp = (
        StatusCode::SEE_OTHER,
        [(LOCATION, HeaderValue::from_static("/access-requests"))],
    )
        .into_response();
    resp.headers_mut().append(
        SET_COOKIE,
        HeaderValue::from_str(&cookies::clear(&name, state.config.secure_cookies))
            .map_err(|e| WebError::Internal(e.to_string()))?,
    );
    Ok(resp)
}
