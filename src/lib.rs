//! sqlgate — a database wire-protocol firewall (tour written with the proxy).
pub mod auth;
pub mod classify;
pub mod config;
pub mod policy;
