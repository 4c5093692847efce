//! The HTTP admin API: approvals (`/v1/approvals`), `/metrics`, `/healthz`.

pub mod approvals;
mod listener;
pub mod page;

use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Installs the process-wide metrics recorder and returns a handle to render it.
pub fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| anyhow::anyhow!("cannot install the metrics recorder: {e}"))?;
    Ok(handle)
}

pub async fn serve(
    socket: TcpListener,
    audit: crate::audit::AuditLog,
    catalogs: Vec<std::sync::Arc<crate::catalog::Catalog>>,
    approvals: crate::approval::Approvals,
    channels: crate::config::Channels,
    metrics: PrometheusHandle,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let app = Router::new()
        .route(
            "/healthz",
            get(move || {
                // Healthy, with what an operator should know: warnings about
                // the upstream logins' rights, one line each. Not healthy
                // once the audit log can't be written (sessions refuse
                // statements then).
                if !audit.alive() {
                    return std::future::ready((
                        axum::http::StatusCode::SERVICE_UNAVAILABLE,
                        "audit log writer stopped: statements are refused\n".to_string(),
                    ));
                }
                let mut body = String::from("ok\n");
                for w in catalogs.iter().flat_map(|c| c.warnings()) {
                    body.push_str("warning: ");
                    body.push_str(&w);
                    body.push('\n');
                }
                std::future::ready((axum::http::StatusCode::OK, body))
            }),
        )
        .route(
            "/metrics",
            get(move || std::future::ready(metrics.render())),
        )
        .merge(crate::approval::channels::routes(&channels, &approvals))
        .merge(approvals::routes(approvals));
    // The client's address: failed bearer tokens are throttled per address.
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    use axum::serve::ListenerExt;
    // tap_io: the client address reaches handlers as ConnectInfo<SocketAddr>.
    axum::serve(listener::Capped::new(socket).tap_io(|_| ()), app)
        .with_graceful_shutdown(async move { crate::proxy::stopped(&mut shutdown).await })
        .await
}
