//! A Redis Cluster of real processes: bring-up, waits, fault injection and slot migration.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use replies::ClusterNode;
use serde::{Deserialize, Serialize};
use sharding::{SLOT_COUNT, SlotRange};

use crate::admin::Conn;
use crate::node::Node;
use crate::server::NodeConfig;
use crate::tls::{TlsClientAuth, TlsFiles};
use crate::topology::port;
use crate::{Error, Role};

/// The shape of a cluster to start.
///
/// A test tool's settings, so plain public fields with a [`Default`] and no builder: callers change
/// the fields they care about with struct-update syntax
/// (`LocalClusterConfig { masters: 1, ..Default::default() }`), and
/// [`LocalCluster::start`] checks the values.
#[derive(Debug, Clone)]
pub struct LocalClusterConfig {
    /// Number of primaries; slots are split evenly between them.
    pub masters: usize,
    /// Replicas of each primary.
    pub replicas_per_master: usize,
    /// `redis.conf` directives for every node.
    pub settings: NodeConfig,
    /// How long the whole bring-up may take before it fails.
    pub ready_timeout: Duration,
    /// Node `i` listens on `base_port + i` (and its cluster bus on that + 10000); `None` picks free ports.
    pub base_port: Option<u16>,
    /// Extra cluster-enabled nodes started beside the cluster but not joined to it (no `CLUSTER MEET`),
    /// for tests and tools that grow the cluster: see [`LocalCluster::spares`].
    pub spares: usize,
    /// `Some` starts TLS-only nodes (`tls-cluster yes`, `tls-replication yes`) with certificates
    /// generated in the cluster's directory: see [`LocalCluster::tls`] and
    /// [`LocalCluster::config_builder`]. `None` (the default) starts plain nodes.
    pub tls: Option<TlsClientAuth>,
}

impl Default for LocalClusterConfig {
    fn default() -> Self {
        LocalClusterConfig {
            masters: 3,
            replicas_per_master: 1,
            settings: NodeConfig::test_defaults(),
            ready_timeout: Duration::from_secs(30),
            base_port: None,
            spares: 0,
            tls: None,
        }
    }
}

#[derive(Debug)]
enum ClusterDir {
    Temp(#[allow(dead_code)] tempfile::TempDir),
    Kept(PathBuf),
}

impl ClusterDir {
    fn path(&self) -> &Path {
        match self {
            ClusterDir::Temp(t) => t.path(),
            ClusterDir::Kept(p) => p,
        }
    }
}

/// What a detached cluster writes to `state.json`, so that another process can find and stop it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterState {
    /// Primaries at start.
    pub masters: usize,
    /// Replicas per primary at start.
    pub replicas_per_master: usize,
    /// Every node.
    pub nodes: Vec<NodeState>,
    /// The certificates, for a TLS cluster.
    #[serde(default)]
    pub tls: Option<TlsFiles>,
}

/// One node in [`ClusterState`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeState {
    /// Client port.
    pub port: u16,
    /// Process ID.
    pub pid: u32,
    /// Data directory.
    pub dir: PathBuf,
    /// Role at start.
    pub initial_role: Role,
    /// A spare node: started, not joined to the cluster at start.
    #[serde(default)]
    pub spare: bool,
}

/// A running Redis Cluster of local `redis-server` processes.
///
/// Dropping it kills every process it started (by PID), also while a test unwinds from a panic, unless
/// it was started detached for `cargo xtask cluster-up`.
#[derive(Debug)]
pub struct LocalCluster {
    nodes: Vec<Node>,
    spares: Vec<Node>,
    masters: usize,
    replicas_per_master: usize,
    dir: ClusterDir,
    detached: bool,
    tls: Option<Arc<TlsFiles>>,
}

impl LocalCluster {
    /// Starts `config.masters` primaries with `config.replicas_per_master` replicas each in a temporary
    /// directory and returns once every node reports `cluster_state:ok`, all 16,384 slots are assigned,
    /// every node sees the same primaries, and every replica's link to its primary is up.
    pub async fn start(config: LocalClusterConfig) -> Result<LocalCluster, Error> {
        let dir = tempfile::Builder::new()
            .prefix("local-cluster-")
            .tempdir()
            .map_err(|e| Error::io("creating a temporary directory", e))?;
        Self::start_in(config, ClusterDir::Temp(dir), false).await
    }

    /// Starts a cluster whose processes outlive this process, in `dir`, and writes `dir/state.json`
    /// so that [`LocalCluster::attach`] can find it later. Dropping the returned value stops nothing.
    pub async fn start_detached(config: LocalClusterConfig, dir: &Path) -> Result<LocalCluster, Error> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let cluster = Self::start_in(config, ClusterDir::Kept(dir.to_path_buf()), true).await?;
        cluster.write_state()?;
        Ok(cluster)
    }

    /// A handle to a detached cluster described by `dir/state.json`. Nodes whose process is gone show
    /// as not running. Dropping the handle stops nothing; [`LocalCluster::shutdown`] does.
    pub fn attach(dir: &Path) -> Result<LocalCluster, Error> {
        let path = state_path(dir);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::State {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        let state: ClusterState = serde_json::from_str(&text).map_err(|e| Error::State {
            path: path.clone(),
            detail: format!("unreadable ({e})"),
        })?;
        let tls = state.tls.map(Arc::new);
        let adopt =
            |n: &NodeState| Node::adopt(n.port, n.dir.clone(), n.pid, n.initial_role, true, tls.clone());
        let nodes = state.nodes.iter().filter(|n| !n.spare).map(adopt).collect();
        let spares = state.nodes.iter().filter(|n| n.spare).map(adopt).collect();
        Ok(LocalCluster {
            nodes,
            spares,
            masters: state.masters,
            replicas_per_master: state.replicas_per_master,
            dir: ClusterDir::Kept(dir.to_path_buf()),
            detached: true,
            tls,
        })
    }

    /// The default 3 + 3 cluster shared by every caller in this process that holds the returned `Arc`.
    ///
    /// It stops when the last `Arc` is dropped, and a later call starts a fresh one. Tests that only read
    /// and write (with keys of their own) share it; tests that inject faults start their own cluster and
    /// hold [`crate::test_lock::exclusive`].
    pub async fn shared() -> Result<Arc<LocalCluster>, Error> {
        static SHARED: tokio::sync::Mutex<Weak<LocalCluster>> = tokio::sync::Mutex::const_new(Weak::new());
        let mut slot = SHARED.lock().await;
        if let Some(cluster) = slot.upgrade() {
            return Ok(cluster);
        }
        let cluster = Arc::new(LocalCluster::start(LocalClusterConfig::default()).await?);
        *slot = Arc::downgrade(&cluster);
        Ok(cluster)
    }

    async fn start_in(
        config: LocalClusterConfig,
        dir: ClusterDir,
        detached: bool,
    ) -> Result<LocalCluster, Error> {
        if config.masters == 0 || config.masters > usize::from(SLOT_COUNT) {
            return Err(Error::Invalid(format!(
                "masters must be 1..=16384, got {}",
                config.masters
            )));
        }
        let started = Instant::now();
        let total = config.masters * (1 + config.replicas_per_master);
        let all = total + config.spares;
        if let Some(base) = config.base_port
            && (base as usize) + all + 10_000 > u16::MAX as usize
        {
            return Err(Error::Invalid(format!(
                "base port {base} leaves no room for {all} nodes and their cluster bus ports (+10000); \
                 pick a base port below {}",
                u16::MAX as usize - all - 10_000
            )));
        }
        let tls = match config.tls {
            Some(auth) => Some(Arc::new(TlsFiles::generate(&dir.path().join("tls"), auth)?)),
            None => None,
        };
        let mut cluster = LocalCluster {
            nodes: Vec::with_capacity(total),
            spares: Vec::with_capacity(config.spares),
            masters: config.masters,
            replicas_per_master: config.replicas_per_master,
            dir,
            detached,
            tls: tls.clone(),
        };
        // Nodes start one after another: each start is a few milliseconds, and on two cores starting
        // them concurrently is no faster. If any start fails, `cluster` drops and kills the others.
        for index in 0..total {
            let role = if index < config.masters {
                Role::Primary
            } else {
                Role::Replica
            };
            let node_dir = cluster.dir.path().join(format!("node-{index}"));
            let port = config.base_port.map(|base| base + index as u16);
            let node = Node::start(
                node_dir,
                &config.settings,
                true,
                role,
                detached,
                port,
                tls.clone(),
            )
            .await?;
            cluster.nodes.push(node);
        }
        for index in total..all {
            let node_dir = cluster.dir.path().join(format!("node-{index}"));
            let port = config.base_port.map(|base| base + index as u16);
            let node = Node::start(
                node_dir,
                &config.settings,
                true,
                Role::Primary,
                detached,
                port,
                tls.clone(),
            )
            .await?;
            cluster.spares.push(node);
        }
        cluster.form().await?;
        let remaining = config.ready_timeout.saturating_sub(started.elapsed());
        cluster
            .wait_until_healthy(remaining.max(Duration::from_secs(1)))
            .await?;
        cluster
            .bump_replication_offsets(remaining.max(Duration::from_secs(1)))
            .await?;
        Ok(cluster)
    }

    /// CLUSTER MEET, ADDSLOTSRANGE and REPLICATE, as `redis-cli --cluster create` does.
    async fn form(&self) -> Result<(), Error> {
        let mut conns = Vec::with_capacity(self.nodes.len());
        for node in &self.nodes {
            conns.push(node.conn().await?);
        }
        let mut ids = Vec::with_capacity(self.nodes.len());
        for conn in &conns {
            ids.push(conn.call_str::<String>(&["CLUSTER", "MYID"]).await?);
        }
        for node in &self.nodes[1..] {
            let port = node.port().to_string();
            conns[0]
                .call_str::<()>(&["CLUSTER", "MEET", "127.0.0.1", &port])
                .await?;
        }
        for (i, conn) in conns.iter().take(self.masters).enumerate() {
            let range = slot_range(i, self.masters);
            conn.call_str::<()>(&[
                "CLUSTER",
                "ADDSLOTSRANGE",
                &range.start().to_string(),
                &range.end().to_string(),
            ])
            .await?;
        }
        let total = self.nodes.len();
        let all = &conns;
        wait_until(
            "every node to know every other node",
            Duration::from_secs(20),
            || async move {
                for conn in all {
                    let entries = cluster_nodes(conn).await?;
                    let known = entries
                        .iter()
                        .filter(|e| !e.has_flag("handshake") && port(e) != 0)
                        .count();
                    if known < total {
                        return Ok(Err(format!("{} knows {known} of {total} nodes", conn.addr())));
                    }
                }
                Ok(Ok(()))
            },
        )
        .await?;
        for (index, conn) in conns.iter().enumerate().skip(self.masters) {
            let primary = (index - self.masters) / self.replicas_per_master.max(1);
            let primary_id = ids[primary].as_str();
            wait_until(
                "a replica to accept CLUSTER REPLICATE",
                Duration::from_secs(10),
                || async move {
                    match conn.call_str::<()>(&["CLUSTER", "REPLICATE", primary_id]).await {
                        Ok(_) => Ok(Ok(())),
                        Err(e) => Ok(Err(e.to_string())),
                    }
                },
            )
            .await?;
        }
        for conn in conns {
            conn.close();
        }
        Ok(())
    }

    /// Sends one write (`FLUSHALL` on an empty primary) through every replication link, so that replica
    /// offsets are non-zero: Redis 7.0 leaves replicas with offset 0 out of `CLUSTER SLOTS`.
    async fn bump_replication_offsets(&self, timeout: Duration) -> Result<(), Error> {
        let primaries = self.primaries().await?;
        for primary in &primaries {
            primary.command::<(), _, _>(["FLUSHALL"]).await?;
        }
        let primaries = &primaries;
        wait_until(
            "replicas to catch up with their primary's offset",
            timeout,
            || async move {
                for primary in primaries {
                    let info = primary.info("replication").await?;
                    let offset = info.master_repl_offset.unwrap_or(0);
                    let replicas = info.get_u64("connected_slaves").unwrap_or(0);
                    for i in 0..replicas {
                        let replica = info.replicas.iter().find(|r| u64::from(r.index) == i);
                        let replica_offset = replica.map_or(0, |r| r.offset);
                        if offset == 0 || replica_offset < offset {
                            return Ok(Err(format!(
                                "{}: replica {i} at {replica_offset}, behind offset {offset}",
                                primary.addr()
                            )));
                        }
                    }
                }
                Ok(Ok(()))
            },
        )
        .await
    }

    /// Every node, primaries first (in the order they were started), then replicas.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The spare nodes ([`LocalClusterConfig::spares`]): cluster-enabled, running, not joined at start.
    /// Joining one (`CLUSTER MEET`, slots or `CLUSTER REPLICATE`) is the caller's move; once joined it
    /// shows in [`LocalCluster::primaries`] and [`LocalCluster::replicas_of`] like any node.
    pub fn spares(&self) -> &[Node] {
        &self.spares
    }

    /// The node listening on `port` (spares included).
    pub fn node_by_port(&self, port: u16) -> Option<&Node> {
        self.nodes.iter().chain(&self.spares).find(|n| n.port() == port)
    }

    /// `host:port` of every node, for seeds such as `REDIS_CLUSTER_NODES`.
    pub fn seeds(&self) -> Vec<String> {
        self.nodes.iter().map(Node::addr).collect()
    }

    /// The comma-separated node list for `REDIS_CLUSTER_NODES` (`rediss://host:port` entries for a TLS
    /// cluster).
    pub fn nodes_env(&self) -> String {
        let scheme = if self.tls.is_some() { "rediss://" } else { "" };
        self.seeds()
            .iter()
            .map(|seed| format!("{scheme}{seed}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The certificates of a TLS cluster; `None` for a plain one.
    pub fn tls(&self) -> Option<&TlsFiles> {
        self.tls.as_deref()
    }

    /// A configuration builder for this cluster: its seeds, and for a TLS cluster `rediss://` seeds,
    /// the CA and the client certificate and key (which a node that does not require them ignores).
    /// The environment is not read; callers add the settings they need and call `build()`.
    pub fn config_builder(&self) -> cluster_config::ClusterConfigBuilder {
        let builder = cluster_config::ClusterConfig::builder().nodes(self.nodes_env().split(','));
        match &self.tls {
            Some(tls) => tls.configure(builder),
            None => builder,
        }
    }

    /// Primaries at start.
    pub fn masters(&self) -> usize {
        self.masters
    }

    /// Replicas per primary at start.
    pub fn replicas_per_master(&self) -> usize {
        self.replicas_per_master
    }

    /// The cluster's directory (one `node-N` folder per node).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The cluster as one running node sees it (`CLUSTER NODES`), from the first node that answers.
    pub async fn topology(&self) -> Result<Vec<ClusterNode>, Error> {
        let mut last = None;
        for node in self.nodes.iter().filter(|n| n.is_running()) {
            match node.conn().await {
                Ok(conn) => {
                    let result = cluster_nodes(&conn).await;
                    conn.close();
                    match result {
                        Ok(entries) => return Ok(entries),
                        Err(e) => last = Some(e),
                    }
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::Invalid("no node is running".into())))
    }

    /// The primaries that serve slots now, as the first answering node sees it, in slot order.
    pub async fn primaries(&self) -> Result<Vec<&Node>, Error> {
        let mut entries: Vec<ClusterNode> = self
            .topology()
            .await?
            .into_iter()
            .filter(|e| e.is_primary() && !e.slots.is_empty())
            .collect();
        entries.sort_by_key(|e| e.slots.iter().map(|s| s.start()).min());
        Ok(entries
            .iter()
            .filter_map(|e| self.node_by_port(port(e)))
            .collect())
    }

    /// The node serving `slot` now.
    pub async fn primary_for_slot(&self, slot: u16) -> Result<&Node, Error> {
        let entries = self.topology().await?;
        let owner = entries
            .iter()
            .find(|e| e.is_primary() && e.slots.iter().any(|r| r.contains(slot)))
            .ok_or_else(|| Error::Invalid(format!("no primary serves slot {slot}")))?;
        self.node_by_port(port(owner))
            .ok_or_else(|| Error::Invalid(format!("slot {slot} is served by unknown port {}", port(owner))))
    }

    /// The replicas of `primary` now.
    pub async fn replicas_of(&self, primary: &Node) -> Result<Vec<&Node>, Error> {
        let entries = self.topology().await?;
        let Some(id) = entries
            .iter()
            .find(|e| port(e) == primary.port())
            .map(|e| e.id.clone())
        else {
            return Ok(Vec::new());
        };
        Ok(entries
            .iter()
            .filter(|e| e.primary_id.as_deref() == Some(id.as_str()))
            .filter_map(|e| self.node_by_port(port(e)))
            .collect())
    }

    /// Waits until every running node reports `cluster_state:ok` with 16,384 slots assigned, all running
    /// nodes agree on which primary serves which slots, no running node is flagged failing, and every
    /// running replica's link to its primary is up.
    pub async fn wait_until_healthy(&self, timeout: Duration) -> Result<(), Error> {
        wait_until("the cluster to be healthy", timeout, || async move {
            self.health_problem().await
        })
        .await
    }

    async fn health_problem(&self) -> Result<Result<(), String>, Error> {
        let running: Vec<&Node> = self.nodes.iter().filter(|n| n.is_running()).collect();
        let running_ports: Vec<u16> = running.iter().map(|n| n.port()).collect();
        let mut first_view: Option<String> = None;
        for node in &running {
            let conn = match node.conn().await {
                Ok(c) => c,
                Err(e) => return Ok(Err(e.to_string())),
            };
            let checked = async {
                let info = conn.cluster_info().await?;
                if info.get("cluster_state") != Some("ok") {
                    return Ok(Err(format!(
                        "{}: cluster_state {:?}",
                        node.addr(),
                        info.get("cluster_state")
                    )));
                }
                if info.get_u64("cluster_slots_assigned") != Some(u64::from(SLOT_COUNT)) {
                    return Ok(Err(format!(
                        "{}: slots assigned {:?}",
                        node.addr(),
                        info.get("cluster_slots_assigned")
                    )));
                }
                let entries = cluster_nodes(&conn).await?;
                if let Some(bad) = entries
                    .iter()
                    .find(|e| running_ports.contains(&port(e)) && e.is_failing())
                {
                    return Ok(Err(format!("{} sees {} as failing", node.addr(), port(bad))));
                }
                let view = primaries_view(&entries);
                match &first_view {
                    None => first_view = Some(view),
                    Some(first) if *first != view => {
                        return Ok(Err(format!(
                            "{} disagrees on roles: {view} vs {first}",
                            node.addr()
                        )));
                    }
                    Some(_) => {}
                }
                let me = entries.iter().find(|e| e.has_flag("myself"));
                if me.is_some_and(|e| e.has_flag("slave")) {
                    let repl = conn.info("replication").await?;
                    if repl.get("master_link_status") != Some("up") {
                        return Ok(Err(format!(
                            "{}: master_link_status {:?}",
                            node.addr(),
                            repl.get("master_link_status")
                        )));
                    }
                }
                Ok::<_, Error>(Ok(()))
            }
            .await;
            conn.close();
            match checked {
                Ok(Ok(())) => {}
                other => return other,
            }
        }
        Ok(Ok(()))
    }

    /// After `old` (a primary) was killed or paused, waits until one of its replicas serves its slots in
    /// the view of every running node, and returns that replica. Call it before the failover finishes
    /// (right after the fault), while the cluster still lists `old` as the owner of its slots.
    pub async fn wait_for_promotion(&self, old: &Node, timeout: Duration) -> Result<&Node, Error> {
        let entries = self.topology().await?;
        let first_slot = entries
            .iter()
            .find(|e| port(e) == old.port())
            .and_then(|e| e.slots.first().map(|s| s.start()))
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "{} serves no slots; was it a primary, and is it already replaced?",
                    old.addr()
                ))
            })?;
        let port = wait_until(
            &format!("a replica of {} to be promoted (slot {first_slot})", old.addr()),
            timeout,
            || async move {
                let owner = self.primary_for_slot(first_slot).await?;
                if owner.port() == old.port() {
                    return Ok(Err(format!("slot {first_slot} still served by {}", old.addr())));
                }
                // Every running node (but the old primary) must agree before the failover counts as seen.
                for node in self
                    .nodes
                    .iter()
                    .filter(|n| n.is_running() && n.port() != old.port())
                {
                    let Ok(conn) = node.conn().await else { continue };
                    let entries = cluster_nodes(&conn).await;
                    conn.close();
                    let entries = entries?;
                    let agrees = entries
                        .iter()
                        .any(|e| port(e) == owner.port() && e.slots.iter().any(|r| r.contains(first_slot)));
                    if !agrees {
                        return Ok(Err(format!(
                            "{} does not yet see {} as owner",
                            node.addr(),
                            owner.addr()
                        )));
                    }
                }
                Ok(Ok(owner.port()))
            },
        )
        .await?;
        self.node_by_port(port)
            .ok_or_else(|| Error::Invalid(format!("promoted port {port} is not ours")))
    }

    /// Moves the last `count` slots of `from` to `to` with the real migration protocol: `SETSLOT
    /// IMPORTING` on the target, `SETSLOT MIGRATING` on the source, `MIGRATE` of every key in batches,
    /// then `SETSLOT NODE` on target, source and every other primary. Clients writing meanwhile get ASK
    /// redirects, as in production. Returns the slots moved.
    pub async fn migrate_slots(&self, count: usize, from: &Node, to: &Node) -> Result<Vec<u16>, Error> {
        let source = from.conn().await?;
        let target = to.conn().await?;
        let result = self.migrate_with(count, from, to, &source, &target).await;
        source.close();
        target.close();
        result
    }

    async fn migrate_with(
        &self,
        count: usize,
        from: &Node,
        to: &Node,
        source: &Conn,
        target: &Conn,
    ) -> Result<Vec<u16>, Error> {
        let from_id: String = source.call_str(&["CLUSTER", "MYID"]).await?;
        let to_id: String = target.call_str(&["CLUSTER", "MYID"]).await?;
        let entries = cluster_nodes(source).await?;
        let mine = entries
            .iter()
            .find(|e| e.has_flag("myself"))
            .map(|e| e.slots.clone())
            .unwrap_or_default();
        let owned: Vec<u16> = mine.iter().flat_map(|r| r.slots()).collect();
        if owned.len() < count {
            return Err(Error::Invalid(format!(
                "{} serves {} slots, fewer than {count}",
                from.addr(),
                owned.len()
            )));
        }
        let slots = owned[owned.len() - count..].to_vec();
        let other_primaries: Vec<&Node> = self
            .primaries()
            .await?
            .into_iter()
            .filter(|n| n.port() != from.port() && n.port() != to.port())
            .collect();
        let to_port = to.port().to_string();
        for &slot in &slots {
            let s = slot.to_string();
            target
                .call_str::<()>(&["CLUSTER", "SETSLOT", &s, "IMPORTING", &from_id])
                .await?;
            source
                .call_str::<()>(&["CLUSTER", "SETSLOT", &s, "MIGRATING", &to_id])
                .await?;
            loop {
                let keys: Vec<Vec<u8>> = source.call_str(&["CLUSTER", "GETKEYSINSLOT", &s, "100"]).await?;
                if keys.is_empty() {
                    break;
                }
                let mut args: Vec<Vec<u8>> =
                    ["MIGRATE", "127.0.0.1", to_port.as_str(), "", "0", "10000", "KEYS"]
                        .map(|word| word.as_bytes().to_vec())
                        .into();
                args.extend(keys);
                source.call::<(), _>(&args).await?;
            }
            target
                .call_str::<()>(&["CLUSTER", "SETSLOT", &s, "NODE", &to_id])
                .await?;
            source
                .call_str::<()>(&["CLUSTER", "SETSLOT", &s, "NODE", &to_id])
                .await?;
            for node in &other_primaries {
                node.command::<(), _, _>(["CLUSTER", "SETSLOT", s.as_str(), "NODE", to_id.as_str()])
                    .await?;
            }
        }
        Ok(slots)
    }

    /// Writes `state.json` for a detached cluster.
    fn write_state(&self) -> Result<(), Error> {
        let state = ClusterState {
            masters: self.masters,
            replicas_per_master: self.replicas_per_master,
            nodes: self
                .nodes
                .iter()
                .map(|n| (n, false))
                .chain(self.spares.iter().map(|n| (n, true)))
                .map(|(n, spare)| NodeState {
                    port: n.port(),
                    pid: n.pid().unwrap_or(0),
                    dir: n.dir().to_path_buf(),
                    initial_role: n.initial_role(),
                    spare,
                })
                .collect(),
            tls: self.tls.as_deref().cloned(),
        };
        let path = state_path(self.dir.path());
        let text = serde_json::to_string_pretty(&state).map_err(|e| Error::State {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        std::fs::write(&path, text).map_err(|e| Error::io(format!("writing {}", path.display()), e))
    }

    /// Stops every node (by PID) now, detached or not, and removes a detached cluster's directory.
    pub fn shutdown(mut self) -> Result<(), Error> {
        for node in self.nodes.iter().chain(&self.spares) {
            node.stop();
        }
        self.detached = false;
        if let ClusterDir::Kept(dir) = &self.dir {
            std::fs::remove_dir_all(dir).map_err(|e| Error::io(format!("removing {}", dir.display()), e))?;
        }
        Ok(())
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        if !self.detached {
            for node in self.nodes.iter().chain(&self.spares) {
                node.stop();
            }
        }
    }
}

/// `dir/state.json`.
pub fn state_path(dir: &Path) -> PathBuf {
    dir.join("state.json")
}

/// The slot range of primary `index` out of `masters` (1 to 16,384), split as evenly as possible.
pub(crate) fn slot_range(index: usize, masters: usize) -> SlotRange {
    let slots = usize::from(SLOT_COUNT);
    let first = index * slots / masters;
    let last = (index + 1) * slots / masters - 1;
    SlotRange::new(first as u16, last as u16).unwrap_or_else(|_| SlotRange::all())
}

async fn cluster_nodes(conn: &Conn) -> Result<Vec<ClusterNode>, Error> {
    let text: String = conn.call_str(&["CLUSTER", "NODES"]).await?;
    replies::parse_cluster_nodes(&text).map_err(|e| Error::Reply {
        addr: conn.addr().to_string(),
        command: "CLUSTER NODES".into(),
        detail: e.to_string(),
    })
}

/// A canonical text of "which port serves which slots, and which port replicates which", to compare
/// two nodes' views: right after `CLUSTER REPLICATE`, a node may still list a replica as a primary
/// without slots until gossip reaches it, and a client asking that node would miss the replica.
fn primaries_view(entries: &[ClusterNode]) -> String {
    let owners: BTreeMap<u16, u16> = entries
        .iter()
        .filter(|e| e.is_primary())
        .flat_map(|e| e.slots.iter().map(move |r| (r.start(), port(e))))
        .collect();
    let port_of = |id: &str| entries.iter().find(|e| e.id == id).map_or(0, port);
    let replicas: BTreeMap<u16, u16> = entries
        .iter()
        .filter(|e| !e.is_primary() && !e.is_failing())
        .filter_map(|e| e.primary_id.as_deref().map(|p| (port(e), port_of(p))))
        .collect();
    let mut view: Vec<String> = owners
        .iter()
        .map(|(slot, port)| format!("{slot}@{port}"))
        .collect();
    view.extend(
        replicas
            .iter()
            .map(|(replica, primary)| format!("{replica}>{primary}")),
    );
    view.join(",")
}

/// Polls `check` every 20 ms until it returns `Ok(Ok(value))`, an error, or `timeout` passes.
/// `Ok(Err(state))` means "not yet", with the state to report on timeout.
pub(crate) async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Result<T, String>, Error>>,
{
    let started = Instant::now();
    loop {
        let last_seen = match check().await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(state)) => state,
            Err(e) => e.to_string(),
        };
        if started.elapsed() >= timeout {
            return Err(Error::Timeout {
                what: what.to_string(),
                waited: started.elapsed(),
                last_seen,
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_ranges_cover_everything_once() {
        for masters in [1, 2, 3, 5, 7, 16384] {
            let mut next = 0u32;
            for i in 0..masters {
                let range = slot_range(i, masters);
                let (a, b) = (range.start(), range.end());
                assert_eq!(a as u32, next, "masters={masters} i={i}");
                assert!(b >= a);
                next = b as u32 + 1;
            }
            assert_eq!(next, u32::from(SLOT_COUNT));
        }
        assert_eq!(slot_range(0, 3), SlotRange::new(0, 5460).unwrap());
        assert_eq!(slot_range(2, 3), SlotRange::new(10922, 16383).unwrap());
    }
}
