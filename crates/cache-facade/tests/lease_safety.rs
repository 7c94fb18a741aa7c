//! Adversarial tests of `get_or_load` with cross-process leases, against a real cluster: a delete's
//! tombstone, a delete racing a load, two cache instances ("processes") racing, a lease holder that gets
//! stuck, cancelled calls, and a loaded value over the size limit.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cache_facade::{Cache, CacheConfig, CacheConfigBuilder, ClusterConfig, Error};
use local_cluster::{LocalCluster, test_lock};

fn config(cluster: &LocalCluster) -> ClusterConfig {
    ClusterConfig::builder().nodes(cluster.seeds()).build().unwrap()
}

fn settings(namespace: &str, lease: Option<Duration>) -> CacheConfigBuilder {
    let builder = CacheConfig::builder().namespace(namespace).lease(lease);
    #[cfg(feature = "health")]
    let builder = builder.health(false);
    builder
}

/// The (length, limit) of a value-too-large error, however the write path wrapped it.
fn too_large(error: &Error) -> Option<(usize, usize)> {
    match error {
        Error::Client(cluster_client::Error::ValueTooLarge { len, max })
        | Error::Consistency(consistency::Error::Client(cluster_client::Error::ValueTooLarge { len, max })) => {
            Some((*len, *max))
        }
        _ => None,
    }
}

/// Runs `future` with a deadline; on timeout the test fails with what it waited for.
async fn within<T>(limit: Duration, what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, future).await {
        Ok(value) => value,
        Err(_) => panic!("{what} did not finish within {limit:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_or_load_after_a_delete_loads_promptly() {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let lease = Duration::from_secs(5);
    let cache = Cache::with_config(
        config(&cluster),
        settings("tomb-load", Some(lease)).build().unwrap(),
    )
    .await
    .unwrap();
    cache.set("k", &"old", None).await.unwrap();
    assert!(cache.delete("k").await.unwrap());

    let started = Instant::now();
    let loaded: String = within(
        Duration::from_secs(10),
        "get_or_load of a deleted key",
        cache.get_or_load("k", Some(Duration::from_secs(60)), || async {
            Ok::<_, std::io::Error>("new".to_string())
        }),
    )
    .await
    .unwrap();
    assert_eq!(loaded, "new");
    assert!(
        started.elapsed() < lease / 2,
        "a tombstone is a miss the lease may fill at once, not a lease to wait for: took {:?}",
        started.elapsed()
    );
    assert_eq!(cache.stats().loads, 1);
    assert_eq!(
        cache.get::<String>("k").await.unwrap().as_deref(),
        Some("new"),
        "the load after the delete is stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_versioned_before_a_delete_does_not_bring_the_key_back() {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let lease = Some(Duration::from_secs(5));
    let holder = Cache::with_config(config(&cluster), settings("tomb-race", lease).build().unwrap())
        .await
        .unwrap();
    let waiter = Cache::with_config(config(&cluster), settings("tomb-race", lease).build().unwrap())
        .await
        .unwrap();
    holder.set("price", &"v1", None).await.unwrap();
    holder.delete("price").await.unwrap();

    // The holder takes the lease (over the first delete's tombstone) and loads slowly.
    let slow = {
        let holder = holder.clone();
        tokio::spawn(async move {
            holder
                .get_or_load("price", Some(Duration::from_secs(60)), || async {
                    tokio::time::sleep(Duration::from_millis(1_500)).await;
                    Ok::<_, std::io::Error>("holder's old price".to_string())
                })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The waiter takes its version now, then waits on the holder's lease.
    let waiting = {
        let waiter = waiter.clone();
        tokio::spawn(async move {
            waiter
                .get_or_load("price", Some(Duration::from_secs(60)), || async {
                    Ok::<_, std::io::Error>("waiter's old price".to_string())
                })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A delete replaces the holder's lease with a tombstone; the waiter then takes the lease over the
    // tombstone, but its version is older than the delete.
    holder.delete("price").await.unwrap();

    let waited = within(Duration::from_secs(10), "the waiter's get_or_load", waiting)
        .await
        .unwrap()
        .unwrap();
    let held = within(Duration::from_secs(10), "the holder's get_or_load", slow)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(waited, "waiter's old price");
    assert_eq!(held, "holder's old price");
    assert_eq!(
        holder.get::<String>("price").await.unwrap(),
        None,
        "the delete wins over both loads that started before it"
    );
    assert_eq!(
        holder.stats().stale_refused + waiter.stats().stale_refused,
        2,
        "both late fills were refused"
    );
    // The tombstone is still there: an older versioned write is refused too.
    let versioned = holder.versioned().unwrap();
    let old = versioned.next_version();
    tokio::time::sleep(Duration::from_millis(5)).await;
    holder.delete("price").await.unwrap();
    let outcome = versioned
        .set_with_version(&holder.full_key("price"), b"older", old, None, Default::default())
        .await
        .unwrap();
    assert!(!outcome.is_written(), "the tombstone refuses an older set");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_racing_after_a_delete_load_once() {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let lease = Some(Duration::from_secs(5));
    let a = Cache::with_config(config(&cluster), settings("tomb-two", lease).build().unwrap())
        .await
        .unwrap();
    let b = Cache::with_config(config(&cluster), settings("tomb-two", lease).build().unwrap())
        .await
        .unwrap();
    a.set("k", &0u32, None).await.unwrap();
    a.delete("k").await.unwrap();
    let loads = Arc::new(AtomicUsize::new(0));
    let call = |cache: Cache| {
        let loads = loads.clone();
        tokio::spawn(async move {
            cache
                .get_or_load("k", Some(Duration::from_secs(60)), || async move {
                    loads.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Ok::<_, std::io::Error>(7u32)
                })
                .await
        })
    };
    let (ra, rb) = within(
        Duration::from_secs(10),
        "two racing get_or_load calls",
        futures::future::join(call(a.clone()), call(b.clone())),
    )
    .await;
    assert_eq!(ra.unwrap().unwrap(), 7);
    assert_eq!(rb.unwrap().unwrap(), 7);
    assert_eq!(loads.load(Ordering::SeqCst), 1, "one load across two instances");
    assert_eq!(b.get::<u32>("k").await.unwrap(), Some(7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_takes_over_when_the_holder_is_stuck() {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let lease = Duration::from_secs(1);
    for deleted_first in [false, true] {
        let namespace = format!("stuck-{deleted_first}");
        let holder = Cache::with_config(
            config(&cluster),
            settings(&namespace, Some(lease)).build().unwrap(),
        )
        .await
        .unwrap();
        let waiter = Cache::with_config(
            config(&cluster),
            settings(&namespace, Some(lease)).build().unwrap(),
        )
        .await
        .unwrap();
        if deleted_first {
            holder.set("k", &"before", None).await.unwrap();
            holder.delete("k").await.unwrap();
        }
        let stuck = {
            let holder = holder.clone();
            tokio::spawn(async move {
                holder
                    .get_or_load("k", Some(Duration::from_secs(60)), || async {
                        // Stuck well past its lease.
                        tokio::time::sleep(Duration::from_secs(4)).await;
                        Ok::<_, std::io::Error>("stuck holder".to_string())
                    })
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = Instant::now();
        let taken_over = within(
            Duration::from_secs(10),
            "the waiter's get_or_load",
            waiter.get_or_load("k", Some(Duration::from_secs(60)), || async {
                Ok::<_, std::io::Error>("waiter".to_string())
            }),
        )
        .await
        .unwrap();
        assert_eq!(taken_over, "waiter", "deleted first: {deleted_first}");
        assert!(
            started.elapsed() < lease * 2,
            "the waiter took over within its deadline: {:?} (deleted first: {deleted_first})",
            started.elapsed()
        );
        assert_eq!(waiter.stats().loads, 1);
        // The stuck holder's late fill finds its lease gone and is refused.
        let late = within(Duration::from_secs(10), "the stuck holder", stuck)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(late, "stuck holder");
        assert_eq!(holder.stats().stale_refused, 1, "deleted first: {deleted_first}");
        assert_eq!(
            waiter.get::<String>("k").await.unwrap().as_deref(),
            Some("waiter"),
            "deleted first: {deleted_first}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_nobody_fills_ends_in_a_lease_wait_error_at_the_deadline() {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let lease = Duration::from_millis(300);
    let cache = Cache::with_config(
        config(&cluster),
        settings("forever-lease", Some(lease)).build().unwrap(),
    )
    .await
    .unwrap();
    // A lease marker from a process this one cannot see, held far longer than our lease: the frame
    // kind `L`, a 16-byte token and an expiry (server time, ms) 30 s from now.
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        + 30_000;
    let marker = format!("LforeignHolder012{expires:016}");
    cache
        .client()
        .set(
            &cache.full_key("k"),
            marker.as_bytes(),
            cluster_client::SetOptions::ttl(Duration::from_secs(30)),
        )
        .await
        .unwrap();
    let started = Instant::now();
    let result = within(
        Duration::from_secs(10),
        "get_or_load behind a foreign lease",
        cache.get_or_load("k", None, || async { Ok::<_, std::io::Error>(1u8) }),
    )
    .await;
    match result {
        Err(Error::LeaseWait { waited, .. }) => {
            assert!(waited >= lease, "waited {waited:?}");
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{:?}",
                started.elapsed()
            );
        }
        other => panic!("expected a lease-wait error, got {other:?}"),
    }
    assert_eq!(cache.stats().loads, 0, "the loader never ran");
    cache.client().del(&cache.full_key("k")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_loads_leave_no_flight_behind() {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    for lease in [None, Some(Duration::from_secs(5))] {
        let namespace = format!("cancel-{}", lease.is_some());
        let cache = Cache::with_config(config(&cluster), settings(&namespace, lease).build().unwrap())
            .await
            .unwrap();
        let calls = (0..100).map(|i| {
            let cache = cache.clone();
            async move {
                let call = cache.get_or_load(format!("k{}", i % 50), None, || async {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    Ok::<_, std::io::Error>(0u32)
                });
                // The caller gives up: its future is dropped in the middle of the load.
                tokio::time::timeout(Duration::from_millis(200), call).await
            }
        });
        for result in futures::future::join_all(calls).await {
            assert!(result.is_err(), "every call was cancelled");
        }
        assert_eq!(
            cache.loads_in_flight(),
            0,
            "cancelled calls left their single-flight entries behind (lease: {lease:?})"
        );

        // A later call loads again, and promptly: a cancelled holder gave its lease back.
        let started = Instant::now();
        let value = within(
            Duration::from_secs(10),
            "get_or_load after the cancellations",
            cache.get_or_load("k0", None, || async { Ok::<_, std::io::Error>(5u32) }),
        )
        .await
        .unwrap();
        assert_eq!(value, 5);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the cancelled holder's lease was released: took {:?} (lease: {lease:?})",
            started.elapsed()
        );
        assert_eq!(cache.loads_in_flight(), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loaded_value_over_the_limit_is_refused_through_the_lease() {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let config = ClusterConfig::builder()
        .nodes(cluster.seeds())
        .value_max_bytes(1_024)
        .build()
        .unwrap();
    // Binary and uncompressed where the features allow, so the value's size on the wire is its own.
    let s = settings("lease-limit", Some(Duration::from_secs(5)));
    #[cfg(feature = "postcard")]
    let s = s.codec(cache_facade::Codec::Binary);
    #[cfg(feature = "lz4")]
    let s = s.compress_at_bytes(None);
    let cache = Cache::with_config(config, s.build().unwrap()).await.unwrap();
    // Plain writes refuse it before a byte is sent...
    let plain = cache.set("plain", &vec![1u8; 2_000], None).await.unwrap_err();
    assert!(too_large(&plain).is_some(), "{plain}");
    // ...and so does the lease's fill.
    let started = Instant::now();
    let error = within(
        Duration::from_secs(10),
        "get_or_load of an oversized value",
        cache.get_or_load("big", None, || async {
            Ok::<_, std::io::Error>(vec![1u8; 2_000])
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(
        too_large(&error),
        too_large(&plain),
        "the same typed error as a plain write: {error}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(
        cache.client().get(&cache.full_key("big")).await.unwrap(),
        None,
        "nothing stored, and the lease was given back"
    );
    // The lease was released: a small value loads at once.
    let started = Instant::now();
    let small = cache
        .get_or_load("big", None, || async { Ok::<_, std::io::Error>(vec![1u8; 10]) })
        .await
        .unwrap();
    assert_eq!(small.len(), 10);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_nothing_fills_is_given_back_at_once() {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let lease = Some(Duration::from_secs(3));
    // The holder's loader finds nothing and no absence is remembered: nothing fills the lease.
    let s = settings("unfilled", lease).negative_ttl(None).build().unwrap();
    let holder = Cache::with_config(config(&cluster), s.clone()).await.unwrap();
    let waiter = Cache::with_config(config(&cluster), s).await.unwrap();
    let finds_nothing = {
        let holder = holder.clone();
        tokio::spawn(async move {
            holder
                .get_or_load_optional("k", None, || async {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Ok::<Option<u32>, std::io::Error>(None)
                })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let found = within(
        Duration::from_secs(10),
        "the waiter's get_or_load",
        waiter.get_or_load("k", None, || async { Ok::<_, std::io::Error>(9u32) }),
    )
    .await
    .unwrap();
    assert_eq!(found, 9);
    assert!(
        started.elapsed() < Duration::from_millis(1_500),
        "the waiter loaded as soon as the holder found nothing, not at the lease's expiry: {:?}",
        started.elapsed()
    );
    assert_eq!(finds_nothing.await.unwrap().unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_load_over_a_delete_keeps_the_delete() {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let cache = Cache::with_config(
        config(&cluster),
        settings("failed-over-tombstone", Some(Duration::from_secs(5)))
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let versioned = cache.versioned().unwrap().clone();
    let key = cache.full_key("k");
    cache.set("k", &"v1", None).await.unwrap();
    let before_delete = versioned.next_version();
    tokio::time::sleep(Duration::from_millis(5)).await;
    cache.delete("k").await.unwrap();

    let failed = within(
        Duration::from_secs(10),
        "a failing get_or_load of a deleted key",
        cache.get_or_load("k", None, || async {
            Err::<String, _>(std::io::Error::other("the database is down"))
        }),
    )
    .await;
    assert!(matches!(failed, Err(Error::Loader { .. })), "{failed:?}");
    // The lease was given back by putting the tombstone back: an older set is still refused...
    let outcome = versioned
        .set_with_version(&key, b"older", before_delete, None, Default::default())
        .await
        .unwrap();
    assert!(!outcome.is_written(), "the delete survived the failed load");
    // ...with the tombstone's TTL, not forever.
    match cache.ttl("k").await.unwrap() {
        cache_facade::Ttl::Expires(left) => assert!(left <= Duration::from_secs(60), "{left:?}"),
        other => panic!("the restored tombstone keeps a TTL: {other:?}"),
    }
    assert_eq!(cache.get::<String>("k").await.unwrap(), None);
}

/// A foreign value that happens to start with 'L' is not a lease: `get_or_load` reports it as bytes
/// this cache did not write at once, instead of waiting twice the lease for a holder that does not
/// exist (or taking the key over and deleting the foreign value when it gives the lease back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_value_starting_with_l_is_not_a_lease() {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let lease = Duration::from_secs(3);
    let cache = Cache::with_config(
        config(&cluster),
        settings("foreign-l", Some(lease)).build().unwrap(),
    )
    .await
    .unwrap();
    // 33 bytes, like a marker without a tombstone, but not a token and digits; and a short one.
    for (key, foreign) in [
        ("long", &b"London calling to the faraway...."[..]),
        ("short", &b"London"[..]),
    ] {
        let full = format!("foreign-l:{key}");
        cache
            .client()
            .set(full.as_bytes(), foreign, cluster_client::SetOptions::default())
            .await
            .unwrap();
        let started = Instant::now();
        let result: Result<String, Error> = within(
            Duration::from_secs(10),
            "get_or_load of a foreign value",
            cache.get_or_load(key, None, || async {
                Ok::<_, std::io::Error>("loaded".to_string())
            }),
        )
        .await;
        assert!(matches!(result, Err(Error::Decode { .. })), "{key}: {result:?}");
        assert!(started.elapsed() < lease, "{key}: took {:?}", started.elapsed());
        let stored = cache.client().get(full.as_bytes()).await.unwrap();
        assert_eq!(
            stored.as_deref(),
            Some(foreign),
            "{key}: the foreign value is untouched"
        );
    }
}
