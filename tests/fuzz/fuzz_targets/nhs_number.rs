//! NHS number parsing: no input panics, and whatever parses prints in the
//! 3-3-4 form and parses back to itself.
#![no_main]

use keyhold_domain::NhsNumber;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(n) = NhsNumber::parse(&text) {
        let shown = n.to_string();
        assert_eq!(shown.len(), 12, "{shown}");
        assert_eq!(NhsNumber::parse(&shown).ok(), Some(n));
        assert_eq!(NhsNumber::parse(&n.digits()).ok(), Some(n));
    }
});
