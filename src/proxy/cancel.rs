//! CancelRequest routing. Each agent session gets the upstream session's
//! pid and a key of sqlgate's own; a cancel naming both is forwarded to the
//! matching upstream session, with the upstream key.

use dashmap::DashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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

/// How a CancelRequest reaches a session that is holding a statement.
///
/// A held statement is not running upstream, so cancelling it means
/// withdrawing the request, and the cancel must *not* also go upstream: it
/// would arrive there asynchronously and could cancel whatever the agent
/// sends next (the agent has already been told its statement was cancelled).
#[derive(Default)]
pub struct HoldSignal {
    notify: tokio::sync::Notify,
    holding: AtomicBool,
    cancels: AtomicU64,
}

impl HoldSignal {
    /// A CancelRequest for this session: true when it withdrew a held
    /// statement (then there is nothing upstream to cancel).
    pub fn cancel(&self) -> bool {
        if !self.holding.load(Ordering::Acquire) {
            return false;
        }
        self.cancels.fetch_add(1, Ordering::AcqRel);
        self.notify.notify_waiters();
        true
    }

    /// Marks the session as holding until the guard is dropped.
    pub fn hold(&self) -> HoldGuard<'_> {
        let start = self.cancels.load(Ordering::Acquire);
        self.holding.store(true, Ordering::Release);
        HoldGuard {
            signal: self,
            start,
        }
    }
}

pub struct HoldGuard<'a> {
    signal: &'a HoldSignal,
    start: u64,
}

impl HoldGuard<'_> {
    /// A cancel arrived since the hold began. Checked on every wake-up as
    /// well, so a cancel landing between two waits is not lost.
    pub fn cancelled(&self) -> bool {
        self.signal.cancels.load(Ordering::Acquire) != self.start
    }

    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.signal.notify.notified()
    }
}

impl Drop for HoldGuard<'_> {
    fn drop(&mut self) {
        self.signal.holding.store(false, Ordering::Release);
    }
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
