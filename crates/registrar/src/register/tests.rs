//! The registrar as a function: (request bytes, prior bindings, now) →
//! (response, ops), one test per rule, each naming its RFC section.

use super::*;
use crate::testutil::*;
use regmesh_location::NodeId;
use regmesh_sip::{Message, Transport};

fn ctx_with<'a>(policy: &'a Policy, node: &'a NodeInfo) -> RegisterContext<'a> {
    RegisterContext {
        now: now(),
        policy,
        node,
        source: source(),
        local: local(),
        to_tag: "tt-1",
        ruid_seed: 42,
    }
}

/// Run the core on `bytes` with the default policy.
fn run(bytes: &[u8], prior: &[Binding]) -> Outcome {
    run_with(bytes, prior, &policy())
}

fn run_with(bytes: &[u8], prior: &[Binding], policy: &Policy) -> Outcome {
    let node = node();
    let ctx = ctx_with(policy, &node);
    run_ctx(bytes, prior, &ctx)
}

fn run_ctx(bytes: &[u8], prior: &[Binding], ctx: &RegisterContext<'_>) -> Outcome {
    let Ok(Message::Request(req)) = regmesh_sip::parse(bytes) else {
        panic!(
            "test request does not parse: {}",
            String::from_utf8_lossy(bytes)
        );
    };
    register(&req, prior, ctx)
}

fn inserted(ops: &[Op]) -> Vec<&Binding> {
    ops.iter()
        .filter_map(|o| match o {
            Op::Insert(b) => Some(b),
            _ => None,
        })
        .collect()
}

fn refreshed(ops: &[Op]) -> Vec<&Binding> {
    ops.iter()
        .filter_map(|o| match o {
            Op::Refresh(b) => Some(b),
            _ => None,
        })
        .collect()
}

fn removed(ops: &[Op]) -> Vec<&str> {
    ops.iter()
        .filter_map(|o| match o {
            Op::Remove { contact, .. } => Some(contact.as_str()),
            _ => None,
        })
        .collect()
}

#[test]
fn add_one_contact_records_every_field() {
    // RFC 3261 §10.3 steps 5, 7, 8; RFC 3581 (received); Kamailio's fields.
    let bytes = reg()
        .contact("<sip:alice@192.0.2.10:5062>")
        .header("Allow: INVITE, ACK, BYE, CANCEL, OPTIONS")
        .build();
    let out = run(&bytes, &[]);
    assert_eq!(out.status, 200);
    assert_eq!(out.error, None);
    let ins = inserted(&out.ops);
    assert_eq!(ins.len(), 1);
    assert_eq!(out.ops.len(), 1);
    let b = ins[0];
    assert_eq!(b.aor, "alice@example.com");
    assert_eq!(b.contact, "sip:alice@192.0.2.10:5062");
    assert_eq!(b.expires, now().saturating_add_secs(3600));
    assert_eq!(b.q, None);
    assert_eq!(b.call_id, "call-1@ua.example.com");
    assert_eq!(b.cseq, 1);
    assert_eq!((b.flags, b.cflags), (0, 0));
    assert_eq!(b.user_agent.as_deref(), Some("test-phone/1.0"));
    assert_eq!(
        b.received.as_deref(),
        Some("sip:192.0.2.10:5062;transport=udp")
    );
    assert_eq!(b.socket.as_deref(), Some("udp:127.0.0.1:5060"));
    assert!(b.path.is_empty());
    assert_eq!(b.instance, None);
    assert_eq!(b.reg_id, None);
    assert_eq!(b.methods, Some(1 | 2 | 4 | 8 | 512));
    assert!(b.ruid.starts_with("uloc-7-"), "{}", b.ruid);
    assert_eq!(b.ruid.len(), "uloc-7-".len() + 16);
    assert_eq!(b.last_modified, now());
    assert_eq!(b.origin, NodeId(7));

    let r = resp(&out.response);
    assert_eq!(r.status, 200);
    assert_eq!(
        all(&r, "Contact"),
        vec!["<sip:alice@192.0.2.10:5062>;expires=3600"]
    );
    // RFC 3261 §10.3 step 8: SHOULD include Date.
    assert_eq!(r.headers.get("Date"), Some("Tue, 14 Nov 2023 22:13:20 GMT"));
    assert!(r.headers.get("To").expect("To").ends_with(";tag=tt-1"));
    // RFC 3581 §4: received and rport on the top Via.
    let via = r.headers.get("Via").expect("Via");
    assert!(
        via.contains("received=192.0.2.10") && via.contains("rport=5062"),
        "{via}"
    );
}

#[test]
fn ruids_differ_per_insert_and_per_seed() {
    let bytes = reg().contact("<sip:a@h1>").contact("<sip:a@h2>").build();
    let out = run(&bytes, &[]);
    let ins = inserted(&out.ops);
    assert_eq!(ins.len(), 2);
    assert_ne!(ins[0].ruid, ins[1].ruid);
    let (p, n) = (policy(), node());
    let mut ctx = ctx_with(&p, &n);
    ctx.ruid_seed = 43;
    let other = run_ctx(&bytes, &[], &ctx);
    assert_ne!(inserted(&other.ops)[0].ruid, ins[0].ruid);
}

#[test]
fn refresh_updates_expiry_and_keeps_ruid() {
    // RFC 3261 §10.3 step 7: same contact, higher CSeq: update the binding.
    let mut prior = bound("sip:alice@192.0.2.10:5062", "call-1@ua.example.com", 1, 100);
    prior.flags = 4;
    let bytes = reg()
        .cseq(2)
        .contact("<sip:alice@192.0.2.10:5062>;expires=1800")
        .build();
    let out = run(&bytes, &[prior.clone()]);
    assert_eq!(out.status, 200);
    let refs = refreshed(&out.ops);
    assert_eq!(out.ops.len(), 1);
    let b = refs[0];
    assert_eq!(b.ruid, prior.ruid);
    assert_eq!(b.flags, 4, "flags survive a refresh");
    assert_eq!(b.cseq, 2);
    assert_eq!(b.expires, now().saturating_add_secs(1800));
    assert_eq!(
        b.origin,
        NodeId(7),
        "home node is where the refresh arrived"
    );
    assert_eq!(
        b.received.as_deref(),
        Some("sip:192.0.2.10:5062;transport=udp")
    );
    let r = resp(&out.response);
    assert_eq!(
        all(&r, "Contact"),
        vec!["<sip:alice@192.0.2.10:5062>;expires=1800"]
    );
}

#[test]
fn refresh_matches_contacts_by_uri_equality() {
    // RFC 3261 §10.3 step 7 compares contacts with the rules of §19.1.4:
    // the host is case-insensitive, so this is the same binding.
    let prior = bound("sip:alice@Host.Example.com:5062", "c-old", 1, 100);
    let bytes = reg().contact("<sip:alice@host.example.com:5062>").build();
    let out = run(&bytes, &[prior]);
    let refs = refreshed(&out.ops);
    assert_eq!(out.ops.len(), 1);
    assert_eq!(
        refs[0].contact, "sip:alice@Host.Example.com:5062",
        "the stored key is kept"
    );
}

#[test]
fn remove_one_contact_with_expires_param_zero() {
    // RFC 3261 §10.2.2, §10.3 step 7: expires=0 removes that binding only.
    let a = bound("sip:alice@a.example.com", "c-a", 1, 500);
    let b = bound("sip:alice@b.example.com", "c-b", 1, 500);
    let bytes = reg().contact("<sip:alice@a.example.com>;expires=0").build();
    let out = run(&bytes, &[a, b]);
    assert_eq!(out.status, 200);
    assert_eq!(removed(&out.ops), vec!["sip:alice@a.example.com"]);
    assert_eq!(out.ops.len(), 1);
    let r = resp(&out.response);
    assert_eq!(
        all(&r, "Contact"),
        vec!["<sip:alice@b.example.com>;expires=500"]
    );
}

#[test]
fn remove_one_contact_with_expires_header_zero() {
    // RFC 3261 §10.2.2: the Expires header applies to contacts without a param.
    let a = bound("sip:alice@a.example.com", "c-a", 1, 500);
    let bytes = reg()
        .contact("<sip:alice@a.example.com>")
        .header("Expires: 0")
        .build();
    let out = run(&bytes, &[a]);
    assert_eq!(out.status, 200);
    assert_eq!(removed(&out.ops), vec!["sip:alice@a.example.com"]);
    assert!(all(&resp(&out.response), "Contact").is_empty());
}

#[test]
fn removing_an_unknown_contact_changes_nothing() {
    let bytes = reg().contact("<sip:alice@nowhere>;expires=0").build();
    let out = run(&bytes, &[]);
    assert_eq!(out.status, 200);
    assert!(out.ops.is_empty());
}

#[test]
fn star_with_expires_zero_removes_all() {
    // RFC 3261 §10.2.2, §10.3 step 6.
    let a = bound("sip:alice@a.example.com", "c-a", 1, 500);
    let b = bound("sip:alice@b.example.com", "c-b", 9, 500);
    let bytes = reg().cseq(2).contact("*").header("Expires: 0").build();
    let out = run(&bytes, &[a, b]);
    assert_eq!(out.status, 200);
    assert_eq!(
        removed(&out.ops),
        vec!["sip:alice@a.example.com", "sip:alice@b.example.com"]
    );
    assert!(all(&resp(&out.response), "Contact").is_empty());
}

#[test]
fn star_needs_expires_zero_and_must_be_alone() {
    // RFC 3261 §10.3 step 6: anything else with "*" is 400.
    let a = bound("sip:alice@a.example.com", "c-a", 1, 500);
    for bytes in [
        reg().contact("*").build(),
        reg().contact("*").header("Expires: 60").build(),
        reg().contact("*;expires=0").header("Expires: 0").build(),
        reg()
            .contact("*")
            .contact("<sip:alice@b.example.com>")
            .header("Expires: 0")
            .build(),
        reg()
            .contact("*, <sip:alice@b.example.com>")
            .header("Expires: 0")
            .build(),
    ] {
        let out = run(&bytes, std::slice::from_ref(&a));
        assert_eq!(out.status, 400, "{}", String::from_utf8_lossy(&bytes));
        assert!(out.ops.is_empty());
        assert_eq!(resp(&out.response).status, 400);
    }
    let out = run(&reg().contact("*").header("Expires: 60").build(), &[]);
    assert_eq!(out.error, Some(RegisterError::StarWithoutZeroExpires));
    assert_eq!(
        resp(&out.response).reason,
        "Bad Request - Contact * Requires Expires 0"
    );
}

#[test]
fn star_must_be_newer_than_every_binding_of_the_same_call_id() {
    // RFC 3261 §10.3 step 6: same Call-ID, CSeq not higher: abort.
    let a = bound("sip:alice@a.example.com", "call-1@ua.example.com", 5, 500);
    let b = bound("sip:alice@b.example.com", "other", 9, 500);
    let bytes = reg().cseq(5).contact("*").header("Expires: 0").build();
    let out = run(&bytes, &[a.clone(), b.clone()]);
    assert_eq!(out.status, 400);
    assert!(out.ops.is_empty());
    let bytes = reg().cseq(6).contact("*").header("Expires: 0").build();
    assert_eq!(run(&bytes, &[a, b]).ops.len(), 2);
}

#[test]
fn no_contact_is_a_query() {
    // RFC 3261 §10.2.3, §10.3 step 8: returns the bindings, changes nothing.
    let mut a = bound("sip:alice@a.example.com", "c-a", 1, 500);
    a.q = Some(700);
    let b = bound("sip:alice@b.example.com", "c-b", 1, 20);
    let out = run(&reg().build(), &[a, b]);
    assert_eq!(out.status, 200);
    assert!(out.ops.is_empty());
    let r = resp(&out.response);
    assert_eq!(
        all(&r, "Contact"),
        vec![
            "<sip:alice@a.example.com>;expires=500;q=0.7",
            "<sip:alice@b.example.com>;expires=20"
        ]
    );
    assert!(r.headers.get("Date").is_some());
}

#[test]
fn expired_bindings_are_neither_listed_nor_matched() {
    // RFC 3261 §10.3 step 8 lists *current* bindings.
    let mut gone = bound("sip:alice@a.example.com", "call-1@ua.example.com", 9, 0);
    gone.expires = now().saturating_sub_secs(1);
    let out = run(&reg().build(), std::slice::from_ref(&gone));
    assert!(all(&resp(&out.response), "Contact").is_empty());
    // Re-registering it is an insert, and its old CSeq no longer matters.
    let out = run(
        &reg().cseq(1).contact("<sip:alice@a.example.com>").build(),
        &[gone],
    );
    assert_eq!(out.status, 200);
    assert_eq!(inserted(&out.ops).len(), 1);
}

#[test]
fn remaining_expires_rounds_up() {
    let mut a = bound("sip:alice@a.example.com", "c-a", 1, 0);
    a.expires = now().saturating_add_millis(1500);
    let out = run(&reg().build(), &[a]);
    assert_eq!(
        all(&resp(&out.response), "Contact"),
        vec!["<sip:alice@a.example.com>;expires=2"]
    );
}

#[test]
fn expires_param_beats_header_beats_default() {
    // RFC 3261 §10.2.1.1, §10.3 step 7.
    let bytes = reg()
        .contact("<sip:alice@p.example.com>;expires=120")
        .contact("<sip:alice@h.example.com>")
        .header("Expires: 300")
        .build();
    let out = run(&bytes, &[]);
    let ins = inserted(&out.ops);
    assert_eq!(ins[0].expires, now().saturating_add_secs(120));
    assert_eq!(ins[1].expires, now().saturating_add_secs(300));
    let out = run(&reg().contact("<sip:alice@d.example.com>").build(), &[]);
    assert_eq!(
        inserted(&out.ops)[0].expires,
        now().saturating_add_secs(3600)
    );
}

#[test]
fn malformed_expiry_counts_as_absent() {
    // RFC 4475 §3.1.2.4: an invalid expiry may be treated as the default.
    let bytes = reg()
        .contact("<sip:alice@p.example.com>;expires=soon")
        .header("Expires: 240")
        .build();
    let out = run(&bytes, &[]);
    assert_eq!(out.status, 200);
    assert_eq!(
        inserted(&out.ops)[0].expires,
        now().saturating_add_secs(240)
    );
    let bytes = reg()
        .contact("<sip:alice@p.example.com>")
        .header("Expires: never")
        .build();
    let out = run(&bytes, &[]);
    assert_eq!(
        inserted(&out.ops)[0].expires,
        now().saturating_add_secs(3600)
    );
}

#[test]
fn too_brief_is_423_with_min_expires() {
    // RFC 3261 §10.3 step 7, §21.4.17, §20.23.
    let ok = bound("sip:alice@a.example.com", "c-a", 1, 500);
    let bytes = reg()
        .contact("<sip:alice@b.example.com>;expires=3600")
        .contact("<sip:alice@c.example.com>;expires=30")
        .build();
    let out = run(&bytes, &[ok]);
    assert_eq!(out.status, 423);
    assert!(out.ops.is_empty(), "all or nothing");
    let r = resp(&out.response);
    assert_eq!(r.reason, "Interval Too Brief");
    assert_eq!(r.headers.get("Min-Expires"), Some("60"));
    // The boundary itself is accepted, and 0 is a removal, never too brief.
    assert_eq!(
        run(&reg().contact("<sip:a@b>;expires=60").build(), &[]).status,
        200
    );
    assert_eq!(
        run(
            &reg().contact("<sip:a@b>").header("Expires: 0").build(),
            &[]
        )
        .status,
        200
    );
}

#[test]
fn max_expires_clamps() {
    // RFC 3261 §10.3 step 7: the registrar MAY shorten the interval.
    let out = run(
        &reg()
            .contact("<sip:alice@a.example.com>;expires=999999")
            .build(),
        &[],
    );
    assert_eq!(out.status, 200);
    assert_eq!(
        inserted(&out.ops)[0].expires,
        now().saturating_add_secs(7200)
    );
    assert_eq!(
        all(&resp(&out.response), "Contact"),
        vec!["<sip:alice@a.example.com>;expires=7200"]
    );
    // 0 means no limit; values beyond u32 clamp to u32::MAX.
    let unlimited = Policy {
        max_expires: 0,
        ..policy()
    };
    let out = run_with(
        &reg().contact("<sip:a@b>;expires=99999999999").build(),
        &[],
        &unlimited,
    );
    assert_eq!(
        inserted(&out.ops)[0].expires,
        now().saturating_add_secs(u64::from(u32::MAX))
    );
}

#[test]
fn retransmission_gets_the_same_answer_and_changes_nothing() {
    // RFC 3261 §10.3 step 7: same Call-ID, same CSeq: the request that wrote
    // the binding, retransmitted (UDP): no change, same 200.
    let bytes = reg().cseq(3).contact("<sip:alice@a.example.com>").build();
    let first = run(&bytes, &[]);
    assert_eq!(first.status, 200);
    let mut table = Vec::new();
    apply_ops(&mut table, &first.ops);
    let again = run(&bytes, &table);
    assert_eq!(again.status, 200);
    assert!(again.ops.is_empty());
    assert_eq!(
        again.response, first.response,
        "byte-identical answer at the same instant"
    );
}

#[test]
fn out_of_order_cseq_fails_with_400_and_changes_nothing() {
    // RFC 3261 §10.3 step 7: same Call-ID, lower CSeq: "the update MUST be
    // aborted and the request fails"; chosen code: 400 (see RegisterError::OutOfOrder).
    let a = bound("sip:alice@a.example.com", "call-1@ua.example.com", 5, 500);
    let bytes = reg()
        .cseq(4)
        .contact("<sip:alice@new.example.com>")
        .contact("<sip:alice@a.example.com>;expires=0")
        .build();
    let out = run(&bytes, &[a]);
    assert_eq!(out.status, 400);
    assert_eq!(
        out.error,
        Some(RegisterError::OutOfOrder {
            stored: 5,
            received: 4
        })
    );
    assert!(out.ops.is_empty());
    let r = resp(&out.response);
    assert_eq!(r.reason, "Bad Request - CSeq out of order");
    assert!(all(&r, "Contact").is_empty());
}

#[test]
fn another_call_id_updates_whatever_its_cseq() {
    // RFC 3261 §10.3 step 7: a different Call-ID updates (or removes).
    let a = bound(
        "sip:alice@a.example.com",
        "rebooted-phone-old-call-id",
        500,
        500,
    );
    let out = run(
        &reg().cseq(1).contact("<sip:alice@a.example.com>").build(),
        std::slice::from_ref(&a),
    );
    assert_eq!(out.status, 200);
    assert_eq!(refreshed(&out.ops)[0].call_id, "call-1@ua.example.com");
    let out = run(
        &reg()
            .cseq(1)
            .contact("<sip:alice@a.example.com>;expires=0")
            .build(),
        &[a],
    );
    assert_eq!(removed(&out.ops), vec!["sip:alice@a.example.com"]);
}

#[test]
fn q_values_are_stored_in_thousandths_and_listed() {
    // RFC 3261 §20.10: q in [0, 1], up to three decimals.
    let out = run(
        &reg().contact("<sip:alice@a.example.com>;q=0.5").build(),
        &[],
    );
    assert_eq!(inserted(&out.ops)[0].q, Some(500));
    assert_eq!(
        all(&resp(&out.response), "Contact"),
        vec!["<sip:alice@a.example.com>;expires=3600;q=0.5"]
    );
    let out = run(
        &reg().contact("<sip:alice@a.example.com>;q=1.000").build(),
        &[],
    );
    assert_eq!(inserted(&out.ops)[0].q, Some(1000));
}

#[test]
fn invalid_q_is_400() {
    // RFC 3261 §25.1 qvalue.
    for q in ["2", "0.5555", "abc", "1.5", ""] {
        let c = if q.is_empty() {
            "<sip:a@b>;q".to_owned()
        } else {
            format!("<sip:a@b>;q={q}")
        };
        let out = run(&reg().contact(&c).build(), &[]);
        assert_eq!(out.status, 400, "q={q}");
        assert!(out.ops.is_empty());
        assert_eq!(
            resp(&out.response).reason,
            "Bad Request - Malformed q Value"
        );
    }
}

#[test]
fn max_contacts_reject_is_403() {
    let p = Policy {
        max_contacts: 2,
        ..policy()
    };
    let a = bound("sip:alice@a.example.com", "c-a", 1, 500);
    let b = bound("sip:alice@b.example.com", "c-b", 1, 500);
    let out = run_with(
        &reg().contact("<sip:alice@c.example.com>").build(),
        &[a.clone(), b.clone()],
        &p,
    );
    assert_eq!(out.status, 403);
    assert_eq!(resp(&out.response).reason, "Too Many Registered Contacts");
    assert!(out.ops.is_empty());
    // Refreshing within the limit is fine, and so is replacing one by another.
    let out = run_with(
        &reg().contact("<sip:alice@a.example.com>").build(),
        &[a.clone(), b.clone()],
        &p,
    );
    assert_eq!(out.status, 200);
    let bytes = reg()
        .contact("<sip:alice@a.example.com>;expires=0")
        .contact("<sip:alice@c.example.com>")
        .build();
    assert_eq!(run_with(&bytes, &[a, b], &p).status, 200);
}

#[test]
fn max_contacts_replace_oldest_removes_the_least_recently_modified() {
    let p = Policy {
        max_contacts: 2,
        overflow: OverflowPolicy::ReplaceOldest,
        ..policy()
    };
    let mut a = bound("sip:alice@a.example.com", "c-a", 1, 500);
    a.last_modified = now().saturating_sub_secs(10);
    let mut b = bound("sip:alice@b.example.com", "c-b", 1, 500);
    b.last_modified = now().saturating_sub_secs(1000);
    let out = run_with(
        &reg().contact("<sip:alice@c.example.com>").build(),
        &[a.clone(), b.clone()],
        &p,
    );
    assert_eq!(out.status, 200);
    assert_eq!(removed(&out.ops), vec!["sip:alice@b.example.com"]);
    assert_eq!(inserted(&out.ops)[0].contact, "sip:alice@c.example.com");
    let r = resp(&out.response);
    assert_eq!(all(&r, "Contact").len(), 2);
    // More new contacts than the limit cannot be made room for.
    let bytes = reg()
        .contact("<sip:alice@c.example.com>")
        .contact("<sip:alice@d.example.com>")
        .contact("<sip:alice@e.example.com>")
        .build();
    let out = run_with(&bytes, &[a, b], &p);
    assert_eq!(out.status, 403);
    assert!(out.ops.is_empty());
}

#[test]
fn nat_source_is_recorded_for_ipv6_and_tcp() {
    // RFC 3581 / RFC 5118: brackets around IPv6.
    let (p, n) = (policy(), node());
    let mut ctx = ctx_with(&p, &n);
    ctx.source = Source {
        transport: Transport::Tcp,
        addr: "[2001:db8::7]:40000".parse().expect("addr"),
    };
    ctx.local = LocalSocket {
        transport: Transport::Tcp,
        addr: "[2001:db8::1]:5060".parse().expect("addr"),
    };
    let out = run_ctx(
        &reg().contact("<sip:alice@[2001:db8::7]:5060>").build(),
        &[],
        &ctx,
    );
    let b = inserted(&out.ops)[0];
    assert_eq!(
        b.received.as_deref(),
        Some("sip:[2001:db8::7]:40000;transport=tcp")
    );
    assert_eq!(b.socket.as_deref(), Some("tcp:[2001:db8::1]:5060"));
    assert_eq!(b.contact, "sip:alice@[2001:db8::7]:5060");
}

#[test]
fn path_is_stored_and_echoed_only_when_supported() {
    // RFC 3327 §5.3.
    let with = reg()
        .contact("<sip:alice@a.example.com>")
        .header("Path: <sip:edge1.example.com;lr>, <sip:edge2.example.com;lr>")
        .header("Supported: path, outbound")
        .build();
    let out = run(&with, &[]);
    assert_eq!(out.status, 200);
    assert_eq!(
        inserted(&out.ops)[0].path,
        vec!["<sip:edge1.example.com;lr>", "<sip:edge2.example.com;lr>"]
    );
    let r = resp(&out.response);
    assert_eq!(
        all(&r, "Path"),
        vec!["<sip:edge1.example.com;lr>", "<sip:edge2.example.com;lr>"]
    );

    let without = reg()
        .contact("<sip:alice@a.example.com>")
        .header("Path: <sip:edge1.example.com;lr>")
        .build();
    let out = run(&without, &[]);
    assert_eq!(
        inserted(&out.ops)[0].path,
        vec!["<sip:edge1.example.com;lr>"]
    );
    assert!(all(&resp(&out.response), "Path").is_empty());
}

#[test]
fn same_instance_and_reg_id_replaces_the_binding() {
    // RFC 5626 §6: a new flow of the same instance and reg-id replaces the old.
    let mut old = bound(
        "sip:alice@192.0.2.10:5062;transport=tcp",
        "old-call",
        7,
        500,
    );
    old.instance = Some("<urn:uuid:00000000-0000-1000-8000-000a95a0e128>".to_owned());
    old.reg_id = Some(1);
    let mut other_flow = bound(
        "sip:alice@192.0.2.10:5064;transport=tcp",
        "old-call",
        7,
        500,
    );
    other_flow.instance = old.instance.clone();
    other_flow.reg_id = Some(2);
    let bytes = reg()
        .contact("<sip:alice@192.0.2.10:6000;transport=tcp>;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000a95a0e128>\";reg-id=1")
        .header("Supported: outbound, path")
        .build();
    let out = run(&bytes, &[old, other_flow]);
    assert_eq!(out.status, 200);
    assert_eq!(
        removed(&out.ops),
        vec!["sip:alice@192.0.2.10:5062;transport=tcp"]
    );
    let ins = inserted(&out.ops);
    assert_eq!(ins.len(), 1);
    assert_eq!(
        ins[0].instance.as_deref(),
        Some("<urn:uuid:00000000-0000-1000-8000-000a95a0e128>")
    );
    assert_eq!(ins[0].reg_id, Some(1));
    let r = resp(&out.response);
    let contacts = all(&r, "Contact");
    assert_eq!(contacts.len(), 2);
    assert!(contacts.contains(
        &"<sip:alice@192.0.2.10:6000;transport=tcp>;expires=3600;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000a95a0e128>\";reg-id=1"
    ));
    assert_eq!(r.headers.get("Require"), Some("outbound"));
}

#[test]
fn refreshing_one_flow_drops_a_stale_binding_of_the_same_flow() {
    // RFC 5626 §6: one binding per (instance, reg-id), even when the new
    // contact URI matches another stored binding.
    let inst = "<urn:uuid:00000000-0000-1000-8000-000a95a0e128>";
    let mut stale = bound("sip:alice@198.51.100.1:5060", "old-call", 7, 500);
    stale.instance = Some(inst.to_owned());
    stale.reg_id = Some(1);
    let current = bound("sip:alice@192.0.2.10:6000", "old-call", 7, 500);
    let c = format!("<sip:alice@192.0.2.10:6000>;+sip.instance=\"{inst}\";reg-id=1");
    let out = run(&reg().contact(&c).build(), &[stale, current.clone()]);
    assert_eq!(out.status, 200);
    assert_eq!(removed(&out.ops), vec!["sip:alice@198.51.100.1:5060"]);
    let refs = refreshed(&out.ops);
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].ruid, current.ruid);
    assert_eq!(refs[0].reg_id, Some(1));
    // Same Call-ID and an older CSeq than the stale flow's: out of order.
    let mut newer = bound(
        "sip:alice@198.51.100.1:5060",
        "call-1@ua.example.com",
        9,
        500,
    );
    newer.instance = Some(inst.to_owned());
    newer.reg_id = Some(1);
    let out = run(&reg().cseq(8).contact(&c).build(), &[newer]);
    assert_eq!(out.status, 400);
    assert!(out.ops.is_empty());
}

#[test]
fn reg_id_needs_an_instance_and_a_valid_number() {
    // RFC 5626 §4.2: reg-id = 1*DIGIT, 1 to 2^31-1; alone it names no flow.
    let out = run(&reg().contact("<sip:a@b>;reg-id=1").build(), &[]);
    assert_eq!(out.status, 200);
    assert_eq!(inserted(&out.ops)[0].reg_id, None);
    assert!(resp(&out.response).headers.get("Require").is_none());
    for bad in ["0", "x", "2147483648"] {
        let c = format!("<sip:a@b>;+sip.instance=\"<urn:uuid:1>\";reg-id={bad}");
        let out = run(&reg().contact(&c).build(), &[]);
        assert_eq!(out.status, 400, "reg-id={bad}");
        assert_eq!(out.error, Some(RegisterError::InvalidRegId));
    }
}

#[test]
fn methods_come_from_the_contact_param_over_allow() {
    // RFC 3840 §9 `methods` feature tag; RFC 3261 §20.5 Allow.
    let bytes = reg()
        .contact("<sip:alice@a.example.com>;methods=\"INVITE,MESSAGE\"")
        .contact("<sip:alice@b.example.com>")
        .header("Allow: INVITE, SUBSCRIBE, NOTIFY")
        .build();
    let out = run(&bytes, &[]);
    let ins = inserted(&out.ops);
    assert_eq!(ins[0].methods, Some(1 | 256));
    assert_eq!(ins[1].methods, Some(1 | 64 | 128));
    let out = run(&reg().contact("<sip:alice@c.example.com>").build(), &[]);
    assert_eq!(inserted(&out.ops)[0].methods, None);
}

#[test]
fn malformed_requests_get_400_naming_the_problem() {
    // RFC 3261 §8.2: a UAS rejects requests it cannot process.
    let cases: [(Vec<u8>, &str); 5] = [
        (
            String::from_utf8(reg().contact("<sip:a@b>").build())
                .expect("utf8")
                .replace("To: <sip:alice@example.com>\r\n", "")
                .into_bytes(),
            "Bad Request - Missing To",
        ),
        (reg().to("not a uri").build(), "Bad Request - Malformed To"),
        (
            reg().contact("<sip:a@b").build(),
            "Bad Request - Malformed Contact",
        ),
        (
            String::from_utf8(reg().build())
                .expect("utf8")
                .replace("CSeq: 1 REGISTER", "CSeq: 1 INVITE")
                .into_bytes(),
            "Bad Request - CSeq Method Mismatch",
        ),
        (
            String::from_utf8(reg().build())
                .expect("utf8")
                .replace("Call-ID: call-1@ua.example.com\r\n", "")
                .into_bytes(),
            "Bad Request - Missing Call-ID",
        ),
    ];
    for (bytes, reason) in cases {
        let out = run(&bytes, &[]);
        assert_eq!(out.status, 400, "{reason}");
        assert!(out.ops.is_empty());
        assert_eq!(resp(&out.response).reason, reason);
    }
}

#[test]
fn non_sip_aor_is_416() {
    // RFC 3261 §10.2: the To "MUST be a SIP URI or SIPS URI"; §8.2.2.1.
    let out = run(
        &reg().to("<tel:+15551234>").contact("<sip:a@b>").build(),
        &[],
    );
    assert_eq!(out.status, 416);
    assert_eq!(
        out.error,
        Some(RegisterError::UnsupportedScheme { what: "To" })
    );
}

#[test]
fn unknown_required_extension_is_420_with_unsupported() {
    // RFC 3261 §8.2.2.3, §10.3 step 2.
    let bytes = reg()
        .contact("<sip:a@b>")
        .header("Require: path, foo, bar")
        .build();
    let out = run(&bytes, &[]);
    assert_eq!(out.status, 420);
    assert_eq!(
        resp(&out.response).headers.get("Unsupported"),
        Some("foo, bar")
    );
    let ok = reg()
        .contact("<sip:a@b>")
        .header("Require: path, outbound")
        .build();
    assert_eq!(run(&ok, &[]).status, 200);
}

#[test]
fn the_same_contact_twice_in_one_request_is_written_once() {
    let bytes = reg()
        .contact("<sip:alice@a.example.com>;expires=100")
        .contact("<sip:alice@a.example.com>;expires=200")
        .build();
    let out = run(&bytes, &[]);
    assert_eq!(out.ops.len(), 1);
    assert_eq!(
        inserted(&out.ops)[0].expires,
        now().saturating_add_secs(200)
    );
}

#[test]
fn a_sequence_of_registers_against_a_model_store() {
    // Register two contacts, refresh one, remove the other, then remove all.
    let mut table: Vec<Binding> = Vec::new();
    let steps: [(Vec<u8>, usize); 4] = [
        (
            reg()
                .cseq(1)
                .contact("<sip:a@one>")
                .contact("<sip:a@two>")
                .build(),
            2,
        ),
        (reg().cseq(2).contact("<sip:a@one>;expires=600").build(), 2),
        (reg().cseq(3).contact("<sip:a@two>;expires=0").build(), 1),
        (reg().cseq(4).contact("*").header("Expires: 0").build(), 0),
    ];
    for (bytes, left) in steps {
        let out = run(&bytes, &table);
        assert_eq!(out.status, 200);
        apply_ops(&mut table, &out.ops);
        assert_eq!(table.len(), left);
        assert_eq!(all(&resp(&out.response), "Contact").len(), left);
    }
}
