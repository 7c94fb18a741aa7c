//! The I/O shell: one collection round polls every node concurrently over its own connection and
//! assembles the replies into a [`Snapshot`].
//!
//! Each node is probed through cluster-client ([`ClusterClient::probe_node`] when a client is attached,
//! a [`NodeProber`] for bare node addresses), on a fail-fast probe connection of the node's own, kept
//! between rounds while it stays connected and dropped at the first error. So the health check never
//! waits behind the application's traffic, never retries on its own, and one node that hangs (SIGSTOP)
//! or is gone costs at most the node timeout, while every other node is polled in parallel.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use cluster_client::{ClusterClient, Error as ClientError, NodeProbe, NodeProber};
use cluster_config::ClusterConfig;

use crate::parse::{parse_cluster_info, parse_cluster_nodes, parse_info};
use crate::snapshot::{NodeSnapshot, Snapshot, TopologyNode};

/// What one node answered in one round.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Replies {
    /// Round trip of `PING` on an open connection.
    pub(crate) ping: Duration,
    /// `INFO` (default sections); `None` when the node's ACL denies it to this user.
    pub(crate) info: Option<String>,
    /// `CLUSTER INFO` and `CLUSTER NODES`, when the node runs in cluster mode.
    pub(crate) cluster: Option<(String, String)>,
}

/// One node's poll: its address as polled, and its replies or why there are none.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NodePoll {
    pub(crate) addr: String,
    pub(crate) outcome: Result<Replies, String>,
}

impl From<NodeProbe> for Replies {
    fn from(probe: NodeProbe) -> Replies {
        Replies {
            ping: probe.ping,
            info: probe.info,
            cluster: probe.cluster.map(|view| (view.info, view.nodes)),
        }
    }
}

/// What probes the nodes: the attached client's node connections, or probes of bare addresses.
#[derive(Debug)]
pub(crate) enum Prober {
    /// [`ClusterClient::probe_node`].
    Client(ClusterClient),
    /// A [`NodeProber`] with the configuration's credentials.
    Nodes(Box<NodeProber>),
}

/// What the collector remembers between rounds.
#[derive(Debug, Clone, Default)]
pub(crate) struct Memory {
    /// The last topology read from a node.
    pub(crate) topology: Vec<TopologyNode>,
    /// Whether the nodes were last seen in cluster mode.
    pub(crate) cluster_mode: bool,
}

impl Memory {
    /// The addresses to poll: every node of the last topology with an address.
    fn addrs(&self) -> Vec<String> {
        self.topology
            .iter()
            .filter(|n| !n.addr.is_empty() && !n.has_flag("handshake"))
            .map(|n| n.addr.clone())
            .collect()
    }
}

/// Polls nodes. Its prober holds one probe connection per node between rounds.
#[derive(Debug)]
pub(crate) struct Collector {
    seeds: Vec<String>,
    node_timeout: Duration,
    prober: Prober,
    memory: Mutex<Memory>,
}

impl Collector {
    /// A collector for the nodes of `config` (seeds in cluster mode, the servers otherwise), probing
    /// through `prober`.
    pub(crate) fn new(config: &ClusterConfig, node_timeout: Duration, prober: Prober) -> Collector {
        Collector {
            seeds: config.nodes().iter().map(ToString::to_string).collect(),
            node_timeout,
            prober,
            memory: Mutex::new(Memory::default()),
        }
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, Memory> {
        // The guarded data is replaced whole, never left half-written, so a poisoned lock is usable.
        self.memory.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One collection round: polls the known nodes (or the seeds), then any node their views reveal
    /// that was not polled yet, and assembles the snapshot.
    pub(crate) async fn collect(&self) -> Snapshot {
        let taken_at = SystemTime::now();
        let started = Instant::now();
        let memory = self.memory().clone();
        let known = memory.addrs();
        let mut polled: BTreeSet<String> = BTreeSet::new();
        let first = if known.is_empty() {
            self.seeds.clone()
        } else {
            known
        };
        let mut polls = self.poll_all(first, &mut polled).await;
        // No node of the last topology answered: the seeds may know where the cluster is now.
        if !polls.iter().any(|p| p.outcome.is_ok()) {
            let seeds = self.seeds.clone();
            polls.extend(self.poll_all(seeds, &mut polled).await);
        }
        let discovered: Vec<String> = polls
            .iter()
            .filter_map(|p| p.outcome.as_ref().ok()?.cluster.as_ref())
            .filter_map(|(_, nodes)| parse_cluster_nodes(nodes).ok())
            .flatten()
            .filter(|n| !n.addr.is_empty() && !n.has_flag("handshake"))
            .map(|n| n.addr)
            .collect();
        polls.extend(self.poll_all(discovered, &mut polled).await);
        let snapshot = assemble(taken_at, started.elapsed(), &polls, &memory);
        let mut remembered = self.memory();
        remembered.cluster_mode = snapshot.cluster_mode;
        if snapshot.topology_from.is_some() {
            remembered.topology = snapshot.topology.clone();
        }
        snapshot
    }

    /// Polls every address of `addrs` not in `polled` yet, concurrently.
    async fn poll_all(&self, addrs: Vec<String>, polled: &mut BTreeSet<String>) -> Vec<NodePoll> {
        let fresh: Vec<String> = addrs.into_iter().filter(|a| polled.insert(a.clone())).collect();
        let polls = fresh.iter().map(|addr| async move {
            NodePoll {
                addr: addr.clone(),
                outcome: self.poll_node(addr).await,
            }
        });
        futures::future::join_all(polls).await
    }

    /// Polls one node within the node timeout: `PING` (timed), then `INFO`, `CLUSTER INFO` and
    /// `CLUSTER NODES` pipelined.
    async fn poll_node(&self, addr: &str) -> Result<Replies, String> {
        let probe = match &self.prober {
            Prober::Client(client) => client.probe_node(addr, self.node_timeout).await,
            Prober::Nodes(prober) => prober.probe(addr, self.node_timeout).await,
        };
        probe.map(Replies::from).map_err(|error| match error {
            ClientError::Timeout { .. } => format!("no reply within {:?}", self.node_timeout),
            // The connection's or the server's own words, as a node error names the node already.
            ClientError::Connection { message, .. } | ClientError::Server { message, .. } => message,
            other => other.to_string(),
        })
    }

    /// Closes the probe connections this collector opened (in the background); an attached client
    /// keeps its own.
    pub(crate) fn close(&self) {
        if let Prober::Nodes(prober) = &self.prober {
            prober.close();
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.close();
    }
}

/// Builds the snapshot of one round from the polls (pure).
///
/// In cluster mode the node list is the cluster's own (from the topology), so a seed given by host name
/// and the same node announced by IP count once, and a node that is down still shows, as the cluster
/// still lists it. The topology is the view of the reachable node with the highest current epoch (the
/// most recent configuration), with PFAIL/FAIL reports counted over every reachable node's view.
pub(crate) fn assemble(
    taken_at: SystemTime,
    round_duration: Duration,
    polls: &[NodePoll],
    memory: &Memory,
) -> Snapshot {
    struct Parsed {
        node: NodeSnapshot,
        view: Option<Vec<TopologyNode>>,
        epoch: u64,
    }
    let mut parsed: BTreeMap<String, Parsed> = BTreeMap::new();
    for poll in polls {
        let mut node = NodeSnapshot {
            addr: poll.addr.clone(),
            ..NodeSnapshot::default()
        };
        let mut view = None;
        match &poll.outcome {
            Ok(replies) => {
                node.reachable = true;
                node.ping = Some(replies.ping);
                node.info = replies.info.as_deref().map(parse_info);
                node.info_denied = replies.info.is_none();
                if let Some((cluster_info, cluster_nodes)) = &replies.cluster {
                    match parse_cluster_info(cluster_info) {
                        Ok(info) => node.cluster_info = Some(info),
                        Err(e) => node.error = Some(e.to_string()),
                    }
                    match parse_cluster_nodes(cluster_nodes) {
                        Ok(entries) => view = Some(entries),
                        Err(e) => node.error = Some(e.to_string()),
                    }
                }
            }
            Err(reason) => node.error = Some(reason.clone()),
        }
        // A node knows its own ID and the address the cluster knows it by.
        let canonical = view
            .as_ref()
            .and_then(|v| v.iter().find(|e| e.has_flag("myself")))
            .filter(|me| !me.addr.is_empty())
            .map(|me| me.addr.clone())
            .unwrap_or_else(|| poll.addr.clone());
        let epoch = node.cluster_info.as_ref().map_or(0, |c| c.current_epoch);
        node.addr = canonical.clone();
        let entry = Parsed { node, view, epoch };
        match parsed.get(&canonical) {
            // Keep the reply over a failure when a node was polled under two names.
            Some(existing) if existing.node.reachable || !entry.node.reachable => {}
            _ => {
                parsed.insert(canonical, entry);
            }
        }
    }
    // A node in cluster mode says so in INFO, or (INFO denied to this user) by answering the cluster
    // commands; with no node telling either way, the last round's answer stands.
    let says_cluster = |p: &Parsed| {
        p.node.info.as_ref().is_some_and(|i| i.cluster_enabled)
            || p.node.cluster_info.is_some()
            || p.view.is_some()
    };
    let told = parsed
        .values()
        .any(|p| p.node.info.is_some() || p.node.cluster_info.is_some() || p.view.is_some());
    let cluster_mode = if told {
        parsed.values().any(says_cluster)
    } else {
        memory.cluster_mode
    };
    if !cluster_mode {
        return Snapshot {
            taken_at,
            round_duration,
            cluster_mode,
            nodes: parsed.into_values().map(|p| p.node).collect(),
            ..Snapshot::default()
        };
    }
    let reference = parsed
        .iter()
        .filter(|(_, p)| p.view.is_some())
        // Highest epoch wins; among equals, the first address (max_by keeps the last of equals).
        .rev()
        .max_by_key(|(_, p)| p.epoch)
        .map(|(addr, p)| (addr.clone(), p.view.clone().unwrap_or_default()));
    let (topology, topology_from) = match reference {
        Some((from, view)) => {
            let views: Vec<&Vec<TopologyNode>> = parsed.values().filter_map(|p| p.view.as_ref()).collect();
            let topology = view
                .into_iter()
                .map(|mut entry| {
                    entry.flags.retain(|f| f != "myself");
                    let reports = |flag: &str| {
                        let count = views
                            .iter()
                            .filter(|v| v.iter().any(|e| e.id == entry.id && e.has_flag(flag)))
                            .count();
                        u32::try_from(count).unwrap_or(u32::MAX)
                    };
                    entry.pfail_reports = reports("fail?");
                    entry.fail_reports = reports("fail");
                    entry
                })
                .collect();
            (topology, Some(from))
        }
        None => (memory.topology.clone(), None),
    };
    let mut nodes: Vec<NodeSnapshot> = topology
        .iter()
        .filter(|n| !n.addr.is_empty() && !n.has_flag("handshake"))
        .map(|entry| {
            let mut node = match parsed.get(&entry.addr) {
                Some(p) => p.node.clone(),
                None => NodeSnapshot {
                    addr: entry.addr.clone(),
                    error: Some("not polled this round".into()),
                    ..NodeSnapshot::default()
                },
            };
            node.id = Some(entry.id.clone());
            node
        })
        .collect();
    if topology.is_empty() {
        // In cluster mode but no view at all: report what was polled.
        nodes = parsed.into_values().map(|p| p.node).collect();
    }
    nodes.sort_by(|a, b| a.addr.cmp(&b.addr));
    Snapshot {
        taken_at,
        round_duration,
        cluster_mode,
        nodes,
        topology,
        topology_from,
        client_failovers: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::Role;

    const IDS: [&str; 4] = [
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
        "cccccccccccccccccccccccccccccccccccccccc",
        "dddddddddddddddddddddddddddddddddddddddd",
    ];

    /// `CLUSTER NODES` as node `me` sees a cluster of primaries 7000 (0-8191) and 7001 (8192-16383)
    /// with replicas 7002 of 7000 and 7003 of 7001; `flags` adds flags to a port's line.
    fn view(me: u16, flags: &[(u16, &str)]) -> String {
        (0..4u16)
            .map(|i| {
                let port = 7000 + i;
                let mut f: Vec<&str> = Vec::new();
                if port == me {
                    f.push("myself");
                }
                f.push(if i < 2 { "master" } else { "slave" });
                f.extend(flags.iter().filter(|(p, _)| *p == port).map(|(_, flag)| *flag));
                let primary = if i < 2 { "-" } else { IDS[usize::from(i - 2)] };
                let slots = match i {
                    0 => " 0-8191",
                    1 => " 8192-16383",
                    _ => "",
                };
                format!(
                    "{} 127.0.0.1:{port}@{} {} {primary} 0 0 1 connected{slots}\n",
                    IDS[usize::from(i)],
                    port + 10_000,
                    f.join(",")
                )
            })
            .collect()
    }

    fn reply(me: u16, epoch: u64, flags: &[(u16, &str)]) -> Result<Replies, String> {
        let role = if me < 7002 { "master" } else { "slave" };
        Ok(Replies {
            ping: Duration::from_micros(u64::from(me)),
            info: Some(format!(
                "role:{role}\r\ncluster_enabled:1\r\ndb0:keys={me},expires=0\r\n"
            )),
            cluster: Some((
                format!("cluster_state:ok\r\ncluster_slots_ok:16384\r\ncluster_current_epoch:{epoch}\r\n"),
                view(me, flags),
            )),
        })
    }

    fn poll(addr: &str, outcome: Result<Replies, String>) -> NodePoll {
        NodePoll {
            addr: addr.into(),
            outcome,
        }
    }

    /// Cluster mode, where the topology came from, `(addr, reachable)` per node, and `(pfail, fail)`
    /// reports per topology entry.
    type Expected<'a> = (bool, Option<&'a str>, Vec<(&'a str, bool)>, Vec<(u32, u32)>);

    fn check(polls: Vec<NodePoll>, memory: &Memory, expected: Expected<'_>) -> Snapshot {
        let snapshot = assemble(SystemTime::UNIX_EPOCH, Duration::from_millis(3), &polls, memory);
        let nodes: Vec<(&str, bool)> = snapshot
            .nodes
            .iter()
            .map(|n| (n.addr.as_str(), n.reachable))
            .collect();
        let reports: Vec<(u32, u32)> = snapshot
            .topology
            .iter()
            .map(|n| (n.pfail_reports, n.fail_reports))
            .collect();
        assert_eq!(
            (
                snapshot.cluster_mode,
                snapshot.topology_from.as_deref(),
                nodes,
                reports
            ),
            expected,
            "{snapshot:#?}"
        );
        snapshot
    }

    #[test]
    fn a_healthy_cluster_assembles_every_node_once() {
        let snapshot = check(
            vec![
                poll("127.0.0.1:7000", reply(7000, 5, &[])),
                // The same node polled under a host name counts once, under the address it announces.
                poll("localhost:7000", reply(7000, 5, &[])),
                poll("127.0.0.1:7001", reply(7001, 5, &[])),
                poll("127.0.0.1:7002", reply(7002, 5, &[])),
                poll("127.0.0.1:7003", reply(7003, 5, &[])),
            ],
            &Memory::default(),
            (
                true,
                Some("127.0.0.1:7000"),
                vec![
                    ("127.0.0.1:7000", true),
                    ("127.0.0.1:7001", true),
                    ("127.0.0.1:7002", true),
                    ("127.0.0.1:7003", true),
                ],
                vec![(0, 0); 4],
            ),
        );
        assert_eq!(snapshot.slots_covered(), Some(16_384));
        assert_eq!(snapshot.nodes[2].id.as_deref(), Some(IDS[2]));
        assert_eq!(
            snapshot.nodes[3].info.as_ref().map(|i| (i.role, i.keys())),
            Some((Role::Replica, 7003))
        );
        assert!(snapshot.topology.iter().all(|n| !n.has_flag("myself")));
    }

    #[test]
    fn a_dead_node_stays_listed_and_reports_are_counted_over_views() {
        check(
            vec![
                poll("127.0.0.1:7000", Err("connection refused".into())),
                poll("127.0.0.1:7001", reply(7001, 5, &[(7000, "fail?")])),
                poll("127.0.0.1:7002", reply(7002, 5, &[(7000, "fail")])),
                poll("127.0.0.1:7003", reply(7003, 6, &[(7000, "fail?")])),
            ],
            &Memory::default(),
            (
                true,
                Some("127.0.0.1:7003"),
                vec![
                    ("127.0.0.1:7000", false),
                    ("127.0.0.1:7001", true),
                    ("127.0.0.1:7002", true),
                    ("127.0.0.1:7003", true),
                ],
                vec![(2, 1), (0, 0), (0, 0), (0, 0)],
            ),
        );
    }

    #[test]
    fn with_no_reply_the_last_topology_is_kept_as_stale() {
        let first = assemble(
            SystemTime::UNIX_EPOCH,
            Duration::ZERO,
            &[poll("127.0.0.1:7000", reply(7000, 1, &[]))],
            &Memory::default(),
        );
        let memory = Memory {
            topology: first.topology,
            cluster_mode: true,
        };
        let snapshot = check(
            vec![
                poll("127.0.0.1:7000", Err("timed out".into())),
                poll("127.0.0.1:7001", Err("timed out".into())),
            ],
            &memory,
            (
                true,
                None,
                vec![
                    ("127.0.0.1:7000", false),
                    ("127.0.0.1:7001", false),
                    ("127.0.0.1:7002", false),
                    ("127.0.0.1:7003", false),
                ],
                vec![(0, 0); 4],
            ),
        );
        assert_eq!(snapshot.slots_covered(), Some(0));
        assert_eq!(snapshot.nodes[2].error.as_deref(), Some("not polled this round"));
    }

    #[test]
    fn standalone_nodes_are_reported_as_polled() {
        let standalone = |keys: u32| {
            Ok(Replies {
                ping: Duration::from_micros(50),
                info: Some(format!("role:master\ncluster_enabled:0\ndb0:keys={keys}\n")),
                cluster: None,
            })
        };
        check(
            vec![
                poll("10.0.0.2:6379", standalone(3)),
                poll("10.0.0.1:6379", Err("refused".into())),
            ],
            &Memory::default(),
            (
                false,
                None,
                vec![("10.0.0.1:6379", false), ("10.0.0.2:6379", true)],
                vec![],
            ),
        );
        // Nothing answered and nothing is remembered: not a cluster as far as anyone knows.
        check(
            vec![poll("10.0.0.1:6379", Err("refused".into()))],
            &Memory::default(),
            (false, None, vec![("10.0.0.1:6379", false)], vec![]),
        );
    }

    #[test]
    fn unreadable_cluster_replies_are_node_errors_not_panics() {
        let broken = Ok(Replies {
            ping: Duration::ZERO,
            info: Some("cluster_enabled:1\n".into()),
            cluster: Some(("garbage".into(), "too few fields".into())),
        });
        let snapshot = assemble(
            SystemTime::UNIX_EPOCH,
            Duration::ZERO,
            &[poll("127.0.0.1:7000", broken)],
            &Memory::default(),
        );
        let node = &snapshot.nodes[0];
        assert!(
            node.reachable && node.error.as_deref().is_some_and(|e| e.contains("CLUSTER NODES")),
            "{node:?}"
        );
        assert!(snapshot.cluster_mode && snapshot.topology.is_empty());
    }
}
