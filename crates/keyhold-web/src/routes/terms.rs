//! The terms of a grant as a form holds them (what, which parts, until when,
//! why): shared by the patient's sharing pages and an organisation's proxy
//! form, so both parse and show them the same way.

use std::collections::BTreeSet;

use keyhold_domain::consent::Permissions;
use keyhold_domain::{Category, FieldError, GrantTerms};
use serde::{Deserialize, Serialize};
use time::{Date, Duration};

use crate::routes::record::parse_date;

/// Checkboxes post `on` when ticked and nothing when not.
#[derive(Deserialize, Serialize, Default, Clone, Debug)]
pub struct TermsForm {
    #[serde(default, rename = "may-read")]
    pub read: Option<String>,
    #[serde(default, rename = "may-contribute")]
    pub contribute: Option<String>,
    #[serde(default, rename = "may-act")]
    pub act_on_behalf: Option<String>,
    #[serde(default, rename = "category-general")]
    pub general: Option<String>,
    #[serde(default, rename = "category-mental_health")]
    pub mental_health: Option<String>,
    #[serde(default, rename = "category-sexual_health")]
    pub sexual_health: Option<String>,
    #[serde(default, rename = "category-social_care")]
    pub social_care: Option<String>,
    #[serde(default, rename = "category-restricted")]
    pub restricted: Option<String>,
    #[serde(default, rename = "ends-day")]
    pub day: String,
    #[serde(default, rename = "ends-month")]
    pub month: String,
    #[serde(default, rename = "ends-year")]
    pub year: String,
    #[serde(default)]
    pub purpose: String,
}

fn ticked(v: &Option<String>) -> bool {
    v.as_deref().is_some_and(|s| !s.is_empty())
}

fn tick(on: bool) -> Option<String> {
    on.then(|| "on".to_string())
}

impl TermsForm {
    /// A fresh form: view only, General, for a year.
    pub fn new(today: Date) -> Self {
        let last = today + Duration::days(365);
        TermsForm {
            read: tick(true),
            general: tick(true),
            day: last.day().to_string(),
            month: u8::from(last.month()).to_string(),
            year: last.year().to_string(),
            ..Default::default()
        }
    }

    /// The form as an existing grant fills it.
    pub fn from_terms(
        p: Permissions,
        categories: &BTreeSet<Category>,
        last_day: Date,
        purpose: &str,
    ) -> Self {
        let has = |c| tick(categories.contains(&c));
        TermsForm {
            read: tick(p.read),
            contribute: tick(p.contribute),
            act_on_behalf: tick(p.act_on_behalf),
            general: has(Category::General),
            mental_health: has(Category::MentalHealth),
            sexual_health: has(Category::SexualHealth),
            social_care: has(Category::SocialCare),
            restricted: has(Category::Restricted),
            day: last_day.day().to_string(),
            month: u8::from(last_day.month()).to_string(),
            year: last_day.year().to_string(),
            purpose: purpose.to_string(),
        }
    }

    fn category_ticked(&self, c: Category) -> bool {
        ticked(match c {
            Category::General => &self.general,
            Category::MentalHealth => &self.mental_health,
            Category::SexualHealth => &self.sexual_health,
            Category::SocialCare => &self.social_care,
            Category::Restricted => &self.restricted,
        })
    }

    /// The terms, or every error at once (the domain checks the rest: dates
    /// in range, a purpose, at least one permission and category).
    pub fn parse(&self) -> Result<GrantTerms, Vec<FieldError>> {
        let last_day =
            parse_date("ends-day", &self.day, &self.month, &self.year).map_err(|e| vec![e])?;
        Ok(GrantTerms {
            permissions: Permissions {
                read: ticked(&self.read),
                contribute: ticked(&self.contribute),
                act_on_behalf: ticked(&self.act_on_behalf),
            },
            categories: Category::ALL
                .into_iter()
                .filter(|c| self.category_ticked(*c))
                .collect(),
            last_day,
            purpose: self.purpose.clone(),
        })
    }

    /// What the `grant_terms` macro shows: every category with its hint and
    /// whether it is ticked.
    pub fn categories(&self) -> Vec<serde_json::Value> {
        Category::ALL
            .into_iter()
            .map(|c| {
                serde_json::json!({
                    "value": c.slug(),
                    "label": c.label(),
                    "hint": c.hint(),
                    "checked": self.category_ticked(c),
                })
            })
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn a_form_round_trips_through_terms() {
        let mut cats = BTreeSet::new();
        cats.insert(Category::General);
        cats.insert(Category::Restricted);
        let p = Permissions {
            read: true,
            contribute: false,
            act_on_behalf: true,
        };
        let form = TermsForm::from_terms(p, &cats, date!(2027 - 02 - 28), "Helps me");
        let terms = form.parse().unwrap();
        assert_eq!(terms.permissions, p);
        assert_eq!(terms.categories, cats);
        assert_eq!(terms.last_day, date!(2027 - 02 - 28));
        assert_eq!(terms.purpose, "Helps me");
    }

    #[test]
    fn nothing_ticked_is_nothing_granted_and_a_bad_date_is_named() {
        let form = TermsForm {
            day: "30".into(),
            month: "2".into(),
            year: "2027".into(),
            ..Default::default()
        };
        let errors = form.parse().unwrap_err();
        assert_eq!(errors[0].field, "ends-day");
        let form = TermsForm {
            day: "1".into(),
            month: "2".into(),
            year: "2027".into(),
            ..Default::default()
        };
        let terms = form.parse().unwrap();
        assert!(terms.permissions.is_empty() && terms.categories.is_empty());
    }
}
