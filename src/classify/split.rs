//! Splitting a query string into top-level statements and building the
//! literal-free fingerprint — in the same single pass, because the
//! fingerprint is the cache key and must be computed on every call.
//!
//! Fingerprint rules: literals become `?`; comments are dropped; any run of
//! white space and comments becomes one space (none where the source had
//! none, so `a.b` stays `a.b`); unquoted words are lower-cased; quoted
//! identifiers and parameters (`$1`) are kept verbatim; statements are joined
//! with `; `.
//!
//! INVARIANT: no byte of a literal (or of an unterminated quote or comment)
//! is ever copied into a fingerprint.

use super::scan::{Kind, Scanner, Token, Unterminated};
use super::types::Dialect;
use std::ops::Range;

/// One top-level statement as found by the scanner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// Byte range of the statement's source text (no trailing `;`).
    pub text: Range<usize>,
    /// Byte range of its fingerprint inside the joined fingerprint.
    pub fingerprint: Range<usize>,
    pub unterminated: Option<Unterminated>,
    /// MySQL `/*! … */` present: its content is code the parser would skip.
    pub exec_comment: bool,
    /// False when the classification of this statement may depend on a
    /// literal's value (see `Classifier`'s cache invariant).
    pub cacheable: bool,
}

/// Words that put a statement's classification at the mercy of literal
/// values: `SET x = '…'` (forbidden settings) and `set_config('role', …)`.
fn value_sensitive(first_word: bool, t: &Token<'_>) -> bool {
    (first_word && t.is_word("set")) || t.is_word("set_config")
}

/// Scan `sql`, appending the whole fingerprint to `fp` and calling `each`
/// once per non-empty statement.
pub fn scan(dialect: Dialect, sql: &str, fp: &mut String, mut each: impl FnMut(Span)) {
    let mut cur: Option<Span> = None;
    let mut last_end = 0usize;
    for t in Scanner::new(dialect, sql) {
        if t.kind == Kind::Semicolon {
            if let Some(mut s) = cur.take() {
                s.text.end = last_end;
                s.fingerprint.end = fp.len();
                each(s);
            }
            continue;
        }
        let first = cur.is_none();
        let span = cur.get_or_insert_with(|| {
            if !fp.is_empty() {
                fp.push_str("; ");
            }
            Span {
                text: t.start..t.start,
                fingerprint: fp.len()..fp.len(),
                unterminated: None,
                exec_comment: false,
                cacheable: true,
            }
        });
        if value_sensitive(first, &t) {
            span.cacheable = false;
        }
        match t.kind {
            Kind::Unterminated(u) => {
                span.unterminated = Some(u);
                span.cacheable = false;
            }
            Kind::ExecComment => span.exec_comment = true,
            _ => {}
        }
        push_token(fp, &t, first);
        last_end = t.start + t.text.len();
    }
    if let Some(mut s) = cur {
        s.text.end = last_end;
        s.fingerprint.end = fp.len();
        each(s);
    }
}

fn push_token(fp: &mut String, t: &Token<'_>, first: bool) {
    if t.spaced && !first {
        fp.push(' ');
    }
    match t.kind {
        Kind::Word => {
            let at = fp.len();
            fp.push_str(t.text);
            if let Some(w) = fp.get_mut(at..) {
                w.make_ascii_lowercase();
            }
        }
        Kind::QuotedIdent | Kind::Param | Kind::Punct => fp.push_str(t.text),
        Kind::ExecComment => fp.push_str(if t.text.starts_with('*') { "*/" } else { "/*!" }),
        Kind::Str | Kind::Number | Kind::Unterminated(_) => fp.push('?'),
        Kind::Semicolon => fp.push(';'),
    }
}

/// The fingerprint of a whole query string, and whether its classification
/// may be cached. One pass, one allocation.
pub fn key(dialect: Dialect, sql: &str) -> (String, bool) {
    let mut fp = String::with_capacity(sql.len() + 4);
    let mut cacheable = true;
    scan(dialect, sql, &mut fp, |s| cacheable &= s.cacheable);
    (fp, cacheable)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spans(d: Dialect, sql: &str) -> (String, Vec<String>) {
        let mut fp = String::new();
        let mut v = Vec::new();
        scan(d, sql, &mut fp, |s| v.push(sql[s.text].to_string()));
        (fp, v)
    }

    #[test]
    fn splits_at_top_level_only() {
        let (_, v) = spans(
            Dialect::Postgres,
            "SELECT 'a;b'; SELECT $$;$$ ;; /* ; */ SELECT \"x;\" -- ;\n",
        );
        assert_eq!(v, ["SELECT 'a;b'", "SELECT $$;$$", "SELECT \"x;\""]);
    }

    #[test]
    fn fingerprint_shape() {
        let (fp, _) = spans(
            Dialect::Postgres,
            "SELECT  a.b, \"Mixed\"  FROM T /* c */ WHERE x = 'secret' AND y=42 AND z = $1;\n select 1",
        );
        assert_eq!(
            fp,
            "select a.b, \"Mixed\" from t where x = ? and y=? and z = $1; select ?"
        );
    }

    #[test]
    fn comment_only_has_no_statements() {
        let (fp, v) = spans(Dialect::Postgres, " -- x\n /* y */ ; ");
        assert!(fp.is_empty() && v.is_empty());
    }

    #[test]
    fn fingerprints_never_hold_literals() {
        let secret = "s3cr3t";
        for sql in [
            format!("SELECT '{secret}'"),
            format!("SELECT E'\\'{secret}'"),
            format!("SELECT $q${secret}$q$"),
            format!("SELECT U&'{secret}'"),
            format!("SELECT X'{secret}'"),
            format!("SELECT '{secret}"),
            format!("SELECT /* {secret}"),
            format!("SELECT \"{secret}"),
            format!("SELECT $${secret}"),
        ] {
            let (fp, _) = key(Dialect::Postgres, &sql);
            assert!(!fp.contains(secret), "{sql} -> {fp}");
        }
        for sql in [
            format!("SELECT \"{secret}\""),
            format!("SELECT 'a\\'{secret}'"),
            format!("SELECT x'{secret}'"),
            format!("SELECT '{secret}"),
        ] {
            let (fp, _) = key(Dialect::Mysql, &sql);
            assert!(!fp.contains(secret), "{sql} -> {fp}");
        }
    }

    #[test]
    fn value_sensitive_statements_are_not_cacheable() {
        assert!(key(Dialect::Postgres, "SELECT 1").1);
        assert!(!key(Dialect::Postgres, "set client_encoding = 'x'").1);
        assert!(!key(Dialect::Postgres, "SELECT set_config('role', 'x', false)").1);
        assert!(!key(Dialect::Postgres, "SELECT 'abc").1);
        assert!(key(Dialect::Postgres, "UPDATE t SET a = 1").1);
    }
}
