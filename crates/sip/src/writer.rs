//! Writing messages: [`Message::write_to`] for round trips and
//! [`ResponseBuilder`] for replies (RFC 3261 §8.2.6, §18.2.1; RFC 3581 §4).
//!
//! Everything is written into one `Vec<u8>` reserved up front. Values handed
//! to the builder are sanitised: a CR or LF becomes a space, so a caller can
//! never inject a header line.

use std::io::Write as _;
use std::net::IpAddr;

use crate::syntax::split_top_level;
use crate::{Message, Request, Via};

impl Message<'_> {
    /// Serialize back to wire form (used by the round-trip property test).
    /// Header values are written as parsed (unfolded); the body verbatim.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let headers = self.headers();
        let size: usize = headers
            .fields
            .iter()
            .map(|h| h.name.len() + h.value.len() + 4)
            .sum::<usize>()
            + self.body().len()
            + 64;
        out.reserve(size);
        match self {
            Self::Request(r) => {
                out.extend_from_slice(r.method.as_str().as_bytes());
                out.push(b' ');
                out.extend_from_slice(r.uri.as_bytes());
                out.extend_from_slice(b" SIP/2.0\r\n");
            }
            Self::Response(r) => {
                out.extend_from_slice(b"SIP/2.0 ");
                push_status(out, r.status);
                out.push(b' ');
                out.extend_from_slice(r.reason.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
        for h in &headers.fields {
            push_header(out, h.name, &h.value);
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(self.body());
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

impl Transport {
    /// The Via transport token (RFC 3261 §20.42).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Udp => "UDP",
            Self::Tcp => "TCP",
            Self::Tls => "TLS",
        }
    }
}

/// Writes a response to a request: copies Via (all, with `received`/`rport`
/// set on the top one from `source`), From, To (adding `to_tag` when the To
/// has none), Call-ID and CSeq (RFC 3261 §8.2.6.2), then extra headers.
#[derive(Debug)]
pub struct ResponseBuilder {
    buf: Vec<u8>,
}

impl ResponseBuilder {
    /// Start a response to `req`. An empty `to_tag` adds no tag (for 100
    /// Trying, RFC 3261 §8.2.6.1). Headers that are missing from the request
    /// are skipped; a request that failed [`Request::validate`] still gets a
    /// best-effort reply.
    pub fn new(
        req: &Request<'_>,
        source: Option<Source>,
        status: u16,
        reason: &str,
        to_tag: &str,
    ) -> Self {
        let copied: usize = req
            .headers
            .fields
            .iter()
            .map(|h| h.name.len() + h.value.len() + 4)
            .sum();
        let mut buf = Vec::with_capacity(copied + reason.len() + to_tag.len() + 256);
        buf.extend_from_slice(b"SIP/2.0 ");
        push_status(&mut buf, status.clamp(100, 699));
        buf.push(b' ');
        push_sanitized(&mut buf, reason);
        buf.extend_from_slice(b"\r\n");

        let mut first_via = true;
        for value in req.headers.get_all("Via") {
            if first_via {
                first_via = false;
                write_top_via(&mut buf, value, source);
            } else {
                push_header(&mut buf, "Via", value);
            }
        }
        if let Some(from) = req.headers.get("From") {
            push_header(&mut buf, "From", from);
        }
        if let Some(to) = req.headers.get("To") {
            buf.extend_from_slice(b"To: ");
            buf.extend_from_slice(to.as_bytes());
            let has_tag = req.headers.to().is_ok_and(|t| t.tag().is_some());
            if !has_tag && !to_tag.is_empty() {
                buf.extend_from_slice(b";tag=");
                push_sanitized(&mut buf, to_tag);
            }
            buf.extend_from_slice(b"\r\n");
        }
        if let Some(call_id) = req.headers.get("Call-ID") {
            push_header(&mut buf, "Call-ID", call_id);
        }
        if let Some(cseq) = req.headers.get("CSeq") {
            push_header(&mut buf, "CSeq", cseq);
        }
        Self { buf }
    }

    /// Start a response from the copied header fields of an earlier response
    /// to the same request: the bytes of that response after its status line
    /// up to [`ResponseBuilder::written`] as it was right after
    /// [`ResponseBuilder::new`]. This gives the request another status without
    /// the request at hand (RFC 3261 §8.2.6.2 is satisfied by the copy: Via,
    /// From, To with its tag, Call-ID and CSeq as the first answer had them),
    /// e.g. a 503 when a commit fails after the 200 was prepared.
    pub fn from_copied(status: u16, reason: &str, copied: &[u8]) -> Self {
        let mut buf = Vec::with_capacity(copied.len() + reason.len() + 96);
        buf.extend_from_slice(b"SIP/2.0 ");
        push_status(&mut buf, status.clamp(100, 699));
        buf.push(b' ');
        push_sanitized(&mut buf, reason);
        buf.extend_from_slice(b"\r\n");
        buf.extend_from_slice(copied);
        Self { buf }
    }

    /// Bytes written so far. Right after [`ResponseBuilder::new`] this ends
    /// the copied header fields (see [`ResponseBuilder::from_copied`]).
    pub fn written(&self) -> usize {
        self.buf.len()
    }

    /// Append one header field.
    pub fn header(&mut self, name: &str, value: &str) -> &mut Self {
        push_sanitized(&mut self.buf, name);
        self.buf.extend_from_slice(b": ");
        push_sanitized(&mut self.buf, value);
        self.buf.extend_from_slice(b"\r\n");
        self
    }

    /// Finish with `Content-Length` and the body; `content_type` is written when the body is non-empty.
    pub fn finish(mut self, content_type: Option<&str>, body: &[u8]) -> Vec<u8> {
        self.buf.reserve(body.len() + 64);
        if let (false, Some(ct)) = (body.is_empty(), content_type) {
            self.header("Content-Type", ct);
        }
        self.buf.extend_from_slice(b"Content-Length: ");
        // Writing into a Vec cannot fail.
        let _ = write!(self.buf, "{}", body.len());
        self.buf.extend_from_slice(b"\r\n\r\n");
        self.buf.extend_from_slice(body);
        self.buf
    }
}

/// Write the first Via field, with `received` and `rport` filled in on its
/// first value. RFC 3261 §18.2.1: add `received` when the sent-by host is not
/// the packet's source address. RFC 3581 §4: when `rport` is present without
/// a value, fill in the source port and add `received` even if it matches.
/// A Via that does not parse is copied unchanged.
fn write_top_via(buf: &mut Vec<u8>, value: &str, source: Option<Source>) {
    let parsed = split_top_level(value).and_then(|mut parts| {
        let first = parts.next()?;
        let via = Via::parse(first).ok()?;
        // The rest of the field after the first value, if any (", ...").
        let rest_at = first.as_ptr() as usize - value.as_ptr() as usize + first.len();
        Some((via, &value[rest_at..]))
    });
    let (Some(src), Some((via, rest))) = (source, parsed) else {
        push_header(buf, "Via", value);
        return;
    };
    let ip = src.addr.ip().to_canonical();
    let rport_empty = via.param("rport") == Some(None);
    let sent_by_ip = via
        .host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .ok()
        .map(|h| h.to_canonical());
    let add_received = rport_empty || sent_by_ip != Some(ip);

    buf.extend_from_slice(b"Via: SIP/2.0/");
    buf.extend_from_slice(via.transport.as_bytes());
    buf.push(b' ');
    buf.extend_from_slice(via.host.as_bytes());
    if let Some(p) = via.port {
        let _ = write!(buf, ":{p}");
    }
    for &(name, v) in &via.params {
        if add_received && name.eq_ignore_ascii_case("received") {
            continue; // replaced below
        }
        buf.push(b';');
        buf.extend_from_slice(name.as_bytes());
        if name.eq_ignore_ascii_case("rport") && v.is_none() {
            let _ = write!(buf, "={}", src.addr.port());
        } else if let Some(v) = v {
            buf.push(b'=');
            buf.extend_from_slice(v.as_bytes());
        }
    }
    if add_received {
        // RFC 5118 §4.5: received carries the bare IPv6 address.
        let _ = write!(buf, ";received={ip}");
    }
    buf.extend_from_slice(rest.as_bytes());
    buf.extend_from_slice(b"\r\n");
}

/// `name: value\r\n`; parsed values never hold CR or LF.
#[inline]
fn push_header(buf: &mut Vec<u8>, name: &str, value: &str) {
    buf.extend_from_slice(name.as_bytes());
    buf.extend_from_slice(b": ");
    buf.extend_from_slice(value.as_bytes());
    buf.extend_from_slice(b"\r\n");
}

/// Append `s`, turning CR and LF into SP so no header line can be injected.
#[inline]
fn push_sanitized(buf: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    if memchr::memchr2(b'\r', b'\n', b).is_none() {
        buf.extend_from_slice(b);
    } else {
        buf.extend(
            b.iter()
                .map(|&c| if c == b'\r' || c == b'\n' { b' ' } else { c }),
        );
    }
}

#[inline]
fn push_status(buf: &mut Vec<u8>, status: u16) {
    let s = status.min(999);
    buf.extend_from_slice(&[
        b'0' + (s / 100) as u8,
        b'0' + (s / 10 % 10) as u8,
        b'0' + (s % 10) as u8,
    ]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Message, parse};
    use std::net::SocketAddr;

    const REG: &[u8] = b"REGISTER sip:registrar.biloxi.com SIP/2.0\r\n\
Via: SIP/2.0/UDP bobspc.biloxi.com:5060;branch=z9hG4bKnashds7;rport\r\n\
Via: SIP/2.0/UDP proxy.biloxi.com;branch=z9hG4bK1\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.com>\r\n\
From: Bob <sip:bob@biloxi.com>;tag=456248\r\n\
Call-ID: 843817637684230@998sdasdh09\r\n\
CSeq: 1826 REGISTER\r\n\
Contact: <sip:bob@192.0.2.4>\r\n\
Expires: 7200\r\n\
Content-Length: 0\r\n\r\n";

    fn req(bytes: &[u8]) -> Request<'_> {
        match parse(bytes) {
            Ok(Message::Request(r)) => r,
            other => panic!("not a request: {other:?}"),
        }
    }

    fn src(addr: &str) -> Option<Source> {
        Some(Source {
            transport: Transport::Udp,
            addr: addr.parse::<SocketAddr>().expect("addr"),
        })
    }

    fn response(bytes: &[u8]) -> crate::Response<'_> {
        match parse(bytes) {
            Ok(Message::Response(r)) => r,
            other => panic!("not a response: {other:?}"),
        }
    }

    #[test]
    fn another_status_from_the_copied_fields_is_byte_identical() {
        let r = req(REG);
        let mut ok = ResponseBuilder::new(&r, src("192.0.2.4:5060"), 200, "OK", "t1");
        let head = ok.written();
        ok.header("Contact", "<sip:bob@192.0.2.4>;expires=7200");
        let ok = ok.finish(None, b"");
        let status_end = ok
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("status line")
            + 2;
        let mut later =
            ResponseBuilder::from_copied(503, "Service Unavailable", &ok[status_end..head]);
        later.header("Retry-After", "30");
        let mut direct =
            ResponseBuilder::new(&r, src("192.0.2.4:5060"), 503, "Service Unavailable", "t1");
        direct.header("Retry-After", "30");
        assert_eq!(later.finish(None, b""), direct.finish(None, b""));
    }

    #[test]
    fn received_and_rport_rfc3581() {
        let r = req(REG);
        let mut b = ResponseBuilder::new(&r, src("192.0.2.4:5066"), 200, "OK", "37GkEhwl6");
        b.header("Date", "Sat, 13 Nov 2010 23:29:00 GMT");
        let out = b.finish(None, b"");
        let resp = response(&out);
        assert_eq!((resp.status, resp.reason), (200, "OK"));
        let vias: Vec<_> = resp.headers.get_all("Via").collect();
        assert_eq!(
            vias,
            [
                "SIP/2.0/UDP bobspc.biloxi.com:5060;branch=z9hG4bKnashds7;rport=5066;received=192.0.2.4",
                "SIP/2.0/UDP proxy.biloxi.com;branch=z9hG4bK1"
            ]
        );
        assert_eq!(resp.headers.to().expect("to").tag(), Some("37GkEhwl6"));
        assert_eq!(resp.headers.from().expect("from").tag(), Some("456248"));
        assert_eq!(resp.headers.call_id(), Ok("843817637684230@998sdasdh09"));
        assert_eq!(resp.headers.cseq().map(|c| c.seq), Ok(1826));
        assert_eq!(
            resp.headers.get("Date"),
            Some("Sat, 13 Nov 2010 23:29:00 GMT")
        );
        assert_eq!(resp.headers.content_length(), Ok(Some(0)));
        assert!(out.ends_with(b"Content-Length: 0\r\n\r\n"));
    }

    #[test]
    fn rport_forces_received_even_when_equal() {
        let msg = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.4:5060;rport;branch=z9hG4bKx\r\nTo: <sip:a@b>\r\nFrom: <sip:c@d>;tag=1\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n";
        let r = req(msg);
        let out = ResponseBuilder::new(&r, src("192.0.2.4:5060"), 200, "OK", "t").finish(None, b"");
        let resp = response(&out);
        assert_eq!(
            resp.headers.get("Via"),
            Some("SIP/2.0/UDP 192.0.2.4:5060;rport=5060;branch=z9hG4bKx;received=192.0.2.4")
        );
    }

    #[test]
    fn no_received_when_sent_by_is_source() {
        let msg = b"OPTIONS sip:a@b SIP/2.0\r\nv: SIP/2.0/TCP [2001:db8::9:1]:6050;branch=z9hG4bKx\r\nt: <sip:a@b>;tag=abc\r\nf: <sip:c@d>;tag=1\r\ni: x\r\nCSeq: 1 OPTIONS\r\nl: 0\r\n\r\n";
        let r = req(msg);
        let out = ResponseBuilder::new(&r, src("[2001:db8::9:1]:6050"), 200, "OK", "new")
            .finish(None, b"");
        let resp = response(&out);
        assert_eq!(
            resp.headers.get("Via"),
            Some("SIP/2.0/TCP [2001:db8::9:1]:6050;branch=z9hG4bKx")
        );
        // The existing To tag is kept, not doubled.
        assert_eq!(resp.headers.get("To"), Some("<sip:a@b>;tag=abc"));
    }

    #[test]
    fn received_replaces_stale_value_and_keeps_other_values() {
        let msg = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP host.example.com;received=10.0.0.1;branch=z9hG4bKx, SIP/2.0/UDP other;branch=z9hG4bKy\r\nTo: <sip:a@b>\r\nFrom: <sip:c@d>;tag=1\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n";
        let r = req(msg);
        let out = ResponseBuilder::new(&r, src("[::ffff:192.0.2.9]:5060"), 404, "Not Found", "t")
            .finish(None, b"");
        let resp = response(&out);
        assert_eq!(
            resp.headers.get("Via"),
            Some(
                "SIP/2.0/UDP host.example.com;branch=z9hG4bKx;received=192.0.2.9, SIP/2.0/UDP other;branch=z9hG4bKy"
            )
        );
    }

    #[test]
    fn without_source_vias_are_copied() {
        let r = req(REG);
        let out = ResponseBuilder::new(&r, None, 100, "Trying", "").finish(None, b"");
        let resp = response(&out);
        assert_eq!(
            resp.headers.get("Via"),
            Some("SIP/2.0/UDP bobspc.biloxi.com:5060;branch=z9hG4bKnashds7;rport")
        );
        assert_eq!(resp.headers.to().expect("to").tag(), None);
    }

    #[test]
    fn body_and_injection() {
        let r = req(REG);
        let mut b = ResponseBuilder::new(&r, None, 200, "OK\r\nEvil: 1", "t");
        b.header("X-Test", "a\r\nInjected: yes");
        let out = b.finish(Some("text/plain"), b"hello");
        let resp = response(&out);
        assert_eq!(resp.reason, "OK  Evil: 1");
        assert_eq!(resp.headers.get("X-Test"), Some("a  Injected: yes"));
        assert_eq!(resp.headers.get("Injected"), None);
        assert_eq!(resp.headers.get("Content-Type"), Some("text/plain"));
        assert_eq!(resp.body, b"hello");
        // content type is only written with a body
        let out = ResponseBuilder::new(&r, None, 200, "OK", "t").finish(Some("text/plain"), b"");
        assert_eq!(response(&out).headers.get("Content-Type"), None);
    }

    #[test]
    fn write_to_round_trips() {
        let m = parse(REG).expect("valid");
        let mut out = Vec::new();
        m.write_to(&mut out);
        assert_eq!(out, REG);
        let resp = b"SIP/2.0 100 \r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\n\r\n";
        let m = parse(resp).expect("valid");
        let mut out = Vec::new();
        m.write_to(&mut out);
        assert_eq!(out, resp);
    }
}
