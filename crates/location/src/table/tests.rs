use super::*;
use crate::codec::encode_entry;
use crate::model::{Entry, Hlc, NodeId, Version};
use crate::testutil::binding;
use proptest::prelude::*;
use std::collections::BTreeSet;

fn live(aor: &str, contact: &str, expires: u64) -> Packed {
    let e = Entry::Live(binding(aor, contact, Timestamp(expires)));
    Packed::from_encoded(encode_entry(aor, contact, &e))
}

fn tomb(aor: &str, contact: &str, until: u64) -> Packed {
    let e = Entry::Tombstone {
        version: Version {
            hlc: Hlc(1),
            node: NodeId(1),
        },
        until: Timestamp(until),
    };
    Packed::from_encoded(encode_entry(aor, contact, &e))
}

fn first_deadline(s: &Shard) -> Option<Timestamp> {
    s.deadlines.first_key_value().map(|((t, _), _)| *t)
}

/// The shard's invariants: no empty `Slots`; each AoR found under its own
/// name; the expiry index counts exactly `(deadline, hash)` of every AoR.
fn check(s: &Shard) {
    let mut want: BTreeMap<(Timestamp, u64), u32> = BTreeMap::new();
    for slots in s.aors.iter() {
        assert!(!slots.is_empty());
        let found = s.find(slots.aor()).expect("every AoR held is found");
        assert!(std::ptr::eq(found, slots));
        *want
            .entry((slots.deadline(), s.hasher.hash(slots.aor())))
            .or_default() += 1;
    }
    assert_eq!(s.deadlines, want);
}

/// Every (AoR, contact) held, with its deadline.
fn held(s: &Shard) -> BTreeSet<(String, String, Timestamp)> {
    s.records()
        .flat_map(|(aor, slots)| {
            slots
                .iter()
                .map(move |p| (aor.to_owned(), p.contact().to_owned(), p.deadline()))
        })
        .collect()
}

fn expire_all(s: &mut Shard, now: u64, counts: &Counts) -> Vec<(String, String)> {
    let mut gone = Vec::new();
    s.expire(Timestamp(now), counts, |aor, p| {
        assert_eq!(p.aor(), aor);
        gone.push((aor.to_owned(), p.contact().to_owned()));
    });
    gone.sort();
    check(s);
    gone
}

fn pair(aor: &str, contact: &str) -> (String, String) {
    (aor.to_owned(), contact.to_owned())
}

fn counts(t: &Table) -> (u64, u64, u64) {
    let c = t.counts();
    (
        c.aors.load(Ordering::Relaxed),
        c.bindings.load(Ordering::Relaxed),
        c.tombstones.load(Ordering::Relaxed),
    )
}

#[test]
fn put_get_live_and_counts() {
    let t = Table::new();
    {
        let mut s = t.lock("a@x");
        s.put("a@x", live("a@x", "sip:1", 100), t.counts());
        s.put("a@x", live("a@x", "sip:2", 50), t.counts());
    }
    assert_eq!(counts(&t), (1, 2, 0));
    let s = t.lock("a@x");
    assert_eq!(s.live("a@x", Timestamp(10)).len(), 2);
    // Past one binding's expiry, lookup no longer shows it.
    let at60: Vec<_> = s
        .live("a@x", Timestamp(60))
        .into_iter()
        .map(|b| b.contact)
        .collect();
    assert_eq!(at60, vec!["sip:1".to_owned()]);
    assert!(s.get("a@x", "sip:2").is_some());
    assert!(s.get("a@x", "sip:3").is_none());
    assert!(s.live("b@x", Timestamp(0)).is_empty());
}

#[test]
fn tombstone_replaces_binding_and_counts_follow() {
    let t = Table::new();
    let mut s = t.lock("a@x");
    s.put("a@x", live("a@x", "sip:1", 100), t.counts());
    s.put("a@x", tomb("a@x", "sip:1", 100), t.counts());
    drop(s);
    assert_eq!(counts(&t), (0, 0, 1));
    let mut s = t.lock("a@x");
    s.delete("a@x", "sip:1", t.counts());
    assert!(s.aors.is_empty());
    assert!(s.deadlines.is_empty());
    drop(s);
    assert_eq!(counts(&t), (0, 0, 0));
}

#[test]
fn index_tracks_earliest_deadline() {
    let t = Table::new();
    let mut s = t.lock("a@x");
    s.put("a@x", live("a@x", "sip:1", 100), t.counts());
    assert_eq!(first_deadline(&s), Some(Timestamp(100)));
    s.put("a@x", live("a@x", "sip:2", 40), t.counts());
    assert_eq!(s.deadlines.len(), 1);
    assert_eq!(first_deadline(&s), Some(Timestamp(40)));
    // Refreshing the early one moves the deadline to the other.
    s.put("a@x", live("a@x", "sip:2", 300), t.counts());
    assert_eq!(s.deadlines.len(), 1);
    assert_eq!(first_deadline(&s), Some(Timestamp(100)));
}

#[test]
fn expire_removes_only_what_is_due() {
    let t = Table::new();
    let mut s = t.lock("a@x");
    s.put("a@x", live("a@x", "sip:1", 100), t.counts());
    s.put("a@x", live("a@x", "sip:2", 40), t.counts());
    s.put("a@x", tomb("a@x", "sip:3", 30), t.counts());
    assert!(!s.has_due(Timestamp(29)));
    assert!(s.has_due(Timestamp(40)));
    let mut gone = Vec::new();
    s.expire(Timestamp(40), t.counts(), |aor, entry| {
        gone.push((aor.to_owned(), entry.contact().to_owned()))
    });
    gone.sort();
    assert_eq!(
        gone,
        vec![
            ("a@x".to_owned(), "sip:2".to_owned()),
            ("a@x".to_owned(), "sip:3".to_owned())
        ]
    );
    assert!(!s.has_due(Timestamp(99)));
    assert_eq!(first_deadline(&s), Some(Timestamp(100)));
    drop(s);
    assert_eq!(counts(&t), (1, 1, 0));
    let mut s = t.lock("a@x");
    s.expire(Timestamp(1000), t.counts(), |_, _| {});
    assert!(s.aors.is_empty() && s.deadlines.is_empty());
    drop(s);
    assert_eq!(counts(&t), (0, 0, 0));
}

#[test]
fn from_rows_spreads_over_shards() {
    let rows: Vec<Row> = (0..1000)
        .map(|i| {
            let aor = format!("u{i}@x");
            let e = Entry::Live(binding(&aor, "sip:c", Timestamp(10)));
            (aor.clone(), "sip:c".to_owned(), e)
        })
        .collect();
    let t = Table::from_rows(rows);
    assert_eq!(counts(&t), (1000, 1000, 0));
    let used = t
        .shards()
        .iter()
        .filter(|s| !s.lock().aors.is_empty())
        .count();
    assert_eq!(used, SHARDS);
}

#[test]
fn colliding_aors_are_told_apart_by_name() {
    // Mask 0: every AoR of the shard has hash 0.
    let mut s = Shard::with_hash_mask(0);
    let c = Counts::default();
    s.put("a@x", live("a@x", "sip:1", 100), &c);
    s.put("b@x", live("b@x", "sip:2", 100), &c);
    s.put("b@x", live("b@x", "sip:3", 200), &c);
    check(&s);
    assert_eq!(s.aors.len(), 2);
    // Both AoRs share (deadline, hash): one key, counted twice.
    assert_eq!(s.deadlines.len(), 1);
    assert_eq!(s.deadlines.get(&(Timestamp(100), 0)), Some(&2));
    assert!(s.get("a@x", "sip:1").is_some());
    assert!(s.get("a@x", "sip:2").is_none());
    assert_eq!(s.live("b@x", Timestamp(0)).len(), 2);
    assert!(s.live("c@x", Timestamp(0)).is_empty());
    s.delete("a@x", "sip:1", &c);
    check(&s);
    assert_eq!(s.deadlines.get(&(Timestamp(100), 0)), Some(&1));
    assert!(s.get("b@x", "sip:2").is_some());
}

#[test]
fn one_due_key_expires_every_due_aor_of_its_hash() {
    let mut s = Shard::with_hash_mask(0);
    let c = Counts::default();
    s.put("a@x", live("a@x", "sip:1", 100), &c);
    s.put("b@x", live("b@x", "sip:2", 100), &c);
    s.put("d@x", live("d@x", "sip:4", 40), &c);
    s.put("e@x", live("e@x", "sip:5", 500), &c);
    // The key (40, 0) comes first and takes d, a and b, all due at 100.
    let gone = expire_all(&mut s, 100, &c);
    assert_eq!(
        gone,
        vec![
            pair("a@x", "sip:1"),
            pair("b@x", "sip:2"),
            pair("d@x", "sip:4")
        ]
    );
    assert_eq!(held(&s).len(), 1);
    assert_eq!(first_deadline(&s), Some(Timestamp(500)));
    assert_eq!(c.bindings.load(Ordering::Relaxed), 1);
}

#[test]
fn an_aor_sharing_a_key_still_expires_after_the_other_is_refreshed() {
    let mut s = Shard::with_hash_mask(0);
    let c = Counts::default();
    s.put("a@x", live("a@x", "sip:1", 100), &c);
    s.put("b@x", live("b@x", "sip:2", 100), &c);
    // Refreshing a moves its count; b's stays under (100, 0).
    s.put("a@x", live("a@x", "sip:1", 300), &c);
    check(&s);
    assert_eq!(s.deadlines.get(&(Timestamp(100), 0)), Some(&1));
    assert!(s.has_due(Timestamp(100)));
    assert_eq!(expire_all(&mut s, 100, &c), vec![pair("b@x", "sip:2")]);
    assert!(s.get("a@x", "sip:1").is_some());
    assert_eq!(first_deadline(&s), Some(Timestamp(300)));
    assert!(!s.has_due(Timestamp(299)));
    assert_eq!(expire_all(&mut s, 300, &c), vec![pair("a@x", "sip:1")]);
    assert!(s.aors.is_empty() && s.deadlines.is_empty());
}

#[test]
fn builder_counts_aors_sharing_a_key() {
    let mut b = TableBuilder::new();
    for shard in b.table.shards.iter_mut() {
        *shard.get_mut() = Shard::with_hash_mask(0);
    }
    for i in 0..200 {
        let aor = format!("u{i}@x");
        b.insert(&aor, live(&aor, "sip:c", 10 + i % 3));
    }
    b.remove("u0@x", "sip:c");
    let (t, dropped) = b.finish_at(Timestamp(10));
    // u0 removed; u3, u6, ... (deadline 10) dropped as already due.
    assert_eq!(dropped, 66);
    assert_eq!(counts(&t), (133, 133, 0));
    let mut left = 0;
    for shard in t.shards() {
        let mut s = shard.lock();
        check(&s);
        left += expire_all(&mut s, 11, t.counts()).len();
    }
    assert_eq!(left, 67);
    assert_eq!(counts(&t), (66, 66, 0));
}

#[derive(Debug, Clone)]
enum Op {
    Put {
        aor: u8,
        contact: u8,
        deadline: u64,
        tombstone: bool,
    },
    Delete {
        aor: u8,
        contact: u8,
    },
    Expire {
        now: u64,
    },
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..5u8, 0..3u8, 1..30u64, any::<bool>()).prop_map(|(aor, contact, deadline, tombstone)| {
            Op::Put { aor, contact, deadline, tombstone }
        }),
        1 => (0..5u8, 0..3u8).prop_map(|(aor, contact)| Op::Delete { aor, contact }),
        1 => (0..30u64).prop_map(|now| Op::Expire { now }),
    ]
}

proptest! {
    /// Against a plain map of (AoR, contact) -> deadline, with every AoR
    /// colliding (mask 0), two hashes (mask 1) or real hashes.
    #[test]
    fn shard_matches_a_model(
        mask in prop_oneof![Just(0u64), Just(1), Just(u64::MAX)],
        ops in prop::collection::vec(arb_op(), 1..80),
    ) {
        let mut s = Shard::with_hash_mask(mask);
        let c = Counts::default();
        let mut model: BTreeMap<(String, String), (Timestamp, bool)> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Put { aor, contact, deadline, tombstone } => {
                    let (aor, contact) = (format!("u{aor}@x"), format!("sip:{contact}"));
                    let p = if tombstone {
                        tomb(&aor, &contact, deadline)
                    } else {
                        live(&aor, &contact, deadline)
                    };
                    s.put(&aor, p, &c);
                    model.insert((aor, contact), (Timestamp(deadline), tombstone));
                }
                Op::Delete { aor, contact } => {
                    let (aor, contact) = (format!("u{aor}@x"), format!("sip:{contact}"));
                    s.delete(&aor, &contact, &c);
                    model.remove(&(aor, contact));
                }
                Op::Expire { now } => {
                    let gone = expire_all(&mut s, now, &c);
                    let due: Vec<_> = model
                        .iter()
                        .filter(|(_, (d, _))| d.0 <= now)
                        .map(|(k, _)| k.clone())
                        .collect();
                    model.retain(|_, (d, _)| d.0 > now);
                    prop_assert_eq!(gone, due);
                    prop_assert!(!s.has_due(Timestamp(now)));
                }
            }
            check(&s);
            let want: BTreeSet<_> = model
                .iter()
                .map(|((a, k), (d, _))| (a.clone(), k.clone(), *d))
                .collect();
            prop_assert_eq!(held(&s), want);
            let live_aors: BTreeSet<_> =
                model.iter().filter(|(_, (_, t))| !t).map(|((a, _), _)| a).collect();
            let live = model.values().filter(|(_, t)| !t).count() as u64;
            prop_assert_eq!(c.aors.load(Ordering::Relaxed), live_aors.len() as u64);
            prop_assert_eq!(c.bindings.load(Ordering::Relaxed), live);
            prop_assert_eq!(c.tombstones.load(Ordering::Relaxed), model.len() as u64 - live);
        }
    }
}
