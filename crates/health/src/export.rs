//! Prometheus metrics: names, descriptions, one update per round, and the `/metrics` endpoint.
//!
//! Every name starts with `rcc_`, the product's one prefix: users run redis_exporter next to us, and
//! a series named like one of its `redis_*` series (with another meaning and other labels) would mix
//! with it in every query and alert that does not name the job. Per-node series start with
//! `rcc_node_` and carry a `node` label holding the node's `host:port` (never empty: a node without
//! an address has no series), because one endpoint serves every node; cluster-wide judgements and
//! alerts have no `node` label. The attached client's own series (`rcc_client_*`, latency as a
//! histogram) are recorded by `cluster-client` as calls happen, not copied here: percentiles come
//! from `histogram_quantile` over them, which aggregates across nodes and processes where
//! precomputed quantile gauges cannot.
//!
//! Updates go through the `metrics` facade, so they cost nothing until a recorder is installed, and any
//! recorder works; [`install_prometheus`] installs the Prometheus one with its HTTP listener.
//!
//! `metrics` cannot remove a series, so a series that stops meaning anything is set to `NaN` (which
//! compares false in every alert rule) rather than left at its last value: the replication series of
//! a replica that left its primary, the healthy-replica count of a node that no longer serves slots.
//! Keys of a database that `INFO` no longer lists (it omits empty ones) are set to 0. Series of a node
//! that does not answer keep their last value and `rcc_node_up` says 0; rules that read them check
//! `rcc_node_up`.

#[cfg(feature = "prometheus")]
use std::net::SocketAddr;

use metrics::{Unit, counter, describe_counter, describe_gauge, gauge};
#[cfg(feature = "prometheus")]
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::alerts::AlertEvent;
use crate::distribution::DistributionDimension;
#[cfg(feature = "prometheus")]
use crate::error::Error;
use crate::monitor::Observation;
use crate::rules::Severity;
use crate::snapshot::{Role, Snapshot};

/// Every metric this crate records: name, kind (`gauge` or `counter`), unit, description.
pub const METRICS: &[(&str, &str, &str)] = &[
    // Per node, from INFO and CLUSTER INFO.
    (
        "rcc_node_up",
        "gauge",
        "1 if the node answered the last health round, 0 if not.",
    ),
    (
        "rcc_node_uptime_seconds",
        "gauge",
        "Seconds since the node started (INFO uptime_in_seconds).",
    ),
    (
        "rcc_node_role",
        "gauge",
        "1 for the node's current role label (primary or replica), 0 for the other.",
    ),
    ("rcc_node_memory_used_bytes", "gauge", "INFO used_memory."),
    (
        "rcc_node_memory_max_bytes",
        "gauge",
        "INFO maxmemory; 0 means no limit.",
    ),
    (
        "rcc_node_ops_per_second",
        "gauge",
        "INFO instantaneous_ops_per_sec.",
    ),
    ("rcc_node_connected_clients", "gauge", "INFO connected_clients."),
    ("rcc_node_db_keys", "gauge", "Keys per database (INFO keyspace)."),
    (
        "rcc_node_db_keys_expiring",
        "gauge",
        "Keys with a TTL per database (INFO keyspace).",
    ),
    ("rcc_node_evicted_keys_total", "counter", "INFO evicted_keys."),
    ("rcc_node_keyspace_hits_total", "counter", "INFO keyspace_hits."),
    (
        "rcc_node_keyspace_misses_total",
        "counter",
        "INFO keyspace_misses.",
    ),
    (
        "rcc_node_connected_replicas",
        "gauge",
        "Replicas connected to this primary.",
    ),
    ("rcc_node_repl_offset_bytes", "gauge", "INFO master_repl_offset."),
    (
        "rcc_replica_ack_offset_bytes",
        "gauge",
        "A replica's acknowledged offset, as its primary sees it.",
    ),
    (
        "rcc_replica_ack_lag_seconds",
        "gauge",
        "Seconds since a replica's last acknowledgement.",
    ),
    (
        "rcc_node_primary_link_up",
        "gauge",
        "On a replica: 1 if its link to its primary is up.",
    ),
    (
        "rcc_node_cluster_state_ok",
        "gauge",
        "CLUSTER INFO cluster_state: 1 ok, 0 fail.",
    ),
    (
        "rcc_node_cluster_slots_assigned",
        "gauge",
        "CLUSTER INFO cluster_slots_assigned.",
    ),
    (
        "rcc_node_cluster_slots_ok",
        "gauge",
        "CLUSTER INFO cluster_slots_ok.",
    ),
    (
        "rcc_node_cluster_slots_pfail",
        "gauge",
        "CLUSTER INFO cluster_slots_pfail.",
    ),
    (
        "rcc_node_cluster_slots_fail",
        "gauge",
        "CLUSTER INFO cluster_slots_fail.",
    ),
    (
        "rcc_node_cluster_known_nodes",
        "gauge",
        "CLUSTER INFO cluster_known_nodes.",
    ),
    ("rcc_node_cluster_size", "gauge", "CLUSTER INFO cluster_size."),
    (
        "rcc_node_cluster_current_epoch",
        "gauge",
        "CLUSTER INFO cluster_current_epoch.",
    ),
    (
        "rcc_node_cluster_my_epoch",
        "gauge",
        "CLUSTER INFO cluster_my_epoch.",
    ),
    // Per node, our own.
    (
        "rcc_node_ping_seconds",
        "gauge",
        "Round trip of the health round's PING.",
    ),
    (
        "rcc_node_slots",
        "gauge",
        "Slots the node serves, per the cluster topology.",
    ),
    (
        "rcc_node_pfail_reports",
        "gauge",
        "Reachable nodes that flag this node PFAIL.",
    ),
    (
        "rcc_node_fail_reports",
        "gauge",
        "Reachable nodes that flag this node FAIL.",
    ),
    (
        "rcc_node_healthy_replicas",
        "gauge",
        "Healthy replicas of a slot-serving primary.",
    ),
    (
        "rcc_replication_lag_bytes",
        "gauge",
        "Bytes a replica is behind its primary (label replica).",
    ),
    // Cluster-wide.
    (
        "rcc_health_status",
        "gauge",
        "Overall status: 0 healthy, 1 degraded, 2 down.",
    ),
    (
        "rcc_nodes_connected",
        "gauge",
        "Nodes that answered the last round.",
    ),
    ("rcc_nodes_total", "gauge", "Nodes known."),
    (
        "rcc_slots_covered",
        "gauge",
        "Slots served by a reachable, non-failing primary (of 16384).",
    ),
    (
        "rcc_ops_per_second",
        "gauge",
        "Sum of instantaneous_ops_per_sec over reachable nodes.",
    ),
    (
        "rcc_replicas_per_primary",
        "gauge",
        "Healthy replicas per slot-serving primary.",
    ),
    (
        "rcc_failovers_total",
        "counter",
        "Failovers observed (topology changes and client reports).",
    ),
    (
        "rcc_alert_active",
        "gauge",
        "1 while the alert (labels alert, subject, severity) is active.",
    ),
    (
        "rcc_alerts_active",
        "gauge",
        "Alerts active after the last round, per severity (label severity: warning, critical).",
    ),
    (
        "rcc_health_round_seconds",
        "gauge",
        "Duration of the last collection round.",
    ),
    ("rcc_health_rounds_total", "counter", "Collection rounds run."),
    (
        "rcc_distribution_max_over_mean",
        "gauge",
        "Per dimension (slots, keys, memory): the busiest primary's share over the mean share (1 = even; NaN \
         when not judged this round).",
    ),
    (
        "rcc_distribution_coefficient_of_variation",
        "gauge",
        "Per dimension (slots, keys, memory): standard deviation over mean of the primaries' shares (0 = \
         even; NaN when not judged this round).",
    ),
    (
        "rcc_health_trend_bytes",
        "gauge",
        "Memory the trend ring's samples take (budget health::TREND_BUDGET_BYTES, 8 MiB).",
    ),
];

/// Describes every metric of this crate to the installed recorder (HELP lines and units). Idempotent.
/// [`install_prometheus`] also describes `cluster-client`'s.
pub fn describe_metrics() {
    for &(name, kind, help) in METRICS {
        let unit = if name.ends_with("_bytes") {
            Unit::Bytes
        } else if name.ends_with("_seconds") {
            Unit::Seconds
        } else {
            Unit::Count
        };
        if kind == "counter" {
            describe_counter!(name, unit, help);
        } else {
            describe_gauge!(name, unit, help);
        }
    }
}

/// Installs the Prometheus recorder as this process's global `metrics` recorder and serves
/// `GET /metrics` on `addr`, on a thread of its own (so it keeps serving whichever runtime the caller
/// uses, or none).
///
/// Call it once, at start-up: `metrics` allows one global recorder per process, so a second call (or a
/// call after another library installed one) returns [`Error::RecorderAlreadyInstalled`] and serves
/// nothing. The returned handle renders the same text the endpoint serves. It blocks the calling thread
/// for the moment it takes to bind the listener.
///
/// Libraries record through the `metrics` facade and never call this: installing the process's one
/// recorder is the application's decision. Only with the `prometheus` feature (on by default).
#[cfg(feature = "prometheus")]
pub fn install_prometheus(addr: SocketAddr) -> Result<PrometheusHandle, Error> {
    // Everything happens on the endpoint's own thread: its runtime must also be dropped there when
    // installing fails, as dropping a runtime inside the caller's async context would panic.
    let (reply, result) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("health-prometheus".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = reply.send(Err(Error::Listen {
                        addr,
                        detail: format!("cannot start its runtime: {e}"),
                    }));
                    return;
                }
            };
            let built = {
                let _entered = runtime.enter();
                // Latencies are histograms with buckets, so Prometheus computes quantiles over any
                // window and across nodes; without buckets the exporter would render summaries.
                PrometheusBuilder::new()
                    .with_http_listener(addr)
                    .set_buckets_for_metric(
                        Matcher::Suffix("_duration_seconds".into()),
                        cluster_client::DURATION_BUCKETS_SECONDS,
                    )
                    .and_then(|b| b.build())
            };
            let (recorder, exporter) = match built {
                Ok(built) => built,
                Err(e) => {
                    let _ = reply.send(Err(Error::Listen {
                        addr,
                        detail: e.to_string(),
                    }));
                    return;
                }
            };
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                let _ = reply.send(Err(Error::RecorderAlreadyInstalled));
                return;
            }
            let _ = reply.send(Ok(handle));
            if let Err(e) = runtime.block_on(exporter) {
                tracing::error!(%addr, error = ?e, "the Prometheus endpoint stopped");
            }
        })
        .map_err(|e| Error::Listen {
            addr,
            detail: format!("cannot start its thread: {e}"),
        })?;
    let handle = result.recv().map_err(|_| Error::Listen {
        addr,
        detail: "its thread ended before it started".into(),
    })??;
    describe_metrics();
    cluster_client::describe_metrics();
    Ok(handle)
}

/// Records one round's snapshot, summary, alert changes and failovers in the installed recorder.
pub fn record_metrics(observation: &Observation) {
    let snapshot = &observation.snapshot;
    record_nodes(snapshot, observation.previous.as_deref());
    let summary = &observation.summary;
    gauge!("rcc_health_status").set(f64::from(summary.status.as_number()));
    gauge!("rcc_nodes_connected").set(summary.nodes_connected as f64);
    gauge!("rcc_nodes_total").set(summary.nodes_total as f64);
    if let Some(covered) = summary.slots_covered {
        gauge!("rcc_slots_covered").set(f64::from(covered));
    }
    gauge!("rcc_ops_per_second").set(summary.ops_per_sec as f64);
    gauge!("rcc_replicas_per_primary").set(summary.replication.replicas_per_primary);
    gauge!("rcc_health_trend_bytes").set(observation.trend_bytes as f64);
    for dimension in DistributionDimension::ALL {
        let judged = observation
            .distribution
            .iter()
            .find(|d| d.dimension == dimension)
            .map(|d| &d.report);
        gauge!("rcc_distribution_max_over_mean", "dimension" => dimension.as_str())
            .set(judged.map_or(f64::NAN, |r| r.max_over_mean));
        gauge!("rcc_distribution_coefficient_of_variation", "dimension" => dimension.as_str())
            .set(judged.map_or(f64::NAN, |r| r.coefficient_of_variation));
    }
    counter!("rcc_failovers_total").increment(observation.new_failovers.len() as u64);
    for alert in &summary.active_alerts {
        alert_gauge(alert).set(1.0);
    }
    for severity in [Severity::Warning, Severity::Critical] {
        let active = summary
            .active_alerts
            .iter()
            .filter(|a| a.severity == severity)
            .count();
        gauge!("rcc_alerts_active", "severity" => severity.as_str()).set(active as f64);
    }
    for event in &observation.events {
        if let AlertEvent::Resolved(alert) = event {
            alert_gauge(alert).set(0.0);
        }
    }
    gauge!("rcc_health_round_seconds").set(snapshot.round_duration.as_secs_f64());
    counter!("rcc_health_rounds_total").increment(1);
}

fn alert_gauge(alert: &crate::alerts::Alert) -> metrics::Gauge {
    gauge!(
        "rcc_alert_active",
        "alert" => alert.kind.as_str(),
        "subject" => alert.subject.clone(),
        "severity" => alert.severity.as_str()
    )
}

/// The per-replica series of a primary, labelled alike (`node` the primary, `replica` the replica's
/// `host:port`), so that a rule over several of them sees one replica as one label set.
fn replica_gauges(primary: &str, replica: &str, offset: f64, lag_seconds: f64, lag_bytes: f64) {
    let labels = [("node", primary.to_string()), ("replica", replica.to_string())];
    gauge!("rcc_replica_ack_offset_bytes", &labels).set(offset);
    gauge!("rcc_replica_ack_lag_seconds", &labels).set(lag_seconds);
    gauge!("rcc_replication_lag_bytes", &labels).set(lag_bytes);
}

fn record_nodes(snapshot: &Snapshot, previous: Option<&Snapshot>) {
    for node in &snapshot.nodes {
        let before = previous
            .and_then(|p| p.node(&node.addr))
            .and_then(|n| n.info.as_ref());
        let addr = node.addr.clone();
        let g = |name: &'static str| gauge!(name, "node" => addr.clone());
        g("rcc_node_up").set(if node.reachable { 1.0 } else { 0.0 });
        if let Some(ping) = node.ping {
            g("rcc_node_ping_seconds").set(ping.as_secs_f64());
        }
        if let Some(info) = &node.info {
            g("rcc_node_uptime_seconds").set(info.uptime_seconds as f64);
            for role in [Role::Primary, Role::Replica] {
                gauge!("rcc_node_role", "node" => addr.clone(), "role" => role.as_str())
                    .set(if info.role == role { 1.0 } else { 0.0 });
            }
            g("rcc_node_memory_used_bytes").set(info.used_memory_bytes as f64);
            g("rcc_node_memory_max_bytes").set(info.maxmemory_bytes as f64);
            g("rcc_node_ops_per_second").set(info.ops_per_sec as f64);
            g("rcc_node_connected_clients").set(info.connected_clients as f64);
            for db in &info.keyspace {
                let label = format!("db{}", db.db);
                gauge!("rcc_node_db_keys", "node" => addr.clone(), "db" => label.clone()).set(db.keys as f64);
                gauge!("rcc_node_db_keys_expiring", "node" => addr.clone(), "db" => label)
                    .set(db.expires as f64);
            }
            let emptied = before
                .into_iter()
                .flat_map(|b| &b.keyspace)
                .filter(|old| !info.keyspace.iter().any(|db| db.db == old.db));
            for db in emptied {
                let label = format!("db{}", db.db);
                gauge!("rcc_node_db_keys", "node" => addr.clone(), "db" => label.clone()).set(0.0);
                gauge!("rcc_node_db_keys_expiring", "node" => addr.clone(), "db" => label).set(0.0);
            }
            counter!("rcc_node_evicted_keys_total", "node" => addr.clone()).absolute(info.evicted_keys);
            counter!("rcc_node_keyspace_hits_total", "node" => addr.clone()).absolute(info.keyspace_hits);
            counter!("rcc_node_keyspace_misses_total", "node" => addr.clone()).absolute(info.keyspace_misses);
            g("rcc_node_repl_offset_bytes").set(info.master_repl_offset as f64);
            g("rcc_node_connected_replicas").set(info.replicas.len() as f64);
            for replica in &info.replicas {
                let lag = info.master_repl_offset.saturating_sub(replica.offset) as f64;
                replica_gauges(
                    &addr,
                    &replica.addr,
                    replica.offset as f64,
                    replica.lag_seconds as f64,
                    lag,
                );
            }
            let departed = before
                .into_iter()
                .flat_map(|b| &b.replicas)
                .filter(|old| !info.replicas.iter().any(|r| r.addr == old.addr));
            for replica in departed {
                replica_gauges(&addr, &replica.addr, f64::NAN, f64::NAN, f64::NAN);
            }
            let link_up = match &info.primary_link {
                Some(link) if link.link_up => 1.0,
                Some(_) => 0.0,
                None => f64::NAN,
            };
            g("rcc_node_primary_link_up").set(link_up);
        }
        if let Some(cluster) = &node.cluster_info {
            g("rcc_node_cluster_state_ok").set(if cluster.state_ok { 1.0 } else { 0.0 });
            g("rcc_node_cluster_slots_assigned").set(f64::from(cluster.slots_assigned));
            g("rcc_node_cluster_slots_ok").set(f64::from(cluster.slots_ok));
            g("rcc_node_cluster_slots_pfail").set(f64::from(cluster.slots_pfail));
            g("rcc_node_cluster_slots_fail").set(f64::from(cluster.slots_fail));
            g("rcc_node_cluster_known_nodes").set(f64::from(cluster.known_nodes));
            g("rcc_node_cluster_size").set(f64::from(cluster.size));
            g("rcc_node_cluster_current_epoch").set(cluster.current_epoch as f64);
            g("rcc_node_cluster_my_epoch").set(cluster.my_epoch as f64);
        }
    }
    for node in snapshot.topology.iter().filter(|n| !n.addr.is_empty()) {
        let addr = node.addr.clone();
        gauge!("rcc_node_slots", "node" => addr.clone()).set(f64::from(node.slot_count()));
        gauge!("rcc_node_pfail_reports", "node" => addr.clone()).set(f64::from(node.pfail_reports));
        gauge!("rcc_node_fail_reports", "node" => addr.clone()).set(f64::from(node.fail_reports));
        let healthy = if node.role == Role::Primary && !node.slots.is_empty() {
            snapshot
                .topology
                .iter()
                .filter(|r| r.role == Role::Replica && r.primary_id.as_deref() == Some(node.id.as_str()))
                .filter(|r| !r.is_failing() && snapshot.node(&r.addr).is_none_or(|n| n.reachable))
                .count() as f64
        } else {
            f64::NAN
        };
        gauge!("rcc_node_healthy_replicas", "node" => addr).set(healthy);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use metrics_exporter_prometheus::PrometheusBuilder;

    use super::*;
    use crate::monitor::Monitor;
    use crate::rules::Thresholds;
    use crate::snapshot::{
        ClientNodeStats, ClusterInfo, DbKeys, NodeSnapshot, PrimaryLink, ReplicaLink, ServerInfo,
        TopologyNode,
    };
    use crate::trends::TrendRing;

    /// A primary with one replica, every optional part filled, so that every metric is recorded.
    fn snapshot() -> Snapshot {
        let info = |role: Role| ServerInfo {
            role,
            used_memory_bytes: 1_000,
            maxmemory_bytes: 2_000,
            keyspace: vec![DbKeys {
                db: 0,
                keys: 42,
                expires: 7,
            }],
            master_repl_offset: 500,
            replicas: if role == Role::Primary {
                vec![ReplicaLink {
                    addr: "127.0.0.1:7001".into(),
                    state: "online".into(),
                    offset: 400,
                    lag_seconds: 1,
                }]
            } else {
                vec![]
            },
            primary_link: (role == Role::Replica).then(|| PrimaryLink {
                addr: "127.0.0.1:7000".into(),
                link_up: true,
                offset: 400,
            }),
            ..ServerInfo::default()
        };
        let node = |port: u16, role: Role| NodeSnapshot {
            addr: cluster_config::NodeAddr::new("127.0.0.1", port).to_string(),
            reachable: true,
            ping: Some(Duration::from_micros(250)),
            info: Some(info(role)),
            cluster_info: Some(ClusterInfo {
                state_ok: true,
                slots_assigned: 16_384,
                slots_ok: 16_384,
                ..ClusterInfo::default()
            }),
            client: Some(ClientNodeStats {
                commands: 3,
                redirects: 2,
                ..ClientNodeStats::default()
            }),
            ..NodeSnapshot::default()
        };
        Snapshot {
            cluster_mode: true,
            nodes: vec![node(7000, Role::Primary), node(7001, Role::Replica)],
            topology: vec![
                TopologyNode {
                    id: "p".into(),
                    addr: "127.0.0.1:7000".into(),
                    slots: vec![sharding::SlotRange::all()],
                    ..TopologyNode::default()
                },
                TopologyNode {
                    id: "r".into(),
                    addr: "127.0.0.1:7001".into(),
                    role: Role::Replica,
                    primary_id: Some("p".into()),
                    ..TopologyNode::default()
                },
            ],
            topology_from: Some("127.0.0.1:7000".into()),
            ..Snapshot::default()
        }
    }

    /// Renders what one observed round records, with a local recorder (the global one is left alone).
    fn render(snapshots: Vec<Snapshot>) -> String {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let mut monitor = Monitor::new(Thresholds::default(), TrendRing::new(4)).expect("valid thresholds");
        metrics::with_local_recorder(&recorder, || {
            describe_metrics();
            for snapshot in snapshots {
                record_metrics(&monitor.observe(snapshot));
            }
        });
        handle.render()
    }

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn every_listed_metric_is_recorded_and_nothing_else() {
        let text = render(vec![snapshot()]);
        let recorded: BTreeSet<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| l.split(['{', ' ']).next())
            .collect();
        let listed: BTreeSet<&str> = METRICS.iter().map(|(name, _, _)| *name).collect();
        // The alert gauge only appears once an alert fires; this healthy round fires none.
        let missing: Vec<&&str> = listed
            .difference(&recorded)
            .filter(|n| **n != "rcc_alert_active")
            .collect();
        let unlisted: Vec<&&str> = recorded.difference(&listed).collect();
        assert!(
            missing.is_empty() && unlisted.is_empty(),
            "missing {missing:?}, unlisted {unlisted:?}\n{text}"
        );
    }

    #[test]
    fn values_and_labels_match_the_snapshot() {
        let mut down = snapshot();
        down.nodes[1].reachable = false;
        down.nodes[1].info = None;
        // The primary lost its replica and its keys (INFO omits an empty db).
        let primary = down.nodes[0].info.as_mut().expect("primary info");
        primary.replicas.clear();
        primary.keyspace.clear();
        let text = render(vec![snapshot(), down]);
        let cases = [
            ("rcc_node_up{node=\"127.0.0.1:7000\"}", Some(1.0)),
            ("rcc_node_up{node=\"127.0.0.1:7001\"}", Some(0.0)),
            ("rcc_node_db_keys{node=\"127.0.0.1:7000\",db=\"db0\"}", Some(0.0)),
            ("rcc_node_db_keys{node=\"127.0.0.1:7001\",db=\"db0\"}", Some(42.0)),
            (
                "rcc_node_cluster_slots_ok{node=\"127.0.0.1:7000\"}",
                Some(16_384.0),
            ),
            ("rcc_node_cluster_state_ok{node=\"127.0.0.1:7000\"}", Some(1.0)),
            ("rcc_node_connected_replicas{node=\"127.0.0.1:7000\"}", Some(0.0)),
            ("rcc_node_primary_link_up{node=\"127.0.0.1:7001\"}", Some(1.0)),
            (
                "rcc_node_role{node=\"127.0.0.1:7001\",role=\"replica\"}",
                Some(1.0),
            ),
            (
                "rcc_node_role{node=\"127.0.0.1:7001\",role=\"primary\"}",
                Some(0.0),
            ),
            ("rcc_node_slots{node=\"127.0.0.1:7000\"}", Some(16_384.0)),
            ("rcc_node_healthy_replicas{node=\"127.0.0.1:7000\"}", Some(0.0)),
            ("rcc_slots_covered", Some(16_384.0)),
            ("rcc_nodes_connected", Some(1.0)),
            ("rcc_health_status", Some(1.0)),
            ("rcc_health_rounds_total", Some(2.0)),
            (
                "rcc_alert_active{alert=\"replica_down\",subject=\"127.0.0.1:7001\",severity=\"warning\"}",
                Some(1.0),
            ),
        ];
        for (series, expected) in cases {
            assert_eq!(value(&text, series), expected, "{series} in\n{text}");
        }
        // Series that stopped meaning anything read NaN: the departed replica's, and the healthy-replica
        // count of a node that serves no slots.
        for series in [
            "rcc_replication_lag_bytes{node=\"127.0.0.1:7000\",replica=\"127.0.0.1:7001\"}",
            "rcc_replica_ack_offset_bytes{node=\"127.0.0.1:7000\",replica=\"127.0.0.1:7001\"}",
            "rcc_node_healthy_replicas{node=\"127.0.0.1:7001\"}",
            "rcc_node_primary_link_up{node=\"127.0.0.1:7000\"}",
        ] {
            assert!(
                value(&text, series).is_some_and(f64::is_nan),
                "{series} in\n{text}"
            );
        }
        assert!(
            text.contains("# HELP rcc_node_cluster_slots_ok CLUSTER INFO cluster_slots_ok."),
            "{text}"
        );
    }
}
