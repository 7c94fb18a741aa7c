//! The one table of settings: file key, environment variable, default and unit of every field.
//!
//! Reading (defaults, environment, file, builder), rendering (TOML, environment) and the README
//! reference table are all driven by this table, so a setting cannot be readable from one source and
//! forgotten in another, and the README cannot drift from the code.

/// One setting of [`ClusterConfig`](crate::ClusterConfig).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Field {
    /// Dotted key in a TOML or YAML file, such as `retry.max_retries`.
    pub(crate) key: &'static str,
    /// Environment variable, such as `REDIS_MAX_RETRIES`.
    pub(crate) env: &'static str,
    /// Default in environment syntax, parsed by the same code as an environment value; `None` when the
    /// setting has no default (it is required, or optional and unset).
    pub(crate) default: Option<&'static str>,
    /// Unit or accepted values, as shown in the README.
    pub(crate) unit: &'static str,
    /// What the setting controls, as shown in the README.
    pub(crate) doc: &'static str,
}

pub(crate) const NODES: Field = Field {
    key: "nodes",
    env: "REDIS_CLUSTER_NODES",
    default: None,
    unit: "comma-separated `host:port`, `redis://host:port` or `rediss://host:port` (port defaults to 6379), each optionally `=weight` (1 to 1000000, default 1; client-side sharding only)",
    doc: "Seed nodes: any or all nodes of the cluster, or the standalone servers (required, except in `sentinel` mode)",
};
pub(crate) const MODE: Field = Field {
    key: "mode",
    env: "REDIS_MODE",
    default: Some("auto"),
    unit: "`auto`, `cluster`, `standalone`, `sharded` or `sentinel`",
    doc: "How the nodes are used; `auto` asks the nodes whether they form a cluster; `sentinel` asks the sentinels for the primary",
};
pub(crate) const SHARDING_ENABLED: Field = Field {
    key: "sharding.enabled",
    env: "REDIS_ENABLE_SHARDING",
    default: Some("true"),
    unit: "`true` or `false`",
    doc: "In `auto` mode, spread keys client-side over several standalone nodes",
};
pub(crate) const SHARDING_STRATEGY: Field = Field {
    key: "sharding.strategy",
    env: "REDIS_SHARDING_STRATEGY",
    default: Some("consistent-hash"),
    unit: "`consistent-hash` (ketama) or `key-range` (slot ranges)",
    doc: "How keys map to standalone nodes when sharding client-side",
};
pub(crate) const POOL_SIZE: Field = Field {
    key: "pool_size",
    env: "REDIS_CONNECTION_POOL_SIZE",
    default: Some("10"),
    unit: "connections per node (1 to 1024)",
    doc: "Connections opened to each node",
};
pub(crate) const MAX_RETRIES: Field = Field {
    key: "retry.max_retries",
    env: "REDIS_MAX_RETRIES",
    default: Some("5"),
    unit: "retries per command",
    doc: "Retries of a command that met a transient error (TRYAGAIN, CLUSTERDOWN, LOADING, a reset connection), within its timeout; 0 for none (reconnection never gives up)",
};
pub(crate) const RETRY_INITIAL_DELAY: Field = Field {
    key: "retry.initial_delay_ms",
    env: "REDIS_RETRY_INITIAL_DELAY_MS",
    default: Some("100"),
    unit: "milliseconds (1 to 4294967295)",
    doc: "Delay before the first retry or reconnection attempt (retries add equal jitter: half to all of it)",
};
pub(crate) const RETRY_MAX_DELAY: Field = Field {
    key: "retry.max_delay_ms",
    env: "REDIS_RETRY_MAX_DELAY_MS",
    default: Some("3000"),
    unit: "milliseconds (1 to 4294967295)",
    doc: "Upper bound of the delay between retries or reconnection attempts",
};
pub(crate) const RETRY_BACKOFF_MULTIPLIER: Field = Field {
    key: "retry.backoff_multiplier",
    env: "REDIS_RETRY_BACKOFF_MULTIPLIER",
    default: Some("2"),
    unit: "whole factor, at least 1",
    doc: "Each delay is the previous one times this factor (1 keeps it constant)",
};
pub(crate) const READ_KEY_MAX_RETRIES: Field = Field {
    key: "retry.read_key_max_retries",
    env: "REDIS_MAX_RETRIES_READ_KEY",
    default: Some("3"),
    unit: "retries per key read",
    doc: "Retries of a read of one key that met a transient error, within its timeout; 0 for none",
};
pub(crate) const COMMAND_TIMEOUT: Field = Field {
    key: "timeouts.command_ms",
    env: "REDIS_COMMAND_TIMEOUT_MS",
    default: Some("1000"),
    unit: "milliseconds (1 to 4294967295)",
    doc: "Time a command may take, queueing included, before it fails",
};
pub(crate) const CONNECT_TIMEOUT: Field = Field {
    key: "timeouts.connect_ms",
    env: "REDIS_CONNECT_TIMEOUT_MS",
    default: Some("2000"),
    unit: "milliseconds (1 to 4294967295)",
    doc: "Time to open a connection, and to run its set-up commands (`AUTH`, `HELLO`)",
};
pub(crate) const UNRESPONSIVE_TIMEOUT: Field = Field {
    key: "timeouts.unresponsive_ms",
    env: "REDIS_UNRESPONSIVE_TIMEOUT_MS",
    default: Some("2000"),
    unit: "milliseconds (at least the command timeout, at most 4294967295)",
    doc: "A connection with a reply outstanding this long is closed and re-opened (notices a frozen node)",
};
pub(crate) const TOPOLOGY_REFRESH: Field = Field {
    key: "topology.refresh_interval_ms",
    env: "REDIS_TOPOLOGY_REFRESH_INTERVAL_MS",
    default: Some("10000"),
    unit: "milliseconds (1 to 4294967295)",
    doc: "Period of the routine slot-table refresh (redirects and node errors refresh sooner)",
};
pub(crate) const REPLICA_READS: Field = Field {
    key: "replica_reads.mode",
    env: "REDIS_REPLICA_READS",
    default: Some("off"),
    unit: "`off` or `prefer`",
    doc: "Whether reads may be served by a replica that is fresh enough",
};
pub(crate) const MAX_REPLICA_LAG: Field = Field {
    key: "replica_reads.max_lag_ms",
    env: "REDIS_MAX_REPLICA_LAG_MS",
    default: Some("1000"),
    unit: "milliseconds (0 to 4294967295)",
    doc: "A replica further behind its primary than this serves no reads",
};
pub(crate) const KEY_MAX_BYTES: Field = Field {
    key: "limits.key_max_bytes",
    env: "REDIS_KEY_MAX_BYTES",
    default: Some("16384"),
    unit: "bytes (1 to 536870912)",
    doc: "Longer keys are refused before a byte is sent (default 16 KiB)",
};
pub(crate) const VALUE_MAX_BYTES: Field = Field {
    key: "limits.value_max_bytes",
    env: "REDIS_VALUE_MAX_BYTES",
    default: Some("16777216"),
    unit: "bytes (1 to 536870912)",
    doc: "Larger values are refused before a byte is sent (default 16 MiB)",
};
pub(crate) const HEALTH_INTERVAL: Field = Field {
    key: "health.interval_ms",
    env: "REDIS_HEALTH_INTERVAL_MS",
    default: Some("30000"),
    unit: "milliseconds (100 to 4294967295)",
    doc: "Period of the health check of every node",
};
pub(crate) const METRICS_ENABLED: Field = Field {
    key: "metrics.enabled",
    env: "REDIS_CLUSTER_METRICS",
    default: Some("false"),
    unit: "`true` or `false`",
    doc: "Record metrics and serve them to Prometheus",
};
pub(crate) const METRICS_LISTEN: Field = Field {
    key: "metrics.listen",
    env: "REDIS_METRICS_LISTEN",
    default: Some("127.0.0.1:9192"),
    unit: "socket address `ip:port`",
    doc: "Where the Prometheus `/metrics` endpoint listens",
};
pub(crate) const USERNAME: Field = Field {
    key: "auth.username",
    env: "REDIS_USERNAME",
    default: None,
    unit: "ACL user name",
    doc: "ACL user to authenticate as (needs a password)",
};
pub(crate) const PASSWORD: Field = Field {
    key: "auth.password",
    env: "REDIS_PASSWORD",
    default: None,
    unit: "secret",
    doc: "Password for `AUTH`; never printed, logged or put in an error",
};
pub(crate) const TLS: Field = Field {
    key: "tls.enabled",
    env: "REDIS_TLS",
    default: Some("false"),
    unit: "`true` or `false`",
    doc: "Connect with TLS (also implied by `rediss://` nodes); needs cluster-client's `tls` feature, on by default",
};
pub(crate) const TLS_CA_FILE: Field = Field {
    key: "tls.ca_file",
    env: "REDIS_TLS_CA_FILE",
    default: None,
    unit: "path to a PEM file of one or more CA certificates",
    doc: "CA that signed the servers' certificates; unset trusts the system's root certificates",
};
pub(crate) const TLS_CERT_FILE: Field = Field {
    key: "tls.cert_file",
    env: "REDIS_TLS_CERT_FILE",
    default: None,
    unit: "path to a PEM file (certificate chain)",
    doc: "Client certificate for mutual TLS (needs the key file too)",
};
pub(crate) const TLS_KEY_FILE: Field = Field {
    key: "tls.key_file",
    env: "REDIS_TLS_KEY_FILE",
    default: None,
    unit: "path to a PEM file (PKCS#8, PKCS#1 or SEC1 private key)",
    doc: "Private key of the client certificate (needs the certificate file too); its contents are never printed",
};
pub(crate) const TLS_SERVER_NAME: Field = Field {
    key: "tls.server_name",
    env: "REDIS_TLS_SERVER_NAME",
    default: None,
    unit: "DNS name or IP address",
    doc: "Name every node's certificate is checked against; unset checks each node's own host",
};

pub(crate) const SENTINEL_NODES: Field = Field {
    key: "sentinel.nodes",
    env: "REDIS_SENTINEL_NODES",
    default: None,
    unit: "comma-separated `host:port` of the sentinels (port defaults to 26379)",
    doc: "Sentinels asked for the primary and replicas (required in `sentinel` mode, which needs no REDIS_CLUSTER_NODES)",
};
pub(crate) const SENTINEL_MASTER: Field = Field {
    key: "sentinel.master",
    env: "REDIS_SENTINEL_MASTER",
    default: None,
    unit: "master name, as in `sentinel monitor <name> ...`",
    doc: "The name the sentinels monitor the primary under (required in `sentinel` mode)",
};
pub(crate) const SENTINEL_USERNAME: Field = Field {
    key: "sentinel.username",
    env: "REDIS_SENTINEL_USERNAME",
    default: None,
    unit: "ACL user name",
    doc: "ACL user for the sentinels only (needs a sentinel password); REDIS_USERNAME is for the data nodes",
};
pub(crate) const SENTINEL_PASSWORD: Field = Field {
    key: "sentinel.password",
    env: "REDIS_SENTINEL_PASSWORD",
    default: None,
    unit: "secret",
    doc: "Password for `AUTH` on the sentinels only; never printed, logged or put in an error",
};

/// Every setting, in the order used by rendered files and the README.
pub(crate) const FIELDS: &[&Field] = &[
    &NODES,
    &MODE,
    &SHARDING_ENABLED,
    &SHARDING_STRATEGY,
    &POOL_SIZE,
    &MAX_RETRIES,
    &RETRY_INITIAL_DELAY,
    &RETRY_MAX_DELAY,
    &RETRY_BACKOFF_MULTIPLIER,
    &READ_KEY_MAX_RETRIES,
    &COMMAND_TIMEOUT,
    &CONNECT_TIMEOUT,
    &UNRESPONSIVE_TIMEOUT,
    &TOPOLOGY_REFRESH,
    &REPLICA_READS,
    &MAX_REPLICA_LAG,
    &KEY_MAX_BYTES,
    &VALUE_MAX_BYTES,
    &HEALTH_INTERVAL,
    &METRICS_ENABLED,
    &METRICS_LISTEN,
    &USERNAME,
    &PASSWORD,
    &TLS,
    &TLS_CA_FILE,
    &TLS_CERT_FILE,
    &TLS_KEY_FILE,
    &TLS_SERVER_NAME,
    &SENTINEL_NODES,
    &SENTINEL_MASTER,
    &SENTINEL_USERNAME,
    &SENTINEL_PASSWORD,
];

/// The environment variable naming a TOML or YAML file to read beneath the environment.
pub(crate) const CONFIG_FILE_ENV: &str = "REDIS_CONFIG_FILE";

/// The field read from a file key, if any.
pub(crate) fn by_key(key: &str) -> Option<&'static Field> {
    FIELDS.iter().copied().find(|field| field.key == key)
}

/// The field read from an environment variable, if any.
pub(crate) fn by_env(name: &str) -> Option<&'static Field> {
    FIELDS.iter().copied().find(|field| field.env == name)
}

/// The README reference table, generated from [`FIELDS`]; a test compares it with the README.
#[cfg(test)]
fn reference_table() -> String {
    let mut table = String::from(
        "| Setting | Environment variable | File key | Default | Unit |\n|---|---|---|---|---|\n",
    );
    for field in FIELDS {
        let default = field
            .default
            .map_or_else(|| "(unset)".to_owned(), |d| format!("`{d}`"));
        table.push_str(&format!(
            "| {} | `{}` | `{}` | {} | {} |\n",
            field.doc, field.env, field.key, default, field.unit
        ));
    }
    table.push_str(&format!(
        "| File read beneath the environment when the builder names none | `{CONFIG_FILE_ENV}` | (none) | \
         (unset) | path to a `.toml`, `.yaml` or `.yml` file |\n"
    ));
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    const README: &str = include_str!("../README.md");
    const START: &str = "<!-- reference-table:start -->\n";
    const END: &str = "<!-- reference-table:end -->";

    #[test]
    fn readme_reference_table_matches_the_code() {
        let start = README.find(START).map(|at| at + START.len());
        let end = README.find(END);
        let (Some(start), Some(end)) = (start, end) else {
            panic!("README.md lacks the reference-table markers");
        };
        assert_eq!(
            &README[start..end],
            reference_table(),
            "README.md's reference table drifted from src/fields.rs; paste the right-hand side into it"
        );
    }

    #[test]
    fn keys_and_variables_are_unique_and_well_formed() {
        let mut keys: Vec<_> = FIELDS.iter().map(|f| f.key).collect();
        let mut envs: Vec<_> = FIELDS.iter().map(|f| f.env).collect();
        keys.sort_unstable();
        envs.sort_unstable();
        keys.dedup();
        envs.dedup();
        assert_eq!(keys.len(), FIELDS.len(), "a file key is used twice");
        assert_eq!(envs.len(), FIELDS.len(), "an environment variable is used twice");
        for field in FIELDS {
            assert!(
                field.env.starts_with("REDIS_"),
                "{} lacks the REDIS_ prefix",
                field.env
            );
            assert!(
                field
                    .key
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_' || c == '.'),
                "file key {} is not lowercase snake case",
                field.key
            );
        }
    }

    fn check(name: &str, by_key_expected: Option<&str>, by_env_expected: Option<&str>) {
        assert_eq!(by_key(name).map(|f| f.env), by_key_expected, "by_key({name})");
        assert_eq!(by_env(name).map(|f| f.key), by_env_expected, "by_env({name})");
    }

    #[test]
    fn lookups() {
        check("retry.max_retries", Some("REDIS_MAX_RETRIES"), None);
        check("REDIS_MAX_RETRIES", None, Some("retry.max_retries"));
        check("REDIS_CLUSTER_NODES", None, Some("nodes"));
        check("REDIS_CONFIG_FILE", None, None);
        check("retry", None, None);
    }
}
