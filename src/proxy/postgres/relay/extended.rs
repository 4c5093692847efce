//! The extended protocol: Parse, Bind, Execute, Describe, Close.
//!
//! sqlgate tracks which statement each client statement name and portal name
//! refers to, but it cannot know for sure whether the server accepted a
//! message: a Parse can fail (duplicate name, syntax error) or be skipped
//! after an earlier error in its batch, and sqlgate's view then drifts from
//! the server's. Drift must never let a statement that needs approval run.
//! So a statement or portal that needs approval never lives upstream under
//! a name the client chose: sqlgate gives it a name of its own
//! (`sqlgate.held.<session nonce>.<n>`, unguessable) and rewrites Bind,
//! Execute, Describe and Close to it. Under the client's names the server
//! only ever holds allowed statements, whatever drift there is. Names
//! sqlgate does not know are refused (fail closed): a Bind to a statement
//! made with SQL `PREPARE`, or an Execute of a portal it never saw bound.
//! (The review that led here reproduced a held DELETE executed after a
//! failed duplicate Parse had made sqlgate's map point at `SELECT 1`.)

use super::*;

/// Names beginning with this are sqlgate's own upstream (held statements,
/// denial markers): an agent may not use them.
const RESERVED: &[u8] = b"sqlgate.";

/// Past this many tracked names a map is cleared; forgotten names are then
/// refused, so the bound costs availability, never safety.
const MAX_TRACKED: usize = 10_000;

impl ClientSide<'_> {
    /// A fresh upstream name for a statement or portal that needs approval.
    fn fresh_name(&mut self) -> Vec<u8> {
        self.next_name += 1;
        format!("{}{}", self.names, self.next_name).into_bytes()
    }

    pub(super) fn parse(&mut self, msg: &[u8]) {
        let (name, sql) = match frontend::parse_message(msg) {
            Ok(x) => x,
            Err(e) => return self.reject_undecodable(e, false),
        };
        if name.starts_with(RESERVED) {
            return self.refuse_reserved("PARSE", name);
        }
        let d = self.sess.engine.decide(&self.sess.identity, sql);
        let sha = sha256_hex(sql);
        count(&d);
        match d.blocking() {
            Some(_) if d.first_deny().is_some() => self.refuse(&d, &sha, false),
            // Allowed, or needing approval: preparing is harmless, so Parse
            // goes through and a hold waits for Execute, when the parameters
            // are known.
            blocking => {
                let rule = blocking
                    .or((!d.verdicts.is_empty()).then_some(0))
                    .map_or_else(|| Arc::from(""), |i| d.verdicts[i].rule.clone());
                let hold = blocking.map(|b| (d.verdicts[b].clone(), b));
                let shows = hold
                    .as_ref()
                    .and_then(|(v, _)| v.approval.as_ref())
                    .is_some_and(|a| a.show_literals);
                let upstream = match hold {
                    None => {
                        self.out.extend_from_slice(msg);
                        None
                    }
                    Some(_) => {
                        let u = self.fresh_name();
                        match frontend::with_names(msg, 0, &[&u]) {
                            Ok(m) => self.out.extend_from_slice(&m),
                            Err(e) => return self.reject_undecodable(e, false),
                        }
                        Some(Arc::from(u))
                    }
                };
                let p = Arc::new(Prepared {
                    hold,
                    text: shows.then(|| Arc::from(sql)),
                    analysis: d.analysis,
                    rule,
                    sql_sha256: sha,
                    upstream,
                });
                if self.prepared.len() >= MAX_TRACKED {
                    self.prepared.clear();
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
        if let Some(n) = [portal, stmt].into_iter().find(|n| n.starts_with(RESERVED)) {
            return self.refuse_reserved("BIND", n);
        }
        let Some(prepared) = self.prepared.get(stmt).cloned() else {
            return self.refuse_unknown("prepared statement", stmt);
        };
        let shows = prepared
            .hold
            .as_ref()
            .and_then(|(v, _)| v.approval.as_ref())
            .is_some_and(|a| a.show_literals);
        let params = shows.then(|| hold::shown_params(msg));
        let upstream = match &prepared.upstream {
            None => {
                self.out.extend_from_slice(msg);
                None
            }
            Some(u) => {
                let up = self.fresh_name();
                match frontend::with_names(msg, 0, &[&up, u]) {
                    Ok(m) => self.out.extend_from_slice(&m),
                    Err(e) => return self.reject_undecodable(e, false),
                }
                Some(Arc::from(up))
            }
        };
        if self.portals.len() >= MAX_TRACKED {
            self.portals.clear();
        }
        let portal_state = Portal {
            prepared,
            params,
            upstream,
        };
        self.portals.insert(portal.to_vec(), portal_state);
    }

    pub(super) fn execute(&mut self, msg: &[u8]) -> Step {
        let portal = match frontend::execute_message(msg) {
            Ok((portal, _)) => portal,
            Err(e) => {
                self.reject_undecodable(e, false);
                return Step::Next;
            }
        };
        if portal.starts_with(RESERVED) {
            self.refuse_reserved("EXECUTE", portal);
            return Step::Next;
        }
        let Some(pt) = self.portals.get(portal) else {
            self.refuse_unknown("portal", portal);
            return Step::Next;
        };
        let p = pt.prepared.clone();
        if let Some((v, _)) = &p.hold {
            // INVARIANT: a portal of a held statement has an upstream name
            // of sqlgate's (see the module docs).
            let renamed = pt
                .upstream
                .as_ref()
                .and_then(|u| frontend::with_names(msg, 0, &[u]).ok());
            let Some(renamed) = renamed else {
                self.refuse_unknown("portal", portal);
                return Step::Next;
            };
            return Step::Hold(Held {
                msg: renamed,
                analysis: p.analysis.clone(),
                verdicts: vec![v.clone()],
                sha: p.sql_sha256.clone(),
                simple: false,
                params: pt.params.clone(),
                text: p.text.clone(),
            });
        }
        let ev = self.event(
            &p.analysis,
            0,
            &p.sql_sha256,
            &p.rule,
            Action::Allow,
            Outcome::Ok,
        );
        self.expect(Expect::Statement(ev, Instant::now()));
        self.out.extend_from_slice(msg);
        Step::Next
    }

    /// Describe (`D`) and Close (`C`): harmless, but they must name what the
    /// server knows, so held statements and portals are renamed here too.
    pub(super) fn describe_or_close(&mut self, tag: u8, msg: &[u8]) {
        let Ok((kind, name)) = frontend::target(msg) else {
            // Malformed: the server answers it with its own protocol error.
            self.out.extend_from_slice(msg);
            return;
        };
        if name.starts_with(RESERVED) {
            return self.refuse_reserved(if tag == b'C' { "CLOSE" } else { "DESCRIBE" }, name);
        }
        let upstream = match kind {
            b'S' if tag == b'C' => self.prepared.remove(name).and_then(|p| p.upstream.clone()),
            b'S' => self.prepared.get(name).and_then(|p| p.upstream.clone()),
            b'P' if tag == b'C' => self.portals.remove(name).and_then(|p| p.upstream),
            b'P' => self.portals.get(name).and_then(|p| p.upstream.clone()),
            _ => None,
        };
        match upstream.and_then(|u| frontend::with_names(msg, 1, &[&u]).ok()) {
            Some(m) => self.out.extend_from_slice(&m),
            None => self.out.extend_from_slice(msg),
        }
    }

    /// Refuses a message naming a statement or portal in sqlgate's own
    /// namespace: whatever lives upstream under such a name is sqlgate's.
    fn refuse_reserved(&mut self, message: &str, name: &[u8]) {
        let msg = format!(
            "sqlgate: statement and portal names beginning with `sqlgate.` are reserved for sqlgate; `{}` cannot be used",
            String::from_utf8_lossy(name)
        );
        let report = Report::new(Severity::Error, "42501", &msg)
            .hint("choose another statement or portal name")
            .encode();
        self.audit_unvettable(&format!("{message} (reserved name)"));
        self.stage_denial(report, false);
    }

    /// Refuses a Bind or Execute naming something sqlgate never vetted, with
    /// the SQLSTATE PostgreSQL uses for a name that does not exist.
    fn refuse_unknown(&mut self, what: &str, name: &[u8]) {
        let (code, audit) = if what == "portal" {
            ("34000", "EXECUTE (unknown portal)")
        } else {
            ("26000", "BIND (unknown statement)")
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
