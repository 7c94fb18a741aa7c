//! The cross-deployment audit between a standalone node (the Redis being migrated from) and the
//! cluster (the one being migrated to): every difference found, then synced one way and both ways.

mod common;

use std::time::Duration;

use cluster_client::{ClusterClient, Deployment, SetOptions, Ttl};
use consistency::{
    AuditMode, AuditOptions, AuditReport, ConsistencyConfig, KeyState, Observed, SyncDirection, SyncHistory,
    SyncSource, Versioned, WriteOptions, audit_between,
};
use local_cluster::{LocalCluster, LocalStandalone, test_lock};

/// The keys of each kind, written on the two sides.
struct Fixture {
    prefix: String,
    total: u64,
}

async fn plain(client: &ClusterClient, key: &str, value: &str, ttl: Option<Duration>) {
    let options = ttl.map(SetOptions::ttl).unwrap_or_default();
    client
        .set(key.as_bytes(), value.as_bytes(), options)
        .await
        .unwrap();
}

/// Writes, under a fresh prefix:
/// - `same:*` (10 plain, equal on both) and `vsame:*` (10 versioned, same version on both),
/// - `src:*` (30 plain, source only; 5 of them with a TTL), `vsrc:*` (10 versioned, source only),
/// - `newer:*` (10 versioned, source newer) and `older:*` (10 versioned, target newer),
/// - `plaindiff:*` (10 plain, different values), `tgt:*` (15 versioned, target only).
async fn fixture(source: &Versioned, target: &Versioned) -> Fixture {
    let prefix = common::prefix("mig");
    let none = WriteOptions::default();
    let (s, t) = (source.client(), target.client());
    for i in 0..10 {
        let key = format!("{prefix}:same:{i}");
        plain(s, &key, "v", None).await;
        plain(t, &key, "v", None).await;
        let key = format!("{prefix}:vsame:{i}");
        let version = source.next_version();
        source
            .set_with_version(key.as_bytes(), b"v", version, None, none)
            .await
            .unwrap();
        target
            .set_with_version(key.as_bytes(), b"v", version, None, none)
            .await
            .unwrap();
    }
    for i in 0..30 {
        let ttl = (i < 5).then_some(Duration::from_secs(600));
        plain(s, &format!("{prefix}:src:{i}"), "legacy", ttl).await;
    }
    for i in 0..10 {
        let key = format!("{prefix}:vsrc:{i}");
        source.set(key.as_bytes(), b"v", None, none).await.unwrap();
        let key = format!("{prefix}:newer:{i}");
        target.set(key.as_bytes(), b"old", None, none).await.unwrap();
        source.set(key.as_bytes(), b"new", None, none).await.unwrap();
        let key = format!("{prefix}:older:{i}");
        source.set(key.as_bytes(), b"old", None, none).await.unwrap();
        target.set(key.as_bytes(), b"new", None, none).await.unwrap();
        let key = format!("{prefix}:plaindiff:{i}");
        plain(s, &key, "source", None).await;
        plain(t, &key, "target", None).await;
    }
    for i in 0..15 {
        let key = format!("{prefix}:tgt:{i}");
        target.set(key.as_bytes(), b"v", None, none).await.unwrap();
    }
    Fixture {
        prefix,
        total: 10 + 10 + 30 + 10 + 10 + 10 + 10 + 15,
    }
}

fn counts(report: &AuditReport) -> [u64; 5] {
    KeyState::ALL.map(|s| report.counts.get(s))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_between_a_standalone_node_and_the_cluster_finds_and_syncs_every_difference() {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let standalone = LocalStandalone::start(1).await.unwrap();
    let source_client = common::client(standalone.addrs()).await;
    let target_client = common::client(cluster.seeds()).await;
    assert_eq!(
        (source_client.deployment(), target_client.deployment()),
        (Deployment::Standalone, Deployment::Cluster)
    );
    let config = ConsistencyConfig::default().journal(None);
    let source = Versioned::new(source_client.clone(), config.clone()).unwrap();
    let target = Versioned::new(target_client.clone(), config).unwrap();
    let fixture = fixture(&source, &target).await;
    let history = SyncHistory::new(1_000);
    let options = AuditOptions::default()
        .pattern(format!("{}:*", fixture.prefix))
        .sample_limit(1_000);

    // Report only: consistent, replica lagging, missing, diverged, unversioned.
    let report = audit_between(&source_client, &target_client, &options, &history, |_| {})
        .await
        .unwrap();
    eprintln!("before sync: {report}");
    assert_eq!(report.keys_scanned, fixture.total, "{report}");
    assert_eq!(counts(&report), [20, 0, 55, 20, 10], "{report}");
    assert!(report.complete && history.is_empty());
    let sample = report
        .samples
        .iter()
        .find(|r| r.key.ends_with(b":tgt:0"))
        .expect("a target-only key is reported");
    assert_eq!(
        (sample.state, sample.copies[0].observed),
        (KeyState::Missing, Observed::Absent)
    );

    // One-way: the source's copies go to the target where they win, plain values included; the
    // target's newer copies and target-only keys stay.
    let one_way = options.clone().mode(AuditMode::Resolve);
    let report = audit_between(&source_client, &target_client, &one_way, &history, |_| {})
        .await
        .unwrap();
    eprintln!("one-way sync: {report}");
    assert_eq!(report.repairs.repaired, 30 + 10 + 10 + 10, "{report}");
    assert_eq!(report.repairs.left, 10 + 15, "{report}");
    assert_eq!(report.repairs.failed + report.repairs.unrepairable, 0, "{report}");
    assert_eq!(history.total_recorded(), 60);
    assert!(history.recent(100).iter().all(|e| e.source
        == SyncSource::DeploymentSync {
            from: "source".into(),
            to: "target".into()
        }));
    let ttl_key = format!("{}:src:0", fixture.prefix);
    assert!(
        matches!(target_client.pttl(ttl_key.as_bytes()).await.unwrap(), Ttl::Expires(left) if left > Duration::from_secs(500))
    );
    let copied = target
        .get(format!("{}:newer:3", fixture.prefix).as_bytes())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(copied.value().as_ref(), b"new");
    let plain_copy = target_client
        .get(format!("{}:plaindiff:3", fixture.prefix).as_bytes())
        .await
        .unwrap();
    assert_eq!(
        plain_copy.as_deref(),
        Some(&b"source"[..]),
        "plain values are copied as they are"
    );

    let report = audit_between(&source_client, &target_client, &options, &history, |_| {})
        .await
        .unwrap();
    assert_eq!(
        counts(&report),
        [fixture.total - 25, 0, 15, 10, 0],
        "after one-way: {report}"
    );

    // Both ways: the target's newer copies and its own keys go back to the source.
    let both = options
        .clone()
        .mode(AuditMode::Resolve)
        .sync_direction(SyncDirection::BothWays);
    let report = audit_between(&source_client, &target_client, &both, &history, |_| {})
        .await
        .unwrap();
    eprintln!("two-way sync: {report}");
    assert_eq!(report.repairs.repaired, 25, "{report}");
    let back = source
        .get(format!("{}:older:3", fixture.prefix).as_bytes())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back.value().as_ref(), b"new");

    let report = audit_between(&source_client, &target_client, &options, &history, |_| {})
        .await
        .unwrap();
    eprintln!("after sync: {report}");
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.counts.consistent, fixture.total, "{report}");
    source_client.close().await;
    target_client.close().await;
}
