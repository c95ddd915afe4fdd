//! two_factor.rs: TOTP enrolment, the code step of sign-in (codes used once,
//! recovery codes, a limit on wrong codes), and "confirm it's you".

use keyhold_domain::clock::Clock;
use keyhold_domain::two_factor::{
    code_at, SecondFactorError, CODE_ATTEMPTS, CONFIRM_FOR, RECOVERY_CODES,
};
use keyhold_domain::{DomainError, SignedIn};
use time::Duration;

use crate::helpers::{Env, PASSWORD};

/// Signs up, turns two-factor on; returns the secret and recovery codes.
async fn enrolled(env: &Env, email: &str) -> (SignedIn, String, Vec<String>) {
    let s = env.signed_up("Tia Person", email).await;
    let e = env.core.begin_two_factor(&s.principal).await.unwrap();
    assert!(
        e.otpauth_url.starts_with("otpauth://totp/Keyhold"),
        "{}",
        e.otpauth_url
    );
    assert!(e
        .otpauth_url
        .contains(&format!("secret={}", e.secret_base32)));
    // Showing the page again keeps the same secret until it is confirmed.
    let again = env.core.begin_two_factor(&s.principal).await.unwrap();
    assert_eq!(again.secret_base32, e.secret_base32);

    assert!(matches!(
        env.core.enable_two_factor(&s.principal, "000000").await,
        Err(DomainError::Invalid(_))
    ));
    let code = code_at(&e.secret_base32, env.clock.now()).unwrap();
    let codes = env
        .core
        .enable_two_factor(&s.principal, &code)
        .await
        .unwrap();
    assert_eq!(codes.len(), RECOVERY_CODES);
    (s, e.secret_base32, codes)
}

async fn password_step(env: &Env, email: &str) -> String {
    match env.core.sign_in(email, PASSWORD, None).await {
        Err(DomainError::SecondFactorNeeded { pending }) => pending,
        other => panic!(
            "expected the code step, got {:?}",
            other.map(|s| s.principal)
        ),
    }
}

#[tokio::test]
async fn sign_in_asks_for_a_code_and_each_code_works_once() {
    let env = Env::new();
    let (_, secret, _) = enrolled(&env, "tia@example.test").await;
    // The password alone no longer signs in: it asks for the code.
    // The code used to turn it on cannot be used again in the same step.
    let pending = password_step(&env, "tia@example.test").await;
    let same = code_at(&secret, env.clock.now()).unwrap();
    let pending = match env.core.complete_second_factor(&pending, &same).await {
        Err(SecondFactorError::Wrong { pending, left }) => {
            assert_eq!(left, CODE_ATTEMPTS - 1);
            pending
        }
        other => panic!("a replayed code: {:?}", other.map(|_| ())),
    };
    env.clock.advance(Duration::seconds(30));
    let fresh = code_at(&secret, env.clock.now()).unwrap();
    let (signed, _) = env
        .core
        .complete_second_factor(&pending, &fresh)
        .await
        .unwrap();
    assert!(env.core.session(&signed.token).await.unwrap().is_some());
    // The pending sign-in is used up.
    assert!(matches!(
        env.core.complete_second_factor(&pending, &fresh).await,
        Err(SecondFactorError::Expired)
    ));
}

#[tokio::test]
async fn a_recovery_code_works_once_in_any_case() {
    let env = Env::new();
    let (_, _, codes) = enrolled(&env, "rue@example.test").await;
    let pending = password_step(&env, "rue@example.test").await;
    let typed = codes[0].to_uppercase().replace('-', " ");
    env.core
        .complete_second_factor(&pending, &typed)
        .await
        .unwrap();
    let status = env
        .core
        .two_factor_status(
            env.core
                .complete_second_factor(&password_step(&env, "rue@example.test").await, &codes[1])
                .await
                .unwrap()
                .0
                .principal
                .account,
        )
        .unwrap();
    assert_eq!(status.recovery_left, RECOVERY_CODES - 2);
    let pending = password_step(&env, "rue@example.test").await;
    assert!(matches!(
        env.core.complete_second_factor(&pending, &codes[0]).await,
        Err(SecondFactorError::Wrong { .. })
    ));
}

#[tokio::test]
async fn too_many_wrong_codes_end_the_sign_in() {
    let env = Env::new();
    enrolled(&env, "vic@example.test").await;
    let mut pending = password_step(&env, "vic@example.test").await;
    for i in 1..CODE_ATTEMPTS {
        pending = match env.core.complete_second_factor(&pending, "123456").await {
            Err(SecondFactorError::Wrong { pending, left }) => {
                assert_eq!(left, CODE_ATTEMPTS - i);
                pending
            }
            other => panic!("{:?}", other.map(|_| ())),
        };
    }
    assert!(matches!(
        env.core.complete_second_factor(&pending, "123456").await,
        Err(SecondFactorError::TooManyWrong)
    ));
}

#[tokio::test]
async fn confirming_it_is_you_lasts_fifteen_minutes() {
    let env = Env::new();
    let s = env.signed_up("Wes Person", "wes@example.test").await;
    assert!(
        env.core.recently_confirmed(&s.token).unwrap(),
        "a sign-in counts"
    );
    env.clock.advance(CONFIRM_FOR + Duration::seconds(1));
    assert!(!env.core.recently_confirmed(&s.token).unwrap());
    assert!(matches!(
        env.core
            .confirm_it_is_you(&s.principal, &s.token, "wrong password")
            .await,
        Err(DomainError::Invalid(_))
    ));
    assert!(!env.core.recently_confirmed(&s.token).unwrap());
    env.core
        .confirm_it_is_you(&s.principal, &s.token, PASSWORD)
        .await
        .unwrap();
    assert!(env.core.recently_confirmed(&s.token).unwrap());

    // With two-factor on, a code is asked instead of the password.
    let e = env.core.begin_two_factor(&s.principal).await.unwrap();
    env.core
        .enable_two_factor(
            &s.principal,
            &code_at(&e.secret_base32, env.clock.now()).unwrap(),
        )
        .await
        .unwrap();
    env.clock.advance(CONFIRM_FOR + Duration::seconds(1));
    assert!(env
        .core
        .confirm_it_is_you(&s.principal, &s.token, PASSWORD)
        .await
        .is_err());
    env.core
        .confirm_it_is_you(
            &s.principal,
            &s.token,
            &code_at(&e.secret_base32, env.clock.now()).unwrap(),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn guessing_at_confirm_it_is_you_is_limited() {
    let env = Env::new();
    let s = env.signed_up("Gil Person", "gil@example.test").await;
    for _ in 0..5 {
        assert!(matches!(
            env.core
                .confirm_it_is_you(&s.principal, &s.token, "a wrong guess")
                .await,
            Err(DomainError::Invalid(_))
        ));
    }
    assert!(matches!(
        env.core
            .confirm_it_is_you(&s.principal, &s.token, PASSWORD)
            .await,
        Err(DomainError::TooManyAttempts { .. })
    ));
    env.clock.advance(Duration::minutes(16));
    env.core
        .confirm_it_is_you(&s.principal, &s.token, PASSWORD)
        .await
        .unwrap();
}
