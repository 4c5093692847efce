//! The row guard and setting barriers: points where the client side must
//! wait for the server's answers before it forwards the next thing.
//!
//! **Row guard.** An allowed DELETE, UPDATE or MERGE with a limit
//! (`Verdict::max_rows`) is counted from its CommandComplete tag
//! (`responses.rs` → [`GuardState::over`]); one that ends in
//! PortalSuspended has an unknown count, taken as above the limit. The
//! counts are summed per transaction and compared with the smallest limit
//! among them ([`above`]). Only a statement held and approved itself is not
//! counted; its allowed siblings in a query string are (`hold.rs`). The
//! transaction does not commit above the limit without the `[guard]`'s
//! approval:
//! - in a transaction block, the COMMIT (every spelling, [`commits`]; also
//!   an Execute of one, and one approved itself) is held; approved, it goes upstream;
//!   refused, sqlgate sends `ROLLBACK` instead (simple protocol) or fails
//!   the block with a staged denial (extended: nothing after it commits)
//!   and answers 42501. The memory is cleared when the server reports the
//!   block ended (ReadyForQuery `I`); `ROLLBACK TO SAVEPOINT` keeps it.
//! - in autocommit, a simple Query holding a counted statement runs inside a
//!   `BEGIN` sqlgate sends (its answers swallowed); below the limit sqlgate
//!   sends `COMMIT` and the agent sees exactly what autocommit gives
//!   (ReadyForQuery `I`); above it, the commit is held as above.
//! - in the extended protocol the implicit transaction lasts until Sync: a
//!   Sync closing a batch with a counted Execute is held (after a Flush
//!   brings the counts) when a count outside a block is above its limit.
//!
//! A COMMIT is only waited on when counted statements are still unanswered;
//! reads never wait. A query string mixing a counted statement with
//! transaction control is refused (its COMMIT could not be held), and so is
//! a simple Query inside an open extended batch (PostgreSQL would commit
//! the batch's implicit transaction at its end; `mod.rs`).
//!
//! **Barriers.** A statement of class `unparsed` or `session` may change a
//! setting sqlgate's reading depends on (a function sqlgate could not
//! review, `CALL`, `DO`, `SET`, `RESET`, `set_config`), and the server
//! reports the change only with its ReadyForQuery. So nothing after it is
//! forwarded until that ReadyForQuery has come back: the client's next
//! messages wait unread in the socket (backpressure), and in an extended
//! batch a Parse or Query after such an Execute is refused (its Sync must
//! come first).

use super::expect::Expect;
use super::{audit_failure, ClientFrames, ClientSide, End, HoldEnd, Shared, Step};
use crate::approval::HeldStatement;
use crate::audit::Event;
use crate::audit::Outcome;
use crate::audit::StatementEvent;
use crate::audit::{ApprovalNote, ApprovalOutcome};
use crate::classify::Class;
use crate::classify::ClassSet;
use crate::classify::StatementInfo;
use crate::engine::Decision;
use crate::policy::Action;
use crate::policy::Verdict;
use crate::proxy::stream::ReadPart;
use crate::proxy::stream::WritePart;
use bytes::Bytes;
use bytes::BytesMut;
use postgres_protocol::message::frontend as fe;
use sqlgate_postgres::backend::Report;
use sqlgate_postgres::backend::Severity;
use sqlgate_postgres::sqlstate;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Instant;
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;

/// The rule id of the row guard's holds and refusals.
pub(super) const GUARD_RULE: &str = "builtin:row-guard";

/// Counted statements listed one by one in a transaction; past this, repeats are summed.
const MAX_ENTRIES: usize = 64;

/// What both directions know about counted statements.
#[derive(Default)]
pub(super) struct GuardState {
    /// Counted statements since the transaction began (summed: the limit
    /// is per transaction, see [`above`]).
    pub over: Mutex<Vec<Over>>,
    /// The server is in a transaction block, as its answers say.
    pub in_block: AtomicBool,
    /// Counted statements forwarded and not yet answered.
    pub inflight: AtomicU64,
    /// Notified whenever any of the above (or a ReadyForQuery) changes.
    pub answered: Notify,
}

/// A counted statement of the current transaction.
#[derive(Clone)]
pub(super) struct Over {
    command: String,
    fingerprint: String,
    classes: ClassSet,
    tables: Vec<String>,
    /// `None`: unknown (its portal was suspended before CommandComplete).
    rows: Option<u64>,
    limit: u64,
    rule: Arc<str>,
    /// It ran in a transaction block (else in the extended protocol's implicit one).
    in_block: bool,
}

/// What the open extended-protocol batch holds.
#[derive(Default)]
pub(super) struct Batch {
    pub guarded: bool,
    pub barrier: bool,
    /// A barrier statement was executed and the server has not answered
    /// it yet, as far as the client side waited (`wait_settled`).
    pub unsettled: bool,
    /// An Execute of this batch went upstream (or is held).
    pub executed: bool,
    /// A Bind of this batch went upstream: binding plans the statement,
    /// which runs IMMUTABLE functions and parameter types' CHECKs.
    pub bound: bool,
}

/// A message with its audit events, not yet forwarded.
pub(super) struct Pending {
    pub msg: Vec<u8>,
    pub events: Vec<(Box<StatementEvent>, Option<u64>)>,
    pub simple: bool,
    /// An Execute's row plan (`Portal::rows`); a simple Query's statements
    /// are planned at their RowDescription.
    pub rows: Option<Arc<crate::session::rows::RowPlan>>,
}

pub(super) enum Point {
    Commit(Pending),
    Wrap(Pending),
    Barrier,
    Sync(Vec<u8>),
}

/// The row guard's limit for a statement, if it is counted.
pub(super) fn limit(info: &StatementInfo, v: &Verdict) -> Option<u64> {
    v.max_rows
        .filter(|_| v.action == Action::Allow && counts(info))
}

/// Whether the statement is of a kind the row guard counts (its tag counts
/// the existing rows it changed).
pub(super) fn counts(info: &StatementInfo) -> bool {
    info.changes_rows && info.classes.contains(Class::Write)
}

/// Whether the statement makes a transaction durable: every spelling of
/// `COMMIT` (`COMMIT TRANSACTION`, `COMMIT WORK`, `COMMIT AND CHAIN`) and
/// `END` (`END TRANSACTION`, `END WORK`), and `PREPARE TRANSACTION`.
/// `COMMIT PREPARED` commits a transaction already prepared (held then).
pub(super) fn commits(info: &StatementInfo) -> bool {
    let c = info.command.to_ascii_uppercase();
    let first = c.split_whitespace().next().unwrap_or("");
    (first == "COMMIT" && !c.starts_with("COMMIT PREPARED"))
        || first == "END"
        || c.split_whitespace().collect::<Vec<_>>() == ["PREPARE", "TRANSACTION"]
        // A procedure (or DO block) may COMMIT inside: a commit point too.
        || first == "CALL"
        || first == "DO"
}

/// The counted statements of the transaction if, together, they are above
/// the limit (the smallest limit among them, conservatively); else none.
pub(super) fn above(entries: &[Over]) -> Vec<Over> {
    let Some(limit) = entries.iter().map(|o| o.limit).min() else {
        return vec![];
    };
    let unknown = entries.iter().any(|o| o.rows.is_none());
    let sum = entries
        .iter()
        .fold(0u64, |a, o| a.saturating_add(o.rows.unwrap_or(u64::MAX)));
    if unknown || sum > limit {
        entries.to_vec()
    } else {
        vec![]
    }
}

/// Whether the statement may change settings behind sqlgate's back, or
/// the catalog (DDL): what follows it is read only after its answer.
pub(super) fn barrier(info: &StatementInfo) -> bool {
    info.classes.contains(Class::Unparsed)
        || info.classes.contains(Class::Session)
        || info.classes.contains(Class::Ddl)
}

/// Called by the server side for each completed statement. `suspended`:
/// it ended in PortalSuspended, so how many rows it changed is unknown
/// (a DML statement runs to completion at its first Execute): counted as
/// above the limit, fail closed.
pub(super) fn counted(
    g: &GuardState,
    ev: &StatementEvent,
    limit: Option<u64>,
    tag: Option<&[u8]>,
    rows: Option<u64>,
    suspended: bool,
) {
    let Some(limit) = limit else { return };
    g.inflight.fetch_sub(1, Ordering::AcqRel);
    g.answered.notify_one();
    let counted_tag = tag.is_some_and(|t| {
        [&b"DELETE "[..], b"UPDATE ", b"MERGE ", b"INSERT "]
            .iter()
            .any(|c| t.starts_with(c))
    });
    let rows = match rows.filter(|&r| counted_tag && r > 0) {
        Some(r) => Some(r),
        None if suspended => None,
        None => return,
    };
    let info = ev.analysis.statements.get(ev.index);
    let fingerprint = info.map(|i| i.fingerprint.clone()).unwrap_or_default();
    let mut over = g.over.lock().expect("not poisoned");
    // Past a few dozen, the same statement again (a loop of small updates)
    // adds to its entry: the memory stays bounded by the distinct statements.
    let merge = over.len() >= MAX_ENTRIES;
    if let Some(o) = over
        .iter_mut()
        .find(|o| merge && o.fingerprint == fingerprint && o.rule == ev.rule)
    {
        o.rows = o.rows.zip(rows).map(|(a, b)| a.saturating_add(b));
        o.limit = o.limit.min(limit);
        return;
    }
    over.push(Over {
        command: info.map(|i| i.command.clone()).unwrap_or_default(),
        fingerprint,
        classes: info.map(|i| i.classes).unwrap_or_default(),
        tables: info.map(|i| i.tables.clone()).unwrap_or_default(),
        rows,
        limit,
        rule: ev.rule.clone(),
        in_block: g.in_block.load(Ordering::Acquire),
    });
}

/// Follows the server's transaction state from a CommandComplete tag.
pub(super) fn track_tag(g: &GuardState, tag: &[u8]) {
    if tag == b"BEGIN" || tag == b"START TRANSACTION" {
        g.in_block.store(true, Ordering::Release);
    } else if tag == b"COMMIT" || tag == b"ROLLBACK" || tag == b"PREPARE TRANSACTION" {
        // COMMIT AND CHAIN reports COMMIT and stays in a block: treating it
        // as ended only makes a later Sync hold what a COMMIT would have.
        g.in_block.store(false, Ordering::Release);
    }
}

/// Follows the server's transaction state from a ReadyForQuery status.
pub(super) fn track_ready(g: &GuardState, status: u8) {
    g.in_block.store(status != b'I', Ordering::Release);
    if status == b'I' {
        g.over.lock().expect("not poisoned").clear();
    }
    g.answered.notify_one();
}

fn rows_text(rows: Option<u64>) -> String {
    match rows {
        Some(r) => format!("{r} rows"),
        None => "an unknown number of rows (portal suspended)".to_owned(),
    }
}

fn summary(entries: &[Over]) -> String {
    let parts: Vec<String> = entries
        .iter()
        .map(|o| {
            format!(
                "{} affected {} (limit {}, rule `{}`)",
                o.command,
                rows_text(o.rows),
                o.limit,
                o.rule
            )
        })
        .collect();
    let limit = entries.iter().map(|o| o.limit).min().unwrap_or(0);
    let total = match entries.iter().map(|o| o.rows).sum::<Option<u64>>() {
        Some(t) => format!("{t} rows"),
        None => "an unknown number of rows".to_owned(),
    };
    format!(
        "{} (in all {total} in the transaction, limit {limit})",
        parts.join("; ")
    )
}

fn query_message(sql: &str) -> BytesMut {
    let mut b = BytesMut::new();
    // INVARIANT: fixed ASCII text without NUL.
    let _ = fe::query(sql, &mut b);
    b
}

impl ClientSide<'_> {
    /// A simple Query that was allowed: forwards it, or returns the point
    /// where it must wait.
    pub(super) fn query_point(&mut self, d: &Decision, sha: &Arc<str>, p: Pending) -> Option<Step> {
        let stmts = &d.analysis.statements;
        let guarded = p.events.iter().any(|(_, l)| l.is_some());
        if self.mixed(d, sha, guarded) {
            return Some(Step::Next);
        }
        if stmts.len() == 1 && commits(&stmts[0]) && self.guarding() {
            return Some(Step::Guard(Point::Commit(p)));
        }
        if guarded {
            return Some(Step::Guard(Point::Wrap(p)));
        }
        let barrier = stmts.iter().any(barrier);
        self.forward(p, None);
        barrier.then_some(Step::Guard(Point::Barrier))
    }

    /// Refuses a query string mixing a counted statement with transaction
    /// control (its COMMIT could not be held); true when refused.
    pub(super) fn mixed(&mut self, d: &Decision, sha: &Arc<str>, guarded: bool) -> bool {
        let stmts = &d.analysis.statements;
        if stmts.len() < 2 {
            return false;
        }
        // A COMMIT among other statements can't be held either: refused
        // while the transaction holds counted statements.
        let counting = || {
            self.shared.guard.inflight.load(Ordering::Acquire) > 0
                || !self
                    .shared
                    .guard
                    .over
                    .lock()
                    .expect("not poisoned")
                    .is_empty()
        };
        let transaction = stmts
            .iter()
            .position(|s| s.classes.contains(Class::Transaction))
            .filter(|_| guarded);
        let refusal = match transaction {
            Some(i) => (
                i,
                "sqlgate: a query string holding both a DELETE, UPDATE or MERGE counted by the row guard and transaction control cannot be vetted: its commit could not be held",
                "send BEGIN, COMMIT and ROLLBACK as queries of their own",
            ),
            None => match stmts.iter().position(commits).filter(|_| counting()) {
                Some(i) => (
                    i,
                    "sqlgate: a query string that commits a transaction holding a DELETE, UPDATE or MERGE counted by the row guard cannot be vetted: its commit could not be held",
                    "send COMMIT as a query of its own",
                ),
                None => return false,
            },
        };
        let (i, message, hint) = refusal;
        self.audit_denied(&d.analysis, &d.verdicts, i, sha);
        let report = Report::new(Severity::Error, sqlstate::INSUFFICIENT_PRIVILEGE, message)
            .hint(hint)
            .encode();
        self.stage_denial(report, true);
        true
    }

    /// A `[guard]` is configured.
    pub(super) fn guarding(&self) -> bool {
        self.sess.engine.policy.guard().is_some()
    }

    /// At a Sync: the point it must wait at, if any.
    pub(super) fn sync_point(&mut self, msg: &[u8]) -> Option<Point> {
        if self.batch.guarded && !self.skipping {
            return Some(Point::Sync(msg.to_vec()));
        }
        if self.batch.barrier {
            self.sync(msg);
            return Some(Point::Barrier);
        }
        None
    }

    pub(super) fn forward(&mut self, p: Pending, note: Option<Arc<ApprovalNote>>) {
        for (mut ev, limit) in p.events {
            // What this statement leaves behind for later ones once sent.
            if let Some(s) = ev.analysis.statements.get(ev.index) {
                if s.keeps_cursor {
                    self.shared.learnt(|l| l.kept_cursor = true);
                }
                use crate::classify::Class;
                let writes =
                    s.classes.contains(Class::Write) || s.classes.contains(Class::Destructive);
                // An unplaced statement (approved or allowed) may write any table.
                let unknown = s.classes.contains(Class::Unparsed);
                let defers = |c: &crate::catalog::Catalog| {
                    (writes && c.defers(&s.tables)) || (unknown && c.defers(&[]))
                };
                if self.sess.catalog.as_ref().is_some_and(|c| defers(c)) {
                    self.shared.learnt(|l| l.deferred = true);
                }
                if s.moves_names {
                    self.shared.learnt(|l| l.names_run = true);
                }
            }
            // A statement held and approved itself keeps its own approval.
            if ev.approval.is_none() {
                ev.approval = note.clone();
            }
            self.expect(Expect::Statement(ev, Instant::now(), limit, p.rows.clone()));
        }
        if p.simple {
            self.expect(Expect::Ready);
        }
        // After the expectations are queued: the server side resets this
        // only at a ReadyForQuery with nothing queued after it.
        if let Some(c) = &self.sess.catalog {
            let mut q = self.shared.queue();
            if q.learned.opened_at == u64::MAX {
                q.learned.opened_at = c.generation();
            }
        }
        self.out.extend_from_slice(&p.msg);
    }

    /// Sends a Query of sqlgate's own whose CommandComplete is swallowed.
    fn inject(&mut self, sql: &str, pass: bool, answer: Option<Bytes>) {
        self.expect(Expect::InjectedComplete);
        self.expect(Expect::InjectedReady { pass, answer });
        self.out.extend_from_slice(&query_message(sql));
    }

    /// Settles the audit, then writes and flushes what is staged upstream.
    pub(super) async fn send(&mut self, wr: &mut WritePart) -> std::io::Result<Option<End>> {
        if let Err(end) = self.settle().await {
            return Ok(Some(end));
        }
        wr.write_all(&self.out).await?;
        wr.flush().await?;
        self.out.clear();
        Ok(None)
    }

    async fn wait_until(&self, done: impl Fn(&Shared) -> bool) {
        while !done(self.shared) {
            self.shared.guard.answered.notified().await;
        }
    }

    pub(super) async fn wait_idle(&self) {
        self.wait_until(|s| s.queue().answered()).await
    }

    /// Mid-batch, waits until the server has answered every statement
    /// forwarded (a Flush makes it send what it has), or failed the batch
    /// (then it skips the rest, answering nothing more before Sync). Only
    /// once the batches before this one are answered: an error of theirs
    /// says nothing about this one.
    pub(super) async fn wait_settled(
        &mut self,
        wr: &mut WritePart,
    ) -> std::io::Result<Option<End>> {
        self.batch.unsettled = false;
        self.out.extend_from_slice(&[b'H', 0, 0, 0, 4]);
        if let Some(end) = self.send(wr).await? {
            return Ok(Some(end));
        }
        self.wait_until(|s| {
            let q = s.queue();
            q.answered() && (q.failed() || !q.iter().any(|e| matches!(e, Expect::Statement(..))))
        })
        .await;
        Ok(None)
    }

    /// Waits until every counted statement has been answered; mid-batch a
    /// Flush makes the server send what it has.
    async fn wait_counted(&mut self, wr: &mut WritePart) -> std::io::Result<()> {
        if self.shared.guard.inflight.load(Ordering::Acquire) == 0 {
            return Ok(());
        }
        if self.in_extended {
            wr.write_all(&[b'H', 0, 0, 0, 4]).await?;
            wr.flush().await?;
        }
        self.wait_until(|s| s.guard.inflight.load(Ordering::Acquire) == 0)
            .await;
        Ok(())
    }

    pub(super) async fn guard_point(
        &mut self,
        point: Point,
        rd: &mut ReadPart,
        wr: &mut WritePart,
        frames: &mut ClientFrames,
    ) -> std::io::Result<Option<End>> {
        match point {
            Point::Barrier => {
                self.wait_idle().await;
                Ok(None)
            }
            Point::Commit(p) => self.commit_point(p, rd, wr, frames).await,
            Point::Wrap(p) => self.wrap_point(p, rd, wr, frames).await,
            Point::Sync(msg) => self.sync_hold(msg, rd, wr, frames).await,
        }
    }

    /// A statement that commits what the row guard counted: held first if
    /// the counts passed a limit.
    async fn commit_point(
        &mut self,
        p: Pending,
        rd: &mut ReadPart,
        wr: &mut WritePart,
        frames: &mut ClientFrames,
    ) -> std::io::Result<Option<End>> {
        self.wait_counted(wr).await?;
        let entries = above(&self.shared.guard.over.lock().expect("not poisoned"));
        // A failed block only rolls back (simple protocol: nothing
        // in between can revive it).
        let failed = !entries.is_empty() && p.simple && {
            self.wait_idle().await;
            self.shared.learnt(|l| l.status) == b'E'
        };
        if entries.is_empty() || failed {
            self.forward(p, None);
            return Ok(None);
        }
        match self.guard_hold(&entries, rd, wr, frames).await? {
            HoldEnd::Approved(note) => {
                if let Some(end) = self.guard_approved(&entries, note.clone()).await {
                    return Ok(Some(end));
                }
                self.shared.guard.over.lock().expect("not poisoned").clear();
                self.forward(p, Some(Arc::new(note)));
            }
            HoldEnd::Refused(_, note) => {
                let report = self.guard_refused(&entries, &note, p.simple);
                for (ev, _) in p.events {
                    let mut ev = ev;
                    ev.outcome = Outcome::Denied;
                    ev.rule = Arc::from(GUARD_RULE);
                    ev.approval = Some(Arc::new(note.clone()));
                    let ack = self.sess.ledger.record_durable(ev);
                    self.acks.push(ack);
                }
                if p.simple {
                    self.inject("ROLLBACK", true, Some(report));
                } else {
                    self.stage_denial(report, false);
                }
            }
            HoldEnd::ClientGone => return Ok(Some(End::ClientGone)),
        }
        Ok(None)
    }

    /// A counted simple Query outside a block: run in sqlgate's own
    /// transaction, committed only if its counts stay under the limits (or
    /// an approver allows them).
    async fn wrap_point(
        &mut self,
        p: Pending,
        rd: &mut ReadPart,
        wr: &mut WritePart,
        frames: &mut ClientFrames,
    ) -> std::io::Result<Option<End>> {
        self.wait_idle().await;
        if self.shared.learnt(|l| l.status) != b'I' {
            // In a block already: counted, and its COMMIT is held.
            self.forward(p, None);
            return Ok(None);
        }
        self.inject("BEGIN", false, None);
        self.shared.queue().expect_held_ready();
        for (ev, limit) in p.events {
            self.expect(Expect::Statement(ev, Instant::now(), limit, p.rows.clone()));
        }
        self.expect(Expect::HeldReady);
        self.out.extend_from_slice(&p.msg);
        if let Some(end) = self.send(wr).await? {
            return Ok(Some(end));
        }
        self.wait_until(|s| s.queue().held_ready()).await;
        let entries = above(&self.shared.guard.over.lock().expect("not poisoned"));
        if entries.is_empty() {
            self.inject("COMMIT", true, None);
            return Ok(None);
        }
        match self.guard_hold(&entries, rd, wr, frames).await? {
            HoldEnd::Approved(note) => {
                if let Some(end) = self.guard_approved(&entries, note).await {
                    return Ok(Some(end));
                }
                self.inject("COMMIT", true, None);
            }
            HoldEnd::Refused(_, note) => {
                let report = self.guard_refused(&entries, &note, true);
                self.inject("ROLLBACK", true, Some(report));
            }
            HoldEnd::ClientGone => return Ok(Some(End::ClientGone)),
        }
        Ok(None)
    }

    /// The Sync that commits a batch's implicit transaction: held first if
    /// its counts passed a limit.
    async fn sync_hold(
        &mut self,
        msg: Vec<u8>,
        rd: &mut ReadPart,
        wr: &mut WritePart,
        frames: &mut ClientFrames,
    ) -> std::io::Result<Option<End>> {
        let barrier = self.batch.barrier;
        self.wait_counted(wr).await?;
        // Only a batch with counts outside a block commits at this
        // Sync; then all the transaction's counts are summed (a block
        // begun later in the batch carries them). The memory is
        // cleared by the ReadyForQuery `I`, or by an approval.
        let entries: Vec<Over> = {
            let over = self.shared.guard.over.lock().expect("not poisoned");
            if over.iter().any(|o| !o.in_block) {
                above(&over)
            } else {
                vec![]
            }
        };
        if !entries.is_empty() {
            match self.guard_hold(&entries, rd, wr, frames).await? {
                HoldEnd::Approved(note) => {
                    if let Some(end) = self.guard_approved(&entries, note).await {
                        return Ok(Some(end));
                    }
                    self.shared.guard.over.lock().expect("not poisoned").clear();
                }
                HoldEnd::Refused(_, note) => {
                    // The failing marker aborts the implicit transaction.
                    let report = self.guard_refused(&entries, &note, true);
                    self.stage_denial(report, false);
                }
                HoldEnd::ClientGone => return Ok(Some(End::ClientGone)),
            }
        }
        self.sync(&msg);
        if barrier {
            if let Some(end) = self.send(wr).await? {
                return Ok(Some(end));
            }
            self.wait_idle().await;
        }
        Ok(None)
    }

    async fn guard_hold(
        &mut self,
        entries: &[Over],
        rd: &mut ReadPart,
        wr: &mut WritePart,
        frames: &mut ClientFrames,
    ) -> std::io::Result<HoldEnd> {
        let Some(spec) = self.sess.engine.policy.guard().map(|g| g.approval.clone()) else {
            // Limits come only from a [guard], so this cannot happen; fail closed.
            return Ok(HoldEnd::Refused(
                Bytes::new(),
                ApprovalNote {
                    request: None,
                    outcome: ApprovalOutcome::Unapprovable,
                    by: vec![],
                },
            ));
        };
        let statements = entries
            .iter()
            .map(|o| HeldStatement {
                command: o.command.clone(),
                text: format!(
                    "{} -- {} (limit {})",
                    o.fingerprint,
                    rows_text(o.rows),
                    o.limit
                ),
                classes: o.classes,
                tables: o.tables.clone(),
                // A standing grant covers the same statements with the same counts only.
                fingerprint: format!("{} -- row guard: {}", o.fingerprint, rows_text(o.rows)),
            })
            .collect();
        let new = self.request(
            statements,
            None,
            Arc::from(GUARD_RULE),
            Arc::from(format!(
                "the transaction does not commit without approval: {}",
                summary(entries)
            )),
            spec,
            // Several statements, sent apart: no one text to name.
            Arc::from(""),
        );
        let sess = self.sess;
        let holding = sess.cancel.hold();
        self.await_decision(new, rd, wr, frames, &holding).await
    }

    fn guard_record(&self, entries: &[Over], note: &ApprovalNote, then: &str) -> Event {
        let statements: Vec<serde_json::Value> = entries
            .iter()
            .map(|o| {
                serde_json::json!({
                    "command": o.command, "fingerprint": o.fingerprint, "tables": o.tables,
                    "rows": o.rows, "max_rows": o.limit, "rule": &*o.rule,
                })
            })
            .collect();
        Event::Json(serde_json::json!({
            "kind": "row_guard",
            "session": self.sess.info.id,
            "agent": &*self.sess.info.agent,
            "database": self.sess.info.database,
            "statements": statements,
            "approval": note,
            "then": then,
        }))
    }

    /// Records the approval; the commit goes upstream only once it is on disk.
    async fn guard_approved(&mut self, entries: &[Over], note: ApprovalNote) -> Option<End> {
        let audit = &self.sess.engine.audit;
        audit.record(self.guard_record(entries, &note, "commit"));
        if audit.sync().await.is_err() {
            return Some(End::Fatal(audit_failure()));
        }
        None
    }

    /// Records the refusal and returns the agent's error.
    fn guard_refused(&mut self, entries: &[Over], note: &ApprovalNote, rolled_back: bool) -> Bytes {
        let ack = self
            .sess
            .engine
            .audit
            .record_durable(self.guard_record(entries, note, "rollback"));
        self.acks.push(ack);
        let why = match note.outcome {
            ApprovalOutcome::Denied => format!("approval was denied by `{}`", note.by.join("`, `")),
            ApprovalOutcome::TimedOut => "the approval request timed out".to_owned(),
            ApprovalOutcome::Unapprovable => "nobody can approve it".to_owned(),
            _ => "the approval request was withdrawn".to_owned(),
        };
        let request = note
            .request
            .as_deref()
            .map(|r| format!(" (request {r})"))
            .unwrap_or_default();
        let what = if rolled_back {
            "the transaction was rolled back"
        } else {
            "the transaction was not committed and has failed"
        };
        let m = format!(
            "sqlgate: {what}: {}, above the row guard's limit, and {why}{request}",
            summary(entries)
        );
        Report::new(Severity::Error, sqlstate::INSUFFICIENT_PRIVILEGE, &m)
            .hint(if rolled_back {
                "no change of that transaction was kept; delete or update fewer rows per transaction, or ask an approver"
            } else {
                "ROLLBACK the transaction; delete or update fewer rows per transaction, or ask an approver"
            })
            .encode()
    }
}
