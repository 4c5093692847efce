//! What a session does that does not depend on its wire: the statement
//! ledger (every statement record, written and counted in one place), the
//! shared parts of holding for approval, the refusals an agent is told,
//! and the plans that rewrite result rows.
//! The PostgreSQL relay uses it today, the MySQL relay next; each keeps
//! only its wire's work (framing, the expected-response queue, errors in
//! its own codes).

pub mod cancel;
pub mod hold;
pub mod ledger;
pub mod mask;
pub mod refusal;
pub mod rows;

pub use ledger::Ledger;
pub use refusal::{Refusal, Why};
