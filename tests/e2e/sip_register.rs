//! Registration at scale with SIPp over UDP, then lookups over JSON-RPC and
//! over SIP (302 / 404 / OPTIONS), then unregistration.

use regmesh_e2e::sip::{Request, UdpClient};
use regmesh_e2e::sipp::{Sipp, User, users};
use regmesh_e2e::{Node, json, phase};
use serde_json::json;
use std::collections::BTreeSet;

const DOMAIN: &str = "example.com";

/// `host:port` of a contact URI like `sip:u@127.0.0.1:5060;transport=UDP`.
fn host_port(address: &str) -> String {
    let after_at = address
        .split_once('@')
        .unwrap_or_else(|| panic!("contact {address} has no user part"))
        .1;
    after_at
        .split([';', '>', '?'])
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn invite(client: &UdpClient, target: &str) -> Request {
    Request::new(
        "INVITE",
        &format!("sip:{target}"),
        "caller@example.com",
        client.local(),
        "UDP",
    )
    .set("To", &format!("<sip:{target}>"))
    .with("Contact", &format!("<sip:caller@{}>", client.local()))
}

#[test]
fn sipp_registers_thousands_of_aors_lookups_find_them_and_unregister_removes_them() {
    let node = Node::start("");
    let all = users("u", DOMAIN, 2000);

    // Thousands of distinct AoRs at a good rate: every REGISTER must be
    // answered 200 listing its binding (the scenario checks `expires=`).
    phase("SIPp registers 2000 distinct AoRs over UDP");
    Sipp::new("register.xml", node.sip_udp())
        .users(&all)
        .rate(500)
        .limit(200)
        .run()
        .assert_all_succeeded(all.len());

    // The table must hold exactly what was acknowledged: every AoR, one
    // binding each, nothing else.
    phase("ul.dump lists every AoR once");
    let dump = node.rpc("ul.dump", json!([]));
    let expected: BTreeSet<String> = all.iter().map(User::aor).collect();
    let records = json::records(&dump);
    let found: BTreeSet<String> = records.keys().cloned().collect();
    assert_eq!(found.len(), expected.len(), "ul.dump AoR count");
    assert_eq!(found, expected, "ul.dump AoRs");
    for (aor, cs) in &records {
        assert_eq!(cs.len(), 1, "{aor} should have exactly one binding: {cs:?}");
    }

    // Kamailio-named statistics must count the same thing.
    phase("stats.get_statistics counts the registrations");
    let stats = json::statistics(&node.rpc("stats.get_statistics", json!(["all"])));
    assert_eq!(json::stat(&stats, "accepted_regs"), 2000, "{stats:?}");
    assert_eq!(json::stat(&stats, "rejected_regs"), 0, "{stats:?}");
    assert_eq!(json::stat(&stats, "registered_users"), 2000, "{stats:?}");

    // ul.lookup must return the contact SIPp registered, with the expiry it asked for.
    phase("ul.lookup one AoR");
    let one = node.rpc("ul.lookup", json!(["location", "u01234@example.com"]));
    assert_eq!(one["AoR"], "u01234@example.com", "{one}");
    let cs = json::contacts(&one);
    assert_eq!(cs.len(), 1, "{one}");
    let addr = json::address(&cs[0]).to_owned();
    assert!(addr.starts_with("sip:u01234@127.0.0.1:"), "contact {addr}");
    let exp = json::expires(&cs[0]);
    assert!(
        (3540..=3600).contains(&exp),
        "remaining expires {exp}, registered with 3600"
    );
    let sipp_contact = host_port(&addr);

    // The node is a redirect server: a request for a registered AoR gets
    // 302 with its contact (RFC 3261 §8.3 / §21.3.3).
    phase("INVITE to a registered AoR gets 302 with its contact");
    let c = UdpClient::new(node.sip_udp());
    let inv = invite(&c, "u00042@example.com");
    let r = c.request(&inv);
    c.send_raw(&inv.ack_for(&r).to_bytes());
    assert_eq!(r.status, 302, "{}", r.raw);
    let contacts = r.contacts();
    assert_eq!(contacts.len(), 1, "{}", r.raw);
    assert!(
        contacts[0].contains(&format!("sip:u00042@{sipp_contact}")),
        "302 Contact {contacts:?} should be u00042's binding at {sipp_contact}"
    );

    // An AoR nobody registered: 404, never a redirect to nowhere.
    phase("INVITE to an unknown AoR gets 404");
    let inv = invite(&c, "nobody@example.com");
    let r = c.request(&inv);
    c.send_raw(&inv.ack_for(&r).to_bytes());
    assert_eq!(r.status, 404, "{}", r.raw);

    // OPTIONS to the node itself (no user part) is the load balancer's health check.
    phase("OPTIONS to the node gets 200");
    let target = node.sip_udp();
    let opt = Request::new(
        "OPTIONS",
        &format!("sip:{target}"),
        "probe@example.com",
        c.local(),
        "UDP",
    )
    .set("To", &format!("<sip:{target}>"));
    let r = c.request(&opt);
    assert_eq!(r.status, 200, "{}", r.raw);

    // Expires: 0 removes a binding (RFC 3261 §10.3 step 6); the AoRs
    // unregistered must vanish and the others stay.
    phase("SIPp unregisters half of the AoRs");
    let (gone, kept) = all.split_at(1000);
    let gone: Vec<User> = gone
        .iter()
        .map(|u| User {
            contact: sipp_contact.clone(),
            ..u.clone()
        })
        .collect();
    Sipp::new("unregister.xml", node.sip_udp())
        .users(&gone)
        .rate(500)
        .limit(200)
        .run()
        .assert_all_succeeded(gone.len());
    let dump = node.rpc("ul.dump", json!([]));
    let found = json::aors(&dump);
    let expected: BTreeSet<String> = kept.iter().map(User::aor).collect();
    assert_eq!(
        found.len(),
        kept.len(),
        "ul.dump AoR count after unregistering"
    );
    assert_eq!(found, expected, "ul.dump AoRs after unregistering");
    let stats = json::statistics(&node.rpc("stats.get_statistics", json!(["all"])));
    assert_eq!(json::stat(&stats, "registered_users"), 1000, "{stats:?}");

    // An unregistered AoR is unknown to both lookups.
    phase("an unregistered AoR is gone from ul.lookup and SIP lookup");
    let resp = node.rpc_call("ul.lookup", json!(["location", "u00000@example.com"]));
    assert!(
        json::error_code(&resp).is_some(),
        "ul.lookup of an unregistered AoR: {resp}"
    );
    let inv = invite(&c, "u00000@example.com");
    let r = c.request(&inv);
    c.send_raw(&inv.ack_for(&r).to_bytes());
    assert_eq!(r.status, 404, "{}", r.raw);
}

/// The `expires` parameter of a Contact value, if any.
fn expires_param(contact: &str) -> Option<u32> {
    contact
        .split(';')
        .skip(1)
        .find_map(|p| p.trim().strip_prefix("expires="))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn register_rules_hold_over_the_wire() {
    let node = Node::start("[registrar]\nmin_expires = 60\nmax_expires = 7200");
    let c = UdpClient::new(node.sip_udp());
    let reg = |port: u16, expires: Option<u32>| {
        Request::register(
            "alice",
            DOMAIN,
            &format!("<sip:alice@127.0.0.1:{port}>"),
            expires,
            c.local(),
            "UDP",
        )
    };
    let find = |r: &regmesh_e2e::sip::Response, port: u16| -> Option<u32> {
        r.contacts()
            .iter()
            .find(|v| v.contains(&format!("sip:alice@127.0.0.1:{port}")))
            .map(|v| expires_param(v).unwrap_or_else(|| panic!("no expires param in {v}")))
    };

    // Shorter than min_expires: 423 with Min-Expires, nothing bound (RFC 3261 §10.3 step 7).
    phase("Expires below min_expires: 423 with Min-Expires");
    let r = c.request(&reg(5071, Some(30)));
    assert_eq!(r.status, 423, "{}", r.raw);
    assert_eq!(r.header("Min-Expires"), Some("60"), "{}", r.raw);
    let v = node.rpc_call("ul.lookup", json!(["location", "alice@example.com"]));
    assert!(json::error_code(&v).is_some(), "a 423 bound something: {v}");

    // Longer than max_expires: accepted and shortened; the 200 says by how much
    // and carries a Date (RFC 3261 §10.3 step 8).
    phase("Expires above max_expires: clamped");
    let r = c.request(&reg(5071, Some(100_000)));
    assert_eq!(r.status, 200, "{}", r.raw);
    assert_eq!(find(&r, 5071), Some(7200), "{}", r.raw);
    assert!(r.header("Date").is_some(), "200 without Date:\n{}", r.raw);

    // A second contact; the 200 lists every binding of the AoR.
    phase("a second contact: the 200 lists both");
    let r = c.request(&reg(5072, Some(600)));
    assert_eq!(r.status, 200, "{}", r.raw);
    let e = find(&r, 5072).expect("the new binding is listed");
    assert!((595..=600).contains(&e), "{}", r.raw);
    assert!(
        find(&r, 5071).is_some(),
        "the older binding is missing:\n{}",
        r.raw
    );

    // No Contact: a query that returns the current bindings and changes nothing.
    phase("REGISTER without Contact lists the bindings");
    let r = c.request(&reg(0, None).without("Contact"));
    assert_eq!(r.status, 200, "{}", r.raw);
    assert_eq!(r.contacts().len(), 2, "{}", r.raw);

    // `Contact: *` with Expires: 0 removes every binding of the AoR (step 6).
    phase("Contact: * with Expires: 0 removes all");
    let r = c.request(&reg(0, Some(0)).set("Contact", "*"));
    assert_eq!(r.status, 200, "{}", r.raw);
    assert!(r.contacts().is_empty(), "{}", r.raw);
    let v = node.rpc_call("ul.lookup", json!(["location", "alice@example.com"]));
    assert!(
        json::error_code(&v).is_some(),
        "bindings left after `*`: {v}"
    );
}
