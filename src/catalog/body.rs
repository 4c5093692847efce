//! What calling a user-defined function does, from its body.
//!
//! - `LANGUAGE sql`: the body (`prosrc`) is SQL, classified like any query
//!   string. A SQL-standard body (`BEGIN ATOMIC …`, stored pre-parsed) is
//!   `unparsed`.
//! - `LANGUAGE plpgsql`: the function's definition is read by PL/pgSQL's
//!   own parser (`pg_query::parse_plpgsql`), and every SQL statement and
//!   expression in it (`PLpgSQL_expr`) is classified in the parse mode
//!   PL/pgSQL uses for it. Dynamic SQL (`EXECUTE`, `FOR … IN EXECUTE`,
//!   `OPEN … FOR EXECUTE`) cannot be seen: `unparsed`.
//! - Any other language: `unparsed`.
//!
//! The classes are what the body's statements would be if the agent sent
//! them itself, plus the tables they touch, so table rules apply through a
//! function call too. Calls to other user functions are left for
//! `Snapshot::build` to resolve.

use crate::classify::{Analysis, Class, ClassSet, Classifier};
use serde_json::Value;
use std::collections::BTreeSet;

/// A body's own classes, tables, and the user functions it calls.
#[derive(Debug, Default, Clone)]
pub struct Placed {
    pub classes: ClassSet,
    pub tables: BTreeSet<String>,
    pub calls: BTreeSet<String>,
    /// Names a user object may stand behind, looked up but not required:
    /// operators (`operator ===`), casts (`type t`) and user overloads of
    /// built-ins called by name (`lower`).
    pub optional: BTreeSet<String>,
}

impl Placed {
    fn unparsed() -> Placed {
        Placed {
            classes: ClassSet::of(&[Class::Unparsed]),
            ..Placed::default()
        }
    }

    fn absorb(&mut self, a: &Analysis) {
        for s in &a.statements {
            match &s.pending {
                Some(p) => {
                    self.classes = self.classes.union(p.base);
                    self.calls.extend(p.functions.iter().cloned());
                    self.optional.extend(p.builtins.iter().cloned());
                }
                None => self.classes = self.classes.union(s.classes),
            }
            if s.forbidden.is_some() {
                // It would change how sqlgate reads SQL, behind its back.
                self.classes = self
                    .classes
                    .union(ClassSet::of(&[Class::Unparsed, Class::Privilege]));
            }
            if s.changes_rows {
                // No tag counts the rows a function changes: the row
                // guard can't see them (as for a data-modifying CTE).
                self.classes.insert(Class::Destructive);
            }
            if matches!(s.command.as_str(), "FETCH" | "MOVE") {
                // A SQL body's FETCH or MOVE reads a cursor by name: one
                // opened elsewhere, perhaps before the schema changed.
                self.classes.insert(Class::Unparsed);
            }
            self.tables.extend(s.tables.iter().cloned());
        }
    }
}

/// Bodies larger than this are not analysed (`unparsed`).
pub const MAX_BODY: usize = 256 * 1024;

pub fn place(c: &Classifier, language: &str, src: &str, definition: Option<&str>) -> Placed {
    match language {
        // Through the cache: the catalog places every body at each reload.
        "sql" if !src.trim().is_empty() && src.len() <= MAX_BODY => {
            let mut p = Placed::default();
            p.absorb(&c.classify(src));
            p
        }
        _ => place_with(&|q, m| c.classify_embedded(q, m), language, src, definition),
    }
}

/// SQL embedded in a body, in a pg_query parse mode: how [`place_with`]
/// reads a body's statements and expressions.
pub type Embedded<'a> = &'a dyn Fn(&str, i32) -> Option<Analysis>;

/// [`place`] with the classifier given as a function, for the classifier
/// itself (`CREATE FUNCTION` shows what its body will do).
pub fn place_with(c: Embedded<'_>, language: &str, src: &str, definition: Option<&str>) -> Placed {
    match language {
        "sql" if !src.trim().is_empty() && src.len() <= MAX_BODY => match c(src, 0) {
            Some(a) => {
                let mut p = Placed::default();
                p.absorb(&a);
                p
            }
            None => Placed::unparsed(),
        },
        "plpgsql" => match definition.filter(|d| d.len() <= MAX_BODY) {
            Some(d) => plpgsql(c, d, src),
            None => Placed::unparsed(),
        },
        _ => Placed::unparsed(),
    }
}

fn plpgsql(c: Embedded<'_>, definition: &str, src: &str) -> Placed {
    // Only the malformed output is read again; a definition PL/pgSQL
    // rejects stays unparsed.
    let tree = match pg_query::parse_plpgsql(definition) {
        Ok(t) => Some(t),
        Err(pg_query::Error::InvalidJson(_)) => trigger_body(src),
        Err(_) => None,
    };
    let Some(tree) = tree else {
        return Placed::unparsed();
    };
    let mut p = Placed::default();
    walk(c, &tree, &mut p);
    if !fetches_own_cursors(&tree) {
        // FETCH or MOVE from a cursor the body may not have opened: one
        // opened elsewhere, perhaps long ago, by a name given to it (a
        // refcursor variable set from a text argument): unplaceable.
        p.classes.insert(Class::Unparsed);
    }
    let (initialised, types) = record_declarations(&tree, src);
    if initialised {
        p.classes.insert(Class::Unparsed);
    }
    p.optional
        .extend(types.into_iter().map(|t| format!("type {t}")));
    p
}

/// Whether every FETCH and MOVE of a PL/pgSQL body reads a cursor the body
/// itself opened before. A cursor variable names a portal: one given a
/// name (a default, an assignment, an INTO) or never opened may name a
/// portal opened elsewhere, long ago, on definitions since replaced. So
/// each fetched variable must be a local one with no default, never
/// assigned, whose first mention in the function's outer block is its
/// OPEN (or a FOR over it) at that block's top level, not inside a branch
/// or loop that may skip it; and not mentioned in that block's exception
/// handlers (an OPEN that failed because the name was in use lands there).
/// Opening a name already in use fails, so after that OPEN the name is
/// this body's own portal.
fn fetches_own_cursors(tree: &Value) -> bool {
    fn walk<'a>(v: &'a Value, f: &mut impl FnMut(&'a str, &'a Value)) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    f(k, x);
                    walk(x, f);
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, f)),
            _ => {}
        }
    }
    /// Whether `v` mentions datum `dno` as a cursor or a target.
    fn mentions(v: &Value, dno: u64) -> bool {
        let mut found = false;
        walk(v, &mut |k, x| {
            if matches!(k, "curvar" | "varno" | "dno") && x.as_u64() == Some(dno) {
                found = true;
            }
        });
        found
    }
    let mut fetched = Vec::new();
    walk(tree, &mut |k, x| {
        if k == "PLpgSQL_stmt_fetch" {
            fetched.push(x.get("curvar").and_then(Value::as_u64));
        }
    });
    if fetched.is_empty() {
        return true;
    }
    let Some(f) = tree.get(0).and_then(|t| t.get("PLpgSQL_function")) else {
        return false;
    };
    let Some(block) = f.get("action").and_then(|a| a.get("PLpgSQL_stmt_block")) else {
        return false;
    };
    let body = block.get("body").and_then(Value::as_array);
    let datums = f.get("datums").and_then(Value::as_array);
    let (Some(body), Some(datums)) = (body, datums) else {
        return false;
    };
    fetched.into_iter().all(|dno| {
        let Some(dno) = dno else { return false };
        let Some(var) = datums.get(dno as usize).and_then(|d| d.get("PLpgSQL_var")) else {
            return false;
        };
        // Declared here (parameters carry no line), with no default.
        if var.get("lineno").is_none() || var.get("default_val").is_some() {
            return false;
        }
        if block.get("exceptions").is_some_and(|e| mentions(e, dno)) {
            return false;
        }
        let Some(first) = body.iter().find(|st| mentions(st, dno)) else {
            return false;
        };
        let opens = ["PLpgSQL_stmt_open", "PLpgSQL_stmt_forc"].iter().any(|k| {
            first
                .get(*k)
                .and_then(|o| o.get("curvar"))
                .and_then(Value::as_u64)
                == Some(dno)
        });
        // Never given a name: no assignment or INTO anywhere targets it.
        let mut assigned = false;
        walk(&f["action"], &mut |k, x| {
            if matches!(k, "varno" | "dno") && x.as_u64() == Some(dno) {
                assigned = true;
            }
        });
        opens && !assigned
    })
}

/// Whether a record or row variable is declared with an initial value (and
/// the types they are declared with):
/// pg_query's PL/pgSQL output leaves that expression out (it writes only
/// a record variable's name), yet PL/pgSQL runs it on every call, so the
/// body is not all there to read. Read from the source, erring towards
/// yes: the variable's name at the start of a declaration, then a type and
/// `:=`, `=` or `DEFAULT` before the next `;`, in PostgreSQL's tokens.
fn record_declarations(tree: &Value, src: &str) -> (bool, Vec<String>) {
    fn recs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                if let Some(r) = m.get("PLpgSQL_rec") {
                    if let Some(n) = r.get("refname").and_then(Value::as_str) {
                        out.push(n);
                    }
                }
                m.values().for_each(|x| recs(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| recs(x, out)),
            _ => {}
        }
    }
    let mut names = Vec::new();
    recs(tree, &mut names);
    if names.is_empty() {
        return (false, Vec::new());
    }
    // PostgreSQL's own scanner: comments, quoting and line breaks are what
    // PL/pgSQL sees (a text search is fooled by `r/**/secrets := …`).
    // (pg_query 18.1's scanner must not be given a string with no token:
    // see `classify::pg::lex`.)
    let blank = src
        .bytes()
        .all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c));
    let Some(toks) = (!blank).then(|| pg_query::scan_tokens(src).ok()).flatten() else {
        return (true, Vec::new());
    };
    use pg_query::protobuf::Token as T;
    let toks: Vec<(T, String)> = toks
        .into_iter()
        .filter_map(|t| {
            let kind = T::try_from(t.token).unwrap_or(T::Nul);
            if matches!(kind, T::SqlComment | T::CComment) {
                return None;
            }
            let text = src.get(t.start.max(0) as usize..t.end.max(0) as usize)?;
            Some((kind, text.trim_matches('"').to_ascii_lowercase()))
        })
        .collect();
    let wanted: Vec<String> = names.iter().map(|n| n.to_ascii_lowercase()).collect();
    let mut initialised = false;
    let mut types = Vec::new();
    for i in 0..toks.len() {
        let starts = i == 0 || matches!(toks[i - 1].1.as_str(), ";" | "declare");
        if !starts || !wanted.contains(&toks[i].1) {
            continue;
        }
        let Some((_, ty)) = toks.get(i + 1) else {
            continue;
        };
        if matches!(ty.as_str(), ":=" | "=" | ";" | "." | "alias") {
            continue;
        }
        if !matches!(ty.as_str(), "record" | "constant") {
            types.push(ty.rsplit('.').next().unwrap_or(ty).to_string());
        }
        let decl = toks[i + 1..].iter().take_while(|(_, t)| t != ";");
        for (kind, t) in decl {
            if *kind == T::ColonEquals || t == "=" || t == "default" || t == ":=" {
                initialised = true;
            }
        }
    }
    (initialised, types)
}

/// A trigger or event trigger function's body, read as the body of a plain
/// function that declares the variables PL/pgSQL gives triggers.
///
/// Written here because pg_query 18.1's PL/pgSQL output is not valid JSON
/// for trigger functions (libpg_query issue 337, fix pending in pull
/// request 355): without this every table with a PL/pgSQL trigger would be
/// `unparsed` to write. The body is kept verbatim as the one statement of
/// an outer block (a block is a statement), so its statements and
/// expressions are the same, in the same parse modes; a body holding the
/// wrapper's dollar-quote tag is not read.
fn trigger_body(src: &str) -> Option<Value> {
    const TAG: &str = "$sqlgate_trigger_body$";
    if src.trim().is_empty() || src.contains(TAG) || src.len() > MAX_BODY {
        return None;
    }
    let vars = "new record; old record; tg_name name; tg_when text; tg_level text; \
        tg_op text; tg_relid oid; tg_relname name; tg_table_name name; \
        tg_table_schema name; tg_nargs int; tg_argv text[]; tg_event text; tg_tag text;";
    let trimmed = src.trim_end().trim_end_matches(';');
    // A trigger returns a row (or NULL); an event trigger returns nothing.
    // The inner block needs its `;`, unless a comment after it hides one.
    for ret in ["record", "void"] {
        for body in [format!("{trimmed}\n;"), format!("{src}\n")] {
            let def = format!(
                "CREATE FUNCTION sqlgate_trigger_body() RETURNS {ret} LANGUAGE plpgsql AS {TAG} DECLARE {vars} BEGIN\n{body} END {TAG}"
            );
            if let Ok(tree) = pg_query::parse_plpgsql(&def) {
                return Some(tree);
            }
        }
    }
    None
}

fn walk(c: Embedded<'_>, v: &Value, p: &mut Placed) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match k.as_str() {
                    "PLpgSQL_expr" => expr(c, x, p),
                    "PLpgSQL_stmt_dynexecute" | "PLpgSQL_stmt_dynfors" => {
                        p.classes.insert(Class::Unparsed);
                        walk(c, x, p);
                    }
                    "dynquery" if !x.is_null() => {
                        p.classes.insert(Class::Unparsed);
                        walk(c, x, p);
                    }
                    "PLpgSQL_stmt_commit" | "PLpgSQL_stmt_rollback" => {
                        p.classes.insert(Class::Transaction);
                    }
                    "PLpgSQL_type" => {
                        // A variable of a type with code behind it (a
                        // domain's CHECK) runs it on every assignment: the
                        // catalog places it, as it places a cast to it.
                        if let Some(t) = x.get("typname").and_then(Value::as_str) {
                            let last = t.rsplit('.').next().unwrap_or(t).trim_matches('"');
                            if !last.is_empty() {
                                p.optional.insert(format!("type {last}"));
                            }
                        }
                        walk(c, x, p);
                    }
                    _ => walk(c, x, p),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| walk(c, x, p)),
        _ => {}
    }
}

fn expr(c: Embedded<'_>, e: &Value, p: &mut Placed) {
    let query = e.get("query").and_then(Value::as_str).unwrap_or("");
    let mode = e.get("parseMode").and_then(Value::as_i64).unwrap_or(0) as i32;
    match c(query, mode) {
        Some(a) => p.absorb(&a),
        None => {
            p.classes.insert(Class::Unparsed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::{ClassifierOptions, Dialect};

    fn c() -> Classifier {
        Classifier::new(Dialect::Postgres, ClassifierOptions::default())
    }

    fn def(body: &str) -> String {
        format!("CREATE OR REPLACE FUNCTION public.f(a int) RETURNS int LANGUAGE plpgsql AS $function${body}$function$")
    }

    #[test]
    fn sql_bodies_are_classified_as_queries() {
        let p = place(&c(), "sql", "DELETE FROM t; SELECT v FROM secrets", None);
        assert!(p.classes.contains(Class::Destructive) && p.classes.contains(Class::Read));
        assert!(p.tables.contains("secrets"));
        let p = place(&c(), "sql", "SELECT other_fn(1)", None);
        assert!(p.calls.contains("other_fn"));
        assert_eq!(
            place(&c(), "c", "x", None).classes,
            ClassSet::of(&[Class::Unparsed])
        );
        assert_eq!(
            place(&c(), "sql", "", None).classes,
            ClassSet::of(&[Class::Unparsed])
        );
    }

    #[test]
    fn plpgsql_statements_and_expressions_are_classified() {
        let body = "DECLARE x int := a + 1; r record;
            BEGIN x := x * 2; DELETE FROM t WHERE id = x; PERFORM pg_sleep(0);
            FOR r IN SELECT * FROM secrets LOOP RAISE NOTICE '%', r; END LOOP;
            IF x > 1 THEN RETURN (SELECT count(*) FROM u); END IF; RETURN 0; END";
        let p = place(&c(), "plpgsql", body, Some(&def(body)));
        assert!(p.classes.contains(Class::Write), "{p:?}");
        assert!(!p.classes.contains(Class::Unparsed), "{p:?}");
        assert!(p.tables.contains("secrets") && p.tables.contains("u") && p.tables.contains("t"));
        let d = def("BEGIN RETURN (SELECT pg_read_file('/etc/passwd'))::int; END");
        assert!(place(&c(), "plpgsql", "", Some(&d))
            .classes
            .contains(Class::ServerAccess));
    }

    #[test]
    fn trigger_bodies_are_read() {
        let c = Classifier::new(Dialect::Postgres, ClassifierOptions::default());
        for (ret, src) in [
            (
                "trigger",
                "BEGIN NEW.x := 1; DELETE FROM audit_me; RETURN NEW; END;",
            ),
            (
                "trigger",
                "<<b>> BEGIN DELETE FROM audit_me; RETURN NULL; END b",
            ),
            ("event_trigger", "BEGIN DELETE FROM audit_me; END; -- done"),
        ] {
            let def = format!("CREATE FUNCTION t() RETURNS {ret} LANGUAGE plpgsql AS $$ {src} $$");
            let p = place(&c, "plpgsql", src, Some(&def));
            assert!(p.classes.contains(Class::Destructive), "{src}: {p:?}");
            assert!(!p.classes.contains(Class::Unparsed), "{src}: {p:?}");
            assert!(p.tables.contains("audit_me"), "{src}: {p:?}");
        }
        let harmless = "BEGIN NEW.updated_at := now(); RETURN NEW; END";
        let def =
            format!("CREATE FUNCTION t() RETURNS trigger LANGUAGE plpgsql AS $$ {harmless} $$");
        let p = place(&c, "plpgsql", harmless, Some(&def));
        assert!(!p.classes.contains(Class::Unparsed), "{p:?}");
    }

    #[test]
    fn record_initialisers_are_not_skipped() {
        let c = Classifier::new(Dialect::Postgres, ClassifierOptions::default());
        for (src, unparsed) in [
            ("DECLARE r secrets := (SELECT s FROM secrets s LIMIT 1); BEGIN RETURN r.v; END", true),
            ("DECLARE n int; snap accounts DEFAULT purge_row(); BEGIN RETURN 1; END", true),
            ("DECLARE r record; BEGIN FOR r IN SELECT 1 AS x LOOP END LOOP; r := NULL; RETURN 1; END", false),
            ("DECLARE /* c */ r secrets := (SELECT s FROM secrets s); BEGIN RETURN 1; END", true),
            ("DECLARE n int; -- x\n r secrets := (SELECT s FROM secrets s); BEGIN RETURN 1; END", true),
            ("DECLARE r/**/secrets := (SELECT s FROM secrets s); BEGIN RETURN 1; END", true),
            ("DECLARE old secrets := (SELECT s FROM secrets s); BEGIN RETURN 1; END", true),
            ("BEGIN DECLARE new accounts := purge_row(); BEGIN NULL; END; RETURN 1; END", true),
        ] {
            assert_unparsed(&c, "", src, unparsed);
        }
    }

    /// Places `src` as the body of `f(args)` and checks whether it is unparsed.
    fn assert_unparsed(c: &Classifier, args: &str, src: &str, unparsed: bool) {
        let def = format!("CREATE FUNCTION f({args}) RETURNS int LANGUAGE plpgsql AS $$ {src} $$");
        let p = place(c, "plpgsql", src, Some(&def));
        assert_eq!(
            p.classes.contains(Class::Unparsed),
            unparsed,
            "{src}: {p:?}"
        );
    }

    #[test]
    fn fetching_a_cursor_opened_elsewhere_is_unparsed() {
        let c = Classifier::new(Dialect::Postgres, ClassifierOptions::default());
        for (src, unparsed) in [
            ("DECLARE c refcursor := n; r record; BEGIN FETCH c INTO r; RETURN 1; END", true),
            ("DECLARE c CURSOR FOR SELECT 1; r record; BEGIN OPEN c; FETCH c INTO r; RETURN 1; END", false),
            ("DECLARE c refcursor; r record; BEGIN OPEN c FOR SELECT 1; LOOP FETCH c INTO r; EXIT WHEN NOT FOUND; END LOOP; MOVE c; CLOSE c; RETURN 1; END", false),
            ("DECLARE c CURSOR FOR SELECT 1; r record; BEGIN FOR x IN c LOOP FETCH c INTO r; END LOOP; RETURN 1; END", false),
            // Round 9: any OPEN of another cursor used to do.
            ("DECLARE d CURSOR FOR SELECT 1; c refcursor := n; r record; BEGIN OPEN d; CLOSE d; FETCH c INTO r; RETURN 1; END", true),
            // Named after its OPEN, or before it.
            ("DECLARE c refcursor; r record; BEGIN OPEN c FOR SELECT 1; c := n; FETCH c INTO r; RETURN 1; END", true),
            ("DECLARE c refcursor; r record; BEGIN SELECT n INTO c; OPEN c FOR SELECT 1; FETCH c INTO r; RETURN 1; END", true),
            // An OPEN that may be skipped, or whose failure is caught.
            ("DECLARE c CURSOR FOR SELECT 1; r record; BEGIN IF n = 'x' THEN OPEN c; END IF; FETCH c INTO r; RETURN 1; END", true),
            ("DECLARE c CURSOR FOR SELECT 1; r record; BEGIN OPEN c; RETURN 1; EXCEPTION WHEN OTHERS THEN FETCH c INTO r; RETURN 2; END", true),
            ("DECLARE c CURSOR FOR SELECT 1; r record; BEGIN FETCH c INTO r; RETURN 1; END", true),
        ] {
            assert_unparsed(&c, "n text", src, unparsed);
        }
    }

    #[test]
    fn variable_types_are_looked_up() {
        let c = Classifier::new(Dialect::Postgres, ClassifierOptions::default());
        let src = "DECLARE x checked_int; BEGIN x := 1; RETURN x; END";
        let def = format!("CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$ {src} $$");
        let p = place(&c, "plpgsql", src, Some(&def));
        assert!(p.optional.contains("type checked_int"), "{p:?}");
    }

    #[test]
    fn dynamic_sql_is_unparsed() {
        for body in [
            "BEGIN EXECUTE 'DROP TABLE ' || 'x'; RETURN 1; END",
            "DECLARE r record; BEGIN FOR r IN EXECUTE 'SELECT 1' LOOP END LOOP; RETURN 1; END",
            "DECLARE c refcursor; BEGIN OPEN c FOR EXECUTE 'SELECT 1'; RETURN 1; END",
        ] {
            let p = place(&c(), "plpgsql", "", Some(&def(body)));
            assert!(p.classes.contains(Class::Unparsed), "{body}: {p:?}");
        }
        let p = place(&c(), "plpgsql", "", Some("not a function"));
        assert!(p.classes.contains(Class::Unparsed));
    }
}
