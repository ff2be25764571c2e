//! The glue over a real (temporary) location store with a manual clock.

use super::*;
use crate::auth::{Algorithm, DigestInput, response};
use crate::testutil::*;
use crate::{AuthConfig, Stats, ha1};
use regmesh_location::{Location, ManualClock, Subscriber};
use std::sync::Arc;

struct Node {
    registrar: Registrar,
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

fn node_with(auth: bool) -> Node {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(now()));
    let location =
        Location::open(&dir.path().join("location"), node().id, clock.clone()).expect("open");
    let registrar = Registrar {
        policy: policy(),
        auth: AuthConfig {
            enabled: auth,
            realm: None,
            secret: b"handle-test-secret-0123".to_vec(),
            nonce_ttl: 300,
            match_aor: true,
            algorithms: vec![Algorithm::Md5, Algorithm::Sha256],
        },
        node: node(),
        stats: Arc::new(Stats::default()),
        location: Arc::new(location),
    };
    Node {
        registrar,
        clock,
        _dir: dir,
    }
}

impl Node {
    fn send(&self, bytes: &[u8]) -> Action {
        self.registrar.handle(bytes, source(), local())
    }

    /// Send and return the reply bytes, waiting for durability first.
    fn reply(&self, bytes: &[u8]) -> Vec<u8> {
        match self.send(bytes) {
            Action::Reply(b) => b,
            Action::ReplyAfterCommit(reply, commit) => {
                commit.wait_blocking().expect("durable");
                reply.into_reply()
            }
            Action::Drop => panic!("dropped"),
        }
    }

    /// Provision alice@example.com with password `secret`.
    fn add_alice(&self) {
        let (ha1_md5, ha1_sha256) = ha1("alice", "example.com", "secret");
        let put = self.registrar.location.put_subscriber(Subscriber {
            user: "alice".to_owned(),
            domain: "example.com".to_owned(),
            realm: "example.com".to_owned(),
            ha1_md5,
            ha1_sha256,
        });
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(put)
            .expect("subscriber stored");
    }

    fn stat(&self, name: &str) -> u64 {
        self.registrar
            .stats
            .snapshot()
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
            .expect("counter")
    }
}

#[test]
fn register_waits_for_durability_then_lookup_redirects() {
    let n = node_with(false);
    let bytes = reg()
        .contact("<sip:alice@192.0.2.10:5062>;expires=60")
        .build();
    let action = n.send(&bytes);
    let Action::ReplyAfterCommit(reply, commit) = action else {
        panic!("a change must wait for its commit: {action:?}");
    };
    commit.wait_blocking().expect("durable");
    assert_eq!(resp(reply.reply()).status, 200);
    let fail = reply.failed();
    let f = resp(&fail);
    assert_eq!((f.status, f.reason), (503, "Service Unavailable"));
    assert_eq!(f.headers.get("Retry-After"), Some("30"));
    // The 503 built later from the 200 is the one the request itself gives.
    let Ok(Message::Request(req)) = regmesh_sip::parse(&bytes) else {
        panic!("request");
    };
    let direct = error_response(
        &req,
        source(),
        &to_tag(&req),
        &RegisterError::StoreUnavailable,
        &[],
    );
    assert_eq!(fail, direct);
    let stored = n.registrar.location.lookup("alice@example.com");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].contact, "sip:alice@192.0.2.10:5062");
    assert_eq!(n.stat("accepted_regs"), 1);

    // The retransmission changes nothing, so it is answered at once.
    let Action::Reply(again) = n.send(&bytes) else {
        panic!("retransmission needs no commit");
    };
    assert_eq!(resp(&again).status, 200);
    assert_eq!(n.stat("accepted_regs"), 2);

    let r = n.reply(&request("INVITE", "sip:alice@example.com", &[]));
    let r = resp(&r);
    assert_eq!(r.status, 302);
    assert_eq!(all(&r, "Contact"), vec!["<sip:alice@192.0.2.10:5062>"]);
    assert_eq!((n.stat("lookups"), n.stat("redirects")), (1, 1));

    // Time passes on the store's clock: the binding expires.
    n.clock.advance_secs(61);
    let r = n.reply(&request("INVITE", "sip:alice@example.com", &[]));
    assert_eq!(resp(&r).status, 404);
    assert_eq!(n.stat("not_found"), 1);
}

#[test]
fn garbage_responses_and_via_less_requests_are_dropped_and_counted() {
    let n = node_with(false);
    assert!(matches!(n.send(b"\x00\x01garbage\r\n\r\n"), Action::Drop));
    assert!(matches!(
        n.send(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCall-ID: x\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n"),
        Action::Drop
    ));
    let no_via = String::from_utf8(reg().build())
        .expect("utf8")
        .replace(
            "Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK-reg-1;rport\r\n",
            "",
        )
        .into_bytes();
    assert!(matches!(n.send(&no_via), Action::Drop));
    assert!(matches!(
        n.send(&request("ACK", "sip:alice@example.com", &[])),
        Action::Drop
    ));
    assert_eq!(n.stat("bad_messages"), 2);
    assert_eq!(n.stat("dropped"), 4);
}

#[test]
fn malformed_register_gets_400_and_is_counted() {
    let n = node_with(false);
    let bad = String::from_utf8(reg().contact("<sip:a@b>").build())
        .expect("utf8")
        .replace("Call-ID: call-1@ua.example.com\r\n", "")
        .into_bytes();
    let r = n.reply(&bad);
    let r = resp(&r);
    assert_eq!((r.status, r.reason), (400, "Bad Request - Missing Call-ID"));
    assert_eq!(n.stat("bad_messages"), 1);
    assert_eq!(n.stat("rejected_regs"), 1);
    // A policy refusal is rejected but not a bad message.
    let r = n.reply(&reg().contact("<sip:a@b>;expires=5").build());
    assert_eq!(resp(&r).status, 423);
    assert_eq!((n.stat("rejected_regs"), n.stat("bad_messages")), (2, 1));
}

#[test]
fn options_to_the_node_answers_200() {
    let n = node_with(false);
    let r = n.reply(&request("OPTIONS", "sip:127.0.0.1", &[]));
    assert_eq!(resp(&r).status, 200);
    assert_eq!(n.stat("options"), 1);
}

fn nonce_of(challenge: &str) -> String {
    challenge
        .split("nonce=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("nonce")
        .to_owned()
}

fn authorization(nonce: &str, nc: &str, password: &str) -> String {
    let (ha1_md5, _) = ha1("alice", "example.com", password);
    let resp = response(&DigestInput {
        algorithm: Algorithm::Md5,
        ha1: &ha1_md5,
        nonce,
        method: "REGISTER",
        uri: "sip:example.com",
        qop: Some(("auth", nc, "abcdef")),
    });
    format!(
        "Authorization: Digest username=\"alice\", realm=\"example.com\", nonce=\"{nonce}\", uri=\"sip:example.com\", response=\"{resp}\", algorithm=MD5, qop=auth, nc={nc}, cnonce=\"abcdef\""
    )
}

#[test]
fn digest_auth_challenge_then_accept() {
    // RFC 3261 §22.2: 401 with challenges, then the request again with credentials.
    let n = node_with(true);
    n.add_alice();

    let first = n.reply(&reg().contact("<sip:alice@192.0.2.10:5062>").build());
    let r = resp(&first);
    assert_eq!((r.status, r.reason), (401, "Unauthorized"));
    let challenges = all(&r, "WWW-Authenticate");
    assert_eq!(challenges.len(), 2);
    // In the configured order: MD5 first, for UAs that read only the first.
    assert!(challenges[0].contains("algorithm=MD5"));
    assert!(challenges[1].contains("algorithm=SHA-256"));
    assert!(n.registrar.location.lookup("alice@example.com").is_empty());
    let nonce = nonce_of(challenges[0]);

    let second = reg()
        .cseq(2)
        .contact("<sip:alice@192.0.2.10:5062>")
        .header(&authorization(&nonce, "00000001", "secret"))
        .build();
    assert_eq!(resp(&n.reply(&second)).status, 200);
    assert_eq!(n.registrar.location.lookup("alice@example.com").len(), 1);
    assert_eq!(n.registrar.stats.tracked_nonces(), 1);

    // A retransmission of the authorised request (same bytes, same nc) gets
    // the same 200 (RFC 3261 §10.3 step 7), not a challenge, and changes nothing.
    let before = n.registrar.location.lookup("alice@example.com");
    assert_eq!(resp(&n.reply(&second)).status, 200);
    assert_eq!(n.registrar.location.lookup("alice@example.com"), before);

    // The same credentials again are a replay: a fresh challenge, nothing changes.
    let replay = reg()
        .cseq(3)
        .contact("<sip:alice@192.0.2.10:5062>;expires=0")
        .header(&authorization(&nonce, "00000001", "secret"))
        .build();
    assert_eq!(resp(&n.reply(&replay)).status, 401);
    assert_eq!(n.registrar.location.lookup("alice@example.com").len(), 1);

    // A wrong password is refused and counted.
    let wrong = reg()
        .cseq(4)
        .contact("<sip:alice@192.0.2.10:5062>")
        .header(&authorization(&nonce, "00000002", "guess"))
        .build();
    assert_eq!(resp(&n.reply(&wrong)).status, 401);

    // Later the nonce is stale: stale=true, so the phone retries silently.
    n.clock.advance_secs(301);
    let late = reg()
        .cseq(5)
        .contact("<sip:alice@192.0.2.10:5062>")
        .header(&authorization(&nonce, "00000003", "secret"))
        .build();
    let r = n.reply(&late);
    let r = resp(&r);
    assert_eq!(r.status, 401);
    assert!(
        all(&r, "WWW-Authenticate")
            .iter()
            .all(|c| c.ends_with("stale=true"))
    );

    assert_eq!(n.stat("auth_challenges"), 4);
    assert_eq!(n.stat("auth_failures"), 2);
    // The original and its retransmission.
    assert_eq!(n.stat("accepted_regs"), 2);
    assert_eq!(n.stat("rejected_regs"), 0);
}

#[test]
fn to_tag_is_stable_per_call_id_and_from_tag() {
    let parse = |b: &[u8]| -> String {
        let Ok(Message::Request(r)) = regmesh_sip::parse(b) else {
            panic!("parse");
        };
        to_tag(&r)
    };
    let a = parse(&reg().build());
    assert_eq!(a, parse(&reg().cseq(9).build()));
    assert_ne!(a, parse(&reg().call_id("another-call").build()));
    assert_eq!(a.len(), 16);
}

/// The tag is the 64-bit FNV-1a of `call-id \0 from-tag` in 16 lowercase
/// hex digits, leading zeros kept.
#[test]
fn tag_of_is_fnv1a_in_sixteen_hex_digits() {
    let fnv = |s: &[u8]| {
        s.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    };
    for (call_id, from_tag) in [("", ""), ("a84b4c76e66710", "1928301774"), ("x", "")] {
        let mut input = call_id.as_bytes().to_vec();
        input.push(0);
        input.extend_from_slice(from_tag.as_bytes());
        assert_eq!(tag_of(call_id, from_tag), format!("{:016x}", fnv(&input)));
    }
    // One whose hash has leading zero nibbles still gives 16 digits.
    let short = (0u32..)
        .map(|i| i.to_string())
        .find(|c| fnv(format!("{c}\0").as_bytes()) >> 60 == 0)
        .expect("some input hashes below 2^60");
    let tag = tag_of(&short, "");
    assert!(tag.starts_with('0') && tag.len() == 16, "{tag}");
}

#[test]
fn unhealthy_store_answers_503_with_retry_after() {
    let n = node_with(false);
    let ok = n.reply(&request("OPTIONS", "sip:example.com", &[]));
    assert_eq!(
        resp(&ok).status,
        200,
        "a healthy node answers health checks"
    );
    n.registrar.location.close().expect("close");
    let down = n.reply(&request("OPTIONS", "sip:example.com", &[]));
    assert_eq!(
        resp(&down).status,
        503,
        "OPTIONS health checks see the store down"
    );
    let r = n.reply(&reg().contact("<sip:a@b>").build());
    let r = resp(&r);
    assert_eq!((r.status, r.reason), (503, "Service Unavailable"));
    assert_eq!(r.headers.get("Retry-After"), Some("30"));
    assert_eq!(n.stat("rejected_regs"), 1);
}

#[test]
fn shedding_turns_new_work_away_with_a_spread_retry_after_but_completes_challenges() {
    let n = node_with(true);
    n.add_alice();
    let shed =
        |bytes: &[u8]| match n
            .registrar
            .handle_under(bytes, source(), local(), Load::Shedding)
        {
            Action::Reply(b) => b,
            Action::ReplyAfterCommit(reply, commit) => {
                commit.wait_blocking().expect("durable");
                reply.into_reply()
            }
            Action::Drop => panic!("dropped"),
        };

    // A challenge issued before the overload...
    let first = n.reply(&reg().contact("<sip:alice@192.0.2.10:5062>").build());
    let nonce = nonce_of(all(&resp(&first), "WWW-Authenticate")[0]);

    // ...new REGISTERs and lookups get 503 with Retry-After, same dialog
    // fields as any answer (RFC 3261 §8.2.6.2), and nothing is written.
    let mut retry_after = std::collections::BTreeSet::new();
    for i in 0..20 {
        let r = shed(
            &reg()
                .call_id(&format!("storm-{i}@192.0.2.10"))
                .contact("<sip:alice@192.0.2.10:5062>")
                .build(),
        );
        let r = resp(&r);
        assert_eq!(
            (r.status, r.reason),
            (503, "Service Unavailable - Overloaded")
        );
        assert_eq!(
            r.headers.get("Call-ID"),
            Some(format!("storm-{i}@192.0.2.10").as_str())
        );
        let secs: u64 = r
            .headers
            .get("Retry-After")
            .and_then(|v| v.parse().ok())
            .expect("Retry-After in seconds");
        assert!((10..60).contains(&secs), "{secs}");
        retry_after.insert(secs);
    }
    assert!(
        retry_after.len() > 5,
        "clients come back spread out: {retry_after:?}"
    );
    assert!(n.registrar.location.lookup("alice@example.com").is_empty());
    // A lookup costs about what a refusal would: it is served (nobody is
    // registered yet, so 404).
    let invite = shed(&request("INVITE", "sip:alice@example.com", &[]));
    assert_eq!(resp(&invite).status, 404);

    // The answer to the earlier challenge completes: the 401 was work done.
    let second = reg()
        .cseq(2)
        .contact("<sip:alice@192.0.2.10:5062>")
        .header(&authorization(&nonce, "00000001", "secret"))
        .build();
    assert_eq!(resp(&shed(&second)).status, 200);
    assert_eq!(n.registrar.location.lookup("alice@example.com").len(), 1);
    // An ACK is never answered, overloaded or not.
    assert!(matches!(
        n.registrar.handle_under(
            &request("ACK", "sip:alice@example.com", &[]),
            source(),
            local(),
            Load::Shedding
        ),
        Action::Drop
    ));
    assert_eq!(n.stat("overload_rejected"), 20);
    assert_eq!(n.stat("accepted_regs"), 1);

    // Once the load is normal again the same new REGISTER is challenged.
    let after = n.reply(
        &reg()
            .call_id("storm-0@192.0.2.10")
            .contact("<sip:alice@192.0.2.10:5062>")
            .build(),
    );
    assert_eq!(resp(&after).status, 401);
}

/// Without auth a REGISTER is one request whose commit and answer are the
/// store writer's work: refusing it saves the overloaded receive thread
/// nothing, so it is served even when the transport sheds.
#[test]
fn shedding_without_auth_refuses_nothing() {
    let n = node_with(false);
    let r = match n.registrar.handle_under(
        &reg().contact("<sip:alice@192.0.2.10:5062>").build(),
        source(),
        local(),
        Load::Shedding,
    ) {
        Action::ReplyAfterCommit(reply, commit) => {
            commit.wait_blocking().expect("durable");
            reply.into_reply()
        }
        other => panic!("not registered: {other:?}"),
    };
    assert_eq!(resp(&r).status, 200);
    assert_eq!(n.registrar.location.lookup("alice@example.com").len(), 1);
    assert_eq!(n.stat("overload_rejected"), 0);
}

mod no_panic {
    //! Anything from the network, mutated valid requests included, gets an
    //! answer or is dropped; it never panics the registrar (issue: "No
    //! input from the network can panic the process").
    use super::*;
    use proptest::prelude::*;

    fn mutate(base: &[u8], edits: &[(usize, u8)], cut: usize) -> Vec<u8> {
        let mut b = base.to_vec();
        for &(i, v) in edits {
            if !b.is_empty() {
                let i = i % b.len();
                b[i] = v;
            }
        }
        b.truncate(cut.max(1).min(b.len()));
        b
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let n = node_with(true);
            let _ = n.send(&bytes);
        }

        #[test]
        fn mutated_registers_never_panic(
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
            cut in 1usize..2000,
            auth in any::<bool>(),
        ) {
            let n = node_with(auth);
            let base = reg()
                .contact("<sip:alice@192.0.2.10:5062>;expires=60;q=0.5;+sip.instance=\"<urn:uuid:1>\";reg-id=1")
                .header("Path: <sip:edge.example.com;lr>")
                .header("Supported: path, outbound")
                .build();
            let bytes = mutate(&base, &edits, cut);
            if let Action::ReplyAfterCommit(_, commit) = n.send(&bytes) {
                let _ = commit.wait_blocking();
            }
            // Other methods go through the redirect path.
            let other = mutate(&request("INVITE", "sip:alice@example.com", &[]), &edits, cut);
            let _ = n.send(&other);
        }
    }
}
