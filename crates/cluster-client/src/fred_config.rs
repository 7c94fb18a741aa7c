//! The fred settings a [`ClusterConfig`] stands for, for this crate's per-node connections only: no
//! other crate sees a fred type.
//!
//! The defaults here were measured on a real 3+3 cluster (see the workspace design notes): a reconnect
//! policy is always set (fred's builder default never reconnects), commands have a finite timeout, and
//! unresponsive connections are detected so that a frozen node is noticed.

use std::time::Duration;

use cluster_config::{ClusterConfig, NodeAddr};
use fred::types::Builder;
use fred::types::config::{
    Config, ConnectionConfig, PerformanceConfig, ReconnectPolicy, ServerConfig, TcpConfig, UnresponsiveConfig,
};

/// How often fred looks for unresponsive connections, as a share of the unresponsive timeout. fred asks
/// for less than half the timeout; a quarter notices a frozen node within 1.25 timeouts.
const UNRESPONSIVE_CHECKS_PER_TIMEOUT: u32 = 4;

/// fred wants the check interval above 1 ms.
const MIN_UNRESPONSIVE_INTERVAL: Duration = Duration::from_millis(2);

fn millis_u32(duration: Duration) -> u32 {
    u32::try_from(duration.as_millis()).unwrap_or(u32::MAX)
}

/// The host as fred wants it: fred resolves `format!("{host}:{port}")`, so an IPv6 address needs its
/// brackets.
pub(crate) fn fred_host(node: &NodeAddr) -> String {
    if node.host().contains(':') {
        format!("[{}]", node.host())
    } else {
        node.host().to_owned()
    }
}

/// The centralized fred `Config` for any node, seeds and nodes discovered later alike (replicas, nodes
/// named by `MOVED`): credentials from the configuration, and `fail_fast` off, so that a client for a
/// node that is down keeps reconnecting instead of failing its first connection for good.
pub(crate) fn node_config(config: &ClusterConfig, node: &NodeAddr) -> Config {
    Config {
        server: ServerConfig::new_centralized(fred_host(node), node.port()),
        fail_fast: false,
        username: config.username().map(str::to_owned),
        password: config.password().map(|password| password.expose().to_owned()),
        ..Config::default()
    }
}

/// A builder for one node's routed connections: [`node_config`] with the reconnect policy, connection
/// and performance settings below.
pub(crate) fn node_builder(config: &ClusterConfig, node: &NodeAddr) -> Builder {
    let mut builder = Builder::from_config(node_config(config, node));
    builder
        .set_policy(reconnect_policy(config))
        .set_connection_config(connection_config(config))
        .set_performance_config(performance_config(config));
    builder
}

/// The reconnect policy: exponential from the initial retry delay, times the backoff multiplier, capped
/// at the max delay (constant when the multiplier is 1), with fred's default jitter.
///
/// It never gives up (`max_attempts` 0): a client that stops reconnecting never serves that node again,
/// which is the failure this layer exists to avoid. `max_retries` bounds command retries, not
/// reconnection.
pub(crate) fn reconnect_policy(config: &ClusterConfig) -> ReconnectPolicy {
    let retry = config.retry();
    let initial = millis_u32(retry.initial_delay);
    if retry.backoff_multiplier <= 1 {
        ReconnectPolicy::new_constant(0, initial)
    } else {
        ReconnectPolicy::new_exponential(0, initial, millis_u32(retry.max_delay), retry.backoff_multiplier)
    }
}

/// Connection settings: the connect timeout (which also bounds set-up commands such as `AUTH`),
/// unresponsive-connection detection, and `TCP_NODELAY` (fred batches writes itself, so Nagle's
/// algorithm would only add latency). Other fields keep fred's defaults.
pub(crate) fn connection_config(config: &ClusterConfig) -> ConnectionConfig {
    let timeouts = config.timeouts();
    let unresponsive = timeouts.unresponsive;
    let interval = (unresponsive / UNRESPONSIVE_CHECKS_PER_TIMEOUT).max(MIN_UNRESPONSIVE_INTERVAL);
    ConnectionConfig {
        connection_timeout: timeouts.connect,
        internal_command_timeout: timeouts.connect,
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

/// Performance settings: the default command timeout (fred's own default is none at all). Other fields
/// keep fred's defaults.
pub(crate) fn performance_config(config: &ClusterConfig) -> PerformanceConfig {
    PerformanceConfig {
        default_command_timeout: config.timeouts().command,
        ..PerformanceConfig::default()
    }
}

/// A builder for a probe connection ([`ClusterClient::probe_node`](crate::ClusterClient::probe_node)):
/// the node's credentials, fail-fast, no reconnect policy, and `timeout` for connecting and for every
/// command, so that a broken connection is dropped at once and the next probe opens a new one.
pub(crate) fn probe_builder(config: &ClusterConfig, node: &NodeAddr, timeout: Duration) -> Builder {
    let mut builder = Builder::from_config(Config {
        fail_fast: true,
        ..node_config(config, node)
    });
    builder
        .with_connection_config(|c| {
            c.connection_timeout = timeout;
            c.internal_command_timeout = timeout;
            c.max_command_attempts = 1;
            c.max_redirections = 0;
            c.tcp = TcpConfig {
                nodelay: Some(true),
                ..TcpConfig::default()
            };
        })
        .with_performance_config(|p| p.default_command_timeout = timeout);
    builder
}

#[cfg(test)]
mod tests {
    use cluster_config::{ClusterConfigBuilder, Password};

    use super::*;

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
        let fred = node_config(&config, &config.nodes()[0]);
        assert_eq!(fred.server, ServerConfig::new_centralized("a", 7000));
        assert_eq!(
            (fred.username.as_deref(), fred.password.as_deref()),
            (Some("app"), Some("pw"))
        );
        assert!(!fred.fail_fast);
        let discovered = node_config(&config, &NodeAddr::new("::1", 7005));
        assert_eq!(discovered.server, ServerConfig::new_centralized("[::1]", 7005));
        let probe = probe_builder(&config, &NodeAddr::new("h", 1), Duration::from_millis(250));
        assert!(probe.get_config().is_some_and(|c| c.fail_fast));
        assert_eq!(probe.get_config().and_then(|c| c.password.as_deref()), Some("pw"));
        assert_eq!(
            probe.get_connection_config().connection_timeout,
            Duration::from_millis(250)
        );
        assert!(
            probe.get_policy().is_none(),
            "a probe connection never reconnects"
        );
    }

    #[test]
    fn the_password_reaches_the_connection_settings_only() {
        // The canary must reach fred (it is what authenticates) and nothing that prints the config.
        const CANARY: &str = "canary-pw-7f3a9c";
        let config =
            ClusterConfig::from_env_vars([("REDIS_CLUSTER_NODES", "h:1"), ("REDIS_PASSWORD", CANARY)])
                .unwrap_or_else(|error| panic!("{error}"));
        let fred = node_config(&config, &config.nodes()[0]);
        assert_eq!(fred.password.as_deref(), Some(CANARY));
        assert!(!format!("{config:?}").contains(CANARY));
    }

    #[test]
    fn hosts_are_bracketed_for_ipv6_only() {
        assert_eq!(fred_host(&NodeAddr::new("::1", 7)), "[::1]");
        assert_eq!(fred_host(&NodeAddr::new("h", 7)), "h");
        assert_eq!(fred_host(&NodeAddr::new("10.0.0.1", 7)), "10.0.0.1");
    }

    fn check_policy(vars: &[(&str, &str)], expected: ReconnectPolicy) {
        assert_eq!(reconnect_policy(&config(vars)), expected, "{vars:?}");
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
        let connection = connection_config(&config);
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
            performance_config(&config).default_command_timeout,
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
            connection_config(&config).unresponsive.interval,
            MIN_UNRESPONSIVE_INTERVAL
        );
    }
}
