//! `audit report`: an HTML evidence report for auditors over one period.
//!
//! The log is streamed once into an [`Evidence`] summary (counts, and the
//! approvals, denials and login failures that must be listed one by one), then
//! rendered into `report.html`. The page is self-contained — no scripts, no
//! external assets, a CSP that forbids both — and every value is HTML-escaped:
//! fingerprints come from agents and reasons from approvers, neither trusted.

use super::filter::Period;
use super::records::{self, Record};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::PathBuf;

const TEMPLATE: &str = include_str!("report.html");

/// One vote as the report shows it.
#[derive(Debug, Default)]
struct VoteRow {
    approver: String,
    vote: String,
    channel: String,
    reason: String,
}

/// One approval request, assembled from its request, vote and decision records.
#[derive(Debug, Default)]
struct Approval {
    id: String,
    requester: String,
    created: Option<String>,
    rule: String,
    statements: Vec<String>,
    votes: Vec<VoteRow>,
    refused: Vec<String>,
    state: Option<String>,
    decided_by: String,
    wait_ms: Option<u64>,
}

/// A listed statement (a denial).
#[derive(Debug)]
struct Denial {
    seq: Option<u64>,
    time: String,
    agent: String,
    session: String,
    command: String,
    fingerprint: String,
    rule: String,
    decision: String,
    approval: String,
}

/// Everything the report shows, gathered in one pass.
#[derive(Debug, Default)]
pub struct Evidence {
    records: u64,
    in_period: u64,
    first: Option<(Option<u64>, String)>,
    last: Option<(Option<u64>, String)>,
    kinds: BTreeMap<String, u64>,
    statements: u64,
    /// agent → (statements, class → statements).
    by_agent: BTreeMap<String, (u64, HashMap<String, u64>)>,
    classes: BTreeSet<String>,
    /// action → outcome → statements.
    by_decision: BTreeMap<String, BTreeMap<String, u64>>,
    approvals: Vec<Approval>,
    approval_index: HashMap<String, usize>,
    denials: Vec<Denial>,
    login_failures: Vec<[String; 5]>,
}

impl Evidence {
    /// Reads `files`, keeping what falls in `period`.
    pub fn gather(files: &[PathBuf], period: &Period) -> anyhow::Result<Evidence> {
        let mut ev = Evidence::default();
        records::for_each(files, |path, line, _raw, rec| {
            ev.records += 1;
            if period.contains(&path.display().to_string(), line, rec)? {
                ev.add(rec);
            }
            Ok(())
        })?;
        Ok(ev)
    }

    fn add(&mut self, rec: &Record<'_>) {
        self.in_period += 1;
        let here = (rec.seq, rec.time.as_deref().unwrap_or("").to_owned());
        self.first.get_or_insert_with(|| here.clone());
        self.last = Some(here);
        *self.kinds.entry(rec.kind().to_owned()).or_default() += 1;
        let s = |v: &Option<std::borrow::Cow<'_, str>>| v.as_deref().unwrap_or("").to_owned();
        match rec.kind() {
            "statement" => self.add_statement(rec),
            "login_failure" => self.login_failures.push([
                s(&rec.time),
                s(&rec.client),
                s(&rec.agent),
                s(&rec.database),
                rec.reason.clone().unwrap_or_default(),
            ]),
            "approval_request" | "approval_decision" => {
                let a = self.approval(rec);
                a.requester = s(&rec.agent);
                a.rule = s(&rec.rule);
                a.created = rec.created.clone().or(a.created.take());
                if !rec.held().is_empty() {
                    a.statements = rec.held().iter().map(|h| h.text.clone()).collect();
                }
                if rec.kind() == "approval_decision" {
                    a.state = rec.state.clone();
                    a.decided_by = super::export::approvers(rec);
                    a.wait_ms = rec.wait_ms.or_else(|| wait(a.created.as_deref(), rec));
                    // The decision lists every vote; it supersedes vote records.
                    if let Some(v) = rec.votes.as_ref().filter(|v| !v.is_empty()) {
                        a.votes = v
                            .iter()
                            .map(|v| VoteRow {
                                approver: v.approver.clone(),
                                vote: if v.approve { "approve" } else { "deny" }.into(),
                                channel: v.channel.clone(),
                                reason: v.reason.clone().unwrap_or_default(),
                            })
                            .collect();
                    }
                }
            }
            "approval_vote" => {
                let row = VoteRow {
                    approver: rec.approver.clone().unwrap_or_default(),
                    vote: rec.vote.clone().unwrap_or_default(),
                    channel: rec.channel.clone().unwrap_or_default(),
                    reason: rec.reason.clone().unwrap_or_default(),
                };
                let a = self.approval(rec);
                if a.requester.is_empty() {
                    a.requester = s(&rec.agent);
                }
                if !a.votes.iter().any(|v| v.approver == row.approver) {
                    a.votes.push(row);
                }
            }
            "approval_vote_refused" => {
                let note = format!(
                    "{} via {}: {}",
                    rec.approver.as_deref().unwrap_or("?"),
                    rec.channel.as_deref().unwrap_or("?"),
                    rec.why.as_deref().unwrap_or("?")
                );
                self.approval(rec).refused.push(note);
            }
            _ => {}
        }
    }

    fn add_statement(&mut self, rec: &Record<'_>) {
        self.statements += 1;
        let agent = rec.agent.as_deref().unwrap_or("");
        // Keys are allocated only the first time an agent or class is seen:
        // a million statements must not mean a million small allocations.
        if !self.by_agent.contains_key(agent) {
            self.by_agent.insert(agent.to_owned(), Default::default());
        }
        let Some((total, classes)) = self.by_agent.get_mut(agent) else {
            return;
        };
        *total += 1;
        for c in rec.classes.iter().flatten() {
            match classes.get_mut(c.as_ref()) {
                Some(n) => *n += 1,
                None => {
                    classes.insert(c.to_string(), 1);
                    self.classes.insert(c.to_string());
                }
            }
        }
        let action = rec.action.as_deref().unwrap_or("");
        let outcome = rec.outcome_str().unwrap_or("");
        bump(bump_map(&mut self.by_decision, action), outcome);
        if action == "deny" || outcome == "denied" {
            let s = |v: &Option<std::borrow::Cow<'_, str>>| v.as_deref().unwrap_or("").to_owned();
            self.denials.push(Denial {
                seq: rec.seq,
                time: s(&rec.time),
                agent: agent.to_owned(),
                session: s(&rec.session),
                command: s(&rec.command),
                fingerprint: s(&rec.fingerprint),
                rule: s(&rec.rule),
                decision: format!("{action}/{outcome}"),
                approval: rec
                    .approval
                    .as_ref()
                    .map(|a| {
                        format!(
                            "{} by {}",
                            a.outcome.as_deref().unwrap_or("?"),
                            a.by.join(", ")
                        )
                    })
                    .unwrap_or_default(),
            });
        }
    }

    /// The approval `rec` is about, created on first sight.
    fn approval(&mut self, rec: &Record<'_>) -> &mut Approval {
        let id = rec.request.clone().unwrap_or_default();
        let i = *self.approval_index.entry(id.clone()).or_insert_with(|| {
            self.approvals.push(Approval {
                id,
                ..Approval::default()
            });
            self.approvals.len() - 1
        });
        &mut self.approvals[i]
    }
}

/// The inner map under `key`, created (and its key allocated) on first use.
fn bump_map<'m>(
    m: &'m mut BTreeMap<String, BTreeMap<String, u64>>,
    key: &str,
) -> &'m mut BTreeMap<String, u64> {
    if !m.contains_key(key) {
        m.insert(key.to_owned(), BTreeMap::new());
    }
    m.get_mut(key).expect("inserted above")
}

/// Adds one under `key`, allocating the key only on first use.
fn bump(m: &mut BTreeMap<String, u64>, key: &str) {
    match m.get_mut(key) {
        Some(n) => *n += 1,
        None => {
            m.insert(key.to_owned(), 1);
        }
    }
}

/// Decided − created, when the decision does not carry `wait_ms`.
fn wait(created: Option<&str>, rec: &Record<'_>) -> Option<u64> {
    let c = humantime::parse_rfc3339(created?).ok()?;
    let d = humantime::parse_rfc3339(rec.decided.as_deref()?).ok()?;
    Some(d.duration_since(c).ok()?.as_millis() as u64)
}

/// What the page header needs besides the evidence.
pub struct Header<'a> {
    pub period: String,
    pub generated: String,
    pub files: &'a [PathBuf],
    pub verification: &'a str,
}

/// Renders the report page.
pub fn render(ev: &Evidence, h: &Header<'_>) -> String {
    let files: Vec<String> = h.files.iter().map(|f| f.display().to_string()).collect();
    let title = format!("sqlgate audit evidence report: {}", h.period);
    let body = body(ev);
    fill(
        TEMPLATE,
        &[
            ("title", esc(&title)),
            ("period", esc(&h.period)),
            ("generated", esc(&h.generated)),
            ("version", esc(env!("CARGO_PKG_VERSION"))),
            ("files", esc(&files.join(", "))),
            ("verification", esc(h.verification)),
            ("body", body),
        ],
    )
}

/// Replaces `{{name}}` in one pass, so a substituted value is never rescanned.
fn fill(template: &str, values: &[(&str, String)]) -> String {
    let mut out = String::with_capacity(template.len() + 4096);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}").and_then(|end| {
            let v = values.iter().find(|(k, _)| *k == &after[..end])?;
            Some((end, &v.1))
        }) {
            Some((end, v)) => {
                out.push_str(v);
                rest = &after[end + 2..];
            }
            None => {
                out.push_str("{{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn body(ev: &Evidence) -> String {
    let mut b = String::new();
    summary(&mut b, ev);
    by_agent_class(&mut b, ev);
    by_decision(&mut b, ev);
    approvals(&mut b, ev);
    denials(&mut b, ev);
    logins(&mut b, ev);
    b
}

fn summary(b: &mut String, ev: &Evidence) {
    let kind = |k: &str| ev.kinds.get(k).copied().unwrap_or(0);
    let state = |s: &str| {
        ev.approvals
            .iter()
            .filter(|a| a.state.as_deref() == Some(s))
            .count() as u64
    };
    let pending = ev.approvals.iter().filter(|a| a.state.is_none()).count() as u64;
    let at = |x: &Option<(Option<u64>, String)>| match x {
        Some((Some(seq), t)) => format!("#{seq} at {t}"),
        Some((None, t)) => t.clone(),
        None => "—".into(),
    };
    b.push_str("<h2>Summary</h2>\n<table id=\"summary\">\n");
    let rows: [(&str, String); 15] = [
        ("records in period", ev.in_period.to_string()),
        ("records read", ev.records.to_string()),
        ("first record in period", at(&ev.first)),
        ("last record in period", at(&ev.last)),
        ("sessions started", kind("session_start").to_string()),
        ("statements", ev.statements.to_string()),
        ("denials", ev.denials.len().to_string()),
        ("approval requests", ev.approvals.len().to_string()),
        ("approved", state("approved").to_string()),
        ("denied by approvers", state("denied").to_string()),
        ("timed out", state("timed_out").to_string()),
        ("withdrawn", state("withdrawn").to_string()),
        ("no decision in period", pending.to_string()),
        ("refused votes", kind("approval_vote_refused").to_string()),
        ("login failures", ev.login_failures.len().to_string()),
    ];
    for (k, v) in rows {
        let _ = writeln!(b, "<tr><th>{}</th><td class=\"n\">{}</td></tr>", k, esc(&v));
    }
    b.push_str("</table>\n");
}

fn by_agent_class(b: &mut String, ev: &Evidence) {
    b.push_str("<h2>Statements by agent and class</h2>\n");
    if ev.by_agent.is_empty() {
        b.push_str("<p class=\"none\">No statements in the period.</p>\n");
        return;
    }
    b.push_str("<p>A statement with several classes counts under each.</p>\n");
    b.push_str("<table id=\"by-agent-class\">\n<tr><th>agent</th>");
    for c in &ev.classes {
        let _ = write!(b, "<th>{}</th>", esc(c));
    }
    b.push_str("<th>statements</th></tr>\n");
    for (agent, (total, classes)) in &ev.by_agent {
        let _ = write!(b, "<tr><td>{}</td>", esc(agent));
        for c in &ev.classes {
            let n = classes.get(c).copied().unwrap_or(0);
            let _ = write!(b, "<td class=\"n\">{n}</td>");
        }
        let _ = writeln!(b, "<td class=\"n\">{total}</td></tr>");
    }
    b.push_str("</table>\n");
}

fn by_decision(b: &mut String, ev: &Evidence) {
    b.push_str("<h2>Statements by decision</h2>\n");
    if ev.by_decision.is_empty() {
        b.push_str("<p class=\"none\">No statements in the period.</p>\n");
        return;
    }
    b.push_str(
        "<table id=\"by-decision\">\n<tr><th>action</th><th>outcome</th><th>statements</th></tr>\n",
    );
    for (action, outcomes) in &ev.by_decision {
        for (outcome, n) in outcomes {
            let _ = writeln!(
                b,
                "<tr><td>{}</td><td>{}</td><td class=\"n\">{n}</td></tr>",
                esc(action),
                esc(outcome)
            );
        }
    }
    b.push_str("</table>\n");
}

fn approvals(b: &mut String, ev: &Evidence) {
    b.push_str("<h2>Approvals</h2>\n");
    if ev.approvals.is_empty() {
        b.push_str("<p class=\"none\">No approval requests in the period.</p>\n");
        return;
    }
    b.push_str("<table id=\"approvals\">\n<tr><th>request</th><th>requester</th><th>statement</th><th>rule</th><th>approvers</th><th>outcome</th><th>wait</th></tr>\n");
    for a in &ev.approvals {
        let mut votes = String::from("<ul class=\"votes\">");
        for v in &a.votes {
            let _ = write!(
                votes,
                "<li>{} — {} via {}{}</li>",
                esc(&v.approver),
                esc(&v.vote),
                esc(&v.channel),
                if v.reason.is_empty() {
                    String::new()
                } else {
                    format!(": “{}”", esc(&v.reason))
                }
            );
        }
        for r in &a.refused {
            let _ = write!(votes, "<li>refused: {}</li>", esc(r));
        }
        votes.push_str("</ul>");
        let outcome = match (&a.state, a.decided_by.is_empty()) {
            (Some(s), true) => esc(s),
            (Some(s), false) => format!("{} by {}", esc(s), esc(&a.decided_by)),
            (None, _) => "<span class=\"none\">no decision in period</span>".into(),
        };
        let wait = a.wait_ms.map(fmt_wait).unwrap_or_else(|| "—".to_owned());
        let stmts: Vec<String> = a
            .statements
            .iter()
            .map(|s| format!("<code>{}</code>", esc(s)))
            .collect();
        let _ = writeln!(
            b,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td></tr>",
            esc(&a.id),
            esc(&a.requester),
            stmts.join("<br>"),
            esc(&a.rule),
            votes,
            outcome,
            esc(&wait)
        );
    }
    b.push_str("</table>\n");
}

/// `1234` ms → `1.234 s`; minutes and hours past 60 s.
fn fmt_wait(ms: u64) -> String {
    match ms {
        0..60_000 => format!("{}.{:03} s", ms / 1000, ms % 1000),
        60_000..3_600_000 => format!("{} min {} s", ms / 60_000, ms % 60_000 / 1000),
        _ => format!("{} h {} min", ms / 3_600_000, ms % 3_600_000 / 60_000),
    }
}

fn denials(b: &mut String, ev: &Evidence) {
    b.push_str("<h2>Denials</h2>\n");
    if ev.denials.is_empty() {
        b.push_str("<p class=\"none\">No denied statements in the period.</p>\n");
        return;
    }
    b.push_str("<table id=\"denials\">\n<tr><th>seq</th><th>time</th><th>agent</th><th>session</th><th>statement</th><th>rule</th><th>decision</th><th>approval</th></tr>\n");
    for d in &ev.denials {
        let _ = writeln!(
            b,
            "<tr><td class=\"n\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}: <code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            d.seq.map(|s| s.to_string()).unwrap_or_default(),
            esc(&d.time),
            esc(&d.agent),
            esc(&d.session),
            esc(&d.command),
            esc(&d.fingerprint),
            esc(&d.rule),
            esc(&d.decision),
            esc(&d.approval)
        );
    }
    b.push_str("</table>\n");
}

fn logins(b: &mut String, ev: &Evidence) {
    b.push_str("<h2>Login failures</h2>\n");
    if ev.login_failures.is_empty() {
        b.push_str("<p class=\"none\">No login failures in the period.</p>\n");
        return;
    }
    b.push_str("<table id=\"login-failures\">\n<tr><th>time</th><th>client</th><th>agent</th><th>database</th><th>reason</th></tr>\n<tr>");
    for (i, f) in ev.login_failures.iter().enumerate() {
        if i > 0 {
            b.push_str("<tr>");
        }
        for v in f {
            let _ = write!(b, "<td>{}</td>", esc(v));
        }
        b.push_str("</tr>\n");
    }
    b.push_str("</table>\n");
}

/// HTML-escapes text for element content and quoted attributes; the
/// characters that reorder or hide text (bidi overrides, zero-width ones,
/// controls: `safe_text::hides`) show as their `\u{..}` escapes, so an
/// agent's statement displays as what it is (review H, H4: a U+202E in a
/// statement made it read backwards).
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\n' | '\t' => out.push(c),
            c if crate::safe_text::hides(c) => out.push_str(&c.escape_unicode().to_string()),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_fills_once() {
        assert_eq!(
            esc("<script>alert('x')&\"</script>"),
            "&lt;script&gt;alert(&#39;x&#39;)&amp;&quot;&lt;/script&gt;"
        );
        assert_eq!(
            esc("SELECT 1 -- \u{202e}DELETE\u{200b}\n"),
            "SELECT 1 -- \\u{202e}DELETE\\u{200b}\n"
        );
        let out = fill(
            "a {{x}} b {{y}} {{nope}}",
            &[("x", "{{y}}".into()), ("y", "Y".into())],
        );
        assert_eq!(out, "a {{y}} b Y {{nope}}");
    }

    #[test]
    fn waits() {
        assert_eq!(fmt_wait(1234), "1.234 s");
        assert_eq!(fmt_wait(125_000), "2 min 5 s");
        assert_eq!(fmt_wait(7_500_000), "2 h 5 min");
    }
}
