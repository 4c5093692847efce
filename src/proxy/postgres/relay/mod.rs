//! The two directions of one agent session, after login.
//!
//! `client_to_server` reads the agent's messages, asks the engine about every
//! statement and forwards the original bytes of what is allowed.
//! `server_to_client` forwards the database's answers, completes each
//! statement's audit record, and swaps in sqlgate's own error where a denial
//! was staged.
//!
//! How a denial keeps both sides consistent: instead of the denied message,
//! sqlgate sends the server a `Describe` of a statement name that cannot exist
//! (`sqlgate.denied.<session nonce>.<n>`). The server fails it at exactly that
//! point in the stream, so it does what it does for any error: fails an open
//! transaction block, rolls back an implicit one, skips the rest of the
//! pipeline up to Sync. The server's "does not exist" error is then replaced,
//! on the way back, by sqlgate's own ErrorResponse (SQLSTATE 42501, rule and
//! reason). A denied statement therefore never reaches the database, and the
//! agent and the database agree on the transaction state.
//!
//! What the two directions share (`Shared`): the expected-response queue,
//! with what the session learnt from the statements it forwarded and the
//! server's answers (`expect::Learned`: transaction status, client
//! encoding, DDL in the open block, cursors that outlive it…) under its one
//! lock; the row guard's memory (`guard.rs`); and the wake-ups between them.

mod expect;
mod extended;
mod fastpath;
mod guard;
mod hold;
mod responses;
mod rows;

use crate::audit::{ApprovalNote, ApprovalOutcome, Event, Outcome, SessionInfo, StatementEvent};
use crate::classify::{Analysis, Class, Dialect, StatementInfo};
use crate::engine::{Decision, Engine};
use crate::policy::{Identity, Verdict};
use crate::proxy::frames::{Frame, FrameReader, Framed, Framing};
use crate::proxy::stream::{ReadPart, Stream, WritePart};
use crate::session::ledger::{count_verdicts, sha256_hex};
use crate::session::{Refusal, Why};
use bytes::{Bytes, BytesMut};
use expect::{Expect, ExpectQueue};
use postgres_protocol::message::frontend as fe;
use sqlgate_postgres::backend::{self, Report, Severity};
use sqlgate_postgres::frame::{self, Next};
use sqlgate_postgres::frontend;
use sqlgate_postgres::sqlstate;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch, Notify};

/// Bulk frames larger than this stream through instead of being buffered whole.
const STREAM_ABOVE: usize = 256 * 1024;
const READ_CHUNK: usize = 64 * 1024;

/// PostgreSQL's framing for the frame reader: every message must fit in
/// `max_message` bytes, except those `streamable` says may pass in pieces
/// once over `STREAM_ABOVE`; while `whole_rows` (a rewrite plan is active,
/// `rows.rs`) a DataRow never does.
struct PgFraming {
    max_message: usize,
    streamable: fn(u8) -> bool,
    whole_rows: bool,
}

impl Framing for PgFraming {
    type Error = frame::FrameError;
    fn next(&self, buf: &[u8]) -> Result<Framed, frame::FrameError> {
        Ok(
            match frame::next(buf, self.max_message, STREAM_ABOVE, |t| {
                (self.streamable)(t) && !(self.whole_rows && t == backend::DATA_ROW)
            })? {
                Next::NeedMore => Framed::NeedMore,
                Next::Whole { tag, len } => Framed::Whole { tag, len },
                Next::Partial {
                    tag,
                    avail,
                    remaining,
                } => Framed::Partial {
                    tag,
                    avail,
                    remaining,
                },
            },
        )
    }
}

type ClientFrames = FrameReader<PgFraming>;

/// State both directions see. Both run in one task, so the lock is never contended.
struct Shared {
    /// What the server owes, and what its answers taught (`expect.rs`).
    expects: Mutex<ExpectQueue>,
    ready: Notify,
    /// The row guard's memory and signals (`guard.rs`).
    guard: guard::GuardState,
}

impl Shared {
    /// The expected-response queue and what the session learnt. Both
    /// directions run in one task, so the lock is never contended; it is
    /// never held across an await, nor taken twice: a `try_lock` that fails
    /// is a bug, and panics (ending the session) rather than deadlocking it.
    fn queue(&self) -> std::sync::MutexGuard<'_, ExpectQueue> {
        self.expects
            .try_lock()
            .expect("the session's queue is taken once at a time")
    }

    /// Reads or sets what the session learnt (the lock is released before
    /// this returns).
    fn learnt<T>(&self, f: impl FnOnce(&mut expect::Learned) -> T) -> T {
        f(&mut self.queue().learned)
    }
}

/// A statement the agent prepared (named or unnamed), for the audit of its executions.
#[derive(Clone)]
struct Prepared {
    analysis: Arc<Analysis>,
    /// What masks do to its result (`None`: nothing to mask).
    masks: Option<Arc<crate::session::mask::MaskPlan>>,
    /// Its text, kept when the rules hold masks: a re-decision applies
    /// them again (`Engine::apply_masks` reads the text).
    mask_sql: Option<Arc<str>>,
    rule: Arc<str>,
    sql_sha256: Arc<str>,
    /// Set when executing this statement needs approval: the verdict and the
    /// statement it is about. The hold happens at Execute, when the
    /// parameter values are known; until then the server has only the
    /// statement's neutral text (`parse`).
    hold: Option<(Verdict, usize)>,
    /// The client's Parse, kept when the statement was held at Parse: the
    /// server then has the neutral text (string literals `NULL`,
    /// `classify::neutral_text`) under `upstream`, to describe it, and gets
    /// this Parse only once an Execute of it is approved.
    parse: Option<Arc<[u8]>>,
    /// The row guard's limit from the verdict (`guard.rs`).
    max_rows: Option<u64>,
    /// The SQL as written, kept only for held statements whose rule shows literals.
    text: Option<Arc<str>>,
    /// Its name upstream (sqlgate's own, never reused: see `extended.rs`).
    upstream: extended::UpName,
    /// The classification before the catalog, and the catalog generation
    /// the decision was made at: a Bind after a schema change decides again
    /// (the server re-plans against the new definitions too).
    classified: Arc<Analysis>,
    generation: u64,
    /// The Parse's parameter types: what converting the Bind's values runs
    /// is read from the catalog at each decision (`decide_with_params`).
    param_types: Arc<[u32]>,
    /// The client encoding its text was read in (`encoding::Encoding::id`):
    /// a held statement's Parse and Bind go upstream only under it.
    encoding: u8,
}

struct Portal {
    prepared: Arc<Prepared>,
    /// Parameter values, kept only for held statements whose rule shows literals.
    params: Option<Vec<Option<String>>>,
    /// Its name upstream (sqlgate's own, never reused).
    upstream: extended::UpName,
    /// The client's Bind of a held statement, not sent: `upstream` is then
    /// an empty placeholder portal, and this Bind goes upstream (with the
    /// statement's Parse) only once its Execute is approved.
    bind: Option<Arc<[u8]>>,
    /// The approval its first Execute had: the rest of its rows (after
    /// PortalSuspended) are the same execution.
    approved: Option<Arc<ApprovalNote>>,
    /// The Bind's result-format codes: the format of each result column.
    formats: rows::ResultFormats,
    /// How its rows are rewritten, when a planner is active (`rows.rs`).
    /// Planned at Bind without the columns: sqlgate does not describe
    /// portals itself yet (masking will, issue 11).
    rows: Option<Arc<crate::session::rows::RowPlan>>,
}

/// What the client side must do after a message.
enum Step {
    Next,
    End(End),
    Hold(Box<Held>),
    /// A row-guard or barrier point (`guard.rs`): settled asynchronously.
    Guard(guard::Point),
}

/// A message waiting for approval.
struct Held {
    msg: Vec<u8>,
    analysis: Arc<Analysis>,
    verdicts: Vec<Verdict>,
    sha: Arc<str>,
    /// Simple Query (true) or extended Execute (false).
    simple: bool,
    params: Option<Vec<Option<String>>>,
    /// Extended: the statement as written (when the rule shows literals).
    text: Option<Arc<str>>,
    /// Extended: the real Parse (if the server has only the neutral text)
    /// and Bind that go before `msg` once approved, and what follows.
    prelude: Option<extended::Prelude>,
    /// Extended: the classification before the catalog, and the Parse's
    /// parameter types (a simple Query's text is classified again from
    /// `msg`).
    classified: Option<(Arc<Analysis>, Arc<[u32]>)>,
    /// The catalog's definitions when it was decided (`Catalog::definitions`).
    definitions: u64,
    /// Extended: the portal's row plan (`Portal::rows`).
    rows: Option<Arc<crate::session::rows::RowPlan>>,
    /// Per statement, what masks do to its result (`Decision::masks`).
    masks: Option<Arc<[Option<Arc<crate::session::mask::MaskPlan>>]>>,
    /// Extended: the statement's text for the masks (`Prepared::mask_sql`).
    mask_sql: Option<Arc<str>>,
}

enum HoldEnd {
    Approved(ApprovalNote),
    Refused(Bytes, ApprovalNote),
    ClientGone,
}

pub struct Session {
    pub engine: Arc<Engine>,
    pub info: Arc<SessionInfo>,
    pub identity: Identity,
    pub max_message: usize,
    pub keepalive: std::time::Duration,
    /// Notified when the agent sends a CancelRequest for this session.
    pub cancel: Arc<crate::session::cancel::HoldSignal>,
    /// The catalog of the session's database (looked up once).
    pub catalog: Option<Arc<crate::catalog::Catalog>>,
    /// How the login resolves unqualified names: its startup `search_path`
    /// (empty: the role's and database's default). Part of a standing
    /// grant's key while no statement has moved names.
    pub login_path: Arc<str>,
    /// The `search_path` the session started with, as far as sqlgate
    /// knows it: the startup packet's, or the login's default then.
    pub start_path: Option<Arc<str>>,
    /// The client encoding the server reported at login.
    pub encoding: &'static crate::encoding::Encoding,
    /// Every statement record of the session goes through it.
    pub ledger: crate::session::Ledger,
    /// Plans result rewriting (`session/rows.rs`); none: rows pass as sent.
    pub rows: Option<Arc<dyn crate::session::rows::Planner>>,
}

/// Why a session ended.
pub enum End {
    ClientGone,
    ServerGone,
    Shutdown,
    Fatal(Bytes),
}

pub async fn run(
    sess: &Session,
    client: Stream,
    server: Stream,
    status: u8,
    shutdown: watch::Receiver<bool>,
) -> (End, u64) {
    let (mut client_rd, mut client_wr) = client.split();
    let (mut server_rd, mut server_wr) = server.split();
    let mut nonce = [0u8; 8];
    rand::fill(&mut nonce);
    let marker = format!("sqlgate.denied.{}.", hex::encode(nonce));
    let shared = Shared {
        expects: Mutex::new(ExpectQueue::new(
            marker.clone().into(),
            expect::Learned::new(status, sess.encoding.id()),
        )),
        ready: Notify::new(),
        guard: guard::GuardState::default(),
    };
    let (notices, mut notices_rx) = mpsc::unbounded_channel();
    let mut c2s = ClientSide {
        notices,
        sess,
        shared: &shared,
        marker: &marker,
        next_marker: 0,
        next_name: 0,
        prepared: HashMap::new(),
        portals: HashMap::new(),
        skipping: false,
        in_extended: false,
        after_copy: false,
        copy: 0,
        since_copy_sync: true,
        batch: guard::Batch::default(),
        out: BytesMut::with_capacity(READ_CHUNK),
        acks: Vec::new(),
    };
    // Biased: both directions are polled on every wake-up anyway (neither
    // ends but with the session); no random order to draw each time.
    let end = tokio::select! {
        biased;
        e = c2s.run(&mut client_rd, &mut server_wr, shutdown) => e,
        e = responses::server_to_client(sess, &shared, &mut server_rd, &mut client_wr, &mut notices_rx) => e,
    };
    let end = match end {
        Ok(e) => e,
        Err(e) => {
            tracing::debug!(session = %sess.info.id, "session i/o error: {e}");
            End::ClientGone
        }
    };
    close(&end, &mut client_wr, &mut server_wr).await;
    // Statements still in flight when the session ends were sent but never answered.
    let left = shared.queue().cut_off();
    for f in left {
        sess.ledger.record(f.ev);
    }
    (end, sess.ledger.count())
}

/// Tells the agent and the server how the session ends, and closes both.
async fn close(end: &End, client_wr: &mut WritePart, server_wr: &mut WritePart) {
    match end {
        End::Shutdown => {
            let b = Report::new(
                Severity::Fatal,
                sqlstate::ADMIN_SHUTDOWN,
                "terminating connection because sqlgate is shutting down",
            )
            .encode();
            let _ = client_wr.write_all(&b).await;
            let _ = server_wr.write_all(&terminate()).await;
        }
        End::Fatal(b) => {
            let _ = client_wr.write_all(b).await;
            let _ = server_wr.write_all(&terminate()).await;
        }
        End::ClientGone => {
            let _ = server_wr.write_all(&terminate()).await;
        }
        End::ServerGone => {}
    }
    let _ = client_wr.flush().await;
    let _ = client_wr.shutdown().await;
    let _ = server_wr.shutdown().await;
}

/// Whether a statement after the first of a string reaches user code (a
/// function, a view, a trigger: the catalog placed something for it). Each
/// statement of a string is planned only when the one before it is done,
/// so what such code is by then is not what was approved: an earlier
/// statement can wait (on a lock) while a redefinition commits.
fn later_code(d: &Decision) -> bool {
    d.analysis.statements.len() > 1 && reaches_code(d, 1)
}

/// Whether a statement of `d` from the `from`th on reaches user code: a
/// user function it calls, or something the catalog placed for it (a
/// view, a trigger, a type's or a parameter's code).
fn reaches_code(d: &Decision, from: usize) -> bool {
    d.analysis
        .statements
        .iter()
        .zip(&d.classified.statements)
        .skip(from)
        .any(|(now, before)| {
            before
                .pending
                .as_ref()
                .is_some_and(|p| !p.functions.is_empty())
                || now.classes != before.classes
                || now.tables != before.tables
        })
}

fn terminate() -> BytesMut {
    let mut b = BytesMut::new();
    fe::terminate(&mut b);
    b
}

struct ClientSide<'a> {
    /// Messages for the agent that don't answer a request (the held notice).
    notices: mpsc::UnboundedSender<Bytes>,
    sess: &'a Session,
    shared: &'a Shared,
    marker: &'a str,
    next_marker: u64,
    /// The last number used in an upstream name (`extended.rs`).
    next_name: u64,
    prepared: HashMap<Vec<u8>, Arc<Prepared>>,
    portals: HashMap<Vec<u8>, Portal>,
    /// After a denial inside an extended-protocol batch: drop messages until Sync,
    /// as the server itself does after an error.
    skipping: bool,
    /// An extended-protocol batch is open (messages since the last Sync).
    in_extended: bool,
    /// The last Execute was of a COPY and no CopyDone/CopyFail followed yet:
    /// a Sync now may be ignored by the server (`Expect::CopySync`).
    after_copy: bool,
    /// COPY Executes so far: the current one's number.
    copy: u64,
    /// Nothing was read since the last CopySync.
    since_copy_sync: bool,
    /// What the current extended-protocol batch holds that matters at its
    /// Sync: row-guarded or barrier Executes (`guard.rs`).
    batch: guard::Batch,
    out: BytesMut,
    /// Records of refusals that must be on disk before `out` goes upstream
    /// (the refusal is answered only after that).
    acks: Vec<crate::audit::DurableAck>,
}

impl ClientSide<'_> {
    async fn run(
        &mut self,
        rd: &mut ReadPart,
        wr: &mut WritePart,
        mut shutdown: watch::Receiver<bool>,
    ) -> std::io::Result<End> {
        let mut frames = FrameReader::new(PgFraming {
            max_message: self.sess.max_message,
            streamable: |t| t == b'd',
            whole_rows: false,
        });
        let mut draining = *shutdown.borrow();
        loop {
            if draining && self.idle() {
                return Ok(End::Shutdown);
            }
            // Biased, the shutdown first: a client that keeps sending
            // still sees the drain begin.
            tokio::select! {
                biased;
                _ = shutdown.changed(), if !draining => { draining = true; continue; }
                _ = self.shared.ready.notified(), if draining => continue,
                r = frames.fill(rd) => {
                    if r? == 0 {
                        return Ok(End::ClientGone);
                    }
                }
            }
            loop {
                let (tag, len) = match frames.next_frame() {
                    Ok(None) => break,
                    Ok(Some(Frame::Piece { len, .. })) => {
                        // CopyData too large to buffer: data, not SQL.
                        self.out.extend_from_slice(frames.front(len));
                        frames.consume(len);
                        continue;
                    }
                    Ok(Some(Frame::Whole { tag, len })) => (tag, len),
                    Err(e) => {
                        let msg = format!("sqlgate: {e}");
                        let b = Report::new(Severity::Fatal, sqlstate::PROGRAM_LIMIT_EXCEEDED, &msg)
                            .hint("raise [limits] max_message_bytes in sqlgate's config if this is legitimate")
                            .encode();
                        return Ok(End::Fatal(b));
                    }
                };
                if let Some(end) = self.whole(tag, len, rd, wr, &mut frames).await? {
                    return Ok(end);
                }
            }
            if let Err(end) = self.settle().await {
                return Ok(end);
            }
            if !self.out.is_empty() {
                wr.write_all(&self.out).await?;
                wr.flush().await?;
                self.out.clear();
            }
        }
    }

    /// One whole message of the agent's, `len` bytes at the front of
    /// `frames`: read once the server's answers say it can be read as the
    /// server will, decided, and forwarded, refused or held.
    async fn whole(
        &mut self,
        tag: u8,
        len: usize,
        rd: &mut ReadPart,
        wr: &mut WritePart,
        frames: &mut ClientFrames,
    ) -> std::io::Result<Option<End>> {
        if !self.sess.engine.audit.alive() {
            // Nothing can be recorded any more: nothing more runs (what is
            // queued already was recorded).
            if let Err(end) = self.settle().await {
                return Ok(Some(end));
            }
            wr.write_all(&self.out).await?;
            return Ok(Some(End::Fatal(audit_failure())));
        }
        if self.must_wait(tag, frames.front(len)) {
            // A Query sent before the previous one's answer: read only once
            // the server has answered, so a setting that answer reports
            // (code sqlgate could not see turning
            // `standard_conforming_strings` off) ends the session before
            // this text is read the old way. A client that waits for
            // answers never waits here. The same for a Parse behind a
            // statement that may change a setting, and for a Parse with a
            // backslash, or with non-ASCII text in a session whose encoding
            // is not UTF8, behind anything (code run by any statement may
            // change standard_conforming_strings or the encoding, should
            // the catalog miss it).
            if let Some(end) = self
                .run_point(guard::Point::Barrier, rd, wr, frames)
                .await?
            {
                return Ok(Some(end));
            }
        }
        if matches!(tag, b'B' | b'E') && self.batch.unsettled && !self.skipping {
            // After a barrier statement's Execute in this batch: the
            // statements bound or run next are decided once the server has
            // answered it (a DDL statement's completion moves the catalog).
            if let Some(end) = self.wait_settled(wr).await? {
                return Ok(Some(end));
            }
        }
        if matches!(tag, b'Q' | b'P' | b'B' | b'E' | b'F') {
            // Decided only on a current catalog (after a DDL statement
            // completed, its reload), or failing closed once `WAIT` is over
            // (`catalog::resolve`).
            if let Some(c) = &self.sess.catalog {
                if !c.is_current() {
                    c.wait_current(crate::catalog::WAIT).await;
                }
            }
        }
        let step = self.message(tag, frames.front(len));
        frames.consume(len);
        match step {
            Step::Next => Ok(None),
            Step::End(end) => {
                if let Err(end) = self.settle().await {
                    return Ok(Some(end));
                }
                wr.write_all(&self.out).await?;
                Ok(Some(end))
            }
            Step::Hold(held) => self.held(*held, rd, wr, frames).await,
            Step::Guard(point) => self.run_point(point, rd, wr, frames).await,
        }
    }

    /// Whether the agent's message must wait for the server's answers to
    /// what was sent before it (see `whole`).
    fn must_wait(&self, tag: u8, msg: &[u8]) -> bool {
        let unanswered = || !self.shared.queue().answered();
        match tag {
            b'Q' => unanswered(),
            b'P' | b'B' if !self.skipping => {
                self.setting_in_flight()
                    || (tag == b'P'
                        && ((!self.encoding().is_utf8() && !msg.is_ascii())
                            || msg.contains(&b'\\'))
                        && unanswered())
            }
            _ => false,
        }
    }

    /// A message waiting for approval: what came before it goes first, then
    /// it is held until decided, then released or refused.
    async fn held(
        &mut self,
        held: Held,
        rd: &mut ReadPart,
        wr: &mut WritePart,
        frames: &mut ClientFrames,
    ) -> std::io::Result<Option<End>> {
        if let Some(end) = self.send(wr).await? {
            return Ok(Some(end));
        }
        let end = self.hold(&held, rd, wr, frames).await?;
        let end = match self.before_release(&held, end).await {
            Ok(end) => end,
            Err(fatal) => return Ok(Some(fatal)),
        };
        match end {
            HoldEnd::Approved(note) => {
                let barrier = held.simple && held.analysis.statements.iter().any(guard::barrier);
                if let Some(point) = self.release(held, note) {
                    // Its allowed siblings are counted.
                    return self.run_point(point, rd, wr, frames).await;
                }
                if barrier {
                    wr.write_all(&self.out).await?;
                    wr.flush().await?;
                    self.out.clear();
                    self.wait_idle().await;
                }
            }
            HoldEnd::Refused(report, note) => {
                self.audit_held(&held, Outcome::Denied, note);
                self.stage_denial(report, held.simple);
            }
            HoldEnd::ClientGone => return Ok(Some(End::ClientGone)),
        }
        Ok(None)
    }

    /// Settles a row-guard or barrier point: what came before goes first.
    async fn run_point(
        &mut self,
        point: guard::Point,
        rd: &mut ReadPart,
        wr: &mut WritePart,
        frames: &mut ClientFrames,
    ) -> std::io::Result<Option<End>> {
        if let Some(end) = self.send(wr).await? {
            return Ok(Some(end));
        }
        if let Some(end) = self.guard_point(point, rd, wr, frames).await? {
            return Ok(Some(end));
        }
        self.send(wr).await
    }

    /// Waits until the refusals recorded so far are on disk. If the audit
    /// log cannot be written, the session ends unanswered: sqlgate never
    /// answers a decision it could not record.
    async fn settle(&mut self) -> Result<(), End> {
        for ack in self.acks.drain(..) {
            if ack.await.is_err() {
                return Err(End::Fatal(audit_failure()));
            }
        }
        Ok(())
    }

    fn idle(&self) -> bool {
        let answered = self.shared.queue().answered();
        answered && self.shared.learnt(|l| l.status) == b'I'
    }

    fn expect(&self, e: Expect) {
        if let Expect::Statement(_, _, Some(_), _) = e {
            self.shared.guard.inflight.fetch_add(1, Ordering::AcqRel);
        }
        self.shared.queue().push(e);
    }

    /// Whether an earlier batch or Query, still unanswered, holds a
    /// statement that may change a setting sqlgate's reading depends on
    /// (`guard::barrier`; a transaction's end once the encoding moved): a
    /// Parse's text or a Bind's values are read only after its answer, as a
    /// pipelined Query's are. The current batch's own are refused instead
    /// (`Batch::barrier`): its answers wait for its Sync.
    fn setting_in_flight(&self) -> bool {
        let mut pending = false;
        let q = self.shared.queue();
        for e in q.iter() {
            match e {
                Expect::Statement(ev, ..) => {
                    pending |= ev
                        .analysis
                        .statements
                        .get(ev.index)
                        .is_some_and(|s| settings_may_change(s, &q.learned))
                }
                e if e.is_ready() && pending => return true,
                _ => {}
            }
        }
        false
    }

    /// Handles one whole message.
    fn message(&mut self, tag: u8, msg: &[u8]) -> Step {
        self.copy_ended();
        if self.skipping && tag != b'S' {
            return Step::Next;
        }
        if matches!(tag, b'P' | b'B' | b'E' | b'C' | b'D' | b'H') && !self.in_extended {
            self.in_extended = true;
            self.close_orphans();
        }
        if matches!(tag, b'B' | b'E' | b'C' | b'D')
            && self.shared.learnt(|l| std::mem::take(&mut l.portals_ended))
        {
            self.portals.clear();
        }
        if self.out_of_batch_order(tag) {
            return Step::Next;
        }
        match tag {
            b'Q' => {
                self.forget_unnamed();
                return self.query(msg);
            }
            b'P' => self.parse(msg),
            b'B' => self.bind(msg),
            b'E' => return self.execute(msg),
            b'C' | b'D' => self.describe_or_close(tag, msg),
            b'H' => self.out.extend_from_slice(msg),
            b'S' => {
                if let Some(point) = self.sync_point(msg) {
                    return Step::Guard(point);
                }
                // The Sync that ends an implicit transaction commits it: as
                // a COMMIT would, it runs a WITH HOLD cursor's query and
                // deferred triggers on the definitions of now.
                if !self.skipping && self.shared.learnt(|l| l.status) == b'I' && self.stale_commit()
                {
                    self.refuse_stale_cursor(false);
                }
                self.sync(msg);
            }
            // COPY data flows only while the server is in COPY mode; outside it
            // the server ignores or rejects it. It is data, not SQL.
            b'd' => self.out.extend_from_slice(msg),
            b'c' | b'f' => {
                self.after_copy = false;
                self.out.extend_from_slice(msg);
            }
            b'X' => {
                self.out.extend_from_slice(msg);
                return Step::End(End::ClientGone);
            }
            b'F' => return self.function_call(msg),
            other => {
                let msg = format!(
                    "sqlgate: unsupported frontend message type `{}`",
                    other as char
                );
                let report =
                    Report::new(Severity::Error, sqlstate::PROTOCOL_VIOLATION, &msg).encode();
                self.audit_unvettable("UNKNOWN MESSAGE");
                self.stage_denial(report, !self.in_extended);
            }
        }
        Step::Next
    }

    /// Refuses a Query inside an extended batch, and a Parse or Query after
    /// a barrier statement before its Sync: whether it did.
    fn out_of_batch_order(&mut self, tag: u8) -> bool {
        if tag == b'Q' && self.in_extended {
            // PostgreSQL commits an extended batch's implicit transaction at
            // the end of a simple Query too, where the row guard could not
            // hold it (`guard.rs`). The failing marker rolls the batch back,
            // and its Sync ends the server's error state: the batch is over.
            let report = Report::new(
                Severity::Error,
                sqlstate::PROTOCOL_VIOLATION,
                "sqlgate: a simple Query cannot follow Parse, Bind, Execute, Describe, Close or Flush before their Sync: send Sync first",
            )
            .hint("send Sync to end the extended-protocol batch before a simple Query")
            .encode();
            self.audit_unvettable("QUERY (before Sync)");
            self.stage_denial(report, true);
            self.skipping = false;
            self.in_extended = false;
            self.after_copy = false;
            self.batch = guard::Batch::default();
            return true;
        }
        if self.batch.barrier && matches!(tag, b'P' | b'Q') {
            // The server reports a setting changed by the batch's barrier
            // statement only at its ReadyForQuery (`guard.rs`).
            let report = Report::new(
                Severity::Error,
                sqlstate::INSUFFICIENT_PRIVILEGE,
                "sqlgate: a statement that may change settings or the schema (class unparsed, session or ddl; a transaction's end once the client encoding changed; a FETCH, MOVE or COMMIT that runs a cursor's code) must be followed by Sync before another Parse or Query: sqlgate reads SQL only under settings and a catalog the server has confirmed",
            )
            .hint("send Sync after such a statement")
            .encode();
            self.audit_unvettable(if tag == b'P' {
                "PARSE (after a barrier)"
            } else {
                "QUERY (after a barrier)"
            });
            self.stage_denial(report, false);
            return true;
        }
        false
    }

    /// Forwards a Sync: the batch ends.
    fn sync(&mut self, msg: &[u8]) {
        self.skipping = false;
        if self.after_copy {
            // In copy-in mode the server ignores this Sync: the batch goes
            // on (what ran in it still counts for what follows) until the
            // Sync after CopyDone, unless the COPY failed before taking
            // data and the server answers this one (`copy_answered`).
            self.expect(Expect::CopySync(self.copy));
            self.since_copy_sync = false;
            self.out.extend_from_slice(msg);
            return;
        }
        self.in_extended = false;
        self.batch = guard::Batch::default();
        self.expect(Expect::Ready);
        self.out.extend_from_slice(msg);
    }

    /// The COPY whose CopySync was sent failed before taking data (the
    /// server answered that Sync): its batch ended there. Exactly so only
    /// if nothing was read since; else what was read since stays in the
    /// batch, the stricter reading, until the next Sync.
    fn copy_ended(&mut self) {
        if !self.after_copy {
            return;
        }
        if self.shared.queue().copy_answered() == self.copy {
            self.after_copy = false;
            if !self.since_copy_sync {
                self.in_extended = false;
                self.batch = guard::Batch::default();
            }
        }
        self.since_copy_sync = true;
    }

    /// The decision on SQL text of the agent's, against the session's
    /// catalog, with the masks applied (`Engine::apply_masks`).
    fn decide_text(&self, sql: &str) -> Decision {
        let mut d = self.sess.engine.decide_in(
            Dialect::Postgres,
            self.sess.catalog.as_deref(),
            &self.sess.identity,
            sql,
            self.shared.learnt(|l| l.uncommitted_ddl),
        );
        self.sess.engine.apply_masks(
            &self.sess.identity,
            sql,
            self.sess.catalog.as_deref(),
            self.encoding().is_utf8(),
            &mut d,
        );
        d
    }

    /// A simple Query: decided, then forwarded, held or refused.
    fn query(&mut self, msg: &[u8]) -> Step {
        let Some(sql) = self.query_sql(msg) else {
            return Step::Next;
        };
        let d = self.decide_text(&sql);
        let sha = sha256_hex(&sql);
        count_verdicts(&d.verdicts);
        // A held string moves names once it runs (`release`): until then
        // its own request is keyed on the names as they are.
        if d.blocking().is_none() {
            self.note_names(&d.analysis);
        }
        if self.stale_cursor(&d.analysis) {
            self.refuse_stale_cursor(true);
            return Step::Next;
        }
        match d.blocking() {
            None => {
                let pending = guard::Pending {
                    msg: msg.to_vec(),
                    events: self.query_events(&d, &sha),
                    simple: true,
                    rows: None,
                };
                if let Some(step) = self.query_point(&d, &sha, pending) {
                    return step;
                }
            }
            Some(_) if d.first_deny().is_none() => {
                let guarded = d
                    .verdicts
                    .iter()
                    .enumerate()
                    .any(|(i, v)| guard::limit(&d.analysis.statements[i], v).is_some());
                if self.mixed(&d, &sha, guarded) {
                    return Step::Next;
                }
                if later_code(&d) {
                    self.refuse_later_code(&d, &sha);
                    return Step::Next;
                }
                return Step::Hold(Box::new(Held {
                    msg: msg.to_vec(),
                    analysis: d.analysis,
                    verdicts: d.verdicts,
                    sha,
                    simple: true,
                    params: None,
                    text: None,
                    prelude: None,
                    classified: None,
                    definitions: self.sess.catalog.as_ref().map_or(0, |c| c.definitions()),
                    rows: None,
                    masks: d.masks,
                    mask_sql: None,
                }));
            }
            Some(_) => self.refuse(&d, &sha, true),
        }
        Step::Next
    }

    /// A simple Query's text, decoded in the session's encoding; `None`
    /// when it can't be (the agent was answered).
    fn query_sql<'m>(&mut self, msg: &'m [u8]) -> Option<std::borrow::Cow<'m, str>> {
        match frontend::query_bytes(msg).map(|b| self.encoding().decode(b)) {
            Ok(Some(s)) => Some(s),
            Ok(None) => {
                self.reject_undecodable(frontend::DecodeError::NotUtf8, true);
                None
            }
            Err(e) => {
                self.reject_undecodable(e, true);
                None
            }
        }
    }

    /// The records of an allowed query string, one per statement, each with
    /// the row guard's limit for it.
    fn query_events(
        &self,
        d: &Decision,
        sha: &Arc<str>,
    ) -> Vec<(Box<StatementEvent>, Option<u64>)> {
        d.verdicts
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let mut ev =
                    self.sess
                        .ledger
                        .event(&d.analysis, i, sha, &v.rule, v.action, Outcome::Ok);
                ev.masked = d.mask_plan(i);
                (ev, guard::limit(&d.analysis.statements[i], v))
            })
            .collect()
    }

    /// Whether committing now would run work queued before the schema last
    /// changed: a WITH HOLD cursor's query, deferred constraint triggers.
    fn stale_commit(&self) -> bool {
        let Some(c) = &self.sess.catalog else {
            return false;
        };
        let opened = self.shared.learnt(|l| l.opened_at);
        opened != u64::MAX
            && opened != c.generation()
            && (self.shared.learnt(|l| l.kept_cursor) || self.shared.learnt(|l| l.deferred))
    }

    /// Whether `a` fetches from a cursor that may have been opened before
    /// the schema last changed: its query runs the definitions of then,
    /// which sqlgate no longer decides on (a function's new body runs for
    /// the rows fetched after a `CREATE OR REPLACE`). Coarse on purpose:
    /// sqlgate does not follow each cursor, only whether anything may
    /// have opened one since the server last said idle.
    fn stale_cursor(&self, a: &Analysis) -> bool {
        let Some(c) = &self.sess.catalog else {
            return false;
        };
        let opened = self.shared.learnt(|l| l.opened_at);
        // A COMMIT runs a WITH HOLD cursor's query to its end (into a
        // store), and deferred constraint triggers (as `SET CONSTRAINTS …
        // IMMEDIATE` does), on the definitions of now.
        let held = self.shared.learnt(|l| l.kept_cursor) || self.shared.learnt(|l| l.deferred);
        opened != u64::MAX
            && opened != c.generation()
            && a.statements.iter().any(|s| {
                matches!(s.command.as_str(), "FETCH" | "MOVE")
                    || (held
                        && matches!(
                            s.command.as_str(),
                            "COMMIT" | "END" | "PREPARE TRANSACTION" | "SET CONSTRAINTS"
                        ))
            })
    }

    /// What an approved statement passes before it goes upstream, in
    /// order. Its definitions did not change while it waited (unless a
    /// grant decided it just now, on the current snapshot). The decision
    /// (or grant use), queued before it was announced, is on disk, signed
    /// and anchored: not anchored, it is not run, since a cut of the log
    /// back past the approval would go unseen. And a `statement_sent`
    /// record is on disk before any of its rows can flow, whatever happens
    /// to sqlgate before it completes (its outcome record comes then).
    /// `Err`: the audit log is gone.
    async fn before_release(&mut self, held: &Held, end: HoldEnd) -> Result<HoldEnd, End> {
        let HoldEnd::Approved(note) = end else {
            return Ok(end);
        };
        let refused = |report: Bytes, outcome: ApprovalOutcome| {
            HoldEnd::Refused(
                report,
                ApprovalNote {
                    outcome,
                    ..note.clone()
                },
            )
        };
        if note.outcome != ApprovalOutcome::Granted && self.changed_while_held(held).await {
            // A grant its approval gave covers what approvers saw, not this.
            for id in note.request.iter().flat_map(|r| r.split(',')) {
                self.sess
                    .engine
                    .approvals
                    .drop_grant_of(id, "changed_while_held");
            }
            return Ok(refused(
                report(&Refusal::changed_while_held(), Severity::Error),
                ApprovalOutcome::ChangedWhileHeld,
            ));
        }
        use crate::audit::CheckpointError;
        match self.sess.engine.audit.checkpoint_sync().await {
            Ok(()) => {}
            Err(CheckpointError::WriterGone) => return Err(End::Fatal(audit_failure())),
            Err(CheckpointError::NotAnchored) => {
                return Ok(refused(
                    report(&Refusal::not_anchored(), Severity::Error),
                    ApprovalOutcome::NotAnchored,
                ))
            }
        }
        let sent = Event::Json(serde_json::json!({
            "kind": "statement_sent",
            "session": self.sess.info.id,
            "agent": &*self.sess.info.agent,
            "database": self.sess.info.database,
            "sql_sha256": &*held.sha,
            "approval": note,
        }));
        if self.sess.engine.audit.record_durable(sent).await.is_err() {
            return Err(End::Fatal(audit_failure()));
        }
        Ok(HoldEnd::Approved(note))
    }

    /// Whether what an approved statement does is no longer what its
    /// approvers were shown: the definitions it reaches (a function's body,
    /// a view, a trigger) changed while it waited. The catalog is read
    /// again first (a change made a moment before the approval is not yet
    /// in the snapshot), then the statement decided again; a snapshot not
    /// current in time decides it unparsed, which differs: refused.
    async fn changed_while_held(&self, held: &Held) -> bool {
        let Some(c) = &self.sess.catalog else {
            return false;
        };
        c.changed();
        c.wait_current(crate::catalog::WAIT).await;
        let d = match (&held.classified, held.simple) {
            (Some((classified, types)), _) => {
                self.decide_with_params(classified.clone(), types, held.mask_sql.as_deref())
            }
            (None, true) => match frontend::query_bytes(&held.msg)
                .ok()
                .and_then(|b| self.encoding().decode(b))
            {
                Some(sql) => self.decide_text(&sql),
                None => return true,
            },
            (None, false) => return false,
        };
        let now = &d.analysis.statements;
        let then = &held.analysis.statements;
        // Extended: the held statement is the analysis' one statement.
        now.len() != then.len()
            || now
                .iter()
                .zip(then)
                .any(|(a, b)| a.classes != b.classes || a.tables != b.tables)
            // A definition changed somewhere, and the statement runs user
            // code: a body may now do otherwise with the same classes and
            // tables (another WHERE), which the comparison can't see; or it
            // reads a table, whose policies, rights or owner may have
            // changed (review G, G1). The generation moves only on a real
            // change of definitions, so this refuses only then.
            || (c.definitions() != held.definitions
                && (reaches_code(&d, 0) || now.iter().any(|s| !s.tables.is_empty())))
    }

    /// Refuses a string to hold whose later statements reach user code
    /// (`later_code`): each is approved on its own, run when approved.
    fn refuse_later_code(&mut self, d: &Decision, sha: &Arc<str>) {
        let report = Report::new(
            Severity::Error,
            sqlstate::FEATURE_NOT_SUPPORTED,
            "sqlgate: this query string needs approval, and a statement after its first runs user code (a function, view or trigger) that could change before it runs; send the statements one at a time",
        )
        .encode();
        let b = d.blocking().unwrap_or(0);
        self.audit_denied(&d.analysis, &d.verdicts, b, sha);
        self.stage_denial(report, true);
    }

    /// Refuses a statement that would run work queued before a schema
    /// change: a FETCH or MOVE of a cursor that may predate it, a COMMIT
    /// (or `SET CONSTRAINTS`) with a WITH HOLD cursor or deferred trigger.
    fn refuse_stale_cursor(&mut self, simple: bool) {
        let report = Report::new(
            Severity::Error,
            sqlstate::FEATURE_NOT_SUPPORTED,
            "sqlgate: the schema changed since this transaction queued work (a cursor's query, a deferred trigger) that this statement would run on definitions sqlgate has not decided on; it was not run: close the cursor, or roll back, and run it again",
        )
        .encode();
        self.audit_unvettable("work queued before a schema change (a cursor, a deferred trigger)");
        self.stage_denial(report, simple);
    }

    /// Refuses a query string or Parse at its first denied statement.
    fn refuse(&mut self, d: &Decision, sha: &Arc<str>, simple: bool) {
        let b = d.first_deny().unwrap_or(0);
        self.audit_denied(&d.analysis, &d.verdicts, b, sha);
        let report = report(
            &Refusal::denied(&d.verdicts[b], &d.analysis.statements[b]),
            Severity::Error,
        );
        self.stage_denial(report, simple);
    }

    /// The session's client encoding, as the server last reported it.
    pub(super) fn encoding(&self) -> &'static crate::encoding::Encoding {
        crate::encoding::Encoding::from_id(self.shared.learnt(|l| l.encoding))
    }

    fn reject_undecodable(&mut self, e: frontend::DecodeError, simple: bool) {
        let (code, msg) = if e == frontend::DecodeError::NotUtf8 {
            (
                sqlstate::CHARACTER_NOT_IN_REPERTOIRE,
                format!(
                    "sqlgate: cannot read the message: its text is not valid {} (the session's client_encoding)",
                    self.encoding().name
                ),
            )
        } else {
            (
                sqlstate::PROTOCOL_VIOLATION,
                format!("sqlgate: cannot read the message: {e}"),
            )
        };
        let report = Report::new(Severity::Error, code, &msg).encode();
        self.audit_unvettable("UNREADABLE");
        self.stage_denial(report, simple);
    }

    /// Puts a failing Describe where the denied message was (see the module docs).
    /// `simple`: the denied message stands alone (Query, FunctionCall), so a Sync
    /// follows to end the server's error state with a ReadyForQuery.
    fn stage_denial(&mut self, report: Bytes, simple: bool) {
        let n = self.next_marker;
        self.next_marker += 1;
        self.expect(Expect::Denial(n, report));
        let name = format!("{}{n}", self.marker);
        // INVARIANT: the marker is ASCII without NUL, so encoding cannot fail.
        let _ = fe::describe(b'S', &name, &mut self.out);
        if simple {
            self.expect(Expect::Ready);
            fe::sync(&mut self.out);
        } else {
            self.skipping = true;
        }
    }

    /// Records a blocked query string: the blocking statement as denied, the
    /// others as not executed (none of the string runs).
    fn audit_denied(
        &mut self,
        a: &Arc<Analysis>,
        verdicts: &[Verdict],
        blocking: usize,
        sha: &Arc<str>,
    ) {
        let acks = self.sess.ledger.refused(a, verdicts, blocking, sha);
        self.acks.extend(acks);
    }

    /// Remembers that names may have moved (seen, not waiting for the
    /// answer: a statement that failed only costs grants).
    pub(super) fn note_names(&self, a: &Analysis) {
        if a.statements.iter().any(|s| s.moves_names) {
            self.shared.learnt(|l| l.names_moved = true);
        }
        if a.statements
            .iter()
            .any(|s| guard::barrier(s) && !matches!(s.command.as_str(), "SET" | "RESET" | "SHOW"))
        {
            self.shared.learnt(|l| l.code_cursor = true);
        }
    }

    /// Whether a setting sqlgate reads SQL by may have changed once `s` has
    /// run, which the server reports only at its ReadyForQuery: what follows
    /// it is read after that (`guard::barrier`, and what `encoding_moved`
    /// and `code_cursor` add).
    pub(super) fn may_change_settings(&self, s: &StatementInfo) -> bool {
        settings_may_change(s, &self.shared.queue().learned)
    }

    /// The name resolution a standing grant may be keyed on: `None` once
    /// names may have moved in this session.
    pub(super) fn names(&self) -> Option<Arc<str>> {
        (!self.shared.learnt(|l| l.names_moved)).then(|| self.sess.login_path.clone())
    }

    /// The `search_path` this session resolves unqualified names through:
    /// its startup packet's, or else the login's default when it started.
    pub(super) fn search_path(&self) -> Option<Arc<str>> {
        self.sess.start_path.clone()
    }

    fn audit_unvettable(&mut self, command: &str) {
        let ack = self.sess.ledger.unvettable(command);
        self.acks.push(ack);
    }
}

/// A refusal as PostgreSQL's ErrorResponse, under the SQLSTATE for its kind.
fn report(r: &Refusal, severity: Severity) -> Bytes {
    let code = match r.why {
        Why::Policy => sqlstate::INSUFFICIENT_PRIVILEGE,
        Why::Canceled => sqlstate::QUERY_CANCELED,
        Why::Changed => sqlstate::FEATURE_NOT_SUPPORTED,
        Why::Unrecorded => sqlstate::IO_ERROR,
    };
    let mut rep = Report::new(severity, code, &r.message);
    if let Some(d) = &r.detail {
        rep = rep.detail(d);
    }
    if let Some(h) = r.hint {
        rep = rep.hint(h);
    }
    rep.encode()
}

/// The FATAL error for a session whose decisions cannot be recorded.
fn audit_failure() -> Bytes {
    report(&Refusal::audit_failure(), Severity::Fatal)
}

/// Whether `s` may change a setting sqlgate's reading depends on, given
/// what the session learnt (see `ClientSide::may_change_settings`).
fn settings_may_change(s: &StatementInfo, learned: &expect::Learned) -> bool {
    guard::barrier(s)
        || (learned.encoding_moved && s.classes.contains(Class::Transaction))
        || (learned.code_cursor
            && matches!(
                s.command.as_str(),
                "FETCH" | "MOVE" | "COMMIT" | "END" | "PREPARE TRANSACTION" | "SET CONSTRAINTS"
            ))
}
