//! Commands of the `sqlgate` binary beyond `serve`: the approvals client and
//! the offline audit tools.
pub mod approvals;
pub mod audit;
pub mod audit_tools;
