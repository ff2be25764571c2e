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
    /// UDP datagrams taken by standby receive threads, which run only
    /// while the receive threads are behind: how much of the load was
    /// past what `sip.udp_threads` take on their own.
    pub(crate) udp_standby_datagrams: AtomicU64,
    /// Pauses a UDP receive thread took after a batch of several datagrams
    /// (`sip.udp_receive_pause`): how often it gathered instead of reading
    /// on at once.
    pub(crate) udp_receive_pauses: AtomicU64,
    /// How long UDP requests answered at once (no commit to wait for:
    /// challenges, lookups, errors, refusals) took inside this node.
    pub(crate) udp_answer_immediate: AnswerTimes,
    /// How long UDP requests whose answer waits for a durable commit (an
    /// accepted REGISTER that changed something) took inside this node.
    pub(crate) udp_answer_durable: AnswerTimes,
    /// How long each UDP datagram waited in the socket's receive buffer
    /// before a receive thread took it: the part of the answer times that
    /// says whether the receive threads keep up, apart from what the
    /// registrar and the store add after it (BENCHMARKS.md splits the
    /// latency tail with it).
    pub(crate) udp_queue: AnswerTimes,
}

/// Upper bounds (µs) of the answer-time histogram's buckets. Fine around
/// 1-5 ms, where a durable answer (an fsync plus up to one commit
/// interval) lands and where a latency target is usually set.
pub(crate) const ANSWER_BUCKETS_US: [u64; 14] = [
    100, 250, 500, 750, 1_000, 1_500, 2_000, 3_000, 5_000, 10_000, 20_000, 50_000, 100_000,
    1_000_000,
];

/// Histogram of the time from a UDP request's arrival (the kernel's receive
/// timestamp, so time spent queued in the socket buffer counts) to its
/// answer being handed to the kernel: the registrar's own latency, with
/// the network and the client left out. Why it exists: a client-side
/// measure mixes in the client's scheduling (a load generator sharing the
/// machine waits for a CPU too), and an operator wants to see the node's
/// share without an external probe. Only answered requests count; a
/// request dropped or sent no answer has no answer time.
#[derive(Debug, Default)]
pub(crate) struct AnswerTimes {
    /// Counts per [`ANSWER_BUCKETS_US`] bound (not cumulative), then the
    /// slower ones.
    buckets: [AtomicU64; ANSWER_BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
}

impl AnswerTimes {
    /// Count one answer that took `took`.
    pub(crate) fn record(&self, took: std::time::Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let i = ANSWER_BUCKETS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(ANSWER_BUCKETS_US.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Per-bucket counts (not cumulative, overflow last) and the sum, µs.
    pub(crate) fn snapshot(&self) -> ([u64; ANSWER_BUCKETS_US.len() + 1], u64) {
        (
            std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed)),
            self.sum_us.load(Ordering::Relaxed),
        )
    }
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
    histogram(
        &mut out,
        "regmesh_store_commit_duration_seconds",
        "Time to write and fsync one group commit.",
        &COMMIT_BUCKETS_US,
        &c.latency,
        c.latency_sum_us,
    );
    let name = "regmesh_sip_udp_answer_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Time from a UDP request's arrival in the socket buffer to its answer being sent (this node's share of the latency), by what the answer waited for.\n# TYPE {name} histogram"
    );
    for (wait, times) in [
        ("none", &s.counters.udp_answer_immediate),
        ("commit", &s.counters.udp_answer_durable),
    ] {
        let (counts, sum) = times.snapshot();
        histogram_series(
            &mut out,
            name,
            &format!("wait=\"{wait}\","),
            &ANSWER_BUCKETS_US,
            &counts,
            sum,
        );
    }
    let (counts, sum) = s.counters.udp_queue.snapshot();
    histogram(
        &mut out,
        "regmesh_sip_udp_queue_seconds",
        "Time a UDP datagram waited in the socket's receive buffer before a receive thread took it.",
        &ANSWER_BUCKETS_US,
        &counts,
        sum,
    );
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
        "regmesh_sip_udp_standby_datagrams_total",
        "UDP datagrams taken by standby receive threads (woken only while the receive threads are behind).",
        s.counters.udp_standby_datagrams.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "regmesh_sip_udp_receive_pauses_total",
        "Pauses of a UDP receive thread after a batch of several datagrams, to gather the next ones (sip.udp_receive_pause).",
        s.counters.udp_receive_pauses.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "regmesh_sip_stream_framing_errors_total",
        "TCP/TLS connections closed because a message could not be framed.",
        s.counters.bad_frames.load(Ordering::Relaxed),
    );
    out
}

/// A Prometheus histogram from per-bucket counts (`counts` has one more
/// element than `bounds`: the overflow) and a sum, both in µs.
fn histogram(
    out: &mut String,
    name: &str,
    help: &str,
    bounds: &[u64],
    counts: &[u64],
    sum_us: u64,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    histogram_series(out, name, "", bounds, counts, sum_us);
}

/// One labelled series of a histogram whose HELP and TYPE are written;
/// `labels` is empty or ends with a comma (`le` follows it).
fn histogram_series(
    out: &mut String,
    name: &str,
    labels: &str,
    bounds: &[u64],
    counts: &[u64],
    sum_us: u64,
) {
    let mut cumulative = 0;
    for (bound, n) in bounds.iter().zip(counts) {
        cumulative += n;
        let le = *bound as f64 / 1e6;
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{le}\"}} {cumulative}");
    }
    cumulative += counts.get(bounds.len()).copied().unwrap_or(0);
    let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {cumulative}");
    let rest = labels.trim_end_matches(',');
    let braces = if rest.is_empty() {
        String::new()
    } else {
        format!("{{{rest}}}")
    };
    let _ = writeln!(out, "{name}_sum{braces} {}", sum_us as f64 / 1e6);
    let _ = writeln!(out, "{name}_count{braces} {cumulative}");
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn answer_times_land_in_their_bucket_and_render_cumulatively() {
        let t = AnswerTimes::default();
        t.record(Duration::from_micros(100)); // on a bound: that bucket
        t.record(Duration::from_micros(101)); // just past it: the next
        t.record(Duration::from_micros(1_800));
        t.record(Duration::from_secs(3)); // past the last bound
        let (counts, sum) = t.snapshot();
        assert_eq!(counts[0], 1);
        assert_eq!(counts[1], 1);
        assert_eq!(
            counts[ANSWER_BUCKETS_US.iter().position(|&b| b == 2_000).unwrap()],
            1
        );
        assert_eq!(counts[ANSWER_BUCKETS_US.len()], 1);
        assert_eq!(sum, 100 + 101 + 1_800 + 3_000_000);

        let mut out = String::new();
        histogram(
            &mut out,
            "x_seconds",
            "help",
            &ANSWER_BUCKETS_US,
            &counts,
            sum,
        );
        assert!(out.contains("# TYPE x_seconds histogram"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"0.0001\"} 1\n"), "{out}");
        assert!(
            out.contains("x_seconds_bucket{le=\"0.00025\"} 2\n"),
            "{out}"
        );
        assert!(out.contains("x_seconds_bucket{le=\"0.0015\"} 2\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"0.002\"} 3\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"1\"} 3\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"+Inf\"} 4\n"), "{out}");
        assert!(out.contains("x_seconds_count 4\n"), "{out}");
        assert!(out.contains("x_seconds_sum 3.002001\n"), "{out}");

        let mut out = String::new();
        histogram_series(&mut out, "y", "wait=\"none\",", &[100], &[2, 1], 350);
        assert_eq!(
            out,
            "y_bucket{wait=\"none\",le=\"0.0001\"} 2\n\
             y_bucket{wait=\"none\",le=\"+Inf\"} 3\n\
             y_sum{wait=\"none\"} 0.00035\n\
             y_count{wait=\"none\"} 3\n"
        );
    }
}
