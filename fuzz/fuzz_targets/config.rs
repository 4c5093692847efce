//! The config file (`config::Config::from_toml`) from TOML text: never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sqlgate::config::Config;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Config::from_toml(text, Path::new("/etc/sqlgate"));
    }
});
