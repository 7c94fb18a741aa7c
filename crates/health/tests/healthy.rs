//! Health of real, healthy deployments started by `local-cluster`: a 3 + 3 cluster (shared with the
//! other read-only tests of this binary), the same cluster seen through a `ClusterClient`, and
//! standalone nodes.

use std::time::Duration;

use cluster_client::{ClusterClient, SetOptions};
use cluster_config::ClusterConfig;
use health::{HealthChecker, HealthConfig, HealthStatus, Role, TrendMetric};

/// Every slot of the cluster.
const SLOTS: u32 = sharding::SLOT_COUNT as u32;
use local_cluster::{LocalCluster, LocalStandalone, test_lock};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The tests' health settings.
fn settings() -> Result<HealthConfig, health::Error> {
    HealthConfig::builder()
        .interval(Duration::from_secs(2))
        // Generous: six nodes and the test share two cores, and a slow answer must not read as a dead
        // node.
        .node_timeout(Duration::from_secs(1))
        .record_metrics(false)
        .build()
}

/// Runs rounds until one is healthy and returns it. Right after start-up a node may still list a
/// replica it has not heard about by gossip as a primary without slots, which health rightly reports.
async fn healthy_round(checker: &HealthChecker) -> health::Observation {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let round = checker.check_now().await;
        if round.summary.status == HealthStatus::Healthy {
            return round;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not healthy within 10 s: {:#?}",
            round.summary.active_alerts
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_cluster_gives_a_healthy_summary_with_every_slot_and_node() -> TestResult {
    let _lock = test_lock::shared().await?;
    let cluster = LocalCluster::shared().await?;
    let config = ClusterConfig::builder().nodes(cluster.seeds()).build()?;
    let checker = HealthChecker::new(&config, settings()?)?;

    let round = healthy_round(&checker).await;
    let summary = &round.summary;
    assert_eq!(
        summary.status,
        HealthStatus::Healthy,
        "{:#?}",
        summary.active_alerts
    );
    assert_eq!(
        (summary.slots_covered, summary.slots_total),
        (Some(SLOTS), 16_384)
    );
    assert_eq!((summary.nodes_connected, summary.nodes_total), (6, 6));
    assert_eq!(
        (summary.replication.primaries, summary.replication.replicas),
        (3, 3)
    );
    assert_eq!(summary.replication.replicas_per_primary, 1.0);
    assert_eq!(summary.memory.len(), 6);
    assert!(summary.memory.iter().all(|m| m.used_bytes > 0));
    assert!(summary.latency_p50.is_some() && summary.latency_p99 >= summary.latency_p50);

    let snapshot = &round.snapshot;
    assert!(snapshot.cluster_mode);
    assert_eq!(snapshot.topology.len(), 6);
    for node in &snapshot.nodes {
        assert!(node.reachable && node.error.is_none(), "{node:#?}");
        let cluster_info = node.cluster_info.as_ref().expect("cluster info from every node");
        assert!(cluster_info.state_ok);
        assert_eq!(
            (cluster_info.slots_ok, cluster_info.known_nodes, cluster_info.size),
            (SLOTS, 6, 3)
        );
        assert!(node.id.as_ref().is_some_and(|id| id.len() == 40));
    }
    let primaries: Vec<&str> = snapshot
        .nodes
        .iter()
        .filter(|n| n.role() == Some(Role::Primary))
        .map(|n| n.addr.as_str())
        .collect();
    let mut expected: Vec<String> = cluster.primaries().await?.iter().map(|n| n.addr()).collect();
    expected.sort();
    assert_eq!(primaries, expected);

    let second = checker.check_now().await;
    assert_eq!(
        second.summary.status,
        HealthStatus::Healthy,
        "{:#?}",
        second.summary.active_alerts
    );
    let nodes = checker
        .trend(TrendMetric::NodesConnected, Duration::from_secs(3600))
        .expect("two samples");
    assert_eq!((nodes.min, nodes.max, nodes.samples), (6.0, 6.0, 2));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_seed_is_enough_to_find_every_node_in_the_first_round() -> TestResult {
    let _lock = test_lock::shared().await?;
    let cluster = LocalCluster::shared().await?;
    let config = ClusterConfig::builder()
        .nodes([cluster.nodes()[4].addr()])
        .build()?;
    let checker = HealthChecker::new(&config, settings()?)?;
    let round = healthy_round(&checker).await;
    let mut seen: Vec<String> = round.snapshot.nodes.iter().map(|n| n.addr.clone()).collect();
    let mut expected = cluster.seeds();
    seen.sort();
    expected.sort();
    assert_eq!(seen, expected);
    assert_eq!(
        round.summary.status,
        HealthStatus::Healthy,
        "{:#?}",
        round.summary.active_alerts
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attached_client_adds_its_latency_and_counts() -> TestResult {
    let _lock = test_lock::shared().await?;
    let cluster = LocalCluster::shared().await?;
    let client = ClusterClient::connect(ClusterConfig::builder().nodes(cluster.seeds()).build()?).await?;
    for i in 0..300 {
        let key = format!("health:client:{i}");
        client
            .set(key.as_bytes(), b"v", SetOptions::ttl(Duration::from_secs(60)))
            .await?;
        client.get(key.as_bytes()).await?;
    }
    let checker = HealthChecker::for_client(&client, settings()?)?;
    let round = healthy_round(&checker).await;
    let primaries: Vec<_> = round
        .snapshot
        .nodes
        .iter()
        .filter(|n| n.role() == Some(Role::Primary))
        .collect();
    assert_eq!(primaries.len(), 3);
    let commands: u64 = primaries
        .iter()
        .map(|n| n.client.as_ref().map_or(0, |c| c.commands))
        .sum();
    assert!(
        commands >= 600,
        "the client sent 600 commands to the primaries, health saw {commands}"
    );
    for node in primaries {
        let stats = node
            .client
            .as_ref()
            .expect("client stats for a primary the client used");
        assert!(
            stats.latency_p99 >= stats.latency_p50 && stats.latency_p99.is_some_and(|p| p > Duration::ZERO),
            "{stats:?}"
        );
    }
    // The summary's latency now comes from the client: the highest p99 of any node.
    let highest = round
        .snapshot
        .nodes
        .iter()
        .filter_map(|n| n.client.as_ref().and_then(|c| c.latency_p99))
        .max();
    assert_eq!(round.summary.latency_p99, highest);
    assert_eq!(
        round.summary.status,
        HealthStatus::Healthy,
        "{:#?}",
        round.summary.active_alerts
    );
    client.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_nodes_are_judged_without_slots() -> TestResult {
    let _lock = test_lock::shared().await?;
    let nodes = LocalStandalone::start(2).await?;
    let config = ClusterConfig::builder().nodes(nodes.addrs()).build()?;
    let checker = HealthChecker::new(&config, settings()?)?;
    let round = checker.check_now().await;
    assert!(!round.snapshot.cluster_mode);
    assert_eq!(
        round.summary.status,
        HealthStatus::Healthy,
        "{:#?}",
        round.summary.active_alerts
    );
    assert_eq!(
        (
            round.summary.nodes_connected,
            round.summary.nodes_total,
            round.summary.slots_covered
        ),
        (2, 2, None)
    );

    nodes.nodes()[1].kill()?;
    let round = checker.check_now().await;
    assert_eq!(round.summary.status, HealthStatus::Degraded);
    let alerts: Vec<(health::AlertKind, String)> = round
        .summary
        .active_alerts
        .iter()
        .map(|a| (a.kind, a.subject.clone()))
        .collect();
    assert_eq!(alerts, [(health::AlertKind::NodeDown, nodes.nodes()[1].addr())]);
    Ok(())
}
