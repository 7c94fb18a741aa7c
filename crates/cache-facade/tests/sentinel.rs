//! The typed cache in sentinel mode: one `ClusterConfig` naming the sentinels is all it takes.

use std::time::Duration;

use cache_facade::{Cache, CacheConfig, ClusterConfig};
use cluster_config::Mode;
use local_cluster::{LocalSentinel, LocalSentinelConfig, test_lock};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_works_through_the_sentinels() {
    let _lock = test_lock::shared().await.unwrap();
    let deployment = LocalSentinel::start(LocalSentinelConfig::default())
        .await
        .unwrap();
    let config = ClusterConfig::from_env_vars([
        ("REDIS_MODE", "sentinel".to_owned()),
        ("REDIS_SENTINEL_NODES", deployment.sentinel_addrs().join(",")),
        ("REDIS_SENTINEL_MASTER", deployment.master_name().to_owned()),
    ])
    .unwrap();
    assert_eq!(config.mode(), Mode::Sentinel);
    let cache = Cache::with_config(
        config,
        CacheConfig::builder().namespace("sentinel").build().unwrap(),
    )
    .await
    .unwrap();
    cache
        .set("greeting", &"hello", Some(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(
        cache.get::<String>("greeting").await.unwrap().as_deref(),
        Some("hello")
    );
    let loaded: u32 = cache
        .get_or_load("answer", None, || async { Ok::<_, std::io::Error>(42) })
        .await
        .unwrap();
    assert_eq!(loaded, 42);
    let cached: u32 = cache
        .get_or_load("answer", None, || async {
            Err::<u32, _>(std::io::Error::other("loader ran twice"))
        })
        .await
        .unwrap();
    assert_eq!(cached, 42);
    assert!(cache.delete("greeting").await.unwrap());
    assert_eq!(cache.get::<String>("greeting").await.unwrap(), None);
    // The value sits on the primary the sentinels name.
    let primary = deployment.primary().await.unwrap();
    let keys: Vec<String> = primary.command(["KEYS", "*answer*"]).await.unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
}
