//! The health loop: collect, judge, export, every interval.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster_client::{ClientEvent, ClusterClient, NodeProber};
use cluster_config::ClusterConfig;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::alerts::{Alert, AlertEvent};
use crate::collector::{Collector, Prober};
use crate::config::HealthConfig;
use crate::error::Error;
use crate::export::record_metrics;
use crate::monitor::{Monitor, Observation};
use crate::rules::AlertKind;
use crate::snapshot::{ClientNodeStats, FailoverRecord, FailoverSource, Snapshot};
use crate::summary::HealthSummary;
use crate::trends::{TrendMetric, TrendRing, WindowStats};

/// Whether `observation` shows slots at risk, so that the next round should come sooner.
fn slots_at_risk(observation: &Observation) -> bool {
    observation.summary.active_alerts.iter().any(|a| {
        matches!(
            a.kind,
            AlertKind::NodeDown
                | AlertKind::SlotsUncovered
                | AlertKind::NodePfail
                | AlertKind::ClusterStateFail
        )
    })
}

/// Collects a snapshot from every node every interval, judges it, keeps alerts and trends, and updates
/// the Prometheus metrics. Cheap to clone: clones share one state.
///
/// Point it at bare node addresses through a [`ClusterConfig`] (cluster seeds, or standalone servers),
/// or at a [`ClusterClient`] with [`HealthChecker::for_client`] to add the client's own view (per-node
/// latency, errors, redirects, failovers it saw). Either way it polls the nodes through cluster-client's
/// node probes ([`ClusterClient::probe_node`], or a [`NodeProber`] for bare addresses), over probe
/// connections no call shares, so a node that hangs never delays the application's commands nor the
/// other nodes' polls.
#[derive(Debug, Clone)]
pub struct HealthChecker {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    collector: Collector,
    monitor: Mutex<Monitor>,
    /// One round at a time, so that snapshots reach the monitor in the order they were taken.
    round: tokio::sync::Mutex<()>,
    health: HealthConfig,
    client: Option<ClientLink>,
}

/// The attached client, and its events not yet folded into a snapshot.
#[derive(Debug)]
struct ClientLink {
    client: ClusterClient,
    events: Mutex<broadcast::Receiver<ClientEvent>>,
}

impl ClientLink {
    /// The failovers the client reported since the last call.
    fn drain_failovers(&self) -> Vec<FailoverRecord> {
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        let mut failovers = Vec::new();
        loop {
            match events.try_recv() {
                Ok(ClientEvent::FailoverObserved {
                    old_primary,
                    new_primary,
                    at,
                    ..
                }) => {
                    failovers.push(FailoverRecord {
                        at,
                        old_primary,
                        new_primary,
                        seen_by: FailoverSource::Client,
                    });
                }
                Ok(_) => {}
                // Missed events are also visible as a topology change between snapshots.
                Err(broadcast::error::TryRecvError::Lagged(_)) => {}
                Err(_) => break,
            }
        }
        failovers
    }

    /// Adds the client's statistics and failovers to `snapshot`.
    fn merge_into(&self, snapshot: &mut Snapshot) {
        snapshot.client_failovers = self.drain_failovers();
        // Taking the stats starts the client's next latency window, so each round's percentiles cover
        // the interval since the previous round, not the client's whole life.
        let stats = self.client.take_node_stats();
        for node in &mut snapshot.nodes {
            if let Some(s) = stats.iter().find(|s| s.node == node.addr) {
                node.client = Some(ClientNodeStats {
                    latency_p50: s.latency_p50,
                    latency_p99: s.latency_p99,
                    commands: s.commands,
                    errors: s.errors,
                    redirects: s.redirects,
                });
            }
        }
    }
}

impl HealthChecker {
    /// A checker for the nodes of `config`. Nothing is polled until [`HealthChecker::check_now`] or
    /// [`HealthChecker::spawn`].
    pub fn new(config: &ClusterConfig, health: HealthConfig) -> Result<HealthChecker, Error> {
        Self::build(config, health, None)
    }

    /// A checker for the nodes `client` was configured with, which also folds the client's own view
    /// into every snapshot, and whose background loop runs a round at once when the client sees a node
    /// go down or a failover (instead of waiting for the next interval).
    pub fn for_client(client: &ClusterClient, health: HealthConfig) -> Result<HealthChecker, Error> {
        let link = ClientLink {
            client: client.clone(),
            events: Mutex::new(client.subscribe()),
        };
        Self::build(client.config(), health, Some(link))
    }

    fn build(
        config: &ClusterConfig,
        health: HealthConfig,
        client: Option<ClientLink>,
    ) -> Result<HealthChecker, Error> {
        // `build` checked a configuration made by the builder; one made by `from_config` is checked
        // here (see `HealthConfig::validate`).
        health.validate()?;
        let monitor = Monitor::new(
            health.thresholds.clone(),
            TrendRing::for_retention(health.retention, health.interval),
        )?;
        let prober = match &client {
            Some(link) => Prober::Client(link.client.clone()),
            None => Prober::Nodes(Box::new(NodeProber::new(config))),
        };
        Ok(HealthChecker {
            inner: Arc::new(Inner {
                collector: Collector::new(config, health.node_timeout, prober),
                monitor: Mutex::new(monitor),
                round: tokio::sync::Mutex::new(()),
                health,
                client,
            }),
        })
    }

    fn monitor(&self) -> std::sync::MutexGuard<'_, Monitor> {
        // `observe` never panics halfway on valid data; a poisoned lock still holds a usable monitor.
        self.inner.monitor.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs one round now: polls every node, judges the snapshot, updates alerts, trends and metrics.
    pub async fn check_now(&self) -> Observation {
        let _round = self.inner.round.lock().await;
        let mut snapshot = self.inner.collector.collect().await;
        if let Some(link) = &self.inner.client {
            link.merge_into(&mut snapshot);
        }
        let observation = self.monitor().observe(snapshot);
        if self.inner.health.record_metrics {
            record_metrics(&observation);
        }
        for event in &observation.events {
            match event {
                AlertEvent::Fired(a) => {
                    tracing::warn!(alert = %a.kind, subject = %a.subject, "{}", a.message)
                }
                AlertEvent::Resolved(a) => tracing::info!(alert = %a.kind, subject = %a.subject, "resolved"),
            }
        }
        observation
    }

    /// Runs [`HealthChecker::check_now`] every interval (every `at_risk_interval` while slots are at
    /// risk) in a background task, the first round at once, until the returned handle is dropped or
    /// stopped. With a client attached, a node going down or a failover the client sees also starts a
    /// round at once (after waiting one node timeout, so that a burst of events makes one round).
    pub fn spawn(&self) -> HealthTask {
        let checker = self.clone();
        let mut client_events = self.inner.client.as_ref().map(|link| link.client.subscribe());
        let handle = tokio::spawn(async move {
            let health = &checker.inner.health;
            loop {
                let started = tokio::time::Instant::now();
                let observation = checker.check_now().await;
                let wait = if slots_at_risk(&observation) {
                    health.at_risk_interval
                } else {
                    health.interval
                };
                // Resolves with how long to wait before the early round.
                let early = async {
                    match client_events.as_mut() {
                        Some(events) => loop {
                            match events.recv().await {
                                // One dead node makes one event per failing connection: wait a node
                                // timeout so that the burst makes one round, and the round sees it.
                                Ok(ClientEvent::NodeDown { .. }) => break health.node_timeout,
                                // The client saw the new primary, so the nodes already agree.
                                Ok(ClientEvent::FailoverObserved { .. }) => break Duration::ZERO,
                                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                                Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
                            }
                        },
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    () = tokio::time::sleep_until(started + wait) => {}
                    delay = early => tokio::time::sleep(delay).await,
                }
            }
        });
        HealthTask { handle }
    }

    /// The last snapshot.
    pub fn latest(&self) -> Option<Arc<Snapshot>> {
        self.monitor().latest().cloned()
    }

    /// The summary of the last snapshot: status, nodes, slots, ops/s, latency, memory, replication and
    /// active alerts. `None` before the first round.
    pub fn cluster_health_summary(&self) -> Option<HealthSummary> {
        self.monitor().summary().cloned()
    }

    /// Active alerts.
    pub fn active_alerts(&self) -> Vec<Alert> {
        self.monitor().active_alerts()
    }

    /// Recently resolved alerts, oldest first.
    pub fn alert_history(&self) -> Vec<Alert> {
        self.monitor().alert_history()
    }

    /// A receiver of every later alert event (fired, resolved).
    pub fn subscribe(&self) -> broadcast::Receiver<AlertEvent> {
        self.monitor().subscribe()
    }

    /// Min, mean and max of `metric` over the last `window` (up to the retention).
    pub fn trend(&self, metric: TrendMetric, window: Duration) -> Option<WindowStats> {
        self.monitor().trend(metric, window)
    }

    /// Failovers seen within the failover hold time.
    pub fn failovers(&self) -> Vec<FailoverRecord> {
        self.monitor().failovers()
    }

    /// The health settings in force.
    pub fn config(&self) -> &HealthConfig {
        &self.inner.health
    }

    /// Closes the checker's connections to the nodes (the next round opens new ones).
    pub fn close(&self) {
        self.inner.collector.close();
    }
}

/// The background loop started by [`HealthChecker::spawn`]; dropping it stops the loop.
#[derive(Debug)]
pub struct HealthTask {
    handle: JoinHandle<()>,
}

impl HealthTask {
    /// Stops the loop (a round in progress is abandoned).
    pub fn stop(self) {
        self.handle.abort();
    }
}

impl Drop for HealthTask {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unreachable_nodes_make_a_down_snapshot_within_the_timeout() {
        // Port 1 on loopback refuses at once; nothing listens there.
        let config = ClusterConfig::builder()
            .nodes(["127.0.0.1:1", "127.0.0.1:2"])
            .build()
            .expect("valid config");
        let health = HealthConfig::builder()
            .record_metrics(false)
            .build()
            .expect("valid settings");
        let checker = HealthChecker::new(&config, health).expect("valid settings");
        let started = std::time::Instant::now();
        let observation = checker.check_now().await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "took {:?}",
            started.elapsed()
        );
        let summary = checker.cluster_health_summary().expect("a summary after a round");
        assert_eq!(summary.status, crate::summary::HealthStatus::Down);
        assert_eq!((summary.nodes_connected, summary.nodes_total), (0, 2));
        assert_eq!(observation.events.len(), 2, "{:?}", observation.events);
        assert!(observation.snapshot.nodes.iter().all(|n| n.error.is_some()));
    }
}
