//! What one collection round saw: plain data, serializable, built by the collector or by hand.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use sharding::{SLOT_COUNT, SlotRange};

pub use replies::Role;

/// Everything one collection round saw, from every node, plus the client's own view when a
/// `ClusterClient` is attached.
///
/// Built by [`HealthChecker`](crate::HealthChecker) every interval; anomaly rules, the summary and the
/// Prometheus metrics are all computed from it. Durations serialize as milliseconds and times as Unix
/// milliseconds, so the JSON form reads well in logs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// When the round started.
    #[serde(with = "unix_ms")]
    pub taken_at: SystemTime,
    /// How long the round took, all nodes polled concurrently.
    #[serde(with = "millis")]
    pub round_duration: Duration,
    /// Whether the nodes run in cluster mode (`cluster_enabled:1`); `false` for standalone nodes.
    pub cluster_mode: bool,
    /// Every node: in cluster mode the nodes the cluster knows (failed ones too), otherwise the configured
    /// nodes. Sorted by address.
    pub nodes: Vec<NodeSnapshot>,
    /// The cluster's nodes, slots and flags (`CLUSTER NODES`), from the reachable node with the highest
    /// epoch, with failure reports counted over every reachable node's view. Empty outside cluster mode.
    pub topology: Vec<TopologyNode>,
    /// The address of the node whose view [`Snapshot::topology`] is; `None` when no node answered and
    /// the topology is the last one known.
    pub topology_from: Option<String>,
    /// Failovers the attached client reported since the previous round.
    pub client_failovers: Vec<FailoverRecord>,
}

impl Default for Snapshot {
    fn default() -> Self {
        Snapshot {
            taken_at: SystemTime::UNIX_EPOCH,
            round_duration: Duration::ZERO,
            cluster_mode: false,
            nodes: Vec::new(),
            topology: Vec::new(),
            topology_from: None,
            client_failovers: Vec::new(),
        }
    }
}

impl Snapshot {
    /// The node polled at `addr`.
    pub fn node(&self, addr: &str) -> Option<&NodeSnapshot> {
        self.nodes.iter().find(|n| n.addr == addr)
    }

    /// The topology entry for `addr`.
    pub fn topology_node(&self, addr: &str) -> Option<&TopologyNode> {
        self.topology.iter().find(|n| n.addr == addr)
    }

    /// The topology entry with cluster node ID `id`.
    pub fn topology_node_by_id(&self, id: &str) -> Option<&TopologyNode> {
        self.topology.iter().find(|n| n.id == id)
    }

    /// Primaries that serve at least one slot.
    pub fn serving_primaries(&self) -> impl Iterator<Item = &TopologyNode> {
        self.topology
            .iter()
            .filter(|n| n.role == Role::Primary && !n.slots.is_empty())
    }

    /// Whether `addr` serves data: a primary with slots in cluster mode, any node otherwise.
    pub fn serves_data(&self, addr: &str) -> bool {
        if !self.cluster_mode {
            return true;
        }
        self.topology_node(addr)
            .is_some_and(|n| n.role == Role::Primary && !n.slots.is_empty())
    }

    /// Nodes that answered this round.
    pub fn reachable_nodes(&self) -> impl Iterator<Item = &NodeSnapshot> {
        self.nodes.iter().filter(|n| n.reachable)
    }

    /// Slots served right now: slots of primaries that answered this round and that no reachable node
    /// flags as failing. `None` outside cluster mode.
    pub fn slots_covered(&self) -> Option<u32> {
        if !self.cluster_mode {
            return None;
        }
        let covered = self
            .serving_primaries()
            .filter(|p| !p.is_failing())
            .filter(|p| self.node(&p.addr).is_some_and(|n| n.reachable))
            .map(TopologyNode::slot_count)
            .sum::<u32>();
        Some(covered.min(u32::from(SLOT_COUNT)))
    }
}

/// What one node answered (or why it did not).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeSnapshot {
    /// `host:port` as the cluster announces it (or as configured, for standalone nodes).
    pub addr: String,
    /// The cluster node ID, when known.
    pub id: Option<String>,
    /// Whether the node answered every command of the round within the node timeout.
    pub reachable: bool,
    /// Why it did not, e.g. `timed out after 1s`.
    pub error: Option<String>,
    /// Round trip of one `PING` on an open connection.
    #[serde(with = "millis_opt")]
    pub ping: Option<Duration>,
    /// Parsed `INFO`; `None` when the node did not answer, or denied `INFO` to this user.
    pub info: Option<ServerInfo>,
    /// Whether the node answered but its ACL denied `INFO` to this user (a least-privilege user without
    /// `@dangerous`): what only `INFO` tells (memory, replication offsets, ops/s, keys, role outside
    /// cluster mode) is unknown, and the node is not down for it.
    #[serde(default)]
    pub info_denied: bool,
    /// Parsed `CLUSTER INFO` (cluster mode only).
    pub cluster_info: Option<ClusterInfo>,
    /// The attached client's statistics for this node.
    pub client: Option<ClientNodeStats>,
}

impl NodeSnapshot {
    /// The latency the anomaly rules judge: the client's p99 over the last interval when a client is
    /// attached and timed calls to this node in it, otherwise the timed `PING`.
    pub fn latency(&self) -> Option<Duration> {
        self.client
            .as_ref()
            .and_then(|stats| stats.latency_p99)
            .or(self.ping)
    }

    /// The role the node reports in `INFO replication`.
    pub fn role(&self) -> Option<Role> {
        self.info.as_ref().map(|i| i.role)
    }
}

/// The fields of `INFO` the health model uses.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerInfo {
    /// `role`.
    pub role: Role,
    /// `redis_version`.
    pub redis_version: String,
    /// `run_id`: changes when the process restarts.
    pub run_id: String,
    /// `uptime_in_seconds`.
    pub uptime_seconds: u64,
    /// `cluster_enabled`.
    pub cluster_enabled: bool,
    /// `loading`: the node is loading its data set (after a restart or a full resync).
    pub loading: bool,
    /// `used_memory`.
    pub used_memory_bytes: u64,
    /// `maxmemory`; 0 means no limit.
    pub maxmemory_bytes: u64,
    /// `instantaneous_ops_per_sec`.
    pub ops_per_sec: u64,
    /// `connected_clients`.
    pub connected_clients: u64,
    /// `dbN:keys=..,expires=..` lines.
    pub keyspace: Vec<DbKeys>,
    /// `evicted_keys` since start.
    pub evicted_keys: u64,
    /// `keyspace_hits` since start.
    pub keyspace_hits: u64,
    /// `keyspace_misses` since start.
    pub keyspace_misses: u64,
    /// `master_repl_offset`: on a primary, how far its replication stream has gone.
    pub master_repl_offset: u64,
    /// On a primary, its replicas as it sees them (`slaveN:` lines).
    pub replicas: Vec<ReplicaLink>,
    /// On a replica, its link to its primary.
    pub primary_link: Option<PrimaryLink>,
}

impl ServerInfo {
    /// Keys in every database.
    pub fn keys(&self) -> u64 {
        self.keyspace.iter().map(|db| db.keys).sum()
    }

    /// `used_memory / maxmemory`, when a limit is set.
    pub fn memory_ratio(&self) -> Option<f64> {
        (self.maxmemory_bytes > 0).then(|| self.used_memory_bytes as f64 / self.maxmemory_bytes as f64)
    }
}

/// One `dbN:` line of `INFO keyspace`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbKeys {
    /// Database number.
    pub db: u32,
    /// Keys.
    pub keys: u64,
    /// Keys with a TTL.
    pub expires: u64,
}

/// A replica as its primary sees it (`slaveN:ip=..,port=..,state=..,offset=..,lag=..`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaLink {
    /// `ip:port`.
    pub addr: String,
    /// `online`, `wait_bgsave`, `send_bulk`, ...
    pub state: String,
    /// The replication offset the replica last acknowledged.
    pub offset: u64,
    /// Seconds since the replica's last acknowledgement.
    pub lag_seconds: u64,
}

/// A replica's link to its primary (`master_host`, `master_link_status`, `slave_repl_offset`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrimaryLink {
    /// The primary's `host:port`.
    pub addr: String,
    /// `master_link_status:up`.
    pub link_up: bool,
    /// `slave_repl_offset`.
    pub offset: u64,
}

/// The fields of `CLUSTER INFO`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterInfo {
    /// `cluster_state:ok`.
    pub state_ok: bool,
    /// `cluster_slots_assigned`.
    pub slots_assigned: u32,
    /// `cluster_slots_ok`: assigned to nodes not flagged PFAIL or FAIL.
    pub slots_ok: u32,
    /// `cluster_slots_pfail`.
    pub slots_pfail: u32,
    /// `cluster_slots_fail`.
    pub slots_fail: u32,
    /// `cluster_known_nodes`.
    pub known_nodes: u32,
    /// `cluster_size`: primaries serving at least one slot.
    pub size: u32,
    /// `cluster_current_epoch`.
    pub current_epoch: u64,
    /// `cluster_my_epoch`.
    pub my_epoch: u64,
}

/// One node of the cluster as `CLUSTER NODES` lists it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopologyNode {
    /// The 40-character node ID.
    pub id: String,
    /// `ip:port`, empty when the node has no known address.
    pub addr: String,
    /// Primary or replica.
    pub role: Role,
    /// For a replica, its primary's node ID.
    pub primary_id: Option<String>,
    /// The flags other than the role (`myself`, `fail?`, `fail`, `handshake`, `noaddr`, `nofailover`),
    /// as the viewing node printed them.
    pub flags: Vec<String>,
    /// Whether the viewing node's cluster-bus link to this node is connected.
    pub link_connected: bool,
    /// The node's configuration epoch.
    pub config_epoch: u64,
    /// The slot ranges it serves. Serialized as `[first, last]` pairs.
    #[serde(with = "slot_ranges")]
    pub slots: Vec<SlotRange>,
    /// How many reachable nodes' views flag this node `fail?` (PFAIL).
    pub pfail_reports: u32,
    /// How many reachable nodes' views flag this node `fail`.
    pub fail_reports: u32,
}

impl TopologyNode {
    /// Whether the viewing node printed `flag`.
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    /// Number of slots served.
    pub fn slot_count(&self) -> u32 {
        self.slots.iter().map(|r| r.len() as u32).sum()
    }

    /// Whether any reachable node flags it PFAIL or FAIL.
    pub fn is_failing(&self) -> bool {
        self.pfail_reports > 0 || self.fail_reports > 0
    }
}

/// The attached client's own statistics for one node (from `ClusterClient::node_stats`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientNodeStats {
    /// Median command latency over the last collection interval (the client's latency window);
    /// `None` when the client timed no call to this node in that interval.
    #[serde(with = "millis_opt")]
    pub latency_p50: Option<Duration>,
    /// 99th-percentile command latency over the last collection interval; `None` as for
    /// `latency_p50`.
    #[serde(with = "millis_opt")]
    pub latency_p99: Option<Duration>,
    /// Commands sent.
    pub commands: u64,
    /// Commands that failed.
    pub errors: u64,
    /// `MOVED` and `ASK` redirects received.
    pub redirects: u64,
}

/// A failover: slots moved from a primary to one of its replicas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverRecord {
    /// When it was seen.
    #[serde(with = "unix_ms")]
    pub at: SystemTime,
    /// The primary that served the slots before.
    pub old_primary: String,
    /// The former replica that serves them now.
    pub new_primary: String,
    /// Who saw it.
    pub seen_by: FailoverSource,
}

/// Who noticed a failover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailoverSource {
    /// Two consecutive snapshots' topologies differ: a replica became a primary.
    Topology,
    /// The attached `ClusterClient` reported it.
    Client,
}

/// `Duration` as floating-point milliseconds.
pub(crate) mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64() * 1000.0)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let ms = f64::deserialize(d)?;
        Duration::try_from_secs_f64(ms / 1000.0).map_err(serde::de::Error::custom)
    }
}

/// `Option<Duration>` as floating-point milliseconds or null.
pub(crate) mod millis_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&(d.as_secs_f64() * 1000.0)),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<f64>::deserialize(d)?
            .map(|ms| Duration::try_from_secs_f64(ms / 1000.0).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// `SystemTime` as Unix milliseconds.
pub(crate) mod unix_ms {
    use std::time::{Duration, SystemTime};

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        let ms = t
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        s.serialize_u64(u64::try_from(ms).unwrap_or(u64::MAX))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let ms = u64::deserialize(d)?;
        SystemTime::UNIX_EPOCH
            .checked_add(Duration::from_millis(ms))
            .ok_or_else(|| serde::de::Error::custom("time out of range"))
    }
}

/// Slot ranges as `[first, last]` pairs, the form snapshots have always been written in.
pub(crate) mod slot_ranges {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use sharding::SlotRange;

    pub(crate) fn serialize<S: Serializer>(ranges: &[SlotRange], s: S) -> Result<S::Ok, S::Error> {
        let pairs: Vec<(u16, u16)> = ranges.iter().map(|r| (r.start(), r.end())).collect();
        pairs.serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SlotRange>, D::Error> {
        Vec::<(u16, u16)>::deserialize(d)?
            .into_iter()
            .map(|(first, last)| SlotRange::new(first, last).map_err(serde::de::Error::custom))
            .collect()
    }
}

/// `Option<SystemTime>` as Unix milliseconds or null.
pub(crate) mod unix_ms_opt {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Wrapped(#[serde(with = "super::unix_ms")] SystemTime);

    pub(crate) fn serialize<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
        t.map(Wrapped).serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SystemTime>, D::Error> {
        Ok(Option::<Wrapped>::deserialize(d)?.map(|w| w.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(first: u16, last: u16) -> SlotRange {
        SlotRange::new(first, last).expect("a slot range")
    }

    fn check(snapshot: &Snapshot) {
        let json = serde_json::to_string(snapshot).expect("a snapshot serializes");
        let back: Snapshot = serde_json::from_str(&json).expect("and reads back");
        assert_eq!(&back, snapshot, "round trip through {json}");
    }

    #[test]
    fn snapshots_round_trip_through_json() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        check(&Snapshot::default());
        check(&Snapshot {
            taken_at: at,
            round_duration: Duration::from_micros(12_500),
            cluster_mode: true,
            nodes: vec![NodeSnapshot {
                addr: "127.0.0.1:7000".into(),
                id: Some("a".repeat(40)),
                reachable: true,
                error: None,
                ping: Some(Duration::from_micros(250)),
                info: Some(ServerInfo {
                    keyspace: vec![DbKeys {
                        db: 0,
                        keys: 10,
                        expires: 2,
                    }],
                    replicas: vec![ReplicaLink {
                        addr: "127.0.0.1:7003".into(),
                        state: "online".into(),
                        offset: 99,
                        lag_seconds: 1,
                    }],
                    ..ServerInfo::default()
                }),
                cluster_info: Some(ClusterInfo {
                    state_ok: true,
                    slots_ok: 16_384,
                    ..ClusterInfo::default()
                }),
                client: Some(ClientNodeStats {
                    latency_p50: Some(Duration::from_micros(100)),
                    latency_p99: Some(Duration::from_micros(900)),
                    commands: 5,
                    errors: 0,
                    redirects: 1,
                }),
                info_denied: false,
            }],
            topology: vec![TopologyNode {
                id: "a".repeat(40),
                addr: "127.0.0.1:7000".into(),
                slots: vec![range(0, 5460)],
                ..TopologyNode::default()
            }],
            topology_from: Some("127.0.0.1:7000".into()),
            client_failovers: vec![FailoverRecord {
                at,
                old_primary: "127.0.0.1:7000".into(),
                new_primary: "127.0.0.1:7003".into(),
                seen_by: FailoverSource::Client,
            }],
        });
    }

    #[test]
    fn slot_ranges_serialize_as_pairs_and_bad_ones_do_not_read() {
        let node = TopologyNode {
            slots: vec![range(0, 5460), range(16_383, 16_383)],
            ..TopologyNode::default()
        };
        let json = serde_json::to_value(&node).expect("serializes");
        assert_eq!(json["slots"], serde_json::json!([[0, 5460], [16_383, 16_383]]));
        for bad in [serde_json::json!([[5, 2]]), serde_json::json!([[0, 16_384]])] {
            let mut json = json.clone();
            json["slots"] = bad;
            assert!(serde_json::from_value::<TopologyNode>(json).is_err());
        }
    }

    #[test]
    fn times_and_durations_serialize_as_milliseconds() {
        let snapshot = Snapshot {
            taken_at: SystemTime::UNIX_EPOCH + Duration::from_millis(1_500),
            round_duration: Duration::from_micros(2_500),
            ..Snapshot::default()
        };
        let json: serde_json::Value = serde_json::to_value(&snapshot).expect("serializes");
        assert_eq!(json["taken_at"], 1_500);
        assert_eq!(json["round_duration"], 2.5);
    }

    #[test]
    fn slot_counts_cover_inclusive_ranges() {
        let node = |slots: Vec<(u16, u16)>| TopologyNode {
            slots: slots.into_iter().map(|(a, b)| range(a, b)).collect(),
            ..TopologyNode::default()
        };
        assert_eq!(node(vec![]).slot_count(), 0);
        assert_eq!(node(vec![(0, 0)]).slot_count(), 1);
        assert_eq!(node(vec![(0, 5460), (5461, 5461)]).slot_count(), 5462);
        assert_eq!(node(vec![(0, 16_383)]).slot_count(), u32::from(SLOT_COUNT));
    }
}
