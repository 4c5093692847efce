//! The database's own catalog, read on a side connection: user-defined
//! functions (placed by their bodies) and the upstream login's rights.
//!
//! The classifier places built-in functions from its reviewed lists and
//! leaves every other call *pending*: `unparsed` until resolved here
//! (`StatementInfo::pending`). Resolution reads only a [`Snapshot`] of the
//! catalog, loaded in the background and refreshed every `REFRESH` and as
//! soon as a DDL statement is seen; so deciding never waits for the network,
//! and the classification cache never holds catalog facts (its key could
//! not cover them).
//!
//! Staleness fails closed: a snapshot is current only while it was loaded
//! after the last DDL statement that completed through sqlgate (the relay
//! reports completions; a DDL statement is a barrier there, so the same
//! session's next statement is read only after its answer) and while it is
//! younger than `MAX_AGE`. The relay waits up to `WAIT` for a current one
//! ([`Catalog::wait_current`]); without one, every statement that touches a
//! relation or calls a user function gets `unparsed`. In a query string, the
//! statements after a DDL statement do too (it may redefine what they
//! read). A DDL statement that was denied or never ran changes nothing.
//! What stays open: a function changed directly on the database, not
//! through sqlgate, may be placed by its previous body for up to `REFRESH`.
//!
//! Name resolution is conservative: an unqualified name is every function
//! of that name in any schema (the session's `search_path` is not
//! tracked), overloads together; the classes are their union.

pub(crate) mod body;
mod query;

use crate::classify::{Analysis, Class, ClassSet, Classifier, ClassifierOptions, Dialect};
use crate::config::Listener;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

pub const REFRESH: Duration = Duration::from_secs(2);
const MAX_AGE: Duration = Duration::from_secs(30);
/// How long a statement waits for a current snapshot before it is decided
/// without one (fail closed).
pub const WAIT: Duration = Duration::from_secs(5);
/// Deepest chain of user functions calling each other that is followed.
const MAX_DEPTH: usize = 8;
/// More user functions than this are not loaded (each call stays unparsed).
const MAX_FUNCTIONS: usize = 20_000;

/// What one function (all overloads of a name in one schema) does.
#[derive(Debug, Clone, Default, PartialEq)]
struct Resolved {
    classes: ClassSet,
    tables: BTreeSet<String>,
}

#[derive(Default)]
pub struct Snapshot {
    /// The `ddl` generation when loading began.
    generation: u64,
    loaded: Option<Instant>,
    /// name → (schema, what it does).
    functions: HashMap<String, Vec<(String, Resolved)>>,
    /// Views and materialized views: name → (schema, what reading it does);
    /// and tables, for what reading them sets off (policies, children).
    relations: HashMap<String, Vec<(String, Resolved)>>,
    /// Tables: what changing them sets off (defaults, constraints,
    /// triggers, rules, policies for changes).
    on_write: HashMap<String, Vec<(String, Resolved)>>,
    /// Tables: the other tables a change of them changes: their children,
    /// and the referencing tables whose foreign keys act on a delete or on
    /// a key update.
    children: HashMap<String, Vec<(String, Resolved)>>,
    on_delete: HashMap<String, Vec<(String, Resolved)>>,
    on_update: HashMap<String, Vec<(String, Resolved)>>,
    on_truncate: HashMap<String, Vec<(String, Resolved)>>,
    /// Tables with deferrable constraint triggers (a deferrable foreign
    /// key's among them): name → schemas. A write to one queues code that
    /// runs at COMMIT, on the definitions of then.
    deferred: HashMap<String, Vec<String>>,
    /// User relations' columns, in attribute order (dropped ones left
    /// out): name → (schema, columns). What `*` over one expands to, for
    /// masking (`classify::lineage`).
    columns: ColumnLists,
    /// The same by OID and attribute number (`Catalog::column_at`).
    by_oid: ColumnsByOid,
    /// Tables: what reading the table on the other side of a foreign key
    /// sets off (policies, folded index predicates), which a change runs
    /// through the key's check query.
    fk_checked: HashMap<String, Vec<(String, Resolved)>>,
    /// Types whose values run user code (a domain's CHECK), by OID: what
    /// a parameter of that type runs when Bind converts it.
    param_types: HashMap<u32, Resolved>,
    /// User code behind a built-in type: nothing is placeable.
    opaque: bool,
    /// SHA-256 over every definition read (function sources, views,
    /// rules, attached code, operators, types, event triggers): a body
    /// that changes but places the same (another WHERE) still moves the
    /// generation, so held statements and portals are decided again.
    digest: [u8; 32],
    /// The `search_path` a new session of the upstream login starts with.
    search_path: Option<String>,
    /// What the event triggers run on DDL, if there are any.
    on_ddl: Option<Resolved>,
    /// Warnings about the upstream login's rights.
    warnings: Vec<String>,
}

impl Snapshot {
    /// Whether `other` places every function and relation as this one does:
    /// it was read from the same definitions (everything it places is
    /// built from the rows the digest covers, and `opaque`). Not by
    /// comparing the maps built: their lists come in an order that varies
    /// from one load to the next, which moved the generation on every
    /// refresh and refused every approval of a statement reaching user
    /// code held over one (review F, F19).
    fn same_definitions(&self, other: &Snapshot) -> bool {
        self.loaded.is_some()
            && other.loaded.is_some()
            && self.opaque == other.opaque
            && self.digest == other.digest
    }
}

pub struct Catalog {
    database: String,
    snapshot: RwLock<Arc<Snapshot>>,
    ddl: AtomicU64,
    /// Snapshots installed so far.
    loads: AtomicU64,
    /// The `ddl` generation of the installed snapshot.
    installed: AtomicU64,
    wake: Notify,
    /// Woken when a snapshot is installed.
    loaded: Notify,
    classifier: Classifier,
}

impl Catalog {
    pub fn new(database: &str) -> Catalog {
        Catalog {
            database: database.to_string(),
            snapshot: RwLock::new(Arc::new(Snapshot::default())),
            ddl: AtomicU64::new(0),
            loads: AtomicU64::new(0),
            // Nothing loaded yet: not current.
            installed: AtomicU64::new(u64::MAX),
            wake: Notify::new(),
            loaded: Notify::new(),
            classifier: Classifier::new(Dialect::Postgres, ClassifierOptions::default()),
        }
    }

    /// Moves with every schema change seen and every snapshot that places
    /// something otherwise: a decision made at one value may be stale at a
    /// later one (a definition changed on the database directly shows as a
    /// new snapshot).
    pub fn generation(&self) -> u64 {
        self.ddl
            .load(Ordering::Acquire)
            .wrapping_add(self.loads.load(Ordering::Acquire))
    }

    /// Moves whenever a snapshot places anything differently (any
    /// definition changed): what a held statement's approval was given on.
    pub fn definitions(&self) -> u64 {
        self.loads.load(Ordering::Acquire)
    }

    /// The catalog may have changed (a DDL statement completed): stop
    /// trusting the snapshot and reload it now.
    pub fn changed(&self) {
        self.ddl.fetch_add(1, Ordering::AcqRel);
        self.wake.notify_one();
    }

    /// Whether the snapshot was loaded after the last DDL statement that
    /// completed (cheap: two atomics; the age is checked by `resolve`).
    pub fn is_current(&self) -> bool {
        self.installed.load(Ordering::Acquire) == self.ddl.load(Ordering::Acquire)
    }

    /// Waits, up to `limit`, until the snapshot is current.
    pub async fn wait_current(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let loaded = self.loaded.notified();
            tokio::pin!(loaded);
            loaded.as_mut().enable();
            if self.is_current() {
                return;
            }
            self.wake.notify_one();
            if tokio::time::timeout_at(deadline, loaded).await.is_err() {
                return;
            }
        }
    }

    /// The `search_path` a new session of the upstream login starts with
    /// (from the database's and role's settings as last read).
    pub fn search_path(&self) -> Option<String> {
        self.current().search_path.clone()
    }

    /// Whether a write to one of `tables` (as the classifier writes them)
    /// may queue a deferred constraint trigger. Unqualified names match
    /// any schema, and no names at all (a statement whose tables are not
    /// known) match any deferred trigger (fail closed).
    pub fn defers(&self, tables: &[String]) -> bool {
        let snap = self.current();
        if tables.is_empty() {
            // Nothing named: whatever it writes may queue one.
            return !snap.deferred.is_empty();
        }
        tables.iter().any(|t| {
            let (schema, name) = match t.rsplit_once('.') {
                Some((q, n)) => (q.rsplit('.').next(), n),
                None => (None, t.as_str()),
            };
            snap.deferred
                .get(name)
                .is_some_and(|v| schema.is_none_or(|s| v.iter().any(|x| x == s)))
        })
    }

    /// What converting Bind parameters of the types `oids` (a Parse's
    /// parameter types) runs: `None` when no type is a user type (OIDs
    /// from 16384 up); `unparsed` when the snapshot is not current.
    pub fn param_type_effects(&self, oids: &[u32]) -> Option<(ClassSet, Vec<String>)> {
        const FIRST_USER_OID: u32 = 16384;
        if !oids.iter().any(|&o| o >= FIRST_USER_OID) {
            return None;
        }
        let snap = self.current();
        let fresh = snap.generation == self.ddl.load(Ordering::Acquire)
            && snap.loaded.is_some_and(|t| t.elapsed() < MAX_AGE);
        if !fresh {
            return Some((ClassSet::of(&[Class::Unparsed]), Vec::new()));
        }
        let mut classes = ClassSet::EMPTY;
        let mut tables = BTreeSet::new();
        for r in oids.iter().filter_map(|o| snap.param_types.get(o)) {
            classes = classes.union(r.classes);
            tables.extend(r.tables.iter().cloned());
        }
        (!classes.is_empty() || !tables.is_empty()).then(|| (classes, tables.into_iter().collect()))
    }

    /// The columns of relation `table` (as the classifier names it), in
    /// attribute order; `None` when the snapshot does not know it, or an
    /// unqualified name is in several schemas (which one the server reads
    /// depends on the search path: a `*` over it is then refused).
    pub fn columns(&self, table: &str) -> Option<Arc<[String]>> {
        let snap = self.current();
        let (schema, name) = match table.rsplit_once('.') {
            Some((q, n)) => (q.rsplit('.').next(), n),
            None => (None, table),
        };
        let found = snap.columns.get(name)?;
        match schema {
            Some(s) => found.iter().find(|(x, _)| x == s).map(|(_, c)| c.clone()),
            None if found.len() == 1 => Some(found[0].1.clone()),
            None => None,
        }
    }

    /// The relation (`schema.name`) and column a RowDescription's origin
    /// (table OID, attribute number) names, if the snapshot knows it.
    pub fn column_at(&self, oid: u32, attnum: i16) -> Option<(String, String)> {
        let snap = self.current();
        let (table, attrs) = snap.by_oid.get(&oid)?;
        Some((table.clone(), attrs.get(&attnum)?.clone()))
    }

    /// The relation (`schema.name`) with OID `oid`, if the snapshot knows it.
    pub fn relation_at(&self, oid: u32) -> Option<String> {
        Some(self.current().by_oid.get(&oid)?.0.clone())
    }

    /// Warnings about the upstream login (for the log and `/healthz`).
    pub fn warnings(&self) -> Vec<String> {
        self.current().warnings.clone()
    }

    fn current(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .map(|s| Arc::clone(&s))
            .unwrap_or_default()
    }

    /// Places the pending function calls of `a`, where the snapshot can,
    /// adds what user overloads of built-ins called by name do, and follows
    /// views to the tables and functions they read. Never makes a statement
    /// less restrictive than what it reaches.
    pub fn resolve(&self, a: Arc<Analysis>, schema_pending: bool) -> Arc<Analysis> {
        let snap = self.current();
        let fresh = !schema_pending
            && snap.generation == self.ddl.load(Ordering::Acquire)
            && snap.loaded.is_some_and(|t| t.elapsed() < MAX_AGE);
        // Statements from here on can't be placed: the snapshot is not
        // current, or a DDL statement before them in the string may change
        // what they read.
        let unplaceable = if fresh {
            a.statements
                .iter()
                .position(|s| s.classes.contains(Class::Ddl) && !keeps_reading_with(s, Some(&snap)))
                .map_or(usize::MAX, |i| i + 1)
        } else {
            0
        };
        let reaches =
            |s: &crate::classify::StatementInfo| !s.tables.is_empty() || s.pending.is_some();
        if a.statements.iter().skip(unplaceable).any(reaches) {
            let mut out = (*a).clone();
            for s in out
                .statements
                .iter_mut()
                .skip(unplaceable)
                .filter(|s| reaches(s))
            {
                s.classes.insert(Class::Unparsed);
                s.moves_names = true;
                s.note.get_or_insert_with(|| {
                    if fresh {
                        "follows a schema change in the same query string: the catalog can't place what it reads until that has run".into()
                    } else {
                        format!("the catalog of database {} is not current (a schema change of this session's open transaction, a reload after one, or unreachable): views and functions can't be placed", self.database)
                    }
                });
            }
            if !fresh {
                return Arc::new(out);
            }
            return self.resolve_current(&snap, Arc::new(out), unplaceable);
        }
        if !fresh {
            return a;
        }
        self.resolve_current(&snap, a, usize::MAX)
    }

    /// `resolve` with a current snapshot, for the statements before `until`.
    fn resolve_current(&self, snap: &Snapshot, a: Arc<Analysis>, until: usize) -> Arc<Analysis> {
        // The common case costs a few hash look-ups and no allocation.
        if snap.opaque {
            let mut out = (*a).clone();
            for s in out.statements.iter_mut().take(until) {
                s.classes.insert(Class::Unparsed);
                s.moves_names = true;
                s.note.get_or_insert_with(|| {
                    "user code runs behind a built-in type on this database (see the log): nothing can be placed".into()
                });
            }
            return Arc::new(out);
        }
        let work = a.statements.iter().take(until).any(|s| {
            (snap.on_ddl.is_some() && s.classes.contains(Class::Ddl))
                || s.tables.iter().any(|t| {
                    snap.view(t).is_some()
                        || snap.on_write.contains_key(base_name(t))
                        || snap.children.contains_key(base_name(t))
                        || snap.on_delete.contains_key(base_name(t))
                        || snap.on_update.contains_key(base_name(t))
                        || snap.on_truncate.contains_key(base_name(t))
                        || snap.fk_checked.contains_key(base_name(t))
                })
                || s.pending.as_ref().is_some_and(|p| {
                    !p.functions.is_empty() || p.builtins.iter().any(|b| snap.lookup(b).is_some())
                })
        });
        if !work {
            return a;
        }
        let mut out = (*a).clone();
        for s in out.statements.iter_mut().take(until) {
            let mut tables: BTreeSet<String> = s.tables.iter().cloned().collect();
            // What the statement reaches through views, functions and
            // user overloads of the built-ins it calls by name.
            let mut reached = ClassSet::EMPTY;
            let mut base = s.classes;
            if let Some(p) = s.pending.take() {
                let mut all = true;
                for f in &p.functions {
                    match snap.lookup(f) {
                        Some(r) => {
                            reached = reached.union(r.classes);
                            tables.extend(r.tables.iter().cloned());
                        }
                        None => all = false,
                    }
                }
                for b in &p.builtins {
                    if let Some(r) = snap.lookup(b) {
                        reached = reached.union(r.classes);
                        tables.extend(r.tables.iter().cloned());
                    }
                }
                if all {
                    // Every function placed: the `unparsed` that stood in
                    // for them goes (the base never had it for them).
                    base = p.base;
                    if !p.functions.is_empty() {
                        s.note = None;
                    }
                } else {
                    s.pending = Some(p);
                }
            }
            // Every table reached, the statement's own and those the
            // functions it calls read, through what reading it sets off
            // (a view's definition, a policy, a folded index predicate), and
            // so on for the tables that reaches.
            let mut expanded: BTreeSet<String> = BTreeSet::new();
            loop {
                let next: Vec<String> = tables.difference(&expanded).cloned().collect();
                if next.is_empty() {
                    break;
                }
                for t in next {
                    if let Some(v) = snap.view(&t) {
                        reached = reached.union(v.classes);
                        tables.extend(v.tables.iter().cloned());
                    }
                    expanded.insert(t);
                }
                if tables.len() > MAX_REACHED {
                    reached.insert(Class::Unparsed);
                    break;
                }
            }
            s.classes = base.union(reached);
            // What code the statement sets off does (not its own syntax).
            let mut via_code = reached;
            if let Some(d) = snap
                .on_ddl
                .as_ref()
                .filter(|_| s.classes.contains(Class::Ddl))
            {
                // Event triggers run on this DDL.
                s.classes = s.classes.union(d.classes);
                via_code = via_code.union(d.classes);
                tables.extend(d.tables.iter().cloned());
            }
            if changes(s.classes) {
                // What the change sets off on every table it reaches
                // (`on_write_closure`).
                let (c, t) = on_write_closure(snap, &s.tables, &tables, Change::of(s));
                s.classes = s.classes.union(c);
                via_code = via_code.union(c);
                tables.extend(t);
            }
            // Code it reaches (a view's, a trigger's, a default's) may set
            // `search_path` or the role for the rest of the session, as a
            // call does (review F, F16): what it added says so.
            if via_code.intersects(ClassSet::of(&[
                Class::Session,
                Class::Privilege,
                Class::Unparsed,
            ])) {
                s.moves_names = true;
            }
            if s.classes.is_empty() {
                s.classes.insert(Class::Read);
            }
            s.tables = tables.into_iter().collect();
        }
        Arc::new(out)
    }

    /// Keeps the snapshot fresh for as long as the process runs: connects
    /// with the listener's own upstream settings, reloads every `REFRESH`
    /// or when woken, reconnects after errors.
    pub async fn run(self: Arc<Self>, l: Listener, tls: Arc<rustls::ClientConfig>) {
        let mut warned: Vec<String> = Vec::new();
        loop {
            let params = [(
                "application_name".to_string(),
                "sqlgate-catalog".to_string(),
            )];
            let connect = crate::proxy::postgres::upstream::connect(
                &l.upstream,
                l.upstream_tls,
                &tls,
                &params,
            );
            let mut conn = match tokio::time::timeout(Duration::from_secs(10), connect).await {
                Ok(Ok(c)) => c.stream,
                Ok(Err(e)) => {
                    tracing::warn!(database = %self.database, "catalog connection failed: {e}");
                    tokio::time::sleep(REFRESH).await;
                    continue;
                }
                Err(_) => {
                    tracing::warn!(database = %self.database, "catalog connection timed out");
                    continue;
                }
            };
            // The types query's answer, kept while the catalogs it reads
            // are unchanged (`TYPES_FINGERPRINT`): it is the costly one.
            let mut cache = LoadCache::default();
            loop {
                let generation = self.ddl.load(Ordering::Acquire);
                let load = tokio::time::timeout(
                    Duration::from_secs(30),
                    Snapshot::load(&mut conn, &self.classifier, generation, &mut cache),
                );
                match load.await {
                    Ok(Ok(s)) => {
                        if s.warnings != warned {
                            for w in &s.warnings {
                                tracing::warn!(database = %self.database, "{w}");
                            }
                            warned = s.warnings.clone();
                        }
                        let generation = s.generation;
                        if let Ok(mut cur) = self.snapshot.write() {
                            // Decisions depend on what definitions do, not
                            // on when they were read: the generation moves
                            // only when that changed.
                            let moved = !cur.same_definitions(&s);
                            *cur = Arc::new(s);
                            if moved {
                                self.loads.fetch_add(1, Ordering::AcqRel);
                            }
                        }
                        self.installed.store(generation, Ordering::Release);
                        self.loaded.notify_waiters();
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(database = %self.database, "catalog query failed: {e}");
                        // The last snapshot is not what the database is
                        // now: not current until a load succeeds (review
                        // 20, F2: it kept deciding for up to `MAX_AGE`).
                        self.ddl.fetch_add(1, Ordering::AcqRel);
                        break;
                    }
                    Err(_) => {
                        tracing::warn!(database = %self.database, "catalog query timed out");
                        self.ddl.fetch_add(1, Ordering::AcqRel);
                        break;
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(REFRESH) => {}
                    _ = self.wake.notified() => {}
                }
            }
            tokio::time::sleep(REFRESH).await;
        }
    }
}

/// Rights of the upstream login that an agent could reach through sqlgate
/// if a statement slipped past the policy.
const ROLE_QUERY: &str = "SELECT r.rolsuper::text, r.rolname,
    pg_has_role(current_user, 'pg_read_server_files', 'MEMBER')::text,
    pg_has_role(current_user, 'pg_write_server_files', 'MEMBER')::text,
    pg_has_role(current_user, 'pg_execute_server_program', 'MEMBER')::text,
    -- The search_path a new session of this login starts with, as
    -- PostgreSQL picks it: this role in this database, this role, this
    -- database, every role, then the server's.
    coalesce((SELECT substr(s, 13) FROM pg_db_role_setting d, unnest(d.setconfig) s
      WHERE s LIKE 'search_path=%' AND d.setrole IN (r.oid, 0)
        AND d.setdatabase IN ((SELECT oid FROM pg_database WHERE datname = current_database()), 0)
      ORDER BY (d.setrole <> 0 AND d.setdatabase <> 0) DESC, d.setrole <> 0 DESC, d.setdatabase <> 0 DESC
      LIMIT 1), (SELECT reset_val FROM pg_settings WHERE name = 'search_path'))
  FROM pg_roles r WHERE r.rolname = current_user";

/// Every user function (16384: PostgreSQL's first user object id; a
/// superuser may create one in pg_catalog, an overload of a built-in's
/// name among them), with what placing it needs: the SQL body, or
/// PL/pgSQL's full definition.
const FUNCTIONS_QUERY: &str = "SELECT n.nspname, p.proname, l.lanname, p.prosrc,
    CASE WHEN l.lanname = 'plpgsql' AND p.prokind IN ('f', 'p') THEN pg_get_functiondef(p.oid) END,
    p.prokind::text, array_to_string(p.proconfig, chr(10)), pg_get_expr(p.proargdefaults, 0),
    ('refcursor'::regtype = ANY (coalesce(p.proallargtypes, p.proargtypes::oid[])))::text
  FROM pg_proc p
  JOIN pg_namespace n ON n.oid = p.pronamespace
  JOIN pg_language l ON l.oid = p.prolang
  WHERE p.oid >= 16384
  ORDER BY p.oid LIMIT 20001";

/// Every view and materialized view outside the system schemas, with its
/// definition (a SELECT, read like any query); and every foreign table,
/// with none: reading or writing one runs a statement in another session
/// or server (or a file_fdw program), whose tables, triggers and rules
/// sqlgate does not see.
const VIEWS_QUERY: &str = "SELECT n.nspname, c.relname,
    CASE WHEN c.relkind = 'f' THEN NULL ELSE pg_get_viewdef(c.oid) END
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind IN ('v', 'm', 'f') AND c.oid >= 16384
  ORDER BY c.oid LIMIT 20001";

/// Functions that run on a relation's behalf: column defaults and
/// generated columns, CHECK constraints (the table's; its columns' types'
/// are in `TYPES_QUERY`), triggers, index expressions and predicates
/// (evaluated for every row written), expression statistics (evaluated by
/// the ANALYZE that autovacuum runs after enough rows are written),
/// partition key expressions (routing every row written),
/// row-level security policies; `r` when a read sets
/// them off too (policies for SELECT or ALL; a call planning folds, see
/// [`folded`], for which the definition comes along), `w` when only a
/// change does.
/// Found through `pg_depend`, which records every function, operator and
/// cast such an expression uses.
const ATTACHED_QUERY: &str = "WITH RECURSIVE parts(root, rel) AS (
    -- A partitioned table and every partition under it: a write to a
    -- partition checks its partition constraint, which runs every
    -- ancestor's key expressions and operators.
    SELECT partrelid, partrelid FROM pg_partitioned_table
    UNION SELECT p.root, i.inhrelid FROM parts p JOIN pg_inherits i ON i.inhparent = p.rel)
  SELECT rn.nspname, c.relname, pn.nspname, p.proname, o.kind,
    -- Definitions planning a read folds constants of (see `folded`).
    CASE o.def
      WHEN 'index' THEN pg_get_indexdef(o.oid)
      WHEN 'stats' THEN pg_get_statisticsobjdef(o.oid)
      WHEN 'check' THEN 'ALTER TABLE t ADD ' || pg_get_constraintdef(o.oid)
      WHEN 'key' THEN 'CREATE TABLE t () PARTITION BY ' || pg_get_partkeydef(o.oid)
    END,
    -- A SQL function is inlined before folding: what it calls with
    -- constants is folded whatever its own arguments.
    (p.prolang = (SELECT oid FROM pg_language WHERE lanname = 'sql'))::text
  FROM (SELECT 'pg_attrdef'::regclass AS cl, oid, adrelid AS rel, 'w' AS kind, NULL AS def FROM pg_attrdef
        UNION ALL SELECT 'pg_constraint'::regclass, oid, conrelid, 'w',
          CASE WHEN contype = 'c' THEN 'check' END FROM pg_constraint WHERE conrelid <> 0
        -- A foreign key's check runs its operators on a delete from, or a
        -- key update of, the referenced table too (NO ACTION, RESTRICT).
        UNION ALL SELECT 'pg_constraint'::regclass, oid, confrelid, 'w', NULL FROM pg_constraint WHERE contype = 'f'
        UNION ALL SELECT 'pg_trigger'::regclass, oid, tgrelid, 'w', NULL FROM pg_trigger
        UNION ALL SELECT 'pg_class'::regclass, indexrelid, indrelid, 'w', 'index' FROM pg_index
        UNION ALL SELECT 'pg_statistic_ext'::regclass, oid, stxrelid, 'w', 'stats' FROM pg_statistic_ext
        UNION ALL SELECT 'pg_class'::regclass, root, rel, 'w', 'key' FROM parts
        UNION ALL SELECT 'pg_policy'::regclass, oid, polrelid,
          CASE WHEN polcmd IN ('r', '*') THEN 'r' ELSE 'w' END, NULL FROM pg_policy) o
  JOIN pg_depend d ON d.classid = o.cl AND d.objid = o.oid
  JOIN pg_proc p ON p.oid = CASE d.refclassid
      WHEN 'pg_proc'::regclass THEN d.refobjid
      WHEN 'pg_operator'::regclass THEN (SELECT oprcode FROM pg_operator WHERE oid = d.refobjid)
      WHEN 'pg_cast'::regclass THEN (SELECT castfunc FROM pg_cast WHERE oid = d.refobjid)
    END
  JOIN pg_namespace pn ON pn.oid = p.pronamespace
  JOIN pg_class c ON c.oid = o.rel
  JOIN pg_namespace rn ON rn.oid = c.relnamespace
  WHERE p.oid >= 16384
  LIMIT 20001";

/// The expressions a table's reads or writes evaluate, as SQL text the
/// classifier reads (`ATTACHED_QUERY` finds the user functions they
/// depend on; PostgreSQL records no dependency on a built-in, so
/// `pg_read_file(…)` in a default was found by nothing: review 18, F2):
/// column defaults, CHECK constraints, trigger WHEN clauses (in the
/// trigger's definition), row-level security policies. `w`: a write runs
/// it; `r`: a read does (a policy for SELECT or ALL).
const EXPRS_QUERY: &str = "SELECT n.nspname, c.relname, 'w', 'SELECT ' || pg_get_expr(d.adbin, d.adrelid)
  FROM pg_attrdef d JOIN pg_class c ON c.oid = d.adrelid JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.oid >= 16384 AND c.relpersistence <> 't'
  UNION ALL
  SELECT n.nspname, c.relname, 'w', 'SELECT ' || pg_get_expr(k.conbin, k.conrelid)
  FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE k.contype = 'c' AND c.oid >= 16384 AND c.relpersistence <> 't'
  UNION ALL
  SELECT n.nspname, c.relname, 'w', pg_get_triggerdef(t.oid)
  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE t.tgqual IS NOT NULL AND c.oid >= 16384 AND c.relpersistence <> 't'
  UNION ALL
  SELECT n.nspname, c.relname, CASE WHEN p.polcmd IN ('r', '*') THEN 'r' ELSE 'w' END,
    'SELECT ' || coalesce(pg_get_expr(p.polqual, p.polrelid), 'true') || ', '
      || coalesce(pg_get_expr(p.polwithcheck, p.polrelid), 'true')
  FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace
  LIMIT 20001";

/// The built-in functions those expressions (and domains') call, read
/// from the trees the server stores and runs (`adbin`, `conbin`, `tgqual`,
/// `polqual`, `stxexprs`, `typdefaultbin`), not from their text: an implicit cast's
/// function is there, and `pg_get_expr` prints none (review 19). Rows: the
/// table's schema and name (or `''` and `domain <oid>`), `w`/`r`/`d`, the
/// function's schema and name.
const EXPR_CALLS_QUERY: &str = "SELECT DISTINCT coalesce(n.nspname, ''),
    coalesce(c.relname, 'domain ' || o.rel), o.kind, pn.nspname, p.proname
  FROM (SELECT adrelid AS rel, 'w' AS kind, adbin::text AS tree FROM pg_attrdef
        UNION ALL SELECT conrelid, 'w', conbin::text FROM pg_constraint
          WHERE contype = 'c' AND conrelid <> 0
        UNION ALL SELECT tgrelid, 'w', tgqual::text FROM pg_trigger WHERE tgqual IS NOT NULL
        UNION ALL SELECT polrelid, CASE WHEN polcmd IN ('r', '*') THEN 'r' ELSE 'w' END,
          coalesce(polqual::text, '') || coalesce(polwithcheck::text, '') FROM pg_policy
        -- Extended statistics' expressions: ANALYZE evaluates them, and
        -- autovacuum analyzes a table after writes to it (review 21, F2).
        UNION ALL SELECT stxrelid, 'w', stxexprs::text FROM pg_statistic_ext
          WHERE stxexprs IS NOT NULL
        UNION ALL SELECT oid, 'd', typdefaultbin::text FROM pg_type
          WHERE typtype = 'd' AND typdefaultbin IS NOT NULL
        UNION ALL SELECT contypid, 'd', conbin::text FROM pg_constraint
          WHERE contypid <> 0 AND contype = 'c') o
  CROSS JOIN LATERAL regexp_matches(o.tree, ':(?:funcid|opfuncid) ([0-9]+)', 'g') m(f)
  JOIN pg_proc p ON p.oid = m.f[1]::oid AND p.oid < 16384
  JOIN pg_namespace pn ON pn.oid = p.pronamespace
  LEFT JOIN pg_class c ON o.kind <> 'd' AND c.oid = o.rel
  LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE o.rel >= 16384 AND (o.kind = 'd' OR c.relpersistence <> 't')
  LIMIT 20001";

/// Each user domain's DEFAULT and CHECK expressions, as SQL text: what
/// `domain <oid>` (see `TYPES_QUERY`) runs.
const DOMAIN_EXPRS_QUERY: &str = "SELECT t.oid::text, 'SELECT ' || t.typdefault FROM pg_type t
  WHERE t.typtype = 'd' AND t.oid >= 16384 AND t.typdefault IS NOT NULL
  UNION ALL
  SELECT c.contypid::text, 'SELECT ' || pg_get_expr(c.conbin, 0) FROM pg_constraint c
  WHERE c.contypid >= 16384 AND c.contype = 'c'
  LIMIT 20001";

/// What else a held statement's approval was given on, as one digest: who
/// owns and may use user functions and tables, which functions run as
/// their owner, which tables have row-level security (forced or not),
/// which triggers are enabled (review G, G1: a `SECURITY DEFINER` or an
/// `ALTER TABLE … FORCE ROW LEVEL SECURITY` while it waited). Computed on
/// the server: one row, whatever the catalog's size.
const SECURITY_QUERY: &str = "SELECT md5(coalesce(string_agg(x, ',' ORDER BY x), '')) FROM (
  SELECT concat_ws(':', 'f', oid::text, prosecdef::text, proowner::text, proacl::text)
    FROM pg_proc WHERE oid >= 16384
  UNION ALL SELECT concat_ws(':', 'r', oid::text, relrowsecurity::text,
      relforcerowsecurity::text, relowner::text, relacl::text)
    FROM pg_class WHERE oid >= 16384 AND relkind IN ('r', 'v', 'm', 'p', 'f') AND relpersistence <> 't'
  UNION ALL SELECT concat_ws(':', 't', oid::text, tgenabled::text)
    FROM pg_trigger WHERE oid >= 16384) s(x)";

/// Rewrite rules other than a view's own `ON SELECT`: their actions run on
/// others' statements, read from their definitions.
const RULES_QUERY: &str = "SELECT n.nspname, c.relname, pg_get_ruledef(r.oid)
  FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class
  JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE r.ev_type <> '1' AND c.oid >= 16384
  LIMIT 20001";

/// Every row of every catalog `TYPES_QUERY` reads, summed up: the count,
/// the sum of the transaction ids that wrote them and the sum of their
/// hashes. Every insert, update or delete leaves a multiset of writers
/// that differs (new rows carry the writing transaction's id); a plain sum
/// could still meet the old one (two rows gone, two of other ids come), the
/// hashes' sum as well only by chance (about one in 2^32). Costs a scan of each (pg_attribute is
/// the largest); the types query itself, a recursive walk, costs ~20 times
/// as much on a catalog of 2,000 tables, so it runs only when this moves.
const TYPES_FINGERPRINT: &str = "SELECT concat_ws(':',
  (SELECT count(*) || '.' || sum(xmin::text::bigint) || '.' || sum(hashint8(xmin::text::bigint)) FROM pg_type),
  (SELECT count(*) || '.' || sum(xmin::text::bigint) || '.' || sum(hashint8(xmin::text::bigint)) FROM pg_attribute),
  (SELECT count(*) || '.' || sum(xmin::text::bigint) || '.' || sum(hashint8(xmin::text::bigint)) FROM pg_class),
  (SELECT count(*) || '.' || sum(xmin::text::bigint) || '.' || sum(hashint8(xmin::text::bigint)) FROM pg_constraint),
  (SELECT count(*) || '.' || sum(xmin::text::bigint) || '.' || sum(hashint8(xmin::text::bigint)) FROM pg_depend),
  (SELECT count(*) || '.' || sum(xmin::text::bigint) || '.' || sum(hashint8(xmin::text::bigint)) FROM pg_cast),
  (SELECT count(*) || '.' || sum(xmin::text::bigint) || '.' || sum(hashint8(xmin::text::bigint)) FROM pg_opclass),
  (SELECT count(*) || '.' || sum(xmin::text::bigint) || '.' || sum(hashint8(xmin::text::bigint)) FROM pg_amproc),
  (SELECT count(*) || '.' || sum(xmin::text::bigint) || '.' || sum(hashint8(xmin::text::bigint)) FROM pg_amop),
  (SELECT count(*) || '.' || sum(xmin::text::bigint) || '.' || sum(hashint8(xmin::text::bigint)) FROM pg_index),
  (SELECT count(*) || '.' || sum(xmin::text::bigint) || '.' || sum(hashint8(xmin::text::bigint)) FROM pg_range),
  (SELECT count(*) || '.' || sum(xmin::text::bigint) || '.' || sum(hashint8(xmin::text::bigint)) FROM pg_proc),
  (SELECT count(*) || '.' || sum(xmin::text::bigint) || '.' || sum(hashint8(xmin::text::bigint)) FROM pg_namespace),
  (SELECT count(*) || '.' || sum(xmin::text::bigint) || '.' || sum(hashint8(xmin::text::bigint)) FROM pg_operator),
  (SELECT count(*) || '.' || sum(xmin::text::bigint) || '.' || sum(hashint8(xmin::text::bigint)) FROM pg_attrdef),
  (SELECT count(*) || '.' || sum(xmin::text::bigint) || '.' || sum(hashint8(xmin::text::bigint)) FROM pg_trigger),
  (SELECT count(*) || '.' || sum(xmin::text::bigint) || '.' || sum(hashint8(xmin::text::bigint)) FROM pg_partitioned_table))";

/// `own(oid)`: user functions that no extension owns (an extension's C
/// code is trusted like a built-in's; a user's C or `internal` alias of a
/// built-in is not). One definition for the queries that need it.
macro_rules! own_functions {
    () => {
        "WITH own(oid) AS (
    SELECT p.oid FROM pg_proc p WHERE p.oid >= 16384 AND NOT EXISTS (SELECT 1 FROM pg_depend e
      WHERE e.classid = 'pg_proc'::regclass AND e.objid = p.oid
        AND e.refclassid = 'pg_extension'::regclass AND e.deptype = 'e'))"
    };
}

/// Built-in types and operators with a user's (not an extension's) code
/// behind them, which PostgreSQL applies where no statement's text shows a
/// user object (`json_typeof(5)` casts implicitly; `DISTINCT
/// json_build_array(…)` compares with the type's default class; a hash
/// join or merge join on `int = int` takes the support functions of any
/// operator family holding that `=`):
/// - a cast between two built-in types that a user made, in any context
///   (whatever its function: a built-in's too);
/// - a default operator class of a built-in type with a user support
///   function or a user operator, or made by a user (or in a family a user
///   made or added a support function to) whatever its functions;
/// - an operator family holding a built-in operator, with a user support
///   function, when it is that operator's first family of its access
///   method (the planner takes the first it finds, in family id order, for
///   hashing and merging: a built-in family, when there is one, comes
///   first).
const OPAQUE_QUERY: &str = concat!(
    own_functions!(),
    "
, made(cl, oid) AS (
    -- Objects a user (not an extension) made.
    SELECT 'pg_cast'::regclass, oid FROM pg_cast WHERE oid >= 16384
    UNION ALL SELECT 'pg_opclass'::regclass, oid FROM pg_opclass WHERE oid >= 16384
    UNION ALL SELECT 'pg_opfamily'::regclass, oid FROM pg_opfamily WHERE oid >= 16384
    UNION ALL SELECT 'pg_amproc'::regclass, oid FROM pg_amproc WHERE oid >= 16384
    EXCEPT SELECT e.classid, e.objid FROM pg_depend e
      WHERE e.refclassid = 'pg_extension'::regclass AND e.deptype = 'e')
  SELECT DISTINCT 'type ' || t.typname FROM pg_cast ca
  JOIN pg_type t ON t.oid = ca.casttarget
  WHERE t.oid < 16384 AND ca.castsource < 16384
    -- A user's function, or a cast a user made at all, in any context
    -- (review 19: `CREATE CAST (text AS bytea) WITH FUNCTION
    -- pg_read_binary_file(text) AS ASSIGNMENT` runs on a plain INSERT, and
    -- no text shows it; an explicit one takes over every `::` between
    -- those types, sqlgate's own catalog queries' too).
    AND (ca.castfunc IN (SELECT oid FROM own)
      OR (ca.oid IN (SELECT oid FROM made WHERE cl = 'pg_cast'::regclass)))
  UNION
  SELECT 'type ' || t.typname FROM pg_opclass opc JOIN pg_type t ON t.oid = opc.opcintype
  JOIN (SELECT amprocfamily AS family, amproc AS fn, oid AS entry FROM pg_amproc
        UNION ALL SELECT am.amopfamily, op.oprcode, NULL FROM pg_amop am
          JOIN pg_operator op ON op.oid = am.amopopr) m ON m.family = opc.opcfamily
  WHERE opc.opcdefault AND t.oid < 16384
    -- Or made by a user whatever its functions (review 20: a default hash
    -- class for regnamespace with `FUNCTION 1 pg_import_system_collations`).
    AND (m.fn IN (SELECT oid FROM own)
      OR opc.oid IN (SELECT oid FROM made WHERE cl = 'pg_opclass'::regclass)
      OR opc.opcfamily IN (SELECT oid FROM made WHERE cl = 'pg_opfamily'::regclass)
      OR m.entry IN (SELECT oid FROM made WHERE cl = 'pg_amproc'::regclass))
  UNION
  SELECT 'operator ' || op.oprname FROM pg_amop am JOIN pg_operator op ON op.oid = am.amopopr
  JOIN pg_amproc ap ON ap.amprocfamily = am.amopfamily
  WHERE op.oid < 16384
    AND (ap.amproc IN (SELECT oid FROM own)
      OR am.amopfamily IN (SELECT oid FROM made WHERE cl = 'pg_opfamily'::regclass)
      OR ap.oid IN (SELECT oid FROM made WHERE cl = 'pg_amproc'::regclass))
    AND NOT EXISTS (SELECT 1 FROM pg_amop b WHERE b.amopopr = am.amopopr
      AND b.amopmethod = am.amopmethod AND b.amopfamily < am.amopfamily)
  LIMIT 100"
);

/// The hand-assigned built-in functions as the database has them now, to
/// compare with the names they were built with (`builtin_name`).
const BUILTIN_NAMES_QUERY: &str = "SELECT p.oid::text, p.proname, n.nspname,
    current_setting('server_version_num') FROM pg_proc p
  JOIN pg_namespace n ON n.oid = p.pronamespace WHERE p.oid < 10000";

/// What PostgreSQL's own objects run, one row each, compared with a fresh
/// initdb's (`builtin_definition`). Costs ~0.3 s of the server's CPU
/// (system views' rules are printed): read only when
/// [`BUILTIN_GATE_QUERY`] changed.
const BUILTIN_DEFS_QUERY: &str = include_str!("builtin_defs.sql");

/// Moves whenever a row [`BUILTIN_DEFS_QUERY`] reads is written (every
/// change is a new row version: a new `xmin`), in ~4 ms; and the server's
/// version.
const BUILTIN_GATE_QUERY: &str = "SELECT concat_ws(' ',
  (SELECT count(*) || ':' || sum(xmin::text::bigint) FROM pg_proc WHERE oid < 16384),
  (SELECT count(*) || ':' || sum(xmin::text::bigint) FROM pg_aggregate WHERE aggfnoid < 16384),
  (SELECT count(*) || ':' || sum(xmin::text::bigint) FROM pg_type WHERE oid < 16384),
  (SELECT count(*) || ':' || sum(xmin::text::bigint) FROM pg_operator WHERE oid < 16384),
  (SELECT count(*) || ':' || sum(xmin::text::bigint) FROM pg_cast WHERE oid < 16384),
  (SELECT count(*) || ':' || sum(xmin::text::bigint) FROM pg_rewrite WHERE ev_class < 16384),
  (SELECT count(*) || ':' || sum(xmin::text::bigint) FROM pg_language),
  (SELECT count(*) || ':' || sum(xmin::text::bigint) FROM pg_namespace WHERE oid < 16384),
  (SELECT count(*) || ':' || sum(xmin::text::bigint) FROM pg_constraint
    WHERE contypid BETWEEN 1 AND 16383 OR conrelid BETWEEN 1 AND 16383),
  (SELECT count(*) || ':' || sum(xmin::text::bigint) FROM pg_trigger WHERE tgrelid < 16384),
  (SELECT count(*) || ':' || sum(xmin::text::bigint) FROM pg_policy WHERE polrelid < 16384),
  (SELECT count(*) || ':' || sum(xmin::text::bigint) FROM pg_attrdef WHERE adrelid < 16384),
  (SELECT count(*) || ':' || sum(xmin::text::bigint) FROM pg_index WHERE indrelid < 16384),
  (SELECT count(*) || ':' || sum(xmin::text::bigint) FROM pg_statistic_ext
    WHERE stxrelid < 16384)),
  current_setting('server_version_num')";

/// The built-in objects of `rows` ([`BUILTIN_DEFS_QUERY`]) that run
/// something else than a fresh initdb's, rules, constraints, triggers,
/// policies, defaults, indexes and extended statistics added to built-in
/// types and relations, and a fresh initdb's
/// objects that are missing (renamed or moved: `ALTER AGGREGATE max(text)
/// RENAME`, an `UPDATE pg_operator SET oprname`; built-ins are placed by
/// name). Other objects a fresh initdb lacks (a vendor's) are not judged.
fn changed_builtins(rows: &query::Rows) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    let mut changed: Vec<String> = rows
        .iter()
        .filter_map(|r| {
            let (key, hash) = (r.first()?.as_deref()?, r.get(1)?.as_deref()?);
            seen.insert(key);
            match crate::classify::builtin_definition(key) {
                Some(h) if h != hash => Some(format!("{key} (changed)")),
                // A rule, constraint, trigger, policy, default, index or
                // extended statistics a user added to a built-in type or
                // relation.
                None if ["r ", "k ", "g ", "p ", "d ", "y ", "i ", "x "]
                    .iter()
                    .any(|p| key.starts_with(p)) =>
                {
                    Some(format!("{key} (added)"))
                }
                _ => None,
            }
        })
        .collect();
    let mut missing: Vec<&str> = crate::classify::builtin_definitions()
        .keys()
        .filter(|k| !seen.contains(**k))
        .copied()
        .collect();
    missing.sort_unstable();
    changed.extend(missing.into_iter().map(|k| format!("{k} (missing)")));
    changed
}

/// Tables with deferrable constraint triggers (user ones, and a deferrable
/// foreign key's): their code can run at COMMIT.
const DEFERRED_QUERY: &str = "SELECT DISTINCT n.nspname, c.relname FROM pg_trigger t
  JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE t.tgdeferrable LIMIT 20001";

/// Foreign keys, as (referencing schema, table, referenced schema, table):
/// each side's check runs a query on the other (`SELECT 1 FROM ONLY …
/// FOR KEY SHARE`), which plans it, folding its index predicates.
const FKEYS_QUERY: &str = "SELECT DISTINCT cn.nspname, c.relname, pn.nspname, p.relname
  FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
  JOIN pg_namespace cn ON cn.oid = c.relnamespace
  JOIN pg_class p ON p.oid = k.confrelid JOIN pg_namespace pn ON pn.oid = p.relnamespace
  WHERE k.contype = 'f' LIMIT 20001";

/// Every user relation's columns in attribute order, as JSON arrays of
/// names (which may hold any character) and attribute numbers, and its OID.
const COLUMNS_QUERY: &str = "SELECT n.nspname, c.relname,
    json_agg(a.attname::text ORDER BY a.attnum)::text,
    json_agg(a.attnum ORDER BY a.attnum)::text, c.oid::text
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND c.oid >= 16384
  GROUP BY n.nspname, c.relname, c.oid LIMIT 200001";

/// Relations' columns: name → (schema, columns in attribute order).
type ColumnLists = HashMap<String, Vec<(String, Arc<[String]>)>>;

/// Relations' columns by OID and attribute number: `schema.name` and the
/// column's name (what a RowDescription's origin names).
type ColumnsByOid = HashMap<u32, (String, HashMap<i16, String>)>;

/// [`COLUMNS_QUERY`]'s rows by relation name, and by OID.
fn column_lists(rows: &[Vec<Option<String>>]) -> (ColumnLists, ColumnsByOid) {
    let mut out = ColumnLists::new();
    let mut by_oid = ColumnsByOid::new();
    for r in rows {
        let col = |i: usize| r.get(i).and_then(|v| v.as_deref());
        let (Some(schema), Some(name), Some(cols), Some(nums), Some(oid)) =
            (col(0), col(1), col(2), col(3), col(4))
        else {
            continue;
        };
        let (Ok(cols), Ok(nums), Ok(oid)) = (
            serde_json::from_str::<Vec<String>>(cols),
            serde_json::from_str::<Vec<i16>>(nums),
            oid.parse::<u32>(),
        ) else {
            continue;
        };
        let attrs = nums.iter().copied().zip(cols.iter().cloned()).collect();
        by_oid.insert(oid, (format!("{schema}.{name}"), attrs));
        out.entry(name.to_string())
            .or_default()
            .push((schema.to_string(), Arc::from(cols)));
    }
    (out, by_oid)
}

/// Custom settings a DBA configured (for the database, a role, the server):
/// where applications keep keys. Reading one is server access.
const SETTINGS_QUERY: &str =
    "SELECT DISTINCT lower(split_part(s, '=', 1)) FROM pg_db_role_setting, unnest(setconfig) s
  WHERE split_part(s, '=', 1) LIKE '%.%'
  UNION SELECT lower(name) FROM pg_settings
  WHERE name LIKE '%.%' AND source NOT IN ('default', 'session', 'client', 'override')
  LIMIT 20001";

/// Event triggers: their functions run on the DDL of any session
/// (whatever tags they name: all DDL counts, fail closed).
const EVENTS_QUERY: &str = "SELECT pn.nspname, p.proname, l.lanname FROM pg_event_trigger e
  JOIN pg_proc p ON p.oid = e.evtfoid JOIN pg_namespace pn ON pn.oid = p.pronamespace
  JOIN pg_language l ON l.oid = p.prolang
  WHERE e.evtenabled <> 'D'
  LIMIT 20001";

/// What reading or changing a table reaches: its inheritance and partition
/// children (`i`: reading or changing the parent reaches them), and the
/// tables whose foreign keys act on its deletes (`d`) or key updates (`u`):
/// `CASCADE`, `SET NULL`, `SET DEFAULT` change the referencing rows, which
/// sets off that table's own defaults and triggers; and every referencing
/// table (`t`: `TRUNCATE … CASCADE` empties them whatever the key's action).
const REACH_QUERY: &str = "SELECT pn.nspname, p.relname, cn.nspname || '.' || c.relname, 'i'
  FROM pg_inherits i
  JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace pn ON pn.oid = p.relnamespace
  JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace cn ON cn.oid = c.relnamespace
  UNION ALL
  SELECT rn.nspname, r.relname, cn.nspname || '.' || c.relname, k.kind
  FROM pg_constraint con
  JOIN pg_class r ON r.oid = con.confrelid JOIN pg_namespace rn ON rn.oid = r.relnamespace
  JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace cn ON cn.oid = c.relnamespace
  JOIN (VALUES ('d'), ('u'), ('t')) k(kind)
    ON (k.kind = 'd' AND con.confdeltype IN ('c', 'n', 'd'))
    OR (k.kind = 'u' AND con.confupdtype IN ('c', 'n', 'd'))
    OR k.kind = 't'
  WHERE con.contype = 'f'
  LIMIT 20001";

/// The user functions a value of a type runs when it is converted or
/// stored, followed through types rather than names: a domain's CHECK and
/// DEFAULT expressions (and a user base type's own support functions), and
/// every type built on such a type however deep — a domain over it, its
/// array, a composite (or table row type) with an attribute of it, a range
/// or multirange over it; also the functions of implicit and assignment
/// casts to it, and of its operator classes (comparison, hashing). Rows:
/// `t` (the name the classifier records for a cast, `type <name>`), `c` (a
/// table with a column of such a type, or an index whose operator class
/// runs user functions: reading and writing it run them), `f` (a function
/// taking, returning or with an OUT parameter of one).
const TYPES_QUERY: &str = "WITH RECURSIVE parts(root, rel) AS (
    SELECT partrelid, partrelid FROM pg_partitioned_table
    UNION SELECT p.root, i.inhrelid FROM parts p JOIN pg_inherits i ON i.inhparent = p.rel
  ), raw(ty, fn) AS (
    SELECT con.contypid, d.refobjid FROM pg_constraint con
    JOIN pg_depend d ON d.classid = 'pg_constraint'::regclass AND d.objid = con.oid AND d.refclassid = 'pg_proc'::regclass
    WHERE con.contypid <> 0
    UNION ALL
    SELECT d.objid, d.refobjid FROM pg_depend d
    WHERE d.classid = 'pg_type'::regclass AND d.refclassid = 'pg_proc'::regclass
    UNION ALL
    -- A domain CHECK or DEFAULT using a user operator runs its function.
    SELECT coalesce(con.contypid, d.objid), op.oprcode FROM pg_depend d
    JOIN pg_operator op ON op.oid = d.refobjid
    LEFT JOIN pg_constraint con ON d.classid = 'pg_constraint'::regclass AND con.oid = d.objid
    WHERE d.refclassid = 'pg_operator'::regclass
      AND (d.classid = 'pg_type'::regclass OR con.contypid <> 0)
    UNION ALL
    -- Implicit and assignment casts run without a `::` in sight: on a
    -- value of a user source type (passed to a built-in taking the
    -- target), or into a user target type (stored in its column). Between
    -- two built-in types: `OPAQUE_QUERY`.
    SELECT ca.castsource, ca.castfunc FROM pg_cast ca
    WHERE ca.castcontext IN ('i', 'a') AND ca.castfunc <> 0 AND ca.castsource >= 16384
    UNION ALL
    SELECT ca.casttarget, ca.castfunc FROM pg_cast ca
    WHERE ca.castcontext IN ('i', 'a') AND ca.castfunc <> 0 AND ca.casttarget >= 16384
    UNION ALL
    -- A cast to json in any context: to_json, row_to_json, json_agg,
    -- json_build_object… render a user type's values with it (a built-in
    -- type's, never: they have their own rendering).
    SELECT ca.castsource, ca.castfunc FROM pg_cast ca
    WHERE ca.casttarget = 'json'::regtype AND ca.castfunc <> 0 AND ca.castsource >= 16384
    UNION ALL
    -- Its default operator classes' support functions (btree comparison,
    -- hash) and operators' functions (the type's `=` for DISTINCT, GROUP
    -- BY, UNION, array and row equality, whatever the operator's name):
    -- sorting, grouping, unique checks and indexes call them (another
    -- class runs only where an index names it).
    SELECT opc.opcintype, ap.amproc FROM pg_opclass opc
    JOIN pg_amproc ap ON ap.amprocfamily = opc.opcfamily
    WHERE opc.opcdefault
    UNION ALL
    SELECT opc.opcintype, op.oprcode FROM pg_opclass opc
    JOIN pg_amop am ON am.amopfamily = opc.opcfamily
    JOIN pg_operator op ON op.oid = am.amopopr
    WHERE opc.opcdefault
    UNION ALL
    -- A range compares its bounds with its subtype class, whichever it is.
    SELECT r.rngtypid, ap.amproc FROM pg_range r
    JOIN pg_opclass opc ON opc.oid = r.rngsubopc
    JOIN pg_amproc ap ON ap.amprocfamily = opc.opcfamily
    UNION ALL
    SELECT r.rngtypid, op.oprcode FROM pg_range r
    JOIN pg_opclass opc ON opc.oid = r.rngsubopc
    JOIN pg_amop am ON am.amopfamily = opc.opcfamily
    JOIN pg_operator op ON op.oid = am.amopopr
    UNION ALL SELECT rngtypid, rngcanonical FROM pg_range WHERE rngcanonical <> 0
    UNION ALL SELECT rngtypid, rngsubdiff FROM pg_range WHERE rngsubdiff <> 0
  ), fns(ty, fn) AS (
    -- User functions only, before following types: built-ins run nothing
    -- of a user's, and following them would reach every column.
    SELECT raw.ty, raw.fn FROM raw WHERE raw.fn >= 16384
    UNION ALL
    -- A domain's own CHECK and DEFAULT expressions, which may call
    -- built-ins (no dependency is recorded on those): the domain stands
    -- for them (`domain <oid>`, placed from `DOMAIN_EXPRS_QUERY`).
    SELECT t.oid, t.oid FROM pg_type t WHERE t.typtype = 'd' AND t.oid >= 16384
      AND (t.typdefault IS NOT NULL
        OR EXISTS (SELECT 1 FROM pg_constraint c WHERE c.contypid = t.oid AND c.contype = 'c'))
  ), edges(inner_t, outer_t) AS (
    SELECT typbasetype, oid FROM pg_type WHERE typtype = 'd'
    UNION ALL SELECT typelem, oid FROM pg_type WHERE typelem <> 0 AND typsubscript = 'array_subscript_handler'::regproc
    UNION ALL SELECT a.atttypid, c.reltype FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
      WHERE a.attnum > 0 AND NOT a.attisdropped AND c.reltype <> 0
    UNION ALL SELECT rngsubtype, rngtypid FROM pg_range
    UNION ALL SELECT rngtypid, rngmultitypid FROM pg_range
    -- A domain whose CHECK or DEFAULT converts to another type (a cast to
    -- a domain) runs what that type runs.
    UNION ALL SELECT d.refobjid, con.contypid FROM pg_constraint con
      JOIN pg_depend d ON d.classid = 'pg_constraint'::regclass AND d.objid = con.oid
      WHERE con.contypid <> 0 AND d.refclassid = 'pg_type'::regclass
    UNION ALL SELECT d.refobjid, d.objid FROM pg_depend d JOIN pg_type t ON t.oid = d.objid
      WHERE d.classid = 'pg_type'::regclass AND d.refclassid = 'pg_type'::regclass AND t.typtype = 'd'
  ), up(ty, fn) AS (
    SELECT ty, fn FROM fns
    UNION SELECT e.outer_t, up.fn FROM up JOIN edges e ON e.inner_t = up.ty
  ), user_fns AS (
    SELECT up.ty, pn.nspname AS fns, p.proname AS fnn FROM up
    JOIN pg_proc p ON p.oid = up.fn JOIN pg_namespace pn ON pn.oid = p.pronamespace
    UNION ALL
    SELECT up.ty, '', 'domain ' || up.fn FROM up
    JOIN pg_type d ON d.oid = up.fn AND d.typtype = 'd'
  ), fn_types(f, ty) AS (
    SELECT p.oid, unnest(coalesce(p.proallargtypes, p.proargtypes::oid[]) || p.prorettype) FROM pg_proc p
    WHERE p.oid >= 16384
  )
  SELECT 't', 'type ' || t.typname, tn.nspname, u.fns, u.fnn, t.oid::text FROM user_fns u
  JOIN pg_type t ON t.oid = u.ty JOIN pg_namespace tn ON tn.oid = t.typnamespace
  UNION ALL
  SELECT 'c', rn.nspname, c.relname, u.fns, u.fnn, NULL FROM user_fns u
  JOIN pg_attribute a ON a.atttypid = u.ty AND a.attnum > 0 AND NOT a.attisdropped
  JOIN pg_class c ON c.oid = a.attrelid AND c.relkind IN ('r', 'p', 'f', 'v')
  JOIN pg_namespace rn ON rn.oid = c.relnamespace
  UNION ALL
  -- A default, CHECK, trigger condition or index expression converting to
  -- such a type (a cast to a domain).
  SELECT 'c', rn.nspname, c.relname, u.fns, u.fnn, NULL FROM user_fns u
  JOIN pg_depend d ON d.refclassid = 'pg_type'::regclass AND d.refobjid = u.ty
  JOIN (SELECT 'pg_attrdef'::regclass AS cl, oid, adrelid AS rel FROM pg_attrdef
        UNION ALL SELECT 'pg_constraint'::regclass, oid, conrelid FROM pg_constraint WHERE conrelid <> 0
        UNION ALL SELECT 'pg_trigger'::regclass, oid, tgrelid FROM pg_trigger
        UNION ALL SELECT 'pg_class'::regclass, indexrelid, indrelid FROM pg_index
        UNION ALL SELECT 'pg_class'::regclass, root, rel FROM parts) o
    ON o.cl = d.classid AND o.oid = d.objid
  JOIN pg_class c ON c.oid = o.rel JOIN pg_namespace rn ON rn.oid = c.relnamespace
  UNION ALL
  -- The operator classes an index or a partition key names (a partition
  -- key's: routing each row and sorting the bounds): their support
  -- functions and their operators' (BRIN's minmax compares with those).
  SELECT 'c', rn.nspname, c.relname, pn.nspname, p.proname, NULL
  FROM (SELECT indrelid AS rel, indclass::oid[] AS classes FROM pg_index
        UNION ALL SELECT p.rel, pt.partclass::oid[] FROM parts p
          JOIN pg_partitioned_table pt ON pt.partrelid = p.root) k
  JOIN pg_opclass opc ON opc.oid = ANY (k.classes)
  JOIN (SELECT amprocfamily AS family, amproc AS fn FROM pg_amproc
        UNION ALL SELECT am.amopfamily, op.oprcode FROM pg_amop am
          JOIN pg_operator op ON op.oid = am.amopopr) m ON m.family = opc.opcfamily
  JOIN pg_proc p ON p.oid = m.fn JOIN pg_namespace pn ON pn.oid = p.pronamespace
  JOIN pg_class c ON c.oid = k.rel JOIN pg_namespace rn ON rn.oid = c.relnamespace
  WHERE p.oid >= 16384
  UNION ALL
  SELECT DISTINCT 'f', fn_.nspname, f.proname, u.fns, u.fnn, NULL::text FROM user_fns u
  JOIN fn_types ft ON ft.ty = u.ty
  JOIN pg_proc f ON f.oid = ft.f JOIN pg_namespace fn_ ON fn_.oid = f.pronamespace
  LIMIT 20001";

/// User operators (with their negators' and commutators' functions: the
/// planner may swap one in, `NOT (a ~~~ b)` for `a !~~~ b`; and the
/// support functions of every operator family they are in: `ORDER BY …
/// USING op` sorts with its btree comparison function) and user cast
/// functions (a domain's CHECKs are in `TYPES_QUERY`), except an
/// extension's own functions; a user operator or cast over a
/// built-in (16384: PostgreSQL's first user object id) is what a call of
/// that built-in is:
/// the name the classifier records for them (`operator ===`, `type t`),
/// the object's schema, and the function.
const OPERATORS_QUERY: &str = concat!(
    own_functions!(),
    "
  SELECT 'operator ' || o.oprname, on_.nspname, pn.nspname, p.proname, (p.oid < 16384)::text
  FROM pg_operator o JOIN pg_namespace on_ ON on_.oid = o.oprnamespace
  JOIN LATERAL (VALUES (o.oprcode),
    ((SELECT n.oprcode FROM pg_operator n WHERE n.oid = o.oprnegate)),
    ((SELECT c.oprcode FROM pg_operator c WHERE c.oid = o.oprcom))) f(code) ON f.code IS NOT NULL
  JOIN pg_proc p ON p.oid = f.code JOIN pg_namespace pn ON pn.oid = p.pronamespace
  WHERE p.oid IN (SELECT oid FROM own) OR (p.oid < 16384 AND o.oid >= 16384)
  UNION ALL
  SELECT 'operator ' || o.oprname, on_.nspname, pn.nspname, p.proname, 'false'
  FROM pg_operator o JOIN pg_namespace on_ ON on_.oid = o.oprnamespace
  JOIN pg_amop amop ON amop.amopopr = o.oid
  JOIN pg_amproc ap ON ap.amprocfamily = amop.amopfamily
  JOIN pg_proc p ON p.oid = ap.amproc JOIN pg_namespace pn ON pn.oid = p.pronamespace
  WHERE p.oid IN (SELECT oid FROM own)
    -- A built-in operator's families: only its first of an access method
    -- counts (the one the planner takes; see `OPAQUE_QUERY`).
    AND (o.oid >= 16384 OR NOT EXISTS (SELECT 1 FROM pg_amop b WHERE b.amopopr = amop.amopopr
      AND b.amopmethod = amop.amopmethod AND b.amopfamily < amop.amopfamily))
  UNION ALL
  SELECT 'type ' || t.typname, tn.nspname, pn.nspname, p.proname, (p.oid < 16384)::text
  FROM pg_cast ca JOIN pg_type t ON t.oid = ca.casttarget JOIN pg_namespace tn ON tn.oid = t.typnamespace
  JOIN pg_proc p ON p.oid = ca.castfunc JOIN pg_namespace pn ON pn.oid = p.pronamespace
  WHERE p.oid IN (SELECT oid FROM own) OR (p.oid < 16384 AND ca.oid >= 16384)
  UNION ALL
  -- Attribute notation: `x.f` and `(x).f` call f(x) when f is not a column
  -- of x, for x of any type: every user function one argument can be
  -- passed to.
  SELECT 'attr ' || p.proname, pn.nspname, pn.nspname, p.proname, 'false'
  FROM pg_proc p JOIN pg_namespace pn ON pn.oid = p.pronamespace
  WHERE p.oid >= 16384 AND p.pronargs >= 1 AND p.pronargs - p.pronargdefaults <= 1
  LIMIT 20001"
);

/// What one catalog connection's loads keep from one to the next: answers
/// of costly queries, by a cheap fingerprint of what they read.
#[derive(Default)]
struct LoadCache {
    /// `TYPES_QUERY`'s rows, by `TYPES_FINGERPRINT`.
    types: Option<(String, query::Rows)>,
    /// [`changed_builtins`], by [`BUILTIN_GATE_QUERY`].
    builtins: Option<(String, Vec<String>)>,
}

impl Snapshot {
    async fn load(
        conn: &mut crate::proxy::stream::Stream,
        classifier: &Classifier,
        generation: u64,
        cache: &mut LoadCache,
    ) -> Result<Snapshot, String> {
        let role = query::simple(conn, ROLE_QUERY).await?;
        // A built-in type with user code behind it (a user's default
        // operator class or a cast for `json`) runs it wherever a value of
        // that type is compared, sorted or converted, which no statement's
        // text shows: nothing can be placed. First, and nothing else then:
        // the other queries' own casts and comparisons would run it too.
        let mut builtin_code: Vec<String> = query::simple(conn, OPAQUE_QUERY)
            .await?
            .into_iter()
            .filter_map(|r| r.into_iter().next().flatten())
            .collect();
        // A built-in renamed or moved by a superuser (`ALTER FUNCTION
        // pg_catalog.lo_unlink(oid) RENAME TO abs`): built-ins are placed
        // by name, so every call is then misread (review 21, F1).
        for r in query::simple(conn, BUILTIN_NAMES_QUERY).await? {
            let col = |i: usize| r.get(i).and_then(|v| v.as_deref()).unwrap_or("");
            // The OIDs are those of the major version the names were read
            // from (another may have reassigned a freed one).
            let same_major = col(3).parse::<u32>().ok().map(|v| v / 10000)
                == Some(crate::classify::BUILTIN_OIDS_MAJOR);
            let known = col(0).parse().ok().and_then(crate::classify::builtin_name);
            if (same_major && known.is_some_and(|n| n != col(1))) || col(2) != "pg_catalog" {
                builtin_code.push(format!("function {} (renamed or moved)", col(1)));
            }
        }
        // A built-in changed in place, keeping its OID and name (review
        // 22, F1, F2): `CREATE OR REPLACE FUNCTION pg_catalog.quote_ident`
        // by a superuser, `ALTER TYPE text SET (SEND = …)`.
        let gate = query::simple(conn, BUILTIN_GATE_QUERY).await?;
        let gate = gate.first().cloned().unwrap_or_default();
        let version = gate.get(1).cloned().flatten().unwrap_or_default();
        let gate = gate.first().cloned().flatten().unwrap_or_default();
        let mut defs_warning = None;
        if version.parse::<u32>().ok().map(|v| v / 10000)
            != Some(crate::classify::BUILTIN_OIDS_MAJOR)
        {
            defs_warning = Some(format!(
                "PostgreSQL {version} is not {}: changes made in place to built-in functions, types, operators, casts and system views can't be detected",
                crate::classify::BUILTIN_OIDS_MAJOR
            ));
        } else {
            let changed = match &cache.builtins {
                Some((g, changed)) if !gate.is_empty() && *g == gate => changed.clone(),
                _ => {
                    let changed = changed_builtins(&query::simple(conn, BUILTIN_DEFS_QUERY).await?);
                    cache.builtins = Some((gate, changed.clone()));
                    changed
                }
            };
            if !changed.is_empty() {
                let more = changed.len().saturating_sub(5);
                let mut list = changed
                    .iter()
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ");
                if more > 0 {
                    list.push_str(&format!(" and {more} more"));
                }
                builtin_code.push(format!("built-ins changed in place: {list}"));
            }
        }
        if !builtin_code.is_empty() {
            use sha2::{Digest, Sha256};
            let mut warnings = role_warnings(&role);
            warnings.extend(defs_warning);
            warnings.push(format!(
                "user code runs behind built-in types or operators ({}: an operator class or family, or a cast a user made): no statement can be placed, every one is unparsed",
                builtin_code.join(", ")
            ));
            return Ok(Snapshot {
                generation,
                loaded: Some(Instant::now()),
                opaque: true,
                digest: Sha256::digest(builtin_code.join("\n").as_bytes()).into(),
                warnings,
                search_path: role.first().and_then(|r| r.get(5).cloned().flatten()),
                ..Snapshot::default()
            });
        }
        let rows = query::simple(conn, FUNCTIONS_QUERY).await?;
        let views = query::simple(conn, VIEWS_QUERY).await?;
        let attached = query::simple(conn, ATTACHED_QUERY).await?;
        let rules = query::simple(conn, RULES_QUERY).await?;
        let exprs = query::simple(conn, EXPRS_QUERY).await?;
        let security = query::simple(conn, SECURITY_QUERY).await?;
        let domains = query::simple(conn, DOMAIN_EXPRS_QUERY).await?;
        let expr_calls = query::simple(conn, EXPR_CALLS_QUERY).await?;
        let reach = query::simple(conn, REACH_QUERY).await?;
        let mut operators = query::simple(conn, OPERATORS_QUERY).await?;
        let fingerprint = query::simple(conn, TYPES_FINGERPRINT)
            .await?
            .first()
            .and_then(|r| r.first().cloned().flatten())
            .unwrap_or_default();
        let types = match &cache.types {
            Some((f, rows)) if !fingerprint.is_empty() && *f == fingerprint => rows.clone(),
            _ => {
                let rows = query::simple(conn, TYPES_QUERY).await?;
                cache.types = Some((fingerprint, rows.clone()));
                rows
            }
        };
        let events = query::simple(conn, EVENTS_QUERY).await?;
        let deferred = query::simple(conn, DEFERRED_QUERY).await?;
        let fkeys = query::simple(conn, FKEYS_QUERY).await?;
        let configured = query::simple(conn, SETTINGS_QUERY).await?;
        let columns = query::simple(conn, COLUMNS_QUERY).await?;
        let digest = {
            use sha2::{Digest, Sha256};
            let mut h = Sha256::new();
            for rows in [
                &rows,
                &views,
                &attached,
                &rules,
                &exprs,
                &reach,
                &operators,
                &types,
                &events,
                &deferred,
                &fkeys,
                &configured,
                &security,
                &domains,
                &expr_calls,
            ] {
                // Sorted: most queries have no ORDER BY, and the order
                // rows come in is not a definition.
                let mut sorted: Vec<&Vec<Option<String>>> = rows.iter().collect();
                sorted.sort();
                for r in sorted {
                    for v in r {
                        match v {
                            Some(t) => {
                                h.update((t.len() as u64).to_le_bytes());
                                h.update(t.as_bytes());
                            }
                            None => h.update(u64::MAX.to_le_bytes()),
                        }
                    }
                }
                h.update(b"\n");
            }
            h.finalize().into()
        };
        let mut s = Snapshot {
            generation,
            loaded: Some(Instant::now()),
            digest,
            warnings: role_warnings(&role),
            search_path: role.first().and_then(|r| r.get(5).cloned().flatten()),
            ..Snapshot::default()
        };
        s.warnings.extend(defs_warning);
        (s.columns, s.by_oid) = column_lists(&columns);
        if [
            &rows,
            &views,
            &attached,
            &rules,
            &exprs,
            &reach,
            &operators,
            &types,
            &events,
            &domains,
            &expr_calls,
        ]
        .iter()
        .any(|r| r.len() > MAX_FUNCTIONS)
        {
            s.warnings.push(format!(
                "more than {MAX_FUNCTIONS} user-defined functions or views: the catalog is not used"
            ));
            // Fail closed: an empty, stale snapshot places nothing.
            s.loaded = None;
            return Ok(s);
        }
        // The types query's rows, each where its kind belongs.
        let mut attached = attached;
        let mut typed = Vec::new();
        let mut type_oids: Vec<(u32, String, String)> = Vec::new();
        for mut r in types {
            let kind = r.remove(0);
            let oid = r
                .get(4)
                .and_then(|v| v.as_deref())
                .and_then(|o| o.parse().ok());
            r.truncate(4);
            match kind.as_deref() {
                Some("t") => {
                    if let (Some(oid), Some(Some(fs)), Some(Some(fname))) =
                        (oid, r.get(2), r.get(3))
                    {
                        type_oids.push((oid, fs.clone(), fname.clone()));
                    }
                    operators.push(r)
                }
                Some("c") => {
                    // Reads too: a literal compared with such a column is
                    // converted to its type (`WHERE a = '{1}'` for a domain
                    // array), and sorting or an index scan compares.
                    r.push(Some("r".into()));
                    attached.push(r);
                }
                _ => typed.push(r),
            }
        }
        // Operator and cast names → their functions, for bodies that use them.
        let mut aliases: Aliases = HashMap::new();
        for r in &operators {
            let col = |i: usize| {
                r.get(i)
                    .and_then(|v| v.as_deref())
                    .unwrap_or("")
                    .to_string()
            };
            aliases.entry(col(0)).or_default().push((col(2), col(3)));
        }
        cpu_bound(|| s.build(classifier, &rows, &typed, &aliases));
        for name in configured
            .iter()
            .filter_map(|r| r.first().cloned().flatten())
        {
            // As the classifier names it (`setting app:jwt_secret`).
            s.functions
                .entry(format!("setting {}", name.replace('.', ":")))
                .or_default()
                .push((
                    String::new(),
                    Resolved {
                        classes: ClassSet::of(&[Class::ServerAccess]),
                        ..Resolved::default()
                    },
                ));
        }
        s.build_domains(classifier, &domains, &expr_calls);
        s.build_operators(&operators);
        for r in &deferred {
            if let (Some(Some(schema)), Some(Some(name))) = (r.first(), r.get(1)) {
                s.deferred
                    .entry(name.clone())
                    .or_default()
                    .push(schema.clone());
            }
        }
        for (oid, schema, name) in type_oids {
            let f = s.function_or_unparsed(&schema, &name);
            let e = s.param_types.entry(oid).or_default();
            e.classes = e.classes.union(f.classes);
            e.tables.extend(f.tables);
        }
        s.build_attached(classifier, &attached, &rules, &reach);
        // After the configured settings: an expression may read one.
        s.build_exprs(classifier, &exprs);
        for r in expr_calls
            .iter()
            .filter(|r| r.get(2).and_then(|v| v.as_deref()) != Some("d"))
        {
            let col = |i: usize| r.get(i).and_then(|v| v.as_deref()).unwrap_or("");
            let res = Resolved {
                classes: crate::classify::builtin_classes(col(3), col(4)),
                ..Resolved::default()
            };
            let map = if col(2) == "r" {
                &mut s.relations
            } else {
                &mut s.on_write
            };
            map.entry(col(1).to_string())
                .or_default()
                .push((col(0).to_string(), res));
        }
        for r in &fkeys {
            let col = |i: usize| r.get(i).and_then(|v| v.as_deref()).unwrap_or("");
            for ((schema, table), (other_schema, other)) in [
                ((col(0), col(1)), (col(2), col(3))),
                ((col(2), col(3)), (col(0), col(1))),
            ] {
                if let Some(read) = s.view(&format!("{other_schema}.{other}")) {
                    s.fk_checked
                        .entry(table.to_string())
                        .or_default()
                        .push((schema.to_string(), read));
                }
            }
        }
        for r in &events {
            let col = |i: usize| r.get(i).and_then(|v| v.as_deref()).unwrap_or("");
            let f = if col(0) == "pg_catalog" || matches!(col(2), "c" | "internal") {
                Resolved {
                    classes: ClassSet::of(&[Class::Unparsed]),
                    ..Resolved::default()
                }
            } else {
                s.function_or_unparsed(col(0), col(1))
            };
            let d = s.on_ddl.get_or_insert_with(Resolved::default);
            d.classes = d.classes.union(f.classes);
            d.tables.extend(f.tables);
        }
        cpu_bound(|| s.build_views(classifier, &views));
        Ok(s)
    }

    fn build(
        &mut self,
        classifier: &Classifier,
        rows: &query::Rows,
        typed: &query::Rows,
        aliases: &Aliases,
    ) {
        // (schema, name) → own classes, tables and calls, overloads merged.
        let mut own: HashMap<(String, String), body::Placed> = HashMap::new();

        for r in rows {
            let col = |i: usize| r.get(i).and_then(|v| v.as_deref()).unwrap_or("");
            let (schema, name, language, src, kind) = (col(0), col(1), col(2), col(3), col(5));
            let def = r.get(4).and_then(|v| v.as_deref());
            let mut placed = if matches!(kind, "f" | "p") {
                body::place(classifier, language, src, def)
            } else {
                // Aggregates and window functions run support functions.
                body::Placed {
                    classes: ClassSet::of(&[Class::Unparsed]),
                    ..Default::default()
                }
            };
            // `SET` clauses: one that changes how SQL is read makes the
            // body mean something else than what was read above.
            if col(6)
                .lines()
                .any(|kv| crate::classify::pg_setting_matters(kv.split('=').next().unwrap_or("")))
            {
                placed.classes.insert(Class::Unparsed);
            }
            // A cursor given by name is fetched from as whatever it was
            // opened for, perhaps long ago (`drain(refcursor)`): unplaceable.
            if col(8) == "true" {
                placed.classes.insert(Class::Unparsed);
            }
            // Argument defaults run on the caller's behalf, as the body does.
            if !col(7).is_empty() {
                let d = body::place(classifier, "sql", &format!("SELECT {}", col(7)), None);
                placed.classes = placed.classes.union(d.classes);
                placed.tables.extend(d.tables);
                placed.calls.extend(d.calls);
                placed.optional.extend(d.optional);
            }
            let e = own
                .entry((schema.to_string(), name.to_string()))
                .or_default();
            e.classes = e.classes.union(placed.classes);
            e.tables.append(&mut placed.tables);
            e.calls.append(&mut placed.calls);
            e.optional.append(&mut placed.optional);
        }
        // A function taking or returning a type whose values run user
        // functions (a domain's CHECK) runs them on each call.
        for r in typed {
            let col = |i: usize| r.get(i).and_then(|v| v.as_deref()).unwrap_or("");
            if let Some(e) = own.get_mut(&(col(0).to_string(), col(1).to_string())) {
                e.calls.insert(format!("{}.{}", col(2), col(3)));
            }
        }
        for ((schema, name), r) in close_all(&own, aliases) {
            self.functions.entry(name).or_default().push((schema, r));
        }
    }

    /// What `schema.name` does, `unparsed` when the snapshot lacks it.
    fn function_or_unparsed(&self, schema: &str, name: &str) -> Resolved {
        self.lookup(&format!("{schema}.{name}"))
            .unwrap_or_else(|| Resolved {
                classes: ClassSet::of(&[Class::Unparsed]),
                ..Resolved::default()
            })
    }

    /// Operators and casts, under the names the classifier records for
    /// them (`operator ===`, `type checked_int`), looked up as functions.
    fn build_operators(&mut self, rows: &query::Rows) {
        let mut add: Vec<(String, String, Resolved)> = Vec::new();
        for r in rows {
            let col = |i: usize| r.get(i).and_then(|v| v.as_deref()).unwrap_or("");
            // A built-in function (told by oid: a superuser's own may be
            // in pg_catalog under a built-in's name) is what calling it is.
            let res = if col(4) == "true" {
                Resolved {
                    classes: crate::classify::builtin_classes(col(2), col(3)),
                    ..Resolved::default()
                }
            } else {
                self.function_or_unparsed(col(2), col(3))
            };
            add.push((col(0).to_string(), col(1).to_string(), res));
        }
        for (name, schema, res) in add {
            self.functions.entry(name).or_default().push((schema, res));
        }
    }

    /// Relations' attached functions, rules and children (see the queries).
    /// What a read sets off joins `relations` (as a view's definition does);
    /// what only a change sets off goes to `on_write`.
    /// `DOMAIN_EXPRS_QUERY`'s rows: `domain <oid>`, what a domain's
    /// DEFAULT and CHECK do (for each domain with either: the ones
    /// `TYPES_QUERY` names).
    fn build_domains(
        &mut self,
        classifier: &Classifier,
        domains: &query::Rows,
        expr_calls: &query::Rows,
    ) {
        let mut placed_by: HashMap<String, Resolved> = HashMap::new();
        for r in domains {
            let col = |i: usize| r.get(i).and_then(|v| v.as_deref()).unwrap_or("");
            let res = self.expression(classifier, col(1));
            let e = placed_by.entry(format!("domain {}", col(0))).or_default();
            e.classes = e.classes.union(res.classes);
            e.tables.extend(res.tables);
        }
        // The built-ins their stored trees call (`EXPR_CALLS_QUERY`).
        for r in expr_calls {
            let col = |i: usize| r.get(i).and_then(|v| v.as_deref()).unwrap_or("");
            if col(2) == "d" {
                let e = placed_by.entry(col(1).to_string()).or_default();
                e.classes = e
                    .classes
                    .union(crate::classify::builtin_classes(col(3), col(4)));
            }
        }
        for (name, res) in placed_by {
            self.functions
                .entry(name)
                .or_default()
                .push((String::new(), res));
        }
    }

    /// What an expression (`SELECT <expr>`, or a definition around one)
    /// does when evaluated, the functions it calls placed.
    fn expression(&self, classifier: &Classifier, sql: &str) -> Resolved {
        // The SELECT around an expression reads nothing of its own.
        self.placed_code(body::place(classifier, "sql", sql, None), true)
    }

    /// What placed code (a rule's action, an expression) does, the
    /// functions it calls looked up; without the DDL around it (the
    /// CREATE RULE, CREATE TRIGGER, ALTER TABLE is not what runs) and, with
    /// `strip_read`, without a read when it names no table.
    fn placed_code(&self, placed: body::Placed, strip_read: bool) -> Resolved {
        let mut res = Resolved {
            classes: placed.classes,
            tables: placed.tables,
        };
        res.classes.remove(Class::Ddl);
        if strip_read && res.tables.is_empty() {
            res.classes.remove(Class::Read);
        }
        for call in &placed.calls {
            let f = self.lookup(call).unwrap_or_else(|| Resolved {
                classes: ClassSet::of(&[Class::Unparsed]),
                ..Resolved::default()
            });
            res.classes = res.classes.union(f.classes);
            res.tables.extend(f.tables);
        }
        self.absorb_optional(&placed.optional, &mut res);
        res
    }

    /// `EXPRS_QUERY`'s rows: what each expression does, read as the
    /// classifier reads any statement (the `CREATE TRIGGER` around a WHEN
    /// clause is not what runs).
    fn build_exprs(&mut self, classifier: &Classifier, exprs: &query::Rows) {
        for r in exprs {
            let col = |i: usize| r.get(i).and_then(|v| v.as_deref()).unwrap_or("");
            let res = self.expression(classifier, col(3));
            let map = if col(2) == "r" {
                &mut self.relations
            } else {
                &mut self.on_write
            };
            map.entry(col(1).to_string())
                .or_default()
                .push((col(0).to_string(), res));
        }
    }

    fn build_attached(
        &mut self,
        classifier: &Classifier,
        attached: &query::Rows,
        rules: &query::Rows,
        reach: &query::Rows,
    ) {
        let col = |r: &Vec<Option<String>>, i: usize| {
            r.get(i)
                .and_then(|v| v.as_deref())
                .unwrap_or("")
                .to_string()
        };
        let mut folds: HashMap<&str, Option<crate::classify::Foldable>> = HashMap::new();
        for r in attached {
            let res = self.function_or_unparsed(&col(r, 2), &col(r, 3));
            let read = col(r, 4) == "r"
                || r.get(5).and_then(|d| d.as_deref()).is_some_and(|def| {
                    col(r, 6) == "true"
                        || folded(
                            folds
                                .entry(def)
                                .or_insert_with(|| crate::classify::foldable(def)),
                            &col(r, 3),
                        )
                });
            let map = if read {
                &mut self.relations
            } else {
                &mut self.on_write
            };
            map.entry(col(r, 1)).or_default().push((col(r, 0), res));
        }
        for r in rules {
            let res = self.placed_code(body::place(classifier, "sql", &col(r, 2), None), false);
            self.on_write
                .entry(col(r, 1))
                .or_default()
                .push((col(r, 0), res));
        }
        for r in reach {
            let res = Resolved {
                classes: ClassSet::EMPTY,
                tables: std::iter::once(col(r, 2)).collect(),
            };
            let map = match col(r, 3).as_str() {
                "i" => {
                    self.relations
                        .entry(col(r, 1))
                        .or_default()
                        .push((col(r, 0), res.clone()));
                    &mut self.children
                }
                "d" => &mut self.on_delete,
                "t" => &mut self.on_truncate,
                _ => &mut self.on_update,
            };
            map.entry(col(r, 1)).or_default().push((col(r, 0), res));
        }
    }

    /// Views: what reading each reaches — its definition's tables and
    /// classes, through the functions it calls and the views it reads
    /// (followed `MAX_DEPTH` levels; deeper chains are `unparsed`).
    fn build_views(&mut self, classifier: &Classifier, rows: &query::Rows) {
        for r in rows {
            let col = |i: usize| r.get(i).and_then(|v| v.as_deref()).unwrap_or("");
            if r.get(2).is_some_and(Option::is_none) {
                // A foreign table: what it reaches is out of sight.
                self.relations.entry(col(1).to_string()).or_default().push((
                    col(0).to_string(),
                    Resolved {
                        classes: ClassSet::of(&[Class::Unparsed]),
                        ..Resolved::default()
                    },
                ));
                continue;
            }
            let placed = body::place(classifier, "sql", col(2), None);
            let mut res = Resolved {
                classes: placed.classes,
                tables: placed.tables,
            };
            for call in &placed.calls {
                match self.lookup(call) {
                    Some(f) => {
                        res.classes = res.classes.union(f.classes);
                        res.tables.extend(f.tables);
                    }
                    None => res.classes.insert(Class::Unparsed),
                }
            }
            self.absorb_optional(&placed.optional, &mut res);
            self.relations
                .entry(col(1).to_string())
                .or_default()
                .push((col(0).to_string(), res));
        }
        for round in 0..=MAX_DEPTH {
            let mut changed = false;
            let names: Vec<(String, usize)> = self
                .relations
                .iter()
                .flat_map(|(n, v)| (0..v.len()).map(move |i| (n.clone(), i)))
                .collect();
            for (n, i) in names {
                let tables: Vec<String> = self.relations[&n][i].1.tables.iter().cloned().collect();
                let mut add = Resolved::default();
                for t in tables {
                    if let Some(v) = self.view(&t) {
                        add.classes = add.classes.union(v.classes);
                        add.tables.extend(v.tables);
                    }
                }
                let cur = &mut self.relations.get_mut(&n).expect("listed")[i].1;
                let before = (cur.classes, cur.tables.len());
                cur.classes = cur.classes.union(add.classes);
                cur.tables.extend(add.tables);
                changed |= before != (cur.classes, cur.tables.len());
                if round == MAX_DEPTH && changed {
                    cur.classes.insert(Class::Unparsed);
                }
            }
            if !changed {
                break;
            }
        }
    }

    /// What the operators, casts and built-in names `placed` uses run,
    /// where a user object stands behind them.
    fn absorb_optional(&self, optional: &BTreeSet<String>, res: &mut Resolved) {
        for o in optional {
            if let Some(f) = self.lookup(o) {
                res.classes = res.classes.union(f.classes);
                res.tables.extend(f.tables);
            }
        }
    }

    /// A view or materialized view, by the table name the classifier wrote.
    fn view(&self, t: &str) -> Option<Resolved> {
        find(&self.relations, t)
    }

    /// `name` or `schema.name` as the classifier wrote it.
    fn lookup(&self, f: &str) -> Option<Resolved> {
        find(&self.functions, f)
    }
}

/// Whether planning a query on the relation runs `function` of a
/// definition (its [`crate::classify::Foldable`]; `None`: unread, so it
/// may; a SQL function counts whatever its call, being inlined first): the planner folds an immutable call with constant arguments in
/// index expressions and predicates and in expression statistics when it
/// first loads them, in CHECK constraints for constraint exclusion
/// (inheritance children, `constraint_exclusion = on`), in partition keys.
/// A user function claiming to be immutable may do anything.
fn folded(def: &Option<crate::classify::Foldable>, function: &str) -> bool {
    def.as_ref()
        .is_none_or(|f| f.operators || f.calls.contains(function))
}

/// Most tables one change is followed to; past it, `unparsed`.
const MAX_REACHED: usize = 1000;

fn changes(c: ClassSet) -> bool {
    c.contains(Class::Write) || c.contains(Class::Destructive) || c.contains(Class::Ddl)
}

/// What a statement may do to its own tables' rows, for which foreign
/// keys act: anything not known to be a plain INSERT, UPDATE or DELETE
/// (MERGE, an upsert, a CTE, a function's body) may delete and update.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Change {
    deletes: bool,
    updates: bool,
    truncates: bool,
}

impl Change {
    /// What code may do (a TRUNCATE in a body is destructive already).
    const ANY: Change = Change {
        deletes: true,
        updates: true,
        truncates: false,
    };
    const NONE: Change = Change {
        deletes: false,
        updates: false,
        truncates: false,
    };

    fn of(s: &crate::classify::StatementInfo) -> Change {
        match s.command.as_str() {
            "INSERT" if !s.changes_rows => Change::NONE,
            "UPDATE" => Change {
                updates: true,
                ..Change::NONE
            },
            "DELETE" => Change {
                deletes: true,
                ..Change::NONE
            },
            "TRUNCATE" => Change {
                deletes: true,
                truncates: true,
                ..Change::NONE
            },
            _ => Change::ANY,
        }
    }
}

/// What a change sets off, followed from table to table: each table's
/// defaults, checks, triggers and rules (`on_write`), the tables its
/// changes change (children; referencing tables whose foreign keys act on
/// a delete or update, as far as `change` says for the statement's `own`
/// tables, always further on), a view's tables (an updatable view changes
/// its base), and the tables the functions set off touch, in turn. Every
/// table reached is one the statement may change, so table rules apply to
/// it. Over-approximates on purpose (a table only read in the statement is
/// followed too): never less than what runs.
fn on_write_closure(
    snap: &Snapshot,
    own: &[String],
    tables: &BTreeSet<String>,
    change: Change,
) -> (ClassSet, BTreeSet<String>) {
    let mut classes = ClassSet::EMPTY;
    let mut out = BTreeSet::new();
    let mut queue: Vec<(String, Change)> = tables
        .iter()
        .map(|t| {
            let c = if own.contains(t) { change } else { Change::ANY };
            (t.clone(), c)
        })
        .collect();
    let mut seen: HashSet<(String, Change)> = HashSet::new();
    while let Some((t, c)) = queue.pop() {
        if !seen.insert((t.clone(), c)) {
            continue;
        }
        if seen.len() > MAX_REACHED {
            classes.insert(Class::Unparsed);
            break;
        }
        let fks = [
            c.deletes.then(|| find(&snap.on_delete, &t)).flatten(),
            c.updates.then(|| find(&snap.on_update, &t)).flatten(),
            c.truncates.then(|| find(&snap.on_truncate, &t)).flatten(),
        ];
        if fks.iter().any(Option::is_some) {
            // Rows a foreign key's action changes are counted by no
            // command tag: the row guard can't see them.
            classes.insert(Class::Destructive);
        }
        let [on_delete, on_update, on_truncate] = fks;
        // Children and a view's tables change as the table does; what
        // triggers and rules touch, and what cascades reach, may change
        // in any way.
        let same = [find(&snap.children, &t), snap.view(&t)];
        let any = [
            on_delete,
            on_update,
            on_truncate,
            find(&snap.on_write, &t),
            find(&snap.fk_checked, &t),
        ];
        for (r, next) in any
            .into_iter()
            .map(|r| (r, Change::ANY))
            .chain(same.into_iter().map(|r| (r, c)))
        {
            let Some(r) = r else { continue };
            classes = classes.union(r.classes);
            for x in r.tables {
                queue.push((x.clone(), next));
                if !tables.contains(&x) {
                    out.insert(x);
                }
            }
        }
    }
    (classes, out)
}

/// `name` of `name` or `schema.name`.
fn base_name(t: &str) -> &str {
    t.rsplit_once('.').map_or(t, |(_, n)| n)
}

/// What every entry of `map` that `f` (`name` or `schema.name`) may mean
/// does together; `None` when there is none.
fn find(map: &HashMap<String, Vec<(String, Resolved)>>, f: &str) -> Option<Resolved> {
    let (schema, name) = match f.rsplit_once('.') {
        Some((qualifier, name)) => (qualifier.rsplit('.').next(), name),
        None => (None, f),
    };
    let mut out: Option<Resolved> = None;
    for (_, r) in map
        .get(name)?
        .iter()
        .filter(|(s, _)| schema.is_none_or(|want| want == s))
    {
        let o = out.get_or_insert_with(Resolved::default);
        o.classes = o.classes.union(r.classes);
        o.tables.extend(r.tables.iter().cloned());
    }
    out
}

impl crate::classify::lineage::Columns for Catalog {
    fn columns(&self, table: &str) -> Option<Arc<[String]>> {
        Catalog::columns(self, table)
    }
}

/// DDL that can't change what a later statement reads through the
/// snapshot (no new or redefined view, function, rule, trigger or policy,
/// no rename): reviewed statement kinds, by their leading command. Anything
/// else makes the rest of its query string unplaceable.
pub fn keeps_reading(s: &crate::classify::StatementInfo) -> bool {
    keeps_reading_with(s, None)
}

/// [`keeps_reading`], with the snapshot to tell whether the types and
/// operators a statement names stand for user code.
fn keeps_reading_with(s: &crate::classify::StatementInfo, snap: Option<&Snapshot>) -> bool {
    const KINDS: &[&str] = &[
        "TRUNCATE", "COMMENT", "ANALYZE", "VACUUM", "REINDEX", "CLUSTER",
    ];
    let c = s.command.as_str();
    // A DROP only removes what the snapshot still expands (conservative).
    let is = |k: &str| {
        c.strip_prefix(k)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(' '))
    };
    if is("CREATE TABLE") || is("CREATE INDEX") || is("CREATE UNIQUE") {
        // A new table shadows no view the snapshot would miss (views are
        // followed by name in every schema), but it changes what later
        // writes to it run when it attaches code: a user function (in a
        // default, CHECK, generated column or index expression), a column
        // of a type with code behind it (a domain's CHECK), or another
        // table (LIKE, INHERITS, PARTITION OF, a foreign key to cascade).
        let only_ddl = s.classes.iter().all(|c| c == Class::Ddl);
        let code = s.pending.as_ref().is_some_and(|p| {
            !p.functions.is_empty()
                || snap.is_some_and(|snap| p.builtins.iter().any(|b| snap.lookup(b).is_some()))
        });
        return only_ddl && !code && s.tables.len() <= 1;
    }
    c.starts_with("DROP ") || KINDS.iter().any(|k| is(k))
}

/// Runs the CPU-bound part of a load (classifying every body and view) off
/// the runtime's scheduling: the listener and sessions on this worker move
/// to another meanwhile, instead of waiting behind it.
fn cpu_bound<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Each function's classes with those of every user function it calls,
/// transitively; a cycle, a chain deeper than `MAX_DEPTH` or a call of a
/// function not in the catalog is `unparsed`.
///
/// Linear in functions and calls: the call graph's strongly connected
/// components (Tarjan's algorithm, iterative, so a long chain cannot
/// overflow the stack) are closed once each, callees first. Following
/// every path instead is exponential in the depth: an extension such as
/// hstore, whose functions and operators reach each other many ways, took
/// minutes of CPU per load. Written here: a graph crate for one algorithm
/// over a graph this small would be a needless dependency.
fn close_all(
    own: &HashMap<(String, String), body::Placed>,
    aliases: &Aliases,
) -> Vec<((String, String), Resolved)> {
    let keys: Vec<&(String, String)> = own.keys().collect();
    let at: HashMap<&(String, String), usize> =
        keys.iter().enumerate().map(|(i, k)| (*k, i)).collect();
    let mut by_name: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, (_, n)) in keys.iter().enumerate() {
        by_name.entry(n.as_str()).or_default().push(i);
    }
    // Each function's own effects, and the functions it may run.
    let mut base: Vec<Resolved> = Vec::with_capacity(keys.len());
    let mut adj: Vec<Vec<usize>> = Vec::with_capacity(keys.len());
    for k in &keys {
        let p = &own[*k];
        let mut r = Resolved {
            classes: p.classes,
            tables: p.tables.clone(),
        };
        let mut next = Vec::new();
        for call in &p.calls {
            let parts: Vec<&str> = call.split('.').collect();
            let name = parts.last().copied().unwrap_or("");
            let schema = (parts.len() >= 2).then(|| parts[parts.len() - 2]);
            let targets: Vec<usize> = by_name
                .get(name)
                .into_iter()
                .flatten()
                .copied()
                .filter(|&t| schema.is_none_or(|want| want == keys[t].0))
                .collect();
            if targets.is_empty() {
                r.classes.insert(Class::Unparsed);
            }
            next.extend(targets);
        }
        // Operators, casts and built-in names a user object may stand
        // behind: what they run if there is one, nothing otherwise.
        for o in &p.optional {
            match aliases.get(o) {
                Some(fns) => {
                    for (schema, name) in fns {
                        if schema == "pg_catalog" {
                            r.classes = r
                                .classes
                                .union(crate::classify::builtin_classes(schema, name));
                        } else {
                            match at.get(&(schema.clone(), name.clone())) {
                                Some(&t) => next.push(t),
                                None => r.classes.insert(Class::Unparsed),
                            }
                        }
                    }
                }
                None => next.extend(
                    by_name
                        .get(o.as_str())
                        .into_iter()
                        .flatten()
                        .copied()
                        .filter(|&t| keys[t].0 != "pg_catalog"),
                ),
            }
        }
        next.sort_unstable();
        next.dedup();
        base.push(r);
        adj.push(next);
    }
    // Components come out callees first: each is closed from its members
    // and the components it calls, all closed already.
    let comps = strongly_connected(&adj);
    let mut comp_of = vec![0usize; keys.len()];
    for (c, members) in comps.iter().enumerate() {
        for &m in members {
            comp_of[m] = c;
        }
    }
    let mut closed: Vec<(Resolved, usize)> = Vec::with_capacity(comps.len());
    for (c, members) in comps.iter().enumerate() {
        let mut r = Resolved::default();
        let mut height = 0;
        let cyclic = members.len() > 1 || adj[members[0]].contains(&members[0]);
        for &m in members {
            r.classes = r.classes.union(base[m].classes);
            r.tables.extend(base[m].tables.iter().cloned());
            for &t in &adj[m] {
                let d = comp_of[t];
                if d != c {
                    let (sub, h) = &closed[d];
                    r.classes = r.classes.union(sub.classes);
                    r.tables.extend(sub.tables.iter().cloned());
                    height = height.max(*h);
                }
            }
        }
        height += 1;
        if cyclic || height > MAX_DEPTH {
            r.classes.insert(Class::Unparsed);
        }
        closed.push((r, height));
    }
    keys.iter()
        .enumerate()
        .map(|(i, k)| ((*k).clone(), closed[comp_of[i]].0.clone()))
        .collect()
}

/// The strongly connected components of a graph, each after every
/// component it reaches (Tarjan's algorithm, without recursion).
fn strongly_connected(adj: &[Vec<usize>]) -> Vec<Vec<usize>> {
    const UNSEEN: usize = usize::MAX;
    let n = adj.len();
    let (mut index, mut low, mut on) = (vec![UNSEEN; n], vec![0; n], vec![false; n]);
    let (mut stack, mut comps, mut next) = (Vec::new(), Vec::new(), 0);
    let mut calls: Vec<(usize, usize)> = Vec::new();
    for s in 0..n {
        if index[s] != UNSEEN {
            continue;
        }
        index[s] = next;
        low[s] = next;
        next += 1;
        stack.push(s);
        on[s] = true;
        calls.push((s, 0));
        while let Some((v, i)) = calls.pop() {
            if let Some(&w) = adj[v].get(i) {
                calls.push((v, i + 1));
                if index[w] == UNSEEN {
                    index[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on[w] = true;
                    calls.push((w, 0));
                } else if on[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            if low[v] == index[v] {
                let mut comp = Vec::new();
                while let Some(w) = stack.pop() {
                    on[w] = false;
                    comp.push(w);
                    if w == v {
                        break;
                    }
                }
                comps.push(comp);
            }
            if let Some(&(u, _)) = calls.last() {
                low[u] = low[u].min(low[v]);
            }
        }
    }
    comps
}

/// Operator and cast names as the classifier records them (`operator
/// ===`, `type t`) → the (schema, name) of each function they may run.
type Aliases = HashMap<String, Vec<(String, String)>>;

fn role_warnings(rows: &query::Rows) -> Vec<String> {
    let Some(r) = rows.first() else {
        return vec!["cannot read the upstream login's rights".into()];
    };
    let col = |i: usize| r.get(i).and_then(|v| v.as_deref()).unwrap_or("");
    let who = col(1);
    let mut w = Vec::new();
    if col(0) == "true" {
        w.push(format!(
            "the upstream login `{who}` is a superuser: a statement that slipped past the policy could do anything; give sqlgate a login with only the rights agents need"
        ));
    }
    for (i, role) in [
        (2, "pg_read_server_files"),
        (3, "pg_write_server_files"),
        (4, "pg_execute_server_program"),
    ] {
        if col(i) == "true" {
            w.push(format!(
                "the upstream login `{who}` is a member of {role}: it can reach the server's files or programs"
            ));
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placed(classes: &[Class], calls: &[&str]) -> body::Placed {
        body::Placed {
            classes: ClassSet::of(classes),
            calls: calls.iter().map(|c| c.to_string()).collect(),
            ..body::Placed::default()
        }
    }

    #[test]
    fn closing_follows_chains_cycles_and_many_paths_in_linear_time() {
        let key = |n: &str| ("public".to_string(), n.to_string());
        let mut own = HashMap::new();
        // a -> b -> c (c writes); d <-> e (a cycle); f calls a missing one.
        own.insert(key("a"), placed(&[Class::Read], &["b"]));
        own.insert(key("b"), placed(&[Class::Read], &["public.c"]));
        own.insert(key("c"), placed(&[Class::Write], &[]));
        own.insert(key("d"), placed(&[Class::Read], &["e"]));
        own.insert(key("e"), placed(&[Class::Read], &["d"]));
        own.insert(key("f"), placed(&[Class::Read], &["nowhere"]));
        // A chain of MAX_DEPTH + 1: too deep.
        for i in 0..=MAX_DEPTH {
            let calls: Vec<String> = (i < MAX_DEPTH)
                .then(|| format!("deep{}", i + 1))
                .into_iter()
                .collect();
            let calls: Vec<&str> = calls.iter().map(String::as_str).collect();
            own.insert(key(&format!("deep{i}")), placed(&[Class::Read], &calls));
        }
        // 40 layers of 4 functions, each calling all of the next layer:
        // 4^40 paths, as an extension's operators can be.
        for l in 0..40 {
            for j in 0..4 {
                let calls: Vec<String> = if l < 39 {
                    (0..4).map(|k| format!("m{}_{k}", l + 1)).collect()
                } else {
                    vec![]
                };
                let calls: Vec<&str> = calls.iter().map(String::as_str).collect();
                own.insert(key(&format!("m{l}_{j}")), placed(&[Class::Read], &calls));
            }
        }
        let started = std::time::Instant::now();
        let all: HashMap<String, Resolved> = close_all(&own, &Aliases::new())
            .into_iter()
            .map(|((_, n), r)| (n, r))
            .collect();
        assert!(started.elapsed() < Duration::from_secs(5));
        let has = |n: &str, c: Class| all[n].classes.contains(c);
        assert!(has("a", Class::Write) && !has("a", Class::Unparsed));
        assert!(has("d", Class::Unparsed) && has("e", Class::Unparsed));
        assert!(has("f", Class::Unparsed));
        assert!(has("deep0", Class::Unparsed) && !has("deep1", Class::Unparsed));
        // Deeper than MAX_DEPTH from the top layers, not from the last ones.
        assert!(has("m0_0", Class::Unparsed) && !has("m39_0", Class::Unparsed));
    }

    fn row(v: &[&str]) -> Vec<Option<String>> {
        v.iter()
            .map(|s| (!s.is_empty()).then(|| s.to_string()))
            .collect()
    }

    fn snapshot(rows: &[Vec<Option<String>>]) -> Snapshot {
        let mut s = Snapshot {
            loaded: Some(Instant::now()),
            ..Default::default()
        };
        s.build(
            &Classifier::new(Dialect::Postgres, ClassifierOptions::default()),
            &rows.to_vec(),
            &Vec::new(),
            &HashMap::new(),
        );
        s
    }

    #[test]
    fn operators_in_bodies_and_cascades_are_followed() {
        let mut s = Snapshot {
            loaded: Some(Instant::now()),
            ..Default::default()
        };
        let rows = vec![
            row(&[
                "public",
                "purge",
                "sql",
                "DELETE FROM audit_me",
                "",
                "f",
                "",
                "",
            ]),
            row(&[
                "public",
                "uses_op",
                "sql",
                "SELECT 1 === 2",
                "",
                "f",
                "",
                "",
            ]),
        ];
        let aliases: Aliases = HashMap::from([(
            "operator ===".into(),
            vec![("public".into(), "purge".into())],
        )]);
        s.build(
            &Classifier::new(Dialect::Postgres, ClassifierOptions::default()),
            &rows,
            &Vec::new(),
            &aliases,
        );
        let f = s.lookup("uses_op").expect("placed");
        assert!(f.classes.contains(Class::Destructive), "{f:?}");
        // A delete of `customers` cascades into `orders`, whose trigger runs `purge`.
        s.on_delete.insert(
            "customers".into(),
            vec![(
                "public".into(),
                Resolved {
                    tables: ["public.orders".to_string()].into(),
                    ..Resolved::default()
                },
            )],
        );
        s.on_write.insert(
            "orders".into(),
            vec![("public".into(), s.lookup("purge").unwrap())],
        );
        let own = vec!["customers".to_string()];
        let tables: BTreeSet<String> = own.iter().cloned().collect();
        let delete = Change {
            deletes: true,
            ..Change::NONE
        };
        let (c, t) = on_write_closure(&s, &own, &tables, delete);
        assert!(
            c.contains(Class::Destructive) && t.contains("public.orders"),
            "{c:?} {t:?}"
        );
        let (c, t) = on_write_closure(&s, &own, &tables, Change::NONE);
        assert!(c.is_empty() && t.is_empty(), "{c:?} {t:?}");
    }

    #[test]
    fn calls_are_followed_through_other_functions() {
        let s = snapshot(&[
            row(&["public", "outer_fn", "sql", "SELECT inner_fn()", "", "f"]),
            row(&["app", "inner_fn", "sql", "DELETE FROM audit_me", "", "f"]),
            row(&["public", "loop_a", "sql", "SELECT loop_b()", "", "f"]),
            row(&["public", "loop_b", "sql", "SELECT loop_a()", "", "f"]),
            row(&["public", "lost", "sql", "SELECT not_there()", "", "f"]),
        ]);
        let r = s.lookup("outer_fn").unwrap();
        assert!(r.classes.contains(Class::Destructive) && r.tables.contains("audit_me"));
        assert!(s.lookup("public.outer_fn").is_some());
        assert!(s.lookup("app.outer_fn").is_none());
        assert!(s
            .lookup("loop_a")
            .unwrap()
            .classes
            .contains(Class::Unparsed));
        assert!(s.lookup("lost").unwrap().classes.contains(Class::Unparsed));
    }

    #[test]
    fn resolution_fails_closed() {
        let c = Catalog::new("db");
        let classifier = Classifier::new(Dialect::Postgres, ClassifierOptions::default());
        let a = classifier.classify("SELECT harmless()");
        // No snapshot yet: stays unparsed.
        assert!(c.resolve(a.clone(), false).statements[0]
            .classes
            .contains(Class::Unparsed));
        let s = snapshot(&[row(&["public", "harmless", "sql", "SELECT 1", "", "f"])]);
        *c.snapshot.write().unwrap() = Arc::new(s);
        let r = c.resolve(a.clone(), false);
        assert_eq!(r.statements[0].classes, ClassSet::of(&[Class::Read]));
        // After a view or function is made in the same string: unplaceable.
        let r = c.resolve(
            classifier.classify("CREATE VIEW v AS SELECT 1; SELECT * FROM v"),
            false,
        );
        assert!(r.statements[1].classes.contains(Class::Unparsed), "{r:?}");
        let r = c.resolve(classifier.classify("TRUNCATE t; SELECT harmless()"), false);
        assert_eq!(r.statements[1].classes, ClassSet::of(&[Class::Read]));
        // Classifying DDL changes nothing; a completed one makes the
        // snapshot stale until reloaded.
        c.resolve(
            classifier
                .classify("CREATE FUNCTION harmless() RETURNS int LANGUAGE sql AS 'SELECT 2'"),
            false,
        );
        assert_eq!(
            c.resolve(a.clone(), false).statements[0].classes,
            ClassSet::of(&[Class::Read])
        );
        c.changed();
        assert!(c.resolve(a, false).statements[0]
            .classes
            .contains(Class::Unparsed));
    }

    #[test]
    fn superuser_logins_are_reported() {
        let w = role_warnings(&vec![row(&["true", "svc", "false", "false", "true"])]);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(role_warnings(&vec![row(&["false", "svc", "false", "false", "false"])]).is_empty());
    }
}
