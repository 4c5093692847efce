//! Request signing shared by the webhook and Slack channels: HMAC-SHA256 over
//! a timestamped base string, a freshness window, and a replay guard.
//!
//! Both channels accept decisions from the outside over plain HTTP, so a
//! decision is only as trustworthy as its signature. The pieces here are kept
//! apart from either channel so the two schemes (ours: `v1=` over
//! `"{timestamp}.{body}"`; Slack's: `v0=` over `"v0:{timestamp}:{body}"`)
//! share one constant-time verification and one notion of "stale".

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};
use thiserror::Error;

type HmacSha256 = Hmac<Sha256>;

/// How far a signed timestamp may be from our clock, either way.
pub const WINDOW_SECS: u64 = 5 * 60;

/// How many recent signatures the replay guard remembers. Entries expire with
/// the window; a sender that fills it within five minutes is refused rather
/// than letting the guard forget (and so accept a replay).
const REPLAY_CAPACITY: usize = 10_000;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("missing `{0}` header")]
    Missing(&'static str),
    #[error("malformed `{0}` header")]
    Malformed(&'static str),
    #[error("stale request: the timestamp is more than {WINDOW_SECS} seconds from now")]
    Stale,
    #[error("bad signature")]
    Mismatch,
    #[error("replayed request: this signature was already used")]
    Replay,
    #[error("too many signed requests in the last {WINDOW_SECS} seconds; retry later")]
    Busy,
}

impl SignatureError {
    pub fn http_status(&self) -> u16 {
        match self {
            SignatureError::Replay => 409,
            SignatureError::Busy => 503,
            _ => 401,
        }
    }
}

pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Lowercase hex HMAC-SHA256 of the concatenated `parts`.
pub fn hmac_hex(secret: &[u8], parts: &[&[u8]]) -> String {
    let mut mac = mac(secret);
    for p in parts {
        mac.update(p);
    }
    hex::encode(mac.finalize().into_bytes())
}

/// True if `sig_hex` is the HMAC of `parts` under `secret`; constant time in
/// the signature's content.
pub fn verify_hex(secret: &[u8], parts: &[&[u8]], sig_hex: &str) -> bool {
    let Ok(sig) = hex::decode(sig_hex.trim()) else {
        return false;
    };
    let mut mac = mac(secret);
    for p in parts {
        mac.update(p);
    }
    // `verify_slice` compares in constant time.
    mac.verify_slice(&sig).is_ok()
}

fn mac(secret: &[u8]) -> HmacSha256 {
    // INVARIANT: HMAC accepts keys of any length, so this cannot fail.
    match HmacSha256::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes any key length"),
    }
}

/// Parses a unix-seconds timestamp header and checks it is within the window.
pub fn fresh_timestamp(
    value: Option<&str>,
    header: &'static str,
    now: u64,
) -> Result<u64, SignatureError> {
    let v = value.ok_or(SignatureError::Missing(header))?;
    let ts: u64 = v
        .trim()
        .parse()
        .map_err(|_| SignatureError::Malformed(header))?;
    if ts.abs_diff(now) > WINDOW_SECS {
        return Err(SignatureError::Stale);
    }
    Ok(ts)
}

/// Remembers signatures seen within the window so each is accepted once.
///
/// A signature binds its timestamp, so once the timestamp leaves the window
/// the freshness check refuses it anyway and the guard may forget it.
#[derive(Default)]
pub struct ReplayGuard {
    seen: Mutex<HashMap<String, u64>>,
}

impl ReplayGuard {
    /// Records `(timestamp, signature)`; `Replay` if it was seen already.
    /// Call only after the signature verified, so strangers cannot fill it.
    pub fn admit(&self, timestamp: u64, signature: &str, now: u64) -> Result<(), SignatureError> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let key = format!("{timestamp}.{signature}");
        if seen.contains_key(&key) {
            return Err(SignatureError::Replay);
        }
        if seen.len() >= REPLAY_CAPACITY {
            seen.retain(|_, ts| ts.abs_diff(now) <= WINDOW_SECS);
            if seen.len() >= REPLAY_CAPACITY {
                return Err(SignatureError::Busy);
            }
        }
        seen.insert(key, timestamp);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_known_answer() {
        // RFC 4231 test case 2.
        assert_eq!(
            hmac_hex(b"Jefe", &[b"what do ya want ", b"for nothing?"]),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn verify_accepts_the_right_signature_only() {
        let sig = hmac_hex(b"k", &[b"1.", b"body"]);
        assert!(verify_hex(b"k", &[b"1.body"], &sig));
        assert!(verify_hex(b"k", &[b"1.body"], &sig.to_uppercase()));
        assert!(!verify_hex(b"other", &[b"1.body"], &sig));
        assert!(!verify_hex(b"k", &[b"2.body"], &sig));
        assert!(!verify_hex(b"k", &[b"1.body"], "zz"));
        assert!(!verify_hex(b"k", &[b"1.body"], "abc"));
        assert!(!verify_hex(b"k", &[b"1.body"], ""));
    }

    #[test]
    fn timestamps_outside_the_window_are_stale() {
        let now = 1_000_000;
        let h = "X-Ts";
        assert_eq!(fresh_timestamp(Some("1000000"), h, now), Ok(now));
        assert_eq!(fresh_timestamp(Some("999700"), h, now), Ok(999_700));
        assert_eq!(
            fresh_timestamp(Some("999699"), h, now),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            fresh_timestamp(Some("1000301"), h, now),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            fresh_timestamp(Some("soon"), h, now),
            Err(SignatureError::Malformed(h))
        );
        assert_eq!(
            fresh_timestamp(None, h, now),
            Err(SignatureError::Missing(h))
        );
    }

    #[test]
    fn replay_guard_admits_once_and_forgets_after_the_window() {
        let g = ReplayGuard::default();
        assert_eq!(g.admit(100, "aa", 100), Ok(()));
        assert_eq!(g.admit(100, "aa", 101), Err(SignatureError::Replay));
        assert_eq!(g.admit(101, "aa", 101), Ok(()));
        {
            let mut seen = g.seen.lock().unwrap();
            for i in 0..REPLAY_CAPACITY {
                seen.insert(format!("x{i}"), 100);
            }
        }
        // Full, but everything is old by now: purged, admitted.
        assert_eq!(g.admit(1000, "bb", 1000), Ok(()));
        {
            let mut seen = g.seen.lock().unwrap();
            for i in 0..REPLAY_CAPACITY {
                seen.insert(format!("y{i}"), 1000);
            }
        }
        assert_eq!(g.admit(1000, "cc", 1000), Err(SignatureError::Busy));
    }
}
