//! Reading a transaction Bundle: no JSON makes it panic; it either maps
//! entries or names problems, never neither.
#![no_main]

use keyhold_fhir::ingest::parse_transaction;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(bundle) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    match parse_transaction(&bundle) {
        Ok(_) => {}
        Err(problems) => assert!(!problems.is_empty(), "a refusal names its problems"),
    }
});
