//! Client-side commands of the `sqlgate` binary (they talk to a running sqlgate).
pub mod approvals;
pub mod audit_tools;
