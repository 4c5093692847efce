//! Holding statements for approval, the parts every wire shares: which
//! requests a string needs (one per approval rule), what one approval
//! note says for all of them, and withdrawing a request the session no
//! longer waits for.

use crate::approval::{Approvals, Request};
use crate::audit::ApprovalNote;
use crate::policy::{Action, Verdict};
use std::sync::Arc;

/// The statements of a string that need approval, grouped by rule, in
/// order of first appearance: each rule's request is decided by its own
/// groups, quorum and timeout. A statement several approval rules match
/// (`Verdict::also`) is in each one's group.
pub fn rule_groups(verdicts: &[Verdict]) -> Vec<(&Verdict, Vec<usize>)> {
    let mut groups: Vec<(&Verdict, Vec<usize>)> = Vec::new();
    for (i, v) in verdicts
        .iter()
        .enumerate()
        .filter(|(_, v)| v.action == Action::RequireApproval)
    {
        for rule in std::iter::once(v).chain(v.also.iter()) {
            match groups.iter_mut().find(|g| g.0.rule == rule.rule) {
                Some(g) => g.1.push(i),
                None => groups.push((rule, vec![i])),
            }
        }
    }
    groups
}

/// One note for a string whose requests were all approved: every
/// approver, every request id.
pub fn merge_notes(all: Option<ApprovalNote>, n: ApprovalNote) -> ApprovalNote {
    match all {
        None => n,
        Some(mut all) => {
            all.by.extend(n.by);
            all.request = match (all.request, n.request) {
                (Some(a), Some(b)) => Some(format!("{a},{b}")),
                (a, b) => a.or(b),
            };
            all
        }
    }
}

/// The approval note of request `r`.
pub fn note(r: &Request, outcome: &'static str, by: Vec<String>) -> ApprovalNote {
    ApprovalNote {
        request: Some(r.id.clone()),
        outcome,
        by,
    }
}

/// Withdraws a request when dropped (a no-op once the request is decided):
/// however the wait for it ends (a decision, an error, a disconnect), a
/// request still pending does not outlive it.
pub struct Withdraw<'a>(pub &'a Approvals, pub &'a Arc<Request>);

impl Drop for Withdraw<'_> {
    fn drop(&mut self) {
        self.0.withdraw(self.1, "the session ended");
    }
}
