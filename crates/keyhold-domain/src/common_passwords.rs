//! The common-passwords check: a password in the shipped list (20,000 entries,
//! `data/README.md` says where it comes from) is refused, ignoring case.

use std::collections::HashSet;
use std::sync::LazyLock;

static LIST: &str = include_str!("../data/common-passwords.txt");

static SET: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    LIST.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect()
});

/// Whether `password` (any case) is in the list.
pub fn is_common(password: &str) -> bool {
    SET.contains(password.to_lowercase().as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_large_and_matches_ignoring_case() {
        assert!(SET.len() >= 10_000, "only {} passwords", SET.len());
        for p in [
            "password",
            "Password",
            "PASSWORD1",
            "qwertyuiop",
            "iloveyou",
        ] {
            assert!(is_common(p), "{p} should be common");
        }
        for p in [
            "correct horse battery staple",
            "keyhold-demo-2026",
            "a long passphrase",
        ] {
            assert!(!is_common(p), "{p} should not be common");
        }
    }
}
