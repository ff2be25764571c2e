//! SIP over UDP: dedicated receive threads that hand each datagram to the
//! registrar and send its answer back to the datagram's source address
//! (RFC 3581 §4: the source, not the Via sent-by, is what a NAT lets back in).
//!
//! Why threads and not tasks: the profile (BENCHMARKS.md) showed the
//! hand-offs as a main cost, a task wake-up per REGISTER after the fsync,
//! one `recvfrom` and one `sendto` per datagram, and the scheduler between
//! them. Here each receive thread owns a clone of the socket and takes up
//! to [`BATCH`] datagrams per `recvmmsg`; the answers it can give at once
//! leave together in one `sendmmsg`. An answer that waits for a commit is
//! sent by the store's writer thread itself, right after the fsync
//! ([`Commit::on_durable`]), with one non-blocking `sendto`: no task, no
//! wake-up.
//!
//! Shutdown: the threads block in `recvmmsg` for at most [`RECV_POLL`]
//! (`SO_RCVTIMEO`), then look at a stop flag (set when serve's cancellation
//! token fires) and stop. Serve's drain then waits (within its grace) until
//! every answer promised to a pending commit has been sent, so REGISTERs
//! being committed when the signal came still get their reply.

use crate::serve::SipShared;
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg};
use regmesh_location::{Commit, StoreError};
use regmesh_registrar::{Action, Deferred, LocalSocket};
use regmesh_sip::{Source, Transport};
use rustix::net::{MMsgHdr, SendAncillaryBuffer, SendFlags, SocketAddrAny, sendmmsg, sendto};
use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

/// Kernel receive buffer asked for: a re-registration storm arrives faster
/// than any process reads, and a small buffer turns bursts into drops and
/// client retransmissions (the Kamailio default's knee on this hardware).
const RECV_BUFFER: usize = 8 << 20;

/// Datagrams taken per `recvmmsg`, and so at most as many immediate
/// answers per `sendmmsg`.
const BATCH: usize = 32;

/// How long a receive thread blocks before it looks at the shutdown flag.
const RECV_POLL: Duration = Duration::from_millis(100);

/// How often the drain looks whether the threads and the promised answers
/// are done (only while shutting down).
const DRAIN_POLL: Duration = Duration::from_millis(2);

/// Bind a UDP socket with a large receive buffer. The socket is blocking
/// with a receive timeout of [`RECV_POLL`] (see the module docs).
pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        // Also keeps every source address on this socket the same size,
        // which the receive loop relies on (see `ReceiveLoop::headers`).
        sock.set_only_v6(true)?;
    }
    // Best effort: the kernel caps this at net.core.rmem_max.
    if let Err(e) = sock.set_recv_buffer_size(RECV_BUFFER) {
        warn!(error = %e, "could not raise the UDP receive buffer");
    }
    sock.set_read_timeout(Some(RECV_POLL))?;
    sock.bind(&addr.into())?;
    Ok(sock.into())
}

/// Start [`receive_threads`] receive threads on `sock`, and a task in the
/// shared tracker that, on shutdown, waits for the threads to stop and for
/// every answer promised to a pending commit to be sent.
pub(crate) fn spawn(
    sock: UdpSocket,
    local: LocalSocket,
    shared: Arc<SipShared>,
) -> std::io::Result<()> {
    let workers = receive_threads(std::thread::available_parallelism().map_or(2, |n| n.get()));
    let endpoint = Arc::new(Endpoint {
        sock: sock.try_clone()?,
        pending: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
    });
    let mut threads = Vec::with_capacity(workers);
    for i in 0..workers {
        let sock = sock.try_clone()?;
        let shared = shared.clone();
        let endpoint = endpoint.clone();
        let thread = std::thread::Builder::new()
            .name(format!("sip-udp-{i}"))
            .spawn(move || ReceiveLoop::new(sock, local, shared, endpoint).run())?;
        threads.push(thread);
    }
    shared
        .tracker
        .spawn(drain(threads, endpoint, shared.cancel.clone()));
    Ok(())
}

/// How many threads receive on one socket with `cores` cores: one per two
/// cores, at least one.
///
/// The receive threads share the cores with the store's writer thread (and
/// on a loopback bench with the clients). Two threads on one socket each
/// took about half of what arrived, so each woke, took ~2 datagrams per
/// `recvmmsg` and slept again, and a context switch per ~2 REGISTERs was
/// the largest item of the profile. On 2 cores one thread took 7-17% less
/// CPU per REGISTER, at a higher rate (`bench/quick.sh`, closed loop).
/// More cores were not measured; one per two keeps room for the writer.
fn receive_threads(cores: usize) -> usize {
    (cores / 2).max(1)
}

/// Shutdown for one UDP socket: returns once its receive threads have
/// stopped and every answer they promised has been sent. Serve bounds this
/// by its drain grace.
async fn drain(threads: Vec<JoinHandle<()>>, endpoint: Arc<Endpoint>, cancel: CancellationToken) {
    cancel.cancelled().await;
    endpoint.stop.store(true, Ordering::Relaxed);
    // Each thread sees the flag within one RECV_POLL (plus one batch).
    while !threads.iter().all(JoinHandle::is_finished) {
        tokio::time::sleep(DRAIN_POLL).await;
    }
    for t in threads {
        if t.join().is_err() {
            error!("a UDP receive thread panicked");
        }
    }
    // No thread receives any more, so nothing adds to `pending`: wait for
    // the store's writer to send what is promised.
    while endpoint.pending() > 0 {
        tokio::time::sleep(DRAIN_POLL).await;
    }
}

/// What the receive threads of one socket and their commit callbacks share.
#[derive(Debug)]
struct Endpoint {
    /// A clone of the receiving socket for the answers that wait for a
    /// commit (same port, so the answer comes from where the request went).
    sock: UdpSocket,
    /// Answers promised to a pending commit and not sent yet.
    pending: AtomicUsize,
    /// Set once shutdown starts: the receive threads stop. (A plain flag:
    /// the cancellation token's own check takes a lock.)
    stop: AtomicBool,
}

impl Endpoint {
    /// Send `reply` to `peer` once `commit` is durable, or its 503 if it
    /// fails. Usually runs the send on the store's writer thread; at once
    /// here when the commit is already resolved.
    fn after_commit(self: &Arc<Self>, commit: Commit, reply: Deferred, peer: SocketAddr) {
        self.pending.fetch_add(1, Ordering::Relaxed);
        let this = self.clone();
        commit.on_durable(move |r: Result<(), StoreError>| {
            match r {
                Ok(()) => this.send(reply.reply(), peer),
                Err(e) => {
                    error!(error = %e, "commit failed; answering 503");
                    this.send(&reply.failed(), peer);
                }
            }
            this.pending.fetch_sub(1, Ordering::Release);
        });
    }

    /// One datagram, never blocking: the caller may be the store's writer
    /// thread. A full socket buffer loses the answer as the network would,
    /// and the client retransmits.
    fn send(&self, bytes: &[u8], peer: SocketAddr) {
        if let Err(e) = sendto(&self.sock, bytes, SendFlags::DONTWAIT, &peer) {
            debug!(%peer, error = %e, "udp send failed");
        }
    }

    fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }
}

/// One receive thread's state; every buffer is allocated once, here.
struct ReceiveLoop {
    sock: UdpSocket,
    local: LocalSocket,
    shared: Arc<SipShared>,
    endpoint: Arc<Endpoint>,
    /// [`BATCH`] receive buffers of `max_message_size + 1` bytes, back to
    /// back: one byte more than the limit tells an oversized datagram from
    /// one that fits exactly.
    bufs: Vec<u8>,
    /// The `recvmmsg` headers and source addresses. Only `recvmmsg` uses
    /// them: nix sets the buffers of each call but leaves each header's
    /// address length as the kernel last wrote it, which is right because
    /// every source on one socket has the same family (IPv6 sockets are
    /// v6-only, see [`bind`]).
    headers: MultiHeaders<SockaddrStorage>,
    /// This batch's immediate answers and where they go.
    replies: Vec<(Vec<u8>, SocketAddrAny)>,
}

impl ReceiveLoop {
    fn new(
        sock: UdpSocket,
        local: LocalSocket,
        shared: Arc<SipShared>,
        endpoint: Arc<Endpoint>,
    ) -> Self {
        let bufs = vec![0u8; BATCH * (shared.max_message_size + 1)];
        Self {
            sock,
            local,
            shared,
            endpoint,
            bufs,
            headers: MultiHeaders::preallocate(BATCH, None),
            replies: Vec::with_capacity(BATCH),
        }
    }

    fn run(mut self) {
        while !self.endpoint.stop.load(Ordering::Relaxed) {
            self.receive_batch();
            self.send_replies();
        }
    }

    /// Wait (at most [`RECV_POLL`]) for datagrams, take what is queued (up
    /// to [`BATCH`]) and handle each; immediate answers go to `replies`.
    fn receive_batch(&mut self) {
        let max = self.shared.max_message_size;
        let mut chunks = self.bufs.chunks_mut(max + 1);
        let mut iovs: [[IoSliceMut<'_>; 1]; BATCH] =
            std::array::from_fn(|_| [IoSliceMut::new(chunks.next().unwrap_or_default())]);
        let received = match recvmmsg(
            self.sock.as_raw_fd(),
            &mut self.headers,
            iovs.iter_mut(),
            // Block for the first datagram only, then take what is there.
            MsgFlags::MSG_WAITFORONE,
            None,
        ) {
            Ok(r) => r,
            // The receive timeout: time to look at the shutdown flag.
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => return,
            Err(e) => {
                // ICMP errors from an earlier send can surface here; keep serving.
                debug!(error = %e, "udp receive error");
                return;
            }
        };
        for msg in received {
            let Some(peer) = msg.address.as_ref().and_then(std_addr) else {
                debug!("datagram without a usable source address dropped");
                continue;
            };
            if msg.bytes > max {
                self.shared
                    .counters
                    .oversize
                    .fetch_add(1, Ordering::Relaxed);
                debug!(%peer, "oversized datagram dropped");
                continue;
            }
            // An empty datagram has no slice at all.
            let data = msg.iovs().next().unwrap_or_default();
            let source = Source {
                transport: Transport::Udp,
                addr: peer,
            };
            match self.shared.registrar.handle(data, source, self.local) {
                Action::Reply(bytes) => self.replies.push((bytes, SocketAddrAny::from(peer))),
                Action::ReplyAfterCommit(reply, commit) => {
                    self.endpoint.after_commit(commit, reply, peer);
                }
                Action::Drop => {}
            }
        }
    }

    /// Send this batch's immediate answers with as few `sendmmsg` calls as
    /// the kernel allows (one unless a send fails), then forget them. This
    /// thread may block here while the socket's send buffer is full: it is
    /// its own work, and waiting beats dropping answers.
    fn send_replies(&mut self) {
        let mut start = 0;
        while start < self.replies.len() {
            let todo = &self.replies[start..];
            let n = todo.len().min(BATCH);
            let iovs: [[IoSlice<'_>; 1]; BATCH] = std::array::from_fn(|i| {
                [IoSlice::new(
                    todo.get(i).map_or(&[][..], |(b, _)| b.as_slice()),
                )]
            });
            let mut controls: [SendAncillaryBuffer<'_, '_, '_>; BATCH] =
                std::array::from_fn(|_| SendAncillaryBuffer::default());
            let mut i = 0;
            let mut msgs: [MMsgHdr<'_>; BATCH] = controls.each_mut().map(|control| {
                let iov = &iovs[i];
                let msg = match todo.get(i) {
                    Some((_, addr)) => MMsgHdr::new_with_addr(addr, iov, control),
                    // Past this batch's answers: filler, never sent.
                    None => MMsgHdr::new(iov, control),
                };
                i += 1;
                msg
            });
            match sendmmsg(&self.sock, &mut msgs[..n], SendFlags::empty()) {
                // The kernel stops at the first message it cannot send and
                // reports how many went; the next call starts there.
                Ok(sent) => start += sent.max(1),
                Err(e) => {
                    // The first message failed: drop it, send the rest.
                    debug!(peer = ?todo[0].1, error = %e, "udp send failed");
                    start += 1;
                }
            }
        }
        self.replies.clear();
    }
}

/// A received source address as std's (IPv4 or IPv6; anything else is not
/// an address a UDP socket reports).
fn std_addr(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::SipCounters;
    use regmesh_location::{Location, NodeId, SystemClock};
    use regmesh_registrar::auth::Algorithm;
    use regmesh_registrar::{AuthConfig, NodeInfo, OverflowPolicy, Policy, Registrar, Stats};
    use std::collections::BTreeMap;
    use tokio_util::task::TaskTracker;

    const MAX_MESSAGE: usize = 4096;

    /// The UDP transport of a node, without the rest of `serve`.
    struct Server {
        shared: Arc<SipShared>,
        location: Arc<Location>,
        addr: SocketAddr,
        _dir: tempfile::TempDir,
    }

    /// Must run inside a tokio runtime (the drain task goes to the tracker).
    fn start(bind_to: &str) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let location = Arc::new(
            Location::open(
                &dir.path().join("regmesh.redb"),
                NodeId(1),
                Arc::new(SystemClock),
            )
            .expect("opening the store"),
        );
        let registrar = Arc::new(Registrar {
            policy: Policy {
                default_expires: 3600,
                min_expires: 60,
                max_expires: 7200,
                max_contacts: 0,
                overflow: OverflowPolicy::Reject,
            },
            auth: AuthConfig {
                enabled: false,
                realm: None,
                secret: b"unit-test-secret-0123456789".to_vec(),
                nonce_ttl: 300,
                match_aor: true,
                algorithms: vec![Algorithm::Md5],
            },
            node: NodeInfo { id: NodeId(1) },
            stats: Arc::new(Stats::default()),
            location: location.clone(),
        });
        let shared = Arc::new(SipShared {
            registrar,
            counters: Arc::new(SipCounters::default()),
            max_message_size: MAX_MESSAGE,
            idle_timeout: Duration::from_secs(60),
            cancel: CancellationToken::new(),
            tracker: TaskTracker::new(),
        });
        let sock = bind(bind_to.parse().expect("address")).expect("binding");
        let addr = sock.local_addr().expect("local addr");
        let local = LocalSocket {
            transport: Transport::Udp,
            addr,
        };
        spawn(sock, local, shared.clone()).expect("starting the receive threads");
        Server {
            shared,
            location,
            addr,
            _dir: dir,
        }
    }

    impl Server {
        /// Stop receiving and drain, as `serve` does on SIGTERM; returns
        /// how long the drain took.
        async fn shut_down(&self) -> Duration {
            let started = tokio::time::Instant::now();
            self.shared.cancel.cancel();
            self.shared.tracker.close();
            tokio::time::timeout(Duration::from_secs(10), self.shared.tracker.wait())
                .await
                .expect("the drain ends well within its grace");
            started.elapsed()
        }
    }

    fn register(i: usize, client: SocketAddr) -> Vec<u8> {
        format!(
            "REGISTER sip:example.com SIP/2.0\r\n\
             Via: SIP/2.0/UDP {client};branch=z9hG4bK-unit-{i}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:u{i}@example.com>;tag=t{i}\r\n\
             To: <sip:u{i}@example.com>\r\n\
             Call-ID: reg-{i}@unit\r\n\
             CSeq: 1 REGISTER\r\n\
             Contact: <sip:u{i}@{client}>\r\n\
             Expires: 3600\r\n\
             Content-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    fn invite(i: usize, client: SocketAddr) -> Vec<u8> {
        format!(
            "INVITE sip:nobody{i}@example.com SIP/2.0\r\n\
             Via: SIP/2.0/UDP {client};branch=z9hG4bK-inv-{i}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:caller@example.com>;tag=c{i}\r\n\
             To: <sip:nobody{i}@example.com>\r\n\
             Call-ID: inv-{i}@unit\r\n\
             CSeq: 1 INVITE\r\n\
             Contact: <sip:caller@{client}>\r\n\
             Content-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    fn client(server: SocketAddr) -> UdpSocket {
        let any = if server.is_ipv6() {
            "[::1]:0"
        } else {
            "127.0.0.1:0"
        };
        let sock = UdpSocket::bind(any).expect("client socket");
        // Replies to a burst must not be lost in the client's own buffer.
        let s2 = socket2::SockRef::from(&sock);
        let _ = s2.set_recv_buffer_size(4 << 20);
        sock
    }

    /// Call-ID → status code of every response that arrives until `want`
    /// have or nothing came for `quiet`.
    fn collect(sock: &UdpSocket, want: usize, quiet: Duration) -> BTreeMap<String, u16> {
        sock.set_read_timeout(Some(quiet)).expect("timeout");
        let mut got = BTreeMap::new();
        let mut buf = vec![0u8; 65_536];
        while got.len() < want {
            let Ok(n) = sock.recv(&mut buf) else { break };
            let text = String::from_utf8_lossy(&buf[..n]);
            let status = text
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let call_id = text
                .lines()
                .find_map(|l| l.strip_prefix("Call-ID: "))
                .unwrap_or_default()
                .to_owned();
            got.insert(call_id, status);
        }
        got
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_is_answered_in_full_and_oversize_is_counted() {
        let server = start("127.0.0.1:0");
        let c = client(server.addr);
        let me = c.local_addr().expect("client addr");
        let n = 600;
        // Commit-waiting answers (REGISTER 200s, sent by the store's writer)
        // and immediate ones (INVITE 404s, sent in batches) interleaved,
        // with datagrams that get no answer among them.
        for i in 0..n {
            c.send_to(&register(i, me), server.addr).expect("send");
            if i % 3 == 0 {
                c.send_to(&invite(i, me), server.addr).expect("send");
            }
            if i % 100 == 0 {
                c.send_to(&vec![b'x'; MAX_MESSAGE + 1], server.addr)
                    .expect("send");
                c.send_to(b"", server.addr).expect("send");
                c.send_to(b"not sip at all", server.addr).expect("send");
            }
        }
        let invites = n.div_ceil(3);
        let got =
            tokio::task::spawn_blocking(move || collect(&c, n + invites, Duration::from_secs(5)))
                .await
                .expect("collector");
        let regs = got.iter().filter(|(k, _)| k.starts_with("reg-")).count();
        let invs = got.iter().filter(|(k, _)| k.starts_with("inv-")).count();
        assert_eq!(regs, n, "every REGISTER answered");
        assert_eq!(invs, invites, "every INVITE answered");
        for (call_id, status) in &got {
            let want = if call_id.starts_with("reg-") {
                200
            } else {
                404
            };
            assert_eq!(*status, want, "{call_id}");
        }
        assert_eq!(server.shared.counters.oversize.load(Ordering::Relaxed), 6);
        assert_eq!(server.location.stats().bindings, n as u64);
        server.shut_down().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ipv6_sources_are_answered() {
        let server = start("[::1]:0");
        let c = client(server.addr);
        let me = c.local_addr().expect("client addr");
        for i in 0..50 {
            c.send_to(&register(i, me), server.addr).expect("send");
            c.send_to(&invite(i, me), server.addr).expect("send");
        }
        let got = tokio::task::spawn_blocking(move || collect(&c, 100, Duration::from_secs(5)))
            .await
            .expect("collector");
        assert_eq!(got.len(), 100, "{got:?}");
        server.shut_down().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shutdown_stops_receiving_and_still_answers_what_was_committed() {
        let server = start("127.0.0.1:0");
        let c = client(server.addr);
        let me = c.local_addr().expect("client addr");
        let n = 2000;
        for i in 0..n {
            c.send_to(&register(i, me), server.addr).expect("send");
        }
        // Cancel once the threads have started working through the burst,
        // with commits (very likely) still in flight. (Cancelling before a
        // thread has received anything would test nothing; on a loaded
        // machine the threads can start late.)
        for _ in 0..500 {
            if server.location.stats().bindings > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let took = server.shut_down().await;
        assert!(took < Duration::from_secs(2), "drain took {took:?}");
        assert_eq!(
            Arc::strong_count(&server.shared),
            1,
            "the receive threads have stopped"
        );

        // Everything accepted was answered 200 by the time the drain ended:
        // the answers are in the client's buffer already (a loopback send
        // queues at the receiver before it returns), so a short quiet time
        // is enough to read them all.
        let answered = {
            let c = c.try_clone().expect("clone");
            tokio::task::spawn_blocking(move || collect(&c, n, Duration::from_millis(5)))
                .await
                .expect("collector")
        };
        let accepted = server.location.stats().bindings;
        assert!(accepted > 0, "nothing was received before the shutdown");
        eprintln!("{accepted} of {n} REGISTERs accepted before the shutdown");
        assert_eq!(answered.len() as u64, accepted, "one answer per binding");
        assert!(answered.values().all(|&s| s == 200), "{answered:?}");

        // And nothing is received any more.
        c.send_to(&register(n + 1, me), server.addr).expect("send");
        let late = tokio::task::spawn_blocking(move || collect(&c, 1, Duration::from_millis(400)))
            .await
            .expect("collector");
        assert!(late.is_empty(), "{late:?}");
        let loc = server.location.clone();
        tokio::task::spawn_blocking(move || loc.close())
            .await
            .expect("join")
            .expect("close");
    }

    #[test]
    fn one_receive_thread_per_two_cores() {
        assert_eq!(receive_threads(1), 1);
        assert_eq!(receive_threads(2), 1);
        assert_eq!(receive_threads(3), 1);
        assert_eq!(receive_threads(8), 4);
    }

    #[tokio::test]
    async fn drain_waits_for_promised_answers() {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let endpoint = Arc::new(Endpoint {
            sock,
            pending: AtomicUsize::new(1),
            stop: AtomicBool::new(false),
        });
        let cancel = CancellationToken::new();
        let task = tokio::spawn(drain(Vec::new(), endpoint.clone(), cancel.clone()));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!task.is_finished(), "the drain waits for the cancellation");
        cancel.cancel();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!task.is_finished(), "one answer is still promised");
        assert!(
            endpoint.stop.load(Ordering::Relaxed),
            "the threads are told to stop"
        );
        // What the commit callback does once it has sent.
        endpoint.pending.fetch_sub(1, Ordering::Release);
        tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .expect("the drain ends once nothing is promised")
            .expect("join");
    }
}
