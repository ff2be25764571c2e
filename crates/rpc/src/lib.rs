//! JSON-RPC 2.0 management and provisioning (Kamailio method names where they
//! exist), independent of transport, plus the HTTP and UNIX-socket transports.
//!
//! CONTRACT (skeleton written by the integrator; used by `regmesh`).
#![warn(missing_docs)]

use regmesh_location::{Location, NodeId, Timestamp};
use regmesh_registrar::Stats;
use std::sync::Arc;

/// What the handlers can reach.
#[derive(Clone)]
pub struct RpcContext {
    /// The store.
    pub location: Arc<Location>,
    /// Registrar counters.
    pub stats: Arc<Stats>,
    /// Realm used to compute HA1 for `subscriber.add` when none is given
    /// (`None`: the subscriber's domain).
    pub realm: Option<String>,
    /// This node.
    pub node: NodeId,
    /// Start time, for `core.uptime`.
    pub started: Timestamp,
    /// Default expires for `ul.add` when 0 is not meant as permanent.
    pub default_expires: u32,
}

/// Handle one JSON-RPC request body (single or batch). `None` when nothing
/// is to be sent back (only notifications).
pub async fn handle(ctx: &RpcContext, body: &[u8]) -> Option<Vec<u8>> {
    let _ = (ctx, body);
    todo!()
}

/// The axum router serving `POST /RPC`; `token`, when set, is required as
/// `Authorization: Bearer <token>` (401 otherwise).
pub fn router(ctx: RpcContext, token: Option<String>) -> axum::Router {
    let _ = (ctx, token);
    todo!()
}

/// Serve newline-delimited JSON-RPC on a UNIX stream socket at `path`
/// (mode 0600) until `cancel` fires.
pub async fn serve_unix(
    path: &std::path::Path,
    ctx: RpcContext,
    cancel: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    let _ = (path, ctx, cancel);
    todo!()
}
