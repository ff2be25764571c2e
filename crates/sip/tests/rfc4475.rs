//! RFC 4475 torture messages (plus RFC 5118 IPv6 and RFC 3261 §24 examples),
//! stored byte-exact under `tests/fixtures/`, each with its verdict.
//!
//! * `Parses`: [`parse`] accepts it and a registrar would process it.
//! * `MustReject`: [`parse`] itself rejects it (framing, start line, header
//!   lines, Content-Length).
//! * `ParsesButRegistrarRejects`: it parses, but a semantic check that a
//!   registrar makes fails: [`Request::validate`], the Contact list, Expires,
//!   a non-SIP Request-URI or To (416), an unsupported `Require` (420). For a
//!   response the same accessors fail and the response is dropped.

use std::collections::BTreeSet;

use regmesh_sip::{Contacts, Message, Method, ParseError, Request, Response, parse};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Parses,
    MustReject,
    ParsesButRegistrarRejects,
}
use Verdict::*;

struct Case {
    dir: &'static str,
    name: &'static str,
    section: &'static str,
    verdict: Verdict,
    bytes: &'static [u8],
}

macro_rules! case {
    ($dir:literal, $name:literal, $section:literal, $verdict:expr) => {
        Case {
            dir: $dir,
            name: $name,
            section: $section,
            verdict: $verdict,
            bytes: include_bytes!(concat!("fixtures/", $dir, "/", $name, ".dat")),
        }
    };
}

const CASES: &[Case] = &[
    // RFC 4475 §3.1.1 Valid Messages
    case!("rfc4475", "wsinv", "3.1.1.1", Parses),
    case!("rfc4475", "intmeth", "3.1.1.2", Parses),
    case!("rfc4475", "esc01", "3.1.1.3", Parses),
    case!("rfc4475", "escnull", "3.1.1.4", Parses),
    case!("rfc4475", "esc02", "3.1.1.5", Parses),
    case!("rfc4475", "lwsdisp", "3.1.1.6", Parses),
    case!("rfc4475", "longreq", "3.1.1.7", Parses),
    case!("rfc4475", "dblreq", "3.1.1.8", Parses),
    case!("rfc4475", "semiuri", "3.1.1.9", Parses),
    case!("rfc4475", "transports", "3.1.1.10", Parses),
    case!("rfc4475", "mpart01", "3.1.1.11", Parses),
    case!("rfc4475", "unreason", "3.1.1.12", Parses),
    case!("rfc4475", "noreason", "3.1.1.13", Parses),
    // RFC 4475 §3.1.2 Invalid Messages
    case!("rfc4475", "badinv01", "3.1.2.1", ParsesButRegistrarRejects),
    case!("rfc4475", "clerr", "3.1.2.2", MustReject),
    case!("rfc4475", "ncl", "3.1.2.3", MustReject),
    case!("rfc4475", "scalar02", "3.1.2.4", ParsesButRegistrarRejects),
    case!("rfc4475", "scalarlg", "3.1.2.5", ParsesButRegistrarRejects),
    case!("rfc4475", "quotbal", "3.1.2.6", ParsesButRegistrarRejects),
    case!("rfc4475", "ltgtruri", "3.1.2.7", MustReject),
    case!("rfc4475", "lwsruri", "3.1.2.8", MustReject),
    case!("rfc4475", "lwsstart", "3.1.2.9", MustReject),
    case!("rfc4475", "trws", "3.1.2.10", MustReject),
    case!("rfc4475", "escruri", "3.1.2.11", ParsesButRegistrarRejects),
    // The RFC allows ignoring a Date the element does not use; we never read Date.
    case!("rfc4475", "baddate", "3.1.2.12", Parses),
    case!("rfc4475", "regbadct", "3.1.2.13", ParsesButRegistrarRejects),
    case!("rfc4475", "badaspec", "3.1.2.14", ParsesButRegistrarRejects),
    // The archived file also lacks the empty line that ends the headers.
    case!("rfc4475", "baddn", "3.1.2.15", MustReject),
    case!("rfc4475", "badvers", "3.1.2.16", MustReject),
    case!(
        "rfc4475",
        "mismatch01",
        "3.1.2.17",
        ParsesButRegistrarRejects
    ),
    case!(
        "rfc4475",
        "mismatch02",
        "3.1.2.18",
        ParsesButRegistrarRejects
    ),
    case!("rfc4475", "bigcode", "3.1.2.19", MustReject),
    // RFC 4475 §3.2 Transaction Layer Semantics
    case!("rfc4475", "badbranch", "3.2.1", Parses),
    // RFC 4475 §3.3 Application-Layer Semantics
    case!("rfc4475", "insuf", "3.3.1", ParsesButRegistrarRejects),
    case!("rfc4475", "unkscm", "3.3.2", ParsesButRegistrarRejects),
    case!("rfc4475", "novelsc", "3.3.3", ParsesButRegistrarRejects),
    case!("rfc4475", "unksm2", "3.3.4", ParsesButRegistrarRejects),
    case!("rfc4475", "bext01", "3.3.5", ParsesButRegistrarRejects),
    case!("rfc4475", "invut", "3.3.6", Parses),
    // Unknown scheme: ignore the credentials and challenge (401), not 400.
    case!("rfc4475", "regaut01", "3.3.7", Parses),
    case!("rfc4475", "multi01", "3.3.8", ParsesButRegistrarRejects),
    case!("rfc4475", "mcl01", "3.3.9", MustReject),
    case!("rfc4475", "bcast", "3.3.10", Parses),
    case!("rfc4475", "zeromf", "3.3.11", Parses),
    case!("rfc4475", "cparam01", "3.3.12", Parses),
    case!("rfc4475", "cparam02", "3.3.13", Parses),
    case!("rfc4475", "regescrt", "3.3.14", Parses),
    case!("rfc4475", "sdp01", "3.3.15", Parses),
    // RFC 4475 §3.4 Backward Compatibility
    case!("rfc4475", "inv2543", "3.4.1", Parses),
    // RFC 5118 (IPv6)
    case!("rfc5118", "ipv6-good", "4.1", Parses),
    case!("rfc5118", "ipv6-bad", "4.2", ParsesButRegistrarRejects),
    case!("rfc5118", "port-unambiguous", "4.4", Parses),
    case!("rfc5118", "via-received-param-with-delim", "4.5", Parses),
    case!("rfc5118", "mult-ip-in-header", "4.7", Parses),
    // RFC 3261 §24.1 registration example
    case!("rfc3261", "register-f1", "24.1 F1", Parses),
    case!("rfc3261", "register-f2-200", "24.1 F2", Parses),
];

/// Extensions this registrar supports in `Require` (none of RFC 4475's).
const SUPPORTED: &[&str] = &["path", "outbound", "gruu"];

/// What a registrar checks before acting, as a reason for the rejection.
fn registrar_rejects(msg: &Message<'_>) -> Option<String> {
    match msg {
        Message::Request(r) => request_rejects(r),
        Message::Response(r) => response_rejects(r),
    }
}

fn request_rejects(r: &Request<'_>) -> Option<String> {
    if let Err(e) = r.validate() {
        return Some(format!("validate: {e}"));
    }
    let ruri = r.request_uri().ok()?;
    if !ruri.is_sip() {
        return Some("416 Request-URI scheme".into());
    }
    let unsupported = |req: &str| req.split(',').any(|o| !SUPPORTED.contains(&o.trim()));
    if r.headers.get("Require").is_some_and(unsupported) {
        return Some("420 Require".into());
    }
    if let Err(e) = r.contacts() {
        return Some(format!("contacts: {e}"));
    }
    if let Err(e) = r.expires() {
        return Some(format!("expires: {e}"));
    }
    if r.method == Method::Register {
        let to = r.to().ok()?;
        if !to.uri.is_sip() {
            return Some("416 To scheme".into());
        }
        let non_sip = match r.contacts() {
            Ok(Contacts::List(list)) => list.into_iter().find(|c| !c.uri.is_sip()),
            _ => None,
        };
        if let Some(c) = non_sip {
            return Some(format!("contact scheme {}", c.uri.scheme));
        }
    }
    None
}

fn response_rejects(r: &Response<'_>) -> Option<String> {
    let h = &r.headers;
    let checks = [
        h.cseq().err(),
        h.call_id().err(),
        h.from().err(),
        h.to().err(),
        h.top_via().err(),
    ];
    checks.into_iter().flatten().next().map(|e| e.to_string())
}

#[test]
fn every_fixture_has_a_verdict() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let mut on_disk = BTreeSet::new();
    for dir in ["rfc4475", "rfc5118", "rfc3261"] {
        for entry in std::fs::read_dir(format!("{root}/{dir}")).expect("fixture dir") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "dat") {
                let stem = path.file_stem().and_then(|s| s.to_str()).expect("name");
                on_disk.insert(format!("{dir}/{stem}"));
            }
        }
    }
    let in_table: BTreeSet<_> = CASES
        .iter()
        .map(|c| format!("{}/{}", c.dir, c.name))
        .collect();
    assert_eq!(on_disk, in_table);
    assert_eq!(CASES.iter().filter(|c| c.dir == "rfc4475").count(), 49);
}

#[test]
fn verdicts() {
    let mut failures = Vec::new();
    for c in CASES {
        let got = match parse(c.bytes) {
            Err(_) => MustReject,
            Ok(m) => match registrar_rejects(&m) {
                Some(_) => ParsesButRegistrarRejects,
                None => Parses,
            },
        };
        if got != c.verdict {
            let detail = match parse(c.bytes) {
                Err(e) => format!("parse error: {e}"),
                Ok(m) => format!("registrar: {:?}", registrar_rejects(&m)),
            };
            failures.push(format!(
                "{}/{} (§{}): expected {:?}, got {got:?} ({detail})",
                c.dir, c.name, c.section, c.verdict
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn accepted_messages_round_trip() {
    for c in CASES.iter().filter(|c| c.verdict != MustReject) {
        let m = parse(c.bytes).expect("parses");
        let mut out = Vec::new();
        m.write_to(&mut out);
        let again = parse(&out).unwrap_or_else(|e| panic!("{}: rewritten form fails: {e}", c.name));
        assert_eq!(m, again, "{}", c.name);
    }
}

fn fixture(name: &str) -> &'static [u8] {
    CASES
        .iter()
        .find(|c| c.name == name)
        .map(|c| c.bytes)
        .expect("known fixture")
}

fn request(name: &str) -> Request<'static> {
    match parse(fixture(name)) {
        Ok(Message::Request(r)) => r,
        other => panic!("{name}: {other:?}"),
    }
}

#[test]
fn wsinv_content() {
    let r = request("wsinv");
    assert_eq!(r.method, Method::Invite);
    assert_eq!(
        r.request_uri().expect("uri").param("unknownparam"),
        Some(None)
    );
    assert_eq!(r.to().expect("to").tag(), Some("1918181833n"));
    let from = r.from().expect("from");
    assert_eq!(from.display, Some(r#"J Rosenberg \\\""#));
    assert_eq!(from.tag(), Some("98asjd8"));
    assert_eq!(r.max_forwards(), Ok(Some(68)));
    let cseq = r.cseq().expect("cseq");
    assert_eq!((cseq.seq, cseq.method), (9, "INVITE"));
    let vias = r.headers.vias().expect("vias");
    let got: Vec<_> = vias
        .iter()
        .map(|v| (v.transport, v.host, v.branch()))
        .collect();
    assert_eq!(
        got,
        [
            ("UDP", "192.0.2.2", Some("390skdjuw")),
            ("TCP", "spindle.example.com", Some("z9hG4bK9ikj8")),
            ("UDP", "192.168.255.111", Some("z9hG4bK30239")),
        ]
    );
    assert_eq!(r.headers.get("Subject"), Some(""));
    assert_eq!(
        r.headers.get("newfangledheader"),
        Some("newfangled value continued newfangled value")
    );
    assert_eq!(
        r.headers.get("UnknownHeaderWithUnusualValue"),
        Some(";;,,;;,;")
    );
    let Ok(Contacts::List(c)) = r.contacts() else {
        panic!("contacts")
    };
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].display, Some(r#"Quoted string \"\""#));
    assert_eq!(c[0].param("newparam"), Some(Some("newvalue")));
    assert_eq!(c[0].param("secondparam"), Some(None));
    assert_eq!(c[0].q(), Some(Ok(330)));
    assert_eq!(r.body.len(), 150);
}

#[test]
fn intmeth_content() {
    let r = request("intmeth");
    let method = "!interesting-Method0123456789_*+`.%indeed'~";
    assert_eq!(r.method, Method::Other(method));
    assert_eq!(r.cseq().map(|c| c.method), Ok(method));
    let to = r.to().expect("to");
    assert_eq!(to.display, Some("BEL:\\\x07 NUL:\\\0 DEL:\\\x7f"));
    let from = r.from().expect("from");
    assert_eq!(from.display, Some("token1~` token2'+_ token3*%!.-"));
    assert_eq!(from.tag(), Some("_token~1'+`*%!-."));
    assert_eq!(
        from.param("fromParam''~+*_!.-%")
            .flatten()
            .map(regmesh_sip::unquote),
        Some("работающий")
    );
    assert_eq!(
        r.call_id(),
        Ok("intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{")
    );
    assert_eq!(
        r.headers.get("extensionHeader-!.%*+_`'~"),
        Some("\u{feff}大停電")
    );
    assert_eq!(r.validate(), Ok(()));
}

#[test]
fn escapes() {
    let r = request("esc01");
    assert_eq!(
        r.request_uri().expect("uri").aor(),
        "sips:user@example.com@example.net"
    );
    assert_eq!(r.to().expect("to").uri.aor(), "user@example.com");
    assert_eq!(
        r.from().expect("from").uri.aor(),
        "I have spaces@example.net"
    );

    // §3.1.1.4: two distinct contacts, AoR not shortened at the NUL.
    let r = request("escnull");
    assert_eq!(r.to().expect("to").uri.aor(), "null-\0-null@example.com");
    let Ok(Contacts::List(c)) = r.contacts() else {
        panic!("contacts")
    };
    let users: Vec<_> = c.iter().map(|c| c.uri.aor()).collect();
    assert_eq!(users, ["\0@host5.example.com", "\0\0@host5.example.com"]);

    // §3.1.1.5: not REGISTER, two contacts not three.
    let r = request("esc02");
    assert_eq!(r.method, Method::Other("RE%47IST%45R"));
    assert_eq!(r.to().expect("to").display, Some("%Z%45"));
    let Ok(Contacts::List(c)) = r.contacts() else {
        panic!("contacts")
    };
    assert_eq!(c.len(), 2);
}

#[test]
fn misc_valid_content() {
    assert_eq!(
        request("lwsdisp").from().expect("from").display,
        Some("caller")
    );
    let r = request("longreq");
    assert_eq!(r.headers.vias().expect("vias").len(), 34);
    assert_eq!(r.to().expect("to").uri.port, Some(6000));
    let r = request("dblreq");
    assert_eq!(r.method, Method::Register);
    assert!(r.body.is_empty());
    let r = request("semiuri");
    assert_eq!(
        r.request_uri().expect("uri").user.as_deref(),
        Some("user;par=u@example.net")
    );
    let r = request("transports");
    let transports: Vec<_> = r
        .headers
        .vias()
        .expect("vias")
        .iter()
        .map(|v| v.transport)
        .collect();
    assert_eq!(transports, ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]);
    let raw = fixture("mpart01");
    let r = request("mpart01");
    assert_eq!(r.body.len(), 553);
    assert!(raw.ends_with(r.body));
    assert!(r.body.contains(&0));
    let Ok(Message::Response(resp)) = parse(fixture("unreason")) else {
        panic!("response")
    };
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.reason,
        "= 2**3 * 5**2 но сто девяносто девять - простое"
    );
    let Ok(Message::Response(resp)) = parse(fixture("noreason")) else {
        panic!("response")
    };
    assert_eq!((resp.status, resp.reason), (100, ""));
}

#[test]
fn register_params() {
    // §3.3.12: bare addr-spec, so ;unknownparam belongs to the Contact.
    let r = request("cparam01");
    let Ok(Contacts::List(c)) = r.contacts() else {
        panic!("contacts")
    };
    assert_eq!(c[0].param("unknownparam"), Some(None));
    assert!(c[0].uri.params.is_empty());
    // §3.3.13: inside <>, it is a URI parameter.
    let r = request("cparam02");
    let Ok(Contacts::List(c)) = r.contacts() else {
        panic!("contacts")
    };
    assert_eq!(c[0].uri.param("unknownparam"), Some(None));
    // §3.3.14: the escaped header stays with the stored contact URI.
    let r = request("regescrt");
    let Ok(Contacts::List(c)) = r.contacts() else {
        panic!("contacts")
    };
    assert_eq!(c[0].uri.headers, Some("Route=%3Csip:sip.example.com%3E"));
    // §3.3.7: unknown scheme is reported as such, not as garbage.
    assert!(matches!(
        request("regaut01").authorization(),
        Some(Err(ParseError::UnsupportedAuthScheme))
    ));
    // §3.1.2.4: oversized Expires clamps; the CSeq is what makes it invalid.
    let r = request("scalar02");
    assert_eq!(r.expires(), Ok(Some(u32::MAX)));
    let Ok(Contacts::List(c)) = r.contacts() else {
        panic!("contacts")
    };
    assert_eq!(c[0].expires(), Some(Ok(u32::MAX)));
    assert!(matches!(
        r.cseq(),
        Err(ParseError::Malformed { what: "CSeq", .. })
    ));
    // §3.3.8: conflicting single-valued headers.
    assert!(matches!(
        request("multi01").call_id(),
        Err(ParseError::DuplicateHeader { name: "Call-ID" })
    ));
}

#[test]
fn rejection_reasons() {
    assert_eq!(parse(fixture("clerr")), Err(ParseError::BodyTruncated));
    assert_eq!(parse(fixture("ncl")), Err(ParseError::BadContentLength));
    assert_eq!(parse(fixture("mcl01")), Err(ParseError::BadContentLength));
    assert_eq!(parse(fixture("badvers")), Err(ParseError::InvalidVersion));
    assert_eq!(parse(fixture("bigcode")), Err(ParseError::BadStatusCode));
    assert_eq!(parse(fixture("ltgtruri")), Err(ParseError::BadUri));
    assert_eq!(parse(fixture("baddn")), Err(ParseError::Incomplete));
    assert_eq!(
        request("mismatch01").validate(),
        Err(ParseError::CSeqMethodMismatch)
    );
    let e = request("badinv01").validate().expect_err("bad Via");
    assert_eq!(e.reason(), "Bad Request - Malformed Via");
    assert_eq!(
        request("insuf").validate(),
        Err(ParseError::MissingHeader { name: "Call-ID" })
    );
}

#[test]
fn ipv6_content() {
    let r = request("ipv6-good");
    assert_eq!(r.request_uri().expect("uri").host, "[2001:db8::10]");
    assert_eq!(r.top_via().expect("via").host, "[2001:db8::9:1]");
    assert_eq!(
        request("port-unambiguous").request_uri().expect("uri").port,
        Some(5070)
    );
    assert_eq!(request("ipv6-bad").request_uri(), Err(ParseError::BadUri));
}
