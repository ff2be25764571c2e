//! The merge rule: one function decides what any change does to the table,
//! for local writes, replicated writes and snapshot sync alike.
//!
//! The table is a last-writer-wins map with tombstones. For one key
//! (`aor`, `contact`) the entry with the greatest [`Version`] wins, where a
//! version orders on its HLC stamp and then on the origin node id, so two
//! nodes can never disagree about which of two writes is last (Kamailio
//! compares whole-second `last_modified` times and can end up with two nodes
//! each keeping the other's binding). A removal wins the same way and leaves
//! a tombstone. Taking the maximum of a total order is idempotent,
//! commutative and associative, so any delivery order and any number of
//! duplicates give the same table on every node.
//!
//! Two different changes never share a version: a node stamps each of its
//! writes with a fresh, strictly increasing HLC, and carries its clock past
//! every stamp it loads or receives. Should that promise ever be broken, the
//! tie still breaks deterministically on content (a tombstone beats a
//! binding, then the larger `until`, then a field-by-field comparison of the
//! bindings), so the rule stays a total order.
//!
//! Forgetting (tombstones past `until`, bindings past `expires`) is a local
//! decision outside this function: see `Location::expire`. It is safe as
//! long as no write older than the forgotten entry, carrying a later expiry,
//! is still in flight: a tombstone lives until the binding it removed would
//! have expired (DESIGN.md), which covers duplicates and reorderings of that
//! binding's writes. An older refresh with a *longer* expiry that is
//! delivered only after the newer entry was forgotten would come back until
//! its own expiry; replication delivers far sooner than registrations
//! expire, so this is accepted rather than keeping tombstones longer.
//!
//! [`Version`]: crate::model::Version

use crate::model::{Binding, Change, Entry};
use crate::packed::Packed;
use std::cmp::Ordering;

/// What [`merge`] did with a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MergeDecision {
    /// The change won: the table now holds what it says.
    Applied,
    /// The table already holds a newer write for the key; the change is dropped.
    Stale,
    /// The table already holds exactly this change.
    Duplicate,
}

/// Merge `change` into `current` (what the table holds for the change's key).
///
/// Returns the decision and, when it is [`MergeDecision::Applied`], the new
/// entry to store; `None` means `current` stays as it is.
pub fn merge(current: Option<&Entry>, change: &Change) -> (MergeDecision, Option<Entry>) {
    let Some(current) = current else {
        return (MergeDecision::Applied, Some(Entry::from_change(change)));
    };
    match change.version.cmp(&current.version()) {
        Ordering::Greater => (MergeDecision::Applied, Some(Entry::from_change(change))),
        Ordering::Less => (MergeDecision::Stale, None),
        Ordering::Equal => {
            let new = Entry::from_change(change);
            match tie_break(&new, current) {
                Ordering::Equal => (MergeDecision::Duplicate, None),
                Ordering::Greater => (MergeDecision::Applied, Some(new)),
                Ordering::Less => (MergeDecision::Stale, None),
            }
        }
    }
}

/// A total order on entries of equal version (see the module doc).
fn tie_break(a: &Entry, b: &Entry) -> Ordering {
    match (a, b) {
        (Entry::Tombstone { until: ua, .. }, Entry::Tombstone { until: ub, .. }) => ua.cmp(ub),
        (Entry::Tombstone { .. }, Entry::Live(_)) => Ordering::Greater,
        (Entry::Live(_), Entry::Tombstone { .. }) => Ordering::Less,
        (Entry::Live(x), Entry::Live(y)) => cmp_binding(x, y),
    }
}

fn cmp_binding(x: &Binding, y: &Binding) -> Ordering {
    type Key<'a> = (
        (
            &'a str,
            &'a str,
            crate::clock::Timestamp,
            Option<u16>,
            &'a str,
            u32,
        ),
        (
            u32,
            u32,
            &'a Option<String>,
            &'a Option<String>,
            &'a Option<String>,
            &'a [String],
        ),
        (
            &'a Option<String>,
            Option<u32>,
            Option<u32>,
            &'a str,
            crate::clock::Timestamp,
        ),
        (crate::model::NodeId, crate::model::Version),
    );
    fn key(b: &Binding) -> Key<'_> {
        (
            (&b.aor, &b.contact, b.expires, b.q, &b.call_id, b.cseq),
            (
                b.flags,
                b.cflags,
                &b.user_agent,
                &b.received,
                &b.socket,
                &b.path,
            ),
            (&b.instance, b.reg_id, b.methods, &b.ruid, b.last_modified),
            (b.origin, b.version),
        )
    }
    key(x).cmp(&key(y))
}

/// What [`merge`] decides for `change` against an entry as the table holds
/// it. The versions decide almost always; the held entry is decoded only
/// for a tie, which [`merge`] breaks on content.
pub(crate) fn decide(current: Option<&Packed>, change: &Change) -> MergeDecision {
    let Some(current) = current else {
        return MergeDecision::Applied;
    };
    match change.version.cmp(&current.version()) {
        Ordering::Greater => MergeDecision::Applied,
        Ordering::Less => MergeDecision::Stale,
        Ordering::Equal => merge(Some(&current.entry()), change).0,
    }
}

#[cfg(test)]
mod tests;
