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
//! messages. Measured 2026-11-26 on the project machine (2 shared cores, load about
//! 1, rustc 1.95), with
//! `cd bench/sip-parsers && CARGO_TARGET_DIR=/tmp/sip-parsers-target cargo run --release --bin sip-parsers-bench`
//! (median of 7 runs after warm-up; see `bench/sip-parsers/README.md`):
//!
//! | parser | REGISTER ns | INVITE ns | RFC 4475 §3.1.1 valid accepted | §3.1.2 invalid rejected by parse | §3.2–3.4 accepted | panics |
//! |---|---:|---:|---:|---:|---:|---:|
//! | regmesh-sip | 329 | 306 | 13/13 | 9/19 | 16/17 | 0 |
//! | rsip 0.4 | 1909 | 1537 | 7/13 | 8/19 | 16/17 | 0 |
//! | rsipstack 0.7.14 (`rsipstack::sip::parser`) | 936 | 863 | 11/13 | 5/19 | 17/17 | 0 |
//! | ezk-sip-types 0.6.5 | 2977 | 2649 | 13/13 | 6/19 | 15/17 | 0 |
//!
//! rsipstack 0.7 no longer uses `rsip`: it has its own parser module, so
//! both were measured. ezk-sip-types has no one-call parser; the bench
//! drives its public line parser the way ezk-sip-core does. All three build.
//! rsip rejects six §3.1.1 messages (`wsinv`, `intmeth`, `esc01`, ...),
//! rsipstack two. regmesh-sip's one §3.3 rejection is `mcl01` (conflicting
//! Content-Length values), on purpose: its framing is unknowable. The
//! §3.1.2 messages that regmesh-sip parses are caught by
//! [`Request::validate`] and the accessors, except `baddate` (we never read
//! Date); `tests/rfc4475.rs` checks all 49 verdicts. Parse plus everything a
//! registrar reads from a REGISTER (validate, AoR key, contacts, expires)
//! costs about 1.4 µs.
//!
//! Decision: our own parser, 3–9 times faster than the candidates and the
//! only one that both accepts every §3.1.1 message and lets a registrar
//! reject the rest.
//!
//! Beyond speed, the candidates own their messages (a `String` or `Bytes`
//! per header) where a registrar only needs to borrow from the datagram.
//!
//! # Choices worth knowing
//!
//! * Non-SIP URI schemes parse opaquely (see [`Uri`]); the password of
//!   `user:password@` is dropped.
//! * Display names and quoted parameter values are returned as written
//!   (quoted-pairs still escaped, parameter quotes kept; see [`unquote`]).
//! * Expires and `;expires=` above 2**32-1 clamp to `u32::MAX` (RFC 3261
//!   §20.19); CSeq above 2**32-1 is an error (RFC 4475 §3.1.2.4).
//! * A NUL byte is accepted only as a quoted-pair in a quoted string (RFC
//!   4475 §3.1.1.2); header values must be UTF-8; a bare CR is an error.
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
pub use message::{Message, Method, Request, Response, Validated, parse, salvage};
pub use name_addr::{Contacts, NameAddr, parse_delta_seconds, parse_q};
pub use syntax::unquote;
pub use uri::{Uri, unescape};
pub use via::Via;
pub use writer::{ResponseBuilder, Source, Transport};
