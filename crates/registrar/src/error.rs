//! The crate's one error type: every way a request can fail, each mapped to
//! its SIP reply in one exhaustive `match` ([`RegisterError::status`] and
//! [`RegisterError::reason`]), so a new variant does not compile until its
//! reply is chosen (STYLE.md §2; the fix for Kamailio's `codes[rerrno]`).
//!
//! These are request errors: they only produce replies. A storage failure
//! that breaks the durability promise is not one of them; the store reports
//! it through `Location::healthy` and the commit, and the transport answers
//! the 503 of [`crate::Deferred::failed`].

use regmesh_sip::ParseError;

/// Why a request was refused. Each variant is one real cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// A header the registrar needs is missing or malformed (RFC 3261
    /// §8.2, §10.3); the reason phrase names the header, as the sip crate
    /// words it.
    #[error("malformed request: {source}")]
    Malformed {
        /// What the parser reported.
        #[source]
        source: ParseError,
    },
    /// The CSeq method is not the request method (RFC 3261 §8.1.1.5).
    #[error("CSeq method does not match the request method")]
    CSeqMethodMismatch,
    /// A URI scheme the registrar cannot serve: To, Request-URI (RFC 3261
    /// §8.2.2.1, §10.3 step 5: the AoR must be a SIP or SIPS URI).
    #[error("unsupported URI scheme in {what}")]
    UnsupportedScheme {
        /// Which URI.
        what: &'static str,
    },
    /// `Require` lists an extension this registrar does not implement
    /// (RFC 3261 §8.2.2.3, §10.3 step 2).
    #[error("unsupported extension(s) required: {unsupported}")]
    BadExtension {
        /// The option tags to list in `Unsupported`, comma-separated.
        unsupported: String,
    },
    /// `Contact: *` with an Expires other than 0 (RFC 3261 §10.3 step 6).
    #[error("Contact: * requires Expires: 0")]
    StarWithoutZeroExpires,
    /// A `q` parameter outside `qvalue` (RFC 3261 §20.10, §25.1).
    #[error("invalid q value")]
    InvalidQ,
    /// A `reg-id` that is not a positive 31-bit integer (RFC 5626 §4.2).
    #[error("invalid reg-id")]
    InvalidRegId,
    /// A contact asked for an expiry shorter than `min_expires` (RFC 3261
    /// §10.3 step 7); the reply carries `Min-Expires`.
    #[error("expiry below the minimum of {min_expires} s")]
    IntervalTooBrief {
        /// The registrar's minimum, sent in `Min-Expires`.
        min_expires: u32,
    },
    /// Same Call-ID as a stored binding but a lower CSeq (RFC 3261 §10.3
    /// step 7: "the update MUST be aborted and the request fails").
    ///
    /// Answered `400 Bad Request - CSeq out of order`, not `500` with
    /// `Retry-After`: the request is older than what the registrar already
    /// applied, so retrying it can never become right (a retry with a higher
    /// CSeq would apply a stale intent over a newer one), and nothing is
    /// wrong with the server, so a 5xx would page operators and make
    /// transaction users fail over to another node for no reason. In
    /// practice only a delayed UDP retransmission of an earlier REGISTER
    /// meets this, and its transaction is already finished at the UA.
    #[error("CSeq {received} is lower than the stored {stored} for the same Call-ID")]
    OutOfOrder {
        /// CSeq of the binding already stored.
        stored: u32,
        /// CSeq of the request.
        received: u32,
    },
    /// More bindings than `max_contacts` (rejected, or too many new
    /// contacts in one request to make room by replacing old ones).
    #[error("more than {max} contacts for the AoR")]
    TooManyContacts {
        /// The limit.
        max: u32,
    },
    /// Auth is on and the request carries no credentials (RFC 3261 §22.1).
    #[error("no credentials")]
    MissingCredentials,
    /// The Authorization header does not parse, or lacks a field the
    /// chosen qop needs (RFC 7616 §3.4).
    #[error("malformed credentials")]
    MalformedCredentials,
    /// A digest response without `qop` (RFC 2069 style) to a challenge that
    /// offered `qop="auth"`: RFC 2617 §3.2.2 requires the directive then,
    /// and without it there is no nonce count, so a captured header could
    /// be replayed for the nonce's whole lifetime.
    #[error("digest response without qop")]
    MissingQop,
    /// `algorithm` or `qop` that this server did not offer (RFC 7616 §3.4).
    #[error("unsupported digest algorithm or qop")]
    UnsupportedDigest,
    /// The credentials are for another realm than the one challenged.
    #[error("credentials for another realm")]
    WrongRealm,
    /// The nonce was not issued with this cluster's secret, or is damaged.
    #[error("nonce not issued by this cluster")]
    InvalidNonce,
    /// A correct response over a nonce older than `nonce_ttl`: the client
    /// only needs to retry with the new nonce (`stale=true`, RFC 7616 §3.3).
    #[error("stale nonce")]
    StaleNonce,
    /// A nonce-count not above the last accepted one for this nonce
    /// (RFC 7616 §3.4: replay protection).
    #[error("nonce-count replayed")]
    NonceReplay,
    /// No subscriber, or the response does not match its HA1. One variant
    /// for both so a reply never tells which users exist.
    #[error("wrong credentials")]
    WrongCredentials,
    /// The digest `uri` is not the Request-URI (RFC 2617 §3.2.2.5: 400).
    #[error("digest uri does not match the Request-URI")]
    DigestUriMismatch,
    /// Authenticated, but as another user or domain than the AoR's
    /// (RFC 3261 §10.3 step 4).
    #[error("authenticated user does not match the AoR")]
    UserMismatch,
    /// The location store cannot make the change durable now: a commit
    /// failed (no 200 OK may be promised until an operator has looked) or
    /// its queue is full. Answered 503 with Retry-After (RFC 3261 §21.5.4):
    /// the UA may try another node of the cluster, which is what both cases
    /// want.
    #[error("location store unavailable")]
    StoreUnavailable,
}

impl RegisterError {
    /// The SIP status code of the reply.
    pub fn status(&self) -> u16 {
        match self {
            Self::Malformed { source } => source.status(),
            Self::CSeqMethodMismatch
            | Self::StarWithoutZeroExpires
            | Self::InvalidQ
            | Self::InvalidRegId
            | Self::OutOfOrder { .. }
            | Self::MalformedCredentials
            | Self::MissingQop
            | Self::DigestUriMismatch => 400,
            Self::MissingCredentials
            | Self::UnsupportedDigest
            | Self::WrongRealm
            | Self::InvalidNonce
            | Self::StaleNonce
            | Self::NonceReplay
            | Self::WrongCredentials => 401,
            Self::TooManyContacts { .. } | Self::UserMismatch => 403,
            Self::UnsupportedScheme { .. } => 416,
            Self::BadExtension { .. } => 420,
            Self::IntervalTooBrief { .. } => 423,
            Self::StoreUnavailable => 503,
        }
    }

    /// The reason phrase of the reply: the standard phrase, extended with
    /// the cause where that helps whoever reads a trace.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed { source } => source.reason(),
            Self::CSeqMethodMismatch => "Bad Request - CSeq Method Mismatch",
            Self::StarWithoutZeroExpires => "Bad Request - Contact * Requires Expires 0",
            Self::InvalidQ => "Bad Request - Malformed q Value",
            Self::InvalidRegId => "Bad Request - Malformed reg-id",
            Self::OutOfOrder { .. } => "Bad Request - CSeq out of order",
            Self::MalformedCredentials => "Bad Request - Malformed Authorization",
            Self::MissingQop => "Bad Request - Digest Response Without qop",
            Self::DigestUriMismatch => "Bad Request - Digest uri Mismatch",
            Self::MissingCredentials
            | Self::UnsupportedDigest
            | Self::WrongRealm
            | Self::InvalidNonce
            | Self::StaleNonce
            | Self::NonceReplay
            | Self::WrongCredentials => "Unauthorized",
            Self::TooManyContacts { .. } => "Too Many Registered Contacts",
            Self::UserMismatch => "Forbidden - User Does Not Match AoR",
            Self::UnsupportedScheme { .. } => "Unsupported URI Scheme",
            Self::BadExtension { .. } => "Bad Extension",
            Self::IntervalTooBrief { .. } => "Interval Too Brief",
            Self::StoreUnavailable => "Service Unavailable",
        }
    }

    /// A 401 that should carry fresh challenges.
    pub fn is_challenge(&self) -> bool {
        self.status() == 401
    }

    /// The challenge should say `stale=true` (RFC 7616 §3.3).
    pub fn is_stale(&self) -> bool {
        matches!(self, Self::StaleNonce)
    }

    /// Headers the reply needs beyond the copied ones (RFC 3261 §20.23
    /// `Min-Expires` in 423, §20.40 `Unsupported` in 420, §20.33
    /// `Retry-After` in a 503 the client may retry).
    pub fn extra_headers(&self) -> Vec<(&'static str, String)> {
        match self {
            Self::IntervalTooBrief { min_expires } => {
                vec![("Min-Expires", min_expires.to_string())]
            }
            Self::BadExtension { unsupported } => vec![("Unsupported", unsupported.clone())],
            Self::StoreUnavailable => vec![("Retry-After", RETRY_AFTER_SECS.to_string())],
            _ => Vec::new(),
        }
    }

    /// True for errors that mean the request itself is broken (counted as
    /// bad messages), as opposed to a policy or auth refusal.
    pub fn is_malformed(&self) -> bool {
        matches!(self, Self::Malformed { .. } | Self::CSeqMethodMismatch)
    }
}

impl From<ParseError> for RegisterError {
    fn from(source: ParseError) -> Self {
        match source {
            ParseError::CSeqMethodMismatch => Self::CSeqMethodMismatch,
            source => Self::Malformed { source },
        }
    }
}

/// Seconds a client is told to wait after a 503 caused by the store.
pub(crate) const RETRY_AFTER_SECS: u32 = 30;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_reasons() {
        // RFC 3261 §10.3 step 7: the chosen code for an out-of-order request.
        let e = RegisterError::OutOfOrder {
            stored: 5,
            received: 4,
        };
        assert_eq!(e.status(), 400);
        assert_eq!(e.reason(), "Bad Request - CSeq out of order");
        let e = RegisterError::IntervalTooBrief { min_expires: 60 };
        assert_eq!(e.status(), 423);
        assert_eq!(e.extra_headers(), vec![("Min-Expires", "60".to_owned())]);
        assert_eq!(RegisterError::TooManyContacts { max: 1 }.status(), 403);
        assert_eq!(
            RegisterError::TooManyContacts { max: 1 }.reason(),
            "Too Many Registered Contacts"
        );
        let e = RegisterError::from(ParseError::MissingHeader { name: "Call-ID" });
        assert_eq!(e.status(), 400);
        assert_eq!(e.reason(), "Bad Request - Missing Call-ID");
        assert!(e.is_malformed());
        assert!(RegisterError::StaleNonce.is_challenge());
        assert!(RegisterError::StaleNonce.is_stale());
        assert!(!RegisterError::WrongCredentials.is_stale());
        assert!(!RegisterError::UserMismatch.is_challenge());
        assert_eq!(
            RegisterError::from(ParseError::CSeqMethodMismatch),
            RegisterError::CSeqMethodMismatch
        );
        assert_eq!(
            RegisterError::StoreUnavailable.extra_headers()[0].0,
            "Retry-After"
        );
    }
}
