//! JSON-RPC over a UNIX stream socket, for `regmesh ctl` on the same host.
//!
//! # Framing
//!
//! Newline-delimited JSON: the client writes one request or batch as one
//! line (the JSON text must not contain a raw newline; JSON escapes them in
//! strings, and pretty-printed JSON must be compacted first), ended by
//! `\n` (a `\r` before it is ignored). The server answers each line with
//! exactly one line, the response or batch response followed by `\n`, in
//! order; a line holding only notifications gets no answer line, and
//! empty lines are skipped. A client may send many lines on one connection
//! or close after the first answer. A final line without `\n` before EOF is
//! still answered.
//!
//! A line longer than [`MAX_LINE`] bytes gets one -32600 error line, and
//! the connection is closed (the rest of that line cannot be resynchronised).
//!
//! # Security
//!
//! The socket file is mode 0600: only the node's user can connect, which is
//! the socket's whole access control (no token). The mode is set on a
//! temporary name before the socket is renamed into place, so it is never
//! reachable with a wider mode. A stale socket file left by a crash is
//! removed at start, but only if it is a socket that nobody answers on;
//! anything else at the path is an error, never deleted. The file is
//! removed when serving stops.

use crate::RpcContext;
use crate::error::RpcError;
use crate::jsonrpc::{encode, failure};
use serde_json::Value;
use std::io;
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncBufRead, AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

/// Longest accepted line (request or batch), in bytes, without the newline.
pub const MAX_LINE: usize = 1 << 20;

/// Most connections served at once; further clients wait in the kernel's
/// accept backlog until one closes.
const MAX_CONNECTIONS: usize = 64;

/// Serve until `cancel` fires (see the module docs).
pub(crate) async fn serve(
    path: &Path,
    ctx: RpcContext,
    cancel: CancellationToken,
) -> io::Result<()> {
    let listener = bind(path)?;
    info!(path = %path.display(), "listening for JSON-RPC on UNIX socket");
    let ctx = Arc::new(ctx);
    let tracker = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let result = loop {
        let permit = tokio::select! {
            biased;
            () = cancel.cancelled() => break Ok(()),
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break Ok(()),
            },
        };
        let stream = tokio::select! {
            biased;
            () = cancel.cancelled() => break Ok(()),
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) if transient(&e) => {
                    warn!(error = %e, "UNIX socket accept failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
                Err(e) => break Err(e),
            },
        };
        let ctx = ctx.clone();
        let cancel = cancel.clone();
        tracker.spawn(async move {
            if let Err(e) = connection(stream, &ctx, &cancel).await {
                debug!(error = %e, "UNIX socket connection ended with an error");
            }
            drop(permit);
        });
    };
    drop(listener);
    tracker.close();
    // Connections stop at their next line boundary once cancelled; a call in
    // progress (waiting for its commit) finishes and is answered first.
    tracker.wait().await;
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != io::ErrorKind::NotFound
    {
        warn!(path = %path.display(), error = %e, "could not remove the UNIX socket");
    }
    result
}

/// Accept errors that do not mean the listener is broken (a client that
/// went away, or descriptors exhausted for a moment).
fn transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::Interrupted
    ) || e.raw_os_error() == Some(24) // EMFILE
        || e.raw_os_error() == Some(23) // ENFILE
}

/// Bind at `path` with mode 0600 (see the module docs).
fn bind(path: &Path) -> io::Result<UnixListener> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{} is in use by a running server", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} exists and is not a socket; not replacing it",
                    path.display()
                ),
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let tmp = temp_name(path);
    let _ = std::fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp)?;
    let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(listener)
}

/// `<path>.<pid>.tmp`, beside the final path (so the rename stays on one
/// file system).
fn temp_name(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.tmp", std::process::id()));
    path.with_file_name(name)
}

/// What reading one line gave.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// A line (possibly the last, unterminated one) is in the buffer.
    Complete,
    /// End of stream with nothing buffered.
    Eof,
    /// Longer than [`MAX_LINE`].
    TooLong,
}

/// Read up to the next `\n` into `buf` (without it), never buffering more
/// than `max` bytes.
async fn read_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<Line> {
    buf.clear();
    loop {
        let available = r.fill_buf().await?;
        if available.is_empty() {
            return Ok(if buf.is_empty() {
                Line::Eof
            } else {
                Line::Complete
            });
        }
        let (take, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (i, true),
            None => (available.len(), false),
        };
        if buf.len() + take > max {
            return Ok(Line::TooLong);
        }
        buf.extend_from_slice(&available[..take]);
        r.consume(if done { take + 1 } else { take });
        if done {
            return Ok(Line::Complete);
        }
    }
}

/// Serve one connection until EOF, an error, or cancellation.
async fn connection(
    stream: UnixStream,
    ctx: &RpcContext,
    cancel: &CancellationToken,
) -> io::Result<()> {
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd);
    let mut buf = Vec::new();
    loop {
        let line = tokio::select! {
            biased;
            () = cancel.cancelled() => return Ok(()),
            l = read_line(&mut rd, &mut buf, MAX_LINE) => l?,
        };
        match line {
            Line::Eof => return Ok(()),
            Line::TooLong => {
                let mut out = encode(&failure(
                    Value::Null,
                    &RpcError::TooLarge { limit: MAX_LINE },
                ));
                out.push(b'\n');
                wr.write_all(&out).await?;
                wr.shutdown().await?;
                return Ok(());
            }
            Line::Complete => {}
        }
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if let Some(mut out) = crate::handle(ctx, &buf).await {
            out.push(b'\n');
            wr.write_all(&out).await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_split_and_bounded() {
        let data: &[u8] = b"one\r\ntwo\n\nlast";
        let mut r = BufReader::with_capacity(2, data);
        let mut buf = Vec::new();
        assert_eq!(
            read_line(&mut r, &mut buf, 10).await.ok(),
            Some(Line::Complete)
        );
        assert_eq!(buf, b"one\r");
        assert_eq!(
            read_line(&mut r, &mut buf, 10).await.ok(),
            Some(Line::Complete)
        );
        assert_eq!(buf, b"two");
        assert_eq!(
            read_line(&mut r, &mut buf, 10).await.ok(),
            Some(Line::Complete)
        );
        assert_eq!(buf, b"");
        assert_eq!(
            read_line(&mut r, &mut buf, 10).await.ok(),
            Some(Line::Complete)
        );
        assert_eq!(buf, b"last");
        assert_eq!(read_line(&mut r, &mut buf, 10).await.ok(), Some(Line::Eof));

        let long: &[u8] = b"0123456789abc\n";
        let mut r = BufReader::with_capacity(4, long);
        assert_eq!(
            read_line(&mut r, &mut buf, 10).await.ok(),
            Some(Line::TooLong)
        );
    }

    #[test]
    fn temp_name_is_beside_the_socket() {
        let t = temp_name(Path::new("/run/regmesh/regmesh.sock"));
        assert_eq!(t.parent(), Some(Path::new("/run/regmesh")));
        assert!(t.to_string_lossy().ends_with(".tmp"));
    }
}
