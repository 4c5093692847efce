//! PostgreSQL's CancelRequest routing. Each agent session gets the upstream
//! session's pid and a key of sqlgate's own; a cancel naming both withdraws
//! the session's held statement (`session::cancel`) or, when nothing is
//! held, is forwarded to the matching upstream session with the upstream key.

use crate::session::cancel::HoldSignal;
use dashmap::DashMap;
use std::sync::Arc;
use subtle::ConstantTimeEq;

#[derive(Clone)]
pub struct Target {
    pub key: i32,
    pub upstream: crate::config::Upstream,
    pub upstream_pid: i32,
    pub upstream_key: i32,
    /// Wakes the session if it is holding a statement for approval.
    pub held: Arc<HoldSignal>,
}

/// The sessions, by the pid their agent was given: the upstream session's
/// own pid, so that `pg_backend_pid()` and the pid of a NotificationResponse
/// agree with what the client holds (LISTEN/NOTIFY users tell their own
/// notifications from others' by it). The key is sqlgate's own, random:
/// the agent never learns the upstream key. Two upstream servers can hand
/// out the same pid, so one pid may name several sessions; the key tells
/// them apart.
#[derive(Default, Clone)]
pub struct Registry {
    map: Arc<DashMap<i32, Vec<Target>>>,
}

/// Removes the session's entry when the session ends.
pub struct Registration {
    registry: Registry,
    pid: i32,
    key: i32,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let dashmap::Entry::Occupied(mut e) = self.registry.map.entry(self.pid) {
            e.get_mut().retain(|t| t.key != self.key);
            if e.get().is_empty() {
                e.remove();
            }
        }
    }
}

impl Registry {
    /// Registers a session under its upstream pid with a new random key.
    pub fn register(&self, target_without_key: impl Fn(i32) -> Target) -> (i32, i32, Registration) {
        loop {
            let key = rand::random::<i32>();
            let t = target_without_key(key);
            let pid = t.upstream_pid;
            let mut entry = self.map.entry(pid).or_default();
            if entry.iter().any(|o| o.key == key) {
                continue;
            }
            entry.push(t);
            return (
                pid,
                key,
                Registration {
                    registry: self.clone(),
                    pid,
                    key,
                },
            );
        }
    }

    pub fn lookup(&self, pid: i32, key: i32) -> Option<Target> {
        let ts = self.map.get(&pid)?;
        // Every entry is compared, in constant time: how long a lookup takes
        // says nothing about how much of a key was right.
        let mut found = None;
        for t in ts.iter() {
            if bool::from(t.key.to_be_bytes().ct_eq(&key.to_be_bytes())) {
                found = Some(t.clone());
            }
        }
        found
    }
}
