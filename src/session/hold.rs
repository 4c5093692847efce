//! Holding statements for approval, the parts every wire shares: which
//! requests a string needs (one per approval rule), submitting one and
//! turning its decision into an approval or a refusal, what one approval
//! note says for all of them, and withdrawing a request the session no
//! longer waits for. The wire's part (keeping the session alive while a
//! request waits, telling the agent) is the relay's.

use super::Refusal;
use crate::approval::{Approvals, Hold, NewRequest, Request, Resolution, Submitted};
use crate::audit::{ApprovalNote, ApprovalOutcome};
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

/// How waiting for one request ended: the relay puts a refusal into its
/// wire's words.
pub enum Ended {
    Approved(ApprovalNote),
    Refused(Refusal, ApprovalNote),
}

/// What submitting a request gave: its end at once (a standing grant,
/// nobody able to approve), or a hold to wait on.
pub enum Submission {
    Ended(Ended),
    Waiting(Hold),
}

/// Submits `new` to the approvals.
pub fn submit(approvals: &Approvals, new: NewRequest) -> Submission {
    let (rule, reason) = (new.rule.clone(), new.reason.clone());
    match approvals.submit(new) {
        Submitted::Granted { by, request, .. } => {
            Submission::Ended(Ended::Approved(ApprovalNote {
                // The request whose approval gave the grant.
                request: Some(request),
                outcome: ApprovalOutcome::Granted,
                by: vec![by],
            }))
        }
        Submitted::Held(h) => Submission::Waiting(h),
        Submitted::Unapprovable(why) => Submission::Ended(Ended::Refused(
            Refusal::unapprovable(&rule, &reason, &why),
            ApprovalNote {
                request: None,
                outcome: ApprovalOutcome::Unapprovable,
                by: vec![],
            },
        )),
    }
}

/// The end of request `r`, decided as `resolution` says.
pub fn resolved(r: &Request, resolution: Resolution) -> Ended {
    let Some(refusal) = Refusal::unresolved(r, &resolution) else {
        let by = match resolution {
            Resolution::Approved { by, .. } => by,
            _ => vec![],
        };
        return Ended::Approved(note(r, ApprovalOutcome::Approved, by));
    };
    let (outcome, by) = match resolution {
        Resolution::Denied { by, .. } => (ApprovalOutcome::Denied, vec![by]),
        Resolution::TimedOut => (ApprovalOutcome::TimedOut, vec![]),
        _ => (ApprovalOutcome::Withdrawn, vec![]),
    };
    Ended::Refused(refusal, note(r, outcome, by))
}

/// Withdraws request `r`, which the agent cancelled.
pub fn canceled(approvals: &Approvals, r: &Arc<Request>) -> Ended {
    approvals.withdraw(r, "cancelled by the agent");
    Ended::Refused(
        Refusal::canceled(r),
        note(r, ApprovalOutcome::Withdrawn, vec![]),
    )
}

/// The approval note of request `r`.
pub fn note(r: &Request, outcome: ApprovalOutcome, by: Vec<String>) -> ApprovalNote {
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
