//! Property tests: any valid configuration survives a TOML file round trip and an environment round
//! trip unchanged, and no input makes loading panic.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use cluster_config::{
    ClusterConfig, ClusterConfigBuilder, Mode, Password, ReplicaReadMode, SecretExport, ShardingStrategy,
};
use proptest::prelude::*;

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,12}(\\.[a-z][a-z0-9]{0,6}){0,2}",
        any::<[u8; 4]>().prop_map(|octets| Ipv4Addr::from(octets).to_string()),
        Just("[::1]".to_owned()),
        Just("[2001:db8::7]".to_owned()),
    ]
}

/// One to six nodes, distinct because each gets its own port, some with a weight (`=weight`).
fn nodes() -> impl Strategy<Value = Vec<String>> {
    let weight = prop::option::of(1u32..=cluster_config::MAX_NODE_WEIGHT);
    prop::collection::vec((host(), any::<bool>(), weight), 1..=6).prop_flat_map(|hosts| {
        let count = hosts.len();
        prop::collection::hash_set(1u16..=u16::MAX, count).prop_map(move |ports| {
            hosts
                .iter()
                .zip(ports)
                .map(|((host, url, weight), port)| {
                    let weight = weight.map(|w| format!("={w}")).unwrap_or_default();
                    if *url {
                        format!("redis://{host}:{port}{weight}")
                    } else {
                        format!("{host}:{port}{weight}")
                    }
                })
                .collect()
        })
    })
}

fn millis(range: std::ops::RangeInclusive<u64>) -> impl Strategy<Value = Duration> {
    range.prop_map(Duration::from_millis)
}

/// Any password except the empty one (which means none) and the redaction placeholder. `any::<String>()`
/// draws printable text only, so control characters, quotes and backslashes are mixed in on purpose:
/// they are what a rendering must escape.
fn password() -> impl Strategy<Value = Option<Password>> {
    let text = prop_oneof![
        any::<String>(),
        prop::collection::vec(any::<char>(), 1..24).prop_map(String::from_iter),
        prop::collection::vec(
            prop::sample::select(vec!['"', '\\', '\n', '\t', '\u{7f}', '\0', ',', ' ', '#', 'x']),
            1..12
        )
        .prop_map(String::from_iter),
    ];
    prop::option::of(text.prop_filter("not empty or the placeholder", |p| {
        !p.is_empty() && p != "[redacted]"
    }))
    .prop_map(|p| p.map(Password::new))
}

prop_compose! {
    fn valid_config()(
        nodes in nodes(),
        mode_pick in 0usize..3,
        sharding_enabled in any::<bool>(),
        strategy in prop_oneof![Just(ShardingStrategy::ConsistentHash), Just(ShardingStrategy::KeyRange)],
        pool_size in 1usize..=1024,
        max_retries in any::<u32>(),
        (initial_delay, max_delay) in (1u64..=100_000).prop_flat_map(|i| (Just(i), i..=u64::from(u32::MAX))),
        backoff_multiplier in 1u32..=64,
        read_key_max_retries in any::<u32>(),
        (command, unresponsive) in (1u64..=60_000).prop_flat_map(|c| (Just(c), c..=600_000)),
        connect in millis(1..=60_000),
        topology in millis(1..=u64::from(u32::MAX)),
        prefer_replicas in any::<bool>(),
        max_lag in millis(1..=60_000),
        key_max in 1usize..=512 * 1024 * 1024,
        value_max in 1usize..=512 * 1024 * 1024,
        health in millis(100..=86_400_000),
        metrics in any::<bool>(),
        listen in any::<(bool, u16)>().prop_map(|(v6, port)| if v6 {
            SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 1], port))
        } else {
            SocketAddr::from(([0, 0, 0, 0], port))
        }),
        username in prop::option::of("[a-zA-Z0-9_.:-]{1,20}"),
        password in password(),
    ) -> ClusterConfig {
        // Choose only combinations the rules allow: standalone takes one node, sharded several, replica
        // reads need cluster or auto mode, and a user name needs a password.
        let mode = match (nodes.len(), mode_pick) {
            (_, 0) => Mode::Auto,
            (_, 1) => Mode::Cluster,
            (1, _) => Mode::Standalone,
            _ => Mode::Sharded,
        };
        let replica_reads = if prefer_replicas && matches!(mode, Mode::Auto | Mode::Cluster) {
            ReplicaReadMode::Prefer
        } else {
            ReplicaReadMode::Off
        };
        let mut builder = ClusterConfigBuilder::default()
            .nodes(nodes)
            .mode(mode)
            .sharding_enabled(sharding_enabled || mode == Mode::Sharded)
            .sharding_strategy(strategy)
            .pool_size(pool_size)
            .max_retries(max_retries)
            .retry_initial_delay(Duration::from_millis(initial_delay))
            .retry_max_delay(Duration::from_millis(max_delay))
            .retry_backoff_multiplier(backoff_multiplier)
            .read_key_max_retries(read_key_max_retries)
            .command_timeout(Duration::from_millis(command))
            .connect_timeout(connect)
            .unresponsive_timeout(Duration::from_millis(unresponsive))
            .topology_refresh_interval(topology)
            .replica_reads(replica_reads)
            .max_replica_lag(max_lag)
            .key_max_bytes(key_max)
            .value_max_bytes(value_max)
            .health_interval(health)
            .metrics_enabled(metrics)
            .metrics_listen(listen);
        if let Some(password) = password.clone() {
            builder = builder.password(password);
            if let Some(username) = username {
                builder = builder.username(username);
            }
        }
        match builder.build() {
            Ok(config) => config,
            Err(error) => panic!("the generator made an invalid configuration: {error}"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn toml_file_round_trip(config in valid_config()) {
        let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let path = dir.path().join("cluster.toml");
        std::fs::write(&path, config.to_toml(SecretExport::Reveal)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let read = ClusterConfig::from_file(&path).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(read, config);
    }

    #[test]
    fn env_round_trip(config in valid_config()) {
        let read = ClusterConfig::from_env_vars(config.to_env_vars(SecretExport::Reveal))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(read, config);
    }

    #[test]
    fn redacted_renderings_load_back_only_without_a_password(config in valid_config()) {
        let result = ClusterConfig::from_env_vars(config.to_env_vars(SecretExport::Redact));
        match (config.password(), result) {
            (None, Ok(read)) => prop_assert_eq!(read, config),
            (Some(_), Err(error)) => {
                let envs: Vec<_> = error.problems().iter().map(|p| p.env_var()).collect();
                prop_assert_eq!(envs, vec![Some("REDIS_PASSWORD")]);
            }
            (password, result) => prop_assert!(false, "password set: {}, result: {:?}", password.is_some(), result),
        }
    }

    /// Arbitrary text in every setting never panics, and every problem names a setting.
    #[test]
    fn arbitrary_environment_never_panics(values in prop::collection::vec(any::<String>(), 24)) {
        let names = ClusterConfig::builder().nodes(["h:1"]).build()
            .map_err(|e| TestCaseError::fail(e.to_string()))?
            .to_env_vars(SecretExport::Redact)
            .into_iter()
            .map(|(name, _)| name)
            .chain(["REDIS_USERNAME".to_owned(), "REDIS_PASSWORD".to_owned()]);
        let vars: Vec<(String, String)> = names.zip(values).collect();
        if let Err(error) = ClusterConfig::from_env_vars(vars) {
            for problem in error.problems() {
                prop_assert!(problem.env_var().is_some(), "{}", problem);
            }
            prop_assert!(!error.problems().is_empty());
        }
    }

    /// Arbitrary text as a TOML file never panics either.
    #[test]
    fn arbitrary_file_never_panics(text in any::<String>()) {
        let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let path = dir.path().join("c.toml");
        std::fs::write(&path, &text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let _ = ClusterConfig::from_file(&path);
    }
}
