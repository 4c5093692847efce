//! Every frontend message decoder on one frame: Query, Parse, Bind (names
//! and parameters), FunctionCall, Execute, Describe/Close, SASLInitialResponse, and the
//! renaming the relay does to Parse, Bind, Describe and Close. Each decoder
//! runs on every input (whatever its tag) because the relay trusts only the
//! tag it dispatched on, not the body: all of them must be total.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sqlgate_postgres::frontend;

fuzz_target!(|frame: &[u8]| {
    let _ = frontend::query_text(frame);
    let _ = frontend::parse_message(frame);
    let _ = frontend::bind_names(frame);
    if let Ok(params) = frontend::bind_parameters(frame) {
        let bytes: usize = params.iter().filter_map(|(_, v)| v.map(<[u8]>::len)).sum();
        assert!(bytes <= frame.len());
    }
    if let Ok((_, args)) = frontend::function_call(frame) {
        let bytes: usize = args.iter().filter_map(|(_, v)| v.map(<[u8]>::len)).sum();
        assert!(bytes <= frame.len());
    }
    let _ = frontend::execute_message(frame);
    let _ = frontend::target(frame);
    let _ = frontend::sasl_initial(frame);

    // Renaming as the relay does it: the result must frame correctly (its
    // length field is its length) and read back with the new names, and
    // nothing after the names may change.
    for (skip, names) in [
        (0, &[&b"sqlgate.s.1"[..]][..]),
        (0, &[&b"sqlgate.p.1"[..], &b"sqlgate.s.1"[..]][..]),
        (1, &[&b"sqlgate.s.1"[..]][..]),
    ] {
        let Ok(out) = frontend::with_names(frame, skip, names) else {
            continue;
        };
        let len = i32::from_be_bytes([out[1], out[2], out[3], out[4]]);
        assert_eq!(len as usize, out.len() - 1);
        assert_eq!(out[0], frame[0]);
        // C strings after the header and the `skip` bytes: the names, then the rest.
        let split = |m: &[u8], n: usize| {
            let mut rest = &m[5 + skip..];
            let mut got = Vec::new();
            for _ in 0..n {
                let nul = rest.iter().position(|&b| b == 0).unwrap();
                got.push(rest[..nul].to_vec());
                rest = &rest[nul + 1..];
            }
            (got, rest.to_vec())
        };
        let (got, rest) = split(&out, names.len());
        assert_eq!(got, names.iter().map(|n| n.to_vec()).collect::<Vec<_>>());
        assert_eq!(rest, split(frame, names.len()).1);
        assert_eq!(out[5..5 + skip], frame[5..5 + skip]);
    }
});
