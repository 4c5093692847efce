//! `sqlgate audit search|export|report` over hand-written logs that follow
//! the v1 record format (`tests/data/audit/`: one log rotated into two files,
//! with sessions, statements of every action and outcome, an approval with a
//! refused vote, denials, a login failure, and `<script>` in a fingerprint
//! and a vote reason).

use sqlgate::cli::audit_tools::{
    export_to, report_to, search_to, ExportArgs, ReportArgs, SearchArgs,
};
use std::path::{Path, PathBuf};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/audit");

/// The two files of the fixture log, newest first (the shell's usual glob
/// order would be neither): the tools must read them in `seq` order.
fn log() -> Vec<PathBuf> {
    vec![
        Path::new(DATA).join("audit.log"),
        Path::new(DATA).join("audit.log.1"),
    ]
}

fn raw_log() -> String {
    std::fs::read_to_string(Path::new(DATA).join("audit.log.1")).unwrap()
        + &std::fs::read_to_string(Path::new(DATA).join("audit.log")).unwrap()
}

fn args(files: Vec<PathBuf>) -> SearchArgs {
    SearchArgs {
        files,
        agent: None,
        since: None,
        until: None,
        class: None,
        action: None,
        outcome: None,
        json: false,
    }
}

fn search(a: &SearchArgs) -> anyhow::Result<String> {
    let mut out = Vec::new();
    search_to(a, &mut out)?;
    Ok(String::from_utf8(out).unwrap())
}

/// The `seq` of every line a search printed.
fn seqs(a: SearchArgs) -> Vec<u64> {
    search(&a)
        .unwrap()
        .lines()
        .map(|l| {
            let n = l.strip_prefix('#').unwrap().split(' ').next().unwrap();
            n.parse().unwrap()
        })
        .collect()
}

/// A file under the test's scratch directory.
fn scratch(name: &str, text: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("audit_tools");
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn search_without_filters_reads_rotated_files_in_seq_order() {
    assert_eq!(seqs(args(log())), (0..18).collect::<Vec<_>>());
    let out = search(&args(log())).unwrap();
    let deny = out.lines().find(|l| l.starts_with("#10 ")).unwrap();
    assert!(deny.contains("statement"), "{deny}");
    assert!(deny.contains("analyst"), "{deny}");
    assert!(deny.contains("DROP TABLE orders"), "{deny}");
    assert!(deny.contains("deny/denied"), "{deny}");
    let failed = out.lines().find(|l| l.starts_with("#13 ")).unwrap();
    assert!(failed.contains("allow/error (42P01)"), "{failed}");
}

#[test]
fn search_by_agent_includes_every_kind() {
    let mut a = args(log());
    a.agent = Some("ops-bot".into());
    assert_eq!(seqs(a), vec![4, 5, 6, 7, 8, 9, 13, 15, 17]);
    let mut a = args(log());
    a.agent = Some("ops".into()); // exact, not a substring
    assert_eq!(seqs(a), Vec::<u64>::new());
}

#[test]
fn statement_only_filters_exclude_other_kinds() {
    let mut a = args(log());
    a.class = Some("destructive".into());
    assert_eq!(seqs(a), vec![9, 10]);
    let mut a = args(log());
    a.action = Some("deny".into());
    assert_eq!(seqs(a), vec![10, 14]);
    let mut a = args(log());
    a.action = Some("require_approval".into());
    assert_eq!(seqs(a), vec![9]);
    let mut a = args(log());
    a.outcome = Some("denied".into());
    assert_eq!(seqs(a), vec![10, 14]);
    let mut a = args(log());
    a.outcome = Some("not_executed".into());
    assert_eq!(seqs(a), vec![15]);
    let mut a = args(log());
    a.outcome = Some("42P01".into());
    assert_eq!(seqs(a), vec![13]);
    let mut a = args(log());
    a.outcome = Some("error".into());
    assert_eq!(seqs(a), vec![13]);
}

#[test]
fn filters_combine() {
    let mut a = args(log());
    a.agent = Some("analyst".into());
    a.class = Some("read".into());
    assert_eq!(seqs(a), vec![3, 14]);
    let mut a = args(log());
    a.agent = Some("analyst".into());
    a.class = Some("read".into());
    a.action = Some("deny".into());
    a.since = Some("2026-11-22".into());
    assert_eq!(seqs(a), vec![14]);
    let mut a = args(log());
    a.agent = Some("analyst".into());
    a.outcome = Some("ok".into());
    a.until = Some("2026-11-20".into());
    assert_eq!(seqs(a), vec![3]);
}

#[test]
fn since_and_until_take_dates_rfc3339_and_offsets() {
    // A date: the whole day (UTC), inclusive at both ends.
    let mut a = args(log());
    a.since = Some("2026-11-21".into());
    a.until = Some("2026-11-21".into());
    assert_eq!(seqs(a), (4..12).collect::<Vec<_>>());
    // RFC 3339, inclusive: exactly the decision's time.
    let mut a = args(log());
    a.since = Some("2026-11-21T10:00:09.2Z".into());
    a.until = Some("2026-11-21T10:00:09.200000Z".into());
    assert_eq!(seqs(a), vec![8]);
    // An offset: 12:00+02:00 is 10:00Z.
    let mut a = args(log());
    a.since = Some("2026-11-21T12:00:06+02:00".into());
    a.until = Some("2026-11-21T12:00:09.15+02:00".into());
    assert_eq!(seqs(a), vec![6, 7]);
    // Nonsense is an error naming it.
    let mut a = args(log());
    a.since = Some("last tuesday".into());
    let e = search(&a).unwrap_err().to_string();
    assert!(e.contains("`last tuesday` is not a time"), "{e}");
}

#[test]
fn since_takes_an_age_counted_back_from_now() {
    let now = std::time::SystemTime::now();
    let at =
        |h: u64| humantime::format_rfc3339_micros(now - std::time::Duration::from_secs(h * 3600));
    let text = format!(
        "{{\"v\":1,\"seq\":0,\"time\":\"{}\",\"kind\":\"log_opened\"}}\n\
         {{\"v\":1,\"seq\":1,\"time\":\"{}\",\"kind\":\"config_loaded\"}}\n",
        at(3),
        at(1)
    );
    let p = scratch("recent.log", &text);
    let mut a = args(vec![p.clone()]);
    a.since = Some("2h".into());
    assert_eq!(seqs(a), vec![1]);
    let mut a = args(vec![p]);
    a.until = Some("2h".into());
    assert_eq!(seqs(a), vec![0]);
}

#[test]
fn search_json_prints_the_stored_lines_byte_for_byte() {
    let mut a = args(log());
    a.json = true;
    assert_eq!(search(&a).unwrap(), raw_log());
    let mut a = args(log());
    a.json = true;
    a.action = Some("deny".into());
    let want: String = raw_log()
        .lines()
        .filter(|l| l.contains("\"action\":\"deny\""))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(search(&a).unwrap(), want);
}

#[test]
fn bad_filter_values_are_errors_not_empty_results() {
    for (set, want) in [
        ("action", "`alow` is not an action"),
        ("class", "`reads` is not a statement class"),
        ("outcome", "`fine` is not an outcome"),
    ] {
        let mut a = args(log());
        match set {
            "action" => a.action = Some("alow".into()),
            "class" => a.class = Some("reads".into()),
            _ => a.outcome = Some("fine".into()),
        }
        let e = search(&a).unwrap_err().to_string();
        assert!(e.contains(want), "{e}");
    }
    let e = search(&args(vec![])).unwrap_err().to_string();
    assert!(e.contains("name at least one audit log file"), "{e}");
}

#[test]
fn a_line_that_is_not_json_is_an_error_naming_file_and_line() {
    let good = std::fs::read_to_string(Path::new(DATA).join("audit.log")).unwrap();
    let mut lines: Vec<&str> = good.lines().collect();
    lines.insert(2, "{\"v\":1,\"seq\":14,\"kind\":\"statem");
    let p = scratch("broken.log", &(lines.join("\n") + "\n"));
    for run in [
        |p: PathBuf| search(&args(vec![p])).map(drop),
        |p: PathBuf| {
            export(&ExportArgs {
                files: vec![p],
                format: "jsonl".into(),
            })
            .map(drop)
        },
        |p: PathBuf| {
            export(&ExportArgs {
                files: vec![p],
                format: "csv".into(),
            })
            .map(drop)
        },
        |p: PathBuf| report(&report_args(vec![p])).map(drop),
    ] {
        let e = run(p.clone()).unwrap_err().to_string();
        assert!(
            e.contains("broken.log:3` is not a JSON audit record"),
            "{e}"
        );
    }
    let p = scratch("blank.log", &(good.clone() + "\n"));
    let e = search(&args(vec![p])).unwrap_err().to_string();
    assert!(e.contains("blank.log:7` is not a JSON audit record"), "{e}");
    let p = scratch("array.log", "[1,2]\n");
    let e = search(&args(vec![p])).unwrap_err().to_string();
    assert!(e.contains("array.log:1`"), "{e}");
    let e = search(&args(vec![PathBuf::from("/nonexistent/audit.log")]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot read `/nonexistent/audit.log`"), "{e}");
}

fn export(a: &ExportArgs) -> anyhow::Result<String> {
    let mut out = Vec::new();
    export_to(a, &mut out)?;
    Ok(String::from_utf8(out).unwrap())
}

#[test]
fn export_jsonl_is_byte_identical() {
    let a = ExportArgs {
        files: log(),
        format: "jsonl".into(),
    };
    assert_eq!(export(&a).unwrap(), raw_log());
}

#[test]
fn export_rejects_an_unknown_format() {
    let a = ExportArgs {
        files: log(),
        format: "xml".into(),
    };
    let e = export(&a).unwrap_err().to_string();
    assert!(e.contains("`xml` is not an export format"), "{e}");
}

/// An RFC 4180 reader, to check the export parses back.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let (mut rows, mut row, mut field) = (Vec::new(), Vec::new(), String::new());
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    rows
}

#[test]
fn export_csv_parses_back() {
    let a = ExportArgs {
        files: log(),
        format: "csv".into(),
    };
    let text = export(&a).unwrap();
    assert!(text.contains("\"SELECT \"\"a,b\"\" FROM \"\"odd\"\"\"\"name\"\" WHERE x = ?\""));
    let rows = parse_csv(&text);
    assert_eq!(rows.len(), 19);
    let header = &rows[0];
    assert_eq!(
        header.join(","),
        "seq,time,kind,session,agent,client,database,command,fingerprint,classes,tables,rule,\
         action,outcome,sqlstate,rows,duration_us,request,approver,approval_outcome,reason,channel"
    );
    assert!(rows.iter().all(|r| r.len() == 22), "{rows:?}");
    let col =
        |row: &Vec<String>, name: &str| row[header.iter().position(|h| h == name).unwrap()].clone();
    let by_seq = |n: &str| rows.iter().find(|r| r[0] == n).unwrap();
    let r = by_seq("13");
    assert_eq!(
        col(r, "fingerprint"),
        "SELECT \"a,b\" FROM \"odd\"\"name\" WHERE x = ?"
    );
    assert_eq!(col(r, "tables"), "odd\"name");
    assert_eq!(col(r, "outcome"), "error");
    assert_eq!(col(r, "sqlstate"), "42P01");
    assert_eq!(col(r, "duration_us"), "120");
    let r = by_seq("9");
    assert_eq!(col(r, "classes"), "write;destructive");
    assert_eq!(col(r, "request"), "apr_1");
    assert_eq!(col(r, "approver"), "alice");
    assert_eq!(col(r, "approval_outcome"), "approved");
    assert_eq!(col(r, "rows"), "1");
    let r = by_seq("7");
    assert_eq!(col(r, "kind"), "approval_vote");
    assert_eq!(col(r, "approver"), "alice");
    assert_eq!(col(r, "channel"), "slack");
    assert_eq!(
        col(r, "reason"),
        "ticket OPS-12 <script>alert('vote')</script>"
    );
    let r = by_seq("8");
    assert_eq!(col(r, "approval_outcome"), "approved");
    assert_eq!(col(r, "fingerprint"), "DELETE FROM users WHERE id = ?");
    let r = by_seq("11");
    assert_eq!(col(r, "kind"), "login_failure");
    assert_eq!(col(r, "agent"), "mallory");
    assert_eq!(col(r, "reason"), "password authentication failed");
}

fn report_args(files: Vec<PathBuf>) -> ReportArgs {
    ReportArgs {
        files,
        since: None,
        until: None,
        out: None,
        public_key: vec![],
        anchor: None,
    }
}

fn report(a: &ReportArgs) -> anyhow::Result<String> {
    let mut out = Vec::new();
    report_to(a, &mut out)?;
    Ok(String::from_utf8(out).unwrap())
}

/// The `<table id=…>` section of the page, to look inside one table only.
fn table<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html
        .find(&format!("<table id=\"{id}\">"))
        .unwrap_or_else(|| panic!("no table `{id}`"));
    let len = html[start..].find("</table>").unwrap();
    &html[start..start + len]
}

#[test]
fn report_shows_counts_approvals_denials_and_login_failures() {
    let html = report(&report_args(log())).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    // The fixture has no checkpoints: the real verifier says so, prominently.
    assert!(html.contains("verification: FAILED"), "{html}");
    assert!(html.contains("unsigned tail"), "{html}");
    assert!(html.contains("start of log – end of log"));
    let summary = table(&html, "summary");
    for (k, v) in [
        ("records in period", 18),
        ("sessions started", 2),
        ("statements", 6),
        ("denials", 2),
        ("approval requests", 1),
        ("approved", 1),
        ("refused votes", 1),
        ("login failures", 1),
    ] {
        assert!(
            summary.contains(&format!("<th>{k}</th><td class=\"n\">{v}</td>")),
            "{k}: {summary}"
        );
    }
    let by_agent = table(&html, "by-agent-class");
    assert!(by_agent.contains("<tr><th>agent</th><th>ddl</th><th>destructive</th><th>export</th><th>read</th><th>transaction</th><th>write</th><th>statements</th></tr>"), "{by_agent}");
    assert!(by_agent.contains("<tr><td>analyst</td><td class=\"n\">1</td><td class=\"n\">1</td><td class=\"n\">1</td><td class=\"n\">2</td><td class=\"n\">0</td><td class=\"n\">0</td><td class=\"n\">3</td></tr>"), "{by_agent}");
    let decisions = table(&html, "by-decision");
    assert!(decisions.contains("<td>deny</td><td>denied</td><td class=\"n\">2</td>"));
    assert!(decisions.contains("<td>allow</td><td>error</td><td class=\"n\">1</td>"));
    let approvals = table(&html, "approvals");
    for want in [
        "<code>apr_1</code>",
        "<td>ops-bot</td>",
        "<code>DELETE FROM users WHERE id = ?</code>",
        "<td>prod-deletes</td>",
        "alice — approve via slack: “ticket OPS-12 &lt;script&gt;alert(&#39;vote&#39;)&lt;/script&gt;”",
        "refused: ops-bot via api: self_approval",
        "approved by alice",
        "4.200 s",
    ] {
        assert!(approvals.contains(want), "{want}: {approvals}");
    }
    let denials = table(&html, "denials");
    assert!(denials.contains("DROP TABLE: <code>DROP TABLE orders</code>"));
    assert!(denials.contains(
        "SELECT: <code>SELECT &quot;&lt;script&gt;alert(&#39;fp&#39;)&lt;/script&gt;&quot; FROM t</code>"
    ));
    assert!(denials.contains("<td>no-export</td>"));
    let logins = table(&html, "login-failures");
    assert!(logins.contains("<td>mallory</td>"));
    assert!(logins.contains("<td>password authentication failed</td>"));
    // Nothing from the log reaches the page unescaped, and the page loads nothing.
    assert!(!html.to_lowercase().contains("<script"));
    assert!(!html.contains("src="));
    assert!(!html.contains("href="));
}

#[test]
fn report_keeps_to_its_period() {
    let mut a = report_args(log());
    a.since = Some("2026-11-22".into());
    let html = report(&a).unwrap();
    assert!(html.contains("2026-11-22T00:00:00Z – end of log"));
    let summary = table(&html, "summary");
    assert!(summary.contains("<th>records in period</th><td class=\"n\">6</td>"));
    assert!(summary.contains("<th>records read</th><td class=\"n\">18</td>"));
    assert!(summary.contains(
        "<th>first record in period</th><td class=\"n\">#12 at 2026-11-22T00:00:00.000000Z</td>"
    ));
    assert!(html.contains("No approval requests in the period."));
    assert!(html.contains("No login failures in the period."));
    assert_eq!(table(&html, "denials").matches("<tr>").count(), 2); // header + 1
}

#[test]
fn report_wait_time_falls_back_to_decided_minus_created() {
    let decision = raw_log()
        .lines()
        .find(|l| l.contains("approval_decision"))
        .unwrap()
        .replace(",\"wait_ms\":4200", "");
    let p = scratch("nowait.log", &(decision + "\n"));
    let html = report(&report_args(vec![p])).unwrap();
    assert!(table(&html, "approvals").contains("4.200 s"));
}

#[test]
fn report_writes_out_file() {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("audit_tools/report.html");
    let _ = std::fs::remove_file(&out);
    let mut a = report_args(log());
    a.out = Some(out.clone());
    sqlgate::cli::audit_tools::report(a).unwrap();
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(html.contains("<table id=\"approvals\">"));
}

/// Throughput on a million records; run with
/// `cargo test --release --test audit_tools -- --ignored --nocapture million`.
#[test]
#[ignore]
fn million_lines() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("audit_tools");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("million.log");
    {
        use std::io::Write;
        let mut w = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        for i in 0..1_000_000u64 {
            let (agent, action, outcome, class) = match i % 10 {
                0 => ("etl", "deny", "denied", "write"),
                1..=3 => ("etl", "allow", "ok", "write"),
                _ => ("analyst", "allow", "ok", "read"),
            };
            writeln!(w, "{{\"v\":1,\"seq\":{i},\"prev\":\"{:064x}\",\"time\":\"2026-11-21T{:02}:{:02}:{:02}.{:06}Z\",\"kind\":\"statement\",\"session\":\"s{}\",\"agent\":\"{agent}\",\"client\":\"10.0.0.5:5100\",\"database\":\"shop\",\"command\":\"SELECT\",\"fingerprint\":\"SELECT id, name, total FROM orders WHERE customer_id = ? AND created > ?\",\"sql_sha256\":\"{:064x}\",\"classes\":[\"{class}\"],\"tables\":[\"orders\"],\"rule\":\"reads\",\"action\":\"{action}\",\"outcome\":\"{outcome}\",\"rows\":3,\"duration_us\":250}}",
                i, i / 3_600_000 % 24, i / 60_000 % 60, i / 1000 % 60, i % 1000 * 1000, i % 100, i).unwrap();
        }
    }
    let mb = std::fs::metadata(&path).unwrap().len() as f64 / 1e6;
    let time = |what: &str, f: &dyn Fn() -> usize| {
        let t = std::time::Instant::now();
        let n = f();
        println!("{what}: {:?} ({n} bytes out, {mb:.0} MB in)", t.elapsed());
    };
    let files = vec![path.clone()];
    time("search --agent etl --action deny --since", &|| {
        let mut a = args(files.clone());
        a.agent = Some("etl".into());
        a.action = Some("deny".into());
        a.since = Some("2026-11-21T00:00:00Z".into());
        search(&a).unwrap().len()
    });
    time("search (all, human lines)", &|| {
        search(&args(files.clone())).unwrap().len()
    });
    time("export jsonl", &|| {
        export(&ExportArgs {
            files: files.clone(),
            format: "jsonl".into(),
        })
        .unwrap()
        .len()
    });
    time("export csv", &|| {
        export(&ExportArgs {
            files: files.clone(),
            format: "csv".into(),
        })
        .unwrap()
        .len()
    });
    time("report", &|| {
        report(&report_args(files.clone())).unwrap().len()
    });
}
