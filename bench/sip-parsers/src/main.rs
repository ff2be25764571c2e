//! One-off measurement behind the "Why our own parser" section of
//! `crates/sip/src/lib.rs`: parse speed of a typical REGISTER and a
//! 10-header INVITE, and behaviour on the RFC 4475 torture messages, for
//! regmesh-sip and the Rust SIP parsers on crates.io.
//!
//! Run: `CARGO_TARGET_DIR=/tmp/sip-parsers-target cargo run --release`
//! from this directory (it is not part of the main workspace).

use std::hint::black_box;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::time::Instant;

use bytes::Bytes;

const REGISTER: &[u8] = b"REGISTER sip:registrar.biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP bobspc.biloxi.example.com:5060;branch=z9hG4bKnashds7;rport\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: Bob <sip:bob@biloxi.example.com>;tag=456248\r\n\
Call-ID: 843817637684230@998sdasdh09\r\n\
CSeq: 1826 REGISTER\r\n\
Contact: <sip:bob@192.0.2.4:5060;transport=udp>;expires=3600;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\"\r\n\
Expires: 7200\r\n\
User-Agent: Softphone Beta1.5\r\n\
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, MESSAGE, SUBSCRIBE, INFO\r\n\
Content-Length: 0\r\n\r\n";

const INVITE: &[u8] = b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.example.com>\r\n\
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 142\r\n\r\n\
v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 pc33.atlanta.example.com\r\n\
s=-\r\n\
c=IN IP4 192.0.2.101\r\n\
t=0 0\r\n\
m=audio 49172 RTP/AVP 0\r\n\
a=rtpmap:0 PCMU/8000\r\n";

type ParseFn = fn(&[u8]) -> bool;

fn regmesh(b: &[u8]) -> bool {
    regmesh_sip::parse(b).is_ok()
}

/// What the registrar does with a REGISTER: parse, then the checks and the
/// values it needs (AoR key, contacts, expiry).
fn regmesh_registrar(b: &[u8]) -> bool {
    let Ok(regmesh_sip::Message::Request(r)) = regmesh_sip::parse(b) else {
        return false;
    };
    r.validate().is_ok()
        && r.to().map(|t| black_box(t.uri.aor())).is_ok()
        && r.contacts().is_ok()
        && r.expires().is_ok()
}

fn rsip(b: &[u8]) -> bool {
    rsip::SipMessage::try_from(b).is_ok()
}

fn rsipstack(b: &[u8]) -> bool {
    rsipstack::sip::parser::parse_message(b).is_ok()
}

/// ezk-sip-types has no one-call parser (ezk-sip-core frames messages
/// itself); this uses its public pieces the same way: PullParser for lines,
/// MessageLine and Line for the start line and headers, Content-Length for
/// the body.
fn ezk(b: &[u8]) -> bool {
    use ezk_sip_types::Headers;
    use ezk_sip_types::header::typed::ContentLength;
    use ezk_sip_types::msg::{Line, MessageLine, PullParser};
    use ezk_sip_types::parse::Parse;

    let src = Bytes::copy_from_slice(b);
    let mut parser = PullParser::new(&src, 0);
    let Some(Ok(first)) = parser.next() else {
        return false;
    };
    let Ok(first) = std::str::from_utf8(first) else {
        return false;
    };
    if MessageLine::parse(&src)(first).is_err() {
        return false;
    }
    let mut headers = Headers::with_capacity(16);
    for line in &mut parser {
        let Ok(line) = line else { return false };
        let Ok(line) = std::str::from_utf8(line) else {
            return false;
        };
        let Ok((_, line)) = Line::parse(&src, line) else {
            return false;
        };
        headers.extend(std::iter::once((line.name, line.value)));
    }
    let head_end = parser.head_end();
    let len = match headers.try_get_named::<ContentLength>() {
        None => src.len() - head_end,
        Some(Ok(cl)) => cl.0,
        Some(Err(_)) => return false,
    };
    if src.len() < head_end + len {
        return false;
    }
    black_box(src.slice(head_end..head_end + len));
    true
}

/// Median ns per call over `runs` runs of `iters` calls, after a warm-up.
fn measure(f: ParseFn, msg: &[u8]) -> f64 {
    const WARMUP: usize = 20_000;
    const RUNS: usize = 7;
    for _ in 0..WARMUP {
        black_box(f(black_box(msg)));
    }
    // Calibrate to about 100 ms per run.
    let t = Instant::now();
    for _ in 0..1000 {
        black_box(f(black_box(msg)));
    }
    let per = t.elapsed().as_secs_f64() / 1000.0;
    let iters = ((0.1 / per) as usize).clamp(1000, 2_000_000);
    let mut samples: Vec<f64> = (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iters {
                black_box(f(black_box(msg)));
            }
            t.elapsed().as_secs_f64() * 1e9 / iters as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[RUNS / 2]
}

/// RFC 4475 section class of each fixture: what a *parser* should do.
fn class(name: &str) -> Class {
    match name {
        "wsinv" | "intmeth" | "esc01" | "escnull" | "esc02" | "lwsdisp" | "longreq" | "dblreq"
        | "semiuri" | "transports" | "mpart01" | "unreason" | "noreason" => Class::Valid,
        "badinv01" | "clerr" | "ncl" | "scalar02" | "scalarlg" | "quotbal" | "ltgtruri"
        | "lwsruri" | "lwsstart" | "trws" | "escruri" | "baddate" | "regbadct" | "badaspec"
        | "baddn" | "badvers" | "mismatch01" | "mismatch02" | "bigcode" => Class::Invalid,
        _ => Class::ParserMustNotFail,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    /// §3.1.1: must be accepted.
    Valid,
    /// §3.1.2: invalid; rejecting at the parser is allowed (some are
    /// rejected above it, some may be accepted liberally).
    Invalid,
    /// §3.2–§3.4: "a parser must not fail"; the application rejects.
    ParserMustNotFail,
}

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crates/sip/tests/fixtures/rfc4475");
    let mut fixtures: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .expect("fixture dir")
        .filter_map(|e| {
            let p = e.ok()?.path();
            let name = p.file_stem()?.to_str()?.to_owned();
            Some((name, std::fs::read(&p).ok()?))
        })
        .collect();
    fixtures.sort();
    assert_eq!(fixtures.len(), 49, "RFC 4475 fixtures");

    let candidates: [(&str, ParseFn); 4] = [
        ("regmesh-sip", regmesh),
        ("rsip 0.4", rsip),
        ("rsipstack 0.7 (sip::parser)", rsipstack),
        ("ezk-sip-types 0.6", ezk),
    ];
    for (_, f) in &candidates {
        assert!(f(REGISTER) && f(INVITE));
    }

    println!(
        "| parser | REGISTER ns/msg | INVITE ns/msg | §3.1.1 valid accepted | §3.1.2 invalid rejected by parse | §3.2-3.4 accepted | panics |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (name, f) in candidates {
        let reg = measure(f, REGISTER);
        let inv = measure(f, INVITE);
        let (mut valid_ok, mut invalid_rej, mut other_ok, mut panics) = (0, 0, 0, 0);
        let mut wrong = Vec::new();
        for (fname, bytes) in &fixtures {
            match catch_unwind(AssertUnwindSafe(|| f(bytes))) {
                Err(_) => {
                    panics += 1;
                    wrong.push(format!("{fname}:panic"));
                }
                Ok(accepted) => match (class(fname), accepted) {
                    (Class::Valid, true) => valid_ok += 1,
                    (Class::Invalid, false) => invalid_rej += 1,
                    (Class::ParserMustNotFail, true) => other_ok += 1,
                    (Class::Invalid, true) => {}
                    (_, false) => wrong.push(format!("{fname}:rejected")),
                },
            }
        }
        println!(
            "| {name} | {reg:.0} | {inv:.0} | {valid_ok}/13 | {invalid_rej}/19 | {other_ok}/17 | {panics} |"
        );
        if !wrong.is_empty() {
            eprintln!("{name}: wrongly rejected or panicked: {}", wrong.join(", "));
        }
    }
    let full = measure(regmesh_registrar, REGISTER);
    println!();
    println!(
        "regmesh-sip parse + validate + To AoR + contacts + expires on the REGISTER: {full:.0} ns/msg"
    );
}
