//! fred's own clients, the baseline `load`, `chaos`, `demo` and the benches compare cluster-client
//! against, configured from a [`ClusterConfig`] the way cluster-client configures its per-node fred
//! connections (which it keeps private, so that no library crate's API shows a fred type).
//!
//! The settings must match cluster-client's (`crates/cluster-client/src/fred_config.rs`): a baseline
//! with other timeouts or reconnect behaviour would compare more than the routing. The benches include
//! this file (`#[path]`), so the baseline has one definition.

use std::time::Duration;

use cluster_config::{ClusterConfig, NodeAddr};
use fred::types::Builder;
use fred::types::config::{
    Config, ConnectionConfig, PerformanceConfig, ReconnectPolicy, Server, ServerConfig, TcpConfig,
    UnresponsiveConfig,
};

/// How often fred looks for unresponsive connections, as a share of the unresponsive timeout.
const UNRESPONSIVE_CHECKS_PER_TIMEOUT: u32 = 4;

/// fred wants the check interval above 1 ms.
const MIN_UNRESPONSIVE_INTERVAL: Duration = Duration::from_millis(2);

/// A builder for fred's cluster client with every configured node as a seed (with a single seed fred's
/// cluster client was measured never to recover once that node died), credentials, and the reconnect
/// policy, connection and performance settings of [`builder`].
pub(crate) fn cluster_builder(config: &ClusterConfig) -> Builder {
    builder(config, clustered_config(config))
}

/// A builder for a fred centralized client of one node, as cluster-client opens one per node, with
/// `fail_fast` off so that a client for a node that is down keeps reconnecting.
#[allow(dead_code)] // The benches include this file and use only `cluster_builder`.
pub(crate) fn node_builder(config: &ClusterConfig, node: &NodeAddr) -> Builder {
    builder(
        config,
        Config {
            server: ServerConfig::new_centralized(fred_host(node), node.port()),
            fail_fast: false,
            ..credentials(config)
        },
    )
}

/// The clustered fred `Config`: every node a seed, with the configuration's credentials.
fn clustered_config(config: &ClusterConfig) -> Config {
    let hosts = config
        .nodes()
        .iter()
        .map(|node| Server::new(fred_host(node), node.port()))
        .collect();
    Config {
        server: ServerConfig::Clustered {
            hosts,
            policy: Default::default(),
        },
        ..credentials(config)
    }
}

fn credentials(config: &ClusterConfig) -> Config {
    Config {
        username: config.username().map(str::to_owned),
        password: config.password().map(|password| password.expose().to_owned()),
        ..Config::default()
    }
}

/// fred resolves `format!("{host}:{port}")`, so an IPv6 address needs its brackets.
fn fred_host(node: &NodeAddr) -> String {
    if node.host().contains(':') {
        format!("[{}]", node.host())
    } else {
        node.host().to_owned()
    }
}

/// `fred_config` with cluster-client's reconnect policy (exponential from the initial retry delay,
/// never giving up), connection settings (connect timeout, unresponsive-connection detection,
/// `TCP_NODELAY`) and default command timeout.
fn builder(config: &ClusterConfig, fred_config: Config) -> Builder {
    let millis = |d: Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
    let retry = config.retry();
    let policy = if retry.backoff_multiplier <= 1 {
        ReconnectPolicy::new_constant(0, millis(retry.initial_delay))
    } else {
        ReconnectPolicy::new_exponential(
            0,
            millis(retry.initial_delay),
            millis(retry.max_delay),
            retry.backoff_multiplier,
        )
    };
    let timeouts = config.timeouts();
    let interval = (timeouts.unresponsive / UNRESPONSIVE_CHECKS_PER_TIMEOUT).max(MIN_UNRESPONSIVE_INTERVAL);
    let mut builder = Builder::from_config(fred_config);
    builder
        .set_policy(policy)
        .set_connection_config(ConnectionConfig {
            connection_timeout: timeouts.connect,
            internal_command_timeout: timeouts.connect,
            unresponsive: UnresponsiveConfig {
                max_timeout: Some(timeouts.unresponsive),
                interval,
            },
            tcp: TcpConfig {
                nodelay: Some(true),
                ..TcpConfig::default()
            },
            ..ConnectionConfig::default()
        })
        .set_performance_config(PerformanceConfig {
            default_command_timeout: timeouts.command,
            ..PerformanceConfig::default()
        });
    builder
}

/// Clients in the best variant's round-robin `Pool`: fred's documented way to spread many concurrent
/// callers over more than one connection per node.
#[allow(dead_code)] // The benches include this file and use only `cluster_builder`.
pub(crate) const BEST_POOL_SIZE: usize = 4;

/// fred's cluster client as its users build it: the seeds, and every other setting at fred's default
/// (automatic pipelining on, no command timeout, the default reconnect policy). Nothing of our
/// [`ClusterConfig`] goes into it.
#[allow(dead_code)] // The benches include this file and use only `cluster_builder`.
pub(crate) fn default_cluster_builder(seeds: &[NodeAddr]) -> Builder {
    let hosts = seeds
        .iter()
        .map(|node| Server::new(fred_host(node), node.port()))
        .collect();
    Builder::from_config(Config {
        server: ServerConfig::Clustered {
            hosts,
            policy: Default::default(),
        },
        ..Config::default()
    })
}

/// fred at its best documented settings for throughput: a `Pool` of [`BEST_POOL_SIZE`] cluster
/// clients, each with fred's defaults and `TCP_NODELAY` on (fred leaves it to the OS).
#[allow(dead_code)] // The benches include this file and use only `cluster_builder`.
pub(crate) fn best_cluster_builder(seeds: &[NodeAddr]) -> Builder {
    let mut builder = default_cluster_builder(seeds);
    builder.set_connection_config(ConnectionConfig {
        tcp: TcpConfig {
            nodelay: Some(true),
            ..TcpConfig::default()
        },
        ..ConnectionConfig::default()
    });
    builder
}

#[cfg(test)]
mod tests {
    // Full paths rather than imports: the benches include this file, where the tests are not built.
    #[test]
    fn the_cluster_baseline_seeds_every_node_with_the_client_settings() {
        let config = cluster_config::ClusterConfig::builder()
            .nodes(["a:7000", "[::1]:7001"])
            .username("app")
            .password(cluster_config::Password::new("pw"))
            .build()
            .unwrap_or_else(|error| panic!("{error}"));
        let builder = super::cluster_builder(&config);
        let fred = builder.get_config().unwrap_or_else(|| panic!("a config is set"));
        assert_eq!(
            fred.server,
            super::ServerConfig::new_clustered(vec![("a", 7000), ("[::1]", 7001)])
        );
        assert_eq!(
            (fred.username.as_deref(), fred.password.as_deref()),
            (Some("app"), Some("pw"))
        );
        assert_eq!(
            builder.get_policy(),
            Some(&super::ReconnectPolicy::new_exponential(0, 100, 3000, 2))
        );
        let connection = builder.get_connection_config();
        assert_eq!(connection.connection_timeout, super::Duration::from_secs(2));
        assert_eq!(
            connection.unresponsive.max_timeout,
            Some(super::Duration::from_secs(2))
        );
        assert_eq!(
            connection.unresponsive.interval,
            super::Duration::from_millis(500)
        );
        assert_eq!(connection.tcp.nodelay, Some(true));
        assert_eq!(
            builder.get_performance_config().default_command_timeout,
            super::Duration::from_secs(1)
        );
        let node = super::node_builder(&config, &config.nodes()[1]);
        let fred = node.get_config().unwrap_or_else(|| panic!("a config is set"));
        assert_eq!(fred.server, super::ServerConfig::new_centralized("[::1]", 7001));
        assert!(!fred.fail_fast);
    }

    #[test]
    fn a_multiplier_of_one_reconnects_at_a_constant_pace() {
        let config = cluster_config::ClusterConfig::from_env_vars([
            ("REDIS_CLUSTER_NODES", "h:1"),
            ("REDIS_RETRY_BACKOFF_MULTIPLIER", "1"),
        ])
        .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(
            super::cluster_builder(&config).get_policy(),
            Some(&super::ReconnectPolicy::new_constant(0, 100))
        );
    }

    #[test]
    fn the_default_baseline_takes_nothing_from_our_configuration() {
        let seeds: Vec<cluster_config::NodeAddr> = ["127.0.0.1:7000", "127.0.0.1:7001"]
            .iter()
            .map(|s| s.parse().unwrap_or_else(|error| panic!("{error}")))
            .collect();
        let builder = super::default_cluster_builder(&seeds);
        let fred = builder.get_config().unwrap_or_else(|| panic!("a config is set"));
        assert_eq!(
            fred.server,
            super::ServerConfig::new_clustered(vec![("127.0.0.1", 7000), ("127.0.0.1", 7001)])
        );
        assert_eq!(
            builder.get_connection_config(),
            &super::ConnectionConfig::default()
        );
        assert_eq!(
            builder.get_performance_config().default_command_timeout,
            super::PerformanceConfig::default().default_command_timeout
        );
        assert!(builder.get_policy().is_none());
        let best = super::best_cluster_builder(&seeds);
        assert_eq!(best.get_connection_config().tcp.nodelay, Some(true));
        assert_eq!(
            best.get_connection_config().unresponsive,
            super::ConnectionConfig::default().unresponsive
        );
    }
}
