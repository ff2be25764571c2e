use super::*;
use crate::clock::Timestamp;
use crate::model::{ChangeKind, Hlc, NodeId, Version};
use crate::testutil::binding;
use proptest::prelude::*;
use std::collections::BTreeMap;

fn v(hlc: u64, node: u32) -> Version {
    Version {
        hlc: Hlc(hlc),
        node: NodeId(node),
    }
}

fn upsert(contact: &str, version: Version, expires: u64) -> Change {
    let mut b = binding("alice@example.com", contact, Timestamp(expires));
    b.version = version;
    Change {
        kind: ChangeKind::Refresh,
        aor: b.aor.clone(),
        contact: contact.to_owned(),
        version,
        binding: Some(b),
        tombstone_until: Timestamp::ZERO,
    }
}

fn remove(contact: &str, version: Version, until: u64) -> Change {
    Change {
        kind: ChangeKind::Remove,
        aor: "alice@example.com".to_owned(),
        contact: contact.to_owned(),
        version,
        binding: None,
        tombstone_until: Timestamp(until),
    }
}

#[test]
fn first_write_is_applied() {
    let c = upsert("sip:a@h", v(1, 1), 10);
    let (d, e) = merge(None, &c);
    assert_eq!(d, MergeDecision::Applied);
    assert_eq!(
        e.and_then(|e| e.binding().map(|b| b.contact.clone())),
        Some("sip:a@h".to_owned())
    );
}

#[test]
fn newer_wins_older_is_stale_same_is_duplicate() {
    let old = Entry::from_change(&upsert("sip:a@h", v(5, 1), 10));
    let (d, e) = merge(Some(&old), &upsert("sip:a@h", v(6, 1), 20));
    assert_eq!(d, MergeDecision::Applied);
    assert_eq!(e.map(|e| e.deadline()), Some(Timestamp(20)));
    assert_eq!(
        merge(Some(&old), &upsert("sip:a@h", v(4, 1), 30)),
        (MergeDecision::Stale, None)
    );
    assert_eq!(
        merge(Some(&old), &upsert("sip:a@h", v(5, 1), 10)),
        (MergeDecision::Duplicate, None)
    );
}

#[test]
fn ties_break_on_node_id() {
    let a = upsert("sip:a@h", v(7, 1), 10);
    let b = upsert("sip:a@h", v(7, 2), 99);
    let ea = Entry::from_change(&a);
    let eb = Entry::from_change(&b);
    // Node 2 wins in both orders.
    assert_eq!(merge(Some(&ea), &b).0, MergeDecision::Applied);
    assert_eq!(merge(Some(&eb), &a).0, MergeDecision::Stale);
}

#[test]
fn removal_leaves_a_tombstone_that_rejects_older_writes() {
    let live = Entry::from_change(&upsert("sip:a@h", v(1, 1), 10));
    let (d, t) = merge(Some(&live), &remove("sip:a@h", v(2, 2), 10));
    assert_eq!(d, MergeDecision::Applied);
    let t = t.expect("applied");
    assert_eq!(
        t,
        Entry::Tombstone {
            version: v(2, 2),
            until: Timestamp(10)
        }
    );
    // The insert that the removal deleted arrives again (a duplicate from a peer).
    assert_eq!(
        merge(Some(&t), &upsert("sip:a@h", v(1, 1), 10)).0,
        MergeDecision::Stale
    );
    // A newer registration brings the binding back.
    assert_eq!(
        merge(Some(&t), &upsert("sip:a@h", v(3, 1), 10)).0,
        MergeDecision::Applied
    );
}

#[test]
fn remove_of_unknown_key_still_leaves_a_tombstone() {
    // The removal can arrive before the insert it deletes.
    let (d, t) = merge(None, &remove("sip:a@h", v(2, 1), 10));
    assert_eq!(d, MergeDecision::Applied);
    let t = t.expect("applied");
    assert!(t.is_tombstone());
    assert_eq!(
        merge(Some(&t), &upsert("sip:a@h", v(1, 1), 10)).0,
        MergeDecision::Stale
    );
}

#[test]
fn equal_versions_with_different_content_break_deterministically() {
    let a = upsert("sip:a@h", v(7, 1), 10);
    let mut b = upsert("sip:a@h", v(7, 1), 10);
    if let Some(x) = b.binding.as_mut() {
        x.cseq = 2;
    }
    let ea = Entry::from_change(&a);
    let eb = Entry::from_change(&b);
    // b compares greater (cseq), in both directions.
    assert_eq!(merge(Some(&ea), &b).0, MergeDecision::Applied);
    assert_eq!(merge(Some(&eb), &a).0, MergeDecision::Stale);
    // A tombstone beats a binding of the same version.
    assert_eq!(
        merge(Some(&ea), &remove("sip:a@h", v(7, 1), 1)).0,
        MergeDecision::Applied
    );
}

#[test]
fn from_change_sets_binding_version() {
    let mut c = upsert("sip:a@h", v(9, 3), 10);
    if let Some(b) = c.binding.as_mut() {
        b.version = v(1, 1);
    }
    assert_eq!(Entry::from_change(&c).version(), v(9, 3));
    // A malformed insert without binding reads as a removal.
    c.binding = None;
    assert!(Entry::from_change(&c).is_tombstone());
}

#[test]
fn to_change_round_trips() {
    let e = Entry::from_change(&upsert("sip:a@h", v(3, 1), 10));
    let c = e.to_change("alice@example.com", "sip:a@h");
    assert_eq!(merge(None, &c).1, Some(e.clone()));
    assert_eq!(merge(Some(&e), &c).0, MergeDecision::Duplicate);
    let t = Entry::Tombstone {
        version: v(4, 2),
        until: Timestamp(8),
    };
    assert_eq!(
        merge(None, &t.to_change("alice@example.com", "sip:a@h")).1,
        Some(t)
    );
}

// ---------------------------------------------------------------- properties

type Table = BTreeMap<(String, String), Entry>;

fn apply(table: &mut Table, c: &Change) -> MergeDecision {
    let key = (c.aor.clone(), c.contact.clone());
    let (d, new) = merge(table.get(&key), c);
    if let Some(e) = new {
        table.insert(key, e);
    }
    d
}

fn fold<'a>(changes: impl IntoIterator<Item = &'a Change>) -> Table {
    let mut t = Table::new();
    for c in changes {
        apply(&mut t, c);
    }
    t
}

/// Exchange whole tables, as snapshot sync does.
fn join(a: &Table, b: &Table) -> Table {
    let mut out = a.clone();
    for ((aor, contact), e) in b {
        apply(&mut out, &e.to_change(aor, contact));
    }
    out
}

fn arb_change() -> impl Strategy<Value = Change> {
    (
        prop::sample::select(vec!["alice@a", "bob@b"]),
        prop::sample::select(vec!["sip:x@1", "sip:y@2", "sip:z@3"]),
        1u64..6,
        1u32..4,
        0u8..3,
        0u64..10,
        0u64..10,
    )
        .prop_map(|(aor, contact, hlc, node, kind, expires, cseq)| {
            let version = v(hlc, node);
            if kind == 2 {
                return Change {
                    kind: ChangeKind::Remove,
                    aor: aor.to_owned(),
                    contact: contact.to_owned(),
                    version,
                    binding: None,
                    tombstone_until: Timestamp(expires),
                };
            }
            let mut b = binding(aor, contact, Timestamp(expires));
            b.version = version;
            b.cseq = u32::try_from(cseq).unwrap_or(0);
            Change {
                kind: if kind == 0 {
                    ChangeKind::Insert
                } else {
                    ChangeKind::Refresh
                },
                aor: aor.to_owned(),
                contact: contact.to_owned(),
                version,
                binding: Some(b),
                tombstone_until: Timestamp::ZERO,
            }
        })
}

fn changes_and_shuffle() -> impl Strategy<Value = (Vec<Change>, Vec<Change>)> {
    prop::collection::vec(arb_change(), 0..24).prop_flat_map(|cs| {
        // The same changes, each delivered one to three times, in any order.
        let n = cs.len();
        (Just(cs), prop::collection::vec(1usize..4, n)).prop_flat_map(|(cs, reps)| {
            let delivered: Vec<Change> = cs
                .iter()
                .zip(&reps)
                .flat_map(|(c, r)| std::iter::repeat_n(c.clone(), *r))
                .collect();
            (Just(cs), Just(delivered).prop_shuffle())
        })
    })
}

proptest! {
    /// The table keeps entries encoded (`Packed`) and decides without
    /// decoding them: that must be exactly the rule, and the encoding of a
    /// winning change exactly the entry the rule would store.
    #[test]
    fn deciding_on_packed_entries_is_the_merge_rule(mut held in arb_change(), change in arb_change()) {
        // What the table holds is under the change's key.
        held.aor.clone_from(&change.aor);
        held.contact.clone_from(&change.contact);
        if let Some(b) = &mut held.binding {
            b.aor.clone_from(&change.aor);
            b.contact.clone_from(&change.contact);
        }
        let e = Entry::from_change(&held);
        let packed = Packed::from_encoded(crate::codec::encode_entry(&change.aor, &change.contact, &e));
        prop_assert_eq!(decide(Some(&packed), &change), merge(Some(&e), &change).0);
        prop_assert_eq!(decide(None, &change), merge(None, &change).0);
        prop_assert_eq!(
            crate::codec::encode_change(&change),
            crate::codec::encode_entry(&change.aor, &change.contact, &Entry::from_change(&change))
        );
    }

    #[test]
    fn any_order_and_duplicates_give_the_same_table((changes, delivered) in changes_and_shuffle()) {
        prop_assert_eq!(fold(&changes), fold(&delivered));
    }

    #[test]
    fn merge_is_idempotent(changes in prop::collection::vec(arb_change(), 0..16), last in arb_change()) {
        let mut t = fold(&changes);
        apply(&mut t, &last);
        let once = t.clone();
        let d = apply(&mut t, &last);
        prop_assert_ne!(d, MergeDecision::Applied);
        prop_assert_eq!(once, t);
    }

    #[test]
    fn table_join_is_commutative_and_associative(
        a in prop::collection::vec(arb_change(), 0..10),
        b in prop::collection::vec(arb_change(), 0..10),
        c in prop::collection::vec(arb_change(), 0..10),
    ) {
        let (ta, tb, tc) = (fold(&a), fold(&b), fold(&c));
        prop_assert_eq!(join(&ta, &tb), join(&tb, &ta));
        prop_assert_eq!(join(&join(&ta, &tb), &tc), join(&ta, &join(&tb, &tc)));
        // And exchanging tables equals seeing every change.
        let all: Vec<Change> = a.iter().chain(&b).chain(&c).cloned().collect();
        prop_assert_eq!(join(&join(&ta, &tb), &tc), fold(&all));
    }

    #[test]
    fn ties_on_hlc_break_on_node_id(hlc in 1u64..100, n1 in 0u32..50, n2 in 51u32..100, e1 in 0u64..9, e2 in 0u64..9) {
        let lo = upsert("sip:a@h", v(hlc, n1), e1);
        let hi = upsert("sip:a@h", v(hlc, n2), e2);
        let t1 = fold([&lo, &hi]);
        let t2 = fold([&hi, &lo]);
        prop_assert_eq!(&t1, &t2);
        let winner = t1.values().next().map(Entry::version);
        prop_assert_eq!(winner, Some(v(hlc, n2)));
    }

    /// Tombstones outlive what they delete, then disappear: when an entry's
    /// deadline covers the expiry of every older write of its key (the
    /// store takes a removal's `until` from the binding it removed; see the
    /// module doc of `merge` for when that does not cover a late, older
    /// write), forgetting entries whose deadline has passed, at any point
    /// of delivery, gives the same live table as never forgetting.
    #[test]
    fn forgetting_past_deadlines_does_not_change_live_state(
        (changes, delivered) in changes_and_shuffle(),
        sweeps in prop::collection::vec(0usize..40, 0..4),
        now in 0u64..10,
    ) {
        // Make every entry's deadline cover the expiry of every older write
        // of the same key.
        let fix = |cs: &[Change]| -> Vec<Change> {
            cs.iter().map(|c| {
                let mut c = c.clone();
                let cover = changes.iter()
                    // `<=`: a write of equal version that loses the tie-break counts too.
                    .filter(|o| o.aor == c.aor && o.contact == c.contact && o.version <= c.version)
                    .filter_map(|o| o.binding.as_ref().map(|b| b.expires))
                    .max()
                    .unwrap_or(Timestamp::ZERO);
                match c.binding.as_mut() {
                    Some(b) if c.kind != ChangeKind::Remove => b.expires = b.expires.max(cover),
                    _ => c.tombstone_until = c.tombstone_until.max(cover),
                }
                c
            }).collect()
        };
        let changes = fix(&changes);
        let delivered = fix(&delivered);
        let now = Timestamp(now);
        let live = |t: &Table| -> Table {
            t.iter()
                .filter(|(_, e)| !e.is_tombstone() && e.deadline() > now)
                .map(|(k, e)| (k.clone(), e.clone()))
                .collect()
        };
        let mut t = Table::new();
        for (i, c) in delivered.iter().enumerate() {
            if sweeps.contains(&i) {
                t.retain(|_, e| e.deadline() > now);
            }
            apply(&mut t, c);
        }
        prop_assert_eq!(live(&t), live(&fold(&changes)));
    }
}
