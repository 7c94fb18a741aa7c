//! Client-sharded rebalancing: adding, removing and reweighting nodes of a ketama or key-range
//! deployment of standalone servers under load, with no misses.
//!
//! A move is a [`cluster_client::Reshard`]: from its start every call routes by the new ring and
//! falls back to the old owner for keys still in flight. Then this module:
//!
//! 1. waits until no call routed by the old ring can still be in flight ([`Reshard::settle`]);
//! 2. `SCAN`s every node of the old ring and keeps the keys whose owner changes, by a
//!    [`sharding::KeyMovePlan`] of each page;
//! 3. copies them in batches, one script call per batch and node: `DUMP` + `PTTL` on the old owner,
//!    then `RESTORE` (never `REPLACE`, with the remaining TTL) on the new owner, where `BUSYKEY` means a
//!    write already landed there, which is newer: it is kept;
//! 4. deletes each copied key from its old owner only if it still holds exactly what was copied (a
//!    compare-and-delete script on the `DUMP` payload), and if the old copy was deleted meanwhile (a
//!    client's delete), deletes the new copy too, again only if it is unchanged, so a delete is never
//!    undone by the copy;
//! 5. finishes the reshard: the new ring alone serves.
//!
//! A failure at any point leaves the reshard in progress, which serves every key correctly;
//! [`ShardedRebalancer::resume`] carries it on. The copy is idempotent: a key copied twice is
//! `BUSYKEY` the second time.
//!
//! ```
//! use cluster_client::{ClusterClient, SetOptions};
//! use cluster_config::{ClusterConfig, Mode};
//! use rebalance::sharded::{ShardedMoveConfig, ShardedRebalancer};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let _lock = local_cluster::test_lock::exclusive().await?;
//! # let servers = local_cluster::LocalStandalone::start(3).await?;
//! # let addrs = servers.addrs();
//! // Two standalone servers sharded by a ketama ring (`host:port=weight` sets a weight).
//! let config = ClusterConfig::builder().nodes(&addrs[..2]).mode(Mode::Sharded).build()?;
//! let client = ClusterClient::connect(config).await?;
//! for i in 0..1_000 {
//!     client.set(format!("user:{i}").as_bytes(), b"Ada", SetOptions::default()).await?;
//! }
//!
//! // Add a third server: about a third of the keys move to it, and none is ever missed meanwhile.
//! let rebalancer = ShardedRebalancer::new(client.clone(), ShardedMoveConfig::default())?
//!     .on_progress(|p| println!("{:?}: {} keys moved", p.phase, p.keys_moved));
//! let report = rebalancer.add_node(&addrs[2], 1).await?;
//! println!("{report}");
//! assert!((200..500).contains(&report.keys_moved), "{report}");
//! assert_eq!(client.topology().shards().len(), 3);
//! assert_eq!(client.get(b"user:7").await?.as_deref(), Some(&b"Ada"[..]));
//! # client.close().await;
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cluster_client::{CallOptions, ClusterClient, Deployment, Reshard, Script, Value};
use sharding::KeyMovePlan;

/// Returns, per key, the `DUMP` payload (nil if the key is gone) and the `PTTL`, flattened. Once the
/// payloads passed ARGV[1] bytes (the first key is always taken), the remaining keys are answered nil
/// and -3 ("not taken"), so one reply never holds much more than the byte budget.
const DUMP_SOURCE: &str = r#"
local budget = tonumber(ARGV[1])
local taken = 0
local out = {}
for i, key in ipairs(KEYS) do
  if i > 1 and taken >= budget then
    out[2 * i - 1] = false
    out[2 * i] = -3
  else
    local payload = redis.call('DUMP', key)
    if payload then
      taken = taken + #payload
      out[2 * i - 1] = payload
      out[2 * i] = redis.call('PTTL', key)
    else
      out[2 * i - 1] = false
      out[2 * i] = -2
    end
  end
end
return out
"#;

/// `RESTORE` without `REPLACE` per key (ARGV: ttl, payload, ...): 1 restored, 0 the key exists (a
/// newer write, kept), or the server's error text.
const RESTORE_SOURCE: &str = r#"
local out = {}
for i, key in ipairs(KEYS) do
  local ttl = tonumber(ARGV[2 * i - 1])
  -- PTTL -1 is no expiry (RESTORE 0); 0 would also mean no expiry, so a key about to expire gets 1 ms.
  if ttl == -1 then ttl = 0 elseif ttl < 1 then ttl = 1 end
  local reply = redis.pcall('RESTORE', key, ttl, ARGV[2 * i])
  if type(reply) == 'table' and reply.err then
    if string.find(reply.err, 'BUSYKEY', 1, true) then out[i] = 0 else out[i] = reply.err end
  else
    out[i] = 1
  end
end
return out
"#;

/// Deletes each key only if its `DUMP` payload equals ARGV[i]: 1 deleted, 0 missing, -1 changed.
const COMPARE_AND_DELETE_SOURCE: &str = r#"
local out = {}
for i, key in ipairs(KEYS) do
  local current = redis.call('DUMP', key)
  if not current then
    out[i] = 0
  elseif current == ARGV[i] then
    redis.call('DEL', key)
    out[i] = 1
  else
    out[i] = -1
  end
end
return out
"#;

/// Why a client-sharded move failed. A move that fails leaves its reshard in progress, serving every
/// key; [`ShardedRebalancer::resume`] carries it on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting of [`ShardedMoveConfig`] is out of range.
    #[error("{setting} of {value} is out of range: {allowed}")]
    InvalidConfig {
        /// The setting's name.
        setting: &'static str,
        /// The value given.
        value: String,
        /// The accepted range.
        allowed: &'static str,
    },
    /// The client is not connected to a client-sharded deployment.
    #[error(
        "the client is connected to a {deployment:?} deployment, not client-sharded nodes; \
         use the cluster rebalancing for a Redis Cluster"
    )]
    NotSharded {
        /// What the client is connected to.
        deployment: Deployment,
    },
    /// A node to add is already in the ring.
    #[error("{node} is already in the ring; use set_weights to change its weight")]
    AlreadyInRing {
        /// The node.
        node: String,
    },
    /// A node to remove or reweight is not in the ring.
    #[error("{node} is not in the ring (nodes: {nodes}); name a node as the topology lists it")]
    NotInRing {
        /// The node asked for.
        node: String,
        /// The ring's nodes, comma-separated.
        nodes: String,
    },
    /// A call through the client failed; the reshard, if begun, stays in progress.
    #[error(transparent)]
    Client(#[from] cluster_client::Error),
    /// A script answered in an unexpected shape.
    #[error("unexpected reply from {node} to the {script} script: {detail}")]
    Reply {
        /// The node.
        node: String,
        /// Which script (`dump`, `restore`, `compare-and-delete`).
        script: &'static str,
        /// What was unexpected.
        detail: String,
    },
}

/// How a client-sharded move runs. Build with [`ShardedMoveConfig::builder`]; the defaults suit caches
/// of small values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardedMoveConfig {
    batch_keys: usize,
    batch_bytes: usize,
    scan_count: u32,
    call_timeout: Duration,
}

impl Default for ShardedMoveConfig {
    fn default() -> Self {
        ShardedMoveConfig {
            batch_keys: 500,
            batch_bytes: 8 * 1024 * 1024,
            scan_count: 1_000,
            call_timeout: Duration::from_secs(5),
        }
    }
}

impl ShardedMoveConfig {
    /// The most keys one batch may hold: one script call runs on the server for the whole batch.
    pub const MAX_BATCH_KEYS: usize = 10_000;
    /// The largest byte budget of one batch.
    pub const MAX_BATCH_BYTES: usize = 1024 * 1024 * 1024;
    /// The largest `SCAN` `COUNT` hint.
    pub const MAX_SCAN_COUNT: u32 = 100_000;

    /// A builder starting from the defaults.
    pub fn builder() -> ShardedMoveConfigBuilder {
        ShardedMoveConfigBuilder {
            config: ShardedMoveConfig::default(),
        }
    }

    /// Keys copied per script call and node (default 500, 1 to [`MAX_BATCH_KEYS`](Self::MAX_BATCH_KEYS)).
    pub fn batch_keys(&self) -> usize {
        self.batch_keys
    }

    /// The `DUMP` payload bytes one script call may return (default 8 MiB, 1 to
    /// [`MAX_BATCH_BYTES`](Self::MAX_BATCH_BYTES)): a batch whose payloads pass it is copied in several
    /// calls, each holding at least one key, so the memory a move holds is about this much whatever the
    /// values' sizes.
    pub fn batch_bytes(&self) -> usize {
        self.batch_bytes
    }

    /// The `COUNT` hint of each `SCAN` step (default 1,000, 1 to [`MAX_SCAN_COUNT`](Self::MAX_SCAN_COUNT)).
    pub fn scan_count(&self) -> u32 {
        self.scan_count
    }

    /// The deadline of each scan step and script call (default 5 s, 1 ms to
    /// [`cluster_client::MAX_TIMEOUT`]).
    pub fn call_timeout(&self) -> Duration {
        self.call_timeout
    }
}

/// Builds a [`ShardedMoveConfig`]; [`build`](ShardedMoveConfigBuilder::build) checks every setting.
#[derive(Debug, Clone)]
pub struct ShardedMoveConfigBuilder {
    config: ShardedMoveConfig,
}

impl ShardedMoveConfigBuilder {
    /// Keys copied per script call and node.
    pub fn batch_keys(mut self, keys: usize) -> Self {
        self.config.batch_keys = keys;
        self
    }

    /// The `DUMP` payload bytes one script call may return.
    pub fn batch_bytes(mut self, bytes: usize) -> Self {
        self.config.batch_bytes = bytes;
        self
    }

    /// The `COUNT` hint of each `SCAN` step.
    pub fn scan_count(mut self, count: u32) -> Self {
        self.config.scan_count = count;
        self
    }

    /// The deadline of each scan step and script call.
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.config.call_timeout = timeout;
        self
    }

    /// The configuration, or the first setting out of range.
    pub fn build(self) -> Result<ShardedMoveConfig, Error> {
        let config = self.config;
        if !(1..=ShardedMoveConfig::MAX_BATCH_KEYS).contains(&config.batch_keys) {
            return Err(Error::InvalidConfig {
                setting: "batch_keys",
                value: config.batch_keys.to_string(),
                allowed: "1 to 10000 keys per batch",
            });
        }
        if !(1..=ShardedMoveConfig::MAX_BATCH_BYTES).contains(&config.batch_bytes) {
            return Err(Error::InvalidConfig {
                setting: "batch_bytes",
                value: config.batch_bytes.to_string(),
                allowed: "1 to 1073741824 bytes per batch",
            });
        }
        if !(1..=ShardedMoveConfig::MAX_SCAN_COUNT).contains(&config.scan_count) {
            return Err(Error::InvalidConfig {
                setting: "scan_count",
                value: config.scan_count.to_string(),
                allowed: "1 to 100000",
            });
        }
        if !(cluster_client::MIN_TIMEOUT..=cluster_client::MAX_TIMEOUT).contains(&config.call_timeout) {
            return Err(Error::InvalidConfig {
                setting: "call_timeout",
                value: format!("{:?}", config.call_timeout),
                allowed: "1 ms to u32::MAX ms",
            });
        }
        Ok(config)
    }
}

/// What a move is doing, for [`MoveProgress`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MovePhase {
    /// Waiting for calls routed by the old ring to end.
    Settling,
    /// Scanning the old nodes and copying the keys that move.
    Copying,
    /// Every moved key is copied and the new ring alone serves.
    Finished,
}

/// Progress of a move, given to the callback of [`ShardedRebalancer::on_progress`] after each batch.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MoveProgress {
    /// What the move is doing.
    pub phase: MovePhase,
    /// The old node being scanned (empty while settling and when finished).
    pub node: String,
    /// Keys scanned on the old nodes so far.
    pub keys_scanned: u64,
    /// Keys copied to their new owner so far.
    pub keys_moved: u64,
    /// Keys whose new owner already held a newer write, kept, so far.
    pub keys_skipped_newer: u64,
    /// `DUMP` payload bytes copied so far.
    pub bytes: u64,
    /// Time since the move began.
    pub elapsed: Duration,
}

/// The outcome of a move: counts, bytes, rate and where keys went.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct MoveReport {
    /// The ring before the move, `(host:port, weight)`.
    pub old_nodes: Vec<(String, u32)>,
    /// The ring after the move.
    pub new_nodes: Vec<(String, u32)>,
    /// Keys scanned on the old nodes.
    pub keys_scanned: u64,
    /// Keys copied to their new owner (`RESTORE`d).
    pub keys_moved: u64,
    /// Keys whose new owner already held a write made during the move: the newer value was kept.
    pub keys_skipped_newer: u64,
    /// Keys the plan moved that were gone (deleted or expired) when their batch was copied.
    pub keys_gone: u64,
    /// Copies removed again because the key was deleted on its old owner while it was copied (a
    /// client's delete during the move), so the copy could not undo the delete.
    pub copies_undone: u64,
    /// Old copies deleted after the copy.
    pub old_copies_deleted: u64,
    /// Old copies left in place because they changed after they were copied (written by a client that
    /// does not know of the move).
    pub old_copies_changed: u64,
    /// `DUMP` payload bytes copied.
    pub bytes: u64,
    /// Wall time of the move, settling included.
    pub elapsed: Duration,
    /// The part of it spent waiting for calls routed by the old ring to end ([`Reshard::settle`]).
    pub settle: Duration,
    /// Where the moved keys went, as the plan of each scanned page counted them.
    pub flows: Vec<MoveFlow>,
}

impl MoveReport {
    /// Keys copied per second of copying (the settle wait left out).
    pub fn keys_per_second(&self) -> f64 {
        let secs = self.elapsed.saturating_sub(self.settle).as_secs_f64();
        if secs > 0.0 {
            self.keys_moved as f64 / secs
        } else {
            0.0
        }
    }
}

impl fmt::Display for MoveReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} keys scanned, {} moved ({} bytes), {} kept newer, {} gone, {} copies undone, {} old copies \
             deleted, {} changed, in {:.2?} ({:.2?} settling; {:.0} keys/s copied)",
            self.keys_scanned,
            self.keys_moved,
            self.bytes,
            self.keys_skipped_newer,
            self.keys_gone,
            self.copies_undone,
            self.old_copies_deleted,
            self.old_copies_changed,
            self.elapsed,
            self.settle,
            self.keys_per_second()
        )
    }
}

type ProgressFn = Arc<dyn Fn(&MoveProgress) + Send + Sync>;

/// Adds, removes and reweights the nodes of a client-sharded deployment under load: see the module
/// documentation.
#[derive(Clone)]
pub struct ShardedRebalancer {
    client: ClusterClient,
    config: ShardedMoveConfig,
    progress: Option<ProgressFn>,
}

impl fmt::Debug for ShardedRebalancer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardedRebalancer")
            .field("client", &self.client)
            .field("config", &self.config)
            .finish()
    }
}

impl ShardedRebalancer {
    /// A rebalancer for `client`, which must be connected to client-sharded nodes.
    pub fn new(client: ClusterClient, config: ShardedMoveConfig) -> Result<ShardedRebalancer, Error> {
        match client.deployment() {
            Deployment::ShardedKetama | Deployment::ShardedKeyRange => Ok(ShardedRebalancer {
                client,
                config,
                progress: None,
            }),
            deployment => Err(Error::NotSharded { deployment }),
        }
    }

    /// Calls `callback` as the move goes (after each batch and at each phase change).
    pub fn on_progress(mut self, callback: impl Fn(&MoveProgress) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(callback));
        self
    }

    /// Adds `addr` to the ring at `weight` and moves the keys it now owns to it.
    pub async fn add_node(&self, addr: &str, weight: u32) -> Result<MoveReport, Error> {
        let mut nodes = self.ring();
        if nodes.iter().any(|(node, _)| node == addr) {
            return Err(Error::AlreadyInRing { node: addr.into() });
        }
        nodes.push((addr.to_string(), weight));
        self.move_to(nodes).await
    }

    /// Moves every key of `addr` to the other nodes and takes it out of the ring.
    pub async fn remove_node(&self, addr: &str) -> Result<MoveReport, Error> {
        let mut nodes = self.ring();
        let before = nodes.len();
        nodes.retain(|(node, _)| node != addr);
        if nodes.len() == before {
            return Err(self.not_in_ring(addr));
        }
        self.move_to(nodes).await
    }

    /// Gives the listed nodes new weights (the others keep theirs) and moves the keys that change owner.
    pub async fn set_weights(&self, weights: &[(&str, u32)]) -> Result<MoveReport, Error> {
        let mut nodes = self.ring();
        for (addr, weight) in weights {
            match nodes.iter_mut().find(|(node, _)| node == addr) {
                Some(entry) => entry.1 = *weight,
                None => return Err(self.not_in_ring(addr)),
            }
        }
        self.move_to(nodes).await
    }

    /// Moves to the ring `nodes` (`host:port`, weight), whatever it changes.
    pub async fn move_to(&self, nodes: Vec<(String, u32)>) -> Result<MoveReport, Error> {
        let reshard = self.client.begin_reshard(nodes).await?;
        self.carry_out(reshard).await
    }

    /// Carries on the reshard in progress on the client (one a failed or dropped move left behind, or
    /// the reverse move of an aborted one) and finishes it; `None` when none is in progress.
    pub async fn resume(&self) -> Result<Option<MoveReport>, Error> {
        match self.client.reshard_in_progress() {
            Some(reshard) => self.carry_out(reshard).await.map(Some),
            None => Ok(None),
        }
    }

    /// The ring as the client routes it now.
    fn ring(&self) -> Vec<(String, u32)> {
        self.client.topology().weighted_nodes()
    }

    fn not_in_ring(&self, addr: &str) -> Error {
        let nodes = self.ring();
        Error::NotInRing {
            node: addr.into(),
            nodes: nodes
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(","),
        }
    }

    fn report(&self, progress: &MoveProgress) {
        if let Some(callback) = &self.progress {
            callback(progress);
        }
    }

    /// Steps 1 to 5 of the module documentation for `reshard`.
    async fn carry_out(&self, reshard: Reshard) -> Result<MoveReport, Error> {
        let started = Instant::now();
        let old = reshard.old_topology();
        let new = reshard.new_topology();
        let mut report = MoveReport {
            old_nodes: old.weighted_nodes(),
            new_nodes: new.weighted_nodes(),
            keys_scanned: 0,
            keys_moved: 0,
            keys_skipped_newer: 0,
            keys_gone: 0,
            copies_undone: 0,
            old_copies_deleted: 0,
            old_copies_changed: 0,
            bytes: 0,
            elapsed: Duration::ZERO,
            settle: Duration::ZERO,
            flows: Vec::new(),
        };
        self.report(&progress_of(&report, MovePhase::Settling, "", started));
        reshard.settle().await;
        report.settle = started.elapsed();
        let client = self
            .client
            .with_options(CallOptions::timeout(self.config.call_timeout));
        let scripts = Scripts::new();
        let mut flows: BTreeMap<(Option<String>, Option<String>), usize> = BTreeMap::new();
        let (Some(old_sharder), Some(new_sharder)) = (old.sharder(), new.sharder()) else {
            return Err(Error::NotSharded {
                deployment: old.deployment(),
            });
        };
        for shard in old.shards() {
            let node = shard.primary.as_str();
            let mut cursor = 0;
            loop {
                let (next, keys) = client
                    .scan_node(node, cursor, None, self.config.scan_count)
                    .await?;
                report.keys_scanned += keys.len() as u64;
                let plan = KeyMovePlan::between(old_sharder, new_sharder, &keys);
                for flow in plan.flows() {
                    *flows.entry((flow.from.clone(), flow.to.clone())).or_default() += flow.keys;
                }
                // Keys moving away from this node, grouped by their new owner. A key this node holds
                // although the old ring places it elsewhere is not the move's business.
                let mut by_target: BTreeMap<String, Vec<Bytes>> = BTreeMap::new();
                for &index in plan.moved_keys() {
                    let key = &keys[index];
                    if let Some(moved) = reshard.moved(key)
                        && moved.from == node
                    {
                        by_target.entry(moved.to).or_default().push(key.clone());
                    }
                }
                for (target, keys) in by_target {
                    for batch in keys.chunks(self.config.batch_keys) {
                        let mut rest = batch;
                        while !rest.is_empty() {
                            let taken = copy_batch(
                                &client,
                                &scripts,
                                (node, &target),
                                rest,
                                self.config.batch_bytes,
                                &mut report,
                            )
                            .await?;
                            rest = &rest[taken.clamp(1, rest.len())..];
                            self.report(&progress_of(&report, MovePhase::Copying, node, started));
                        }
                    }
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        reshard.finish()?;
        report.flows = flows
            .into_iter()
            .map(|((from, to), keys)| MoveFlow { from, to, keys })
            .collect();
        report.elapsed = started.elapsed();
        self.report(&progress_of(&report, MovePhase::Finished, "", started));
        Ok(report)
    }
}

/// A number of keys that went from one node to another, as the plans of the scanned pages counted
/// them (keys a node held for another node of the old ring are not counted as moving).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MoveFlow {
    /// The node the keys left (`None`: no owner in the old ring).
    pub from: Option<String>,
    /// The node they went to (`None`: no owner in the new ring).
    pub to: Option<String>,
    /// How many keys.
    pub keys: usize,
}

fn progress_of(report: &MoveReport, phase: MovePhase, node: &str, started: Instant) -> MoveProgress {
    MoveProgress {
        phase,
        node: node.to_string(),
        keys_scanned: report.keys_scanned,
        keys_moved: report.keys_moved,
        keys_skipped_newer: report.keys_skipped_newer,
        bytes: report.bytes,
        elapsed: started.elapsed(),
    }
}

struct Scripts {
    dump: Script,
    restore: Script,
    compare_and_delete: Script,
}

impl Scripts {
    fn new() -> Scripts {
        Scripts {
            dump: Script::new(DUMP_SOURCE),
            restore: Script::new(RESTORE_SOURCE),
            compare_and_delete: Script::new(COMPARE_AND_DELETE_SOURCE),
        }
    }
}

/// Copies the first keys of `keys` (as many as the byte budget allows, at least one) from `from` to
/// `to` and deletes the old copies (steps 3 and 4). Returns how many keys it took.
async fn copy_batch(
    client: &ClusterClient,
    scripts: &Scripts,
    (from, to): (&str, &str),
    keys: &[Bytes],
    batch_bytes: usize,
    report: &mut MoveReport,
) -> Result<usize, Error> {
    let key_refs: Vec<&[u8]> = keys.iter().map(|k| k.as_ref()).collect();
    let budget = batch_bytes.to_string();
    let dumped = client
        .eval_on_node(from, &scripts.dump, &key_refs, &[budget.as_bytes()])
        .await?;
    let dumped = items(dumped, keys.len() * 2, from, "dump")?;
    // (key, payload) of the keys still there, with their TTL argument.
    let mut present: Vec<(&[u8], Bytes)> = Vec::with_capacity(keys.len());
    let mut ttls: Vec<Bytes> = Vec::with_capacity(keys.len());
    let mut taken = 0;
    for (key, pair) in key_refs.iter().zip(dumped.chunks(2)) {
        match (&pair[0], &pair[1]) {
            // Past the byte budget: the keys from here on are left for the next call.
            (Value::Null, Value::Integer(-3)) => break,
            (Value::Bytes(payload), Value::Integer(ttl)) => {
                present.push((key, payload.clone()));
                ttls.push(Bytes::from(ttl.to_string()));
            }
            (Value::Null, _) => report.keys_gone += 1,
            (payload, ttl) => {
                return Err(Error::Reply {
                    node: from.into(),
                    script: "dump",
                    detail: format!("expected a payload and a TTL, got {payload:?} and {ttl:?}"),
                });
            }
        }
        taken += 1;
    }
    if present.is_empty() {
        return Ok(taken);
    }
    let present_keys: Vec<&[u8]> = present.iter().map(|(key, _)| *key).collect();
    let mut args: Vec<&[u8]> = Vec::with_capacity(present.len() * 2);
    for ((_, payload), ttl) in present.iter().zip(&ttls) {
        args.push(ttl);
        args.push(payload);
    }
    let restored = client
        .eval_on_node(to, &scripts.restore, &present_keys, &args)
        .await?;
    let restored = items(restored, present.len(), to, "restore")?;
    let mut copied = Vec::with_capacity(present.len());
    for ((key, payload), outcome) in present.iter().zip(&restored) {
        match outcome {
            Value::Integer(1) => {
                report.keys_moved += 1;
                report.bytes += payload.len() as u64;
                copied.push(true);
            }
            Value::Integer(0) => {
                report.keys_skipped_newer += 1;
                copied.push(false);
            }
            other => {
                return Err(Error::Reply {
                    node: to.into(),
                    script: "restore",
                    detail: format!(
                        "RESTORE of {} failed: {}",
                        cluster_client::printable_key(key),
                        printable(other)
                    ),
                });
            }
        }
    }
    // Old copies go only if they still hold what was copied; a delete meanwhile is answered below.
    let payloads: Vec<&[u8]> = present.iter().map(|(_, payload)| payload.as_ref()).collect();
    let deleted = client
        .eval_on_node(from, &scripts.compare_and_delete, &present_keys, &payloads)
        .await?;
    let deleted = items(deleted, present.len(), from, "compare-and-delete")?;
    let mut undo_keys = Vec::new();
    let mut undo_payloads = Vec::new();
    for (((key, payload), outcome), copied) in present.iter().zip(&deleted).zip(&copied) {
        match outcome {
            Value::Integer(1) => report.old_copies_deleted += 1,
            Value::Integer(-1) => report.old_copies_changed += 1,
            // Gone from the old owner since the dump: a client deleted it (old owner first), so the
            // copy must not outlive the delete.
            Value::Integer(0) if *copied => {
                undo_keys.push(*key);
                undo_payloads.push(payload.as_ref());
            }
            Value::Integer(0) => {}
            other => {
                return Err(Error::Reply {
                    node: from.into(),
                    script: "compare-and-delete",
                    detail: format!("expected 1, 0 or -1, got {}", printable(other)),
                });
            }
        }
    }
    if !undo_keys.is_empty() {
        let undone = client
            .eval_on_node(to, &scripts.compare_and_delete, &undo_keys, &undo_payloads)
            .await?;
        let undone = items(undone, undo_keys.len(), to, "compare-and-delete")?;
        report.copies_undone += undone
            .iter()
            .filter(|outcome| matches!(outcome, Value::Integer(1)))
            .count() as u64;
    }
    Ok(taken)
}

/// The items of a script's array reply, which must number `expected`.
fn items(reply: Value, expected: usize, node: &str, script: &'static str) -> Result<Vec<Value>, Error> {
    match reply {
        Value::Array(items) if items.len() == expected => Ok(items),
        other => Err(Error::Reply {
            node: node.into(),
            script,
            detail: format!("expected an array of {expected} items, got {}", printable(&other)),
        }),
    }
}

/// A reply for an error message: its kind and, for short text, the text.
fn printable(value: &Value) -> String {
    match value {
        Value::Bytes(bytes) if bytes.len() <= 200 => String::from_utf8_lossy(bytes).into_owned(),
        Value::Array(items) => format!("an array of {} items", items.len()),
        other => format!("{other:?}").chars().take(200).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_bounds() {
        fn check(builder: ShardedMoveConfigBuilder, expected: Result<(), &str>) {
            match (builder.build(), expected) {
                (Ok(_), Ok(())) => {}
                (Err(error), Err(fragment)) => {
                    assert!(error.to_string().contains(fragment), "{error} lacks {fragment}");
                }
                (got, want) => panic!("got {got:?}, expected {want:?}"),
            }
        }
        let b = ShardedMoveConfig::builder;
        check(b(), Ok(()));
        check(b().batch_keys(1).scan_count(1), Ok(()));
        check(b().batch_keys(10_000).scan_count(100_000), Ok(()));
        check(b().batch_keys(0), Err("batch_keys of 0 is out of range"));
        check(b().batch_keys(10_001), Err("batch_keys of 10001"));
        check(b().batch_keys(usize::MAX), Err("batch_keys"));
        check(b().batch_bytes(1), Ok(()));
        check(b().batch_bytes(0), Err("batch_bytes of 0 is out of range"));
        check(b().batch_bytes(usize::MAX), Err("batch_bytes"));
        check(b().scan_count(0), Err("scan_count of 0"));
        check(b().scan_count(100_001), Err("scan_count of 100001"));
        check(b().call_timeout(Duration::ZERO), Err("call_timeout of 0ns"));
        check(b().call_timeout(Duration::MAX), Err("call_timeout"));
        assert_eq!(ShardedMoveConfig::default().batch_keys(), 500);
    }

    #[test]
    fn reports_count_a_rate() {
        let report = MoveReport {
            old_nodes: vec![],
            new_nodes: vec![],
            keys_scanned: 10,
            keys_moved: 4,
            keys_skipped_newer: 1,
            keys_gone: 0,
            copies_undone: 0,
            old_copies_deleted: 5,
            old_copies_changed: 0,
            bytes: 400,
            elapsed: Duration::from_secs(3),
            settle: Duration::from_secs(1),
            flows: vec![],
        };
        assert_eq!(report.keys_per_second(), 2.0);
        assert!(
            report
                .to_string()
                .starts_with("10 keys scanned, 4 moved (400 bytes), 1 kept newer")
        );
        let instant = MoveReport {
            elapsed: Duration::ZERO,
            ..report
        };
        assert_eq!(instant.keys_per_second(), 0.0);
    }

    #[test]
    fn script_replies_must_have_the_expected_length() {
        assert!(items(Value::Array(vec![Value::Null; 2]), 2, "n", "dump").is_ok());
        let error = items(Value::Array(vec![Value::Null]), 2, "n:1", "dump").unwrap_err();
        assert!(error.to_string().contains("n:1 to the dump script"), "{error}");
        assert!(items(Value::Integer(1), 1, "n", "restore").is_err());
    }
}
