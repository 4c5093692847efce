//! sqlgate — a database wire-protocol firewall.
//!
//! An agent connects to sqlgate instead of its database. sqlgate speaks the
//! database's wire protocol to it, reads every statement as the server will,
//! decides it by the rules, forwards, refuses or holds it for a human's
//! approval, and writes a hash-chained, signed record of each.
//!
//! # One statement, from the socket to its audit record
//!
//! 1. **Accept.** `main.rs` (`serve`) binds the listeners and starts the
//!    session threads ([`proxy::workers`]: one single-threaded runtime per
//!    CPU). [`proxy::serve`] accepts, takes a connection permit and a
//!    pre-login slot ([`proxy::prelogin`]), and hands the socket to its
//!    protocol's front end: [`proxy::postgres::handle`].
//! 2. **Log in.** [`proxy::postgres::startup`] reads the startup packet
//!    (TLS first if asked, [`proxy::tls`]), and checks the agent's password
//!    by SCRAM against [`auth::Agents`] (unknown names fail like a wrong
//!    password). [`proxy::postgres::upstream`] logs in to the real database
//!    with sqlgate's own credentials. The session starts: a
//!    `session_start` record.
//! 3. **Frame.** The relay (`proxy/postgres/relay/`) runs the two directions
//!    of the session in one task. Each reads its socket through a
//!    [`proxy::frames::FrameReader`], which cuts the bytes into messages
//!    (`sqlgate_postgres::frame`) without copying them.
//! 4. **Read and decide.** For a Query, Parse, Bind, Execute or
//!    FunctionCall the client direction (`relay/mod.rs`, the extended
//!    protocol in `relay/extended.rs`) decodes the text in the session's
//!    client encoding ([`encoding`]) and asks the [`engine`]:
//!    [`classify`] reads it with PostgreSQL's own parser (pg_query) into
//!    statements with classes and tables, [`catalog`] places the functions,
//!    views and triggers it reaches, and [`policy`] turns each statement into
//!    a [`policy::Verdict`] (allow, deny, require approval, with the rule
//!    that decided). The engine never touches bytes; the relay never decides.
//! 5. **Forward, refuse or hold.** Allowed: the agent's original bytes go
//!    upstream, and an entry for what the server owes goes on the
//!    expected-response queue (`relay/expect.rs`). Denied: a failing marker
//!    goes upstream in its place, so the server's transaction state follows,
//!    and the refusal ([`session::Refusal`]) is recorded before it is
//!    answered. Held (`relay/hold.rs`, [`session::hold`]): one [`approval`]
//!    request per rule, sent to every channel (webhook, Slack, Teams, the
//!    page, the API); keepalives keep the upstream transaction alive until a
//!    decision, a cancel ([`proxy::postgres::cancel`] routes it,
//!    [`session::cancel`] withdraws) or a timeout. The row guard
//!    (`relay/guard.rs`) holds a transaction whose writes passed a rule's
//!    `max_rows`.
//! 6. **Answer.** The server direction (`relay/responses.rs`) hands every
//!    message of the server's to the queue, which says what becomes of it
//!    (forward, drop sqlgate's own, swap in a denial's error, end the
//!    session if the two sides disagree) and which statements it completed.
//! 7. **Record.** Completed statements go through the session's
//!    [`session::Ledger`] (which counts every record) to the [`audit`] log:
//!    a writer thread serializes, hash-chains and writes them with group
//!    commit, signs checkpoints, and fsyncs before an answer when that must
//!    be (`durability = "strict"`, approved statements). `sqlgate audit`
//!    ([`cli`]) verifies, searches, exports and reports.
//!
//! Beside the path: [`admin`] (the HTTP API for approvals, callbacks, the
//! approval page, `/metrics`, `/healthz`), [`config`] (the TOML file,
//! validated once), [`safe_text`] (what of an agent's text may be shown).
//!
//! The README says what users see; each module's own docs say why it is
//! shaped as it is.
pub mod admin;
pub mod approval;
pub mod audit;
pub mod auth;
pub mod catalog;
pub mod classify;
pub mod cli;
pub mod config;
pub mod encoding;
pub mod engine;
pub mod policy;
pub mod proxy;
pub mod safe_text;
pub mod session;
