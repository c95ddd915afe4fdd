//! Questionnaires (PHQ-9, GAD-7): the list of a record's questionnaires
//! (pending, completed, scores over time as a chart and a table, and for a
//! professional who may, the form that sends one), and one questionnaire's
//! form. The domain decides every request and returns what the viewer may do
//! (`QuestionnaireRights`), so a page never offers what the next request
//! would refuse.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use keyhold_domain::assignments::{short_name, ITEM_FIELDS};
use keyhold_domain::questionnaires::{Frequency, Questionnaire};
use keyhold_domain::{
    Assignment, AssignmentId, AssignmentStatus, AssignmentView, DomainError, FieldError,
};
use serde::{Deserialize, Serialize};

use super::record::whose;
use crate::chart::scores_chart;
use crate::error::WebError;
use crate::extract::{csrf_field, param, Params, Subject, Submitted};
use crate::pages::{insert_errors, long_date, record_context, render, see_other};
use crate::AppState;

csrf_field!(AssignForm, AnswersForm);

#[derive(Deserialize, Default)]
pub struct AssignForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    questionnaire: String,
}

/// The answers, as `item-1` = `0`…`3`; anything else is ignored.
#[derive(Deserialize)]
pub struct AnswersForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(flatten)]
    answers: HashMap<String, String>,
}

/// `?done=…` after a redirect: which notice to show (`a`: the assignment
/// just completed, whose score the notice gives if the viewer may read it).
#[derive(Deserialize, Default)]
pub struct Done {
    done: Option<String>,
    a: Option<String>,
}

#[derive(Serialize)]
struct Pending {
    id: String,
    name: &'static str,
    title: &'static str,
    org: String,
    assigned: String,
}

#[derive(Serialize)]
struct Scored {
    id: String,
    name: &'static str,
    date: String,
    total: u8,
    max: u8,
    band: &'static str,
    org: String,
    entry: String,
    follow_up: bool,
}

#[derive(Serialize)]
struct ChartRow {
    date: String,
    total: u8,
    band: &'static str,
}

#[derive(Serialize)]
struct ChartView {
    id: &'static str,
    name: &'static str,
    max: u8,
    svg: String,
    summary: String,
    rows: Vec<ChartRow>,
}

fn completed_row(a: &Assignment) -> Option<Scored> {
    let AssignmentStatus::Completed {
        at,
        response,
        total,
        follow_up,
        ..
    } = a.status
    else {
        return None;
    };
    Some(Scored {
        id: a.id.to_string(),
        name: short_name(a.questionnaire),
        date: long_date(at.date()),
        total,
        max: a.questionnaire.max_score(),
        band: a.questionnaire.severity(total).label(),
        org: a.org_name.clone(),
        entry: response.to_string(),
        follow_up,
    })
}

/// The list page, or (with `errors`) the assign form again.
async fn list_page(
    state: &AppState,
    p: &Subject,
    status: StatusCode,
    done: &Done,
    selected: &str,
    errors: &[FieldError],
) -> Result<Response, WebError> {
    let view = match state.core.questionnaires_for(&p.principal, p.patient).await {
        Ok(v) => Some(v),
        Err(DomainError::NotFound) => None,
        Err(e) => return Err(e.into()),
    };
    if !errors.is_empty() && !view.as_ref().is_some_and(|v| v.can.assign) {
        return Err(WebError::NotFound);
    }
    // Refused questionnaires on a record the viewer may open: say so under
    // its banner (the header's own refusal is the usual "not found").
    let header = state.core.header(&p.principal, p.patient).await?;
    let mut ctx = record_context(state, p, &header.demographics, &header.standing);
    let title = whose(
        p,
        &header.demographics,
        "Your questionnaires",
        "questionnaires",
    );
    let Some(view) = view else {
        ctx.insert("not_shared", &true);
        return render(state, &p.viewer, status, "questionnaires.html", &title, ctx);
    };
    let pending: Vec<Pending> = view
        .assignments
        .iter()
        .filter(|a| a.is_pending())
        .map(|a| Pending {
            id: a.id.to_string(),
            name: short_name(a.questionnaire),
            title: a.questionnaire.title(),
            org: a.org_name.clone(),
            assigned: long_date(a.assigned_at.date()),
        })
        .collect();
    let completed: Vec<Scored> = view.assignments.iter().filter_map(completed_row).collect();
    let charts: Vec<ChartView> = Questionnaire::ALL
        .into_iter()
        .filter_map(|q| {
            let history = view.history(q);
            let chart = scores_chart(q, &history);
            Some(ChartView {
                id: q.id(),
                name: short_name(q),
                max: q.max_score(),
                svg: chart.svg?,
                summary: chart.summary,
                rows: history
                    .iter()
                    .map(|&(d, total, band)| ChartRow {
                        date: long_date(d),
                        total,
                        band: band.label(),
                    })
                    .collect(),
            })
        })
        .collect();
    let choices: Vec<_> = Questionnaire::ALL
        .into_iter()
        .map(|q| serde_json::json!({ "value": q.id(), "label": q.title(), "hint": q.purpose() }))
        .collect();
    ctx.insert("pending", &pending);
    ctx.insert("completed", &completed);
    ctx.insert("charts", &charts);
    ctx.insert("can", &view.can);
    ctx.insert("choices", &choices);
    ctx.insert("selected", selected);
    match done.done.as_deref() {
        Some("assigned") => {
            ctx.insert(
                "notice",
                &format!(
                    "Questionnaire sent. {} has been asked to complete it.",
                    match header.demographics.full_name() {
                        n if n.is_empty() => "The patient".to_string(),
                        n => n,
                    }
                ),
            );
        }
        Some("completed") => {
            let just = done
                .a
                .as_deref()
                .and_then(|a| a.parse::<AssignmentId>().ok())
                .and_then(|id| view.assignments.iter().find(|a| a.id == id))
                .and_then(completed_row);
            match just {
                Some(d) => {
                    ctx.insert(
                        "notice",
                        &format!(
                            "Thank you. {} completed: the score is {} out of {} ({}).",
                            d.name, d.total, d.max, d.band
                        ),
                    );
                    ctx.insert("support", &d.follow_up);
                }
                None => ctx.insert("notice", "Thank you. The questionnaire was completed."),
            }
        }
        _ => {}
    }
    insert_errors(&mut ctx, errors);
    render(state, &p.viewer, status, "questionnaires.html", &title, ctx)
}

pub async fn list(
    State(state): State<AppState>,
    p: Subject,
    Query(done): Query<Done>,
) -> Result<Response, WebError> {
    list_page(&state, &p, StatusCode::OK, &done, "", &[]).await
}

/// A professional sends a questionnaire; the domain refuses anyone else.
pub async fn assign(
    State(state): State<AppState>,
    p: Subject,
    s: Submitted<AssignForm>,
) -> Result<Response, WebError> {
    let Some(q) = Questionnaire::parse(&s.form.questionnaire) else {
        return list_page(
            &state,
            &p,
            StatusCode::UNPROCESSABLE_ENTITY,
            &Done::default(),
            "",
            &[FieldError::new(
                "questionnaire",
                "Select the questionnaire to send",
            )],
        )
        .await;
    };
    state
        .core
        .assign_questionnaire(&p.principal, p.patient, q)
        .await?;
    see_other(&p.at("/questionnaires?done=assigned"))
}

#[derive(Serialize)]
struct Choice {
    id: String,
    value: u8,
    label: &'static str,
}

#[derive(Serialize)]
struct Item {
    number: usize,
    field: &'static str,
    text: &'static str,
    selected: Option<u8>,
    error: Option<String>,
    choices: Vec<Choice>,
}

/// How the questionnaire page is shown: the answers kept and the errors
/// after a submission, or the refusal of a second one.
struct Shown<'a> {
    status: StatusCode,
    answers: &'a HashMap<&'static str, u8>,
    errors: &'a [FieldError],
    /// Already completed when these answers came.
    conflict: bool,
}

/// One questionnaire: the form (for whoever may answer it), the questions
/// read-only (waiting for the patient), or its result.
fn form_page(
    state: &AppState,
    p: &Subject,
    header: &keyhold_domain::Header,
    view: &AssignmentView,
    shown: Shown<'_>,
) -> Result<Response, WebError> {
    let Shown {
        status,
        answers,
        errors,
        conflict,
    } = shown;
    let a = &view.assignment;
    let q = a.questionnaire;
    let mut ctx = record_context(state, p, &header.demographics, &header.standing);
    let items: Vec<Item> = q
        .items()
        .iter()
        .zip(ITEM_FIELDS)
        .enumerate()
        .map(|(i, (text, field))| Item {
            number: i + 1,
            field,
            text,
            selected: answers.get(field).copied(),
            error: errors
                .iter()
                .find(|e| e.field == field)
                .map(|e| e.message.clone()),
            choices: Frequency::ALL
                .iter()
                .enumerate()
                .map(|(j, f)| Choice {
                    id: if j == 0 {
                        field.to_string()
                    } else {
                        format!("{field}-{}", j + 1)
                    },
                    value: f.score(),
                    label: f.label(),
                })
                .collect(),
        })
        .collect();
    let mode = if conflict {
        "already"
    } else if !a.is_pending() {
        "completed"
    } else if view.can.complete {
        "form"
    } else {
        "waiting"
    };
    ctx.insert("mode", mode);
    ctx.insert(
        "q",
        &serde_json::json!({
            "id": a.id.to_string(),
            "name": short_name(q),
            "title": q.title(),
            "purpose": q.purpose(),
            "stem": q.stem(),
            "org": a.org_name,
            "assigned": long_date(a.assigned_at.date()),
            "count": q.items().len(),
        }),
    );
    ctx.insert("items", &items);
    ctx.insert("result", &completed_row(a));
    ctx.insert("can", &view.can);
    insert_errors(&mut ctx, errors);
    render(
        state,
        &p.viewer,
        status,
        "questionnaire_form.html",
        q.title(),
        ctx,
    )
}

pub async fn show(
    State(state): State<AppState>,
    p: Subject,
    Path(params): Params,
) -> Result<Response, WebError> {
    let id: AssignmentId = param(&params, "id")?;
    let view = state
        .core
        .questionnaire(&p.principal, p.patient, id)
        .await?;
    let header = state.core.header(&p.principal, p.patient).await?;
    form_page(
        &state,
        &p,
        &header,
        &view,
        Shown {
            status: StatusCode::OK,
            answers: &HashMap::new(),
            errors: &[],
            conflict: false,
        },
    )
}

/// The answers given, and an error for each question left unanswered (or
/// answered with something that is not one of the four answers).
fn parse_answers(
    q: Questionnaire,
    form: &HashMap<String, String>,
) -> (HashMap<&'static str, u8>, Vec<FieldError>) {
    let mut given = HashMap::new();
    let mut errors = Vec::new();
    for (i, (text, field)) in q.items().iter().zip(ITEM_FIELDS).enumerate() {
        let value = form
            .get(field)
            .and_then(|v| v.trim().parse::<u8>().ok())
            .filter(|v| Frequency::from_score(*v).is_some());
        match value {
            Some(v) => {
                given.insert(field, v);
            }
            None => errors.push(FieldError::new(
                field,
                format!("Select an answer to question {}: {text}", i + 1),
            )),
        }
    }
    (given, errors)
}

pub async fn complete(
    State(state): State<AppState>,
    p: Subject,
    Path(params): Params,
    s: Submitted<AnswersForm>,
) -> Result<Response, WebError> {
    let id: AssignmentId = param(&params, "id")?;
    let view = state
        .core
        .questionnaire(&p.principal, p.patient, id)
        .await?;
    if !view.can.complete {
        return Err(WebError::NotFound);
    }
    let header = state.core.header(&p.principal, p.patient).await?;
    let q = view.assignment.questionnaire;
    let (given, errors) = parse_answers(q, &s.form.answers);
    let page = |status, errors: &[FieldError], conflict| {
        form_page(
            &state,
            &p,
            &header,
            &view,
            Shown {
                status,
                answers: &given,
                errors,
                conflict,
            },
        )
    };
    if !view.assignment.is_pending() {
        return page(StatusCode::CONFLICT, &[], true);
    }
    if !errors.is_empty() {
        return page(StatusCode::UNPROCESSABLE_ENTITY, &errors, false);
    }
    let answers: Vec<u8> = ITEM_FIELDS
        .iter()
        .take(q.items().len())
        .filter_map(|f| given.get(f).copied())
        .collect();
    match state
        .core
        .complete_questionnaire(&p.principal, p.patient, id, &answers)
        .await
    {
        Ok(_) => see_other(&p.at(&format!("/questionnaires?done=completed&a={id}"))),
        Err(DomainError::Invalid(errors)) => page(StatusCode::UNPROCESSABLE_ENTITY, &errors, false),
        Err(DomainError::Conflict) => page(StatusCode::CONFLICT, &[], true),
        Err(e) => Err(e.into()),
    }
}
