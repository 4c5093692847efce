//! What an agent is told when a statement does not run: what happened,
//! which rule, what to do next. Protocol-independent: each wire turns a
//! [`Refusal`] into its own error (PostgreSQL an ErrorResponse with the
//! SQLSTATE for its [`Why`], MySQL an ERR packet).

use crate::approval::{Request, Resolution};
use crate::classify::{Class, StatementInfo};
use crate::policy::{Action, Verdict};
use std::time::Duration;

/// Why a statement was refused: what each wire names with its own code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// The rules deny it, or an approval it needed was not given (denied,
    /// timed out, withdrawn, nobody to ask).
    Policy,
    /// The agent cancelled it while it waited for approval.
    Canceled,
    /// What was approved is no longer what would run.
    Changed,
    /// sqlgate cannot record it (the audit log or its anchor).
    Unrecorded,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub why: Why,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<&'static str>,
}

impl Refusal {
    fn new(why: Why, message: String) -> Refusal {
        Refusal {
            why,
            message,
            detail: None,
            hint: None,
        }
    }

    /// A statement the rules deny, or that needs an approval it was not given.
    pub fn denied(v: &Verdict, info: &StatementInfo) -> Refusal {
        let classes: Vec<&str> = info.classes.iter().map(Class::as_str).collect();
        let mut detail = format!("classes: {}", classes.join(", "));
        if !info.tables.is_empty() {
            detail.push_str(&format!("; tables: {}", info.tables.join(", ")));
        }
        // Why sqlgate could not read it (a syntax error, a length): never a
        // literal's value (see `StatementInfo::note`).
        if let Some(note) = info
            .note
            .as_deref()
            .filter(|_| info.classes.contains(Class::Unparsed))
        {
            detail.push_str(&format!("; not read: {note}"));
        }
        let (message, hint) = match v.action {
            Action::RequireApproval => (
                format!("sqlgate: statement requires approval (rule `{}`): {}", v.rule, v.reason),
                "approval is required by the rules and was not given; the statement did not run",
            ),
            _ => (
                format!("sqlgate: statement denied by rule `{}`: {}", v.rule, v.reason),
                "the statement never reached the database; change the statement or ask for the rules to change",
            ),
        };
        Refusal {
            why: Why::Policy,
            message,
            detail: Some(detail),
            hint: Some(hint),
        }
    }

    /// A statement that needs approval nobody can give (`why`).
    pub fn unapprovable(rule: &str, reason: &str, why: &str) -> Refusal {
        Refusal {
            why: Why::Policy,
            message: format!("sqlgate: statement requires approval (rule `{rule}`): {reason}"),
            detail: Some(why.to_owned()),
            hint: Some("add an [[approver]] in one of the rule's groups to sqlgate's config"),
        }
    }

    /// How a request that was not approved ended (`None`: it was).
    pub fn unresolved(r: &Request, resolution: &Resolution) -> Option<Refusal> {
        let message = match resolution {
            Resolution::Approved { .. } => return None,
            Resolution::Denied { by, reason } => format!(
                "sqlgate: statement denied by approver `{by}`{} (request {}, rule `{}`)",
                reason
                    .as_deref()
                    .map(|x| format!(": {x}"))
                    .unwrap_or_default(),
                r.id,
                r.rule
            ),
            Resolution::TimedOut => format!(
                "sqlgate: approval request {} timed out after {}; the statement did not run (rule `{}`)",
                r.id,
                humantime::format_duration(lifetime(r)),
                r.rule
            ),
            Resolution::Withdrawn { reason } => {
                format!("sqlgate: approval request {} was withdrawn: {reason}", r.id)
            }
        };
        Some(Refusal::new(Why::Policy, message))
    }

    /// The agent cancelled a held statement (its request is withdrawn).
    pub fn canceled(r: &Request) -> Refusal {
        Refusal {
            detail: Some(format!("approval request {} was withdrawn", r.id)),
            ..Refusal::new(
                Why::Canceled,
                "canceling statement due to user request".to_owned(),
            )
        }
    }

    /// An approved statement that would no longer do what was approved.
    pub fn changed_while_held() -> Refusal {
        Refusal::new(
            Why::Changed,
            "sqlgate: the definitions this statement uses changed while it waited for approval, so what was approved is not what would run; it was not run: send it again to ask for approval of what it does now".to_owned(),
        )
    }

    /// An approved statement whose approval the audit anchor did not take.
    pub fn not_anchored() -> Refusal {
        Refusal::new(
            Why::Unrecorded,
            "sqlgate: the audit anchor did not take the checkpoint over this statement's approval, so it was not run: send it again once the anchor is reachable".to_owned(),
        )
    }

    /// The session's decisions cannot be recorded (it ends).
    pub fn audit_failure() -> Refusal {
        Refusal::new(
            Why::Unrecorded,
            "sqlgate cannot write its audit log; the statement was not forwarded or answered"
                .to_owned(),
        )
    }
}

/// The notice an agent gets when its statement is held.
pub fn held_notice(r: &Request) -> String {
    format!(
        "sqlgate: statement held for approval (request {}, rule `{}`); asked: {} (quorum {}); expires in {}",
        r.id,
        r.rule,
        if r.approver_groups.is_empty() {
            "nobody (no approver group configured)".to_owned()
        } else {
            format!("group {}", r.approver_groups.join(", "))
        },
        r.quorum,
        humantime::format_duration(lifetime(r)),
    )
}

/// How long a request waits for its decision.
fn lifetime(r: &Request) -> Duration {
    r.expires.duration_since(r.created).unwrap_or_default()
}
