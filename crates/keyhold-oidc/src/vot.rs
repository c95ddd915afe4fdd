//! Vectors of trust (RFC 8485) as NHS login uses them: `P9.Cp.Cd` is identity
//! proofing level P9 with a password and a second factor. The relying party
//! asks for a list (`vtr`) and the provider answers with the one it met
//! (`vot`); an answer not on the list is refused.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How well the provider checked that the person is who they say.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ProofingLevel {
    /// No identity check: an email address and a phone number.
    P0,
    /// Basic check: demographics matched, no photo ID.
    P5,
    /// High check: photo ID and a face scan, or a GP-issued passphrase.
    P9,
}

impl ProofingLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            ProofingLevel::P0 => "P0",
            ProofingLevel::P5 => "P5",
            ProofingLevel::P9 => "P9",
        }
    }
}

impl fmt::Display for ProofingLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProofingLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "P0" => Ok(ProofingLevel::P0),
            "P5" => Ok(ProofingLevel::P5),
            "P9" => Ok(ProofingLevel::P9),
            other => Err(format!(
                "{other:?} is not an identity proofing level (P0, P5 or P9)"
            )),
        }
    }
}

/// One vector, e.g. `P9.Cp.Cd`: a proofing level and one or more credential
/// components (`Cp` password, `Cd` device, `Ck` key, `Cm` mobile app).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Vector {
    pub level: ProofingLevel,
    text: String,
}

impl Vector {
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Vector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for Vector {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = s.split('.');
        let level = parts.next().unwrap_or_default().parse::<ProofingLevel>()?;
        let mut credentials = 0;
        for p in parts {
            let ok = p.len() == 2
                && p.starts_with('C')
                && p.as_bytes().get(1).is_some_and(|b| b.is_ascii_lowercase());
            if !ok {
                return Err(format!(
                    "{s:?} is not a vector of trust: {p:?} is not a credential component like Cp"
                ));
            }
            credentials += 1;
        }
        if credentials == 0 {
            return Err(format!(
                "{s:?} is not a vector of trust: it names no credential (for example P9.Cp.Cd)"
            ));
        }
        Ok(Vector {
            level,
            text: s.to_string(),
        })
    }
}

/// The `vtr` request: the vectors this service accepts, best first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vtr(Vec<Vector>);

impl Vtr {
    /// NHS login's P9 vectors: what a service reading clinical records asks for.
    pub fn nhs_default() -> Self {
        Vtr(["P9.Cp.Cd", "P9.Cp.Ck", "P9.Cm"]
            .iter()
            .filter_map(|v| v.parse().ok())
            .collect())
    }

    /// Parses the JSON array form used in configuration and on the wire.
    pub fn parse_json(s: &str) -> Result<Self, String> {
        let list: Vec<String> = serde_json::from_str(s).map_err(|e| {
            format!("vtr must be a JSON array of strings, like [\"P9.Cp.Cd\"]: {e}")
        })?;
        if list.is_empty() {
            return Err("vtr must name at least one vector of trust".into());
        }
        list.iter()
            .map(|v| v.parse())
            .collect::<Result<Vec<_>, _>>()
            .map(Vtr)
    }

    /// The value of the `vtr` request parameter.
    pub fn to_json(&self) -> String {
        let list: Vec<&str> = self.0.iter().map(|v| v.as_str()).collect();
        serde_json::to_string(&list).unwrap_or_else(|_| "[]".into())
    }

    /// The lowest proofing level among the requested vectors.
    pub fn lowest_level(&self) -> ProofingLevel {
        self.0
            .iter()
            .map(|v| v.level)
            .min()
            .unwrap_or(ProofingLevel::P9)
    }

    /// Whether the provider's answer is one we asked for.
    pub fn accepts(&self, vot: &Vector) -> bool {
        self.0.contains(vot)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_nhs_vectors() {
        let v: Vector = "P9.Cp.Cd".parse().unwrap();
        assert_eq!(v.level, ProofingLevel::P9);
        assert!("P5.Cm".parse::<Vector>().is_ok());
        for bad in [
            "P9", "P7.Cp", "P9.Xp", "P9.C", "p9.Cp.Cd", "", "P9.Cp.", "P9.CP",
        ] {
            assert!(bad.parse::<Vector>().is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn default_vtr_is_p9_only_and_round_trips() {
        let d = Vtr::nhs_default();
        assert_eq!(d.to_json(), r#"["P9.Cp.Cd","P9.Cp.Ck","P9.Cm"]"#);
        assert_eq!(Vtr::parse_json(&d.to_json()).unwrap(), d);
        assert_eq!(d.lowest_level(), ProofingLevel::P9);
        assert!(Vtr::parse_json("[]").is_err());
        assert!(Vtr::parse_json("P9.Cp.Cd").is_err());
    }

    #[test]
    fn only_a_requested_vector_is_accepted() {
        let d = Vtr::nhs_default();
        assert!(d.accepts(&"P9.Cp.Cd".parse().unwrap()));
        assert!(!d.accepts(&"P5.Cp.Cd".parse().unwrap()));
        assert!(!d.accepts(&"P9.Cp".parse().unwrap()));
    }
}
