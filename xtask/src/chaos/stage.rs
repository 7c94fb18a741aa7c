//! What every drill starts from: a fresh 3 + 3 cluster, the three clients, filled keys, and the three
//! loads;
//! plus the progress display and the few cluster facts drills read.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cache_facade::CacheConfig;
use cluster_client::Topology;
use indicatif::{ProgressBar, ProgressStyle};
use local_cluster::{LocalCluster, LocalClusterConfig, Node};

use super::traffic::{Burst, Clients, KEYS, Keys, Mix, Peers, Side, Tallies, Tally, Traffic};

/// Keys filled per batch before a drill.
const FILL_BATCH: usize = 500;

/// A drill's cluster, clients and keys.
pub(super) struct Stage {
    pub(super) cluster: LocalCluster,
    pub(super) clients: Clients,
    /// The topology when the drill started; tallies count per shard of it.
    pub(super) topology: Arc<Topology>,
    /// Time zero of the loads' tallies.
    pub(super) started: Instant,
    /// Each load's own keys.
    keys: Peers<Arc<Keys>>,
    rate: u32,
}

impl Stage {
    /// Starts a 3 + 3 cluster, connects the three clients and fills every key of every load, so that reads
    /// find values and the end-of-drill check knows what must be there.
    pub(super) async fn start(rate: u32, settings: CacheConfig) -> Result<Stage> {
        Stage::start_on(rate, settings, LocalClusterConfig::default()).await
    }

    /// [`Stage::start`] on a cluster of another shape (spare nodes, for instance).
    pub(super) async fn start_on(
        rate: u32,
        settings: CacheConfig,
        shape: LocalClusterConfig,
    ) -> Result<Stage> {
        let spinner = spinner(&format!(
            "starting a {} + {} cluster{}",
            shape.masters,
            shape.masters * shape.replicas_per_master,
            if shape.spares > 0 {
                format!(" and {} spare node(s)", shape.spares)
            } else {
                String::new()
            }
        ));
        let cluster = LocalCluster::start(shape)
            .await
            .context("starting the local cluster")?;
        spinner.set_message("connecting the cache, fred's and redis-rs's cluster clients");
        let clients = Clients::connect(&cluster, settings).await?;
        let topology = clients.raw().topology();
        if topology.shards().len() != cluster.masters() {
            bail!(
                "the client sees {} shards, the cluster has {} primaries",
                topology.shards().len(),
                cluster.masters()
            );
        }
        let keys = Peers {
            ours: Keys::new("ours", KEYS, &topology)?,
            fred: Keys::new("fred", KEYS, &topology)?,
            redis_rs: Keys::new("redis-rs", KEYS, &topology)?,
        };
        spinner.set_message(format!("filling {} keys per client", KEYS));
        for (i, chunk) in keys.ours.names.chunks(FILL_BATCH).enumerate() {
            let entries: Vec<(&str, String, Option<Duration>)> = chunk
                .iter()
                .enumerate()
                .map(|(j, k)| (k.as_str(), format!("{}:fill", i * FILL_BATCH + j), None))
                .collect();
            for result in clients.cache.set_many(&entries).await {
                result.context("filling the cache's keys")?;
            }
        }
        // The peers' keys are plain strings, written here through the cluster client: the data is what
        // matters, not which client put it there.
        for (who, peer_keys) in [("fred", &keys.fred), ("redis-rs", &keys.redis_rs)] {
            for chunk in peer_keys.names.chunks(FILL_BATCH) {
                let entries: Vec<(&str, &str, Option<Duration>)> =
                    chunk.iter().map(|k| (k.as_str(), "fill", None)).collect();
                for result in clients.raw().set_many(&entries).await {
                    result.with_context(|| format!("filling {who}'s keys"))?;
                }
            }
        }
        spinner.finish_and_clear();
        Ok(Stage {
            cluster,
            clients,
            topology,
            started: Instant::now(),
            keys,
            rate,
        })
    }

    /// The shard index of the shard whose primary was `addr` when the drill started.
    pub(super) fn shard_of(&self, node: &Node) -> Result<usize> {
        let addr = node.addr();
        self.topology
            .shards()
            .iter()
            .position(|s| s.primary == addr)
            .with_context(|| format!("{addr} was not a primary when the drill started"))
    }

    /// Each client as the side of a load.
    fn sides(&self) -> Peers<Side> {
        Peers {
            ours: Side::Ours(self.clients.cache.clone()),
            fred: Side::Fred(self.clients.fred.clone()),
            redis_rs: Side::RedisRs(self.clients.redis_rs.clone()),
        }
    }

    /// Starts an open-loop burst of GETs through each client, each recorded in `load`'s tally of that
    /// client.
    pub(super) fn bursts(&self, load: &Load) -> Peers<Burst> {
        let Peers { ours, fred, redis_rs } = self.sides();
        let burst = |side, keys: &Arc<Keys>, tally: &Arc<Tally>| {
            Burst::start(side, keys.clone(), self.rate, tally.clone())
        };
        Peers {
            ours: burst(ours, &self.keys.ours, &load.tallies.ours),
            fred: burst(fred, &self.keys.fred, &load.tallies.fred),
            redis_rs: burst(redis_rs, &self.keys.redis_rs, &load.tallies.redis_rs),
        }
    }

    /// Starts an open-loop burst of GETs through ours only (see the client-pause drill's memory bound).
    pub(super) fn burst_ours(&self, load: &Load) -> Burst {
        Burst::start(
            self.sides().ours,
            self.keys.ours.clone(),
            self.rate,
            load.tallies.ours.clone(),
        )
    }

    /// Starts the three loads, each through its client on its own keys.
    pub(super) fn load(&self, mix: Mix) -> Load {
        let shards = self.topology.shards().len();
        let tallies = Peers {
            ours: Tally::new(self.started, shards),
            fred: Tally::new(self.started, shards),
            redis_rs: Tally::new(self.started, shards),
        };
        let Peers { ours, fred, redis_rs } = self.sides();
        let traffic = |side, keys: &Arc<Keys>, tally: &Arc<Tally>| {
            Traffic::start(side, keys.clone(), mix, self.rate, tally.clone())
        };
        Load {
            traffic: Peers {
                ours: traffic(ours, &self.keys.ours, &tallies.ours),
                fred: traffic(fred, &self.keys.fred, &tallies.fred),
                redis_rs: traffic(redis_rs, &self.keys.redis_rs, &tallies.redis_rs),
            },
            tallies,
        }
    }

    /// Keys of each load that read back as absent (or could not be read) now. The peers' keys are read
    /// through the cluster client under the cache, like they were filled: what counts is the data.
    pub(super) async fn missing_keys(&self) -> Peers<usize> {
        let ours = self
            .clients
            .cache
            .get_many::<String, _>(&self.keys.ours.names)
            .await
            .iter()
            .filter(|r| !matches!(r, Ok(Some(_))))
            .count();
        Peers {
            ours,
            fred: self.absent(&self.keys.fred).await,
            redis_rs: self.absent(&self.keys.redis_rs).await,
        }
    }

    /// `keys` that read back as absent (or could not be read) through the cluster client.
    async fn absent(&self, keys: &Keys) -> usize {
        self.clients
            .raw()
            .get_many(&keys.names)
            .await
            .iter()
            .filter(|r| !matches!(r, Ok(Some(_))))
            .count()
    }

    pub(super) async fn close(self) {
        self.clients.close().await;
    }
}

/// The three loads of a drill.
pub(super) struct Load {
    traffic: Peers<Traffic>,
    /// What each load records, readable while the loads run.
    pub(super) tallies: Tallies,
}

impl Load {
    /// Sets the mark (the fault) of every tally.
    pub(super) fn mark(&self, at: Instant) {
        for (_, tally) in self.tallies.named() {
            tally.mark(at);
        }
    }

    /// Starts phase `phase` in every load's latencies.
    pub(super) fn set_phase(&self, phase: usize) {
        for (_, tally) in self.tallies.named() {
            tally.set_phase(phase);
        }
    }

    /// Stops the three loads and returns their tallies.
    pub(super) async fn stop(self) -> Tallies {
        let Peers { ours, fred, redis_rs } = self.traffic;
        let (ours, fred, redis_rs) = tokio::join!(ours.stop(), fred.stop(), redis_rs.stop());
        Peers { ours, fred, redis_rs }
    }

    fn status(&self) -> String {
        self.tallies
            .named()
            .map(|(who, tally)| format!("{who} {} ok {} failed", tally.ok(), tally.failed()))
            .join(" | ")
    }

    /// Lets the loads run for `duration`, with a progress bar.
    pub(super) async fn hold(&self, label: &str, duration: Duration) {
        self.hold_sampling(label, duration, || {}).await;
    }

    /// [`Load::hold`], calling `sample` every 100 ms.
    pub(super) async fn hold_sampling(&self, label: &str, duration: Duration, mut sample: impl FnMut()) {
        let tenths = (duration.as_millis() / 100).max(1) as u64;
        let bar = crate::load::progress_bar(tenths, label);
        let until = Instant::now() + duration;
        loop {
            sample();
            let left = until.saturating_duration_since(Instant::now());
            bar.set_position(tenths - (left.as_millis() / 100) as u64);
            bar.set_message(self.status());
            if left.is_zero() {
                break;
            }
            tokio::time::sleep(left.min(Duration::from_millis(100))).await;
        }
        bar.finish_and_clear();
    }

    /// Lets the loads run until all three recovered from the mark (every shard served a call started
    /// after it, and no call failed for `quiet`), or `max` passed.
    pub(super) async fn until_recovered(&self, quiet: Duration, max: Duration) {
        let spinner = spinner("waiting for the three clients to recover");
        let until = Instant::now() + max;
        while Instant::now() < until {
            let now = Instant::now();
            if self
                .tallies
                .named()
                .iter()
                .all(|(_, tally)| tally.recovered(now, quiet))
            {
                break;
            }
            spinner.set_message(format!(
                "waiting for the three clients to recover: {}",
                self.status()
            ));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        spinner.finish_and_clear();
    }
}

/// A spinner for a wait without a known length.
pub(crate) fn spinner(message: &str) -> ProgressBar {
    let spinner = ProgressBar::new_spinner();
    spinner.set_style(
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("constant template is valid"),
    );
    spinner.set_message(message.to_string());
    spinner.enable_steady_tick(Duration::from_millis(100));
    spinner
}

/// The highest `cluster_current_epoch` any running node reports.
pub(super) async fn current_epoch(cluster: &LocalCluster) -> Result<u64> {
    let mut epoch = None;
    for node in cluster.nodes().iter().filter(|n| n.is_running()) {
        let info = node.cluster_info().await?;
        let mine = info
            .get_u64("cluster_current_epoch")
            .with_context(|| format!("{} reports no cluster_current_epoch", node.addr()))?;
        epoch = epoch.max(Some(mine));
    }
    epoch.context("no node is running")
}

/// Resident memory of this process, in bytes (0 where `/proc` is unavailable).
pub(super) fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Waits until `node` reports `role`, or `timeout` passes.
pub(super) async fn wait_for_role(node: &Node, role: local_cluster::Role, timeout: Duration) -> Result<()> {
    let until = Instant::now() + timeout;
    loop {
        match node.role().await {
            Ok(r) if r == role => return Ok(()),
            _ if Instant::now() >= until => {
                bail!("{} did not become {role:?} within {timeout:?}", node.addr())
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}
