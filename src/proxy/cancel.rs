//! CancelRequest routing. Each agent session gets its own (pid, key) from
//! sqlgate; a cancel naming them is forwarded to the matching upstream session.

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
    pub held: Arc<tokio::sync::Notify>,
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
