//! The server-to-client direction: forward the database's answers, complete
//! each statement's audit record, swap staged denials for sqlgate's errors,
//! swallow keepalive replies, and end sessions whose settings turn unsafe.

use super::*;
use crate::encoding::Encoding;

pub(super) async fn server_to_client(
    sess: &Session,
    shared: &Shared,
    marker: &str,
    rd: &mut ReadHalf<Stream>,
    wr: &mut WriteHalf<Stream>,
    notices: &mut mpsc::UnboundedReceiver<Bytes>,
) -> std::io::Result<End> {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut out = BytesMut::with_capacity(READ_CHUNK);
    let mut passthrough = 0usize;
    let mut rows = 0u64;
    // Statements completed in this batch are recorded after their bytes are written.
    let mut done: Vec<Box<StatementEvent>> = Vec::new();
    // The server is in copy-in mode (CopyInResponse seen; until ReadyForQuery).
    let mut copy_in = false;
    // What a probe of the idle timeouts learnt so far (`Expect::Probe`).
    let mut probed: Option<u64> = None;
    loop {
        tokio::select! {
            r = rd.read_buf(&mut buf) => {
                if r? == 0 {
                    return Ok(End::ServerGone);
                }
            }
            // Notices go between whole messages, never inside one.
            Some(n) = notices.recv(), if passthrough == 0 => {
                let to = Encoding::from_id(shared.encoding.load(Ordering::Acquire));
                wr.write_all(&crate::encoding::transcode_report(&n, to)).await?;
                wr.flush().await?;
                continue;
            }
        }
        let mut pos = 0;
        let mut readies = 0u64;
        let mut lost = false;
        let mut end = None;
        let mut last_status = None;
        loop {
            if passthrough > 0 {
                let n = passthrough.min(buf.len() - pos);
                out.extend_from_slice(&buf[pos..pos + n]);
                pos += n;
                passthrough -= n;
                if pos == buf.len() {
                    break;
                }
            }
            // The server is trusted to frame correctly, but is still held to a
            // size limit for the messages we must buffer.
            match frame::next(&buf[pos..], 1 << 30, STREAM_ABOVE, |t| {
                t == b'D' || t == b'd'
            }) {
                Ok(Next::NeedMore) => break,
                Ok(Next::Partial {
                    tag,
                    avail,
                    remaining,
                }) => {
                    rows += u64::from(tag == b'D');
                    out.extend_from_slice(&buf[pos..pos + avail]);
                    pos += avail;
                    passthrough = remaining;
                    break;
                }
                Ok(Next::Whole { tag, len }) => {
                    let msg = &buf[pos..pos + len];
                    pos += len;
                    let mut q = shared.expects.lock().expect("not poisoned");
                    if matches!(q.front(), Some(Expect::Probe))
                        && matches!(
                            tag,
                            backend::ROW_DESCRIPTION
                                | backend::DATA_ROW
                                | backend::COMMAND_COMPLETE
                                | backend::ERROR_RESPONSE
                                | backend::READY_FOR_QUERY
                        )
                    {
                        // sqlgate's own probe (`hold.rs`): learnt, not passed on.
                        match tag {
                            backend::DATA_ROW => {
                                if let Some(ms) = backend::first_column(msg)
                                    .ok()
                                    .flatten()
                                    .and_then(super::hold::timeout_ms)
                                {
                                    probed = Some(match (probed, ms) {
                                        (Some(a), 0) => a,
                                        (Some(0) | None, b) => b,
                                        (Some(a), b) => a.min(b),
                                    });
                                }
                            }
                            backend::READY_FOR_QUERY => {
                                q.pop_front();
                                if let Some(ms) = probed.take() {
                                    shared.idle_timeout_ms.store(ms, Ordering::Release);
                                }
                            }
                            _ => {}
                        }
                        continue;
                    }
                    match tag {
                        backend::DATA_ROW => rows += 1,
                        backend::PARAMETER_STATUS => {
                            let (name, value) = backend::parameter_status(msg).unwrap_or_default();
                            if let Some(why) = super::super::unsafe_setting(name, value) {
                                drop(q);
                                tracing::error!(session = %sess.info.id, "{why}; ending the session");
                                let msg = format!("sqlgate: {why}; the session is closed to keep the policy sound");
                                // After what completed so far is recorded
                                // (the statement that changed it among them).
                                end = Some(End::Fatal(
                                    Report::new(Severity::Fatal, "42501", &msg).encode(),
                                ));
                                break;
                            }
                            if name == b"client_encoding" {
                                // What the agent's text is read in from now:
                                // a Query sent before this answer waited for
                                // it, a Parse after the statement is refused
                                // until Sync (`guard.rs`, barriers).
                                let e = super::super::reported_encoding(value);
                                shared.encoding.store(e.id(), Ordering::Release);
                                shared.encoding_moved.store(true, Ordering::Release);
                            }
                        }
                        backend::COMMAND_COMPLETE
                        | backend::EMPTY_QUERY
                        | backend::PORTAL_SUSPENDED => {
                            let ctag = (tag == backend::COMMAND_COMPLETE)
                                .then(|| backend::command_tag(msg).ok())
                                .flatten();
                            if let Some(t) = ctag {
                                super::guard::track_tag(&shared.guard, t);
                            }
                            let i = q.iter().position(|e| {
                                matches!(
                                    e,
                                    Expect::Statement(..)
                                        | Expect::Ready
                                        | Expect::InjectedComplete
                                )
                            });
                            if let Some(i) = i.filter(|&i| matches!(q[i], Expect::InjectedComplete))
                            {
                                // sqlgate's own BEGIN/COMMIT/ROLLBACK.
                                q.remove(i);
                                rows = 0;
                                continue;
                            }
                            let tag_rows = ctag.and_then(backend::rows_from_tag);
                            let counted = tag_rows
                                .or(Some(rows))
                                .filter(|_| tag != backend::EMPTY_QUERY);
                            if let Some((ev, limit)) = complete(&mut q, Outcome::Ok, counted) {
                                let suspended = tag == backend::PORTAL_SUSPENDED;
                                super::guard::counted(
                                    &shared.guard,
                                    &ev,
                                    limit,
                                    ctag,
                                    tag_rows,
                                    suspended,
                                );
                                // A DDL statement that ran (perhaps long after it was
                                // classified, if it was held) may have redefined
                                // functions: the catalog snapshot is stale from now.
                                let ddl = ev
                                    .analysis
                                    .statements
                                    .get(ev.index)
                                    // Unparsed too: an approved CALL or a
                                    // function with dynamic SQL may have run
                                    // DDL sqlgate could not see.
                                    .filter(|s| {
                                        s.classes.contains(Class::Ddl)
                                            || s.classes.contains(Class::Unparsed)
                                    });
                                if let Some(s) = ddl {
                                    if let Some(c) = &sess.catalog {
                                        c.changed();
                                    }
                                    shared.ddl_since_idle.store(true, Ordering::Release);
                                    if !crate::catalog::keeps_reading(s) {
                                        // Cleared when the server says the block ended.
                                        shared.uncommitted_ddl.store(true, Ordering::Release);
                                    }
                                }
                                done.push(ev);
                            }
                            rows = 0;
                        }
                        backend::ERROR_RESPONSE => {
                            shared.upstream_failed.store(true, Ordering::Release);
                            let f = backend::error_fields(msg).unwrap_or_default();
                            while copy_in && matches!(q.front(), Some(Expect::CopySync(_))) {
                                q.pop_front();
                            }
                            if let Some(n) = marker_number(&f, marker) {
                                // Our staged denial: swap in sqlgate's error. It must be
                                // the next thing expected; anything else means the two
                                // sides disagree, and the session ends (fail closed).
                                match q.pop_front() {
                                    Some(Expect::Denial(m, report)) if m == n => {
                                        out.extend_from_slice(&crate::encoding::transcode_report(
                                            &report,
                                            Encoding::from_id(
                                                shared.encoding.load(Ordering::Acquire),
                                            ),
                                        ));
                                        continue;
                                    }
                                    _ => {
                                        tracing::error!(session = %sess.info.id, "unexpected denial marker {n}; ending the session");
                                        lost = true;
                                        break;
                                    }
                                }
                            }
                            let code = String::from_utf8_lossy(f.code).into_owned();
                            // An error answering a Parse, Bind or Describe is
                            // that message's: the Executes after it are
                            // skipped (not executed, at the ReadyForQuery).
                            let own = q.iter().find(|e| {
                                matches!(
                                    e,
                                    Expect::Complete { .. }
                                        | Expect::Describe(_)
                                        | Expect::Statement(..)
                                ) || e.is_ready()
                            });
                            let before_execute =
                                matches!(own, Some(Expect::Complete { .. } | Expect::Describe(_)));
                            if before_execute {
                                // Nothing to complete.
                            } else if let Some((ev, limit)) =
                                complete(&mut q, Outcome::Error(code), None)
                            {
                                super::guard::counted(&shared.guard, &ev, limit, None, None, false);
                                done.push(ev);
                            }
                            rows = 0;
                        }
                        backend::FUNCTION_CALL_RESPONSE => {
                            // A fast-path call's answer (`fastpath.rs`).
                            if let Some((ev, _)) = complete(&mut q, Outcome::Ok, None) {
                                done.push(ev);
                            }
                        }
                        backend::PARSE_COMPLETE | backend::BIND_COMPLETE => {
                            // Answered in order; sqlgate's own are not passed on.
                            let i = q
                                .iter()
                                .position(|e| matches!(e, Expect::Complete { .. }) || e.is_ready());
                            if let Some(i) = i {
                                if let Some(Expect::Complete { swallow }) = q.get(i) {
                                    let swallow = *swallow;
                                    q.remove(i);
                                    if swallow {
                                        continue;
                                    }
                                }
                            }
                        }
                        backend::PARAMETER_DESCRIPTION
                        | backend::ROW_DESCRIPTION
                        | backend::NO_DATA => {
                            // A simple Query's RowDescription comes before any
                            // later batch's Describe, past its ReadyForQuery.
                            let i = q
                                .iter()
                                .position(|e| matches!(e, Expect::Describe(_)) || e.is_ready());
                            if let Some(i) = i.filter(|&i| matches!(q[i], Expect::Describe(_))) {
                                let swallow = matches!(q[i], Expect::Describe(Described::Swallow));
                                if tag == backend::PARAMETER_DESCRIPTION {
                                    if swallow
                                        || matches!(q[i], Expect::Describe(Described::Portal(_)))
                                    {
                                        // Not the client's Describe of a statement.
                                        continue;
                                    }
                                } else if let Some(Expect::Describe(d)) = q.remove(i) {
                                    match (d, tag) {
                                        (Described::Swallow, _) => continue,
                                        (Described::Portal(f), backend::ROW_DESCRIPTION) => {
                                            match backend::row_description_with_formats(msg, &f) {
                                                Ok(m) => {
                                                    drop(q);
                                                    out.extend_from_slice(&m);
                                                    continue;
                                                }
                                                Err(_) => {
                                                    // The server would refuse such a Bind at
                                                    // Execute; the two sides disagree.
                                                    tracing::error!(session = %sess.info.id, "result formats do not fit the description; ending the session");
                                                    lost = true;
                                                    break;
                                                }
                                            }
                                        }
                                        _ => {}
                                    }
                                }
                            }
                        }
                        backend::COPY_IN_RESPONSE => {
                            copy_in = true;
                            shared.copy_in.store(true, Ordering::Release);
                        }
                        backend::CLOSE_COMPLETE => {
                            // Closes are answered in order; sqlgate's own are not passed on.
                            let i = q
                                .iter()
                                .position(|e| matches!(e, Expect::Close { .. } | Expect::Ready));
                            if let Some(i) = i {
                                if let Some(Expect::Close { swallow, .. }) = q.get(i) {
                                    let swallow = *swallow;
                                    q.remove(i);
                                    if swallow {
                                        continue;
                                    }
                                }
                            }
                        }
                        backend::READY_FOR_QUERY => {
                            shared.upstream_failed.store(false, Ordering::Release);
                            // Everything before this ReadyForQuery that never
                            // completed was skipped by the server after an error.
                            let mut swallow = false;
                            while let Some(e) = q.pop_front() {
                                match e {
                                    Expect::Ready => break,
                                    // Ignored by the server in copy-in mode.
                                    Expect::CopySync(_) if copy_in => {}
                                    Expect::CopySync(copy) => {
                                        // The COPY never took data: its
                                        // batch ended at this Sync (`sync`).
                                        shared.copy_answered.store(copy, Ordering::Release);
                                        shared.readies_sent.fetch_add(1, Ordering::AcqRel);
                                        break;
                                    }
                                    Expect::SwallowReady
                                    | Expect::InjectedReady { pass: false, .. } => {
                                        swallow = true;
                                        break;
                                    }
                                    Expect::HeldReady => {
                                        swallow = true;
                                        shared.guard.held_ready.store(true, Ordering::Release);
                                        break;
                                    }
                                    Expect::InjectedReady { pass: true, answer } => {
                                        if let Some(a) = answer {
                                            out.extend_from_slice(&a);
                                        }
                                        break;
                                    }
                                    Expect::Statement(mut ev, _, limit) => {
                                        super::guard::counted(
                                            &shared.guard,
                                            &ev,
                                            limit,
                                            None,
                                            None,
                                            false,
                                        );
                                        ev.outcome = Outcome::NotExecuted;
                                        done.push(ev);
                                    }
                                    Expect::Denial(..)
                                    | Expect::Probe
                                    | Expect::InjectedComplete
                                    | Expect::Complete { .. }
                                    | Expect::Describe(_)
                                    | Expect::Close { orphan: None, .. } => {}
                                    // Skipped: what it closes is still upstream.
                                    Expect::Close {
                                        orphan: Some(o), ..
                                    } => shared.orphans.lock().expect("not poisoned").push(o),
                                }
                            }
                            copy_in = false;
                            shared.copy_in.store(false, Ordering::Release);
                            last_status = backend::ready_status(msg).ok();
                            if let Some(st) = last_status {
                                super::guard::track_ready(&shared.guard, st);
                                if st == b'I' {
                                    // Committed or rolled back: nothing deferred is queued,
                                    // unless a write forwarded after this batch (pipelined)
                                    // queues it still: the flag is set when a write is sent.
                                    if q.is_empty() {
                                        shared.deferred.store(false, Ordering::Release);
                                    }
                                    if q.is_empty() && !shared.kept_cursor.load(Ordering::Acquire) {
                                        // No cursor outlives the transaction, and
                                        // nothing was forwarded after it.
                                        shared.opened_at.store(u64::MAX, Ordering::Release);
                                    }
                                    // Committed or rolled back: a reload from
                                    // now on sees it. The one woken at the
                                    // DDL's completion may have run inside the
                                    // block and seen the old definitions, so
                                    // the snapshot is stale again (before the
                                    // flag clears: no moment when both say
                                    // current).
                                    if shared.ddl_since_idle.swap(false, Ordering::AcqRel) {
                                        if let Some(c) = &sess.catalog {
                                            c.changed();
                                        }
                                    }
                                    shared.uncommitted_ddl.store(false, Ordering::Release);
                                }
                            }
                            rows = 0;
                            if swallow {
                                continue;
                            }
                            readies += 1;
                        }
                        _ => {}
                    }
                    drop(q);
                    out.extend_from_slice(msg);
                }
                Err(e) => {
                    tracing::error!(session = %sess.info.id, "bad frame from the database: {e}");
                    end = Some(End::ServerGone);
                    break;
                }
            }
        }
        buf.advance(pos);
        if lost {
            let r = Report::new(
                Severity::Fatal,
                "08P01",
                "sqlgate: protocol state lost; the session is closed",
            );
            end = Some(End::Fatal(r.encode()));
        }
        // Whatever ends the session, what completed before it is recorded
        // (and, when that must be, on disk before its answer is released).
        let audit = &sess.engine.audit;
        if !done.is_empty() && (audit.strict() || done.iter().any(|e| e.approval.is_some())) {
            // A statement's record is on disk before its result is released
            // (one fsync covers the whole batch) under `durability =
            // "strict"`, and always for statements that were held: an
            // approved statement's outcome is evidence, not just its approval.
            for ev in done.drain(..) {
                shared.statements.fetch_add(1, Ordering::Relaxed);
                audit.record(Event::Statement(ev));
            }
            if audit.sync().await.is_err() {
                return Ok(End::Fatal(super::audit_failure()));
            }
        }
        if !out.is_empty() {
            wr.write_all(&out).await?;
            wr.flush().await?;
            out.clear();
        }
        for ev in done.drain(..) {
            shared.statements.fetch_add(1, Ordering::Relaxed);
            audit.record(Event::Statement(ev));
        }
        if let Some(end) = end {
            return Ok(end);
        }
        if let Some(s) = last_status {
            shared.status.store(s, Ordering::Release);
        }
        if readies > 0 {
            shared.readies_seen.fetch_add(readies, Ordering::AcqRel);
            shared.ready.notify_one();
        }
        shared.guard.answered.notify_one();
    }
}

/// Completes the next forwarded statement with `outcome`; with its row-guard limit.
fn complete(
    q: &mut VecDeque<Expect>,
    outcome: Outcome,
    rows: Option<u64>,
) -> Option<(Box<StatementEvent>, Option<u64>)> {
    let i = q
        .iter()
        .position(|e| matches!(e, Expect::Statement(..) | Expect::Ready))?;
    if matches!(q[i], Expect::Ready) {
        return None;
    }
    let Some(Expect::Statement(mut ev, started, limit)) = q.remove(i) else {
        return None;
    };
    ev.outcome = outcome;
    ev.rows = rows;
    ev.duration_us = Some(started.elapsed().as_micros() as u64);
    Some((ev, limit))
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
