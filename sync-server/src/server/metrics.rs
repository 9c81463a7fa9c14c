//! Counters served at `GET /metrics` in Prometheus' text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// The server's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Open WebSocket connections.
    pub connections: AtomicU64,
    /// Connections accepted since start.
    pub connections_total: AtomicU64,
    /// Frames received from clients.
    pub frames_in: AtomicU64,
    /// Frames sent to clients.
    pub frames_out: AtomicU64,
    /// Client ops answered with `ack`.
    pub ops_acked: AtomicU64,
    /// Client ops answered with `reject`.
    pub ops_rejected: AtomicU64,
    /// Change events sent to clients.
    pub events_out: AtomicU64,
    /// Clients given up on because nothing could be written to them for
    /// the send timeout (`slow_consumer`).
    pub slow_consumers: AtomicU64,
    /// Sessions and HTTP requests refused for their token (`unauthorized`,
    /// `forbidden`).
    pub auth_refused: AtomicU64,
    /// Welcomed sessions ended because a reload revoked or reduced their token.
    pub auth_revoked: AtomicU64,
    /// HTTP API requests answered (`/v1`).
    pub http_requests: AtomicU64,
    /// HTTP API requests answered with a 4xx status.
    pub http_client_errors: AtomicU64,
    /// HTTP API requests answered with a 5xx status.
    pub http_server_errors: AtomicU64,
    /// Open HTTP change streams (`/v1/ns/{ns}/changes`).
    pub http_streams: AtomicU64,
    /// Each live connection's lag: changes committed but not yet sent.
    lags: Mutex<Vec<Weak<AtomicU64>>>,
}

impl Metrics {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// A lag gauge for one connection; it stops counting when dropped.
    pub fn register_lag(&self) -> Arc<AtomicU64> {
        let lag = Arc::new(AtomicU64::new(0));
        if let Ok(mut lags) = self.lags.lock() {
            lags.retain(|l| l.strong_count() > 0);
            lags.push(Arc::downgrade(&lag));
        }
        lag
    }

    /// Subtracts 1 from a gauge.
    pub fn decrement(gauge: &AtomicU64) {
        gauge.fetch_sub(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = String::new();
        let rows: [(&str, &str, &str, &AtomicU64); 14] = [
            (
                "zestor_connections",
                "gauge",
                "open WebSocket connections",
                &self.connections,
            ),
            (
                "zestor_connections_total",
                "counter",
                "connections accepted",
                &self.connections_total,
            ),
            (
                "zestor_frames_in_total",
                "counter",
                "frames received",
                &self.frames_in,
            ),
            (
                "zestor_frames_out_total",
                "counter",
                "frames sent",
                &self.frames_out,
            ),
            (
                "zestor_ops_acked_total",
                "counter",
                "client ops acknowledged",
                &self.ops_acked,
            ),
            (
                "zestor_ops_rejected_total",
                "counter",
                "client ops rejected",
                &self.ops_rejected,
            ),
            (
                "zestor_events_out_total",
                "counter",
                "change events sent",
                &self.events_out,
            ),
            (
                "zestor_slow_consumers_total",
                "counter",
                "clients given up on because they stopped reading",
                &self.slow_consumers,
            ),
            (
                "zestor_auth_refused_total",
                "counter",
                "sessions and HTTP requests refused for their token",
                &self.auth_refused,
            ),
            (
                "zestor_auth_revoked_total",
                "counter",
                "sessions ended by a reload of the tokens or keys",
                &self.auth_revoked,
            ),
            (
                "zestor_http_requests_total",
                "counter",
                "HTTP API requests answered",
                &self.http_requests,
            ),
            (
                "zestor_http_client_errors_total",
                "counter",
                "HTTP API requests answered with a 4xx status",
                &self.http_client_errors,
            ),
            (
                "zestor_http_server_errors_total",
                "counter",
                "HTTP API requests answered with a 5xx status",
                &self.http_server_errors,
            ),
            (
                "zestor_http_streams",
                "gauge",
                "open HTTP change streams",
                &self.http_streams,
            ),
        ];
        for (name, kind, help, value) in rows {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        let lags: Vec<u64> = match self.lags.lock() {
            Ok(lags) => lags
                .iter()
                .filter_map(Weak::upgrade)
                .map(|l| l.load(Ordering::Relaxed))
                .collect(),
            Err(_) => Vec::new(),
        };
        let max = lags.iter().copied().max().unwrap_or(0);
        let _ = writeln!(
            out,
            "# HELP zestor_sync_lag_events_max changes committed but not yet sent, worst connection\n\
             # TYPE zestor_sync_lag_events_max gauge\nzestor_sync_lag_events_max {max}"
        );
        out
    }
}
