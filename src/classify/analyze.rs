//! One statement, start to finish: scanner tokens, sqlparser (or the
//! keyword fallback), then the token scans that always run.

use super::scan::{Kind, Scanner, Token};
use super::split::Span;
use super::types::{Class, ClassSet, Dialect, StatementInfo};
use super::{forbidden, pg_syntax, rules, tree};
use sqlparser::dialect::{MySqlDialect, PostgreSqlDialect};
use sqlparser::parser::Parser;

/// Analyse the statement `span` of `sql`; `fp` is the joined fingerprint.
pub fn statement(
    dialect: Dialect,
    sql: &str,
    fp: &str,
    span: &Span,
    max_parse_bytes: usize,
) -> StatementInfo {
    let text = sql.get(span.text.clone()).unwrap_or("");
    let toks: Vec<Token<'_>> = Scanner::new(dialect, text).collect();
    let mut info = StatementInfo {
        classes: ClassSet::EMPTY,
        tables: Vec::new(),
        fingerprint: fp.get(span.fingerprint.clone()).unwrap_or("").to_string(),
        command: rules::command(&toks),
        forbidden: None,
        note: None,
        code: false,
        changes_rows: false,
        pending: None,
        moves_names: false,
        keeps_cursor: false,
    };
    // MySQL's `USE` changes what an unqualified name means.
    info.moves_names = info.command == "USE";

    if let Some(u) = span.unterminated {
        unparsed(&mut info, u.note().to_string());
    } else if span.exec_comment {
        // Its content is code the parser would skip as a comment.
        fall_back(dialect, &toks, &mut info, "MySQL executable comment".into());
        info.classes.insert(Class::Unparsed);
    } else if text.len() > max_parse_bytes {
        // Unread, it could be anything (a padded `SELECT … INTO OUTFILE`
        // its leading keywords don't show): every class, as on PostgreSQL.
        info.classes = ClassSet::of(&Class::ALL);
        info.note = Some(format!(
            "not parsed: statement of {} bytes is longer than max_parse_bytes",
            text.len()
        ));
    } else if toks.first().is_some_and(|t| t.is_word("do")) {
        // Procedural code we cannot see into: never trust a parse of it.
        fall_back(dialect, &toks, &mut info, "DO block".into());
    } else {
        let for_parser = match dialect {
            Dialect::Postgres => pg_syntax::for_parser(text, &toks),
            Dialect::Mysql => text.into(),
        };
        match parse(dialect, &for_parser) {
            Ok(out) => {
                info.classes = out.classes;
                info.tables = out.tables;
                info.note = out.note;
            }
            Err(e) => fall_back(dialect, &toks, &mut info, e),
        }
    }

    info.classes = info.classes.union(rules::scan_calls(&toks));
    let (extra, calls_forbidden) = forbidden::check_calls(dialect, &toks);
    info.classes = info.classes.union(extra);
    info.forbidden = forbidden::check_set(dialect, &toks).or(calls_forbidden);
    if info.classes.is_empty() {
        unparsed(&mut info, "no class could be determined".into());
    }
    info
}

fn unparsed(info: &mut StatementInfo, note: String) {
    info.classes.insert(Class::Unparsed);
    info.note.get_or_insert(note);
}

fn fall_back(dialect: Dialect, toks: &[Token<'_>], info: &mut StatementInfo, why: String) {
    match rules::fallback(dialect, toks) {
        Some(c) => {
            info.classes = info.classes.union(c);
            info.note = Some(format!(
                "not parsed ({why}); classified by its leading keywords"
            ));
        }
        None => unparsed(info, format!("not parsed: {why}")),
    }
    if toks.iter().any(|t| matches!(t.kind, Kind::Unterminated(_))) {
        info.classes.insert(Class::Unparsed);
    }
}

/// Parse with sqlparser. The error text is cut before sqlparser quotes the
/// offending token, which could be a literal: notes must stay loggable.
fn parse(dialect: Dialect, text: &str) -> Result<tree::Reading, String> {
    let parsed = match dialect {
        Dialect::Postgres => Parser::parse_sql(&PostgreSqlDialect {}, text),
        Dialect::Mysql => Parser::parse_sql(&MySqlDialect {}, text),
    };
    match parsed {
        Ok(stmts) if stmts.len() == 1 => Ok(tree::classify(&stmts[0])),
        Ok(stmts) => Err(format!(
            "parser saw {} statements where the scanner saw one",
            stmts.len()
        )),
        Err(e) => {
            let msg = e.to_string();
            let cut = msg
                .find(", found")
                .or_else(|| msg.find(['\'', '"', '`', '$']));
            let mut short: String = msg[..cut.unwrap_or(msg.len())].chars().take(120).collect();
            short = short.trim_start_matches("sql parser error: ").to_string();
            Err(short)
        }
    }
}
