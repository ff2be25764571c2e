//! The crate's one error type.
//!
//! Malformed packets are normal traffic, so a [`ParseError`] is `Copy`, a few
//! words large and never allocates. [`ParseError::status`] and
//! [`ParseError::reason`] give the reply a registrar sends when it can answer
//! at all (responses that fail to parse are simply dropped).

/// Why a message (or a header value) could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A header value is syntactically wrong (found by a typed accessor).
    #[error("malformed {what} at byte {offset}")]
    Malformed {
        /// What was being parsed ("Via", "Contact", "CSeq", ...).
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
    /// The message needs more bytes (stream framing), or a datagram ends
    /// before the empty line that closes the header section.
    #[error("incomplete message")]
    Incomplete,
    /// The message is larger than the configured limit.
    #[error("message too large")]
    TooLarge,
    /// The Request-Line or Status-Line is malformed (RFC 3261 §7.1, §7.2:
    /// single SP separators, no trailing whitespace).
    #[error("malformed start line at byte {offset}")]
    BadStartLine {
        /// Byte offset of the start line.
        offset: usize,
    },
    /// A well-formed SIP-Version other than `SIP/2.0` (answer 505).
    #[error("unsupported SIP version")]
    InvalidVersion,
    /// A Status-Code that is not three digits in 100..=699.
    #[error("bad status code")]
    BadStatusCode,
    /// A header line is malformed: no colon, a name that is not a token, a NUL
    /// or bare CR, or invalid UTF-8.
    #[error("malformed header line at byte {offset}")]
    BadHeader {
        /// Byte offset of the offending line.
        offset: usize,
    },
    /// A URI is malformed (RFC 3261 §19.1, §25.1).
    #[error("malformed URI")]
    BadUri,
    /// Content-Length is not `1*DIGIT`, overflows, or several Content-Length
    /// fields disagree (RFC 4475 §3.1.2.3, §3.3.9).
    #[error("bad Content-Length")]
    BadContentLength,
    /// The datagram holds fewer body bytes than Content-Length announces
    /// (RFC 3261 §18.3, RFC 4475 §3.1.2.2).
    #[error("body shorter than Content-Length")]
    BodyTruncated,
    /// A header that must appear once appears several times with different
    /// values (RFC 4475 §3.3.8).
    #[error("conflicting {name} headers")]
    DuplicateHeader {
        /// Canonical header name.
        name: &'static str,
    },
    /// The CSeq method differs from the request method (RFC 3261 §8.1.1.5,
    /// RFC 4475 §3.1.2.17).
    #[error("CSeq method does not match the request method")]
    CSeqMethodMismatch,
    /// An Authorization header with a scheme other than Digest (RFC 4475 §3.3.7).
    #[error("unsupported authorization scheme")]
    UnsupportedAuthScheme,
    /// A `q` value outside `qvalue` (RFC 3261 §25.1).
    #[error("bad q value")]
    BadQValue,
}

impl ParseError {
    /// Status code for a reply to a request that failed this way.
    pub fn status(&self) -> u16 {
        match self {
            Self::InvalidVersion => 505,
            Self::TooLarge => 513,
            Self::Malformed { .. }
            | Self::MissingHeader { .. }
            | Self::Incomplete
            | Self::BadStartLine { .. }
            | Self::BadStatusCode
            | Self::BadHeader { .. }
            | Self::BadUri
            | Self::BadContentLength
            | Self::BodyTruncated
            | Self::DuplicateHeader { .. }
            | Self::CSeqMethodMismatch
            | Self::UnsupportedAuthScheme
            | Self::BadQValue => 400,
        }
    }

    /// A short human phrase for the reply's Reason-Phrase, such as
    /// `Bad Request - Malformed Via`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed { what, .. } => malformed_reason(what),
            Self::MissingHeader { name } => missing_reason(name),
            Self::DuplicateHeader { name } => duplicate_reason(name),
            Self::Incomplete => "Bad Request - Incomplete Message",
            Self::TooLarge => "Message Too Large",
            Self::BadStartLine { .. } => "Bad Request - Malformed Start Line",
            Self::InvalidVersion => "Version Not Supported",
            Self::BadStatusCode => "Bad Request - Bad Status Code",
            Self::BadHeader { .. } => "Bad Request - Malformed Header Line",
            Self::BadUri => "Bad Request - Malformed URI",
            Self::BadContentLength => "Bad Request - Bad Content-Length",
            Self::BodyTruncated => "Bad Request - Body Shorter Than Content-Length",
            Self::CSeqMethodMismatch => "Bad Request - CSeq Method Mismatch",
            Self::UnsupportedAuthScheme => "Bad Request - Unsupported Authorization Scheme",
            Self::BadQValue => "Bad Request - Malformed q Value",
        }
    }
}

fn malformed_reason(what: &str) -> &'static str {
    match what {
        "Via" => "Bad Request - Malformed Via",
        "From" => "Bad Request - Malformed From",
        "To" => "Bad Request - Malformed To",
        "Call-ID" => "Bad Request - Malformed Call-ID",
        "CSeq" => "Bad Request - Malformed CSeq",
        "Contact" => "Bad Request - Malformed Contact",
        "Expires" => "Bad Request - Malformed Expires",
        "Max-Forwards" => "Bad Request - Malformed Max-Forwards",
        "Path" => "Bad Request - Malformed Path",
        "Authorization" => "Bad Request - Malformed Authorization",
        "Request-URI" => "Bad Request - Malformed Request-URI",
        _ => "Bad Request - Malformed Header",
    }
}

fn missing_reason(name: &str) -> &'static str {
    match name {
        "Via" => "Bad Request - Missing Via",
        "From" => "Bad Request - Missing From",
        "To" => "Bad Request - Missing To",
        "Call-ID" => "Bad Request - Missing Call-ID",
        "CSeq" => "Bad Request - Missing CSeq",
        "Content-Length" => "Bad Request - Missing Content-Length",
        _ => "Bad Request - Missing Header",
    }
}

fn duplicate_reason(name: &str) -> &'static str {
    match name {
        "From" => "Bad Request - Multiple From",
        "To" => "Bad Request - Multiple To",
        "Call-ID" => "Bad Request - Multiple Call-ID",
        "CSeq" => "Bad Request - Multiple CSeq",
        "Expires" => "Bad Request - Multiple Expires",
        "Max-Forwards" => "Bad Request - Multiple Max-Forwards",
        _ => "Bad Request - Multiple Header Values",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_and_copy() {
        assert!(size_of::<ParseError>() <= 32);
    }

    #[test]
    fn reasons() {
        let e = ParseError::Malformed {
            what: "Via",
            offset: 0,
        };
        assert_eq!(e.reason(), "Bad Request - Malformed Via");
        assert_eq!(e.status(), 400);
        assert_eq!(ParseError::InvalidVersion.status(), 505);
        assert_eq!(
            ParseError::MissingHeader { name: "Call-ID" }.reason(),
            "Bad Request - Missing Call-ID"
        );
        assert_eq!(
            ParseError::Malformed {
                what: "Nope",
                offset: 3
            }
            .reason(),
            "Bad Request - Malformed Header"
        );
    }
}
