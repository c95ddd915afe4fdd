//! Decoding stored audit entries: malformed bytes are `None`, never a panic.
#![no_main]

use keyhold_domain::audit::decode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(entry) = decode(data) {
        // What decodes carries the header it was read from.
        assert_eq!(entry.seq.to_be_bytes(), data[1..9]);
    }
});
