//! A held statement's text with its string literals made `NULL`, for the
//! server to describe without running anything of it.
//!
//! A client that prepares a statement sqlgate holds still needs the server's
//! description of it (tokio-postgres, asyncpg and JDBC describe before they
//! bind), and the statement itself must not reach the server before it is
//! approved: PostgreSQL's parse analysis converts each string literal with
//! its target type's input function, and for composites, arrays and ranges
//! over domains that runs the domains' CHECK expressions, which can call
//! any function (`'(1)'::comp` with a domain attribute whose CHECK deletes
//! rows). So the server is given this text instead.
//!
//! Only string literals are replaced: an unknown-type `NULL` is resolved by
//! the same rules as an unknown-type string literal (both are `Const`s of
//! type `unknown`), so the description (parameter types, column names and
//! types) is the statement's own, and a `NULL` is never given to an input
//! function (record, array and range input are strict). Numbers, booleans
//! and bit strings have fixed built-in types whose input runs no user code.
//! Where the grammar wants a string (`comp '(1)'`, the typed-literal form)
//! the literal becomes `CAST(NULL AS comp)`; typed literals of the types
//! the grammar names itself (`interval '1' day`, `timestamp '…'`: built-in
//! input functions, not written `pg_catalog.x`) and `EXTRACT`'s field name
//! are left as they are.
//!
//! Only statements PostgreSQL analyses at Parse are rewritten (its
//! `transformStmt` in `parser/analyze.c`: the others are utility
//! statements, raw-parsed only until they run). The rewritten text is
//! parsed again here and must hold no string literal still to replace, or
//! it is refused: a statement that cannot be made safe is not described.

use pg_query::protobuf::Token as T;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::HashSet;

/// Statement kinds PostgreSQL analyses at Parse (`transformStmt`).
const ANALYSED: &[&str] = &[
    "InsertStmt",
    "DeleteStmt",
    "UpdateStmt",
    "MergeStmt",
    "SelectStmt",
    "ReturnStmt",
    "PlassignStmt",
    "DeclareCursorStmt",
    "ExplainStmt",
    "CreateTableAsStmt",
    "CallStmt",
];

/// `COERCE_SQL_SYNTAX`: a function call written in SQL-standard syntax.
const SQL_SYNTAX: i64 = 4;

struct Edit {
    from: usize,
    to: usize,
    text: String,
}

/// `sql` (one statement, as in a Parse message) with its string literals
/// replaced by `NULL`; borrowed when nothing needed replacing. `Err` when
/// the statement cannot be rewritten safely.
pub fn neutral_text(sql: &str) -> Result<Cow<'_, str>, &'static str> {
    let Some((analysed, changes)) = edits(sql) else {
        // Not what the server rejects too: pg_query's grammar is a newer
        // PostgreSQL's (`system_user` is a keyword there, a name in 15), so
        // the server may read it, literals and all.
        return Err("sqlgate's copy of the grammar cannot read it");
    };
    if !analysed || changes.is_empty() {
        return Ok(Cow::Borrowed(sql));
    }
    let mut out = String::with_capacity(sql.len() + 16 * changes.len());
    let mut at = 0;
    for e in &changes {
        if e.from < at || e.to < e.from || e.to > sql.len() {
            return Err("its literals overlap");
        }
        out.push_str(sql.get(at..e.from).ok_or("its literals overlap")?);
        out.push_str(&e.text);
        at = e.to;
    }
    out.push_str(sql.get(at..).ok_or("its literals overlap")?);
    match edits(&out) {
        Some((_, again)) if again.is_empty() => Ok(Cow::Owned(out)),
        _ => Err("its string literals cannot be set aside"),
    }
}

/// Whether the statement is analysed at Parse, and the replacements, in
/// text order; `None` when it does not parse as one statement.
fn edits(sql: &str) -> Option<(bool, Vec<Edit>)> {
    let parsed = pg_query::parse(sql, 0).ok()?;
    let [raw] = parsed.protobuf.stmts.as_slice() else {
        return None;
    };
    let tree = serde_json::to_value(raw.stmt.as_ref()?).ok()?;
    let ty = super::walk::node_of(&tree)?.0;
    let analysed = ANALYSED.contains(&ty);
    let toks: Vec<(usize, usize, T)> = pg_query::scan_tokens(sql)
        .ok()?
        .into_iter()
        .map(|t| {
            let token = T::try_from(t.token).unwrap_or(T::Nul);
            (t.start.max(0) as usize, t.end.max(0) as usize, token)
        })
        .collect();
    let mut c = Collect {
        sql,
        toks: &toks,
        kept: HashSet::new(),
        edits: Vec::new(),
    };
    c.visit(&tree);
    c.edits.sort_by_key(|e| e.from);
    Some((analysed, c.edits))
}

struct Collect<'a> {
    sql: &'a str,
    toks: &'a [(usize, usize, T)],
    /// Locations of string constants already dealt with, or left on purpose.
    kept: HashSet<i64>,
    edits: Vec<Edit>,
}

impl Collect<'_> {
    fn visit(&mut self, v: &Value) {
        match v {
            Value::Object(m) => {
                if let Some(tc) = m.get("TypeCast") {
                    self.type_cast(tc);
                }
                if let Some(f) = m.get("FuncCall") {
                    self.func_call(f);
                }
                if let Some(c) = m.get("AConst") {
                    if let Some(at) = string_const(c).filter(|at| !self.kept.contains(at)) {
                        if let Some(end) = self.literal_end(at) {
                            self.edits.push(Edit {
                                from: at as usize,
                                to: end,
                                text: "NULL".into(),
                            });
                        }
                    }
                }
                m.values().for_each(|x| self.visit(x));
            }
            Value::Array(a) => a.iter().for_each(|x| self.visit(x)),
            _ => {}
        }
    }

    /// `type 'literal'` (the cast's location is -1): the grammar wants a
    /// string there, so the whole form becomes `CAST(NULL AS type)`.
    fn type_cast(&mut self, tc: &Value) {
        if tc.get("location").and_then(Value::as_i64) != Some(-1) {
            return;
        }
        let Some(at) = tc
            .get("arg")
            .and_then(|a| a.get("node"))
            .and_then(|n| n.get("AConst"))
            .and_then(string_const)
        else {
            return;
        };
        self.kept.insert(at);
        let ty = tc.get("type_name");
        let first = ty
            .and_then(|t| t.get("names"))
            .and_then(Value::as_array)
            .and_then(|n| n.first())
            .and_then(|n| n.pointer("/node/String/sval"))
            .and_then(Value::as_str);
        // Left as written only for the types the grammar itself names
        // (`interval '1' day`, `timestamp '…'`: their input functions are
        // built in); a type a user wrote as `pg_catalog.x` may be a domain
        // a superuser made there.
        const BUILT_IN: &[&str] = &[
            "interval",
            "timestamp",
            "timestamptz",
            "time",
            "timetz",
            "numeric",
            "bit",
            "varbit",
            "bpchar",
            "varchar",
            "int2",
            "int4",
            "int8",
            "float4",
            "float8",
            "bool",
            "json",
        ];
        let second = ty
            .and_then(|t| t.get("names"))
            .and_then(Value::as_array)
            .and_then(|n| n.get(1))
            .and_then(|n| n.pointer("/node/String/sval"))
            .and_then(Value::as_str);
        let spelled = self
            .sql
            .get(
                ty.and_then(|t| t.get("location"))
                    .and_then(Value::as_i64)
                    .unwrap_or(0)
                    .max(0) as usize..,
            )
            .unwrap_or("")
            .trim_start()
            .to_ascii_lowercase();
        if first == Some("pg_catalog")
            && second.is_some_and(|n| BUILT_IN.contains(&n))
            && !spelled.starts_with("pg_catalog")
        {
            return;
        }
        let from = ty.and_then(|t| t.get("location")).and_then(Value::as_i64);
        let (Some(from), Some(end)) = (from, self.literal_end(at)) else {
            return;
        };
        let Some(name) = self.sql.get(from.max(0) as usize..at as usize) else {
            return;
        };
        self.edits.push(Edit {
            from: from as usize,
            to: end,
            text: format!("CAST(NULL AS {})", name.trim_end()),
        });
    }

    /// `EXTRACT('field' FROM …)`: the field name stays (a string is the only
    /// thing the grammar takes there; `extract(text, …)` reads it as text).
    fn func_call(&mut self, f: &Value) {
        if f.get("funcformat").and_then(Value::as_i64) != Some(SQL_SYNTAX) {
            return;
        }
        let names: Vec<&str> = f
            .get("funcname")
            .and_then(Value::as_array)
            .map(|n| {
                n.iter()
                    .filter_map(|x| x.pointer("/node/String/sval").and_then(Value::as_str))
                    .collect()
            })
            .unwrap_or_default();
        if names != ["pg_catalog", "extract"] {
            return;
        }
        let first = f
            .get("args")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(|a| a.pointer("/node/AConst"))
            .and_then(string_const);
        if let Some(at) = first {
            self.kept.insert(at);
        }
    }

    /// Where the string literal token starting at `at` ends (with its
    /// `UESCAPE` clause); `None` when no string literal starts there (a
    /// constant the grammar made from a keyword or identifier).
    fn literal_end(&self, at: i64) -> Option<usize> {
        let i = self.toks.iter().position(|t| t.0 as i64 == at)?;
        let (_, end, kind) = self.toks[i];
        match kind {
            T::Sconst => Some(end),
            T::Usconst => match self.toks.get(i + 1..i + 3) {
                Some([(_, _, T::Uescape), (_, e, T::Sconst)]) => Some(*e),
                _ => Some(end),
            },
            _ => None,
        }
    }
}

/// The location of a string `A_Const`.
fn string_const(c: &Value) -> Option<i64> {
    c.pointer("/val/Sval")?;
    c.get("location")
        .and_then(Value::as_i64)
        .filter(|&l| l >= 0)
}

#[cfg(test)]
mod tests {
    use super::neutral_text;

    fn n(sql: &str) -> String {
        neutral_text(sql).expect(sql).into_owned()
    }

    #[test]
    fn string_literals_become_null() {
        assert_eq!(
            n("SELECT '(1)'::comp, f('a', E'b\\'', $$c$$), 1, 2.5, B'01'"),
            "SELECT NULL::comp, f(NULL, NULL, NULL), 1, 2.5, B'01'"
        );
        assert_eq!(
            n("INSERT INTO t VALUES ('x', U&'d\\0061' UESCAPE '\\')"),
            "INSERT INTO t VALUES (NULL, NULL)"
        );
        assert_eq!(
            n("DELETE FROM t WHERE a IN ('x', 'y') AND b = $1"),
            "DELETE FROM t WHERE a IN (NULL, NULL) AND b = $1"
        );
    }

    #[test]
    fn typed_literals_become_casts_unless_built_in() {
        assert_eq!(
            n("SELECT comp '(1)', public.dom(3) 'x', date '2020-01-01'"),
            "SELECT CAST(NULL AS comp), CAST(NULL AS public.dom(3)), CAST(NULL AS date)"
        );
        let kept = "SELECT interval '1' day, timestamp '2020-01-01', EXTRACT('year' FROM now())";
        assert_eq!(n(kept), kept);
    }

    #[test]
    fn utility_statements_and_plain_text_are_kept() {
        for sql in [
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'select 1'",
            "COPY t TO PROGRAM 'true'",
            "SELECT a FROM t WHERE b = $1",
        ] {
            assert!(
                matches!(neutral_text(sql), Ok(std::borrow::Cow::Borrowed(_))),
                "{sql}"
            );
        }
    }

    #[test]
    fn nested_statements_are_rewritten_too() {
        assert_eq!(
            n("SELECT pg_catalog._evil_dom '{1}'"),
            "SELECT CAST(NULL AS pg_catalog._evil_dom)"
        );
        assert_eq!(
            n("EXPLAIN SELECT * FROM t WHERE c = '(1)'::comp"),
            "EXPLAIN SELECT * FROM t WHERE c = NULL::comp"
        );
        assert_eq!(
            n("WITH d AS (DELETE FROM t WHERE c = 'x' RETURNING 1) SELECT 'y' FROM d"),
            "WITH d AS (DELETE FROM t WHERE c = NULL RETURNING 1) SELECT NULL FROM d"
        );
        assert_eq!(n("CALL p('x')"), "CALL p(NULL)");
    }
}
