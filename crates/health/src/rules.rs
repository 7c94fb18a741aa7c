//! Anomaly rules: pure functions from snapshots to findings.
//!
//! Every rule reads a [`RuleInput`] (the current snapshot, the previous one, a rolling latency baseline
//! and the failovers seen) and a [`Thresholds`], and returns what it found. Nothing here does I/O or
//! reads a clock, so each rule is tested on synthetic snapshots on both sides of its threshold.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::distribution::{DimensionReport, primary_distribution};
use crate::error::Error;
use sharding::{DistributionThresholds, SLOT_COUNT, Verdict};

use crate::snapshot::{FailoverRecord, FailoverSource, Role, Snapshot};

/// How bad an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Severity {
    /// Redundancy or performance is reduced; the cache still serves every key.
    Warning,
    /// Some keys cannot be served, or will not be soon.
    Critical,
}

impl Severity {
    /// `warning` or `critical`, as in Prometheus alert labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// The anomalies the health model knows. Each has one rule, one fixed severity, and one Prometheus rule
/// of the same meaning in `docs/alerts.yml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AlertKind {
    /// A node that serves slots (or any standalone node) does not answer.
    NodeDown,
    /// A node that serves no slots (a replica, or a former primary whose slots moved) does not answer.
    ReplicaDown,
    /// Some of the 16,384 slots are not served: unassigned, or on a primary that is down or failing.
    SlotsUncovered,
    /// A reachable node reports `cluster_state:fail`.
    ClusterStateFail,
    /// A node is flagged PFAIL (`fail?`): some node has not heard from it within the node timeout.
    NodePfail,
    /// A node is flagged FAIL: a majority of primaries agreed it is down.
    NodeFail,
    /// A primary has fewer healthy replicas than [`Thresholds::min_replicas_per_primary`].
    PrimaryWithoutReplica,
    /// A replica is behind its primary by more than the bounds, or its link to the primary is down.
    ReplicationLag,
    /// A node uses more than [`Thresholds::memory_used_max_ratio`] of its `maxmemory`.
    MemoryHigh,
    /// A node's p99 latency jumped above its rolling baseline.
    LatencySpike,
    /// The client receives more `MOVED`/`ASK` redirects per second than the bound.
    RedirectStorm,
    /// A replica took over a primary's slots recently.
    FailoverObserved,
    /// A primary lost more than half its keys between two rounds (typically: it restarted empty).
    KeyCountDrop,
    /// Slots, keys or memory are spread unevenly over the primaries, past [`Thresholds::distribution`].
    DistributionSkewed,
}

impl AlertKind {
    /// Every kind, in a stable order.
    pub const ALL: [AlertKind; 14] = [
        AlertKind::NodeDown,
        AlertKind::ReplicaDown,
        AlertKind::SlotsUncovered,
        AlertKind::ClusterStateFail,
        AlertKind::NodePfail,
        AlertKind::NodeFail,
        AlertKind::PrimaryWithoutReplica,
        AlertKind::ReplicationLag,
        AlertKind::MemoryHigh,
        AlertKind::LatencySpike,
        AlertKind::RedirectStorm,
        AlertKind::FailoverObserved,
        AlertKind::KeyCountDrop,
        AlertKind::DistributionSkewed,
    ];

    /// The `snake_case` name used in metric labels and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::NodeDown => "node_down",
            AlertKind::ReplicaDown => "replica_down",
            AlertKind::SlotsUncovered => "slots_uncovered",
            AlertKind::ClusterStateFail => "cluster_state_fail",
            AlertKind::NodePfail => "node_pfail",
            AlertKind::NodeFail => "node_fail",
            AlertKind::PrimaryWithoutReplica => "primary_without_replica",
            AlertKind::ReplicationLag => "replication_lag",
            AlertKind::MemoryHigh => "memory_high",
            AlertKind::LatencySpike => "latency_spike",
            AlertKind::RedirectStorm => "redirect_storm",
            AlertKind::FailoverObserved => "failover_observed",
            AlertKind::KeyCountDrop => "key_count_drop",
            AlertKind::DistributionSkewed => "distribution_skewed",
        }
    }

    /// How bad it is.
    pub fn severity(self) -> Severity {
        match self {
            AlertKind::NodeDown
            | AlertKind::SlotsUncovered
            | AlertKind::ClusterStateFail
            | AlertKind::NodeFail => Severity::Critical,
            AlertKind::ReplicaDown
            | AlertKind::NodePfail
            | AlertKind::PrimaryWithoutReplica
            | AlertKind::ReplicationLag
            | AlertKind::MemoryHigh
            | AlertKind::LatencySpike
            | AlertKind::RedirectStorm
            | AlertKind::FailoverObserved
            | AlertKind::KeyCountDrop
            | AlertKind::DistributionSkewed => Severity::Warning,
        }
    }

    /// Runs this kind's rule alone.
    pub fn evaluate(self, input: &RuleInput<'_>, thresholds: &Thresholds) -> Vec<Finding> {
        let rule: fn(&RuleInput<'_>, &Thresholds) -> Vec<Finding> = match self {
            AlertKind::NodeDown => node_down,
            AlertKind::ReplicaDown => replica_down,
            AlertKind::SlotsUncovered => slots_uncovered,
            AlertKind::ClusterStateFail => cluster_state_fail,
            AlertKind::NodePfail => node_pfail,
            AlertKind::NodeFail => node_fail,
            AlertKind::PrimaryWithoutReplica => primary_without_replica,
            AlertKind::ReplicationLag => replication_lag,
            AlertKind::MemoryHigh => memory_high,
            AlertKind::LatencySpike => latency_spike,
            AlertKind::RedirectStorm => redirect_storm,
            AlertKind::FailoverObserved => failover_observed,
            AlertKind::KeyCountDrop => key_count_drop,
            AlertKind::DistributionSkewed => distribution_skewed,
        };
        rule(input, thresholds)
    }
}

impl fmt::Display for AlertKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The bounds the rules judge by. Every field is documented with its unit and default; change them
/// through [`HealthConfigBuilder::thresholds`](crate::HealthConfigBuilder::thresholds).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Thresholds {
    /// [`AlertKind::ReplicationLag`]: a replica whose last acknowledged offset is more than this many
    /// bytes behind its primary's `master_repl_offset`. Default 8 MiB: replicas acknowledge once a
    /// second, so a busy primary is normally up to a second of writes ahead.
    pub replication_lag_max_bytes: u64,
    /// [`AlertKind::ReplicationLag`]: a replica that has not acknowledged for longer than this (`lag=`
    /// in `INFO replication`, whole seconds). Default 10 s.
    pub replication_ack_max: Duration,
    /// [`AlertKind::MemoryHigh`]: `used_memory / maxmemory` above this (nodes without `maxmemory` are
    /// never judged). Default 0.9.
    pub memory_used_max_ratio: f64,
    /// [`AlertKind::PrimaryWithoutReplica`]: healthy replicas every slot-serving primary should have.
    /// Default 1.
    pub min_replicas_per_primary: u32,
    /// [`AlertKind::LatencySpike`]: latency above this multiple of the node's baseline. Default 3.
    pub latency_spike_factor: f64,
    /// [`AlertKind::LatencySpike`]: latencies under this never count as a spike, however small the
    /// baseline (a loopback PING going from 0.1 ms to 0.4 ms is noise). Default 5 ms.
    pub latency_spike_floor: Duration,
    /// [`AlertKind::LatencySpike`]: the baseline is the median of this many past rounds. Default 20
    /// (10 minutes at 30 s).
    pub latency_baseline_rounds: usize,
    /// [`AlertKind::LatencySpike`]: no judgement before this many past rounds are known. Default 3.
    pub latency_baseline_min_rounds: usize,
    /// [`AlertKind::RedirectStorm`]: redirects per second (all nodes, between two rounds) above this.
    /// Default 50.
    pub redirects_max_per_second: f64,
    /// [`AlertKind::FailoverObserved`]: how long the alert stays active after a failover. Default 5 min.
    pub failover_hold: Duration,
    /// [`AlertKind::KeyCountDrop`]: a primary whose key count fell by more than this share between two
    /// rounds. Default 0.5.
    pub key_drop_max_ratio: f64,
    /// [`AlertKind::KeyCountDrop`]: only primaries that had at least this many keys are judged, so that
    /// small or test data sets do not alert. Default 1,000.
    pub key_drop_min_keys: u64,
    /// [`AlertKind::DistributionSkewed`]: how unevenly slots, keys and memory may spread over the
    /// primaries (every primary weighing the same), or `None` to turn the rule off (a cluster weighted
    /// on purpose). Default: `sharding`'s defaults, the spec's bounds: coefficient of variation at most
    /// 0.10 and the busiest primary at most 1.25 times the mean.
    pub distribution: Option<DistributionThresholds>,
    /// [`AlertKind::DistributionSkewed`]: keys and memory are judged only when the primaries hold at
    /// least this many keys in all (slots are always judged). Default 10,000: a small data set spreads
    /// unevenly by chance, and a nearly empty node's memory is its fixed overhead.
    pub distribution_min_keys: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            replication_lag_max_bytes: 8 * 1024 * 1024,
            replication_ack_max: Duration::from_secs(10),
            memory_used_max_ratio: 0.9,
            min_replicas_per_primary: 1,
            latency_spike_factor: 3.0,
            latency_spike_floor: Duration::from_millis(5),
            latency_baseline_rounds: 20,
            latency_baseline_min_rounds: 3,
            redirects_max_per_second: 50.0,
            failover_hold: Duration::from_secs(300),
            key_drop_max_ratio: 0.5,
            key_drop_min_keys: 1_000,
            distribution: Some(DistributionThresholds::default()),
            distribution_min_keys: 10_000,
        }
    }
}

impl Thresholds {
    /// Checks every field, naming the first one out of range.
    ///
    /// ```
    /// let mut thresholds = health::Thresholds::default();
    /// assert!(thresholds.validate().is_ok());
    /// thresholds.memory_used_max_ratio = 1.5;
    /// assert!(thresholds.validate().unwrap_err().to_string().contains("memory_used_max_ratio"));
    /// ```
    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |name: &'static str, problem: String| Err(Error::Invalid { name, problem });
        let ratio_ok = |r: f64| r > 0.0 && r <= 1.0;
        if !ratio_ok(self.memory_used_max_ratio) {
            return invalid(
                "thresholds.memory_used_max_ratio",
                format!(
                    "{} is not in (0, 1]; 0.9 means 90% of maxmemory",
                    self.memory_used_max_ratio
                ),
            );
        }
        if !ratio_ok(self.key_drop_max_ratio) {
            return invalid(
                "thresholds.key_drop_max_ratio",
                format!(
                    "{} is not in (0, 1]; 0.5 means a drop of more than half",
                    self.key_drop_max_ratio
                ),
            );
        }
        if !(self.latency_spike_factor.is_finite() && self.latency_spike_factor > 1.0) {
            return invalid(
                "thresholds.latency_spike_factor",
                format!("{} must be a finite number above 1", self.latency_spike_factor),
            );
        }
        if !(self.redirects_max_per_second.is_finite() && self.redirects_max_per_second >= 0.0) {
            return invalid(
                "thresholds.redirects_max_per_second",
                format!(
                    "{} must be a finite number of at least 0",
                    self.redirects_max_per_second
                ),
            );
        }
        if let Some(distribution) = &self.distribution {
            if !(distribution.max_over_mean.is_finite() && distribution.max_over_mean >= 1.0) {
                return invalid(
                    "thresholds.distribution.max_over_mean",
                    format!(
                        "{} must be a finite number of at least 1 (1.25: the busiest primary holds at most \
                         1.25 times the mean)",
                        distribution.max_over_mean
                    ),
                );
            }
            let cv = distribution.max_coefficient_of_variation;
            if !(cv.is_finite() && cv >= 0.0) {
                return invalid(
                    "thresholds.distribution.max_coefficient_of_variation",
                    format!("{cv} must be a finite number of at least 0 (0.10 by default)"),
                );
            }
        }
        if self.latency_baseline_min_rounds == 0
            || self.latency_baseline_min_rounds > self.latency_baseline_rounds
        {
            return invalid(
                "thresholds.latency_baseline_min_rounds",
                format!(
                    "{} must be at least 1 and at most latency_baseline_rounds ({})",
                    self.latency_baseline_min_rounds, self.latency_baseline_rounds
                ),
            );
        }
        Ok(())
    }
}

/// One anomaly a rule found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Which anomaly.
    pub kind: AlertKind,
    /// What it is about: a node's `host:port` (or ID when it has no address), or `cluster`.
    pub subject: String,
    /// A sentence for humans, e.g. `127.0.0.1:7000 uses 95% of maxmemory (bound 90%)`.
    pub message: String,
    /// The measured value that crossed the bound (bytes, ratio, seconds, count: see the message).
    pub value: f64,
}

impl Finding {
    fn new(kind: AlertKind, subject: impl Into<String>, value: f64, message: String) -> Finding {
        Finding {
            kind,
            subject: subject.into(),
            message,
            value,
        }
    }
}

/// What the rules read.
#[derive(Debug, Clone, Copy)]
pub struct RuleInput<'a> {
    /// The snapshot being judged.
    pub current: &'a Snapshot,
    /// The snapshot before it, for rules that compare (redirect rate, key drop).
    pub previous: Option<&'a Snapshot>,
    /// Per-node latency baseline from earlier rounds (not including `current`).
    pub baseline: &'a LatencyBaseline,
    /// Failovers seen so far (topology changes and client reports), oldest first.
    pub failovers: &'a [FailoverRecord],
}

/// Runs every rule and returns their findings, at most one per kind and subject.
pub fn evaluate(input: &RuleInput<'_>, thresholds: &Thresholds) -> Vec<Finding> {
    let mut seen = BTreeSet::new();
    AlertKind::ALL
        .iter()
        .flat_map(|kind| kind.evaluate(input, thresholds))
        .filter(|f| seen.insert((f.kind, f.subject.clone())))
        .collect()
}

fn node_down(input: &RuleInput<'_>, _: &Thresholds) -> Vec<Finding> {
    let snapshot = input.current;
    snapshot
        .nodes
        .iter()
        .filter(|n| !n.reachable && snapshot.serves_data(&n.addr))
        .map(|n| {
            Finding::new(
                AlertKind::NodeDown,
                &n.addr,
                1.0,
                format!(
                    "{} serves data and does not answer ({})",
                    n.addr,
                    n.error.as_deref().unwrap_or("no reply")
                ),
            )
        })
        .collect()
}

fn replica_down(input: &RuleInput<'_>, _: &Thresholds) -> Vec<Finding> {
    let snapshot = input.current;
    snapshot
        .nodes
        .iter()
        .filter(|n| !n.reachable && !snapshot.serves_data(&n.addr))
        .map(|n| {
            Finding::new(
                AlertKind::ReplicaDown,
                &n.addr,
                1.0,
                format!(
                    "{} serves no slots and does not answer ({}); its shard has less redundancy",
                    n.addr,
                    n.error.as_deref().unwrap_or("no reply")
                ),
            )
        })
        .collect()
}

fn slots_uncovered(input: &RuleInput<'_>, _: &Thresholds) -> Vec<Finding> {
    match input.current.slots_covered() {
        Some(covered) if covered < u32::from(SLOT_COUNT) => {
            let missing = u32::from(SLOT_COUNT) - covered;
            vec![Finding::new(
                AlertKind::SlotsUncovered,
                "cluster",
                f64::from(missing),
                format!(
                    "{missing} of {SLOT_COUNT} slots are not served (unassigned, or on a primary that is down or \
                     failing)"
                ),
            )]
        }
        _ => Vec::new(),
    }
}

fn cluster_state_fail(input: &RuleInput<'_>, _: &Thresholds) -> Vec<Finding> {
    input
        .current
        .reachable_nodes()
        .filter(|n| n.cluster_info.as_ref().is_some_and(|c| !c.state_ok))
        .map(|n| {
            Finding::new(
                AlertKind::ClusterStateFail,
                &n.addr,
                1.0,
                format!("{} reports cluster_state:fail and refuses queries", n.addr),
            )
        })
        .collect()
}

/// A topology node's subject: its address, or its ID when it has none.
fn subject(node: &crate::snapshot::TopologyNode) -> &str {
    if node.addr.is_empty() {
        &node.id
    } else {
        &node.addr
    }
}

fn node_pfail(input: &RuleInput<'_>, _: &Thresholds) -> Vec<Finding> {
    input
        .current
        .topology
        .iter()
        .filter(|n| n.pfail_reports > 0 && n.fail_reports == 0)
        .map(|n| {
            Finding::new(
                AlertKind::NodePfail,
                subject(n),
                f64::from(n.pfail_reports),
                format!("{} is flagged PFAIL by {} node(s)", subject(n), n.pfail_reports),
            )
        })
        .collect()
}

fn node_fail(input: &RuleInput<'_>, _: &Thresholds) -> Vec<Finding> {
    input
        .current
        .topology
        .iter()
        .filter(|n| n.fail_reports > 0)
        .map(|n| {
            Finding::new(
                AlertKind::NodeFail,
                subject(n),
                f64::from(n.fail_reports),
                format!("{} is flagged FAIL by {} node(s)", subject(n), n.fail_reports),
            )
        })
        .collect()
}

fn primary_without_replica(input: &RuleInput<'_>, t: &Thresholds) -> Vec<Finding> {
    let snapshot = input.current;
    snapshot
        .serving_primaries()
        .filter_map(|primary| {
            let healthy = snapshot
                .topology
                .iter()
                .filter(|r| r.role == Role::Replica && r.primary_id.as_deref() == Some(primary.id.as_str()))
                .filter(|r| !r.is_failing())
                .filter(|r| snapshot.node(&r.addr).is_none_or(|n| n.reachable))
                .count();
            let healthy = u32::try_from(healthy).unwrap_or(u32::MAX);
            (healthy < t.min_replicas_per_primary).then(|| {
                Finding::new(
                    AlertKind::PrimaryWithoutReplica,
                    subject(primary),
                    f64::from(healthy),
                    format!(
                        "{} has {healthy} healthy replica(s), fewer than {}; losing it loses its slots",
                        subject(primary),
                        t.min_replicas_per_primary
                    ),
                )
            })
        })
        .collect()
}

fn replication_lag(input: &RuleInput<'_>, t: &Thresholds) -> Vec<Finding> {
    let mut findings = Vec::new();
    for node in input.current.reachable_nodes() {
        let Some(info) = &node.info else { continue };
        match info.role {
            Role::Primary => {
                for replica in &info.replicas {
                    let behind = info.master_repl_offset.saturating_sub(replica.offset);
                    let silent = Duration::from_secs(replica.lag_seconds);
                    if behind > t.replication_lag_max_bytes {
                        findings.push(Finding::new(
                            AlertKind::ReplicationLag,
                            &replica.addr,
                            behind as f64,
                            format!(
                                "{} is {behind} bytes behind its primary {} (bound {}, state {})",
                                replica.addr, node.addr, t.replication_lag_max_bytes, replica.state
                            ),
                        ));
                    } else if silent > t.replication_ack_max {
                        findings.push(Finding::new(
                            AlertKind::ReplicationLag,
                            &replica.addr,
                            silent.as_secs_f64(),
                            format!(
                                "{} has not acknowledged replication for {}s (bound {:?})",
                                replica.addr, replica.lag_seconds, t.replication_ack_max
                            ),
                        ));
                    }
                }
            }
            Role::Replica => {
                if let Some(link) = info.primary_link.as_ref().filter(|l| !l.link_up) {
                    findings.push(Finding::new(
                        AlertKind::ReplicationLag,
                        &node.addr,
                        f64::INFINITY,
                        format!("{}'s link to its primary {} is down", node.addr, link.addr),
                    ));
                }
            }
        }
    }
    findings
}

fn memory_high(input: &RuleInput<'_>, t: &Thresholds) -> Vec<Finding> {
    input
        .current
        .reachable_nodes()
        .filter_map(|n| {
            let info = n.info.as_ref()?;
            let ratio = info.memory_ratio()?;
            (ratio > t.memory_used_max_ratio).then(|| {
                Finding::new(
                    AlertKind::MemoryHigh,
                    &n.addr,
                    ratio,
                    format!(
                        "{} uses {:.1}% of maxmemory ({} of {} bytes; bound {:.1}%)",
                        n.addr,
                        ratio * 100.0,
                        info.used_memory_bytes,
                        info.maxmemory_bytes,
                        t.memory_used_max_ratio * 100.0
                    ),
                )
            })
        })
        .collect()
}

fn latency_spike(input: &RuleInput<'_>, t: &Thresholds) -> Vec<Finding> {
    input
        .current
        .reachable_nodes()
        .filter_map(|n| {
            let latency = n.latency()?;
            let baseline = input.baseline.baseline(&n.addr)?;
            let spike = latency > t.latency_spike_floor
                && latency.as_secs_f64() > t.latency_spike_factor * baseline.as_secs_f64();
            spike.then(|| {
                Finding::new(
                    AlertKind::LatencySpike,
                    &n.addr,
                    latency.as_secs_f64(),
                    format!(
                        "{} answers in {latency:?}, over {}x its baseline of {baseline:?}",
                        n.addr, t.latency_spike_factor
                    ),
                )
            })
        })
        .collect()
}

fn redirect_storm(input: &RuleInput<'_>, t: &Thresholds) -> Vec<Finding> {
    let Some(previous) = input.previous else {
        return Vec::new();
    };
    let Ok(elapsed) = input.current.taken_at.duration_since(previous.taken_at) else {
        return Vec::new();
    };
    if elapsed.is_zero() {
        return Vec::new();
    }
    let redirects: u64 = input
        .current
        .nodes
        .iter()
        .filter_map(|n| {
            let now = n.client.as_ref()?.redirects;
            // A node the previous round did not know counts from now on, not from zero: its counter may
            // hold hours of history.
            let before = previous.node(&n.addr)?.client.as_ref()?.redirects;
            Some(now.saturating_sub(before))
        })
        .sum();
    let rate = redirects as f64 / elapsed.as_secs_f64();
    if rate > t.redirects_max_per_second {
        vec![Finding::new(
            AlertKind::RedirectStorm,
            "cluster",
            rate,
            format!(
                "the client got {redirects} MOVED/ASK redirects in {elapsed:?} ({rate:.1}/s, bound {}/s); slots \
                 are moving or the client's slot table is stale",
                t.redirects_max_per_second
            ),
        )]
    } else {
        Vec::new()
    }
}

fn failover_observed(input: &RuleInput<'_>, t: &Thresholds) -> Vec<Finding> {
    let now = input.current.taken_at;
    input
        .failovers
        .iter()
        .filter(|f| {
            now.duration_since(f.at)
                .map_or(true, |age| age <= t.failover_hold)
        })
        .map(|f| {
            Finding::new(
                AlertKind::FailoverObserved,
                &f.old_primary,
                1.0,
                format!(
                    "{} took over the slots of {} (seen by the {})",
                    f.new_primary,
                    f.old_primary,
                    match f.seen_by {
                        FailoverSource::Topology => "cluster topology",
                        FailoverSource::Client => "client",
                    }
                ),
            )
        })
        .collect()
}

fn key_count_drop(input: &RuleInput<'_>, t: &Thresholds) -> Vec<Finding> {
    let Some(previous) = input.previous else {
        return Vec::new();
    };
    input
        .current
        .reachable_nodes()
        .filter_map(|n| {
            let info = n.info.as_ref().filter(|i| i.role == Role::Primary)?;
            let before = previous.node(&n.addr).filter(|p| p.reachable)?.info.as_ref()?.keys();
            if before < t.key_drop_min_keys {
                return None;
            }
            let now = info.keys();
            let dropped = 1.0 - now as f64 / before as f64;
            (dropped > t.key_drop_max_ratio).then(|| {
                Finding::new(
                    AlertKind::KeyCountDrop,
                    &n.addr,
                    dropped,
                    format!(
                        "{} went from {before} to {now} keys ({:.0}% fewer; bound {:.0}%); did it restart empty?",
                        n.addr,
                        dropped * 100.0,
                        t.key_drop_max_ratio * 100.0
                    ),
                )
            })
        })
        .collect()
}

fn distribution_skewed(input: &RuleInput<'_>, t: &Thresholds) -> Vec<Finding> {
    let Some(limits) = &t.distribution else {
        return Vec::new();
    };
    let mut worst = 0.0f64;
    let mut parts = Vec::new();
    for DimensionReport { dimension, report } in
        primary_distribution(input.current, limits, t.distribution_min_keys)
    {
        if !matches!(report.verdict, Verdict::Skewed(_)) {
            continue;
        }
        worst = worst.max(report.max_over_mean);
        let busiest = report
            .shards
            .iter()
            .max_by(|a, b| a.load().total_cmp(&b.load()))
            .map_or("?", |s| s.shard.as_str());
        parts.push(format!(
            "{dimension}: {busiest} holds {:.2}x the mean (bound {:.2}x), coefficient of variation {:.2} (bound {:.2})",
            report.max_over_mean,
            limits.max_over_mean,
            report.coefficient_of_variation,
            limits.max_coefficient_of_variation
        ));
    }
    if parts.is_empty() {
        return Vec::new();
    }
    vec![Finding::new(
        AlertKind::DistributionSkewed,
        "cluster",
        worst,
        format!(
            "data is spread unevenly over the primaries ({}); rebalance slots with `cargo xtask cluster-scale \
             --rebalance` (rebalance::Rebalancer::rebalance)",
            parts.join("; ")
        ),
    )]
}

/// Failovers visible between two snapshots: a node that was a replica in `previous` serves slots as a
/// primary in `current`. Both topologies must be fresh (read from a node this round).
pub fn detect_failovers(previous: &Snapshot, current: &Snapshot) -> Vec<FailoverRecord> {
    if previous.topology_from.is_none() || current.topology_from.is_none() {
        return Vec::new();
    }
    // Nodes by ID, so that a node that changed its address is still the same node.
    let name = |snapshot: &Snapshot, id: &str| {
        snapshot
            .topology_node_by_id(id)
            .map_or_else(|| id.to_string(), |node| subject(node).to_string())
    };
    replies::failovers(&shard_views(previous), &shard_views(current))
        .into_iter()
        // Only a node that the previous view knew as a replica was promoted: slots handed to a node
        // that joined since then are a migration.
        .filter(|failover| {
            previous
                .topology_node_by_id(failover.new_primary)
                .is_some_and(|node| node.role == Role::Replica)
        })
        .map(|failover| FailoverRecord {
            at: current.taken_at,
            old_primary: name(previous, failover.old_primary),
            new_primary: name(current, failover.new_primary),
            seen_by: FailoverSource::Topology,
        })
        .collect()
}

/// Which primary serves which slots, and who replicated it, by node ID.
fn shard_views(snapshot: &Snapshot) -> Vec<replies::ShardView<&str>> {
    snapshot
        .serving_primaries()
        .map(|primary| replies::ShardView {
            primary: primary.id.as_str(),
            replicas: snapshot
                .topology
                .iter()
                .filter(|n| n.role == Role::Replica && n.primary_id.as_deref() == Some(primary.id.as_str()))
                .map(|n| n.id.as_str())
                .collect(),
            slots: primary.slots.clone(),
        })
        .collect()
}

/// Each node's recent latencies, whose median is the baseline [`AlertKind::LatencySpike`] compares with.
///
/// A median rather than a mean, so that one slow round does not move the baseline; rolling, so that a
/// lasting change becomes the new normal and the alert resolves.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LatencyBaseline {
    rounds: usize,
    min_rounds: usize,
    samples: BTreeMap<String, VecDeque<Duration>>,
}

impl LatencyBaseline {
    /// A baseline over the last `rounds` rounds, judged once `min_rounds` are known.
    pub fn new(rounds: usize, min_rounds: usize) -> LatencyBaseline {
        LatencyBaseline {
            rounds: rounds.max(1),
            min_rounds: min_rounds.max(1),
            samples: BTreeMap::new(),
        }
    }

    /// A baseline sized by the thresholds.
    pub fn for_thresholds(thresholds: &Thresholds) -> LatencyBaseline {
        LatencyBaseline::new(
            thresholds.latency_baseline_rounds,
            thresholds.latency_baseline_min_rounds,
        )
    }

    /// Adds every reachable node's latency from `snapshot`, and forgets nodes it no longer lists.
    pub fn observe(&mut self, snapshot: &Snapshot) {
        self.samples.retain(|addr, _| snapshot.node(addr).is_some());
        for node in snapshot.reachable_nodes() {
            let Some(latency) = node.latency() else { continue };
            let samples = self.samples.entry(node.addr.clone()).or_default();
            if samples.len() == self.rounds {
                samples.pop_front();
            }
            samples.push_back(latency);
        }
    }

    /// The median latency of `addr` over the window, once enough rounds are known.
    pub fn baseline(&self, addr: &str) -> Option<Duration> {
        let samples = self.samples.get(addr).filter(|s| s.len() >= self.min_rounds)?;
        let mut sorted: Vec<Duration> = samples.iter().copied().collect();
        sorted.sort_unstable();
        Some(sorted[sorted.len() / 2])
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::snapshot::{
        ClientNodeStats, ClusterInfo, DbKeys, NodeSnapshot, PrimaryLink, ReplicaLink, ServerInfo,
        TopologyNode,
    };

    const T0: Duration = Duration::from_secs(1_700_000_000);

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + T0 + Duration::from_secs(secs)
    }

    fn id(port: u16) -> String {
        format!("{port:040}")
    }

    fn addr(port: u16) -> String {
        cluster_config::NodeAddr::new("127.0.0.1", port).to_string()
    }

    /// A healthy 3 + 3 cluster: primaries 7000-7002 (slots split evenly), replica 7003 of 7000, 7004 of
    /// 7001, 7005 of 7002.
    fn healthy() -> Snapshot {
        let ranges = [(0, 5460), (5461, 10922), (10923, 16383)];
        let mut topology = Vec::new();
        let mut nodes = Vec::new();
        for i in 0..6u16 {
            let port = 7000 + i;
            let primary = i < 3;
            topology.push(TopologyNode {
                id: id(port),
                addr: addr(port),
                role: if primary { Role::Primary } else { Role::Replica },
                primary_id: (!primary).then(|| id(port - 3)),
                link_connected: true,
                slots: if primary {
                    vec![slots(ranges[usize::from(i)])]
                } else {
                    vec![]
                },
                ..TopologyNode::default()
            });
            nodes.push(NodeSnapshot {
                addr: addr(port),
                id: Some(id(port)),
                reachable: true,
                ping: Some(Duration::from_micros(200)),
                info: Some(ServerInfo {
                    role: if primary { Role::Primary } else { Role::Replica },
                    cluster_enabled: true,
                    used_memory_bytes: 2_000_000,
                    keyspace: vec![DbKeys {
                        db: 0,
                        keys: 10_000,
                        expires: 0,
                    }],
                    master_repl_offset: 5_000,
                    replicas: if primary {
                        vec![ReplicaLink {
                            addr: addr(port + 3),
                            state: "online".into(),
                            offset: 5_000,
                            lag_seconds: 0,
                        }]
                    } else {
                        vec![]
                    },
                    primary_link: (!primary).then(|| PrimaryLink {
                        addr: addr(port - 3),
                        link_up: true,
                        offset: 5_000,
                    }),
                    ..ServerInfo::default()
                }),
                cluster_info: Some(ClusterInfo {
                    state_ok: true,
                    slots_assigned: u32::from(SLOT_COUNT),
                    slots_ok: u32::from(SLOT_COUNT),
                    known_nodes: 6,
                    size: 3,
                    ..ClusterInfo::default()
                }),
                client: Some(ClientNodeStats {
                    latency_p50: Some(Duration::from_micros(150)),
                    latency_p99: Some(Duration::from_micros(400)),
                    commands: 100,
                    errors: 0,
                    redirects: 0,
                }),
                info_denied: false,
                error: None,
            });
        }
        Snapshot {
            taken_at: at(60),
            round_duration: Duration::from_millis(3),
            cluster_mode: true,
            nodes,
            topology,
            topology_from: Some(addr(7000)),
            client_failovers: Vec::new(),
        }
    }

    fn node_mut(snapshot: &mut Snapshot, port: u16) -> &mut NodeSnapshot {
        snapshot
            .nodes
            .iter_mut()
            .find(|n| n.addr == addr(port))
            .expect("node exists")
    }

    fn info_mut(snapshot: &mut Snapshot, port: u16) -> &mut ServerInfo {
        node_mut(snapshot, port).info.as_mut().expect("node has info")
    }

    fn slots((first, last): (u16, u16)) -> sharding::SlotRange {
        sharding::SlotRange::new(first, last).expect("a slot range")
    }

    fn topo_mut(snapshot: &mut Snapshot, port: u16) -> &mut TopologyNode {
        snapshot
            .topology
            .iter_mut()
            .find(|n| n.addr == addr(port))
            .expect("topology node exists")
    }

    fn down(snapshot: &mut Snapshot, port: u16) {
        let node = node_mut(snapshot, port);
        node.reachable = false;
        node.error = Some("connection refused".into());
        node.ping = None;
        node.info = None;
        node.cluster_info = None;
    }

    /// One table row: a scenario, the rule to run, and the subjects it must report.
    struct Case {
        name: &'static str,
        kind: AlertKind,
        thresholds: Thresholds,
        previous: Option<Snapshot>,
        current: Snapshot,
        baseline: LatencyBaseline,
        failovers: Vec<FailoverRecord>,
        expected: Vec<String>,
    }

    impl Case {
        fn new(name: &'static str, kind: AlertKind, current: Snapshot, expected: &[String]) -> Case {
            Case {
                name,
                kind,
                thresholds: Thresholds::default(),
                previous: None,
                current,
                baseline: LatencyBaseline::default(),
                failovers: Vec::new(),
                expected: expected.to_vec(),
            }
        }
    }

    fn check(cases: Vec<Case>) {
        for case in cases {
            let input = RuleInput {
                current: &case.current,
                previous: case.previous.as_ref(),
                baseline: &case.baseline,
                failovers: &case.failovers,
            };
            let findings = case.kind.evaluate(&input, &case.thresholds);
            let subjects: Vec<String> = findings.iter().map(|f| f.subject.clone()).collect();
            assert_eq!(subjects, case.expected, "{}: {findings:#?}", case.name);
            assert!(
                findings
                    .iter()
                    .all(|f| f.kind == case.kind && !f.message.is_empty()),
                "{}",
                case.name
            );
        }
    }

    fn none() -> Vec<String> {
        Vec::new()
    }

    #[test]
    fn a_healthy_cluster_has_no_findings() {
        let current = healthy();
        let previous = Snapshot {
            taken_at: at(30),
            ..healthy()
        };
        let mut baseline = LatencyBaseline::for_thresholds(&Thresholds::default());
        for _ in 0..5 {
            baseline.observe(&previous);
        }
        let input = RuleInput {
            current: &current,
            previous: Some(&previous),
            baseline: &baseline,
            failovers: &[],
        };
        assert_eq!(evaluate(&input, &Thresholds::default()), Vec::new());
    }

    #[test]
    fn node_down_and_replica_down_split_on_whether_the_node_serves_slots() {
        let mut primary_down = healthy();
        down(&mut primary_down, 7000);
        let mut replica_gone = healthy();
        down(&mut replica_gone, 7003);
        // After a promotion the dead primary keeps no slots: it is a node that serves nothing.
        let mut promoted = healthy();
        down(&mut promoted, 7000);
        topo_mut(&mut promoted, 7003).role = Role::Primary;
        topo_mut(&mut promoted, 7003).primary_id = None;
        topo_mut(&mut promoted, 7003).slots = vec![slots((0, 5460))];
        topo_mut(&mut promoted, 7000).slots = vec![];
        let standalone = || {
            let mut s = healthy();
            s.cluster_mode = false;
            s.topology.clear();
            down(&mut s, 7004);
            s
        };
        check(vec![
            Case::new("healthy", AlertKind::NodeDown, healthy(), &none()),
            Case::new(
                "primary down",
                AlertKind::NodeDown,
                primary_down.clone(),
                &[addr(7000)],
            ),
            Case::new(
                "primary down is not a replica",
                AlertKind::ReplicaDown,
                primary_down,
                &none(),
            ),
            Case::new(
                "replica down",
                AlertKind::ReplicaDown,
                replica_gone.clone(),
                &[addr(7003)],
            ),
            Case::new(
                "replica down is not node down",
                AlertKind::NodeDown,
                replica_gone,
                &none(),
            ),
            Case::new("after promotion", AlertKind::NodeDown, promoted.clone(), &none()),
            Case::new(
                "after promotion, spare",
                AlertKind::ReplicaDown,
                promoted,
                &[addr(7000)],
            ),
            Case::new(
                "standalone node",
                AlertKind::NodeDown,
                standalone(),
                &[addr(7004)],
            ),
        ]);
    }

    #[test]
    fn slots_uncovered_counts_unassigned_unreachable_and_failing_slots() {
        let mut unassigned = healthy();
        topo_mut(&mut unassigned, 7002).slots = vec![slots((10923, 16382))];
        let mut unreachable = healthy();
        down(&mut unreachable, 7001);
        let mut pfail = healthy();
        topo_mut(&mut pfail, 7002).pfail_reports = 2;
        let mut standalone = healthy();
        standalone.cluster_mode = false;
        standalone.topology.clear();
        check(vec![
            Case::new("all 16384", AlertKind::SlotsUncovered, healthy(), &none()),
            Case::new(
                "one slot unassigned",
                AlertKind::SlotsUncovered,
                unassigned.clone(),
                &["cluster".into()],
            ),
            Case::new(
                "owner unreachable",
                AlertKind::SlotsUncovered,
                unreachable,
                &["cluster".into()],
            ),
            Case::new(
                "owner flagged",
                AlertKind::SlotsUncovered,
                pfail,
                &["cluster".into()],
            ),
            Case::new("not a cluster", AlertKind::SlotsUncovered, standalone, &none()),
        ]);
        let input = RuleInput {
            current: &unassigned,
            previous: None,
            baseline: &LatencyBaseline::default(),
            failovers: &[],
        };
        assert_eq!(
            AlertKind::SlotsUncovered.evaluate(&input, &Thresholds::default())[0].value,
            1.0
        );
    }

    #[test]
    fn cluster_state_fail_is_reported_per_node() {
        let mut failing = healthy();
        node_mut(&mut failing, 7001)
            .cluster_info
            .as_mut()
            .expect("cluster info")
            .state_ok = false;
        check(vec![
            Case::new("ok", AlertKind::ClusterStateFail, healthy(), &none()),
            Case::new("fail", AlertKind::ClusterStateFail, failing, &[addr(7001)]),
        ]);
    }

    #[test]
    fn pfail_and_fail_flags_are_separate_alerts() {
        let flagged = |pfail, fail| {
            let mut s = healthy();
            topo_mut(&mut s, 7001).pfail_reports = pfail;
            topo_mut(&mut s, 7001).fail_reports = fail;
            s
        };
        let mut noaddr = healthy();
        topo_mut(&mut noaddr, 7005).fail_reports = 1;
        topo_mut(&mut noaddr, 7005).addr = String::new();
        check(vec![
            Case::new("no reports", AlertKind::NodePfail, flagged(0, 0), &none()),
            Case::new(
                "one pfail report",
                AlertKind::NodePfail,
                flagged(1, 0),
                &[addr(7001)],
            ),
            Case::new("pfail is not fail", AlertKind::NodeFail, flagged(1, 0), &none()),
            Case::new(
                "fail wins over pfail",
                AlertKind::NodePfail,
                flagged(1, 1),
                &none(),
            ),
            Case::new(
                "one fail report",
                AlertKind::NodeFail,
                flagged(0, 1),
                &[addr(7001)],
            ),
            Case::new("no address: the id", AlertKind::NodeFail, noaddr, &[id(7005)]),
        ]);
    }

    #[test]
    fn primary_without_replica_counts_only_healthy_replicas() {
        let mut replica_failing = healthy();
        topo_mut(&mut replica_failing, 7004).fail_reports = 1;
        let mut replica_unreachable = healthy();
        down(&mut replica_unreachable, 7005);
        let two_required = Thresholds {
            min_replicas_per_primary: 2,
            ..Thresholds::default()
        };
        let none_required = Thresholds {
            min_replicas_per_primary: 0,
            ..Thresholds::default()
        };
        check(vec![
            Case::new("one each", AlertKind::PrimaryWithoutReplica, healthy(), &none()),
            Case::new(
                "failing replica",
                AlertKind::PrimaryWithoutReplica,
                replica_failing,
                &[addr(7001)],
            ),
            Case::new(
                "unreachable replica",
                AlertKind::PrimaryWithoutReplica,
                replica_unreachable.clone(),
                &[addr(7002)],
            ),
            Case {
                thresholds: two_required,
                ..Case::new(
                    "two required",
                    AlertKind::PrimaryWithoutReplica,
                    healthy(),
                    &[addr(7000), addr(7001), addr(7002)],
                )
            },
            Case {
                thresholds: none_required,
                ..Case::new(
                    "none required",
                    AlertKind::PrimaryWithoutReplica,
                    replica_unreachable,
                    &none(),
                )
            },
        ]);
    }

    #[test]
    fn replication_lag_judges_bytes_ack_time_and_link_state() {
        let t = Thresholds::default();
        let behind = |bytes: u64| {
            let mut s = healthy();
            let info = info_mut(&mut s, 7000);
            info.master_repl_offset = 5_000 + bytes;
            s
        };
        let silent = |secs: u64| {
            let mut s = healthy();
            info_mut(&mut s, 7001).replicas[0].lag_seconds = secs;
            s
        };
        let mut link_down = healthy();
        info_mut(&mut link_down, 7005)
            .primary_link
            .as_mut()
            .expect("replica link")
            .link_up = false;
        let ack = t.replication_ack_max.as_secs();
        check(vec![
            Case::new(
                "at the byte bound",
                AlertKind::ReplicationLag,
                behind(t.replication_lag_max_bytes),
                &none(),
            ),
            Case::new(
                "one byte over",
                AlertKind::ReplicationLag,
                behind(t.replication_lag_max_bytes + 1),
                &[addr(7003)],
            ),
            Case::new(
                "at the ack bound",
                AlertKind::ReplicationLag,
                silent(ack),
                &none(),
            ),
            Case::new(
                "a second over",
                AlertKind::ReplicationLag,
                silent(ack + 1),
                &[addr(7004)],
            ),
            Case::new("link down", AlertKind::ReplicationLag, link_down, &[addr(7005)]),
        ]);
    }

    #[test]
    fn memory_high_fires_only_above_the_ratio_and_only_with_a_limit() {
        let using = |used: u64, max: u64| {
            let mut s = healthy();
            let info = info_mut(&mut s, 7002);
            info.used_memory_bytes = used;
            info.maxmemory_bytes = max;
            s
        };
        check(vec![
            Case::new("at 90%", AlertKind::MemoryHigh, using(900, 1000), &none()),
            Case::new("over 90%", AlertKind::MemoryHigh, using(901, 1000), &[addr(7002)]),
            Case::new("no maxmemory", AlertKind::MemoryHigh, using(u64::MAX, 0), &none()),
            Case {
                thresholds: Thresholds {
                    memory_used_max_ratio: 0.5,
                    ..Thresholds::default()
                },
                ..Case::new(
                    "configured 50%",
                    AlertKind::MemoryHigh,
                    using(501, 1000),
                    &[addr(7002)],
                )
            },
        ]);
    }

    #[test]
    fn latency_spike_needs_a_baseline_the_factor_and_the_floor() {
        let t = Thresholds::default();
        let steady = |p99: Duration| {
            let mut s = healthy();
            for n in &mut s.nodes {
                n.client.as_mut().expect("client stats").latency_p99 = Some(p99);
            }
            s
        };
        let baseline_of = |p99: Duration, rounds: usize| {
            let mut b = LatencyBaseline::for_thresholds(&t);
            for _ in 0..rounds {
                b.observe(&steady(p99));
            }
            b
        };
        let with = |p99: Duration| {
            let mut s = healthy();
            node_mut(&mut s, 7001)
                .client
                .as_mut()
                .expect("client stats")
                .latency_p99 = Some(p99);
            // The other nodes keep their baseline.
            for port in [7000, 7002, 7003, 7004, 7005] {
                node_mut(&mut s, port)
                    .client
                    .as_mut()
                    .expect("client stats")
                    .latency_p99 = Some(Duration::from_millis(2));
            }
            s
        };
        let ms = Duration::from_millis;
        check(vec![
            Case {
                baseline: baseline_of(ms(2), 5),
                ..Case::new("3x exactly", AlertKind::LatencySpike, with(ms(6)), &none())
            },
            Case {
                baseline: baseline_of(ms(2), 5),
                ..Case::new(
                    "over 3x and the floor",
                    AlertKind::LatencySpike,
                    with(Duration::from_micros(6_001)),
                    &[addr(7001)],
                )
            },
            Case {
                baseline: baseline_of(Duration::from_micros(100), 5),
                ..Case::new(
                    "over 3x, under the floor",
                    AlertKind::LatencySpike,
                    with(ms(5)),
                    &none(),
                )
            },
            Case {
                baseline: baseline_of(ms(1), 2),
                ..Case::new("too few rounds", AlertKind::LatencySpike, with(ms(100)), &none())
            },
        ]);
    }

    #[test]
    fn the_latency_baseline_is_a_rolling_median() {
        let mut baseline = LatencyBaseline::new(3, 2);
        let round = |micros: u64| {
            let mut s = healthy();
            for n in &mut s.nodes {
                n.client = None;
                n.ping = Some(Duration::from_micros(micros));
            }
            s
        };
        let mut seen = Vec::new();
        for micros in [100, 900, 200, 300, 5_000, 5_000] {
            baseline.observe(&round(micros));
            seen.push(baseline.baseline(&addr(7000)).map(|d| d.as_micros()));
        }
        assert_eq!(
            seen,
            [None, Some(900), Some(200), Some(300), Some(300), Some(5_000)]
        );
        // A node that leaves the snapshot is forgotten.
        let mut fewer = round(100);
        fewer.nodes.retain(|n| n.addr != addr(7000));
        baseline.observe(&fewer);
        assert_eq!(baseline.baseline(&addr(7000)), None);
    }

    #[test]
    fn redirect_storm_judges_the_rate_between_two_rounds() {
        let t = Thresholds::default();
        let redirects = |secs: u64, count: u64| {
            let mut s = healthy();
            s.taken_at = at(secs);
            node_mut(&mut s, 7000)
                .client
                .as_mut()
                .expect("client stats")
                .redirects = count;
            s
        };
        let limit = (t.redirects_max_per_second * 30.0) as u64;
        let storm = |prev: Snapshot, cur: Snapshot, expected: &[String], name| Case {
            previous: Some(prev),
            ..Case::new(name, AlertKind::RedirectStorm, cur, expected)
        };
        check(vec![
            storm(
                redirects(30, 7),
                redirects(60, 7 + limit),
                &none(),
                "at the bound",
            ),
            storm(
                redirects(30, 7),
                redirects(60, 8 + limit),
                &["cluster".into()],
                "just over",
            ),
            storm(
                redirects(30, 10_000),
                redirects(60, 5),
                &none(),
                "the counter restarted",
            ),
            Case::new(
                "no previous round",
                AlertKind::RedirectStorm,
                redirects(60, 1_000_000),
                &none(),
            ),
        ]);
    }

    #[test]
    fn failover_observed_stays_active_for_the_hold_time() {
        let t = Thresholds::default();
        let failover = |secs: u64| FailoverRecord {
            at: at(secs),
            old_primary: addr(7000),
            new_primary: addr(7003),
            seen_by: FailoverSource::Topology,
        };
        let hold = t.failover_hold.as_secs();
        let now = healthy(); // taken at 60 s
        check(vec![
            Case::new("none", AlertKind::FailoverObserved, now.clone(), &none()),
            Case {
                failovers: vec![failover(60)],
                ..Case::new(
                    "just now",
                    AlertKind::FailoverObserved,
                    now.clone(),
                    &[addr(7000)],
                )
            },
            Case {
                failovers: vec![failover(0)],
                thresholds: Thresholds {
                    failover_hold: Duration::from_secs(60),
                    ..Thresholds::default()
                },
                ..Case::new(
                    "at the hold",
                    AlertKind::FailoverObserved,
                    now.clone(),
                    &[addr(7000)],
                )
            },
            Case {
                failovers: vec![failover(0)],
                thresholds: Thresholds {
                    failover_hold: Duration::from_secs(59),
                    ..Thresholds::default()
                },
                ..Case::new("past the hold", AlertKind::FailoverObserved, now.clone(), &none())
            },
            Case {
                failovers: vec![failover(60 + hold)],
                ..Case::new(
                    "reported ahead of this round",
                    AlertKind::FailoverObserved,
                    now,
                    &[addr(7000)],
                )
            },
        ]);
    }

    #[test]
    fn key_count_drop_fires_above_half_on_large_primaries() {
        let t = Thresholds::default();
        let keys = |port: u16, count: u64| {
            let mut s = healthy();
            info_mut(&mut s, port).keyspace = vec![DbKeys {
                db: 0,
                keys: count,
                expires: 0,
            }];
            s
        };
        let drop = |port: u16, before: u64, after: u64, expected: &[String], name| Case {
            previous: Some(keys(port, before)),
            ..Case::new(name, AlertKind::KeyCountDrop, keys(port, after), expected)
        };
        let min = t.key_drop_min_keys;
        check(vec![
            drop(7000, 2_000, 1_000, &none(), "exactly half"),
            drop(7000, 2_000, 999, &[addr(7000)], "more than half"),
            drop(7000, min - 1, 0, &none(), "under the minimum"),
            drop(7000, min, 0, &[addr(7000)], "at the minimum"),
            drop(7003, 2_000, 0, &none(), "a replica resyncing"),
            Case::new(
                "no previous round",
                AlertKind::KeyCountDrop,
                keys(7000, 0),
                &none(),
            ),
        ]);
    }

    #[test]
    fn distribution_skewed_judges_slots_always_and_keys_and_memory_with_enough_keys() {
        let cluster = || vec!["cluster".to_string()];
        // 2,000 slots moved from 7000 to 7001: 3,461 / 7,462 / 5,461.
        let mut slots_moved = healthy();
        topo_mut(&mut slots_moved, 7000).slots = vec![slots((0, 3460))];
        topo_mut(&mut slots_moved, 7001).slots = vec![slots((3461, 10922))];
        // A move within the bounds: 5,161 / 5,761 / 5,462 (max/mean 1.05, CV 0.04).
        let mut small_move = healthy();
        topo_mut(&mut small_move, 7000).slots = vec![slots((0, 5160))];
        topo_mut(&mut small_move, 7001).slots = vec![slots((5161, 10922))];
        let keys = |counts: [u64; 3]| {
            let mut s = healthy();
            for (port, keys) in (7000..).zip(counts) {
                info_mut(&mut s, port).keyspace = vec![DbKeys {
                    db: 0,
                    keys,
                    expires: 0,
                }];
            }
            s
        };
        let mut memory = healthy();
        info_mut(&mut memory, 7002).used_memory_bytes = 6_000_000;
        let mut unreachable_primary = keys([1_000, 1_000, 30_000]);
        down(&mut unreachable_primary, 7002);
        let mut standalone = slots_moved.clone();
        standalone.cluster_mode = false;
        let off = Thresholds {
            distribution: None,
            ..Thresholds::default()
        };
        check(vec![
            Case::new("even", AlertKind::DistributionSkewed, healthy(), &none()),
            Case::new(
                "slots moved",
                AlertKind::DistributionSkewed,
                slots_moved.clone(),
                &cluster(),
            ),
            Case::new("a small move", AlertKind::DistributionSkewed, small_move, &none()),
            Case::new(
                "keys skewed",
                AlertKind::DistributionSkewed,
                keys([5_000, 5_000, 20_000]),
                &cluster(),
            ),
            Case::new(
                "few keys",
                AlertKind::DistributionSkewed,
                keys([100, 100, 9_000]),
                &none(),
            ),
            Case::new("memory skewed", AlertKind::DistributionSkewed, memory, &cluster()),
            Case::new(
                "a primary did not answer: its keys are unknown",
                AlertKind::DistributionSkewed,
                unreachable_primary,
                &none(),
            ),
            Case::new(
                "not a cluster",
                AlertKind::DistributionSkewed,
                standalone,
                &none(),
            ),
            Case {
                thresholds: off,
                ..Case::new(
                    "rule off",
                    AlertKind::DistributionSkewed,
                    slots_moved.clone(),
                    &none(),
                )
            },
        ]);
        let input = RuleInput {
            current: &slots_moved,
            previous: None,
            baseline: &LatencyBaseline::default(),
            failovers: &[],
        };
        let finding = &AlertKind::DistributionSkewed.evaluate(&input, &Thresholds::default())[0];
        assert!(
            finding
                .message
                .contains("slots: 127.0.0.1:7001 holds 1.37x the mean"),
            "{}",
            finding.message
        );
        assert!(
            (finding.value - 7_462.0 / (16_384.0 / 3.0)).abs() < 1e-9,
            "{}",
            finding.value
        );
    }

    #[test]
    fn failovers_are_detected_from_a_replica_that_became_a_primary() {
        let previous = healthy();
        let mut current = healthy();
        current.taken_at = at(90);
        topo_mut(&mut current, 7003).role = Role::Primary;
        topo_mut(&mut current, 7003).primary_id = None;
        topo_mut(&mut current, 7003).slots = vec![slots((0, 5460))];
        topo_mut(&mut current, 7000).slots = vec![];
        topo_mut(&mut current, 7000).fail_reports = 5;
        assert_eq!(
            detect_failovers(&previous, &current),
            vec![FailoverRecord {
                at: at(90),
                old_primary: addr(7000),
                new_primary: addr(7003),
                seen_by: FailoverSource::Topology
            }]
        );
        assert_eq!(detect_failovers(&current, &current), Vec::new());
        assert_eq!(detect_failovers(&previous, &previous), Vec::new());
        // A stale topology (no node answered) proves nothing.
        let stale = Snapshot {
            topology_from: None,
            ..current.clone()
        };
        assert_eq!(detect_failovers(&previous, &stale), Vec::new());
    }

    #[test]
    fn thresholds_are_validated_field_by_field() {
        let cases: Vec<(&str, Thresholds)> = vec![
            (
                "memory_used_max_ratio",
                Thresholds {
                    memory_used_max_ratio: 0.0,
                    ..Thresholds::default()
                },
            ),
            (
                "key_drop_max_ratio",
                Thresholds {
                    key_drop_max_ratio: 1.01,
                    ..Thresholds::default()
                },
            ),
            (
                "latency_spike_factor",
                Thresholds {
                    latency_spike_factor: 1.0,
                    ..Thresholds::default()
                },
            ),
            (
                "redirects_max_per_second",
                Thresholds {
                    redirects_max_per_second: f64::NAN,
                    ..Thresholds::default()
                },
            ),
            (
                "latency_baseline_min_rounds",
                Thresholds {
                    latency_baseline_min_rounds: 0,
                    ..Thresholds::default()
                },
            ),
            (
                "latency_baseline_min_rounds",
                Thresholds {
                    latency_baseline_rounds: 2,
                    latency_baseline_min_rounds: 3,
                    ..Thresholds::default()
                },
            ),
            (
                "distribution.max_over_mean",
                Thresholds {
                    distribution: Some({
                        let mut limits = sharding::DistributionThresholds::default();
                        limits.max_over_mean = 0.9;
                        limits
                    }),
                    ..Thresholds::default()
                },
            ),
            (
                "distribution.max_coefficient_of_variation",
                Thresholds {
                    distribution: Some({
                        let mut limits = sharding::DistributionThresholds::default();
                        limits.max_coefficient_of_variation = f64::INFINITY;
                        limits
                    }),
                    ..Thresholds::default()
                },
            ),
        ];
        for (field, thresholds) in cases {
            let message = thresholds.validate().expect_err(field).to_string();
            assert!(message.contains(field), "{field}: {message}");
        }
        assert!(Thresholds::default().validate().is_ok());
    }
}
