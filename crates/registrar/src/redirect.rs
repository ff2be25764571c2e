//! Every request other than REGISTER: the node is a stateless redirect
//! server over the location table (RFC 3261 §8.3, §21.3.3), plus OPTIONS
//! for health checks.
//!
//! - ACK: nothing to answer (RFC 3261 §17.2.1: ACKs are never answered).
//! - A request failing the UAS checks of RFC 3261 §8.2: 400 with the
//!   parser's reason phrase.
//! - OPTIONS whose Request-URI has no user part (`sip:node.example.com`,
//!   what load balancers and keep-alive monitors send): 200 with `Allow`,
//!   `Accept` and `Supported` (RFC 3261 §11.2), whatever its Max-Forwards
//!   (§11: an OPTIONS with Max-Forwards 0 probes the next hop, which is us).
//! - `Max-Forwards: 0` on anything else: 483 Too Many Hops (§16.3 step 3;
//!   we would otherwise point the caller onward).
//! - CANCEL: 481 Call/Transaction Does Not Exist. The node keeps no
//!   transactions: it answered the request being cancelled the moment it
//!   arrived, so there is never anything left to cancel (§9.2).
//! - A Request-URI that is not SIP or SIPS: 416 (§8.2.2.1).
//! - Otherwise the Request-URI's AoR is looked up: live bindings give
//!   `302 Moved Temporarily` with one Contact per binding, highest q first
//!   (§8.3, §16.6 step 8 try order); none give 404 Not Found (§21.4.5).
//!
//! **Unspecified q.** RFC 3261 does not say where a contact without `q`
//! ranks. It is ranked as q=1.0, the value HTTP gives an absent qvalue
//! (RFC 2616 §14.1), from which SIP took the syntax; a UA that wants a
//! contact tried later says so with an explicit lower q. Ties, and contacts
//! with equal q, go most recently registered first (the device used last is
//! the likeliest to answer).

use crate::error::RegisterError;
use crate::register::{SUPPORTED_EXTENSIONS, contact_value, error_response};
use regmesh_location::{Binding, Timestamp};
use regmesh_sip::{Method, Request, ResponseBuilder, Source};

/// Methods listed in `Allow` of an OPTIONS 200: REGISTER is served, and
/// every other method is answered (redirected), so all are "allowed".
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, MESSAGE, SUBSCRIBE, NOTIFY, REFER, INFO, UPDATE, PRACK, PUBLISH";

/// What happened to a non-REGISTER request (for the counters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Nothing is sent (ACK).
    Dropped,
    /// 400, 416: the request was not acceptable.
    Rejected(RegisterError),
    /// 200 to an OPTIONS for the node.
    Options,
    /// 483.
    TooManyHops,
    /// 481 to a CANCEL.
    NoTransaction,
    /// 302 with this many contacts.
    Redirected(usize),
    /// 404.
    NotFound,
}

/// The reply (if any) and what it was.
#[derive(Debug)]
pub struct Routed {
    /// Bytes to send, `None` to send nothing.
    pub reply: Option<Vec<u8>>,
    /// What it was.
    pub disposition: Disposition,
}

/// Answer a non-REGISTER request. `lookup(aor)` returns the AoR's bindings
/// (expired ones are filtered here against `now`).
pub fn route(
    req: &Request<'_>,
    source: Source,
    to_tag: &str,
    now: Timestamp,
    lookup: impl FnOnce(&str) -> Vec<Binding>,
) -> Routed {
    if req.method == Method::Ack {
        return Routed {
            reply: None,
            disposition: Disposition::Dropped,
        };
    }
    let reply = |status: u16, reason: &str, disposition: Disposition| Routed {
        reply: Some(
            ResponseBuilder::new(req, Some(source), status, reason, to_tag).finish(None, b""),
        ),
        disposition,
    };
    let reject = |e: RegisterError| Routed {
        reply: Some(error_response(req, source, to_tag, &e, &[])),
        disposition: Disposition::Rejected(e),
    };
    if let Err(e) = req.validate() {
        return reject(e.into());
    }
    let uri = match req.request_uri() {
        Ok(u) => u,
        Err(e) => return reject(e.into()),
    };
    if req.method == Method::Options && uri.user.is_none() {
        let mut rb = ResponseBuilder::new(req, Some(source), 200, "OK", to_tag);
        rb.header("Allow", ALLOW)
            .header("Accept", "application/sdp")
            .header("Supported", &SUPPORTED_EXTENSIONS.join(", "));
        return Routed {
            reply: Some(rb.finish(None, b"")),
            disposition: Disposition::Options,
        };
    }
    if req.max_forwards().ok().flatten() == Some(0) {
        return reply(483, "Too Many Hops", Disposition::TooManyHops);
    }
    if req.method == Method::Cancel {
        return reply(
            481,
            "Call/Transaction Does Not Exist",
            Disposition::NoTransaction,
        );
    }
    if !uri.is_sip() {
        return reject(RegisterError::UnsupportedScheme {
            what: "Request-URI",
        });
    }
    let mut bindings: Vec<Binding> = lookup(&uri.aor())
        .into_iter()
        .filter(|b| b.expires > now)
        .collect();
    if bindings.is_empty() {
        return reply(404, "Not Found", Disposition::NotFound);
    }
    sort_for_redirect(&mut bindings);
    let mut rb = ResponseBuilder::new(req, Some(source), 302, "Moved Temporarily", to_tag);
    for b in &bindings {
        rb.header("Contact", &contact_value(b, now, false));
    }
    Routed {
        reply: Some(rb.finish(None, b"")),
        disposition: Disposition::Redirected(bindings.len()),
    }
}

/// Highest q first, an absent q ranking as 1.0; then most recently
/// modified first (see the module doc).
pub fn sort_for_redirect(bindings: &mut [Binding]) {
    bindings.sort_by(|a, b| {
        let qa = a.q.unwrap_or(1000);
        let qb = b.q.unwrap_or(1000);
        qb.cmp(&qa).then(b.last_modified.cmp(&a.last_modified))
    });
}

#[cfg(test)]
mod tests;
