//! Sign-in throttling: limits per client address and per account, with waits
//! that double and are capped, so guessing is slow and a lock-out is never
//! permanent for the account's holder.
//!
//! Three kinds of counter, each counting failed sign-ins:
//!
//! - per **address** (IPv4 /32, IPv6 /64): slows one client trying many accounts;
//! - per **account and address**: slows one client guessing one account;
//! - per **account**, from any address: slows guesses spread over many addresses.
//!
//! "Account" is the blind index of the normalised email, whether or not an
//! account has that email, so an unknown email is throttled exactly like a
//! known one and the limits reveal nothing.
//!
//! A counter with `free_failures` (N) or more failures waits: the Nth failure
//! sets a wait of `base`, each later one doubles it, up to `cap`. While a
//! counter that applies waits, an attempt is refused before any password is
//! looked at, so the right password does not get through either, and no hash
//! is spent. Refusals are not failures: they neither count nor lengthen a wait.
//! Once past its free failures a counter admits one attempt at a time, so
//! concurrent guesses cannot all slip in before the first failure is counted.
//! A counter is forgotten once `forget_after` passes without a failure on it.
//!
//! A success clears its (account, address) counter and makes that pair
//! *trusted* for `trust_for`. It clears neither the account's counter (else each
//! time the holder signed in, guessers elsewhere would get a fresh allowance) nor
//! the address's (anyone can succeed on an account of their own). From a trusted pair only its own counter applies:
//! failures elsewhere, however many and from however many addresses, cannot
//! keep the holder out from an address they have signed in from before, and
//! their own mistakes there do not count against others behind the same address.
//!
//! State is in memory, per process: several instances each keep their own, and
//! a restart forgets everything (shared state belongs with PostgreSQL, issue 9).
//! At most `max_keys` counters are kept; beyond that the forgotten ones go
//! first, then the least recently touched.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};

use time::{Duration, OffsetDateTime};

/// One counter's rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Failures allowed without waiting; the last of them starts the wait.
    pub free_failures: u32,
    /// The first wait; each later failure doubles it.
    pub base: Duration,
    /// The longest wait.
    pub cap: Duration,
}

/// The sign-in limits (part of `Settings`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignInLimits {
    pub per_address: Limit,
    pub per_account_address: Limit,
    pub per_account: Limit,
    /// A counter with no failure for this long is forgotten.
    pub forget_after: Duration,
    /// How long a successful sign-in trusts its (account, address) pair.
    pub trust_for: Duration,
    /// Counters kept in memory at most.
    pub max_keys: usize,
}

impl Default for SignInLimits {
    fn default() -> Self {
        let limit = |free_failures| Limit {
            free_failures,
            base: Duration::seconds(1),
            cap: Duration::minutes(15),
        };
        SignInLimits {
            per_address: limit(20),
            per_account_address: limit(5),
            per_account: limit(50),
            forget_after: Duration::hours(24),
            trust_for: Duration::days(30),
            max_keys: 100_000,
        }
    }
}

/// A client address as the limits see it: IPv4 whole, IPv6 by its /64 (one
/// subscriber usually holds at least a /64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Prefix {
    V4([u8; 4]),
    V6([u8; 8]),
}

impl Prefix {
    fn of(ip: IpAddr) -> Prefix {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Prefix::V4(v4.octets()),
            IpAddr::V6(v6) => {
                let o = v6.octets();
                Prefix::V6([o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]])
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Address(Prefix),
    /// With no known address (the command line, tests), per account alone.
    AccountAddress(Vec<u8>, Option<Prefix>),
    Account(Vec<u8>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Address,
    AccountAddress,
    Account,
}

impl Key {
    fn kind(&self) -> Kind {
        match self {
            Key::Address(_) => Kind::Address,
            Key::AccountAddress(..) => Kind::AccountAddress,
            Key::Account(_) => Kind::Account,
        }
    }
}

#[derive(Debug, Clone)]
struct Counter {
    failures: u32,
    last_failure: Option<OffsetDateTime>,
    /// No attempt is admitted before this.
    wait_until: Option<OffsetDateTime>,
    /// The current wait's first refusal has been reported.
    refusal_noted: bool,
    /// Attempts admitted and not yet finished.
    in_flight: u32,
    /// (account, address) pairs only: a success from here, until then.
    trusted_until: Option<OffsetDateTime>,
    /// For eviction: the last time anything changed.
    touched: OffsetDateTime,
}

impl Counter {
    fn new(now: OffsetDateTime) -> Counter {
        Counter {
            failures: 0,
            last_failure: None,
            wait_until: None,
            refusal_noted: false,
            in_flight: 0,
            trusted_until: None,
            touched: now,
        }
    }

    fn clear_failures(&mut self) {
        self.failures = 0;
        self.last_failure = None;
        self.wait_until = None;
        self.refusal_noted = false;
    }

    /// Forgets failures once `forget_after` has passed without one.
    fn age(&mut self, now: OffsetDateTime, forget_after: Duration) {
        if self.last_failure.is_some_and(|at| now - at >= forget_after) {
            self.clear_failures();
        }
        if self.trusted_until.is_some_and(|t| now >= t) {
            self.trusted_until = None;
        }
    }

    fn waiting(&self, now: OffsetDateTime) -> Option<Duration> {
        self.wait_until.filter(|t| *t > now).map(|t| t - now)
    }

    fn trusted(&self, now: OffsetDateTime) -> bool {
        self.trusted_until.is_some_and(|t| t > now)
    }

    /// Nothing left worth keeping.
    fn forgettable(&self, now: OffsetDateTime, forget_after: Duration) -> bool {
        self.in_flight == 0
            && self.waiting(now).is_none()
            && self.last_failure.is_none_or(|at| now - at >= forget_after)
            && !self.trusted(now)
    }
}

/// The wait set by a counter's `failures`th failure.
fn wait_after(limit: &Limit, failures: u32) -> Option<Duration> {
    let free = limit.free_failures.max(1);
    if failures < free {
        return None;
    }
    let doublings = failures - free;
    let base_ms = u64::try_from(limit.base.whole_milliseconds()).unwrap_or(0);
    let cap_ms = u64::try_from(limit.cap.whole_milliseconds()).unwrap_or(0);
    let factor = 1u64.checked_shl(doublings).unwrap_or(u64::MAX);
    let ms = base_ms.saturating_mul(factor).min(cap_ms);
    Some(Duration::milliseconds(
        i64::try_from(ms).unwrap_or(i64::MAX),
    ))
}

/// Whole seconds to tell a client to wait: rounded up, at least one.
fn whole_seconds(d: Duration) -> u64 {
    let ms = u64::try_from(d.whole_milliseconds()).unwrap_or(0);
    ms.div_ceil(1000).max(1)
}

/// An attempt the limits refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub retry_after_secs: u64,
    /// The first refusal of this wait (worth an audit entry; the rest are
    /// repeats, and auditing each would let a flood grow the log for free).
    pub first: bool,
}

pub(crate) struct Throttle {
    limits: SignInLimits,
    counters: Mutex<HashMap<Key, Counter>>,
}

impl Throttle {
    pub(crate) fn new(limits: SignInLimits) -> Throttle {
        Throttle {
            limits,
            counters: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Key, Counter>> {
        match self.counters.lock() {
            Ok(g) => g,
            // The map stays consistent between statements; keep going.
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn limit(&self, kind: Kind) -> &Limit {
        match kind {
            Kind::Address => &self.limits.per_address,
            Kind::AccountAddress => &self.limits.per_account_address,
            Kind::Account => &self.limits.per_account,
        }
    }

    /// Asks to check a password for `account` (the email's blind index) from
    /// `client`. Admitted: the returned attempt must be finished with
    /// [`Attempt::failed`] or [`Attempt::succeeded`] (dropping it counts
    /// nothing). Refused: how long to wait.
    pub(crate) fn admit(
        &self,
        account: &[u8],
        client: Option<IpAddr>,
        now: OffsetDateTime,
    ) -> Result<Attempt<'_>, Refusal> {
        let prefix = client.map(Prefix::of);
        let pair = Key::AccountAddress(account.to_vec(), prefix);
        let mut map = self.lock();
        let trusted = map.get_mut(&pair).is_some_and(|c| {
            c.age(now, self.limits.forget_after);
            c.trusted(now)
        });
        let mut keys = vec![pair];
        if !trusted {
            keys.push(Key::Account(account.to_vec()));
            if let Some(p) = prefix {
                keys.push(Key::Address(p));
            }
        }

        let mut wait: Option<Duration> = None;
        let mut first = false;
        let mut busy = false;
        for key in &keys {
            let Some(c) = map.get_mut(key) else { continue };
            c.age(now, self.limits.forget_after);
            if let Some(w) = c.waiting(now) {
                wait = Some(wait.map_or(w, |v| v.max(w)));
                first |= !c.refusal_noted;
            } else if c.in_flight > 0
                && c.failures + c.in_flight >= self.limit(key.kind()).free_failures
            {
                busy = true;
            }
        }
        if let Some(w) = wait {
            for key in &keys {
                if let Some(c) = map.get_mut(key) {
                    if c.waiting(now).is_some() {
                        c.refusal_noted = true;
                    }
                }
            }
            return Err(Refusal {
                retry_after_secs: whole_seconds(w),
                first,
            });
        }
        if busy {
            // Another attempt on a counter past its free failures is being
            // checked; its outcome decides whether this one may go.
            return Err(Refusal {
                retry_after_secs: 1,
                first: false,
            });
        }
        for key in &keys {
            if !map.contains_key(key) {
                self.make_room(&mut map, now);
            }
            let c = map.entry(key.clone()).or_insert_with(|| Counter::new(now));
            c.in_flight += 1;
            c.touched = now;
        }
        Ok(Attempt {
            throttle: self,
            keys,
            finished: false,
        })
    }

    /// Keeps the map within `max_keys`: drops forgotten counters, then (if
    /// still full) the eighth least recently touched, so the cost is spread
    /// over many insertions. Counters with attempts in flight stay.
    fn make_room(&self, map: &mut HashMap<Key, Counter>, now: OffsetDateTime) {
        let max = self.limits.max_keys.max(1);
        if map.len() < max {
            return;
        }
        let forget_after = self.limits.forget_after;
        map.retain(|_, c| !c.forgettable(now, forget_after));
        if map.len() < max {
            return;
        }
        let mut ages: Vec<(OffsetDateTime, Key)> = map
            .iter()
            .filter(|(_, c)| c.in_flight == 0)
            .map(|(k, c)| (c.touched, k.clone()))
            .collect();
        let excess = map.len() + 1 - max;
        let n = (max / 8).max(excess).min(ages.len());
        if n == 0 {
            return;
        }
        if n < ages.len() {
            ages.select_nth_unstable_by_key(n - 1, |(t, _)| *t);
        }
        for (_, key) in ages.into_iter().take(n) {
            map.remove(&key);
        }
    }

    /// Gives the attempt's places back and counts its outcome, if it had one.
    fn finish(&self, keys: &[Key], outcome: Option<(bool, OffsetDateTime)>) {
        let mut map = self.lock();
        for key in keys {
            let Some(c) = map.get_mut(key) else { continue };
            c.in_flight = c.in_flight.saturating_sub(1);
            match outcome {
                None => {}
                Some((false, now)) => {
                    c.failures = c.failures.saturating_add(1);
                    c.last_failure = Some(now);
                    c.touched = now;
                    if let Some(w) = wait_after(self.limit(key.kind()), c.failures) {
                        c.wait_until = Some(now + w);
                        c.refusal_noted = false;
                    }
                }
                Some((true, now)) => {
                    c.touched = now;
                    match key.kind() {
                        Kind::AccountAddress => {
                            c.clear_failures();
                            if matches!(key, Key::AccountAddress(_, Some(_))) {
                                c.trusted_until = Some(now + self.limits.trust_for);
                            }
                        }
                        // Guesses spread over many addresses build these up;
                        // a success clearing them would hand the guesser a
                        // fresh allowance each time the holder signs in.
                        Kind::Account | Kind::Address => {}
                    }
                }
            }
        }
    }

    /// Counters held (tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

/// An admitted attempt. Dropped unfinished (the request was cancelled, or the
/// hashing queue was full), it only gives its place back.
pub(crate) struct Attempt<'a> {
    throttle: &'a Throttle,
    keys: Vec<Key>,
    finished: bool,
}

impl Attempt<'_> {
    pub(crate) fn failed(mut self, now: OffsetDateTime) {
        self.finished = true;
        self.throttle.finish(&self.keys, Some((false, now)));
    }

    pub(crate) fn succeeded(mut self, now: OffsetDateTime) {
        self.finished = true;
        self.throttle.finish(&self.keys, Some((true, now)));
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.throttle.finish(&self.keys, None);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-01-15 09:00 UTC);
    const ANN: &[u8] = b"blind index of ann";
    const BOB: &[u8] = b"blind index of bob";

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    fn fail(t: &Throttle, account: &[u8], client: Option<IpAddr>, now: OffsetDateTime) {
        t.admit(account, client, now)
            .unwrap_or_else(|r| panic!("refused at {now}: {r:?}"))
            .failed(now);
    }

    fn refused(t: &Throttle, account: &[u8], client: Option<IpAddr>, now: OffsetDateTime) -> u64 {
        match t.admit(account, client, now) {
            Err(r) => r.retry_after_secs,
            Ok(_) => panic!("admitted at {now}"),
        }
    }

    #[test]
    fn waits_start_at_the_last_free_failure_double_and_stop_at_the_cap() {
        let l = SignInLimits::default().per_account_address;
        let secs = |n| wait_after(&l, n).map(|d| d.whole_seconds());
        assert_eq!(secs(1), None);
        assert_eq!(secs(4), None);
        assert_eq!(secs(5), Some(1));
        assert_eq!(secs(6), Some(2));
        assert_eq!(secs(7), Some(4));
        assert_eq!(secs(14), Some(512));
        assert_eq!(secs(15), Some(900), "1024 s capped at 15 minutes");
        assert_eq!(secs(64), Some(900));
        assert_eq!(secs(u32::MAX), Some(900), "no overflow");
    }

    #[test]
    fn the_defaults_are_the_documented_numbers() {
        let d = SignInLimits::default();
        assert_eq!(
            (
                d.per_address.free_failures,
                d.per_account_address.free_failures,
                d.per_account.free_failures
            ),
            (20, 5, 50)
        );
        for l in [d.per_address, d.per_account_address, d.per_account] {
            assert_eq!(
                (l.base, l.cap),
                (Duration::seconds(1), Duration::minutes(15))
            );
        }
        assert_eq!(d.forget_after, Duration::hours(24));
        assert_eq!(d.max_keys, 100_000);
    }

    #[test]
    fn free_failures_then_a_refusal_even_before_the_password_is_looked_at() {
        let t = Throttle::new(SignInLimits::default());
        let a = ip("192.0.2.1");
        for _ in 0..5 {
            fail(&t, ANN, a, T0);
        }
        assert_eq!(refused(&t, ANN, a, T0), 1);
        // Refusals count for nothing: the wait is still one second.
        assert_eq!(refused(&t, ANN, a, T0 + Duration::milliseconds(1)), 1);
        let t1 = T0 + Duration::seconds(1);
        fail(&t, ANN, a, t1);
        assert_eq!(refused(&t, ANN, a, t1), 2);
        let t2 = t1 + Duration::seconds(2);
        fail(&t, ANN, a, t2);
        assert_eq!(refused(&t, ANN, a, t2), 4);
        // Another account from the same address is not held up (yet).
        fail(&t, BOB, a, t2);
    }

    #[test]
    fn only_the_first_refusal_of_each_wait_is_reported_first() {
        let t = Throttle::new(SignInLimits::default());
        for _ in 0..5 {
            fail(&t, ANN, None, T0);
        }
        assert!(t.admit(ANN, None, T0).err().unwrap().first);
        assert!(!t.admit(ANN, None, T0).err().unwrap().first);
        let t1 = T0 + Duration::seconds(1);
        fail(&t, ANN, None, t1);
        assert!(t.admit(ANN, None, t1).err().unwrap().first, "a new wait");
    }

    #[test]
    fn the_wait_never_exceeds_the_cap() {
        let t = Throttle::new(SignInLimits::default());
        let a = ip("192.0.2.1");
        let mut now = T0;
        for _ in 0..200 {
            let wait = match t.admit(ANN, a, now) {
                Ok(attempt) => {
                    attempt.failed(now);
                    continue;
                }
                Err(r) => r.retry_after_secs,
            };
            assert!(wait <= 900, "waited {wait} s");
            now += Duration::seconds(i64::try_from(wait).unwrap());
        }
        // After the wait, one more failure sets the capped wait again.
        fail(&t, ANN, a, now);
        assert_eq!(refused(&t, ANN, a, now), 900);
    }

    #[test]
    fn a_success_clears_the_pair_but_not_the_address() {
        let t = Throttle::new(SignInLimits::default());
        let a = ip("192.0.2.1");
        for _ in 0..4 {
            fail(&t, ANN, a, T0);
        }
        for i in 0..15u32 {
            fail(&t, &i.to_be_bytes(), a, T0);
        }
        // 19 failures from a. Ann signs in there.
        t.admit(ANN, a, T0).unwrap().succeeded(T0);
        // Her pair starts again: without the reset, this fifth failure would
        // make her wait; as trusted, it does not count against the address.
        fail(&t, ANN, a, T0);
        t.admit(ANN, a, T0).unwrap();
        // The address was not cleared: one more failure from it reaches 20,
        // and then every account not trusted there waits.
        fail(&t, BOB, a, T0);
        assert_eq!(refused(&t, BOB, a, T0), 1);
        assert_eq!(refused(&t, b"someone else", a, T0), 1);
    }

    #[test]
    fn a_success_leaves_the_account_counter_to_time() {
        let limit = |free_failures| Limit {
            free_failures,
            base: Duration::seconds(1),
            cap: Duration::minutes(15),
        };
        let t = Throttle::new(SignInLimits {
            per_account: limit(3),
            per_address: limit(100),
            per_account_address: limit(100),
            ..SignInLimits::default()
        });
        let from = |i: u32| ip(&format!("198.51.100.{i}"));
        fail(&t, ANN, from(1), T0);
        fail(&t, ANN, from(2), T0);
        t.admit(ANN, from(3), T0).unwrap().succeeded(T0);
        // The third failure since the first, success or not, starts the wait.
        fail(&t, ANN, from(4), T0);
        assert_eq!(refused(&t, ANN, from(5), T0), 1);
    }

    #[test]
    fn a_trusted_pair_is_held_only_by_its_own_counter() {
        let t = Throttle::new(SignInLimits::default());
        let home = ip("2001:db8:1:2::10");
        t.admit(ANN, home, T0).unwrap().succeeded(T0);
        // 50 guesses at Ann from 50 addresses put her account counter in a wait.
        let spread = |t: &Throttle, now| {
            for i in 0..50u32 {
                fail(t, ANN, ip(&format!("198.51.{}.{}", i / 10, i % 10)), now);
            }
        };
        spread(&t, T0);
        assert_eq!(refused(&t, ANN, ip("203.0.113.50"), T0), 1);
        // From home (same /64, another host) Ann is let in.
        t.admit(ANN, ip("2001:db8:1:2::99"), T0)
            .unwrap()
            .succeeded(T0);
        // Trust lasts 30 days from the last sign-in there.
        let later = T0 + Duration::days(31);
        spread(&t, later);
        assert_eq!(refused(&t, ANN, home, later), 1);
    }

    #[test]
    fn failures_are_forgotten_after_a_quiet_day() {
        let t = Throttle::new(SignInLimits::default());
        let a = ip("192.0.2.1");
        for _ in 0..5 {
            fail(&t, ANN, a, T0);
        }
        refused(&t, ANN, a, T0);
        let almost = T0 + Duration::hours(24) - Duration::seconds(1);
        fail(&t, ANN, a, almost);
        // Six failures: the next wait is two seconds, not one.
        assert_eq!(refused(&t, ANN, a, almost), 2);
        let day = almost + Duration::hours(24);
        // A quiet day: the count starts again, four failures are free.
        for _ in 0..4 {
            fail(&t, ANN, a, day);
        }
        t.admit(ANN, a, day).unwrap().failed(day);
        assert_eq!(refused(&t, ANN, a, day), 1);
    }

    #[test]
    fn past_the_free_failures_one_attempt_at_a_time() {
        let t = Throttle::new(SignInLimits::default());
        // Five concurrent first attempts are admitted, a sixth is not.
        let held: Vec<_> = (0..5).map(|_| t.admit(ANN, None, T0).unwrap()).collect();
        assert!(t.admit(ANN, None, T0).is_err());
        drop(held);
        // Dropped unfinished, they counted nothing.
        for _ in 0..4 {
            fail(&t, ANN, None, T0);
        }
        let one = t.admit(ANN, None, T0).unwrap();
        assert_eq!(refused(&t, ANN, None, T0), 1, "the fifth is in flight");
        one.failed(T0);
        assert_eq!(refused(&t, ANN, None, T0), 1);
    }

    #[test]
    fn an_address_is_its_ipv4_or_its_ipv6_64() {
        let t = Throttle::new(SignInLimits::default());
        for i in 0..20u32 {
            fail(
                &t,
                &i.to_be_bytes(),
                ip(&format!("2001:db8:a:b::{i:x}")),
                T0,
            );
        }
        // Same /64, another account: the address waits.
        assert_eq!(refused(&t, b"x", ip("2001:db8:a:b:ffff::1"), T0), 1);
        // Next /64 along: free.
        t.admit(b"x", ip("2001:db8:a:c::1"), T0).unwrap();
        for i in 0..20u32 {
            fail(&t, &i.to_be_bytes(), ip("192.0.2.7"), T0);
        }
        // An IPv4-mapped IPv6 address is the same client.
        assert_eq!(refused(&t, b"x", ip("::ffff:192.0.2.7"), T0), 1);
        t.admit(b"x", ip("192.0.2.8"), T0).unwrap();
    }

    #[test]
    fn memory_is_bounded() {
        let t = Throttle::new(SignInLimits {
            max_keys: 64,
            ..SignInLimits::default()
        });
        for i in 0..1_000u32 {
            fail(
                &t,
                &i.to_be_bytes(),
                ip(&format!("10.0.{}.{}", i / 200, i % 200)),
                T0,
            );
            assert!(t.len() <= 64, "{} counters", t.len());
        }
    }

    #[test]
    fn active_waits_survive_eviction_of_older_counters() {
        let limits = SignInLimits {
            max_keys: 64,
            ..SignInLimits::default()
        };
        let t = Throttle::new(limits);
        for i in 0..40u32 {
            fail(&t, &i.to_be_bytes(), None, T0);
        }
        // Ann is held most recently, then more keys arrive.
        let t1 = T0 + Duration::seconds(10);
        for _ in 0..5 {
            fail(&t, ANN, None, t1);
        }
        for i in 100..120u32 {
            fail(&t, &i.to_be_bytes(), None, t1);
        }
        assert!(t.len() <= 64);
        assert_eq!(refused(&t, ANN, None, t1), 1);
    }
}
