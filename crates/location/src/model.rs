//! Pure data: bindings, versions and changes, and the merge rule. No I/O.
//!
//! The merge rule itself lives in [`crate::merge`](mod@crate::merge) and is re-exported here:
//! [`merge`] decides, for one key (`aor`, `contact`), what a [`Change`] does
//! to the [`Entry`] currently held for that key.

use crate::clock::Timestamp;
use serde::{Deserialize, Serialize};

pub use crate::merge::{MergeDecision, merge};

/// Identifies a node of the cluster (`[node] id` in the config; Kamailio's `server_id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub u32);

/// Hybrid logical clock stamp: upper 48 bits are Unix milliseconds, lower 16 a
/// logical counter. Ordered as an integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Hlc(pub u64);

impl Hlc {
    /// A stamp from its parts: Unix milliseconds and a logical counter.
    pub const fn from_parts(wall_millis: u64, counter: u16) -> Self {
        Self((wall_millis << 16) | counter as u64)
    }
    /// The wall-clock part, in Unix milliseconds.
    pub const fn wall_millis(self) -> u64 {
        self.0 >> 16
    }
    /// The logical counter (low 16 bits).
    pub const fn counter(self) -> u16 {
        (self.0 & 0xffff) as u16
    }
}

/// The version of a change: ties on `hlc` break on `node`, so two nodes can
/// never disagree about which write wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Version {
    /// Stamp.
    pub hlc: Hlc,
    /// Origin node.
    pub node: NodeId,
}

/// One contact bound to an address-of-record (RFC 3261 §10, with the fields
/// of Kamailio's `location` table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Binding {
    /// Address-of-record key, `user@domain` (see `regmesh_sip::Uri::aor`).
    pub aor: String,
    /// Contact URI exactly as registered (without the name-addr brackets or header params).
    pub contact: String,
    /// Absolute expiry time.
    pub expires: Timestamp,
    /// q-value in thousandths (RFC 3261 §20.10); `None` when the UA gave none.
    pub q: Option<u16>,
    /// Call-ID of the REGISTER that last wrote this binding.
    pub call_id: String,
    /// CSeq number of that REGISTER.
    pub cseq: u32,
    /// Internal flags.
    pub flags: u32,
    /// Branch flags (Kamailio `cflags`).
    pub cflags: u32,
    /// User-Agent header of the REGISTER.
    pub user_agent: Option<String>,
    /// Source address the REGISTER came from, `sip:ip:port;transport=x` (RFC 3581).
    pub received: Option<String>,
    /// Local socket it arrived on, `proto:ip:port`.
    pub socket: Option<String>,
    /// Path header values (RFC 3327), in order.
    pub path: Vec<String>,
    /// `+sip.instance` (RFC 5626), without the surrounding quotes.
    pub instance: Option<String>,
    /// `reg-id` (RFC 5626).
    pub reg_id: Option<u32>,
    /// Allowed-methods bitmask, when known.
    pub methods: Option<u32>,
    /// Record unique id, generated when the binding is first created.
    pub ruid: String,
    /// Last modification time.
    pub last_modified: Timestamp,
    /// Node the REGISTER arrived on (the home node).
    pub origin: NodeId,
    /// Version of the change that last wrote this binding (set by the store).
    pub version: Version,
}

/// What a change does to one binding, as decided by its author.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeKind {
    /// A binding that did not exist.
    Insert,
    /// A new expiry or new fields for an existing binding.
    Refresh,
    /// Removal (unregistration, RPC removal, replacement, or local expiry).
    Remove,
}

/// A write to the location table, before the store stamps it.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Insert a new binding (`version` ignored; the store stamps it).
    Insert(Binding),
    /// Refresh an existing binding (`version` ignored; the store stamps it).
    Refresh(Binding),
    /// Remove the binding of `contact` under `aor`.
    Remove {
        /// AoR key.
        aor: String,
        /// Contact URI.
        contact: String,
    },
}

/// A stamped change: the unit of durability and (later) replication.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// What it does.
    pub kind: ChangeKind,
    /// AoR key.
    pub aor: String,
    /// Contact URI (with `aor`, the key of the binding).
    pub contact: String,
    /// Stamp and origin node.
    pub version: Version,
    /// The new binding, for Insert and Refresh.
    pub binding: Option<Binding>,
    /// For Remove: when the tombstone may be forgotten (the expiry of what it deleted).
    pub tombstone_until: Timestamp,
}

/// What the table holds for one key (`aor`, `contact`): a live binding, or a
/// tombstone remembering that a binding was removed, so that an older write
/// arriving late (replication delivers in any order) cannot bring it back.
// Nearly every entry is live, so boxing the binding would add an allocation
// per binding to save space only on the rare tombstone.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Entry {
    /// A binding (it may have passed its expiry and wait for the sweep).
    Live(Binding),
    /// A removed binding.
    Tombstone {
        /// Version of the removal.
        version: Version,
        /// When the tombstone may be forgotten: the expiry of the binding it
        /// removed, after which no write it could have lost to is still live.
        until: Timestamp,
    },
}

impl Entry {
    /// The version of the write that produced this entry.
    pub fn version(&self) -> Version {
        match self {
            Self::Live(b) => b.version,
            Self::Tombstone { version, .. } => *version,
        }
    }
    /// The binding, when live.
    pub fn binding(&self) -> Option<&Binding> {
        match self {
            Self::Live(b) => Some(b),
            Self::Tombstone { .. } => None,
        }
    }
    /// True for a tombstone.
    pub fn is_tombstone(&self) -> bool {
        matches!(self, Self::Tombstone { .. })
    }
    /// When the entry may leave the table: a binding's expiry, a tombstone's `until`.
    pub fn deadline(&self) -> Timestamp {
        match self {
            Self::Live(b) => b.expires,
            Self::Tombstone { until, .. } => *until,
        }
    }
    /// The entry a change produces when it wins. The binding's `version` is
    /// set to the change's, so the two can never disagree. An Insert or
    /// Refresh without a binding (malformed) is read as a removal, which
    /// keeps merging total and deterministic; the store rejects such changes
    /// before they get here.
    pub fn from_change(change: &Change) -> Self {
        match (&change.kind, &change.binding) {
            (ChangeKind::Insert | ChangeKind::Refresh, Some(b)) => {
                let mut b = b.clone();
                b.version = change.version;
                Self::Live(b)
            }
            _ => Self::Tombstone {
                version: change.version,
                until: change.tombstone_until,
            },
        }
    }
    /// This entry as a change that recreates it anywhere (for snapshots):
    /// a live binding becomes a Refresh, a tombstone a Remove.
    pub fn to_change(&self, aor: &str, contact: &str) -> Change {
        match self {
            Self::Live(b) => Change {
                kind: ChangeKind::Refresh,
                aor: aor.to_owned(),
                contact: contact.to_owned(),
                version: b.version,
                binding: Some(b.clone()),
                tombstone_until: Timestamp::ZERO,
            },
            Self::Tombstone { version, until } => Change {
                kind: ChangeKind::Remove,
                aor: aor.to_owned(),
                contact: contact.to_owned(),
                version: *version,
                binding: None,
                tombstone_until: *until,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hlc_parts_round_trip() {
        let h = Hlc::from_parts(1_700_000_000_123, 42);
        assert_eq!(h.wall_millis(), 1_700_000_000_123);
        assert_eq!(h.counter(), 42);
        assert!(Hlc::from_parts(5, 0) > Hlc::from_parts(4, u16::MAX));
    }

    #[test]
    fn versions_order_on_hlc_then_node() {
        let v = |h, n| Version {
            hlc: Hlc(h),
            node: NodeId(n),
        };
        assert!(v(2, 1) > v(1, 9));
        assert!(v(1, 2) > v(1, 1));
    }
}
