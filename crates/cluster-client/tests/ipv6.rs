//! A cluster whose nodes announce the IPv6 loopback `::1`: its topology, `MOVED` redirects and waits
//! all name nodes as `::1`, which must become `[::1]:port` to connect. Holds the exclusive test lock
//! (a private cluster, resharded under the client).

mod common;

use std::time::Duration;

use cluster_client::{ClusterClient, Deployment, SetOptions};
use cluster_config::ClusterConfig;
use local_cluster::{LocalCluster, LocalClusterConfig, LocalStandalone, NodeConfig, test_lock};

/// Whether this machine has an IPv6 loopback (DEVELOPERS.md allows loopback addresses only).
fn ipv6_loopback() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

fn ipv6_settings() -> NodeConfig {
    let mut settings = NodeConfig::test_defaults();
    // A later `bind` line wins: listen on both loopbacks (local-cluster administers over 127.0.0.1).
    settings.set("bind", "127.0.0.1 ::1");
    settings
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_announcing_ipv6_addresses_routes_redirects_and_waits() {
    if !ipv6_loopback() {
        eprintln!("skipped: this machine has no IPv6 loopback (::1)");
        return;
    }
    let _lock = test_lock::exclusive().await.unwrap();
    let mut settings = ipv6_settings();
    settings.set("cluster-announce-ip", "::1");
    let cluster = LocalCluster::start(LocalClusterConfig {
        settings,
        ..LocalClusterConfig::default()
    })
    .await
    .unwrap();
    let seeds: Vec<String> = cluster
        .nodes()
        .iter()
        .map(|n| format!("[::1]:{}", n.port()))
        .collect();
    let config = ClusterConfig::builder()
        .nodes(seeds)
        .command_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let client = ClusterClient::connect(config).await.unwrap();
    assert_eq!(client.deployment(), Deployment::Cluster);
    let topology = client.topology();
    assert_eq!(topology.shards().len(), 3, "{topology:?}");
    for addr in topology.nodes() {
        assert!(addr.starts_with("[::1]:"), "{addr} is bracketed IPv6");
    }
    let keys: Vec<String> = (0..300).map(|i| format!("v6:{i}")).collect();
    for key in &keys {
        client
            .set(key.as_bytes(), b"before", SetOptions::default())
            .await
            .unwrap();
    }

    // Move slots behind the client's back: the keys there answer `MOVED <slot> ::1:<port>`.
    let from = cluster.primary_for_slot(0).await.unwrap();
    let to = cluster.primary_for_slot(16_383).await.unwrap();
    let moved = cluster.migrate_slots(20, from, to).await.unwrap();
    for &slot in &moved {
        let key = common::key_for_slot("v6moved", slot);
        client.set(&key, b"after", SetOptions::default()).await.unwrap();
        assert_eq!(client.get(&key).await.unwrap().as_deref(), Some(&b"after"[..]));
    }
    let redirects: u64 = client.node_stats().iter().map(|s| s.redirects).sum();
    assert!(redirects > 0, "the client followed MOVED to an IPv6 address");
    let values = client.get_many(&keys).await;
    assert!(
        values
            .iter()
            .all(|v| matches!(v, Ok(Some(b)) if &b[..] == b"before"))
    );

    // A wait opens its own connection to the IPv6 primary.
    let key = common::key_for_slot("v6wait", moved[0]);
    client.set(&key, b"acked", SetOptions::default()).await.unwrap();
    assert_eq!(client.wait(&key, 1, Duration::from_secs(3)).await.unwrap(), 1);
    for stats in client.node_stats() {
        assert!(stats.node.starts_with("[::1]:"), "{}", stats.node);
    }
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_node_on_ipv6_serves() {
    if !ipv6_loopback() {
        eprintln!("skipped: this machine has no IPv6 loopback (::1)");
        return;
    }
    let _lock = test_lock::shared().await.unwrap();
    let node = LocalStandalone::start_with(1, ipv6_settings()).await.unwrap();
    let addr = format!("[::1]:{}", node.nodes()[0].port());
    let config = ClusterConfig::builder().nodes([addr.clone()]).build().unwrap();
    let client = ClusterClient::connect(config).await.unwrap();
    assert_eq!(client.deployment(), Deployment::Standalone);
    assert_eq!(client.topology().shards()[0].primary, addr);
    client.set(b"k", b"v", SetOptions::default()).await.unwrap();
    assert_eq!(client.get(b"k").await.unwrap().as_deref(), Some(&b"v"[..]));
    // No replica: a wait answers 0 at once, over a connection of its own.
    assert_eq!(client.wait(b"k", 0, Duration::from_millis(100)).await.unwrap(), 0);
    client.close().await;
}
