//! IPv6 (RFC 5118 addresses): UDP and TCP listeners on `[::1]`, the source
//! recorded in brackets, and lookups answered over IPv6.

use regmesh_e2e::{Node, json, phase, regmesh_bin};
use serde_json::json;
use std::process::Command;

#[test]
fn registers_over_ipv6_udp_and_tcp_record_bracketed_sources() {
    let node = Node::start(
        r#"
[sip]
listen = ["udp:[::1]:0", "tcp:[::1]:0"]
"#,
    );
    for (transport, addr) in [("udp", node.sip_udp()), ("tcp", node.sip_tcp())] {
        phase(&format!("20 registrations over {transport} to {addr}"));
        assert!(addr.is_ipv6(), "{addr}");
        let out = Command::new(regmesh_bin())
            .args([
                "bench",
                "--quiet",
                "--json",
                "-",
                "--aors",
                "20",
                "--user-prefix",
            ])
            .arg(format!("v6{transport}"))
            .args(["--transport", transport, "--target"])
            .arg(addr.to_string())
            .output()
            .expect("run regmesh bench");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(report["status"]["200"], 20, "{report}");
    }
    phase("the bindings carry bracketed IPv6 sources and the IPv6 socket");
    for transport in ["udp", "tcp"] {
        let resp = node.rpc(
            "ul.lookup",
            json!(["location", format!("v6{transport}7@example.com")]),
        );
        let contacts = json::contacts(&resp);
        assert_eq!(contacts.len(), 1, "{resp}");
        let received = contacts[0]["Received"].as_str().unwrap_or_default();
        assert!(received.starts_with("sip:[::1]:"), "{received}");
        assert!(
            received.ends_with(&format!(";transport={transport}")),
            "{received}"
        );
        let socket = contacts[0]["Socket"].as_str().unwrap_or_default();
        assert!(
            socket.starts_with(&format!("{transport}:[::1]:")),
            "{socket}"
        );
    }
}
