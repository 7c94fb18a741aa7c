//! The client: connection set-up, routing, redirects, retries and failure isolation.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use bytes::Bytes;
use cluster_config::{ClusterConfig, ReplicaReadMode, ResolvedMode, ServerKind, ShardingStrategy};
use fred::prelude::*;
use fred::types::{ClusterHash, CustomCommand};
use sharding::key_slot;
use tokio::sync::{Notify, broadcast};

use crate::Error;
use crate::durations;
use crate::events::ClientEvent;
pub(crate) use crate::lane::Cmd;
use crate::node::{NodeHandle, NodeStats};
use crate::recent::RecentWrites;
use crate::script::Script;
use crate::topology::{
    Mode, ShardInfo, Topology, addr_host, node_addr, parse_cluster_shards, parse_cluster_slots, reported_addr,
};
use crate::value;
use crate::wait::{WaitOutcome, marker_key};

/// Redirects followed for one call before giving up.
const MAX_REDIRECTS: u32 = 5;
/// How often the topology is polled while a shard has no reachable primary.
const DEGRADED_REFRESH: Duration = Duration::from_millis(100);
/// The shortest gap between two topology refreshes, so a burst of MOVED replies causes one refresh.
const MIN_REFRESH_GAP: Duration = Duration::from_millis(20);
/// A node with a connection error or timeout this recent is asked for the topology after the others.
const RECENT_FAILURE: Duration = Duration::from_secs(5);
/// How often replica offsets are sampled once replica reads are used.
const LAG_SAMPLE_PERIOD: Duration = Duration::from_millis(200);

/// Where a read may be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadFrom {
    /// Always the primary.
    Primary,
    /// A replica whose lag is under the configured bound, unless this client wrote the key within that
    /// window (read-your-writes); otherwise the primary.
    Replica,
}

/// Per-call options; set them with [`ClusterClient::with_options`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallOptions {
    /// The call's deadline, redirects and retries included (default: the configured command timeout).
    /// From [`MIN_TIMEOUT`](crate::MIN_TIMEOUT) to [`MAX_TIMEOUT`](crate::MAX_TIMEOUT); a call with a
    /// timeout outside fails with [`Error::InvalidDuration`] before anything is sent.
    pub timeout: Option<Duration>,
    /// When the key's shard has no reachable primary, wait (up to the deadline) for a promotion instead
    /// of failing fast.
    pub wait_for_failover: bool,
    /// Where reads go (default: the configured replica-read mode).
    pub read_from: Option<ReadFrom>,
}

impl CallOptions {
    /// Options with a deadline.
    pub fn timeout(timeout: Duration) -> CallOptions {
        CallOptions {
            timeout: Some(timeout),
            ..CallOptions::default()
        }
    }

    /// Sets whether to wait for a failover to finish.
    pub fn wait_for_failover(mut self, wait: bool) -> CallOptions {
        self.wait_for_failover = wait;
        self
    }

    /// Sets where reads go.
    pub fn read_from(mut self, read_from: ReadFrom) -> CallOptions {
        self.read_from = Some(read_from);
        self
    }
}

/// The condition of a `SET`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SetCondition {
    /// `NX`: only if the key does not exist.
    IfAbsent,
    /// `XX`: only if the key exists.
    IfPresent,
}

/// Options of [`ClusterClient::set`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SetOptions {
    /// Time to live (millisecond precision, at least 1 ms: shorter ones round up); `None` keeps the
    /// key until deleted or evicted. Above [`MAX_TTL`](crate::MAX_TTL) the set fails with
    /// [`Error::InvalidDuration`].
    pub ttl: Option<Duration>,
    /// Write only if the key is absent / present.
    pub condition: Option<SetCondition>,
}

impl SetOptions {
    /// A set with a time to live.
    pub fn ttl(ttl: Duration) -> SetOptions {
        SetOptions {
            ttl: Some(ttl),
            condition: None,
        }
    }

    /// Adds a condition.
    pub fn condition(mut self, condition: SetCondition) -> SetOptions {
        self.condition = Some(condition);
        self
    }
}

/// A key's remaining time to live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    /// The key does not exist.
    Missing,
    /// The key exists without an expiry.
    Persistent,
    /// The key expires after this long.
    Expires(Duration),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    Write,
}

/// How one attempt on one node ended, when it did not succeed.
#[derive(Debug)]
pub(crate) enum Failure {
    Moved {
        addr: String,
    },
    Ask {
        addr: String,
    },
    /// TRYAGAIN, CLUSTERDOWN, LOADING: the same node may succeed shortly.
    Retry(String),
    /// The connection failed or the node is known to be down.
    Down(String),
    Timeout,
    Server(String),
}

pub(crate) fn classify(error: &fred::error::Error, node_host: &str) -> Failure {
    let details = error.details();
    // `MOVED 3999 127.0.0.1:7001`, `MOVED 3999 ::1:7001` (Redis prints an IPv6 ip raw), or
    // `MOVED 3999 :7001` (the node does not know its own ip: it is the one that answered).
    let redirect_target = || {
        let target = details.split_whitespace().nth(2).unwrap_or_default();
        reported_addr(target, node_host).unwrap_or_else(|| target.to_string())
    };
    match error.kind() {
        ErrorKind::Cluster if error.is_moved() => Failure::Moved {
            addr: redirect_target(),
        },
        ErrorKind::Cluster if error.is_ask() => Failure::Ask {
            addr: redirect_target(),
        },
        ErrorKind::Cluster => Failure::Retry(details.to_string()),
        ErrorKind::Timeout => Failure::Timeout,
        ErrorKind::IO | ErrorKind::Canceled | ErrorKind::Routing => Failure::Down(details.to_string()),
        _ if details.starts_with("TRYAGAIN") || details.starts_with("LOADING") => {
            Failure::Retry(details.to_string())
        }
        // fred's own words when a command could not be written to a connection that just broke.
        _ if details.contains("not initialized")
            || details.contains("Failed to send command")
            || details.contains("Failed to route command") =>
        {
            Failure::Down(details.to_string())
        }
        _ => Failure::Server(details.to_string()),
    }
}

/// Which node serves each shard, resolved to connection handles.
struct Routing {
    topology: Arc<Topology>,
    primaries: Vec<Arc<NodeHandle>>,
    replicas: Vec<Vec<Arc<NodeHandle>>>,
}

#[derive(Default)]
struct ReplicaLag {
    /// Per primary: recent `(time, master_repl_offset)` samples, oldest first.
    history: HashMap<String, VecDeque<(Instant, u64)>>,
}

pub(crate) struct Inner {
    config: ClusterConfig,
    seeds: Vec<String>,
    routing: ArcSwap<Routing>,
    nodes: Mutex<HashMap<String, Arc<NodeHandle>>>,
    refresh_wanted: Arc<Notify>,
    events: broadcast::Sender<ClientEvent>,
    closed: AtomicBool,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    replica_reads_since: Mutex<Option<Instant>>,
    replica_reads_on: AtomicBool,
    fresh_replicas: ArcSwap<HashSet<String>>,
    recent_writes: Mutex<RecentWrites>,
    lag: Mutex<ReplicaLag>,
    last_refresh: Mutex<Instant>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in self
            .tasks
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default()
        {
            task.abort();
        }
        if tokio::runtime::Handle::try_current().is_ok()
            && let Ok(nodes) = self.nodes.lock()
        {
            for node in nodes.values() {
                node.close();
            }
        }
    }
}

/// A client for a Redis Cluster, one standalone Redis, or standalone nodes sharded client-side.
///
/// Cheap to clone; clones share connections and topology. See the crate documentation.
#[derive(Clone)]
pub struct ClusterClient {
    inner: Arc<Inner>,
    options: CallOptions,
}

impl std::fmt::Debug for ClusterClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterClient")
            .field("topology", &self.inner.routing.load().topology)
            .field("options", &self.options)
            .finish()
    }
}

impl ClusterClient {
    /// Connects to the configured nodes, finds out whether they form a cluster, loads the topology and
    /// starts the background refresh.
    pub async fn connect(config: ClusterConfig) -> Result<ClusterClient, Error> {
        let seeds: Vec<String> = config.nodes().iter().map(|n| n.to_string()).collect();
        let mut handles = Vec::with_capacity(seeds.len());
        for seed in &seeds {
            handles.push(NodeHandle::open(seed, &config)?);
        }
        let connect_timeout = config.timeouts().connect;
        let waits = handles.iter().map(|h| h.wait_connected(connect_timeout));
        let connected = futures::future::join_all(waits).await;

        let mut kind = None;
        let mut last_error = String::from("no seed connected");
        for (handle, up) in handles.iter().zip(&connected) {
            if !up {
                last_error = format!("{} did not connect within {connect_timeout:?}", handle.addr);
                continue;
            }
            // `CLUSTER INFO` rather than `INFO cluster`: INFO is in the @dangerous ACL category, which a
            // cache's ACL user usually lacks.
            match raw::<String>(
                handle,
                Cmd::custom("CLUSTER", vec!["INFO".into()]),
                connect_timeout,
            )
            .await
            {
                Ok(_) => {
                    kind = Some(ServerKind::Cluster);
                    break;
                }
                Err(Error::Server { message, .. }) if message.contains("cluster support disabled") => {
                    kind = Some(ServerKind::Standalone);
                    break;
                }
                Err(e) => last_error = e.to_string(),
            }
        }
        let Some(kind) = kind else {
            for h in &handles {
                h.close();
            }
            return Err(Error::NoSeedReachable {
                tried: seeds.join(","),
                last: last_error,
            });
        };
        let mode = config.resolve_mode(kind)?;
        let (tx, _) = broadcast::channel(1024);
        let nodes: HashMap<String, Arc<NodeHandle>> =
            handles.iter().map(|h| (h.addr.clone(), h.clone())).collect();
        let topology = match mode {
            ResolvedMode::Cluster => {
                let mut found = None;
                for (handle, up) in handles.iter().zip(&connected) {
                    if *up && let Ok(t) = discover(handle, connect_timeout).await {
                        found = Some(t);
                        break;
                    }
                }
                found.ok_or_else(|| Error::NoSeedReachable {
                    tried: seeds.join(","),
                    last: "no seed answered CLUSTER SHARDS or CLUSTER SLOTS".into(),
                })?
            }
            ResolvedMode::Standalone => {
                let up = handles
                    .iter()
                    .zip(&connected)
                    .find(|(_, up)| **up)
                    .map(|(h, _)| h.addr.clone());
                Topology::standalone(up.unwrap_or_else(|| seeds[0].clone()))
            }
            ResolvedMode::Sharded(ShardingStrategy::KeyRange) => {
                Topology::key_range(seeds.clone()).map_err(|e| Error::Reply {
                    node: seeds.join(","),
                    command: "key-range".into(),
                    detail: e.to_string(),
                })?
            }
            ResolvedMode::Sharded(_) => Topology::ketama(seeds.clone()).map_err(|e| Error::Reply {
                node: seeds.join(","),
                command: "ketama".into(),
                detail: e.to_string(),
            })?,
        };
        let inner = Arc::new(Inner {
            config,
            seeds,
            routing: ArcSwap::from_pointee(Routing {
                topology: Arc::new(topology.clone()),
                primaries: vec![],
                replicas: vec![],
            }),
            nodes: Mutex::new(nodes),
            refresh_wanted: Arc::new(Notify::new()),
            events: tx,
            closed: AtomicBool::new(false),
            tasks: Mutex::new(Vec::new()),
            replica_reads_since: Mutex::new(None),
            replica_reads_on: AtomicBool::new(false),
            fresh_replicas: ArcSwap::from_pointee(HashSet::new()),
            recent_writes: Mutex::new(RecentWrites::new()),
            lag: Mutex::new(ReplicaLag::default()),
            last_refresh: Mutex::new(Instant::now()),
        });
        inner.install(topology)?;
        // Nodes first seen in the topology (replicas, or nodes missing from the seeds) connect now, so
        // that the first calls do not fail fast on connections that are still being opened.
        let fresh: Vec<Arc<NodeHandle>> = inner
            .nodes
            .lock()
            .map(|n| n.values().cloned().collect())
            .unwrap_or_default();
        futures::future::join_all(fresh.iter().map(|n| n.wait_connected(connect_timeout))).await;
        let client = ClusterClient {
            inner,
            options: CallOptions::default(),
        };
        if client.inner.config.replica_reads().mode == ReplicaReadMode::Prefer {
            client.inner.enable_replica_reads();
        }
        if matches!(mode, ResolvedMode::Cluster) {
            let task = tokio::spawn(refresh_loop(
                Arc::downgrade(&client.inner),
                client.inner.refresh_wanted.clone(),
            ));
            client.inner.push_task(task);
        }
        Ok(client)
    }

    /// A handle with different per-call options, sharing this client's connections.
    pub fn with_options(&self, options: CallOptions) -> ClusterClient {
        ClusterClient {
            inner: self.inner.clone(),
            options,
        }
    }

    /// The options this handle's calls use.
    pub fn options(&self) -> &CallOptions {
        &self.options
    }

    /// The configuration the client was built from.
    pub fn config(&self) -> &ClusterConfig {
        &self.inner.config
    }

    /// The topology as the client sees it now.
    pub fn topology(&self) -> Arc<Topology> {
        self.inner.routing.load().topology.clone()
    }

    /// The routing mode.
    pub fn mode(&self) -> Mode {
        self.inner.routing.load().topology.mode()
    }

    /// Events about topology changes, nodes going down and up, and failovers.
    pub fn subscribe(&self) -> broadcast::Receiver<ClientEvent> {
        self.inner.events.subscribe()
    }

    /// Latency and error counts per node since the client started.
    pub fn node_stats(&self) -> Vec<NodeStats> {
        let nodes = self
            .inner
            .nodes
            .lock()
            .map(|n| n.values().cloned().collect::<Vec<_>>())
            .unwrap_or_default();
        let mut stats: Vec<NodeStats> = nodes.iter().map(|n| n.stats()).collect();
        stats.sort_by(|a, b| a.node.cmp(&b.node));
        stats
    }

    /// Reloads the topology now (it is also refreshed periodically, on MOVED and on node errors).
    pub async fn refresh_topology(&self) -> Result<(), Error> {
        self.inner.refresh().await
    }

    /// Stops the background tasks and closes every connection.
    pub async fn close(&self) {
        self.inner.closed.store(true, Ordering::Relaxed);
        self.inner.refresh_wanted.notify_one();
        let tasks = self
            .inner
            .tasks
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default();
        for task in tasks {
            task.abort();
        }
        let nodes: Vec<Arc<NodeHandle>> = self
            .inner
            .nodes
            .lock()
            .map(|mut n| n.drain().map(|(_, h)| h).collect())
            .unwrap_or_default();
        for node in nodes {
            node.close();
        }
    }

    /// The call's timeout: the handle's option (checked here, as `with_options` cannot fail), else the
    /// configured command timeout (which cluster-config checked against the same range).
    fn timeout(&self) -> Result<Duration, Error> {
        match self.options.timeout {
            Some(timeout) => durations::timeout("CallOptions::timeout", timeout),
            None => Ok(self.inner.config.timeouts().command),
        }
    }

    pub(crate) fn check_key(&self, key: &[u8]) -> Result<(), Error> {
        let max = self.inner.config.limits().key_max_bytes;
        if key.len() > max {
            return Err(Error::KeyTooLarge { len: key.len(), max });
        }
        Ok(())
    }

    pub(crate) fn check_value(&self, value: &[u8]) -> Result<(), Error> {
        let max = self.inner.config.limits().value_max_bytes;
        if value.len() > max {
            return Err(Error::ValueTooLarge {
                len: value.len(),
                max,
            });
        }
        Ok(())
    }

    // ----- single-key operations -----

    /// `GET`: the value, or `None` when the key does not exist.
    pub async fn get(&self, key: &[u8]) -> Result<Option<Bytes>, Error> {
        self.check_key(key)?;
        let value = self
            .run(key, Cmd::Get(Bytes::copy_from_slice(key)), Access::Read)
            .await?;
        to_bytes(value, "GET")
    }

    /// `SET` with an optional TTL and condition; `Ok(false)` when the condition kept it from writing.
    pub async fn set(&self, key: &[u8], value: &[u8], options: SetOptions) -> Result<bool, Error> {
        self.check_key(key)?;
        self.check_value(value)?;
        let cmd = Cmd::Set {
            key: Bytes::copy_from_slice(key),
            value: Bytes::copy_from_slice(value),
            ttl_ms: options
                .ttl
                .map(|ttl| durations::ttl_ms("SetOptions::ttl", ttl))
                .transpose()?,
            condition: options.condition.map(|c| match c {
                SetCondition::IfAbsent => fred::types::SetOptions::NX,
                SetCondition::IfPresent => fred::types::SetOptions::XX,
            }),
        };
        let reply = self.run(key, cmd, Access::Write).await?;
        Ok(!matches!(reply, Value::Null))
    }

    /// `DEL`: whether the key existed.
    pub async fn del(&self, key: &[u8]) -> Result<bool, Error> {
        self.check_key(key)?;
        let reply = self
            .run(key, Cmd::Del(Bytes::copy_from_slice(key)), Access::Write)
            .await?;
        Ok(to_i64(&reply, "DEL")? > 0)
    }

    /// `EXISTS` for one key.
    pub async fn exists(&self, key: &[u8]) -> Result<bool, Error> {
        self.check_key(key)?;
        let reply = self
            .run(key, Cmd::Exists(Bytes::copy_from_slice(key)), Access::Read)
            .await?;
        Ok(to_i64(&reply, "EXISTS")? > 0)
    }

    /// `PEXPIRE`: whether the key existed and got the TTL.
    pub async fn pexpire(&self, key: &[u8], ttl: Duration) -> Result<bool, Error> {
        self.check_key(key)?;
        let cmd = Cmd::Pexpire(
            Bytes::copy_from_slice(key),
            durations::ttl_ms("pexpire ttl", ttl)?,
        );
        let reply = self.run(key, cmd, Access::Write).await?;
        Ok(to_i64(&reply, "PEXPIRE")? > 0)
    }

    /// `PTTL`: the key's remaining time to live.
    pub async fn pttl(&self, key: &[u8]) -> Result<Ttl, Error> {
        self.check_key(key)?;
        let reply = self
            .run(key, Cmd::Pttl(Bytes::copy_from_slice(key)), Access::Read)
            .await?;
        Ok(match to_i64(&reply, "PTTL")? {
            -2 => Ttl::Missing,
            -1 => Ttl::Persistent,
            ms => Ttl::Expires(Duration::from_millis(ms.max(0) as u64)),
        })
    }

    /// Runs a Lua script by SHA on the node owning the first key (`NOSCRIPT` loads it and retries).
    /// Without keys it runs on the first shard's primary.
    pub async fn eval(&self, script: &Script, keys: &[&[u8]], args: &[&[u8]]) -> Result<crate::Value, Error> {
        for key in keys {
            self.check_key(key)?;
        }
        let route_key: &[u8] = keys.first().copied().unwrap_or(b"");
        let cmd = evalsha(script, keys, args);
        let mut loaded = false;
        loop {
            match self.run(route_key, cmd.clone(), Access::Write).await {
                Err(Error::Server { message, node, .. }) if message.starts_with("NOSCRIPT") && !loaded => {
                    self.node_call(
                        &node,
                        vec!["SCRIPT".into(), "LOAD".into(), script.source().into()],
                    )
                    .await?;
                    loaded = true;
                }
                other => return other.map(value::from_fred),
            }
        }
    }

    /// Runs a Lua script on one given node (for example a replica, for read-only scripts).
    pub async fn eval_on_node(
        &self,
        node: &str,
        script: &Script,
        keys: &[&[u8]],
        args: &[&[u8]],
    ) -> Result<crate::Value, Error> {
        let cmd = evalsha(script, keys, args);
        let reply = match self.node_call(node, cmd.to_args()).await {
            Err(Error::Server { message, .. }) if message.starts_with("NOSCRIPT") => {
                self.node_call(node, vec!["SCRIPT".into(), "LOAD".into(), script.source().into()])
                    .await?;
                self.node_call(node, cmd.to_args()).await
            }
            other => other,
        };
        reply.map(value::from_fred)
    }

    /// Waits up to `timeout` for `replicas` replicas of the primary serving `key` to acknowledge every
    /// write that primary had acknowledged (to this client, on any connection) before the call started;
    /// returns how many did (possibly more than asked, or fewer when the timeout passed).
    ///
    /// `WAIT` never runs on a connection other calls share (it would hold every call queued behind it
    /// on its shard): it runs on a dedicated connection of the node, after a write of a marker key in
    /// `key`'s slot on that same connection, whose acknowledgement implies that of every earlier write
    /// (one ordered replication stream per primary). See the `wait` module for the details, and for
    /// concurrent waits on one node. `timeout` must be from [`MIN_TIMEOUT`](crate::MIN_TIMEOUT) to
    /// [`MAX_TIMEOUT`](crate::MAX_TIMEOUT) ([`Error::InvalidDuration`] otherwise; a zero `WAIT`
    /// timeout would block for ever).
    pub async fn wait(&self, key: &[u8], replicas: u32, timeout: Duration) -> Result<u32, Error> {
        Ok(self.wait_outcome(key, replicas, timeout).await?.acked)
    }

    /// [`ClusterClient::wait`], also saying which replication stream (the primary's `master_replid`)
    /// the wait ran on, so a caller that knows where its write was executed can tell whether these
    /// acknowledgements cover it ([`WaitOutcome::covers`]): after a failover, a wait routed to the new
    /// primary says nothing about a write the old one executed.
    pub async fn wait_outcome(
        &self,
        key: &[u8],
        replicas: u32,
        timeout: Duration,
    ) -> Result<WaitOutcome, Error> {
        self.check_key(key)?;
        let cmd = Cmd::Wait {
            replicas: i64::from(replicas),
            timeout_ms: durations::timeout_ms("wait timeout", timeout)?,
            marker: marker_key(key_slot(key)),
        };
        let reply = self.wait_handle(timeout)?.run(key, cmd, Access::Write).await?;
        WaitOutcome::from_reply(&reply).ok_or_else(|| Error::Reply {
            node: String::new(),
            command: "WAIT".into(),
            detail: format!("unexpected reply {reply:?}"),
        })
    }

    /// A handle whose deadline leaves a `WAIT` of `timeout` time to answer: the call timeout, or the
    /// wait's timeout plus half a second if that is longer (saturating at the longest timeout).
    fn wait_handle(&self, timeout: Duration) -> Result<ClusterClient, Error> {
        let deadline = self
            .timeout()?
            .max(timeout.saturating_add(Duration::from_millis(500)))
            .min(durations::MAX_TIMEOUT.saturating_add(Duration::from_millis(500)));
        Ok(self.with_options(CallOptions {
            timeout: Some(deadline),
            ..self.options.clone()
        }))
    }

    /// A raw command on one node (`host:port`, as in [`Topology`]); the first argument is the command
    /// name. It goes over the node's READONLY connection, so a replica answers reads of its own data.
    ///
    /// `WAIT` is not sent on that shared connection: it runs as [`ClusterClient::wait`] does, on the
    /// node's dedicated wait connection after a marker write in the first slot the node serves, so it
    /// counts the node's writes from every connection and stalls no other call. Its timeout must be 1
    /// to `u32::MAX` milliseconds (`WAIT n 0` would block for ever).
    ///
    /// The reply converts to `R` as [`FromValue`](crate::FromValue) says; one that does not is
    /// [`Error::Reply`].
    pub async fn node_command<R: crate::FromValue>(
        &self,
        node: &str,
        args: Vec<crate::Value>,
    ) -> Result<R, Error> {
        let name = args.first().and_then(crate::Value::as_string).unwrap_or_default();
        let reply = self.node_call(node, value::to_fred(args)).await?;
        R::from_value(value::from_fred(reply)).map_err(|e| Error::Reply {
            node: node.into(),
            command: name,
            detail: e.to_string(),
        })
    }

    /// [`ClusterClient::node_command`] in fred's terms, for this crate's own node commands.
    pub(crate) async fn node_call(&self, node: &str, args: Vec<Value>) -> Result<Value, Error> {
        let handle = self.inner.known_node(node)?;
        let mut args = args.into_iter();
        let name = args.next().and_then(|v| v.as_string()).unwrap_or_default();
        let rest: Vec<Value> = args.collect();
        if name.eq_ignore_ascii_case("WAIT") {
            return self.wait_on_node(&handle, &rest).await;
        }
        let started = Instant::now();
        // A node known to be down fails fast; otherwise the call may wait (up to its timeout) for the
        // READONLY connection, which may still be opening right after the node was first seen.
        let options = Options {
            timeout: Some(self.timeout()?),
            fail_fast: !handle.is_up(),
            ..Options::default()
        };
        let result = handle
            .readonly()
            .call(&Cmd::custom(name.as_str(), rest), options)
            .await;
        handle.record_untimed();
        result.map_err(|e| self.inner.to_error(&handle, &name, &e, started))
    }

    /// `WAIT replicas timeout-ms` addressed to one node (see [`ClusterClient::node_command`]).
    async fn wait_on_node(&self, handle: &Arc<NodeHandle>, args: &[Value]) -> Result<Value, Error> {
        let bad = |detail: String| Error::Server {
            node: handle.addr.clone(),
            command: "WAIT".into(),
            message: format!("ERR {detail}"),
        };
        let number = |value: Option<&Value>| value.and_then(value::fred_i64);
        let (Some(replicas), Some(timeout_ms), 2) = (number(args.first()), number(args.get(1)), args.len())
        else {
            return Err(bad("WAIT takes two integers: numreplicas timeout-ms".into()));
        };
        let timeout = Duration::from_millis(u64::try_from(timeout_ms).unwrap_or(0));
        let timeout_ms = durations::timeout_ms("WAIT timeout", timeout)?;
        let routing = self.inner.routing.load();
        let slot = routing
            .topology
            .shards()
            .iter()
            .find(|s| s.primary == handle.addr)
            .and_then(|s| s.slots.first())
            .map_or(0, |range| range.0);
        drop(routing);
        let cmd = Cmd::Wait {
            replicas: replicas.max(0),
            timeout_ms,
            marker: marker_key(slot),
        };
        let deadline = self.wait_handle(timeout)?.timeout()?;
        let started = Instant::now();
        let result = send(handle, &cmd, deadline, false, false).await;
        handle.record_untimed();
        let reply = result.map_err(|e| self.inner.to_error(handle, "WAIT", &e, started))?;
        // Addressed to a node, `WAIT` answers as Redis does: the count alone.
        let outcome =
            WaitOutcome::from_reply(&reply).ok_or_else(|| bad(format!("unexpected reply {reply:?}")))?;
        Ok(Value::Integer(i64::from(outcome.acked)))
    }

    /// One `SCAN` step on one node: the next cursor (0 when done) and the keys of this step.
    pub async fn scan_node(
        &self,
        node: &str,
        cursor: u64,
        pattern: Option<&[u8]>,
        count: u32,
    ) -> Result<(u64, Vec<Bytes>), Error> {
        let mut args: Vec<Value> = vec!["SCAN".into(), cursor.to_string().into()];
        if let Some(pattern) = pattern {
            args.push("MATCH".into());
            args.push(bytes_arg(pattern));
        }
        args.push("COUNT".into());
        args.push(Value::Integer(count as i64));
        let reply: Value = self.node_call(node, args).await?;
        let bad = |detail: &str| Error::Reply {
            node: node.into(),
            command: "SCAN".into(),
            detail: detail.into(),
        };
        let Value::Array(mut parts) = reply else {
            return Err(bad("not an array"));
        };
        if parts.len() != 2 {
            return Err(bad("not a [cursor, keys] pair"));
        }
        let keys = match parts.pop() {
            Some(Value::Array(keys)) => keys.into_iter().filter_map(|k| k.into_bytes()).collect(),
            _ => return Err(bad("keys are not an array")),
        };
        let cursor = parts
            .pop()
            .and_then(|c| c.as_string())
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| bad("bad cursor"))?;
        Ok((cursor, keys))
    }

    // ----- routing -----

    /// Sends `cmd` for `key` to the node that serves it, following redirects and retrying transient
    /// errors until the call's deadline.
    pub(crate) async fn run(&self, key: &[u8], cmd: Cmd, access: Access) -> Result<Value, Error> {
        let started = Instant::now();
        let deadline = started + self.timeout()?;
        let slot = key_slot(key);
        let mut redirects = 0;
        let mut redirect: Option<(Arc<NodeHandle>, bool)> = None;
        let mut backoff = Duration::from_millis(5);
        loop {
            let (node, asking, readonly) = match redirect.take() {
                Some((node, asking)) => (node, asking, false),
                None => match self.pick(key, slot, access) {
                    Ok((node, replica)) => (node, false, replica),
                    Err(error) if self.options.wait_for_failover && Instant::now() < deadline => {
                        tracing::debug!(%error, "waiting for a failover");
                        self.inner.refresh_wanted.notify_one();
                        tokio::time::sleep(Duration::from_millis(20).min(deadline - Instant::now())).await;
                        continue;
                    }
                    Err(error) => return Err(error),
                },
            };
            let mut remaining = deadline.saturating_duration_since(Instant::now());
            if readonly {
                // A replica gets half the time left, so that the primary can still answer if it fails.
                remaining /= 2;
            }
            if remaining.is_zero() {
                return Err(Error::Timeout {
                    command: cmd.name().into(),
                    node: node.addr.clone(),
                    after: started.elapsed(),
                });
            }
            let attempt = Instant::now();
            let result = send(&node, &cmd, remaining, asking, readonly).await;
            node.record(attempt.elapsed());
            let error = match result {
                Ok(_) if access == Access::Write && node.is_replaced() => {
                    return Err(Error::WriteUncertain {
                        command: cmd.name().into(),
                        node: node.addr.clone(),
                    });
                }
                Ok(value) => {
                    if access == Access::Write {
                        self.inner.note_write(key);
                    }
                    if !node.is_up() && node.set_up(true) {
                        self.inner.emit(ClientEvent::NodeUp {
                            node: node.addr.clone(),
                            at: SystemTime::now(),
                        });
                    }
                    return Ok(value);
                }
                Err(error) => error,
            };
            match classify(&error, addr_host(&node.addr)) {
                Failure::Moved { addr } | Failure::Ask { addr } if redirects >= MAX_REDIRECTS => {
                    let _ = addr;
                    return Err(Error::TooManyRedirects {
                        command: cmd.name().into(),
                        slot,
                        redirects,
                    });
                }
                Failure::Moved { addr } => {
                    redirects += 1;
                    node.record_redirect();
                    self.inner.refresh_wanted.notify_one();
                    redirect = Some((self.inner.node_handle(&addr)?, false));
                }
                Failure::Ask { addr } => {
                    redirects += 1;
                    node.record_redirect();
                    redirect = Some((self.inner.node_handle(&addr)?, true));
                }
                Failure::Retry(message) => {
                    tracing::debug!(node = %node.addr, %message, "retrying");
                    let pause = backoff.min(deadline.saturating_duration_since(Instant::now()));
                    tokio::time::sleep(pause).await;
                    backoff = (backoff * 2).min(Duration::from_millis(200));
                }
                Failure::Down(message) if readonly => {
                    // A replica read that failed on the connection goes to the primary at once.
                    node.record_error();
                    self.inner.node_failed(&node);
                    tracing::debug!(node = %node.addr, %message, "replica down; reading from the primary");
                    let primary = self
                        .inner
                        .primary_for(key, slot)
                        .ok_or(Error::SlotUncovered { slot })?;
                    redirect = Some((primary, false));
                }
                Failure::Down(message) => {
                    node.record_error();
                    self.inner.node_failed(&node);
                    if !(self.options.wait_for_failover && Instant::now() < deadline) {
                        tracing::debug!(node = %node.addr, %message, "node down");
                        return Err(self.inner.unavailable(key, slot, &node.addr));
                    }
                    tokio::time::sleep(
                        Duration::from_millis(20).min(deadline.saturating_duration_since(Instant::now())),
                    )
                    .await;
                }
                Failure::Timeout if readonly => {
                    node.record_error();
                    tracing::debug!(node = %node.addr, "replica read timed out; reading from the primary");
                    let primary = self
                        .inner
                        .primary_for(key, slot)
                        .ok_or(Error::SlotUncovered { slot })?;
                    redirect = Some((primary, false));
                }
                Failure::Timeout => {
                    node.record_error();
                    self.inner.refresh_wanted.notify_one();
                    return Err(Error::Timeout {
                        command: cmd.name().into(),
                        node: node.addr.clone(),
                        after: started.elapsed(),
                    });
                }
                Failure::Server(message) => {
                    return Err(Error::Server {
                        node: node.addr.clone(),
                        command: cmd.name().into(),
                        message,
                    });
                }
            }
        }
    }

    /// The node to send a command for `key` to: the shard's primary, or a fresh replica for reads.
    /// The node to send to, and whether it is a replica read (on the READONLY connection).
    fn pick(&self, key: &[u8], slot: u16, access: Access) -> Result<(Arc<NodeHandle>, bool), Error> {
        let routing = self.inner.routing.load();
        let Some(shard) = routing.topology.shard_index(key, slot) else {
            self.inner.refresh_wanted.notify_one();
            return Err(Error::SlotUncovered { slot });
        };
        if access == Access::Read
            && self.reads_from_replica()
            && let Some(replica) = self.inner.fresh_replica(&routing.replicas[shard], key, slot)
        {
            return Ok((replica, true));
        }
        let primary = &routing.primaries[shard];
        if !primary.is_routable() {
            self.inner.node_failed(primary);
            return Err(self.inner.unavailable(key, slot, &primary.addr));
        }
        Ok((primary.clone(), false))
    }

    fn reads_from_replica(&self) -> bool {
        let wanted = match self.options.read_from {
            Some(ReadFrom::Replica) => true,
            Some(ReadFrom::Primary) => false,
            None => self.inner.config.replica_reads().mode == ReplicaReadMode::Prefer,
        };
        if wanted {
            self.inner.enable_replica_reads();
        }
        wanted
    }

    // ----- helpers for the batch module -----

    /// The primary for each key (or why there is none), without sending anything.
    pub(crate) fn route_many<K: AsRef<[u8]>>(
        &self,
        keys: &[K],
    ) -> Vec<Result<(Arc<NodeHandle>, u16), Error>> {
        let routing = self.inner.routing.load();
        keys.iter()
            .map(|key| {
                let key = key.as_ref();
                self.check_key(key)?;
                let slot = key_slot(key);
                let shard = routing
                    .topology
                    .shard_index(key, slot)
                    .ok_or(Error::SlotUncovered { slot })?;
                let primary = &routing.primaries[shard];
                if !primary.is_routable() {
                    return Err(self.inner.unavailable(key, slot, &primary.addr));
                }
                Ok((primary.clone(), slot))
            })
            .collect()
    }

    pub(crate) fn note_write(&self, key: &[u8]) {
        self.inner.note_write(key);
    }

    /// The handle of a node, opened if new (as for a node named by `MOVED`).
    pub(crate) fn node_for(&self, addr: &str) -> Result<Arc<NodeHandle>, Error> {
        self.inner.node_handle(addr)
    }

    pub(crate) fn node_error(
        &self,
        node: &Arc<NodeHandle>,
        command: &str,
        error: &fred::error::Error,
        started: Instant,
    ) -> Error {
        self.inner.to_error(node, command, error, started)
    }

    pub(crate) fn call_timeout(&self) -> Result<Duration, Error> {
        self.timeout()
    }
}

impl Inner {
    fn push_task(&self, task: tokio::task::JoinHandle<()>) {
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.push(task);
        }
    }

    fn emit(&self, event: ClientEvent) {
        let _ = self.events.send(event);
    }

    /// The handle of a node named by MOVED/ASK, opened if new.
    fn node_handle(&self, addr: &str) -> Result<Arc<NodeHandle>, Error> {
        let mut nodes = self.nodes.lock().map_err(|_| Error::Closed)?;
        if let Some(node) = nodes.get(addr) {
            return Ok(node.clone());
        }
        let node = NodeHandle::open(addr, &self.config)?;
        nodes.insert(addr.to_string(), node.clone());
        Ok(node)
    }

    fn known_node(&self, addr: &str) -> Result<Arc<NodeHandle>, Error> {
        let nodes = self.nodes.lock().map_err(|_| Error::Closed)?;
        nodes.get(addr).cloned().ok_or_else(|| {
            let mut known: Vec<&String> = nodes.keys().collect();
            known.sort();
            Error::UnknownNode {
                node: addr.into(),
                known: known.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(","),
            }
        })
    }

    fn primary_for(&self, key: &[u8], slot: u16) -> Option<Arc<NodeHandle>> {
        let routing = self.routing.load();
        routing
            .topology
            .shard_index(key, slot)
            .map(|shard| routing.primaries[shard].clone())
    }

    fn unavailable(&self, _key: &[u8], slot: u16, node: &str) -> Error {
        let routing = self.routing.load();
        let ranges = routing
            .topology
            .shards()
            .iter()
            .find(|s| s.primary == node)
            .map(ShardInfo::ranges_text)
            .unwrap_or_default();
        Error::ShardUnavailable {
            slot,
            ranges,
            node: node.into(),
        }
    }

    fn node_failed(&self, node: &NodeHandle) {
        if node.set_up(false) {
            self.emit(ClientEvent::NodeDown {
                node: node.addr.clone(),
                at: SystemTime::now(),
            });
        }
        self.refresh_wanted.notify_one();
    }

    fn to_error(
        &self,
        node: &Arc<NodeHandle>,
        command: &str,
        error: &fred::error::Error,
        started: Instant,
    ) -> Error {
        match classify(error, addr_host(&node.addr)) {
            Failure::Timeout => {
                node.record_error();
                Error::Timeout {
                    command: command.into(),
                    node: node.addr.clone(),
                    after: started.elapsed(),
                }
            }
            Failure::Down(message) => {
                node.record_error();
                self.node_failed(node);
                Error::Connection {
                    node: node.addr.clone(),
                    command: command.into(),
                    message,
                }
            }
            Failure::Server(message) | Failure::Retry(message) => Error::Server {
                node: node.addr.clone(),
                command: command.into(),
                message,
            },
            Failure::Moved { addr } | Failure::Ask { addr } => Error::Server {
                node: node.addr.clone(),
                command: command.into(),
                message: format!("redirected to {addr}"),
            },
        }
    }

    /// Makes `topology` current: opens connections for new nodes, closes those for removed ones, and
    /// reports what changed.
    fn install(&self, topology: Topology) -> Result<(), Error> {
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

    /// Reads the cluster's topology from the first node that answers and installs it.
    async fn refresh(&self) -> Result<(), Error> {
        if self.routing.load().topology.mode() != Mode::Cluster {
            return Ok(());
        }
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

    /// Emits NodeDown/NodeUp for connection state changes seen since the last check.
    fn update_node_states(&self) {
        let nodes: Vec<Arc<NodeHandle>> = self
            .nodes
            .lock()
            .map(|n| n.values().cloned().collect())
            .unwrap_or_default();
        for node in nodes {
            let connected = node.is_connected();
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
        routing.topology.unassigned_slots() > 0 || routing.primaries.iter().any(|p| !p.is_connected())
    }

    fn enable_replica_reads(self: &Arc<Self>) {
        let Ok(mut since) = self.replica_reads_since.lock() else {
            return;
        };
        if since.is_some() || self.routing.load().topology.mode() != Mode::Cluster {
            return;
        }
        *since = Some(Instant::now());
        self.replica_reads_on.store(true, Ordering::Relaxed);
        let task = tokio::spawn(lag_loop(Arc::downgrade(self)));
        self.push_task(task);
    }

    fn note_write(&self, key: &[u8]) {
        // Most clients never read from replicas: one relaxed load, no lock, on every write.
        if !self.replica_reads_on.load(Ordering::Relaxed) {
            return;
        }
        let now = Instant::now();
        let window = self.config.replica_reads().max_lag * 2;
        if let Ok(mut writes) = self.recent_writes.lock() {
            writes.note(key_hash(key), now, window);
        }
    }

    /// A replica of the shard that may serve `key` now, if any.
    fn fresh_replica(&self, replicas: &[Arc<NodeHandle>], key: &[u8], slot: u16) -> Option<Arc<NodeHandle>> {
        if replicas.is_empty() {
            return None;
        }
        let window = self.config.replica_reads().max_lag * 2;
        let since = (*self.replica_reads_since.lock().ok()?)?;
        // Writes made before replica reads were turned on were not tracked: wait out the window.
        if since.elapsed() < window {
            return None;
        }
        // A lock poisoned by a panic elsewhere tells nothing about this key: the primary serves it.
        let recent = self.recent_writes.lock().map_or(true, |writes| {
            writes.is_recent(key_hash(key), Instant::now(), window)
        });
        if recent {
            return None;
        }
        let fresh = self.fresh_replicas.load();
        let candidates: Vec<&Arc<NodeHandle>> = replicas
            .iter()
            .filter(|r| r.readonly().client.is_connected() && fresh.contains(&r.addr))
            .collect();
        if candidates.is_empty() {
            return None;
        }
        Some(candidates[slot as usize % candidates.len()].clone())
    }

    /// Samples `INFO replication` on every primary and marks which replicas are within the lag bound.
    async fn sample_lag(&self) {
        let routing = self.routing.load_full();
        let max_lag = self.config.replica_reads().max_lag;
        let now = Instant::now();
        let mut fresh = HashSet::new();
        for (shard, primary) in routing.topology.shards().iter().zip(&routing.primaries) {
            let Ok(info) = raw::<String>(
                primary,
                Cmd::custom("INFO", vec!["replication".into()]),
                Duration::from_millis(500),
            )
            .await
            else {
                continue;
            };
            let offset = info_u64(&info, "master_repl_offset").unwrap_or(0);
            // The primary's offset as of `max_lag` ago: a replica at or past it is at most `max_lag` behind.
            let threshold = {
                let Ok(mut lag) = self.lag.lock() else { return };
                // Primaries that left the topology (failed over, removed) are forgotten.
                lag.history
                    .retain(|primary, _| routing.topology.shards().iter().any(|s| s.primary == *primary));
                let history = lag.history.entry(shard.primary.clone()).or_default();
                lag_threshold(history, now, offset, max_lag)
            };
            let host = addr_host(&primary.addr);
            for line in info.lines().filter(|l| l.starts_with("slave")) {
                let Some((_, fields)) = line.split_once(':') else {
                    continue;
                };
                let field = |name: &str| {
                    fields
                        .split(',')
                        .find_map(|kv| kv.strip_prefix(name))
                        .map(str::to_string)
                };
                let (Some(ip), Some(port), Some(replica_offset)) =
                    (field("ip="), field("port="), field("offset="))
                else {
                    continue;
                };
                let ip = if ip.is_empty() { host.to_string() } else { ip };
                if replica_offset.parse::<u64>().is_ok_and(|o| o >= threshold)
                    && field("state=").as_deref() == Some("online")
                    && let Ok(port) = port.parse::<u16>()
                {
                    fresh.insert(node_addr(&ip, port));
                }
            }
        }
        self.fresh_replicas.store(Arc::new(fresh));
    }
}

/// Samples of a primary's offset kept at most: with one every 200 ms, 64 cover 12.8 s. A larger
/// `max_lag` (up to 49 days are accepted) would otherwise keep one sample per 200 ms of it.
const LAG_HISTORY_MAX: usize = 64;

/// Adds `(now, offset)` to a primary's history and returns its offset as of `max_lag` ago: a replica at
/// or past it is at most `max_lag` behind. Without a sample that old, the oldest kept one stands in,
/// which is newer, so the bound only gets stricter (fewer replicas count as fresh), never looser.
fn lag_threshold(
    history: &mut VecDeque<(Instant, u64)>,
    now: Instant,
    offset: u64,
    max_lag: Duration,
) -> u64 {
    history.push_back((now, offset));
    while history.len() > LAG_HISTORY_MAX
        || (history.len() > 2
            && history
                .get(1)
                .is_some_and(|(t, _)| now.saturating_duration_since(*t) >= max_lag))
    {
        history.pop_front();
    }
    history
        .iter()
        .rev()
        .find(|(t, _)| now.saturating_duration_since(*t) >= max_lag)
        .or(history.front())
        .map_or(offset, |(_, o)| *o)
}

/// `(old primary, new primary, slot ranges)`.
type Failover = (String, String, Vec<(u16, u16)>);

/// Pairs of (old primary, new primary, slots) where slots moved to a node that was a replica of the old
/// primary: a failover, as opposed to a migration.
fn failovers(old: &Topology, new: &Topology) -> Vec<Failover> {
    let mut out: Vec<Failover> = Vec::new();
    for shard in new.shards() {
        for range in &shard.slots {
            let Some(before) = old.shard_for_slot(range.0) else {
                continue;
            };
            // A failover when the new owner was a replica before: listed as one, or at least not a
            // primary (a replica marked failed is left out of the replica list but still promoted).
            let was_primary = old.shards().iter().any(|s| s.primary == shard.primary);
            if before.primary != shard.primary && (before.replicas.contains(&shard.primary) || !was_primary) {
                match out
                    .iter_mut()
                    .find(|(o, n, _)| *o == before.primary && *n == shard.primary)
                {
                    Some(entry) => entry.2.push(*range),
                    None => out.push((before.primary.clone(), shard.primary.clone(), vec![*range])),
                }
            }
        }
    }
    out
}

async fn refresh_loop(inner: Weak<Inner>, wanted: Arc<Notify>) {
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

async fn lag_loop(inner: Weak<Inner>) {
    loop {
        {
            let Some(inner) = inner.upgrade() else { return };
            if inner.closed.load(Ordering::Relaxed) {
                return;
            }
            inner.sample_lag().await;
        }
        tokio::time::sleep(LAG_SAMPLE_PERIOD).await;
    }
}

/// Loads the cluster topology from one node: `CLUSTER SHARDS`, or `CLUSTER SLOTS` before Redis 7.
async fn discover(node: &NodeHandle, timeout: Duration) -> Result<Topology, Error> {
    let host = addr_host(&node.addr).to_string();
    let bad = |command: &str, detail: String| Error::Reply {
        node: node.addr.clone(),
        command: command.into(),
        detail,
    };
    let shards = match raw::<Value>(node, Cmd::custom("CLUSTER", vec!["SHARDS".into()]), timeout).await {
        Ok(reply) => parse_cluster_shards(&reply, &host).map_err(|d| bad("CLUSTER SHARDS", d))?,
        Err(Error::Server { .. }) => {
            let reply = raw::<Value>(node, Cmd::custom("CLUSTER", vec!["SLOTS".into()]), timeout).await?;
            parse_cluster_slots(&reply, &host).map_err(|d| bad("CLUSTER SLOTS", d))?
        }
        Err(e) => return Err(e),
    };
    Topology::cluster(shards).map_err(|e| bad("CLUSTER SHARDS", e.to_string()))
}

/// One command on one node with a timeout, no routing.
async fn raw<R: FromValue>(node: &NodeHandle, cmd: Cmd, timeout: Duration) -> Result<R, Error> {
    let value = send(node, &cmd, timeout, false, false).await.map_err(|e| {
        match classify(&e, addr_host(&node.addr)) {
            Failure::Timeout => {
                node.record_error();
                Error::Timeout {
                    command: cmd.name().into(),
                    node: node.addr.clone(),
                    after: timeout,
                }
            }
            Failure::Down(message) => {
                node.record_error();
                Error::Connection {
                    node: node.addr.clone(),
                    command: cmd.name().into(),
                    message,
                }
            }
            _ => Error::Server {
                node: node.addr.clone(),
                command: cmd.name().into(),
                message: e.details().to_string(),
            },
        }
    })?;
    R::from_value(value).map_err(|e| Error::Reply {
        node: node.addr.clone(),
        command: cmd.name().into(),
        detail: e.to_string(),
    })
}

/// One attempt on one node; with `asking`, `ASKING` and the command go in one pipeline on one connection.
async fn send(
    node: &NodeHandle,
    cmd: &Cmd,
    timeout: Duration,
    asking: bool,
    readonly: bool,
) -> Result<Value, fred::error::Error> {
    if let Cmd::Wait {
        replicas,
        timeout_ms,
        marker,
    } = cmd
    {
        // A blocking command never goes on a shared connection (see the `wait` module).
        return Box::pin(node.waits().wait(marker, *replicas, *timeout_ms, asking, timeout)).await;
    }
    let lane = if readonly { node.readonly() } else { node.lane() };
    if asking {
        // Rare: boxed, so that the common path's future stays small.
        return Box::pin(ask(&lane.client, cmd, timeout)).await;
    }
    // One attempt: when the connection drops with the command in flight, the call fails now (and the
    // routing loop decides what to do) instead of fred re-sending it after a reconnect that, for a
    // dead node, never comes before the deadline.
    let options = Options {
        timeout: Some(timeout),
        fail_fast: true,
        max_attempts: Some(1),
        ..Options::default()
    };
    lane.call(cmd, options).await
}

/// `ASKING` and the command in one pipeline on one connection, so no other command can come between.
async fn ask(client: &Client, cmd: &Cmd, timeout: Duration) -> Result<Value, fred::error::Error> {
    let pipeline = client.pipeline();
    let asking = CustomCommand::new_static("ASKING", ClusterHash::Random, false);
    let _: () = pipeline.custom(asking, Vec::<Value>::new()).await?;
    let _ = cmd.issue(&pipeline).await?;
    let mut results = tokio::time::timeout(timeout, pipeline.try_all::<Value>())
        .await
        .map_err(|_| fred::error::Error::new(ErrorKind::Timeout, "ASK pipeline timed out"))?;
    results.pop().unwrap_or_else(|| {
        Err(fred::error::Error::new(
            ErrorKind::Unknown,
            "empty pipeline reply",
        ))
    })
}

fn evalsha(script: &Script, keys: &[&[u8]], args: &[&[u8]]) -> Cmd {
    Cmd::EvalSha {
        sha: script.sha_str(),
        keys: keys.iter().map(|k| Bytes::copy_from_slice(k)).collect(),
        args: args.iter().map(|a| Bytes::copy_from_slice(a)).collect(),
    }
}

pub(crate) fn bytes_arg(bytes: &[u8]) -> Value {
    Value::Bytes(Bytes::copy_from_slice(bytes))
}

pub(crate) fn to_bytes(value: Value, command: &str) -> Result<Option<Bytes>, Error> {
    match value {
        Value::Null => Ok(None),
        Value::Bytes(b) => Ok(Some(b)),
        Value::String(s) => Ok(Some(s.into_inner())),
        Value::Integer(i) => Ok(Some(Bytes::from(i.to_string()))),
        other => Err(Error::Reply {
            node: String::new(),
            command: command.into(),
            detail: format!("not a string: {other:?}"),
        }),
    }
}

pub(crate) fn to_i64(value: &Value, command: &str) -> Result<i64, Error> {
    match value {
        Value::Integer(i) => Ok(*i),
        other => other.as_i64().ok_or_else(|| Error::Reply {
            node: String::new(),
            command: command.into(),
            detail: format!("not an integer: {other:?}"),
        }),
    }
}

fn key_hash(key: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    hasher.finish()
}

fn info_u64(info: &str, field: &str) -> Option<u64> {
    info.lines()
        .find_map(|l| l.trim().strip_prefix(field)?.strip_prefix(':')?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(kind: ErrorKind, details: &str, expected: &str) {
        let failure = classify(&fred::error::Error::new(kind, details.to_string()), "10.0.0.9");
        assert_eq!(format!("{failure:?}"), expected, "{details}");
    }

    #[test]
    fn classifies_server_replies() {
        check(
            ErrorKind::Cluster,
            "MOVED 3999 127.0.0.1:6381",
            r#"Moved { addr: "127.0.0.1:6381" }"#,
        );
        check(
            ErrorKind::Cluster,
            "MOVED 3999 :6381",
            r#"Moved { addr: "10.0.0.9:6381" }"#,
        );
        check(
            ErrorKind::Cluster,
            "MOVED 3999 ::1:6381",
            r#"Moved { addr: "[::1]:6381" }"#,
        );
        check(
            ErrorKind::Cluster,
            "ASK 3999 2001:db8::7:6381",
            r#"Ask { addr: "[2001:db8::7]:6381" }"#,
        );
        check(
            ErrorKind::Cluster,
            "ASK 3999 127.0.0.1:6381",
            r#"Ask { addr: "127.0.0.1:6381" }"#,
        );
        check(
            ErrorKind::Cluster,
            "CLUSTERDOWN The cluster is down",
            r#"Retry("CLUSTERDOWN The cluster is down")"#,
        );
        check(
            ErrorKind::Unknown,
            "TRYAGAIN Multiple keys request during rehashing of slot",
            r#"Retry("TRYAGAIN Multiple keys request during rehashing of slot")"#,
        );
        check(
            ErrorKind::Unknown,
            "LOADING Redis is loading the dataset in memory",
            r#"Retry("LOADING Redis is loading the dataset in memory")"#,
        );
        check(
            ErrorKind::Canceled,
            "Connection closed unexpectedly.",
            r#"Down("Connection closed unexpectedly.")"#,
        );
        check(
            ErrorKind::IO,
            "Connection reset by peer",
            r#"Down("Connection reset by peer")"#,
        );
        check(ErrorKind::Timeout, "Request timed out.", "Timeout");
        check(
            ErrorKind::InvalidArgument,
            "WRONGTYPE Operation against a key",
            r#"Server("WRONGTYPE Operation against a key")"#,
        );
        check(
            ErrorKind::Unknown,
            "NOSCRIPT No matching script.",
            r#"Server("NOSCRIPT No matching script.")"#,
        );
    }

    #[test]
    fn failover_versus_migration() {
        let shard = |primary: &str, replicas: &[&str], slots: Vec<(u16, u16)>| ShardInfo {
            primary: primary.into(),
            replicas: replicas.iter().map(|s| s.to_string()).collect(),
            slots,
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
            vec![("a:1".into(), "b:1".into(), vec![(0, 8191)])]
        );
        let migrated = Topology::cluster(vec![
            shard("a:1", &["b:1"], vec![(0, 8000)]),
            shard("c:1", &["d:1"], vec![(8001, 16383)]),
        ])
        .unwrap();
        assert!(failovers(&old, &migrated).is_empty());
    }

    #[test]
    fn lag_history_is_bounded_and_errs_on_the_strict_side() {
        let start = Instant::now();
        let mut history = VecDeque::new();
        let max_lag = Duration::from_millis(u64::from(u32::MAX));
        let mut threshold = 0;
        for i in 0..10_000u64 {
            threshold = lag_threshold(
                &mut history,
                start + Duration::from_millis(200 * i),
                i * 10,
                max_lag,
            );
            assert!(history.len() <= LAG_HISTORY_MAX);
        }
        // No sample is 49 days old: the oldest kept one stands in, newer than the true bound.
        assert_eq!(threshold, (10_000 - LAG_HISTORY_MAX as u64) * 10);
        // With a 1 s bound the sample of 1 s ago is the threshold.
        let mut history = VecDeque::new();
        for i in 0..20u64 {
            threshold = lag_threshold(
                &mut history,
                start + Duration::from_millis(200 * i),
                i * 10,
                Duration::from_secs(1),
            );
        }
        assert_eq!(threshold, 140);
    }

    #[test]
    fn info_fields() {
        assert_eq!(
            info_u64(
                "# Replication\r\nrole:master\r\nmaster_repl_offset:1234\r\n",
                "master_repl_offset"
            ),
            Some(1234)
        );
        assert_eq!(info_u64("x:1", "master_repl_offset"), None);
    }
}
