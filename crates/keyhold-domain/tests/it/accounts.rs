//! One account per email address, whatever its case; and sign-in failures
//! that do not say whether the email or the password was wrong.

use keyhold_domain::audit::{AuditAction, Outcome};
use keyhold_domain::trees::{ACCOUNTS, PATIENTS};
use keyhold_domain::DomainError;

use crate::helpers::{audit_count, count, last_audit, Env, PASSWORD};

#[tokio::test]
async fn an_email_already_used_in_another_case_gets_no_second_account() {
    let env = Env::new();
    let first = env.signed_up("Test Person", "Ann.Smith@Example.test").await;

    // The same answer as a new sign-up (nothing on the page tells them
    // apart); the holder is mailed instead.
    env.core
        .sign_up(
            "Test Person",
            "ann.smith@EXAMPLE.TEST",
            "another password",
            "/",
        )
        .await
        .unwrap();
    assert_eq!(count(env.store(), ACCOUNTS), 1);
    assert_eq!(count(env.store(), PATIENTS), 1);
    let last = env.mails().pop().unwrap();
    assert!(
        last.contains("already has one") && !last.contains("/account/confirm/"),
        "the holder is told, and no confirmation link is sent:\n{last}"
    );

    // The first account is untouched; the second password opens nothing.
    let again = env
        .core
        .sign_in("ANN.SMITH@example.test", PASSWORD, None)
        .await
        .unwrap();
    assert_eq!(again.principal, first.principal);
    match env
        .core
        .sign_in("ann.smith@example.test", "another password", None)
        .await
    {
        Err(DomainError::BadCredentials) => {}
        other => panic!(
            "the refused sign-up's password: {:?}",
            other.map(|s| s.principal)
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_two_simultaneous_sign_ups_with_one_email_exactly_one_wins() {
    let env = Env::new();
    let tasks: Vec<_> = ["bob@example.test", "BOB@example.test", "Bob@Example.Test"]
        .into_iter()
        .map(|email| {
            let core = env.core.clone();
            tokio::spawn(async move { core.sign_up("Test Person", email, PASSWORD, "/").await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(count(env.store(), ACCOUNTS), 1);
    let confirmations = env
        .mails()
        .iter()
        .filter(|m| m.contains("/account/confirm/"))
        .count();
    assert_eq!(confirmations, 1, "one account, one confirmation link");
    assert_eq!(env.mails().len(), 3, "each sign-up sent one message");
}

#[tokio::test]
async fn an_unconfirmed_address_does_not_sign_in_and_its_link_works_once() {
    let env = Env::new();
    env.core
        .sign_up("Cy Person", "cy@example.test", PASSWORD, "/invitations/abc")
        .await
        .unwrap();
    assert!(matches!(
        env.core.sign_in("cy@example.test", PASSWORD, None).await,
        Err(DomainError::EmailUnconfirmed)
    ));
    // A wrong password says nothing about confirmation.
    assert!(matches!(
        env.core
            .sign_in("cy@example.test", "wrong password", None)
            .await,
        Err(DomainError::BadCredentials)
    ));
    let token = env.link_token("cy@example.test", "/account/confirm/");
    let (signed, next) = env.core.confirm_email(&token).await.unwrap();
    assert_eq!(next, "/invitations/abc", "back to where the sign-up began");
    assert!(signed.principal.own_patient.is_some());
    assert!(env.core.confirm_email(&token).await.is_err(), "single use");
    env.core
        .sign_in("cy@example.test", PASSWORD, None)
        .await
        .unwrap();

    // Links expire.
    env.core
        .sign_up("Di Person", "di@example.test", PASSWORD, "/")
        .await
        .unwrap();
    let late = env.link_token("di@example.test", "/account/confirm/");
    env.clock
        .advance(keyhold_domain::CONFIRM_TTL + time::Duration::seconds(1));
    assert!(env.core.confirm_email(&late).await.is_err());
}

#[tokio::test]
async fn unknown_email_and_wrong_password_fail_alike_and_are_audited() {
    let env = Env::new();
    let (p, patient, _) = env.patient("ann@example.test").await;

    let attempts = [
        ("nobody@example.test", PASSWORD, None),
        ("ann@example.test", "wrong password", Some(p.account)),
        ("not an email", PASSWORD, None),
    ];
    for (email, password, account) in attempts {
        let before = audit_count(env.store());
        match env.core.sign_in(email, password, None).await {
            Err(DomainError::BadCredentials) => {}
            other => panic!("{email}: {:?}", other.map(|s| s.principal)),
        }
        if email.contains('@') {
            assert_eq!(
                audit_count(env.store()),
                before + 1,
                "{email}: failed sign-in audited"
            );
            let e = last_audit(env.store()).event;
            assert_eq!(
                (e.action, e.outcome),
                (AuditAction::SignInFailed, Outcome::Denied)
            );
            assert_eq!(e.actor.account, account);
            assert_eq!(e.patient, account.map(|_| patient));
        }
    }
    // Control: the right password works.
    let s = env
        .core
        .sign_in("ann@example.test", PASSWORD, None)
        .await
        .unwrap();
    assert_eq!(s.principal, p);
    assert_eq!(last_audit(env.store()).event.action, AuditAction::SignIn);
}
