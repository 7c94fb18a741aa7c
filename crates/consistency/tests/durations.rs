//! Zero and maximal durations: `WAIT 0` blocks forever in Redis and `Duration::MAX` overflows
//! deadlines, so writes and audits refuse them with a typed error before anything is sent. The shared
//! cluster is enough.

mod common;

use std::time::Duration;

use consistency::{AuditOptions, ConsistencyConfig, Error, Versioned, WriteOptions};
use local_cluster::{LocalCluster, test_lock};

/// Fails the test instead of hanging if a call blocks (as `WAIT 0` would).
async fn bounded<T>(what: &str, call: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .unwrap_or_else(|_| panic!("{what} did not return within 10 s"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_and_maximal_durations_are_refused_before_sending() {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let client = common::client(cluster.seeds()).await;
    let store = common::versioned(&client);
    let key = format!("{}:k", common::prefix("durations")).into_bytes();

    for timeout in [Duration::ZERO, Duration::MAX] {
        let options = WriteOptions::wait(1, timeout);
        let result = bounded("a set with WAIT", store.set(&key, b"v", None, options)).await;
        match result {
            Err(Error::DurationOutOfRange { setting, value, .. }) => {
                assert_eq!((setting, value), ("WriteOptions::wait timeout", timeout));
            }
            other => panic!("WAIT timeout {timeout:?}: {other:?}"),
        }
        let result = bounded("a delete with WAIT", store.delete(&key, options)).await;
        assert!(
            matches!(result, Err(Error::DurationOutOfRange { .. })),
            "{result:?}"
        );
        assert!(!client.exists(&key).await.unwrap(), "nothing was sent");
    }
    let written = store
        .set(&key, b"v", None, WriteOptions::wait(1, Duration::from_secs(1)))
        .await
        .unwrap();
    assert!(written.is_written());

    for config in [
        ConsistencyConfig::default().tombstone_ttl(Duration::MAX),
        ConsistencyConfig::default().replica_catch_up(Duration::MAX),
        ConsistencyConfig::default().max_clock_drift(Duration::MAX),
    ] {
        let error = Versioned::new(client.clone(), config).unwrap_err();
        assert!(matches!(error, Error::DurationOutOfRange { .. }), "{error}");
    }
    let options = AuditOptions::default()
        .pattern("no-such-prefix:*")
        .replica_catch_up(Duration::MAX);
    let result = bounded("an audit", store.audit(&options, |_| {})).await;
    assert!(
        matches!(result, Err(Error::DurationOutOfRange { .. })),
        "{result:?}"
    );
    client.close().await;
}
