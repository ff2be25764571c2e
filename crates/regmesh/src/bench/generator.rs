//! The REGISTER generator itself.

use super::hist::Histogram;
use super::io::{Inbox, Outbox, stamp_arrivals};
use super::{cpu_seconds, now};
use anyhow::{Context as _, bail};
use md5::{Digest as _, Md5};
use parking_lot::Mutex;
use serde_json::json;
use std::collections::VecDeque;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Slots per socket: the most requests one socket can have in flight.
const RING: usize = 1 << 16;
/// RFC 3261 T1.
const T1_MS: u64 = 500;
/// RFC 3261 T2: retransmission intervals stop doubling here.
const T2_MS: u64 = 4000;
/// Receive and send buffer asked for on each UDP socket: at 150,000
/// answers/s this holds tens of milliseconds of answers, so a generator
/// thread that is briefly descheduled (it runs at `nice 19` beside the
/// server) does not drop them, without raising the system default.
const UDP_BUFFER: usize = 8 << 20;
/// How long a closed-loop sender waits for answers before it looks at
/// retransmissions again (it is woken earlier by its receiver).
const CLOSED_LOOP_PARK: Duration = Duration::from_millis(1);

#[derive(clap::Args, Clone)]
pub(crate) struct BenchArgs {
    /// Registrar to load (must be a loopback address).
    #[arg(long, default_value = "127.0.0.1:5060")]
    target: SocketAddr,
    /// `udp` or `tcp`.
    #[arg(long, default_value = "udp")]
    transport: String,
    /// Distinct AoRs (`<user-prefix><n>@<domain>`).
    #[arg(long, default_value_t = 10_000)]
    aors: u64,
    /// Contacts per AoR.
    #[arg(long, default_value_t = 1)]
    contacts: u64,
    /// SIP domain of the AoRs (also the Request-URI).
    #[arg(long, default_value = "example.com")]
    domain: String,
    /// User part prefix.
    #[arg(long, default_value = "user")]
    user_prefix: String,
    /// Weights `register:refresh:unregister` for requests after each binding's first (which is always a registration).
    #[arg(long, default_value = "0:1:0")]
    mix: String,
    /// Target requests per second over all sockets (0 = as fast as `--window` allows).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Outstanding requests per socket when `--rate 0`.
    #[arg(long, default_value_t = 200)]
    window: u64,
    /// Requests to send (default: one per binding).
    #[arg(long)]
    count: Option<u64>,
    /// Stop sending after this long, e.g. `10s` (whichever of count/duration comes first).
    #[arg(long)]
    duration: Option<String>,
    /// Sockets (each with a sender and a receiver thread).
    #[arg(long, default_value_t = 2)]
    sockets: usize,
    /// Pacing period with `--rate`: every tick each socket sends, in one
    /// batch, the requests that fell due since the last, then sleeps, e.g.
    /// `1ms` or `500us`.
    #[arg(long, default_value = "1ms")]
    tick: String,
    /// Password of every user: answer 401 challenges with MD5 digest.
    #[arg(long)]
    password: Option<String>,
    /// Expires of registrations and refreshes.
    #[arg(long, default_value_t = 3600)]
    expires: u32,
    /// Port written in every Contact instead of the socket's own. Each run
    /// has new sockets, so by default a second run over the same AoRs adds
    /// new bindings; with a fixed port it refreshes the bindings of the
    /// earlier runs, which is what a re-registration storm over known
    /// phones is (bench/compare.sh uses 5060).
    #[arg(long)]
    contact_port: Option<u16>,
    /// A request unanswered this long is a timeout, e.g. `8s`.
    #[arg(long, default_value = "8s")]
    timeout: String,
    /// Write the JSON report here (`-` for stdout).
    #[arg(long)]
    json: Option<PathBuf>,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Register,
    Refresh,
    Unregister,
}

impl Kind {
    fn code(self) -> u8 {
        match self {
            Self::Register => b'g',
            Self::Refresh => b'r',
            Self::Unregister => b'u',
        }
    }
    fn from_code(c: u8) -> Option<Self> {
        match c {
            b'g' => Some(Self::Register),
            b'r' => Some(Self::Refresh),
            b'u' => Some(Self::Unregister),
            _ => None,
        }
    }
}

/// Read-only settings shared by all threads.
struct Plan {
    target: SocketAddr,
    tcp: bool,
    contacts: u64,
    bindings: u64,
    domain: String,
    user_prefix: String,
    weights: [u64; 3],
    password: Option<String>,
    expires: u32,
    contact_port: Option<u16>,
    timeout: Duration,
    run_id: u32,
    start: Instant,
}

/// One socket's sending side, shared with its receiver (which answers
/// 401s). The UDP socket is connected to the target (see `io`).
enum Tx {
    Udp(UdpSocket),
    Tcp(Mutex<TcpStream>),
}

impl Tx {
    /// Send one message (the receiver's digest answers: rare, unbatched).
    fn send(&self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Self::Udp(s) => s.send(bytes).map(|_| ()),
            Self::Tcp(s) => s.lock().write_all(bytes),
        }
    }
    /// Send everything in `outbox`: one `sendmmsg` per batch over UDP, one
    /// locked run of writes (one per request) over TCP.
    fn flush(&self, outbox: &mut Outbox) -> std::io::Result<()> {
        match self {
            Self::Udp(s) => outbox.flush_udp(s),
            Self::Tcp(s) => {
                if outbox.is_empty() {
                    return Ok(());
                }
                let mut stream = s.lock();
                let mut writes = 0;
                for b in outbox.pending() {
                    stream.write_all(b)?;
                    writes += 1;
                }
                outbox.calls += writes;
                outbox.clear();
                Ok(())
            }
        }
    }
    fn local_port(&self) -> u16 {
        match self {
            Self::Udp(s) => s.local_addr().map_or(0, |a| a.port()),
            Self::Tcp(s) => s.lock().local_addr().map_or(0, |a| a.port()),
        }
    }
}

/// One socket's receiving side.
enum Rx {
    Udp(UdpSocket),
    Tcp(TcpStream),
}

/// Per-socket counters and the slot ring.
struct Lane {
    /// µs since start when the slot's request was first sent, +1; 0 = free.
    sent_at: Vec<AtomicU64>,
    /// µs the generator itself held the slot's request: from stamping it
    /// to the system call that sent it (see [`Unsent`]), and, with auth,
    /// from the 401's arrival to sending the answer with credentials (its
    /// own work and its waits for a CPU). Not the server's latency, so not
    /// counted in it.
    own_us: Vec<AtomicU64>,
    sent: AtomicU64,
    completed: AtomicU64,
    retransmissions: AtomicU64,
    timeouts: AtomicU64,
    status: Vec<AtomicU64>,
    last_done_us: AtomicU64,
    /// Closed loop: the sender is parked waiting for answers, and the
    /// receiver should unpark it (`sender`) after its next batch.
    waiting: AtomicBool,
    sender: OnceLock<std::thread::Thread>,
    /// System calls that sent requests (a batch each over UDP, one request
    /// each over TCP).
    send_calls: AtomicU64,
    /// System calls that returned answers, and the datagrams they held.
    recv_calls: AtomicU64,
    received: AtomicU64,
    /// Answers (401s included) timed from the kernel's receive timestamp.
    kernel_stamped: AtomicU64,
    /// Per second of the run (by answer time, up to [`TIMELINE_SECS`]):
    /// the slowest answer, µs, and the answers slower than [`SLOW_US`].
    /// A p99 says how many answers were late, not when: these show
    /// whether they came in one stall or spread over the run.
    max_by_second: Vec<AtomicU64>,
    slow_by_second: Vec<AtomicU64>,
}

/// Seconds of the run the per-second latency timeline covers.
const TIMELINE_SECS: usize = 3600;
/// An answer slower than this (µs) counts as slow in the timeline.
const SLOW_US: u64 = 10_000;

impl Lane {
    fn new() -> Self {
        Self {
            sent_at: (0..RING).map(|_| AtomicU64::new(0)).collect(),
            own_us: (0..RING).map(|_| AtomicU64::new(0)).collect(),
            sent: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            retransmissions: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            status: (0..700).map(|_| AtomicU64::new(0)).collect(),
            last_done_us: AtomicU64::new(0),
            waiting: AtomicBool::new(false),
            sender: OnceLock::new(),
            send_calls: AtomicU64::new(0),
            recv_calls: AtomicU64::new(0),
            received: AtomicU64::new(0),
            kernel_stamped: AtomicU64::new(0),
            max_by_second: (0..TIMELINE_SECS).map(|_| AtomicU64::new(0)).collect(),
            slow_by_second: (0..TIMELINE_SECS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
    fn outstanding(&self) -> u64 {
        self.sent.load(Ordering::Relaxed) - self.completed.load(Ordering::Relaxed)
    }
    /// Called by the receiver after each batch of answers: wake a sender
    /// that waits for the window to open. The fence pairs with the one in
    /// `wait_for_answers`: either the sender sees the new completions, or
    /// this sees its `waiting` flag (park's token makes an early unpark safe).
    fn wake_sender(&self) {
        fence(Ordering::SeqCst);
        if self.waiting.load(Ordering::Relaxed)
            && self.waiting.swap(false, Ordering::Relaxed)
            && let Some(t) = self.sender.get()
        {
            t.unpark();
        }
    }
}

/// `1ms`, `500us`, ...: the pacing tick.
fn parse_tick(s: &str) -> Option<Duration> {
    crate::config::parse_duration(s)
        .filter(|d| (Duration::from_micros(50)..=Duration::from_secs(1)).contains(d))
}

fn parse_weights(mix: &str) -> anyhow::Result<[u64; 3]> {
    let parts: Vec<&str> = mix.split(':').collect();
    if parts.len() != 3 {
        bail!("--mix must be register:refresh:unregister weights, e.g. 0:1:0");
    }
    let mut w = [0u64; 3];
    for (i, p) in parts.iter().enumerate() {
        w[i] = p
            .parse()
            .with_context(|| format!("--mix: `{p}` is not a number"))?;
    }
    if w.iter().sum::<u64>() == 0 {
        bail!("--mix: at least one weight must be non-zero");
    }
    Ok(w)
}

pub(crate) fn run(args: BenchArgs) -> anyhow::Result<()> {
    if !args.target.ip().is_loopback() {
        bail!(
            "--target {} is not a loopback address; regmesh bench only loads this machine",
            args.target
        );
    }
    let tcp = match args.transport.as_str() {
        "udp" => false,
        "tcp" => true,
        t => bail!("--transport `{t}`: use udp or tcp"),
    };
    if args.aors == 0 || args.contacts == 0 || args.sockets == 0 {
        bail!("--aors, --contacts and --sockets must be at least 1");
    }
    let timeout = crate::config::parse_duration(&args.timeout)
        .with_context(|| format!("--timeout `{}`: a duration such as 8s", args.timeout))?;
    let duration = match &args.duration {
        Some(d) => Some(
            crate::config::parse_duration(d)
                .with_context(|| format!("--duration `{d}`: a duration such as 10s"))?,
        ),
        None => None,
    };
    let tick = parse_tick(&args.tick)
        .with_context(|| format!("--tick `{}`: 50us to 1s, e.g. 1ms", args.tick))?;
    let bindings = args.aors * args.contacts;
    let count = args.count.unwrap_or(if duration.is_some() {
        u64::MAX
    } else {
        bindings
    });
    let plan = Arc::new(Plan {
        target: args.target,
        tcp,
        contacts: args.contacts,
        bindings,
        domain: args.domain.clone(),
        user_prefix: args.user_prefix.clone(),
        weights: parse_weights(&args.mix)?,
        password: args.password.clone(),
        expires: args.expires,
        contact_port: args.contact_port,
        timeout,
        run_id: rand::random::<u32>(),
        start: now(),
    });
    let cpu0 = cpu_seconds();
    let stop_rx = Arc::new(AtomicBool::new(false));
    let sockets = args.sockets;
    let mut lanes = Vec::new();
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    let mut udp_rcvbuf = None;
    for s in 0..sockets {
        let (tx, rx) = if tcp {
            let stream = TcpStream::connect(args.target)
                .with_context(|| format!("connecting to {}", args.target))?;
            stream.set_nodelay(true)?;
            stream.set_read_timeout(Some(Duration::from_millis(100)))?;
            let reader = stream.try_clone()?;
            (Arc::new(Tx::Tcp(Mutex::new(stream))), Rx::Tcp(reader))
        } else {
            let bind: SocketAddr = if args.target.is_ipv6() {
                "[::1]:0"
            } else {
                "127.0.0.1:0"
            }
            .parse()
            .context("loopback address")?;
            let sock = UdpSocket::bind(bind)?;
            sock.connect(args.target)
                .with_context(|| format!("connecting to {}", args.target))?;
            // Best effort: capped by net.core.{r,w}mem_max; the report says
            // what the kernel granted.
            let sref = socket2::SockRef::from(&sock);
            let _ = sref.set_recv_buffer_size(UDP_BUFFER);
            let _ = sref.set_send_buffer_size(UDP_BUFFER);
            udp_rcvbuf = sref.recv_buffer_size().ok();
            sock.set_read_timeout(Some(Duration::from_millis(100)))?;
            if let Err(e) = stamp_arrivals(&sock) {
                // Latency then counts from when the receiver reads an
                // answer; the report says how many answers had a stamp.
                eprintln!("bench: no kernel receive timestamps ({e})");
            }
            let reader = sock.try_clone()?;
            (Arc::new(Tx::Udp(sock)), Rx::Udp(reader))
        };
        let lane = Arc::new(Lane::new());
        lanes.push(lane.clone());
        let share = count / sockets as u64 + u64::from((s as u64) < count % sockets as u64);
        let rate = if args.rate == 0 {
            0.0
        } else {
            args.rate as f64 / sockets as f64
        };
        {
            let (plan, lane, tx) = (plan.clone(), lane.clone(), tx.clone());
            let window = args.window.max(1).min(RING as u64 - 1);
            senders.push(std::thread::spawn(move || {
                sender(
                    &plan, &lane, &tx, s, sockets, share, rate, window, duration, tick,
                )
            }));
        }
        {
            let (plan, lane, tx, stop) = (plan.clone(), lane.clone(), tx.clone(), stop_rx.clone());
            receivers.push(std::thread::spawn(move || {
                receiver(&plan, &lane, &tx, rx, &stop)
            }));
        }
    }

    // Progress until every sender is done.
    let mut last = (0u64, 0u64);
    while senders.iter().any(|h| !h.is_finished()) {
        std::thread::sleep(Duration::from_millis(200));
        let t = plan.start.elapsed().as_secs();
        if t > last.0 && !args.quiet {
            let done: u64 = lanes
                .iter()
                .map(|l| l.completed.load(Ordering::Relaxed))
                .sum();
            let sent: u64 = lanes.iter().map(|l| l.sent.load(Ordering::Relaxed)).sum();
            let retx: u64 = lanes
                .iter()
                .map(|l| l.retransmissions.load(Ordering::Relaxed))
                .sum();
            let tmo: u64 = lanes
                .iter()
                .map(|l| l.timeouts.load(Ordering::Relaxed))
                .sum();
            // The second just finished (answers of the current one are
            // still coming in).
            let second = (t as usize).saturating_sub(1).min(TIMELINE_SECS - 1);
            let max_ms = lanes
                .iter()
                .map(|l| l.max_by_second[second].load(Ordering::Relaxed))
                .max()
                .unwrap_or(0) as f64
                / 1000.0;
            eprint!(
                "\rbench: {t:>4}s sent {sent:>9} answered {done:>9} ({:>7}/s) retx {retx} timeouts {tmo} slowest {max_ms:.1}ms   ",
                done - last.1
            );
            last = (t, done);
        }
    }
    if !args.quiet {
        eprintln!();
    }
    let mut aborted = None;
    for h in senders {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => aborted = Some(e),
            Err(_) => aborted = Some(anyhow::anyhow!("a sender thread panicked")),
        }
    }
    stop_rx.store(true, Ordering::Relaxed);
    let mut hist = Histogram::new();
    let mut client = Histogram::new();
    for h in receivers {
        match h.join() {
            Ok(l) => {
                hist.merge(&l.server);
                client.merge(&l.client);
            }
            Err(_) => bail!("a receiver thread panicked"),
        }
    }
    if let Some(e) = aborted {
        return Err(e);
    }
    let cpu1 = cpu_seconds();
    let sum = |f: &dyn Fn(&Lane) -> u64| lanes.iter().map(|l| f(l)).sum::<u64>();
    let sent = sum(&|l| l.sent.load(Ordering::Relaxed));
    let completed = sum(&|l| l.completed.load(Ordering::Relaxed));
    let retx = sum(&|l| l.retransmissions.load(Ordering::Relaxed));
    let timeouts = sum(&|l| l.timeouts.load(Ordering::Relaxed));
    let last_us = lanes
        .iter()
        .map(|l| l.last_done_us.load(Ordering::Relaxed))
        .max()
        .unwrap_or(0);
    let mut by_status = serde_json::Map::new();
    for code in 100..700 {
        let n = sum(&|l| l.status[code].load(Ordering::Relaxed));
        if n > 0 {
            by_status.insert(code.to_string(), json!(n));
        }
    }
    let ok = by_status
        .get("200")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    let secs = (last_us as f64 / 1e6).max(1e-6);
    let seconds = ((last_us / 1_000_000) as usize + 1).min(TIMELINE_SECS);
    let max_by_second: Vec<u64> = (0..seconds)
        .map(|i| {
            lanes
                .iter()
                .map(|l| l.max_by_second[i].load(Ordering::Relaxed))
                .fold(0, u64::max)
        })
        .collect();
    let slow_by_second: Vec<u64> = (0..seconds)
        .map(|i| {
            lanes
                .iter()
                .map(|l| l.slow_by_second[i].load(Ordering::Relaxed))
                .sum()
        })
        .collect();
    let report = json!({
        "target": args.target.to_string(),
        "transport": args.transport,
        "aors": args.aors,
        "contacts_per_aor": args.contacts,
        "auth": args.password.is_some(),
        "rate_target": args.rate,
        "sent": sent,
        "answered": completed - timeouts,
        "timeouts": timeouts,
        "retransmissions": retx,
        "status": by_status,
        "errors": completed - ok,
        "elapsed_s": secs,
        "rate_achieved": (completed - timeouts) as f64 / secs,
        "latency_samples": hist.count(),
        // The server's latency (see `Latencies`): from each request's send
        // (the system call that sent it) to the kernel's receive timestamp
        // of its final answer, less the generator's own time between a 401
        // and its answer.
        "latency_us": quantiles(&hist),
        // As the generator's threads saw it, its own delays included.
        "client_latency_us": quantiles(&client),
        "latency_timeline": {
            "max_us_by_second": max_by_second,
            "slow_threshold_us": SLOW_US,
            "slow_by_second": slow_by_second,
        },
        "generator_cpu_s": { "user": cpu1.0 - cpu0.0, "system": cpu1.1 - cpu0.1 },
        "generator_io": {
            "batched": !tcp && cfg!(target_os = "linux"),
            "tick_us": tick.as_micros() as u64,
            "send_calls": sum(&|l| l.send_calls.load(Ordering::Relaxed)),
            "recv_calls": sum(&|l| l.recv_calls.load(Ordering::Relaxed)),
            "datagrams_received": sum(&|l| l.received.load(Ordering::Relaxed)),
            // Of those, how many the kernel stamped (all on Linux over UDP).
            "kernel_stamped": sum(&|l| l.kernel_stamped.load(Ordering::Relaxed)),
            "udp_rcvbuf_bytes": udp_rcvbuf,
        },
    });
    eprintln!(
        "bench: {} sent, {} answered ({} OK) in {:.2}s = {:.0}/s; retransmissions {}, timeouts {}; latency p50 {}µs p99 {}µs p99.9 {}µs (as the generator saw it: p99 {}µs); generator CPU {:.2}s",
        sent,
        completed - timeouts,
        ok,
        secs,
        (completed - timeouts) as f64 / secs,
        retx,
        timeouts,
        hist.quantile(0.5),
        hist.quantile(0.99),
        hist.quantile(0.999),
        client.quantile(0.99),
        (cpu1.0 - cpu0.0) + (cpu1.1 - cpu0.1)
    );
    let text = serde_json::to_string_pretty(&report)?;
    match &args.json {
        Some(p) if p.as_os_str() == "-" => println!("{text}"),
        Some(p) => std::fs::write(p, text).with_context(|| format!("writing {}", p.display()))?,
        None => {}
    }
    Ok(())
}

/// The quantiles a report gives of a latency histogram, µs.
fn quantiles(h: &Histogram) -> serde_json::Value {
    json!({
        "p50": h.quantile(0.50),
        "p99": h.quantile(0.99),
        "p999": h.quantile(0.999),
        "max": h.quantile(1.0),
    })
}

struct Pending {
    slot: usize,
    stamp: u64,
    j: u64,
    cseq: u32,
    kind: Kind,
    call_round: u32,
    next_us: u64,
    interval_ms: u64,
}

/// One socket's sender. Paced (`rate` > 0), it wakes once per `tick`, sends
/// in one batch every request that fell due since the start of the run
/// (so a late wake-up catches up and the rate over the run stays exact),
/// and sleeps until the next tick: its CPU grows with the rate instead of
/// spinning between sends. Closed loop (`rate` 0), it tops the window up
/// and parks until its receiver reports answers.
#[allow(clippy::too_many_arguments)]
fn sender(
    plan: &Plan,
    lane: &Lane,
    tx: &Tx,
    s: usize,
    sockets: usize,
    count: u64,
    rate: f64,
    window: u64,
    duration: Option<Duration>,
    tick: Duration,
) -> anyhow::Result<()> {
    let _ = lane.sender.set(std::thread::current());
    // This socket owns bindings s, s+S, s+2S, ...
    let owned = (plan.bindings.saturating_sub(s as u64))
        .div_ceil(sockets as u64)
        .max(1);
    let mut cseq = vec![0u32; owned as usize];
    let mut call_round = vec![0u32; owned as usize];
    let mut pending: VecDeque<Pending> = VecDeque::with_capacity(RING);
    let mut batch = Batch::new();
    let port = tx.local_port();
    let mut k = 0u64;
    let mut cursor = 0usize;
    // Sockets tick out of phase, so their bursts interleave instead of
    // arriving at the server together.
    let mut next_tick = tick.mul_f64(s as f64 / sockets as f64);
    while k < count {
        let elapsed = plan.start.elapsed();
        // Past `--duration`: paced, still send what fell due before it (a
        // wake-up late for the last tick must not shorten the run).
        let last = duration.filter(|&d| elapsed >= d);
        if last.is_some() && rate == 0.0 {
            break;
        }
        service(plan, lane, tx, &mut batch, &mut pending, port, s, sockets)?;
        let due = match last {
            Some(d) => (d.as_secs_f64() * rate).ceil() as u64,
            None if rate > 0.0 => (elapsed.as_secs_f64() * rate) as u64 + 1,
            None => k + window.saturating_sub(lane.outstanding()),
        }
        .min(count);
        let mut ring_full = false;
        while k < due {
            let Some(slot) = free_slot(lane, &mut cursor) else {
                // Every slot near the cursor waits for an answer or timeout.
                ring_full = true;
                break;
            };
            let j = k % owned;
            let round = k / owned;
            let b = s as u64 + j * sockets as u64;
            let kind = if round == 0 {
                Kind::Register
            } else {
                pick(plan.weights, b, round)
            };
            if kind == Kind::Register {
                call_round[j as usize] = round as u32;
            }
            cseq[j as usize] += 2;
            if batch.outbox.is_full() {
                batch.send(plan, lane, tx)?;
            }
            let now_us = plan.start.elapsed().as_micros() as u64 + 1;
            lane.own_us[slot].store(0, Ordering::Relaxed);
            lane.sent_at[slot].store(now_us, Ordering::Release);
            batch.unsent.push(slot, now_us);
            build(
                batch.outbox.next(),
                plan,
                port,
                slot,
                b,
                cseq[j as usize],
                kind,
                call_round[j as usize],
                None,
            );
            lane.sent.fetch_add(1, Ordering::Relaxed);
            pending.push_back(Pending {
                slot,
                stamp: now_us,
                j,
                cseq: cseq[j as usize],
                kind,
                call_round: call_round[j as usize],
                next_us: now_us + T1_MS * 1000,
                interval_ms: T1_MS,
            });
            k += 1;
        }
        batch.send(plan, lane, tx)?;
        if last.is_some() && !ring_full {
            break;
        }
        if rate > 0.0 {
            let now = plan.start.elapsed();
            if next_tick <= now {
                // Skip the ticks already past (a late wake-up): the next
                // burst sends whatever fell due meanwhile.
                let behind = (now - next_tick).as_nanos() / tick.as_nanos() + 1;
                next_tick += tick * behind as u32;
            }
            std::thread::sleep(next_tick - now);
        } else if ring_full || lane.outstanding() >= window {
            wait_for_answers(lane, window, ring_full);
        }
    }
    // Drain: wait for answers or timeouts of everything in flight.
    while !pending.is_empty() {
        service(plan, lane, tx, &mut batch, &mut pending, port, s, sockets)?;
        batch.send(plan, lane, tx)?;
        std::thread::sleep(Duration::from_millis(1));
    }
    lane.send_calls.store(batch.outbox.calls, Ordering::Relaxed);
    Ok(())
}

/// What a sender has built and not yet sent: the outbox and, for the new
/// requests in it, when each was stamped. Kept together so that no send
/// can skip booking the wait before it ([`Unsent`]).
struct Batch {
    outbox: Outbox,
    unsent: Unsent,
}

impl Batch {
    fn new() -> Self {
        Self {
            outbox: Outbox::new(),
            unsent: Unsent::default(),
        }
    }

    /// Send what the outbox holds.
    fn send(&mut self, plan: &Plan, lane: &Lane, tx: &Tx) -> anyhow::Result<()> {
        self.unsent
            .sending(lane, plan.start.elapsed().as_micros() as u64 + 1);
        tx.flush(&mut self.outbox)
            .with_context(|| format!("sending to {}", plan.target))?;
        lane.send_calls.store(self.outbox.calls, Ordering::Relaxed);
        Ok(())
    }
}

/// New requests built into the outbox and not yet sent: (slot, when it was
/// stamped, µs since start + 1). A paced sender builds a tick's burst
/// before one `sendmmsg` sends it, and at `nice 19` it can be preempted in
/// between, for milliseconds when the server fills both cores. That wait
/// is the generator's, not the server's: right before the send, each
/// request's wait since its stamp goes into its slot's `own_us`, which the
/// server's latency leaves out. The stamp itself stays the request's
/// identity and the start of the generator's own view (`client_latency_us`).
#[derive(Default)]
struct Unsent {
    built: Vec<(usize, u64)>,
}

impl Unsent {
    fn push(&mut self, slot: usize, stamped_us: u64) {
        self.built.push((slot, stamped_us));
    }

    /// Called right before the system call that sends them, at `now_us`.
    /// Stored before the send, so the receiver (which reads it only after
    /// the answer to it came back) always sees it.
    fn sending(&mut self, lane: &Lane, now_us: u64) {
        for (slot, stamped) in self.built.drain(..) {
            lane.own_us[slot].store(now_us.saturating_sub(stamped), Ordering::Release);
        }
    }
}

/// The next free slot of the ring at or after `cursor`, looking at a few
/// only. A request waiting for its answer keeps its slot (up to
/// `--timeout`); skipping it rather than waiting for it means one lost
/// datagram does not stall the sender when the ring wraps.
fn free_slot(lane: &Lane, cursor: &mut usize) -> Option<usize> {
    for _ in 0..64 {
        let slot = *cursor;
        *cursor = (*cursor + 1) % RING;
        if lane.sent_at[slot].load(Ordering::Acquire) == 0 {
            return Some(slot);
        }
    }
    None
}

/// Closed loop: park until the receiver has answers (it unparks us), or
/// `CLOSED_LOOP_PARK` passes so that retransmissions and timeouts are
/// still served when nothing comes back. Returns at once when answers
/// came in since the window was last seen full (the usual case at high
/// rates): the window is topped up without a sleep.
fn wait_for_answers(lane: &Lane, window: u64, ring_full: bool) {
    lane.waiting.store(true, Ordering::Relaxed);
    fence(Ordering::SeqCst);
    if ring_full || lane.outstanding() >= window {
        std::thread::park_timeout(CLOSED_LOOP_PARK);
    }
    lane.waiting.store(false, Ordering::Relaxed);
}

/// Retransmit (UDP, timer A) and time out requests still in flight.
/// Retransmissions join the outbox, sent with the next batch.
#[allow(clippy::too_many_arguments)]
fn service(
    plan: &Plan,
    lane: &Lane,
    tx: &Tx,
    batch: &mut Batch,
    pending: &mut VecDeque<Pending>,
    port: u16,
    s: usize,
    sockets: usize,
) -> anyhow::Result<()> {
    let now_us = plan.start.elapsed().as_micros() as u64 + 1;
    let timeout_us = plan.timeout.as_micros() as u64;
    while let Some(p) = pending.front() {
        if lane.sent_at[p.slot].load(Ordering::Acquire) != p.stamp {
            pending.pop_front();
            continue;
        }
        if now_us < p.next_us {
            break;
        }
        let Some(mut p) = pending.pop_front() else {
            break;
        };
        if now_us - p.stamp > timeout_us {
            if lane.sent_at[p.slot]
                .compare_exchange(p.stamp, 0, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                lane.timeouts.fetch_add(1, Ordering::Relaxed);
                lane.completed.fetch_add(1, Ordering::Relaxed);
            }
            continue;
        }
        if !plan.tcp {
            if batch.outbox.is_full() {
                batch.send(plan, lane, tx)?;
            }
            let b = s as u64 + p.j * sockets as u64;
            build(
                batch.outbox.next(),
                plan,
                port,
                p.slot,
                b,
                p.cseq,
                p.kind,
                p.call_round,
                None,
            );
            lane.retransmissions.fetch_add(1, Ordering::Relaxed);
        }
        p.interval_ms = (p.interval_ms * 2).min(T2_MS);
        p.next_us = now_us + p.interval_ms * 1000;
        pending.push_back(p);
    }
    Ok(())
}

/// Choose the kind of a later request for binding `b` from the weights,
/// deterministically (a run is reproducible).
fn pick(w: [u64; 3], b: u64, round: u64) -> Kind {
    let mut x = b.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ round.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    x ^= x >> 29;
    let r = x % (w[0] + w[1] + w[2]);
    if r < w[0] {
        Kind::Register
    } else if r < w[0] + w[1] {
        Kind::Refresh
    } else {
        Kind::Unregister
    }
}

/// Build one REGISTER into `out` (cleared first). The Via branch carries
/// `slot-binding-cseq-kind[-a]` so the receiver needs no lookup table.
#[allow(clippy::too_many_arguments)]
fn build(
    out: &mut Vec<u8>,
    plan: &Plan,
    port: u16,
    slot: usize,
    b: u64,
    cseq: u32,
    kind: Kind,
    call_round: u32,
    auth: Option<(&str, u32)>,
) {
    out.clear();
    let aor = b / plan.contacts;
    let c = b % plan.contacts;
    let user = &plan.user_prefix;
    let d = &plan.domain;
    // Both spellings as literals: lowercasing at run time would allocate
    // once per request.
    let (proto, t) = if plan.tcp {
        ("TCP", "tcp")
    } else {
        ("UDP", "udp")
    };
    let host = if plan.target.is_ipv6() {
        "[::1]"
    } else {
        "127.0.0.1"
    };
    let contact_port = plan.contact_port.unwrap_or(port);
    let expires = if kind == Kind::Unregister {
        0
    } else {
        plan.expires
    };
    let (cseq, flag) = match auth {
        Some(_) => (cseq + 1, "-a"),
        None => (cseq, ""),
    };
    let _ = write!(
        out,
        "REGISTER sip:{d} SIP/2.0\r\n\
         Via: SIP/2.0/{proto} {host}:{port};rport;branch=z9hG4bK-{slot}-{b}-{cseq}-{k}{flag}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{user}{aor}@{d}>;tag={b}x{run}\r\n\
         To: <sip:{user}{aor}@{d}>\r\n\
         Call-ID: {b}-{call_round}-{run}@regmesh.bench\r\n\
         CSeq: {cseq} REGISTER\r\n\
         Contact: <sip:{user}{aor}-{c}@{host}:{contact_port};transport={t}>;expires={expires}\r\n\
         User-Agent: regmesh-bench\r\n",
        k = kind.code() as char,
        run = plan.run_id,
    );
    if let Some((authorization, _)) = auth {
        let _ = write!(out, "Authorization: {authorization}\r\n");
    }
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
}

/// The two latency histograms of one receiver.
struct Latencies {
    /// The server's: from the system call that sent a request (not from
    /// building it, see [`Unsent`]) to the kernel receiving its final
    /// answer, less the generator's own time between a 401 and the request
    /// with credentials. What a client elsewhere would see.
    server: Histogram,
    /// As this process saw it: up to the moment the receiver thread
    /// handled the final answer, 401 round included. It also holds the
    /// generator's own waits for a CPU (it runs at a low priority beside
    /// the server), so it is at least the server's.
    client: Histogram,
}

/// One socket's receiver: answers in batches of up to `RECV_BATCH` per
/// system call over UDP, parsed in place (no allocation per answer).
fn receiver(plan: &Plan, lane: &Lane, tx: &Tx, rx: Rx, stop: &AtomicBool) -> Latencies {
    let mut lat = Latencies {
        server: Histogram::new(),
        client: Histogram::new(),
    };
    let mut out = Vec::with_capacity(1024);
    let port = tx.local_port();
    match rx {
        Rx::Udp(sock) => {
            let mut inbox = Inbox::new();
            while !stop.load(Ordering::Relaxed) {
                // Timeouts (SO_RCVTIMEO) and ICMP errors alike: look at
                // `stop` and wait again.
                let Ok(n) = inbox.recv(&sock) else { continue };
                // The kernel stamps arrivals on the realtime clock; the
                // run is timed on the monotonic one. Read both now and
                // take each stamp's age: a clock step cannot skew it.
                let now_us = plan.start.elapsed().as_micros() as u64 + 1;
                let wall = crate::realtime_now();
                let mut stamped = 0;
                for i in 0..n {
                    let arrived_us = match inbox.arrived(i) {
                        Some(at) => {
                            stamped += 1;
                            let age = wall.saturating_sub(at).as_micros() as u64;
                            now_us.saturating_sub(age)
                        }
                        None => now_us,
                    };
                    on_response(
                        plan,
                        lane,
                        tx,
                        inbox.get(i),
                        arrived_us,
                        &mut lat,
                        &mut out,
                        port,
                    );
                }
                lane.received.fetch_add(n as u64, Ordering::Relaxed);
                lane.kernel_stamped.fetch_add(stamped, Ordering::Relaxed);
                lane.recv_calls.store(inbox.calls, Ordering::Relaxed);
                lane.wake_sender();
            }
        }
        Rx::Tcp(mut stream) => {
            let mut buf = vec![0u8; 65_536];
            let mut pending: Vec<u8> = Vec::with_capacity(65_536);
            while !stop.load(Ordering::Relaxed) {
                let n = match stream.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(_) => continue,
                };
                // A stream has no per-message arrival stamp: a message
                // counts as arrived when read.
                let now_us = plan.start.elapsed().as_micros() as u64 + 1;
                lane.recv_calls.fetch_add(1, Ordering::Relaxed);
                pending.extend_from_slice(&buf[..n]);
                let mut start = 0;
                while let Ok(frame) = regmesh_sip::frame(&pending[start..], 65_536) {
                    match frame {
                        regmesh_sip::Frame::KeepAlive(m) => start += m,
                        regmesh_sip::Frame::Message(m) => {
                            let msg = &pending[start..start + m];
                            on_response(plan, lane, tx, msg, now_us, &mut lat, &mut out, port);
                            lane.received.fetch_add(1, Ordering::Relaxed);
                            start += m;
                        }
                    }
                }
                pending.drain(..start);
                lane.wake_sender();
            }
        }
    }
    lat
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn num(bytes: &[u8]) -> Option<u64> {
    let end = bytes
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(bytes.len());
    std::str::from_utf8(&bytes[..end]).ok()?.parse().ok()
}

/// Handle one answer that arrived at `arrived_us` (µs since start, +1):
/// answer a 401 with credentials, or record the request's latencies.
#[allow(clippy::too_many_arguments)]
fn on_response(
    plan: &Plan,
    lane: &Lane,
    tx: &Tx,
    msg: &[u8],
    arrived_us: u64,
    lat: &mut Latencies,
    out: &mut Vec<u8>,
    port: u16,
) {
    if msg.len() < 12 || &msg[..8] != b"SIP/2.0 " {
        return;
    }
    let Some(status) = num(&msg[8..]) else { return };
    if !(100..700).contains(&status) || status < 200 {
        return;
    }
    const B: &[u8] = b"branch=z9hG4bK-";
    let Some(at) = find(msg, B) else { return };
    let rest = &msg[at + B.len()..];
    let mut parts = rest.split(|&c| c == b'-');
    let (Some(slot), Some(b), Some(cseq), Some(kind)) = (
        parts.next().and_then(num),
        parts.next().and_then(num),
        parts.next().and_then(num),
        parts
            .next()
            .and_then(|k| k.first().copied())
            .and_then(Kind::from_code),
    ) else {
        return;
    };
    let authed = parts.next().is_some_and(|p| p.first() == Some(&b'a'));
    let slot = slot as usize;
    if slot >= RING {
        return;
    }
    let stamp = lane.sent_at[slot].load(Ordering::Acquire);
    if stamp == 0 {
        return; // a second answer to a retransmission, or after a timeout
    }
    if status == 401
        && !authed
        && let Some(password) = &plan.password
    {
        let call_round = call_round_of(msg).unwrap_or(0);
        if let Some(authz) = authorization(plan, msg, b, password) {
            build(
                out,
                plan,
                port,
                slot,
                b,
                cseq as u32,
                kind,
                call_round,
                Some((&authz, 0)),
            );
            let sending_us = plan.start.elapsed().as_micros() as u64 + 1;
            // Added to the wait before the first send (see `Unsent`).
            lane.own_us[slot].fetch_add(sending_us.saturating_sub(arrived_us), Ordering::AcqRel);
            let _ = tx.send(out);
            return;
        }
    }
    if lane.sent_at[slot]
        .compare_exchange(stamp, 0, Ordering::AcqRel, Ordering::Relaxed)
        .is_ok()
    {
        let now_us = plan.start.elapsed().as_micros() as u64 + 1;
        lat.client.record(now_us.saturating_sub(stamp));
        let latency = arrived_us
            .saturating_sub(stamp)
            .saturating_sub(lane.own_us[slot].load(Ordering::Acquire));
        lat.server.record(latency);
        let second = (now_us / 1_000_000) as usize;
        if let (Some(max), Some(slow)) = (
            lane.max_by_second.get(second),
            lane.slow_by_second.get(second),
        ) {
            max.fetch_max(latency, Ordering::Relaxed);
            if latency > SLOW_US {
                slow.fetch_add(1, Ordering::Relaxed);
            }
        }
        lane.status[status as usize].fetch_add(1, Ordering::Relaxed);
        lane.completed.fetch_add(1, Ordering::Relaxed);
        lane.last_done_us.fetch_max(now_us, Ordering::Relaxed);
    }
}

/// The `call_round` field of our own Call-ID (`b-round-run@regmesh.bench`).
fn call_round_of(msg: &[u8]) -> Option<u32> {
    let at = find(msg, b"\nCall-ID: ").or_else(|| find(msg, b"\ni: "))?;
    let line = &msg[at..];
    let colon = line.iter().position(|&c| c == b':')?;
    let v = &line[colon + 2..];
    let mut it = v.split(|&c| c == b'-');
    it.next()?;
    num(it.next()?).map(|n| n as u32)
}

/// Answer an MD5 challenge (RFC 2617 / RFC 7616 §3.4.1, qop=auth when offered).
fn authorization(plan: &Plan, msg: &[u8], b: u64, password: &str) -> Option<String> {
    let text = std::str::from_utf8(msg).ok()?;
    let parsed = regmesh_sip::parse(msg).ok()?;
    let regmesh_sip::Message::Response(resp) = parsed else {
        return None;
    };
    let _ = text;
    let challenge = resp.headers.get_all("WWW-Authenticate").find(|h| {
        let l = h.to_ascii_lowercase();
        !l.contains("algorithm=") || l.contains("algorithm=md5")
    })?;
    let params = digest_params(
        challenge
            .strip_prefix("Digest ")
            .or_else(|| challenge.strip_prefix("digest "))?,
    );
    let get = |k: &str| {
        params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
    };
    let realm = get("realm")?;
    let nonce = get("nonce")?;
    let qop_auth = get("qop").is_some_and(|q| q.split(',').any(|x| x.trim() == "auth"));
    let user = format!("{}{}", plan.user_prefix, b / plan.contacts);
    let uri = format!("sip:{}", plan.domain);
    let h = |s: String| format!("{:x}", Md5::digest(s.as_bytes()));
    let ha1 = h(format!("{user}:{realm}:{password}"));
    let ha2 = h(format!("REGISTER:{uri}"));
    let cnonce = format!("{:08x}", rand::random::<u32>());
    let mut v = if qop_auth {
        let resp = h(format!("{ha1}:{nonce}:00000001:{cnonce}:auth:{ha2}"));
        format!(
            "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{resp}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"{cnonce}\""
        )
    } else {
        let resp = h(format!("{ha1}:{nonce}:{ha2}"));
        format!(
            "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{resp}\", algorithm=MD5"
        )
    };
    if let Some(opaque) = get("opaque") {
        v.push_str(&format!(", opaque=\"{opaque}\""));
    }
    Some(v)
}

/// `a="x", b=y` → pairs, commas inside quotes kept.
fn digest_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else { break };
        let name = rest[..eq].trim().trim_start_matches(',').trim().to_string();
        rest = rest[eq + 1..].trim_start();
        let value;
        if let Some(r) = rest.strip_prefix('"') {
            let end = r.find('"').unwrap_or(r.len());
            value = r[..end].to_string();
            rest = r.get(end + 1..).unwrap_or("");
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_string();
            rest = &rest[end..];
        }
        rest = rest.trim_start().trim_start_matches(',').trim_start();
        out.push((name, value));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_params_keep_quoted_commas() {
        let p = digest_params("realm=\"a,b\", nonce=\"n1\", qop=\"auth,auth-int\", algorithm=MD5");
        assert_eq!(p[0], ("realm".into(), "a,b".into()));
        assert_eq!(p[1], ("nonce".into(), "n1".into()));
        assert_eq!(p[2], ("qop".into(), "auth,auth-int".into()));
        assert_eq!(p[3], ("algorithm".into(), "MD5".into()));
    }

    /// A request's wait between its stamp and the system call that sends
    /// it is the generator's own time: `sending` books it for each request
    /// built since the last send, once.
    #[test]
    fn the_wait_before_the_send_is_the_generators_own_time() {
        let lane = Lane::new();
        let mut unsent = Unsent::default();
        unsent.push(7, 1_000);
        unsent.push(8, 1_250);
        unsent.sending(&lane, 4_000);
        assert_eq!(lane.own_us[7].load(Ordering::Relaxed), 3_000);
        assert_eq!(lane.own_us[8].load(Ordering::Relaxed), 2_750);
        // Sent: the next send books only what was built after it.
        unsent.push(9, 4_100);
        unsent.sending(&lane, 4_300);
        assert_eq!(lane.own_us[7].load(Ordering::Relaxed), 3_000);
        assert_eq!(lane.own_us[9].load(Ordering::Relaxed), 200);
        assert!(unsent.built.is_empty());
    }

    #[test]
    fn tick_accepts_micro_and_milliseconds_within_bounds() {
        assert_eq!(parse_tick("1ms"), Some(Duration::from_millis(1)));
        assert_eq!(parse_tick("250us"), Some(Duration::from_micros(250)));
        assert_eq!(parse_tick("10us"), None);
        assert_eq!(parse_tick("2s"), None);
        assert_eq!(parse_tick("fast"), None);
    }

    #[test]
    fn mix_weights_are_honoured() {
        let w = [1, 2, 1];
        let mut n = [0u32; 3];
        for b in 0..4000 {
            match pick(w, b, 1) {
                Kind::Register => n[0] += 1,
                Kind::Refresh => n[1] += 1,
                Kind::Unregister => n[2] += 1,
            }
        }
        assert!((800..1200).contains(&n[0]), "{n:?}");
        assert!((1800..2200).contains(&n[1]), "{n:?}");
        assert!((800..1200).contains(&n[2]), "{n:?}");
        assert!(parse_weights("1:2").is_err());
        assert!(parse_weights("0:0:0").is_err());
    }
}
