//! The bounded cache of analyses, keyed by a query string's cache key (for
//! PostgreSQL the redacted text, see `pg::lex`; for MySQL the fingerprint).
//!
//! A `DashMap` gives sharded locking, so connections on different threads
//! rarely contend. Eviction is deliberately crude: when the map is full (by
//! entries or by bytes), an arbitrary eighth of it is dropped. A miss costs
//! one parse, so precision buys little; what matters is that memory stays
//! bounded whatever agents send: by entry count, by the bytes of keys and
//! analyses together, and no single entry may take more than 1/64 of the
//! byte budget (a 4 MiB statement is simply not cached).

use super::types::Analysis;
use dashmap::DashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

pub struct Cache {
    map: DashMap<String, (Arc<Analysis>, usize)>,
    capacity: usize,
    max_bytes: usize,
    bytes: AtomicUsize,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// Roughly what an entry costs in memory: its key and analysis text plus
/// the allocations' overhead.
fn cost(key: &str, a: &Analysis) -> usize {
    let stmts: usize = a
        .statements
        .iter()
        .map(|s| {
            s.fingerprint.len()
                + s.command.len()
                + s.tables.iter().map(|t| t.len() + 32).sum::<usize>()
                + s.note.as_ref().map_or(0, |n| n.len())
                + 160
        })
        .sum();
    key.len() + stmts + 96
}

impl Cache {
    pub fn new(capacity: usize, max_bytes: usize) -> Self {
        Cache {
            map: DashMap::new(),
            capacity,
            max_bytes,
            bytes: AtomicUsize::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    pub fn get(&self, key: &str) -> Option<Arc<Analysis>> {
        let found = self.map.get(key).map(|e| Arc::clone(&e.value().0));
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
        let size = cost(&key, &value);
        if self.capacity == 0 || size > self.max_bytes / 64 {
            return;
        }
        if self.map.len() >= self.capacity
            || self.bytes.load(Ordering::Relaxed) + size > self.max_bytes
        {
            self.shrink();
        }
        self.bytes.fetch_add(size, Ordering::Relaxed);
        if let Some((_, old)) = self.map.insert(key, (value, size)) {
            self.bytes.fetch_sub(old, Ordering::Relaxed);
        }
    }

    fn shrink(&self) {
        let mut n = 0u32;
        let mut freed = 0usize;
        self.map.retain(|_, (_, size)| {
            n = n.wrapping_add(1);
            let keep = n % 8 != 0;
            if !keep {
                freed += *size;
            }
            keep
        });
        self.bytes.fetch_sub(freed, Ordering::Relaxed);
        // Small capacities: an eighth may round to nothing.
        if self.map.len() >= self.capacity
            || self.bytes.load(Ordering::Relaxed) > self.max_bytes / 2
        {
            self.map.clear();
            self.bytes.store(0, Ordering::Relaxed);
        }
    }

    pub fn stats(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    /// (entries, bytes) held now.
    pub fn size(&self) -> (usize, usize) {
        (self.map.len(), self.bytes.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty() -> Arc<Analysis> {
        Arc::new(Analysis { statements: vec![] })
    }

    #[test]
    fn stays_bounded_by_entries() {
        let c = Cache::new(16, 1 << 20);
        for i in 0..1000 {
            c.insert(format!("k{i}"), empty());
            assert!(c.size().0 <= 16);
        }
        assert!(c.get("k999").is_some());
    }

    #[test]
    fn stays_bounded_by_bytes() {
        let c = Cache::new(10_000, 64 * 1024);
        for i in 0..1000 {
            c.insert(format!("{i}{}", "x".repeat(900)), empty());
            assert!(c.size().1 <= 64 * 1024, "{:?}", c.size());
        }
        // An entry above 1/64 of the budget is never cached.
        c.insert("y".repeat(2000), empty());
        assert!(c.get(&"y".repeat(2000)).is_none());
    }
}
