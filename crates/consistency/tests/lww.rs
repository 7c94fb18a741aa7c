//! Last-write-wins on a real cluster: racing writers, tombstones, TTLs, WAIT, plain and broken values.
//! The tests only read and write their own keys, so they share one cluster.

mod common;

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cluster_client::{SetOptions, Ttl};
use consistency::{
    ConsistencyConfig, EnvelopeProblem, Error, HEADER_LEN, Hlc, KeyState, Observed, Version, Versioned,
    VersionedValue, WriteOptions, WriteOutcome, WriterId,
};
use futures::StreamExt;
use local_cluster::{LocalCluster, test_lock};

/// A small deterministic generator, so that a failing run can be replayed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn now_millis() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_writers_with_out_of_order_versions_end_with_the_newest() {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let client = common::client(cluster.seeds()).await;
    let prefix = common::prefix("race");
    const KEYS: u64 = 40;
    const OPS: u64 = 10_000;

    // Each operation carries a version drawn at random within one second, so the versions of a key
    // arrive in no particular order; the logical counter makes every version unique.
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let base = now_millis();
    let ops: Vec<(Vec<u8>, Version, Vec<u8>)> = (0..OPS)
        .map(|i| {
            let key = format!("{prefix}:{}", rng.next() % KEYS).into_bytes();
            let hlc = Hlc::new(base + rng.next() % 1_000, i as u16);
            let writer = WriterId(1 + i % 2);
            (key, Version::new(hlc, writer), format!("op {i}").into_bytes())
        })
        .collect();
    let mut newest: HashMap<Vec<u8>, (Version, Vec<u8>)> = HashMap::new();
    for (key, version, value) in &ops {
        let entry = newest.entry(key.clone()).or_insert((*version, value.clone()));
        if *version > entry.0 {
            *entry = (*version, value.clone());
        }
    }

    // Two writers (two handles with their own writer ids), each sending its half concurrently.
    let writers: Vec<Versioned> = (1..=2)
        .map(|id| {
            let config = ConsistencyConfig::default().writer(WriterId(id)).journal(None);
            Versioned::new(client.clone(), config).unwrap()
        })
        .collect();
    let runs = writers.iter().enumerate().map(|(w, writer)| {
        let mine: Vec<_> = ops
            .iter()
            .filter(|(_, v, _)| v.writer == WriterId(1 + w as u64))
            .collect();
        async move {
            futures::stream::iter(mine)
                .map(|(key, version, value)| async move {
                    let outcome = writer
                        .set_with_version(key, value, *version, None, WriteOptions::default())
                        .await
                        .unwrap();
                    (*version, outcome)
                })
                .buffer_unordered(16)
                .collect::<Vec<_>>()
                .await
        }
    });
    let outcomes: Vec<(Version, WriteOutcome)> = futures::future::join_all(runs).await.concat();
    assert_eq!(outcomes.len() as u64, OPS);
    let mut stale = 0;
    for (version, outcome) in &outcomes {
        match outcome {
            WriteOutcome::Written { version: written, .. } => assert_eq!(written, version),
            WriteOutcome::Stale { current, deleted } => {
                stale += 1;
                assert!(current > version, "refused {version} for an older {current}");
                assert!(!deleted);
            }
        }
    }
    assert!(stale > 0, "out-of-order versions must lose sometimes");

    // The newest version is stored on every primary and, once caught up, on every replica.
    let reader = common::versioned(&client);
    for (key, (version, value)) in &newest {
        let stored = reader.get(key).await.unwrap().expect("the key is stored");
        assert_eq!(stored.version(), Some(*version));
        assert_eq!(stored.value().as_ref(), &value[..]);
        let report = reader.verify_consistency(key).await.unwrap();
        assert_eq!(report.state, KeyState::Consistent, "{report}");
        assert_eq!(report.copies.len(), 2, "a primary and its replica: {report}");
        assert!(
            report
                .copies
                .iter()
                .all(|c| c.observed == Observed::Value(*version)),
            "{report}"
        );
    }
    eprintln!(
        "race: {OPS} versioned writes by two writers over {KEYS} keys, {stale} refused as stale, newest kept \
         on primaries and replicas"
    );
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tombstone_refuses_older_sets_until_it_expires() {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let client = common::client(cluster.seeds()).await;
    // Tombstones must outlive the journal's memory of writes; this test keeps no journal.
    let config = ConsistencyConfig::default()
        .tombstone_ttl(Duration::from_secs(30))
        .journal(None);
    let store = Versioned::new(client.clone(), config).unwrap();
    let key = format!("{}:doc", common::prefix("tombstone")).into_bytes();
    let [v1, v2, v3, v4] = [(); 4].map(|_| store.next_version());

    let none = WriteOptions::default();
    assert!(
        store
            .set_with_version(&key, b"a", v2, None, none)
            .await
            .unwrap()
            .is_written()
    );
    assert!(
        store
            .delete_with_version(&key, v3, none)
            .await
            .unwrap()
            .is_written()
    );
    assert_eq!(
        store.get(&key).await.unwrap(),
        None,
        "a tombstone reads as absent"
    );
    match client.pttl(&key).await.unwrap() {
        Ttl::Expires(left) => assert!(left <= Duration::from_secs(30) && left > Duration::from_secs(25)),
        other => panic!("the tombstone must expire, found {other:?}"),
    }

    // The slow loader's set at v1 (older than the delete) is refused and learns of the delete.
    let late = store
        .set_with_version(&key, b"stale", v1, None, none)
        .await
        .unwrap();
    assert_eq!(
        late,
        WriteOutcome::Stale {
            current: v3,
            deleted: true
        }
    );
    assert_eq!(store.get(&key).await.unwrap(), None);

    // A newer set brings the key back; an older delete is refused.
    assert!(
        store
            .set_with_version(&key, b"new", v4, None, none)
            .await
            .unwrap()
            .is_written()
    );
    assert_eq!(
        client.pttl(&key).await.unwrap(),
        Ttl::Persistent,
        "the set replaced the tombstone's TTL"
    );
    let old_delete = store.delete_with_version(&key, v2, none).await.unwrap();
    assert_eq!(
        old_delete,
        WriteOutcome::Stale {
            current: v4,
            deleted: false
        }
    );
    assert_eq!(store.get(&key).await.unwrap().unwrap().value().as_ref(), b"new");
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_apply_ttls_wait_for_replicas_and_leave_plain_values_readable() {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let client = common::client(cluster.seeds()).await;
    let store = common::versioned(&client);
    let prefix = common::prefix("writes");
    let key = |name: &str| format!("{prefix}:{name}").into_bytes();

    // The TTL is set in the same step as the value; a newer write without one clears it.
    let ttl = Some(Duration::from_secs(60));
    store
        .set(&key("ttl"), b"1", ttl, WriteOptions::default())
        .await
        .unwrap();
    assert!(
        matches!(client.pttl(&key("ttl")).await.unwrap(), Ttl::Expires(left) if left > Duration::from_secs(55))
    );
    store
        .set(&key("ttl"), b"2", None, WriteOptions::default())
        .await
        .unwrap();
    assert_eq!(client.pttl(&key("ttl")).await.unwrap(), Ttl::Persistent);

    // WAIT reports the replica's acknowledgement.
    let waited = store
        .set(
            &key("wait"),
            b"w",
            None,
            WriteOptions::wait(1, Duration::from_secs(2)),
        )
        .await
        .unwrap();
    assert!(
        matches!(
            waited,
            WriteOutcome::Written {
                replicas_acked: Some(1),
                ..
            }
        ),
        "{waited:?}"
    );

    // A value written by a plain client reads as unversioned, and a versioned write replaces it.
    client
        .set(&key("plain"), b"legacy", SetOptions::default())
        .await
        .unwrap();
    assert_eq!(
        store.get(&key("plain")).await.unwrap(),
        Some(VersionedValue::Unversioned {
            value: "legacy".into()
        })
    );
    assert_eq!(
        store.verify_consistency(&key("plain")).await.unwrap().state,
        KeyState::Unversioned
    );
    assert!(
        store
            .set(&key("plain"), b"v", None, WriteOptions::default())
            .await
            .unwrap()
            .is_written()
    );
    assert!(
        store
            .get(&key("plain"))
            .await
            .unwrap()
            .unwrap()
            .version()
            .is_some()
    );

    // A value that starts like an envelope but is not one is reported, never misread or overwritten.
    let broken = [&consistency::MAGIC[..], &[9u8; 20]].concat();
    client
        .set(&key("broken"), &broken, SetOptions::default())
        .await
        .unwrap();
    let read = store.get(&key("broken")).await.unwrap_err();
    assert!(
        matches!(
            read,
            Error::Envelope {
                problem: EnvelopeProblem::UnsupportedFormat { format: 9 },
                ..
            }
        ),
        "{read}"
    );
    let write = store
        .set(&key("broken"), b"x", None, WriteOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(write, Error::Envelope { .. }), "{write}");
    assert_eq!(
        client.get(&key("broken")).await.unwrap().as_deref(),
        Some(&broken[..])
    );

    // A key nobody wrote is consistent: no copy holds it.
    let report = store.verify_consistency(&key("never")).await.unwrap();
    assert_eq!(report.state, KeyState::Consistent);
    assert!(report.copies.iter().all(|c| c.observed == Observed::Absent));

    // Acknowledged writes are journaled with their versions.
    let journal = store.journal().unwrap().latest();
    let wait_entry = journal.iter().find(|e| e.key.as_ref() == key("wait")).unwrap();
    assert_eq!(wait_entry.value.as_deref(), Some(&b"w"[..]));
    // With where it landed in its primary's replication stream: the failover repair's evidence.
    let mark = wait_entry
        .mark
        .expect("the write script reported its replication offset");
    assert!(mark.replid.iter().all(u8::is_ascii_hexdigit), "{mark:?}");
    assert!(mark.min_len > (HEADER_LEN + 1) as u64, "{mark:?}");
    assert!(
        !journal.iter().any(|e| e.key.as_ref() == key("broken")),
        "refused writes are not journaled"
    );
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_script_is_loaded_again_after_a_script_flush_and_values_over_the_limit_are_refused() {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let config = cluster_config::ClusterConfig::builder()
        .nodes(cluster.seeds())
        .value_max_bytes(100)
        .build()
        .unwrap();
    let client = cluster_client::ClusterClient::connect(config).await.unwrap();
    let store = common::versioned(&client);
    let key = format!("{}:k", common::prefix("noscript")).into_bytes();
    assert!(
        store
            .set(&key, b"1", None, WriteOptions::default())
            .await
            .unwrap()
            .is_written()
    );
    for node in cluster.primaries().await.unwrap() {
        node.command::<(), _, _>(["SCRIPT", "FLUSH"]).await.unwrap();
    }
    assert!(
        store
            .set(&key, b"2", None, WriteOptions::default())
            .await
            .unwrap()
            .is_written()
    );
    assert_eq!(store.get(&key).await.unwrap().unwrap().value().as_ref(), b"2");

    // The envelope counts against the limit: 76 bytes of payload + 24 fit, 77 do not.
    assert!(
        store
            .set(&key, &[b'x'; 76], None, WriteOptions::default())
            .await
            .is_ok()
    );
    let error = store
        .set(&key, &[b'x'; 77], None, WriteOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            Error::Client(cluster_client::Error::ValueTooLarge { len: 101, max: 100 })
        ),
        "{error}"
    );
    client.close().await;
}

/// A cache-facade load lease that replaced a tombstone still counts as that tombstone (see
/// `LWW_SCRIPT`): while the lease is held, a write older than the delete is refused, and a newer one
/// replaces the lease. Found in review: the lease hid the delete, and an older write (a loader's
/// source timestamp, another process's load that took its version before the delete) brought the
/// deleted value back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_carrying_a_tombstone_refuses_older_writes() {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let client = common::client(cluster.seeds()).await;
    let store = Versioned::new(client.clone(), ConsistencyConfig::default().journal(None)).unwrap();
    let key = format!("{}:doc", common::prefix("leased-tombstone")).into_bytes();
    let [older, deleted_at, newer] = [(); 3].map(|_| store.next_version());
    let none = WriteOptions::default();
    assert!(
        store
            .delete_with_version(&key, deleted_at, none)
            .await
            .unwrap()
            .is_written()
    );
    let tombstone = client.get(&key).await.unwrap().expect("the tombstone is stored");
    // The lease as cache-facade's take script stores it: 'L', token, expiry, the tombstone.
    let mut marker = b"LabcdefghijklmnopQ".to_vec();
    marker.truncate(17);
    marker.extend_from_slice(format!("{:016}", now_millis() + 30_000).as_bytes());
    marker.extend_from_slice(&tombstone);
    assert_eq!(marker.len(), 57);
    client.set(&key, &marker, SetOptions::default()).await.unwrap();

    let late = store
        .set_with_version(&key, b"old", older, None, none)
        .await
        .unwrap();
    assert_eq!(
        late,
        WriteOutcome::Stale {
            current: deleted_at,
            deleted: true
        },
        "a write older than the delete must not replace the lease"
    );
    assert_eq!(client.get(&key).await.unwrap().as_deref(), Some(&marker[..]));
    let fresh = store
        .set_with_version(&key, b"new", newer, None, none)
        .await
        .unwrap();
    assert!(fresh.is_written(), "{fresh:?}");
    let read = store.get(&key).await.unwrap().expect("the newer value is stored");
    assert_eq!(read.value().as_ref(), b"new");
    client.close().await;
}

/// One entry of `set_many_with_versions`: key, value, version, TTL.
type BatchEntry<'a> = (&'a [u8], &'a [u8], Version, Option<Duration>);

/// The batched writes (`set_many_with_versions`, `delete_many`) decide key by key exactly as the
/// single-key writes do, against every kind of stored bytes: absent, plain, an older, equal or newer
/// value, an older or newer tombstone, a lease carrying a newer tombstone, hostile bytes behind the
/// magic; and a key written twice in one batch (a concurrent writer inside the batch), where the later
/// entry must see the earlier one. `delete_many` also says whether a live value was there, which
/// `Cache::delete` now takes instead of reading first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_writes_decide_key_by_key_as_single_writes_do() {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let client = common::client(cluster.seeds()).await;
    let store = Versioned::new(client.clone(), ConsistencyConfig::default().journal(None)).unwrap();
    let prefix = common::prefix("batch-twins");
    let base = now_millis();
    let at = |offset: i64, writer: u64| {
        Version::new(Hlc::new(base.saturating_add_signed(offset), 0), WriterId(writer))
    };
    let (older, mine, newer) = (at(-1_000, 7), at(0, 7), at(30_000, 7));
    let value = |version: Version| {
        consistency::Envelope::Value {
            version,
            payload: b"stored",
        }
        .encode()
    };
    let tombstone = |version: Version| consistency::Envelope::Tombstone { version }.encode();
    let mut lease = b"L0123456789abcdef".to_vec();
    lease.extend_from_slice(format!("{:016}", base + 30_000).as_bytes());
    lease.extend_from_slice(&tombstone(newer));
    let mut hostile = consistency::MAGIC.to_vec();
    hostile.extend_from_slice(&[9, 0xff, 0, 0, 1, 2, 3]);
    // (name, stored bytes, whether a live value is there)
    let states: Vec<(&str, Option<Vec<u8>>, bool)> = vec![
        ("absent", None, false),
        ("plain", Some(b"plain bytes".to_vec()), true),
        ("older value", Some(value(older)), true),
        ("equal value", Some(value(mine)), true),
        ("newer value", Some(value(newer)), true),
        ("older tombstone", Some(tombstone(older)), false),
        ("newer tombstone", Some(tombstone(newer)), false),
        ("lease over a newer tombstone", Some(lease), false),
        ("hostile bytes", Some(hostile), true),
    ];
    let describe = |result: Result<WriteOutcome, Error>| match result {
        Ok(WriteOutcome::Written { version, .. }) => format!("written {version}"),
        Ok(WriteOutcome::Stale { current, deleted }) => format!("stale {current} deleted {deleted}"),
        Err(Error::Envelope { problem, .. }) => format!("envelope {problem:?}"),
        Err(other) => panic!("unexpected error: {other}"),
    };
    let seed = async |key: &[u8], stored: &Option<Vec<u8>>| {
        client.del(key).await.unwrap();
        if let Some(bytes) = stored {
            client.set(key, bytes, SetOptions::default()).await.unwrap();
        }
    };
    let none = WriteOptions::default();

    // Sets: each state on a single-key twin and a batch twin; the batch also writes its first key a
    // second time, newer, after the first entry.
    let single_keys: Vec<Vec<u8>> = (0..states.len())
        .map(|i| format!("{prefix}:set:single:{i}").into_bytes())
        .collect();
    let batch_keys: Vec<Vec<u8>> = (0..states.len())
        .map(|i| format!("{prefix}:set:batch:{i}").into_bytes())
        .collect();
    let mut single = Vec::new();
    for ((key, (_, stored, _)), _) in single_keys.iter().zip(&states).zip(0..) {
        seed(key, stored).await;
        single.push(describe(
            store.set_with_version(key, b"new", mine, None, none).await,
        ));
    }
    let again = at(500, 7);
    single.push(describe(
        store
            .set_with_version(&single_keys[0], b"again", again, None, none)
            .await,
    ));
    for (key, (_, stored, _)) in batch_keys.iter().zip(&states) {
        seed(key, stored).await;
    }
    let mut entries: Vec<BatchEntry<'_>> = batch_keys
        .iter()
        .map(|k| (&k[..], &b"new"[..], mine, None))
        .collect();
    entries.push((&batch_keys[0], b"again", again, None));
    let calls = |client: &cluster_client::ClusterClient| -> u64 {
        client
            .node_stats()
            .iter()
            .flat_map(|n| n.connection_calls.iter())
            .sum()
    };
    let calls_before = calls(&client);
    let batched: Vec<String> = store
        .set_many_with_versions(&entries, none)
        .await
        .into_iter()
        .map(describe)
        .collect();
    // One script execution per primary (three), not one call per entry: the group path decided them.
    let batch_calls = calls(&client) - calls_before;
    assert!(
        batch_calls <= 3,
        "{batch_calls} calls for a batch of {} entries",
        entries.len()
    );
    for (i, (name, _, _)) in states.iter().enumerate() {
        assert_eq!(batched[i], single[i], "set over {name}");
        assert_eq!(
            client.get(&batch_keys[i]).await.unwrap(),
            client.get(&single_keys[i]).await.unwrap(),
            "stored after a set over {name}"
        );
    }
    assert_eq!(
        batched[states.len()],
        single[states.len()],
        "the second write of a key in one batch"
    );
    assert!(single[0].starts_with("written"), "{}", single[0]);
    assert!(
        single[states.len()].starts_with("written"),
        "{}",
        single[states.len()]
    );

    // Deletes: outcomes as single deletes, and `existed` as the stored state says.
    let single_keys: Vec<Vec<u8>> = (0..states.len())
        .map(|i| format!("{prefix}:del:single:{i}").into_bytes())
        .collect();
    let batch_keys: Vec<Vec<u8>> = (0..states.len())
        .map(|i| format!("{prefix}:del:batch:{i}").into_bytes())
        .collect();
    let mut single = Vec::new();
    for (key, (_, stored, _)) in single_keys.iter().zip(&states) {
        seed(key, stored).await;
        // Newer than `mine`, older than `newer`, like the clock's versions `delete_many` takes.
        single.push(describe(store.delete_with_version(key, at(1, 7), none).await));
    }
    for (key, (_, stored, _)) in batch_keys.iter().zip(&states) {
        seed(key, stored).await;
    }
    let deleted = store.delete_many(&batch_keys, none).await;
    for (i, ((name, _, live), result)) in states.iter().zip(deleted).enumerate() {
        match result {
            Ok(outcome) => {
                assert_eq!(outcome.existed, *live, "existed, delete over {name}");
                // `delete_many` takes fresh versions from the clock (newer than `mine`): compare
                // the kind of outcome, and the stored version where it was refused.
                let single_kind = single[i].split(' ').next().unwrap();
                let batch = describe(Ok(outcome.outcome));
                assert_eq!(
                    batch.split(' ').next().unwrap(),
                    single_kind,
                    "delete over {name}: {batch}"
                );
                if single_kind == "stale" {
                    assert_eq!(batch, single[i], "delete over {name}");
                }
            }
            Err(error) => assert_eq!(describe(Err(error)), single[i], "delete over {name}"),
        }
    }
    client.close().await;
}
