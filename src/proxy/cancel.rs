//! CancelRequest routing. Each agent session gets its own (pid, key) from
//! sqlgate; a cancel naming them is forwarded to the matching upstream session.

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

#[derive(Default, Clone)]
pub struct Registry {
    map: Arc<DashMap<i32, Target>>,
}

/// Removes the session's entry when the session ends.
pub struct Registration {
    registry: Registry,
    pid: i32,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.map.remove(&self.pid);
    }
}

impl Registry {
    /// Picks an unused pid and a random key for a new session.
    pub fn register(&self, target_without_key: impl Fn(i32) -> Target) -> (i32, i32, Registration) {
        loop {
            let pid = (rand::random::<u32>() >> 1) as i32;
            let key = rand::random::<i32>();
            if pid == 0 {
                continue;
            }
            if let dashmap::Entry::Vacant(v) = self.map.entry(pid) {
                v.insert(target_without_key(key));
                return (
                    pid,
                    key,
                    Registration {
                        registry: self.clone(),
                        pid,
                    },
                );
            }
        }
    }

    pub fn lookup(&self, pid: i32, key: i32) -> Option<Target> {
        let t = self.map.get(&pid)?;
        bool::from(t.key.to_be_bytes().ct_eq(&key.to_be_bytes())).then(|| t.clone())
    }
}
