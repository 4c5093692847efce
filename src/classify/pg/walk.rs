//! One statement's parse tree (PostgreSQL's own, from pg_query) → classes,
//! tables, forbidden reasons.
//!
//! The tree is walked generically (as the `serde` form of pg_query's
//! protobuf types), so that a function call or relation is found wherever
//! the grammar can put one — subqueries, CTEs, table functions, defaults,
//! `RETURNING`, `ON CONFLICT`, lateral joins — without a list of places that
//! someone could forget to update. Statement kinds are an allow-list
//! ([`Walk::statement`]): a kind nobody reviewed is `unparsed`.
//!
//! In [`Mode::Key`] the tree is the redacted text's (see `lex`): literals
//! are placeholders. Whatever needs a literal's real value (a `SET` of a
//! setting sqlgate's reading depends on, `set_config`'s arguments, code
//! bodies) calls [`Walk::need_original`], and the statement is walked again
//! from its original text in [`Mode::Original`], uncached.

use super::super::types::{Class, ClassSet};
use super::{builtins, settings};
use pg_query::protobuf::{
    AlterTableType, BoolExprType, CmdType, NullTestType, ObjectType, SubLinkType,
    TransactionStmtKind, VariableSetKind,
};
use serde_json::{Map, Value};
use std::collections::{BTreeSet, HashMap};

use Class::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Key,
    Original,
}

/// `DO` runs procedural code sqlgate does not analyse: it may do anything.
const DO_BLOCK: &[Class] = &[Unparsed, Write, Ddl, Privilege, ServerAccess];

const RESERVED: &str =
    "prepared statement and portal names beginning with `sqlgate.` are sqlgate's own";

/// Procedural languages whose functions run inside the server's sandbox.
const TRUSTED_LANGUAGES: &[&str] = &["sql", "plpgsql", "plperl", "pltcl"];

pub struct Walk {
    mode: Mode,
    pub classes: ClassSet,
    pub tables: BTreeSet<String>,
    pub forbidden: Option<&'static str>,
    pub note: Option<String>,
    /// A literal of this statement is code (a function body, DO, rule,
    /// trigger or policy expression): approvers must see the text itself.
    pub code: bool,
    /// Key mode: the statement needs its literals (see the module docs).
    pub needs_original: bool,
    /// Functions that are not reviewed built-ins (resolved by `catalog`).
    pub functions: Vec<String>,
    /// Built-ins called unqualified (a user overload may shadow them).
    pub builtins: Vec<String>,
    /// CTE names visible where the walk is, innermost last.
    scopes: Vec<Vec<String>>,
    /// The top-level statement changes existing rows and its
    /// CommandComplete tag counts them (see `StatementInfo::changes_rows`).
    pub changes_rows: bool,
    /// The statement may change which object an unqualified name means for
    /// the rest of the session: it sets `search_path`, creates a temporary
    /// object (`pg_temp` is searched first), or runs code sqlgate did not
    /// read (a user function or procedure may call `set_config`). A standing
    /// grant for statements with unqualified names stops applying then.
    pub moves_names: bool,
    /// `DECLARE … WITH HOLD` (`CURSOR_OPT_HOLD`).
    pub keeps_cursor: bool,
    /// A `CREATE FUNCTION`/`PROCEDURE` body (language, source), placed by
    /// the caller of the walk (it needs the statement's text): the
    /// statement carries what its body will do.
    pub body: Option<(String, String)>,
    /// The statement reads a [`builtins::guarded`] catalog: whether it
    /// reads its settings column is decided on the whole tree (`finish`).
    guarded: bool,
    /// Depth of statements that are not run (EXPLAIN without ANALYZE,
    /// view and rule bodies): their own classes don't count, the function
    /// calls and relations in them still do.
    not_run: usize,
}

impl Walk {
    pub fn new(mode: Mode) -> Self {
        Walk {
            mode,
            changes_rows: false,
            moves_names: false,
            keeps_cursor: false,
            body: None,
            classes: ClassSet::EMPTY,
            tables: BTreeSet::new(),
            forbidden: None,
            note: None,
            code: false,
            needs_original: false,
            functions: Vec::new(),
            builtins: Vec::new(),
            scopes: Vec::new(),
            guarded: false,
            not_run: 0,
        }
    }

    fn add(&mut self, c: &[Class]) {
        if self.not_run == 0 {
            self.classes = self.classes.union(ClassSet::of(c));
        }
    }

    fn note(&mut self, n: impl FnOnce() -> String) {
        if self.note.is_none() {
            self.note = Some(n());
        }
    }

    /// True when literal values may be read; in key mode, asks for them.
    fn need_original(&mut self) -> bool {
        match self.mode {
            Mode::Original => {
                // Decided on a literal's value: approvers must see it, and a
                // grant must cover exactly this text (as for code).
                self.code = true;
                true
            }
            Mode::Key => {
                self.needs_original = true;
                false
            }
        }
    }

    fn forbid(&mut self, why: Option<&'static str>) {
        self.forbidden = self.forbidden.or(why);
    }

    /// After the walk of the statement `tree`: a [`builtins::guarded`]
    /// catalog it reads exposes its settings column unless every column of
    /// it the statement reads is named (an allow-list: review rounds 16 and
    /// 17 found `*`, whole rows, attribute notation and join aliases one
    /// after another). Decided on the whole tree, once: names and the
    /// relations they refer to are in different branches, and in scopes
    /// sqlgate does not track (a name counts wherever it is bound).
    pub fn finish(&mut self, tree: &Value) {
        if !self.guarded {
            return;
        }
        let mut ranges = HashMap::new();
        range_names(tree, &mut ranges);
        if exposes_whole_rows(tree, &ranges) {
            self.add_fn(ClassSet::of(&[Unparsed]));
            self.note(|| {
                "a catalog with a settings column (pg_roles, pg_user, pg_proc) read otherwise than by naming its columns (`*`, a whole row, attribute notation, a join alias, renamed columns)"
                    .into()
            });
        }
    }

    /// A top-level statement: `ty` is its node type, `n` its fields.
    pub fn statement(&mut self, ty: &str, n: &Value) {
        self.reserved_names(ty, n);
        match ty {
            "SelectStmt" => self.select(n, true),
            "InsertStmt" | "UpdateStmt" | "DeleteStmt" | "MergeStmt" => {
                self.changes_rows = ty != "InsertStmt"
                    || int(&n["on_conflict_clause"], "action")
                        == pg_query::protobuf::OnConflictAction::OnconflictUpdate as i64;
                self.dml(ty, n)
            }
            "ExplainStmt" => self.explain(n),
            "CopyStmt" => self.copy(n),
            "VariableSetStmt" => self.set(n),
            "VariableShowStmt" => {
                self.add(&[Read, Session]);
                let name = str_of(n, "name");
                self.configured_setting(name);
                if settings::secret(name) {
                    self.add(&[ServerAccess]);
                } else if name.eq_ignore_ascii_case("all") {
                    // Every setting, secret ones too.
                    self.add(&[Unparsed]);
                }
            }
            "TransactionStmt" => self.transaction(n),
            "DeclareCursorStmt" => {
                const CURSOR_OPT_HOLD: i64 = 0x0020;
                self.keeps_cursor = int(n, "options") & CURSOR_OPT_HOLD != 0;
                self.add(&[Read]);
                self.nested_statement(&n["query"]);
            }
            "PrepareStmt" => {
                // Conservative: the prepared statement's classes, now.
                self.add(&[Session]);
                self.nested_statement(&n["query"]);
            }
            "ExecuteStmt" => {
                self.add(&[Session, Unparsed]);
                self.note(|| "EXECUTE runs a prepared statement whose text is not in it".into());
                self.children(n);
            }
            "CallStmt" => {
                self.moves_names = true;
                self.add(&[Write, Unparsed]);
                self.note(|| "CALL runs a procedure whose body sqlgate has not analysed".into());
                self.children(n);
            }
            "DoStmt" => {
                self.add(DO_BLOCK);
                self.code = true;
                self.need_original();
            }
            "CreateFunctionStmt" => self.create_function(n),
            "CreateTrigStmt" => {
                self.add(&[Ddl]);
                self.builtin_relation(&n["relation"]);
                self.trigger_function(n);
                self.code_body(n);
            }
            "RuleStmt" => {
                self.add(&[Ddl]);
                self.builtin_relation(&n["relation"]);
                self.rule(n);
            }
            "CreatePolicyStmt" | "AlterPolicyStmt" => {
                self.add(&[Ddl, Privilege]);
                self.code_body(n);
            }
            "AlterTableStmt" => self.alter_table(n),
            "DropStmt" => self.drop(n),
            "TruncateStmt" => {
                self.add(&[Ddl, Destructive, Write]);
                for r in list(n, "relations") {
                    if let Some(("RangeVar", rv)) = node_of(r) {
                        self.target(rv);
                    }
                }
            }
            "LockStmt" => {
                // The locked relations are targets: locking a system
                // catalog (`LOCK pg_catalog.pg_class`) stops the database
                // for everyone, sqlgate's own catalog reads included.
                self.add(&[Write]);
                // ACCESS EXCLUSIVE (`LOCK t`'s default) stops every read of
                // the relation, the catalog's own look-ups of a view among
                // them: an outage tool, held as schema work.
                if int(n, "mode") >= 8 || int(n, "mode") == 0 {
                    self.add(&[Ddl]);
                }
                for r in list(n, "relations") {
                    if let Some(("RangeVar", rv)) = node_of(r) {
                        self.target(rv);
                    }
                }
            }
            "CreateTableAsStmt" => {
                self.add(&[Ddl, Write, Read]);
                if let Some(("ExecuteStmt", e)) = node_of(&n["query"]) {
                    // `CREATE TABLE t AS EXECUTE p`: the prepared text is
                    // not in the statement, and `p` may be sqlgate's own.
                    self.add(&[Unparsed]);
                    self.reserved_names("ExecuteStmt", e);
                }
                self.children(n);
            }
            "ViewStmt" => {
                self.add(&[Ddl]);
                self.builtin_relation(&n["view"]);
                self.not_run += 1;
                self.children(n);
                self.not_run -= 1;
            }
            "RenameStmt" => {
                self.add(&[Ddl]);
                self.builtin_object(n);
                if int(n, "rename_type") == ObjectType::ObjectRole as i64 {
                    self.add(&[Privilege]);
                }
                if int(n, "rename_type") == ObjectType::ObjectSchema as i64 {
                    // Every table in it leaves the rules that name it by
                    // schema (`hr.salaries`), without being named here.
                    self.add(&[Privilege]);
                    self.note(|| {
                        "renaming a schema moves its tables out of rules that name them".into()
                    });
                }
                self.children(n);
            }
            "GrantStmt" | "GrantRoleStmt" | "CreateRoleStmt" | "AlterRoleStmt"
            | "ReassignOwnedStmt" => {
                self.add(&[Privilege]);
                self.children(n);
            }
            "AlterRoleSetStmt" => {
                // A setting's name and value are identity or code
                // (`session_preload_libraries`, `role`): always shown.
                self.add(&[Privilege]);
                self.need_original();
                self.children(n);
            }
            "DropRoleStmt" | "DropOwnedStmt" => self.add(&[Privilege, Destructive]),
            "AlterDefaultPrivilegesStmt"
            | "SecLabelStmt"
            | "AlterOwnerStmt"
            | "CreateEventTrigStmt"
            | "AlterEventTrigStmt"
            | "CreateUserMappingStmt"
            | "AlterUserMappingStmt"
            | "DropUserMappingStmt" => {
                self.add(&[Privilege, Ddl]);
                if ty == "AlterOwnerStmt" {
                    self.builtin_object(n);
                }
                self.children(n);
            }
            "AlterFunctionStmt" => {
                self.add(&[Privilege, Ddl]);
                self.builtin_function(list(&n["func"], "objname"));
                self.function_settings(list(n, "actions"));
                self.children(n);
            }
            "AlterDatabaseSetStmt" => {
                self.add(&[Privilege, Ddl]);
                self.need_original();
                self.children(n);
            }
            "CreateExtensionStmt"
            | "AlterExtensionStmt"
            | "AlterExtensionContentsStmt"
            | "CreatePlangStmt"
            | "LoadStmt"
            | "AlterSystemStmt"
            | "CheckPointStmt"
            | "CreateFdwStmt"
            | "AlterFdwStmt"
            | "CreateForeignServerStmt"
            | "AlterForeignServerStmt"
            | "ImportForeignSchemaStmt"
            | "CreateForeignTableStmt"
            | "CreateSubscriptionStmt"
            | "AlterSubscriptionStmt"
            | "DropSubscriptionStmt"
            | "CreateTableSpaceStmt" => {
                self.add(&[Ddl, ServerAccess]);
                self.children(n);
            }
            "CreatePublicationStmt" | "AlterPublicationStmt" => {
                self.add(&[Ddl, Export]);
                self.children(n);
            }
            "DropdbStmt" | "DropTableSpaceStmt" => self.add(&[Ddl, Destructive]),
            "RefreshMatViewStmt" => {
                self.add(&[Ddl, Write]);
                self.children(n);
            }
            "CreateStmt"
            | "IndexStmt"
            | "CreateSeqStmt"
            | "AlterSeqStmt"
            | "CreateSchemaStmt"
            | "DefineStmt"
            | "CompositeTypeStmt"
            | "CreateEnumStmt"
            | "CreateRangeStmt"
            | "AlterEnumStmt"
            | "AlterTypeStmt"
            | "CreateDomainStmt"
            | "AlterDomainStmt"
            | "CreateCastStmt"
            | "CreateOpClassStmt"
            | "CreateOpFamilyStmt"
            | "AlterOpFamilyStmt"
            | "CreateConversionStmt"
            | "CreateTransformStmt"
            | "CreateAmStmt"
            | "CreateStatsStmt"
            | "AlterStatsStmt"
            | "AlterObjectSchemaStmt"
            | "AlterObjectDependsStmt"
            | "AlterTsdictionaryStmt"
            | "AlterTsconfigurationStmt"
            | "AlterCollationStmt"
            | "AlterOperatorStmt"
            | "CreatedbStmt"
            | "AlterDatabaseStmt"
            | "AlterDatabaseRefreshCollStmt"
            | "CommentStmt"
            | "VacuumStmt"
            | "ReindexStmt"
            | "ClusterStmt"
            | "AlterTableSpaceOptionsStmt"
            | "AlterTableMoveAllStmt"
            | "ReplicaIdentityStmt" => {
                self.add(&[Ddl]);
                self.named_functions(n);
                match ty {
                    // `ALTER TYPE … SET (SEND = …)`: a type's I/O functions
                    // run on every value sent or received, the built-ins'
                    // too (only C types of one's own have a use for it).
                    "AlterTypeStmt" => self.changes_builtin("type I/O (ALTER TYPE … SET)"),
                    // `RENAME VALUE 'paid' TO 'void'`: every row holding the
                    // label now reads as another, as a mass UPDATE would
                    // (round J, J1).
                    "AlterEnumStmt" if n["old_val"].as_str().is_some_and(|v| !v.is_empty()) => {
                        self.add(&[Destructive])
                    }
                    // A built-in operator's selectivity functions run at
                    // planning; an unqualified operator is pg_catalog's.
                    "AlterOperatorStmt" => {
                        let parts = strings(list(&n["opername"], "objname"));
                        if parts.len() < 2 || is_system_schema(parts[0]) {
                            self.changes_builtin("operator (ALTER OPERATOR)");
                        }
                    }
                    "DefineStmt" => {
                        let parts = strings(list(n, "defnames"));
                        let (schema, name) = schema_and_name(&parts);
                        if int(n, "kind") == ObjectType::ObjectAggregate as i64 {
                            self.builtin_function(list(n, "defnames"));
                        } else if is_system_schema(schema) {
                            self.changes_builtin(&format!(
                                "object `{}`",
                                qualified(&[schema, name])
                            ));
                        }
                    }
                    "AlterObjectSchemaStmt" => self.builtin_object(n),
                    // A CHECK added to `information_schema.cardinal_number`
                    // runs in information_schema's views.
                    "AlterDomainStmt" => {
                        let parts = strings(list(n, "type_name"));
                        if parts.len() >= 2 && is_system_schema(parts[parts.len() - 2]) {
                            self.changes_builtin(&format!("domain `{}`", parts.join(".")));
                        }
                    }
                    _ => {}
                }
                if ty == "CreateConversionStmt" {
                    let parts: Vec<&str> = strings(list(n, "func_name"))
                        .into_iter()
                        .map(identifier)
                        .collect();
                    self.call_named(&parts);
                }
                self.children(n);
            }
            "DiscardStmt" | "ListenStmt" | "UnlistenStmt" | "NotifyStmt" | "DeallocateStmt"
            | "ClosePortalStmt" => self.add(&[Session]),
            "FetchStmt" => self.add(&[Read]),
            // A PL/pgSQL assignment `x := expr` (parse mode ASSIGN): the
            // expression's reads.
            "PlassignStmt" => {
                self.add(&[Read]);
                self.children(n);
            }
            "ConstraintsSetStmt" => self.add(&[Transaction]),
            other => {
                self.add(&[Unparsed]);
                self.note(|| format!("statement kind {other} is not reviewed by sqlgate"));
            }
        }
    }

    /// Prepared statements and portals named `sqlgate.…` are sqlgate's own
    /// upstream names for what the agent prepared and bound (held statements
    /// among them, bound but not yet approved). SQL reaching them by name —
    /// `FETCH ALL FROM "sqlgate.p…"` runs a held portal, `DEALLOCATE` +
    /// `PREPARE` swap the statement behind one — is forbidden.
    fn reserved_names(&mut self, ty: &str, n: &Value) {
        let field = match ty {
            "FetchStmt" | "ClosePortalStmt" | "DeclareCursorStmt" => "portalname",
            "PrepareStmt" | "ExecuteStmt" | "DeallocateStmt" => "name",
            _ => return,
        };
        if str_of(n, field).starts_with("sqlgate.") {
            self.forbid(Some(RESERVED));
        }
    }

    /// A statement inside another (EXPLAIN, PREPARE, DECLARE): classified
    /// as if it stood alone.
    fn nested_statement(&mut self, v: &Value) {
        match node_of(v) {
            Some((ty, n)) => self.statement(ty, n),
            None => self.value(v),
        }
    }

    fn value(&mut self, v: &Value) {
        match v {
            Value::Object(m) => {
                if let Some((ty, n)) = node_of(v) {
                    self.node(ty, n);
                } else if is_range_var(m) {
                    self.range_var(v);
                } else if is_type_name(m) {
                    self.type_name(v);
                } else {
                    for x in m.values() {
                        self.value(x);
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| self.value(x)),
            _ => {}
        }
    }

    fn children(&mut self, n: &Value) {
        self.children_except(n, "")
    }

    /// A type named anywhere (a cast, a column definition, XMLTABLE's
    /// COLUMNS, XMLSERIALIZE … AS, a JSON output type): converting a value
    /// to it runs a user's cast function or a domain's CHECK, which the
    /// catalog places (as `type <name>`).
    fn type_name(&mut self, n: &Value) {
        let names = strings(list(n, "names"));
        self.dotted(&names);
        if let Some(t) = names.last() {
            self.shadowable(format!("type {t}"));
        }
        self.children_except(n, "names");
    }

    fn children_except(&mut self, n: &Value, skip: &str) {
        if let Value::Object(m) = n {
            for (k, x) in m {
                if k != skip {
                    self.value(x);
                }
            }
        }
    }

    fn node(&mut self, ty: &str, n: &Value) {
        match ty {
            "SelectStmt" => self.select(n, false),
            "InsertStmt" | "UpdateStmt" | "DeleteStmt" | "MergeStmt" => self.dml(ty, n),
            "FuncCall" => self.func_call(n),
            // pg_query's grammar (17+) reads these as SQL/JSON syntax; an
            // older server reads the same text as calls of functions of
            // that name, which a user may have created. So a user function
            // of the name places them, as for a built-in it may shadow.
            "JsonFuncExpr" => self.json_syntax(n, &["json_value", "json_query", "json_exists"]),
            "JsonScalarExpr" => self.json_syntax(n, &["json_scalar"]),
            "JsonSerializeExpr" => self.json_syntax(n, &["json_serialize"]),
            "JsonParseExpr" => self.json_syntax(n, &["json"]),
            "JsonTable" => self.json_syntax(n, &["json_table"]),
            "MergeSupportFunc" => self.json_syntax(n, &["merge_action"]),
            "JsonObjectConstructor" => self.json_syntax(n, &["json_object"]),
            "JsonArrayConstructor" | "JsonArrayQueryConstructor" => {
                self.json_syntax(n, &["json_array"])
            }
            "JsonObjectAgg" => self.json_syntax(n, &["json_objectagg"]),
            "JsonArrayAgg" => self.json_syntax(n, &["json_arrayagg"]),
            "RangeVar" => self.range_var(n),
            "AExpr" => {
                // `OPERATOR(schema.op)`: an operator outside pg_catalog runs
                // a function sqlgate has not seen.
                let parts = strings(list(n, "name"));
                if parts.len() > 1 && parts[0] != "pg_catalog" {
                    self.add_fn(ClassSet::of(&[Unparsed]));
                    self.note(|| {
                        "an operator outside pg_catalog is not a reviewed built-in".into()
                    });
                } else if let [_, op] | [op] = parts.as_slice() {
                    // A user's operator of that name runs its function: the
                    // catalog places it (as `operator <name>`; one in
                    // pg_catalog too, a superuser can make one there).
                    // BETWEEN is comparisons by the operators it stands for.
                    if op.contains("BETWEEN") {
                        for cmp in [">=", "<=", "<", ">"] {
                            self.shadowable(format!("operator {cmp}"));
                        }
                    } else {
                        self.shadowable(format!("operator {op}"));
                    }
                }
                self.children(n);
            }
            // Operators used without an AExpr: a subquery comparison
            // (`x op ANY (SELECT …)`, `IN (SELECT …)`), `ORDER BY … USING`,
            // and the implicit `=` of `JOIN … USING`, `NATURAL JOIN` and a
            // simple CASE.
            "SubLink" | "SortBy" => {
                let key = if ty == "SubLink" {
                    "oper_name"
                } else {
                    "use_op"
                };
                if let Some(op) = strings(list(n, key)).last() {
                    self.shadowable(format!("operator {op}"));
                }
                if ty == "SubLink"
                    && int(n, "sub_link_type") == SubLinkType::AnySublink as i64
                    && list(n, key).is_empty()
                {
                    // ANY_SUBLINK without a name: `IN (SELECT …)`.
                    self.shadowable("operator =".into());
                }
                self.children(n);
            }
            "JoinExpr" | "CaseExpr" => {
                let implicit = if ty == "JoinExpr" {
                    n.get("is_natural").and_then(Value::as_bool) == Some(true)
                        || !list(n, "using_clause").is_empty()
                } else {
                    n.get("arg").is_some_and(|a| !a.is_null())
                };
                if implicit {
                    self.shadowable("operator =".into());
                }
                self.children(n);
            }
            "ColumnDef" => {
                // A column of a type with code behind it (a domain's CHECK)
                // runs it on every write: the catalog places it.
                let names = strings(list(&n["type_name"], "names"));
                self.dotted(&names);
                if names.first() != Some(&"pg_catalog") {
                    if let Some(t) = names.last() {
                        self.shadowable(format!("type {t}"));
                    }
                }
                self.children(n);
            }
            "TypeName" => self.type_name(n),
            // Attribute notation: `x.f` and `(x).f` are the call `f(x)` when
            // `f` is not a column of `x` ("computed fields"), for any type
            // of `x` (`('/etc/passwd').pg_read_file`).
            "ColumnRef" => {
                let fields = strings(list(n, "fields"));
                // A role's or database's settings, custom keys among them
                // (`pg_roles.rolconfig`, `pg_user.useconfig`).
                if fields.last().is_some_and(|f| builtins::settings_column(f)) {
                    self.add_fn(ClassSet::of(&[Unparsed]));
                }
                for f in fields.iter().skip(1) {
                    self.attribute(f);
                }
            }
            "AIndirection" => {
                for f in strings(list(n, "indirection")) {
                    self.attribute(f);
                }
                self.children(n);
            }
            _ => self.children(n),
        }
    }

    /// Function classes count even where the statement does not run:
    /// planning evaluates immutable functions, and a user's function may
    /// claim to be immutable.
    fn add_fn(&mut self, c: ClassSet) {
        self.classes = self.classes.union(c);
    }

    fn select(&mut self, n: &Value, read: bool) {
        if read {
            self.add(&[Read]);
        }
        if !n["into_clause"].is_null() {
            // SELECT … INTO makes a table.
            self.add(&[Read, Ddl, Write]);
        }
        if !list(n, "locking_clause").is_empty() {
            // FOR UPDATE / SHARE locks rows as an UPDATE would; on a system
            // catalog that stops DDL for everyone, as `LOCK` does.
            self.add(&[Write]);
            let mut catalog = false;
            each_relation(&n["from_clause"], &mut |schema, name| {
                catalog |= builtins::is_system_catalog(schema, name);
            });
            if catalog {
                self.add(&[Privilege, Ddl]);
                self.note(|| "locks rows of a system catalog".into());
            }
        }
        self.with_scope(n, |w| w.children_except(n, "with_clause"));
    }

    fn dml(&mut self, ty: &str, n: &Value) {
        self.with_scope(n, |w| {
            if let Some(rv) = n.get("relation").filter(|r| !r.is_null()) {
                let rv = node_of(rv).map_or(rv, |(_, x)| x);
                w.target(rv);
            }
            w.add(&[Write]);
            match ty {
                "UpdateStmt" | "DeleteStmt" if w.always_true(&n["where_clause"]) => {
                    w.add(&[Destructive])
                }
                "UpdateStmt" if is_pg_settings(&n["relation"]) => {
                    w.forbid(Some(settings::PG_SETTINGS))
                }
                "MergeStmt" => {
                    let deletes = list(n, "merge_when_clauses").iter().any(|c| {
                        node_of(c).is_some_and(|(_, c)| {
                            int(c, "command_type") == CmdType::CmdDelete as i64
                        })
                    });
                    if deletes {
                        w.add(&[Destructive]);
                    }
                }
                _ => {}
            }
            w.children_except(n, "with_clause");
        });
    }

    /// The relation a statement writes: a table whatever CTEs are in scope
    /// (PostgreSQL never resolves a DML target to a CTE), and a privilege
    /// change when it is a system catalog.
    fn target(&mut self, rv: &Value) {
        let (schema, name) = (str_of(rv, "schemaname"), str_of(rv, "relname"));
        self.temporary(rv);
        self.tables.insert(table_name(rv));
        if builtins::is_system_catalog(schema, name) {
            self.add(&[Privilege, Ddl]);
            self.note(|| "writes a system catalog".into());
        }
    }

    /// A relation in `pg_temp`, or made temporary: it shadows names. And a
    /// quoted name with a dot in it (`"hr.staff"`) would be taken for a
    /// schema-qualified one where names are joined with dots (rules, the
    /// catalog), so it can't be placed.
    fn temporary(&mut self, rv: &Value) {
        self.dotted(&[str_of(rv, "schemaname"), str_of(rv, "relname")]);
        let schema = str_of(rv, "schemaname");
        if str_of(rv, "relpersistence") == "t" || schema.to_ascii_lowercase().starts_with("pg_temp")
        {
            self.moves_names = true;
        }
    }

    fn range_var(&mut self, rv: &Value) {
        let (schema, name) = (str_of(rv, "schemaname"), str_of(rv, "relname"));
        self.temporary(rv);
        if schema.is_empty() && self.scopes.iter().any(|s| s.iter().any(|c| c == name)) {
            return;
        }
        self.tables.insert(table_name(rv));
        self.guarded |= builtins::guarded(schema, name);
        let c = builtins::relation(schema, name);
        if !c.is_empty() {
            self.add_fn(c);
        }
        self.children(rv);
    }

    /// CTE scoping: a name is visible in its own WITH's main query, in the
    /// CTEs after it (all of them if RECURSIVE), and in anything nested
    /// there; in `WITH s AS (SELECT * FROM s)` the inner `s` is the table.
    fn with_scope(&mut self, n: &Value, body: impl FnOnce(&mut Self)) {
        let wc = &n["with_clause"];
        if wc.is_null() {
            return body(self);
        }
        let recursive = wc["recursive"].as_bool().unwrap_or(false);
        let ctes = list(wc, "ctes");
        let names: Vec<String> = ctes
            .iter()
            .filter_map(|c| node_of(c).map(|(_, c)| str_of(c, "ctename").to_string()))
            .collect();
        for (i, c) in ctes.iter().enumerate() {
            let visible = if recursive {
                names.clone()
            } else {
                names[..i].to_vec()
            };
            self.scopes.push(visible);
            if let Some((_, c)) = node_of(c) {
                let upsert = |q: &Value| {
                    int(&q["on_conflict_clause"], "action")
                        == pg_query::protobuf::OnConflictAction::OnconflictUpdate as i64
                };
                match node_of(&c["ctequery"]) {
                    Some(("SelectStmt", q)) => self.select(q, true),
                    Some(("InsertStmt", q)) if upsert(q) => {
                        // `ON CONFLICT DO UPDATE` updates rows no tag counts.
                        self.add(&[Destructive]);
                        self.value(&c["ctequery"]);
                    }
                    Some(("UpdateStmt" | "DeleteStmt" | "MergeStmt", _)) => {
                        // The statement's tag counts the outer query's rows,
                        // not these: the row guard cannot see them.
                        self.add(&[Destructive]);
                        self.value(&c["ctequery"]);
                    }
                    _ => self.value(&c["ctequery"]),
                }
            }
            self.scopes.pop();
        }
        self.scopes.push(names);
        body(self);
        self.scopes.pop();
    }

    fn json_syntax(&mut self, n: &Value, names: &[&str]) {
        for name in names {
            self.shadowable((*name).to_string());
        }
        self.children(n);
    }

    /// A name the catalog places if a user object has it, and that is a
    /// reviewed built-in (or plain syntax) otherwise.
    fn shadowable(&mut self, name: String) {
        if !self.builtins.contains(&name) {
            self.builtins.push(name);
        }
    }

    /// Names with a dot inside one part: `unparsed` (see `temporary`).
    fn dotted(&mut self, parts: &[&str]) {
        if parts.iter().any(|p| p.contains('.')) {
            self.add_fn(ClassSet::of(&[Unparsed]));
            self.note(|| "a quoted name containing `.` can't be told from a qualified one".into());
        }
    }

    fn func_call(&mut self, n: &Value) {
        let parts: Vec<&str> = strings(list(n, "funcname"))
            .into_iter()
            .map(identifier)
            .collect();
        let (schema, name) = schema_and_name(&parts);
        if let Some(i) = builtins::query_argument(schema, name, list(n, "args").len()) {
            self.dotted(&parts);
            self.embedded_query(list(n, "args").get(i));
            return self.children(n);
        }
        self.call_named(&parts);
        if list(n, "args").len() == 1 {
            // `f(x)` with one argument is a cast to a type named `f` when
            // no function matches exactly (PostgreSQL tries that before
            // inexact matches): a domain `initcap` makes `initcap('x')` its
            // CHECK. A qualified `s.f(x)` too, for a type `s.f`. The
            // catalog places such a type (of that name in any schema).
            self.shadowable(format!("type {name}"));
        }
        if name == "set_config" && (schema.is_empty() || schema == "pg_catalog") {
            self.set_config(list(n, "args"));
        }
        if name == "current_setting" && (schema.is_empty() || schema == "pg_catalog") {
            // A setting holding a password or a command (`primary_conninfo`)
            // is the server's, as its files are; a computed name may be one.
            if self.need_original() {
                let name = list(n, "args").first().and_then(constant);
                if let Some(name) = &name {
                    self.configured_setting(name);
                }
                match name {
                    Some(name) if !settings::secret(&name) => {}
                    Some(_) => self.add_fn(ClassSet::of(&[ServerAccess])),
                    None => self.add_fn(ClassSet::of(&[Unparsed])),
                }
            }
        }
        self.children(n);
    }

    /// A custom setting read (`SHOW app.key`, `current_setting('app.key')`):
    /// one a DBA configured for the database or a role (`ALTER DATABASE …
    /// SET`, where applications keep keys) is the catalog's to place
    /// (`setting <name>`, dots as `:`), as server access.
    fn configured_setting(&mut self, name: &str) {
        if name.contains('.') {
            self.shadowable(format!(
                "setting {}",
                name.trim().to_ascii_lowercase().replace('.', ":")
            ));
        }
    }

    /// `name` read after a `.` (`x.name`, `(x).name`): a column or field,
    /// or the call `name(x)`, or a cast of `x` to a type `name`; which one
    /// depends on what `x` is, which sqlgate does not know, so all count.
    /// A built-in of that name counts as called (with one argument, not a
    /// literal: `current_setting` of an unknown name); a user function
    /// one argument can be passed to (`attr <name>`) and a type of that
    /// name (`type <name>`) are the catalog's to place. A name that is
    /// none of these is a column.
    fn attribute(&mut self, name: &str) {
        if !builtins::call("", name).1 {
            self.call_named(&[name]);
            if matches!(name, "current_setting" | "set_config")
                || builtins::query_argument("", name, 1).is_some()
            {
                self.add_fn(ClassSet::of(&[Unparsed]));
            }
        }
        self.shadowable(format!("attr {name}"));
        self.shadowable(format!("type {name}"));
    }

    /// A call of the function named `parts`: a reviewed built-in's classes,
    /// or a function for the catalog to place.
    fn call_named(&mut self, parts: &[&str]) {
        self.dotted(parts);
        let (schema, name) = schema_and_name(parts);
        let (c, unknown) = builtins::call(schema, name);
        if !unknown && (c.contains(Unparsed) || c.contains(Destructive) || c.contains(Ddl)) {
            // SQL or a table named by a string, or the object a held
            // built-in rewrites or destroys (`setval('a_seq', 1)`,
            // `lo_unlink(4242)`): approved as written only, so a grant for
            // one object never covers another (review 22, F4).
            self.code = true;
            self.need_original();
        }
        if unknown {
            let f = parts.join(".");
            if !self.functions.contains(&f) {
                self.functions.push(f);
            }
        } else {
            self.add_fn(c);
            // A user overload may share the built-in's name, in any schema
            // for an unqualified call, in pg_catalog (a superuser's) for a
            // qualified one: the catalog places those.
            let shadow = if schema.is_empty() {
                name.to_string()
            } else {
                parts.join(".")
            };
            if !self.builtins.contains(&shadow) {
                self.builtins.push(shadow);
            }
        }
    }

    /// Functions a definition names for the server to call later (an
    /// operator's or aggregate's functions, a cast's, an operator class's
    /// support functions, a type's I/O functions, a conversion's): each
    /// counts as called, so `CREATE OPERATOR … (FUNCTION = pg_read_file)`
    /// is what a call of `pg_read_file` is.
    fn named_functions(&mut self, v: &Value) {
        const FUNCTION_OPTIONS: &[&str] = &[
            "function",
            "procedure",
            "sfunc",
            "finalfunc",
            "combinefunc",
            "serialfunc",
            "deserialfunc",
            "msfunc",
            "minvfunc",
            "mfinalfunc",
            "restrict",
            "join",
            "input",
            "output",
            "receive",
            "send",
            "typmod_in",
            "typmod_out",
            "analyze",
            "subscript",
            "canonical",
            "subtype_diff",
        ];
        match v {
            Value::Object(m) => {
                // A function named with its arguments (`ObjectWithArgs`, as
                // a node or a typed field): a cast's function, an operator
                // class's support function (not its operators, item type 1),
                // a transform's; an operator's own name is not a function.
                if m.contains_key("objname") && m.contains_key("objargs") {
                    let parts: Vec<&str> = strings(list(v, "objname"))
                        .into_iter()
                        .map(identifier)
                        .collect();
                    if !parts.is_empty() {
                        self.call_named(&parts);
                    }
                }
                if m.get("itemtype").and_then(Value::as_i64) == Some(1) {
                    return;
                }
                if let Some(d) = m.get("DefElem") {
                    let opt = str_of(d, "defname");
                    let names = d.pointer("/arg/node/TypeName/names");
                    if let (true, Some(Value::Array(names))) =
                        (FUNCTION_OPTIONS.contains(&opt), names)
                    {
                        let parts: Vec<&str> = strings(names).into_iter().map(identifier).collect();
                        if !parts.is_empty() {
                            self.call_named(&parts);
                        }
                    }
                }
                for (k, x) in m {
                    if k != "opername" {
                        self.named_functions(x);
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| self.named_functions(x)),
            _ => {}
        }
    }

    /// A function that runs the SQL in its argument (`query_to_xml`,
    /// `ts_stat`, …): the SQL is classified as if sent itself when it is a
    /// constant, and the call is `unparsed` otherwise.
    fn embedded_query(&mut self, arg: Option<&Value>) {
        self.code = true;
        if !self.need_original() {
            return;
        }
        let Some(a) = arg
            .and_then(constant)
            .and_then(|q| super::classify_embedded(&q, 0))
        else {
            self.add_fn(ClassSet::of(&[Unparsed]));
            return self.note(|| "SQL given as a computed string cannot be read".into());
        };
        for s in &a.statements {
            match &s.pending {
                Some(p) => {
                    self.add_fn(p.base);
                    for f in &p.functions {
                        if !self.functions.contains(f) {
                            self.functions.push(f.clone());
                        }
                    }
                }
                None => self.add_fn(s.classes),
            }
            self.tables.extend(s.tables.iter().cloned());
            self.forbid(s.forbidden);
        }
        if a.statements.is_empty() {
            self.add_fn(ClassSet::of(&[Unparsed]));
        }
    }

    fn set_config(&mut self, args: &[Value]) {
        if !self.need_original() {
            return;
        }
        let Some(name) = args.first().and_then(constant) else {
            self.moves_names = true;
            self.add_fn(ClassSet::of(&[Privilege]));
            return self.forbid(Some(settings::COMPUTED));
        };
        self.add_fn(settings::change(&name));
        self.moves_names |= moves_names(&name);
        if name.eq_ignore_ascii_case("search_path") {
            let v = args.get(1).and_then(constant);
            let parts: Vec<String> = v
                .as_deref()
                .map(|v| v.split(',').map(|p| p.trim().to_string()).collect())
                .unwrap_or_default();
            if v.is_none() || settings::shadows_builtins(&parts) {
                self.add_fn(ClassSet::of(&[Privilege]));
            }
        }
        if settings::value_matters(&name) {
            let v = args.get(1).and_then(constant);
            self.forbid(settings::forbidden(&name, v.as_deref()));
        }
    }

    fn set(&mut self, n: &Value) {
        let kind = int(n, "kind");
        let name = str_of(n, "name");
        if kind == VariableSetKind::VarSetMulti as i64 {
            // SET TRANSACTION …, SET SESSION CHARACTERISTICS AS TRANSACTION …
            return self.add(&[Transaction]);
        }
        if kind == VariableSetKind::VarReset as i64 || kind == VariableSetKind::VarResetAll as i64 {
            // Back to the login's own baseline (RESET ROLE included).
            return self.add(&[Session]);
        }
        let c = settings::change(name);
        self.classes = self.classes.union(c);
        self.moves_names |= moves_names(name);
        if c.contains(Privilege) || c.contains(ServerAccess) {
            // `SET ROLE`, `SET SESSION AUTHORIZATION`, library loading: the
            // value is who or what runs next, so the approver sees it.
            self.need_original();
        }
        if name.eq_ignore_ascii_case("search_path")
            && kind == VariableSetKind::VarSetValue as i64
            && self.need_original()
        {
            let parts: Vec<String> = list(n, "args").iter().filter_map(constant).collect();
            if settings::shadows_builtins(&parts) {
                self.add(&[Privilege]);
            }
        }
        if !settings::value_matters(name) {
            return;
        }
        if kind == VariableSetKind::VarSetDefault as i64 {
            self.forbid(settings::forbidden(name, Some("default")));
        } else if kind == VariableSetKind::VarSetValue as i64 && self.need_original() {
            let args = list(n, "args");
            let v = if args.len() == 1 {
                constant(&args[0])
            } else {
                None
            };
            self.forbid(settings::forbidden(name, v.as_deref()));
        }
    }

    fn transaction(&mut self, n: &Value) {
        self.add(&[Transaction]);
        let k = int(n, "kind");
        let two_phase = [
            TransactionStmtKind::TransStmtPrepare,
            TransactionStmtKind::TransStmtCommitPrepared,
            TransactionStmtKind::TransStmtRollbackPrepared,
        ];
        if two_phase.iter().any(|t| *t as i64 == k) {
            // Outlives the session and settles any session's work: see `classify`.
            self.add(&[Destructive]);
        }
    }

    fn explain(&mut self, n: &Value) {
        // Whether it runs its statement is an option in the tree: `ANALYZE`
        // and `ANALYSE` both arrive as `analyze`, with or without a value
        // (any value counts: the conservative reading).
        let analyze = list(n, "options").iter().any(|o| {
            node_of(o).is_some_and(|(_, d)| str_of(d, "defname").eq_ignore_ascii_case("analyze"))
        });
        if analyze {
            if let Some(("InsertStmt" | "UpdateStmt" | "DeleteStmt" | "MergeStmt", _)) =
                node_of(&n["query"])
            {
                // Its answer is the plan, not a row count: the row guard
                // cannot see how much it changed.
                self.add(&[Destructive]);
                self.note(|| "EXPLAIN ANALYZE of a data change hides its row count".into());
            }
            self.nested_statement(&n["query"]);
        } else {
            self.add(&[Read]);
            self.not_run += 1;
            self.nested_statement(&n["query"]);
            self.not_run -= 1;
        }
    }

    fn copy(&mut self, n: &Value) {
        let from = n["is_from"].as_bool().unwrap_or(false);
        self.add(&[if from { Write } else { Export }]);
        if n["is_program"].as_bool().unwrap_or(false) || !str_of(n, "filename").is_empty() {
            self.add(&[ServerAccess]);
        }
        if let Some(rv) = n.get("relation").filter(|r| !r.is_null()) {
            if from {
                self.target(rv);
            } else {
                self.range_var(rv);
            }
        }
        if let Some(("InsertStmt" | "UpdateStmt" | "DeleteStmt" | "MergeStmt", _)) =
            node_of(&n["query"])
        {
            // `COPY (DELETE … RETURNING) TO STDOUT`: its tag counts rows
            // copied, not changed as such, and the row guard can't see them.
            self.add(&[Write, Destructive]);
        }
        self.children_except(n, "relation");
    }

    fn create_function(&mut self, n: &Value) {
        self.add(&[Ddl]);
        self.builtin_function(list(n, "funcname"));
        self.code = true;
        if !self.need_original() {
            return;
        }
        let mut language = String::from("sql");
        let mut src = None;
        for o in list(n, "options") {
            if let Some((_, d)) = node_of(o) {
                match str_of(d, "defname") {
                    "language" => {
                        if let Some(("String", s)) = node_of(&d["arg"]) {
                            language = str_of(s, "sval").to_ascii_lowercase();
                        }
                    }
                    "as" => {
                        if let Some(("List", l)) = node_of(&d["arg"]) {
                            if let [one] = strings(list(l, "items")).as_slice() {
                                src = Some(one.to_string());
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        if !list(n, "sql_body").is_empty() || !n["sql_body"].is_null() {
            // `BEGIN ATOMIC …` / `RETURN …`: a body in the tree, read as
            // any statement is.
            self.children(&n["sql_body"]);
        } else if let Some(src) = src.filter(|_| matches!(language.as_str(), "sql" | "plpgsql")) {
            self.body = Some((language.clone(), src));
        } else if TRUSTED_LANGUAGES.contains(&language.as_str()) {
            // PL/Perl, PL/Tcl: their SQL (spi_exec_query …) can't be read.
            self.add(&[Unparsed]);
            self.note(|| format!("a `{language}` body can't be read by sqlgate"));
        }
        self.function_settings(list(n, "options"));
        if !TRUSTED_LANGUAGES.contains(&language.as_str()) {
            self.add(&[ServerAccess]);
            self.note(|| format!("language `{language}` runs outside the server's sandbox"));
        }
    }

    /// DDL that makes or changes a built-in object (a function's body or
    /// settings, an aggregate's functions, a type's I/O, a system view's
    /// query) changes what every later statement using it does, which no
    /// statement's text shows, and sqlgate trusts built-ins by name:
    /// server access, never approvable by the shipped rules (review 22,
    /// F1, F2: `CREATE OR REPLACE FUNCTION pg_catalog.quote_ident(text)`
    /// approved as a DDL statement ran its new body on every later call).
    fn changes_builtin(&mut self, what: &str) {
        self.add(&[Ddl, Privilege, ServerAccess]);
        self.note(|| format!("changes built-in {what}"));
    }

    /// [`changes_builtin`] for DDL naming the function `names`.
    fn builtin_function(&mut self, names: &[Value]) {
        let parts = strings(names);
        let (schema, name) = schema_and_name(&parts);
        if builtins::is_builtin_function_name(schema, identifier(name)) {
            self.changes_builtin(&format!("function `{}`", qualified(&parts)));
        }
    }

    /// [`changes_builtin`] for DDL on the relation `rv`.
    fn builtin_relation(&mut self, rv: &Value) {
        if builtins::is_system_catalog(str_of(rv, "schemaname"), str_of(rv, "relname")) {
            self.changes_builtin(&format!("relation `{}`", table_name(rv)));
        }
    }

    /// [`changes_builtin`] for `ALTER … RENAME`, `OWNER TO` and `SET
    /// SCHEMA` of a built-in object.
    fn builtin_object(&mut self, n: &Value) {
        if n["relation"].is_object() {
            self.builtin_relation(&n["relation"]);
        }
        match node_of(&n["object"]) {
            Some(("ObjectWithArgs", o)) => self.builtin_function(list(o, "objname")),
            Some(("List", l)) => {
                let parts = strings(list(l, "items"));
                if let [schema, _, ..] = parts.as_slice() {
                    if is_system_schema(schema) {
                        self.changes_builtin(&format!("object `{}`", parts.join(".")));
                    }
                }
            }
            _ => {}
        }
    }

    /// A function's `SET` clause applies while its body runs: a setting
    /// that changes how SQL is read (`standard_conforming_strings = off`)
    /// would make the body mean something other than what sqlgate read.
    fn function_settings(&mut self, options: &[Value]) {
        for o in options {
            let Some((_, d)) = node_of(o) else { continue };
            if str_of(d, "defname") != "set" {
                continue;
            }
            if let Some(("VariableSetStmt", v)) = node_of(&d["arg"]) {
                let name = str_of(v, "name");
                if settings::value_matters(name) {
                    self.forbid(Some(settings::FUNCTION_SET));
                }
                // The body runs with it: its unqualified names may reach
                // built-ins (see `settings::shadows_builtins`).
                if name.eq_ignore_ascii_case("search_path") {
                    let parts: Vec<String> = list(v, "args").iter().filter_map(constant).collect();
                    if settings::shadows_builtins(&parts) {
                        self.add(&[Privilege]);
                    }
                }
            }
        }
    }

    /// Triggers, rules and policies: their expressions are code whose
    /// literals matter to the approver. The rule's actions don't run now.
    fn code_body(&mut self, n: &Value) {
        self.code = true;
        self.need_original();
        self.not_run += 1;
        self.children(n);
        self.not_run -= 1;
    }

    /// A trigger runs its function on others' statements from now on: the
    /// CREATE TRIGGER carries what that function does (from the catalog,
    /// as for a call).
    fn trigger_function(&mut self, n: &Value) {
        let parts = strings(list(n, "funcname"));
        let (schema, name) = schema_and_name(&parts);
        let (c, unknown) = builtins::call(schema, name);
        if !unknown {
            return self.add_fn(c);
        }
        let f = parts.join(".");
        if !self.functions.contains(&f) {
            self.functions.push(f);
        }
    }

    /// A rule's actions run on others' statements from now on: `CREATE
    /// RULE … DO ALSO DELETE FROM customers` is what that DELETE is, and
    /// destructive whatever its WHERE, since no row count of the statement
    /// that sets it off counts the rows it changes.
    fn rule(&mut self, n: &Value) {
        self.code = true;
        self.need_original();
        // `ON INSERT … DO INSTEAD NOTHING` (or instead of anything): every
        // later write of the event, anyone's, no longer reaches the table
        // (round J, J5).
        if n["instead"].as_bool() == Some(true) && int(n, "event") != CmdType::CmdSelect as i64 {
            self.add(&[Destructive]);
        }
        for a in list(n, "actions") {
            if let Some(("UpdateStmt" | "DeleteStmt" | "MergeStmt", _)) = node_of(a) {
                self.add(&[Destructive]);
            }
            if let Some(("InsertStmt", i)) = node_of(a) {
                if !i["on_conflict_clause"].is_null() {
                    self.add(&[Destructive]);
                }
            }
        }
        self.children(n);
    }

    fn alter_table(&mut self, n: &Value) {
        self.add(&[Ddl]);
        // `ALTER TABLE|VIEW information_schema.sql_features …`, `ALTER
        // VIEW pg_roles ALTER COLUMN … SET DEFAULT …`: a built-in changed.
        if n["relation"].is_object() {
            self.builtin_relation(&n["relation"]);
        }
        use AlterTableType as A;
        let privilege = [
            A::AtChangeOwner,
            A::AtDisableTrig,
            A::AtDisableTrigAll,
            A::AtDisableTrigUser,
            A::AtEnableReplicaTrig,
            A::AtEnableAlwaysTrig,
            A::AtDisableRule,
            A::AtEnableReplicaRule,
            A::AtEnableAlwaysRule,
            A::AtDisableRowSecurity,
            A::AtNoForceRowSecurity,
        ];
        for c in list(n, "cmds") {
            let Some((_, c)) = node_of(c) else { continue };
            let sub = int(c, "subtype");
            // A type change rewrites every row: to what `USING` says, or
            // cut by the narrower type (`numeric(10,0)` rounds, `date`
            // drops the time), as a mass UPDATE would.
            // Rows leave the table (DETACH PARTITION, NO INHERIT: round J,
            // J2) or are lost at the next crash and never reach a standby
            // (SET UNLOGGED, J4).
            let loses_rows = [
                A::AtDropColumn,
                A::AtAlterColumnType,
                A::AtDetachPartition,
                A::AtDetachPartitionFinalize,
                A::AtDropInherit,
                A::AtSetUnLogged,
            ];
            if loses_rows.iter().any(|a| *a as i64 == sub) {
                self.add(&[Destructive]);
            }
            if privilege.iter().any(|p| *p as i64 == sub) {
                self.add(&[Privilege]);
            }
        }
        self.children(n);
    }

    fn drop(&mut self, n: &Value) {
        self.add(&[Ddl, Destructive]);
        let t = int(n, "remove_type");
        let tables = [
            ObjectType::ObjectTable,
            ObjectType::ObjectView,
            ObjectType::ObjectMatview,
            ObjectType::ObjectForeignTable,
        ];
        if !tables.iter().any(|x| *x as i64 == t) {
            return;
        }
        for o in list(n, "objects") {
            if let Some(("List", l)) = node_of(o) {
                let parts = strings(list(l, "items"));
                self.tables.insert(qualified(&parts));
            }
        }
    }

    /// A WHERE that holds for every row, as far as the tree can tell
    /// without reading literals: none at all, one that names no column
    /// outside subqueries (`1=1`, `true`, `'a'='b'`), a comparison of an
    /// expression with itself, `x IS NULL OR x IS NOT NULL`, an OR with any
    /// such arm or an AND of only such arms. (The row-count guard is what
    /// catches the rest.)
    fn always_true(&self, w: &Value) -> bool {
        let Some((ty, n)) = node_of(w) else {
            return true;
        };
        if !mentions_column(w) {
            return true;
        }
        match ty {
            "BoolExpr" => {
                let args = list(n, "args");
                let op = int(n, "boolop");
                if op == BoolExprType::AndExpr as i64 {
                    args.iter().all(|a| self.always_true(a))
                } else if op == BoolExprType::OrExpr as i64 {
                    args.iter().any(|a| self.always_true(a)) || null_test_pair(args)
                } else {
                    false
                }
            }
            "AExpr" => {
                let op = strings(list(n, "name"));
                matches!(op.as_slice(), ["="] | [">="] | ["<="])
                    && same_expr(&n["lexpr"], &n["rexpr"])
            }
            _ => false,
        }
    }
}

/// `{"node": {"Type": {...}}}` → `("Type", {...})`.
pub fn node_of(v: &Value) -> Option<(&str, &Value)> {
    let inner = v.as_object()?.get("node")?.as_object()?;
    let (ty, n) = inner.iter().next()?;
    Some((ty.as_str(), n))
}

/// Every relation named anywhere under `v`, as (schema, name).
fn each_relation(v: &Value, f: &mut impl FnMut(&str, &str)) {
    match v {
        Value::Object(m) => {
            if is_range_var(m) {
                f(str_of(v, "schemaname"), str_of(v, "relname"));
            }
            for x in m.values() {
                each_relation(x, f);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| each_relation(x, f)),
        _ => {}
    }
}

fn is_range_var(m: &Map<String, Value>) -> bool {
    m.contains_key("relname") && m.contains_key("relpersistence")
}

/// A TypeName not wrapped as a node (a field of one): pg_query writes its
/// `typemod` always (-1 when none).
fn is_type_name(m: &Map<String, Value>) -> bool {
    m.get("names").is_some_and(Value::is_array) && m.contains_key("typemod")
}

pub(super) fn str_of<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

fn int(v: &Value, k: &str) -> i64 {
    v.get(k).and_then(Value::as_i64).unwrap_or(0)
}

pub(super) fn list<'a>(v: &'a Value, k: &str) -> &'a [Value] {
    v.get(k)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// The `sval`s of a list of `String` nodes (qualified names, operators).
/// Collects into `out` what of `v` (a parse tree) planning evaluates
/// ([`super::Foldable`]); `true` when `v` holds a column reference.
pub(super) fn foldable(v: &Value, out: &mut super::Foldable) -> bool {
    match v {
        Value::Array(a) => a.iter().fold(false, |c, x| foldable(x, out) | c),
        Value::Object(m) => {
            let column = m
                .iter()
                .fold(false, |c, (k, x)| k == "ColumnRef" || foldable(x, out) | c);
            if !column {
                match node_of(v) {
                    Some(("FuncCall", n)) => {
                        if let Some(name) = strings(list(n, "funcname")).last() {
                            out.calls.insert((*name).to_string());
                        }
                    }
                    Some(("AExpr" | "TypeCast", _)) => out.operators = true,
                    _ => {}
                }
            }
            column
        }
        _ => false,
    }
}

fn is_system_schema(schema: &str) -> bool {
    matches!(schema, "pg_catalog" | "information_schema" | "pg_toast")
}

fn strings(l: &[Value]) -> Vec<&str> {
    l.iter()
        .filter_map(|x| match node_of(x) {
            Some(("String", s)) => Some(str_of(s, "sval")),
            _ => None,
        })
        .collect()
}

/// `catalog.schema.table` as far as given; names are already folded by
/// the parser (unquoted lower-cased, quoted verbatim, `U&` decoded).
/// `schema.name` or `name`, as PostgreSQL resolves it. A database part
/// (`app.hr.salaries`) is dropped: PostgreSQL accepts only the current
/// database there, so it names the same table as `hr.salaries`, and rules
/// written for that must apply. Each part is cut to 63 bytes, as the server
/// cuts identifiers (NAMEDATALEN − 1), so a longer spelling names the table
/// it will reach.
pub(super) fn table_name(rv: &Value) -> String {
    let (schema, name) = (str_of(rv, "schemaname"), str_of(rv, "relname"));
    if schema.is_empty() {
        identifier(name).to_string()
    } else {
        format!("{}.{}", identifier(schema), identifier(name))
    }
}

/// The schema (empty when unqualified) and name of `[db.]schema.name` parts.
fn schema_and_name<'a>(parts: &[&'a str]) -> (&'a str, &'a str) {
    match parts {
        [.., schema, name] => (schema, name),
        [name] => ("", name),
        [] => ("", ""),
    }
}

/// `[db.]schema.name` parts as [`table_name`] writes them.
fn qualified(parts: &[&str]) -> String {
    match schema_and_name(parts) {
        ("", name) => identifier(name).to_string(),
        (schema, name) => format!("{}.{}", identifier(schema), identifier(name)),
    }
}

/// An identifier as the server keeps it: at most 63 bytes, cut on a
/// character boundary (`pg_mbcliplen`).
pub fn identifier(s: &str) -> &str {
    const MAX: usize = 63;
    if s.len() <= MAX {
        return s;
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn is_pg_settings(rv: &Value) -> bool {
    let rv = node_of(rv).map_or(rv, |(_, x)| x);
    str_of(rv, "relname") == "pg_settings" && matches!(str_of(rv, "schemaname"), "" | "pg_catalog")
}

/// Whether setting `name` changes what unqualified names mean: the path,
/// and the role (`"$user"` in the path is the current role, review F17).
fn moves_names(name: &str) -> bool {
    ["search_path", "role", "session_authorization"]
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n))
}

/// A constant's value as text, or `None`. Through a cast only to `text` or
/// `varchar` without a length, which keeps the value as written: others
/// change it (`'app.keyXX'::varchar(7)` is `app.key`; `::char`, `::name`,
/// `::bpchar` cut or pad it) or run a user's code (a domain), so the
/// server would use another value than the one decided on (review 16).
fn constant(v: &Value) -> Option<String> {
    match node_of(v)? {
        ("AConst", c) => {
            let val = c.get("val")?.as_object()?;
            let (_, inner) = val.iter().next()?;
            let x = inner.as_object()?.values().next()?;
            match x {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                Value::Bool(b) => Some(if *b { "on" } else { "off" }.into()),
                _ => None,
            }
        }
        ("TypeCast", t) => {
            let ty = &t["type_name"];
            let names = strings(list(ty, "names"));
            let keeps = matches!(
                names.as_slice(),
                ["text" | "varchar"] | ["pg_catalog", "text" | "varchar"]
            ) && list(ty, "typmods").is_empty()
                && list(ty, "array_bounds").is_empty()
                && !ty["setof"].as_bool().unwrap_or(false);
            if keeps {
                constant(&t["arg"])
            } else {
                None
            }
        }
        _ => None,
    }
}

/// What a name in a statement's range table stands for, for
/// [`exposes_whole_rows`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum Range<'a> {
    /// A guarded catalog (by its own name or alias): the catalog's name.
    Guarded(&'a str),
    /// A join's alias: a row of every column of both sides.
    Join,
    /// Anything else (a table, a subquery, a function, a CTE).
    Other,
}

/// Every name a relation, join, subquery, function or CTE goes by in `v`;
/// a name bound twice keeps the stricter meaning.
fn range_names<'a>(v: &'a Value, out: &mut HashMap<&'a str, Range<'a>>) {
    fn bind<'a>(out: &mut HashMap<&'a str, Range<'a>>, name: &'a str, r: Range<'a>) {
        if name.is_empty() {
            return;
        }
        let e = out.entry(name).or_insert(r);
        if *e == Range::Other {
            *e = r;
        }
    }
    match v {
        Value::Object(m) => {
            let alias = m.get("alias").map(|a| str_of(a, "aliasname")).unwrap_or("");
            match node_of(v) {
                Some(("RangeVar", rv)) => range_names_of_var(rv, out),
                Some(("JoinExpr", j)) => {
                    bind(out, str_of(&j["alias"], "aliasname"), Range::Join);
                    // `JOIN … USING (a) AS u` names a row of the join too.
                    bind(
                        out,
                        str_of(&j["join_using_alias"], "aliasname"),
                        Range::Join,
                    );
                }
                Some(("CommonTableExpr", c)) => bind(out, str_of(c, "ctename"), Range::Other),
                Some((_, n)) => bind(out, str_of(&n["alias"], "aliasname"), Range::Other),
                None if is_range_var(m) => range_names_of_var(v, out),
                None => bind(out, alias, Range::Other),
            }
            for x in m.values() {
                range_names(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| range_names(x, out)),
        _ => {}
    }
}

fn range_names_of_var<'a>(rv: &'a Value, out: &mut HashMap<&'a str, Range<'a>>) {
    let (schema, name) = (str_of(rv, "schemaname"), str_of(rv, "relname"));
    let r = if builtins::guarded(schema, name) {
        Range::Guarded(name)
    } else {
        Range::Other
    };
    for n in [name, str_of(&rv["alias"], "aliasname")] {
        if !n.is_empty() {
            let e = out.entry(n).or_insert(r);
            if *e == Range::Other {
                *e = r;
            }
        }
    }
}

/// Whether `v` may read a guarded catalog's columns without naming each:
/// `*` and `x.*` anywhere; a whole row of a guarded catalog or a join by its
/// name (`p`, `to_jsonb(p)`, `(p).proconfig`, `j`); `p.x` where `x` is not
/// one of the catalog's columns (attribute notation: `p.to_jsonb` is
/// `to_jsonb(p)`), `j.x` for a join alias; a settings column after `(…).`;
/// an alias renaming columns (`pg_proc AS p(a, b, …)`); a COPY of a table
/// without a column list (or with a settings column in it).
fn exposes_whole_rows(v: &Value, ranges: &HashMap<&str, Range>) -> bool {
    let Value::Object(m) = v else {
        return match v {
            Value::Array(a) => a.iter().any(|x| exposes_whole_rows(x, ranges)),
            _ => false,
        };
    };
    match node_of(v) {
        Some(("ColumnRef", c)) => {
            let fields = list(c, "fields");
            if fields
                .iter()
                .any(|f| matches!(node_of(f), Some(("AStar", _))))
            {
                return true;
            }
            let names = strings(fields);
            let whole = |n: &str| matches!(ranges.get(n), Some(Range::Guarded(_) | Range::Join));
            let exposes = match names.as_slice() {
                // `p`, and `pg_catalog.pg_proc` (a whole row by its
                // qualified name).
                [.., last] if whole(last) => true,
                [.., q, col] => match ranges.get(q) {
                    Some(Range::Guarded(catalog)) => !builtins::guarded_plain_column(catalog, col),
                    Some(Range::Join) => true,
                    Some(Range::Other) => false,
                    // A qualifier bound nowhere sqlgate saw (review 18):
                    // it may name a row some spelling binds unseen.
                    None => true,
                },
                [_] | [] => false,
            };
            if exposes {
                return true;
            }
        }
        Some(("AIndirection", i)) => {
            let fields = list(i, "indirection");
            if fields
                .iter()
                .any(|f| matches!(node_of(f), Some(("AStar", _))))
                || strings(fields).iter().any(|f| builtins::settings_column(f))
            {
                return true;
            }
        }
        Some(("CopyStmt", c)) if !c["relation"].is_null() => {
            let cols = strings(list(c, "attlist"));
            if cols.is_empty() || cols.iter().any(|n| builtins::settings_column(n)) {
                return true;
            }
        }
        _ => {}
    }
    if m.get("alias")
        .is_some_and(|a| a.is_object() && !list(a, "colnames").is_empty())
    {
        return true;
    }
    m.values().any(|x| exposes_whole_rows(x, ranges))
}

/// Whether an expression names a column outside subqueries.
fn mentions_column(v: &Value) -> bool {
    match v {
        Value::Object(m) => match node_of(v) {
            Some(("ColumnRef", _)) => true,
            Some(("SubLink", s)) => mentions_column(&s["testexpr"]),
            _ => m.values().any(mentions_column),
        },
        Value::Array(a) => a.iter().any(mentions_column),
        _ => false,
    }
}

/// Structural equality, ignoring source locations.
fn same_expr(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| k == "location" || y.get(k).is_some_and(|w| same_expr(v, w)))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| same_expr(v, w))
        }
        _ => a == b,
    }
}

/// `x IS NULL OR x IS NOT NULL` (for the same `x`) among OR's arms.
fn null_test_pair(args: &[Value]) -> bool {
    let tests: Vec<(&Value, i64)> = args
        .iter()
        .filter_map(|a| match node_of(a) {
            Some(("NullTest", t)) => Some((&t["arg"], int(t, "nulltesttype"))),
            _ => None,
        })
        .collect();
    tests.iter().any(|(x, k)| {
        *k == NullTestType::IsNull as i64
            && tests
                .iter()
                .any(|(y, j)| *j == NullTestType::IsNotNull as i64 && same_expr(x, y))
    })
}
