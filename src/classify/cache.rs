//! The bounded cache of analyses, keyed by a query string's fingerprint.
//!
//! A `DashMap` gives sharded locking, so connections on different threads
//! rarely contend. Eviction is deliberately crude: when the map is full, an
//! arbitrary eighth of it is dropped. A miss costs one parse, so precision
//! buys little; what matters is that memory stays bounded whatever agents send.

use super::types::Analysis;
use dashmap::DashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub struct Cache {
    map: DashMap<String, Arc<Analysis>>,
    capacity: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl Cache {
    pub fn new(capacity: usize) -> Self {
        Cache {
            map: DashMap::new(),
            capacity,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    pub fn get(&self, key: &str) -> Option<Arc<Analysis>> {
        let found = self.map.get(key).map(|e| Arc::clone(e.value()));
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Count a lookup that bypassed the cache (uncacheable text).
    pub fn bypass(&self) {
        self.misses.fetch_add(1, Ordering::Relaxed);
    }

    pub fn insert(&self, key: String, value: Arc<Analysis>) {
        if self.capacity == 0 {
            return;
        }
        if self.map.len() >= self.capacity {
            let mut n = 0u32;
            self.map.retain(|_, _| {
                n = n.wrapping_add(1);
                n % 8 != 0
            });
            // Small capacities: an eighth may round to nothing.
            if self.map.len() >= self.capacity {
                self.map.clear();
            }
        }
        self.map.insert(key, value);
    }

    pub fn stats(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_bounded() {
        let c = Cache::new(16);
        for i in 0..1000 {
            c.insert(format!("k{i}"), Arc::new(Analysis { statements: vec![] }));
            assert!(c.len() <= 16);
        }
        assert!(c.get("k999").is_some());
    }
}
