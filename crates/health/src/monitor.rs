//! The pure core of the health loop: feed it snapshots, it judges them and keeps alerts and trends.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;

use crate::alerts::{Alert, AlertEvent, AlertManager};
use crate::distribution::{DimensionReport, primary_distribution};
use crate::error::Error;
use crate::rules::{LatencyBaseline, RuleInput, Thresholds, detect_failovers, evaluate};
use crate::snapshot::{FailoverRecord, Snapshot};
use crate::summary::{HealthSummary, cluster_health_summary};
use crate::trends::{TrendMetric, TrendRing, TrendSample, WindowStats};

/// Failovers remembered at most (older ones beyond the hold time are dropped anyway).
const FAILOVERS_KEPT: usize = 64;

/// What one [`Monitor::observe`] produced.
#[derive(Debug, Clone)]
pub struct Observation {
    /// The snapshot judged.
    pub snapshot: Arc<Snapshot>,
    /// The snapshot before it.
    pub previous: Option<Arc<Snapshot>>,
    /// Its summary, with the alerts active after judging it.
    pub summary: HealthSummary,
    /// Alerts that fired or resolved.
    pub events: Vec<AlertEvent>,
    /// Failovers first seen in this round.
    pub new_failovers: Vec<FailoverRecord>,
    /// Bytes the trend ring's samples take after this round (within
    /// [`TREND_BUDGET_BYTES`](crate::TREND_BUDGET_BYTES)).
    pub trend_bytes: usize,
    /// How slots, keys and memory spread over the primaries this round (the dimensions that could be
    /// judged, see [`primary_distribution`](crate::primary_distribution)), against the thresholds'
    /// distribution bounds (`sharding`'s defaults when the rule is off).
    pub distribution: Vec<DimensionReport>,
}

/// Judges a stream of snapshots: runs the anomaly rules against the previous snapshot and a rolling
/// latency baseline, keeps alerts (fire, dedup, resolve) and the 24-hour trend ring.
///
/// It does no I/O and reads no clock (time comes from the snapshots), so any snapshot source works:
/// [`HealthChecker`](crate::HealthChecker) feeds it from real nodes, tests feed it synthetic ones.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use health::{AlertKind, HealthStatus, Monitor, NodeSnapshot, Snapshot, Thresholds, TrendRing};
///
/// let mut monitor = Monitor::new(Thresholds::default(), TrendRing::new(2_880))?;
/// let node = |reachable| NodeSnapshot { addr: "10.0.0.1:6379".into(), reachable, ..Default::default() };
/// let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
///
/// monitor.observe(Snapshot { taken_at: t0, nodes: vec![node(true)], ..Default::default() });
/// let down = monitor.observe(Snapshot { taken_at: t0 + Duration::from_secs(30), nodes: vec![node(false)], ..Default::default() });
/// assert_eq!(down.summary.status, HealthStatus::Down);
/// assert_eq!(down.events[0].alert().kind, AlertKind::NodeDown);
/// # Ok::<(), health::Error>(())
/// ```
#[derive(Debug)]
pub struct Monitor {
    thresholds: Thresholds,
    previous: Option<Arc<Snapshot>>,
    last_fresh_topology: Option<Arc<Snapshot>>,
    baseline: LatencyBaseline,
    failovers: VecDeque<FailoverRecord>,
    alerts: AlertManager,
    trends: TrendRing,
    summary: Option<HealthSummary>,
}

impl Monitor {
    /// A monitor judging by `thresholds` (validated here) and keeping trends in `trends`.
    pub fn new(thresholds: Thresholds, trends: TrendRing) -> Result<Monitor, Error> {
        thresholds.validate()?;
        Ok(Monitor {
            baseline: LatencyBaseline::for_thresholds(&thresholds),
            thresholds,
            previous: None,
            last_fresh_topology: None,
            failovers: VecDeque::new(),
            alerts: AlertManager::new(),
            trends,
            summary: None,
        })
    }

    /// Judges `snapshot`: records failovers, runs every rule, updates alerts, the latency baseline and
    /// the trends.
    pub fn observe(&mut self, snapshot: Snapshot) -> Observation {
        let new_failovers = self.record_failovers(&snapshot);
        let findings = evaluate(
            &RuleInput {
                current: &snapshot,
                previous: self.previous.as_deref(),
                baseline: &self.baseline,
                failovers: self.failovers.make_contiguous(),
            },
            &self.thresholds,
        );
        let events = self.alerts.update(findings, snapshot.taken_at);
        // The baseline learns from this round only after judging it, so a spike is compared with what
        // came before it.
        self.baseline.observe(&snapshot);
        let summary = cluster_health_summary(&snapshot, &self.alerts.active());
        self.trends.push(TrendSample::of(&snapshot, &summary));
        let snapshot = Arc::new(snapshot);
        if snapshot.topology_from.is_some() {
            self.last_fresh_topology = Some(Arc::clone(&snapshot));
        }
        let distribution = primary_distribution(
            &snapshot,
            &self.thresholds.distribution.unwrap_or_default(),
            self.thresholds.distribution_min_keys,
        );
        let previous = self.previous.replace(Arc::clone(&snapshot));
        self.summary = Some(summary.clone());
        Observation {
            snapshot,
            previous,
            summary,
            events,
            new_failovers,
            trend_bytes: self.trends.heap_bytes(),
            distribution,
        }
    }

    /// Adds the failovers visible in `snapshot` (topology change or client report) that are not known
    /// yet, and forgets those past the hold time.
    fn record_failovers(&mut self, snapshot: &Snapshot) -> Vec<FailoverRecord> {
        let hold = self.thresholds.failover_hold;
        let seen_from_topology = self
            .last_fresh_topology
            .as_deref()
            .map(|previous| detect_failovers(previous, snapshot))
            .unwrap_or_default();
        let mut new = Vec::new();
        for record in seen_from_topology
            .into_iter()
            .chain(snapshot.client_failovers.iter().cloned())
        {
            // The client and the topology usually both see a failover; within the hold time, the same
            // pair of primaries is one failover.
            let known = self.failovers.iter().chain(&new).any(|f: &FailoverRecord| {
                f.old_primary == record.old_primary
                    && f.new_primary == record.new_primary
                    && abs_diff(f.at, record.at) <= hold
            });
            if !known {
                new.push(record);
            }
        }
        self.failovers.extend(new.iter().cloned());
        let now = snapshot.taken_at;
        self.failovers
            .retain(|f| now.duration_since(f.at).map_or(true, |age| age <= hold));
        while self.failovers.len() > FAILOVERS_KEPT {
            self.failovers.pop_front();
        }
        new
    }

    /// The last snapshot observed.
    pub fn latest(&self) -> Option<&Arc<Snapshot>> {
        self.previous.as_ref()
    }

    /// The summary of the last snapshot.
    pub fn summary(&self) -> Option<&HealthSummary> {
        self.summary.as_ref()
    }

    /// Active alerts.
    pub fn active_alerts(&self) -> Vec<Alert> {
        self.alerts.active()
    }

    /// Recently resolved alerts, oldest first.
    pub fn alert_history(&self) -> Vec<Alert> {
        self.alerts.history()
    }

    /// A receiver of every later alert event.
    pub fn subscribe(&self) -> broadcast::Receiver<AlertEvent> {
        self.alerts.subscribe()
    }

    /// Failovers within the hold time, oldest first.
    pub fn failovers(&self) -> Vec<FailoverRecord> {
        self.failovers.iter().cloned().collect()
    }

    /// The trend ring.
    pub fn trends(&self) -> &TrendRing {
        &self.trends
    }

    /// Min, mean and max of `metric` over the last `window`.
    pub fn trend(&self, metric: TrendMetric, window: Duration) -> Option<WindowStats> {
        self.trends.window(metric, window)
    }

    /// The thresholds in force.
    pub fn thresholds(&self) -> &Thresholds {
        &self.thresholds
    }
}

fn abs_diff(a: std::time::SystemTime, b: std::time::SystemTime) -> Duration {
    a.duration_since(b)
        .or_else(|_| b.duration_since(a))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::rules::AlertKind;
    use crate::snapshot::{FailoverSource, NodeSnapshot, Role, TopologyNode};
    use crate::summary::HealthStatus;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    /// Primary `a` (all slots) with replica `b`, or after a failover `b` primary and `a` down.
    fn round(secs: u64, failed_over: bool) -> Snapshot {
        let node = |name: &str, reachable: bool| NodeSnapshot {
            addr: name.into(),
            reachable,
            ping: reachable.then(|| Duration::from_micros(100)),
            ..NodeSnapshot::default()
        };
        let topo = |name: &str, primary: bool, slots: bool| TopologyNode {
            id: format!("id-{name}"),
            addr: name.into(),
            role: if primary { Role::Primary } else { Role::Replica },
            primary_id: (!primary).then(|| "id-a".to_string()),
            slots: if slots {
                vec![sharding::SlotRange::all()]
            } else {
                vec![]
            },
            fail_reports: u32::from(failed_over && name == "a"),
            ..TopologyNode::default()
        };
        Snapshot {
            taken_at: at(secs),
            cluster_mode: true,
            nodes: vec![node("a", !failed_over), node("b", true)],
            topology: if failed_over {
                vec![topo("a", true, false), topo("b", true, true)]
            } else {
                vec![topo("a", true, true), topo("b", false, false)]
            },
            topology_from: Some("b".into()),
            ..Snapshot::default()
        }
    }

    fn kinds(events: &[AlertEvent]) -> Vec<(bool, AlertKind)> {
        events
            .iter()
            .map(|e| (matches!(e, AlertEvent::Fired(_)), e.alert().kind))
            .collect()
    }

    #[test]
    fn a_failover_fires_and_resolves_after_the_hold() {
        let thresholds = Thresholds {
            failover_hold: Duration::from_secs(60),
            ..Thresholds::default()
        };
        let mut monitor = Monitor::new(thresholds, TrendRing::new(10)).expect("valid thresholds");
        let first = monitor.observe(round(0, false));
        assert_eq!(
            (first.summary.status, first.events.len()),
            (HealthStatus::Healthy, 0)
        );

        let second = monitor.observe(round(30, true));
        assert_eq!(second.new_failovers.len(), 1);
        assert_eq!(
            kinds(&second.events),
            [
                (true, AlertKind::ReplicaDown),
                (true, AlertKind::NodeFail),
                (true, AlertKind::PrimaryWithoutReplica),
                (true, AlertKind::FailoverObserved)
            ]
        );
        // The client reports the same failover a moment later: still one failover.
        let mut third_round = round(60, true);
        third_round.client_failovers.push(FailoverRecord {
            at: at(31),
            old_primary: "a".into(),
            new_primary: "b".into(),
            seen_by: FailoverSource::Client,
        });
        let third = monitor.observe(third_round);
        assert_eq!((third.new_failovers.len(), third.events.len()), (0, 0));
        let fourth = monitor.observe(round(91, true));
        assert_eq!(kinds(&fourth.events), [(false, AlertKind::FailoverObserved)]);
        assert!(monitor.failovers().is_empty());
        assert_eq!(monitor.trends().len(), 4);
        assert_eq!(
            monitor
                .trend(TrendMetric::NodesConnected, Duration::from_secs(3600))
                .map(|s| (s.min, s.max)),
            Some((1.0, 2.0))
        );
    }

    #[test]
    fn invalid_thresholds_are_refused() {
        let thresholds = Thresholds {
            latency_spike_factor: 0.5,
            ..Thresholds::default()
        };
        assert!(Monitor::new(thresholds, TrendRing::new(1)).is_err());
    }
}
