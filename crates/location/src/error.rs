//! The crate's error type.
//!
//! Errors on the commit path ([`StoreError::Commit`], [`StoreError::Unhealthy`],
//! [`StoreError::WriterGone`]) are fatal for durability: the store stops
//! promising that an acknowledged write survives a crash, [`healthy`] turns
//! false, and the node must stop answering `200 OK` (openraft keeps fatal
//! errors apart from request errors in the same way).
//!
//! [`healthy`]: crate::Location::healthy

use crate::codec::DecodeError;
use std::path::PathBuf;
use std::sync::Arc;

/// Storage errors. Any error on the commit path is fatal for durability.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store directory could not be opened or created (missing parent
    /// folder, permissions, another process holding it, ...).
    #[error("cannot open location store {}: {source}", path.display())]
    Open {
        /// The directory.
        path: PathBuf,
        /// What the operating system reported.
        #[source]
        source: std::io::Error,
    },
    /// A file of the store is damaged, or is not a regmesh store file. The
    /// directory is left untouched for the operator to inspect, restore or
    /// move aside.
    #[error(
        "location store file {} is corrupt or not a regmesh store file (left untouched): {source}",
        path.display()
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: Corruption,
    },
    /// The file was written by a build with another on-disk format.
    #[error(
        "location store file {} has format {found}; this build reads format {supported}",
        path.display()
    )]
    UnsupportedFormat {
        /// The file.
        path: PathBuf,
        /// Format byte found in the file.
        found: u8,
        /// Format this build reads.
        supported: u8,
    },
    /// Reading the store at startup failed.
    #[error("reading location store file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the operating system reported.
        #[source]
        source: std::io::Error,
    },
    /// An operating-system error outside reading and appending (starting
    /// a thread, creating a segment).
    #[error("location store I/O error while {context}: {source}")]
    Io {
        /// What the store was doing.
        context: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A commit failed: writes acknowledged from now on would not be durable,
    /// so the store has turned unhealthy.
    #[error("append to the location change log failed; the store is no longer durable: {source}")]
    Commit {
        /// What the operating system reported (shared by every write of the failed batch).
        #[source]
        source: Arc<std::io::Error>,
    },
    /// An earlier commit failed; writes are refused.
    #[error("the location store is unhealthy after an earlier commit failure; write refused")]
    Unhealthy,
    /// The commit writer thread stopped without answering.
    #[error("the location store's commit writer has stopped")]
    WriterGone,
    /// The store was closed.
    #[error("the location store is closed")]
    Closed,
    /// The commit queue is full (the disk is slower than the request rate):
    /// the write was refused before anything changed. Not fatal: the caller
    /// answers "try later" (503 with Retry-After) and the store stays healthy.
    #[error("the location store's commit queue is full; write refused")]
    Overloaded,
    /// A change or op that the store refuses (it never reaches the table).
    #[error("invalid change: {reason}")]
    Invalid {
        /// Why.
        reason: InvalidChange,
    },
}

/// What makes a store file unusable.
#[derive(Debug, thiserror::Error)]
pub enum Corruption {
    /// The file's header is wrong (not a regmesh store file, or damaged).
    #[error("bad header: {what}")]
    Header {
        /// What is wrong.
        what: &'static str,
    },
    /// A record fails its checksum or is cut short where that cannot be a
    /// crash's torn tail (inside a snapshot, or an older log segment).
    #[error("damaged record at byte {offset}")]
    Damaged {
        /// Where the bad record starts.
        offset: u64,
    },
    /// A file the store needs is not there.
    #[error("missing {what}")]
    Missing {
        /// Which file.
        what: &'static str,
    },
    /// A record that passes its checksum but does not decode.
    #[error("table {table}: {source}")]
    Record {
        /// The table.
        table: &'static str,
        /// The decoding failure.
        #[source]
        source: DecodeError,
    },
    /// A record of a kind this build does not know.
    #[error("unknown record kind {kind}")]
    RecordKind {
        /// The kind byte.
        kind: u8,
    },
}

/// Why a change or op was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidChange {
    /// An op names another AoR than the one `update` locked.
    #[error("op for another AoR than the one being updated")]
    AorMismatch,
    /// The binding's AoR or contact differs from the change's.
    #[error("binding does not match the change's AoR and contact")]
    KeyMismatch,
    /// Empty AoR or contact.
    #[error("empty AoR or contact")]
    EmptyKey,
    /// A NUL byte in the AoR (it separates AoR and contact in the on-disk key).
    #[error("NUL byte in the AoR")]
    NulInAor,
    /// An Insert or Refresh without a binding.
    #[error("insert or refresh without a binding")]
    MissingBinding,
    /// A subscriber with an empty user or domain, or an `@` in the domain
    /// (the on-disk key is `user@domain`, split at the last `@`).
    #[error("subscriber needs a non-empty user and a domain without '@'")]
    SubscriberKey,
}
