//! SCRAM-SHA-256's client messages (`auth::scram::Exchange`): client-first,
//! then client-final. Input: `client-first \0 client-final`. The server's
//! nonce is random, so `@NONCE@` in the client-final is replaced by the
//! nonce the exchange chose: otherwise every run would stop at the nonce
//! check and the proof decoding behind it would never be reached.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sqlgate::auth::scram::{Exchange, Verifier};

fuzz_target!(|data: &[u8]| {
    let (first, fin) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b""[..]),
    };
    // A decoy verifier: cheap to build (no PBKDF2), and no proof matches it.
    let verifier = Verifier::decoy("fuzz", &[7; 32]);
    let Ok((exchange, server_first)) = Exchange::start(verifier, first) else {
        return;
    };
    let nonce = server_first
        .strip_prefix("r=")
        .and_then(|s| s.split(',').next())
        .expect("server-first starts with r=<nonce>");
    let fin = String::from_utf8_lossy(fin).replace("@NONCE@", nonce);
    assert!(
        exchange.finish(fin.as_bytes()).is_err(),
        "a decoy accepted a proof"
    );
});
