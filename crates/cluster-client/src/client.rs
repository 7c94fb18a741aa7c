//! The client: [`ClusterClient`] and the state its clones share. Each job has its own room:
//! [`options`] (per-call options), [`connect`] (set-up and deployment detection), [`commands`] (the
//! typed commands), [`routing`] (the run loop, redirects and retries), [`failure`] (what a failed
//! attempt becomes as an [`Error`]), [`refresh`] (topology refresh and node states) and
//! [`replica_reads`] (lag sampling and read-your-writes) and [`resharding`] (online ring changes of
//! client-sharded deployments).

mod admin;
mod commands;
mod connect;
mod failure;
mod options;
mod refresh;
mod replica_reads;
mod resharding;
mod routing;
mod sentinel;
mod tracked;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use cluster_config::ClusterConfig;
use tokio::sync::{Notify, broadcast};

pub use self::admin::{Admin, MigrateReply};
pub use self::commands::Ttl;
pub(crate) use self::commands::{eval_source, is_noscript, to_bytes, to_i64};
pub(crate) use self::failure::{Failure, classify};
pub use self::options::{CallOptions, ReadFrom, SetCondition, SetOptions};
use self::replica_reads::ReplicaLag;
pub use self::resharding::{Reshard, ReshardMove};
use self::routing::Routing;
pub(crate) use self::routing::{Access, Routed};
use crate::Error;
use crate::durations;
use crate::events::ClientEvent;
pub(crate) use crate::lane::Cmd;
use crate::node::{NodeHandle, NodeStats};
use crate::recent::RecentWrites;
use crate::topology::{Deployment, Topology};

/// The state every clone of a [`ClusterClient`] shares: configuration, routing, connections, background
/// tasks and the replica-read bookkeeping.
pub(crate) struct Inner {
    config: ClusterConfig,
    seeds: Vec<String>,
    routing: ArcSwap<Routing>,
    nodes: Mutex<HashMap<String, Arc<NodeHandle>>>,
    refresh_wanted: Arc<Notify>,
    events: broadcast::Sender<ClientEvent>,
    closed: AtomicBool,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    replica_reads_since: Mutex<Option<Instant>>,
    replica_reads_on: AtomicBool,
    fresh_replicas: ArcSwap<HashSet<String>>,
    recent_writes: Mutex<RecentWrites>,
    lag: Mutex<ReplicaLag>,
    last_refresh: Mutex<Instant>,
    /// The ring change in progress in a client-sharded deployment, if any (see the `resharding` module).
    reshard: ArcSwapOption<resharding::ReshardState>,
    /// Sentinel mode's connections to the sentinels (see the `sentinel` module); `None` otherwise.
    sentinels: Option<Arc<sentinel::Sentinels>>,
    /// Key tracking for a near cache, once enabled (see the `tracked` module).
    tracking: std::sync::OnceLock<crate::tracking::Tracking>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in self
            .tasks
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default()
        {
            task.abort();
        }
        if tokio::runtime::Handle::try_current().is_ok()
            && let Ok(nodes) = self.nodes.lock()
        {
            for node in nodes.values() {
                node.close();
            }
        }
    }
}

/// A client for a Redis Cluster, one standalone Redis, standalone nodes sharded client-side, or a
/// Sentinel-managed primary and its replicas.
///
/// Cheap to clone; clones share connections and topology. See the crate documentation.
#[derive(Clone)]
pub struct ClusterClient {
    inner: Arc<Inner>,
    options: CallOptions,
}

impl std::fmt::Debug for ClusterClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterClient")
            .field("topology", &self.inner.routing.load().topology)
            .field("options", &self.options)
            .finish()
    }
}

impl ClusterClient {
    /// A handle with different per-call options, sharing this client's connections.
    pub fn with_options(&self, options: CallOptions) -> ClusterClient {
        ClusterClient {
            inner: self.inner.clone(),
            options,
        }
    }

    /// The options this handle's calls use.
    pub fn options(&self) -> &CallOptions {
        &self.options
    }

    /// The configuration the client was built from.
    pub fn config(&self) -> &ClusterConfig {
        &self.inner.config
    }

    /// The topology as the client sees it now.
    pub fn topology(&self) -> Arc<Topology> {
        self.inner.routing.load().topology.clone()
    }

    /// What the client is connected to: a cluster, one standalone server, or standalone servers
    /// sharded client-side.
    pub fn deployment(&self) -> Deployment {
        self.inner.routing.load().topology.deployment()
    }

    /// Events about topology changes, nodes going down and up, and failovers.
    pub fn subscribe(&self) -> broadcast::Receiver<ClientEvent> {
        self.inner.events.subscribe()
    }

    /// Counts per node since the client started, and latency percentiles over the current latency
    /// window (see [`ClusterClient::take_node_stats`]). Reading them leaves the window as it is.
    pub fn node_stats(&self) -> Vec<NodeStats> {
        self.collect_node_stats(false)
    }

    /// Like [`ClusterClient::node_stats`], and starts a new latency window: the next read's
    /// percentiles cover only the calls made after this one. A collector that polls every interval
    /// (the `health` crate) calls this, so that its percentiles are over the last interval rather
    /// than the client's whole life, and a spike moves them. With two such collectors on one client,
    /// each sees the calls since the other's last read.
    pub fn take_node_stats(&self) -> Vec<NodeStats> {
        self.collect_node_stats(true)
    }

    fn collect_node_stats(&self, restart_window: bool) -> Vec<NodeStats> {
        let nodes = self
            .inner
            .nodes
            .lock()
            .map(|n| n.values().cloned().collect::<Vec<_>>())
            .unwrap_or_default();
        let mut stats: Vec<NodeStats> = nodes.iter().map(|n| n.stats(restart_window)).collect();
        stats.sort_by(|a, b| a.node.cmp(&b.node));
        stats
    }

    /// Reloads the topology now (it is also refreshed periodically, on MOVED and on node errors).
    pub async fn refresh_topology(&self) -> Result<(), Error> {
        self.inner.refresh().await
    }

    /// Stops the background tasks and closes every connection.
    pub async fn close(&self) {
        self.inner.closed.store(true, Ordering::Relaxed);
        self.inner.refresh_wanted.notify_one();
        let tasks = self
            .inner
            .tasks
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default();
        for task in tasks {
            task.abort();
        }
        if let Some(sentinels) = &self.inner.sentinels {
            sentinels.close();
        }
        let nodes: Vec<Arc<NodeHandle>> = self
            .inner
            .nodes
            .lock()
            .map(|mut n| n.drain().map(|(_, h)| h).collect())
            .unwrap_or_default();
        for node in nodes {
            node.close();
        }
    }

    /// A call's deadline through this handle: its [`CallOptions::timeout`], else the configured
    /// command timeout; [`Error::InvalidDuration`] if the option is out of range.
    pub fn call_deadline(&self) -> Result<Duration, Error> {
        self.timeout()
    }

    /// The call's timeout: the handle's option (checked here, as `with_options` cannot fail), else the
    /// configured command timeout (which cluster-config checked against the same range).
    fn timeout(&self) -> Result<Duration, Error> {
        match self.options.timeout {
            Some(timeout) => durations::timeout("CallOptions::timeout", timeout),
            None => Ok(self.inner.config.timeouts().command),
        }
    }
}

impl Inner {
    fn push_task(&self, task: tokio::task::JoinHandle<()>) {
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.push(task);
        }
    }

    fn emit(&self, event: ClientEvent) {
        let _ = self.events.send(event);
    }

    /// The handle of a node named by MOVED/ASK, opened if new.
    fn node_handle(&self, addr: &str) -> Result<Arc<NodeHandle>, Error> {
        let mut nodes = self.nodes.lock().map_err(|_| Error::Closed)?;
        if let Some(node) = nodes.get(addr) {
            return Ok(node.clone());
        }
        let node = NodeHandle::open(addr, &self.config)?;
        nodes.insert(addr.to_string(), node.clone());
        Ok(node)
    }

    fn known_node(&self, addr: &str) -> Result<Arc<NodeHandle>, Error> {
        let nodes = self.nodes.lock().map_err(|_| Error::Closed)?;
        nodes.get(addr).cloned().ok_or_else(|| {
            let mut known: Vec<&String> = nodes.keys().collect();
            known.sort();
            Error::UnknownNode {
                node: addr.into(),
                known: known.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(","),
            }
        })
    }
}
