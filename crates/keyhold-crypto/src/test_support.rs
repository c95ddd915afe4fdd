//! Helpers for the unit tests: checks that a `Debug` string leaks no secret.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine as _;

/// Asserts `debug` contains none of the common renderings of `secret`:
/// lower/upper hex, base64 (standard and url-safe), and Rust's `[1, 2, ...]`.
pub(crate) fn assert_no_secret(debug: &str, secret: &[u8]) {
    assert!(secret.len() >= 8, "secret too short to search for");
    let renderings = [
        hex::encode(secret),
        hex::encode_upper(secret),
        STANDARD.encode(secret),
        STANDARD_NO_PAD.encode(secret),
        URL_SAFE_NO_PAD.encode(secret),
        // A derived Debug on a byte array prints decimals; the first few
        // bytes are enough to spot it.
        format!("{:?}", &secret[..4])
            .trim_end_matches(']')
            .to_owned(),
        hex::encode(&secret[..8]),
    ];
    for r in renderings {
        assert!(!debug.contains(&r), "Debug output {debug:?} leaks {r:?}");
    }
}
