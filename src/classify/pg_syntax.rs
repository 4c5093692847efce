//! PostgreSQL relation syntax that sqlparser misreads as a *different
//! table*, rewritten away in the copy of the text that sqlparser parses.
//!
//! sqlparser 0.63 does not know PostgreSQL's inheritance markers: in
//! `SELECT * FROM ONLY secrets` it takes `only` for the table and `secrets`
//! for its alias, so a rule on `secrets` would never see it; `FROM secrets *`
//! fails to parse. Neither marker changes what a statement does to which
//! table, so both are blanked out (replaced by spaces, keeping every byte
//! offset) before parsing. The forwarded SQL is never changed.
//!
//! Blanking works on the scanner's tokens, so it can only ever touch an
//! unquoted `ONLY` word or a `*` punctuation token: literals, comments and
//! quoted identifiers are out of its reach.
//!
//! INVARIANT: decided from token kinds and unquoted words only, never from a
//! literal's value, so the cache invariant holds.

use super::scan::{Kind, Token};
use std::borrow::Cow;

/// Tokens after which a relation name (optionally `ONLY`) may follow:
/// `FROM`, `JOIN`, `UPDATE`, `DELETE FROM`, `MERGE INTO … USING`,
/// `DELETE … USING`, `TRUNCATE [TABLE]`, `LOCK [TABLE]`,
/// `ALTER TABLE [IF EXISTS]`, `CREATE INDEX … ON`, `TABLE`, and `,` in a
/// list of relations. `ONLY` is a reserved word in PostgreSQL, so after any
/// of these it cannot be anything but the inheritance marker.
fn introduces_relation(t: &Token<'_>) -> bool {
    const WORDS: &[&str] = &[
        "from", "join", "update", "into", "using", "truncate", "lock", "table", "exists", "on",
    ];
    t.is_punct(b',') || WORDS.iter().any(|w| t.is_word(w))
}

/// Words that may follow `name *` when the `*` is the inheritance marker
/// (and that cannot start the right operand of a multiplication, so that
/// `substring(s FROM pos * 2)` keeps its `*`).
fn ends_relation(t: Option<&Token<'_>>) -> bool {
    const WORDS: &[&str] = &[
        "where",
        "set",
        "as",
        "join",
        "inner",
        "cross",
        "natural",
        "on",
        "using",
        "group",
        "order",
        "limit",
        "offset",
        "fetch",
        "for",
        "window",
        "having",
        "union",
        "intersect",
        "except",
        "returning",
        "in",
        "nowait",
        "restart",
        "continue",
        "cascade",
        "restrict",
        "tablesample",
    ];
    match t {
        None => true,
        Some(t) => t.is_punct(b',') || t.is_punct(b')') || WORDS.iter().any(|w| t.is_word(w)),
    }
}

fn is_name(t: Option<&Token<'_>>) -> bool {
    t.is_some_and(|t| matches!(t.kind, Kind::Word | Kind::QuotedIdent))
}

/// Byte ranges (as `(start, len)`) of `text` to blank before parsing.
fn markers(toks: &[Token<'_>]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        if !introduces_relation(&toks[i]) {
            i += 1;
            continue;
        }
        let mut j = i + 1;
        if toks.get(j).is_some_and(|t| t.is_word("only")) {
            out.push((toks[j].start, toks[j].text.len()));
            j += 1;
            // `ONLY (name)`: the parentheses go too, sqlparser rejects them.
            if let Some(open) = toks.get(j).filter(|t| t.is_punct(b'(')) {
                let mut k = j + 1;
                if is_name(toks.get(k)) {
                    k += 1;
                    while toks.get(k).is_some_and(|t| t.is_punct(b'.')) && is_name(toks.get(k + 1))
                    {
                        k += 2;
                    }
                    if let Some(close) = toks.get(k).filter(|t| t.is_punct(b')')) {
                        out.push((open.start, 1));
                        out.push((close.start, 1));
                    }
                }
                i += 1;
                continue;
            }
        }
        // A possibly qualified name, then `*`?
        if is_name(toks.get(j)) {
            j += 1;
            while toks.get(j).is_some_and(|t| t.is_punct(b'.')) && is_name(toks.get(j + 1)) {
                j += 2;
            }
            if let Some(star) = toks.get(j).filter(|t| t.is_punct(b'*')) {
                if ends_relation(toks.get(j + 1)) {
                    out.push((star.start, 1));
                }
            }
        }
        i += 1;
    }
    out
}

/// The text to give sqlparser for a PostgreSQL statement: `text` itself
/// unless it holds inheritance markers.
pub fn for_parser<'a>(text: &'a str, toks: &[Token<'_>]) -> Cow<'a, str> {
    let blanks = markers(toks);
    if blanks.is_empty() {
        return Cow::Borrowed(text);
    }
    let mut b = text.as_bytes().to_vec();
    for (start, len) in blanks {
        if let Some(r) = b.get_mut(start..start + len) {
            r.fill(b' ');
        }
    }
    // Only ASCII bytes (`ONLY`, `*`) were replaced by ASCII spaces.
    String::from_utf8(b).map_or(Cow::Borrowed(text), Cow::Owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::scan::Scanner;
    use crate::classify::types::Dialect;

    fn rewrite(sql: &str) -> String {
        let toks: Vec<Token<'_>> = Scanner::new(Dialect::Postgres, sql).collect();
        for_parser(sql, &toks).into_owned()
    }

    #[test]
    fn blanks_only_and_star_markers() {
        assert_eq!(
            rewrite("SELECT * FROM ONLY s, ONLY t * JOIN ONLY u ON true"),
            "SELECT * FROM      s,      t   JOIN      u ON true"
        );
        assert_eq!(
            rewrite("UPDATE ONLY s * SET a = 1"),
            "UPDATE      s   SET a = 1"
        );
        assert_eq!(rewrite("DELETE FROM a.b *"), "DELETE FROM a.b  ");
        assert_eq!(rewrite("TABLE ONLY (s.t)"), "TABLE       s.t ");
    }

    #[test]
    fn leaves_everything_else_alone() {
        for sql in [
            "SELECT * FROM t FETCH FIRST 1 ROWS ONLY",
            "SELECT 'FROM ONLY s', \"only\" FROM t",
            "SELECT a, b * c FROM t",
            "SELECT substring(s FROM pos * 2) FROM t",
            "SELECT count(*), t.* FROM t",
            "SELECT * FROM /* ONLY */ t -- FROM ONLY x",
            "SET TRANSACTION READ ONLY",
        ] {
            assert_eq!(rewrite(sql), sql);
        }
    }
}
