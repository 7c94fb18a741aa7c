//! The fred settings a [`ClusterConfig`] stands for, for this crate's per-node connections only: no
//! other crate sees a fred type.
//!
//! The defaults here were measured on a real 3+3 cluster (see the workspace design notes): a reconnect
//! policy is always set (fred's builder default never reconnects), commands have a finite timeout, and
//! unresponsive connections are detected so that a frozen node is noticed.

use std::time::Duration;

use crate::Error;
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
/// named by `MOVED`): credentials and TLS from the configuration, and `fail_fast` off, so that a client
/// for a node that is down keeps reconnecting instead of failing its first connection for good.
///
/// Every fred connection of this crate is built here, so TLS, when configured, covers every one of
/// them: routed, read-only, `WAIT`, probe and admin connections, to seeds and discovered nodes alike.
pub(crate) fn node_config(config: &ClusterConfig, node: &NodeAddr) -> Result<Config, Error> {
    let mut fred = Config {
        server: ServerConfig::new_centralized(fred_host(node), node.port()),
        fail_fast: false,
        username: config.username().map(str::to_owned),
        password: config.password().map(|password| password.expose().to_owned()),
        ..Config::default()
    };
    if let Some(tls) = config.tls_config() {
        with_tls(&mut fred, tls, node)?;
    }
    Ok(fred)
}

/// TLS for one node's connections: the shared connector, and the name its certificate is checked
/// against (the override, else the node's own host without IPv6 brackets, so that an IP address is
/// checked against the certificate's IP SANs).
#[cfg(feature = "tls")]
fn with_tls(fred: &mut Config, tls: &cluster_config::TlsConfig, node: &NodeAddr) -> Result<(), Error> {
    use fred::types::config::{Server, TlsConfig, TlsHostMapping};
    let name = tls.server_name().unwrap_or(node.host()).to_owned();
    fred.server = ServerConfig::Centralized {
        server: Server::new_with_tls(fred_host(node), node.port(), Some(name)),
    };
    fred.tls = Some(TlsConfig {
        connector: crate::tls::connector(tls)?,
        hostnames: TlsHostMapping::None,
    });
    Ok(())
}

/// Without the `tls` feature a TLS configuration is refused rather than connecting in plain text.
#[cfg(not(feature = "tls"))]
fn with_tls(_: &mut Config, _: &cluster_config::TlsConfig, _: &NodeAddr) -> Result<(), Error> {
    Err(Error::TlsDisabled)
}

/// A builder for one node's routed connections: [`node_config`] with the reconnect policy, connection
/// and performance settings below.
pub(crate) fn node_builder(config: &ClusterConfig, node: &NodeAddr) -> Result<Builder, Error> {
    let mut builder = Builder::from_config(node_config(config, node)?);
    builder
        .set_policy(reconnect_policy(config))
        .set_connection_config(connection_config(config))
        .set_performance_config(performance_config(config));
    Ok(builder)
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
pub(crate) fn probe_builder(
    config: &ClusterConfig,
    node: &NodeAddr,
    timeout: Duration,
) -> Result<Builder, Error> {
    let mut builder = Builder::from_config(Config {
        fail_fast: true,
        ..node_config(config, node)?
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
    Ok(builder)
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
        let fred = node_config(&config, &config.nodes()[0]).unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(fred.server, ServerConfig::new_centralized("a", 7000));
        assert_eq!(
            (fred.username.as_deref(), fred.password.as_deref()),
            (Some("app"), Some("pw"))
        );
        assert!(!fred.fail_fast);
        let discovered =
            node_config(&config, &NodeAddr::new("::1", 7005)).unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(discovered.server, ServerConfig::new_centralized("[::1]", 7005));
        let probe = probe_builder(&config, &NodeAddr::new("h", 1), Duration::from_millis(250))
            .unwrap_or_else(|error| panic!("{error}"));
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
        let fred = node_config(&config, &config.nodes()[0]).unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(fred.password.as_deref(), Some(CANARY));
        assert!(!format!("{config:?}").contains(CANARY));
    }

    #[test]
    fn tls_reaches_every_connection_with_the_right_server_name() {
        let tls = |vars: &[(&str, &str)]| {
            let mut all = vec![("REDIS_CLUSTER_NODES", "rediss://127.0.0.1:7000")];
            all.extend_from_slice(vars);
            ClusterConfig::from_env_vars(all).unwrap_or_else(|error| panic!("{error}"))
        };
        let name = |fred: &Config| match &fred.server {
            ServerConfig::Centralized { server } => server_name(server),
            other => panic!("{other:?}"),
        };
        let plain = config(&[]);
        let fred = node_config(&plain, &plain.nodes()[0]).unwrap_or_else(|error| panic!("{error}"));
        assert!(!has_tls(&fred));
        let config = tls(&[]);
        // A seed and a node discovered later (IPv6, bracketed for fred, bare for the certificate check).
        for (node, expected) in [
            (NodeAddr::new("127.0.0.1", 7000), "127.0.0.1"),
            (NodeAddr::new("::1", 7005), "::1"),
        ] {
            let result = node_config(&config, &node);
            check_tls(result, expected, &name);
            let probe = probe_builder(&config, &node, Duration::from_millis(100));
            check_tls(
                probe.map(|b| b.get_config().cloned().unwrap_or_default()),
                expected,
                &name,
            );
        }
        let config = tls(&[("REDIS_TLS_SERVER_NAME", "cache.internal")]);
        check_tls(
            node_config(&config, &NodeAddr::new("10.0.0.9", 7001)),
            "cache.internal",
            &name,
        );
    }

    #[cfg(feature = "tls")]
    fn has_tls(fred: &Config) -> bool {
        fred.tls.is_some()
    }

    #[cfg(not(feature = "tls"))]
    fn has_tls(_: &Config) -> bool {
        false
    }

    #[cfg(feature = "tls")]
    fn server_name(server: &fred::types::config::Server) -> Option<String> {
        server.tls_server_name.as_ref().map(|name| name.to_string())
    }

    #[cfg(not(feature = "tls"))]
    fn server_name(_: &fred::types::config::Server) -> Option<String> {
        None
    }

    #[cfg(feature = "tls")]
    fn check_tls(result: Result<Config, Error>, expected: &str, name: &dyn Fn(&Config) -> Option<String>) {
        let fred = result.unwrap_or_else(|error| panic!("{error}"));
        assert!(has_tls(&fred));
        assert_eq!(name(&fred).as_deref(), Some(expected));
    }

    /// Without the feature, TLS is refused with the error saying to enable it.
    #[cfg(not(feature = "tls"))]
    fn check_tls(result: Result<Config, Error>, _: &str, _: &dyn Fn(&Config) -> Option<String>) {
        assert!(matches!(result, Err(Error::TlsDisabled)), "{result:?}");
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
