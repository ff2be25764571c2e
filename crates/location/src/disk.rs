//! The store's directory: change-log segments, snapshots, their framing,
//! and reading them back at startup.
//!
//! ```text
//! <dir>/LOCK                          exclusive lock while a process has the store open
//! <dir>/log-<N>.rml                   change-log segment N (N: 20 decimal digits)
//! <dir>/snapshot-<N>.rms              every entry and subscriber; covers segments <= N
//! <dir>/snapshot-<N>.rms.tmp          a snapshot being written (deleted at open)
//! <dir>/recycle-<N>.rmr               a covered segment kept for reuse (at most 2)
//! <dir>/recycle-zero-<N>.rmr          a zero-filled spare segment (counts among the 2)
//! <dir>/recycle-zero-<N>.rmr.tmp      a spare being filled (deleted at open)
//! ```
//!
//! Both file kinds start with a 24-byte header: an 8-byte magic
//! (`RMSHLOG\0` or `RMSHSNP\0`), `u8` format ([`FORMAT`]), 3 zero bytes,
//! `u32` node id (little-endian, the node that wrote the file) and `u64` N
//! (little-endian, the number in the file's name). Then records:
//!
//! ```text
//! u32 len         length of kind + body (little-endian, 1..=MAX_RECORD)
//! u32 crc         CRC-32 (IEEE) of: N as u64 LE, len as u32 LE, kind, body
//! u8  kind        1 put binding   body = codec entry value (self-contained: aor, contact, entry)
//!                 2 delete binding     = aor, 0x00, contact
//!                 3 put subscriber     = codec subscriber value
//!                 4 delete subscriber  = user@domain
//!                 5 end of snapshot    = u64 LE count of records before it
//!                 6 end of segment     = empty
//! body
//! ```
//!
//! A segment other than the newest always ends with an end-of-segment
//! record: the writer appends it (and fsyncs) before starting the next
//! segment, and an open seals the newest segment it finds before starting
//! its own. Bytes after that record mean nothing.
//!
//! **Recycling.** Appending to a file changes its size, and on ext4 every
//! fdatasync after a size change also commits the journal: measured here at
//! about 1.4× the latency and CPU of an fdatasync that only overwrites
//! blocks. So full segments a snapshot has made obsolete are renamed to
//! `recycle-*` instead of deleted, and the writer starts its next segment
//! in one of them, overwriting it in place. The old records left in it can
//! never pass for new ones: every record's checksum covers the number of
//! the segment it was written for.
//!
//! **Zero-filled spares.** A store that has no covered segment to reuse
//! (a new one, or one whose log grew faster than snapshots freed segments)
//! would append to a growing file, and every fdatasync would write the
//! inode as well: at 10,000 REGISTER/s the writer thread spent 25 µs per
//! REGISTER appending to a new file against 16-17 µs in a zero spare
//! (BENCHMARKS.md). So once the writer has written a 64th of a
//! segment into a new file, the snapshot thread fills a spare with zeros
//! in the background ([`make_spare`]), durable before it is renamed into
//! place, and the writer moves on to it as soon as it is there. Zeros read as the
//! end of the records (a zero length is never a record), exactly like the
//! space after the records of a recycled segment.
//!
//! Putting the file's N into every record's checksum means a record left
//! over from another file (a reused or copied segment) never passes for a
//! record of this one.
//!
//! **Recovery.** Load the newest snapshot (it must be whole: it is written
//! under a temporary name and renamed only after it is fsync'd, so a torn
//! snapshot is corruption), then replay every segment after it in order,
//! each record replacing or deleting its key. The log is written and
//! fsync'd strictly in order and a write is acknowledged only after its
//! fsync, so the only legitimate damage is a torn tail of the newest
//! segment: records from the first one that is short, zero-length or fails
//! its checksum to the end of that segment were never acknowledged, and
//! are cut off (the file is truncated there, with a warning giving the
//! byte count). The same damage in any older segment, a gap in the segment
//! numbers, a bad header or a record that does not decode is
//! [`StoreError::Corrupt`] and nothing in the directory is modified.
//!
//! Why a log and snapshots rather than a B-tree file (redb until this
//! format): BENCHMARKS.md measured redb writing ~4 KB per REGISTER and its
//! file growing from 64 MiB to ~1 GiB for 50,000 bindings under refreshes,
//! halving throughput. Here a change costs its own ~200-400 bytes appended,
//! and space is bounded by one snapshot plus the log written since it.

use crate::clock::Timestamp;
use crate::codec;
use crate::error::{Corruption, StoreError};
use crate::model::{Hlc, NodeId};
use crate::packed::Packed;
use crate::store::Subscriber;
use crate::table::TableBuilder;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

/// The on-disk format this build writes and reads (1 was the redb file).
pub(crate) const FORMAT: u8 = 2;
const LOG_MAGIC: [u8; 8] = *b"RMSHLOG\0";
const SNAP_MAGIC: [u8; 8] = *b"RMSHSNP\0";
pub(crate) const HEADER_LEN: u64 = 24;
/// Largest record accepted: a binding is a few hundred bytes; anything
/// near this is damage, not data.
pub(crate) const MAX_RECORD: u32 = 16 << 20;

pub(crate) const REC_PUT_BINDING: u8 = 1;
pub(crate) const REC_DELETE_BINDING: u8 = 2;
pub(crate) const REC_PUT_SUBSCRIBER: u8 = 3;
pub(crate) const REC_DELETE_SUBSCRIBER: u8 = 4;
pub(crate) const REC_END: u8 = 5;
pub(crate) const REC_SEGMENT_END: u8 = 6;
/// Recycled segments kept for reuse at most.
const MAX_RECYCLED: usize = 2;

/// Which kind of file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileKind {
    Log,
    Snapshot,
}

impl FileKind {
    fn magic(self) -> [u8; 8] {
        match self {
            Self::Log => LOG_MAGIC,
            Self::Snapshot => SNAP_MAGIC,
        }
    }
}

pub(crate) fn log_name(n: u64) -> String {
    format!("log-{n:020}.rml")
}

pub(crate) fn snapshot_name(n: u64) -> String {
    format!("snapshot-{n:020}.rms")
}

fn recycled_name(n: u64) -> String {
    format!("recycle-{n:020}.rmr")
}

fn spare_name(n: u64) -> String {
    format!("recycle-zero-{n:020}.rmr")
}

/// Bytes written between two fsyncs while filling a spare: small, like a
/// snapshot's steps ([`SNAPSHOT_SYNC_BYTES`]), so that a commit's device
/// flush never waits behind more than this many zeros.
const SPARE_SYNC_BYTES: u64 = 128 << 10;

/// Fill a spare segment of `len` bytes with zeros, make it durable and
/// rename it to `recycle-zero-<n>.rmr`, where the writer's next segment
/// can start ([`recycled`]). `n` only makes the name unique (the number of
/// the segment that had to grow). Gives up, removing its temporary file,
/// as soon as `stop` returns true (the store is closing); returns whether
/// the spare was made.
pub(crate) fn make_spare(
    dir: &Path,
    n: u64,
    len: u64,
    stop: impl Fn() -> bool,
) -> std::io::Result<bool> {
    use std::os::unix::fs::FileExt as _;
    let done = dir.join(spare_name(n));
    let tmp = dir.join(format!("{}.tmp", spare_name(n)));
    let result = (|| {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        // One page per write: the page cache then holds the spare in
        // single-page folios, as if appended. Written in one call, it
        // would hold large folios, and every small append of the writer
        // would walk all the blocks of one (measured: ~10% of the
        // writer's CPU in ext4_block_write_begin and ext4_bio_write_folio).
        const PAGE: usize = 4096;
        let zeros = [0u8; PAGE];
        let mut at = 0;
        while at < len {
            if stop() {
                return Ok(false);
            }
            let end = (at + SPARE_SYNC_BYTES).min(len);
            while at < end {
                let n = (end - at).min(PAGE as u64) as usize;
                file.write_all_at(&zeros[..n], at)?;
                at += n as u64;
            }
            file.sync_data()?;
        }
        file.sync_all()?;
        std::fs::rename(&tmp, &done)?;
        sync_dir(dir)?;
        Ok(true)
    })();
    if !matches!(result, Ok(true)) {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Recycled segments in `dir` (full paths), any order.
pub(crate) fn recycled(dir: &Path) -> Vec<PathBuf> {
    let Ok(items) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    items
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with("recycle-") && n.ends_with(".rmr"))
        })
        .map(|e| e.path())
        .collect()
}

fn parse_name(name: &str) -> Option<(FileKind, u64)> {
    let (kind, digits) = if let Some(rest) = name.strip_prefix("log-") {
        (FileKind::Log, rest.strip_suffix(".rml")?)
    } else if let Some(rest) = name.strip_prefix("snapshot-") {
        (FileKind::Snapshot, rest.strip_suffix(".rms")?)
    } else {
        return None;
    };
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((kind, digits.parse().ok()?))
}

/// The header of file `n` of `kind` written by `node`.
pub(crate) fn header(kind: FileKind, node: NodeId, n: u64) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..8].copy_from_slice(&kind.magic());
    h[8] = FORMAT;
    h[12..16].copy_from_slice(&node.0.to_le_bytes());
    h[16..24].copy_from_slice(&n.to_le_bytes());
    h
}

/// Append one framed record to `out`.
pub(crate) fn frame(out: &mut Vec<u8>, n: u64, kind: u8, body: &[u8]) {
    let len = u32::try_from(body.len() + 1).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&checksum(n, len, kind, body).to_le_bytes());
    out.push(kind);
    out.extend_from_slice(body);
}

fn checksum(n: u64, len: u32, kind: u8, body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&n.to_le_bytes());
    h.update(&len.to_le_bytes());
    h.update(&[kind]);
    h.update(body);
    h.finalize()
}

/// fsync a directory, so that files created, renamed or removed in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// What [`open`] found on disk.
pub(crate) struct Loaded {
    pub(crate) table: crate::table::Table,
    pub(crate) subscribers: Vec<Subscriber>,
    /// The largest version stamp found (the HLC must move past it).
    pub(crate) max_hlc: Hlc,
    /// The lock held on the directory; dropping it releases the store.
    pub(crate) lock: File,
    /// Number of the first segment the writer should create.
    pub(crate) next_segment: u64,
    /// Bytes of log replayed (segments after the snapshot).
    pub(crate) log_bytes: u64,
    /// Size of the snapshot loaded (0 without one).
    pub(crate) snapshot_bytes: u64,
    /// Entries past their deadline at load, not loaded.
    pub(crate) expired: u64,
}

/// Entries and subscribers as records replay them.
struct Replay {
    table: TableBuilder,
    subscribers: HashMap<String, Subscriber>,
    max_hlc: Hlc,
}

impl Replay {
    fn apply(&mut self, kind: u8, body: &[u8], file: &Path) -> Result<(), StoreError> {
        let corrupt = |source| StoreError::Corrupt {
            path: file.to_owned(),
            source,
        };
        match kind {
            REC_PUT_BINDING => {
                let (entry, view) = Packed::read(body).map_err(|source| {
                    corrupt(Corruption::Record {
                        table: "bindings",
                        source,
                    })
                })?;
                self.max_hlc = self.max_hlc.max(view.version().hlc);
                self.table.insert(view.aor, entry);
            }
            REC_DELETE_BINDING => {
                let nul = body.iter().position(|&b| b == 0);
                let parts = nul.and_then(|i| {
                    Some((
                        std::str::from_utf8(&body[..i]).ok()?,
                        std::str::from_utf8(&body[i + 1..]).ok()?,
                    ))
                });
                let Some((aor, contact)) = parts else {
                    return Err(corrupt(Corruption::Record {
                        table: "bindings",
                        source: codec::DecodeError {
                            offset: 0,
                            what: "aor NUL contact",
                        },
                    }));
                };
                self.table.remove(aor, contact);
            }
            REC_PUT_SUBSCRIBER => {
                let s = codec::decode_subscriber(body).map_err(|source| {
                    corrupt(Corruption::Record {
                        table: "subscribers",
                        source,
                    })
                })?;
                self.subscribers
                    .insert(codec::subscriber_key(&s.user, &s.domain), s);
            }
            REC_DELETE_SUBSCRIBER => {
                let key = std::str::from_utf8(body).map_err(|_| {
                    corrupt(Corruption::Record {
                        table: "subscribers",
                        source: codec::DecodeError {
                            offset: 0,
                            what: "UTF-8 key",
                        },
                    })
                })?;
                self.subscribers.remove(key);
            }
            // End records are handled by the readers; anywhere else they,
            // like an unknown kind, are damage.
            other => return Err(corrupt(Corruption::RecordKind { kind: other })),
        }
        Ok(())
    }
}

/// Open the store directory `dir` (creating it when its parent exists),
/// lock it, and read it whole.
pub(crate) fn open(dir: &Path, node: NodeId, now: Timestamp) -> Result<Loaded, StoreError> {
    let open_err = |source| StoreError::Open {
        path: dir.to_owned(),
        source,
    };
    match std::fs::create_dir(dir) {
        Ok(()) => {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent).map_err(open_err)?;
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            if !dir.is_dir() {
                return Err(open_err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "exists and is not a directory (a store is a directory)",
                )));
            }
        }
        Err(e) => return Err(open_err(e)),
    }
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("LOCK"))
        .map_err(open_err)?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(open_err(std::io::Error::new(
                std::io::ErrorKind::WouldBlock,
                "another process has this store open (LOCK is held)",
            )));
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(open_err(e)),
    }

    let mut snapshots = Vec::new();
    let mut segments = Vec::new();
    let mut temporaries = Vec::new();
    for item in std::fs::read_dir(dir).map_err(open_err)? {
        let item = item.map_err(open_err)?;
        let name = item.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(".rms.tmp") || name.ends_with(".rmr.tmp") {
            temporaries.push(item.path());
        } else if let Some((kind, n)) = parse_name(name) {
            match kind {
                FileKind::Log => segments.push(n),
                FileKind::Snapshot => snapshots.push(n),
            }
        }
    }
    snapshots.sort_unstable();
    segments.sort_unstable();

    let mut replay = Replay {
        table: TableBuilder::new(),
        subscribers: HashMap::new(),
        max_hlc: Hlc(0),
    };
    let base = snapshots.last().copied();
    let mut snapshot_bytes = 0;
    if let Some(n) = base {
        let path = dir.join(snapshot_name(n));
        snapshot_bytes = read_snapshot(&path, n, node, &mut replay)?;
    }
    // Segments the snapshot covers are only left over from an interrupted
    // cleanup; the ones after it must follow each other without a gap.
    let replayed: Vec<u64> = segments
        .iter()
        .copied()
        .filter(|&s| base.is_none_or(|b| s > b))
        .collect();
    if let Some(&first) = replayed.first()
        && let Some(b) = base
        && first != b + 1
    {
        return Err(StoreError::Corrupt {
            path: dir.join(log_name(b + 1)),
            source: Corruption::Missing {
                what: "change-log segment right after the snapshot",
            },
        });
    }
    for w in replayed.windows(2) {
        if w[1] != w[0] + 1 {
            return Err(StoreError::Corrupt {
                path: dir.join(log_name(w[0] + 1)),
                source: Corruption::Missing {
                    what: "change-log segment between two others",
                },
            });
        }
    }
    // Read every segment before touching anything: a damaged older segment
    // must leave the directory exactly as it was.
    let mut log_bytes = 0;
    let mut unsealed = None;
    for (i, &n) in replayed.iter().enumerate() {
        let path = dir.join(log_name(n));
        let last = i + 1 == replayed.len();
        let end = read_segment(&path, n, node, last, &mut replay)?;
        log_bytes += end.valid_len;
        if !end.sealed {
            unsealed = Some((path, n, end));
        }
    }

    // From here on the directory is ours and known good: seal the newest
    // segment (only it can be unsealed) so that it reads as complete once
    // the writer has started the next one.
    if let Some((path, n, end)) = unsealed {
        if end.file_len > end.valid_len {
            tracing::info!(
                path = %path.display(),
                records_end = end.valid_len,
                file_len = end.file_len,
                "newest change-log segment: bytes after its last whole record (space of a recycled segment, or a write a crash cut short, which was never acknowledged) are ignored"
            );
        }
        seal(&path, node, n, end).map_err(open_err)?;
    }
    for t in temporaries {
        if let Err(e) = std::fs::remove_file(&t) {
            tracing::warn!(path = %t.display(), error = %e, "could not remove an unfinished snapshot or spare segment");
        }
    }
    if let Some(b) = base {
        remove_covered(dir, b, u64::MAX);
    }

    let next_segment = segments
        .last()
        .copied()
        .max(base)
        .map_or(1, |n| n.saturating_add(1));
    let Replay {
        table,
        subscribers,
        max_hlc,
    } = replay;
    let (table, expired) = table.finish_at(now);
    let mut subscribers: Vec<Subscriber> = subscribers.into_values().collect();
    subscribers.sort_by(|a, b| (&a.domain, &a.user).cmp(&(&b.domain, &b.user)));
    Ok(Loaded {
        table,
        subscribers,
        max_hlc,
        lock,
        next_segment,
        log_bytes,
        snapshot_bytes,
        expired,
    })
}

/// Remove segments covered by snapshot `base` and snapshots older than it;
/// keep up to [`MAX_RECYCLED`] covered segments of at least `recycle_len`
/// bytes for reuse. Best effort: a leftover is removed at the next
/// checkpoint or open.
pub(crate) fn remove_covered(dir: &Path, base: u64, recycle_len: u64) {
    let Ok(items) = std::fs::read_dir(dir) else {
        return;
    };
    let mut spares = recycled(dir).len();
    let mut changed = false;
    for item in items.flatten() {
        let name = item.file_name();
        let Some((kind, n)) = name.to_str().and_then(parse_name) else {
            continue;
        };
        let covered = match kind {
            FileKind::Log => n <= base,
            FileKind::Snapshot => n < base,
        };
        if !covered {
            continue;
        }
        let reusable = kind == FileKind::Log
            && spares < MAX_RECYCLED
            && item.metadata().is_ok_and(|m| m.len() >= recycle_len);
        let result = if reusable {
            std::fs::rename(item.path(), dir.join(recycled_name(n))).inspect(|()| spares += 1)
        } else {
            std::fs::remove_file(item.path())
        };
        match result {
            Ok(()) => changed = true,
            Err(e) => {
                tracing::warn!(path = %item.path().display(), error = %e, "could not remove a file the snapshot covers");
            }
        }
    }
    if changed && let Err(e) = sync_dir(dir) {
        tracing::warn!(path = %dir.display(), error = %e, "fsync of the store directory failed");
    }
}

/// Write an end-of-segment record where segment `n`'s records end (a
/// header first if the file has none: a crash while creating it), fsync.
fn seal(path: &Path, node: NodeId, n: u64, end: SegmentEnd) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt as _;
    let f = std::fs::OpenOptions::new().write(true).open(path)?;
    let mut at = end.valid_len;
    if end.valid_len < HEADER_LEN {
        f.write_all_at(&header(FileKind::Log, node, n), 0)?;
        at = HEADER_LEN;
    }
    let mut marker = Vec::with_capacity(16);
    frame(&mut marker, n, REC_SEGMENT_END, &[]);
    f.write_all_at(&marker, at)?;
    f.sync_data()
}

/// Where a segment's valid records end.
#[derive(Debug, Clone, Copy)]
struct SegmentEnd {
    /// Where the last whole record before any end-of-segment record ends.
    valid_len: u64,
    file_len: u64,
    /// It ends with an end-of-segment record.
    sealed: bool,
}

fn check_header(
    path: &Path,
    r: &mut impl Read,
    kind: FileKind,
    n: u64,
    node: NodeId,
) -> Result<(), StoreError> {
    let corrupt = |what| StoreError::Corrupt {
        path: path.to_owned(),
        source: Corruption::Header { what },
    };
    let mut h = [0u8; HEADER_LEN as usize];
    read_exact_or(r, &mut h, path)?
        .then_some(())
        .ok_or_else(|| corrupt("file shorter than its header"))?;
    if h[..8] != kind.magic() {
        return Err(corrupt("magic number (not a regmesh store file)"));
    }
    if h[8] != FORMAT {
        return Err(StoreError::UnsupportedFormat {
            path: path.to_owned(),
            found: h[8],
            supported: FORMAT,
        });
    }
    if h[9..12] != [0, 0, 0] {
        return Err(corrupt("reserved bytes"));
    }
    let stored = u64::from_le_bytes(h[16..24].try_into().unwrap_or_default());
    if stored != n {
        return Err(corrupt("file number differs from the file name"));
    }
    let writer = u32::from_le_bytes(h[12..16].try_into().unwrap_or_default());
    if writer != node.0 {
        // Versions stamped by the old id stay valid; but two live nodes
        // sharing an id would break tie-breaking.
        tracing::warn!(path = %path.display(), old = writer, new = node.0, "store file written by another node id");
    }
    Ok(())
}

/// Read into `buf` until it is full or the file ends; returns how many
/// bytes were read (less than `buf.len()` only at the end of the file).
fn fill(r: &mut impl Read, buf: &mut [u8], path: &Path) -> Result<usize, StoreError> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(k) => filled += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(StoreError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        }
    }
    Ok(filled)
}

/// Fill `buf` whole: Ok(false) when the file ends first (the caller decides
/// whether that is a torn tail).
fn read_exact_or(r: &mut impl Read, buf: &mut [u8], path: &Path) -> Result<bool, StoreError> {
    Ok(fill(r, buf, path)? == buf.len())
}

/// Where reading a file's next record got: a record (its kind; the body is
/// in the caller's buffer), the end of the records (end of file or zero
/// fill), or damage (short, oversized or failing its checksum).
enum Next {
    Record(u8),
    End,
    Damaged,
}

fn next_record(
    r: &mut impl Read,
    n: u64,
    body: &mut Vec<u8>,
    path: &Path,
) -> Result<Next, StoreError> {
    let mut head = [0u8; 8];
    match fill(r, &mut head, path)? {
        0 => return Ok(Next::End),
        8 => {}
        _ => return Ok(Next::Damaged),
    }
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    if len == 0 || len > MAX_RECORD {
        return Ok(if len == 0 && crc == 0 {
            // Zero fill: where a file the writer extended ends.
            Next::End
        } else {
            Next::Damaged
        });
    }
    body.resize(len as usize, 0);
    if !read_exact_or(r, body, path)? {
        return Ok(Next::Damaged);
    }
    let kind = body[0];
    if checksum(n, len, kind, &body[1..]) != crc {
        return Ok(Next::Damaged);
    }
    Ok(Next::Record(kind))
}

/// A buffered reader over `path` (1 MiB: files are read once, front to
/// back) and the file's length.
fn open_for_read(path: &Path) -> Result<(BufReader<File>, u64), StoreError> {
    let read_err = |source| StoreError::Read {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(read_err)?;
    let len = file.metadata().map_err(read_err)?.len();
    Ok((BufReader::with_capacity(1 << 20, file), len))
}

/// Read segment `n`; `last` allows a torn tail.
fn read_segment(
    path: &Path,
    n: u64,
    node: NodeId,
    last: bool,
    replay: &mut Replay,
) -> Result<SegmentEnd, StoreError> {
    let (mut r, file_len) = open_for_read(path)?;
    if file_len < HEADER_LEN && last {
        // Crashed while creating it: nothing in it was ever acknowledged.
        // Only a prefix of a header of ours is that; anything else is not
        // our file.
        let mut bytes = Vec::new();
        r.read_to_end(&mut bytes)
            .map_err(|source| StoreError::Read {
                path: path.to_owned(),
                source,
            })?;
        let expected = header(FileKind::Log, NodeId(0), n);
        let fixed = bytes.len().min(12);
        if bytes[..fixed] != expected[..fixed] {
            return Err(StoreError::Corrupt {
                path: path.to_owned(),
                source: Corruption::Header {
                    what: "magic number (not a regmesh store file)",
                },
            });
        }
        tracing::warn!(path = %path.display(), "newest change-log segment has no complete header; it held nothing acknowledged");
        return Ok(SegmentEnd {
            valid_len: 0,
            file_len,
            sealed: false,
        });
    }
    check_header(path, &mut r, FileKind::Log, n, node)?;
    let mut pos = HEADER_LEN;
    let mut body = Vec::with_capacity(1024);
    let mut sealed = false;
    loop {
        match next_record(&mut r, n, &mut body, path)? {
            Next::Record(REC_SEGMENT_END) => {
                sealed = true;
                break;
            }
            Next::Record(kind) => {
                replay.apply(kind, &body[1..], path)?;
                pos += 8 + body.len() as u64;
            }
            // The newest segment ends where its records stop: after that is
            // either space never written or an unacknowledged torn write.
            Next::End | Next::Damaged if last => break,
            // Any other must be sealed.
            Next::End | Next::Damaged => {
                return Err(StoreError::Corrupt {
                    path: path.to_owned(),
                    source: Corruption::Damaged { offset: pos },
                });
            }
        }
    }
    Ok(SegmentEnd {
        valid_len: pos,
        file_len,
        sealed,
    })
}

/// Read snapshot `n` whole; it must end with its end record. Returns its size.
fn read_snapshot(
    path: &Path,
    n: u64,
    node: NodeId,
    replay: &mut Replay,
) -> Result<u64, StoreError> {
    let (mut r, size) = open_for_read(path)?;
    check_header(path, &mut r, FileKind::Snapshot, n, node)?;
    let mut pos = HEADER_LEN;
    let mut count = 0u64;
    let mut body = Vec::with_capacity(1024);
    loop {
        match next_record(&mut r, n, &mut body, path)? {
            Next::Record(REC_END) => {
                let stored = body
                    .get(1..9)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_le_bytes);
                let mut extra = [0u8; 1];
                let trailing = read_exact_or(&mut r, &mut extra, path)?;
                if stored != Some(count) || trailing {
                    return Err(StoreError::Corrupt {
                        path: path.to_owned(),
                        source: Corruption::Damaged { offset: pos },
                    });
                }
                return Ok(size);
            }
            Next::Record(kind) => {
                replay.apply(kind, &body[1..], path)?;
                pos += 8 + body.len() as u64;
                count += 1;
            }
            Next::End | Next::Damaged => {
                return Err(StoreError::Corrupt {
                    path: path.to_owned(),
                    source: Corruption::Damaged { offset: pos },
                });
            }
        }
    }
}

/// Write `snapshot-<n>.rms` from `fill`, which appends framed records to
/// the buffer it is given and flushes it through the writer; returns the
/// snapshot's size. Written under a temporary name, fsync'd, renamed and
/// the directory fsync'd: a snapshot file either is whole or is not there.
pub(crate) fn write_snapshot(
    dir: &Path,
    node: NodeId,
    n: u64,
    fill: impl FnOnce(&mut SnapshotSink) -> std::io::Result<bool>,
) -> std::io::Result<Option<u64>> {
    let name = snapshot_name(n);
    let tmp = dir.join(format!("{name}.tmp"));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    let mut sink = SnapshotSink {
        file: std::io::BufWriter::with_capacity(1 << 20, file),
        n,
        count: 0,
        bytes: HEADER_LEN,
        unsynced: 0,
        syncs: 0,
    };
    let result = (|| {
        sink.file.write_all(&header(FileKind::Snapshot, node, n))?;
        if !fill(&mut sink)? {
            return Ok(None);
        }
        let mut end = Vec::with_capacity(32);
        frame(&mut end, n, REC_END, &sink.count.to_le_bytes());
        sink.file.write_all(&end)?;
        sink.bytes += end.len() as u64;
        let file = sink.file.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, dir.join(&name))?;
        sync_dir(dir)?;
        Ok(Some(sink.bytes))
    })();
    if !matches!(result, Ok(Some(_))) {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Where a snapshot's records go.
pub(crate) struct SnapshotSink {
    file: std::io::BufWriter<File>,
    n: u64,
    count: u64,
    bytes: u64,
    /// Bytes written since the last `fdatasync` of the snapshot.
    unsynced: u64,
    /// `fdatasync`s made so far (before the final one).
    syncs: u64,
}

/// A snapshot being written is made durable every this many bytes, not only
/// at its end. Why: a device flush (the change log's fdatasync before each
/// 200 OK) waits for every write already sent to the disk, so letting a
/// 250 MB snapshot pile up in the page cache and flushing it at once would
/// hold the commits behind it for as long as the disk takes to write it
/// (hundreds of ms). In steps, a commit waits for at most one step, so
/// the steps are small: at 70,000 REGISTER/s (50,000 AoRs, a snapshot and
/// a new segment every ~3 s), over 10 s, 4 MiB steps left 27-34 commits
/// over 5 ms and a p99 of 3.8-4.2 ms; 1 MiB steps 6-12 and 1.8-2.4 ms;
/// 256 KiB steps 2-10 and 1.6-2.2 ms (BENCHMARKS.md). A 301 MiB snapshot takes no
/// longer to write in 256 KiB steps than in 4 MiB ones (1.2 s here).
pub(crate) const SNAPSHOT_SYNC_BYTES: u64 = 256 << 10;

impl SnapshotSink {
    /// Append one entry (its encoded value, as the table holds it).
    pub(crate) fn entry(&mut self, encoded: &[u8], out: &mut Vec<u8>) {
        frame(out, self.n, REC_PUT_BINDING, encoded);
        self.count += 1;
    }
    /// Append one subscriber.
    pub(crate) fn subscriber(&mut self, s: &Subscriber, out: &mut Vec<u8>) {
        frame(
            out,
            self.n,
            REC_PUT_SUBSCRIBER,
            &codec::encode_subscriber(s),
        );
        self.count += 1;
    }
    /// Write what was appended to `out` and clear it, making the file
    /// durable every [`SNAPSHOT_SYNC_BYTES`] however much `out` holds: a
    /// caller may hand over megabytes at once (one shard of a large table
    /// is), and one large flush would hold the change log's commits behind
    /// it.
    pub(crate) fn flush(&mut self, out: &mut Vec<u8>) -> std::io::Result<()> {
        let mut rest = out.as_slice();
        while !rest.is_empty() {
            let room = SNAPSHOT_SYNC_BYTES.saturating_sub(self.unsynced).max(1);
            let (now, later) = rest.split_at(rest.len().min(room as usize));
            self.file.write_all(now)?;
            self.bytes += now.len() as u64;
            self.unsynced += now.len() as u64;
            rest = later;
            if self.unsynced >= SNAPSHOT_SYNC_BYTES {
                self.file.flush()?;
                self.file.get_ref().sync_data()?;
                self.unsynced = 0;
                self.syncs += 1;
            }
        }
        out.clear();
        Ok(())
    }

    /// How many intermediate `fdatasync`s this snapshot has made.
    #[cfg(test)]
    pub(crate) fn syncs(&self) -> u64 {
        self.syncs
    }
}

/// The path of segment `n` in `dir`.
pub(crate) fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(log_name(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_strangers_are_ignored() {
        assert_eq!(parse_name(&log_name(42)), Some((FileKind::Log, 42)));
        assert_eq!(
            parse_name(&snapshot_name(u64::MAX)),
            Some((FileKind::Snapshot, u64::MAX))
        );
        assert_eq!(parse_name("log-42.rml"), None);
        assert_eq!(parse_name("snapshot-0000000000000000001x.rms"), None);
        assert_eq!(parse_name("LOCK"), None);
    }

    #[test]
    fn a_record_checks_against_its_own_file_number() {
        let mut buf = Vec::new();
        frame(&mut buf, 7, REC_DELETE_SUBSCRIBER, b"a@b");
        let mut body = Vec::new();
        let p = Path::new("x");
        assert!(matches!(
            next_record(&mut buf.as_slice(), 7, &mut body, p),
            Ok(Next::Record(REC_DELETE_SUBSCRIBER))
        ));
        assert_eq!(&body[1..], b"a@b");
        assert!(matches!(
            next_record(&mut buf.as_slice(), 8, &mut body, p),
            Ok(Next::Damaged)
        ));
        let mut flipped = buf.clone();
        *flipped.last_mut().expect("byte") ^= 1;
        assert!(matches!(
            next_record(&mut flipped.as_slice(), 7, &mut body, p),
            Ok(Next::Damaged)
        ));
        assert!(matches!(
            next_record(&mut [0u8; 8].as_slice(), 7, &mut body, p),
            Ok(Next::End)
        ));
        assert!(matches!(
            next_record(&mut &buf[..buf.len() - 1], 7, &mut body, p),
            Ok(Next::Damaged)
        ));
    }
}
