//! The fast path (`FunctionCall`): libpq's large-object API (`lo_open`,
//! `loread`, `lowrite`, `lo_lseek64`, …) calls functions by OID instead of
//! by SQL. A call is decided as the statement it amounts to,
//! `SELECT pg_catalog.f($1, …)`, under the same function policy as any other
//! call, recorded like a statement, and its original bytes forwarded.
//!
//! Only the large-object functions are resolved, from a fixed table: their
//! OIDs are hand-assigned and have been the same in every PostgreSQL since
//! 9.3, so the name is right on every server version (other built-ins' OIDs
//! are stable only within a major version). What a renamed or replaced
//! built-in would do instead is the catalog's check, as for SQL. Any other
//! OID is refused: nothing else uses the fast path today, and a call sqlgate
//! cannot name cannot be decided.

use super::expect::Expect;
use super::{ClientSide, Step};
use crate::audit::Outcome;
use crate::classify::Class;
use crate::session::ledger::count_verdicts;
use crate::session::ledger::sha256_hex;
use sqlgate_postgres::backend::Report;
use sqlgate_postgres::backend::Severity;
use sqlgate_postgres::frontend;
use sqlgate_postgres::sqlstate;
use std::sync::Arc;
use std::time::Instant;

/// The large-object functions by OID (`pg_proc.dat`), and their argument count.
const LARGE_OBJECT_FUNCTIONS: &[(u32, &str, usize)] = &[
    (715, "lo_create", 1),
    (764, "lo_import", 1),
    (765, "lo_export", 2),
    (767, "lo_import", 2),
    (952, "lo_open", 2),
    (953, "lo_close", 1),
    (954, "loread", 2),
    (955, "lowrite", 2),
    (956, "lo_lseek", 3),
    (957, "lo_creat", 1),
    (958, "lo_tell", 1),
    (964, "lo_unlink", 1),
    (1004, "lo_truncate", 2),
    (3170, "lo_lseek64", 3),
    (3171, "lo_tell64", 1),
    (3172, "lo_truncate64", 2),
    (3457, "lo_from_bytea", 2),
    (3458, "lo_get", 1),
    (3459, "lo_get", 3),
    (3460, "lo_put", 3),
];

/// Functions that overwrite or remove the one large object a call names.
/// In SQL they are `destructive` (`SELECT lo_unlink(oid) FROM
/// pg_largeobject_metadata` removes them all); a fast-path call is one call
/// on one object, as `DELETE … WHERE id = 1` is one row: a `write`.
const ONE_OBJECT: &[&str] = &[
    "lowrite",
    "lo_truncate",
    "lo_truncate64",
    "lo_unlink",
    "lo_put",
];

/// The function a fast-path call of `oid` with `nargs` arguments runs,
/// and the SQL it amounts to.
pub(super) fn as_sql(oid: u32, nargs: usize) -> Option<(&'static str, String)> {
    let &(_, name, arity) = LARGE_OBJECT_FUNCTIONS.iter().find(|f| f.0 == oid)?;
    // The server refuses a call with another argument count.
    if nargs != arity {
        return None;
    }
    let args: Vec<String> = (1..=nargs).map(|i| format!("${i}")).collect();
    Some((
        name,
        format!("SELECT pg_catalog.{name}({})", args.join(", ")),
    ))
}

impl ClientSide<'_> {
    pub(super) fn function_call(&mut self, msg: &[u8]) -> Step {
        let sql = match frontend::function_call(msg) {
            Ok((oid, args)) if !self.in_extended => as_sql(oid, args.len()),
            _ => None,
        };
        let Some((name, sql)) = sql else {
            // Inside an extended-protocol batch, or a function sqlgate cannot name.
            let report = Report::new(
                Severity::Error,
                sqlstate::FEATURE_NOT_SUPPORTED,
                "sqlgate: this fast-path function call (FunctionCall) is not allowed: only the large-object functions can be called this way through sqlgate, outside an extended-protocol batch",
            )
            .hint("call the function from SQL instead, e.g. SELECT f(...)")
            .encode();
            self.audit_unvettable("FUNCTION CALL");
            self.stage_denial(report, !self.in_extended);
            return Step::Next;
        };
        let mut d = self.decide_text(&sql);
        if ONE_OBJECT.contains(&name)
            && d.analysis.statements[0]
                .classes
                .contains(Class::Destructive)
        {
            // Decided again without `destructive`, on what the catalog
            // placed (anything it added, `unparsed` included, stays).
            let mut a = (*d.analysis).clone();
            a.statements[0].classes.remove(Class::Destructive);
            let classified = d.classified.clone();
            d = self
                .sess
                .engine
                .decide_classified(None, &self.sess.identity, Arc::new(a), false);
            d.classified = classified;
        }
        count_verdicts(&d.verdicts);
        let sha = sha256_hex(&sql);
        match (d.blocking(), d.first_deny()) {
            (None, _) => {
                let v = &d.verdicts[0];
                let ev =
                    self.sess
                        .ledger
                        .event(&d.analysis, 0, &sha, &v.rule, v.action, Outcome::Ok);
                self.expect(Expect::Statement(ev, Instant::now(), None, None));
                self.expect(Expect::Ready);
                self.out.extend_from_slice(msg);
            }
            (Some(_), Some(_)) => self.refuse(&d, &sha, true),
            (Some(b), None) => {
                // A fast-path call has no text to show or hold by: the
                // agent is told how to ask for it.
                let v = &d.verdicts[b];
                let msg = format!(
                    "sqlgate: this fast-path call needs approval (rule `{}`: {}), and fast-path calls cannot be held: run it as SQL ({}) to ask for approval",
                    v.rule, v.reason, sql
                );
                let report =
                    Report::new(Severity::Error, sqlstate::INSUFFICIENT_PRIVILEGE, &msg).encode();
                self.audit_denied(&d.analysis, &d.verdicts, b, &sha);
                self.stage_denial(report, true);
            }
        }
        Step::Next
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn large_object_calls_read_as_sql() {
        assert_eq!(
            super::as_sql(952, 2).map(|(_, s)| s).as_deref(),
            Some("SELECT pg_catalog.lo_open($1, $2)")
        );
        assert_eq!(
            super::as_sql(3170, 3).map(|(_, s)| s).as_deref(),
            Some("SELECT pg_catalog.lo_lseek64($1, $2, $3)")
        );
        // Another argument count, or any other function: not named.
        assert_eq!(super::as_sql(952, 3), None);
        assert_eq!(super::as_sql(1299, 0), None); // now()
    }
}
