//! The retry settings are honoured: a node that answers LOADING (a real redis-server reloading its
//! dataset, slowed by `key-load-delay`) is retried as `REDIS_MAX_RETRIES_READ_KEY` and
//! `REDIS_MAX_RETRIES` say, with the configured backoff, within the call's deadline; 0 means one attempt.

mod common;

use std::time::{Duration, Instant};

use cluster_client::{ClusterClient, Error, SetOptions};
use cluster_config::ClusterConfig;
use local_cluster::{LocalStandalone, Node, test_lock};

/// Keys in the dataset, and the load delay per key: the reload takes about 3 s.
const KEYS: u32 = 30_000;
const KEY_LOAD_DELAY_MICROS: u32 = 100;

/// Starts `DEBUG RELOAD` on its own connection (it blocks that connection while the server saves and
/// loads again) and returns once the server says it is loading.
async fn start_slow_reload(node: &Node) -> tokio::task::JoinHandle<()> {
    // A plain socket of its own, so that the reload runs while this test goes on with the same node.
    let port = node.port();
    let reload = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        socket
            .write_all(b"*2\r\n$5\r\nDEBUG\r\n$6\r\nRELOAD\r\n")
            .await
            .unwrap();
        let mut reply = [0u8; 64];
        let n = socket.read(&mut reply).await.unwrap();
        assert_eq!(&reply[..n], b"+OK\r\n", "DEBUG RELOAD on port {port}");
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info = node.info("persistence").await.expect("INFO persistence");
        if info.get("loading") == Some("1") {
            return reload;
        }
        assert!(Instant::now() < deadline, "the node never started loading");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn loading_node() -> LocalStandalone {
    let standalone = LocalStandalone::start(1).await.expect("redis-server");
    let node = &standalone.nodes()[0];
    let _: String = node
        .command(["DEBUG", "POPULATE", &KEYS.to_string(), "k", "8"])
        .await
        .unwrap();
    // A slow load, and events (other clients' commands, answered LOADING) served while it runs.
    let _: String = node
        .command([
            "CONFIG",
            "SET",
            "key-load-delay",
            &KEY_LOAD_DELAY_MICROS.to_string(),
        ])
        .await
        .unwrap();
    let _: String = node
        .command(["CONFIG", "SET", "loading-process-events-interval-bytes", "1024"])
        .await
        .unwrap();
    standalone
}

fn config(node: &str, reads: u32, writes: u32, initial: Duration, timeout: Duration) -> ClusterConfig {
    ClusterConfig::builder()
        .nodes([node.to_string()])
        .read_key_max_retries(reads)
        .max_retries(writes)
        .retry_initial_delay(initial)
        .retry_max_delay(Duration::from_millis(200))
        .retry_backoff_multiplier(2)
        .command_timeout(timeout)
        .unresponsive_timeout(timeout)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loading_node_is_retried_as_the_retry_settings_say() {
    let _lock = test_lock::shared().await.unwrap();
    let standalone = loading_node().await;
    let node = &standalone.nodes()[0];
    let addr = node.addr();

    // Connected before the reload: connections are opened while the node still serves.
    let none = ClusterClient::connect(config(
        &addr,
        0,
        0,
        Duration::from_millis(50),
        Duration::from_secs(8),
    ))
    .await
    .unwrap();
    let few = ClusterClient::connect(config(
        &addr,
        3,
        2,
        Duration::from_millis(40),
        Duration::from_secs(8),
    ))
    .await
    .unwrap();
    let enough = ClusterClient::connect(config(
        &addr,
        100,
        100,
        Duration::from_millis(20),
        Duration::from_secs(8),
    ))
    .await
    .unwrap();
    enough
        .set(b"kept", b"before", SetOptions::default())
        .await
        .unwrap();

    let reload = start_slow_reload(node).await;

    // 0 retries: one attempt, and the LOADING error at once, naming the setting to raise.
    let started = Instant::now();
    match none.get(b"kept").await {
        Err(Error::RetriesExhausted {
            retries: 0,
            message,
            setting,
            ..
        }) => {
            assert!(message.starts_with("LOADING"), "{message}");
            assert_eq!(setting, "REDIS_MAX_RETRIES_READ_KEY");
        }
        other => panic!("want RetriesExhausted after 0 retries, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    match none.set(b"kept", b"x", SetOptions::default()).await {
        Err(Error::RetriesExhausted {
            retries: 0, setting, ..
        }) => assert_eq!(setting, "REDIS_MAX_RETRIES"),
        other => panic!("want RetriesExhausted for the write, got {other:?}"),
    }

    // 3 read retries from 40 ms, doubling, with equal jitter: pauses of 20-40, 40-80 and 80-160 ms, so
    // the read gives up after 140-280 ms of pauses (plus the attempts' round trips), never at the 8 s
    // deadline.
    let started = Instant::now();
    match few.get(b"kept").await {
        Err(Error::RetriesExhausted {
            retries: 3, message, ..
        }) => {
            assert!(message.starts_with("LOADING"), "{message}")
        }
        other => panic!("want RetriesExhausted after 3 retries, got {other:?}"),
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(140) && took < Duration::from_millis(1500),
        "3 retries took {took:?}"
    );
    // The write has its own limit (2).
    match few.set(b"kept", b"x", SetOptions::default()).await {
        Err(Error::RetriesExhausted {
            retries: 2, setting, ..
        }) => assert_eq!(setting, "REDIS_MAX_RETRIES"),
        other => panic!("want RetriesExhausted after 2 retries, got {other:?}"),
    }

    // Enough retries: the read waits out the load within its deadline and sees the value.
    let value = enough.get(b"kept").await.unwrap();
    assert_eq!(value.as_deref(), Some(&b"before"[..]));
    let info = node.info("persistence").await.unwrap();
    assert_eq!(
        info.get("loading"),
        Some("0"),
        "the read succeeded only after the load"
    );
    reload.await.unwrap();

    for client in [none, few, enough] {
        client.close().await;
    }
}

/// A caller that retries a fail-fast error at once, on a runtime with one thread, must not starve the
/// runtime's other tasks (the refresh that would end the outage among them): the fail-fast path takes
/// its share of tokio's cooperative budget. A slot that no node serves fails every call for it at once,
/// before anything is sent.
#[tokio::test(flavor = "current_thread")]
async fn retrying_a_fail_fast_error_in_a_tight_loop_lets_other_tasks_run() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let _lock = test_lock::exclusive().await.unwrap();
    let cluster = local_cluster::LocalCluster::start(local_cluster::LocalClusterConfig::default())
        .await
        .expect("redis-server");
    let key = (0u32..)
        .map(|i| format!("uncovered:{i}"))
        .find(|k| sharding::key_slot(k.as_bytes()) == 0)
        .unwrap();
    for node in cluster.nodes() {
        // Unassigned everywhere: the owner forgets it, and so does every node that knew the owner.
        let _: Result<String, _> = node.command(["CLUSTER", "DELSLOTS", "0"]).await;
    }
    let client = ClusterClient::connect(
        ClusterConfig::builder()
            .nodes(cluster.seeds())
            .read_key_max_retries(0)
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !matches!(
        client.get(key.as_bytes()).await,
        Err(Error::SlotUncovered { slot: 0 })
    ) {
        assert!(Instant::now() < deadline, "slot 0 never showed as uncovered");
        client.refresh_topology().await.ok();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let ran = Arc::new(AtomicBool::new(false));
    let other = tokio::spawn({
        let ran = ran.clone();
        async move { ran.store(true, Ordering::Release) }
    });
    let mut calls = 0u64;
    while !ran.load(Ordering::Acquire) {
        assert!(
            client.get(key.as_bytes()).await.is_err(),
            "slot 0 is served by nobody"
        );
        calls += 1;
        assert!(
            calls < 100_000,
            "{calls} fail-fast calls in a row never let another task run"
        );
    }
    other.await.unwrap();
    client.close().await;
}
