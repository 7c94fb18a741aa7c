//! One node: its fred connections, whether it is up, and its latency and error counts.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cluster_config::{ClusterConfig, NodeAddr};
use fred::prelude::*;
use fred::types::{ClusterHash, CustomCommand};
use hdrhistogram::Histogram;

use crate::Error;
use crate::bulk::BulkSlot;
use crate::fred_config;
use crate::lane::Lane;
use crate::probe::ProbeSlot;
use crate::telemetry;
use crate::tracking::TrackingSlot;
use crate::wait::WaitPool;

/// Latency and error counts of one node, as this client saw them.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct NodeStats {
    /// `host:port`.
    pub node: String,
    /// Whether its connections are up.
    pub connected: bool,
    /// Median latency of single-key calls in the current latency window: since the previous
    /// [`ClusterClient::take_node_stats`](crate::ClusterClient::take_node_stats), or since the client
    /// started. `None` when no call was timed in the window ("no data", not zero). Batches and
    /// node-addressed commands (warm-up scripts, scans, `INFO`) are counted in `commands` but not
    /// timed here: one pipeline or script of thousands of keys would pass for one very slow command.
    pub latency_p50: Option<Duration>,
    /// 99th percentile latency of single-key calls in the current latency window (see `latency_p50`).
    pub latency_p99: Option<Duration>,
    /// Commands completed since the client started (successfully or with a server error); a batch
    /// counts once.
    pub commands: u64,
    /// Commands that failed on the connection (timeouts, resets).
    pub errors: u64,
    /// MOVED and ASK redirects received from this node.
    pub redirects: u64,
    /// Calls carried by each routed connection of the pool, in fill order: the first takes calls
    /// until [`LANE_DEPTH`] are in flight on it, then the next. Overflow counts on the later
    /// connections say the pool is in use; all zeros there say a smaller pool would do.
    pub connection_calls: Vec<u64>,
}

/// Calls in flight on one connection before the next connection of the pool is used. Deep enough that
/// 50 concurrent tasks share one connection per node (measured best on 2 cores: fewer, fuller writes);
/// more connections carry the overflow when many more tasks are in flight.
pub const LANE_DEPTH: usize = 64;

/// One call in this many is recorded in the node's latency histogram.
const LATENCY_SAMPLE: u64 = 4;

pub(crate) struct NodeHandle {
    /// `host:port`, as this crate spells addresses (see `topology::node_addr`).
    pub(crate) addr: String,
    /// The same address, parsed once here so that error paths (a `MOVED` target printed as `:port`
    /// means this node's host) never split `addr` again.
    node: NodeAddr,
    /// `pool_size` connections, filled in order: a call takes the first one with fewer than
    /// [`LANE_DEPTH`] calls in flight, so that calls share writes on as few connections as the load
    /// allows (see the `lane` module).
    lanes: Vec<Lane>,
    /// The READONLY connection (replica reads, commands addressed to this node).
    readonly: Lane,
    /// Connections for `WAIT` only, opened on first use: a blocking command never shares a connection
    /// with other calls.
    waits: WaitPool,
    /// The health-probe connection, opened on first use (see the `probe` module).
    probe: ProbeSlot,
    /// The connection batches use, opened on first use (see the `bulk` module).
    bulk: BulkSlot,
    /// The near cache's tracking connection, opened on first tracked read (see the `tracking` module).
    tracking: TrackingSlot,
    up: AtomicBool,
    /// Whether any of the node's routed connections has been up since the handle was opened. A node
    /// that never connected is new (a primary that just joined, a `MOVED` target seen for the first
    /// time): calls wait for its first connection within their deadline instead of failing fast, and
    /// it is never reported down, because it was never up.
    connected_once: AtomicBool,
    /// Set when a topology refresh saw this node's slots move to its replica (a failover), cleared when
    /// it is a primary again: a write it acknowledges meanwhile may be discarded when it rejoins as a
    /// replica (see `ClusterClient::run`).
    replaced: AtomicBool,
    /// The latency window: calls timed since the window last started (see [`NodeHandle::stats`]).
    /// A window, not the node's whole life, so that the percentiles show the current load and a
    /// spike moves them.
    latency: Mutex<Histogram<u64>>,
    commands: AtomicU64,
    errors: AtomicU64,
    /// When the last connection error or timeout happened: milliseconds after `opened`, plus one
    /// (0: never).
    last_error: AtomicU64,
    opened: Instant,
    /// Whether the node is reached over TLS (discovery then reads the nodes' TLS ports).
    pub(crate) tls: bool,
    redirects: AtomicU64,
    latency_metric: metrics::Histogram,
    error_metric: metrics::Counter,
    redirect_metric: metrics::Counter,
    command_metric: metrics::Counter,
}

impl std::fmt::Debug for NodeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeHandle")
            .field("addr", &self.addr)
            .field("up", &self.is_up())
            .finish()
    }
}

impl NodeHandle {
    /// Builds the node's connections and starts connecting in the background; never waits.
    pub(crate) fn open(addr: &str, config: &ClusterConfig) -> Result<Arc<NodeHandle>, Error> {
        let node: NodeAddr = addr.parse().map_err(|_| Error::UnknownNode {
            node: addr.into(),
            known: String::new(),
        })?;
        let builder = fred_config::node_builder(config, &node)?;
        let build = || {
            builder.build().map_err(|e| Error::Connection {
                node: addr.into(),
                command: "connect".into(),
                message: e.to_string(),
            })
        };
        let mut lanes = Vec::with_capacity(config.pool_size().max(1));
        for _ in 0..config.pool_size().max(1) {
            let client = build()?;
            client.connect();
            lanes.push(Lane::new(client));
        }
        // A separate connection for replica reads and commands aimed at one node, with READONLY sent on
        // every (re)connect. Routed commands never use it: on a primary that was just demoted, a READONLY
        // connection would serve a stale read where a plain one answers MOVED.
        let readonly = build()?;
        let for_readonly = readonly.clone();
        readonly.on_reconnect(move |_| {
            let client = for_readonly.clone();
            async move {
                let _ = client.custom::<Value, Value>(readonly_command(), vec![]).await;
                Ok(())
            }
        });
        readonly.connect();
        let readonly = Lane::new(readonly);
        // fred's unresponsive check would cut a connection whose WAIT is (by design) slow to answer;
        // each wait's own deadline bounds it instead.
        let mut wait_builder = builder.clone();
        wait_builder.set_connection_config(fred::types::config::ConnectionConfig {
            unresponsive: Default::default(),
            ..fred_config::connection_config(config)
        });
        let waits = WaitPool::new(wait_builder);
        let bulk = BulkSlot::new(&node, config)?;
        let labels = [("node", addr.to_string())];
        Ok(Arc::new(NodeHandle {
            addr: addr.to_string(),
            node,
            lanes,
            readonly,
            waits,
            probe: ProbeSlot::new(addr)?,
            bulk,
            tracking: TrackingSlot::new(),
            up: AtomicBool::new(true),
            connected_once: AtomicBool::new(false),
            replaced: AtomicBool::new(false),
            latency: Mutex::new(
                Histogram::new_with_bounds(1, 60_000_000, 2).map_err(|e| Error::Reply {
                    node: addr.into(),
                    command: "histogram".into(),
                    detail: e.to_string(),
                })?,
            ),
            commands: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            last_error: AtomicU64::new(0),
            opened: Instant::now(),
            tls: config.tls(),
            redirects: AtomicU64::new(0),
            latency_metric: metrics::histogram!(telemetry::COMMAND_DURATION_METRIC, &labels),
            error_metric: metrics::counter!(telemetry::ERRORS_METRIC, &labels),
            redirect_metric: metrics::counter!(telemetry::REDIRECTS_METRIC, &labels),
            command_metric: metrics::counter!(telemetry::COMMANDS_METRIC, &labels),
        }))
    }

    /// The node's host, IPv6 without brackets (`::1` for `[::1]:7000`).
    pub(crate) fn host(&self) -> &str {
        self.node.host()
    }

    /// The connection for the next call: the first with room (fewer than [`LANE_DEPTH`] calls in
    /// flight), or the least busy when all are that deep.
    /// Connections that are down are passed over while another is up, so that one dropped connection
    /// of a healthy node does not fail the calls that would have used it.
    pub(crate) fn lane(&self) -> &Lane {
        let mut best: Option<&Lane> = None;
        for lane in &self.lanes {
            if !lane.client.is_connected() {
                continue;
            }
            let depth = lane.in_flight();
            if depth < LANE_DEPTH {
                return lane;
            }
            if best.is_none_or(|b| depth < b.in_flight()) {
                best = Some(lane);
            }
        }
        // None up: the first, whose call then fails fast (or, for a new node, waits for it).
        best.unwrap_or(&self.lanes[0])
    }

    /// The health-probe connection.
    pub(crate) fn probe(&self) -> &ProbeSlot {
        &self.probe
    }

    /// The near cache's tracking connection.
    pub(crate) fn tracking(&self) -> &TrackingSlot {
        &self.tracking
    }

    /// The dedicated connections for `WAIT`.
    pub(crate) fn bulk(&self) -> &BulkSlot {
        &self.bulk
    }

    pub(crate) fn waits(&self) -> &WaitPool {
        &self.waits
    }

    /// Every connection: the routed ones, then the READONLY one.
    fn clients(&self) -> impl Iterator<Item = &Client> {
        self.lanes
            .iter()
            .chain(std::iter::once(&self.readonly))
            .map(|lane| &lane.client)
    }

    /// Waits up to `timeout` for the first connection; `false` if it did not come up.
    pub(crate) async fn wait_connected(&self, timeout: Duration) -> bool {
        self.connect_outcome(timeout).await.is_ok()
    }

    /// Waits up to `timeout` for every connection to come up. `Err(Some(message))` as soon as an attempt
    /// fails in a way retrying will not fix (a refused certificate, a TLS port closing a plain
    /// connection); `Err(None)` when they did not all come up in time, with the last error seen if any.
    ///
    /// fred keeps reconnecting a client that is not fail-fast and reports failed attempts only on its
    /// error channel, so that channel is watched beside the connection notice. A refused connection
    /// (the node is starting or restarting) is waited out as before.
    pub(crate) async fn connect_outcome(&self, timeout: Duration) -> Result<(), Option<String>> {
        let last = std::sync::Mutex::new(None::<String>);
        let each = self.clients().map(|client| {
            let mut errors = client.error_rx();
            let last = &last;
            async move {
                let connected = client.wait_for_connect();
                tokio::pin!(connected);
                loop {
                    tokio::select! {
                        result = &mut connected => {
                            return result.map_err(|e| Some(e.details().to_string()));
                        }
                        event = errors.recv() => match event {
                            Ok((error, _)) => {
                                let message = error.details().to_string();
                                if !message.contains("refused") {
                                    return Err(Some(message));
                                }
                                if let Ok(mut last) = last.lock() {
                                    *last = Some(message);
                                }
                            }
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                            // No more error events: the connection notice alone settles it.
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                                return connected.await.map_err(|e| Some(e.details().to_string()));
                            }
                        },
                    }
                }
            }
        });
        let all = futures::future::try_join_all(each);
        match tokio::time::timeout(timeout, all).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(message)) => Err(message),
            Err(_) => Err(last.lock().ok().and_then(|mut last| last.take())),
        }
    }

    /// The READONLY connection.
    pub(crate) fn readonly(&self) -> &Lane {
        &self.readonly
    }

    /// Whether any routed connection is up (the next call takes one that is: see [`NodeHandle::lane`]).
    pub(crate) fn is_routable(&self) -> bool {
        let up = self.lanes.iter().any(|lane| lane.client.is_connected());
        if up && !self.connected_once.load(Ordering::Relaxed) {
            self.connected_once.store(true, Ordering::Relaxed);
        }
        up
    }

    /// Whether a routed connection has ever been up (see the `connected_once` field).
    pub(crate) fn has_connected(&self) -> bool {
        self.connected_once.load(Ordering::Relaxed) || self.is_routable()
    }

    /// Waits up to `timeout` for any routed connection of a node to come up; `false` if none did. For
    /// new nodes only (rare), so a short poll is simpler than racing fred's connection notifications,
    /// which report failed attempts as well as successful ones.
    pub(crate) async fn wait_routable(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.is_routable() {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(2).min(left)).await;
        }
    }

    /// Whether every connection is up right now.
    pub(crate) fn is_connected(&self) -> bool {
        self.lanes.iter().all(|lane| lane.client.is_connected())
    }

    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Records the node's state; returns `true` if it changed.
    pub(crate) fn set_up(&self, up: bool) -> bool {
        self.up.swap(up, Ordering::Relaxed) != up
    }

    /// Whether a failover moved this node's slots to another node since it was last seen as a primary.
    pub(crate) fn is_replaced(&self) -> bool {
        self.replaced.load(Ordering::Relaxed)
    }

    /// Records that a failover replaced this node (`true`), or that it is a primary again (`false`).
    pub(crate) fn set_replaced(&self, replaced: bool) {
        self.replaced.store(replaced, Ordering::Relaxed);
    }

    pub(crate) fn record(&self, elapsed: Duration) {
        let n = self.commands.fetch_add(1, Ordering::Relaxed);
        self.command_metric.increment(1);
        self.latency_metric.record(elapsed.as_secs_f64());
        // Every 4th call feeds the percentiles: the same distribution at a quarter of the lock traffic
        // on a hot path shared by every task.
        if n.is_multiple_of(LATENCY_SAMPLE)
            && let Ok(mut h) = self.latency.lock()
        {
            let _ = h.record((elapsed.as_micros() as u64).max(1));
        }
    }

    /// Counts a batch or a node-addressed command, without timing it.
    pub(crate) fn record_untimed(&self) {
        self.commands.fetch_add(1, Ordering::Relaxed);
        self.command_metric.increment(1);
    }

    pub(crate) fn record_error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.error_metric.increment(1);
        let at = self.opened.elapsed().as_millis() as u64 + 1;
        self.last_error.store(at, Ordering::Relaxed);
    }

    /// Whether a connection error or timeout happened on this node within `window`.
    pub(crate) fn failed_within(&self, window: Duration) -> bool {
        match self.last_error.load(Ordering::Relaxed) {
            0 => false,
            at => {
                let now = self.opened.elapsed().as_millis() as u64 + 1;
                now.saturating_sub(at) <= window.as_millis() as u64
            }
        }
    }

    pub(crate) fn record_redirect(&self) {
        self.redirects.fetch_add(1, Ordering::Relaxed);
        self.redirect_metric.increment(1);
    }

    /// The node's statistics; with `restart_window`, the latency window starts anew after they are
    /// read, so that the next read covers only the calls made in between.
    pub(crate) fn stats(&self, restart_window: bool) -> NodeStats {
        let (p50, p99) = match self.latency.lock() {
            Ok(mut h) => {
                let window = (!h.is_empty()).then(|| {
                    (
                        Duration::from_micros(h.value_at_quantile(0.5)),
                        Duration::from_micros(h.value_at_quantile(0.99)),
                    )
                });
                if restart_window {
                    h.reset();
                }
                window.unzip()
            }
            Err(_) => (None, None),
        };
        NodeStats {
            node: self.addr.clone(),
            connected: self.is_connected(),
            latency_p50: p50,
            latency_p99: p99,
            commands: self.commands.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            redirects: self.redirects.load(Ordering::Relaxed),
            connection_calls: self.bulk.calls(),
        }
    }

    /// Closes every connection in the background: `quit()` on a dead node can take the command timeout.
    pub(crate) fn close(&self) {
        self.bulk.close();
        self.tracking.close();
        self.waits.close();
        self.probe.close();
        for client in self.clients() {
            let client = client.clone();
            tokio::spawn(async move {
                let _ = client.quit().await;
            });
        }
    }
}

fn readonly_command() -> CustomCommand {
    CustomCommand::new_static("READONLY", ClusterHash::Random, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn percentiles_cover_the_window_and_an_empty_window_is_no_data() {
        // No server listens on port 1: the handle only gives the statistics a node to belong to.
        let config = ClusterConfig::builder()
            .nodes(["127.0.0.1:1"])
            .build()
            .expect("valid config");
        let node = NodeHandle::open("127.0.0.1:1", &config).expect("a handle");
        let stats = node.stats(false);
        assert_eq!(
            (stats.latency_p50, stats.latency_p99),
            (None, None),
            "no call yet"
        );
        let calls = LATENCY_SAMPLE * 100;
        for _ in 0..calls {
            node.record(Duration::from_millis(200));
        }
        let slow = node.stats(true);
        assert!(
            slow.latency_p99.is_some_and(|p| p >= Duration::from_millis(190)),
            "{slow:?}"
        );
        assert_eq!(
            node.stats(false).latency_p99,
            None,
            "taking the stats starts a new window"
        );
        for _ in 0..calls {
            node.record(Duration::from_micros(300));
        }
        let fast = node.stats(true);
        assert!(
            fast.latency_p99.is_some_and(|p| p < Duration::from_millis(1)),
            "the window after the slow phase shows only the fast one: {fast:?}"
        );
        assert_eq!(fast.commands, 2 * calls, "counts are since the start");
        node.close();
    }
}
