//! The crate's one error type.
//!
//! Variants carry no source errors on purpose: the underlying libraries'
//! messages can echo input, and callers only need to know which step failed.

/// Why a cryptographic operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// Sealed data failed authentication, was truncated, or has an unknown
    /// format version. Deliberately undistinguished, so callers cannot become
    /// a decryption oracle.
    #[error("ciphertext could not be opened")]
    Open,
    /// Key material (or a recipient) did not parse or has the wrong length.
    #[error("key material is malformed: {0}")]
    MalformedKey(&'static str),
    /// None of the loaded master keys could unwrap a data key.
    #[error("no master key could unwrap this data key")]
    Unwrap,
    /// Encryption (age wrapping or AEAD sealing) failed; in practice only for
    /// inputs beyond the algorithms' length limits.
    #[error("wrapping failed")]
    Wrap,
    /// The operating system's random number generator failed.
    #[error("random number generator failed")]
    Rng,
    /// Argon2 refused its inputs.
    #[error("password hashing failed")]
    PasswordHash,
}
