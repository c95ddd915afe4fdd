//! Request references: `KH-7Q2M-X9RD-K`. Eight random characters from
//! Crockford's base 32 (less `Z`: 31 symbols, about 40 bits), so a reference
//! says nothing about its neighbours and cannot be guessed from them, then a
//! check character: the weighted sum of the characters' values modulo 31,
//! a prime. Every weight differs and every difference of two values is below
//! 31, so any one mistyped character and any swap of two neighbours changes
//! the sum: both are caught when someone reads a reference over the phone.
//! (Luhn mod 32, tried first, misses a swap of `0` and `Z`; the test found it.)

use std::fmt;

use serde::{Deserialize, Serialize};

/// Crockford's base 32: no I, L, O or U, so nothing reads as another. A
/// value is a position here; only the first 31 (not `Z`) are used.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const MODULUS: u32 = 31;
const BODY: usize = 8;

fn value_of(c: u8) -> Option<u32> {
    let c = match c.to_ascii_uppercase() {
        b'O' => b'0',
        b'I' | b'L' => b'1',
        other => other,
    };
    ALPHABET
        .iter()
        .position(|&a| a == c)
        .map(|p| p as u32)
        .filter(|v| *v < MODULUS)
}

/// The check value: the one that makes `Σ (i + 2)·vᵢ + check` a multiple of 31.
fn check_value(body: &[u8]) -> Option<u32> {
    let mut sum = 0u32;
    for (i, &c) in body.iter().enumerate() {
        sum += (i as u32 + 2) * value_of(c)?;
    }
    Some((MODULUS - sum % MODULUS) % MODULUS)
}

/// A well-formed reference: eight characters and the right check character.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Reference(String);

impl Reference {
    /// A fresh random reference (uniqueness is the store's to enforce).
    pub fn random() -> Result<Self, crate::DomainError> {
        // Bytes below 248 (8 × 31) are uniform modulo 31; the rest are dropped.
        let mut body = Vec::with_capacity(BODY);
        while body.len() < BODY {
            for b in keyhold_crypto::random_array::<32>()? {
                if b < 248 && body.len() < BODY {
                    body.push(ALPHABET[usize::from(b) % MODULUS as usize]);
                }
            }
        }
        let check = check_value(&body)
            .ok_or_else(|| crate::DomainError::Internal("reference alphabet".into()))?;
        let mut s = String::from_utf8_lossy(&body).into_owned();
        s.push(ALPHABET[check as usize] as char);
        Ok(Reference(s))
    }

    /// Reads what a person typed: any case, with or without `KH-`, spaces
    /// or hyphens; O, I and L read as 0, 1 and 1.
    pub fn parse(input: &str) -> Option<Self> {
        let mut raw: String = input
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .collect::<String>()
            .to_ascii_uppercase();
        if raw.len() == BODY + 3 && raw.starts_with("KH") {
            raw.drain(..2);
        }
        if raw.len() != BODY + 1 || !raw.is_ascii() {
            return None;
        }
        let canon: Vec<u8> = raw
            .bytes()
            .map(|c| value_of(c).map(|v| ALPHABET[v as usize]))
            .collect::<Option<_>>()?;
        let (body, check) = canon.split_at(BODY);
        (check_value(body)? == value_of(check[0])?)
            .then(|| Reference(String::from_utf8_lossy(&canon).into_owned()))
    }

    /// The store's key: the nine characters.
    pub fn key(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.0;
        write!(f, "KH-{}-{}-{}", &s[..4], &s[4..8], &s[8..])
    }
}

impl TryFrom<String> for Reference {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Reference::parse(&s).ok_or_else(|| "not a request reference".to_string())
    }
}

impl From<Reference> for String {
    fn from(r: Reference) -> String {
        r.0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_reference_reads_back_in_any_form_people_type_it() {
        for _ in 0..200 {
            let r = Reference::random().unwrap();
            let shown = r.to_string();
            assert!(shown.starts_with("KH-") && shown.len() == 14, "{shown}");
            assert_eq!(Reference::parse(&shown), Some(r.clone()));
            assert_eq!(Reference::parse(&shown.to_lowercase()), Some(r.clone()));
            assert_eq!(Reference::parse(&shown.replace('-', " ")), Some(r.clone()));
            assert_eq!(Reference::parse(&r.0), Some(r.clone()));
        }
    }

    #[test]
    fn every_single_mistyped_character_and_every_neighbour_swap_is_caught() {
        for _ in 0..50 {
            let r = Reference::random().unwrap();
            let chars: Vec<u8> = r.0.bytes().collect();
            for i in 0..chars.len() {
                for &c in ALPHABET {
                    if c == chars[i] {
                        continue;
                    }
                    let mut typo = chars.clone();
                    typo[i] = c;
                    let typo = String::from_utf8(typo).unwrap();
                    assert_eq!(Reference::parse(&typo), None, "{} → {typo}", r.0);
                }
                if i + 1 < chars.len() && chars[i] != chars[i + 1] {
                    let mut swapped = chars.clone();
                    swapped.swap(i, i + 1);
                    let swapped = String::from_utf8(swapped).unwrap();
                    assert_eq!(Reference::parse(&swapped), None, "{} → {swapped}", r.0);
                }
            }
        }
    }

    #[test]
    fn references_are_not_sequential() {
        let a = Reference::random().unwrap();
        let b = Reference::random().unwrap();
        assert_ne!(a, b);
        // Neighbours differ in more than their last characters.
        assert_ne!(a.0[..6], b.0[..6]);
    }

    #[test]
    fn junk_is_refused() {
        for bad in [
            "",
            "KH-",
            "KH-0000-0000",
            "KH-0000-0000-00",
            "ÄÄÄÄÄÄÄÄÄ",
            "KH-UUUU-UUUU-U",
        ] {
            assert_eq!(Reference::parse(bad), None, "{bad}");
        }
    }
}
