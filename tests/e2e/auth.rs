//! Digest authentication (RFC 3261 §22, RFC 7616 with RFC 2617 clients in
//! mind): subscribers provisioned over JSON-RPC, SIPp answering challenges,
//! and hand-computed digests for the refusals.

use regmesh_e2e::sip::{
    Request, UdpClient, auth_params, challenge_for, digest_authorization, digest_authorization_nc,
    md5_challenge, unique,
};
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
    // with 200 (the scenario fails a call on any other sequence). SIPp 3.6,
    // like many RFC 2617 phones, answers the topmost WWW-Authenticate and
    // knows only MD5: a node listing SHA-256 first fails here with
    // "createAuthHeader: authentication must use MD5 or AKAv1-MD5".
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

#[test]
fn sha256_digest_replayed_nonce_counts_and_stale_nonces() {
    let node = Node::start(&format!("{AUTH}nonce_ttl = \"2s\"\n"));
    node.rpc("subscriber.add", json!(["alice@example.com", "alice-pw"]));
    let c = UdpClient::new(node.sip_udp());
    let reg = Request::register(
        "alice",
        DOMAIN,
        &contact(&c, "alice"),
        Some(3600),
        c.local(),
        "UDP",
    );
    let answer = |ch: &str, nc: u32, cnonce: &str| {
        digest_authorization_nc(ch, "alice", "alice-pw", "REGISTER", &reg.uri, nc, cnonce)
    };

    // RFC 7616: the SHA-256 challenge, answered with SHA-256, is accepted.
    phase("SHA-256 digest is accepted");
    let r = c.request(&reg);
    assert_eq!(r.status, 401, "{}", r.raw);
    let ch = challenge_for(&r, "SHA-256");
    let cnonce = unique("cn");
    let first = reg
        .clone()
        .next()
        .with("Authorization", &answer(&ch, 1, &cnonce));
    let r = c.request(&first);
    assert_eq!(r.status, 200, "{}", r.raw);

    // The same nonce-count again is a replay (RFC 7616 §3.4.1 / §5.3): a
    // new request (higher CSeq) carrying the old credentials is refused.
    phase("a replayed nonce-count is refused");
    let replay = first.next();
    let r = c.request(&replay);
    assert!(
        matches!(r.status, 401 | 403),
        "replayed nc=00000001 got:\n{}",
        r.raw
    );
    // ...while the next count on the same nonce is fine.
    let second = replay.next().set("Authorization", &answer(&ch, 2, &cnonce));
    let r = c.request(&second);
    assert_eq!(r.status, 200, "nc=00000002 on the same nonce:\n{}", r.raw);

    // An expired nonce gets a fresh challenge with stale=true (RFC 7616
    // §3.3), so the phone retries without asking its user; the fresh nonce works.
    phase("an expired nonce: 401 stale=true, and the new nonce works");
    std::thread::sleep(std::time::Duration::from_millis(3200));
    let late = second.next().set("Authorization", &answer(&ch, 3, &cnonce));
    let r = c.request(&late);
    assert_eq!(
        r.status, 401,
        "a request with an expired nonce got:\n{}",
        r.raw
    );
    let fresh = challenge_for(&r, "SHA-256");
    let p = auth_params(&fresh);
    let get = |k: &str| p.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert!(
        get("stale").is_some_and(|s| s.eq_ignore_ascii_case("true")),
        "no stale=true in {fresh}"
    );
    assert_ne!(
        get("nonce"),
        auth_params(&ch)
            .into_iter()
            .find(|(n, _)| n == "nonce")
            .map(|(_, v)| v)
    );
    let retry = late.next().set(
        "Authorization",
        &digest_authorization(&fresh, "alice", "alice-pw", "REGISTER", &reg.uri),
    );
    let r = c.request(&retry);
    assert_eq!(r.status, 200, "{}", r.raw);
}
