//! The HTTP transport on a real loopback socket, with a minimal client.

use crate::support::Env;
use serde_json::{Value, json};
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const TOKEN: &str = "s3cret-token";

/// Serve `router(ctx, token)` on 127.0.0.1:0; the bound address.
async fn start(env: &Env, token: Option<&str>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = regmesh_rpc::router(env.ctx.clone(), token.map(str::to_owned));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// One HTTP/1.1 exchange: (status, headers text, body).
async fn send(
    addr: SocketAddr,
    method: &str,
    auth: Option<&str>,
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut head = format!(
        "{method} /RPC HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if let Some(a) = auth {
        head.push_str(&format!("Authorization: {a}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await.expect("write head");
    // A server may answer (413, 401) and close before reading the body.
    let _ = s.write_all(body).await;
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw).await;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header end");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (status, head, raw[split + 4..].to_vec())
}

fn version_request() -> Vec<u8> {
    serde_json::to_vec(&json!({"jsonrpc": "2.0", "method": "core.version", "id": 1})).expect("json")
}

fn json_body(body: &[u8]) -> Value {
    serde_json::from_slice(body).expect("JSON body")
}

#[tokio::test]
async fn bearer_token_is_required() {
    let env = Env::new();
    let addr = start(&env, Some(TOKEN)).await;

    let (status, head, body) = send(addr, "POST", None, &version_request()).await;
    assert_eq!(status, 401);
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{head}"
    );
    let err = json_body(&body);
    assert_eq!(err["error"]["code"], -32001);
    assert_eq!(err["id"], Value::Null);

    let (status, _, _) = send(addr, "POST", Some("Bearer wrong-token"), &version_request()).await;
    assert_eq!(status, 401);
    let (status, _, _) = send(
        addr,
        "POST",
        Some(&format!("Basic {TOKEN}")),
        &version_request(),
    )
    .await;
    assert_eq!(status, 401);

    let (status, head, body) = send(
        addr,
        "POST",
        Some(&format!("Bearer {TOKEN}")),
        &version_request(),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    assert!(
        json_body(&body)["result"]
            .as_str()
            .is_some_and(|v| v.starts_with("regmesh "))
    );
}

#[tokio::test]
async fn no_token_configured_means_open() {
    let env = Env::new();
    let addr = start(&env, None).await;
    let (status, _, body) = send(addr, "POST", None, &version_request()).await;
    assert_eq!(status, 200);
    assert_eq!(json_body(&body)["id"], 1);
}

#[tokio::test]
async fn protocol_errors_over_http() {
    let env = Env::new();
    let addr = start(&env, Some(TOKEN)).await;
    let auth = format!("Bearer {TOKEN}");

    // Malformed JSON: HTTP 200, JSON-RPC parse error.
    let (status, _, body) = send(addr, "POST", Some(&auth), b"{not json").await;
    assert_eq!(status, 200);
    assert_eq!(json_body(&body)["error"]["code"], -32700);

    // Bad parameters name the parameter.
    let req =
        json!({"jsonrpc": "2.0", "method": "ul.lookup", "params": ["nolocation", "a@b"], "id": 3});
    let (status, _, body) = send(
        addr,
        "POST",
        Some(&auth),
        &serde_json::to_vec(&req).expect("json"),
    )
    .await;
    assert_eq!(status, 200);
    let resp = json_body(&body);
    assert_eq!(resp["error"]["code"], -32602);
    assert_eq!(resp["error"]["data"]["param"], "table");

    // Notifications only: 204, no body.
    let note = json!({"jsonrpc": "2.0", "method": "core.version"});
    let (status, _, body) = send(
        addr,
        "POST",
        Some(&auth),
        &serde_json::to_vec(&note).expect("json"),
    )
    .await;
    assert_eq!(status, 204);
    assert!(body.is_empty());

    // Batches.
    let batch = json!([
        {"jsonrpc": "2.0", "method": "core.version", "id": 1},
        {"jsonrpc": "2.0", "method": "nosuch", "id": 2}
    ]);
    let (status, _, body) = send(
        addr,
        "POST",
        Some(&auth),
        &serde_json::to_vec(&batch).expect("json"),
    )
    .await;
    assert_eq!(status, 200);
    let resp = json_body(&body);
    assert_eq!(resp[1]["error"]["code"], -32601);

    // Only POST.
    let (status, _, _) = send(addr, "GET", Some(&auth), b"").await;
    assert_eq!(status, 405);

    // Over 1 MiB: 413.
    let big = vec![b' '; regmesh_rpc::MAX_BODY + 1];
    let (status, _, body) = send(addr, "POST", Some(&auth), &big).await;
    assert_eq!(status, 413);
    assert_eq!(json_body(&body)["error"]["code"], -32600);
}

#[tokio::test]
async fn writes_over_http_reach_the_store() {
    let env = Env::new();
    let addr = start(&env, Some(TOKEN)).await;
    let req = json!({"jsonrpc": "2.0", "method": "ul.add",
        "params": ["location", "dave@example.com", "sip:dave@192.0.2.44", 60, 1, "0", 0, 0, 0], "id": 1});
    let (status, _, body) = send(
        addr,
        "POST",
        Some(&format!("Bearer {TOKEN}")),
        &serde_json::to_vec(&req).expect("json"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(json_body(&body)["result"]["Action"], "inserted");
    assert_eq!(env.ctx.location.lookup("dave@example.com").len(), 1);
}
