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
    AlterTableOperation, BinaryOperator, CopySource, CopyTarget, Expr, GrantObjects, Ident,
    ObjectName, ObjectNamePart, ObjectType, Query, Reset, Select, Set, Statement, TableFactor,
    Visit, Visitor,
};
use std::collections::{BTreeSet, HashSet};
use std::ops::ControlFlow;

use Class::*;

/// What the AST said about one statement.
pub struct Outcome {
    pub classes: ClassSet,
    pub tables: Vec<String>,
    pub note: Option<String>,
}

pub fn classify(stmt: &Statement) -> Outcome {
    let mut w = Walker::default();
    let _ = stmt.visit(&mut w);
    let tables = w
        .tables
        .into_iter()
        .filter(|t| !w.ctes.contains(t))
        .collect();
    Outcome {
        classes: w.classes,
        tables,
        note: w.note,
    }
}

#[derive(Default)]
struct Walker {
    classes: ClassSet,
    tables: BTreeSet<String>,
    /// CTE names: `FROM d` after `WITH d AS (…)` is not a table.
    ctes: HashSet<String>,
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
            Statement::Insert(_) | Statement::Merge(_) => self.add(&[Write]),
            Statement::Update(u) => self.modify(u.selection.as_ref()),
            Statement::Delete(d) => self.modify(d.selection.as_ref()),
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
        if let Some(with) = &q.with {
            for cte in &with.cte_tables {
                self.ctes.insert(ident(&cte.alias.name));
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
        if std::mem::take(&mut self.skip_relation) {
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
