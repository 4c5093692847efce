//! What the rest of sqlgate hands the audit log, and how each event becomes a
//! record body (the fields after the common `v`, `seq`, `prev`, `time`).
//!
//! Literal values never reach a record: statements are stored as their
//! fingerprint, classes and tables, plus the SHA-256 of the query text.

use crate::classify::Analysis;
use crate::config::Protocol;
use crate::policy::Action;
use serde::Serialize;
use std::sync::Arc;
use std::time::SystemTime;

/// Who and where: shared by every record of one session.
#[derive(Debug)]
pub struct SessionInfo {
    pub id: String,
    pub agent: Arc<str>,
    pub client: String,
    pub database: String,
    /// The wire the agent speaks, and the listener it came through (its
    /// address as configured).
    pub protocol: Protocol,
    pub listener: Arc<str>,
}

/// How a statement ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Stopped by sqlgate; never reached the database.
    Denied,
    /// The database answered with an error.
    Failed(ServerError),
    /// Not run because an earlier statement in the same batch failed or was denied.
    NotExecuted,
    /// Sent to the database, and the session ended before its answer: it
    /// may or may not have run.
    CutOff,
}

/// The error a database answered a statement with, in its own protocol's
/// terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerError {
    /// PostgreSQL: the SQLSTATE.
    SqlState([u8; 5]),
    /// MySQL and MariaDB: the error number and its SQL state.
    Mysql { code: u16, sqlstate: [u8; 5] },
}

impl ServerError {
    /// A PostgreSQL error's SQLSTATE field; one that is not five bytes is
    /// kept as `?????` (the server always sends five).
    pub fn sqlstate(code: &[u8]) -> ServerError {
        ServerError::SqlState(code.try_into().unwrap_or(*b"?????"))
    }

    /// The SQL state, as text (both protocols have one).
    pub fn state(&self) -> &str {
        let (ServerError::SqlState(s) | ServerError::Mysql { sqlstate: s, .. }) = self;
        std::str::from_utf8(s).unwrap_or("?????")
    }
}

/// How approval went for a held statement.
#[derive(Debug, Clone, Serialize)]
pub struct ApprovalNote {
    /// The request id (none when a standing grant covered the statement).
    pub request: Option<String>,
    pub outcome: ApprovalOutcome,
    /// Who decided.
    pub by: Vec<String>,
}

/// What became of a held statement's approval, as its record names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalOutcome {
    /// Its approvers approved it.
    Approved,
    /// A standing grant covered it.
    Granted,
    Denied,
    TimedOut,
    /// Withdrawn before a decision (a cancel, a disconnect).
    Withdrawn,
    /// No configured approver could decide it.
    Unapprovable,
    /// Approved, but what it reaches changed while it waited.
    ChangedWhileHeld,
    /// Approved, but the audit log was not anchored, so it did not run.
    NotAnchored,
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
    /// The result columns masks applied to (named in the record, never
    /// their values).
    pub masked: Option<Arc<crate::session::mask::MaskPlan>>,
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
    /// A record built elsewhere (approvals, `config_loaded`): an object with
    /// at least `kind`. Its `time` is when it is written; any `v`, `seq`,
    /// `prev` or `time` it carries is dropped, since those belong to the chain.
    Json(serde_json::Value),
}

impl Event {
    /// When the event happened; the record's `time`.
    pub(crate) fn time(&self) -> SystemTime {
        match self {
            Event::SessionStart(_, t) | Event::SessionEnd(_, t, _) => *t,
            Event::LoginFailure { time, .. } => *time,
            Event::Statement(s) => s.time,
            Event::Json(_) => SystemTime::now(),
        }
    }

    /// Serializes the record's own fields as one JSON object into `out`
    /// (cleared first).
    pub(crate) fn write_body(self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        out.clear();
        match self {
            Event::SessionStart(s, _) => serde_json::to_writer(
                out,
                &serde_json::json!({
                    "kind": "session_start", "session": s.id, "agent": &*s.agent,
                    "client": s.client, "database": s.database,
                    "protocol": s.protocol.as_str(), "listener": &*s.listener,
                }),
            ),
            Event::SessionEnd(s, _, statements) => serde_json::to_writer(
                out,
                &serde_json::json!({
                    "kind": "session_end", "session": s.id, "agent": &*s.agent,
                    "client": s.client, "database": s.database,
                    "protocol": s.protocol.as_str(), "listener": &*s.listener,
                    "statements": statements,
                }),
            ),
            Event::LoginFailure {
                client,
                user,
                database,
                reason,
                ..
            } => serde_json::to_writer(
                out,
                &serde_json::json!({
                    "kind": "login_failure", "client": client, "agent": clip(&user, MAX_NAME),
                    "database": clip(&database, MAX_NAME), "reason": reason,
                }),
            ),
            Event::Json(mut v) => {
                if let Some(o) = v.as_object_mut() {
                    for common in ["v", "seq", "prev", "time"] {
                        o.remove(common);
                    }
                } else {
                    v = serde_json::json!({ "kind": "invalid", "value": v });
                }
                serde_json::to_writer(out, &v)
            }
            Event::Statement(s) => serde_json::to_writer(out, &StatementLine::of(&s)),
        }
    }
}

/// A statement record, serialized straight from borrowed fields (this is the
/// hot path: no intermediate `serde_json::Value`).
#[derive(Serialize)]
pub(crate) struct StatementLine<'a> {
    kind: &'static str,
    session: &'a str,
    agent: &'a str,
    client: &'a str,
    database: &'a str,
    protocol: &'static str,
    command: &'a str,
    fingerprint: std::borrow::Cow<'a, str>,
    sql_sha256: &'a str,
    classes: crate::classify::ClassSet,
    tables: &'a [String],
    rule: &'a str,
    action: Action,
    outcome: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sqlstate: Option<&'a str>,
    /// MySQL's error number (its SQL state is `sqlstate`).
    #[serde(skip_serializing_if = "Option::is_none")]
    error_code: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rows: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_us: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    approval: Option<&'a ApprovalNote>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    masked: Vec<MaskedLine<'a>>,
}

/// A masked result column in a statement record.
#[derive(Serialize)]
struct MaskedLine<'a> {
    position: usize,
    column: &'a str,
    mask: &'a str,
}

impl<'a> StatementLine<'a> {
    fn of(s: &'a StatementEvent) -> StatementLine<'a> {
        let info = s.analysis.statements.get(s.index);
        let (outcome, sqlstate) = match &s.outcome {
            Outcome::Ok => ("ok", None),
            Outcome::Denied => ("denied", None),
            Outcome::Failed(e) => ("error", Some(e.state())),
            Outcome::NotExecuted => ("not_executed", None),
            Outcome::CutOff => ("cut_off", None),
        };
        let error_code = match s.outcome {
            Outcome::Failed(ServerError::Mysql { code, .. }) => Some(code),
            _ => None,
        };
        StatementLine {
            kind: "statement",
            session: &s.session.id,
            agent: &s.session.agent,
            client: &s.session.client,
            database: &s.session.database,
            protocol: s.session.protocol.as_str(),
            command: info.map_or("", |i| i.command.as_str()),
            fingerprint: clip(info.map_or("", |i| i.fingerprint.as_str()), MAX_FINGERPRINT),
            sql_sha256: &s.sql_sha256,
            classes: info.map(|i| i.classes).unwrap_or_default(),
            tables: info.map_or(&[][..], |i| &i.tables[..]),
            rule: &s.rule,
            action: s.action,
            outcome,
            sqlstate,
            error_code,
            rows: s.rows,
            duration_us: s.duration_us,
            approval: s.approval.as_deref(),
            masked: s.masked.as_ref().map_or_else(Vec::new, |m| {
                m.columns
                    .iter()
                    .map(|c| MaskedLine {
                        position: c.position + 1,
                        column: &c.column,
                        mask: &c.mask,
                    })
                    .collect()
            }),
        }
    }
}

/// Names an unauthenticated client chose are logged up to this many bytes.
const MAX_NAME: usize = 256;
/// Fingerprints are logged up to this many bytes (the statement is named
/// whole by `sql_sha256`): wide statements must not fill the disk.
const MAX_FINGERPRINT: usize = 8 * 1024;

/// `s` cut to at most `max` bytes on a character boundary, `…` marking a cut.
fn clip(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!("{}…", &s[..end]))
}
