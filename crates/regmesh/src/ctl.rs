//! `regmesh ctl`: call a JSON-RPC method on a running node, over the UNIX
//! socket (default: `./regmesh-data/regmesh.sock`) or HTTP (`--url`), and print
//! the result as a readable table (or raw JSON with `--json`).
//!
//! Arguments that parse as JSON numbers are sent as numbers, everything else
//! as strings, so `regmesh ctl ul.add location alice@x sip:a@h 3600 1 0 0 0 0`
//! means what a Kamailio operator expects.

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// How long `ctl` waits for an answer.
const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(clap::Args)]
pub(crate) struct CtlArgs {
    /// HTTP endpoint, e.g. http://127.0.0.1:9060/RPC
    #[arg(long, conflicts_with = "socket")]
    url: Option<String>,
    /// UNIX socket path.
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Bearer token for the HTTP endpoint (or REGMESH_TOKEN).
    #[arg(long, env = "REGMESH_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// Method name, e.g. ul.dump
    method: String,
    /// Positional parameters.
    params: Vec<String>,
}

pub(crate) fn run(args: CtlArgs) -> ExitCode {
    match call(&args) {
        Ok(response) => {
            if let Some(err) = response.get("error") {
                let code = err.get("code").and_then(Value::as_i64).unwrap_or(0);
                let msg = err.get("message").and_then(Value::as_str).unwrap_or("");
                if args.json {
                    println!("{}", serde_json::to_string_pretty(err).unwrap_or_default());
                }
                eprintln!("error {code}: {msg}");
                return ExitCode::FAILURE;
            }
            let result = response.get("result").cloned().unwrap_or(Value::Null);
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&result).unwrap_or_default()
                );
            } else {
                print!("{}", render(&result));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("regmesh ctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A numeric-looking argument is sent as a number only when that loses
/// nothing (`3600`, `0.5`), so `007` or `1.50` (a password, say) stay strings.
fn param(s: &str) -> Value {
    if let Ok(n) = s.parse::<i64>()
        && n.to_string() == s
    {
        return json!(n);
    }
    if let Ok(f) = s.parse::<f64>()
        && f.is_finite()
        && f.to_string() == s
        && s.contains('.')
    {
        return json!(f);
    }
    json!(s)
}

fn call(args: &CtlArgs) -> anyhow::Result<Value> {
    let params: Vec<Value> = args.params.iter().map(|p| param(p)).collect();
    let request = json!({"jsonrpc": "2.0", "method": args.method, "params": params, "id": 1});
    let body = serde_json::to_vec(&request)?;
    let reply = match &args.url {
        Some(url) => http_post(url, args.token.as_deref(), &body)?,
        None => {
            let path = args
                .socket
                .clone()
                .unwrap_or_else(|| PathBuf::from("./regmesh-data/regmesh.sock"));
            unix_call(&path, &body)?
        }
    };
    serde_json::from_slice(&reply).context("the node's answer is not JSON")
}

fn unix_call(path: &std::path::Path, body: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut stream = std::os::unix::net::UnixStream::connect(path).with_context(|| {
        format!(
            "connecting to {} (is the node running? use --socket or --url)",
            path.display()
        )
    })?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.write_all(body)?;
    stream.write_all(b"\n")?;
    let mut line = Vec::new();
    BufReader::new(stream)
        .read_until(b'\n', &mut line)
        .context("reading the answer")?;
    if line.is_empty() {
        bail!("the node closed the socket without answering");
    }
    Ok(line)
}

/// A minimal HTTP/1.1 client: enough for `POST /RPC` to a node, no TLS.
fn http_post(url: &str, token: Option<&str>, body: &[u8]) -> anyhow::Result<Vec<u8>> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("--url {url}: only http:// URLs are supported"))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/RPC"),
    };
    let mut stream = std::net::TcpStream::connect(hostport)
        .with_context(|| format!("connecting to {hostport}"))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {hostport}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes())?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .context("reading the HTTP answer")?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("malformed HTTP answer")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("malformed HTTP status line")?;
    let body = raw[split + 4..].to_vec();
    match status {
        200 => Ok(body),
        401 => bail!("HTTP 401: the node wants a valid bearer token (--token or REGMESH_TOKEN)"),
        s => bail!("HTTP {s}: {}", String::from_utf8_lossy(&body)),
    }
}

/// Render a JSON result for a terminal: arrays of objects become tables
/// (nested `{"Contact": {...}}` wrappers, as Kamailio returns them, are
/// unwrapped), arrays of scalars one per line, objects as `key: value`.
fn render(v: &Value) -> String {
    let mut out = String::new();
    render_into(v, 0, &mut out);
    out
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// `{"Contact": {...}}` → the inner object.
fn unwrap_single(v: &Value) -> &Value {
    match v {
        Value::Object(m) if m.len() == 1 => match m.values().next() {
            Some(inner @ Value::Object(_)) => inner,
            _ => v,
        },
        _ => v,
    }
}

fn render_into(v: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Array(items)
            if items
                .iter()
                .all(|i| matches!(unwrap_single(i), Value::Object(_)))
                && !items.is_empty() =>
        {
            let rows: Vec<&serde_json::Map<String, Value>> = items
                .iter()
                .filter_map(|i| unwrap_single(i).as_object())
                .collect();
            let flat = rows
                .iter()
                .all(|r| r.values().all(|x| !x.is_object() && !x.is_array()));
            if flat {
                table(&rows, indent, out);
            } else {
                for r in rows {
                    render_into(&Value::Object(r.clone()), indent, out);
                    out.push('\n');
                }
            }
        }
        Value::Array(items) => {
            for i in items {
                if i.is_object() || i.is_array() {
                    render_into(i, indent, out);
                } else {
                    out.push_str(&format!("{pad}{}\n", scalar(i)));
                }
            }
        }
        Value::Object(m) => {
            for (k, val) in m {
                if val.is_object() || val.is_array() {
                    out.push_str(&format!("{pad}{k}:\n"));
                    render_into(val, indent + 2, out);
                } else {
                    out.push_str(&format!("{pad}{k}: {}\n", scalar(val)));
                }
            }
        }
        other => out.push_str(&format!("{pad}{}\n", scalar(other))),
    }
}

/// Tables wider than this many columns are cut down to [`PREFERRED`].
const WIDE: usize = 10;
const PREFERRED: &[&str] = &[
    "Address",
    "Expires",
    "Q",
    "Call-ID",
    "CSeq",
    "Received",
    "Socket",
    "User-Agent",
    "Server-Id",
];

fn table(rows: &[&serde_json::Map<String, Value>], indent: usize, out: &mut String) {
    let mut cols: Vec<&str> = Vec::new();
    for r in rows {
        for k in r.keys() {
            if !cols.contains(&k.as_str()) {
                cols.push(k);
            }
        }
    }
    // Kamailio's contact records have two dozen fields; a terminal shows the
    // ones an operator reads first (`--json` has them all).
    if cols.len() > WIDE {
        let preferred: Vec<&str> = PREFERRED
            .iter()
            .copied()
            .filter(|p| cols.contains(p))
            .collect();
        if !preferred.is_empty() {
            cols = preferred;
        }
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            cols.iter()
                .map(|c| r.get(*c).map(scalar).unwrap_or_default())
                .collect()
        })
        .collect();
    let widths: Vec<usize> = cols
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|row| row[i].len())
                .max()
                .unwrap_or(0)
                .max(c.len())
        })
        .collect();
    let pad = " ".repeat(indent);
    let line = |vals: Vec<&str>| {
        let parts: Vec<String> = vals
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        format!("{pad}{}\n", parts.join("  ").trim_end())
    };
    out.push_str(&line(cols.clone()));
    out.push_str(&line(
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect(),
    ));
    for row in &cells {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_typed_like_an_operator_means() {
        assert_eq!(param("3600"), json!(3600));
        assert_eq!(param("0.5"), json!(0.5));
        assert_eq!(param("alice@example.com"), json!("alice@example.com"));
        assert_eq!(param("sip:a@1.2.3.4:5060"), json!("sip:a@1.2.3.4:5060"));
        assert_eq!(param("007"), json!("007"));
        assert_eq!(param("1.50"), json!("1.50"));
        assert_eq!(param("-1"), json!(-1));
    }

    #[test]
    fn arrays_of_wrapped_objects_render_as_a_table() {
        let v = json!([
            {"Contact": {"Address": "sip:a@h", "Expires": 60}},
            {"Contact": {"Address": "sip:bb@h", "Expires": 3600}}
        ]);
        let text = render(&v);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "Address   Expires");
        assert_eq!(lines[2], "sip:a@h   60");
        assert_eq!(lines[3], "sip:bb@h  3600");
    }

    #[test]
    fn string_lists_render_one_per_line() {
        let v = json!(["registrar:accepted_regs = 5", "usrloc:registered_users = 2"]);
        assert_eq!(
            render(&v),
            "registrar:accepted_regs = 5\nusrloc:registered_users = 2\n"
        );
    }
}
