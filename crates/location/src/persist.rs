//! Durability: the redb file, loading it at startup, and the group-commit writer.
//!
//! # Group commit
//!
//! One dedicated thread owns the write side of the [`redb::Database`]. Writers
//! (REGISTER handling, RPC, replication, the expiry sweep) send a
//! [`Request`] — a batch of row writes plus a one-shot reply — over a bounded
//! channel. The thread takes the first request, drains every request already
//! queued behind it (up to [`MAX_REQUESTS_PER_TXN`]), writes them all in one
//! write transaction committed with [`Durability::Immediate`] (fsync), and
//! only then answers every waiter. Under load, many REGISTERs share one fsync;
//! when idle, a single write costs one fsync and no added delay.
//!
//! Requests are applied in channel order. The store sends a request while it
//! still holds the lock of the AoR's shard, so the commit order of the writes
//! of one AoR is their order in memory, and the file always converges to the
//! in-memory table.
//!
//! **Who blocks, who is refused, under overload.** The channel holds
//! [`QUEUE_CAPACITY`] requests: enough for the requests that arrive during
//! one slow fsync at a storm's rate (100 ms at 100,000/s), so a burst waits
//! for the next group commit rather than being turned away. When the disk
//! falls further behind than that, `Location::update` (the path of SIP and
//! RPC requests) is refused at once with `StoreError::Overloaded` and
//! changes nothing, so the caller answers "try later" (503) without parking
//! an async worker; `apply` and `expire` block in `send` (inside their
//! shard's lock) until the writer has drained a transaction's worth. Either
//! way acknowledging faster than the disk can make writes durable is not
//! possible, and an unbounded queue would only hide a failing disk.
//!
//! **Failure.** A failed transaction is fatal: every waiter of that
//! transaction gets [`StoreError::Commit`], the store turns unhealthy, and
//! every later request is answered [`StoreError::Unhealthy`] without touching
//! the file. If the thread dies (a panic in the database library), pending
//! waiters see their reply sender dropped ([`StoreError::WriterGone`]) and the
//! store also turns unhealthy.
//!
//! # Loading
//!
//! [`open`] reads every row straight into the in-memory table (no
//! intermediate copy), through a read-only handle, and only then opens the
//! file for writing. Rows already past their deadline (expired bindings,
//! tombstones past `until`) are not loaded; their keys are deleted by the
//! writer's first transaction, in the background. A row that does not
//! decode, a file that is not a redb database, or a redb file that is not
//! ours is reported as [`StoreError::Corrupt`] and the file is never
//! modified, deleted or replaced. The one exception to "read-only first" is
//! a file that was not closed cleanly (crash, kill -9): redb recovers it,
//! which needs a writable open, before it is read.
//!
//! The record layout is in [`crate::codec`].

use crate::clock::Timestamp;
use crate::codec;
use crate::commit::{self, Commit, Completer};
use crate::error::{Corruption, StoreError};
use crate::model::{Hlc, NodeId};
use crate::store::Subscriber;
use crate::table::{Table, TableBuilder};
use parking_lot::Mutex;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, TableError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;

pub(crate) const BINDINGS: TableDefinition<'static, &[u8], &[u8]> =
    TableDefinition::new("bindings");
pub(crate) const SUBSCRIBERS: TableDefinition<'static, &str, &[u8]> =
    TableDefinition::new("subscribers");
pub(crate) const META: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("meta");

/// Requests the writer channel holds before `update` is refused (and other
/// senders block). Each request is one AoR's rows, a few hundred bytes, so
/// a full queue is a few MB.
pub(crate) const QUEUE_CAPACITY: usize = 16_384;
/// Requests written in one transaction at most (bounds a transaction's size
/// and the latency of the first waiter in it).
pub(crate) const MAX_REQUESTS_PER_TXN: usize = 4096;
/// redb page cache. The table lives in memory; the cache only has to hold
/// the B-tree pages that writes touch.
const CACHE_BYTES: usize = 128 * 1024 * 1024;

/// One row write.
#[derive(Debug)]
pub(crate) enum PersistOp {
    PutBinding {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    DeleteBinding {
        key: Vec<u8>,
    },
    PutSubscriber {
        key: String,
        value: Vec<u8>,
    },
    DeleteSubscriber {
        key: String,
    },
    /// Test hook: makes the transaction fail, to exercise the failure path.
    #[cfg(test)]
    FailForTest,
}

type Reply = Completer;

/// What the writer thread receives.
pub(crate) enum Request {
    Write {
        ops: Vec<PersistOp>,
        done: Option<Reply>,
    },
    Close {
        done: mpsc::Sender<Result<(), StoreError>>,
    },
}

/// What [`open`] found on disk.
pub(crate) struct Loaded {
    pub(crate) db: Database,
    /// The table, with every entry still within its deadline.
    pub(crate) table: Table,
    pub(crate) subscribers: Vec<Subscriber>,
    /// Keys of rows past their deadline, to delete.
    pub(crate) stale: Vec<Vec<u8>>,
    /// The largest version stamp found (the HLC must move past it).
    pub(crate) max_hlc: Hlc,
}

/// Open or create the database at `path` and read it whole.
pub(crate) fn open(path: &Path, node: NodeId, now: Timestamp) -> Result<Loaded, StoreError> {
    // redb does not promise not to panic on a file damaged outside redb;
    // turn such a panic into a clear error instead of taking the node down
    // with an obscure message.
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| open_inner(path, node, now))) {
        Ok(r) => r,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            Err(StoreError::Corrupt {
                path: path.to_owned(),
                source: Corruption::Panicked { message },
            })
        }
    }
}

/// Everything read from a file before it is opened for writing.
struct Probe {
    format: Option<Vec<u8>>,
    node: Option<Vec<u8>>,
    table: TableBuilder,
    subscribers: Vec<Subscriber>,
    stale: Vec<Vec<u8>>,
    max_hlc: Hlc,
}

impl Probe {
    fn empty() -> Self {
        Self {
            format: None,
            node: None,
            table: TableBuilder::new(),
            subscribers: Vec::new(),
            stale: Vec::new(),
            max_hlc: Hlc(0),
        }
    }
}

fn open_inner(path: &Path, node: NodeId, now: Timestamp) -> Result<Loaded, StoreError> {
    let existing = std::fs::metadata(path)
        .map(|m| m.len() > 0)
        .unwrap_or(false);
    let (db, probe) = if existing {
        // Read the whole file through a read-only handle first: a file that
        // turns out not to be ours, or to hold an undecodable record, is
        // then reported without a single byte of it having been written.
        match redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .open_read_only(path)
        {
            Ok(ro) => {
                let probe = read_all(&ro, path, now)?;
                drop(ro);
                (open_writable(path)?, probe)
            }
            // Not shut down cleanly (a crash or kill -9): redb must repair
            // it, which only a writable open does. That is routine crash
            // recovery of a redb file, so the file is then read through the
            // writable handle.
            Err(redb::DatabaseError::RepairAborted) => {
                tracing::warn!(path = %path.display(), "location database was not closed cleanly; recovering");
                let db = open_writable(path)?;
                let probe = read_all(&db, path, now)?;
                (db, probe)
            }
            Err(e) => return Err(classify_open_error(path, e)),
        }
    } else {
        (open_writable(path)?, Probe::empty())
    };
    let Probe {
        format,
        node: stored_node,
        table,
        subscribers,
        stale,
        max_hlc,
    } = probe;
    let stored_node = match stored_node.as_deref() {
        None => None,
        Some(b) => match <[u8; 4]>::try_from(b) {
            Ok(a) => Some(NodeId(u32::from_le_bytes(a))),
            Err(_) => {
                return Err(StoreError::Corrupt {
                    path: path.to_owned(),
                    source: Corruption::Meta { key: "node" },
                });
            }
        },
    };
    if let Some(old) = stored_node
        && old != node
    {
        // Versions already stamped keep the old id, which stays valid; but
        // two live nodes sharing an id would break tie-breaking.
        tracing::warn!(path = %path.display(), old = old.0, new = node.0, "location database was last opened by another node id");
    }
    if format.is_none() || stored_node != Some(node) {
        write_meta(&db, node).map_err(|e| StoreError::Commit {
            source: Arc::new(e),
        })?;
    }
    Ok(Loaded {
        db,
        table: table.finish(),
        subscribers,
        stale,
        max_hlc,
    })
}

fn open_writable(path: &Path) -> Result<Database, StoreError> {
    redb::Builder::new()
        .set_cache_size(CACHE_BYTES)
        .create(path)
        .map_err(|e| classify_open_error(path, e))
}

/// Record the format and node id, and create the tables.
fn write_meta(db: &Database, node: NodeId) -> Result<(), redb::Error> {
    let mut tx = db.begin_write()?;
    tx.set_durability(Durability::Immediate)?;
    {
        let mut meta = tx.open_table(META)?;
        meta.insert("format", [codec::FORMAT].as_slice())?;
        meta.insert("node", node.0.to_le_bytes().as_slice())?;
        tx.open_table(BINDINGS)?;
        tx.open_table(SUBSCRIBERS)?;
    }
    tx.commit()?;
    Ok(())
}

/// Read meta, every binding row and every subscriber.
fn read_all(db: &impl ReadableDatabase, path: &Path, now: Timestamp) -> Result<Probe, StoreError> {
    let corrupt = |source| StoreError::Corrupt {
        path: path.to_owned(),
        source,
    };
    let read_err = |e: redb::Error| match e {
        redb::Error::Corrupted(msg) => {
            corrupt(Corruption::Storage(redb::StorageError::Corrupted(msg)))
        }
        source => StoreError::Read {
            path: path.to_owned(),
            source,
        },
    };
    let table_err = |e: TableError| match e {
        TableError::Storage(s) => read_err(s.into()),
        other => corrupt(Corruption::Table(other)),
    };
    let mut probe = Probe::empty();
    let rx = db.begin_read().map_err(|e| read_err(e.into()))?;

    // Is this file ours, new, or someone else's?
    match rx.open_table(META) {
        Ok(meta) => {
            probe.format = meta
                .get("format")
                .map_err(|e| read_err(e.into()))?
                .map(|v| v.value().to_vec());
            probe.node = meta
                .get("node")
                .map_err(|e| read_err(e.into()))?
                .map(|v| v.value().to_vec());
        }
        Err(TableError::TableDoesNotExist(_)) => {
            if rx
                .list_tables()
                .map_err(|e| read_err(e.into()))?
                .next()
                .is_some()
            {
                // A redb file of another program: not ours to write into.
                return Err(corrupt(Corruption::Meta { key: "format" }));
            }
            return Ok(probe);
        }
        Err(e) => return Err(table_err(e)),
    }
    match probe.format.as_deref() {
        Some([codec::FORMAT]) => {}
        Some([found]) => {
            return Err(StoreError::UnsupportedFormat {
                path: path.to_owned(),
                found: *found,
                supported: codec::FORMAT,
            });
        }
        _ => return Err(corrupt(Corruption::Meta { key: "format" })),
    }

    match rx.open_table(BINDINGS) {
        Ok(table) => {
            for row in table.iter().map_err(|e| read_err(e.into()))? {
                let (k, v) = row.map_err(|e| read_err(e.into()))?;
                let (aor, contact, entry) = codec::decode_entry(v.value()).map_err(|source| {
                    corrupt(Corruption::Record {
                        table: "bindings",
                        source,
                    })
                })?;
                probe.max_hlc = probe.max_hlc.max(entry.version().hlc);
                if entry.deadline() <= now {
                    probe.stale.push(k.value().to_vec());
                } else {
                    probe.table.insert(aor, contact, entry);
                }
            }
        }
        Err(TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(table_err(e)),
    }
    match rx.open_table(SUBSCRIBERS) {
        Ok(table) => {
            for row in table.iter().map_err(|e| read_err(e.into()))? {
                let (_, v) = row.map_err(|e| read_err(e.into()))?;
                probe
                    .subscribers
                    .push(codec::decode_subscriber(v.value()).map_err(|source| {
                        corrupt(Corruption::Record {
                            table: "subscribers",
                            source,
                        })
                    })?);
            }
        }
        Err(TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(table_err(e)),
    }
    Ok(probe)
}

fn classify_open_error(path: &Path, e: redb::DatabaseError) -> StoreError {
    match e {
        redb::DatabaseError::Storage(s @ redb::StorageError::Corrupted(_)) => StoreError::Corrupt {
            path: path.to_owned(),
            source: Corruption::Storage(s),
        },
        // redb reports a file that is not a redb database (bad magic number,
        // impossible header) as invalid data.
        redb::DatabaseError::Storage(redb::StorageError::Io(io))
            if io.kind() == std::io::ErrorKind::InvalidData =>
        {
            StoreError::Corrupt {
                path: path.to_owned(),
                source: Corruption::Storage(redb::StorageError::Io(io)),
            }
        }
        source => StoreError::Open {
            path: path.to_owned(),
            source,
        },
    }
}

/// Shared between the writer thread and its handle.
#[derive(Debug, Default)]
struct Shared {
    /// Write requests sent to the writer and not yet answered.
    in_flight: AtomicU64,
    failed: AtomicBool,
    closed: AtomicBool,
    transactions: AtomicU64,
    requests: AtomicU64,
    ops: AtomicU64,
    largest_txn: AtomicU64,
    /// Commit latency histogram: counts per [`COMMIT_BUCKETS_US`] bound, plus overflow.
    latency: [AtomicU64; COMMIT_BUCKETS_US.len() + 1],
    latency_sum_us: AtomicU64,
}

/// Upper bounds (µs) of the commit-latency histogram buckets: an fsync on
/// an SSD takes 0.1-2 ms; past 100 ms something is wrong with the disk.
pub const COMMIT_BUCKETS_US: [u64; 10] = [
    250, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 500_000,
];

/// Counters of the group-commit writer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Write transactions committed (each one fsync).
    pub transactions: u64,
    /// Requests (one per `update`, `apply`, expiry shard, subscriber write) written.
    pub requests: u64,
    /// Row writes and deletions.
    pub ops: u64,
    /// Most requests that shared one transaction so far.
    pub largest_txn: u64,
    /// Commits (write + fsync) that took at most each [`COMMIT_BUCKETS_US`]
    /// bound (not cumulative); the last element counts the slower ones.
    pub latency: [u64; COMMIT_BUCKETS_US.len() + 1],
    /// Total commit time, µs.
    pub latency_sum_us: u64,
}

/// The handle to the writer thread.
#[derive(Debug)]
pub(crate) struct Writer {
    tx: mpsc::SyncSender<Request>,
    shared: Arc<Shared>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    path: PathBuf,
}

impl Writer {
    /// Start the writer thread; it owns `db` from now on.
    pub(crate) fn start(db: Database, path: &Path) -> Result<Self, StoreError> {
        let (tx, rx) = mpsc::sync_channel(QUEUE_CAPACITY);
        let shared = Arc::new(Shared::default());
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("regmesh-location-writer".to_owned())
            .spawn(move || run(db, rx, thread_shared))
            .map_err(|source| StoreError::Io {
                context: "starting the commit writer thread",
                source,
            })?;
        Ok(Self {
            tx,
            shared,
            thread: Mutex::new(Some(thread)),
            path: path.to_owned(),
        })
    }

    /// True until a commit failed or the thread died; false once closed.
    pub(crate) fn healthy(&self) -> bool {
        !self.shared.failed.load(Ordering::Acquire) && !self.shared.closed.load(Ordering::Acquire)
    }

    /// Why a write would be refused right now, if it would.
    pub(crate) fn refusal(&self) -> Option<StoreError> {
        if self.shared.closed.load(Ordering::Acquire) {
            Some(StoreError::Closed)
        } else if self.shared.failed.load(Ordering::Acquire) {
            Some(StoreError::Unhealthy)
        } else {
            None
        }
    }

    /// Queue `ops` for the next transaction. Blocks while the queue is full
    /// (see the module doc). The returned commit resolves once they are durable.
    pub(crate) fn submit(&self, ops: Vec<PersistOp>) -> Commit {
        if ops.is_empty() {
            return Commit::done();
        }
        if let Some(e) = self.refusal() {
            return Commit::failed(e);
        }
        let (pending, done) = commit::pending();
        self.shared.in_flight.fetch_add(1, Ordering::AcqRel);
        match self.tx.send(Request::Write {
            ops,
            done: Some(done),
        }) {
            Ok(()) => pending,
            Err(_) => {
                self.shared.in_flight.fetch_sub(1, Ordering::AcqRel);
                Commit::failed(self.refusal().unwrap_or(StoreError::WriterGone))
            }
        }
    }

    /// Queue `ops` without blocking: a full queue is
    /// [`StoreError::Overloaded`] and nothing is queued, so the caller can
    /// leave memory untouched and answer "try later". This is the path of
    /// requests from the network: it never parks an async worker thread.
    pub(crate) fn try_submit(&self, ops: Vec<PersistOp>) -> Result<Commit, StoreError> {
        if let Some(e) = self.refusal() {
            return Err(e);
        }
        let (pending, done) = commit::pending();
        self.shared.in_flight.fetch_add(1, Ordering::AcqRel);
        let sent = self.tx.try_send(Request::Write {
            ops,
            done: Some(done),
        });
        match sent {
            Ok(()) => Ok(pending),
            Err(e) => {
                self.shared.in_flight.fetch_sub(1, Ordering::AcqRel);
                Err(match e {
                    mpsc::TrySendError::Full(_) => StoreError::Overloaded,
                    mpsc::TrySendError::Disconnected(_) => {
                        self.refusal().unwrap_or(StoreError::WriterGone)
                    }
                })
            }
        }
    }

    /// A commit that resolves once every write queued before it is durable:
    /// a reader that saw state a pending write produced (a retransmission,
    /// a query) must not confirm it before it is on disk. Immediate when
    /// nothing is in flight, which is the common case for queries.
    pub(crate) fn barrier(&self) -> Commit {
        if self.shared.in_flight.load(Ordering::Acquire) == 0 {
            return Commit::done();
        }
        self.try_submit(Vec::new()).unwrap_or_else(Commit::failed)
    }

    /// Queue `ops` without anyone waiting (startup cleanup).
    pub(crate) fn submit_detached(&self, ops: Vec<PersistOp>) {
        if ops.is_empty() {
            return;
        }
        self.shared.in_flight.fetch_add(1, Ordering::AcqRel);
        if self.tx.send(Request::Write { ops, done: None }).is_err() {
            self.shared.in_flight.fetch_sub(1, Ordering::AcqRel);
            tracing::error!(path = %self.path.display(), "commit writer gone before startup cleanup");
        }
    }

    /// Write everything queued, close the database and stop the thread.
    /// Idempotent: later calls return `Ok(())`.
    pub(crate) fn close(&self) -> Result<(), StoreError> {
        let Some(thread) = self.thread.lock().take() else {
            return Ok(());
        };
        let (done, rx) = mpsc::channel();
        let result = match self.tx.send(Request::Close { done }) {
            Ok(()) => rx.recv().unwrap_or(Err(StoreError::WriterGone)),
            Err(_) => Err(StoreError::WriterGone),
        };
        self.shared.closed.store(true, Ordering::Release);
        if thread.join().is_err() {
            tracing::error!(path = %self.path.display(), "location commit writer panicked");
            return Err(StoreError::WriterGone);
        }
        result
    }

    pub(crate) fn stats(&self) -> CommitStats {
        let s = &self.shared;
        CommitStats {
            transactions: s.transactions.load(Ordering::Relaxed),
            requests: s.requests.load(Ordering::Relaxed),
            ops: s.ops.load(Ordering::Relaxed),
            largest_txn: s.largest_txn.load(Ordering::Relaxed),
            latency: std::array::from_fn(|i| s.latency[i].load(Ordering::Relaxed)),
            latency_sum_us: s.latency_sum_us.load(Ordering::Relaxed),
        }
    }
}

/// Marks the store failed if the writer thread ends without a clean close
/// (a panic unwinding through it).
struct FailOnUnwind(Arc<Shared>);

impl Drop for FailOnUnwind {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.failed.store(true, Ordering::Release);
        }
    }
}

/// The writer thread's loop.
fn run(db: Database, rx: mpsc::Receiver<Request>, shared: Arc<Shared>) {
    let _guard = FailOnUnwind(shared.clone());
    let mut writes: Vec<(Vec<PersistOp>, Option<Reply>)> = Vec::new();
    loop {
        // Block for the first request, then take everything queued behind it.
        let Ok(first) = rx.recv() else {
            // Every handle is gone without a close: close the file cleanly.
            if let Err(e) = db.close() {
                tracing::error!(error = %e, "closing the location database");
            }
            return;
        };
        let mut close = None;
        let mut next = Some(first);
        while let Some(req) = next {
            match req {
                Request::Write { ops, done } => writes.push((ops, done)),
                Request::Close { done } => {
                    close = Some(done);
                    break;
                }
            }
            next = if writes.len() < MAX_REQUESTS_PER_TXN {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        if !writes.is_empty() {
            write_batch(&db, &mut writes, &shared);
        }
        if let Some(done) = close {
            shared.closed.store(true, Ordering::Release);
            // Anything sent after the close request is refused.
            while let Ok(req) = rx.try_recv() {
                if let Request::Write { done: Some(d), .. } = req {
                    d.complete(Err(StoreError::Closed));
                }
            }
            let result = db.close().map_err(|e| StoreError::Commit {
                source: Arc::new(e.into()),
            });
            let _ = done.send(result);
            return;
        }
    }
}

/// Write `writes` in one transaction, answer every waiter, and clear `writes`.
fn write_batch(db: &Database, writes: &mut Vec<(Vec<PersistOp>, Option<Reply>)>, shared: &Shared) {
    let result = if shared.failed.load(Ordering::Acquire) {
        Err(None)
    } else if writes.iter().all(|(ops, _)| ops.is_empty()) {
        // Only barriers: everything queued before them is already durable.
        Ok(())
    } else {
        let watch = crate::clock::Stopwatch::start();
        let r = commit(db, writes);
        let us = watch.elapsed_micros();
        let bucket = COMMIT_BUCKETS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(COMMIT_BUCKETS_US.len());
        shared.latency[bucket].fetch_add(1, Ordering::Relaxed);
        shared.latency_sum_us.fetch_add(us, Ordering::Relaxed);
        r.map_err(|e| {
            shared.failed.store(true, Ordering::Release);
            tracing::error!(error = %e, "location commit failed; store is now unhealthy");
            Some(Arc::new(e))
        })
    };
    let ops: usize = writes.iter().map(|(o, _)| o.len()).sum();
    if result.is_ok() && ops > 0 {
        let n = writes.len() as u64;
        shared.transactions.fetch_add(1, Ordering::Relaxed);
        shared.requests.fetch_add(n, Ordering::Relaxed);
        shared.ops.fetch_add(ops as u64, Ordering::Relaxed);
        shared.largest_txn.fetch_max(n, Ordering::Relaxed);
    }
    shared
        .in_flight
        .fetch_sub(writes.len() as u64, Ordering::AcqRel);
    for (_, done) in writes.drain(..) {
        if let Some(done) = done {
            let reply = match &result {
                Ok(()) => Ok(()),
                Err(Some(source)) => Err(StoreError::Commit {
                    source: source.clone(),
                }),
                Err(None) => Err(StoreError::Unhealthy),
            };
            // The waiter may have given up (dropped its Commit); nothing to do.
            done.complete(reply);
        }
    }
}

fn commit(db: &Database, writes: &[(Vec<PersistOp>, Option<Reply>)]) -> Result<(), redb::Error> {
    let mut tx = db.begin_write()?;
    tx.set_durability(Durability::Immediate)?;
    {
        let mut bindings = tx.open_table(BINDINGS)?;
        let mut subscribers = tx.open_table(SUBSCRIBERS)?;
        for op in writes.iter().flat_map(|(ops, _)| ops) {
            match op {
                PersistOp::PutBinding { key, value } => {
                    bindings.insert(key.as_slice(), value.as_slice())?;
                }
                PersistOp::DeleteBinding { key } => {
                    bindings.remove(key.as_slice())?;
                }
                PersistOp::PutSubscriber { key, value } => {
                    subscribers.insert(key.as_str(), value.as_slice())?;
                }
                PersistOp::DeleteSubscriber { key } => {
                    subscribers.remove(key.as_str())?;
                }
                #[cfg(test)]
                PersistOp::FailForTest => return Err(redb::Error::ValueTooLarge(usize::MAX)),
            }
        }
    }
    tx.commit()?;
    Ok(())
}
