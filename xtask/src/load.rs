//! `cargo xtask load`: the same workloads through cluster-client, the raw fred cluster client and
//! `redis-benchmark --cluster`, in one run against one cluster, printed as ratios.

use std::future::Future;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cache_facade::{Cache, CacheConfig};
use cluster_client::{ClusterClient, SetOptions};
use cluster_config::ClusterConfig;
use fred::prelude::*;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use local_cluster::{ClusterSpec, LocalCluster};
use serde::Serialize;

/// What one call does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Workload {
    /// SET of a random key.
    Set,
    /// GET of a random (pre-filled) key.
    Get,
    /// 80% GET, 20% SET.
    Mixed,
    /// One get_many of 100 random keys (a fred pipeline of 100 GETs for the baseline).
    GetMany,
    /// A last-write-wins write: consistency's Lua script by EVALSHA with a fresh version, sent through
    /// each client (the typed cache's versioned `set` does this); plain clients and redis-benchmark
    /// have no such call.
    VersionedSet,
}

/// Who a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum ClientKind {
    /// cluster-client.
    Ours,
    /// fred's own cluster client.
    Fred,
    /// Plain fred centralized clients, one per primary (SET and GET only).
    PerNode,
    /// `redis-benchmark --cluster` (SET and GET only).
    RedisBenchmark,
    /// The typed cache (cache-facade) with its default settings: JSON values, versioned
    /// last-write-wins writes (one Lua script per SET).
    Cache,
    /// The typed cache with plain writes (`versioned: None`): a SET is a SET.
    CachePlain,
}

/// Options of `cargo xtask load`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct LoadArgs {
    /// Workloads to run, comma-separated.
    #[arg(long, value_delimiter = ',', default_values = ["set", "get", "mixed", "get-many"])]
    pub(crate) workloads: Vec<Workload>,
    /// Concurrent tasks (and redis-benchmark clients).
    #[arg(long, default_value_t = 50)]
    pub(crate) concurrency: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    pub(crate) value_size: usize,
    /// Seconds per workload and client.
    #[arg(long, default_value_t = 10)]
    pub(crate) seconds: u64,
    /// Size of the key space.
    #[arg(long, default_value_t = 100_000)]
    pub(crate) keys: usize,
    /// Connections per node for cluster-client (default: the configuration's pool size).
    #[arg(long)]
    pub(crate) pool_size: Option<usize>,
    /// Clients to measure, comma-separated. `per-node` is plain fred centralized clients, one per primary,
    /// routed by a slot table and nothing else: it separates cluster-client's own overhead from the cost
    /// of one connection set per node.
    #[arg(long, value_delimiter = ',', default_values = ["ours", "fred", "redis-benchmark"])]
    pub(crate) clients: Vec<ClientKind>,
    /// Rounds: every client runs every workload once per round, in an order rotated each round, and the
    /// summary shows medians over rounds (ratios are the median of the per-round ratios).
    #[arg(long, default_value_t = 1)]
    pub(crate) rounds: usize,
    /// Where results.json and latency.png go.
    #[arg(long, default_value = "target/load")]
    pub(crate) out: PathBuf,
}

/// One workload run through one client.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RunResult {
    pub(crate) workload: Workload,
    pub(crate) client: String,
    /// Which kind of client (for the summary's ratios); `Ours` for runs the demo makes itself.
    pub(crate) kind: ClientKind,
    /// Which round of `--rounds` (0-based).
    pub(crate) round: usize,
    pub(crate) ops: u64,
    pub(crate) errors: u64,
    pub(crate) seconds: f64,
    pub(crate) ops_per_sec: f64,
    pub(crate) p50_us: u64,
    pub(crate) p99_us: u64,
    pub(crate) p999_us: u64,
    /// CPU time this process spent per call (user + system, µs): a cost figure that holds up on a busy
    /// machine better than ops/s.
    pub(crate) cpu_us_per_op: f64,
    /// Per second of the run: (ops, p99 in µs).
    pub(crate) timeline: Vec<(u64, u64)>,
}

#[derive(Debug, Serialize)]
struct Report<'a> {
    command: String,
    concurrency: usize,
    value_size: usize,
    seconds: u64,
    keys: usize,
    results: &'a [RunResult],
}

pub(crate) fn load(args: &LoadArgs) -> Result<()> {
    crate::prerequisites::ensure_redis()?;
    crate::cluster::runtime()?.block_on(async {
        let (seeds, _own) = match crate::cluster::running()? {
            Some(cluster) => {
                println!("Using the cluster from `cargo xtask cluster-up`.");
                (cluster.seeds(), None)
            }
            None => {
                println!("No cluster from `cargo xtask cluster-up`; starting a 3+3 cluster for this run.");
                let cluster = LocalCluster::start(ClusterSpec::default()).await?;
                (cluster.seeds(), Some(cluster))
            }
        };
        let results = run_all(args, &seeds).await?;
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
pub(crate) async fn run_all(args: &LoadArgs, seeds: &[String]) -> Result<Vec<RunResult>> {
    let mut builder = ClusterConfig::builder().nodes(seeds.to_vec());
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
                    ClientKind::RedisBenchmark => redis_benchmark(workload, args, &seeds[0])?,
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

/// fred's own cluster client, configured the way cluster-config configures it (every node a seed,
/// reconnect policy, timeouts).
pub(crate) async fn fred_cluster_client(config: &ClusterConfig) -> Result<Client> {
    let client = Builder::from_config(config.clustered_config())
        .set_policy(config.reconnect_policy())
        .set_connection_config(config.connection_config())
        .set_performance_config(config.performance_config())
        .build()?;
    client.init().await.context("connecting fred's cluster client")?;
    Ok(client)
}

pub(crate) fn key(i: usize) -> String {
    format!("load:{i}")
}

async fn fill(client: &ClusterClient, keys: usize, value: &[u8]) -> Result<()> {
    fill_with(keys, "filling the key space", |range| async move {
        let entries: Vec<(String, &[u8], Option<Duration>)> = range.map(|i| (key(i), value, None)).collect();
        for result in client.set_many(&entries).await {
            result?;
        }
        Ok(())
    })
    .await
}

/// Fills the cache's key space with `String` values of `value_size` characters.
async fn fill_cache(cache: &Cache, keys: usize, value_size: usize) -> Result<()> {
    let value = "x".repeat(value_size);
    let value = value.as_str();
    fill_with(keys, "filling the cache's key space", |range| async move {
        let entries: Vec<(String, &str, Option<Duration>)> = range.map(|i| (key(i), value, None)).collect();
        for result in cache.set_many(&entries).await {
            result?;
        }
        Ok(())
    })
    .await
}

/// Writes keys `0..keys` in chunks of 1,000 with `write`, under a progress bar.
async fn fill_with<F, Fut>(keys: usize, label: &str, write: F) -> Result<()>
where
    F: Fn(std::ops::Range<usize>) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let bar = progress_bar(keys as u64, label);
    for start in (0..keys).step_by(1000) {
        let range = start..(start + 1000).min(keys);
        let written = range.len() as u64;
        write(range).await?;
        bar.inc(written);
    }
    bar.finish_and_clear();
    Ok(())
}

/// The typed cache, `String` values (JSON), same calls as the other clients.
async fn run_cache(cache: &Cache, label: &str, workload: Workload, args: &LoadArgs) -> RunResult {
    let keys = args.keys;
    let cache = cache.clone();
    let value = Arc::new("x".repeat(args.value_size));
    let mut result = run(workload, label, args, move |rng: &mut Rng| {
        let cache = cache.clone();
        let value = value.clone();
        let call = Call::next(workload, rng, keys);
        async move {
            match call {
                Call::Set(k) | Call::VersionedSet(k) => cache.set(&k, value.as_str(), None).await.is_ok(),
                Call::Get(k) => matches!(cache.get::<String>(&k).await, Ok(Some(_))),
                Call::GetMany(many) => cache
                    .get_many::<String, _>(&many)
                    .await
                    .iter()
                    .all(|r| matches!(r, Ok(Some(_)))),
            }
        }
    })
    .await;
    result.kind = if label.contains("versioned") {
        ClientKind::Cache
    } else {
        ClientKind::CachePlain
    };
    result
}

/// A small fast generator per task (xorshift), so key choice costs nothing next to a network call.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn next(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % bound as u64) as usize
    }
}

/// Versions and envelopes for `VersionedSet`, the way consistency makes them.
#[derive(Clone)]
struct Lww {
    clock: Arc<consistency::Clock>,
    writer: consistency::WriterId,
    script: Arc<cluster_client::Script>,
}

impl Lww {
    fn new() -> Lww {
        Lww {
            clock: Arc::new(consistency::Clock::new()),
            writer: consistency::WriterId::random(),
            script: Arc::new(cluster_client::Script::new(consistency::LWW_SCRIPT)),
        }
    }

    /// `value` in an envelope under a fresh version.
    fn envelope(&self, value: &[u8]) -> Vec<u8> {
        let version = consistency::Version::new(self.clock.now(), self.writer);
        consistency::Envelope::Value {
            version,
            payload: value,
        }
        .encode()
    }

    /// Whether the script's reply is a decision: written (`{1}`), or kept because another task's newer
    /// version of the same key got there first (`{0, header}`), which is last-write-wins doing its job.
    fn decided(&self, reply: &Value) -> bool {
        matches!(reply, Value::Array(parts) if matches!(parts.first().and_then(Value::as_i64), Some(0 | 1)))
    }
}

/// One call of a workload, chosen before the client is: the same sequence of calls for every client.
enum Call {
    Set(String),
    VersionedSet(String),
    Get(String),
    GetMany(Vec<String>),
}

impl Call {
    fn next(workload: Workload, rng: &mut Rng, keys: usize) -> Call {
        let op = match workload {
            Workload::Mixed if rng.next(100) < 80 => Workload::Get,
            Workload::Mixed => Workload::Set,
            other => other,
        };
        match op {
            Workload::Set => Call::Set(key(rng.next(keys))),
            Workload::VersionedSet => Call::VersionedSet(key(rng.next(keys))),
            Workload::GetMany => Call::GetMany((0..100).map(|_| key(rng.next(keys))).collect()),
            _ => Call::Get(key(rng.next(keys))),
        }
    }
}

async fn run_ours(
    client: &ClusterClient,
    workload: Workload,
    args: &LoadArgs,
    value: Arc<Vec<u8>>,
) -> RunResult {
    let keys = args.keys;
    let client = client.clone();
    let lww = Lww::new();
    run(workload, "cluster-client", args, move |rng: &mut Rng| {
        let client = client.clone();
        let value = value.clone();
        let call = Call::next(workload, rng, keys);
        let lww = lww.clone();
        async move {
            match call {
                Call::VersionedSet(k) => {
                    let envelope = lww.envelope(&value);
                    client
                        .eval(&lww.script, &[k.as_bytes()], &[&envelope, b"0", b"newer"])
                        .await
                        .is_ok_and(|reply| lww.decided(&reply))
                }
                Call::Set(k) => client
                    .set(k.as_bytes(), &value, SetOptions::default())
                    .await
                    .is_ok(),
                Call::Get(k) => client.get(k.as_bytes()).await.is_ok(),
                Call::GetMany(many) => client.get_many(&many).await.iter().all(Result::is_ok),
            }
        }
    })
    .await
}

pub(crate) async fn run_fred(
    client: &Client,
    workload: Workload,
    args: &LoadArgs,
    value: Arc<Vec<u8>>,
) -> RunResult {
    let keys = args.keys;
    let client = client.clone();
    let lww = Lww::new();
    if workload == Workload::VersionedSet {
        let _ = client.script_load_cluster::<(), _>(consistency::LWW_SCRIPT).await;
    }
    let mut result = run(workload, "fred cluster client", args, move |rng: &mut Rng| {
        let client = client.clone();
        let value = value.clone();
        let call = Call::next(workload, rng, keys);
        let lww = lww.clone();
        async move {
            match call {
                Call::VersionedSet(k) => {
                    let envelope = lww.envelope(&value);
                    client
                        .evalsha::<Value, _, _, _>(
                            lww.script.sha(),
                            vec![k],
                            vec![Value::Bytes(envelope.into()), "0".into(), "newer".into()],
                        )
                        .await
                        .is_ok_and(|reply| lww.decided(&reply))
                }
                Call::Set(k) => client
                    .set::<(), _, _>(k, value.as_slice(), None, None, false)
                    .await
                    .is_ok(),
                Call::Get(k) => client.get::<Option<Vec<u8>>, _>(k).await.is_ok(),
                Call::GetMany(many) => {
                    let pipeline = client.pipeline();
                    for k in many {
                        let _: Result<(), _> = pipeline.get(k).await;
                    }
                    pipeline
                        .try_all::<Option<Vec<u8>>>()
                        .await
                        .iter()
                        .all(Result::is_ok)
                }
            }
        }
    })
    .await;
    result.kind = ClientKind::Fred;
    result
}

/// Plain fred centralized clients, one per primary, routed by a slot table and nothing else.
async fn run_per_node(
    ours: &ClusterClient,
    config: &ClusterConfig,
    workload: Workload,
    args: &LoadArgs,
    value: Arc<Vec<u8>>,
) -> Result<RunResult> {
    let topology = ours.topology();
    let mut clients = Vec::new();
    let mut owner = vec![0usize; 16_384];
    for (index, shard) in topology.shards().iter().enumerate() {
        let addr: cluster_config::NodeAddr = shard.primary.parse()?;
        let client = Builder::from_config(config.fred_config_for(&addr))
            .set_policy(config.reconnect_policy())
            .set_connection_config(config.connection_config())
            .set_performance_config(config.performance_config())
            .build()?;
        client.init().await?;
        clients.push(client);
        for &(first, last) in &shard.slots {
            for slot in first..=last {
                owner[slot as usize] = index;
            }
        }
    }
    let clients = Arc::new(clients);
    let owner = Arc::new(owner);
    let keys = args.keys;
    let run_clients = clients.clone();
    let result = run(workload, "fred per-node, bare", args, move |rng: &mut Rng| {
        let clients = run_clients.clone();
        let owner = owner.clone();
        let value = value.clone();
        let k = key(rng.next(keys));
        async move {
            let client = &clients[owner[sharding_slot(k.as_bytes()) as usize]];
            match workload {
                Workload::Set => client
                    .set::<(), _, _>(k, value.as_slice(), None, None, false)
                    .await
                    .is_ok(),
                _ => client.get::<Option<Vec<u8>>, _>(k).await.is_ok(),
            }
        }
    })
    .await;
    for client in clients.iter() {
        let _ = client.quit().await;
    }
    Ok(result)
}

fn sharding_slot(key: &[u8]) -> u16 {
    fred::util::redis_keyslot(key)
}

/// Runs `op` from `args.concurrency` tasks for `args.seconds`, with a live progress bar.
pub(crate) async fn run<F, Fut>(workload: Workload, client: &str, args: &LoadArgs, op: F) -> RunResult
where
    F: Fn(&mut Rng) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send + 'static,
{
    let duration = Duration::from_secs(args.seconds);
    let cpu_before = cpu_time();
    let counter = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let seconds = args.seconds as usize + 1;
    let tasks: Vec<_> = (0..args.concurrency)
        .map(|task| {
            let op = op.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut rng =
                    Rng(0x9E37_79B9_7F4A_7C15 ^ (task as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D));
                let mut all = new_histogram();
                let mut per_second: Vec<Histogram<u64>> = (0..seconds).map(|_| new_histogram()).collect();
                let mut errors = 0u64;
                while Instant::now() < deadline {
                    let call = Instant::now();
                    let ok = op(&mut rng).await;
                    let micros = (call.elapsed().as_micros() as u64).max(1);
                    let _ = all.record(micros);
                    let second = (call.duration_since(started).as_secs() as usize).min(seconds - 1);
                    let _ = per_second[second].record(micros);
                    if !ok {
                        errors += 1;
                    }
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                (all, per_second, errors)
            })
        })
        .collect();
    let bar = progress_bar(args.seconds * 10, &format!("{workload:?} via {client}"));
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let elapsed = started.elapsed().as_secs_f64();
        bar.set_position((elapsed * 10.0) as u64);
        bar.set_message(format!(
            "{:>9.0} ops/s",
            counter.load(Ordering::Relaxed) as f64 / elapsed
        ));
    }
    let mut all = new_histogram();
    let mut per_second: Vec<Histogram<u64>> = (0..seconds).map(|_| new_histogram()).collect();
    let mut errors = 0;
    for task in tasks {
        if let Ok((h, seconds, e)) = task.await {
            let _ = all.add(&h);
            for (total, part) in per_second.iter_mut().zip(&seconds) {
                let _ = total.add(part);
            }
            errors += e;
        }
    }
    bar.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_time().saturating_sub(cpu_before);
    let result = RunResult {
        cpu_us_per_op: cpu.as_micros() as f64 / all.len().max(1) as f64,
        workload,
        client: client.to_string(),
        kind: ClientKind::Ours,
        round: 0,
        ops: all.len(),
        errors,
        seconds: elapsed,
        ops_per_sec: all.len() as f64 / elapsed,
        p50_us: all.value_at_quantile(0.5),
        p99_us: all.value_at_quantile(0.99),
        p999_us: all.value_at_quantile(0.999),
        timeline: per_second
            .iter()
            .take(args.seconds as usize)
            .map(|h| (h.len(), h.value_at_quantile(0.99)))
            .collect(),
    };
    println!(
        "{:<9} {:<22} {:>10.0} ops/s  p50 {:>6} µs  p99 {:>6} µs  p99.9 {:>6} µs  cpu {:>5.1} µs/op  errors {}",
        format!("{workload:?}"),
        client,
        result.ops_per_sec,
        result.p50_us,
        result.p99_us,
        result.p999_us,
        result.cpu_us_per_op,
        result.errors
    );
    result
}

/// User + system CPU time of this process so far.
fn cpu_time() -> Duration {
    use nix::sys::resource::{UsageWho, getrusage};
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(usage) => {
            let micros = |t: nix::sys::time::TimeVal| t.tv_sec() as u64 * 1_000_000 + t.tv_usec() as u64;
            Duration::from_micros(micros(usage.user_time()) + micros(usage.system_time()))
        }
        Err(_) => Duration::ZERO,
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("constant histogram bounds are valid")
}

pub(crate) fn progress_bar(len: u64, label: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{prefix:<34} [{bar:30}] {msg}")
            .expect("constant template is valid")
            .progress_chars("=> "),
    );
    bar.set_prefix(label.to_string());
    bar
}

/// `redis-benchmark --cluster` for the workloads it has (SET, GET), same concurrency, no pipelining.
fn redis_benchmark(workload: Workload, args: &LoadArgs, seed: &str) -> Result<Option<RunResult>> {
    let test = match workload {
        Workload::Set => "set",
        Workload::Get => "get",
        _ => return Ok(None),
    };
    let (host, port) = seed.rsplit_once(':').context("seed is host:port")?;
    let requests = 200_000usize.max(args.concurrency * 1000);
    let bar = progress_bar(1, &format!("{workload:?} via redis-benchmark"));
    bar.set_message(format!("{requests} requests"));
    bar.enable_steady_tick(Duration::from_millis(200));
    let output = Command::new("redis-benchmark")
        .args(["--cluster", "-h", host, "-p", port, "-t", test, "-q", "--csv"])
        .args(["-c", &args.concurrency.to_string(), "-n", &requests.to_string()])
        .args(["-d", &args.value_size.to_string(), "-r", &args.keys.to_string()])
        .output()
        .context("running redis-benchmark (it comes with the redis-server package)")?;
    bar.finish_and_clear();
    if !output.status.success() {
        bail!(
            "redis-benchmark failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let Some(result) = parse_benchmark_csv(&text, workload) else {
        bail!("could not read redis-benchmark's output:\n{text}");
    };
    println!(
        "{:<9} {:<22} {:>10.0} ops/s  p50 {:>6} µs  p99 {:>6} µs",
        format!("{workload:?}"),
        result.client,
        result.ops_per_sec,
        result.p50_us,
        result.p99_us
    );
    Ok(Some(result))
}

/// Parses `--csv` output: a header line, then `"SET","123.45","0.1","0.0","0.1","0.2","0.3","1.0"`
/// (rps, avg, min, p50, p95, p99, max in ms).
fn parse_benchmark_csv(text: &str, workload: Workload) -> Option<RunResult> {
    let line = text
        .lines()
        .find(|l| l.starts_with("\"SET\"") || l.starts_with("\"GET\""))?;
    let fields: Vec<f64> = line
        .split(',')
        .skip(1)
        .filter_map(|f| f.trim_matches('"').parse().ok())
        .collect();
    let us = |ms: f64| (ms * 1000.0) as u64;
    Some(RunResult {
        workload,
        client: "redis-benchmark".into(),
        kind: ClientKind::RedisBenchmark,
        round: 0,
        ops: 0,
        errors: 0,
        seconds: 0.0,
        ops_per_sec: *fields.first()?,
        p50_us: us(*fields.get(3)?),
        p99_us: us(*fields.get(5)?),
        p999_us: 0,
        cpu_us_per_op: 0.0,
        timeline: Vec::new(),
    })
}

/// The summary table, one line per workload and client: medians over rounds, and each client's ops/s
/// divided by fred's cluster client's and by cluster-client's in the same round (median over rounds).
pub(crate) fn print_table(results: &[RunResult]) {
    println!(
        "\n{:<9} {:<22} {:>4} {:>10} {:>8} {:>8} {:>7} {:>8} {:>9} {:>6}",
        "workload", "client", "runs", "ops/s", "p50 µs", "p99 µs", "÷ fred", "÷ ours", "cpu µs/op", "errors"
    );
    let mut groups: Vec<(Workload, &str)> = Vec::new();
    for r in results {
        if !groups.contains(&(r.workload, r.client.as_str())) {
            groups.push((r.workload, r.client.as_str()));
        }
    }
    // Workloads in the order they ran; within one, in the order of `ClientKind`.
    groups.sort_by_key(|&(workload, client)| {
        let first = results.iter().position(|r| r.workload == workload).unwrap_or(0);
        let kind = results
            .iter()
            .find(|r| r.workload == workload && r.client == client)
            .map(|r| r.kind as usize)
            .unwrap_or(0);
        (first, kind)
    });
    for (workload, client) in groups {
        let runs: Vec<&RunResult> = results
            .iter()
            .filter(|r| r.workload == workload && r.client == client)
            .collect();
        let versus = |reference: ClientKind| -> String {
            let ratios: Vec<f64> = runs
                .iter()
                .filter_map(|r| {
                    results
                        .iter()
                        .find(|o| o.workload == workload && o.kind == reference && o.round == r.round)
                        .filter(|o| o.ops_per_sec > 0.0)
                        .map(|o| r.ops_per_sec / o.ops_per_sec)
                })
                .collect();
            if ratios.is_empty() {
                "-".to_string()
            } else {
                format!("{:.2}×", median(ratios))
            }
        };
        println!(
            "{:<9} {:<22} {:>4} {:>10.0} {:>8.0} {:>8.0} {:>7} {:>8} {:>9.1} {:>6}",
            format!("{workload:?}"),
            client,
            runs.len(),
            median(runs.iter().map(|r| r.ops_per_sec).collect()),
            median(runs.iter().map(|r| r.p50_us as f64).collect()),
            median(runs.iter().map(|r| r.p99_us as f64).collect()),
            versus(ClientKind::Fred),
            versus(ClientKind::Ours),
            median(runs.iter().map(|r| r.cpu_us_per_op).collect()),
            runs.iter().map(|r| r.errors).sum::<u64>()
        );
    }
}

/// The median (the mean of the middle two for an even count); 0 for none.
pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_redis_benchmark_csv() {
        let text = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n\"SET\",\"81234.50\",\"0.500\",\"0.100\",\"0.450\",\"0.900\",\"1.500\",\"5.000\"\n";
        let r = parse_benchmark_csv(text, Workload::Set).unwrap();
        assert_eq!(r.ops_per_sec, 81234.5);
        assert_eq!(r.p50_us, 450);
        assert_eq!(r.p99_us, 1500);
        assert!(parse_benchmark_csv("garbage", Workload::Get).is_none());
    }

    #[test]
    fn medians() {
        assert_eq!(median(vec![]), 0.0);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
    }
}
