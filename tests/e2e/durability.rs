//! Durability: a binding answered 200 OK is on disk before the answer, so it
//! survives `kill -9` with its original expiry; an expired binding does not
//! come back.

use regmesh_e2e::sip::{Request, UdpClient};
use regmesh_e2e::sipp::{Sipp, User, users};
use regmesh_e2e::{Node, json, now, phase, wait_for};
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Duration;

const DOMAIN: &str = "example.com";

fn lookup_expires(node: &Node, aor: &str) -> Option<i64> {
    let resp = node.rpc_call("ul.lookup", json!(["location", aor]));
    if json::error_code(&resp).is_some() {
        return None;
    }
    let cs = json::contacts(&resp["result"]);
    assert!(cs.len() <= 1, "{aor}: {resp}");
    cs.first().map(json::expires)
}

#[test]
fn every_acknowledged_binding_survives_kill_9_with_its_original_expiry() {
    let mut node = Node::start("");
    let c = UdpClient::new(node.sip_udp());

    // A reference binding whose remaining time is read just before the
    // kill, to check the restart keeps its absolute expiry (not a fresh one).
    phase("one hand-made REGISTER with Expires 1800, remaining time read");
    let reg = Request::register(
        "ref",
        DOMAIN,
        &format!("<sip:ref@{}>", c.local()),
        Some(1800),
        c.local(),
        "UDP",
    );
    let r = c.request(&reg);
    assert_eq!(r.status, 200, "{}", r.raw);
    let ref_before = lookup_expires(&node, "ref@example.com").expect("ref is bound");
    let t_ref = now();

    // Many registrations at a good rate, then SIGKILL the moment SIPp has
    // its last 200: nothing may be left in a buffer.
    phase("SIPp registers 1000 AoRs, then kill -9 at once");
    let all = users("d", DOMAIN, 1000);
    let t0 = now();
    let run = Sipp::new("register.xml", node.sip_udp())
        .users(&all)
        .rate(1000)
        .limit(200)
        .run();
    let t1 = now();
    node.kill9();
    run.assert_all_succeeded(all.len());

    // Every acknowledged binding must be back after the restart.
    phase("restart on the same data dir; every binding is present");
    node.restart();
    let ta = now();
    let dump = node.rpc("ul.dump", json!([]));
    let tb = now();
    let records = json::records(&dump);
    let mut expected: BTreeSet<String> = all.iter().map(User::aor).collect();
    expected.insert("ref@example.com".into());
    let found: BTreeSet<String> = records.keys().cloned().collect();
    let missing: Vec<_> = expected.difference(&found).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged AoRs lost across kill -9, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert_eq!(found, expected, "AoRs after restart");

    // ... with the expiry they were given, counted from when they were
    // registered (between t0 and t1), ±1 s for rounding: a restart must not
    // renew or shorten them.
    phase("expiries are the original ones");
    let lo = 3600.0 - (tb - t0).as_secs_f64() - 1.0;
    let hi = 3600.0 - (ta - t1).as_secs_f64() + 1.0;
    for u in &all {
        let cs = &records[&u.aor()];
        assert_eq!(cs.len(), 1, "{}: {cs:?}", u.aor());
        let e = json::expires(&cs[0]) as f64;
        assert!(
            lo <= e && e <= hi,
            "{} expires in {e} s after restart; expected {lo:.1}..={hi:.1}",
            u.aor()
        );
    }
    let ref_after = lookup_expires(&node, "ref@example.com").expect("ref is bound after restart");
    let waited = now().duration_since(t_ref).as_secs_f64();
    let want = ref_before as f64 - waited;
    assert!(
        (ref_after as f64 - want).abs() <= 1.5,
        "ref had {ref_before} s left before the kill, {ref_after} s after {waited:.1} s (expected ~{want:.0})"
    );
}

#[test]
fn bindings_acknowledged_before_a_mid_run_kill_9_survive() {
    let mut node = Node::start("");
    let all = users("m", DOMAIN, 1500);

    // Kill the node while SIPp is still registering: every REGISTER that
    // got its 200 before the kill must survive; the rest may or may not.
    phase("SIPp registers at 1000/s; kill -9 once 300 are accepted");
    let target = node.sip_udp();
    let sipp = {
        let all = all.clone();
        std::thread::spawn(move || {
            Sipp::new("register.xml", target)
                .users(&all)
                .rate(1000)
                // Enough concurrency that the calls caught by the kill
                // fail together after one receive timeout, not in a queue.
                .limit(1500)
                .recv_timeout(Duration::from_secs(1))
                .trace_messages()
                .run()
        })
    };
    // Wait until the node has accepted a good number, then kill. (The
    // counter moves when a REGISTER is accepted, a little before its 200
    // leaves after the commit, so the trace may show a few fewer.)
    wait_for(
        "the node to hold 300 bindings",
        Duration::from_secs(20),
        || {
            let st = json::statistics(&node.rpc("stats.get_statistics", json!(["all"])));
            (json::stat(&st, "accepted_regs") >= 300).then_some(())
        },
    );
    node.kill9();
    let run = sipp.join().expect("the SIPp thread");
    let acked = run.acknowledged_aors();
    eprintln!(
        "[e2e] {} REGISTERs acknowledged before the kill",
        acked.len()
    );
    assert!(
        acked.len() >= 100,
        "the trace shows only {} 200 OKs",
        acked.len()
    );
    assert!(
        acked.len() < all.len(),
        "all {} were acknowledged before the kill; the kill came too late to test anything",
        all.len()
    );

    phase("restart; every acknowledged AoR is present");
    node.restart();
    let found = json::aors(&node.rpc("ul.dump", json!([])));
    let lost: Vec<_> = acked.difference(&found).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged AoRs lost across kill -9, e.g. {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(10)]
    );
}

#[test]
fn expired_bindings_are_gone_while_running_and_after_a_restart() {
    let mut node = Node::start("");
    let add = |node: &Node, aor: &str, expires: u32| {
        node.rpc(
            "ul.add",
            json!([
                "location",
                aor,
                format!("sip:{}@127.0.0.1:5999", aor.split('@').next().unwrap()),
                expires,
                0.5,
                "",
                0,
                0,
                0
            ]),
        );
    };

    // An expiry is a removal on time, while the node runs.
    phase("a 2 s binding expires while the node runs");
    add(&node, "long@example.com", 3600);
    add(&node, "short1@example.com", 2);
    let e =
        lookup_expires(&node, "short1@example.com").expect("short1 is bound right after ul.add");
    assert!((0..=2).contains(&e), "short1 expires in {e}");
    wait_for("short1 to expire", Duration::from_secs(6), || {
        lookup_expires(&node, "short1@example.com")
            .is_none()
            .then_some(())
    });

    // A binding that expires while the node is down must not come back.
    phase("a 2 s binding expires while the node is down");
    add(&node, "short2@example.com", 2);
    assert!(lookup_expires(&node, "short2@example.com").is_some());
    node.kill9();
    std::thread::sleep(Duration::from_millis(2500));
    node.restart();
    assert_eq!(
        lookup_expires(&node, "short2@example.com"),
        None,
        "short2 came back after its expiry"
    );
    let found = json::aors(&node.rpc("ul.dump", json!([])));
    assert_eq!(
        found,
        BTreeSet::from(["long@example.com".to_owned()]),
        "only the unexpired binding remains"
    );
    let e = lookup_expires(&node, "long@example.com").expect("long survives");
    assert!((3590..=3600).contains(&e), "long expires in {e}");
}
