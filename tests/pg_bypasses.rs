//! The adversarial review's attacks (shared/notes/adversarial-review-2026-12.md)
//! through the real proxy, with the shipped rules plus a rule denying
//! `*.secrets`, against a real PostgreSQL whose upstream login is a
//! **superuser** (as many service accounts are): every attack here would
//! work on the server if it got through. Each test is judged by its effect
//! on the server — the table still there, the file not written, the role
//! and setting unchanged — checked directly, not through sqlgate.

mod support;

use support::wire::{self, Wire};
use support::{PgServer, Sqlgate, SqlgateConfig, TestDir};
use support::{SERVICE_PASSWORD, SERVICE_USER, SUPERUSER};
use tokio_postgres::{NoTls, SimpleQueryMessage};

const AGENT: &str = "bot";
const AGENT_PW: &str = "bot-secret";

/// A table whose inserts queue a deferrable constraint trigger, its
/// function harmless ([`DFR_HARMLESS`]) until the DBA makes it purge
/// `audit_me` ([`DFR_PURGES`]).
const DEFERRED_TRIGGER: &str = "CREATE TABLE dfr(id int);
     CREATE FUNCTION dfr_fn() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NULL; END$$;
     CREATE CONSTRAINT TRIGGER dfr_t AFTER INSERT ON dfr DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION dfr_fn();";
const DFR_HARMLESS: &str = "CREATE OR REPLACE FUNCTION dfr_fn() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NULL; END$$";
const DFR_PURGES: &str = "CREATE OR REPLACE FUNCTION dfr_fn() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN PERFORM public.purge(); RETURN NULL; END$$";

struct Env {
    pg: &'static PgServer,
    db: String,
    cfg: SqlgateConfig,
    _gate: Sqlgate,
    _rules: TestDir,
}

impl Env {
    fn new(prefix: &str) -> Env {
        Env::with_rules(prefix, "")
    }

    /// With `extra` as one more rule file (instead of the shipped rules
    /// when it is not empty).
    fn with_rules(prefix: &str, extra: &str) -> Env {
        Env::with_config(prefix, extra, "", true)
    }

    /// With `extra` rules, `toml` appended to sqlgate's configuration, and
    /// the rule denying `secrets` if `secrets_rule`.
    fn with_config(prefix: &str, extra: &str, toml: &str, secrets_rule: bool) -> Env {
        let pg = PgServer::shared();
        let db = pg.unique_database(prefix);
        // Roles are cluster-wide and tests run in parallel: two sessions
        // creating `intern` at once race on pg_authid's unique index, so the
        // loser's error is swallowed rather than checked for beforehand.
        pg.psql(
            &db,
            "CREATE TABLE audit_me(id int PRIMARY KEY, v text);
             INSERT INTO audit_me SELECT g, 'row' FROM generate_series(1, 5) g;
             CREATE TABLE secrets(v text); INSERT INTO secrets VALUES ('TOPSECRET');
             DO $$ BEGIN CREATE ROLE intern;
                EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$;",
        );
        let rules = TestDir::new("bypass-rules");
        let secrets = if secrets_rule {
            "secrets.toml"
        } else {
            "secrets.off"
        };
        std::fs::write(
            rules.join(secrets),
            "[[rule]]\nid = \"no-secrets\"\naction = \"deny\"\nclasses = [\"read\", \"write\", \"export\"]\ntables = [\"*.secrets\", \"secrets\"]\n",
        )
        .unwrap();
        std::fs::write(rules.join("extra.toml"), extra).unwrap();
        let mut cfg = SqlgateConfig::for_pg(pg, &db)
            .agent(AGENT, AGENT_PW, &["agents"])
            .extra(toml);
        if !extra.is_empty() {
            cfg.rules.clear();
        }
        cfg.rules.push(rules.path().to_path_buf());
        // Upstream as the superuser: sqlgate is the only thing in the way.
        cfg.upstream_url = pg.url(&db).replace(
            &format!("{SERVICE_USER}:{SERVICE_PASSWORD}@"),
            &format!("{SUPERUSER}:{SUPERUSER}@"),
        );
        let gate = Sqlgate::start_with(&cfg);
        Env {
            pg,
            db,
            cfg,
            _gate: gate,
            _rules: rules,
        }
    }

    async fn client(&self) -> tokio_postgres::Client {
        let conninfo = format!(
            "host=127.0.0.1 port={} user={AGENT} password={AGENT_PW} dbname={} sslmode=disable",
            self.cfg.listen_port, self.db
        );
        let (client, conn) = tokio_postgres::connect(&conninfo, NoTls).await.unwrap();
        tokio::spawn(conn);
        client
    }

    fn direct(&self, sql: &str) -> String {
        self.pg.psql(&self.db, sql)
    }

    /// In a block on `c`: `write` queues the deferred trigger of
    /// [`DEFERRED_TRIGGER`]; the DBA then makes its function purge
    /// `audit_me` (`purge()` must exist). `end`, which would fire it on
    /// the new definition, is refused with `0A000`, and after the ROLLBACK
    /// nothing was purged or written.
    async fn deferred_then_redefined(&self, c: &tokio_postgres::Client, write: &str, end: &str) {
        run(c, "BEGIN").await.unwrap();
        run(c, write).await.unwrap();
        self.direct(DFR_PURGES);
        tokio::time::sleep(std::time::Duration::from_millis(2500)).await; // catalog refresh
        run(c, "SELECT 1").await.unwrap();
        let r = run(c, end).await;
        assert!(
            r.as_ref().is_err_and(|e| e.starts_with("0A000")),
            "{end}: {r:?}"
        );
        run(c, "ROLLBACK").await.unwrap();
        assert_eq!(self.rows_left(), "5");
        assert_eq!(self.direct("SELECT count(*) FROM dfr"), "0");
    }

    fn rows_left(&self) -> String {
        self.direct("SELECT count(*) FROM audit_me")
    }

    /// Each of `sqls`, sent through sqlgate, is refused, and `audit_me`
    /// still holds its 5 rows after it.
    async fn refused_leaving_rows(&self, c: &tokio_postgres::Client, sqls: &[&str]) {
        for sql in sqls {
            let r = run(c, sql).await;
            assert!(r.is_err(), "{sql}: {r:?}");
            assert_eq!(self.rows_left(), "5", "{sql}");
        }
    }
}

/// Runs `sql` through sqlgate; returns the text of every row, or the error.
async fn run(c: &tokio_postgres::Client, sql: &str) -> Result<String, String> {
    match c.simple_query(sql).await {
        Ok(msgs) => Ok(msgs
            .iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(r) => Some(
                    (0..r.len())
                        .map(|i| r.get(i).unwrap_or("NULL").to_string())
                        .collect::<Vec<_>>()
                        .join("|"),
                ),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("\n")),
        Err(e) => Err(match e.as_db_error() {
            Some(d) => format!("{}: {}", d.code().code(), d.message()),
            None => e.to_string(),
        }),
    }
}

fn tmp_path(tag: &str) -> String {
    format!("/tmp/sqlgate-bypass-{}-{tag}", std::process::id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hidden_statements_and_escaped_names_do_not_run() {
    let env = Env::new("byp_lex");
    let c = env.client().await;
    let file = tmp_path("program");
    let _ = std::fs::remove_file(&file);
    // 1: the E'' continuation hiding COPY … TO PROGRAM and DROP TABLE.
    let sql = format!(
        "SELECT E'a'\n'\\''; COPY (SELECT 1) TO PROGRAM $$id > {file}$$; DROP TABLE audit_me; --'"
    );
    assert!(run(&c, &sql).await.is_err());
    // 4: U& identifiers: file read, large-object export.
    let out = format!("{file}-lo");
    for sql in [
        "SELECT U&\"pg_read_file\"('/etc/passwd')".to_string(),
        "SELECT U&\"pg\\005fread\\005ffile\"('/etc/passwd')".to_string(),
        format!("SELECT U&\"lo_export\"(U&\"lo_from_bytea\"(0, 'x'), '{out}')"),
        format!("SELECT U&\"lo_export\"(lo_from_bytea(0, 'x'), '{out}')"),
    ] {
        let r = run(&c, &sql).await;
        assert!(
            r.as_ref().is_err_and(|e| e.contains("42501")),
            "{sql}: {r:?}"
        );
    }
    assert!(!std::path::Path::new(&file).exists(), "COPY TO PROGRAM ran");
    assert!(!std::path::Path::new(&out).exists(), "lo_export ran");
    assert_eq!(env.rows_left(), "5");
    assert_eq!(
        env.direct("SELECT count(*) FROM pg_largeobject_metadata"),
        "0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_and_roles_stay_as_the_login_left_them() {
    let env = Env::new("byp_set");
    let c = env.client().await;
    // 5: a warmed cache must not serve set_config('role', …).
    run(
        &c,
        "SELECT \"set_config\"('application_name', 'warm', false)",
    )
    .await
    .unwrap();
    for sql in [
        "SELECT \"set_config\"('role', 'intern', false)",
        "SELECT \"set_config\"('standard_conforming_strings', 'off', false)",
        "SET \"ROLE\" = intern",
        "SET \"Session_Authorization\" = intern",
        "SET session_replication_role = replica",
        "SET log_statement = 'none'",
    ] {
        let r = run(&c, sql).await;
        assert!(r.is_err(), "{sql}: {r:?}");
    }
    let now = run(
        &c,
        "SELECT current_user, session_user, current_setting('session_replication_role'), \
         current_setting('standard_conforming_strings'), current_setting('log_statement')",
    )
    .await
    .unwrap();
    assert_eq!(now, format!("{SUPERUSER}|{SUPERUSER}|origin|on|none"));
    // 8: a superuser made by writing the catalog.
    let r = run(
        &c,
        "UPDATE pg_authid SET rolsuper = true WHERE rolname = 'intern'",
    )
    .await;
    assert!(r.is_err(), "{r:?}");
    let r = run(
        &c,
        "UPDATE pg_class SET relname = 'not_secret' WHERE relname = 'sec' || 'rets'",
    )
    .await;
    assert!(r.is_err(), "{r:?}");
    assert_eq!(
        env.direct("SELECT rolsuper FROM pg_roles WHERE rolname = 'intern'"),
        "f"
    );
    assert_eq!(
        env.direct("SELECT count(*) FROM pg_class WHERE relname = 'secrets'"),
        "1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destruction_and_denied_reads_do_not_happen() {
    let env = Env::new("byp_dml");
    let c = env.client().await;
    for sql in [
        // 6: EXPLAIN (ANALYSE) runs its statement.
        "EXPLAIN (ANALYSE) DELETE FROM audit_me",
        "EXPLAIN (ANALYSE) CREATE TABLE stolen AS SELECT * FROM audit_me",
        // 14: an always-true WHERE.
        "DELETE FROM audit_me WHERE id IS NULL OR id IS NOT NULL",
    ] {
        let r = run(&c, sql).await;
        assert!(r.is_err(), "{sql}: {r:?}");
    }
    assert_eq!(env.rows_left(), "5");
    assert_eq!(
        env.direct("SELECT count(*) FROM pg_class WHERE relname = 'stolen'"),
        "0"
    );
    // 10: the denied table read through SQL or names given as strings.
    for sql in [
        "SELECT * FROM secrets",
        "SELECT ts_rewrite('a'::tsquery, 'SELECT ''a''::tsquery, quote_literal(v)::tsquery FROM secrets')",
        "SELECT table_to_xml('secrets', true, false, '')",
        "SELECT schema_to_xml('public', true, false, '')",
        "SELECT query_to_xml('select * from secrets', true, false, '')",
    ] {
        let r = run(&c, sql).await;
        assert!(
            r.as_ref().is_err_and(|e| !e.contains("TOPSECRET")),
            "{sql}: {r:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_functions_and_code_are_never_plain_reads() {
    let env = Env::new("byp_fn");
    let c = env.client().await;
    let collations = env.direct("SELECT count(*) FROM pg_collation");
    for sql in [
        "SELECT pg_import_system_collations('public')",
        "SELECT pg_create_physical_replication_slot('byp_slot', true)",
        "SELECT * FROM pg_hba_file_rules",
        "SELECT * FROM pg_file_settings",
        "SELECT pg_log_backend_memory_contexts(pg_backend_pid())",
        "SELECT pg_stat_reset()",
    ] {
        let r = run(&c, sql).await;
        assert!(r.is_err(), "{sql}: {r:?}");
    }
    assert_eq!(env.direct("SELECT count(*) FROM pg_collation"), collations);
    assert_eq!(
        env.direct("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'byp_slot'"),
        "0"
    );
    // 11: LANGUAGE 'c' is denied even after a LANGUAGE 'sql' statement of
    // the same shape warmed the cache.
    let _ = run(
        &c,
        "CREATE FUNCTION f1(int) RETURNS int LANGUAGE 'sql' AS 'SELECT 1'",
    )
    .await;
    let r = run(
        &c,
        "CREATE FUNCTION f2(cstring) RETURNS int LANGUAGE 'c' AS '/some/lib.so'",
    )
    .await;
    assert!(
        r.as_ref()
            .is_err_and(|e| e.contains("server-access-denied")),
        "{r:?}"
    );
    assert_eq!(
        env.direct("SELECT count(*) FROM pg_proc WHERE proname LIKE 'f_'"),
        "0"
    );
}

/// The relay's finding: a held statement's portal, bound but not executed,
/// run by SQL `FETCH` through its upstream name.
#[test]
fn a_held_portal_cannot_be_fetched_by_name() {
    let env = Env::new("byp_fetch");
    let mut w = Wire::login(&env.cfg.listen_addr(), AGENT, AGENT_PW, &env.db);
    w.query("BEGIN");
    let mut b = wire::parse("", "DELETE FROM audit_me RETURNING id");
    b.extend_from_slice(&wire::bind("held", ""));
    b.extend_from_slice(&wire::sync());
    w.send(&b);
    let msgs = w.until_ready();
    assert!(!msgs.iter().any(|m| m.tag == 'E'), "{msgs:?}");
    let names = w.query("SELECT name FROM pg_cursors");
    let upstream: Vec<String> = names
        .iter()
        .filter(|m| m.tag == 'D')
        .map(|m| String::from_utf8_lossy(&m.body[6..]).into_owned())
        .collect();
    assert!(
        !upstream.is_empty(),
        "the held portal is bound upstream: {names:?}"
    );
    for name in &upstream {
        for sql in [
            format!("FETCH ALL FROM \"{name}\""),
            format!("MOVE ALL IN \"{name}\""),
        ] {
            let r = w.query(&sql);
            assert!(r.iter().any(|m| m.tag == 'E'), "{sql}: {r:?}");
        }
    }
    w.query("ROLLBACK");
    w.query("COMMIT");
    assert_eq!(env.rows_left(), "5");
}

/// Functions from the catalog: a user-defined function is placed by what
/// its body does (here created directly on the database, as a DBA would),
/// and one sqlgate cannot see into stays unparsed. The superuser upstream
/// login is reported on `/healthz`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_functions_are_decided_by_their_bodies() {
    let env = Env::new("byp_cat");
    env.direct(
        "CREATE FUNCTION harmless(int) RETURNS int LANGUAGE sql AS 'SELECT $1 + 1';
         CREATE FUNCTION wipe() RETURNS int LANGUAGE sql AS 'DELETE FROM audit_me; SELECT 1';
         CREATE FUNCTION peek() RETURNS text LANGUAGE plpgsql AS $$
           BEGIN RETURN (SELECT v FROM secrets LIMIT 1); END $$;
         CREATE FUNCTION wrapper() RETURNS int LANGUAGE plpgsql AS $$
           BEGIN PERFORM wipe(); RETURN 1; END $$;
         CREATE FUNCTION dynamic() RETURNS int LANGUAGE plpgsql AS $$
           BEGIN EXECUTE 'DELETE FROM audit_me'; RETURN 1; END $$;
         CREATE VIEW v_sec AS SELECT v FROM secrets;
         CREATE VIEW v_v_sec AS SELECT * FROM v_sec;
         CREATE MATERIALIZED VIEW m_sec AS SELECT v FROM secrets;
         CREATE VIEW v_file AS SELECT pg_read_file('/etc/hostname') AS f;
         CREATE FUNCTION public.lower(integer) RETURNS text LANGUAGE sql
           AS 'SELECT v FROM secrets LIMIT 1';",
    );
    let c = env.client().await;
    // The snapshot refreshes every couple of seconds; until it has the
    // functions, calls are unparsed (held), never allowed.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        match run(&c, "SELECT harmless(1)").await {
            Ok(v) => {
                assert_eq!(v, "2");
                break;
            }
            Err(e) => {
                // Unplaced, a call may touch any table: the rule denying
                // `secrets` matches it.
                assert!(e.contains("no-secrets"), "{e}");
                assert!(
                    std::time::Instant::now() < deadline,
                    "catalog never loaded: {e}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    }
    // psql ran the statements one by one: a snapshot may have caught some
    // of them only. Wait for one taken after all.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    for (sql, rule) in [
        ("SELECT wipe()", "destructive-needs-approval"),
        ("SELECT wrapper()", "destructive-needs-approval"),
        ("SELECT peek()", "no-secrets"),
        // Its dynamic SQL may read any table: no approval can let it
        // past the rule denying `secrets`.
        ("SELECT dynamic()", "no-secrets"),
        (
            "SELECT * FROM audit_me WHERE id = harmless(wipe())",
            "destructive-needs-approval",
        ),
        // Views are followed to what they read (second review, finding 9).
        ("SELECT * FROM v_sec", "no-secrets"),
        ("SELECT * FROM v_v_sec", "no-secrets"),
        ("SELECT * FROM m_sec", "no-secrets"),
        ("SELECT * FROM v_file", "server-access-denied"),
        // A user overload of a built-in's name (finding 8).
        ("SELECT lower(1)", "no-secrets"),
    ] {
        let r = run(&c, sql).await;
        assert!(r.as_ref().is_err_and(|e| e.contains(rule)), "{sql}: {r:?}");
    }
    assert_eq!(env.rows_left(), "5");
    let health = reqwest_get(&format!("http://{}/healthz", env.cfg.admin_addr())).await;
    assert!(
        health.starts_with("ok\n") && health.contains("superuser"),
        "{health}"
    );
}

async fn reqwest_get(url: &str) -> String {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::get(url).await.unwrap().text().await.unwrap()
}

fn query_bytes(sql: &str) -> bytes::BytesMut {
    let mut b = bytes::BytesMut::new();
    postgres_protocol::message::frontend::query(sql, &mut b).unwrap();
    b
}

/// Second adversarial pass: a view over a denied table is followed even
/// right after a (denied) DDL statement pipelined before it, and after a
/// view made by the agent's own DDL; a catalog lock is `privilege`; a
/// startup `search_path` can't let user functions shadow built-ins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_are_followed_after_ddl_and_catalogs_stay_unlocked() {
    let env = Env::new("byp_stale");
    env.direct("CREATE VIEW staff_v AS SELECT * FROM secrets");
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await; // catalog refresh
    let mut w = Wire::login(&env.cfg.listen_addr(), AGENT, AGENT_PW, &env.db);
    // Denied DDL and the read in one write.
    let mut b = query_bytes("CREATE EXTENSION nosuch");
    b.extend_from_slice(&query_bytes("SELECT * FROM staff_v"));
    w.send(&b);
    let first = w.until_ready();
    let second = w.until_ready();
    for m in first.iter().chain(&second) {
        assert!(
            !String::from_utf8_lossy(&m.body).contains("TOPSECRET"),
            "{first:?} {second:?}"
        );
    }
    assert!(second.iter().any(|m| m.tag == 'E'), "{second:?}");
    // A view made in the same string as its read: the read can't be placed.
    let r = w.query("CREATE TEMP VIEW mine AS SELECT * FROM secrets; SELECT * FROM mine");
    assert!(
        !r.iter()
            .any(|m| String::from_utf8_lossy(&m.body).contains("TOPSECRET")),
        "{r:?}"
    );
    // Locking a system catalog is not a plain write.
    let c = env.client().await;
    let e = run(
        &c,
        "BEGIN; LOCK TABLE pg_catalog.pg_class IN ACCESS EXCLUSIVE MODE",
    )
    .await
    .expect_err("not a plain write");
    assert!(e.starts_with("42501") || e.contains("approval"), "{e}");
    let _ = run(&c, "ROLLBACK").await;
    assert_eq!(
        env.direct("SELECT count(*) FROM pg_locks WHERE relation = 'pg_class'::regclass AND mode = 'AccessExclusiveLock'"),
        "0"
    );
    // search_path in the startup packet is refused, as SET would be held.
    use std::io::{Read, Write};
    let mut sock = std::net::TcpStream::connect(env.cfg.listen_addr()).unwrap();
    let mut start = bytes::BytesMut::new();
    postgres_protocol::message::frontend::startup_message(
        [
            ("user", AGENT),
            ("database", env.db.as_str()),
            ("search_path", "public, pg_catalog"),
        ],
        &mut start,
    )
    .unwrap();
    sock.write_all(&start).unwrap();
    let mut reply = Vec::new();
    let _ = sock.read_to_end(&mut reply);
    assert_eq!(
        reply.first(),
        Some(&b'E'),
        "{:?}",
        String::from_utf8_lossy(&reply)
    );
    assert!(String::from_utf8_lossy(&reply).contains("search_path"));
}

/// A view the agent makes in an open transaction block is invisible to the
/// catalog's side connection until COMMIT: reads after it in that block
/// can't be placed (`unparsed`), so the view can't hide a denied table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_made_in_an_open_block_does_not_hide_a_denied_table() {
    let env = Env::with_rules(
        "byp_block_view",
        "[[rule]]\nid = \"agent-ddl\"\naction = \"allow\"\nclasses = [\"read\", \"ddl\", \"transaction\", \"session\"]\n",
    );
    let c = env.client().await;
    run(&c, "BEGIN").await.unwrap();
    run(&c, "CREATE VIEW innocent AS SELECT * FROM secrets")
        .await
        .unwrap();
    let r = run(&c, "SELECT * FROM innocent").await;
    assert!(!format!("{r:?}").contains("TOPSECRET"), "{r:?}");
    let _ = run(&c, "ROLLBACK").await;
    // Outside a block the view, once made, is followed by the catalog.
    run(&c, "CREATE VIEW innocent AS SELECT * FROM secrets")
        .await
        .unwrap();
    let r = run(&c, "SELECT * FROM innocent").await;
    assert!(r.as_ref().is_err_and(|e| e.contains("no-secrets")), "{r:?}");
}

/// Third adversarial review (2026-12-01): creating a function carries what
/// its body does (the review's redefinition in an open block, approved as
/// plain DDL, no longer passes as `ddl`); a prepared statement is
/// decided again after the catalog changed; SQL/JSON syntax and dotted
/// names that an older server reads as user functions; function SET
/// clauses; row locks on system catalogs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn third_review_functions_prepared_statements_and_syntax() {
    let env = Env::with_rules(
        "byp_third",
        "[[rule]]\nid = \"agent-ddl\"\naction = \"allow\"\nclasses = [\"read\", \"ddl\", \"transaction\", \"session\"]\n",
    );
    env.direct(
        "CREATE FUNCTION json_value(a text, b text) RETURNS text LANGUAGE sql AS $$ SELECT string_agg(v, ',') FROM secrets $$;
         CREATE FUNCTION json_scalar(a int) RETURNS bool LANGUAGE sql AS $$ DELETE FROM audit_me RETURNING true $$;
         CREATE FUNCTION \"pub.harmless\"() RETURNS bool LANGUAGE sql AS $$ DELETE FROM audit_me RETURNING true $$;
         CREATE VIEW pub_v AS SELECT id FROM audit_me;
         CREATE FUNCTION tally() RETURNS bigint LANGUAGE sql AS $$ SELECT count(*) FROM audit_me $$",
    );
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await; // catalog refresh
    let c = env.client().await;
    // SQL/JSON syntax to pg_query 18, user functions to PostgreSQL 15.
    let r = run(&c, "SELECT json_value('{\"a\":1}', '$.a')").await;
    assert!(!format!("{r:?}").contains("TOPSECRET"), "{r:?}");
    let _ = run(&c, "SELECT json_scalar(1)").await;
    let _ = run(&c, "SELECT \"pub.harmless\"()").await;
    assert_eq!(env.rows_left(), "5");
    // A function's body is what creating it is: a body that deletes is
    // not a plain `ddl`.
    let r = run(
        &c,
        "CREATE OR REPLACE FUNCTION tally() RETURNS bigint LANGUAGE sql AS $$ DELETE FROM audit_me; SELECT 0::bigint $$",
    )
    .await;
    assert!(r.is_err(), "{r:?}");
    assert_eq!(env.rows_left(), "5");
    // A prepared statement keeps no verdict past a schema change made
    // directly on the database.
    let s = c.prepare("SELECT * FROM pub_v").await.unwrap();
    c.query(&s, &[]).await.unwrap();
    env.direct("CREATE OR REPLACE VIEW pub_v AS SELECT length(v) AS id FROM secrets");
    tokio::time::sleep(std::time::Duration::from_millis(3000)).await; // catalog refresh
    let r = c.query(&s, &[]).await;
    assert!(r.is_err(), "{r:?}");
    // Function SET clauses that change how the body is read.
    let r = run(
        &c,
        "CREATE FUNCTION banner() RETURNS text LANGUAGE sql SET standard_conforming_strings = off AS $f$SELECT 'x\\'' ; DELETE FROM audit_me; SELECT ''''::text --'$f$",
    )
    .await;
    assert!(r.is_err(), "{r:?}");
    assert_eq!(
        env.direct("SELECT count(*) FROM pg_proc WHERE proname = 'banner'"),
        "0"
    );
    // Row locks on a system catalog are not a plain read.
    run(&c, "BEGIN").await.unwrap();
    let r = run(
        &c,
        "SELECT count(*) FROM (SELECT 1 FROM pg_catalog.pg_class FOR UPDATE) x",
    )
    .await;
    assert!(r.is_err(), "{r:?}");
    let _ = run(&c, "ROLLBACK").await;
}

/// Third review, finding 1 and 7: functions PostgreSQL calls without a call
/// in the statement (operators, casts to a domain, argument and column
/// defaults, triggers, rules) and tables reached through inheritance are
/// placed from the catalog.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_behind_operators_defaults_triggers_and_children_are_placed() {
    let env = Env::new("byp_attached");
    env.direct(
        "CREATE FUNCTION purge_all(a int, b int) RETURNS bool LANGUAGE plpgsql AS $$BEGIN DELETE FROM audit_me; RETURN true; END$$;
         CREATE FUNCTION purge_trg() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN DELETE FROM audit_me; RETURN NEW; END$$;
         CREATE OPERATOR === (LEFTARG = int, RIGHTARG = int, FUNCTION = purge_all);
         CREATE DOMAIN checked_int AS int CHECK (purge_all(VALUE, VALUE));
         CREATE FUNCTION greet(n int DEFAULT (CASE WHEN purge_all(1, 1) THEN 1 ELSE 0 END)) RETURNS text
           LANGUAGE plpgsql AS $$BEGIN RETURN 'hi' || n; END$$;
         CREATE TABLE notes(id serial, flag bool DEFAULT purge_all(1, 1));
         CREATE TABLE plain(id serial, v text);
         CREATE TABLE logged(v text);
         CREATE TRIGGER t_purge BEFORE INSERT ON logged FOR EACH ROW EXECUTE FUNCTION purge_trg();
         CREATE TABLE ruled(v text);
         CREATE RULE r_purge AS ON INSERT TO ruled DO ALSO DELETE FROM audit_me;
         CREATE TABLE notes_all(v text);
         ALTER TABLE secrets INHERIT notes_all;",
    );
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await; // catalog refresh
    let c = env.client().await;
    env.refused_leaving_rows(
        &c,
        &[
            "SELECT 1 === 1",
            "SELECT 1::checked_int",
            "SELECT greet()",
            "INSERT INTO notes DEFAULT VALUES",
            "INSERT INTO logged VALUES ('x')",
            "INSERT INTO ruled VALUES ('x')",
        ],
    )
    .await;
    let r = run(&c, "SELECT * FROM notes_all").await;
    assert!(!format!("{r:?}").contains("TOPSECRET"), "{r:?}");
    let r = run(&c, "DELETE FROM notes_all WHERE v <> ''").await;
    assert!(r.is_err(), "{r:?}");
    assert_eq!(env.direct("SELECT count(*) FROM secrets"), "1");
    // Built-in defaults (a serial's nextval) and operators stay plain.
    run(&c, "INSERT INTO plain(v) VALUES ('a')").await.unwrap();
    assert_eq!(
        run(&c, "SELECT count(*) FROM plain WHERE id = 1")
            .await
            .unwrap(),
        "1"
    );
}

/// Fourth review, finding 14: code sqlgate can't see (an operator's
/// negator) turns `standard_conforming_strings` off, and a Query pipelined
/// behind it would be read the old way. It is read only after the first
/// one's answer, which ends the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_pipelined_behind_a_hidden_setting_change_is_not_misread() {
    let env = Env::new("byp_pipeline_scs");
    env.direct(
        "CREATE FUNCTION eq_plain(a int, b int) RETURNS bool LANGUAGE plpgsql AS $$BEGIN RETURN a = b; END$$;
         CREATE FUNCTION ne_flip(a int, b int) RETURNS bool LANGUAGE plpgsql AS
           $$BEGIN PERFORM set_config('standard_conforming_strings', 'off', false); RETURN a <> b; END$$;
         CREATE OPERATOR ~~= (LEFTARG = int, RIGHTARG = int, FUNCTION = eq_plain, NEGATOR = !~~=);
         CREATE OPERATOR !~~= (LEFTARG = int, RIGHTARG = int, FUNCTION = ne_flip, NEGATOR = ~~=);
         CREATE TABLE canary(x int);",
    );
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await; // catalog refresh
    let mut w = Wire::login(&env.cfg.listen_addr(), AGENT, AGENT_PW, &env.db);
    let mut b = query_bytes("SELECT NOT (1 ~~= 2)");
    b.extend_from_slice(&query_bytes("SELECT 'a\\''; DROP TABLE canary; --'"));
    w.send(&b);
    // sqlgate ends the session once the server reports the change.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    drop(w);
    assert_eq!(
        env.direct("SELECT count(*) FROM pg_tables WHERE tablename = 'canary'"),
        "1"
    );
}

/// Fourth review, findings 3 and 4: functions reached through types rather
/// than names (a domain over a domain, an array of one, a composite with a
/// domain attribute, a function taking one), and what a change sets off
/// on other tables (a foreign key's cascade into a table with a trigger or
/// into the denied table, a partition's trigger, an updatable view's base
/// table's trigger). Each is placed from the catalog: refused here, and
/// judged on the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn types_built_on_domains_and_changes_elsewhere_are_placed() {
    let env = Env::new("byp_reach");
    env.direct(
        "CREATE FUNCTION purge_all(a int, b int) RETURNS bool LANGUAGE plpgsql AS $$BEGIN DELETE FROM audit_me; RETURN true; END$$;
         CREATE FUNCTION purge_trg() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN DELETE FROM audit_me; RETURN NEW; END$$;
         CREATE DOMAIN checked_int AS int CHECK (purge_all(VALUE, VALUE));
         CREATE DOMAIN d2 AS checked_int;
         CREATE TYPE comp AS (a checked_int);
         CREATE TABLE t_d2(x d2);
         CREATE TABLE t_arr(x checked_int[]);
         CREATE TABLE t_comp(x comp);
         CREATE FUNCTION takes_dom(x checked_int) RETURNS int LANGUAGE plpgsql AS $$BEGIN RETURN 1; END$$;
         CREATE TABLE customers(id int PRIMARY KEY, name text);
         INSERT INTO customers VALUES (1, 'a'), (2, 'b'), (3, 'c');
         CREATE TABLE orders(id int, cust int REFERENCES customers ON DELETE CASCADE);
         INSERT INTO orders VALUES (1, 1);
         CREATE TRIGGER t_o AFTER DELETE ON orders FOR EACH ROW EXECUTE FUNCTION purge_trg();
         ALTER TABLE secrets ADD COLUMN cust int REFERENCES customers ON UPDATE CASCADE;
         UPDATE secrets SET cust = 2;
         CREATE TABLE events(id int, v text) PARTITION BY RANGE (id);
         CREATE TABLE events_p1 PARTITION OF events FOR VALUES FROM (0) TO (100);
         CREATE TRIGGER t_e BEFORE INSERT ON events_p1 FOR EACH ROW EXECUTE FUNCTION purge_trg();
         CREATE TABLE tv_base(id int, x text);
         INSERT INTO tv_base VALUES (1, 'a');
         CREATE TRIGGER t_tv BEFORE UPDATE ON tv_base FOR EACH ROW EXECUTE FUNCTION purge_trg();
         CREATE VIEW tv AS SELECT * FROM tv_base;",
    );
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await; // catalog refresh
    let c = env.client().await;
    env.refused_leaving_rows(
        &c,
        &[
            "SELECT 1::d2",
            "INSERT INTO t_d2 VALUES (1)",
            "INSERT INTO t_arr VALUES ('{1}')",
            "INSERT INTO t_comp VALUES (ROW(1))",
            "SELECT '(1)'::comp",
            "SELECT takes_dom(1)",
            "DELETE FROM customers WHERE id = 1",
            "INSERT INTO events VALUES (1, 'a')",
            "UPDATE tv SET x = 'b' WHERE id = 1",
        ],
    )
    .await;
    // The cascade writes the denied table: denied by its rule.
    let r = run(&c, "UPDATE customers SET id = 20 WHERE id = 2").await;
    let e = r.expect_err("a cascade into secrets");
    assert!(e.contains("no-secrets"), "{e}");
    assert_eq!(env.direct("SELECT cust FROM secrets"), "2");
    // Changes the keys don't act on stay plain writes: an insert, and
    // (ON UPDATE CASCADE only) a delete of a row nobody references.
    run(&c, "INSERT INTO customers VALUES (4, 'd')")
        .await
        .unwrap();
    assert_eq!(env.direct("SELECT count(*) FROM customers"), "4");
}

/// Fourth review, findings 2 and 3: operators, casts and user overloads of
/// built-in names inside bodies, views, rules and argument defaults, and
/// operators used without an operator expression (a negator the planner
/// swaps in, a subquery comparison, `JOIN … USING`, a simple CASE,
/// BETWEEN); an operator over a dangerous built-in. Judged on the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_and_casts_behind_code_and_syntax_are_placed() {
    let env = Env::new("byp_ops");
    env.direct(
        "CREATE FUNCTION purge_all(a int, b int) RETURNS bool LANGUAGE plpgsql AS $$BEGIN DELETE FROM audit_me; RETURN true; END$$;
         CREATE FUNCTION plain_eq(a int, b int) RETURNS bool LANGUAGE sql AS $$SELECT a = b$$;
         CREATE OPERATOR !~~~ (LEFTARG = int, RIGHTARG = int, FUNCTION = purge_all);
         CREATE OPERATOR ~~~ (LEFTARG = int, RIGHTARG = int, FUNCTION = plain_eq, NEGATOR = !~~~);
         CREATE DOMAIN checked_int AS int CHECK (purge_all(VALUE, VALUE));
         CREATE FUNCTION opbody() RETURNS bool LANGUAGE sql AS $$SELECT 1 !~~~ 2$$;
         CREATE FUNCTION castbody() RETURNS int LANGUAGE plpgsql AS $$BEGIN RETURN 1::checked_int; END$$;
         CREATE VIEW opv AS SELECT 1 !~~~ 2 AS x;
         CREATE TABLE rule_t(v int);
         CREATE RULE r AS ON INSERT TO rule_t DO ALSO SELECT 1 !~~~ 2;
         CREATE FUNCTION greet(n bool DEFAULT (1 !~~~ 2)) RETURNS text LANGUAGE sql AS $$SELECT 'hi'$$;
         CREATE TYPE mood AS ENUM ('a', 'b');
         CREATE FUNCTION mood_eq(a mood, b mood) RETURNS bool LANGUAGE plpgsql AS $$BEGIN DELETE FROM audit_me; RETURN a::text = b::text; END$$;
         CREATE OPERATOR = (LEFTARG = mood, RIGHTARG = mood, FUNCTION = mood_eq);
         CREATE TABLE mj1(m mood); CREATE TABLE mj2(m mood);
         INSERT INTO mj1 VALUES ('a'); INSERT INTO mj2 VALUES ('a');
         CREATE FUNCTION int_text_ge(a int, b text) RETURNS bool LANGUAGE plpgsql AS $$BEGIN DELETE FROM audit_me; RETURN true; END$$;
         CREATE OPERATOR >= (LEFTARG = int, RIGHTARG = text, FUNCTION = int_text_ge);
         CREATE OPERATOR <= (LEFTARG = int, RIGHTARG = text, FUNCTION = int_text_ge);
         CREATE FUNCTION int_text_eq(a int, b text) RETURNS bool LANGUAGE plpgsql AS $$BEGIN DELETE FROM audit_me; RETURN true; END$$;
         CREATE OPERATOR = (LEFTARG = int, RIGHTARG = text, FUNCTION = int_text_eq);
         CREATE OPERATOR ### (RIGHTARG = text, FUNCTION = pg_catalog.pg_read_file);",
    );
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await; // catalog refresh
    let c = env.client().await;
    env.refused_leaving_rows(
        &c,
        &[
            "SELECT opbody()",
            "SELECT castbody()",
            "SELECT * FROM opv",
            "INSERT INTO rule_t VALUES (1)",
            "SELECT greet()",
            "SELECT NOT (1 ~~~ 2)",
            "SELECT 1 !~~~ ANY (SELECT 2)",
            "SELECT count(*) FROM mj1 JOIN mj2 USING (m)",
            "SELECT count(*) FROM mj1 NATURAL JOIN mj2",
            "SELECT CASE 1 WHEN 'a'::text THEN 1 END",
            "SELECT 1 BETWEEN 'a'::text AND 'b'::text",
        ],
    )
    .await;
    let r = run(&c, "SELECT ### 'PG_VERSION'::text").await;
    assert!(r.is_err(), "{r:?}");
    // The agent's own operator over it is what a call of it is: denied.
    let r = run(
        &c,
        "CREATE OPERATOR #### (RIGHTARG = text, FUNCTION = pg_read_file)",
    )
    .await;
    assert!(r.as_ref().is_err_and(|e| e.contains("server")), "{r:?}");
    // Operators no user object stands behind stay plain reads. (Operators
    // are placed by name, not by argument types: here every `>=` is taken
    // for the user's `>=`(int, text), which fails closed.)
    assert_eq!(run(&c, "SELECT 1 < 2").await.unwrap(), "t");
}

/// Fourth review: an index expression runs on every row written (finding
/// 3); a Parse's parameter given a domain's type runs its CHECK when Bind
/// converts the value (t_ptype). Judged on the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_expressions_and_parameter_types_are_placed() {
    let env = Env::new("byp_idx");
    env.direct(
        "CREATE FUNCTION purge_v() RETURNS int LANGUAGE plpgsql AS $$BEGIN DELETE FROM audit_me; RETURN 1; END$$;
         CREATE FUNCTION purge_all(a int, b int) RETURNS bool LANGUAGE plpgsql AS $$BEGIN DELETE FROM audit_me; RETURN true; END$$;
         CREATE FUNCTION norm(t text) RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$BEGIN PERFORM purge_v(); RETURN lower(t); END$$;
         CREATE TABLE idx_t(v text);
         CREATE INDEX ON idx_t (norm(v));
         CREATE TABLE pidx_t(v text);
         CREATE INDEX ON pidx_t (v) WHERE norm(v) = 'x';
         CREATE DOMAIN checked_int AS int CHECK (purge_all(VALUE, VALUE));",
    );
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await; // catalog refresh
    let c = env.client().await;
    env.refused_leaving_rows(
        &c,
        &[
            "INSERT INTO idx_t VALUES ('X')",
            "INSERT INTO pidx_t VALUES ('X')",
        ],
    )
    .await;
    let oid: u32 = env
        .direct("SELECT 'checked_int'::regtype::oid")
        .parse()
        .unwrap();
    let mut w = Wire::login(&env.cfg.listen_addr(), AGENT, AGENT_PW, &env.db);
    let mut b = Vec::new();
    for m in [
        wire::parse_typed("", "SELECT $1", &[oid]),
        wire::bind_text("", "", &["7"]),
        wire::execute(""),
        wire::sync(),
    ] {
        b.extend_from_slice(&m);
    }
    w.send(&b);
    let msgs = w.until_ready();
    assert!(msgs.iter().any(|m| m.tag == 'E'), "{msgs:?}");
    assert_eq!(env.rows_left(), "5");
    // A parameter of a built-in type stays a plain read.
    let mut b = Vec::new();
    for m in [
        wire::parse_typed("", "SELECT $1", &[23]),
        wire::bind_text("", "", &["7"]),
        wire::execute(""),
        wire::sync(),
    ] {
        b.extend_from_slice(&m);
    }
    w.send(&b);
    assert_eq!(wire::tags(&w.until_ready()), "1 2 D C Z");
}

/// Fifth review: literals converted to a column's domain-array type in a
/// read, operator-class support functions of an index, OUT parameters of a
/// domain type, a foreign key's cascade the row guard can't count, a
/// function taking a cursor by name, `TRUNCATE … CASCADE` into the denied
/// table, a default using a user operator, an implicit cast, other
/// sessions' SQL in `pg_stat_activity`. Judged on the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifth_review_paths_are_placed() {
    let env = Env::new("byp_fifth");
    env.direct(
        "CREATE FUNCTION purge_all(a int, b int) RETURNS bool LANGUAGE plpgsql AS $$BEGIN DELETE FROM audit_me; RETURN true; END$$;
         CREATE DOMAIN checked_int AS int CHECK (purge_all(VALUE, VALUE));
         CREATE TABLE t_arr(a checked_int[]);
         CREATE FUNCTION cmp_purge(a int, b int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$BEGIN PERFORM purge_all(1, 1); RETURN btint4cmp(a, b); END$$;
         CREATE OPERATOR CLASS purge_ops FOR TYPE int USING btree AS
           OPERATOR 1 <, OPERATOR 2 <=, OPERATOR 3 =, OPERATOR 4 >=, OPERATOR 5 >, FUNCTION 1 cmp_purge(int, int);
         CREATE TABLE opc_t(id int);
         CREATE INDEX ON opc_t (id purge_ops);
         CREATE FUNCTION two_out(OUT x checked_int, OUT y int) LANGUAGE sql AS $$SELECT 1, 2$$;
         CREATE TABLE branches(id int PRIMARY KEY);
         INSERT INTO branches VALUES (1), (2);
         CREATE TABLE staff(id int, branch int REFERENCES branches ON DELETE CASCADE);
         INSERT INTO staff VALUES (1, 1);
         CREATE FUNCTION drain(c refcursor) RETURNS int LANGUAGE plpgsql AS $$DECLARE r record; n int := 0; BEGIN LOOP FETCH c INTO r; EXIT WHEN NOT FOUND; n := n + 1; END LOOP; RETURN n; END$$;
         CREATE TABLE parents(id int PRIMARY KEY);
         INSERT INTO parents VALUES (1);
         ALTER TABLE secrets ADD COLUMN parent int REFERENCES parents;
         UPDATE secrets SET parent = 1;
         CREATE OPERATOR !~~~ (LEFTARG = int, RIGHTARG = int, FUNCTION = purge_all);
         CREATE TABLE def_op(id int, f bool DEFAULT (1 !~~~ 2));
         CREATE TYPE mood AS ENUM ('a', 'b');
         CREATE FUNCTION int_to_mood(i int) RETURNS mood LANGUAGE plpgsql AS $$BEGIN PERFORM purge_all(1, 1); RETURN 'a'; END$$;
         CREATE CAST (int AS mood) WITH FUNCTION int_to_mood(int) AS ASSIGNMENT;
         CREATE TABLE moods(m mood);",
    );
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await; // catalog refresh
    let c = env.client().await;
    env.refused_leaving_rows(
        &c,
        &[
            "SELECT count(*) FROM t_arr WHERE a = '{1}'",
            "INSERT INTO opc_t VALUES (3)",
            "SELECT * FROM two_out()",
            "DELETE FROM branches WHERE id = 1",
            "BEGIN; DECLARE cur CURSOR FOR SELECT 1; SELECT drain('cur'); COMMIT",
            "INSERT INTO def_op(id) VALUES (1)",
            "INSERT INTO moods VALUES (1)",
            "SELECT query FROM pg_stat_activity",
        ],
    )
    .await;
    assert_eq!(env.direct("SELECT count(*) FROM staff"), "1");
    let r = run(&c, "TRUNCATE parents CASCADE").await;
    assert!(r.as_ref().is_err_and(|e| e.contains("no-secrets")), "{r:?}");
    assert_eq!(env.direct("SELECT count(*) FROM secrets"), "1");
    // A plain insert into a referenced table stays a write.
    run(&c, "INSERT INTO branches VALUES (3)").await.unwrap();
}

/// Fifth review, findings 1 and 2 (extended protocol): a held statement
/// sqlgate's grammar (a newer PostgreSQL's) cannot read is refused at Parse
/// rather than sent as written; a Parse with a backslash after an Execute
/// in the same batch is refused (what the Execute ran may have turned
/// `standard_conforming_strings` off, reported only at Sync).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_or_misreadable_parses_are_refused() {
    let env = Env::new("byp_parse");
    env.direct(
        "CREATE FUNCTION purge_all(a int, b int) RETURNS bool LANGUAGE plpgsql AS $$BEGIN DELETE FROM audit_me; RETURN true; END$$;
         CREATE DOMAIN checked_int AS int CHECK (purge_all(VALUE, VALUE));
         CREATE TYPE comp AS (a checked_int);
         CREATE TABLE canary(x int);",
    );
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await; // catalog refresh
    let mut w = Wire::login(&env.cfg.listen_addr(), AGENT, AGENT_PW, &env.db);
    let mut b = Vec::new();
    for m in [
        wire::parse("s", "SELECT '(1)'::comp FROM (VALUES (1)) AS system_user"),
        wire::sync(),
    ] {
        b.extend_from_slice(&m);
    }
    w.send(&b);
    let msgs = w.until_ready();
    assert_eq!(wire::tags(&msgs), "E Z", "{msgs:?}");
    assert_eq!(env.rows_left(), "5");
    let mut b = Vec::new();
    for m in [
        wire::parse("", "SELECT 1"),
        wire::bind("", ""),
        wire::execute(""),
        wire::parse("", "SELECT 'a\\''; DROP TABLE canary; --'"),
        wire::bind("", ""),
        wire::execute(""),
        wire::sync(),
    ] {
        b.extend_from_slice(&m);
    }
    w.send(&b);
    let msgs = w.until_ready();
    let e = msgs.iter().find(|m| m.tag == 'E').expect("refused");
    assert_eq!(e.code(), "0A000", "{msgs:?}");
    assert_eq!(
        env.direct("SELECT count(*) FROM pg_tables WHERE tablename = 'canary'"),
        "1"
    );
}

/// Sixth review: a domain CHECK using a user operator, a default casting
/// to a domain, `ORDER BY … USING` an operator of a non-default operator
/// class, `OPERATOR(pg_catalog.op)`, a domain whose name has a dot, a
/// PL/pgSQL record variable with an initial value (pg_query leaves the
/// expression out), a PL/pgSQL variable of a domain type. Judged on the
/// server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixth_review_paths_are_placed() {
    let env = Env::new("byp_sixth");
    env.direct(
        "CREATE FUNCTION purge_all(a int, b int) RETURNS bool LANGUAGE plpgsql AS $$BEGIN DELETE FROM audit_me; RETURN true; END$$;
         CREATE FUNCTION purge_v() RETURNS int LANGUAGE plpgsql AS $$BEGIN DELETE FROM audit_me; RETURN 1; END$$;
         CREATE OPERATOR !~~~ (LEFTARG = int, RIGHTARG = int, FUNCTION = purge_all);
         CREATE DOMAIN op_dom AS int CHECK (VALUE !~~~ 0);
         CREATE TABLE t_opdom(x op_dom);
         CREATE DOMAIN checked_int AS int CHECK (purge_all(VALUE, VALUE));
         CREATE TABLE def_cast(id int, n int DEFAULT (1::checked_int));
         CREATE FUNCTION lt_h(a int, b int) RETURNS bool LANGUAGE sql IMMUTABLE AS $$SELECT a < b$$;
         CREATE OPERATOR <<< (LEFTARG = int, RIGHTARG = int, FUNCTION = lt_h);
         CREATE FUNCTION cmp_purge(a int, b int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$BEGIN PERFORM purge_all(1, 1); RETURN btint4cmp(a, b); END$$;
         CREATE OPERATOR CLASS purge_ops FOR TYPE int USING btree AS OPERATOR 1 <<<, FUNCTION 1 cmp_purge(int, int);
         CREATE OPERATOR pg_catalog.~~~~ (LEFTARG = int, RIGHTARG = int, FUNCTION = public.purge_all);
         CREATE DOMAIN \"int.checked\" AS int CHECK (purge_all(VALUE, VALUE));
         CREATE FUNCTION rec_def() RETURNS int LANGUAGE plpgsql AS $$DECLARE r record := (SELECT ROW(purge_v())); BEGIN RETURN 1; END$$;
         CREATE FUNCTION plv() RETURNS int LANGUAGE plpgsql AS $$DECLARE x checked_int; BEGIN x := 1; RETURN x; END$$;",
    );
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await; // catalog refresh
    let c = env.client().await;
    env.refused_leaving_rows(
        &c,
        &[
            "INSERT INTO t_opdom VALUES (1)",
            "SELECT 7::op_dom",
            "INSERT INTO def_cast(id) VALUES (1)",
            "SELECT g FROM generate_series(1, 3) g ORDER BY g USING <<<",
            "SELECT 1 OPERATOR(pg_catalog.~~~~) 2",
            "SELECT 1::\"int.checked\"",
            "SELECT rec_def()",
            "SELECT plv()",
        ],
    )
    .await;
}

/// Seventh review: a partition key's and a range's non-default operator
/// class, record variables declared with a value behind a comment, and a
/// user's implicit cast between built-in types (which makes every
/// statement unplaceable). Judged on the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seventh_review_paths_are_placed() {
    let env = Env::new("byp_seventh");
    env.direct(
        "CREATE FUNCTION purge_all(a int, b int) RETURNS bool LANGUAGE plpgsql AS $$BEGIN DELETE FROM audit_me; RETURN true; END$$;
         CREATE FUNCTION purge_row() RETURNS audit_me LANGUAGE plpgsql AS $$DECLARE a audit_me; BEGIN SELECT * INTO a FROM audit_me LIMIT 1; DELETE FROM audit_me; RETURN a; END$$;
         CREATE FUNCTION cmp_purge(a int, b int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$BEGIN PERFORM purge_all(1, 1); RETURN btint4cmp(a, b); END$$;
         CREATE OPERATOR CLASS purge_ops FOR TYPE int USING btree AS
           OPERATOR 1 <, OPERATOR 2 <=, OPERATOR 3 =, OPERATOR 4 >=, OPERATOR 5 >, FUNCTION 1 cmp_purge(int, int);
         CREATE TABLE pt (id int, v text) PARTITION BY RANGE (id purge_ops);
         CREATE TABLE pt1 PARTITION OF pt FOR VALUES FROM (0) TO (100);
         CREATE TYPE prange AS RANGE (subtype = int, subtype_opclass = purge_ops);
         CREATE FUNCTION rc_cmt() RETURNS int LANGUAGE plpgsql AS $$
           DECLARE /* snapshot */ snap audit_me := purge_row(); BEGIN RETURN snap.id; END$$;",
    );
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await; // catalog refresh
                                                                      // Making the partition sorted its bounds in the DBA's session: purged.
    env.direct(
        "INSERT INTO audit_me SELECT g, 'row' FROM generate_series(1, 5) g ON CONFLICT DO NOTHING",
    );
    let c = env.client().await;
    env.refused_leaving_rows(
        &c,
        &[
            "INSERT INTO pt VALUES (5, 'x')",
            "SELECT count(*) FROM pt",
            "SELECT '[1,5]'::prange",
            "SELECT rc_cmt()",
        ],
    )
    .await;
    env.direct(
        "CREATE FUNCTION int_to_json(i int) RETURNS json LANGUAGE plpgsql AS $$BEGIN DELETE FROM audit_me; RETURN to_json(i); END$$;
         CREATE CAST (int AS json) WITH FUNCTION int_to_json(int) AS IMPLICIT;",
    );
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await; // catalog refresh
    let r = run(&c, "SELECT json_typeof(5)").await;
    assert!(r.is_err(), "{r:?}");
    assert_eq!(env.rows_left(), "5");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ninth_review_paths_are_placed() {
    let env = Env::new("byp_ninth");
    env.direct(
        "CREATE FUNCTION purge() RETURNS void LANGUAGE plpgsql AS $$BEGIN DELETE FROM public.audit_me; END$$;
         -- An explicit cast to json renders a user type in to_json & co.
         CREATE TYPE color AS ENUM ('red', 'green');
         CREATE TABLE paints(id int, c color); INSERT INTO paints VALUES (1, 'red');
         CREATE FUNCTION color_json(c color) RETURNS json LANGUAGE plpgsql AS $$BEGIN PERFORM purge(); RETURN to_json(c::text); END$$;
         CREATE CAST (color AS json) WITH FUNCTION color_json(color);
         -- An implicit cast from a user type to a built-in one.
         CREATE TYPE shade AS ENUM ('light', 'dark');
         CREATE TABLE lamps(id int, s shade); INSERT INTO lamps VALUES (1, 'dark');
         CREATE FUNCTION shade_text(s shade) RETURNS text LANGUAGE plpgsql AS $$BEGIN PERFORM purge(); RETURN s::name::text; END$$;
         CREATE CAST (shade AS text) WITH FUNCTION shade_text(shade) AS IMPLICIT;
         -- A default class whose code is only behind its operators.
         CREATE TYPE hue AS ENUM ('a', 'b');
         CREATE TABLE hues(id int, h hue); INSERT INTO hues VALUES (1, 'a'), (2, 'b'), (3, 'a');
         CREATE FUNCTION hue_lt(hue, hue) RETURNS bool LANGUAGE sql IMMUTABLE AS 'SELECT enum_lt($1, $2)';
         CREATE FUNCTION hue_le(hue, hue) RETURNS bool LANGUAGE sql IMMUTABLE AS 'SELECT enum_le($1, $2)';
         CREATE FUNCTION hue_ge(hue, hue) RETURNS bool LANGUAGE sql IMMUTABLE AS 'SELECT enum_ge($1, $2)';
         CREATE FUNCTION hue_gt(hue, hue) RETURNS bool LANGUAGE sql IMMUTABLE AS 'SELECT enum_gt($1, $2)';
         CREATE FUNCTION hue_eq(hue, hue) RETURNS bool LANGUAGE plpgsql AS $$BEGIN PERFORM purge(); RETURN enum_eq($1, $2); END$$;
         CREATE OPERATOR <# (LEFTARG = hue, RIGHTARG = hue, FUNCTION = hue_lt);
         CREATE OPERATOR <=# (LEFTARG = hue, RIGHTARG = hue, FUNCTION = hue_le);
         CREATE OPERATOR =# (LEFTARG = hue, RIGHTARG = hue, FUNCTION = hue_eq);
         CREATE OPERATOR >=# (LEFTARG = hue, RIGHTARG = hue, FUNCTION = hue_ge);
         CREATE OPERATOR ># (LEFTARG = hue, RIGHTARG = hue, FUNCTION = hue_gt);
         CREATE OPERATOR CLASS hue_ops DEFAULT FOR TYPE hue USING btree AS
           OPERATOR 1 <#, OPERATOR 2 <=#, OPERATOR 3 =#, OPERATOR 4 >=#, OPERATOR 5 >#,
           FUNCTION 1 (hue, hue) enum_cmp(anyenum, anyenum);
         -- A BRIN minmax class compares new values with its operators.
         CREATE FUNCTION i_lt(int, int) RETURNS bool LANGUAGE plpgsql IMMUTABLE AS $$BEGIN PERFORM purge(); RETURN $1 < $2; END$$;
         CREATE FUNCTION i_le(int, int) RETURNS bool LANGUAGE sql IMMUTABLE AS 'SELECT $1 <= $2';
         CREATE FUNCTION i_eq(int, int) RETURNS bool LANGUAGE sql IMMUTABLE AS 'SELECT $1 = $2';
         CREATE FUNCTION i_ge(int, int) RETURNS bool LANGUAGE sql IMMUTABLE AS 'SELECT $1 >= $2';
         CREATE FUNCTION i_gt(int, int) RETURNS bool LANGUAGE plpgsql IMMUTABLE AS $$BEGIN PERFORM purge(); RETURN $1 > $2; END$$;
         CREATE OPERATOR <## (LEFTARG = int, RIGHTARG = int, FUNCTION = i_lt);
         CREATE OPERATOR <=## (LEFTARG = int, RIGHTARG = int, FUNCTION = i_le);
         CREATE OPERATOR =## (LEFTARG = int, RIGHTARG = int, FUNCTION = i_eq);
         CREATE OPERATOR >=## (LEFTARG = int, RIGHTARG = int, FUNCTION = i_ge);
         CREATE OPERATOR >## (LEFTARG = int, RIGHTARG = int, FUNCTION = i_gt);
         CREATE OPERATOR CLASS int_brin_x FOR TYPE int USING brin AS
           OPERATOR 1 <##, OPERATOR 2 <=##, OPERATOR 3 =##, OPERATOR 4 >=##, OPERATOR 5 >##,
           FUNCTION 1 brin_minmax_opcinfo(internal),
           FUNCTION 2 brin_minmax_add_value(internal, internal, internal, internal),
           FUNCTION 3 brin_minmax_consistent(internal, internal, internal),
           FUNCTION 4 brin_minmax_union(internal, internal, internal);
         CREATE TABLE brin_t(id int, v text);
         CREATE INDEX brin_t_i ON brin_t USING brin (id int_brin_x);
         -- A superuser's functions in pg_catalog: a trigger, and an
         -- overload of a built-in's name.
         CREATE FUNCTION pg_catalog.stamp_row() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN DELETE FROM public.audit_me; RETURN NEW; END$$;
         CREATE TABLE pc_trg(id int);
         CREATE TRIGGER pc_trg BEFORE INSERT ON pc_trg FOR EACH ROW EXECUTE FUNCTION pg_catalog.stamp_row();
         CREATE TYPE tone AS ENUM ('x');
         CREATE TABLE tones(t tone); INSERT INTO tones VALUES ('x');
         CREATE FUNCTION pg_catalog.upper(tone) RETURNS text LANGUAGE plpgsql AS $$BEGIN PERFORM public.purge(); RETURN 'x'; END$$;
         -- A FETCH of a cursor named by an argument, beside an OPEN of another.
         CREATE FUNCTION drain_o(cname text) RETURNS int LANGUAGE plpgsql AS $$
           DECLARE d CURSOR FOR SELECT 1; c refcursor := cname; r record; n int := 0;
           BEGIN OPEN d; CLOSE d; LOOP FETCH c INTO r; EXIT WHEN NOT FOUND; n := n + 1; END LOOP; RETURN n; END$$;
         -- Expression statistics: autovacuum's ANALYZE runs them after writes.
         CREATE FUNCTION norm_id(i int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$BEGIN PERFORM public.purge(); RETURN i % 10; END$$;
         CREATE TABLE st_x(id int, v text);
         CREATE STATISTICS st_x_norm ON (norm_id(id)) FROM st_x;
         -- A partition key expression routes every row written.
         CREATE FUNCTION route_key(i int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$BEGIN PERFORM public.purge(); RETURN i / 100; END$$;
         CREATE TABLE pe (id int, v text) PARTITION BY RANGE (route_key(id));
         CREATE TABLE pe0 PARTITION OF pe FOR VALUES FROM (0) TO (10);
         -- Types named by XMLTABLE's COLUMNS and XMLSERIALIZE … AS.
         CREATE FUNCTION purge_b() RETURNS bool LANGUAGE plpgsql AS $$BEGIN PERFORM public.purge(); RETURN true; END$$;
         CREATE DOMAIN int_dom AS int CHECK (purge_b());
         CREATE DOMAIN txt_dom AS text CHECK (purge_b());
         -- A SQL body moving a cursor by name.
         CREATE FUNCTION skip_cur() RETURNS int LANGUAGE sql AS 'MOVE FORWARD ALL IN cur; SELECT 1';
         -- A foreign table: what it reads is out of sqlgate's sight.
         CREATE EXTENSION file_fdw;
         CREATE SERVER files FOREIGN DATA WRAPPER file_fdw;
         CREATE FOREIGN TABLE host_file (line text) SERVER files OPTIONS (filename '/etc/hostname', format 'text');",
    );
    env.direct("INSERT INTO brin_t VALUES (1, 'x')");
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await; // catalog refresh
    env.direct(
        "INSERT INTO audit_me SELECT g, 'row' FROM generate_series(1, 5) g ON CONFLICT DO NOTHING",
    );
    assert_eq!(env.rows_left(), "5");
    let c = env.client().await;
    env.refused_leaving_rows(&c, &[
        "SELECT to_json(c) FROM paints",
        "SELECT row_to_json(paints) FROM paints",
        "SELECT json_agg(p) FROM paints p",
        "SELECT to_json('red'::color)",
        "SELECT length(s) FROM lamps",
        "SELECT upper('dark'::shade)",
        "SELECT DISTINCT h FROM hues",
        "SELECT count(DISTINCT h) FROM hues",
        "SELECT ARRAY['a'::hue] = ARRAY['a'::hue]",
        "INSERT INTO brin_t VALUES (7, 'y')",
        "INSERT INTO pc_trg VALUES (1)",
        "SELECT upper(t) FROM tones",
        "SELECT pg_catalog.upper(t) FROM tones",
        "BEGIN; DECLARE cur CURSOR FOR SELECT 1; SELECT drain_o('cur'); COMMIT",
        "INSERT INTO st_x SELECT g, 'x' FROM generate_series(1, 200) g",
        "SELECT pg_stat_get_backend_activity(s) FROM pg_stat_get_backend_idset() s",
        "INSERT INTO pe VALUES (5, 'x')",
        "SELECT subname, subconninfo FROM pg_subscription",
        "SELECT * FROM xmltable('/r' PASSING '<r><a>1</a></r>' COLUMNS a int_dom PATH 'a')",
        "SELECT xmlserialize(content '<a/>'::xml AS txt_dom)",
        "BEGIN; DECLARE cur CURSOR FOR SELECT 1; SELECT skip_cur(); COMMIT",
        "SELECT * FROM host_file",
        "WITH u AS (INSERT INTO audit_me SELECT id, 'gone' FROM audit_me ON CONFLICT (id) DO UPDATE SET v = 'gone' RETURNING 1) SELECT count(*) FROM u",
    ]).await;
    assert_eq!(
        env.direct("SELECT count(*) FROM audit_me WHERE v = 'gone'"),
        "0"
    );
    // A cast from a user type no longer holds every text column.
    assert_eq!(
        run(&c, "SELECT v FROM audit_me ORDER BY id LIMIT 1").await,
        Ok("row".into())
    );

    // Code behind built-in types or operators: nothing can be placed.
    for objects in [
        // A default class for json whose `=` is a user's.
        "CREATE FUNCTION jeq(json, json) RETURNS bool LANGUAGE plpgsql IMMUTABLE AS $$BEGIN PERFORM purge(); RETURN $1::text = $2::text; END$$;
         CREATE FUNCTION jlt(json, json) RETURNS bool LANGUAGE sql IMMUTABLE AS 'SELECT $1::text < $2::text';
         CREATE OPERATOR <~# (LEFTARG = json, RIGHTARG = json, FUNCTION = jlt);
         CREATE OPERATOR =~# (LEFTARG = json, RIGHTARG = json, FUNCTION = jeq);
         CREATE OPERATOR CLASS json_x DEFAULT FOR TYPE json USING btree AS
           OPERATOR 1 <~#, OPERATOR 3 =~#, FUNCTION 1 (json, json) bttext_pattern_cmp(text, text);",
    ] {
        env.direct(objects);
        tokio::time::sleep(std::time::Duration::from_millis(2500)).await; // catalog refresh
        env.refused_leaving_rows(&c, &[
            "SELECT DISTINCT json_build_array(g) FROM generate_series(1, 3) g",
            "SELECT count(*) FROM generate_series(1, 500) a JOIN generate_series(1, 500) b ON a = b",
        ]).await;
    }
    // A hash family holding the built-in int `=` with a user's hash: the
    // built-in family comes first, so the planner never takes it, and
    // statements stay placed (the join is not held).
    env.direct(
        "DROP OPERATOR FAMILY json_x USING btree CASCADE;
         CREATE FUNCTION myhash(int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$BEGIN PERFORM purge(); RETURN hashint4($1); END$$;
         CREATE OPERATOR FAMILY myhf USING hash;
         ALTER OPERATOR FAMILY myhf USING hash ADD OPERATOR 1 = (int, int), FUNCTION 1 myhash(int);",
    );
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await; // catalog refresh
    let join =
        "SELECT count(*) FROM generate_series(1, 500) a JOIN generate_series(1, 500) b ON a = b";
    assert_eq!(run(&c, join).await, Ok("500".into()));
    assert_eq!(env.rows_left(), "5");
}

/// Twelfth adversarial review (2026-12-02), judged on the server: attribute
/// notation (`a.f` is `f(a)`); constants planning folds in index
/// predicates and expressions, expression statistics and inherited CHECKs;
/// an upsert rule action; deferred triggers fired by `SET CONSTRAINTS` or
/// after a pipelined batch's idle answer; a custom setting holding a key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twelfth_review_paths_are_placed() {
    let env = Env::new("byp_twelfth");
    env.direct(
        "CREATE FUNCTION purge() RETURNS void LANGUAGE plpgsql AS $$BEGIN DELETE FROM public.audit_me; END$$;
         CREATE FUNCTION acct_label(a audit_me) RETURNS text LANGUAGE plpgsql AS $$BEGIN PERFORM public.purge(); RETURN a.v; END$$;
         CREATE FUNCTION acct_secret(a audit_me) RETURNS text LANGUAGE sql STABLE AS $$SELECT string_agg(v, ',') FROM public.secrets$$;
         CREATE FUNCTION live_cutoff() RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$BEGIN PERFORM public.purge(); RETURN 0; END$$;
         CREATE TABLE ix_live(id int, v text);
         CREATE INDEX ix_live_recent ON ix_live (id) WHERE id > live_cutoff();
         CREATE TABLE ixe_live(id int);
         CREATE INDEX ixe_live_i ON ixe_live ((id + live_cutoff()));
         CREATE TABLE st_live(a int, b int);
         CREATE STATISTICS st_live_s ON (a + live_cutoff()), b FROM st_live;
         CREATE TABLE ck_parent(id int);
         CREATE TABLE ck_child(CHECK (id > live_cutoff())) INHERITS (ck_parent);
         -- An ordinary functional index on a harmless function stays a read.
         CREATE FUNCTION norm(t text) RETURNS text LANGUAGE sql IMMUTABLE AS $$SELECT lower(t)$$;
         CREATE TABLE plain_ix(v text);
         CREATE INDEX plain_ix_i ON plain_ix (norm(v));
         CREATE TABLE bal_reset(id int);
         CREATE RULE bal_reset_apply AS ON INSERT TO bal_reset DO ALSO
           INSERT INTO audit_me SELECT a.id, 'reset' FROM audit_me a ON CONFLICT (id) DO UPDATE SET v = excluded.v;",
    );
    env.direct(&format!(
        "ALTER DATABASE {0} SET app.jwt_secret = 'S3cr3tJWT'; ALTER DATABASE {0} SET app.stripe_sk = 'sk_live_1'",
        env.db
    ));
    // Creating the index and statistics ran live_cutoff() already.
    env.direct(
        "INSERT INTO audit_me SELECT g, 'row' FROM generate_series(1, 5) g ON CONFLICT DO NOTHING",
    );
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await; // catalog refresh
    let c = env.client().await;
    env.refused_leaving_rows(
        &c,
        &[
            "SELECT a.acct_label FROM audit_me a WHERE id = 1",
            "SELECT audit_me.acct_label FROM audit_me WHERE id = 1",
            "SELECT (a).acct_label FROM audit_me a WHERE id = 1",
            "SELECT a.acct_secret FROM audit_me a WHERE id = 1",
            "SELECT count(*) FROM ix_live",
            "EXPLAIN SELECT * FROM ix_live",
            "SELECT count(*) FROM ixe_live",
            "SELECT * FROM st_live",
            "SELECT * FROM ck_parent WHERE id = 5",
            "INSERT INTO bal_reset VALUES (1)",
            "SHOW app.jwt_secret",
            "SELECT current_setting('app.jwt_secret')",
            "SELECT setconfig FROM pg_db_role_setting",
            // Round 14: configured custom settings, whatever their names.
            "SHOW app.stripe_sk",
            "SELECT current_setting('app.stripe_sk')",
            "SELECT rolconfig FROM pg_roles",
            // Round 15: the same through a whole row, and a function's SET.
            "SELECT * FROM pg_roles",
            "SELECT to_jsonb(u) FROM pg_user u",
            "SELECT proconfig FROM pg_proc",
            "SELECT pg_get_functiondef('purge'::regproc)",
        ],
    )
    .await;
    assert_eq!(
        env.direct("SELECT count(*) FROM audit_me WHERE v = 'row'"),
        "5"
    );
    assert_eq!(
        run(&c, "SELECT count(*) FROM plain_ix").await,
        Ok("0".into())
    );
    // A custom setting nobody configured (row-level security's claims).
    assert_eq!(
        run(
            &c,
            "SELECT current_setting('request.jwt.claim.sub', true) IS NULL"
        )
        .await,
        Ok("t".into())
    );
    assert_eq!(
        run(&c, "SELECT a.v FROM audit_me a WHERE id = 1").await,
        Ok("row".into())
    );

    // Deferred triggers: `SET CONSTRAINTS … IMMEDIATE` fires them as a
    // COMMIT does; and an earlier pipelined batch's idle answer, arriving
    // after a later write was sent, must not clear what that write queues.
    env.direct(DEFERRED_TRIGGER);
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await; // catalog refresh
    env.deferred_then_redefined(
        &c,
        "INSERT INTO dfr VALUES (1)",
        "SET CONSTRAINTS ALL IMMEDIATE",
    )
    .await;

    env.direct(DFR_HARMLESS);
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await; // catalog refresh
    let mut w = Wire::login(&env.cfg.listen_addr(), AGENT, AGENT_PW, &env.db);
    let mut b = Vec::new();
    for m in [
        wire::parse("", "SELECT pg_sleep(1)"),
        wire::bind("", ""),
        wire::execute(""),
        wire::sync(),
        wire::parse("", "BEGIN"),
        wire::bind("", ""),
        wire::execute(""),
        wire::parse("", "INSERT INTO dfr VALUES (2)"),
        wire::bind("", ""),
        wire::execute(""),
        wire::sync(),
    ] {
        b.extend_from_slice(&m);
    }
    w.send(&b);
    w.until_ready();
    w.until_ready();
    env.direct(DFR_PURGES);
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await; // catalog refresh
    let msgs = w.query("COMMIT");
    assert!(
        msgs.iter().any(|m| m.tag == 'E' && m.code() == "0A000"),
        "{}",
        wire::tags(&msgs)
    );
    assert_eq!(env.rows_left(), "5");
    assert_eq!(env.direct("SELECT count(*) FROM dfr"), "0");
}

/// Thirteenth adversarial review (2026-12-02): attribute notation for
/// any argument type, built-ins included (`('/etc/passwd').pg_read_file`),
/// user functions of a built-in type and domain casts; an inlined SQL
/// wrapper in an index predicate; tables a called function reads, through
/// their views; a foreign key's check, planned on the other table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirteenth_review_paths_are_placed() {
    let env = Env::new("byp_thirteenth");
    env.direct(
        "CREATE FUNCTION purge() RETURNS void LANGUAGE plpgsql AS $$BEGIN DELETE FROM public.audit_me; END$$;
         CREATE FUNCTION archive_old(i int) RETURNS int LANGUAGE plpgsql AS $$BEGIN PERFORM public.purge(); RETURN i; END$$;
         CREATE FUNCTION dom_purge_i(i int) RETURNS bool LANGUAGE plpgsql AS $$BEGIN PERFORM public.purge(); RETURN true; END$$;
         CREATE DOMAIN acct_ok AS int CHECK (dom_purge_i(VALUE));
         CREATE FUNCTION live_cutoff() RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$BEGIN PERFORM public.purge(); RETURN 0; END$$;
         CREATE FUNCTION is_recent(i int) RETURNS bool LANGUAGE sql IMMUTABLE AS $$SELECT i > live_cutoff()$$;
         CREATE TABLE ixw_live(id int);
         CREATE INDEX ixw_live_i ON ixw_live (id) WHERE is_recent(id);
         CREATE VIEW staff_v AS SELECT v FROM secrets;
         CREATE FUNCTION staff_first() RETURNS text LANGUAGE sql STABLE AS $$SELECT v FROM staff_v LIMIT 1$$;
         -- A foreign key's check plans a query on the other table.
         CREATE TABLE fkix_p(id int PRIMARY KEY);
         CREATE INDEX fkix_p_i ON fkix_p (id) WHERE id > live_cutoff();
         INSERT INTO fkix_p VALUES (1);
         CREATE TABLE fkix_ch(id int, p int REFERENCES fkix_p);",
    );
    env.direct(
        "INSERT INTO audit_me SELECT g, 'row' FROM generate_series(1, 5) g ON CONFLICT DO NOTHING",
    );
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await; // catalog refresh
    let c = env.client().await;
    env.refused_leaving_rows(
        &c,
        &[
            "SELECT ('/etc/hostname').pg_read_file",
            "SELECT (v).pg_read_file FROM (SELECT '/etc/hostname'::text AS v) x",
            "SELECT ('primary_conninfo').current_setting",
            "SELECT ('SELECT v FROM secrets').ts_stat",
            "SELECT (0).archive_old",
            "SELECT (1).acct_ok",
            "SELECT count(*) FROM ixw_live",
            "SELECT staff_first()",
            "INSERT INTO fkix_ch VALUES (1, 1)",
            // Round 14: a type's input function given the type by OID.
            "SELECT domain_in('5', 'public.acct_ok'::regtype, -1) IS NULL",
            "SELECT array_in('{5}', 'public.acct_ok'::regtype, -1) IS NULL",
            "SELECT (domain_in('5', oid, -1)) IS NULL FROM pg_type WHERE typname = 'acct_ok'",
        ],
    )
    .await;
    // Columns named like built-ins stay plain reads.
    assert_eq!(
        run(&c, "SELECT a.id, a.v FROM audit_me a WHERE a.id = 1").await,
        Ok("1|row".into())
    );
}

/// A statement sqlgate cannot place, once let through (here by a rule that
/// allows every class; in practice, approved), may queue a deferred trigger
/// on any table: a COMMIT after a redefinition is refused as after a write
/// to a table known to defer one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unplaced_write_counts_for_deferred_triggers() {
    // Without the rule denying `secrets`: it matches a DO block, whose
    // tables are not known.
    let env = Env::with_config(
        "byp_defer_unplaced",
        "[[rule]]\nid = \"let-through\"\naction = \"allow\"\nclasses = [\"read\", \"write\", \"ddl\", \"privilege\", \"destructive\", \"server_access\", \"export\", \"transaction\", \"session\", \"unparsed\"]\n",
        "",
        false,
    );
    env.direct(
        "CREATE FUNCTION purge() RETURNS void LANGUAGE plpgsql AS $$BEGIN DELETE FROM public.audit_me; END$$",
    );
    env.direct(DEFERRED_TRIGGER);
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await; // catalog refresh
    let c = env.client().await;
    // Dynamic SQL: its table is not known before it runs.
    env.deferred_then_redefined(
        &c,
        "DO $$BEGIN EXECUTE 'INSERT INTO ' || 'dfr VALUES (1)'; END$$",
        "COMMIT",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenth_review_paths_are_placed() {
    let env = Env::new("byp_tenth");
    env.direct(
        "CREATE FUNCTION purge() RETURNS void LANGUAGE plpgsql AS $$BEGIN DELETE FROM public.audit_me; END$$;
         -- A partition checks its parent's key: expression and operators.
         CREATE FUNCTION route_key(i int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$BEGIN PERFORM public.purge(); RETURN i / 100; END$$;
         CREATE TABLE pe (id int, v text) PARTITION BY RANGE (route_key(id));
         CREATE TABLE pe0 PARTITION OF pe FOR VALUES FROM (0) TO (10);
         CREATE FUNCTION ge_x(a int, b int) RETURNS bool LANGUAGE plpgsql IMMUTABLE AS $$BEGIN PERFORM public.purge(); RETURN a >= b; END$$;
         CREATE OPERATOR >>=# (LEFTARG = int, RIGHTARG = int, FUNCTION = ge_x);
         CREATE OPERATOR CLASS ge_ops FOR TYPE int USING btree AS
           OPERATOR 1 <, OPERATOR 2 <=, OPERATOR 3 =, OPERATOR 4 >>=#, OPERATOR 5 >, FUNCTION 1 btint4cmp(int, int);
         CREATE TABLE px (id int, v text) PARTITION BY RANGE (id ge_ops);
         CREATE TABLE px0 PARTITION OF px FOR VALUES FROM (0) TO (100);
         -- A superuser's pg_catalog function with a built-in's name, as a
         -- cast and as a domain CHECK.
         CREATE TYPE tint AS ENUM ('a', 'b');
         CREATE FUNCTION pg_catalog.text(t public.tint) RETURNS text LANGUAGE plpgsql AS $$BEGIN PERFORM public.purge(); RETURN t::name::text; END$$;
         CREATE CAST (tint AS text) WITH FUNCTION pg_catalog.text(public.tint);
         CREATE FUNCTION pg_catalog.isfinite(i int) RETURNS bool LANGUAGE plpgsql AS $$BEGIN PERFORM public.purge(); RETURN true; END$$;
         CREATE DOMAIN fin_int AS int CHECK (pg_catalog.isfinite(VALUE));
         -- An internal alias of a built-in behind an operator.
         CREATE FUNCTION public.slurp(text) RETURNS text LANGUAGE internal STRICT AS 'pg_read_file_all';
         CREATE OPERATOR public.@~@ (RIGHTARG = text, FUNCTION = public.slurp);
         -- A view in information_schema (any superuser can make one).
         CREATE VIEW information_schema.secret_v AS SELECT * FROM public.secrets;",
    );
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await; // catalog refresh
    env.direct(
        "INSERT INTO audit_me SELECT g, 'row' FROM generate_series(1, 5) g ON CONFLICT DO NOTHING",
    );
    let c = env.client().await;
    env.refused_leaving_rows(
        &c,
        &[
            "INSERT INTO pe0 VALUES (6, 'y')",
            "INSERT INTO px0 VALUES (5, 'x')",
            "SELECT 'a'::tint::text",
            "SELECT 1::fin_int",
            "SELECT @~@ '/etc/hostname'",
            "SELECT * FROM information_schema.secret_v",
            "SHOW primary_conninfo",
            "SELECT current_setting('primary_conninfo')",
            "SELECT current_setting(v) FROM audit_me",
        ],
    )
    .await;
    // A WITH HOLD cursor runs its query to the end at COMMIT: after a
    // redefinition, with the new body. The COMMIT is refused.
    env.direct("CREATE FUNCTION tally() RETURNS int LANGUAGE sql AS 'SELECT 1'");
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await; // catalog refresh
    for sql in [
        "BEGIN",
        "DECLARE cur CURSOR WITH HOLD FOR SELECT tally() FROM generate_series(1, 3)",
        "FETCH 1 FROM cur",
    ] {
        run(&c, sql).await.unwrap();
    }
    env.direct(
        "CREATE OR REPLACE FUNCTION tally() RETURNS int LANGUAGE plpgsql AS $$BEGIN PERFORM public.purge(); RETURN 1; END$$",
    );
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await; // catalog refresh
    run(&c, "SELECT 1").await.unwrap();
    let r = run(&c, "COMMIT").await;
    assert!(r.as_ref().is_err_and(|e| e.starts_with("0A000")), "{r:?}");
    run(&c, "ROLLBACK").await.unwrap();
    assert_eq!(env.rows_left(), "5");
    // So does a deferred constraint trigger, queued by a write.
    env.direct(DEFERRED_TRIGGER);
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await; // catalog refresh
    env.deferred_then_redefined(&c, "INSERT INTO dfr VALUES (1)", "COMMIT")
        .await;

    // The Sync that ends an implicit transaction commits it too (round 11):
    // a WITH HOLD cursor declared in the extended protocol.
    env.direct("CREATE OR REPLACE FUNCTION tally() RETURNS int LANGUAGE sql AS 'SELECT 1'");
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await; // catalog refresh
    let mut w = Wire::login(&env.cfg.listen_addr(), AGENT, AGENT_PW, &env.db);
    let mut b = Vec::new();
    for m in [
        wire::parse(
            "",
            "DECLARE hc CURSOR WITH HOLD FOR SELECT tally() FROM generate_series(1, 3)",
        ),
        wire::bind("", ""),
        wire::execute(""),
        wire::parse("", "FETCH 1 FROM hc"),
        wire::bind("", ""),
        wire::execute(""),
    ] {
        b.extend_from_slice(&m);
    }
    b.extend_from_slice(&wire::raw(b'H', &[]));
    w.send(&b);
    let mut seen = String::new();
    while !seen.contains('C') || seen.matches('C').count() < 2 {
        seen.push(w.recv().tag);
    }
    env.direct(
        "CREATE OR REPLACE FUNCTION tally() RETURNS int LANGUAGE plpgsql AS $$BEGIN PERFORM public.purge(); RETURN 1; END$$",
    );
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await; // catalog refresh
    w.send(&wire::sync());
    let msgs = w.until_ready();
    assert!(
        msgs.iter().any(|m| m.tag == 'E' && m.code() == "0A000"),
        "{}",
        wire::tags(&msgs)
    );
    assert_eq!(env.rows_left(), "5");

    // A one-argument call is a cast to a type of that name when no
    // function matches exactly: a domain named like a built-in (round 11).
    env.direct(
        "CREATE FUNCTION dom_purge(v text) RETURNS bool LANGUAGE plpgsql AS $$BEGIN PERFORM public.purge(); RETURN true; END$$;
         CREATE DOMAIN public.initcap AS text CHECK (dom_purge(VALUE));",
    );
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await; // catalog refresh
    env.refused_leaving_rows(
        &c,
        &[
            "SELECT initcap('hello')",
            "SELECT public.initcap('hello')",
            "SELECT setting FROM pg_settings WHERE name = 'primary_conninfo'",
            "SHOW ALL",
        ],
    )
    .await;
}

/// Review rounds 16 and 17: a function's settings through a whole
/// `pg_proc` row, attribute notation or a join's alias;
/// user mappings' passwords through `information_schema`; a cast that
/// cuts a literal, so the server uses another name or query than the one
/// decided on. And every built-in view whose definition reads a secret
/// column is not a plain read, whichever this server has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteenth_review_paths_are_placed() {
    let env = Env::new("byp_sixteenth");
    env.direct(&format!(
        "CREATE FUNCTION charge_card(i int) RETURNS int LANGUAGE sql AS 'SELECT i';
         ALTER FUNCTION charge_card(int) SET app.fn_key = 'sk_live_fn_999';
         ALTER DATABASE {} SET app.stripe_sk = 'sk_live_123';
         CREATE FOREIGN DATA WRAPPER byp16_fdw;
         CREATE SERVER byp16_srv FOREIGN DATA WRAPPER byp16_fdw;
         CREATE USER MAPPING FOR CURRENT_USER SERVER byp16_srv OPTIONS (user 'postgres', password 'hunter2');",
        env.db
    ));
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await; // catalog refresh
    let c = env.client().await;
    env.refused_leaving_rows(
        &c,
        &[
            "SELECT * FROM pg_proc WHERE proname = 'charge_card'",
            "SELECT p FROM pg_proc p WHERE proname = 'charge_card'",
            "SELECT (p).proconfig FROM pg_proc p WHERE proname = 'charge_card'",
            "SELECT to_jsonb(p)->>'proconfig' FROM pg_proc p WHERE proname = 'charge_card'",
            "SELECT x.* FROM pg_proc x WHERE proname = 'charge_card'",
            // Round 17: attribute notation and a join's alias.
            "SELECT p.to_jsonb->>'proconfig' FROM pg_proc p WHERE proname = 'charge_card'",
            "SELECT pg_catalog.pg_proc.to_jsonb->'proconfig' FROM pg_catalog.pg_proc WHERE proname = 'charge_card'",
            "SELECT to_jsonb(j)->'proconfig' FROM (pg_proc JOIN pg_namespace n ON n.oid = pronamespace) AS j WHERE proname = 'charge_card'",
            "SELECT (j).proconfig FROM (pg_proc JOIN pg_namespace n ON n.oid = pronamespace) AS j WHERE proname = 'charge_card'",
            "SELECT * FROM information_schema.user_mapping_options",
            "SELECT umoptions FROM information_schema._pg_user_mappings",
            "SELECT current_setting('app.stripe_skXX'::varchar(13))",
            "SELECT current_setting('app.stripe_sk_'::char(13))",
            "SELECT query_to_xml('SELECT * FROM secretsZ'::varchar(21), true, false, '')",
            "SELECT word FROM ts_stat('SELECT to_tsvector(v) FROM secretsZ'::varchar(34))",
        ],
    )
    .await;
    // Every built-in view reading a secret column (passwords, settings,
    // option lists, statistics' values, other sessions' SQL).
    let views = env.direct(
        r"SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relkind = 'v' AND c.oid < 16384 AND pg_get_viewdef(c.oid) ~
            '(rolpassword|umoptions|subconninfo|setconfig|rolconfig|useconfig|proconfig|passwd|pg_statistic|pg_show_all_settings|s\.query\M)'
          ORDER BY 1",
    );
    let views: Vec<&str> = views.lines().collect();
    assert!(views.len() >= 10, "{views:?}");
    for v in views {
        let sql = format!("SELECT * FROM {v} LIMIT 1");
        let r = run(&c, &sql).await;
        assert!(r.is_err(), "{sql}: {r:?}");
    }
    // Named columns stay plain reads (psql's \du and \df).
    assert_eq!(
        run(
            &c,
            "SELECT r.rolname, r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = 'intern'"
        )
        .await,
        Ok("intern|f".into())
    );
    assert_eq!(
        run(
            &c,
            "SELECT p.proname, pg_catalog.pg_get_function_arguments(p.oid) FROM pg_catalog.pg_proc p WHERE p.proname = 'charge_card'"
        )
        .await,
        Ok("charge_card|i integer".into())
    );
}

/// Review round 18: built-in functions in what a write evaluates (a
/// column default, a CHECK, a trigger's WHEN) are placed as a call of them
/// is: PostgreSQL records no dependency on a built-in, so only the
/// expressions' text shows them. And a `JOIN … USING … AS` alias over a
/// catalog with a settings column.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eighteenth_review_paths_are_placed() {
    let env = Env::new("byp_eighteenth");
    env.direct(&format!(
        "ALTER DATABASE {} SET app.stripe_sk = 'sk_live_123';
         CREATE TABLE d_file(id int, body text DEFAULT pg_read_file('/etc/hostname'));
         CREATE TABLE d_key(id int, k text DEFAULT current_setting('app.stripe_sk'));
         CREATE TABLE d_lo(id int, o oid DEFAULT lo_import('/etc/hostname'));
         CREATE TABLE d_chk(id int CHECK (pg_read_file('/etc/hostname') IS NOT NULL));
         CREATE TABLE d_tw(id int);
         CREATE FUNCTION d_noop() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;
         CREATE TRIGGER d_tw_t BEFORE INSERT ON d_tw FOR EACH ROW
           WHEN (pg_read_file('/etc/hostname') IS NOT NULL) EXECUTE FUNCTION d_noop();
         CREATE TABLE d_plain(id int, at timestamptz DEFAULT now(), n serial);
         -- Review 21: ANALYZE (autovacuum's, after writes) evaluates these.
         CREATE TABLE d_stx(id int, p text);
         CREATE STATISTICS d_stx_s ON (lo_import(p)), id FROM d_stx;",
        env.db
    ));
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await; // catalog refresh
    let c = env.client().await;
    let los = env.direct("SELECT count(*) FROM pg_largeobject_metadata");
    env.refused_leaving_rows(
        &c,
        &[
            "INSERT INTO d_file(id) VALUES (1) RETURNING body",
            "INSERT INTO d_key(id) VALUES (1) RETURNING k",
            "INSERT INTO d_lo(id) VALUES (1)",
            "INSERT INTO d_chk VALUES (1)",
            "INSERT INTO d_tw VALUES (1)",
            "INSERT INTO d_stx VALUES (1, '/etc/hostname')",
            "SELECT u FROM pg_proc LEFT JOIN (SELECT NULL::text[] AS proconfig) t USING (proconfig) AS u",
        ],
    )
    .await;
    for t in ["d_file", "d_key", "d_lo", "d_chk", "d_tw", "d_stx"] {
        assert_eq!(env.direct(&format!("SELECT count(*) FROM {t}")), "0", "{t}");
    }
    assert_eq!(
        env.direct("SELECT count(*) FROM pg_largeobject_metadata"),
        los
    );
    // Defaults of built-ins that only count or stamp stay plain writes.
    assert_eq!(
        run(&c, "INSERT INTO d_plain(id) VALUES (1) RETURNING n").await,
        Ok("1".into())
    );
}

/// Review round 18 (read in the source): a domain's DEFAULT or CHECK
/// calling a built-in runs it wherever a value becomes the domain: a cast,
/// a column of it given no value, a parameter of its type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domain_expressions_calling_built_ins_are_placed() {
    let env = Env::new("byp_domain_builtin");
    env.direct(
        "CREATE DOMAIN d_read AS text CHECK (pg_read_file('/etc/hostname') IS NOT NULL);
         CREATE DOMAIN d_dflt AS text DEFAULT pg_read_file('/etc/hostname');
         CREATE DOMAIN d_fine AS text CHECK (VALUE <> '') DEFAULT 'x';
         CREATE TABLE dom_t(id int, a d_dflt);
         CREATE TABLE dom_c(id int, a d_read);
         CREATE TABLE dom_f(id int, a d_fine);",
    );
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await; // catalog refresh
    let c = env.client().await;
    env.refused_leaving_rows(
        &c,
        &[
            "SELECT 'x'::d_read",
            "INSERT INTO dom_t(id) VALUES (1) RETURNING a",
            "INSERT INTO dom_c VALUES (1, 'y')",
        ],
    )
    .await;
    assert_eq!(env.direct("SELECT count(*) FROM dom_t"), "0");
    assert_eq!(env.direct("SELECT count(*) FROM dom_c"), "0");
    // A domain whose expressions call nothing stays a plain write.
    assert_eq!(
        run(&c, "INSERT INTO dom_f(id) VALUES (1) RETURNING a").await,
        Ok("x".into())
    );
}

/// Review round 19: a cast a DBA made between built-in types, applied by
/// PostgreSQL without a `::` in sight (assignment into a column, implicit
/// for a call), runs its function, a built-in one too: nothing is
/// placeable on that database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nineteenth_review_user_casts_between_built_ins_are_opaque() {
    let env = Env::new("byp_nineteenth");
    env.direct(
        "CREATE TABLE blobs(id int, b bytea);
         CREATE CAST (text AS bytea) WITH FUNCTION pg_catalog.pg_read_binary_file(text) AS ASSIGNMENT;",
    );
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await; // catalog refresh
    let c = env.client().await;
    env.refused_leaving_rows(
        &c,
        &[
            "INSERT INTO blobs VALUES (1, '/etc/hostname'::text)",
            "UPDATE blobs SET b = '/etc/hostname'::text",
            "SELECT 1",
        ],
    )
    .await;
    assert_eq!(env.direct("SELECT count(*) FROM blobs"), "0");
}

/// Review round 20: a default operator class a DBA made for a built-in
/// type runs its support functions wherever values of the type are hashed
/// or compared, built-in ones too (`pg_import_system_collations` as a hash
/// function): nothing is placeable on that database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twentieth_review_user_operator_classes_are_opaque() {
    let env = Env::new("byp_twentieth");
    env.direct(
        "CREATE SCHEMA victim_ns;
         CREATE OPERATOR CLASS ns_hash DEFAULT FOR TYPE regnamespace USING hash AS
           OPERATOR 1 = (oid, oid), FUNCTION 1 pg_import_system_collations(regnamespace);",
    );
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await; // catalog refresh
    let c = env.client().await;
    let before = env.direct("SELECT count(*) FROM pg_collation");
    env.refused_leaving_rows(&c, &["SELECT hash_array(ARRAY['victim_ns'::regnamespace])"])
        .await;
    assert_eq!(env.direct("SELECT count(*) FROM pg_collation"), before);
}

/// Review round 21: a built-in a superuser renamed (to a harmless
/// built-in's name) is not what its name says: the database is opaque.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_first_review_renamed_built_ins_are_opaque() {
    let env = Env::new("byp_twenty_first");
    let lo = env.direct("SELECT lo_create(0)");
    env.direct("ALTER FUNCTION pg_catalog.lo_unlink(oid) RENAME TO abs");
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await; // catalog refresh
    let c = env.client().await;
    env.refused_leaving_rows(&c, &[&format!("SELECT abs({lo}::oid)")])
        .await;
    assert_eq!(
        env.direct(&format!(
            "SELECT count(*) FROM pg_largeobject_metadata WHERE oid = {lo}"
        )),
        "1"
    );
}

/// Round 23, H1: a statement padded past `max_parse_bytes` (a trailing
/// comment) is not read, so it must meet the rules for anything it might
/// be: the shipped `server_access` deny, not only the one-approval rule for
/// `unparsed`. So must what the grammar rejects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_statements_meet_every_rule() {
    let env = Env::new("byp_unread");
    let c = env.client().await;
    let dir = TestDir::new("byp-unread");
    let file = dir.join("written");
    let pad = format!(" -- {}", "x".repeat(70_000));
    for sql in [
        format!("TRUNCATE audit_me{pad}"),
        format!("COPY (SELECT 1) TO PROGRAM 'touch {}'{pad}", file.display()),
        format!("DELETE FROM audit_me{pad}"),
        "DELET FROM audit_me".to_string(),
        "SELECT 'unterminated".to_string(),
    ] {
        let r = run(&c, &sql).await;
        let head = &sql[..sql.len().min(40)];
        assert!(
            r.as_ref()
                .is_err_and(|e| e.contains("server-access-denied")),
            "{head}: {r:?}"
        );
    }
    // The agent is told why sqlgate did not read it.
    let e = c.simple_query(&format!("SELECT 1{pad}")).await.unwrap_err();
    let detail = e.as_db_error().and_then(|d| d.detail()).unwrap_or("");
    assert!(detail.contains("max_parse_bytes"), "{detail}");
    assert_eq!(env.rows_left(), "5");
    assert!(!file.exists(), "the program ran");
    // With a longer limit it is read, and decided by what it is.
    let env = Env::with_config(
        "byp_unread2",
        "",
        "[limits]\nmax_parse_bytes = 262144\n",
        true,
    );
    let c = env.client().await;
    assert_eq!(run(&c, &format!("SELECT 7{pad}")).await.unwrap(), "7");
    let r = run(&c, &format!("TRUNCATE audit_me{pad}")).await;
    assert!(
        r.as_ref().is_err_and(|e| e.contains("requires approval")),
        "{r:?}"
    );
    assert_eq!(env.rows_left(), "5");
}

/// Review 22, F1 and F2, made directly on the database by a superuser:
/// a built-in changed in place keeps its OID and name, and sqlgate trusts
/// built-ins by name. The catalog compares what each built-in runs with a
/// fresh initdb's; after such a change nothing is placed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builtins_changed_in_place_on_the_database_place_nothing() {
    for (prefix, change, probe) in [
        (
            "byp_inplace_fn",
            "CREATE OR REPLACE FUNCTION pg_catalog.quote_ident(text) RETURNS text LANGUAGE plpgsql
               AS $$BEGIN DELETE FROM audit_me; RETURN $1; END$$",
            "SELECT quote_ident('a')",
        ),
        (
            "byp_inplace_rename",
            "ALTER AGGREGATE pg_catalog.string_agg(text, text) RENAME TO sa",
            "SELECT 1",
        ),
        (
            "byp_inplace_domain",
            "ALTER DOMAIN information_schema.cardinal_number ADD CONSTRAINT extra CHECK (VALUE < 1000000000)",
            "SELECT 1",
        ),
        (
            "byp_inplace_index",
            "CREATE INDEX feat_ix ON information_schema.sql_features (feature_id)
               WHERE feature_name <> ''",
            "SELECT 1",
        ),
        (
            "byp_inplace_default",
            "ALTER TABLE information_schema.sql_features ALTER COLUMN comments SET DEFAULT 'x'",
            "SELECT 1",
        ),
        (
            "byp_inplace_type",
            "ALTER TYPE pg_catalog.text SET (SEND = pg_catalog.pg_read_binary_file)",
            "SELECT 'a'::text",
        ),
        (
            "byp_inplace_view",
            "CREATE OR REPLACE VIEW pg_catalog.pg_available_extensions AS
               SELECT e.name, e.default_version, x.extversion AS installed_version,
                      (SELECT v FROM public.secrets LIMIT 1) AS comment
               FROM pg_available_extensions() e(name, default_version, comment)
               LEFT JOIN pg_extension x ON e.name = x.extname",
            "SELECT name FROM pg_available_extensions",
        ),
    ] {
        let env = Env::new(prefix);
        let c = env.client().await;
        run(&c, probe)
            .await
            .unwrap_or_else(|e| panic!("{probe}: {e}"));
        env.direct(change);
        // The change shows at the refresh after next at the latest (it may
        // land while one is loading); a loaded machine loads slowly. Wait
        // for it with a statement that does nothing either way.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while run(&c, "SELECT 1").await.is_ok() {
            assert!(std::time::Instant::now() < deadline, "{change}: never seen");
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
        let r = run(&c, probe).await;
        assert!(
            r.as_ref().is_err_and(|e| e.contains("no-secrets")),
            "{change}: {r:?}"
        );
        assert_eq!(env.rows_left(), "5");
    }
}
