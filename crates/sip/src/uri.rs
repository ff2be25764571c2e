//! SIP and SIPS URIs (RFC 3261 §19.1, §25.1).
//!
//! `sip:` and `sips:` URIs are parsed fully: user (unescaped), host (IPv6
//! references keep their brackets), port, `;params` and the raw `?headers`.
//! The password of `user:password` is dropped: RFC 3261 §19.1.1 says its use
//! is NOT RECOMMENDED and nothing in a registrar needs it.
//!
//! Any other scheme (`tel:`, `urn:`, `http:`, RFC 4475 §3.3.2's
//! `nobodyKnowsThisScheme:`) is accepted opaquely: `host` holds everything
//! after `scheme:`, with no user, port, params or headers. Callers that need
//! a SIP URI check [`Uri::is_sip`] and answer 416 (RFC 3261 §8.2.2.1).

use std::borrow::Cow;

use crate::ParseError;
use crate::syntax::{find_param, is_scheme, is_uri_byte};

/// A SIP or SIPS URI (RFC 3261 §19.1), borrowing from the text it was parsed from.
///
/// Other schemes (`tel:`, `urn:`, ...) parse opaquely: `host` holds
/// everything after `scheme:` and the other fields are empty; check
/// [`Uri::is_sip`] and answer 416 where a SIP URI is required. The password
/// of `user:password@` is dropped (RFC 3261 §19.1.1: NOT RECOMMENDED).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri<'a> {
    /// `sip`, `sips` or another scheme (lowercased comparison is the caller's job).
    pub scheme: &'a str,
    /// User part, unescaped (RFC 3261 §19.1.4), if any.
    pub user: Option<Cow<'a, str>>,
    /// Host (IPv6 references keep their brackets).
    pub host: &'a str,
    /// Port, if present.
    pub port: Option<u16>,
    /// `;name[=value]` parameters in order.
    pub params: Vec<(&'a str, Option<&'a str>)>,
    /// `?headers` part, raw, if any.
    pub headers: Option<&'a str>,
}

impl<'a> Uri<'a> {
    /// Parse a URI. See the type doc for how non-SIP schemes are handled.
    pub fn parse(text: &'a str) -> Result<Self, ParseError> {
        let colon = memchr::memchr(b':', text.as_bytes()).ok_or(ParseError::BadUri)?;
        let (scheme, rest) = (&text[..colon], &text[colon + 1..]);
        if !is_scheme(scheme) || rest.is_empty() || !rest.bytes().all(is_uri_byte) {
            return Err(ParseError::BadUri);
        }
        if !(scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips")) {
            return Ok(Self {
                scheme,
                user: None,
                host: rest,
                port: None,
                params: Vec::new(),
                headers: None,
            });
        }

        // userinfo: the user part may itself contain ';', '?', ':' and '/'
        // (RFC 4475 §3.1.1.2, §3.1.1.9), but never an unescaped '@', so the
        // first '@' ends it.
        let (user, hostpart) = match memchr::memchr(b'@', rest.as_bytes()) {
            Some(at) => {
                let userinfo = &rest[..at];
                // user ":" password — the password is dropped (module doc).
                let user =
                    memchr::memchr(b':', userinfo.as_bytes()).map_or(userinfo, |i| &userinfo[..i]);
                if user.is_empty() {
                    return Err(ParseError::BadUri);
                }
                (Some(unescape(user)?), &rest[at + 1..])
            }
            None => (None, rest),
        };

        let b = hostpart.as_bytes();
        let host_len = if b.first() == Some(&b'[') {
            // IPv6reference = "[" IPv6address "]"
            let close = memchr::memchr(b']', b).ok_or(ParseError::BadUri)?;
            let inner = &b[1..close];
            if inner.is_empty()
                || !inner
                    .iter()
                    .all(|&c| c.is_ascii_hexdigit() || c == b':' || c == b'.')
            {
                return Err(ParseError::BadUri);
            }
            close + 1
        } else {
            let n = b
                .iter()
                .take_while(|&&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_'))
                .count();
            if n == 0 {
                return Err(ParseError::BadUri);
            }
            n
        };
        let host = &hostpart[..host_len];
        let mut rest = &hostpart[host_len..];

        let mut port = None;
        if let Some(after) = rest.strip_prefix(':') {
            let n = after.bytes().take_while(u8::is_ascii_digit).count();
            let p = after[..n].parse::<u16>().map_err(|_| ParseError::BadUri)?;
            port = Some(p);
            rest = &after[n..];
        }

        let (param_text, headers) = match rest.split_once('?') {
            Some((p, h)) => (p, Some(h)),
            None => (rest, None),
        };
        let mut params = Vec::new();
        if !param_text.is_empty() {
            let body = param_text.strip_prefix(';').ok_or(ParseError::BadUri)?;
            for p in body.split(';') {
                let (name, value) = match p.split_once('=') {
                    Some((n, v)) => (n, Some(v)),
                    None => (p, None),
                };
                if name.is_empty() {
                    return Err(ParseError::BadUri);
                }
                params.push((name, value));
            }
        }

        Ok(Self {
            scheme,
            user,
            host,
            port,
            params,
            headers,
        })
    }

    /// Is this a `sip:` or `sips:` URI (case-insensitive)?
    pub fn is_sip(&self) -> bool {
        self.scheme.eq_ignore_ascii_case("sip") || self.scheme.eq_ignore_ascii_case("sips")
    }

    /// Value of a URI parameter (`Some(None)` for a flag such as `;lr`).
    /// Names compare case-insensitively (RFC 3261 §19.1.4).
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        find_param(&self.params, name)
    }

    /// The address-of-record key: `user@host` with the user unescaped and the
    /// host lowercased; port, parameters and headers dropped (RFC 3261 §10.3
    /// step 5). `host` alone when there is no user part. The host never holds
    /// an `@`, so the key splits unambiguously at its last `@`.
    pub fn aor(&self) -> String {
        let user = self.user.as_deref().unwrap_or("");
        let mut key = String::with_capacity(user.len() + 1 + self.host.len());
        if !user.is_empty() {
            key.push_str(user);
            key.push('@');
        }
        key.extend(self.host.chars().map(|c| c.to_ascii_lowercase()));
        key
    }
}

/// Undo `%HEX HEX` escapes (RFC 3261 §19.1.4). Borrows when there is nothing
/// to undo. A `%` not followed by two hex digits, or an escape sequence that
/// does not decode to UTF-8, is an error: the result is used as a lookup key
/// and must not be guessed at.
pub fn unescape(s: &str) -> Result<Cow<'_, str>, ParseError> {
    let b = s.as_bytes();
    let Some(first) = memchr::memchr(b'%', b) else {
        return Ok(Cow::Borrowed(s));
    };
    let mut out = Vec::with_capacity(b.len());
    out.extend_from_slice(&b[..first]);
    let mut i = first;
    while i < b.len() {
        if b[i] == b'%' {
            let hi = b.get(i + 1).and_then(|&c| hex_val(c));
            let lo = b.get(i + 2).and_then(|&c| hex_val(c));
            match (hi, lo) {
                (Some(h), Some(l)) => out.push(h << 4 | l),
                _ => return Err(ParseError::BadUri),
            }
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| ParseError::BadUri)
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_sip_uri() {
        let u = Uri::parse("sips:alice:secret@Atlanta.EXAMPLE.com:5061;transport=tls;lr?subject=x")
            .expect("valid");
        assert_eq!(u.scheme, "sips");
        assert_eq!(u.user.as_deref(), Some("alice"));
        assert_eq!(u.host, "Atlanta.EXAMPLE.com");
        assert_eq!(u.port, Some(5061));
        assert_eq!(u.params, [("transport", Some("tls")), ("lr", None)]);
        assert_eq!(u.param("TRANSPORT"), Some(Some("tls")));
        assert_eq!(u.param("lr"), Some(None));
        assert_eq!(u.param("maddr"), None);
        assert_eq!(u.headers, Some("subject=x"));
        assert_eq!(u.aor(), "alice@atlanta.example.com");
        assert!(u.is_sip());
    }

    #[test]
    fn escaped_user_is_unescaped() {
        // RFC 4475 §3.1.1.3
        let u = Uri::parse("sip:sips%3Auser%40example.com@example.net").expect("valid");
        assert_eq!(u.user.as_deref(), Some("sips:user@example.com"));
        assert_eq!(u.host, "example.net");
        assert_eq!(u.aor(), "sips:user@example.com@example.net");
        let u = Uri::parse("sip:%75se%72@example.com").expect("valid");
        assert_eq!(u.user.as_deref(), Some("user"));
        // RFC 4475 §3.1.1.4: escaped NULs stay in the key, unshortened.
        let u = Uri::parse("sip:null-%00-null@example.com").expect("valid");
        assert_eq!(u.aor(), "null-\0-null@example.com");
        assert!(Uri::parse("sip:%4@example.com").is_err());
        assert!(Uri::parse("sip:%FF@example.com").is_err());
    }

    #[test]
    fn semicolon_in_user_part() {
        // RFC 4475 §3.1.1.9
        let u = Uri::parse("sip:user;par=u%40example.net@example.com").expect("valid");
        assert_eq!(u.user.as_deref(), Some("user;par=u@example.net"));
        assert_eq!(u.host, "example.com");
        assert!(u.params.is_empty());
    }

    #[test]
    fn unusual_user_and_password() {
        // RFC 4475 §3.1.1.2
        let u = Uri::parse(
            "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com",
        )
        .expect("valid");
        assert_eq!(
            u.user.as_deref(),
            Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
        );
        assert_eq!(u.host, "example.com");
    }

    #[test]
    fn ipv6() {
        let u = Uri::parse("sip:[2001:db8::10]:5070").expect("valid");
        assert_eq!(u.host, "[2001:db8::10]");
        assert_eq!(u.port, Some(5070));
        assert_eq!(u.aor(), "[2001:db8::10]");
        let u = Uri::parse("sip:caller@[2001:db8::1]").expect("valid");
        assert_eq!(u.host, "[2001:db8::1]");
        // RFC 5118 §4.2: unbracketed IPv6 is not a valid host.
        assert_eq!(Uri::parse("sip:2001:db8::10"), Err(ParseError::BadUri));
        assert!(Uri::parse("sip:[2001:db8::10").is_err());
        assert!(Uri::parse("sip:[]").is_err());
    }

    #[test]
    fn other_schemes_are_opaque() {
        let u = Uri::parse("tel:+1-201-555-0123;phone-context=x").expect("valid");
        assert_eq!(u.scheme, "tel");
        assert_eq!(u.host, "+1-201-555-0123;phone-context=x");
        assert!(u.user.is_none() && u.params.is_empty() && !u.is_sip());
        let u = Uri::parse("soap.beep://192.0.2.103:3002").expect("valid");
        assert_eq!(u.scheme, "soap.beep");
    }

    #[test]
    fn rejects() {
        for bad in [
            "",
            "sip",
            "sip:",
            "<sip:a@b>",
            " sip:a@b",
            "sip:a@b ",
            "sip:a b@c",
            "sip:@host",
            "sip:a@",
            "sip:a@host:",
            "sip:a@host:99999",
            "sip:a@host;;x",
            "sip:a@host;=1",
            "1sip:a@b",
        ] {
            assert_eq!(Uri::parse(bad), Err(ParseError::BadUri), "{bad:?}");
        }
    }

    #[test]
    fn escaped_params_stay_raw() {
        // RFC 4475 §3.1.1.3: parameter values are compared unescaped by the
        // application; the parser hands them over as written.
        let u = Uri::parse("sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31")
            .expect("valid");
        assert_eq!(u.user.as_deref(), Some("caller"));
        assert_eq!(
            u.params,
            [("%6C%72", None), ("n%61me", Some("v%61lue%25%34%31"))]
        );
    }
}
