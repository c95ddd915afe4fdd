//! Ed25519 signatures over audit-log checkpoints, so tampering with the audit
//! trail is detectable by anyone holding the public key.

use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair as _, UnparsedPublicKey, ED25519};
use zeroize::Zeroizing;

use crate::CryptoError;

/// The audit checkpoint signing key.
pub struct AuditSigningKey {
    pair: Ed25519KeyPair,
}

impl AuditSigningKey {
    /// A new key as a PKCS#8 v2 document, to be stored and later loaded with
    /// [`Self::from_pkcs8`].
    pub fn generate_pkcs8() -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map(|doc| Zeroizing::new(doc.as_ref().to_vec()))
            .map_err(|_| CryptoError::Rng)
    }

    /// Loads a PKCS#8 v2 document; ring checks the embedded public key
    /// matches the private key.
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, CryptoError> {
        Ed25519KeyPair::from_pkcs8(der)
            .map(|pair| Self { pair })
            .map_err(|_| CryptoError::MalformedKey("not an Ed25519 PKCS#8 v2 key"))
    }

    /// The 32-byte public key, to publish beside the checkpoints.
    pub fn public_key(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (o, b) in out.iter_mut().zip(self.pair.public_key().as_ref()) {
            *o = *b;
        }
        out
    }

    /// The 64-byte signature of `msg`.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        let mut out = [0u8; 64];
        for (o, b) in out.iter_mut().zip(self.pair.sign(msg).as_ref()) {
            *o = *b;
        }
        out
    }
}

impl std::fmt::Debug for AuditSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditSigningKey")
            .field("public_key", &hex::encode(self.public_key()))
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Whether `sig` is a valid Ed25519 signature of `msg` under `public_key`.
/// Malformed keys or signatures are simply `false`.
pub fn verify_signature(public_key: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(msg, sig)
        .is_ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::test_support::assert_no_secret;

    fn key() -> (Zeroizing<Vec<u8>>, AuditSigningKey) {
        let der = AuditSigningKey::generate_pkcs8().unwrap();
        let k = AuditSigningKey::from_pkcs8(&der).unwrap();
        (der, k)
    }

    #[test]
    fn sign_verify_and_tampering() {
        let (_, k) = key();
        let pk = k.public_key();
        let msg = b"checkpoint seq=42 head=abcd";
        let sig = k.sign(msg);
        assert!(verify_signature(&pk, msg, &sig));
        assert!(!verify_signature(&pk, b"checkpoint seq=43 head=abcd", &sig));
        let mut bad = sig;
        bad[0] ^= 1;
        assert!(!verify_signature(&pk, msg, &bad));
        assert!(!verify_signature(&pk, msg, &sig[..63]));
        let (_, other) = key();
        assert!(!verify_signature(&other.public_key(), msg, &sig));
        assert!(!verify_signature(&pk[..31], msg, &sig));
    }

    #[test]
    fn reload_keeps_identity() {
        let (der, k) = key();
        let again = AuditSigningKey::from_pkcs8(&der).unwrap();
        assert_eq!(k.public_key(), again.public_key());
        // Ed25519 is deterministic.
        assert_eq!(k.sign(b"m"), again.sign(b"m"));
    }

    #[test]
    fn from_pkcs8_refuses_garbage() {
        let (der, _) = key();
        for bad in [&b""[..], b"garbage", &der[..der.len() - 1]] {
            assert!(matches!(
                AuditSigningKey::from_pkcs8(bad),
                Err(CryptoError::MalformedKey(_))
            ));
        }
    }

    #[test]
    fn debug_is_redacted() {
        let (der, k) = key();
        let debug = format!("{k:?} {k:#?}");
        assert!(debug.contains(&hex::encode(k.public_key())));
        // ring's v2 document: 16-byte prefix ending in OCTET STRING(32), then the seed.
        assert_eq!(&der[14..16], &[0x04, 0x20]);
        assert_no_secret(&debug, &der[16..48]);
        assert_no_secret(&debug, &der);
    }
}
