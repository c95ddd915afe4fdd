//! Sign-in limits over the real store: waits that start after five failures,
//! refuse even the right password without hashing it, double up to fifteen
//! minutes and no further, treat an unknown email like a known one, and are
//! kept per address, so neither another address nor the holder's own is
//! held up by someone else's guessing.

use std::net::IpAddr;

use keyhold_domain::audit::{AuditAction, Outcome};
use keyhold_domain::{AccountId, DomainError};
use time::Duration;

use crate::helpers::{audit_count, last_audit, Env, PASSWORD};

const WRONG: &str = "not the password";

fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().unwrap())
}

async fn account(env: &Env, email: &str) -> AccountId {
    env.core
        .create_account_for("Test Person", email, PASSWORD, None)
        .await
        .unwrap()
}

/// What one attempt came to, in a form sequences can be compared in.
async fn attempt(env: &Env, email: &str, password: &str, from: Option<IpAddr>) -> String {
    match env.core.sign_in(email, password, from).await {
        Ok(_) => "signed in".into(),
        Err(DomainError::BadCredentials) => "wrong".into(),
        Err(DomainError::TooManyAttempts { retry_after_secs }) => {
            format!("wait {retry_after_secs}")
        }
        Err(e) => panic!("{email}: {e:?}"),
    }
}

/// Refused: the wait in seconds.
async fn refused(env: &Env, email: &str, password: &str, from: Option<IpAddr>) -> u64 {
    match env.core.sign_in(email, password, from).await {
        Err(DomainError::TooManyAttempts { retry_after_secs }) => retry_after_secs,
        other => panic!("{email} was not refused: {:?}", other.map(|s| s.principal)),
    }
}

fn wait(env: &Env, secs: u64) {
    env.clock
        .advance(Duration::seconds(i64::try_from(secs).unwrap()));
}

#[tokio::test]
async fn after_five_failures_even_the_right_password_waits_and_no_hash_is_spent() {
    let env = Env::new();
    let ann = account(&env, "ann@example.test").await;
    let from = ip("192.0.2.10");

    let hashes = env.core.password_hashes_started();
    for _ in 0..5 {
        assert_eq!(
            attempt(&env, "ann@example.test", WRONG, from).await,
            "wrong"
        );
    }
    assert_eq!(env.core.password_hashes_started(), hashes + 5);

    let before = audit_count(env.store());
    assert_eq!(refused(&env, "ann@example.test", PASSWORD, from).await, 1);
    assert_eq!(
        env.core.password_hashes_started(),
        hashes + 5,
        "the refused password was not hashed"
    );
    assert_eq!(
        audit_count(env.store()),
        before + 1,
        "the refusal is audited"
    );
    let e = last_audit(env.store()).event;
    assert_eq!(
        (e.action, e.outcome, e.purpose.as_str(), e.actor.account),
        (
            AuditAction::SignInFailed,
            Outcome::Denied,
            "sign in (too many attempts)",
            Some(ann)
        )
    );
    // Repeats during the same wait are refused alike, and not audited again.
    assert_eq!(refused(&env, "ann@example.test", PASSWORD, from).await, 1);
    assert_eq!(audit_count(env.store()), before + 1);

    // After the wait the right password works...
    wait(&env, 1);
    assert_eq!(
        attempt(&env, "ann@example.test", PASSWORD, from).await,
        "signed in"
    );
    assert_eq!(last_audit(env.store()).event.action, AuditAction::SignIn);
    // ...and starts the count again: four more failures are free.
    for _ in 0..4 {
        assert_eq!(
            attempt(&env, "ann@example.test", WRONG, from).await,
            "wrong"
        );
    }
    assert_eq!(
        attempt(&env, "ann@example.test", PASSWORD, from).await,
        "signed in"
    );
}

#[tokio::test]
async fn an_unknown_email_is_throttled_exactly_like_a_known_one() {
    let env = Env::new();
    account(&env, "ann@example.test").await;

    let mut seen = Vec::new();
    for (email, from) in [
        ("ann@example.test", ip("192.0.2.10")),
        ("nobody@example.test", ip("192.0.2.20")),
    ] {
        let mut outcomes = Vec::new();
        for _ in 0..8 {
            let got = attempt(&env, email, WRONG, from).await;
            if let Some(secs) = got.strip_prefix("wait ") {
                wait(&env, secs.parse().unwrap());
            }
            outcomes.push(got);
        }
        seen.push(outcomes);
    }
    let expected = [
        "wrong", "wrong", "wrong", "wrong", "wrong", "wait 1", "wrong", "wait 2",
    ];
    assert_eq!(seen[0], expected, "a known email");
    assert_eq!(seen[1], expected, "an unknown email");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_guesses_get_no_more_than_the_free_failures() {
    let env = Env::new();
    account(&env, "ann@example.test").await;
    let hashes = env.core.password_hashes_started();

    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let core = env.core.clone();
            tokio::spawn(async move {
                core.sign_in("ann@example.test", WRONG, ip("192.0.2.10"))
                    .await
            })
        })
        .collect();
    let (mut wrong, mut refused) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Err(DomainError::BadCredentials) => wrong += 1,
            Err(DomainError::TooManyAttempts { .. }) => refused += 1,
            other => panic!("{:?}", other.map(|s| s.principal)),
        }
    }
    assert_eq!((wrong, refused), (5, 15));
    assert_eq!(env.core.password_hashes_started(), hashes + 5);
}

#[tokio::test]
async fn another_address_is_not_held_by_the_first_ones_failures() {
    let env = Env::new();
    account(&env, "ann@example.test").await;
    for _ in 0..5 {
        attempt(&env, "ann@example.test", WRONG, ip("192.0.2.10")).await;
    }
    assert_eq!(
        refused(&env, "ann@example.test", PASSWORD, ip("192.0.2.10")).await,
        1
    );
    assert_eq!(
        attempt(&env, "ann@example.test", PASSWORD, ip("198.51.100.7")).await,
        "signed in"
    );
}

#[tokio::test]
async fn the_wait_never_exceeds_fifteen_minutes_and_the_holder_gets_in() {
    let env = Env::new();
    account(&env, "ann@example.test").await;
    let home = ip("2001:db8:5:6::1");
    assert_eq!(
        attempt(&env, "ann@example.test", PASSWORD, home).await,
        "signed in"
    );

    // Someone keeps guessing, from one address and then from many, as fast
    // as the limits let them.
    let mut longest = 0;
    for i in 0..120u32 {
        let from = if i < 60 {
            ip("203.0.113.66")
        } else {
            ip(&format!("198.51.100.{i}"))
        };
        let got = attempt(&env, "ann@example.test", WRONG, from).await;
        if let Some(secs) = got.strip_prefix("wait ") {
            let secs: u64 = secs.parse().unwrap();
            assert!(secs <= 15 * 60, "a wait of {secs} s");
            longest = longest.max(secs);
            wait(&env, secs);
        }
    }
    assert_eq!(longest, 15 * 60, "the cap was reached");
    // One more guess, counted, so that the account is waiting now.
    loop {
        match attempt(&env, "ann@example.test", WRONG, ip("198.51.100.200")).await {
            got if got == "wrong" => break,
            got => wait(&env, got.trim_start_matches("wait ").parse().unwrap()),
        }
    }

    // From where she has signed in before, the holder gets straight in.
    assert_eq!(
        attempt(&env, "ann@example.test", PASSWORD, ip("2001:db8:5:6::abc")).await,
        "signed in"
    );
    // From a new address she waits (the guesses from many addresses hold the
    // account), but never longer than 15 minutes; then she gets in.
    let new_place = ip("192.0.2.99");
    let secs = refused(&env, "ann@example.test", PASSWORD, new_place).await;
    assert!(secs <= 15 * 60, "a wait of {secs} s");
    wait(&env, secs);
    assert_eq!(
        attempt(&env, "ann@example.test", PASSWORD, new_place).await,
        "signed in"
    );
}

#[tokio::test]
async fn many_accounts_from_one_address_wait_after_twenty_failures() {
    let env = Env::new();
    account(&env, "ann@example.test").await;
    let from = ip("192.0.2.10");
    for i in 0..20 {
        let email = format!("guess{i}@example.test");
        assert_eq!(attempt(&env, &email, WRONG, from).await, "wrong");
    }
    assert_eq!(refused(&env, "ann@example.test", PASSWORD, from).await, 1);
    // Nobody else is held up by it.
    assert_eq!(
        attempt(&env, "ann@example.test", PASSWORD, ip("192.0.2.11")).await,
        "signed in"
    );
}
