//! Clock poisoning: a version far in the future, stored by a host with a bad clock or passed by a
//! caller, must not stall this process's clock. The shared cluster is enough: the tests touch only
//! their own keys. The process clock is global, so these tests live in their own binary.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use consistency::{Envelope, Error, Hlc, Version, VersionedValue, WriteOptions, WriteOutcome, WriterId};
use local_cluster::{LocalCluster, test_lock};

fn now_millis() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// Stores `version` for `key` with a plain SET, as a writer with a broken clock would have.
async fn store_raw(client: &cluster_client::ClusterClient, key: &[u8], version: Version) {
    let bytes = Envelope::Value {
        version,
        payload: b"from the future",
    }
    .encode();
    client
        .set(key, &bytes, cluster_client::SetOptions::default())
        .await
        .expect("plain SET of the poisoned envelope");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_far_future_stored_version_does_not_stall_the_clock() {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let client = common::client(cluster.seeds()).await;
    let store = common::versioned(&client);
    let prefix = common::prefix("skew");
    let none = WriteOptions::default();

    // A stored value at the very top of the range, and one a year ahead: both beyond the drift bound.
    let top = format!("{prefix}:top").into_bytes();
    let year = format!("{prefix}:year").into_bytes();
    store_raw(&client, &top, Version::new(Hlc::from_raw(u64::MAX), WriterId(7))).await;
    let year_ahead = Hlc::new(now_millis() + 365 * 24 * 3_600 * 1_000, 0);
    store_raw(&client, &year, Version::new(year_ahead, WriterId(7))).await;
    for key in [&top, &year] {
        let result = store.set(key, b"mine", None, none).await;
        let printable = String::from_utf8_lossy(key).into_owned();
        match result {
            Err(Error::ClockSkew {
                key: named, ahead_by, ..
            }) => {
                assert_eq!(named, printable);
                assert!(ahead_by > Duration::from_secs(300 * 24 * 3_600), "{ahead_by:?}");
            }
            other => panic!("a set over a far-future version of {printable} must be refused, got {other:?}"),
        }
        let error = store.delete(key, none).await.unwrap_err();
        assert!(matches!(error, Error::ClockSkew { .. }), "{error}");
        let text = error.to_string();
        assert!(text.contains(&printable) && text.contains("clock"), "{text}");
    }
    assert!(
        store.client().exists(&top).await.unwrap(),
        "the refused writes left the poisoned key alone"
    );

    // The clock adopted nothing: two sets on a fresh key both land, and a delete deletes.
    let fresh = format!("{prefix}:fresh").into_bytes();
    let first = store.set(&fresh, b"one", None, none).await.unwrap();
    assert!(first.is_written(), "{first:?}");
    let second = store.set(&fresh, b"two", None, none).await.unwrap();
    assert!(
        second.is_written(),
        "the second set of a fresh key is written: {second:?}"
    );
    let read = store
        .get(&fresh)
        .await
        .unwrap()
        .expect("the key holds the second value");
    assert_eq!(read.value().as_ref(), b"two");
    let deleted = store.delete(&fresh, none).await.unwrap();
    assert!(deleted.is_written(), "{deleted:?}");
    assert_eq!(store.get(&fresh).await.unwrap(), None, "the delete deleted");
    assert!(
        store.next_version().hlc.millis() < now_millis() + 60_000,
        "the clock stays near the wall clock"
    );
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_version_beyond_the_bound_is_refused_before_sending() {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let client = common::client(cluster.seeds()).await;
    let store = common::versioned(&client);
    let prefix = common::prefix("skew-caller");
    let none = WriteOptions::default();

    let key = format!("{prefix}:max").into_bytes();
    let max = Version::new(Hlc::from_raw(u64::MAX), WriterId(3));
    let result = store.set_with_version(&key, b"x", max, None, none).await;
    assert!(matches!(result, Err(Error::ClockSkew { .. })), "{result:?}");
    let result = store.delete_with_version(&key, max, none).await;
    assert!(matches!(result, Err(Error::ClockSkew { .. })), "{result:?}");
    assert!(!client.exists(&key).await.unwrap(), "nothing was sent");

    // After the refusals, this process's own sets keep winning over each other.
    for round in 0..3u8 {
        let outcome = store.set(&key, &[round], None, none).await.unwrap();
        assert!(outcome.is_written(), "round {round}: {outcome:?}");
    }

    // A stored version a little ahead (within the bound) is adopted: the refused set is stale, the
    // next one wins.
    let near = format!("{prefix}:near").into_bytes();
    let ahead = Version::new(Hlc::new(now_millis() + 5_000, 0), WriterId(3));
    let written = store
        .set_with_version(&near, b"ahead", ahead, None, none)
        .await
        .unwrap();
    assert!(written.is_written());
    let stale = store.set(&near, b"mine", None, none).await.unwrap();
    assert!(
        matches!(stale, WriteOutcome::Stale { current, .. } if current == ahead),
        "{stale:?}"
    );
    let next = store.set(&near, b"mine", None, none).await.unwrap();
    assert!(
        next.is_written(),
        "the clock moved past a version within the bound: {next:?}"
    );
    let read = store.get(&near).await.unwrap();
    assert!(
        matches!(&read, Some(VersionedValue::Versioned { value, .. }) if value.as_ref() == b"mine"),
        "{read:?}"
    );
    client.close().await;
}
