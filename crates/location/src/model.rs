//! Pure data: bindings, versions and changes, and the merge rule. No I/O.

use crate::clock::Timestamp;
use serde::{Deserialize, Serialize};

/// Identifies a node of the cluster (`[node] id` in the config; Kamailio's `server_id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub u32);

/// Hybrid logical clock stamp: upper 48 bits are Unix milliseconds, lower 16 a
/// logical counter. Ordered as an integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Hlc(pub u64);

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
