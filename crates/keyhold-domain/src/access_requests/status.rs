//! A request's life: its states, the only moves between them, and the
//! statutory clock. Pure (no store, no clock of its own), so the rules are
//! tested as tables.
//!
//! ```text
//! Draft ─submit→ Received ─start→ InProgress ─complete→ Disclosed ─expire→ Expired
//!                   │  ╲             │    ↑
//!                   │   ask        ask   reply
//!                   │     ↘          ↓    │
//!                   │      AwaitingRequester
//!  (any open state) ─reject→ Rejected, ─withdraw→ Withdrawn
//! ```
//! A guest cannot be asked questions (they have no account to answer from),
//! so `ask` is refused on their requests.

use serde::{Deserialize, Serialize};
use time::{Date, Duration, Month};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    /// Being filled in by the requester; nobody else sees it.
    Draft,
    /// Submitted, not yet picked up.
    Received,
    InProgress,
    /// The records team asked something; the clock is paused.
    AwaitingRequester,
    /// Disclosure files are ready to download (until they expire).
    Disclosed,
    /// The disclosure files were purged after their month.
    Expired,
    Rejected,
    Withdrawn,
}

impl RequestState {
    pub fn label(self) -> &'static str {
        match self {
            RequestState::Draft => "Draft",
            RequestState::Received => "Received",
            RequestState::InProgress => "In progress",
            RequestState::AwaitingRequester => "Awaiting your reply",
            RequestState::Disclosed => "Ready to download",
            RequestState::Expired => "Download expired",
            RequestState::Rejected => "Rejected",
            RequestState::Withdrawn => "Withdrawn",
        }
    }

    /// The same, as the records team reads it.
    pub fn team_label(self) -> &'static str {
        match self {
            RequestState::AwaitingRequester => "Awaiting requester",
            RequestState::Disclosed => "Completed",
            other => other.label(),
        }
    }

    /// The NHS.UK tag colour for the state.
    pub fn tag(self) -> &'static str {
        match self {
            RequestState::Draft => "grey",
            RequestState::Received => "blue",
            RequestState::InProgress => "purple",
            RequestState::AwaitingRequester => "yellow",
            RequestState::Disclosed => "green",
            RequestState::Expired | RequestState::Withdrawn => "grey",
            RequestState::Rejected => "red",
        }
    }

    /// Submitted and not finished: the statutory clock applies.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            RequestState::Received | RequestState::InProgress | RequestState::AwaitingRequester
        )
    }
}

/// A move from one state to another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    Submit,
    Start,
    Ask,
    Reply,
    Complete,
    Reject,
    Withdraw,
    Expire,
}

impl Transition {
    pub const ALL: [Transition; 8] = [
        Transition::Submit,
        Transition::Start,
        Transition::Ask,
        Transition::Reply,
        Transition::Complete,
        Transition::Reject,
        Transition::Withdraw,
        Transition::Expire,
    ];
}

/// The state after `t`, or `None` when the move is not allowed from `from`.
pub fn next(from: RequestState, t: Transition, guest: bool) -> Option<RequestState> {
    use RequestState as S;
    use Transition as T;
    Some(match (from, t) {
        (S::Draft, T::Submit) => S::Received,
        (S::Received, T::Start) => S::InProgress,
        (S::Received | S::InProgress, T::Ask) if !guest => S::AwaitingRequester,
        (S::AwaitingRequester, T::Reply) => S::InProgress,
        (S::InProgress, T::Complete) => S::Disclosed,
        (S::Received | S::InProgress | S::AwaitingRequester, T::Reject) => S::Rejected,
        (S::Received | S::InProgress | S::AwaitingRequester, T::Withdraw) => S::Withdrawn,
        (S::Disclosed, T::Expire) => S::Expired,
        _ => return None,
    })
}

/// The date one calendar month (or `months`) after `d`: the same day of
/// the month, or the month's last day when it has no such day (the ICO's
/// reading: a request received on 31 January is due on 28 or 29 February).
pub fn add_months(d: Date, months: u8) -> Date {
    let index = d.year() * 12 + (d.month() as i32 - 1) + i32::from(months);
    let (year, month0) = (index.div_euclid(12), index.rem_euclid(12));
    let month = Month::try_from(month0 as u8 + 1).unwrap_or(Month::December);
    let last = month.length(year);
    Date::from_calendar_date(year, month, d.day().min(last)).unwrap_or(d)
}

/// Longest extension the law allows: two further months.
pub const MAX_EXTENSION_MONTHS: u8 = 2;

/// The statutory clock of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DueClock {
    /// The day the request was received (submitted).
    pub received: Date,
    /// Months added by extensions (at most [`MAX_EXTENSION_MONTHS`]).
    pub extension_months: u8,
    /// Days spent awaiting the requester, finished pauses only.
    pub paused_days: i64,
    /// Since when it is paused now, if it is.
    pub paused_since: Option<Date>,
}

impl DueClock {
    pub fn new(received: Date) -> Self {
        DueClock {
            received,
            extension_months: 0,
            paused_days: 0,
            paused_since: None,
        }
    }

    /// The due date as of `today`: a month (plus extensions) from receipt,
    /// pushed back by every day the clock was paused, the current pause
    /// counted up to today.
    pub fn due(&self, today: Date) -> Date {
        let running = self
            .paused_since
            .map(|since| (today - since).whole_days().max(0))
            .unwrap_or(0);
        add_months(self.received, 1 + self.extension_months)
            + Duration::days(self.paused_days + running)
    }

    pub fn pause(&mut self, today: Date) {
        if self.paused_since.is_none() {
            self.paused_since = Some(today);
        }
    }

    pub fn resume(&mut self, today: Date) {
        if let Some(since) = self.paused_since.take() {
            self.paused_days += (today - since).whole_days().max(0);
        }
    }

    /// Adds `months`; refused past the two-month limit.
    pub fn extend(&mut self, months: u8) -> Result<(), u8> {
        let total = self.extension_months.saturating_add(months);
        if months == 0 || total > MAX_EXTENSION_MONTHS {
            return Err(MAX_EXTENSION_MONTHS - self.extension_months);
        }
        self.extension_months = total;
        Ok(())
    }

    /// Open, not paused, and past its due date.
    pub fn is_overdue(&self, state: RequestState, today: Date) -> bool {
        state.is_open() && self.paused_since.is_none() && today > self.due(today)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use time::macros::date;

    const STATES: [RequestState; 8] = [
        RequestState::Draft,
        RequestState::Received,
        RequestState::InProgress,
        RequestState::AwaitingRequester,
        RequestState::Disclosed,
        RequestState::Expired,
        RequestState::Rejected,
        RequestState::Withdrawn,
    ];

    #[test]
    fn only_the_drawn_moves_are_allowed() {
        use RequestState as S;
        use Transition as T;
        let allowed = [
            (S::Draft, T::Submit, S::Received),
            (S::Received, T::Start, S::InProgress),
            (S::Received, T::Ask, S::AwaitingRequester),
            (S::InProgress, T::Ask, S::AwaitingRequester),
            (S::AwaitingRequester, T::Reply, S::InProgress),
            (S::InProgress, T::Complete, S::Disclosed),
            (S::Received, T::Reject, S::Rejected),
            (S::InProgress, T::Reject, S::Rejected),
            (S::AwaitingRequester, T::Reject, S::Rejected),
            (S::Received, T::Withdraw, S::Withdrawn),
            (S::InProgress, T::Withdraw, S::Withdrawn),
            (S::AwaitingRequester, T::Withdraw, S::Withdrawn),
            (S::Disclosed, T::Expire, S::Expired),
        ];
        let mut count = 0;
        for from in STATES {
            for t in Transition::ALL {
                let want = allowed
                    .iter()
                    .find(|(f, tt, _)| *f == from && *tt == t)
                    .map(|(_, _, to)| *to);
                assert_eq!(next(from, t, false), want, "{from:?} --{t:?}→");
                count += usize::from(want.is_some());
            }
        }
        assert_eq!(count, allowed.len());
        // Nothing leaves a finished state, and a draft can only be submitted.
        for done in [S::Expired, S::Rejected, S::Withdrawn] {
            assert!(Transition::ALL
                .iter()
                .all(|t| next(done, *t, false).is_none()));
        }
    }

    #[test]
    fn a_guest_cannot_be_asked_anything() {
        for from in STATES {
            assert_eq!(next(from, Transition::Ask, true), None, "{from:?}");
        }
        assert_eq!(
            next(RequestState::InProgress, Transition::Complete, true),
            Some(RequestState::Disclosed)
        );
    }

    #[test]
    fn a_calendar_month_keeps_the_day_or_takes_the_months_last() {
        assert_eq!(add_months(date!(2026 - 01 - 15), 1), date!(2026 - 02 - 15));
        assert_eq!(add_months(date!(2026 - 01 - 31), 1), date!(2026 - 02 - 28));
        assert_eq!(add_months(date!(2028 - 01 - 31), 1), date!(2028 - 02 - 29));
        assert_eq!(add_months(date!(2026 - 12 - 04), 1), date!(2027 - 01 - 04));
        assert_eq!(add_months(date!(2026 - 11 - 30), 3), date!(2027 - 02 - 28));
        assert_eq!(add_months(date!(2026 - 03 - 31), 1), date!(2026 - 04 - 30));
    }

    #[test]
    fn the_clock_pauses_while_awaiting_the_requester_and_extends_up_to_two_months() {
        let mut c = DueClock::new(date!(2026 - 12 - 04));
        assert_eq!(c.due(date!(2026 - 12 - 04)), date!(2027 - 01 - 04));
        c.pause(date!(2026 - 12 - 10));
        // While paused the due date moves with the days.
        assert_eq!(c.due(date!(2026 - 12 - 15)), date!(2027 - 01 - 09));
        c.resume(date!(2026 - 12 - 17));
        assert_eq!(c.paused_days, 7);
        assert_eq!(c.due(date!(2027 - 01 - 01)), date!(2027 - 01 - 11));
        assert_eq!(c.extend(1), Ok(()));
        assert_eq!(c.due(date!(2027 - 01 - 01)), date!(2027 - 02 - 11));
        assert_eq!(c.extend(2), Err(1), "only one more month is left");
        assert_eq!(c.extend(1), Ok(()));
        assert_eq!(c.extend(1), Err(0));
        assert_eq!(c.extend(0), Err(0));
        assert_eq!(c.due(date!(2027 - 01 - 01)), date!(2027 - 03 - 11));
    }

    #[test]
    fn overdue_only_when_open_running_and_past_due() {
        let c = DueClock::new(date!(2026 - 01 - 10));
        let late = date!(2026 - 02 - 11);
        assert!(c.is_overdue(RequestState::InProgress, late));
        assert!(!c.is_overdue(RequestState::InProgress, date!(2026 - 02 - 10)));
        assert!(!c.is_overdue(RequestState::Disclosed, late));
        let mut paused = c;
        paused.pause(date!(2026 - 02 - 01));
        assert!(!paused.is_overdue(RequestState::AwaitingRequester, late));
    }
}
