//! Start-up and shutdown: configuration errors stop the start naming the
//! key (exit 64), `--check-config`, an unreadable database is reported and
//! left alone, and SIGTERM drains and closes the store.

use regmesh_e2e::{Node, json, phase, regmesh_bin};
use serde_json::json;
use std::process::Command;
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
