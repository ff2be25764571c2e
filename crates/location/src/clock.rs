//! The only place wall-clock time is read; also issues HLC stamps.
//!
//! - [`Timestamp`]: absolute wall-clock time in Unix milliseconds, with the
//!   small amount of arithmetic the store and the registrar need.
//! - [`Clock`]: an injected source of "now" ([`SystemClock`] in production,
//!   [`ManualClock`] in tests).
//! - [`HlcClock`]: issues hybrid-logical-clock stamps ([`Hlc`]) that never go
//!   backwards, even when the wall clock does, and that move past any stamp
//!   observed from a peer, so a later write always carries a larger version.

use crate::model::Hlc;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};

/// Milliseconds since the Unix epoch.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The Unix epoch.
    pub const ZERO: Self = Self(0);
    /// The far future (never reached).
    pub const MAX: Self = Self(u64::MAX);

    /// From whole seconds since the epoch (saturating).
    pub const fn from_secs(secs: u64) -> Self {
        Self(secs.saturating_mul(1000))
    }
    /// From milliseconds since the epoch.
    pub const fn from_millis(ms: u64) -> Self {
        Self(ms)
    }
    /// Whole seconds since the epoch (rounded down).
    pub const fn as_secs(self) -> u64 {
        self.0 / 1000
    }
    /// Milliseconds since the epoch.
    pub const fn as_millis(self) -> u64 {
        self.0
    }
    /// `self + secs` seconds, saturating at [`Timestamp::MAX`].
    pub const fn saturating_add_secs(self, secs: u64) -> Self {
        Self(self.0.saturating_add(secs.saturating_mul(1000)))
    }
    /// `self + ms` milliseconds, saturating at [`Timestamp::MAX`].
    pub const fn saturating_add_millis(self, ms: u64) -> Self {
        Self(self.0.saturating_add(ms))
    }
    /// `self - secs` seconds, saturating at the epoch.
    pub const fn saturating_sub_secs(self, secs: u64) -> Self {
        Self(self.0.saturating_sub(secs.saturating_mul(1000)))
    }
    /// Milliseconds from `earlier` to `self`, 0 when `earlier` is later.
    pub const fn saturating_millis_since(self, earlier: Self) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
    /// Whole seconds left from `now` until `self`, rounded up, 0 once passed.
    /// This is what a 200 OK reports as a contact's `expires` (RFC 3261
    /// §10.3 step 8): rounding up never tells a UA its binding is gone while
    /// it still exists.
    pub const fn secs_remaining(self, now: Self) -> u64 {
        self.0.saturating_sub(now.0).div_ceil(1000)
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:03}", self.0 / 1000, self.0 % 1000)
    }
}

/// A source of wall-clock time (injected so tests can control it).
pub trait Clock: Send + Sync + 'static {
    /// Now.
    fn now(&self) -> Timestamp;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    // The one sanctioned read of the wall clock in the whole workspace
    // (clippy.toml bans `SystemTime::now` everywhere else): everything else
    // gets time from an injected `Clock`, so tests can control it.
    #[allow(clippy::disallowed_methods)]
    fn now(&self) -> Timestamp {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
    }
}

/// A timestamp broken down into UTC calendar fields (proleptic Gregorian),
/// for the textual dates of SIP (`Date`, RFC 3261 §20.17) and of the RPC
/// (`core.uptime`). Sub-seconds are dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcTime {
    /// Year.
    pub year: u64,
    /// Month, 1..=12.
    pub month: u64,
    /// Day of the month, 1..=31.
    pub day: u64,
    /// Hour, 0..=23.
    pub hour: u64,
    /// Minute, 0..=59.
    pub minute: u64,
    /// Second, 0..=59.
    pub second: u64,
    /// Days since 1970-01-01 (a Thursday), for the weekday.
    days: u64,
}

impl UtcTime {
    /// `Mon` .. `Sun`.
    pub fn weekday_name(&self) -> &'static str {
        // 1970-01-01 was a Thursday.
        const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
        DAYS[(self.days % 7) as usize]
    }

    /// `Jan` .. `Dec`.
    pub fn month_name(&self) -> &'static str {
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        MONTHS[((self.month + 11) % 12) as usize]
    }
}

impl Timestamp {
    /// The UTC calendar fields of this instant.
    pub fn utc(self) -> UtcTime {
        let secs = self.0 / 1000;
        let days = secs / 86_400;
        let rem = secs % 86_400;
        // Era arithmetic: 400-year eras of 146 097 days, years starting in
        // March so the leap day comes last.
        let z = days + 719_468;
        let era = z / 146_097;
        let doe = z % 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + u64::from(month <= 2);
        UtcTime {
            year,
            month,
            day,
            hour: rem / 3600,
            minute: rem % 3600 / 60,
            second: rem % 60,
            days,
        }
    }
}

/// Measures how long something took, on the monotonic clock. Lives here
/// because this module is the one place allowed to read clocks; used for
/// the commit (fsync) latency metric and commit pacing, never for expiry or
/// ordering.
#[derive(Debug, Clone, Copy)]
pub struct Stopwatch(std::time::Instant);

impl Stopwatch {
    /// Start measuring.
    #[allow(clippy::disallowed_methods)]
    pub fn start() -> Self {
        Self(std::time::Instant::now())
    }

    /// Time since [`Stopwatch::start`].
    pub fn elapsed(&self) -> std::time::Duration {
        self.0.elapsed()
    }

    /// Microseconds since [`Stopwatch::start`].
    pub fn elapsed_micros(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_micros()).unwrap_or(u64::MAX)
    }
}

/// A clock that only moves when told to, for tests (shared through an `Arc`).
#[derive(Debug, Default)]
pub struct ManualClock {
    now: AtomicU64,
}

impl ManualClock {
    /// A clock showing `start`.
    pub fn new(start: Timestamp) -> Self {
        Self {
            now: AtomicU64::new(start.0),
        }
    }
    /// Set the time (it may go backwards: wall clocks do).
    pub fn set(&self, t: Timestamp) {
        self.now.store(t.0, Ordering::SeqCst);
    }
    /// Move forward by `ms` milliseconds.
    pub fn advance_millis(&self, ms: u64) {
        self.now.fetch_add(ms, Ordering::SeqCst);
    }
    /// Move forward by `secs` seconds.
    pub fn advance_secs(&self, secs: u64) {
        self.advance_millis(secs.saturating_mul(1000));
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.now.load(Ordering::SeqCst))
    }
}

/// Issues hybrid-logical-clock stamps for one node.
///
/// A stamp is `max(wall_ms << 16, last + 1)`: it follows the wall clock when
/// the wall clock moves forward, and otherwise counts up in the low 16 bits,
/// so stamps are strictly increasing even if the wall clock steps back or
/// many stamps are issued in one millisecond. [`observe`](Self::observe)
/// makes every later stamp exceed a stamp seen from a peer (or loaded from
/// disk), which is what lets "last writer wins" mean causally last.
#[derive(Debug, Default)]
pub struct HlcClock {
    last: AtomicU64,
}

impl HlcClock {
    /// A generator that has issued nothing yet.
    pub fn new() -> Self {
        Self::default()
    }
    /// Issue a stamp for a write happening at wall time `now`.
    pub fn stamp(&self, now: Timestamp) -> Hlc {
        let wall = now.0.saturating_mul(1 << 16);
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            let next = wall.max(last.saturating_add(1));
            match self
                .last
                .compare_exchange_weak(last, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return Hlc(next),
                Err(seen) => last = seen,
            }
        }
    }
    /// Take note of a stamp issued elsewhere: later stamps will be larger.
    pub fn observe(&self, remote: Hlc) {
        self.last.fetch_max(remote.0, Ordering::AcqRel);
    }
    /// The largest stamp issued or observed so far.
    pub fn last(&self) -> Hlc {
        Hlc(self.last.load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_arithmetic() {
        let t = Timestamp::from_secs(100);
        assert_eq!(t.as_millis(), 100_000);
        assert_eq!(t.saturating_add_secs(5).as_secs(), 105);
        assert_eq!(t.saturating_sub_secs(500), Timestamp::ZERO);
        assert_eq!(Timestamp::MAX.saturating_add_secs(1), Timestamp::MAX);
        assert_eq!(Timestamp::from_secs(u64::MAX), Timestamp::MAX);
        assert_eq!(Timestamp(1500).secs_remaining(Timestamp(1000)), 1);
        assert_eq!(Timestamp(2001).secs_remaining(Timestamp(1000)), 2);
        assert_eq!(Timestamp(1000).secs_remaining(Timestamp(2000)), 0);
        assert_eq!(
            Timestamp(3000).saturating_millis_since(Timestamp(1000)),
            2000
        );
        assert_eq!(Timestamp(1234).to_string(), "1.234");
    }

    #[test]
    fn system_clock_is_after_2020() {
        assert!(SystemClock.now() > Timestamp::from_secs(1_577_836_800));
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(Timestamp::from_secs(10));
        assert_eq!(c.now(), Timestamp::from_secs(10));
        c.advance_secs(2);
        c.advance_millis(5);
        assert_eq!(c.now(), Timestamp(12_005));
        c.set(Timestamp(1));
        assert_eq!(c.now(), Timestamp(1));
    }

    #[test]
    fn hlc_follows_wall_clock_and_never_goes_back() {
        let h = HlcClock::new();
        let a = h.stamp(Timestamp(1000));
        assert_eq!(a, Hlc(1000 << 16));
        // Same millisecond: the logical counter moves.
        let b = h.stamp(Timestamp(1000));
        assert_eq!(b, Hlc((1000 << 16) + 1));
        // Wall clock stepped back: still increasing.
        let c = h.stamp(Timestamp(500));
        assert!(c > b);
        // Wall clock forward: jumps to it.
        let d = h.stamp(Timestamp(2000));
        assert_eq!(d, Hlc(2000 << 16));
    }

    #[test]
    fn hlc_observe_moves_past_remote() {
        let h = HlcClock::new();
        let remote = Hlc((5000 << 16) + 7);
        h.observe(remote);
        let s = h.stamp(Timestamp(1000));
        assert!(s > remote);
        // Observing an older stamp changes nothing.
        h.observe(Hlc(1));
        assert!(h.stamp(Timestamp(1000)) > s);
        assert_eq!(h.last().wall_millis(), 5000);
    }

    #[test]
    fn hlc_is_monotonic_across_threads() {
        let h = std::sync::Arc::new(HlcClock::new());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let h = h.clone();
                std::thread::spawn(move || {
                    (0..1000).map(|_| h.stamp(Timestamp(7))).collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<Hlc> = handles
            .into_iter()
            .flat_map(|j| j.join().expect("thread"))
            .collect();
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n, "every stamp is unique");
    }
}
