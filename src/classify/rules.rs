//! Classification from the token stream: the leading command, the keyword
//! fallback used when sqlparser cannot read a statement, and the scans that
//! always run (dangerous function calls, `set_config`, `OWNER TO`, …).
//!
//! Working on tokens rather than the AST makes these checks independent of
//! what sqlparser models: a call to `pg_read_file` is found in any
//! expression, table function or statement the parser rejected. They only
//! ever *add* classes.

use super::scan::{Kind, Token};
use super::types::{Class, ClassSet, Dialect};

use Class::*;

/// The leading command in upper case: `SELECT`, `CREATE TABLE`, `COMMIT PREPARED`.
pub fn command(toks: &[Token<'_>]) -> String {
    let words: Vec<&Token<'_>> = toks.iter().skip_while(|t| t.is_punct(b'(')).collect();
    let Some(first) = words.first().filter(|t| t.kind == Kind::Word) else {
        return String::new();
    };
    let w = |i: usize| {
        words
            .get(i)
            .filter(|t| t.kind == Kind::Word)
            .map(|t| t.text)
    };
    let lower = first.text.to_ascii_lowercase();
    let mut parts = vec![first.text];
    match lower.as_str() {
        "with" => {
            if let Some(main) = main_after_with(toks) {
                parts = vec![main];
            }
        }
        "create" | "alter" | "drop" => {
            const MODIFIERS: &[&str] = &[
                "or",
                "replace",
                "temp",
                "temporary",
                "unique",
                "unlogged",
                "global",
                "local",
                "trusted",
                "procedural",
                "recursive",
                "if",
                "not",
                "exists",
            ];
            const TWO_WORDS: &[&str] = &[
                "materialized",
                "foreign",
                "default",
                "event",
                "text",
                "access",
                "user",
                "owned",
            ];
            let mut i = 1;
            while w(i).is_some_and(|x| MODIFIERS.iter().any(|m| x.eq_ignore_ascii_case(m))) {
                i += 1;
            }
            if let Some(obj) = w(i) {
                parts.push(obj);
                let two = TWO_WORDS.iter().any(|m| obj.eq_ignore_ascii_case(m));
                if let Some(next) = w(i + 1).filter(|_| two) {
                    if !next.eq_ignore_ascii_case("if") {
                        parts.push(next);
                    }
                }
            }
        }
        // `SET CONSTRAINTS … IMMEDIATE` fires queued deferred triggers, as
        // a COMMIT does (the relay tells them apart by this).
        "set" if w(1).is_some_and(|n| n.eq_ignore_ascii_case("constraints")) => {
            parts.push(w(1).unwrap_or_default());
        }
        "prepare" | "commit" | "rollback" | "start" | "load" | "security" => {
            if let Some(next) = w(1).filter(|n| {
                ["transaction", "prepared", "data", "xml", "label"]
                    .iter()
                    .any(|k| n.eq_ignore_ascii_case(k))
            }) {
                parts.push(next);
            }
        }
        _ => {}
    }
    parts.join(" ").to_ascii_uppercase()
}

/// The main verb after a `WITH` clause: the first word at parenthesis depth 0
/// that can start the statement body.
fn main_after_with<'a>(toks: &[Token<'a>]) -> Option<&'a str> {
    let mut depth = 0i32;
    for t in toks.iter().skip(1) {
        if t.is_punct(b'(') {
            depth += 1;
        } else if t.is_punct(b')') {
            depth -= 1;
        } else if depth == 0 && t.kind == Kind::Word {
            let main = [
                "select", "insert", "update", "delete", "merge", "values", "table",
            ];
            if main.iter().any(|m| t.text.eq_ignore_ascii_case(m)) {
                return Some(t.text);
            }
        }
    }
    None
}

fn lower_word(toks: &[Token<'_>], i: usize) -> String {
    toks.get(i)
        .filter(|t| t.kind == Kind::Word)
        .map(|t| t.text.to_ascii_lowercase())
        .unwrap_or_default()
}

/// `DO` runs procedural code we cannot see into: assume it can do anything.
pub const DO_BLOCK: &[Class] = &[Unparsed, Write, Ddl, Privilege, ServerAccess];

/// Classes from the leading keywords, for statements sqlparser could not
/// read (or that were too long to parse). Only where the keywords make the
/// class unambiguous, and never `read` alone: `None` means "unparsed".
pub fn fallback(dialect: Dialect, toks: &[Token<'_>]) -> Option<ClassSet> {
    let w0 = lower_word(toks, 0);
    let w1 = lower_word(toks, 1);
    let has = |kw: &str| toks.iter().any(|t| t.is_word(kw));
    let role_word = |w: &str| matches!(w, "role" | "user" | "group");
    let c: &[Class] = match w0.as_str() {
        "vacuum" | "analyze" | "analyse" | "reindex" | "cluster" | "comment" | "optimize" => &[Ddl],
        "checkpoint" => &[Ddl, ServerAccess],
        "refresh" => &[Ddl, Write],
        "alter" if w1 == "system" => &[Ddl, ServerAccess],
        "alter" if w1 == "default" => &[Privilege, Ddl],
        "alter" if role_word(&w1) => &[Privilege],
        "alter" => &[Ddl],
        "create" if role_word(&w1) => &[Privilege],
        "create" if has("extension") || has("language") || has("server") => &[Ddl, ServerAccess],
        "create" => &[Ddl],
        "drop" if role_word(&w1) || w1 == "owned" => &[Privilege, Destructive],
        "drop" => &[Ddl, Destructive],
        "truncate" => &[Ddl, Destructive, Write],
        "grant" | "revoke" | "reassign" | "security" => &[Privilege],
        "rename" if w1 == "user" => &[Privilege],
        "rename" => &[Ddl],
        "do" => DO_BLOCK,
        "load" if dialect == Dialect::Mysql && (w1 == "data" || w1 == "xml") => {
            &[Write, ServerAccess]
        }
        "load" | "install" | "uninstall" | "import" => &[Ddl, ServerAccess],
        "copy" => return Some(copy_fallback(toks)),
        // Two-phase commit: see `classify`'s docs for why it is destructive.
        "prepare" if w1 == "transaction" => &[Transaction, Destructive],
        "commit" | "rollback" if w1 == "prepared" => &[Transaction, Destructive],
        "xa" if matches!(w1.as_str(), "prepare" | "commit" | "rollback") => {
            &[Transaction, Destructive]
        }
        "commit" | "rollback" | "begin" | "start" | "end" | "abort" | "savepoint" | "release"
        | "xa" => &[Transaction],
        "prepare" | "execute" => &[Session, Unparsed],
        "call" => &[Write, Unparsed],
        "shutdown" | "restart" | "kill" | "flush" | "purge" => &[ServerAccess],
        "set" if has("role") || has("authorization") || has("password") => &[Privilege, Session],
        "discard" if w1 == "all" => &[Session, Privilege],
        "set" | "reset" | "discard" | "listen" | "unlisten" | "notify" | "deallocate" | "use"
        | "unlock" => &[Session],
        "lock" => &[Write],
        "select" | "with" if into_outfile(toks) => &[Export, ServerAccess, Unparsed],
        _ => return None,
    };
    Some(ClassSet::of(c))
}

/// COPY the parser rejected: judge by its direction and endpoint words.
fn copy_fallback(toks: &[Token<'_>]) -> ClassSet {
    let mut c = ClassSet::of(&[Unparsed]);
    for (i, t) in toks.iter().enumerate() {
        let next = toks.get(i + 1);
        if t.is_word("to") {
            c.insert(Export);
        } else if t.is_word("from") {
            c.insert(Write);
        } else {
            continue;
        }
        if next.is_some_and(|n| n.kind == Kind::Str || n.is_word("program")) {
            c.insert(ServerAccess);
        }
    }
    c
}

/// MySQL `SELECT … INTO OUTFILE|DUMPFILE` writes a file on the server.
fn into_outfile(toks: &[Token<'_>]) -> bool {
    toks.windows(2)
        .any(|p| p[0].is_word("into") && (p[1].is_word("outfile") || p[1].is_word("dumpfile")))
}

/// Functions that reach the server's file system or processes, other
/// servers, or change data behind a SELECT. Compared case-insensitively on
/// the last part of the name, so `pg_catalog.pg_read_file` matches.
const CALLS: &[(&str, &[Class])] = &[
    ("pg_read_file", &[ServerAccess]),
    ("pg_read_binary_file", &[ServerAccess]),
    ("pg_ls_dir", &[ServerAccess]),
    ("pg_stat_file", &[ServerAccess]),
    ("pg_ls_logdir", &[ServerAccess]),
    ("pg_ls_waldir", &[ServerAccess]),
    ("pg_ls_tmpdir", &[ServerAccess]),
    ("pg_ls_archive_statusdir", &[ServerAccess]),
    ("pg_file_write", &[ServerAccess]),
    ("pg_file_rename", &[ServerAccess]),
    ("pg_file_unlink", &[ServerAccess]),
    ("pg_logdir_ls", &[ServerAccess]),
    ("lo_import", &[ServerAccess, Write]),
    ("lo_export", &[ServerAccess, Export]),
    ("pg_reload_conf", &[ServerAccess]),
    ("pg_rotate_logfile", &[ServerAccess]),
    ("pg_terminate_backend", &[ServerAccess]),
    ("pg_cancel_backend", &[ServerAccess]),
    ("pg_promote", &[ServerAccess]),
    ("pg_switch_wal", &[ServerAccess]),
    ("pg_backup_start", &[ServerAccess]),
    ("pg_backup_stop", &[ServerAccess]),
    ("pg_create_restore_point", &[ServerAccess]),
    ("load_file", &[ServerAccess]),
    ("sys_exec", &[ServerAccess]),
    ("sys_eval", &[ServerAccess]),
    ("lo_put", &[Write]),
    ("lo_unlink", &[Write]),
    ("lo_create", &[Write]),
    ("lo_creat", &[Write]),
    ("lo_from_bytea", &[Write]),
    ("nextval", &[Write]),
    ("setval", &[Write]),
    // These run SQL given as a string we cannot see into.
    ("query_to_xml", &[Unparsed]),
    ("query_to_xml_and_xmlschema", &[Unparsed]),
    ("ts_stat", &[Unparsed]),
];

/// Languages whose functions run with the server's OS privileges.
const UNTRUSTED_LANGUAGES: &[&str] = &[
    "c",
    "internal",
    "plpythonu",
    "plpython2u",
    "plpython3u",
    "plperlu",
    "pltclu",
    "plsh",
    "pljavau",
    "plr",
];

/// Classes added by what appears anywhere in the statement's tokens.
pub fn scan_calls(toks: &[Token<'_>]) -> ClassSet {
    let mut c = ClassSet::EMPTY;
    let lead = |kw: &str| toks.first().is_some_and(|t| t.is_word(kw));
    for (i, t) in toks.iter().enumerate() {
        let next = toks.get(i + 1);
        let Some(name) = t.ident() else { continue };
        if next.is_some_and(|n| n.is_punct(b'(')) {
            let lname = name.to_ascii_lowercase();
            if lname.starts_with("dblink") {
                c = c.union(ClassSet::of(&[ServerAccess]));
            }
            if let Some((_, classes)) = CALLS.iter().find(|(f, _)| *f == lname) {
                c = c.union(ClassSet::of(classes));
            }
        }
        if t.is_word("owner") && next.is_some_and(|n| n.is_word("to")) && lead("alter") {
            c.insert(Privilege);
        }
        if t.is_word("language") && lead("create") {
            let untrusted = next
                .and_then(|n| n.ident())
                .or_else(|| {
                    next.filter(|n| n.kind == Kind::Str)
                        .map(|n| n.text.trim_matches('\''))
                })
                .is_some_and(|l| {
                    UNTRUSTED_LANGUAGES
                        .iter()
                        .any(|u| l.eq_ignore_ascii_case(u))
                });
            if untrusted {
                c.insert(ServerAccess);
            }
        }
    }
    if into_outfile(toks) {
        c = c.union(ClassSet::of(&[Export, ServerAccess]));
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::scan::Scanner;

    fn cmd(sql: &str) -> String {
        command(&Scanner::new(Dialect::Postgres, sql).collect::<Vec<_>>())
    }

    #[test]
    fn commands() {
        assert_eq!(cmd("select 1"), "SELECT");
        assert_eq!(cmd("(select 1)"), "SELECT");
        assert_eq!(
            cmd("create or replace temp view v as select 1"),
            "CREATE VIEW"
        );
        assert_eq!(cmd("drop table if exists t"), "DROP TABLE");
        assert_eq!(
            cmd("CREATE MATERIALIZED VIEW m AS SELECT 1"),
            "CREATE MATERIALIZED VIEW"
        );
        assert_eq!(
            cmd("with d as (delete from t returning *) select * from d"),
            "SELECT"
        );
        assert_eq!(cmd("commit prepared 'x'"), "COMMIT PREPARED");
        assert_eq!(cmd("set constraints all immediate"), "SET CONSTRAINTS");
        assert_eq!(cmd("set search_path = x"), "SET");
        assert_eq!(
            cmd("alter default privileges grant select on tables to x"),
            "ALTER DEFAULT PRIVILEGES"
        );
        assert_eq!(cmd("'x'"), "");
    }
}
