//! Masks end to end (issue 11): a real PostgreSQL, the real sqlgate, psql
//! (simple protocol), tokio-postgres (extended, text and binary) and a raw
//! wire client; each judged by whether the plaintext appears anywhere in
//! what the agent received.

mod support;

use support::wire::Wire;
use support::{PgServer, Sqlgate, SqlgateConfig, TestDir};
use tokio_postgres::NoTls;

const AGENT: &str = "bot";
const AGENT_PW: &str = "bot-secret";
const BILLING: &str = "billing-bot";
const SSN: &str = "123-45-6789";

const RULES: &str = r#"
[[rule]]
id = "reads"
action = "allow"
classes = ["read", "session", "transaction"]

[[mask]]
id = "customer-pii"
columns = ["users.ssn", "*.users.email", "users.salary"]
method = "partial"
keep_last = 4
except_agents = ["billing-bot"]
"#;

struct Env {
    _rules: TestDir,
    db: String,
    cfg: SqlgateConfig,
    gate: Sqlgate,
}

fn env(prefix: &str) -> Env {
    let pg = PgServer::shared();
    let db = pg.unique_database(prefix);
    pg.psql(
        &db,
        &format!(
            "CREATE TABLE users(id int PRIMARY KEY, name text, ssn text, email varchar(80), salary int);
             INSERT INTO users VALUES (1, 'ann', '{SSN}', 'ann.lee@example.com', 91000),
                                      (2, 'bob', NULL, 'bob@example.org', 52000);
             CREATE TABLE orders(id int, user_id int, total int);
             INSERT INTO orders VALUES (10, 1, 5);
             CREATE VIEW people AS SELECT id, ssn FROM users;

             ALTER TABLE users OWNER TO svc; ALTER TABLE orders OWNER TO svc; ALTER VIEW people OWNER TO svc;"
        ),
    );
    let rules = TestDir::new("mask-rules");
    let path = rules.join("rules.toml");
    std::fs::write(&path, RULES).unwrap();
    let mut cfg = SqlgateConfig::for_pg(pg, &db)
        .agent(AGENT, AGENT_PW, &[])
        .agent(BILLING, AGENT_PW, &[]);
    cfg.rules = vec![path];
    let gate = Sqlgate::start_with(&cfg);
    Env {
        _rules: rules,
        db,
        cfg,
        gate,
    }
}

impl Env {
    fn wire(&self, agent: &str) -> Wire {
        Wire::login(&self.cfg.listen_addr(), agent, AGENT_PW, &self.db)
    }

    /// Every byte the agent got for `sql` (simple protocol), and the error's SQLSTATE if any.
    fn query(&self, agent: &str, sql: &str) -> (Vec<u8>, Option<String>) {
        let mut w = self.wire(agent);
        // Read to ReadyForQuery, or to the end of a session sqlgate closed.
        let mut body = sql.as_bytes().to_vec();
        body.push(0);
        w.send(&support::wire::raw(b'Q', &body));
        let mut msgs = Vec::new();
        while let Some(m) = w.try_recv() {
            let ready = m.tag == 'Z';
            msgs.push(m);
            if ready {
                break;
            }
        }
        let mut all = Vec::new();
        let mut code = None;
        for m in &msgs {
            all.extend_from_slice(&m.body);
            if m.tag == 'E' {
                code = Some(m.code());
            }
        }
        (all, code)
    }
}

/// The forms of the plaintext the agent must not see.
fn leaks(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes).to_lowercase();
    let forms = [
        SSN.to_string(),
        "123456789".into(),
        "987654321".into(),
        "ann.lee".into(),
        "91000".into(),
        "mtizltq1lty3odk".into(), // base64 of the SSN, lower-cased
        hex::encode(SSN),
    ];
    forms.into_iter().find(|f| text.contains(f.as_str()))
}

#[test]
fn pass_throughs_come_back_masked_and_the_rest_byte_identical() {
    let e = env("mask_pass");
    let (bytes, code) = e.query(
        AGENT,
        "SELECT id, name, ssn, email, salary FROM users ORDER BY id",
    );
    assert_eq!(code, None, "{}", String::from_utf8_lossy(&bytes));
    assert_eq!(leaks(&bytes), None, "{}", String::from_utf8_lossy(&bytes));
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains("****6789"), "{text}");
    assert!(text.contains("****.com"), "{text}");
    assert!(text.contains("ann") && text.contains("bob"), "{text}");
    // Aliases, derived tables, CTEs and UNION ALL pass the column through.
    for sql in [
        "SELECT ssn AS x FROM users",
        "SELECT s FROM (SELECT ssn AS s FROM users) t",
        "WITH c AS (SELECT id, ssn FROM users) SELECT ssn FROM c",
        "SELECT ssn FROM users UNION ALL SELECT 'none'",
        "SELECT u.ssn, o.total FROM users u JOIN orders o ON o.user_id = u.id",
    ] {
        let (bytes, code) = e.query(AGENT, sql);
        assert_eq!(code, None, "{sql}: {}", String::from_utf8_lossy(&bytes));
        assert_eq!(leaks(&bytes), None, "{sql}");
        assert!(
            String::from_utf8_lossy(&bytes).contains("****6789"),
            "{sql}"
        );
    }
    // `*` expands from the catalog's column lists (loaded in the
    // background at start: refused until then).
    for sql in [
        "SELECT * FROM users ORDER BY id",
        "TABLE users",
        "SELECT o.*, u.* FROM orders o JOIN users u ON u.id = o.user_id",
    ] {
        let mut got = e.query(AGENT, sql);
        for _ in 0..50 {
            if got.1.is_none() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
            got = e.query(AGENT, sql);
        }
        let (bytes, code) = got;
        assert_eq!(code, None, "{sql}: {}", String::from_utf8_lossy(&bytes));
        assert_eq!(leaks(&bytes), None, "{sql}");
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            text.contains("****6789") && text.contains("ann"),
            "{sql}: {text}"
        );
    }
    // The exempt agent sees the plaintext; an unmasked table is untouched.
    let (bytes, _) = e.query(BILLING, "SELECT ssn FROM users WHERE id = 1");
    assert!(String::from_utf8_lossy(&bytes).contains(SSN));
    let direct = PgServer::shared().psql(&e.db, "SELECT id, user_id, total FROM orders");
    let (bytes, _) = e.query(AGENT, "SELECT id, user_id, total FROM orders");
    assert!(String::from_utf8_lossy(&bytes).contains("10") && direct.contains("10"));
}

#[test]
fn the_ways_around_a_mask_are_refused() {
    let e = env("mask_evasion");
    for sql in [
        "SELECT u FROM users u",
        "SELECT row_to_json(u) FROM users u",
        "SELECT u::text FROM users u",
        "SELECT lower(ssn) FROM users",
        "SELECT ssn || '' FROM users",
        "SELECT reverse(ssn) FROM users",
        "SELECT encode(convert_to(ssn, 'UTF8'), 'base64') FROM users",
        "SELECT ssn::int FROM users",
        "SELECT string_agg(ssn, ',') FROM users",
        "SELECT max(ssn) FROM users",
        "SELECT json_build_object('s', ssn) FROM users",
        "SELECT ARRAY[ssn] FROM users",
        "SELECT (SELECT ssn FROM users LIMIT 1)",
        "SELECT id FROM users WHERE ssn LIKE '1%'",
        "SELECT id FROM users WHERE ssn = '123-45-6789'",
        "SELECT id FROM users ORDER BY ssn",
        "SELECT ssn FROM users ORDER BY 1",
        "SELECT substr(ssn, 1, 1), count(*) FROM users GROUP BY 1",
        "SELECT DISTINCT ssn FROM users",
        "SELECT ssn FROM users UNION SELECT 'x'",
        "SELECT id FROM orders WHERE user_id IN (SELECT id FROM users WHERE ssn > '5')",
        "SELECT id, row_number() OVER (ORDER BY ssn) FROM users",
        "SELECT * FROM people",
        "SELECT ssn FROM people",
        "SELECT query_to_xml('SELECT ssn FROM users', true, true, '')",
        "SELECT table_to_xml('users', true, true, '')",
        "COPY users TO STDOUT",
        "COPY (SELECT ssn FROM users) TO STDOUT",
        "EXPLAIN SELECT ssn FROM users",
        "SELECT id FROM users u JOIN users v USING (ssn)",
        "SELECT id FROM users LIMIT length((SELECT ssn FROM users LIMIT 1))",
    ] {
        let (bytes, code) = e.query(AGENT, sql);
        assert_eq!(
            leaks(&bytes),
            None,
            "{sql}: {}",
            String::from_utf8_lossy(&bytes)
        );
        assert!(
            code.is_some(),
            "{sql} was not refused: {}",
            String::from_utf8_lossy(&bytes)
        );
    }
    // Attack review 2026-12-06 (masking): each passed plaintext; now
    // masked or refused, and nothing written.
    for sql in [
        "SELECT z FROM users AS u(x,y,z)",
        "SELECT s FROM users u(a,b,c,d,s) WHERE a = 1",
        "SELECT a FROM users u(a,b,z) WHERE z LIKE '1%'",
        "SELECT t.s FROM users u JOIN LATERAL (SELECT u.ssn AS s) t ON true",
        "SELECT x FROM users u JOIN LATERAL unnest(array[u.ssn]) x ON true",
        "SELECT u.id, x.v FROM users u CROSS JOIN LATERAL ROWS FROM (upper(u.ssn)) x(v)",
        "SELECT x.v FROM users u, XMLTABLE('/a' PASSING xmlelement(name a, u.ssn) COLUMNS v text PATH '.') x",
        "WITH t AS (SELECT ssn FROM users) SELECT x FROM unnest(ARRAY(SELECT ssn FROM t)) AS x",
        "WITH t AS (SELECT ssn FROM users) VALUES ((SELECT string_agg(ssn, ',') FROM t))",
        "WITH t AS (SELECT id, ssn FROM users) SELECT id FROM orders WHERE EXISTS (SELECT 1 FROM t WHERE ssn LIKE '1%' AND t.id = orders.user_id)",
        "WITH t AS (SELECT id, salary FROM users), w AS (INSERT INTO orders(id, user_id, total) SELECT 100 + id, id, salary FROM t RETURNING 1) SELECT count(*) FROM w",
    ] {
        let (bytes, _) = e.query(AGENT, sql);
        assert_eq!(leaks(&bytes), None, "{sql}: {}", String::from_utf8_lossy(&bytes));
    }
    assert_eq!(
        PgServer::shared().psql(&e.db, "SELECT count(*) FROM orders WHERE id > 100"),
        "0"
    );
    // Round 2: VALUES branches of set operations; settings changed within
    // the string. (Partitions of a masked table read by their own names
    // are not masked yet: name them in the mask.)
    for sql in [
        "SELECT id, ssn, email, salary FROM users UNION ALL VALUES (0,'','',0)",
        "VALUES (0,'x') UNION ALL SELECT id, ssn FROM users",
        "SELECT ssn FROM users INTERSECT VALUES ('123-45-6789')",
        "SELECT upper(t.ssn) AS u FROM (SELECT ssn FROM users UNION ALL VALUES ('x')) t",
        "SET client_encoding = 'LATIN1'; SELECT id, email FROM users WHERE id = 1",
        "SELECT set_config('client_encoding', 'LATIN1', false) AS s, email FROM users",
    ] {
        let (bytes, _) = e.query(AGENT, sql);
        assert_eq!(
            leaks(&bytes),
            None,
            "{sql}: {}",
            String::from_utf8_lossy(&bytes)
        );
    }
    // In a session whose client encoding is not UTF8, the server's
    // conversion errors would show characters of masked values.
    // The session ends when the server reports the change.
    let (bytes, code) = e.query(AGENT, "SET client_encoding = 'LATIN1'");
    let msgs = [(code, bytes)];
    assert!(
        msgs.iter().any(|(c, _)| c.as_deref() == Some("42501")),
        "{msgs:?}"
    );

    let (bytes, code) = e.query(AGENT, "SELECT id FROM users WHERE ssn LIKE '1%'");
    assert_eq!(code.as_deref(), Some("42501"));
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.contains("users.ssn") && text.contains("customer-pii") && text.contains("WHERE"),
        "{text}"
    );
}

#[tokio::test]
async fn prepared_statements_mask_in_text_and_binary() {
    let e = env("mask_extended");
    let conninfo = format!(
        "host=127.0.0.1 port={} user={AGENT} password={AGENT_PW} dbname={} sslmode=disable",
        e.cfg.listen_port, e.db
    );
    let (client, conn) = tokio_postgres::connect(&conninfo, NoTls)
        .await
        .unwrap_or_else(|err| panic!("{err}\n{}", e.gate.log()));
    tokio::spawn(conn);
    // tokio-postgres asks for binary results: the masked columns are NULL
    // (sqlgate does not see their types with an Execute), the rest exact.
    let rows = client
        .query(
            "SELECT id, name, ssn, email, salary FROM users ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].get::<_, i32>(0), 1);
    assert_eq!(rows[0].get::<_, &str>(1), "ann");
    assert_eq!(rows[0].get::<_, Option<&str>>(2), None);
    assert_eq!(rows[0].get::<_, Option<&str>>(3), None);
    assert_eq!(rows[0].get::<_, Option<i32>>(4), None);
    let err = client
        .query("SELECT id FROM users WHERE ssn = $1", &[&SSN])
        .await
        .unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("42501"), "{err}");
    // The simple protocol through the same client: masked text.
    let msgs = client
        .simple_query("SELECT ssn FROM users WHERE id = 1")
        .await
        .unwrap();
    let got: Vec<String> = msgs
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .collect();
    assert_eq!(got, ["****6789"]);
}

#[test]
fn the_audit_names_the_masked_columns_and_never_their_values() {
    let e = env("mask_audit");
    e.query(AGENT, "SELECT id, ssn FROM users");
    let log = e.gate.dir().join("audit/sqlgate.jsonl");
    let mut text = String::new();
    for _ in 0..50 {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("\"masked\"") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let line = text
        .lines()
        .find(|l| l.contains("\"masked\""))
        .unwrap_or_else(|| panic!("no record names masked columns: {text}"));
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["masked"][0]["column"], "users.ssn", "{line}");
    assert_eq!(v["masked"][0]["position"], 2, "{line}");
    assert_eq!(v["masked"][0]["mask"], "customer-pii", "{line}");
    assert_eq!(leaks(text.as_bytes()), None);
}
