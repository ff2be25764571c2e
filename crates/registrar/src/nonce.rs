//! Stateless signed nonces (so any node of a cluster verifies another's) and
//! the per-node nonce-count table that stops replays (RFC 7616 §3.3, §5.4).
//!
//! # Nonce format
//!
//! `base64url(issued || random || tag)` without padding, 43 characters:
//!
//! | bytes | field |
//! |---|---|
//! | 0..8 | issue time, Unix milliseconds, big-endian |
//! | 8..16 | random bytes from the caller's RNG |
//! | 16..32 | HMAC-SHA256(secret, bytes 0..16), first 16 bytes |
//!
//! The issue time lets a node tell a stale nonce (`stale=true`) from a
//! forged one without keeping state; the tag, checked in constant time,
//! proves a node holding the cluster's secret issued it. base64url keeps the
//! nonce free of `"` and `\`, so it needs no escaping in a quoted string.
//!
//! # Nonce-count table
//!
//! With `qop=auth` the client numbers its uses of a nonce (`nc`); a use is
//! accepted only if its `nc` is above every earlier accepted one. The table
//! is per node (a client that sends the same `nc` to two nodes of a cluster
//! gets in twice; replicating it is not worth a round trip per REGISTER).
//! It is bounded: it holds about the [`NonceCounts::capacity`] nonces used
//! most recently for the first time. It is split by tag into shards of
//! 4,096 (one for a small table), each with its own lock and floor; when a
//! shard is full the nonce that entered it first leaves (one per new
//! entry, so no pass over the table ever stalls a REGISTER). Leaving raises
//! the shard's *floor* to that nonce's issue time, unless it was past its
//! lifetime (refused as stale anyway). A nonce issued at or before its
//! shard's floor that is not in the table can no longer be proven unused,
//! so it is answered `stale=true`: the client retries at once with a fresh
//! nonce, and a replay of an evicted nonce never gets in. Tags are uniform
//! (HMAC output), so the shards fill evenly and each evicts about when the
//! whole table would.
//!
//! Why shards: one map of 262,144 churning entries grew and rehashed under
//! its lock every few seconds of a storm (its deleted slots use up its
//! room), stalling the receive thread for tens of ms each time; the answer
//! timeline of `regmesh bench` showed those stalls as seconds with
//! thousands of answers over 10 ms (BENCHMARKS.md). A shard holds 4,096,
//! is sized once at its first nonce, and a rehash of one costs ~1/64 of
//! that.
//!
//! Why milliseconds and first-in-first-out: in a re-registration storm each
//! REGISTER takes a fresh nonce, so the table turns over quickly (an earlier
//! 65,536-entry table in about a second at 60,000 REGISTERs/s). With issue
//! times in whole seconds, evicting any nonce forgot every nonce of its
//! second: once a second's first uses outnumbered the table, that second
//! was the current one, and every nonce handed out in a challenge for the
//! rest of it was refused as stale on first use, the client's retry too.
//! And evicting the oldest-issued eighth took a pass over the whole table
//! (milliseconds under the table lock, a REGISTER waiting) where popping the
//! oldest entry takes none.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use regmesh_location::Timestamp;
use sha2::Sha256;
use std::collections::{HashMap, VecDeque};

type HmacSha256 = Hmac<Sha256>;

/// Decoded nonce length in bytes.
pub const NONCE_LEN: usize = 32;
const SIGNED_LEN: usize = 16;

/// Nonces per shard of the table (see the module doc).
const SHARD_NONCES: usize = 4096;

/// Default capacity of [`NonceCounts`]: about 16 MiB at most. At 140,000
/// fresh nonces a second (a storm at this machine's generator ceiling) the
/// table still remembers each for ~1.9 s, far longer than a client takes
/// to answer its challenge.
pub const DEFAULT_NONCE_CAPACITY: usize = 262_144;

fn mac(secret: &[u8], signed: &[u8]) -> HmacSha256 {
    // Keying HMAC hashes the padded key twice (RFC 2104 §2), as much work
    // as signing the 16 bytes of a nonce. Every nonce of a node is signed
    // with the same secret, so each thread keeps the keyed state and
    // clones it.
    thread_local! {
        static KEYED: std::cell::RefCell<Option<(Vec<u8>, HmacSha256)>> =
            const { std::cell::RefCell::new(None) };
    }
    let mut m = KEYED.with_borrow_mut(|keyed| match keyed {
        Some((key, m)) if key.as_slice() == secret => m.clone(),
        _ => {
            // invariant: HMAC accepts keys of any length (RFC 2104 §2
            // hashes long keys and pads short ones), so this cannot fail.
            let m = <HmacSha256 as Mac>::new_from_slice(secret)
                .expect("invariant: HMAC accepts any key length");
            *keyed = Some((secret.to_vec(), m.clone()));
            m
        }
    });
    m.update(signed);
    m
}

/// A nonce lifetime in seconds, in milliseconds.
fn ttl_millis(ttl: u32) -> u64 {
    u64::from(ttl) * 1000
}

/// Issue a nonce at `now` with `random` bytes, signed with `secret`.
pub fn mint(secret: &[u8], now: Timestamp, random: [u8; 8]) -> String {
    let mut raw = [0u8; NONCE_LEN];
    raw[..8].copy_from_slice(&now.as_millis().to_be_bytes());
    raw[8..SIGNED_LEN].copy_from_slice(&random);
    let tag = mac(secret, &raw[..SIGNED_LEN]).finalize().into_bytes();
    raw[SIGNED_LEN..].copy_from_slice(&tag[..NONCE_LEN - SIGNED_LEN]);
    URL_SAFE_NO_PAD.encode(raw)
}

/// A nonce whose signature checked out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nonce {
    /// Issue time, Unix milliseconds.
    pub issued: u64,
    /// The tag, unique per nonce: the key of the nonce-count table.
    pub tag: [u8; NONCE_LEN - SIGNED_LEN],
}

impl Nonce {
    /// Older than `ttl` seconds at `now` (RFC 7616 §3.3 `stale`).
    pub fn is_stale(&self, now: Timestamp, ttl: u32) -> bool {
        now.as_millis().saturating_sub(self.issued) > ttl_millis(ttl)
    }
}

/// Check a nonce's signature. `None` for anything not issued with `secret`,
/// and for an issue time further ahead of `now` than `ttl` (no node's clock
/// is that far off; such a nonce would otherwise never turn stale).
pub fn verify(secret: &[u8], nonce: &str, now: Timestamp, ttl: u32) -> Option<Nonce> {
    if nonce.len() != 43 {
        return None;
    }
    let raw = URL_SAFE_NO_PAD.decode(nonce).ok()?;
    let raw: [u8; NONCE_LEN] = raw.try_into().ok()?;
    mac(secret, &raw[..SIGNED_LEN])
        .verify_truncated_left(&raw[SIGNED_LEN..])
        .ok()?;
    let mut issued = [0u8; 8];
    issued.copy_from_slice(&raw[..8]);
    let issued = u64::from_be_bytes(issued);
    if issued > now.as_millis().saturating_add(ttl_millis(ttl)) {
        return None;
    }
    let mut tag = [0u8; NONCE_LEN - SIGNED_LEN];
    tag.copy_from_slice(&raw[SIGNED_LEN..]);
    Some(Nonce { issued, tag })
}

/// What the nonce-count table says about one use of a nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NcVerdict {
    /// Higher than any accepted count: accepted and recorded.
    Accepted,
    /// Not above the last accepted count: a replay.
    Replay,
    /// The nonce is older than what the bounded table still remembers;
    /// the client must take a fresh one (`stale=true`).
    Forgotten,
}

type Tag = [u8; NONCE_LEN - SIGNED_LEN];

/// A plain multiply-and-rotate hash for tags. A tag is an HMAC under the
/// node's secret, checked before it reaches the table, so its bytes are
/// already uniform and nobody without the secret can choose them:
/// SipHash's protection against chosen keys buys nothing here, and costs
/// more than the rest of the lookup.
#[derive(Debug, Default, Clone, Copy)]
struct TagHasher(u64);

impl std::hash::Hasher for TagHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word))
                .wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
}

type TagMap = HashMap<Tag, u32, std::hash::BuildHasherDefault<TagHasher>>;

#[derive(Debug, Default)]
struct Inner {
    /// tag → highest accepted nc.
    seen: TagMap,
    /// The tags of `seen` in the order they entered, with their issue
    /// times: the front leaves first.
    order: VecDeque<(u64, Tag)>,
    /// Untracked nonces issued at or before this time (Unix ms) count as used.
    floor: Option<u64>,
}

/// The per-node nonce-count table (see the module doc).
#[derive(Debug)]
pub struct NonceCounts {
    // parking_lot mutexes, each held only for a map lookup or insert (and
    // one eviction), never across I/O. The number of shards is a power of
    // two; a nonce's shard is picked by the last byte of its tag.
    shards: Box<[Mutex<Inner>]>,
    per_shard: usize,
}

impl Default for NonceCounts {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_NONCE_CAPACITY)
    }
}

impl NonceCounts {
    /// A table holding about `capacity` nonces (at least 8; rounded up to
    /// a whole number of shards, see [`Self::capacity`]).
    pub fn with_capacity(capacity: usize) -> Self {
        let capacity = capacity.max(8);
        let shards = 1usize << (capacity / SHARD_NONCES).clamp(1, 256).ilog2();
        Self {
            shards: (0..shards).map(|_| Mutex::new(Inner::default())).collect(),
            per_shard: capacity.div_ceil(shards),
        }
    }

    /// The most nonces held at once.
    pub fn capacity(&self) -> usize {
        self.per_shard * self.shards.len()
    }

    /// Nonces held now.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().seen.len()).sum()
    }

    fn shard(&self, nonce: &Nonce) -> &Mutex<Inner> {
        // The tag is uniform; its last byte is not one the map's hasher
        // uses for the bucket index (see TagHasher).
        &self.shards[usize::from(nonce.tag[NONCE_LEN - SIGNED_LEN - 1]) & (self.shards.len() - 1)]
    }

    /// True when no nonce is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Record use `nc` of `nonce` if it is above every earlier one. `now`
    /// and `ttl` tell whether a nonce that leaves the table was still
    /// within its lifetime (only those raise the floor).
    pub fn check(&self, nonce: &Nonce, nc: u32, now: Timestamp, ttl: u32) -> NcVerdict {
        let mut inner = self.shard(nonce).lock();
        if let Some(last) = inner.seen.get_mut(&nonce.tag) {
            if nc > *last {
                *last = nc;
                return NcVerdict::Accepted;
            }
            return NcVerdict::Replay;
        }
        if inner.floor.is_some_and(|f| nonce.issued <= f) {
            return NcVerdict::Forgotten;
        }
        let oldest_live = now.as_millis().saturating_sub(ttl_millis(ttl));
        while inner.seen.len() >= self.per_shard {
            let Some((issued, tag)) = inner.order.pop_front() else {
                break;
            };
            inner.seen.remove(&tag);
            if issued >= oldest_live {
                inner.floor = Some(inner.floor.map_or(issued, |f| f.max(issued)));
            }
        }
        // The floor may have moved past this nonce.
        if inner.floor.is_some_and(|f| nonce.issued <= f) {
            return NcVerdict::Forgotten;
        }
        if inner.order.capacity() < self.per_shard {
            // Once per shard, at its first nonce: room for all of it, so
            // it does not grow by doubling under load. A node without auth
            // never gets here and never allocates the table.
            let (seen, order) = (
                self.per_shard - inner.seen.len(),
                self.per_shard - inner.order.len(),
            );
            inner.seen.reserve(seen);
            inner.order.reserve(order);
        }
        inner.seen.insert(nonce.tag, nc);
        inner.order.push_back((nonce.issued, nonce.tag));
        NcVerdict::Accepted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef-cluster-secret";

    #[test]
    fn minted_nonce_verifies_with_the_same_secret_only() {
        let now = Timestamp::from_secs(1_700_000_000);
        let n = mint(SECRET, now, [7; 8]);
        assert_eq!(n.len(), 43);
        assert!(!n.contains(['"', '\\', '+', '/', '=']));
        let v = verify(SECRET, &n, now, 300).expect("valid");
        assert_eq!(v.issued, 1_700_000_000_000);
        assert!(!v.is_stale(now, 300));
        // RFC 7616 §3.3: past its lifetime the nonce is stale, not invalid.
        let later = now.saturating_add_secs(301);
        assert!(
            verify(SECRET, &n, later, 300)
                .expect("still signed")
                .is_stale(later, 300)
        );
        assert_eq!(verify(b"another secret of some length", &n, now, 300), None);
        // The keyed HMAC a thread keeps follows the secret it is given.
        let other = mint(b"another secret of some length", now, [7; 8]);
        assert_ne!(other, n);
        assert!(verify(SECRET, &n, now, 300).is_some());
        assert_eq!(verify(SECRET, &other, now, 300), None);
        assert!(verify(b"another secret of some length", &other, now, 300).is_some());
    }

    /// The signature is HMAC-SHA-256 (RFC 2104) of the first 16 bytes,
    /// truncated: recomputed here without the cached key.
    #[test]
    fn the_signature_is_hmac_sha256_of_time_and_random() {
        let now = Timestamp::from_secs(1_700_000_000);
        let n = mint(SECRET, now, [9; 8]);
        let raw = URL_SAFE_NO_PAD.decode(&n).expect("base64");
        let mut m = <HmacSha256 as Mac>::new_from_slice(SECRET).expect("any key");
        m.update(&raw[..SIGNED_LEN]);
        let tag = m.finalize().into_bytes();
        assert_eq!(&raw[SIGNED_LEN..], &tag[..NONCE_LEN - SIGNED_LEN]);
    }

    #[test]
    fn tampered_or_garbage_nonces_are_rejected() {
        let now = Timestamp::from_secs(1_700_000_000);
        let n = mint(SECRET, now, [1; 8]);
        // Move the issue time forward by re-encoding with another time but the old tag.
        let mut raw = URL_SAFE_NO_PAD.decode(&n).expect("b64");
        raw[7] ^= 1;
        assert_eq!(
            verify(SECRET, &URL_SAFE_NO_PAD.encode(&raw), now, 300),
            None
        );
        assert_eq!(verify(SECRET, "", now, 300), None);
        assert_eq!(
            verify(SECRET, "dcd98b7102dd2f0e8b11d0f600bfb0c093", now, 300),
            None
        );
        assert_eq!(verify(SECRET, &"!".repeat(43), now, 300), None);
        // Issued far in the future.
        let future = mint(SECRET, now.saturating_add_secs(10_000), [1; 8]);
        assert_eq!(verify(SECRET, &future, now, 300), None);
    }

    fn nonce(issued: u64, id: u8) -> Nonce {
        Nonce {
            issued,
            tag: [id; 16],
        }
    }

    #[test]
    fn a_shard_is_sized_once_and_its_order_never_regrows() {
        let t = NonceCounts::with_capacity(1000);
        assert_eq!(t.shards.len(), 1);
        let now = Timestamp::from_secs(1_700_000_000);
        assert_eq!(
            t.shards[0].lock().order.capacity(),
            0,
            "nothing before the first nonce"
        );
        assert_eq!(
            t.check(&nonce(now.as_millis(), 0), 1, now, 300),
            NcVerdict::Accepted
        );
        let (seen, order) = {
            let inner = t.shards[0].lock();
            (inner.seen.capacity(), inner.order.capacity())
        };
        assert!(seen >= 1000 && order >= 1000, "{seen} {order}");
        // Each issued a millisecond after the one before: evicting one
        // never forgets a newer one.
        for i in 1..5000u32 {
            let mut n = nonce(now.as_millis() + u64::from(i), 0);
            n.tag[..4].copy_from_slice(&i.to_le_bytes());
            let later = now.saturating_add_secs(5);
            assert_eq!(t.check(&n, 1, later, 300), NcVerdict::Accepted);
        }
        let inner = t.shards[0].lock();
        assert_eq!(inner.seen.len(), 1000);
        assert_eq!(inner.order.capacity(), order);
    }

    /// The default table is 64 shards of 4,096; tags spread over all of
    /// them, and the whole stays bounded by its capacity.
    #[test]
    fn the_default_table_is_sharded_and_bounded() {
        let t = NonceCounts::default();
        assert_eq!(t.shards.len(), 64);
        assert_eq!(t.capacity(), DEFAULT_NONCE_CAPACITY);
        let now = Timestamp::from_secs(1_700_000_000);
        let n = DEFAULT_NONCE_CAPACITY as u64 + 50_000;
        for i in 0..n {
            let mut tag = [0u8; 16];
            // What an HMAC gives: every byte varies.
            let x = (i + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            tag[..8].copy_from_slice(&x.to_le_bytes());
            tag[8..].copy_from_slice(&x.rotate_left(29).to_le_bytes());
            let nonce = Nonce {
                issued: now.as_millis() + i,
                tag,
            };
            assert_eq!(
                t.check(&nonce, 1, now.saturating_add_secs(10), 300),
                NcVerdict::Accepted,
                "{i}"
            );
        }
        assert!(
            t.len() <= t.capacity() && t.len() > t.capacity() * 9 / 10,
            "{}",
            t.len()
        );
        assert!(t.shards.iter().all(|s| s.lock().seen.len() > 3000));
    }

    #[test]
    fn nonce_count_must_strictly_increase() {
        // RFC 7616 §3.4: nc lets the server detect replays.
        let t = NonceCounts::default();
        let now = Timestamp::from_secs(100);
        let n = nonce(100, 1);
        assert_eq!(t.check(&n, 1, now, 300), NcVerdict::Accepted);
        assert_eq!(t.check(&n, 1, now, 300), NcVerdict::Replay);
        assert_eq!(t.check(&n, 3, now, 300), NcVerdict::Accepted);
        assert_eq!(t.check(&n, 2, now, 300), NcVerdict::Replay);
        assert_eq!(t.check(&nonce(100, 2), 1, now, 300), NcVerdict::Accepted);
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn table_is_bounded_and_never_readmits_an_evicted_nonce() {
        let t = NonceCounts::with_capacity(16);
        let now = Timestamp::from_secs(1000);
        // Sixteen nonces issued a millisecond apart, each used once.
        for i in 0..16u8 {
            assert_eq!(
                t.check(&nonce(900_000 + u64::from(i), i), 1, now, 300),
                NcVerdict::Accepted
            );
        }
        assert_eq!(t.len(), 16);
        // Full: a new nonce pushes out the one that entered first, and the
        // floor rises to its issue time.
        assert_eq!(
            t.check(&nonce(950_000, 100), 1, now, 300),
            NcVerdict::Accepted
        );
        assert_eq!(t.len(), 16);
        // A replay of the evicted nonce is not accepted as new.
        assert_eq!(
            t.check(&nonce(900_000, 0), 2, now, 300),
            NcVerdict::Forgotten
        );
        // The next one in line is still held, with its count.
        assert_eq!(t.check(&nonce(900_001, 1), 1, now, 300), NcVerdict::Replay);
        assert_eq!(
            t.check(&nonce(900_001, 1), 2, now, 300),
            NcVerdict::Accepted
        );
        // A nonce issued after the floor and never used is welcome.
        assert_eq!(
            t.check(&nonce(900_050, 101), 1, now, 300),
            NcVerdict::Accepted
        );
    }

    /// A re-registration storm: every REGISTER takes a fresh nonce and uses
    /// it a moment later, many within one second, and far more than the
    /// table holds. Each first use is accepted: eviction takes the nonce
    /// that entered first, not everything issued in its second.
    #[test]
    fn a_storm_of_fresh_nonces_is_never_refused() {
        let t = NonceCounts::with_capacity(1000);
        let start = 1_700_000_000_000u64;
        // 20,000 nonces issued 10 µs apart (100 per millisecond, all within
        // 200 ms), each answered 2 ms after it was issued.
        for i in 0..20_000u64 {
            let issued = start + i / 100;
            let mut tag = [0u8; 16];
            tag[..8].copy_from_slice(&i.to_be_bytes());
            let n = Nonce { issued, tag };
            let now = Timestamp::from_millis(issued + 2);
            assert_eq!(t.check(&n, 1, now, 300), NcVerdict::Accepted, "nonce {i}");
        }
        assert_eq!(t.len(), 1000);
    }

    #[test]
    fn nonces_past_their_lifetime_leave_without_raising_the_floor() {
        let t = NonceCounts::with_capacity(8);
        for i in 0..8u8 {
            t.check(&nonce(u64::from(i), i), 1, Timestamp::from_secs(10), 300);
        }
        // Much later: the table is full of nonces past their lifetime; a
        // new one pushes the first of them out.
        let later = Timestamp::from_secs(10_000);
        assert_eq!(
            t.check(&nonce(9_999_000, 50), 1, later, 300),
            NcVerdict::Accepted
        );
        assert_eq!(t.len(), 8);
        // No floor was raised: a nonce issued earlier, within its lifetime
        // and not yet used, is still accepted (pushing out the next
        // expired one).
        assert_eq!(
            t.check(&nonce(9_800_000, 60), 1, later, 300),
            NcVerdict::Accepted
        );
    }

    /// The floor is as fine as the issue time: nonces issued later in the
    /// same second as an evicted one are still accepted. (With issue times
    /// in whole seconds, evicting one nonce forgot every nonce of its
    /// second, including those handed out a moment ago.)
    #[test]
    fn the_floor_is_finer_than_a_second() {
        let t = NonceCounts::with_capacity(8);
        let base = Timestamp::from_secs(1_700_000_000);
        let fresh = |ms: u64, id: u8| {
            let at = base.saturating_add_millis(ms);
            let n = verify(SECRET, &mint(SECRET, at, [id; 8]), at, 300).expect("valid");
            (n, at)
        };
        // Eight used in the first 100 ms of a second fill the table; sixteen
        // more later in that second each push one out.
        for i in 0..24u8 {
            let ms = if i < 8 {
                u64::from(i) * 10
            } else {
                500 + u64::from(i)
            };
            let (n, at) = fresh(ms, i);
            assert_eq!(t.check(&n, 1, at, 300), NcVerdict::Accepted, "nonce {i}");
        }
    }
}
