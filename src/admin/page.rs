//! The approval page: `GET /approvals/{id}`, where a human who followed a
//! link (from Teams, Slack or a webhook consumer) reviews one held statement
//! and approves or denies it.
//!
//! The page is static and public: the server fills nothing into it, so the
//! statement (attacker-controlled SQL) never passes through an HTML template.
//! Its script (`/approvals/app.js`) asks for the approver's bearer token,
//! keeps it in `sessionStorage` (never in a URL or cookie, so there is no
//! CSRF surface), loads the request from `GET /v1/approvals/{id}` and inserts
//! every value with `textContent`. Votes go to
//! `POST /v1/page/approvals/{id}/approve|deny` (the API's vote with channel
//! `page`), so every rule of [`crate::approval::Approvals::vote`] applies
//! unchanged.
//!
//! A strict Content-Security-Policy allows only this origin's script, style
//! and `fetch`, no framing (clickjacking a one-click approval is the classic
//! attack on pages like this), no inline script or style at all.

use crate::approval::Approvals;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

const HTML: &str = include_str!("page.html");
const SCRIPT: &str = include_str!("page.js");
const STYLE: &str = include_str!("page.css");

/// Everything the page may load or call: its own script, style and API.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

pub fn routes(_approvals: Approvals) -> Router {
    // The static segments take precedence over `{id}` in axum's router.
    Router::new()
        .route(
            "/approvals/app.js",
            get(|| serve("text/javascript; charset=utf-8", SCRIPT)),
        )
        .route(
            "/approvals/app.css",
            get(|| serve("text/css; charset=utf-8", STYLE)),
        )
        .route(
            "/approvals/{id}",
            get(|| serve("text/html; charset=utf-8", HTML)),
        )
}

async fn serve(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
}
