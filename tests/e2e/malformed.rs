//! Bad input: garbage, malformed and oversized SIP. The node answers 400
//! where a reply is possible, drops what it cannot answer, and never stops
//! serving valid REGISTERs.

use regmesh_e2e::sip::{Request, UdpClient};
use regmesh_e2e::sipp::{Sipp, User, users};
use regmesh_e2e::{Node, json, phase};
use serde_json::json;
use std::collections::BTreeSet;
use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

const DOMAIN: &str = "example.com";

/// A small deterministic generator (xorshift64*), so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// One datagram of junk: random bytes, SIP-shaped text cut short or
/// corrupted, lying Content-Lengths, responses sent to the server.
fn garbage(rng: &mut Rng, valid: &[u8]) -> Vec<u8> {
    match rng.below(7) {
        0 => (0..rng.below(1400) + 1).map(|_| rng.next() as u8).collect(),
        1 => valid[..rng.below(valid.len())].to_vec(),
        2 => {
            let mut v = valid.to_vec();
            for _ in 0..rng.below(8) + 1 {
                let i = rng.below(v.len());
                v[i] = rng.next() as u8;
            }
            v
        }
        3 => String::from_utf8_lossy(valid)
            .replace("Content-Length: 0", "Content-Length: 99999")
            .into_bytes(),
        4 => b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bKx\r\nCall-ID: x\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n".to_vec(),
        5 => b"REGISTER sip:example.com SIP/2.0\r\n\r\n".to_vec(),
        _ => {
            let mut v = b"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK1\r\n".to_vec();
            v.extend((0..rng.below(200)).map(|_| b"\x00\xff:\r\n;<>@"[rng.below(9)]));
            v
        }
    }
}

#[test]
fn a_garbage_flood_does_not_stop_valid_registers() {
    let mut node = Node::start("");
    let target = node.sip_udp();
    let sample = Request::register(
        "junk",
        DOMAIN,
        "<sip:junk@127.0.0.1:5999>",
        Some(3600),
        "127.0.0.1:9".parse().unwrap(),
        "UDP",
    )
    .to_bytes();

    // Junk arrives at a few thousand datagrams a second, from several
    // sources, for as long as SIPp registers (bounded in count).
    phase("flood garbage while SIPp registers 500 AoRs");
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let flooder = {
        let (stop, sent) = (stop.clone(), sent.clone());
        std::thread::spawn(move || {
            let socks: Vec<UdpSocket> = (0..4)
                .map(|_| UdpSocket::bind("127.0.0.1:0").expect("bind"))
                .collect();
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
            for i in 0..60_000u64 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let _ = socks[(i % 4) as usize].send_to(&garbage(&mut rng, &sample), target);
                sent.fetch_add(1, Ordering::Relaxed);
                if i % 50 == 49 {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        })
    };
    let all = users("g", DOMAIN, 500);
    let run = Sipp::new("register.xml", target)
        .users(&all)
        .rate(250)
        .run();
    stop.store(true, Ordering::Relaxed);
    flooder.join().expect("flooder thread");
    eprintln!(
        "[e2e] sent {} garbage datagrams",
        sent.load(Ordering::Relaxed)
    );
    run.assert_all_succeeded(all.len());
    assert!(
        sent.load(Ordering::Relaxed) >= 1000,
        "the flood was too small to mean anything"
    );

    // Every valid REGISTER bound, the process is alive and still answering.
    // (Randomly corrupted copies of a REGISTER are sometimes still valid
    // REGISTERs for some other AoR, `junk@exampxe.com` say, and may bind:
    // only the SIPp users are checked.)
    phase("all valid registrations bound; node alive");
    node.assert_running();
    let found = json::aors(&node.rpc("ul.dump", json!([])));
    let expected: BTreeSet<String> = all.iter().map(User::aor).collect();
    let missing: Vec<_> = expected.difference(&found).collect();
    assert!(
        missing.is_empty(),
        "acknowledged AoRs missing after the flood: {missing:?}"
    );
    let c = UdpClient::new(target);
    let opt = Request::new(
        "OPTIONS",
        &format!("sip:{target}"),
        "probe@example.com",
        c.local(),
        "UDP",
    )
    .set("To", &format!("<sip:{target}>"));
    assert_eq!(c.request(&opt).status, 200);
}

#[test]
fn malformed_registers_get_400_naming_the_problem_and_bind_nothing() {
    let mut node = Node::start("");
    let c = UdpClient::new(node.sip_udp());
    let reg = |user: &str| {
        Request::register(
            user,
            DOMAIN,
            &format!("<sip:{user}@{}>", c.local()),
            Some(3600),
            c.local(),
            "UDP",
        )
    };
    let assert_unbound = |user: &str| {
        let v = node.rpc_call("ul.lookup", json!(["location", format!("{user}@{DOMAIN}")]));
        assert!(
            json::error_code(&v).is_some(),
            "a rejected REGISTER bound {user}: {v}"
        );
    };

    // A response must echo the request's CSeq (RFC 3261 §8.2.6.2), so a
    // REGISTER without one may be dropped (and counted) instead of
    // answered; it must never be accepted.
    phase("missing CSeq: dropped or 400, never bound");
    if let Some(r) = c.try_request(&reg("nocseq").without("CSeq"), Duration::from_secs(2)) {
        assert_eq!(r.status, 400, "{}", r.raw);
    }
    assert_unbound("nocseq");

    // Where a reply is possible the 400's reason names the problem.
    // CSeq's method must be the request's (RFC 3261 §8.1.1.5).
    phase("CSeq method mismatch: 400 naming CSeq");
    let r = c.request(&reg("cseqm").set("CSeq", "1 INVITE"));
    assert_eq!(r.status, 400, "{}", r.raw);
    assert!(
        r.reason.to_lowercase().contains("cseq"),
        "reason {:?} should name CSeq",
        r.reason
    );
    assert_unbound("cseqm");

    // Call-ID is mandatory (RFC 3261 §8.1.1).
    phase("missing Call-ID: 400 naming Call-ID");
    // (The request has no Call-ID, so the client matches the 400 by its
    // missing Call-ID too.)
    let r = c.request(&reg("nocallid").without("Call-ID"));
    assert_eq!(r.status, 400, "{}", r.raw);
    assert!(
        r.reason.to_lowercase().contains("call-id"),
        "reason {:?} should name Call-ID",
        r.reason
    );
    assert_unbound("nocallid");

    // An unterminated name-addr is not a Contact.
    phase("malformed Contact: 400 naming Contact");
    let r = c.request(&reg("badcontact").set("Contact", "<sip:badcontact@127.0.0.1:5999"));
    assert_eq!(r.status, 400, "{}", r.raw);
    assert!(
        r.reason.to_lowercase().contains("contact"),
        "reason {:?} should name Contact",
        r.reason
    );
    assert_unbound("badcontact");

    // `Contact: *` is only allowed with Expires: 0 (RFC 3261 §10.3 step 6).
    phase("wildcard Contact with a non-zero Expires: 400");
    let r = c.request(&reg("wild").set("Contact", "*"));
    assert_eq!(r.status, 400, "{}", r.raw);

    // A request whose datagram ends before its Content-Length says is
    // truncated: "the element SHOULD generate a 400" (RFC 3261 §18.3).
    phase("Content-Length beyond the datagram: 400");
    let r = c.request(&reg("short").set("Content-Length", "500"));
    assert_eq!(r.status, 400, "{}", r.raw);
    assert_unbound("short");

    // The same client, right after: a correct REGISTER still works.
    phase("a correct REGISTER afterwards: 200");
    let r = c.request(&reg("fine"));
    assert_eq!(r.status, 200, "{}", r.raw);
    node.assert_running();
}

#[test]
fn oversized_datagrams_are_refused_and_the_node_keeps_serving() {
    let mut node = Node::start("[sip]\nmax_message_size = 4096");
    let c = UdpClient::new(node.sip_udp());
    let padded = |user: &str, size: usize| {
        let r = Request::register(
            user,
            DOMAIN,
            &format!("<sip:{user}@{}>", c.local()),
            Some(3600),
            c.local(),
            "UDP",
        );
        let base = r.to_bytes().len() + "X-Pad: \r\n".len();
        r.with("X-Pad", &"a".repeat(size - base))
    };

    // Over the limit: dropped or refused (513), never processed.
    phase("a 6000-byte REGISTER with a 4096-byte limit is not accepted");
    let big = padded("big", 6000);
    assert_eq!(big.to_bytes().len(), 6000);
    match c.try_request(&big, Duration::from_secs(2)) {
        None => {}
        Some(r) => assert_eq!(r.status, 513, "an oversized REGISTER got:\n{}", r.raw),
    }
    let v = node.rpc_call("ul.lookup", json!(["location", "big@example.com"]));
    assert!(
        json::error_code(&v).is_some(),
        "the oversized REGISTER bound: {v}"
    );

    // Just under the limit is served: the limit is the configured one.
    phase("a 4000-byte REGISTER is served");
    let ok = padded("fits", 4000);
    let r = c.request(&ok);
    assert_eq!(r.status, 200, "{}", r.raw);
    node.assert_running();
}
