//! The UNIX-socket transport: mode, framing, errors, shutdown.

use crate::support::Env;
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::UnixStream;
use tokio_util::sync::CancellationToken;

struct Server {
    path: PathBuf,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start(env: &Env) -> Server {
    let path = env.dir.path().join("regmesh.sock");
    start_at(env, &path).await
}

async fn start_at(env: &Env, path: &Path) -> Server {
    let cancel = CancellationToken::new();
    let task = {
        let (path, ctx, cancel) = (path.to_owned(), env.ctx.clone(), cancel.clone());
        tokio::spawn(async move { regmesh_rpc::serve_unix(&path, ctx, cancel).await })
    };
    for _ in 0..500 {
        if UnixStream::connect(path).await.is_ok() {
            return Server {
                path: path.to_owned(),
                cancel,
                task,
            };
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the UNIX socket did not come up");
}

async fn stop(server: Server) {
    server.cancel.cancel();
    let r = tokio::time::timeout(Duration::from_secs(10), server.task)
        .await
        .expect("stops on cancel")
        .expect("task");
    assert!(r.is_ok(), "{r:?}");
}

async fn read_json_line<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> Value {
    let mut line = String::new();
    r.read_line(&mut line).await.expect("read");
    assert!(line.ends_with('\n'), "one line per answer: {line:?}");
    serde_json::from_str(&line).expect("JSON line")
}

#[tokio::test]
async fn socket_is_0600_and_removed_on_exit() {
    let env = Env::new();
    let server = start(&env).await;
    let mode = std::fs::metadata(&server.path)
        .expect("exists")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let path = server.path.clone();
    stop(server).await;
    assert!(!path.exists(), "socket file removed");
    let leftovers: Vec<_> = std::fs::read_dir(env.dir.path())
        .expect("dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty());
}

#[tokio::test]
async fn requests_and_answers_are_lines() {
    let env = Env::new();
    let server = start(&env).await;
    let stream = UnixStream::connect(&server.path).await.expect("connect");
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd);

    let add = json!({"jsonrpc": "2.0", "method": "ul.add",
        "params": ["location", "erin@example.com", "sip:erin@192.0.2.7", 60, 1, "0", 0, 0, 0], "id": 1});
    let lookup = json!({"jsonrpc": "2.0", "method": "ul.lookup", "params": ["location", "erin@example.com"], "id": 2});
    let note = json!({"jsonrpc": "2.0", "method": "core.version"});
    let mut out = Vec::new();
    for v in [&add, &note, &lookup] {
        out.extend(serde_json::to_vec(v).expect("json"));
        out.extend(b"\r\n");
    }
    out.extend(b"\n"); // an empty line is skipped
    wr.write_all(&out).await.expect("write");

    let a = read_json_line(&mut rd).await;
    assert_eq!(
        (a["id"].clone(), a["result"]["Action"].clone()),
        (json!(1), json!("inserted"))
    );
    let b = read_json_line(&mut rd).await;
    assert_eq!(b["id"], 2, "the notification got no line");
    assert_eq!(b["result"]["AoR"], "erin@example.com");

    // Garbage: a parse error line, and the connection stays usable.
    wr.write_all(b"this is not json\n").await.expect("write");
    let e = read_json_line(&mut rd).await;
    assert_eq!(e["error"]["code"], -32700);
    assert_eq!(e["id"], Value::Null);
    wr.write_all(b"{\"jsonrpc\":\"2.0\",\"method\":\"core.version\",\"id\":3}\n")
        .await
        .expect("write");
    assert_eq!(read_json_line(&mut rd).await["id"], 3);

    // A final line without a newline is answered at EOF.
    wr.write_all(b"{\"jsonrpc\":\"2.0\",\"method\":\"core.version\",\"id\":4}")
        .await
        .expect("write");
    wr.shutdown().await.expect("shutdown");
    assert_eq!(read_json_line(&mut rd).await["id"], 4);
    stop(server).await;
}

#[tokio::test]
async fn an_overlong_line_is_refused_and_closed() {
    let env = Env::new();
    let server = start(&env).await;
    let mut stream = UnixStream::connect(&server.path).await.expect("connect");
    let big = vec![b'x'; regmesh_rpc::MAX_LINE + 10];
    let (mut rd, mut wr) = stream.split();
    let writer = async {
        let _ = wr.write_all(&big).await;
    };
    let reader = async {
        let mut all = Vec::new();
        let _ = rd.read_to_end(&mut all).await;
        all
    };
    let ((), all) = tokio::join!(writer, reader);
    let text = String::from_utf8_lossy(&all);
    let first = text.lines().next().expect("an error line");
    let v: Value = serde_json::from_str(first).expect("JSON");
    assert_eq!(v["error"]["code"], -32600);
    stop(server).await;
}

#[tokio::test]
async fn stale_socket_is_replaced_but_other_files_are_not() {
    let env = Env::new();
    let path = env.dir.path().join("stale.sock");
    // A socket file nobody listens on any more, as after a crash.
    drop(std::os::unix::net::UnixListener::bind(&path).expect("bind"));
    assert!(path.exists());
    let server = start_at(&env, &path).await;

    // A second server on the same live socket is refused.
    let second = regmesh_rpc::serve_unix(&path, env.ctx.clone(), CancellationToken::new()).await;
    assert_eq!(
        second.err().map(|e| e.kind()),
        Some(std::io::ErrorKind::AddrInUse)
    );
    stop(server).await;

    let file = env.dir.path().join("plain-file");
    std::fs::write(&file, b"keep me").expect("write");
    let r = regmesh_rpc::serve_unix(&file, env.ctx.clone(), CancellationToken::new()).await;
    assert!(r.is_err());
    assert_eq!(std::fs::read(&file).expect("still there"), b"keep me");
}
