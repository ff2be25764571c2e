use super::*;
use crate::{Contacts, Message, parse};

const REGISTER: &[u8] = b"REGISTER sip:registrar.biloxi.com SIP/2.0\r\n\
Via: SIP/2.0/UDP bobspc.biloxi.com:5060;branch=z9hG4bKnashds7\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.com>\r\n\
From: Bob <sip:bob@biloxi.com>;tag=456248\r\n\
Call-ID: 843817637684230@998sdasdh09\r\n\
CSeq: 1826 REGISTER\r\n\
Contact: <sip:bob@192.0.2.4>;expires=60, \"Bob Mobile\" <sip:bob@198.51.100.7;transport=tcp>;q=0.5\r\n\
m: sip:bob@203.0.113.9;q=1\r\n\
Expires: 7200\r\n\
Path: <sip:edge.biloxi.com;lr>\r\n\
User-Agent: test/1.0\r\n\
Authorization: Digest username=\"bob\", realm=\"biloxi.com\", nonce=\"abc\", uri=\"sip:registrar.biloxi.com\", response=\"0123\"\r\n\
Content-Length: 0\r\n\r\n";

fn request(bytes: &[u8]) -> Request<'_> {
    match parse(bytes) {
        Ok(Message::Request(r)) => r,
        other => panic!("not a request: {other:?}"),
    }
}

#[test]
fn typical_register_accessors() {
    let r = request(REGISTER);
    assert_eq!(r.method, Method::Register);
    assert_eq!(r.method.as_str(), "REGISTER");
    assert_eq!(r.uri, "sip:registrar.biloxi.com");
    assert_eq!(r.request_uri().map(|u| u.host), Ok("registrar.biloxi.com"));
    assert_eq!(r.call_id(), Ok("843817637684230@998sdasdh09"));
    assert_eq!(
        r.cseq(),
        Ok(CSeq {
            seq: 1826,
            method: "REGISTER"
        })
    );
    assert_eq!(r.from().expect("from").tag(), Some("456248"));
    let to = r.to().expect("to");
    assert_eq!(to.display, Some("Bob"));
    assert_eq!(to.uri.aor(), "bob@biloxi.com");
    let via = r.top_via().expect("via");
    assert_eq!(
        (via.transport, via.host, via.port),
        ("UDP", "bobspc.biloxi.com", Some(5060))
    );
    assert_eq!(via.branch(), Some("z9hG4bKnashds7"));
    let Ok(Contacts::List(contacts)) = r.contacts() else {
        panic!("expected contacts");
    };
    assert_eq!(contacts.len(), 3);
    assert_eq!(contacts[0].expires(), Some(Ok(60)));
    assert_eq!(contacts[1].display, Some("Bob Mobile"));
    assert_eq!(contacts[1].uri.param("transport"), Some(Some("tcp")));
    assert_eq!(contacts[1].q(), Some(Ok(500)));
    assert_eq!(contacts[2].q(), Some(Ok(1000)));
    assert_eq!(r.expires(), Ok(Some(7200)));
    assert_eq!(r.max_forwards(), Ok(Some(70)));
    assert_eq!(r.path(), Ok(vec!["<sip:edge.biloxi.com;lr>"]));
    assert_eq!(r.user_agent(), Some("test/1.0"));
    let auth = r.authorization().expect("present").expect("valid");
    assert_eq!(auth.username.as_deref(), Some("bob"));
    assert_eq!(auth.response.as_deref(), Some("0123"));
    assert_eq!(r.validate(), Ok(()));
    assert!(r.body.is_empty());
    // Values are borrowed from the buffer.
    assert!(
        r.headers
            .fields
            .iter()
            .all(|h| matches!(h.value, Cow::Borrowed(_)))
    );
}

#[test]
fn missing_optional_headers() {
    let r = request(b"REGISTER sip:a.example SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n\r\n");
    assert_eq!(r.contacts(), Ok(Contacts::None));
    assert_eq!(r.expires(), Ok(None));
    assert_eq!(r.path(), Ok(vec![]));
    assert_eq!(r.user_agent(), None);
    assert!(r.authorization().is_none());
    assert_eq!(
        r.call_id(),
        Err(ParseError::MissingHeader { name: "Call-ID" })
    );
    assert_eq!(
        r.validate(),
        Err(ParseError::MissingHeader { name: "Call-ID" })
    );
}

#[test]
fn star_contact() {
    let r = request(b"REGISTER sip:a.example SIP/2.0\r\nContact: *\r\nExpires: 0\r\n\r\n");
    assert_eq!(r.contacts(), Ok(Contacts::Star));
    let r = request(b"REGISTER sip:a.example SIP/2.0\r\nContact: *\r\nContact: <sip:x@y>\r\n\r\n");
    assert!(r.contacts().is_err());
}

#[test]
fn folding_is_unfolded_into_owned_values() {
    let msg = b"OPTIONS sip:a@b SIP/2.0\r\nSubject: one\r\n  two \r\n\tthree\r\nTo :\r\n <sip:a@b>\r\n\r\n";
    let r = request(msg);
    assert_eq!(r.headers.get("s"), Some("one two three"));
    assert!(matches!(r.headers.fields[0].value, Cow::Owned(_)));
    // A value that only starts on the next line stays borrowed.
    assert_eq!(r.headers.fields[1].name, "To");
    assert!(matches!(
        r.headers.fields[1].value,
        Cow::Borrowed("<sip:a@b>")
    ));
}

#[test]
fn datagram_content_length() {
    let msg = b"OPTIONS sip:a@b SIP/2.0\r\nl: 3\r\n\r\nabcdef";
    assert_eq!(parse(msg).map(|m| m.body()), Ok(&b"abc"[..]));
    let msg = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 7\r\n\r\nabcdef";
    assert_eq!(parse(msg), Err(ParseError::BodyTruncated));
    let msg = b"OPTIONS sip:a@b SIP/2.0\r\n\r\nabcdef";
    assert_eq!(parse(msg).map(|m| m.body()), Ok(&b"abcdef"[..]));
    let msg = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: five\r\n\r\n";
    assert_eq!(parse(msg), Err(ParseError::BadContentLength));
    let msg = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 2\r\nl: 2\r\n\r\nab";
    assert!(parse(msg).is_ok());
}

#[test]
fn header_line_errors() {
    for (msg, what) in [
        (
            &b"OPTIONS sip:a@b SIP/2.0\r\nNoColon\r\n\r\n"[..],
            "no colon",
        ),
        (
            b"OPTIONS sip:a@b SIP/2.0\r\nBad Name: x\r\n\r\n",
            "space in name",
        ),
        (b"OPTIONS sip:a@b SIP/2.0\r\n: x\r\n\r\n", "empty name"),
        (
            b"OPTIONS sip:a@b SIP/2.0\r\n continuation: x\r\n\r\n",
            "leading fold",
        ),
        (b"OPTIONS sip:a@b SIP/2.0\r\nX: a\0b\r\n\r\n", "NUL"),
        (b"OPTIONS sip:a@b SIP/2.0\r\nX: a\rb\r\n\r\n", "bare CR"),
        (b"OPTIONS sip:a@b SIP/2.0\r\nX: \xff\r\n\r\n", "bad UTF-8"),
    ] {
        assert!(
            matches!(parse(msg), Err(ParseError::BadHeader { .. })),
            "{what}: {:?}",
            parse(msg)
        );
    }
    // A NUL as a quoted-pair is legal (RFC 4475 §3.1.1.2).
    assert!(parse(b"OPTIONS sip:a@b SIP/2.0\r\nTo: \"x\\\0\" <sip:a@b>\r\n\r\n").is_ok());
    assert!(parse(b"OPTIONS sip:a@b SIP/2.0\r\nTo: x\\\0 <sip:a@b>\r\n\r\n").is_err());
    // No empty line after the headers.
    assert_eq!(
        parse(b"OPTIONS sip:a@b SIP/2.0\r\nX: y\r\n"),
        Err(ParseError::Incomplete)
    );
    assert_eq!(parse(b"\r\n\r\n"), Err(ParseError::Incomplete));
}

#[test]
fn start_lines() {
    assert!(matches!(
        parse(b"\r\n\r\nOPTIONS sip:a@b SIP/2.0\r\n\r\n"),
        Ok(Message::Request(_))
    ));
    assert!(matches!(
        parse(b"OPTIONS sip:a@b sip/2.0\n\n"),
        Ok(Message::Request(_))
    ));
    assert_eq!(
        parse(b"OPTIONS sip:a@b SIP/3.0\r\n\r\n"),
        Err(ParseError::InvalidVersion)
    );
    assert_eq!(
        parse(b"OPTIONS <sip:a@b> SIP/2.0\r\n\r\n"),
        Err(ParseError::BadUri)
    );
    for bad in [
        &b"OPTIONS  sip:a@b SIP/2.0\r\n\r\n"[..],
        b"OPTIONS sip:a@b  SIP/2.0\r\n\r\n",
        b"OPTIONS sip:a@b SIP/2.0 \r\n\r\n",
        b"OPTIONS sip:a@b\r\n\r\n",
        b"OPT IONS\r\n\r\n",
        b"OPT(ONS sip:a@b SIP/2.0\r\n\r\n",
        b"SIP/2.0\r\n\r\n",
    ] {
        assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
    }
    let Ok(Message::Response(r)) = parse(b"SIP/2.0 180 Ringing soon\r\n\r\n") else {
        panic!("response");
    };
    assert_eq!((r.status, r.reason), (180, "Ringing soon"));
    let Ok(Message::Response(r)) = parse(b"SIP/2.0 200\r\n\r\n") else {
        panic!("response");
    };
    assert_eq!((r.status, r.reason), (200, ""));
    for bad in [
        &b"SIP/2.0 099 x\r\n\r\n"[..],
        b"SIP/2.0 700 x\r\n\r\n",
        b"SIP/2.0 20 x\r\n\r\n",
        b"SIP/2.0 2000 x\r\n\r\n",
    ] {
        assert_eq!(parse(bad), Err(ParseError::BadStatusCode));
    }
    assert_eq!(
        parse(b"SIP/2.1 200 OK\r\n\r\n"),
        Err(ParseError::InvalidVersion)
    );
}

#[test]
fn methods() {
    for (tok, m) in [
        ("REGISTER", Method::Register),
        ("INVITE", Method::Invite),
        ("ACK", Method::Ack),
        ("BYE", Method::Bye),
        ("CANCEL", Method::Cancel),
        ("OPTIONS", Method::Options),
        ("register", Method::Other("register")),
        ("RE%47IST%45R", Method::Other("RE%47IST%45R")),
    ] {
        assert_eq!(Method::from_token(tok), m);
        assert_eq!(m.as_str(), tok);
    }
}

#[test]
fn validated_keeps_what_it_parsed() {
    let r = request(REGISTER);
    let v = r.validated().expect("valid");
    assert_eq!(v.request_uri, r.request_uri().expect("uri"));
    assert_eq!(v.call_id, r.call_id().expect("call-id"));
    assert_eq!(v.cseq, r.cseq().expect("cseq"));
    assert_eq!(v.from, r.from().expect("from"));
    assert_eq!(v.to, r.to().expect("to"));
}

#[test]
fn validate_catches_semantic_errors() {
    let base = "REGISTER sip:a.example SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:a@a.example>\r\nFrom: <sip:a@a.example>;tag=1\r\nCall-ID: c\r\n";
    let ok = format!("{base}CSeq: 1 REGISTER\r\n\r\n");
    assert_eq!(request(ok.as_bytes()).validate(), Ok(()));
    let mismatch = format!("{base}CSeq: 1 INVITE\r\n\r\n");
    assert_eq!(
        request(mismatch.as_bytes()).validate(),
        Err(ParseError::CSeqMethodMismatch)
    );
    let big = format!("{base}CSeq: 4294967296 REGISTER\r\n\r\n");
    assert!(matches!(
        request(big.as_bytes()).validate(),
        Err(ParseError::Malformed { what: "CSeq", .. })
    ));
    let mf = format!("{base}CSeq: 1 REGISTER\r\nMax-Forwards: 256\r\n\r\n");
    assert!(request(mf.as_bytes()).validate().is_err());
    let ruri = "REGISTER sip:a.example?x=y SIP/2.0\r\n\r\n";
    assert!(request(ruri.as_bytes()).validate().is_err());
}

#[test]
fn unfold_helper() {
    assert_eq!(unfold("a \r\n b"), "a b");
    assert_eq!(unfold("a\r\n\t\tb\n c"), "a b c");
    assert_eq!(unfold("a\r\n \r\n b"), "a b");
    let r = request(b"OPTIONS sip:a@b SIP/2.0\r\nX-A: A\r\n \r\nX-B: \r\n \r\n b \r\n\t\r\n\r\n");
    assert_eq!(r.headers.get("X-A"), Some("A"));
    assert_eq!(r.headers.get("X-B"), Some("b"));
}

#[test]
fn salvage_keeps_the_fields_a_reply_needs() {
    // Content-Length runs past the datagram: parse refuses, salvage keeps the head.
    let bytes = b"REGISTER sip:example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK1\r\n\
From: <sip:a@example.com>;tag=1\r\n\
To: <sip:a@example.com>\r\n\
Bad Header Line Without Colon\r\n\
Call-ID: c1\r\n\
CSeq: 1 REGISTER\r\n\
Content-Length: 500\r\n\r\nshort";
    assert!(matches!(parse(bytes), Err(ParseError::BadHeader { .. })));
    let req = salvage(bytes).expect("a request line");
    assert_eq!(req.method, Method::Register);
    assert_eq!(req.call_id(), Ok("c1"));
    assert_eq!(req.cseq().map(|c| c.seq), Ok(1));
    assert!(req.top_via().is_ok());
    assert!(req.body.is_empty());
    assert_eq!(req.headers.fields.len(), 6);
}

#[test]
fn salvage_refuses_responses_and_garbage() {
    assert!(salvage(b"SIP/2.0 200 OK\r\nCall-ID: x\r\n\r\n").is_none());
    assert!(salvage(b"\x00\x01garbage").is_none());
    assert!(salvage(b"").is_none());
}
