//! The one-line human form of a record that `audit search` prints.
//!
//! Fingerprints, reasons and names come from agents and approvers, so control
//! characters are escaped: a crafted statement must not be able to rewrite
//! the operator's terminal or forge extra result lines.

use super::export::approvers;
use super::records::Record;
use std::fmt::Write as _;

/// `#seq time kind agent summary [→ decision]`.
pub fn line(rec: &Record<'_>) -> String {
    let mut s = String::with_capacity(160);
    if let Some(seq) = rec.seq {
        let _ = write!(s, "#{seq} ");
    }
    let _ = write!(
        s,
        "{} {:<14} {}",
        rec.time.as_deref().unwrap_or("-"),
        rec.kind(),
        rec.agent.as_deref().unwrap_or("-")
    );
    let mut kv = |k: &str, v: Option<&str>| {
        if let Some(v) = v {
            let _ = write!(s, " {k}={v}");
        }
    };
    match rec.kind() {
        "statement" => {
            kv("session", rec.session.as_deref());
            let _ = write!(
                s,
                " {}: {} → {}/{}",
                rec.command.as_deref().unwrap_or("?"),
                rec.fingerprint.as_deref().unwrap_or(""),
                rec.action.as_deref().unwrap_or("?"),
                rec.outcome_str().unwrap_or("?"),
            );
            if let Some(code) = &rec.sqlstate {
                let _ = write!(s, " ({code})");
            }
            if let Some(a) = &rec.approval {
                let _ = write!(
                    s,
                    " approval={} by={}",
                    a.outcome.as_deref().unwrap_or("?"),
                    a.by.join(",")
                );
            }
        }
        "session_start" | "session_end" => {
            kv("session", rec.session.as_deref());
            kv("client", rec.client.as_deref());
            kv("database", rec.database.as_deref());
            if let Some(super::records::Statements::Count(n)) = &rec.statements {
                let _ = write!(s, " statements={n}");
            }
        }
        "login_failure" => {
            kv("client", rec.client.as_deref());
            kv("database", rec.database.as_deref());
            kv("reason", rec.reason.as_deref());
        }
        "approval_request" | "approval_decision" => {
            kv("request", rec.request.as_deref());
            kv("rule", rec.rule.as_deref());
            kv("state", rec.state.as_deref());
            let by = approvers(rec);
            kv("by", (!by.is_empty()).then_some(by.as_str()));
            if let Some(w) = rec.wait_ms {
                let _ = write!(s, " wait={w}ms");
            }
            for h in rec.held() {
                let _ = write!(s, " {}: {}", h.command, h.text);
            }
        }
        "approval_vote" | "approval_vote_refused" => {
            kv("request", rec.request.as_deref());
            kv("approver", rec.approver.as_deref());
            kv("vote", rec.vote.as_deref());
            kv("channel", rec.channel.as_deref());
            kv("reason", rec.reason.as_deref());
            kv("why", rec.why.as_deref());
        }
        "approval_grant_used" => {
            kv("rule", rec.rule.as_deref());
            kv("granted_by", rec.granted_by.as_deref());
            kv("fingerprint", rec.fingerprint.as_deref());
        }
        "log_opened" => {
            kv("reason", rec.reason.as_deref());
            kv("file", rec.file.as_deref());
        }
        "config_loaded" => {
            if let Some(n) = rec.rules {
                let _ = write!(s, " rules={n}");
            }
        }
        "checkpoint" => {
            kv("key_id", rec.key_id.as_deref());
            if let Some(h) = rec.head_seq {
                let _ = write!(s, " head_seq={h}");
            }
        }
        "key_rotation" => {
            kv("old_key_id", rec.old_key_id.as_deref());
            kv("new_key_id", rec.new_key_id.as_deref());
        }
        _ => {}
    }
    crate::cli::terminal_safe(&s)
}
