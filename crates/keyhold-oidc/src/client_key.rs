//! The client's RSA key: it signs the `private_key_jwt` client assertion
//! (RS512) that authenticates this service at the token endpoint, and its
//! public half is what the operator registers with the provider as a JWKS.
//!
//! ring signs; it cannot make RSA keys, so the operator makes one with
//! openssl (see docs/OPERATIONS.md) and `keyhold oidc jwks` prints the JWKS.

use std::path::Path;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use keyhold_crypto::{random_token, sha256};
use ring::rand::SystemRandom;
use ring::signature::{RsaKeyPair, RsaPublicKeyComponents, RSA_PKCS1_SHA512};
use serde_json::json;

use crate::OidcError;

/// Lifetime of a client assertion, as NHS login asks.
pub const ASSERTION_LIFETIME_SECS: i64 = 60;

pub struct ClientKey {
    pair: RsaKeyPair,
    kid: String,
}

impl std::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientKey(kid {})", self.kid)
    }
}

impl ClientKey {
    /// Reads an RSA private key in PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub fn load(path: &Path) -> Result<Self, OidcError> {
        let pem = std::fs::read_to_string(path).map_err(|e| {
            OidcError::Config(format!(
                "cannot read the client key {}: {e}",
                path.display()
            ))
        })?;
        Self::from_pem(&pem)
            .map_err(|e| OidcError::Config(format!("the client key {}: {e}", path.display())))
    }

    pub fn from_pem(pem: &str) -> Result<Self, String> {
        const BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
        const END: &str = "-----END PRIVATE KEY-----";
        let start = pem.find(BEGIN).ok_or_else(|| {
            if pem.contains("BEGIN RSA PRIVATE KEY") {
                "is PKCS#1; convert it with `openssl pkcs8 -topk8 -nocrypt`".to_string()
            } else {
                format!("has no {BEGIN} block")
            }
        })? + BEGIN.len();
        let end = pem[start..]
            .find(END)
            .ok_or_else(|| format!("has no {END} line"))?;
        let body: String = pem[start..start + end]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let der = STANDARD
            .decode(body)
            .map_err(|e| format!("is not valid base64: {e}"))?;
        let pair = RsaKeyPair::from_pkcs8(&der)
            .map_err(|e| format!("is not an RSA private key ring accepts: {e}"))?;
        if pair.public().modulus_len() < 256 {
            return Err("is shorter than 2048 bits".into());
        }
        let kid = thumbprint(&pair);
        Ok(ClientKey { pair, kid })
    }

    /// The key id: the RFC 7638 thumbprint of the public key.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWKS document, for registering with the provider.
    pub fn jwks(&self) -> serde_json::Value {
        let (n, e) = components(&self.pair);
        json!({ "keys": [{
            "kty": "RSA", "use": "sig", "alg": "RS512", "kid": self.kid, "n": n, "e": e,
        }]})
    }

    /// A signed client assertion for `aud` (the token endpoint), valid for 60
    /// seconds from `now` (Unix seconds), with a fresh `jti`.
    pub fn assertion(&self, client_id: &str, aud: &str, now: i64) -> Result<String, OidcError> {
        let jti = random_token().map_err(|e| OidcError::Internal(e.to_string()))?;
        let header = json!({ "alg": "RS512", "typ": "JWT", "kid": self.kid });
        let claims = json!({
            "iss": client_id, "sub": client_id, "aud": aud, "jti": jti,
            "iat": now, "exp": now + ASSERTION_LIFETIME_SECS,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut sig = vec![0u8; self.pair.public().modulus_len()];
        self.pair
            .sign(
                &RSA_PKCS1_SHA512,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut sig,
            )
            .map_err(|_| OidcError::Internal("signing the client assertion failed".into()))?;
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }
}

fn components(pair: &RsaKeyPair) -> (String, String) {
    let c = RsaPublicKeyComponents::<Vec<u8>>::from(pair.public());
    (URL_SAFE_NO_PAD.encode(&c.n), URL_SAFE_NO_PAD.encode(&c.e))
}

fn thumbprint(pair: &RsaKeyPair) -> String {
    let (n, e) = components(pair);
    // RFC 7638: the required members, in lexicographic order, no whitespace.
    let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
    URL_SAFE_NO_PAD.encode(sha256(canonical.as_bytes()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ring::signature::RSA_PKCS1_2048_8192_SHA512;

    // A throwaway 2048-bit test key (PKCS#8), made with
    // `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048`.
    const TEST_KEY: &str = include_str!("../tests/test-client-key.pem");

    #[test]
    fn assertion_is_rs512_with_the_claims_nhs_login_asks_for() {
        let key = ClientKey::from_pem(TEST_KEY).unwrap();
        let jwt = key
            .assertion("client-1", "https://idp.test/token", 1_700_000_000)
            .unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(header["alg"], "RS512");
        assert_eq!(header["kid"], key.kid());
        assert_eq!(claims["iss"], "client-1");
        assert_eq!(claims["sub"], "client-1");
        assert_eq!(claims["aud"], "https://idp.test/token");
        assert_eq!(
            claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
            60
        );
        let other = key
            .assertion("client-1", "https://idp.test/token", 1_700_000_000)
            .unwrap();
        let other_claims: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(other.split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_ne!(
            claims["jti"], other_claims["jti"],
            "each assertion needs a fresh jti"
        );

        // The signature verifies with the public key from the JWKS.
        let c = RsaPublicKeyComponents::<Vec<u8>>::from(key.pair.public());
        c.verify(
            &RSA_PKCS1_2048_8192_SHA512,
            format!("{}.{}", parts[0], parts[1]).as_bytes(),
            &URL_SAFE_NO_PAD.decode(parts[2]).unwrap(),
        )
        .unwrap();
    }

    #[test]
    fn jwks_names_the_same_kid() {
        let key = ClientKey::from_pem(TEST_KEY).unwrap();
        let jwks = key.jwks();
        assert_eq!(jwks["keys"][0]["kid"], key.kid());
        assert_eq!(jwks["keys"][0]["alg"], "RS512");
        assert_eq!(jwks["keys"][0]["e"], "AQAB");
    }

    #[test]
    fn refuses_what_is_not_a_pkcs8_rsa_key() {
        assert!(ClientKey::from_pem("nothing here").is_err());
        assert!(ClientKey::from_pem(
            "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----"
        )
        .unwrap_err()
        .contains("PKCS#1"));
        assert!(ClientKey::from_pem(
            "-----BEGIN PRIVATE KEY-----\nnot base64!\n-----END PRIVATE KEY-----"
        )
        .is_err());
    }
}
