//! Property tests: parse → write → parse is stable on generated REGISTERs
//! (with folding, compact forms, odd case, contact lists with parameters),
//! and no input makes `parse`, `frame` or the accessors panic.

use proptest::prelude::*;
use regmesh_sip::{Contacts, Frame, Message, frame, parse};

fn token() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9][a-zA-Z0-9.!%*_+`'~-]{0,11}"
}

/// A token that is also valid inside a URI (no `` ` `` or bare `%`).
fn uri_token() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9][a-zA-Z0-9._!~*'-]{0,11}"
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,8}(\\.[a-z][a-z0-9-]{0,8}){0,2}",
        (0u8..=255, 0u8..=255, 0u8..=255, 1u8..=254)
            .prop_map(|(a, b, c, d)| format!("{a}.{b}.{c}.{d}")),
        Just("[2001:db8::1]".to_string()),
    ]
}

fn port() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), (1u16..).prop_map(|p| format!(":{p}"))]
}

/// Random upper/lower case for a header name.
fn cased(name: &'static str) -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<bool>(), name.len()).prop_map(move |flips| {
        name.chars()
            .zip(flips)
            .map(|(c, up)| {
                if up {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect()
    })
}

/// A header name: long form in random case, or the compact form.
fn name(long: &'static str, compact: &'static str) -> impl Strategy<Value = String> {
    prop_oneof![
        cased(long),
        Just(compact.to_string()),
        Just(long.to_string())
    ]
}

fn display() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-zA-Z]{1,8}( [a-zA-Z]{1,8}){0,2}".prop_map(|d| format!("{d} ")),
        // quoted, with quoted-pairs and commas
        "[a-zA-Z ,;<>]{0,10}".prop_map(|d| format!("\"{}\\\"x\" ", d)),
    ]
}

fn uri() -> impl Strategy<Value = String> {
    (
        prop_oneof![Just("sip"), Just("sips")],
        proptest::option::of("[a-z0-9._-]{1,10}|[a-z]{1,4}%40[a-z]{1,4}"),
        host(),
        port(),
        proptest::collection::vec((uri_token(), proptest::option::of(uri_token())), 0..3),
    )
        .prop_map(|(scheme, user, host, port, params)| {
            let mut s = format!("{scheme}:");
            if let Some(u) = user {
                s.push_str(&u);
                s.push('@');
            }
            s.push_str(&host);
            s.push_str(&port);
            for (n, v) in params {
                s.push(';');
                s.push_str(&n);
                if let Some(v) = v {
                    s.push('=');
                    s.push_str(&v);
                }
            }
            s
        })
}

fn contact() -> impl Strategy<Value = String> {
    (
        display(),
        uri(),
        proptest::option::of(0u32..100_000),
        proptest::option::of(0u16..=1000),
        any::<bool>(),
        proptest::collection::vec(token(), 0..2),
    )
        .prop_map(|(display, uri, expires, q, instance, flags)| {
            let mut s = format!("{display}<{uri}>");
            if let Some(e) = expires {
                s.push_str(&format!(";expires={e}"));
            }
            if let Some(q) = q {
                s.push_str(&format!(";q={}.{:03}", q / 1000, q % 1000));
            }
            if instance {
                s.push_str(";+sip.instance=\"<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>\"");
            }
            for f in flags {
                s.push_str(" ; ");
                s.push_str(&f);
            }
            s
        })
}

/// Replace some single spaces in a value with a fold (CRLF + 1..3 WSP).
fn fold(value: String, seeds: Vec<u8>) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    let mut k = 0;
    for c in value.chars() {
        if c == ' ' && seeds.get(k).is_some_and(|s| s % 3 == 0) {
            out.push_str(["\r\n ", "\r\n\t", "\r\n   "][usize::from(seeds[k] % 3)]);
        } else {
            out.push(c);
        }
        if c == ' ' {
            k += 1;
        }
    }
    out
}

fn register() -> impl Strategy<Value = Vec<u8>> {
    (
        (host(), host(), port(), token(), any::<bool>()),
        (name("Via", "v"), name("From", "f"), name("To", "t"), name("Call-ID", "i")),
        (name("Contact", "m"), name("Content-Length", "l"), cased("CSeq")),
        (display(), uri(), token(), "[a-zA-Z0-9.!%*_+`'~@-]{1,20}", any::<u32>()),
        proptest::collection::vec(proptest::collection::vec(contact(), 1..3), 0..3),
        proptest::option::of(any::<u32>()),
        proptest::collection::vec(("X-[A-Za-z]{1,8}", "[ -~]{0,30}"), 0..3),
        proptest::collection::vec(any::<u8>(), 0..16),
        proptest::collection::vec(any::<u8>(), 0..40),
        "[ \t]{0,2}",
    )
        .prop_map(
            |(
                (req_host, via_host, via_port, branch, rport),
                (via_n, from_n, to_n, cid_n),
                (contact_n, cl_n, cseq_n),
                (disp, aor, tag, call_id, seq),
                contacts,
                expires,
                extensions,
                folds,
                body,
                colon_ws,
            )| {
                let mut lines = vec![format!("REGISTER sip:{req_host} SIP/2.0")];
                let rport = if rport { ";rport" } else { "" };
                lines.push(format!(
                    "{via_n}{colon_ws}: SIP/2.0/UDP {via_host}{via_port};branch=z9hG4bK{branch}{rport}"
                ));
                lines.push(format!("{from_n}: {disp}<{aor}>;tag={tag}"));
                lines.push(format!("{to_n}:{}", fold(format!(" {disp}<{aor}>"), folds.clone())));
                lines.push(format!("{cid_n}: {call_id}"));
                lines.push(format!("{cseq_n}: {seq} REGISTER"));
                for group in &contacts {
                    lines.push(format!("{contact_n}: {}", fold(group.join(", "), folds.clone())));
                }
                if let Some(e) = expires {
                    lines.push(format!("Expires: {e}"));
                }
                for (n, v) in extensions {
                    lines.push(format!("{n}: {}", fold(v, folds.clone())));
                }
                lines.push(format!("{cl_n}: {}", body.len()));
                let mut msg = lines.join("\r\n").into_bytes();
                msg.extend_from_slice(b"\r\n\r\n");
                msg.extend_from_slice(&body);
                msg
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn register_round_trips(msg in register()) {
        let first = parse(&msg).map_err(|e| TestCaseError::fail(format!("{e}: {}", String::from_utf8_lossy(&msg))))?;
        let Message::Request(req) = &first else {
            return Err(TestCaseError::fail("not a request"));
        };
        prop_assert_eq!(req.validate(), Ok(()));
        let contacts = req.contacts().map_err(|e| TestCaseError::fail(format!("{e}: {}", String::from_utf8_lossy(&msg))))?;
        let mut out = Vec::new();
        first.write_to(&mut out);
        let second = parse(&out).map_err(|e| TestCaseError::fail(format!("{e}")))?;
        prop_assert_eq!(&first, &second);
        let Message::Request(req2) = &second else {
            return Err(TestCaseError::fail("not a request"));
        };
        prop_assert_eq!(Ok(contacts), req2.contacts());
        // Writing is a fixed point after one round.
        let mut again = Vec::new();
        second.write_to(&mut again);
        prop_assert_eq!(out, again);
        // The same bytes frame as one message on a stream.
        prop_assert_eq!(frame(&msg, 1 << 20), Ok(Frame::Message(msg.len())));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        exercise(&bytes);
    }

    #[test]
    fn mutated_registers_never_panic(
        msg in register(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = msg;
        for (i, b) in edits {
            let at = i.index(bytes.len());
            bytes[at] = b;
        }
        exercise(&bytes);
        exercise(&bytes[..cut.index(bytes.len() + 1)]);
    }

    #[test]
    fn textual_noise_never_panics(s in "[ -~\r\n\t\"<>;,:@%\\\\]{0,300}") {
        exercise(s.as_bytes());
        let with_line = format!("REGISTER sip:a SIP/2.0\r\nContact: {s}\r\nVia: {s}\r\nTo: {s}\r\nAuthorization: Digest {s}\r\n\r\n");
        exercise(with_line.as_bytes());
    }
}

proptest! {
    #[test]
    fn unicode_noise_never_panics(s in any::<String>(), t in "\\PC{0,40}") {
        exercise(s.as_bytes());
        for line in [format!("{t} sip:a SIP/2.0\r\n\r\n"), format!("SIP/2.0 200 {t}\r\n{t}: {s}\r\n\r\n"),
            format!("REGISTER {t} SIP/2.0\r\nContact: {t}<sip:{t}@{t}>;{t}={s}\r\nVia: SIP/2.0/UDP {t};{t}\r\nTo: \"{t}\" <sip:a@b>\r\n\r\n")] {
            exercise(line.as_bytes());
        }
    }
}

/// Run everything that takes untrusted input; only panics fail.
fn exercise(bytes: &[u8]) {
    let _ = frame(bytes, 1 << 16);
    let Ok(m) = parse(bytes) else { return };
    let h = m.headers();
    let _ = (
        h.call_id(),
        h.cseq(),
        h.from(),
        h.to(),
        h.top_via(),
        h.vias(),
    );
    let _ = (h.expires(), h.max_forwards(), h.path(), h.authorization());
    if let Ok(Contacts::List(list)) = h.contacts() {
        for c in list {
            let _ = (c.q(), c.expires(), c.uri.aor());
        }
    }
    if let Message::Request(r) = &m {
        let _ = (r.request_uri(), r.validate());
        let src = regmesh_sip::Source {
            transport: regmesh_sip::Transport::Udp,
            addr: "192.0.2.1:5060".parse().expect("addr"),
        };
        let out =
            regmesh_sip::ResponseBuilder::new(r, Some(src), 400, "Bad", "t").finish(None, b"");
        assert!(parse(&out).is_ok(), "our own response must parse");
    }
    let mut out = Vec::new();
    m.write_to(&mut out);
}
