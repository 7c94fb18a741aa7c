//! What every drill starts from: a fresh 3 + 3 cluster, both clients, filled keys, and the two loads;
//! plus the progress display and the few cluster facts drills read.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cache_facade::CacheConfig;
use cluster_client::Topology;
use indicatif::{ProgressBar, ProgressStyle};
use local_cluster::{LocalCluster, LocalClusterConfig, Node};

use super::traffic::{Burst, Clients, KEYS, Keys, Mix, Side, Tally, Traffic};

/// Keys filled per batch before a drill.
const FILL_BATCH: usize = 500;

/// A drill's cluster, clients and keys.
pub(super) struct Stage {
    pub(super) cluster: LocalCluster,
    pub(super) clients: Clients,
    /// The topology when the drill started; tallies count per shard of it.
    pub(super) topology: Arc<Topology>,
    /// Time zero of both loads' tallies.
    pub(super) started: Instant,
    ours_keys: Arc<Keys>,
    fred_keys: Arc<Keys>,
    rate: u32,
}

impl Stage {
    /// Starts a 3 + 3 cluster, connects both clients and fills every key of both loads, so that reads
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
        spinner.set_message("connecting the cache and fred's cluster client");
        let clients = Clients::connect(&cluster, settings).await?;
        let topology = clients.raw().topology();
        if topology.shards().len() != cluster.masters() {
            bail!(
                "the client sees {} shards, the cluster has {} primaries",
                topology.shards().len(),
                cluster.masters()
            );
        }
        let ours_keys = Keys::new("ours", KEYS, &topology)?;
        let fred_keys = Keys::new("fred", KEYS, &topology)?;
        spinner.set_message(format!("filling {} keys per client", KEYS));
        for (i, chunk) in ours_keys.names.chunks(FILL_BATCH).enumerate() {
            let entries: Vec<(&str, String, Option<Duration>)> = chunk
                .iter()
                .enumerate()
                .map(|(j, k)| (k.as_str(), format!("{}:fill", i * FILL_BATCH + j), None))
                .collect();
            for result in clients.cache.set_many(&entries).await {
                result.context("filling the cache's keys")?;
            }
        }
        // fred's keys are plain strings, written here through the cluster client: the data is what
        // matters, not which client put it there.
        for chunk in fred_keys.names.chunks(FILL_BATCH) {
            let entries: Vec<(&str, &str, Option<Duration>)> =
                chunk.iter().map(|k| (k.as_str(), "fill", None)).collect();
            for result in clients.raw().set_many(&entries).await {
                result.context("filling fred's keys")?;
            }
        }
        spinner.finish_and_clear();
        Ok(Stage {
            cluster,
            clients,
            topology,
            started: Instant::now(),
            ours_keys,
            fred_keys,
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

    /// Starts an open-loop burst of GETs through the cache, recorded in `load`'s tally of ours.
    pub(super) fn ours_burst(&self, load: &Load) -> Burst {
        let side = Side::Ours(self.clients.cache.clone());
        Burst::start(side, self.ours_keys.clone(), self.rate, load.tallies.0.clone())
    }

    /// Starts an open-loop burst of GETs through fred's cluster client, recorded in `load`'s tally of fred.
    pub(super) fn fred_burst(&self, load: &Load) -> Burst {
        let side = Side::Fred(self.clients.fred.clone());
        Burst::start(side, self.fred_keys.clone(), self.rate, load.tallies.1.clone())
    }

    /// Starts both loads.
    pub(super) fn load(&self, mix: Mix) -> Load {
        let shards = self.topology.shards().len();
        let ours = Tally::new(self.started, shards);
        let fred = Tally::new(self.started, shards);
        Load {
            ours: Traffic::start(
                Side::Ours(self.clients.cache.clone()),
                self.ours_keys.clone(),
                mix,
                self.rate,
                ours.clone(),
            ),
            fred: Traffic::start(
                Side::Fred(self.clients.fred.clone()),
                self.fred_keys.clone(),
                mix,
                self.rate,
                fred.clone(),
            ),
            tallies: (ours, fred),
        }
    }

    /// Keys of each load that read back as absent (or could not be read) now: (ours, fred).
    pub(super) async fn missing_keys(&self) -> (usize, usize) {
        let ours = self
            .clients
            .cache
            .get_many::<String, _>(&self.ours_keys.names)
            .await
            .iter()
            .filter(|r| !matches!(r, Ok(Some(_))))
            .count();
        let fred = self
            .clients
            .raw()
            .get_many(&self.fred_keys.names)
            .await
            .iter()
            .filter(|r| !matches!(r, Ok(Some(_))))
            .count();
        (ours, fred)
    }

    pub(super) async fn close(self) {
        self.clients.close().await;
    }
}

/// Both loads of a drill.
pub(super) struct Load {
    ours: Traffic,
    fred: Traffic,
    /// (ours, fred), readable while the loads run.
    pub(super) tallies: (Arc<Tally>, Arc<Tally>),
}

impl Load {
    /// Sets the mark (the fault) of both tallies.
    pub(super) fn mark(&self, at: Instant) {
        self.tallies.0.mark(at);
        self.tallies.1.mark(at);
    }

    /// Stops both loads: (ours, fred).
    pub(super) async fn stop(self) -> (Arc<Tally>, Arc<Tally>) {
        tokio::join!(self.ours.stop(), self.fred.stop())
    }

    fn status(&self) -> String {
        let (ours, fred) = &self.tallies;
        format!(
            "ours {} ok {} failed | fred {} ok {} failed",
            ours.ok(),
            ours.failed(),
            fred.ok(),
            fred.failed()
        )
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

    /// Lets the loads run until both recovered from the mark (every shard served a call started after
    /// it, and no call failed for `quiet`), or `max` passed.
    pub(super) async fn until_recovered(&self, quiet: Duration, max: Duration) {
        let spinner = spinner("waiting for both clients to recover");
        let until = Instant::now() + max;
        while Instant::now() < until {
            let now = Instant::now();
            if self.tallies.0.recovered(now, quiet) && self.tallies.1.recovered(now, quiet) {
                break;
            }
            spinner.set_message(format!("waiting for both clients to recover: {}", self.status()));
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
