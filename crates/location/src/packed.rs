//! One table entry as memory holds it: its encoded value (codec format 1,
//! the very bytes the change log and snapshots hold) in one allocation.
//!
//! Why: a [`Binding`] is a struct of about 300 bytes with up to ten separately
//! allocated strings, and the table used to keep one per binding, plus the
//! AoR and contact a second time. At a million bindings that was ~840 bytes
//! each; the encoded value is ~250. The few fields the table reads on every
//! write (contact, version, deadline) sit at fixed places in the value (the
//! contact after the AoR at the front, the version at the back), so reading
//! them costs a varint and a slice, not a decode; the whole binding is
//! decoded only when a reader asks for it, which is what cloning it out of
//! the table cost before. Snapshots write the bytes as they are, and startup
//! keeps the bytes it read after checking them once.

use crate::clock::Timestamp;
use crate::codec::{self, DecodeError, View};
use crate::model::{Binding, Entry, Hlc, NodeId, Version};

/// Tag bytes of the codec (format 1): value = format, tag, str aor, str contact, ...
const TAG_LIVE: u8 = 0;

/// An entry in its encoded form; always a value [`codec::view_entry`] accepts.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Packed(Box<[u8]>);

impl std::fmt::Debug for Packed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.view().fmt(f)
    }
}

impl Packed {
    /// Wrap bytes the codec's encoder produced (checked in debug builds).
    pub(crate) fn from_encoded(bytes: Vec<u8>) -> Self {
        debug_assert!(codec::view_entry(&bytes).is_ok());
        Self(bytes.into_boxed_slice())
    }

    /// Check `bytes` (a value read from disk) and keep a copy; also returns
    /// the AoR so the caller can file it without decoding twice.
    pub(crate) fn read(bytes: &[u8]) -> Result<(Self, View<'_>), DecodeError> {
        let view = codec::view_entry(bytes)?;
        Ok((Self(Box::from(bytes)), view))
    }

    /// The encoded value.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// Where the AoR sits in the value.
    fn aor_range(&self) -> std::ops::Range<usize> {
        let (len, start) = varint(&self.0, 2);
        start..start + len
    }

    /// The AoR: the table files the entry under these bytes rather than
    /// keeping a second copy of the name (see `table`).
    pub(crate) fn aor(&self) -> &str {
        std::str::from_utf8(&self.0[self.aor_range()])
            .expect("invariant: a packed entry is valid UTF-8 where the codec says")
    }

    /// True when the entry's AoR is `aor` (byte comparison, no UTF-8
    /// check: this runs for every candidate a table lookup probes).
    pub(crate) fn has_aor(&self, aor: &str) -> bool {
        &self.0[self.aor_range()] == aor.as_bytes()
    }

    /// Position just past the AoR and contact strings, and the contact's range.
    fn head(&self) -> (usize, std::ops::Range<usize>) {
        let (contact_len, start) = varint(&self.0, self.aor_range().end);
        (start + contact_len, start..start + contact_len)
    }

    /// The contact URI (with the AoR, the entry's key).
    pub(crate) fn contact(&self) -> &str {
        let (_, range) = self.head();
        std::str::from_utf8(&self.0[range])
            .expect("invariant: a packed entry is valid UTF-8 where the codec says")
    }

    /// True when the entry's contact is `contact` (byte comparison, no
    /// UTF-8 check: this runs for every slot a write looks at).
    pub(crate) fn has_contact(&self, contact: &str) -> bool {
        let (_, range) = self.head();
        &self.0[range] == contact.as_bytes()
    }

    /// True when both entries have the same contact.
    pub(crate) fn same_contact(&self, other: &Self) -> bool {
        let (_, a) = self.head();
        let (_, b) = other.head();
        self.0[a] == other.0[b]
    }

    /// True for a tombstone.
    pub(crate) fn is_tombstone(&self) -> bool {
        self.0[1] != TAG_LIVE
    }

    /// The version of the write that produced the entry (the last 12 bytes
    /// of a binding; a tombstone's are followed by its `until`).
    pub(crate) fn version(&self) -> Version {
        let end = self.0.len() - if self.is_tombstone() { 8 } else { 0 };
        Version {
            hlc: Hlc(u64_at(&self.0, end - 12)),
            node: NodeId(u32_at(&self.0, end - 4)),
        }
    }

    /// A binding's expiry; `None` for a tombstone.
    pub(crate) fn live_expires(&self) -> Option<Timestamp> {
        if self.is_tombstone() {
            return None;
        }
        let (after, _) = self.head();
        Some(Timestamp(u64_at(&self.0, after)))
    }

    /// When the entry may leave the table: a binding's expiry, a tombstone's `until`.
    pub(crate) fn deadline(&self) -> Timestamp {
        self.live_expires()
            .unwrap_or_else(|| Timestamp(u64_at(&self.0, self.0.len() - 8)))
    }

    /// Every field, borrowed.
    pub(crate) fn view(&self) -> View<'_> {
        codec::view_entry(&self.0).expect("invariant: a packed entry is a valid codec value")
    }

    /// The entry, decoded.
    pub(crate) fn entry(&self) -> Entry {
        self.view().to_entry()
    }

    /// The binding, decoded; `None` for a tombstone.
    pub(crate) fn binding(&self) -> Option<Binding> {
        self.view().to_binding()
    }
}

/// An unsigned LEB128 varint at `pos` of a valid value: (value, position after).
fn varint(b: &[u8], mut pos: usize) -> (usize, usize) {
    let mut v = 0usize;
    let mut shift = 0;
    loop {
        let byte = b[pos];
        pos += 1;
        v |= usize::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return (v, pos);
        }
        shift += 7;
    }
}

fn u64_at(b: &[u8], pos: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[pos..pos + 8]);
    u64::from_le_bytes(a)
}

fn u32_at(b: &[u8], pos: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[pos..pos + 4]);
    u32::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::binding;

    fn pack(aor: &str, contact: &str, e: &Entry) -> Packed {
        Packed::from_encoded(codec::encode_entry(aor, contact, e))
    }

    #[test]
    fn fields_read_in_place_match_the_decoded_entry() {
        // A long AoR and contact make the length varints two bytes long.
        let aor = format!("{}@example.com", "a".repeat(200));
        let contact = format!("sip:{}@192.0.2.1:5060", "c".repeat(300));
        let mut b = binding(&aor, &contact, Timestamp(123_456));
        b.path.push("<sip:p;lr>".to_owned());
        b.version = Version {
            hlc: Hlc(0x0102_0304_0506_0708),
            node: NodeId(0x0a0b_0c0d),
        };
        let e = Entry::Live(b.clone());
        let p = pack(&aor, &contact, &e);
        assert_eq!(p.aor(), aor);
        assert!(p.has_aor(&aor));
        assert!(!p.has_aor("a@example.com"));
        assert_eq!(p.contact(), contact);
        assert!(p.has_contact(&contact));
        assert!(!p.has_contact("sip:other"));
        assert!(!p.is_tombstone());
        assert_eq!(p.version(), b.version);
        assert_eq!(p.live_expires(), Some(Timestamp(123_456)));
        assert_eq!(p.deadline(), Timestamp(123_456));
        assert_eq!(p.entry(), e);
        assert_eq!(p.binding(), Some(b));

        let t = Entry::Tombstone {
            version: Version {
                hlc: Hlc(77),
                node: NodeId(9),
            },
            until: Timestamp(555),
        };
        let p = pack("a@b", "sip:c", &t);
        assert_eq!(p.aor(), "a@b");
        assert!(p.has_aor("a@b") && !p.has_aor("a@bc") && !p.has_aor("a@"));
        assert_eq!(p.contact(), "sip:c");
        assert!(p.is_tombstone());
        assert_eq!(p.version(), t.version());
        assert_eq!(p.live_expires(), None);
        assert_eq!(p.deadline(), Timestamp(555));
        assert_eq!(p.entry(), t);
        assert_eq!(p.binding(), None);
    }

    #[test]
    fn read_checks_the_value() {
        let e = Entry::Live(binding("a@b", "sip:c", Timestamp(1)));
        let good = codec::encode_entry("a@b", "sip:c", &e);
        let (p, view) = Packed::read(&good).expect("valid");
        assert_eq!(view.aor, "a@b");
        assert_eq!(p.bytes(), &good[..]);
        assert!(Packed::read(&good[..good.len() - 1]).is_err());
    }
}
