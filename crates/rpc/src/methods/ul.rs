//! `ul.*`: the location table (Kamailio's usrloc RPC), with Kamailio's
//! parameter order and result shapes so Kamailio tooling reads them.
//!
//! Every write goes through [`Location::update`](regmesh_location::Location::update)
//! as an explicit [`Op`] (insert, refresh or remove) — stamped, applied
//! through the merge rule and later replicated like a REGISTER — and the
//! answer is sent only after its [`Commit`](regmesh_location::Commit) is
//! durable.
//!
//! Only one table exists, `location`; any other `table` is an invalid
//! parameter. An AoR argument is `user@domain` or a `sip:`/`sips:` URI,
//! reduced to the store's key by [`regmesh_sip::Uri::aor`].
//!
//! Permanent contacts (`ul.add` with `expires` 0, as in Kamailio): the store
//! keeps absolute expiry times only, so "permanent" is the far-future
//! [`PERMANENT`] (year ≈ 292 million); dumps show such a contact's
//! `Expires` as `"permanent"`, as Kamailio does.

mod add;

pub(crate) use add::add;

use crate::RpcContext;
use crate::error::RpcError;
use crate::params::Params;
use regmesh_location::{Binding, Op, Timestamp};
use serde_json::{Value, json};

/// The only table (Kamailio's default usrloc domain name).
const TABLE: &str = "location";

/// Expiry of a permanent contact: `u64::MAX / 2` ms, far enough to never
/// come, and half of `u64` so that any arithmetic on it elsewhere (adding a
/// tombstone lifetime, say) cannot overflow.
pub(crate) const PERMANENT: Timestamp = Timestamp(u64::MAX / 2);

/// Slots reported as the table `Size` in `ul.dump`: Kamailio's default
/// `hash_size` 10 (2^10). Records are counted per slot by [`hash_id`].
const SLOTS: u32 = 1024;

/// `ul.dump ["brief"]`.
///
/// Full: `{"Domains":[{"Domain":{"Domain":"location","Size":1024,"AoRs":[{"Info":
/// {"AoR":..,"HashID":..,"Contacts":[{"Contact":{..}}]}}],"Stats":{"Records":n,
/// "Max-Slots":m}}}]}` (Kamailio's shape; contact fields in [`contact_json`]).
/// Brief: the same, with each AoR as `{"AoR":..,"Contacts":[{"Contact":
/// {"Address":..,"Expires":..}}]}` (Kamailio's brief lists the AoR only; the
/// extra key is ignored by its readers). AoRs are sorted.
///
/// The copy and the JSON are built on a blocking thread: at a million
/// bindings that is hundreds of megabytes, which must not stall the async
/// workers serving SIP and health checks meanwhile.
pub(crate) async fn dump(ctx: &RpcContext, p: &Params<'_>) -> Result<Value, RpcError> {
    p.allow(1, &["mode"])?;
    let brief = match p.opt_string(0, "mode")?.as_deref() {
        None => false,
        Some("brief") => true,
        Some(_) => {
            return Err(RpcError::InvalidParam {
                name: "mode",
                expected: "must be \"brief\" or absent",
            });
        }
    };
    let ctx = ctx.clone();
    tokio::task::spawn_blocking(move || build_dump(&ctx, brief))
        .await
        .map_err(|_| RpcError::Internal {
            what: "the ul.dump worker failed",
        })
}

fn build_dump(ctx: &RpcContext, brief: bool) -> Value {
    let now = ctx.location.clock().now();
    let mut all = ctx.location.dump();
    all.retain(|(_, bindings)| !bindings.is_empty());
    all.sort_by(|a, b| a.0.cmp(&b.0));
    let mut slots = vec![0u32; SLOTS as usize];
    let aors: Vec<Value> = all
        .iter()
        .map(|(aor, bindings)| {
            let hash = hash_id(aor);
            if let Some(n) = slots.get_mut((hash % SLOTS) as usize) {
                *n += 1;
            }
            if brief {
                let contacts: Vec<Value> = bindings
                    .iter()
                    .map(|b| json!({"Contact": {"Address": b.contact, "Expires": expires_json(b.expires, now)}}))
                    .collect();
                json!({"AoR": aor, "Contacts": contacts})
            } else {
                let contacts: Vec<Value> = bindings.iter().map(|b| contact_json(b, now)).collect();
                json!({"Info": {"AoR": aor, "HashID": hash, "Contacts": contacts}})
            }
        })
        .collect();
    let max_slot = slots.iter().copied().max().unwrap_or(0);
    json!({
        "Domains": [{
            "Domain": {
                "Domain": TABLE,
                "Size": SLOTS,
                "AoRs": aors,
                "Stats": {"Records": all.len(), "Max-Slots": max_slot},
            }
        }]
    })
}

/// `ul.lookup table AOR` → `{"AoR":..,"Contacts":[{"Contact":{..}}]}`; an AoR
/// without live bindings is error 404 "AOR not found".
pub(crate) fn lookup(ctx: &RpcContext, p: &Params<'_>) -> Result<Value, RpcError> {
    p.allow(2, &["table", "aor"])?;
    check_table(p, 0)?;
    let aor = normalize_aor(&p.string(1, "aor")?)?;
    let now = ctx.location.clock().now();
    let bindings = ctx.location.lookup(&aor);
    if bindings.is_empty() {
        return Err(RpcError::AorNotFound);
    }
    let contacts: Vec<Value> = bindings.iter().map(|b| contact_json(b, now)).collect();
    Ok(json!({"AoR": aor, "Contacts": contacts}))
}

/// `ul.rm table AOR` → `{"AoR":..,"Removed":n}`. Removing an AoR that has no
/// bindings succeeds with `Removed: 0`, as Kamailio's does.
pub(crate) async fn rm(ctx: &RpcContext, p: &Params<'_>) -> Result<Value, RpcError> {
    p.allow(2, &["table", "aor"])?;
    check_table(p, 0)?;
    let aor = normalize_aor(&p.string(1, "aor")?)?;
    let (removed, commit) = ctx.location.update(&aor, |prior| {
        let ops: Vec<Op> = prior
            .iter()
            .map(|b| Op::Remove {
                aor: b.aor.clone(),
                contact: b.contact.clone(),
            })
            .collect();
        (ops.len(), ops)
    });
    commit.wait().await?;
    Ok(json!({"AoR": aor, "Removed": removed}))
}

/// `ul.rm_contact table AOR contact` → `{"AoR":..,"Contact":..,"Removed":1}`;
/// 404 "AOR not found" / "Contact not found" as in Kamailio. The contact is
/// matched as written when it was bound (surrounding `<>` are ignored).
pub(crate) async fn rm_contact(ctx: &RpcContext, p: &Params<'_>) -> Result<Value, RpcError> {
    p.allow(3, &["table", "aor", "contact"])?;
    check_table(p, 0)?;
    let aor = normalize_aor(&p.string(1, "aor")?)?;
    let contact = strip_brackets(&p.string(2, "contact")?).to_owned();
    let (found, commit) = ctx.location.update(&aor, |prior| {
        if prior.is_empty() {
            return (Err(RpcError::AorNotFound), Vec::new());
        }
        match prior.iter().find(|b| b.contact == contact) {
            Some(b) => (
                Ok(()),
                vec![Op::Remove {
                    aor: b.aor.clone(),
                    contact: b.contact.clone(),
                }],
            ),
            None => (Err(RpcError::ContactNotFound), Vec::new()),
        }
    });
    commit.wait().await?;
    found?;
    Ok(json!({"AoR": aor, "Contact": contact, "Removed": 1}))
}

/// `table` must be `location`: required in the positional form (Kamailio's
/// first parameter), optional in the named form.
fn check_table(p: &Params<'_>, idx: usize) -> Result<(), RpcError> {
    let table = if p.is_named() {
        p.opt_string(idx, "table")?
            .unwrap_or_else(|| TABLE.to_owned())
    } else {
        p.string(idx, "table")?
    };
    if table == TABLE {
        Ok(())
    } else {
        Err(RpcError::InvalidParam {
            name: "table",
            expected: "must be \"location\"",
        })
    }
}

/// An AoR argument → the store's key: `user@domain` or a `sip:`/`sips:`
/// URI (optionally in `<>`), through [`regmesh_sip::Uri::aor`] so RPC and
/// REGISTER agree on the key (RFC 3261 §10.3 step 5).
pub(crate) fn normalize_aor(text: &str) -> Result<String, RpcError> {
    const BAD: RpcError = RpcError::InvalidParam {
        name: "aor",
        expected: "must be user@domain or a sip: URI with a user part",
    };
    let t = strip_brackets(text);
    let lower = t.get(..5).map(str::to_ascii_lowercase).unwrap_or_default();
    let uri_text = if lower.starts_with("sip:") || lower.starts_with("sips:") {
        t.to_owned()
    } else if t.contains('@') {
        format!("sip:{t}")
    } else {
        return Err(BAD);
    };
    let uri = regmesh_sip::Uri::parse(&uri_text).map_err(|_| BAD)?;
    if uri.user.as_deref().is_none_or(str::is_empty) || uri.host.is_empty() {
        return Err(BAD);
    }
    Ok(uri.aor())
}

/// A contact argument: trimmed, without surrounding `<>`, and a URI.
fn normalize_contact(text: &str) -> Result<String, RpcError> {
    let c = strip_brackets(text);
    let bad = RpcError::InvalidParam {
        name: "contact",
        expected: "must be a URI",
    };
    if c.is_empty() || c.chars().any(|ch| ch.is_whitespace() || ch.is_control()) {
        return Err(bad);
    }
    regmesh_sip::Uri::parse(c).map_err(|_| bad)?;
    Ok(c.to_owned())
}

/// Trim, and drop one pair of surrounding angle brackets.
fn strip_brackets(s: &str) -> &str {
    let t = s.trim();
    t.strip_prefix('<')
        .and_then(|t| t.strip_suffix('>'))
        .unwrap_or(t)
        .trim()
}

/// 32-bit FNV-1a of the AoR, shown as `HashID` (Kamailio shows its own
/// hash there; any stable hash serves the same purpose: spreading AoRs
/// over slots).
fn hash_id(aor: &str) -> u32 {
    aor.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// `Expires` as Kamailio shows it: seconds left, `"permanent"`, or
/// `"expired"` for a binding past its time but not yet purged.
fn expires_json(expires: Timestamp, now: Timestamp) -> Value {
    if expires >= PERMANENT {
        json!("permanent")
    } else if expires <= now {
        json!("expired")
    } else {
        json!(expires.secs_remaining(now))
    }
}

/// Q as Kamailio shows it: a number from 0 to 1, `-1` when not given.
fn q_json(q: Option<u16>) -> Value {
    match q {
        None => json!(-1),
        Some(q) if q % 1000 == 0 => json!(q / 1000),
        Some(q) => json!(f64::from(q) / 1000.0),
    }
}

/// Kamailio's placeholder for an empty string field.
const NOT_SET: &str = "[not set]";

/// One `{"Contact":{..}}` entry with Kamailio's keys, in Kamailio's order.
/// Mapping of fields Kamailio has and regmesh does not: `State` is always
/// `CS_SYNC` (every binding shown is in the durable store or being
/// committed), `Methods` none → 4294967295 (all, Kamailio's default),
/// `Server-Id` is the origin (home) node, `Tcpconn-Id` -1, `Keepalive` and
/// `KA-Roundtrip` 0, `Last-Keepalive` = `Last-Modified` (Unix seconds).
pub(crate) fn contact_json(b: &Binding, now: Timestamp) -> Value {
    let or_not_set = |s: &Option<String>| s.clone().unwrap_or_else(|| NOT_SET.to_owned());
    let path = if b.path.is_empty() {
        NOT_SET.to_owned()
    } else {
        b.path.join(",")
    };
    let last_modified = b.last_modified.as_secs();
    json!({"Contact": {
        "Address": b.contact,
        "Expires": expires_json(b.expires, now),
        "Q": q_json(b.q),
        "Call-ID": b.call_id,
        "CSeq": b.cseq,
        "User-Agent": or_not_set(&b.user_agent),
        "Received": or_not_set(&b.received),
        "Path": path,
        "State": "CS_SYNC",
        "Flags": b.flags,
        "CFlags": b.cflags,
        "Socket": or_not_set(&b.socket),
        "Methods": b.methods.unwrap_or(u32::MAX),
        "Ruid": if b.ruid.is_empty() { NOT_SET } else { b.ruid.as_str() },
        "Instance": or_not_set(&b.instance),
        "Reg-Id": b.reg_id.unwrap_or(0),
        "Server-Id": b.origin.0,
        "Tcpconn-Id": -1,
        "Keepalive": 0,
        "Last-Keepalive": last_modified,
        "KA-Roundtrip": 0,
        "Last-Modified": last_modified,
    }})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q_display() {
        assert_eq!(q_json(None), json!(-1));
        assert_eq!(q_json(Some(1000)), json!(1));
        assert_eq!(q_json(Some(500)), json!(0.5));
    }

    #[test]
    fn brackets_are_stripped() {
        assert_eq!(strip_brackets(" <sip:a@b> "), "sip:a@b");
        assert_eq!(strip_brackets("sip:a@b"), "sip:a@b");
    }

    #[test]
    fn expires_display() {
        let now = Timestamp::from_secs(1000);
        assert_eq!(expires_json(PERMANENT, now), json!("permanent"));
        assert_eq!(
            expires_json(Timestamp::from_secs(999), now),
            json!("expired")
        );
        assert_eq!(expires_json(Timestamp::from_secs(1060), now), json!(60));
    }

    #[test]
    fn hash_is_stable() {
        assert_eq!(hash_id(""), 0x811c_9dc5);
        assert_eq!(hash_id("a"), 0xe40c_292c);
    }
}
