//! The expected-response queue: what the server owes this session, in
//! order, and what becomes of each message it sends.
//!
//! The client side pushes one entry for every message it sends upstream
//! that the server will answer (a statement, a Sync, a Parse, sqlgate's own
//! keepalive, probe or staged denial). The server side hands every message
//! the server sends to [`ExpectQueue::answer`], which says what to do with
//! it: forward it, drop it (the answer to something sqlgate sent for
//! itself), put sqlgate's own error in its place (a staged denial), or end
//! the session because the two sides no longer agree. Statements it
//! completes come out as [`Finished`] records.
//!
//! No sockets and no clocks beyond a statement's start: the tests at the end
//! drive it with recorded message sequences (pipelines, an error
//! mid-pipeline, COPY, holds with keepalives, a session's end). pgdog's
//! `ProtocolState` is the model.
//!
//! How answers are matched: PostgreSQL answers in order, but not every
//! message is answered (after an error it skips everything up to Sync), and
//! some answers carry no name (a ParseComplete says nothing of which Parse).
//! So each kind of answer looks for the first entry it can belong to, and
//! never past the ReadyForQuery that ends a batch: a simple Query's
//! RowDescription, say, never belongs to the Describe of a later batch.

use super::extended::UpName;
use crate::audit::{Outcome, ServerError, StatementEvent};
use crate::session::rows::RowPlan;
use bytes::Bytes;
use sqlgate_postgres::backend;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

/// What the server owes for one message sqlgate sent upstream.
pub(super) enum Expect {
    /// A statement was forwarded; its completion finishes the audit record.
    /// The limit: the row guard counts it (`guard.rs`). The plan: how its
    /// result rows are rewritten (`rows.rs`), when one is active: given at
    /// Execute (the portal's), or by the statement's own RowDescription
    /// (a simple Query's, [`ExpectQueue::plan_rows`]).
    Statement(
        Box<StatementEvent>,
        Instant,
        Option<u64>,
        Option<Arc<RowPlan>>,
    ),
    /// The CommandComplete of a statement sqlgate sent itself (`guard.rs`):
    /// not passed on.
    InjectedComplete,
    /// The ReadyForQuery of a Query sqlgate sent itself: passed on when
    /// `pass` (it then answers the agent's Query, after `answer`), else swallowed.
    InjectedReady { pass: bool, answer: Option<Bytes> },
    /// The ReadyForQuery of a statement sqlgate runs in a transaction of its
    /// own: swallowed, and the client side told ([`ExpectQueue::held_ready`]).
    HeldReady,
    /// A staged denial: the server's error for marker `n` becomes this error.
    Denial(u64, Bytes),
    /// A ReadyForQuery will arrive (after Query, Sync, or a staged denial).
    Ready,
    /// The ReadyForQuery answering a keepalive Sync: not passed on.
    SwallowReady,
    /// A Sync sent after the Execute of a COPY, before CopyDone or CopyFail:
    /// if the COPY entered copy-in mode (CopyInResponse) the server ignores
    /// it, as PostgreSQL ignores Sync and Flush in copy-in mode; otherwise it
    /// is answered like any Sync. (tokio-postgres sends one there.)
    /// The number: which COPY (`ClientSide::copy`) it follows.
    CopySync(u64),
    /// A Close was sent upstream: `swallow` when it is sqlgate's own (its
    /// CloseComplete is not passed on). `orphan`: the upstream name it
    /// closes, to close again later if the server skips it (`extended.rs`).
    Close {
        swallow: bool,
        orphan: Option<(u8, UpName)>,
    },
    /// A Parse or Bind was sent upstream: its ParseComplete or BindComplete
    /// is passed on, or swallowed when sqlgate sent it for itself (the real
    /// Parse and Bind of an approved statement, `extended.rs`).
    Complete { swallow: bool },
    /// A Describe was sent upstream.
    Describe(Described),
    /// sqlgate's own `SHOW` of the session's idle timeouts during a hold
    /// (`hold.rs`): its answers, up to its ReadyForQuery, are not passed on.
    Probe,
}

/// What becomes of a Describe's answer.
pub(super) enum Described {
    /// The client's: passed on.
    Pass,
    /// A held portal described through its statement (`extended.rs`): its
    /// ParameterDescription is dropped and its RowDescription carries the
    /// Bind's result formats, as a Describe of the portal would.
    Portal(super::rows::ResultFormats),
    /// sqlgate's own check that a placeholder portal still exists: not
    /// passed on (its error is).
    Swallow,
}

impl Expect {
    /// Whether this ends a batch's answers (a ReadyForQuery is due).
    pub(super) fn is_ready(&self) -> bool {
        matches!(
            self,
            Expect::Ready
                | Expect::SwallowReady
                | Expect::CopySync(_)
                | Expect::HeldReady
                | Expect::InjectedReady { .. }
                | Expect::Probe
        )
    }
}

/// What to do with one message from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Pass {
    /// Send it to the agent as it is.
    Forward,
    /// The answer to something sqlgate sent for itself: not sent.
    Drop,
    /// An answer to sqlgate's own probe (`Expect::Probe`): not sent, and
    /// nothing in it is the agent's session state.
    Probe,
    /// A staged denial's error: this report (in UTF-8, to transcode) goes to
    /// the agent instead.
    Denial(Bytes),
    /// Send this instead (a held portal's RowDescription with its formats).
    Instead(Vec<u8>),
    /// A result row to rebuild by this plan (`rows.rs`).
    Rewrite(Arc<RowPlan>),
    /// Send this, then the message (an injected Query's answer before the
    /// ReadyForQuery that ends it).
    After(Bytes),
    /// The two sides no longer agree on what the server is answering: the
    /// session must end (fail closed). Why, for the log.
    Lost(&'static str),
}

/// A statement the server answered (or skipped), ready to be recorded.
pub(super) struct Finished {
    pub ev: Box<StatementEvent>,
    /// The row guard's limit it was forwarded with.
    pub limit: Option<u64>,
    pub how: How,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum How {
    /// CommandComplete, EmptyQueryResponse or PortalSuspended (`suspended`).
    Completed { suspended: bool },
    /// An ErrorResponse.
    Failed,
    /// Skipped by the server after an earlier error: not executed.
    Skipped,
    /// A fast-path call's FunctionCallResponse.
    Called,
    /// Sent, and the session ended before any answer.
    CutOff,
}

/// What the session's two directions learnt and share, kept with the queue
/// under its one lock: set by one side (from a statement forwarded, or an
/// answer of the server's) and read by the other.
pub(super) struct Learned {
    /// The transaction status of the server's last ReadyForQuery.
    pub(super) status: u8,
    /// A DDL statement (not `catalog::keeps_reading`) ran in the open
    /// transaction block: the catalog's side connection can't see it until
    /// COMMIT, so what this session reads can't be placed (set by the
    /// server side, cleared when the server reports the block ended).
    pub(super) uncommitted_ddl: bool,
    /// A statement of this session may have changed what unqualified names
    /// mean (`StatementInfo::moves_names`): standing grants for statements
    /// with unqualified names no longer apply here. Never cleared.
    pub(super) names_moved: bool,
    /// A DDL statement completed since the server last said idle.
    pub(super) ddl_since_idle: bool,
    /// The catalog generation when the first statement since the server
    /// last said idle was forwarded (`u64::MAX`: none since): cursors
    /// opened since run the definitions of then (`stale_cursor`).
    pub(super) opened_at: u64,
    /// A `DECLARE … WITH HOLD` was forwarded: its cursor outlives the
    /// transaction, so `opened_at` is not reset at idle any more.
    pub(super) kept_cursor: bool,
    /// A write to a table with deferrable constraint triggers was forwarded
    /// since the server last said idle: COMMIT runs their code then.
    pub(super) deferred: bool,
    /// A statement that may change what names mean was sent upstream (not
    /// only decided): what approvers are warned of (`session_note`).
    pub(super) names_run: bool,
    /// The session's client encoding as the server last reported it
    /// (`encoding::Encoding::id`): what the agent's text is read in.
    pub(super) encoding: u8,
    /// The server reported a client_encoding change in this session: a
    /// transaction's end (COMMIT, ROLLBACK, ROLLBACK TO) may put back
    /// another at once, reported only at its ReadyForQuery, so it is a
    /// barrier from then on (`guard::barrier`).
    pub(super) encoding_moved: bool,
    /// A statement that may run code changing settings, other than a plain
    /// SET (a DECLARE of such a query, a function), was sent upstream: a
    /// FETCH, MOVE or COMMIT may run it again later (a cursor's query, a
    /// WITH HOLD cursor's at COMMIT), so they are barriers from then on.
    pub(super) code_cursor: bool,
    /// The agent's transaction ended with nothing sent after it: the
    /// server dropped every portal (taken by the client side, which forgets
    /// its own).
    pub(super) portals_ended: bool,
}

impl Learned {
    /// A session the server said `status` and `encoding` for at login.
    pub(super) fn new(status: u8, encoding: u8) -> Learned {
        Learned {
            status,
            uncommitted_ddl: false,
            names_moved: false,
            ddl_since_idle: false,
            opened_at: u64::MAX,
            kept_cursor: false,
            deferred: false,
            names_run: false,
            encoding,
            encoding_moved: false,
            code_cursor: false,
            portals_ended: false,
        }
    }
}

/// The queue and what the server's answers taught it.
pub(super) struct ExpectQueue {
    q: VecDeque<Expect>,
    /// What the session learnt (read and set by the relay, not the queue).
    pub(super) learned: Learned,
    /// The prefix of staged denials' statement names (`sqlgate.denied.<nonce>.`).
    marker: Box<str>,
    /// ReadyForQuerys the agent will see, sent for and seen (and written
    /// out: [`ExpectQueue::publish`]).
    sent: u64,
    seen: u64,
    unpublished: u64,
    /// DataRows since the last completion.
    rows: u64,
    /// The server said CopyInResponse and has not said ReadyForQuery since:
    /// it ignores Sync until the COPY ends.
    copy_in: bool,
    /// The last COPY whose CopySync the server answered as a Sync: it
    /// failed before taking data.
    copy_answered: u64,
    /// The server answered an error and skips the rest of the batch (until
    /// its ReadyForQuery): nothing more of it will be answered.
    failed: bool,
    /// What the current probe learnt so far, and what the last one did
    /// (milliseconds; `0` none, `u64::MAX` not known).
    probed: Option<u64>,
    idle_timeout_ms: u64,
    /// The ReadyForQuery of sqlgate's own transaction arrived (`HeldReady`).
    held_ready: bool,
    /// Upstream names whose Close the server skipped (after an error):
    /// closed again at the start of the next batch (`extended.rs`).
    orphans: Vec<(u8, UpName)>,
    /// The last message was a RowDescription of a statement's own result
    /// (a simple Query's), not a Describe's answer: it may be planned.
    own_rows: bool,
}

impl ExpectQueue {
    pub(super) fn new(marker: Box<str>, learned: Learned) -> Self {
        ExpectQueue {
            q: VecDeque::new(),
            learned,
            marker,
            sent: 0,
            seen: 0,
            unpublished: 0,
            rows: 0,
            copy_in: false,
            copy_answered: 0,
            failed: false,
            probed: None,
            idle_timeout_ms: u64::MAX,
            held_ready: false,
            orphans: Vec::new(),
            own_rows: false,
        }
    }

    /// Something was sent upstream that the server will answer.
    pub(super) fn push(&mut self, e: Expect) {
        if matches!(e, Expect::Ready | Expect::InjectedReady { pass: true, .. }) {
            self.sent += 1;
        }
        self.q.push_back(e);
    }

    /// What is still owed, oldest first.
    pub(super) fn iter(&self) -> impl Iterator<Item = &Expect> {
        self.q.iter()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.q.is_empty()
    }

    /// Every ReadyForQuery the agent awaits has been written to it.
    pub(super) fn answered(&self) -> bool {
        self.sent == self.seen
    }

    /// The ReadyForQuerys passed on since the last call are now written to
    /// the agent: whether there were any (the client side is then woken).
    pub(super) fn publish(&mut self) -> bool {
        let any = self.unpublished > 0;
        self.seen += std::mem::take(&mut self.unpublished);
        any
    }

    pub(super) fn copy_in(&self) -> bool {
        self.copy_in
    }

    pub(super) fn copy_answered(&self) -> u64 {
        self.copy_answered
    }

    pub(super) fn failed(&self) -> bool {
        self.failed
    }

    /// The session's shortest idle timeout as the last probe found it.
    pub(super) fn idle_timeout_ms(&self) -> u64 {
        self.idle_timeout_ms
    }

    pub(super) fn held_ready(&self) -> bool {
        self.held_ready
    }

    pub(super) fn expect_held_ready(&mut self) {
        self.held_ready = false;
    }

    pub(super) fn orphan(&mut self, kind: u8, name: UpName) {
        self.orphans.push((kind, name));
    }

    pub(super) fn take_orphans(&mut self) -> Vec<(u8, UpName)> {
        std::mem::take(&mut self.orphans)
    }

    /// A DataRow or CopyData that streams through in pieces (too large to
    /// buffer): only counted. `false`: a DataRow whose rows must be
    /// rewritten (the framing keeps those whole: the two disagree).
    pub(super) fn streamed(&mut self, tag: u8) -> bool {
        let row = tag == backend::DATA_ROW;
        self.rows += u64::from(row);
        !(row && self.rewriting())
    }

    /// Where the statement the next answer is for is (its rows, its
    /// completion), if it is owed in this batch: not past the batch's end,
    /// a statement of a later batch is not what this answers. Almost always
    /// the front: what was owed before it is answered.
    fn answering(&self) -> Option<usize> {
        self.q
            .iter()
            .position(|e| matches!(e, Expect::Statement(..) | Expect::Ready))
            .filter(|&i| matches!(self.q[i], Expect::Statement(..)))
    }

    /// The last answer was a RowDescription of a statement's own result
    /// (a simple Query's): one a planner may plan ([`ExpectQueue::plan_rows`]).
    pub(super) fn own_rows(&self) -> bool {
        self.own_rows
    }

    /// What masks do to the result of the statement being answered.
    pub(super) fn answering_masks(&self) -> Option<Arc<crate::session::mask::MaskPlan>> {
        match &self.q[self.answering()?] {
            Expect::Statement(ev, ..) => ev.masked.clone(),
            _ => None,
        }
    }

    /// The rows coming next are rewritten (their DataRows must come whole).
    pub(super) fn rewriting(&self) -> bool {
        self.plan().is_some()
    }

    fn plan(&self) -> Option<&Arc<RowPlan>> {
        match &self.q[self.answering()?] {
            Expect::Statement(_, _, _, plan) => plan.as_ref(),
            _ => None,
        }
    }

    /// The RowDescription just answered was a statement's own (a simple
    /// Query's): its rows get `plan`. Whether it was (otherwise nothing
    /// changes: a Describe's answer plans nothing).
    pub(super) fn plan_rows(&mut self, plan: Arc<RowPlan>) -> bool {
        if !std::mem::take(&mut self.own_rows) {
            return false;
        }
        match self.answering().map(|i| &mut self.q[i]) {
            Some(Expect::Statement(_, _, _, p)) => {
                *p = Some(plan);
                true
            }
            _ => false,
        }
    }

    /// What to do with the server's message `msg` (whole, tag first).
    /// Statements it completes or skips are pushed onto `done`, in order.
    pub(super) fn answer(&mut self, tag: u8, msg: &[u8], done: &mut Vec<Finished>) -> Pass {
        if matches!(self.q.front(), Some(Expect::Probe))
            && matches!(
                tag,
                backend::ROW_DESCRIPTION
                    | backend::DATA_ROW
                    | backend::COMMAND_COMPLETE
                    | backend::ERROR_RESPONSE
                    | backend::READY_FOR_QUERY
            )
        {
            self.probe_answer(tag, msg);
            return Pass::Probe;
        }
        self.own_rows = false;
        match tag {
            backend::DATA_ROW => {
                self.rows += 1;
                match self.plan() {
                    Some(p) => Pass::Rewrite(p.clone()),
                    None => Pass::Forward,
                }
            }
            backend::COMMAND_COMPLETE | backend::EMPTY_QUERY | backend::PORTAL_SUSPENDED => {
                self.completed(tag, msg, done)
            }
            backend::ERROR_RESPONSE => self.error(msg, done),
            backend::FUNCTION_CALL_RESPONSE => {
                done.extend(self.complete(Outcome::Ok, None, How::Called));
                Pass::Forward
            }
            backend::PARSE_COMPLETE | backend::BIND_COMPLETE => self.in_order(
                |e| match e {
                    Expect::Complete { swallow } => Some(*swallow),
                    _ => None,
                },
                Expect::is_ready,
            ),
            backend::PARAMETER_DESCRIPTION | backend::ROW_DESCRIPTION | backend::NO_DATA => {
                self.described(tag, msg)
            }
            backend::COPY_IN_RESPONSE => {
                self.copy_in = true;
                Pass::Forward
            }
            backend::CLOSE_COMPLETE => self.in_order(
                |e| match e {
                    Expect::Close { swallow, .. } => Some(*swallow),
                    _ => None,
                },
                |e| matches!(e, Expect::Ready),
            ),
            backend::READY_FOR_QUERY => self.ready(done),
            _ => Pass::Forward,
        }
    }

    /// An answer that comes in order and names nothing (ParseComplete,
    /// BindComplete, CloseComplete): it is the first entry `swallow_of`
    /// knows (which says whether it is sqlgate's own), unless `stop` comes
    /// first; then it is the agent's.
    fn in_order(
        &mut self,
        swallow_of: impl Fn(&Expect) -> Option<bool>,
        stop: impl Fn(&Expect) -> bool,
    ) -> Pass {
        let found = self
            .q
            .iter()
            .enumerate()
            .find_map(|(i, e)| match swallow_of(e) {
                Some(swallow) => Some(Some((i, swallow))),
                None => stop(e).then_some(None),
            })
            .flatten();
        match found {
            Some((i, swallow)) => {
                self.q.remove(i);
                if swallow {
                    Pass::Drop
                } else {
                    Pass::Forward
                }
            }
            None => Pass::Forward,
        }
    }

    /// The statements sent and never answered, when the session ends: each
    /// recorded as cut off: it may or may not have run.
    pub(super) fn cut_off(&mut self) -> Vec<Finished> {
        self.q
            .drain(..)
            .filter_map(|e| match e {
                Expect::Statement(mut ev, started, limit, _) => {
                    ev.outcome = Outcome::CutOff;
                    ev.duration_us = Some(started.elapsed().as_micros() as u64);
                    Some(Finished {
                        ev,
                        limit,
                        how: How::CutOff,
                    })
                }
                _ => None,
            })
            .collect()
    }

    /// An answer to sqlgate's probe of the idle timeouts (`hold.rs`).
    fn probe_answer(&mut self, tag: u8, msg: &[u8]) {
        match tag {
            backend::DATA_ROW => {
                if let Some(ms) = backend::first_column(msg)
                    .ok()
                    .flatten()
                    .and_then(timeout_ms)
                {
                    self.probed = Some(match (self.probed, ms) {
                        (Some(a), 0) => a,
                        (Some(0) | None, b) => b,
                        (Some(a), b) => a.min(b),
                    });
                }
            }
            backend::READY_FOR_QUERY => {
                self.q.pop_front();
                if let Some(ms) = self.probed.take() {
                    self.idle_timeout_ms = ms;
                }
            }
            _ => {}
        }
    }

    fn completed(&mut self, tag: u8, msg: &[u8], done: &mut Vec<Finished>) -> Pass {
        let i = self.q.iter().position(|e| {
            matches!(
                e,
                Expect::Statement(..) | Expect::Ready | Expect::InjectedComplete
            )
        });
        if let Some(i) = i.filter(|&i| matches!(self.q[i], Expect::InjectedComplete)) {
            // sqlgate's own BEGIN/COMMIT/ROLLBACK.
            self.q.remove(i);
            self.rows = 0;
            return Pass::Drop;
        }
        let tag_rows = (tag == backend::COMMAND_COMPLETE)
            .then(|| backend::command_tag(msg).ok())
            .flatten()
            .and_then(backend::rows_from_tag);
        let counted = tag_rows
            .or(Some(self.rows))
            .filter(|_| tag != backend::EMPTY_QUERY);
        let suspended = tag == backend::PORTAL_SUSPENDED;
        done.extend(self.complete(Outcome::Ok, counted, How::Completed { suspended }));
        self.rows = 0;
        Pass::Forward
    }

    fn error(&mut self, msg: &[u8], done: &mut Vec<Finished>) -> Pass {
        self.failed = true;
        let f = backend::error_fields(msg).unwrap_or_default();
        while self.copy_in && matches!(self.q.front(), Some(Expect::CopySync(_))) {
            self.q.pop_front();
        }
        if let Some(n) = marker_number(&f, &self.marker) {
            // Our staged denial: swap in sqlgate's error. It must be the
            // next thing expected; anything else means the two sides
            // disagree, and the session ends (fail closed).
            return match self.q.pop_front() {
                Some(Expect::Denial(m, report)) if m == n => Pass::Denial(report),
                _ => Pass::Lost("an unexpected denial marker"),
            };
        }
        // An error answering a Parse, Bind or Describe is that message's:
        // the Executes after it are skipped (not executed, at the
        // ReadyForQuery).
        let own = self.q.iter().find(|e| {
            matches!(
                e,
                Expect::Complete { .. } | Expect::Describe(_) | Expect::Statement(..)
            ) || e.is_ready()
        });
        if !matches!(own, Some(Expect::Complete { .. } | Expect::Describe(_))) {
            let e = ServerError::sqlstate(f.code);
            done.extend(self.complete(Outcome::Failed(e), None, How::Failed));
        }
        self.rows = 0;
        Pass::Forward
    }

    fn described(&mut self, tag: u8, msg: &[u8]) -> Pass {
        // A simple Query's RowDescription comes before any later batch's
        // Describe, past its ReadyForQuery.
        let i = self
            .q
            .iter()
            .position(|e| matches!(e, Expect::Describe(_)) || e.is_ready());
        let Some(i) = i.filter(|&i| matches!(self.q[i], Expect::Describe(_))) else {
            self.own_rows = tag == backend::ROW_DESCRIPTION;
            return Pass::Forward;
        };
        if tag == backend::PARAMETER_DESCRIPTION {
            // A ParameterDescription comes first: the entry stays for the
            // RowDescription or NoData after it. Only the client's Describe
            // of a statement asked for it.
            return match self.q[i] {
                Expect::Describe(Described::Pass) => Pass::Forward,
                _ => Pass::Drop,
            };
        }
        match (self.q.remove(i), tag) {
            (Some(Expect::Describe(Described::Swallow)), _) => Pass::Drop,
            (Some(Expect::Describe(Described::Portal(f))), backend::ROW_DESCRIPTION) => {
                match backend::row_description_with_formats(msg, f.codes()) {
                    Ok(m) => Pass::Instead(m),
                    // The server would refuse such a Bind at Execute.
                    Err(_) => Pass::Lost("result formats that do not fit the description"),
                }
            }
            _ => Pass::Forward,
        }
    }

    fn ready(&mut self, done: &mut Vec<Finished>) -> Pass {
        self.failed = false;
        let mut pass = Pass::Forward;
        // Everything before this ReadyForQuery that never completed was
        // skipped by the server after an error.
        while let Some(e) = self.q.pop_front() {
            match e {
                Expect::Ready => break,
                // Ignored by the server in copy-in mode.
                Expect::CopySync(_) if self.copy_in => {}
                Expect::CopySync(copy) => {
                    // The COPY never took data: its batch ended at this
                    // Sync (`ClientSide::sync`), and the agent sees this
                    // ReadyForQuery.
                    self.copy_answered = copy;
                    self.sent += 1;
                    break;
                }
                Expect::SwallowReady | Expect::InjectedReady { pass: false, .. } => {
                    pass = Pass::Drop;
                    break;
                }
                Expect::HeldReady => {
                    self.held_ready = true;
                    pass = Pass::Drop;
                    break;
                }
                Expect::InjectedReady { pass: true, answer } => {
                    if let Some(a) = answer {
                        pass = Pass::After(a);
                    }
                    break;
                }
                Expect::Statement(mut ev, _, limit, _) => {
                    ev.outcome = Outcome::NotExecuted;
                    done.push(Finished {
                        ev,
                        limit,
                        how: How::Skipped,
                    });
                }
                Expect::Close {
                    orphan: Some(o), ..
                } => {
                    // Skipped: what it closes is still upstream.
                    self.orphans.push(o);
                }
                Expect::Denial(..)
                | Expect::Probe
                | Expect::InjectedComplete
                | Expect::Complete { .. }
                | Expect::Describe(_)
                | Expect::Close { orphan: None, .. } => {}
            }
        }
        self.copy_in = false;
        self.rows = 0;
        if pass != Pass::Drop {
            self.unpublished += 1;
        }
        pass
    }

    /// Completes the next forwarded statement with `outcome`.
    fn complete(&mut self, outcome: Outcome, rows: Option<u64>, how: How) -> Option<Finished> {
        let i = self.answering()?;
        let Some(Expect::Statement(mut ev, started, limit, _)) = self.q.remove(i) else {
            return None;
        };
        ev.outcome = outcome;
        ev.rows = rows;
        ev.duration_us = Some(started.elapsed().as_micros() as u64);
        Some(Finished { ev, limit, how })
    }
}

/// The `n` of a staged denial's error, if this is one.
fn marker_number(f: &backend::ErrorFields<'_>, marker: &str) -> Option<u64> {
    if f.code != b"26000" {
        return None;
    }
    let m = std::str::from_utf8(f.message).ok()?;
    let at = m.find(marker)? + marker.len();
    let digits: &str = &m[at..];
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

/// A time setting as `SHOW` prints it (`0`, `250ms`, `2s`, `5min`, `1h`,
/// `1d`), in milliseconds.
pub(super) fn timeout_ms(v: &[u8]) -> Option<u64> {
    let v = std::str::from_utf8(v).ok()?.trim();
    let digits = v.bytes().take_while(u8::is_ascii_digit).count();
    let n: u64 = v[..digits].parse().ok()?;
    let unit = match &v[digits..] {
        "" | "ms" => 1,
        "s" => 1_000,
        "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(unit)
}

#[cfg(test)]
mod tests;
