//! Every method through `handle`, against a real store.

use crate::support::{Env, NODE, START, assert_invalid_param};
use regmesh_location::ChangeKind;
use serde_json::{Value, json};
use std::sync::atomic::Ordering;

const AOR: &str = "alice@example.com";
const C1: &str = "sip:alice@198.51.100.7:5060";
const C2: &str = "sip:alice@198.51.100.8:5070;transport=tcp";

fn contact_of(result: &Value, i: usize) -> &Value {
    &result["Contacts"][i]["Contact"]
}

// ---------------------------------------------------------------- JSON-RPC

#[tokio::test]
async fn parse_error_is_32700_with_null_id() {
    let env = Env::new();
    let resp = env.raw(b"{\"jsonrpc\": \"2.0\", \"method\": ").await;
    assert_eq!(resp["error"]["code"], -32700);
    assert_eq!(resp["id"], Value::Null);
    assert_eq!(resp["jsonrpc"], "2.0");
}

#[tokio::test]
async fn invalid_request_is_32600() {
    let env = Env::new();
    let resp = env
        .raw(br#"{"jsonrpc":"2.0","method":1,"params":"bar","id":9}"#)
        .await;
    assert_eq!(resp["error"]["code"], -32600);
    assert_eq!(resp["id"], 9);
    let resp = env.raw(br#"{"method":"core.version","id":2}"#).await;
    assert_eq!(resp["error"]["code"], -32600, "jsonrpc member is required");
    let resp = env.raw(b"[]").await;
    assert_eq!(resp["error"]["code"], -32600);
    assert_eq!(resp["id"], Value::Null);
}

#[tokio::test]
async fn unknown_method_is_32601() {
    let env = Env::new();
    let err = env.err("ul.nosuch", json!([])).await;
    assert_eq!(err["code"], -32601);
    assert_eq!(err["message"], "Method not found: ul.nosuch");
}

#[tokio::test]
async fn notification_gets_no_response_but_runs() {
    let env = Env::new();
    let body = json!({"jsonrpc":"2.0","method":"ul.add",
        "params":["location", AOR, C1, 60, 1, "0", 0, 0, 0]});
    let out = regmesh_rpc::handle(&env.ctx, &serde_json::to_vec(&body).expect("json")).await;
    assert!(out.is_none());
    assert_eq!(
        env.ctx.location.lookup(AOR).len(),
        1,
        "the notification ran"
    );
    // Even a failing notification is silent (JSON-RPC 2.0 §4.1).
    let out = regmesh_rpc::handle(&env.ctx, br#"{"jsonrpc":"2.0","method":"nosuch"}"#).await;
    assert!(out.is_none());
}

#[tokio::test]
async fn batch_with_mixed_results() {
    let env = Env::new();
    let body = json!([
        {"jsonrpc":"2.0","method":"core.version","id":"a"},
        {"jsonrpc":"2.0","method":"ul.lookup","params":["location","nobody@example.com"],"id":"b"},
        {"jsonrpc":"2.0","method":"ul.add","params":["location", AOR, C1, 60, 1, "0", 0, 0, 0]},
        42,
        {"jsonrpc":"2.0","method":"ul.lookup","params":["location", AOR],"id":"c"}
    ]);
    let resp = env.raw(&serde_json::to_vec(&body).expect("json")).await;
    let items = resp.as_array().expect("batch response is an array");
    assert_eq!(items.len(), 4, "the notification has no entry: {resp}");
    assert_eq!(items[0]["id"], "a");
    assert!(
        items[0]["result"]
            .as_str()
            .is_some_and(|s| s.starts_with("regmesh "))
    );
    assert_eq!(items[1]["id"], "b");
    assert_eq!(items[1]["error"]["code"], 404);
    assert_eq!(items[2]["id"], Value::Null);
    assert_eq!(items[2]["error"]["code"], -32600);
    assert_eq!(items[3]["id"], "c");
    assert_eq!(
        contact_of(&items[3]["result"], 0)["Address"],
        C1,
        "batch runs in order"
    );

    let only_notifications = json!([{"jsonrpc":"2.0","method":"core.version"}]);
    let out = regmesh_rpc::handle(
        &env.ctx,
        &serde_json::to_vec(&only_notifications).expect("json"),
    )
    .await;
    assert!(out.is_none());
}

#[tokio::test]
async fn params_must_be_array_or_object() {
    let env = Env::new();
    let resp = env
        .raw(br#"{"jsonrpc":"2.0","method":"ul.dump","params":"brief","id":1}"#)
        .await;
    assert_eq!(resp["error"]["code"], -32600);
}

// ---------------------------------------------------------------- ul.add

#[tokio::test]
async fn ul_add_positional_inserts_then_refreshes() {
    let env = Env::new();
    let r = env
        .ok(
            "ul.add",
            json!([
                "location",
                AOR,
                C1,
                3600,
                0.5,
                "<sip:edge.example.com;lr>",
                2,
                4,
                8159
            ]),
        )
        .await;
    assert_eq!(r["Action"], "inserted");
    assert_eq!(r["Expires"], 3600);
    let ruid = r["Ruid"].as_str().expect("ruid").to_owned();
    assert!(ruid.starts_with("uloc-"), "{ruid}");

    let b = &env.ctx.location.lookup(AOR)[0];
    assert_eq!(b.contact, C1);
    assert_eq!(b.expires, START.saturating_add_secs(3600));
    assert_eq!(b.q, Some(500));
    assert_eq!(b.path, vec!["<sip:edge.example.com;lr>"]);
    assert_eq!((b.flags, b.cflags, b.methods), (2, 4, Some(8159)));
    assert_eq!(b.origin, NODE);
    assert_eq!(b.version.node, NODE, "stamped by this node");
    assert_eq!(b.received, None);

    env.clock.advance_secs(10);
    let r = env
        .ok(
            "ul.add",
            json!([
                "location",
                AOR,
                C1,
                60,
                -1,
                "0",
                0,
                0,
                0,
                "sip:203.0.113.1:4444;transport=udp",
                "udp:192.0.2.1:5060"
            ]),
        )
        .await;
    assert_eq!(r["Action"], "refreshed");
    assert_eq!(r["Ruid"], ruid.as_str(), "a refresh keeps the ruid");
    let all = env.ctx.location.lookup(AOR);
    assert_eq!(all.len(), 1);
    let b = &all[0];
    assert_eq!(b.expires, START.saturating_add_secs(70));
    assert_eq!(b.q, None);
    assert!(b.path.is_empty(), "path \"0\" unsets");
    assert_eq!(
        b.received.as_deref(),
        Some("sip:203.0.113.1:4444;transport=udp")
    );
    assert_eq!(b.socket.as_deref(), Some("udp:192.0.2.1:5060"));
}

#[tokio::test]
async fn ul_add_zero_expires_is_permanent() {
    let env = Env::new();
    let r = env
        .ok("ul.add", json!(["location", AOR, C1, 0, 1, ".", 0, 0, 0]))
        .await;
    assert_eq!(r["Expires"], "permanent");
    assert_eq!(
        env.ctx.location.lookup(AOR)[0].expires,
        regmesh_rpc::PERMANENT
    );
    env.clock.advance_secs(10 * 365 * 86_400);
    let found = env.ok("ul.lookup", json!(["location", AOR])).await;
    assert_eq!(contact_of(&found, 0)["Expires"], "permanent");
}

#[tokio::test]
async fn ul_add_is_durable_before_the_answer() {
    let mut env = Env::new();
    env.ok("ul.add", json!(["location", AOR, C1, 600, 1, "0", 0, 0, 0]))
        .await;
    env.ok("ul.add", json!({"aor": "bob@example.com", "contact": C2}))
        .await;
    env.reopen();
    assert_eq!(env.ctx.location.lookup(AOR).len(), 1);
    let bob = env.ctx.location.lookup("bob@example.com");
    assert_eq!(bob.len(), 1);
    assert_eq!(
        bob[0].expires,
        START.saturating_add_secs(3600),
        "named default_expires"
    );
}

#[tokio::test]
async fn ul_add_named_sets_every_field() {
    let env = Env::new();
    let r = env
        .ok(
            "ul.add",
            json!({
                "aor": "sip:alice@example.com", "contact": format!("<{C1}>"), "expires": 120,
                "q": 0.7, "path": ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"],
                "flags": 1, "cflags": 64, "methods": 8159,
                "received": "sip:203.0.113.9:5060", "socket": "tcp:192.0.2.1:5060",
                "call_id": "abc@host", "cseq": 42, "user_agent": "Phone/1.0",
                "instance": "\"<urn:uuid:00000000-0000-0000-0000-000000000001>\"", "reg_id": 1
            }),
        )
        .await;
    assert_eq!(r["AoR"], AOR);
    assert_eq!(r["Contact"], C1, "brackets dropped");
    let b = &env.ctx.location.lookup(AOR)[0];
    assert_eq!(b.q, Some(700));
    assert_eq!(b.path.len(), 2);
    assert_eq!((b.flags, b.cflags, b.methods), (1, 64, Some(8159)));
    assert_eq!(b.received.as_deref(), Some("sip:203.0.113.9:5060"));
    assert_eq!(b.socket.as_deref(), Some("tcp:192.0.2.1:5060"));
    assert_eq!((b.call_id.as_str(), b.cseq), ("abc@host", 42));
    assert_eq!(b.user_agent.as_deref(), Some("Phone/1.0"));
    assert_eq!(
        b.instance.as_deref(),
        Some("<urn:uuid:00000000-0000-0000-0000-000000000001>")
    );
    assert_eq!(b.reg_id, Some(1));

    // A refresh that names only some fields keeps the others; null clears.
    env.ok(
        "ul.add",
        json!({"aor": AOR, "contact": C1, "expires": 30, "received": null}),
    )
    .await;
    let b = &env.ctx.location.lookup(AOR)[0];
    assert_eq!(b.received, None);
    assert_eq!(b.user_agent.as_deref(), Some("Phone/1.0"));
    assert_eq!(b.cseq, 42);
    assert_eq!(b.expires, START.saturating_add_secs(30));

    // RFC 5626: the same instance and reg-id on another contact replaces it.
    let r = env
        .ok(
            "ul.add",
            json!({"aor": AOR, "contact": C2, "instance": "<urn:uuid:00000000-0000-0000-0000-000000000001>", "reg_id": 1}),
        )
        .await;
    assert_eq!(r["Action"], "inserted");
    let all = env.ctx.location.lookup(AOR);
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].contact, C2);
}

#[tokio::test]
async fn ul_add_bad_params_name_the_parameter() {
    let env = Env::new();
    let ok = |i: usize, v: Value| {
        let mut p = vec![
            json!("location"),
            json!(AOR),
            json!(C1),
            json!(60),
            json!(1),
            json!("0"),
            json!(0),
            json!(0),
            json!(0),
        ];
        p[i] = v;
        Value::Array(p)
    };
    assert_invalid_param(&env.err("ul.add", ok(0, json!("aliases"))).await, "table");
    assert_invalid_param(&env.err("ul.add", ok(1, json!("no-domain"))).await, "aor");
    assert_invalid_param(&env.err("ul.add", ok(1, json!(["x"]))).await, "aor");
    assert_invalid_param(
        &env.err("ul.add", ok(2, json!("not a uri"))).await,
        "contact",
    );
    assert_invalid_param(&env.err("ul.add", ok(3, json!("soon"))).await, "expires");
    assert_invalid_param(&env.err("ul.add", ok(3, json!(-5))).await, "expires");
    assert_invalid_param(&env.err("ul.add", ok(4, json!(2))).await, "q");
    assert_invalid_param(&env.err("ul.add", ok(6, json!(true))).await, "flags");
    assert_invalid_param(&env.err("ul.add", ok(8, json!(1.5))).await, "methods");
    // Kamailio needs at least nine parameters; the first missing one is named.
    let err = env
        .err("ul.add", json!(["location", AOR, C1, 60, 1, "0", 0, 0]))
        .await;
    assert_invalid_param(&err, "methods");
    assert_eq!(
        err["message"],
        "Invalid params: missing parameter `methods`"
    );
    let err = env
        .err(
            "ul.add",
            json!(["location", AOR, C1, 60, 1, "0", 0, 0, 0, "0", "0", "extra"]),
        )
        .await;
    assert_eq!(err["code"], -32602);
    // Named form.
    assert_invalid_param(&env.err("ul.add", json!({"contact": C1})).await, "aor");
    assert_invalid_param(&env.err("ul.add", json!({"aor": AOR})).await, "contact");
    assert_invalid_param(
        &env.err("ul.add", json!({"aor": AOR, "contact": C1, "expire": 5}))
            .await,
        "expire",
    );
    assert_invalid_param(
        &env.err("ul.add", json!({"aor": AOR, "contact": C1, "table": "x"}))
            .await,
        "table",
    );
    assert_invalid_param(
        &env.err(
            "ul.add",
            json!({"aor": AOR, "contact": C1, "path": [1, {}]}),
        )
        .await,
        "path",
    );
    assert_invalid_param(
        &env.err("ul.add", json!({"aor": AOR, "contact": C1, "reg_id": "x"}))
            .await,
        "reg_id",
    );
    assert!(
        env.ctx.location.lookup(AOR).is_empty(),
        "nothing was written"
    );
}

// ---------------------------------------------------------------- ul.lookup / dump / rm

#[tokio::test]
async fn ul_lookup_shape_and_not_found() {
    let env = Env::new();
    let err = env.err("ul.lookup", json!(["location", AOR])).await;
    assert_eq!(err["code"], 404);
    assert_eq!(err["message"], "AOR not found");

    env.ok(
        "ul.add",
        json!({"aor": AOR, "contact": C1, "expires": 90, "user_agent": "UA/2"}),
    )
    .await;
    env.clock.advance_secs(30);
    // A URI with another host case and parameters names the same AoR.
    let r = env
        .ok(
            "ul.lookup",
            json!(["location", "sip:alice@EXAMPLE.com;transport=tcp"]),
        )
        .await;
    assert_eq!(r["AoR"], AOR);
    let c = contact_of(&r, 0);
    let keys: Vec<&str> = c
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    for k in [
        "Address",
        "Expires",
        "Q",
        "Call-ID",
        "CSeq",
        "User-Agent",
        "Received",
        "Path",
        "State",
        "Flags",
        "CFlags",
        "Socket",
        "Methods",
        "Ruid",
        "Instance",
        "Reg-Id",
        "Server-Id",
        "Tcpconn-Id",
        "Keepalive",
        "Last-Keepalive",
        "KA-Roundtrip",
        "Last-Modified",
    ] {
        assert!(keys.contains(&k), "missing {k} in {c}");
    }
    assert_eq!(c["Address"], C1);
    assert_eq!(c["Expires"], 60);
    assert_eq!(c["Q"], -1);
    assert_eq!(c["User-Agent"], "UA/2");
    assert_eq!(c["Received"], "[not set]");
    assert_eq!(c["Server-Id"], NODE.0);
    assert_eq!(c["Last-Modified"], START.as_secs());

    assert_invalid_param(&env.err("ul.lookup", json!(["other", AOR])).await, "table");
    assert_invalid_param(&env.err("ul.lookup", json!(["location"])).await, "aor");
    assert_invalid_param(
        &env.err("ul.lookup", json!({"aor": AOR, "tabel": "location"}))
            .await,
        "tabel",
    );
    // Named form: table optional.
    assert_eq!(env.ok("ul.lookup", json!({"aor": AOR})).await["AoR"], AOR);
}

#[tokio::test]
async fn ul_lookup_hides_expired_bindings() {
    let env = Env::new();
    env.ok("ul.add", json!(["location", AOR, C1, 10, 1, "0", 0, 0, 0]))
        .await;
    env.clock.advance_secs(11);
    assert_eq!(
        env.err("ul.lookup", json!(["location", AOR])).await["code"],
        404
    );
}

#[tokio::test]
async fn ul_dump_full_and_brief() {
    let env = Env::new();
    env.ok("ul.add", json!(["location", AOR, C1, 100, 1, "0", 0, 0, 0]))
        .await;
    env.ok(
        "ul.add",
        json!(["location", AOR, C2, 200, 0.1, "0", 0, 0, 0]),
    )
    .await;
    env.ok(
        "ul.add",
        json!([
            "location",
            "bob@example.com",
            "sip:bob@192.0.2.5",
            300,
            1,
            "0",
            0,
            0,
            0
        ]),
    )
    .await;

    let d = env.ok("ul.dump", json!([])).await;
    let dom = &d["Domains"][0]["Domain"];
    assert_eq!(dom["Domain"], "location");
    assert_eq!(dom["Size"], 1024);
    assert_eq!(dom["Stats"]["Records"], 2);
    assert!(
        dom["Stats"]["Max-Slots"]
            .as_u64()
            .is_some_and(|m| (1..=2).contains(&m))
    );
    let aors = dom["AoRs"].as_array().expect("AoRs");
    assert_eq!(aors.len(), 2);
    let info = &aors[0]["Info"];
    assert_eq!(info["AoR"], AOR);
    assert!(info["HashID"].is_u64());
    assert_eq!(info["Contacts"].as_array().map(Vec::len), Some(2));
    assert_eq!(aors[1]["Info"]["AoR"], "bob@example.com");
    assert_eq!(contact_of(&aors[1]["Info"], 0)["Expires"], 300);

    let b = env.ok("ul.dump", json!(["brief"])).await;
    let aors = b["Domains"][0]["Domain"]["AoRs"]
        .as_array()
        .expect("AoRs")
        .clone();
    assert_eq!(aors[0]["AoR"], AOR);
    let c = contact_of(&aors[0], 0)
        .as_object()
        .expect("contact")
        .clone();
    assert_eq!(c.len(), 2, "brief: address and expires only: {c:?}");
    assert!(c.contains_key("Address") && c.contains_key("Expires"));

    assert_invalid_param(&env.err("ul.dump", json!(["full"])).await, "mode");
    assert_eq!(env.ok("ul.dump", json!({"mode": "brief"})).await, b);
}

#[tokio::test]
async fn ul_rm_and_rm_contact() {
    let env = Env::new();
    env.ok("ul.add", json!(["location", AOR, C1, 100, 1, "0", 0, 0, 0]))
        .await;
    env.ok("ul.add", json!(["location", AOR, C2, 100, 1, "0", 0, 0, 0]))
        .await;

    let err = env
        .err(
            "ul.rm_contact",
            json!(["location", AOR, "sip:nobody@192.0.2.1"]),
        )
        .await;
    assert_eq!(
        (err["code"].clone(), err["message"].clone()),
        (json!(404), json!("Contact not found"))
    );
    let err = env
        .err(
            "ul.rm_contact",
            json!(["location", "carol@example.com", C1]),
        )
        .await;
    assert_eq!(
        (err["code"].clone(), err["message"].clone()),
        (json!(404), json!("AOR not found"))
    );
    assert_invalid_param(
        &env.err("ul.rm_contact", json!(["location", AOR])).await,
        "contact",
    );

    let r = env
        .ok("ul.rm_contact", json!(["location", AOR, format!("<{C1}>")]))
        .await;
    assert_eq!(r["Removed"], 1);
    let left = env.ctx.location.lookup(AOR);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].contact, C2);

    let r = env.ok("ul.rm", json!(["location", AOR])).await;
    assert_eq!(r["Removed"], 1);
    assert!(env.ctx.location.lookup(AOR).is_empty());
    // Kamailio's ul.rm of an unknown AoR succeeds.
    assert_eq!(
        env.ok("ul.rm", json!(["location", AOR])).await["Removed"],
        0
    );
    assert_invalid_param(&env.err("ul.rm", json!(["loc", AOR])).await, "table");

    // The removals are changes like any other: stamped tombstones in the store.
    let removes = env
        .ctx
        .location
        .snapshot()
        .into_iter()
        .filter(|c| c.kind == ChangeKind::Remove && c.aor == AOR)
        .count();
    assert_eq!(removes, 2);
}

#[tokio::test]
async fn numeric_user_from_a_command_line_is_a_string() {
    let env = Env::new();
    env.ok(
        "ul.add",
        json!([
            "location",
            "1001@example.com",
            "sip:1001@192.0.2.9",
            60,
            1,
            0,
            0,
            0,
            0
        ]),
    )
    .await;
    assert_eq!(
        env.ok("ul.lookup", json!(["location", "1001@example.com"]))
            .await["AoR"],
        "1001@example.com"
    );
}

// ---------------------------------------------------------------- subscriber.*

#[tokio::test]
async fn subscriber_lifecycle() {
    let env = Env::new();
    let r = env
        .ok("subscriber.add", json!(["alice@Example.com", "s3cret"]))
        .await;
    assert_eq!(
        r,
        json!({"user": "alice", "domain": "example.com", "realm": "example.com"})
    );
    let stored = env
        .ctx
        .location
        .subscriber("alice", "example.com")
        .expect("stored");
    let (md5, sha) = regmesh_registrar::ha1("alice", "example.com", "s3cret");
    assert_eq!(
        (stored.ha1_md5.as_str(), stored.ha1_sha256.as_str()),
        (md5.as_str(), sha.as_str())
    );
    let as_text = format!("{stored:?}");
    assert!(!as_text.contains("s3cret"), "the password is not stored");

    let err = env
        .err("subscriber.add", json!(["alice@example.com", "other"]))
        .await;
    assert_eq!(err["code"], 409);

    let shown = env
        .ok("subscriber.show", json!(["alice@example.com"]))
        .await;
    assert_eq!(
        shown,
        json!({"user": "alice", "domain": "example.com", "realm": "example.com"})
    );
    assert!(!shown.to_string().contains(&md5), "HA1 is not shown");

    env.ok(
        "subscriber.passwd",
        json!({"aor": "alice@example.com", "password": "n3w"}),
    )
    .await;
    let stored = env
        .ctx
        .location
        .subscriber("alice", "example.com")
        .expect("stored");
    assert_eq!(
        stored.ha1_md5,
        regmesh_registrar::ha1("alice", "example.com", "n3w").0
    );

    env.ok(
        "subscriber.add",
        json!({"user": "bob", "domain": "other.org", "password": 1234}),
    )
    .await;
    let stored = env
        .ctx
        .location
        .subscriber("bob", "other.org")
        .expect("stored");
    assert_eq!(
        stored.ha1_md5,
        regmesh_registrar::ha1("bob", "other.org", "1234").0
    );

    let list = env.ok("subscriber.list", json!([])).await;
    assert_eq!(list.as_array().map(Vec::len), Some(2));
    let list = env.ok("subscriber.list", json!(["other.org"])).await;
    assert_eq!(
        list,
        json!([{"user": "bob", "domain": "other.org", "realm": "other.org"}])
    );

    assert_eq!(
        env.ok("subscriber.rm", json!(["bob@other.org"])).await["Removed"],
        1
    );
    assert_eq!(
        env.err("subscriber.rm", json!(["bob@other.org"])).await["code"],
        404
    );
    assert_eq!(
        env.err("subscriber.show", json!(["bob@other.org"])).await["code"],
        404
    );
    assert_eq!(
        env.err("subscriber.passwd", json!(["bob@other.org", "x"]))
            .await["code"],
        404
    );
}

#[tokio::test]
async fn subscriber_uses_the_configured_realm_and_is_durable() {
    let mut env = Env::new();
    env.ctx.realm = Some("sip.example.net".into());
    env.ok("subscriber.add", json!(["carol@example.com", "pw"]))
        .await;
    env.reopen();
    let s = env
        .ctx
        .location
        .subscriber("carol", "example.com")
        .expect("durable");
    assert_eq!(s.realm, "sip.example.net");
    assert_eq!(
        s.ha1_sha256,
        regmesh_registrar::ha1("carol", "sip.example.net", "pw").1
    );
}

#[tokio::test]
async fn subscriber_bad_params() {
    let env = Env::new();
    assert_invalid_param(
        &env.err("subscriber.add", json!(["alice@example.com"]))
            .await,
        "password",
    );
    assert_invalid_param(
        &env.err("subscriber.add", json!(["alice@example.com", ""]))
            .await,
        "password",
    );
    assert_invalid_param(
        &env.err("subscriber.add", json!(["alice", "pw"])).await,
        "aor",
    );
    assert_invalid_param(
        &env.err("subscriber.add", json!([{"a": 1}, "pw"])).await,
        "aor",
    );
    assert_invalid_param(
        &env.err("subscriber.add", json!({"user": "alice", "password": "pw"}))
            .await,
        "domain",
    );
    assert_invalid_param(
        &env.err(
            "subscriber.add",
            json!({"aor": "a@b", "password": "pw", "pass": 1}),
        )
        .await,
        "pass",
    );
    assert_invalid_param(&env.err("subscriber.show", json!([])).await, "aor");
    assert!(env.ctx.location.subscribers().is_empty());
}

// ---------------------------------------------------------------- stats / core

#[tokio::test]
async fn stats_use_kamailio_names_and_shape() {
    let env = Env::new();
    env.ok("ul.add", json!(["location", AOR, C1, 100, 1, "0", 0, 0, 0]))
        .await;
    env.ok("ul.add", json!(["location", AOR, C2, 100, 1, "0", 0, 0, 0]))
        .await;
    env.ok(
        "ul.add",
        json!([
            "location",
            "bob@example.com",
            "sip:bob@192.0.2.5",
            100,
            1,
            "0",
            0,
            0,
            0
        ]),
    )
    .await;
    env.ctx.stats.accepted_regs.store(5, Ordering::Relaxed);
    env.ctx.stats.rejected_regs.store(2, Ordering::Relaxed);

    let u = env.ok("stats.get_statistics", json!(["usrloc:"])).await;
    assert_eq!(
        u,
        json!([
            "usrloc:registered_users = 2",
            "usrloc:location-users = 2",
            "usrloc:location-contacts = 3",
            "usrloc:location-tombstones = 0"
        ])
    );
    let r = env.ok("stats.get_statistics", json!(["registrar:"])).await;
    assert_eq!(
        r,
        json!([
            "registrar:accepted_regs = 5",
            "registrar:rejected_regs = 2",
            "registrar:auth_challenges = 0",
            "registrar:auth_failures = 0",
            "registrar:bad_messages = 0",
            "registrar:dropped = 0",
            "registrar:lookups = 0",
            "registrar:redirects = 0",
            "registrar:not_found = 0",
            "registrar:options = 0",
            "registrar:overload_rejected = 0",
            "registrar:default_expire = 3600",
            "registrar:max_expires = 86400",
            "registrar:max_contacts = 0"
        ])
    );
    let all = env.ok("stats.get_statistics", json!(["all"])).await;
    assert_eq!(all.as_array().map(Vec::len), Some(18));
    let one = env
        .ok(
            "stats.get_statistics",
            json!(["usrloc:registered_users", "accepted_regs"]),
        )
        .await;
    assert_eq!(
        one,
        json!(["usrloc:registered_users = 2", "registrar:accepted_regs = 5"])
    );
    assert_eq!(
        env.ok("stats.get_statistics", json!(["nosuch:"])).await,
        json!([])
    );
    let f = env
        .ok(
            "stats.fetch",
            json!({"statistics": "usrloc:location-contacts"}),
        )
        .await;
    assert_eq!(f, json!({"usrloc.location-contacts": "3"}));
    let f = env
        .ok("stats.fetchn", json!(["registrar:rejected_regs"]))
        .await;
    assert_eq!(f, json!({"registrar.rejected_regs": 2}));

    assert_invalid_param(
        &env.err("stats.get_statistics", json!([])).await,
        "statistics",
    );
    assert_invalid_param(
        &env.err("stats.get_statistics", json!([{"x": 1}])).await,
        "statistics",
    );
}

#[tokio::test]
async fn core_methods() {
    let env = Env::new();
    let v = env.ok("core.version", json!([])).await;
    assert_eq!(v, format!("regmesh {}", env!("CARGO_PKG_VERSION")));
    env.clock.advance_secs(90);
    let u = env.ok("core.uptime", json!([])).await;
    assert_eq!(u["uptime"], 90);
    assert_eq!(u["up_since"], "Tue Nov 14 22:13:20 2023");
    assert_eq!(u["now"], "Tue Nov 14 22:14:50 2023");
    assert_eq!(env.err("core.uptime", json!([1])).await["code"], -32602);

    let list = env.ok("system.listMethods", json!([])).await;
    let names: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for m in [
        "ul.dump",
        "ul.lookup",
        "ul.rm",
        "ul.rm_contact",
        "ul.add",
        "subscriber.add",
        "subscriber.passwd",
        "subscriber.rm",
        "subscriber.show",
        "subscriber.list",
        "stats.get_statistics",
        "core.version",
        "core.uptime",
    ] {
        assert!(names.contains(&m), "{m} missing from {names:?}");
    }
    let help = env.ok("system.methodHelp", json!(["ul.add"])).await;
    assert!(help.as_str().is_some_and(|h| h.contains("expires")));
    assert_invalid_param(
        &env.err("system.methodHelp", json!(["nosuch"])).await,
        "method",
    );
}
