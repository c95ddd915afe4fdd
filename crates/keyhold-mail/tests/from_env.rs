//! `Mailer::from_env` reads the process environment, so it has a test binary of
//! its own (no other test runs alongside while it sets variables).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use keyhold_mail::{MailError, Mailer, ENV_MAIL_FROM, ENV_SMTP_URL};

#[test]
fn from_env_picks_outbox_or_smtp_and_the_sender() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();

    std::env::remove_var(ENV_SMTP_URL);
    std::env::remove_var(ENV_MAIL_FROM);
    let mailer = Mailer::from_env(data).unwrap();
    assert_eq!(
        mailer.describe(),
        format!("outbox {}", data.join("outbox").display())
    );
    assert!(format!("{mailer:?}").contains("no-reply@keyhold.invalid"));

    std::env::set_var(ENV_SMTP_URL, "smtp://127.0.0.1:2525");
    std::env::set_var(ENV_MAIL_FROM, "Records <records@keyhold.example>");
    let mailer = Mailer::from_env(data).unwrap();
    assert_eq!(mailer.describe(), "smtp 127.0.0.1:2525");
    assert!(format!("{mailer:?}").contains("records@keyhold.example"));

    std::env::set_var(ENV_SMTP_URL, "");
    std::env::set_var(ENV_MAIL_FROM, "not an address");
    let err = Mailer::from_env(data).unwrap_err();
    assert!(matches!(err, MailError::BadAddress(_)), "{err:?}");
}
