//! Sharing: every grant of a record on one page, where the patient (or a
//! carer allowed to act for them) shares, changes and stops sharing.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use keyhold_domain::consent::GrantState;
use keyhold_domain::{DomainError, Email, FieldError, GrantId, GrantView, NewGrantee, OrgId};
use serde::{Deserialize, Serialize};

use keyhold_domain::consent::last_day;

use crate::error::WebError;
use crate::extract::{csrf_field, param, CsrfOnly, Params, Subject, Submitted};
use crate::pages::{date_time, insert_errors, long_date, record_context, render, see_other};
use crate::routes::record::whose;
use crate::routes::terms::TermsForm;
use crate::AppState;

csrf_field!(ShareForm, ChangeForm);

fn grant_row(v: &GrantView) -> serde_json::Value {
    let g = &v.grant;
    let live = matches!(v.state, GrantState::Active | GrantState::Pending);
    serde_json::json!({
        "id": g.id.to_string(),
        "who": v.grantee_label,
        "kind": match v.grantee_kind {
            "organisation" => "Organisation",
            "invitation" => "Invited by email",
            _ => "Person",
        },
        "state": v.state.label(),
        "state_class": match v.state {
            GrantState::Active => "nhsuk-tag--green",
            GrantState::Pending => "nhsuk-tag--yellow",
            GrantState::Revoked => "nhsuk-tag--red",
            GrantState::Expired => "nhsuk-tag--grey",
        },
        "live": live,
        "permissions": g.permissions.labels(),
        "categories": g.categories.iter().map(|c| c.label()).collect::<Vec<_>>(),
        "since": long_date(g.starts.date()),
        "until": long_date(last_day(v.grant.ends)),
        "stopped": g.revoked_at.map(date_time),
        "purpose": g.purpose,
        "proxy": g.proxy.as_ref().map(|x| serde_json::json!({
            "org": v.proxy_org.clone().unwrap_or_else(|| "An organisation".into()),
            "basis": x.basis.label(),
        })),
    })
}

#[derive(Deserialize)]
pub struct Done {
    done: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    p: Subject,
    Query(q): Query<Done>,
) -> Result<Response, WebError> {
    let grants = state.core.grants(&p.principal, p.patient).await?;
    let header = state.core.header(&p.principal, p.patient).await?;
    let mut ctx = record_context(&state, &p, &header.demographics, &header.standing);
    let (live, ended): (Vec<_>, Vec<_>) = grants
        .iter()
        .partition(|v| matches!(v.state, GrantState::Active | GrantState::Pending));
    ctx.insert(
        "live",
        &live.iter().map(|v| grant_row(v)).collect::<Vec<_>>(),
    );
    ctx.insert(
        "ended",
        &ended.iter().map(|v| grant_row(v)).collect::<Vec<_>>(),
    );
    let notice = match q.done.as_deref() {
        Some("shared-person") => Some("Invitation sent. Sharing starts when they accept it."),
        Some("shared-organisation") => Some("Shared. The organisation's staff can see it now."),
        Some("changed") => Some("Sharing changed. It applies from now."),
        Some("stopped") => Some("Sharing stopped. They can no longer see the record."),
        _ => None,
    };
    if let Some(n) = notice {
        ctx.insert("notice", n);
    }
    if p.principal.own_patient != Some(p.patient) {
        ctx.insert("nav", "people");
    } else {
        ctx.insert("nav", "sharing");
    }
    let title = whose(
        &p,
        &header.demographics,
        "Who you share your record with",
        "sharing",
    );
    render(
        &state,
        &p.viewer,
        StatusCode::OK,
        "sharing.html",
        &title,
        ctx,
    )
}

#[derive(Deserialize, Serialize, Default)]
pub struct ShareForm {
    #[serde(default, skip_serializing)]
    csrf_token: String,
    /// `person` or `organisation`.
    #[serde(default, rename = "grantee-kind")]
    kind: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    organisation: String,
    #[serde(flatten)]
    terms: TermsForm,
}

async fn share_page(
    state: &AppState,
    p: &Subject,
    status: StatusCode,
    form: &ShareForm,
    errors: &[FieldError],
) -> Result<Response, WebError> {
    let header = state.core.header(&p.principal, p.patient).await?;
    if !header.standing.can.share {
        return Err(WebError::NotFound);
    }
    let mut ctx = record_context(state, p, &header.demographics, &header.standing);
    let orgs: Vec<_> = state
        .core
        .organisations()?
        .into_iter()
        .map(|(id, name)| serde_json::json!({ "id": id.to_string(), "name": name }))
        .collect();
    ctx.insert("organisations", &orgs);
    ctx.insert("values", form);
    ctx.insert("terms", &form.terms);
    ctx.insert("categories", &form.terms.categories());
    insert_errors(&mut ctx, errors);
    render(
        state,
        &p.viewer,
        status,
        "sharing_new.html",
        "Share the record",
        ctx,
    )
}

pub async fn new_page(State(state): State<AppState>, p: Subject) -> Result<Response, WebError> {
    let form = ShareForm {
        kind: "person".into(),
        terms: TermsForm::new(state.core.today()),
        ..Default::default()
    };
    share_page(&state, &p, StatusCode::OK, &form, &[]).await
}

fn parse_grantee(form: &ShareForm) -> Result<NewGrantee, FieldError> {
    match form.kind.as_str() {
        "person" => Email::parse(&form.email)
            .map(NewGrantee::Person)
            .map_err(|e| FieldError::new("email", e.to_string())),
        "organisation" => form
            .organisation
            .parse::<OrgId>()
            .map(NewGrantee::Organisation)
            .map_err(|_| FieldError::new("organisation", "Choose an organisation")),
        _ => Err(FieldError::new(
            "grantee-kind",
            "Choose whether you are sharing with a person or an organisation",
        )),
    }
}

pub async fn create(
    State(state): State<AppState>,
    p: Subject,
    s: Submitted<ShareForm>,
) -> Result<Response, WebError> {
    let form = s.form;
    let grantee = parse_grantee(&form);
    let terms = form.terms.parse();
    let (grantee, terms) = match (grantee, terms) {
        (Ok(g), Ok(t)) => (g, t),
        (g, t) => {
            let mut errors: Vec<FieldError> = g.err().into_iter().collect();
            errors.extend(t.err().unwrap_or_default());
            return share_page(&state, &p, StatusCode::UNPROCESSABLE_ENTITY, &form, &errors).await;
        }
    };
    let done = match grantee {
        NewGrantee::Person(_) => "shared-person",
        NewGrantee::Organisation(_) => "shared-organisation",
    };
    match state
        .core
        .share(&p.principal, p.patient, grantee, terms)
        .await
    {
        Ok(_) => see_other(&p.at(&format!("/sharing?done={done}"))),
        Err(DomainError::Invalid(errors)) => {
            share_page(&state, &p, StatusCode::UNPROCESSABLE_ENTITY, &form, &errors).await
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize, Serialize, Default)]
pub struct ChangeForm {
    #[serde(default, skip_serializing)]
    csrf_token: String,
    #[serde(flatten)]
    terms: TermsForm,
}

async fn change_page(
    state: &AppState,
    p: &Subject,
    id: GrantId,
    status: StatusCode,
    form: Option<&TermsForm>,
    errors: &[FieldError],
) -> Result<Response, WebError> {
    let v = state.core.grant(&p.principal, p.patient, id).await?;
    if !matches!(v.state, GrantState::Active | GrantState::Pending) {
        return Err(WebError::NotFound);
    }
    let header = state.core.header(&p.principal, p.patient).await?;
    let mut ctx = record_context(state, p, &header.demographics, &header.standing);
    let from_grant = TermsForm::from_terms(
        v.grant.permissions,
        &v.grant.categories,
        last_day(v.grant.ends),
        &v.grant.purpose,
    );
    let terms = form.unwrap_or(&from_grant);
    ctx.insert("grant", &grant_row(&v));
    ctx.insert("allow_act", &(v.grantee_kind != "organisation"));
    ctx.insert("terms", terms);
    ctx.insert("categories", &terms.categories());
    insert_errors(&mut ctx, errors);
    let title = format!("Change what {} can see", v.grantee_label);
    render(state, &p.viewer, status, "sharing_change.html", &title, ctx)
}

pub async fn change_page_get(
    State(state): State<AppState>,
    p: Subject,
    Path(params): Params,
) -> Result<Response, WebError> {
    let id = param::<GrantId>(&params, "grant")?;
    change_page(&state, &p, id, StatusCode::OK, None, &[]).await
}

pub async fn change(
    State(state): State<AppState>,
    p: Subject,
    Path(params): Params,
    s: Submitted<ChangeForm>,
) -> Result<Response, WebError> {
    let id = param::<GrantId>(&params, "grant")?;
    let form = s.form;
    let terms = match form.terms.parse() {
        Ok(t) => t,
        Err(errors) => {
            return change_page(
                &state,
                &p,
                id,
                StatusCode::UNPROCESSABLE_ENTITY,
                Some(&form.terms),
                &errors,
            )
            .await
        }
    };
    match state
        .core
        .change_grant(&p.principal, p.patient, id, terms)
        .await
    {
        Ok(()) => see_other(&p.at("/sharing?done=changed")),
        Err(DomainError::Invalid(errors)) => {
            change_page(
                &state,
                &p,
                id,
                StatusCode::UNPROCESSABLE_ENTITY,
                Some(&form.terms),
                &errors,
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn stop(
    State(state): State<AppState>,
    p: Subject,
    Path(params): Params,
    _s: Submitted<CsrfOnly>,
) -> Result<Response, WebError> {
    let id = param::<GrantId>(&params, "grant")?;
    state.core.revoke_grant(&p.principal, p.patient, id).await?;
    see_other(&p.at("/sharing?done=stopped"))
}
