//! REGISTER handling (RFC 3261 §10.3), digest authentication (RFC 7616) and
//! the redirect lookup (RFC 3261 §8.3, 302) as logic over the location store.
//!
//! CONTRACT (skeleton written by the integrator; the public items below are
//! used by `regmesh-rpc` and `regmesh`).
#![warn(missing_docs)]

use regmesh_location::{Binding, Commit, Location, NodeId, Op, Timestamp};
use regmesh_sip::Source;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

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

/// Registrar counters, named as Kamailio names them where it has the name.
#[derive(Debug, Default)]
pub struct Stats {
    /// REGISTERs answered 2xx.
    pub accepted_regs: AtomicU64,
    /// REGISTERs answered with an error.
    pub rejected_regs: AtomicU64,
}

/// What the transport should do with a received datagram or frame.
#[derive(Debug)]
pub enum Action {
    /// Send these bytes back now.
    Reply(Vec<u8>),
    /// Send these bytes back once the commit is durable; if the commit fails, send a 500 instead.
    ReplyAfterCommit(Vec<u8>, Commit, Vec<u8>),
    /// Send nothing (ACK, responses, unanswerable garbage).
    Drop,
}

/// Everything the registrar needs, shared by all transports.
pub struct Registrar {
    /// Policy.
    pub policy: Policy,
    /// Auth.
    pub auth: AuthConfig,
    /// Node.
    pub node: NodeInfo,
    /// Counters.
    pub stats: Arc<Stats>,
    /// The store.
    pub location: Arc<Location>,
}

impl Registrar {
    /// Handle one received SIP message from `source` on `local` at the store's now.
    pub fn handle(&self, bytes: &[u8], source: Source, local: LocalSocket) -> Action {
        let _ = (bytes, source, local);
        todo!()
    }
}

/// Compute HA1 = H(user:realm:password) for both algorithms (lowercase hex): (MD5, SHA-256).
pub fn ha1(user: &str, realm: &str, password: &str) -> (String, String) {
    let _ = (user, realm, password);
    todo!()
}

/// The pure core: REGISTER `req` against the AoR's `prior` bindings at `now`.
/// Returns the response bytes and the ops to apply. No I/O.
pub fn register(
    req: &regmesh_sip::Request<'_>,
    prior: &[Binding],
    ctx: &RegisterContext<'_>,
) -> (Vec<u8>, Vec<Op>) {
    let _ = (req, prior, ctx);
    todo!()
}

/// Inputs of [`register`] other than the request and bindings.
#[derive(Debug, Clone)]
pub struct RegisterContext<'a> {
    /// Now.
    pub now: Timestamp,
    /// Policy.
    pub policy: &'a Policy,
    /// Node.
    pub node: &'a NodeInfo,
    /// Where the request came from.
    pub source: Source,
    /// Where it arrived.
    pub local: LocalSocket,
    /// To-tag to use in responses.
    pub to_tag: &'a str,
}
