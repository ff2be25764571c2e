//! `GET /metrics` (Prometheus text) and `GET /health` on the RPC listener.

use regmesh_e2e::sip::{Request, UdpClient};
use regmesh_e2e::{Node, phase};
use std::collections::BTreeMap;

/// One sample: metric name, raw label text, value.
type Sample = (String, String, f64);

/// Parse Prometheus text exposition: (family name → TYPE) and every sample
/// `(name, labels, value)`. Fails the test on a malformed line.
fn parse(text: &str) -> (BTreeMap<String, String>, Vec<Sample>) {
    let mut types = BTreeMap::new();
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest
                .split_once(' ')
                .unwrap_or_else(|| panic!("bad TYPE line {line:?}"));
            types.insert(name.to_owned(), ty.trim().to_owned());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad sample line {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad sample value in {line:?}"));
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (series, ""),
        };
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        samples.push((name.to_owned(), labels.to_owned(), value));
    }
    (types, samples)
}

fn sum(samples: &[Sample], name: &str) -> Option<f64> {
    let v: Vec<f64> = samples
        .iter()
        .filter(|(n, _, _)| n == name)
        .map(|(_, _, v)| *v)
        .collect();
    (!v.is_empty()).then(|| v.iter().sum())
}

fn register(c: &UdpClient, user: &str, expires: u32) -> u16 {
    let r = Request::register(
        user,
        "example.com",
        &format!("<sip:{user}@{}>", c.local()),
        Some(expires),
        c.local(),
        "UDP",
    );
    c.request(&r).status
}

#[test]
fn health_is_200_and_metrics_count_registrations() {
    let node = Node::start("");

    // A ready node says so (load balancers and orchestration read this).
    phase("GET /health");
    let r = node.http_get("/health");
    assert_eq!(r.status, 200, "{}", r.text());

    // Two accepted and one rejected REGISTER (423: below min_expires).
    phase("three REGISTERs: two accepted, one 423");
    let c = UdpClient::new(node.sip_udp());
    assert_eq!(register(&c, "alice", 3600), 200);
    assert_eq!(register(&c, "bob", 3600), 200);
    assert_eq!(register(&c, "carol", 10), 423);

    // The scrape is valid Prometheus text and counts exactly that.
    phase("GET /metrics");
    let r = node.http_get("/metrics");
    assert_eq!(r.status, 200, "{}", r.text());
    let ct = r.header("content-type").unwrap_or_default();
    assert!(ct.starts_with("text/plain"), "content-type {ct:?}");
    let text = r.text();
    let (types, samples) = parse(&text);
    assert_eq!(
        types.get("regmesh_register_total").map(String::as_str),
        Some("counter"),
        "{text}"
    );
    assert_eq!(
        types.get("regmesh_bindings").map(String::as_str),
        Some("gauge"),
        "{text}"
    );
    assert_eq!(
        sum(&samples, "regmesh_register_total"),
        Some(3.0),
        "every REGISTER outcome is counted:\n{text}"
    );
    assert_eq!(sum(&samples, "regmesh_bindings"), Some(2.0), "{text}");
    // Each answer's time in the node: the two accepted REGISTERs waited for
    // their commit, the 423 did not.
    assert_eq!(
        types
            .get("regmesh_sip_udp_answer_seconds")
            .map(String::as_str),
        Some("histogram"),
        "{text}"
    );
    let count = |labels: &str| {
        samples
            .iter()
            .find(|(n, l, _)| n == "regmesh_sip_udp_answer_seconds_count" && l == labels)
            .map(|(_, _, v)| *v)
    };
    assert_eq!(count("wait=\"commit\""), Some(2.0), "{text}");
    assert_eq!(count("wait=\"none\""), Some(1.0), "{text}");
    let inf = samples
        .iter()
        .find(|(n, l, _)| {
            n == "regmesh_sip_udp_answer_seconds_bucket" && l == "wait=\"commit\",le=\"+Inf\""
        })
        .map(|(_, _, v)| *v);
    assert_eq!(
        inf,
        Some(2.0),
        "the +Inf bucket holds every answer:\n{text}"
    );
    // Each of the three datagrams waited in the socket buffer for a
    // receive thread, answered at once or after a commit alike.
    assert_eq!(
        types
            .get("regmesh_sip_udp_queue_seconds")
            .map(String::as_str),
        Some("histogram"),
        "{text}"
    );
    assert_eq!(
        sum(&samples, "regmesh_sip_udp_queue_seconds_count"),
        Some(3.0),
        "{text}"
    );
    // Three requests one at a time never fill a batch: the standby thread
    // slept through them.
    assert_eq!(
        types
            .get("regmesh_sip_udp_standby_datagrams_total")
            .map(String::as_str),
        Some("counter"),
        "{text}"
    );
    assert_eq!(
        sum(&samples, "regmesh_sip_udp_standby_datagrams_total"),
        Some(0.0),
        "{text}"
    );
    for (name, ty) in &types {
        assert!(
            name.starts_with("regmesh_"),
            "metric {name} lacks the regmesh_ prefix"
        );
        if ty == "counter" {
            assert!(
                name.ends_with("_total"),
                "counter {name} should end in _total"
            );
        }
    }
}

#[test]
fn metrics_expose_the_style_guide_must_have_families() {
    let node = Node::start("");

    // STYLE.md §6 "Must-have metrics" for a single node: REGISTER outcomes,
    // binding and tombstone counts, change-log fsync latency, RPC calls by
    // method and result. An end-to-end scrape is where their names are pinned.
    phase("GET /metrics after one RPC call");
    node.rpc("core.version", serde_json::json!([]));
    let text = node.http_get("/metrics").text();
    let (types, _) = parse(&text);
    let names: Vec<&String> = types.keys().collect();
    let has = |pred: &dyn Fn(&str) -> bool| types.keys().any(|n| pred(n));
    assert!(
        has(&|n| n == "regmesh_register_total"),
        "REGISTER outcomes: {names:?}"
    );
    assert!(
        has(&|n| n == "regmesh_bindings"),
        "binding count: {names:?}"
    );
    assert!(
        has(&|n| n == "regmesh_tombstones"),
        "tombstone count: {names:?}"
    );
    assert!(
        has(&|n| n.ends_with("_seconds") && (n.contains("fsync") || n.contains("commit"))),
        "change-log fsync/commit latency in seconds: {names:?}"
    );
    assert!(
        has(&|n| n.starts_with("regmesh_rpc") && n.ends_with("_total")),
        "RPC calls by method and result: {names:?}"
    );
    for family in [
        "regmesh_store_log_bytes_total",
        "regmesh_store_snapshots_total",
        "regmesh_store_snapshot_failures_total",
        "regmesh_store_snapshot_bytes",
        "regmesh_store_log_bytes_since_snapshot",
    ] {
        assert!(
            has(&|n| n == family),
            "store log/snapshot {family}: {names:?}"
        );
    }
}
