//! The NHS number: ten digits, the last a modulus 11 check digit.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A valid NHS number. The only way to make one is [`NhsNumber::parse`], so a
/// value of this type always has a correct check digit.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct NhsNumber([u8; 10]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NhsNumberError {
    #[error("Enter an NHS number with 10 digits")]
    Length,
    #[error("Enter an NHS number using digits only")]
    NotDigits,
    #[error("Enter a valid NHS number (the check digit does not match)")]
    CheckDigit,
}

impl NhsNumber {
    /// Accepts `9434765919`, `943 476 5919` or `943-476-5919`.
    pub fn parse(input: &str) -> Result<Self, NhsNumberError> {
        let mut digits = [0u8; 10];
        let mut n = 0;
        for c in input.trim().chars() {
            match c {
                ' ' | '-' => continue,
                '0'..='9' => {
                    if n == 10 {
                        return Err(NhsNumberError::Length);
                    }
                    digits[n] = c as u8 - b'0';
                    n += 1;
                }
                _ => return Err(NhsNumberError::NotDigits),
            }
        }
        if n != 10 {
            return Err(NhsNumberError::Length);
        }
        match check_digit(&digits[..9]) {
            Some(d) if d == digits[9] => Ok(NhsNumber(digits)),
            _ => Err(NhsNumberError::CheckDigit),
        }
    }

    /// Completes nine digits with their check digit; `None` when the nine digits
    /// have no valid check digit (the remainder gives 10).
    pub fn from_nine(nine: [u8; 9]) -> Option<Self> {
        if nine.iter().any(|d| *d > 9) {
            return None;
        }
        let check = check_digit(&nine)?;
        let mut digits = [0u8; 10];
        digits[..9].copy_from_slice(&nine);
        digits[9] = check;
        Some(NhsNumber(digits))
    }

    /// The ten digits with no separators, as used for indexing and exchange.
    pub fn digits(&self) -> String {
        self.0.iter().map(|d| char::from(b'0' + d)).collect()
    }
}

/// Modulus 11: weights 10 down to 2; 11 − (sum mod 11); 11 becomes 0; 10 is invalid.
fn check_digit(nine: &[u8]) -> Option<u8> {
    let sum: u32 = nine
        .iter()
        .zip((2..=10u32).rev())
        .map(|(d, w)| u32::from(*d) * w)
        .sum();
    match 11 - (sum % 11) {
        11 => Some(0),
        10 => None,
        d => u8::try_from(d).ok(),
    }
}

impl fmt::Display for NhsNumber {
    /// The 3-3-4 grouping people read: `943 476 5919`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.digits();
        write!(f, "{} {} {}", &d[..3], &d[3..6], &d[6..])
    }
}

impl fmt::Debug for NhsNumber {
    /// Never prints the number: Debug output ends up in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NhsNumber(<redacted>)")
    }
}

impl Serialize for NhsNumber {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.digits())
    }
}

impl<'de> Deserialize<'de> for NhsNumber {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        NhsNumber::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_known_valid_numbers_in_every_layout() {
        for s in ["9434765919", "943 476 5919", "943-476-5919", " 4010232137 "] {
            assert!(NhsNumber::parse(s).is_ok(), "{s}");
        }
        assert_eq!(
            NhsNumber::parse("9434765919").unwrap().to_string(),
            "943 476 5919"
        );
    }

    #[test]
    fn check_digit_zero_when_remainder_gives_eleven() {
        // 100 000 001: 10·1 + 2·1 = 12 → 11 − 1 = 10 (invalid); 100 000 010: 10 + 3 = 13
        // → 11 − 2 = 9. Find a prefix whose weighted sum is a multiple of 11.
        let nine = (0..100u8)
            .map(|i| [1, 0, 0, 0, 0, 0, 0, i / 10, i % 10])
            .find(|d| {
                let sum: u32 = d
                    .iter()
                    .zip((2..=10u32).rev())
                    .map(|(x, w)| u32::from(*x) * w)
                    .sum();
                sum.is_multiple_of(11)
            })
            .unwrap();
        let n = NhsNumber::from_nine(nine).unwrap();
        assert!(n.digits().ends_with('0'), "{}", n.digits());
        assert!(NhsNumber::parse(&n.digits()).is_ok());
        assert_eq!(
            NhsNumber::from_nine([4, 0, 1, 0, 2, 3, 2, 1, 3])
                .unwrap()
                .digits(),
            "4010232137"
        );
    }

    #[test]
    fn refuses_bad_numbers_with_a_reason() {
        assert_eq!(
            NhsNumber::parse("9434765918"),
            Err(NhsNumberError::CheckDigit)
        );
        assert_eq!(NhsNumber::parse("943476591"), Err(NhsNumberError::Length));
        assert_eq!(NhsNumber::parse("94347659190"), Err(NhsNumberError::Length));
        assert_eq!(
            NhsNumber::parse("94347659a9"),
            Err(NhsNumberError::NotDigits)
        );
        assert_eq!(NhsNumber::parse(""), Err(NhsNumberError::Length));
    }

    #[test]
    fn nine_digits_whose_check_would_be_ten_have_no_number() {
        // Search for a prefix with remainder 1 (check 10) and make sure it is refused.
        let nine = (0..1000u32)
            .map(|i| {
                let mut d = [1u8, 2, 3, 4, 5, 6, 0, 0, 0];
                d[6] = (i / 100) as u8;
                d[7] = ((i / 10) % 10) as u8;
                d[8] = (i % 10) as u8;
                d
            })
            .find(|d| check_digit(d).is_none())
            .unwrap();
        assert!(NhsNumber::from_nine(nine).is_none());
        for last in 0..=9u8 {
            let s: String = nine
                .iter()
                .chain([last].iter())
                .map(|d| char::from(b'0' + d))
                .collect();
            assert!(NhsNumber::parse(&s).is_err(), "{s} accepted");
        }
    }

    #[test]
    fn debug_does_not_leak_the_number() {
        let n = NhsNumber::parse("9434765919").unwrap();
        assert!(!format!("{n:?}").contains("9434765919"));
    }

    proptest! {
        #[test]
        fn exactly_one_last_digit_is_valid_or_none(nine in proptest::array::uniform9(0u8..10)) {
            let valid: Vec<u8> = (0..=9u8).filter(|last| {
                let s: String = nine.iter().chain([*last].iter()).map(|d| char::from(b'0' + d)).collect();
                NhsNumber::parse(&s).is_ok()
            }).collect();
            prop_assert!(valid.len() <= 1);
            prop_assert_eq!(valid.len() == 1, NhsNumber::from_nine(nine).is_some());
        }

        #[test]
        fn any_single_digit_change_is_caught(nine in proptest::array::uniform9(0u8..10), pos in 0usize..10, delta in 1u8..10) {
            if let Some(n) = NhsNumber::from_nine(nine) {
                let mut d: Vec<u8> = n.digits().bytes().map(|b| b - b'0').collect();
                d[pos] = (d[pos] + delta) % 10;
                let s: String = d.iter().map(|x| char::from(b'0' + x)).collect();
                prop_assert!(NhsNumber::parse(&s).is_err());
            }
        }

        #[test]
        fn parse_never_panics(s in ".{0,40}") {
            let _ = NhsNumber::parse(&s);
        }
    }
}
