//! `WAIT` after a versioned write counts only acknowledgements of the stream the write was executed on.
//!
//! Found by the history checker (`cargo xtask chaos safety --minutes 10 --seed 2026`): a write sent to
//! a primary that was stopped (SIGSTOP) was executed when the primary resumed, after its replica had
//! been promoted; the write's `WAIT` was routed to the new primary, whose replica acknowledged the
//! marker, so the write came back "acknowledged by 1 replica" while the old primary, now a replica,
//! threw it away on resync. The acknowledged write was lost.

mod common;

use std::time::{Duration, Instant};

use cluster_client::CallOptions;
use consistency::{ConsistencyConfig, Versioned, WriteOptions, WriteOutcome};
use local_cluster::{FailoverKind, LocalCluster, LocalClusterConfig, test_lock};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_on_the_promoted_primary_does_not_acknowledge_the_old_primary_s_write() {
    let _lock = test_lock::exclusive().await.unwrap();
    let cluster = LocalCluster::start(LocalClusterConfig::default()).await.unwrap();
    let client = common::client(cluster.seeds()).await;
    let victim = cluster.primaries().await.unwrap()[0];
    let replica = cluster.replicas_of(victim).await.unwrap()[0];
    let key = common::keys_on(&client, &common::prefix("stream"), &victim.addr(), 1)
        .pop()
        .unwrap();
    // A long call timeout, so the write waits for the stopped primary instead of failing.
    let patient = client.with_options(CallOptions::timeout(Duration::from_secs(20)));
    let store = Versioned::new(patient, ConsistencyConfig::default().journal(None)).unwrap();
    store
        .set(
            &key,
            b"before",
            None,
            WriteOptions::wait(1, Duration::from_secs(2)),
        )
        .await
        .unwrap();

    // The primary stops; the write is sent to it and waits in its socket.
    victim.pause().unwrap();
    let writer = {
        let (store, key) = (store.clone(), key.clone());
        tokio::spawn(async move {
            store
                .set(
                    &key,
                    b"during",
                    None,
                    WriteOptions::wait(1, Duration::from_secs(3)),
                )
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Its replica takes over without it, and the client learns the new topology.
    replica.failover(FailoverKind::Takeover).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        client.refresh_topology().await.ok();
        let serves = client
            .topology()
            .shard_for_key(&key)
            .is_some_and(|shard| shard.primary == replica.addr());
        if serves {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the client did not see {} promoted within 30 s",
            replica.addr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The old primary resumes: it executes the queued write, then learns it was replaced.
    victim.resume().unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(30), writer)
        .await
        .expect("the write finished within 30 s")
        .unwrap();
    cluster.wait_until_healthy(Duration::from_secs(60)).await.unwrap();

    // Whatever happened to the write, an acknowledgement must mean the value survived.
    let stored = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match store.get(&key).await {
                Ok(value) => break value,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    })
    .await
    .expect("the key could be read within 10 s");
    let survived = stored.as_ref().is_some_and(|v| v.value().as_ref() == b"during");
    eprintln!("outcome {outcome:?}, stored {stored:?}");
    match outcome {
        Ok(WriteOutcome::Written {
            replicas_acked: Some(acked),
            ..
        }) if acked >= 1 => assert!(
            survived,
            "the write was acknowledged by {acked} replica(s) but is lost (stored: {stored:?})"
        ),
        // Not acknowledged (or failed): losing it is what Redis's asynchronous replication allows.
        _ => {}
    }
    client.close().await;
}
