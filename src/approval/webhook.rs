//! Webhook channel (to be written).
use super::Approvals;
use crate::config::Webhook;
use axum::Router;

pub async fn run(_w: Webhook, _public_url: Option<String>, _approvals: Approvals) {}

pub fn routes(_w: Vec<Webhook>, _approvals: Approvals) -> Router {
    Router::new()
}
