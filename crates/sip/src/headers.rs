//! Header fields and the typed accessors over them.
//!
//! Lookup is case-insensitive and treats compact forms as aliases of their
//! long names (RFC 3261 §7.3.3, §20). Typed accessors parse on demand: the
//! message parser only splits header lines, so a registrar pays for what it
//! reads. Single-valued headers that appear several times with different
//! values are an error (RFC 4475 §3.3.8).

use std::borrow::Cow;

use crate::name_addr::{parse_contacts, parse_delta_seconds};
use crate::syntax::{is_token, parse_digits_u32, split_top_level, trim_wsp};
use crate::{Contacts, DigestCredentials, NameAddr, ParseError, Via};

/// One header field as received: name as on the wire, value with leading and
/// trailing whitespace removed and line folding (LWS) replaced by one space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header<'a> {
    /// Field name as on the wire (may be a compact form such as `m`).
    pub name: &'a str,
    /// Field value; borrowed unless unfolding was needed.
    pub value: Cow<'a, str>,
}

/// The header fields of a message in wire order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers<'a> {
    /// In wire order.
    pub fields: Vec<Header<'a>>,
}

/// Compact forms (RFC 3261 §7.3.3 and the RFCs that registered more letters).
const COMPACT: &[(u8, &str)] = &[
    (b'a', "Accept-Contact"),      // RFC 3841
    (b'b', "Referred-By"),         // RFC 3892
    (b'c', "Content-Type"),        // RFC 3261
    (b'd', "Request-Disposition"), // RFC 3841
    (b'e', "Content-Encoding"),    // RFC 3261
    (b'f', "From"),                // RFC 3261
    (b'i', "Call-ID"),             // RFC 3261
    (b'j', "Reject-Contact"),      // RFC 3841
    (b'k', "Supported"),           // RFC 3261
    (b'l', "Content-Length"),      // RFC 3261
    (b'm', "Contact"),             // RFC 3261
    (b'n', "Identity-Info"),       // RFC 4474
    (b'o', "Event"),               // RFC 6665
    (b'r', "Refer-To"),            // RFC 3515
    (b's', "Subject"),             // RFC 3261
    (b't', "To"),                  // RFC 3261
    (b'u', "Allow-Events"),        // RFC 6665
    (b'v', "Via"),                 // RFC 3261
    (b'x', "Session-Expires"),     // RFC 4028
    (b'y', "Identity"),            // RFC 4474
];

/// The other spelling of `name`: the long name of a compact form, or the
/// compact letter of a long name. Cheap length and first-letter checks come
/// before any case-insensitive comparison.
fn alias(name: &str) -> Option<&'static str> {
    const LETTERS: &str = "abcdefghijklmnopqrstuvwxyz";
    let b = name.as_bytes();
    match b {
        [] => None,
        [c] => {
            let c = c.to_ascii_lowercase();
            COMPACT.iter().find(|(l, _)| *l == c).map(|&(_, long)| long)
        }
        [first, ..] => {
            let first = first.to_ascii_lowercase();
            COMPACT
                .iter()
                .find(|(_, long)| {
                    long.len() == b.len()
                        && long.as_bytes()[0].to_ascii_lowercase() == first
                        && long.eq_ignore_ascii_case(name)
                })
                .map(|&(l, _)| {
                    let i = usize::from(l - b'a');
                    &LETTERS[i..=i]
                })
        }
    }
}

/// A precomputed matcher for one header name and its alias.
#[derive(Clone, Copy)]
struct NameMatch<'n> {
    name: &'n str,
    alias: Option<&'static str>,
}

impl<'n> NameMatch<'n> {
    fn new(name: &'n str) -> Self {
        Self {
            name,
            alias: alias(name),
        }
    }

    /// For the names the accessors use, without searching the alias table.
    fn known(name: &'n str) -> Self {
        let alias = match name {
            "Call-ID" => Some("i"),
            "CSeq" | "Expires" | "Max-Forwards" => None,
            "From" => Some("f"),
            "To" => Some("t"),
            "Via" => Some("v"),
            "Contact" => Some("m"),
            "Content-Length" => Some("l"),
            _ => alias(name),
        };
        Self { name, alias }
    }

    #[inline]
    fn matches(&self, field: &str) -> bool {
        field.eq_ignore_ascii_case(self.name)
            || self.alias.is_some_and(|a| field.eq_ignore_ascii_case(a))
    }
}

/// CSeq (RFC 3261 §20.16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CSeq<'a> {
    /// Sequence number (32-bit unsigned, RFC 3261 §8.1.1.5).
    pub seq: u32,
    /// Method token.
    pub method: &'a str,
}

impl<'a> CSeq<'a> {
    /// Parse `CSeq = 1*DIGIT LWS Method`. Numbers above 2**32-1 are an error
    /// (RFC 4475 §3.1.2.4).
    pub fn parse(value: &'a str) -> Result<Self, ParseError> {
        const BAD: ParseError = ParseError::Malformed {
            what: "CSeq",
            offset: 0,
        };
        let value = trim_wsp(value);
        let (num, method) = value.split_once([' ', '\t']).ok_or(BAD)?;
        let method = trim_wsp(method);
        let seq = parse_digits_u32(num).ok_or(BAD)?;
        if !is_token(method) {
            return Err(BAD);
        }
        Ok(Self { seq, method })
    }
}

impl<'a> Headers<'a> {
    /// First value of the header `name` (case-insensitive; compact forms such
    /// as `m`/`Contact`, `v`/`Via`, `i`/`Call-ID` match each other).
    pub fn get(&self, name: &str) -> Option<&str> {
        let m = NameMatch::new(name);
        self.fields
            .iter()
            .find(|h| m.matches(h.name))
            .map(|h| &*h.value)
    }

    /// Every value of the header `name`, in order (each header field line once;
    /// comma-separated lists are split by the typed accessors, not here).
    pub fn get_all<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s str> + 's {
        let m = NameMatch::new(name);
        self.fields
            .iter()
            .filter(move |h| m.matches(h.name))
            .map(|h| &*h.value)
    }

    /// Does any field named `name` (or its compact alias) exist?
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The value of a header that must appear at most once; repeated fields
    /// with the same value are tolerated.
    fn single(&self, name: &'static str) -> Result<Option<&str>, ParseError> {
        let m = NameMatch::known(name);
        let mut values = self
            .fields
            .iter()
            .filter(|h| m.matches(h.name))
            .map(|h| &*h.value);
        let Some(first) = values.next() else {
            return Ok(None);
        };
        if values.any(|v| v != first) {
            return Err(ParseError::DuplicateHeader { name });
        }
        Ok(Some(first))
    }

    fn required(&self, name: &'static str) -> Result<&str, ParseError> {
        self.single(name)?.ok_or(ParseError::MissingHeader { name })
    }

    /// Call-ID (`word [ "@" word ]`, RFC 3261 §20.8): non-empty, no whitespace.
    pub fn call_id(&self) -> Result<&str, ParseError> {
        let v = self.required("Call-ID")?;
        if v.is_empty() || v.bytes().any(|c| c.is_ascii_whitespace()) {
            return Err(ParseError::Malformed {
                what: "Call-ID",
                offset: 0,
            });
        }
        Ok(v)
    }

    /// CSeq.
    pub fn cseq(&self) -> Result<CSeq<'_>, ParseError> {
        CSeq::parse(self.required("CSeq")?)
    }

    /// From.
    pub fn from(&self) -> Result<NameAddr<'_>, ParseError> {
        name_addr(self.required("From")?, "From")
    }

    /// To.
    pub fn to(&self) -> Result<NameAddr<'_>, ParseError> {
        name_addr(self.required("To")?, "To")
    }

    /// The topmost Via value (first element of the first Via field).
    pub fn top_via(&self) -> Result<Via<'_>, ParseError> {
        let m = NameMatch::known("Via");
        let first = self
            .fields
            .iter()
            .find(|h| m.matches(h.name))
            .map(|h| &*h.value)
            .ok_or(ParseError::MissingHeader { name: "Via" })?;
        let mut parts = split_top_level(first).ok_or(VIA_BAD)?;
        Via::parse(parts.next().ok_or(VIA_BAD)?).map_err(|_| VIA_BAD)
    }

    /// Every Via value, from all Via fields, top first.
    pub fn vias(&self) -> Result<Vec<Via<'_>>, ParseError> {
        let mut out = Vec::new();
        for field in self.get_all("Via") {
            for part in split_top_level(field).ok_or(VIA_BAD)? {
                out.push(Via::parse(part).map_err(|_| VIA_BAD)?);
            }
        }
        Ok(out)
    }

    /// Contacts from every Contact field, split at top-level commas; `*` alone
    /// gives [`Contacts::Star`], `*` mixed with other contacts is an error.
    pub fn contacts(&self) -> Result<Contacts<'_>, ParseError> {
        let m = NameMatch::known("Contact");
        parse_contacts(
            self.fields
                .iter()
                .filter(|h| m.matches(h.name))
                .map(|h| &*h.value),
        )
    }

    /// Expires as delta-seconds (values above 2**32-1 clamp to `u32::MAX`).
    pub fn expires(&self) -> Result<Option<u32>, ParseError> {
        self.single("Expires")?
            .map(|v| {
                parse_delta_seconds(v).ok_or(ParseError::Malformed {
                    what: "Expires",
                    offset: 0,
                })
            })
            .transpose()
    }

    /// Max-Forwards (0..=255, RFC 3261 §20.22; RFC 4475 §3.1.2.4 sends 300).
    pub fn max_forwards(&self) -> Result<Option<u8>, ParseError> {
        self.single("Max-Forwards")?
            .map(|v| {
                parse_digits_u32(v)
                    .and_then(|n| u8::try_from(n).ok())
                    .ok_or(ParseError::Malformed {
                        what: "Max-Forwards",
                        offset: 0,
                    })
            })
            .transpose()
    }

    /// Content-Length, if present (the parser has already checked it).
    pub fn content_length(&self) -> Result<Option<usize>, ParseError> {
        self.single("Content-Length")
            .map_err(|_| ParseError::BadContentLength)?
            .map(|v| {
                crate::syntax::parse_digits_u64(v)
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or(ParseError::BadContentLength)
            })
            .transpose()
    }

    /// Every Path value, split at top-level commas, in order (RFC 3327).
    pub fn path(&self) -> Result<Vec<&str>, ParseError> {
        const BAD: ParseError = ParseError::Malformed {
            what: "Path",
            offset: 0,
        };
        let mut out = Vec::new();
        for field in self.get_all("Path") {
            for part in split_top_level(field).ok_or(BAD)? {
                NameAddr::parse(part).map_err(|_| BAD)?;
                out.push(part);
            }
        }
        Ok(out)
    }

    /// User-Agent, if present.
    pub fn user_agent(&self) -> Option<&str> {
        self.get("User-Agent")
    }

    /// Digest credentials from the first `Authorization` header, if present.
    pub fn authorization(&self) -> Option<Result<DigestCredentials<'_>, ParseError>> {
        self.get("Authorization").map(DigestCredentials::parse)
    }
}

const VIA_BAD: ParseError = ParseError::Malformed {
    what: "Via",
    offset: 0,
};

fn name_addr<'v>(value: &'v str, what: &'static str) -> Result<NameAddr<'v>, ParseError> {
    NameAddr::parse(value).map_err(|_| ParseError::Malformed { what, offset: 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdrs<'a>(pairs: &[(&'a str, &'a str)]) -> Headers<'a> {
        Headers {
            fields: pairs
                .iter()
                .map(|&(name, value)| Header {
                    name,
                    value: Cow::Borrowed(value),
                })
                .collect(),
        }
    }

    #[test]
    fn compact_forms_match_both_ways() {
        let h = hdrs(&[("v", "a"), ("VIA", "b"), ("m", "<sip:x@y>"), ("i", "cid")]);
        assert_eq!(h.get("Via"), Some("a"));
        assert_eq!(h.get_all("via").collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(h.get_all("V").collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(h.get("contact"), Some("<sip:x@y>"));
        assert_eq!(h.get("Call-ID"), Some("cid"));
        assert_eq!(h.get("C"), None); // Content-Type, absent
        assert!(h.contains("M"));
        assert_eq!(alias("l"), Some("Content-Length"));
        assert_eq!(alias("content-length"), Some("l"));
        assert_eq!(alias("q"), None);
        assert_eq!(alias("X-Foo"), None);
    }

    #[test]
    fn known_aliases_agree_with_table() {
        for name in [
            "Call-ID",
            "CSeq",
            "Expires",
            "Max-Forwards",
            "From",
            "To",
            "Via",
            "Contact",
            "Content-Length",
        ] {
            assert_eq!(NameMatch::known(name).alias, alias(name), "{name}");
        }
    }

    #[test]
    fn cseq() {
        let h = hdrs(&[("CSeq", "0009 INVITE")]);
        assert_eq!(
            h.cseq(),
            Ok(CSeq {
                seq: 9,
                method: "INVITE"
            })
        );
        for bad in [
            "36893488147419103232 REGISTER",
            "1",
            "x REGISTER",
            "1 REG ISTER",
            "-1 REGISTER",
            "",
        ] {
            assert!(CSeq::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            Headers::default().cseq(),
            Err(ParseError::MissingHeader { name: "CSeq" })
        );
    }

    #[test]
    fn duplicates() {
        let h = hdrs(&[("Call-ID", "a"), ("i", "a")]);
        assert_eq!(h.call_id(), Ok("a"));
        let h = hdrs(&[("Call-ID", "a"), ("i", "b")]);
        assert_eq!(
            h.call_id(),
            Err(ParseError::DuplicateHeader { name: "Call-ID" })
        );
        let h = hdrs(&[("Call-ID", "a b")]);
        assert!(h.call_id().is_err());
    }

    #[test]
    fn expires_and_max_forwards() {
        let h = hdrs(&[("Expires", "3600"), ("Max-Forwards", "70")]);
        assert_eq!(h.expires(), Ok(Some(3600)));
        assert_eq!(h.max_forwards(), Ok(Some(70)));
        let h = hdrs(&[("Expires", "1000000000000"), ("Max-Forwards", "300")]);
        assert_eq!(h.expires(), Ok(Some(u32::MAX)));
        assert!(h.max_forwards().is_err());
        let h = hdrs(&[("Expires", "soon")]);
        assert!(h.expires().is_err());
        assert_eq!(Headers::default().expires(), Ok(None));
        assert_eq!(Headers::default().max_forwards(), Ok(None));
    }

    #[test]
    fn vias_and_top_via() {
        let h = hdrs(&[
            (
                "v",
                "SIP/2.0/TCP a.example.com;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2",
            ),
            ("Via", "SIP/2.0/UDP c:5061"),
        ]);
        assert_eq!(h.top_via().map(|v| v.host), Ok("a.example.com"));
        let hosts: Vec<_> = h.vias().expect("valid").iter().map(|v| v.host).collect();
        assert_eq!(hosts, ["a.example.com", "b", "c"]);
        let h = hdrs(&[("Via", "SIP/2.0/UDP 192.0.2.15;;,;,,")]);
        assert!(h.top_via().is_err());
        assert_eq!(
            Headers::default().top_via(),
            Err(ParseError::MissingHeader { name: "Via" })
        );
    }

    #[test]
    fn path_and_user_agent() {
        let h = hdrs(&[
            ("Path", "<sip:p1.example.com;lr>, <sip:p2.example.com;lr>"),
            ("Path", "<sip:p3.example.com;lr>"),
            ("User-Agent", "softphone/1.0"),
        ]);
        assert_eq!(
            h.path(),
            Ok(vec![
                "<sip:p1.example.com;lr>",
                "<sip:p2.example.com;lr>",
                "<sip:p3.example.com;lr>"
            ])
        );
        assert_eq!(h.user_agent(), Some("softphone/1.0"));
        let h = hdrs(&[("Path", "<sip:p1.example.com;lr>,")]);
        assert!(h.path().is_err());
    }

    #[test]
    fn content_length() {
        assert_eq!(hdrs(&[("l", "12")]).content_length(), Ok(Some(12)));
        assert_eq!(Headers::default().content_length(), Ok(None));
        assert!(hdrs(&[("l", "-1")]).content_length().is_err());
    }
}
