//! `regmesh bench-lag`: how long a registration takes to become visible on
//! another node of a cluster (issue 3: "register on node A, time until each
//! binding is visible on node B").
//!
//! Each of `--count` new AoRs is registered on the primary at `--rate`;
//! once the primary has answered 200, the replica is asked for that AoR's
//! bindings with a query REGISTER (no Contact header, RFC 3261 §10.2.3)
//! every `--poll` until its 200 lists the new contact. The lag of a binding
//! is the time from the primary's 200 to the first replica answer listing
//! it, so it includes up to one poll interval of sampling error (reported).
//! Works with any registrar pair that answers queries: a Kamailio
//! dmq_usrloc pair today (bench/replication.sh), regmesh once it replicates.
//!
//! This is a measuring tool, not a load generator: one thread, plain
//! non-blocking sockets, modest rates. Targets must be loopback addresses.

use super::hist::Histogram;
use super::now;
use anyhow::{Context, bail};
use serde_json::json;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Arguments of `regmesh bench-lag`.
#[derive(clap::Args, Debug)]
pub(crate) struct LagArgs {
    /// Node the REGISTERs go to (a loopback address).
    #[arg(long)]
    primary: SocketAddr,
    /// Node asked, until it lists them, for each new binding (a loopback address).
    #[arg(long)]
    replica: SocketAddr,
    /// Bindings to measure, one new AoR each.
    #[arg(long, default_value_t = 1000)]
    count: u64,
    /// REGISTERs per second sent to the primary.
    #[arg(long, default_value_t = 200)]
    rate: u64,
    /// Time between two queries to the replica about one binding, e.g. `1ms`.
    #[arg(long, default_value = "1ms")]
    poll: String,
    /// A binding not listed by the replica this long after it was sent is
    /// counted as not replicated, e.g. `5s`.
    #[arg(long, default_value = "5s")]
    timeout: String,
    /// SIP domain of the AoRs.
    #[arg(long, default_value = "example.com")]
    domain: String,
    /// User part prefix of the AoRs.
    #[arg(long, default_value = "lag")]
    user_prefix: String,
    /// Expires of the registrations, seconds.
    #[arg(long, default_value_t = 3600)]
    expires: u32,
    /// Write the JSON report here (`-` for stdout).
    #[arg(long)]
    json: Option<PathBuf>,
    /// No summary line on stderr.
    #[arg(long)]
    quiet: bool,
}

/// Where one binding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not sent yet.
    Waiting,
    /// Sent to the primary, not answered yet.
    Sent(Instant),
    /// Answered 200 by the primary; the replica is polled.
    Polling { acked: Instant, next: Instant },
    /// Listed by the replica this long after the primary's 200.
    Seen,
    /// Refused by the primary, or never listed by the replica.
    Failed,
}

/// One binding under measurement.
struct Item {
    state: State,
    sent: Option<Instant>,
    queries: u32,
}

/// What the run found.
#[derive(Default)]
struct Outcome {
    seen: u64,
    /// The primary answered something else than 200 (by status code).
    primary_refused: std::collections::BTreeMap<u16, u64>,
    /// The primary never answered.
    primary_timeouts: u64,
    /// Answered 200 by the primary but never listed by the replica.
    not_replicated: u64,
    queries: u64,
    replica_errors: u64,
}

/// Run `regmesh bench-lag`.
pub(crate) fn run(args: LagArgs) -> anyhow::Result<()> {
    for (name, addr) in [("--primary", args.primary), ("--replica", args.replica)] {
        if !addr.ip().is_loopback() {
            bail!(
                "{name} {addr} is not a loopback address; regmesh bench-lag only measures this machine"
            );
        }
    }
    if args.count == 0 || args.rate == 0 {
        bail!("--count and --rate must be at least 1");
    }
    let poll = crate::config::parse_duration(&args.poll)
        .filter(|d| !d.is_zero())
        .with_context(|| format!("--poll `{}`: a duration such as 1ms or 500us", args.poll))?;
    let timeout = crate::config::parse_duration(&args.timeout)
        .filter(|d| !d.is_zero())
        .with_context(|| format!("--timeout `{}`: a duration such as 5s", args.timeout))?;
    // One socket for both nodes: answers are told apart by Call-ID, and a
    // blocking receive with a timeout up to the next thing due keeps the
    // loop's own delay out of the measured lag.
    let local: SocketAddr = if args.primary.is_ipv4() {
        "127.0.0.1:0".parse()?
    } else {
        "[::1]:0".parse()?
    };
    let sock = UdpSocket::bind(local).context("binding the bench-lag socket")?;
    sock.set_nonblocking(true)?;
    let local = sock.local_addr()?;
    // A per-run tag in every Contact and Call-ID: a second run over the same
    // AoRs adds new contacts, so an earlier run's cannot pass for this one's.
    let run_tag: u32 = rand::random();
    let msg = Messages {
        domain: &args.domain,
        prefix: &args.user_prefix,
        run: run_tag,
        expires: args.expires,
    };
    let n = usize::try_from(args.count).context("--count")?;
    let mut items: Vec<Item> = (0..n)
        .map(|_| Item {
            state: State::Waiting,
            sent: None,
            queries: 0,
        })
        .collect();
    let mut out = Outcome::default();
    let mut lag = Histogram::new();
    let mut buf = vec![0u8; 65_536];
    let mut polling: Vec<usize> = Vec::new();
    let mut in_flight: Vec<usize> = Vec::new();
    let mut next_send = 0usize;
    let start = now();
    let send_time = |i: usize| start + Duration::from_secs_f64(i as f64 / args.rate as f64);
    loop {
        let t = now();
        // Registrations due by now at --rate.
        while next_send < n && send_time(next_send) <= t {
            let i = next_send;
            send(&sock, msg.register(i, local).as_bytes(), args.primary)?;
            items[i].state = State::Sent(t);
            items[i].sent = Some(t);
            in_flight.push(i);
            next_send += 1;
        }
        // Queries due to the replica.
        for &i in &polling {
            let item = &mut items[i];
            if let State::Polling { acked, next } = item.state
                && next <= t
            {
                item.queries += 1;
                out.queries += 1;
                send(
                    &sock,
                    msg.query(i, item.queries, local).as_bytes(),
                    args.replica,
                )?;
                item.state = State::Polling {
                    acked,
                    next: t + poll,
                };
            }
        }
        // Timeouts, and the sets trimmed to what is still pending.
        for &i in &in_flight {
            if let State::Sent(s) = items[i].state
                && t.duration_since(s) > timeout
            {
                out.primary_timeouts += 1;
                items[i].state = State::Failed;
            }
        }
        in_flight.retain(|&i| matches!(items[i].state, State::Sent(_)));
        for &i in &polling {
            if let (State::Polling { .. }, Some(sent)) = (items[i].state, items[i].sent)
                && t.duration_since(sent) > timeout
            {
                out.not_replicated += 1;
                items[i].state = State::Failed;
            }
        }
        polling.retain(|&i| matches!(items[i].state, State::Polling { .. }));
        if next_send == n && in_flight.is_empty() && polling.is_empty() {
            break;
        }
        // Wait for an answer, at most until the next send is due.
        let mut wake = t + Duration::from_millis(1);
        if next_send < n {
            wake = wake.min(send_time(next_send));
        }
        for &i in &polling {
            if let State::Polling { next, .. } = items[i].state {
                wake = wake.min(next);
            }
        }
        let wait = wake.saturating_duration_since(now());
        wait_readable(&sock, wait)?;
        // Every answer that is there, each stamped when read.
        while let Some(len) = recv(&sock, &mut buf)? {
            handle(
                &buf[..len],
                now(),
                n,
                &msg,
                &mut items,
                &mut polling,
                &mut out,
                &mut lag,
            );
        }
    }
    let elapsed = start.elapsed();
    let q = |p: f64| (lag.count() > 0).then(|| lag.quantile(p));
    let report = json!({
        "primary": args.primary.to_string(),
        "replica": args.replica.to_string(),
        "count": args.count,
        "rate": args.rate,
        "poll_us": u64::try_from(poll.as_micros()).unwrap_or(u64::MAX),
        "elapsed_s": elapsed.as_secs_f64(),
        "seen": out.seen,
        "not_replicated": out.not_replicated,
        "primary_timeouts": out.primary_timeouts,
        "primary_refused": out.primary_refused.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "replica_errors": out.replica_errors,
        "queries": out.queries,
        "lag_us": {"p50": q(0.50), "p99": q(0.99), "max": q(1.0)},
    });
    if !args.quiet {
        let ms = |v: Option<u64>| {
            v.map_or_else(|| "-".to_owned(), |v| format!("{:.2}", v as f64 / 1000.0))
        };
        eprintln!(
            "bench-lag: {} of {} bindings listed by the replica ({} queries); not replicated {}, primary timeouts {}, refused {:?}; lag p50 {} ms p99 {} ms max {} ms (poll every {:?})",
            out.seen,
            args.count,
            out.queries,
            out.not_replicated,
            out.primary_timeouts,
            out.primary_refused,
            ms(q(0.50)),
            ms(q(0.99)),
            ms(q(1.0)),
            poll
        );
    }
    match args.json.as_deref() {
        Some(p) if p.as_os_str() == "-" => println!("{report}"),
        Some(p) => std::fs::write(p, format!("{report}\n"))
            .with_context(|| format!("writing {}", p.display()))?,
        None => {}
    }
    Ok(())
}

/// The requests of one run.
struct Messages<'a> {
    domain: &'a str,
    prefix: &'a str,
    run: u32,
    expires: u32,
}

impl Messages<'_> {
    /// The user part of binding `i`'s Contact: unique to this run.
    fn contact_user(&self, i: usize) -> String {
        format!("sip:{}{i}-{:08x}@", self.prefix, self.run)
    }

    /// REGISTER of binding `i` to the primary.
    fn register(&self, i: usize, local: SocketAddr) -> String {
        let (d, p, r) = (self.domain, self.prefix, self.run);
        format!(
            "REGISTER sip:{d} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};rport;branch=z9hG4bK-lag-a-{i}-{r:08x}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:{p}{i}@{d}>;tag=lag{r:08x}\r\n\
             To: <sip:{p}{i}@{d}>\r\n\
             Call-ID: lag-a-{i}-{r:08x}@bench\r\n\
             CSeq: 1 REGISTER\r\n\
             Contact: <{contact}{ip}:{port}>\r\n\
             Expires: {e}\r\n\
             User-Agent: regmesh-bench-lag\r\n\
             Content-Length: 0\r\n\r\n",
            contact = self.contact_user(i),
            ip = SipHost(local),
            port = local.port(),
            e = self.expires,
        )
    }

    /// Query (REGISTER without Contact, RFC 3261 §10.2.3) number `n` for
    /// binding `i`'s AoR to the replica.
    fn query(&self, i: usize, n: u32, local: SocketAddr) -> String {
        let (d, p, r) = (self.domain, self.prefix, self.run);
        format!(
            "REGISTER sip:{d} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};rport;branch=z9hG4bK-lag-b-{i}-{n}-{r:08x}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:{p}{i}@{d}>;tag=lagq{r:08x}\r\n\
             To: <sip:{p}{i}@{d}>\r\n\
             Call-ID: lag-b-{i}-{r:08x}@bench\r\n\
             CSeq: {n} REGISTER\r\n\
             User-Agent: regmesh-bench-lag\r\n\
             Content-Length: 0\r\n\r\n"
        )
    }
}

/// An address as a SIP host (IPv6 in brackets).
struct SipHost(SocketAddr);

impl std::fmt::Display for SipHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            SocketAddr::V4(a) => write!(f, "{}", a.ip()),
            SocketAddr::V6(a) => write!(f, "[{}]", a.ip()),
        }
    }
}

fn send(s: &UdpSocket, bytes: &[u8], to: SocketAddr) -> anyhow::Result<()> {
    match s.send_to(bytes, to) {
        Ok(_) => Ok(()),
        // A full socket buffer or a peer not listening (ICMP) loses this
        // one datagram; the binding then times out and is reported.
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::WouldBlock | ErrorKind::ConnectionRefused
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(e).context("sending"),
    }
}

fn recv(s: &UdpSocket, buf: &mut [u8]) -> anyhow::Result<Option<usize>> {
    match s.recv(buf) {
        Ok(n) => Ok(Some(n)),
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::WouldBlock | ErrorKind::ConnectionRefused
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e).context("receiving"),
    }
}

/// Wait until `sock` is readable or `wait` has passed. `ppoll` rather
/// than a socket read timeout: SO_RCVTIMEO counts in scheduler ticks (4 ms
/// here), which would swamp a 1 ms poll interval.
fn wait_readable(sock: &UdpSocket, wait: Duration) -> anyhow::Result<()> {
    use nix::poll::{PollFd, PollFlags, ppoll};
    use std::os::fd::AsFd as _;
    let mut fds = [PollFd::new(sock.as_fd(), PollFlags::POLLIN)];
    match ppoll(
        &mut fds,
        Some(nix::sys::time::TimeSpec::from_duration(wait)),
        None,
    ) {
        Ok(_) | Err(nix::errno::Errno::EINTR) => Ok(()),
        Err(e) => Err(e).context("waiting for answers"),
    }
}

/// Account for one datagram read at `at`: a primary's answer to a
/// registration (`lag-a-` Call-ID) or a replica's answer to a query
/// (`lag-b-`); anything else is ignored.
#[allow(clippy::too_many_arguments)]
fn handle(
    bytes: &[u8],
    at: Instant,
    n: usize,
    msg: &Messages<'_>,
    items: &mut [Item],
    polling: &mut Vec<usize>,
    out: &mut Outcome,
    lag: &mut Histogram,
) {
    if let Some((i, code)) = answer(bytes, b"lag-a-", n) {
        if let State::Sent(_) = items[i].state {
            if code == 200 {
                // The first query goes out at once.
                items[i].state = State::Polling {
                    acked: at,
                    next: at,
                };
                polling.push(i);
            } else if code >= 200 {
                *out.primary_refused.entry(code).or_default() += 1;
                items[i].state = State::Failed;
            }
        }
    } else if let Some((i, code)) = answer(bytes, b"lag-b-", n) {
        if code != 200 {
            if code >= 200 {
                out.replica_errors += 1;
            }
            return;
        }
        if let State::Polling { acked, .. } = items[i].state
            && contains(bytes, msg.contact_user(i).as_bytes())
        {
            lag.record(u64::try_from(at.duration_since(acked).as_micros()).unwrap_or(u64::MAX));
            out.seen += 1;
            items[i].state = State::Seen;
        }
    }
}

/// The binding index and status code of an answer whose Call-ID starts
/// with `tag` (`lag-a-<i>-` or `lag-b-<i>-`); None for anything else.
fn answer(bytes: &[u8], tag: &[u8], n: usize) -> Option<(usize, u16)> {
    let code = bytes
        .strip_prefix(b"SIP/2.0 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| std::str::from_utf8(c).ok())
        .and_then(|c| c.parse::<u16>().ok())?;
    let at = find(bytes, b"Call-ID: ")
        .map(|p| p + 9)
        .or_else(|| find(bytes, b"\ni: ").map(|p| p + 4))?;
    let rest = bytes.get(at..)?.strip_prefix(tag)?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let i: usize = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
    (i < n).then_some((i, code))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    find(hay, needle).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_matched_by_call_id_and_status() {
        let ok = b"SIP/2.0 200 OK\r\nVia: x\r\nCall-ID: lag-a-17-0000abcd@bench\r\n\r\n";
        assert_eq!(answer(ok, b"lag-a-", 100), Some((17, 200)));
        assert_eq!(answer(ok, b"lag-b-", 100), None);
        assert_eq!(answer(ok, b"lag-a-", 17), None, "index out of range");
        let compact = b"SIP/2.0 404 Not Found\r\ni: lag-b-3-1@bench\r\n\r\n";
        assert_eq!(answer(compact, b"lag-b-", 10), Some((3, 404)));
        assert_eq!(answer(b"REGISTER sip:x SIP/2.0\r\n", b"lag-a-", 10), None);
        assert_eq!(answer(b"", b"lag-a-", 10), None);
    }

    #[test]
    fn requests_name_the_run_and_queries_carry_no_contact() {
        let m = Messages {
            domain: "example.com",
            prefix: "lag",
            run: 0xab,
            expires: 60,
        };
        let local: SocketAddr = "127.0.0.1:4000".parse().expect("addr");
        let r = m.register(5, local);
        assert!(
            r.contains("Contact: <sip:lag5-000000ab@127.0.0.1:4000>\r\n"),
            "{r}"
        );
        assert!(r.contains("Call-ID: lag-a-5-000000ab@bench\r\n"), "{r}");
        let q = m.query(5, 2, local);
        assert!(!q.contains("Contact:"), "{q}");
        assert!(q.contains("CSeq: 2 REGISTER\r\n"), "{q}");
        assert!(q.contains("To: <sip:lag5@example.com>\r\n"), "{q}");
        let v6: SocketAddr = "[::1]:4000".parse().expect("addr");
        assert!(m.register(1, v6).contains("@[::1]:4000>"));
    }
}
