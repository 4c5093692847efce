//! The PostgreSQL listener: accept, log the agent in, log in upstream, relay.

pub mod cancel;
mod relay;
mod startup;
pub(crate) mod upstream;

use crate::audit::{Event, SessionInfo};
use crate::config;
use crate::engine::Engine;
use crate::policy::Identity;
use crate::proxy::stream::Stream;
use crate::session::cancel::HoldSignal;
use sqlgate_postgres::backend;
use sqlgate_postgres::sqlstate;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;

/// How long an agent has to finish TLS and authentication. Short, because a
/// connection holds one of the `max_connections` permits (and one of its
/// address's `max_prelogin_per_address` places) while it logs in.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything one listener's connections share.
pub struct Listener {
    pub engine: Arc<Engine>,
    pub config: config::Listener,
    /// Its address as configured, for the audit records.
    pub listen_name: Arc<str>,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub tls_required: bool,
    pub upstream_tls: Arc<rustls::ClientConfig>,
    pub cancels: cancel::Registry,
    pub max_message: usize,
    pub keepalive: Duration,
}

pub async fn handle(
    l: Arc<Listener>,
    tcp: TcpStream,
    peer: SocketAddr,
    prelogin: crate::proxy::prelogin::Slot,
    shutdown: watch::Receiver<bool>,
) {
    let _ = tcp.set_nodelay(true);
    let login = tokio::time::timeout(LOGIN_TIMEOUT, startup::handshake(tcp, peer, &l)).await;
    // Logged in (or not, and done): the address's place is free again.
    drop(prelogin);
    let accepted = match login {
        Ok(Ok(startup::Handshake::Session(a))) => a,
        Ok(Ok(startup::Handshake::Done)) => return,
        Ok(Err(e)) => {
            tracing::debug!(%peer, "connection ended during start-up: {e}");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "login timed out");
            return;
        }
    };
    let startup::Accepted {
        mut stream,
        agent,
        identity,
        database,
        params,
    } = *accepted;
    // The last one, as PostgreSQL takes it when a name comes twice.
    let login_path: Arc<str> = params
        .iter()
        .rev()
        .find(|(k, _)| k.eq_ignore_ascii_case("search_path"))
        .map_or("", |(_, v)| v.as_str())
        .into();

    let Some(connected) = connect_upstream(&l, &mut stream, &params).await else {
        return;
    };
    let up = &l.config.upstream;

    let held = Arc::new(HoldSignal::default());
    let (pid, key, _registration) = l.cancels.register(|key| cancel::Target {
        held: held.clone(),
        key,
        upstream: up.clone(),
        upstream_pid: connected.pid,
        upstream_key: connected.key,
    });
    let mut hello = bytes::BytesMut::from(&connected.greeting[..]);
    hello.extend_from_slice(&backend::backend_key_data_message(pid, key));
    hello.extend_from_slice(&backend::ready_for_query(connected.status));
    if stream.write_all(&hello).await.is_err() {
        return;
    }

    let info = Arc::new(SessionInfo {
        id: session_id(),
        agent,
        client: peer.to_string(),
        database,
        protocol: crate::config::Protocol::Postgres,
        listener: l.listen_name.clone(),
    });
    l.engine
        .audit
        .record(Event::SessionStart(info.clone(), SystemTime::now()));
    tracing::info!(session = %info.id, agent = %info.agent, %peer, "session started");
    let sess = session(&l, info.clone(), identity, login_path, &connected, held);
    let (_end, statements) =
        relay::run(&sess, stream, connected.stream, connected.status, shutdown).await;
    l.engine.audit.record(Event::SessionEnd(
        info.clone(),
        SystemTime::now(),
        statements,
    ));
    tracing::info!(session = %info.id, statements, "session ended");
}

/// sqlgate's own login to the database for an agent's session; `None`
/// when it failed (the agent was told).
async fn connect_upstream(
    l: &Listener,
    stream: &mut Stream,
    params: &[(String, String)],
) -> Option<upstream::Connected> {
    let up = &l.config.upstream;
    let login = upstream::connect(up, l.config.upstream_tls, &l.upstream_tls, params);
    // The upstream login has its own deadline: a database that never answers
    // must not hold the agent until TCP gives up.
    match tokio::time::timeout(LOGIN_TIMEOUT, login)
        .await
        .unwrap_or_else(|_| Err(upstream::UpstreamError::TimedOut(LOGIN_TIMEOUT)))
    {
        Ok(c) => Some(c),
        Err(e) => {
            // The agent learns that the database is unavailable, not why
            // sqlgate's own login failed (that may name its credentials).
            tracing::error!(upstream = ?up, "upstream login failed: {e}");
            startup::fatal(
                stream,
                sqlstate::CONNECTION_FAILURE,
                "sqlgate could not connect to the database; see sqlgate's log",
            )
            .await;
            None
        }
    }
}

/// The relay's session for an agent logged in as `identity`.
fn session(
    l: &Listener,
    info: Arc<SessionInfo>,
    identity: Identity,
    login_path: Arc<str>,
    connected: &upstream::Connected,
    held: Arc<HoldSignal>,
) -> relay::Session {
    relay::Session {
        engine: l.engine.clone(),
        info: info.clone(),
        identity,
        max_message: l.max_message,
        keepalive: l.keepalive,
        cancel: held,
        catalog: l.engine.catalog(&info.database).cloned(),
        // What this session started with: a later `ALTER DATABASE … SET
        // search_path` is for later sessions.
        start_path: if login_path.is_empty() {
            l.engine
                .catalog(&info.database)
                .and_then(|c| c.search_path())
                .map(Arc::from)
        } else {
            Some(login_path.clone())
        },
        login_path,
        encoding: connected.encoding,
        ledger: crate::session::Ledger::new(l.engine.audit.clone(), info.clone()),
        rows: crate::session::rows::configured(),
    }
}

/// Why a server setting makes sqlgate's reading of SQL unreliable, if it does.
///
/// The classifier lexes SQL as PostgreSQL does with `standard_conforming_strings
/// = on` and UTF-8 text. Statements that change these are refused by the
/// classifier, but a setting can also change outside any statement sqlgate
/// sees (`ALTER ROLE … SET`, a SECURITY DEFINER function calling set_config);
/// the server reports every change in a ParameterStatus message, so that is
/// where it is caught: at login, and at any moment of a session.
pub(crate) fn unsafe_setting(name: &[u8], value: &[u8]) -> Option<String> {
    let v = String::from_utf8_lossy(value);
    match name {
        b"standard_conforming_strings" if !v.eq_ignore_ascii_case("on") => Some(format!(
            "the database reports standard_conforming_strings = {v}; sqlgate reads SQL only with it on"
        )),
        b"client_encoding" => crate::encoding::refusal(&v)
            .map(|why| format!("the database reports client_encoding = {v}: {why}")),
        _ => None,
    }
}

/// The encoding a ParameterStatus `client_encoding` names (one
/// `unsafe_setting` let through: known and readable).
pub(crate) fn reported_encoding(value: &[u8]) -> &'static crate::encoding::Encoding {
    std::str::from_utf8(value)
        .ok()
        .and_then(crate::encoding::lookup)
        .unwrap_or(crate::encoding::utf8())
}

fn session_id() -> String {
    let mut b = [0u8; 8];
    rand::fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}
