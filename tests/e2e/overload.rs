//! UDP overload (`sip.overload_queue_delay`, see `sip_udp`'s module docs):
//! while the kernel drops datagrams or requests wait longer than the
//! threshold for whole 200 ms intervals, a growing share of new requests
//! gets 503 with Retry-After instead of being served late. A real overload
//! cannot be made on demand on a shared machine, so the threshold is set
//! below any real queue delay (1 µs): every datagram is "late", each 200 ms
//! adds to the share refused, and the node must serve everything in the
//! first interval and refuse more and more after it. Auth is on: the
//! requests refused are new REGISTERs that would otherwise be challenged
//! (the only ones whose refusal saves work, see `Registrar::handle_under`).

use regmesh_e2e::sip::{Request, UdpClient};
use regmesh_e2e::{Node, json, now, phase};
use serde_json::json;
use std::time::Duration;

#[test]
fn requests_late_for_whole_intervals_get_a_growing_share_of_503s() {
    let node = Node::start(
        "[sip]\noverload_queue_delay = \"1us\"\n\
         [auth]\nenabled = true\nrealm = \"example.com\"\n\
         secret = \"e2e-nonce-signing-secret-0123456789abcdef\"",
    );
    let c = UdpClient::new(node.sip_udp());
    phase("REGISTERs for 3 s, one every 10 ms, each read later than 1 µs after it arrived");
    let start = now();
    let mut answers = Vec::new();
    let mut i = 0;
    while now() - start < Duration::from_secs(3) {
        let user = format!("storm{i}");
        i += 1;
        let sent = now() - start;
        let r = c.request(&Request::register(
            &user,
            "example.com",
            &format!("<sip:{user}@{}>", c.local()),
            Some(3600),
            c.local(),
            "UDP",
        ));
        answers.push((sent, user, r));
        std::thread::sleep(Duration::from_millis(10));
    }
    let refused_in = |from: u64, to: u64| {
        answers
            .iter()
            .filter(|(t, _, r)| {
                (Duration::from_millis(from)..Duration::from_millis(to)).contains(t)
                    && r.status == 503
            })
            .count()
    };
    assert_eq!(refused_in(0, 150), 0, "refused before one whole interval");
    let (early, late) = (refused_in(0, 1500), refused_in(1500, 3000));
    phase(&format!(
        "{} requests; refused in the first 1.5 s: {early}, in the next: {late}",
        answers.len()
    ));
    assert!(late > early, "the share refused grows: {early} then {late}");
    let mut refused = 0;
    for (_, user, r) in &answers {
        if r.status == 401 {
            continue;
        }
        assert_eq!(
            (r.status, r.reason.as_str()),
            (503, "Service Unavailable - Overloaded"),
            "{user}: {}",
            r.raw
        );
        let secs: u64 = r
            .header("Retry-After")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{user}: no Retry-After in seconds: {}", r.raw));
        assert!((10..60).contains(&secs), "{user}: Retry-After {secs}");
        let v = node.rpc_call(
            "ul.lookup",
            json!(["location", format!("{user}@example.com")]),
        );
        assert!(
            json::error_code(&v).is_some(),
            "{user} was refused but bound: {v}"
        );
        refused += 1;
    }
    phase("the refusals are counted, the rest challenged");
    let stats = json::statistics(&node.rpc("stats.get_statistics", json!(["registrar:"])));
    assert_eq!(json::stat(&stats, "registrar:overload_rejected"), refused);
    assert_eq!(
        json::stat(&stats, "registrar:auth_challenges"),
        (answers.len() - refused as usize) as i64
    );
}
