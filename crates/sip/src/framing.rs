//! Stream framing for TCP and TLS (RFC 3261 §18.3).
//!
//! A stream carries messages back to back; each one ends after its header
//! section plus Content-Length body octets. Content-Length is mandatory on a
//! stream: without it the end of the message is unknowable, so a missing or
//! bad value is an error after which the connection should be closed.
//! CRLFs between messages are keep-alives (RFC 5626 §3.5.1) or the
//! tolerated leading CRLFs of RFC 3261 §7.5.

use crate::ParseError;
use crate::message::line_at;
use crate::syntax::{is_wsp, parse_digits_u64};

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
///
/// Only the framing is checked here; hand the frame to [`crate::parse`].
pub fn frame(buf: &[u8], max_len: usize) -> Result<Frame, ParseError> {
    let crlf = buf
        .iter()
        .take_while(|&&c| c == b'\r' || c == b'\n')
        .count();
    if crlf > 0 {
        return Ok(Frame::KeepAlive(crlf));
    }
    if buf.is_empty() {
        return Err(ParseError::Incomplete);
    }
    let incomplete = if buf.len() > max_len {
        ParseError::TooLarge
    } else {
        ParseError::Incomplete
    };

    // Skip the start line, then scan header lines for Content-Length.
    let Some((_, mut pos)) = line_at(buf, 0) else {
        return Err(incomplete);
    };
    let mut content_length: Option<usize> = None;
    let head_len = loop {
        let Some((end, next)) = line_at(buf, pos) else {
            return Err(incomplete);
        };
        if end == pos {
            break next;
        }
        let line = &buf[pos..end];
        if let Some(colon) = memchr::memchr(b':', line) {
            let mut name = &line[..colon];
            while let [rest @ .., last] = name {
                if !is_wsp(*last) {
                    break;
                }
                name = rest;
            }
            if name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l") {
                // Folding inside Content-Length is not worth supporting.
                let value = std::str::from_utf8(&line[colon + 1..])
                    .map_err(|_| ParseError::BadContentLength)?
                    .trim_matches([' ', '\t']);
                let n = parse_digits_u64(value)
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or(ParseError::BadContentLength)?;
                if content_length.is_some_and(|prev| prev != n) {
                    return Err(ParseError::BadContentLength);
                }
                content_length = Some(n);
            }
        }
        pos = next;
    };
    let n = content_length.ok_or(ParseError::MissingHeader {
        name: "Content-Length",
    })?;
    let total = head_len.checked_add(n).ok_or(ParseError::TooLarge)?;
    if total > max_len {
        return Err(ParseError::TooLarge);
    }
    if buf.len() < total {
        return Err(ParseError::Incomplete);
    }
    Ok(Frame::Message(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nl: 5\r\n\r\nhello";

    #[test]
    fn keepalives() {
        assert_eq!(frame(b"\r\n\r\n", 100), Ok(Frame::KeepAlive(4)));
        assert_eq!(frame(b"\r\nREG", 100), Ok(Frame::KeepAlive(2)));
        assert_eq!(frame(b"", 100), Err(ParseError::Incomplete));
    }

    #[test]
    fn whole_message_then_next() {
        let mut stream = MSG.to_vec();
        stream.extend_from_slice(b"\r\n\r\n");
        stream.extend_from_slice(MSG);
        let Ok(Frame::Message(n)) = frame(&stream, 4096) else {
            panic!("expected a message");
        };
        assert_eq!(n, MSG.len());
        assert!(crate::parse(&stream[..n]).is_ok());
        assert_eq!(frame(&stream[n..], 4096), Ok(Frame::KeepAlive(4)));
        assert_eq!(frame(&stream[n + 4..], 4096), Ok(Frame::Message(MSG.len())));
    }

    #[test]
    fn incomplete_at_every_cut() {
        for cut in 1..MSG.len() {
            assert_eq!(
                frame(&MSG[..cut], 4096),
                Err(ParseError::Incomplete),
                "cut at {cut}"
            );
        }
        assert_eq!(frame(MSG, 4096), Ok(Frame::Message(MSG.len())));
    }

    #[test]
    fn limits_and_errors() {
        assert_eq!(frame(MSG, 20), Err(ParseError::TooLarge));
        assert_eq!(frame(&MSG[..30], 20), Err(ParseError::TooLarge));
        assert_eq!(frame(MSG, MSG.len() - 1), Err(ParseError::TooLarge));
        let no_cl = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h\r\n\r\n";
        assert_eq!(
            frame(no_cl, 4096),
            Err(ParseError::MissingHeader {
                name: "Content-Length"
            })
        );
        let neg = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: -1\r\n\r\n";
        assert_eq!(frame(neg, 4096), Err(ParseError::BadContentLength));
        let two = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 1\r\nContent-Length  : 2\r\n\r\nab";
        assert_eq!(frame(two, 4096), Err(ParseError::BadContentLength));
        let huge = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 18446744073709551615\r\n\r\n";
        assert_eq!(frame(huge, 4096), Err(ParseError::TooLarge));
    }
}
