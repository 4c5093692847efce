//! Classification from sqlparser's AST: the classes each (possibly nested)
//! statement contributes, and the relations it touches.
//!
//! One `Visitor` walks the whole tree so that statements hidden in wrappers
//! are seen: data-modifying CTEs, `EXPLAIN ANALYZE`, `PREPARE … AS`. Function
//! calls are *not* looked for here: `rules` finds them on the token stream,
//! which also covers text the parser could not read.
//!
//! INVARIANT: nothing here reads a literal's value, so the outcome depends
//! only on the fingerprint and may be cached. (A WHERE made only of literals
//! counts as always true whatever the literals are: `1=0` is destructive too.)

use super::types::{Class, ClassSet};
use sqlparser::ast::{
    AlterTableOperation, BinaryOperator, CopySource, CopyTarget, Delete, DiscardObject, Expr,
    FromTable, GrantObjects, Ident, Merge, MergeAction, ObjectName, ObjectNamePart, ObjectType,
    Query, Reset, Select, Set, Statement, TableFactor, TableObject, Visit, Visitor,
};
use std::collections::BTreeSet;
use std::ops::ControlFlow;

use Class::*;

/// What the AST said about one statement.
pub struct Reading {
    pub classes: ClassSet,
    pub tables: Vec<String>,
    pub note: Option<String>,
}

pub fn classify(stmt: &Statement) -> Reading {
    let mut w = Walker::default();
    let _ = stmt.visit(&mut w);
    Reading {
        classes: w.classes,
        tables: w.tables.into_iter().collect(),
        note: w.note,
    }
}

/// The CTE names one `WITH` makes visible, and where.
///
/// A name is only a CTE inside its own query, and in a plain `WITH` only
/// after its definition: in `WITH s AS (SELECT * FROM s) …` the inner `s`
/// is the real table `s`, and so is `s` in a sibling branch of a UNION.
/// Getting this wrong hides a real table from the policy, so the walk keeps
/// one scope per query instead of one set of names per statement.
struct CteScope {
    names: Vec<String>,
    /// The CTE bodies, to notice when the walk enters one (identity only).
    bodies: Vec<*const Query>,
    recursive: bool,
    /// How many of `names` are visible where the walk is now.
    visible: usize,
}

#[derive(Default)]
struct Walker {
    classes: ClassSet,
    tables: BTreeSet<String>,
    /// Innermost last: `FROM d` after `WITH d AS (…)` is not a table.
    scopes: Vec<CteScope>,
    /// The next relation is a table function's name (`FROM dblink(…)`).
    skip_relation: bool,
    /// Depth of `EXPLAIN` without `ANALYZE`: statements below it do not run.
    not_run: usize,
    note: Option<String>,
}

impl Walker {
    fn add(&mut self, classes: &[Class]) {
        if self.not_run == 0 {
            self.classes = self.classes.union(ClassSet::of(classes));
        }
    }

    fn table(&mut self, name: &ObjectName) {
        self.tables.insert(normalise(name));
    }

    /// A one-part name that a visible CTE defines is not a table.
    fn is_cte(&self, name: &ObjectName) -> bool {
        let [ObjectNamePart::Identifier(id)] = name.0.as_slice() else {
            return false;
        };
        let n = ident(id);
        self.scopes
            .iter()
            .any(|s| s.names[..s.visible].contains(&n))
    }

    /// The table an INSERT/UPDATE/DELETE/MERGE writes. PostgreSQL never
    /// resolves a DML target to a CTE (`WITH s AS (…) DELETE FROM s` deletes
    /// from the table `s`), so it is recorded whatever CTEs are in scope.
    fn target(&mut self, t: &TableFactor) {
        if let TableFactor::Table { name, .. } = t {
            self.table(name);
        }
    }

    fn delete(&mut self, d: &Delete) {
        // MySQL `DELETE t1 FROM t1 JOIN …` names its targets first.
        d.tables.iter().for_each(|n| self.table(n));
        if d.tables.is_empty() {
            let (FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from)) = &d.from;
            from.iter().for_each(|t| self.target(&t.relation));
        }
        self.modify(d.selection.as_ref());
    }

    fn merge(&mut self, m: &Merge) {
        self.target(&m.table);
        self.add(&[Write]);
        // Conservative: any DELETE action may remove every matched row.
        if m.clauses
            .iter()
            .any(|c| matches!(c.action, MergeAction::Delete { .. }))
        {
            self.add(&[Destructive]);
        }
    }

    fn note(&mut self, note: &str) {
        self.note.get_or_insert_with(|| note.to_string());
    }

    fn statement(&mut self, s: &Statement) {
        match s {
            Statement::Query(_) | Statement::ExplainTable { .. } | Statement::Fetch { .. } => {
                self.add(&[Read])
            }
            Statement::ShowVariable { .. }
            | Statement::ShowVariables { .. }
            | Statement::ShowStatus { .. } => self.add(&[Read, Session]),
            Statement::ShowFunctions { .. }
            | Statement::ShowCreate { .. }
            | Statement::ShowColumns { .. }
            | Statement::ShowCatalogs { .. }
            | Statement::ShowDatabases { .. }
            | Statement::ShowSchemas { .. }
            | Statement::ShowCharset(_)
            | Statement::ShowObjects(_)
            | Statement::ShowTables { .. }
            | Statement::ShowViews { .. }
            | Statement::ShowCollation { .. } => self.add(&[Read]),
            Statement::ShowProcessList { .. } => self.add(&[Read, ServerAccess]),
            Statement::Insert(i) => {
                if let TableObject::TableName(n) = &i.table {
                    self.table(n);
                }
                self.add(&[Write]);
            }
            Statement::Merge(m) => self.merge(m),
            Statement::Update(u) => {
                self.target(&u.table.relation);
                self.modify(u.selection.as_ref());
            }
            Statement::Delete(d) => self.delete(d),
            Statement::Copy {
                source, to, target, ..
            } => {
                if let CopySource::Table { table_name, .. } = source {
                    self.table(table_name);
                }
                self.add(&[if *to { Export } else { Write }]);
                if matches!(target, CopyTarget::File { .. } | CopyTarget::Program { .. }) {
                    self.add(&[ServerAccess]);
                }
            }
            Statement::CreateTable(c) => {
                self.add(&[Ddl]);
                if c.query.is_some() {
                    self.add(&[Read]);
                }
            }
            Statement::AlterTable(a) => {
                self.add(&[Ddl]);
                for op in &a.operations {
                    match op {
                        AlterTableOperation::DropColumn { .. }
                        | AlterTableOperation::DropPartitions { .. } => self.add(&[Destructive]),
                        AlterTableOperation::OwnerTo { .. } => self.add(&[Privilege]),
                        _ => {}
                    }
                }
            }
            Statement::CreateView(_)
            | Statement::CreateIndex(_)
            | Statement::CreateSchema { .. }
            | Statement::CreateDatabase { .. }
            | Statement::CreateFunction(_)
            | Statement::CreateTrigger(_)
            | Statement::CreateProcedure { .. }
            | Statement::CreateSequence { .. }
            | Statement::CreateType { .. }
            | Statement::CreateDomain(_)
            | Statement::CreatePolicy(_)
            | Statement::CreateOperator(_)
            | Statement::CreateOperatorFamily(_)
            | Statement::CreateOperatorClass(_)
            | Statement::CreateTextSearch(_)
            | Statement::CreateCollation(_)
            | Statement::CreateVirtualTable { .. }
            | Statement::AlterSchema(_)
            | Statement::AlterIndex { .. }
            | Statement::AlterView { .. }
            | Statement::AlterFunction(_)
            | Statement::AlterType(_)
            | Statement::AlterCollation(_)
            | Statement::AlterOperator(_)
            | Statement::AlterOperatorFamily(_)
            | Statement::AlterOperatorClass(_)
            | Statement::AlterTextSearch(_)
            | Statement::AlterPolicy(_)
            | Statement::Comment { .. }
            | Statement::RenameTable(_)
            | Statement::Analyze(_)
            | Statement::Vacuum(_)
            | Statement::OptimizeTable { .. } => self.add(&[Ddl]),
            Statement::CreateExtension(_)
            | Statement::CreateServer(_)
            | Statement::CreateSecret { .. }
            | Statement::CreateConnector(_)
            | Statement::AlterConnector { .. }
            | Statement::AttachDatabase { .. }
            | Statement::AttachDuckDBDatabase { .. }
            | Statement::DetachDuckDBDatabase { .. }
            | Statement::Install { .. }
            | Statement::Load { .. } => self.add(&[Ddl, ServerAccess]),
            Statement::CreateRole(_)
            | Statement::CreateUser(_)
            | Statement::AlterRole { .. }
            | Statement::AlterUser(_)
            | Statement::Deny(_) => self.add(&[Privilege]),
            Statement::Grant(g) => {
                self.add(&[Privilege]);
                if let Some(GrantObjects::Tables(names)) = &g.objects {
                    names.iter().for_each(|n| self.table(n));
                }
            }
            Statement::Revoke(r) => {
                self.add(&[Privilege]);
                if let Some(GrantObjects::Tables(names)) = &r.objects {
                    names.iter().for_each(|n| self.table(n));
                }
            }
            Statement::Drop {
                object_type, names, ..
            } => match object_type {
                ObjectType::Role | ObjectType::User => self.add(&[Privilege, Destructive]),
                ObjectType::Table | ObjectType::View | ObjectType::MaterializedView => {
                    self.add(&[Ddl, Destructive]);
                    names.iter().for_each(|n| self.table(n));
                }
                _ => self.add(&[Ddl, Destructive]),
            },
            Statement::DropFunction(_)
            | Statement::DropDomain(_)
            | Statement::DropProcedure { .. }
            | Statement::DropSecret { .. }
            | Statement::DropPolicy(_)
            | Statement::DropConnector { .. }
            | Statement::DropExtension(_)
            | Statement::DropOperator(_)
            | Statement::DropOperatorFamily(_)
            | Statement::DropOperatorClass(_)
            | Statement::DropTrigger(_) => self.add(&[Ddl, Destructive]),
            Statement::Truncate(_) => self.add(&[Ddl, Destructive, Write]),
            Statement::Set(set) => self.set(set),
            Statement::Reset(r) => match &r.reset {
                Reset::ConfigurationParameter(name) if !is_role_setting(name) => {
                    self.add(&[Session])
                }
                _ => self.add(&[Privilege, Session]),
            },
            Statement::Explain { .. } if !explain_runs(s) => {
                self.add(&[Read]);
                self.not_run += 1;
            }
            Statement::Explain { .. } => {}
            // DISCARD ALL includes RESET ALL, which resets the role: like
            // RESET ROLE it is `privilege`.
            Statement::Discard {
                object_type: DiscardObject::ALL,
            } => self.add(&[Privilege, Session]),
            Statement::Discard { .. }
            | Statement::LISTEN { .. }
            | Statement::UNLISTEN { .. }
            | Statement::NOTIFY { .. }
            | Statement::Deallocate { .. }
            | Statement::Use(_)
            | Statement::Close { .. }
            | Statement::UnlockTables => self.add(&[Session]),
            // The named statement is visited next and adds its own classes.
            Statement::Prepare { .. } => self.add(&[Session]),
            Statement::Declare { .. } => self.add(&[Session, Read]),
            Statement::Execute { .. } => {
                // The prepared text is not in this statement; the session
                // layer may map the name back to its PREPARE, we cannot.
                self.add(&[Session, Unparsed]);
                self.note("executes a prepared statement whose text is not visible here");
            }
            Statement::StartTransaction { .. }
            | Statement::Commit { .. }
            | Statement::Rollback { .. }
            | Statement::Savepoint { .. }
            | Statement::ReleaseSavepoint { .. } => self.add(&[Transaction]),
            Statement::Call(_) => {
                self.add(&[Write, Unparsed]);
                self.note("calls a procedure whose body is not analysed");
            }
            Statement::Kill { .. } | Statement::Flush { .. } => self.add(&[ServerAccess]),
            Statement::LoadData { table_name, .. } => {
                self.add(&[Write, ServerAccess]);
                self.table(table_name);
            }
            Statement::Directory { .. } | Statement::Unload { .. } | Statement::ExportData(_) => {
                self.add(&[Export, ServerAccess])
            }
            Statement::Lock(_) | Statement::LockTables { .. } => self.add(&[Write]),
            _ => {
                self.add(&[Unparsed]);
                self.note("statement kind not classified");
            }
        }
    }

    /// UPDATE and DELETE: destructive when every row may be hit.
    fn modify(&mut self, selection: Option<&Expr>) {
        self.add(&[Write]);
        if selection.is_none_or(always_true) {
            self.add(&[Destructive]);
        }
    }

    fn set(&mut self, set: &Set) {
        match set {
            Set::SetRole { .. } | Set::SetSessionAuthorization(_) => {
                self.add(&[Privilege, Session])
            }
            Set::SetTransaction { .. } => self.add(&[Transaction]),
            Set::SingleAssignment { variable, .. } if is_role_setting(variable) => {
                self.add(&[Privilege, Session])
            }
            Set::MultipleAssignments { assignments }
                if assignments.iter().any(|a| is_role_setting(&a.name)) =>
            {
                self.add(&[Privilege, Session])
            }
            _ => self.add(&[Session]),
        }
    }
}

impl Visitor for Walker {
    type Break = ();

    fn pre_visit_statement(&mut self, s: &Statement) -> ControlFlow<()> {
        self.statement(s);
        ControlFlow::Continue(())
    }

    fn post_visit_statement(&mut self, s: &Statement) -> ControlFlow<()> {
        if matches!(s, Statement::Explain { .. }) && !explain_runs(s) {
            self.not_run = self.not_run.saturating_sub(1);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        if let Some(outer) = self.scopes.last_mut() {
            // Entering CTE body i: only the CTEs before it are visible.
            if let Some(i) = outer.bodies.iter().position(|b| std::ptr::eq(*b, q)) {
                if !outer.recursive {
                    outer.visible = i;
                }
            }
        }
        let (names, bodies, recursive) = match &q.with {
            Some(with) => (
                with.cte_tables
                    .iter()
                    .map(|c| ident(&c.alias.name))
                    .collect(),
                with.cte_tables
                    .iter()
                    .map(|c| &*c.query as *const Query)
                    .collect(),
                with.recursive,
            ),
            None => (Vec::new(), Vec::new(), false),
        };
        let visible = names.len();
        self.scopes.push(CteScope {
            names,
            bodies,
            recursive,
            visible,
        });
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        self.scopes.pop();
        if let Some(outer) = self.scopes.last_mut() {
            // Leaving a CTE body: what follows (the next body or the main
            // query) sees at least every CTE up to and including it; the
            // main query sees them all.
            if outer.bodies.iter().any(|b| std::ptr::eq(*b, q)) {
                outer.visible = outer.names.len();
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, s: &Select) -> ControlFlow<()> {
        if let Some(into) = &s.into {
            // SELECT … INTO new_table creates and fills a table.
            self.add(&[Ddl, Write]);
            for t in &into.targets {
                match t {
                    Expr::Identifier(i) => {
                        self.tables.insert(ident(i));
                    }
                    Expr::CompoundIdentifier(parts) => {
                        let name: Vec<String> = parts.iter().map(ident).collect();
                        self.tables.insert(name.join("."));
                    }
                    _ => {}
                }
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, t: &TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table { args: Some(_), .. } = t {
            self.skip_relation = true;
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, name: &ObjectName) -> ControlFlow<()> {
        if std::mem::take(&mut self.skip_relation) || self.is_cte(name) {
            return ControlFlow::Continue(());
        }
        self.table(name);
        ControlFlow::Continue(())
    }
}

/// Unquoted parts lower-cased, quoted parts verbatim, joined with `.`.
pub fn normalise(name: &ObjectName) -> String {
    let mut out = String::new();
    for (i, part) in name.0.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        match part {
            ObjectNamePart::Identifier(id) => out.push_str(&ident(id)),
            ObjectNamePart::Function(f) => out.push_str(&f.to_string()),
        }
    }
    out
}

fn ident(id: &Ident) -> String {
    match id.quote_style {
        Some(_) => id.value.clone(),
        None => id.value.to_lowercase(),
    }
}

/// `EXPLAIN ANALYZE` or `EXPLAIN (ANALYZE …)`: the statement really runs.
/// `(ANALYZE false)` counts as running too — the conservative reading.
fn explain_runs(s: &Statement) -> bool {
    match s {
        Statement::Explain {
            analyze, options, ..
        } => {
            *analyze
                || options
                    .iter()
                    .flatten()
                    .any(|o| o.name.value.eq_ignore_ascii_case("analyze"))
        }
        _ => false,
    }
}

fn is_role_setting(name: &ObjectName) -> bool {
    let n = normalise(name);
    n == "role" || n == "session_authorization"
}

fn is_comparison(op: &BinaryOperator) -> bool {
    use BinaryOperator::*;
    matches!(op, Eq | NotEq | Lt | LtEq | Gt | GtEq | Spaceship)
}

/// May this predicate hold for every row? Conservative: anything that does
/// not look at a column outside subqueries counts, as does `x = x`.
fn always_true(e: &Expr) -> bool {
    match e {
        Expr::Nested(inner) => always_true(inner),
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Or,
            right,
        } => always_true(left) || always_true(right),
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => always_true(left) && always_true(right),
        Expr::BinaryOp { left, op, right } if is_comparison(op) && left == right => true,
        _ => !mentions_column(e),
    }
}

fn mentions_column(e: &Expr) -> bool {
    struct Finder {
        depth: usize,
    }
    impl Visitor for Finder {
        type Break = ();
        fn pre_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
            self.depth += 1;
            ControlFlow::Continue(())
        }
        fn post_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
            self.depth -= 1;
            ControlFlow::Continue(())
        }
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
            match e {
                Expr::Identifier(_) | Expr::CompoundIdentifier(_) if self.depth == 0 => {
                    ControlFlow::Break(())
                }
                _ => ControlFlow::Continue(()),
            }
        }
    }
    e.visit(&mut Finder { depth: 0 }).is_break()
}
