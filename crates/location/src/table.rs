//! The in-memory table: the authoritative copy of every entry, sharded by AoR.
//!
//! Each of [`SHARDS`] shards is a `parking_lot::Mutex` over a map from AoR to
//! its [`Slots`] (live bindings and tombstones of that AoR, encoded). A synchronous
//! mutex rather than an async one, as in mini-redis `db.rs`: critical
//! sections are short (a hash lookup and a few small vectors), never contain
//! an `.await`, and an async mutex would cost more than it saves; sharding
//! keeps unrelated AoRs from contending. The only potentially long wait
//! inside a shard lock is handing a batch to the group-commit writer when
//! its queue is full (see `persist`), which is the intended back-pressure.
//!
//! Each shard also keeps an expiry index: the set of `(deadline, aor)` where
//! `deadline` is the earliest time any entry of that AoR may leave the table
//! (a binding's `expires`, a tombstone's `until`). The sweep pops due AoRs
//! from the front of the index, so its cost is the number of AoRs due plus
//! one check per shard, not the size of the table.
//!
//! Counts for stats are kept in atomics, adjusted on every mutation.
//!
//! Memory: each entry is kept encoded, as one allocation (`packed`: the
//! bytes the change log holds, ~250 bytes for a typical phone, against
//! ~800 for a decoded `Binding` with its strings), an AoR's name is one
//! `Arc<str>` shared by the map and the expiry index, and an AoR with one
//! contact (the common case) holds its entry inline rather than in a `Vec`.
//! The AoR is in the key and in the entry's bytes: dropping the second copy
//! would need a second encoding for the log, for ~24 bytes a binding.

use crate::clock::Timestamp;
#[cfg(test)]
use crate::codec::Row;
use crate::model::Binding;
use crate::packed::Packed;
use parking_lot::{Mutex, MutexGuard};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Number of shards (a power of two).
pub(crate) const SHARDS: usize = 64;

type Hasher = ahash::RandomState;

/// Fixed seeds: shard placement is deterministic (useful for reproducing
/// contention), and AoRs are not attacker-chosen enough for HashDoS to matter
/// at 64 buckets; the per-shard maps use random seeds.
fn shard_hasher() -> Hasher {
    Hasher::with_seeds(0x5eed_0001, 0x5eed_0002, 0x5eed_0003, 0x5eed_0004)
}

/// The entries of one AoR, in first-insertion order. Most AoRs hold one
/// contact, so a single entry is kept inline: a `Vec` would cost a second
/// allocation per AoR. (`Vec`'s niche keeps this at 24 bytes.)
#[derive(Debug)]
pub(crate) enum Slots {
    One(Packed),
    Many(Vec<Packed>),
}

impl Slots {
    pub(crate) fn as_slice(&self) -> &[Packed] {
        match self {
            Self::One(p) => std::slice::from_ref(p),
            Self::Many(v) => v,
        }
    }
    fn as_mut_slice(&mut self) -> &mut [Packed] {
        match self {
            Self::One(p) => std::slice::from_mut(p),
            Self::Many(v) => v,
        }
    }
    fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }
    /// The `Vec` form (for the rare edits that change the count).
    fn many(&mut self) -> &mut Vec<Packed> {
        if let Self::One(_) = self {
            let Self::One(p) = std::mem::replace(self, Self::Many(Vec::new())) else {
                unreachable!("matched One just above");
            };
            *self = Self::Many(vec![p]);
        }
        match self {
            Self::Many(v) => v,
            Self::One(_) => unreachable!("converted to Many just above"),
        }
    }
    /// Back to the inline form when one entry is left.
    fn settle(&mut self) {
        if let Self::Many(v) = self
            && v.len() == 1
            && let Some(p) = v.pop()
        {
            *self = Self::One(p);
        } else if let Self::Many(v) = self {
            v.shrink_to_fit();
        }
    }
    /// Store `entry`, replacing the entry of the same contact.
    fn put(&mut self, entry: Packed) {
        let same = self.as_slice().iter().position(|p| p.same_contact(&entry));
        match same {
            Some(i) => self.as_mut_slice()[i] = entry,
            None if self.is_empty() => *self = Self::One(entry),
            None => self.many().push(entry),
        }
    }
    fn retain(&mut self, keep: impl FnMut(&Packed) -> bool) {
        self.many().retain(keep);
        self.settle();
    }
    /// Earliest deadline (`Timestamp::MAX` when empty).
    fn deadline(&self) -> Timestamp {
        self.as_slice()
            .iter()
            .map(Packed::deadline)
            .min()
            .unwrap_or(Timestamp::MAX)
    }
    fn tally(&self) -> Tally {
        let all = self.as_slice();
        let live = all.iter().filter(|p| !p.is_tombstone()).count() as u64;
        Tally {
            live,
            tombstones: all.len() as u64 - live,
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tally {
    live: u64,
    tombstones: u64,
}

/// Table-wide counts.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    pub(crate) aors: AtomicU64,
    pub(crate) bindings: AtomicU64,
    pub(crate) tombstones: AtomicU64,
}

impl Counts {
    fn adjust(&self, before: Tally, after: Tally) {
        fn delta(c: &AtomicU64, before: u64, after: u64) {
            if after > before {
                c.fetch_add(after - before, Ordering::Relaxed);
            } else if before > after {
                c.fetch_sub(before - after, Ordering::Relaxed);
            }
        }
        delta(&self.bindings, before.live, after.live);
        delta(&self.tombstones, before.tombstones, after.tombstones);
        delta(
            &self.aors,
            u64::from(before.live > 0),
            u64::from(after.live > 0),
        );
    }
}

/// One shard: AoR records and their expiry index.
#[derive(Debug, Default)]
pub(crate) struct Shard {
    aors: HashMap<Arc<str>, Slots, Hasher>,
    /// `(earliest deadline of the AoR's entries, AoR)` for every AoR held.
    deadlines: BTreeSet<(Timestamp, Arc<str>)>,
}

impl Shard {
    /// Live (not yet expired at `now`) bindings of `aor`, decoded.
    pub(crate) fn live(&self, aor: &str, now: Timestamp) -> Vec<Binding> {
        self.aors
            .get(aor)
            .map(|r| {
                r.as_slice()
                    .iter()
                    .filter(|p| p.live_expires().is_some_and(|e| e > now))
                    .filter_map(Packed::binding)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// What the table holds for (`aor`, `contact`).
    pub(crate) fn get(&self, aor: &str, contact: &str) -> Option<&Packed> {
        self.aors
            .get(aor)?
            .as_slice()
            .iter()
            .find(|p| p.has_contact(contact))
    }

    /// Store `entry` under `aor` (its contact is the rest of the key).
    pub(crate) fn put(&mut self, aor: &str, entry: Packed, counts: &Counts) {
        let (before, old_deadline) = self.state_of(aor);
        match self.aors.get_mut(aor) {
            Some(slots) => slots.put(entry),
            // The key is allocated only when the AoR is new.
            None => {
                self.aors.insert(Arc::from(aor), Slots::One(entry));
            }
        }
        self.settle(aor, old_deadline, before, counts);
    }

    /// Delete the key (`aor`, `contact`).
    #[cfg(test)]
    pub(crate) fn delete(&mut self, aor: &str, contact: &str, counts: &Counts) {
        let (before, old_deadline) = self.state_of(aor);
        if let Some(slots) = self.aors.get_mut(aor) {
            slots.retain(|p| !p.has_contact(contact));
        }
        self.settle(aor, old_deadline, before, counts);
    }

    /// Tally and indexed deadline of `aor` as it is now.
    fn state_of(&self, aor: &str) -> (Tally, Option<Timestamp>) {
        match self.aors.get(aor) {
            Some(r) if !r.is_empty() => (r.tally(), Some(r.deadline())),
            Some(r) => (r.tally(), None),
            None => (Tally::default(), None),
        }
    }

    /// After a mutation of `aor`: fix the expiry index and the counts, and
    /// drop the record if it is empty.
    fn settle(
        &mut self,
        aor: &str,
        old_deadline: Option<Timestamp>,
        before: Tally,
        counts: &Counts,
    ) {
        let (after, new_deadline, key) = match self.aors.get_key_value(aor) {
            Some((key, rec)) if !rec.is_empty() => {
                (rec.tally(), Some(rec.deadline()), Some(key.clone()))
            }
            Some(_) => {
                let key = self.aors.remove_entry(aor).map(|(k, _)| k);
                (Tally::default(), None, key)
            }
            None => (Tally::default(), None, None),
        };
        if old_deadline != new_deadline
            && let Some(key) = key
        {
            if let Some(old) = old_deadline {
                self.deadlines.remove(&(old, key.clone()));
            }
            if let Some(new) = new_deadline {
                self.deadlines.insert((new, key));
            }
        }
        counts.adjust(before, after);
    }

    /// True when some entry of this shard has a deadline at or before `now`.
    pub(crate) fn has_due(&self, now: Timestamp) -> bool {
        self.deadlines.first().is_some_and(|(t, _)| *t <= now)
    }

    /// Remove every entry whose deadline is at or before `now`, handing each
    /// to `removed(aor, entry)`.
    pub(crate) fn expire(
        &mut self,
        now: Timestamp,
        counts: &Counts,
        mut removed: impl FnMut(&str, Packed),
    ) {
        while self.has_due(now) {
            let Some((_, aor)) = self.deadlines.pop_first() else {
                break;
            };
            let before = self.aors.get(&aor).map(Slots::tally).unwrap_or_default();
            if let Some(rec) = self.aors.get_mut(&aor) {
                let entries = std::mem::take(rec.many());
                for p in entries {
                    if p.deadline() <= now {
                        removed(&aor, p);
                    } else {
                        rec.many().push(p);
                    }
                }
                rec.settle();
            }
            // The index entry was popped above: settle from "not indexed".
            self.settle(&aor, None, before, counts);
        }
    }

    /// Every AoR with its entries (for dumps and snapshots).
    pub(crate) fn records(&self) -> impl Iterator<Item = (&str, &[Packed])> {
        self.aors.iter().map(|(a, r)| (&**a, r.as_slice()))
    }
}

/// The sharded table.
#[derive(Debug)]
pub(crate) struct Table {
    shards: Box<[Mutex<Shard>]>,
    hasher: Hasher,
    counts: Counts,
}

impl Table {
    /// An empty table.
    pub(crate) fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            hasher: shard_hasher(),
            counts: Counts::default(),
        }
    }

    /// A table holding `rows` (tests; startup uses [`TableBuilder`]).
    #[cfg(test)]
    pub(crate) fn from_rows(rows: Vec<Row>) -> Self {
        let mut b = TableBuilder::new();
        for (aor, contact, entry) in rows {
            let bytes = crate::codec::encode_entry(&aor, &contact, &entry);
            b.insert(&aor, Packed::from_encoded(bytes));
        }
        b.finish()
    }

    fn shard_index(&self, aor: &str) -> usize {
        // SHARDS is a power of two; the low bits of the hash pick the shard.
        (self.hasher.hash_one(aor) as usize) & (SHARDS - 1)
    }

    /// Lock the shard holding `aor`.
    pub(crate) fn lock(&self, aor: &str) -> MutexGuard<'_, Shard> {
        self.shards[self.shard_index(aor)].lock()
    }

    /// Every shard, for whole-table walks (one lock at a time).
    pub(crate) fn shards(&self) -> &[Mutex<Shard>] {
        &self.shards
    }

    pub(crate) fn counts(&self) -> &Counts {
        &self.counts
    }
}

/// Builds the table at startup, one row at a time as rows are read from
/// disk, without locking and without keeping the rows in between.
#[derive(Debug)]
pub(crate) struct TableBuilder {
    table: Table,
}

impl TableBuilder {
    pub(crate) fn new() -> Self {
        Self {
            table: Table::new(),
        }
    }

    /// Add one entry. Keys are unique on disk; a repeated key replaces.
    pub(crate) fn insert(&mut self, aor: &str, entry: Packed) {
        let i = self.table.shard_index(aor);
        let shard = self.table.shards[i].get_mut();
        match shard.aors.get_mut(aor) {
            Some(slots) => slots.put(entry),
            None => {
                shard.aors.insert(Arc::from(aor), Slots::One(entry));
            }
        }
    }

    /// Remove one key (a deletion replayed from the log).
    pub(crate) fn remove(&mut self, aor: &str, contact: &str) {
        let i = self.table.shard_index(aor);
        let shard = self.table.shards[i].get_mut();
        if let Some(slots) = shard.aors.get_mut(aor) {
            slots.retain(|p| !p.has_contact(contact));
            if slots.is_empty() {
                shard.aors.remove(aor);
            }
        }
    }

    /// Index deadlines, count, and hand over the table.
    #[cfg(test)]
    pub(crate) fn finish(self) -> Table {
        self.finish_at(Timestamp(0)).0
    }

    /// Drop entries whose deadline is at or before `now` (they would only
    /// be swept at once), index deadlines, count, and hand over the table
    /// with the number of entries dropped.
    pub(crate) fn finish_at(mut self, now: Timestamp) -> (Table, u64) {
        let mut total = Tally::default();
        let mut aors = 0;
        let mut dropped = 0u64;
        for shard in self.table.shards.iter_mut() {
            let shard = shard.get_mut();
            shard.aors.retain(|_, rec| {
                let before = rec.as_slice().len();
                if rec.as_slice().iter().any(|p| p.deadline() <= now) {
                    rec.retain(|p| p.deadline() > now);
                }
                dropped += (before - rec.as_slice().len()) as u64;
                !rec.is_empty()
            });
            // Built in one go: collecting sorts once and fills the tree's
            // nodes in order, where a million single inserts each walk it.
            shard.deadlines = shard
                .aors
                .iter()
                .map(|(key, rec)| (rec.deadline(), key.clone()))
                .collect();
            for rec in shard.aors.values() {
                let t = rec.tally();
                total.live += t.live;
                total.tombstones += t.tombstones;
                aors += u64::from(t.live > 0);
            }
        }
        let c = &self.table.counts;
        c.bindings.store(total.live, Ordering::Relaxed);
        c.tombstones.store(total.tombstones, Ordering::Relaxed);
        c.aors.store(aors, Ordering::Relaxed);
        (self.table, dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::encode_entry;
    use crate::model::{Entry, Hlc, NodeId, Version};
    use crate::testutil::binding;

    fn live(aor: &str, contact: &str, expires: u64) -> Packed {
        let e = Entry::Live(binding(aor, contact, Timestamp(expires)));
        Packed::from_encoded(encode_entry(aor, contact, &e))
    }

    fn tomb(aor: &str, contact: &str, until: u64) -> Packed {
        let e = Entry::Tombstone {
            version: Version {
                hlc: Hlc(1),
                node: NodeId(1),
            },
            until: Timestamp(until),
        };
        Packed::from_encoded(encode_entry(aor, contact, &e))
    }

    fn counts(t: &Table) -> (u64, u64, u64) {
        let c = t.counts();
        (
            c.aors.load(Ordering::Relaxed),
            c.bindings.load(Ordering::Relaxed),
            c.tombstones.load(Ordering::Relaxed),
        )
    }

    #[test]
    fn put_get_live_and_counts() {
        let t = Table::new();
        {
            let mut s = t.lock("a@x");
            s.put("a@x", live("a@x", "sip:1", 100), t.counts());
            s.put("a@x", live("a@x", "sip:2", 50), t.counts());
        }
        assert_eq!(counts(&t), (1, 2, 0));
        let s = t.lock("a@x");
        assert_eq!(s.live("a@x", Timestamp(10)).len(), 2);
        // Past one binding's expiry, lookup no longer shows it.
        let at60: Vec<_> = s
            .live("a@x", Timestamp(60))
            .into_iter()
            .map(|b| b.contact)
            .collect();
        assert_eq!(at60, vec!["sip:1".to_owned()]);
        assert!(s.get("a@x", "sip:2").is_some());
        assert!(s.get("a@x", "sip:3").is_none());
        assert!(s.live("b@x", Timestamp(0)).is_empty());
    }

    #[test]
    fn tombstone_replaces_binding_and_counts_follow() {
        let t = Table::new();
        let mut s = t.lock("a@x");
        s.put("a@x", live("a@x", "sip:1", 100), t.counts());
        s.put("a@x", tomb("a@x", "sip:1", 100), t.counts());
        drop(s);
        assert_eq!(counts(&t), (0, 0, 1));
        let mut s = t.lock("a@x");
        s.delete("a@x", "sip:1", t.counts());
        assert!(s.aors.is_empty());
        assert!(s.deadlines.is_empty());
        drop(s);
        assert_eq!(counts(&t), (0, 0, 0));
    }

    #[test]
    fn index_tracks_earliest_deadline() {
        let t = Table::new();
        let mut s = t.lock("a@x");
        s.put("a@x", live("a@x", "sip:1", 100), t.counts());
        assert_eq!(s.deadlines.first().map(|d| d.0), Some(Timestamp(100)));
        s.put("a@x", live("a@x", "sip:2", 40), t.counts());
        assert_eq!(s.deadlines.len(), 1);
        assert_eq!(s.deadlines.first().map(|d| d.0), Some(Timestamp(40)));
        // Refreshing the early one moves the deadline to the other.
        s.put("a@x", live("a@x", "sip:2", 300), t.counts());
        assert_eq!(s.deadlines.len(), 1);
        assert_eq!(s.deadlines.first().map(|d| d.0), Some(Timestamp(100)));
    }

    #[test]
    fn expire_removes_only_what_is_due() {
        let t = Table::new();
        let mut s = t.lock("a@x");
        s.put("a@x", live("a@x", "sip:1", 100), t.counts());
        s.put("a@x", live("a@x", "sip:2", 40), t.counts());
        s.put("a@x", tomb("a@x", "sip:3", 30), t.counts());
        assert!(!s.has_due(Timestamp(29)));
        assert!(s.has_due(Timestamp(40)));
        let mut gone = Vec::new();
        s.expire(Timestamp(40), t.counts(), |aor, entry| {
            gone.push((aor.to_owned(), entry.contact().to_owned()))
        });
        gone.sort();
        assert_eq!(
            gone,
            vec![
                ("a@x".to_owned(), "sip:2".to_owned()),
                ("a@x".to_owned(), "sip:3".to_owned())
            ]
        );
        assert!(!s.has_due(Timestamp(99)));
        assert_eq!(s.deadlines.first().map(|d| d.0), Some(Timestamp(100)));
        drop(s);
        assert_eq!(counts(&t), (1, 1, 0));
        let mut s = t.lock("a@x");
        s.expire(Timestamp(1000), t.counts(), |_, _| {});
        assert!(s.aors.is_empty() && s.deadlines.is_empty());
        drop(s);
        assert_eq!(counts(&t), (0, 0, 0));
    }

    #[test]
    fn from_rows_spreads_over_shards() {
        let rows: Vec<Row> = (0..1000)
            .map(|i| {
                let aor = format!("u{i}@x");
                let e = Entry::Live(binding(&aor, "sip:c", Timestamp(10)));
                (aor.clone(), "sip:c".to_owned(), e)
            })
            .collect();
        let t = Table::from_rows(rows);
        assert_eq!(counts(&t), (1000, 1000, 0));
        let used = t
            .shards()
            .iter()
            .filter(|s| !s.lock().aors.is_empty())
            .count();
        assert_eq!(used, SHARDS);
    }
}
