//! Topology refresh: the background loop, loading the topology from a node, installing it (connections
//! opened and closed, failovers diffed and reported), and the node up/down states and their events.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use fred::prelude::*;
use replies::ShardView;
use sharding::SlotRange;
use tokio::sync::Notify;
use tracing::Instrument;

use super::routing::{Routing, raw};
use super::sentinel::confirm_primary;
use super::{Cmd, Inner};
use crate::Error;
use crate::events::ClientEvent;
use crate::node::NodeHandle;
use crate::topology::{Deployment, Topology, parse_cluster_shards, parse_cluster_slots};

/// How often the topology is polled while a shard has no reachable primary.
const DEGRADED_REFRESH: Duration = Duration::from_millis(100);
/// The shortest gap between two topology refreshes, so a burst of MOVED replies causes one refresh.
const MIN_REFRESH_GAP: Duration = Duration::from_millis(20);
/// A node with a connection error or timeout this recent is asked for the topology after the others.
const RECENT_FAILURE: Duration = Duration::from_secs(5);

impl Inner {
    pub(super) fn node_failed(&self, node: &NodeHandle) {
        // A node that never connected was never up, so it cannot go down (see `NodeHandle::lane`).
        if node.has_connected() && node.set_up(false) {
            self.emit(ClientEvent::NodeDown {
                node: node.addr.clone(),
                at: SystemTime::now(),
            });
        }
        self.refresh_wanted.notify_one();
    }

    /// Makes `topology` current: opens connections for new nodes, closes those for removed ones, and
    /// reports what changed.
    pub(super) fn install(&self, topology: Topology) -> Result<(), Error> {
        let old = self.routing.load().topology.clone();
        let mut nodes = self.nodes.lock().map_err(|_| Error::Closed)?;
        let mut handle = |addr: &str| -> Result<Arc<NodeHandle>, Error> {
            if let Some(h) = nodes.get(addr) {
                return Ok(h.clone());
            }
            let h = NodeHandle::open(addr, &self.config)?;
            nodes.insert(addr.to_string(), h.clone());
            Ok(h)
        };
        let mut primaries = Vec::with_capacity(topology.shards().len());
        let mut replicas = Vec::with_capacity(topology.shards().len());
        for shard in topology.shards() {
            primaries.push(handle(&shard.primary)?);
            replicas.push(
                shard
                    .replicas
                    .iter()
                    .map(|r| handle(r))
                    .collect::<Result<Vec<_>, _>>()?,
            );
        }
        let wanted: HashSet<&str> = topology
            .nodes()
            .chain(self.seeds.iter().map(String::as_str))
            .collect();
        let removed: Vec<String> = nodes
            .keys()
            .filter(|k| !wanted.contains(k.as_str()))
            .cloned()
            .collect();
        for addr in removed {
            if let Some(h) = nodes.remove(&addr) {
                h.close();
            }
        }
        drop(nodes);
        let changed = old.owners() != topology.owners() || old.shards() != topology.shards();
        let failovers = failovers(&old, &topology);
        // A replaced primary may still acknowledge writes that were in flight when it stopped answering
        // (it executes them when it resumes, before it learns of the failover); those writes are lost
        // when it rejoins as a replica, so `run` must not report them as done.
        for handle in &self.routing.load().primaries {
            if failovers
                .iter()
                .any(|(old_primary, _, _)| *old_primary == handle.addr)
            {
                handle.set_replaced(true);
                // Its tracking connection must not vouch for anything again (see `tracking`).
                handle.tracking().reset();
            }
        }
        for handle in &primaries {
            handle.set_replaced(false);
        }
        self.routing.store(Arc::new(Routing {
            topology: Arc::new(topology),
            primaries,
            replicas,
        }));
        if changed && !old.shards().is_empty() {
            let at = SystemTime::now();
            self.emit(ClientEvent::TopologyChanged { at });
            for (old_primary, new_primary, slots) in failovers {
                tracing::info!(%old_primary, %new_primary, "failover observed");
                self.emit(ClientEvent::FailoverObserved {
                    old_primary,
                    new_primary,
                    slots,
                    at,
                });
            }
        }
        Ok(())
    }

    /// Reads the cluster's topology from the first node that answers and installs it, in an
    /// `rcc.refresh` span (debug level) that records the node that answered; in sentinel mode, asks the
    /// sentinels instead.
    pub(super) async fn refresh(&self) -> Result<(), Error> {
        match self.routing.load().topology.deployment() {
            Deployment::Cluster => {}
            Deployment::Sentinel => return self.refresh_from_sentinels().await,
            _ => return Ok(()),
        }
        let span = tracing::debug_span!("rcc.refresh", from = tracing::field::Empty);
        self.refresh_cluster(&span).instrument(span.clone()).await
    }

    async fn refresh_cluster(&self, span: &tracing::Span) -> Result<(), Error> {
        if let Ok(mut last) = self.last_refresh.lock() {
            *last = Instant::now();
        }
        // Connected primaries first (they know the slots best), then replicas, then seeds.
        let routing = self.routing.load();
        let mut candidates: Vec<Arc<NodeHandle>> = routing
            .primaries
            .iter()
            .filter(|n| n.is_connected())
            .cloned()
            .collect();
        candidates.extend(
            routing
                .replicas
                .iter()
                .flatten()
                .filter(|n| n.is_connected())
                .cloned(),
        );
        for seed in &self.seeds {
            if let Ok(h) = self.node_handle(seed)
                && h.is_connected()
            {
                candidates.push(h);
            }
        }
        drop(routing);
        // A node that just timed out (a SIGSTOPped primary still looks connected) is asked last: it
        // would cost the whole discovery timeout before anyone else is asked.
        candidates.sort_by_key(|node| node.failed_within(RECENT_FAILURE));
        let timeout = self.config.timeouts().command.min(Duration::from_millis(500));
        let mut last = String::from("no connected node to ask");
        for node in candidates {
            match discover(&node, timeout).await {
                Ok(topology) => {
                    span.record("from", node.addr.as_str());
                    self.install(topology)?;
                    self.update_node_states();
                    return Ok(());
                }
                Err(e) => last = e.to_string(),
            }
        }
        self.update_node_states();
        Err(Error::NoSeedReachable {
            tried: self.seeds.join(","),
            last,
        })
    }

    /// Sentinel mode's refresh: the primary and replicas the sentinels name now. A new primary is
    /// installed only once it answers `ROLE` as a master, so writes never go to a node the sentinels
    /// are still promoting; the old primary is then marked replaced by [`Inner::install`], which turns
    /// a write it acknowledges into [`Error::WriteUncertain`].
    async fn refresh_from_sentinels(&self) -> Result<(), Error> {
        let Some(sentinels) = &self.sentinels else {
            return Ok(());
        };
        if let Ok(mut last) = self.last_refresh.lock() {
            *last = Instant::now();
        }
        let timeout = self.config.timeouts().command.min(Duration::from_millis(500));
        let view = sentinels.ask(timeout).await?;
        let current = self.routing.load().topology.clone();
        let unchanged = current
            .shards()
            .first()
            .is_some_and(|shard| shard.primary == view.primary && shard.replicas == view.replicas);
        if unchanged {
            self.update_node_states();
            return Ok(());
        }
        let primary_changed = current
            .shards()
            .first()
            .is_none_or(|shard| shard.primary != view.primary);
        if primary_changed {
            let primary = self.node_handle(&view.primary)?;
            if !primary.wait_connected(timeout).await {
                return Err(Error::Connection {
                    node: view.primary.clone(),
                    command: "connect".into(),
                    message: format!("the primary the sentinels named did not connect within {timeout:?}"),
                });
            }
            confirm_primary(&primary, sentinels.master(), timeout).await?;
        }
        self.install(Topology::sentinel(view.primary, view.replicas))?;
        self.update_node_states();
        Ok(())
    }

    /// Emits NodeDown/NodeUp for connection state changes seen since the last check.
    fn update_node_states(&self) {
        let nodes: Vec<Arc<NodeHandle>> = self
            .nodes
            .lock()
            .map(|n| n.values().cloned().collect())
            .unwrap_or_default();
        for node in nodes {
            // A node is up while any routed connection is (calls take that one); a node still opening
            // its first connection is new, not down.
            let connected = node.is_routable();
            if !connected && !node.has_connected() {
                continue;
            }
            if node.set_up(connected) {
                let at = SystemTime::now();
                let node = node.addr.clone();
                self.emit(if connected {
                    ClientEvent::NodeUp { node, at }
                } else {
                    ClientEvent::NodeDown { node, at }
                });
            }
        }
    }

    /// Whether the routing needs the fast refresh: a shard without a connected primary, or gaps.
    fn degraded(&self) -> bool {
        let routing = self.routing.load();
        routing.topology.unassigned_slots() > 0 || routing.primaries.iter().any(|p| !p.is_routable())
    }
}

/// `(old primary, new primary, slot ranges)`.
type Failover = (String, String, Vec<SlotRange>);

/// Pairs of (old primary, new primary, slots) where slots moved to a node that was a replica of the old
/// primary: a failover, as opposed to a migration. The diff is [`replies::failovers`], the workspace's
/// one definition of a failover, over the two topologies' shards named by address.
fn failovers(old: &Topology, new: &Topology) -> Vec<Failover> {
    // Borrowed addresses: only the few failovers found are copied out.
    fn view(topology: &Topology) -> Vec<ShardView<&str>> {
        topology
            .shards()
            .iter()
            .map(|shard| ShardView {
                primary: shard.primary.as_str(),
                replicas: shard.replicas.iter().map(String::as_str).collect(),
                slots: shard.slots.clone(),
            })
            .collect()
    }
    replies::failovers(&view(old), &view(new))
        .into_iter()
        .map(|f| (f.old_primary.to_owned(), f.new_primary.to_owned(), f.slots))
        .collect()
}

pub(super) async fn refresh_loop(inner: Weak<Inner>, wanted: Arc<Notify>) {
    loop {
        // Wake at least every DEGRADED_REFRESH: checking whether every primary's connection is up costs
        // nothing, and it is how a primary that died while the client was idle gets noticed (no call
        // failed to tell us) before the next periodic refresh, seconds later.
        let notified = tokio::select! {
            _ = wanted.notified() => true,
            _ = tokio::time::sleep(DEGRADED_REFRESH) => false,
        };
        let Some(inner) = inner.upgrade() else { return };
        if inner.closed.load(Ordering::Relaxed) {
            return;
        }
        let since = inner.last_refresh.lock().map(|t| t.elapsed()).unwrap_or_default();
        let due = notified || inner.degraded() || since >= inner.config.topology_refresh_interval();
        if !due {
            continue;
        }
        if since < MIN_REFRESH_GAP {
            tokio::time::sleep(MIN_REFRESH_GAP - since).await;
        }
        if let Err(error) = inner.refresh().await {
            tracing::debug!(%error, "topology refresh failed");
        }
    }
}

/// Loads the cluster topology from one node: `CLUSTER SHARDS`, or `CLUSTER SLOTS` before Redis 7.
pub(super) async fn discover(node: &NodeHandle, timeout: Duration) -> Result<Topology, Error> {
    let host = node.host();
    let bad = |command: &str, detail: String| Error::Reply {
        node: node.addr.clone(),
        command: command.into(),
        detail,
    };
    let shards = match raw::<Value>(node, Cmd::custom("CLUSTER", vec!["SHARDS".into()]), timeout).await {
        Ok(reply) => parse_cluster_shards(&reply, host, node.tls).map_err(|d| bad("CLUSTER SHARDS", d))?,
        Err(Error::Server { .. }) => {
            let reply = raw::<Value>(node, Cmd::custom("CLUSTER", vec!["SLOTS".into()]), timeout).await?;
            parse_cluster_slots(&reply, host).map_err(|d| bad("CLUSTER SLOTS", d))?
        }
        Err(e) => return Err(e),
    };
    Topology::cluster(shards).map_err(|e| bad("CLUSTER SHARDS", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::ShardInfo;

    #[test]
    fn failover_versus_migration() {
        let shard = |primary: &str, replicas: &[&str], slots: Vec<(u16, u16)>| ShardInfo {
            primary: primary.into(),
            replicas: replicas.iter().map(|s| s.to_string()).collect(),
            slots: slots
                .into_iter()
                .map(|(start, end)| SlotRange::new(start, end).unwrap())
                .collect(),
        };
        let old = Topology::cluster(vec![
            shard("a:1", &["b:1"], vec![(0, 8191)]),
            shard("c:1", &["d:1"], vec![(8192, 16383)]),
        ])
        .unwrap();
        let failed_over = Topology::cluster(vec![
            shard("b:1", &[], vec![(0, 8191)]),
            shard("c:1", &["d:1"], vec![(8192, 16383)]),
        ])
        .unwrap();
        assert_eq!(
            failovers(&old, &failed_over),
            vec![("a:1".into(), "b:1".into(), vec![SlotRange::new(0, 8191).unwrap()])]
        );
        let migrated = Topology::cluster(vec![
            shard("a:1", &["b:1"], vec![(0, 8000)]),
            shard("c:1", &["d:1"], vec![(8001, 16383)]),
        ])
        .unwrap();
        assert!(failovers(&old, &migrated).is_empty());
    }
}
