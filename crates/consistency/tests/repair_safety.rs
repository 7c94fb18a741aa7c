//! Failover repair must not bring deleted data back: keys deleted by a plain `DEL` from another
//! client, keys whose TTL ran out, and keys under another writer's tombstone that expired must stay
//! absent after `repair_journal` and `repair_after_failover`, while writes the failover really lost
//! (the replica was frozen while they were made) are written again. A private 3 + 3 cluster, holding
//! the exclusive test lock: it freezes and kills nodes.

mod common;

use std::time::{Duration, Instant};

use consistency::{ConsistencyConfig, JournalCheck, Observed, Version, Versioned, WriteOptions};
use futures::StreamExt;
use local_cluster::{LocalCluster, LocalClusterConfig, Node, test_lock};

/// What `node` holds for `key`, read on that node (over the client's READONLY connection, so a
/// replica answers too).
async fn on_node(node: &Node, key: &[u8]) -> Observed {
    let client = CLIENT.get().expect("the reading client is set");
    let key = cluster_client::Value::Bytes(key.to_vec().into());
    let header: Option<bytes::Bytes> = client
        .node_command(
            &node.addr(),
            vec!["GETRANGE".into(), key.clone(), 0.into(), 23.into()],
        )
        .await
        .expect("GETRANGE answers");
    if let Some(header) = header.filter(|h| !h.is_empty()) {
        return Observed::from_stored(Some(&header));
    }
    let exists: i64 = client
        .node_command(&node.addr(), vec!["EXISTS".into(), key])
        .await
        .expect("EXISTS answers");
    if exists > 0 {
        Observed::Unversioned
    } else {
        Observed::Absent
    }
}

/// The client `on_node` reads through.
static CLIENT: std::sync::OnceLock<cluster_client::ClusterClient> = std::sync::OnceLock::new();

/// Waits until `node` no longer holds any of `keys` (a delete or an expiry replicated).
async fn wait_absent(node: &Node, keys: &[Vec<u8>], what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut left = 0;
        for key in keys {
            if on_node(node, key).await.is_present() {
                left += 1;
            }
        }
        if left == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{left} of {} keys ({what}) still on {} after 15 s",
            keys.len(),
            node.addr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts that none of `keys` is on `node`.
async fn assert_absent(node: &Node, keys: &[Vec<u8>], what: &str, after: &str) {
    for key in keys {
        let observed = on_node(node, key).await;
        assert_eq!(
            observed,
            Observed::Absent,
            "{what} {} came back after {after}",
            String::from_utf8_lossy(key)
        );
    }
}

/// Asserts that every `(key, version)` is on `node` at that version or newer.
async fn assert_restored(node: &Node, writes: &[(Vec<u8>, Version)], after: &str) {
    for (key, version) in writes {
        let observed = on_node(node, key).await;
        assert!(
            observed.version().is_some_and(|v| v >= *version),
            "the lost write of {} is not back after {after}: {observed}",
            String::from_utf8_lossy(key)
        );
    }
}

fn summary(name: &str, check: &JournalCheck) -> String {
    format!(
        "{name}: checked {}, present {}, missing {}, older {}, unproven {}, repaired {}, errors {:?}",
        check.checked,
        check.present,
        check.missing.len(),
        check.older.len(),
        check.unproven.len(),
        check.repairs.repaired,
        check.errors
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_restores_lost_writes_and_never_resurrects_deleted_keys() {
    let _lock = test_lock::exclusive().await.unwrap();
    let cluster = LocalCluster::start(LocalClusterConfig::default()).await.unwrap();
    let client = common::client(cluster.seeds()).await;
    // Another client, deleting behind this process's back, and another writer whose tombstones live
    // one second (it keeps no journal, so nothing ties its tombstone's life to a journal).
    let other = common::client(cluster.seeds()).await;
    let reader = common::client(cluster.seeds()).await;
    CLIENT
        .set(reader.clone())
        .expect("one test per binary sets the reader");
    let other_writer = Versioned::new(
        other.clone(),
        ConsistencyConfig::default()
            .journal(None)
            .tombstone_ttl(Duration::from_secs(1)),
    )
    .unwrap();
    let store = common::versioned(&client);
    let mut events = client.subscribe();
    let victim = cluster.primaries().await.unwrap()[0];
    let replica = cluster.replicas_of(victim).await.unwrap()[0];
    let prefix = common::prefix("resurrect");
    let keys = common::keys_on(&client, &prefix, &victim.addr(), 760);
    let (deleted, rest) = keys.split_at(100);
    let (expired, rest) = rest.split_at(30);
    let (tombstoned, lost) = rest.split_at(30);
    let none = WriteOptions::default();

    // Written through the journal, then deleted by a plain DEL from another client.
    for key in deleted {
        assert!(
            store
                .set(key, b"deleted later", None, none)
                .await
                .unwrap()
                .is_written()
        );
        assert!(other.del(key).await.unwrap(), "the plain DEL deleted");
    }
    // Written with a one-second TTL.
    for key in expired {
        let outcome = store
            .set(key, b"expires", Some(Duration::from_secs(1)), none)
            .await
            .unwrap();
        assert!(outcome.is_written());
    }
    // Written, then deleted by the other writer, whose tombstone lives one second.
    for key in tombstoned {
        assert!(
            store
                .set(key, b"tombstoned", None, none)
                .await
                .unwrap()
                .is_written()
        );
        let outcome = other_writer.delete(key, none).await.unwrap();
        assert!(outcome.is_written(), "{outcome:?}");
    }
    wait_absent(replica, deleted, "deleted by a plain DEL").await;
    wait_absent(replica, expired, "expired").await;
    wait_absent(replica, tombstoned, "under an expired tombstone").await;
    wait_absent(victim, expired, "expired").await;
    wait_absent(victim, tombstoned, "under an expired tombstone").await;

    // A burst the frozen replica cannot receive: 600 values of 32 KiB (19 MB) overflow the socket
    // buffers, so the last writes certainly miss it.
    let value = vec![b'v'; 32 * 1024];
    replica.pause().unwrap();
    let acked: Vec<(Vec<u8>, Version)> = futures::stream::iter(lost.to_vec())
        .map(|key| {
            let (store, value) = (&store, &value);
            async move {
                match store.set(&key, value, None, none).await.unwrap() {
                    consistency::WriteOutcome::Written { version, .. } => (key, version),
                    stale => panic!("a fresh key cannot be stale: {stale:?}"),
                }
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    victim.kill().unwrap();
    replica.resume().unwrap();
    let promoted = cluster
        .wait_for_promotion(victim, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(promoted.addr(), replica.addr());
    let failover = common::failover_event(&mut events, &victim.addr()).await;
    let mut truly_lost = Vec::new();
    for (key, version) in &acked {
        if on_node(promoted, key)
            .await
            .version()
            .is_none_or(|v| v < *version)
        {
            truly_lost.push((key.clone(), *version));
        }
    }
    assert!(
        !truly_lost.is_empty(),
        "a frozen replica cannot have received a 19 MB burst"
    );

    // The whole-journal repair (what a lagged event channel triggers) first, then the failover's.
    let whole = store.repair_journal().await.unwrap();
    eprintln!("{}", summary("repair_journal", &whole));
    assert_absent(
        promoted,
        deleted,
        "the key deleted by a plain DEL",
        "repair_journal",
    )
    .await;
    assert_absent(promoted, expired, "the expired key", "repair_journal").await;
    assert_absent(
        promoted,
        tombstoned,
        "the key under an expired tombstone",
        "repair_journal",
    )
    .await;
    assert_restored(promoted, &truly_lost, "repair_journal").await;
    assert_eq!(whole.repairs.repaired, truly_lost.len() as u64, "{whole:?}");
    assert!(whole.errors.is_empty(), "{:?}", whole.errors);
    // The deleted keys are reported as absent without evidence of a loss, not as lost.
    let unproven: std::collections::BTreeSet<Vec<u8>> = whole.unproven.iter().map(|k| k.to_vec()).collect();
    for key in deleted.iter().chain(tombstoned) {
        assert!(
            unproven.contains(key),
            "{} is not reported as unproven",
            String::from_utf8_lossy(key)
        );
    }
    assert_eq!(
        whole.lost(),
        truly_lost.len(),
        "only the truly lost writes are lost"
    );

    let after = store.repair_after_failover(&failover).await.unwrap();
    eprintln!("{}", summary("repair_after_failover", &after));
    assert_absent(
        promoted,
        deleted,
        "the key deleted by a plain DEL",
        "repair_after_failover",
    )
    .await;
    assert_absent(promoted, expired, "the expired key", "repair_after_failover").await;
    assert_absent(
        promoted,
        tombstoned,
        "the key under an expired tombstone",
        "repair_after_failover",
    )
    .await;
    assert_restored(promoted, &truly_lost, "repair_after_failover").await;
    assert_eq!(after.repairs.repaired, 0, "the first repair restored everything");

    // A graceful CLUSTER FAILOVER on another shard: the replica takes over only once it has every
    // write, so a key deleted by a plain DEL before it is a delete, never a loss.
    let second = cluster.primaries().await.unwrap()[1];
    let second_replica = cluster.replicas_of(second).await.unwrap()[0];
    let keys = common::keys_on(&client, &format!("{prefix}-manual"), &second.addr(), 50);
    let (deleted, kept) = keys.split_at(25);
    for key in &keys {
        assert!(store.set(key, b"v", None, none).await.unwrap().is_written());
    }
    for key in deleted {
        assert!(other.del(key).await.unwrap());
    }
    wait_absent(second_replica, deleted, "deleted by a plain DEL").await;
    second_replica
        .failover(local_cluster::FailoverKind::Graceful)
        .await
        .unwrap();
    let promoted = cluster
        .wait_for_promotion(second, Duration::from_secs(30))
        .await
        .unwrap();
    let failover = common::failover_event(&mut events, &second.addr()).await;
    let after = store.repair_after_failover(&failover).await.unwrap();
    eprintln!("{}", summary("manual failover, repair_after_failover", &after));
    let whole = store.repair_journal().await.unwrap();
    eprintln!("{}", summary("manual failover, repair_journal", &whole));
    assert_absent(
        promoted,
        deleted,
        "the key deleted by a plain DEL",
        "a manual failover's repairs",
    )
    .await;
    assert_eq!(
        (after.lost(), whole.lost()),
        (0, 0),
        "a graceful failover loses nothing"
    );
    for key in kept {
        assert!(
            on_node(promoted, key).await.version().is_some(),
            "the other keys stay"
        );
    }
    client.close().await;
    other.close().await;
    reader.close().await;
}
