//! Start-up and shutdown: configuration errors stop the start naming the
//! key (exit 64), `--check-config`, an unreadable database is reported and
//! left alone, and SIGTERM drains and closes the store (answering the UDP
//! REGISTERs it accepted).

use regmesh_e2e::sip::{Request, UdpClient};
use regmesh_e2e::{Node, json, phase, regmesh_bin, wait_for};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

fn serve_with(config: &str, extra: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("regmesh.toml");
    let config = config.replace("DATA", &dir.path().join("data").display().to_string());
    std::fs::write(&path, config).expect("write config");
    Command::new(regmesh_bin())
        .args(["serve", "--config"])
        .arg(&path)
        .args(extra)
        .output()
        .expect("run regmesh serve")
}

#[test]
fn bad_configs_stop_the_start_with_exit_64_naming_the_key() {
    phase("an unknown key");
    let out = serve_with(
        "[node]\ndata_dir = \"DATA\"\n[registrar]\nmin_expire = 60\n",
        &[],
    );
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("min_expire"), "{err}");

    phase("an RPC listener off loopback without a token");
    let out = serve_with(
        "[node]\ndata_dir = \"DATA\"\n[rpc]\nlisten = \"0.0.0.0:0\"\n",
        &["--check-config"],
    );
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rpc.token"), "{err}");

    phase("a valid file: --check-config prints the effective values and exits 0");
    let out = serve_with(
        "[node]\ndata_dir = \"DATA\"\n[registrar]\nmin_expires = 30\n",
        &["--check-config"],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("min_expires = 30"), "{text}");
    assert!(text.contains("default_expires = 3600"), "{text}");
}

#[test]
fn an_unreadable_database_stops_the_start_and_is_left_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::create_dir_all(data.join("location")).expect("mkdir");
    let db = data.join("location").join("log-00000000000000000001.rml");
    let garbage: Vec<u8> = (0..8192u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&db, &garbage).expect("write garbage");
    let cfg = dir.path().join("regmesh.toml");
    std::fs::write(
        &cfg,
        format!(
            "[node]\ndata_dir = \"{}\"\n[sip]\nlisten = [\"udp:127.0.0.1:0\"]\n[rpc]\nlisten = \"127.0.0.1:0\"\n",
            data.display()
        ),
    )
    .expect("write config");
    let out = Command::new(regmesh_bin())
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .expect("run regmesh serve");
    assert_eq!(
        out.status.code(),
        Some(1),
        "a corrupt database must stop the start"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("log-00000000000000000001.rml"),
        "the message names the file: {err}"
    );
    assert_eq!(
        std::fs::read(&db).expect("still there"),
        garbage,
        "the file was modified"
    );
}

#[test]
fn sigterm_drains_closes_the_store_and_loses_nothing() {
    let mut node = Node::start("");
    phase("a binding written through RPC, then SIGTERM");
    let added = node.rpc(
        "ul.add",
        json!([
            "location",
            "term@example.com",
            "sip:term@127.0.0.1:5070",
            3600,
            1,
            "0",
            0,
            0,
            0
        ]),
    );
    assert!(added.is_object(), "{added}");
    let status = node.terminate(Duration::from_secs(15));
    assert!(
        status.success(),
        "SIGTERM must end in a clean exit: {status}"
    );
    assert!(node.log().contains("stopped"), "{}", node.log());

    phase("after a restart the binding is there");
    node.restart();
    let resp = node.rpc("ul.lookup", json!(["location", "term@example.com"]));
    assert_eq!(json::contacts(&resp).len(), 1, "{resp}");
}

#[test]
fn sigterm_during_a_udp_burst_answers_every_register_it_accepted() {
    let mut node = Node::start("");
    let total = 4000;
    let c = UdpClient::new(node.sip_udp());
    let local = c.local();
    // Call-ID -> AoR, and the datagrams, built before the burst starts.
    let mut aor_of = BTreeMap::new();
    let mut datagrams = Vec::with_capacity(total);
    for i in 0..total {
        let user = format!("burst{i:05}");
        let contact = format!("<sip:{user}@{local}>");
        let req = Request::register(&user, "example.com", &contact, Some(3600), local, "UDP");
        aor_of.insert(req.call_id(), format!("{user}@example.com"));
        datagrams.push(req.to_bytes());
    }

    phase("a paced burst of REGISTERs over UDP; SIGTERM once 200 are answered");
    let ok = Arc::new(AtomicUsize::new(0));
    let receiver = {
        let c = UdpClient {
            sock: c.sock.try_clone().expect("cloning the client socket"),
            server: c.server,
        };
        let ok = ok.clone();
        std::thread::spawn(move || {
            let mut answers = BTreeMap::new();
            // Until the node has been quiet for a while (it is gone).
            while let Some(r) = c.recv(Duration::from_secs(2)) {
                if r.status == 200 {
                    ok.fetch_add(1, Ordering::Relaxed);
                }
                answers.insert(r.call_id().to_owned(), r.status);
            }
            answers
        })
    };
    let sender = std::thread::spawn(move || {
        for (i, d) in datagrams.iter().enumerate() {
            // The node is gone part-way: a send may fail, which is fine.
            let _ = c.sock.send_to(d, c.server);
            if i % 20 == 19 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    });
    wait_for("200 answers", Duration::from_secs(20), || {
        (ok.load(Ordering::Relaxed) >= 200).then_some(())
    });
    let status = node.terminate(Duration::from_secs(15));
    assert!(
        status.success(),
        "SIGTERM must end in a clean exit: {status}"
    );
    sender.join().expect("the sender");
    let answers = receiver.join().expect("the receiver");
    assert!(
        answers.values().all(|&s| s == 200),
        "only 200s expected: {answers:?}"
    );
    let answered: BTreeSet<String> = answers.keys().map(|id| aor_of[id].clone()).collect();

    phase("after a restart: exactly the answered AoRs are stored");
    node.restart();
    let stored = json::aors(&node.rpc("ul.dump", json!([])));
    eprintln!(
        "[e2e] {} of {total} REGISTERs stored and answered before the shutdown",
        stored.len()
    );
    assert!(
        stored.len() < total,
        "the shutdown came after the whole burst; nothing was tested"
    );
    let unanswered: Vec<_> = stored.difference(&answered).collect();
    assert!(
        unanswered.is_empty(),
        "{} stored REGISTERs got no answer, e.g. {:?}",
        unanswered.len(),
        &unanswered[..unanswered.len().min(10)]
    );
    let lost: Vec<_> = answered.difference(&stored).collect();
    assert!(lost.is_empty(), "answered but not stored: {lost:?}");
}
