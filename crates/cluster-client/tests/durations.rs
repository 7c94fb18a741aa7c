//! Zero, one-nanosecond and maximal durations through every public method that takes one: each gives
//! a value or a clear error at once, never a panic, never a call without a deadline.

mod common;

use std::future::Future;
use std::time::Duration;

use cluster_client::{CallOptions, ClusterClient, SetOptions, Ttl, Value};
use local_cluster::{LocalCluster, test_lock};

const EDGES: [Duration; 3] = [Duration::ZERO, Duration::from_nanos(1), Duration::MAX];

/// Runs `call` in its own task with a 5 s deadline: a panic or a hang fails the test with `what`.
async fn bounded<T, F>(what: String, call: F) -> T
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    match tokio::time::timeout(Duration::from_secs(5), tokio::spawn(call)).await {
        Ok(Ok(value)) => value,
        Ok(Err(join)) => panic!("{what} panicked: {join}"),
        Err(_) => panic!("{what} was still running after 5 s"),
    }
}

fn refused<T: std::fmt::Debug>(what: &str, result: Result<T, cluster_client::Error>) {
    match result {
        Err(e) => assert!(
            e.to_string().contains("out of range") && !e.is_transient(),
            "{what}: {e}"
        ),
        Ok(value) => panic!("{what} was accepted: {value:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_timeouts_at_the_edges_are_refused_before_sending() {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let client = common::client(&cluster).await;
    let key = b"durations:call".to_vec();
    client.set(&key, b"v", SetOptions::default()).await.unwrap();
    let node = client.topology().shard_for_key(&key).unwrap().primary.clone();
    for timeout in EDGES {
        let with: ClusterClient = client.with_options(CallOptions::timeout(timeout));
        let (c, k) = (with.clone(), key.clone());
        refused(
            &format!("get with timeout {timeout:?}"),
            bounded(format!("get {timeout:?}"), async move { c.get(&k).await }).await,
        );
        let (c, k) = (with.clone(), key.clone());
        let values = bounded(format!("get_many {timeout:?}"), async move {
            c.get_many(&[k.clone(), k]).await
        })
        .await;
        assert_eq!(values.len(), 2);
        for value in values {
            refused(&format!("get_many with timeout {timeout:?}"), value);
        }
        let (c, n) = (with.clone(), node.clone());
        refused(
            &format!("node_command with timeout {timeout:?}"),
            bounded(format!("node_command {timeout:?}"), async move {
                c.node_command::<String>(&n, vec!["PING".into()]).await
            })
            .await,
        );
    }
    // A valid one still works on the same client.
    let with = client.with_options(CallOptions::timeout(Duration::from_millis(1)));
    let _ = with.get(&key).await;
    assert_eq!(client.get(&key).await.unwrap().as_deref(), Some(&b"v"[..]));
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_timeouts_at_the_edges_are_refused_and_never_block() {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let client = common::client(&cluster).await;
    let key = b"durations:wait".to_vec();
    client.set(&key, b"v", SetOptions::default()).await.unwrap();
    let node = client.topology().shard_for_key(&key).unwrap().primary.clone();
    for timeout in EDGES {
        let (c, k) = (client.clone(), key.clone());
        refused(
            &format!("wait({timeout:?})"),
            bounded(format!("wait {timeout:?}"), async move {
                c.wait(&k, 1, timeout).await
            })
            .await,
        );
        // `WAIT 1 0` through node_command would block for ever.
        let (c, n) = (client.clone(), node.clone());
        let millis = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
        refused(
            &format!("node_command WAIT 1 {millis}"),
            bounded(format!("node_command WAIT {millis}"), async move {
                c.node_command::<i64>(&n, vec!["WAIT".into(), Value::Integer(1), Value::Integer(millis)])
                    .await
            })
            .await,
        );
    }
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttls_at_the_edges_round_up_or_are_refused() {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let client = common::client(&cluster).await;
    for ttl in EDGES {
        let key = format!("durations:ttl:{}", ttl.as_nanos()).into_bytes();
        let (c, k) = (client.clone(), key.clone());
        let set = bounded(format!("set ttl {ttl:?}"), async move {
            c.set(&k, b"v", SetOptions::ttl(ttl)).await
        })
        .await;
        let (c, k) = (client.clone(), key.clone());
        let many = bounded(format!("set_many ttl {ttl:?}"), async move {
            c.set_many(&[(k, b"v".to_vec(), Some(ttl))]).await
        })
        .await;
        client.set(&key, b"v", SetOptions::default()).await.unwrap();
        let (c, k) = (client.clone(), key.clone());
        let pexpire = bounded(
            format!("pexpire {ttl:?}"),
            async move { c.pexpire(&k, ttl).await },
        )
        .await;
        if ttl == Duration::MAX {
            refused("set with ttl MAX", set);
            refused("set_many with ttl MAX", many.into_iter().next().unwrap());
            refused("pexpire MAX", pexpire);
            assert_eq!(
                client.pttl(&key).await.unwrap(),
                Ttl::Persistent,
                "nothing was sent"
            );
        } else {
            // Below a millisecond rounds up to 1 ms (`PX 0` is a server error): the key is gone at once.
            assert!(set.unwrap(), "set ttl {ttl:?}");
            assert!(many[0].is_ok(), "set_many ttl {ttl:?}: {:?}", many[0]);
            assert!(pexpire.unwrap(), "pexpire {ttl:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert_eq!(client.get(&key).await.unwrap(), None, "ttl {ttl:?} expired");
        }
    }
    client.close().await;
}
