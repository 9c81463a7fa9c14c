//! Counters served at `GET /metrics` in Prometheus' text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

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
}

impl Metrics {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Subtracts 1 from a gauge.
    pub fn decrement(gauge: &AtomicU64) {
        gauge.fetch_sub(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = String::new();
        let rows: [(&str, &str, &str, &AtomicU64); 7] = [
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
        ];
        for (name, kind, help, value) in rows {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        out
    }
}
