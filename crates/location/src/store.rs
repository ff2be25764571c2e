//! The location service: the in-memory table plus the durable store.

use crate::clock::{Clock, Timestamp};
use crate::model::{Binding, Change, NodeId, Op};
use std::path::Path;
use std::sync::Arc;

/// Storage errors. Any error on the commit path is fatal for durability.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Placeholder; the store defines the real set.
    #[error("database error: {0}")]
    Db(String),
}

/// A digest-auth subscriber (HA1 hashes only, never a password).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Subscriber {
    /// User part.
    pub user: String,
    /// Domain.
    pub domain: String,
    /// Realm the HA1s were computed with.
    pub realm: String,
    /// HA1 = MD5(user:realm:password), lowercase hex.
    pub ha1_md5: String,
    /// HA1 = SHA-256(user:realm:password), lowercase hex.
    pub ha1_sha256: String,
}

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

/// Resolves when the changes it stands for are durable (fsync'd).
#[derive(Debug)]
pub struct Commit {
    _rx: Option<tokio::sync::oneshot::Receiver<Result<(), StoreError>>>,
}

impl Commit {
    /// A commit with nothing to wait for.
    pub fn done() -> Self {
        Self { _rx: None }
    }
    /// Wait until durable.
    pub async fn wait(self) -> Result<(), StoreError> {
        todo!()
    }
    /// Blocking wait (for non-async callers and tests).
    pub fn wait_blocking(self) -> Result<(), StoreError> {
        todo!()
    }
}

/// The node's location service.
pub struct Location {
    _clock: Arc<dyn Clock>,
}

impl Location {
    /// Open (or create) the database at `path`, load every binding, drop expired ones.
    pub fn open(path: &Path, node: NodeId, clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        let _ = (path, node, clock);
        todo!()
    }
    /// The clock.
    pub fn clock(&self) -> &dyn Clock {
        todo!()
    }
    /// Read-modify-write one AoR atomically: `f` sees the live bindings of
    /// `aor` now and returns its result plus the ops to apply. The ops are
    /// stamped, applied in memory and handed to the group-commit writer while
    /// the AoR's lock is held; the returned [`Commit`] resolves when durable.
    pub fn update<R>(&self, aor: &str, f: impl FnOnce(&[Binding]) -> (R, Vec<Op>)) -> (R, Commit) {
        let _ = (aor, f);
        todo!()
    }
    /// Live bindings of `aor`.
    pub fn lookup(&self, aor: &str) -> Vec<Binding> {
        let _ = aor;
        todo!()
    }
    /// Every live binding, grouped by AoR (a consistent copy per shard).
    pub fn dump(&self) -> Vec<(String, Vec<Binding>)> {
        todo!()
    }
    /// Remove bindings whose expiry has passed (a local removal) and forget
    /// tombstones past their time. Returns the removals made.
    pub fn expire(&self) -> (Vec<Change>, Commit) {
        todo!()
    }
    /// Apply a change from elsewhere through the merge rule (for replication).
    pub fn apply(&self, change: Change) -> Commit {
        let _ = change;
        todo!()
    }
    /// Counts.
    pub fn stats(&self) -> LocationStats {
        todo!()
    }
    /// True until a storage error has broken the durability promise.
    pub fn healthy(&self) -> bool {
        todo!()
    }
    /// Add or replace a subscriber (durable before returning).
    pub async fn put_subscriber(&self, s: Subscriber) -> Result<(), StoreError> {
        let _ = s;
        todo!()
    }
    /// Remove a subscriber; false when there was none.
    pub async fn remove_subscriber(&self, user: &str, domain: &str) -> Result<bool, StoreError> {
        let _ = (user, domain);
        todo!()
    }
    /// Look a subscriber up (in memory).
    pub fn subscriber(&self, user: &str, domain: &str) -> Option<Subscriber> {
        let _ = (user, domain);
        todo!()
    }
    /// All subscribers, sorted.
    pub fn subscribers(&self) -> Vec<Subscriber> {
        todo!()
    }
    /// Flush and close (graceful shutdown).
    pub fn close(&self) -> Result<(), StoreError> {
        todo!()
    }
    #[allow(dead_code)]
    fn _unused(_t: Timestamp) {}
}
