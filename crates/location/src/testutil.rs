//! Helpers shared by the unit tests of this crate.

use crate::clock::Timestamp;
use crate::model::{Binding, Hlc, NodeId, Version};

/// A binding with every optional field set, expiring at `expires`.
pub(crate) fn binding(aor: &str, contact: &str, expires: Timestamp) -> Binding {
    Binding {
        aor: aor.to_owned(),
        contact: contact.to_owned(),
        expires,
        q: Some(500),
        call_id: format!("call-{contact}"),
        cseq: 1,
        flags: 0,
        cflags: 0,
        user_agent: Some("test-ua/1.0".to_owned()),
        received: Some("sip:192.0.2.1:5060;transport=udp".to_owned()),
        socket: Some("udp:127.0.0.1:5060".to_owned()),
        path: vec!["<sip:edge.example.com;lr>".to_owned()],
        instance: Some("<urn:uuid:00000000-0000-0000-0000-000000000001>".to_owned()),
        reg_id: Some(1),
        methods: None,
        ruid: String::new(),
        last_modified: Timestamp::ZERO,
        origin: NodeId(1),
        version: Version {
            hlc: Hlc(0),
            node: NodeId(0),
        },
    }
}
