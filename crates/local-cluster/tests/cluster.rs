//! Real 3 + 3 clusters: bring-up, kill, pause, client pause, manual failover and slot migration.

use std::time::{Duration, Instant};

use fred::prelude::*;
use local_cluster::{FailoverKind, LocalCluster, LocalClusterConfig, LocalStandalone, Role, test_lock};
use sharding::SLOT_COUNT as SLOTS;

/// A fred cluster client over every node: it follows MOVED and ASK, so it can write while slots move.
async fn fred_cluster_client(cluster: &LocalCluster) -> Client {
    let hosts = cluster
        .nodes()
        .iter()
        .map(|n| ("127.0.0.1".to_string(), n.port()))
        .collect();
    let config = Config {
        server: ServerConfig::new_clustered(hosts),
        ..Config::default()
    };
    let client = Builder::from_config(config)
        .set_policy(ReconnectPolicy::new_constant(0, 100))
        .with_performance_config(|p| p.default_command_timeout = Duration::from_secs(5))
        .build()
        .expect("fred client config");
    client.init().await.expect("fred cluster client connects");
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_by_three_cluster_is_ready() {
    let _lock = test_lock::exclusive().await.unwrap();
    let started = Instant::now();
    let cluster = LocalCluster::start(LocalClusterConfig {
        spares: 1,
        ..LocalClusterConfig::default()
    })
    .await
    .unwrap();
    eprintln!("3+3 cluster (and a spare) ready in {:?}", started.elapsed());
    assert_eq!(cluster.nodes().len(), 6);

    // The spare runs in cluster mode, knows only itself, and the cluster does not know it.
    let spare = &cluster.spares()[0];
    assert!(spare.is_running());
    let known: String = spare.command(["CLUSTER", "NODES"]).await.unwrap();
    assert_eq!(known.lines().count(), 1, "{known}");
    assert!(
        cluster
            .topology()
            .await
            .unwrap()
            .iter()
            .all(|e| e.port != Some(spare.port()))
    );
    assert_eq!(
        cluster.node_by_port(spare.port()).map(|n| n.port()),
        Some(spare.port())
    );

    let topology = cluster.topology().await.unwrap();
    let primaries: Vec<_> = topology.iter().filter(|e| e.is_primary()).collect();
    assert_eq!(primaries.len(), 3, "{topology:?}");
    assert_eq!(
        primaries.iter().map(|p| p.slot_count()).sum::<usize>(),
        SLOTS as usize
    );
    for primary in &primaries {
        let replicas: Vec<_> = topology
            .iter()
            .filter(|e| e.primary_id.as_deref() == Some(&primary.id))
            .collect();
        assert_eq!(
            replicas.len(),
            1,
            "primary {:?} should have one replica: {topology:?}",
            primary.addr
        );
    }
    for node in cluster.nodes() {
        let info = node.cluster_info().await.unwrap();
        assert_eq!(info.get("cluster_state"), Some("ok"), "{}", node.addr());
        assert_eq!(info.get_u64("cluster_slots_assigned"), Some(SLOTS as u64));
        if node.initial_role() == Role::Replica {
            let repl = node.info("replication").await.unwrap();
            assert_eq!(repl.get("master_link_status"), Some("up"), "{}", node.addr());
            assert!(
                repl.get_u64("slave_repl_offset").unwrap() > 0,
                "offset bumped so CLUSTER SLOTS lists it"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_primary_is_replaced_by_its_replica() {
    let _lock = test_lock::exclusive().await.unwrap();
    let cluster = LocalCluster::start(LocalClusterConfig::default()).await.unwrap();
    let victim = cluster.primary_for_slot(0).await.unwrap();
    let replica = cluster.replicas_of(victim).await.unwrap()[0];
    let pid = victim.pid().unwrap();
    let killed = Instant::now();
    victim.kill().unwrap();
    assert!(victim.pid().is_none());
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "killed process was reaped"
    );

    let promoted = cluster
        .wait_for_promotion(victim, Duration::from_secs(15))
        .await
        .unwrap();
    let took = killed.elapsed();
    eprintln!("replica promoted {took:?} after kill -9 (node timeout 2000 ms)");
    assert_eq!(promoted.port(), replica.port());
    assert_eq!(promoted.role().await.unwrap(), Role::Primary);
    assert!(took < Duration::from_secs(10), "promotion took {took:?}");

    // The old primary comes back as a replica of the node that replaced it.
    victim.restart().await.unwrap();
    cluster.wait_until_healthy(Duration::from_secs(20)).await.unwrap();
    assert_eq!(victim.role().await.unwrap(), Role::Replica);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_client_pause_and_manual_failover() {
    let _lock = test_lock::exclusive().await.unwrap();
    let cluster = LocalCluster::start(LocalClusterConfig::default()).await.unwrap();
    let primary = cluster.primary_for_slot(16_000).await.unwrap();

    // SIGSTOP for less than the node timeout: no answer meanwhile, no failover afterwards.
    primary.pause().unwrap();
    let stalled = tokio::time::timeout(
        Duration::from_millis(500),
        primary.command::<String, _, _>(["PING"]),
    )
    .await;
    assert!(stalled.is_err(), "a stopped process must not answer: {stalled:?}");
    primary.resume().unwrap();
    assert_eq!(primary.command::<String, _, _>(["PING"]).await.unwrap(), "PONG");
    cluster.wait_until_healthy(Duration::from_secs(10)).await.unwrap();
    assert_eq!(
        cluster.primary_for_slot(16_000).await.unwrap().port(),
        primary.port()
    );

    // CLIENT PAUSE holds commands for its duration without stopping the process.
    primary.client_pause(Duration::from_millis(600)).await.unwrap();
    let started = Instant::now();
    let _: Option<String> = primary.command(["GET", "{a}x"]).await.unwrap_or(None);
    let held = started.elapsed();
    assert!(
        held >= Duration::from_millis(400),
        "GET came back after {held:?} during a 600 ms pause"
    );

    // A graceful CLUSTER FAILOVER on the replica swaps roles.
    let replica = cluster.replicas_of(primary).await.unwrap()[0];
    replica.failover(FailoverKind::Graceful).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while replica.role().await.unwrap() != Role::Primary {
        assert!(
            Instant::now() < deadline,
            "replica was not promoted by CLUSTER FAILOVER"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.wait_until_healthy(Duration::from_secs(10)).await.unwrap();
    assert_eq!(
        cluster.primary_for_slot(16_000).await.unwrap().port(),
        replica.port()
    );
    assert_eq!(primary.role().await.unwrap(), Role::Replica);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrating_slots_under_a_writer_keeps_every_value() {
    let _lock = test_lock::exclusive().await.unwrap();
    let cluster = LocalCluster::start(LocalClusterConfig::default()).await.unwrap();
    let client = fred_cluster_client(&cluster).await;
    for i in 0..5_000 {
        let _: () = client
            .set(format!("key:{i}"), i, None, None, false)
            .await
            .unwrap();
    }
    let writer_client = client.clone();
    let writer = tokio::spawn(async move {
        let mut i = 5_000u32;
        let deadline = Instant::now() + Duration::from_secs(30);
        while writer_client
            .get::<Option<u32>, _>("stop-writer")
            .await
            .unwrap()
            .is_none()
        {
            let _: () = writer_client
                .set(format!("key:{i}"), i, None, None, false)
                .await
                .unwrap();
            i += 1;
            assert!(Instant::now() < deadline, "writer ran past its deadline");
        }
        i
    });

    let from = cluster.primary_for_slot(0).await.unwrap();
    let to = cluster.primary_for_slot(SLOTS - 1).await.unwrap();
    let moved = cluster.migrate_slots(100, from, to).await.unwrap();
    assert_eq!(moved.len(), 100);
    let _: () = client.set("stop-writer", 1, None, None, false).await.unwrap();
    let written = writer.await.unwrap();
    assert!(written > 5_000, "the writer ran during the migration");

    cluster.wait_until_healthy(Duration::from_secs(10)).await.unwrap();
    for slot in &moved {
        assert_eq!(cluster.primary_for_slot(*slot).await.unwrap().port(), to.port());
    }
    let in_moved: u64 = {
        let mut n = 0;
        for slot in &moved {
            n += to
                .command::<u64, _, _>(["CLUSTER", "COUNTKEYSINSLOT", &slot.to_string()])
                .await
                .unwrap();
        }
        n
    };
    assert!(in_moved > 0, "some keys lived in the migrated slots");
    for i in 0..written {
        let value: Option<u32> = client.get(format!("key:{i}")).await.unwrap();
        assert_eq!(value, Some(i), "key:{i} after migration");
    }
    let _ = client.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_nodes_answer_ping() {
    let _lock = test_lock::shared().await.unwrap();
    let nodes = LocalStandalone::start(3).await.unwrap();
    assert_eq!(nodes.addrs().len(), 3);
    for node in nodes.nodes() {
        assert_eq!(node.command::<String, _, _>(["PING"]).await.unwrap(), "PONG");
        let info = node.info("cluster").await.unwrap();
        assert_eq!(info.get("cluster_enabled"), Some("0"));
    }
    let pids: Vec<u32> = nodes.nodes().iter().map(|n| n.pid().unwrap()).collect();
    drop(nodes);
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "pid {pid} still exists after drop"
        );
    }
}
