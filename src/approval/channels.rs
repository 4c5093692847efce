//! Starting the configured approval channels and mounting their endpoints.
//!
//! Each channel is a task that listens to the approval service's notices
//! (new request, decided request) and talks to the outside; decisions come
//! back through the admin listener's routes and end in `Approvals::vote`.

use super::Approvals;
use crate::config::Channels;
use axum::Router;

/// Spawns one task per configured channel (inside the runtime).
pub fn start(channels: &Channels, approvals: &Approvals) {
    let public_url = channels.public_url.clone();
    for w in &channels.webhooks {
        tokio::spawn(super::webhook::run(
            w.clone(),
            public_url.clone(),
            approvals.clone(),
        ));
    }
    if let Some(s) = &channels.slack {
        tokio::spawn(super::slack::run(
            s.clone(),
            public_url.clone(),
            approvals.clone(),
        ));
    }
    if let Some(t) = &channels.teams {
        tokio::spawn(super::teams::run(
            t.clone(),
            public_url.clone(),
            approvals.clone(),
        ));
    }
}

/// The endpoints the channels add to the admin listener.
pub fn routes(channels: &Channels, approvals: &Approvals) -> Router {
    Router::new()
        .merge(super::webhook::routes(
            channels.webhooks.clone(),
            approvals.clone(),
        ))
        .merge(super::slack::routes(
            channels.slack.clone(),
            approvals.clone(),
        ))
        .merge(crate::admin::page::routes(approvals.clone()))
}
