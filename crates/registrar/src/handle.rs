//! [`Registrar::handle`]: the glue from received bytes to an [`Action`]:
//! parse, authenticate, run the pure core under the AoR's lock, count.
//!
//! - Responses, and requests whose top Via or CSeq is unusable, are
//!   dropped: without them a reply can neither be routed (RFC 3261 §18.2.2)
//!   nor matched to its transaction (§17.1.3). A request the parser refuses
//!   as a whole still gets a 400 (505, 513) with the parser's reason when
//!   its reply fields can be salvaged ([`regmesh_sip::salvage`]). Every
//!   other malformed request gets a 400 naming the problem.
//! - REGISTER: [`check`], then digest auth when enabled, then
//!   [`register`] inside `Location::update`, so the read of the prior
//!   bindings and the write of the ops are atomic per AoR. When there are
//!   ops the reply waits for durability ([`Action::ReplyAfterCommit`]).
//! - Everything else: [`route`] (302/404/OPTIONS).
//! - While the transport reports overload ([`Load::Shedding`]), a REGISTER
//!   that would be challenged gets a cheap 503 with a spread `Retry-After`
//!   instead (RFC 3261 §21.5.4). Everything else is served: a REGISTER
//!   answering a challenge completes work already half done, and any other
//!   request costs about as much to serve as to refuse.
//!
//! The To-tag is a hash of the Call-ID and the From tag, so a retransmitted
//! request gets the same tag as the original (RFC 3261 §8.2.6.2).

use crate::auth::{Authenticator, authenticate, challenges, realm_for, to_hex};
use crate::error::RegisterError;
use crate::redirect::{Disposition, route};
use crate::register::{Checked, RegisterContext, check, error_response, register_checked};
use crate::stats::bump;
use crate::{Action, Deferred, LocalSocket, Registrar};
use regmesh_location::Timestamp;
use regmesh_sip::{Message, Method, Request, Source};
use tracing::debug;

/// Whether the transport that received a message is keeping up with what
/// arrives ([`Registrar::handle_under`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    /// Handle every request.
    Normal,
    /// The transport is overloaded and this request falls in the share it
    /// refuses: refuse it if refusing saves work (a REGISTER that would be
    /// challenged).
    Shedding,
}

/// `Retry-After` of an overload 503: at least this many seconds ...
const SHED_RETRY_MIN_SECS: u64 = 10;
/// ... plus up to this many more, by a hash of the Call-ID, so that the
/// clients turned away in one overloaded second come back spread over a
/// minute rather than together (a re-registration storm is many phones
/// that all lost the network at once).
const SHED_RETRY_SPREAD_SECS: u64 = 50;

impl Registrar {
    /// Handle one received SIP message from `source` on `local` at the store's now.
    pub fn handle(&self, bytes: &[u8], source: Source, local: LocalSocket) -> Action {
        self.handle_under(bytes, source, local, Load::Normal)
    }

    /// [`Registrar::handle`], told whether the transport refuses this
    /// request for overload. Shedding, a REGISTER without credentials while
    /// auth is on gets `503 Service Unavailable` with `Retry-After` of
    /// 10-59 s (RFC 3261 §21.5.4, §20.33) instead of its 401: the 503 costs
    /// one parse and one small answer where the challenge costs a nonce,
    /// then a second request with a digest check and a commit; and an
    /// answered request is not retransmitted, where an unanswered one comes
    /// back every T1-doubling interval and adds to the overload.
    ///
    /// Nothing else is refused. Why: refusing only helps when the refusal
    /// is much cheaper than the service, and on the thread that is
    /// overloaded (the receive thread) it is not for a REGISTER without
    /// auth (its commit and answer are the store writer's work) nor for a
    /// lookup. Measured on 2 cores without auth, at 160,000 and 180,000
    /// REGISTERs/s offered, refusing a share of all REGISTERs completed
    /// 77,000-123,000 a second where serving all of them completed
    /// 138,000-158,000 (BENCHMARKS.md, "Overload").
    pub fn handle_under(
        &self,
        bytes: &[u8],
        source: Source,
        local: LocalSocket,
        load: Load,
    ) -> Action {
        let req = match regmesh_sip::parse(bytes) {
            Ok(Message::Request(r)) => r,
            Ok(Message::Response(_)) => {
                bump(&self.stats.dropped);
                return Action::Drop;
            }
            Err(e) => return self.unparsable(bytes, source, e),
        };
        if req.top_via().is_err() || req.cseq().is_err() {
            debug!(peer = %source.addr, "request without usable Via or CSeq dropped");
            bump(&self.stats.bad_messages);
            bump(&self.stats.dropped);
            return Action::Drop;
        }
        if load == Load::Shedding && self.would_challenge(&req) {
            return self.shed(&req, source);
        }
        let now = self.location.clock().now();
        if req.method == Method::Register {
            self.handle_register(&req, source, local, now)
        } else {
            self.handle_other(&req, source, &to_tag(&req), now)
        }
    }

    /// A REGISTER that would get a 401 (auth on, no credentials): the one
    /// request worth refusing under overload. One with credentials answers
    /// a challenge already sent, and refusing it would waste that.
    fn would_challenge(&self, req: &Request<'_>) -> bool {
        self.auth.enabled
            && req.method == Method::Register
            && req.headers.get("Authorization").is_none()
    }

    /// The overload 503 (see [`Registrar::handle_under`]).
    fn shed(&self, req: &Request<'_>, source: Source) -> Action {
        bump(&self.stats.overload_rejected);
        let call_id = req.headers.get("Call-ID").unwrap_or("");
        let spread = fnv1a(call_id.bytes()) % SHED_RETRY_SPREAD_SECS;
        let retry = (SHED_RETRY_MIN_SECS + spread).to_string();
        let tag = to_tag(req);
        let mut b = regmesh_sip::ResponseBuilder::new(
            req,
            Some(source),
            503,
            "Service Unavailable - Overloaded",
            &tag,
        );
        b.header("Retry-After", &retry);
        Action::Reply(b.finish(None, &[]))
    }

    /// A message [`regmesh_sip::parse`] refused: answer 400 (or 505/513) with
    /// the parser's reason when the fields a reply copies can be salvaged
    /// (RFC 3261 §21.4.1), else drop it. Both are counted.
    fn unparsable(&self, bytes: &[u8], source: Source, e: regmesh_sip::ParseError) -> Action {
        bump(&self.stats.bad_messages);
        let salvaged = regmesh_sip::salvage(bytes).filter(|r| {
            r.method != Method::Ack
                && r.top_via().is_ok()
                && r.cseq().is_ok()
                && r.call_id().is_ok()
                && r.from().is_ok()
                && r.to().is_ok()
        });
        let Some(req) = salvaged else {
            debug!(error = %e, peer = %source.addr, "unparsable message dropped");
            bump(&self.stats.dropped);
            return Action::Drop;
        };
        debug!(error = %e, peer = %source.addr, "malformed request answered");
        if req.method == Method::Register {
            bump(&self.stats.rejected_regs);
        }
        let tag = to_tag(&req);
        let b = regmesh_sip::ResponseBuilder::new(&req, Some(source), e.status(), e.reason(), &tag);
        Action::Reply(b.finish(None, &[]))
    }

    fn handle_register(
        &self,
        req: &Request<'_>,
        source: Source,
        local: LocalSocket,
        now: Timestamp,
    ) -> Action {
        let checked = match check(req) {
            Ok(c) => c,
            Err(e) => return self.refuse(req, source, &to_tag(req), &e, &[]),
        };
        // The same tag as `to_tag` gives, from the fields `check` parsed.
        let tag = &tag_of(checked.call_id, checked.from_tag.unwrap_or(""));
        if self.auth.enabled
            && let Err(e) = self.authenticate(req, &checked, now)
            && !(e == RegisterError::NonceReplay && self.already_applied(&checked))
        {
            let extra = if e.is_challenge() {
                let realm = realm_for(&self.auth, &checked.to);
                challenges(
                    &realm,
                    &self.auth.secret,
                    &self.auth.algorithms,
                    now,
                    rand::random(),
                    e.is_stale(),
                )
            } else {
                Vec::new()
            };
            return self.refuse(req, source, tag, &e, &extra);
        }
        if !self.location.healthy() {
            return self.refuse(req, source, tag, &RegisterError::StoreUnavailable, &[]);
        }
        let ctx = RegisterContext {
            now,
            policy: &self.policy,
            node: &self.node,
            source,
            local,
            to_tag: tag,
            ruid_seed: rand::random(),
        };
        let ((status, response, head, error, changed), commit) =
            self.location.update(&checked.aor, |prior| {
                let out = register_checked(req, &checked, prior, &ctx);
                let changed = !out.ops.is_empty();
                (
                    (out.status, out.response, out.head, out.error, changed),
                    out.ops,
                )
            });
        debug!(status, changed, call_id = checked.call_id, "REGISTER");
        match &error {
            None => bump(&self.stats.accepted_regs),
            Some(e) => {
                bump(&self.stats.rejected_regs);
                if e.is_malformed() {
                    bump(&self.stats.bad_messages);
                }
            }
        }
        // Even with no change (a retransmission, a query) the answer waits
        // for writes of this AoR still in flight: it must not confirm a
        // binding that is not yet on disk.
        if !changed && commit.is_immediate() {
            Action::Reply(response)
        } else {
            Action::ReplyAfterCommit(Deferred::new(response, head), commit)
        }
    }

    /// True when a binding of the AoR was written by this very request
    /// (same Call-ID and CSeq): a retransmission. With auth on, its
    /// credentials repeat a nonce count that was already accepted; RFC 3261
    /// §10.3 step 7 still wants it answered like the original (200, current
    /// bindings, no change) rather than challenged. Only consulted after the
    /// digest proved correct for an allowed user (`NonceReplay` is decided
    /// last), so it opens nothing to a forger; `register` then sees the
    /// equal CSeq and changes nothing.
    fn already_applied(&self, checked: &Checked<'_>) -> bool {
        self.location
            .lookup(&checked.aor)
            .iter()
            .any(|b| b.call_id == checked.call_id && b.cseq == checked.cseq)
    }

    fn authenticate(
        &self,
        req: &Request<'_>,
        checked: &Checked<'_>,
        now: Timestamp,
    ) -> Result<(), RegisterError> {
        let a = Authenticator {
            config: &self.auth,
            counts: &self.stats.nonce_counts,
            now,
        };
        authenticate(req, &checked.to, &a, |user, domain| {
            self.location.subscriber(user, domain)
        })
        .map(|_| ())
    }

    /// Answer a REGISTER with an error and count it.
    fn refuse(
        &self,
        req: &Request<'_>,
        source: Source,
        tag: &str,
        e: &RegisterError,
        extra: &[(&str, String)],
    ) -> Action {
        debug!(status = e.status(), reason = e.reason(), "REGISTER refused");
        if e.is_challenge() {
            bump(&self.stats.auth_challenges);
        } else {
            bump(&self.stats.rejected_regs);
        }
        if e.is_malformed() {
            bump(&self.stats.bad_messages);
        }
        if counts_as_auth_failure(e) {
            bump(&self.stats.auth_failures);
        }
        Action::Reply(error_response(req, source, tag, e, extra))
    }

    fn handle_other(&self, req: &Request<'_>, source: Source, tag: &str, now: Timestamp) -> Action {
        let routed = route(req, source, tag, now, |aor| self.location.lookup(aor));
        debug!(method = req.method.as_str(), disposition = ?routed.disposition, "request");
        match &routed.disposition {
            Disposition::Dropped => bump(&self.stats.dropped),
            Disposition::Rejected(e) => {
                if e.is_malformed() {
                    bump(&self.stats.bad_messages);
                }
            }
            Disposition::Options => {
                bump(&self.stats.options);
                // A load balancer's health check must see a node that
                // cannot make registrations durable as down (RFC 3261
                // §21.5.4), or it keeps sending REGISTERs that get 503.
                if !self.location.healthy() {
                    let e = RegisterError::StoreUnavailable;
                    return Action::Reply(error_response(req, source, tag, &e, &[]));
                }
            }
            Disposition::TooManyHops | Disposition::NoTransaction => {}
            Disposition::Redirected(_) => {
                bump(&self.stats.lookups);
                bump(&self.stats.redirects);
            }
            Disposition::NotFound => {
                bump(&self.stats.lookups);
                bump(&self.stats.not_found);
            }
        }
        match routed.reply {
            Some(bytes) => Action::Reply(bytes),
            None => Action::Drop,
        }
    }
}

/// Credentials were presented and refused (a missing or merely stale
/// credential is the normal first and refresh steps of digest auth).
fn counts_as_auth_failure(e: &RegisterError) -> bool {
    matches!(
        e,
        RegisterError::MalformedCredentials
            | RegisterError::UnsupportedDigest
            | RegisterError::WrongRealm
            | RegisterError::InvalidNonce
            | RegisterError::NonceReplay
            | RegisterError::WrongCredentials
            | RegisterError::DigestUriMismatch
            | RegisterError::UserMismatch
    )
}

/// A To-tag that is the same for every retransmission of a request: FNV-1a
/// (64-bit) over the Call-ID and the From tag, in hex.
pub fn to_tag(req: &Request<'_>) -> String {
    let call_id = req.headers.get("Call-ID").unwrap_or("");
    let from_tag = req.from().ok().and_then(|f| f.tag()).unwrap_or("");
    tag_of(call_id, from_tag)
}

/// [`to_tag`] from the Call-ID and From tag.
fn tag_of(call_id: &str, from_tag: &str) -> String {
    let h = fnv1a(call_id.bytes().chain([0u8]).chain(from_tag.bytes()));
    to_hex(&h.to_be_bytes())
}

/// 64-bit FNV-1a: stable across runs and builds (the To-tag of a
/// retransmission must equal the original's), cheap, and spread well
/// enough for tags and for spreading Retry-After.
fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests;
