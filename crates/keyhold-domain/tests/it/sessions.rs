//! Sessions end after 30 idle minutes and after 12 hours whatever happens,
//! end on sign-out, and the store never holds the token itself.

use keyhold_domain::trees::{
    ACCOUNTS, ACCOUNTS_BY_EMAIL, AUDIT, DEKS, DOCUMENTS, DOC_CHUNKS, ENTRIES, META, PATIENTS,
    PATIENTS_BY_NHS, SESSIONS,
};
use keyhold_domain::SessionToken;
use time::Duration;

use crate::helpers::{barrier, Env, PASSWORD};

/// Looks the session up, then waits for its (fire-and-forget) refresh to land.
async fn live(env: &Env, token: &SessionToken) -> bool {
    let found = env.core.session(token).await.unwrap();
    barrier(env.store()).await;
    found.is_some()
}

#[tokio::test]
async fn a_session_ends_after_thirty_idle_minutes() {
    let env = Env::new();
    let (p, _, token) = env.patient("ann@example.test").await;
    assert_eq!(env.core.session(&token).await.unwrap(), Some(p));

    // Activity within the idle limit keeps it going, past 30 minutes in all.
    env.clock.advance(Duration::minutes(29));
    assert!(live(&env, &token).await);
    env.clock.advance(Duration::minutes(29));
    assert!(live(&env, &token).await, "the idle clock restarts on use");

    env.clock.advance(Duration::minutes(31));
    assert!(!live(&env, &token).await, "31 idle minutes");
    env.clock.advance(Duration::minutes(-31));
    assert!(!live(&env, &token).await, "an ended session stays ended");
}

#[tokio::test]
async fn a_session_ends_after_twelve_hours_however_busy() {
    let env = Env::new();
    let (_, _, token) = env.patient("ann@example.test").await;
    let mut elapsed = Duration::ZERO;
    while elapsed < Duration::hours(12) {
        assert!(live(&env, &token).await, "ended early, after {elapsed}");
        env.clock.advance(Duration::minutes(20));
        elapsed += Duration::minutes(20);
    }
    // Used at exactly 12 hours (the boundary, either answer will do), then
    // 10 minutes later: well within the idle limit, so only the 12-hour limit
    // can end it.
    live(&env, &token).await;
    env.clock.advance(Duration::minutes(10));
    assert!(!live(&env, &token).await, "still live after 12 h 10 min");
}

#[tokio::test]
async fn sign_out_ends_the_session_and_only_that_one() {
    let env = Env::new();
    let (_, _, first) = env.patient("ann@example.test").await;
    let second = env
        .core
        .sign_in("ann@example.test", PASSWORD, None)
        .await
        .unwrap()
        .token;
    assert!(live(&env, &first).await && live(&env, &second).await);

    env.core.sign_out(&first).await.unwrap();
    assert!(!live(&env, &first).await);
    assert!(
        live(&env, &second).await,
        "another session of the same account goes on"
    );
}

#[tokio::test]
async fn the_store_never_holds_a_session_token() {
    let env = Env::new();
    let (_, _, token) = env.patient("ann@example.test").await;
    let other = env
        .core
        .sign_in("ann@example.test", PASSWORD, None)
        .await
        .unwrap()
        .token;
    let needle = token.as_str().as_bytes();
    assert!(needle.len() >= 20);

    // Control: the sessions are there, under the hash of their tokens.
    let keys: Vec<Vec<u8>> = env
        .store()
        .scan(SESSIONS, b"")
        .map(|r| r.unwrap().0)
        .collect();
    assert_eq!(keys.len(), 2);
    for t in [&token, &other] {
        let hashed = keyhold_crypto::sha256(t.as_str().as_bytes()).to_vec();
        assert!(keys.contains(&hashed));
    }

    let trees = [
        META,
        DEKS,
        ACCOUNTS,
        ACCOUNTS_BY_EMAIL,
        SESSIONS,
        PATIENTS,
        PATIENTS_BY_NHS,
        ENTRIES,
        DOCUMENTS,
        DOC_CHUNKS,
        AUDIT,
    ];
    for tree in trees {
        for item in env.store().scan(tree, b"") {
            let (k, v) = item.unwrap();
            for t in [&token, &other] {
                let needle = t.as_str().as_bytes();
                let found = |hay: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
                assert!(!found(&k), "a token is a key of {}", tree.as_str());
                assert!(!found(&v), "a token is inside a value of {}", tree.as_str());
            }
        }
    }
}
