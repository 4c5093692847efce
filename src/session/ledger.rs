//! The statement ledger of one session: builds every statement's audit
//! event, writes it, and counts it, in one place for every wire.
//!
//! `session_end.statements` is the number of statement records a session
//! left; it is right by construction only if nothing writes a statement
//! record past the ledger (an earlier end-of-session drain did, and the
//! count missed the statements it cut off).

use crate::audit::{AuditLog, DurableAck, Event, Outcome, SessionInfo, StatementEvent};
use crate::classify::{Analysis, Class, ClassSet, StatementInfo};
use crate::policy::{Action, Verdict};
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

/// The rule named in the records of refusals that come from the wire
/// itself (a message sqlgate cannot vet), not from the rules.
pub const PROTOCOL_RULE: &str = "builtin:protocol";

pub struct Ledger {
    audit: AuditLog,
    info: Arc<SessionInfo>,
    statements: AtomicU64,
}

impl Ledger {
    pub fn new(audit: AuditLog, info: Arc<SessionInfo>) -> Ledger {
        Ledger {
            audit,
            info,
            statements: AtomicU64::new(0),
        }
    }

    pub fn info(&self) -> &Arc<SessionInfo> {
        &self.info
    }

    /// The statement records written so far.
    pub fn count(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    /// A statement's event, to be completed (outcome, rows, duration) and
    /// recorded once it has run.
    pub fn event(
        &self,
        analysis: &Arc<Analysis>,
        index: usize,
        sha: &Arc<str>,
        rule: &Arc<str>,
        action: Action,
        outcome: Outcome,
    ) -> Box<StatementEvent> {
        Box::new(StatementEvent {
            time: SystemTime::now(),
            session: self.info.clone(),
            analysis: analysis.clone(),
            index,
            sql_sha256: sha.clone(),
            rule: rule.clone(),
            action,
            outcome,
            rows: None,
            duration_us: None,
            approval: None,
            masked: None,
        })
    }

    /// Records a statement (buffered: on disk within the writer's group
    /// commit, or at the next `sync`).
    pub fn record(&self, ev: Box<StatementEvent>) {
        self.statements.fetch_add(1, Ordering::Relaxed);
        self.audit.record(Event::Statement(ev));
    }

    /// Records a statement; the ack resolves once it is on disk. A refusal
    /// is answered only after that.
    pub fn record_durable(&self, ev: Box<StatementEvent>) -> DurableAck {
        self.statements.fetch_add(1, Ordering::Relaxed);
        self.audit.record_durable(Event::Statement(ev))
    }

    /// Records a query string refused at statement `blocking`: that one as
    /// denied, the others as not executed (none of the string runs).
    pub fn refused(
        &self,
        analysis: &Arc<Analysis>,
        verdicts: &[Verdict],
        blocking: usize,
        sha: &Arc<str>,
    ) -> Vec<DurableAck> {
        verdicts
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let outcome = if i == blocking {
                    Outcome::Denied
                } else {
                    Outcome::NotExecuted
                };
                self.record_durable(self.event(analysis, i, sha, &v.rule, v.action, outcome))
            })
            .collect()
    }

    /// Records a message refused because sqlgate cannot vet it (`command`
    /// says what it was): a denial, under [`PROTOCOL_RULE`], counted in
    /// the denials metric too.
    pub fn unvettable(&self, command: &str) -> DurableAck {
        let a = Arc::new(Analysis {
            statements: vec![StatementInfo {
                classes: ClassSet::of(&[Class::Unparsed]),
                tables: vec![],
                fingerprint: String::new(),
                command: command.to_owned(),
                forbidden: None,
                note: None,
                code: false,
                changes_rows: false,
                moves_names: true,
                keeps_cursor: false,
                pending: None,
            }],
        });
        let ev = self.event(
            &a,
            0,
            &Arc::from(""),
            &Arc::from(PROTOCOL_RULE),
            Action::Deny,
            Outcome::Denied,
        );
        counters()[1].increment(1);
        self.record_durable(ev)
    }
}

/// Counts a string's verdicts in `sqlgate_statements_total` by action.
pub fn count_verdicts(verdicts: &[Verdict]) {
    let c = counters();
    for v in verdicts {
        let i = match v.action {
            Action::Allow => 0,
            Action::Deny => 1,
            Action::RequireApproval => 2,
        };
        c[i].increment(1);
    }
}

fn counters() -> &'static [metrics::Counter; 3] {
    // Handles are looked up once: `counter!` with a label hashes its key on
    // every call, and this runs for every statement.
    static COUNTERS: std::sync::OnceLock<[metrics::Counter; 3]> = std::sync::OnceLock::new();
    COUNTERS.get_or_init(|| {
        [Action::Allow, Action::Deny, Action::RequireApproval]
            .map(|a| metrics::counter!("sqlgate_statements_total", "action" => a.as_str()))
    })
}

/// The SHA-256 of a statement's text in lowercase hex, encoded on the stack
/// (this runs for every statement).
pub fn sha256_hex(s: &str) -> Arc<str> {
    let mut out = [0u8; 64];
    // INVARIANT: 32 bytes encode to exactly 64 hex digits, all ASCII.
    let _ = hex::encode_to_slice(Sha256::digest(s.as_bytes()), &mut out);
    Arc::from(std::str::from_utf8(&out).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    #[test]
    fn statement_sha256_is_lowercase_hex() {
        assert_eq!(
            &*super::sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
