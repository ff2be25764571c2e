//! SIP over TCP and TLS: Content-Length framing (RFC 3261 §18.3), persistent
//! connections, replies on the connection the request came in on, CRLF
//! keep-alives (RFC 5626 §3.5.1) answered with CRLF.

use crate::serve::SipShared;
use anyhow::Context as _;
use regmesh_registrar::{Action, Deferred, LocalSocket};
use regmesh_sip::{Frame, ParseError, Source};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

/// A reply that cannot be written within this long closes the connection.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// A TLS handshake that takes longer than this is abandoned.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Load the certificate chain and key into an acceptor.
pub(crate) fn tls_acceptor(cert: &Path, key: &Path) -> anyhow::Result<TlsAcceptor> {
    use rustls_pemfile::{certs, private_key};
    let mut cert_reader = std::io::BufReader::new(
        std::fs::File::open(cert)
            .with_context(|| format!("sip.tls.cert: opening {}", cert.display()))?,
    );
    let chain = certs(&mut cert_reader)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("sip.tls.cert: reading PEM from {}", cert.display()))?;
    if chain.is_empty() {
        anyhow::bail!("sip.tls.cert: no certificate in {}", cert.display());
    }
    let mut key_reader = std::io::BufReader::new(
        std::fs::File::open(key)
            .with_context(|| format!("sip.tls.key: opening {}", key.display()))?,
    );
    let key = private_key(&mut key_reader)
        .with_context(|| format!("sip.tls.key: reading PEM from {}", key.display()))?
        .with_context(|| format!("sip.tls.key: no private key in {}", key.display()))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("sip.tls: protocol versions")?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .context("sip.tls: certificate and key do not form a usable pair")?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Bind a TCP listener; an IPv6 one is IPv6-only, so `tcp:0.0.0.0:5060`
/// and `tcp:[::]:5060` can be configured side by side, as for UDP.
pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    sock.set_reuse_address(true)?;
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    sock.listen(1024)?;
    TcpListener::from_std(sock.into())
}

/// Accept connections until cancelled; at most `max_conns` at once (the
/// rest wait in the kernel's accept queue).
pub(crate) async fn accept_loop(
    listener: TcpListener,
    local: LocalSocket,
    tls: Option<TlsAcceptor>,
    max_conns: usize,
    shared: Arc<SipShared>,
) {
    let permits = Arc::new(Semaphore::new(max_conns));
    loop {
        let permit = tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => return,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let accepted = tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let shared2 = shared.clone();
        let tls = tls.clone();
        shared.tracker.spawn(async move {
            let _permit = permit;
            match tls {
                None => serve_conn(stream, peer, local, &shared2).await,
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => serve_conn(s, peer, local, &shared2).await,
                        Ok(Err(e)) => debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

/// `513 Message Too Large` (RFC 3261 §21.5.14) for an oversized stream
/// message: with the request's Via, From, To, Call-ID and CSeq when its head
/// can be salvaged, so the client can match it; bare otherwise.
fn too_large(head: &[u8], source: Source) -> Vec<u8> {
    let salvaged = regmesh_sip::salvage(head).filter(|r| {
        r.top_via().is_ok()
            && r.cseq().is_ok()
            && r.call_id().is_ok()
            && r.from().is_ok()
            && r.to().is_ok()
    });
    match salvaged {
        Some(req) => {
            let tag = regmesh_registrar::to_tag(&req);
            regmesh_sip::ResponseBuilder::new(&req, Some(source), 513, "Message Too Large", &tag)
                .finish(None, &[])
        }
        None => b"SIP/2.0 513 Message Too Large\r\nContent-Length: 0\r\n\r\n".to_vec(),
    }
}

/// Whether `bytes` hold an empty line (`\n\r\n` or `\n\n`): the end of a
/// header section, or CRLF keep-alives; either way there is a frame to cut.
fn has_head_end(bytes: &[u8]) -> bool {
    bytes.windows(2).enumerate().any(|(i, w)| {
        w[0] == b'\n' && (w[1] == b'\n' || (w[1] == b'\r' && bytes.get(i + 2) == Some(&b'\n')))
    }) || bytes.starts_with(b"\r\n")
}

/// Replies a connection has queued, in request order.
enum Reply {
    /// Bytes ready to write.
    Now(Vec<u8>),
    /// Bytes to write once the commit is durable (else its 503).
    AfterCommit(Deferred, regmesh_location::Commit),
}

/// Replies that may wait for their commits on one connection: the reader
/// keeps framing and handling while earlier requests are being made durable,
/// so a pipelining client (or a proxy multiplexing many phones over one
/// connection) is not held to one fsync per request. Past this the reader
/// waits: backpressure, nothing dropped.
const PIPELINE: usize = 256;

/// Serve one connection: frame and handle in a reader, answer in order from
/// a writer, both on this task.
async fn serve_conn<S>(stream: S, peer: SocketAddr, local: LocalSocket, shared: &SipShared)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (rd, wr) = tokio::io::split(stream);
    let (tx, rx) = tokio::sync::mpsc::channel::<Reply>(PIPELINE);
    let reader = read_requests(rd, tx, peer, local, shared);
    let writer = write_replies(wr, rx);
    tokio::join!(reader, writer);
}

async fn write_replies<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut rx: tokio::sync::mpsc::Receiver<Reply>,
) {
    while let Some(reply) = rx.recv().await {
        let bytes = match reply {
            Reply::Now(b) => b,
            Reply::AfterCommit(reply, commit) => match commit.wait().await {
                Ok(()) => reply.into_reply(),
                Err(e) => {
                    tracing::error!(error = %e, "commit failed; answering 503");
                    reply.failed()
                }
            },
        };
        // A peer that stops reading must not pin the connection (and its
        // `max_connections` permit) forever.
        let written = tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(&bytes)).await;
        if !matches!(written, Ok(Ok(()))) {
            // The peer is gone or stuck: stop; dropping `rx` makes the
            // reader's next send fail, so it stops too.
            return;
        }
    }
    let _ = wr.shutdown().await;
}

async fn read_requests<R: AsyncRead + Unpin>(
    mut rd: R,
    tx: tokio::sync::mpsc::Sender<Reply>,
    peer: SocketAddr,
    local: LocalSocket,
    shared: &SipShared,
) {
    let source = Source {
        transport: local.transport,
        addr: peer,
    };
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut start = 0usize;
    // Bytes of `buf[start..]` known to hold no end of a header section: a
    // peer dripping a header one byte per segment must not make each read
    // rescan everything before it (quadratic CPU).
    let mut no_head_end = 0usize;
    loop {
        // Handle every complete frame already buffered.
        loop {
            let pending = buf.len() - start;
            if no_head_end > 0
                && pending <= shared.max_message_size
                && !has_head_end(&buf[start + no_head_end.saturating_sub(3)..])
            {
                no_head_end = pending;
                break;
            }
            let reply = match regmesh_sip::frame(&buf[start..], shared.max_message_size) {
                Ok(Frame::KeepAlive(n)) => {
                    start += n;
                    no_head_end = 0;
                    // RFC 5626 §3.5.1: a double CRLF ping gets a single CRLF pong.
                    (n >= 4).then(|| Reply::Now(b"\r\n".to_vec()))
                }
                Ok(Frame::Message(n)) => {
                    no_head_end = 0;
                    let action = shared
                        .registrar
                        .handle(&buf[start..start + n], source, local);
                    start += n;
                    match action {
                        Action::Reply(b) => Some(Reply::Now(b)),
                        Action::ReplyAfterCommit(reply, commit) => {
                            Some(Reply::AfterCommit(reply, commit))
                        }
                        Action::Drop => None,
                    }
                }
                Err(ParseError::Incomplete) => {
                    if !has_head_end(&buf[start..]) {
                        no_head_end = pending;
                    }
                    break;
                }
                Err(ParseError::TooLarge) => {
                    shared.counters.oversize.fetch_add(1, Ordering::Relaxed);
                    debug!(%peer, "stream message over the size limit; closing");
                    let _ = tx.send(Reply::Now(too_large(&buf[start..], source))).await;
                    return;
                }
                Err(e) => {
                    // Framing is lost: nothing after this point can be delimited.
                    shared.counters.bad_frames.fetch_add(1, Ordering::Relaxed);
                    debug!(%peer, error = %e, "unframeable stream data; closing");
                    return;
                }
            };
            if let Some(r) = reply {
                let sent = tokio::select! {
                    biased;
                    _ = shared.cancel.cancelled() => return,
                    s = tx.send(r) => s,
                };
                if sent.is_err() {
                    return;
                }
            }
        }
        if start > 0 {
            buf.drain(..start);
            start = 0;
        }
        let read = tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => return,
            r = tokio::time::timeout(shared.idle_timeout, rd.read_buf(&mut buf)) => r,
        };
        match read {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(_)) => {}
            Err(_) => {
                debug!(%peer, "idle connection closed");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::has_head_end;

    #[test]
    fn head_end_is_an_empty_line() {
        assert!(has_head_end(b"CSeq: 1 REGISTER\r\n\r\n"));
        assert!(has_head_end(b"CSeq: 1 REGISTER\n\n"));
        assert!(has_head_end(b"\r\n\r\n"));
        assert!(!has_head_end(b"CSeq: 1 REGISTER\r\nTo: <sip:a@b>\r"));
        assert!(!has_head_end(b"Via: SIP/2.0/TCP h"));
    }
}
