//! Medicines and allergies: a record's medications (current and past),
//! allergies and immunisations on one page, as a clinician reads them
//! before prescribing. What is shown is what `Keyhold::record` allowed.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use keyhold_domain::{Entry, EntryKind};
use serde::Serialize;
use time::Date;

use crate::error::WebError;
use crate::extract::Subject;
use crate::pages::{long_date, record_context, render};
use crate::routes::record::whose;
use crate::AppState;

#[derive(Serialize)]
struct Line {
    href: String,
    title: String,
    date: String,
    end_date: Option<String>,
    details: String,
    category_label: &'static str,
    source: String,
}

fn line(p: &Subject, e: &Entry) -> Line {
    Line {
        href: p.at(&format!("/entries/{}", e.id)),
        title: e.title.clone(),
        date: long_date(e.date),
        end_date: e.end_date.map(long_date),
        details: e.details.clone(),
        category_label: e.category.label(),
        source: e.source.label(),
    }
}

/// A medication is current unless it ended before today.
fn is_current(e: &Entry, today: Date) -> bool {
    e.end_date.is_none_or(|end| end >= today)
}

pub async fn page(State(state): State<AppState>, p: Subject) -> Result<Response, WebError> {
    let view = state.core.record(&p.principal, p.patient).await?;
    let today = state.core.today();
    let of = |kind: EntryKind, keep: &dyn Fn(&Entry) -> bool| -> Vec<Line> {
        view.entries
            .iter()
            .filter(|e| e.kind == kind && keep(e))
            .map(|e| line(&p, e))
            .collect()
    };
    let mut ctx = record_context(&state, &p, &view.demographics, &view.standing);
    ctx.insert(
        "current",
        &of(EntryKind::Medication, &|e| is_current(e, today)),
    );
    ctx.insert(
        "past",
        &of(EntryKind::Medication, &|e| !is_current(e, today)),
    );
    ctx.insert("allergies", &of(EntryKind::Allergy, &|_| true));
    ctx.insert("immunisations", &of(EntryKind::Immunisation, &|_| true));
    let title = whose(
        &p,
        &view.demographics,
        "Your medicines and allergies",
        "medicines and allergies",
    );
    render(
        &state,
        &p.viewer,
        StatusCode::OK,
        "medicines.html",
        &title,
        ctx,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyhold_domain::{Category, EntryId, Source};
    use time::macros::{date, datetime};

    fn medication(end: Option<Date>) -> Entry {
        Entry {
            id: EntryId::new_random(),
            kind: EntryKind::Medication,
            title: "Amoxicillin".into(),
            date: date!(2024 - 01 - 01),
            end_date: end,
            category: Category::General,
            source: Source::PatientEntered,
            details: String::new(),
            recorded_at: datetime!(2024-01-01 10:00 UTC),
            contact: None,
        }
    }

    #[test]
    fn a_medication_is_current_until_its_end_date_has_passed() {
        let today = date!(2024 - 06 - 01);
        assert!(is_current(&medication(None), today));
        assert!(is_current(&medication(Some(today)), today));
        assert!(!is_current(&medication(Some(date!(2024 - 05 - 31))), today));
    }
}
