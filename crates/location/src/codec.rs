//! The on-disk encoding of entries and subscribers (format 1); the in-memory
//! table holds entries in this same form (see `packed`).
//!
//! Hand-rolled rather than serde_json: at a million rows, startup decodes
//! every one, and a length-prefixed binary layout decodes several times
//! faster and is about half the size. Every value starts with a format
//! byte so a later layout can be told apart; a reader refuses a format it
//! does not know rather than guess.
//!
//! Primitives: `u8`; `u16`/`u32`/`u64` fixed width, little-endian; `len` an
//! unsigned LEB128 varint; `str` = `len` + UTF-8 bytes; `opt<T>` = `u8` 0
//! (absent) or 1 followed by `T`; `list<T>` = `len` count + items.
//!
//! ```text
//! table bindings     key   = aor bytes, 0x00, contact bytes
//!                    value = u8 format (1)
//!                            u8 tag (0 live binding, 1 tombstone)
//!                            str aor, str contact          (self-contained: the
//!                                                           key is never parsed)
//!   tag 0 (binding): u64 expires_ms, opt<u16> q, str call_id, u32 cseq,
//!                    u32 flags, u32 cflags, opt<str> user_agent,
//!                    opt<str> received, opt<str> socket, list<str> path,
//!                    opt<str> instance, opt<u32> reg_id, opt<u32> methods,
//!                    str ruid, u64 last_modified_ms, u32 origin,
//!                    u64 version.hlc, u32 version.node
//!   tag 1 (tombstone): u64 version.hlc, u32 version.node, u64 until_ms
//! table subscribers  key   = "user@domain"
//!                    value = u8 format (1), str user, str domain, str realm,
//!                            str ha1_md5, str ha1_sha256
//! table meta         "format" -> u8 (1); "node" -> u32 LE (the node id that
//!                    last opened the file)
//! ```
//!
//! An AoR or contact containing a NUL byte would make keys ambiguous; the
//! store refuses such changes before they reach this module.

use crate::clock::Timestamp;
use crate::model::{Binding, Change, ChangeKind, Entry, Hlc, NodeId, Version};
use crate::store::Subscriber;

/// The format this build writes and reads.
pub(crate) const FORMAT: u8 = 1;

const TAG_LIVE: u8 = 0;
const TAG_TOMBSTONE: u8 = 1;

/// A stored value that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("undecodable record: {what} at byte {offset}")]
pub struct DecodeError {
    /// Byte offset in the value where decoding failed.
    pub offset: usize,
    /// What was expected there.
    pub what: &'static str,
}

/// The key of a binding row: `aor \0 contact`.
pub(crate) fn binding_key(aor: &str, contact: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(aor.len() + 1 + contact.len());
    k.extend_from_slice(aor.as_bytes());
    k.push(0);
    k.extend_from_slice(contact.as_bytes());
    k
}

/// The key of a subscriber row: `user@domain`.
pub(crate) fn subscriber_key(user: &str, domain: &str) -> String {
    let mut key = String::with_capacity(user.len() + 1 + domain.len());
    push_subscriber_key(&mut key, user, domain);
    key
}

/// Append [`subscriber_key`] to `out` (lookups build it in a reused buffer).
pub(crate) fn push_subscriber_key(out: &mut String, user: &str, domain: &str) {
    out.push_str(user);
    out.push('@');
    out.push_str(domain);
}

struct Out(Vec<u8>);

impl Out {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn len(&mut self, n: usize) {
        // usize is at most 64 bits on every supported target.
        let mut n = n as u64;
        while n >= 0x80 {
            self.0.push((n as u8) | 0x80);
            n >>= 7;
        }
        self.0.push(n as u8);
    }
    fn str(&mut self, s: &str) {
        self.len(s.len());
        self.0.extend_from_slice(s.as_bytes());
    }
    fn opt_str(&mut self, s: Option<&str>) {
        match s {
            None => self.u8(0),
            Some(s) => {
                self.u8(1);
                self.str(s);
            }
        }
    }
    fn opt_u16(&mut self, v: Option<u16>) {
        match v {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                self.u16(v);
            }
        }
    }
    fn opt_u32(&mut self, v: Option<u32>) {
        match v {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                self.u32(v);
            }
        }
    }
    /// A live binding, stamped `version` (the binding's own field is not read).
    fn live(&mut self, aor: &str, contact: &str, b: &Binding, version: Version) {
        self.u8(FORMAT);
        self.u8(TAG_LIVE);
        self.str(aor);
        self.str(contact);
        self.u64(b.expires.0);
        self.opt_u16(b.q);
        self.str(&b.call_id);
        self.u32(b.cseq);
        self.u32(b.flags);
        self.u32(b.cflags);
        self.opt_str(b.user_agent.as_deref());
        self.opt_str(b.received.as_deref());
        self.opt_str(b.socket.as_deref());
        self.len(b.path.len());
        for p in &b.path {
            self.str(p);
        }
        self.opt_str(b.instance.as_deref());
        self.opt_u32(b.reg_id);
        self.opt_u32(b.methods);
        self.str(&b.ruid);
        self.u64(b.last_modified.0);
        self.u32(b.origin.0);
        self.u64(version.hlc.0);
        self.u32(version.node.0);
    }
    fn tombstone(&mut self, aor: &str, contact: &str, version: Version, until: Timestamp) {
        self.u8(FORMAT);
        self.u8(TAG_TOMBSTONE);
        self.str(aor);
        self.str(contact);
        self.u64(version.hlc.0);
        self.u32(version.node.0);
        self.u64(until.0);
    }
}

/// Encode one entry of the bindings table (tests build values from entries;
/// the store encodes changes with [`encode_change`]).
#[cfg(test)]
pub(crate) fn encode_entry(aor: &str, contact: &str, entry: &Entry) -> Vec<u8> {
    let mut o = Out(Vec::new());
    match entry {
        Entry::Live(b) => o.live(aor, contact, b, b.version),
        Entry::Tombstone { version, until } => o.tombstone(aor, contact, *version, *until),
    }
    o.0
}

/// Encode the entry `change` produces when it wins, exactly as
/// `encode_entry(aor, contact, &Entry::from_change(change))` would, without
/// cloning the binding into an [`Entry`] first (this runs once per write).
pub(crate) fn encode_change(change: &Change) -> Vec<u8> {
    let (aor, contact) = (change.aor.as_str(), change.contact.as_str());
    let mut o = Out(Vec::with_capacity(
        160 + aor.len() + contact.len() + change.binding.as_ref().map_or(0, binding_len),
    ));
    match (&change.kind, &change.binding) {
        (ChangeKind::Insert | ChangeKind::Refresh, Some(b)) => {
            o.live(aor, contact, b, change.version)
        }
        _ => o.tombstone(aor, contact, change.version, change.tombstone_until),
    }
    o.0
}

/// Bytes of a binding's variable-length fields (a capacity hint).
fn binding_len(b: &Binding) -> usize {
    b.call_id.len()
        + b.ruid.len()
        + [&b.user_agent, &b.received, &b.socket, &b.instance]
            .iter()
            .map(|s| s.as_ref().map_or(0, String::len))
            .sum::<usize>()
        + b.path.iter().map(|p| p.len() + 2).sum::<usize>()
}

/// Encode a subscriber row.
pub(crate) fn encode_subscriber(s: &Subscriber) -> Vec<u8> {
    let mut o = Out(Vec::with_capacity(
        16 + s.user.len() + s.domain.len() + s.realm.len() + s.ha1_md5.len() + s.ha1_sha256.len(),
    ));
    o.u8(FORMAT);
    o.str(&s.user);
    o.str(&s.domain);
    o.str(&s.realm);
    o.str(&s.ha1_md5);
    o.str(&s.ha1_sha256);
    o.0
}

struct In<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> In<'a> {
    fn err(&self, what: &'static str) -> DecodeError {
        DecodeError {
            offset: self.pos,
            what,
        }
    }
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or_else(|| self.err(what))?;
        let s = self.buf.get(self.pos..end).ok_or_else(|| self.err(what))?;
        self.pos = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    fn len(&mut self, what: &'static str) -> Result<usize, DecodeError> {
        let start = self.pos;
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.u8(what)?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                // A length can never exceed what is left of the value.
                return usize::try_from(v)
                    .ok()
                    .filter(|n| *n <= self.buf.len() - self.pos)
                    .ok_or(DecodeError {
                        offset: start,
                        what,
                    });
            }
        }
        Err(DecodeError {
            offset: start,
            what,
        })
    }
    fn str(&mut self, what: &'static str) -> Result<&'a str, DecodeError> {
        let n = self.len(what)?;
        let start = self.pos;
        let bytes = self.take(n, what)?;
        std::str::from_utf8(bytes).map_err(|_| DecodeError {
            offset: start,
            what,
        })
    }
    fn string(&mut self, what: &'static str) -> Result<String, DecodeError> {
        self.str(what).map(str::to_owned)
    }
    fn flag(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError {
                offset: self.pos - 1,
                what,
            }),
        }
    }
    fn opt_str(&mut self, what: &'static str) -> Result<Option<&'a str>, DecodeError> {
        if self.flag(what)? {
            self.str(what).map(Some)
        } else {
            Ok(None)
        }
    }
    fn opt_u16(&mut self, what: &'static str) -> Result<Option<u16>, DecodeError> {
        if self.flag(what)? {
            self.u16(what).map(Some)
        } else {
            Ok(None)
        }
    }
    fn opt_u32(&mut self, what: &'static str) -> Result<Option<u32>, DecodeError> {
        if self.flag(what)? {
            self.u32(what).map(Some)
        } else {
            Ok(None)
        }
    }
    fn format(&mut self) -> Result<(), DecodeError> {
        if self.u8("format byte")? == FORMAT {
            Ok(())
        } else {
            Err(DecodeError {
                offset: 0,
                what: "known format byte",
            })
        }
    }
    fn end(&self) -> Result<(), DecodeError> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(self.err("end of record"))
        }
    }
}

/// A decoded row of the bindings table: `(aor, contact, entry)`.
#[cfg(test)]
pub(crate) type Row = (String, String, Entry);

/// Decode one value of the bindings table.
#[cfg(test)]
pub(crate) fn decode_entry(buf: &[u8]) -> Result<Row, DecodeError> {
    let v = view_entry(buf)?;
    Ok((v.aor.to_owned(), v.contact.to_owned(), v.to_entry()))
}

/// One value of the bindings table read in place: every string borrows
/// from the value. Reading one is the validation of a value (startup reads
/// a million of them, so it allocates nothing unless a binding has a Path).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct View<'a> {
    pub(crate) aor: &'a str,
    pub(crate) contact: &'a str,
    pub(crate) body: ViewBody<'a>,
}

/// What a [`View`] holds for its key.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ViewBody<'a> {
    /// A binding.
    Live(LiveView<'a>),
    /// A removed binding.
    Tombstone { version: Version, until: Timestamp },
}

/// The fields of a binding, borrowed (see [`Binding`] for their meaning).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LiveView<'a> {
    pub(crate) expires: Timestamp,
    q: Option<u16>,
    call_id: &'a str,
    cseq: u32,
    flags: u32,
    cflags: u32,
    user_agent: Option<&'a str>,
    received: Option<&'a str>,
    socket: Option<&'a str>,
    path: Vec<&'a str>,
    instance: Option<&'a str>,
    reg_id: Option<u32>,
    methods: Option<u32>,
    pub(crate) ruid: &'a str,
    last_modified: Timestamp,
    origin: NodeId,
    pub(crate) version: Version,
}

impl View<'_> {
    /// The version of the write that produced the entry.
    pub(crate) fn version(&self) -> Version {
        match &self.body {
            ViewBody::Live(b) => b.version,
            ViewBody::Tombstone { version, .. } => *version,
        }
    }
    /// The binding, owned.
    pub(crate) fn to_binding(&self) -> Option<Binding> {
        let ViewBody::Live(b) = &self.body else {
            return None;
        };
        Some(Binding {
            aor: self.aor.to_owned(),
            contact: self.contact.to_owned(),
            expires: b.expires,
            q: b.q,
            call_id: b.call_id.to_owned(),
            cseq: b.cseq,
            flags: b.flags,
            cflags: b.cflags,
            user_agent: b.user_agent.map(str::to_owned),
            received: b.received.map(str::to_owned),
            socket: b.socket.map(str::to_owned),
            path: b.path.iter().map(|p| (*p).to_owned()).collect(),
            instance: b.instance.map(str::to_owned),
            reg_id: b.reg_id,
            methods: b.methods,
            ruid: b.ruid.to_owned(),
            last_modified: b.last_modified,
            origin: b.origin,
            version: b.version,
        })
    }
    /// The entry, owned.
    pub(crate) fn to_entry(&self) -> Entry {
        match &self.body {
            ViewBody::Live(_) => Entry::Live(
                self.to_binding()
                    .expect("invariant: a live view has a binding"),
            ),
            ViewBody::Tombstone { version, until } => Entry::Tombstone {
                version: *version,
                until: *until,
            },
        }
    }
}

/// Read one value of the bindings table in place, checking all of it.
pub(crate) fn view_entry(buf: &[u8]) -> Result<View<'_>, DecodeError> {
    let mut i = In { buf, pos: 0 };
    i.format()?;
    let tag = i.u8("entry tag")?;
    let aor = i.str("aor")?;
    let contact = i.str("contact")?;
    let body = match tag {
        TAG_LIVE => {
            let expires = Timestamp(i.u64("expires")?);
            let q = i.opt_u16("q")?;
            let call_id = i.str("call_id")?;
            let cseq = i.u32("cseq")?;
            let flags = i.u32("flags")?;
            let cflags = i.u32("cflags")?;
            let user_agent = i.opt_str("user_agent")?;
            let received = i.opt_str("received")?;
            let socket = i.opt_str("socket")?;
            let n = i.len("path count")?;
            let mut path = Vec::with_capacity(n.min(16));
            for _ in 0..n {
                path.push(i.str("path")?);
            }
            ViewBody::Live(LiveView {
                expires,
                q,
                call_id,
                cseq,
                flags,
                cflags,
                user_agent,
                received,
                socket,
                path,
                instance: i.opt_str("instance")?,
                reg_id: i.opt_u32("reg_id")?,
                methods: i.opt_u32("methods")?,
                ruid: i.str("ruid")?,
                last_modified: Timestamp(i.u64("last_modified")?),
                origin: NodeId(i.u32("origin")?),
                version: Version {
                    hlc: Hlc(i.u64("version hlc")?),
                    node: NodeId(i.u32("version node")?),
                },
            })
        }
        TAG_TOMBSTONE => ViewBody::Tombstone {
            version: Version {
                hlc: Hlc(i.u64("version hlc")?),
                node: NodeId(i.u32("version node")?),
            },
            until: Timestamp(i.u64("until")?),
        },
        _ => {
            return Err(DecodeError {
                offset: 1,
                what: "entry tag 0 or 1",
            });
        }
    };
    i.end()?;
    Ok(View { aor, contact, body })
}

/// Decode one value of the subscribers table.
pub(crate) fn decode_subscriber(buf: &[u8]) -> Result<Subscriber, DecodeError> {
    let mut i = In { buf, pos: 0 };
    i.format()?;
    let s = Subscriber {
        user: i.string("user")?,
        domain: i.string("domain")?,
        realm: i.string("realm")?,
        ha1_md5: i.string("ha1_md5")?,
        ha1_sha256: i.string("ha1_sha256")?,
    };
    i.end()?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::binding;
    use proptest::prelude::*;

    fn live() -> Entry {
        let mut b = binding(
            "alice@example.com",
            "sip:alice@192.0.2.1:5060",
            Timestamp(123_456),
        );
        b.path.push("<sip:second;lr>".to_owned());
        b.ruid = "r-1".to_owned();
        b.version = Version {
            hlc: Hlc(77 << 16),
            node: NodeId(3),
        };
        Entry::Live(b)
    }

    #[test]
    fn live_round_trip() {
        let e = live();
        let bytes = encode_entry("alice@example.com", "sip:alice@192.0.2.1:5060", &e);
        assert_eq!(bytes[0], FORMAT);
        let (aor, contact, back) = decode_entry(&bytes).expect("decodes");
        assert_eq!(aor, "alice@example.com");
        assert_eq!(contact, "sip:alice@192.0.2.1:5060");
        assert_eq!(back, e);
    }

    #[test]
    fn minimal_binding_round_trip() {
        let mut b = binding("a@b", "sip:c", Timestamp(1));
        b.q = None;
        b.user_agent = None;
        b.received = None;
        b.socket = None;
        b.path.clear();
        b.instance = None;
        b.reg_id = None;
        let e = Entry::Live(b);
        let bytes = encode_entry("a@b", "sip:c", &e);
        assert_eq!(decode_entry(&bytes).expect("decodes").2, e);
    }

    #[test]
    fn tombstone_round_trip() {
        let t = Entry::Tombstone {
            version: Version {
                hlc: Hlc(u64::MAX),
                node: NodeId(u32::MAX),
            },
            until: Timestamp(9),
        };
        let bytes = encode_entry("a@b", "sip:c", &t);
        assert_eq!(
            decode_entry(&bytes).expect("decodes"),
            ("a@b".to_owned(), "sip:c".to_owned(), t)
        );
    }

    #[test]
    fn subscriber_round_trip() {
        let s = Subscriber {
            user: "alice".to_owned(),
            domain: "example.com".to_owned(),
            realm: "example.com".to_owned(),
            ha1_md5: "0".repeat(32),
            ha1_sha256: "f".repeat(64),
        };
        assert_eq!(
            decode_subscriber(&encode_subscriber(&s)).expect("decodes"),
            s
        );
        assert_eq!(subscriber_key("alice", "example.com"), "alice@example.com");
    }

    #[test]
    fn key_layout() {
        assert_eq!(binding_key("a@b", "sip:c"), b"a@b\0sip:c".to_vec());
    }

    #[test]
    fn rejects_bad_input_without_panicking() {
        let good = encode_entry("a@b", "sip:c", &live());
        // Every truncation fails cleanly.
        for n in 0..good.len() {
            assert!(decode_entry(&good[..n]).is_err(), "truncated to {n}");
        }
        // Trailing garbage.
        let mut long = good.clone();
        long.push(0);
        assert_eq!(
            decode_entry(&long).map(|_| ()).unwrap_err().what,
            "end of record"
        );
        // Unknown format and tag.
        let mut f = good.clone();
        f[0] = 9;
        assert_eq!(
            decode_entry(&f).map(|_| ()).unwrap_err().what,
            "known format byte"
        );
        let mut t = good.clone();
        t[1] = 7;
        assert!(decode_entry(&t).is_err());
        // A huge length prefix does not allocate.
        let huge = [
            FORMAT, TAG_LIVE, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
        ];
        assert_eq!(decode_entry(&huge).map(|_| ()).unwrap_err().what, "aor");
        // Invalid UTF-8.
        let bad = [FORMAT, TAG_TOMBSTONE, 1, 0xff];
        assert_eq!(decode_entry(&bad).map(|_| ()).unwrap_err().offset, 3);
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..128)) {
            let _ = decode_entry(&bytes);
            let _ = decode_subscriber(&bytes);
        }

        #[test]
        fn arbitrary_strings_round_trip(aor in ".{0,40}", contact in ".{0,300}", ua in proptest::option::of(".{0,200}"), exp in any::<u64>()) {
            let mut b = binding(&aor, &contact, Timestamp(exp));
            b.user_agent = ua;
            let e = Entry::Live(b);
            let bytes = encode_entry(&aor, &contact, &e);
            prop_assert_eq!(decode_entry(&bytes).expect("decodes"), (aor, contact, e));
        }
    }
}
