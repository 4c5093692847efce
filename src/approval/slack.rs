//! Slack channel (to be written).
use super::Approvals;
use crate::config::Slack;
use axum::Router;

pub async fn run(_s: Slack, _public_url: Option<String>, _approvals: Approvals) {}

pub fn routes(_s: Option<Slack>, _approvals: Approvals) -> Router {
    Router::new()
}
