//! The cache with its near cache on (`CacheConfig::near`), against a real cluster: versioned values
//! stay versioned, this process reads its own writes and deletes at once, a late older write from
//! another process changes nothing kept, and `get_fresh` bypasses memory.

use std::time::{Duration, Instant};

use cache_facade::consistency::{Hlc, Version, WriterId};
use cache_facade::{Cache, CacheConfig, ClusterConfig, NearSettings, Write};
use local_cluster::{LocalCluster, test_lock};

fn config(cluster: &LocalCluster) -> ClusterConfig {
    ClusterConfig::builder().nodes(cluster.seeds()).build().unwrap()
}

async fn near_cache(cluster: &LocalCluster) -> Cache {
    let settings = CacheConfig::builder()
        .namespace("near")
        .near(NearSettings::default())
        .build()
        .unwrap();
    Cache::with_config(config(cluster), settings).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versioned_values_through_the_near_cache_read_own_writes_and_refuse_older_ones() {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let cache = near_cache(&cluster).await;
    let other = Cache::with_config(
        config(&cluster),
        CacheConfig::builder().namespace("near").build().unwrap(),
    )
    .await
    .unwrap();
    let near = cache.near().expect("near cache configured");

    // Own writes and deletes are read back at once, every time.
    for n in 0..300u32 {
        assert_eq!(cache.set("own", &n, None).await.unwrap(), Write::Written);
        assert_eq!(cache.get::<u32>("own").await.unwrap(), Some(n), "own write {n}");
        assert_eq!(cache.get::<u32>("own").await.unwrap(), Some(n));
        if n % 50 == 0 {
            assert!(cache.delete("own").await.unwrap());
            assert_eq!(
                cache.get::<u32>("own").await.unwrap(),
                None,
                "own delete after {n}"
            );
        }
    }
    assert!(near.stats().hits > 0, "{:?}", near.stats());

    // Another process writes an older version: refused on the server, and what is kept stays.
    let newest = 1_000u32;
    cache.set("versioned", &newest, None).await.unwrap();
    for _ in 0..3 {
        assert_eq!(cache.get::<u32>("versioned").await.unwrap(), Some(newest));
    }
    let old = Version::new(Hlc::new(1, 0), WriterId(7));
    let frame = serde_json::to_vec(&1u32).unwrap();
    let outcome = other
        .versioned()
        .unwrap()
        .set_with_version(b"near:versioned", &frame, old, None, Default::default())
        .await
        .unwrap();
    assert!(
        matches!(outcome, cache_facade::consistency::WriteOutcome::Stale { .. }),
        "{outcome:?}"
    );
    for _ in 0..3 {
        assert_eq!(cache.get::<u32>("versioned").await.unwrap(), Some(newest));
    }

    // A newer write from the other process reaches this one through the server's invalidation.
    other.set("versioned", &2_000u32, None).await.unwrap();
    let started = Instant::now();
    while cache.get::<u32>("versioned").await.unwrap() != Some(2_000) {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "invalidated within a second"
        );
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    eprintln!(
        "another process's write seen through the near cache after {:?}",
        started.elapsed()
    );

    // get_fresh reads the server's value, past memory, and keeps nothing.
    let before = near.stats();
    assert_eq!(cache.get_fresh::<u32>("versioned").await.unwrap(), Some(2_000));
    let after = near.stats();
    assert_eq!((after.hits, after.misses), (before.hits, before.misses));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_settings_are_checked_and_one_client_has_one_near_cache() {
    let bad = CacheConfig::builder()
        .near(NearSettings {
            max_entries: 0,
            ..NearSettings::default()
        })
        .build()
        .unwrap_err();
    assert!(bad.to_string().contains("max_entries"), "{bad}");

    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let client = cache_facade::ClusterClient::connect(config(&cluster))
        .await
        .unwrap();
    let settings = CacheConfig::builder()
        .near(NearSettings::default())
        .build()
        .unwrap();
    let _first = Cache::from_client(client.clone(), settings.clone()).unwrap();
    let second = Cache::from_client(client, settings).unwrap_err();
    assert!(second.to_string().contains("already enabled"), "{second}");
}
