//! Messages and the datagram parser (RFC 3261 §7).
//!
//! [`parse`] does one pass over the bytes: it splits the start line and the
//! header lines, unfolds continuation lines, checks header names, UTF-8, NUL
//! and bare CR bytes, and cuts the body at Content-Length. Header values are
//! only interpreted by the typed accessors, so a message that parses may
//! still be rejected by [`Request::validate`] (RFC 4475 §3.1.2 lists both
//! kinds of error).
//!
//! Invariants of a parsed message: every header name is a token, every value
//! is valid UTF-8 with no CR, no LF (folding is replaced by one SP) and no
//! NUL outside a quoted-pair; `body` is exactly Content-Length bytes when the
//! header is present (extra datagram bytes are ignored, RFC 3261 §18.3) and
//! the rest of the datagram when it is not.

use std::borrow::Cow;
use std::sync::LazyLock;

use memchr::memmem::Finder;

use crate::headers::CSeq;
use crate::syntax::{is_scheme, is_token, is_token_byte, is_wsp, parse_digits_u64};
use crate::{Contacts, DigestCredentials, Header, Headers, NameAddr, ParseError, Uri, Via};

/// Request method (RFC 3261 §7.1; methods are case-sensitive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method<'a> {
    /// REGISTER
    Register,
    /// INVITE
    Invite,
    /// ACK
    Ack,
    /// BYE
    Bye,
    /// CANCEL
    Cancel,
    /// OPTIONS
    Options,
    /// Any other token.
    Other(&'a str),
}

impl<'a> Method<'a> {
    /// The method token as it appears on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Register => "REGISTER",
            Self::Invite => "INVITE",
            Self::Ack => "ACK",
            Self::Bye => "BYE",
            Self::Cancel => "CANCEL",
            Self::Options => "OPTIONS",
            Self::Other(s) => s,
        }
    }

    /// Classify a method token (case-sensitive: `register` is an unknown
    /// method, and so is `RE%47IST%45R`, RFC 4475 §3.1.1.5).
    pub fn from_token(token: &'a str) -> Self {
        match token {
            "REGISTER" => Self::Register,
            "INVITE" => Self::Invite,
            "ACK" => Self::Ack,
            "BYE" => Self::Bye,
            "CANCEL" => Self::Cancel,
            "OPTIONS" => Self::Options,
            other => Self::Other(other),
        }
    }
}

/// A parsed SIP request borrowing from the receive buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    /// Method.
    pub method: Method<'a>,
    /// Request-URI text, as received.
    pub uri: &'a str,
    /// Header fields.
    pub headers: Headers<'a>,
    /// Message body (exactly Content-Length bytes when the header is present).
    pub body: &'a [u8],
}

/// A parsed SIP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response<'a> {
    /// Status code, 100..=699.
    pub status: u16,
    /// Reason phrase.
    pub reason: &'a str,
    /// Header fields.
    pub headers: Headers<'a>,
    /// Body.
    pub body: &'a [u8],
}

/// A SIP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    /// Request.
    Request(Request<'a>),
    /// Response.
    Response(Response<'a>),
}

impl<'a> Message<'a> {
    /// The header fields.
    pub fn headers(&self) -> &Headers<'a> {
        match self {
            Self::Request(r) => &r.headers,
            Self::Response(r) => &r.headers,
        }
    }

    /// The body.
    pub fn body(&self) -> &'a [u8] {
        match self {
            Self::Request(r) => r.body,
            Self::Response(r) => r.body,
        }
    }
}

/// Parse one complete message (a UDP datagram, or a frame cut by [`crate::frame`]).
///
/// CRLFs before the start line are skipped (RFC 3261 §7.5). Lines may end in
/// CRLF or, leniently, in a bare LF.
pub fn parse(buf: &[u8]) -> Result<Message<'_>, ParseError> {
    let start = buf
        .iter()
        .position(|&c| c != b'\r' && c != b'\n')
        .ok_or(ParseError::Incomplete)?;

    // Start line.
    let (end, next) = line_at(buf, start).ok_or(ParseError::Incomplete)?;
    let bad_start = ParseError::BadStartLine { offset: start };
    let line = &buf[start..end];
    if memchr::memchr2(0, b'\r', line).is_some() {
        return Err(bad_start);
    }
    let line = std::str::from_utf8(line).map_err(|_| bad_start)?;
    let kind = parse_start_line(line, start)?;

    // The header section: validated as a whole (UTF-8, NUL, bare CR), then
    // split into fields.
    let (fields_end, body_start) = find_blank_line(buf, end).ok_or(ParseError::Incomplete)?;
    let head_bytes = &buf[next.min(fields_end)..fields_end];
    let head = std::str::from_utf8(head_bytes).map_err(|e| ParseError::BadHeader {
        offset: next + e.valid_up_to(),
    })?;
    let any_nul = memchr::memchr(0, head_bytes).is_some();
    if let Some(cr) =
        memchr::memchr_iter(b'\r', head_bytes).find(|&i| head_bytes.get(i + 1) != Some(&b'\n'))
    {
        return Err(ParseError::BadHeader { offset: next + cr });
    }
    let (fields, content_length) = parse_fields(head, next, any_nul)?;

    let rest = &buf[body_start..];
    let body = match content_length {
        // RFC 3261 §18.3: octets beyond Content-Length in a datagram are discarded.
        Some(n) => rest.get(..n).ok_or(ParseError::BodyTruncated)?,
        None => rest,
    };
    let headers = Headers { fields };
    Ok(match kind {
        StartLine::Request { method, uri } => Message::Request(Request {
            method,
            uri,
            headers,
            body,
        }),
        StartLine::Response { status, reason } => Message::Response(Response {
            status,
            reason,
            headers,
            body,
        }),
    })
}

/// Salvage enough of a request that [`parse`] refused to answer it.
///
/// RFC 3261 §18.3 and §21.4.1 want a 400 for a malformed request "where a
/// reply is possible": that needs the start line and the Via, From, To,
/// Call-ID and CSeq fields, not the whole message. This keeps the well-formed
/// header lines of a request (a name that is a token, a UTF-8 value without
/// NUL or bare CR; folded continuation lines are dropped) and no body.
/// `None` for responses and for anything without a request line. The caller
/// still checks that the fields a reply copies are present and valid.
pub fn salvage(buf: &[u8]) -> Option<Request<'_>> {
    let start = buf.iter().position(|&c| c != b'\r' && c != b'\n')?;
    let (end, mut next) = line_at(buf, start)?;
    let line = std::str::from_utf8(&buf[start..end]).ok()?;
    let StartLine::Request { method, uri } = parse_start_line(line, start).ok()? else {
        return None;
    };
    let mut fields = Vec::with_capacity(16);
    while next < buf.len() {
        let Some((end, after)) = line_at(buf, next) else {
            break;
        };
        let raw = &buf[next..end];
        next = after;
        if raw.is_empty() {
            break;
        }
        if raw[0] == b' ' || raw[0] == b'\t' || memchr::memchr2(0, b'\r', raw).is_some() {
            continue;
        }
        let Ok(text) = std::str::from_utf8(raw) else {
            continue;
        };
        let Some((name, value)) = text.split_once(':') else {
            continue;
        };
        let name = name.trim_end();
        if !is_token(name) {
            continue;
        }
        fields.push(Header {
            name,
            value: Cow::Borrowed(value.trim()),
        });
    }
    Some(Request {
        method,
        uri,
        headers: Headers { fields },
        body: &[],
    })
}

/// Find the empty line that ends the header section, searching from `from`
/// (the end of the start line, before its terminator). Returns the end of the
/// last header line's terminator (where the empty line starts) and the start
/// of the body. Handles CRLF and bare-LF line ends.
fn find_blank_line(buf: &[u8], from: usize) -> Option<(usize, usize)> {
    // Built once: constructing a searcher per call costs more than the search.
    static CRLF: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\n\r\n"));
    static LF: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\n\n"));
    let hay = &buf[from..];
    let crlf = CRLF.find(hay);
    let lf_limit = crlf.map_or(hay.len(), |i| i + 2);
    let lf = LF.find(&hay[..lf_limit]);
    match (crlf, lf) {
        (_, Some(i)) => Some((from + i + 1, from + i + 2)),
        (Some(i), None) => Some((from + i + 1, from + i + 3)),
        (None, None) => None,
    }
}

/// Split the header lines (start line excluded, blank line excluded) into
/// fields, unfolding continuation lines. `base` is the offset of `head` in the
/// message, for error positions.
fn parse_fields(
    head: &str,
    base: usize,
    any_nul: bool,
) -> Result<(Vec<Header<'_>>, Option<usize>), ParseError> {
    let b = head.as_bytes();
    let mut fields = Vec::with_capacity((b.len() / 28).clamp(4, 40));
    let mut content_length: Option<usize> = None;
    let mut pos = 0;
    while pos < b.len() {
        let bad = ParseError::BadHeader { offset: base + pos };
        if is_wsp(b[pos]) {
            // A continuation line with no header field to continue.
            return Err(bad);
        }
        // field-name: a token, then optional WSP, then ':' (RFC 3261 §7.3.1).
        let name_end = pos + b[pos..].iter().take_while(|&&c| is_token_byte(c)).count();
        let colon = name_end + b[name_end..].iter().take_while(|&&c| is_wsp(c)).count();
        if name_end == pos || b.get(colon) != Some(&b':') {
            return Err(bad);
        }
        let name = &head[pos..name_end];
        // The field ends at a line end not followed by SP/HTAB (a fold).
        let mut scan = colon + 1;
        let mut folded = false;
        let (value_end, next) = loop {
            let (end, next) = line_at(b, scan).unwrap_or((b.len(), b.len()));
            if next < b.len() && is_wsp(b[next]) {
                folded = true;
                scan = next;
            } else {
                break (end, next);
            }
        };
        // Leading LWS may include a fold ("To :\r\n <sip:...>"); all ASCII.
        let lead = b[colon + 1..value_end]
            .iter()
            .take_while(|&&c| matches!(c, b' ' | b'\t' | b'\r' | b'\n'))
            .count();
        // Trailing LWS may end in a whitespace-only continuation line.
        let value = head[colon + 1 + lead..value_end].trim_end_matches([' ', '\t', '\r', '\n']);
        if any_nul
            && memchr::memchr(0, value.as_bytes()).is_some()
            && !nul_only_in_quoted_pairs(value)
        {
            return Err(bad);
        }
        let value = if folded && memchr::memchr(b'\n', value.as_bytes()).is_some() {
            Cow::Owned(unfold(value))
        } else {
            Cow::Borrowed(value)
        };
        if name.eq_ignore_ascii_case("Content-Length") || name.eq_ignore_ascii_case("l") {
            let n = parse_digits_u64(&value)
                .and_then(|n| usize::try_from(n).ok())
                .ok_or(ParseError::BadContentLength)?;
            // RFC 4475 §3.3.9: disagreeing values leave the framing unknown.
            if content_length.is_some_and(|prev| prev != n) {
                return Err(ParseError::BadContentLength);
            }
            content_length = Some(n);
        }
        fields.push(Header { name, value });
        pos = next;
    }
    Ok((fields, content_length))
}

enum StartLine<'a> {
    Request { method: Method<'a>, uri: &'a str },
    Response { status: u16, reason: &'a str },
}

/// Request-Line = Method SP Request-URI SP SIP-Version (RFC 3261 §7.1);
/// Status-Line = SIP-Version SP Status-Code SP Reason-Phrase (§7.2).
/// Exactly one SP between elements and none at the end (RFC 4475 §3.1.2.9,
/// §3.1.2.10 allow rejecting these).
fn parse_start_line(line: &str, offset: usize) -> Result<StartLine<'_>, ParseError> {
    let bad = ParseError::BadStartLine { offset };
    let (first, rest) = split_sp(line).ok_or(bad)?;
    if first
        .as_bytes()
        .get(..4)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/"))
    {
        check_version(first, bad)?;
        let b = rest.as_bytes();
        if b.len() < 3
            || !b[..3].iter().all(u8::is_ascii_digit)
            || b.get(3).is_some_and(|&c| c != b' ')
        {
            return Err(ParseError::BadStatusCode);
        }
        let status =
            u16::from(b[0] - b'0') * 100 + u16::from(b[1] - b'0') * 10 + u16::from(b[2] - b'0');
        if !(100..=699).contains(&status) {
            return Err(ParseError::BadStatusCode);
        }
        let reason = rest.get(4..).unwrap_or("");
        return Ok(StartLine::Response { status, reason });
    }
    if !is_token(first) {
        return Err(bad);
    }
    let (uri, version) = split_sp(rest).ok_or(bad)?;
    if uri.is_empty() {
        return Err(bad);
    }
    check_version(version, bad)?;
    // Only the scheme is checked here; Request::request_uri parses the rest.
    let scheme_ok = memchr::memchr(b':', uri.as_bytes())
        .is_some_and(|i| is_scheme(&uri[..i]) && i + 1 < uri.len());
    if !scheme_ok || uri.bytes().any(|c| c < b' ' || c == 0x7f) {
        return Err(ParseError::BadUri);
    }
    Ok(StartLine::Request {
        method: Method::from_token(first),
        uri,
    })
}

/// Split at the first SP.
#[inline]
fn split_sp(s: &str) -> Option<(&str, &str)> {
    let i = memchr::memchr(b' ', s.as_bytes())?;
    Some((&s[..i], &s[i + 1..]))
}

/// `SIP/2.0` (case-insensitive, RFC 3261 §7.1) is accepted; any other
/// well-formed `SIP/x.y` is [`ParseError::InvalidVersion`] (answer 505).
fn check_version(v: &str, bad: ParseError) -> Result<(), ParseError> {
    if v.eq_ignore_ascii_case("SIP/2.0") {
        return Ok(());
    }
    let well_formed = v.len() > 4
        && v.as_bytes()[..4].eq_ignore_ascii_case(b"SIP/")
        && v[4..]
            .split_once('.')
            .is_some_and(|(a, b)| parse_digits_u64(a).is_some() && parse_digits_u64(b).is_some());
    Err(if well_formed {
        ParseError::InvalidVersion
    } else {
        bad
    })
}

/// The line starting at `pos`: (end without the line terminator, start of
/// the next line). `None` when no LF follows.
#[inline]
pub(crate) fn line_at(buf: &[u8], pos: usize) -> Option<(usize, usize)> {
    let nl = memchr::memchr(b'\n', &buf[pos..])? + pos;
    let end = if nl > pos && buf[nl - 1] == b'\r' {
        nl - 1
    } else {
        nl
    };
    Some((end, nl + 1))
}

/// A NUL is legal only as the second octet of a quoted-pair inside a
/// quoted-string (RFC 3261 §25.1, RFC 4475 §3.1.1.2).
fn nul_only_in_quoted_pairs(value: &str) -> bool {
    let b = value.as_bytes();
    let mut in_quote = false;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => in_quote = !in_quote,
            b'\\' if in_quote => i += 1,
            0 => return false,
            _ => {}
        }
        i += 1;
    }
    true
}

/// Replace each fold (`*WSP CRLF 1*WSP`) with one SP (RFC 3261 §7.3.1).
/// A whitespace-only continuation line is LWS too and adds nothing.
fn unfold(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for piece in value.split('\n') {
        let piece = piece.trim_matches([' ', '\t', '\r']);
        if piece.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(piece);
    }
    out
}

impl<'a> Request<'a> {
    /// The Request-URI, parsed. Escaped headers (`?...`) are not allowed in a
    /// Request-URI (RFC 3261 §19.1.5 table; RFC 4475 §3.1.2.11).
    pub fn request_uri(&self) -> Result<Uri<'_>, ParseError> {
        let uri = Uri::parse(self.uri)?;
        if uri.headers.is_some() {
            return Err(ParseError::BadUri);
        }
        Ok(uri)
    }
    /// Call-ID.
    pub fn call_id(&self) -> Result<&str, ParseError> {
        self.headers.call_id()
    }
    /// CSeq.
    pub fn cseq(&self) -> Result<CSeq<'_>, ParseError> {
        self.headers.cseq()
    }
    /// From.
    pub fn from(&self) -> Result<NameAddr<'_>, ParseError> {
        self.headers.from()
    }
    /// To.
    pub fn to(&self) -> Result<NameAddr<'_>, ParseError> {
        self.headers.to()
    }
    /// The topmost Via.
    pub fn top_via(&self) -> Result<Via<'_>, ParseError> {
        self.headers.top_via()
    }
    /// Contacts from every Contact header field.
    pub fn contacts(&self) -> Result<Contacts<'_>, ParseError> {
        self.headers.contacts()
    }
    /// The Expires header as delta-seconds, if present (clamped to `u32::MAX`).
    pub fn expires(&self) -> Result<Option<u32>, ParseError> {
        self.headers.expires()
    }
    /// Max-Forwards, if present.
    pub fn max_forwards(&self) -> Result<Option<u8>, ParseError> {
        self.headers.max_forwards()
    }
    /// Every Path header value, split at top-level commas, in order (RFC 3327).
    pub fn path(&self) -> Result<Vec<&str>, ParseError> {
        self.headers.path()
    }
    /// User-Agent, if present.
    pub fn user_agent(&self) -> Option<&str> {
        self.headers.user_agent()
    }
    /// Digest credentials from the first `Authorization` header, if present.
    pub fn authorization(&self) -> Option<Result<DigestCredentials<'_>, ParseError>> {
        self.headers.authorization()
    }

    /// The checks every UAS makes before looking at a request (RFC 3261 §8.2,
    /// §8.1.1): the Request-URI parses; Call-ID, CSeq, From, To and a top Via
    /// are present, single and well formed; the CSeq method equals the request
    /// method; Max-Forwards, if present, is in range. Returns the first failure.
    /// Missing Max-Forwards and a From without tag are accepted for RFC 2543
    /// peers (RFC 4475 §3.4.1).
    pub fn validate(&self) -> Result<(), ParseError> {
        self.validated().map(|_| ())
    }

    /// [`Request::validate`], keeping what it parsed, so a UAS that goes on
    /// to use the Request-URI, From, To, Call-ID or CSeq does not parse
    /// them a second time.
    pub fn validated(&self) -> Result<Validated<'_>, ParseError> {
        let request_uri = self.request_uri().map_err(|_| ParseError::Malformed {
            what: "Request-URI",
            offset: 0,
        })?;
        let call_id = self.call_id()?;
        let cseq = self.cseq()?;
        let from = self.from()?;
        let to = self.to()?;
        self.top_via()?;
        self.max_forwards()?;
        if cseq.method != self.method.as_str() {
            return Err(ParseError::CSeqMethodMismatch);
        }
        Ok(Validated {
            request_uri,
            call_id,
            cseq,
            from,
            to,
        })
    }
}

/// The fields [`Request::validated`] parsed on the way.
#[derive(Debug, Clone)]
pub struct Validated<'r> {
    /// The Request-URI.
    pub request_uri: Uri<'r>,
    /// Call-ID.
    pub call_id: &'r str,
    /// CSeq.
    pub cseq: CSeq<'r>,
    /// From.
    pub from: NameAddr<'r>,
    /// To.
    pub to: NameAddr<'r>,
}

#[cfg(test)]
mod tests;
