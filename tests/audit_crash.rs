//! The audit log survives `kill -9`: after a crash in the middle of a load
//! and a restart, `sqlgate audit verify` passes, and every denied or approved
//! statement whose answer the agent saw is in the log.

mod support;

use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::process::Command;
use std::time::{Duration, Instant};
use support::{PgServer, Sqlgate, SqlgateConfig, TestDir};
use tokio_postgres::NoTls;

const AGENT: &str = "bot";
const AGENT_PW: &str = "bot-secret";

fn sha(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn sqlgate(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sqlgate"))
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_load_then_restart_verifies_and_keeps_every_answered_decision() {
    crash_and_verify("batch").await;
}

/// Under `durability = "strict"` every answered statement survives, allowed
/// reads included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_durability_keeps_every_answered_statement() {
    crash_and_verify("strict").await;
}

async fn crash_and_verify(durability: &str) {
    let strict = durability == "strict";
    let pg = PgServer::shared();
    let db = pg.unique_database("crash");
    pg.psql(
        &db,
        "CREATE TABLE items(id int PRIMARY KEY, name text); ALTER TABLE items OWNER TO svc;",
    );
    let logs = TestDir::new("crash-audit");
    let mut cfg = SqlgateConfig::for_pg(pg, &db)
        .agent(AGENT, AGENT_PW, &["agents"])
        .extra("[[approver]]\nname = \"alice\"\ntoken = \"tok-alice\"\ngroups = [\"dba\"]\n");
    cfg.audit_path = logs.join("sqlgate.jsonl");
    // `[audit] durability` goes into the rendered [audit] table.
    let durability_line = format!("durability = \"{durability}\"\n");
    let render = |cfg: &SqlgateConfig| {
        cfg.render()
            .replacen("[audit]\n", &format!("[audit]\n{durability_line}"), 1)
    };
    let mut gate = Sqlgate::start(&render(&cfg));
    let conninfo = format!(
        "host=127.0.0.1 port={} user={AGENT} password={AGENT_PW} dbname={db} sslmode=disable",
        cfg.listen_port
    );
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let admin = format!("http://{}", cfg.admin_addr());

    // An approver that approves whatever is pending, as fast as it can.
    let approver = {
        let (http, admin) = (http.clone(), admin.clone());
        tokio::spawn(async move {
            loop {
                let Ok(r) = http
                    .get(format!("{admin}/v1/approvals"))
                    .bearer_auth("tok-alice")
                    .send()
                    .await
                else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                let v: serde_json::Value = r.json().await.unwrap_or_default();
                for req in v["approvals"].as_array().cloned().unwrap_or_default() {
                    let id = req["id"].as_str().unwrap_or_default();
                    let _ = http
                        .post(format!("{admin}/v1/approvals/{id}/approve"))
                        .bearer_auth("tok-alice")
                        .send()
                        .await;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    // Four agents: reads, denials and held-then-approved statements, each
    // with a unique literal so its record can be found by the text's hash.
    let answered = std::sync::Arc::new(std::sync::Mutex::new(HashSet::new()));
    let mut agents = Vec::new();
    for a in 0..4 {
        let (conninfo, answered) = (conninfo.clone(), answered.clone());
        let counts_all = strict;
        agents.push(tokio::spawn(async move {
            let Ok((c, conn)) = tokio_postgres::connect(&conninfo, NoTls).await else {
                return;
            };
            tokio::spawn(conn);
            for i in 0.. {
                let n = a * 1_000_000 + i;
                let (sql, decided) = match i % 4 {
                    0 => (format!("SELECT pg_read_file('/nope/{n}')"), true),
                    1 => (format!("UPDATE items SET name = 'v{n}'"), true),
                    _ => (format!("SELECT {n}"), false),
                };
                // Only an answer that is sqlgate's decision counts: the
                // approved UPDATE's result, or the denial's 42501.
                let answered_now = match c.simple_query(&sql).await {
                    Ok(_) => true,
                    Err(e) => e.code().is_some_and(|c| c.code() == "42501"),
                };
                if c.is_closed() && !answered_now {
                    return;
                }
                if (decided || counts_all) && answered_now {
                    answered.lock().unwrap().insert(sha(&sql));
                }
            }
        }));
    }
    // Let the load run, then kill -9 in the middle of it.
    let started = Instant::now();
    while answered.lock().unwrap().len() < 60 && started.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(Command::new("kill")
        .args(["-9", &gate.pid().to_string()])
        .status()
        .unwrap()
        .success());
    let _ = tokio::task::spawn_blocking(move || {
        gate.wait();
        gate
    })
    .await;
    for a in agents {
        let _ = a.await;
    }
    approver.abort();
    let seen: HashSet<String> = answered.lock().unwrap().clone();
    assert!(
        seen.len() >= 60,
        "load ran: {} decisions answered",
        seen.len()
    );

    // Restart on the same log, then stop cleanly.
    let mut again = Sqlgate::start(&render(&cfg));
    again.sigterm();
    assert!(again.wait().success(), "{}", again.log());

    let log = cfg.audit_path.to_str().unwrap().to_owned();
    let key = logs.join("signing.key");
    let pubkey = sqlgate(&[
        "audit",
        "pubkey",
        "--config",
        again.config_path.to_str().unwrap(),
    ]);
    assert!(
        pubkey.status.success(),
        "{}",
        String::from_utf8_lossy(&pubkey.stderr)
    );
    let pubkey = String::from_utf8_lossy(&pubkey.stdout).trim().to_owned();
    assert!(key.exists());
    let out = sqlgate(&["audit", "verify", &log, "--public-key", &pubkey]);
    assert!(
        out.status.success(),
        "verify failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Every denial or approval the agents saw answered is in the log.
    let text = std::fs::read_to_string(&log).unwrap();
    let logged: HashSet<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["kind"] == "statement")
        .filter_map(|r| r["sql_sha256"].as_str().map(str::to_owned))
        .collect();
    let missing: Vec<_> = seen.iter().filter(|h| !logged.contains(*h)).collect();
    assert!(
        missing.is_empty(),
        "{} answered decisions missing from the log",
        missing.len()
    );
    assert!(
        text.contains("\"reason\":\"recovery\""),
        "the restart records a recovery"
    );
}
