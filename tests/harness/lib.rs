//! End-to-end test harness: start real `regmesh` processes on loopback, talk
//! to them over SIP (by hand and through SIPp), JSON-RPC (HTTP and the UNIX
//! socket) and `regmesh ctl`, kill them with SIGKILL and start them again.
//!
//! What it does not do: build the binary. `cargo test -p regmesh-e2e` does not
//! build `regmesh` (a binary crate cannot be a dependency), so the tests look
//! for an already built one (see [`regmesh_bin`]).
//!
//! Every node gets its own temporary directory (config, data, log, ready
//! file) and binds port 0 everywhere; the addresses it actually bound are read
//! from the `--ready-file` JSON the node writes once every listener is bound
//! and the store is loaded. The node's stdout and stderr go to a log file that
//! is printed when a test fails while the node is alive (hickory-dns
//! `server_harness.rs` does the same), and the child is killed on `Drop`.

pub mod http;
pub mod json;
pub mod sip;
pub mod sipp;

use anyhow::{Context as _, bail};
use serde_json::Value;
use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long a node may take to write its ready file.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long an RPC call may take.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(30);
/// How much of the node log is printed when a test fails.
const LOG_TAIL_BYTES: u64 = 64 * 1024;

/// Now, on the monotonic clock.
///
/// End-to-end tests measure real time against a real process (timeouts,
/// expiries), which is the one place the workspace ban on `Instant::now`
/// (clippy.toml) does not apply; every harness and test use goes through here.
#[allow(
    clippy::disallowed_methods,
    reason = "end-to-end tests measure real time against a real process"
)]
pub fn now() -> Instant {
    Instant::now()
}

/// Log a test phase, so a failing test's captured output says where it was.
/// The test code puts the reason for the phase in a comment above the call.
pub fn phase(what: &str) {
    eprintln!("[e2e] --- {what}");
}

/// Poll `f` every 20 ms until it returns `Some`, or fail after `timeout`
/// naming `what` was awaited.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The `regmesh` binary under test: `$REGMESH_BIN`, else `regmesh` next to
/// this test executable's profile directory (`target/debug/regmesh`, which
/// also follows `CARGO_TARGET_DIR`), else `<workspace>/target/debug/regmesh`.
pub fn regmesh_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("REGMESH_BIN") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "REGMESH_BIN={} is not a file; build it first: cargo build -p regmesh",
            p.display()
        );
        return p;
    }
    // The test executable lives in <target>/<profile>/deps/.
    if let Ok(exe) = std::env::current_exe()
        && let Some(profile_dir) = exe.parent().and_then(Path::parent)
    {
        let p = profile_dir.join("regmesh");
        if p.is_file() {
            return p;
        }
    }
    let p = workspace_root().join("target/debug/regmesh");
    assert!(
        p.is_file(),
        "the regmesh binary was not found at {}; build it first: cargo build -p regmesh \
         (or point REGMESH_BIN at one)",
        p.display()
    );
    p
}

/// The workspace root (the parent of this package).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("invariant: the e2e package sits inside the workspace")
        .to_path_buf()
}

/// The addresses a running node announced in its ready file.
#[derive(Debug, Clone)]
pub struct Ready {
    /// Every SIP listener: (transport, address).
    pub sip: Vec<(String, SocketAddr)>,
    /// The JSON-RPC HTTP listener.
    pub rpc: Option<SocketAddr>,
    /// The JSON-RPC UNIX socket.
    pub socket: Option<PathBuf>,
    /// The node's process id.
    pub pid: u32,
}

impl Ready {
    fn parse(doc: &Value) -> anyhow::Result<Self> {
        let mut sip = Vec::new();
        for l in doc["sip"].as_array().context("`sip` is not an array")? {
            let transport = l["transport"].as_str().context("sip[].transport")?;
            let addr = l["addr"].as_str().context("sip[].addr")?;
            sip.push((transport.to_owned(), addr.parse().context("sip[].addr")?));
        }
        let rpc = match &doc["rpc"] {
            Value::Null => None,
            v => Some(v.as_str().context("`rpc`")?.parse().context("`rpc`")?),
        };
        let socket = doc["socket"].as_str().map(PathBuf::from);
        let pid = doc["pid"].as_u64().context("`pid`")?;
        Ok(Self {
            sip,
            rpc,
            socket,
            pid: u32::try_from(pid).context("`pid`")?,
        })
    }
}

/// A running `regmesh serve` with its own temporary directory.
pub struct Node {
    dir: tempfile::TempDir,
    config: toml::Table,
    child: Option<Child>,
    ready: Ready,
    starts: u32,
}

impl Node {
    /// Start a node on the base config (loopback, port 0 everywhere, auth
    /// off) with `overrides` (a TOML fragment, deep-merged) applied, and
    /// wait until it is ready.
    ///
    /// ```ignore
    /// let node = Node::start("[auth]\nenabled = true\nsecret = \"s\"");
    /// ```
    pub fn start(overrides: &str) -> Self {
        Self::try_start(overrides).unwrap_or_else(|e| panic!("starting regmesh: {e:#}"))
    }

    /// [`Node::start`] returning the error instead of panicking.
    pub fn try_start(overrides: &str) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("regmesh-e2e-")
            .tempdir()
            .context("creating the node's temporary directory")?;
        let data_dir = dir.path().join("data");
        let mut config: toml::Table = format!(
            r#"
[node]
id = 1
data_dir = "{data}"

[sip]
listen = ["udp:127.0.0.1:0", "tcp:127.0.0.1:0"]
max_message_size = 65535

[registrar]
default_expires = 3600
min_expires = 60
max_expires = 86400
max_contacts = 0
overflow = "reject"

[auth]
enabled = false

[rpc]
listen = "127.0.0.1:0"
socket = "regmesh.sock"

[log]
level = "info"
"#,
            data = data_dir.display()
        )
        .parse()
        .context("invariant: the base config is valid TOML")?;
        let overrides: toml::Table = overrides
            .parse()
            .with_context(|| format!("the test's config overrides are not TOML:\n{overrides}"))?;
        merge(&mut config, overrides);
        std::fs::write(dir.path().join("regmesh.toml"), toml::to_string(&config)?)
            .context("writing the config")?;
        let mut node = Self {
            dir,
            config,
            child: None,
            ready: Ready {
                sip: Vec::new(),
                rpc: None,
                socket: None,
                pid: 0,
            },
            starts: 0,
        };
        node.spawn()?;
        Ok(node)
    }

    fn ready_path(&self) -> PathBuf {
        self.dir.path().join("ready.json")
    }

    /// The node's temporary directory (config, `data/`, log, ready file).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The config file the node runs with.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("regmesh.toml")
    }

    /// The file the node's stdout and stderr go to (every start appends).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("regmesh.log")
    }

    /// Everything the node has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The effective config (base + overrides).
    pub fn config(&self) -> &toml::Table {
        &self.config
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let bin = regmesh_bin();
        let ready_path = self.ready_path();
        let _ = std::fs::remove_file(&ready_path);
        self.starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .context("opening the node log")?;
        writeln!(log, "===== e2e harness: start #{} =====", self.starts)?;
        let err = log.try_clone()?;
        let child = Command::new(&bin)
            .arg("serve")
            .arg("--config")
            .arg(self.config_path())
            .arg("--ready-file")
            .arg(&ready_path)
            .current_dir(self.dir.path())
            // Plain text in the log file (tracing-subscriber honours NO_COLOR).
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        self.child = Some(child);
        let start = now();
        loop {
            // The node writes the file with write + rename, so a file that
            // exists is complete.
            if let Ok(text) = std::fs::read_to_string(&ready_path) {
                let doc: Value = serde_json::from_str(&text)
                    .with_context(|| format!("the ready file is not JSON:\n{text}"))?;
                self.ready = Ready::parse(&doc)
                    .with_context(|| format!("the ready file has the wrong shape:\n{text}"))?;
                let pid = self.child.as_ref().map(Child::id);
                if pid != Some(self.ready.pid) {
                    bail!(
                        "the ready file names pid {} but the child is {pid:?}",
                        self.ready.pid
                    );
                }
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                bail!(
                    "regmesh exited with {status} before it was ready; its log:\n{}",
                    self.log()
                );
            }
            if start.elapsed() > READY_TIMEOUT {
                bail!(
                    "regmesh did not write its ready file within {READY_TIMEOUT:?}; its log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the running node announced.
    pub fn ready(&self) -> &Ready {
        &self.ready
    }

    /// The SIP listener for `transport` ("udp", "tcp", "tls").
    pub fn sip(&self, transport: &str) -> SocketAddr {
        self.ready
            .sip
            .iter()
            .find(|(t, _)| t == transport)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| panic!("the node has no {transport} listener: {:?}", self.ready))
    }

    /// The UDP SIP listener.
    pub fn sip_udp(&self) -> SocketAddr {
        self.sip("udp")
    }

    /// The TCP SIP listener.
    pub fn sip_tcp(&self) -> SocketAddr {
        self.sip("tcp")
    }

    /// The JSON-RPC HTTP listener.
    pub fn rpc_addr(&self) -> SocketAddr {
        self.ready.rpc.expect("the node has no HTTP RPC listener")
    }

    /// `http://ADDR/RPC`, for `regmesh ctl --url`.
    pub fn rpc_url(&self) -> String {
        format!("http://{}/RPC", self.rpc_addr())
    }

    /// The JSON-RPC UNIX socket.
    pub fn socket_path(&self) -> PathBuf {
        self.ready
            .socket
            .clone()
            .expect("the node has no UNIX RPC socket")
    }

    /// The bearer token from the config, if any.
    pub fn token(&self) -> Option<String> {
        self.config
            .get("rpc")
            .and_then(|r| r.get("token"))
            .and_then(|t| t.as_str())
            .map(str::to_owned)
    }

    /// The child's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// One JSON-RPC call over HTTP (with the configured token); returns the
    /// whole response object (`result` or `error`).
    pub fn rpc_call(&self, method: &str, params: Value) -> Value {
        let req =
            serde_json::json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 1});
        let resp = self.http_rpc_raw(
            &serde_json::to_vec(&req).expect("invariant: JSON"),
            self.token().as_deref(),
        );
        assert_eq!(
            resp.status,
            200,
            "HTTP {} for {method}: {}",
            resp.status,
            resp.text()
        );
        let v = resp.json();
        assert_eq!(v["id"], 1, "response id for {method}: {v}");
        v
    }

    /// One JSON-RPC call over HTTP; returns `result`, failing the test on a
    /// JSON-RPC error.
    pub fn rpc(&self, method: &str, params: Value) -> Value {
        let v = self.rpc_call(method, params.clone());
        if let Some(e) = v.get("error") {
            panic!("{method} {params} failed: {e}");
        }
        v.get("result")
            .cloned()
            .unwrap_or_else(|| panic!("{method}: response has neither result nor error: {v}"))
    }

    /// POST `body` to `/RPC` with an optional bearer token.
    pub fn http_rpc_raw(&self, body: &[u8], token: Option<&str>) -> http::Response {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(a) = &auth {
            headers.push(("Authorization", a.as_str()));
        }
        http::request(self.rpc_addr(), "POST", "/RPC", &headers, body)
            .unwrap_or_else(|e| panic!("POST /RPC: {e:#}"))
    }

    /// GET `path` on the HTTP listener (with the configured token).
    pub fn http_get(&self, path: &str) -> http::Response {
        let auth = self.token().map(|t| format!("Bearer {t}"));
        let mut headers = Vec::new();
        if let Some(a) = &auth {
            headers.push(("Authorization", a.as_str()));
        }
        http::request(self.rpc_addr(), "GET", path, &headers, b"")
            .unwrap_or_else(|e| panic!("GET {path}: {e:#}"))
    }

    /// One JSON-RPC call over the UNIX socket (newline-delimited); returns
    /// the whole response object.
    pub fn rpc_unix_call(&self, method: &str, params: Value) -> Value {
        let req =
            serde_json::json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 7});
        let line = self
            .unix_raw(&serde_json::to_vec(&req).expect("invariant: JSON"))
            .unwrap_or_else(|e| panic!("{method} over the UNIX socket: {e:#}"));
        let v: Value = serde_json::from_slice(&line).unwrap_or_else(|e| {
            panic!(
                "UNIX socket answer is not JSON ({e}): {}",
                String::from_utf8_lossy(&line)
            )
        });
        assert_eq!(v["id"], 7, "response id for {method}: {v}");
        v
    }

    /// [`Node::rpc_unix_call`] returning `result`, failing on an error.
    pub fn rpc_unix(&self, method: &str, params: Value) -> Value {
        let v = self.rpc_unix_call(method, params.clone());
        if let Some(e) = v.get("error") {
            panic!("{method} {params} over the UNIX socket failed: {e}");
        }
        v.get("result")
            .cloned()
            .unwrap_or_else(|| panic!("{method}: response has neither result nor error: {v}"))
    }

    /// Send one line on the UNIX socket, read one line back.
    pub fn unix_raw(&self, line: &[u8]) -> anyhow::Result<Vec<u8>> {
        let path = self.socket_path();
        let mut s = UnixStream::connect(&path)
            .with_context(|| format!("connecting to {}", path.display()))?;
        s.set_read_timeout(Some(RPC_TIMEOUT))?;
        s.write_all(line)?;
        s.write_all(b"\n")?;
        let mut answer = Vec::new();
        BufReader::new(s).read_until(b'\n', &mut answer)?;
        if answer.is_empty() {
            bail!("the node closed the UNIX socket without answering");
        }
        Ok(answer)
    }

    /// Run `regmesh ctl ARGS...` (the caller picks `--socket`/`--url`).
    pub fn ctl(&self, args: &[&str]) -> Output {
        let out = Command::new(regmesh_bin())
            .arg("ctl")
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("REGMESH_TOKEN")
            .stdin(Stdio::null())
            .output()
            .expect("running regmesh ctl");
        eprintln!(
            "[e2e] regmesh ctl {} -> {}\n--- stdout\n{}--- stderr\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// `regmesh ctl --socket <this node's socket> ARGS...`
    pub fn ctl_socket(&self, args: &[&str]) -> Output {
        let socket = self.socket_path();
        let socket = socket.to_str().expect("invariant: temp paths are UTF-8");
        let mut all = vec!["--socket", socket];
        all.extend_from_slice(args);
        self.ctl(&all)
    }

    /// Fail the test if the node process has exited (crashed).
    pub fn assert_running(&mut self) {
        let child = self
            .child
            .as_mut()
            .expect("the node is not running: the test killed it");
        if let Some(status) = child.try_wait().expect("polling the regmesh child") {
            panic!("regmesh exited unexpectedly: {status}");
        }
    }

    /// SIGKILL the node (no shutdown, no flush) and reap it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Child::kill sends SIGKILL on Unix.
            child.kill().expect("sending SIGKILL to regmesh");
            let status = child.wait().expect("reaping regmesh");
            assert!(
                !status.success(),
                "regmesh exited cleanly although it was SIGKILLed: {status}"
            );
        }
    }

    /// Send SIGTERM and wait (at most `timeout`) for the process to exit;
    /// returns its exit status. Graceful shutdown is what is under test.
    pub fn terminate(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("the node is running");
        let pid = child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("running kill");
        assert!(sent.success(), "kill -TERM {pid} failed");
        let deadline = now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("polling regmesh") {
                return status;
            }
            if now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("regmesh did not exit within {timeout:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Start the node again on the same config and data directory (after
    /// [`Node::kill9`]; a running node is SIGKILLed first). Addresses change:
    /// every listener binds port 0 again.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn()
            .unwrap_or_else(|e| panic!("restarting regmesh: {e:#}"));
    }

    fn print_log_tail(&self) {
        let Ok(mut f) = File::open(self.log_path()) else {
            eprintln!("[e2e] (no regmesh log at {})", self.log_path().display());
            return;
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let skip = len.saturating_sub(LOG_TAIL_BYTES);
        let mut text = Vec::new();
        if std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(skip)).is_ok() {
            let _ = f.read_to_end(&mut text);
        }
        eprintln!(
            "[e2e] ===== regmesh log ({}{} bytes) =====\n{}\n[e2e] ===== end of regmesh log =====",
            if skip > 0 { "last " } else { "" },
            len - skip,
            String::from_utf8_lossy(&text)
        );
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            self.print_log_tail();
        }
    }
}

/// Deep-merge `over` into `base`: tables merge key by key, anything else replaces.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_merge_into_nested_tables() {
        let mut base: toml::Table = "[a]\nx = 1\ny = 2\n[b]\nz = 3".parse().unwrap();
        merge(&mut base, "[a]\ny = 5\n[c]\nw = true".parse().unwrap());
        assert_eq!(base["a"]["x"].as_integer(), Some(1));
        assert_eq!(base["a"]["y"].as_integer(), Some(5));
        assert_eq!(base["b"]["z"].as_integer(), Some(3));
        assert_eq!(base["c"]["w"].as_bool(), Some(true));
    }

    #[test]
    fn ready_file_parses() {
        let doc = serde_json::json!({
            "sip": [{"transport": "udp", "addr": "127.0.0.1:40001"},
                    {"transport": "tcp", "addr": "127.0.0.1:40002"}],
            "rpc": "127.0.0.1:40003", "socket": "/tmp/x/data/regmesh.sock", "pid": 123
        });
        let r = Ready::parse(&doc).unwrap();
        assert_eq!(r.sip.len(), 2);
        assert_eq!(r.sip[1].0, "tcp");
        assert_eq!(r.rpc, Some("127.0.0.1:40003".parse().unwrap()));
        assert_eq!(r.pid, 123);
    }
}
