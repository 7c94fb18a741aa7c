//! The fred settings a configuration stands for.
//!
//! The defaults here were measured on a real 3+3 cluster (see the workspace design notes): every node is
//! a seed, a reconnect policy is always set (fred's builder default never reconnects), commands have a
//! finite timeout, and unresponsive connections are detected so that a frozen node is noticed.

use std::time::Duration;

use fred::types::config::{
    Config, ConnectionConfig, PerformanceConfig, ReconnectPolicy, Server, ServerConfig, TcpConfig,
    UnresponsiveConfig,
};

use crate::node::NodeAddr;
use crate::settings::ClusterConfig;

/// How often fred looks for unresponsive connections, as a share of the unresponsive timeout. fred asks
/// for less than half the timeout; a quarter notices a frozen node within 1.25 timeouts.
const UNRESPONSIVE_CHECKS_PER_TIMEOUT: u32 = 4;

/// fred wants the check interval above 1 ms.
const MIN_UNRESPONSIVE_INTERVAL: Duration = Duration::from_millis(2);

fn millis_u32(duration: Duration) -> u32 {
    u32::try_from(duration.as_millis()).unwrap_or(u32::MAX)
}

impl ClusterConfig {
    /// One centralized fred `Config` per seed node, with its `host:port`: what a client that keeps one
    /// fred client per node (as `cluster-client` does) starts from.
    ///
    /// ```
    /// use cluster_config::ClusterConfig;
    /// use fred::types::config::ServerConfig;
    ///
    /// let config = ClusterConfig::builder().nodes(["a:7000", "b:7001"]).build()?;
    /// let nodes = config.node_configs();
    /// assert_eq!(nodes.len(), 2);
    /// assert_eq!(nodes[1].0, "b:7001");
    /// assert_eq!(nodes[1].1.server, ServerConfig::new_centralized("b", 7001));
    /// # Ok::<(), cluster_config::ConfigError>(())
    /// ```
    pub fn node_configs(&self) -> Vec<(String, Config)> {
        self.nodes
            .iter()
            .map(|node| (node.to_string(), self.fred_config_for(node)))
            .collect()
    }

    /// The centralized fred `Config` for any node, including ones discovered later (replicas, nodes
    /// named by `MOVED`): credentials from this configuration, and `fail_fast` off, so that a client for
    /// a node that is down keeps reconnecting instead of failing its first connection for good.
    pub fn fred_config_for(&self, node: &NodeAddr) -> Config {
        Config {
            server: ServerConfig::new_centralized(node.fred_host(), node.port()),
            fail_fast: false,
            ..self.fred_base()
        }
    }

    /// A clustered fred `Config` listing every node as a seed, for users who want fred's own cluster
    /// client. With a single seed fred's cluster client was measured never to recover once that node
    /// died, hence every node.
    ///
    /// ```
    /// use cluster_config::ClusterConfig;
    ///
    /// let config = ClusterConfig::builder().nodes(["a:7000", "b:7001", "[::1]:7002"]).build()?;
    /// let hosts = config.clustered_config().server.hosts();
    /// let hosts: Vec<String> = hosts.iter().map(|s| format!("{}:{}", s.host, s.port)).collect();
    /// assert_eq!(hosts, ["a:7000", "b:7001", "[::1]:7002"]);
    /// # Ok::<(), cluster_config::ConfigError>(())
    /// ```
    pub fn clustered_config(&self) -> Config {
        let hosts = self
            .nodes
            .iter()
            .map(|node| Server::new(node.fred_host(), node.port()))
            .collect();
        Config {
            server: ServerConfig::Clustered {
                hosts,
                policy: Default::default(),
            },
            ..self.fred_base()
        }
    }

    fn fred_base(&self) -> Config {
        Config {
            username: self.username.clone(),
            password: self
                .password
                .as_ref()
                .map(|password| password.expose().to_owned()),
            ..Config::default()
        }
    }

    /// The reconnect policy: exponential from the initial retry delay, times the backoff multiplier,
    /// capped at the max delay (constant when the multiplier is 1), with fred's default jitter.
    ///
    /// It never gives up (`max_attempts` 0): a client that stops reconnecting never serves that node
    /// again, which is the failure this layer exists to avoid. `max_retries` bounds command retries, not
    /// reconnection.
    ///
    /// ```
    /// use cluster_config::ClusterConfig;
    /// use fred::types::config::ReconnectPolicy;
    ///
    /// let config = ClusterConfig::builder().nodes(["h:1"]).build()?;
    /// let ReconnectPolicy::Exponential { max_attempts, min_delay, max_delay, base, .. } = config.reconnect_policy()
    /// else {
    ///     panic!("a multiplier of 2 gives an exponential policy");
    /// };
    /// assert_eq!((max_attempts, min_delay, max_delay, base), (0, 100, 3000, 2));
    /// # Ok::<(), cluster_config::ConfigError>(())
    /// ```
    pub fn reconnect_policy(&self) -> ReconnectPolicy {
        let retry = &self.retry;
        let initial = millis_u32(retry.initial_delay);
        if retry.backoff_multiplier <= 1 {
            ReconnectPolicy::new_constant(0, initial)
        } else {
            ReconnectPolicy::new_exponential(
                0,
                initial,
                millis_u32(retry.max_delay),
                retry.backoff_multiplier,
            )
        }
    }

    /// Connection settings: the connect timeout (which also bounds set-up commands such as `AUTH`),
    /// unresponsive-connection detection, and `TCP_NODELAY` (fred batches writes itself, so Nagle's
    /// algorithm would only add latency). Other fields keep fred's defaults.
    pub fn connection_config(&self) -> ConnectionConfig {
        let unresponsive = self.timeouts.unresponsive;
        let interval = (unresponsive / UNRESPONSIVE_CHECKS_PER_TIMEOUT).max(MIN_UNRESPONSIVE_INTERVAL);
        ConnectionConfig {
            connection_timeout: self.timeouts.connect,
            internal_command_timeout: self.timeouts.connect,
            unresponsive: UnresponsiveConfig {
                max_timeout: Some(unresponsive),
                interval,
            },
            tcp: TcpConfig {
                nodelay: Some(true),
                ..TcpConfig::default()
            },
            ..ConnectionConfig::default()
        }
    }

    /// Performance settings: the default command timeout (fred's own default is none at all). Other
    /// fields keep fred's defaults.
    pub fn performance_config(&self) -> PerformanceConfig {
        PerformanceConfig {
            default_command_timeout: self.timeouts.command,
            ..PerformanceConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClusterConfigBuilder, Password};

    fn config(vars: &[(&str, &str)]) -> ClusterConfig {
        let mut all = vec![("REDIS_CLUSTER_NODES", "a:7000,[::1]:7001")];
        all.extend_from_slice(vars);
        ClusterConfigBuilder::default()
            .env_vars(all)
            .build()
            .unwrap_or_else(|error| panic!("{error}"))
    }

    #[test]
    fn per_node_configs_carry_credentials_and_keep_reconnecting() {
        let config = ClusterConfigBuilder::default()
            .nodes(["a:7000"])
            .username("app")
            .password(Password::new("pw"))
            .build()
            .unwrap_or_else(|error| panic!("{error}"));
        let nodes = config.node_configs();
        assert_eq!(nodes.len(), 1);
        let (addr, fred) = &nodes[0];
        assert_eq!(addr, "a:7000");
        assert_eq!(fred.server, ServerConfig::new_centralized("a", 7000));
        assert_eq!(
            (fred.username.as_deref(), fred.password.as_deref()),
            (Some("app"), Some("pw"))
        );
        assert!(!fred.fail_fast);
        let discovered = config.fred_config_for(&NodeAddr::new("::1", 7005));
        assert_eq!(discovered.server, ServerConfig::new_centralized("[::1]", 7005));
        assert_eq!(config.clustered_config().password.as_deref(), Some("pw"));
    }

    #[test]
    fn clustered_config_seeds_every_node() {
        let fred = config(&[]).clustered_config();
        assert_eq!(
            fred.server,
            ServerConfig::new_clustered(vec![("a", 7000), ("[::1]", 7001)])
        );
        assert_eq!((fred.username, fred.password), (None, None));
    }

    fn check_policy(vars: &[(&str, &str)], expected: ReconnectPolicy) {
        assert_eq!(config(vars).reconnect_policy(), expected, "{vars:?}");
    }

    #[test]
    fn reconnect_policies_never_give_up() {
        check_policy(&[], ReconnectPolicy::new_exponential(0, 100, 3000, 2));
        check_policy(
            &[
                ("REDIS_MAX_RETRIES", "1"),
                ("REDIS_RETRY_INITIAL_DELAY_MS", "50"),
                ("REDIS_RETRY_MAX_DELAY_MS", "800"),
                ("REDIS_RETRY_BACKOFF_MULTIPLIER", "3"),
            ],
            ReconnectPolicy::new_exponential(0, 50, 800, 3),
        );
        check_policy(
            &[("REDIS_RETRY_BACKOFF_MULTIPLIER", "1")],
            ReconnectPolicy::new_constant(0, 100),
        );
    }

    #[test]
    fn connection_and_performance_settings() {
        let config = config(&[
            ("REDIS_COMMAND_TIMEOUT_MS", "250"),
            ("REDIS_CONNECT_TIMEOUT_MS", "700"),
            ("REDIS_UNRESPONSIVE_TIMEOUT_MS", "1200"),
        ]);
        let connection = config.connection_config();
        assert_eq!(connection.connection_timeout, Duration::from_millis(700));
        assert_eq!(connection.internal_command_timeout, Duration::from_millis(700));
        assert_eq!(
            connection.unresponsive.max_timeout,
            Some(Duration::from_millis(1200))
        );
        assert_eq!(connection.unresponsive.interval, Duration::from_millis(300));
        assert_eq!(connection.tcp.nodelay, Some(true));
        assert_eq!(
            connection.max_command_attempts,
            ConnectionConfig::default().max_command_attempts
        );
        assert_eq!(
            config.performance_config().default_command_timeout,
            Duration::from_millis(250)
        );
    }

    #[test]
    fn unresponsive_interval_stays_above_fred_minimum() {
        let config = config(&[
            ("REDIS_COMMAND_TIMEOUT_MS", "1"),
            ("REDIS_UNRESPONSIVE_TIMEOUT_MS", "3"),
        ]);
        assert_eq!(
            config.connection_config().unresponsive.interval,
            MIN_UNRESPONSIVE_INTERVAL
        );
    }
}
