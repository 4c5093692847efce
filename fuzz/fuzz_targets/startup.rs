//! The first packet of a connection: StartupMessage, SSLRequest,
//! GSSENCRequest, CancelRequest (`frontend::startup_len` + `decode_startup`),
//! read as `startup::read_startup` does: length first, then exactly that many bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sqlgate_postgres::frontend::{self, StartupPacket, MAX_STARTUP_PACKET};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(n)) = frontend::startup_len(data) {
        assert!((8..=MAX_STARTUP_PACKET).contains(&n));
        if let Some(packet) = data.get(..n) {
            if let Ok(StartupPacket::Startup { params, .. }) = frontend::decode_startup(packet) {
                // Every name and value came out of the packet's own bytes.
                let total: usize = params.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
                assert!(total <= n);
            }
        }
    }
    // Whatever the length field says, decoding any slice must not panic.
    let _ = frontend::decode_startup(data);
});
