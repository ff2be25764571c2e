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
//! Standby threads (`sip.udp_standby_threads`): a second thread always
//! receiving on the socket costs 10-20% more CPU per REGISTER below the
//! knee (each wakes for a few datagrams), yet one thread alone is the limit
//! past it. So a standby thread sleeps until a receive thread takes a full
//! batch, the sign of a backlog, and then drains with it for as long as its
//! own batches come full ([`ReceiveLoop::standby`]).
//!
//! Receive pause (`sip.udp_receive_pause`): below the knee a thread that
//! reads again at once wakes for nearly every datagram, and each wake-up
//! brings a context switch, a `recvmmsg` for one or two datagrams and a
//! group commit of one or two REGISTERs, so fsyncs come by the thousand
//! per second. Finding more than one datagram waiting says they arrive
//! faster than the thread turns around; it then sends this batch's
//! immediate answers and waits that long before reading again, so
//! that what arrives meanwhile is handled, and committed, together. A
//! lone client with one request in flight never leaves two waiting and
//! never pays the pause; a full batch (a backlog) is read on at once.
//! Measured (BENCHMARKS.md, "Receive pause"), it pays with digest auth
//! under open load from many clients, the registrar's usual load (less
//! CPU per REGISTER, a lower p99), makes no difference without auth, and
//! costs a higher p50 and throughput for clients that each keep few
//! requests in flight and wait for their answers.
//!
//! Overload: a re-registration storm can bring more requests than the
//! node can answer. Then the receive buffer fills, the kernel drops
//! datagrams, every client retransmits into the full buffer, and work is
//! wasted on requests answered too late or never completed (a 401 whose
//! authenticated retry is dropped): the node registers fewer phones per
//! second than it could (BENCHMARKS.md measures the collapse). So the
//! threads of a socket watch two signals the kernel gives with every
//! datagram (control messages): the socket's drop counter (`SO_RXQ_OVFL`),
//! and the time the datagram was queued (`SO_TIMESTAMPNS`), for buffers so
//! large that clients would time out before it overflows. From them they
//! keep one share of new requests to refuse ([`Overload`]), raised while the kernel
//! drops or the queue delay stays above `sip.overload_queue_delay` for
//! [`OVERLOAD_INTERVAL`], lowered while neither happens; refused requests
//! get a cheap 503 with Retry-After ([`regmesh_sip`] parsing only, see
//! [`regmesh_registrar::Load::Shedding`]), which also stops their
//! retransmissions. Only a REGISTER that would be challenged is refused
//! (the registrar decides, see `Registrar::handle_under`): with
//! credentials its 401 is already paid for, and without auth serving
//! costs this thread about what refusing would. Nothing is refused while
//! the kernel keeps up.
//!
//! Shutdown: the threads block in `recvmmsg` for at most [`RECV_POLL`]
//! (`SO_RCVTIMEO`), then look at a stop flag (set when serve's cancellation
//! token fires) and stop. Serve's drain then waits (within its grace) until
//! every answer promised to a pending commit has been sent, so REGISTERs
//! being committed when the signal came still get their reply.

use crate::metrics::SipCounters;
use crate::serve::SipShared;
use nix::sys::socket::{ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg};
use nix::sys::time::TimeSpec;
use parking_lot::Mutex;
use regmesh_location::{Commit, StoreError};
use regmesh_registrar::{Action, Deferred, Load, LocalSocket};
use regmesh_sip::{Source, Transport};
use rustix::net::{MMsgHdr, SendAncillaryBuffer, SendFlags, SocketAddrAny, sendmmsg, sendto};
use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{JoinHandle, Thread};
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

/// Default of `sip.udp_receive_pause` (see the module docs): the best of
/// 50, 100 and 200 µs in the A/B of BENCHMARKS.md, "Receive pause".
pub(crate) const RECEIVE_PAUSE: Duration = Duration::from_micros(200);

/// Longest `sip.udp_receive_pause` accepted: beyond it the pause itself
/// would be a visible share of a client's latency.
pub(crate) const MAX_RECEIVE_PAUSE: Duration = Duration::from_millis(1);

/// How long a receive thread blocks before it looks at the shutdown flag.
const RECV_POLL: Duration = Duration::from_millis(100);

/// How long the queue delay must stay above `sip.overload_queue_delay`
/// to count as overload: CoDel's interval (RFC 8289 §4.2), long enough that
/// a snapshot's or a scheduler's stall of a few tens of milliseconds
/// drains before it.
pub(crate) const OVERLOAD_INTERVAL: Duration = Duration::from_millis(200);

/// The share of new requests refused, in 1/[`SHARE_ONE`]: raised by
/// [`SHARE_STEP`] per overload signal (drops at most once per
/// [`RAISE_EVERY`], a standing queue once per interval: what was refused
/// shows in the queue only after the backlog ahead of it is read, so
/// faster raises overshoot), and lowered by a quarter (at least half a
/// step) per [`DECAY_EVERY`] without any signal. Chosen by A/B at 60,000 to
/// 80,000 digest-auth REGISTERs/s (BENCHMARKS.md): raising on drops every
/// 10 ms refused too much, every 200 ms too late.
const SHARE_ONE: u32 = 1024;
const SHARE_STEP: u32 = SHARE_ONE / 16;
const RAISE_EVERY: Duration = Duration::from_millis(50);
const DECAY_EVERY: Duration = Duration::from_millis(100);

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
    // The queue delay and the drop counter with each datagram, for
    // overload detection (see the module docs).
    use nix::sys::socket::{setsockopt, sockopt};
    if let Err(e) = setsockopt(&sock, sockopt::ReceiveTimestampns, &true) {
        warn!(error = %e, "no receive timestamps: UDP queue delay cannot be watched");
    }
    if let Err(e) = setsockopt(&sock, sockopt::RxqOvfl, &1) {
        warn!(error = %e, "no drop counter: UDP buffer overflows cannot be watched");
    }
    sock.set_read_timeout(Some(RECV_POLL))?;
    sock.bind(&addr.into())?;
    Ok(sock.into())
}

/// Start `sip.udp_threads` receive threads on `sock` (by default
/// [`default_receive_threads`]), and a task in the
/// shared tracker that, on shutdown, waits for the threads to stop and for
/// every answer promised to a pending commit to be sent.
pub(crate) fn spawn(
    sock: UdpSocket,
    local: LocalSocket,
    shared: Arc<SipShared>,
) -> std::io::Result<()> {
    let workers = shared.udp_threads.max(1);
    let standbys = shared.udp_standby_threads;
    let endpoint = Arc::new(Endpoint {
        sock: sock.try_clone()?,
        pending: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
        counters: shared.counters.clone(),
        overload: Mutex::new(Overload::new(shared.overload_queue_delay)),
    });
    let mut threads = Vec::with_capacity(workers + standbys);
    // The standbys first, the last one first: each is woken by the one
    // before it in the chain, the first by any receive thread.
    let mut next: Option<Thread> = None;
    for i in (0..standbys).rev() {
        let name = format!("sip-udp-stby{i}");
        let thread = spawn_loop(name, Role::Standby, &sock, local, &shared, &endpoint, next)?;
        next = Some(thread.thread().clone());
        threads.push(thread);
    }
    for i in 0..workers {
        let name = format!("sip-udp-{i}");
        let wake = next.clone();
        threads.push(spawn_loop(
            name,
            Role::Receive,
            &sock,
            local,
            &shared,
            &endpoint,
            wake,
        )?);
    }
    shared
        .tracker
        .spawn(drain(threads, endpoint, shared.cancel.clone()));
    Ok(())
}

/// What a thread reading a UDP socket does (see [`ReceiveLoop::run`] and
/// [`ReceiveLoop::standby`]).
#[derive(Debug, Clone, Copy)]
enum Role {
    Receive,
    Standby,
}

/// Start a thread named `name` reading a clone of `sock` as `role`;
/// `wake` is the standby it wakes when it falls behind. The loop is built
/// on the thread: its `recvmmsg` headers hold raw pointers and stay there.
fn spawn_loop(
    name: String,
    role: Role,
    sock: &UdpSocket,
    local: LocalSocket,
    shared: &Arc<SipShared>,
    endpoint: &Arc<Endpoint>,
    wake: Option<Thread>,
) -> std::io::Result<JoinHandle<()>> {
    let sock = sock.try_clone()?;
    let (shared, endpoint) = (shared.clone(), endpoint.clone());
    std::thread::Builder::new().name(name).spawn(move || {
        let l = ReceiveLoop::new(sock, local, shared, endpoint, wake);
        match role {
            Role::Receive => l.run(),
            Role::Standby => l.standby(),
        }
    })
}

/// How many threads receive on one socket with `cores` cores unless
/// `sip.udp_threads` says otherwise: one per two cores, at least one.
///
/// The receive threads share the cores with the store's writer thread (and
/// on a loopback bench with the clients). Two threads on one socket each
/// took about half of what arrived, so each woke, took ~2 datagrams per
/// `recvmmsg` and slept again, and a context switch per ~2 REGISTERs was
/// the largest item of the profile. On 2 cores one thread took 7-17% less
/// CPU per REGISTER, at a higher rate (`bench/quick.sh`, closed loop).
/// More cores were not measured; one per two keeps room for the writer.
/// Past about 140,000 REGISTERs/s without auth one thread is the limit
/// on 2 cores (BENCHMARKS.md): the standby thread takes over there, and
/// the count can be set.
pub(crate) fn default_receive_threads(cores: usize) -> usize {
    (cores / 2).max(1)
}

/// Shutdown for one UDP socket: returns once its receive threads have
/// stopped and every answer they promised has been sent. Serve bounds this
/// by its drain grace.
async fn drain(threads: Vec<JoinHandle<()>>, endpoint: Arc<Endpoint>, cancel: CancellationToken) {
    cancel.cancelled().await;
    endpoint.stop.store(true, Ordering::Relaxed);
    // A receive thread sees the flag within one RECV_POLL (plus one
    // batch); a standby thread once woken.
    for t in &threads {
        t.thread().unpark();
    }
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
    /// Where answer times are counted.
    counters: Arc<SipCounters>,
    /// The socket's overload controller, shared by its receive and
    /// standby threads: overload is the socket's queue, whoever reads it,
    /// and a standby that woke with a share of its own would refuse by
    /// what it saw when it last ran. Locked once per batch.
    overload: Mutex<Overload>,
}

impl Endpoint {
    /// Send `reply` to `peer` once `commit` is durable, or its 503 if it
    /// fails. Usually runs the send on the store's writer thread; at once
    /// here when the commit is already resolved.
    ///
    /// `arrived` is the request's kernel receive stamp, for the answer-time
    /// histogram.
    fn after_commit(
        self: &Arc<Self>,
        commit: Commit,
        reply: Deferred,
        peer: SocketAddr,
        arrived: Option<Duration>,
    ) {
        self.pending.fetch_add(1, Ordering::Relaxed);
        let this = self.clone();
        commit.on_durable(move |r: Result<(), StoreError>| {
            if let Some(at) = arrived {
                this.counters
                    .udp_answer_durable
                    .record(crate::realtime_now().saturating_sub(at));
            }
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
    /// The kernel receive stamps of the requests `replies` answers, for
    /// the answer-time histogram (one clock read per batch at the send).
    arrivals: Vec<Duration>,
    /// The standby thread this one wakes when it falls behind (a full
    /// batch), if any (see [`ReceiveLoop::standby`]).
    wake: Option<Thread>,
}

impl ReceiveLoop {
    fn new(
        sock: UdpSocket,
        local: LocalSocket,
        shared: Arc<SipShared>,
        endpoint: Arc<Endpoint>,
        wake: Option<Thread>,
    ) -> Self {
        let bufs = vec![0u8; BATCH * (shared.max_message_size + 1)];
        Self {
            sock,
            local,
            shared,
            endpoint,
            bufs,
            headers: control_headers(),
            replies: Vec::with_capacity(BATCH),
            arrivals: Vec::with_capacity(BATCH),
            wake,
        }
    }

    /// A receive thread: blocks for datagrams until shutdown.
    fn run(mut self) {
        while !self.endpoint.stop.load(Ordering::Relaxed) {
            self.step();
        }
    }

    /// One turn of a receive thread: a batch (waiting for its first
    /// datagram at most [`RECV_POLL`]), its immediate answers, then the
    /// receive pause if the batch calls for one. Returns the batch's size.
    fn step(&mut self) -> usize {
        let taken = self.receive_batch(MsgFlags::MSG_WAITFORONE);
        self.send_replies();
        if let Some(pause) = pause_after(taken, self.shared.udp_receive_pause) {
            self.shared
                .counters
                .udp_receive_pauses
                .fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(pause);
        }
        taken
    }

    /// A standby thread: sleeps until a receive thread (or the standby
    /// before it) finds a full batch, that is a backlog in the socket, then
    /// takes batches without blocking for as long as they come full, and
    /// sleeps again. Below the knee it never runs, so the node pays one
    /// thread's cost per REGISTER (a second thread always receiving cost
    /// 10-20% more, see [`default_receive_threads`]); past it, the backlog
    /// is drained by two.
    ///
    /// It waits in `park` with no timeout: the drain unparks it at
    /// shutdown, and a spurious wake-up costs one empty non-blocking read.
    fn standby(mut self) {
        while !self.endpoint.stop.load(Ordering::Relaxed) {
            std::thread::park();
            while !self.endpoint.stop.load(Ordering::Relaxed) {
                let taken = self.receive_batch(MsgFlags::MSG_DONTWAIT);
                self.shared
                    .counters
                    .udp_standby_datagrams
                    .fetch_add(taken as u64, Ordering::Relaxed);
                self.send_replies();
                if taken < BATCH {
                    break;
                }
            }
        }
    }

    /// Take what is queued (up to [`BATCH`]; with `MSG_WAITFORONE` waiting
    /// at most [`RECV_POLL`] for the first) and handle each; immediate
    /// answers go to `replies`. Returns how many datagrams were taken; a
    /// full batch wakes the standby thread, if any.
    fn receive_batch(&mut self, flags: MsgFlags) -> usize {
        let max = self.shared.max_message_size;
        // What each datagram of the batch is: its kernel signals, its
        // source, and its length in its buffer (`bufs` chunk of the same
        // index). Read first, so the socket's overload controller is
        // locked once per batch, not per datagram.
        let mut got: [Received; BATCH] = [Received::default(); BATCH];
        let mut taken = 0;
        let mut truncated = false;
        {
            let mut chunks = self.bufs.chunks_mut(max + 1);
            let mut iovs: [[IoSliceMut<'_>; 1]; BATCH] =
                std::array::from_fn(|_| [IoSliceMut::new(chunks.next().unwrap_or_default())]);
            let received = match recvmmsg(
                self.sock.as_raw_fd(),
                &mut self.headers,
                iovs.iter_mut(),
                // Block for the first datagram only (or not at all), then
                // take what is there.
                flags,
                None,
            ) {
                Ok(r) => r,
                // The receive timeout: time to look at the shutdown flag.
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => return 0,
                Err(e) => {
                    // ICMP errors from an earlier send can surface here; keep serving.
                    debug!(error = %e, "udp receive error");
                    return 0;
                }
            };
            for (msg, slot) in received.zip(got.iter_mut()) {
                taken += 1;
                let (mut queued, mut drops) = (None, None);
                if let Ok(cmsgs) = msg.cmsgs() {
                    for c in cmsgs {
                        match c {
                            ControlMessageOwned::ScmTimestampns(ts) => {
                                queued = Some(Duration::from(ts))
                            }
                            ControlMessageOwned::RxqOvfl(n) => drops = Some(n),
                            _ => {}
                        }
                    }
                } else if msg.flags.contains(MsgFlags::MSG_CTRUNC) {
                    // No room for the drop counter: it appears with the
                    // socket's first drop (see `control_headers`).
                    truncated = true;
                }
                *slot = Received {
                    queued,
                    drops,
                    truncated,
                    peer: msg.address.as_ref().and_then(std_addr),
                    bytes: msg.bytes,
                };
            }
        }
        if truncated {
            self.headers = control_headers();
        }
        if taken == BATCH
            && let Some(t) = &self.wake
        {
            t.unpark();
        }
        // The stamps are on the realtime clock; read it once per batch.
        let now = crate::realtime_now();
        let mut loads = [Load::Normal; BATCH];
        {
            let mut overload = self.endpoint.overload.lock();
            for (r, load) in got[..taken].iter().zip(loads.iter_mut()) {
                let signal = Signal {
                    delay: r.queued.map(|at| now.saturating_sub(at)),
                    drops: r.drops,
                    truncated: r.truncated,
                };
                *load = overload.observe(now, signal);
            }
        }
        for (i, (r, load)) in got[..taken].iter().zip(loads).enumerate() {
            let Received {
                queued,
                peer,
                bytes,
                ..
            } = *r;
            if let Some(at) = queued {
                self.shared
                    .counters
                    .udp_queue
                    .record(now.saturating_sub(at));
            }
            let Some(peer) = peer else {
                debug!("datagram without a usable source address dropped");
                continue;
            };
            if bytes > max {
                self.shared
                    .counters
                    .oversize
                    .fetch_add(1, Ordering::Relaxed);
                debug!(%peer, "oversized datagram dropped");
                continue;
            }
            let start = i * (max + 1);
            let data = &self.bufs[start..start + bytes];
            let source = Source {
                transport: Transport::Udp,
                addr: peer,
            };
            match self
                .shared
                .registrar
                .handle_under(data, source, self.local, load)
            {
                Action::Reply(reply) => {
                    self.replies.push((reply, SocketAddrAny::from(peer)));
                    self.arrivals.extend(queued);
                }
                Action::ReplyAfterCommit(reply, commit) => {
                    self.endpoint.after_commit(commit, reply, peer, queued);
                }
                Action::Drop => {}
            }
        }
        taken
    }

    /// Send this batch's immediate answers with as few `sendmmsg` calls as
    /// the kernel allows (one unless a send fails), then forget them. This
    /// thread may block here while the socket's send buffer is full: it is
    /// its own work, and waiting beats dropping answers.
    fn send_replies(&mut self) {
        if !self.arrivals.is_empty() {
            let now = crate::realtime_now();
            for at in self.arrivals.drain(..) {
                self.shared
                    .counters
                    .udp_answer_immediate
                    .record(now.saturating_sub(at));
            }
        }
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

/// How long to pause after a batch of `taken` datagrams (module docs,
/// "Receive pause"): only after several, and not after a full batch.
fn pause_after(taken: usize, pause: Duration) -> Option<Duration> {
    ((2..BATCH).contains(&taken) && !pause.is_zero()).then_some(pause)
}

/// `recvmmsg` headers with room for the control messages of each
/// datagram: its receive timestamp and, once the socket has dropped any,
/// its drop counter.
///
/// The kernel sets each header's control length to what it wrote, and nix
/// does not reset it between calls: after datagrams that carried only a
/// timestamp, the room has shrunk to that, and the socket's first drop
/// (after which every datagram carries the counter) arrives truncated
/// (`MSG_CTRUNC`). That truncation is itself the signal of the first drop;
/// the receive loop then makes new headers, whose room every later datagram
/// fills exactly.
fn control_headers() -> MultiHeaders<SockaddrStorage> {
    MultiHeaders::preallocate(BATCH, Some(nix::cmsg_space!(TimeSpec, u32)))
}

/// One datagram of a batch as `recvmmsg` gave it; its bytes are in the
/// receive buffer of the same index.
#[derive(Debug, Clone, Copy, Default)]
struct Received {
    /// The kernel's receive stamp (realtime clock).
    queued: Option<Duration>,
    /// The socket's drop counter, once it has dropped any.
    drops: Option<u32>,
    /// The control messages did not fit (see `control_headers`).
    truncated: bool,
    /// The source address, if usable.
    peer: Option<SocketAddr>,
    /// The datagram's length (over the limit: oversized).
    bytes: usize,
}

/// What the kernel said about one datagram, for [`Overload`].
#[derive(Debug, Clone, Copy, Default)]
struct Signal {
    /// How long it waited in the receive queue.
    delay: Option<Duration>,
    /// The socket's drop counter when it was queued (absent until the
    /// socket's first drop).
    drops: Option<u32>,
    /// The control messages did not fit: the drop counter just appeared.
    truncated: bool,
}

/// The overload controller of one receive thread (see the module docs):
/// the share of new requests to refuse, raised on each overload signal and
/// decayed without one, and spread evenly over the requests (every n-th,
/// not bursts).
///
/// Signals: the kernel dropped datagrams since the last one seen, or the
/// queue delay stayed above `target` for a whole [`OVERLOAD_INTERVAL`] (CoDel, RFC
/// 8289 §4.2). An additive raise and a multiplicative decay settle near the
/// share the node cannot serve; a fixed on/off rule would refuse all or
/// nothing, and with a small kernel buffer (the default `rmem_max` caps
/// ours at ~400 KB, a few milliseconds of a storm) would swing between
/// the two every few milliseconds.
///
/// One per socket, fed by all its threads, so it knows only what they
/// read: after a gap of an interval or more with nothing read (a quiet
/// socket) it owes the share the decays of the gap, and a delay must
/// stand a whole watched interval again.
#[derive(Debug)]
struct Overload {
    /// None: never refuse anything.
    target: Option<Duration>,
    /// When the delay went above target and has stayed there since.
    above_since: Option<Duration>,
    /// The last drop counter seen (0 before the first drop).
    drops: u32,
    /// The share refused, in 1/[`SHARE_ONE`].
    share: u32,
    /// Accumulates `share` per request; a request that carries it past
    /// [`SHARE_ONE`] is refused.
    credit: u32,
    last_raise: Duration,
    last_signal: Duration,
    last_decay: Duration,
    /// When the last datagram was observed.
    last_seen: Duration,
}

impl Overload {
    fn new(target: Option<Duration>) -> Self {
        Self {
            target,
            above_since: None,
            drops: 0,
            share: 0,
            credit: 0,
            last_raise: Duration::ZERO,
            last_signal: Duration::ZERO,
            last_decay: Duration::ZERO,
            last_seen: Duration::ZERO,
        }
    }

    /// A datagram read at `now` (realtime clock). A clock step back makes
    /// delays read as zero; a step forward makes the datagrams queued
    /// before it look late, but those stamped after it read normal again
    /// well within [`OVERLOAD_INTERVAL`], so a step alone never raises the share.
    fn observe(&mut self, now: Duration, s: Signal) -> Load {
        let Some(target) = self.target else {
            return Load::Normal;
        };
        // A thread that saw nothing for a whole interval (a standby
        // asleep, or a quiet socket) cannot tell that the queue stood
        // through the gap: the delay must stand a whole interval again.
        if now.saturating_sub(self.last_seen) >= OVERLOAD_INTERVAL {
            self.above_since = None;
        }
        self.last_seen = now;
        let now_dropping = s.truncated
            || s.drops.is_some_and(|d| {
                // The counter only grows (wrapping as a u32): any change
                // is new drops.
                let changed = d != self.drops;
                self.drops = d;
                changed
            });
        // A standing queue: above target for a whole interval, and still.
        let standing = match s.delay {
            Some(d) if d > target => {
                let since = *self.above_since.get_or_insert(now);
                now.saturating_sub(since) >= OVERLOAD_INTERVAL
            }
            Some(_) => {
                self.above_since = None;
                false
            }
            None => self
                .above_since
                .is_some_and(|since| now.saturating_sub(since) >= OVERLOAD_INTERVAL),
        };
        // Drops raise at most every RAISE_EVERY (one burst counts once); a
        // standing queue once per interval for as long as it stands.
        let raise = (now_dropping
            && (self.share == 0 || now.saturating_sub(self.last_raise) >= RAISE_EVERY))
            || (standing
                && (self.share == 0 || now.saturating_sub(self.last_raise) >= OVERLOAD_INTERVAL));
        if now_dropping || standing {
            self.last_signal = now;
        }
        if raise {
            self.share = (self.share + SHARE_STEP).min(SHARE_ONE);
            self.last_raise = now;
            self.last_decay = now;
        } else if self.share > 0 && now.saturating_sub(self.last_signal) >= DECAY_EVERY {
            // One decay per DECAY_EVERY without a signal, all of them
            // owed since the last raise, decay or signal: a thread that
            // saw nothing for a while (a standby woken long after a storm)
            // must not refuse at the storm's share. Each takes a quarter,
            // but at least half a step, so the tail ends (in at most
            // about 30 steps from a full share).
            let since = self.last_decay.max(self.last_signal);
            let owed = now.saturating_sub(since).as_nanos() / DECAY_EVERY.as_nanos();
            for _ in 0..owed {
                if self.share == 0 {
                    break;
                }
                self.share = self
                    .share
                    .saturating_sub((self.share / 4).max(SHARE_STEP / 2));
            }
            if owed > 0 {
                self.last_decay = now;
            }
        }
        if self.share == 0 {
            return Load::Normal;
        }
        self.credit += self.share;
        if self.credit >= SHARE_ONE {
            self.credit -= SHARE_ONE;
            Load::Shedding
        } else {
            Load::Normal
        }
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

    /// A node's UDP socket and what its loops share, no thread started:
    /// for driving the loops by hand.
    struct Parts {
        shared: Arc<SipShared>,
        location: Arc<Location>,
        sock: UdpSocket,
        local: LocalSocket,
        addr: SocketAddr,
        dir: tempfile::TempDir,
    }

    fn parts(bind_to: &str) -> Parts {
        parts_with_pause(bind_to, RECEIVE_PAUSE)
    }

    fn parts_with_pause(bind_to: &str, udp_receive_pause: Duration) -> Parts {
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
            overload_queue_delay: None,
            udp_threads: 1,
            udp_standby_threads: 1,
            udp_receive_pause,
            cancel: CancellationToken::new(),
            tracker: TaskTracker::new(),
        });
        let sock = bind(bind_to.parse().expect("address")).expect("binding");
        let addr = sock.local_addr().expect("local addr");
        let local = LocalSocket {
            transport: Transport::Udp,
            addr,
        };
        Parts {
            shared,
            location,
            sock,
            local,
            addr,
            dir,
        }
    }

    /// Must run inside a tokio runtime (the drain task goes to the tracker).
    fn start(bind_to: &str) -> Server {
        let p = parts(bind_to);
        spawn(p.sock, p.local, p.shared.clone()).expect("starting the receive threads");
        Server {
            shared: p.shared,
            location: p.location,
            addr: p.addr,
            _dir: p.dir,
        }
    }

    impl Parts {
        fn endpoint(&self) -> Arc<Endpoint> {
            Arc::new(Endpoint {
                sock: self.sock.try_clone().expect("clone"),
                pending: AtomicUsize::new(0),
                stop: AtomicBool::new(false),
                counters: self.shared.counters.clone(),
                overload: Mutex::new(Overload::new(self.shared.overload_queue_delay)),
            })
        }

        fn spawn_standby(&self, endpoint: &Arc<Endpoint>) -> JoinHandle<()> {
            let name = "test-standby".to_owned();
            spawn_loop(
                name,
                Role::Standby,
                &self.sock,
                self.local,
                &self.shared,
                endpoint,
                None,
            )
            .expect("spawn")
        }

        fn receive_loop(&self, endpoint: &Arc<Endpoint>, wake: Option<Thread>) -> ReceiveLoop {
            let sock = self.sock.try_clone().expect("clone");
            ReceiveLoop::new(
                sock,
                self.local,
                self.shared.clone(),
                endpoint.clone(),
                wake,
            )
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
        // Every answer, immediate or after its commit, has its time counted
        // once (the datagrams left unanswered have none).
        let counted = |t: &crate::metrics::AnswerTimes| t.snapshot().0.iter().sum::<u64>();
        let c = &server.shared.counters;
        assert_eq!(counted(&c.udp_answer_durable), n as u64, "the REGISTERs");
        assert_eq!(counted(&c.udp_answer_immediate), invites as u64, "the 404s");
        // Every datagram taken has its wait in the socket buffer counted,
        // answered or not (three unanswerable ones per hundred REGISTERs).
        assert_eq!(
            counted(&c.udp_queue),
            (n + invites + 3 * n.div_ceil(100)) as u64,
            "every datagram"
        );
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

    /// Queue `n` REGISTERs at a socket with a sleeping standby thread, let
    /// a receive loop (wired to wake it) take one batch and nothing more,
    /// and return every answer that came (quiet time generous for a loaded
    /// machine) with the count of datagrams the standby took.
    async fn one_batch_beside_a_standby(n: usize) -> (BTreeMap<String, u16>, u64) {
        let p = parts("127.0.0.1:0");
        let c = client(p.addr);
        let me = c.local_addr().expect("client addr");
        for i in 0..n {
            c.send_to(&register(i, me), p.addr).expect("send");
        }
        let endpoint = p.endpoint();
        let standby = p.spawn_standby(&endpoint);
        let mut receiver = p.receive_loop(&endpoint, Some(standby.thread().clone()));
        assert_eq!(
            receiver.receive_batch(MsgFlags::MSG_WAITFORONE),
            n.min(BATCH)
        );
        receiver.send_replies();
        let got = tokio::task::spawn_blocking(move || collect(&c, n, Duration::from_secs(5)))
            .await
            .expect("collector");
        endpoint.stop.store(true, Ordering::Relaxed);
        standby.thread().unpark();
        standby.join().expect("the standby stops once woken");
        let counters = &p.shared.counters;
        (got, counters.udp_standby_datagrams.load(Ordering::Relaxed))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_batch_wakes_the_standby_which_drains_the_backlog() {
        // The receive loop takes one batch only: the rest of the backlog is
        // answered only if the full batch woke the standby and it went on
        // while its batches came full.
        let n = 3 * BATCH + 4;
        let (got, standby) = one_batch_beside_a_standby(n).await;
        assert_eq!(got.len(), n, "every REGISTER answered");
        assert!(got.values().all(|s| *s == 200), "{got:?}");
        assert_eq!(
            standby,
            (n - BATCH) as u64,
            "the standby took all but the receive thread's batch"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn below_a_full_batch_the_standby_sleeps() {
        let n = BATCH - 1;
        let (got, standby) = one_batch_beside_a_standby(n).await;
        assert_eq!(got.len(), n, "every REGISTER answered");
        assert_eq!(standby, 0);
    }

    #[test]
    fn a_pause_follows_a_batch_of_several_that_is_not_full() {
        let p = Duration::from_micros(200);
        assert_eq!(pause_after(0, p), None, "the receive timeout");
        assert_eq!(pause_after(1, p), None, "one at a time: no hurry to gather");
        assert_eq!(pause_after(2, p), Some(p));
        assert_eq!(pause_after(BATCH - 1, p), Some(p));
        assert_eq!(pause_after(BATCH, p), None, "a backlog: read on at once");
        assert_eq!(pause_after(5, Duration::ZERO), None, "turned off");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_receive_thread_pauses_after_several_datagrams_and_answers_them_all() {
        // Turned off: five waiting, no pause.
        let (taken, pauses, got) = steps_with_pause(Duration::ZERO, &[5]).await;
        assert_eq!(taken, [5]);
        assert_eq!(pauses, 0);
        assert_eq!(got.len(), 5, "every REGISTER answered");
        assert!(got.values().all(|s| *s == 200), "{got:?}");
        // The default: five waiting, one pause after their batch; then one
        // waiting, no pause.
        let (taken, pauses, got) = steps_with_pause(RECEIVE_PAUSE, &[5, 1]).await;
        assert_eq!(taken, [5, 1]);
        assert_eq!(pauses, 1);
        assert_eq!(got.len(), 6, "every REGISTER answered");
        assert!(got.values().all(|s| *s == 200), "{got:?}");
    }

    /// With `sip.udp_receive_pause` set to `pause`, queue each of `batches`
    /// REGISTERs in turn and let a receive loop take one step for it;
    /// returns each step's batch size, the pauses counted and every answer.
    async fn steps_with_pause(
        pause: Duration,
        batches: &[usize],
    ) -> (Vec<usize>, u64, BTreeMap<String, u16>) {
        let p = parts_with_pause("127.0.0.1:0", pause);
        let c = client(p.addr);
        let me = c.local_addr().expect("client addr");
        let endpoint = p.endpoint();
        let mut receiver = p.receive_loop(&endpoint, None);
        let mut sent = 0;
        let mut taken = Vec::new();
        for &n in batches {
            for i in sent..sent + n {
                c.send_to(&register(i, me), p.addr).expect("send");
            }
            sent += n;
            taken.push(receiver.step());
        }
        let got = tokio::task::spawn_blocking(move || collect(&c, sent, Duration::from_secs(5)))
            .await
            .expect("collector");
        let pauses = p.shared.counters.udp_receive_pauses.load(Ordering::Relaxed);
        (taken, pauses, got)
    }

    #[test]
    fn one_receive_thread_per_two_cores() {
        assert_eq!(default_receive_threads(1), 1);
        assert_eq!(default_receive_threads(2), 1);
        assert_eq!(default_receive_threads(3), 1);
        assert_eq!(default_receive_threads(8), 4);
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn delayed(d: Duration) -> Signal {
        Signal {
            delay: Some(d),
            ..Signal::default()
        }
    }

    /// Requests refused out of `n` observed at `now` with signal `s`.
    fn refused(o: &mut Overload, now: Duration, s: Signal, n: usize) -> usize {
        (0..n)
            .filter(|_| o.observe(now, s) == Load::Shedding)
            .count()
    }

    #[test]
    fn a_stall_shorter_than_the_interval_refuses_nothing() {
        let mut o = Overload::new(Some(ms(100)));
        assert_eq!(refused(&mut o, ms(1_000), delayed(ms(150)), 50), 0);
        assert_eq!(refused(&mut o, ms(1_150), delayed(ms(180)), 50), 0);
        // It drained: one datagram within target resets the clock.
        assert_eq!(refused(&mut o, ms(1_210), delayed(ms(90)), 1), 0);
        assert_eq!(refused(&mut o, ms(1_220), delayed(ms(150)), 50), 0);
        assert_eq!(refused(&mut o, ms(1_400), delayed(ms(150)), 50), 0);
        // Above target for a whole interval: a first share is refused,
        // spread evenly (one in 16 at the first step).
        assert_eq!(refused(&mut o, ms(1_420), delayed(ms(150)), 160), 10);
    }

    #[test]
    fn drops_raise_the_share_and_quiet_lowers_it_to_nothing() {
        let mut o = Overload::new(Some(ms(250)));
        let quiet = delayed(ms(1));
        let dropping = |n| Signal {
            delay: Some(ms(2)),
            drops: Some(n),
            truncated: false,
        };
        assert_eq!(refused(&mut o, ms(0), quiet, 100), 0);
        // The socket's first drop arrives as a truncated control message.
        let first = Signal {
            truncated: true,
            ..quiet
        };
        assert_eq!(o.observe(ms(10), first), Load::Normal);
        assert_eq!(o.share, SHARE_STEP);
        // Then the counter, rising for 8 raises 50 ms apart; a burst of
        // drops within 50 ms counts once.
        for i in 0..8 {
            let t = ms(60 + 50 * i);
            o.observe(t, dropping(100 + i as u32 * 10));
            o.observe(t, dropping(105 + i as u32 * 10));
        }
        assert_eq!(o.share, 9 * SHARE_STEP);
        // The counter standing still is not a signal.
        o.observe(ms(425), dropping(175));
        assert_eq!(o.share, 9 * SHARE_STEP);
        let share = o.share as usize;
        assert_eq!(refused(&mut o, ms(425), dropping(175), 1024), share);
        // No signal for 100 ms: a quarter off per 100 ms, down to zero.
        let mut t = 520;
        while o.share > 0 {
            let before = o.share;
            o.observe(ms(t), dropping(175));
            assert!(o.share < before, "decays at {t} ms");
            t += 100;
        }
        assert!(t <= 1_520, "back to normal within {t} ms");
        assert_eq!(refused(&mut o, ms(t), dropping(175), 1000), 0);
    }

    #[test]
    fn a_standing_queue_raises_the_share_every_interval_without_decay() {
        let mut o = Overload::new(Some(ms(100)));
        let late = delayed(ms(150));
        let mut t = 0;
        // Datagrams every 10 ms, all late, for 2 s: raised at 200 ms,
        // then once per 200 ms, never lowered in between.
        while t <= 2_000 {
            o.observe(ms(t), late);
            t += 10;
        }
        assert_eq!(o.share, 10 * SHARE_STEP);
        // Read within target once: no longer standing; it decays.
        o.observe(ms(2_010), delayed(ms(5)));
        o.observe(ms(2_300), delayed(ms(5)));
        assert!(o.share < 10 * SHARE_STEP);
    }

    #[test]
    fn a_long_quiet_spell_decays_the_whole_share_at_the_next_datagram() {
        let mut o = Overload::new(Some(ms(100)));
        let dropping = |n| Signal {
            delay: Some(ms(2)),
            drops: Some(n),
            truncated: false,
        };
        for i in 0..8 {
            o.observe(ms(50 * i), dropping(10 + i as u32));
        }
        assert_eq!(o.share, 8 * SHARE_STEP);
        // Nothing seen for 10 s (a standby asleep since the storm): the
        // next datagram finds the share decayed as if watched throughout.
        assert_eq!(refused(&mut o, ms(10_350), dropping(17), 1000), 0);
        assert_eq!(o.share, 0);
    }

    #[test]
    fn a_delay_not_watched_through_a_gap_must_stand_again() {
        let mut o = Overload::new(Some(ms(100)));
        let late = delayed(ms(150));
        assert_eq!(refused(&mut o, ms(1_000), late, 10), 0);
        // Late again 5 s later, nothing seen between: not a standing
        // queue yet (the old clock would have raised at once).
        assert_eq!(refused(&mut o, ms(6_000), late, 100), 0);
        assert_eq!(o.share, 0);
        // Watched late for a whole interval from there: it is.
        let mut t = 6_000;
        while t < 6_200 {
            t += 10;
            o.observe(ms(t), late);
        }
        assert_eq!(o.share, SHARE_STEP);
    }

    #[test]
    fn a_counter_that_wraps_still_counts_as_drops() {
        let mut o = Overload::new(Some(ms(250)));
        let at = |n| Signal {
            delay: Some(ms(1)),
            drops: Some(n),
            truncated: false,
        };
        o.observe(ms(0), at(u32::MAX - 1));
        assert_eq!(o.share, SHARE_STEP);
        o.observe(ms(60), at(3));
        assert_eq!(o.share, 2 * SHARE_STEP);
    }

    #[test]
    fn overload_off_never_sheds() {
        let mut o = Overload::new(None);
        for t in 0..100 {
            let s = Signal {
                delay: Some(ms(10_000)),
                drops: Some(t as u32),
                truncated: true,
            };
            assert_eq!(o.observe(ms(t * 100), s), Load::Normal);
        }
    }

    #[tokio::test]
    async fn drain_waits_for_promised_answers() {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let endpoint = Arc::new(Endpoint {
            sock,
            pending: AtomicUsize::new(1),
            stop: AtomicBool::new(false),
            counters: Arc::new(SipCounters::default()),
            overload: Mutex::new(Overload::new(None)),
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
