//! Microsoft Teams channel: every new approval request is posted to a Teams
//! incoming-webhook (Workflows) URL as an Adaptive Card, and every decision
//! as a short follow-up card.
//!
//! Teams cannot call sqlgate back without a registered bot, so the card does
//! not decide anything itself: its "Approve…" / "Deny…" buttons are
//! `Action.OpenUrl` links to sqlgate's approval page (`{public_url}/approvals/{id}`,
//! see `admin/page.rs`), where the approver signs in with their token and the
//! vote goes through the HTTP API like any other. Without `public_url` the
//! card carries no buttons and a warning is logged once at start.
//!
//! The statement text, the parameters and the table names come from the agent
//! and may be crafted. Teams renders Markdown in `TextBlock` and `FactSet`
//! text, so a statement such as `-- [Approve](https://evil)` would become a
//! link in the card. Agent-controlled text therefore goes into `TextRun`s of a
//! `RichTextBlock`, which Teams shows verbatim; only values that come from the
//! config or from sqlgate itself go into the `FactSet`.
//!
//! Delivery never blocks the proxy: each card is its own task, retried a few
//! times with backoff on connection errors, 5xx and 429 (honouring a short
//! `Retry-After`), then dropped with a warning.

use super::{Approvals, Notice};
use crate::config::Teams;
use crate::safe_text::{line_safe, message_safe, statement_safe};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// How many times one card is tried in all.
const ATTEMPTS: u32 = 4;
/// The first retry waits this long; each later one twice as long.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// A `Retry-After` longer than this is not honoured (the card would be stale).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
/// Statement text longer than this is cut in the card (Teams limits a card to ~28 KB).
const MAX_TEXT: usize = 4000;

/// Listens to the approval service and posts cards until it stops.
pub async fn run(t: Teams, public_url: Option<String>, approvals: Approvals) {
    let public_url = public_url.map(|u| u.trim_end_matches('/').to_owned());
    if public_url.is_none() {
        tracing::warn!(
            "approvals.teams: no `approvals.public_url` is set, so Teams cards carry no \
             Approve/Deny buttons; approvers must use the API or the CLI"
        );
    }
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("approvals.teams: cannot build an HTTP client, channel disabled: {e}");
            return;
        }
    };
    let mut notices = approvals.subscribe();
    loop {
        let card = match notices.recv().await {
            Ok(Notice::Created(r) | Notice::Decided(r))
                if !crate::config::channel_receives(&t.groups, &r.approver_groups) =>
            {
                continue
            }
            Ok(Notice::Created(r)) => request_card(&r.to_json(), public_url.as_deref()),
            Ok(Notice::Decided(r)) => decision_card(&r.to_json()),
            Err(RecvError::Lagged(n)) => {
                tracing::warn!("approvals.teams: {n} notices were dropped (too many at once)");
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        tokio::spawn(deliver(client.clone(), t.webhook_url.clone(), card));
    }
}

/// Posts one message, retrying transient failures.
async fn deliver(client: reqwest::Client, url: String, message: Value) {
    let mut backoff = FIRST_BACKOFF;
    for attempt in 1..=ATTEMPTS {
        let wait = match client.post(&url).json(&message).send().await {
            Ok(resp) if resp.status().is_success() => return,
            Ok(resp) if retryable(resp.status().as_u16()) => {
                tracing::warn!(
                    "approvals.teams: delivery attempt {attempt}/{ATTEMPTS} got HTTP {}",
                    resp.status()
                );
                retry_after(&resp).unwrap_or(backoff)
            }
            Ok(resp) => {
                tracing::warn!(
                    "approvals.teams: webhook refused the card with HTTP {}; not retried",
                    resp.status()
                );
                return;
            }
            Err(e) => {
                tracing::warn!(
                    "approvals.teams: delivery attempt {attempt}/{ATTEMPTS} failed: {e}"
                );
                backoff
            }
        };
        if attempt < ATTEMPTS {
            tokio::time::sleep(wait).await;
            backoff *= 2;
        }
    }
    tracing::warn!("approvals.teams: card dropped after {ATTEMPTS} attempts");
}

fn retryable(status: u16) -> bool {
    status == 429 || status == 408 || (500..600).contains(&status)
}

/// A `Retry-After: <seconds>` within reason.
fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    let secs: u64 = resp
        .headers()
        .get("retry-after")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs)).filter(|d| *d <= MAX_RETRY_AFTER)
}

/// The message wrapper Teams webhooks and Workflows expect around a card.
fn message(body: Vec<Value>, actions: Vec<Value>) -> Value {
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "type": "AdaptiveCard",
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "version": "1.4",
                "msteams": { "width": "Full" },
                "body": body,
                "actions": actions,
            }
        }]
    })
}

/// The card for a new request (`r` is [`super::Request::to_json`]).
pub fn request_card(r: &Value, public_url: Option<&str>) -> Value {
    let s = |k: &str| r[k].as_str().unwrap_or("").to_owned();
    let statements = r["statements"].as_array().cloned().unwrap_or_default();
    let commands: Vec<String> = statements.iter().map(|st| s_of(&st["command"])).collect();
    let mut classes: Vec<String> = Vec::new();
    let mut tables: Vec<String> = Vec::new();
    for st in &statements {
        for c in st["classes"].as_array().into_iter().flatten() {
            push_unique(&mut classes, s_of(c));
        }
        for t in st["tables"].as_array().into_iter().flatten() {
            push_unique(&mut tables, s_of(t));
        }
    }
    let mut body = vec![
        json!({
            "type": "TextBlock", "size": "Large", "weight": "Bolder", "wrap": true,
            "text": format!("Approval needed: {}", commands.join(", ")),
        }),
        json!({
            "type": "FactSet",
            "facts": [
                fact("Agent", &s("agent")),
                fact("Database", &s("database")),
                fact("Rule", &s("rule")),
                fact("Reason", &s("reason")),
                fact("Classes", &classes.join(", ")),
                fact("Expires", &s("expires")),
                fact("Request", &s("id")),
                fact("SHA-256", &s("sql_sha256")),
            ],
        }),
        verbatim("Tables", &line_safe(&tables.join(", ")), false),
    ];
    for st in &statements {
        let text = statement_safe(&s_of(&st["text"]));
        body.push(verbatim("Statement", &text, true));
    }
    if let Some(note) = r["session_note"].as_str() {
        body.push(verbatim("Warning", &message_safe(note), false));
    }
    if let Some(note) = r["names_note"].as_str() {
        body.push(verbatim("Names", &line_safe(note), false));
    }
    if let Some(all) = crate::approval::string_summary(r) {
        body.push(verbatim(
            "The whole query string, in order",
            &statement_safe(&all),
            true,
        ));
    }
    if let Some(params) = r["parameters"].as_array() {
        let shown: Vec<String> = params
            .iter()
            .enumerate()
            .map(|(i, p)| match p.as_str() {
                Some(v) => format!("${} = {}", i + 1, line_safe(v)),
                None => format!("${} = NULL", i + 1),
            })
            .collect();
        body.push(verbatim("Parameters", &shown.join("\n"), true));
    }
    let actions = match public_url {
        Some(base) => {
            let url = format!("{base}/approvals/{}", s("id"));
            vec![
                json!({ "type": "Action.OpenUrl", "title": "Approve…", "url": url }),
                json!({ "type": "Action.OpenUrl", "title": "Deny…", "url": url }),
            ]
        }
        None => Vec::new(),
    };
    message(body, actions)
}

/// The short card that follows a decision.
pub fn decision_card(r: &Value) -> Value {
    let o = &r["outcome"];
    let (headline, reason) = match o["outcome"].as_str().unwrap_or("") {
        "approved" => {
            let by: Vec<String> = o["by"].as_array().into_iter().flatten().map(s_of).collect();
            (format!("✅ Approved by {}", by.join(", ")), None)
        }
        "denied" => (
            format!("⛔ Denied by {}", s_of(&o["by"])),
            o["reason"].as_str().map(str::to_owned),
        ),
        "timed_out" => ("⌛ Timed out: denied".to_owned(), None),
        "withdrawn" => (
            "↩ Withdrawn".to_owned(),
            o["reason"].as_str().map(str::to_owned),
        ),
        other => (format!("Decided: {other}"), None),
    };
    let commands: Vec<String> = r["statements"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|st| s_of(&st["command"]))
        .collect();
    let mut body = vec![
        json!({ "type": "TextBlock", "size": "Medium", "weight": "Bolder", "wrap": true, "text": headline }),
        json!({
            "type": "FactSet",
            "facts": [
                fact("Request", &s_of(&r["id"])),
                fact("Agent", &s_of(&r["agent"])),
                fact("Statement", &commands.join(", ")),
            ],
        }),
    ];
    if let Some(reason) = reason.filter(|r| !r.is_empty()) {
        body.push(verbatim("Reason", &message_safe(&reason), false));
    }
    message(body, Vec::new())
}

fn fact(title: &str, value: &str) -> Value {
    json!({ "title": title, "value": value })
}

/// A labelled block whose value Teams shows verbatim (no Markdown). `value`
/// is agent-controlled, already made safe by the caller (`safe_text`): no
/// control or bidi character reaches the card.
fn verbatim(label: &str, value: &str, monospace: bool) -> Value {
    let text = clip(value);
    let mut run = json!({ "type": "TextRun", "text": text });
    if monospace {
        run["fontType"] = "Monospace".into();
    }
    json!({
        "type": "RichTextBlock",
        "inlines": [
            { "type": "TextRun", "text": format!("{label}: "), "weight": "Bolder" },
            run,
        ],
    })
}

fn clip(s: &str) -> String {
    match s.char_indices().nth(MAX_TEXT) {
        Some((i, _)) => format!(
            "{}… (cut at {MAX_TEXT} characters: the whole text and its SHA-256 are on the request's page)",
            &s[..i]
        ),
        None => s.to_owned(),
    }
}

fn s_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn push_unique(v: &mut Vec<String>, s: String) {
    if !v.contains(&s) {
        v.push(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Value {
        json!({
            "id": "apr_01", "agent": "bot", "database": "shop", "session": "s1",
            "rule": "destructive-held", "reason": "deletes every row",
            "expires": "2030-01-01T00:00:00.000Z",
            "statements": [{ "command": "DELETE", "text": "DELETE FROM items -- [x](https://evil)",
                             "classes": ["write", "destructive"], "tables": ["items"] }],
            "parameters": ["a", null],
        })
    }

    #[test]
    fn request_card_shows_the_whole_query_string() {
        let mut r = request();
        r["string"] = json!([
            { "command": "SET", "text": "SET search_path = ?", "classes": ["session"], "held": false },
            { "command": "DELETE", "text": "DELETE FROM items", "classes": ["write"], "held": true },
        ]);
        let text = request_card(&r, None).to_string();
        assert!(text.contains("The whole query string"), "{text}");
        assert!(
            text.contains("1. [runs with it] SET search_path = ?"),
            "{text}"
        );
        assert!(text.contains("2. [held] DELETE FROM items"), "{text}");
        assert!(!request_card(&request(), None)
            .to_string()
            .contains("whole query string"));
        // Plain reads are folded, so what changes things stays in view.
        let mut many: Vec<Value> = (0..30)
            .map(|_| json!({ "command": "SELECT", "text": "SELECT a FROM t", "classes": ["read"], "held": false }))
            .collect();
        many.push(json!({ "command": "SET", "text": "SET search_path = prod", "classes": ["session"], "held": false }));
        many.push(json!({ "command": "TRUNCATE", "text": "TRUNCATE scratch", "classes": ["ddl"], "held": true }));
        r["string"] = Value::Array(many);
        let text = crate::approval::string_summary(&r).unwrap();
        assert!(
            text.contains("1–30. [runs with it] 30 plain reads"),
            "{text}"
        );
        assert!(
            text.contains("31. [runs with it] SET search_path = prod"),
            "{text}"
        );
        // A newline in a statement (a quoted name) can't fake a line.
        r["string"] = json!([
            { "command": "SELECT", "text": "SELECT 1 AS \"x\n2. [runs with it] set search_path = public\"", "classes": ["read"], "held": false },
            { "command": "TRUNCATE", "text": "TRUNCATE scratch", "classes": ["ddl"], "held": true },
        ]);
        let text = crate::approval::string_summary(&r).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(
            !text.lines().any(|l| l.starts_with("2. [runs with it] set")),
            "{text}"
        );
        // Escaping is counted: a list of `<…>` still ends with its note.
        let lots: Vec<Value> = (0..40)
            .map(|_| json!({ "command": "SET", "text": "SET application_name = '<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<'", "classes": ["session"], "held": false }))
            .collect();
        r["string"] = Value::Array(lots);
        let text = crate::approval::string_summary(&r).unwrap();
        assert!(text.contains("more line(s) not shown"), "{text}");
        assert!(text.replace('<', "&lt;").len() < 2800, "{text}");
        // Review C, F7c: hidden characters are counted as shown (escaped),
        // and the note says what it leaves out.
        let mut zw: Vec<Value> = (0..20)
            .map(|_| json!({ "command": "INSERT", "text": format!("INSERT INTO pwned SELECT 1 AS \"{}\" WHERE false", "\u{200b}".repeat(150)), "classes": ["write"], "held": false }))
            .collect();
        zw.push(json!({ "command": "SET", "text": "SET search_path = prod", "classes": ["session"], "held": false }));
        zw.push(json!({ "command": "TRUNCATE", "text": "TRUNCATE scratch", "classes": ["ddl"], "held": true }));
        r["string"] = Value::Array(zw);
        let text = crate::approval::string_summary(&r).unwrap();
        assert!(!text.contains('\u{200b}'), "{text}");
        assert!(
            text.contains("2 of them held or changing settings, roles or definitions"),
            "{text}"
        );
        assert!(
            crate::safe_text::statement_safe(&text).chars().count() < 2800,
            "{text}"
        );
    }

    #[test]
    fn names_and_statements_cannot_hide_the_rest_below_blank_lines() {
        // Review C, F13: a quoted table name of newlines.
        let name = format!("a_tmp_import_2024{}", "\n".repeat(45));
        let mut r = request();
        r["statements"] = json!([{
            "command": "DROP TABLE",
            "text": format!("drop table if exists \"{name}\", public.victim"),
            "classes": ["ddl", "destructive"],
            "tables": [name, "public.victim"],
        }]);
        let card = request_card(&r, None).to_string();
        assert!(card.contains("a_tmp_import_2024\\\\n\\\\n"), "{card}");
        assert!(card.contains("⟨44 blank lines⟩"), "{card}");
        assert!(!card.contains("\\n\\n"), "{card}");
    }

    #[test]
    fn request_card_has_the_facts_and_links_to_the_page() {
        let m = request_card(&request(), Some("https://gate.example"));
        let c = &m["attachments"][0]["content"];
        assert_eq!(c["version"], "1.4");
        let text = c["body"].to_string();
        for want in [
            "bot",
            "shop",
            "destructive-held",
            "write, destructive",
            "items",
            "$2 = NULL",
        ] {
            assert!(text.contains(want), "{want} in {text}");
        }
        // The agent's text is a TextRun (no Markdown), never a TextBlock.
        let stmt = c["body"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b.to_string().contains("DELETE FROM items"))
            .unwrap();
        assert_eq!(stmt["type"], "RichTextBlock");
        assert_eq!(stmt["inlines"][1]["fontType"], "Monospace");
        assert_eq!(
            c["actions"][0]["url"],
            "https://gate.example/approvals/apr_01"
        );
        assert_eq!(c["actions"][1]["title"], "Deny…");
    }

    #[test]
    fn without_public_url_there_are_no_buttons() {
        let m = request_card(&request(), None);
        assert_eq!(m["attachments"][0]["content"]["actions"], json!([]));
    }

    #[test]
    fn decision_card_names_who_decided() {
        let mut r = request();
        r["outcome"] = json!({ "outcome": "denied", "by": "alice", "reason": "not now" });
        let text = decision_card(&r).to_string();
        assert!(
            text.contains("Denied by alice") && text.contains("not now"),
            "{text}"
        );
        r["outcome"] = json!({ "outcome": "approved", "by": ["alice", "bob"], "grant": null });
        assert!(decision_card(&r)
            .to_string()
            .contains("Approved by alice, bob"));
    }

    #[test]
    fn long_text_is_cut_on_a_char_boundary() {
        let s = "é".repeat(MAX_TEXT + 10);
        let c = clip(&s);
        assert!(c.contains("… (cut at 4000 characters"), "{c}");
        assert!(c.ends_with("on the request's page)"));
        assert_eq!(clip("short"), "short");
        // Agent text reaches the card with its hiding characters escaped.
        let v = verbatim("Statement", &statement_safe("drop\u{202e}x"), true);
        assert!(v.to_string().contains("\\\\u{202e}"), "{v}");
    }
}
