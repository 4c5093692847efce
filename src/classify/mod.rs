//! SQL text → what it does: classes, tables, command, fingerprint.
//!
//! The policy decides on what this module says, so it errs on the side of
//! saying *more*: whatever it cannot place is `unparsed`, and every fallback
//! only adds classes.
//!
//! PostgreSQL is read with the server's own lexer and grammar ([`pg`]); see
//! there for how the cache key is made to cover everything a decision read.
//! MySQL (not served yet) is read with the hand-written [`scan`]ner and
//! sqlparser's MySQL dialect: [`split`] splits statements and builds the
//! literal-free fingerprint that is its cache key, each statement is parsed
//! and walked ([`tree`]), and the keyword fallback in [`rules`] places what
//! the parser cannot read.
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
//! - `DISCARD ALL`, `RESET ROLE` and `RESET ALL` are `session`: they return
//!   the session to the upstream login, the agent's own baseline (drivers
//!   and pools send them on reset).
//! - `CALL` is `write` + `unparsed`: the procedure body is not analysed.
//! - `EXPLAIN` without `ANALYZE` is `read` plus the classes of the functions
//!   and relations it names (planning may evaluate functions); with
//!   `ANALYZE`/`ANALYSE` (any value) it has the classes of the statement it runs.
//! - A WHERE that mentions no column outside subqueries (`1=1`, `true`,
//!   `'a'='b'`, `EXISTS (…)`), compares an expression with itself or is
//!   `x IS NULL OR x IS NOT NULL` counts as always true, so UPDATE/DELETE
//!   with it is `destructive`.
//! - Writing a system catalog (`pg_catalog`, `information_schema`, an
//!   unqualified `pg_*` name) is `privilege` + `ddl`.

mod analyze;
mod cache;
mod forbidden;
mod pg;
/// Where result columns come from, for masking (see the module docs).
pub use pg::lineage;
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
    /// Most bytes the cache may hold (keys and analyses); no single entry
    /// takes more than 1/64 of it.
    pub cache_bytes: usize,
    /// Query strings longer than this are not parsed (the cost grows with
    /// the text and agents can send anything): PostgreSQL ones are
    /// `unparsed`; MySQL ones go to the keyword fallback.
    pub max_parse_bytes: usize,
}

impl Default for ClassifierOptions {
    fn default() -> Self {
        ClassifierOptions {
            cache_capacity: 10_000,
            cache_bytes: 32 << 20,
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
            cache: cache::Cache::new(opts.cache_capacity, opts.cache_bytes),
        }
    }

    /// Never panics, never fails: what it cannot understand is `unparsed`.
    pub fn classify(&self, sql: &str) -> Arc<Analysis> {
        if self.dialect == Dialect::Postgres {
            return pg::classify(sql, &self.opts, &self.cache);
        }
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

    /// PostgreSQL only: SQL embedded in a PL/pgSQL body, in the parse mode
    /// PL/pgSQL uses for it (see [`pg::classify_embedded`]); uncached.
    pub fn classify_embedded(&self, sql: &str, grammar: i32) -> Option<Analysis> {
        match self.dialect {
            Dialect::Postgres => pg::classify_embedded(sql, grammar),
            Dialect::Mysql => None,
        }
    }

    /// (hits, misses); uncacheable strings count as misses.
    pub fn cache_stats(&self) -> (u64, u64) {
        self.cache.stats()
    }

    /// (entries, bytes) the cache holds now.
    pub fn cache_size(&self) -> (usize, usize) {
        self.cache.size()
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

/// The cache key of a whole query string (what every call computes before
/// a cache look-up): for PostgreSQL the redacted text, for MySQL the
/// fingerprint. Literal-free.
pub fn cache_key(dialect: Dialect, sql: &str) -> String {
    match dialect {
        Dialect::Postgres => pg::key(sql),
        Dialect::Mysql => split::key(dialect, sql).0,
    }
}

pub use pg::{
    builtin_classes, builtin_definition, builtin_definitions, builtin_name, foldable, neutral_text,
    pg_setting_matters, search_path_shadows_builtins, Foldable, BUILTIN_OIDS_MAJOR,
};

/// The PostgreSQL key computed without pg_query (`None` where the string is
/// not simple enough), and the one computed with it (`None` where it is not
/// a cache key): wherever the first answers, the two must be equal. For the
/// `classify` fuzz target.
#[doc(hidden)]
pub fn pg_key_pair(sql: &str) -> (Option<String>, Option<String>) {
    (pg::fast_key(sql), pg::scanned_key(sql))
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
