//! What changing a setting does (`SET`, `set_config`), an allow-list.
//!
//! A setting is `session` only when it is in [`SESSION`]: PostgreSQL 15's
//! settings that any user may change (context `user`) and that only tune
//! the session's own behaviour. Everything else — superuser-only settings
//! (`session_replication_role`, `log_*`, `zero_damaged_pages`,
//! `lo_compat_privileges`, …), `role` and `session_authorization`, custom
//! `x.y` settings (row-level security policies often read them), and any
//! name nobody reviewed — is `privilege`. Names are compared as PostgreSQL
//! compares them: case-insensitively, quoted or not.
//!
//! Some settings change how sqlgate must read SQL; changing those is
//! [`forbidden`] whatever the rules say.

use super::super::types::{Class, ClassSet};

/// Reviewed `user`-context settings that change nothing about what the
/// session may do or what the server enforces.
const SESSION: &[&str] = &[
    "application_name",
    "array_nulls",
    "backend_flush_after",
    "backslash_quote",
    "bytea_output",
    "check_function_bodies",
    "client_connection_check_interval",
    "client_encoding",
    "client_min_messages",
    "commit_siblings",
    "constraint_exclusion",
    "cpu_index_tuple_cost",
    "cpu_operator_cost",
    "cpu_tuple_cost",
    "cursor_tuple_fraction",
    "datestyle",
    "debug_pretty_print",
    "default_statistics_target",
    "default_table_access_method",
    "default_tablespace",
    "default_text_search_config",
    "default_toast_compression",
    "default_transaction_deferrable",
    "default_transaction_isolation",
    "default_transaction_read_only",
    "effective_cache_size",
    "effective_io_concurrency",
    "enable_async_append",
    "enable_bitmapscan",
    "enable_gathermerge",
    "enable_hashagg",
    "enable_hashjoin",
    "enable_incremental_sort",
    "enable_indexonlyscan",
    "enable_indexscan",
    "enable_material",
    "enable_memoize",
    "enable_mergejoin",
    "enable_nestloop",
    "enable_parallel_append",
    "enable_parallel_hash",
    "enable_partition_pruning",
    "enable_partitionwise_aggregate",
    "enable_partitionwise_join",
    "enable_seqscan",
    "enable_sort",
    "enable_tidscan",
    "escape_string_warning",
    "exit_on_error",
    "extra_float_digits",
    "force_parallel_mode",
    "from_collapse_limit",
    "geqo",
    "geqo_effort",
    "geqo_generations",
    "geqo_pool_size",
    "geqo_seed",
    "geqo_selection_bias",
    "geqo_threshold",
    "gin_fuzzy_search_limit",
    "gin_pending_list_limit",
    "hash_mem_multiplier",
    "idle_in_transaction_session_timeout",
    "idle_session_timeout",
    "intervalstyle",
    "jit",
    "jit_above_cost",
    "jit_expressions",
    "jit_inline_above_cost",
    "jit_optimize_above_cost",
    "jit_tuple_deforming",
    "join_collapse_limit",
    "lc_monetary",
    "lc_numeric",
    "lc_time",
    "lock_timeout",
    "logical_decoding_work_mem",
    "maintenance_io_concurrency",
    "maintenance_work_mem",
    "max_parallel_maintenance_workers",
    "max_parallel_workers",
    "max_parallel_workers_per_gather",
    "min_parallel_index_scan_size",
    "min_parallel_table_scan_size",
    "names",
    "parallel_leader_participation",
    "parallel_setup_cost",
    "parallel_tuple_cost",
    "password_encryption",
    "plan_cache_mode",
    "quote_all_identifiers",
    "random_page_cost",
    "recursive_worktable_factor",
    "row_security",
    "search_path",
    "seed",
    "seq_page_cost",
    "standard_conforming_strings",
    "statement_timeout",
    "stats_fetch_consistency",
    "synchronize_seqscans",
    "synchronous_commit",
    "tcp_keepalives_count",
    "tcp_keepalives_idle",
    "tcp_keepalives_interval",
    "tcp_user_timeout",
    "temp_buffers",
    "temp_tablespaces",
    "timezone",
    "timezone_abbreviations",
    "transaction_deferrable",
    "transaction_isolation",
    "transaction_read_only",
    "transform_null_equals",
    "vacuum_cost_delay",
    "vacuum_cost_limit",
    "vacuum_cost_page_dirty",
    "vacuum_cost_page_hit",
    "vacuum_cost_page_miss",
    "vacuum_failsafe_age",
    "vacuum_freeze_min_age",
    "vacuum_freeze_table_age",
    "vacuum_multixact_failsafe_age",
    "vacuum_multixact_freeze_min_age",
    "vacuum_multixact_freeze_table_age",
    "work_mem",
    "xmlbinary",
    "xmloption",
];

/// Classes of changing setting `name` (any case).
pub fn change(name: &str) -> ClassSet {
    let lower = name.to_ascii_lowercase();
    if SESSION.contains(&lower.as_str()) {
        ClassSet::of(&[Class::Session])
    } else {
        ClassSet::of(&[Class::Session, Class::Privilege])
    }
}

/// A `search_path` (its schemas, as given) that names `pg_catalog` after
/// another schema: functions there then shadow the built-ins sqlgate
/// decides by name (`public.lower` instead of `pg_catalog.lower`), so
/// setting it is `privilege`. Without `pg_catalog` in the list PostgreSQL
/// searches it first. So is one naming another system schema
/// (`information_schema`, `pg_toast`): unqualified names then reach its
/// built-ins, and an unqualified `CREATE OR REPLACE VIEW tables …` would
/// replace one (round 23, F1).
pub fn shadows_builtins(schemas: &[String]) -> bool {
    let unquote = |s: &str| s.trim().trim_matches('"').to_ascii_lowercase();
    schemas
        .iter()
        .any(|s| matches!(unquote(s).as_str(), "information_schema" | "pg_toast"))
        || schemas
            .iter()
            .position(|s| unquote(s) == "pg_catalog")
            .is_some_and(|i| i > 0)
}

/// Whether changing `name` needs its new value checked by [`forbidden`].
pub fn value_matters(name: &str) -> bool {
    matches!(
        name.to_ascii_lowercase().as_str(),
        "standard_conforming_strings" | "client_encoding" | "names" | "backslash_quote"
    )
}

const SCS: &str =
    "changing standard_conforming_strings would let string literals hide SQL from sqlgate";
const ENCODING: &str =
    "a client encoding sqlgate cannot read as the server does (BIG5, GB18030, GBK, JOHAB, SJIS, SHIFT_JIS_2004 and UHC, whose second bytes can be a backslash or a quote; EUC_TW, EUC_JIS_2004, MULE_INTERNAL; or a name it does not know) would let multi-byte characters hide SQL from sqlgate";
const BACKSLASH_QUOTE: &str = "backslash_quote = on changes how sqlgate must read quotes";
pub const FUNCTION_SET: &str = "a function that sets standard_conforming_strings, client_encoding or backslash_quote would run a body sqlgate read differently";
pub const COMPUTED: &str = "set_config with a computed setting name cannot be checked";
pub const PG_SETTINGS: &str = "updating pg_settings changes settings sqlgate cannot check";

/// Why setting `name` to `value` is forbidden, if it is. `value` is `None`
/// when it is not a plain constant (every such change of a checked setting
/// is forbidden) and `Some("default")` for `SET … TO DEFAULT` / `RESET`.
pub fn forbidden(name: &str, value: Option<&str>) -> Option<&'static str> {
    let v = value.map(|v| v.trim().to_ascii_lowercase());
    let v = v.as_deref();
    let truthy = matches!(v, Some("on" | "true" | "yes" | "1"));
    match name.to_ascii_lowercase().as_str() {
        "standard_conforming_strings" if !(truthy || v == Some("default")) => Some(SCS),
        "client_encoding" | "names"
            if !(v == Some("default")
                || v.is_some_and(|v| crate::encoding::refusal(v).is_none())) =>
        {
            Some(ENCODING)
        }
        "backslash_quote" if truthy || v.is_none() => Some(BACKSLASH_QUOTE),
        _ => None,
    }
}

/// Settings whose values are secrets or server commands (a replication
/// password, archive and restore programs): reading one is server access.
/// Custom settings (`app.jwt_secret`, `pgsodium.secret_key`) are where
/// applications keep keys, but also what row-level security reads
/// (`request.jwt.claim.sub`), so they can't all be: one is taken for a
/// secret by its last part's name. A heuristic, and a deny-list: the
/// README says so.
pub fn secret(name: &str) -> bool {
    const SECRET: &[&str] = &[
        "primary_conninfo",
        "restore_command",
        "archive_command",
        "archive_cleanup_command",
        "recovery_end_command",
        "ssl_passphrase_command",
        "archive_library",
    ];
    const SECRET_WORDS: &[&str] = &[
        "secret",
        "password",
        "passwd",
        "pwd",
        "key",
        "token",
        "credential",
        "conninfo",
        "private",
    ];
    let name = name.trim();
    SECRET.iter().any(|s| s.eq_ignore_ascii_case(name))
        || name.rsplit_once('.').is_some_and(|(_, last)| {
            let last = last.to_ascii_lowercase();
            SECRET_WORDS.iter().any(|w| last.contains(w))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_settings() {
        assert!(secret("primary_conninfo"));
        assert!(secret("app.jwt_secret"));
        assert!(secret("app.settings.JWT_SECRET"));
        assert!(secret("pgsodium.secret_key"));
        assert!(!secret("request.jwt.claim.sub"));
        assert!(!secret("app.tenant_id"));
        assert!(!secret("work_mem"));
    }

    #[test]
    fn allow_list() {
        assert_eq!(change("search_path"), ClassSet::of(&[Class::Session]));
        assert_eq!(change("DateStyle"), ClassSet::of(&[Class::Session]));
        for p in [
            "role",
            "ROLE",
            "Session_Authorization",
            "session_replication_role",
            "log_statement",
            "zero_damaged_pages",
            "lo_compat_privileges",
            "app.tenant_id",
            "local_preload_libraries",
            "restrict_nonsystem_relation_kind",
            "no_such_setting",
        ] {
            assert!(change(p).contains(Class::Privilege), "{p}");
        }
    }

    #[test]
    fn forbidden_values() {
        assert!(forbidden("standard_conforming_strings", Some("off")).is_some());
        assert!(forbidden("standard_conforming_strings", Some("on")).is_none());
        assert!(forbidden("standard_conforming_strings", None).is_some());
        assert!(forbidden("CLIENT_ENCODING", Some("SJIS")).is_some());
        assert!(forbidden("names", Some("UTF8")).is_none());
        assert!(forbidden("backslash_quote", Some("on")).is_some());
        assert!(forbidden("backslash_quote", Some("safe_encoding")).is_none());
        assert!(forbidden("search_path", None).is_none());
    }
}
