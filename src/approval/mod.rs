//! The hold: approval requests, votes, quorum, timeouts and grants.
//!
//! A session whose statement needs approval submits a [`NewRequest`] and waits
//! on the returned [`Hold`]. Approvers vote through any channel (HTTP API,
//! CLI, webhook callback, Slack, the approval page); every channel ends in
//! [`Approvals::vote`], so the rules below hold whatever the channel:
//! - a vote is bound to one request id, which names one statement of one session;
//! - the approver must belong to one of the rule's approver groups;
//! - nobody approves their own request: an approver named like the agent, or
//!   mapped to it (`[[approver]] agents = [...]`), is refused; there is no admin exception;
//! - one deny denies; `quorum` distinct approvals approve;
//! - a request not decided by its deadline is denied (timed out).
//!
//! Channels learn about new and decided requests from a broadcast of [`Notice`]s.

pub mod channels;
mod request;
pub mod sign;
pub mod slack;
pub mod teams;
pub mod webhook;

pub use request::{
    string_summary, HeldStatement, NewRequest, Request, Resolution, State, Status, StringStatement,
    Vote,
};

use crate::audit::{AuditLog, Event};
use dashmap::DashMap;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use subtle::ConstantTimeEq;
use thiserror::Error;
use tokio::sync::{broadcast, watch};

/// Why a vote was refused; each maps onto an HTTP status.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum VoteError {
    #[error("unknown approval request `{0}`")]
    NotFound(String),
    #[error("approver `{approver}` is not in the groups this rule asks ({groups})")]
    NotInGroup { approver: String, groups: String },
    #[error("approver `{approver}` may not decide a request of agent `{agent}`: nobody approves their own request")]
    SelfApproval { approver: String, agent: String },
    #[error("approver `{0}` has already voted on this request")]
    AlreadyVoted(String),
    #[error("the request is already {0}")]
    AlreadyDecided(&'static str),
}

impl VoteError {
    pub fn http_status(&self) -> u16 {
        match self {
            VoteError::NotFound(_) => 404,
            VoteError::NotInGroup { .. } | VoteError::SelfApproval { .. } => 403,
            VoteError::AlreadyVoted(_) | VoteError::AlreadyDecided(_) => 409,
        }
    }
}

/// An approver as the approval service knows it.
#[derive(Debug, Clone)]
pub struct Approver {
    pub name: String,
    pub groups: Vec<String>,
    /// Agents this person is (or runs): their requests are not theirs to approve.
    pub agents: Vec<String>,
    token_sha256: [u8; 32],
}

impl Approver {
    pub fn new(name: &str, token: &str, groups: &[String], agents: &[String]) -> Approver {
        Approver {
            name: name.to_owned(),
            groups: groups.to_vec(),
            agents: agents.to_vec(),
            token_sha256: Sha256::digest(token.as_bytes()).into(),
        }
    }
}

/// What channels are told.
#[derive(Debug, Clone)]
pub enum Notice {
    Created(Arc<Request>),
    Decided(Arc<Request>),
}

/// What a session gets back from [`Approvals::submit`].
pub enum Submitted {
    /// A standing grant covers this statement: it may run now.
    Granted {
        by: String,
        until: SystemTime,
        /// The request that gave the grant.
        request: String,
    },
    Held(Hold),
    /// No configured approver could decide it: refused at once, not held.
    Unapprovable(String),
}

/// A session's handle on its pending request.
pub struct Hold {
    pub request: Arc<Request>,
    rx: watch::Receiver<Option<Resolution>>,
}

impl Hold {
    /// Waits for the decision (approval, denial, timeout or withdrawal).
    pub async fn decided(&mut self) -> Resolution {
        loop {
            if let Some(o) = self.rx.borrow().clone() {
                return o;
            }
            if self.rx.changed().await.is_err() {
                return Resolution::Withdrawn {
                    reason: "the approval service stopped".into(),
                };
            }
        }
    }
}

/// An agent can't queue more requests than this (each one pings humans).
pub const MAX_PENDING_PER_AGENT: usize = 100;
/// The most text (all statements of a request together, in bytes) a
/// request holds: it is kept in memory, logged once and shown whole on
/// the page. A larger statement needing approval is refused (42501).
pub const MAX_HELD_TEXT: usize = 1 << 20;
/// Decided requests kept for the API (`?state=`); older ones are dropped.
pub const KEEP_DECIDED: usize = 10_000;

#[derive(Clone)]
pub struct Approvals {
    inner: Arc<Inner>,
}

struct Inner {
    requests: DashMap<String, Arc<Request>>,
    approvers: Vec<Approver>,
    default_timeout: Duration,
    audit: AuditLog,
    /// (agent, statement fingerprint) → standing grant.
    grants: DashMap<(String, String), Grant>,
    notices: broadcast::Sender<Notice>,
    /// Failed bearer tokens per client address: (count, window start).
    auth_failures: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, (u32, Instant)>>,
    /// Blind calls from throttled networks (see `blind_call`), counted so.
    blind_calls: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, (u32, Instant)>>,
}

/// A standing grant: the same statements for the same agent run without a
/// hold until `until`.
#[derive(Debug, Clone)]
struct Grant {
    /// The request that gave it (its id names the grant).
    request: String,
    by: String,
    until: Instant,
    until_wall: SystemTime,
    agent: Arc<str>,
    database: String,
    rule: Arc<str>,
    groups: Vec<String>,
    /// What approvers were shown: each statement's text (fingerprints
    /// unless literals were), classes and tables.
    statements: Vec<HeldStatement>,
}

impl Grant {
    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.request, "agent": &*self.agent, "database": self.database,
            "rule": &*self.rule, "granted_by": self.by, "approver_groups": self.groups,
            "statements": self.statements,
            "until": humantime::format_rfc3339_seconds(self.until_wall).to_string(),
        })
    }

    fn visible_to(&self, who: &Approver) -> bool {
        who.groups.iter().any(|g| self.groups.contains(g))
    }
}

/// Failed tokens a client network (IPv4 /24, IPv6 /64) may send per
/// [`AUTH_WINDOW`]; after that every token from it, right or wrong, is
/// refused (429) until the window ends, so guessing learns nothing and
/// costs a minute per ten tries. A long token is throttled too: length is
/// not randomness, and a correct guess taken from a throttled network
/// would let guessing run at full speed (review G, G2; so a neighbour's
/// failures lock its network's approvers out for the minute: fail closed).
pub const AUTH_FAILURES: u32 = 10;
/// Approver tokens at least this long (what `openssl rand -hex 16` gives,
/// 128 bits) are strong: shorter ones get a warning at config load.
pub const MIN_TOKEN_CHARS: usize = 32;
const AUTH_WINDOW: Duration = Duration::from_secs(60);
/// Networks remembered at most (a flood from many can't grow it without
/// bound; expired windows are dropped, live ones never: beyond this, new
/// networks' tokens are refused until windows end).
const AUTH_TRACKED: usize = 10_000;

/// The network an address counts for: its IPv4 /24 or IPv6 /64 (an
/// IPv4-mapped IPv6 address as the IPv4 one). Loopback is one network
/// whatever the address: one host has all of 127.0.0.0/8 (round J).
pub(crate) fn network(ip: std::net::IpAddr) -> std::net::IpAddr {
    use std::net::IpAddr;
    if ip.is_loopback() {
        return IpAddr::from([127, 0, 0, 0]);
    }
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::from([a, b, c, 0])
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => network(IpAddr::V4(v4)),
            None => {
                let s = v6.segments();
                IpAddr::from([s[0], s[1], s[2], s[3], 0, 0, 0, 0])
            }
        },
    }
}

/// Why a bearer token was not accepted.
#[derive(Debug, PartialEq, Eq)]
pub enum AuthError {
    Unknown,
    /// Too many failures from this address: retry after this many seconds.
    Throttled(u64),
}

impl Approvals {
    pub fn new(approvers: Vec<Approver>, default_timeout: Duration, audit: AuditLog) -> Approvals {
        let (notices, _) = broadcast::channel(1024);
        Approvals {
            inner: Arc::new(Inner {
                requests: DashMap::new(),
                approvers,
                default_timeout,
                audit,
                grants: DashMap::new(),
                notices,
                auth_failures: Default::default(),
                blind_calls: Default::default(),
            }),
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.inner.notices.subscribe()
    }

    /// The approver holding this bearer token, sent from `peer`: failures
    /// are counted and logged per address, and throttled
    /// ([`AUTH_FAILURES`] per [`AUTH_WINDOW`]).
    pub fn authenticate_from(
        &self,
        peer: std::net::IpAddr,
        token: &str,
    ) -> Result<&Approver, AuthError> {
        let now = Instant::now();
        let throttled = |start: Instant| {
            AuthError::Throttled(AUTH_WINDOW.saturating_sub(now - start).as_secs().max(1))
        };
        // Counted per network (IPv4 /24, IPv6 /64): one host has many
        // addresses of its network to spread guesses over.
        let net = network(peer);
        let lock = || {
            self.inner
                .auth_failures
                .lock()
                .unwrap_or_else(|e| e.into_inner())
        };
        {
            let failures = lock();
            if let Some(&(n, start)) = failures.get(&net) {
                if n >= AUTH_FAILURES && now - start < AUTH_WINDOW {
                    return Err(throttled(start));
                }
            }
            // Failing from more networks than are tracked: a spread attack.
            // Untracked ones are refused until windows end (live windows
            // are never forgotten early: that would lift every lock-out).
            if failures.len() >= AUTH_TRACKED && !failures.contains_key(&net) {
                let live = failures
                    .values()
                    .filter(|(_, t)| now - *t < AUTH_WINDOW)
                    .count();
                if live >= AUTH_TRACKED {
                    return Err(AuthError::Throttled(AUTH_WINDOW.as_secs()));
                }
            }
        }
        if let Some(a) = self.authenticate(token) {
            return Ok(a);
        }
        let mut failures = lock();
        if failures.len() >= AUTH_TRACKED && !failures.contains_key(&net) {
            failures.retain(|_, (_, start)| now - *start < AUTH_WINDOW);
            if failures.len() >= AUTH_TRACKED {
                return Err(AuthError::Throttled(AUTH_WINDOW.as_secs()));
            }
        }
        let entry = failures.entry(net).or_insert((0, now));
        if now - entry.1 >= AUTH_WINDOW {
            *entry = (0, now);
        }
        entry.0 += 1;
        metrics::counter!("sqlgate_approval_token_failures_total").increment(1);
        if entry.0 < AUTH_FAILURES {
            tracing::warn!(%peer, failures = entry.0, "approval API: unknown bearer token");
            Err(AuthError::Unknown)
        } else {
            tracing::warn!(%peer, network = %net, failures = entry.0, "approval API: too many unknown bearer tokens; this network is refused for the rest of the minute");
            Err(throttled(entry.1))
        }
    }

    /// Whether a throttled network may make one more blind call (a
    /// revocation carried out if its token is an approver's, answered the
    /// same either way): [`AUTH_FAILURES`] per [`AUTH_WINDOW`], as for
    /// failed tokens. Its effect is visible to an agent holding the grant
    /// it revokes, so it is a guess too (round 23, F2).
    pub fn blind_call(&self, peer: std::net::IpAddr) -> bool {
        let now = Instant::now();
        let mut calls = self
            .inner
            .blind_calls
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if calls.len() >= AUTH_TRACKED {
            calls.retain(|_, (_, start)| now - *start < AUTH_WINDOW);
            if calls.len() >= AUTH_TRACKED {
                return false;
            }
        }
        let entry = calls.entry(network(peer)).or_insert((0, now));
        if now - entry.1 >= AUTH_WINDOW {
            *entry = (0, now);
        }
        entry.0 += 1;
        entry.0 <= AUTH_FAILURES
    }

    /// The approver holding this bearer token (compared in constant time).
    pub fn authenticate(&self, token: &str) -> Option<&Approver> {
        let h: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.inner
            .approvers
            .iter()
            .find(|a| bool::from(a.token_sha256.ct_eq(&h)))
    }

    /// The approver a name means, compared as configured names are
    /// (`config::person_name`).
    pub fn approver(&self, name: &str) -> Option<&Approver> {
        let name = crate::config::login_name(name);
        self.inner.approvers.iter().find(|a| a.name == name)
    }

    pub fn get(&self, id: &str) -> Option<Arc<Request>> {
        self.inner.requests.get(id).map(|r| r.clone())
    }

    /// Requests in the given state (`None`: pending), oldest first.
    pub fn list(&self, state: Option<&str>) -> Vec<Arc<Request>> {
        // `all`, or a state's name; a name that is none lists nothing.
        let want = match state {
            None => Some(Some(Status::Pending)),
            Some("all") => Some(None),
            Some(s) => Status::parse(s).map(Some),
        };
        let Some(want) = want else {
            return Vec::new();
        };
        let mut v: Vec<_> = self
            .inner
            .requests
            .iter()
            .map(|r| r.clone())
            .filter(|r| want.is_none_or(|w| r.status() == w))
            .collect();
        v.sort_by_key(|r| r.created);
        v
    }

    /// Submits a statement for approval. Must be called inside the runtime
    /// (the deadline is a task).
    pub fn submit(&self, new: NewRequest) -> Submitted {
        let key = new.grant_key().map(|k| (new.agent.to_string(), k));
        if let Some(key) = key {
            if let Some(g) = self.inner.grants.get(&key) {
                if g.until > Instant::now() {
                    let (by, until, request) = (g.by.clone(), g.until_wall, g.request.clone());
                    drop(g);
                    self.inner.audit.record(Event::Json(serde_json::json!({
                        "kind": "approval_grant_used", "agent": &*new.agent, "session": new.session,
                        "rule": &*new.rule, "fingerprint": key.1, "granted_by": by,
                        "until": humantime::format_rfc3339_seconds(until).to_string(),
                    })));
                    return Submitted::Granted { by, until, request };
                }
                drop(g);
                self.inner.grants.remove(&key);
            }
        }
        let held_bytes: usize = new.statements.iter().map(|s| s.text.len()).sum();
        if held_bytes > MAX_HELD_TEXT {
            return Submitted::Unapprovable(format!(
                "the statement text is {held_bytes} bytes; statements over {MAX_HELD_TEXT} bytes cannot be held for approval (send smaller statements)"
            ));
        }
        let pending = self
            .inner
            .requests
            .iter()
            .filter(|r| *r.agent == *new.agent && r.status() == Status::Pending)
            .count();
        if pending >= MAX_PENDING_PER_AGENT {
            return Submitted::Unapprovable(format!(
                "agent `{}` already has {pending} requests waiting for approval",
                new.agent
            ));
        }
        self.prune();
        let eligible = self.inner.approvers.iter().any(|a| {
            a.groups
                .iter()
                .any(|g| new.spec.approver_groups.contains(g))
                && a.name != *new.agent
                && !a.agents.iter().any(|x| *x == *new.agent)
        });
        if !eligible {
            return Submitted::Unapprovable(format!(
                "no configured approver in group(s) `{}` may approve requests of `{}`",
                new.spec.approver_groups.join(", "),
                new.agent
            ));
        }
        let timeout = new.spec.timeout.unwrap_or(self.inner.default_timeout);
        let (request, rx) = Request::new(new, timeout);
        let request = Arc::new(request);
        self.inner
            .requests
            .insert(request.id.clone(), request.clone());
        self.inner
            .audit
            .record(Event::Json(request.audit_record("approval_request")));
        let _ = self.inner.notices.send(Notice::Created(request.clone()));
        // The deadline: a request still pending then is denied.
        let this = self.clone();
        let r = request.clone();
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            this.finish(&r, Resolution::TimedOut);
        });
        Submitted::Held(Hold { request, rx })
    }

    /// Records a vote; returns the request (decided or still pending).
    pub fn vote(
        &self,
        id: &str,
        approver: &Approver,
        vote: Vote,
    ) -> Result<Arc<Request>, VoteError> {
        let r = self
            .get(id)
            .ok_or_else(|| VoteError::NotFound(id.to_owned()))?;
        if approver.name == *r.agent || approver.agents.iter().any(|a| *a == *r.agent) {
            self.audit_refusal(&r, approver, &vote, "self_approval");
            return Err(VoteError::SelfApproval {
                approver: approver.name.clone(),
                agent: r.agent.to_string(),
            });
        }
        if !approver
            .groups
            .iter()
            .any(|g| r.approver_groups.contains(g))
        {
            self.audit_refusal(&r, approver, &vote, "not_in_group");
            return Err(VoteError::NotInGroup {
                approver: approver.name.clone(),
                groups: r.approver_groups.join(", "),
            });
        }
        let outcome = r.add_vote(&approver.name, &vote)?;
        self.inner.audit.record(Event::Json(serde_json::json!({
            "kind": "approval_vote", "request": r.id, "agent": &*r.agent, "session": r.session,
            "approver": approver.name, "vote": if vote.approve { "approve" } else { "deny" },
            "reason": vote.reason, "channel": vote.channel,
            "grant_seconds": vote.grant.map(|g| g.as_secs()),
        })));
        if let Some(o) = outcome {
            let grant = match &o {
                Resolution::Approved { grant: Some(d), by } => Some((*d, by.join(","))),
                _ => None,
            };
            // `add_vote` made it final: stored once the decision is.
            if let (Some((d, by)), Some(key)) = (grant, &r.grant_key) {
                self.inner.grants.insert(
                    (r.agent.to_string(), key.clone()),
                    Grant {
                        request: r.id.clone(),
                        by,
                        until: Instant::now() + d,
                        until_wall: SystemTime::now() + d,
                        agent: r.agent.clone(),
                        database: r.database.clone(),
                        rule: r.rule.clone(),
                        groups: r.approver_groups.clone(),
                        statements: r.statements.clone(),
                    },
                );
            }
            self.publish(&r);
        }
        Ok(r)
    }

    /// Ends the grant request `id` gave, if any: its approval was not used
    /// (what the statement reaches changed while it waited), so nothing may
    /// run on it. Recorded.
    pub fn drop_grant_of(&self, id: &str, why: &str) {
        self.remove_grant(id, |_| true, "sqlgate", Some(why));
    }

    /// Removes the grant request `id` gave, if `may` lets it, and records
    /// who ended it.
    fn remove_grant(
        &self,
        id: &str,
        may: impl Fn(&Grant) -> bool,
        by: &str,
        why: Option<&str>,
    ) -> Option<Grant> {
        let key = self
            .inner
            .grants
            .iter()
            .find(|g| g.request == id && may(g))
            .map(|g| g.key().clone())?;
        let (_, g) = self.inner.grants.remove(&key)?;
        let mut record = serde_json::json!({
            "kind": "approval_grant_revoked", "request": g.request, "agent": &*g.agent,
            "rule": &*g.rule, "granted_by": g.by, "revoked_by": by,
        });
        if let Some(why) = why {
            record["why"] = why.into();
        }
        self.inner.audit.record(Event::Json(record));
        Some(g)
    }

    /// The standing grants `who` could have given (their groups), in force.
    pub fn grants(&self, who: &Approver) -> Vec<serde_json::Value> {
        let now = Instant::now();
        let mut v: Vec<(SystemTime, serde_json::Value)> = self
            .inner
            .grants
            .iter()
            .filter(|g| g.until > now && g.visible_to(who))
            .map(|g| (g.until_wall, g.to_json()))
            .collect();
        v.sort_by_key(|(t, _)| *t);
        v.into_iter().map(|(_, g)| g).collect()
    }

    /// Ends the grant `id` now. Any approver of its groups may: revoking
    /// only ever asks for more approval. Recorded.
    pub fn revoke(&self, id: &str, who: &Approver) -> Result<serde_json::Value, VoteError> {
        self.remove_grant(id, |g| g.visible_to(who), &who.name, None)
            .map(|g| g.to_json())
            .ok_or_else(|| VoteError::NotFound(id.to_owned()))
    }

    /// Forgets decided requests once there are many: the oldest decided ones
    /// past `KEEP_DECIDED` go (their records stay in the audit log).
    fn prune(&self) {
        let map = &self.inner.requests;
        if map.len() < KEEP_DECIDED + MAX_PENDING_PER_AGENT {
            return;
        }
        let mut decided: Vec<(SystemTime, String)> = map
            .iter()
            .filter(|r| r.status() != Status::Pending)
            .map(|r| (r.created, r.id.clone()))
            .collect();
        decided.sort();
        let excess = decided.len().saturating_sub(KEEP_DECIDED);
        for (_, id) in decided.into_iter().take(excess) {
            map.remove(&id);
        }
        self.inner.grants.retain(|_, g| g.until > Instant::now());
    }

    /// The agent went away or cancelled: the request is withdrawn.
    pub fn withdraw(&self, r: &Arc<Request>, why: &str) {
        self.finish(
            r,
            Resolution::Withdrawn {
                reason: why.to_owned(),
            },
        );
    }

    /// Makes `o` the request's decision; false if it was decided already.
    fn finish(&self, r: &Arc<Request>, o: Resolution) -> bool {
        let decided = r.decide(o);
        if decided {
            self.publish(r);
        }
        decided
    }

    /// Records, then announces, a decision just made final.
    fn publish(&self, r: &Arc<Request>) {
        // INVARIANT: the decision's record is queued before the session
        // learns of it, so a session that syncs the audit log before
        // forwarding an approved statement has the decision on disk.
        self.inner
            .audit
            .record(Event::Json(r.audit_record("approval_decision")));
        r.announce();
        let _ = self.inner.notices.send(Notice::Decided(r.clone()));
    }

    fn audit_refusal(&self, r: &Request, approver: &Approver, vote: &Vote, why: &str) {
        self.inner.audit.record(Event::Json(serde_json::json!({
            "kind": "approval_vote_refused", "request": r.id, "agent": &*r.agent,
            "approver": approver.name, "channel": vote.channel, "why": why,
        })));
    }
}

#[cfg(test)]
mod tests;
