//! Files a person encrypts with a passphrase of their own (the record
//! export): the age format with its scrypt recipient, so any age tool
//! (`age -d`, rage) opens them without Keyhold.

use std::io::Write;

use age::secrecy::SecretString;

pub use age::stream::StreamWriter;

/// Wraps `out` so that everything written is encrypted under `passphrase`.
/// Call [`StreamWriter::finish`] at the end, or the file is truncated.
pub fn passphrase_writer<W: Write>(passphrase: &str, out: W) -> std::io::Result<StreamWriter<W>> {
    age::Encryptor::with_user_passphrase(SecretString::from(passphrase.to_owned())).wrap_output(out)
}

/// Opens a file made by [`passphrase_writer`] (tests, and anyone checking an export).
pub fn decrypt_with_passphrase(passphrase: &str, file: &[u8]) -> Option<Vec<u8>> {
    use std::io::Read;
    let identity = age::scrypt::Identity::new(SecretString::from(passphrase.to_owned()));
    let d = age::Decryptor::new_buffered(file).ok()?;
    let mut r = d
        .decrypt(std::iter::once(&identity as &dyn age::Identity))
        .ok()?;
    let mut out = Vec::new();
    r.read_to_end(&mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_the_passphrase_opens_it() {
        let mut w = passphrase_writer("correct horse battery", Vec::new()).unwrap();
        w.write_all(b"synthetic record").unwrap();
        let file = w.finish().unwrap();
        assert!(!file.windows(9).any(|x| x == b"synthetic"));
        assert_eq!(
            decrypt_with_passphrase("correct horse battery", &file).unwrap(),
            b"synthetic record"
        );
        assert!(decrypt_with_passphrase("wrong horse battery", &file).is_none());
    }
}
