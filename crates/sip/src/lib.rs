//! SIP message parsing and writing (RFC 3261 §7, §20, §25), sans-IO.
//!
//! CONTRACT (skeleton written by the integrator; the public signatures below
//! are used by `regmesh-registrar` and `regmesh`; bodies are being filled in).
//! No sockets, no clock, no tokio here.
#![warn(missing_docs)]

use std::borrow::Cow;

/// Why a message could not be parsed. Small, never allocates on the reject path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Placeholder variant; the parser defines the real set.
    #[error("malformed {what} at byte {offset}")]
    Malformed {
        /// What was being parsed ("start line", "Via", "Contact", ...).
        what: &'static str,
        /// Byte offset into the message, where known (0 otherwise).
        offset: usize,
    },
    /// A header that the operation needs is absent.
    #[error("missing {name} header")]
    MissingHeader {
        /// Canonical header name.
        name: &'static str,
    },
    /// The message needs more bytes (stream framing only).
    #[error("incomplete message")]
    Incomplete,
    /// The message is larger than the configured limit.
    #[error("message too large")]
    TooLarge,
}

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

impl Method<'_> {
    /// The method token as it appears on the wire.
    pub fn as_str(&self) -> &str {
        todo!()
    }
}

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

impl Headers<'_> {
    /// First value of the header `name` (case-insensitive; compact forms such
    /// as `m`/`Contact`, `v`/`Via`, `i`/`Call-ID` match each other).
    pub fn get(&self, name: &str) -> Option<&str> {
        let _ = name;
        todo!()
    }
    /// Every value of the header `name`, in order (each header field line once;
    /// comma-separated lists are split by the typed accessors, not here).
    pub fn get_all<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s str> + 's {
        let _ = name;
        std::iter::empty()
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

/// Parse one complete message (a UDP datagram, or a frame cut by [`frame`]).
pub fn parse(buf: &[u8]) -> Result<Message<'_>, ParseError> {
    let _ = buf;
    todo!()
}

impl Message<'_> {
    /// Serialize back to wire form (used by the round-trip property test).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let _ = out;
        todo!()
    }
}

/// A SIP or SIPS URI (RFC 3261 §19.1), borrowing from the text it was parsed from.
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
    /// Parse a URI.
    pub fn parse(text: &'a str) -> Result<Self, ParseError> {
        let _ = text;
        todo!()
    }
    /// Value of a URI parameter (`Some(None)` for a flag such as `;lr`).
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        let _ = name;
        todo!()
    }
    /// The address-of-record key: `user@host` with the user unescaped and the
    /// host lowercased; port, parameters and headers dropped (RFC 3261 §10.3
    /// step 5). `host` alone when there is no user part.
    pub fn aor(&self) -> String {
        todo!()
    }
}

/// `name-addr` / `addr-spec` with header parameters, as in From, To, Contact,
/// Path, Route (RFC 3261 §20.10, §25.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// Display name, without quotes, if any.
    pub display: Option<&'a str>,
    /// The URI text exactly as written between `<` `>` (or the bare addr-spec).
    pub uri_text: &'a str,
    /// The parsed URI.
    pub uri: Uri<'a>,
    /// Header parameters after the URI, in order (`tag`, `expires`, `q`, `+sip.instance`, ...).
    pub params: Vec<(&'a str, Option<&'a str>)>,
}

impl<'a> NameAddr<'a> {
    /// Parse one name-addr or addr-spec with parameters.
    pub fn parse(text: &'a str) -> Result<Self, ParseError> {
        let _ = text;
        todo!()
    }
    /// Header parameter value (case-insensitive name); `Some(None)` for a flag.
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        let _ = name;
        todo!()
    }
    /// The `tag` parameter.
    pub fn tag(&self) -> Option<&'a str> {
        todo!()
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

/// CSeq (RFC 3261 §20.16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CSeq<'a> {
    /// Sequence number (32-bit unsigned, RFC 3261 §8.1.1.5).
    pub seq: u32,
    /// Method token.
    pub method: &'a str,
}

/// One Via value (RFC 3261 §20.42).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via<'a> {
    /// Transport token (`UDP`, `TCP`, `TLS`, ...), as written.
    pub transport: &'a str,
    /// sent-by host.
    pub host: &'a str,
    /// sent-by port.
    pub port: Option<u16>,
    /// Parameters (`branch`, `rport`, `received`, ...).
    pub params: Vec<(&'a str, Option<&'a str>)>,
}

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

impl<'a> Request<'a> {
    /// The Request-URI, parsed.
    pub fn request_uri(&self) -> Result<Uri<'_>, ParseError> {
        todo!()
    }
    /// Call-ID.
    pub fn call_id(&self) -> Result<&str, ParseError> {
        todo!()
    }
    /// CSeq.
    pub fn cseq(&self) -> Result<CSeq<'_>, ParseError> {
        todo!()
    }
    /// From.
    pub fn from(&self) -> Result<NameAddr<'_>, ParseError> {
        todo!()
    }
    /// To.
    pub fn to(&self) -> Result<NameAddr<'_>, ParseError> {
        todo!()
    }
    /// The topmost Via.
    pub fn top_via(&self) -> Result<Via<'_>, ParseError> {
        todo!()
    }
    /// Contacts from every Contact header field.
    pub fn contacts(&self) -> Result<Contacts<'_>, ParseError> {
        todo!()
    }
    /// The Expires header as delta-seconds, if present.
    pub fn expires(&self) -> Result<Option<u32>, ParseError> {
        todo!()
    }
    /// Every Path header value, split at top-level commas, in order (RFC 3327).
    pub fn path(&self) -> Result<Vec<&str>, ParseError> {
        todo!()
    }
    /// User-Agent, if present.
    pub fn user_agent(&self) -> Option<&str> {
        todo!()
    }
    /// Digest credentials from the first `Authorization` header, if present.
    pub fn authorization(&self) -> Option<Result<DigestCredentials<'_>, ParseError>> {
        todo!()
    }
}

/// Where a response goes back to, and how the request arrived: needed to set
/// `received` and `rport` on the top Via (RFC 3261 §18.2.1, RFC 3581 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source {
    /// Transport the request arrived on.
    pub transport: Transport,
    /// Remote address.
    pub addr: std::net::SocketAddr,
}

/// Transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP
    Udp,
    /// TCP
    Tcp,
    /// TLS over TCP
    Tls,
}

/// Writes a response to a request: copies Via (all, with `received`/`rport`
/// set on the top one from `source`), From, To (adding `to_tag` when the To
/// has none), Call-ID and CSeq (RFC 3261 §8.2.6.2), then extra headers.
#[derive(Debug)]
pub struct ResponseBuilder {
    buf: Vec<u8>,
}

impl ResponseBuilder {
    /// Start a response to `req`.
    pub fn new(req: &Request<'_>, source: Option<Source>, status: u16, reason: &str, to_tag: &str) -> Self {
        let _ = (req, source, status, reason, to_tag);
        todo!()
    }
    /// Append one header field.
    pub fn header(&mut self, name: &str, value: &str) -> &mut Self {
        let _ = (name, value);
        todo!()
    }
    /// Finish with `Content-Length` and the body; `content_type` is written when the body is non-empty.
    pub fn finish(self, content_type: Option<&str>, body: &[u8]) -> Vec<u8> {
        let _ = (content_type, body, self.buf);
        todo!()
    }
}

/// Stream framing for TCP/TLS (RFC 3261 §18.3): what the start of `buf` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// `n` bytes of CRLF keep-alive (RFC 5626 §3.5.1) to skip.
    KeepAlive(usize),
    /// A complete message of `n` bytes (headers plus Content-Length body).
    Message(usize),
}

/// Find the next frame in a stream buffer. `Err(Incomplete)` means read more;
/// `Err(TooLarge)` when the message would exceed `max_len`; a missing
/// Content-Length on a stream is an error (RFC 3261 §18.3).
pub fn frame(buf: &[u8], max_len: usize) -> Result<Frame, ParseError> {
    let _ = (buf, max_len);
    todo!()
}
