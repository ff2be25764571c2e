//! `GET /metrics` (Prometheus text exposition 0.0.4) and `GET /health`.
//!
//! The counters live where they are counted (registrar `Stats`, the
//! transports' [`SipCounters`], the store's counts); this module only renders
//! them, so nothing here is a global. Names are `regmesh_`-prefixed,
//! counters end in `_total` (STYLE.md §6).

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use regmesh_location::{COMMIT_BUCKETS_US, Location};
use regmesh_registrar::Stats;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Transport-level counters.
#[derive(Debug, Default)]
pub(crate) struct SipCounters {
    /// Datagrams or stream messages over `sip.max_message_size`.
    pub(crate) oversize: AtomicU64,
    /// Stream connections closed because framing was lost.
    pub(crate) bad_frames: AtomicU64,
}

/// What the endpoints read.
#[derive(Clone)]
pub(crate) struct MetricsState {
    pub(crate) location: Arc<Location>,
    pub(crate) stats: Arc<Stats>,
    pub(crate) counters: Arc<SipCounters>,
    pub(crate) ready: Arc<AtomicBool>,
    pub(crate) rpc_calls: Arc<regmesh_rpc::RpcCalls>,
}

pub(crate) fn router(state: MetricsState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .with_state(state)
}

async fn health(State(s): State<MetricsState>) -> impl IntoResponse {
    let ready = s.ready.load(Ordering::Acquire);
    let healthy = s.location.healthy();
    let status = if ready && healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "status": if !healthy { "store-failed" } else if ready { "ready" } else { "starting" },
        "ready": ready,
        "store_healthy": healthy,
    });
    (status, axum::Json(body))
}

async fn metrics(State(s): State<MetricsState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        render(&s),
    )
}

fn render(s: &MetricsState) -> String {
    let mut out = String::with_capacity(2048);
    let st = s.location.stats();
    gauge(
        &mut out,
        "regmesh_bindings",
        "Live bindings in the location table.",
        st.bindings,
    );
    gauge(
        &mut out,
        "regmesh_aors",
        "AoRs with at least one live binding.",
        st.aors,
    );
    gauge(
        &mut out,
        "regmesh_tombstones",
        "Tombstones held for removed bindings.",
        st.tombstones,
    );
    gauge(
        &mut out,
        "regmesh_store_healthy",
        "1 while the durable store accepts commits.",
        u64::from(s.location.healthy()),
    );
    let _ = writeln!(
        out,
        "# HELP regmesh_register_total REGISTER requests by outcome.\n# TYPE regmesh_register_total counter"
    );
    let _ = writeln!(
        out,
        "regmesh_register_total{{result=\"accepted\"}} {}",
        s.stats.accepted_regs.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "regmesh_register_total{{result=\"rejected\"}} {}",
        s.stats.rejected_regs.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "regmesh_register_total{{result=\"challenged\"}} {}",
        s.stats.auth_challenges.load(Ordering::Relaxed)
    );
    // Every registrar counter under its Kamailio-style name as well.
    for (name, value) in s.stats.snapshot() {
        counter(
            &mut out,
            &format!("regmesh_registrar_{name}_total"),
            "Registrar counter (see stats.get_statistics registrar:).",
            value,
        );
    }
    let c = s.location.commit_stats();
    counter(
        &mut out,
        "regmesh_store_commits_total",
        "Write transactions committed with fsync (group commits).",
        c.transactions,
    );
    counter(
        &mut out,
        "regmesh_store_commit_requests_total",
        "Change batches made durable; requests per commit shows group-commit sharing.",
        c.requests,
    );
    counter(
        &mut out,
        "regmesh_store_commit_ops_total",
        "Row writes and deletions made durable.",
        c.ops,
    );
    counter(
        &mut out,
        "regmesh_store_log_bytes_total",
        "Bytes appended to the change log (records and framing).",
        c.log_bytes,
    );
    counter(
        &mut out,
        "regmesh_store_snapshots_total",
        "Snapshots written (each lets the log before it be deleted).",
        c.snapshots,
    );
    counter(
        &mut out,
        "regmesh_store_snapshot_failures_total",
        "Snapshots that failed; the log is kept and the snapshot retried.",
        c.snapshot_failures,
    );
    gauge(
        &mut out,
        "regmesh_store_snapshot_bytes",
        "Size of the newest snapshot.",
        c.snapshot_bytes,
    );
    gauge(
        &mut out,
        "regmesh_store_log_bytes_since_snapshot",
        "Change-log bytes written since the newest snapshot began (on disk until the next one).",
        c.log_bytes_since_snapshot,
    );
    let name = "regmesh_store_commit_duration_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Time to write and fsync one group commit.\n# TYPE {name} histogram"
    );
    let mut cumulative = 0;
    for (i, bound) in COMMIT_BUCKETS_US.iter().enumerate() {
        cumulative += c.latency[i];
        let le = *bound as f64 / 1e6;
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
    }
    cumulative += c.latency[COMMIT_BUCKETS_US.len()];
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
    let _ = writeln!(out, "{name}_sum {}", c.latency_sum_us as f64 / 1e6);
    let _ = writeln!(out, "{name}_count {cumulative}");
    let name = "regmesh_rpc_calls_total";
    let _ = writeln!(
        out,
        "# HELP {name} JSON-RPC calls by method and result.\n# TYPE {name} counter"
    );
    for (method, ok, n) in s.rpc_calls.snapshot() {
        let result = if ok { "ok" } else { "error" };
        let _ = writeln!(out, "{name}{{method=\"{method}\",result=\"{result}\"}} {n}");
    }
    counter(
        &mut out,
        "regmesh_sip_oversize_total",
        "SIP messages refused for exceeding sip.max_message_size.",
        s.counters.oversize.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "regmesh_sip_stream_framing_errors_total",
        "TCP/TLS connections closed because a message could not be framed.",
        s.counters.bad_frames.load(Ordering::Relaxed),
    );
    out
}

fn gauge(out: &mut String, name: &str, help: &str, v: u64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
}

fn counter(out: &mut String, name: &str, help: &str, v: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
    );
}
