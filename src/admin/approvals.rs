//! `/v1/approvals`: the HTTP face of the approval service. Approvers
//! authenticate with their bearer token; every vote goes through
//! [`Approvals::vote`], so group, quorum and self-approval rules apply here
//! exactly as in every other channel.

use crate::approval::{Approvals, Approver, AuthError, Vote, VoteError};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use std::net::SocketAddr;

pub fn routes(approvals: Approvals) -> Router {
    Router::new()
        .route("/v1/approvals", get(list))
        .route("/v1/approvals/{id}", get(show))
        .route("/v1/approvals/{id}/{verb}", post(vote))
        .route("/v1/page/approvals/{id}/{verb}", post(page_vote))
        .route("/v1/grants", get(grants))
        .route("/v1/grants/{id}/revoke", post(revoke))
        .with_state(approvals)
}

/// An API error: a status and a JSON body `{"error": "..."}`.
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

impl From<VoteError> for ApiError {
    fn from(e: VoteError) -> Self {
        let code = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
        ApiError(code, e.to_string())
    }
}

/// The approver named by the request's bearer token, sent from `peer`.
pub fn approver(
    approvals: &Approvals,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> Result<Approver, ApiError> {
    let token = bearer(headers)
        .ok_or_else(|| ApiError(StatusCode::UNAUTHORIZED, "missing bearer token".into()))?;
    match approvals.authenticate_from(peer.ip(), token) {
        Ok(a) => Ok(a.clone()),
        Err(AuthError::Unknown) => Err(ApiError(StatusCode::UNAUTHORIZED, "unknown token".into())),
        Err(AuthError::Throttled(secs)) => Err(ApiError(
            StatusCode::TOO_MANY_REQUESTS,
            format!("too many unknown tokens from this address; retry in {secs} s"),
        )),
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// The approver of `headers`; or, when the request's network is throttled
/// for failed tokens, `None`, to be answered with [`accepted`]: a call that
/// only takes rights away (`act`: revoking a grant) is then carried out if
/// the token is an approver's, after the answer, and answered the same way
/// either way (202), so it tells a guesser nothing while a neighbour's
/// failed guesses can't keep an approver from cutting a standing grant
/// short (review H, H2). At most [`crate::approval::AUTH_FAILURES`] such
/// calls per network and minute, with tokens of at least
/// [`crate::approval::MIN_TOKEN_CHARS`] characters (round 23, F2: an agent
/// holding a grant sees whether a batch of guesses revoked it). Anything
/// that gives rights stays refused (429) for the minute.
fn approver_or_blindly(
    a: &Approvals,
    peer: SocketAddr,
    headers: &HeaderMap,
    act: impl FnOnce(&Approvals, &Approver) + Send + 'static,
) -> Result<Option<Approver>, ApiError> {
    match approver(a, peer, headers) {
        Ok(who) => Ok(Some(who)),
        Err(e @ ApiError(StatusCode::TOO_MANY_REQUESTS, _)) => {
            // Blind calls are guesses too (their effect shows on the
            // agent's grant): as few per minute as failed tokens, and only
            // with a token of the strength the config asks for.
            if !a.blind_call(peer.ip()) {
                return Err(e);
            }
            let (a, token) = (a.clone(), bearer(headers).unwrap_or("").to_owned());
            tokio::task::spawn_blocking(move || {
                if token.chars().count() < crate::approval::MIN_TOKEN_CHARS {
                    return;
                }
                if let Some(who) = a.authenticate(&token).cloned() {
                    act(&a, &who);
                }
            });
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// The answer to a call [`approver_or_blindly`] took blindly.
fn accepted(what: &str) -> Response {
    let note = format!(
        "this network is throttled for failed tokens: the {what} was carried out if the token is an approver's; check after the minute"
    );
    (
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "status": "accepted", "note": note })),
    )
        .into_response()
}

#[derive(Deserialize)]
struct ListQuery {
    state: Option<String>,
}

async fn list(
    State(a): State<Approvals>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let who = approver(&a, peer, &headers)?;
    let states = [
        "pending",
        "approved",
        "denied",
        "timed_out",
        "withdrawn",
        "all",
    ];
    if let Some(s) = q.state.as_deref().filter(|s| !states.contains(s)) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("unknown state `{s}`; one of {}", states.join(", ")),
        ));
    }
    let v: Vec<_> = a
        .list(q.state.as_deref())
        .iter()
        .filter(|r| r.visible_to(&who))
        .map(|r| r.to_json())
        .collect();
    Ok(Json(serde_json::json!({ "approvals": v })))
}

async fn show(
    State(a): State<Approvals>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let who = approver(&a, peer, &headers)?;
    // Another group's request is not there for this approver (404, as if
    // unknown): its statements and literals are theirs to see.
    let r = a
        .get(&id)
        .filter(|r| r.visible_to(&who))
        .ok_or(VoteError::NotFound(id))?;
    Ok(Json(r.to_json()))
}

/// `GET /v1/grants`: standing grants in force that the caller's groups
/// could have given.
async fn grants(
    State(a): State<Approvals>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let who = approver(&a, peer, &headers)?;
    Ok(Json(serde_json::json!({ "grants": a.grants(&who) })))
}

/// `POST /v1/grants/{id}/revoke`: ends a grant now (404 for one the
/// caller's groups could not have given).
async fn revoke(
    State(a): State<Approvals>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let grant = id.clone();
    let blind = move |a: &Approvals, who: &Approver| {
        let _ = a.revoke(&grant, who);
    };
    let Some(who) = approver_or_blindly(&a, peer, &headers, blind)? else {
        return Ok(accepted("revocation"));
    };
    Ok(Json(a.revoke(&id, &who)?).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    pub reason: Option<String>,
    /// Approve the same statement for the same agent for this long (`15m`).
    pub grant: Option<String>,
}

/// `POST /v1/approvals/{id}/approve` and `/deny`: channel `api`.
async fn vote(
    State(a): State<Approvals>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path((id, verb)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    vote_on(&a, peer, &headers, &id, &verb, &body, "api")
}

/// `POST /v1/page/approvals/{id}/approve|deny`: the approval page's votes
/// (channel `page`). The channel comes from the endpoint, never from a
/// header a script could set.
async fn page_vote(
    State(a): State<Approvals>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path((id, verb)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    vote_on(&a, peer, &headers, &id, &verb, &body, "page")
}

fn vote_on(
    a: &Approvals,
    peer: SocketAddr,
    headers: &HeaderMap,
    id: &str,
    verb: &str,
    body: &[u8],
    channel: &'static str,
) -> Result<Json<serde_json::Value>, ApiError> {
    let approve = match verb {
        "approve" => true,
        "deny" => false,
        _ => {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("no such action `{verb}`; use approve or deny"),
            ))
        }
    };
    decide(a, peer, headers, id, approve, parse_body(body)?, channel)
}

/// The decision body is optional: nothing, `null` or `{}` mean "no reason".
fn parse_body(body: &[u8]) -> Result<Decision, ApiError> {
    let bad = |m: String| ApiError(StatusCode::BAD_REQUEST, m);
    // Not read as "no reason": a body that can't be read is no vote.
    let text = std::str::from_utf8(body)
        .map_err(|_| bad("the body is not UTF-8".into()))?
        .trim();
    if text.is_empty() || text == "null" {
        return Ok(Decision::default());
    }
    let d: Decision = serde_json::from_str(text).map_err(|e| {
        bad(format!(
            "the body must be JSON like {{\"reason\": \"...\"}}: {e}"
        ))
    })?;
    if d.reason.as_ref().is_some_and(|r| r.len() > MAX_REASON) {
        return Err(bad(format!(
            "`reason` is longer than {MAX_REASON} bytes; it goes to the log and the agent"
        )));
    }
    Ok(d)
}

/// A vote's reason is stored in the log and shown to the agent: bounded.
pub const MAX_REASON: usize = 4096;

/// Authenticates, then votes. Shared by the API and the approval page.
pub fn decide(
    a: &Approvals,
    peer: SocketAddr,
    headers: &HeaderMap,
    id: &str,
    approve: bool,
    d: Decision,
    channel: &'static str,
) -> Result<Json<serde_json::Value>, ApiError> {
    let who = approver(a, peer, headers)?;
    let grant = match d.grant.as_deref() {
        None => None,
        Some(_) if !approve => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                "`grant` goes with approve only".into(),
            ))
        }
        Some(g) => Some(
            humantime::parse_duration(g)
                .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("`grant` = `{g}`: {e}")))?,
        ),
    };
    if grant.is_some_and(|g| g > MAX_GRANT) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!(
                "a grant may last at most {}",
                humantime::format_duration(MAX_GRANT)
            ),
        ));
    }
    let r = a.vote(
        id,
        &who,
        Vote {
            approve,
            reason: d.reason.filter(|r| !r.trim().is_empty()),
            channel,
            grant,
        },
    )?;
    Ok(Json(r.to_json()))
}

/// Grants are bounded: a standing approval should expire within a working day.
pub const MAX_GRANT: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
