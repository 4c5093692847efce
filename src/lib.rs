//! sqlgate — a database wire-protocol firewall (tour written with the proxy).
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
