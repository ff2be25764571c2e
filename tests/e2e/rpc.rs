//! JSON-RPC management over HTTP and the UNIX socket, and `regmesh ctl`.

use regmesh_e2e::{Node, json, phase};
use serde_json::{Value, json};
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};

const TOKEN: &str = "e2e-token-5f0c2a";

fn version_request() -> Vec<u8> {
    br#"{"jsonrpc":"2.0","method":"core.version","params":[],"id":1}"#.to_vec()
}

#[test]
fn http_requires_the_configured_bearer_token() {
    let node = Node::start(&format!("[rpc]\ntoken = \"{TOKEN}\""));

    // Without the token, and with a wrong one, the HTTP endpoint answers
    // 401 and runs nothing.
    phase("no token and a wrong token get 401");
    let r = node.http_rpc_raw(&version_request(), None);
    assert_eq!(r.status, 401, "no token: {}", r.text());
    let r = node.http_rpc_raw(&version_request(), Some("not-the-token"));
    assert_eq!(r.status, 401, "wrong token: {}", r.text());
    let add = br#"{"jsonrpc":"2.0","method":"ul.add","params":["location","sneaky@example.com","sip:s@127.0.0.1:5999",3600,0.5,"",0,0,0],"id":2}"#;
    let r = node.http_rpc_raw(add, Some("not-the-token"));
    assert_eq!(r.status, 401, "wrong token on a write: {}", r.text());

    // The right token works.
    phase("the right token gets 200 and a result");
    let r = node.http_rpc_raw(&version_request(), Some(TOKEN));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert!(v.get("result").is_some() && v.get("error").is_none(), "{v}");
    let resp = node.rpc_call("ul.lookup", json!(["location", "sneaky@example.com"]));
    assert!(
        json::error_code(&resp).is_some(),
        "the unauthorised ul.add wrote a binding: {resp}"
    );

    // ctl over HTTP passes the token; without it, ctl fails.
    phase("regmesh ctl --url with and without --token");
    let url = node.rpc_url();
    let out = node.ctl(&["--url", &url, "--token", TOKEN, "--json", "core.version"]);
    assert!(out.status.success(), "ctl with the token failed");
    let out = node.ctl(&["--url", &url, "core.version"]);
    assert!(!out.status.success(), "ctl without the token succeeded");
}

#[test]
fn malformed_requests_get_json_rpc_errors() {
    let node = Node::start("");

    // Unparseable JSON is a parse error (-32700) with a null id.
    phase("parse error");
    let r = node.http_rpc_raw(br#"{"jsonrpc": "2.0", "method": "core.ver"#, None);
    let v = r.json();
    assert_eq!(json::error_code(&v), Some(-32700), "{v}");
    assert_eq!(v["id"], Value::Null, "{v}");

    // Valid JSON that is not a request is an invalid request (-32600).
    phase("invalid request");
    let r = node.http_rpc_raw(br#"{"jsonrpc":"2.0","id":5}"#, None);
    assert_eq!(json::error_code(&r.json()), Some(-32600), "{}", r.text());

    // An unknown method is -32601.
    phase("unknown method");
    let v = node.rpc_call("no.such.method", json!([]));
    assert_eq!(json::error_code(&v), Some(-32601), "{v}");

    // Wrong parameters are -32602 and the message names the parameter.
    phase("bad parameters name the parameter");
    let v = node.rpc_call(
        "ul.add",
        json!([
            "location",
            "alice@example.com",
            "sip:alice@127.0.0.1:5070",
            "soon",
            0.5,
            "",
            0,
            0,
            0
        ]),
    );
    assert_eq!(json::error_code(&v), Some(-32602), "{v}");
    let msg = json::error_message(&v).to_lowercase();
    assert!(
        msg.contains("expires"),
        "the error should name `expires`: {v}"
    );
    let v = node.rpc_call("ul.lookup", json!(["location"]));
    assert_eq!(json::error_code(&v), Some(-32602), "{v}");
    let msg = json::error_message(&v).to_lowercase();
    assert!(
        msg.contains("aor"),
        "the error should name the AoR parameter: {v}"
    );
    let v = node.rpc_call("ul.lookup", json!(["location", "alice@example.com"]));
    assert!(
        json::error_code(&v).is_some(),
        "nothing was added, yet: {v}"
    );

    // A batch is answered as a batch, each by id.
    phase("batch");
    let r = node.http_rpc_raw(
        br#"[{"jsonrpc":"2.0","method":"core.version","params":[],"id":1},
            {"jsonrpc":"2.0","method":"no.such.method","params":[],"id":2}]"#,
        None,
    );
    let v = r.json();
    let items = v
        .as_array()
        .unwrap_or_else(|| panic!("batch answer is not an array: {v}"));
    assert_eq!(items.len(), 2, "{v}");
    let by_id = |id: i64| {
        items
            .iter()
            .find(|i| i["id"] == id)
            .unwrap_or_else(|| panic!("no answer for id {id}: {v}"))
    };
    assert!(by_id(1).get("result").is_some(), "{v}");
    assert_eq!(json::error_code(by_id(2)), Some(-32601), "{v}");
}

#[test]
fn unix_socket_is_private_and_shares_the_store_with_http() {
    let node = Node::start("");
    let path = node.socket_path();

    // Anyone who can open the socket controls the node: owner only.
    phase("the socket is a socket with mode 0600");
    let meta = std::fs::metadata(&path).expect("the socket exists");
    assert!(
        meta.file_type().is_socket(),
        "{} is not a socket",
        path.display()
    );
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o600,
        "socket mode {:o}",
        meta.permissions().mode() & 0o777
    );

    // A write over the socket is a write to the same store HTTP reads.
    phase("ul.add over the socket, ul.lookup over HTTP");
    node.rpc_unix(
        "ul.add",
        json!([
            "location",
            "alice@example.com",
            "sip:alice@127.0.0.1:5070",
            3600,
            0.5,
            "",
            0,
            0,
            0
        ]),
    );
    let v = node.rpc("ul.lookup", json!(["location", "alice@example.com"]));
    let cs = json::contacts(&v);
    assert_eq!(cs.len(), 1, "{v}");
    assert_eq!(json::address(&cs[0]), "sip:alice@127.0.0.1:5070");
    let e = json::expires(&cs[0]);
    assert!((3590..=3600).contains(&e), "expires {e}");
    let v = node.rpc_unix("ul.lookup", json!(["location", "alice@example.com"]));
    assert_eq!(v["AoR"], "alice@example.com", "{v}");

    // Garbage on the socket gets a parse error and the connection keeps
    // answering the next line.
    phase("a parse error on the socket, then a good request on the same connection");
    {
        use std::io::{BufRead as _, BufReader, Write as _};
        let mut s = std::os::unix::net::UnixStream::connect(&path).expect("connect");
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .expect("timeout");
        s.write_all(b"{not json\n").expect("write");
        s.write_all(&version_request()).expect("write");
        s.write_all(b"\n").expect("write");
        let mut r = BufReader::new(s);
        let mut first = String::new();
        r.read_line(&mut first).expect("first answer");
        let v: Value = serde_json::from_str(&first).unwrap_or_else(|e| panic!("{e}: {first:?}"));
        assert_eq!(json::error_code(&v), Some(-32700), "{v}");
        let mut second = String::new();
        r.read_line(&mut second).expect("second answer");
        let v: Value = serde_json::from_str(&second).unwrap_or_else(|e| panic!("{e}: {second:?}"));
        assert!(
            v.get("result").is_some(),
            "the socket stopped answering after a parse error: {v}"
        );
    }

    // ul.rm over the socket removes the AoR everywhere.
    phase("ul.rm over the socket");
    node.rpc_unix("ul.rm", json!(["location", "alice@example.com"]));
    let v = node.rpc_call("ul.lookup", json!(["location", "alice@example.com"]));
    assert!(json::error_code(&v).is_some(), "{v}");
}

#[test]
fn ctl_over_the_socket_prints_tables_and_json() {
    let node = Node::start("");

    // The operator's form from README.md: positional ul.add, numbers typed by ctl.
    phase("ctl ul.add in Kamailio's positional form");
    let out = node.ctl_socket(&[
        "ul.add",
        "location",
        "alice@example.com",
        "sip:alice@192.0.2.7:5060",
        "3600",
        "1.0",
        "0",
        "0",
        "0",
        "0",
    ]);
    assert!(out.status.success(), "ctl ul.add failed");
    let out = node.ctl_socket(&[
        "ul.add",
        "location",
        "alice@example.com",
        "sip:alice@192.0.2.8:5060",
        "1800",
        "0.5",
        "0",
        "0",
        "0",
        "0",
    ]);
    assert!(out.status.success(), "ctl ul.add (second contact) failed");

    // Default output is a readable table, not JSON.
    phase("ctl ul.lookup prints a table");
    let out = node.ctl_socket(&["ul.lookup", "location", "alice@example.com"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        serde_json::from_str::<Value>(&text).is_err(),
        "the default output is JSON:\n{text}"
    );
    assert!(
        !text.contains('{'),
        "the default output has JSON objects in it:\n{text}"
    );
    for needle in [
        "alice@example.com",
        "sip:alice@192.0.2.7:5060",
        "sip:alice@192.0.2.8:5060",
        "Address",
        "Expires",
    ] {
        assert!(text.contains(needle), "the table lacks {needle}:\n{text}");
    }

    // --json prints the raw result.
    phase("ctl --json prints the result as JSON");
    let out = node.ctl_socket(&["--json", "ul.lookup", "location", "alice@example.com"]);
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "--json output is not JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    assert_eq!(v["AoR"], "alice@example.com", "{v}");
    let mut addrs: Vec<String> = json::contacts(&v)
        .iter()
        .map(|c| json::address(c).to_owned())
        .collect();
    addrs.sort();
    assert_eq!(
        addrs,
        ["sip:alice@192.0.2.7:5060", "sip:alice@192.0.2.8:5060"]
    );

    // ul.rm_contact removes exactly one binding of the AoR.
    phase("ul.rm_contact removes one of the two contacts");
    let out = node.ctl_socket(&[
        "ul.rm_contact",
        "location",
        "alice@example.com",
        "sip:alice@192.0.2.8:5060",
    ]);
    assert!(out.status.success(), "ctl ul.rm_contact failed");
    let v = node.rpc("ul.lookup", json!(["location", "alice@example.com"]));
    let left = json::contacts(&v);
    let addrs: Vec<&str> = left.iter().map(json::address).collect();
    assert_eq!(addrs, ["sip:alice@192.0.2.7:5060"], "{v}");

    // Statistics print one per line.
    phase("ctl stats.get_statistics all");
    let out = node.ctl_socket(&["stats.get_statistics", "all"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.trim_end().ends_with("registered_users = 1")),
        "{text}"
    );

    // A JSON-RPC error is a non-zero exit with the error on stderr.
    phase("ctl on an unknown AoR exits non-zero");
    let out = node.ctl_socket(&["ul.lookup", "location", "nobody@example.com"]);
    assert!(!out.status.success(), "ctl exited 0 on a JSON-RPC error");
    assert!(!out.stderr.is_empty(), "ctl printed no error");
}
