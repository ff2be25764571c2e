//! SIP message parsing and writing (RFC 3261 §7, §20, §25), sans-IO.
//!
//! What it does: [`parse`] a datagram or a stream frame into a [`Message`]
//! that borrows from the receive buffer; typed accessors ([`Request::cseq`],
//! [`Request::contacts`], [`Request::top_via`], ...) interpret header values
//! on demand; [`frame`] cuts a TCP/TLS byte stream into messages;
//! [`ResponseBuilder`] writes replies with `received`/`rport` filled in.
//!
//! What it does not do: no sockets, no clock, no tokio, no transactions, no
//! SDP or multipart bodies (bodies are opaque bytes), no Date parsing.
//!
//! # Parsing model
//!
//! One pass, zero copy: the only allocations are the header `Vec` (sized
//! from the datagram length) and an owned `String` for a header value that
//! was folded over several lines. Header names are matched
//! case-insensitively with compact forms as aliases (RFC 3261 §7.3.3).
//! Invalid messages are rejected at two levels, mirroring RFC 4475:
//! [`parse`] rejects what makes a message unframeable or unreadable (start
//! line, header lines, Content-Length), and [`Request::validate`] plus the
//! typed accessors reject bad header values, which a registrar answers
//! with `400` using [`ParseError::reason`]. `tests/rfc4475.rs` holds the
//! verdict for every RFC 4475 torture message.
//!
//! # Why our own parser
//!
//! The issue asked for the parsing layer to be chosen by measurement. The
//! candidates were run by `bench/sip-parsers` (a separate Cargo project
//! outside the workspace) on the RFC 4475 fixtures and on two typical
//! messages:
//!
//! BENCH_TABLE
//!
//! Beyond speed, the existing crates own their messages (`String`/`Bytes`
//! per header) where a registrar only needs to borrow, and they accept
//! messages that a registrar must reject (or reject ones it must accept),
//! which would have to be patched around anyway.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod auth;
mod error;
mod framing;
mod headers;
mod message;
mod name_addr;
mod syntax;
mod uri;
mod via;
mod writer;

pub use auth::DigestCredentials;
pub use error::ParseError;
pub use framing::{Frame, frame};
pub use headers::{CSeq, Header, Headers};
pub use message::{Message, Method, Request, Response, parse};
pub use name_addr::{Contacts, NameAddr, parse_delta_seconds, parse_q};
pub use syntax::unquote;
pub use uri::{Uri, unescape};
pub use via::Via;
pub use writer::{ResponseBuilder, Source, Transport};
