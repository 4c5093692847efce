//! The extended protocol: Parse, Bind, Execute, Describe, Close.
//!
//! sqlgate decides at Execute from the statement it vetted at Parse, so the
//! statement a Bind or Execute reaches on the server must be exactly that
//! one. sqlgate cannot know, when it forwards a message, whether the server
//! will take it: a Parse or Bind can fail (duplicate name, syntax error,
//! missing table, wrong parameter count) or be skipped after an earlier
//! error in its batch, and the answer comes later than the next batch may
//! (pipelining). So sqlgate does not try to predict the server: it makes
//! drift harmless by construction.
//!
//! Every client statement and portal, named or unnamed (`""`), goes upstream
//! under a fresh name of sqlgate's own, `sqlgate.s.<n>.<random>` and
//! `sqlgate.p.<n>.<random>`: `n` counts up in the session, so a name is never
//! reused, and the random part means an agent cannot create a name before
//! sqlgate does (for example with SQL `PREPARE`). sqlgate maps each client
//! name to the latest [`Prepared`] / [`Portal`] it vetted, with its upstream
//! name, and rewrites Bind, Execute, Describe and Close to it (the SQL text
//! and parameters are never touched). Names beginning with `sqlgate.` are
//! refused from agents (42501), so only sqlgate ever names those objects.
//!
//! What the client side of PostgreSQL's semantics becomes:
//! - A re-Parse of a name the client already has (PostgreSQL: 42P05 if it
//!   still exists) or a Bind to a portal name it already has replaces it:
//!   sqlgate closes the old upstream name, then creates the new one. That
//!   is also what PostgreSQL does for the unnamed statement (dropped at the
//!   start of every unnamed Parse) and the unnamed portal (replaced by each
//!   unnamed Bind). sqlgate is more lenient than PostgreSQL for named
//!   duplicates, never less: after a failed Parse PostgreSQL has no such
//!   name, and a driver's retry under the same name must work.
//! - A client Close closes the upstream name and the client gets the
//!   server's CloseComplete; sqlgate forgets the name at once.
//! - A simple Query drops the unnamed statement and portal (as PostgreSQL's
//!   `exec_simple_query` does), so sqlgate forgets `""` for both.
//! - Portals die upstream at transaction end; sqlgate keeps them mapped and
//!   the server answers an Execute of one with "does not exist".
//! - Names sqlgate never saw are refused at Bind (26000) and Execute
//!   (34000), as PostgreSQL refuses names that do not exist: a statement
//!   made with SQL `PREPARE`, a cursor made with `DECLARE`. Describe and
//!   Close of them go through under the client's name (harmless).
//!
//! Closes sqlgate adds are answered with a CloseComplete the agent never
//! asked for: each Close sent upstream is an `Expect::Close` in the
//! expected-response queue, matched in order and swallowed when it is
//! sqlgate's (`responses.rs`). A Close the server skipped (an earlier error
//! in its batch) would leave its statement upstream for good, so at the
//! ReadyForQuery its name goes on `Shared::orphans`, and the next batch
//! starts with a Close of each: the server's statements stay bounded by
//! what sqlgate tracks.
//!
//! A statement sqlgate holds reaches the server only once approved.
//! Preparing is not harmless: parse analysis converts literals with their
//! types' input functions (a composite over a domain runs the domain's
//! CHECK, which can call any function), Bind plans (folding IMMUTABLE
//! functions) and converts parameters, and a bound portal can be run by
//! name from SQL (`cursor_to_xml('sqlgate.p…')`). So for a held statement:
//! - Parse sends the statement's *neutral text* (string literals `NULL`,
//!   `classify::neutral_text`) under the upstream name: the server checks
//!   and describes it as it would the statement, and runs nothing of it.
//! - Bind sends an empty placeholder statement and portal instead (after a
//!   Describe of the neutral statement, so that a Bind of a statement whose
//!   Parse failed fails as on PostgreSQL); the client gets the server's
//!   ParseComplete/BindComplete in order, and its Bind is kept.
//! - Describe of the portal is a Describe of the neutral statement, its
//!   ParameterDescription dropped and its RowDescription given the Bind's
//!   result formats (`Expect::Describe`).
//! - Once the Execute is approved: a Describe of the placeholder portal (if
//!   the server skipped or dropped it, so does the rest, as PostgreSQL would
//!   not run it either), the real Parse and the client's Bind under new
//!   names (their answers swallowed), then the Execute. Later Executes of
//!   that portal (after PortalSuspended) are the same approved execution.
//!
//! (The review that led here ran a held DELETE after a duplicate Parse of
//! sqlgate's own upstream name, and executed a statement other than the one
//! approved after a Close and Bind of sqlgate's portal names inside BEGIN.)

use super::expect::Described;
use super::expect::Expect;
use super::{guard, hold, rows, ClientSide, Held, Portal, Prepared, Step};
use crate::audit::ApprovalNote;
use crate::audit::Outcome;
use crate::classify::Analysis;
use crate::classify::Dialect;
use crate::engine::Decision;
use crate::policy::Action;
use crate::policy::Verdict;
use crate::session::ledger::count_verdicts;
use crate::session::ledger::sha256_hex;
use bytes::BytesMut;
use sqlgate_postgres::backend::Report;
use sqlgate_postgres::backend::Severity;
use sqlgate_postgres::frontend;
use sqlgate_postgres::sqlstate;
use std::io::Write as _;
use std::sync::Arc;

/// Names beginning with this are sqlgate's own upstream (statements, portals,
/// denial markers): an agent may not use them.
const RESERVED: &[u8] = b"sqlgate.";

/// Past this many tracked names a map is cleared (and its upstream names
/// closed); forgotten names are then refused, so the bound costs
/// availability, never safety.
const MAX_TRACKED: usize = 10_000;

/// A statement's or portal's name upstream, kept on the stack: this is made
/// for every Parse and Bind (`pgbench -M extended` makes two per query).
#[derive(Clone, Copy)]
pub(super) struct UpName {
    len: u8,
    buf: [u8; 48],
}

impl UpName {
    pub(super) fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }

    /// A name for the expected-response queue's tests (at most 48 bytes).
    #[cfg(test)]
    pub(super) fn for_test(name: &[u8]) -> UpName {
        let mut buf = [0u8; 48];
        buf[..name.len()].copy_from_slice(name);
        UpName {
            len: name.len() as u8,
            buf,
        }
    }
}

/// What an approved held portal needs upstream before its Execute.
pub(super) struct Prelude {
    /// A Describe of the placeholder portal (is it still there?), the real
    /// Parse (when the server has only the neutral text) and Bind.
    msgs: BytesMut,
    /// How many ParseComplete/BindComplete they are answered with.
    completes: u8,
    /// The client's portal name and its real upstream name.
    portal: Vec<u8>,
    real: UpName,
    /// Closed later: the placeholder portal, the real statement made for it.
    orphans: Vec<(u8, UpName)>,
}

impl std::fmt::Debug for UpName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.as_bytes()))
    }
}

impl ClientSide<'_> {
    /// A fresh upstream name: `kind` is `s` (statement) or `p` (portal).
    fn fresh_name(&mut self, kind: u8) -> UpName {
        self.next_name += 1;
        let r: u64 = rand::random();
        let mut buf = [0u8; 48];
        let mut c = std::io::Cursor::new(&mut buf[..]);
        // INVARIANT: at most 10 + 20 + 1 + 16 = 47 bytes, so this cannot fail,
        // and stays under PostgreSQL's 63-byte name limit (longer names are
        // truncated by the server and could collide).
        let _ = write!(c, "sqlgate.{}.{}.{r:016x}", kind as char, self.next_name);
        UpName {
            len: c.position() as u8,
            buf,
        }
    }

    /// Closes `name` upstream (`kind` `S` or `P`); the CloseComplete is
    /// swallowed, and if the server skips the Close it is sent again later.
    fn close_upstream(&mut self, kind: u8, name: UpName) {
        self.expect(Expect::Close {
            swallow: true,
            orphan: Some((kind, name)),
        });
        frontend::write_close(kind, name.as_bytes(), &mut self.out);
    }

    /// At the start of an extended-protocol batch: closes the upstream names
    /// sqlgate forgot whose Close has not happened yet (see the module docs).
    pub(super) fn close_orphans(&mut self) {
        let orphans = self.shared.queue().take_orphans();
        for (kind, name) in orphans {
            self.close_upstream(kind, name);
        }
    }

    /// Forgets an upstream name without a Close in the current batch: it is
    /// closed at the start of the next one.
    fn orphan(&self, kind: u8, name: UpName) {
        self.shared.queue().orphan(kind, name);
    }

    /// A simple Query drops the unnamed statement and replaces the unnamed
    /// portal on the server: sqlgate forgets both.
    pub(super) fn forget_unnamed(&mut self) {
        if let Some(p) = self.prepared.remove(&b""[..]) {
            self.orphan(b'S', p.upstream);
        }
        if let Some(p) = self.portals.remove(&b""[..]) {
            self.orphan(b'P', p.upstream);
        }
    }

    pub(super) fn parse(&mut self, msg: &[u8]) {
        let (name, sql) = match frontend::parse_message_bytes(msg) {
            Ok((name, b)) => match self.encoding().decode(b) {
                Some(sql) => (name, sql),
                None => return self.reject_undecodable(frontend::DecodeError::NotUtf8, false),
            },
            Err(e) => return self.reject_undecodable(e, false),
        };
        let sql = &*sql;
        if self.parse_refused_unread(name, sql) {
            return;
        }
        let generation = self.sess.catalog.as_ref().map_or(0, |c| c.generation());
        let types: Arc<[u32]> = frontend::parse_param_types(msg).unwrap_or_default().into();
        let classified = self.sess.engine.classifier(Dialect::Postgres).classify(sql);
        let d = self.decide_with_params(classified, &types, Some(sql));
        let sha = sha256_hex(sql);
        count_verdicts(&d.verdicts);
        if d.blocking().is_some() && d.first_deny().is_some() {
            self.forget_statement(name);
            return self.refuse(&d, &sha, false);
        }
        let held = d.blocking().is_some();
        // The server reads (and may run code of) this text now, unless it is
        // held: a held one moves names once approved (`release`).
        if !held {
            self.note_names(&d.analysis);
        }
        let text = match held.then(|| self.neutral_text(sql)) {
            Some(Err(why)) => {
                self.forget_statement(name);
                return self.refuse_unpreparable(why);
            }
            Some(Ok(t)) => Some(t),
            None => None,
        };
        let upstream = self.fresh_name(b's');
        // INVARIANT: the upstream name is new; whatever the server does with
        // this Parse, that name reaches this statement (or its neutral
        // text) or nothing.
        let written = match &text {
            Some(t) => frontend::write_with_names(msg, 0, &[upstream.as_bytes(), t], &mut self.out),
            None => frontend::write_with_names(msg, 0, &[upstream.as_bytes()], &mut self.out),
        };
        if let Err(e) = written {
            return self.reject_undecodable(e, false);
        }
        self.expect(Expect::Complete { swallow: false });
        let parse = held.then(|| Arc::from(msg));
        let mut p = prepared(d, Some(sql), sha, upstream, generation, parse, types);
        p.encoding = self.shared.learnt(|l| l.encoding);
        if self.sess.engine.has_masks() {
            p.mask_sql = Some(Arc::from(sql));
        }
        self.keep_prepared(name, Arc::new(p));
    }

    /// Refuses a Parse that can't be read yet, or names a reserved
    /// statement, before its text is read: true when it did.
    fn parse_refused_unread(&mut self, name: &[u8], sql: &str) -> bool {
        if name.starts_with(RESERVED) {
            self.refuse_reserved("PARSE", name);
            return true;
        }
        let ran = self.batch.executed || self.batch.bound;
        if ran && sql.contains('\\') {
            // Code a Bind or Execute before it in this batch ran may have
            // turned `standard_conforming_strings` off, and the server
            // reports that only at its ReadyForQuery: a backslash is then
            // read otherwise than sqlgate reads it.
            self.forget_statement(name);
            self.refuse_unreadable_yet(
                "a backslash",
                "how the server reads backslashes (standard_conforming_strings)",
            );
            return true;
        }
        if ran && !sql.is_ascii() && !self.encoding().is_utf8() {
            // The same for the client encoding (a trigger, an IMMUTABLE
            // function, a domain's CHECK or a cursor's query calling
            // set_config): ASCII reads alike in every encoding sqlgate
            // serves, the rest may not. In a UTF-8 session only a switch
            // to another encoding could do it, and it would read UTF-8
            // names as mojibake, not as other real names.
            self.forget_statement(name);
            self.refuse_unreadable_yet(
                "non-ASCII text in a session whose client encoding is not UTF8",
                "the client encoding",
            );
            return true;
        }
        false
    }

    /// A held statement's own text must not reach the server before it is
    /// approved (parse analysis can run code, see the module docs): the
    /// server gets its neutral text, to describe it, in the session's
    /// encoding as the agent's own text was.
    fn neutral_text(&self, sql: &str) -> Result<Vec<u8>, &'static str> {
        let t = crate::classify::neutral_text(sql)?;
        match self.encoding().encode(&t) {
            Some(b) => Ok(b.into_owned()),
            None => Err("its neutral text does not fit the client encoding"),
        }
    }

    /// Keeps a prepared statement under the agent's `name`, closing upstream
    /// the one it replaces.
    fn keep_prepared(&mut self, name: &[u8], p: Arc<Prepared>) {
        match self.prepared.get_mut(name) {
            Some(slot) => {
                let old = std::mem::replace(slot, p);
                self.close_upstream(b'S', old.upstream);
            }
            None => {
                if self.prepared.len() >= MAX_TRACKED {
                    for (_, old) in self.prepared.drain() {
                        self.shared.queue().orphan(b'S', old.upstream);
                    }
                }
                self.prepared.insert(name.to_vec(), p);
            }
        }
    }

    pub(super) fn bind(&mut self, msg: &[u8]) {
        let (portal, stmt) = match frontend::bind_names(msg) {
            Ok(x) => x,
            Err(e) => return self.reject_undecodable(e, false),
        };
        // Conservative: counted whatever becomes of this Bind.
        self.batch.bound = true;
        if let Some(n) = [portal, stmt].into_iter().find(|n| n.starts_with(RESERVED)) {
            return self.refuse_reserved("BIND", n);
        }
        let Some(mut prepared) = self.prepared.get(stmt).cloned() else {
            return self.refuse_unknown("prepared statement", stmt);
        };
        let Some(again) = self.decide_again(&prepared) else {
            return;
        };
        if !Arc::ptr_eq(&again, &prepared) {
            prepared = again;
            if let Some(slot) = self.prepared.get_mut(stmt) {
                *slot = prepared.clone();
            }
        }
        // Parameters are shown where the text is (the rule shows literals,
        // or the statement is code or identity: `set_config('role', $1)`).
        let shows = prepared.hold.is_some() && prepared.text.is_some();
        let params = shows.then(|| hold::shown_params(msg, self.encoding()));
        let upstream = self.fresh_name(b'p');
        // Result formats and row plan: what rewriting the portal's rows
        // needs (`rows.rs`). The codes were read by the server's rules
        // already: a Bind whose codes don't fit fails there.
        let formats = frontend::bind_result_format_codes(msg)
            .map_or(rows::ResultFormats::Text, rows::ResultFormats::from_wire);
        let row_plan = match &prepared.masks {
            Some(m) => Some(Arc::new(masked_rows(m))),
            None => self.sess.rows.as_ref().and_then(|p| p.plan(None)),
        };
        let (prepared, bind) = if prepared.hold.is_some() {
            self.bind_placeholder(&prepared, upstream);
            (prepared, Some(Arc::from(msg)))
        } else {
            let Some(prepared) = self.bind_real(msg, stmt, prepared, upstream) else {
                return;
            };
            (prepared, None)
        };
        let state = Portal {
            prepared,
            params,
            upstream,
            bind,
            approved: None,
            formats,
            rows: row_plan,
        };
        self.keep_portal(portal, state);
    }

    /// The Bind of a held statement: the server binds an empty placeholder
    /// portal; the client's Bind is kept for the approval.
    fn bind_placeholder(&mut self, prepared: &Prepared, upstream: UpName) {
        // Held: Bind plans the statement (folding IMMUTABLE functions)
        // and converts the parameters (domain CHECKs), and a bound
        // portal can be run by name (`cursor_to_xml`). So the server
        // binds an empty placeholder, whose BindComplete the client
        // gets; the client's Bind waits for the approval.
        if prepared.parse.is_some() {
            // PostgreSQL fails a Bind of a statement it does not have
            // (its Parse failed): so does this one. (The neutral text
            // holds no literal: describing it runs nothing.)
            frontend::write_describe(b'S', prepared.upstream.as_bytes(), &mut self.out);
            self.expect(Expect::Describe(Described::Swallow));
        }
        let empty = self.fresh_name(b's');
        frontend::write_parse(empty.as_bytes(), b"", &mut self.out);
        self.expect(Expect::Complete { swallow: true });
        frontend::write_empty_bind(upstream.as_bytes(), empty.as_bytes(), &mut self.out);
        self.expect(Expect::Complete { swallow: false });
        self.close_upstream(b'S', empty);
    }

    /// The Bind of an allowed statement, under its upstream names (after
    /// the real Parse of a statement held at Parse and allowed now): the
    /// statement it binds, or `None` when it was refused.
    fn bind_real(
        &mut self,
        msg: &[u8],
        stmt: &[u8],
        mut prepared: Arc<Prepared>,
        upstream: UpName,
    ) -> Option<Arc<Prepared>> {
        if let Some(parse) = prepared.parse.clone() {
            // Held at Parse, allowed now (decided again): the server
            // gets the real statement before its first Bind.
            if self.replay_misread(&prepared, self.batch.barrier) {
                return None;
            }
            self.note_names(&prepared.analysis);
            let real = self.fresh_name(b's');
            if let Err(e) = frontend::write_with_names(&parse, 0, &[real.as_bytes()], &mut self.out)
            {
                self.reject_undecodable(e, false);
                return None;
            }
            self.expect(Expect::Complete { swallow: true });
            self.close_upstream(b'S', prepared.upstream);
            let mut now = Prepared::clone(&prepared);
            now.upstream = real;
            now.parse = None;
            prepared = Arc::new(now);
            if let Some(slot) = self.prepared.get_mut(stmt) {
                *slot = prepared.clone();
            }
        }
        // INVARIANT: as for Parse, a new portal name bound to the upstream
        // name of exactly the statement sqlgate looked up.
        let names = [upstream.as_bytes(), prepared.upstream.as_bytes()];
        if let Err(e) = frontend::write_with_names(msg, 0, &names, &mut self.out) {
            self.reject_undecodable(e, false);
            return None;
        }
        self.expect(Expect::Complete { swallow: false });
        Some(prepared)
    }

    /// Keeps a bound portal, closing upstream the one it replaces.
    fn keep_portal(&mut self, portal: &[u8], state: Portal) {
        match self.portals.get_mut(portal) {
            Some(slot) => {
                let old = std::mem::replace(slot, state);
                self.close_upstream(b'P', old.upstream);
            }
            None => {
                if self.portals.len() >= MAX_TRACKED {
                    for (_, old) in self.portals.drain() {
                        self.shared.queue().orphan(b'P', old.upstream);
                    }
                }
                self.portals.insert(portal.to_vec(), state);
            }
        }
    }

    /// Decides a Parse's statement from its classification before the
    /// catalog: parameters given a user type (a domain with a CHECK) run
    /// its code when Bind converts them, so the statement does what they
    /// do, read from the catalog now (at a Parse, a Bind after a schema
    /// change, an approval). The decision's `classified` stays the one
    /// without them, for the next time.
    /// `sql`: the statement's text, for the masks (`Prepared::mask_sql`).
    pub(super) fn decide_with_params(
        &self,
        classified: Arc<Analysis>,
        types: &[u32],
        sql: Option<&str>,
    ) -> Decision {
        let catalog = self.sess.catalog.as_deref();
        let pending = self.shared.learnt(|l| l.uncommitted_ddl);
        let effects = catalog.and_then(|c| c.param_type_effects(types));
        let mut d = match effects {
            None => self.sess.engine.decide_classified(
                catalog,
                &self.sess.identity,
                classified.clone(),
                pending,
            ),
            Some((classes, tables)) => {
                let mut a = (*classified).clone();
                for s in &mut a.statements {
                    s.classes = s.classes.union(classes);
                    s.tables.extend(tables.iter().cloned());
                    s.tables.sort();
                    s.tables.dedup();
                }
                self.sess.engine.decide_classified(
                    catalog,
                    &self.sess.identity,
                    Arc::new(a),
                    pending,
                )
            }
        };
        d.classified = classified;
        if let Some(sql) = sql {
            self.sess.engine.apply_masks(
                &self.sess.identity,
                sql,
                self.sess.catalog.as_deref(),
                self.encoding().is_utf8(),
                &mut d,
            );
        }
        d
    }

    /// `prepared` decided again if the schema changed since its decision
    /// (as the server plans again against the new definitions): the same
    /// `Arc` when nothing moved, `None` when it is now denied (refused).
    fn decide_again(&mut self, prepared: &Arc<Prepared>) -> Option<Arc<Prepared>> {
        let Some(c) = &self.sess.catalog else {
            return Some(prepared.clone());
        };
        let generation = c.generation();
        let reaches =
            |s: &crate::classify::StatementInfo| !s.tables.is_empty() || s.pending.is_some();
        if generation == prepared.generation || !prepared.classified.statements.iter().any(reaches)
        {
            return Some(prepared.clone());
        }
        let d = self.decide_with_params(
            prepared.classified.clone(),
            &prepared.param_types,
            prepared.mask_sql.as_deref(),
        );
        count_verdicts(&d.verdicts);
        if d.blocking().is_some() && d.first_deny().is_some() {
            self.refuse(&d, &prepared.sql_sha256, false);
            return None;
        }
        Some(Arc::new(prepared_again(prepared, d, generation)))
    }

    /// The portal an Execute names, its statement decided again if the
    /// schema changed since it was bound; `None`: refused (the agent was told).
    fn executed_portal<'m>(&mut self, msg: &'m [u8]) -> Option<Executed<'m>> {
        let portal = match frontend::execute_message(msg) {
            Ok((portal, _)) => portal,
            Err(e) => {
                self.reject_undecodable(e, false);
                return None;
            }
        };
        if portal.starts_with(RESERVED) {
            self.refuse_reserved("EXECUTE", portal);
            return None;
        }
        let Some(pt) = self.portals.get(portal) else {
            self.refuse_unknown("portal", portal);
            return None;
        };
        let mut p = pt.prepared.clone();
        let upstream = pt.upstream;
        let (bind, approved) = (pt.bind.clone(), pt.approved.clone());
        let row_plan = pt.rows.clone();
        if bind.is_none() && approved.is_none() {
            // A portal bound before a schema change runs the new
            // definitions (a function's new body): decided again.
            let again = self.decide_again(&p)?;
            if !Arc::ptr_eq(&again, &p) {
                p = again;
                if let Some(pt) = self.portals.get_mut(portal) {
                    pt.prepared = p.clone();
                }
            }
        }
        Some(Executed {
            portal,
            prepared: p,
            upstream,
            bind,
            approved,
            rows: row_plan,
        })
    }

    pub(super) fn execute(&mut self, msg: &[u8]) -> Step {
        // Before this Execute's own statement counts (a held DDL statement
        // is a barrier itself, for what follows it).
        let barrier_before = self.batch.barrier;
        let Some(Executed {
            portal,
            prepared: p,
            upstream,
            bind,
            approved,
            rows: row_plan,
        }) = self.executed_portal(msg)
        else {
            return Step::Next;
        };
        // Decided again, the statement may be masked otherwise than when
        // it was bound.
        let row_plan = match &p.masks {
            Some(m) => Some(Arc::new(masked_rows(m))),
            None if self.sess.engine.has_masks() => None,
            None => row_plan,
        };
        self.after_copy = p
            .analysis
            .statements
            .first()
            .is_some_and(|s| s.command == "COPY");
        if self.after_copy {
            self.copy += 1;
        }
        let info = p.analysis.statements.first();
        self.batch.executed = true;
        if info.is_some_and(|i| self.may_change_settings(i)) {
            self.batch.barrier = true;
            self.batch.unsettled = true;
        }
        if let Some((v, _)) = &p.hold {
            let v = v.clone();
            return self.execute_held(msg, portal, &p, v, bind, upstream, barrier_before);
        }
        let renamed = match frontend::with_names(msg, 0, &[upstream.as_bytes()]) {
            Ok(m) => m,
            Err(e) => {
                self.reject_undecodable(e, false);
                return Step::Next;
            }
        };
        if self.stale_cursor(&p.analysis) {
            self.refuse_stale_cursor(false);
            return Step::Next;
        }
        if let Some(note) = approved {
            self.execute_more(renamed, &p, note, row_plan);
            return Step::Next;
        }
        let mut ev = self.sess.ledger.event(
            &p.analysis,
            0,
            &p.sql_sha256,
            &p.rule,
            Action::Allow,
            Outcome::Ok,
        );
        ev.masked = p.masks.clone();
        let limit = p.max_rows.filter(|_| info.is_some_and(guard::counts));
        let pending = guard::Pending {
            msg: renamed,
            events: vec![(ev, limit)],
            simple: false,
            rows: row_plan,
        };
        if info.is_some_and(guard::commits) && self.guarding() {
            return Step::Guard(guard::Point::Commit(pending));
        }
        self.batch.guarded |= limit.is_some();
        self.forward(pending, None);
        Step::Next
    }

    /// An Execute of a held statement: refused if it would be misread,
    /// else held with what must go before it once approved.
    #[allow(clippy::too_many_arguments)]
    fn execute_held(
        &mut self,
        msg: &[u8],
        portal: &[u8],
        p: &Arc<Prepared>,
        v: Verdict,
        bind: Option<Arc<[u8]>>,
        upstream: UpName,
        barrier_before: bool,
    ) -> Step {
        if self.replay_misread(p, barrier_before) {
            return Step::Next;
        }
        // A placeholder portal (held at Bind) needs its real Parse and
        // Bind first; a real one (held since, decided again) does not.
        let prelude = match bind {
            Some(bind) => match self.prelude(portal, p, &bind, upstream) {
                Some(pre) => Some(pre),
                None => {
                    self.reject_undecodable(frontend::DecodeError::Truncated, false);
                    return Step::Next;
                }
            },
            None => None,
        };
        let real = prelude.as_ref().map_or(upstream, |pre| pre.real);
        let renamed = match frontend::with_names(msg, 0, &[real.as_bytes()]) {
            Ok(m) => m,
            Err(e) => {
                self.reject_undecodable(e, false);
                return Step::Next;
            }
        };
        let pt = self.portals.get(portal);
        let (params, rows) = (
            pt.and_then(|pt| pt.params.clone()),
            pt.and_then(|pt| pt.rows.clone()),
        );
        Step::Hold(Box::new(Held {
            msg: renamed,
            analysis: p.analysis.clone(),
            verdicts: vec![v],
            sha: p.sql_sha256.clone(),
            simple: false,
            params,
            text: p.text.clone(),
            prelude,
            classified: Some((p.classified.clone(), p.param_types.clone())),
            definitions: self.sess.catalog.as_ref().map_or(0, |c| c.definitions()),
            rows,
            masks: p.masks.clone().map(|m| Arc::from([Some(m)])),
            mask_sql: p.mask_sql.clone(),
        }))
    }

    /// The rest of an approved portal's rows: the same execution, unless
    /// the schema changed since (it would run new definitions nobody
    /// approved): then refused, as for a cursor.
    fn execute_more(
        &mut self,
        renamed: Vec<u8>,
        p: &Prepared,
        note: Arc<ApprovalNote>,
        rows: Option<Arc<crate::session::rows::RowPlan>>,
    ) {
        let moved = self
            .sess
            .catalog
            .as_ref()
            .is_some_and(|c| c.generation() != p.generation);
        if moved {
            self.refuse_stale_cursor(false);
            return;
        }
        let v = p.hold.as_ref().map(|(v, _)| v);
        let (rule, action) = v.map_or((p.rule.clone(), Action::Allow), |v| {
            (v.rule.clone(), v.action)
        });
        let mut ev =
            self.sess
                .ledger
                .event(&p.analysis, 0, &p.sql_sha256, &rule, action, Outcome::Ok);
        ev.approval = Some(note);
        let pending = guard::Pending {
            msg: renamed,
            events: vec![(ev, None)],
            simple: false,
            rows,
        };
        self.forward(pending, None);
    }

    /// Describe (`D`) and Close (`C`): harmless, but they must name what the
    /// server knows, so they are renamed to the upstream names too.
    pub(super) fn describe_or_close(&mut self, tag: u8, msg: &[u8]) {
        let Ok((kind, name)) = frontend::target(msg) else {
            // Malformed: the server answers it with its own protocol error.
            self.out.extend_from_slice(msg);
            return;
        };
        if name.starts_with(RESERVED) {
            return self.refuse_reserved(if tag == b'C' { "CLOSE" } else { "DESCRIBE" }, name);
        }
        if tag == b'D' {
            match self.describe_held(kind, name) {
                Some(Ok(())) => return,
                Some(Err(())) => return self.refuse_describe(),
                None => {}
            }
        }
        let upstream = match (tag, kind) {
            (b'C', b'S') => self.prepared.remove(name).map(|p| p.upstream),
            (b'C', b'P') => self.portals.remove(name).map(|p| p.upstream),
            (_, b'S') => self.prepared.get(name).map(|p| p.upstream),
            (_, b'P') => self.portals.get(name).map(|p| p.upstream),
            _ => None,
        };
        if tag == b'C' {
            // The client's own Close: its CloseComplete is passed on; if the
            // server skips it, the forgotten upstream name is closed later.
            self.expect(Expect::Close {
                swallow: false,
                orphan: upstream.map(|u| (kind, u)),
            });
        } else {
            self.expect(Expect::Describe(Described::Pass));
        }
        let written = upstream.is_some_and(|u| {
            frontend::write_with_names(msg, 1, &[u.as_bytes()], &mut self.out).is_ok()
        });
        if !written {
            // A name sqlgate never made (SQL `PREPARE`, `DECLARE`): the
            // server describes or closes it, or answers that it does not exist.
            self.out.extend_from_slice(msg);
        }
    }

    /// A Describe of a held statement or portal: `None` when it is not one
    /// (it goes upstream as any Describe). A held portal is a placeholder
    /// upstream, so it is described through its statement's neutral text
    /// (`Some(Ok)`). Where the server has the real statement instead (it
    /// was allowed at Parse and is held since, decided again at Bind), a
    /// Describe could make the server analyse it again, which runs its
    /// literals' input functions: refused (`Some(Err)`).
    fn describe_held(&mut self, kind: u8, name: &[u8]) -> Option<Result<(), ()>> {
        let (prepared, formats) = match kind {
            b'S' => (self.prepared.get(name)?.clone(), None),
            b'P' => {
                let pt = self.portals.get(name)?;
                pt.bind.as_ref()?;
                (pt.prepared.clone(), Some(pt.formats.clone()))
            }
            _ => return None,
        };
        if prepared.hold.is_none() && formats.is_none() {
            return None;
        }
        if prepared.parse.is_none() {
            return Some(Err(()));
        }
        // A statement: its neutral text describes like the statement.
        self.expect(Expect::Describe(Described::Portal(formats?)));
        frontend::write_describe(b'S', prepared.upstream.as_bytes(), &mut self.out);
        Some(Ok(()))
    }

    /// What goes upstream before a held portal's Execute once it is
    /// approved: the statement's real Parse (if the server has only its
    /// neutral text) and the client's Bind, under new names.
    fn prelude(
        &mut self,
        portal: &[u8],
        p: &Prepared,
        bind: &[u8],
        placeholder: UpName,
    ) -> Option<Prelude> {
        let mut msgs = BytesMut::new();
        // First, whether the placeholder is still there: if the server
        // skipped its Bind (an earlier error in its batch) or dropped it
        // (transaction end), PostgreSQL would not run this portal either,
        // and the failing Describe makes it skip what follows.
        frontend::write_describe(b'P', placeholder.as_bytes(), &mut msgs);
        let mut completes = 0;
        let mut orphans = vec![(b'P', placeholder)];
        let stmt = match &p.parse {
            Some(parse) => {
                let s = self.fresh_name(b's');
                frontend::write_with_names(parse, 0, &[s.as_bytes()], &mut msgs).ok()?;
                completes += 1;
                orphans.push((b'S', s));
                s
            }
            None => p.upstream,
        };
        let real = self.fresh_name(b'p');
        frontend::write_with_names(bind, 0, &[real.as_bytes(), stmt.as_bytes()], &mut msgs).ok()?;
        completes += 1;
        Some(Prelude {
            msgs,
            completes,
            portal: portal.to_vec(),
            real,
            orphans,
        })
    }

    /// Sends an approved held portal's prelude (its answers swallowed: the
    /// client had the placeholders'), and makes the portal the real one.
    pub(super) fn send_prelude(&mut self, pre: Prelude, note: Arc<ApprovalNote>) {
        self.expect(Expect::Describe(Described::Swallow));
        for _ in 0..pre.completes {
            self.expect(Expect::Complete { swallow: true });
        }
        self.out.extend_from_slice(&pre.msgs);
        for (kind, name) in pre.orphans {
            self.orphan(kind, name);
        }
        if let Some(pt) = self.portals.get_mut(&pre.portal[..]) {
            pt.upstream = pre.real;
            pt.bind = None;
            pt.approved = Some(note);
        }
    }

    fn refuse_describe(&mut self) {
        let report = Report::new(
            Severity::Error,
            sqlstate::FEATURE_NOT_SUPPORTED,
            "sqlgate: this prepared statement needs approval since it was prepared (the schema changed), and the server cannot describe it without reading it again: prepare it again",
        )
        .encode();
        self.audit_unvettable("DESCRIBE (held since prepared)");
        self.stage_denial(report, false);
    }

    /// A refused Parse leaves no statement of that name, as a failed one
    /// leaves none on the server (see the module docs): a later Bind of it
    /// must not reach the statement it replaced.
    fn forget_statement(&mut self, name: &[u8]) {
        if let Some(old) = self.prepared.remove(name) {
            self.orphan(b'S', old.upstream);
        }
    }

    fn refuse_unreadable_yet(&mut self, what: &str, setting: &str) {
        let msg = format!(
            "sqlgate: a statement with {what} cannot be prepared after a Bind or Execute in the same batch: what ran may have changed {setting}, which the server reports only at Sync"
        );
        let report = Report::new(Severity::Error, sqlstate::FEATURE_NOT_SUPPORTED, &msg)
            .hint("send Sync before this Parse")
            .encode();
        self.audit_unvettable("PARSE (unreadable until Sync)");
        self.stage_denial(report, false);
    }

    /// Refuses the Parse of a held statement whose text cannot be set aside
    /// for the server to describe (`classify::neutral_text`).
    fn refuse_unpreparable(&mut self, why: &str) {
        let msg = format!(
            "sqlgate: this statement needs approval, and it cannot be prepared before approval without the server reading its literals ({why})"
        );
        let report = Report::new(Severity::Error, sqlstate::FEATURE_NOT_SUPPORTED, &msg)
            .hint(
                "pass the values as parameters ($1, $2, …) or send the statement as a simple Query",
            )
            .encode();
        self.audit_unvettable("PARSE (held, literals not set aside)");
        self.stage_denial(report, false);
    }

    /// Refuses a message naming a statement or portal in sqlgate's own
    /// namespace: whatever lives upstream under such a name is sqlgate's.
    fn refuse_reserved(&mut self, message: &str, name: &[u8]) {
        let msg = format!(
            "sqlgate: statement and portal names beginning with `sqlgate.` are reserved for sqlgate; `{}` cannot be used",
            String::from_utf8_lossy(name)
        );
        let report = Report::new(Severity::Error, sqlstate::INSUFFICIENT_PRIVILEGE, &msg)
            .hint("choose another statement or portal name")
            .encode();
        self.audit_unvettable(&format!("{message} (reserved name)"));
        self.stage_denial(report, false);
    }

    /// Refuses a Bind or Execute naming something sqlgate never vetted, with
    /// the SQLSTATE PostgreSQL uses for a name that does not exist.
    fn refuse_unknown(&mut self, what: &str, name: &[u8]) {
        let (code, audit) = if what == "portal" {
            (sqlstate::INVALID_CURSOR_NAME, "EXECUTE (unknown portal)")
        } else {
            (
                sqlstate::INVALID_SQL_STATEMENT_NAME,
                "BIND (unknown statement)",
            )
        };
        let msg = format!(
            "sqlgate: {what} `{}` does not exist or is unknown to sqlgate: only statements prepared with Parse in this session can be bound and executed (run SQL-prepared statements with EXECUTE)",
            String::from_utf8_lossy(name)
        );
        let report = Report::new(Severity::Error, code, &msg).encode();
        self.audit_unvettable(audit);
        self.stage_denial(report, false);
    }
}

/// Whether every approval rule holding the statement shows literals (its
/// parameters go to each rule's approvers).
fn shows_literals(v: &Verdict) -> bool {
    std::iter::once(v)
        .chain(v.also.iter())
        .all(|r| r.approval.as_ref().is_some_and(|a| a.show_literals))
}

/// What sqlgate keeps of a prepared statement, from its decision. Allowed,
/// or needing approval: then the server has the neutral text, and the hold
/// waits for Execute, when the parameters are known.
fn prepared(
    d: Decision,
    sql: Option<&str>,
    sha: Arc<str>,
    upstream: UpName,
    generation: u64,
    parse: Option<Arc<[u8]>>,
    param_types: Arc<[u32]>,
) -> Prepared {
    let blocking = d.blocking();
    let rule = blocking
        .or((!d.verdicts.is_empty()).then_some(0))
        .map_or_else(|| Arc::from(""), |i| d.verdicts[i].rule.clone());
    let hold = blocking.map(|b| (d.verdicts[b].clone(), b));
    // Code (function bodies, DO, rules, triggers, policies) is shown to
    // approvers whatever the rule says about literals.
    let shows = hold
        .as_ref()
        .is_some_and(|(v, _)| shows_literals(v) || d.analysis.statements.iter().any(|s| s.code));
    let max_rows = d.verdicts.first().and_then(|v| v.max_rows);
    Prepared {
        masks: d.mask_plan(0),
        mask_sql: None,
        hold,
        max_rows,
        text: sql.filter(|_| shows).map(Arc::from),
        analysis: d.analysis,
        rule,
        sql_sha256: sha,
        upstream,
        classified: d.classified,
        generation,
        parse,
        param_types,
        encoding: 0,
    }
}

impl ClientSide<'_> {
    /// Refuses to send a held statement's own Parse (and its Bind) upstream
    /// when the server would read them otherwise than sqlgate did: the
    /// client encoding changed since its Parse was read, or a statement
    /// before it in this batch may have changed it (reported only at Sync).
    /// What was decided, and shown to approvers, is what the text read then.
    fn replay_misread(&mut self, p: &Prepared, barrier_before: bool) -> bool {
        if p.encoding == self.shared.learnt(|l| l.encoding) && !barrier_before {
            return false;
        }
        let report = Report::new(
            Severity::Error,
            sqlstate::FEATURE_NOT_SUPPORTED,
            "sqlgate: the client encoding may have changed since this statement was prepared, so the server would read its text otherwise than it was decided on; it was not run: prepare it again (after Sync)",
        )
        .encode();
        self.audit_unvettable("EXECUTE (prepared under another client encoding)");
        self.stage_denial(report, false);
        true
    }
}

/// `old` decided again: same statement upstream, the new verdict.
fn prepared_again(old: &Prepared, d: Decision, generation: u64) -> Prepared {
    let mut p = prepared(
        d,
        None,
        old.sql_sha256.clone(),
        old.upstream,
        generation,
        old.parse.clone(),
        old.param_types.clone(),
    );
    // The text is there only if Parse kept it (its rule showed literals).
    p.text = old.text.clone();
    p.encoding = old.encoding;
    p.mask_sql = old.mask_sql.clone();
    p
}

/// What an Execute runs: its portal's name and what the portal holds.
struct Executed<'m> {
    portal: &'m [u8],
    prepared: Arc<Prepared>,
    upstream: UpName,
    bind: Option<Arc<[u8]>>,
    approved: Option<Arc<ApprovalNote>>,
    rows: Option<Arc<crate::session::rows::RowPlan>>,
}

/// The row plan of a masked statement executed in the extended protocol:
/// its column types are not known here (no RowDescription comes with an
/// Execute), so every masked column's values become NULL, valid for any
/// type.
fn masked_rows(m: &crate::session::mask::MaskPlan) -> crate::session::rows::RowPlan {
    m.row_plan(&|_| false)
}
