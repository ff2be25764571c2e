//! Character classes and small lexical helpers shared by the parsers
//! (RFC 3261 §25.1). Everything here works on ASCII bytes; non-ASCII bytes
//! are only ever accepted inside quoted strings, reason phrases and opaque
//! header values.

/// `token` characters: `alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~"`
/// (RFC 3261 §25.1).
const fn token_table() -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            );
        i += 1;
    }
    t
}

static TOKEN: [bool; 256] = token_table();

/// Is `c` a `token` character?
#[inline]
pub(crate) fn is_token_byte(c: u8) -> bool {
    TOKEN[c as usize]
}

/// Is `s` a non-empty `token`?
#[inline]
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_byte)
}

/// `WSP` (SP / HTAB).
#[inline]
pub(crate) fn is_wsp(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

/// Trim SP/HTAB on both sides (values are already unfolded, so LWS is only WSP).
/// Works on bytes: SP and HTAB are ASCII, so the cut is a char boundary.
#[inline]
pub(crate) fn trim_wsp(s: &str) -> &str {
    trim_wsp_end(trim_wsp_start(s))
}

/// Trim SP/HTAB at the start.
#[inline]
pub(crate) fn trim_wsp_start(s: &str) -> &str {
    let n = s.bytes().take_while(|&c| is_wsp(c)).count();
    &s[n..]
}

/// Trim SP/HTAB at the end.
#[inline]
pub(crate) fn trim_wsp_end(s: &str) -> &str {
    let n = s.bytes().rev().take_while(|&c| is_wsp(c)).count();
    &s[..s.len() - n]
}

/// Parse `1*DIGIT` into a `u64`, `None` on any other character, on an empty
/// string or on overflow.
#[inline]
pub(crate) fn parse_digits_u64(s: &str) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for c in s.bytes() {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(v)
}

/// Parse `1*DIGIT` into a `u32`, `None` on overflow or non-digits.
#[inline]
pub(crate) fn parse_digits_u32(s: &str) -> Option<u32> {
    parse_digits_u64(s).and_then(|v| u32::try_from(v).ok())
}

/// Length of the quoted string that starts at `s[0] == '"'`, including both
/// quotes, honouring `\` quoted-pairs (RFC 3261 §25.1). `None` if unterminated.
pub(crate) fn quoted_len(s: &[u8]) -> Option<usize> {
    debug_assert_eq!(s.first(), Some(&b'"'));
    let mut i = 1;
    while i < s.len() {
        match s[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// Split a header value at commas that are not inside a quoted string or an
/// `<...>` URI (RFC 3261 §7.3.1). Pieces are trimmed; empty pieces are kept so
/// that callers can reject `a,,b`. Returns `None` on an unterminated quote or
/// angle bracket.
pub(crate) fn split_top_level(value: &str) -> Option<TopLevelSplit<'_>> {
    // Validate once, so that iteration cannot fail.
    let b = value.as_bytes();
    let mut i = 0;
    let mut in_angle = false;
    while i < b.len() {
        match b[i] {
            b'"' if !in_angle => i += quoted_len(&b[i..])?,
            b'<' if !in_angle => {
                in_angle = true;
                i += 1;
            }
            b'>' if in_angle => {
                in_angle = false;
                i += 1;
            }
            _ => i += 1,
        }
    }
    if in_angle {
        return None;
    }
    Some(TopLevelSplit { rest: Some(value) })
}

/// Iterator returned by [`split_top_level`].
pub(crate) struct TopLevelSplit<'a> {
    rest: Option<&'a str>,
}

impl<'a> Iterator for TopLevelSplit<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let s = self.rest?;
        let b = s.as_bytes();
        let mut i = 0;
        let mut in_angle = false;
        while i < b.len() {
            match b[i] {
                b'"' if !in_angle => match quoted_len(&b[i..]) {
                    Some(n) => i += n,
                    None => i = b.len(),
                },
                b'<' if !in_angle => {
                    in_angle = true;
                    i += 1;
                }
                b'>' if in_angle => {
                    in_angle = false;
                    i += 1;
                }
                b',' if !in_angle => {
                    self.rest = Some(&s[i + 1..]);
                    return Some(trim_wsp(&s[..i]));
                }
                _ => i += 1,
            }
        }
        self.rest = None;
        Some(trim_wsp(s))
    }
}

const fn uri_table() -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = c > b' '
            && c < 0x7f
            && !matches!(
                c,
                b'"' | b'<' | b'>' | b'\\' | b'^' | b'`' | b'{' | b'|' | b'}'
            );
        i += 1;
    }
    t
}

static URI: [bool; 256] = uri_table();

/// Is `c` allowed somewhere in a SIP/SIPS URI (RFC 3261 §25.1: unreserved,
/// reserved, escaped, and the `[]` of IPv6 references)? Excludes SP, CTLs,
/// `"`, `<`, `>`, `\`, `^`, `` ` ``, `{`, `|`, `}` and non-ASCII.
#[inline]
pub(crate) fn is_uri_byte(c: u8) -> bool {
    URI[c as usize]
}

/// `scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )` (RFC 3261 §25.1).
pub(crate) fn is_scheme(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphabetic()
        && b[1..]
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
}

/// Remove the surrounding quotes of a `quoted-string` parameter value, if any,
/// leaving quoted-pairs escaped (`"a\"b"` gives `a\"b`).
pub fn unquote(value: &str) -> &str {
    let b = value.as_bytes();
    if b.len() >= 2 && b[0] == b'"' && b[b.len() - 1] == b'"' {
        &value[1..value.len() - 1]
    } else {
        value
    }
}

/// Parse `*( SEMI generic-param )` (RFC 3261 §25.1) where `s` starts at the
/// first `;` (or is empty). `generic-param = token [ EQUAL gen-value ]`,
/// `gen-value = token / host / quoted-string`. Whitespace is allowed around
/// `;` and `=` (SEMI and EQUAL include SWS). Quoted values keep their quotes.
/// Returns `None` on any syntax error (an empty name such as `;;`, a bad
/// value, trailing garbage).
pub(crate) fn parse_generic_params(s: &str) -> Option<Vec<(&str, Option<&str>)>> {
    let mut params = Vec::new();
    let mut rest = trim_wsp_start(s);
    while !rest.is_empty() {
        rest = trim_wsp_start(rest.strip_prefix(';')?);
        let name_len = rest.bytes().take_while(|&c| is_token_byte(c)).count();
        if name_len == 0 {
            return None;
        }
        let name = &rest[..name_len];
        rest = trim_wsp_start(&rest[name_len..]);
        let value = if let Some(after_eq) = rest.strip_prefix('=') {
            let v = trim_wsp_start(after_eq);
            let b = v.as_bytes();
            let len = if b.first() == Some(&b'"') {
                quoted_len(b)?
            } else {
                b.iter()
                    .take_while(|&&c| is_token_byte(c) || matches!(c, b'[' | b']' | b':'))
                    .count()
            };
            if len == 0 {
                return None;
            }
            rest = trim_wsp_start(&v[len..]);
            Some(&v[..len])
        } else {
            None
        };
        params.push((name, value));
    }
    Some(params)
}

/// Case-insensitive lookup in a parameter list (RFC 3261 §7.3.1: parameter
/// names are case-insensitive).
#[inline]
pub(crate) fn find_param<'a>(
    params: &[(&'a str, Option<&'a str>)],
    name: &str,
) -> Option<Option<&'a str>> {
    params
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|&(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        assert!(is_token("!interesting-Method0123456789_*+`.%indeed'~"));
        assert!(!is_token(""));
        assert!(!is_token("a b"));
        assert!(!is_token("a,b"));
    }

    #[test]
    fn digits() {
        assert_eq!(parse_digits_u32("0009"), Some(9));
        assert_eq!(parse_digits_u32("4294967295"), Some(u32::MAX));
        assert_eq!(parse_digits_u32("4294967296"), None);
        assert_eq!(parse_digits_u32("36893488147419103232"), None);
        assert_eq!(parse_digits_u32("-1"), None);
        assert_eq!(parse_digits_u32(""), None);
    }

    #[test]
    fn split_respects_quotes_and_angles() {
        let v: Vec<_> = split_top_level(r#""a,\"b" <sip:x@y;p=1,2>;q=1 , <sip:z>"#)
            .expect("balanced")
            .collect();
        assert_eq!(v, [r#""a,\"b" <sip:x@y;p=1,2>;q=1"#, "<sip:z>"]);
        assert!(split_top_level("\"open").is_none());
        assert!(split_top_level("<sip:a").is_none());
        let v: Vec<_> = split_top_level("a,,b").expect("ok").collect();
        assert_eq!(v, ["a", "", "b"]);
    }

    #[test]
    fn generic_params() {
        let p = parse_generic_params(" ; newparam =  newvalue ; secondparam ; q = 0.33")
            .expect("valid");
        assert_eq!(
            p,
            [
                ("newparam", Some("newvalue")),
                ("secondparam", None),
                ("q", Some("0.33"))
            ]
        );
        let p = parse_generic_params(r#";x="a;b";received=[2001:db8::1]"#).expect("valid");
        assert_eq!(
            p,
            [("x", Some(r#""a;b""#)), ("received", Some("[2001:db8::1]"))]
        );
        assert!(parse_generic_params(";;").is_none());
        assert!(parse_generic_params(";a=").is_none());
        assert!(parse_generic_params(";a b").is_none());
        assert_eq!(parse_generic_params("").expect("empty"), []);
    }

    #[test]
    fn unquote_strips_only_matching_quotes() {
        assert_eq!(unquote(r#""<urn:x>""#), "<urn:x>");
        assert_eq!(unquote("tok"), "tok");
        assert_eq!(unquote("\""), "\"");
    }
}
