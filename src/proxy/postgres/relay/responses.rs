//! The server-to-client direction: forward the database's answers, complete
//! each statement's audit record, swap staged denials for sqlgate's errors,
//! swallow keepalive replies, and end sessions whose settings turn unsafe.

use super::expect::{Finished, How, Pass};
use super::{End, PgFraming, Session, Shared, READ_CHUNK};
use crate::classify::Class;
use crate::encoding::Encoding;
use crate::proxy::frames::{Frame, FrameReader};
use crate::proxy::stream::ReadPart;
use crate::proxy::stream::WritePart;
use bytes::Bytes;
use bytes::BytesMut;
use sqlgate_postgres::backend;
use sqlgate_postgres::backend::Report;
use sqlgate_postgres::backend::Severity;
use sqlgate_postgres::sqlstate;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

pub(super) async fn server_to_client(
    sess: &Session,
    shared: &Shared,
    rd: &mut ReadPart,
    wr: &mut WritePart,
    notices: &mut mpsc::UnboundedReceiver<Bytes>,
) -> std::io::Result<End> {
    // The server is trusted to frame correctly, but is still held to a size
    // limit for the messages that must be buffered.
    let mut frames = FrameReader::new(PgFraming {
        max_message: 1 << 30,
        streamable: |t| t == backend::DATA_ROW || t == backend::COPY_DATA,
        whole_rows: false,
    });
    let mut out = BytesMut::with_capacity(READ_CHUNK);
    // Statements completed in this read are recorded after their bytes are written.
    let mut done: Vec<Finished> = Vec::new();
    loop {
        // Biased: polled in order, no random start per wake-up (it showed
        // in the profile); the notices branch is rare and cheap.
        tokio::select! {
            biased;
            r = frames.fill(rd) => {
                if r? == 0 {
                    return Ok(End::ServerGone);
                }
            }
            // Notices go between whole messages, never inside one.
            Some(n) = notices.recv(), if !frames.mid_message() => {
                let to = Encoding::from_id(shared.learnt(|l| l.encoding));
                wr.write_all(&crate::encoding::transcode_report(&n, to)).await?;
                wr.flush().await?;
                continue;
            }
        }
        let (last_status, end) = messages(sess, shared, &mut frames, &mut out, &mut done);
        if let Some(end) = written(sess, wr, &mut out, &mut done).await? {
            return Ok(end);
        }
        if let Some(end) = end {
            return Ok(end);
        }
        if let Some(s) = last_status {
            shared.learnt(|l| l.status = s);
        }
        if shared.queue().publish() {
            shared.ready.notify_one();
        }
        shared.guard.answered.notify_one();
    }
}

/// Every message of this read, in order: what becomes of each goes into
/// `out`, the statements they complete into `done`. The last
/// ReadyForQuery's status, and how the session ends if it does.
fn messages(
    sess: &Session,
    shared: &Shared,
    frames: &mut FrameReader<PgFraming>,
    out: &mut BytesMut,
    done: &mut Vec<Finished>,
) -> (Option<u8>, Option<End>) {
    let mut end = None;
    let mut last_status = None;
    // While rows are rewritten, DataRows come whole (`rows.rs`): what
    // the queue says now, and after each answer that may move it on.
    let planning = sess.rows.is_some();
    if planning {
        frames.framing_mut().whole_rows = shared.queue().rewriting();
    }
    loop {
        match frames.next_frame() {
            Ok(None) => break,
            Ok(Some(Frame::Piece { tag, len })) => {
                if tag.is_some_and(|t| !shared.queue().streamed(t)) {
                    end = Some(lost(sess, "a result row too large to rewrite in one piece"));
                    break;
                }
                out.extend_from_slice(frames.front(len));
                frames.consume(len);
            }
            Ok(Some(Frame::Whole { tag, len })) => {
                let r = one(sess, shared, tag, frames.front(len), out, done);
                frames.consume(len);
                if planning && tag != backend::DATA_ROW {
                    frames.framing_mut().whole_rows = shared.queue().rewriting();
                }
                match r {
                    Ok(Some(status)) => last_status = Some(status),
                    Ok(None) => {}
                    Err(e) => {
                        end = Some(e);
                        break;
                    }
                }
            }
            Err(e) => {
                tracing::error!(session = %sess.info.id, "bad frame from the database: {e}");
                end = Some(End::ServerGone);
                break;
            }
        }
    }
    (last_status, end)
}

/// One whole message from the server: what the queue says becomes of it
/// goes into `out`, what it taught into the session's state. `Ok(Some)`:
/// a ReadyForQuery's status; `Err`: how the session ends.
fn one(
    sess: &Session,
    shared: &Shared,
    tag: u8,
    msg: &[u8],
    out: &mut BytesMut,
    done: &mut Vec<Finished>,
) -> Result<Option<u8>, End> {
    if tag == backend::PARAMETER_STATUS {
        reported(sess, shared, msg)?;
    }
    let ctag = (tag == backend::COMMAND_COMPLETE)
        .then(|| backend::command_tag(msg).ok())
        .flatten();
    if let Some(t) = ctag {
        super::guard::track_tag(&shared.guard, t);
    }
    let from = done.len();
    let (pass, empty, own_rows) = {
        let mut q = shared.queue();
        let pass = q.answer(tag, msg, done);
        (pass, q.is_empty(), q.own_rows())
    };
    // Only a statement's own RowDescription is planned, not a Describe's.
    let masks = own_rows.then(|| shared.queue().answering_masks()).flatten();
    if own_rows && sess.engine.has_masks() {
        if let Some(c) = &sess.catalog {
            let agent = sess.engine.policy.masks_for(&sess.identity);
            if super::rows::unmasked_origin(&agent, c, msg, masks.as_deref()) {
                return Err(lost(
                    sess,
                    "a result column straight from a masked column that sqlgate's reading did not mask",
                ));
            }
        }
    }
    if let Some(m) = masks {
        match super::rows::masked_plan(&m, msg) {
            Some(plan) => {
                shared.queue().plan_rows(std::sync::Arc::new(plan));
            }
            None => {
                return Err(lost(
                    sess,
                    "a RowDescription unlike the masked statement's result",
                ))
            }
        }
    } else if own_rows {
        if let Some(planner) = &sess.rows {
            match super::rows::plan(planner.as_ref(), msg) {
                Ok(Some(plan)) => {
                    shared.queue().plan_rows(plan);
                }
                Ok(None) => {}
                Err(_) => return Err(lost(sess, "a RowDescription that does not parse")),
            }
        }
    }
    for f in &done[from..] {
        finished(sess, shared, f, ctag);
    }
    let mut status = None;
    if tag == backend::READY_FOR_QUERY && pass != Pass::Probe {
        status = backend::ready_status(msg).ok();
        if let Some(st) = status {
            idle_again(sess, shared, st, empty);
            if st == b'I' && empty && pass == Pass::Forward {
                // The transaction ended, and nothing was sent after its
                // Sync: every portal the agent bound is gone on the server
                // (named ones too), so it must be gone here too.
                shared.learnt(|l| l.portals_ended = true);
            }
        }
    }
    match pass {
        Pass::Forward => out.extend_from_slice(msg),
        Pass::Drop | Pass::Probe => {}
        Pass::Denial(report) => out.extend_from_slice(&crate::encoding::transcode_report(
            &report,
            Encoding::from_id(shared.learnt(|l| l.encoding)),
        )),
        Pass::Instead(m) => out.extend_from_slice(&m),
        Pass::Rewrite(plan) => {
            if super::rows::rewrite(msg, &plan, out).is_err() {
                return Err(lost(sess, "a DataRow that does not parse"));
            }
        }
        Pass::After(answer) => {
            out.extend_from_slice(&answer);
            out.extend_from_slice(msg);
        }
        Pass::Lost(why) => return Err(lost(sess, why)),
    }
    Ok(status)
}

/// The two sides no longer agree on what the server is answering (`why`,
/// for the log): the session ends.
fn lost(sess: &Session, why: &str) -> End {
    tracing::error!(session = %sess.info.id, "the server answered {why}; ending the session");
    let r = Report::new(
        Severity::Fatal,
        sqlstate::PROTOCOL_VIOLATION,
        "sqlgate: protocol state lost; the session is closed",
    );
    End::Fatal(r.encode())
}

/// A setting the server reports: one that makes the policy unsound ends the
/// session (after what completed so far is recorded, the statement that
/// changed it among them); the client encoding is what the agent's text is
/// read in from now.
fn reported(sess: &Session, shared: &Shared, msg: &[u8]) -> Result<(), End> {
    let (name, value) = backend::parameter_status(msg).unwrap_or_default();
    if let Some(why) = super::super::unsafe_setting(name, value) {
        tracing::error!(session = %sess.info.id, "{why}; ending the session");
        let msg = format!("sqlgate: {why}; the session is closed to keep the policy sound");
        return Err(End::Fatal(
            Report::new(Severity::Fatal, sqlstate::INSUFFICIENT_PRIVILEGE, &msg).encode(),
        ));
    }
    if name == b"client_encoding" {
        // A Query sent before this answer waited for it, a Parse after the
        // statement is refused until Sync (`guard.rs`, barriers).
        let e = super::super::reported_encoding(value);
        if !e.is_utf8()
            && sess.engine.has_masks()
            && sess.engine.policy.masks_for(&sess.identity).any()
        {
            // The server converts each row it sends from now on, and a
            // character the new encoding lacks comes back in an error,
            // bytes and all, before sqlgate could mask it.
            let msg = "sqlgate: this session's client encoding changed from UTF8; masks apply to this agent, so the session is closed (masked results are served only in UTF8)";
            tracing::warn!(session = %sess.info.id, "client encoding left UTF8 under masks; ending the session");
            return Err(End::Fatal(
                Report::new(Severity::Fatal, sqlstate::INSUFFICIENT_PRIVILEGE, msg).encode(),
            ));
        }
        shared.learnt(|l| l.encoding = e.id());
        shared.learnt(|l| l.encoding_moved = true);
    }
    Ok(())
}

/// What a statement's answer teaches: the row guard's count, and after DDL
/// that the catalog snapshot is stale. `ctag`: the answer's command tag,
/// when it is a CommandComplete.
fn finished(sess: &Session, shared: &Shared, f: &Finished, ctag: Option<&[u8]>) {
    let g = &shared.guard;
    match f.how {
        How::Completed { suspended } => {
            let tag_rows = ctag.and_then(backend::rows_from_tag);
            super::guard::counted(g, &f.ev, f.limit, ctag, tag_rows, suspended);
        }
        How::Failed | How::Skipped => {
            super::guard::counted(g, &f.ev, f.limit, None, None, false);
            return;
        }
        How::Called | How::CutOff => return,
    }
    // A DDL statement that ran (perhaps long after it was classified, if it
    // was held) may have redefined functions: the catalog snapshot is stale
    // from now. Unparsed too: an approved CALL or a function with dynamic
    // SQL may have run DDL sqlgate could not see.
    let ddl =
        f.ev.analysis
            .statements
            .get(f.ev.index)
            .filter(|s| s.classes.contains(Class::Ddl) || s.classes.contains(Class::Unparsed));
    if let Some(s) = ddl {
        if let Some(c) = &sess.catalog {
            c.changed();
        }
        shared.learnt(|l| l.ddl_since_idle = true);
        if !crate::catalog::keeps_reading(s) {
            // Cleared when the server says the block ended.
            shared.learnt(|l| l.uncommitted_ddl = true);
        }
    }
}

/// A ReadyForQuery's status: the transaction state, and what an idle
/// session no longer carries. `empty`: nothing more is owed.
fn idle_again(sess: &Session, shared: &Shared, status: u8, empty: bool) {
    super::guard::track_ready(&shared.guard, status);
    if status != b'I' {
        return;
    }
    // Committed or rolled back: nothing deferred is queued, unless a write
    // forwarded after this batch (pipelined) queues it still: the flag is
    // set when a write is sent.
    if empty {
        shared.learnt(|l| l.deferred = false);
    }
    if empty && !shared.learnt(|l| l.kept_cursor) {
        // No cursor outlives the transaction, and nothing was forwarded
        // after it.
        shared.learnt(|l| l.opened_at = u64::MAX);
    }
    // Committed or rolled back: a reload from now on sees it. The one woken
    // at the DDL's completion may have run inside the block and seen the
    // old definitions, so the snapshot is stale again (before the flag
    // clears: no moment when both say current).
    if shared.learnt(|l| std::mem::take(&mut l.ddl_since_idle)) {
        if let Some(c) = &sess.catalog {
            c.changed();
        }
    }
    shared.learnt(|l| l.uncommitted_ddl = false);
}

/// Writes what this read produced and records what completed in it. A
/// statement's record is on disk before its result is released (one fsync
/// covers the whole read) under `durability = "strict"`, and always for
/// statements that were held: an approved statement's outcome is evidence,
/// not just its approval. Whatever ends the session, what completed before
/// is recorded.
async fn written(
    sess: &Session,
    wr: &mut WritePart,
    out: &mut BytesMut,
    done: &mut Vec<Finished>,
) -> std::io::Result<Option<End>> {
    let audit = &sess.engine.audit;
    if !done.is_empty() && (audit.strict() || done.iter().any(|f| f.ev.approval.is_some())) {
        for f in done.drain(..) {
            sess.ledger.record(f.ev);
        }
        if audit.sync().await.is_err() {
            return Ok(Some(End::Fatal(super::audit_failure())));
        }
    }
    if !out.is_empty() {
        wr.write_all(out).await?;
        wr.flush().await?;
        out.clear();
    }
    for f in done.drain(..) {
        sess.ledger.record(f.ev);
    }
    Ok(None)
}
