//! The location service: the in-memory table plus the durable store.
//!
//! [`Location`] ties together the sharded table (`table`), the merge
//! rule ([`merge()`](crate::merge::merge)), the HLC ([`crate::clock::HlcClock`]) and the
//! group-commit writer (`persist`). Every write follows one path:
//! lock the AoR's shard, stamp, merge into memory, hand the row writes to the
//! writer while the lock is still held (so per-AoR commit order is memory
//! order), unlock, and return a [`Commit`] that resolves once the rows are
//! fsync'd. Reads only take the shard lock and copy.

use crate::clock::{Clock, HlcClock, Timestamp};
use crate::codec::{self, ViewBody};
use crate::disk;
use crate::error::InvalidChange;
use crate::merge::decide;
use crate::model::{Binding, Change, ChangeKind, Hlc, MergeDecision, NodeId, Op, Version};
use crate::packed::Packed;
pub use crate::persist::{
    COMMIT_INTERVAL, PACE_FROM_GROUP, SEGMENT_BYTES, SNAPSHOT_MIN_LOG_BYTES, StoreOptions,
};
use crate::persist::{PersistOp, Source, Start, Writer};
use crate::subscribers::Subscribers;
use crate::table::{Shard, Table};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

pub use crate::commit::Commit;
pub use crate::error::StoreError;
pub use crate::persist::{COMMIT_BUCKETS_US, CommitStats};
pub use crate::subscribers::Subscriber;

/// Counts for stats and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LocationStats {
    /// AoRs with at least one live binding.
    pub aors: u64,
    /// Live bindings.
    pub bindings: u64,
    /// Tombstones held.
    pub tombstones: u64,
}

/// The node's location service.
pub struct Location {
    clock: Arc<dyn Clock>,
    node: NodeId,
    hlc: HlcClock,
    table: Arc<Table>,
    subscribers: Arc<Subscribers>,
    writer: Writer,
    path: PathBuf,
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Location")
            .field("path", &self.path)
            .field("node", &self.node)
            .field("stats", &self.stats())
            .field("healthy", &self.healthy())
            .finish_non_exhaustive()
    }
}

impl Location {
    /// Open (or create) the store directory `path`, load every binding and
    /// subscriber, drop expired entries, and start the writer.
    ///
    /// A store file that is damaged or not a regmesh store file yields
    /// [`StoreError::Corrupt`] and the directory is left exactly as it was
    /// (the one repair made is cutting off the torn tail of the newest log
    /// segment a crash leaves, which was never acknowledged). The parent
    /// folder must exist; a second open of the same directory, in this
    /// process or another, is refused ([`StoreError::Open`]).
    pub fn open(path: &Path, node: NodeId, clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        Self::open_with(path, node, clock, StoreOptions::default())
    }

    /// [`open`](Self::open) with non-default log and snapshot sizes.
    pub fn open_with(
        path: &Path,
        node: NodeId,
        clock: Arc<dyn Clock>,
        options: StoreOptions,
    ) -> Result<Self, StoreError> {
        let now = clock.now();
        let loaded = disk::open(path, node, now)?;
        let hlc = HlcClock::new();
        // Never issue a stamp at or below one already on disk, even if the
        // wall clock stepped back across the restart.
        hlc.observe(loaded.max_hlc);
        let table = Arc::new(loaded.table);
        let subscribers = Arc::new(Subscribers::from_loaded(loaded.subscribers));
        let writer = Writer::start(
            Start {
                dir: path.to_owned(),
                node,
                next_segment: loaded.next_segment,
                lock: loaded.lock,
                log_bytes: loaded.log_bytes,
                snapshot_bytes: loaded.snapshot_bytes,
                options,
            },
            Source {
                table: table.clone(),
                subscribers: subscribers.clone(),
                clock: clock.clone(),
            },
        )?;
        let this = Self {
            clock,
            node,
            hlc,
            table,
            subscribers,
            writer,
            path: path.to_owned(),
        };
        let st = this.stats();
        tracing::info!(
            path = %path.display(),
            node = node.0,
            bindings = st.bindings,
            aors = st.aors,
            tombstones = st.tombstones,
            expired_dropped = loaded.expired,
            subscribers = this.subscribers.len(),
            snapshot_bytes = loaded.snapshot_bytes,
            log_bytes = loaded.log_bytes,
            "location store loaded"
        );
        Ok(this)
    }

    /// The clock.
    pub fn clock(&self) -> &dyn Clock {
        self.clock.as_ref()
    }

    /// This node's id.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// The store directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The largest HLC stamp issued or observed so far.
    pub fn last_hlc(&self) -> Hlc {
        self.hlc.last()
    }

    /// Read-modify-write one AoR atomically: `f` sees the live bindings of
    /// `aor` now and returns its result plus the ops to apply. The ops are
    /// stamped, applied in memory and handed to the group-commit writer while
    /// the AoR's lock is held; the returned [`Commit`] resolves when durable.
    ///
    /// `f` runs under the shard lock: it must be quick and must not call back
    /// into the store. Each op gets its own fresh version; Insert and Refresh
    /// get `version` and `last_modified` set, and an empty `ruid` is kept
    /// from the binding being refreshed or else generated. A Remove of a
    /// contact the table holds no binding for is a no-op. Ops for another
    /// AoR, or with an empty contact, refuse the whole batch
    /// ([`StoreError::Invalid`]; nothing is applied), as does an unhealthy or
    /// closed store (`f` still runs, so its result is returned).
    ///
    /// Never blocks on the disk: when the commit queue is full the batch is
    /// refused with [`StoreError::Overloaded`] before memory changes. With
    /// no ops the commit still waits for writes queued earlier (a
    /// retransmission or query must not confirm state that is not yet on
    /// disk); it is immediate when nothing is in flight.
    pub fn update<R>(&self, aor: &str, f: impl FnOnce(&[Binding]) -> (R, Vec<Op>)) -> (R, Commit) {
        let now = self.clock.now();
        let mut shard = self.table.lock(aor);
        let (r, ops) = {
            let live = shard.live(aor, now);
            f(&live)
        };
        if ops.is_empty() {
            return (r, self.writer.barrier());
        }
        if let Err(reason) = validate_ops(aor, &ops) {
            return (r, Commit::failed(StoreError::Invalid { reason }));
        }
        if let Some(e) = self.writer.refusal() {
            return (r, Commit::failed(e));
        }
        // Merge against the table (and earlier ops of this batch) without
        // touching it, queue the rows, and only then apply: a refused queue
        // leaves memory exactly as it was.
        let mut rows = Vec::with_capacity(ops.len());
        let mut staged: Vec<Packed> = Vec::with_capacity(ops.len());
        for op in ops {
            let Some(change) = self.stamp(&shard, aor, op, now) else {
                continue;
            };
            let current = staged
                .iter()
                .rev()
                .find(|p| p.has_contact(&change.contact))
                .or_else(|| shard.get(aor, &change.contact));
            if decide(current, &change) == MergeDecision::Applied {
                let value = codec::encode_change(&change);
                staged.push(Packed::from_encoded(value.clone()));
                rows.push(PersistOp::PutBinding { value });
            }
        }
        if rows.is_empty() {
            // Only removals of contacts the table does not hold.
            return (r, self.writer.barrier());
        }
        let commit = match self.writer.try_submit(rows) {
            Ok(c) => c,
            Err(e) => return (r, Commit::failed(e)),
        };
        for entry in staged {
            shard.put(aor, entry, self.table.counts());
        }
        drop(shard);
        (r, commit)
    }

    /// Turn an op into a stamped change (None for a Remove that removes nothing).
    fn stamp(&self, shard: &Shard, aor: &str, op: Op, now: Timestamp) -> Option<Change> {
        let (kind, contact, binding, tombstone_until) = match op {
            Op::Insert(b) => (
                ChangeKind::Insert,
                b.contact.clone(),
                Some(b),
                Timestamp::ZERO,
            ),
            Op::Refresh(b) => (
                ChangeKind::Refresh,
                b.contact.clone(),
                Some(b),
                Timestamp::ZERO,
            ),
            Op::Remove { contact, .. } => {
                // The tombstone lives as long as the binding it removes would
                // have (DESIGN.md, merge rule).
                let until = shard.get(aor, &contact)?.live_expires()?;
                (ChangeKind::Remove, contact, None, until)
            }
        };
        let version = Version {
            hlc: self.hlc.stamp(now),
            node: self.node,
        };
        let binding = binding.map(|mut b| {
            b.version = version;
            b.last_modified = now;
            if b.ruid.is_empty() {
                b.ruid = shard
                    .get(aor, &contact)
                    .and_then(|old| match old.view().body {
                        ViewBody::Live(b) => Some(b.ruid.to_owned()),
                        ViewBody::Tombstone { .. } => None,
                    })
                    .filter(|r| !r.is_empty())
                    .unwrap_or_else(|| format!("{:x}-{:x}", self.node.0, version.hlc.0));
            }
            b
        });
        Some(Change {
            kind,
            aor: aor.to_owned(),
            contact,
            version,
            binding,
            tombstone_until,
        })
    }

    /// Merge `change` into the locked shard; queue the row write if it won.
    fn merge_into(
        &self,
        shard: &mut Shard,
        change: &Change,
        rows: &mut Vec<PersistOp>,
    ) -> MergeDecision {
        let decision = decide(shard.get(&change.aor, &change.contact), change);
        if decision == MergeDecision::Applied {
            let value = codec::encode_change(change);
            let entry = Packed::from_encoded(value.clone());
            rows.push(PersistOp::PutBinding { value });
            shard.put(&change.aor, entry, self.table.counts());
        }
        decision
    }

    /// Live bindings of `aor`.
    pub fn lookup(&self, aor: &str) -> Vec<Binding> {
        let now = self.clock.now();
        self.table.lock(aor).live(aor, now)
    }

    /// Every live binding, grouped by AoR (a consistent copy per shard),
    /// sorted by AoR.
    pub fn dump(&self) -> Vec<(String, Vec<Binding>)> {
        let now = self.clock.now();
        let mut out = Vec::new();
        for shard in self.table.shards() {
            let shard = shard.lock();
            for (aor, slots) in shard.records() {
                let live: Vec<Binding> = slots
                    .iter()
                    .filter(|p| p.live_expires().is_some_and(|e| e > now))
                    .filter_map(Packed::binding)
                    .collect();
                if !live.is_empty() {
                    out.push((aor.to_owned(), live));
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Every entry, tombstones included, as changes that recreate it (for a
    /// snapshot to a peer). A consistent copy per shard.
    pub fn snapshot(&self) -> Vec<Change> {
        let mut out = Vec::new();
        for shard in self.table.shards() {
            let shard = shard.lock();
            for (aor, slots) in shard.records() {
                out.extend(slots.iter().map(|p| p.entry().to_change(aor, p.contact())));
            }
        }
        out
    }

    /// Remove bindings whose expiry has passed (a local removal) and forget
    /// tombstones past their time. Returns the removals made.
    ///
    /// Cost is proportional to what is due (each shard keeps an expiry
    /// index), so calling it every second on a million bindings is cheap.
    /// Each removal is a Remove change with a fresh local stamp and
    /// `tombstone_until` = the binding's expiry, already past, so no
    /// tombstone is kept: the rows are deleted.
    pub fn expire(&self) -> (Vec<Change>, Commit) {
        let now = self.clock.now();
        let mut changes = Vec::new();
        let mut result: Option<Commit> = None;
        for shard in self.table.shards() {
            let mut shard = shard.lock();
            if !shard.has_due(now) {
                continue;
            }
            let mut rows = Vec::new();
            shard.expire(now, self.table.counts(), |aor, entry| {
                rows.push(PersistOp::DeleteBinding {
                    key: codec::binding_key(aor, entry.contact()),
                });
                if let Some(expires) = entry.live_expires() {
                    changes.push(Change {
                        kind: ChangeKind::Remove,
                        aor: aor.to_owned(),
                        contact: entry.contact().to_owned(),
                        version: Version {
                            hlc: self.hlc.stamp(now),
                            node: self.node,
                        },
                        binding: None,
                        tombstone_until: expires,
                    });
                }
            });
            // Sent under the shard lock, like every write (commit order =
            // memory order). The writer answers in order and fails every
            // request after a failure, so waiting for the last one covers
            // all; an immediate failure is kept instead.
            let commit = self.writer.submit(rows);
            if !matches!(&result, Some(c) if c.is_immediate()) {
                result = Some(commit);
            }
        }
        (changes, result.unwrap_or_else(Commit::done))
    }

    /// Apply a change from elsewhere through the merge rule (for replication).
    pub fn apply(&self, change: Change) -> Commit {
        self.apply_change(change).1
    }

    /// [`apply`](Self::apply), also telling what the merge rule decided
    /// (for metrics: applied, stale, duplicate). Durable like a local write.
    pub fn apply_change(&self, change: Change) -> (MergeDecision, Commit) {
        if let Err(reason) = validate_change(&change) {
            return (
                MergeDecision::Stale,
                Commit::failed(StoreError::Invalid { reason }),
            );
        }
        if let Some(e) = self.writer.refusal() {
            return (MergeDecision::Stale, Commit::failed(e));
        }
        // HLC receive rule: our next stamps move past the remote one.
        self.hlc.observe(change.version.hlc);
        let mut shard = self.table.lock(&change.aor);
        let mut rows = Vec::with_capacity(1);
        let decision = self.merge_into(&mut shard, &change, &mut rows);
        let commit = self.writer.submit(rows);
        drop(shard);
        (decision, commit)
    }

    /// Counts.
    pub fn stats(&self) -> LocationStats {
        let c = self.table.counts();
        LocationStats {
            aors: c.aors.load(Ordering::Relaxed),
            bindings: c.bindings.load(Ordering::Relaxed),
            tombstones: c.tombstones.load(Ordering::Relaxed),
        }
    }

    /// Start writing a snapshot now instead of waiting for the log to grow
    /// (operators before a backup; tests). It runs in the background and
    /// [`CommitStats::snapshots`] counts it once durable; a request while one
    /// is being written is ignored.
    pub fn request_snapshot(&self) -> Result<(), StoreError> {
        self.writer.request_snapshot()
    }

    /// Counters of the group-commit writer (transactions = fsyncs).
    pub fn commit_stats(&self) -> CommitStats {
        self.writer.stats()
    }

    /// True until a storage error has broken the durability promise (and
    /// false once closed).
    pub fn healthy(&self) -> bool {
        self.writer.healthy()
    }

    /// Add or replace a subscriber (durable before returning).
    pub async fn put_subscriber(&self, s: Subscriber) -> Result<(), StoreError> {
        if s.user.is_empty() || s.domain.is_empty() || s.domain.contains('@') {
            return Err(StoreError::Invalid {
                reason: InvalidChange::SubscriberKey,
            });
        }
        let commit = {
            let mut map = self.subscribers.write();
            if let Some(e) = self.writer.refusal() {
                return Err(e);
            }
            let key = codec::subscriber_key(&s.user, &s.domain);
            let row = PersistOp::PutSubscriber {
                value: codec::encode_subscriber(&s),
            };
            map.insert(key, Arc::new(s));
            self.writer.submit(vec![row])
        };
        commit.wait().await
    }

    /// Remove a subscriber; false when there was none.
    pub async fn remove_subscriber(&self, user: &str, domain: &str) -> Result<bool, StoreError> {
        let commit = {
            let mut map = self.subscribers.write();
            if let Some(e) = self.writer.refusal() {
                return Err(e);
            }
            let key = codec::subscriber_key(user, domain);
            if map.remove(&key).is_none() {
                return Ok(false);
            }
            self.writer
                .submit(vec![PersistOp::DeleteSubscriber { key }])
        };
        commit.wait().await.map(|()| true)
    }

    /// Look a subscriber up (in memory). The entry is shared with the
    /// store: a lookup costs a reference count, not a copy.
    pub fn subscriber(&self, user: &str, domain: &str) -> Option<Arc<Subscriber>> {
        self.subscribers.get(user, domain)
    }

    /// All subscribers, sorted by domain, then user.
    pub fn subscribers(&self) -> Vec<Arc<Subscriber>> {
        self.subscribers.all()
    }

    /// Flush and close (graceful shutdown): every write queued so far is
    /// committed, then the file is closed. Later writes fail with
    /// [`StoreError::Closed`]; reads keep working from memory. Idempotent.
    /// Blocks the calling thread until the writer has finished.
    pub fn close(&self) -> Result<(), StoreError> {
        self.writer.close()
    }
}

impl Drop for Location {
    /// Dropping without [`close`](Location::close) still commits what is
    /// queued and closes the file, so the file can be reopened at once.
    fn drop(&mut self) {
        if let Err(e) = self.writer.close() {
            tracing::error!(path = %self.path.display(), error = %e, "closing the location store");
        }
    }
}

fn validate_key(aor: &str, contact: &str) -> Result<(), InvalidChange> {
    if aor.is_empty() || contact.is_empty() {
        return Err(InvalidChange::EmptyKey);
    }
    if aor.as_bytes().contains(&0) {
        return Err(InvalidChange::NulInAor);
    }
    Ok(())
}

fn validate_ops(aor: &str, ops: &[Op]) -> Result<(), InvalidChange> {
    for op in ops {
        let (op_aor, contact) = match op {
            Op::Insert(b) | Op::Refresh(b) => (b.aor.as_str(), b.contact.as_str()),
            Op::Remove { aor, contact } => (aor.as_str(), contact.as_str()),
        };
        if op_aor != aor {
            return Err(InvalidChange::AorMismatch);
        }
        validate_key(aor, contact)?;
    }
    Ok(())
}

fn validate_change(c: &Change) -> Result<(), InvalidChange> {
    validate_key(&c.aor, &c.contact)?;
    match (c.kind, &c.binding) {
        (ChangeKind::Remove, _) => Ok(()),
        (_, None) => Err(InvalidChange::MissingBinding),
        (_, Some(b)) if b.aor != c.aor || b.contact != c.contact => Err(InvalidChange::KeyMismatch),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
