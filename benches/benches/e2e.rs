//! End-to-end latency of one call against a real local 3+3 cluster that the bench starts itself:
//! the typed cache, cluster-client, and fred's own cluster client, same cluster, same run.
//!
//! `cargo bench -p benches --bench e2e` (the cluster is stopped when the bench ends).

use std::time::Duration;

use cache_facade::{Cache, CacheConfig};
use cluster_client::{ClusterClient, SetOptions};
use cluster_config::ClusterConfig;
use criterion::{Criterion, criterion_group, criterion_main};
use fred::prelude::*;
use local_cluster::{LocalCluster, LocalClusterConfig};

// The fred baseline's settings have one definition, in xtask (the load and chaos baselines).
#[path = "../../xtask/src/fred_baseline.rs"]
mod fred_baseline;

struct Clients {
    ours: ClusterClient,
    cache: Cache,
    fred: fred::prelude::Client,
}

async fn clients(cluster: &LocalCluster) -> Clients {
    let config = ClusterConfig::builder()
        .nodes(cluster.seeds())
        .pool_size(1)
        .build()
        .expect("valid config");
    let ours = ClusterClient::connect(config.clone())
        .await
        .expect("cluster-client connects");
    let settings = CacheConfig::builder()
        .health(false)
        .build()
        .expect("valid cache config");
    let cache = Cache::with_config(config.clone(), settings)
        .await
        .expect("cache connects");
    let fred = fred_baseline::cluster_builder(&config)
        .build()
        .expect("fred config");
    fred.init().await.expect("fred connects");
    Clients { ours, cache, fred }
}

fn e2e(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let _lock = rt
        .block_on(local_cluster::test_lock::exclusive())
        .expect("test lock");
    let cluster = rt
        .block_on(LocalCluster::start(LocalClusterConfig::default()))
        .expect("local cluster starts");
    let clients = rt.block_on(clients(&cluster));
    let value = vec![b'x'; 100];
    let keys: Vec<String> = (0..100).map(|i| format!("bench:{i}")).collect();
    rt.block_on(async {
        for key in &keys {
            clients
                .ours
                .set(key.as_bytes(), &value, SetOptions::default())
                .await
                .expect("fill");
            clients
                .cache
                .set(format!("c:{key}"), &value, None)
                .await
                .expect("fill");
        }
    });

    let mut group = c.benchmark_group("e2e/get");
    group.measurement_time(Duration::from_secs(4));
    group.bench_function("fred cluster client", |b| {
        b.to_async(&rt).iter(|| async {
            clients
                .fred
                .get::<Option<Vec<u8>>, _>("bench:7")
                .await
                .expect("get")
        })
    });
    group.bench_function("cluster-client", |b| {
        b.to_async(&rt)
            .iter(|| async { clients.ours.get(b"bench:7").await.expect("get") })
    });
    group.bench_function("cache (typed)", |b| {
        b.to_async(&rt)
            .iter(|| async { clients.cache.get::<Vec<u8>>("c:bench:7").await.expect("get") })
    });
    group.finish();

    let mut group = c.benchmark_group("e2e/set");
    group.measurement_time(Duration::from_secs(4));
    group.bench_function("fred cluster client", |b| {
        b.to_async(&rt).iter(|| async {
            clients
                .fred
                .set::<(), _, _>("bench:8", value.as_slice(), None, None, false)
                .await
                .expect("set")
        })
    });
    group.bench_function("cluster-client", |b| {
        b.to_async(&rt).iter(|| async {
            clients
                .ours
                .set(b"bench:8", &value, SetOptions::default())
                .await
                .expect("set")
        })
    });
    group.bench_function("cache (typed, versioned)", |b| {
        b.to_async(&rt)
            .iter(|| async { clients.cache.set("c:bench:8", &value, None).await.expect("set") })
    });
    group.finish();

    let mut group = c.benchmark_group("e2e/get_many_100");
    group.measurement_time(Duration::from_secs(4));
    group.bench_function("fred cluster pipeline", |b| {
        b.to_async(&rt).iter(|| async {
            let pipeline = clients.fred.pipeline();
            for key in &keys {
                let _: () = pipeline.get(key.as_str()).await.expect("queue");
            }
            pipeline.try_all::<Option<Vec<u8>>>().await
        })
    });
    group.bench_function("cluster-client", |b| {
        b.to_async(&rt)
            .iter(|| async { clients.ours.get_many(&keys).await })
    });
    let cache_keys: Vec<String> = keys.iter().map(|k| format!("c:{k}")).collect();
    group.bench_function("cache (typed)", |b| {
        b.to_async(&rt)
            .iter(|| async { clients.cache.get_many::<Vec<u8>, _>(&cache_keys).await })
    });
    group.finish();

    rt.block_on(async {
        clients.ours.close().await;
        let _ = clients.fred.quit().await;
    });
    drop(cluster);
}

criterion_group!(benches, e2e);
criterion_main!(benches);
