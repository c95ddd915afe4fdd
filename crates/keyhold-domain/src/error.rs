//! The domain's errors. Messages here may reach a person, so they never hold
//! health data; details for operators go to the log through `Internal`.

use keyhold_crypto::CryptoError;
use keyhold_storage::StorageError;

/// A problem with one field of what a person submitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The form field's id, so a page can link the message to it.
    pub field: &'static str,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        FieldError {
            field,
            message: message.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    /// Missing, or not yours: the two look the same from outside.
    #[error("not found")]
    NotFound,
    /// Not signed in, or the session has ended.
    #[error("sign in to continue")]
    Unauthenticated,
    /// Wrong email or password (deliberately not saying which).
    #[error("the email address or password is not right")]
    BadCredentials,
    /// What was submitted does not parse; one message per field.
    #[error("the submission has {} problem(s)", .0.len())]
    Invalid(Vec<FieldError>),
    /// Already exists (an account with this email).
    #[error("already exists")]
    Conflict,
    /// The right password for an account with two-factor on: ask for a code,
    /// carrying `pending` (single use, ten minutes) to `complete_second_factor`.
    #[error("a two-factor code is needed")]
    SecondFactorNeeded { pending: String },
    /// The right password, for an address whose mailed link was not opened yet.
    #[error("the email address has not been confirmed")]
    EmailUnconfirmed,
    /// Too much work queued (password hashing): try again shortly.
    #[error("the service is busy")]
    Overloaded,
    /// Too many failed sign-ins (for this account, or from this address):
    /// refused without checking the password. Try again after the wait.
    #[error("too many attempts: try again in {retry_after_secs} s")]
    TooManyAttempts { retry_after_secs: u64 },
    /// An upload larger than the limit.
    #[error("the file is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("crypto: {0}")]
    Crypto(#[from] CryptoError),
    /// Key files missing, unreadable or too open.
    #[error("{0}")]
    Keys(String),
    /// The store was written by an incompatible version.
    #[error("{0}")]
    Schema(String),
    /// A message could not be sent (the change it announces was kept).
    #[error("mail: {0}")]
    Mail(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl DomainError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        DomainError::Invalid(vec![FieldError::new(field, message)])
    }
}

impl From<serde_json::Error> for DomainError {
    fn from(e: serde_json::Error) -> Self {
        // serde_json's messages name positions and types, not values.
        DomainError::Internal(format!("encoding: {e}"))
    }
}
