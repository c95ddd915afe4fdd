//! Keyhold's cryptography: the key hierarchy, AEAD sealing, blind indexes,
//! password hashing and audit signing.
//!
//! Architecture invariant: this crate is a leaf. It performs no I/O (no files,
//! no network, no clock), depends on no storage or web crate, and every secret
//! type it defines prints as `<redacted>` and is zeroized on drop where the
//! underlying library allows it.
//!
//! The hierarchy (see `DESIGN.md`): a [`MasterKey`] (age X25519) wraps one
//! [`DataKey`] per patient; records are [`seal`]ed under that data key with
//! associated data binding patient, record and version; secret lookups go
//! through an [`IndexKey`] blind index.

mod aead;
mod blind;
mod error;
mod kek;
pub mod passphrase;
mod password;
mod random;
mod signing;

#[cfg(test)]
mod test_support;

pub use aead::{open, seal, DataKey, SEAL_OVERHEAD};
pub use blind::{IndexKey, MacKey};
pub use error::CryptoError;
pub use kek::{
    decrypt_stream, decrypt_with_identity, encrypt_stream_to_recipient, encrypt_to_recipient,
    MasterKey, MasterKeyring,
};
pub use password::PasswordHasher;
pub use random::{constant_time_eq, random_array, random_token, sha256};
pub use signing::{verify_signature, AuditSigningKey};
