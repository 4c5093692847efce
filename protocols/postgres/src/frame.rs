//! Message framing: `tag (1 byte) | length (i32, includes itself) | body`.
//!
//! The proxy forwards original bytes, so framing only has to say where each
//! message ends. Messages that carry bulk data (`DataRow`, `CopyData`) may be
//! larger than any buffer we want to hold; those stream through in pieces.
//! Every other message must fit in `max_message` bytes, or the peer gets a
//! clear error (the caller decides which).

use thiserror::Error;

/// The smallest legal length field (the length counts itself).
const MIN_LEN: usize = 4;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("invalid message length {len} for message type `{tag}`")]
    BadLength { tag: char, len: i64 },
    #[error("message type `{tag}` of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { tag: char, len: usize, max: usize },
}

/// What the framer found at the front of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Not enough bytes for a decision yet: read more.
    NeedMore,
    /// A whole message of `len` bytes (tag included) is at the front.
    Whole { tag: u8, len: usize },
    /// A streamable message too large to hold: its first `avail` bytes are at
    /// the front and `remaining` more will follow on the wire.
    Partial {
        tag: u8,
        avail: usize,
        remaining: usize,
    },
}

/// Looks at the front of `buf`. `streamable(tag)` says which message types may
/// pass in pieces once they exceed `stream_above` bytes.
pub fn next(
    buf: &[u8],
    max_message: usize,
    stream_above: usize,
    streamable: impl Fn(u8) -> bool,
) -> Result<Next, FrameError> {
    if buf.len() < 5 {
        return Ok(Next::NeedMore);
    }
    let tag = buf[0];
    let raw = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if raw < MIN_LEN as i32 {
        return Err(FrameError::BadLength {
            tag: tag as char,
            len: raw as i64,
        });
    }
    let len = raw as usize + 1;
    if buf.len() >= len {
        return Ok(Next::Whole { tag, len });
    }
    if streamable(tag) && len > stream_above {
        return Ok(Next::Partial {
            tag,
            avail: buf.len(),
            remaining: len - buf.len(),
        });
    }
    if len > max_message {
        return Err(FrameError::TooLarge {
            tag: tag as char,
            len,
            max: max_message,
        });
    }
    Ok(Next::NeedMore)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn whole_and_partial() {
        let m = msg(b'Q', b"select 1\0");
        assert_eq!(next(&m[..3], 100, 50, |_| false), Ok(Next::NeedMore));
        assert_eq!(
            next(&m, 100, 50, |_| false),
            Ok(Next::Whole {
                tag: b'Q',
                len: m.len()
            })
        );
        let big = msg(b'd', &[7u8; 200]);
        assert_eq!(
            next(&big[..60], 100, 50, |t| t == b'd'),
            Ok(Next::Partial {
                tag: b'd',
                avail: 60,
                remaining: big.len() - 60
            })
        );
        // Small streamable messages are still buffered whole.
        let small = msg(b'd', &[7u8; 10]);
        assert_eq!(
            next(&small[..8], 100, 50, |t| t == b'd'),
            Ok(Next::NeedMore)
        );
    }

    #[test]
    fn rejects_bad_and_oversized() {
        assert!(matches!(
            next(&[b'Q', 0, 0, 0, 3], 100, 50, |_| false),
            Err(FrameError::BadLength { .. })
        ));
        assert!(matches!(
            next(&[b'Q', 0x7f, 0, 0, 0], 100, 50, |_| false),
            Err(FrameError::BadLength { .. }) | Err(FrameError::TooLarge { .. })
        ));
        let big = msg(b'Q', &[b'a'; 200]);
        assert!(matches!(
            next(&big[..20], 100, 50, |_| false),
            Err(FrameError::TooLarge { .. })
        ));
    }
}
