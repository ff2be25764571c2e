//! SIP over UDP: receive tasks that hand each datagram to the registrar and
//! send its answer back to the datagram's source address (RFC 3581 §4: the
//! source, not the Via sent-by, is what a NAT lets back in).

use crate::serve::SipShared;
use regmesh_registrar::{Action, LocalSocket};
use regmesh_sip::{Source, Transport};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::net::UdpSocket;
use tracing::{debug, error, warn};

/// Kernel receive buffer asked for: a re-registration storm arrives faster
/// than any process reads, and a small buffer turns bursts into drops and
/// client retransmissions (the Kamailio default's knee on this hardware).
const RECV_BUFFER: usize = 8 << 20;

/// Bind a UDP socket with a large receive buffer.
pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    // Best effort: the kernel caps this at net.core.rmem_max.
    if let Err(e) = sock.set_recv_buffer_size(RECV_BUFFER) {
        warn!(error = %e, "could not raise the UDP receive buffer");
    }
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    UdpSocket::from_std(sock.into())
}

/// One receive task per core share the socket.
pub(crate) fn spawn(sock: Arc<UdpSocket>, local: LocalSocket, shared: Arc<SipShared>) {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    for _ in 0..workers {
        shared
            .tracker
            .spawn(recv_loop(sock.clone(), local, shared.clone()));
    }
}

/// Receive, handle, and answer. Replies that wait for a commit are held in
/// this task's own set of pending commits rather than a spawned task each:
/// the group-commit writer finishes many requests at once, and one wake-up
/// of this task then sends all their replies. (A task and a cross-thread
/// wake per REGISTER was the largest cost in the profile, BENCHMARKS.md.)
async fn recv_loop(sock: Arc<UdpSocket>, local: LocalSocket, shared: Arc<SipShared>) {
    use futures_util::StreamExt as _;
    use futures_util::stream::FuturesUnordered;
    // One byte more than the limit tells an oversized datagram from one that fits exactly.
    let mut buf = vec![0u8; shared.max_message_size + 1];
    let mut waiting = FuturesUnordered::new();
    loop {
        let received = tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => break,
            Some(done) = waiting.next(), if !waiting.is_empty() => {
                let (bytes, peer): (Vec<u8>, SocketAddr) = done;
                send(&sock, &bytes, peer).await;
                continue;
            }
            r = sock.recv_from(&mut buf) => r,
        };
        let (n, peer) = match received {
            Ok(x) => x,
            Err(e) => {
                // ICMP port-unreachable from an earlier send can surface here; keep serving.
                debug!(error = %e, "udp receive error");
                continue;
            }
        };
        if n > shared.max_message_size {
            shared.counters.oversize.fetch_add(1, Ordering::Relaxed);
            debug!(%peer, "oversized datagram dropped");
            continue;
        }
        let source = Source {
            transport: Transport::Udp,
            addr: peer,
        };
        match shared.registrar.handle(&buf[..n], source, local) {
            Action::Reply(bytes) => send(&sock, &bytes, peer).await,
            Action::ReplyAfterCommit(ok, commit, failed) => waiting.push(async move {
                let bytes = match commit.wait().await {
                    Ok(()) => ok,
                    Err(e) => {
                        error!(error = %e, "commit failed; answering 503");
                        failed
                    }
                };
                (bytes, peer)
            }),
            Action::Drop => {}
        }
    }
    // Shutting down: answer what is being committed (serve bounds this by
    // its drain grace).
    while let Some(done) = waiting.next().await {
        let (bytes, peer): (Vec<u8>, SocketAddr) = done;
        send(&sock, &bytes, peer).await;
    }
}

async fn send(sock: &UdpSocket, bytes: &[u8], peer: SocketAddr) {
    if let Err(e) = sock.send_to(bytes, peer).await {
        debug!(%peer, error = %e, "udp send failed");
    }
}
