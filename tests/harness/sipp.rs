//! Running SIPp (Debian package `sip-tester`) against a node: always on
//! 127.0.0.1, always bounded in calls, rate and time.
//!
//! Each run gets its own directory for the injection file, the error log,
//! the statistics CSV and the final screen; the result carries SIPp's exit
//! status and the cumulative successful/failed call counts read from the
//! statistics file, and its error log so a failing assertion can show why.

use anyhow::{Context as _, bail};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

/// Largest call count a test may ask for.
const MAX_CALLS: usize = 20_000;
/// Largest call rate (calls/s) a test may ask for.
const MAX_RATE: u32 = 5_000;
/// SIPp's own global timeout.
const SIPP_TIMEOUT: Duration = Duration::from_secs(60);

/// The directory holding the scenarios.
pub fn scenario_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sipp")
}

/// The `sipp` executable; fails with the install hint when missing.
pub fn sipp_bin() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("sipp"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "sipp is not installed; run scripts/install-deps.sh \
                 (it installs Debian's `sip-tester`)"
            )
        })
}

/// One user line of the injection file.
#[derive(Debug, Clone)]
pub struct User {
    /// User part of the AoR.
    pub user: String,
    /// Domain of the AoR.
    pub domain: String,
    /// Digest password.
    pub password: String,
    /// `host:port` of a contact to remove (unregister.xml), or "".
    pub contact: String,
}

impl User {
    /// A user with a password and no contact.
    pub fn new(user: &str, domain: &str, password: &str) -> Self {
        Self {
            user: user.to_owned(),
            domain: domain.to_owned(),
            password: password.to_owned(),
            contact: String::new(),
        }
    }

    /// `user@domain`.
    pub fn aor(&self) -> String {
        format!("{}@{}", self.user, self.domain)
    }
}

/// `count` users `<prefix>00000..` at `domain`, password `pw-<user>`.
pub fn users(prefix: &str, domain: &str, count: usize) -> Vec<User> {
    (0..count)
        .map(|i| {
            let u = format!("{prefix}{i:05}");
            let pw = format!("pw-{u}");
            User::new(&u, domain, &pw)
        })
        .collect()
}

/// A SIPp run being configured.
#[derive(Debug, Clone)]
pub struct Sipp {
    scenario: String,
    target: SocketAddr,
    transport: &'static str,
    users: Vec<User>,
    calls: Option<usize>,
    rate: u32,
    limit: u32,
    retransmit: bool,
    keys: Vec<(String, String)>,
    auth_uri: Option<String>,
    recv_timeout: Duration,
    trace_messages: bool,
}

/// What a SIPp run did.
#[derive(Debug)]
pub struct SippRun {
    /// SIPp's exit status (0: every call succeeded; 1: some failed).
    pub status: ExitStatus,
    /// Calls that reached the end of the scenario.
    pub successful: u64,
    /// Calls that failed.
    pub failed: u64,
    /// The error log (`-trace_err`), "" when there was none.
    pub errors: String,
    /// The final statistics screen.
    pub screen: String,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Every message sent and received (`-trace_msg`), when asked for.
    pub messages: String,
}

impl SippRun {
    /// The AoRs (`user@domain` from To) of every REGISTER answered 200 in
    /// the message trace ([`Sipp::trace_messages`]): the registrations the
    /// node acknowledged.
    pub fn acknowledged_aors(&self) -> BTreeSet<String> {
        assert!(
            !self.messages.is_empty(),
            "no message trace; run with Sipp::trace_messages()"
        );
        let mut out = BTreeSet::new();
        for chunk in self
            .messages
            .split("\n-----------------------------------------------")
        {
            if !chunk.contains("message received") {
                continue;
            }
            let Some((_, msg)) = chunk.split_once("\n\n") else {
                continue;
            };
            if !msg.starts_with("SIP/2.0 200") {
                continue;
            }
            let header = |name: &str| {
                msg.lines().find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    n.trim()
                        .eq_ignore_ascii_case(name)
                        .then(|| v.trim().to_owned())
                })
            };
            if !header("CSeq").is_some_and(|c| c.ends_with("REGISTER")) {
                continue;
            }
            let to = header("To").or_else(|| header("t")).unwrap_or_default();
            if let Some(uri) = to.split_once("sip:").map(|(_, r)| r) {
                let aor = uri.split(['>', ';', ' ']).next().unwrap_or_default();
                out.insert(aor.to_owned());
            }
        }
        out
    }

    /// Fail the test unless all `expected` calls succeeded, showing why.
    pub fn assert_all_succeeded(&self, expected: usize) {
        assert!(
            self.status.success() && self.successful == expected as u64 && self.failed == 0,
            "SIPp: {} successful, {} failed of {expected}, exit {}\n--- errors (first 4 KiB):\n{}\n--- screen:\n{}",
            self.successful,
            self.failed,
            self.status,
            head(&self.errors, 4096),
            self.screen
        );
    }
}

fn head(s: &str, n: usize) -> &str {
    let mut end = s.len().min(n);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl Sipp {
    /// Run `scenario` (a file in tests/sipp/) against `target` over UDP,
    /// one call per user, 200 calls/s, 100 concurrent, no retransmissions,
    /// `expires` key 3600.
    pub fn new(scenario: &str, target: SocketAddr) -> Self {
        assert!(
            target.ip().is_loopback() && target.is_ipv4(),
            "SIPp runs only against 127.0.0.1, not {target}"
        );
        Self {
            scenario: scenario.to_owned(),
            target,
            transport: "u1",
            users: Vec::new(),
            calls: None,
            rate: 200,
            limit: 100,
            retransmit: false,
            keys: vec![("expires".into(), "3600".into())],
            auth_uri: None,
            recv_timeout: Duration::from_secs(5),
            trace_messages: false,
        }
    }

    /// How long a call waits for each expected message before it fails
    /// (`-recv_timeout`; 5 s by default: plenty on loopback).
    pub fn recv_timeout(mut self, t: Duration) -> Self {
        self.recv_timeout = t;
        self
    }

    /// Keep every message sent and received (`-trace_msg`), for
    /// [`SippRun::acknowledged_aors`].
    pub fn trace_messages(mut self) -> Self {
        self.trace_messages = true;
        self
    }

    /// The injection file's users (one call each unless [`Sipp::calls`]).
    pub fn users(mut self, users: &[User]) -> Self {
        self.users = users.to_vec();
        self
    }

    /// Number of calls (`-m`).
    pub fn calls(mut self, n: usize) -> Self {
        self.calls = Some(n);
        self
    }

    /// Calls per second (`-r`, `-rp 1000`).
    pub fn rate(mut self, r: u32) -> Self {
        self.rate = r;
        self
    }

    /// Concurrent calls (`-l`).
    pub fn limit(mut self, l: u32) -> Self {
        self.limit = l;
        self
    }

    /// One TCP connection for every call (`-t t1`).
    pub fn tcp(mut self) -> Self {
        self.transport = "t1";
        self
    }

    /// Allow UDP retransmissions (T1 = 500 ms); off by default (`-nr`) so a
    /// lost request shows up as a failed call instead of being papered over.
    pub fn retransmit(mut self) -> Self {
        self.retransmit = true;
        self
    }

    /// Set a scenario keyword (`-key name value`).
    pub fn key(mut self, name: &str, value: &str) -> Self {
        self.keys.retain(|(n, _)| n != name);
        self.keys.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The digest-uri SIPp uses (`-auth_uri`; SIPp's default is the remote
    /// address, not the Request-URI a phone would use).
    pub fn auth_uri(mut self, domain: &str) -> Self {
        self.auth_uri = Some(domain.to_owned());
        self
    }

    /// Run SIPp to completion.
    pub fn run(&self) -> SippRun {
        self.try_run()
            .unwrap_or_else(|e| panic!("running SIPp {}: {e:#}", self.scenario))
    }

    fn try_run(&self) -> anyhow::Result<SippRun> {
        let bin = sipp_bin();
        let calls = self.calls.unwrap_or(self.users.len());
        assert!(
            (1..=MAX_CALLS).contains(&calls),
            "SIPp calls must be 1..={MAX_CALLS}, not {calls}"
        );
        assert!(
            (1..=MAX_RATE).contains(&self.rate),
            "SIPp rate must be 1..={MAX_RATE}, not {}",
            self.rate
        );
        let scenario = scenario_dir().join(&self.scenario);
        assert!(scenario.is_file(), "no scenario {}", scenario.display());
        let dir = tempfile::Builder::new().prefix("regmesh-sipp-").tempdir()?;
        let inf = dir.path().join("users.csv");
        let mut csv = String::from("SEQUENTIAL\n");
        for u in &self.users {
            for f in [&u.user, &u.domain, &u.password, &u.contact] {
                assert!(
                    !f.contains([';', '[', ']', '\n', '\r']),
                    "injection field {f:?} would break SIPp's CSV"
                );
            }
            csv.push_str(&format!(
                "{};{};{};[authentication username={} password={}];{}\n",
                u.user, u.domain, u.password, u.user, u.password, u.contact
            ));
        }
        std::fs::write(&inf, csv)?;
        let errors = dir.path().join("errors.log");
        let stats = dir.path().join("stats.csv");
        let screen = dir.path().join("screen.log");
        let stderr_path = dir.path().join("stderr.log");
        let messages = dir.path().join("messages.log");
        let mut cmd = Command::new(&bin);
        cmd.current_dir(dir.path())
            .arg(self.target.to_string())
            .arg("-sf")
            .arg(&scenario)
            .args(["-i", "127.0.0.1", "-t", self.transport])
            .args(["-m", &calls.to_string()])
            .args(["-r", &self.rate.to_string(), "-rp", "1000"])
            .args(["-l", &self.limit.to_string()])
            .args([
                "-timeout",
                &SIPP_TIMEOUT.as_secs().to_string(),
                "-timeout_error",
            ])
            .args(["-nostdin", "-trace_err", "-error_file"])
            .arg(&errors)
            .args(["-trace_stat", "-stf"])
            .arg(&stats)
            .args(["-trace_screen", "-screen_file"])
            .arg(&screen)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path)?);
        if !self.users.is_empty() {
            cmd.arg("-inf").arg(&inf);
        }
        cmd.args(["-recv_timeout", &self.recv_timeout.as_millis().to_string()]);
        if self.trace_messages {
            cmd.arg("-trace_msg").arg("-message_file").arg(&messages);
        }
        if !self.retransmit {
            cmd.arg("-nr");
        }
        if let Some(a) = &self.auth_uri {
            cmd.args(["-auth_uri", a]);
        }
        for (k, v) in &self.keys {
            cmd.args(["-key", k, v]);
        }
        let start = crate::now();
        let mut child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        // SIPp stops itself at SIPP_TIMEOUT; this is the backstop.
        let backstop = SIPP_TIMEOUT + Duration::from_secs(15);
        let status = loop {
            if let Some(s) = child.try_wait()? {
                break s;
            }
            if start.elapsed() > backstop {
                let _ = child.kill();
                let _ = child.wait();
                bail!("SIPp still running after {backstop:?}; killed");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let elapsed = start.elapsed();
        let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        let errors = std::fs::read_to_string(&errors).unwrap_or_default();
        let screen = std::fs::read_to_string(&screen).unwrap_or_default();
        let stats_text = std::fs::read_to_string(&stats).with_context(|| {
            format!(
                "SIPp wrote no statistics (exit {status}); stderr:\n{stderr}\nerrors:\n{errors}"
            )
        })?;
        let (successful, failed) = parse_stats(&stats_text)
            .with_context(|| format!("reading SIPp statistics:\n{stats_text}"))?;
        let run = SippRun {
            status,
            successful,
            failed,
            errors: if stderr.trim().is_empty() {
                errors
            } else {
                format!("{errors}\n--- sipp stderr:\n{stderr}")
            },
            screen,
            elapsed,
            messages: std::fs::read_to_string(&messages).unwrap_or_default(),
        };
        eprintln!(
            "[e2e] sipp {} x{calls} @{}/s over {}: exit {}, {} ok, {} failed, {:.2?}",
            self.scenario,
            self.rate,
            self.transport,
            run.status,
            run.successful,
            run.failed,
            run.elapsed
        );
        Ok(run)
    }
}

/// Cumulative `SuccessfulCall(C)` and `FailedCall(C)` from the last row of a
/// SIPp statistics file (`;`-separated, header first).
fn parse_stats(text: &str) -> anyhow::Result<(u64, u64)> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines
        .next()
        .context("empty statistics")?
        .split(';')
        .collect();
    let last: Vec<&str> = lines
        .next_back()
        .context("no statistics rows")?
        .split(';')
        .collect();
    let col = |name: &str| -> anyhow::Result<u64> {
        let i = header
            .iter()
            .position(|h| *h == name)
            .with_context(|| format!("no column {name}"))?;
        last.get(i)
            .and_then(|v| v.trim().parse().ok())
            .with_context(|| format!("no value for {name}"))
    };
    Ok((col("SuccessfulCall(C)")?, col("FailedCall(C)")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_acknowledged_registrations_in_the_trace() {
        let sep = "----------------------------------------------- 2026-11-26 23:49:18.714450";
        let messages = format!(
            "{sep}\nUDP message sent (3 bytes):\n\nREGISTER sip:example.com SIP/2.0\r\nTo: <sip:a@x>\r\nCSeq: 1 REGISTER\r\n\r\n\n\
             {sep}\nUDP message received [3] bytes :\n\nSIP/2.0 200 OK\r\nTo: <sip:a@x>;tag=1\r\nCSeq: 1 REGISTER\r\n\r\n\n\
             {sep}\nUDP message received [3] bytes :\n\nSIP/2.0 500 Oops\r\nTo: <sip:b@x>;tag=1\r\nCSeq: 1 REGISTER\r\n\r\n\n"
        );
        let run = SippRun {
            status: std::os::unix::process::ExitStatusExt::from_raw(0),
            successful: 0,
            failed: 0,
            errors: String::new(),
            screen: String::new(),
            elapsed: Duration::ZERO,
            messages,
        };
        assert_eq!(run.acknowledged_aors(), BTreeSet::from(["a@x".to_owned()]));
    }

    #[test]
    fn reads_the_last_cumulative_row() {
        let text = "StartTime;SuccessfulCall(P);SuccessfulCall(C);FailedCall(P);FailedCall(C)\n\
                    t;0;0;0;0\n\
                    t;5;2000;0;3\n";
        assert_eq!(parse_stats(text).unwrap(), (2000, 3));
    }
}
