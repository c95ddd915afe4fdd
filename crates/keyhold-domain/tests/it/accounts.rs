//! One account per email address, whatever its case; and sign-in failures
//! that do not say whether the email or the password was wrong.

use keyhold_domain::audit::{AuditAction, Outcome};
use keyhold_domain::trees::{ACCOUNTS, PATIENTS};
use keyhold_domain::DomainError;

use crate::helpers::{audit_count, count, last_audit, Env, PASSWORD};

#[tokio::test]
async fn an_email_already_used_in_another_case_is_refused() {
    let env = Env::new();
    let first = env
        .core
        .sign_up("Test Person", "Ann.Smith@Example.test", PASSWORD)
        .await
        .unwrap();

    match env
        .core
        .sign_up("Test Person", "ann.smith@EXAMPLE.TEST", "another password")
        .await
    {
        Err(DomainError::Invalid(errors)) => {
            assert_eq!(errors.len(), 1);
            assert_eq!(errors[0].field, "email");
        }
        Err(e) => panic!("refused with {e:?}"),
        Ok(_) => panic!("a second account with the same email address"),
    }
    assert_eq!(count(env.store(), ACCOUNTS), 1);
    assert_eq!(count(env.store(), PATIENTS), 1);

    // The first account is untouched; the second password opens nothing.
    let again = env
        .core
        .sign_in("ANN.SMITH@example.test", PASSWORD)
        .await
        .unwrap();
    assert_eq!(again.principal, first.principal);
    match env
        .core
        .sign_in("ann.smith@example.test", "another password")
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
            tokio::spawn(async move { core.sign_up("Test Person", email, PASSWORD).await })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => won += 1,
            Err(DomainError::Invalid(errors)) => assert_eq!(errors[0].field, "email"),
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(count(env.store(), ACCOUNTS), 1);
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
        match env.core.sign_in(email, password).await {
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
        .sign_in("ann@example.test", PASSWORD)
        .await
        .unwrap();
    assert_eq!(s.principal, p);
    assert_eq!(last_audit(env.store()).event.action, AuditAction::SignIn);
}
