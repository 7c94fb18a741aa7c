//! Files (TOML and YAML), the environment and the builder, stacked in that order of priority.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cluster_config::{ClusterConfig, Error, Mode, Origin, ReplicaReadMode};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap_or_else(|error| panic!("writing {}: {error}", path.display()));
    path
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|error| panic!("temp dir: {error}"))
}

fn ok(result: Result<ClusterConfig, Error>) -> ClusterConfig {
    result.unwrap_or_else(|error| panic!("{error}"))
}

fn messages(result: Result<ClusterConfig, Error>) -> Vec<String> {
    match result {
        Ok(config) => panic!("expected problems, got {config:?}"),
        Err(error) => error.problems().iter().map(ToString::to_string).collect(),
    }
}

const TOML: &str = r#"
nodes = ["f1:7000", "f2:7000"]
mode = "cluster"
pool_size = 4

[retry]
max_retries = 8
backoff_multiplier = 3.0

[replica_reads]
mode = "prefer"
max_lag_ms = 250
"#;

const YAML: &str = "
nodes:
  - f1:7000
  - f2:7000
mode: cluster
pool_size: 4
retry:
  max_retries: 8
  backoff_multiplier: 3
replica_reads:
  mode: prefer
  max_lag_ms: 250
auth:
  username: ~
";

#[test]
fn toml_and_yaml_files_read_the_same() {
    let dir = tempdir();
    let from_toml = ok(ClusterConfig::from_file(write(dir.path(), "c.toml", TOML)));
    let from_yaml = ok(ClusterConfig::from_file(write(dir.path(), "c.yaml", YAML)));
    let from_yml = ok(ClusterConfig::from_file(write(dir.path(), "c.YML", YAML)));
    assert_eq!(from_toml, from_yaml);
    assert_eq!(from_toml, from_yml);
    assert_eq!(from_toml.mode(), Mode::Cluster);
    assert_eq!(from_toml.pool_size(), 4);
    assert_eq!(from_toml.retry().max_retries, 8);
    assert_eq!(from_toml.retry().backoff_multiplier, 3);
    assert_eq!(from_toml.replica_reads().mode, ReplicaReadMode::Prefer);
    assert_eq!(from_toml.replica_reads().max_lag, Duration::from_millis(250));
    assert_eq!(
        from_toml.retry().initial_delay,
        Duration::from_millis(100),
        "unset keys keep defaults"
    );
}

#[test]
fn environment_outranks_file_and_builder_outranks_both() {
    let dir = tempdir();
    let file = write(dir.path(), "c.toml", TOML);
    let env = [
        ("REDIS_CONFIG_FILE", file.to_string_lossy().into_owned()),
        ("REDIS_CONNECTION_POOL_SIZE", "6".to_owned()),
        ("REDIS_MAX_RETRIES", "2".to_owned()),
        ("REDIS_CLUSTER_NODES", "e1:7000".to_owned()),
    ];
    let from_env = ok(ClusterConfig::from_env_vars(env.clone()));
    assert_eq!(
        from_env.nodes().len(),
        1,
        "the environment's node list replaces the file's"
    );
    assert_eq!(from_env.pool_size(), 6);
    assert_eq!(from_env.retry().max_retries, 2);
    assert_eq!(
        from_env.retry().backoff_multiplier,
        3,
        "the file fills what the environment leaves"
    );

    let layered = ok(ClusterConfig::load(
        ClusterConfig::builder().env_vars(env).pool_size(9),
    ));
    assert_eq!(layered.pool_size(), 9);
    assert_eq!(layered.retry().max_retries, 2);
    assert_eq!(layered.mode(), Mode::Cluster);
}

#[test]
fn the_builder_file_replaces_the_one_the_environment_names() {
    let dir = tempdir();
    let named = write(dir.path(), "named.toml", "nodes = [\"named:1\"]\n");
    let given = write(dir.path(), "given.toml", "nodes = [\"given:1\"]\n");
    let config = ok(ClusterConfig::builder()
        .env_vars([("REDIS_CONFIG_FILE", named.to_string_lossy())])
        .file(&given)
        .build());
    assert_eq!(config.nodes()[0].host(), "given");
}

#[test]
fn problems_say_where_the_value_came_from() {
    let dir = tempdir();
    let file = write(
        dir.path(),
        "c.toml",
        "nodes = [\"a:1\"]\npool_size = 0\n[retry]\nmax_retries = -3\n",
    );
    let error = ClusterConfig::builder()
        .file(&file)
        .env_vars([("REDIS_MAX_RETRIES_READ_KEY", "many")])
        .health_interval(Duration::ZERO)
        .build()
        .err();
    let problems = error.as_ref().map(Error::problems).unwrap_or_default();
    let origins: Vec<_> = problems
        .iter()
        .map(|p| (p.env_var(), p.origin().cloned()))
        .collect();
    assert_eq!(
        origins,
        [
            (
                Some("REDIS_CONNECTION_POOL_SIZE"),
                Some(Origin::File(file.clone()))
            ),
            (Some("REDIS_MAX_RETRIES"), Some(Origin::File(file.clone()))),
            (Some("REDIS_MAX_RETRIES_READ_KEY"), Some(Origin::Environment)),
            (Some("REDIS_HEALTH_INTERVAL_MS"), Some(Origin::Builder)),
        ]
    );
    let text = error.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        text.contains(&format!("file key `pool_size`, from file {}", file.display())),
        "{text}"
    );
}

#[test]
fn unknown_keys_and_wrong_shapes_are_problems() {
    let dir = tempdir();
    let file = write(
        dir.path(),
        "c.toml",
        "nodes = \"a:1\"\npool = 3\nmode = [\"auto\"]\nzzz = 1\n[retry]\nmax_retry = 1\n[metrics]\nenabled = { on = true }\n",
    );
    let found = messages(ClusterConfig::from_file(&file));
    let expect = [
        "unknown file key `pool`",
        "did you mean `pool_size`?",
        "unknown file key `zzz`",
        "accepted keys are `nodes`, `mode`,",
        "unknown file key `retry.max_retry`",
        "did you mean `retry.max_retries`?",
        "unknown file key `metrics.enabled.on`",
        "REDIS_MODE (file key `mode`",
        "expected one value, found a list",
    ];
    for fragment in expect {
        assert!(
            found.iter().any(|m| m.contains(fragment)),
            "no problem mentions `{fragment}`: {found:#?}"
        );
    }
    // A node list may be a string in a file too, as in the environment.
    assert!(
        !found.iter().any(|m| m.contains("REDIS_CLUSTER_NODES")),
        "{found:#?}"
    );
}

#[test]
fn credentials_in_files_must_be_strings() {
    let dir = tempdir();
    let file = write(
        dir.path(),
        "c.yaml",
        "nodes: [h:1]\nauth:\n  username: 12\n  password: 1e3\n",
    );
    let found = messages(ClusterConfig::from_file(&file));
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(
        found[0].starts_with("REDIS_USERNAME") && found[0].contains("quote it"),
        "{found:#?}"
    );
    assert!(
        found[1].starts_with("REDIS_PASSWORD") && found[1].contains("quote it"),
        "{found:#?}"
    );
    let quoted = write(
        dir.path(),
        "q.yaml",
        "nodes: [h:1]\nauth:\n  username: '12'\n  password: '1e3'\n",
    );
    let config = ok(ClusterConfig::from_file(&quoted));
    assert_eq!(
        config.password().map(cluster_config::Password::expose),
        Some("1e3")
    );
}

#[test]
fn unreadable_and_unparsable_files_are_problems_beside_the_others() {
    let dir = tempdir();
    let missing = dir.path().join("missing.toml");
    let found = messages(ClusterConfig::from_env_vars([
        ("REDIS_CONFIG_FILE", missing.to_string_lossy().into_owned()),
        ("REDIS_CONNECTION_POOL_SIZE", "0".to_owned()),
    ]));
    assert!(
        found[0].contains("missing.toml (named by REDIS_CONFIG_FILE) cannot be read"),
        "{found:#?}"
    );
    assert!(
        found.iter().any(|m| m.contains("REDIS_CLUSTER_NODES")),
        "{found:#?}"
    );
    assert!(
        found.iter().any(|m| m.contains("REDIS_CONNECTION_POOL_SIZE")),
        "{found:#?}"
    );

    let broken = write(dir.path(), "broken.toml", "nodes = [\"a:1\"\n");
    let found = messages(ClusterConfig::from_file(&broken));
    assert!(found[0].contains("is not valid TOML"), "{found:#?}");
    assert!(found[0].contains("line"), "the position helps: {found:#?}");

    let broken = write(dir.path(), "broken.yaml", "nodes: [a:1\n  mode: : :\n");
    let found = messages(ClusterConfig::from_file(&broken));
    assert!(found[0].contains("is not valid YAML"), "{found:#?}");

    let odd = write(dir.path(), "c.json", "{}");
    let found = messages(ClusterConfig::from_file(&odd));
    assert!(
        found[0].contains("no `.toml`, `.yaml` or `.yml` extension"),
        "{found:#?}"
    );
}

#[test]
fn builder_debug_shows_sources_and_keys_but_no_values() {
    let builder = ClusterConfig::builder()
        .nodes(["b:1"])
        .password(cluster_config::Password::new("canary-5b1d"))
        .process_env();
    assert_eq!(
        format!("{builder:?}"),
        "ClusterConfigBuilder { file: None, env: \"process\", set: [\"auth.password\", \"nodes\"] }"
    );
}
