//! The spec's example `.env` block ("Configuration Options") parses to the documented values.

use std::time::Duration;

use cluster_config::{ClusterConfig, Mode, NodeAddr, ShardingStrategy};

/// Copied verbatim from the spec, comments included.
const SPEC_ENV: &str = "\
# Cluster Nodes
REDIS_CLUSTER_NODES=host1:6379,host2:6380,host3:6381

# Sharding Strategy
REDIS_SHARDING_STRATEGY=consistent-hash  # or 'key-range'
REDIS_ENABLE_SHARDING=true

# Connection Pool
REDIS_CONNECTION_POOL_SIZE=10
REDIS_MAX_RETRIES=5
REDIS_RETRY_INITIAL_DELAY_MS=100
REDIS_RETRY_MAX_DELAY_MS=3000
REDIS_RETRY_BACKOFF_MULTIPLIER=2

# Metrics & Monitoring
REDIS_CLUSTER_METRICS=true
REDIS_MAX_RETRIES_READ_KEY=3
";

/// Reads `.env` lines the way Docker Compose does: `#` starts a comment at the start of a line or after
/// a blank in an unquoted value.
fn dotenv(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| {
            let value = value.find(" #").map_or(value, |at| &value[..at]);
            (name.trim().to_owned(), value.trim().to_owned())
        })
        .collect()
}

#[test]
fn the_spec_example_parses_to_the_documented_values() {
    let vars = dotenv(SPEC_ENV);
    assert_eq!(vars.len(), 10, "the block sets ten variables: {vars:?}");
    let config = ClusterConfig::from_env_vars(vars).unwrap_or_else(|error| panic!("{error}"));

    let expected_nodes = [
        NodeAddr::new("host1", 6379),
        NodeAddr::new("host2", 6380),
        NodeAddr::new("host3", 6381),
    ];
    assert_eq!(config.nodes(), expected_nodes);
    assert_eq!(config.sharding().strategy, ShardingStrategy::ConsistentHash);
    assert!(config.sharding().enabled);
    assert_eq!(config.pool_size(), 10);
    let retry = config.retry();
    assert_eq!(retry.max_retries, 5);
    assert_eq!(retry.initial_delay, Duration::from_millis(100));
    assert_eq!(retry.max_delay, Duration::from_millis(3000));
    assert_eq!(retry.backoff_multiplier, 2);
    assert_eq!(retry.read_key_max_retries, 3);
    assert!(config.metrics().enabled);
    // Settings the block leaves out keep their defaults.
    assert_eq!(config.mode(), Mode::Auto);
    assert_eq!(config.health_interval(), Duration::from_secs(30));
    assert_eq!(config.timeouts().command, Duration::from_secs(1));
}

#[test]
fn the_spec_defaults_hold_without_any_variable_but_the_nodes() {
    let config = ClusterConfig::from_env_vars([("REDIS_CLUSTER_NODES", "h:6379")])
        .unwrap_or_else(|error| panic!("{error}"));
    let retry = config.retry();
    assert_eq!(
        (
            retry.max_retries,
            retry.initial_delay,
            retry.max_delay,
            retry.backoff_multiplier
        ),
        (5, Duration::from_millis(100), Duration::from_millis(3000), 2)
    );
    assert_eq!(config.pool_size(), 10);
    assert_eq!(config.health_interval(), Duration::from_secs(30));
    assert_eq!(config.topology_refresh_interval(), Duration::from_secs(10));
    assert_eq!(config.limits().key_max_bytes, 16 * 1024);
    assert_eq!(config.limits().value_max_bytes, 16 * 1024 * 1024);
    assert_eq!(config.metrics().listen.to_string(), "127.0.0.1:9192");
    assert!(!config.tls());
}

#[test]
fn the_other_documented_strategy_parses_too() {
    let mut vars = dotenv(SPEC_ENV);
    for (name, value) in &mut vars {
        if name == "REDIS_SHARDING_STRATEGY" {
            *value = "key-range".to_owned();
        }
    }
    let config = ClusterConfig::from_env_vars(vars).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(config.sharding().strategy, ShardingStrategy::KeyRange);
}
