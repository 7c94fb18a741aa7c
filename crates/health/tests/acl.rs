//! Health under the least-privilege ACL user the implementation guide recommends (`+@all -@dangerous`):
//! `INFO` is denied, so what only `INFO` tells (memory, replication offsets, ops/s, keys) is unknown,
//! and said once in the summary; the nodes are never reported down for it.

use std::time::Duration;

use cluster_config::{ClusterConfig, Password};
use health::{AlertKind, HealthChecker, HealthConfig, HealthStatus};
use local_cluster::{LocalCluster, LocalClusterConfig, LocalStandalone, NodeConfig, test_lock};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const USER: &str = "cache";
const SECRET: &str = "cache-secret";

fn restricted_settings() -> NodeConfig {
    let mut settings = NodeConfig::test_defaults();
    settings.set("user", format!("{USER} on >{SECRET} ~* &* +@all -@dangerous"));
    settings
}

fn config(nodes: Vec<String>) -> Result<ClusterConfig, cluster_config::Error> {
    ClusterConfig::builder()
        .nodes(nodes)
        .username(USER)
        .password(Password::new(SECRET))
        .build()
}

fn settings() -> Result<HealthConfig, health::Error> {
    HealthConfig::builder()
        .interval(Duration::from_secs(2))
        .node_timeout(Duration::from_secs(1))
        .record_metrics(false)
        .build()
}

/// The first round that is not degraded by start-up (a replica not yet known by gossip), or the last.
async fn settled_round(checker: &HealthChecker) -> health::Observation {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let round = checker.check_now().await;
        if round.summary.status == HealthStatus::Healthy || std::time::Instant::now() >= deadline {
            return round;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn assert_unknown_said_once(round: &health::Observation, nodes: usize) {
    let summary = &round.summary;
    assert_eq!(
        summary.status,
        HealthStatus::Healthy,
        "{:#?}",
        summary.active_alerts
    );
    assert_eq!(
        summary.nodes_connected, nodes,
        "every node answered: {summary:#?}"
    );
    assert!(
        !summary
            .active_alerts
            .iter()
            .any(|a| matches!(a.kind, AlertKind::NodeDown)),
        "{:#?}",
        summary.active_alerts
    );
    assert_eq!(summary.unknown.len(), 1, "said once: {:?}", summary.unknown);
    let note = &summary.unknown[0];
    assert!(
        note.contains("INFO") && note.contains(&nodes.to_string()),
        "{note}"
    );
    assert!(note.contains("+info"), "says how to fix it: {note}");
    assert!(!note.contains(SECRET), "{note}");
    for node in &round.snapshot.nodes {
        assert!(node.reachable, "{node:?}");
        assert!(node.info.is_none() && node.info_denied, "{node:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_seen_by_a_user_without_dangerous_commands_is_healthy_with_facts_unknown() -> TestResult {
    let _lock = test_lock::exclusive().await?;
    let cluster = LocalCluster::start(LocalClusterConfig {
        settings: restricted_settings(),
        ..LocalClusterConfig::default()
    })
    .await?;
    let checker = HealthChecker::new(&config(cluster.seeds())?, settings()?)?;
    let round = settled_round(&checker).await;
    assert_unknown_said_once(&round, 6);
    let summary = &round.summary;
    // What the cluster's own commands tell is still known.
    assert_eq!(summary.slots_covered, Some(16_384));
    assert_eq!(
        (summary.replication.primaries, summary.replication.replicas),
        (3, 3)
    );
    assert!(round.snapshot.cluster_mode);
    checker.close();

    // The same through a client's node connections.
    let client = cluster_client::ClusterClient::connect(config(cluster.seeds())?).await?;
    let checker = HealthChecker::for_client(&client, settings()?)?;
    assert_unknown_said_once(&settled_round(&checker).await, 6);
    checker.close();
    client.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_node_seen_by_a_user_without_dangerous_commands_is_up() -> TestResult {
    let _lock = test_lock::shared().await?;
    let standalone = LocalStandalone::start_with(1, restricted_settings()).await?;
    let checker = HealthChecker::new(&config(standalone.addrs())?, settings()?)?;
    let round = settled_round(&checker).await;
    assert_unknown_said_once(&round, 1);
    assert!(!round.snapshot.cluster_mode);
    checker.close();
    Ok(())
}
