//! SIP over TLS (RFC 3261 §26.2): a `tls:` listener with a configured
//! certificate and key serves REGISTER like TCP, and records the transport.
//! The client is `openssl s_client` (installed by scripts/install-deps.sh).

use regmesh_e2e::{Node, json, phase};
use serde_json::json;
use std::process::{Command, Stdio};

#[test]
fn register_over_tls_is_answered_on_the_tls_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    phase("a self-signed certificate for 127.0.0.1");
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl is installed (scripts/install-deps.sh)");
    assert!(made.success(), "openssl req failed");

    let node = Node::start(&format!(
        r#"
[sip]
listen = ["udp:127.0.0.1:0", "tls:127.0.0.1:0"]
[sip.tls]
cert = "{}"
key = "{}"
"#,
        cert.display(),
        key.display()
    ));
    let tls = node.sip("tls");

    phase("REGISTER through a TLS session; the 200 comes back on it");
    let register = "REGISTER sip:example.com SIP/2.0\r\n\
Via: SIP/2.0/TLS 127.0.0.1:5999;branch=z9hG4bK-tls1\r\n\
Max-Forwards: 70\r\n\
From: <sip:tls-user@example.com>;tag=t1\r\n\
To: <sip:tls-user@example.com>\r\n\
Call-ID: tls-call-1@127.0.0.1\r\n\
CSeq: 1 REGISTER\r\n\
Contact: <sip:tls-user@127.0.0.1:5999;transport=tls>\r\n\
Expires: 600\r\n\
Content-Length: 0\r\n\r\n";
    let mut child = Command::new("timeout")
        .args(["3", "openssl", "s_client", "-quiet", "-ign_eof", "-connect"])
        .arg(tls.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn openssl s_client");
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(register.as_bytes()).expect("write request");
    }
    let out = child.wait_with_output().expect("s_client output");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("SIP/2.0 200 OK\r\n"), "TLS reply:\n{text}");
    assert!(text.contains("Call-ID: tls-call-1@127.0.0.1"), "{text}");

    phase("the binding records TLS as its transport and socket");
    let resp = node.rpc("ul.lookup", json!(["location", "tls-user@example.com"]));
    let contacts = json::contacts(&resp);
    assert_eq!(contacts.len(), 1, "{resp}");
    let received = contacts[0]["Received"].as_str().unwrap_or_default();
    let socket = contacts[0]["Socket"].as_str().unwrap_or_default();
    assert!(received.ends_with(";transport=tls"), "{received}");
    assert_eq!(socket, format!("tls:{tls}"));
}
