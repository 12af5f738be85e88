//! Process-wide Prometheus recorder. Every gateway in the process records into it
//! (tests run several gateways in one process; their figures then add up).
//!
//! Metric names (all prefixed `outpost_`): `handshakes_total{result}`,
//! `logins_total{result,code}`, `sessions_live`, `sessions_admitted`,
//! `session_closes_total{code}`, `frames_rejected_total{code}`,
//! `channels_opened_total{channel}`, `channels_refused_total{code}`,
//! `quic_retries_total`, `udp_recv_buffer_bytes`, `udp_send_buffer_bytes`, `draining`,
//! `tls_reloads_total`, `tls_reload_failures_total`, `tls_cert_not_after_seconds`.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the recorder once per process (a no-op afterwards). If another
/// recorder was installed first (an embedding application's), ours stays off.
pub fn install() {
    HANDLE.get_or_init(|| PrometheusBuilder::new().install_recorder().ok());
}

/// The Prometheus text exposition of every metric recorded so far.
pub fn render() -> String {
    HANDLE
        .get()
        .and_then(|h| h.as_ref())
        .map(|h| h.render())
        .unwrap_or_default()
}
