//! Digest authentication (RFC 3261 §22, RFC 7616 with RFC 2617 clients in
//! mind): subscribers provisioned over JSON-RPC, SIPp answering challenges,
//! and hand-computed digests for the refusals.

use regmesh_e2e::sip::{Request, UdpClient, auth_params, digest_authorization, md5_challenge};
use regmesh_e2e::sipp::{Sipp, User, users};
use regmesh_e2e::{Node, json, phase};
use serde_json::json;
use std::collections::BTreeSet;

const DOMAIN: &str = "example.com";

const AUTH: &str = r#"
[auth]
enabled = true
realm = "example.com"
secret = "e2e-nonce-signing-secret-0123456789abcdef"
"#;

fn contact(c: &UdpClient, user: &str) -> String {
    format!("<sip:{user}@{}>", c.local())
}

fn bound(node: &Node, aor: &str) -> bool {
    let resp = node.rpc_call("ul.lookup", json!(["location", aor]));
    match json::error_code(&resp) {
        Some(_) => false,
        None => !json::contacts(&resp["result"]).is_empty(),
    }
}

/// REGISTER `user` with credentials of `auth_user`/`password` answering a
/// fresh challenge; returns the final status and the challenge's response.
fn register_with(
    node: &Node,
    c: &UdpClient,
    user: &str,
    auth_user: &str,
    password: &str,
) -> regmesh_e2e::sip::Response {
    let reg = Request::register(
        user,
        DOMAIN,
        &contact(c, user),
        Some(3600),
        c.local(),
        "UDP",
    );
    let r = c.request(&reg);
    assert_eq!(
        r.status, 401,
        "an unauthenticated REGISTER must be challenged:\n{}",
        r.raw
    );
    assert!(
        !bound(node, &format!("{user}@{DOMAIN}")),
        "a challenged REGISTER bound {user}"
    );
    let challenge = md5_challenge(&r);
    let authz = digest_authorization(&challenge, auth_user, password, "REGISTER", &reg.uri);
    c.request(&reg.next().with("Authorization", &authz))
}

#[test]
fn sipp_answers_digest_challenges_401_then_200() {
    let node = Node::start(AUTH);
    let subs = users("a", DOMAIN, 200);

    // Subscribers are provisioned over JSON-RPC before anyone registers.
    phase("subscriber.add for 200 users over RPC");
    for u in &subs {
        node.rpc("subscriber.add", json!([u.aor(), u.password]));
    }

    // Each REGISTER must be challenged with 401 and the answer accepted
    // with 200 (the scenario fails a call on any other sequence).
    phase("SIPp register_auth.xml: 401 then 200 for every user");
    Sipp::new("register_auth.xml", node.sip_udp())
        .users(&subs)
        .auth_uri(DOMAIN)
        .rate(200)
        .run()
        .assert_all_succeeded(subs.len());

    // Only authenticated REGISTERs bind: every user, once.
    phase("every authenticated user is bound");
    let found = json::aors(&node.rpc("ul.dump", json!([])));
    let expected: BTreeSet<String> = subs.iter().map(User::aor).collect();
    assert_eq!(found, expected);
    let stats = json::statistics(&node.rpc("stats.get_statistics", json!(["all"])));
    assert_eq!(json::stat(&stats, "accepted_regs"), 200, "{stats:?}");
}

#[test]
fn wrong_passwords_and_foreign_credentials_are_refused_and_bind_nothing() {
    let mut node = Node::start(AUTH);
    node.rpc("subscriber.add", json!(["alice@example.com", "alice-pw"]));
    node.rpc("subscriber.add", json!(["bob@example.com", "bob-pw"]));
    let c = UdpClient::new(node.sip_udp());

    // The challenge must offer what an RFC 2617 phone understands: an MD5
    // digest in the configured realm with qop=auth.
    phase("the challenge names the realm and offers MD5 with qop=auth");
    let reg = Request::register(
        "alice",
        DOMAIN,
        &contact(&c, "alice"),
        Some(3600),
        c.local(),
        "UDP",
    );
    let r = c.request(&reg);
    assert_eq!(r.status, 401, "{}", r.raw);
    let p = auth_params(&md5_challenge(&r));
    let get = |k: &str| p.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("realm"), Some("example.com"), "{p:?}");
    assert!(get("nonce").is_some_and(|n| n.len() >= 8), "nonce: {p:?}");
    assert!(
        get("qop").is_some_and(|q| q.split(',').any(|q| q.trim() == "auth")),
        "qop: {p:?}"
    );

    // The digest computed here with the right password is accepted, so the
    // refusals below are about the credentials, not the computation.
    phase("the right password is accepted");
    let r = register_with(&node, &c, "alice", "alice", "alice-pw");
    assert_eq!(r.status, 200, "{}", r.raw);
    assert!(bound(&node, "alice@example.com"));

    // A wrong password must be refused and must not bind.
    phase("a wrong password is refused");
    let r = register_with(&node, &c, "bob", "bob", "not-bobs-pw");
    assert!(
        matches!(r.status, 401 | 403),
        "wrong password got:\n{}",
        r.raw
    );
    assert!(
        !bound(&node, "bob@example.com"),
        "bob bound with a wrong password"
    );

    // Someone else's valid credentials cannot register bob's AoR: the
    // authenticated user must be the AoR's user (match_aor is on by default).
    phase("alice's credentials cannot register bob");
    let r = register_with(&node, &c, "bob", "alice", "alice-pw");
    assert!(
        matches!(r.status, 401 | 403),
        "foreign credentials got:\n{}",
        r.raw
    );
    assert!(
        !bound(&node, "bob@example.com"),
        "bob bound with alice's credentials"
    );

    // A user that was never provisioned cannot register at all.
    phase("an unknown user is refused");
    let r = register_with(&node, &c, "carol", "carol", "anything");
    assert!(
        matches!(r.status, 401 | 403),
        "unknown user got:\n{}",
        r.raw
    );
    assert!(!bound(&node, "carol@example.com"));

    // Subscribers are persisted: after kill -9 the same password still works.
    phase("subscribers survive kill -9");
    node.kill9();
    node.restart();
    let c = UdpClient::new(node.sip_udp());
    let r = register_with(&node, &c, "bob", "bob", "bob-pw");
    assert_eq!(
        r.status, 200,
        "bob with the right password after restart:\n{}",
        r.raw
    );
    assert!(bound(&node, "bob@example.com"));
}
