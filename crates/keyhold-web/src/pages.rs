//! Tera templates (embedded at build time) and the context every page shares.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use keyhold_domain::policy::Basis;
use keyhold_domain::{Capabilities, Demographics, FieldError, PatientId, Standing};
use serde::Serialize;
use tera::{Context, Tera};
use time::{Date, OffsetDateTime};

use crate::error::{ErrorPage, WebError};
use crate::extract::{Subject, Viewer};
use crate::AppState;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
}

pub use embedded::ASSETS;

pub struct Pages {
    tera: Tera,
}

impl Pages {
    pub fn load() -> Result<Self, WebError> {
        let mut tera = Tera::default();
        tera.add_raw_templates(embedded::TEMPLATES.iter().map(|(n, s)| (*n, *s)))
            .map_err(|e| WebError::Internal(format!("templates: {e:?}")))?;
        tera.autoescape_on(vec![".html"]);
        Ok(Pages { tera })
    }

    pub fn render(&self, name: &str, ctx: &Context) -> Result<String, WebError> {
        self.tera
            .render(name, ctx)
            .map_err(|e| WebError::Internal(format!("render {name}: {e:?}")))
    }
}

/// `s` as one query-string value: every byte but the unreserved ones
/// (RFC 3986) percent-encoded. (Tera's `urlencode` filters need a feature we
/// leave off.)
pub fn query_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// 303 See Other to a path on this site: where a form goes after it worked.
pub fn see_other(to: &str) -> Result<Response, WebError> {
    let to =
        axum::http::HeaderValue::from_str(to).map_err(|e| WebError::Internal(e.to_string()))?;
    Ok((StatusCode::SEE_OTHER, [(axum::http::header::LOCATION, to)]).into_response())
}

/// The context every page needs: title, CSRF token, who is signed in.
pub fn base_context(state: &AppState, viewer: &Viewer, title: &str) -> Context {
    let mut ctx = Context::new();
    ctx.insert("page_title", title);
    ctx.insert("csrf_token", &viewer.csrf_token(state));
    ctx.insert("signed_in", &viewer.principal.is_some());
    if let Some(p) = &viewer.principal {
        // What the header offers: one's own record, the people one cares for,
        // one's organisations.
        ctx.insert("own_record", &p.own_patient.is_some());
        ctx.insert("member", &!p.memberships.is_empty());
        ctx.insert(
            "cares",
            &state.core.has_grants(p.account).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "could not tell whether the account cares for anyone");
                false
            }),
        );
    }
    if let Some(e) = &viewer.account_email {
        ctx.insert("account_email", e);
    }
    ctx
}

/// Renders `template` with the base context plus `ctx`.
pub fn render(
    state: &AppState,
    viewer: &Viewer,
    status: StatusCode,
    template: &str,
    title: &str,
    ctx: Context,
) -> Result<Response, WebError> {
    let mut full = base_context(state, viewer, title);
    full.extend(ctx);
    let html = state.pages.render(template, &full)?;
    Ok((status, Html(html)).into_response())
}

pub fn error_page(
    state: &AppState,
    viewer: &Viewer,
    status: StatusCode,
    page: &ErrorPage,
) -> Response {
    let mut ctx = Context::new();
    ctx.insert("status", &status.as_u16());
    ctx.insert("heading", &page.heading);
    ctx.insert("message", &page.message);
    match render(state, viewer, status, "error.html", &page.heading, ctx) {
        Ok(r) => r,
        // The error page itself failed: say so plainly rather than loop.
        Err(e) => {
            tracing::error!(error = %e, "error page failed to render");
            (
                status,
                Html(format!(
                    "<!DOCTYPE html><html lang=\"en\"><title>{0}</title><h1>{0}</h1></html>",
                    status
                )),
            )
                .into_response()
        }
    }
}

#[derive(Serialize)]
struct ErrorItem<'a> {
    field: &'a str,
    message: &'a str,
}

/// A form page: its errors in the context (summary and fields), and 422 when
/// there are any, 200 otherwise.
pub fn render_form(
    state: &AppState,
    viewer: &Viewer,
    template: &str,
    title: &str,
    mut ctx: Context,
    errors: &[FieldError],
) -> Result<Response, WebError> {
    insert_errors(&mut ctx, errors);
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    render(state, viewer, status, template, title, ctx)
}

pub fn insert_errors(ctx: &mut Context, errors: &[FieldError]) {
    let items: Vec<ErrorItem<'_>> = errors
        .iter()
        .map(|e| ErrorItem {
            field: e.field,
            message: &e.message,
        })
        .collect();
    ctx.insert("errors", &items);
}

pub fn long_date(d: Date) -> String {
    format!("{} {} {}", d.day(), d.month(), d.year())
}

pub fn date_time(t: OffsetDateTime) -> String {
    format!(
        "{} at {:02}:{:02}",
        long_date(t.date()),
        t.hour(),
        t.minute()
    )
}

#[cfg(test)]
mod tests {
    use super::query_value;

    #[test]
    fn query_values_escape_everything_but_unreserved_bytes() {
        assert_eq!(query_value("/invitations/aB-_9"), "%2Finvitations%2FaB-_9");
        assert_eq!(
            query_value("/x?a=1&b=2#c %"),
            "%2Fx%3Fa%3D1%26b%3D2%23c%20%25"
        );
    }
}

#[derive(Serialize)]
pub struct Banner {
    name: String,
    date_of_birth: String,
    age: Option<u32>,
    gender: &'static str,
    nhs_number: String,
    deceased: bool,
    date_of_death: Option<String>,
    age_at_death: Option<u32>,
    sensitive: bool,
    /// A sensitive record seen by anyone but the patient: contact and
    /// location details are not shown (the domain has already removed them).
    withheld: bool,
    /// Contact and location details.
    address: String,
    phones: Vec<String>,
    email: String,
    gp_practice: String,
    /// The "More" panel: other names and identifiers.
    aliases: Vec<String>,
    record_id: String,
}

/// The banner on every page of a record: whose record this is. Name, birth,
/// age and gender, then how to reach them and their GP practice; the NHS
/// number on the right; other identifiers under "More".
pub fn banner(patient: PatientId, d: &Demographics, today: Date, own: bool) -> Banner {
    let name = match d.full_name() {
        n if n.is_empty() => "Name not recorded".to_string(),
        n => n,
    };
    let address = d
        .address_lines
        .iter()
        .chain(std::iter::once(&d.postcode))
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(", ");
    Banner {
        name,
        date_of_birth: d
            .date_of_birth
            .map(long_date)
            .unwrap_or_else(|| "Not recorded".into()),
        age: if d.date_of_death.is_none() {
            d.age_on(today)
        } else {
            None
        },
        gender: d.gender.label(),
        nhs_number: d
            .nhs_number
            .map(|n| n.to_string())
            .unwrap_or_else(|| "Not recorded".into()),
        deceased: d.date_of_death.is_some(),
        date_of_death: d.date_of_death.map(long_date),
        age_at_death: d.date_of_death.and_then(|dd| d.age_on(dd)),
        sensitive: d.sensitive,
        withheld: d.sensitive && !own,
        address,
        phones: d.phones.clone(),
        email: d.email.as_ref().map(|e| e.to_string()).unwrap_or_default(),
        gp_practice: d.gp_practice.clone(),
        aliases: d.aliases.clone(),
        record_id: patient.to_string(),
    }
}

pub fn size_display(bytes: u64) -> String {
    if bytes < 1024 {
        format!("{bytes} bytes")
    } else if bytes < 1024 * 1024 {
        format!("{:.0} KB", bytes as f64 / 1024.0)
    } else {
        format!("{:.1} MB", bytes as f64 / (1024.0 * 1024.0))
    }
}

/// On what footing the viewer is looking at a record, for the strip above
/// the banner and for which actions a page offers.
#[derive(Serialize)]
pub struct Viewing {
    /// `own`, `carer`, `organisation`, `contributor` or `emergency`.
    kind: &'static str,
    /// Whose record it is (the banner's name).
    name: String,
    org: Option<String>,
    /// The organisation the viewer reads for (links to its worklists).
    org_id: Option<String>,
    until: Option<String>,
    can: Capabilities,
}

/// The context of every page of a record: banner, footing, and `base`, the
/// prefix of this record's pages (`/record` or `/people/{id}/record`).
pub fn record_context(
    state: &AppState,
    subject: &Subject,
    d: &Demographics,
    standing: &Standing,
) -> Context {
    let mut ctx = Context::new();
    let banner = banner(
        subject.patient,
        d,
        state.core.today(),
        matches!(standing.basis, Basis::Owner),
    );
    let kind = match standing.basis {
        Basis::Owner => "own",
        Basis::Carer { .. } => "carer",
        Basis::Organisation { .. } => "organisation",
        // Subject access allows exports only, never a record page.
        Basis::Contributor { .. } | Basis::SubjectAccess { .. } => "contributor",
        Basis::BreakGlass { .. } => "emergency",
    };
    ctx.insert(
        "viewing",
        &Viewing {
            kind,
            name: banner.name.clone(),
            org: standing.org_name.clone(),
            org_id: standing.basis.org().map(|o| o.to_string()),
            until: standing.emergency_until.map(|t| {
                format!(
                    "{:02}:{:02} on {}",
                    t.hour(),
                    t.minute(),
                    long_date(t.date())
                )
            }),
            can: standing.can,
        },
    );
    ctx.insert("banner", &banner);
    ctx.insert("base", &subject.base);
    ctx.insert(
        "nav",
        match kind {
            "own" => "record",
            "carer" => "people",
            _ => "organisations",
        },
    );
    ctx
}
