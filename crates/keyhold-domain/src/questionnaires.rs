//! The standard outcome measures Keyhold knows by heart: their questions,
//! answers, scoring and severity bands. Pure data and arithmetic; a response
//! can only be scored once it has parsed into [`Completed`], which holds one
//! answer from 0 to 3 for every item, so a score is never made of a partial or
//! out-of-range response.
//!
//! Sources:
//! - PHQ-9: Kroenke K, Spitzer RL, Williams JBW. The PHQ-9: validity of a brief
//!   depression severity measure. J Gen Intern Med 2001;16(9):606–613. Bands
//!   0–4 minimal, 5–9 mild, 10–14 moderate, 15–19 moderately severe, 20–27
//!   severe; item 9 (thoughts of self-harm) calls for follow-up whatever the
//!   total.
//! - GAD-7: Spitzer RL, Kroenke K, Williams JBW, Löwe B. A brief measure for
//!   assessing generalized anxiety disorder: the GAD-7. Arch Intern Med
//!   2006;166(10):1092–1097. Bands 0–4 minimal, 5–9 mild, 10–14 moderate,
//!   15–21 severe.
//!
//! Both were developed by Drs Spitzer, Williams, Kroenke and colleagues with an
//! educational grant from Pfizer Inc.; no permission is required to reproduce,
//! translate, display or distribute them.

use std::fmt;

/// The stem both questionnaires share.
pub const STEM: &str =
    "Over the last 2 weeks, how often have you been bothered by any of the following problems?";

const PHQ9_ITEMS: [&str; 9] = [
    "Little interest or pleasure in doing things",
    "Feeling down, depressed, or hopeless",
    "Trouble falling or staying asleep, or sleeping too much",
    "Feeling tired or having little energy",
    "Poor appetite or overeating",
    "Feeling bad about yourself — or that you are a failure or have let yourself or your family down",
    "Trouble concentrating on things, such as reading the newspaper or watching television",
    "Moving or speaking so slowly that other people could have noticed? Or the opposite — being so fidgety or restless that you have been moving around a lot more than usual",
    "Thoughts that you would be better off dead or of hurting yourself in some way",
];

const GAD7_ITEMS: [&str; 7] = [
    "Feeling nervous, anxious or on edge",
    "Not being able to stop or control worrying",
    "Worrying too much about different things",
    "Trouble relaxing",
    "Being so restless that it is hard to sit still",
    "Becoming easily annoyed or irritable",
    "Feeling afraid as if something awful might happen",
];

/// A questionnaire Keyhold defines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Questionnaire {
    /// Patient Health Questionnaire, 9 items (depression).
    Phq9,
    /// Generalised Anxiety Disorder, 7 items.
    Gad7,
}

impl Questionnaire {
    pub const ALL: [Questionnaire; 2] = [Questionnaire::Phq9, Questionnaire::Gad7];

    /// The stable id (also the FHIR resource id).
    pub fn id(&self) -> &'static str {
        match self {
            Questionnaire::Phq9 => "phq-9",
            Questionnaire::Gad7 => "gad-7",
        }
    }

    pub fn parse(id: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|q| q.id() == id)
    }

    /// A short computer-friendly name.
    pub fn name(&self) -> &'static str {
        match self {
            Questionnaire::Phq9 => "PHQ9",
            Questionnaire::Gad7 => "GAD7",
        }
    }

    pub fn title(&self) -> &'static str {
        match self {
            Questionnaire::Phq9 => "Patient Health Questionnaire (PHQ-9)",
            Questionnaire::Gad7 => "Generalised Anxiety Disorder Assessment (GAD-7)",
        }
    }

    /// What it measures, in a sentence.
    pub fn purpose(&self) -> &'static str {
        match self {
            Questionnaire::Phq9 => {
                "Measures how severe symptoms of depression have been over the last 2 weeks."
            }
            Questionnaire::Gad7 => {
                "Measures how severe symptoms of anxiety have been over the last 2 weeks."
            }
        }
    }

    pub fn stem(&self) -> &'static str {
        STEM
    }

    /// The scored items, in order (item 1 first).
    pub fn items(&self) -> &'static [&'static str] {
        match self {
            Questionnaire::Phq9 => &PHQ9_ITEMS,
            Questionnaire::Gad7 => &GAD7_ITEMS,
        }
    }

    /// The highest total: 3 for every item.
    pub fn max_score(&self) -> u8 {
        // At most 9 items: the product fits.
        u8::try_from(self.items().len() * 3).unwrap_or(u8::MAX)
    }

    /// The severity band of a total. Totals above the maximum cannot be made
    /// from a `Completed` response; they fall in the top band.
    pub fn severity(&self, total: u8) -> Severity {
        match (self, total) {
            (_, 0..=4) => Severity::Minimal,
            (_, 5..=9) => Severity::Mild,
            (_, 10..=14) => Severity::Moderate,
            (Questionnaire::Phq9, 15..=19) => Severity::ModeratelySevere,
            _ => Severity::Severe,
        }
    }
}

impl fmt::Display for Questionnaire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// The four answers every item offers, scored 0 to 3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Frequency {
    NotAtAll,
    SeveralDays,
    MoreThanHalfTheDays,
    NearlyEveryDay,
}

impl Frequency {
    pub const ALL: [Frequency; 4] = [
        Frequency::NotAtAll,
        Frequency::SeveralDays,
        Frequency::MoreThanHalfTheDays,
        Frequency::NearlyEveryDay,
    ];

    pub fn score(&self) -> u8 {
        match self {
            Frequency::NotAtAll => 0,
            Frequency::SeveralDays => 1,
            Frequency::MoreThanHalfTheDays => 2,
            Frequency::NearlyEveryDay => 3,
        }
    }

    /// The answer scored `n`; none outside 0..=3.
    pub fn from_score(n: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.score() == n)
    }

    pub fn label(&self) -> &'static str {
        match self {
            Frequency::NotAtAll => "Not at all",
            Frequency::SeveralDays => "Several days",
            Frequency::MoreThanHalfTheDays => "More than half the days",
            Frequency::NearlyEveryDay => "Nearly every day",
        }
    }
}

/// How severe a total is (GAD-7 has no "moderately severe").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    Minimal,
    Mild,
    Moderate,
    ModeratelySevere,
    Severe,
}

impl Severity {
    pub fn label(&self) -> &'static str {
        match self {
            Severity::Minimal => "minimal",
            Severity::Mild => "mild",
            Severity::Moderate => "moderate",
            Severity::ModeratelySevere => "moderately severe",
            Severity::Severe => "severe",
        }
    }
}

/// Why answers are not a completed response.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    #[error("{questionnaire} has {expected} items; {got} answers were given")]
    WrongCount {
        questionnaire: Questionnaire,
        expected: usize,
        got: usize,
    },
    #[error("item {item} must be answered 0 to 3, not {value}")]
    OutOfRange { item: usize, value: u8 },
}

/// A response with one answer for every item, in order. Only [`Completed::parse`]
/// and [`Completed::new`] make one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completed {
    questionnaire: Questionnaire,
    answers: Vec<Frequency>,
}

/// A scored response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Score {
    pub total: u8,
    pub max: u8,
    pub severity: Severity,
    /// PHQ-9 only: item 9 (thoughts of being better off dead or of self-harm)
    /// was answered above "Not at all". It needs follow-up whatever the total.
    pub self_harm_flag: bool,
}

impl Completed {
    /// Answers as typed numbers, item 1 first.
    pub fn parse(questionnaire: Questionnaire, scores: &[u8]) -> Result<Self, ResponseError> {
        let answers = scores
            .iter()
            .enumerate()
            .map(|(i, &value)| {
                Frequency::from_score(value).ok_or(ResponseError::OutOfRange { item: i + 1, value })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(questionnaire, answers)
    }

    /// Answers already chosen from the four options, item 1 first.
    pub fn new(
        questionnaire: Questionnaire,
        answers: Vec<Frequency>,
    ) -> Result<Self, ResponseError> {
        let expected = questionnaire.items().len();
        if answers.len() != expected {
            return Err(ResponseError::WrongCount {
                questionnaire,
                expected,
                got: answers.len(),
            });
        }
        Ok(Completed {
            questionnaire,
            answers,
        })
    }

    pub fn questionnaire(&self) -> Questionnaire {
        self.questionnaire
    }

    pub fn answers(&self) -> &[Frequency] {
        &self.answers
    }

    pub fn score(&self) -> Score {
        let total: u8 = self.answers.iter().map(Frequency::score).sum();
        let self_harm_flag = self.questionnaire == Questionnaire::Phq9
            && self
                .answers
                .get(8)
                .is_some_and(|a| *a != Frequency::NotAtAll);
        Score {
            total,
            max: self.questionnaire.max_score(),
            severity: self.questionnaire.severity(total),
            self_harm_flag,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Answers summing to `total`, filled from item 1 with 3s; item 9 (when
    /// there is one) left at 0 unless the total needs it.
    fn answers_for(q: Questionnaire, total: u8) -> Vec<u8> {
        let n = q.items().len();
        let mut out = vec![0u8; n];
        let mut left = total;
        for a in out.iter_mut() {
            let take = left.min(3);
            *a = take;
            left -= take;
        }
        assert_eq!(left, 0, "{total} is more than {q} can score");
        out
    }

    fn band(q: Questionnaire, total: u8) -> Severity {
        let c = Completed::parse(q, &answers_for(q, total)).unwrap();
        let s = c.score();
        assert_eq!(s.total, total);
        s.severity
    }

    #[test]
    fn phq9_bands_on_both_sides_of_every_boundary() {
        let q = Questionnaire::Phq9;
        for (total, want) in [
            (0, Severity::Minimal),
            (4, Severity::Minimal),
            (5, Severity::Mild),
            (9, Severity::Mild),
            (10, Severity::Moderate),
            (14, Severity::Moderate),
            (15, Severity::ModeratelySevere),
            (19, Severity::ModeratelySevere),
            (20, Severity::Severe),
            (27, Severity::Severe),
        ] {
            assert_eq!(band(q, total), want, "PHQ-9 total {total}");
        }
        assert_eq!(q.max_score(), 27);
    }

    #[test]
    fn gad7_bands_on_both_sides_of_every_boundary() {
        let q = Questionnaire::Gad7;
        for (total, want) in [
            (0, Severity::Minimal),
            (4, Severity::Minimal),
            (5, Severity::Mild),
            (9, Severity::Mild),
            (10, Severity::Moderate),
            (14, Severity::Moderate),
            (15, Severity::Severe),
            (21, Severity::Severe),
        ] {
            assert_eq!(band(q, total), want, "GAD-7 total {total}");
        }
        assert_eq!(q.max_score(), 21);
    }

    #[test]
    fn phq9_item_9_is_flagged_whatever_the_total() {
        let mut a = [0u8; 9];
        let none = Completed::parse(Questionnaire::Phq9, &a).unwrap().score();
        assert!(!none.self_harm_flag);
        assert_eq!(none.severity, Severity::Minimal);
        a[8] = 1;
        let s = Completed::parse(Questionnaire::Phq9, &a).unwrap().score();
        assert!(s.self_harm_flag, "item 9 answered 'Several days'");
        assert_eq!((s.total, s.severity), (1, Severity::Minimal));
        // Other items high, item 9 at 0: no flag.
        let s = Completed::parse(Questionnaire::Phq9, &[3, 3, 3, 3, 3, 3, 3, 3, 0])
            .unwrap()
            .score();
        assert!(!s.self_harm_flag);
        assert_eq!(s.severity, Severity::Severe);
        // GAD-7 has no item 9 and never flags.
        let s = Completed::parse(Questionnaire::Gad7, &[3; 7])
            .unwrap()
            .score();
        assert!(!s.self_harm_flag);
    }

    #[test]
    fn invalid_answers_are_refused() {
        assert_eq!(
            Completed::parse(Questionnaire::Phq9, &[0; 8]),
            Err(ResponseError::WrongCount {
                questionnaire: Questionnaire::Phq9,
                expected: 9,
                got: 8
            })
        );
        assert!(matches!(
            Completed::parse(Questionnaire::Gad7, &[0; 9]),
            Err(ResponseError::WrongCount { got: 9, .. })
        ));
        assert!(Completed::parse(Questionnaire::Gad7, &[]).is_err());
        assert_eq!(
            Completed::parse(Questionnaire::Gad7, &[0, 1, 2, 4, 0, 0, 0]),
            Err(ResponseError::OutOfRange { item: 4, value: 4 })
        );
        assert!(Completed::parse(Questionnaire::Phq9, &[255; 9]).is_err());
        assert!(Completed::new(Questionnaire::Gad7, vec![Frequency::NotAtAll; 6]).is_err());
        assert_eq!(Frequency::from_score(4), None);
    }

    #[test]
    fn ids_and_answers_are_stable() {
        for q in Questionnaire::ALL {
            assert_eq!(Questionnaire::parse(q.id()), Some(q));
        }
        assert_eq!(Questionnaire::Phq9.id(), "phq-9");
        assert_eq!(Questionnaire::Gad7.id(), "gad-7");
        assert_eq!(Questionnaire::parse("PHQ-9"), None);
        let labels: Vec<_> = Frequency::ALL
            .iter()
            .map(|f| (f.score(), f.label()))
            .collect();
        assert_eq!(
            labels,
            [
                (0, "Not at all"),
                (1, "Several days"),
                (2, "More than half the days"),
                (3, "Nearly every day")
            ]
        );
        assert_eq!(Questionnaire::Phq9.items().len(), 9);
        assert_eq!(Questionnaire::Gad7.items().len(), 7);
    }
}
