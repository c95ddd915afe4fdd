//! Organisation pages: the organisations one belongs to, each one's home,
//! a professional's patient lookup with emergency access (break-glass), and
//! the administrator's pages (staff, proxy set-up, the emergency-access
//! report). Every decision is the domain's; pages for an organisation one is
//! not a member of (or not an administrator of) answer "not found".

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use keyhold_domain::consent::{LegalBasis, StaffRole};
use keyhold_domain::policy::Principal;
use keyhold_domain::search::{PersonQuery, SearchOutcome};
use keyhold_domain::{
    AccountId, DomainError, Email, FieldError, Keyhold, NhsNumber, OrgId, PatientId, ProxyRequest,
};
use serde::{Deserialize, Serialize};
use tera::Context;

use crate::error::WebError;
use crate::extract::{csrf_field, param, CsrfOnly, Params, SignedIn, Submitted, Viewer};
use crate::pages::{date_time, insert_errors, long_date, render, see_other};
use crate::route_table::Routes;
use crate::routes::record::parse_date;
use crate::routes::terms::TermsForm;
use crate::AppState;

csrf_field!(
    FindForm,
    EmergencyForm,
    InviteForm,
    RoleForm,
    ProxyForm,
    FeedForm
);

pub(crate) fn routes() -> Routes {
    Routes::new()
        .route("/organisations", get(list))
        .route("/organisations/{org}", get(home))
        .route("/organisations/{org}/find", post(find))
        .route("/organisations/{org}/emergency", post(emergency))
        .route("/organisations/{org}/staff", get(staff).post(invite))
        .route(
            "/organisations/{org}/staff/{account}/role",
            post(change_role),
        )
        .route("/organisations/{org}/staff/{account}/remove", post(remove))
        .route(
            "/organisations/{org}/proxies/new",
            get(new_proxy).post(create_proxy),
        )
        .route("/organisations/{org}/emergency-access", get(report))
        .route("/organisations/{org}/feeds", get(feeds).post(register_feed))
        .route(
            "/organisations/{org}/feeds/{client}/revoke",
            post(revoke_feed),
        )
}

// ---------------------------------------------------------------------------
// Shared pieces

/// `?done=…` after a redirect: which success notice to show.
#[derive(Deserialize, Default)]
pub struct Done {
    done: Option<String>,
}

fn notice(done: Option<&str>) -> Option<&'static str> {
    Some(match done? {
        "proxy" => "Proxy access set up. We have emailed the carer an invitation to accept it.",
        "invited" => "Invitation sent. It is listed below until it is accepted.",
        "role" => "Role changed.",
        "removed" => "Removed from your organisation. Their access through it has ended.",
        "registered" => "System registered. Give it its client ID; it can ask for a token now.",
        "stopped" => "System stopped. Its tokens no longer work.",
        _ => return None,
    })
}

fn signed_in(viewer: &Viewer) -> Result<Principal, WebError> {
    viewer.principal.clone().ok_or(WebError::Unauthenticated)
}

/// The principal's role in `org`; "not found" unless an active member.
fn role_in(p: &Principal, org: OrgId) -> Result<StaffRole, WebError> {
    p.memberships
        .iter()
        .find(|m| m.org == org)
        .map(|m| m.role)
        .ok_or(WebError::NotFound)
}

/// The domain's rule (administrators only; anyone else: not found), checked
/// before a page shows anything.
fn require_admin(p: &Principal, org: OrgId) -> Result<(), WebError> {
    Ok(Keyhold::require_admin(p, org)?)
}

/// The context of every organisation page, and the organisation's name.
fn named_org_context(state: &AppState, org: OrgId) -> Result<(Context, String), WebError> {
    let name = state.core.organisation_name(org)?;
    let mut ctx = Context::new();
    ctx.insert("nav", "organisations");
    ctx.insert("org", &org.to_string());
    ctx.insert("org_name", &name);
    Ok((ctx, name))
}

fn org_context(state: &AppState, org: OrgId) -> Result<Context, WebError> {
    Ok(named_org_context(state, org)?.0)
}

#[derive(Serialize)]
struct Choice {
    value: &'static str,
    label: &'static str,
}

fn role_choices() -> Vec<Choice> {
    StaffRole::ALL
        .into_iter()
        .map(|r| Choice {
            value: r.slug(),
            label: r.label(),
        })
        .collect()
}

// ---------------------------------------------------------------------------
// The list and the home page

#[derive(Serialize)]
struct OrgRow {
    id: String,
    name: String,
    role: &'static str,
}

pub async fn list(State(state): State<AppState>, s: SignedIn) -> Result<Response, WebError> {
    let mut orgs = Vec::new();
    for m in &s.principal.memberships {
        orgs.push(OrgRow {
            id: m.org.to_string(),
            name: state.core.organisation_name(m.org)?,
            role: m.role.label(),
        });
    }
    orgs.sort_by_key(|o| o.name.to_lowercase());
    let mut ctx = Context::new();
    ctx.insert("nav", "organisations");
    ctx.insert("orgs", &orgs);
    render(
        &state,
        &s.viewer,
        StatusCode::OK,
        "org_list.html",
        "Your organisations",
        ctx,
    )
}

/// The person search as typed: by NHS number (with an optional date of
/// birth), or by name and date of birth. `by` says which form was sent.
#[derive(Deserialize, Serialize, Default)]
pub struct FindForm {
    #[serde(default, skip_serializing)]
    csrf_token: String,
    #[serde(default)]
    by: String,
    #[serde(default, rename = "nhs-number")]
    nhs_number: String,
    #[serde(default, rename = "nhs-dob-day")]
    nhs_dob_day: String,
    #[serde(default, rename = "nhs-dob-month")]
    nhs_dob_month: String,
    #[serde(default, rename = "nhs-dob-year")]
    nhs_dob_year: String,
    #[serde(default)]
    name: String,
    #[serde(default, rename = "dob-day")]
    dob_day: String,
    #[serde(default, rename = "dob-month")]
    dob_month: String,
    #[serde(default, rename = "dob-year")]
    dob_year: String,
}

impl FindForm {
    /// The query, or the errors to show beside the fields.
    fn parse(&self) -> Result<PersonQuery, Vec<FieldError>> {
        let blank = |d: &str, m: &str, y: &str| {
            d.trim().is_empty() && m.trim().is_empty() && y.trim().is_empty()
        };
        if self.by == "name" {
            let mut errors = Vec::new();
            if self.name.trim().is_empty() {
                errors.push(FieldError::new("name", "Enter a name"));
            } else if self.name.chars().count() > 100 {
                errors.push(FieldError::new(
                    "name",
                    "Name must be 100 characters or fewer",
                ));
            }
            let dob = parse_date("dob-day", &self.dob_day, &self.dob_month, &self.dob_year)
                .map_err(|e| {
                    errors.push(FieldError::new(
                        "dob-day",
                        if e.message == "Enter the date" {
                            "Enter their date of birth".to_string()
                        } else {
                            e.message
                        },
                    ))
                })
                .ok();
            return match dob {
                Some(date_of_birth) if errors.is_empty() => Ok(PersonQuery::Name {
                    name: self.name.trim().to_string(),
                    date_of_birth,
                }),
                _ => Err(errors),
            };
        }
        let mut errors = Vec::new();
        let nhs = NhsNumber::parse(&self.nhs_number)
            .map_err(|e| errors.push(FieldError::new("nhs-number", e.to_string())))
            .ok();
        let dob = if blank(&self.nhs_dob_day, &self.nhs_dob_month, &self.nhs_dob_year) {
            None
        } else {
            parse_date(
                "nhs-dob-day",
                &self.nhs_dob_day,
                &self.nhs_dob_month,
                &self.nhs_dob_year,
            )
            .map_err(|e| errors.push(e))
            .ok()
        };
        match nhs {
            Some(nhs) if errors.is_empty() => Ok(PersonQuery::NhsNumber {
                nhs,
                date_of_birth: dob,
            }),
            _ => Err(errors),
        }
    }
}

/// One person in the search results, as the page shows them.
#[derive(Serialize)]
struct PersonRow {
    id: String,
    name: String,
    nhs_number: String,
    date_of_birth: String,
    gender: &'static str,
    sensitive: bool,
    deceased: bool,
    postcode: String,
}

/// What the results part of the home page shows after a search.
#[derive(Serialize)]
struct Results {
    people: Vec<PersonRow>,
    more: bool,
    by_name: bool,
}

#[allow(clippy::too_many_arguments)]
fn home_page(
    state: &AppState,
    viewer: &Viewer,
    p: &Principal,
    org: OrgId,
    status: StatusCode,
    form: &FindForm,
    errors: &[FieldError],
    done: Option<&str>,
    results: Option<Results>,
) -> Result<Response, WebError> {
    let role = role_in(p, org)?;
    let (mut ctx, name) = named_org_context(state, org)?;
    ctx.insert("role", role.label());
    ctx.insert("clinical", &role.is_clinical());
    ctx.insert("admin", &(role == StaffRole::Administrator));
    ctx.insert("records_officer", &(role == StaffRole::RecordsOfficer));
    ctx.insert("values", form);
    ctx.insert("by", if form.by == "name" { "name" } else { "nhs" });
    if let Some(r) = results {
        ctx.insert("results", &r);
    }
    insert_errors(&mut ctx, errors);
    if let Some(n) = notice(done) {
        ctx.insert("notice", n);
    }
    render(state, viewer, status, "org_home.html", &name, ctx)
}

pub async fn home(
    State(state): State<AppState>,
    s: SignedIn,
    Path(params): Params,
    Query(q): Query<Done>,
) -> Result<Response, WebError> {
    let org: OrgId = param(&params, "org")?;
    home_page(
        &state,
        &s.viewer,
        &s.principal,
        org,
        StatusCode::OK,
        &FindForm::default(),
        &[],
        q.done.as_deref(),
        None,
    )
}

// ---------------------------------------------------------------------------
// Finding a patient, and emergency access

/// The page offered when the record is not shared with the organisation. It
/// shows nothing of the patient (there is no access yet): only the NHS
/// number that was typed.
#[allow(clippy::too_many_arguments)]
fn break_glass_page(
    state: &AppState,
    viewer: &Viewer,
    org: OrgId,
    status: StatusCode,
    patient: PatientId,
    nhs: Option<NhsNumber>,
    reason: &str,
    errors: &[FieldError],
) -> Result<Response, WebError> {
    let mut ctx = org_context(state, org)?;
    ctx.insert("patient", &patient.to_string());
    ctx.insert("nhs_number", &nhs.map(|n| n.to_string()));
    ctx.insert(
        "minutes",
        &state.core.settings().break_glass_duration.whole_minutes(),
    );
    ctx.insert("reason", reason);
    insert_errors(&mut ctx, errors);
    render(
        state,
        viewer,
        status,
        "org_break_glass.html",
        "You do not have access to this record",
        ctx,
    )
}

pub async fn find(
    State(state): State<AppState>,
    Path(params): Params,
    s: Submitted<FindForm>,
) -> Result<Response, WebError> {
    let org: OrgId = param(&params, "org")?;
    let p = signed_in(&s.viewer)?;
    if !role_in(&p, org)?.is_clinical() {
        return Err(WebError::NotFound);
    }
    let page = |status, errors: &[FieldError], results| {
        home_page(
            &state, &s.viewer, &p, org, status, &s.form, errors, None, results,
        )
    };
    let query = match s.form.parse() {
        Ok(q) => q,
        Err(errors) => return page(StatusCode::UNPROCESSABLE_ENTITY, &errors, None),
    };
    match state.core.search_people(&p, org, &query).await? {
        SearchOutcome::NoRecord => page(
            StatusCode::UNPROCESSABLE_ENTITY,
            &[FieldError::new(
                "nhs-number",
                "No Keyhold record has this NHS number",
            )],
            None,
        ),
        SearchOutcome::NotShared { patient } => {
            let nhs = match query {
                PersonQuery::NhsNumber { nhs, .. } => Some(nhs),
                PersonQuery::Name { .. } => None,
            };
            break_glass_page(
                &state,
                &s.viewer,
                org,
                StatusCode::OK,
                patient,
                nhs,
                "",
                &[],
            )
        }
        SearchOutcome::Found { people, more } => {
            let today = state.core.today();
            let people = people
                .into_iter()
                .map(|m| PersonRow {
                    id: m.patient.to_string(),
                    name: m.name,
                    nhs_number: m
                        .nhs_number
                        .map(|n| n.to_string())
                        .unwrap_or_else(|| "Not recorded".into()),
                    date_of_birth: m
                        .date_of_birth
                        .map(long_date)
                        .unwrap_or_else(|| "Not recorded".into()),
                    gender: m.gender.label(),
                    sensitive: m.sensitive,
                    deceased: m.date_of_death.is_some_and(|d| d <= today),
                    postcode: m.postcode,
                })
                .collect();
            page(
                StatusCode::OK,
                &[],
                Some(Results {
                    people,
                    more,
                    by_name: matches!(query, PersonQuery::Name { .. }),
                }),
            )
        }
    }
}

#[derive(Deserialize, Default)]
pub struct EmergencyForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    patient: String,
    /// The number typed into the lookup, carried along only to show it again.
    #[serde(default, rename = "nhs-number")]
    nhs_number: String,
    #[serde(default)]
    reason: String,
}

pub async fn emergency(
    State(state): State<AppState>,
    Path(params): Params,
    s: Submitted<EmergencyForm>,
) -> Result<Response, WebError> {
    let org: OrgId = param(&params, "org")?;
    let p = signed_in(&s.viewer)?;
    let patient: PatientId = s.form.patient.parse().map_err(|_| WebError::NotFound)?;
    match state
        .core
        .break_glass(&p, org, patient, &s.form.reason)
        .await
    {
        Ok(_) => see_other(&format!("/people/{patient}/record")),
        Err(DomainError::Invalid(errors)) => break_glass_page(
            &state,
            &s.viewer,
            org,
            StatusCode::UNPROCESSABLE_ENTITY,
            patient,
            NhsNumber::parse(&s.form.nhs_number).ok(),
            &s.form.reason,
            &errors,
        ),
        Err(e) => Err(e.into()),
    }
}

// ---------------------------------------------------------------------------
// Staff (administrators)

#[derive(Serialize)]
struct StaffRow {
    account: String,
    name: String,
    email: String,
    role: &'static str,
    role_label: &'static str,
    active: bool,
    you: bool,
}

#[derive(Serialize)]
struct PendingRow {
    email: String,
    role_label: &'static str,
    expires: String,
}

#[derive(Deserialize, Serialize, Default)]
pub struct InviteForm {
    #[serde(default, skip_serializing)]
    csrf_token: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    role: String,
}

#[allow(clippy::too_many_arguments)]
fn staff_page(
    state: &AppState,
    viewer: &Viewer,
    p: &Principal,
    org: OrgId,
    status: StatusCode,
    invite: &InviteForm,
    errors: &[FieldError],
    done: Option<&str>,
) -> Result<Response, WebError> {
    let (members, pending) = state.core.staff(p, org)?;
    let members: Vec<StaffRow> = members
        .into_iter()
        .map(|m| StaffRow {
            account: m.account.to_string(),
            name: m.name,
            email: m.email,
            role: m.role.slug(),
            role_label: m.role.label(),
            active: m.active,
            you: m.account == p.account,
        })
        .collect();
    let pending: Vec<PendingRow> = pending
        .into_iter()
        .map(|i| PendingRow {
            email: i.email,
            role_label: i.role.label(),
            expires: date_time(i.expires_at),
        })
        .collect();
    let mut ctx = org_context(state, org)?;
    ctx.insert("members", &members);
    ctx.insert("pending", &pending);
    ctx.insert("roles", &role_choices());
    ctx.insert("values", invite);
    insert_errors(&mut ctx, errors);
    if let Some(n) = notice(done) {
        ctx.insert("notice", n);
    }
    render(state, viewer, status, "org_staff.html", "Staff", ctx)
}

pub async fn staff(
    State(state): State<AppState>,
    s: SignedIn,
    Path(params): Params,
    Query(q): Query<Done>,
) -> Result<Response, WebError> {
    let org: OrgId = param(&params, "org")?;
    let invite = InviteForm {
        role: StaffRole::Doctor.slug().into(),
        ..Default::default()
    };
    staff_page(
        &state,
        &s.viewer,
        &s.principal,
        org,
        StatusCode::OK,
        &invite,
        &[],
        q.done.as_deref(),
    )
}

pub async fn invite(
    State(state): State<AppState>,
    Path(params): Params,
    s: Submitted<InviteForm>,
) -> Result<Response, WebError> {
    let org: OrgId = param(&params, "org")?;
    let p = signed_in(&s.viewer)?;
    require_admin(&p, org)?;
    let invalid = |errors: Vec<FieldError>| {
        staff_page(
            &state,
            &s.viewer,
            &p,
            org,
            StatusCode::UNPROCESSABLE_ENTITY,
            &s.form,
            &errors,
            None,
        )
    };
    let Some(role) = StaffRole::parse(&s.form.role) else {
        return invalid(vec![FieldError::new("role", "Select their role")]);
    };
    match state.core.invite_staff(&p, org, &s.form.email, role).await {
        Ok(()) => see_other(&format!("/organisations/{org}/staff?done=invited")),
        Err(DomainError::Invalid(errors)) => invalid(errors),
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize, Default)]
pub struct RoleForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    role: String,
}

/// After a change to one member: back to the list, or the list again with
/// what went wrong (removing or demoting oneself, a change made meanwhile).
fn after_change(
    state: &AppState,
    viewer: &Viewer,
    p: &Principal,
    org: OrgId,
    result: Result<(), DomainError>,
    done: &str,
) -> Result<Response, WebError> {
    let errors = match result {
        Ok(()) => return see_other(&format!("/organisations/{org}/staff?done={done}")),
        Err(DomainError::Invalid(errors)) => errors,
        Err(DomainError::Conflict) => vec![FieldError::new(
            "staff",
            "Someone else changed this at the same time. Check the list and try again",
        )],
        Err(e) => return Err(e.into()),
    };
    let invite = InviteForm {
        role: StaffRole::Doctor.slug().into(),
        ..Default::default()
    };
    staff_page(
        state,
        viewer,
        p,
        org,
        StatusCode::UNPROCESSABLE_ENTITY,
        &invite,
        &errors,
        None,
    )
}

pub async fn change_role(
    State(state): State<AppState>,
    Path(params): Params,
    s: Submitted<RoleForm>,
) -> Result<Response, WebError> {
    let org: OrgId = param(&params, "org")?;
    let account: AccountId = param(&params, "account")?;
    let p = signed_in(&s.viewer)?;
    require_admin(&p, org)?;
    let result = match StaffRole::parse(&s.form.role) {
        Some(role) => state.core.set_staff_role(&p, org, account, role).await,
        None => Err(DomainError::invalid("staff", "Select a role")),
    };
    after_change(&state, &s.viewer, &p, org, result, "role")
}

pub async fn remove(
    State(state): State<AppState>,
    Path(params): Params,
    s: Submitted<CsrfOnly>,
) -> Result<Response, WebError> {
    let org: OrgId = param(&params, "org")?;
    let account: AccountId = param(&params, "account")?;
    let p = signed_in(&s.viewer)?;
    require_admin(&p, org)?;
    let result = state.core.remove_staff(&p, org, account).await;
    after_change(&state, &s.viewer, &p, org, result, "removed")
}

// ---------------------------------------------------------------------------
// Proxy access (administrators)

#[derive(Deserialize, Serialize, Default)]
pub struct ProxyForm {
    #[serde(default, skip_serializing)]
    csrf_token: String,
    #[serde(default, rename = "nhs-number")]
    nhs_number: String,
    #[serde(default, rename = "carer-email")]
    carer_email: String,
    #[serde(default)]
    basis: String,
    #[serde(flatten)]
    terms: TermsForm,
}

fn proxy_page(
    state: &AppState,
    viewer: &Viewer,
    org: OrgId,
    status: StatusCode,
    form: &ProxyForm,
    errors: &[FieldError],
) -> Result<Response, WebError> {
    let mut ctx = org_context(state, org)?;
    let bases: Vec<Choice> = LegalBasis::ALL
        .into_iter()
        .map(|b| Choice {
            value: b.slug(),
            label: b.label(),
        })
        .collect();
    ctx.insert("bases", &bases);
    ctx.insert("values", form);
    ctx.insert("terms", &form.terms);
    ctx.insert("categories", &form.terms.categories());
    insert_errors(&mut ctx, errors);
    render(
        state,
        viewer,
        status,
        "org_proxy_new.html",
        "Set up proxy access",
        ctx,
    )
}

pub async fn new_proxy(
    State(state): State<AppState>,
    s: SignedIn,
    Path(params): Params,
) -> Result<Response, WebError> {
    let org: OrgId = param(&params, "org")?;
    require_admin(&s.principal, org)?;
    let form = ProxyForm {
        terms: TermsForm::new(state.core.today()),
        ..Default::default()
    };
    proxy_page(&state, &s.viewer, org, StatusCode::OK, &form, &[])
}

fn parse_proxy(form: &ProxyForm) -> Result<ProxyRequest, Vec<FieldError>> {
    let mut errors = Vec::new();
    let nhs_number = NhsNumber::parse(&form.nhs_number)
        .map_err(|e| errors.push(FieldError::new("nhs-number", e.to_string())))
        .ok();
    let carer_email = Email::parse(&form.carer_email)
        .map_err(|e| errors.push(FieldError::new("carer-email", e.to_string())))
        .ok();
    let basis = LegalBasis::parse(&form.basis);
    if basis.is_none() {
        errors.push(FieldError::new(
            "basis",
            "Select the legal basis for proxy access",
        ));
    }
    let terms = form.terms.parse().map_err(|e| errors.extend(e)).ok();
    match (nhs_number, carer_email, basis, terms) {
        (Some(nhs_number), Some(carer_email), Some(basis), Some(terms)) if errors.is_empty() => {
            Ok(ProxyRequest {
                nhs_number,
                carer_email,
                basis,
                terms,
            })
        }
        _ => Err(errors),
    }
}

pub async fn create_proxy(
    State(state): State<AppState>,
    Path(params): Params,
    s: Submitted<ProxyForm>,
) -> Result<Response, WebError> {
    let org: OrgId = param(&params, "org")?;
    let p = signed_in(&s.viewer)?;
    require_admin(&p, org)?;
    let invalid = |errors: Vec<FieldError>| {
        proxy_page(
            &state,
            &s.viewer,
            org,
            StatusCode::UNPROCESSABLE_ENTITY,
            &s.form,
            &errors,
        )
    };
    let request = match parse_proxy(&s.form) {
        Ok(r) => r,
        Err(errors) => return invalid(errors),
    };
    match state.core.set_up_proxy(&p, org, request).await {
        Ok(_) => see_other(&format!("/organisations/{org}?done=proxy")),
        Err(DomainError::Invalid(errors)) => invalid(errors),
        Err(e) => Err(e.into()),
    }
}

// ---------------------------------------------------------------------------
// The emergency-access report (administrators)

#[derive(Serialize)]
struct UseRow {
    professional: String,
    patient_name: String,
    nhs_number: String,
    reason: String,
    opened_at: String,
    ends_at: String,
}

pub async fn report(
    State(state): State<AppState>,
    s: SignedIn,
    Path(params): Params,
) -> Result<Response, WebError> {
    let org: OrgId = param(&params, "org")?;
    let uses: Vec<UseRow> = state
        .core
        .break_glass_report(&s.principal, org)
        .await?
        .into_iter()
        .map(|u| UseRow {
            professional: u.professional,
            patient_name: u.patient_name,
            nhs_number: u.nhs_number,
            reason: u.reason,
            opened_at: date_time(u.opened_at),
            ends_at: date_time(u.expires_at),
        })
        .collect();
    let mut ctx = org_context(&state, org)?;
    ctx.insert("uses", &uses);
    render(
        &state,
        &s.viewer,
        StatusCode::OK,
        "org_emergency_access.html",
        "Emergency access report",
        ctx,
    )
}

#[derive(Deserialize, Serialize, Default)]
pub struct FeedForm {
    #[serde(default, skip_serializing)]
    csrf_token: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    jwks: String,
}

#[derive(Serialize)]
struct FeedRow {
    id: String,
    name: String,
    key_ids: Vec<String>,
    registered: String,
    active: bool,
    revoked: String,
}

#[allow(clippy::too_many_arguments)]
fn feeds_page(
    state: &AppState,
    viewer: &Viewer,
    p: &Principal,
    org: OrgId,
    status: StatusCode,
    form: &FeedForm,
    errors: &[FieldError],
    done: Option<&str>,
) -> Result<Response, WebError> {
    let clients: Vec<FeedRow> = state
        .core
        .feed_clients(p, org)?
        .into_iter()
        .map(|c| FeedRow {
            id: c.id.to_string(),
            name: c.name,
            key_ids: c.key_ids,
            registered: date_time(c.registered_at),
            active: c.revoked_at.is_none(),
            revoked: c.revoked_at.map(date_time).unwrap_or_default(),
        })
        .collect();
    let mut ctx = org_context(state, org)?;
    ctx.insert("clients", &clients);
    ctx.insert("values", form);
    ctx.insert("token_url", &crate::routes::fhir::token_url(state));
    ctx.insert("fhir_base", &crate::routes::fhir::api_base(state));
    insert_errors(&mut ctx, errors);
    if let Some(n) = notice(done) {
        ctx.insert("notice", n);
    }
    render(state, viewer, status, "org_feeds.html", "Data feeds", ctx)
}

/// Administrators: the organisation's systems that feed records in.
pub async fn feeds(
    State(state): State<AppState>,
    s: SignedIn,
    Path(params): Params,
    Query(q): Query<Done>,
) -> Result<Response, WebError> {
    let org: OrgId = param(&params, "org")?;
    require_admin(&s.principal, org)?;
    feeds_page(
        &state,
        &s.viewer,
        &s.principal,
        org,
        StatusCode::OK,
        &FeedForm::default(),
        &[],
        q.done.as_deref(),
    )
}

pub async fn register_feed(
    State(state): State<AppState>,
    Path(params): Params,
    s: Submitted<FeedForm>,
) -> Result<Response, WebError> {
    let org: OrgId = param(&params, "org")?;
    let p = signed_in(&s.viewer)?;
    require_admin(&p, org)?;
    match state
        .core
        .register_feed_client(&p, org, &s.form.name, &s.form.jwks)
        .await
    {
        Ok(_) => see_other(&format!("/organisations/{org}/feeds?done=registered")),
        Err(DomainError::Invalid(errors)) => {
            // A pasted private key is never sent back to the browser.
            let private = s.form.jwks.contains("\"d\"") || s.form.jwks.contains("\"p\"");
            let form = FeedForm {
                csrf_token: String::new(),
                name: s.form.name.clone(),
                jwks: if private {
                    String::new()
                } else {
                    s.form.jwks.clone()
                },
            };
            feeds_page(
                &state,
                &s.viewer,
                &p,
                org,
                StatusCode::UNPROCESSABLE_ENTITY,
                &form,
                &errors,
                None,
            )
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn revoke_feed(
    State(state): State<AppState>,
    Path(params): Params,
    s: Submitted<CsrfOnly>,
) -> Result<Response, WebError> {
    let org: OrgId = param(&params, "org")?;
    let client: keyhold_domain::FeedClientId = param(&params, "client")?;
    let p = signed_in(&s.viewer)?;
    state.core.revoke_feed_client(&p, org, client).await?;
    see_other(&format!("/organisations/{org}/feeds?done=stopped"))
}
