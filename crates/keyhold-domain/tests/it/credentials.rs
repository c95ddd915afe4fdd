//! credentials.rs: forgotten and changed passwords, signing out everywhere,
//! and the passwords refused as too common.

use keyhold_domain::{DomainError, RESET_TTL};
use time::Duration;

use crate::helpers::{Env, PASSWORD};

const NEW: &str = "a brand new passphrase";

fn field_of(r: Result<impl std::fmt::Debug, DomainError>) -> &'static str {
    match r {
        Err(DomainError::Invalid(e)) => e[0].field,
        other => panic!("expected a field error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_reset_link_goes_only_to_an_account_and_works_once() {
    let env = Env::new();
    let before = env.person("Ann Person", "ann@example.test").await;
    let mails = env.mails().len();

    env.core
        .request_password_reset_now("nobody@example.test")
        .await
        .unwrap();
    assert_eq!(
        env.mails().len(),
        mails,
        "no mail for an address with no account"
    );

    env.core
        .request_password_reset_now("ANN@example.test")
        .await
        .unwrap();
    let token = env.link_token("ann@example.test", "/password/reset/");
    let mail = env.mails().pop().unwrap();
    assert!(!mail.contains(PASSWORD), "no password in mail");

    assert_eq!(
        field_of(env.core.reset_password(&token, "short").await),
        "password"
    );
    assert_eq!(
        field_of(env.core.reset_password(&token, "password123").await),
        "password"
    );
    env.clock.advance(Duration::seconds(1));
    let signed = env.core.reset_password(&token, NEW).await.unwrap();
    assert_eq!(field_of(env.core.reset_password(&token, NEW).await), "link");

    assert!(
        env.core.session(&before).await.unwrap().is_none(),
        "older sessions end"
    );
    assert!(env.core.session(&signed.token).await.unwrap().is_some());
    assert!(matches!(
        env.core.sign_in("ann@example.test", PASSWORD, None).await,
        Err(DomainError::BadCredentials)
    ));
    env.core
        .sign_in("ann@example.test", NEW, None)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_reset_link_expires_and_confirms_the_address() {
    let env = Env::new();
    // Signed up, never confirmed: a reset link proves the address too.
    env.core
        .sign_up("Bo Person", "bo@example.test", PASSWORD, "/")
        .await
        .unwrap();
    env.core
        .request_password_reset_now("bo@example.test")
        .await
        .unwrap();
    let late = env.link_token("bo@example.test", "/password/reset/");
    env.clock.advance(RESET_TTL + Duration::seconds(1));
    assert_eq!(field_of(env.core.reset_password(&late, NEW).await), "link");

    env.core
        .request_password_reset_now("bo@example.test")
        .await
        .unwrap();
    let token = env.link_token("bo@example.test", "/password/reset/");
    env.core.reset_password(&token, NEW).await.unwrap();
    env.core
        .sign_in("bo@example.test", NEW, None)
        .await
        .unwrap();
}

#[tokio::test]
async fn changing_the_password_needs_the_current_one_and_ends_other_sessions() {
    let env = Env::new();
    let phone = env.person("Cy Person", "cy@example.test").await;
    let laptop = env
        .core
        .sign_in("cy@example.test", PASSWORD, None)
        .await
        .unwrap();
    let p = laptop.principal.clone();
    env.clock.advance(Duration::seconds(1));

    assert_eq!(
        field_of(env.core.change_password(&p, "not it", NEW).await),
        "current-password"
    );
    assert_eq!(
        field_of(env.core.change_password(&p, PASSWORD, "iloveyou1").await),
        "new-password"
    );
    let fresh = env.core.change_password(&p, PASSWORD, NEW).await.unwrap();
    assert!(env.core.session(&phone).await.unwrap().is_none());
    assert!(env.core.session(&laptop.token).await.unwrap().is_none());
    assert!(
        env.core.session(&fresh).await.unwrap().is_some(),
        "this browser carries on"
    );
    assert!(env
        .core
        .sign_in("cy@example.test", PASSWORD, None)
        .await
        .is_err());
}

#[tokio::test]
async fn signing_out_everywhere_ends_every_session() {
    let env = Env::new();
    let one = env.person("Di Person", "di@example.test").await;
    let two = env
        .core
        .sign_in("di@example.test", PASSWORD, None)
        .await
        .unwrap();
    env.core.sign_out_everywhere(&two.principal).await.unwrap();
    assert!(env.core.session(&one).await.unwrap().is_none());
    assert!(env.core.session(&two.token).await.unwrap().is_none());
    // Signing in again works.
    env.core
        .sign_in("di@example.test", PASSWORD, None)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_common_password_is_refused_at_sign_up() {
    let env = Env::new();
    for common in ["password1", "Qwertyuiop", "iloveyou123"] {
        assert_eq!(
            field_of(
                env.core
                    .sign_up("Ed Person", "ed@example.test", common, "/")
                    .await
            ),
            "password",
            "{common}"
        );
    }
    assert!(env.mails().is_empty(), "nothing sent for a refused sign-up");
}

#[tokio::test]
async fn guessing_the_current_password_is_limited_like_signing_in() {
    let env = Env::new();
    let s = env.signed_up("Fay Person", "fay@example.test").await;
    for _ in 0..5 {
        assert_eq!(
            field_of(
                env.core
                    .change_password(&s.principal, "a wrong guess", NEW)
                    .await
            ),
            "current-password"
        );
    }
    // The limit now holds, even for the right password, and for sign-in too.
    assert!(matches!(
        env.core.change_password(&s.principal, PASSWORD, NEW).await,
        Err(DomainError::TooManyAttempts { .. })
    ));
    assert!(matches!(
        env.core.sign_in("fay@example.test", PASSWORD, None).await,
        Err(DomainError::TooManyAttempts { .. })
    ));
    // After the wait, the right password works.
    env.clock.advance(Duration::minutes(16));
    env.core
        .change_password(&s.principal, PASSWORD, NEW)
        .await
        .unwrap();
}
