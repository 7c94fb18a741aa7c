//! The command line of `cargo xtask load`: what to run, through which clients, how long.

use std::path::PathBuf;

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
    /// One get_many of 100 random keys (a fred pipeline of 100 GETs, one redis-rs MGET that it splits
    /// per slot, and `GET -P 16` for redis-benchmark).
    GetMany,
    /// A last-write-wins write: consistency's Lua script by EVALSHA with a fresh version, sent through
    /// each client (the typed cache's versioned `set` does this); plain clients and redis-benchmark
    /// have no such call.
    VersionedSet,
    /// One set_many of 100 random keys (fred: a pipeline of 100 SETs; redis-rs: one MSET that it splits
    /// per slot; redis-benchmark: `SET -P 16`).
    SetMany,
    /// A hot key set: 90% GET, 10% SET, over the first 1,000 keys.
    HotGet,
    /// One delete_many of 100 random keys (fred: a pipeline of 100 DELs; redis-rs: one DEL that it
    /// splits per slot; redis-benchmark: `DEL` of a random key, `-P 16`). Every client deletes random
    /// keys of the same key space, so once a run is under way most of them are already gone, for
    /// every client alike; the typed cache stores a tombstone for each.
    DelMany,
}

impl Workload {
    /// Keys one call of this workload touches: the batch size (`--batch-size`, 100 by default) for the
    /// batches, 1 otherwise.
    pub(crate) fn keys_per_call(self) -> usize {
        match self {
            Workload::GetMany | Workload::SetMany | Workload::DelMany => super::calls::batch_size(),
            _ => 1,
        }
    }
}

/// Who a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum ClientKind {
    /// cluster-client.
    Ours,
    /// fred's own cluster client, twice: with fred's defaults (as its users build it) and with its best
    /// documented settings (a round-robin `Pool` of clients); ratios are against the faster of the two.
    /// None of our own settings configure it.
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
    /// redis-rs (the `redis` crate's async cluster client on tokio), twice: as its users build it (one
    /// `ClusterConnection`, defaults) and with its best documented settings (a pool of connections);
    /// ratios are against the faster of the two.
    RedisRs,
    /// `redis-benchmark --cluster -P 16`, the batch baseline: GET and SET pipelined 16 deep (also run
    /// for get-many and set-many, to compare keys/s). Selecting `redis-benchmark` runs it too.
    RedisBenchmarkP16,
    /// The near cache (near-cache over cluster-client, default settings): reads from process memory
    /// when tracked, writes through another cluster-client, so invalidations come from the servers.
    Near,
    /// redis-rs's client-side cache (`cache-aio`: RESP3, `CacheConfig::new()`, as its docs build it) on
    /// its async cluster connection; writes through another redis-rs connection.
    RedisRsCached,
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
    /// Keys per call of the batch workloads (get-many, set-many, del-many).
    #[arg(long, default_value_t = super::calls::BATCH, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000))]
    pub(crate) batch_size: usize,
    /// Rounds: every client runs every workload once per round, in an order rotated each round, and the
    /// summary shows medians over rounds (ratios are the median of the per-round ratios).
    #[arg(long, default_value_t = 1)]
    pub(crate) rounds: usize,
    /// Run over TLS: a TLS-only cluster (or the running `cluster-up --tls` one), and every client over
    /// TLS (ours, fred's cluster client with its own rustls settings, the typed cache). `per-node` and
    /// `redis-benchmark` do not run with it.
    #[arg(long)]
    pub(crate) tls: bool,
    /// Where results.json, latency.png and throughput.png go.
    #[arg(long, default_value = "target/load")]
    pub(crate) out: PathBuf,
}
