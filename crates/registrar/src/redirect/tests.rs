//! The redirect server as a function: (request, bindings, now) → reply.

use super::*;
use crate::testutil::*;
use regmesh_sip::Message;

fn go(bytes: &[u8], table: &[Binding]) -> (Routed, Vec<String>) {
    let Ok(Message::Request(req)) = regmesh_sip::parse(bytes) else {
        panic!("request does not parse");
    };
    let mut asked = Vec::new();
    let routed = route(&req, source(), "tag-9", now(), |aor| {
        asked.push(aor.to_owned());
        table.iter().filter(|b| b.aor == aor).cloned().collect()
    });
    (routed, asked)
}

fn table() -> Vec<Binding> {
    let mut low = bound("sip:alice@low.example.com", "c1", 1, 300);
    low.q = Some(100);
    let mut none_old = bound("sip:alice@none-old.example.com", "c2", 1, 300);
    none_old.last_modified = now().saturating_sub_secs(500);
    let mut none_new = bound("sip:alice@none-new.example.com", "c3", 1, 300);
    none_new.last_modified = now().saturating_sub_secs(5);
    let mut half = bound("sip:alice@half.example.com", "c4", 1, 300);
    half.q = Some(500);
    let mut gone = bound("sip:alice@gone.example.com", "c5", 1, 300);
    gone.expires = now().saturating_sub_secs(1);
    vec![low, none_old, half, gone, none_new]
}

#[test]
fn registered_aor_gets_302_highest_q_first() {
    // RFC 3261 §8.3 (redirect server), §21.3.3; unspecified q ranks as 1.0.
    let (routed, asked) = go(
        &request("INVITE", "sip:alice@Example.COM;transport=udp", &[]),
        &table(),
    );
    assert_eq!(asked, vec!["alice@example.com"]);
    assert_eq!(routed.disposition, Disposition::Redirected(4));
    let bytes = routed.reply.expect("reply");
    let r = resp(&bytes);
    assert_eq!((r.status, r.reason), (302, "Moved Temporarily"));
    assert_eq!(
        all(&r, "Contact"),
        vec![
            "<sip:alice@none-new.example.com>",
            "<sip:alice@none-old.example.com>",
            "<sip:alice@half.example.com>;q=0.5",
            "<sip:alice@low.example.com>;q=0.1",
        ]
    );
    assert!(r.headers.get("To").expect("To").ends_with(";tag=tag-9"));
}

#[test]
fn unknown_or_expired_aor_gets_404() {
    // RFC 3261 §21.4.5.
    let (routed, _) = go(&request("INVITE", "sip:nobody@example.com", &[]), &table());
    assert_eq!(routed.disposition, Disposition::NotFound);
    assert_eq!(resp(&routed.reply.expect("reply")).status, 404);
    let only_expired: Vec<Binding> = table().into_iter().filter(|b| b.expires <= now()).collect();
    let (routed, _) = go(
        &request("MESSAGE", "sip:alice@example.com", &[]),
        &only_expired,
    );
    assert_eq!(routed.disposition, Disposition::NotFound);
}

#[test]
fn options_to_the_node_is_200_for_health_checks() {
    // RFC 3261 §11.2; an OPTIONS with Max-Forwards 0 probes us (§11).
    for extra in [&[][..], &["Max-Forwards: 0"][..]] {
        let (routed, asked) = go(&request("OPTIONS", "sip:127.0.0.1:5060", extra), &table());
        assert!(asked.is_empty());
        assert_eq!(routed.disposition, Disposition::Options);
        let bytes = routed.reply.expect("reply");
        let r = resp(&bytes);
        assert_eq!(r.status, 200);
        assert_eq!(r.headers.get("Allow"), Some(ALLOW));
        assert_eq!(r.headers.get("Accept"), Some("application/sdp"));
        assert_eq!(r.headers.get("Supported"), Some("path, outbound"));
    }
    // OPTIONS to a user is a lookup like any other request.
    let (routed, _) = go(&request("OPTIONS", "sip:alice@example.com", &[]), &table());
    assert_eq!(routed.disposition, Disposition::Redirected(4));
}

#[test]
fn max_forwards_zero_is_483() {
    // RFC 3261 §16.3 step 3.
    let (routed, asked) = go(
        &request("INVITE", "sip:alice@example.com", &["Max-Forwards: 0"]),
        &table(),
    );
    assert!(asked.is_empty());
    assert_eq!(routed.disposition, Disposition::TooManyHops);
    let bytes = routed.reply.expect("reply");
    assert_eq!(
        (resp(&bytes).status, resp(&bytes).reason),
        (483, "Too Many Hops")
    );
}

#[test]
fn ack_is_dropped_and_cancel_is_481() {
    // RFC 3261 §17.2.1 (ACK is never answered), §9.2 (no matching transaction).
    let (routed, _) = go(&request("ACK", "sip:alice@example.com", &[]), &table());
    assert_eq!(routed.disposition, Disposition::Dropped);
    assert!(routed.reply.is_none());
    let (routed, asked) = go(&request("CANCEL", "sip:alice@example.com", &[]), &table());
    assert!(asked.is_empty());
    assert_eq!(routed.disposition, Disposition::NoTransaction);
    assert_eq!(resp(&routed.reply.expect("reply")).status, 481);
}

#[test]
fn non_sip_request_uri_is_416_and_malformed_is_400() {
    // RFC 3261 §8.2.2.1, §8.2.
    let (routed, _) = go(&request("INVITE", "tel:+15551234", &[]), &table());
    assert_eq!(
        routed.disposition,
        Disposition::Rejected(RegisterError::UnsupportedScheme {
            what: "Request-URI"
        })
    );
    assert_eq!(resp(&routed.reply.expect("reply")).status, 416);
    let bad = String::from_utf8(request("INVITE", "sip:alice@example.com", &[]))
        .expect("utf8")
        .replace("Call-ID: req-call-1\r\n", "")
        .into_bytes();
    let (routed, _) = go(&bad, &table());
    let bytes = routed.reply.expect("reply");
    let r = resp(&bytes);
    assert_eq!((r.status, r.reason), (400, "Bad Request - Missing Call-ID"));
}
