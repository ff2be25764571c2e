//! `subscriber.*`: digest-auth subscribers. Kamailio provisions these in its
//! `subscriber` database table; regmesh keeps them in its own store.
//!
//! Only HA1 hashes are stored (RFC 7616 §5.13: the server must not need the
//! plaintext). The password is used once to compute them with
//! [`regmesh_registrar::ha1`] and then dropped; it is never stored and never
//! logged. The realm is the configured `[auth] realm`, or the subscriber's
//! domain when none is configured (the realm the registrar challenges with).
//!
//! `subscriber.show` and `subscriber.list` show user, domain and realm but
//! not the HA1s: an HA1 is a password equivalent for its realm (RFC 7616
//! §5.13), and an operator has no use for it that would justify the risk.
//!
//! A subscriber is named by `USER@DOMAIN` (or a `sip:` URI) positionally, or
//! `{"aor": "user@domain"}` / `{"user": .., "domain": ..}` by name.

use crate::RpcContext;
use crate::error::RpcError;
use crate::params::Params;
use regmesh_location::Subscriber;
use serde_json::{Value, json};

/// `subscriber.add USER@DOMAIN password` → `{"user","domain","realm"}`;
/// 409 when the subscriber exists (use `subscriber.passwd`).
pub(crate) async fn add(ctx: &RpcContext, p: &Params<'_>) -> Result<Value, RpcError> {
    p.allow(2, &["aor", "user", "domain", "password"])?;
    let (user, domain) = who(p)?;
    let password = password(p)?;
    if ctx.location.subscriber(&user, &domain).is_some() {
        return Err(RpcError::SubscriberExists);
    }
    let s = hashed(ctx, user, domain, &password);
    let shown = public(&s);
    ctx.location.put_subscriber(s).await?;
    Ok(shown)
}

/// `subscriber.passwd USER@DOMAIN password` → `{"user","domain","realm"}`;
/// 404 when there is no such subscriber.
pub(crate) async fn passwd(ctx: &RpcContext, p: &Params<'_>) -> Result<Value, RpcError> {
    p.allow(2, &["aor", "user", "domain", "password"])?;
    let (user, domain) = who(p)?;
    let password = password(p)?;
    if ctx.location.subscriber(&user, &domain).is_none() {
        return Err(RpcError::SubscriberNotFound);
    }
    let s = hashed(ctx, user, domain, &password);
    let shown = public(&s);
    ctx.location.put_subscriber(s).await?;
    Ok(shown)
}

/// `subscriber.rm USER@DOMAIN` → `{"user","domain","Removed":1}`; 404 when
/// there is no such subscriber.
pub(crate) async fn rm(ctx: &RpcContext, p: &Params<'_>) -> Result<Value, RpcError> {
    p.allow(1, &["aor", "user", "domain"])?;
    let (user, domain) = who(p)?;
    if ctx.location.remove_subscriber(&user, &domain).await? {
        Ok(json!({"user": user, "domain": domain, "Removed": 1}))
    } else {
        Err(RpcError::SubscriberNotFound)
    }
}

/// `subscriber.show USER@DOMAIN` → `{"user","domain","realm"}`; 404 when none.
pub(crate) fn show(ctx: &RpcContext, p: &Params<'_>) -> Result<Value, RpcError> {
    p.allow(1, &["aor", "user", "domain"])?;
    let (user, domain) = who(p)?;
    ctx.location
        .subscriber(&user, &domain)
        .map(|s| public(&s))
        .ok_or(RpcError::SubscriberNotFound)
}

/// `subscriber.list [domain]` → `[{"user","domain","realm"}, ..]`, sorted.
pub(crate) fn list(ctx: &RpcContext, p: &Params<'_>) -> Result<Value, RpcError> {
    p.allow(1, &["domain"])?;
    let domain = p
        .opt_string(0, "domain")?
        .map(|d| d.trim().to_ascii_lowercase());
    let all: Vec<Value> = ctx
        .location
        .subscribers()
        .iter()
        .filter(|s| domain.as_deref().is_none_or(|d| s.domain == d))
        .map(|s| public(s))
        .collect();
    Ok(Value::Array(all))
}

/// What may be shown of a subscriber.
fn public(s: &Subscriber) -> Value {
    json!({"user": s.user, "domain": s.domain, "realm": s.realm})
}

/// Build the stored record: HA1s over the effective realm.
fn hashed(ctx: &RpcContext, user: String, domain: String, password: &str) -> Subscriber {
    let realm = ctx.realm.clone().unwrap_or_else(|| domain.clone());
    let (ha1_md5, ha1_sha256) = regmesh_registrar::ha1(&user, &realm, password);
    Subscriber {
        user,
        domain,
        realm,
        ha1_md5,
        ha1_sha256,
    }
}

/// The password: position 1 or `password`; non-empty.
fn password(p: &Params<'_>) -> Result<String, RpcError> {
    let pw = p.string(1, "password")?;
    if pw.is_empty() {
        return Err(RpcError::InvalidParam {
            name: "password",
            expected: "must not be empty",
        });
    }
    Ok(pw)
}

/// The subscriber named by the request: `USER@DOMAIN` at position 0 /
/// `aor`, or `user` + `domain`.
fn who(p: &Params<'_>) -> Result<(String, String), RpcError> {
    if p.is_named() && p.get(0, "aor").is_none() && p.get(0, "user").is_some() {
        let user = p.string(0, "user")?;
        let domain = p.string(0, "domain")?;
        return check(user.trim(), domain.trim(), "user", "domain");
    }
    let aor = p.string(0, "aor")?;
    split_aor(&aor)
}

/// `user@domain` or `sip:user@domain` → (user, lowercase domain).
fn split_aor(text: &str) -> Result<(String, String), RpcError> {
    const BAD: RpcError = RpcError::InvalidParam {
        name: "aor",
        expected: "must be user@domain",
    };
    let t = text.trim();
    let t = t
        .strip_prefix('<')
        .and_then(|t| t.strip_suffix('>'))
        .unwrap_or(t);
    let lower = t.get(..5).map(str::to_ascii_lowercase).unwrap_or_default();
    if lower.starts_with("sip:") || lower.starts_with("sips:") {
        let uri = regmesh_sip::Uri::parse(t).map_err(|_| BAD)?;
        let user = uri.user.as_deref().ok_or(BAD)?;
        return check(user, uri.host, "aor", "aor");
    }
    let (user, domain) = t.rsplit_once('@').ok_or(BAD)?;
    check(user, domain, "aor", "aor")
}

/// Non-empty user and domain without whitespace or control characters; the
/// domain is lowercased (host names compare case-insensitively, RFC 3261 §19.1.4).
fn check(
    user: &str,
    domain: &str,
    user_name: &'static str,
    domain_name: &'static str,
) -> Result<(String, String), RpcError> {
    let bad = |s: &str| s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control());
    if bad(user) {
        return Err(RpcError::InvalidParam {
            name: user_name,
            expected: "must have a non-empty user part without spaces",
        });
    }
    if bad(domain) || domain.contains('@') {
        return Err(RpcError::InvalidParam {
            name: domain_name,
            expected: "must have a non-empty domain without spaces",
        });
    }
    Ok((user.to_owned(), domain.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aor_forms() {
        assert_eq!(
            split_aor("alice@Example.COM").ok(),
            Some(("alice".into(), "example.com".into()))
        );
        assert!(split_aor("alice").is_err());
        assert!(split_aor("@example.com").is_err());
        assert!(split_aor("alice@").is_err());
        assert!(split_aor("al ice@example.com").is_err());
    }
}
