//! The typed cache against real clusters.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cache_facade::{Cache, CacheConfig, CacheConfigBuilder, ClusterConfig, Codec, Error, Ttl, Write};
use local_cluster::{LocalCluster, LocalClusterConfig, test_lock};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    id: u64,
    customer: String,
    lines: Vec<(String, u32)>,
    status: Status,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Status {
    Open,
    Shipped { carrier: String },
}

fn config(cluster: &LocalCluster) -> ClusterConfig {
    ClusterConfig::builder().nodes(cluster.seeds()).build().unwrap()
}

fn settings(namespace: &str) -> CacheConfigBuilder {
    CacheConfig::builder().namespace(namespace)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_round_trips_with_every_codec() {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    for codec in [
        Codec::Json,
        #[cfg(feature = "postcard")]
        Codec::Binary,
    ] {
        let s = settings(&format!("typed-{codec:?}")).codec(codec);
        let cache = Cache::with_config(config(&cluster), s.build().unwrap())
            .await
            .unwrap();
        let order = Order {
            id: 9,
            customer: "Zoë 🚀".into(),
            lines: vec![("widget".into(), 3); 200],
            status: Status::Shipped {
                carrier: "DHL".into(),
            },
        };
        assert_eq!(
            cache
                .set("order:9", &order, Some(Duration::from_secs(60)))
                .await
                .unwrap(),
            Write::Written
        );
        assert_eq!(cache.get::<Order>("order:9").await.unwrap(), Some(order.clone()));
        cache.set("open", &Status::Open, None).await.unwrap();
        assert_eq!(cache.get::<Status>("open").await.unwrap(), Some(Status::Open));
        let blob: Vec<u8> = (0..=255).collect();
        cache.set("blob", &blob, None).await.unwrap();
        assert_eq!(cache.get::<Vec<u8>>("blob").await.unwrap(), Some(blob));
        cache.set("ключ:日本語:🔑", &"unicode key", None).await.unwrap();
        assert_eq!(
            cache.get::<String>("ключ:日本語:🔑").await.unwrap().as_deref(),
            Some("unicode key")
        );
        assert_eq!(cache.get::<u32>("missing").await.unwrap(), None);

        let many = cache.get_many::<Status, _>(&["open", "missing"]).await;
        assert_eq!(many[0].as_ref().unwrap(), &Some(Status::Open));
        assert_eq!(many[1].as_ref().unwrap(), &None);
        assert!(cache.delete("open").await.unwrap());
        assert_eq!(
            cache.get::<Status>("open").await.unwrap(),
            None,
            "a tombstone reads as absent"
        );
        assert!(!cache.exists("open").await.unwrap());
        // The namespace is part of the stored key.
        let raw = cache
            .client()
            .get(format!("typed-{codec:?}:blob").as_bytes())
            .await
            .unwrap();
        assert!(raw.is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_types_and_oversized_values_are_refused_cleanly() {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let cache = Cache::with_config(config(&cluster), settings("refuse").build().unwrap())
        .await
        .unwrap();
    cache.set("name", &"Ada", None).await.unwrap();
    match cache.get::<u64>("name").await {
        Err(Error::Decode { wanted, .. }) => assert_eq!(wanted, "u64"),
        other => panic!("expected a decode error, got {other:?}"),
    }
    assert_eq!(
        cache.get::<String>("name").await.unwrap().as_deref(),
        Some("Ada"),
        "the key is intact"
    );

    let limit = cache.client().config().limits().value_max_bytes;
    let huge = vec![7u8; limit + 10];
    // Binary and uncompressed where the features allow, so the value's size on the wire is its own.
    let binary = settings("refuse");
    #[cfg(feature = "postcard")]
    let binary = binary.codec(Codec::Binary);
    #[cfg(feature = "lz4")]
    let binary = binary.compress_at_bytes(None);
    let binary = Cache::with_config(config(&cluster), binary.build().unwrap())
        .await
        .unwrap();
    let error = binary.set("huge", &huge, None).await.unwrap_err();
    assert!(error.to_string().contains("over the limit"), "{error}");
    assert!(!cache.exists("huge").await.unwrap(), "nothing was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_callers_share_one_load() {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let cache = Cache::with_config(config(&cluster), settings("flight").build().unwrap())
        .await
        .unwrap();
    let loads = Arc::new(AtomicUsize::new(0));
    let callers = (0..200).map(|_| {
        let cache = cache.clone();
        let loads = loads.clone();
        tokio::spawn(async move {
            cache
                .get_or_load("hot", Some(Duration::from_secs(60)), || async move {
                    loads.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    Ok::<_, std::io::Error>(42u64)
                })
                .await
        })
    });
    for result in futures::future::join_all(callers).await {
        assert_eq!(result.unwrap().unwrap(), 42);
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1, "the loader ran exactly once");
    assert_eq!(cache.stats().loads, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_makes_one_load_across_three_processes() {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let loads = Arc::new(AtomicUsize::new(0));
    let mut caches = Vec::new();
    for _ in 0..3 {
        let s = settings("lease").lease(Duration::from_secs(3));
        // Three independent instances: separate connections, separate single-flight maps.
        caches.push(
            Cache::with_config(config(&cluster), s.build().unwrap())
                .await
                .unwrap(),
        );
    }
    let callers = caches.iter().flat_map(|cache| {
        (0..20).map({
            let loads = loads.clone();
            move |_| {
                let cache = cache.clone();
                let loads = loads.clone();
                tokio::spawn(async move {
                    cache
                        .get_or_load("shared-key", Some(Duration::from_secs(60)), || async move {
                            loads.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(300)).await;
                            Ok::<_, std::io::Error>("loaded once".to_string())
                        })
                        .await
                })
            }
        })
    });
    for result in futures::future::join_all(callers).await {
        assert_eq!(result.unwrap().unwrap(), "loaded once");
    }
    assert_eq!(
        loads.load(Ordering::SeqCst),
        1,
        "one load across three cache instances"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_during_a_slow_load_refuses_the_late_write() {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    for lease in [None, Some(Duration::from_secs(5))] {
        let s = settings(&format!("late-{}", lease.is_some())).lease(lease);
        let cache = Cache::with_config(config(&cluster), s.build().unwrap())
            .await
            .unwrap();
        let loader_cache = cache.clone();
        let load = tokio::spawn(async move {
            loader_cache
                .get_or_load("price", Some(Duration::from_secs(60)), || async {
                    tokio::time::sleep(Duration::from_millis(400)).await;
                    Ok::<_, std::io::Error>("old price".to_string())
                })
                .await
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        cache.delete("price").await.unwrap();
        // The caller still gets what its loader returned...
        assert_eq!(load.await.unwrap().unwrap(), "old price");
        // ...but the cache refused to store it.
        assert_eq!(
            cache.get::<String>("price").await.unwrap(),
            None,
            "lease: {lease:?}"
        );
        assert_eq!(cache.stats().stale_refused, 1, "lease: {lease:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_jitter_and_negative_caching() {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let s = settings("jitter")
        .ttl_jitter(0.2)
        .negative_ttl(Duration::from_millis(600));
    let cache = Cache::with_config(config(&cluster), s.build().unwrap())
        .await
        .unwrap();
    let ttl = Duration::from_secs(100);
    let mut seen = Vec::new();
    for i in 0..200 {
        cache.set(format!("k{i}"), &i, Some(ttl)).await.unwrap();
        match cache.ttl(format!("k{i}")).await.unwrap() {
            Ttl::Expires(left) => seen.push(left),
            other => panic!("{other:?}"),
        }
    }
    let min = *seen.iter().min().unwrap();
    let max = *seen.iter().max().unwrap();
    assert!(
        min >= Duration::from_secs(79),
        "no TTL shorter than 100 s − 20 %: {min:?}"
    );
    assert!(max <= ttl, "no TTL longer than asked: {max:?}");
    assert!(
        max - min >= Duration::from_secs(10),
        "expiries are spread: {min:?}..{max:?}"
    );

    // The loader finds nothing: remembered for the negative TTL, then asked again.
    let calls = Arc::new(AtomicUsize::new(0));
    let load = || {
        let calls = calls.clone();
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<Option<u32>, std::io::Error>(None)
        }
    };
    assert_eq!(
        cache
            .get_or_load_optional("absent", Some(ttl), load)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        cache
            .get_or_load_optional("absent", Some(ttl), load)
            .await
            .unwrap(),
        None
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the absence is remembered");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        cache
            .get_or_load_optional("absent", Some(ttl), load)
            .await
            .unwrap(),
        None
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2, "the remembered absence expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_safe_serves_the_loader_while_every_node_is_paused() {
    let _lock = test_lock::exclusive().await.unwrap();
    let cluster = LocalCluster::start(LocalClusterConfig::default()).await.unwrap();
    let s = settings("failsafe").fail_safe(true);
    let cache = Cache::with_config(config(&cluster), s.build().unwrap())
        .await
        .unwrap();
    for node in cluster.nodes() {
        node.pause().unwrap();
    }
    let started = Instant::now();
    let value = cache
        .get_or_load("during-outage", Some(Duration::from_secs(60)), || async {
            Ok::<_, std::io::Error>(7u8)
        })
        .await;
    for node in cluster.nodes() {
        node.resume().unwrap();
    }
    assert_eq!(value.unwrap(), 7);
    assert_eq!(cache.stats().fail_safe_serves, 1);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "answered within the command timeout: {:?}",
        started.elapsed()
    );

    // Without fail-safe the same call is an error that says Redis could not be reached.
    let strict = Cache::with_config(config(&cluster), settings("strict").build().unwrap())
        .await
        .unwrap();
    for node in cluster.nodes() {
        node.pause().unwrap();
    }
    let error = strict
        .get_or_load("x", None, || async { Ok::<_, std::io::Error>(1u8) })
        .await
        .unwrap_err();
    for node in cluster.nodes() {
        node.resume().unwrap();
    }
    assert!(error.is_unavailable(), "{error}");
}

#[cfg(all(feature = "warmup", feature = "health"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_up_fills_typed_entries_and_health_reports_the_cluster() {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let cache = Cache::with_config(config(&cluster), settings("warm").build().unwrap())
        .await
        .unwrap();
    let entries = (0..2_000u32).map(|i| {
        let priority = if i < 100 {
            cache_facade::Priority::Critical
        } else {
            cache_facade::Priority::Normal
        };
        cache
            .entry(format!("item:{i}"), &(i * 2))
            .unwrap()
            .ttl(Duration::from_secs(600))
            .priority(priority)
    });
    let report = cache
        .warm_up(entries, cache_facade::WarmupConfig::default())
        .await
        .unwrap();
    assert_eq!(report.written, 2_000, "{report:?}");
    assert_eq!(report.failed, 0);
    for i in (0..2_000u32).step_by(97) {
        assert_eq!(cache.get::<u32>(format!("item:{i}")).await.unwrap(), Some(i * 2));
    }
    let critical = cache
        .preload_critical((0..10u32).map(|i| (format!("vip:{i}"), i)), None)
        .await
        .unwrap();
    assert_eq!(critical.written, 10);
    assert_eq!(cache.get::<u32>("vip:3").await.unwrap(), Some(3));

    let summary = cache
        .cluster_health_summary()
        .await
        .expect("health runs by default");
    assert_eq!(summary.status, cache_facade::HealthStatus::Healthy, "{summary:?}");
    assert_eq!((summary.nodes_connected, summary.nodes_total), (6, 6));
    assert_eq!(summary.slots_covered, Some(16_384));
}
