//! JSON-RPC 2.0 management and provisioning (Kamailio method names where they
//! exist), independent of transport, plus the HTTP and UNIX-socket transports.
//!
//! - [`handle`] answers one request body (single or batch) against an
//!   [`RpcContext`]; it does no I/O besides the store's. JSON-RPC framing
//!   rules are in [`jsonrpc`]; parameter rules (positional and named) in
//!   the `params` module; the methods in `methods/`.
//! - [`router`] serves it over HTTP (`POST /RPC`, optional bearer token);
//!   [`serve_unix`] over a UNIX socket with newline-delimited JSON.
//!
//! Methods: `ul.dump`, `ul.lookup`, `ul.rm`, `ul.rm_contact`, `ul.add`,
//! `subscriber.add|passwd|rm|show|list`, `stats.get_statistics`,
//! `stats.fetch`, `stats.fetchn`, `core.version`, `core.uptime`,
//! `system.listMethods`, `system.methodHelp` ([`method_names`]).
//!
//! Every write through RPC is an ordinary change: an [`Op`](regmesh_location::Op)
//! through [`Location::update`](regmesh_location::Location::update), stamped
//! by the store, and durable before the answer is sent.
//!
//! Not here: binding sockets for HTTP (the binary owns its listeners), the
//! rule that a non-loopback HTTP listener needs a token (config validation in
//! `regmesh`), metrics.
#![warn(missing_docs)]

mod error;
mod http;
pub mod jsonrpc;
mod methods;
mod params;
mod unix;

pub use error::RpcError;
pub use http::MAX_BODY;
pub use methods::method_names;
pub use unix::MAX_LINE;

use regmesh_location::{Location, NodeId, Timestamp};
use regmesh_registrar::Stats;
use serde_json::Value;
use std::sync::Arc;

/// The expiry `ul.add` gives a permanent contact (`expires` 0, as in
/// Kamailio): the store keeps absolute times only, so "permanent" is this
/// far-future instant (`u64::MAX / 2` ms, about 292 million years), which
/// dumps show as `"permanent"`.
pub const PERMANENT: Timestamp = methods::PERMANENT;

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
    /// Expiry (seconds) for the named form of `ul.add` when `expires` is not
    /// given; also reported as `registrar:default_expire`. (The positional
    /// form always has `expires`, and 0 there means permanent.)
    pub default_expires: u32,
    /// `registrar.max_expires` (0 = no limit), reported as `registrar:max_expires`.
    pub max_expires: u32,
    /// `registrar.max_contacts` (0 = no limit), reported as `registrar:max_contacts`.
    pub max_contacts: u32,
    /// Calls by method and result, for metrics.
    pub calls: Arc<RpcCalls>,
}

/// RPC calls counted by method and result. Only known method names become
/// labels (anything else counts as `unknown`), so a client cannot grow the
/// metric set without bound.
#[derive(Debug, Default)]
pub struct RpcCalls {
    counts: parking_lot::Mutex<std::collections::BTreeMap<(&'static str, bool), u64>>,
}

impl RpcCalls {
    fn record(&self, method: &str, ok: bool) {
        let name = method_names().find(|n| *n == method).unwrap_or("unknown");
        *self.counts.lock().entry((name, ok)).or_default() += 1;
    }

    /// `(method, ok, count)` for every pair seen, sorted.
    pub fn snapshot(&self) -> Vec<(&'static str, bool, u64)> {
        self.counts
            .lock()
            .iter()
            .map(|(&(m, ok), &n)| (m, ok, n))
            .collect()
    }
}

/// Handle one JSON-RPC request body (single or batch). `None` when nothing
/// is to be sent back (only notifications).
pub async fn handle(ctx: &RpcContext, body: &[u8]) -> Option<Vec<u8>> {
    match jsonrpc::decode(body) {
        Err(e) => Some(jsonrpc::encode(&jsonrpc::failure(Value::Null, &e))),
        Ok(jsonrpc::Body::Single(entry)) => run(ctx, entry).await.map(|v| jsonrpc::encode(&v)),
        Ok(jsonrpc::Body::Batch(entries)) => {
            let mut out = Vec::new();
            for entry in entries {
                if let Some(v) = run(ctx, entry).await {
                    out.push(v);
                }
            }
            if out.is_empty() {
                None
            } else {
                Some(jsonrpc::encode(&Value::Array(out)))
            }
        }
    }
}

/// Run one entry; `None` for a notification.
async fn run(ctx: &RpcContext, entry: jsonrpc::Entry) -> Option<Value> {
    let req = match entry {
        Ok(req) => req,
        Err((id, e)) => return Some(jsonrpc::failure(id, &e)),
    };
    let result = methods::call(ctx, &req.method, params::Params::new(req.params.as_ref())).await;
    ctx.calls.record(&req.method, result.is_ok());
    match &result {
        Err(e @ RpcError::Store { .. }) => {
            tracing::error!(rpc.method = %req.method, error = %e, "RPC write failed in the store");
        }
        r => tracing::debug!(rpc.method = %req.method, ok = r.is_ok(), "RPC call"),
    }
    let id = req.id?;
    Some(match result {
        Ok(v) => jsonrpc::success(id, v),
        Err(e) => jsonrpc::failure(id, &e),
    })
}

/// The axum router serving `POST /RPC`; `token`, when set, is required as
/// `Authorization: Bearer <token>` (401 otherwise). Details in the `http`
/// module: 1 MiB body limit (413), parse errors as HTTP 200 with -32700,
/// 204 for notifications, 405 for other methods.
pub fn router(ctx: RpcContext, token: Option<String>) -> axum::Router {
    http::router(ctx, token)
}

/// Serve newline-delimited JSON-RPC on a UNIX stream socket at `path`
/// (mode 0600) until `cancel` fires; the socket file is removed on exit.
/// Framing: one request or batch per line in, one response line out (none
/// for notifications); lines over [`MAX_LINE`] get an error and the
/// connection is closed. A stale socket file is replaced only if nothing
/// answers on it; a non-socket file at `path` is an error.
pub async fn serve_unix(
    path: &std::path::Path,
    ctx: RpcContext,
    cancel: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    unix::serve(path, ctx, cancel).await
}
