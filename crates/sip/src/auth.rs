//! Digest credentials in Authorization (RFC 3261 §22.4, §25.1; RFC 7616 §3.4).
//!
//! `credentials = "Digest" LWS digest-response`, where the response is a
//! comma-separated list of `name = value`, values being tokens or quoted
//! strings. Quoted values are returned without their quotes and with
//! quoted-pairs undone (borrowed unless an escape had to be undone).
//! Unknown parameters are ignored; a known parameter given twice is an error.

use std::borrow::Cow;

use crate::ParseError;
use crate::syntax::{is_token_byte, quoted_len, trim_wsp, trim_wsp_start};

/// Digest credentials from an Authorization header (RFC 7616 §3.4).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DigestCredentials<'a> {
    /// username
    pub username: Option<Cow<'a, str>>,
    /// realm
    pub realm: Option<Cow<'a, str>>,
    /// nonce
    pub nonce: Option<Cow<'a, str>>,
    /// digest-uri
    pub uri: Option<Cow<'a, str>>,
    /// response
    pub response: Option<Cow<'a, str>>,
    /// algorithm (`MD5` when absent, per RFC 7616 §3.3)
    pub algorithm: Option<Cow<'a, str>>,
    /// cnonce
    pub cnonce: Option<Cow<'a, str>>,
    /// qop
    pub qop: Option<Cow<'a, str>>,
    /// nc, raw 8 hex digits
    pub nc: Option<Cow<'a, str>>,
    /// opaque
    pub opaque: Option<Cow<'a, str>>,
}

const BAD: ParseError = ParseError::Malformed {
    what: "Authorization",
    offset: 0,
};

impl<'a> DigestCredentials<'a> {
    /// Parse an Authorization (or Proxy-Authorization) header value.
    /// A scheme other than `Digest` gives [`ParseError::UnsupportedAuthScheme`].
    pub fn parse(value: &'a str) -> Result<Self, ParseError> {
        let value = trim_wsp(value);
        let scheme_len = value.bytes().take_while(|&c| is_token_byte(c)).count();
        if scheme_len == 0 {
            return Err(BAD);
        }
        if !value[..scheme_len].eq_ignore_ascii_case("Digest") {
            return Err(ParseError::UnsupportedAuthScheme);
        }
        let mut rest = &value[scheme_len..];
        if !rest.is_empty() && !rest.starts_with([' ', '\t']) {
            return Err(BAD);
        }
        let mut creds = Self::default();
        rest = trim_wsp_start(rest);
        while !rest.is_empty() {
            let n = rest.bytes().take_while(|&c| is_token_byte(c)).count();
            if n == 0 {
                return Err(BAD);
            }
            let name = &rest[..n];
            rest = trim_wsp_start(&rest[n..]);
            rest = trim_wsp_start(rest.strip_prefix('=').ok_or(BAD)?);
            let b = rest.as_bytes();
            let (val, len) = if b.first() == Some(&b'"') {
                let len = quoted_len(b).ok_or(BAD)?;
                (unquote_pairs(&rest[1..len - 1]), len)
            } else {
                let len = b.iter().take_while(|&&c| is_token_byte(c)).count();
                if len == 0 {
                    return Err(BAD);
                }
                (Cow::Borrowed(&rest[..len]), len)
            };
            rest = trim_wsp_start(&rest[len..]);
            if let Some(after) = rest.strip_prefix(',') {
                rest = trim_wsp_start(after);
                if rest.is_empty() {
                    return Err(BAD);
                }
            } else if !rest.is_empty() {
                return Err(BAD);
            }
            let Some(slot) = creds.slot(name) else {
                continue;
            };
            if slot.replace(val).is_some() {
                return Err(BAD);
            }
        }
        Ok(creds)
    }
}

impl<'a> DigestCredentials<'a> {
    /// The field for a known parameter name (case-insensitive, no allocation).
    fn slot(&mut self, name: &str) -> Option<&mut Option<Cow<'a, str>>> {
        let slot = if name.eq_ignore_ascii_case("username") {
            &mut self.username
        } else if name.eq_ignore_ascii_case("realm") {
            &mut self.realm
        } else if name.eq_ignore_ascii_case("nonce") {
            &mut self.nonce
        } else if name.eq_ignore_ascii_case("uri") {
            &mut self.uri
        } else if name.eq_ignore_ascii_case("response") {
            &mut self.response
        } else if name.eq_ignore_ascii_case("algorithm") {
            &mut self.algorithm
        } else if name.eq_ignore_ascii_case("cnonce") {
            &mut self.cnonce
        } else if name.eq_ignore_ascii_case("qop") {
            &mut self.qop
        } else if name.eq_ignore_ascii_case("nc") {
            &mut self.nc
        } else if name.eq_ignore_ascii_case("opaque") {
            &mut self.opaque
        } else {
            return None;
        };
        Some(slot)
    }
}

/// Undo `\x` quoted-pairs inside a quoted string's content.
fn unquote_pairs(s: &str) -> Cow<'_, str> {
    if memchr::memchr(b'\\', s.as_bytes()).is_none() {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_example() {
        let c = DigestCredentials::parse(
            "Digest username=\"bob\", realm=\"biloxi.com\",\n nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", uri=\"sip:bob@biloxi.com\", qop=auth, nc=00000001, cnonce=\"0a4f113b\", response=\"6629fae49393a05397450978507c4ef1\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\", algorithm=MD5"
                .replace("\n", "")
                .as_str(),
        )
        .map(|c| (c.username.map(Cow::into_owned), c.qop.map(Cow::into_owned), c.nc.map(Cow::into_owned), c.algorithm.map(Cow::into_owned)));
        assert_eq!(
            c,
            Ok((
                Some("bob".into()),
                Some("auth".into()),
                Some("00000001".into()),
                Some("MD5".into())
            ))
        );
    }

    #[test]
    fn borrowed_unless_escaped() {
        let c = DigestCredentials::parse(r#"DIGEST username="a\"b", realm=r, nonce="n""#)
            .expect("valid");
        assert_eq!(c.username.as_deref(), Some("a\"b"));
        assert!(matches!(c.username, Some(Cow::Owned(_))));
        assert!(matches!(c.realm, Some(Cow::Borrowed("r"))));
        assert!(matches!(c.nonce, Some(Cow::Borrowed("n"))));
        assert_eq!(c.response, None);
    }

    #[test]
    fn unknown_scheme_and_errors() {
        // RFC 4475 §3.3.7
        assert_eq!(
            DigestCredentials::parse("NoOneKnowsThisScheme opaque-data=here"),
            Err(ParseError::UnsupportedAuthScheme)
        );
        for bad in [
            "",
            "Digest username",
            "Digest username=",
            "Digest username=\"x",
            "Digest username=a,",
            "Digest username=a realm=b",
            "Digest username=a, username=b",
            "Digestusername=a",
        ] {
            assert!(DigestCredentials::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            DigestCredentials::parse("Digest"),
            Ok(DigestCredentials::default())
        );
        // unknown parameters are ignored
        let c = DigestCredentials::parse("Digest foo=\"bar\", username=u").expect("valid");
        assert_eq!(c.username.as_deref(), Some("u"));
    }
}
