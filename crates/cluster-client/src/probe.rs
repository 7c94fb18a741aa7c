//! Health probes of one node: `PING` timed, then `INFO`, `CLUSTER INFO` and `CLUSTER NODES`, on a
//! connection of the node's own that no call shares.
//!
//! A probe must say how the node is *now*, and must never wait behind the application's traffic nor
//! delay it. So a probe connection is fail-fast, has no reconnect policy and no retries, and is dropped
//! at its first error; the next probe opens a new one. One node that hangs (SIGSTOP) or is gone costs
//! its probe at most the probe's timeout.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cluster_config::{ClusterConfig, NodeAddr};
use fred::prelude::{ClientLike, ClusterInterface};
use fred::types::Builder;

use crate::client::classify;
use crate::{ClusterClient, Error, durations, fred_config};

/// What one node answered to a probe.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeProbe {
    /// Round trip of `PING` on an open connection.
    pub ping: Duration,
    /// `INFO` (default sections), as the node sent it; `None` when the node's ACL denies it to this
    /// user (`NOPERM`: `INFO` is in `@dangerous`, which least-privilege users lack). A denied `INFO` is
    /// no sign of trouble: the node answered.
    pub info: Option<String>,
    /// `CLUSTER INFO` and `CLUSTER NODES` text, when the node runs in cluster mode (`INFO` says
    /// `cluster_enabled:1`, or, with `INFO` denied, `CLUSTER INFO` answers).
    pub cluster: Option<ClusterView>,
}

/// A cluster node's own view, from a [`NodeProbe`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterView {
    /// `CLUSTER INFO`, as the node sent it.
    pub info: String,
    /// `CLUSTER NODES`, as the node sent it.
    pub nodes: String,
}

impl ClusterClient {
    /// Probes one node (`host:port`): `PING` timed, then `INFO`, `CLUSTER INFO` and `CLUSTER NODES`
    /// in one round trip, all within `timeout`, on a probe connection of the node's own (opened on first
    /// use and kept while it works). A node this client does not know yet is opened as one named by
    /// `MOVED` would be. The probe never retries and never waits for a reconnection, and no call shares
    /// its connection, so it neither waits behind the application's traffic nor delays it.
    ///
    /// `timeout` must be from [`MIN_TIMEOUT`](crate::MIN_TIMEOUT) to [`MAX_TIMEOUT`](crate::MAX_TIMEOUT).
    /// A node that does not answer in time is [`Error::Timeout`]; one that cannot be reached,
    /// [`Error::Connection`]; one that answers with an error, [`Error::Server`]. An ACL that denies
    /// `INFO` is not an error: [`NodeProbe::info`] is `None`.
    pub async fn probe_node(&self, node: &str, timeout: Duration) -> Result<NodeProbe, Error> {
        let timeout = durations::timeout("probe_node timeout", timeout)?;
        let handle = self.node_for(node)?;
        handle.probe().probe(self.config(), timeout).await
    }
}

/// Probes nodes by address without a [`ClusterClient`]: for health checks pointed at bare node
/// addresses, which must report a node down rather than fail to start when no node answers.
///
/// It holds one probe connection per node probed, as [`ClusterClient::probe_node`] does.
///
/// ```
/// use std::time::Duration;
/// use cluster_client::NodeProber;
/// use cluster_config::ClusterConfig;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let _lock = local_cluster::test_lock::shared().await?;
/// # let redis = local_cluster::LocalStandalone::start(1).await?;
/// # let addr = redis.addrs()[0].clone();
/// // `addr` is a running Redis, e.g. "127.0.0.1:6379".
/// let config = ClusterConfig::builder().nodes([addr.as_str()]).build()?;
/// let prober = NodeProber::new(&config);
/// let probe = prober.probe(&addr, Duration::from_secs(1)).await?;
/// assert!(probe.info.as_deref().unwrap_or_default().contains("redis_version:"));
/// assert!(probe.cluster.is_none(), "a standalone server");
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct NodeProber {
    config: ClusterConfig,
    nodes: Mutex<HashMap<String, Arc<ProbeSlot>>>,
}

impl NodeProber {
    /// A prober with the credentials of `config`. Opens nothing until the first probe.
    pub fn new(config: &ClusterConfig) -> NodeProber {
        NodeProber {
            config: config.clone(),
            nodes: Mutex::new(HashMap::new()),
        }
    }

    /// Probes `node` (`host:port`) as [`ClusterClient::probe_node`] does.
    pub async fn probe(&self, node: &str, timeout: Duration) -> Result<NodeProbe, Error> {
        let timeout = durations::timeout("probe timeout", timeout)?;
        let slot = {
            // The map is only ever extended, never left half-written: a poisoned lock is usable.
            let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
            match nodes.get(node) {
                Some(slot) => slot.clone(),
                None => {
                    let slot = Arc::new(ProbeSlot::new(node)?);
                    nodes.insert(node.to_owned(), slot.clone());
                    slot
                }
            }
        };
        slot.probe(&self.config, timeout).await
    }

    /// Closes every probe connection (in the background).
    pub fn close(&self) {
        let nodes = std::mem::take(&mut *self.nodes.lock().unwrap_or_else(|p| p.into_inner()));
        for slot in nodes.values() {
            slot.close();
        }
    }
}

impl Drop for NodeProber {
    fn drop(&mut self) {
        self.close();
    }
}

/// One node's probe connection, if one is open.
#[derive(Debug)]
pub(crate) struct ProbeSlot {
    addr: String,
    node: NodeAddr,
    conn: Mutex<Option<fred::clients::Client>>,
}

/// The command name errors give: the probe's commands (`PING`, `INFO`, `CLUSTER INFO`, `CLUSTER NODES`).
const PROBE: &str = "probe";

/// Why one attempt of a probe failed.
struct Failed {
    error: Error,
    /// Whether the deadline passed (as opposed to an error reply or a broken connection).
    timed_out: bool,
}

impl ProbeSlot {
    /// An empty slot for `addr`; refuses an address that does not parse.
    pub(crate) fn new(addr: &str) -> Result<ProbeSlot, Error> {
        let node: NodeAddr = addr.parse().map_err(|_| Error::UnknownNode {
            node: addr.into(),
            known: String::new(),
        })?;
        Ok(ProbeSlot {
            addr: addr.to_owned(),
            node,
            conn: Mutex::new(None),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Option<fred::clients::Client>> {
        // The guarded value is replaced whole, never left half-written, so a poisoned lock is usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One probe within `timeout`: on the open connection if there is one, else (or if that one broke
    /// since the last probe) on a new one.
    pub(crate) async fn probe(&self, config: &ClusterConfig, timeout: Duration) -> Result<NodeProbe, Error> {
        let deadline = tokio::time::Instant::now() + timeout;
        let cached = self.conn().clone().filter(ClientLike::is_connected);
        if let Some(client) = cached {
            match self.exchange(&client, false, deadline, timeout).await {
                Ok(probe) => return Ok(probe),
                Err(failed) => {
                    self.conn().take();
                    close_in_background(client);
                    // A connection that broke since the last probe (the node restarted, or resumed
                    // after a pause) says nothing about the node now: ask again on a new one, within
                    // the same deadline. A timeout already used the deadline up.
                    if failed.timed_out {
                        return Err(failed.error);
                    }
                }
            }
        }
        let builder: Builder = fred_config::probe_builder(config, &self.node, timeout)?;
        let client = builder.build().map_err(|e| Error::Connection {
            node: self.addr.clone(),
            command: "connect".into(),
            message: e.to_string(),
        })?;
        match self.exchange(&client, true, deadline, timeout).await {
            Ok(probe) => {
                if let Some(old) = self.conn().replace(client) {
                    close_in_background(old);
                }
                Ok(probe)
            }
            Err(failed) => {
                close_in_background(client);
                Err(failed.error)
            }
        }
    }

    /// The commands of one probe on `client` (connecting it first when `connect`), by `deadline`.
    async fn exchange(
        &self,
        client: &fred::clients::Client,
        connect: bool,
        deadline: tokio::time::Instant,
        timeout: Duration,
    ) -> Result<NodeProbe, Failed> {
        let work = async {
            if connect {
                client.init().await?;
            }
            let start = Instant::now();
            client.ping::<String>(None).await?;
            let ping = start.elapsed();
            // All three at once on the one connection: one round trip. A standalone node answers the
            // cluster commands with an error, which is ignored once INFO says it is not a cluster.
            let (info, cluster_info, cluster_nodes) = tokio::join!(
                client.info::<String>(None),
                client.cluster_info::<String>(),
                client.cluster_nodes::<String>()
            );
            let info = match info {
                Ok(info) => Some(info),
                Err(e) if is_denied(&e) => None,
                Err(e) => return Err(e),
            };
            let cluster_enabled = match &info {
                Some(info) => replies::Info::parse(info).cluster_enabled == Some(true),
                // Without INFO, a node in cluster mode is one that answers CLUSTER INFO; a standalone
                // node refuses it ("ERR This instance has cluster support disabled").
                None => cluster_info.is_ok(),
            };
            let cluster = if cluster_enabled {
                Some(ClusterView {
                    info: cluster_info?,
                    nodes: cluster_nodes?,
                })
            } else {
                None
            };
            Ok::<_, fred::error::Error>(NodeProbe { ping, info, cluster })
        };
        match tokio::time::timeout_at(deadline, work).await {
            Ok(Ok(probe)) => Ok(probe),
            Ok(Err(e)) => Err(Failed {
                error: classify(&e, self.node.host()).into_error_at(&self.addr, PROBE, timeout),
                timed_out: false,
            }),
            Err(_) => Err(Failed {
                error: Error::Timeout {
                    command: PROBE.into(),
                    node: self.addr.clone(),
                    after: timeout,
                },
                timed_out: true,
            }),
        }
    }

    /// Closes the probe connection, if any (in the background).
    pub(crate) fn close(&self) {
        if let Some(client) = self.conn().take() {
            close_in_background(client);
        }
    }
}

/// Whether the server refused a command to this user by its ACL.
fn is_denied(error: &fred::error::Error) -> bool {
    error.details().starts_with("NOPERM")
}

/// `QUIT` without waiting: on a node that hangs it can take the probe timeout.
fn close_in_background(client: fred::clients::Client) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            let _ = client.quit().await;
        });
    }
}
