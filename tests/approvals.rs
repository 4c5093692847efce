//! Holding statements for approval, end to end: a real PostgreSQL, the real
//! sqlgate, agents on tokio-postgres and raw wire, approvers on the HTTP API
//! and the `sqlgate approvals` CLI.

mod support;

use std::sync::OnceLock;
use std::time::{Duration, Instant};
use support::wire::{self, Wire};
use support::{PgOptions, PgServer, Sqlgate, SqlgateConfig, TestDir};
use tokio_postgres::{AsyncMessage, NoTls};

use support::fixtures::{AGENT, AGENT_PW};

/// One PostgreSQL for this file, with a short idle-in-transaction timeout so
/// that the keepalive during a hold is really exercised.
fn pg() -> &'static PgServer {
    static PG: OnceLock<PgServer> = OnceLock::new();
    PG.get_or_init(|| {
        PgServer::start(PgOptions {
            settings: vec![("idle_in_transaction_session_timeout".into(), "'2s'".into())],
            ..PgOptions::default()
        })
    })
}

struct Env {
    db: String,
    cfg: SqlgateConfig,
    gate: Sqlgate,
    _rules: TestDir,
    http: reqwest::Client,
}

impl Env {
    fn new(prefix: &str) -> Env {
        Env::with_rules(prefix, "")
    }

    /// With `more` rules after the fixture's.
    fn with_rules(prefix: &str, more: &str) -> Env {
        Env::with_config(prefix, more, |c| c)
    }

    /// [`Env::with_rules`], its config changed by `f`.
    fn with_config(
        prefix: &str,
        more: &str,
        f: impl FnOnce(SqlgateConfig) -> SqlgateConfig,
    ) -> Env {
        Env::build(
            prefix,
            more,
            "[approvals]\ntimeout = \"60s\"\nkeepalive = \"500ms\"",
            f,
        )
    }

    /// With `approvals` as the config's `[approvals]` section.
    fn build(
        prefix: &str,
        more: &str,
        approvals: &str,
        f: impl FnOnce(SqlgateConfig) -> SqlgateConfig,
    ) -> Env {
        let pg = pg();
        let (db, rules, cfg) = support::fixtures::approval_setup(pg, prefix);
        if !more.is_empty() {
            let path = rules.join("rules.toml");
            let text = std::fs::read_to_string(&path).unwrap();
            std::fs::write(&path, format!("{text}\n{more}\n")).unwrap();
        }
        let cfg = f(cfg.extra(approvals));
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

    fn conninfo(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user={AGENT} password={AGENT_PW} dbname={} sslmode=disable",
            self.cfg.listen_port, self.db
        )
    }

    /// A client whose notices are collected.
    async fn client(
        &self,
    ) -> (
        tokio_postgres::Client,
        tokio::sync::mpsc::UnboundedReceiver<String>,
    ) {
        let (client, mut conn) = tokio_postgres::connect(&self.conninfo(), NoTls)
            .await
            .unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut s = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
            use futures_util::StreamExt;
            while let Some(Ok(m)) = s.next().await {
                if let AsyncMessage::Notice(n) = m {
                    let _ = tx.send(n.message().to_owned());
                }
            }
        });
        (client, rx)
    }

    fn admin(&self) -> String {
        format!("http://{}", self.cfg.admin_addr())
    }

    /// Sends `sql` from `c` and returns the request it is held for, once
    /// alice denied it and the agent got its error.
    async fn held_and_denied(
        &self,
        c: tokio_postgres::Client,
        sql: &'static str,
    ) -> serde_json::Value {
        let agent = tokio::spawn(async move { c.simple_query(sql).await });
        let req = self.pending(1).await.remove(0);
        let (s, _) = self
            .vote(req["id"].as_str().unwrap(), "deny", "tok-alice")
            .await;
        assert_eq!(s, 200);
        assert!(agent.await.unwrap().is_err());
        req
    }

    /// alice approves request `id` with a standing grant of 15 minutes.
    async fn approve_with_grant(&self, id: &str) {
        let (s, v) = self
            .api(
                "POST",
                &format!("/v1/approvals/{id}/approve"),
                "tok-alice",
                serde_json::json!({"grant": "15m"}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
    }

    /// An agent session whose `UPDATE public.items SET name = 'a'` was
    /// held and approved with a 15-minute grant (the grant's id); keep the
    /// notices receiver for as long as the session.
    async fn granted_update(
        &self,
    ) -> (
        std::sync::Arc<tokio_postgres::Client>,
        tokio::sync::mpsc::UnboundedReceiver<String>,
        String,
    ) {
        let (c, n) = self.client().await;
        let c = std::sync::Arc::new(c);
        let c2 = c.clone();
        let agent =
            tokio::spawn(
                async move { c2.simple_query("UPDATE public.items SET name = 'a'").await },
            );
        let id = self.pending(1).await[0]["id"].as_str().unwrap().to_owned();
        self.approve_with_grant(&id).await;
        agent.await.unwrap().unwrap();
        (c, n, id)
    }

    /// `verb` (approve or deny) on request `id` as the approver of `token`.
    async fn vote(&self, id: &str, verb: &str, token: &str) -> (u16, serde_json::Value) {
        self.api(
            "POST",
            &format!("/v1/approvals/{id}/{verb}"),
            token,
            serde_json::Value::Null,
        )
        .await
    }

    /// Until `done` (at most `secs`), votes on every pending request as
    /// alice and then bob,
    /// with the verb `verdict` gives for it (it may assert on it too).
    async fn vote_until(
        &self,
        secs: u64,
        done: impl Fn() -> bool,
        verdict: impl Fn(&serde_json::Value) -> &'static str,
    ) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !done() {
            assert!(Instant::now() < deadline, "still held");
            let (_, v) = self
                .api("GET", "/v1/approvals", "tok-alice", serde_json::Value::Null)
                .await;
            for r in v["approvals"].as_array().cloned().unwrap_or_default() {
                let id = r["id"].as_str().unwrap();
                let verb = verdict(&r);
                self.vote(id, verb, "tok-alice").await;
                self.vote(id, verb, "tok-bob").await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn api(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let url = format!("{}{path}", self.admin());
        let req = match method {
            "GET" => self.http.get(url),
            _ => self.http.post(url).json(&body),
        };
        let resp = req.bearer_auth(token).send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or_default())
    }

    /// Waits until `n` requests are pending; returns them.
    async fn pending(&self, n: usize) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (s, v) = self
                .api("GET", "/v1/approvals", "tok-alice", serde_json::Value::Null)
                .await;
            assert_eq!(s, 200, "{v}");
            let list = v["approvals"].as_array().cloned().unwrap_or_default();
            if list.len() >= n {
                return list;
            }
            assert!(
                Instant::now() < deadline,
                "only {} pending; log:\n{}",
                list.len(),
                self.gate.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the first pending request is one of rule `rule`.
    async fn pending_for(&self, rule: &str) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let list = self.pending(1).await;
            if list[0]["rule"] == rule {
                return list[0].clone();
            }
            assert!(Instant::now() < deadline, "no request of rule {rule}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn direct(&self, sql: &str) -> String {
        pg().psql(&self.db, sql)
    }

    fn cli(&self, args: &[&str], token: &str) -> std::process::Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_sqlgate"))
            .arg("approvals")
            .args(args)
            .env("SQLGATE_ADMIN", self.admin())
            .env("SQLGATE_TOKEN", token)
            .output()
            .unwrap()
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

fn code(e: &tokio_postgres::Error) -> String {
    e.code()
        .map(|c| c.code().to_owned())
        .unwrap_or_else(|| format!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_outlasts_an_idle_timeout_shorter_than_the_configured_keepalive() {
    // The default keepalive (10 s) against the server's 2 s: sqlgate asks
    // the session for its timeouts and keeps it alive under them.
    let env = Env::build("hold_idle", "", "[approvals]\ntimeout = \"60s\"", |c| c);
    let (c, _notices) = env.client().await;
    c.simple_query("BEGIN").await.unwrap();
    c.simple_query("INSERT INTO items VALUES (10, 'ten')")
        .await
        .unwrap();
    let agent = tokio::spawn(async move {
        let r = c.simple_query("DELETE FROM items").await;
        (r, c)
    });
    let id = env.pending(1).await[0]["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let (s, v) = env.vote(&id, "approve", "tok-alice").await;
    assert_eq!(s, 200, "{v}");
    let (r, c) = agent.await.unwrap();
    r.unwrap_or_else(|e| panic!("approved DELETE must run: {e}\n{}", env.gate.log()));
    c.simple_query("COMMIT").await.unwrap();
    // Judged on the server: the transaction (its INSERT and the DELETE) committed.
    assert_eq!(env.direct("SELECT count(*) FROM items"), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_in_a_transaction_survives_the_idle_timeout_and_runs_on_cli_approval() {
    let env = Env::new("hold_cli");
    let (c, mut notices) = env.client().await;
    c.simple_query("BEGIN").await.unwrap();
    c.simple_query("INSERT INTO items VALUES (10, 'ten')")
        .await
        .unwrap();
    let agent = tokio::spawn(async move {
        let r = c.simple_query("DELETE FROM items").await;
        (r, c)
    });
    let list = env.pending(1).await;
    let req = &list[0];
    let id = req["id"].as_str().unwrap().to_owned();
    assert_eq!(req["agent"], AGENT);
    assert_eq!(req["rule"], "destructive-held");
    assert_eq!(req["statements"][0]["text"], "DELETE FROM items");
    let notice = tokio::time::timeout(Duration::from_secs(5), notices.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        notice.contains(&id) && notice.contains("held for approval"),
        "{notice}"
    );

    // The CLI lists it, as a table and as JSON.
    let out = env.cli(&["list"], "tok-bob");
    assert!(String::from_utf8_lossy(&out.stdout).contains(&id));
    let out = env.cli(&["list", "--json"], "tok-bob");
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed[0]["id"], id.as_str());

    // A human thinks for three times the server's idle-in-transaction timeout.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let out = env.cli(&["approve", &id, "--reason", "cleanup agreed"], "tok-alice");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (r, c) = agent.await.unwrap();
    let msgs = r.unwrap_or_else(|e| panic!("approved DELETE must run: {e}\n{}", env.gate.log()));
    assert!(msgs
        .iter()
        .any(|m| matches!(m, tokio_postgres::SimpleQueryMessage::CommandComplete(4))));
    // The same transaction goes on and commits.
    c.simple_query("INSERT INTO items VALUES (11, 'eleven')")
        .await
        .unwrap();
    c.simple_query("COMMIT").await.unwrap();
    assert_eq!(
        env.direct("SELECT string_agg(id::text, ',') FROM items"),
        "11"
    );

    // Approving again is a conflict; the audit tells the whole story.
    let out = env.cli(&["approve", &id], "tok-bob");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("409"));
    let audit = env.audit();
    let kinds: Vec<&str> = audit.iter().filter_map(|r| r["kind"].as_str()).collect();
    for k in ["approval_request", "approval_vote", "approval_decision"] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
    let stmt = audit
        .iter()
        .find(|r| r["kind"] == "statement" && r["command"] == "DELETE")
        .expect("statement record");
    assert_eq!(stmt["action"], "require_approval");
    assert_eq!(stmt["outcome"], "ok");
    assert_eq!(stmt["approval"]["by"][0], "alice");
    // Review C, F14: that it was sent is on disk before it ran (its rows
    // may reach the agent before its outcome record exists).
    let sent = audit
        .iter()
        .position(|r| r["kind"] == "statement_sent")
        .expect("statement_sent record");
    assert_eq!(audit[sent]["sql_sha256"], stmt["sql_sha256"], "{audit:?}");
    assert_eq!(audit[sent]["approval"]["by"][0], "alice");
    assert!(audit.iter().position(|r| r == stmt).unwrap() > sent);
    let decision = audit
        .iter()
        .find(|r| r["kind"] == "approval_decision")
        .unwrap();
    assert!(decision["wait_ms"].as_u64().unwrap() >= 6000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denial_fails_the_transaction_and_names_the_approver() {
    let env = Env::new("hold_deny");
    let (c, _n) = env.client().await;
    c.simple_query("BEGIN").await.unwrap();
    let agent =
        tokio::spawn(async move { (c.simple_query("UPDATE items SET name = 'x'").await, c) });
    let id = env.pending(1).await[0]["id"].as_str().unwrap().to_owned();
    let (s, v) = env
        .api(
            "POST",
            &format!("/v1/approvals/{id}/deny"),
            "tok-bob",
            serde_json::json!({"reason": "not during business hours"}),
        )
        .await;
    assert_eq!((s, v["state"].as_str()), (200, Some("denied")));
    let (r, c) = agent.await.unwrap();
    let e = r.expect_err("denied");
    assert_eq!(code(&e), "42501");
    let m = e.as_db_error().unwrap().message().to_owned();
    assert!(
        m.contains("bob") && m.contains("not during business hours"),
        "{m}"
    );
    assert_eq!(
        code(&c.simple_query("SELECT 1").await.unwrap_err()),
        "25P02"
    );
    c.simple_query("ROLLBACK").await.unwrap();
    assert_eq!(
        env.direct("SELECT count(*) FROM items WHERE name = 'x'"),
        "0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_statement_that_ends_the_session_has_its_record() {
    // Review C15: an approved string over 64 KiB (unparsed) turns
    // standard_conforming_strings off; the server answers SET, then the
    // session ends (sqlgate can't read SQL so). The statement ran: its
    // record is in the log.
    let env = Env::with_rules(
        "hold_scs",
        // Unread, it carries every class: a rule for all of them.
        "[[rule]]\nid = \"unparsed-held\"\naction = \"require_approval\"\napprovers = [\"dba\"]",
    );
    let (c, _n) = env.client().await;
    let sql = format!(
        "SET standard_conforming_strings = off /* {} */",
        "x".repeat(70_000)
    );
    let agent = tokio::spawn(async move {
        let r = c.simple_query(&sql).await.map(|_| ());
        let after = c.simple_query("SELECT 1").await.map(|_| ());
        (r, after)
    });
    env.vote_until(20, || agent.is_finished(), |_| "approve")
        .await;
    let (_, after) = agent.await.unwrap();
    assert!(after.is_err(), "the session is closed");
    let audit = env.audit();
    let stmt = audit
        .iter()
        .find(|r| r["kind"] == "statement" && r["action"] == "require_approval")
        .unwrap_or_else(|| panic!("no statement record: {audit:?}"));
    assert_eq!(stmt["outcome"], "ok", "{stmt}");
    assert_eq!(stmt["approval"]["by"][0], "alice", "{stmt}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvers_see_the_whole_query_string() {
    // Review C7b: the statements that run with the held one are shown,
    // in order, with it (fingerprints: no literals).
    let env = Env::new("hold_string");
    let (c, _n) = env.client().await;
    let agent = tokio::spawn(async move {
        c.simple_query("SET search_path = public; DELETE FROM items; SELECT 'secret'")
            .await
            .map(|_| ())
    });
    let r = &env.pending(1).await[0];
    let string = r["string"].as_array().expect("the whole string");
    let held: Vec<bool> = string
        .iter()
        .map(|s| s["held"].as_bool().unwrap())
        .collect();
    assert_eq!(held, [false, true, false], "{r}");
    assert_eq!(string[0]["command"], "SET");
    // A setting is identity: shown as written (review A, F1); the rest by
    // fingerprint.
    assert_eq!(string[0]["text"], "SET search_path = public", "{r}");
    // Nothing ran before it in this session, but the SET before it in its
    // string will (review D, F12c): the warning, and no search_path claimed.
    assert!(r["session_note"].is_string(), "{r}");
    assert!(r["names_note"].is_null(), "{r}");
    assert!(!r.to_string().contains("secret"), "{r}");
    let out = env.cli(&["list"], "tok-alice");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("(of 3 in its string)"),
        "{out:?}"
    );
    let id = r["id"].as_str().unwrap();
    env.vote(id, "deny", "tok-alice").await;
    assert!(agent.await.unwrap().is_err());
    // A SET sent on its own before: every channel warns.
    let (c, _n) = env.client().await;
    c.simple_query("SET search_path = public").await.unwrap();
    let agent = tokio::spawn(async move { c.simple_query("DELETE FROM items").await.map(|_| ()) });
    let r = &env.pending(1).await[0];
    assert!(r["session_note"].is_string(), "{r}");
    env.vote(r["id"].as_str().unwrap(), "deny", "tok-alice")
        .await;
    assert!(agent.await.unwrap().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_whose_code_changed_while_held_does_not_run() {
    // Review C4b: approvers saw `f()` read; while they decided, the DBA
    // made it write. The approved string is decided again, on a catalog
    // read again, and refused: neither its DELETE nor the new body runs.
    let env = Env::new("hold_changed");
    env.direct(
        "CREATE TABLE marks(id int); ALTER TABLE marks OWNER TO svc;
         CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1';
         CREATE VIEW fv AS SELECT public.f() AS x;",
    );
    std::thread::sleep(Duration::from_millis(2500)); // catalog refresh
    let (c, _n) = env.client().await;
    let c = std::sync::Arc::new(c);
    let c2 = c.clone();
    // Through a view: a call in the string itself may move names, and then
    // no grant is given at all (review E, F15).
    let agent = tokio::spawn(async move {
        c2.simple_query("SELECT * FROM public.fv; DELETE FROM public.items")
            .await
    });
    let r = &env.pending(1).await[0];
    env.direct(
        "CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql AS 'INSERT INTO marks VALUES (1) RETURNING 1';",
    );
    let id = r["id"].as_str().unwrap();
    // Approved with a grant: the grant goes with the refusal (review A, F2).
    let (s, v) = env
        .api(
            "POST",
            &format!("/v1/approvals/{id}/approve"),
            "tok-alice",
            serde_json::json!({"grant": "1h"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let e = agent.await.unwrap().expect_err("refused");
    assert_eq!(code(&e), "0A000", "{e}");
    let m = e.as_db_error().unwrap().message().to_owned();
    assert!(m.contains("changed while it waited"), "{m}");
    assert_eq!(env.direct("SELECT count(*) FROM items"), "3");
    assert_eq!(env.direct("SELECT count(*) FROM marks"), "0");
    let audit = env.audit();
    assert!(
        audit.iter().any(|r| r["kind"] == "statement"
            && r["approval"]["outcome"] == "changed_while_held"
            && r["approval"]["request"] == id),
        "{audit:?}"
    );
    assert!(audit
        .iter()
        .any(|r| r["kind"] == "approval_grant_revoked" && r["request"] == id));
    // Sent again as told: held again, not run on the grant.
    let c3 = c.clone();
    let again = tokio::spawn(async move {
        c3.simple_query("SELECT * FROM public.fv; DELETE FROM public.items")
            .await
    });
    env.pending(1).await;
    assert!(!again.is_finished());
    again.abort();
    assert_eq!(env.direct("SELECT count(*) FROM marks"), "0");
    // A later statement of a held string reaching code is planned only when
    // the ones before it are done (review A, F3): not held, refused.
    let r = c
        .simple_query("SELECT 1; SELECT public.f(); DELETE FROM public.items")
        .await;
    let e = r.expect_err("refused");
    assert_eq!(code(&e), "0A000", "{e}");
    assert_eq!(env.direct("SELECT count(*) FROM items"), "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_same_shaped_redefinition_while_held_is_refused_too() {
    // Round 11: the body changes but reaches the same tables with the same
    // classes (another WHERE): a definition moved and the statement runs
    // code, so it is refused all the same.
    let env = Env::new("hold_same_shape");
    env.direct(
        "CREATE FUNCTION g() RETURNS int LANGUAGE sql AS 'DELETE FROM public.items WHERE id = 1 RETURNING 1';",
    );
    std::thread::sleep(Duration::from_millis(2500)); // catalog refresh
    let (c, _n) = env.client().await;
    let agent = tokio::spawn(async move { c.simple_query("SELECT public.g()").await });
    let r = &env.pending(1).await[0];
    env.direct(
        "CREATE OR REPLACE FUNCTION g() RETURNS int LANGUAGE sql AS 'DELETE FROM public.items WHERE id > 0 RETURNING 1';",
    );
    std::thread::sleep(Duration::from_millis(2500)); // the new body in a snapshot
    let id = r["id"].as_str().unwrap();
    env.vote(id, "approve", "tok-alice").await;
    env.vote(id, "approve", "tok-bob").await;
    let e = agent.await.unwrap().expect_err("refused");
    assert_eq!(code(&e), "0A000", "{e}");
    assert_eq!(env.direct("SELECT count(*) FROM items"), "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parameter_types_code_changed_while_held_is_read_again() {
    // Review A, F8: a Parse's parameter typed as a domain whose CHECK calls
    // a function; the function changes while the statement waits. The
    // re-decision reads the parameter types' code again: refused.
    let env = Env::new("hold_param_type");
    env.direct(
        "CREATE TABLE marks(id int); ALTER TABLE marks OWNER TO svc;
         CREATE FUNCTION h(v int) RETURNS bool LANGUAGE sql AS 'SELECT v >= 0';
         CREATE DOMAIN dom_chk AS int CHECK (h(VALUE));",
    );
    std::thread::sleep(Duration::from_millis(2500)); // catalog refresh
    let oid: u32 = env
        .direct("SELECT 'dom_chk'::regtype::oid")
        .trim()
        .parse()
        .unwrap();
    let mut w = Wire::login(&env.cfg.listen_addr(), AGENT, AGENT_PW, &env.db);
    let mut b = Vec::new();
    for m in [
        wire::parse_typed("", "DELETE FROM items RETURNING $1", &[oid]),
        wire::bind_text("", "", &["0"]),
        wire::execute(""),
        wire::sync(),
    ] {
        b.extend_from_slice(&m);
    }
    w.send(&b);
    let reader = std::thread::spawn(move || w.until_ready());
    let r = &env.pending(1).await[0];
    env.direct(
        "CREATE OR REPLACE FUNCTION h(v int) RETURNS bool LANGUAGE sql AS 'INSERT INTO marks VALUES (777) RETURNING v >= 0';",
    );
    let id = r["id"].as_str().unwrap();
    assert_eq!(env.vote(id, "approve", "tok-alice").await.0, 200);
    env.vote(id, "approve", "tok-bob").await;
    let msgs = reader.join().unwrap();
    let e = msgs.iter().find(|m| m.tag == 'E').expect("refused");
    assert_eq!(e.code(), "0A000", "{}", e.message());
    assert_eq!(env.direct("SELECT count(*) FROM items"), "3");
    assert_eq!(env.direct("SELECT count(*) FROM marks"), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_guessing_is_throttled_per_address() {
    // Review C14b: ten unknown tokens from one address, then every token
    // from it is refused for the minute, the right one too (so a guess
    // that hits learns nothing), and nothing is decided; a long one too
    // (review G, G2: length is not randomness).
    let env = Env::with_config("hold_guess", "", |c| {
        c.extra(&format!(
            "[[approver]]\nname = \"dora\"\ntoken = \"{DORA}\"\ngroups = [\"dba\"]"
        ))
    });
    let (c, _n) = env.client().await;
    let agent = tokio::spawn(async move { c.simple_query("DELETE FROM items").await });
    let id = env.pending(1).await[0]["id"].as_str().unwrap().to_owned();
    let approve = format!("/v1/approvals/{id}/approve");
    let none = serde_json::Value::Null;
    for i in 0..9 {
        let (s, _) = env
            .api(
                "GET",
                "/v1/approvals",
                &format!("tok-guess-{i}"),
                none.clone(),
            )
            .await;
        assert_eq!(s, 401);
    }
    let (s, v) = env
        .api("GET", "/v1/approvals", "tok-guess-9", none.clone())
        .await;
    assert_eq!(s, 429, "{v}");
    let (s, v) = env.api("POST", &approve, "tok-alice", none.clone()).await;
    assert_eq!(s, 429, "{v}");
    assert!(v["error"].as_str().unwrap().contains("retry in"), "{v}");
    assert!(!agent.is_finished());
    assert_eq!(env.direct("SELECT count(*) > 0 FROM items"), "t");
    let (s, v) = env.api("POST", &approve, DORA, none.clone()).await;
    assert_eq!(s, 429, "{v}");
    assert!(!agent.is_finished());
    assert_eq!(env.direct("SELECT count(*) > 0 FROM items"), "t");
    agent.abort();
}

/// A token of the strength the config asks for.
const DORA: &str = "tok-dora-0123456789abcdef0123456789abcdef";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn who_may_approve_is_enforced() {
    let env = Env::new("hold_who");
    let (c, _n) = env.client().await;
    let agent = tokio::spawn(async move { c.simple_query("DELETE FROM items").await });
    let id = env.pending(1).await[0]["id"].as_str().unwrap().to_owned();
    let approve = format!("/v1/approvals/{id}/approve");
    let none = serde_json::Value::Null;
    assert_eq!(
        env.api("GET", "/v1/approvals", "tok-nobody", none.clone())
            .await
            .0,
        401
    );
    assert_eq!(
        env.http
            .get(format!("{}/v1/approvals", env.admin()))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    // The agent's own name, and an approver mapped to the agent: never.
    for tok in ["tok-bot", "tok-owner"] {
        let (s, v) = env.api("POST", &approve, tok, none.clone()).await;
        assert_eq!(s, 403, "{tok}: {v}");
        assert!(v["error"].as_str().unwrap().contains("own request"), "{v}");
    }
    let (s, v) = env.api("POST", &approve, "tok-carol", none.clone()).await;
    assert_eq!(s, 403, "{v}");
    assert!(v["error"].as_str().unwrap().contains("not in the groups"));
    assert_eq!(
        env.api(
            "POST",
            "/v1/approvals/apr_nope/approve",
            "tok-alice",
            none.clone()
        )
        .await
        .0,
        404
    );
    assert_eq!(
        env.api(
            "GET",
            "/v1/approvals?state=weird",
            "tok-alice",
            none.clone()
        )
        .await
        .0,
        400
    );
    assert_eq!(
        env.api("POST", &approve, "tok-alice", none.clone()).await.0,
        200
    );
    assert_eq!(
        env.api("POST", &approve, "tok-bob", none.clone()).await.0,
        409
    );
    agent.await.unwrap().unwrap();
    let audit = env.audit();
    assert_eq!(
        audit
            .iter()
            .filter(|r| r["kind"] == "approval_vote_refused")
            .count(),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_needs_distinct_approvers() {
    let env = Env::new("hold_quorum");
    let (c, _n) = env.client().await;
    let agent = tokio::spawn(async move { c.simple_query("CREATE TABLE audit_me(a int)").await });
    let id = env.pending(1).await[0]["id"].as_str().unwrap().to_owned();
    let approve = format!("/v1/approvals/{id}/approve");
    assert_eq!(
        env.api("POST", &approve, "tok-alice", serde_json::Value::Null)
            .await
            .1["state"],
        "pending"
    );
    assert_eq!(
        env.api("POST", &approve, "tok-alice", serde_json::Value::Null)
            .await
            .0,
        409
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !agent.is_finished(),
        "one approval of two must not release it"
    );
    assert_eq!(
        env.api("POST", &approve, "tok-bob", serde_json::Value::Null)
            .await
            .1["state"],
        "approved"
    );
    agent.await.unwrap().unwrap();
    assert_eq!(
        env.direct("SELECT count(*) FROM pg_tables WHERE tablename = 'audit_me'"),
        "1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_denies() {
    let env = Env::new("hold_timeout");
    let (c, _n) = env.client().await;
    let started = Instant::now();
    let e = c
        .simple_query("GRANT SELECT ON items TO PUBLIC")
        .await
        .expect_err("timed out");
    assert_eq!(code(&e), "42501");
    assert!(
        e.as_db_error().unwrap().message().contains("timed out"),
        "{e}"
    );
    assert!(started.elapsed() >= Duration::from_secs(1));
    let (_, v) = env
        .api(
            "GET",
            "/v1/approvals?state=timed_out",
            "tok-alice",
            serde_json::Value::Null,
        )
        .await;
    assert_eq!(v["approvals"].as_array().unwrap().len(), 1);
    c.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_behind_an_open_copy_from_stdin_ends_as_the_server_ends_it() {
    let env = Env::new("hold_copy");
    let mut w = Wire::login(&env.cfg.listen_addr(), AGENT, AGENT_PW, &env.db);
    // A COPY FROM STDIN the agent leaves open (tokio-postgres's shape:
    // Parse, Bind, Execute, Sync; the server ignores that Sync).
    let mut b = wire::parse("", "COPY items FROM STDIN");
    b.extend_from_slice(&wire::bind("", ""));
    b.extend_from_slice(&wire::execute(""));
    b.extend_from_slice(&wire::sync());
    w.send(&b);
    assert_eq!(wire::tags(&[w.recv(), w.recv(), w.recv()]), "1 2 G");
    // Then a statement that is held while keepalives would be due (500 ms):
    // part of the same batch, since the server ignored its Sync.
    let mut q = wire::parse("", "DELETE FROM items");
    q.extend_from_slice(&wire::bind("", ""));
    q.extend_from_slice(&wire::execute(""));
    q.extend_from_slice(&wire::sync());
    w.send(&q);
    // The statement is held at its Execute, but its Parse (of the neutral
    // text) reaches the server, which refuses a Parse inside COPY and ends
    // the session, as it does without sqlgate: its errors reach the agent
    // in order, none answered in their place by a keepalive's Sync (none is
    // sent into a COPY, which ignores Sync).
    let mut msgs = Vec::new();
    while let Some(m) = w.try_recv() {
        msgs.push(m);
    }
    let errors: Vec<(String, String)> = msgs
        .iter()
        .filter(|m| m.tag == 'E' && m.code() == "08P01")
        .map(|m| (m.code(), m.message()))
        .collect();
    assert_eq!(errors.len(), 2, "{msgs:?}\n{}", env.gate.log());
    assert!(
        errors[0]
            .1
            .contains("unexpected message type 0x50 during COPY"),
        "{errors:?}"
    );
    assert!(
        errors[1].1.contains("protocol synchronization was lost"),
        "{errors:?}"
    );
    assert!(!msgs.iter().any(|m| m.tag == 'Z'), "{msgs:?}");
    // Judged on the server: nothing was deleted.
    assert_eq!(env.direct("SELECT count(*) > 0 FROM items"), "t");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_disconnect_withdraw_the_request() {
    let env = Env::new("hold_cancel");
    let (c, _n) = env.client().await;
    let token = c.cancel_token();
    let agent = tokio::spawn(async move { (c.simple_query("DELETE FROM items").await, c) });
    env.pending(1).await;
    token.cancel_query(NoTls).await.unwrap();
    let (r, c) = agent.await.unwrap();
    assert_eq!(code(&r.expect_err("cancelled")), "57014");
    c.simple_query("SELECT 1").await.unwrap();
    let (_, v) = env
        .api(
            "GET",
            "/v1/approvals?state=withdrawn",
            "tok-alice",
            serde_json::Value::Null,
        )
        .await;
    assert_eq!(v["approvals"].as_array().unwrap().len(), 1);

    // Disconnect in the middle of a transaction: withdrawn, and rolled back.
    let mut w = Wire::login(&env.cfg.listen_addr(), AGENT, AGENT_PW, &env.db);
    w.query("BEGIN");
    w.query("INSERT INTO items VALUES (99, 'never')");
    let mut q = bytes::BytesMut::new();
    postgres_protocol::message::frontend::query("DELETE FROM items", &mut q).unwrap();
    w.send(&q);
    env.pending(1).await;
    drop(w);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, v) = env
            .api(
                "GET",
                "/v1/approvals?state=withdrawn",
                "tok-alice",
                serde_json::Value::Null,
            )
            .await;
        if v["approvals"].as_array().unwrap().len() == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "disconnect must withdraw the request"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(env.direct("SELECT count(*) FROM items WHERE id = 99"), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_protocol_shows_parameters_and_pipelined_holds_run_in_order() {
    let env = Env::new("hold_ext");
    let (c, _n) = env.client().await;
    let agent =
        tokio::spawn(async move { c.execute("UPDATE items SET name = $1", &[&"renamed"]).await });
    let req = env.pending(1).await.remove(0);
    assert_eq!(req["parameters"][0], "renamed", "{req}");
    // The rule shows literals: approvers see the statement as written.
    assert_eq!(
        req["statements"][0]["text"], "UPDATE items SET name = $1",
        "{req}"
    );
    let id = req["id"].as_str().unwrap();
    env.api(
        "POST",
        &format!("/v1/approvals/{id}/approve"),
        "tok-alice",
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(agent.await.unwrap().unwrap(), 3);

    // Two held statements in one pipeline: each waits its turn.
    let mut w = Wire::login(&env.cfg.listen_addr(), AGENT, AGENT_PW, &env.db);
    let mut batch = Vec::new();
    for m in [
        wire::parse("", "UPDATE items SET name = 'first'"),
        wire::bind("", ""),
        wire::execute(""),
        wire::parse("", "DELETE FROM items WHERE true"),
        wire::bind("", ""),
        wire::execute(""),
        wire::sync(),
    ] {
        batch.extend_from_slice(&m);
    }
    w.send(&batch);
    let reader = std::thread::spawn(move || w.until_ready());
    for expected_text in ["UPDATE items SET name = ?", "DELETE FROM items WHERE true"] {
        let r = env.pending(1).await.remove(0);
        assert_eq!(
            r["statements"][0]["command"],
            if expected_text.starts_with("UPDATE") {
                "UPDATE"
            } else {
                "DELETE"
            }
        );
        let id = r["id"].as_str().unwrap();
        let (s, _) = env
            .api(
                "POST",
                &format!("/v1/approvals/{id}/approve"),
                "tok-bob",
                serde_json::Value::Null,
            )
            .await;
        assert_eq!(s, 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let msgs = reader.join().unwrap();
    // One "held" notice per hold; the server's replies follow at Sync.
    let (notices, replies): (Vec<_>, Vec<_>) = msgs.into_iter().partition(|m| m.tag == 'N');
    assert_eq!(notices.len(), 2);
    assert_eq!(wire::tags(&replies), "1 2 C 1 2 C Z", "{replies:?}");
    assert_eq!(env.direct("SELECT count(*) FROM items"), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_holds_each_get_their_own_outcome() {
    let env = Env::new("hold_fifty");
    env.direct("INSERT INTO items SELECT g, 'bulk' FROM generate_series(100, 149) g");
    let mut agents = Vec::new();
    for i in 0..50 {
        let (c, _n) = env.client().await;
        agents.push(tokio::spawn(async move {
            let _keep = _n;
            // Each session holds a different statement (its own id in the text).
            let r = c
                .simple_query(&format!(
                    "UPDATE items SET name = 'done' WHERE id = {} OR true",
                    100 + i
                ))
                .await;
            (i, r.map(|_| ()).map_err(|e| code(&e)))
        }));
    }
    let pending = env.pending(50).await;
    assert_eq!(pending.len(), 50);
    // Decide in a scrambled order: approve even sessions, deny odd ones.
    let mut order: Vec<usize> = (0..50).collect();
    for i in 0..order.len() {
        let j = (i * 37 + 11) % order.len();
        order.swap(i, j);
    }
    let mut want = std::collections::HashMap::new();
    let mut decided = 0;
    for k in order {
        let r = &pending[k];
        let session = r["session"].as_str().unwrap().to_owned();
        let approve = k % 2 == 0;
        let verb = if approve { "approve" } else { "deny" };
        let id = r["id"].as_str().unwrap();
        let (s, _) = env
            .api(
                "POST",
                &format!("/v1/approvals/{id}/{verb}"),
                "tok-alice",
                serde_json::Value::Null,
            )
            .await;
        assert_eq!(s, 200);
        want.insert(session, approve);
        decided += 1;
        if approve {
            // Each approved UPDATE changes every row: two running at once
            // may deadlock on the server (40P01). One at a time: wait for
            // every session decided so far to end.
            let deadline = Instant::now() + Duration::from_secs(20);
            while agents.iter().filter(|a| a.is_finished()).count() < decided {
                assert!(Instant::now() < deadline, "approved, never ran");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    let mut ok = 0;
    for a in agents {
        let (_i, r) = a.await.unwrap();
        match r {
            Ok(()) => ok += 1,
            Err(c) => assert_eq!(c, "42501"),
        }
    }
    assert_eq!(ok, 25);
    // Each session's own statement record carries its own decision.
    let audit = env.audit();
    for rec in audit
        .iter()
        .filter(|r| r["kind"] == "statement" && r["command"] == "UPDATE")
    {
        let approved = want[rec["session"].as_str().unwrap()];
        assert_eq!(rec["outcome"] == "ok", approved, "{rec}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_lets_the_same_statement_run_again_for_a_while() {
    let env = Env::new("hold_grant");
    let (c, _n, id) = env.granted_update().await;
    // Same statement shape (other literal), same agent: runs without a hold.
    tokio::time::timeout(
        Duration::from_secs(5),
        c.simple_query("UPDATE public.items SET name = 'b'"),
    )
    .await
    .expect("granted: no hold")
    .unwrap();
    assert!(env
        .audit()
        .iter()
        .any(|r| r["kind"] == "approval_grant_used"));
    // Grants are listed to their groups' approvers, and revoked by any.
    let (_, g) = env
        .api("GET", "/v1/grants", "tok-bob", serde_json::Value::Null)
        .await;
    assert_eq!(g["grants"][0]["id"], id.as_str(), "{g}");
    assert_eq!(g["grants"][0]["granted_by"], "alice", "{g}");
    let out = env.cli(&["grants"], "tok-carol");
    assert!(out.status.success(), "{out:?}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(&id),
        "{out:?}"
    );
    let out = env.cli(&["revoke", &id], "tok-carol");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("404"),
        "{out:?}"
    );
    let out = env.cli(&["revoke", &id], "tok-bob");
    assert!(out.status.success(), "{out:?}");
    let (_, g) = env
        .api("GET", "/v1/grants", "tok-alice", serde_json::Value::Null)
        .await;
    assert_eq!(g["grants"].as_array().map(Vec::len), Some(0), "{g}");
    assert!(env
        .audit()
        .iter()
        .any(|r| r["kind"] == "approval_grant_revoked" && r["revoked_by"] == "bob"));
    // Held again.
    let c3 = c.clone();
    let again =
        tokio::spawn(async move { c3.simple_query("UPDATE public.items SET name = 'c'").await });
    env.pending(1).await;
    assert!(!again.is_finished());
    again.abort();
    let (s, _) = env
        .api(
            "POST",
            "/v1/approvals/x/approve",
            "tok-alice",
            serde_json::json!({"grant": "9999h"}),
        )
        .await;
    assert_eq!(s, 400);
}

/// Approvals review finding 4: a grant must not follow a name into another
/// schema. A grant covers schema-qualified names only: what `items` means
/// moves with `search_path`, `SET ROLE` (`"$user"`), temporary tables,
/// functions a view calls, renames.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_does_not_follow_a_name_into_another_schema() {
    let env = Env::new("hold_grant_path");
    env.direct(
        "CREATE SCHEMA prod; CREATE TABLE prod.items(id int, name text); INSERT INTO prod.items VALUES (1, 'keep')",
    );
    let approve_with_grant = |sql: &'static str| {
        let env = &env;
        async move {
            let (c, _n) = env.client().await;
            let agent = tokio::spawn(async move { c.simple_query(sql).await });
            let id = env.pending(1).await[0]["id"].as_str().unwrap().to_owned();
            let (s, v) = env
                .api(
                    "POST",
                    &format!("/v1/approvals/{id}/approve"),
                    "tok-alice",
                    serde_json::json!({"grant": "15m"}),
                )
                .await;
            assert_eq!(s, 200, "{v}");
            agent.await.unwrap().unwrap();
        }
    };
    // Unqualified: approved with a grant, yet held again next time, here
    // after the session moved its search_path to prod.
    approve_with_grant("UPDATE items SET name = 'a'").await;
    let (c, _n) = env.client().await;
    let c = std::sync::Arc::new(c);
    c.simple_query("SET search_path = prod, public")
        .await
        .unwrap();
    let c3 = c.clone();
    let agent =
        tokio::spawn(async move { c3.simple_query("UPDATE items SET name = 'gone'").await });
    let req = env.pending(1).await[0].clone();
    assert_eq!(env.direct("SELECT name FROM prod.items"), "keep");
    let id = req["id"].as_str().unwrap().to_owned();
    env.api(
        "POST",
        &format!("/v1/approvals/{id}/deny"),
        "tok-alice",
        serde_json::json!({}),
    )
    .await;
    assert!(agent.await.unwrap().is_err());
    assert_eq!(env.direct("SELECT name FROM prod.items"), "keep");
    // Schema-qualified: the grant covers it in a session whose names did
    // not move; not once they may have (an unqualified function name in
    // it would resolve elsewhere: review E, F15).
    approve_with_grant("UPDATE public.items SET name = 'a'").await;
    let c4 = c.clone();
    let moved =
        tokio::spawn(async move { c4.simple_query("UPDATE public.items SET name = 'b'").await });
    let req = env.pending(1).await[0].clone();
    let (s, _) = env
        .vote(req["id"].as_str().unwrap(), "deny", "tok-alice")
        .await;
    assert_eq!(s, 200);
    assert!(moved.await.unwrap().is_err());
    let (fresh, _f) = env.client().await;
    tokio::time::timeout(
        Duration::from_secs(5),
        fresh.simple_query("UPDATE public.items SET name = 'b'"),
    )
    .await
    .expect("granted: no hold")
    .unwrap();
    assert_eq!(env.direct("SELECT name FROM prod.items"), "keep");
}

/// Statements under different rules in one string each need their own
/// rule's approval, and literals are not shown for a string with several
/// statements (other rules may keep theirs hidden).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_rule_in_a_string_gets_its_own_approval() {
    let env = Env::new("hold_rules");
    let (c, _n) = env.client().await;
    let agent = tokio::spawn(async move {
        c.simple_query("UPDATE items SET name = 'secret-literal'; CREATE TABLE two_rules(a int)")
            .await
    });
    let first = env.pending(1).await.remove(0);
    assert_eq!(first["rule"], "destructive-held");
    assert_eq!(first["statements"].as_array().unwrap().len(), 1);
    assert!(!first.to_string().contains("secret-literal"), "{first}");
    let id = first["id"].as_str().unwrap();
    env.api(
        "POST",
        &format!("/v1/approvals/{id}/approve"),
        "tok-alice",
        serde_json::Value::Null,
    )
    .await;
    // Then the DDL's own rule: two approvers.
    let second = env.pending_for("ddl-two-approvers").await;
    let id = second["id"].as_str().unwrap();
    env.api(
        "POST",
        &format!("/v1/approvals/{id}/approve"),
        "tok-alice",
        serde_json::Value::Null,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!agent.is_finished(), "the second rule needs two approvers");
    env.api(
        "POST",
        &format!("/v1/approvals/{id}/approve"),
        "tok-bob",
        serde_json::Value::Null,
    )
    .await;
    agent.await.unwrap().unwrap();
    assert_eq!(
        env.direct("SELECT count(*) FROM items WHERE name = 'secret-literal'"),
        "3"
    );
}

/// Review finding 3, through client names: inside a transaction a portal
/// bound to a DELETE, then (in a batch failed by an earlier error, past a
/// savepoint rollback) a skipped re-Bind of that portal to an UPDATE. The
/// approver is shown the UPDATE and approves it: the DELETE must not run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_approved_statement_is_the_one_that_runs() {
    let env = Env::new("hold_swap");
    let mut w = Wire::login(&env.cfg.listen_addr(), AGENT, AGENT_PW, &env.db);
    assert_eq!(wire::tags(&w.query("BEGIN")), "C Z");
    let mut b = Vec::new();
    for m in [
        wire::parse("u", "UPDATE items SET name = 'approved'"),
        wire::parse("d", "DELETE FROM items"),
        wire::bind("p", "d"),
        wire::sync(),
    ] {
        b.extend_from_slice(&m);
    }
    w.send(&b);
    assert_eq!(wire::tags(&w.until_ready()), "1 1 2 Z");
    assert_eq!(wire::tags(&w.query("SAVEPOINT sp")), "C Z");
    let mut b = Vec::new();
    for m in [
        wire::parse("e", "SELECT * FROM no_such_table"),
        wire::bind("p", "u"),
        wire::sync(),
    ] {
        b.extend_from_slice(&m);
    }
    w.send(&b);
    assert_eq!(wire::tags(&w.until_ready()), "E Z");
    assert_eq!(wire::tags(&w.query("ROLLBACK TO SAVEPOINT sp")), "C Z");
    let mut b = Vec::new();
    for m in [wire::execute("p"), wire::sync()] {
        b.extend_from_slice(&m);
    }
    w.send(&b);
    let reader = std::thread::spawn(move || {
        let msgs = w.until_ready();
        let end = w.query("COMMIT");
        (msgs, end)
    });
    let req = env.pending(1).await.remove(0);
    assert_eq!(
        req["statements"][0]["text"], "UPDATE items SET name = 'approved'",
        "{req}"
    );
    let id = req["id"].as_str().unwrap();
    let (s, _) = env
        .api(
            "POST",
            &format!("/v1/approvals/{id}/approve"),
            "tok-alice",
            serde_json::Value::Null,
        )
        .await;
    assert_eq!(s, 200);
    let (msgs, _) = reader.join().unwrap();
    let replies: Vec<_> = msgs.into_iter().filter(|m| m.tag != 'N').collect();
    // The approved portal never existed upstream (its Bind was skipped).
    assert_eq!(wire::tags(&replies), "E Z", "{replies:?}");
    assert_eq!(replies[0].code(), "34000", "{replies:?}");
    assert_eq!(env.direct("SELECT count(*) FROM items"), "3");
}

/// Finding 12 of the review: a grant given for one function body covered
/// any body of the same shape. Code is shown whole and granted by its
/// exact text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_for_code_covers_only_that_exact_text() {
    let env = Env::new("hold_code");
    let (c, _n) = env.client().await;
    let c = std::sync::Arc::new(c);
    let body = |b: &str| {
        format!("CREATE OR REPLACE FUNCTION rt_helper() RETURNS text LANGUAGE plpgsql AS $$BEGIN {b} END$$")
    };
    let first = body("RETURN 'hello';");
    let c2 = c.clone();
    let sql = first.clone();
    let agent = tokio::spawn(async move { c2.simple_query(&sql).await });
    let req = env.pending(1).await[0].clone();
    // The rule hides literals, but code is shown as written.
    assert_eq!(req["statements"][0]["text"], first.as_str(), "{req}");
    let id = req["id"].as_str().unwrap().to_owned();
    for tok in ["tok-alice", "tok-bob"] {
        let (s, v) = env
            .api(
                "POST",
                &format!("/v1/approvals/{id}/approve"),
                tok,
                serde_json::json!({"grant": "15m"}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
    }
    agent.await.unwrap().unwrap();
    // Same shape, another body: held again, not granted.
    let c3 = c.clone();
    let evil = body("DROP TABLE items; RETURN 'x';");
    let agent = tokio::spawn(async move { c3.simple_query(&evil).await });
    let req = env.pending(1).await[0].clone();
    assert!(
        req["statements"][0]["text"]
            .as_str()
            .unwrap()
            .contains("DROP TABLE items"),
        "{req}"
    );
    let id = req["id"].as_str().unwrap().to_owned();
    let (s, _) = env
        .api(
            "POST",
            &format!("/v1/approvals/{id}/deny"),
            "tok-alice",
            serde_json::json!({}),
        )
        .await;
    assert_eq!(s, 200);
    assert!(agent.await.unwrap().is_err());
    assert_eq!(env.direct("SELECT rt_helper()"), "hello");
    assert_eq!(env.direct("SELECT count(*) FROM items"), "3");
    // The very same text again: the grant covers it.
    tokio::time::timeout(Duration::from_secs(5), c.simple_query(&first))
        .await
        .expect("granted: no hold")
        .unwrap();
}

/// Approvals review finding 5: DROP TABLE is both `destructive` and `ddl`;
/// every matching rule's approvers must agree, not just the first rule's.
/// Round I, F1: so is a column type change, which rewrites every row
/// (`USING 'x'` sets them all).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_matching_rule_must_approve() {
    for (prefix, sql, unchanged, done) in [
        (
            "hold_every_rule",
            "DROP TABLE items",
            "SELECT count(*) FROM items",
            "SELECT count(*) FROM pg_tables WHERE tablename = 'items'",
        ),
        (
            "hold_every_rule_type",
            "ALTER TABLE items ALTER COLUMN name TYPE varchar(1) USING 'x'",
            "SELECT count(*) FROM items WHERE name IS DISTINCT FROM 'x'",
            "SELECT count(*) FROM items WHERE name IS DISTINCT FROM 'x'",
        ),
    ] {
        let env = Env::new(prefix);
        let (c, _n) = env.client().await;
        let agent = tokio::spawn(async move { c.simple_query(sql).await });
        let approve = |id: String, token: &'static str| {
            let env = &env;
            async move {
                let (s, v) = env.vote(&id, "approve", token).await;
                assert_eq!(s, 200, "{v}");
            }
        };
        let first = env.pending(1).await.remove(0);
        assert_eq!(first["rule"], "destructive-held", "{sql}: {first}");
        approve(first["id"].as_str().unwrap().into(), "tok-alice").await;
        let second = env.pending_for("ddl-two-approvers").await;
        approve(second["id"].as_str().unwrap().into(), "tok-alice").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !agent.is_finished(),
            "{sql}: quorum 2 of the ddl rule is not met"
        );
        assert_eq!(env.direct(unchanged), "3", "{sql}");
        approve(second["id"].as_str().unwrap().into(), "tok-bob").await;
        agent.await.unwrap().unwrap();
        assert_eq!(env.direct(done), "0", "{sql}");
    }
}

/// Review B, F6b: an approval the HTTP anchor did not take (its collector
/// down) is not run: a cut of the log back past it would go unseen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_the_anchor_did_not_take_is_not_run() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/anchor", closed.local_addr().unwrap());
    drop(closed);
    let env = Env::with_config("hold_unanchored", "", |c| {
        c.audit(&format!("anchor = \"{url}\""))
    });
    let (c, _n) = env.client().await;
    let agent = tokio::spawn(async move { c.simple_query("UPDATE items SET name = 'x'").await });
    let req = env.pending(1).await.remove(0);
    let (s, v) = env
        .vote(req["id"].as_str().unwrap(), "approve", "tok-alice")
        .await;
    assert_eq!(s, 200, "{v}");
    // Each POST is tried 4 times (about 3.5 s), queued lines first.
    let r = tokio::time::timeout(Duration::from_secs(60), agent)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        r.as_ref().map_err(code).err().as_deref(),
        Some("58030"),
        "{r:?}"
    );
    assert_eq!(
        env.direct("SELECT count(*) FROM items WHERE name = 'x'"),
        "0"
    );
    let audit = env.audit();
    assert!(
        audit
            .iter()
            .any(|r| r["kind"] == "statement" && r["approval"]["outcome"] == "not_anchored"),
        "{audit:?}"
    );
    assert!(!audit.iter().any(|r| r["kind"] == "statement_sent"));
}

/// Review C, F12: a table named without its schema is shown with the
/// search_path that finds it; a database default changed for later sessions
/// (`ALTER DATABASE … SET search_path`) shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvers_see_the_search_path_unqualified_names_go_through() {
    let env = Env::new("hold_names");
    // Catalog loaded; a session opened before the change keeps the path
    // it started with.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (old, _o) = env.client().await;
    env.direct(&format!(
        "CREATE SCHEMA prod; CREATE TABLE prod.items(id int, name text); ALTER DATABASE {} SET search_path = prod, public",
        env.db
    ));
    tokio::time::sleep(Duration::from_millis(2500)).await; // catalog refresh
    let req = env
        .held_and_denied(old, "UPDATE items SET name = 'x'")
        .await;
    let note = req["names_note"].as_str().unwrap_or_default();
    assert!(!note.contains("prod"), "{req}");
    assert!(note.contains("public"), "{req}");
    let (c, _n) = env.client().await;
    let req = env.held_and_denied(c, "UPDATE items SET name = 'x'").await;
    let note = req["names_note"].as_str().unwrap_or_default();
    assert!(note.contains("items"), "{req}");
    assert!(note.contains("search_path = prod, public"), "{req}");
    // Review D, F12c: a statement of the same string that runs first may
    // move names: the session note, not a search_path, is shown.
    let (c, _n) = env.client().await;
    let req = env
        .held_and_denied(
            c,
            "SELECT set_config('search_path', 'public', false); UPDATE items SET name = 'x'",
        )
        .await;
    assert!(req["session_note"].is_string(), "{req}");
    assert!(req["names_note"].is_null(), "{req}");
    // Review E, F12e: a held statement before the other held one may move
    // names too, also when the whole string is one request.
    let (c, _n) = env.client().await;
    let req = env
        .held_and_denied(
            c,
            "SET search_path = prod, pg_catalog; GRANT SELECT ON items TO PUBLIC",
        )
        .await;
    assert_eq!(req["statements"].as_array().map(Vec::len), Some(2), "{req}");
    assert!(req["session_note"].is_string(), "{req}");
    assert!(req["names_note"].is_null(), "{req}");
    // Qualified: nothing to resolve.
    let (c, _n) = env.client().await;
    let req = env
        .held_and_denied(c, "UPDATE public.items SET name = 'x'")
        .await;
    assert!(req["names_note"].is_null(), "{req}");
}

/// Approvals review finding 7: an approver of another group can't read a
/// request (its statements and literals), in the list or by id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_groups_cannot_read_a_request() {
    let env = Env::new("hold_visible");
    let (c, _n) = env.client().await;
    let agent = tokio::spawn(async move { c.simple_query("UPDATE items SET name = 'x'").await });
    let req = env.pending(1).await.remove(0);
    let id = req["id"].as_str().unwrap();
    let (s, v) = env
        .api("GET", "/v1/approvals", "tok-carol", serde_json::Value::Null)
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["approvals"].as_array().map(Vec::len), Some(0), "{v}");
    let (s, _) = env
        .api(
            "GET",
            &format!("/v1/approvals/{id}"),
            "tok-carol",
            serde_json::Value::Null,
        )
        .await;
    assert_eq!(s, 404);
    let (s, _) = env
        .api(
            "GET",
            &format!("/v1/approvals/{id}"),
            "tok-bob",
            serde_json::Value::Null,
        )
        .await;
    assert_eq!(s, 200);
    env.vote(id, "deny", "tok-bob").await;
    assert!(agent.await.unwrap().is_err());
}

/// Approvals review finding 6: agent-controlled text reaches the terminal
/// escaped (no ESC, CSI or bidi override is printed raw).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_list_prints_no_raw_escapes() {
    let env = Env::new("hold_escapes");
    let (c, _n) = env.client().await;
    let agent = tokio::spawn(async move {
        c.simple_query("DROP TABLE IF EXISTS items, \"\u{1b}[33D\u{1b}[K\u{202e}x\u{9b}2K\"")
            .await
    });
    let req = env.pending(1).await.remove(0);
    for args in [
        &["list"][..],
        &["list", "--json"],
        &["show", req["id"].as_str().unwrap()],
    ] {
        let out = env.cli(args, "tok-alice");
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            !text.contains(['\u{1b}', '\u{9b}', '\u{202e}']),
            "{args:?}: {text:?}"
        );
        assert!(text.contains("1b"), "{args:?}: {text}");
    }
    env.vote(req["id"].as_str().unwrap(), "deny", "tok-bob")
        .await;
    assert!(agent.await.unwrap().is_err());
}

/// Approvals review finding 9–10: an over-long reason and a body that is
/// not UTF-8 are refused (400), not counted as a vote without reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_or_oversized_votes_are_refused() {
    let env = Env::new("hold_bodies");
    let (c, _n) = env.client().await;
    let agent = tokio::spawn(async move { c.simple_query("UPDATE items SET name = 'x'").await });
    let req = env.pending(1).await.remove(0);
    let url = format!(
        "{}/v1/approvals/{}/approve",
        env.admin(),
        req["id"].as_str().unwrap()
    );
    let r = env
        .http
        .post(&url)
        .bearer_auth("tok-bob")
        .body(vec![0xff, 0xfe, b'{', b'}'])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let (s, v) = env
        .api(
            "POST",
            &format!("/v1/approvals/{}/approve", req["id"].as_str().unwrap()),
            "tok-bob",
            serde_json::json!({ "reason": "x".repeat(5000) }),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(env.pending(1).await[0]["state"], "pending");
    env.vote(req["id"].as_str().unwrap(), "deny", "tok-bob")
        .await;
    assert!(agent.await.unwrap().is_err());
}

/// Approvals review finding 9: a held text is stored once (the decision
/// names it by SHA-256), and text past the cap is refused, not held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_text_is_stored_once_and_capped() {
    let env = Env::new("hold_once");
    let (c, _n) = env.client().await;
    let sql = "UPDATE items SET name = 'once'";
    let agent = tokio::spawn(async move { c.simple_query(sql).await });
    let req = env.pending(1).await.remove(0);
    let id = req["id"].as_str().unwrap().to_owned();
    let sha = req["sql_sha256"].as_str().unwrap().to_owned();
    assert_eq!(sha.len(), 64, "{req}");
    env.vote(&id, "approve", "tok-alice").await;
    agent.await.unwrap().unwrap();
    let audit = env.audit();
    let of = |kind: &str| {
        audit
            .iter()
            .find(|r| r["kind"] == kind && (r["request"] == id.as_str() || kind == "statement"))
            .cloned()
            .unwrap()
    };
    assert!(of("approval_request")["statements"].is_array());
    let decision = of("approval_decision");
    assert!(decision.get("statements").is_none(), "{decision}");
    assert_eq!(decision["sql_sha256"], sha.as_str());
    let stmt = audit
        .iter()
        .find(|r| r["kind"] == "statement" && r["command"] == "UPDATE")
        .unwrap();
    assert_eq!(stmt["sql_sha256"], sha.as_str());
    // Code is shown whole (each statement with its whole string), so thirty
    // 2 KB function bodies in one string are over the cap: refused.
    let (c, _n) = env.client().await;
    let body = "x".repeat(1_900);
    let big: String = (0..30)
        .map(|i| {
            format!("CREATE FUNCTION big{i}() RETURNS text LANGUAGE sql AS $$ SELECT '{body}' $$;")
        })
        .collect();
    let e = tokio::time::timeout(Duration::from_secs(10), c.simple_query(&big))
        .await
        .expect("answered at once, not held")
        .unwrap_err();
    assert_eq!(code(&e), "42501");
    let db = e.as_db_error().unwrap();
    assert!(db.detail().unwrap_or("").contains("bytes"), "{db:?}");
    assert_eq!(
        env.direct("SELECT count(*) FROM pg_proc WHERE proname ~ '^big[0-9]+$'"),
        "0"
    );
}

/// Approvals review 2, C2: an identity given as a parameter is shown to the
/// approver, and a grant for one value does not cover another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_parameters_are_shown_and_granted_by_value() {
    let env = Env::new("hold_identity_param");
    let (c, _n) = env.client().await;
    let c = std::sync::Arc::new(c);
    // A custom setting (row-level security reads them): `privilege`.
    let sql = "SELECT set_config('app.tenant', $1, false)";
    let c2 = c.clone();
    let agent = tokio::spawn(async move { c2.query(sql, &[&"first"]).await });
    let req = env.pending(1).await.remove(0);
    assert_eq!(req["parameters"][0], "first", "{req}");
    let id = req["id"].as_str().unwrap().to_owned();
    env.approve_with_grant(&id).await;
    agent.await.unwrap().unwrap();
    // Another value: held again.
    let c3 = c.clone();
    let agent = tokio::spawn(async move { c3.query(sql, &[&"second"]).await });
    let req = env.pending(1).await.remove(0);
    assert_eq!(req["parameters"][0], "second", "{req}");
    env.vote(req["id"].as_str().unwrap(), "deny", "tok-alice")
        .await;
    assert!(agent.await.unwrap().is_err());
}

/// Code a DBA wrote that runs when the server merely prepares or binds a
/// statement: `fold_me()` is IMMUTABLE, so planning (at Bind) folds it and
/// it deletes; a literal of `chk_c` has a domain attribute whose CHECK
/// deletes, and parse analysis (at Parse) converts literals.
const RUNS_EARLY: &str = "
    CREATE FUNCTION purge_v() RETURNS int LANGUAGE plpgsql AS $$ BEGIN DELETE FROM items; RETURN 1; END $$;
    CREATE FUNCTION fold_me() RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN RETURN purge_v(); END $$;
    CREATE FUNCTION purge_chk(int) RETURNS bool LANGUAGE sql AS $$ DELETE FROM items; SELECT true $$;
    CREATE DOMAIN chk_d AS int CHECK (purge_chk(VALUE));
    CREATE TYPE chk_c AS (a chk_d);";

/// Review 4, finding 5: a held statement was parsed and bound upstream
/// before its approval, and Parse and Bind can run code; a bound portal
/// can even be run by name (`cursor_to_xml`). Now the server gets only the
/// statement's neutral text (literals NULL) to describe, and an empty
/// placeholder portal, until the Execute is approved. Judged on the
/// server: nothing deleted until then; then the approved DELETE runs with
/// the client's result formats.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_statement_reaches_the_server_only_when_approved() {
    let env = Env::new("hold_unbound");
    env.direct(RUNS_EARLY);
    tokio::time::sleep(Duration::from_millis(2500)).await; // catalog refresh
    let mut w = Wire::login(&env.cfg.listen_addr(), AGENT, AGENT_PW, &env.db);
    assert_eq!(wire::tags(&w.query("BEGIN")), "C Z");
    let mut b = Vec::new();
    for m in [
        wire::parse("f", "SELECT fold_me()"),
        wire::bind("pf", "f"),
        wire::parse("c", "SELECT purge_v(), '(1)'::chk_c AS c"),
        wire::describe(b'S', "c"),
        wire::parse(
            "d",
            "DELETE FROM items WHERE 'x' <> 'keep' RETURNING id, name",
        ),
        wire::bind_formats("pd", "d", &[1]),
        wire::describe(b'P', "pd"),
        wire::sync(),
    ] {
        b.extend_from_slice(&m);
    }
    w.send(&b);
    let msgs = w.until_ready();
    assert_eq!(wire::tags(&msgs), "1 2 1 t T 1 2 T Z", "{msgs:?}");
    let c: Vec<_> = wire::fields(&msgs[4]).into_iter().map(|f| f.0).collect();
    assert_eq!(c, ["purge_v", "c"]);
    // The portal's description: its columns, in the Bind's (binary) format.
    assert_eq!(
        wire::fields(&msgs[7]),
        [("id".to_owned(), 23, 1), ("name".to_owned(), 25, 1)]
    );
    assert_eq!(env.direct("SELECT count(*) FROM items"), "3");
    // No portal upstream holds any of those statements.
    let cursors = w.query("SELECT count(*) FROM pg_cursors WHERE statement <> ''");
    let n: Vec<_> = cursors.iter().filter(|m| m.tag == 'D').collect();
    assert_eq!(n.len(), 1, "{cursors:?}");
    assert_eq!(&n[0].body[6..], b"0", "{cursors:?}");

    let mut b = Vec::new();
    for m in [wire::execute("pd"), wire::sync()] {
        b.extend_from_slice(&m);
    }
    w.send(&b);
    let reader = std::thread::spawn(move || {
        let msgs = w.until_ready();
        let end = w.query("COMMIT");
        (msgs, end)
    });
    let req = env.pending_for("destructive-held").await;
    assert_eq!(
        req["statements"][0]["text"],
        "DELETE FROM items WHERE 'x' <> 'keep' RETURNING id, name"
    );
    let id = req["id"].as_str().unwrap();
    assert_eq!(env.vote(id, "approve", "tok-alice").await.0, 200);
    let (msgs, end) = reader.join().unwrap();
    let replies: Vec<_> = msgs.into_iter().filter(|m| m.tag != 'N').collect();
    assert_eq!(wire::tags(&replies), "D D D C Z", "{replies:?}");
    // Binary int4 id: four bytes.
    assert_eq!(&replies[0].body[2..6], &4i32.to_be_bytes());
    assert_eq!(wire::tags(&end), "C Z");
    assert_eq!(env.direct("SELECT count(*) FROM items"), "0");
}

/// tokio-postgres prepares (Parse, Describe) before it binds: a held
/// statement is described as the server would describe it, and runs once
/// approved, with its parameters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_statement_prepared_by_a_driver_describes_and_runs() {
    let env = Env::new("hold_prepare");
    let (c, _n) = env.client().await;
    let stmt = c
        .prepare("DELETE FROM items WHERE $1::int > 0 AND 'x' <> 'y' RETURNING id, name")
        .await
        .unwrap();
    assert_eq!(stmt.params(), [tokio_postgres::types::Type::INT4]);
    let cols: Vec<_> = stmt
        .columns()
        .iter()
        .map(|c| (c.name().to_owned(), c.type_().clone()))
        .collect();
    assert_eq!(
        cols,
        [
            ("id".to_owned(), tokio_postgres::types::Type::INT4),
            ("name".to_owned(), tokio_postgres::types::Type::TEXT)
        ]
    );
    assert_eq!(env.direct("SELECT count(*) FROM items"), "3");
    let agent = tokio::spawn(async move {
        let rows = c.query(&stmt, &[&2i32]).await?;
        Ok::<_, tokio_postgres::Error>(
            rows.iter()
                .map(|r| (r.get::<_, i32>(0), r.get::<_, String>(1)))
                .collect::<Vec<_>>(),
        )
    });
    let req = env.pending_for("destructive-held").await;
    assert_eq!(req["parameters"][0], "\\x00000002", "{req}");
    let id = req["id"].as_str().unwrap();
    assert_eq!(env.vote(id, "approve", "tok-bob").await.0, 200);
    let mut rows = agent.await.unwrap().unwrap();
    rows.sort();
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(rows[1], (2, "item 2".to_owned()));
    assert_eq!(env.direct("SELECT count(*) FROM items"), "0");
}

const TALLY: &str =
    "CREATE OR REPLACE FUNCTION tally() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 1; END $$";
const TALLY_DELETES: &str = "CREATE OR REPLACE FUNCTION tally() RETURNS int LANGUAGE plpgsql AS $$ BEGIN DELETE FROM items; RETURN 1; END $$";

/// Waits for a catalog refresh inside an open block, which this server
/// ends after 2 s idle.
fn refresh_in_block(w: &mut Wire) {
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(450));
        assert_eq!(wire::tags(&w.query("SELECT 1")), "T D C Z");
    }
}

fn batch(msgs: &[bytes::BytesMut]) -> Vec<u8> {
    msgs.iter().flat_map(|m| m.iter().copied()).collect()
}

/// Review 4, finding 6: a cursor declared, or a portal bound, before a
/// function was redefined runs the new body. A FETCH after the change is
/// refused; a portal's Execute is decided again (here: held, denied).
/// Judged on the server after COMMIT: the rows are still there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursors_and_portals_opened_before_a_redefinition_are_decided_again() {
    let env = Env::new("redefined");
    env.direct(TALLY);
    tokio::time::sleep(Duration::from_millis(2500)).await; // catalog refresh
    let mut w = Wire::login(&env.cfg.listen_addr(), AGENT, AGENT_PW, &env.db);
    assert_eq!(wire::tags(&w.query("BEGIN")), "C Z");
    let declare = "DECLARE cur CURSOR FOR SELECT tally() FROM generate_series(1, 3)";
    assert_eq!(wire::tags(&w.query(declare)), "C Z");
    assert_eq!(wire::tags(&w.query("FETCH 1 FROM cur")), "T D C Z");
    env.direct(TALLY_DELETES);
    refresh_in_block(&mut w); // the new body is seen
    let msgs = w.query("FETCH ALL FROM cur");
    assert_eq!(wire::tags(&msgs), "E Z", "{msgs:?}");
    assert_eq!(msgs[0].code(), "0A000", "{msgs:?}");
    // COMMIT: what ran would stay.
    assert_eq!(wire::tags(&w.query("COMMIT")), "C Z");
    assert_eq!(env.direct("SELECT count(*) FROM items"), "3");
    // A fresh cursor is decided on the new body: held.
    env.direct(TALLY);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(wire::tags(&w.query("BEGIN")), "C Z");
    w.send(&batch(&[
        wire::parse("s", "SELECT tally() FROM generate_series(1, 3)"),
        wire::bind("p", "s"),
        wire::execute_max("p", 1),
        wire::sync(),
    ]));
    assert_eq!(wire::tags(&w.until_ready()), "1 2 D s Z");
    env.direct(TALLY_DELETES);
    refresh_in_block(&mut w);
    w.send(&batch(&[wire::execute("p"), wire::sync()]));
    let reader = std::thread::spawn(move || {
        let msgs = w.until_ready();
        let end = w.query("COMMIT");
        (msgs, end)
    });
    let req = env.pending_for("destructive-held").await;
    let id = req["id"].as_str().unwrap();
    assert_eq!(env.vote(id, "deny", "tok-alice").await.0, 200);
    let (msgs, end) = reader.join().unwrap();
    let replies: Vec<_> = msgs.into_iter().filter(|m| m.tag != 'N').collect();
    assert_eq!(wire::tags(&replies), "E Z", "{replies:?}");
    assert_eq!(wire::tags(&end), "C Z");
    assert_eq!(env.direct("SELECT count(*) FROM items"), "3");
}

/// Review 4, finding 6 (t_race): in one batch, an approved redefinition
/// and then the Bind and Execute of a statement prepared before it. The
/// Bind is decided once the server has answered the redefinition, which
/// sqlgate's catalog can't see before the batch commits: refused, and the
/// batch (with the redefinition) rolled back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bind_after_a_redefinition_in_its_batch_waits_for_it() {
    let env = Env::new("redef_batch");
    env.direct(TALLY);
    env.direct("ALTER FUNCTION tally() OWNER TO svc");
    tokio::time::sleep(Duration::from_millis(2500)).await; // catalog refresh
    let mut w = Wire::login(&env.cfg.listen_addr(), AGENT, AGENT_PW, &env.db);
    w.send(&batch(&[wire::parse("s0", "SELECT tally()"), wire::sync()]));
    assert_eq!(wire::tags(&w.until_ready()), "1 Z");
    w.send(&batch(&[
        wire::parse("", TALLY_DELETES),
        wire::bind("", ""),
        wire::execute(""),
        wire::bind("p0", "s0"),
        wire::execute("p0"),
        wire::sync(),
    ]));
    let reader = std::thread::spawn(move || w.until_ready());
    // The redefinition is held by each of its rules: approve them all.
    env.vote_until(30, || reader.is_finished(), |_| "approve")
        .await;
    let replies: Vec<_> = reader
        .join()
        .unwrap()
        .into_iter()
        .filter(|m| m.tag != 'N')
        .collect();
    assert_eq!(wire::tags(&replies), "1 2 C E Z", "{replies:?}");
    assert_eq!(replies[3].code(), "42501", "{replies:?}");
    assert_eq!(env.direct("SELECT count(*) FROM items"), "3");
    let body = env.direct("SELECT prosrc FROM pg_proc WHERE proname = 'tally'");
    assert!(!body.contains("DELETE"), "{body}");
}

/// Fourth review, findings 8 and 9. An event trigger's function runs on
/// the agent's DDL: the approver is shown what it does. A table created
/// with a user function in a default, in an open block, is not known to
/// the catalog until COMMIT: a write to it in that block is not taken for
/// a plain write (judged on the server after COMMIT).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_triggers_and_tables_made_in_a_block_are_placed() {
    let env = Env::new("evt_block");
    env.direct(
        "CREATE FUNCTION purge_evt() RETURNS event_trigger LANGUAGE plpgsql AS $$BEGIN DELETE FROM items; END$$;
         CREATE EVENT TRIGGER purge_on_index ON ddl_command_end WHEN TAG IN ('CREATE INDEX') EXECUTE FUNCTION purge_evt();
         CREATE FUNCTION purge_def() RETURNS int LANGUAGE plpgsql AS $$BEGIN DELETE FROM items; RETURN 1; END$$;
         GRANT CREATE ON SCHEMA public TO svc;",
    );
    tokio::time::sleep(Duration::from_millis(2500)).await; // catalog refresh
    let (c, _n) = env.client().await;
    let agent = tokio::spawn(async move {
        let r = c.batch_execute("CREATE INDEX ON items (name)").await;
        (c, r)
    });
    // Refused (the trigger function can't be read), or held showing what
    // it does; never a plain `ddl`.
    env.vote_until(
        20,
        || agent.is_finished(),
        |r| {
            let classes = r["statements"][0]["classes"].to_string();
            assert!(
                classes.contains("destructive") || classes.contains("unparsed"),
                "{r}"
            );
            "deny"
        },
    )
    .await;
    let (c, r) = agent.await.unwrap();
    assert!(r.is_err());
    assert_eq!(env.direct("SELECT count(*) FROM items"), "3");

    env.direct("DROP EVENT TRIGGER purge_on_index");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    c.batch_execute("BEGIN").await.unwrap();
    let agent = tokio::spawn(async move {
        let made = c
            .batch_execute("CREATE TABLE newt (id int, flag int DEFAULT purge_def())")
            .await;
        let ins = c.batch_execute("INSERT INTO newt (id) VALUES (1)").await;
        let end = c.batch_execute("COMMIT").await;
        (made, ins, end)
    });
    // Approve the CREATE TABLE (each of its rules); deny anything else.
    env.vote_until(
        30,
        || agent.is_finished(),
        |r| {
            let t = r.to_string();
            if t.contains("CREATE TABLE") || t.contains("create table") {
                "approve"
            } else {
                "deny"
            }
        },
    )
    .await;
    let (made, ins, _end) = agent.await.unwrap();
    assert!(made.is_ok(), "{made:?}");
    assert!(ins.is_err(), "the INSERT ran as a plain write");
    assert_eq!(env.direct("SELECT count(*) FROM items"), "3");
}

/// Review E: a grant asked for on a statement that calls a writing SQL
/// function, nothing changed while it waited: it runs (no false
/// `changed_while_held`), and the grant covers the same text again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writing_function_approved_with_a_grant_runs() {
    let env = Env::new("hold_bump");
    env.direct(
        "CREATE TABLE counter(n int); INSERT INTO counter VALUES (0);
         CREATE FUNCTION bump() RETURNS int LANGUAGE sql
           AS 'UPDATE public.counter SET n = n + 1 WHERE n >= 0 RETURNING n';
         ALTER TABLE counter OWNER TO svc;",
    );
    std::thread::sleep(Duration::from_millis(2500));
    let (c, _n) = env.client().await;
    let agent = tokio::spawn(async move {
        let r = c.simple_query("SELECT bump()").await.map(|_| ());
        (c, r)
    });
    // The body's UPDATE makes the call destructive.
    let req = env.pending_for("destructive-held").await;
    let id = req["id"].as_str().unwrap().to_owned();
    env.approve_with_grant(&id).await;
    let (c, r) = agent.await.unwrap();
    r.unwrap_or_else(|e| panic!("{e:?}\n{}", env.gate.log()));
    assert_eq!(env.direct("SELECT n FROM counter"), "1");
    let (s, v) = env
        .api("GET", "/v1/grants", "tok-alice", serde_json::Value::Null)
        .await;
    assert_eq!(
        (s, v["grants"].as_array().map(Vec::len)),
        (200, Some(1)),
        "{v}"
    );
    // In this session the call may have moved names (a function can set
    // search_path): another session gets the grant.
    drop(c);
    let (c, _n) = env.client().await;
    tokio::time::timeout(Duration::from_secs(5), c.simple_query("SELECT bump()"))
        .await
        .expect("granted: no hold")
        .unwrap();
    assert_eq!(env.direct("SELECT n FROM counter"), "2");
}

/// Review F, F19: an approval given after the catalog refreshed (nothing
/// changed) is not "changed while held": the snapshot of one function
/// name in several schemas listed them in a varying order, which counted
/// as a change at every refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_given_after_catalog_refreshes_runs() {
    let env = Env::new("hold_refresh");
    env.direct(
        "CREATE TABLE counter(n int); INSERT INTO counter VALUES (0);
         ALTER TABLE counter OWNER TO svc;
         CREATE SCHEMA s1; CREATE SCHEMA s2; CREATE SCHEMA s3;
         CREATE FUNCTION bump() RETURNS int LANGUAGE sql
           AS 'UPDATE public.counter SET n = n + 1 WHERE n >= 0 RETURNING n';
         CREATE FUNCTION s1.bump() RETURNS int LANGUAGE sql AS 'SELECT 1';
         CREATE FUNCTION s2.bump() RETURNS int LANGUAGE sql AS 'SELECT 2';
         CREATE FUNCTION s3.bump() RETURNS int LANGUAGE sql AS 'SELECT 3';",
    );
    std::thread::sleep(Duration::from_millis(2500));
    let (c, _n) = env.client().await;
    let agent = tokio::spawn(async move { c.simple_query("SELECT public.bump()").await });
    let req = env.pending_for("destructive-held").await;
    // Three refreshes of the catalog while it waits.
    tokio::time::sleep(Duration::from_millis(6500)).await;
    let (s, v) = env
        .vote(req["id"].as_str().unwrap(), "approve", "tok-alice")
        .await;
    assert_eq!(s, 200, "{v}");
    agent
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e:?}\n{}", env.gate.log()));
    assert_eq!(env.direct("SELECT n FROM counter"), "1");
}

/// Review F, F16: code a statement reaches (a view here; a trigger or a
/// default likewise) that sets search_path moves names as a call does: a
/// grant keyed on the session's names no longer applies after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_stops_once_reached_code_may_have_moved_names() {
    let env = Env::new("hold_grant_view_path");
    env.direct(
        "CREATE SCHEMA prod;
         CREATE VIEW v_cfg AS SELECT set_config('search_path', 'prod, public', false) AS p;
         ALTER VIEW v_cfg OWNER TO svc;",
    );
    std::thread::sleep(Duration::from_millis(2500));
    let (c, _n) = env.client().await;
    let agent =
        tokio::spawn(async move { c.simple_query("UPDATE public.items SET name = 'a'").await });
    let id = env.pending(1).await[0]["id"].as_str().unwrap().to_owned();
    env.approve_with_grant(&id).await;
    agent.await.unwrap().unwrap();
    let (c, _n) = env.client().await;
    let c = std::sync::Arc::new(c);
    c.simple_query("SELECT p FROM v_cfg").await.unwrap();
    let c2 = c.clone();
    let moved =
        tokio::spawn(async move { c2.simple_query("UPDATE public.items SET name = 'b'").await });
    let req = env.pending(1).await[0].clone();
    assert!(req["session_note"].is_string(), "{req}");
    let (s, _) = env
        .vote(req["id"].as_str().unwrap(), "deny", "tok-alice")
        .await;
    assert_eq!(s, 200);
    assert!(moved.await.unwrap().is_err());
    assert_eq!(
        env.direct("SELECT count(*) FROM items WHERE name = 'b'"),
        "0"
    );
}

/// Review G, G1: rights, ownership, `SECURITY DEFINER`, row-level security
/// or a trigger's enabled state changed while a statement waited: what
/// was approved is not what would run, so it is refused, for a statement
/// reading tables too (not only one calling user code).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rights_or_policies_changed_while_held_are_refused() {
    let env = Env::new("hold_rights");
    for change in [
        "GRANT SELECT ON items TO PUBLIC",
        "ALTER TABLE items ENABLE ROW LEVEL SECURITY",
        // Review 18, F2b: a default of built-ins only (no dependency).
        "ALTER TABLE items ALTER name SET DEFAULT pg_read_file('/etc/hostname')",
    ] {
        let (c, _n) = env.client().await;
        let agent =
            tokio::spawn(async move { c.simple_query("UPDATE items SET name = 'x'").await });
        let req = env.pending_for("destructive-held").await;
        env.direct(change);
        tokio::time::sleep(Duration::from_millis(2500)).await; // catalog refresh
        let (s, v) = env
            .vote(req["id"].as_str().unwrap(), "approve", "tok-alice")
            .await;
        assert_eq!(s, 200, "{v}");
        let e = agent.await.unwrap().unwrap_err();
        assert_eq!(code(&e), "0A000", "{change}: {e:?}");
        assert_eq!(
            env.direct("SELECT count(*) FROM items WHERE name = 'x'"),
            "0",
            "{change}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_network_can_still_revoke_a_grant() {
    // Review H, H2: an agent on the approvers' network sends ten bad
    // tokens; the network is throttled for the minute. Approving stays
    // refused (429), but a revocation is carried out if the token is an
    // approver's, answered 202 whatever the token, so it tells a guesser
    // nothing, and the standing grant ends. Round 23, F2: the agent sees
    // its grant end, so these are guesses too: ten a minute, and only
    // tokens of the strength the config asks for count.
    let env = Env::with_config("hold_revoke_throttled", "", |c| {
        c.extra(&format!(
            "[[approver]]\nname = \"dora\"\ntoken = \"{DORA}\"\ngroups = [\"dba\"]"
        ))
    });
    let (c, _n, id) = env.granted_update().await;
    let none = serde_json::Value::Null;
    for i in 0..10 {
        env.api("GET", "/v1/grants", &format!("tok-guess-{i}"), none.clone())
            .await;
    }
    let revoke = format!("/v1/grants/{id}/revoke");
    let (s, wrong) = env.api("POST", &revoke, "tok-guess-x", none.clone()).await;
    assert_eq!(s, 202, "{wrong}");
    // A short token, even an approver's, is not taken blindly.
    let (s, short) = env.api("POST", &revoke, "tok-bob", none.clone()).await;
    assert_eq!(s, 202, "{short}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!env
        .audit()
        .iter()
        .any(|r| r["kind"] == "approval_grant_revoked"));
    let (s, right) = env.api("POST", &revoke, DORA, none.clone()).await;
    assert_eq!(s, 202, "{right}");
    assert_eq!(
        wrong, right,
        "the answer must not tell a right token from a wrong one"
    );
    let (s, _) = env.api("GET", "/v1/grants", DORA, none.clone()).await;
    assert_eq!(s, 429);
    // By effect: the grant is gone, the statement is held again.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !env
        .audit()
        .iter()
        .any(|r| r["kind"] == "approval_grant_revoked" && r["revoked_by"] == "dora")
    {
        assert!(std::time::Instant::now() < deadline, "never revoked");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Ten blind calls a minute, then 429 again.
    for i in 3..10 {
        let (s, _) = env
            .api("POST", &revoke, &format!("tok-guess-b{i}"), none.clone())
            .await;
        assert_eq!(s, 202);
    }
    let (s, _) = env.api("POST", &revoke, DORA, none.clone()).await;
    assert_eq!(s, 429);
    let c3 = c.clone();
    let again =
        tokio::spawn(async move { c3.simple_query("UPDATE public.items SET name = 'c'").await });
    // (The approvers' list is throttled too: held means not done.)
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!again.is_finished(), "ran on the revoked grant");
    again.abort();
    assert_ne!(env.direct("SELECT min(name) FROM items"), "c");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_for_one_object_does_not_cover_another() {
    // Review 22, F4: `setval` is held (it rewinds a sequence); which
    // sequence is in its argument, so its grant covers that text only.
    let env = Env::new("hold_grant_object");
    env.direct(
        "CREATE SEQUENCE a_seq; CREATE SEQUENCE b_seq;
         ALTER SEQUENCE a_seq OWNER TO svc; ALTER SEQUENCE b_seq OWNER TO svc;
         SELECT setval('b_seq', 7)",
    );
    let (c, _n) = env.client().await;
    let c = std::sync::Arc::new(c);
    let c2 = c.clone();
    let agent = tokio::spawn(async move { c2.simple_query("SELECT setval('a_seq', 100)").await });
    let r = &env.pending(1).await[0];
    assert!(
        r["statements"][0]["text"]
            .as_str()
            .unwrap()
            .contains("a_seq"),
        "approvers see which sequence: {r}"
    );
    env.approve_with_grant(r["id"].as_str().unwrap()).await;
    agent.await.unwrap().unwrap();
    tokio::time::timeout(
        Duration::from_secs(5),
        c.simple_query("SELECT setval('a_seq', 100)"),
    )
    .await
    .expect("granted: no hold")
    .unwrap();
    let c3 = c.clone();
    let other = tokio::spawn(async move { c3.simple_query("SELECT setval('b_seq', 1)").await });
    env.pending(1).await;
    other.abort();
    assert_eq!(env.direct("SELECT last_value FROM b_seq"), "7");
}

/// Review I, F2: half-sent requests can't hold the admin port. One network
/// (all of loopback: round J, J6) gets 32 open connections; one more, from
/// another loopback address, is closed at once; an idle one is closed after
/// 15 s; once they go, approvers are answered again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_requests_cannot_hold_the_admin_port() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let env = Env::new("admin_slowloris");
    let addr: std::net::SocketAddr = env.cfg.admin_addr().parse().unwrap();
    let mut held = Vec::new();
    for _ in 0..32 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /v1/approvals HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        held.push(s);
    }
    let other = tokio::net::TcpSocket::new_v4().unwrap();
    other.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut extra = other.connect(addr).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), extra.read(&mut buf))
        .await
        .expect("the connection over the cap is closed at once");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    // The first of them, silent since: closed by the idle limit.
    let t = std::time::Instant::now();
    let n = tokio::time::timeout(Duration::from_secs(30), held[0].read(&mut buf))
        .await
        .expect("an idle connection is closed");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    assert!(t.elapsed() >= Duration::from_secs(5), "{:?}", t.elapsed());
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (s, v) = env
        .api("GET", "/v1/approvals", "tok-alice", serde_json::Value::Null)
        .await;
    assert_eq!(s, 200, "{v}");
}
