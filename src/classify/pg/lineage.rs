//! Where each output column of a query comes from, for masking (issue 11):
//! over PostgreSQL's own parse tree, with the catalog's column lists.
//!
//! A statement that reaches no masked table is [`Lineage::Clean`]: nothing
//! to rewrite. Otherwise every output column is either clean or a *pure
//! pass-through* of one masked column (bare or aliased, through a derived
//! table, a CTE or a `UNION ALL` at the same position), which the relay
//! then masks in the rows; anything else that touches a masked column is
//! refused ([`Lineage::Refused`]), fail closed:
//!
//! - an expression, cast, function or aggregate over it (`lower(ssn)`,
//!   `ssn::int`, `count(ssn)`), or a whole-row reference to its table
//!   (`SELECT u FROM users u`, `row_to_json(u)`);
//! - inference: the column in WHERE, JOIN … ON / USING, GROUP BY, HAVING,
//!   ORDER BY, DISTINCT, a window's PARTITION BY / ORDER BY, LIMIT, or a
//!   deduplicating set operation (`UNION`, `INTERSECT`, `EXCEPT`);
//! - what this reading cannot place exactly: a masked table whose columns
//!   the catalog does not know, `*` over a join with USING or NATURAL
//!   (the server merges their columns), a recursive CTE, FROM items other
//!   than tables, joins, subqueries and plain functions, and every
//!   statement other than SELECT (and VALUES) that reaches a masked table.
//!
//! The relay cross-checks the result's RowDescription (table OID and
//! column number) against this, so what this reading missed ends the
//! statement rather than passing plaintext.
//!
//! Names are the parser's (unquoted folded, quoted verbatim); a table is
//! named as the classifier names it (`schema.table` or `table`), and which
//! masks it falls under is the caller's ([`Masks`]).

use super::walk::{identifier, list, node_of, str_of, table_name};
use serde_json::Value;
use std::sync::Arc;

/// Which masked columns there are, as the rules say.
pub trait Masks {
    /// Whether any masked column may be in `table` (restrictive: an
    /// unqualified name matches a qualified mask and the reverse).
    fn table(&self, table: &str) -> bool;
    /// The mask over `table.column`, if any (an index the caller defines).
    fn column(&self, table: &str, column: &str) -> Option<usize>;
}

/// The catalog's column lists, in attribute order, dropped ones left out.
pub trait Columns {
    fn columns(&self, table: &str) -> Option<Arc<[String]>>;
}

/// A masked column a result column passes through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub table: String,
    pub column: String,
    pub mask: usize,
    /// The result column's name (its alias, or the column's own name):
    /// what the RowDescription calls it. Set in [`Lineage::Columns`] only.
    pub output: String,
}

/// Why a statement is refused: the masked column and what was done with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `table.column`, or the table alone when no column can be named.
    pub column: String,
    pub mask: Option<usize>,
    pub why: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lineage {
    /// No masked table is reached.
    Clean,
    /// One entry per output column, in order: `Some` for a masked pass-through.
    Columns(Vec<Option<Source>>),
    Refused(Refusal),
}

/// The lineage of one statement (`{"node": {…}}` as pg_query gives it);
/// `tables`: every table the classifier and the catalog found it reaching
/// (through views, function bodies and queries given as text too).
pub fn lineage(stmt: &Value, tables: &[String], masks: &dyn Masks, cols: &dyn Columns) -> Lineage {
    let in_tree = reaches_masked(stmt, masks);
    let mut named = Vec::new();
    each_range_var(stmt, &mut |rv| named.push(table_name(rv)));
    if let Some(t) = tables.iter().find(|t| masks.table(t) && !named.contains(t)) {
        return Lineage::Refused(Refusal {
            column: t.clone(),
            mask: None,
            why: "the statement reaches a table with masked columns other than by naming it in FROM (through a view, a function or a query given as text)".into(),
        });
    }
    if !in_tree {
        return Lineage::Clean;
    }
    let r = Reader { masks, cols };
    let out = match node_of(stmt) {
        Some(("SelectStmt", s)) => r.select(s, &Scope::default(), &Ctes::default()),
        Some((ty, _)) => Err(refuse_table(
            stmt,
            masks,
            format!(
                "a {} that reads a table with masked columns",
                statement_name(ty)
            ),
        )),
        None => Err(refuse_table(stmt, masks, "an unreadable statement".into())),
    };
    match out {
        Ok(cols) => Lineage::Columns(
            cols.into_iter()
                .map(|c| match c.origin {
                    Origin::Masked(s) => Some(Source {
                        output: c.name,
                        ..s
                    }),
                    _ => None,
                })
                .collect(),
        ),
        Err(r) => Lineage::Refused(r),
    }
}

/// The lineage of each statement of `sql`, whose classification is
/// `analysis` (its tables: what the classifier and the catalog found each
/// statement reaching). Read from the original text, not the cache key: a
/// literal can name a result column (`ORDER BY 2`).
pub fn of_text(
    sql: &str,
    analysis: &crate::classify::Analysis,
    masks: &dyn Masks,
    cols: &dyn Columns,
) -> Vec<Lineage> {
    let trees: Option<Vec<Value>> = pg_query::parse(sql, 0).ok().and_then(|p| {
        p.protobuf
            .stmts
            .iter()
            .map(|raw| serde_json::to_value(raw.stmt.as_ref()?).ok())
            .collect()
    });
    let trees = trees.filter(|t| t.len() == analysis.statements.len());
    analysis
        .statements
        .iter()
        .enumerate()
        .map(|(i, s)| match trees.as_ref().map(|t| &t[i]) {
            Some(tree) => lineage(tree, &s.tables, masks, cols),
            None if s.tables.iter().any(|t| masks.table(t)) || s.tables.is_empty() => {
                Lineage::Refused(Refusal {
                    column: s
                        .tables
                        .iter()
                        .find(|t| masks.table(t))
                        .cloned()
                        .unwrap_or_default(),
                    mask: None,
                    why:
                        "sqlgate could not read this statement's columns, and masks are configured"
                            .into(),
                })
            }
            None => Lineage::Clean,
        })
        .collect()
}

/// No column lists: a `*` over a masked table is refused, named columns
/// are read by their names.
pub struct NoColumns;

impl Columns for NoColumns {
    fn columns(&self, _: &str) -> Option<Arc<[String]>> {
        None
    }
}

/// What a column (of a FROM item or the result) carries.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Origin {
    Clean,
    /// Exactly the masked column's value.
    Masked(Source),
    /// Computed from a masked column (refused wherever it shows or decides).
    Derived(Source),
}

impl Origin {
    fn source(&self) -> Option<&Source> {
        match self {
            Origin::Clean => None,
            Origin::Masked(s) | Origin::Derived(s) => Some(s),
        }
    }
}

#[derive(Debug, Clone)]
struct Column {
    name: String,
    origin: Origin,
    /// It stands for the columns of an item sqlgate does not know (a
    /// `*` over a function): how many is unknown.
    unknown_width: bool,
}

impl Column {
    fn new(name: String, origin: Origin) -> Column {
        Column {
            name,
            origin,
            unknown_width: false,
        }
    }

    fn unknown() -> Column {
        Column {
            name: String::new(),
            origin: Origin::Clean,
            unknown_width: true,
        }
    }
}

/// A FROM item: its name for qualified references, its columns; `None`
/// columns: an item whose columns are not known (a function), clean.
#[derive(Debug, Clone)]
struct Item {
    name: String,
    columns: Option<Vec<Column>>,
    /// A table with masked columns whose column list sqlgate does not know:
    /// any name may be one of its columns, masked as the masks say.
    open: Option<String>,
    /// A join with USING or NATURAL below it: `*` can't be placed.
    merged: bool,
}

/// The FROM items in reach: this query's, then the enclosing ones'.
#[derive(Debug, Clone, Default)]
struct Scope {
    items: Vec<Item>,
    outer: Option<Box<Scope>>,
}

/// The CTEs in reach, by name, with their columns.
#[derive(Debug, Clone, Default)]
struct Ctes {
    named: Vec<(String, Vec<Column>)>,
}

struct Reader<'a> {
    masks: &'a dyn Masks,
    cols: &'a dyn Columns,
}

type Read<T> = Result<T, Refusal>;

impl Reader<'_> {
    /// A SelectStmt's output columns (its own checks applied).
    fn select(&self, s: &Value, outer: &Scope, ctes: &Ctes) -> Read<Vec<Column>> {
        let ctes = self.with_clause(s, outer, ctes)?;
        if set_op(s) != 1 {
            return self.set_operation(s, outer, &ctes);
        }
        if !list(s, "values_lists").is_empty() {
            for row in list(s, "values_lists") {
                self.decides(row, outer, &ctes, "a VALUES list")?;
            }
            // Each row is a `List` node; a row of another shape can't be
            // counted, and a result of unknown width can't be placed.
            let width = match list(s, "values_lists").first().and_then(node_of) {
                Some(("List", l)) => list(l, "items").len(),
                _ => return Ok(vec![Column::unknown()]),
            };
            return Ok((0..width)
                .map(|i| Column::new(format!("column{}", i + 1), Origin::Clean))
                .collect());
        }
        let mut scope = Scope {
            items: Vec::new(),
            outer: Some(Box::new(outer.clone())),
        };
        for f in list(s, "from_clause") {
            let item = self.source_item(f, &scope, &ctes)?;
            scope.items.extend(item);
        }
        let outputs = self.targets(s, &scope, &ctes)?;
        self.clauses(s, &scope, &outputs, &ctes)?;
        let masked = outputs.iter().find_map(|c| c.origin.source());
        if let Some(src) = masked.filter(|_| outputs.iter().any(|c| c.unknown_width)) {
            return Err(refusal(
                src,
                "`*` over a FROM item whose columns sqlgate does not know puts it at a position sqlgate cannot tell (list the columns instead)",
            ));
        }
        if s.get("into_clause").is_some_and(|v| !v.is_null()) {
            if let Some(src) = outputs.iter().find_map(|c| c.origin.source()) {
                return Err(refusal(src, "SELECT INTO copies it to a new table"));
            }
        }
        for c in &outputs {
            if let Origin::Derived(src) = &c.origin {
                return Err(refusal(
                    src,
                    &format!(
                        "result column `{}` is computed from it (only the column itself, bare or aliased, can be masked)",
                        c.name
                    ),
                ));
            }
        }
        Ok(outputs)
    }

    fn with_clause(&self, s: &Value, outer: &Scope, ctes: &Ctes) -> Read<Ctes> {
        let Some(w) = s.get("with_clause").filter(|w| !w.is_null()) else {
            return Ok(ctes.clone());
        };
        let mut ctes = ctes.clone();
        for c in list(w, "ctes") {
            let Some(("CommonTableExpr", cte)) = node_of(c) else {
                continue;
            };
            let name = identifier(str_of(cte, "ctename")).to_string();
            let query = &cte["ctequery"];
            let masked = reaches_masked(query, self.masks);
            if !matches!(node_of(query), Some(("SelectStmt", _))) {
                // It may write what it reads of another CTE or a
                // subquery where the agent can read it unmasked.
                return Err(refuse_table(
                    query,
                    self.masks,
                    "a data-modifying CTE in a statement that reads a table with masked columns"
                        .into(),
                ));
            }
            if masked && w.get("recursive").and_then(Value::as_bool) == Some(true) {
                return Err(refuse_table(
                    query,
                    self.masks,
                    "a recursive CTE over a table with masked columns".into(),
                ));
            }
            let mut cols = match node_of(query) {
                Some(("SelectStmt", q)) => self.select(q, outer, &ctes)?,
                _ => {
                    return Err(refuse_table(
                        query,
                        self.masks,
                        "a data-modifying CTE over a table with masked columns".into(),
                    ))
                }
            };
            rename(&mut cols, list(cte, "aliascolnames"));
            ctes.named.push((name, cols));
        }
        Ok(ctes)
    }

    fn set_operation(&self, s: &Value, outer: &Scope, ctes: &Ctes) -> Read<Vec<Column>> {
        let left = self.select(&s["larg"], outer, ctes)?;
        let right = self.select(&s["rarg"], outer, ctes)?;
        let all = s.get("all").and_then(Value::as_bool) == Some(true);
        if left.len() != right.len() || left.iter().chain(&right).any(|c| c.unknown_width) {
            // Not paired position by position as the server pairs them.
            let src = left.iter().chain(&right).find_map(|c| c.origin.source());
            return Err(match src {
                Some(src) => refusal(src, "a set operation whose columns sqlgate cannot pair"),
                None => Refusal {
                    column: String::new(),
                    mask: None,
                    why: "a set operation whose columns sqlgate cannot pair, in a statement that reads a table with masked columns".into(),
                },
            });
        }
        let mut out = Vec::with_capacity(left.len());
        for (l, r) in left.into_iter().zip(right) {
            let origin = match (&l.origin, &r.origin) {
                (Origin::Clean, Origin::Clean) => Origin::Clean,
                _ if !all || set_op(s) != 2 => {
                    let src = l
                        .origin
                        .source()
                        .or(r.origin.source())
                        .expect("one is masked");
                    return Err(refusal(
                        src,
                        "UNION, INTERSECT and EXCEPT compare its values (only UNION ALL keeps them apart)",
                    ));
                }
                (Origin::Masked(a), Origin::Masked(b)) if a == b => l.origin.clone(),
                (Origin::Masked(_), Origin::Clean) => l.origin.clone(),
                (Origin::Clean, Origin::Masked(_)) => r.origin.clone(),
                _ => {
                    let src = l
                        .origin
                        .source()
                        .or(r.origin.source())
                        .expect("one is masked");
                    return Err(refusal(
                        src,
                        "UNION ALL puts it in one column with a different masked column or an expression",
                    ));
                }
            };
            out.push(Column::new(l.name, origin));
        }
        self.clauses(s, &Scope::default(), &out, ctes)?;
        Ok(out)
    }

    /// A FROM item, as the items it brings into scope.
    fn source_item(&self, f: &Value, scope: &Scope, ctes: &Ctes) -> Read<Vec<Item>> {
        match node_of(f) {
            Some(("RangeVar", rv)) => Ok(vec![self.relation(rv, ctes)?]),
            Some(("RangeSubselect", sub)) => {
                let q = node_of(&sub["subquery"]).map(|(_, q)| q);
                let lateral = sub.get("lateral").and_then(Value::as_bool) == Some(true);
                // Lateral: the items before it too; else only the
                // enclosing queries' (a correlated reference).
                let reach = if lateral {
                    scope.clone()
                } else {
                    Scope {
                        items: Vec::new(),
                        outer: scope.outer.clone(),
                    }
                };
                let mut cols = match q {
                    Some(q) => self.select(q, &reach, ctes)?,
                    None => Vec::new(),
                };
                let alias = &sub["alias"];
                rename(&mut cols, list(alias, "colnames"));
                Ok(vec![Item {
                    name: identifier(str_of(alias, "aliasname")).to_string(),
                    columns: Some(cols),
                    open: None,
                    merged: false,
                }])
            }
            Some(("JoinExpr", j)) => {
                let mut items = self.source_item(&j["larg"], scope, ctes)?;
                // A LATERAL item on the right sees the left side's items.
                let with_left = Scope {
                    items: scope.items.iter().chain(&items).cloned().collect(),
                    outer: scope.outer.clone(),
                };
                items.extend(self.source_item(&j["rarg"], &with_left, ctes)?);
                let here = Scope {
                    items: items.clone(),
                    outer: Some(Box::new(scope.clone())),
                };
                self.decides(&j["quals"], &here, ctes, "JOIN … ON")?;
                let using = list(j, "using_clause");
                let natural = j.get("is_natural").and_then(Value::as_bool) == Some(true);
                for u in strings(using) {
                    if let Some(src) = here
                        .named(u, self.masks)
                        .into_iter()
                        .find_map(|c| c.origin.source().cloned())
                    {
                        return Err(refusal(&src, "JOIN … USING compares it"));
                    }
                }
                if natural && items.iter().any(|i| i.any_masked()) {
                    return Err(refuse_items(&items, "a NATURAL JOIN may compare it"));
                }
                let alias = !j["alias"].is_null() || !j["join_using_alias"].is_null();
                if alias && items.iter().any(|i| i.any_masked()) {
                    return Err(refuse_items(
                        &items,
                        "a join with an alias of its own over it",
                    ));
                }
                if natural || !using.is_empty() {
                    for i in &mut items {
                        i.merged = true;
                    }
                }
                Ok(items)
            }
            Some(("RangeFunction", rf)) => {
                self.decides(&rf["functions"], scope, ctes, "a function in FROM")?;
                let alias = &rf["alias"];
                Ok(vec![Item {
                    name: identifier(str_of(alias, "aliasname")).to_string(),
                    columns: None,
                    open: None,
                    merged: false,
                }])
            }
            other => {
                if reaches_masked(f, self.masks) {
                    return Err(refuse_table(
                        f,
                        self.masks,
                        "a FROM item sqlgate cannot follow into".into(),
                    ));
                }
                // XMLTABLE, JSON_TABLE, …: what it reads of earlier items
                // must not be masked; its own columns are unknown.
                self.decides(f, scope, ctes, "a FROM item sqlgate cannot follow into")?;
                let alias = other.map_or(&Value::Null, |(_, n)| &n["alias"]);
                Ok(vec![Item {
                    name: identifier(str_of(alias, "aliasname")).to_string(),
                    columns: None,
                    open: None,
                    merged: false,
                }])
            }
        }
    }

    /// A table (or a CTE) in FROM.
    fn relation(&self, rv: &Value, ctes: &Ctes) -> Read<Item> {
        let alias = &rv["alias"];
        let name = table_name(rv);
        let own = match str_of(alias, "aliasname") {
            "" => identifier(str_of(rv, "relname")).to_string(),
            a => identifier(a).to_string(),
        };
        if str_of(rv, "schemaname").is_empty() {
            if let Some((_, cols)) = ctes.named.iter().rev().find(|(n, _)| *n == name) {
                let mut cols = cols.clone();
                rename(&mut cols, list(alias, "colnames"));
                return Ok(Item {
                    name: own,
                    columns: Some(cols),
                    open: None,
                    merged: false,
                });
            }
        }
        let masked = self.masks.table(&name);
        let names = match self.cols.columns(&name) {
            Some(n) => n,
            None if !masked => {
                return Ok(Item {
                    name: own,
                    columns: None,
                    open: None,
                    merged: false,
                })
            }
            None if !list(alias, "colnames").is_empty() => {
                return Err(Refusal {
                    column: name,
                    mask: None,
                    why: "column aliases on a table with masked columns whose columns sqlgate does not know (name the columns in the select list instead)".into(),
                })
            }
            None => {
                return Ok(Item {
                    name: own,
                    columns: None,
                    open: Some(name),
                    merged: false,
                })
            }
        };
        let mut cols: Vec<Column> = names
            .iter()
            .map(|c| {
                let origin = match self.masks.column(&name, c).filter(|_| masked) {
                    Some(mask) => Origin::Masked(Source {
                        table: name.clone(),
                        column: c.clone(),
                        mask,
                        output: String::new(),
                    }),
                    None => Origin::Clean,
                };
                Column::new(c.clone(), origin)
            })
            .collect();
        rename(&mut cols, list(alias, "colnames"));
        Ok(Item {
            name: own,
            columns: Some(cols),
            open: None,
            merged: false,
        })
    }

    /// The target list, `*` expanded.
    fn targets(&self, s: &Value, scope: &Scope, ctes: &Ctes) -> Read<Vec<Column>> {
        let mut out = Vec::new();
        for t in list(s, "target_list") {
            let Some(("ResTarget", rt)) = node_of(t) else {
                continue;
            };
            let val = &rt["val"];
            let alias = str_of(rt, "name");
            if let Some(("ColumnRef", cr)) = node_of(val) {
                let fields = list(cr, "fields");
                if fields
                    .last()
                    .and_then(node_of)
                    .is_some_and(|(t, _)| t == "AStar")
                {
                    out.extend(self.star(fields, scope)?);
                    continue;
                }
            }
            let origin = self.expression(val, scope, ctes)?;
            let name = match alias {
                "" => default_name(val),
                a => a.to_string(),
            };
            out.push(Column::new(name, origin));
        }
        Ok(out)
    }

    /// `*` or `t.*`.
    fn star(&self, fields: &[Value], scope: &Scope) -> Read<Vec<Column>> {
        let quals = strings(&fields[..fields.len() - 1]);
        let items: Vec<&Item> = match quals.last() {
            None => scope.items.iter().collect(),
            Some(q) => scope.items.iter().filter(|i| i.name == *q).collect(),
        };
        let mut out = Vec::new();
        for i in items {
            match &i.columns {
                Some(_) if i.merged && i.any_masked() => {
                    return Err(refuse_items(
                        std::slice::from_ref(i),
                        "`*` over a join with USING or NATURAL (list the columns instead)",
                    ));
                }
                Some(cols) => out.extend(cols.iter().cloned()),
                None if i.open.is_some() => {
                    return Err(refuse_items(
                        std::slice::from_ref(i),
                        "`*` over a table with masked columns whose columns sqlgate does not know (list the columns instead)",
                    ));
                }
                // Clean, but of a width unknown: see `select`.
                None => out.push(Column::unknown()),
            }
        }
        Ok(out)
    }

    /// What an expression carries: a bare column reference passes its
    /// column through; anything else over a masked column is derived.
    fn expression(&self, v: &Value, scope: &Scope, ctes: &Ctes) -> Read<Origin> {
        if let Some(("ColumnRef", cr)) = node_of(v) {
            return self.column_ref(cr, scope);
        }
        let mut found: Option<Source> = None;
        self.each_ref(v, scope, ctes, &mut |o| {
            if found.is_none() {
                found = o.source().cloned();
            }
        })?;
        Ok(found.map_or(Origin::Clean, Origin::Derived))
    }

    /// A column reference: the column it names, or a whole row.
    fn column_ref(&self, cr: &Value, scope: &Scope) -> Read<Origin> {
        let names = strings(list(cr, "fields"));
        match names.as_slice() {
            [col] => {
                let found = scope.named(col, self.masks);
                // Of several, the masked one: an ambiguity masks more.
                if let Some(c) = found
                    .iter()
                    .find(|c| c.origin != Origin::Clean)
                    .or(found.first())
                {
                    return Ok(c.origin.clone());
                }
                // Not a column: a whole-row reference to an item of that name.
                match scope.item(col) {
                    Some(i) if i.any_masked() => Err(refuse_items(
                        std::slice::from_ref(i),
                        "a whole-row reference carries every column of the table",
                    )),
                    Some(_) => Ok(Origin::Clean),
                    // A column of an item whose columns are unknown (a
                    // function's), clean; else sqlgate misread the scope.
                    None if scope.has_unknown() => Ok(Origin::Clean),
                    None => Err(unplaced(col)),
                }
            }
            [.., table, col] => match scope.item(table) {
                Some(i) => match i.column(col, self.masks) {
                    Some(c) => Ok(c.origin),
                    // Of an item whose columns are unknown: clean. Of one
                    // whose columns sqlgate listed: it misread the item.
                    None if i.columns.is_none() => Ok(Origin::Clean),
                    None => Err(unplaced(&format!("{table}.{col}"))),
                },
                None => Err(unplaced(&format!("{table}.{col}"))),
            },
            [] => Ok(Origin::Clean),
        }
    }

    /// Calls `f` with the origin of every column reference under `v`
    /// (subqueries read with `scope` as their outer scope).
    fn each_ref(
        &self,
        v: &Value,
        scope: &Scope,
        ctes: &Ctes,
        f: &mut dyn FnMut(&Origin),
    ) -> Read<()> {
        match v {
            Value::Array(a) => {
                for x in a {
                    self.each_ref(x, scope, ctes, f)?;
                }
            }
            Value::Object(m) => {
                if let Some(("ColumnRef", cr)) = node_of(v) {
                    let fields = list(cr, "fields");
                    if fields
                        .last()
                        .and_then(node_of)
                        .is_some_and(|(t, _)| t == "AStar")
                    {
                        // `count(t.*)`, `row_to_json(t.*)`: the whole row.
                        for c in self.star(fields, scope)? {
                            f(&c.origin);
                        }
                        return Ok(());
                    }
                    f(&self.column_ref(cr, scope)?);
                    return Ok(());
                }
                if let Some(("SubLink", sl)) = node_of(v) {
                    self.each_ref(&sl["testexpr"], scope, ctes, f)?;
                    if let Some(("SelectStmt", q)) = node_of(&sl["subselect"]) {
                        for c in self.select(q, scope, ctes)? {
                            f(&c.origin);
                        }
                    }
                    return Ok(());
                }
                for x in m.values() {
                    self.each_ref(x, scope, ctes, f)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// `v` decides which rows come back (`what`, for the refusal): no
    /// masked column may take part.
    fn decides(&self, v: &Value, scope: &Scope, ctes: &Ctes, what: &str) -> Read<()> {
        let mut found: Option<Source> = None;
        self.each_ref(v, scope, ctes, &mut |o| {
            if found.is_none() {
                found = o.source().cloned();
            }
        })?;
        match found {
            Some(src) => Err(refusal(
                &src,
                &format!("{what} would reveal it through which rows come back"),
            )),
            None => Ok(()),
        }
    }

    /// WHERE, GROUP BY, HAVING, ORDER BY, DISTINCT, windows, LIMIT.
    fn clauses(&self, s: &Value, scope: &Scope, outputs: &[Column], ctes: &Ctes) -> Read<()> {
        self.decides(&s["where_clause"], scope, ctes, "WHERE")?;
        self.decides(&s["having_clause"], scope, ctes, "HAVING")?;
        self.decides(&s["limit_count"], scope, ctes, "LIMIT")?;
        self.decides(&s["limit_offset"], scope, ctes, "OFFSET")?;
        self.decides(&s["window_clause"], scope, ctes, "a WINDOW clause")?;
        for t in list(s, "target_list") {
            if let Some(("ResTarget", rt)) = node_of(t) {
                if let Some(("FuncCall", fc)) = node_of(&rt["val"]) {
                    self.decides(
                        &fc["over"],
                        scope,
                        ctes,
                        "a window's PARTITION BY or ORDER BY",
                    )?;
                }
            }
        }
        for (key, what) in [("group_clause", "GROUP BY"), ("sort_clause", "ORDER BY")] {
            for e in list(s, key) {
                let e = match node_of(e) {
                    Some(("SortBy", sb)) => &sb["node"],
                    _ => e,
                };
                self.by_output(e, outputs, what)?;
                if !self.only_an_output(e, scope, outputs) {
                    self.decides(e, scope, ctes, what)?;
                }
            }
        }
        let distinct = list(s, "distinct_clause");
        if !distinct.is_empty() {
            if distinct.iter().any(|d| node_of(d).is_none()) {
                if let Some(src) = outputs.iter().find_map(|c| c.origin.source()) {
                    return Err(refusal(src, "DISTINCT compares it"));
                }
            }
            for e in distinct {
                self.by_output(e, outputs, "DISTINCT ON")?;
                if !self.only_an_output(e, scope, outputs) {
                    self.decides(e, scope, ctes, "DISTINCT ON")?;
                }
            }
        }
        Ok(())
    }

    /// Whether `e` is a bare name of a result column that names no column
    /// of the FROM items (so it can only be the result column, which
    /// [`Reader::by_output`] has judged).
    fn only_an_output(&self, e: &Value, scope: &Scope, outputs: &[Column]) -> bool {
        let Some(("ColumnRef", cr)) = node_of(e) else {
            return false;
        };
        match strings(list(cr, "fields")).as_slice() {
            [name] => {
                outputs.iter().any(|c| c.name == *name) && scope.named(name, self.masks).is_empty()
            }
            _ => false,
        }
    }

    /// GROUP BY / ORDER BY / DISTINCT ON naming a result column, by position
    /// or by its output name.
    fn by_output(&self, e: &Value, outputs: &[Column], what: &str) -> Read<()> {
        let hit = match node_of(e) {
            Some(("AConst", c)) => c
                .pointer("/val/Ival/ival")
                .and_then(Value::as_i64)
                .and_then(|i| usize::try_from(i).ok()?.checked_sub(1))
                .and_then(|i| outputs.get(i)),
            Some(("ColumnRef", cr)) => match strings(list(cr, "fields")).as_slice() {
                [name] => outputs.iter().find(|c| c.name == *name),
                _ => None,
            },
            _ => None,
        };
        match hit.and_then(|c| c.origin.source()) {
            Some(src) => Err(refusal(
                src,
                &format!("{what} would reveal it through the order or grouping of rows"),
            )),
            None => Ok(()),
        }
    }
}

impl Scope {
    /// The columns of that name in the innermost scope that has any.
    fn named(&self, col: &str, masks: &dyn Masks) -> Vec<Column> {
        let here: Vec<Column> = self
            .items
            .iter()
            .filter_map(|i| i.column(col, masks))
            .collect();
        if !here.is_empty() {
            return here;
        }
        self.outer
            .as_ref()
            .map_or_else(Vec::new, |o| o.named(col, masks))
    }

    /// Whether an item in reach has columns sqlgate does not know (an open
    /// table's unmasked ones among them).
    fn has_unknown(&self) -> bool {
        self.items.iter().any(|i| i.columns.is_none())
            || self.outer.as_ref().is_some_and(|o| o.has_unknown())
    }

    fn item(&self, name: &str) -> Option<&Item> {
        self.items
            .iter()
            .find(|i| i.name == name)
            .or_else(|| self.outer.as_ref()?.item(name))
    }
}

impl Item {
    fn column(&self, name: &str, masks: &dyn Masks) -> Option<Column> {
        if let Some(table) = &self.open {
            // Only its masked names are claimed: another item may hold the
            // rest, and a clean name reads clean either way.
            let mask = masks.column(table, name)?;
            return Some(Column::new(
                name.to_string(),
                Origin::Masked(Source {
                    table: table.clone(),
                    column: name.to_string(),
                    mask,
                    output: String::new(),
                }),
            ));
        }
        self.columns
            .as_ref()?
            .iter()
            .find(|c| c.name == name)
            .cloned()
    }

    fn any_masked(&self) -> bool {
        self.open.is_some()
            || self
                .columns
                .as_ref()
                .is_some_and(|c| c.iter().any(|c| c.origin != Origin::Clean))
    }
}

/// A reference sqlgate could not place in the statement's scopes: the
/// server places it, so this reading differs from the server's.
fn unplaced(name: &str) -> Refusal {
    Refusal {
        column: name.to_string(),
        mask: None,
        why: "sqlgate could not tell which table this column is from".into(),
    }
}

fn refusal(src: &Source, why: &str) -> Refusal {
    Refusal {
        column: format!("{}.{}", src.table, src.column),
        mask: Some(src.mask),
        why: why.to_string(),
    }
}

/// A refusal naming the first masked column of `items`.
fn refuse_items(items: &[Item], why: &str) -> Refusal {
    let src = items
        .iter()
        .flat_map(|i| i.columns.iter().flatten())
        .find_map(|c| c.origin.source());
    match src {
        Some(s) => refusal(s, why),
        None => Refusal {
            column: items.first().map_or(String::new(), |i| i.name.clone()),
            mask: None,
            why: why.to_string(),
        },
    }
}

/// A refusal naming the first masked table under `v`.
fn refuse_table(v: &Value, masks: &dyn Masks, why: String) -> Refusal {
    let mut table = String::new();
    each_range_var(v, &mut |rv| {
        let n = table_name(rv);
        if table.is_empty() && masks.table(&n) {
            table = n;
        }
    });
    Refusal {
        column: table,
        mask: None,
        why,
    }
}

fn reaches_masked(v: &Value, masks: &dyn Masks) -> bool {
    let mut hit = false;
    each_range_var(v, &mut |rv| hit |= masks.table(&table_name(rv)));
    hit
}

fn each_range_var(v: &Value, f: &mut dyn FnMut(&Value)) {
    match v {
        Value::Object(m) => {
            if m.contains_key("relname") && m.contains_key("relpersistence") {
                f(v);
            }
            m.values().for_each(|x| each_range_var(x, f));
        }
        Value::Array(a) => a.iter().for_each(|x| each_range_var(x, f)),
        _ => {}
    }
}

/// Renames columns by an alias's column list, position by position.
fn rename(cols: &mut [Column], names: &[Value]) {
    for (c, n) in cols.iter_mut().zip(strings(names)) {
        c.name = identifier(n).to_string();
    }
}

/// The name PostgreSQL gives an unaliased result column: a column's own
/// name, a function's; `?column?` otherwise.
fn default_name(v: &Value) -> String {
    match node_of(v) {
        Some(("ColumnRef", cr)) => strings(list(cr, "fields"))
            .last()
            .map_or("?column?".into(), |s| s.to_string()),
        Some(("FuncCall", fc)) => strings(list(fc, "funcname"))
            .last()
            .map_or("?column?".into(), |s| s.to_string()),
        _ => "?column?".into(),
    }
}

/// A SelectStmt's `op`: 1 none, 2 UNION, 3 INTERSECT, 4 EXCEPT.
fn set_op(s: &Value) -> i64 {
    s.get("op").and_then(Value::as_i64).unwrap_or(1)
}

fn statement_name(ty: &str) -> String {
    ty.trim_end_matches("Stmt").to_uppercase()
}

fn strings(l: &[Value]) -> Vec<&str> {
    l.iter()
        .filter_map(|x| match node_of(x) {
            Some(("String", s)) => Some(identifier(str_of(s, "sval"))),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests;
