//! The HTTP admin API: approvals (`/v1/approvals`), `/metrics`, `/healthz`.

pub mod approvals;
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
    approvals: crate::approval::Approvals,
    channels: crate::config::Channels,
    metrics: PrometheusHandle,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/metrics",
            get(move || std::future::ready(metrics.render())),
        )
        .merge(crate::approval::channels::routes(&channels, &approvals))
        .merge(approvals::routes(approvals));
    axum::serve(socket, app)
        .with_graceful_shutdown(async move { crate::proxy::stopped(&mut shutdown).await })
        .await
}
