//! PostgreSQL: SQL read exactly as the server reads it, with the server's
//! own lexer and grammar (pg_query, i.e. libpg_query).
//!
//! 1. [`lex::scan`] tokenizes the string and builds the cache key: the
//!    redacted text, every literal replaced by a placeholder of its kind.
//! 2. A cache hit on that key is the answer.
//! 3. On a miss the *key* is parsed and each statement's tree walked
//!    ([`walk`]) in key mode. Because the tree is the key's, the answer is a
//!    function of the key alone — a cached decision never read anything its
//!    key left out, by construction, not by a list of keywords.
//! 4. A statement whose decision needs a literal's value (`SET` of a
//!    setting sqlgate's reading depends on, `set_config`, code bodies)
//!    makes the walk ask for the original; then the original text is parsed
//!    and walked, and the result is not cached. So is a string whose key
//!    does not parse (a grammar action that checks a value) or that uses
//!    `UESCAPE`.
//!
//! Statement boundaries are the grammar's (`RawStmt` locations), so a
//! `BEGIN ATOMIC … END` body is one statement, as on the server. A string
//! the grammar rejects is rejected whole by the server too (it parses the
//! whole string before running any of it): each of its `;`-separated parts
//! is `unparsed`, with the reason.
//!
//! pg_query is PostgreSQL 17's grammar; sqlgate is tested against
//! PostgreSQL 15. Newer syntax that 15 lacks is rejected by the server;
//! 15's lexer rejects what 17 added (`0x1F`, `1_000`) as trailing junk.

mod builtins;
mod lex;
pub mod lineage;
mod neutral;
mod settings;
mod walk;

pub use neutral::neutral_text;

use super::cache::Cache;
use super::scan::Scanner;
use super::types::{Analysis, Class, ClassSet, Dialect, Pending, StatementInfo};
use super::{rules, ClassifierOptions};
use lex::{Kind, Lexed, Tok};
use std::sync::Arc;
use walk::{Mode, Walk};

/// The cache key of `sql` (empty when the lexer rejects it).
pub fn key(sql: &str) -> String {
    lex::scan_key(sql).map(|l| l.key).unwrap_or_default()
}

/// Whether a `search_path` value as PostgreSQL reads it from a startup
/// packet (a comma-separated list) lets user functions shadow built-ins
/// (see `settings::shadows_builtins`). Quoted names split naively: only
/// ever more cautious.
pub fn search_path_shadows_builtins(value: &str) -> bool {
    let schemas: Vec<String> = value.split(',').map(str::to_owned).collect();
    settings::shadows_builtins(&schemas)
}

/// Whether a setting changes how sqlgate must read SQL
/// (`standard_conforming_strings`, `client_encoding`, …).
pub fn pg_setting_matters(name: &str) -> bool {
    settings::value_matters(name.trim())
}

/// The key without pg_query, where the string is simple enough
/// (`lex::fast_key`).
pub(super) fn fast_key(sql: &str) -> Option<String> {
    lex::fast_key(sql)
}

/// What a call of the built-in `schema.name` does (`unparsed` for one
/// nobody reviewed), for the catalog's operators and casts over built-ins.
pub use builtins::{builtin_definition, builtin_definitions, BUILTIN_OIDS_MAJOR};

pub fn builtin_name(oid: u32) -> Option<&'static str> {
    builtins::builtin_name(oid)
}

pub fn builtin_classes(schema: &str, name: &str) -> ClassSet {
    builtins::call(schema, name).0
}

/// The scanned key, when it can stand for the string in the cache.
pub(super) fn scanned_key(sql: &str) -> Option<String> {
    lex::scan_key(sql)
        .ok()
        .filter(|k| k.redactable && !k.key.is_empty())
        .map(|k| k.key)
}

/// Classifies one query string. Never panics, never fails.
pub fn classify(sql: &str, opts: &ClassifierOptions, cache: &Cache) -> Arc<Analysis> {
    // The hot path: the key alone, and a hit. Most strings have a key
    // without pg_query (`lex::fast_key`), the others a scanned one.
    if sql.len() <= opts.max_parse_bytes {
        let key = match lex::fast_key(sql) {
            Some(k) => {
                debug_assert_eq!(Some(&k), scanned_key(sql).as_ref(), "fast key of {sql:?}");
                Some(k)
            }
            None => scanned_key(sql),
        };
        if let Some(hit) = key.and_then(|k| cache.get(&k)) {
            return hit;
        }
    }
    let lexed = match lex::scan(sql) {
        Ok(l) => l,
        Err(why) => {
            cache.bypass();
            return Arc::new(rejected(
                sql,
                None,
                &format!("PostgreSQL's lexer rejects it: {why}"),
            ));
        }
    };
    if lexed.toks.is_empty() {
        return Arc::new(Analysis { statements: vec![] });
    }
    if sql.len() > opts.max_parse_bytes {
        cache.bypass();
        let why = format!(
            "statement of {} bytes is longer than max_parse_bytes",
            sql.len()
        );
        return Arc::new(rejected(sql, Some(&lexed), &why));
    }
    if lexed.redactable {
        if let Some(a) = analyse(sql, &lexed, Mode::Key, 0) {
            let a = Arc::new(a);
            cache.insert(lexed.key.clone(), Arc::clone(&a));
            return a;
        }
    } else {
        cache.bypass();
    }
    Arc::new(analyse(sql, &lexed, Mode::Original, 0).unwrap_or_else(|| {
        let why = match pg_query::parse(sql, 0) {
            Err(e) => format!(
                "PostgreSQL's grammar rejects it: {}",
                lex::loggable(&e.to_string())
            ),
            Ok(_) => "the parse tree could not be read".into(),
        };
        rejected(sql, Some(&lexed), &why)
    }))
}

/// Classifies SQL embedded in a PL/pgSQL function body, parsed in the mode
/// PL/pgSQL itself uses for it (`PLpgSQL_expr.parseMode`: 0 a statement,
/// 2 an expression, 3–5 an assignment). Uncached; `None` when it does not
/// parse.
pub fn classify_embedded(sql: &str, grammar: i32) -> Option<Analysis> {
    if !(0..=5).contains(&grammar) || grammar == 1 {
        return None;
    }
    let lexed = lex::scan(sql).ok()?;
    if lexed.toks.is_empty() {
        return Some(Analysis { statements: vec![] });
    }
    analyse(sql, &lexed, Mode::Original, grammar)
}

/// What planning a query on a relation evaluates of one of its definitions
/// (an index's expressions and predicate, expression statistics, a CHECK
/// constraint, a partition key): `eval_const_expressions` runs every
/// immutable call whose arguments hold no column, once per session, when
/// the relation is first planned for, a read included.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Foldable {
    /// Names of the functions called with no column in their arguments.
    pub calls: std::collections::BTreeSet<String>,
    /// An operator or cast applied with no column in its operands: what
    /// function it runs is not named in the text.
    pub operators: bool,
}

/// [`Foldable`] of `sql`, a definition as `pg_get_indexdef`,
/// `pg_get_statisticsobjdef` or `ALTER TABLE … ADD <pg_get_constraintdef>`
/// give it; `None` when it does not parse.
pub fn foldable(sql: &str) -> Option<Foldable> {
    let parsed = pg_query::parse(sql, 0).ok()?;
    let mut out = Foldable::default();
    for raw in &parsed.protobuf.stmts {
        let tree = serde_json::to_value(raw.stmt.as_ref()?).ok()?;
        walk::foldable(&tree, &mut out);
    }
    Some(out)
}

/// The key-mode or original-mode analysis; `None` when the text does not
/// parse, or (key mode) when a statement needs its literals.
/// `grammar` is pg_query's parse mode: 0 for SQL, 2–5 for PL/pgSQL
/// expressions and assignments.
fn analyse(sql: &str, lexed: &Lexed, mode: Mode, grammar: i32) -> Option<Analysis> {
    let text = match mode {
        Mode::Key => lexed.key.as_str(),
        Mode::Original => sql,
    };
    let parsed = pg_query::parse(text, grammar).ok()?;
    if parsed.protobuf.stmts.len() > MAX_STATEMENTS {
        return Some(rejected(
            sql,
            None,
            &format!("more than {MAX_STATEMENTS} statements in one query string"),
        ));
    }
    let mut statements = Vec::with_capacity(parsed.protobuf.stmts.len());
    for raw in &parsed.protobuf.stmts {
        let from = raw.stmt_location.max(0) as u32;
        let to = match raw.stmt_len {
            0 => u32::MAX,
            n => from.saturating_add(n.max(0) as u32),
        };
        let toks = match mode {
            Mode::Key => lex::in_range(&lexed.toks, from, to, |t| t.key_start),
            Mode::Original => lex::in_range(&lexed.toks, from, to, |t| t.start),
        };
        let tree = raw.stmt.as_ref().and_then(|s| serde_json::to_value(s).ok());
        let mut w = Walk::new(mode);
        let tree = tree?;
        match walk::node_of(&tree) {
            Some((ty, n)) => w.statement(ty, n),
            None => return None,
        }
        w.finish(&tree);
        if w.needs_original {
            return None;
        }
        if let Some((language, src)) = w.body.take() {
            // What the body will do when called, read as the catalog will
            // read it then: the approver sees it, and the rules decide on it.
            let stmt = text
                .get(from as usize..(to as usize).min(text.len()))
                .unwrap_or(text);
            let placed = crate::catalog::body::place_with(
                &|q, m| classify_embedded(q, m),
                &language,
                &src,
                Some(stmt),
            );
            w.classes = w.classes.union(placed.classes);
            w.tables.extend(placed.tables);
            for f in placed.calls {
                if !w.functions.contains(&f) {
                    w.functions.push(f);
                }
            }
            for b in placed.optional {
                if !w.builtins.contains(&b) {
                    w.builtins.push(b);
                }
            }
        }
        statements.push(info(sql, lexed, toks, w));
    }
    Some(Analysis { statements })
}

fn info(sql: &str, lexed: &Lexed, toks: &[Tok], w: Walk) -> StatementInfo {
    let toks = trim_semicolons(toks);
    let mut classes = w.classes;
    let mut note = w.note;
    let pending = (!w.functions.is_empty() || !w.builtins.is_empty()).then(|| {
        let base = classes;
        if let Some(f) = w.functions.first() {
            classes.insert(Class::Unparsed);
            note.get_or_insert_with(|| {
                format!(
                    "function `{f}` is not a reviewed built-in and was not found in the catalog"
                )
            });
        }
        Box::new(Pending {
            base,
            functions: w.functions.clone(),
            builtins: w.builtins.clone(),
        })
    });
    if classes.is_empty() {
        classes.insert(Class::Unparsed);
        note.get_or_insert_with(|| "no class could be determined".into());
    }
    StatementInfo {
        classes,
        tables: w.tables.into_iter().collect(),
        fingerprint: lex::fingerprint(sql, toks),
        command: command(lexed, toks),
        forbidden: w.forbidden,
        note,
        code: w.code,
        changes_rows: w.changes_rows,
        // Code sqlgate did not read may set `search_path` (see Walk).
        moves_names: w.moves_names || !w.functions.is_empty(),
        keeps_cursor: w.keeps_cursor,
        pending,
    }
}

fn trim_semicolons(toks: &[Tok]) -> &[Tok] {
    let a = toks
        .iter()
        .take_while(|t| t.kind == Kind::Semicolon)
        .count();
    let b = toks.len()
        - toks
            .iter()
            .rev()
            .take_while(|t| t.kind == Kind::Semicolon)
            .count();
    &toks[a..b.max(a)]
}

/// The leading command (`SELECT`, `CREATE TABLE`, …), read from the
/// statement's redacted text, so it never holds a literal.
fn command(lexed: &Lexed, toks: &[Tok]) -> String {
    let (Some(first), Some(last)) = (toks.first(), toks.last()) else {
        return String::new();
    };
    let end = toks
        .get(toks.len().min(8).saturating_sub(1))
        .unwrap_or(last)
        .key_start as usize;
    let end = lexed.key[end..]
        .find(' ')
        .map_or(lexed.key.len(), |i| end + i);
    let text = lexed.key.get(first.key_start as usize..end).unwrap_or("");
    rules::command(&Scanner::new(Dialect::Postgres, text).collect::<Vec<_>>())
}

/// More statements than this in one query string are one `unparsed`
/// statement: every statement costs memory in the analysis, the hold and
/// the audit log, and no client needs thousands in one string.
const MAX_STATEMENTS: usize = 1000;

/// A string the server would reject (or sqlgate will not parse): every
/// `;`-separated part is `unparsed`, with `why`, and carries every other
/// class too. Unread, it could be anything: a `TRUNCATE` or a
/// `COPY … TO PROGRAM` padded past `max_parse_bytes` must meet the rules
/// for what it is (the shipped `server_access` deny, the strictest quorum),
/// never only the one for `unparsed`.
fn rejected(sql: &str, lexed: Option<&Lexed>, why: &str) -> Analysis {
    let too_many = lexed.is_some_and(|l| {
        l.toks.iter().filter(|t| t.kind == Kind::Semicolon).count() >= MAX_STATEMENTS
    });
    if too_many {
        return rejected(
            sql,
            None,
            &format!("{why}; more than {MAX_STATEMENTS} statements in one query string"),
        );
    }
    let unparsed = |fingerprint: String, command: String| StatementInfo {
        classes: ClassSet::of(&Class::ALL),
        tables: vec![],
        fingerprint,
        command,
        forbidden: None,
        note: Some(why.to_string()),
        // Unread, it could be anything: approvers see it whole, and a grant
        // covers only this exact text, never a fingerprint like `do ?`.
        code: true,
        changes_rows: false,
        moves_names: true,
        keeps_cursor: false,
        pending: None,
    };
    let Some(lexed) = lexed else {
        return Analysis {
            statements: vec![unparsed(String::new(), String::new())],
        };
    };
    let statements = lexed
        .toks
        .split(|t| t.kind == Kind::Semicolon)
        .filter(|part| !part.is_empty())
        .map(|part| unparsed(lex::fingerprint(sql, part), command(lexed, part)))
        .collect();
    Analysis { statements }
}
