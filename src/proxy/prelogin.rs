//! How many connections each client address may have that have not logged in.
//!
//! A connection holds one of the `max_connections` permits from accept on,
//! and a client that never sends a byte keeps it for the whole login timeout
//! (10 s). Without a per-address cap, one host opening idle sockets fills
//! every permit and real logins wait in the backlog until they time out.
//!
//! The guarantee: no client address holds more than `max_prelogin_per_address`
//! of the `max_connections` permits while it has not logged in, so one address
//! that never logs in leaves the rest to everyone else (its logged-in
//! sessions, which need an agent's password, are counted only by
//! `max_connections`).
//!
//! An address is the IPv4 address, or the /64 prefix of an IPv6 one (a host
//! is usually given a whole /64; counting single addresses would let it open
//! 2^64 of them). IPv4-mapped IPv6 addresses count as their IPv4 address.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

/// The per-address counts, shared by every listener.
pub struct PreLogin {
    max: usize,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place in its address's count, until it logs in (or ends):
/// dropping it gives the place back.
pub struct Slot {
    table: Arc<PreLogin>,
    key: IpAddr,
}

impl PreLogin {
    pub fn new(max: usize) -> Arc<PreLogin> {
        Arc::new(PreLogin {
            max,
            counts: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for a new connection from `peer`, or `None` when its address
    /// already has `max` connections logging in.
    pub fn try_take(self: &Arc<Self>, peer: IpAddr) -> Option<Slot> {
        let key = address_key(peer);
        let mut counts = self.lock();
        let n = counts.entry(key).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Slot {
            table: self.clone(),
            key,
        })
    }

    /// How many connections from `peer`'s address are logging in now.
    pub fn count(&self, peer: IpAddr) -> usize {
        self.lock().get(&address_key(peer)).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        // The map holds plain counts: a panic elsewhere cannot leave it torn.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.table.lock();
        if let Some(n) = counts.get_mut(&self.key) {
            *n -= 1;
            // INVARIANT: only addresses with connections logging in are kept,
            // so the map is bounded by the connections, not by every
            // address ever seen.
            if *n == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

fn address_key(peer: IpAddr) -> IpAddr {
    match peer.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn caps_each_address_and_gives_places_back() {
        let t = PreLogin::new(2);
        let a = t.try_take(ip("127.0.0.1")).unwrap();
        let b = t.try_take(ip("127.0.0.1")).unwrap();
        assert!(t.try_take(ip("127.0.0.1")).is_none());
        // Another address is not affected.
        let c = t.try_take(ip("127.0.0.2")).unwrap();
        drop(a);
        assert_eq!(t.count(ip("127.0.0.1")), 1);
        let _a2 = t.try_take(ip("127.0.0.1")).unwrap();
        drop((b, c));
        assert_eq!(t.count(ip("127.0.0.2")), 0);
        assert!(!t.lock().contains_key(&ip("127.0.0.2")), "empty entries go");
    }

    #[test]
    fn ipv6_counts_by_prefix_and_mapped_ipv4_as_ipv4() {
        let t = PreLogin::new(1);
        let _a = t.try_take(ip("2001:db8:1:2::1")).unwrap();
        assert!(t.try_take(ip("2001:db8:1:2:ffff::9")).is_none());
        assert!(t.try_take(ip("2001:db8:1:3::1")).is_some());
        let _v4 = t.try_take(ip("192.0.2.7")).unwrap();
        assert!(t.try_take(ip("::ffff:192.0.2.7")).is_none());
    }
}
