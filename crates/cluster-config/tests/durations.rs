//! Every duration setting, through the builder and the environment, at zero, one nanosecond, the
//! largest `Duration`, and just past its documented bounds: each is refused with a problem naming its
//! variable and saying what range is accepted, and nothing panics.

use std::time::Duration;

use cluster_config::{ClusterConfig, ClusterConfigBuilder};

type Setter = fn(ClusterConfigBuilder, Duration) -> ClusterConfigBuilder;

/// Each builder method taking a duration, with its variable and its smallest accepted value.
const SETTINGS: &[(&str, Setter, u64)] = &[
    ("REDIS_RETRY_INITIAL_DELAY_MS", |b, d| b.retry_initial_delay(d), 1),
    ("REDIS_RETRY_MAX_DELAY_MS", |b, d| b.retry_max_delay(d), 1),
    ("REDIS_COMMAND_TIMEOUT_MS", |b, d| b.command_timeout(d), 1),
    ("REDIS_CONNECT_TIMEOUT_MS", |b, d| b.connect_timeout(d), 1),
    (
        "REDIS_UNRESPONSIVE_TIMEOUT_MS",
        |b, d| b.unresponsive_timeout(d),
        1,
    ),
    (
        "REDIS_TOPOLOGY_REFRESH_INTERVAL_MS",
        |b, d| b.topology_refresh_interval(d),
        1,
    ),
    ("REDIS_MAX_REPLICA_LAG_MS", |b, d| b.max_replica_lag(d), 0),
    ("REDIS_HEALTH_INTERVAL_MS", |b, d| b.health_interval(d), 100),
];

fn refused(result: Result<ClusterConfig, cluster_config::Error>, env: &str, what: &str) {
    let error = match result {
        Ok(_) => panic!("{env} = {what} was accepted"),
        Err(error) => error,
    };
    let problem = error
        .problems()
        .iter()
        .find(|p| p.env_var() == Some(env))
        .unwrap_or_else(|| panic!("{env} = {what}: no problem names it: {error}"));
    assert!(
        problem.message().contains("out of range") && problem.message().contains(" to "),
        "{env} = {what}: {}",
        problem.message()
    );
}

fn base() -> ClusterConfigBuilder {
    ClusterConfig::builder().nodes(["127.0.0.1:7000"])
}

#[test]
fn builder_durations_at_the_edges() {
    for &(env, set, min_ms) in SETTINGS {
        refused(set(base(), Duration::MAX).build(), env, "Duration::MAX");
        // One more millisecond than u32::MAX (about 49.7 days) is past every duration's upper bound.
        refused(
            set(base(), Duration::from_millis(u64::from(u32::MAX) + 1)).build(),
            env,
            "u32::MAX + 1 ms",
        );
        if min_ms > 0 {
            refused(set(base(), Duration::ZERO).build(), env, "0");
            // Finer than a millisecond is dropped: one nanosecond is zero milliseconds.
            refused(set(base(), Duration::from_nanos(1)).build(), env, "1 ns");
            refused(
                set(base(), Duration::from_millis(min_ms - 1)).build(),
                env,
                "just below the minimum",
            );
        }
        // The bounds themselves are accepted (the command timeout stays below the unresponsive one).
        let at_min = set(base(), Duration::from_millis(min_ms.max(1)))
            .unresponsive_timeout(Duration::from_millis(u64::from(u32::MAX)))
            .retry_max_delay(Duration::from_millis(u64::from(u32::MAX)));
        if env != "REDIS_UNRESPONSIVE_TIMEOUT_MS" && env != "REDIS_RETRY_MAX_DELAY_MS" {
            at_min
                .build()
                .unwrap_or_else(|e| panic!("{env} at its minimum: {e}"));
        }
    }
}

#[test]
fn environment_durations_at_the_edges() {
    for &(env, _, min_ms) in SETTINGS {
        let beyond_u64 = "99999999999999999999999";
        let past_max = (u64::from(u32::MAX) + 1).to_string();
        let below = min_ms.saturating_sub(1).to_string();
        let mut values = vec![beyond_u64, past_max.as_str(), "-1"];
        if min_ms > 0 {
            values.push(below.as_str());
        }
        for value in values {
            let result =
                ClusterConfig::from_env_vars([("REDIS_CLUSTER_NODES", "127.0.0.1:7000"), (env, value)]);
            match value {
                "-1" => assert!(result.is_err(), "{env} = -1 was accepted"),
                _ => refused(result, env, value),
            }
        }
    }
}

#[test]
fn a_health_interval_of_one_millisecond_is_refused() {
    let result = ClusterConfig::from_env_vars([
        ("REDIS_CLUSTER_NODES", "127.0.0.1:7000"),
        ("REDIS_HEALTH_INTERVAL_MS", "1"),
    ]);
    let message = result.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.contains("REDIS_HEALTH_INTERVAL_MS") && message.contains("100"),
        "{message}"
    );
    let config = ClusterConfig::from_env_vars([
        ("REDIS_CLUSTER_NODES", "127.0.0.1:7000"),
        ("REDIS_HEALTH_INTERVAL_MS", "100"),
    ])
    .expect("100 ms is the shortest interval");
    assert_eq!(config.health_interval(), Duration::from_millis(100));
}
