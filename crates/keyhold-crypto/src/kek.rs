//! Master key-encryption keys (KEKs): age X25519 identities that wrap the
//! per-patient data keys.
//!
//! Several master keys may be loaded during a rotation; new wraps always use
//! the newest, unwrapping tries them all. Rotation therefore re-wraps data
//! keys without re-encrypting any record.

use std::io::Read;
use std::str::FromStr as _;

use age::secrecy::ExposeSecret as _;
use age::x25519::{Identity, Recipient};
use zeroize::Zeroizing;

use crate::{CryptoError, DataKey};

/// One master key: an age X25519 identity, with its public recipient cached.
#[derive(Clone)]
pub struct MasterKey {
    identity: Identity,
    recipient: Recipient,
}

impl MasterKey {
    /// A fresh random identity (age uses the OS RNG directly).
    pub fn generate() -> Self {
        Self::from_identity(Identity::generate())
    }

    /// Parses an `AGE-SECRET-KEY-1…` identity, as written by `age-keygen`:
    /// blank lines and `#` comments are skipped, and exactly one key must
    /// remain, so a file holding two keys is refused rather than half-used.
    pub fn parse(secret: &str) -> Result<Self, CryptoError> {
        let mut lines = secret
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'));
        let key = lines
            .next()
            .ok_or(CryptoError::MalformedKey("no age identity found"))?;
        if lines.next().is_some() {
            return Err(CryptoError::MalformedKey(
                "expected exactly one age identity",
            ));
        }
        let identity = Identity::from_str(key)
            .map_err(|_| CryptoError::MalformedKey("not an age X25519 secret key"))?;
        Ok(Self::from_identity(identity))
    }

    fn from_identity(identity: Identity) -> Self {
        let recipient = identity.to_public();
        Self {
            identity,
            recipient,
        }
    }

    /// The `AGE-SECRET-KEY-1…` text, for writing the key file.
    pub fn to_secret_string(&self) -> Zeroizing<String> {
        Zeroizing::new(self.identity.to_string().expose_secret().to_owned())
    }

    /// The public `age1…` recipient; safe to log and to share for backups.
    pub fn recipient(&self) -> String {
        self.recipient.to_string()
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey")
            .field("recipient", &self.recipient.to_string())
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// The loaded master keys, newest last. Never empty.
#[derive(Clone)]
pub struct MasterKeyring {
    // Split so `newest` needs no fallible lookup; `older` keeps load order.
    older: Vec<MasterKey>,
    newest: MasterKey,
}

impl MasterKeyring {
    /// Builds a keyring from keys ordered oldest to newest.
    pub fn new(mut keys: Vec<MasterKey>) -> Result<Self, CryptoError> {
        let newest = keys
            .pop()
            .ok_or(CryptoError::MalformedKey("no master key"))?;
        Ok(Self {
            older: keys,
            newest,
        })
    }

    /// The key that every new wrap uses.
    pub fn newest(&self) -> &MasterKey {
        &self.newest
    }

    /// How many master keys are loaded.
    /// A keyring of the newest key alone: what can open a data key once the
    /// older master keys are deleted.
    pub fn newest_only(&self) -> MasterKeyring {
        MasterKeyring {
            newest: self.newest.clone(),
            older: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.older.len() + 1
    }

    /// Always `false`: an empty keyring cannot be built. Present for API symmetry.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Wraps a data key to the newest master key (binary age format).
    pub fn wrap(&self, dek: &DataKey) -> Result<Vec<u8>, CryptoError> {
        age::encrypt(&self.newest.recipient, dek.expose_bytes()).map_err(|_| CryptoError::Wrap)
    }

    /// Unwraps a data key with whichever loaded master key can open it.
    ///
    /// Malformed input and "no key matches" both give [`CryptoError::Unwrap`];
    /// a well-formed age file holding something other than 32 bytes gives
    /// [`CryptoError::MalformedKey`].
    pub fn unwrap(&self, wrapped: &[u8]) -> Result<DataKey, CryptoError> {
        let identities = std::iter::once(&self.newest)
            .chain(self.older.iter().rev())
            .map(|k| &k.identity as &dyn age::Identity);
        let decryptor = age::Decryptor::new_buffered(wrapped).map_err(|_| CryptoError::Unwrap)?;
        let reader = decryptor
            .decrypt(identities)
            .map_err(|_| CryptoError::Unwrap)?;
        // Read one byte more than a key so an over-long payload is detected.
        let bytes = read_to_end_zeroizing(reader.take(33)).map_err(|_| CryptoError::Unwrap)?;
        DataKey::from_bytes(&bytes)
            .map_err(|_| CryptoError::MalformedKey("wrapped data key is not 32 bytes"))
    }
}

impl std::fmt::Debug for MasterKeyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut list = f.debug_list();
        list.entries(self.older.iter());
        list.entry(&self.newest);
        list.finish()
    }
}

/// Encrypts to an `age1…` recipient (binary age format), e.g. for backups
/// readable only by an offline key.
pub fn encrypt_to_recipient(recipient: &str, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let recipient = Recipient::from_str(recipient.trim())
        .map_err(|_| CryptoError::MalformedKey("not an age X25519 recipient"))?;
    age::encrypt(&recipient, plaintext).map_err(|_| CryptoError::Wrap)
}

/// Streams an age file encrypted to an `age1…` recipient into `out` (for
/// backups, which may be far larger than memory). Call
/// [`age::stream::StreamWriter::finish`] at the end: without it the file is
/// truncated and will not decrypt.
pub fn encrypt_stream_to_recipient<W: std::io::Write>(
    recipient: &str,
    out: W,
) -> Result<age::stream::StreamWriter<W>, CryptoError> {
    let recipient = Recipient::from_str(recipient.trim())
        .map_err(|_| CryptoError::MalformedKey("not an age X25519 recipient"))?;
    let encryptor = age::Encryptor::with_recipients(std::iter::once(&recipient as _))
        .map_err(|_| CryptoError::Wrap)?;
    encryptor.wrap_output(out).map_err(|_| CryptoError::Wrap)
}

/// Reads an age file streamed by [`encrypt_stream_to_recipient`]. A wrong key
/// fails here; tampering or truncation fails as an I/O error while reading.
pub fn decrypt_stream<R: Read>(
    identity: &MasterKey,
    input: R,
) -> Result<age::stream::StreamReader<R>, CryptoError> {
    let decryptor = age::Decryptor::new(input).map_err(|_| CryptoError::Open)?;
    decryptor
        .decrypt(std::iter::once(&identity.identity as &dyn age::Identity))
        .map_err(|_| CryptoError::Open)
}

/// Decrypts an age file with one master key. Any failure (wrong key,
/// malformed or tampered file) is [`CryptoError::Open`].
pub fn decrypt_with_identity(
    identity: &MasterKey,
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let decryptor = age::Decryptor::new_buffered(ciphertext).map_err(|_| CryptoError::Open)?;
    let reader = decryptor
        .decrypt(std::iter::once(&identity.identity as &dyn age::Identity))
        .map_err(|_| CryptoError::Open)?;
    read_to_end_zeroizing(reader).map_err(|_| CryptoError::Open)
}

/// Like `Read::read_to_end`, but every buffer that ever held plaintext is
/// zeroized: a plain `Vec` would leave copies behind each time it grows.
fn read_to_end_zeroizing(mut reader: impl Read) -> std::io::Result<Zeroizing<Vec<u8>>> {
    let mut out = Zeroizing::new(Vec::with_capacity(64));
    let mut chunk = Zeroizing::new([0u8; 16 * 1024]);
    loop {
        let n = match reader.read(&mut chunk[..]) {
            Ok(0) => return Ok(out),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if out.capacity() - out.len() < n {
            let mut bigger =
                Zeroizing::new(Vec::with_capacity((out.len() + n).max(out.capacity() * 2)));
            bigger.extend_from_slice(&out);
            out = bigger; // the old buffer is zeroized as it drops
        }
        out.extend_from_slice(&chunk[..n]);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::test_support::assert_no_secret;

    fn ring(keys: &[&MasterKey]) -> MasterKeyring {
        MasterKeyring::new(keys.iter().map(|k| (*k).clone()).collect()).unwrap()
    }

    #[test]
    fn wrap_unwrap_round_trip() {
        let kr = ring(&[&MasterKey::generate()]);
        let dek = DataKey::generate().unwrap();
        let wrapped = kr.wrap(&dek).unwrap();
        assert!(!wrapped.windows(32).any(|w| w == dek.expose_bytes()));
        let back = kr.unwrap(&wrapped).unwrap();
        assert_eq!(back.expose_bytes(), dek.expose_bytes());
    }

    #[test]
    fn keyring_without_the_wrapping_key_cannot_unwrap() {
        let wrapped = ring(&[&MasterKey::generate()])
            .wrap(&DataKey::generate().unwrap())
            .unwrap();
        let other = ring(&[&MasterKey::generate(), &MasterKey::generate()]);
        assert!(matches!(other.unwrap(&wrapped), Err(CryptoError::Unwrap)));
    }

    #[test]
    fn garbage_or_tampered_wrap_is_unwrap_error() {
        let kr = ring(&[&MasterKey::generate()]);
        assert!(matches!(kr.unwrap(b""), Err(CryptoError::Unwrap)));
        assert!(matches!(kr.unwrap(b"not age"), Err(CryptoError::Unwrap)));
        let mut wrapped = kr.wrap(&DataKey::generate().unwrap()).unwrap();
        let last = wrapped.len() - 1;
        wrapped[last] ^= 1;
        assert!(kr.unwrap(&wrapped).is_err());
    }

    #[test]
    fn rotation_wraps_with_newest_and_unwraps_old() {
        let old = MasterKey::generate();
        let new = MasterKey::generate();
        let dek = DataKey::generate().unwrap();
        let wrapped_by_old = ring(&[&old]).wrap(&dek).unwrap();

        let rotating = ring(&[&old, &new]);
        assert_eq!(rotating.len(), 2);
        assert!(!rotating.is_empty());
        assert_eq!(rotating.newest().recipient(), new.recipient());

        // Old wraps still open during rotation...
        let dek_back = rotating.unwrap(&wrapped_by_old).unwrap();
        assert_eq!(dek_back.expose_bytes(), dek.expose_bytes());
        // ...and re-wrapping uses the new key only.
        let rewrapped = rotating.wrap(&dek_back).unwrap();
        let only_new = ring(&[&new]).unwrap(&rewrapped).unwrap();
        assert_eq!(only_new.expose_bytes(), dek.expose_bytes());
        assert!(matches!(
            ring(&[&old]).unwrap(&rewrapped),
            Err(CryptoError::Unwrap)
        ));
    }

    #[test]
    fn empty_keyring_refused() {
        assert!(matches!(
            MasterKeyring::new(Vec::new()),
            Err(CryptoError::MalformedKey("no master key"))
        ));
    }

    #[test]
    fn unwrap_refuses_payload_of_wrong_length() {
        let key = MasterKey::generate();
        let kr = ring(&[&key]);
        for len in [0usize, 31, 33, 100] {
            let wrapped = encrypt_to_recipient(&key.recipient(), &vec![1u8; len]).unwrap();
            assert!(matches!(
                kr.unwrap(&wrapped),
                Err(CryptoError::MalformedKey(_))
            ));
        }
    }

    #[test]
    fn parse_round_trip_with_keygen_comments() {
        let key = MasterKey::generate();
        let secret = key.to_secret_string();
        assert!(secret.starts_with("AGE-SECRET-KEY-1"));
        assert!(key.recipient().starts_with("age1"));
        let file = format!(
            "# created: 2024-01-01T00:00:00Z\n# public key: {}\n\n  {}  \n",
            key.recipient(),
            &*secret
        );
        let parsed = MasterKey::parse(&file).unwrap();
        assert_eq!(parsed.recipient(), key.recipient());
        assert_eq!(&*parsed.to_secret_string(), &*secret);
        // Parsed key really decrypts what the original could.
        let ct = encrypt_to_recipient(&key.recipient(), b"backup").unwrap();
        assert_eq!(&decrypt_with_identity(&parsed, &ct).unwrap()[..], b"backup");
    }

    #[test]
    fn parse_refuses_garbage() {
        let a = MasterKey::generate();
        let b = MasterKey::generate();
        let two = format!("{}\n{}\n", &*a.to_secret_string(), &*b.to_secret_string());
        for bad in [
            "",
            "# only a comment\n",
            "garbage",
            "AGE-SECRET-KEY-1QQQQ",
            a.recipient().as_str(),
            two.as_str(),
        ] {
            assert!(
                matches!(MasterKey::parse(bad), Err(CryptoError::MalformedKey(_))),
                "accepted {bad:?}"
            );
        }
    }

    #[test]
    fn encrypt_decrypt_to_recipient() {
        let key = MasterKey::generate();
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let ct = encrypt_to_recipient(&format!(" {}\n", key.recipient()), &big).unwrap();
        assert_eq!(&decrypt_with_identity(&key, &ct).unwrap()[..], &big[..]);
        let other = MasterKey::generate();
        assert!(matches!(
            decrypt_with_identity(&other, &ct),
            Err(CryptoError::Open)
        ));
        assert!(matches!(
            decrypt_with_identity(&key, b"garbage"),
            Err(CryptoError::Open)
        ));
        assert!(matches!(
            encrypt_to_recipient("age1nope", b"x"),
            Err(CryptoError::MalformedKey(_))
        ));
    }

    #[test]
    fn debug_is_redacted() {
        let key = MasterKey::generate();
        let kr = ring(&[&MasterKey::generate(), &key]);
        let debug = format!("{key:?} {kr:?} {kr:#?}");
        assert!(debug.contains(&key.recipient()));
        let secret = key.to_secret_string();
        assert!(!debug.contains(secret.as_str()));
        assert!(!debug.to_uppercase().contains(secret.as_str()));
        // The bech32 data part alone (after the "AGE-SECRET-KEY-1" prefix).
        let data = &secret["AGE-SECRET-KEY-1".len()..];
        assert!(!debug.to_uppercase().contains(&data[..16]));
        // And the raw scalar in any common encoding.
        let raw = age_secret_bytes(&secret);
        assert_no_secret(&debug, &raw);
    }

    /// Decodes the bech32 payload of an age secret key into its 32 raw bytes.
    fn age_secret_bytes(secret: &str) -> Vec<u8> {
        const CHARSET: &str = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";
        let lower = secret.to_lowercase();
        let data = &lower["age-secret-key-1".len()..lower.len() - 6];
        let mut acc = 0u32;
        let mut bits = 0;
        let mut out = Vec::new();
        for c in data.chars() {
            acc = (acc << 5) | CHARSET.find(c).unwrap() as u32;
            bits += 5;
            if bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
                acc &= (1 << bits) - 1;
            }
        }
        assert_eq!(out.len(), 32);
        out
    }

    #[test]
    fn streams_round_trip_only_for_the_right_identity() {
        use std::io::{Read as _, Write as _};
        let key = MasterKey::generate();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut w = encrypt_stream_to_recipient(&key.recipient(), Vec::new()).unwrap();
        w.write_all(&data).unwrap();
        let file = w.finish().unwrap();
        let mut back = Vec::new();
        decrypt_stream(&key, &file[..])
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        assert!(decrypt_stream(&MasterKey::generate(), &file[..]).is_err());
        // A cut-off file fails to read to the end.
        let cut = &file[..file.len() - 100];
        let mut partial = Vec::new();
        assert!(decrypt_stream(&key, cut)
            .unwrap()
            .read_to_end(&mut partial)
            .is_err());
    }
}
