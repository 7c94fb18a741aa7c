//! `cargo xtask load`: the same workloads through cluster-client, the raw fred cluster client and
//! `redis-benchmark --cluster`, in one run against one cluster, printed as ratios.
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
mod redis_benchmark;
mod report;

pub(crate) use args::{ClientKind, LoadArgs, Workload};
pub(crate) use calls::Rng;
pub(crate) use drivers::{fred_cluster_client, run_fred};
pub(crate) use harness::{RunResult, progress_bar, run};
pub(crate) use report::print_table;

use drivers::{fill, fill_cache, run_cache, run_ours, run_per_node};
use report::Report;

pub(crate) fn load(args: &LoadArgs) -> Result<()> {
    crate::prerequisites::ensure_redis()?;
    if args.tls
        && let Some(kind) = args
            .clients
            .iter()
            .find(|k| matches!(k, ClientKind::PerNode | ClientKind::RedisBenchmark))
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
        println!("\nWrote {} and {}.", json.display(), png.display());
        Ok(())
    })
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
        Some(tls) => ClusterConfig::builder()
            .nodes(seeds.iter().map(|seed| format!("rediss://{seed}")))
            .tls_ca_file(tls.ca_file())
            .tls_cert_file(tls.client_cert_file())
            .tls_key_file(tls.client_key_file()),
    };
    if let Some(pool) = args.pool_size {
        builder = builder.pool_size(pool);
    }
    let config = builder.build()?;
    let ours = ClusterClient::connect(config.clone()).await?;
    let fred = if args.clients.contains(&ClientKind::Fred) {
        Some(fred_cluster_client(&config).await?)
    } else {
        None
    };
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
    let versioned_cache = cache(true, ClientKind::Cache).await?;
    let plain_cache = cache(false, ClientKind::CachePlain).await?;
    let mut results = Vec::new();
    let rounds = args.rounds.max(1);
    for round in 0..rounds {
        if rounds > 1 {
            println!("round {} of {rounds}", round + 1);
        }
        for &workload in &args.workloads {
            let n = args.clients.len();
            for i in 0..n {
                let kind = args.clients[(i + round) % n];
                let result = match kind {
                    ClientKind::Ours => Some(run_ours(&ours, workload, args, value.clone()).await),
                    ClientKind::Fred => match &fred {
                        Some(fred) => Some(run_fred(fred, workload, args, value.clone()).await),
                        None => None,
                    },
                    _ if workload == Workload::VersionedSet
                        && matches!(
                            kind,
                            ClientKind::PerNode | ClientKind::RedisBenchmark | ClientKind::CachePlain
                        ) =>
                    {
                        None
                    }
                    ClientKind::PerNode if matches!(workload, Workload::Set | Workload::Get) => {
                        Some(run_per_node(&ours, &config, workload, args, value.clone()).await?)
                    }
                    ClientKind::RedisBenchmark => redis_benchmark::run(workload, args, &seeds[0])?,
                    ClientKind::PerNode => None,
                    ClientKind::Cache | ClientKind::CachePlain => {
                        let (cache, label) = if kind == ClientKind::Cache {
                            (&versioned_cache, "cache (versioned)")
                        } else {
                            (&plain_cache, "cache (plain writes)")
                        };
                        match cache {
                            Some(cache) => Some(run_cache(cache, label, workload, args).await),
                            None => None,
                        }
                    }
                };
                if let Some(mut result) = result {
                    result.kind = kind;
                    result.round = round;
                    results.push(result);
                }
            }
        }
    }
    ours.close().await;
    if let Some(fred) = fred {
        let _ = fred.quit().await;
    }
    Ok(results)
}
