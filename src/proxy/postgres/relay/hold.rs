//! Holding one message for approval: the request, the notice to the agent,
//! keepalives, withdrawal on cancel or disconnect, and what follows a decision.

use super::expect::Expect;
use super::{guard, report, ClientFrames, ClientSide, Held, HoldEnd};
use crate::approval::{HeldStatement, NewRequest, StringStatement};
use crate::audit::Outcome;
use crate::audit::{ApprovalNote, ApprovalOutcome};
use crate::classify::Class;
use crate::classify::StatementInfo;
use crate::policy::Action;
use crate::policy::Verdict;
use crate::proxy::stream::ReadPart;
use crate::proxy::stream::WritePart;
use crate::session::hold;
use crate::session::hold::{merge_notes, rule_groups, Ended, Submission, Withdraw};
use crate::session::refusal::held_notice;
use bytes::BytesMut;
use postgres_protocol::message::frontend as fe;
use sqlgate_postgres::backend::Report;
use sqlgate_postgres::backend::Severity;
use sqlgate_postgres::frontend;
use sqlgate_postgres::sqlstate;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

impl ClientSide<'_> {
    /// Holds one message until it is approved, refused, withdrawn or the agent
    /// leaves. Statements held under different rules each need their own
    /// rule's approval (its groups, quorum, timeout): one request per rule,
    /// in order; the first refusal ends the hold. A statement several
    /// approval rules match (`Verdict::also`) is in each one's request.
    pub(super) async fn hold(
        &mut self,
        held: &Held,
        rd: &mut ReadPart,
        wr: &mut WritePart,
        frames: &mut ClientFrames,
    ) -> std::io::Result<HoldEnd> {
        let groups = rule_groups(&held.verdicts);
        let mut approved: Option<ApprovalNote> = None;
        // Holding from before any request exists: a cancel sent as soon as a
        // request is visible must withdraw it, not go upstream.
        let sess = self.sess;
        let holding = sess.cancel.hold();
        for (rule, g) in &groups {
            match self
                .hold_rule(held, rule, g, rd, wr, frames, &holding)
                .await?
            {
                HoldEnd::Approved(n) => approved = Some(merge_notes(approved, n)),
                other => return Ok(other),
            }
        }
        Ok(HoldEnd::Approved(approved.unwrap_or(ApprovalNote {
            request: None,
            outcome: ApprovalOutcome::Approved,
            by: vec![],
        })))
    }

    /// Holds for the statements `blocking`, all under one rule (`lead`).
    #[allow(clippy::too_many_arguments)]
    async fn hold_rule(
        &mut self,
        held: &Held,
        lead: &Verdict,
        blocking: &[usize],
        rd: &mut ReadPart,
        wr: &mut WritePart,
        frames: &mut ClientFrames,
        holding: &crate::session::cancel::HoldGuard<'_>,
    ) -> std::io::Result<HoldEnd> {
        // Extended: the verdict was computed for the statement at `hold.1`.
        let statement_index = |i: usize| if held.simple { i } else { 0 };
        let spec = lead.approval.clone().unwrap_or_else(|| {
            Arc::new(crate::policy::ApprovalSpec {
                approver_groups: vec![],
                quorum: 1,
                timeout: None,
                show_literals: false,
            })
        });
        // Literals are shown only when the text is exactly the held statement:
        // a query string with other statements could carry their literals,
        // which other rules may keep hidden. Code is the exception: a
        // function body, DO block, rule, trigger or policy is approved as
        // written or not at all, so its whole text is shown, and a grant
        // covers only that exact text (its SHA-256), never its fingerprint.
        let held_infos: Vec<&StatementInfo> = blocking
            .iter()
            .filter_map(|&i| held.analysis.statements.get(statement_index(i)))
            .collect();
        let code = held_infos.iter().any(|s| s.code);
        let text = || match held.simple {
            true => frontend::query_bytes(&held.msg)
                .ok()
                .and_then(|b| self.encoding().decode(b)),
            false => held.text.as_deref().map(std::borrow::Cow::Borrowed),
        };
        let sql: Option<std::borrow::Cow<'_, str>> = match (spec.show_literals, held.simple) {
            _ if code => text(),
            (false, _) => None,
            (true, true) if held.analysis.statements.len() == 1 => text(),
            (true, true) => None,
            (true, false) => text(),
        };
        let statements = held_statements(held, &held_infos, sql.as_deref(), code);
        let mut new = self.request(
            statements,
            held.params.clone(),
            lead.rule.clone(),
            lead.reason.clone(),
            spec,
            held.sha.clone(),
        );
        if held.simple && held.analysis.statements.len() > blocking.len() {
            new.string = string_statements(held, blocking, text().as_deref());
        }
        if held.simple {
            // One that runs before a held one (held itself or not) may move
            // names for it: the session note says so (and no search_path is
            // shown as sure).
            let last_held = blocking.iter().max().copied().unwrap_or(0);
            if held
                .analysis
                .statements
                .iter()
                .take(last_held)
                .any(|s| s.moves_names)
            {
                new.session_changed = true;
                // And no grant: what its names meant is not the session's.
                new.names = None;
            }
        }
        self.await_decision(new, rd, wr, frames, holding).await
    }

    /// An approval request from this session (agent, database, client).
    pub(super) fn request(
        &self,
        statements: Vec<HeldStatement>,
        parameters: Option<Vec<Option<String>>>,
        rule: Arc<str>,
        reason: Arc<str>,
        spec: Arc<crate::policy::ApprovalSpec>,
        sql_sha256: Arc<str>,
    ) -> NewRequest {
        NewRequest {
            agent: self.sess.info.agent.clone(),
            database: self.sess.info.database.clone(),
            session: self.sess.info.id.clone(),
            client: self.sess.info.client.clone(),
            statements,
            string: Vec::new(),
            session_changed: self.shared.learnt(|l| l.names_run),
            parameters,
            rule,
            reason,
            spec,
            names: self.names(),
            search_path: self.search_path(),
            sql_sha256,
        }
    }

    /// Submits `new` and waits for its decision, keeping the session alive.
    pub(super) async fn await_decision(
        &mut self,
        new: NewRequest,
        rd: &mut ReadPart,
        wr: &mut WritePart,
        frames: &mut ClientFrames,
        holding: &crate::session::cancel::HoldGuard<'_>,
    ) -> std::io::Result<HoldEnd> {
        let approvals = &self.sess.engine.approvals;
        let mut hold = match hold::submit(approvals, new) {
            Submission::Ended(e) => return Ok(ended(e)),
            Submission::Waiting(h) => h,
        };
        let r = hold.request.clone();
        // However this function is left (decision, error, disconnect), a
        // request still pending is withdrawn; after a decision it's a no-op.
        let _withdraw = Withdraw(approvals, &r);
        let msg = held_notice(&r);
        let _ = self
            .notices
            .send(Report::new(Severity::Notice, sqlstate::SUCCESSFUL_COMPLETION, &msg).encode());
        // The server's idle timeouts, which the agent or an administrator
        // may have set below `keepalive`, are asked for as soon as nothing
        // else is in flight; until the answer, keepalives come at least
        // every second.
        let mut probed = false;
        if self.probe_now() {
            self.probe(wr).await?;
            probed = true;
        }
        let mut next = tokio::time::Instant::now() + self.keepalive_period();
        let cap = self.sess.max_message.max(1 << 20);
        let resolution = loop {
            if holding.cancelled() {
                return Ok(ended(hold::canceled(approvals, &r)));
            }
            tokio::select! {
                o = hold.decided() => break o,
                _ = holding.notified() => continue,
                // Reading on keeps a disconnect visible; what arrives waits its turn.
                // A reset counts as a disconnect too (a client that closes with
                // unread data, such as our notice, resets the connection).
                n = frames.read_more(rd), if frames.held() < cap => {
                    if !matches!(n, Ok(k) if k > 0) {
                        approvals.withdraw(&r, "the agent disconnected");
                        return Ok(HoldEnd::ClientGone);
                    }
                }
                _ = tokio::time::sleep_until(next) => {
                    self.keep_alive(wr, &mut probed).await?;
                    next = tokio::time::Instant::now() + self.keepalive_period();
                }
            }
        };
        Ok(ended(hold::resolved(&r, resolution)))
    }

    /// One keepalive of a hold: the idle timeouts asked for if not yet
    /// (`probe`), else a Sync between batches, which makes the server reset
    /// its idle timers (idle_in_transaction_session_timeout). Mid-batch no
    /// idle timer runs, and a Sync would end the batch.
    async fn keep_alive(&mut self, wr: &mut WritePart, probed: &mut bool) -> std::io::Result<()> {
        if !*probed && self.probe_now() {
            self.probe(wr).await?;
            *probed = true;
        } else if !self.in_extended && !self.copy_may_be_open() {
            self.expect(Expect::SwallowReady);
            let mut b = BytesMut::new();
            fe::sync(&mut b);
            wr.write_all(&b).await?;
            wr.flush().await?;
        }
        Ok(())
    }

    /// Whether the idle timeouts can be asked for now: between batches,
    /// with every earlier message answered (the probe's answers are then
    /// the next the server sends).
    fn probe_now(&self) -> bool {
        !self.in_extended && self.shared.queue().is_empty()
    }

    /// Whether the server may be in COPY FROM STDIN: it then ignores Sync
    /// (no ReadyForQuery would answer a keepalive, and the next one would be
    /// swallowed in its place), and runs no idle timer either.
    fn copy_may_be_open(&self) -> bool {
        // The server's word, not the agent's: a COPY that failed to start
        // left `after_copy` set, and its session still needs keepalives.
        let q = self.shared.queue();
        q.copy_in()
            || q.iter().any(|e| match e {
                Expect::Statement(ev, ..) => ev
                    .analysis
                    .statements
                    .get(ev.index)
                    .is_some_and(|s| s.command == "COPY"),
                Expect::CopySync(_) => true,
                _ => false,
            })
    }

    /// Asks the server for the session's idle timeouts (`Expect::Probe`).
    /// `SHOW` takes no snapshot, so a REPEATABLE READ transaction's
    /// snapshot is still taken by the agent's own first statement; its
    /// ReadyForQuery resets the server's idle timers as a Sync does. On a
    /// failed transaction it fails, and the timeouts stay unknown.
    async fn probe(&mut self, wr: &mut WritePart) -> std::io::Result<()> {
        self.expect(Expect::Probe);
        let mut b = BytesMut::new();
        // INVARIANT: ASCII without NUL.
        let _ = fe::query(
            "SHOW idle_in_transaction_session_timeout; SHOW idle_session_timeout",
            &mut b,
        );
        wr.write_all(&b).await?;
        wr.flush().await
    }

    /// How often a hold keeps the session alive: `[approvals] keepalive`,
    /// or more often under a shorter idle timeout of the server's (a third
    /// of it), or at least every second while it is not known.
    fn keepalive_period(&self) -> std::time::Duration {
        use std::time::Duration;
        let configured = self.sess.keepalive;
        let known = self.shared.queue().idle_timeout_ms();
        match known {
            0 => configured,
            u64::MAX => configured.min(Duration::from_secs(1)),
            ms => configured.min(Duration::from_millis((ms / 3).max(10))),
        }
    }

    /// Forwards an approved message exactly as the agent sent it.
    /// Sends an approved message upstream. Only the statements that were
    /// themselves held carry the approval and are exempt from the row
    /// guard: their allowed siblings in the query string are counted, so
    /// the string then runs as the row guard runs any (`guard.rs`).
    pub(super) fn release(&mut self, held: Held, n: ApprovalNote) -> Option<guard::Point> {
        self.note_names(&held.analysis);
        let n = Arc::new(n);
        if held.simple {
            let events: Vec<_> = held
                .verdicts
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let mut ev = self.sess.ledger.event(
                        &held.analysis,
                        i,
                        &held.sha,
                        &v.rule,
                        v.action,
                        Outcome::Ok,
                    );
                    ev.masked = held.masks.as_ref().and_then(|m| m.get(i)?.clone());
                    let limit = match v.action {
                        Action::Allow => held
                            .analysis
                            .statements
                            .get(i)
                            .and_then(|s| guard::limit(s, v)),
                        _ => {
                            ev.approval = Some(n.clone());
                            None
                        }
                    };
                    (ev, limit)
                })
                .collect();
            let p = guard::Pending {
                msg: held.msg,
                events,
                simple: true,
                rows: None,
            };
            let stmts = &held.analysis.statements;
            if stmts.len() == 1 && guard::commits(&stmts[0]) && self.guarding() {
                // An approved PREPARE TRANSACTION still commits what the
                // row guard counted: its approver did not see the counts.
                return Some(guard::Point::Commit(p));
            }
            if p.events.iter().any(|(_, l)| l.is_some()) {
                return Some(guard::Point::Wrap(p));
            }
            self.forward(p, None);
            return None;
        }
        let v = &held.verdicts[0];
        let mut ev =
            self.sess
                .ledger
                .event(&held.analysis, 0, &held.sha, &v.rule, v.action, Outcome::Ok);
        ev.masked = held.masks.as_ref().and_then(|m| m.first()?.clone());
        if let Some(pre) = held.prelude {
            self.send_prelude(pre, n.clone());
        }
        ev.approval = Some(n);
        let p = guard::Pending {
            msg: held.msg,
            events: vec![(ev, None)],
            simple: false,
            rows: held.rows,
        };
        let commits = held.analysis.statements.first().is_some_and(guard::commits);
        if commits && self.guarding() {
            return Some(guard::Point::Commit(p));
        }
        self.forward(p, None);
        None
    }

    pub(super) fn audit_held(&mut self, held: &Held, outcome: Outcome, n: ApprovalNote) {
        let n = Arc::new(n);
        for (i, v) in held.verdicts.iter().enumerate() {
            let o = if v.action == Action::Allow {
                Outcome::NotExecuted
            } else {
                outcome.clone()
            };
            let mut ev = self.sess.ledger.event(
                &held.analysis,
                if held.simple { i } else { 0 },
                &held.sha,
                &v.rule,
                v.action,
                o,
            );
            ev.approval = Some(n.clone());
            let ack = self.sess.ledger.record_durable(ev);
            self.acks.push(ack);
        }
    }
}

/// Bind parameters as approvers see them: printable text as it is, read in
/// the session's encoding (drivers often send text in binary format, which
/// is the same bytes), anything else in hex.
pub(super) fn shown_params(
    bind: &[u8],
    encoding: &crate::encoding::Encoding,
) -> Vec<Option<String>> {
    frontend::bind_parameters(bind)
        .unwrap_or_default()
        .into_iter()
        .map(|(_, v)| {
            v.map(|b| match encoding.decode(b) {
                Some(t) if !t.chars().any(char::is_control) => t.into_owned(),
                _ => format!("\\x{}", hex::encode(b)),
            })
        })
        .collect()
}

/// What approvers are shown of the held statements `infos`: `sql`, the
/// text as written when it may be shown, else each one's fingerprint.
fn held_statements(
    held: &Held,
    infos: &[&StatementInfo],
    sql: Option<&str>,
    code: bool,
) -> Vec<HeldStatement> {
    infos
        .iter()
        .map(|info| HeldStatement {
            command: info.command.clone(),
            text: sql
                .map(str::to_owned)
                .unwrap_or_else(|| info.fingerprint.clone()),
            classes: info.classes,
            tables: info.tables.clone(),
            // Code is granted by its exact text and parameter values:
            // `set_config('role', $1)` granted for one role is not granted
            // for another.
            fingerprint: if code {
                match &held.params {
                    Some(p) => format!(
                        "sha256:{}:{}",
                        held.sha,
                        crate::session::ledger::sha256_hex(
                            &serde_json::to_string(p).unwrap_or_default()
                        )
                    ),
                    None => format!("sha256:{}", held.sha),
                }
            } else {
                info.fingerprint.clone()
            },
        })
        .collect()
}

/// Every statement of a held query string, for the request: a statement
/// that changes what the held ones mean (a setting, `search_path`, a role,
/// code) is shown as written (`whole` split), as a held one would be: its
/// literals are identity, not data. The rest by fingerprint.
fn string_statements(held: &Held, blocking: &[usize], whole: Option<&str>) -> Vec<StringStatement> {
    let parts = whole
        .and_then(|t| pg_query::split_with_parser(t).ok())
        .filter(|p| p.len() == held.analysis.statements.len());
    held.analysis
        .statements
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let identity = s.code
                || s.moves_names
                || s.classes.contains(Class::Session)
                || s.classes.contains(Class::Privilege);
            let written = parts
                .as_ref()
                .and_then(|p| p.get(i))
                .filter(|_| identity)
                .map(|t| t.trim().to_owned());
            StringStatement {
                command: s.command.clone(),
                text: written.unwrap_or_else(|| s.fingerprint.clone()),
                classes: s.classes,
                held: blocking.contains(&i),
            }
        })
        .collect()
}

/// A hold's end in this wire's words: a refusal as an ErrorResponse.
fn ended(e: Ended) -> HoldEnd {
    match e {
        Ended::Approved(n) => HoldEnd::Approved(n),
        Ended::Refused(r, n) => HoldEnd::Refused(report(&r, Severity::Error), n),
    }
}
