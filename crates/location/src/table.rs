//! The in-memory table: the authoritative copy of every entry, sharded by AoR.
//!
//! Each of [`SHARDS`] shards is a `parking_lot::Mutex` over a hash table of
//! [`Slots`] (live bindings and tombstones of one AoR, encoded). A synchronous
//! mutex rather than an async one, as in mini-redis `db.rs`: critical
//! sections are short (a hash lookup and a few small vectors), never contain
//! an `.await`, and an async mutex would cost more than it saves; sharding
//! keeps unrelated AoRs from contending. The only potentially long wait
//! inside a shard lock is handing a batch to the group-commit writer when
//! its queue is full (see `persist`), which is the intended back-pressure.
//!
//! Memory: each entry is kept encoded, as one allocation (`packed`: the
//! bytes the change log holds, ~250 bytes for a typical phone, against
//! ~800 for a decoded `Binding` with its strings), and an AoR with one
//! contact (the common case) holds its entry inline rather than in a `Vec`.
//! The AoR's name is stored once, inside those bytes: the shard's table has
//! no key, it files [`Slots`] under the hash of the AoR its first entry
//! holds and compares names in place on lookup, and the expiry index holds
//! that hash, not the name. A separate key (`Arc<str>` shared by map and
//! index) cost ~80 bytes a binding at a million (the string's allocation
//! with refcounts and rounding, a wider bucket, a wider index entry), a
//! sixth of the total. So a stored `Slots` is never empty: an AoR with no
//! entries left is removed.
//!
//! Each shard also keeps an expiry index: for every AoR held, one count
//! under `(deadline, hash of the AoR)`, where `deadline` is the earliest
//! time any entry of that AoR may leave the table (a binding's `expires`, a
//! tombstone's `until`). The sweep takes due keys from the front of the
//! index, so its cost is the number of AoRs due plus one check per shard,
//! not the size of the table. A hash names a set of AoRs, not one: two AoRs
//! of a shard may share a hash and even a deadline, so the index counts
//! (a multiset), every change of an AoR's deadline moves exactly its own
//! count, and a due key expires every AoR with that hash whose deadline is
//! due (the others keep their counts under their own deadlines).
//!
//! Counts for stats are kept in atomics, adjusted on every mutation.

use crate::clock::Timestamp;
#[cfg(test)]
use crate::codec::Row;
use crate::model::Binding;
use crate::packed::Packed;
use hashbrown::HashTable;
use hashbrown::hash_table::{Entry as Slot, OccupiedEntry};
use parking_lot::{Mutex, MutexGuard};
use std::collections::BTreeMap;
use std::collections::btree_map::Entry as Filed;
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

/// Hashes AoRs within one shard, for its table and its expiry index. Seeds
/// are random per shard, as a std `HashMap`'s would be: shard placement uses
/// fixed seeds, and these keep one shard's buckets unpredictable anyway.
#[derive(Debug)]
struct AorHasher {
    state: Hasher,
    /// Bits of the hash kept: all of them, except in tests that make AoRs
    /// collide on purpose.
    #[cfg(test)]
    mask: u64,
}

impl Default for AorHasher {
    fn default() -> Self {
        Self {
            state: Hasher::new(),
            #[cfg(test)]
            mask: u64::MAX,
        }
    }
}

impl AorHasher {
    fn hash(&self, aor: &str) -> u64 {
        let h = self.state.hash_one(aor);
        #[cfg(test)]
        let h = h & self.mask;
        h
    }
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
    /// The AoR, read from the first entry.
    fn aor(&self) -> &str {
        self.as_slice()
            .first()
            .expect("invariant: stored Slots are never empty")
            .aor()
    }
    /// True when these are the entries of `aor`.
    fn has_aor(&self, aor: &str) -> bool {
        self.as_slice().first().is_some_and(|p| p.has_aor(aor))
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
    /// The entries of each AoR, filed under `hasher.hash(slots.aor())`.
    aors: HashTable<Slots>,
    hasher: AorHasher,
    /// How many AoRs held have `(earliest deadline of their entries, hash)`.
    deadlines: BTreeMap<(Timestamp, u64), u32>,
}

impl Shard {
    /// A shard whose hash keeps only the bits of `mask`: `0` files every AoR
    /// under one hash, to exercise collisions.
    #[cfg(test)]
    fn with_hash_mask(mask: u64) -> Self {
        Self {
            hasher: AorHasher {
                mask,
                ..AorHasher::default()
            },
            ..Self::default()
        }
    }

    fn find(&self, aor: &str) -> Option<&Slots> {
        self.aors
            .find(self.hasher.hash(aor), |slots| slots.has_aor(aor))
    }

    /// The place of `aor`'s entries, held or not, and the hash it is filed
    /// under (for the expiry index).
    fn entry(&mut self, aor: &str) -> (u64, Slot<'_, Slots>) {
        let hash = self.hasher.hash(aor);
        let hasher = &self.hasher;
        let slot = self.aors.entry(
            hash,
            |slots| slots.has_aor(aor),
            |slots| hasher.hash(slots.aor()),
        );
        (hash, slot)
    }

    /// `aor`'s entries for editing, if held, and the hash they are filed under.
    fn find_mut(&mut self, aor: &str) -> Option<(u64, OccupiedEntry<'_, Slots>)> {
        let hash = self.hasher.hash(aor);
        let found = self
            .aors
            .find_entry(hash, |slots| slots.has_aor(aor))
            .ok()?;
        Some((hash, found))
    }

    /// Live (not yet expired at `now`) bindings of `aor`, decoded.
    pub(crate) fn live(&self, aor: &str, now: Timestamp) -> Vec<Binding> {
        self.find(aor)
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
        self.find(aor)?
            .as_slice()
            .iter()
            .find(|p| p.has_contact(contact))
    }

    /// Store `entry` under `aor` (its contact is the rest of the key).
    pub(crate) fn put(&mut self, aor: &str, entry: Packed, counts: &Counts) {
        debug_assert!(entry.has_aor(aor), "an entry is stored under its own AoR");
        let (hash, slot) = self.entry(aor);
        let (before, old_deadline, after, new_deadline) = match slot {
            Slot::Occupied(mut o) => {
                let slots = o.get_mut();
                let (before, old) = (slots.tally(), slots.deadline());
                slots.put(entry);
                (before, Some(old), slots.tally(), slots.deadline())
            }
            Slot::Vacant(v) => {
                let slots = v.insert(Slots::One(entry)).into_mut();
                (Tally::default(), None, slots.tally(), slots.deadline())
            }
        };
        self.refile(hash, old_deadline, Some(new_deadline));
        counts.adjust(before, after);
    }

    /// Delete the key (`aor`, `contact`).
    #[cfg(test)]
    pub(crate) fn delete(&mut self, aor: &str, contact: &str, counts: &Counts) {
        let Some((hash, mut found)) = self.find_mut(aor) else {
            return;
        };
        let slots = found.get_mut();
        let (before, old) = (slots.tally(), slots.deadline());
        slots.retain(|p| !p.has_contact(contact));
        let (after, new) = settle_entry(found);
        self.refile(hash, Some(old), new);
        counts.adjust(before, after);
    }

    /// Move one AoR's count in the expiry index from `old` to `new`
    /// (`None`: not held).
    fn refile(&mut self, hash: u64, old: Option<Timestamp>, new: Option<Timestamp>) {
        if old == new {
            return;
        }
        if let Some(old) = old {
            match self.deadlines.entry((old, hash)) {
                Filed::Occupied(mut o) if *o.get() > 1 => *o.get_mut() -= 1,
                Filed::Occupied(o) => {
                    o.remove();
                }
                Filed::Vacant(_) => debug_assert!(false, "an AoR held is in the expiry index"),
            }
        }
        if let Some(new) = new {
            *self.deadlines.entry((new, hash)).or_insert(0) += 1;
        }
    }

    /// True when some entry of this shard has a deadline at or before `now`.
    pub(crate) fn has_due(&self, now: Timestamp) -> bool {
        self.deadlines
            .first_key_value()
            .is_some_and(|((t, _), _)| *t <= now)
    }

    /// Remove every entry whose deadline is at or before `now`, handing each
    /// to `removed(aor, entry)`.
    pub(crate) fn expire(
        &mut self,
        now: Timestamp,
        counts: &Counts,
        mut removed: impl FnMut(&str, Packed),
    ) {
        // The AoR of the entries being handed out (they are moved, so it
        // cannot be borrowed from them); one buffer for the whole sweep.
        let mut aor = String::new();
        while let Some((&(due, hash), _)) = self.deadlines.first_key_value()
            && due <= now
        {
            // Every due AoR under this hash: usually one, more only when
            // AoRs collide. Each leaves the table or gets a later deadline,
            // so the loop ends; the hash check keeps AoRs of other hashes
            // that the probe passes out of it (their own keys cover them).
            while let Ok(mut found) = self.aors.find_entry(hash, |slots| {
                slots.deadline() <= now && self.hasher.hash(slots.aor()) == hash
            }) {
                let slots = found.get_mut();
                let (before, old) = (slots.tally(), slots.deadline());
                aor.clear();
                aor.push_str(slots.aor());
                for p in std::mem::take(slots.many()) {
                    if p.deadline() <= now {
                        removed(&aor, p);
                    } else {
                        slots.many().push(p);
                    }
                }
                slots.settle();
                let (after, new) = settle_entry(found);
                self.refile(hash, Some(old), new);
                counts.adjust(before, after);
            }
            // Every AoR counted under (due, hash) was due and has been
            // refiled, so the key is gone; were the index ever to disagree
            // with the table, dropping the key keeps the sweep from spinning.
            debug_assert!(
                !self.deadlines.contains_key(&(due, hash)),
                "the expiry index counts exactly the AoRs held"
            );
            self.deadlines.remove(&(due, hash));
        }
    }

    /// Every AoR with its entries (for dumps and snapshots).
    pub(crate) fn records(&self) -> impl Iterator<Item = (&str, &[Packed])> {
        self.aors.iter().map(|r| (r.aor(), r.as_slice()))
    }
}

/// After an edit of the entries `found` holds: remove them from the table
/// if none is left (a stored `Slots` is never empty), and return their
/// tally and earliest deadline now (`None`: no longer held).
fn settle_entry(found: OccupiedEntry<'_, Slots>) -> (Tally, Option<Timestamp>) {
    if found.get().is_empty() {
        found.remove();
        (Tally::default(), None)
    } else {
        let slots = found.get();
        (slots.tally(), Some(slots.deadline()))
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
        debug_assert!(entry.has_aor(aor), "an entry is stored under its own AoR");
        let i = self.table.shard_index(aor);
        match self.table.shards[i].get_mut().entry(aor).1 {
            Slot::Occupied(mut o) => o.get_mut().put(entry),
            Slot::Vacant(v) => {
                v.insert(Slots::One(entry));
            }
        }
    }

    /// Remove one key (a deletion replayed from the log).
    pub(crate) fn remove(&mut self, aor: &str, contact: &str) {
        let i = self.table.shard_index(aor);
        if let Some((_, mut found)) = self.table.shards[i].get_mut().find_mut(aor) {
            let slots = found.get_mut();
            slots.retain(|p| !p.has_contact(contact));
            if slots.is_empty() {
                found.remove();
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
            shard.aors.retain(|rec| {
                let before = rec.as_slice().len();
                if rec.as_slice().iter().any(|p| p.deadline() <= now) {
                    rec.retain(|p| p.deadline() > now);
                }
                dropped += (before - rec.as_slice().len()) as u64;
                !rec.is_empty()
            });
            // Built in one go: sorting once and filling the tree's nodes in
            // order, where a million single inserts each walk it. Equal keys
            // (AoRs sharing hash and deadline) become one key and a count.
            let hasher = &shard.hasher;
            let mut keys: Vec<(Timestamp, u64)> = shard
                .aors
                .iter()
                .map(|rec| (rec.deadline(), hasher.hash(rec.aor())))
                .collect();
            keys.sort_unstable();
            shard.deadlines = keys
                .chunk_by(|a, b| a == b)
                .map(|same| {
                    let n = u32::try_from(same.len()).unwrap_or(u32::MAX);
                    (same[0], n)
                })
                .collect();
            for rec in shard.aors.iter() {
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
mod tests;
