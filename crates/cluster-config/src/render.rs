//! Writing a configuration back out: environment variables, a TOML file, or any serde format.
//!
//! Every rendering lists every setting, defaults included, so it documents the effective configuration.
//! Loading a rendering made with [`SecretExport::Reveal`] gives back an equal configuration.

use std::fmt::Write as _;

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

use crate::fields::{self, Field};
use crate::secret::{Password, REDACTED, SecretExport};
use crate::settings::ClusterConfig;

/// One setting's value, typed for TOML and serde.
enum Rendered<'a> {
    Text(String),
    Number(u64),
    Bool(bool),
    List(Vec<String>),
    Secret(&'a Password),
}

impl Rendered<'_> {
    fn env_text(&self, secrets: SecretExport) -> String {
        match self {
            Self::Text(text) => text.clone(),
            Self::Number(n) => n.to_string(),
            Self::Bool(b) => b.to_string(),
            Self::List(items) => items.join(","),
            Self::Secret(password) => secret_text(password, secrets).to_owned(),
        }
    }

    fn toml(&self, secrets: SecretExport) -> String {
        match self {
            Self::Text(text) => toml_string(text),
            Self::Number(n) => n.to_string(),
            Self::Bool(b) => b.to_string(),
            Self::List(items) => {
                format!(
                    "[{}]",
                    items
                        .iter()
                        .map(|item| toml_string(item))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
            Self::Secret(password) => toml_string(secret_text(password, secrets)),
        }
    }
}

fn secret_text(password: &Password, secrets: SecretExport) -> &str {
    match secrets {
        SecretExport::Redact => REDACTED,
        SecretExport::Reveal => password.expose(),
    }
}

/// A TOML basic string: quotes, backslashes and control characters escaped.
fn toml_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl ClusterConfig {
    fn rendered(&self) -> Vec<(&'static Field, Rendered<'_>)> {
        let millis =
            |d: std::time::Duration| Rendered::Number(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let scheme = if self.tls() { "rediss://" } else { "" };
        let mut out = vec![
            (
                &fields::NODES,
                Rendered::List(
                    self.weighted_nodes()
                        .map(|(n, weight)| match weight {
                            1 => format!("{scheme}{n}"),
                            weight => format!("{scheme}{n}={weight}"),
                        })
                        .collect(),
                ),
            ),
            (&fields::MODE, Rendered::Text(self.mode.as_str().to_owned())),
            (&fields::SHARDING_ENABLED, Rendered::Bool(self.sharding.enabled)),
            (
                &fields::SHARDING_STRATEGY,
                Rendered::Text(self.sharding.strategy.as_str().to_owned()),
            ),
            (&fields::POOL_SIZE, Rendered::Number(self.pool_size as u64)),
            (
                &fields::MAX_RETRIES,
                Rendered::Number(self.retry.max_retries.into()),
            ),
            (&fields::RETRY_INITIAL_DELAY, millis(self.retry.initial_delay)),
            (&fields::RETRY_MAX_DELAY, millis(self.retry.max_delay)),
            (
                &fields::RETRY_BACKOFF_MULTIPLIER,
                Rendered::Number(self.retry.backoff_multiplier.into()),
            ),
            (
                &fields::READ_KEY_MAX_RETRIES,
                Rendered::Number(self.retry.read_key_max_retries.into()),
            ),
            (&fields::COMMAND_TIMEOUT, millis(self.timeouts.command)),
            (&fields::CONNECT_TIMEOUT, millis(self.timeouts.connect)),
            (&fields::UNRESPONSIVE_TIMEOUT, millis(self.timeouts.unresponsive)),
            (&fields::TOPOLOGY_REFRESH, millis(self.topology_refresh_interval)),
            (
                &fields::REPLICA_READS,
                Rendered::Text(self.replica_reads.mode.as_str().to_owned()),
            ),
            (&fields::MAX_REPLICA_LAG, millis(self.replica_reads.max_lag)),
            (
                &fields::KEY_MAX_BYTES,
                Rendered::Number(self.limits.key_max_bytes as u64),
            ),
            (
                &fields::VALUE_MAX_BYTES,
                Rendered::Number(self.limits.value_max_bytes as u64),
            ),
            (&fields::HEALTH_INTERVAL, millis(self.health_interval)),
            (&fields::METRICS_ENABLED, Rendered::Bool(self.metrics.enabled)),
            (
                &fields::METRICS_LISTEN,
                Rendered::Text(self.metrics.listen.to_string()),
            ),
        ];
        if let Some(username) = &self.username {
            out.push((&fields::USERNAME, Rendered::Text(username.clone())));
        }
        if let Some(password) = &self.password {
            out.push((&fields::PASSWORD, Rendered::Secret(password)));
        }
        out.push((&fields::TLS, Rendered::Bool(self.tls())));
        if let Some(tls) = &self.tls {
            let path = |p: &std::path::Path| Rendered::Text(p.to_string_lossy().into_owned());
            if let Some(ca) = tls.ca_file() {
                out.push((&fields::TLS_CA_FILE, path(ca)));
            }
            if let Some((cert, key)) = tls.client_auth() {
                out.push((&fields::TLS_CERT_FILE, path(cert)));
                out.push((&fields::TLS_KEY_FILE, path(key)));
            }
            if let Some(name) = tls.server_name() {
                out.push((&fields::TLS_SERVER_NAME, Rendered::Text(name.to_owned())));
            }
        }
        // Sentinel settings exist only in sentinel mode, so other renderings stay as they were.
        let sentinel = &self.sentinel;
        if !sentinel.nodes.is_empty() {
            let nodes = sentinel.nodes.iter().map(ToString::to_string).collect();
            out.push((&fields::SENTINEL_NODES, Rendered::List(nodes)));
        }
        if let Some(master) = &sentinel.master {
            out.push((&fields::SENTINEL_MASTER, Rendered::Text(master.clone())));
        }
        if let Some(username) = &sentinel.username {
            out.push((&fields::SENTINEL_USERNAME, Rendered::Text(username.clone())));
        }
        if let Some(password) = &sentinel.password {
            out.push((&fields::SENTINEL_PASSWORD, Rendered::Secret(password)));
        }
        out
    }

    /// Every setting as `REDIS_*` environment variables, for a `.env` file, a container spec, or
    /// [`ClusterConfig::from_env_vars`].
    ///
    /// ```
    /// use cluster_config::{ClusterConfig, Password, SecretExport};
    ///
    /// let config = ClusterConfig::builder().nodes(["h:7000"]).password(Password::new("pw")).build()?;
    /// let vars = config.to_env_vars(SecretExport::Redact);
    /// assert!(vars.contains(&("REDIS_CLUSTER_NODES".into(), "h:7000".into())));
    /// assert!(vars.contains(&("REDIS_PASSWORD".into(), "[redacted]".into())));
    /// let revealed = config.to_env_vars(SecretExport::Reveal);
    /// assert_eq!(ClusterConfig::from_env_vars(revealed)?, config);
    /// # Ok::<(), cluster_config::Error>(())
    /// ```
    pub fn to_env_vars(&self, secrets: SecretExport) -> Vec<(String, String)> {
        self.rendered()
            .into_iter()
            .map(|(field, value)| (field.env.to_owned(), value.env_text(secrets)))
            .collect()
    }

    /// Every setting as a TOML file that [`ClusterConfig::from_file`] reads back.
    ///
    /// ```
    /// use cluster_config::{ClusterConfig, SecretExport};
    ///
    /// let config = ClusterConfig::builder().nodes(["h:7000"]).build()?;
    /// let toml = config.to_toml(SecretExport::Redact);
    /// assert!(toml.starts_with("nodes = [\"h:7000\"]\n"));
    /// assert!(toml.contains("[retry]\nmax_retries = 5\n"));
    /// # Ok::<(), cluster_config::Error>(())
    /// ```
    pub fn to_toml(&self, secrets: SecretExport) -> String {
        let rendered = self.rendered();
        let (top, tables) = grouped(&rendered);
        let mut out = String::new();
        // Top-level keys must come before the first table header.
        for (key, value) in top {
            let _ = writeln!(out, "{key} = {}", value.toml(secrets));
        }
        for (name, entries) in tables {
            let _ = writeln!(out, "\n[{name}]");
            for (key, value) in entries {
                let _ = writeln!(out, "{key} = {}", value.toml(secrets));
            }
        }
        out
    }
}

type Entries<'a, 'b> = Vec<(&'static str, &'a Rendered<'b>)>;

/// Splits settings into top-level keys and tables (the part of the file key before the dot), each in
/// setting order.
fn grouped<'a, 'b>(
    rendered: &'a [(&'static Field, Rendered<'b>)],
) -> (Entries<'a, 'b>, Vec<(&'static str, Entries<'a, 'b>)>) {
    let mut top = Vec::new();
    let mut tables: Vec<(&'static str, Entries<'a, 'b>)> = Vec::new();
    for (field, value) in rendered {
        match field.key.split_once('.') {
            None => top.push((field.key, value)),
            Some((table, key)) => match tables.iter_mut().find(|(name, _)| *name == table) {
                Some((_, entries)) => entries.push((key, value)),
                None => tables.push((table, vec![(key, value)])),
            },
        }
    }
    (top, tables)
}

/// Serializes with the file's layout (sections as nested maps, durations in milliseconds) and the
/// password as `[redacted]`: safe for logs and status pages.
impl Serialize for ClusterConfig {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let rendered = self.rendered();
        let (top, tables) = grouped(&rendered);
        let mut map = serializer.serialize_map(Some(top.len() + tables.len()))?;
        for (key, value) in top {
            map.serialize_entry(key, value)?;
        }
        for (name, entries) in &tables {
            map.serialize_entry(name, &Table(entries))?;
        }
        map.end()
    }
}

struct Table<'a, 'b, 'c>(&'c [(&'static str, &'a Rendered<'b>)]);

impl Serialize for Table<'_, '_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

impl Serialize for Rendered<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Text(text) => serializer.serialize_str(text),
            Self::Number(n) => serializer.serialize_u64(*n),
            Self::Bool(b) => serializer.serialize_bool(*b),
            Self::List(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Self::Secret(password) => password.serialize(serializer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: &str) {
        assert_eq!(toml_string(text), expected);
    }

    #[test]
    fn escapes_toml_strings() {
        check("plain", "\"plain\"");
        check("a\"b\\c", "\"a\\\"b\\\\c\"");
        check("tab\tnew\nline\u{7f}", "\"tab\\u0009new\\u000Aline\\u007F\"");
        check("ünï ✓", "\"ünï ✓\"");
    }

    #[test]
    fn renders_every_setting() {
        // Every optional setting is set, so every field is rendered; the TLS files must exist.
        let pem = tempfile::NamedTempFile::new().unwrap_or_else(|error| panic!("{error}"));
        let config = crate::ClusterConfigBuilder::default()
            .mode(crate::Mode::Sentinel)
            .sentinel_nodes(["s:1"])
            .sentinel_master("mymaster")
            .sentinel_username("watcher")
            .sentinel_password(Password::new("spw"))
            .tls(true)
            .username("bob")
            .password(Password::new("pw"))
            .tls_ca_file(pem.path())
            .tls_cert_file(pem.path())
            .tls_key_file(pem.path())
            .tls_server_name("h")
            .build()
            .unwrap_or_else(|error| panic!("{error}"));
        let names: Vec<_> = config
            .to_env_vars(SecretExport::Redact)
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        let all: Vec<_> = fields::FIELDS.iter().map(|field| field.env.to_owned()).collect();
        assert_eq!(names, all);
    }
}
