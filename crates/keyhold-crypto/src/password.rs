//! Password hashing with Argon2id, stored as PHC strings.
//!
//! Hashing is deliberately slow; callers should run it on a blocking thread.

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::random::random_array;
use crate::CryptoError;

/// OWASP's minimum recommendation for Argon2id: m = 19 MiB, t = 2, p = 1.
/// (Computed at compile time; the fallback is argon2's default, the same values.)
const OWASP: Params = match Params::new(19_456, 2, 1, None) {
    Ok(p) => p,
    Err(_) => Params::DEFAULT,
};

/// The cheapest parameters argon2 accepts. A build-time failure here falls
/// back to the slow default, never to something weaker.
const DANGER_FAST: Params = match Params::new(Params::MIN_M_COST, Params::MIN_T_COST, 1, None) {
    Ok(p) => p,
    Err(_) => Params::DEFAULT,
};

/// Fixed inputs for the dummy hash; never a real credential.
const DUMMY_PASSWORD: &[u8] = b"keyhold-dummy-password";
const DUMMY_SALT: &[u8; 16] = b"keyhold-dummy-sl";

/// Hashes and verifies passwords with fixed Argon2id parameters.
#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    /// A hash made with `params`, verified against for unknown accounts so a
    /// login for a missing user costs as long as one for a real user.
    /// `None` only if argon2 refused our own constants.
    dummy_phc: Option<String>,
}

impl PasswordHasher {
    /// Argon2id with m = 19456 KiB, t = 2, p = 1: the OWASP Password Storage
    /// Cheat Sheet's minimum. Computes one hash up front for [`Self::dummy_verify`].
    pub fn owasp() -> Self {
        Self::with_params(OWASP)
    }

    /// Minimal legal Argon2id cost (m = 8 KiB, t = 1, p = 1), so test suites
    /// that log in many times stay fast. Offers no protection: never use it
    /// outside tests.
    pub fn danger_fast_for_tests() -> Self {
        Self::with_params(DANGER_FAST)
    }

    fn with_params(params: Params) -> Self {
        let dummy_phc = SaltString::encode_b64(DUMMY_SALT).ok().and_then(|salt| {
            argon2id(&params)
                .hash_password(DUMMY_PASSWORD, &salt)
                .ok()
                .map(|h| h.to_string())
        });
        Self { params, dummy_phc }
    }

    /// A PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`) with a fresh
    /// 128-bit salt; it records its own parameters, so they can be raised later.
    pub fn hash(&self, password: &[u8]) -> Result<String, CryptoError> {
        let salt_bytes = random_array::<16>()?;
        let salt = SaltString::encode_b64(&salt_bytes).map_err(|_| CryptoError::PasswordHash)?;
        argon2id(&self.params)
            .hash_password(password, &salt)
            .map(|h| h.to_string())
            .map_err(|_| CryptoError::PasswordHash)
    }

    /// Whether `password` matches `phc`, using the parameters recorded in
    /// `phc`. A malformed or non-Argon2 string is simply `false`.
    pub fn verify(&self, password: &[u8], phc: &str) -> bool {
        match PasswordHash::new(phc) {
            Ok(parsed) => argon2id(&self.params)
                .verify_password(password, &parsed)
                .is_ok(),
            Err(_) => false,
        }
    }

    /// Spends the time of one real verification, for accounts that do not
    /// exist, so response time does not reveal which emails are registered.
    pub fn dummy_verify(&self, password: &[u8]) {
        match &self.dummy_phc {
            Some(phc) => {
                let _ = self.verify(password, phc);
            }
            // Unreachable with our constants; still pay the same cost.
            None => {
                let _ = self.hash(password);
            }
        }
    }
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("algorithm", &"argon2id")
            .field("m_cost", &self.params.m_cost())
            .field("t_cost", &self.params.t_cost())
            .field("p_cost", &self.params.p_cost())
            .finish()
    }
}

fn argon2id(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// (algorithm, version, m, t, p) as recorded in a PHC string.
    fn phc_params(phc: &str) -> (String, Option<u32>, u32, u32, u32) {
        let h = PasswordHash::new(phc).unwrap();
        let get = |name| h.params.get_decimal(name).unwrap();
        (
            h.algorithm.to_string(),
            h.version,
            get("m"),
            get("t"),
            get("p"),
        )
    }

    #[test]
    fn owasp_params_are_m19456_t2_p1_argon2id() {
        let hasher = PasswordHasher::owasp();
        let phc = hasher.hash(b"correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$"), "{phc}");
        assert_eq!(
            phc_params(&phc),
            ("argon2id".to_owned(), Some(0x13), 19_456, 2, 1)
        );
        assert!(hasher.verify(b"correct horse", &phc));
        assert!(!hasher.verify(b"wrong horse", &phc));
    }

    #[test]
    fn hash_verify_and_wrong_password() {
        let hasher = PasswordHasher::danger_fast_for_tests();
        let phc = hasher.hash(b"s3cret pass").unwrap();
        assert!(hasher.verify(b"s3cret pass", &phc));
        assert!(!hasher.verify(b"s3cret pasS", &phc));
        assert!(!hasher.verify(b"", &phc));
        assert!(!phc.contains("s3cret"));
    }

    #[test]
    fn salts_are_random() {
        let hasher = PasswordHasher::danger_fast_for_tests();
        let a = hasher.hash(b"same").unwrap();
        let b = hasher.hash(b"same").unwrap();
        assert_ne!(a, b);
        let salt = |p: &str| PasswordHash::new(p).unwrap().salt.unwrap().to_string();
        assert_ne!(salt(&a), salt(&b));
    }

    #[test]
    fn malformed_phc_is_false() {
        let hasher = PasswordHasher::danger_fast_for_tests();
        let good = hasher.hash(b"pw").unwrap();
        let truncated = &good[..good.len() - 10];
        for bad in [
            "",
            "garbage",
            "$argon2id$",
            truncated,
            "$argon2id$v=19$m=8,t=1,p=1$$",
        ] {
            assert!(!hasher.verify(b"pw", bad), "accepted {bad:?}");
        }
    }

    #[test]
    fn danger_params_are_minimal_and_cross_verify() {
        let fast = PasswordHasher::danger_fast_for_tests();
        let phc = fast.hash(b"pw").unwrap();
        assert_eq!(
            phc_params(&phc),
            ("argon2id".to_owned(), Some(0x13), 8, 1, 1)
        );
        // Verification follows the parameters stored in the hash.
        assert!(PasswordHasher::owasp().verify(b"pw", &phc));
    }

    #[test]
    fn dummy_hash_uses_the_same_params() {
        for hasher in [
            PasswordHasher::owasp(),
            PasswordHasher::danger_fast_for_tests(),
        ] {
            let dummy = hasher.dummy_phc.clone().unwrap();
            let real = hasher.hash(b"pw").unwrap();
            let (_, _, m, t, p) = phc_params(&dummy);
            let (_, _, rm, rt, rp) = phc_params(&real);
            assert_eq!((m, t, p), (rm, rt, rp));
            assert!(hasher.verify(DUMMY_PASSWORD, &dummy));
            hasher.dummy_verify(b"anything");
        }
    }

    #[test]
    fn debug_shows_params_only() {
        let debug = format!("{:?}", PasswordHasher::danger_fast_for_tests());
        assert!(debug.contains("m_cost: 8"));
        assert!(!debug.contains("$argon2"));
    }
}
