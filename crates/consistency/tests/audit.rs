//! Cluster audits: clean keys on the shared cluster, rate limiting and monitoring, and a deliberately
//! diverged replica on a private cluster that the audit finds and repairs.

mod common;

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use consistency::{
    AuditMode, AuditOptions, CopyRole, Envelope, KeyState, Observed, SyncSource, Version, WriteOptions,
};
use local_cluster::{LocalCluster, LocalClusterConfig, LocalStandalone, test_lock};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audit_of_clean_keys_counts_them_all_at_the_asked_rate_and_reports_progress() {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let client = common::client(cluster.seeds()).await;
    let store = common::versioned(&client);
    let prefix = common::prefix("clean");
    const KEYS: u64 = 600;
    for i in 0..KEYS {
        let key = format!("{prefix}:{i}");
        store
            .set(key.as_bytes(), b"v", None, WriteOptions::default())
            .await
            .unwrap();
    }
    let pattern = format!("{prefix}:*");

    let seen = Mutex::new(Vec::new());
    let options = AuditOptions::default().pattern(pattern.clone()).scan_count(100);
    let report = store
        .audit(&options, |p| seen.lock().unwrap().push(*p))
        .await
        .unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.keys_scanned, KEYS, "{report}");
    assert_eq!(report.counts.consistent, KEYS, "{report}");
    let seen = seen.into_inner().unwrap();
    let last = seen.last().expect("progress was reported");
    assert_eq!(
        (last.shards_done, last.shards_total, last.keys_scanned),
        (3, 3, KEYS)
    );
    assert!(seen.windows(2).all(|w| w[0].keys_scanned <= w[1].keys_scanned));

    // 600 keys at 1,000 keys/s take at least about 0.6 s.
    let paced = AuditOptions::default()
        .pattern(pattern.clone())
        .scan_count(100)
        .max_keys_per_second(1_000);
    let started = Instant::now();
    let report = store.audit(&paced, |_| {}).await.unwrap();
    assert_eq!(report.keys_scanned, KEYS);
    assert!(
        started.elapsed() >= Duration::from_millis(550),
        "{:?}",
        started.elapsed()
    );

    // A key limit stops early and says so.
    let limited = AuditOptions::default()
        .pattern(pattern.clone())
        .scan_count(10)
        .max_keys(50);
    let report = store.audit(&limited, |_| {}).await.unwrap();
    assert!(
        !report.complete && report.keys_scanned >= 50 && report.keys_scanned < KEYS,
        "{report}"
    );

    // The monitor audits periodically and keeps the last report.
    let monitor = store
        .spawn_monitor(
            Duration::from_millis(50),
            AuditOptions::default().pattern(pattern),
        )
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while monitor.runs() < 2 {
        assert!(
            Instant::now() < deadline,
            "the monitor did not audit twice within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let latest = monitor.latest().unwrap();
    assert!(latest.is_clean() && latest.keys_scanned == KEYS, "{latest}");
    monitor.stop();
    assert!(
        store
            .spawn_monitor(Duration::ZERO, AuditOptions::default())
            .is_err()
    );
    client.close().await;
}

/// Loads `entries` into a replica behind its primary's back: they are written to a standalone node,
/// saved to an RDB file, and merged into the replica with `DEBUG RELOAD MERGE NOFLUSH NOSAVE`.
///
/// A Redis Cluster replica cannot be written directly, whatever `replica-read-only` says: it answers
/// every write with MOVED to its primary, and a script touching a key gets "non local key". Loading
/// an RDB file is the one way to make a replica hold data its primary never had.
async fn diverge(replica: &local_cluster::Node, entries: &[(Vec<u8>, Vec<u8>)]) {
    let scratch = LocalStandalone::start(1).await.unwrap();
    let node = &scratch.nodes()[0];
    for (key, value) in entries {
        let args: [&[u8]; 3] = [b"SET", key, value];
        node.command::<(), _, _>(args).await.unwrap();
    }
    node.command::<(), _, _>(["SAVE"]).await.unwrap();
    std::fs::copy(node.dir().join("dump.rdb"), replica.dir().join("dump.rdb")).unwrap();
    replica
        .command::<(), _, _>(["DEBUG", "RELOAD", "MERGE", "NOFLUSH", "NOSAVE"])
        .await
        .unwrap();
}

fn set_of(keys: &[Vec<u8>]) -> BTreeSet<Vec<u8>> {
    keys.iter().cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_diverged_replica_is_found_by_the_audit_and_repaired() {
    let _lock = test_lock::exclusive().await.unwrap();
    let cluster = LocalCluster::start(LocalClusterConfig::default()).await.unwrap();
    let client = common::client(cluster.seeds()).await;
    let store = common::versioned(&client);
    let primary = cluster.primaries().await.unwrap()[0];
    let replica = cluster.replicas_of(primary).await.unwrap()[0];
    let keys = common::keys_on(&client, "div", &primary.addr(), 220);
    let (written, extra) = keys.split_at(200);
    let mut versions: Vec<Version> = Vec::new();
    for key in written {
        let outcome = store
            .set(
                key,
                b"primary",
                None,
                WriteOptions::wait(1, Duration::from_secs(2)),
            )
            .await
            .unwrap();
        versions.push(store.get(key).await.unwrap().unwrap().version().unwrap());
        assert!(outcome.is_written());
    }

    // The replica gets: newer versions of 5 keys, older versions of 5, plain junk for 5, and 20 keys
    // its primary never had.
    let newer = &written[0..5];
    let older = &written[5..10];
    let junk = &written[10..15];
    let mut planted = Vec::new();
    let replica_version = store.next_version();
    for key in newer.iter().chain(extra) {
        planted.push((
            key.clone(),
            Envelope::Value {
                version: replica_version,
                payload: b"replica",
            }
            .encode(),
        ));
    }
    for (key, version) in older.iter().zip(&versions[5..10]) {
        let old = Version::new(
            consistency::Hlc::new(version.hlc.millis() - 1_000, 0),
            version.writer,
        );
        planted.push((
            key.clone(),
            Envelope::Value {
                version: old,
                payload: b"old",
            }
            .encode(),
        ));
    }
    for key in junk {
        planted.push((key.clone(), b"junk".to_vec()));
    }
    diverge(replica, &planted).await;

    let options = AuditOptions::default().pattern("div:*").sample_limit(1_000);
    let report = store.audit(&options, |_| {}).await.unwrap();
    eprintln!("before repair: {report}");
    assert_eq!(report.keys_scanned, 220, "{report}");
    assert_eq!(
        (report.counts.diverged, report.counts.missing),
        (15, 20),
        "{report}"
    );
    assert_eq!(report.counts.consistent, 185, "{report}");
    let found = |state: KeyState| -> BTreeSet<Vec<u8>> {
        report
            .samples
            .iter()
            .filter(|r| r.state == state)
            .map(|r| r.key.to_vec())
            .collect()
    };
    assert_eq!(found(KeyState::Diverged), set_of(&written[0..15]));
    assert_eq!(found(KeyState::Missing), set_of(extra));
    let sample = report
        .samples
        .iter()
        .find(|r| r.key.as_ref() == &newer[0][..])
        .unwrap();
    assert_eq!(sample.copies[1].role, CopyRole::Replica);
    assert_eq!(sample.copies[1].observed, Observed::Value(replica_version));

    // A scan of the primaries alone cannot see keys only a replica holds.
    let primaries_only = store
        .audit(&options.clone().scan_replicas(false), |_| {})
        .await
        .unwrap();
    assert_eq!(
        (primaries_only.keys_scanned, primaries_only.counts.missing),
        (200, 0)
    );
    // Single-key checks agree with the audit.
    assert_eq!(
        store.verify_consistency(&extra[0]).await.unwrap().state,
        KeyState::Missing
    );
    assert_eq!(
        store.verify_consistency(&newer[0]).await.unwrap().state,
        KeyState::Diverged
    );
    assert_eq!(
        store.verify_consistency(&older[0]).await.unwrap().state,
        KeyState::Diverged
    );
    assert_eq!(
        store.verify_consistency(&junk[0]).await.unwrap().state,
        KeyState::Diverged
    );
    assert_eq!(
        store.verify_consistency(&written[100]).await.unwrap().state,
        KeyState::Consistent
    );

    // Resolve: the newest copy wins everywhere.
    let resolve = options.clone().mode(AuditMode::Resolve);
    let report = store.audit(&resolve, |_| {}).await.unwrap();
    eprintln!("resolve: {report}");
    assert_eq!(report.repairs.repaired, 35, "{report}");
    assert_eq!(report.repairs.failed + report.repairs.unrepairable, 0, "{report}");
    let history = store.history().recent(100);
    assert_eq!(history.len(), 35);
    assert!(
        history
            .iter()
            .all(|e| matches!(&e.source, SyncSource::AuditRepair { primary: p } if *p == primary.addr()))
    );
    let event = store.history().for_key(&older[0]).pop().unwrap();
    assert_eq!(
        event.after,
        Observed::Value(versions[5]),
        "the primary's newer copy won: {event:?}"
    );

    let report = store.audit(&options, |_| {}).await.unwrap();
    eprintln!("after repair: {report}");
    assert!(
        report.is_clean() && report.counts.consistent == 220,
        "after repair: {report}"
    );
    for key in newer.iter().chain(extra) {
        let value = store.get(key).await.unwrap().unwrap();
        assert_eq!(
            (value.value().as_ref(), value.version()),
            (&b"replica"[..], Some(replica_version))
        );
    }
    for (key, version) in older.iter().chain(junk).zip(&versions[5..15]) {
        let value = store.get(key).await.unwrap().unwrap();
        assert_eq!(
            (value.value().as_ref(), value.version()),
            (&b"primary"[..], Some(*version))
        );
    }
    client.close().await;
}
