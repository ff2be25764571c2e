//! The location store (Kamailio calls it usrloc): bindings, the AoR index, the
//! merge rule, expiry and durable persistence.
//!
//! What it does:
//! - holds every binding of the node in memory ([`Location`]), sharded by AoR,
//!   for lookups without I/O;
//! - applies every write, local or replicated, through one merge rule
//!   ([`merge()`]): last-writer-wins on a hybrid-logical-clock [`Version`] with
//!   tombstones, so any delivery order gives the same table;
//! - makes every write durable before its [`Commit`] resolves: a group-commit
//!   writer thread appends concurrent writes to the change log with one
//!   fdatasync (see `persist` for who blocks under overload), and a
//!   background thread snapshots the table so the log stays short;
//! - expires bindings locally at their absolute expiry time, with an expiry
//!   index so the sweep costs what is due, not the table size;
//! - stores digest-auth [`Subscriber`]s.
//!
//! What it does not do: SIP (the registrar decides what ops a REGISTER
//! makes), replication transport (it only offers [`Location::apply`],
//! [`Location::snapshot`] and the changes [`Location::expire`] returns), or
//! reading the wall clock anywhere but [`clock`].
//!
//! # On-disk format
//!
//! A directory of change-log segments and snapshots, every record framed
//! with its length and a CRC-32; the layout and the recovery rules are in
//! the `disk` module, the encoding of a binding, tombstone or subscriber in
//! `codec`.
//!
//! # Why a log and snapshots
//!
//! The first format was one redb file (a copy-on-write B-tree), chosen with
//! `bench/store-eval` over fjall for its simplicity. The benchmark against
//! Kamailio then showed what a B-tree costs for this workload, which is
//! almost only overwrites of existing keys: about 4 KB written per
//! REGISTER (every commit rewrites the pages on the path to each key), and
//! a file that grew from 64 MiB to about 1 GiB for 50,000 bindings under
//! sustained refreshes, halving throughput with it (BENCHMARKS.md).
//!
//! Since the authoritative table is in memory, the disk only has to be able
//! to rebuild it: an append-only log of changes does that with one
//! sequential write of the changes themselves (200-400 bytes each) per
//! group commit, and periodic snapshots of the in-memory table bound its
//! length. The merge rule makes the snapshot simple: it is taken while
//! writes go on, and replaying the log after it converges to the same
//! table. The log is also what replication needs (DESIGN.md: a durable
//! change log with per-peer cursors). It is a single-node format; a
//! deployment that outgrows it would put the store behind another backend,
//! which `persist` and `disk` keep to two modules.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod clock;
mod codec;
mod commit;
mod disk;
mod error;
pub mod merge;
pub mod model;
mod packed;
mod persist;
pub mod store;
mod subscribers;
mod table;
#[cfg(test)]
mod testutil;

pub use clock::{Clock, HlcClock, ManualClock, SystemClock, Timestamp};
pub use codec::DecodeError;
pub use commit::OnDurable;
pub use error::{Corruption, InvalidChange};
pub use model::*;
pub use store::{
    COMMIT_BUCKETS_US, Commit, CommitStats, Location, LocationStats, SEGMENT_BYTES,
    SNAPSHOT_MIN_LOG_BYTES, StoreError, StoreOptions, Subscriber,
};
