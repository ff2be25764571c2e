//! Digest authentication of REGISTER (RFC 7616, accepting RFC 2617 and
//! RFC 2069 clients; RFC 3261 §22).
//!
//! - Challenges: a 401 carries one `WWW-Authenticate` field per configured
//!   algorithm, in the configured order (RFC 7616 §3.7: in order of
//!   preference; RFC 8760 brings SHA-256 to SIP; MD5 first by default, as
//!   many UAs answer only the first), all with `qop="auth"` and the same stateless nonce
//!   ([`crate::nonce`]); `stale=true` when the client only needs a new
//!   nonce. No `opaque`: the nonce already carries all the state.
//! - Accepted: `algorithm=MD5` (also when absent, RFC 7616 §3.4) and
//!   `SHA-256`, each only when configured in `auth.algorithms`; `qop=auth`
//!   with nonce-count replay protection. A response without qop (RFC 2069
//!   style) is refused with 400: the challenge offered qop, which makes it
//!   mandatory (RFC 2617 §3.2.2), and it would have no nonce count, so a
//!   captured header could be replayed for the whole nonce lifetime. `-sess`
//!   algorithms and `auth-int` are not offered and are refused.
//! - Subscribers are looked up by the credentials' username and the AoR
//!   domain (then the realm, for deployments whose realm names the domain)
//!   and hold HA1 only, never a password. The response is compared in
//!   constant time. An unknown user and a wrong password get the same
//!   answer, so replies do not reveal which users exist.
//! - RFC 3261 §10.3 step 4: with `match_aor`, the authenticated user and its
//!   domain must be the AoR's user and domain, else 403.

use crate::AuthConfig;
use crate::error::RegisterError;
use crate::fields::same_contact;
use crate::nonce::{self, NcVerdict, NonceCounts};
use md5::Md5;
use regmesh_location::{Subscriber, Timestamp};
use regmesh_sip::{NameAddr, ParseError, Request};
use sha2::{Digest, Sha256};

/// A digest algorithm (RFC 7616 §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// MD5 (RFC 2617; the default when `algorithm` is absent).
    Md5,
    /// SHA-256 (RFC 7616).
    Sha256,
}

impl Algorithm {
    /// From the `algorithm` parameter (case-insensitive); absent means MD5.
    pub fn from_param(p: Option<&str>) -> Option<Self> {
        match p {
            None => Some(Self::Md5),
            Some(a) if a.eq_ignore_ascii_case("MD5") => Some(Self::Md5),
            Some(a) if a.eq_ignore_ascii_case("SHA-256") => Some(Self::Sha256),
            Some(_) => None,
        }
    }

    /// The token used in challenges.
    pub fn name(self) -> &'static str {
        match self {
            Self::Md5 => "MD5",
            Self::Sha256 => "SHA-256",
        }
    }

    /// Lowercase hex digest of the `:`-joined `parts`.
    pub fn hex(self, parts: &[&str]) -> String {
        fn run<D: Digest>(parts: &[&str]) -> String {
            let mut d = D::new();
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    d.update(b":");
                }
                d.update(p.as_bytes());
            }
            to_hex(&d.finalize())
        }
        match self {
            Self::Md5 => run::<Md5>(parts),
            Self::Sha256 => run::<Sha256>(parts),
        }
    }
}

/// Lowercase hex, by table: this runs twice per authenticated REGISTER,
/// and `write!` per byte showed up in its profile (BENCHMARKS.md).
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// Compute HA1 = H(user:realm:password) for both algorithms (lowercase
/// hex): (MD5, SHA-256). The only place a password is ever seen.
pub fn ha1(user: &str, realm: &str, password: &str) -> (String, String) {
    (
        Algorithm::Md5.hex(&[user, realm, password]),
        Algorithm::Sha256.hex(&[user, realm, password]),
    )
}

/// What a digest response is computed over (RFC 7616 §3.4.1).
#[derive(Debug, Clone, Copy)]
pub struct DigestInput<'a> {
    /// Algorithm.
    pub algorithm: Algorithm,
    /// HA1 for that algorithm, lowercase hex.
    pub ha1: &'a str,
    /// Nonce.
    pub nonce: &'a str,
    /// Request method.
    pub method: &'a str,
    /// digest-uri.
    pub uri: &'a str,
    /// `(qop, nc, cnonce)`, or `None` for an RFC 2069 response.
    pub qop: Option<(&'a str, &'a str, &'a str)>,
}

/// The expected `response` value (RFC 7616 §3.4.1; RFC 2069 without qop).
pub fn response(i: &DigestInput<'_>) -> String {
    let ha2 = i.algorithm.hex(&[i.method, i.uri]);
    match i.qop {
        Some((qop, nc, cnonce)) => i.algorithm.hex(&[i.ha1, i.nonce, nc, cnonce, qop, &ha2]),
        None => i.algorithm.hex(&[i.ha1, i.nonce, &ha2]),
    }
}

/// Compare without an early exit, so timing does not tell how much matched.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The realm to challenge with: the configured one, else the AoR's domain.
pub fn realm_for(cfg: &AuthConfig, to: &NameAddr<'_>) -> String {
    match &cfg.realm {
        Some(r) => r.clone(),
        None => to.uri.host.to_ascii_lowercase(),
    }
}

/// The `WWW-Authenticate` fields of a 401, one per algorithm in the given
/// order (RFC 7616 §3.7: preferred first), sharing one fresh nonce minted at
/// `now` from `random`.
pub fn challenges(
    realm: &str,
    secret: &[u8],
    algorithms: &[Algorithm],
    now: Timestamp,
    random: [u8; 8],
    stale: bool,
) -> Vec<(&'static str, String)> {
    let nonce = nonce::mint(secret, now, random);
    algorithms
        .iter()
        .map(|&a| {
            let mut v = format!(
                "Digest realm=\"{}\", nonce=\"{nonce}\", algorithm={}, qop=\"auth\"",
                escape_quoted(realm),
                a.name()
            );
            if stale {
                v.push_str(", stale=true");
            }
            ("WWW-Authenticate", v)
        })
        .collect()
}

/// Escape `"` and `\` for a quoted-string (RFC 3261 §25.1 quoted-pair).
fn escape_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Everything [`authenticate`] needs besides the request.
pub struct Authenticator<'a> {
    /// `[auth]` settings.
    pub config: &'a AuthConfig,
    /// This node's nonce-count table.
    pub counts: &'a NonceCounts,
    /// Now.
    pub now: Timestamp,
}

/// Authenticate `req` for the AoR in `to` (RFC 3261 §10.3 steps 3 and 4).
/// `lookup(user, domain)` finds a subscriber. Returns the subscriber on
/// success; a 401 error means "send fresh challenges", see
/// [`RegisterError::is_challenge`] and [`RegisterError::is_stale`].
pub fn authenticate<S: std::borrow::Borrow<Subscriber>>(
    req: &Request<'_>,
    to: &NameAddr<'_>,
    a: &Authenticator<'_>,
    lookup: impl Fn(&str, &str) -> Option<S>,
) -> Result<S, RegisterError> {
    let creds = match req.authorization() {
        None => return Err(RegisterError::MissingCredentials),
        Some(Err(ParseError::UnsupportedAuthScheme)) => {
            return Err(RegisterError::UnsupportedDigest);
        }
        Some(Err(_)) => return Err(RegisterError::MalformedCredentials),
        Some(Ok(c)) => c,
    };
    let (Some(username), Some(realm), Some(nonce), Some(uri), Some(given)) = (
        creds.username.as_deref(),
        creds.realm.as_deref(),
        creds.nonce.as_deref(),
        creds.uri.as_deref(),
        creds.response.as_deref(),
    ) else {
        return Err(RegisterError::MalformedCredentials);
    };
    let our_realm = realm_for(a.config, to);
    if realm != our_realm {
        return Err(RegisterError::WrongRealm);
    }
    let algorithm = Algorithm::from_param(creds.algorithm.as_deref())
        .filter(|alg| a.config.algorithms.contains(alg))
        .ok_or(RegisterError::UnsupportedDigest)?;
    let qop = match creds.qop.as_deref() {
        None => return Err(RegisterError::MissingQop),
        Some(q) if q.eq_ignore_ascii_case("auth") => {
            let (Some(nc), Some(cnonce)) = (creds.nc.as_deref(), creds.cnonce.as_deref()) else {
                return Err(RegisterError::MalformedCredentials);
            };
            let count = parse_nc(nc).ok_or(RegisterError::MalformedCredentials)?;
            Some((q, nc, cnonce, count))
        }
        Some(_) => return Err(RegisterError::UnsupportedDigest),
    };
    let ttl = a.config.nonce_ttl;
    let checked =
        nonce::verify(&a.config.secret, nonce, a.now, ttl).ok_or(RegisterError::InvalidNonce)?;
    // RFC 2617 §3.2.2.5: the digest-uri must name the Request-URI.
    if uri != req.uri && !same_contact(uri, req.uri) {
        return Err(RegisterError::DigestUriMismatch);
    }
    let domain = to.uri.host.to_ascii_lowercase();
    let subscriber = lookup(username, &domain)
        .or_else(|| {
            (our_realm != domain)
                .then(|| lookup(username, &our_realm))
                .flatten()
        })
        .ok_or(RegisterError::WrongCredentials)?;
    let found: &Subscriber = subscriber.borrow();
    let ha1 = match algorithm {
        Algorithm::Md5 => &found.ha1_md5,
        Algorithm::Sha256 => &found.ha1_sha256,
    };
    if ha1.is_empty() {
        return Err(RegisterError::WrongCredentials);
    }
    let expected = response(&DigestInput {
        algorithm,
        ha1,
        nonce,
        method: req.method.as_str(),
        uri,
        qop: qop.map(|(q, nc, cnonce, _)| (q, nc, cnonce)),
    });
    if !constant_time_eq(expected.as_bytes(), given.to_ascii_lowercase().as_bytes()) {
        return Err(RegisterError::WrongCredentials);
    }
    // Only a correct response over an old nonce is stale (RFC 7616 §3.3).
    if checked.is_stale(a.now, ttl) {
        return Err(RegisterError::StaleNonce);
    }
    // RFC 3261 §10.3 step 4.
    if a.config.match_aor {
        let user_ok = to.uri.user.as_deref() == Some(username);
        let domain_ok = found.domain.eq_ignore_ascii_case(&domain);
        if !user_ok || !domain_ok {
            return Err(RegisterError::UserMismatch);
        }
    }
    // Counted only after the response checked out (and the user may
    // register this AoR), so a forger cannot burn
    // a legitimate client's counts.
    if let Some((_, _, _, count)) = qop {
        match a.counts.check(&checked, count, a.now, ttl) {
            NcVerdict::Accepted => {}
            NcVerdict::Replay => return Err(RegisterError::NonceReplay),
            NcVerdict::Forgotten => return Err(RegisterError::StaleNonce),
        }
    }
    Ok(subscriber)
}

/// `nc-value = 8LHEX` (RFC 7616 §3.4), not zero.
fn parse_nc(nc: &str) -> Option<u32> {
    if nc.len() != 8 || !nc.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(nc, 16).ok().filter(|&n| n > 0)
}

#[cfg(test)]
mod tests;
