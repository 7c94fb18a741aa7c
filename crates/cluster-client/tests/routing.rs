//! Routing and batches on a shared 3 + 3 cluster (no faults).

mod common;

use std::time::Duration;

use cluster_client::{Error, SetCondition, SetOptions, Ttl};
use local_cluster::{LocalCluster, test_lock};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_slot_range_routes_to_its_owner() {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let client = common::client(&cluster).await;
    let topology = client.topology();
    assert_eq!(topology.shards().len(), 3);
    assert_eq!(topology.unassigned_slots(), 0);
    for shard in topology.shards() {
        assert_eq!(shard.replicas.len(), 1, "{shard:?}");
        for range in &shard.slots {
            let (first, last) = (range.start(), range.end());
            for slot in [first, (first + last) / 2, last] {
                let key = common::key_for_slot("route", slot);
                client.set(&key, b"x", SetOptions::default()).await.unwrap();
                let owner = cluster.primary_for_slot(slot).await.unwrap();
                assert_eq!(owner.addr(), shard.primary, "slot {slot}");
                let on_owner: u64 = owner.command([&b"EXISTS"[..], &key]).await.unwrap();
                assert_eq!(
                    on_owner,
                    1,
                    "slot {slot} key is stored on its owner {}",
                    owner.addr()
                );
                assert_eq!(client.get(&key).await.unwrap().as_deref(), Some(&b"x"[..]));
            }
        }
    }
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_slot_batches_keep_input_order() {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let client = common::client(&cluster).await;
    let keys: Vec<String> = (0..1000).map(|i| format!("batch:{i}")).collect();
    let entries: Vec<(String, String, Option<Duration>)> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.clone(), format!("v{i}"), None))
        .collect();
    let written = client.set_many(&entries).await;
    assert_eq!(written.len(), 1000);
    assert!(
        written.iter().all(Result::is_ok),
        "{:?}",
        written.iter().find(|r| r.is_err())
    );

    let mut asked: Vec<String> = keys.clone();
    asked.insert(500, "batch:missing".into());
    let values = client.get_many(&asked).await;
    assert_eq!(values.len(), 1001);
    for (i, value) in values.iter().enumerate() {
        let expected = match i {
            500 => None,
            i if i < 500 => Some(format!("v{i}")),
            i => Some(format!("v{}", i - 1)),
        };
        assert_eq!(
            value.as_ref().unwrap().as_deref(),
            expected.as_deref().map(str::as_bytes),
            "position {i}"
        );
    }
    let deleted = client.del_many(&asked).await;
    assert_eq!(deleted.iter().filter(|r| matches!(r, Ok(true))).count(), 1000);
    assert!(matches!(deleted[500], Ok(false)));
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_key_operations_and_limits() {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let client = common::client(&cluster).await;
    let key = b"ops:one";
    client.del(key).await.unwrap();
    assert_eq!(client.pttl(key).await.unwrap(), Ttl::Missing);
    assert!(
        client
            .set(key, b"1", SetOptions::default().condition(SetCondition::IfAbsent))
            .await
            .unwrap()
    );
    assert!(
        !client
            .set(key, b"2", SetOptions::default().condition(SetCondition::IfAbsent))
            .await
            .unwrap()
    );
    assert!(
        !client
            .set(
                b"ops:absent",
                b"2",
                SetOptions::default().condition(SetCondition::IfPresent)
            )
            .await
            .unwrap()
    );
    assert_eq!(client.pttl(key).await.unwrap(), Ttl::Persistent);
    assert!(client.pexpire(key, Duration::from_secs(100)).await.unwrap());
    assert!(matches!(client.pttl(key).await.unwrap(), Ttl::Expires(d) if d > Duration::from_secs(90)));
    assert!(client.exists(key).await.unwrap());
    assert_eq!(
        client.wait(key, 1, Duration::from_secs(2)).await.unwrap(),
        1,
        "the replica acknowledges"
    );
    assert!(client.del(key).await.unwrap());
    assert!(!client.exists(key).await.unwrap());

    // Over-limit keys and values are refused before anything is sent.
    let max_key = client.config().limits().key_max_bytes;
    let big_key = vec![b'k'; max_key + 1];
    assert!(matches!(
        client.get(&big_key).await,
        Err(Error::KeyTooLarge { .. })
    ));
    let max_value = client.config().limits().value_max_bytes;
    let big_value = vec![0u8; max_value + 1];
    assert!(matches!(
        client.set(b"ops:big", &big_value, SetOptions::default()).await,
        Err(Error::ValueTooLarge { .. })
    ));
    assert!(!client.exists(b"ops:big").await.unwrap());

    // A server error is typed and names the node.
    client
        .node_command::<cluster_client::Value>(
            &client.topology().shard_for_key(b"ops:list").unwrap().primary,
            vec!["RPUSH".into(), "ops:list".into(), "a".into()],
        )
        .await
        .unwrap();
    match client.get(b"ops:list").await {
        Err(Error::Server { message, .. }) => assert!(message.starts_with("WRONGTYPE"), "{message}"),
        other => panic!("expected WRONGTYPE, got {other:?}"),
    }
    client.del(b"ops:list").await.unwrap();
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_and_scans() {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let client = common::client(&cluster).await;
    let script =
        cluster_client::Script::new("redis.call('SET', KEYS[1], ARGV[1]); return redis.call('GET', KEYS[1])");
    // NOSCRIPT on first use loads the script and retries.
    let reply = client.eval(&script, &[b"lua:{a}"], &[b"hello"]).await.unwrap();
    assert_eq!(reply.as_string().as_deref(), Some("hello"));
    let reply = client.eval(&script, &[b"lua:{b}"], &[b"again"]).await.unwrap();
    assert_eq!(reply.as_string().as_deref(), Some("again"));

    for i in 0..50 {
        client
            .set(format!("scan:{i}").as_bytes(), b"1", SetOptions::default())
            .await
            .unwrap();
    }
    let mut found = 0;
    for shard in client.topology().shards() {
        let mut cursor = 0;
        loop {
            let (next, keys) = client
                .scan_node(&shard.primary, cursor, Some(b"scan:*"), 100)
                .await
                .unwrap();
            found += keys.len();
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    assert_eq!(found, 50);
    client.close().await;
}

/// `SCRIPT FLUSH` (an operator, a restarted node, a failover to a replica that never ran the script) can
/// land between a client's `SCRIPT LOAD` and its retried `EVALSHA`. Each call must still run its script
/// exactly once: routed calls and calls addressed to one node (a replica here), while every node's
/// script cache is flushed in a tight loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_run_while_every_node_flushes_its_script_cache_in_a_loop() {
    use futures::StreamExt;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    let _lock = test_lock::exclusive().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let client = common::client(&cluster).await;
    let script = cluster_client::Script::new("return redis.call('INCR', KEYS[1])");
    let read_only = cluster_client::Script::new("return redis.call('EXISTS', KEYS[1])");
    let mut nodes = Vec::new();
    for primary in cluster.primaries().await.unwrap() {
        nodes.extend(cluster.replicas_of(primary).await.unwrap());
        nodes.push(primary);
    }
    let stop = AtomicBool::new(false);
    let flushes = AtomicU64::new(0);
    let flusher = async {
        while !stop.load(Ordering::Relaxed) {
            for node in &nodes {
                node.command::<(), _, _>(["SCRIPT", "FLUSH"]).await.unwrap();
                flushes.fetch_add(1, Ordering::Relaxed);
            }
        }
    };
    const CALLS: u64 = 3_000;
    const KEYS: u64 = 30;
    let calls = async {
        let errors: Vec<String> = futures::stream::iter(0..CALLS)
            .map(|i| {
                let (client, script, read_only) = (&client, &script, &read_only);
                async move {
                    let key = format!("noscript:{}", i % KEYS).into_bytes();
                    let routed = client.eval(script, &[&key], &[]).await.err();
                    let replica = client.topology().shard_for_key(&key).unwrap().replicas[0].clone();
                    let on_node = client.eval_on_node(&replica, read_only, &[&key], &[]).await.err();
                    routed
                        .into_iter()
                        .chain(on_node)
                        .map(|e| e.to_string())
                        .collect::<Vec<_>>()
                }
            })
            .buffer_unordered(32)
            .concat()
            .await;
        stop.store(true, Ordering::Relaxed);
        errors
    };
    let (errors, ()) = tokio::join!(calls, flusher);
    assert!(flushes.load(Ordering::Relaxed) > 100, "the flusher ran");
    assert!(
        errors.is_empty(),
        "{} calls failed, first: {:?}",
        errors.len(),
        errors.first()
    );
    // Every routed call ran exactly once: the counters add up to the number of calls.
    let mut total = 0;
    for k in 0..KEYS {
        let key = format!("noscript:{k}").into_bytes();
        let value = client.get(&key).await.unwrap().expect("counted");
        total += std::str::from_utf8(&value).unwrap().parse::<u64>().unwrap();
        client.del(&key).await.unwrap();
    }
    assert_eq!(total, CALLS);
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_get_their_own_replies_and_overflow_to_more_connections() {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let config = cluster_config::ClusterConfig::builder()
        .nodes(cluster.seeds())
        .pool_size(3)
        .command_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let client = cluster_client::ClusterClient::connect(config).await.unwrap();

    // One call at a time: every call on each node's first connection.
    for i in 0..30 {
        let key = format!("lanes:seq:{i}");
        client
            .set(key.as_bytes(), key.as_bytes(), SetOptions::default())
            .await
            .unwrap();
    }
    let calls = |client: &cluster_client::ClusterClient| -> Vec<Vec<u64>> {
        let primaries: Vec<String> = client
            .topology()
            .shards()
            .iter()
            .map(|s| s.primary.clone())
            .collect();
        client
            .node_stats()
            .into_iter()
            .filter(|s| primaries.contains(&s.node))
            .map(|s| s.connection_calls)
            .collect()
    };
    let sequential = calls(&client);
    assert_eq!(sequential.len(), 3);
    // (plus the client's own topology queries, also one at a time)
    assert!(
        sequential.iter().map(|c| c[0]).sum::<u64>() >= 30,
        "{sequential:?}"
    );
    assert!(
        sequential.iter().all(|c| c[1] == 0 && c[2] == 0),
        "{sequential:?}"
    );

    // 3,000 calls at once (~1,000 per node, far more than LANE_DEPTH): every call gets its own
    // reply, and the overflow goes to the other connections.
    let tasks: Vec<_> = (0..3000)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                let key = format!("lanes:par:{i}");
                let value = format!("value-{i}");
                client
                    .set(key.as_bytes(), value.as_bytes(), SetOptions::default())
                    .await?;
                let read = client.get(key.as_bytes()).await?;
                Ok::<_, Error>((value, read))
            })
        })
        .collect();
    for task in tasks {
        let (value, read) = task.await.unwrap().unwrap();
        assert_eq!(read.as_deref(), Some(value.as_bytes()));
    }
    let parallel = calls(&client);
    assert!(
        parallel.iter().any(|c| c[1] > 0),
        "some node used a second connection: {parallel:?}"
    );
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_counted_but_do_not_pass_for_slow_single_calls() {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let client = common::client(&cluster).await;
    let entries: Vec<(String, Vec<u8>, Option<Duration>)> = (0..3000)
        .map(|i| (format!("stats:{i}"), vec![b'v'; 1000], None))
        .collect();
    assert!(client.set_many(&entries).await.iter().all(Result::is_ok));
    let primaries: Vec<String> = client
        .topology()
        .shards()
        .iter()
        .map(|s| s.primary.clone())
        .collect();
    let stats: Vec<_> = client
        .node_stats()
        .into_iter()
        .filter(|s| primaries.contains(&s.node))
        .collect();
    assert!(stats.iter().all(|s| s.commands >= 1), "{stats:?}");
    assert!(
        stats.iter().all(|s| s.latency_p99.is_none()),
        "a 1,000-key pipeline is not timed as one command: {stats:?}"
    );

    // Single-key calls are timed.
    for (key, _, _) in entries.iter().take(30) {
        client.get(key.as_bytes()).await.unwrap();
    }
    let timed = client
        .node_stats()
        .into_iter()
        .filter(|s| primaries.contains(&s.node) && s.latency_p50.is_some_and(|p| p > Duration::ZERO))
        .count();
    assert_eq!(timed, 3);
    client.close().await;
}
