//! A real Sentinel deployment: 1 primary + 2 replicas + 3 sentinels; bring-up, kill -9 of the primary
//! and the sentinels' failover, pause and resume of a replica.

use std::time::{Duration, Instant};

use local_cluster::{LocalSentinel, LocalSentinelConfig, Role, test_lock};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinels_see_everyone_and_fail_a_killed_primary_over() {
    let _lock = test_lock::exclusive().await.unwrap();
    let started = Instant::now();
    let deployment = LocalSentinel::start(LocalSentinelConfig::default())
        .await
        .unwrap();
    eprintln!("1+2 nodes and 3 sentinels ready in {:?}", started.elapsed());
    assert_eq!(deployment.nodes().len(), 3);
    assert_eq!(deployment.sentinels().len(), 3);
    assert_eq!(deployment.master_name(), "mymaster");
    let first = deployment.primary_addr().await.unwrap();
    assert_eq!(first, deployment.nodes()[0].addr());
    assert_eq!(
        deployment.primary().await.unwrap().role().await.unwrap(),
        Role::Primary
    );
    for replica in &deployment.nodes()[1..] {
        assert_eq!(replica.role().await.unwrap(), Role::Replica);
    }

    // A paused replica freezes and thaws; the sentinels still agree on the primary.
    let replica = &deployment.nodes()[2];
    replica.pause().unwrap();
    replica.resume().unwrap();
    assert_eq!(replica.command::<String, _, _>(["PING"]).await.unwrap(), "PONG");

    let killed = deployment.kill_primary().await.unwrap();
    assert_eq!(killed.addr(), first);
    assert!(!killed.is_running());
    let killed_at = Instant::now();
    let promoted = deployment
        .wait_for_failover(&first, Duration::from_secs(20))
        .await
        .unwrap();
    eprintln!(
        "sentinels promoted {promoted} {:?} after the kill",
        killed_at.elapsed()
    );
    assert_ne!(promoted, first);
    assert!(deployment.nodes()[1..].iter().any(|n| n.addr() == promoted));
    assert_eq!(
        deployment.node(&promoted).unwrap().role().await.unwrap(),
        Role::Primary
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_shape_is_refused() {
    let no_sentinel = LocalSentinel::start(LocalSentinelConfig {
        sentinels: 0,
        ..LocalSentinelConfig::default()
    })
    .await;
    assert!(
        matches!(no_sentinel, Err(local_cluster::Error::Invalid(_))),
        "{no_sentinel:?}"
    );
    let bad_name = LocalSentinel::start(LocalSentinelConfig {
        master_name: "my master".into(),
        ..LocalSentinelConfig::default()
    })
    .await;
    assert!(
        bad_name
            .as_ref()
            .is_err_and(|e| e.to_string().contains("one word")),
        "{bad_name:?}"
    );
}
