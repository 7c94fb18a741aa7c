//! `WAIT` must never stall the calls that share a node's connections: a replica that stopped answering
//! makes a `wait` last its whole timeout, and that is all it may do. Holds the exclusive test lock (a
//! SIGSTOPped replica on a private cluster).

mod common;

use std::time::{Duration, Instant};

use cluster_client::SetOptions;
use local_cluster::{LocalCluster, LocalClusterConfig, test_lock};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_on_a_stopped_replica_stalls_no_other_call_of_its_shard() {
    let _lock = test_lock::exclusive().await.unwrap();
    let cluster = LocalCluster::start(LocalClusterConfig::default()).await.unwrap();
    let client = common::client(&cluster).await;
    let primary = cluster.primary_for_slot(0).await.unwrap();
    let replica = cluster.replicas_of(primary).await.unwrap()[0];
    let shard = client.topology().shard_for_slot(0).unwrap().clone();
    let key = common::key_for_slot("wait", 0);
    // Keys of the same shard, in other slots, so that their calls share the primary's connections.
    let others: Vec<Vec<u8>> = (1..=100u16)
        .map(|i| common::key_for_slot("other", shard.slots[0].start() + i))
        .collect();
    for other in &others {
        client.set(other, b"x", SetOptions::default()).await.unwrap();
    }
    client.set(&key, b"before", SetOptions::default()).await.unwrap();
    assert_eq!(
        client.wait(&key, 1, Duration::from_secs(3)).await.unwrap(),
        1,
        "the replica acknowledges while it runs"
    );

    replica.pause().unwrap();
    client
        .set(&key, b"while stopped", SetOptions::default())
        .await
        .unwrap();
    let waiting = {
        let client = client.clone();
        let key = key.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let acked = client.wait(&key, 1, Duration::from_secs(3)).await;
            (acked, started.elapsed())
        })
    };
    // Let the WAIT reach the server before the reads start.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut longest = Duration::ZERO;
    let mut failures = Vec::new();
    for other in &others {
        let started = Instant::now();
        match client.get(other).await {
            Ok(value) => assert_eq!(value.as_deref(), Some(&b"x"[..])),
            Err(e) => failures.push(e.to_string()),
        }
        longest = longest.max(started.elapsed());
    }
    let (acked, waited) = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the wait returns within its 3 s timeout plus slack")
        .unwrap();
    replica.resume().unwrap();
    eprintln!(
        "WAIT with a stopped replica: 100 GETs on its shard, longest {longest:?}, {} failed; wait returned \
         {acked:?} after {waited:?}",
        failures.len()
    );
    assert!(failures.is_empty(), "GETs failed: {failures:?}");
    assert!(
        longest < Duration::from_millis(300),
        "a GET of the same shard waited {longest:?} behind the WAIT (command timeout 1 s)"
    );
    assert_eq!(acked.unwrap(), 0, "the stopped replica acknowledged nothing");
    assert!(
        waited >= Duration::from_millis(2_900) && waited < Duration::from_secs(5),
        "the wait lasted its timeout: {waited:?}"
    );

    // Once the replica runs again it catches up and acknowledges the write made while it was stopped.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match client.wait(&key, 1, Duration::from_secs(1)).await {
            Ok(1) => break,
            other => assert!(
                Instant::now() < deadline,
                "the resumed replica never acknowledged within 20 s: last {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_covers_writes_made_on_every_connection_of_the_node() {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let client = common::client(&cluster).await;
    // Concurrent writes spread over the node's connections; then one wait, whose acknowledgement must
    // cover every one of them: each key is then on the replica.
    let keys: Vec<Vec<u8>> = (0..200).map(|i| format!("{{spread}}:{i}").into_bytes()).collect();
    let writes = keys
        .iter()
        .map(|k| client.set(k, b"acked", SetOptions::default()));
    for result in futures::future::join_all(writes).await {
        result.unwrap();
    }
    assert_eq!(client.wait(&keys[0], 1, Duration::from_secs(3)).await.unwrap(), 1);
    let shard = client.topology().shard_for_key(&keys[0]).unwrap().clone();
    let replica = &shard.replicas[0];
    for key in &keys {
        let value: Option<String> = client
            .node_command(
                replica,
                vec!["GET".into(), cluster_client::Value::Bytes(key.clone().into())],
            )
            .await
            .unwrap();
        assert_eq!(
            value.as_deref(),
            Some("acked"),
            "{} on the replica",
            String::from_utf8_lossy(key)
        );
    }
    client.close().await;
}
