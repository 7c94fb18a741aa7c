//! Helpers shared by the consistency integration tests.

#![allow(dead_code)]

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cluster_client::{ClientEvent, ClusterClient};
use cluster_config::ClusterConfig;
use consistency::{ConsistencyConfig, Failover, Versioned};
use local_cluster::Node;
use tokio::sync::broadcast;

/// A client for the given seeds with a 2 s command timeout.
pub async fn client(seeds: Vec<String>) -> ClusterClient {
    let config = ClusterConfig::builder()
        .nodes(seeds)
        .command_timeout(Duration::from_secs(2))
        .build()
        .expect("valid config");
    ClusterClient::connect(config).await.expect("client connects")
}

/// A versioned handle with the default settings.
pub fn versioned(client: &ClusterClient) -> Versioned {
    Versioned::new(client.clone(), ConsistencyConfig::default()).expect("valid settings")
}

/// A key prefix no earlier run of the same test used (the shared cluster lives as long as the test
/// binary, but a prefix per run keeps reruns against a detached cluster apart too).
pub fn prefix(name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{name}-{nanos:08x}")
}

/// `count` keys `{prefix}:{n}` whose slots are served by the shard of `primary` (per `client`).
pub fn keys_on(client: &ClusterClient, prefix: &str, primary: &str, count: usize) -> Vec<Vec<u8>> {
    let topology = client.topology();
    (0u64..)
        .map(|n| format!("{prefix}:{n}").into_bytes())
        .filter(|k| topology.shard_for_key(k).is_some_and(|s| s.primary == primary))
        .take(count)
        .collect()
}

/// The first 24 bytes a node holds for `key` (empty when absent), read on that very node.
pub async fn header_on(node: &Node, key: &[u8]) -> Vec<u8> {
    let args: [&[u8]; 4] = [b"GETRANGE", key, b"0", b"23"];
    let reply: Option<Vec<u8>> = node.command(args).await.expect("GETRANGE answers");
    reply.unwrap_or_default()
}

/// The client's next `FailoverObserved` event for `old_primary` (30 s at most).
pub async fn failover_event(events: &mut broadcast::Receiver<ClientEvent>, old_primary: &str) -> Failover {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = tokio::time::timeout(left, events.recv())
            .await
            .unwrap_or_else(|_| panic!("no FailoverObserved event for {old_primary} within 30 s"));
        match event.map(|e| Failover::from_event(&e)) {
            Ok(Some(failover)) if failover.old_primary == old_primary => return failover,
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => panic!("the client's events closed"),
        }
    }
}
