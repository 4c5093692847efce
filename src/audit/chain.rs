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
//! - The writer ends every record with `"mac":"<64 lowercase hex>"`, an
//!   HMAC-SHA256 ([`RecordMac`]) over the SHA-256 of the line's bytes
//!   before `,"mac":` (the hash the writer computes on its way to the
//!   chain hash, so the MAC costs no second pass over the line).
//!   The MAC key is derived from the signing key, so only sqlgate can write a
//!   record that passes; recovery checks the MAC of every record after the
//!   last checkpoint before its own checkpoint signs them (a record appended
//!   by someone without the key is never signed). `verify` does not need it:
//!   it works from the public key alone and reports records no checkpoint
//!   covers as an unsigned tail.
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

/// `,"mac":"` + 64 hex digits + `"}`: what a MAC adds at a line's end.
pub const MAC_SUFFIX_LEN: usize = 8 + 64 + 2;

/// The per-record MAC: HMAC-SHA256 under a key only the writer holds.
///
/// Through `ring`, as the signatures: its SHA-256 uses the CPU's SHA
/// extensions, so the MAC costs about what the chain hash does.
pub struct RecordMac(ring::hmac::Key);

impl std::fmt::Debug for RecordMac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordMac(..)")
    }
}

impl RecordMac {
    /// The MAC key for a signing key's 32-byte seed:
    /// HMAC-SHA256(seed, "sqlgate-record-mac-v1").
    pub fn for_seed(seed: &[u8; 32]) -> RecordMac {
        let derive = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, seed);
        let k = ring::hmac::sign(&derive, b"sqlgate-record-mac-v1");
        RecordMac(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, k.as_ref()))
    }

    /// Appends `,"mac":"…"}` to a line sealed without its closing brace
    /// and returns the whole line's hash. One pass over the line serves
    /// both: the SHA-256 state after the MAC's input is finished once for
    /// the MAC and carried on over the suffix for the chain.
    fn finish(&self, line: &mut Vec<u8>) -> Hash {
        // ring's SHA-256, as the MAC's: its assembly uses the CPU's SHA
        // extensions.
        let mut state = ring::digest::Context::new(&ring::digest::SHA256);
        state.update(&line[..]);
        let tag = ring::hmac::sign(&self.0, state.clone().finish().as_ref());
        let start = line.len();
        line.extend_from_slice(b",\"mac\":\"");
        let at = line.len();
        line.resize(at + 64, 0);
        // Into the line directly: no String per record.
        let _ = hex::encode_to_slice(tag.as_ref(), &mut line[at..]);
        line.extend_from_slice(b"\"}");
        state.update(&line[start..]);
        let mut head = [0u8; 32];
        head.copy_from_slice(state.finish().as_ref());
        head
    }

    /// Does `line` (without its `\n`) end in a MAC this key made over the
    /// rest of it?
    pub fn check(&self, line: &[u8]) -> bool {
        let Some(split) = line.len().checked_sub(MAC_SUFFIX_LEN) else {
            return false;
        };
        let (data, suffix) = line.split_at(split);
        let Some(tag) = suffix
            .strip_prefix(b",\"mac\":\"")
            .and_then(|t| t.strip_suffix(b"\"}"))
            .and_then(|t| std::str::from_utf8(t).ok())
            .and_then(parse_hash)
        else {
            return false;
        };
        let inner = ring::digest::digest(&ring::digest::SHA256, data);
        ring::hmac::verify(&self.0, inner.as_ref(), &tag).is_ok()
    }
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
        self.seal_with(time, body, line, None)
    }

    /// [`Chain::seal`], the line ending in its `mac` (what the writer writes).
    pub fn seal_mac(
        &mut self,
        time: SystemTime,
        body: &[u8],
        line: &mut Vec<u8>,
        mac: &RecordMac,
    ) -> u64 {
        self.seal_with(time, body, line, Some(mac))
    }

    fn seal_with(
        &mut self,
        time: SystemTime,
        body: &[u8],
        line: &mut Vec<u8>,
        mac: Option<&RecordMac>,
    ) -> u64 {
        use std::io::Write;
        line.clear();
        // Writing into a Vec cannot fail.
        let mut prev = [0u8; 64];
        // Hex into the stack, not a String per record (it showed in the
        // audit thread's profile). 32 bytes encode to exactly 64 digits.
        let _ = hex::encode_to_slice(self.head, &mut prev);
        let _ = write!(
            line,
            "{{\"v\":{VERSION},\"seq\":{},\"prev\":\"{}\",\"time\":\"{}\"",
            self.next_seq,
            std::str::from_utf8(&prev).unwrap_or_default(),
            timestamp(time)
        );
        match body {
            [b'{', rest @ ..] if rest.iter().any(|c| !c.is_ascii_whitespace() && *c != b'}') => {
                line.push(b',');
                line.extend_from_slice(rest);
            }
            _ => line.push(b'}'),
        }
        self.head = match mac {
            Some(mac) => {
                line.pop(); // the closing brace: the MAC goes before it
                mac.finish(line)
            }
            None => hash_line(line),
        };
        let seq = self.next_seq;
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
    fn a_mac_covers_the_whole_line_and_only_its_key_makes_it() {
        let t = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        let mac = RecordMac::for_seed(&[1; 32]);
        let mut c = Chain::new();
        let mut line = Vec::new();
        c.seal_mac(t, br#"{"kind":"x"}"#, &mut line, &mac);
        let text = std::str::from_utf8(&line).unwrap();
        assert!(text.contains(r#""kind":"x","mac":""#), "{text}");
        assert!(text.ends_with("\"}"));
        serde_json::from_slice::<serde_json::Value>(&line).unwrap();
        assert_eq!(c.head(), hash_line(&line));
        assert!(mac.check(&line));
        assert!(!RecordMac::for_seed(&[2; 32]).check(&line));
        let edited = text.replace("\"x\"", "\"y\"");
        assert!(!mac.check(edited.as_bytes()));
        assert!(!mac.check(b"{}"));
        // An empty body still gets its MAC.
        c.seal_mac(t, b"{}", &mut line, &mac);
        assert!(mac.check(&line));
        serde_json::from_slice::<serde_json::Value>(&line).unwrap();
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
