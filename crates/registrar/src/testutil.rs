//! Helpers shared by this crate's unit tests: request builders, a fixed
//! context, parsed responses, and a model of the store applying ops.

use crate::{LocalSocket, NodeInfo, OverflowPolicy, Policy};
use regmesh_location::{Binding, Hlc, NodeId, Op, Timestamp, Version};
use regmesh_sip::{Message, Response, Source, Transport};

pub(crate) const T0: u64 = 1_700_000_000;

pub(crate) fn now() -> Timestamp {
    Timestamp::from_secs(T0)
}

pub(crate) fn policy() -> Policy {
    Policy {
        default_expires: 3600,
        min_expires: 60,
        max_expires: 7200,
        max_contacts: 0,
        overflow: OverflowPolicy::Reject,
    }
}

pub(crate) fn node() -> NodeInfo {
    NodeInfo { id: NodeId(7) }
}

pub(crate) fn source() -> Source {
    Source {
        transport: Transport::Udp,
        addr: "192.0.2.10:5062".parse().expect("addr"),
    }
}

pub(crate) fn local() -> LocalSocket {
    LocalSocket {
        transport: Transport::Udp,
        addr: "127.0.0.1:5060".parse().expect("addr"),
    }
}

/// A REGISTER for `sip:alice@example.com`, built field by field.
#[derive(Debug, Clone)]
pub(crate) struct Reg {
    pub(crate) call_id: String,
    pub(crate) cseq: u32,
    pub(crate) to: String,
    pub(crate) contacts: Vec<String>,
    pub(crate) headers: Vec<String>,
}

pub(crate) fn reg() -> Reg {
    Reg {
        call_id: "call-1@ua.example.com".to_owned(),
        cseq: 1,
        to: "<sip:alice@example.com>".to_owned(),
        contacts: Vec::new(),
        headers: Vec::new(),
    }
}

impl Reg {
    pub(crate) fn contact(mut self, c: &str) -> Self {
        self.contacts.push(c.to_owned());
        self
    }
    pub(crate) fn header(mut self, h: &str) -> Self {
        self.headers.push(h.to_owned());
        self
    }
    pub(crate) fn cseq(mut self, n: u32) -> Self {
        self.cseq = n;
        self
    }
    pub(crate) fn call_id(mut self, c: &str) -> Self {
        self.call_id = c.to_owned();
        self
    }
    pub(crate) fn to(mut self, t: &str) -> Self {
        self.to = t.to_owned();
        self
    }
    pub(crate) fn build(&self) -> Vec<u8> {
        let mut s = String::new();
        s.push_str("REGISTER sip:example.com SIP/2.0\r\n");
        s.push_str("Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK-reg-1;rport\r\n");
        s.push_str("Max-Forwards: 70\r\n");
        s.push_str("From: <sip:alice@example.com>;tag=from-1\r\n");
        s.push_str(&format!("To: {}\r\n", self.to));
        s.push_str(&format!("Call-ID: {}\r\n", self.call_id));
        s.push_str(&format!("CSeq: {} REGISTER\r\n", self.cseq));
        for c in &self.contacts {
            s.push_str(&format!("Contact: {c}\r\n"));
        }
        for h in &self.headers {
            s.push_str(h);
            s.push_str("\r\n");
        }
        s.push_str("User-Agent: test-phone/1.0\r\n");
        s.push_str("Content-Length: 0\r\n\r\n");
        s.into_bytes()
    }
}

/// A non-REGISTER request with the given start line and extra headers.
pub(crate) fn request(method: &str, uri: &str, extra: &[&str]) -> Vec<u8> {
    let mut s = format!("{method} {uri} SIP/2.0\r\n");
    s.push_str("Via: SIP/2.0/UDP 192.0.2.20:5060;branch=z9hG4bK-req-1\r\n");
    s.push_str("From: <sip:bob@example.com>;tag=bob-1\r\n");
    s.push_str(&format!("To: <{uri}>\r\n"));
    s.push_str("Call-ID: req-call-1\r\n");
    s.push_str(&format!("CSeq: 1 {method}\r\n"));
    let has_mf = extra.iter().any(|h| h.starts_with("Max-Forwards"));
    if !has_mf {
        s.push_str("Max-Forwards: 70\r\n");
    }
    for h in extra {
        s.push_str(h);
        s.push_str("\r\n");
    }
    s.push_str("Content-Length: 0\r\n\r\n");
    s.into_bytes()
}

/// Parse response bytes (panics in tests when they are not a response).
pub(crate) fn resp(bytes: &[u8]) -> Response<'_> {
    match regmesh_sip::parse(bytes) {
        Ok(Message::Response(r)) => r,
        other => panic!(
            "not a response: {other:?}\n{}",
            String::from_utf8_lossy(bytes)
        ),
    }
}

/// Every value of header `name` in a response.
pub(crate) fn all<'r>(r: &'r Response<'_>, name: &'r str) -> Vec<&'r str> {
    r.headers.get_all(name).collect()
}

/// A binding as a previous REGISTER of this test suite would have left it.
pub(crate) fn bound(contact: &str, call_id: &str, cseq: u32, expires_in: u64) -> Binding {
    Binding {
        aor: "alice@example.com".to_owned(),
        contact: contact.to_owned(),
        expires: now().saturating_add_secs(expires_in),
        q: None,
        call_id: call_id.to_owned(),
        cseq,
        flags: 0,
        cflags: 0,
        user_agent: None,
        received: None,
        socket: None,
        path: Vec::new(),
        instance: None,
        reg_id: None,
        methods: None,
        ruid: format!("ruid-{contact}"),
        last_modified: now().saturating_sub_secs(100),
        origin: NodeId(1),
        version: Version {
            hlc: Hlc(1),
            node: NodeId(1),
        },
    }
}

/// What the store would hold after `ops` (a model: one entry per contact).
pub(crate) fn apply_ops(table: &mut Vec<Binding>, ops: &[Op]) {
    for op in ops {
        match op {
            Op::Insert(b) | Op::Refresh(b) => {
                table.retain(|x| x.contact != b.contact);
                table.push(b.clone());
            }
            Op::Remove { contact, .. } => table.retain(|x| &x.contact != contact),
        }
    }
}
