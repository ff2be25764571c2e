//! Registrar counters, named as Kamailio names them where it has the name
//! (`accepted_regs`, `rejected_regs` of its `registrar` module).

use crate::nonce::NonceCounts;
use std::sync::atomic::{AtomicU64, Ordering};

/// Registrar counters (all in the `registrar:` statistics group), plus the
/// node's nonce-count table.
///
/// The table lives here because `Stats` is the one piece of per-node state
/// the registrar owns that callers build with `Default` (the [`crate::Registrar`]
/// is built field by field by the binary); it is private, so the counters
/// stay the only public face.
#[derive(Debug, Default)]
pub struct Stats {
    /// REGISTERs answered 2xx.
    pub accepted_regs: AtomicU64,
    /// REGISTERs answered with an error, except 401 challenges (which are
    /// part of every authenticated registration; see `auth_challenges`).
    pub rejected_regs: AtomicU64,
    /// 401 responses carrying fresh challenges.
    pub auth_challenges: AtomicU64,
    /// Credentials presented and refused (wrong, replayed, forged nonce,
    /// another user's AoR, malformed); a stale nonce is not counted.
    pub auth_failures: AtomicU64,
    /// Messages that did not parse or failed the request checks (answered
    /// 400 when possible, else dropped).
    pub bad_messages: AtomicU64,
    /// Messages that got no reply at all (unanswerable, responses, ACK).
    pub dropped: AtomicU64,
    /// Non-REGISTER requests looked up in the location table.
    pub lookups: AtomicU64,
    /// Lookups answered 302.
    pub redirects: AtomicU64,
    /// Lookups answered 404.
    pub not_found: AtomicU64,
    /// OPTIONS to the node answered 200 (health checks).
    pub options: AtomicU64,
    /// Requests answered 503 because the transport was overloaded (see
    /// [`crate::Load`]).
    pub overload_rejected: AtomicU64,
    /// Per-node nonce-count table (see [`crate::nonce`]).
    pub(crate) nonce_counts: NonceCounts,
}

impl Stats {
    /// Every counter as `(name, value)`, in a stable order, for
    /// `stats.get_statistics` and metrics.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        vec![
            ("accepted_regs", get(&self.accepted_regs)),
            ("rejected_regs", get(&self.rejected_regs)),
            ("auth_challenges", get(&self.auth_challenges)),
            ("auth_failures", get(&self.auth_failures)),
            ("bad_messages", get(&self.bad_messages)),
            ("dropped", get(&self.dropped)),
            ("lookups", get(&self.lookups)),
            ("redirects", get(&self.redirects)),
            ("not_found", get(&self.not_found)),
            ("options", get(&self.options)),
            ("overload_rejected", get(&self.overload_rejected)),
        ]
    }

    /// Nonces held in the nonce-count table.
    pub fn tracked_nonces(&self) -> usize {
        self.nonce_counts.len()
    }
}

/// Add one to a counter.
pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_lists_kamailio_names() {
        let s = Stats::default();
        bump(&s.accepted_regs);
        bump(&s.accepted_regs);
        bump(&s.not_found);
        let snap = s.snapshot();
        assert_eq!(snap[0], ("accepted_regs", 2));
        assert_eq!(snap[1], ("rejected_regs", 0));
        assert!(snap.contains(&("not_found", 1)));
        assert_eq!(s.tracked_nonces(), 0);
    }
}
