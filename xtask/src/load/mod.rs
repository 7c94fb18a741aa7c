//! `cargo xtask load`: the same workloads through cluster-client, the typed cache, fred's and
//! redis-rs's cluster clients (each peer both as its users build it and at its best documented
//! settings) and `redis-benchmark --cluster` (plain, and `-P 16` as the batch baseline), in one run
//! against one cluster, printed as ratios and written to results.json with two plots.
//!
//! Rooms: [`args`] (the command line), [`calls`] (the call sequence every client replays),
//! [`drivers`] (one per client kind), [`harness`] (tasks, timing and histograms), [`redis_benchmark`]
//! (running and parsing it) and [`report`] (the summary table and results.json).

use std::sync::Arc;

use anyhow::{Context, Result};
use cache_facade::{Cache, CacheConfig};
use cluster_client::ClusterClient;
use cluster_config::ClusterConfig;
use fred::prelude::ClientLike;
use local_cluster::{LocalCluster, LocalClusterConfig, TlsClientAuth, TlsFiles};

mod args;
mod calls;
mod drivers;
mod harness;
pub(crate) mod redis_benchmark;
mod report;

pub(crate) use args::{ClientKind, LoadArgs, Workload};
pub(crate) use calls::{BATCH, Rng};
pub(crate) use drivers::{fred_cluster_client, run_fred};
pub(crate) use harness::{RunResult, progress_bar, run};
pub(crate) use report::{median_ops_per_sec, print_table};

use crate::redis_rs_baseline::RedisRs;
use drivers::{
    fill, fill_cache, run_cache, run_fred_clients, run_near, run_ours, run_per_node, run_redis_rs,
    run_redis_rs_cached,
};
use fred::prelude::Client as FredClient;
use report::Report;

pub(crate) fn load(args: &LoadArgs) -> Result<()> {
    crate::prerequisites::ensure_redis()?;
    calls::set_batch_size(args.batch_size);
    if args.tls
        && let Some(kind) = args.clients.iter().find(|k| {
            matches!(
                k,
                ClientKind::PerNode
                    | ClientKind::RedisBenchmark
                    | ClientKind::RedisBenchmarkP16
                    | ClientKind::RedisRs
            )
        })
    {
        anyhow::bail!("--tls runs ours, fred, cache and cache-plain; drop {kind:?} from --clients");
    }
    crate::cluster::runtime()?.block_on(async {
        let running = crate::cluster::running()?.filter(|cluster| cluster.tls().is_some() == args.tls);
        let (seeds, tls, _own) = match running {
            Some(cluster) => {
                println!("Using the cluster from `cargo xtask cluster-up`.");
                (cluster.seeds(), cluster.tls().cloned(), None)
            }
            None => {
                let what = if args.tls { "TLS " } else { "" };
                println!("No {what}cluster from `cargo xtask cluster-up`; starting a {what}3+3 cluster for this run.");
                let cluster = LocalCluster::start(LocalClusterConfig {
                    tls: args.tls.then_some(TlsClientAuth::Optional),
                    ..LocalClusterConfig::default()
                })
                .await?;
                (cluster.seeds(), cluster.tls().cloned(), Some(cluster))
            }
        };
        let results = run_all(args, &seeds, tls.as_ref()).await?;
        print_table(&results);
        std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
        let report = Report {
            command: std::env::args().collect::<Vec<_>>().join(" "),
            concurrency: args.concurrency,
            value_size: args.value_size,
            seconds: args.seconds,
            keys: args.keys,
            results: &results,
        };
        let json = args.out.join("results.json");
        std::fs::write(&json, serde_json::to_string_pretty(&report)?)?;
        let png = args.out.join("latency.png");
        // One line per workload and client: the first round's.
        let first: Vec<RunResult> = results.iter().filter(|r| r.round == 0).cloned().collect();
        crate::plot::latency_over_time(&png, &first)?;
        let bars = args.out.join("throughput.png");
        crate::plot::throughput(&bars, &results)?;
        println!(
            "\nWrote {}, {} and {}.",
            json.display(),
            png.display(),
            bars.display()
        );
        Ok(())
    })
}

/// The peers of one run, each in both variants: (label, variant, clients).
struct Peers {
    fred: Vec<(&'static str, &'static str, Vec<FredClient>)>,
    redis_rs: Vec<(&'static str, &'static str, Arc<RedisRs>)>,
    /// redis-rs with its client-side cache, and a plain redis-rs connection for the writes.
    redis_rs_cached: Option<(Arc<RedisRs>, Arc<RedisRs>)>,
}

impl Peers {
    /// Connects the selected peers from the seeds alone: nothing of our configuration goes into them
    /// but the TLS files of a TLS cluster (`config` says whether there are any).
    async fn connect(clients: &[ClientKind], seeds: &[String], config: &ClusterConfig) -> Result<Peers> {
        let mut peers = Peers {
            fred: Vec::new(),
            redis_rs: Vec::new(),
            redis_rs_cached: None,
        };
        if clients.contains(&ClientKind::RedisRsCached) {
            peers.redis_rs_cached = Some((
                Arc::new(RedisRs::cached(seeds).await?),
                Arc::new(RedisRs::defaults(seeds).await?),
            ));
        }
        if clients.contains(&ClientKind::Fred) {
            let nodes = seeds
                .iter()
                .map(|seed| seed.parse())
                .collect::<Result<Vec<cluster_config::NodeAddr>, _>>()
                .context("reading the seed nodes' addresses")?;
            // Over TLS, fred gets the TLS settings its users give it (rustls from the same CA and
            // client certificate), and nothing else of ours.
            let with_tls = |mut builder: fred::types::Builder| -> Result<fred::types::Builder> {
                if let Some(tls) = config.tls_config() {
                    let tls = drivers::fred_tls(tls)?;
                    builder.with_config(|fred| fred.tls = Some(tls));
                }
                Ok(builder)
            };
            let default = with_tls(crate::fred_baseline::default_cluster_builder(&nodes))?.build()?;
            default
                .init()
                .await
                .context("connecting fred's cluster client (defaults)")?;
            let pool = with_tls(crate::fred_baseline::best_cluster_builder(&nodes))?
                .build_pool(crate::fred_baseline::BEST_POOL_SIZE)?;
            pool.init()
                .await
                .context("connecting fred's pool (best settings)")?;
            peers.fred.push(("fred (default)", "default", vec![default]));
            peers
                .fred
                .push(("fred (best: pool)", "best", pool.clients().to_vec()));
        }
        if clients.contains(&ClientKind::RedisRs) {
            let default = RedisRs::defaults(seeds).await?;
            let best = RedisRs::best(seeds).await?;
            debug_assert!(best.len() > default.len());
            peers
                .redis_rs
                .push(("redis-rs (default)", "default", Arc::new(default)));
            peers
                .redis_rs
                .push(("redis-rs (best: pool)", "best", Arc::new(best)));
        }
        Ok(peers)
    }

    async fn close(self) {
        for (_, _, clients) in self.fred {
            for client in clients {
                let _ = client.quit().await;
            }
        }
    }
}

/// The clients a run measures: `args.clients`, plus the pipelined redis-benchmark wherever the plain one
/// is selected (the batches' baseline).
fn selected(clients: &[ClientKind]) -> Vec<ClientKind> {
    let mut selected = clients.to_vec();
    if selected.contains(&ClientKind::RedisBenchmark) && !selected.contains(&ClientKind::RedisBenchmarkP16) {
        selected.push(ClientKind::RedisBenchmarkP16);
    }
    selected
}

/// Runs every workload through every selected client, `args.rounds` times, rotating the order of the
/// clients each round so that none always runs first (or last) on a machine whose load drifts.
/// Over TLS with `tls`'s CA and client certificate when given.
pub(crate) async fn run_all(
    args: &LoadArgs,
    seeds: &[String],
    tls: Option<&TlsFiles>,
) -> Result<Vec<RunResult>> {
    let mut builder = match tls {
        None => ClusterConfig::builder().nodes(seeds.to_vec()),
        Some(tls) => {
            tls.configure(ClusterConfig::builder().nodes(seeds.iter().map(|seed| format!("rediss://{seed}"))))
        }
    };
    if let Some(pool) = args.pool_size {
        builder = builder.pool_size(pool);
    }
    let config = builder.build()?;
    let ours = ClusterClient::connect(config.clone()).await?;
    let clients = selected(&args.clients);
    let peers = Peers::connect(&clients, seeds, &config).await?;
    let value: Arc<Vec<u8>> = Arc::new(vec![b'x'; args.value_size]);
    fill(&ours, args.keys, &value).await?;
    let cache = |versioned: bool, kind: ClientKind| {
        let ours = ours.clone();
        async move {
            if !args.clients.contains(&kind) {
                return Ok::<_, anyhow::Error>(None);
            }
            let mut config = CacheConfig::builder().namespace(if versioned { "vcache" } else { "pcache" });
            if !versioned {
                config = config.versioned(None);
            }
            let cache = Cache::from_client(ours, config.build()?)?;
            fill_cache(&cache, args.keys, args.value_size).await?;
            Ok(Some(cache))
        }
    };
    // The near cache gets a client of its own (tracking is per client); `ours` writes.
    let near = if clients.contains(&ClientKind::Near) {
        let reader = ClusterClient::connect(config.clone()).await?;
        Some(near_cache::NearCache::new(
            reader,
            near_cache::NearSettings::default(),
        )?)
    } else {
        None
    };
    let versioned_cache = cache(true, ClientKind::Cache).await?;
    let plain_cache = cache(false, ClientKind::CachePlain).await?;
    let mut results = Vec::new();
    let rounds = args.rounds.max(1);
    for round in 0..rounds {
        if rounds > 1 {
            println!("round {} of {rounds}", round + 1);
        }
        for &workload in &args.workloads {
            let n = clients.len();
            for i in 0..n {
                let kind = clients[(i + round) % n];
                let mut runs: Vec<RunResult> = Vec::new();
                match kind {
                    ClientKind::Ours => runs.push(run_ours(&ours, workload, args, value.clone()).await),
                    ClientKind::Fred => {
                        // The two variants alternate which goes first, as the clients rotate.
                        let count = peers.fred.len();
                        for j in 0..count {
                            let (label, variant, fred) = &peers.fred[(j + round) % count];
                            let mut run = run_fred_clients(fred, label, workload, args, value.clone()).await;
                            run.variant = Some(variant);
                            runs.push(run);
                        }
                    }
                    ClientKind::RedisRs => {
                        let count = peers.redis_rs.len();
                        for j in 0..count {
                            let (label, variant, peer) = &peers.redis_rs[(j + round) % count];
                            let mut run =
                                run_redis_rs(peer.clone(), label, workload, args, value.clone()).await;
                            run.variant = Some(variant);
                            runs.push(run);
                        }
                    }
                    ClientKind::RedisBenchmark | ClientKind::RedisBenchmarkP16 => {
                        runs.extend(redis_benchmark::run(kind, workload, args, &seeds[0])?);
                    }
                    ClientKind::PerNode if matches!(workload, Workload::Set | Workload::Get) => {
                        runs.push(run_per_node(&ours, &config, workload, args, value.clone()).await?);
                    }
                    ClientKind::PerNode => {}
                    ClientKind::Near => {
                        if let Some(near) = &near {
                            runs.push(run_near(near, &ours, workload, args, value.clone()).await);
                        }
                    }
                    ClientKind::RedisRsCached => {
                        if let Some((cached, writer)) = &peers.redis_rs_cached {
                            runs.push(
                                run_redis_rs_cached(
                                    cached.clone(),
                                    writer.clone(),
                                    workload,
                                    args,
                                    value.clone(),
                                )
                                .await,
                            );
                        }
                    }
                    ClientKind::CachePlain if workload == Workload::VersionedSet => {}
                    ClientKind::Cache | ClientKind::CachePlain => {
                        let (cache, label) = if kind == ClientKind::Cache {
                            (&versioned_cache, "cache (versioned)")
                        } else {
                            (&plain_cache, "cache (plain writes)")
                        };
                        if let Some(cache) = cache {
                            runs.push(run_cache(cache, label, workload, args).await);
                        }
                    }
                }
                for mut result in runs {
                    result.kind = kind;
                    result.round = round;
                    results.push(result);
                }
                if workload == Workload::DelMany {
                    // The next client, and the reads of later workloads, find the keys there again.
                    fill(&ours, args.keys, &value).await?;
                    for cache in [&versioned_cache, &plain_cache].into_iter().flatten() {
                        fill_cache(cache, args.keys, args.value_size).await?;
                    }
                }
            }
        }
    }
    ours.close().await;
    if let Some(near) = near {
        near.client().close().await;
    }
    peers.close().await;
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plain_benchmark_brings_the_pipelined_one() {
        use ClientKind::{Ours, RedisBenchmark, RedisBenchmarkP16};
        assert_eq!(
            selected(&[Ours, RedisBenchmark]),
            [Ours, RedisBenchmark, RedisBenchmarkP16]
        );
        assert_eq!(selected(&[RedisBenchmarkP16, Ours]), [RedisBenchmarkP16, Ours]);
        assert_eq!(selected(&[Ours]), [Ours]);
    }

    /// A short real run of the new peers and workloads on a real cluster: every client answers without
    /// errors, each peer in both variants, batches count 100 keys per call, and the plot is written.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_short_run_measures_both_variants_of_every_peer() -> Result<()> {
        let _lock = local_cluster::test_lock::shared().await?;
        let cluster = LocalCluster::start(LocalClusterConfig {
            masters: 3,
            replicas_per_master: 0,
            ..LocalClusterConfig::default()
        })
        .await
        .context("starting a local cluster (install redis-server 7: apt-get install redis-server)")?;
        let out = std::env::temp_dir().join(format!("xtask-load-test-{}", std::process::id()));
        let args = LoadArgs {
            workloads: vec![Workload::SetMany, Workload::DelMany, Workload::HotGet],
            concurrency: 8,
            value_size: 16,
            seconds: 1,
            keys: 2000,
            batch_size: calls::BATCH,
            pool_size: None,
            clients: vec![
                ClientKind::Ours,
                ClientKind::Fred,
                ClientKind::RedisRs,
                ClientKind::RedisBenchmarkP16,
            ],
            rounds: 1,
            tls: false,
            out: out.clone(),
        };
        let results = run_all(&args, &cluster.seeds(), None).await?;
        let labels = |workload: Workload| -> Vec<(ClientKind, Option<&str>)> {
            let mut labels: Vec<_> = results
                .iter()
                .filter(|r| r.workload == workload)
                .map(|r| (r.kind, r.variant))
                .collect();
            labels.sort_by_key(|&(kind, variant)| (kind as usize, variant));
            labels
        };
        let peers = [
            (ClientKind::Ours, None),
            (ClientKind::Fred, Some("best")),
            (ClientKind::Fred, Some("default")),
            (ClientKind::RedisRs, Some("best")),
            (ClientKind::RedisRs, Some("default")),
        ];
        let mut with_benchmark = peers.to_vec();
        with_benchmark.push((ClientKind::RedisBenchmarkP16, None));
        assert_eq!(labels(Workload::SetMany), with_benchmark);
        assert_eq!(labels(Workload::DelMany), with_benchmark);
        // redis-benchmark has no hot-key mix.
        assert_eq!(labels(Workload::HotGet), peers);
        for r in &results {
            assert_eq!(r.errors, 0, "{} {:?} had errors", r.client, r.workload);
            assert!(r.ops_per_sec > 0.0, "{} {:?} did nothing", r.client, r.workload);
            let keys = if r.kind == ClientKind::RedisBenchmarkP16 {
                1.0
            } else {
                r.workload.keys_per_call() as f64
            };
            assert!(
                (r.keys_per_sec - r.ops_per_sec * keys).abs() < 1e-6 * r.keys_per_sec,
                "{} {:?}: {} keys/s at {} ops/s",
                r.client,
                r.workload,
                r.keys_per_sec,
                r.ops_per_sec
            );
            assert!(
                r.cpu_us_per_op > 0.0,
                "{} {:?} has no CPU figure",
                r.client,
                r.workload
            );
        }
        std::fs::create_dir_all(&out)?;
        let png = out.join("throughput.png");
        crate::plot::throughput(&png, &results)?;
        assert!(std::fs::metadata(&png)?.len() > 1000, "the plot has content");
        std::fs::remove_dir_all(&out)?;
        Ok(())
    }
}
