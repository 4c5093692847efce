//! The hash chain and the line format (format v1).
//!
//! A log is a sequence of lines, one JSON object each, ending in `\n`. The
//! writer prefixes every record with the common fields, in this order:
//!
//! ```text
//! {"v":1,"seq":<u64>,"prev":"<64 lowercase hex>","time":"<RFC 3339 UTC, µs>",<the record's own fields>}
//! ```
//!
//! - `seq` is 0 for the first record of a log and +1 per record, continuous
//!   across rotated files.
//! - `prev` is the SHA-256 of the previous record's line bytes, without the
//!   `\n`; for seq 0 it is 64 zeros.
//! - The hash of a record is SHA-256 over its exact line bytes. Those bytes are
//!   the canonical encoding: a verifier hashes what is on disk and never
//!   re-serializes, so field order and spacing are the writer's business.
//!
//! Everything here is pure (no I/O) so it can be checked with known-answer
//! vectors; the writer and the verifier both build on it.

use sha2::{Digest, Sha256};
use std::time::SystemTime;
use subtle::ConstantTimeEq;

/// The format version written in every record's `v`.
pub const VERSION: u64 = 1;

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// The `prev` of the first record of a log.
pub const GENESIS: Hash = [0; 32];

/// SHA-256 of one line's bytes (without its `\n`).
pub fn hash_line(line: &[u8]) -> Hash {
    Sha256::digest(line).into()
}

/// Lowercase hex, as written in `prev` and `head`.
pub fn hex(h: &[u8]) -> String {
    hex::encode(h)
}

/// Parses 64 lowercase hex digits. Uppercase is refused: the format says
/// lowercase, and accepting two spellings would give one hash two encodings.
pub fn parse_hash(s: &str) -> Option<Hash> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, pair) in b.chunks_exact(2).enumerate() {
        out[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

/// Compares two hashes in constant time. Timing rarely matters for a log on
/// disk, but the verifier may run as a service answering "is this head
/// ours?", and the habit costs nothing (the ct-merkle lesson).
pub fn hashes_equal(a: &Hash, b: &Hash) -> bool {
    a.ct_eq(b).into()
}

/// RFC 3339 UTC with microseconds, e.g. `2026-11-21T20:53:15.123456Z`.
pub fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_micros(t).to_string()
}

/// Where the chain stands: the next record's `seq` and `prev`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    next_seq: u64,
    head: Hash,
}

impl Default for Chain {
    fn default() -> Self {
        Chain::new()
    }
}

impl Chain {
    /// An empty log: the next record is seq 0 with `prev` = [`GENESIS`].
    pub fn new() -> Chain {
        Chain {
            next_seq: 0,
            head: GENESIS,
        }
    }

    /// Continues after a record already written (recovery, rotation).
    pub fn resume(last_seq: u64, last_hash: Hash) -> Chain {
        Chain {
            next_seq: last_seq.saturating_add(1),
            head: last_hash,
        }
    }

    /// The seq the next record gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The hash of the last record (what the next `prev` will be).
    pub fn head(&self) -> Hash {
        self.head
    }

    /// The seq of the last record written, if any.
    pub fn head_seq(&self) -> Option<u64> {
        self.next_seq.checked_sub(1)
    }

    /// Seals one record: writes `{"v":1,"seq":…,"prev":…,"time":…,` followed
    /// by `body` without its opening `{` into `line` (cleared first, no
    /// `\n`), then advances the chain over those bytes.
    ///
    /// `body` must be a serialized JSON object holding the record's own
    /// fields (at least `kind`) and none of the common ones; the writer's
    /// serializers guarantee that.
    pub fn seal(&mut self, time: SystemTime, body: &[u8], line: &mut Vec<u8>) -> u64 {
        use std::io::Write;
        line.clear();
        // Writing into a Vec cannot fail.
        let _ = write!(
            line,
            "{{\"v\":{VERSION},\"seq\":{},\"prev\":\"{}\",\"time\":\"{}\"",
            self.next_seq,
            hex(&self.head),
            timestamp(time)
        );
        match body {
            [b'{', rest @ ..] if rest.iter().any(|c| !c.is_ascii_whitespace() && *c != b'}') => {
                line.push(b',');
                line.extend_from_slice(rest);
            }
            _ => line.push(b'}'),
        }
        let seq = self.next_seq;
        self.head = hash_line(line);
        self.next_seq += 1;
        seq
    }

    /// [`Chain::seal`] for a JSON value (tests, tools, the README's vector).
    pub fn seal_json(&mut self, time: SystemTime, body: &serde_json::Value) -> Vec<u8> {
        let mut line = Vec::new();
        let body = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
        self.seal(time, &body, &mut line);
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn seals_the_documented_prefix_and_chains() {
        let t = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        let mut c = Chain::new();
        let a = c.seal_json(t, &serde_json::json!({"kind": "x"}));
        assert_eq!(
            std::str::from_utf8(&a).unwrap(),
            format!(
                "{{\"v\":1,\"seq\":0,\"prev\":\"{}\",\"time\":\"2023-11-14T22:13:20.123456Z\",\"kind\":\"x\"}}",
                "0".repeat(64)
            )
        );
        assert_eq!(c.head(), hash_line(&a));
        let b = c.seal_json(t, &serde_json::json!({}));
        assert!(std::str::from_utf8(&b).unwrap().ends_with("Z\"}"));
        assert!(std::str::from_utf8(&b)
            .unwrap()
            .contains(&hex(&hash_line(&a))));
        assert_eq!(c.head_seq(), Some(1));
    }

    #[test]
    fn hex_round_trips_and_refuses_uppercase() {
        let h = hash_line(b"abc");
        assert_eq!(
            hex(&h),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(parse_hash(&hex(&h)), Some(h));
        assert_eq!(parse_hash(&hex(&h).to_uppercase()), None);
        assert_eq!(parse_hash("00"), None);
        assert!(hashes_equal(&h, &h) && !hashes_equal(&h, &GENESIS));
    }
}
