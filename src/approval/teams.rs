//! Microsoft Teams channel (to be written).
use super::Approvals;
use crate::config::Teams;

pub async fn run(_t: Teams, _public_url: Option<String>, _approvals: Approvals) {}
