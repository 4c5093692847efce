//! Test harness shared by the integration tests: real servers, real clients.
//!
//! Include it from a test file with `mod support;` and use:
//!
//! - [`PgServer`]: a throwaway PostgreSQL on a free loopback port
//!   ([`PgServer::shared`] for one per test binary, [`PgServer::start`] for a
//!   private one with other auth or settings). Each test creates its own
//!   database ([`PgServer::create_database`] / [`PgServer::unique_database`])
//!   so tests stay parallel-safe.
//! - [`Sqlgate`] and [`SqlgateConfig`]: run the `sqlgate` binary under test.
//! - [`gen_tls_cert`], [`free_port`], [`pg_bin`], [`TestDir`].
//!
//! Servers never outlive the test binary: each one gets a small watchdog
//! process that cleans up once the test process is gone (even on SIGKILL),
//! and `scripts/test.sh` sweeps whatever is left after `cargo test`.
//! See `process.rs` for how.
//!
//! Only std is used; the external tools (initdb, pg_ctl, psql, openssl) are
//! installed by `scripts/install-deps.sh`.

// Every test binary compiles this module but uses only part of it.
#![allow(dead_code, unused_imports)]

pub mod fixtures;
mod pg;
mod process;
mod sqlgate;
mod tls;
pub mod wire;

pub use pg::{pg_bin, PgOptions, PgServer, SERVICE_PASSWORD, SERVICE_USER, SUPERUSER};
pub use process::{free_port, TestDir};
pub use sqlgate::{Sqlgate, SqlgateConfig};
pub use tls::gen_tls_cert;
