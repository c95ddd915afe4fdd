//! Email addresses, parsed once at the edge.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A plausible email address, trimmed, at most 254 characters. The domain part
/// is lower-cased; [`Email::normalised`] lower-cases all of it for lookups.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("Enter your email address")]
    Empty,
    #[error("Enter an email address in the correct format, like name@example.com")]
    Format,
}

impl Email {
    pub fn parse(input: &str) -> Result<Self, EmailError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(EmailError::Empty);
        }
        if s.len() > 254 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(EmailError::Format);
        }
        let (local, domain) = s.rsplit_once('@').ok_or(EmailError::Format)?;
        let domain_ok = !domain.is_empty()
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && domain
                .chars()
                .all(|c| c.is_alphanumeric() || c == '-' || c == '.');
        if local.is_empty() || local.len() > 64 || local.contains('@') || !domain_ok {
            return Err(EmailError::Format);
        }
        Ok(Email(format!("{local}@{}", domain.to_lowercase())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form used for blind-index lookups, so `Ann@X.test` finds `ann@x.test`.
    pub fn normalised(&self) -> String {
        self.0.to_lowercase()
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Email(<redacted>)")
    }
}

impl Serialize for Email {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Email {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Email::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_normalises() {
        let e = Email::parse("  Ann.Smith+phr@Example.TEST ").unwrap();
        assert_eq!(e.as_str(), "Ann.Smith+phr@example.test");
        assert_eq!(e.normalised(), "ann.smith+phr@example.test");
    }

    #[test]
    fn refuses_malformed() {
        assert_eq!(Email::parse("   "), Err(EmailError::Empty));
        for bad in [
            "ann",
            "ann@",
            "@x.test",
            "ann@x",
            "ann@.x.test",
            "a b@x.test",
            "ann@x..test",
            "ann@x.test.",
        ] {
            assert_eq!(Email::parse(bad), Err(EmailError::Format), "{bad}");
        }
        assert_eq!(
            Email::parse(&format!("{}@x.test", "a".repeat(65))),
            Err(EmailError::Format)
        );
    }
}
