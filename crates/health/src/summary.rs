//! The one-screen answer to "is the cache healthy?", computed from a snapshot and the active alerts.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::alerts::Alert;
use sharding::SLOT_COUNT;

use crate::snapshot::{Role, Snapshot, millis, millis_opt, unix_ms};

/// Overall state of the deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Every node answers, every slot is served, no alert is active.
    Healthy,
    /// The cache serves, but something is wrong: an alert is active, a node is missing, or some slots
    /// are not served.
    Degraded,
    /// Nothing is served: no node answers, or no slot is served.
    Down,
}

impl HealthStatus {
    /// `healthy`, `degraded` or `down`.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Healthy => "healthy",
            HealthStatus::Degraded => "degraded",
            HealthStatus::Down => "down",
        }
    }

    /// 0, 1 or 2, as exported in `rcc_health_status`.
    pub fn as_number(self) -> u8 {
        match self {
            HealthStatus::Healthy => 0,
            HealthStatus::Degraded => 1,
            HealthStatus::Down => 2,
        }
    }
}

/// One node's memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeMemory {
    /// `host:port`.
    pub addr: String,
    /// `used_memory`.
    pub used_bytes: u64,
    /// `maxmemory` (0: no limit).
    pub max_bytes: u64,
    /// `used / max`, when there is a limit.
    pub used_ratio: Option<f64>,
}

/// Replication at a glance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicationSummary {
    /// Primaries serving slots (in standalone mode: reachable nodes whose role is primary).
    pub primaries: usize,
    /// Replicas not flagged failing and answering (in standalone mode: reachable replicas).
    pub replicas: usize,
    /// `replicas / primaries` (0 with no primary).
    pub replicas_per_primary: f64,
    /// Fewest healthy replicas of any slot-serving primary (cluster mode; 0 otherwise).
    pub min_replicas_per_primary: usize,
    /// The largest gap between a primary's `master_repl_offset` and a replica's acknowledged offset.
    pub max_lag_bytes: u64,
    /// The longest time since a replica's last acknowledgement.
    #[serde(with = "millis")]
    pub max_ack_lag: Duration,
}

/// The summary of one snapshot: overall status, nodes, slots, throughput, latency, memory, replication
/// and active alerts. Made by [`cluster_health_summary`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthSummary {
    /// Healthy, degraded or down.
    pub status: HealthStatus,
    /// When the snapshot was taken.
    #[serde(with = "unix_ms")]
    pub taken_at: SystemTime,
    /// Nodes that answered.
    pub nodes_connected: usize,
    /// Nodes known (in cluster mode: every node the cluster lists, failed ones too).
    pub nodes_total: usize,
    /// Slots served, out of [`HealthSummary::slots_total`]; `None` outside cluster mode.
    pub slots_covered: Option<u32>,
    /// 16,384.
    pub slots_total: u32,
    /// Sum of `instantaneous_ops_per_sec` over reachable nodes, as the servers count them (replicas
    /// count the replication stream they apply).
    pub ops_per_sec: u64,
    /// The median of the nodes' p50 latencies as the attached client measured them, or of the timed
    /// PINGs when no client is attached.
    #[serde(with = "millis_opt")]
    pub latency_p50: Option<Duration>,
    /// The highest of the nodes' p99 latencies (client) or PING times.
    #[serde(with = "millis_opt")]
    pub latency_p99: Option<Duration>,
    /// Keys on reachable primaries.
    pub keys: u64,
    /// Memory of every reachable node.
    pub memory: Vec<NodeMemory>,
    /// Replicas per primary and lag.
    pub replication: ReplicationSummary,
    /// The alerts active when the summary was made.
    pub active_alerts: Vec<Alert>,
    /// Facts the nodes would not tell, each said once with how to see them (for example `INFO` denied
    /// to a least-privilege ACL user): the figures above leave those nodes out, and no alert reads
    /// the gap as a failure.
    #[serde(default)]
    pub unknown: Vec<String>,
}

/// Summarizes `snapshot` with the alerts active after judging it.
///
/// ```
/// use health::{HealthStatus, NodeSnapshot, Snapshot, cluster_health_summary};
///
/// let snapshot = Snapshot {
///     nodes: vec![NodeSnapshot { addr: "10.0.0.1:6379".into(), reachable: true, ..Default::default() }],
///     ..Default::default()
/// };
/// let summary = cluster_health_summary(&snapshot, &[]);
/// assert_eq!(summary.status, HealthStatus::Healthy);
/// assert_eq!((summary.nodes_connected, summary.nodes_total, summary.slots_covered), (1, 1, None));
/// ```
pub fn cluster_health_summary(snapshot: &Snapshot, active_alerts: &[Alert]) -> HealthSummary {
    let nodes_connected = snapshot.reachable_nodes().count();
    let nodes_total = snapshot.nodes.len();
    let slots_covered = snapshot.slots_covered();
    let status = if nodes_connected == 0 || slots_covered == Some(0) {
        HealthStatus::Down
    } else if !active_alerts.is_empty()
        || nodes_connected < nodes_total
        || slots_covered.is_some_and(|c| c < u32::from(SLOT_COUNT))
    {
        HealthStatus::Degraded
    } else {
        HealthStatus::Healthy
    };
    let (latency_p50, latency_p99) = latencies(snapshot);
    HealthSummary {
        status,
        taken_at: snapshot.taken_at,
        nodes_connected,
        nodes_total,
        slots_covered,
        slots_total: u32::from(SLOT_COUNT),
        ops_per_sec: snapshot
            .reachable_nodes()
            .filter_map(|n| n.info.as_ref())
            .map(|i| i.ops_per_sec)
            .sum(),
        latency_p50,
        latency_p99,
        keys: snapshot
            .reachable_nodes()
            .filter_map(|n| n.info.as_ref())
            .filter(|i| i.role == Role::Primary)
            .map(|i| i.keys())
            .sum(),
        memory: snapshot
            .reachable_nodes()
            .filter_map(|n| {
                let info = n.info.as_ref()?;
                Some(NodeMemory {
                    addr: n.addr.clone(),
                    used_bytes: info.used_memory_bytes,
                    max_bytes: info.maxmemory_bytes,
                    used_ratio: info.memory_ratio(),
                })
            })
            .collect(),
        replication: replication(snapshot),
        active_alerts: active_alerts.to_vec(),
        unknown: unknown(snapshot),
    }
}

/// What the nodes would not tell this round, said once for all of them.
fn unknown(snapshot: &Snapshot) -> Vec<String> {
    let denied = snapshot.reachable_nodes().filter(|n| n.info_denied).count();
    if denied == 0 {
        return Vec::new();
    }
    vec![format!(
        "INFO is denied to this user on {denied} of {} nodes (an ACL without @dangerous): their memory, \
         replication offsets and lag, ops/s and keys are unknown, not zero; grant the user +info \
         (ACL SETUSER <user> +info) to see them",
        snapshot.nodes.len()
    )]
}

/// Cluster p50 and p99: from the client's per-node figures over the last interval when it timed calls
/// in it, else from PINGs.
fn latencies(snapshot: &Snapshot) -> (Option<Duration>, Option<Duration>) {
    let client: Vec<(Duration, Duration)> = snapshot
        .reachable_nodes()
        .filter_map(|n| n.client.as_ref())
        .filter_map(|c| c.latency_p50.zip(c.latency_p99))
        .collect();
    let (mut p50s, p99s): (Vec<Duration>, Vec<Duration>) = if client.is_empty() {
        snapshot
            .reachable_nodes()
            .filter_map(|n| n.ping)
            .map(|p| (p, p))
            .unzip()
    } else {
        client.into_iter().unzip()
    };
    p50s.sort_unstable();
    (p50s.get(p50s.len() / 2).copied(), p99s.into_iter().max())
}

fn replication(snapshot: &Snapshot) -> ReplicationSummary {
    let infos = || snapshot.reachable_nodes().filter_map(|n| n.info.as_ref());
    let links = || {
        infos().filter(|i| i.role == Role::Primary).flat_map(|i| {
            i.replicas
                .iter()
                .map(move |r| (i.master_repl_offset.saturating_sub(r.offset), r.lag_seconds))
        })
    };
    let max_lag_bytes = links().map(|(bytes, _)| bytes).max().unwrap_or(0);
    let max_ack_lag = Duration::from_secs(links().map(|(_, secs)| secs).max().unwrap_or(0));
    let (primaries, replicas, min_replicas) = if snapshot.cluster_mode {
        let healthy_replicas_of = |id: &str| {
            snapshot
                .topology
                .iter()
                .filter(|r| r.role == Role::Replica && r.primary_id.as_deref() == Some(id) && !r.is_failing())
                .filter(|r| snapshot.node(&r.addr).is_none_or(|n| n.reachable))
                .count()
        };
        let counts: Vec<usize> = snapshot
            .serving_primaries()
            .map(|p| healthy_replicas_of(&p.id))
            .collect();
        (
            counts.len(),
            counts.iter().sum(),
            counts.iter().copied().min().unwrap_or(0),
        )
    } else {
        let primaries = infos().filter(|i| i.role == Role::Primary).count();
        let replicas = infos().filter(|i| i.role == Role::Replica).count();
        (primaries, replicas, 0)
    };
    ReplicationSummary {
        primaries,
        replicas,
        replicas_per_primary: if primaries == 0 {
            0.0
        } else {
            replicas as f64 / primaries as f64
        },
        min_replicas_per_primary: min_replicas,
        max_lag_bytes,
        max_ack_lag,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{AlertKind, Severity};
    use crate::snapshot::{ClientNodeStats, DbKeys, NodeSnapshot, ReplicaLink, ServerInfo, TopologyNode};

    fn cluster(reachable: [bool; 6], slots_of_last_primary: (u16, u16)) -> Snapshot {
        let ranges = [(0, 5460), (5461, 10922), slots_of_last_primary];
        let mut snapshot = Snapshot {
            cluster_mode: true,
            topology_from: Some("n0".into()),
            ..Snapshot::default()
        };
        for i in 0..6 {
            let primary = i < 3;
            snapshot.topology.push(TopologyNode {
                id: format!("id{i}"),
                addr: format!("n{i}"),
                role: if primary { Role::Primary } else { Role::Replica },
                primary_id: (!primary).then(|| format!("id{}", i - 3)),
                slots: if primary {
                    vec![sharding::SlotRange::new(ranges[i].0, ranges[i].1).expect("a slot range")]
                } else {
                    vec![]
                },
                ..TopologyNode::default()
            });
            snapshot.nodes.push(NodeSnapshot {
                addr: format!("n{i}"),
                reachable: reachable[i],
                ping: reachable[i].then(|| Duration::from_micros(100 * (i as u64 + 1))),
                info: reachable[i].then(|| ServerInfo {
                    role: if primary { Role::Primary } else { Role::Replica },
                    ops_per_sec: 10,
                    used_memory_bytes: 1_000,
                    maxmemory_bytes: if i == 0 { 4_000 } else { 0 },
                    keyspace: vec![DbKeys {
                        db: 0,
                        keys: 5,
                        expires: 0,
                    }],
                    master_repl_offset: 100,
                    replicas: if primary {
                        vec![ReplicaLink {
                            addr: format!("n{}", i + 3),
                            state: "online".into(),
                            offset: 100 - i as u64,
                            lag_seconds: i as u64,
                        }]
                    } else {
                        vec![]
                    },
                    ..ServerInfo::default()
                }),
                ..NodeSnapshot::default()
            });
        }
        snapshot
    }

    fn alert() -> Alert {
        Alert {
            kind: AlertKind::MemoryHigh,
            subject: "n0".into(),
            severity: Severity::Warning,
            message: "high".into(),
            value: 0.95,
            fired_at: SystemTime::UNIX_EPOCH,
            last_seen: SystemTime::UNIX_EPOCH,
            resolved_at: None,
        }
    }

    fn check(snapshot: &Snapshot, alerts: &[Alert], expected: (HealthStatus, usize, usize, Option<u32>)) {
        let s = cluster_health_summary(snapshot, alerts);
        assert_eq!(
            (s.status, s.nodes_connected, s.nodes_total, s.slots_covered),
            expected
        );
    }

    #[test]
    fn status_follows_nodes_slots_and_alerts() {
        let all = [true; 6];
        let full = (10923, 16383);
        check(
            &cluster(all, full),
            &[],
            (HealthStatus::Healthy, 6, 6, Some(16_384)),
        );
        check(
            &cluster(all, full),
            &[alert()],
            (HealthStatus::Degraded, 6, 6, Some(16_384)),
        );
        check(
            &cluster(all, (10923, 16382)),
            &[],
            (HealthStatus::Degraded, 6, 6, Some(16_383)),
        );
        check(
            &cluster([true, true, true, true, true, false], full),
            &[],
            (HealthStatus::Degraded, 5, 6, Some(16_384)),
        );
        check(
            &cluster([true, false, true, true, true, true], full),
            &[],
            (HealthStatus::Degraded, 5, 6, Some(10_922)),
        );
        check(
            &cluster([false, false, false, true, true, true], full),
            &[],
            (HealthStatus::Down, 3, 6, Some(0)),
        );
        check(
            &cluster([false; 6], full),
            &[],
            (HealthStatus::Down, 0, 6, Some(0)),
        );
        let standalone = Snapshot {
            cluster_mode: false,
            topology: vec![],
            ..cluster(all, full)
        };
        check(&standalone, &[], (HealthStatus::Healthy, 6, 6, None));
    }

    #[test]
    fn figures_add_up_over_reachable_nodes() {
        let summary = cluster_health_summary(
            &cluster([true, true, true, true, true, false], (10923, 16383)),
            &[],
        );
        assert_eq!(summary.ops_per_sec, 50);
        assert_eq!(summary.keys, 15, "keys count on primaries only");
        assert_eq!(summary.memory.len(), 5);
        assert_eq!(summary.memory[0].used_ratio, Some(0.25));
        assert_eq!(summary.memory[1].used_ratio, None);
        // PINGs of 100..500 µs: the median and the highest.
        assert_eq!(summary.latency_p50, Some(Duration::from_micros(300)));
        assert_eq!(summary.latency_p99, Some(Duration::from_micros(500)));
        let r = &summary.replication;
        assert_eq!((r.primaries, r.replicas, r.min_replicas_per_primary), (3, 2, 0));
        assert!((r.replicas_per_primary - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!((r.max_lag_bytes, r.max_ack_lag), (2, Duration::from_secs(2)));
    }

    #[test]
    fn client_latencies_win_over_pings() {
        let mut snapshot = cluster([true; 6], (10923, 16383));
        for (i, node) in snapshot.nodes.iter_mut().enumerate() {
            node.client = Some(ClientNodeStats {
                // The last node's window holds no timed call: no data, not zero.
                latency_p50: (i != 5).then(|| Duration::from_millis(i as u64 + 1)),
                latency_p99: (i != 5).then(|| Duration::from_millis(10 * (i as u64 + 1))),
                commands: if i == 5 { 0 } else { 10 },
                ..ClientNodeStats::default()
            });
        }
        let summary = cluster_health_summary(&snapshot, &[]);
        assert_eq!(summary.latency_p50, Some(Duration::from_millis(3)));
        assert_eq!(
            summary.latency_p99,
            Some(Duration::from_millis(50)),
            "a node without timed calls in the window is left out"
        );
    }

    #[test]
    fn summaries_serialize_for_dashboards() {
        let summary = cluster_health_summary(&cluster([true; 6], (10923, 16383)), &[alert()]);
        let json = serde_json::to_value(&summary).expect("serializes");
        assert_eq!(json["status"], "degraded");
        assert_eq!(json["slots_covered"], 16_384);
        assert_eq!(json["active_alerts"][0]["kind"], "memory_high");
    }
}
