//! Statements that would undermine sqlgate's own scanner, and the settings
//! changes that `set_config` hides inside a SELECT.
//!
//! The scanner assumes the server reads quotes the way it does
//! (`standard_conforming_strings = on`, a UTF-8 client encoding, MySQL
//! without `ANSI_QUOTES`/`NO_BACKSLASH_ESCAPES`). A statement that changes
//! that assumption is forbidden whatever the policy says.
//!
//! These checks read literal values, so statements that reach them are
//! never cached (see `split::value_sensitive`).

use super::scan::{Kind, Token};
use super::types::{Class, ClassSet, Dialect};

const SCS: &str =
    "changing standard_conforming_strings would let string literals hide SQL from sqlgate";
const ENCODING: &str =
    "changing the client encoding away from UTF-8 would let multi-byte characters hide SQL from sqlgate";
const PG_ENCODING: &str =
    "changing the client encoding to one sqlgate cannot read as the server does (a client-only encoding such as SJIS or BIG5, or one it has no decoder for) would let multi-byte characters hide SQL from sqlgate";
const BACKSLASH_QUOTE: &str = "backslash_quote = on changes how sqlgate must read quotes";
const SQL_MODE: &str =
    "sql_mode with ANSI_QUOTES or NO_BACKSLASH_ESCAPES changes how sqlgate must read quotes";
const COMPUTED: &str = "set_config with a computed setting name cannot be checked";
const PG_SETTINGS: &str = "updating pg_settings changes settings sqlgate cannot check";

/// The value of a literal or bare word, if it can be read simply. Anything
/// with escapes comes back `None`, which every caller treats as unsafe.
fn value(d: Dialect, t: &Token<'_>) -> Option<String> {
    let s = t.text;
    let raw = match t.kind {
        Kind::Word | Kind::Number => return Some(s.to_ascii_lowercase()),
        Kind::Str if s.starts_with('$') => {
            let tag = s.get(1..)?.find('$')? + 2;
            s.get(tag..s.len().checked_sub(tag)?)?.to_string()
        }
        Kind::Str if s.starts_with('\'') || (d == Dialect::Mysql && s.starts_with('"')) => {
            if s.contains('\\') && d == Dialect::Mysql {
                return None;
            }
            let q = &s[..1];
            s.get(1..s.len() - 1)?.replace(&q.repeat(2), q)
        }
        _ => return None,
    };
    Some(raw.trim().to_ascii_lowercase())
}

fn single_value(d: Dialect, toks: &[Token<'_>]) -> Option<String> {
    match toks {
        [t] => value(d, t),
        _ => None,
    }
}

/// An encoding sqlgate reads as the server does (`crate::encoding`).
fn readable_pg(v: Option<&str>) -> bool {
    match v {
        Some("default") => true,
        Some(name) => crate::encoding::refusal(name).is_none(),
        None => false,
    }
}

fn utf8_mysql(v: Option<&str>) -> bool {
    matches!(v, Some("utf8" | "utf8mb4" | "utf8mb3" | "default"))
}

fn truthy(v: Option<&str>) -> bool {
    matches!(v, Some("on" | "true" | "yes" | "1"))
}

/// Check one PostgreSQL setting assignment.
fn pg_setting(name: &str, v: Option<String>) -> Option<&'static str> {
    let v = v.as_deref();
    match name {
        "standard_conforming_strings" if !(truthy(v) || v == Some("default")) => Some(SCS),
        "client_encoding" | "names" if !readable_pg(v) => Some(PG_ENCODING),
        "backslash_quote" if truthy(v) || v.is_none() => Some(BACKSLASH_QUOTE),
        _ => None,
    }
}

/// `forbidden` reason for a `SET …` statement, if any.
pub fn check_set(d: Dialect, toks: &[Token<'_>]) -> Option<&'static str> {
    if !toks.first().is_some_and(|t| t.is_word("set")) {
        return None;
    }
    match d {
        Dialect::Postgres => {
            let mut i = 1;
            while toks
                .get(i)
                .is_some_and(|t| t.is_word("session") || t.is_word("local"))
            {
                i += 1;
            }
            let name = toks.get(i)?.ident()?.to_ascii_lowercase();
            let mut rest = toks.get(i + 1..)?;
            if rest
                .first()
                .is_some_and(|t| t.is_punct(b'=') || t.is_word("to"))
            {
                rest = &rest[1..];
            }
            pg_setting(&name, single_value(d, rest))
        }
        Dialect::Mysql => toks[1..]
            .split(|t| t.is_punct(b','))
            .find_map(|a| mysql_assignment(a)),
    }
}

fn mysql_assignment(toks: &[Token<'_>]) -> Option<&'static str> {
    // `@name` is a user variable; `@@name` a system one.
    if toks.first().is_some_and(|t| t.is_punct(b'@'))
        && !toks.get(1).is_some_and(|t| t.is_punct(b'@'))
    {
        return None;
    }
    const SCOPES: &[&str] = &["global", "session", "local", "persist", "persist_only"];
    let words: Vec<&Token<'_>> = toks
        .iter()
        .filter(|t| !(t.is_punct(b'@') || t.is_punct(b'.')))
        .filter(|t| !SCOPES.iter().any(|s| t.is_word(s)))
        .collect();
    let name = words.first()?.ident()?.to_ascii_lowercase();
    let after_eq = || {
        let i = toks.iter().position(|t| t.is_punct(b'='))?;
        single_value(Dialect::Mysql, &toks[i + 1..])
    };
    let word = |i: usize| words.get(i).and_then(|t| value(Dialect::Mysql, t));
    match name.as_str() {
        "names" | "charset" if !utf8_mysql(word(1).as_deref()) => Some(ENCODING),
        "character" if !utf8_mysql(word(2).as_deref()) => Some(ENCODING),
        "character_set_client" if !utf8_mysql(after_eq().as_deref()) => Some(ENCODING),
        "sql_mode" => {
            const BAD: &[&str] = &[
                "ansi",
                "ansi_quotes",
                "no_backslash_escapes",
                "db2",
                "oracle",
                "mssql",
                "postgresql",
                "maxdb",
            ];
            match after_eq() {
                Some(v) if v.split(',').all(|m| !BAD.contains(&m.trim())) => None,
                _ => Some(SQL_MODE),
            }
        }
        _ => None,
    }
}

/// `set_config(name, value, local)` anywhere: returns extra classes and a
/// `forbidden` reason. Also catches `UPDATE pg_settings`, its twin.
pub fn check_calls(d: Dialect, toks: &[Token<'_>]) -> (ClassSet, Option<&'static str>) {
    let mut classes = ClassSet::EMPTY;
    let mut forbidden = None;
    if toks.first().is_some_and(|t| t.is_word("update"))
        && toks.iter().any(|t| t.is_word("pg_settings"))
    {
        forbidden = Some(PG_SETTINGS);
    }
    for (i, t) in toks.iter().enumerate() {
        let is_call = t
            .ident()
            .is_some_and(|n| n.eq_ignore_ascii_case("set_config"))
            && toks.get(i + 1).is_some_and(|n| n.is_punct(b'('));
        if !is_call {
            continue;
        }
        let name_tok = toks.get(i + 2);
        let name = name_tok
            .filter(|n| n.kind == Kind::Str && toks.get(i + 3).is_some_and(|c| c.is_punct(b',')))
            .and_then(|n| value(d, n));
        let Some(name) = name else {
            forbidden = forbidden.or(Some(COMPUTED));
            classes.insert(Class::Privilege);
            continue;
        };
        let val = toks
            .get(i + 4)
            .filter(|_| toks.get(i + 5).is_some_and(|c| c.is_punct(b',')));
        match name.as_str() {
            "role" | "session_authorization" => classes.insert(Class::Privilege),
            _ => classes.insert(Class::Session),
        }
        let v = val.and_then(|v| value(d, v));
        forbidden = forbidden.or_else(|| pg_setting(&name, v));
    }
    (classes, forbidden)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::scan::Scanner;

    fn set(d: Dialect, sql: &str) -> Option<&'static str> {
        check_set(d, &Scanner::new(d, sql).collect::<Vec<_>>())
    }

    #[test]
    fn postgres_settings() {
        let pg = Dialect::Postgres;
        assert!(set(pg, "SET standard_conforming_strings = off").is_some());
        assert!(set(pg, "SET LOCAL standard_conforming_strings TO 'off'").is_some());
        assert!(set(pg, "SET standard_conforming_strings = on").is_none());
        assert!(set(pg, "SET client_encoding = 'SJIS'").is_some());
        assert!(set(pg, "SET NAMES 'UTF8'").is_none());
        assert!(set(pg, "SET client_encoding TO DEFAULT").is_none());
        assert!(set(pg, "SET backslash_quote = on").is_some());
        assert!(set(pg, "SET search_path = public").is_none());
    }

    #[test]
    fn mysql_settings() {
        let my = Dialect::Mysql;
        assert!(set(my, "SET NAMES gbk").is_some());
        assert!(set(my, "SET NAMES 'utf8mb4' COLLATE 'utf8mb4_bin'").is_none());
        assert!(set(my, "SET CHARACTER SET big5").is_some());
        assert!(set(my, "SET @@session.character_set_client = 'sjis'").is_some());
        assert!(set(my, "SET sql_mode = 'STRICT_ALL_TABLES,ANSI_QUOTES'").is_some());
        assert!(set(my, "SET SESSION sql_mode = CONCAT(@@sql_mode, ',x')").is_some());
        assert!(set(my, "SET sql_mode = 'STRICT_ALL_TABLES'").is_none());
        assert!(set(my, "SET @sql_mode = 'ANSI'").is_none());
        assert!(set(my, "SET a = 1, sql_mode = 'NO_BACKSLASH_ESCAPES'").is_some());
    }
}
