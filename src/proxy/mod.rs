//! Listeners and the per-connection loops that join a protocol crate to the engine.
//!
//! Shutdown: a watch channel carries "stop"; listeners stop accepting, each
//! session finishes what is in flight and closes at its next idle point, and
//! after `shutdown_timeout` whatever is left is cut off.

pub mod frames;
pub mod postgres;
pub mod prelogin;
pub mod stream;
pub mod tls;
pub mod workers;

use crate::config::{Config, Protocol};
use crate::engine::Engine;
use sqlgate_postgres::sqlstate;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

/// Binds every listener (so that errors show before anything is served).
pub async fn bind(cfg: &Config) -> anyhow::Result<Vec<TcpListener>> {
    let mut out = Vec::new();
    for l in &cfg.listeners {
        let s = TcpListener::bind(l.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", l.listen))?;
        out.push(s);
    }
    Ok(out)
}

/// Serves until `shutdown` turns true, then drains.
pub async fn serve(
    cfg: &Config,
    engine: Arc<Engine>,
    sockets: Vec<TcpListener>,
    workers: Arc<workers::Workers>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let upstream_tls = tls::upstream_config();
    let cancels = postgres::cancel::Registry::default();
    let limit = Arc::new(Semaphore::new(cfg.max_connections));
    // One table for all listeners: the cap is per address, whichever port.
    let prelogin = prelogin::PreLogin::new(cfg.max_prelogin_per_address);
    let mut sessions = JoinSet::new();
    let mut accepts = JoinSet::new();
    for (l, socket) in cfg.listeners.iter().zip(sockets) {
        let server_tls = match &l.tls {
            Some(t) => Some(tls::server_config(&t.cert, &t.key)?),
            None => None,
        };
        match l.protocol {
            Protocol::Postgres => {
                let listener = Arc::new(postgres::Listener {
                    engine: engine.clone(),
                    config: l.clone(),
                    listen_name: l.listen.to_string().into(),
                    tls_required: l.tls.as_ref().is_some_and(|t| t.required),
                    tls: server_tls,
                    upstream_tls: upstream_tls.clone(),
                    cancels: cancels.clone(),
                    max_message: cfg.max_message_bytes,
                    keepalive: cfg.approval_keepalive,
                });
                tracing::info!(listen = %l.listen, upstream = ?l.upstream, "postgres listener ready");
                if let Some(c) = engine.catalog(&l.upstream.database) {
                    // The side connection: the catalog snapshot, refreshed
                    // in the background (see `catalog`).
                    tokio::spawn(c.clone().run(l.clone(), upstream_tls.clone()));
                }
                let (limit, shutdown) = (limit.clone(), shutdown.clone());
                accepts.spawn(accept_loop(
                    listener,
                    socket,
                    limit,
                    prelogin.clone(),
                    workers.clone(),
                    shutdown,
                ));
            }
            Protocol::Mysql => anyhow::bail!("protocol `mysql` is not available yet"),
        }
    }
    stopped(&mut shutdown).await;
    tracing::info!("shutting down: no new connections; draining sessions");
    // Each accept loop returns the sessions it started, so that shutdown can
    // wait for every one of them.
    while let Some(r) = accepts.join_next().await {
        if let Ok(mut set) = r {
            sessions.spawn(async move { while set.join_next().await.is_some() {} });
        }
    }
    let drained = tokio::time::timeout(cfg.shutdown_timeout, async {
        while sessions.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("shutdown timeout reached; closing the remaining sessions");
        sessions.shutdown().await;
    }
    Ok(())
}

async fn accept_loop(
    l: Arc<postgres::Listener>,
    socket: TcpListener,
    limit: Arc<Semaphore>,
    prelogin: Arc<prelogin::PreLogin>,
    workers: Arc<workers::Workers>,
    mut shutdown: watch::Receiver<bool>,
) -> JoinSet<()> {
    let mut set = JoinSet::new();
    let too_many = too_many_logins();
    loop {
        // The connection limit is taken before accept, so excess clients wait
        // in the kernel's backlog instead of being accepted and dropped.
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = stopped(&mut shutdown) => break,
        };
        let (tcp, peer) = tokio::select! {
            r = socket.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut shutdown) => break,
        };
        // Before anything is read: an address with too many connections
        // still logging in gets nothing more than one non-blocking write.
        let Some(slot) = prelogin.try_take(peer.ip()) else {
            refuse(&tcp, &too_many);
            metrics::counter!("sqlgate_prelogin_refused_total").increment(1);
            tracing::debug!(%peer, "refused: too many connections from this address are logging in");
            continue;
        };
        // The socket moves to the session's own thread and registers with
        // that thread's event loop.
        let tcp = match tcp.into_std() {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(%peer, "cannot hand the connection to a session thread: {e}");
                continue;
            }
        };
        let (l, shutdown) = (l.clone(), shutdown.clone());
        set.spawn_on(
            async move {
                match TcpStream::from_std(tcp) {
                    Ok(tcp) => postgres::handle(l, tcp, peer, slot, shutdown).await,
                    Err(e) => tracing::warn!(%peer, "cannot register the connection: {e}"),
                }
                drop(permit);
            },
            workers.next(),
        );
        while set.try_join_next().is_some() {}
    }
    set
}

/// The FATAL 53300 (too_many_connections) an over-limit socket is sent.
fn too_many_logins() -> bytes::Bytes {
    sqlgate_postgres::backend::Report::new(
        sqlgate_postgres::backend::Severity::Fatal,
        sqlstate::TOO_MANY_CONNECTIONS,
        "too many connections from this address are logging in at once \
         ([limits] max_prelogin_per_address); try again in a moment",
    )
    .encode()
}

/// Tells an over-limit client why, without waiting for it: whatever it has
/// sent already (its startup packet, usually) is read and dropped, so that
/// closing sends FIN rather than RST and the client reads the error;
/// PostgreSQL's postmaster answers a connection it cannot serve the same
/// way, before reading the startup packet. Never blocks: the accept loop
/// must not be slowed by the clients it refuses.
fn refuse(tcp: &TcpStream, error: &[u8]) {
    let mut sink = [0u8; 1024];
    while matches!(tcp.try_read(&mut sink), Ok(n) if n > 0) {}
    let _ = tcp.try_write(error);
}

/// Resolves once shutdown has begun (or its sender is gone).
pub async fn stopped(rx: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is dropped here, inside, so callers' futures stay `Send`.
    let _ = rx.wait_for(|s| *s).await.is_ok();
}
