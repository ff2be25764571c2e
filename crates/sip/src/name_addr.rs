//! `name-addr` / `addr-spec` with header parameters (RFC 3261 §20.10, §25.1),
//! the Contact list, and `q` values.

use crate::syntax::{
    find_param, is_token_byte, is_wsp, parse_generic_params, quoted_len, split_top_level, trim_wsp,
};
use crate::{ParseError, Uri};

/// `name-addr` / `addr-spec` with header parameters, as in From, To, Contact,
/// Path, Route (RFC 3261 §20.10, §25.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// Display name, without quotes, if any. A quoted display name keeps its
    /// quoted-pairs escaped (`"J Rosenberg \\\""` gives `J Rosenberg \\\"`);
    /// a token display name keeps its inner whitespace.
    pub display: Option<&'a str>,
    /// The URI text exactly as written between `<` `>` (or the bare addr-spec).
    pub uri_text: &'a str,
    /// The parsed URI.
    pub uri: Uri<'a>,
    /// Header parameters after the URI, in order (`tag`, `expires`, `q`, `+sip.instance`, ...).
    /// Quoted values keep their quotes (see [`crate::unquote`]).
    pub params: Vec<(&'a str, Option<&'a str>)>,
}

impl<'a> NameAddr<'a> {
    /// Parse one name-addr or addr-spec with parameters.
    ///
    /// In the bare addr-spec form, everything after the first `;` is a header
    /// parameter, and a URI holding `?` or `,` is rejected: such URIs must be
    /// written in `<>` (RFC 3261 §20, RFC 4475 §3.1.2.13).
    pub fn parse(text: &'a str) -> Result<Self, ParseError> {
        const BAD: ParseError = ParseError::Malformed {
            what: "name-addr",
            offset: 0,
        };
        let s = trim_wsp(text);
        let b = s.as_bytes();

        let angle_form = if b.first() == Some(&b'"') {
            // quoted-string display name (RFC 4475 §3.1.2.6: unterminated => error)
            let n = quoted_len(b).ok_or(BAD)?;
            let rest = trim_wsp(&s[n..]);
            if !rest.starts_with('<') {
                return Err(BAD);
            }
            Some((Some(&s[1..n - 1]), s.len() - rest.len()))
        } else {
            match memchr::memchr(b'<', b) {
                // `*(token LWS)` display name; no LWS is needed before '<'
                // (RFC 4475 §3.1.1.6).
                Some(lt) if b[..lt].iter().all(|&c| is_token_byte(c) || is_wsp(c)) => {
                    let d = trim_wsp(&s[..lt]);
                    Some(((!d.is_empty()).then_some(d), lt))
                }
                _ => None,
            }
        };

        let (display, uri_text, param_text) = match angle_form {
            Some((display, lt)) => {
                let inner_start = lt + 1;
                let gt = memchr::memchr(b'>', &b[inner_start..]).ok_or(BAD)? + inner_start;
                (display, &s[inner_start..gt], &s[gt + 1..])
            }
            None => {
                let end = memchr::memchr(b';', b).unwrap_or(b.len());
                let uri_text = trim_wsp(&s[..end]);
                if memchr::memchr2(b'?', b',', uri_text.as_bytes()).is_some() {
                    return Err(BAD);
                }
                (None, uri_text, &s[end..])
            }
        };
        let uri = Uri::parse(uri_text)?;
        let params = parse_generic_params(param_text).ok_or(BAD)?;
        Ok(Self {
            display,
            uri_text,
            uri,
            params,
        })
    }

    /// Header parameter value (case-insensitive name); `Some(None)` for a flag.
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        find_param(&self.params, name)
    }

    /// The `tag` parameter.
    pub fn tag(&self) -> Option<&'a str> {
        self.param("tag").flatten()
    }

    /// The `q` parameter in thousandths, if present (RFC 3261 §20.10).
    pub fn q(&self) -> Option<Result<u16, ParseError>> {
        self.param("q").map(|v| parse_q(v.unwrap_or("")))
    }

    /// The `expires` parameter as delta-seconds, clamped to `u32::MAX`
    /// (RFC 3261 §10.2.1.1; RFC 4475 §3.1.2.4 shows oversized values).
    pub fn expires(&self) -> Option<Result<u32, ParseError>> {
        self.param("expires").map(|v| {
            parse_delta_seconds(v.unwrap_or("")).ok_or(ParseError::Malformed {
                what: "Contact",
                offset: 0,
            })
        })
    }
}

/// The Contact header of a REGISTER (RFC 3261 §20.10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contacts<'a> {
    /// No Contact header at all.
    None,
    /// `Contact: *` (only legal alone, with `Expires: 0`; the registrar checks that).
    Star,
    /// One or more contacts, from all Contact header fields in order.
    List(Vec<NameAddr<'a>>),
}

/// Parse the Contact values of a message (each field's value, in order).
pub(crate) fn parse_contacts<'a, I>(values: I) -> Result<Contacts<'a>, ParseError>
where
    I: Iterator<Item = &'a str>,
{
    const BAD: ParseError = ParseError::Malformed {
        what: "Contact",
        offset: 0,
    };
    let mut list = Vec::new();
    let mut star = false;
    let mut any = false;
    for value in values {
        any = true;
        for piece in split_top_level(value).ok_or(BAD)? {
            if piece == "*" {
                if star {
                    return Err(BAD);
                }
                star = true;
            } else if piece.is_empty() {
                return Err(BAD);
            } else {
                list.push(NameAddr::parse(piece).map_err(|_| BAD)?);
            }
        }
    }
    match (any, star, list.is_empty()) {
        (false, _, _) => Ok(Contacts::None),
        // RFC 3261 §10.2.2: "*" must be the only Contact value.
        (true, true, true) => Ok(Contacts::Star),
        (true, true, false) => Err(BAD),
        (true, false, _) => Ok(Contacts::List(list)),
    }
}

/// Parse a `qvalue` (RFC 3261 §25.1) into thousandths: `"0.5"` gives 500,
/// `"1"` gives 1000. At most three decimals; values above 1 are rejected.
pub fn parse_q(s: &str) -> Result<u16, ParseError> {
    let b = s.as_bytes();
    let (int, frac) = match memchr::memchr(b'.', b) {
        Some(dot) => (&b[..dot], &b[dot + 1..]),
        None => (b, &b""[..]),
    };
    if int.len() != 1 || frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return Err(ParseError::BadQValue);
    }
    let mut thousandths = 0u16;
    for i in 0..3 {
        thousandths = thousandths * 10 + frac.get(i).map_or(0, |&d| u16::from(d - b'0'));
    }
    match int[0] {
        b'0' => Ok(thousandths),
        b'1' if thousandths == 0 => Ok(1000),
        _ => Err(ParseError::BadQValue),
    }
}

/// Parse `delta-seconds = 1*DIGIT`, clamping values above `u32::MAX` to
/// `u32::MAX` (RFC 3261 §20.19 treats oversized values as 2**32-1).
pub fn parse_delta_seconds(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let digits = s.trim_start_matches('0');
    if digits.len() > 10 {
        return Some(u32::MAX);
    }
    let v = digits
        .bytes()
        .fold(0u64, |v, c| v * 10 + u64::from(c - b'0'));
    Some(u32::try_from(v).unwrap_or(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_display_with_escapes() {
        let na = NameAddr::parse(
            r#""J Rosenberg \\\""       <sip:jdrosen@example.com> ; tag = 98asjd8"#,
        )
        .expect("valid");
        assert_eq!(na.display, Some(r#"J Rosenberg \\\""#));
        assert_eq!(na.uri_text, "sip:jdrosen@example.com");
        assert_eq!(na.tag(), Some("98asjd8"));
    }

    #[test]
    fn token_display_without_space() {
        let na = NameAddr::parse("caller<sip:caller@example.com>;tag=323").expect("valid");
        assert_eq!(na.display, Some("caller"));
        assert_eq!(na.uri.user.as_deref(), Some("caller"));
        let na = NameAddr::parse("token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;x=1")
            .expect("valid");
        assert_eq!(na.display, Some("token1~` token2'+_ token3*%!.-"));
    }

    #[test]
    fn bare_addr_spec_params_are_header_params() {
        // RFC 4475 §3.3.12 / §3.3.13
        let na = NameAddr::parse("sip:+19725552222@gw1.example.net;unknownparam").expect("valid");
        assert!(na.uri.params.is_empty());
        assert_eq!(na.param("unknownparam"), Some(None));
        let na = NameAddr::parse("<sip:+19725552222@gw1.example.net;unknownparam>").expect("valid");
        assert_eq!(na.uri.param("unknownparam"), Some(None));
        assert!(na.params.is_empty());
        let na = NameAddr::parse("sip:a@b ;tag=1").expect("valid");
        assert_eq!(na.uri_text, "sip:a@b");
        assert_eq!(na.tag(), Some("1"));
    }

    #[test]
    fn rejects() {
        for bad in [
            r#""Mr. J. User <sip:j.user@example.com>"#, // §3.1.2.6
            r#""Watson, Thomas" < sip:t.watson@example.org >"#, // §3.1.2.14
            "Bell, Alexander <sip:a.g.bell@example.com>;tag=43", // §3.1.2.15
            "sip:user@example.com?Route=%3Csip:sip.example.com%3E", // §3.1.2.13
            r#""Joe" <sip:joe@example.org>;;;;"#,       // §3.1.2.1
            "<sip:a@b",
            r#""x" sip:a@b"#,
            "",
            "<sip:a@b> junk",
        ] {
            assert!(NameAddr::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn params_case_insensitive_and_quoted() {
        let na = NameAddr::parse(
            r#"<sip:a@b>;Expires=60;Q=0.7;+sip.instance="<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>""#,
        )
        .expect("valid");
        assert_eq!(na.expires(), Some(Ok(60)));
        assert_eq!(na.q(), Some(Ok(700)));
        assert_eq!(
            na.param("+SIP.INSTANCE").flatten().map(crate::unquote),
            Some("<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>")
        );
    }

    #[test]
    fn q_values() {
        assert_eq!(parse_q("0.5"), Ok(500));
        assert_eq!(parse_q("1"), Ok(1000));
        assert_eq!(parse_q("1.000"), Ok(1000));
        assert_eq!(parse_q("1."), Ok(1000));
        assert_eq!(parse_q("0"), Ok(0));
        assert_eq!(parse_q("0.33"), Ok(330));
        assert_eq!(parse_q("0.001"), Ok(1));
        for bad in ["", "1.5", "1.001", "2", ".5", "0.3333", "0.a", "00.5", "-0"] {
            assert_eq!(parse_q(bad), Err(ParseError::BadQValue), "{bad:?}");
        }
    }

    #[test]
    fn delta_seconds() {
        assert_eq!(parse_delta_seconds("3600"), Some(3600));
        assert_eq!(parse_delta_seconds("0000"), Some(0));
        assert_eq!(parse_delta_seconds("4294967296"), Some(u32::MAX));
        assert_eq!(parse_delta_seconds("280297596632815"), Some(u32::MAX));
        assert_eq!(parse_delta_seconds(&"9".repeat(200)), Some(u32::MAX));
        assert_eq!(parse_delta_seconds(""), None);
        assert_eq!(parse_delta_seconds("12a"), None);
    }

    #[test]
    fn contacts_star_and_lists() {
        assert_eq!(parse_contacts(std::iter::empty()), Ok(Contacts::None));
        assert_eq!(parse_contacts(["*"].into_iter()), Ok(Contacts::Star));
        assert!(parse_contacts(["*", "<sip:a@b>"].into_iter()).is_err());
        assert!(parse_contacts(["*, *"].into_iter()).is_err());
        assert!(parse_contacts(["<sip:a@b>,,<sip:c@d>"].into_iter()).is_err());
        let Ok(Contacts::List(l)) =
            parse_contacts([r#""A, B" <sip:a@b>;q=0.5, <sip:c@d>"#, "sip:e@f"].into_iter())
        else {
            panic!("expected a list");
        };
        let users: Vec<_> = l.iter().map(|c| c.uri.user.as_deref()).collect();
        assert_eq!(users, [Some("a"), Some("c"), Some("e")]);
        assert_eq!(l[0].display, Some("A, B"));
    }
}
