//! The frame splitter (`frame::next`) over a byte stream, with limits taken
//! from the input: it must never panic and what it reports must lie inside
//! the buffer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sqlgate_postgres::frame::{self, Next};

fuzz_target!(|data: &[u8]| {
    let Some((limits, mut buf)) = data.split_first_chunk::<4>() else {
        return;
    };
    let max_message = u16::from_be_bytes([limits[0], limits[1]]) as usize;
    let stream_above = u16::from_be_bytes([limits[2], limits[3]]) as usize;
    let streamable = |tag: u8| tag == b'd' || tag == b'D';
    loop {
        match frame::next(buf, max_message, stream_above, streamable) {
            Ok(Next::Whole { tag, len }) => {
                assert!(len >= 5 && len <= buf.len());
                assert_eq!(tag, buf[0]);
                buf = &buf[len..];
            }
            Ok(Next::Partial {
                tag,
                avail,
                remaining,
            }) => {
                assert!(streamable(tag) && avail == buf.len() && remaining > 0);
                assert!(avail + remaining > stream_above);
                break;
            }
            Ok(Next::NeedMore) | Err(_) => break,
        }
    }
});
