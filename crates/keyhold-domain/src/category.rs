//! Privacy categories: the unit of sharing.

use serde::{Deserialize, Serialize};

/// Every entry and document has exactly one. `Restricted` is shown to nobody but
/// the patient unless a grant names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    General,
    MentalHealth,
    SexualHealth,
    SocialCare,
    Restricted,
}

impl Category {
    pub const ALL: [Category; 5] = [
        Category::General,
        Category::MentalHealth,
        Category::SexualHealth,
        Category::SocialCare,
        Category::Restricted,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.slug() == s)
    }

    pub fn slug(&self) -> &'static str {
        match self {
            Category::General => "general",
            Category::MentalHealth => "mental_health",
            Category::SexualHealth => "sexual_health",
            Category::SocialCare => "social_care",
            Category::Restricted => "restricted",
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            Category::General => "General",
            Category::MentalHealth => "Mental health",
            Category::SexualHealth => "Sexual health",
            Category::SocialCare => "Social care",
            Category::Restricted => "Restricted",
        }
    }

    pub fn hint(&self) -> &'static str {
        match self {
            Category::General => "Most of your health record: shared when you share your record",
            Category::MentalHealth => {
                "Shared only with people you choose to share mental health information with"
            }
            Category::SexualHealth => {
                "Shared only with people you choose to share sexual health information with"
            }
            Category::SocialCare => "Care and support from social services",
            Category::Restricted => {
                "Seen by nobody but you, unless you name this category when you share"
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_round_trip_and_unknown_is_refused() {
        for c in Category::ALL {
            assert_eq!(Category::parse(c.slug()), Some(c));
        }
        assert_eq!(Category::parse("secret"), None);
        assert_eq!(Category::parse("General"), None);
    }
}
