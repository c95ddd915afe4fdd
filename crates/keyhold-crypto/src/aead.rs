//! Per-patient data keys and record sealing with AES-256-GCM.
//!
//! Sealed format, version 1: `0x01 || nonce (12 bytes) || ciphertext || tag (16 bytes)`.
//! The version byte lets a later format coexist with stored v1 values. Nonces
//! are random: with 96-bit nonces the collision risk stays negligible for far
//! more seals per key than one patient will ever produce.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use zeroize::Zeroizing;

use crate::random::random_array;
use crate::CryptoError;

const VERSION_1: u8 = 0x01;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 1 + NONCE_LEN;

/// Bytes that [`seal`] adds to a plaintext: version, nonce and tag.
pub const SEAL_OVERHEAD: usize = 1 + 12 + 16;
const _: () = assert!(SEAL_OVERHEAD == HEADER_LEN + TAG_LEN);

/// One patient's 256-bit data encryption key (DEK).
///
/// Stored only wrapped by a master key; erasing the wrapped copy
/// crypto-shreds the patient. Zeroized on drop and never printed.
#[derive(Clone)]
pub struct DataKey(Zeroizing<[u8; 32]>);

impl DataKey {
    /// A fresh random key, for a new patient.
    pub fn generate() -> Result<Self, CryptoError> {
        Ok(Self(Zeroizing::new(random_array::<32>()?)))
    }

    /// Rebuilds a key from its 32 raw bytes (after unwrapping).
    pub fn from_bytes(b: &[u8]) -> Result<Self, CryptoError> {
        let mut key = Zeroizing::new([0u8; 32]);
        if b.len() != key.len() {
            return Err(CryptoError::MalformedKey("data key must be 32 bytes"));
        }
        key.copy_from_slice(b);
        Ok(Self(key))
    }

    /// The raw key bytes, for wrapping. Named so that every use stands out in review.
    pub fn expose_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    // Built per call rather than cached: ring's expanded key schedule is not
    // zeroized on drop, so keeping it short-lived limits what lingers.
    fn aead_key(&self) -> Result<LessSafeKey, CryptoError> {
        UnboundKey::new(&AES_256_GCM, &*self.0)
            .map(LessSafeKey::new)
            .map_err(|_| CryptoError::MalformedKey("data key"))
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

/// Encrypts and authenticates `plaintext` under `key`, binding `aad`.
///
/// `aad` must identify where the value belongs (patient id, record id,
/// version), so a ciphertext copied elsewhere fails to [`open`].
pub fn seal(key: &DataKey, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let aead_key = key.aead_key()?;
    let nonce_bytes = random_array::<NONCE_LEN>()?;
    let mut out = Vec::with_capacity(plaintext.len() + SEAL_OVERHEAD);
    out.push(VERSION_1);
    out.extend_from_slice(&nonce_bytes);
    out.extend_from_slice(plaintext);
    let tag = aead_key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce_bytes),
            Aad::from(aad),
            &mut out[HEADER_LEN..],
        )
        .map_err(|_| CryptoError::Wrap)?;
    out.extend_from_slice(tag.as_ref());
    Ok(out)
}

/// Authenticates and decrypts a value made by [`seal`] with the same `aad`.
///
/// Every failure is the same [`CryptoError::Open`], whatever the cause.
pub fn open(key: &DataKey, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if sealed.len() < SEAL_OVERHEAD {
        return Err(CryptoError::Open);
    }
    let (header, body) = sealed.split_at(HEADER_LEN);
    let (version, nonce) = header.split_at(1);
    if version != [VERSION_1] {
        return Err(CryptoError::Open);
    }
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Open)?;
    let aead_key = key.aead_key().map_err(|_| CryptoError::Open)?;
    // Decrypt inside a zeroizing buffer so the plaintext never sits in an
    // ordinary allocation.
    let mut buf = Zeroizing::new(body.to_vec());
    let plaintext_len = aead_key
        .open_in_place(nonce, Aad::from(aad), &mut buf)
        .map_err(|_| CryptoError::Open)?
        .len();
    buf.truncate(plaintext_len);
    Ok(buf)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::test_support::assert_no_secret;
    use proptest::prelude::*;

    fn aad(patient: &str, record: &str, version: u32) -> Vec<u8> {
        format!("patient={patient};record={record};v={version}").into_bytes()
    }

    #[test]
    fn round_trip() {
        let key = DataKey::generate().unwrap();
        let a = aad("p1", "r1", 1);
        for pt in [&b""[..], b"x", b"Blood pressure 120/80, reviewed."] {
            let sealed = seal(&key, &a, pt).unwrap();
            assert_eq!(sealed.len(), pt.len() + SEAL_OVERHEAD);
            assert_eq!(sealed[0], 0x01);
            assert_eq!(&open(&key, &a, &sealed).unwrap()[..], pt);
        }
    }

    #[test]
    fn plaintext_does_not_appear_in_sealed_value() {
        let key = DataKey::generate().unwrap();
        let pt = b"NHS 943 476 5919 diabetic";
        let sealed = seal(&key, b"a", pt).unwrap();
        assert!(!sealed.windows(pt.len()).any(|w| w == pt));
    }

    #[test]
    fn any_flipped_byte_fails_to_open() {
        let key = DataKey::generate().unwrap();
        let a = aad("p1", "r1", 1);
        let sealed = seal(&key, &a, b"short note").unwrap();
        for i in 0..sealed.len() {
            for mask in [0x01u8, 0x80] {
                let mut bad = sealed.clone();
                bad[i] ^= mask;
                assert!(
                    matches!(open(&key, &a, &bad), Err(CryptoError::Open)),
                    "flip at byte {i} mask {mask:#x} still opened"
                );
            }
        }
    }

    #[test]
    fn different_aad_fails_to_open() {
        let key = DataKey::generate().unwrap();
        let sealed = seal(&key, &aad("p1", "r1", 1), b"note").unwrap();
        for other in [
            aad("p2", "r1", 1),
            aad("p1", "r2", 1),
            aad("p1", "r1", 2),
            Vec::new(),
        ] {
            assert!(matches!(
                open(&key, &other, &sealed),
                Err(CryptoError::Open)
            ));
        }
    }

    #[test]
    fn different_key_fails_to_open() {
        let a = aad("p1", "r1", 1);
        let sealed = seal(&DataKey::generate().unwrap(), &a, b"note").unwrap();
        let other = DataKey::generate().unwrap();
        assert!(matches!(open(&other, &a, &sealed), Err(CryptoError::Open)));
    }

    #[test]
    fn fresh_nonce_every_seal() {
        let key = DataKey::generate().unwrap();
        let s1 = seal(&key, b"a", b"same").unwrap();
        let s2 = seal(&key, b"a", b"same").unwrap();
        assert_ne!(s1[1..HEADER_LEN], s2[1..HEADER_LEN], "nonce reused");
        assert_ne!(s1, s2);
    }

    #[test]
    fn truncated_input_is_an_error() {
        let key = DataKey::generate().unwrap();
        let sealed = seal(&key, b"a", b"some text").unwrap();
        for len in 0..sealed.len() {
            assert!(matches!(
                open(&key, b"a", &sealed[..len]),
                Err(CryptoError::Open)
            ));
        }
    }

    #[test]
    fn unknown_version_is_refused() {
        let key = DataKey::generate().unwrap();
        let mut sealed = seal(&key, b"a", b"x").unwrap();
        sealed[0] = 0x02;
        assert!(matches!(open(&key, b"a", &sealed), Err(CryptoError::Open)));
    }

    #[test]
    fn from_bytes_checks_length_and_round_trips() {
        let key = DataKey::generate().unwrap();
        let copy = DataKey::from_bytes(key.expose_bytes()).unwrap();
        let sealed = seal(&key, b"a", b"x").unwrap();
        assert_eq!(&open(&copy, b"a", &sealed).unwrap()[..], b"x");
        for len in [0, 16, 31, 33, 64] {
            assert!(matches!(
                DataKey::from_bytes(&vec![7u8; len]),
                Err(CryptoError::MalformedKey(_))
            ));
        }
    }

    #[test]
    fn debug_is_redacted() {
        let key = DataKey::generate().unwrap();
        let debug = format!("{key:?} {:?} {key:#?}", Some(key.clone()));
        assert!(debug.contains("<redacted>"));
        assert_no_secret(&debug, key.expose_bytes());
    }

    proptest! {
        #[test]
        fn prop_round_trip(
            pt in proptest::collection::vec(any::<u8>(), 0..2048),
            aad in proptest::collection::vec(any::<u8>(), 0..128),
        ) {
            let key = DataKey::generate().unwrap();
            let sealed = seal(&key, &aad, &pt).unwrap();
            prop_assert_eq!(&open(&key, &aad, &sealed).unwrap()[..], &pt[..]);
        }

        #[test]
        fn prop_other_aad_fails(
            pt in proptest::collection::vec(any::<u8>(), 0..512),
            aad in proptest::collection::vec(any::<u8>(), 0..64),
            other in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            prop_assume!(aad != other);
            let key = DataKey::generate().unwrap();
            let sealed = seal(&key, &aad, &pt).unwrap();
            prop_assert!(matches!(open(&key, &other, &sealed), Err(CryptoError::Open)));
        }
    }
}
