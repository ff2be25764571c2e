//! Durability: the group-commit writer that appends every change to the
//! change log, and the checkpointer that writes snapshots so the log stays
//! short. The file layout and recovery are in [`crate::disk`].
//!
//! # Group commit
//!
//! One dedicated thread owns the newest log segment. Writers (REGISTER
//! handling, RPC, replication, the expiry sweep) send a [`Request`] — a
//! batch of row writes plus the completer of its [`Commit`] — over a bounded
//! channel. The thread takes the first request, drains every request
//! already queued behind it (up to [`MAX_REQUESTS_PER_TXN`]), appends them
//! all with one `write` and one `fdatasync`, and only then resolves every
//! waiter (running the callbacks of [`Commit::on_durable`] right there).
//! Under load, many REGISTERs share one fsync; when idle, a single write
//! costs one fsync and no added delay.
//!
//! Requests are appended in channel order. The store sends a request while
//! it still holds the lock of the AoR's shard, so the log order of the
//! writes of one AoR is their order in memory, and replaying the log always
//! rebuilds the in-memory table.
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
//! **Failure.** A failed append or fsync is fatal: every waiter of that
//! batch gets [`StoreError::Commit`], the store turns unhealthy, and every
//! later request is answered [`StoreError::Unhealthy`] without touching the
//! file (after a failed fsync the kernel may have dropped the dirty pages,
//! so retrying could acknowledge data that is not on disk). If the thread
//! dies, pending waiters see [`StoreError::WriterGone`] and the store also
//! turns unhealthy.
//!
//! # Segments and snapshots
//!
//! A segment is closed and the next one started when it passes
//! [`SEGMENT_BYTES`], or when a snapshot is due: when the log written since
//! the last snapshot exceeds both [`SNAPSHOT_MIN_LOG_BYTES`] and the size of
//! the last snapshot (so snapshot work stays proportional to log traffic,
//! and disk use bounded by about twice the snapshot plus four segments). The
//! writer then hands the number N of the segment it just closed to the
//! checkpointer thread, which copies the in-memory table shard by shard
//! (one shard lock at a time, briefly) into `snapshot-N`, and once that is
//! durable deletes segments up to N (keeping up to two full ones for reuse,
//! see `disk`) and older snapshots.
//!
//! The snapshot is taken after segment N was closed, so every change not
//! yet in memory when a shard is copied is queued after that and lands in
//! a segment after N; replaying those segments over the snapshot, in order,
//! rebuilds exactly the table (a change both copied and replayed is
//! replayed to the same final value). A failed snapshot is logged, counted
//! and retried after more log has been written; it never endangers the
//! log, which stays until a snapshot covers it.
//!
//! When the writer appends to a segment it had to start in a new, growing
//! file (no covered segment to reuse) and a 64th of a segment has been
//! written to it, the same thread fills a zero spare in the background
//! (`disk::make_spare`), and the writer moves to it at the first commit
//! after it is ready, so appends overwrite in place again.

use crate::clock::Clock;
use crate::commit::{self, Commit, Completer};
use crate::disk::{self, FileKind};
use crate::error::StoreError;
use crate::model::NodeId;
use crate::subscribers::Subscribers;
use crate::table::Table;
use parking_lot::Mutex;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;

/// Requests the writer channel holds before `update` is refused (and other
/// senders block). Each request is one AoR's rows, a few hundred bytes, so
/// a full queue is a few MB.
pub(crate) const QUEUE_CAPACITY: usize = 16_384;
/// Requests written in one transaction at most (bounds a transaction's size
/// and the latency of the first waiter in it).
pub(crate) const MAX_REQUESTS_PER_TXN: usize = 4096;
/// A segment is closed once it is this large (default of
/// [`StoreOptions::segment_bytes`]).
pub const SEGMENT_BYTES: u64 = 64 << 20;
/// No snapshot before this much log has been written since the last one
/// (default of [`StoreOptions::snapshot_min_log_bytes`]).
pub const SNAPSHOT_MIN_LOG_BYTES: u64 = 64 << 20;

/// The group-commit writer thread's name: it appends, fsyncs and runs the
/// commit callbacks (which send UDP answers). At most 15 bytes, the
/// kernel's limit for a thread's name.
pub(crate) const WRITER_THREAD: &str = "store-writer";
/// The checkpointer thread's name: snapshots and zero spares.
pub(crate) const SNAPSHOT_THREAD: &str = "store-snapshot";
const _: () = assert!(WRITER_THREAD.len() <= 15 && SNAPSHOT_THREAD.len() <= 15);

/// Default of [`StoreOptions::commit_interval`]: 500 µs. Measured on the
/// 2-core test machine at 60,000 REGISTER/s paced (BENCHMARKS.md, "Commit
/// pacing"): server CPU per REGISTER 12.6-13.1 µs with none, 10.5-11.0 µs
/// with 500 µs, 9.9-10.0 µs with 1 ms; p99 2.3-2.8 ms, 2.6 ms, 2.8-2.9 ms;
/// p50 +0.25 ms. Half a millisecond more for a REGISTER is invisible to a
/// phone (its retransmission timer starts at 500 ms); a sixth less CPU
/// per REGISTER is more REGISTERs in a re-registration storm.
pub const COMMIT_INTERVAL: std::time::Duration = std::time::Duration::from_micros(500);

/// Commits are paced (see [`StoreOptions::commit_interval`]) only after a
/// group commit of at least this many requests. Why: a small group means
/// few writers, and a few writers that each wait for their answer before
/// sending more (a proxy with a handful of REGISTERs in flight, a
/// provisioning script) would only be slowed by the wait, since nothing
/// else arrives to share the fsync: pacing took a client with 4 in flight
/// from 14,400 to 6,700 REGISTERs/s (BENCHMARKS.md). A large group
/// means many independent senders, whose requests keep arriving while
/// the writer waits, which is when the wait saves fsyncs. Why 16
/// (`bench/quick.sh` and `bench/profile.sh` on the 2-core machine, against
/// 4 and against no pacing at all): with 16 in flight a client got 27,000-
/// 28,500 REGISTERs/s (4: 22,000-25,700; none: 27,800-28,600), and at
/// 60,000/s paced the server's CPU per REGISTER stayed at 11.9-12.5 µs (4:
/// 12.2-12.5; none: 13.5-14.1), where groups are ~20 and still paced.
pub const PACE_FROM_GROUP: usize = 16;

/// Tuning of the log and snapshots. The defaults suit production; tests
/// shrink them to exercise many segments and snapshots quickly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// A segment is closed and the next started once it is this large.
    pub segment_bytes: u64,
    /// A snapshot is started once the log written since the last one is
    /// larger than both this and the last snapshot.
    pub snapshot_min_log_bytes: u64,
    /// Group commits start at most this often once a group commit carried
    /// [`PACE_FROM_GROUP`] requests or more. A write arriving later than
    /// this after the last commit started, or after a small group, is
    /// written at once, so an idle or lightly loaded node adds no latency;
    /// under load each fsync covers the writes of a whole interval. Why:
    /// an fsync costs the writer tens of microseconds of CPU whatever it
    /// carries (on a virtual disk, the device kicks and interrupts;
    /// BENCHMARKS.md), so spacing them trades up to this much added
    /// latency for less CPU per REGISTER.
    pub commit_interval: std::time::Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            segment_bytes: SEGMENT_BYTES,
            snapshot_min_log_bytes: SNAPSHOT_MIN_LOG_BYTES,
            commit_interval: COMMIT_INTERVAL,
        }
    }
}

/// One row write.
#[derive(Debug)]
pub(crate) enum PersistOp {
    /// A binding or tombstone: its codec value (it names its own key).
    PutBinding { value: Vec<u8> },
    /// `aor \0 contact`.
    DeleteBinding { key: Vec<u8> },
    /// A subscriber's codec value.
    PutSubscriber { value: Vec<u8> },
    /// `user@domain`.
    DeleteSubscriber { key: String },
    /// Test hook: makes the append fail, to exercise the failure path.
    #[cfg(test)]
    FailForTest,
}

impl PersistOp {
    fn frame(&self, out: &mut Vec<u8>, n: u64) -> std::io::Result<()> {
        match self {
            Self::PutBinding { value } => disk::frame(out, n, disk::REC_PUT_BINDING, value),
            Self::DeleteBinding { key } => disk::frame(out, n, disk::REC_DELETE_BINDING, key),
            Self::PutSubscriber { value } => disk::frame(out, n, disk::REC_PUT_SUBSCRIBER, value),
            Self::DeleteSubscriber { key } => {
                disk::frame(out, n, disk::REC_DELETE_SUBSCRIBER, key.as_bytes());
            }
            #[cfg(test)]
            Self::FailForTest => return Err(std::io::Error::other("injected failure")),
        }
        Ok(())
    }
}

type Reply = Completer;

/// What the writer thread receives.
pub(crate) enum Request {
    Write {
        ops: Vec<PersistOp>,
        done: Option<Reply>,
    },
    /// Start a snapshot now (unless one is being written).
    Snapshot,
    Close {
        done: mpsc::Sender<Result<(), StoreError>>,
    },
}

/// What the checkpointer copies into a snapshot.
pub(crate) struct Source {
    pub(crate) table: Arc<Table>,
    pub(crate) subscribers: Arc<Subscribers>,
    pub(crate) clock: Arc<dyn Clock>,
}

/// What the checkpointer thread is asked to do.
enum Job {
    /// Write a snapshot covering segments up to this one.
    Snapshot(u64),
    /// Fill a zero spare segment (named after this growing segment).
    Spare(u64),
}

/// Length of a zero spare: a segment closes once it passes `segment_bytes`,
/// so the commit that crosses the limit still lands in the spare's zeros
/// unless it is larger than the slack.
fn spare_len(segment_bytes: u64) -> u64 {
    segment_bytes + (segment_bytes / 16).min(1 << 20)
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
    /// Log bytes appended since the last snapshot was started.
    since_snapshot: AtomicU64,
    /// Log bytes appended since start.
    log_bytes: AtomicU64,
    /// Size of the newest snapshot.
    snapshot_bytes: AtomicU64,
    /// A snapshot is being written.
    checkpoint_busy: AtomicBool,
    /// Tells the checkpointer to abandon its snapshot or spare (closing).
    stop_checkpoint: AtomicBool,
    /// A zero spare was asked for and is not finished (at most one).
    spare_pending: AtomicBool,
    /// A zero spare is in the directory for the writer to move to.
    spare_ready: AtomicBool,
    snapshots: AtomicU64,
    snapshot_failures: AtomicU64,
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
    /// Snapshots written since start.
    pub snapshots: u64,
    /// Snapshots that failed (the log they would have replaced is kept).
    pub snapshot_failures: u64,
    /// Log bytes appended since the last snapshot began.
    pub log_bytes_since_snapshot: u64,
    /// Log bytes appended since start (records and their framing).
    pub log_bytes: u64,
    /// Size of the newest snapshot, bytes (0 before the first).
    pub snapshot_bytes: u64,
    /// A snapshot is being written now.
    pub snapshot_in_progress: bool,
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
    /// Create the first segment and start the writer and checkpointer
    /// threads; the writer holds the directory `lock` from now on.
    pub(crate) fn start(loaded: Start, source: Source) -> Result<Self, StoreError> {
        let Start {
            dir,
            node,
            next_segment,
            lock,
            log_bytes,
            snapshot_bytes,
            options,
        } = loaded;
        let io = |context| move |source| StoreError::Io { context, source };
        let log =
            Log::create(&dir, node, next_segment).map_err(io("creating a change-log segment"))?;
        let (tx, rx) = mpsc::sync_channel(QUEUE_CAPACITY);
        let shared = Arc::new(Shared::default());
        shared.since_snapshot.store(log_bytes, Ordering::Relaxed);
        shared
            .snapshot_bytes
            .store(snapshot_bytes, Ordering::Relaxed);
        // Room for one snapshot and one spare: neither request is dropped.
        let (ck_tx, ck_rx) = mpsc::sync_channel(2);
        let ck_shared = shared.clone();
        let ck_dir = dir.clone();
        // Thread names are cut to 15 bytes by the kernel (what `top -H`,
        // `ps -L` and `perf` show): both names must differ within that.
        let checkpointer = std::thread::Builder::new()
            .name(SNAPSHOT_THREAD.to_owned())
            .spawn(move || {
                checkpointer(
                    ck_dir,
                    node,
                    source,
                    ck_rx,
                    ck_shared,
                    options.segment_bytes,
                )
            })
            .map_err(io("starting the snapshot thread"))?;
        let thread_shared = shared.clone();
        let state = WriterState {
            log,
            options,
            _lock: lock,
            checkpoint: Some((ck_tx, checkpointer)),
        };
        let thread = std::thread::Builder::new()
            .name(WRITER_THREAD.to_owned())
            .spawn(move || run(state, rx, thread_shared))
            .map_err(io("starting the commit writer thread"))?;
        Ok(Self {
            tx,
            shared,
            thread: Mutex::new(Some(thread)),
            path: dir,
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

    /// Ask for a snapshot now (it runs in the background; `stats().snapshots`
    /// counts it when done). Ignored while one is being written.
    pub(crate) fn request_snapshot(&self) -> Result<(), StoreError> {
        if let Some(e) = self.refusal() {
            return Err(e);
        }
        self.tx
            .send(Request::Snapshot)
            .map_err(|_| self.refusal().unwrap_or(StoreError::WriterGone))
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

    /// Write everything queued, stop the threads and release the directory.
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
            snapshots: s.snapshots.load(Ordering::Relaxed),
            snapshot_failures: s.snapshot_failures.load(Ordering::Relaxed),
            log_bytes_since_snapshot: s.since_snapshot.load(Ordering::Relaxed),
            log_bytes: s.log_bytes.load(Ordering::Relaxed),
            snapshot_bytes: s.snapshot_bytes.load(Ordering::Relaxed),
            snapshot_in_progress: s.checkpoint_busy.load(Ordering::Acquire),
        }
    }
}

/// What [`Writer::start`] needs from the load.
pub(crate) struct Start {
    pub(crate) dir: PathBuf,
    pub(crate) node: NodeId,
    pub(crate) next_segment: u64,
    pub(crate) lock: File,
    /// Log bytes already on disk after the newest snapshot.
    pub(crate) log_bytes: u64,
    pub(crate) snapshot_bytes: u64,
    pub(crate) options: StoreOptions,
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

/// The newest segment, open for appending.
struct Log {
    dir: PathBuf,
    node: NodeId,
    n: u64,
    file: File,
    /// Where the next record goes (the file may be longer: recycled).
    len: u64,
    /// The segment started in a new file, so every append changes its size.
    grows: bool,
    buf: Vec<u8>,
}

impl Log {
    /// Start segment `n`, durable (header and directory entry): in a
    /// recycled segment when there is one (see `disk`: overwriting in place
    /// makes every later fdatasync cheaper), else in a new file.
    fn create(dir: &Path, node: NodeId, n: u64) -> std::io::Result<Self> {
        use std::os::unix::fs::FileExt as _;
        let path = disk::segment_path(dir, n);
        let reused = disk::recycled(dir)
            .into_iter()
            .find(|spare| std::fs::rename(spare, &path).is_ok());
        let file = if reused.is_some() {
            std::fs::OpenOptions::new().write(true).open(&path)?
        } else {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)?
        };
        file.write_all_at(&disk::header(FileKind::Log, node, n), 0)?;
        file.sync_all()?;
        disk::sync_dir(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
            node,
            n,
            file,
            len: disk::HEADER_LEN,
            grows: reused.is_none(),
            buf: Vec::with_capacity(1 << 20),
        })
    }

    /// Append every op of `writes` and fdatasync; returns the bytes written.
    fn append(&mut self, writes: &[(Vec<PersistOp>, Option<Reply>)]) -> std::io::Result<u64> {
        self.buf.clear();
        for op in writes.iter().flat_map(|(ops, _)| ops) {
            op.frame(&mut self.buf, self.n)?;
        }
        if self.buf.is_empty() {
            return Ok(0);
        }
        let n = self.write_buf()?;
        if self.buf.capacity() > 8 << 20 {
            // One huge batch (a million-row import) should not pin its buffer.
            self.buf = Vec::with_capacity(1 << 20);
        }
        Ok(n)
    }

    /// Write `buf` at the end of the records and fdatasync.
    fn write_buf(&mut self) -> std::io::Result<u64> {
        use std::os::unix::fs::FileExt as _;
        self.file.write_all_at(&self.buf, self.len)?;
        self.file.sync_data()?;
        let n = self.buf.len() as u64;
        self.len += n;
        Ok(n)
    }

    /// Seal this segment (end-of-segment record, fsync'd) and start the
    /// next one; returns the sealed number.
    fn rotate(&mut self) -> std::io::Result<u64> {
        self.buf.clear();
        disk::frame(&mut self.buf, self.n, disk::REC_SEGMENT_END, &[]);
        self.write_buf()?;
        let next = Self::create(&self.dir, self.node, self.n + 1)?;
        let closed = self.n;
        *self = next;
        Ok(closed)
    }
}

/// Everything the writer thread owns.
struct WriterState {
    log: Log,
    options: StoreOptions,
    /// Held until the thread ends: the directory is ours while it runs.
    _lock: File,
    checkpoint: Option<(mpsc::SyncSender<Job>, std::thread::JoinHandle<()>)>,
}

impl WriterState {
    /// Ask the checkpointer for a zero spare if the current segment grows,
    /// has had a 64th of a segment written to it (a store that writes
    /// little never pays for a segment of zeros: tests, a quiet node) and
    /// none is on its way.
    fn want_spare(&self, shared: &Shared) {
        if self.log.grows
            && self.log.len >= self.options.segment_bytes / 64
            && let Some((tx, _)) = &self.checkpoint
            && !shared.spare_pending.swap(true, Ordering::AcqRel)
            && tx.try_send(Job::Spare(self.log.n)).is_err()
        {
            shared.spare_pending.store(false, Ordering::Release);
        }
    }

    /// Rotate when the segment is full or a snapshot is due, or when it
    /// grows and a zero spare is ready; hand the closed segment to the
    /// checkpointer when a snapshot is due.
    fn maintain(&mut self, shared: &Shared, force: bool) -> std::io::Result<()> {
        let since = shared.since_snapshot.load(Ordering::Relaxed);
        let due = (force
            || since
                >= (self.options.snapshot_min_log_bytes)
                    .max(shared.snapshot_bytes.load(Ordering::Relaxed)))
            && !shared.checkpoint_busy.load(Ordering::Acquire);
        let move_to_spare = self.log.grows && shared.spare_ready.load(Ordering::Acquire);
        if !due && !move_to_spare && self.log.len < self.options.segment_bytes {
            self.want_spare(shared);
            return Ok(());
        }
        let closed = self.log.rotate()?;
        // The new segment started in a spare if there was one; a segment
        // that grows again later found none, and asks for another.
        shared.spare_ready.store(false, Ordering::Release);
        if due && let Some((tx, _)) = &self.checkpoint {
            shared.checkpoint_busy.store(true, Ordering::Release);
            shared.since_snapshot.store(0, Ordering::Relaxed);
            if tx.try_send(Job::Snapshot(closed)).is_err() {
                shared.checkpoint_busy.store(false, Ordering::Release);
            }
        }
        Ok(())
    }

    /// Stop the checkpointer (abandoning a snapshot in progress) and wait for it.
    fn stop_checkpointer(&mut self, shared: &Shared) {
        if let Some((tx, thread)) = self.checkpoint.take() {
            shared.stop_checkpoint.store(true, Ordering::Release);
            drop(tx);
            if thread.join().is_err() {
                tracing::error!("location snapshot thread panicked");
            }
        }
    }
}

/// The writer thread's loop.
fn run(mut state: WriterState, rx: mpsc::Receiver<Request>, shared: Arc<Shared>) {
    let _guard = FailOnUnwind(shared.clone());
    let mut writes: Vec<(Vec<PersistOp>, Option<Reply>)> = Vec::new();
    let interval = state.options.commit_interval;
    let mut last_start: Option<crate::clock::Stopwatch> = None;
    // Requests in the last group commit (see PACE_FROM_GROUP).
    let mut last_group = 0usize;
    loop {
        // Block for the first request, then take everything queued behind it.
        let Ok(first) = rx.recv() else {
            // Every handle is gone without a close.
            state.stop_checkpointer(&shared);
            return;
        };
        // Pace commits (StoreOptions::commit_interval): under load (the
        // last group was large), a write that comes sooner than the
        // interval after the last commit started waits for the rest of it,
        // gathering whatever else arrives meanwhile.
        if let (Request::Write { .. }, Some(t)) = (&first, last_start)
            && last_group >= PACE_FROM_GROUP
            && let Some(rest) = interval.checked_sub(t.elapsed())
            && !rest.is_zero()
        {
            std::thread::sleep(rest);
        }
        if !interval.is_zero() {
            last_start = Some(crate::clock::Stopwatch::start());
        }
        let mut close = None;
        let mut force = false;
        let mut next = Some(first);
        while let Some(req) = next {
            match req {
                Request::Write { ops, done } => writes.push((ops, done)),
                Request::Snapshot => force = true,
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
        last_group = writes.len();
        if !writes.is_empty() {
            write_batch(&mut state.log, &mut writes, &shared);
        }
        if !shared.failed.load(Ordering::Acquire)
            && close.is_none()
            && let Err(e) = state.maintain(&shared, force)
        {
            // Appends go on into the current segment; only its size and
            // the snapshot schedule suffer.
            tracing::error!(error = %e, "could not start a new change-log segment");
        }
        if let Some(done) = close {
            shared.closed.store(true, Ordering::Release);
            // Anything sent after the close request is refused.
            while let Ok(req) = rx.try_recv() {
                if let Request::Write { done: Some(d), .. } = req {
                    d.complete(Err(StoreError::Closed));
                }
            }
            state.stop_checkpointer(&shared);
            let _ = done.send(Ok(()));
            return;
        }
    }
}

/// Append `writes` with one fsync, answer every waiter, and clear `writes`.
fn write_batch(log: &mut Log, writes: &mut Vec<(Vec<PersistOp>, Option<Reply>)>, shared: &Shared) {
    let result = if shared.failed.load(Ordering::Acquire) {
        Err(None)
    } else if writes.iter().all(|(ops, _)| ops.is_empty()) {
        // Only barriers: everything queued before them is already durable.
        Ok(())
    } else {
        let watch = crate::clock::Stopwatch::start();
        let r = log.append(writes);
        let us = watch.elapsed_micros();
        let bucket = COMMIT_BUCKETS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(COMMIT_BUCKETS_US.len());
        shared.latency[bucket].fetch_add(1, Ordering::Relaxed);
        shared.latency_sum_us.fetch_add(us, Ordering::Relaxed);
        match r {
            Ok(bytes) => {
                shared.since_snapshot.fetch_add(bytes, Ordering::Relaxed);
                shared.log_bytes.fetch_add(bytes, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                shared.failed.store(true, Ordering::Release);
                tracing::error!(error = %e, segment = log.n, "appending to the change log failed; store is now unhealthy");
                Err(Some(Arc::new(e)))
            }
        }
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
            done.complete(reply);
        }
    }
}

/// The checkpointer thread: snapshots and zero spares, one job at a time.
fn checkpointer(
    dir: PathBuf,
    node: NodeId,
    source: Source,
    rx: mpsc::Receiver<Job>,
    shared: Arc<Shared>,
    segment_bytes: u64,
) {
    while let Ok(job) = rx.recv() {
        let n = match job {
            Job::Snapshot(n) => n,
            Job::Spare(n) => {
                let stop = || shared.stop_checkpoint.load(Ordering::Acquire);
                match disk::make_spare(&dir, n, spare_len(segment_bytes), stop) {
                    Ok(made) => shared.spare_ready.store(made, Ordering::Release),
                    Err(e) => {
                        tracing::warn!(error = %e, "could not prepare a spare change-log segment; appends go on into a growing file");
                    }
                }
                shared.spare_pending.store(false, Ordering::Release);
                continue;
            }
        };
        let watch = crate::clock::Stopwatch::start();
        let result = disk::write_snapshot(&dir, node, n, |sink| {
            let now = source.clock.now();
            let mut out = Vec::with_capacity(1 << 20);
            // A shard's live entries are copied out under its lock and
            // framed (length, checksum) after it is released: REGISTERs
            // to the shard wait for a copy, not for the encoding. At
            // 1,000,000 bindings a shard holds ~15,600 of them.
            let mut copied: Vec<u8> = Vec::with_capacity(1 << 20);
            let mut lens: Vec<usize> = Vec::new();
            for shard in source.table.shards() {
                if shared.stop_checkpoint.load(Ordering::Acquire) {
                    return Ok(false);
                }
                {
                    let shard = shard.lock();
                    for (_, slots) in shard.records() {
                        for entry in slots.iter().filter(|p| p.deadline() > now) {
                            copied.extend_from_slice(entry.bytes());
                            lens.push(entry.bytes().len());
                        }
                    }
                }
                let mut rest = copied.as_slice();
                for &len in &lens {
                    let (entry, more) = rest.split_at(len);
                    sink.entry(entry, &mut out);
                    rest = more;
                }
                copied.clear();
                lens.clear();
                sink.flush(&mut out)?;
            }
            // In steps, like the shards: all subscribers in one buffer grew
            // it by doubling to megabytes (fresh pages zeroed at every
            // snapshot, ~half of the snapshot's CPU) and wrote them with
            // one large flush, which held the log's commits behind it.
            for s in source.subscribers.all() {
                sink.subscriber(&s, &mut out);
                if out.len() >= disk::SNAPSHOT_SYNC_BYTES as usize {
                    if shared.stop_checkpoint.load(Ordering::Acquire) {
                        return Ok(false);
                    }
                    sink.flush(&mut out)?;
                }
            }
            sink.flush(&mut out)?;
            Ok(true)
        });
        match result {
            Ok(Some(bytes)) => {
                disk::remove_covered(&dir, n, segment_bytes);
                shared.snapshot_bytes.store(bytes, Ordering::Relaxed);
                shared.snapshots.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    snapshot = n,
                    bytes,
                    ms = watch.elapsed_micros() / 1000,
                    "location snapshot written; older log removed"
                );
            }
            Ok(None) => {}
            Err(e) => {
                shared.snapshot_failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(snapshot = n, error = %e, "writing a location snapshot failed; the change log is kept");
            }
        }
        shared.checkpoint_busy.store(false, Ordering::Release);
    }
}
