//! What the policy hands back to the proxy: who is asking ([`Identity`]) and
//! what to do about it ([`Verdict`]). These types cross into the proxy, the
//! approval hold and the audit log, so they carry only owned, cheap-to-clone
//! data (`Arc`s built once at load time): cloning a verdict on the hot path
//! never allocates.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The agent a statement comes from, as established when its session began.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Identity {
    pub agent: String,
    pub groups: Vec<String>,
}

impl Identity {
    pub fn new(agent: impl Into<String>, groups: &[&str]) -> Identity {
        Identity {
            agent: agent.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    pub(crate) fn in_any_group(&self, groups: &[String]) -> bool {
        self.groups.iter().any(|g| groups.contains(g))
    }
}

/// What happens to a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Allow,
    Deny,
    RequireApproval,
}

impl Action {
    pub const fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Deny => "deny",
            Action::RequireApproval => "require_approval",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        [Action::Allow, Action::Deny, Action::RequireApproval]
            .into_iter()
            .find(|a| a.as_str() == s)
    }

    /// How restrictive the action is; among matching rules the highest wins.
    pub(crate) const fn severity(self) -> u8 {
        match self {
            Action::Allow => 0,
            Action::RequireApproval => 1,
            Action::Deny => 2,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who must approve a held statement, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalSpec {
    /// Members of any of these groups may approve.
    pub approver_groups: Vec<String>,
    /// Approvals needed; at least 1.
    pub quorum: u32,
    /// How long to wait before the hold turns into a denial; `None` means the
    /// approval service's configured default.
    pub timeout: Option<Duration>,
    /// Whether approvers see the statement's literal values or only its
    /// fingerprint (literals may hold personal data).
    pub show_literals: bool,
}

/// The decision for one statement and the rule that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub action: Action,
    /// The deciding rule's id, or `builtin:default-deny` / `builtin:forbidden`.
    pub rule: Arc<str>,
    /// Why, in words fit to show the agent.
    pub reason: Arc<str>,
    /// Set exactly when `action` is [`Action::RequireApproval`].
    pub approval: Option<Arc<ApprovalSpec>>,
    /// The row guard's limit for this statement (allow verdicts only): a
    /// DELETE, UPDATE or MERGE reported to affect more rows than this does
    /// not commit without the guard's approval. `None`: no limit.
    pub max_rows: Option<u64>,
    /// The other `require_approval` rules that match the statement: each
    /// one's approvers and quorum must agree too (one request per rule), so
    /// a stricter rule never loses to the first in load order. Empty for
    /// all but such statements.
    pub also: Arc<[Verdict]>,
}

impl Verdict {
    pub fn is_allowed(&self) -> bool {
        self.action == Action::Allow
    }
}
