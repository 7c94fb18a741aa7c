//! The health loop: collect, judge, export, every interval.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster_client::{ClientEvent, ClusterClient, NodeProber};
use cluster_config::ClusterConfig;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::alerts::{Alert, AlertEvent};
use crate::collector::{Collector, Prober};
use crate::error::Error;
use crate::export::record_metrics;
use crate::monitor::{Monitor, Observation};
use crate::rules::{AlertKind, Thresholds};
use crate::snapshot::{ClientNodeStats, FailoverRecord, FailoverSource, Snapshot};
use crate::summary::HealthSummary;
use crate::trends::{TREND_RETENTION, TrendMetric, TrendRing, WindowStats};

/// The shortest interval between rounds: each polls every node (PING, INFO, CLUSTER INFO/NODES), and
/// `REDIS_HEALTH_INTERVAL_MS` has the same minimum.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// The longest interval between rounds: `u32::MAX` milliseconds (about 49.7 days), the bound of every
/// duration setting (a longer one would overflow the loop's deadline arithmetic).
pub const MAX_INTERVAL: Duration = Duration::from_millis(u32::MAX as u64);

/// How the health loop runs. Start from [`HealthOptions::from_config`] (or `default()`) and change
/// fields; [`HealthChecker::new`] validates them.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct HealthOptions {
    /// Time between collection rounds. Default 30 s (`REDIS_HEALTH_INTERVAL_MS`).
    pub interval: Duration,
    /// Time between rounds while slots are at risk: a node that serves slots is down, some slots are
    /// not served, a node is flagged PFAIL, or a node reports `cluster_state:fail`. A failover and the
    /// recovery then show within about this time instead of at the next regular round. Default 1 s;
    /// equal to `interval` turns it off.
    pub at_risk_interval: Duration,
    /// How long one node may take to answer a whole round (connect, PING, INFO, CLUSTER INFO/NODES)
    /// before it counts as down. Must be shorter than the interval. Default 1 s.
    pub node_timeout: Duration,
    /// The anomaly rules' bounds.
    pub thresholds: Thresholds,
    /// How much history the trend ring keeps. Default 24 h (2,880 rounds at 30 s). The ring keeps
    /// at most [`TREND_MAX_SAMPLES`](crate::TREND_MAX_SAMPLES) rounds (its byte budget), so a short
    /// interval keeps less than this, with a warning.
    pub retention: Duration,
    /// Whether each round updates the `metrics` recorder (`REDIS_CLUSTER_METRICS`). Default on.
    pub record_metrics: bool,
}

impl Default for HealthOptions {
    fn default() -> Self {
        HealthOptions {
            interval: Duration::from_secs(30),
            at_risk_interval: Duration::from_secs(1),
            node_timeout: Duration::from_secs(1),
            thresholds: Thresholds::default(),
            retention: TREND_RETENTION,
            record_metrics: true,
        }
    }
}

impl HealthOptions {
    /// The options a configuration asks for: its health interval and metrics switch, and a node timeout
    /// of the configured command timeout capped at 1 s and at half the interval.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cluster_config::ClusterConfig;
    ///
    /// let config = ClusterConfig::builder().nodes(["10.0.0.1:7000"]).health_interval(Duration::from_secs(10)).build()?;
    /// let options = health::HealthOptions::from_config(&config);
    /// assert_eq!(options.interval, Duration::from_secs(10));
    /// assert!(options.node_timeout <= Duration::from_secs(1));
    /// # Ok::<(), cluster_config::Error>(())
    /// ```
    pub fn from_config(config: &ClusterConfig) -> HealthOptions {
        HealthOptions {
            interval: config.health_interval(),
            at_risk_interval: config.health_interval().min(Duration::from_secs(1)),
            // Below the interval, so that a round always ends before the next one is due.
            node_timeout: config
                .timeouts()
                .command
                .min(Duration::from_secs(1))
                .min(config.health_interval() / 2),
            record_metrics: config.metrics().enabled,
            ..HealthOptions::default()
        }
    }

    fn validate(&self) -> Result<(), Error> {
        if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&self.interval) {
            return Err(Error::Invalid {
                name: "interval",
                problem: format!(
                    "{:?} is out of range; use {MIN_INTERVAL:?} to {MAX_INTERVAL:?} (REDIS_HEALTH_INTERVAL_MS): \
                     each round polls every node",
                    self.interval
                ),
            });
        }
        if self.node_timeout.is_zero() || self.node_timeout >= self.interval {
            return Err(Error::Invalid {
                name: "node_timeout",
                problem: format!(
                    "{:?} must be above zero and below the interval ({:?}), so that a round ends before the next",
                    self.node_timeout, self.interval
                ),
            });
        }
        if self.at_risk_interval.is_zero() || self.at_risk_interval > self.interval {
            return Err(Error::Invalid {
                name: "at_risk_interval",
                problem: format!(
                    "{:?} must be above zero and at most the interval ({:?})",
                    self.at_risk_interval, self.interval
                ),
            });
        }
        self.thresholds.validate()
    }
}

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
    options: HealthOptions,
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
        let stats = self.client.node_stats();
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
    pub fn new(config: &ClusterConfig, options: HealthOptions) -> Result<HealthChecker, Error> {
        Self::build(config, options, None)
    }

    /// A checker for the nodes `client` was configured with, which also folds the client's own view
    /// into every snapshot, and whose background loop runs a round at once when the client sees a node
    /// go down or a failover (instead of waiting for the next interval).
    pub fn for_client(client: &ClusterClient, options: HealthOptions) -> Result<HealthChecker, Error> {
        let link = ClientLink {
            client: client.clone(),
            events: Mutex::new(client.subscribe()),
        };
        Self::build(client.config(), options, Some(link))
    }

    fn build(
        config: &ClusterConfig,
        options: HealthOptions,
        client: Option<ClientLink>,
    ) -> Result<HealthChecker, Error> {
        options.validate()?;
        let monitor = Monitor::new(
            options.thresholds.clone(),
            TrendRing::for_retention(options.retention, options.interval),
        )?;
        let prober = match &client {
            Some(link) => Prober::Client(link.client.clone()),
            None => Prober::Nodes(Box::new(NodeProber::new(config))),
        };
        Ok(HealthChecker {
            inner: Arc::new(Inner {
                collector: Collector::new(config, options.node_timeout, prober),
                monitor: Mutex::new(monitor),
                round: tokio::sync::Mutex::new(()),
                options,
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
        if self.inner.options.record_metrics {
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
            let options = &checker.inner.options;
            loop {
                let started = tokio::time::Instant::now();
                let observation = checker.check_now().await;
                let wait = if slots_at_risk(&observation) {
                    options.at_risk_interval
                } else {
                    options.interval
                };
                // Resolves with how long to wait before the early round.
                let early = async {
                    match client_events.as_mut() {
                        Some(events) => loop {
                            match events.recv().await {
                                // One dead node makes one event per failing connection: wait a node
                                // timeout so that the burst makes one round, and the round sees it.
                                Ok(ClientEvent::NodeDown { .. }) => break options.node_timeout,
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

    /// The options in force.
    pub fn options(&self) -> &HealthOptions {
        &self.inner.options
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

    fn check(change: impl FnOnce(&mut HealthOptions), field: Option<&str>) {
        let config = ClusterConfig::builder()
            .nodes(["127.0.0.1:1"])
            .build()
            .expect("valid config");
        let mut options = HealthOptions::default();
        change(&mut options);
        match (HealthChecker::new(&config, options), field) {
            (Ok(_), None) => {}
            (Err(e), Some(field)) => assert!(e.to_string().contains(field), "{e}"),
            (Ok(_), Some(field)) => panic!("expected an error naming {field}"),
            (Err(e), None) => panic!("unexpected error {e}"),
        }
    }

    #[test]
    fn options_are_validated() {
        check(|_| {}, None);
        check(|o| o.node_timeout = Duration::ZERO, Some("node_timeout"));
        check(|o| o.node_timeout = o.interval, Some("node_timeout"));
        check(
            |o| o.thresholds.memory_used_max_ratio = 2.0,
            Some("memory_used_max_ratio"),
        );
        check(|o| o.interval = Duration::from_millis(200), Some("node_timeout"));
        check(|o| o.at_risk_interval = Duration::ZERO, Some("at_risk_interval"));
        check(
            |o| {
                o.interval = Duration::from_millis(1);
                o.at_risk_interval = Duration::from_millis(1);
                o.node_timeout = Duration::from_nanos(1);
            },
            Some("interval"),
        );
        check(|o| o.interval = Duration::MAX, Some("interval"));
        check(
            |o| o.at_risk_interval = o.interval + Duration::from_millis(1),
            Some("at_risk_interval"),
        );
        check(
            |o| {
                o.interval = Duration::from_millis(200);
                o.at_risk_interval = Duration::from_millis(200);
                o.node_timeout = Duration::from_millis(100);
            },
            None,
        );
    }

    #[test]
    fn options_from_a_config_are_always_valid() {
        for interval_ms in [100, 500, 1_000, 1_999, 30_000, 86_400_000, u64::from(u32::MAX)] {
            let config = ClusterConfig::builder()
                .nodes(["127.0.0.1:1"])
                .health_interval(Duration::from_millis(interval_ms))
                .build()
                .expect("valid config");
            let options = HealthOptions::from_config(&config);
            assert_eq!(options.interval, Duration::from_millis(interval_ms));
            if let Err(e) = HealthChecker::new(&config, options) {
                panic!("interval {interval_ms} ms: {e}");
            }
        }
    }

    #[tokio::test]
    async fn unreachable_nodes_make_a_down_snapshot_within_the_timeout() {
        // Port 1 on loopback refuses at once; nothing listens there.
        let config = ClusterConfig::builder()
            .nodes(["127.0.0.1:1", "127.0.0.1:2"])
            .build()
            .expect("valid config");
        let options = HealthOptions {
            record_metrics: false,
            ..HealthOptions::default()
        };
        let checker = HealthChecker::new(&config, options).expect("valid options");
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
