//! The PostgreSQL proxy end to end: a real PostgreSQL, the real sqlgate
//! binary, real clients (tokio-postgres, psql, and a raw wire client for
//! message shapes drivers don't produce).

mod support;

use std::time::Duration;
use support::wire::{self, Wire};
use support::{PgServer, Sqlgate, SqlgateConfig};
use tokio_postgres::{NoTls, SimpleQueryMessage};

const AGENT: &str = "bot";
const AGENT_PW: &str = "bot-secret";

/// A database of its own with a small table owned by the service role, and a
/// sqlgate in front of it with the shipped rules.
struct Env {
    pg: &'static PgServer,
    db: String,
    cfg: SqlgateConfig,
    gate: Sqlgate,
}

impl Env {
    fn new(prefix: &str) -> Env {
        Env::with(prefix, |c| c)
    }

    fn with(prefix: &str, f: impl FnOnce(SqlgateConfig) -> SqlgateConfig) -> Env {
        let pg = PgServer::shared();
        let db = pg.unique_database(prefix);
        pg.psql(
            &db,
            "CREATE TABLE items(id int PRIMARY KEY, name text);
             INSERT INTO items VALUES (1, 'one'), (2, 'two'), (3, 'three');
             ALTER TABLE items OWNER TO svc;",
        );
        let cfg = f(SqlgateConfig::for_pg(pg, &db).agent(AGENT, AGENT_PW, &["agents"]));
        let gate = Sqlgate::start_with(&cfg);
        Env { pg, db, cfg, gate }
    }

    fn conninfo(&self, user: &str, password: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={user} password={password} dbname={} sslmode=disable",
            self.cfg.listen_port, self.db
        )
    }

    async fn client(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.conninfo(AGENT, AGENT_PW), NoTls)
            .await
            .unwrap_or_else(|e| panic!("connect through sqlgate: {e}\n{}", self.gate.log()));
        tokio::spawn(conn);
        client
    }

    fn wire(&self) -> Wire {
        Wire::login(&self.cfg.listen_addr(), AGENT, AGENT_PW, &self.db)
    }

    /// Runs SQL directly on the database (as superuser), bypassing sqlgate.
    fn direct(&self, sql: &str) -> String {
        self.pg.psql(&self.db, sql)
    }

    fn audit(&self) -> Vec<serde_json::Value> {
        // The writer flushes after each batch; give it a moment.
        std::thread::sleep(Duration::from_millis(200));
        let p = self.gate.dir().join("audit/sqlgate.jsonl");
        std::fs::read_to_string(&p)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("audit lines are JSON"))
            .collect()
    }
}

fn sqlstate(e: &tokio_postgres::Error) -> String {
    e.code()
        .map(|c| c.code().to_owned())
        .unwrap_or_else(|| format!("no code: {e}"))
}

fn db_message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.message().to_owned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_good_and_bad() {
    let env = Env::new("login");
    let c = env.client().await;
    let rows = c.query("SELECT 1 + 1", &[]).await.unwrap();
    assert_eq!(rows[0].get::<_, i32>(0), 2);

    for (user, pw) in [(AGENT, "wrong"), ("nobody", "x")] {
        let e = tokio_postgres::connect(&env.conninfo(user, pw), NoTls)
            .await
            .err()
            .expect("must fail");
        assert_eq!(sqlstate(&e), "28P01", "{e}");
    }
    // The same through psql.
    let out = std::process::Command::new("psql")
        .args(["-X", "-c", "select 1", &env.conninfo(AGENT, "nope")])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("password authentication failed"));

    let audit = env.audit();
    let failures: Vec<_> = audit
        .iter()
        .filter(|r| r["kind"] == "login_failure")
        .collect();
    assert!(failures.len() >= 3, "{audit:?}");
    assert!(failures.iter().any(|r| r["agent"] == "nobody"));
    assert!(audit
        .iter()
        .any(|r| r["kind"] == "session_start" && r["agent"] == AGENT));
    // Upstream credentials never appear in what the agent can see or in the audit.
    let text = serde_json::to_string(&audit).unwrap();
    assert!(!text.contains("svc-secret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_writes_simple_extended_binary() {
    let env = Env::new("rw");
    let c = env.client().await;
    // Simple protocol.
    let msgs = c
        .simple_query("SELECT name FROM items WHERE id = 2")
        .await
        .unwrap();
    assert!(msgs
        .iter()
        .any(|m| matches!(m, SimpleQueryMessage::Row(r) if r.get(0) == Some("two"))));
    // Extended protocol with parameters; tokio-postgres reads results in binary.
    c.execute("INSERT INTO items VALUES ($1, $2)", &[&10i32, &"ten"])
        .await
        .unwrap();
    let row = c
        .query_one("SELECT id, name FROM items WHERE id = $1", &[&10i32])
        .await
        .unwrap();
    assert_eq!((row.get::<_, i32>(0), row.get::<_, &str>(1)), (10, "ten"));
    // A named prepared statement, reused.
    let st = c
        .prepare("UPDATE items SET name = $1 WHERE id = $2")
        .await
        .unwrap();
    for i in 1..=3 {
        assert_eq!(c.execute(&st, &[&format!("n{i}"), &i]).await.unwrap(), 1);
    }
    // Pipelined: several queries in flight at once on one connection.
    let blob = vec![0u8, 1, 2, 255];
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&blob];
    let (a, b, d) = tokio::join!(
        c.query_one("SELECT count(*) FROM items", &[]),
        c.query_one("SELECT name FROM items WHERE id = 1", &[]),
        c.query_one("SELECT $1::bytea", &params),
    );
    assert_eq!(a.unwrap().get::<_, i64>(0), 4);
    assert_eq!(b.unwrap().get::<_, &str>(0), "n1");
    assert_eq!(d.unwrap().get::<_, Vec<u8>>(0), vec![0u8, 1, 2, 255]);
    assert_eq!(env.direct("SELECT name FROM items WHERE id = 3"), "n3");

    let audit = env.audit();
    let stmts: Vec<_> = audit.iter().filter(|r| r["kind"] == "statement").collect();
    assert!(stmts
        .iter()
        .any(|r| r["command"] == "UPDATE" && r["outcome"] == "ok" && r["rows"] == 1));
    for r in &stmts {
        let fp = r["fingerprint"].as_str().unwrap();
        assert!(
            !fp.contains("two") && !fp.contains("ten"),
            "literal leaked: {fp}"
        );
        assert_eq!(r["sql_sha256"].as_str().unwrap().len(), 64);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_rules_hold_or_deny_each_class() {
    let env = Env::new("classes");
    let c = env.client().await;
    // (statement, expected rule, requires approval?)
    let cases = [
        ("CREATE TABLE t2(a int)", "approval"),
        ("ALTER TABLE items ADD COLUMN x int", "approval"),
        ("GRANT SELECT ON items TO PUBLIC", "approval"),
        ("CREATE ROLE intruder", "approval"),
        ("COPY items TO STDOUT", "approval"),
        ("DELETE FROM items", "approval"),
        ("UPDATE items SET name = 'x' WHERE 1 = 1", "approval"),
        ("TRUNCATE items", "approval"),
        ("DROP TABLE items", "approval"),
        ("VACUUM (VERBOSE) items", "approval"),
        // Unread, it could be anything (server access too): denied.
        ("SELEKT * FROM items", "denied"),
        ("SELECT pg_read_file('/etc/passwd')", "denied"),
        ("COPY items TO PROGRAM 'cat > /tmp/x'", "denied"),
        ("SELECT * FROM pg_ls_dir('.')", "denied"),
        // DO runs arbitrary code, server access included: never through.
        ("DO $$ BEGIN PERFORM 1; END $$", "denied"),
    ];
    for (sql, kind) in cases {
        let e = c
            .simple_query(sql)
            .await
            .err()
            .unwrap_or_else(|| panic!("`{sql}` must not run"));
        assert_eq!(sqlstate(&e), "42501", "`{sql}`: {e}");
        let m = db_message(&e);
        match kind {
            "approval" => assert!(m.contains("requires approval"), "`{sql}`: {m}"),
            _ => assert!(m.contains("denied by rule"), "`{sql}`: {m}"),
        }
        // The extended protocol is held to the same rules: a statement
        // needing approval is prepared upstream as its neutral text and
        // refused at Execute; text sqlgate's grammar cannot read is denied
        // at Parse, never sent (the server's, an older PostgreSQL's, might
        // read it).
        let e = c
            .query(sql, &[])
            .await
            .err()
            .unwrap_or_else(|| panic!("`{sql}` must not run (extended)"));
        assert_eq!(sqlstate(&e), "42501", "`{sql}` extended: {e}");
    }
    // Nothing of that reached the database.
    assert_eq!(env.direct("SELECT count(*) FROM items"), "3");
    assert_eq!(
        env.direct("SELECT count(*) FROM pg_roles WHERE rolname = 'intruder'"),
        "0"
    );
    // Allowed classes: read, write, session, transaction; look-alikes pass.
    for sql in [
        "SELECT 'DROP TABLE items'",
        "SELECT $$DELETE FROM items$$",
        "SET statement_timeout = '5s'",
        "BEGIN",
        "UPDATE items SET name = 'uno' WHERE id = 1",
        "COMMIT",
        "SHOW statement_timeout",
    ] {
        c.simple_query(sql)
            .await
            .unwrap_or_else(|e| panic!("`{sql}`: {e}"));
    }
    assert_eq!(env.direct("SELECT name FROM items WHERE id = 1"), "uno");
    let audit = env.audit();
    let denied = audit.iter().filter(|r| r["outcome"] == "denied").count();
    // Every refusal is recorded, the extended `SELEKT` refused at Parse
    // included.
    assert_eq!(denied, cases.len() * 2, "every refusal is recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denial_inside_a_transaction_fails_it_on_both_sides() {
    let env = Env::new("txn");
    let c = env.client().await;
    c.simple_query("BEGIN").await.unwrap();
    c.simple_query("INSERT INTO items VALUES (20, 'twenty')")
        .await
        .unwrap();
    let e = c.simple_query("DELETE FROM items").await.err().unwrap();
    assert_eq!(sqlstate(&e), "42501");
    // The transaction is failed: the database says so too.
    let e = c.simple_query("SELECT 1").await.err().unwrap();
    assert_eq!(sqlstate(&e), "25P02", "{e}");
    c.simple_query("ROLLBACK").await.unwrap();
    assert_eq!(env.direct("SELECT count(*) FROM items WHERE id = 20"), "0");
    assert_eq!(env.direct("SELECT count(*) FROM items"), "3");
    // And the session goes on normally.
    assert_eq!(
        c.query_one("SELECT 7", &[]).await.unwrap().get::<_, i32>(0),
        7
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_statement_string_stops_before_any_of_it_runs() {
    let env = Env::new("multi");
    let mut w = env.wire();
    let msgs = w.query(
        "INSERT INTO items VALUES (30, 'a'); DELETE FROM items; INSERT INTO items VALUES (31, 'b')",
    );
    assert_eq!(wire::tags(&msgs), "E Z", "{msgs:?}");
    assert_eq!(msgs[0].code(), "42501");
    assert_eq!(msgs[1].body, b"I");
    assert_eq!(env.direct("SELECT count(*) FROM items"), "3");
    // An allowed multi-statement string runs whole.
    let msgs = w.query("INSERT INTO items VALUES (30, 'a'); SELECT count(*) FROM items");
    assert_eq!(wire::tags(&msgs), "C T D C Z", "{msgs:?}");
    let audit = env.audit();
    assert!(
        audit.iter().any(|r| r["outcome"] == "not_executed"),
        "the other statements are recorded as not run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_denial_skips_the_rest_until_sync() {
    let env = Env::new("pipe");
    let mut w = env.wire();
    let mut batch = Vec::new();
    for m in [
        // Batch 1: a denied statement is refused at its Parse.
        wire::parse("", "INSERT INTO items VALUES (40, 'x')"),
        wire::bind("", ""),
        wire::execute(""),
        wire::parse("", "SELECT pg_read_file('/etc/passwd')"),
        wire::bind("", ""),
        wire::execute(""),
        wire::parse("", "INSERT INTO items VALUES (41, 'y')"),
        wire::bind("", ""),
        wire::execute(""),
        wire::sync(),
        // Batch 2: a statement needing approval (no approver configured) is
        // parsed and bound, and refused at its Execute.
        wire::parse("", "INSERT INTO items VALUES (42, 'z')"),
        wire::bind("", ""),
        wire::execute(""),
        wire::parse("", "DELETE FROM items"),
        wire::bind("", ""),
        wire::execute(""),
        wire::parse("", "INSERT INTO items VALUES (43, 'w')"),
        wire::bind("", ""),
        wire::execute(""),
        wire::sync(),
        // Batch 3 after the Syncs runs normally.
        wire::parse("", "SELECT count(*) FROM items"),
        wire::bind("", ""),
        wire::execute(""),
        wire::sync(),
    ] {
        batch.extend_from_slice(&m);
    }
    w.send(&batch);
    let first = w.until_ready();
    assert_eq!(wire::tags(&first), "1 2 C E Z", "{first:?}");
    assert_eq!(first[3].code(), "42501");
    assert!(
        first[3].message().contains("denied by rule"),
        "{}",
        first[3].message()
    );
    let second = w.until_ready();
    assert_eq!(wire::tags(&second), "1 2 C 1 2 E Z", "{second:?}");
    assert_eq!(second[5].code(), "42501");
    assert!(
        second[5].message().contains("requires approval"),
        "{}",
        second[5].message()
    );
    let third = w.until_ready();
    assert_eq!(wire::tags(&third), "1 2 D C Z", "{third:?}");
    // The implicit transactions of both failed batches were rolled back as a
    // whole, as PostgreSQL does when any statement in a batch fails.
    assert_eq!(env.direct("SELECT count(*) FROM items"), "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unvettable_messages_get_errors_not_drops() {
    let env = Env::with("unvet", |c| c.extra("[limits]\nmax_message_bytes = 65536"));
    let mut w = env.wire();
    // FunctionCall (fast path) for oid 2619 (pg_read_file in some versions): never forwarded.
    let mut body = Vec::new();
    body.extend_from_slice(&2619i32.to_be_bytes());
    body.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    w.send(&wire::raw(b'F', &body));
    let msgs = w.until_ready();
    assert_eq!(wire::tags(&msgs), "E Z");
    assert_eq!(msgs[0].code(), "0A000");
    // An unknown message type.
    w.send(&wire::raw(b'y', b"junk"));
    let msgs = w.until_ready();
    assert_eq!(wire::tags(&msgs), "E Z");
    assert_eq!(msgs[0].code(), "08P01");
    // SQL that is not UTF-8.
    w.send(&wire::raw(b'Q', b"SELECT '\xff'\0"));
    let msgs = w.until_ready();
    assert_eq!(msgs[0].code(), "22021");
    // Still usable.
    let msgs = w.query("SELECT 1");
    assert_eq!(wire::tags(&msgs), "T D C Z");
    // A message above the limit ends the session with a clear error.
    let big = format!("SELECT '{}'", "a".repeat(100_000));
    let mut q = big.into_bytes();
    q.push(0);
    w.send(&wire::raw(b'Q', &q));
    let m = w.recv();
    assert_eq!(
        (m.tag, m.code().as_str()),
        ('E', "54000"),
        "{}",
        m.message()
    );
    assert!(
        w.try_recv().is_none(),
        "connection closed after the limit error"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_end_counts_every_record_and_the_deny_metric_every_refusal() {
    let env = Env::new("counts");
    let metric = || async {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(env.cfg.admin_addr()).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: sqlgate\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text.lines()
            .find(|l| l.starts_with("sqlgate_statements_total{action=\"deny\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let before = metric().await;
    let mut w = env.wire();
    // Two protocol-level refusals and one policy denial.
    w.send(&wire::raw(b'y', b"junk"));
    w.until_ready();
    w.send(&wire::raw(b'Q', b"SELECT '\xff'\0"));
    w.until_ready();
    assert_eq!(
        w.query("SELECT pg_read_file('/etc/passwd')")[0].code(),
        "42501"
    );
    // A statement still running when the agent goes.
    w.send(&wire::raw(b'Q', b"SELECT pg_sleep(30)\0"));
    std::thread::sleep(Duration::from_millis(300));
    drop(w);
    assert_eq!(metric().await - before, 3, "{}", env.gate.log());
    let mut audit = Vec::new();
    for _ in 0..50 {
        audit = env.audit();
        if audit.iter().any(|r| r["kind"] == "session_end") {
            break;
        }
    }
    let end = audit
        .iter()
        .find(|r| r["kind"] == "session_end")
        .expect("session_end");
    let records = audit
        .iter()
        .filter(|r| r["kind"] == "statement" && r["session"] == end["session"])
        .count();
    assert_eq!(records, 4, "{audit:?}");
    assert_eq!(end["statements"], 4, "{end}");
}

/// A FunctionCall of `oid` with binary arguments and a binary result.
fn function_call(oid: i32, args: &[&[u8]]) -> Vec<u8> {
    let mut body = oid.to_be_bytes().to_vec();
    body.extend_from_slice(&1i16.to_be_bytes());
    body.extend_from_slice(&1i16.to_be_bytes());
    body.extend_from_slice(&(args.len() as i16).to_be_bytes());
    for a in args {
        body.extend_from_slice(&(a.len() as i32).to_be_bytes());
        body.extend_from_slice(a);
    }
    body.extend_from_slice(&1i16.to_be_bytes());
    wire::raw(b'F', &body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_path_large_object_calls_are_decided_as_sql() {
    const LO_CREATE: i32 = 715;
    const LO_IMPORT: i32 = 764;
    const LO_OPEN: i32 = 952;
    const LOREAD: i32 = 954;
    const LOWRITE: i32 = 955;
    const LO_UNLINK: i32 = 964;
    let env = Env::new("fastpath");
    let mut w = env.wire();
    // lo_create: a write, allowed by the shipped rules; answered by the server.
    w.send(&function_call(LO_CREATE, &[&4243i32.to_be_bytes()]));
    let msgs = w.until_ready();
    assert_eq!(wire::tags(&msgs), "V Z", "{msgs:?}");
    assert_eq!(
        msgs[0].body,
        [&4i32.to_be_bytes()[..], &4243u32.to_be_bytes()].concat()
    );
    env.direct("SELECT lo_put(4243, 0, 'hello')");
    // Opening and reading: reads.
    w.query("BEGIN");
    w.send(&function_call(
        LO_OPEN,
        &[&4243i32.to_be_bytes(), &0x60000i32.to_be_bytes()],
    ));
    let msgs = w.until_ready();
    assert_eq!(wire::tags(&msgs), "V Z", "{msgs:?}");
    let fd = msgs[0].body[4..8].to_vec();
    w.send(&function_call(LOREAD, &[&fd, &5i32.to_be_bytes()]));
    let msgs = w.until_ready();
    assert_eq!(wire::tags(&msgs), "V Z", "{msgs:?}");
    assert_eq!(&msgs[0].body[4..], b"hello");
    // lowrite overwrites the one object its descriptor names: as SQL it is
    // destructive (one SELECT can overwrite them all), one fast-path call
    // is a write, as `UPDATE … WHERE id = 1` is.
    w.send(&function_call(LOWRITE, &[&fd, b"HELLO"]));
    let msgs = w.until_ready();
    assert_eq!(wire::tags(&msgs), "V Z", "{msgs:?}");
    w.query("COMMIT");
    // lo_unlink of one object: a write too; a second object goes.
    w.send(&function_call(LO_CREATE, &[&4244i32.to_be_bytes()]));
    assert_eq!(wire::tags(&w.until_ready()), "V Z");
    w.send(&function_call(LO_UNLINK, &[&4244i32.to_be_bytes()]));
    assert_eq!(wire::tags(&w.until_ready()), "V Z");
    // The server's lo_import reads a server file: server_access, denied.
    w.send(&function_call(LO_IMPORT, &[b"/etc/hostname"]));
    let msgs = w.until_ready();
    assert_eq!(msgs[0].code(), "42501", "{msgs:?}");
    assert!(
        msgs[0].message().contains("denied"),
        "{}",
        msgs[0].message()
    );
    // Judged on the server: one object, written after what was read.
    assert_eq!(
        env.direct("SELECT count(*), string_agg(convert_from(lo_get(oid), 'UTF8'), ',') FROM pg_largeobject_metadata"),
        "1|helloHELLO"
    );
    // Every call is recorded like a statement.
    let fingerprints: Vec<String> = env
        .audit()
        .iter()
        .filter(|r| r["kind"] == "statement")
        .map(|r| {
            format!(
                "{} {}",
                r["fingerprint"].as_str().unwrap_or(""),
                r["outcome"]
            )
        })
        .collect();
    for f in [
        "lo_create",
        "lo_open",
        "loread",
        "lowrite",
        "lo_unlink",
        "lo_import",
    ] {
        assert!(
            fingerprints
                .iter()
                .any(|x| x.contains(&format!("pg_catalog.{f}("))),
            "{f} in {fingerprints:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_path_calls_the_rules_would_hold_are_refused_saying_how_to_ask() {
    let dir = support::TestDir::new("fastpath-rules");
    let rules = dir.join("rules.toml");
    std::fs::write(
        &rules,
        "[[rule]]\nid = \"reads\"\naction = \"allow\"\nclasses = [\"read\", \"transaction\", \"session\"]\n\n\
         [[rule]]\nid = \"writes-held\"\naction = \"require_approval\"\nclasses = [\"write\"]\napprovers = [\"dba\"]\n",
    )
    .unwrap();
    let env = Env::with("fastpath_held", |mut c| {
        c.rules = vec![rules.clone()];
        c
    });
    let mut w = env.wire();
    w.send(&function_call(715, &[&4245i32.to_be_bytes()]));
    let msgs = w.until_ready();
    assert_eq!(wire::tags(&msgs), "E Z", "{msgs:?}");
    assert_eq!(msgs[0].code(), "42501");
    assert!(
        msgs[0]
            .message()
            .contains("SELECT pg_catalog.lo_create($1)")
            && msgs[0].message().contains("writes-held"),
        "{}",
        msgs[0].message()
    );
    assert_eq!(
        env.direct("SELECT count(*) FROM pg_largeobject_metadata"),
        "0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_and_out() {
    let dir = support::TestDir::new("rules");
    let rules = dir.join("allow-export.toml");
    std::fs::write(
        &rules,
        r#"
[[rule]]
id = "allow-most"
action = "allow"
classes = ["read", "write", "session", "transaction", "export"]
"#,
    )
    .unwrap();
    let env = Env::with("copy", |mut c| {
        c.rules = vec![rules.clone()];
        c
    });
    let c = env.client().await;
    use futures_util::SinkExt;
    let sink = c.copy_in("COPY items FROM STDIN").await.unwrap();
    futures_util::pin_mut!(sink);
    sink.send(bytes::Bytes::from_static(b"100\thundred\n101\tone-o-one\n"))
        .await
        .unwrap();
    assert_eq!(sink.finish().await.unwrap(), 2);
    let out = c
        .copy_out("COPY (SELECT id, name FROM items ORDER BY id) TO STDOUT")
        .await
        .unwrap();
    use futures_util::TryStreamExt;
    let chunks: Vec<bytes::Bytes> = out.try_collect().await.unwrap();
    let text: String = chunks
        .iter()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect();
    assert!(text.contains("101\tone-o-one"), "{text}");
    // psql's \copy uses COPY FROM STDIN too.
    let status = std::process::Command::new("psql")
        .args([
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            "COPY items FROM STDIN",
            &env.conninfo(AGENT, AGENT_PW),
        ])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut ch| {
            use std::io::Write;
            ch.stdin.take().unwrap().write_all(b"200\tvia psql\n")?;
            ch.wait()
        })
        .unwrap();
    assert!(status.success());
    assert_eq!(
        env.direct("SELECT name FROM items WHERE id = 200"),
        "via psql"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_reaches_the_database() {
    let env = Env::new("cancel");
    let c = env.client().await;
    let token = c.cancel_token();
    let started = std::time::Instant::now();
    let sleeper = tokio::spawn(async move { c.simple_query("SELECT pg_sleep(30)").await });
    // A cancel that arrives before the query runs cancels nothing: wait
    // for the server to run it (a loaded machine is slow to get there).
    let running = "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'";
    while env.direct(running) != "1" {
        assert!(started.elapsed() < Duration::from_secs(20), "never ran");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cancelled = std::time::Instant::now();
    token.cancel_query(NoTls).await.unwrap();
    let r = sleeper.await.unwrap();
    let e = r.expect_err("cancelled");
    assert_eq!(sqlstate(&e), "57014", "{e}");
    assert!(cancelled.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_are_delivered() {
    let env = Env::new("notify");
    let (listener, mut conn) = tokio_postgres::connect(&env.conninfo(AGENT, AGENT_PW), NoTls)
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stream = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
        use futures_util::StreamExt;
        while let Some(Ok(m)) = stream.next().await {
            let _ = tx.send(m);
        }
    });
    listener.simple_query("LISTEN jobs").await.unwrap();
    let other = env.client().await;
    other.simple_query("NOTIFY jobs, 'hello'").await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(tokio_postgres::AsyncMessage::Notification(n)) = rx.recv().await {
                return n;
            }
        }
    })
    .await
    .expect("notification within 10 s");
    assert_eq!((got.channel(), got.payload()), ("jobs", "hello"));
    // RAISE NOTICE comes through too.
    listener
        .simple_query("SET client_min_messages = notice")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn million_rows_stream_in_bounded_memory() {
    let env = Env::new("million");
    let c = env.client().await;
    use futures_util::TryStreamExt;
    let rows = c
        .query_raw(
            "SELECT g, repeat('x', 100) FROM generate_series(1, 1000000) g",
            std::iter::empty::<i32>(),
        )
        .await
        .unwrap();
    futures_util::pin_mut!(rows);
    let mut n = 0u64;
    while let Some(_r) = rows.try_next().await.unwrap() {
        n += 1;
    }
    assert_eq!(n, 1_000_000);
    // ~110 MB went through; sqlgate's peak memory stays small.
    let status = std::fs::read_to_string(format!("/proc/{}/status", env.gate.pid())).unwrap();
    let hwm_kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(hwm_kb < 64 * 1024, "sqlgate peak RSS {hwm_kb} kB");
    let audit = env.audit();
    assert!(audit
        .iter()
        .any(|r| r["kind"] == "statement" && r["rows"] == 1_000_000u64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_then_restart_serves_again() {
    let mut env = Env::new("drain");
    let c = env.client().await;
    let busy = tokio::spawn(async move {
        let r = c.simple_query("SELECT pg_sleep(1.5), 'finished'").await;
        (r, c)
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    env.gate.sigterm();
    // The statement in flight completes.
    let (r, c) = busy.await.unwrap();
    let msgs = r.expect("in-flight statement completes during drain");
    assert!(msgs
        .iter()
        .any(|m| matches!(m, SimpleQueryMessage::Row(r) if r.get(1) == Some("finished"))));
    // Then the idle session is closed and sqlgate exits cleanly.
    let status = tokio::task::spawn_blocking(move || {
        let s = env.gate.wait();
        (s, env)
    })
    .await
    .unwrap();
    let (status, env) = status;
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        env.gate.log()
    );
    assert!(c.simple_query("SELECT 1").await.is_err());
    let audit = env.audit();
    assert!(audit.iter().any(|r| r["kind"] == "session_end"));
    // A new sqlgate on the same config serves again.
    let again = Sqlgate::start_with(&env.cfg);
    let (c2, conn) = tokio_postgres::connect(&env.conninfo(AGENT, AGENT_PW), NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    assert_eq!(
        c2.query_one("SELECT 5", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        5
    );
    drop(again);
}

/// Review finding: sqlgate's view of prepared statements can drift from the
/// server's (a Parse the server rejects or skips). Drift must never let a
/// statement that needs approval run: held statements live upstream under
/// sqlgate's own names, and unknown names are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drifted_statement_names_never_run_held_statements() {
    let env = Env::new("drift");
    let mut w = env.wire();
    let batch = |msgs: Vec<bytes::BytesMut>| {
        let mut b = Vec::new();
        for m in msgs {
            b.extend_from_slice(&m);
        }
        b
    };
    // 1. A held statement under name `s`, then a duplicate Parse of `s` with
    //    harmless SQL, then Bind/Execute of `s`.
    w.send(&batch(vec![
        wire::parse("s", "DELETE FROM items"),
        wire::sync(),
    ]));
    assert_eq!(wire::tags(&w.until_ready()), "1 Z");
    w.send(&batch(vec![wire::parse("s", "SELECT 1"), wire::sync()]));
    w.until_ready();
    w.send(&batch(vec![
        wire::bind("", "s"),
        wire::execute(""),
        wire::sync(),
    ]));
    let msgs = w.until_ready();
    assert!(
        !msgs
            .iter()
            .any(|m| m.tag == 'C' && m.body.starts_with(b"DELETE")),
        "{msgs:?}"
    );
    assert_eq!(env.direct("SELECT count(*) FROM items"), "3");

    // 2. A held UPDATE under `u`; then, in one batch, an error, a Close of `u`
    //    and a re-Parse of `u` (both skipped by the server); then execute `u`.
    w.send(&batch(vec![
        wire::parse("u", "UPDATE items SET name = 'pwned'"),
        wire::sync(),
    ]));
    w.until_ready();
    let mut close = vec![b'C'];
    close.extend_from_slice(&7i32.to_be_bytes());
    close.extend_from_slice(b"Su\0");
    let mut b = batch(vec![wire::parse("x", "SELECT * FROM no_such_table")]);
    b.extend_from_slice(&close);
    b.extend_from_slice(&batch(vec![wire::parse("u", "SELECT 1"), wire::sync()]));
    w.send(&b);
    w.until_ready();
    w.send(&batch(vec![
        wire::bind("", "u"),
        wire::execute(""),
        wire::sync(),
    ]));
    w.until_ready();
    assert_eq!(
        env.direct("SELECT count(*) FROM items WHERE name = 'pwned'"),
        "0"
    );

    // 3. A statement prepared with SQL PREPARE cannot be bound at the protocol level.
    let msgs = w.query("PREPARE p AS SELECT name FROM items");
    assert_eq!(wire::tags(&msgs), "C Z");
    w.send(&batch(vec![
        wire::bind("", "p"),
        wire::execute(""),
        wire::sync(),
    ]));
    let msgs = w.until_ready();
    assert_eq!(wire::tags(&msgs), "E Z", "{msgs:?}");
    assert_eq!(msgs[0].code(), "26000");
    assert!(
        msgs[0].message().contains("unknown to sqlgate"),
        "{}",
        msgs[0].message()
    );

    // 4. Executing a portal sqlgate never saw bound is refused.
    w.send(&batch(vec![wire::execute("nosuch"), wire::sync()]));
    let msgs = w.until_ready();
    assert_eq!(msgs[0].code(), "34000", "{msgs:?}");

    // And ordinary prepared statements still work, Describe and Close included.
    let mut describe = vec![b'D'];
    describe.extend_from_slice(&7i32.to_be_bytes());
    describe.extend_from_slice(b"Sq\0");
    let mut b = batch(vec![wire::parse("q", "SELECT count(*) FROM items")]);
    b.extend_from_slice(&describe);
    b.extend_from_slice(&batch(vec![
        wire::bind("", "q"),
        wire::execute(""),
        wire::sync(),
    ]));
    w.send(&b);
    assert_eq!(wire::tags(&w.until_ready()), "1 t T 2 D C Z");
}

/// A Describe (`D`) or Close (`C`) of a statement (`S`) or portal (`P`).
fn target(tag: u8, kind: u8, name: &str) -> Vec<u8> {
    let mut body = vec![kind];
    body.extend_from_slice(name.as_bytes());
    body.push(0);
    wire::raw(tag, &body)
}

fn batch(msgs: &[&[u8]]) -> Vec<u8> {
    msgs.concat()
}

/// The names the session's statements have upstream, read through sqlgate.
fn upstream_statements(w: &mut Wire) -> Vec<(String, String)> {
    let msgs = w
        .query("SELECT name || '|' || statement FROM pg_prepared_statements ORDER BY prepare_time");
    msgs.iter()
        .filter(|m| m.tag == 'D')
        .map(|m| {
            let len = i32::from_be_bytes(m.body[2..6].try_into().unwrap()) as usize;
            let v = String::from_utf8_lossy(&m.body[6..6 + len]).into_owned();
            let (a, b) = v.split_once('|').unwrap();
            (a.to_owned(), b.to_owned())
        })
        .collect()
}

/// Names beginning with `sqlgate.` are sqlgate's upstream namespace: refused
/// in every message that names a statement or portal, and what sqlgate keeps
/// there is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_names_are_refused_in_every_message() {
    let env = Env::new("reserved");
    let mut w = env.wire();
    w.send(&batch(&[
        &wire::parse("d", "DELETE FROM items"),
        &wire::parse("s", "SELECT 1"),
        &wire::sync(),
    ]));
    assert_eq!(wire::tags(&w.until_ready()), "1 1 Z");
    let held: Vec<String> = upstream_statements(&mut w)
        .into_iter()
        .filter(|(_, sql)| sql.starts_with("DELETE"))
        .map(|(n, _)| n)
        .collect();
    assert_eq!(held.len(), 1, "{held:?}");
    let h = held[0].as_str();
    assert!(h.starts_with("sqlgate."), "{h}");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("parse", wire::parse(h, "SELECT 1").to_vec()),
        (
            "parse other",
            wire::parse("sqlgate.mine", "SELECT 1").to_vec(),
        ),
        ("bind statement", wire::bind("", h).to_vec()),
        ("bind portal", wire::bind(h, "s").to_vec()),
        ("execute", wire::execute(h).to_vec()),
        ("describe statement", target(b'D', b'S', h)),
        ("describe portal", target(b'D', b'P', h)),
        ("close statement", target(b'C', b'S', h)),
        ("close portal", target(b'C', b'P', h)),
    ];
    for (what, m) in &cases {
        w.send(&batch(&[
            m,
            &wire::bind("", "s"),
            &wire::execute(""),
            &wire::sync(),
        ]));
        let msgs = w.until_ready();
        assert_eq!(wire::tags(&msgs), "E Z", "{what}: {msgs:?}");
        assert_eq!(msgs[0].code(), "42501", "{what}");
        assert!(
            msgs[0].message().contains("reserved"),
            "{what}: {}",
            msgs[0].message()
        );
    }
    // The held statement is still there, still sqlgate's, and never ran.
    assert!(upstream_statements(&mut w).iter().any(|(n, _)| n == h));
    assert_eq!(env.direct("SELECT count(*) FROM items"), "3");
    let refusals = env
        .audit()
        .iter()
        .filter(|r| {
            r["command"]
                .as_str()
                .is_some_and(|c| c.ends_with("(reserved name)"))
        })
        .count();
    assert_eq!(refusals, cases.len(), "each refusal is audited");
}

/// Review finding 2: a held statement's upstream name, read from
/// `pg_prepared_statements`, re-Parsed with harmless SQL, then bound and
/// executed. sqlgate's namespace is refused, and the held DELETE never runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collision_parse_on_a_held_upstream_name_runs_nothing() {
    let env = Env::new("collide");
    let mut w = env.wire();
    w.send(&batch(&[
        &wire::parse("d", "DELETE FROM items"),
        &wire::sync(),
    ]));
    assert_eq!(wire::tags(&w.until_ready()), "1 Z");
    let ups = upstream_statements(&mut w);
    let (h, _) = ups.iter().find(|(_, s)| s.starts_with("DELETE")).unwrap();
    w.send(&batch(&[&wire::parse(h, "SELECT 1"), &wire::sync()]));
    let msgs = w.until_ready();
    assert_eq!(
        (wire::tags(&msgs).as_str(), msgs[0].code().as_str()),
        ("E Z", "42501")
    );
    w.send(&batch(&[
        &wire::bind("", h),
        &wire::execute(""),
        &wire::sync(),
    ]));
    let msgs = w.until_ready();
    assert_eq!(
        (wire::tags(&msgs).as_str(), msgs[0].code().as_str()),
        ("E Z", "42501")
    );
    // The client's own name still reaches only the vetted DELETE: held, and
    // with no approver configured, refused.
    w.send(&batch(&[
        &wire::bind("", "d"),
        &wire::execute(""),
        &wire::sync(),
    ]));
    let msgs = w.until_ready();
    assert_eq!(wire::tags(&msgs), "2 E Z", "{msgs:?}");
    assert!(msgs[1].message().contains("requires approval"), "{msgs:?}");
    assert_eq!(env.direct("SELECT count(*) FROM items"), "3");
}

/// A Parse the server rejects (missing table, syntax error) of a name that
/// held another statement: the next batch's Bind/Execute of that name must
/// not run the older text (PostgreSQL itself would have kept it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_reparse_never_runs_the_older_statement() {
    let env = Env::new("reparse");
    let mut w = env.wire();
    for (id, bad) in [(50, "SELECT * FROM no_such_table"), (51, "SELEC 1")] {
        let ins = format!("INSERT INTO items VALUES ({id}, 'older')");
        w.send(&batch(&[&wire::parse("s", &ins), &wire::sync()]));
        assert_eq!(wire::tags(&w.until_ready()), "1 Z");
        w.send(&batch(&[&wire::parse("s", bad), &wire::sync()]));
        let msgs = w.until_ready();
        assert_eq!(wire::tags(&msgs), "E Z", "{msgs:?}");
        w.send(&batch(&[
            &wire::bind("", "s"),
            &wire::execute(""),
            &wire::sync(),
        ]));
        let msgs = w.until_ready();
        assert_eq!(wire::tags(&msgs), "E Z", "{bad}: {msgs:?}");
        assert_eq!(msgs[0].code(), "26000", "{msgs:?}");
        let n = env.direct(&format!("SELECT count(*) FROM items WHERE id = {id}"));
        assert_eq!(n, "0", "the older INSERT ran after `{bad}` failed");
    }
    // A good re-Parse replaces the statement, and the old one is closed upstream.
    w.send(&batch(&[
        &wire::parse("s", "SELECT 'newer'"),
        &wire::bind("", "s"),
        &wire::execute(""),
        &wire::sync(),
    ]));
    let msgs = w.until_ready();
    assert_eq!(wire::tags(&msgs), "1 2 D C Z", "{msgs:?}");
    let ups = upstream_statements(&mut w);
    assert_eq!(ups.len(), 1, "{ups:?}");
    assert_eq!(ups[0].1, "SELECT 'newer'");
}

/// A Parse skipped after an earlier error in its batch, named and unnamed:
/// the server keeps the older statement, and a later batch's Bind/Execute of
/// the name must not reach it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skipped_parse_never_runs_the_older_statement() {
    let env = Env::new("skipped");
    let mut w = env.wire();
    for (id, name) in [(60, "s"), (61, "")] {
        let ins = format!("INSERT INTO items VALUES ({id}, 'older')");
        w.send(&batch(&[&wire::parse(name, &ins), &wire::sync()]));
        assert_eq!(wire::tags(&w.until_ready()), "1 Z");
        w.send(&batch(&[
            &wire::parse("e", "SELECT * FROM no_such_table"),
            &wire::parse(name, "SELECT 1"),
            &wire::sync(),
        ]));
        let msgs = w.until_ready();
        assert_eq!(wire::tags(&msgs), "E Z", "{msgs:?}");
        w.send(&batch(&[
            &wire::bind("", name),
            &wire::execute(""),
            &wire::sync(),
        ]));
        let msgs = w.until_ready();
        assert_eq!(wire::tags(&msgs), "E Z", "`{name}`: {msgs:?}");
        assert_eq!(msgs[0].code(), "26000", "{msgs:?}");
        let n = env.direct(&format!("SELECT count(*) FROM items WHERE id = {id}"));
        assert_eq!(n, "0", "the older INSERT ran under `{name}`");
    }
    // The older statements, whose Close was skipped with the Parse, were
    // closed at the start of a later batch: nothing leaks upstream.
    w.send(&batch(&[&wire::parse("t", "SELECT 2"), &wire::sync()]));
    w.until_ready();
    let ups = upstream_statements(&mut w);
    assert_eq!(ups.len(), 1, "{ups:?}");
    // Everything ordinary still works, the unnamed statement across batches too.
    w.send(&batch(&[&wire::parse("", "SELECT 3"), &wire::sync()]));
    assert_eq!(wire::tags(&w.until_ready()), "1 Z");
    w.send(&batch(&[
        &wire::bind("", ""),
        &wire::execute(""),
        &wire::sync(),
    ]));
    assert_eq!(wire::tags(&w.until_ready()), "2 D C Z");
}

/// A Bind skipped after an earlier error leaves the older portal upstream;
/// inside a transaction (and past a savepoint rollback) it survives, and an
/// Execute of the portal name must not run it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skipped_bind_never_runs_the_older_portal() {
    let env = Env::new("skipbind");
    let mut w = env.wire();
    assert_eq!(wire::tags(&w.query("BEGIN")), "C Z");
    w.send(&batch(&[
        &wire::parse("ins", "INSERT INTO items VALUES (70, 'older')"),
        &wire::parse("sel", "SELECT 1"),
        &wire::bind("q", "ins"),
        &wire::sync(),
    ]));
    assert_eq!(wire::tags(&w.until_ready()), "1 1 2 Z");
    assert_eq!(wire::tags(&w.query("SAVEPOINT sp")), "C Z");
    w.send(&batch(&[
        &wire::parse("e", "SELECT * FROM no_such_table"),
        &wire::bind("q", "sel"),
        &wire::sync(),
    ]));
    assert_eq!(wire::tags(&w.until_ready()), "E Z");
    assert_eq!(wire::tags(&w.query("ROLLBACK TO SAVEPOINT sp")), "C Z");
    w.send(&batch(&[&wire::execute("q"), &wire::sync()]));
    let msgs = w.until_ready();
    assert_eq!(wire::tags(&msgs), "E Z", "{msgs:?}");
    assert_eq!(msgs[0].code(), "34000", "{msgs:?}");
    assert_eq!(wire::tags(&w.query("COMMIT")), "C Z");
    assert_eq!(env.direct("SELECT count(*) FROM items WHERE id = 70"), "0");
    // Client Close answers CloseComplete, as PostgreSQL does, and closes upstream.
    w.send(&batch(&[
        &target(b'C', b'S', "ins"),
        &target(b'C', b'S', "sel"),
        &wire::sync(),
    ]));
    assert_eq!(wire::tags(&w.until_ready()), "3 3 Z");
    assert_eq!(upstream_statements(&mut w).len(), 0);
}

/// The result-rewrite path with the no-op plan (`SQLGATE_DEBUG_ROW_PLAN=
/// keep-all`): every DataRow is rebuilt field by field, and what the agent
/// gets is byte for byte what the server sends directly, for simple and
/// extended queries, NULLs and empty values, binary formats, rows larger
/// than the streaming threshold (kept whole while a plan is active), a
/// suspended portal and an error mid-pipeline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keep_all_row_plan_changes_no_byte_of_any_result() {
    let pg = PgServer::shared();
    let db = pg.unique_database("rowplan");
    pg.psql(
        &db,
        "CREATE TABLE items(id int PRIMARY KEY, name text, data bytea);
         INSERT INTO items VALUES (1, 'one', '\\x00ff'), (2, NULL, ''), (3, '', NULL),
                                  (4, repeat('é', 400000), decode(repeat('ab', 300000), 'hex'));
         ALTER TABLE items OWNER TO svc;",
    );
    let cfg = SqlgateConfig::for_pg(pg, &db).agent(AGENT, AGENT_PW, &["agents"]);
    let gate = Sqlgate::start_env(&cfg.render(), &[("SQLGATE_DEBUG_ROW_PLAN", "keep-all")]);
    let (user, password) = pg.service_user();
    let mut direct = Wire::login(&format!("127.0.0.1:{}", pg.port), user, password, &db);
    let mut through = Wire::login(&cfg.listen_addr(), AGENT, AGENT_PW, &db);

    let simple = [
        "SELECT id, name, data, NULL::int AS n FROM items ORDER BY id",
        "SELECT 1 AS a; SELECT name FROM items WHERE id > 1 ORDER BY id; SELECT repeat('x', 3000000)",
        "SELECT * FROM items WHERE false",
        "SELECT id, name FROM items ORDER BY id LIMIT 2",
        "SELECT 1/0",
    ];
    for sql in simple {
        let (d, t) = (direct.query(sql), through.query(sql));
        assert_eq!(wire::tags(&d), wire::tags(&t), "{sql}");
        for (a, b) in d.iter().zip(&t) {
            if a.tag == 'E' {
                assert_eq!(a.code(), b.code(), "{sql}");
            } else {
                assert_eq!((a.tag, &a.body), (b.tag, &b.body), "{sql}");
            }
        }
    }

    // Extended: binary results, a described portal run in two parts, an
    // undescribed one, and an error before the rest of the pipeline.
    let mut batch = Vec::new();
    batch.extend_from_slice(&wire::parse(
        "s1",
        "SELECT id, name, data FROM items ORDER BY id",
    ));
    batch.extend_from_slice(&wire::bind_formats("p1", "s1", &[1]));
    batch.extend_from_slice(&wire::describe(b'P', "p1"));
    batch.extend_from_slice(&wire::execute_max("p1", 2));
    batch.extend_from_slice(&wire::execute("p1"));
    batch.extend_from_slice(&wire::bind_formats("p2", "s1", &[0, 1, 0]));
    batch.extend_from_slice(&wire::execute("p2"));
    batch.extend_from_slice(&wire::sync());
    batch.extend_from_slice(&wire::parse("s2", "SELECT 1/0"));
    batch.extend_from_slice(&wire::bind("p3", "s2"));
    batch.extend_from_slice(&wire::execute("p3"));
    batch.extend_from_slice(&wire::bind("p4", "s1"));
    batch.extend_from_slice(&wire::execute("p4"));
    batch.extend_from_slice(&wire::sync());
    direct.send(&batch);
    through.send(&batch);
    for _ in 0..2 {
        let (d, t) = (direct.until_ready(), through.until_ready());
        assert_eq!(wire::tags(&d), wire::tags(&t));
        for (a, b) in d.iter().zip(&t) {
            if a.tag != 'E' {
                assert_eq!((a.tag, &a.body), (b.tag, &b.body));
            }
        }
    }
    assert!(
        gate.log().contains("SQLGATE_DEBUG_ROW_PLAN=keep-all"),
        "the plan was not active:\n{}",
        gate.log()
    );
}

/// A portal lives as long as its transaction, on the server and so in
/// sqlgate: an Execute after the transaction ended is answered as the
/// server answers it (34000, the agent's own portal name), and a held
/// statement's dead portal is never put to the approvers (attack review
/// 2026-12-06, L1).
#[test]
fn portals_end_with_their_transaction() {
    let env = Env::with("portal_life", |c| {
        c.extra("[approvals]\ntimeout = \"3s\"\n")
    });
    let run = |w: &mut Wire, msgs: &[&[u8]]| {
        for m in msgs {
            w.send(m);
        }
        w.until_ready()
    };
    let mut w = env.wire();
    // An implicit transaction: the Sync ends it, and the portal with it.
    let msgs = run(
        &mut w,
        &[
            &wire::parse("s", "SELECT 42"),
            &wire::bind("pp", "s"),
            &wire::sync(),
        ],
    );
    assert_eq!(wire::tags(&msgs), "1 2 Z", "{msgs:?}");
    let msgs = run(&mut w, &[&wire::execute("pp"), &wire::sync()]);
    let err = msgs.iter().find(|m| m.tag == 'E').expect("an error");
    assert_eq!(err.code(), "34000", "{msgs:?}");
    assert!(err.message().contains("pp"), "{}", err.message());
    assert!(!err.message().contains("sqlgate.p."), "{}", err.message());
    // In a transaction block it lives on to the block's end.
    w.query("BEGIN");
    run(&mut w, &[&wire::bind("pp", "s"), &wire::sync()]);
    let msgs = run(&mut w, &[&wire::execute("pp"), &wire::sync()]);
    assert_eq!(wire::tags(&msgs), "D C Z", "{msgs:?}");
    w.query("COMMIT");
    let msgs = run(&mut w, &[&wire::execute("pp"), &wire::sync()]);
    assert!(
        msgs.iter().any(|m| m.tag == 'E' && m.code() == "34000"),
        "{msgs:?}"
    );
    // A destructive statement (held by the shipped rules) bound in one
    // transaction and executed after it: not asked about, not run.
    let msgs = run(
        &mut w,
        &[
            &wire::parse("d", "DELETE FROM items"),
            &wire::bind("dp", "d"),
            &wire::sync(),
        ],
    );
    assert!(!msgs.iter().any(|m| m.tag == 'E'), "{msgs:?}");
    let start = std::time::Instant::now();
    let msgs = run(&mut w, &[&wire::execute("dp"), &wire::sync()]);
    assert!(
        msgs.iter().any(|m| m.tag == 'E' && m.code() == "34000"),
        "{msgs:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(2), "it was held");
    assert!(
        !msgs.iter().any(|m| m.tag == 'N'),
        "approvers were asked: {msgs:?}"
    );
    assert_eq!(env.pg.psql(&env.db, "SELECT count(*) FROM items"), "3");
    // The same statement bound and executed in one transaction goes to
    // the rules (which can't be met here: no approver is configured).
    let msgs = run(
        &mut w,
        &[&wire::bind("dp", "d"), &wire::execute("dp"), &wire::sync()],
    );
    assert!(msgs.iter().any(|m| m.tag == 'E'), "{msgs:?}");
    assert_eq!(env.pg.psql(&env.db, "SELECT count(*) FROM items"), "3");
}
