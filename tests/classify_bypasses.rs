//! The adversarial review's findings (shared/notes/adversarial-review-2026-12.md)
//! and variants of each class, at the classifier: what PostgreSQL will run
//! must be what sqlgate says. `tests/pg_bypasses.rs` runs the same attacks
//! through the proxy and checks their effect on the server.

use sqlgate::classify::{Analysis, Class, ClassSet, Classifier, ClassifierOptions, Dialect};
use std::sync::Arc;

use Class::*;

fn pg() -> Classifier {
    Classifier::new(Dialect::Postgres, ClassifierOptions::default())
}

fn classes(a: &Arc<Analysis>) -> ClassSet {
    a.statements
        .iter()
        .fold(ClassSet::EMPTY, |c, s| c.union(s.classes))
}

fn has(sql: &str, want: &[Class]) {
    let a = pg().classify(sql);
    let got = classes(&a);
    for c in want {
        assert!(got.contains(*c), "{sql}: want {c} in {got:?} ({a:?})");
    }
}

fn forbidden(sql: &str) {
    let a = pg().classify(sql);
    assert!(
        a.statements.iter().any(|s| s.forbidden.is_some()),
        "{sql}: {a:?}"
    );
}

#[test]
fn string_continuation_is_read_as_the_server_reads_it() {
    let sql =
        "SELECT E'a'\n'\\''; COPY (SELECT 1) TO PROGRAM $$id > /tmp/x$$; DROP TABLE audit_me; --'";
    let a = pg().classify(sql);
    assert_eq!(a.statements.len(), 3, "{a:?}");
    has(sql, &[ServerAccess, Ddl, Destructive]);
    // And the other way round: standard strings hide nothing.
    assert_eq!(pg().classify("SELECT 'a\\'").statements.len(), 1);
    assert_eq!(
        pg().classify("SELECT E'a\\'; DROP TABLE t; --'")
            .statements
            .len(),
        1
    );
}

#[test]
fn unicode_escaped_identifiers_are_decoded() {
    for sql in [
        "SELECT U&\"pg_read_file\"('/etc/passwd')",
        "SELECT U&\"pg\\005fread\\005ffile\"('/etc/passwd')",
        "SELECT U&\"pg!005fread!005ffile\" UESCAPE '!' ('/etc/passwd')",
        "SELECT U&\"lo_import\"('/etc/passwd')",
        "SELECT U&\"lo_export\"(1, '/tmp/x')",
        "SELECT pg_catalog.\"PG_READ_FILE\"('x') FROM (SELECT 1) s, LATERAL pg_read_file('y')",
    ] {
        has(sql, &[ServerAccess]);
    }
    let a = pg().classify("SELECT * FROM U&\"s\\0065crets\"");
    assert_eq!(a.statements[0].tables, ["secrets"]);
    forbidden("SELECT U&\"set_config\"('standard_conforming_strings', 'off', false)");
}

#[test]
fn the_cache_never_serves_a_decision_that_read_a_literal() {
    let c = pg();
    for warm in [
        "SELECT \"set_config\"('application_name', 'warm', false)",
        "SELECT set_config('application_name', 'warm', false)",
    ] {
        c.classify(warm);
        let role = warm.replace(
            "'application_name', 'warm'",
            "'role', 'pg_read_server_files'",
        );
        assert!(classes(&c.classify(&role)).contains(Privilege), "{role}");
        let scs = warm.replace(
            "'application_name', 'warm'",
            "'standard_conforming_strings', 'off'",
        );
        assert!(c.classify(&scs).statements[0].forbidden.is_some(), "{scs}");
    }
    c.classify("CREATE FUNCTION f(int) RETURNS int LANGUAGE 'sql' AS 'SELECT 1'");
    let cf = c.classify("CREATE FUNCTION f(cstring) RETURNS int LANGUAGE 'c' AS '/some/lib.so'");
    assert!(classes(&cf).contains(ServerAccess), "{cf:?}");
    assert!(cf.statements[0].code);
    c.classify("SET application_name = 'x'");
    assert!(c
        .classify("SET standard_conforming_strings = 'off'")
        .statements[0]
        .forbidden
        .is_some());
}

#[test]
fn explain_runs_its_statement_by_the_tree_not_the_spelling() {
    for sql in [
        "EXPLAIN (ANALYSE) DELETE FROM users",
        "EXPLAIN (ANALYZE) DELETE FROM users",
        "EXPLAIN ANALYSE DELETE FROM users",
        "EXPLAIN (ANALYZE true, COSTS off) DELETE FROM users",
        "EXPLAIN (FORMAT JSON, ANALYSE 1) DELETE FROM users",
    ] {
        has(sql, &[Write, Destructive]);
    }
    has(
        "EXPLAIN (ANALYSE) CREATE TABLE stolen AS SELECT * FROM users",
        &[Ddl, Write],
    );
    // Not run: read, but the functions it names still count.
    let a = pg().classify("EXPLAIN DELETE FROM users");
    assert_eq!(classes(&a), ClassSet::of(&[Read]));
    has("EXPLAIN SELECT pg_read_file('x')", &[ServerAccess]);
}

#[test]
fn setting_names_are_matched_as_postgres_matches_them() {
    for sql in [
        "SET \"ROLE\" = pg_read_server_files",
        "SET \"Session_Authorization\" = postgres",
        "SET role TO postgres",
        "SET SESSION AUTHORIZATION postgres",
        "SET LOCAL \"role\" = 'x'",
        "SET session_replication_role = replica",
        "SET log_statement = 'none'",
        "SET zero_damaged_pages = on",
        "SET lo_compat_privileges = on",
        "SET app.tenant_id = '42'",
        "SELECT set_config('session_replication_role', 'replica', false)",
        "SELECT set_config('ROLE', 'postgres', false)",
    ] {
        has(sql, &[Privilege]);
    }
    // pg_catalog after another schema lets user functions shadow built-ins.
    for sql in [
        "SET search_path = public, pg_catalog",
        "SET search_path TO 'evil', \"pg_catalog\"",
        "SELECT set_config('search_path', 'public, pg_catalog', false)",
        "SELECT set_config('search_path', current_setting('x'), false)",
        // Round 23, F1: unqualified names would reach information_schema's
        // built-ins (`CREATE OR REPLACE VIEW tables …` replaces one).
        "SET search_path = information_schema, public",
        "SET search_path = public, \"information_schema\"",
        "SELECT set_config('search_path', 'pg_toast', false)",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql SET search_path = information_schema AS 'SELECT 1'",
    ] {
        has(sql, &[Privilege]);
    }
    for sql in [
        "SET search_path = public",
        "SET search_path = pg_catalog, public",
        "SET statement_timeout = '5s'",
        "SET TIME ZONE 'UTC'",
    ] {
        assert_eq!(
            classes(&pg().classify(sql)),
            ClassSet::of(&[Session]),
            "{sql}"
        );
    }
}

#[test]
fn writes_to_system_catalogs_are_privilege_changes() {
    for sql in [
        "UPDATE pg_authid SET rolsuper = true WHERE rolname = 'intern'",
        "UPDATE pg_catalog.pg_class SET relname = 'not_secret' WHERE relname = 'sec' || 'rets'",
        "INSERT INTO pg_catalog.pg_auth_members VALUES (1, 2, 3, false)",
        "DELETE FROM information_schema.sql_features",
        "WITH x AS (UPDATE pg_proc SET prosecdef = true RETURNING 1) SELECT * FROM x",
        "COPY pg_authid FROM STDIN",
    ] {
        has(sql, &[Privilege, Ddl]);
    }
}

#[test]
fn functions_are_an_allow_list() {
    for sql in [
        "SELECT table_to_xml('secrets', true, false, '')",
        "SELECT schema_to_xml('public', true, false, '')",
        "SELECT database_to_xml(true, false, '')",
        "SELECT cursor_to_xml('c', 10, true, false, '')",
        "SELECT my_own_function()",
        "SELECT public.lower('x')",
        "SELECT 1 OPERATOR(public.+) 2",
        "SELECT * FROM pg_stats WHERE tablename = 'secrets'",
    ] {
        has(sql, &[Unparsed]);
    }
    // SQL given as a constant string is read: table rules apply to it.
    for sql in [
        "SELECT ts_rewrite('a'::tsquery, 'SELECT ''a''::tsquery, quote_literal(v)::tsquery FROM secrets')",
        "SELECT query_to_xml('select * from secrets', true, false, '')",
    ] {
        let a = pg().classify(sql);
        assert!(a.statements[0].tables.iter().any(|t| t == "secrets"), "{sql}: {a:?}");
    }
    has("SELECT pg_import_system_collations('public')", &[Ddl]);
    for sql in [
        "SELECT pg_create_physical_replication_slot('s', true)",
        "SELECT * FROM pg_hba_file_rules",
        "SELECT * FROM pg_catalog.pg_file_settings",
        "SELECT pg_log_backend_memory_contexts(pg_backend_pid())",
        "SELECT pg_stat_reset()",
        "SELECT * FROM pg_ls_replslotdir('s')",
        "SELECT * FROM pg_ls_logicalsnapdir()",
        "SELECT rolpassword FROM pg_authid",
        // Volatile and not reviewed: never read.
        "SELECT pg_switch_wal()",
        "SELECT pg_drop_replication_slot('s')",
    ] {
        has(sql, &[ServerAccess]);
    }
    for sql in [
        "SELECT lower(name), now(), random(), count(*) FROM t GROUP BY 1",
        "SELECT pg_catalog.upper('x'), gen_random_uuid(), clock_timestamp()",
    ] {
        assert_eq!(classes(&pg().classify(sql)), ClassSet::of(&[Read]), "{sql}");
    }
    has("SELECT nextval('s'), setval('s', 1)", &[Write]);
    // Overwrites, one object a call, that no tag counts (third review).
    has("SELECT setval('s', 1)", &[Destructive]);
    has(
        "SELECT lo_put(oid, 0, '\\x58'::bytea) FROM pg_largeobject_metadata",
        &[Destructive],
    );
    has("SELECT lowrite(0, 'x')", &[Destructive]);
    // Row locks: a write; on a system catalog, as LOCK is.
    has("SELECT * FROM t FOR UPDATE", &[Write]);
    has(
        "SELECT count(*) FROM (SELECT 1 FROM pg_catalog.pg_class FOR UPDATE) x",
        &[Privilege, Ddl],
    );
    has(
        "COPY (DELETE FROM t RETURNING *) TO STDOUT",
        &[Export, Destructive],
    );
    has("CREATE TABLE x AS EXECUTE p", &[Unparsed]);
    // A dot inside a quoted name is not a schema.
    has("SELECT * FROM \"hr.staff\"", &[Unparsed]);
    has("SELECT \"pub.harmless\"()", &[Unparsed]);
}

#[test]
fn code_literals_are_flagged_for_approvers() {
    for sql in [
        "CREATE OR REPLACE FUNCTION rt_helper() RETURNS text LANGUAGE plpgsql AS $$BEGIN RETURN 'hello'; END$$",
        "DO $$ BEGIN PERFORM 1; END $$",
        "CREATE RULE r AS ON INSERT TO t DO INSTEAD DELETE FROM u WHERE a = 'x'",
        "CREATE POLICY p ON t USING (tenant = 'a')",
        "CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION f()",
        "CREATE PROCEDURE p() LANGUAGE sql AS 'DELETE FROM t'",
        // Identity and settings: who or what runs next.
        "SET ROLE intern",
        "SET SESSION AUTHORIZATION intern",
        "SELECT set_config('role', 'intern', false)",
        "ALTER DATABASE app SET session_preload_libraries = 'evil'",
        "ALTER ROLE bot SET role = 'postgres'",
        // Review 22, F4: which object a held built-in destroys or rewrites
        // is in its arguments: a grant for `setval('a_seq', 1)` must not
        // cover `setval('b_seq', 1)`.
        "SELECT setval('a_seq', 1)",
        "SELECT lo_unlink(424242)",
        "SELECT lo_put(424242, 0, 'x')",
        "SELECT brin_summarize_range('i', 0)",
    ] {
        let a = pg().classify(sql);
        assert!(a.statements[0].code, "{sql}: {a:?}");
    }
    assert!(!pg().classify("SELECT 'x'").statements[0].code);
    assert!(!pg().classify("SELECT nextval('a_seq')").statements[0].code);
    assert!(!pg().classify("SET work_mem = '64MB'").statements[0].code);
}

#[test]
fn ddl_that_installs_code_carries_what_the_code_does() {
    // A rule runs its actions on everyone's statements from now on.
    has(
        "CREATE RULE r AS ON INSERT TO t DO ALSO DELETE FROM customers",
        &[Ddl, Destructive],
    );
    has(
        "CREATE RULE r AS ON INSERT TO t DO ALSO DELETE FROM customers WHERE id = new.id",
        &[Ddl, Write, Destructive],
    );
    has(
        "CREATE RULE r AS ON UPDATE TO t DO INSTEAD UPDATE u SET a = 1",
        &[Destructive],
    );
    has(
        "CREATE RULE r AS ON INSERT TO t DO ALSO INSERT INTO log VALUES (new.a)",
        &[Write],
    );
    // An upsert action updates rows no tag counts (round 12).
    has(
        "CREATE RULE r AS ON INSERT TO t DO ALSO INSERT INTO a SELECT id, new.b FROM a ON CONFLICT (id) DO UPDATE SET b = excluded.b",
        &[Destructive],
    );
    // A trigger's function is decided by the catalog, as a call is.
    let a = pg().classify("CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION f()");
    assert!(classes(&a).contains(Unparsed), "{a:?}");
}

#[test]
fn always_true_wheres_are_destructive() {
    for sql in [
        "DELETE FROM audit_me WHERE id IS NULL OR id IS NOT NULL",
        "DELETE FROM t WHERE 1 = 1",
        "DELETE FROM t WHERE a = a",
        "UPDATE t SET b = 1 WHERE lower(a) >= lower(a)",
        "DELETE FROM t WHERE NOT false",
        "DELETE FROM t WHERE id = 5 OR 2 > 1",
    ] {
        has(sql, &[Destructive]);
    }
    assert!(!classes(&pg().classify("DELETE FROM t WHERE id = 5")).contains(Destructive));
}

#[test]
fn sqlgates_own_upstream_names_are_unreachable_from_sql() {
    for sql in [
        "FETCH ALL FROM \"sqlgate.p.1.abcdef\"",
        "MOVE FORWARD 1 IN \"sqlgate.p.1.abcdef\"",
        "CLOSE \"sqlgate.p.1.abcdef\"",
        "DEALLOCATE \"sqlgate.s.2.abcdef\"",
        "PREPARE \"sqlgate.s.3.abcdef\" AS SELECT 1",
        "EXECUTE \"sqlgate.s.3.abcdef\"",
        "DECLARE \"sqlgate.p.9.x\" CURSOR FOR SELECT 1",
    ] {
        forbidden(sql);
    }
    assert!(pg().classify("FETCH ALL FROM c").statements[0]
        .forbidden
        .is_none());
}

#[test]
fn reset_returns_to_the_login_baseline() {
    for sql in [
        "RESET ROLE",
        "RESET \"ROLE\"",
        "DISCARD ALL",
        "RESET ALL",
        "RESET SESSION AUTHORIZATION",
    ] {
        assert_eq!(
            classes(&pg().classify(sql)),
            ClassSet::of(&[Session]),
            "{sql}"
        );
    }
    let long = format!("RESET /*{}*/ ROLE", "x".repeat(70_000));
    // Unread: every class, so no allow for one of them lets it through.
    assert_eq!(classes(&pg().classify(&long)), ClassSet::of(&Class::ALL));
}

#[test]
fn the_cache_is_bounded_by_bytes() {
    let c = pg();
    for i in 0..20 {
        let junk = format!("BEGIN {} {i}", "x ".repeat(128 << 10));
        c.classify(&junk);
    }
    for i in 0..2000 {
        c.classify(&format!("SELECT {} FROM t{i}", "a, ".repeat(500)));
    }
    let (_, bytes) = c.cache_size();
    assert!(bytes <= ClassifierOptions::default().cache_bytes, "{bytes}");
}

#[test]
fn statement_boundaries_are_the_grammars() {
    let a = pg().classify(
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END; SELECT 3",
    );
    assert_eq!(a.statements.len(), 2, "{a:?}");
}

/// The second review's findings that the classifier owns.
#[test]
fn second_review_row_counts_the_guard_cannot_see_are_destructive() {
    for sql in [
        "EXPLAIN (ANALYZE) DELETE FROM audit_me WHERE id > 0",
        "EXPLAIN ANALYZE UPDATE t SET a = 1 WHERE id > 0",
        "WITH d AS (DELETE FROM audit_me WHERE id > 0 RETURNING 1) SELECT count(*) FROM d",
        "WITH u AS (UPDATE t SET a = 1 WHERE id > 0 RETURNING 1) SELECT 1",
    ] {
        has(sql, &[Destructive]);
    }
}

#[test]
fn second_review_sql_in_strings_is_read_and_approved_as_written() {
    // The SQL inside is classified like the agent had sent it.
    has(
        "SELECT query_to_xml('select v from secrets', true, false, '')",
        &[Read],
    );
    let a = pg().classify("SELECT query_to_xml('select v from secrets', true, false, '')");
    assert_eq!(a.statements[0].tables, ["secrets"]);
    assert!(a.statements[0].code, "granted by its exact text");
    has(
        "SELECT query_to_xml('select pg_read_file(''/etc/hostname'') as f', true, false, '')",
        &[ServerAccess],
    );
    has(
        "SELECT query_to_xml('select lo_export(4242, ''/tmp/x'')', true, false, '')",
        &[ServerAccess],
    );
    has(
        "SELECT query_to_xml(current_setting('x'), true, false, '')",
        &[Unparsed],
    );
    let plain = pg().classify("SELECT query_to_xml('select 1 as x', true, false, '')");
    assert!(!classes(&plain).contains(Unparsed), "{plain:?}");
    // Decided on a literal: shown and granted as written.
    for sql in [
        "SELECT set_config('app.tenant', '5', false)",
        "SET standard_conforming_strings = on",
        "SELECT table_to_xml('secrets', true, false, '')",
    ] {
        assert!(pg().classify(sql).statements[0].code, "{sql}");
    }
}

#[test]
fn second_review_toast_and_statement_floods() {
    has(
        "SELECT chunk_data FROM pg_toast.pg_toast_16394",
        &[ServerAccess],
    );
    let flood = "SELECT 1;".repeat(5000);
    let a = Classifier::new(
        Dialect::Postgres,
        ClassifierOptions {
            max_parse_bytes: 1 << 20,
            ..Default::default()
        },
    )
    .classify(&flood);
    assert_eq!(a.statements.len(), 1, "one unparsed statement, not 5000");
    assert!(a.statements[0].classes.contains(Unparsed));
    let huge = "SELECT 1;".repeat(100_000);
    assert_eq!(pg().classify(&huge).statements.len(), 1);
}

#[test]
fn destruction_no_tag_counts_is_destructive() {
    // Large objects destroyed one a call, all of them in one SELECT.
    has(
        "SELECT lo_unlink(oid) FROM pg_largeobject_metadata",
        &[Write, Destructive],
    );
    has("SELECT lo_truncate(lo_open(1, 131072), 0)", &[Destructive]);
    // Rows changed in a data-modifying CTE: the tag counts the outer query.
    has(
        "WITH d AS (DELETE FROM t WHERE id > 0 RETURNING 1) SELECT count(*) FROM d",
        &[Destructive],
    );
    // An upsert's rows are counted by its tag (the row guard), not destructive.
    let a = pg().classify("INSERT INTO t SELECT * FROM s ON CONFLICT (id) DO UPDATE SET x = 1");
    assert!(a.statements[0].changes_rows && !classes(&a).contains(Destructive));
    let a = pg().classify("INSERT INTO t SELECT * FROM s ON CONFLICT DO NOTHING");
    assert!(!a.statements[0].changes_rows);
}

#[test]
fn dropping_data_is_destructive_whatever_else_it_is() {
    for sql in [
        "DROP TABLE customers",
        "TRUNCATE customers",
        "ALTER TABLE customers DROP COLUMN email",
        "DROP SCHEMA app CASCADE",
        // Round I, F1: every row rewritten, to whatever USING says (or
        // cut by a narrower type).
        "ALTER TABLE payments ALTER COLUMN amt TYPE int USING 0",
        "ALTER TABLE customers ALTER name SET DATA TYPE varchar(1)",
        // Round J: every row's label changed; rows leave the table, or
        // are lost at a crash.
        "ALTER TYPE mood RENAME VALUE 'paid' TO 'void'",
        "ALTER TABLE ledger DETACH PARTITION ledger_a",
        "ALTER TABLE ledger DETACH PARTITION ledger_a CONCURRENTLY",
        "ALTER TABLE child NO INHERIT parent",
        "ALTER TABLE customers SET UNLOGGED",
        "CREATE RULE r AS ON INSERT TO orders DO INSTEAD NOTHING",
        "CREATE RULE r AS ON UPDATE TO orders DO INSTEAD SELECT 1",
    ] {
        has(sql, &[Destructive]);
    }
    let a = pg().classify("CREATE RULE r AS ON INSERT TO orders DO ALSO NOTIFY orders");
    assert!(!classes(&a).contains(Destructive), "{a:?}");
}

#[test]
fn a_nul_byte_never_crashes_the_reading() {
    // Found by the classify fuzz target: a literal holding NUL, read back
    // as SQL (table_to_xml's table name).
    for sql in [
        "SELECT table_to_xml('s\0crets', true, false, '')",
        "SELECT query_to_xml('select\0 1', true, false, '')",
        "SELECT 'a\0b'",
        "SELECT 1\0",
    ] {
        let a = pg().classify(sql);
        assert!(
            a.statements.iter().all(|s| !s.classes.is_empty()),
            "{sql:?}"
        );
    }
}

#[test]
fn calls_planning_folds_are_found() {
    // Round 12: the planner runs an immutable call with constant arguments
    // when it loads an index, statistics or CHECK, a read's plan included.
    use sqlgate::classify::foldable;
    let f =
        foldable("CREATE INDEX i ON public.t USING btree (id) WHERE (id > public.live_cutoff())")
            .unwrap();
    assert!(f.calls.contains("live_cutoff") && !f.operators, "{f:?}");
    let f = foldable("CREATE INDEX i ON t USING btree (lower(v), norm(v))").unwrap();
    assert!(f.calls.is_empty() && !f.operators, "{f:?}");
    let f = foldable("CREATE STATISTICS s ON (a + f(1)), b FROM t").unwrap();
    assert!(f.calls.contains("f"), "{f:?}");
    let f = foldable("ALTER TABLE t ADD CHECK ((id > ('1'::mytype)::integer))").unwrap();
    assert!(f.operators, "{f:?}");
    let f = foldable("ALTER TABLE t ADD CHECK ((g(id) > h(k(2))))").unwrap();
    assert!(
        !f.calls.contains("g") && f.calls.contains("h") && f.calls.contains("k"),
        "{f:?}"
    );
    assert!(foldable("not sql at all (").is_none());
}

#[test]
fn sixteenth_review_settings_columns_casts_and_mapping_views() {
    let exact = |sql: &str, want: &[Class]| {
        let a = pg().classify(sql);
        assert_eq!(classes(&a), ClassSet::of(want), "{sql}: {a:?}");
    };
    // D'': a catalog's settings column, read without naming it.
    for sql in [
        "SELECT * FROM pg_proc WHERE proname = 'charge_card'",
        "SELECT p FROM pg_proc p WHERE proname = 'charge_card'",
        "SELECT (p).proconfig FROM pg_proc p",
        "SELECT to_jsonb(p)->>'proconfig' FROM pg_proc p",
        "SELECT x.* FROM pg_proc x",
        "SELECT (p).* FROM pg_proc p",
        "TABLE pg_proc",
        "SELECT pg_catalog.pg_proc FROM pg_catalog.pg_proc",
        "SELECT c30 FROM pg_proc AS p(c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15, c16, c17, c18, c19, c20, c21, c22, c23, c24, c25, c26, c27, c28, c29, c30)",
        "SELECT j.b FROM (pg_am CROSS JOIN pg_proc) AS j(a, b)",
        "SELECT * FROM (SELECT * FROM pg_proc) s",
        "SELECT * FROM pg_roles WHERE rolname = 'postgres'",
        "SELECT r FROM pg_roles r",
        "SELECT row_to_json(r) FROM pg_roles r",
        "SELECT (r).rolconfig FROM pg_roles r",
        "SELECT * FROM pg_user",
        "SELECT to_jsonb(u) FROM pg_user u",
        "SELECT proconfig FROM pg_proc",
        "SELECT pg_options_to_table(proconfig) FROM pg_proc",
        "COPY (SELECT * FROM pg_proc) TO STDOUT",
        "WITH s AS (SELECT * FROM pg_roles) SELECT rolname FROM s",
        // Round 17: attribute notation (`p.f` is `f(p)`), join aliases.
        "SELECT p.to_jsonb->>'proconfig' FROM pg_proc p",
        "SELECT pg_proc.row_to_json FROM pg_proc",
        "SELECT p.to_json FROM pg_proc p",
        "SELECT pg_catalog.pg_proc.to_jsonb->'proconfig' FROM pg_catalog.pg_proc",
        "WITH c AS (SELECT p.to_jsonb AS x FROM pg_proc p) SELECT x->'proconfig' FROM c",
        "SELECT r.to_jsonb->'rolconfig' FROM pg_roles r",
        "SELECT u.to_json->'useconfig' FROM pg_user u",
        "SELECT p.leak FROM pg_proc p",
        "SELECT j FROM (pg_proc JOIN pg_namespace n ON n.oid = pronamespace) AS j",
        "SELECT to_jsonb(j)->'proconfig' FROM (pg_proc JOIN pg_namespace n ON n.oid = pronamespace) AS j",
        "SELECT (j).proconfig FROM (pg_proc JOIN pg_namespace n ON n.oid = pronamespace) AS j",
        "SELECT j.to_jsonb->'proconfig' FROM (pg_proc JOIN pg_namespace n ON n.oid = pronamespace) AS j",
        "SELECT j.proname FROM (pg_proc JOIN pg_namespace n ON n.oid = pronamespace) AS j",
        "SELECT r.to_jsonb->'rolconfig' FROM (pg_roles JOIN pg_database d ON d.datname = 'app') r",
        "SELECT row_to_json(u)->'useconfig' FROM (pg_user CROSS JOIN pg_database) u",
        "SELECT (x).proconfig FROM (SELECT p AS x FROM pg_proc p) s",
        "SELECT (s.x).useconfig FROM (SELECT 1) s, pg_user",
        // Round 18: a `JOIN … USING … AS` alias, a qualifier bound nowhere.
        "SELECT u FROM pg_proc LEFT JOIN (SELECT NULL::text[] AS proconfig) t USING (proconfig) AS u",
        "SELECT to_jsonb(u) FROM pg_roles JOIN (SELECT NULL::text[] AS rolconfig) t USING (rolconfig) AS u",
        "SELECT u.to_jsonb FROM pg_user JOIN (SELECT NULL::text[] AS useconfig) t USING (useconfig) AS u",
        "SELECT array_agg(u) FROM pg_user JOIN (SELECT NULL::text[] AS useconfig) t USING (useconfig) AS u",
        "SELECT zz.to_jsonb FROM pg_proc",
    ] {
        has(sql, &[Unparsed]);
    }
    exact("COPY pg_proc TO STDOUT", &[Export, Unparsed]);
    exact(
        "COPY pg_roles (rolname, rolconfig) TO STDOUT",
        &[Export, Unparsed],
    );
    // Named columns are plain reads: psql's \du and \df.
    for sql in [
        "SELECT r.rolname, r.rolsuper, r.rolinherit, r.rolcreaterole, r.rolcreatedb, r.rolcanlogin, r.rolconnlimit, r.rolvaliduntil, ARRAY(SELECT b.rolname FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles b ON (m.roleid = b.oid) WHERE m.member = r.oid) as memberof, r.rolreplication, r.rolbypassrls FROM pg_catalog.pg_roles r WHERE r.rolname !~ '^pg_' ORDER BY 1",
        "SELECT n.nspname as \"Schema\", p.proname as \"Name\", pg_catalog.pg_get_function_result(p.oid) as \"Result data type\", pg_catalog.pg_get_function_arguments(p.oid) as \"Argument data types\" FROM pg_catalog.pg_proc p LEFT JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace WHERE pg_catalog.pg_function_is_visible(p.oid) ORDER BY 1, 2",
        "SELECT count(*) FROM pg_proc",
        "SELECT rolname FROM pg_user u WHERE u.usesuper",
        "SELECT p.oid, p.proname, n.nspname, t.typname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_type t ON t.oid = p.prorettype",
        "SELECT s.k FROM (SELECT p.proname AS k FROM pg_proc p) s",
        "SELECT p.proargnames[1] FROM pg_proc p",
    ] {
        exact(sql, &[Read]);
    }
    exact("COPY pg_roles (rolname) TO STDOUT", &[Export]);
    // N1: user mappings' options through information_schema.
    for sql in [
        "SELECT * FROM information_schema.user_mapping_options",
        "SELECT option_name, option_value FROM information_schema.user_mapping_options",
        "SELECT umoptions FROM information_schema._pg_user_mappings",
        "SELECT * FROM user_mapping_options",
    ] {
        has(sql, &[ServerAccess]);
    }
    // N2: a cast that changes the value is not the literal.
    for sql in [
        "SELECT current_setting('app.stripe_skXX'::varchar(13))",
        "SELECT current_setting('app.stripe_sk_'::char(13))",
        "SELECT current_setting('primary_conninfo?'::varchar(16))",
        "SELECT current_setting('app.stripe_sk'::name)",
        "SELECT current_setting('app.stripe_sk'::bpchar)",
        "SELECT current_setting('app.stripe_sk'::mytext)",
        "SELECT query_to_xml('SELECT * FROM secretsZ'::varchar(21), true, false, '')",
        "SELECT word FROM ts_stat('SELECT to_tsvector(v) FROM secretsZ'::varchar(34))",
        "SELECT ts_rewrite('a'::tsquery, 'SELECT a, b FROM secretsZ'::char(24))",
    ] {
        has(sql, &[Unparsed]);
    }
    forbidden("SELECT set_config('search_pathX'::varchar(11), 'evil, public', false)");
    // Casts that keep the value as written still read it.
    exact("SELECT current_setting('work_mem'::text)", &[Read]);
    exact(
        "SELECT current_setting('work_mem'::pg_catalog.varchar)",
        &[Read],
    );
    has(
        "SELECT current_setting('primary_conninfo'::text)",
        &[ServerAccess],
    );
}

#[test]
fn role_changes_move_names() {
    // Review F, F17: `"$user"` in search_path is the current role.
    for sql in [
        "SET ROLE prod",
        "SET LOCAL ROLE prod",
        "SET SESSION AUTHORIZATION prod",
        "SELECT set_config('role', 'prod', false)",
        "SELECT set_config('ROLE', 'prod', true)",
        "SET search_path = prod, public",
    ] {
        let a = pg().classify(sql);
        assert!(a.statements[0].moves_names, "{sql}: {a:?}");
    }
    assert!(!pg().classify("SET work_mem = '64MB'").statements[0].moves_names);
}

/// Review 22, F1 and F2: DDL that changes a built-in in place (keeping its
/// OID and name, so every later call is still trusted by name) is server
/// access; the same DDL on one's own objects is only DDL.
#[test]
fn ddl_changing_a_builtin_is_server_access() {
    for sql in [
        "CREATE OR REPLACE FUNCTION pg_catalog.quote_ident(text) RETURNS text LANGUAGE sql AS 'SELECT $1'",
        "CREATE OR REPLACE FUNCTION quote_ident(text) RETURNS text LANGUAGE sql AS 'SELECT $1'",
        "CREATE FUNCTION lower(integer) RETURNS text LANGUAGE sql AS 'SELECT 1::text'",
        "CREATE OR REPLACE FUNCTION information_schema._pg_char_max_length(oid, int4) RETURNS int4 LANGUAGE sql AS 'SELECT 1'",
        "CREATE OR REPLACE FUNCTION _pg_char_max_length(oid, int4) RETURNS int4 LANGUAGE sql AS 'SELECT 1'",
        "CREATE OR REPLACE VIEW pg_catalog.pg_available_extensions AS SELECT 1 AS name",
        "CREATE OR REPLACE VIEW pg_available_extensions AS SELECT 1 AS name",
        "CREATE OR REPLACE AGGREGATE pg_catalog.max(text) (sfunc = text_larger, stype = text, finalfunc = pg_read_file)",
        "CREATE OR REPLACE AGGREGATE max(text) (sfunc = text_larger, stype = text)",
        "ALTER TYPE pg_catalog.text SET (SEND = pg_catalog.pg_read_binary_file)",
        "ALTER TYPE text SET (RECEIVE = textrecv)",
        "ALTER FUNCTION pg_catalog.quote_ident(text) SECURITY DEFINER",
        "ALTER FUNCTION lo_unlink(oid) RENAME TO abs",
        "ALTER FUNCTION pg_catalog.lo_unlink(oid) OWNER TO intern",
        "ALTER FUNCTION lower(text) SET SCHEMA public",
        "ALTER AGGREGATE max(text) RENAME TO mx",
        "ALTER OPERATOR = (int4, int4) SET (RESTRICT = eqsel)",
        "ALTER VIEW pg_catalog.pg_roles RENAME TO r",
        "CREATE RULE r AS ON SELECT TO pg_catalog.pg_roles DO INSTEAD SELECT 1",
        "CREATE OPERATOR pg_catalog.=== (leftarg = int4, rightarg = int4, function = int4eq)",
        // Round 23: a built-in domain or table changed.
        "ALTER DOMAIN information_schema.cardinal_number ADD CONSTRAINT c CHECK (my_check(VALUE))",
        "ALTER TABLE information_schema.sql_features ADD CONSTRAINT c CHECK (my_check(feature_id))",
        "ALTER VIEW pg_catalog.pg_roles ALTER COLUMN rolname SET DEFAULT 'x'",
    ] {
        has(sql, &[ServerAccess, Ddl]);
    }
    // One's own objects: plain DDL.
    for sql in [
        "CREATE OR REPLACE FUNCTION public.quote_ident(text) RETURNS text LANGUAGE sql AS 'SELECT $1'",
        "CREATE OR REPLACE FUNCTION my_fn(text) RETURNS text LANGUAGE sql AS 'SELECT $1'",
        "CREATE OR REPLACE VIEW my_view AS SELECT 1 AS a",
        "CREATE AGGREGATE my_max(text) (sfunc = text_larger, stype = text)",
        "ALTER FUNCTION my_fn(text) RENAME TO other_fn",
        "ALTER OPERATOR public.=== (int4, int4) SET (RESTRICT = eqsel)",
        "ALTER VIEW my_view RENAME TO v2",
        "ALTER DOMAIN public.my_domain ADD CONSTRAINT c CHECK (VALUE > 0)",
        "ALTER TABLE my_table ADD COLUMN c int",
    ] {
        let a = pg().classify(sql);
        let got = classes(&a);
        assert!(got.contains(Ddl) && !got.contains(ServerAccess), "{sql}: {a:?}");
    }
}
