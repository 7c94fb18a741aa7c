//! Standalone, client-sharded and ACL-restricted deployments, and replica reads.

mod common;

use std::time::Duration;

use cluster_client::{CallOptions, ClusterClient, Deployment, ReadFrom, SetOptions};
use cluster_config::{ClusterConfig, Mode as ConfigMode, ShardingStrategy};
use local_cluster::{LocalCluster, LocalClusterConfig, LocalStandalone, NodeConfig, test_lock};
use sharding::{KetamaRing, KeyRange};

/// Which node a sharder places a key on.
type Placement = dyn Fn(&[u8]) -> String;

async fn round_trip(client: &ClusterClient, prefix: &str, n: usize) {
    for i in 0..n {
        let key = format!("{prefix}:{i}");
        client
            .set(key.as_bytes(), key.as_bytes(), SetOptions::default())
            .await
            .unwrap();
    }
    let keys: Vec<String> = (0..n).map(|i| format!("{prefix}:{i}")).collect();
    for (key, value) in keys.iter().zip(client.get_many(&keys).await) {
        assert_eq!(value.unwrap().as_deref(), Some(key.as_bytes()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_and_sharded_modes_are_detected_and_route_like_the_sharder() {
    let _lock = test_lock::shared().await.unwrap();
    let nodes = LocalStandalone::start(3).await.unwrap();
    let addrs = nodes.addrs();

    // One standalone node, mode auto.
    let config = ClusterConfig::builder()
        .nodes([addrs[0].clone()])
        .build()
        .unwrap();
    let client = ClusterClient::connect(config).await.unwrap();
    assert_eq!(client.deployment(), Deployment::Standalone);
    round_trip(&client, "solo", 100).await;
    client.close().await;

    // Three standalone nodes, auto: sharded with the default strategy (consistent hashing).
    for (strategy, mode) in [
        (ShardingStrategy::ConsistentHash, Deployment::ShardedKetama),
        (ShardingStrategy::KeyRange, Deployment::ShardedKeyRange),
    ] {
        let config = ClusterConfig::builder()
            .nodes(addrs.clone())
            .sharding_strategy(strategy)
            .build()
            .unwrap();
        let client = ClusterClient::connect(config).await.unwrap();
        assert_eq!(client.deployment(), mode);
        let prefix = format!("{strategy}");
        round_trip(&client, &prefix, 300).await;
        // Each key sits on the node the sharding crate names, and only there.
        let equal = addrs.iter().map(|a| (a.clone(), 1));
        let expected: Box<Placement> = match strategy {
            ShardingStrategy::KeyRange => {
                let ranges = KeyRange::new(equal).unwrap();
                Box::new(move |k| ranges.node_for(k).to_string())
            }
            _ => {
                let ring = KetamaRing::new(equal).unwrap();
                Box::new(move |k| ring.node_for(k).to_string())
            }
        };
        let mut per_node = vec![0; 3];
        for i in 0..300 {
            let key = format!("{prefix}:{i}");
            let owner = expected(key.as_bytes());
            for (n, node) in nodes.nodes().iter().enumerate() {
                let here: u64 = node.command(["EXISTS", key.as_str()]).await.unwrap();
                assert_eq!(here == 1, node.addr() == owner, "{key} on {}", node.addr());
                per_node[n] += here;
            }
        }
        assert!(
            per_node.iter().all(|&n| n > 30),
            "keys spread over every node: {per_node:?}"
        );
        client.close().await;
    }

    // A cluster configuration pointed at standalone nodes is refused with a typed error.
    let config = ClusterConfig::builder()
        .nodes(addrs.clone())
        .mode(ConfigMode::Cluster)
        .build()
        .unwrap();
    let error = ClusterClient::connect(config).await.unwrap_err();
    assert!(error.to_string().contains("cluster"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_seeds_give_a_clear_error() {
    let config = ClusterConfig::builder()
        .nodes(["127.0.0.1:1"])
        .connect_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let error = ClusterClient::connect(config).await.unwrap_err();
    assert!(error.to_string().contains("REDIS_CLUSTER_NODES"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_user_without_dangerous_commands_can_do_every_cache_operation() {
    let _lock = test_lock::exclusive().await.unwrap();
    let mut settings = NodeConfig::test_defaults();
    settings.set("user", "cache on >cache-secret ~* &* +@all -@dangerous");
    let cluster = LocalCluster::start(LocalClusterConfig {
        settings,
        ..LocalClusterConfig::default()
    })
    .await
    .unwrap();
    let config = ClusterConfig::builder()
        .nodes(cluster.seeds())
        .username("cache")
        .password(cluster_config::Password::new("cache-secret"))
        .build()
        .unwrap();
    let client = ClusterClient::connect(config).await.unwrap();
    assert_eq!(client.deployment(), Deployment::Cluster);
    round_trip(&client, "acl", 200).await;
    assert!(
        client
            .set(b"acl:ttl", b"v", SetOptions::ttl(Duration::from_secs(5)))
            .await
            .unwrap()
    );
    assert!(client.pexpire(b"acl:ttl", Duration::from_secs(50)).await.unwrap());
    assert!(client.exists(b"acl:ttl").await.unwrap());
    client.pttl(b"acl:ttl").await.unwrap();
    assert!(client.del(b"acl:ttl").await.unwrap());
    assert_eq!(client.wait(b"acl:0", 1, Duration::from_secs(2)).await.unwrap(), 1);
    let script = cluster_client::Script::new("return redis.call('GET', KEYS[1])");
    assert_eq!(
        client
            .eval(&script, &[b"acl:1"], &[])
            .await
            .unwrap()
            .as_string()
            .as_deref(),
        Some("acl:1")
    );
    let primary = client.topology().shards()[0].primary.clone();
    client.scan_node(&primary, 0, Some(b"acl:*"), 100).await.unwrap();
    assert!(
        client
            .del_many(&["acl:0", "acl:1"])
            .await
            .iter()
            .all(|r| matches!(r, Ok(true)))
    );

    // The same user is refused a dangerous command, so the test really ran without @dangerous.
    let refused = client
        .node_command::<cluster_client::Value>(&primary, vec!["FLUSHALL".into()])
        .await;
    assert!(refused.unwrap_err().to_string().contains("NOPERM"));
    client.close().await;
}

/// `cmdstat_get` calls on a node.
async fn gets_on(node: &local_cluster::Node) -> u64 {
    let info = node.info("commandstats").await.unwrap();
    info.get("cmdstat_get")
        .and_then(|v| v.split(',').find_map(|kv| kv.strip_prefix("calls=")))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_reads_land_on_replicas_and_fall_back_when_one_dies() {
    let _lock = test_lock::exclusive().await.unwrap();
    let cluster = LocalCluster::start(LocalClusterConfig::default()).await.unwrap();
    let client = common::client(&cluster).await;
    let keys: Vec<String> = (0..300).map(|i| format!("rr:{i}")).collect();
    for key in &keys {
        client
            .set(key.as_bytes(), key.as_bytes(), SetOptions::default())
            .await
            .unwrap();
    }
    let replica_client = client.with_options(CallOptions::default().read_from(ReadFrom::Replica));
    // Replica reads start once the lag sampler has a window of history and the writes above are older
    // than the read-your-writes window (2 × the 1 s default max lag).
    let _ = replica_client.get(b"rr:0").await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let replicas: Vec<&local_cluster::Node> = cluster
        .nodes()
        .iter()
        .filter(|n| n.initial_role() == local_cluster::Role::Replica)
        .collect();
    let primaries: Vec<&local_cluster::Node> = cluster.primaries().await.unwrap();
    let mut before = 0;
    for r in &replicas {
        before += gets_on(r).await;
    }
    let mut before_primaries = 0;
    for p in &primaries {
        before_primaries += gets_on(p).await;
    }
    for key in &keys {
        assert_eq!(
            replica_client.get(key.as_bytes()).await.unwrap().as_deref(),
            Some(key.as_bytes())
        );
    }
    let mut after = 0;
    for r in &replicas {
        after += gets_on(r).await;
    }
    let mut after_primaries = 0;
    for p in &primaries {
        after_primaries += gets_on(p).await;
    }
    eprintln!(
        "replica reads: {} of 300 GETs on replicas, {} on primaries",
        after - before,
        after_primaries - before_primaries
    );
    assert!(after - before >= 290, "GETs went to replicas: {}", after - before);

    // A write makes the next read of that key go to the primary (read-your-writes).
    client.set(b"rr:0", b"new", SetOptions::default()).await.unwrap();
    assert_eq!(
        replica_client.get(b"rr:0").await.unwrap().as_deref(),
        Some(&b"new"[..])
    );

    // Kill one replica: reads of its shard keep succeeding, from the primary.
    replicas[0].kill().unwrap();
    let killed = std::time::Instant::now();
    let mut failures = 0;
    while killed.elapsed() < Duration::from_secs(2) {
        for key in keys.iter().take(100) {
            match replica_client.get(key.as_bytes()).await {
                Ok(value) => assert!(value.is_some()),
                Err(e) => {
                    failures += 1;
                    eprintln!("read failed after replica kill: {e}");
                }
            }
        }
    }
    assert_eq!(
        failures, 0,
        "reads fall back to the primary when their replica dies"
    );
    client.close().await;
}
