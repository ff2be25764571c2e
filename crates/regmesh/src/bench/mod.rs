//! `regmesh bench`: a SIP REGISTER load generator for any registrar (regmesh
//! or Kamailio), and `regmesh bench-responder`, a trivial UDP responder that
//! shows the generator's own ceiling.
//!
//! Design: per socket one sender thread and one receiver thread, plain
//! blocking std sockets. The generator shares the machine with the server it
//! measures, so it must not spend CPU waiting: a paced sender wakes once per
//! `--tick` (1 ms), sends every request due since the run started as one
//! batch (`sendmmsg` on Linux) and sleeps again; receivers take answers in
//! batches (`recvmmsg`). A request's slot in a fixed ring is encoded in its
//! Via branch, so the receiver finds the send time without a map and without
//! allocating; requests are built into reused buffers. Requests over
//! UDP are retransmitted per RFC 3261 §17.1.1.2 timer A (T1 = 500 ms,
//! doubling) until `--timeout`; 401 challenges are answered (MD5 digest)
//! when `--password` is given. Latency is the server's: timed to the
//! kernel's receive stamp of the answer, from the system call that sent the
//! request, without the generator's own time between a 401 and its answer
//! (`generator::Latencies`, `generator::Unsent`; the latency the
//! generator's threads saw is reported beside it). Targets must be loopback addresses: this is a
//! load generator, and this project only ever loads its own machine.

mod generator;
mod hist;
mod io;
mod lag;
mod responder;

pub(crate) use generator::{BenchArgs, run};
pub(crate) use lag::{LagArgs, run as run_lag};
pub(crate) use responder::{ResponderArgs, run as run_responder};

/// The one clock of the generator (monotonic).
#[allow(clippy::disallowed_methods)] // the bench measures wall time by definition
pub(crate) fn now() -> std::time::Instant {
    std::time::Instant::now()
}

/// User and system CPU seconds of this process, from /proc/self/stat
/// (clock ticks; USER_HZ is 100 on Linux).
pub(crate) fn cpu_seconds() -> (f64, f64) {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return (0.0, 0.0);
    };
    // The command name may contain spaces; fields restart after the last ')'.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return (0.0, 0.0);
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')' the first field is state (field 3); utime is field 14, stime 15.
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 100.0
    };
    (tick(11), tick(12))
}
