//! The approval page (to be written).
use crate::approval::Approvals;
use axum::Router;

pub fn routes(_approvals: Approvals) -> Router {
    Router::new()
}
