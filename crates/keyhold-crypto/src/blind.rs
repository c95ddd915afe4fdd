//! Blind indexes: keyed hashes that let the store look up secret values
//! (NHS number, email) without ever holding them.
//!
//! The index key is separate from every data key and master key, so a leaked
//! index key reveals nothing about record contents, and vice versa.

use ring::hmac;
use zeroize::Zeroizing;

use crate::random::random_array;
use crate::CryptoError;

/// HKDF salt for [`IndexKey::derive`]: fixed and application-specific, so
/// subkeys derived here never collide with another protocol's use of the key.
const DERIVE_SALT: &[u8] = b"keyhold-crypto/index-key/derive/v1";

/// The 256-bit key behind blind indexes and the MAC subkeys derived from it.
#[derive(Clone)]
pub struct IndexKey(Zeroizing<[u8; 32]>);

impl IndexKey {
    /// A fresh random key, made once per deployment.
    pub fn generate() -> Result<Self, CryptoError> {
        Ok(Self(Zeroizing::new(random_array::<32>()?)))
    }

    /// Rebuilds a key from its 32 raw bytes.
    pub fn from_bytes(b: &[u8]) -> Result<Self, CryptoError> {
        let mut key = Zeroizing::new([0u8; 32]);
        if b.len() != key.len() {
            return Err(CryptoError::MalformedKey("index key must be 32 bytes"));
        }
        key.copy_from_slice(b);
        Ok(Self(key))
    }

    /// Lower-case hex, for the key file. Built in a buffer sized up front so
    /// no reallocation leaves a stray copy behind.
    pub fn to_hex(&self) -> Zeroizing<String> {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut s = Zeroizing::new(String::with_capacity(64));
        for b in self.0.iter() {
            s.push(char::from(DIGITS[usize::from(b >> 4)]));
            s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
        }
        s
    }

    /// Parses 64 hex digits, ignoring surrounding whitespace (a trailing newline
    /// in a key file is normal).
    pub fn from_hex(s: &str) -> Result<Self, CryptoError> {
        let mut key = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(s.trim(), &mut key[..])
            .map_err(|_| CryptoError::MalformedKey("index key must be 64 hex digits"))?;
        Ok(Self(key))
    }

    /// The blind index of `value` in `domain`: HMAC-SHA256(key, domain || 0x00 || value).
    ///
    /// The domain (`"nhs-number"`, `"email"`, …) keeps equal values of
    /// different kinds from matching. Domains are fixed labels and must not
    /// contain a NUL byte, which is what separates them from the value.
    pub fn blind(&self, domain: &str, value: &[u8]) -> [u8; 32] {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &*self.0);
        let mut ctx = hmac::Context::with_key(&key);
        ctx.update(domain.as_bytes());
        ctx.update(&[0x00]);
        ctx.update(value);
        tag_to_array(&ctx.sign())
    }

    /// An independent MAC subkey for `label` (e.g. `"csrf"`), via HKDF-SHA256
    /// with `info = label`, so one stored secret serves several purposes
    /// without any two of them sharing a key.
    pub fn derive(&self, label: &str) -> MacKey {
        let okm = hkdf_sha256_32(DERIVE_SALT, &*self.0, label.as_bytes());
        MacKey(hmac::Key::new(hmac::HMAC_SHA256, &*okm))
    }
}

impl std::fmt::Debug for IndexKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IndexKey(<redacted>)")
    }
}

/// HKDF-SHA256 (RFC 5869) for exactly one 32-byte output block.
///
/// Written over `ring::hmac` because `ring::hkdf`'s expand is fallible (for
/// lengths we never ask for); tests check it against `ring::hkdf` and the RFC.
fn hkdf_sha256_32(salt: &[u8], ikm: &[u8], info: &[u8]) -> Zeroizing<[u8; 32]> {
    // Extract: PRK = HMAC(salt, IKM).
    let prk = Zeroizing::new(tag_to_array(&hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, salt),
        ikm,
    )));
    // Expand, first block: T(1) = HMAC(PRK, info || 0x01).
    let mut ctx = hmac::Context::with_key(&hmac::Key::new(hmac::HMAC_SHA256, &*prk));
    ctx.update(info);
    ctx.update(&[0x01]);
    Zeroizing::new(tag_to_array(&ctx.sign()))
}

fn tag_to_array(tag: &hmac::Tag) -> [u8; 32] {
    let mut out = [0u8; 32];
    // HMAC-SHA256 tags are always 32 bytes; zip keeps this panic-free.
    for (o, t) in out.iter_mut().zip(tag.as_ref()) {
        *o = *t;
    }
    out
}

/// A purpose-bound HMAC-SHA256 key derived by [`IndexKey::derive`].
pub struct MacKey(hmac::Key);

impl MacKey {
    /// The 32-byte tag of `data`.
    pub fn mac(&self, data: &[u8]) -> [u8; 32] {
        tag_to_array(&hmac::sign(&self.0, data))
    }

    /// Checks `tag` in constant time; any length other than 32 is `false`.
    pub fn verify(&self, data: &[u8], tag: &[u8]) -> bool {
        hmac::verify(&self.0, data, tag).is_ok()
    }
}

impl std::fmt::Debug for MacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MacKey(<redacted>)")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::test_support::assert_no_secret;

    fn key(byte: u8) -> IndexKey {
        IndexKey::from_bytes(&[byte; 32]).unwrap()
    }

    #[test]
    fn blind_is_deterministic() {
        let k = IndexKey::generate().unwrap();
        let copy = IndexKey::from_hex(&k.to_hex()).unwrap();
        assert_eq!(
            k.blind("email", b"a@example.org"),
            copy.blind("email", b"a@example.org")
        );
    }

    #[test]
    fn blind_pins_the_documented_construction() {
        // Stored indexes depend on this exact input layout.
        let k = key(7);
        let expected = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, &[7u8; 32]),
            b"nhs-number\x009434765919",
        );
        assert_eq!(&k.blind("nhs-number", b"9434765919")[..], expected.as_ref());
    }

    #[test]
    fn blind_is_domain_separated() {
        let k = key(1);
        assert_ne!(k.blind("email", b"x"), k.blind("nhs-number", b"x"));
        // The NUL separator stops the domain/value boundary from shifting.
        assert_ne!(k.blind("ab", b"c"), k.blind("a", b"bc"));
        assert_ne!(k.blind("email", b""), k.blind("email", b"\0"));
    }

    #[test]
    fn blind_is_key_dependent_and_not_the_value() {
        let v = b"9434765919";
        let out = key(1).blind("nhs-number", v);
        assert_ne!(out, key(2).blind("nhs-number", v));
        assert_ne!(out, crate::sha256(v));
        assert_ne!(key(1).blind("nhs-number", b"9434765918"), out);
    }

    #[test]
    fn hex_round_trip_and_refusals() {
        let k = IndexKey::generate().unwrap();
        let hex_str = k.to_hex();
        assert_eq!(hex_str.len(), 64);
        assert_eq!(&*hex_str, &hex::encode(*k.0));
        let back = IndexKey::from_hex(&format!("  {}\n", &*hex_str)).unwrap();
        assert_eq!(*back.0, *k.0);
        for bad in ["", "abcd", &"zz".repeat(32), &"00".repeat(33)] {
            assert!(matches!(
                IndexKey::from_hex(bad),
                Err(CryptoError::MalformedKey(_))
            ));
        }
        assert!(IndexKey::from_bytes(&[0u8; 31]).is_err());
        assert!(IndexKey::from_bytes(&[0u8; 33]).is_err());
    }

    #[test]
    fn derived_keys_are_independent() {
        let k = key(3);
        let data = b"session-id";
        let csrf = k.derive("csrf").mac(data);
        assert_eq!(csrf, k.derive("csrf").mac(data), "derive is deterministic");
        assert_ne!(csrf, k.derive("download").mac(data));
        assert_ne!(csrf, key(4).derive("csrf").mac(data));
        // Not the index key itself, nor a blind index.
        assert_ne!(
            csrf,
            tag_to_array(&hmac::sign(
                &hmac::Key::new(hmac::HMAC_SHA256, &[3u8; 32]),
                data
            ))
        );
        assert_ne!(csrf, k.blind("csrf", data));
    }

    #[test]
    fn mac_verify() {
        let m = key(5).derive("csrf");
        let tag = m.mac(b"data");
        assert!(m.verify(b"data", &tag));
        assert!(!m.verify(b"datA", &tag));
        let mut bad = tag;
        bad[31] ^= 1;
        assert!(!m.verify(b"data", &bad));
        assert!(!m.verify(b"data", &tag[..31]));
        assert!(!m.verify(b"data", b""));
        assert!(!key(5).derive("other").verify(b"data", &tag));
    }

    #[test]
    fn hkdf_matches_rfc5869_case_1() {
        let ikm = [0x0bu8; 22];
        let salt: Vec<u8> = (0x00..=0x0c).collect();
        let info: Vec<u8> = (0xf0..=0xf9).collect();
        assert_eq!(
            hex::encode(*hkdf_sha256_32(&salt, &ikm, &info)),
            // First 32 bytes of the RFC's 42-byte OKM.
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
        );
    }

    struct Len32;
    impl ring::hkdf::KeyType for Len32 {
        fn len(&self) -> usize {
            32
        }
    }

    fn ring_hkdf(ikm: &[u8], label: &str) -> [u8; 32] {
        let prk = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, DERIVE_SALT).extract(ikm);
        let info = [label.as_bytes()];
        let okm = prk.expand(&info, Len32).unwrap();
        let mut out = [0u8; 32];
        okm.fill(&mut out).unwrap();
        out
    }

    #[test]
    fn derive_agrees_with_ring_hkdf() {
        let k = key(9);
        let expected = ring_hkdf(&[9u8; 32], "csrf");
        assert_eq!(*hkdf_sha256_32(DERIVE_SALT, &[9u8; 32], b"csrf"), expected);
        let via_ring = hmac::Key::new(hmac::HMAC_SHA256, &expected);
        assert_eq!(
            &k.derive("csrf").mac(b"m")[..],
            hmac::sign(&via_ring, b"m").as_ref()
        );
    }

    #[test]
    fn debug_is_redacted() {
        let k = IndexKey::generate().unwrap();
        let m = k.derive("csrf");
        let debug = format!("{k:?} {m:?} {k:#?} {:?}", Some(&m));
        assert!(debug.contains("<redacted>"));
        assert_no_secret(&debug, &*k.0);
        assert_no_secret(&debug, &ring_hkdf(&*k.0, "csrf"));
    }
}
