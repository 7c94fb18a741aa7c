//! The validated configuration and the types of its fields.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use crate::error::{Error, Problem};
use crate::node::NodeAddr;
use crate::secret::Password;

/// One validated configuration of the cache layer.
///
/// Values come from, in increasing priority: defaults, a TOML or YAML file, the `REDIS_*` environment,
/// and [`ClusterConfigBuilder`](crate::ClusterConfigBuilder) methods. Validation runs once, when the
/// value is made, so a `ClusterConfig` is always valid: its fields are read through methods and cannot
/// be changed afterwards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    pub(crate) nodes: Vec<NodeAddr>,
    /// One weight per node, in the same order (1 unless the entry said `=weight`).
    pub(crate) node_weights: Vec<u32>,
    pub(crate) mode: Mode,
    pub(crate) sharding: ShardingConfig,
    pub(crate) pool_size: usize,
    pub(crate) retry: RetryConfig,
    pub(crate) timeouts: Timeouts,
    pub(crate) topology_refresh_interval: Duration,
    pub(crate) replica_reads: ReplicaReads,
    pub(crate) limits: Limits,
    pub(crate) health_interval: Duration,
    pub(crate) metrics: MetricsConfig,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<Password>,
    /// `Some` when connections use TLS (`REDIS_TLS` or `rediss://` nodes).
    pub(crate) tls: Option<TlsConfig>,
    pub(crate) sentinel: SentinelConfig,
}

impl ClusterConfig {
    /// The seed nodes, in the order given, without duplicates (`REDIS_CLUSTER_NODES`). In cluster mode every
    /// one is a seed; in standalone and sharded modes they are the servers.
    pub fn nodes(&self) -> &[NodeAddr] {
        &self.nodes
    }

    /// The weight of each node, in the order of [`nodes`](ClusterConfig::nodes): 1 unless its entry ended
    /// in `=weight` (`10.0.0.1:6379=3`, from 1 to [`MAX_NODE_WEIGHT`](crate::MAX_NODE_WEIGHT)).
    ///
    /// Only client-side sharding reads weights: a ketama ring gives each node points in proportion to
    /// its weight (as libmemcached's weighted ketama does), a key-range layout slots in proportion.
    ///
    /// ```
    /// let config = cluster_config::ClusterConfig::builder().nodes(["a:6379=3", "b:6379"]).build()?;
    /// assert_eq!(config.node_weights(), &[3, 1]);
    /// let weighted: Vec<String> = config.weighted_nodes().map(|(n, w)| format!("{n}={w}")).collect();
    /// assert_eq!(weighted, ["a:6379=3", "b:6379=1"]);
    /// # Ok::<(), cluster_config::Error>(())
    /// ```
    pub fn node_weights(&self) -> &[u32] {
        &self.node_weights
    }

    /// Every node with its weight, in the order given.
    pub fn weighted_nodes(&self) -> impl ExactSizeIterator<Item = (&NodeAddr, u32)> + '_ {
        self.nodes.iter().zip(self.node_weights.iter().copied())
    }

    /// How the nodes are used (`REDIS_MODE`); see [`ClusterConfig::resolve_mode`].
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Client-side sharding over standalone nodes (`REDIS_ENABLE_SHARDING`, `REDIS_SHARDING_STRATEGY`).
    pub fn sharding(&self) -> &ShardingConfig {
        &self.sharding
    }

    /// Connections per node, at least 1 (`REDIS_CONNECTION_POOL_SIZE`).
    pub fn pool_size(&self) -> usize {
        self.pool_size
    }

    /// Command retries and reconnection backoff (`REDIS_MAX_RETRIES`, `REDIS_RETRY_*`).
    pub fn retry(&self) -> &RetryConfig {
        &self.retry
    }

    /// Command, connection and unresponsive-node timeouts (`REDIS_*_TIMEOUT_MS`).
    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    /// Period of the routine slot-table refresh (`REDIS_TOPOLOGY_REFRESH_INTERVAL_MS`).
    pub fn topology_refresh_interval(&self) -> Duration {
        self.topology_refresh_interval
    }

    /// Whether reads may go to replicas, and how stale they may be (`REDIS_REPLICA_READS`,
    /// `REDIS_MAX_REPLICA_LAG_MS`).
    pub fn replica_reads(&self) -> &ReplicaReads {
        &self.replica_reads
    }

    /// Key and value size limits (`REDIS_KEY_MAX_BYTES`, `REDIS_VALUE_MAX_BYTES`).
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Period of the health check (`REDIS_HEALTH_INTERVAL_MS`, default 30 s).
    pub fn health_interval(&self) -> Duration {
        self.health_interval
    }

    /// Metrics switch and Prometheus listen address (`REDIS_CLUSTER_METRICS`, `REDIS_METRICS_LISTEN`).
    pub fn metrics(&self) -> &MetricsConfig {
        &self.metrics
    }

    /// The ACL user name (`REDIS_USERNAME`), if any.
    pub fn username(&self) -> Option<&str> {
        self.username.as_deref()
    }

    /// The password (`REDIS_PASSWORD`), if any; it prints as `[redacted]`.
    pub fn password(&self) -> Option<&Password> {
        self.password.as_ref()
    }

    /// Whether connections use TLS (`REDIS_TLS` or `rediss://` nodes).
    pub fn tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The TLS settings when connections use TLS (`REDIS_TLS` or `rediss://` nodes), else `None`.
    ///
    /// ```
    /// let config = cluster_config::ClusterConfig::builder().nodes(["rediss://h:6380"]).build()?;
    /// let tls = config.tls_config().expect("rediss:// switches TLS on");
    /// assert_eq!((tls.ca_file(), tls.client_auth(), tls.server_name()), (None, None, None));
    /// # Ok::<(), cluster_config::Error>(())
    /// ```
    pub fn tls_config(&self) -> Option<&TlsConfig> {
        self.tls.as_ref()
    }

    /// The sentinels, the master name they monitor and the sentinels' own credentials
    /// (`REDIS_SENTINEL_*`). Empty unless [`mode`](ClusterConfig::mode) is [`Mode::Sentinel`], where the
    /// sentinels and the master name are always set.
    pub fn sentinel(&self) -> &SentinelConfig {
        &self.sentinel
    }

    /// The mode a client should run in, given what the nodes said they are (`cluster_enabled` in
    /// `INFO cluster`).
    ///
    /// `auto` follows the nodes: a cluster runs as [`ResolvedMode::Cluster`]; one standalone node as
    /// [`ResolvedMode::Standalone`]; several standalone nodes are sharded client-side with the configured
    /// strategy when `sharding.enabled` is true, and refused otherwise. An explicit mode must match what
    /// the nodes are.
    ///
    /// ```
    /// use cluster_config::{ClusterConfig, ResolvedMode, ServerKind, ShardingStrategy};
    ///
    /// let config = ClusterConfig::builder().nodes(["a:6379", "b:6379"]).build()?;
    /// assert_eq!(config.resolve_mode(ServerKind::Cluster)?, ResolvedMode::Cluster);
    /// assert_eq!(
    ///     config.resolve_mode(ServerKind::Standalone)?,
    ///     ResolvedMode::Sharded(ShardingStrategy::ConsistentHash)
    /// );
    /// # Ok::<(), cluster_config::Error>(())
    /// ```
    pub fn resolve_mode(&self, found: ServerKind) -> Result<ResolvedMode, Error> {
        let mismatch = || Error::ModeMismatch {
            configured: self.mode,
            found,
        };
        match (self.mode, found) {
            (Mode::Auto | Mode::Cluster, ServerKind::Cluster) => Ok(ResolvedMode::Cluster),
            (Mode::Standalone | Mode::Sharded, ServerKind::Cluster) => Err(mismatch()),
            (Mode::Cluster, ServerKind::Standalone) => Err(mismatch()),
            (Mode::Standalone, ServerKind::Standalone) => Ok(ResolvedMode::Standalone),
            (Mode::Sharded, ServerKind::Standalone) => Ok(ResolvedMode::Sharded(self.sharding.strategy)),
            (Mode::Sentinel, ServerKind::Standalone) => Ok(ResolvedMode::Sentinel),
            (Mode::Sentinel, ServerKind::Cluster) => Err(mismatch()),
            (Mode::Auto, ServerKind::Standalone) => match (self.nodes.len(), self.sharding.enabled) {
                (0 | 1, _) => Ok(ResolvedMode::Standalone),
                (_, true) => Ok(ResolvedMode::Sharded(self.sharding.strategy)),
                (nodes, false) => Err(Error::ShardingDisabled { nodes }),
            },
        }
    }
}

/// Client-side sharding over standalone nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShardingConfig {
    /// In `auto` mode, whether several standalone nodes are sharded client-side (`true`) or refused
    /// (`false`). `sharded` mode always shards; `cluster` mode uses the server's slots.
    pub enabled: bool,
    /// How keys map to standalone nodes when sharding client-side.
    pub strategy: ShardingStrategy,
}

/// Sentinel mode: where the sentinels are, which master they watch, and how to log in to them.
///
/// The sentinels' credentials are theirs only: the primary and replicas they name are logged in to
/// with `REDIS_USERNAME` / `REDIS_PASSWORD`, as in every other mode. `Debug` shows the password as
/// `[redacted]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SentinelConfig {
    /// The sentinels, in the order they are asked (`REDIS_SENTINEL_NODES`; port 26379 unless given).
    pub nodes: Vec<NodeAddr>,
    /// The master name the sentinels monitor (`REDIS_SENTINEL_MASTER`).
    pub master: Option<String>,
    /// The sentinels' ACL user (`REDIS_SENTINEL_USERNAME`), if any.
    pub username: Option<String>,
    /// The sentinels' password (`REDIS_SENTINEL_PASSWORD`), if any.
    pub password: Option<Password>,
}

/// Retries of failed commands and backoff between attempts.
///
/// The same backoff paces a client's reconnection to a node, which never gives up (cluster-client turns
/// these settings into its connections' reconnect policy); `max_retries` bounds command retries only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryConfig {
    /// Retries of a failed command before its error is returned; 0 means one attempt only.
    pub max_retries: u32,
    /// Delay before the first retry, at least 1 ms, whole milliseconds.
    pub initial_delay: Duration,
    /// Upper bound of any delay, at least `initial_delay`, whole milliseconds.
    pub max_delay: Duration,
    /// Factor from one delay to the next, at least 1 (1 keeps the delay constant). A whole number, because
    /// the reconnect policy's exponential base is an integer and both must agree.
    pub backoff_multiplier: u32,
    /// Retries of a read of one key before its error is returned.
    pub read_key_max_retries: u32,
}

impl RetryConfig {
    /// The delay before retry number `retry` (1 for the first):
    /// `min(max_delay, initial_delay × backoff_multiplier^(retry − 1))`, the same curve as the
    /// reconnect policy without its jitter.
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = cluster_config::ClusterConfig::builder().nodes(["h:1"]).build()?;
    /// let delays: Vec<_> = (1..=7).map(|n| config.retry().delay_for_retry(n).as_millis()).collect();
    /// assert_eq!(delays, [100, 200, 400, 800, 1600, 3000, 3000]);
    /// # Ok::<(), cluster_config::Error>(())
    /// ```
    pub fn delay_for_retry(&self, retry: u32) -> Duration {
        crate::Backoff::from(self).delay(retry)
    }
}

/// Timeouts, all whole milliseconds and at least 1 ms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Timeouts {
    /// Time a command may take, waiting in the client's queue included, before it fails with a timeout.
    pub command: Duration,
    /// Time to open a TCP connection and run its set-up commands (`AUTH`, `HELLO`).
    pub connect: Duration,
    /// A connection whose oldest outstanding reply is this old is closed and re-opened. It catches a
    /// node that is frozen (SIGSTOP, swapping) rather than dead, whose socket stays open. At least the
    /// command timeout, so that a slow but healthy reply does not cost a reconnection.
    pub unresponsive: Duration,
}

/// Reads from replicas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplicaReads {
    /// Whether reads may be served by replicas.
    pub mode: ReplicaReadMode,
    /// A replica lagging its primary by more than this serves no reads, and keys this client wrote
    /// within this window are read from the primary. Whole milliseconds.
    pub max_lag: Duration,
}

/// Size limits checked before a command is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Longest key accepted, in bytes (1 to 512 MiB, Redis's own limit).
    pub key_max_bytes: usize,
    /// Largest value accepted, in bytes (1 to 512 MiB, Redis's own limit).
    pub value_max_bytes: usize,
}

/// TLS settings: which CA to trust, the client certificate for mutual TLS, and the name certificates
/// are checked against.
///
/// It holds paths only: cluster-client reads and parses the PEM files when it connects, so the private
/// key's bytes never live in a configuration value (the key file's path is not secret and prints).
/// Validation checked that every named file existed and was readable, and that the certificate and key
/// come together.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct TlsConfig {
    pub(crate) ca_file: Option<PathBuf>,
    pub(crate) client_auth: Option<(PathBuf, PathBuf)>,
    pub(crate) server_name: Option<String>,
}

impl TlsConfig {
    /// PEM file of the CA certificates that signed the servers' certificates (`REDIS_TLS_CA_FILE`);
    /// `None` trusts the system's root certificates.
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca_file.as_deref()
    }

    /// The client certificate chain and private key PEM files for mutual TLS (`REDIS_TLS_CERT_FILE`,
    /// `REDIS_TLS_KEY_FILE`), if set.
    pub fn client_auth(&self) -> Option<(&Path, &Path)> {
        self.client_auth
            .as_ref()
            .map(|(cert, key)| (cert.as_path(), key.as_path()))
    }

    /// The name every node's certificate is checked against (`REDIS_TLS_SERVER_NAME`); `None` checks each
    /// node's own host (an IP address must then be in the certificate's IP subject alternative names).
    pub fn server_name(&self) -> Option<&str> {
        self.server_name.as_deref()
    }
}

/// Metrics and the Prometheus endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MetricsConfig {
    /// Whether metrics are recorded and served.
    pub enabled: bool,
    /// Where the Prometheus `/metrics` endpoint listens (default `127.0.0.1:9192`: not redis_exporter's
    /// 9121, which users run beside the cache, so that both can serve on one host).
    pub listen: SocketAddr,
}

/// Defines a configuration enum with its accepted spellings, `as_str`, `Display` and `FromStr`.
macro_rules! choice {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every accepted spelling, in declaration order.
            pub const ACCEPTED: &'static [&'static str] = &[$($text),+];

            /// The spelling used in files and the environment.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }

            /// Parses a spelling, ignoring case and surrounding blanks.
            pub(crate) fn parse(text: &str) -> Option<Self> {
                let text = text.trim();
                $(if text.eq_ignore_ascii_case($text) {
                    return Some(Self::$variant);
                })+
                None
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s).ok_or_else(|| Error::Invalid {
                    problems: vec![Problem::general(format!(
                        "`{}` is not one of {}",
                        s.trim(),
                        accepted(Self::ACCEPTED)
                    ))],
                })
            }
        }
    };
}

/// Formats accepted spellings as "`a`, `b` or `c`".
pub(crate) fn accepted(values: &[&str]) -> String {
    let quoted: Vec<String> = values.iter().map(|value| format!("`{value}`")).collect();
    match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

choice! {
    /// How the nodes are used.
    Mode {
        /// Ask the nodes: a cluster runs in cluster mode, standalone servers in standalone or sharded mode
        /// (see [`ClusterConfig::resolve_mode`]).
        Auto => "auto",
        /// A Redis Cluster: keys are routed by the servers' slots; any listed node is a seed.
        Cluster => "cluster",
        /// One standalone server.
        Standalone => "standalone",
        /// Several standalone servers; keys are spread client-side by the sharding strategy.
        Sharded => "sharded",
        /// A primary and its replicas managed by Redis Sentinel: the sentinels (`REDIS_SENTINEL_NODES`) say
        /// which node is the primary of `REDIS_SENTINEL_MASTER`, and which are its replicas.
        Sentinel => "sentinel",
    }
}

choice! {
    /// How keys map to standalone nodes when sharding client-side.
    ShardingStrategy {
        /// A ketama consistent-hash ring: adding or removing a node moves few keys.
        ConsistentHash => "consistent-hash",
        /// Redis Cluster's 16,384 slots, split into contiguous ranges, one per node.
        KeyRange => "key-range",
    }
}

choice! {
    /// Whether reads may be served by replicas.
    ReplicaReadMode {
        /// Every read goes to the primary.
        Off => "off",
        /// Reads go to a replica within the lag bound, else to the primary.
        Prefer => "prefer",
    }
}

/// What the nodes say they are, as a client finds out when it connects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ServerKind {
    /// Nodes with `cluster_enabled:1`.
    Cluster,
    /// Nodes with `cluster_enabled:0`.
    Standalone,
}

impl fmt::Display for ServerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Cluster => "a redis cluster",
            Self::Standalone => "standalone servers",
        })
    }
}

/// The mode a client runs in once it knows what the nodes are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResolvedMode {
    /// Route by the cluster's slots.
    Cluster,
    /// Send everything to the one standalone node.
    Standalone,
    /// Spread keys over standalone nodes with this strategy.
    Sharded(ShardingStrategy),
    /// Send everything to the primary the sentinels name (reads may go to its replicas).
    Sentinel,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ClusterConfigBuilder;

    fn config(nodes: usize, mode: Mode, sharding: bool) -> ClusterConfig {
        let nodes: Vec<String> = (1..=nodes).map(|i| format!("n{i}:6379")).collect();
        let mut builder = ClusterConfigBuilder::default()
            .nodes(nodes)
            .mode(mode)
            .sharding_enabled(sharding);
        if mode == Mode::Sentinel {
            builder = builder.sentinel_nodes(["s:26379"]).sentinel_master("mymaster");
        }
        let built = builder.build();
        built.unwrap_or_else(|error| panic!("{error}"))
    }

    fn check(
        nodes: usize,
        mode: Mode,
        sharding: bool,
        found: ServerKind,
        expected: Result<ResolvedMode, &str>,
    ) {
        let actual = config(nodes, mode, sharding)
            .resolve_mode(found)
            .map_err(|e| e.to_string());
        match (&actual, expected) {
            (Ok(actual), Ok(expected)) => assert_eq!(*actual, expected),
            (Err(message), Err(fragment)) => assert!(message.contains(fragment), "{message}"),
            _ => panic!("{nodes} nodes, {mode}, sharding {sharding}, {found:?}: got {actual:?}"),
        }
    }

    #[test]
    fn resolves_modes() {
        use ResolvedMode as R;
        use ServerKind::{Cluster as C, Standalone as S};
        let ketama = R::Sharded(ShardingStrategy::ConsistentHash);
        check(1, Mode::Auto, true, C, Ok(R::Cluster));
        check(3, Mode::Auto, false, C, Ok(R::Cluster));
        check(1, Mode::Auto, true, S, Ok(R::Standalone));
        check(1, Mode::Auto, false, S, Ok(R::Standalone));
        check(3, Mode::Auto, true, S, Ok(ketama));
        check(3, Mode::Auto, false, S, Err("REDIS_ENABLE_SHARDING"));
        check(3, Mode::Cluster, true, C, Ok(R::Cluster));
        check(
            3,
            Mode::Cluster,
            true,
            S,
            Err("is `cluster` but the nodes answer as standalone servers"),
        );
        check(1, Mode::Standalone, true, S, Ok(R::Standalone));
        check(
            1,
            Mode::Standalone,
            true,
            C,
            Err("is `standalone` but the nodes answer as a redis cluster"),
        );
        check(2, Mode::Sharded, true, S, Ok(ketama));
        check(2, Mode::Sharded, true, C, Err("is `sharded`"));
        check(0, Mode::Sentinel, true, S, Ok(R::Sentinel));
        check(0, Mode::Sentinel, true, C, Err("is `sentinel`"));
    }

    #[test]
    fn choices_parse_their_spellings() {
        for mode in Mode::ACCEPTED {
            assert_eq!(mode.parse::<Mode>().map(Mode::as_str).ok(), Some(*mode));
        }
        assert_eq!(
            " Key-Range ".parse::<ShardingStrategy>().ok(),
            Some(ShardingStrategy::KeyRange)
        );
        let error = "ketama"
            .parse::<ShardingStrategy>()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("`consistent-hash` or `key-range`"), "{error}");
        assert_eq!(accepted(&["a", "b", "c"]), "`a`, `b` or `c`");
    }

    #[test]
    fn backoff_curve() {
        let mut retry = config(1, Mode::Auto, true).retry;
        retry.backoff_multiplier = 1;
        assert_eq!(retry.delay_for_retry(9), Duration::from_millis(100));
        retry.backoff_multiplier = 3;
        retry.max_delay = Duration::from_secs(60);
        assert_eq!(retry.delay_for_retry(0), Duration::from_millis(100));
        assert_eq!(retry.delay_for_retry(3), Duration::from_millis(900));
        // Saturates instead of overflowing for absurd retry numbers.
        assert_eq!(retry.delay_for_retry(u32::MAX), Duration::from_secs(60));
    }
}
