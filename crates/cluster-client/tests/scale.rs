//! Growing a cluster under load: a new primary joins and slots move to it while 32 tasks write and read.
//! Calls that meet the new node (MOVED and ASK to it, a refreshed slot table naming it) wait for its
//! connection within their deadline instead of failing fast as if it were down.

mod common;

use std::time::Duration;

use cluster_client::ClientEvent;
use local_cluster::{LocalCluster, LocalClusterConfig, test_lock};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_joining_and_taking_300_slots_under_load_surfaces_no_errors() {
    let _lock = test_lock::exclusive().await.unwrap();
    let cluster = LocalCluster::start(LocalClusterConfig {
        spares: 1,
        ..LocalClusterConfig::default()
    })
    .await
    .unwrap();
    let client = common::client(&cluster).await;
    let mut events = client.subscribe();
    let keys = common::keys("grow", 4000);
    let load = common::Load::start(&client, keys.clone(), 32, Duration::ZERO);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // `redis-cli --cluster add-node`, then `reshard` of 300 slots: 100 from each primary.
    let spare = &cluster.spares()[0];
    let port = spare.port().to_string();
    let primaries = cluster.primaries().await.unwrap();
    primaries[0]
        .command::<(), _, _>(["CLUSTER", "MEET", "127.0.0.1", port.as_str()])
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut everyone_knows = true;
        for node in cluster.nodes() {
            let text: String = node.command(["CLUSTER", "NODES"]).await.unwrap();
            everyone_knows &= text
                .lines()
                .any(|l| l.contains(&format!(":{port}@")) && !l.contains("handshake"));
        }
        let state = spare.cluster_info().await.unwrap();
        everyone_knows &= state.get("cluster_state") == Some("ok");
        if everyone_knows {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new node never knew the cluster, or the cluster never knew it"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut moved = Vec::new();
    for from in &primaries {
        moved.extend(cluster.migrate_slots(100, from, spare).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let calls = load.stop().await;

    let failures: Vec<_> = calls.iter().filter(|c| !c.ok).collect();
    let redirects: u64 = client.node_stats().iter().map(|s| s.redirects).sum();
    eprintln!(
        "a primary joined and took 300 slots: {} calls, {} errors, {redirects} redirects followed",
        calls.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "errors surfaced: {:?}",
        &failures[..failures.len().min(5)]
    );
    assert!(redirects > 0, "the load met MOVED or ASK");

    // The client routes the moved slots to the new primary, and never called it down.
    client.refresh_topology().await.unwrap();
    for &slot in &moved {
        assert_eq!(
            client.topology().shard_for_slot(slot).unwrap().primary,
            spare.addr()
        );
    }
    while let Ok(event) = events.try_recv() {
        if let ClientEvent::NodeDown { node, .. } = event {
            panic!("{node} was reported down, and no node went down");
        }
    }
    // Every value written by the load is intact.
    let values = client.get_many(keys.as_slice()).await;
    for (i, value) in values.into_iter().enumerate() {
        let value = value.unwrap().expect("every key was written");
        assert!(value.starts_with(format!("{i}:").as_bytes()), "key {i}");
    }
    client.close().await;
}
