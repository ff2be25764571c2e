//! REGISTER handling (RFC 3261 §10.3), digest authentication (RFC 7616) and
//! the redirect lookup (RFC 3261 §8.3, 302) as logic over the location store.
//!
//! What it does:
//! - [`register()`]: the pure §10.3 core, `(request, prior bindings, now,
//!   policy) -> (response, ops)`, tested as a function;
//! - [`auth`]: digest challenges and verification with stateless signed
//!   nonces ([`nonce`]) and nonce-count replay protection;
//! - [`redirect`]: 302/404 for requests to an AoR, 200 for OPTIONS to the
//!   node, 483/481 where those apply;
//! - [`Registrar::handle`]: the glue a transport calls with received bytes;
//!   it returns an [`Action`] (reply now, reply once durable, or drop).
//!
//! What it does not do: sockets, timers, reading the clock (the store's
//! injected clock gives `now`), persistence (the store's), or transactions:
//! every answer is computed from the request alone, so retransmissions get
//! the same answer by the §10.3 step 7 rules rather than a transaction table.
//! No tokio here.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod auth;
mod date;
pub mod error;
pub mod fields;
mod handle;
pub mod nonce;
pub mod redirect;
pub mod register;
mod stats;
#[cfg(test)]
mod testutil;

pub use auth::ha1;
pub use date::rfc1123;
pub use error::RegisterError;
pub use handle::{Load, to_tag};
pub use register::{Outcome, RegisterContext, register, register_checked};
pub use stats::Stats;

use regmesh_location::{Commit, Location, NodeId};
use std::sync::Arc;

/// What to do with `max_contacts` overflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverflowPolicy {
    /// Reject the REGISTER with 403.
    Reject,
    /// Remove the oldest bindings to make room.
    ReplaceOldest,
}

/// Registrar policy from `[registrar]` in the config.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Expiry when neither the contact nor the request give one (seconds).
    pub default_expires: u32,
    /// Below this (and not 0) the answer is 423 (seconds).
    pub min_expires: u32,
    /// Expiries are clamped to this (seconds; 0 = no limit).
    pub max_expires: u32,
    /// Bindings per AoR (0 = no limit).
    pub max_contacts: u32,
    /// What to do past `max_contacts`.
    pub overflow: OverflowPolicy,
}

/// Digest auth settings from `[auth]`.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Whether REGISTER must be authenticated.
    pub enabled: bool,
    /// Realm in challenges; when `None` the To domain is used.
    pub realm: Option<String>,
    /// Secret that signs nonces (shared across a cluster).
    pub secret: Vec<u8>,
    /// Nonce lifetime in seconds before `stale=true`.
    pub nonce_ttl: u32,
    /// Require the authenticated user to match the AoR's user and domain.
    pub match_aor: bool,
    /// Algorithms offered, one challenge each, in this order; credentials
    /// using any other algorithm are refused. Many deployed UAs (and SIPp)
    /// answer only the first challenge and know only MD5, so the embedded
    /// default lists MD5 first; list SHA-256 first where every UA supports
    /// it (RFC 7616 §3.7: the server lists its preferred algorithm first).
    pub algorithms: Vec<auth::Algorithm>,
}

/// The node's identity as the registrar needs it.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// Node id.
    pub id: NodeId,
}

/// The local socket a request arrived on, `proto:ip:port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalSocket {
    /// Transport.
    pub transport: regmesh_sip::Transport,
    /// Address.
    pub addr: std::net::SocketAddr,
}

/// What the transport should do with a received datagram or frame.
#[derive(Debug)]
pub enum Action {
    /// Send these bytes back now.
    Reply(Vec<u8>),
    /// Send [`Deferred::into_reply`] once the commit is durable; if the
    /// commit fails (or was refused at once), send [`Deferred::failed`].
    ReplyAfterCommit(Deferred, Commit),
    /// Send nothing (ACK, responses, unanswerable garbage).
    Drop,
}

/// A reply that waits for a commit, and what it takes to answer otherwise
/// if the commit fails.
///
/// The 503 for a failed commit is built only when a commit fails, from the
/// header fields the reply already copied from the request (the request is
/// long gone by then): building it up front cost a second response, with
/// its Via parsed again, for every REGISTER, to be thrown away nearly always.
#[derive(Debug)]
pub struct Deferred {
    reply: Vec<u8>,
    /// Where the header fields copied from the request end in `reply`.
    head: usize,
}

impl Deferred {
    pub(crate) fn new(reply: Vec<u8>, head: usize) -> Self {
        Self { reply, head }
    }

    /// The reply to send once the commit is durable.
    pub fn reply(&self) -> &[u8] {
        &self.reply
    }

    /// The reply to send once the commit is durable, by value.
    pub fn into_reply(self) -> Vec<u8> {
        self.reply
    }

    /// The reply to send when the commit failed: 503 with `Retry-After`
    /// (RFC 3261 §21.5.4), with the same Via, From, To (and To-tag),
    /// Call-ID and CSeq as [`Deferred::reply`] (§8.2.6.2).
    pub fn failed(&self) -> Vec<u8> {
        register::error_from_reply(&self.reply, self.head, &RegisterError::StoreUnavailable)
    }
}

/// Everything the registrar needs, shared by all transports.
pub struct Registrar {
    /// Policy.
    pub policy: Policy,
    /// Auth.
    pub auth: AuthConfig,
    /// Node.
    pub node: NodeInfo,
    /// Counters (and the node's nonce-count table).
    pub stats: Arc<Stats>,
    /// The store.
    pub location: Arc<Location>,
}
