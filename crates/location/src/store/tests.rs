use super::*;
use crate::clock::ManualClock;
use crate::error::Corruption;
use crate::model::Entry;
use crate::testutil::binding;

const NODE: NodeId = NodeId(7);
const T0: Timestamp = Timestamp::from_secs(1_700_000_000);

struct Fixture {
    dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
}

impl Fixture {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
            clock: Arc::new(ManualClock::new(T0)),
        }
    }
    fn path(&self) -> PathBuf {
        self.dir.path().join("location")
    }
    fn open(&self) -> Location {
        Location::open(&self.path(), NODE, self.clock.clone()).expect("open")
    }
}

fn b(aor: &str, contact: &str, expires_in_secs: u64) -> Binding {
    binding(aor, contact, T0.saturating_add_secs(expires_in_secs))
}

/// Register (insert or refresh) one binding and wait until durable.
fn register(loc: &Location, binding: Binding) {
    let aor = binding.aor.clone();
    let ((), commit) = loc.update(&aor, move |live| {
        let op = if live.iter().any(|l| l.contact == binding.contact) {
            Op::Refresh(binding)
        } else {
            Op::Insert(binding)
        };
        ((), vec![op])
    });
    commit.wait_blocking().expect("durable");
}

fn unregister(loc: &Location, aor: &str, contact: &str) {
    let ((), commit) = loc.update(aor, |_| {
        (
            (),
            vec![Op::Remove {
                aor: aor.to_owned(),
                contact: contact.to_owned(),
            }],
        )
    });
    commit.wait_blocking().expect("durable");
}

fn contacts(loc: &Location, aor: &str) -> Vec<String> {
    loc.lookup(aor).into_iter().map(|b| b.contact).collect()
}

/// Entries (bindings and tombstones, expired or not) the store directory
/// holds, read with the store closed.
fn rows_on_disk(path: &Path) -> u64 {
    let loaded = disk::open(path, NODE, Timestamp(0)).expect("read store");
    let c = loaded.table.counts();
    c.bindings.load(Ordering::Relaxed) + c.tombstones.load(Ordering::Relaxed)
}

/// Files of the store directory, by name (LOCK excluded).
fn files(path: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(path)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n != "LOCK")
        .collect();
    v.sort();
    v
}

/// Copy the store directory (what kill -9 leaves is its files as they are).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
    }
}

/// Every file's bytes, to show a refused directory was not modified.
fn contents(path: &Path) -> Vec<(String, Vec<u8>)> {
    files(path)
        .into_iter()
        .map(|n| {
            let b = std::fs::read(path.join(&n)).expect("read");
            (n, b)
        })
        .collect()
}

/// Ask for a snapshot and wait until it is durable.
fn snapshot_now(loc: &Location) {
    let before = loc.commit_stats().snapshots;
    loc.request_snapshot().expect("request");
    for _ in 0..500 {
        if loc.commit_stats().snapshots > before {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("snapshot not written within 5 s: {:?}", loc.commit_stats());
}

// ---------------------------------------------------------------- update

#[test]
fn update_inserts_and_stamps() {
    let fx = Fixture::new();
    let loc = fx.open();
    register(&loc, b("alice@x", "sip:a@1", 60));
    let got = loc.lookup("alice@x");
    assert_eq!(got.len(), 1);
    let g = &got[0];
    assert_eq!(g.version.node, NODE);
    assert!(g.version.hlc.wall_millis() >= T0.as_millis());
    assert_eq!(g.last_modified, T0);
    assert!(!g.ruid.is_empty(), "ruid generated");
    assert_eq!(
        loc.stats(),
        LocationStats {
            aors: 1,
            bindings: 1,
            tombstones: 0
        }
    );
}

#[test]
fn refresh_keeps_ruid_and_moves_version() {
    let fx = Fixture::new();
    let loc = fx.open();
    register(&loc, b("alice@x", "sip:a@1", 60));
    let first = loc.lookup("alice@x").remove(0);
    fx.clock.advance_secs(10);
    register(&loc, b("alice@x", "sip:a@1", 120));
    let second = loc.lookup("alice@x").remove(0);
    assert_eq!(first.ruid, second.ruid);
    assert!(second.version > first.version);
    assert_eq!(second.last_modified, T0.saturating_add_secs(10));
    assert_eq!(second.expires, T0.saturating_add_secs(120));
    assert_eq!(loc.stats().bindings, 1);
}

#[test]
fn f_sees_only_live_bindings_and_its_result_is_returned() {
    let fx = Fixture::new();
    let loc = fx.open();
    register(&loc, b("alice@x", "sip:a@1", 10));
    register(&loc, b("alice@x", "sip:a@2", 100));
    fx.clock.advance_secs(10); // sip:a@1 expires now (expires <= now)
    let (seen, commit) = loc.update("alice@x", |live| {
        (
            live.iter().map(|b| b.contact.clone()).collect::<Vec<_>>(),
            vec![],
        )
    });
    assert_eq!(seen, vec!["sip:a@2".to_owned()]);
    assert!(commit.is_immediate());
    assert!(commit.wait_blocking().is_ok());
}

#[test]
fn remove_leaves_tombstone_until_binding_expiry() {
    let fx = Fixture::new();
    let loc = fx.open();
    register(&loc, b("alice@x", "sip:a@1", 60));
    unregister(&loc, "alice@x", "sip:a@1");
    assert!(loc.lookup("alice@x").is_empty());
    assert_eq!(
        loc.stats(),
        LocationStats {
            aors: 0,
            bindings: 0,
            tombstones: 1
        }
    );
    let snap = loc.snapshot();
    assert_eq!(snap.len(), 1);
    assert_eq!(snap[0].kind, ChangeKind::Remove);
    assert_eq!(snap[0].tombstone_until, T0.saturating_add_secs(60));
}

#[test]
fn remove_of_unknown_contact_is_a_no_op() {
    let fx = Fixture::new();
    let loc = fx.open();
    let ((), commit) = loc.update("alice@x", |_| {
        (
            (),
            vec![Op::Remove {
                aor: "alice@x".to_owned(),
                contact: "sip:nobody".to_owned(),
            }],
        )
    });
    assert!(commit.is_immediate());
    assert!(commit.wait_blocking().is_ok());
    assert_eq!(loc.stats(), LocationStats::default());
}

#[test]
fn ops_for_another_aor_are_refused_whole() {
    let fx = Fixture::new();
    let loc = fx.open();
    let (r, commit) = loc.update("alice@x", |_| {
        (
            42,
            vec![
                Op::Insert(b("alice@x", "sip:a@1", 60)),
                Op::Insert(b("bob@x", "sip:b@1", 60)),
            ],
        )
    });
    assert_eq!(r, 42);
    assert!(matches!(
        commit.wait_blocking(),
        Err(StoreError::Invalid {
            reason: InvalidChange::AorMismatch
        })
    ));
    assert_eq!(loc.stats(), LocationStats::default());
    let (_, c) = loc.update("alice@x", |_| ((), vec![Op::Insert(b("alice@x", "", 60))]));
    assert!(matches!(
        c.wait_blocking(),
        Err(StoreError::Invalid {
            reason: InvalidChange::EmptyKey
        })
    ));
    let (_, c) = loc.update("a\0b", |_| ((), vec![Op::Insert(b("a\0b", "sip:c", 60))]));
    assert!(matches!(
        c.wait_blocking(),
        Err(StoreError::Invalid {
            reason: InvalidChange::NulInAor
        })
    ));
}

#[test]
fn several_ops_in_one_update_apply_in_order() {
    let fx = Fixture::new();
    let loc = fx.open();
    register(&loc, b("alice@x", "sip:old", 60));
    // RFC 3261 §10.3 step 8 style: replace one contact by another atomically.
    let ((), commit) = loc.update("alice@x", |live| {
        assert_eq!(live.len(), 1);
        (
            (),
            vec![
                Op::Remove {
                    aor: "alice@x".to_owned(),
                    contact: "sip:old".to_owned(),
                },
                Op::Insert(b("alice@x", "sip:new", 60)),
            ],
        )
    });
    commit.wait_blocking().expect("durable");
    assert_eq!(contacts(&loc, "alice@x"), vec!["sip:new".to_owned()]);
    assert_eq!(loc.stats().tombstones, 1);
}

#[test]
fn dump_is_grouped_and_sorted() {
    let fx = Fixture::new();
    let loc = fx.open();
    register(&loc, b("carol@x", "sip:c@1", 60));
    register(&loc, b("alice@x", "sip:a@1", 60));
    register(&loc, b("alice@x", "sip:a@2", 60));
    register(&loc, b("bob@x", "sip:b@1", 5));
    fx.clock.advance_secs(5);
    let d = loc.dump();
    let shape: Vec<(String, usize)> = d.iter().map(|(a, bs)| (a.clone(), bs.len())).collect();
    assert_eq!(
        shape,
        vec![("alice@x".to_owned(), 2), ("carol@x".to_owned(), 1)]
    );
}

// ---------------------------------------------------------------- expiry

#[test]
fn expire_removes_due_bindings_and_reports_them() {
    let fx = Fixture::new();
    let loc = fx.open();
    register(&loc, b("alice@x", "sip:a@1", 30));
    register(&loc, b("alice@x", "sip:a@2", 90));
    register(&loc, b("bob@x", "sip:b@1", 30));
    let (none, c) = loc.expire();
    assert!(none.is_empty());
    assert!(c.is_immediate());
    fx.clock.advance_secs(30);
    let (gone, commit) = loc.expire();
    commit.wait_blocking().expect("durable");
    let mut keys: Vec<(String, String)> = gone
        .iter()
        .map(|c| (c.aor.clone(), c.contact.clone()))
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        vec![
            ("alice@x".to_owned(), "sip:a@1".to_owned()),
            ("bob@x".to_owned(), "sip:b@1".to_owned())
        ]
    );
    for c in &gone {
        assert_eq!(c.kind, ChangeKind::Remove);
        assert_eq!(c.version.node, NODE);
        assert_eq!(c.tombstone_until, T0.saturating_add_secs(30));
    }
    // No tombstone is kept for a local expiry: its time has already come.
    assert_eq!(
        loc.stats(),
        LocationStats {
            aors: 1,
            bindings: 1,
            tombstones: 0
        }
    );
    assert_eq!(contacts(&loc, "alice@x"), vec!["sip:a@2".to_owned()]);
    // A second sweep at the same time finds nothing.
    assert!(loc.expire().0.is_empty());
}

#[test]
fn expire_forgets_tombstones_after_until() {
    let fx = Fixture::new();
    let loc = fx.open();
    register(&loc, b("alice@x", "sip:a@1", 60));
    unregister(&loc, "alice@x", "sip:a@1");
    fx.clock.advance_secs(59);
    let (gone, _) = loc.expire();
    assert!(gone.is_empty());
    assert_eq!(loc.stats().tombstones, 1);
    fx.clock.advance_secs(1);
    let (gone, commit) = loc.expire();
    commit.wait_blocking().expect("durable");
    assert!(gone.is_empty(), "forgetting a tombstone is not a removal");
    assert_eq!(loc.stats(), LocationStats::default());
    assert!(loc.snapshot().is_empty());
}

#[test]
fn expire_touches_only_what_is_due() {
    let fx = Fixture::new();
    let loc = fx.open();
    // Many bindings expiring late, a few early.
    let ops_per_aor = 3;
    for i in 0..200 {
        let aor = format!("u{i}@x");
        let ((), c) = loc.update(&aor, |_| {
            let ops = (0..ops_per_aor)
                .map(|j| {
                    Op::Insert(b(
                        &aor,
                        &format!("sip:{j}"),
                        if i % 50 == 0 && j == 0 { 5 } else { 3600 },
                    ))
                })
                .collect();
            ((), ops)
        });
        c.wait_blocking().expect("durable");
    }
    fx.clock.advance_secs(5);
    let (gone, commit) = loc.expire();
    commit.wait_blocking().expect("durable");
    assert_eq!(gone.len(), 4);
    assert_eq!(loc.stats().bindings, 600 - 4);
    assert_eq!(loc.stats().aors, 200);
}

// ---------------------------------------------------------------- apply

fn remote(contact: &str, hlc: Hlc, node: u32, expires_in: u64) -> Change {
    let mut bd = b("alice@x", contact, expires_in);
    let version = Version {
        hlc,
        node: NodeId(node),
    };
    bd.version = version;
    bd.origin = NodeId(node);
    Change {
        kind: ChangeKind::Insert,
        aor: "alice@x".to_owned(),
        contact: contact.to_owned(),
        version,
        binding: Some(bd),
        tombstone_until: Timestamp::ZERO,
    }
}

#[test]
fn apply_goes_through_the_merge_rule() {
    let fx = Fixture::new();
    let loc = fx.open();
    let h = Hlc::from_parts(T0.as_millis(), 5);
    let (d, c) = loc.apply_change(remote("sip:r", h, 2, 60));
    assert_eq!(d, MergeDecision::Applied);
    c.wait_blocking().expect("durable");
    let (d, c) = loc.apply_change(remote("sip:r", h, 2, 60));
    assert_eq!(d, MergeDecision::Duplicate);
    assert!(c.is_immediate());
    let (d, _) = loc.apply_change(remote("sip:r", Hlc::from_parts(T0.as_millis(), 1), 9, 999));
    assert_eq!(d, MergeDecision::Stale);
    assert_eq!(loc.lookup("alice@x")[0].version.node, NodeId(2));
}

#[test]
fn apply_moves_the_local_clock_past_remote_stamps() {
    let fx = Fixture::new();
    let loc = fx.open();
    // A peer whose clock is an hour ahead.
    let ahead = Hlc::from_parts(T0.saturating_add_secs(3600).as_millis(), 0);
    loc.apply(remote("sip:r", ahead, 2, 7200))
        .wait_blocking()
        .expect("durable");
    // Our refresh of the same contact must still win.
    register(&loc, b("alice@x", "sip:r", 60));
    let now = loc.lookup("alice@x");
    assert_eq!(now[0].version.node, NODE);
    assert!(now[0].version.hlc > ahead);
}

#[test]
fn apply_rejects_malformed_changes() {
    let fx = Fixture::new();
    let loc = fx.open();
    let mut c = remote("sip:r", Hlc(1), 2, 60);
    c.binding = None;
    assert!(matches!(
        loc.apply(c).wait_blocking(),
        Err(StoreError::Invalid {
            reason: InvalidChange::MissingBinding
        })
    ));
    let mut c = remote("sip:r", Hlc(1), 2, 60);
    c.contact = "sip:other".to_owned();
    assert!(matches!(
        loc.apply(c).wait_blocking(),
        Err(StoreError::Invalid {
            reason: InvalidChange::KeyMismatch
        })
    ));
    assert_eq!(loc.stats(), LocationStats::default());
}

#[test]
fn remote_removal_before_insert_wins() {
    let fx = Fixture::new();
    let loc = fx.open();
    let h1 = Hlc::from_parts(T0.as_millis(), 1);
    let h2 = Hlc::from_parts(T0.as_millis(), 2);
    let removal = Change {
        kind: ChangeKind::Remove,
        aor: "alice@x".to_owned(),
        contact: "sip:r".to_owned(),
        version: Version {
            hlc: h2,
            node: NodeId(3),
        },
        binding: None,
        tombstone_until: T0.saturating_add_secs(60),
    };
    loc.apply(removal).wait_blocking().expect("durable");
    let (d, _) = loc.apply_change(remote("sip:r", h1, 3, 60));
    assert_eq!(d, MergeDecision::Stale);
    assert!(loc.lookup("alice@x").is_empty());
}

// ---------------------------------------------------------------- persistence (conformance)

#[test]
fn reopen_gives_the_same_table() {
    let fx = Fixture::new();
    let (dump, mut snap) = {
        let loc = fx.open();
        for i in 0..20 {
            register(&loc, b(&format!("u{i}@x"), "sip:c@1", 600));
            register(&loc, b(&format!("u{i}@x"), "sip:c@2", 900));
        }
        unregister(&loc, "u3@x", "sip:c@1");
        loc.close().expect("close");
        (loc.dump(), loc.snapshot())
    };
    let loc = fx.open();
    assert_eq!(loc.dump(), dump);
    let mut again = loc.snapshot();
    let key = |c: &Change| (c.aor.clone(), c.contact.clone());
    snap.sort_by_key(key);
    again.sort_by_key(key);
    assert_eq!(again, snap);
    assert_eq!(
        loc.stats(),
        LocationStats {
            aors: 20,
            bindings: 39,
            tombstones: 1
        }
    );
}

#[test]
fn tombstones_survive_reopen_and_still_reject_old_writes() {
    let fx = Fixture::new();
    let old = {
        let loc = fx.open();
        register(&loc, b("alice@x", "sip:a@1", 600));
        let old = loc.snapshot().remove(0);
        unregister(&loc, "alice@x", "sip:a@1");
        old
    };
    let loc = fx.open();
    assert_eq!(loc.stats().tombstones, 1);
    // The insert that was removed arrives again from a slow peer.
    let (d, _) = loc.apply_change(old);
    assert_eq!(d, MergeDecision::Stale);
    assert!(loc.lookup("alice@x").is_empty());
}

#[test]
fn expired_rows_are_not_loaded_and_the_next_snapshot_drops_them() {
    let fx = Fixture::new();
    {
        let loc = fx.open();
        register(&loc, b("alice@x", "sip:short", 10));
        register(&loc, b("alice@x", "sip:long", 1000));
        register(&loc, b("bob@x", "sip:b", 20));
        unregister(&loc, "bob@x", "sip:b"); // tombstone until +20 s
    }
    assert_eq!(rows_on_disk(&fx.path()), 3);
    // The node was down for a minute.
    fx.clock.advance_secs(60);
    {
        let loc = fx.open();
        assert_eq!(contacts(&loc, "alice@x"), vec!["sip:long".to_owned()]);
        assert_eq!(
            loc.stats(),
            LocationStats {
                aors: 1,
                bindings: 1,
                tombstones: 0
            }
        );
        snapshot_now(&loc);
        loc.close().expect("close");
    }
    assert_eq!(
        rows_on_disk(&fx.path()),
        1,
        "the snapshot holds only what is live"
    );
}

#[test]
fn stamps_after_reopen_exceed_stamps_on_disk_even_if_clock_went_back() {
    let fx = Fixture::new();
    let before = {
        let loc = fx.open();
        register(&loc, b("alice@x", "sip:a@1", 6000));
        loc.lookup("alice@x")[0].version
    };
    fx.clock.set(T0.saturating_sub_secs(3600));
    let loc = fx.open();
    register(&loc, b("alice@x", "sip:a@1", 6000));
    assert!(loc.lookup("alice@x")[0].version > before);
}

#[test]
fn acknowledged_write_survives_drop_without_close() {
    let fx = Fixture::new();
    {
        let loc = fx.open();
        register(&loc, b("alice@x", "sip:a@1", 600));
        // no close(): dropped like a node going down
    }
    let loc = fx.open();
    assert_eq!(contacts(&loc, "alice@x"), vec!["sip:a@1".to_owned()]);
}

#[test]
fn acknowledged_write_survives_a_crash_image() {
    // The bytes of the file right after the commit was acknowledged, while
    // the store is still running, are exactly what kill -9 would leave.
    let fx = Fixture::new();
    let image = fx.dir.path().join("crash");
    let loc = fx.open();
    register(&loc, b("alice@x", "sip:a@1", 600));
    unregister(&loc, "alice@x", "sip:a@1");
    register(&loc, b("alice@x", "sip:a@2", 600));
    copy_dir(&fx.path(), &image);
    let crashed = Location::open(&image, NODE, fx.clock.clone()).expect("open crash image");
    assert_eq!(contacts(&crashed, "alice@x"), vec!["sip:a@2".to_owned()]);
    assert_eq!(crashed.stats().tombstones, 1);
    drop(loc);
}

#[test]
fn concurrent_writers_are_all_durable() {
    let fx = Fixture::new();
    let loc = Arc::new(fx.open());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let loc = loc.clone();
            std::thread::spawn(move || {
                for i in 0..25 {
                    register(&loc, b(&format!("t{t}-{i}@x"), "sip:c", 600));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("writer thread");
    }
    let cs = loc.commit_stats();
    assert!(cs.requests >= 200);
    assert!(cs.transactions <= cs.requests);
    drop(loc);
    let loc = fx.open();
    assert_eq!(loc.stats().bindings, 200);
}

/// Lookups build their key in a buffer the thread reuses: one lookup after
/// another, each must find exactly its own subscriber (and a shorter key
/// after a longer one must not see the longer one's tail).
#[tokio::test(flavor = "current_thread")]
async fn lookups_one_after_another_find_their_own_subscriber() {
    let fx = Fixture::new();
    let loc = fx.open();
    for (user, domain) in [("ab", "c.example"), ("a", "bc.example"), ("a", "b")] {
        loc.put_subscriber(Subscriber {
            user: user.to_owned(),
            domain: domain.to_owned(),
            realm: format!("{user}|{domain}"),
            ha1_md5: String::new(),
            ha1_sha256: String::new(),
        })
        .await
        .expect("put");
    }
    for _ in 0..2 {
        for (user, domain) in [("ab", "c.example"), ("a", "bc.example"), ("a", "b")] {
            let found = loc.subscriber(user, domain).expect("found");
            assert_eq!(found.realm, format!("{user}|{domain}"));
        }
        assert!(loc.subscriber("a", "c.example").is_none());
        assert!(loc.subscriber("ab", "c").is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_persist_across_reopen() {
    let fx = Fixture::new();
    let sub = |user: &str, domain: &str| Subscriber {
        user: user.to_owned(),
        domain: domain.to_owned(),
        realm: domain.to_owned(),
        ha1_md5: "a".repeat(32),
        ha1_sha256: "b".repeat(64),
    };
    {
        let loc = fx.open();
        loc.put_subscriber(sub("bob", "b.example"))
            .await
            .expect("put");
        loc.put_subscriber(sub("alice", "b.example"))
            .await
            .expect("put");
        loc.put_subscriber(sub("zed", "a.example"))
            .await
            .expect("put");
        let mut replaced = sub("zed", "a.example");
        replaced.realm = "other".to_owned();
        loc.put_subscriber(replaced).await.expect("replace");
        assert!(loc.remove_subscriber("bob", "b.example").await.expect("rm"));
        assert!(
            !loc.remove_subscriber("nobody", "b.example")
                .await
                .expect("rm")
        );
        loc.close().expect("close");
    }
    let loc = fx.open();
    let all: Vec<(String, String, String)> = loc
        .subscribers()
        .into_iter()
        .map(|s| (s.domain.clone(), s.user.clone(), s.realm.clone()))
        .collect();
    assert_eq!(
        all,
        vec![
            ("a.example".to_owned(), "zed".to_owned(), "other".to_owned()),
            (
                "b.example".to_owned(),
                "alice".to_owned(),
                "b.example".to_owned()
            ),
        ]
    );
    assert_eq!(
        loc.subscriber("alice", "b.example").as_deref(),
        Some(&sub("alice", "b.example"))
    );
    assert_eq!(loc.subscriber("bob", "b.example"), None);
    // Keys must stay unambiguous.
    let mut bad = sub("a", "b@c");
    assert!(matches!(
        loc.put_subscriber(bad.clone()).await,
        Err(StoreError::Invalid {
            reason: InvalidChange::SubscriberKey
        })
    ));
    bad.domain = String::new();
    assert!(loc.put_subscriber(bad).await.is_err());
}

// ---------------------------------------------------------------- failures

/// A closed store with a few entries; returns the newest segment's path.
fn closed_store_with_data(fx: &Fixture) -> PathBuf {
    let loc = fx.open();
    register(&loc, b("alice@x", "sip:a@1", 600));
    register(&loc, b("bob@x", "sip:b@1", 600));
    loc.close().expect("close");
    drop(loc);
    let newest = files(&fx.path())
        .into_iter()
        .rfind(|n| n.starts_with("log-"))
        .expect("a segment");
    fx.path().join(newest)
}

fn expect_corrupt(fx: &Fixture) -> Corruption {
    let before = contents(&fx.path());
    let err = Location::open(&fx.path(), NODE, fx.clock.clone()).expect_err("must refuse");
    assert_eq!(contents(&fx.path()), before, "directory unchanged");
    match err {
        StoreError::Corrupt { path, source } => {
            assert!(
                path.starts_with(fx.path()),
                "names the file: {}",
                path.display()
            );
            source
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn garbage_segment_is_reported_corrupt_and_left_untouched() {
    let fx = Fixture::new();
    std::fs::create_dir(fx.path()).expect("mkdir");
    let garbage: Vec<u8> = (0..64 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(fx.path().join(disk::log_name(1)), &garbage).expect("write");
    let c = expect_corrupt(&fx);
    assert!(matches!(c, Corruption::Header { .. }), "got {c:?}");
}

#[test]
fn short_garbage_segment_is_refused_and_left_untouched() {
    let fx = Fixture::new();
    std::fs::create_dir(fx.path()).expect("mkdir");
    std::fs::write(fx.path().join(disk::log_name(1)), b"not a log").expect("write");
    let c = expect_corrupt(&fx);
    assert!(matches!(c, Corruption::Header { .. }), "got {c:?}");
}

#[test]
fn a_store_path_that_is_a_file_is_refused_and_left_untouched() {
    // For instance the redb file of a build before the log format.
    let fx = Fixture::new();
    std::fs::write(fx.path(), b"some file").expect("write");
    let err = Location::open(&fx.path(), NODE, fx.clock.clone()).expect_err("must refuse");
    assert!(matches!(err, StoreError::Open { .. }), "got {err:?}");
    assert!(err.to_string().contains("not a directory"), "{err}");
    assert_eq!(std::fs::read(fx.path()).expect("read"), b"some file");
}

#[test]
fn unrelated_files_in_the_directory_are_ignored() {
    let fx = Fixture::new();
    closed_store_with_data(&fx);
    std::fs::write(fx.path().join("README"), b"notes").expect("write");
    let loc = fx.open();
    assert_eq!(loc.stats().bindings, 2);
    drop(loc);
    assert_eq!(
        std::fs::read(fx.path().join("README")).expect("kept"),
        b"notes"
    );
}

#[test]
fn undecodable_record_is_reported_corrupt() {
    let fx = Fixture::new();
    let seg = closed_store_with_data(&fx);
    let n: u64 = seg
        .file_name()
        .and_then(|f| f.to_str())
        .and_then(|f| f[4..24].parse().ok())
        .expect("number");
    let mut rec = Vec::new();
    disk::frame(&mut rec, n, disk::REC_PUT_BINDING, &[2, 0, 200]);
    let mut bytes = std::fs::read(&seg).expect("read");
    bytes.extend_from_slice(&rec);
    std::fs::write(&seg, bytes).expect("write");
    let c = expect_corrupt(&fx);
    assert!(
        matches!(
            c,
            Corruption::Record {
                table: "bindings",
                ..
            }
        ),
        "got {c:?}"
    );
}

#[test]
fn newer_format_is_refused() {
    let fx = Fixture::new();
    let seg = closed_store_with_data(&fx);
    let mut bytes = std::fs::read(&seg).expect("read");
    bytes[8] = 9;
    std::fs::write(&seg, bytes).expect("write");
    let err = Location::open(&fx.path(), NODE, fx.clock.clone()).expect_err("must refuse");
    assert!(
        matches!(
            err,
            StoreError::UnsupportedFormat {
                found: 9,
                supported: 2,
                ..
            }
        ),
        "got {err:?}"
    );
}

#[test]
fn a_torn_tail_of_the_newest_segment_is_ignored_and_sealed() {
    // kill -9 in the middle of an append: the write was never acknowledged.
    let fx = Fixture::new();
    let seg = closed_store_with_data(&fx);
    let mut rec = Vec::new();
    disk::frame(&mut rec, 99, disk::REC_PUT_BINDING, &[1; 100]);
    let mut bytes = std::fs::read(&seg).expect("read");
    let good = bytes.len();
    bytes.extend_from_slice(&rec[..50]);
    std::fs::write(&seg, bytes).expect("write");
    let loc = fx.open();
    assert_eq!(loc.stats().bindings, 2);
    // Sealed where the whole records end: an end-of-segment record there.
    let mut marker = Vec::new();
    let n: u64 = seg
        .file_name()
        .and_then(|f| f.to_str())
        .and_then(|f| f[4..24].parse().ok())
        .expect("number");
    disk::frame(&mut marker, n, disk::REC_SEGMENT_END, &[]);
    let sealed = std::fs::read(&seg).expect("read");
    assert_eq!(&sealed[good..good + marker.len()], marker.as_slice());
    register(&loc, b("carol@x", "sip:c@1", 600));
    drop(loc);
    assert_eq!(
        fx.open().stats().bindings,
        3,
        "later writes survive the next open"
    );
}

#[test]
fn damage_in_an_older_segment_is_corruption() {
    let fx = Fixture::new();
    let older = closed_store_with_data(&fx);
    // A second session writes a newer segment.
    {
        let loc = fx.open();
        register(&loc, b("carol@x", "sip:c@1", 600));
    }
    let mut bytes = std::fs::read(&older).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&older, bytes).expect("write");
    let c = expect_corrupt(&fx);
    assert!(matches!(c, Corruption::Damaged { .. }), "got {c:?}");
}

#[test]
fn a_missing_segment_is_corruption() {
    let fx = Fixture::new();
    let first = closed_store_with_data(&fx);
    for _ in 0..2 {
        let loc = fx.open();
        register(&loc, b("carol@x", "sip:c@1", 600));
    }
    // Remove the middle one of three segments.
    let segs: Vec<String> = files(&fx.path())
        .into_iter()
        .filter(|n| n.starts_with("log-"))
        .collect();
    assert!(segs.len() >= 3, "{segs:?}");
    assert_eq!(fx.path().join(&segs[0]), first);
    std::fs::remove_file(fx.path().join(&segs[1])).expect("rm");
    let c = expect_corrupt(&fx);
    assert!(matches!(c, Corruption::Missing { .. }), "got {c:?}");
}

#[test]
fn a_snapshot_replaces_the_log_and_reopens_to_the_same_table() {
    let fx = Fixture::new();
    let (dump, subs) = {
        let loc = fx.open();
        for i in 0..50 {
            register(&loc, b(&format!("u{i}@x"), "sip:c@1", 600));
        }
        unregister(&loc, "u7@x", "sip:c@1");
        futures_lite_block_on(loc.put_subscriber(Subscriber {
            user: "u1".to_owned(),
            domain: "x".to_owned(),
            realm: "x".to_owned(),
            ha1_md5: "a".repeat(32),
            ha1_sha256: "b".repeat(64),
        }))
        .expect("put");
        snapshot_now(&loc);
        // Writes after the snapshot go to the log after it.
        register(&loc, b("late@x", "sip:l@1", 600));
        unregister(&loc, "u8@x", "sip:c@1");
        (loc.dump(), loc.subscribers())
    };
    let names = files(&fx.path());
    assert_eq!(
        names.iter().filter(|n| n.starts_with("snapshot-")).count(),
        1,
        "{names:?}"
    );
    let snap = names
        .iter()
        .find(|n| n.starts_with("snapshot-"))
        .expect("snapshot");
    assert!(
        names
            .iter()
            .filter(|n| n.starts_with("log-"))
            .all(|n| n[4..24] > snap[9..29]),
        "segments the snapshot covers are gone: {names:?}"
    );
    let loc = fx.open();
    assert_eq!(loc.dump(), dump);
    assert_eq!(loc.subscribers(), subs);
    assert_eq!(loc.stats().tombstones, 2);
}

#[test]
fn a_damaged_snapshot_is_corruption() {
    let fx = Fixture::new();
    {
        let loc = fx.open();
        register(&loc, b("alice@x", "sip:a@1", 600));
        snapshot_now(&loc);
    }
    let snap = files(&fx.path())
        .into_iter()
        .find(|n| n.starts_with("snapshot-"))
        .expect("snapshot");
    let path = fx.path().join(snap);
    let bytes = std::fs::read(&path).expect("read");
    // Cut off its end record: a snapshot is whole or it is damage.
    std::fs::write(&path, &bytes[..bytes.len() - 3]).expect("write");
    let c = expect_corrupt(&fx);
    assert!(matches!(c, Corruption::Damaged { .. }), "got {c:?}");
}

#[test]
fn an_unfinished_snapshot_is_removed_at_open() {
    let fx = Fixture::new();
    closed_store_with_data(&fx);
    let tmp = fx.path().join(format!("{}.tmp", disk::snapshot_name(5)));
    std::fs::write(&tmp, b"half a snapshot").expect("write");
    let loc = fx.open();
    assert_eq!(loc.stats().bindings, 2);
    assert!(!tmp.exists());
}

#[test]
fn an_unfinished_spare_segment_is_removed_at_open() {
    let fx = Fixture::new();
    closed_store_with_data(&fx);
    let tmp = fx.path().join("recycle-zero-00000000000000000001.rmr.tmp");
    std::fs::write(&tmp, [0u8; 4096]).expect("write");
    let loc = fx.open();
    assert_eq!(loc.stats().bindings, 2);
    assert!(!tmp.exists());
}

/// Run a future on this thread (the store's own futures need no runtime).
fn futures_lite_block_on<F: Future>(f: F) -> F::Output {
    let c = std::pin::pin!(f);
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut c = c;
    loop {
        if let std::task::Poll::Ready(v) = c.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

#[test]
fn missing_folder_is_an_open_error() {
    let fx = Fixture::new();
    let path = fx.dir.path().join("nope").join("location");
    let err = Location::open(&path, NODE, fx.clock.clone()).expect_err("must fail");
    assert!(matches!(err, StoreError::Open { .. }), "got {err:?}");
}

#[test]
fn second_open_of_the_same_file_is_refused() {
    let fx = Fixture::new();
    let _first = fx.open();
    let err = Location::open(&fx.path(), NODE, fx.clock.clone()).expect_err("locked");
    assert!(matches!(err, StoreError::Open { .. }), "got {err:?}");
}

#[test]
fn a_failed_commit_makes_the_store_unhealthy_for_good() {
    let fx = Fixture::new();
    let loc = fx.open();
    register(&loc, b("alice@x", "sip:a@1", 600));
    assert!(loc.healthy());
    let failed = loc.writer.submit(vec![PersistOp::FailForTest]);
    assert!(matches!(
        failed.wait_blocking(),
        Err(StoreError::Commit { .. })
    ));
    assert!(!loc.healthy());
    // Later writes fail fast and change nothing in memory.
    let (_, c) = loc.update("bob@x", |_| ((), vec![Op::Insert(b("bob@x", "sip:b", 60))]));
    assert!(matches!(c.wait_blocking(), Err(StoreError::Unhealthy)));
    assert!(loc.lookup("bob@x").is_empty());
    assert!(matches!(
        loc.apply(remote("sip:r", Hlc(1), 2, 60)).wait_blocking(),
        Err(StoreError::Unhealthy)
    ));
    // Reads still work.
    assert_eq!(contacts(&loc, "alice@x"), vec!["sip:a@1".to_owned()]);
}

#[test]
fn close_flushes_and_refuses_later_writes() {
    let fx = Fixture::new();
    let loc = fx.open();
    let ((), pending) = loc.update("alice@x", |_| {
        ((), vec![Op::Insert(b("alice@x", "sip:a@1", 600))])
    });
    loc.close().expect("close");
    pending
        .wait_blocking()
        .expect("queued write committed by close");
    assert!(!loc.healthy());
    let (_, c) = loc.update("bob@x", |_| ((), vec![Op::Insert(b("bob@x", "sip:b", 60))]));
    assert!(matches!(c.wait_blocking(), Err(StoreError::Closed)));
    assert!(loc.close().is_ok(), "idempotent");
    assert_eq!(
        contacts(&loc, "alice@x"),
        vec!["sip:a@1".to_owned()],
        "reads keep working"
    );
    drop(loc);
    assert_eq!(rows_on_disk(&fx.path()), 1);
}

// ---------------------------------------------------------------- scale

/// Startup with a million bindings (target: under 5 s in release).
/// Run: `cargo test -p regmesh-location --release -- --ignored --nocapture million`
#[test]
#[ignore = "slow: writes a 1,000,000-binding snapshot; run in release on purpose"]
#[allow(clippy::disallowed_methods)] // Instant::now: this test measures wall time on purpose
fn startup_with_a_million_bindings() {
    let fx = Fixture::new();
    const N: usize = 1_000_000;
    std::fs::create_dir(fx.path()).expect("mkdir");
    let written = disk::write_snapshot(&fx.path(), NODE, 1, |sink| {
        let mut out = Vec::with_capacity(1 << 20);
        for i in 0..N {
            let aor = format!("user{i:07}@example.com");
            let contact = format!(
                "sip:user{i:07}@198.51.{}.{}:5060;transport=udp",
                (i >> 8) & 255,
                i & 255
            );
            let mut bd = b(&aor, &contact, 3600);
            bd.call_id = format!("{i:x}-3c2a6b1e@198.51.100.7");
            bd.ruid = format!("7-{i:x}");
            bd.version = Version {
                hlc: Hlc::from_parts(T0.as_millis(), 0),
                node: NODE,
            };
            let value = codec::encode_entry(&aor, &contact, &Entry::Live(bd));
            sink.entry(&value, &mut out);
            if out.len() > 1 << 20 {
                sink.flush(&mut out)?;
            }
        }
        sink.flush(&mut out)?;
        Ok(true)
    })
    .expect("write snapshot");
    let size = written.expect("not abandoned");
    let start = std::time::Instant::now();
    let loc = fx.open();
    let took = start.elapsed();
    println!(
        "opened {} bindings ({:.0} MiB file) in {:.2} s",
        loc.stats().bindings,
        size as f64 / 1048576.0,
        took.as_secs_f64()
    );
    assert_eq!(loc.stats().bindings, N as u64);
    assert!(took.as_secs_f64() < 5.0, "startup took {took:?}");
    // One sweep over a million bindings with nothing due is cheap.
    let start = std::time::Instant::now();
    assert!(loc.expire().0.is_empty());
    println!("idle expiry sweep: {:?}", start.elapsed());
}

/// A snapshot is made durable in steps of `SNAPSHOT_SYNC_BYTES` however
/// much one flush hands it (here every subscriber at once): one large write
/// and flush would hold the change log's commits behind it for as long as
/// the disk takes to write it all.
#[test]
fn a_snapshot_is_synced_in_steps_however_large_a_flush() {
    let fx = Fixture::new();
    std::fs::create_dir(fx.path()).expect("mkdir");
    const N: usize = 10_000;
    let sub = |i: usize| Subscriber {
        user: format!("user{i}"),
        domain: "example.com".into(),
        realm: "example.com".into(),
        ha1_md5: "0".repeat(32),
        ha1_sha256: "0".repeat(64),
    };
    let mut flushed = (0, 0);
    disk::write_snapshot(&fx.path(), NODE, 1, |sink| {
        let mut out = Vec::new();
        for i in 0..N {
            sink.subscriber(&sub(i), &mut out);
        }
        let bytes = out.len() as u64;
        sink.flush(&mut out)?;
        flushed = (bytes, sink.syncs());
        Ok(true)
    })
    .expect("write snapshot")
    .expect("not abandoned");
    let (bytes, syncs) = flushed;
    assert!(bytes > 4 * disk::SNAPSHOT_SYNC_BYTES, "{bytes} bytes");
    assert_eq!(syncs, bytes / disk::SNAPSHOT_SYNC_BYTES);
    let loc = fx.open();
    assert_eq!(loc.subscribers().len(), N);
    assert_eq!(
        loc.subscriber("user9999", "example.com").as_deref(),
        Some(&sub(9999))
    );
}

#[test]
fn shared_types_are_thread_safe() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Location>();
    send_sync::<StoreError>();
    send::<Commit>();
}

/// Bytes of every file in the store directory.
/// (A file the snapshot thread removes between listing and stat counts 0.)
fn dir_bytes(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .expect("read dir")
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// Soak: the same AoRs refreshed round after round (what a registrar does
/// all day) must not grow the store without bound. The redb file of format
/// 1 grew twentyfold under this load (BENCHMARKS.md); here disk use must
/// stay within a small multiple of one snapshot plus the log allowance.
#[test]
fn disk_use_stays_bounded_under_sustained_refreshes() {
    let fx = Fixture::new();
    let options = StoreOptions {
        segment_bytes: 64 << 10,
        snapshot_min_log_bytes: 128 << 10,
        ..StoreOptions::default()
    };
    let loc = Location::open_with(&fx.path(), NODE, fx.clock.clone(), options).expect("open");
    const AORS: usize = 500;
    const ROUNDS: usize = 100;
    let mut peak = 0;
    for round in 0..ROUNDS {
        // Queue a whole round, then wait: the writer batches it.
        let commits: Vec<Commit> = (0..AORS)
            .map(|i| {
                let aor = format!("user{i}@example.com");
                let mut bd = b(&aor, "sip:phone@192.0.2.1:5060", 3600);
                bd.cseq = round as u32 + 1;
                loc.update(&aor, move |live| {
                    let op = if live.is_empty() {
                        Op::Insert(bd)
                    } else {
                        Op::Refresh(bd)
                    };
                    ((), vec![op])
                })
                .1
            })
            .collect();
        for c in commits {
            c.wait_blocking().expect("durable");
        }
        // Measure between snapshots: how long one takes depends on the
        // machine, and the log written meanwhile with it.
        for _ in 0..500 {
            if !loc.commit_stats().snapshot_in_progress {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        peak = peak.max(dir_bytes(&fx.path()));
    }
    let stats = loc.commit_stats();
    assert!(stats.snapshots >= 3, "snapshots were taken: {stats:?}");
    assert_eq!(stats.snapshot_failures, 0);
    // Between snapshots the store holds the newest snapshot (S), the log
    // written since (below the threshold T plus the batch (B) that
    // crossed it, here a whole round) and segment headers; the total
    // appended is many times that.
    let s = stats.snapshot_bytes;
    let t = options.snapshot_min_log_bytes.max(s);
    let batch = stats.largest_txn * (stats.log_bytes / stats.ops);
    // Plus up to two full segments kept for reuse (`disk`, recycling).
    let bound = s + t + batch + options.segment_bytes + 2 * (options.segment_bytes + batch);
    assert!(
        stats.log_bytes > 10 * bound,
        "the run wrote enough to matter: {} vs {bound}",
        stats.log_bytes
    );
    assert!(
        peak <= bound,
        "peak {peak} bytes on disk, bound {bound} ({stats:?})"
    );
    // A snapshot now leaves just itself, the segment being written and the
    // segments kept for reuse. (Twice: a request is ignored while a
    // snapshot triggered by the load is still being written, and that one
    // covers less.)
    snapshot_now(&loc);
    snapshot_now(&loc);
    let settled = dir_bytes(&fx.path());
    let s = loc.commit_stats().snapshot_bytes;
    let reuse = 3 * (options.segment_bytes + batch);
    assert!(
        settled <= s + reuse,
        "{settled} bytes after a snapshot of {s}"
    );
    let dump = loc.dump();
    drop(loc);
    let reopened = fx.open();
    assert_eq!(
        reopened.dump(),
        dump,
        "the compacted store rebuilds the same table"
    );
    assert_eq!(reopened.stats().bindings, AORS as u64);
}

/// A crash image taken while the writer is appending into a recycled
/// segment (stale records of an older segment after the new ones) opens to
/// exactly the acknowledged table.
#[test]
fn a_crash_image_inside_a_recycled_segment_opens_to_the_acknowledged_table() {
    let fx = Fixture::new();
    let options = StoreOptions {
        segment_bytes: 32 << 10,
        snapshot_min_log_bytes: 64 << 10,
        ..StoreOptions::default()
    };
    let loc = Location::open_with(&fx.path(), NODE, fx.clock.clone(), options).expect("open");
    let mut round = 0u32;
    let mut reused = false;
    while round < 400 && !reused {
        round += 1;
        let commits: Vec<Commit> = (0..100)
            .map(|i| {
                let aor = format!("user{i}@example.com");
                let mut bd = b(&aor, &format!("sip:phone{round}@192.0.2.1"), 3600);
                bd.cseq = round;
                loc.update(&aor, move |_| ((), vec![Op::Insert(bd)])).1
            })
            .collect();
        for c in commits {
            c.wait_blocking().expect("durable");
        }
        // The newest segment started in a recycled file when it is longer
        // than what was written to it and ends in old records (a zero
        // spare ends in zeros).
        let stats = loc.commit_stats();
        reused = stats.snapshots >= 2
            && files(&fx.path())
                .iter()
                .rfind(|n| n.starts_with("log-"))
                .and_then(|n| std::fs::read(fx.path().join(n)).ok())
                .is_some_and(|bytes| {
                    bytes.len() as u64 >= options.segment_bytes
                        && bytes[bytes.len() - 256..].iter().any(|&b| b != 0)
                })
            && !stats.snapshot_in_progress;
    }
    assert!(
        reused,
        "a recycled segment was reused within {round} rounds"
    );
    // Some writes into the recycled segment, then the image.
    register(&loc, b("late@x", "sip:l@1", 600));
    let dump = loc.dump();
    let image = fx.dir.path().join("crash");
    copy_dir(&fx.path(), &image);
    let crashed = Location::open(&image, NODE, fx.clock.clone()).expect("open crash image");
    assert_eq!(crashed.dump(), dump);
}

/// `commit_interval` spaces group commits under load: once a group commit
/// was large, the next write waits for the rest of the interval (and shares
/// its fsync with what arrives meanwhile). A writer alone, or after a quiet
/// spell, is never made to wait. Only lower bounds and a generous upper
/// bound are asserted: this is about pacing, not speed.
#[test]
#[allow(clippy::disallowed_methods)] // Instant::now: this test measures wall time on purpose
fn commit_interval_paces_commits_under_load_only() {
    let fx = Fixture::new();
    let interval = std::time::Duration::from_millis(600);
    let options = StoreOptions {
        commit_interval: interval,
        ..StoreOptions::default()
    };
    let loc = Location::open_with(&fx.path(), NODE, fx.clock.clone(), options).expect("open");
    // One writer that waits for each answer: every group is one request,
    // so none is paced, however close together they come.
    for aor in ["a@x", "b@x", "c@x", "d@x"] {
        let start = std::time::Instant::now();
        register(&loc, b(aor, "sip:1", 60));
        assert!(
            start.elapsed() < interval / 2,
            "a lone writer waited {:?}",
            start.elapsed()
        );
    }
    // Many writers at once: rounds of 128 concurrent writes. A round's
    // writes are split over a few groups (those queued during one fsync
    // form the next), so one of them has at least PACE_FROM_GROUP, and
    // from then on each round is paced and gathered into one group.
    let burst = |prefix: &str, n: usize| {
        let commits: Vec<Commit> = (0..n)
            .map(|i| {
                let aor = format!("{prefix}{i}@x");
                let bd = b(&aor, "sip:1", 60);
                loc.update(&aor, move |_| ((), vec![Op::Insert(bd)])).1
            })
            .collect();
        for c in commits {
            c.wait_blocking().expect("durable");
        }
    };
    for round in 0..3 {
        burst(&format!("warm{round}-"), 128);
    }
    let before = loc.commit_stats();
    let start = std::time::Instant::now();
    burst("paced-", 3);
    let waited = start.elapsed();
    let after = loc.commit_stats();
    assert!(waited >= interval / 2, "waited only {waited:?}");
    assert_eq!(
        after.transactions - before.transactions,
        1,
        "{before:?} -> {after:?}"
    );
    assert_eq!(after.requests - before.requests, 3);
    // That group was small (3 < PACE_FROM_GROUP), so the next write goes
    // at once.
    let start = std::time::Instant::now();
    register(&loc, b("e@x", "sip:1", 60));
    assert!(
        start.elapsed() < interval / 2,
        "a write after a small group waited {:?}",
        start.elapsed()
    );
}

/// The newest `log-*` segment: its name and length.
fn newest_segment(path: &Path) -> (String, u64) {
    let name = files(path)
        .into_iter()
        .rfind(|n| n.starts_with("log-"))
        .expect("a segment");
    let len = std::fs::metadata(path.join(&name)).expect("stat").len();
    (name, len)
}

/// A new store has no covered segment to reuse, so its first segment grows
/// with every append (and each fdatasync writes the inode too). Once a
/// 64th of a segment is written, a zero-filled spare is made in the
/// background and the writer moves to it; everything acknowledged before,
/// during and after the move is in a crash image and in a clean reopen.
#[test]
fn a_new_store_moves_to_a_zero_spare_and_loses_nothing() {
    let fx = Fixture::new();
    let options = StoreOptions {
        segment_bytes: 256 << 10,
        ..StoreOptions::default()
    };
    let loc = Location::open_with(&fx.path(), NODE, fx.clock.clone(), options).expect("open");
    let (first, len) = newest_segment(&fx.path());
    assert!(
        len < 4096,
        "a new store starts in a new file: {first} {len}"
    );
    // Write until the writer is in a segment longer than what it holds
    // (the spare's zeros), or give up after 5 s.
    let mut i = 0u32;
    let moved = loop {
        for _ in 0..20 {
            i += 1;
            register(&loc, b(&format!("u{i}@x"), "sip:p@192.0.2.1", 3600));
        }
        let (name, len) = newest_segment(&fx.path());
        if name != first && len >= options.segment_bytes {
            break Some((name, len));
        }
        if i > 20_000 {
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    let (name, len) = moved.expect("the writer moved to a zero spare");
    let bytes = std::fs::read(fx.path().join(&name)).expect("read");
    assert!(
        bytes[bytes.len() - 1024..].iter().all(|&b| b == 0),
        "{name} ({len} bytes) ends in the spare's zeros"
    );
    assert!(
        !files(&fx.path()).iter().any(|n| n.ends_with(".tmp")),
        "no temporary file left: {:?}",
        files(&fx.path())
    );
    // Writes after the move go into the spare, in place.
    for j in 0..50 {
        register(&loc, b(&format!("after{j}@x"), "sip:p@192.0.2.1", 3600));
    }
    assert_eq!(newest_segment(&fx.path()), (name.clone(), len));
    let dump = loc.dump();
    assert_eq!(loc.stats().bindings, u64::from(i) + 50);
    let image = fx.dir.path().join("crash");
    copy_dir(&fx.path(), &image);
    let crashed = Location::open(&image, NODE, fx.clock.clone()).expect("open crash image");
    assert_eq!(crashed.dump(), dump);
    drop(crashed);
    loc.close().expect("close");
    drop(loc);
    assert_eq!(fx.open().dump(), dump);
}

/// The store's threads show under their own names in `top -H`, `ps -L` and
/// `perf` (the kernel keeps 15 bytes of a name: the old names both read
/// `regmesh-locatio`).
#[test]
fn the_store_threads_are_named_apart() {
    use crate::persist::{SNAPSHOT_THREAD, WRITER_THREAD};
    let f = Fixture::new();
    let loc = f.open();
    let names = || -> Vec<String> {
        std::fs::read_dir("/proc/self/task")
            .expect("/proc/self/task")
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
            .map(|n| n.trim_end().to_owned())
            .collect()
    };
    // A new thread names itself once it runs: give it a moment (5 s).
    for want in [WRITER_THREAD, SNAPSHOT_THREAD] {
        let mut tries = 0;
        while !names().iter().any(|n| n == want) {
            tries += 1;
            assert!(tries < 1000, "{want} not in {:?}", names());
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
    drop(loc);
}
