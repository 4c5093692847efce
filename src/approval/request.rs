//! One approval request and its state machine: pending → approved | denied |
//! timed_out | withdrawn. Decisions are final; later votes get 409.

use super::VoteError;
use crate::classify::ClassSet;
use crate::policy::ApprovalSpec;
use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

/// One statement as approvers see it.
#[derive(Debug, Clone, Serialize)]
pub struct HeldStatement {
    pub command: String,
    /// Literals replaced by `?` (the fingerprint), unless the rule shows them.
    pub text: String,
    pub classes: ClassSet,
    pub tables: Vec<String>,
    #[serde(skip)]
    pub fingerprint: String,
}

/// One statement of the query string a held statement came in, as every
/// approver may see it (its fingerprint: literals masked): the other
/// statements run with it, before or after (`SET search_path = prod;
/// TRUNCATE scratch` changes what the TRUNCATE empties).
#[derive(Debug, Clone, Serialize)]
pub struct StringStatement {
    pub command: String,
    pub text: String,
    pub classes: ClassSet,
    /// Whether this request holds it.
    pub held: bool,
}

/// What a session asks approval for.
pub struct NewRequest {
    pub agent: Arc<str>,
    pub database: String,
    pub session: String,
    pub client: String,
    pub statements: Vec<HeldStatement>,
    /// Every statement of the query string, in order, when it has more
    /// than the held ones.
    pub string: Vec<StringStatement>,
    /// An earlier statement of the session that ran may have changed what
    /// unqualified names mean (`search_path`, a role, code): approvers are told.
    pub session_changed: bool,
    /// Parameter values of an extended-protocol execution, when the rule shows literals.
    pub parameters: Option<Vec<Option<String>>>,
    pub rule: Arc<str>,
    pub reason: Arc<str>,
    pub spec: Arc<ApprovalSpec>,
    /// How the session resolves unqualified names (its login's
    /// `search_path`), `None` once a statement may have changed that.
    pub names: Option<Arc<str>>,
    /// The `search_path` unqualified names resolve through, as far as
    /// sqlgate knows it (the startup packet's, or the login's default),
    /// shown to approvers when a held statement names a table without
    /// its schema.
    pub search_path: Option<Arc<str>>,
    /// SHA-256 of the query text that will run if approved: what the
    /// statement records name it by, and what the page shows beside it.
    pub sql_sha256: Arc<str>,
}

impl NewRequest {
    /// What a standing grant is keyed on: the statements' fingerprints, the
    /// database and the rule, and the login's `search_path` (for the
    /// functions it resolves). `None`: no grant can cover these statements,
    /// as they name a relation without its schema (`TRUNCATE scratch`
    /// approved for one schema must not run in another).
    pub(super) fn grant_key(&self) -> Option<String> {
        // Scoped to the database too: a grant given for one database does
        // not carry over to the same statement shape on another listener;
        // and to the rule, whose approvers and quorum gave it: the same
        // shape held by a stricter rule needs that rule's approval.
        // A grant covers schema-qualified names only. What an unqualified
        // name reaches moves with too much that sqlgate can't follow to the
        // end: `search_path` (set directly, by a function a view calls, by
        // `ALTER ROLE … SET` for later sessions, through `"$user"` after
        // `SET ROLE`), temporary objects, renames.
        if self
            .statements
            .iter()
            .flat_map(|s| &s.tables)
            .any(|t| !t.contains('.'))
        {
            return None;
        }
        // Nor while names may have moved in the session (review E, F15): a
        // moved search_path and the login's default must not share a key.
        // The path the session started with is in the key as well (a
        // database's default can change between sessions).
        let names = format!(
            "{}\u{2}{}",
            self.names.as_deref()?,
            self.search_path.as_deref().unwrap_or("")
        );
        // And to what approvers were shown each statement reaches: a
        // function, view or trigger that reaches more later is not covered.
        let fps: Vec<String> = self
            .statements
            .iter()
            .map(|s| {
                format!(
                    "{}\u{1}{}\u{1}{}",
                    s.fingerprint,
                    serde_json::to_string(&s.classes).unwrap_or_default(),
                    s.tables.join(",")
                )
            })
            .collect();
        Some(format!(
            "{}\u{0}{}\u{0}{names}\u{0}{}",
            self.database,
            self.rule,
            fps.join("; ")
        ))
    }
}

/// A vote from any channel.
#[derive(Debug, Clone)]
pub struct Vote {
    pub approve: bool,
    pub reason: Option<String>,
    pub channel: &'static str,
    /// Approve the same statement for the same agent for this long (default: once).
    pub grant: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Resolution {
    Approved {
        by: Vec<String>,
        grant: Option<Duration>,
    },
    Denied {
        by: String,
        reason: Option<String>,
    },
    TimedOut,
    Withdrawn {
        reason: String,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct CastVote {
    pub approver: String,
    pub approve: bool,
    pub reason: Option<String>,
    pub channel: &'static str,
    /// The standing grant this approver asked for, if any.
    #[serde(skip)]
    pub grant: Option<Duration>,
    #[serde(serialize_with = "rfc3339")]
    pub at: SystemTime,
}

#[derive(Debug, Clone)]
pub enum State {
    Pending,
    Decided { outcome: Resolution, at: SystemTime },
}

#[derive(Debug)]
pub struct Request {
    pub id: String,
    pub agent: Arc<str>,
    pub database: String,
    pub session: String,
    pub client: String,
    pub statements: Vec<HeldStatement>,
    pub string: Vec<StringStatement>,
    /// The session changed (or may have changed) what unqualified names
    /// mean before this request: approvers are told.
    pub names_moved: bool,
    pub search_path: Option<Arc<str>>,
    pub parameters: Option<Vec<Option<String>>>,
    pub rule: Arc<str>,
    pub reason: Arc<str>,
    pub approver_groups: Vec<String>,
    pub quorum: u32,
    pub created: SystemTime,
    pub expires: SystemTime,
    pub(super) grant_key: Option<String>,
    pub sql_sha256: Arc<str>,
    inner: Mutex<(State, Vec<CastVote>)>,
    done: watch::Sender<Option<Resolution>>,
}

impl Request {
    pub(super) fn new(
        n: NewRequest,
        timeout: Duration,
    ) -> (Request, watch::Receiver<Option<Resolution>>) {
        let (done, rx) = watch::channel(None);
        let mut id = [0u8; 12];
        rand::fill(&mut id);
        let created = SystemTime::now();
        let grant_key = n.grant_key();
        (
            Request {
                id: format!(
                    "apr_{}",
                    id.iter().map(|b| format!("{b:02x}")).collect::<String>()
                ),
                agent: n.agent,
                database: n.database,
                session: n.session,
                client: n.client,
                statements: n.statements,
                names_moved: n.session_changed,
                search_path: n.search_path,
                string: n.string,
                parameters: n.parameters,
                rule: n.rule,
                reason: n.reason,
                approver_groups: n.spec.approver_groups.clone(),
                quorum: n.spec.quorum.max(1),
                created,
                expires: created + timeout,
                grant_key,
                sql_sha256: n.sql_sha256,
                inner: Mutex::new((State::Pending, Vec::new())),
                done,
            },
            rx,
        )
    }

    pub fn state(&self) -> State {
        self.inner.lock().expect("not poisoned").0.clone()
    }

    pub fn status(&self) -> Status {
        match self.state() {
            State::Pending => Status::Pending,
            State::Decided { outcome, .. } => outcome.status(),
        }
    }

    pub fn state_name(&self) -> &'static str {
        self.status().as_str()
    }

    /// Whether `a` may see this request: a member of one of the groups
    /// that may decide it.
    pub fn visible_to(&self, a: &super::Approver) -> bool {
        a.groups.iter().any(|g| self.approver_groups.contains(g))
    }

    pub fn votes(&self) -> Vec<CastVote> {
        self.inner.lock().expect("not poisoned").1.clone()
    }

    /// Adds a vote; returns the outcome if this vote decides the request.
    /// Counts a vote; `Some` when it decided the request (made final here).
    pub(super) fn add_vote(
        &self,
        approver: &str,
        v: &Vote,
    ) -> Result<Option<Resolution>, VoteError> {
        let mut g = self.inner.lock().expect("not poisoned");
        if let State::Decided { outcome, .. } = &g.0 {
            return Err(VoteError::AlreadyDecided(outcome_name(outcome)));
        }
        if g.1.iter().any(|c| c.approver == approver) {
            return Err(VoteError::AlreadyVoted(approver.to_owned()));
        }
        g.1.push(CastVote {
            approver: approver.to_owned(),
            approve: v.approve,
            reason: v.reason.clone(),
            channel: v.channel,
            grant: v.grant,
            at: SystemTime::now(),
        });
        let approving = || g.1.iter().filter(|c| c.approve);
        let outcome = if !v.approve {
            Resolution::Denied {
                by: approver.to_owned(),
                reason: v.reason.clone(),
            }
        } else if approving().count() as u32 >= self.quorum {
            // A standing grant needs the quorum too: only when every
            // approver asked for one, for the shortest length asked.
            let grant = approving()
                .map(|c| c.grant)
                .try_fold(Duration::MAX, |a, g| g.map(|g| a.min(g)));
            Resolution::Approved {
                by: approving().map(|c| c.approver.clone()).collect(),
                grant,
            }
        } else {
            return Ok(None);
        };
        // Final under the same lock the vote was counted in: a deny can't
        // be overtaken by an approve counted after it.
        g.0 = State::Decided {
            outcome: outcome.clone(),
            at: SystemTime::now(),
        };
        Ok(Some(outcome))
    }

    /// Makes `o` final unless the request is already decided; true if it was.
    /// The waiting session is told only by [`Request::announce`], so that the
    /// decision's audit record can be queued first.
    pub(super) fn decide(&self, o: Resolution) -> bool {
        let mut g = self.inner.lock().expect("not poisoned");
        if matches!(g.0, State::Decided { .. }) {
            return false;
        }
        g.0 = State::Decided {
            outcome: o,
            at: SystemTime::now(),
        };
        true
    }

    /// Wakes the waiting session with the decision.
    pub(super) fn announce(&self) {
        if let State::Decided { outcome, .. } = self.state() {
            let _ = self.done.send(Some(outcome));
        }
    }

    /// The request as the API and the channels show it.
    pub fn to_json(&self) -> serde_json::Value {
        let (state, votes) = {
            let g = self.inner.lock().expect("not poisoned");
            (g.0.clone(), g.1.clone())
        };
        let mut v = serde_json::json!({
            "id": self.id, "agent": &*self.agent, "database": self.database, "session": self.session,
            "client": self.client, "statements": self.statements, "parameters": self.parameters,
            "rule": &*self.rule, "reason": &*self.reason, "approver_groups": self.approver_groups,
            "quorum": self.quorum, "created": ts(self.created), "expires": ts(self.expires),
            "votes": votes, "sql_sha256": &*self.sql_sha256,
        });
        if !self.string.is_empty() {
            v["string"] = serde_json::to_value(&self.string).unwrap_or_default();
        }
        if self.names_moved {
            v["session_note"] = SESSION_NOTE.into();
        } else {
            let unqualified: Vec<&str> = self
                .statements
                .iter()
                .flat_map(|s| &s.tables)
                .filter(|t| !t.contains('.'))
                .map(String::as_str)
                .collect();
            if !unqualified.is_empty() {
                v["names_note"] = names_note(&unqualified, self.search_path.as_deref()).into();
            }
        }
        match state {
            State::Pending => v["state"] = "pending".into(),
            State::Decided { outcome, at } => {
                v["state"] = outcome_name(&outcome).into();
                v["decided"] = ts(at).into();
                v["wait_ms"] = (at
                    .duration_since(self.created)
                    .unwrap_or_default()
                    .as_millis() as u64)
                    .into();
                v["outcome"] = serde_json::to_value(&outcome).unwrap_or_default();
            }
        }
        v
    }

    /// The request's audit record. The held text is stored once, in
    /// `approval_request`; the decision names it by `sql_sha256`.
    pub(super) fn audit_record(&self, kind: &str) -> serde_json::Value {
        let mut v = self.to_json();
        v["kind"] = kind.into();
        v["request"] = v["id"].take();
        if kind != "approval_request" {
            if let Some(o) = v.as_object_mut() {
                o.remove("statements");
                o.remove("string");
                o.remove("parameters");
            }
        }
        v
    }
}

/// What approvers are told of tables named without their schema: which
/// `search_path` finds them (a database's or role's default can be changed
/// for later sessions, so `scratch` need not be `public.scratch`).
fn names_note(tables: &[&str], search_path: Option<&str>) -> String {
    // Quoted as identifiers: a name can't write a sentence of its own
    // into sqlgate's.
    let mut t: Vec<String> = tables
        .iter()
        .map(|n| format!("\"{}\"", n.replace('"', "\"\"")))
        .collect();
    t.dedup();
    let path = match search_path {
        Some(p) if !p.trim().is_empty() => format!("search_path = {p}"),
        _ => "a search_path sqlgate could not read".to_owned(),
    };
    format!(
        "Named without a schema: {}. This session finds them through {path}: the first schema in it with a table of that name.",
        t.join(", ")
    )
}

/// What approvers are told when the session changed what names mean.
pub const SESSION_NOTE: &str = "Earlier in this session, a statement changed (or may have changed) search_path, the role or other settings: unqualified names here may not mean the tables they usually do.";

/// How much of a query string the chat messages list (the page and the API
/// have it all): characters per statement, and in all (under Slack's cut
/// of a block, so the list's own note on what it left out survives).
const STRING_CHARS: usize = 200;
const STRING_BUDGET: usize = 2400;

/// The query string a request's statements came in, one line per statement
/// in order, the held ones marked, for the chat channels (plain text: each
/// channel escapes it as it does statements). Runs of plain reads are
/// folded into one line, so what changes things is not pushed out of
/// view; what does not fit is counted, never dropped silently. `None` when
/// the request holds the whole string.
pub fn string_summary(v: &serde_json::Value) -> Option<String> {
    let all = v["string"].as_array().filter(|a| !a.is_empty())?;
    let plain = |s: &serde_json::Value| {
        s["held"].as_bool() != Some(true)
            && s["classes"]
                .as_array()
                .is_some_and(|c| c.len() == 1 && c[0] == "read")
    };
    let mut lines: Vec<String> = Vec::new();
    // Per line: held, or changing what later statements mean.
    let mut weighty: Vec<bool> = Vec::new();
    let mut i = 0;
    while i < all.len() {
        let run = all[i..].iter().take_while(|s| plain(s)).count();
        if run > 2 {
            lines.push(format!(
                "{}–{}. [runs with it] {run} plain reads",
                i + 1,
                i + run
            ));
            weighty.push(false);
            i += run;
            continue;
        }
        let s = &all[i];
        // One line per statement: a newline or other control character
        // (in a quoted name, a literal) is shown escaped, so no text can
        // fake a line of the list.
        // Hidden characters too, as the channels would show them: the
        // budget below counts what is shown.
        let text = crate::safe_text::line_safe(s["text"].as_str().unwrap_or(""));
        let text: String = match text.char_indices().nth(STRING_CHARS) {
            Some((at, _)) => format!("{}…", &text[..at]),
            None => text.into_owned(),
        };
        let mark = if s["held"].as_bool() == Some(true) {
            "held"
        } else {
            "runs with it"
        };
        lines.push(format!("{}. [{mark}] {text}", i + 1));
        weighty.push(mark == "held" || changes_meaning(s));
        i += 1;
    }
    // Counted as the channels show it: Slack writes `<`, `>` and `&` as
    // entities, up to five characters each.
    let shown = |t: &str| -> usize {
        t.chars()
            .map(|c| match c {
                '<' | '>' => 4,
                '&' => 5,
                c => c.len_utf8(),
            })
            .sum()
    };
    let mut out = String::new();
    let mut used = 0;
    for (n, l) in lines.iter().enumerate() {
        used += shown(l) + 1;
        if used > STRING_BUDGET {
            let weighty = weighty[n..].iter().filter(|w| **w).count();
            let of_them = match weighty {
                0 => String::new(),
                w => format!(", {w} of them held or changing settings, roles or definitions"),
            };
            out.push_str(&format!(
                "… {} more line(s) not shown here{of_them}: the request's page has the whole string\n",
                lines.len() - n
            ));
            break;
        }
        out.push_str(l);
        out.push('\n');
    }
    Some(out)
}

/// A statement of the string that changes how later ones read or run:
/// anything but reads, writes and transaction control.
fn changes_meaning(s: &serde_json::Value) -> bool {
    s["classes"].as_array().is_none_or(|c| {
        c.iter().any(|c| {
            !matches!(
                c.as_str(),
                Some("read" | "write" | "export" | "destructive" | "transaction")
            )
        })
    })
}

pub fn outcome_name(o: &Resolution) -> &'static str {
    o.status().as_str()
}

/// Where a request stands: waiting, or how it was resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pending,
    Approved,
    Denied,
    TimedOut,
    Withdrawn,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Status::Pending,
        Status::Approved,
        Status::Denied,
        Status::TimedOut,
        Status::Withdrawn,
    ];

    /// As the API and the records name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Denied => "denied",
            Status::TimedOut => "timed_out",
            Status::Withdrawn => "withdrawn",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl Resolution {
    pub fn status(&self) -> Status {
        match self {
            Resolution::Approved { .. } => Status::Approved,
            Resolution::Denied { .. } => Status::Denied,
            Resolution::TimedOut => Status::TimedOut,
            Resolution::Withdrawn { .. } => Status::Withdrawn,
        }
    }
}

fn ts(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

fn rfc3339<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&ts(*t))
}
