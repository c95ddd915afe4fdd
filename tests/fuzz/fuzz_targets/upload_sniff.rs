//! Upload content sniffing and name cleaning: no input panics; a cleaned
//! name is always safe to store and to put in a header.
#![no_main]

use keyhold_domain::upload::{clean_filename, sniff};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // First byte: how much of the rest is the file name.
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let split = usize::from(n).min(rest.len());
    let (name, bytes) = rest.split_at(split);
    let name = String::from_utf8_lossy(name);
    if let Ok(t) = sniff(&name, bytes) {
        let clean = clean_filename(&name, t);
        assert!(!clean.is_empty() && clean.len() <= 100, "{clean:?}");
        assert!(
            clean
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || " ._()-".contains(c)),
            "{clean:?}"
        );
        // No separators (above), and never hidden or a bare "." / "..":
        // dots inside a stem ("a..b.pdf") are harmless.
        assert!(!clean.starts_with('.'), "{clean:?}");
        // The cleaned name still names the detected type.
        assert_eq!(sniff(&clean, bytes), Ok(t), "{clean:?}");
    }
});
