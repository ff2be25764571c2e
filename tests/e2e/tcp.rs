//! SIP over TCP: Content-Length framing, persistent connections, replies on
//! the connection the request came in on (RFC 3261 §18.2.2, §18.3).

use regmesh_e2e::sip::{Request, TcpClient};
use regmesh_e2e::sipp::{Sipp, User, users};
use regmesh_e2e::{Node, json, phase};
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Duration;

const DOMAIN: &str = "example.com";

fn reg(c: &TcpClient, user: &str) -> Request {
    Request::register(
        user,
        DOMAIN,
        &format!("<sip:{user}@{};transport=tcp>", c.local()),
        Some(3600),
        c.local(),
        "TCP",
    )
}

fn addresses(node: &Node, aor: &str) -> Vec<String> {
    let v = node.rpc("ul.lookup", json!(["location", aor]));
    json::contacts(&v)
        .iter()
        .map(|c| json::address(c).to_owned())
        .collect()
}

#[test]
fn registers_on_one_persistent_connection_get_replies_on_it() {
    let node = Node::start("");
    let mut c = TcpClient::connect(node.sip_tcp());

    // Two REGISTERs one after the other on the same connection: each is
    // answered on it, so the connection outlives a transaction.
    phase("two sequential REGISTERs on one connection");
    for user in ["alice", "bob"] {
        let r = reg(&c, user);
        c.send_raw(&r.to_bytes());
        let resp = c
            .recv(Duration::from_secs(5))
            .unwrap_or_else(|| panic!("no reply on the connection for {user}"));
        assert_eq!(resp.status, 200, "{}", resp.raw);
        assert_eq!(resp.call_id(), r.call_id());
    }
    assert_eq!(
        addresses(&node, "alice@example.com"),
        [format!("sip:alice@{};transport=tcp", c.local())]
    );
    assert_eq!(
        addresses(&node, "bob@example.com"),
        [format!("sip:bob@{};transport=tcp", c.local())]
    );

    // Framing is by Content-Length, not by segment: two messages in one
    // write and one message split across writes are each answered once.
    phase("pipelined and split messages on the same connection");
    let (r1, r2, r3) = (reg(&c, "carol"), reg(&c, "dave"), reg(&c, "erin"));
    let mut both = r1.to_bytes();
    both.extend(r2.to_bytes());
    c.send_raw(&both);
    let third = r3.to_bytes();
    let (head, tail) = third.split_at(third.len() / 2);
    c.send_raw(head);
    std::thread::sleep(Duration::from_millis(100));
    c.send_raw(tail);
    let mut got = BTreeSet::new();
    for _ in 0..3 {
        let resp = c
            .recv(Duration::from_secs(5))
            .expect("a reply for each pipelined REGISTER");
        assert_eq!(resp.status, 200, "{}", resp.raw);
        got.insert(resp.call_id().to_owned());
    }
    let want: BTreeSet<String> = [r1.call_id(), r2.call_id(), r3.call_id()].into();
    assert_eq!(got, want);
    assert!(
        c.recv(Duration::from_millis(300)).is_none(),
        "an extra reply arrived"
    );

    // OPTIONS to the node over TCP too.
    phase("OPTIONS over TCP");
    let target = node.sip_tcp();
    let opt = Request::new(
        "OPTIONS",
        &format!("sip:{target};transport=tcp"),
        "probe@example.com",
        c.local(),
        "TCP",
    )
    .set("To", &format!("<sip:{target}>"));
    c.send_raw(&opt.to_bytes());
    let resp = c.recv(Duration::from_secs(5)).expect("OPTIONS reply");
    assert_eq!(resp.status, 200, "{}", resp.raw);
}

#[test]
fn sipp_registers_over_one_tcp_connection() {
    let node = Node::start("");
    let all = users("t", DOMAIN, 300);

    // SIPp's t1 mode: every call on one TCP connection.
    phase("SIPp registers 300 AoRs over TCP");
    Sipp::new("register.xml", node.sip_tcp())
        .tcp()
        .users(&all)
        .rate(300)
        .run()
        .assert_all_succeeded(all.len());
    let found = json::aors(&node.rpc("ul.dump", json!([])));
    let expected: BTreeSet<String> = all.iter().map(User::aor).collect();
    assert_eq!(found, expected);
}

#[test]
fn an_oversized_tcp_message_is_refused_and_others_still_served() {
    let node = Node::start("[sip]\nmax_message_size = 4096");

    // A message announcing more body than the limit cannot be framed
    // safely: refused (an error reply or a closed connection), never bound.
    phase("a REGISTER with Content-Length 100000 over a 4096 limit");
    let mut c = TcpClient::connect(node.sip_tcp());
    let mut big = reg(&c, "big").set("Content-Length", "100000").to_bytes();
    big.extend(std::iter::repeat_n(b'a', 5000));
    c.send_raw(&big);
    match c.recv(Duration::from_secs(3)) {
        None => {}
        Some(r) => assert!(
            matches!(r.status, 400 | 413 | 513),
            "oversized TCP message got:\n{}",
            r.raw
        ),
    }
    assert!(
        c.closed_within(Duration::from_secs(5)),
        "the connection stayed open after an unframeable message"
    );
    let v = node.rpc_call("ul.lookup", json!(["location", "big@example.com"]));
    assert!(json::error_code(&v).is_some(), "{v}");

    // A new connection is served normally.
    phase("a fresh connection still works");
    let mut c = TcpClient::connect(node.sip_tcp());
    let r = reg(&c, "fine");
    c.send_raw(&r.to_bytes());
    let resp = c
        .recv(Duration::from_secs(5))
        .expect("reply on a fresh connection");
    assert_eq!(resp.status, 200, "{}", resp.raw);
}
