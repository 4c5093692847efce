//! The Slack message for one request, in Block Kit: what an approver needs to
//! decide from the phone — who, where, which rule, the statement itself — and
//! the two buttons; once decided, the same message without buttons and with
//! the outcome.
//!
//! Everything is rendered from [`Request::to_json`], the same view the HTTP
//! API gives, so Slack never shows more (e.g. literals) than the rule allows.

use crate::approval::Request;
use serde_json::{json, Value};

pub const APPROVE_ACTION: &str = "sqlgate_approve";
pub const DENY_ACTION: &str = "sqlgate_deny";

/// Slack's limit on a section's text is 3000 characters; leave room for the fence.
const MAX_STATEMENT_CHARS: usize = 2800;
/// Slack's limit on a header's text.
const MAX_HEADER_CHARS: usize = 150;
/// Slack refuses a whole message whose section field passes 2000
/// characters, or whose section text passes 3000 (`invalid_blocks`): what
/// agent-controlled lists make long (tables, notes) is cut below that,
/// saying so (review F, F18b).
const MAX_FIELD_CHARS: usize = 1900;
const MAX_SECTION_CHARS: usize = 2900;
const CUT_NOTE: &str = " _(cut: the whole request is on its page)_";

/// `(text, blocks)` for the pending request, with Approve/Deny buttons.
pub fn requested(r: &Request, public_url: Option<&str>) -> (String, Value) {
    let v = r.to_json();
    let text = format!(
        "Approval requested: `{}` on `{}` wants to run {} (rule `{}`)",
        esc(&r.agent),
        esc(&r.database),
        commands(&v),
        esc(&r.rule)
    );
    let mut blocks = vec![header(&format!("Approval requested: {}", commands(&v)))];
    blocks.extend(details(r, &v));
    blocks.push(context(r, &v, public_url));
    blocks.push(json!({
        "type": "actions",
        "block_id": "sqlgate_decision",
        "elements": [
            button("Approve", APPROVE_ACTION, "primary", &r.id),
            button("Deny", DENY_ACTION, "danger", &r.id),
        ],
    }));
    (text, Value::Array(blocks))
}

/// `(text, blocks)` for the decided request: the outcome, who decided, no buttons.
pub fn decided(r: &Request, public_url: Option<&str>) -> (String, Value) {
    let v = r.to_json();
    let outcome = outcome_line(&v);
    let text = format!("{outcome} — `{}` on `{}`", esc(&r.agent), esc(&r.database));
    let mut blocks = vec![
        header(&format!("{}: {}", state_title(&v), commands(&v))),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": outcome}}),
    ];
    blocks.extend(details(r, &v));
    blocks.push(context(r, &v, public_url));
    (text, Value::Array(blocks))
}

/// The outcome in one line: "✅ Approved by alice, bob", "⛔ Denied by bob: …".
fn outcome_line(v: &Value) -> String {
    let o = &v["outcome"];
    let reason = |r: &Value| {
        r.as_str()
            .map(|r| format!(": {}", inline(r)))
            .unwrap_or_default()
    };
    match o["outcome"].as_str().unwrap_or("") {
        "approved" => format!("✅ *Approved* by {}", names(&o["by"])),
        "denied" => format!(
            "⛔ *Denied* by {}{}",
            esc(o["by"].as_str().unwrap_or("?")),
            reason(&o["reason"])
        ),
        "timed_out" => "⌛ *Timed out* — nobody decided in time; the statement was denied".into(),
        "withdrawn" => format!(
            "↩️ *Withdrawn* — the agent went away{}",
            reason(&o["reason"])
        ),
        other => format!("*{}*", esc(other)),
    }
}

fn state_title(v: &Value) -> &'static str {
    match v["state"].as_str().unwrap_or("") {
        "approved" => "Approved",
        "denied" => "Denied",
        "timed_out" => "Timed out",
        "withdrawn" => "Withdrawn",
        _ => "Decided",
    }
}

/// Who, where, why, and each statement in a code block.
fn details(r: &Request, v: &Value) -> Vec<Value> {
    let stmts = v["statements"].as_array().cloned().unwrap_or_default();
    let classes = join_unique(&stmts, "classes", esc);
    let tables = join_unique(&stmts, "tables", inline);
    let mut fields = vec![
        field("Agent", &format!("`{}`", esc(&r.agent))),
        field("Database", &format!("`{}`", esc(&r.database))),
        field("Rule", &format!("`{}`", esc(&r.rule))),
        field("Classes", &or_dash(&classes)),
        field("Tables", &or_dash(&tables)),
        field("Expires", &esc(v["expires"].as_str().unwrap_or("?"))),
    ];
    if r.quorum > 1 {
        fields.push(field(
            "Approvals needed",
            &format!(
                "{} (groups: {})",
                r.quorum,
                esc(&r.approver_groups.join(", "))
            ),
        ));
    }
    let mut blocks = vec![
        json!({"type": "section", "fields": fields}),
        section(format!("*Reason:* {}", esc(&r.reason))),
    ];
    for s in &stmts {
        let text = s["text"].as_str().unwrap_or("");
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": format!("```{}```", code(text))},
        }));
        if fenced(text).chars().count() > MAX_STATEMENT_CHARS {
            blocks.push(json!({
                "type": "section",
                "text": {"type": "mrkdwn", "text": format!(
                    "_The statement is cut at {MAX_STATEMENT_CHARS} characters: the whole text and its SHA-256 are on the request's page (`sqlgate approvals show {}`)._",
                    esc(&r.id)
                )},
            }));
        }
    }
    if let Some(note) = v["session_note"].as_str() {
        blocks.push(section(format!(":warning: *{}*", esc(note))));
    }
    if let Some(note) = v["names_note"].as_str() {
        blocks.push(section(format!(":information_source: {}", inline(note))));
    }
    if let Some(all) = crate::approval::string_summary(v) {
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": format!("*The whole query string, in order (what runs with it):*\n```{}```", code(&all))},
        }));
    }
    if let Some(params) = v["parameters"].as_array() {
        let shown: Vec<String> = params
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let v = p.as_str().map(crate::safe_text::line_safe);
                format!("${} = {}", i + 1, v.as_deref().unwrap_or("NULL"))
            })
            .collect();
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": format!("*Parameters:*\n```{}```", code(&shown.join("\n")))},
        }));
    }
    blocks
}

/// Request id, votes so far, and the page link.
fn context(r: &Request, v: &Value, public_url: Option<&str>) -> Value {
    let mut parts = vec![format!("Request `{}`", esc(&r.id))];
    if !r.sql_sha256.is_empty() {
        parts.push(format!("SHA-256 `{}`", esc(&r.sql_sha256)));
    }
    let votes: Vec<String> = v["votes"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|c| {
            let verb = if c["approve"] == true {
                "approved"
            } else {
                "denied"
            };
            format!(
                "{} {verb} via {}",
                esc(c["approver"].as_str().unwrap_or("?")),
                esc(c["channel"].as_str().unwrap_or("?"))
            )
        })
        .collect();
    if !votes.is_empty() {
        parts.push(format!("Votes: {}", votes.join("; ")));
    }
    if let Some(base) = public_url {
        parts.push(format!(
            "<{}/approvals/{}|Open in sqlgate>",
            base.trim_end_matches('/'),
            r.id
        ));
    }
    json!({"type": "context", "elements": [{"type": "mrkdwn", "text": parts.join(" · ")}]})
}

fn header(text: &str) -> Value {
    json!({"type": "header", "text": {"type": "plain_text", "text": truncate(text, MAX_HEADER_CHARS)}})
}

fn field(name: &str, value: &str) -> Value {
    json!({"type": "mrkdwn", "text": cut(format!("*{name}:*\n{value}"), MAX_FIELD_CHARS)})
}

/// A section of mrkdwn `text`, cut to what Slack takes.
fn section(text: String) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": cut(text, MAX_SECTION_CHARS)}})
}

/// `s`, or its first characters and [`CUT_NOTE`] within `max`.
fn cut(s: String, max: usize) -> String {
    if s.chars().count() <= max {
        return s;
    }
    let keep = max - CUT_NOTE.chars().count();
    let mut t: String = s.chars().take(keep).collect();
    t.push_str(CUT_NOTE);
    t
}

fn button(label: &str, action: &str, style: &str, id: &str) -> Value {
    json!({
        "type": "button",
        "text": {"type": "plain_text", "text": label},
        "action_id": action,
        "value": id,
        "style": style,
    })
}

/// "DELETE" or "DELETE, UPDATE" for a multi-statement request.
fn commands(v: &Value) -> String {
    let mut c: Vec<&str> = v["statements"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .filter_map(|s| s["command"].as_str())
        .collect();
    c.dedup();
    if c.is_empty() {
        "a statement".into()
    } else {
        c.join(", ")
    }
}

/// The distinct strings of `key` (an array) across statements.
fn join_unique(stmts: &[Value], key: &str, show: fn(&str) -> String) -> String {
    let mut out: Vec<String> = Vec::new();
    for s in stmts {
        for x in s[key].as_array().map(|a| a.as_slice()).unwrap_or_default() {
            if let Some(x) = x.as_str().map(show) {
                if !out.contains(&x) {
                    out.push(x);
                }
            }
        }
    }
    out.join(", ")
}

fn names(v: &Value) -> String {
    let n: Vec<String> = v
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .filter_map(|x| x.as_str().map(esc))
        .collect();
    n.join(", ")
}

fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "—".into()
    } else {
        s.to_owned()
    }
}

/// Slack's mrkdwn treats `&`, `<` and `>` as control characters; control
/// and bidi characters are shown as escapes (`safe_text::message_safe`).
pub fn esc(s: &str) -> String {
    entities(&crate::safe_text::message_safe(s))
}

fn entities(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Agent-controlled text outside a code block (table names): on one line
/// (a newline in a quoted name is shown escaped), in inline code, where
/// `*bold*`, `_italic_`, `~strike~` and bare links are not formatted; a
/// backtick inside, which would end the code, shown as `ˋ`.
fn inline(s: &str) -> String {
    format!(
        "`{}`",
        entities(&crate::safe_text::line_safe(s)).replace('`', "ˋ")
    )
}

/// Statement text for a ``` fence: escaped, a fence inside broken up (so the
/// statement cannot close the block and format the rest), and bounded.
fn code(s: &str) -> String {
    truncate(&fenced(s), MAX_STATEMENT_CHARS)
}

/// The statement as it goes in the fence, before any cut: laid out so that
/// nothing is hidden below blank lines (`safe_text::statement_safe`), and
/// no backtick at all (`ˋ` instead), so no run of them can close the block.
fn fenced(s: &str) -> String {
    entities(&crate::safe_text::statement_safe(s)).replace('`', "ˋ")
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
    t.push('…');
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_mrkdwn_and_fences() {
        assert_eq!(esc("a<b>&c"), "a&lt;b&gt;&amp;c");
        assert_eq!(code("x ```` y"), "x ˋˋˋˋ y");
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 4), "abc");
    }

    #[test]
    fn outcome_lines_name_who_decided() {
        let v = json!({"outcome": {"outcome": "approved", "by": ["alice", "bob"]}});
        assert_eq!(outcome_line(&v), "✅ *Approved* by alice, bob");
        let v = json!({"outcome": {"outcome": "denied", "by": "bob", "reason": "<no>"}});
        assert_eq!(outcome_line(&v), "⛔ *Denied* by bob: `&lt;no&gt;`");
        let v = json!({"outcome": {"outcome": "denied", "by": "bob", "reason": "*ok* `x`"}});
        assert_eq!(outcome_line(&v), "⛔ *Denied* by bob: `*ok* ˋxˋ`");
    }

    #[test]
    fn names_stay_on_one_line_and_blank_lines_are_counted() {
        // Review C, F13.
        let name = format!("a_tmp{}", "\n".repeat(45));
        assert_eq!(inline(&name).lines().count(), 1);
        let text = code(&format!("drop table if exists \"{name}\", public.victim"));
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(text.contains("⟨44 blank lines⟩"), "{text}");
    }

    #[test]
    fn long_lists_are_cut_below_slacks_limits() {
        // Review F, F18b: 45 tables gave a 3068-character field.
        let tables: Vec<String> = (0..45)
            .map(|i| format!("public.a_rather_long_table_name_number_{i:02}"))
            .collect();
        let f = field("Tables", &tables.join(", "));
        let text = f["text"].as_str().unwrap();
        assert!(
            text.chars().count() <= 2000 && text.ends_with(CUT_NOTE),
            "{text}"
        );
        let s = section("x".repeat(5000));
        assert_eq!(
            s["text"]["text"].as_str().unwrap().chars().count(),
            MAX_SECTION_CHARS
        );
        assert_eq!(field("Rule", "`r`")["text"], "*Rule:*\n`r`");
    }

    #[test]
    fn agent_text_cannot_format_or_reorder() {
        assert_eq!(inline("*APPROVED by alice*"), "`*APPROVED by alice*`");
        assert_eq!(esc("a\u{202e}b"), "a\\u{202e}b");
        assert!(code("x\u{1b}[2K").contains("\\u{1b}"));
    }
}
