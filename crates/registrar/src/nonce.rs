//! Stateless signed nonces (so any node of a cluster verifies another's) and
//! the per-node nonce-count table that stops replays (RFC 7616 §3.3, §5.4).
//!
//! # Nonce format
//!
//! `base64url(issued || random || tag)` without padding, 43 characters:
//!
//! | bytes | field |
//! |---|---|
//! | 0..8 | issue time, Unix seconds, big-endian |
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
//! It is bounded: when [`NonceCounts::capacity`] entries are held, entries
//! for nonces past their lifetime go first (such nonces are refused as
//! stale anyway); if that is not enough, the oldest-issued eighth is
//! evicted and the *floor* is raised to the newest issue time evicted. A
//! nonce issued at or before the floor that is not in the table can no
//! longer be proven unused, so it is answered `stale=true`: the client
//! retries at once with a fresh nonce, and a replay of an evicted nonce
//! never gets in.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use regmesh_location::Timestamp;
use sha2::Sha256;
use std::collections::HashMap;

type HmacSha256 = Hmac<Sha256>;

/// Decoded nonce length in bytes.
pub const NONCE_LEN: usize = 32;
const SIGNED_LEN: usize = 16;

/// Default capacity of [`NonceCounts`]: about 4 MiB at most.
pub const DEFAULT_NONCE_CAPACITY: usize = 65_536;

fn mac(secret: &[u8], signed: &[u8]) -> HmacSha256 {
    // invariant: HMAC accepts keys of any length (RFC 2104 §2 hashes long
    // keys and pads short ones), so `new_from_slice` cannot fail.
    let mut m = <HmacSha256 as Mac>::new_from_slice(secret)
        .expect("invariant: HMAC accepts any key length");
    m.update(signed);
    m
}

/// Issue a nonce at `now` with `random` bytes, signed with `secret`.
pub fn mint(secret: &[u8], now: Timestamp, random: [u8; 8]) -> String {
    let mut raw = [0u8; NONCE_LEN];
    raw[..8].copy_from_slice(&now.as_secs().to_be_bytes());
    raw[8..SIGNED_LEN].copy_from_slice(&random);
    let tag = mac(secret, &raw[..SIGNED_LEN]).finalize().into_bytes();
    raw[SIGNED_LEN..].copy_from_slice(&tag[..NONCE_LEN - SIGNED_LEN]);
    URL_SAFE_NO_PAD.encode(raw)
}

/// A nonce whose signature checked out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nonce {
    /// Issue time, Unix seconds.
    pub issued: u64,
    /// The tag, unique per nonce: the key of the nonce-count table.
    pub tag: [u8; NONCE_LEN - SIGNED_LEN],
}

impl Nonce {
    /// Older than `ttl` seconds at `now` (RFC 7616 §3.3 `stale`).
    pub fn is_stale(&self, now: Timestamp, ttl: u32) -> bool {
        now.as_secs().saturating_sub(self.issued) > u64::from(ttl)
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
    if issued > now.as_secs().saturating_add(u64::from(ttl)) {
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

#[derive(Debug, Default)]
struct Inner {
    /// tag → (highest accepted nc, issue time).
    seen: HashMap<[u8; NONCE_LEN - SIGNED_LEN], (u32, u64)>,
    /// Untracked nonces issued at or before this second count as used.
    floor: Option<u64>,
}

/// The per-node nonce-count table (see the module doc).
#[derive(Debug)]
pub struct NonceCounts {
    // A parking_lot mutex, held only for a map lookup or insert (and, when
    // full, one pass over the map), never across I/O.
    inner: Mutex<Inner>,
    capacity: usize,
}

impl Default for NonceCounts {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_NONCE_CAPACITY)
    }
}

impl NonceCounts {
    /// A table holding at most `capacity` nonces (at least 8).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            capacity: capacity.max(8),
        }
    }

    /// The most nonces held at once.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Nonces held now.
    pub fn len(&self) -> usize {
        self.inner.lock().seen.len()
    }

    /// True when no nonce is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Record use `nc` of `nonce` if it is above every earlier one. `now`
    /// and `ttl` tell which held entries are past their lifetime.
    pub fn check(&self, nonce: &Nonce, nc: u32, now: Timestamp, ttl: u32) -> NcVerdict {
        let mut inner = self.inner.lock();
        if let Some((last, _)) = inner.seen.get_mut(&nonce.tag) {
            if nc > *last {
                *last = nc;
                return NcVerdict::Accepted;
            }
            return NcVerdict::Replay;
        }
        if inner.floor.is_some_and(|f| nonce.issued <= f) {
            return NcVerdict::Forgotten;
        }
        if inner.seen.len() >= self.capacity {
            Self::make_room(&mut inner, self.capacity, now, ttl);
            // The floor may have moved past this nonce.
            if inner.floor.is_some_and(|f| nonce.issued <= f) {
                return NcVerdict::Forgotten;
            }
        }
        inner.seen.insert(nonce.tag, (nc, nonce.issued));
        NcVerdict::Accepted
    }

    fn make_room(inner: &mut Inner, capacity: usize, now: Timestamp, ttl: u32) {
        let oldest_live = now.as_secs().saturating_sub(u64::from(ttl));
        inner.seen.retain(|_, (_, issued)| *issued >= oldest_live);
        if inner.seen.len() < capacity {
            return;
        }
        let mut issued: Vec<u64> = inner.seen.values().map(|(_, i)| *i).collect();
        let k = (capacity / 8).max(1).min(issued.len() - 1);
        let (_, cut, _) = issued.select_nth_unstable(k - 1);
        let cut = *cut;
        inner.seen.retain(|_, (_, i)| *i > cut);
        inner.floor = Some(inner.floor.map_or(cut, |f| f.max(cut)));
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
        assert_eq!(v.issued, 1_700_000_000);
        assert!(!v.is_stale(now, 300));
        // RFC 7616 §3.3: past its lifetime the nonce is stale, not invalid.
        let later = now.saturating_add_secs(301);
        assert!(
            verify(SECRET, &n, later, 300)
                .expect("still signed")
                .is_stale(later, 300)
        );
        assert_eq!(verify(b"another secret of some length", &n, now, 300), None);
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
        for i in 0..16u8 {
            assert_eq!(
                t.check(&nonce(900 + u64::from(i), i), 1, now, 300),
                NcVerdict::Accepted
            );
        }
        assert_eq!(t.len(), 16);
        // Full: the oldest eighth (issued 900 and 901) goes, the floor rises.
        assert_eq!(t.check(&nonce(950, 100), 1, now, 300), NcVerdict::Accepted);
        assert!(t.len() <= 16);
        // A replay of an evicted nonce is not accepted as new.
        assert_eq!(t.check(&nonce(900, 0), 2, now, 300), NcVerdict::Forgotten);
        assert_eq!(t.check(&nonce(901, 1), 2, now, 300), NcVerdict::Forgotten);
        // Nonces that were kept keep their counts.
        assert_eq!(t.check(&nonce(915, 15), 1, now, 300), NcVerdict::Replay);
        assert_eq!(t.check(&nonce(915, 15), 2, now, 300), NcVerdict::Accepted);
    }

    #[test]
    fn expired_entries_make_room_first() {
        let t = NonceCounts::with_capacity(8);
        for i in 0..8u8 {
            t.check(&nonce(u64::from(i), i), 1, Timestamp::from_secs(10), 300);
        }
        // Much later: all eight are past their lifetime and dropped, no floor.
        let later = Timestamp::from_secs(10_000);
        assert_eq!(
            t.check(&nonce(9_999, 50), 1, later, 300),
            NcVerdict::Accepted
        );
        assert_eq!(t.len(), 1);
        assert_eq!(
            t.check(&nonce(9_998, 51), 1, later, 300),
            NcVerdict::Accepted
        );
    }
}
