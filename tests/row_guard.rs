//! The row guard and setting barriers through the real proxy, judged by
//! their effect on the server (checked directly with psql).

mod support;

use std::time::{Duration, Instant};
use support::fixtures::{AGENT, AGENT_PW, RULES};
use support::wire::{self, Wire};
use support::{PgServer, Sqlgate, SqlgateConfig, TestDir};
use tokio_postgres::NoTls;

struct Env {
    db: String,
    cfg: SqlgateConfig,
    gate: Sqlgate,
    _rules: TestDir,
    http: reqwest::Client,
}

impl Env {
    fn new(prefix: &str) -> Env {
        let pg = PgServer::shared();
        let (db, rules, cfg) = support::fixtures::approval_setup(pg, prefix);
        std::fs::write(
            rules.join("rules.toml"),
            format!("{RULES}\n[guard]\nmax_rows = 1000\napprovers = [\"dba\"]\n"),
        )
        .unwrap();
        pg.psql(
            &db,
            "CREATE TABLE big(id int PRIMARY KEY, x int);
             INSERT INTO big SELECT g, 0 FROM generate_series(1, 5000) g;
             ALTER TABLE big OWNER TO svc;",
        );
        let cfg = cfg.extra("[approvals]\ntimeout = \"60s\"\nkeepalive = \"500ms\"");
        let gate = Sqlgate::start_with(&cfg);
        let _ = rustls::crypto::ring::default_provider().install_default();
        Env {
            db,
            cfg,
            gate,
            _rules: rules,
            http: reqwest::Client::new(),
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
        PgServer::shared().psql(&self.db, sql)
    }

    async fn pending(&self) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let v: serde_json::Value = self
                .http
                .get(format!("http://{}/v1/approvals", self.cfg.admin_addr()))
                .bearer_auth("tok-alice")
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if let Some(r) = v["approvals"].as_array().and_then(|a| a.first()) {
                return r.clone();
            }
            assert!(
                Instant::now() < deadline,
                "nothing pending:\n{}",
                self.gate.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn decide(&self, verb: &str) {
        self.decide_as(verb, "tok-bob").await
    }

    async fn decide_as(&self, verb: &str, token: &str) {
        let id = self.pending().await["id"].as_str().unwrap().to_owned();
        let r = self
            .http
            .post(format!(
                "http://{}/v1/approvals/{id}/{verb}",
                self.cfg.admin_addr()
            ))
            .bearer_auth(token)
            .json(&serde_json::json!({"reason": "too many rows"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }

    fn audit(&self) -> Vec<serde_json::Value> {
        std::thread::sleep(Duration::from_millis(100));
        std::fs::read_to_string(self.gate.dir().join("audit/sqlgate.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autocommit_delete_above_the_limit_is_held_and_rolled_back_on_denial() {
    let env = Env::new("guard_auto");
    let c = env.client().await;
    // Below the limit: nothing is held, the DELETE commits as in autocommit.
    let n = c
        .execute("DELETE FROM big WHERE id <= 10", &[])
        .await
        .unwrap();
    assert_eq!(n, 10);
    let msgs = c
        .simple_query("DELETE FROM big WHERE id <= 20")
        .await
        .unwrap();
    assert!(msgs
        .iter()
        .any(|m| matches!(m, tokio_postgres::SimpleQueryMessage::CommandComplete(10))));
    assert_eq!(env.direct("SELECT count(*) FROM big"), "4980");
    // Above it (simple protocol): held; denied, nothing is deleted.
    let agent = in_background(c, "DELETE FROM big WHERE id > 0");
    let req = env.pending().await;
    assert_eq!(req["rule"], "builtin:row-guard");
    assert!(
        req["statements"][0]["text"]
            .as_str()
            .unwrap()
            .contains("4980 rows"),
        "{req}"
    );
    env.decide("deny").await;
    let (r, c) = agent.await.unwrap();
    let e = r.expect_err("denied");
    let m = e.as_db_error().unwrap().message().to_owned();
    assert!(m.contains("rolled back") && m.contains("bob"), "{m}");
    assert_eq!(env.direct("SELECT count(*) FROM big"), "4980");
    // The session is healthy and in autocommit.
    c.simple_query("SELECT 1").await.unwrap();
    // Extended protocol, approved: the rows are gone.
    let agent = tokio::spawn(async move {
        let r = c.execute("DELETE FROM big WHERE id > $1", &[&0i32]).await;
        (r, c)
    });
    env.decide("approve").await;
    let (r, c) = agent.await.unwrap();
    assert_eq!(r.unwrap(), 4980);
    assert_eq!(env.direct("SELECT count(*) FROM big"), "0");
    c.simple_query("SELECT 1").await.unwrap();
    let audit = env.audit();
    let guards: Vec<_> = audit.iter().filter(|r| r["kind"] == "row_guard").collect();
    assert_eq!(guards.len(), 2, "{audit:?}");
    assert_eq!(guards[0]["then"], "rollback");
    assert_eq!(guards[0]["statements"][0]["rows"], 4980);
    assert_eq!(guards[1]["then"], "commit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_after_a_big_update_is_held_and_denial_rolls_back() {
    let env = Env::new("guard_txn");
    let c = env.client().await;
    c.simple_query("BEGIN").await.unwrap();
    c.simple_query("UPDATE big SET x = 1 WHERE id > 3000")
        .await
        .unwrap();
    c.simple_query("UPDATE big SET x = 1 WHERE id <= 2000")
        .await
        .unwrap();
    let agent = in_background(c, "COMMIT");
    let req = env.pending().await;
    assert!(
        req["reason"].as_str().unwrap().contains("2000 rows"),
        "{req}"
    );
    env.decide("deny").await;
    let (r, c) = agent.await.unwrap();
    let e = r.expect_err("denied");
    assert_eq!(e.code().unwrap().code(), "42501");
    assert_eq!(env.direct("SELECT count(*) FROM big WHERE x = 1"), "0");
    // Out of the transaction: the next one starts afresh and commits.
    c.simple_query("BEGIN").await.unwrap();
    c.simple_query("UPDATE big SET x = 2 WHERE id <= 5")
        .await
        .unwrap();
    c.simple_query("COMMIT").await.unwrap();
    assert_eq!(env.direct("SELECT count(*) FROM big WHERE x = 2"), "5");
    // ROLLBACK clears the memory: the next transaction's COMMIT is not held.
    c.simple_query("BEGIN").await.unwrap();
    c.simple_query("UPDATE big SET x = 3 WHERE id > 0")
        .await
        .unwrap();
    c.simple_query("ROLLBACK").await.unwrap();
    c.simple_query("BEGIN").await.unwrap();
    c.simple_query("UPDATE big SET x = 3 WHERE id <= 3")
        .await
        .unwrap();
    c.simple_query("COMMIT").await.unwrap();
    assert_eq!(env.direct("SELECT count(*) FROM big WHERE x = 3"), "3");
    // Approved: the COMMIT goes upstream.
    c.simple_query("BEGIN").await.unwrap();
    c.simple_query("UPDATE big SET x = 4 WHERE id > 2500")
        .await
        .unwrap();
    let agent = tokio::spawn(async move { c.simple_query("COMMIT").await });
    env.decide("approve").await;
    agent.await.unwrap().unwrap();
    assert_eq!(env.direct("SELECT count(*) FROM big WHERE x = 4"), "2500");
}

#[test]
fn a_setting_changed_by_an_unreviewed_function_stops_what_was_queued_behind_it() {
    let pg = PgServer::shared();
    let db = pg.unique_database("barrier");
    let dir = TestDir::new("barrier-rules");
    let rules = dir.join("allow-unparsed.toml");
    std::fs::write(
        &rules,
        "[[rule]]\nid = \"allow-all\"\naction = \"allow\"\nclasses = [\"read\", \"unparsed\", \"session\"]\n",
    )
    .unwrap();
    let mut cfg = SqlgateConfig::for_pg(pg, &db).agent(AGENT, AGENT_PW, &[]);
    cfg.rules = vec![rules];
    let gate = Sqlgate::start_with(&cfg);
    pg.psql(
        &db,
        "CREATE TABLE t(a int); ALTER TABLE t OWNER TO svc;
         CREATE FUNCTION sneaky() RETURNS text LANGUAGE sql SECURITY DEFINER
           AS $$ SELECT set_config('standard_conforming_strings', 'off', false) $$;
         GRANT EXECUTE ON FUNCTION sneaky() TO svc;",
    );
    let mut w = Wire::login(&cfg.listen_addr(), AGENT, AGENT_PW, &db);
    // With standard_conforming_strings on (as sqlgate reads it) the second
    // query is one string and a comment; with it off, it drops `t`.
    let hidden = "SELECT 'x\\' -- '; DROP TABLE t; -- '";
    let mut b = bytes::BytesMut::new();
    postgres_protocol::message::frontend::query("SELECT sneaky()", &mut b).unwrap();
    postgres_protocol::message::frontend::query(hidden, &mut b).unwrap();
    w.send(&b);
    while w.try_recv().is_some() {}
    assert_eq!(
        pg.psql(&db, "SELECT count(*) FROM pg_tables WHERE tablename = 't'"),
        "1",
        "{}",
        gate.log()
    );
    // Extended: a Parse after such an Execute in the same batch is refused.
    let mut w = Wire::login(&cfg.listen_addr(), AGENT, AGENT_PW, &db);
    let mut b = wire::parse("", "SELECT 1");
    b.extend_from_slice(&wire::bind("", ""));
    b.extend_from_slice(&wire::execute(""));
    b.extend_from_slice(&wire::parse("s2", "SET application_name = 'x'"));
    b.extend_from_slice(&wire::bind("", "s2"));
    b.extend_from_slice(&wire::execute(""));
    b.extend_from_slice(&wire::parse("s3", "SELECT 2"));
    b.extend_from_slice(&wire::sync());
    w.send(&b);
    let msgs = w.until_ready();
    let err = msgs.iter().find(|m| m.tag == 'E').expect("refused");
    assert!(
        err.message().contains("followed by Sync"),
        "{}",
        err.message()
    );
}

impl Env {
    fn wire(&self) -> Wire {
        Wire::login(&self.cfg.listen_addr(), AGENT, AGENT_PW, &self.db)
    }
}

/// Runs `sql` on `c` in a task that hands the client back with the result:
/// the test meanwhile decides the hold it causes.
fn in_background(
    c: tokio_postgres::Client,
    sql: &'static str,
) -> tokio::task::JoinHandle<(
    Result<Vec<tokio_postgres::SimpleQueryMessage>, tokio_postgres::Error>,
    tokio_postgres::Client,
)> {
    tokio::spawn(async move {
        let r = c.simple_query(sql).await;
        (r, c)
    })
}

fn error_of(msgs: &[wire::Msg]) -> String {
    msgs.iter()
        .find(|m| m.tag == 'E')
        .map(|m| m.message())
        .unwrap_or_else(|| panic!("no error: {}", wire::tags(msgs)))
}

fn execute_max(portal: &str, max_rows: i32) -> bytes::BytesMut {
    let mut b = bytes::BytesMut::new();
    postgres_protocol::message::frontend::execute(portal, max_rows, &mut b).unwrap();
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partly_fetched_delete_returning_is_held_at_its_sync() {
    let env = Env::new("guard_suspended");
    let mut w = env.wire();
    let agent = tokio::task::spawn_blocking(move || {
        let mut b = wire::parse("", "DELETE FROM big WHERE id > 0 RETURNING id");
        b.extend_from_slice(&wire::bind("", ""));
        b.extend_from_slice(&execute_max("", 1));
        b.extend_from_slice(&wire::sync());
        w.send(&b);
        (w.until_ready(), w)
    });
    let req = env.pending().await;
    assert!(req["reason"].as_str().unwrap().contains("unknown"), "{req}");
    env.decide("deny").await;
    let (msgs, mut w) = agent.await.unwrap();
    assert!(error_of(&msgs).contains("row guard"), "{}", error_of(&msgs));
    assert_eq!(env.direct("SELECT count(*) FROM big"), "5000");
    // The session goes on in autocommit.
    let msgs = w.query("SELECT 1");
    assert!(!msgs.iter().any(|m| m.tag == 'E'), "{}", wire::tags(&msgs));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simple_query_before_the_sync_of_a_batch_is_refused() {
    let env = Env::new("guard_unsynced");
    let mut w = env.wire();
    let mut b = wire::parse("", "DELETE FROM big WHERE id > 0");
    b.extend_from_slice(&wire::bind("", ""));
    b.extend_from_slice(&wire::execute(""));
    let mut q = bytes::BytesMut::new();
    postgres_protocol::message::frontend::query("SELECT 1", &mut q).unwrap();
    b.extend_from_slice(&q);
    w.send(&b);
    let msgs = w.until_ready();
    assert!(
        error_of(&msgs).contains("send Sync first"),
        "{}",
        error_of(&msgs)
    );
    assert_eq!(env.direct("SELECT count(*) FROM big"), "5000");
    // A Sync now ends nothing more; the session goes on.
    w.send(&wire::sync());
    w.until_ready();
    let msgs = w.query("SELECT 1");
    assert!(!msgs.iter().any(|m| m.tag == 'E'), "{}", wire::tags(&msgs));
    assert_eq!(env.direct("SELECT count(*) FROM big"), "5000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_spelling_of_commit_is_held() {
    let env = Env::new("guard_spellings");
    for commit in [
        "COMMIT TRANSACTION",
        "COMMIT WORK",
        "END TRANSACTION",
        "end work",
    ] {
        // Simple protocol.
        let c = env.client().await;
        c.simple_query("BEGIN").await.unwrap();
        c.simple_query("DELETE FROM big WHERE id > 0")
            .await
            .unwrap();
        let agent = tokio::spawn(async move { c.simple_query(commit).await });
        env.decide("deny").await;
        let e = agent.await.unwrap().expect_err("denied");
        assert_eq!(e.code().unwrap().code(), "42501", "{commit}: {e}");
        assert_eq!(env.direct("SELECT count(*) FROM big"), "5000", "{commit}");
        // Extended protocol, COMMIT in the same batch as the DELETE.
        let mut w = env.wire();
        w.query("BEGIN");
        let agent = tokio::task::spawn_blocking(move || {
            let mut b = wire::parse("", "DELETE FROM big WHERE id > 0");
            b.extend_from_slice(&wire::bind("", ""));
            b.extend_from_slice(&wire::execute(""));
            b.extend_from_slice(&wire::parse("", commit));
            b.extend_from_slice(&wire::bind("", ""));
            b.extend_from_slice(&wire::execute(""));
            b.extend_from_slice(&wire::sync());
            w.send(&b);
            (w.until_ready(), w)
        });
        env.decide("deny").await;
        let (msgs, mut w) = agent.await.unwrap();
        assert!(error_of(&msgs).contains("row guard"), "{commit}");
        w.query("ROLLBACK");
        assert_eq!(env.direct("SELECT count(*) FROM big"), "5000", "{commit}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_siblings_of_an_approved_statement_are_counted() {
    let env = Env::new("guard_siblings");
    env.direct(
        "CREATE TABLE small(a int); INSERT INTO small VALUES (1); ALTER TABLE small OWNER TO svc;",
    );
    let c = env.client().await;
    let agent = tokio::spawn(async move {
        c.simple_query("TRUNCATE small; DELETE FROM big WHERE id > 0")
            .await
    });
    let req = env.pending().await;
    assert_eq!(req["rule"], "destructive-held", "{req}");
    env.decide("approve").await;
    // TRUNCATE is `ddl` too: that rule's two approvers.
    let deadline = Instant::now() + Duration::from_secs(20);
    while env.pending().await["rule"] != "ddl-two-approvers" {
        assert!(Instant::now() < deadline, "no ddl hold");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    env.decide_as("approve", "tok-alice").await;
    env.decide("approve").await;
    // The DELETE is counted: the row guard holds the transaction.
    let deadline = Instant::now() + Duration::from_secs(20);
    let req = loop {
        let r = env.pending().await;
        if r["rule"] == "builtin:row-guard" {
            break r;
        }
        assert!(Instant::now() < deadline, "no row-guard hold: {r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        req["reason"].as_str().unwrap().contains("5000 rows"),
        "{req}"
    );
    env.decide("deny").await;
    let e = agent.await.unwrap().expect_err("denied");
    assert_eq!(e.code().unwrap().code(), "42501", "{e}");
    assert_eq!(env.direct("SELECT count(*) FROM big"), "5000");
    assert_eq!(env.direct("SELECT count(*) FROM small"), "1");
    // The DELETE's record does not carry the TRUNCATE's approval.
    let audit = env.audit();
    let record = |command: &str| {
        audit
            .iter()
            .find(|r| r["kind"] == "statement" && r["command"] == command)
            .unwrap_or_else(|| panic!("no {command} record: {audit:?}"))
            .clone()
    };
    assert!(record("DELETE")["approval"].is_null(), "{audit:?}");
    assert!(!record("TRUNCATE")["approval"].is_null(), "{audit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limit_is_per_transaction() {
    let env = Env::new("guard_sum");
    let c = env.client().await;
    c.simple_query("BEGIN").await.unwrap();
    c.simple_query("DELETE FROM big WHERE id <= 900")
        .await
        .unwrap();
    c.simple_query("DELETE FROM big WHERE id <= 1800")
        .await
        .unwrap();
    let agent = in_background(c, "COMMIT");
    let req = env.pending().await;
    let reason = req["reason"].as_str().unwrap();
    assert!(
        reason.contains("900 rows") && reason.contains("1800 rows"),
        "{req}"
    );
    assert_eq!(req["statements"].as_array().unwrap().len(), 2, "{req}");
    env.decide("deny").await;
    let (r, c) = agent.await.unwrap();
    assert_eq!(r.expect_err("denied").code().unwrap().code(), "42501");
    assert_eq!(env.direct("SELECT count(*) FROM big"), "5000");
    // Below the limit in all: commits without a hold.
    c.simple_query("BEGIN").await.unwrap();
    c.simple_query("DELETE FROM big WHERE id <= 400")
        .await
        .unwrap();
    c.simple_query("DELETE FROM big WHERE id <= 800")
        .await
        .unwrap();
    c.simple_query("COMMIT").await.unwrap();
    assert_eq!(env.direct("SELECT count(*) FROM big"), "4200");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upsert_overwriting_many_rows_is_counted() {
    let env = Env::new("guard_upsert");
    let c = env.client().await;
    // A small upsert passes: its tag counts the rows it wrote.
    c.simple_query("INSERT INTO big SELECT g, 1 FROM generate_series(1, 10) g ON CONFLICT (id) DO UPDATE SET x = 1")
        .await
        .unwrap();
    assert_eq!(env.direct("SELECT count(*) FROM big WHERE x = 1"), "10");
    // Rewriting every row through ON CONFLICT DO UPDATE: held, denied,
    // rolled back.
    let agent = in_background(
        c,
        "INSERT INTO big SELECT id, 7 FROM big ON CONFLICT (id) DO UPDATE SET x = excluded.x",
    );
    let req = env.pending().await;
    assert_eq!(req["rule"], "builtin:row-guard", "{req}");
    env.decide("deny").await;
    let (r, c) = agent.await.unwrap();
    assert!(r.is_err());
    assert_eq!(env.direct("SELECT count(*) FROM big WHERE x = 7"), "0");
    // ON CONFLICT DO NOTHING never changes an existing row: not counted.
    c.simple_query("INSERT INTO big SELECT id, 8 FROM big ON CONFLICT DO NOTHING")
        .await
        .unwrap();
    // A function whose body changes rows: no tag counts them, so calling it
    // is destructive (held by the shipped rules), not a plain write.
    env.direct(
        "CREATE FUNCTION zap() RETURNS void LANGUAGE sql AS $$ UPDATE big SET x = 9 WHERE id > 0 $$;
         ALTER FUNCTION zap() OWNER TO svc;",
    );
    tokio::time::sleep(Duration::from_millis(2500)).await; // the catalog's refresh
    let agent = in_background(c, "SELECT zap()");
    let req = env.pending().await;
    assert!(
        req["statements"][0]["classes"]
            .as_array()
            .is_some_and(|a| a.iter().any(|c| c == "destructive")),
        "{req}"
    );
    env.decide("deny").await;
    let (r, _c) = agent.await.unwrap();
    assert!(r.is_err());
    assert_eq!(env.direct("SELECT count(*) FROM big WHERE x = 9"), "0");
}

/// Second adversarial pass: a DELETE behind a leading WITH is counted (the
/// statement kind comes from the parse tree), and a COMMIT hidden among
/// other statements can't commit counted rows unseen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leading_with_or_a_hidden_commit_does_not_escape_the_count() {
    let env = Env::new("guard_with");
    let c = env.client().await;
    let agent = in_background(c, "WITH a AS (SELECT 1) DELETE FROM big WHERE id > 0");
    let req = env.pending().await;
    assert_eq!(req["rule"], "builtin:row-guard", "{req}");
    env.decide("deny").await;
    let (r, mut c) = agent.await.unwrap();
    assert!(r.is_err());
    assert_eq!(env.direct("SELECT count(*) FROM big"), "5000");
    // The same through the extended protocol, and an upsert.
    for sql in [
        "WITH a AS (SELECT 1) UPDATE big SET x = 5 WHERE id > $1",
        "INSERT INTO big SELECT id, 5 FROM big WHERE id > $1 ON CONFLICT (id) DO UPDATE SET x = 5",
    ] {
        let agent = tokio::spawn(async move {
            let r = c.execute(sql, &[&0i32]).await;
            (r, c)
        });
        let req = env.pending().await;
        assert_eq!(req["rule"], "builtin:row-guard", "{sql}: {req}");
        env.decide("deny").await;
        let (r, back) = agent.await.unwrap();
        assert!(r.is_err(), "{sql}");
        c = back;
        assert_eq!(env.direct("SELECT count(*) FROM big WHERE x = 5"), "0");
    }
    // In a block, then a COMMIT among other statements: refused.
    c.simple_query("BEGIN").await.unwrap();
    let agent = in_background(c, "DELETE FROM big WHERE id > 0");
    let (r, c) = agent.await.unwrap();
    r.unwrap();
    let e = c
        .simple_query("SELECT 1; COMMIT")
        .await
        .expect_err("refused");
    assert_eq!(e.code().unwrap().code(), "42501", "{e}");
    let _ = c.simple_query("ROLLBACK").await;
    assert_eq!(env.direct("SELECT count(*) FROM big"), "5000");
}
