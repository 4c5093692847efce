//! The command line: `explain`, `rules check`, and config errors at `serve`.

mod support;

use std::process::{Command, Output};
use support::TestDir;

fn sqlgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sqlgate"))
        .args(args)
        .output()
        .expect("sqlgate runs")
}

fn rules_dir() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/rules").to_owned()
}

/// What `rules check` prints for a `bad.toml` holding `rules`, which must fail.
fn rules_check_fails(rules: &str) -> String {
    let dir = TestDir::new("rules");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, rules).unwrap();
    let out = sqlgate(&["rules", "check", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn explain(sql: &str, extra: &[&str]) -> serde_json::Value {
    let rules = rules_dir();
    let mut args = vec!["explain", "--rules", &rules, "--dialect", "postgres"];
    args.extend_from_slice(extra);
    args.push(sql);
    let out = sqlgate(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("explain prints JSON")
}

#[test]
fn explain_shows_action_rule_classes_tables_reason() {
    let v = explain("DELETE FROM public.accounts", &["--agent", "report-bot"]);
    assert_eq!(v["action"], "require_approval");
    assert_eq!(v["rule"], "destructive-needs-approval");
    assert!(v["classes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c == "destructive"));
    assert_eq!(v["tables"][0], "public.accounts");
    assert!(v["reason"].as_str().unwrap().len() > 5);

    let v = explain("SELECT pg_read_file('/etc/passwd')", &[]);
    assert_eq!(
        (v["action"].as_str(), v["rule"].as_str()),
        (Some("deny"), Some("server-access-denied"))
    );

    let v = explain("SELECT name FROM customers WHERE id = 1", &[]);
    assert_eq!(v["action"], "allow");
    assert_eq!(
        v["statements"][0]["fingerprint"],
        "select name from customers where id = ?"
    );

    // A string is decided by its first statement that may not run.
    let v = explain("SELECT 1; DROP TABLE t; SELECT 2", &[]);
    assert_eq!(v["action"], "require_approval");
    assert_eq!(v["statements"].as_array().unwrap().len(), 3);

    let v = explain("SET standard_conforming_strings = off", &[]);
    assert_eq!(
        (v["action"].as_str(), v["rule"].as_str()),
        (Some("deny"), Some("builtin:forbidden"))
    );
}

#[test]
fn explain_takes_sql_starting_with_a_comment_and_from_standard_input() {
    // A leading `--` comment is SQL, not an option.
    let v = explain("-- nightly cleanup\nDELETE FROM public.accounts", &[]);
    assert_eq!(v["rule"], "destructive-needs-approval");
    assert_eq!(v["statements"].as_array().unwrap().len(), 1);

    // `-` reads the statement from standard input.
    use std::io::Write;
    let rules = rules_dir();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sqlgate"))
        .args(["explain", "--rules", &rules, "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sqlgate runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"-- from a file\nSELECT pg_read_file('/etc/passwd');\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["rule"], "server-access-denied");
}

#[test]
fn rules_check_passes_the_shipped_rules_and_names_file_and_line() {
    let out = sqlgate(&["rules", "check", &rules_dir()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let text = rules_check_fails(
        "[[rule]]\nid = \"a\"\naction = \"allow\"\nclasses = [\"reed\"]\n\n[[rule]]\nid = \"b\"\naction = \"maybe\"\n",
    );
    assert!(text.contains("bad.toml:4:"), "{text}");
    assert!(text.contains("reed"), "{text}");
    assert!(text.contains("bad.toml:8:"), "{text}");
}

#[test]
fn serve_rejects_unknown_config_keys_by_name() {
    let dir = TestDir::new("cfg");
    let cfg = dir.join("sqlgate.toml");
    std::fs::write(
        &cfg,
        "[[listener]]\nprotocol = \"postgres\"\nlisten = \"127.0.0.1:1\"\nupstream = \"postgres://u:p@h/d\"\nlisten_backlog = 5\n[policy]\nrules = []\n[audit]\npath = \"a.jsonl\"\n",
    )
    .unwrap();
    let out = sqlgate(&["serve", "--config", cfg.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("listen_backlog"), "{err}");
}

/// `[audit] anchor_required` (review F14c): a run whose opening checkpoint
/// the anchor did not take does not serve, since the log could later be
/// cut back past it unseen; it needs an anchor; once the anchor answers,
/// sqlgate serves.
#[test]
fn serve_needs_the_anchor_to_take_the_opening_checkpoint_when_required() {
    use std::io::{BufRead, BufReader, Read, Write};
    let dir = TestDir::new("anchor-required");
    let cfg = dir.join("sqlgate.toml");
    let port = support::free_port();
    let base = format!(
        "[[listener]]\nprotocol = \"postgres\"\nlisten = \"127.0.0.1:{port}\"\nupstream = \"postgres://u:p@127.0.0.1:1/d\"\n[policy]\nrules = []\n[audit]\npath = \"a.jsonl\"\nanchor_required = true\n"
    );
    let serve = |extra: &str| {
        std::fs::write(&cfg, format!("{base}{extra}")).unwrap();
        let out = sqlgate(&["serve", "--config", cfg.to_str().unwrap()]);
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = serve("");
    assert!(err.contains("needs `audit.anchor`"), "{err}");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/anchor", closed.local_addr().unwrap());
    drop(closed);
    let err = serve(&format!("anchor = \"{url}\"\n"));
    assert!(
        err.contains("did not take this run's opening checkpoint"),
        "{err}"
    );

    // A collector that answers 204: sqlgate listens.
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/anchor", server.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in server.incoming().flatten() {
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let (mut len, mut line) = (0, String::new());
            while r.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let _ = r.read_exact(&mut vec![0; len]);
            let _ = (&conn).write_all(
                b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
        }
    });
    std::fs::write(&cfg, format!("{base}anchor = \"{url}\"\n")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sqlgate"))
        .args(["serve", "--config", cfg.to_str().unwrap()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(child.try_wait().unwrap().is_none(), "sqlgate exited");
        assert!(std::time::Instant::now() < deadline, "never listened");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

const MASKS: &str = r#"
[[rule]]
id = "reads"
action = "allow"
classes = ["read"]

[[mask]]
id = "customer-pii"
columns = ["users.ssn", "*.users.email"]
method = "partial"
keep_last = 4
except_agents = ["billing-bot"]
"#;

/// `[[mask]]` (issue 11): `rules check` validates masks, `explain` shows
/// each statement's mask plan (the result columns masked, or why it is
/// refused).
#[test]
fn masks_are_checked_and_explained() {
    let dir = TestDir::new("masks");
    let rules = dir.join("masks.toml");
    std::fs::write(&rules, MASKS).unwrap();
    let rules = rules.to_str().unwrap();
    let out = sqlgate(&["rules", "check", rules]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let plan = |agent: &str, sql: &str| {
        let out = sqlgate(&["explain", "--rules", rules, "--agent", agent, sql]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["statements"][0]["mask_plan"].clone()
    };
    let p = plan("bot", "SELECT id, ssn AS s FROM users");
    assert_eq!(p["masked"][0]["position"], 2, "{p}");
    assert_eq!(p["masked"][0]["column"], "users.ssn", "{p}");
    assert_eq!(p["masked"][0]["mask"], "customer-pii", "{p}");
    let p = plan("bot", "SELECT id FROM users WHERE ssn LIKE '1%'");
    assert!(
        p["refused"]["why"].as_str().unwrap().contains("WHERE"),
        "{p}"
    );
    assert!(plan("billing-bot", "SELECT ssn FROM users").is_null());
    assert!(plan("bot", "SELECT total FROM orders").is_null());

    let text = rules_check_fails(
        "[[mask]]\nid = \"m\"\ncolumns = [\"ssn\"]\nmethod = \"partial\"\n\n[[mask]]\nid = \"n\"\ncolumns = [\"t.c\"]\nmethod = \"shuffle\"\nkey = \"k\"\n",
    );
    for want in [
        "must name its table",
        "no `keep_last`",
        "unknown mask method `shuffle`",
        "`key` applies only",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }
}
