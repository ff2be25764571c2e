//! The pure REGISTER core (RFC 3261 §10.3): a request, the AoR's bindings
//! and `now` in; the response and the ops to apply out. No I/O, no clock, no
//! randomness (the caller passes a seed for new record ids).
//!
//! Processing follows the steps of §10.3 (step 1, the domain check, accepts
//! every domain; step 3, authentication, is [`crate::auth`]'s, run by the
//! caller before this):
//!
//! - step 2: a `Require` tag other than `path` and `outbound` gives 420;
//! - step 5: the AoR is the To URI's [`regmesh_sip::Uri::aor`], which must be
//!   SIP or SIPS (else 416);
//! - step 6: `Contact: *` needs `Expires: 0` (400 otherwise; `*` mixed with
//!   other contacts is already a parse error, answered 400) and removes
//!   every binding;
//! - step 7: each contact's expiry comes from its `expires` parameter, else
//!   the Expires header, else `default_expires`; a malformed value counts
//!   as absent (RFC 4475 §3.1.2.4 allows treating it as the default). A
//!   non-zero expiry below `min_expires` fails the whole request with 423 and
//!   `Min-Expires`; above `max_expires` it is clamped. A contact matching a
//!   stored binding (URI comparison of §19.1.4) with the same Call-ID is
//!   checked against its CSeq: lower is out of order (the whole request
//!   fails, see [`RegisterError::OutOfOrder`] for the chosen 400), equal is
//!   a retransmission of the request that wrote it (nothing changes, the
//!   answer is the same 200), higher or another Call-ID updates or removes
//!   it. `Contact: *` must be newer than every binding it removes (equal is
//!   out of order too: the request that wrote a binding cannot have
//!   removed it). All updates apply, or none (§10.3: "committed ... if and
//!   only if all binding updates and additions succeed");
//! - step 8: 200 OK lists every current binding with its remaining
//!   `expires` (and `q`, `+sip.instance`, `reg-id` when set), plus `Date`.
//!
//! Extensions: the source address is stored as `received` (RFC 3581) and
//! the arrival socket as `socket`; Path (RFC 3327) is stored and echoed in
//! the 200 when the UA sent `Supported: path`; a contact carrying the
//! `+sip.instance` and `reg-id` of a stored binding under another URI
//! replaces that binding (RFC 5626 §6: one binding per flow; the Call-ID and
//! CSeq rule applies to it as to a removal), and the 200 then says
//! `Require: outbound` if the UA supports it;
//! a `reg-id` without `+sip.instance` is ignored, since it names a flow only
//! together with the instance. `max_contacts` is checked when a request
//! adds a binding: [`OverflowPolicy::Reject`] answers 403, and
//! [`OverflowPolicy::ReplaceOldest`] removes the least recently modified
//! bindings that the request did not itself write (403 if that is not
//! enough room).

use crate::error::RegisterError;
use crate::fields::{format_q, methods_mask, same_contact, write_received, write_socket};
use crate::{LocalSocket, NodeInfo, OverflowPolicy, Policy};
use regmesh_location::{Binding, Hlc, Op, Timestamp, Version};
use regmesh_sip::{Contacts, NameAddr, Request, ResponseBuilder, Source, unquote};
use std::borrow::Cow;

/// Option tags this registrar implements (RFC 3261 §10.3 step 2).
pub const SUPPORTED_EXTENSIONS: [&str; 2] = ["path", "outbound"];

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
    /// Random seed from which the record ids (ruid) of new bindings are
    /// derived; the caller draws it, so this function stays deterministic.
    pub ruid_seed: u64,
}

/// What [`register`] decided.
#[derive(Debug)]
pub struct Outcome {
    /// Status code of `response`.
    pub status: u16,
    /// The complete response, ready to send.
    pub response: Vec<u8>,
    /// Where the header fields copied from the request (Via … CSeq) end in
    /// `response`: enough to answer the same request with another status
    /// later ([`crate::Deferred::failed`]).
    pub head: usize,
    /// The ops to apply (empty for a query, a retransmission or an error).
    pub ops: Vec<Op>,
    /// Why the request failed, when it did.
    pub error: Option<RegisterError>,
}

/// The pure core: REGISTER `req` against the AoR's `prior` bindings at
/// `ctx.now`. Returns the response and the ops to apply. No I/O.
pub fn register(req: &Request<'_>, prior: &[Binding], ctx: &RegisterContext<'_>) -> Outcome {
    match check(req) {
        Ok(checked) => register_checked(req, &checked, prior, ctx),
        Err(e) => refused(req, ctx, e),
    }
}

/// [`register`] for a request that already passed [`check`] (the glue
/// checks before it authenticates, and each check parses Via, To and From
/// again).
pub fn register_checked(
    req: &Request<'_>,
    checked: &Checked<'_>,
    prior: &[Binding],
    ctx: &RegisterContext<'_>,
) -> Outcome {
    let plan = match plan(req, checked, prior, ctx) {
        Ok(plan) => plan,
        Err(e) => return refused(req, ctx, e),
    };
    // The response lists the bindings before they move into the ops.
    let (response, head) = ok_response(req, ctx, &plan);
    Outcome {
        status: 200,
        response,
        head,
        ops: diff(prior, ctx.now, plan.work, &checked.aor),
        error: None,
    }
}

fn refused(req: &Request<'_>, ctx: &RegisterContext<'_>, e: RegisterError) -> Outcome {
    let (response, head) = error_reply(req, ctx.source, ctx.to_tag, &e, &[]);
    Outcome {
        status: e.status(),
        response,
        head,
        ops: Vec::new(),
        error: Some(e),
    }
}

/// The fields of a REGISTER the core needs, checked.
#[derive(Debug)]
pub struct Checked<'r> {
    /// The AoR key (RFC 3261 §10.3 step 5).
    pub aor: String,
    /// The To header (the AoR's URI).
    pub to: NameAddr<'r>,
    /// Call-ID.
    pub call_id: &'r str,
    /// CSeq number.
    pub cseq: u32,
    /// The From tag, if any.
    pub from_tag: Option<&'r str>,
}

/// The checks made before anything else, shared with the glue (which needs
/// the AoR before authenticating): the UAS checks of RFC 3261 §8.2 (through
/// [`Request::validated`]), SIP schemes for the Request-URI and To (§10.3
/// steps 1 and 5), and `Require` (§10.3 step 2).
pub fn check<'r>(req: &'r Request<'_>) -> Result<Checked<'r>, RegisterError> {
    // One parse of each field: validation keeps what it parsed.
    let v = req.validated()?;
    if !v.request_uri.is_sip() {
        return Err(RegisterError::UnsupportedScheme {
            what: "Request-URI",
        });
    }
    let to = v.to;
    if !to.uri.is_sip() {
        return Err(RegisterError::UnsupportedScheme { what: "To" });
    }
    let unsupported: Vec<&str> = option_tags(req, "Require")
        .filter(|t| {
            !SUPPORTED_EXTENSIONS
                .iter()
                .any(|s| s.eq_ignore_ascii_case(t))
        })
        .collect();
    if !unsupported.is_empty() {
        return Err(RegisterError::BadExtension {
            unsupported: unsupported.join(", "),
        });
    }
    Ok(Checked {
        aor: to.uri.aor(),
        call_id: v.call_id,
        cseq: v.cseq.seq,
        from_tag: v.from.tag(),
        to,
    })
}

/// The option tags of every `name` header (Supported, Require), trimmed.
pub(crate) fn option_tags<'r>(
    req: &'r Request<'_>,
    name: &'r str,
) -> impl Iterator<Item = &'r str> + 'r {
    req.headers
        .get_all(name)
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

fn supports(req: &Request<'_>, tag: &str) -> bool {
    option_tags(req, "Supported").any(|t| t.eq_ignore_ascii_case(tag))
}

/// The result of applying a REGISTER: the AoR's bindings afterwards, from
/// which [`diff`] takes the ops that get the store there.
#[derive(Debug)]
struct Plan<'p, 'r> {
    work: Vec<Slot<'p>>,
    path: Vec<&'r str>,
    outbound: bool,
}

/// A binding in the working set, and whether this request wrote it. A
/// binding the request leaves alone stays borrowed from the store's copy;
/// one it writes is copied once, and that copy moves into its op.
#[derive(Debug)]
struct Slot<'p> {
    binding: Cow<'p, Binding>,
    written: bool,
}

/// What one Contact value asks for.
struct Wanted<'r> {
    uri: &'r str,
    expires: u32,
    q: Option<u16>,
    instance: Option<&'r str>,
    reg_id: Option<u32>,
    methods: Option<u32>,
}

/// Fields every binding written by this request shares.
struct Common<'r> {
    aor: &'r str,
    call_id: &'r str,
    cseq: u32,
    user_agent: Option<&'r str>,
    path: &'r [&'r str],
}

fn plan<'p, 'r>(
    req: &'r Request<'_>,
    checked: &'r Checked<'_>,
    prior: &'p [Binding],
    ctx: &RegisterContext<'_>,
) -> Result<Plan<'p, 'r>, RegisterError> {
    let contacts = req.contacts()?;
    let path = req.path()?;
    let now = ctx.now;
    let mut work: Vec<Slot<'p>> = prior
        .iter()
        .filter(|b| b.expires > now)
        .map(|b| Slot {
            binding: Cow::Borrowed(b),
            written: false,
        })
        .collect();
    let common = Common {
        aor: &checked.aor,
        call_id: checked.call_id,
        cseq: checked.cseq,
        user_agent: req.user_agent(),
        path: &path,
    };
    // RFC 4475 §3.1.2.4: a malformed expiry may be treated as absent.
    let header_expires = req.expires().ok().flatten();
    let mut outbound = false;

    match contacts {
        // RFC 3261 §10.3 step 8 with nothing to change: a query.
        Contacts::None => {}
        // RFC 3261 §10.3 step 6.
        Contacts::Star => {
            if header_expires != Some(0) {
                return Err(RegisterError::StarWithoutZeroExpires);
            }
            for slot in &work {
                let b = &slot.binding;
                if b.call_id == checked.call_id && checked.cseq <= b.cseq {
                    return Err(RegisterError::OutOfOrder {
                        stored: b.cseq,
                        received: checked.cseq,
                    });
                }
            }
            work.clear();
        }
        Contacts::List(list) => {
            let allow = req
                .headers
                .get("Allow")
                .is_some()
                .then(|| methods_mask(req.headers.get_all("Allow")));
            let mut inserted = 0u64;
            for c in &list {
                let wanted = wanted(c, header_expires, allow, ctx.policy)?;
                outbound |= wanted.reg_id.is_some();
                if apply(&mut work, &wanted, &common, ctx, inserted)? {
                    inserted += 1;
                }
            }
            if inserted > 0 {
                enforce_max_contacts(&mut work, ctx.policy)?;
            }
        }
    }

    let outbound = outbound && supports(req, "outbound");
    Ok(Plan {
        work,
        path,
        outbound,
    })
}

/// Read one Contact value (RFC 3261 §10.3 step 7, RFC 5626 §4.2).
fn wanted<'r>(
    c: &NameAddr<'r>,
    header_expires: Option<u32>,
    allow: Option<u32>,
    policy: &Policy,
) -> Result<Wanted<'r>, RegisterError> {
    let expires = c
        .expires()
        .and_then(Result::ok)
        .or(header_expires)
        .unwrap_or(policy.default_expires);
    // RFC 3261 §10.3 step 7: too brief is refused, too long is shortened.
    if expires != 0 && expires < policy.min_expires {
        return Err(RegisterError::IntervalTooBrief {
            min_expires: policy.min_expires,
        });
    }
    let expires = if policy.max_expires != 0 {
        expires.min(policy.max_expires)
    } else {
        expires
    };
    let q = c.q().transpose().map_err(|_| RegisterError::InvalidQ)?;
    let instance = c
        .param("+sip.instance")
        .flatten()
        .map(unquote)
        .filter(|v| !v.is_empty());
    let reg_id = match (instance.is_some(), c.param("reg-id")) {
        (true, Some(v)) => Some(parse_reg_id(v).ok_or(RegisterError::InvalidRegId)?),
        _ => None,
    };
    let methods = match c.param("methods").flatten() {
        Some(list) => Some(methods_mask([unquote(list)])),
        None => allow,
    };
    Ok(Wanted {
        uri: c.uri_text,
        expires,
        q,
        instance,
        reg_id,
        methods,
    })
}

/// `reg-id = 1*DIGIT ; 1 to (2^31 - 1)` (RFC 5626 §4.2).
fn parse_reg_id(v: Option<&str>) -> Option<u32> {
    let v = v?;
    if v.is_empty() || v.len() > 10 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse::<u32>()
        .ok()
        .filter(|n| (1..=0x7fff_ffff).contains(n))
}

/// The RFC 3261 §10.3 step 7 Call-ID/CSeq rule for one stored binding that
/// the request is about to change. `Ok(true)`: a retransmission, leave it.
fn ordered(slot: &Slot<'_>, common: &Common<'_>) -> Result<bool, RegisterError> {
    let b = &slot.binding;
    if slot.written || b.call_id != common.call_id {
        return Ok(false);
    }
    match common.cseq.cmp(&b.cseq) {
        std::cmp::Ordering::Less => Err(RegisterError::OutOfOrder {
            stored: b.cseq,
            received: common.cseq,
        }),
        std::cmp::Ordering::Equal => Ok(true),
        std::cmp::Ordering::Greater => Ok(false),
    }
}

/// Apply one contact to the working set. `Ok(true)` when it added a binding.
fn apply(
    work: &mut Vec<Slot<'_>>,
    w: &Wanted<'_>,
    common: &Common<'_>,
    ctx: &RegisterContext<'_>,
    inserted: u64,
) -> Result<bool, RegisterError> {
    let find = |work: &[Slot<'_>]| {
        work.iter()
            .position(|s| same_contact(&s.binding.contact, w.uri))
    };
    if let Some(i) = find(work)
        && ordered(&work[i], common)?
    {
        return Ok(false);
    }
    if w.expires == 0 {
        // Removing a binding that does not exist changes nothing.
        if let Some(i) = find(work) {
            work.remove(i);
        }
        return Ok(false);
    }
    // RFC 5626 §6: the same instance and reg-id is the same flow, so a
    // binding of that flow under another contact URI is replaced.
    if let (Some(instance), Some(reg_id)) = (&w.instance, w.reg_id) {
        let same_flow = |s: &Slot<'_>| {
            s.binding.instance.as_deref() == Some(instance)
                && s.binding.reg_id == Some(reg_id)
                && !same_contact(&s.binding.contact, w.uri)
        };
        for slot in work.iter().filter(|s| same_flow(s)) {
            let b = &slot.binding;
            if !slot.written && b.call_id == common.call_id && common.cseq <= b.cseq {
                return Err(RegisterError::OutOfOrder {
                    stored: b.cseq,
                    received: common.cseq,
                });
            }
        }
        work.retain(|s| !same_flow(s));
    }
    if let Some(i) = find(work) {
        let slot = &mut work[i];
        fill(slot.binding.to_mut(), w, common, ctx);
        slot.written = true;
        return Ok(false);
    }
    let mut binding = Binding {
        aor: common.aor.to_owned(),
        contact: w.uri.to_owned(),
        expires: ctx.now,
        q: None,
        call_id: String::new(),
        cseq: 0,
        flags: 0,
        cflags: 0,
        user_agent: None,
        received: None,
        socket: None,
        path: Vec::new(),
        instance: None,
        reg_id: None,
        methods: None,
        ruid: new_ruid(ctx.node, ctx.ruid_seed, inserted),
        last_modified: ctx.now,
        origin: ctx.node.id,
        version: Version {
            hlc: Hlc(0),
            node: ctx.node.id,
        },
    };
    fill(&mut binding, w, common, ctx);
    work.push(Slot {
        binding: Cow::Owned(binding),
        written: true,
    });
    Ok(true)
}

/// Set the fields a REGISTER (re)writes. `ruid`, `flags` and `cflags`
/// survive a refresh; everything else reflects the latest REGISTER, and the
/// home node becomes the node it arrived on. Strings are rewritten in place,
/// so a refresh reuses the buffers of the copy it writes.
fn fill(b: &mut Binding, w: &Wanted<'_>, common: &Common<'_>, ctx: &RegisterContext<'_>) {
    b.expires = ctx.now.saturating_add_secs(u64::from(w.expires));
    b.q = w.q;
    set(&mut b.call_id, common.call_id);
    b.cseq = common.cseq;
    set_opt(&mut b.user_agent, common.user_agent);
    write_received(b.received.get_or_insert_default(), ctx.source);
    write_socket(b.socket.get_or_insert_default(), ctx.local);
    if b.path.len() != common.path.len() || b.path.iter().zip(common.path).any(|(x, y)| x != y) {
        b.path = common.path.iter().map(|p| (*p).to_owned()).collect();
    }
    set_opt(&mut b.instance, w.instance);
    b.reg_id = w.reg_id;
    b.methods = w.methods;
    b.last_modified = ctx.now;
    b.origin = ctx.node.id;
}

/// `*s = v`, reusing the buffer of `s`.
fn set(s: &mut String, v: &str) {
    s.clear();
    s.push_str(v);
}

/// `*s = v.map(str::to_owned)`, reusing the buffer of `s`.
fn set_opt(s: &mut Option<String>, v: Option<&str>) {
    match v {
        Some(v) => set(s.get_or_insert_default(), v),
        None => *s = None,
    }
}

/// A record id unique across the cluster: the node id plus 64 bits mixed
/// from the caller's random seed and the insert's index in the request.
fn new_ruid(node: &NodeInfo, seed: u64, index: u64) -> String {
    format!(
        "uloc-{:x}-{:016x}",
        node.id.0,
        splitmix64(seed.wrapping_add(index))
    )
}

/// SplitMix64's finaliser: spreads consecutive inputs over all 64 bits.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `max_contacts` (0 = no limit), checked after the request's changes.
fn enforce_max_contacts(work: &mut Vec<Slot<'_>>, policy: &Policy) -> Result<(), RegisterError> {
    let max = policy.max_contacts;
    let limit = usize::try_from(max).unwrap_or(usize::MAX);
    if max == 0 || work.len() <= limit {
        return Ok(());
    }
    match policy.overflow {
        OverflowPolicy::Reject => Err(RegisterError::TooManyContacts { max }),
        OverflowPolicy::ReplaceOldest => {
            let excess = work.len() - limit;
            let mut old: Vec<usize> = (0..work.len()).filter(|&i| !work[i].written).collect();
            if old.len() < excess {
                return Err(RegisterError::TooManyContacts { max });
            }
            old.sort_by_key(|&i| (work[i].binding.last_modified, work[i].binding.expires));
            let mut drop: Vec<usize> = old.into_iter().take(excess).collect();
            drop.sort_unstable_by(|a, b| b.cmp(a));
            for i in drop {
                work.remove(i);
            }
            Ok(())
        }
    }
}

/// The ops from the bindings of `prior` live at `now` to the working set
/// after: one op per changed key (`aor`, `contact`), which is what the
/// store expects. The bindings the request wrote move into their ops.
fn diff(prior: &[Binding], now: Timestamp, after: Vec<Slot<'_>>, aor: &str) -> Vec<Op> {
    let before = || prior.iter().filter(|b| b.expires > now);
    let mut ops = Vec::new();
    for b in before() {
        if !after.iter().any(|s| s.binding.contact == b.contact) {
            ops.push(Op::Remove {
                aor: aor.to_owned(),
                contact: b.contact.clone(),
            });
        }
    }
    for s in after.into_iter().filter(|s| s.written) {
        let binding = s.binding.into_owned();
        if before().any(|b| b.contact == binding.contact) {
            ops.push(Op::Refresh(binding));
        } else {
            ops.push(Op::Insert(binding));
        }
    }
    ops
}

/// A Contact value for a 200 OK (RFC 3261 §10.3 step 8): the URI, the
/// remaining seconds, and the parameters the UA needs to find its own.
pub(crate) fn contact_value(b: &Binding, now: Timestamp, with_expires: bool) -> String {
    use std::fmt::Write as _;
    // One buffer: this runs for every binding of every 200 OK.
    let mut v = String::with_capacity(b.contact.len() + 48);
    v.push('<');
    v.push_str(&b.contact);
    v.push('>');
    if with_expires {
        // delta-seconds is at most 2^32-1 (RFC 3261 §25.1); a permanent
        // binding (provisioned through RPC) says so rather than overflow.
        let remaining = b.expires.secs_remaining(now).min(u64::from(u32::MAX));
        let _ = write!(v, ";expires={remaining}");
    }
    if let Some(q) = b.q {
        v.push_str(";q=");
        v.push_str(&format_q(q));
    }
    if with_expires {
        if let Some(instance) = &b.instance {
            let _ = write!(v, ";+sip.instance=\"{instance}\"");
        }
        if let Some(reg_id) = b.reg_id {
            let _ = write!(v, ";reg-id={reg_id}");
        }
    }
    v
}

/// The 200 OK and where its copied header fields end.
fn ok_response(
    req: &Request<'_>,
    ctx: &RegisterContext<'_>,
    plan: &Plan<'_, '_>,
) -> (Vec<u8>, usize) {
    let mut rb = ResponseBuilder::new(req, Some(ctx.source), 200, "OK", ctx.to_tag);
    let head = rb.written();
    for s in &plan.work {
        rb.header("Contact", &contact_value(&s.binding, ctx.now, true));
    }
    // RFC 3327 §5.3: echo Path only to a UA that said it supports it.
    if supports(req, "path") {
        for p in &plan.path {
            rb.header("Path", p);
        }
    }
    // RFC 5626 §6: a registrar that accepted a reg-id says so.
    if plan.outbound {
        rb.header("Require", "outbound");
    }
    rb.header("Date", &crate::date::rfc1123(ctx.now));
    (rb.finish(None, b""), head)
}

/// A reply for a failed request: the copied headers, the headers the error
/// needs ([`RegisterError::extra_headers`]) and `extra` (challenges).
pub fn error_response(
    req: &Request<'_>,
    source: Source,
    to_tag: &str,
    e: &RegisterError,
    extra: &[(&str, String)],
) -> Vec<u8> {
    error_reply(req, source, to_tag, e, extra).0
}

/// [`error_response`] and where its copied header fields end.
fn error_reply(
    req: &Request<'_>,
    source: Source,
    to_tag: &str,
    e: &RegisterError,
    extra: &[(&str, String)],
) -> (Vec<u8>, usize) {
    let mut rb = ResponseBuilder::new(req, Some(source), e.status(), e.reason(), to_tag);
    let head = rb.written();
    for (name, value) in e.extra_headers() {
        rb.header(name, &value);
    }
    for (name, value) in extra {
        rb.header(name, value);
    }
    (rb.finish(None, b""), head)
}

/// The reply for `e` to the request that `reply` answers, built from the
/// header fields `reply` copied from it (they end at `head`): byte for byte
/// what [`error_response`] would give with the request at hand.
pub(crate) fn error_from_reply(reply: &[u8], head: usize, e: &RegisterError) -> Vec<u8> {
    // The status line is ours, so it ends at the first CRLF.
    let copied_from = reply
        .windows(2)
        .position(|w| w == b"\r\n")
        .map_or(head, |i| i + 2)
        .min(head);
    let mut rb = ResponseBuilder::from_copied(e.status(), e.reason(), &reply[copied_from..head]);
    for (name, value) in e.extra_headers() {
        rb.header(name, &value);
    }
    rb.finish(None, b"")
}

#[cfg(test)]
mod tests;
