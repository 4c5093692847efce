//! Rule files (`policy::Policy::from_str`, i.e. `policy/parse.rs`) from TOML
//! text: never panics; a policy either loads or lists its problems.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sqlgate::policy::{Policy, PolicyError};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(PolicyError::Invalid(problems)) = Policy::from_str("fuzz.toml", text) {
        assert!(!problems.is_empty(), "a policy refused without a problem");
    }
});
