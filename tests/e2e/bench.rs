//! `regmesh bench` smoke runs (issue 3): a few hundred REGISTERs from the
//! generator against a node started here, so the instrument cannot rot.
//! These are not benchmarks: they assert correctness of the generator's
//! counting, never a speed.

use regmesh_e2e::{Node, json, phase, regmesh_bin};
use serde_json::{Value, json};
use std::process::Command;

/// Run `regmesh <tool> <args> --quiet --json -` and return its JSON report.
fn report(tool: &str, args: &[&str]) -> Value {
    let out = Command::new(regmesh_bin())
        .arg(tool)
        .args(args)
        .args(["--quiet", "--json", "-"])
        .output()
        .unwrap_or_else(|e| panic!("run regmesh {tool}: {e}"));
    assert!(
        out.status.success(),
        "regmesh {tool} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{tool} JSON: {e}\n{}", String::from_utf8_lossy(&out.stdout)))
}

/// Run the generator with `args` and return its JSON report.
fn bench(args: &[&str]) -> Value {
    report("bench", &[args, &["--timeout", "5s"]].concat())
}

fn status(report: &Value, code: &str) -> u64 {
    report["status"][code].as_u64().unwrap_or(0)
}

/// Over UDP every answer is timed from the kernel's receive stamp, and the
/// server's latency is never above the latency the generator saw: per
/// request it ends earlier (the stamp precedes the read) and leaves out
/// the generator's own time, so every quantile is at most the client's.
fn assert_server_latency_within_client(r: &Value) {
    let io = &r["generator_io"];
    assert!(io["datagrams_received"].as_u64() > Some(0), "{r}");
    assert_eq!(io["kernel_stamped"], io["datagrams_received"], "{r}");
    for q in ["p50", "p99", "p999", "max"] {
        let server = r["latency_us"][q].as_u64().expect("server quantile");
        let client = r["client_latency_us"][q].as_u64().expect("client quantile");
        assert!(
            server <= client,
            "{q}: server {server} > client {client}: {r}"
        );
    }
}

#[test]
fn generator_registers_over_udp_and_tcp_and_counts_every_answer() {
    let node = Node::start("");
    let udp = node.sip_udp().to_string();
    let tcp = node.sip_tcp().to_string();

    phase("300 initial registrations over UDP, each answered 200 and bound");
    let r = bench(&["--target", &udp, "--aors", "300", "--rate", "1000"]);
    assert_eq!(r["sent"], 300, "{r}");
    assert_eq!(status(&r, "200"), 300, "{r}");
    assert_eq!(r["timeouts"], 0, "{r}");
    assert_eq!(r["errors"], 0, "{r}");
    assert_eq!(r["latency_samples"], 300, "{r}");
    assert_server_latency_within_client(&r);
    // The per-second timeline covers the run (300 at 1,000/s: its first
    // second), and its slowest answer is the run's.
    let timeline = &r["latency_timeline"];
    let max_by_second = timeline["max_us_by_second"].as_array().expect("timeline");
    assert!((1..=2).contains(&max_by_second.len()), "{r}");
    let slowest = max_by_second.iter().filter_map(Value::as_u64).max();
    assert_eq!(slowest, r["latency_us"]["max"].as_u64(), "{r}");
    let slow: u64 = timeline["slow_by_second"]
        .as_array()
        .expect("slow counts")
        .iter()
        .filter_map(Value::as_u64)
        .sum();
    assert!(slow <= 300, "{r}");
    let stats = json::statistics(&node.rpc("stats.get_statistics", json!(["all"])));
    assert_eq!(json::stat(&stats, "usrloc:location-contacts"), 300);

    phase("a refresh/unregister mix over TCP with two contacts per AoR");
    let r = bench(&[
        "--target",
        &tcp,
        "--transport",
        "tcp",
        "--aors",
        "100",
        "--contacts",
        "2",
        "--count",
        "400",
        "--mix",
        "0:1:1",
    ]);
    assert_eq!(r["sent"], 400, "{r}");
    assert_eq!(status(&r, "200"), 400, "{r}");
    assert_eq!(r["retransmissions"], 0, "TCP never retransmits: {r}");
    // A stream has no per-message receive stamp.
    assert_eq!(r["generator_io"]["kernel_stamped"], 0, "{r}");
    // The first 200 requests register the 200 bindings, the next 200 refresh
    // or remove them; what is left must match what the node holds.
    let stats = json::statistics(&node.rpc("stats.get_statistics", json!(["usrloc:"])));
    let contacts = json::stat(&stats, "usrloc:location-contacts");
    assert!((300..=500).contains(&contacts), "contacts {contacts}");

    phase("closed loop over UDP: 300 new bindings, then 700 refreshes, 16 in flight per socket");
    let contacts_before = json::stat(
        &json::statistics(&node.rpc("stats.get_statistics", json!(["usrloc:"]))),
        "usrloc:location-contacts",
    );
    let r = bench(&[
        "--target", &udp, "--aors", "300", "--count", "1000", "--rate", "0", "--window", "16",
    ]);
    assert_eq!(r["sent"], 1000, "{r}");
    assert_eq!(status(&r, "200"), 1000, "{r}");
    assert_eq!(r["timeouts"], 0, "{r}");
    assert_eq!(r["latency_samples"], 1000, "{r}");
    // The I/O counters are reported and plausible: every answer was read,
    // and no request took more than one send call (batches take fewer).
    let io = &r["generator_io"];
    assert!(io["datagrams_received"].as_u64() >= Some(1000), "{r}");
    assert!(
        io["send_calls"]
            .as_u64()
            .is_some_and(|n| (1..=1000).contains(&n)),
        "{r}"
    );
    // A run is a new set of UAs (its own ports, Call-IDs): its first 300
    // requests add bindings, the rest refresh them.
    let stats = json::statistics(&node.rpc("stats.get_statistics", json!(["usrloc:"])));
    assert_eq!(
        json::stat(&stats, "usrloc:location-contacts"),
        contacts_before + 300
    );

    phase("with --contact-port a second run refreshes the first run's bindings");
    let contacts = |node: &Node| {
        json::stat(
            &json::statistics(&node.rpc("stats.get_statistics", json!(["usrloc:"]))),
            "usrloc:location-contacts",
        )
    };
    let before = contacts(&node);
    for run in 0..2 {
        let r = bench(&[
            "--target",
            &udp,
            "--aors",
            "50",
            "--rate",
            "1000",
            "--contact-port",
            "5999",
        ]);
        assert_eq!(status(&r, "200"), 50, "run {run}: {r}");
        assert_eq!(contacts(&node), before + 50, "after run {run}");
    }
}

#[test]
fn generator_answers_digest_challenges() {
    let node = Node::start(
        r#"
[auth]
enabled = true
secret = "bench-smoke-secret-0123456789abcdef"
"#,
    );
    phase("provision user0..user49 over JSON-RPC, then register them with digest auth");
    let batch: Vec<Value> = (0..50)
        .map(|i| {
            json!({"jsonrpc": "2.0", "id": i, "method": "subscriber.add",
                   "params": [format!("user{i}@example.com"), "bench-pw"]})
        })
        .collect();
    let resp = node
        .http_rpc_raw(&serde_json::to_vec(&batch).expect("json"), None)
        .json();
    assert_eq!(resp.as_array().map(Vec::len), Some(50), "{resp}");
    let udp = node.sip_udp().to_string();
    let r = bench(&["--target", &udp, "--aors", "50", "--password", "bench-pw"]);
    assert_eq!(status(&r, "200"), 50, "{r}");
    assert_eq!(r["errors"], 0, "{r}");
    // A 401 and a 200 per REGISTER, both stamped; one latency each, the
    // generator's time between the two legs left out of the server's.
    assert_eq!(r["generator_io"]["datagrams_received"], 100, "{r}");
    assert_eq!(r["latency_samples"], 50, "{r}");
    assert_server_latency_within_client(&r);

    phase("a wrong password ends in refusals, counted as errors");
    let r = bench(&["--target", &udp, "--aors", "5", "--password", "wrong"]);
    assert_eq!(status(&r, "200"), 0, "{r}");
    assert_eq!(r["errors"], 5, "{r}");
}

/// The replication-lag instrument finds each binding on the node it polls
/// and reports, rather than hides, bindings a node never shows. regmesh
/// does not replicate yet, so one node serves as both ends (the lag is then
/// one query's round trip) and a second, unconnected node as a replica that
/// never shows anything. (bench/replication.sh measures a Kamailio
/// dmq_usrloc pair with it.)
#[test]
fn lag_instrument_finds_bindings_and_reports_the_missing() {
    let a = Node::start("");
    let b = Node::start("");
    let a_udp = a.sip_udp().to_string();
    let b_udp = b.sip_udp().to_string();

    phase("primary = replica: every binding is listed by the first answers");
    let r = report(
        "bench-lag",
        &[
            "--primary",
            &a_udp,
            "--replica",
            &a_udp,
            "--count",
            "200",
            "--rate",
            "400",
        ],
    );
    assert_eq!(r["seen"], 200, "{r}");
    assert_eq!(r["not_replicated"], 0, "{r}");
    assert_eq!(r["primary_timeouts"], 0, "{r}");
    assert!(r["queries"].as_u64() >= Some(200), "{r}");
    assert!(r["lag_us"]["p50"].as_u64().is_some(), "{r}");
    let stats = json::statistics(&a.rpc("stats.get_statistics", json!(["usrloc:"])));
    assert_eq!(json::stat(&stats, "usrloc:location-contacts"), 200);

    phase("a replica that never gets the bindings: all reported as not replicated");
    let r = report(
        "bench-lag",
        &[
            "--primary",
            &a_udp,
            "--replica",
            &b_udp,
            "--count",
            "20",
            "--rate",
            "400",
            "--timeout",
            "300ms",
        ],
    );
    assert_eq!(r["seen"], 0, "{r}");
    assert_eq!(r["not_replicated"], 20, "{r}");
    assert!(r["lag_us"]["p50"].is_null(), "{r}");
    // It queried the replica and the replica answered (200, listing nothing).
    assert!(r["queries"].as_u64() > Some(20), "{r}");
    assert_eq!(r["replica_errors"], 0, "{r}");
}
