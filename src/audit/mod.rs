//! The statement audit log: one JSON object per line.
//!
//! Records are handed to a dedicated writer thread over a channel, so the
//! proxy's hot path pays for building a small struct and a channel send, not
//! for serialization or I/O. The writer batches: every few milliseconds it
//! writes everything queued, then flushes once (group commit), and it fsyncs
//! when it shuts down.
//! (Hash chaining and signatures come with the attestation work.)

use crate::classify::Analysis;
use crate::policy::Action;
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::SystemTime;

/// Who and where: shared by every record of one session.
#[derive(Debug)]
pub struct SessionInfo {
    pub id: String,
    pub agent: Arc<str>,
    pub client: String,
    pub database: String,
}

/// How a statement ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Stopped by sqlgate; never reached the database.
    Denied,
    /// The database answered with this SQLSTATE.
    Error(String),
    /// Not run because an earlier statement in the same batch failed or was denied.
    NotExecuted,
}

/// How approval went for a held statement.
#[derive(Debug, Clone, Serialize)]
pub struct ApprovalNote {
    /// The request id (none when a standing grant covered the statement).
    pub request: Option<String>,
    /// `approved`, `granted`, `denied`, `timed_out` or `withdrawn`.
    pub outcome: &'static str,
    /// Who decided.
    pub by: Vec<String>,
}

/// One statement, with everything the record needs.
#[derive(Debug)]
pub struct StatementEvent {
    pub time: SystemTime,
    pub session: Arc<SessionInfo>,
    pub analysis: Arc<Analysis>,
    pub index: usize,
    /// SHA-256 (hex) of the whole query text the statement came in.
    pub sql_sha256: Arc<str>,
    pub rule: Arc<str>,
    pub action: Action,
    pub outcome: Outcome,
    pub rows: Option<u64>,
    pub duration_us: Option<u64>,
    pub approval: Option<Arc<ApprovalNote>>,
}

#[derive(Debug)]
pub enum Event {
    SessionStart(Arc<SessionInfo>, SystemTime),
    SessionEnd(Arc<SessionInfo>, SystemTime, u64),
    LoginFailure {
        time: SystemTime,
        client: String,
        user: String,
        database: String,
        reason: String,
    },
    Statement(Box<StatementEvent>),
    /// A record built elsewhere (approvals); `time` is added when written.
    Json(serde_json::Value),
}

/// The sending side, cheap to clone into every session.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Event>,
}

/// Owns the writer thread; dropping every `AuditLog` and then calling
/// [`AuditWriter::close`] flushes and fsyncs.
pub struct AuditWriter {
    handle: JoinHandle<std::io::Result<()>>,
}

impl AuditLog {
    pub fn open(path: &Path) -> std::io::Result<(AuditLog, AuditWriter)> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let (tx, rx) = mpsc::channel();
        let path = path.to_owned();
        let handle = std::thread::Builder::new()
            .name("sqlgate-audit".into())
            .spawn(move || write_loop(rx, file, path))?;
        Ok((AuditLog { tx }, AuditWriter { handle }))
    }

    pub fn record(&self, e: Event) {
        if self.tx.send(e).is_err() {
            tracing::error!("audit writer is gone; record lost");
        }
    }
}

impl AuditWriter {
    pub fn close(self) -> std::io::Result<()> {
        self.handle
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("audit writer panicked")))
    }
}

/// How often the writer drains the queue. The writer sleeps between drains
/// instead of blocking on the channel: a blocked receiver must be woken by
/// every send (a futex wake-up and a context switch per statement, measured
/// at ~15% of the proxy's CPU under pgbench), whereas a sleeping one costs
/// the senders nothing. Records reach the file within this window.
const GROUP_COMMIT: std::time::Duration = std::time::Duration::from_millis(2);

fn write_loop(
    rx: mpsc::Receiver<Event>,
    file: std::fs::File,
    path: PathBuf,
) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::with_capacity(256 * 1024, file);
    loop {
        let mut wrote = false;
        let closed = loop {
            match rx.try_recv() {
                Ok(e) => {
                    if let Err(err) = write_event(&mut out, &e) {
                        tracing::error!(path = %path.display(), "audit write failed: {err}");
                        return Err(err);
                    }
                    wrote = true;
                }
                Err(mpsc::TryRecvError::Empty) => break false,
                Err(mpsc::TryRecvError::Disconnected) => break true,
            }
        };
        if wrote {
            out.flush()?;
        }
        if closed {
            out.flush()?;
            return out.get_ref().sync_all();
        }
        std::thread::sleep(GROUP_COMMIT);
    }
}

fn ts(t: SystemTime) -> String {
    humantime::format_rfc3339_micros(t).to_string()
}

#[derive(Serialize)]
struct StatementLine<'a> {
    time: String,
    kind: &'static str,
    session: &'a str,
    agent: &'a str,
    client: &'a str,
    database: &'a str,
    command: &'a str,
    fingerprint: &'a str,
    sql_sha256: &'a str,
    classes: crate::classify::ClassSet,
    tables: &'a [String],
    rule: &'a str,
    action: Action,
    outcome: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sqlstate: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rows: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_us: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    approval: Option<&'a ApprovalNote>,
}

fn write_event(out: &mut impl Write, e: &Event) -> std::io::Result<()> {
    let v = match e {
        Event::SessionStart(s, t) => serde_json::json!({
            "time": ts(*t), "kind": "session_start", "session": s.id, "agent": &*s.agent,
            "client": s.client, "database": s.database,
        }),
        Event::SessionEnd(s, t, statements) => serde_json::json!({
            "time": ts(*t), "kind": "session_end", "session": s.id, "agent": &*s.agent,
            "client": s.client, "database": s.database, "statements": statements,
        }),
        Event::LoginFailure {
            time,
            client,
            user,
            database,
            reason,
        } => serde_json::json!({
            "time": ts(*time), "kind": "login_failure", "client": client, "agent": user,
            "database": database, "reason": reason,
        }),
        Event::Json(v) => {
            let mut v = v.clone();
            if let Some(o) = v.as_object_mut() {
                o.insert("time".into(), ts(SystemTime::now()).into());
            }
            v
        }
        Event::Statement(s) => {
            let info = s.analysis.statements.get(s.index);
            let (outcome, sqlstate) = match &s.outcome {
                Outcome::Ok => ("ok", None),
                Outcome::Denied => ("denied", None),
                Outcome::Error(code) => ("error", Some(code.as_str())),
                Outcome::NotExecuted => ("not_executed", None),
            };
            let line = StatementLine {
                time: ts(s.time),
                kind: "statement",
                session: &s.session.id,
                agent: &s.session.agent,
                client: &s.session.client,
                database: &s.session.database,
                command: info.map_or("", |i| i.command.as_str()),
                fingerprint: info.map_or("", |i| i.fingerprint.as_str()),
                sql_sha256: &s.sql_sha256,
                classes: info.map(|i| i.classes).unwrap_or_default(),
                tables: info.map_or(&[][..], |i| &i.tables[..]),
                rule: &s.rule,
                action: s.action,
                outcome,
                sqlstate,
                rows: s.rows,
                duration_us: s.duration_us,
                approval: s.approval.as_deref(),
            };
            serde_json::to_writer(&mut *out, &line)?;
            return out.write_all(b"\n");
        }
    };
    serde_json::to_writer(&mut *out, &v)?;
    out.write_all(b"\n")
}
