//! sqlgate — a database wire-protocol firewall (tour written with the proxy).
pub mod classify;
pub mod policy;
