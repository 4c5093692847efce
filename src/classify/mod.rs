//! SQL text → what it does: classes, tables, command, fingerprint.
//!
//! The policy decides on what this module says, so it errs on the side of
//! saying *more*: whatever it cannot place is `unparsed`, and every fallback
//! only adds classes.
//!
//! How a query string is handled:
//! 1. [`split`] runs the hand-written [`scan`]ner once over the bytes,
//!    splitting top-level statements and building the literal-free
//!    fingerprint that is also the cache key.
//! 2. On a cache hit that is all: the cached [`Analysis`] is shared.
//! 3. On a miss, each statement is parsed by sqlparser and its AST walked
//!    ([`tree`]); PostgreSQL text first has the inheritance markers that
//!    sqlparser misreads (`ONLY`, `name *`) blanked by [`pg_syntax`]. If
//!    the parser fails (or the statement is longer than `max_parse_bytes`)
//!    the keyword fallback in [`rules`] places it. Token scans for dangerous calls and [`forbidden`] settings always run.
//!
//! Tables are normalised as `schema.table`: unquoted parts lower-cased,
//! quoted parts verbatim (without their quotes), sorted and de-duplicated;
//! a CTE name is not a table where that CTE is in scope, but a DML target
//! always is (PostgreSQL never resolves one to a CTE).
//!
//! Chosen conservatively, and documented here because the policy relies on it:
//! - `EXECUTE name` is `session` + `unparsed`: the prepared text is not in
//!   the statement (the session layer, which saw the `PREPARE`, may do better).
//! - `DO …` is `unparsed` + `write` + `ddl` + `privilege` + `server_access`.
//! - `PREPARE TRANSACTION`, `COMMIT PREPARED` and `ROLLBACK PREPARED` are
//!   `transaction` + `destructive`: a prepared transaction outlives the
//!   session (holding its locks), and `COMMIT/ROLLBACK PREPARED` can settle
//!   any session's prepared work by its global id, so the policy should hold
//!   them. MySQL's `XA PREPARE|COMMIT|ROLLBACK` likewise.
//! - `MERGE` with any `THEN DELETE` action is `destructive` (whatever its
//!   conditions: which rows match is not visible here).
//! - `DISCARD ALL` is `session` + `privilege`, like `RESET ROLE` and
//!   `RESET ALL`: it resets the role too.
//! - `CALL` is `write` + `unparsed`: the procedure body is not analysed.
//! - `EXPLAIN` without `ANALYZE` is `read` whatever it explains; with
//!   `ANALYZE` it has the classes of the statement it runs.
//! - A WHERE that mentions no column outside subqueries (`1=1`, `true`,
//!   `'a'='b'`, `EXISTS (…)`) or compares a column with itself counts as
//!   always true, so UPDATE/DELETE with it is `destructive`.
//! - Statements split at every top-level `;`: a SQL-standard function body
//!   (`BEGIN ATOMIC … END`) comes out as several statements, each classified
//!   on its own (more restrictive than needed, never less).

mod analyze;
mod cache;
mod forbidden;
mod pg_syntax;
mod rules;
mod scan;
mod split;
mod tree;
mod types;

pub use types::*;

use std::sync::Arc;

/// Tuning for a [`Classifier`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassifierOptions {
    /// Most analyses kept; 0 disables the cache.
    pub cache_capacity: usize,
    /// Statements longer than this are not given to sqlparser (its cost grows
    /// with the text and agents can send anything); the keyword fallback
    /// places them or they are `unparsed`.
    pub max_parse_bytes: usize,
}

impl Default for ClassifierOptions {
    fn default() -> Self {
        ClassifierOptions {
            cache_capacity: 10_000,
            max_parse_bytes: 65_536,
        }
    }
}

/// Classifies query strings of one dialect. `Send + Sync`: share one per
/// listener through an `Arc`.
pub struct Classifier {
    dialect: Dialect,
    opts: ClassifierOptions,
    cache: cache::Cache,
}

impl Classifier {
    pub fn new(dialect: Dialect, opts: ClassifierOptions) -> Self {
        Classifier {
            dialect,
            opts,
            cache: cache::Cache::new(opts.cache_capacity),
        }
    }

    /// Never panics, never fails: what it cannot understand is `unparsed`.
    pub fn classify(&self, sql: &str) -> Arc<Analysis> {
        // INVARIANT: a cached analysis must not depend on any literal's
        // value, because every string with the same fingerprint shares it.
        // The AST walk and token rules never read literal values; the checks
        // that do (SET values, set_config arguments) mark their statement
        // uncacheable in `split`, as do unterminated quotes and comments.
        let (key, cacheable) = split::key(self.dialect, sql);
        if cacheable {
            if let Some(hit) = self.cache.get(&key) {
                return hit;
            }
        } else {
            self.cache.bypass();
        }
        let analysis = Arc::new(self.analyse(sql));
        if cacheable {
            self.cache.insert(key, Arc::clone(&analysis));
        }
        analysis
    }

    /// (hits, misses); uncacheable strings count as misses.
    pub fn cache_stats(&self) -> (u64, u64) {
        self.cache.stats()
    }

    fn analyse(&self, sql: &str) -> Analysis {
        let mut fp = String::with_capacity(sql.len() + 4);
        let mut spans = Vec::new();
        split::scan(self.dialect, sql, &mut fp, |s| spans.push(s));
        let statements = spans
            .iter()
            .map(|s| analyze::statement(self.dialect, sql, &fp, s, self.opts.max_parse_bytes))
            .collect();
        Analysis { statements }
    }
}

/// Literal-free fingerprint of a whole query string, for the audit log
/// (the same text the cache is keyed by).
pub fn fingerprint(dialect: Dialect, sql: &str) -> String {
    split::key(dialect, sql).0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifier_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Classifier>();
    }
}
