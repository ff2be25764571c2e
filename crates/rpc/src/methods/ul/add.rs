//! `ul.add`: Kamailio's positional form and a named form that can set every
//! binding field. Writes an explicit insert or refresh through
//! `Location::update`, and answers once the commit is durable.

use super::{PERMANENT, check_table, expires_json, normalize_aor, normalize_contact};
use crate::RpcContext;
use crate::error::RpcError;
use crate::params::{Field, Params, as_f64, as_string, as_u32};
use regmesh_location::{Binding, Hlc, Op, Version};
use serde_json::{Value, json};

/// Call-ID of bindings written by `ul.add` without one (Kamailio uses a
/// fixed one too); distinct from any UA's, so a phone's next REGISTER is
/// an ordinary update (RFC 3261 §10.3 step 7 compares CSeq only within a Call-ID).
const RPC_CALL_ID: &str = "ul.add@regmesh.rpc";

/// CSeq of bindings written by `ul.add` without one (Kamailio: 1).
const RPC_CSEQ: u32 = 1;

/// User-Agent of bindings written by `ul.add` without one.
fn rpc_user_agent() -> String {
    format!("regmesh {} RPC", env!("CARGO_PKG_VERSION"))
}

/// What `ul.add` sets; `None` keeps the existing binding's value on a
/// refresh (and takes the default on an insert).
#[derive(Debug, Default)]
struct Changes {
    q: Option<Option<u16>>,
    path: Option<Vec<String>>,
    flags: Option<u32>,
    cflags: Option<u32>,
    methods: Option<Option<u32>>,
    received: Option<Option<String>>,
    socket: Option<Option<String>>,
    call_id: Option<String>,
    cseq: Option<u32>,
    user_agent: Option<Option<String>>,
    instance: Option<Option<String>>,
    reg_id: Option<Option<u32>>,
    ruid: Option<String>,
}

/// A decoded `ul.add`.
#[derive(Debug)]
struct Add {
    aor: String,
    contact: String,
    /// Relative seconds; 0 = permanent.
    expires: u32,
    changes: Changes,
}

/// Names the named form of `ul.add` takes.
const ADD_NAMES: &[&str] = &[
    "table",
    "aor",
    "contact",
    "expires",
    "q",
    "path",
    "flags",
    "cflags",
    "methods",
    "received",
    "socket",
    "call_id",
    "cseq",
    "user_agent",
    "instance",
    "reg_id",
    "ruid",
];

/// `ul.add`: insert the contact, or refresh it when the AoR already has it
/// (keeping its ruid; fields the request does not give are kept too). With
/// both `instance` and `reg_id` set, another contact of the AoR with the same
/// pair is removed (RFC 5626 §6: the new flow replaces the old one).
///
/// Result: `{"AoR":..,"Contact":..,"Ruid":..,"Action":"inserted"|"refreshed",
/// "Expires":secs|"permanent"}`.
pub(crate) async fn add(ctx: &RpcContext, p: &Params<'_>) -> Result<Value, RpcError> {
    let add = if p.is_named() {
        add_named(ctx, p)?
    } else {
        add_positional(p)?
    };
    let now = ctx.location.clock().now();
    let expires = if add.expires == 0 {
        PERMANENT
    } else {
        now.saturating_add_secs(u64::from(add.expires))
            .min(PERMANENT)
    };
    let node = ctx.node;
    let Add {
        aor,
        contact,
        changes,
        ..
    } = add;
    let ((action, ruid), commit) = ctx.location.update(&aor, |prior| {
        let existing = prior.iter().find(|b| b.contact == contact);
        let mut b = match existing {
            Some(b) => b.clone(),
            None => Binding {
                aor: aor.clone(),
                contact: contact.clone(),
                expires,
                q: None,
                call_id: RPC_CALL_ID.to_owned(),
                cseq: RPC_CSEQ,
                flags: 0,
                cflags: 0,
                user_agent: Some(rpc_user_agent()),
                received: None,
                socket: None,
                path: Vec::new(),
                instance: None,
                reg_id: None,
                methods: None,
                ruid: changes.ruid.clone().unwrap_or_else(new_ruid),
                last_modified: now,
                origin: node,
                version: Version { hlc: Hlc(0), node },
            },
        };
        apply(&mut b, changes);
        b.expires = expires;
        b.last_modified = now;
        b.origin = node;
        let mut ops = Vec::new();
        // RFC 5626 §6: same +sip.instance and reg-id = the same flow.
        if let (Some(instance), Some(reg_id)) = (&b.instance, b.reg_id) {
            ops.extend(
                prior
                    .iter()
                    .filter(|o| {
                        o.contact != b.contact
                            && o.instance.as_deref() == Some(instance)
                            && o.reg_id == Some(reg_id)
                    })
                    .map(|o| Op::Remove {
                        aor: o.aor.clone(),
                        contact: o.contact.clone(),
                    }),
            );
        }
        let ruid = b.ruid.clone();
        let action = if existing.is_some() {
            ops.push(Op::Refresh(b));
            "refreshed"
        } else {
            ops.push(Op::Insert(b));
            "inserted"
        };
        ((action, ruid), ops)
    });
    commit.wait().await?;
    Ok(json!({
        "AoR": aor,
        "Contact": contact,
        "Ruid": ruid,
        "Action": action,
        "Expires": expires_json(expires, now),
    }))
}

/// Kamailio's positional form: `table AOR contact expires q path flags
/// cflags methods [received] [socket]`. As in Kamailio, Call-ID, CSeq and
/// User-Agent are set to the RPC's own values.
fn add_positional(p: &Params<'_>) -> Result<Add, RpcError> {
    p.allow(11, &[])?;
    check_table(p, 0)?;
    let aor = normalize_aor(&p.string(1, "aor")?)?;
    let contact = normalize_contact(&p.string(2, "contact")?)?;
    let expires = p.u32(3, "expires")?;
    let q = q_value(p.f64(4, "q")?)?;
    let path = unset_or(p.string(5, "path")?)
        .map(|s| split_path(&s))
        .unwrap_or_default();
    let changes = Changes {
        q: Some(q),
        path: Some(path),
        flags: Some(p.u32(6, "flags")?),
        cflags: Some(p.u32(7, "cflags")?),
        methods: Some(Some(p.u32(8, "methods")?)),
        received: p.opt_string(9, "received")?.map(unset_or),
        socket: p.opt_string(10, "socket")?.map(unset_or),
        call_id: Some(RPC_CALL_ID.to_owned()),
        cseq: Some(RPC_CSEQ),
        user_agent: Some(Some(rpc_user_agent())),
        instance: None,
        reg_id: None,
        ruid: None,
    };
    Ok(Add {
        aor,
        contact,
        expires,
        changes,
    })
}

/// The named form: every binding field can be set. `aor` and `contact` are
/// required; `expires` defaults to the registrar's `default_expires` (0 is
/// permanent); other absent fields keep their value on a refresh; an
/// explicit `null` clears an optional field. `ruid` is used only when the
/// contact is new (a refresh always keeps the binding's record id, which is
/// what replicas and Kamailio peers match removals by).
fn add_named(ctx: &RpcContext, p: &Params<'_>) -> Result<Add, RpcError> {
    p.allow(0, ADD_NAMES)?;
    check_table(p, 0)?;
    let aor = normalize_aor(&p.string(1, "aor")?)?;
    let contact = normalize_contact(&p.string(2, "contact")?)?;
    let expires = match p.get(3, "expires") {
        Some(v) => as_u32(v, "expires")?,
        None => ctx.default_expires,
    };
    let q = match p.field("q") {
        Field::Absent => None,
        Field::Null => Some(None),
        Field::Value(v) => Some(q_value(as_f64(v, "q")?)?),
    };
    let path = match p.field("path") {
        Field::Absent => None,
        Field::Null => Some(Vec::new()),
        Field::Value(Value::Array(items)) => Some(
            items
                .iter()
                .map(|v| as_string(v, "path"))
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .filter(|s| !s.trim().is_empty())
                .collect(),
        ),
        Field::Value(v) => Some(
            unset_or(as_string(v, "path")?)
                .map(|s| split_path(&s))
                .unwrap_or_default(),
        ),
    };
    let opt_str = |name: &'static str| -> Result<Option<Option<String>>, RpcError> {
        Ok(match p.field(name) {
            Field::Absent => None,
            Field::Null => Some(None),
            Field::Value(v) => Some(unset_or(as_string(v, name)?)),
        })
    };
    let opt_u32 = |name: &'static str| -> Result<Option<Option<u32>>, RpcError> {
        Ok(match p.field(name) {
            Field::Absent => None,
            Field::Null => Some(None),
            Field::Value(v) => Some(Some(as_u32(v, name)?)),
        })
    };
    let u32_field = |name: &'static str| -> Result<Option<u32>, RpcError> {
        p.get(0, name).map(|v| as_u32(v, name)).transpose()
    };
    let call_id = match p.get(0, "call_id") {
        Some(v) => {
            let s = as_string(v, "call_id")?;
            if s.trim().is_empty() {
                return Err(RpcError::InvalidParam {
                    name: "call_id",
                    expected: "must not be empty",
                });
            }
            Some(s)
        }
        None => None,
    };
    let ruid = match p.get(0, "ruid") {
        Some(v) => Some(as_string(v, "ruid")?).filter(|s| !s.trim().is_empty()),
        None => None,
    };
    let changes = Changes {
        q,
        path,
        flags: u32_field("flags")?,
        cflags: u32_field("cflags")?,
        methods: opt_u32("methods")?,
        received: opt_str("received")?,
        socket: opt_str("socket")?,
        call_id,
        cseq: u32_field("cseq")?,
        user_agent: opt_str("user_agent")?,
        instance: opt_str("instance")?.map(|i| {
            i.map(|s| s.trim().trim_matches('"').to_owned())
                .filter(|s| !s.is_empty())
        }),
        reg_id: opt_u32("reg_id")?,
        ruid,
    };
    Ok(Add {
        aor,
        contact,
        expires,
        changes,
    })
}

/// Write the given fields into `b`.
fn apply(b: &mut Binding, c: Changes) {
    if let Some(v) = c.q {
        b.q = v;
    }
    if let Some(v) = c.path {
        b.path = v;
    }
    if let Some(v) = c.flags {
        b.flags = v;
    }
    if let Some(v) = c.cflags {
        b.cflags = v;
    }
    if let Some(v) = c.methods {
        b.methods = v;
    }
    if let Some(v) = c.received {
        b.received = v;
    }
    if let Some(v) = c.socket {
        b.socket = v;
    }
    if let Some(v) = c.call_id {
        b.call_id = v;
    }
    if let Some(v) = c.cseq {
        b.cseq = v;
    }
    if let Some(v) = c.user_agent {
        b.user_agent = v;
    }
    if let Some(v) = c.instance {
        b.instance = v;
    }
    if let Some(v) = c.reg_id {
        b.reg_id = v;
    }
}

/// A fresh record id (Kamailio's are `uloc-…`).
fn new_ruid() -> String {
    format!("uloc-rpc-{:016x}", rand::random::<u64>())
}

/// Kamailio's "not set" markers for optional string parameters: `"0"`,
/// `"."` and the empty string mean unset.
fn unset_or(s: String) -> Option<String> {
    match s.trim() {
        "" | "0" | "." => None,
        _ => Some(s),
    }
}

/// A q argument → thousandths (RFC 3261 §20.10: 0 to 1, three decimals);
/// -1 means "not given", as in Kamailio.
fn q_value(q: f64) -> Result<Option<u16>, RpcError> {
    if q == -1.0 {
        return Ok(None);
    }
    if (0.0..=1.0).contains(&q) {
        // In 0..=1000 after rounding, so the cast is exact.
        return Ok(Some((q * 1000.0).round() as u16));
    }
    Err(RpcError::InvalidParam {
        name: "q",
        expected: "must be from 0 to 1, or -1 for none",
    })
}

/// Split a Path header value into its entries at top-level commas (not
/// inside `<>` or quotes), RFC 3327 §4 / RFC 3261 §7.3.1.
fn split_path(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0u32;
    let mut quoted = false;
    let mut start = 0;
    for (i, ch) in s.char_indices() {
        match ch {
            '"' => quoted = !quoted,
            '<' if !quoted => depth += 1,
            '>' if !quoted => depth = depth.saturating_sub(1),
            ',' if !quoted && depth == 0 => {
                out.push(s[start..i].trim().to_owned());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(s[start..].trim().to_owned());
    out.retain(|e| !e.is_empty());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q_values() {
        assert_eq!(q_value(-1.0).ok(), Some(None));
        assert_eq!(q_value(0.5).ok(), Some(Some(500)));
        assert_eq!(q_value(1.0).ok(), Some(Some(1000)));
        assert_eq!(q_value(0.0).ok(), Some(Some(0)));
        assert!(q_value(1.5).is_err());
        assert!(q_value(-0.5).is_err());
    }

    #[test]
    fn path_splits_at_top_level_commas() {
        assert_eq!(
            split_path("<sip:p1.example.com;lr>, <sip:p2.example.com;lr>"),
            vec!["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
        );
        assert_eq!(split_path("\"a,b\" <sip:x;lr>"), vec!["\"a,b\" <sip:x;lr>"]);
        assert!(split_path(" ").is_empty());
    }

    #[test]
    fn unset_markers() {
        assert_eq!(unset_or("0".into()), None);
        assert_eq!(unset_or(".".into()), None);
        assert_eq!(unset_or(String::new()), None);
        assert_eq!(
            unset_or("sip:1.2.3.4".into()).as_deref(),
            Some("sip:1.2.3.4")
        );
    }
}
