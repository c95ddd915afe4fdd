//! Password hashing is bounded: a flood of sign-ins is partly shed with
//! `Overloaded` instead of queueing without limit, and the service recovers.

use keyhold_domain::{DomainError, Settings};

use crate::helpers::{Env, PASSWORD};

fn bounded() -> Settings {
    // The flood is of one account from one place; what is measured here is
    // the hashing bound, so the sign-in limits (`throttle`) are set out of reach.
    let loose = keyhold_domain::Limit {
        free_failures: 1_000,
        ..keyhold_domain::SignInLimits::default().per_account
    };
    Settings {
        hashing_concurrency: 1,
        hashing_max_waiting: 2,
        danger_fast_hashing: false,
        sign_in_limits: keyhold_domain::SignInLimits {
            per_address: loose,
            per_account_address: loose,
            per_account: loose,
            ..Default::default()
        },
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn a_flood_of_sign_ins_is_shed_not_queued() {
    let env = Env::with(bounded());
    env.signed_up("Test Person", "ann@example.test").await;

    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let core = env.core.clone();
            tokio::spawn(async move { core.sign_in("ann@example.test", PASSWORD, None).await })
        })
        .collect();
    let (mut done, mut shed) = (0, 0);
    for t in tasks {
        match t.await.expect("no sign-in panicked") {
            Ok(_) => done += 1,
            Err(DomainError::Overloaded) => shed += 1,
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
    assert!(done >= 1, "none completed");
    assert!(shed >= 1, "none was shed: {done} completed");

    // Once the flood has passed, sign-in works again.
    env.core
        .sign_in("ann@example.test", PASSWORD, None)
        .await
        .unwrap();
}

/// A sign-in whose caller goes away while it waits for a hashing slot (a
/// client that disconnects, a timeout) must give its place back.
///
/// `Hashing::run` holds the queue place in a drop guard, so a future dropped
/// while waiting gives it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sign_in_cancelled_while_waiting_gives_its_place_back() {
    let env = Env::with(Settings {
        hashing_max_waiting: 1,
        ..bounded()
    });
    env.signed_up("Test Person", "ann@example.test").await;

    let core = env.core.clone();
    let hashing =
        tokio::spawn(async move { core.sign_in("ann@example.test", PASSWORD, None).await });
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let core = env.core.clone();
    let waiting =
        tokio::spawn(async move { core.sign_in("ann@example.test", PASSWORD, None).await });
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    assert!(
        !hashing.is_finished() && !waiting.is_finished(),
        "precondition: one hashing, one waiting"
    );
    waiting.abort();
    assert!(waiting.await.unwrap_err().is_cancelled());
    hashing.await.unwrap().unwrap();

    // Nobody is hashing or waiting now.
    match env.core.sign_in("ann@example.test", PASSWORD, None).await {
        Ok(_) => {}
        Err(e) => panic!("sign-in after a cancelled one: {e:?}"),
    }
}
