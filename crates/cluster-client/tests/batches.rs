//! The batch connection (the `bulk` module) under the conditions that could mix up its replies: batches
//! cancelled while in flight, a primary stopped with SIGSTOP mid-batch, and replies far larger than one
//! read.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cluster_client::{ClusterClient, Error};
use cluster_config::ClusterConfig;
use local_cluster::{LocalCluster, LocalClusterConfig, test_lock};

fn value_of(i: usize) -> String {
    format!("value-of-{i}")
}

/// Batches dropped at random points while in flight (timeouts of a few microseconds) share the
/// connection with batches that complete: every completed batch must still get its own replies, in
/// its own order, never a cancelled batch's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_batches_never_shift_the_replies_of_others() {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let client = common::client(&cluster).await;
    let keys: Arc<Vec<String>> = Arc::new((0..2_000).map(|i| format!("cancel:{i}")).collect());
    let entries: Vec<(String, String, Option<Duration>)> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.clone(), value_of(i), None))
        .collect();
    assert!(client.set_many(&entries).await.iter().all(Result::is_ok));

    let tasks = (0..8u64).map(|task| {
        let client = client.clone();
        let keys = keys.clone();
        tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(task);
            let (mut completed, mut cancelled) = (0usize, 0usize);
            for _ in 0..150 {
                let picked: Vec<usize> = (0..rng.usize(1..80)).map(|_| rng.usize(..keys.len())).collect();
                let asked: Vec<&str> = picked.iter().map(|&i| keys[i].as_str()).collect();
                // Writes of the same values interleave with the reads: their `OK` replies must never
                // be taken for a read's value.
                let write = rng.bool();
                let deadline = if rng.bool() {
                    Duration::from_micros(rng.u64(1..400))
                } else {
                    Duration::from_secs(5)
                };
                if write {
                    let batch: Vec<(&str, String, Option<Duration>)> = picked
                        .iter()
                        .map(|&i| (keys[i].as_str(), value_of(i), None))
                        .collect();
                    match tokio::time::timeout(deadline, client.set_many(&batch)).await {
                        Ok(results) => {
                            completed += 1;
                            assert!(results.iter().all(Result::is_ok), "{results:?}");
                        }
                        Err(_) => cancelled += 1,
                    }
                    continue;
                }
                match tokio::time::timeout(deadline, client.get_many(&asked)).await {
                    Ok(values) => {
                        completed += 1;
                        for (&i, value) in picked.iter().zip(&values) {
                            let value = value.as_ref().expect("no error without faults");
                            assert_eq!(
                                value.as_deref(),
                                Some(value_of(i).as_bytes()),
                                "key {} got another key's reply",
                                keys[i]
                            );
                        }
                    }
                    Err(_) => cancelled += 1,
                }
            }
            (completed, cancelled)
        })
    });
    let (mut completed, mut cancelled) = (0, 0);
    for task in futures::future::join_all(tasks).await {
        let (c, x) = task.unwrap();
        completed += c;
        cancelled += x;
    }
    assert!(completed > 100, "{completed} batches completed");
    assert!(cancelled > 10, "{cancelled} batches were cancelled in flight");
    // And afterwards, a whole batch reads back exactly.
    let values = client.get_many(&keys[..]).await;
    for (i, value) in values.iter().enumerate() {
        assert_eq!(value.as_ref().unwrap().as_deref(), Some(value_of(i).as_bytes()));
    }
    client.close().await;
}

/// Values far larger than one read (and batches larger than one gathered write) come back whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_values_span_many_reads_and_writes() {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let client = common::client(&cluster).await;
    let entries: Vec<(String, Vec<u8>, Option<Duration>)> = (0..40)
        .map(|i| {
            let len = 1 + i * 25_000;
            let value: Vec<u8> = (0..len).map(|j| (j * 31 + i) as u8).collect();
            (format!("large:{i}"), value, Some(Duration::from_secs(60)))
        })
        .collect();
    assert!(client.set_many(&entries).await.iter().all(Result::is_ok));
    let keys: Vec<&str> = entries.iter().map(|(k, _, _)| k.as_str()).collect();
    let values = client.get_many(&keys).await;
    for ((key, want, _), got) in entries.iter().zip(values) {
        let got = got.unwrap().unwrap_or_else(|| panic!("{key} is missing"));
        assert_eq!(got.len(), want.len(), "{key}");
        assert!(got[..] == want[..], "{key}: the bytes differ");
    }
    assert!(client.del_many(&keys).await.iter().all(|r| matches!(r, Ok(true))));
    client.close().await;
}

/// A primary stopped with SIGSTOP: the batch's keys of that shard fail within the command timeout
/// (the others are served), and once it runs again the next batch opens a fresh connection and reads
/// every key right: nothing of the stuck connection's late replies reaches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_primary_fails_its_keys_in_time_and_the_next_batch_reads_right() {
    let _lock = test_lock::exclusive().await.unwrap();
    let cluster = LocalCluster::start(LocalClusterConfig::default()).await.unwrap();
    let timeout = Duration::from_millis(400);
    let config = ClusterConfig::builder()
        .nodes(cluster.seeds())
        .command_timeout(timeout)
        .build()
        .unwrap();
    let client = ClusterClient::connect(config).await.unwrap();
    let keys: Vec<String> = (0..600).map(|i| format!("stop:{i}")).collect();
    let entries: Vec<(&str, String, Option<Duration>)> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.as_str(), value_of(i), None))
        .collect();
    assert!(client.set_many(&entries).await.iter().all(Result::is_ok));
    // Which shard each key lives on.
    let topology = client.topology();
    let owner: HashMap<&str, String> = keys
        .iter()
        .map(|k| {
            let slot = sharding::key_slot(k.as_bytes());
            let shard = topology
                .shards()
                .iter()
                .find(|s| s.slots.iter().any(|r| r.contains(slot)));
            (k.as_str(), shard.unwrap().primary.clone())
        })
        .collect();
    let stopped = cluster.primaries().await.unwrap()[0];
    let stopped_addr = stopped.addr();

    stopped.pause().unwrap();
    let started = Instant::now();
    let during = client.get_many(&keys).await;
    let took = started.elapsed();
    // Let late replies of the stuck connection arrive before the next batch.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stopped.resume().unwrap();

    assert!(
        took < timeout * 3,
        "the batch took {took:?} with a {timeout:?} timeout"
    );
    let mut failed = 0;
    for (i, (key, result)) in keys.iter().zip(&during).enumerate() {
        if owner[key.as_str()] == stopped_addr {
            match result {
                Err(Error::Timeout { .. }) => failed += 1,
                Err(other) => panic!("{key}: {other}"),
                Ok(value) => panic!("{key} on the stopped primary answered {value:?}"),
            }
        } else {
            assert_eq!(
                result.as_ref().unwrap().as_deref(),
                Some(value_of(i).as_bytes()),
                "{key}"
            );
        }
    }
    assert!(failed > 100, "{failed} keys of the stopped shard failed");

    let after = client.get_many(&keys).await;
    for (i, (key, result)) in keys.iter().zip(&after).enumerate() {
        let value = result
            .as_ref()
            .unwrap_or_else(|e| panic!("{key} after the primary resumed: {e}"));
        assert_eq!(
            value.as_deref(),
            Some(value_of(i).as_bytes()),
            "{key} after the primary resumed"
        );
    }
    client.close().await;
    cluster.shutdown().unwrap();
}
