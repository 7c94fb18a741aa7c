//! The sources of settings and their layering: defaults < file < environment < builder.
//!
//! The `config` crate parses the file (TOML or YAML) and stacks the three layers; this module turns
//! each layer into a map keyed by file key and remembers which layer set each key, so that a problem can
//! say where its value came from.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{FileFormat, Map, Source, Value, ValueKind};

use crate::error::{Error, Origin, Problem};
use crate::fields::{self, Field};
use crate::secret::Password;
use crate::settings::{ClusterConfig, Mode, ReplicaReadMode, ShardingStrategy};
use crate::validate;

/// A setting's value before parsing, whatever layer it came from.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Raw {
    /// One value; numbers and booleans from a file arrive as their text.
    Text(String),
    /// A list, from a file array or the builder's `nodes`.
    List(Vec<String>),
    /// Something that is neither, such as a table; the text says what it is.
    Unusable(&'static str),
}

/// The merged layers: each key's value and the layer that set it.
pub(crate) type Merged = BTreeMap<&'static str, (Raw, Origin)>;

/// Where the environment layer comes from.
#[derive(Clone, Default)]
enum EnvSource {
    /// No environment layer.
    #[default]
    None,
    /// The process environment, read when the configuration is built.
    Process,
    /// These variables instead of the process environment.
    Vars(Vec<(String, String)>),
}

/// Builds a [`ClusterConfig`] from the sources you name, then your own values on top.
///
/// Layers, in increasing priority: defaults, the file ([`file`](Self::file), else the one named by
/// `REDIS_CONFIG_FILE` in the environment layer), the environment ([`process_env`](Self::process_env) or
/// [`env_vars`](Self::env_vars); none unless asked for), and the values set with this builder's other
/// methods. [`build`](Self::build) validates the result once and reports every problem at the same time.
///
/// Durations are kept in whole milliseconds, as in files and the environment; anything finer is
/// dropped.
///
/// ```
/// use std::time::Duration;
/// use cluster_config::{ClusterConfig, Mode};
///
/// let config = ClusterConfig::builder()
///     .env_vars([("REDIS_CLUSTER_NODES", "a:7000,b:7000"), ("REDIS_MAX_RETRIES", "2")])
///     .max_retries(7) // the builder outranks the environment
///     .command_timeout(Duration::from_millis(250))
///     .build()?;
/// assert_eq!(config.retry().max_retries, 7);
/// assert_eq!(config.timeouts().command, Duration::from_millis(250));
/// assert_eq!(config.mode(), Mode::Auto);
/// # Ok::<(), cluster_config::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct ClusterConfigBuilder {
    file: Option<PathBuf>,
    env: EnvSource,
    values: BTreeMap<&'static str, Raw>,
}

impl fmt::Debug for ClusterConfigBuilder {
    /// Shows which settings are set but none of their values, since one may be the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let env = match &self.env {
            EnvSource::None => "none".to_owned(),
            EnvSource::Process => "process".to_owned(),
            EnvSource::Vars(vars) => format!("{} given variables", vars.len()),
        };
        f.debug_struct("ClusterConfigBuilder")
            .field("file", &self.file)
            .field("env", &env)
            .field("set", &self.values.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl ClusterConfigBuilder {
    fn set(mut self, field: &'static Field, raw: Raw) -> Self {
        self.values.insert(field.key, raw);
        self
    }

    fn text(self, field: &'static Field, text: impl ToString) -> Self {
        self.set(field, Raw::Text(text.to_string()))
    }

    fn millis(self, field: &'static Field, duration: Duration) -> Self {
        self.text(field, duration.as_millis())
    }

    /// Reads this TOML (`.toml`) or YAML (`.yaml`, `.yml`) file as the file layer, instead of the one
    /// named by `REDIS_CONFIG_FILE`.
    pub fn file(mut self, path: impl Into<PathBuf>) -> Self {
        self.file = Some(path.into());
        self
    }

    /// Reads the process environment as the environment layer when [`build`](Self::build) runs.
    pub fn process_env(mut self) -> Self {
        self.env = EnvSource::Process;
        self
    }

    /// Uses these variables as the environment layer, instead of the process environment: for tests,
    /// and for programs that read a `.env` file themselves. Names other than the `REDIS_*` settings are
    /// ignored, and so are empty values.
    pub fn env_vars<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        self.env = EnvSource::Vars(vars.into_iter().map(|(k, v)| (k.into(), v.into())).collect());
        self
    }

    /// Seed nodes: `host:port`, `redis://host:port` or `rediss://host:port` (`REDIS_CLUSTER_NODES`).
    pub fn nodes<I, S>(self, nodes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.set(
            &fields::NODES,
            Raw::List(nodes.into_iter().map(Into::into).collect()),
        )
    }

    /// How the nodes are used (`REDIS_MODE`).
    pub fn mode(self, mode: Mode) -> Self {
        self.text(&fields::MODE, mode)
    }

    /// In `auto` mode, whether several standalone nodes are sharded client-side (`REDIS_ENABLE_SHARDING`).
    pub fn sharding_enabled(self, enabled: bool) -> Self {
        self.text(&fields::SHARDING_ENABLED, enabled)
    }

    /// How keys map to standalone nodes (`REDIS_SHARDING_STRATEGY`).
    pub fn sharding_strategy(self, strategy: ShardingStrategy) -> Self {
        self.text(&fields::SHARDING_STRATEGY, strategy)
    }

    /// Connections per node (`REDIS_CONNECTION_POOL_SIZE`).
    pub fn pool_size(self, connections: usize) -> Self {
        self.text(&fields::POOL_SIZE, connections)
    }

    /// Retries of a failed command (`REDIS_MAX_RETRIES`).
    pub fn max_retries(self, retries: u32) -> Self {
        self.text(&fields::MAX_RETRIES, retries)
    }

    /// Delay before the first retry (`REDIS_RETRY_INITIAL_DELAY_MS`).
    pub fn retry_initial_delay(self, delay: Duration) -> Self {
        self.millis(&fields::RETRY_INITIAL_DELAY, delay)
    }

    /// Upper bound of retry delays (`REDIS_RETRY_MAX_DELAY_MS`).
    pub fn retry_max_delay(self, delay: Duration) -> Self {
        self.millis(&fields::RETRY_MAX_DELAY, delay)
    }

    /// Factor from one retry delay to the next (`REDIS_RETRY_BACKOFF_MULTIPLIER`).
    pub fn retry_backoff_multiplier(self, factor: u32) -> Self {
        self.text(&fields::RETRY_BACKOFF_MULTIPLIER, factor)
    }

    /// Retries of a read of one key (`REDIS_MAX_RETRIES_READ_KEY`).
    pub fn read_key_max_retries(self, retries: u32) -> Self {
        self.text(&fields::READ_KEY_MAX_RETRIES, retries)
    }

    /// Time a command may take (`REDIS_COMMAND_TIMEOUT_MS`).
    pub fn command_timeout(self, timeout: Duration) -> Self {
        self.millis(&fields::COMMAND_TIMEOUT, timeout)
    }

    /// Time to open a connection (`REDIS_CONNECT_TIMEOUT_MS`).
    pub fn connect_timeout(self, timeout: Duration) -> Self {
        self.millis(&fields::CONNECT_TIMEOUT, timeout)
    }

    /// Age of an outstanding reply after which its connection is re-opened
    /// (`REDIS_UNRESPONSIVE_TIMEOUT_MS`).
    pub fn unresponsive_timeout(self, timeout: Duration) -> Self {
        self.millis(&fields::UNRESPONSIVE_TIMEOUT, timeout)
    }

    /// Period of the routine slot-table refresh (`REDIS_TOPOLOGY_REFRESH_INTERVAL_MS`).
    pub fn topology_refresh_interval(self, interval: Duration) -> Self {
        self.millis(&fields::TOPOLOGY_REFRESH, interval)
    }

    /// Whether reads may go to replicas (`REDIS_REPLICA_READS`).
    pub fn replica_reads(self, mode: ReplicaReadMode) -> Self {
        self.text(&fields::REPLICA_READS, mode)
    }

    /// Largest replica lag that still serves reads (`REDIS_MAX_REPLICA_LAG_MS`).
    pub fn max_replica_lag(self, lag: Duration) -> Self {
        self.millis(&fields::MAX_REPLICA_LAG, lag)
    }

    /// Longest key accepted, in bytes (`REDIS_KEY_MAX_BYTES`).
    pub fn key_max_bytes(self, bytes: usize) -> Self {
        self.text(&fields::KEY_MAX_BYTES, bytes)
    }

    /// Largest value accepted, in bytes (`REDIS_VALUE_MAX_BYTES`).
    pub fn value_max_bytes(self, bytes: usize) -> Self {
        self.text(&fields::VALUE_MAX_BYTES, bytes)
    }

    /// Period of the health check (`REDIS_HEALTH_INTERVAL_MS`).
    pub fn health_interval(self, interval: Duration) -> Self {
        self.millis(&fields::HEALTH_INTERVAL, interval)
    }

    /// Whether metrics are recorded and served (`REDIS_CLUSTER_METRICS`).
    pub fn metrics_enabled(self, enabled: bool) -> Self {
        self.text(&fields::METRICS_ENABLED, enabled)
    }

    /// Where the Prometheus endpoint listens (`REDIS_METRICS_LISTEN`).
    pub fn metrics_listen(self, addr: SocketAddr) -> Self {
        self.text(&fields::METRICS_LISTEN, addr)
    }

    /// ACL user name (`REDIS_USERNAME`).
    pub fn username(self, username: impl Into<String>) -> Self {
        self.set(&fields::USERNAME, Raw::Text(username.into()))
    }

    /// Password (`REDIS_PASSWORD`); an empty one means none.
    pub fn password(self, password: Password) -> Self {
        self.set(&fields::PASSWORD, Raw::Text(password.expose().to_owned()))
    }

    /// Whether to connect with TLS (`REDIS_TLS`); `rediss://` nodes switch it on as well.
    pub fn tls(self, enabled: bool) -> Self {
        self.text(&fields::TLS, enabled)
    }

    /// The sentinels asked for the primary in sentinel mode (`REDIS_SENTINEL_NODES`): `host:port`, port
    /// 26379 when left out.
    pub fn sentinel_nodes<I, S>(self, nodes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.set(
            &fields::SENTINEL_NODES,
            Raw::List(nodes.into_iter().map(Into::into).collect()),
        )
    }

    /// The master name the sentinels monitor (`REDIS_SENTINEL_MASTER`).
    pub fn sentinel_master(self, name: impl Into<String>) -> Self {
        self.set(&fields::SENTINEL_MASTER, Raw::Text(name.into()))
    }

    /// The sentinels' ACL user (`REDIS_SENTINEL_USERNAME`).
    pub fn sentinel_username(self, username: impl Into<String>) -> Self {
        self.set(&fields::SENTINEL_USERNAME, Raw::Text(username.into()))
    }

    /// The sentinels' password (`REDIS_SENTINEL_PASSWORD`); an empty one means none.
    pub fn sentinel_password(self, password: Password) -> Self {
        self.set(
            &fields::SENTINEL_PASSWORD,
            Raw::Text(password.expose().to_owned()),
        )
    }

    /// PEM file of the CA certificates that signed the servers' certificates (`REDIS_TLS_CA_FILE`).
    pub fn tls_ca_file(self, path: impl AsRef<std::path::Path>) -> Self {
        self.set(&fields::TLS_CA_FILE, Raw::Text(path_text(path.as_ref())))
    }

    /// PEM file of the client certificate for mutual TLS (`REDIS_TLS_CERT_FILE`); needs
    /// [`tls_key_file`](Self::tls_key_file).
    pub fn tls_cert_file(self, path: impl AsRef<std::path::Path>) -> Self {
        self.set(&fields::TLS_CERT_FILE, Raw::Text(path_text(path.as_ref())))
    }

    /// PEM file of the client certificate's private key (`REDIS_TLS_KEY_FILE`); needs
    /// [`tls_cert_file`](Self::tls_cert_file).
    pub fn tls_key_file(self, path: impl AsRef<std::path::Path>) -> Self {
        self.set(&fields::TLS_KEY_FILE, Raw::Text(path_text(path.as_ref())))
    }

    /// The name every node's certificate is checked against (`REDIS_TLS_SERVER_NAME`).
    pub fn tls_server_name(self, name: impl Into<String>) -> Self {
        self.set(&fields::TLS_SERVER_NAME, Raw::Text(name.into()))
    }

    /// Stacks the layers and validates the result, listing every problem at once.
    pub fn build(self) -> Result<ClusterConfig, Error> {
        let mut problems = Vec::new();
        let env = match self.env {
            EnvSource::None => Vec::new(),
            EnvSource::Process => process_env(&mut problems),
            EnvSource::Vars(vars) => vars,
        };
        let env = env_layer(env);
        let file = match (self.file, &env.config_file) {
            (Some(path), _) => Some((path, "given to the builder")),
            (None, Some(path)) => Some((path.clone(), "named by REDIS_CONFIG_FILE")),
            (None, None) => None,
        };
        let file_layer = file.and_then(|(path, how)| read_file(&path, how, &mut problems).map(|c| (path, c)));
        let merged = merge(file_layer, env.values, self.values, &mut problems);
        validate::validate(&merged, problems)
    }
}

impl ClusterConfig {
    /// A builder: defaults, then only the sources and values you give it.
    pub fn builder() -> ClusterConfigBuilder {
        ClusterConfigBuilder::default()
    }

    /// Defaults, then the file named by `REDIS_CONFIG_FILE` if set, then the process's `REDIS_*`
    /// variables.
    pub fn from_env() -> Result<Self, Error> {
        Self::builder().process_env().build()
    }

    /// Like [`from_env`](Self::from_env), with these variables instead of the process environment. Names
    /// other than the `REDIS_*` settings are ignored, and so are empty values.
    ///
    /// ```
    /// use cluster_config::ClusterConfig;
    ///
    /// let config = ClusterConfig::from_env_vars([("REDIS_CLUSTER_NODES", "h1:6379,h2:6380")])?;
    /// assert_eq!(config.nodes().len(), 2);
    /// # Ok::<(), cluster_config::Error>(())
    /// ```
    pub fn from_env_vars<I, K, V>(vars: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Self::builder().env_vars(vars).build()
    }

    /// Defaults, then this TOML (`.toml`) or YAML (`.yaml`, `.yml`) file; the environment is not read.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, Error> {
        Self::builder().file(path.as_ref()).build()
    }

    /// Every layer: defaults < file < environment < `overrides`. The file is the one given to
    /// [`ClusterConfigBuilder::file`], else the one `REDIS_CONFIG_FILE` names; the environment is the
    /// process's unless `overrides` was given [`env_vars`](ClusterConfigBuilder::env_vars).
    ///
    /// ```
    /// use cluster_config::ClusterConfig;
    ///
    /// let overrides = ClusterConfig::builder()
    ///     .env_vars([("REDIS_CLUSTER_NODES", "h:6379"), ("REDIS_CLUSTER_METRICS", "true")])
    ///     .metrics_enabled(false);
    /// let config = ClusterConfig::load(overrides)?;
    /// assert!(!config.metrics().enabled);
    /// # Ok::<(), cluster_config::Error>(())
    /// ```
    pub fn load(overrides: ClusterConfigBuilder) -> Result<Self, Error> {
        let overrides = match overrides.env {
            EnvSource::None => overrides.process_env(),
            EnvSource::Process | EnvSource::Vars(_) => overrides,
        };
        overrides.build()
    }
}

/// The environment layer: values by file key, and the file `REDIS_CONFIG_FILE` names.
struct EnvLayer {
    values: BTreeMap<&'static str, Raw>,
    config_file: Option<PathBuf>,
}

fn env_layer(vars: Vec<(String, String)>) -> EnvLayer {
    let mut layer = EnvLayer {
        values: BTreeMap::new(),
        config_file: None,
    };
    for (name, value) in vars {
        // Compose files and scripts often pass an unset variable on as an empty one
        // (`REDIS_PASSWORD=${REDIS_PASSWORD}`), so empty means unset. Blank is empty too, except for the
        // password, whose blanks may be part of it.
        let empty = if name == fields::PASSWORD.env || name == fields::SENTINEL_PASSWORD.env {
            value.is_empty()
        } else {
            value.trim().is_empty()
        };
        if empty {
            continue;
        }
        if name == fields::CONFIG_FILE_ENV {
            layer.config_file = Some(PathBuf::from(value.trim()));
        } else if let Some(field) = fields::by_env(&name) {
            layer.values.insert(field.key, Raw::Text(value));
        }
    }
    layer
}

/// The process environment's `REDIS_*` settings.
fn process_env(problems: &mut Vec<Problem>) -> Vec<(String, String)> {
    utf8_settings(std::env::vars_os(), problems)
}

/// The `REDIS_*` settings among `vars`; a setting that is not UTF-8 is a problem rather than the panic
/// `std::env::vars` would raise.
fn utf8_settings(
    vars: impl IntoIterator<Item = (OsString, OsString)>,
    problems: &mut Vec<Problem>,
) -> Vec<(String, String)> {
    let mut settings = Vec::new();
    for (name, value) in vars {
        let Ok(name) = name.into_string() else { continue };
        if name != fields::CONFIG_FILE_ENV && fields::by_env(&name).is_none() {
            continue;
        }
        match value.into_string() {
            Ok(value) => settings.push((name, value)),
            Err(_) => problems.push(not_utf8(&name)),
        }
    }
    settings
}

fn not_utf8(name: &str) -> Problem {
    match fields::by_env(name) {
        Some(field) => Problem::new(
            field,
            Origin::Environment,
            "the value is not valid UTF-8; set it to UTF-8 text",
        ),
        None => Problem::general(format!("{name} is not valid UTF-8; set it to UTF-8 text")),
    }
}

/// Parses the file with the `config` crate, by extension.
fn read_file(path: &Path, how: &str, problems: &mut Vec<Problem>) -> Option<config::Config> {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let format = match extension.as_deref() {
        Some("toml") => FileFormat::Toml,
        Some("yaml" | "yml") => FileFormat::Yaml,
        _ => {
            problems.push(Problem::general(format!(
                "config file {} ({how}) has no `.toml`, `.yaml` or `.yml` extension, so its format is \
                 unknown; rename it",
                path.display()
            )));
            return None;
        }
    };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) => {
            problems.push(Problem::general(format!(
                "config file {} ({how}) cannot be read: {error}; check the path and its permissions",
                path.display()
            )));
            return None;
        }
    };
    match config::Config::builder()
        .add_source(config::File::from_str(&text, format))
        .build()
    {
        Ok(parsed) => Some(parsed),
        Err(error) => {
            problems.push(Problem::general(format!(
                "config file {} ({how}) is not valid {}: {}; fix its syntax",
                path.display(),
                if format == FileFormat::Toml {
                    "TOML"
                } else {
                    "YAML"
                },
                syntax_error_without_source(&error.to_string()),
            )));
            None
        }
    }
}

/// A parser's message stripped of the quoted source lines some parsers add (the TOML parser prints the
/// offending line, which may be the password's).
fn syntax_error_without_source(message: &str) -> String {
    let kept: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.contains('|'))
        .collect();
    kept.join(" ")
}

/// A layer handed to the `config` crate: keys are dotted file keys. Its `Debug` shows keys only, since
/// one value may be the password.
#[derive(Clone)]
struct Layer(BTreeMap<&'static str, Raw>);

impl fmt::Debug for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl Source for Layer {
    fn clone_into_box(&self) -> Box<dyn Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> Result<Map<String, Value>, config::ConfigError> {
        let to_value = |raw: &Raw| match raw {
            Raw::Text(text) => Value::new(None, ValueKind::String(text.clone())),
            Raw::List(items) => Value::new(
                None,
                ValueKind::Array(
                    items
                        .iter()
                        .map(|i| Value::new(None, ValueKind::String(i.clone())))
                        .collect(),
                ),
            ),
            Raw::Unusable(_) => Value::new(None, ValueKind::Nil),
        };
        Ok(self
            .0
            .iter()
            .map(|(key, raw)| ((*key).to_owned(), to_value(raw)))
            .collect())
    }
}

/// Stacks file < environment < builder with the `config` crate, then flattens the result into file keys
/// with each key's origin. Keys no setting reads can only come from the file, and are problems.
fn merge(
    file: Option<(PathBuf, config::Config)>,
    env: BTreeMap<&'static str, Raw>,
    builder: BTreeMap<&'static str, Raw>,
    problems: &mut Vec<Problem>,
) -> Merged {
    let origin_of = |key: &str, file_path: &Option<PathBuf>| {
        if builder.contains_key(key) {
            Origin::Builder
        } else if env.contains_key(key) {
            Origin::Environment
        } else {
            file_path.clone().map_or(Origin::Default, Origin::File)
        }
    };
    let (file_path, file_source) = match file {
        Some((path, source)) => (Some(path), Some(source)),
        None => (None, None),
    };
    let mut stack = config::Config::builder();
    if let Some(source) = file_source {
        stack = stack.add_source(source);
    }
    let stack = stack
        .add_source(Layer(env.clone()))
        .add_source(Layer(builder.clone()))
        .build();
    let table = match stack.and_then(|stacked| stacked.collect()) {
        Ok(table) => table,
        Err(error) => {
            // Every layer above was parsed already, so this is not expected; it is reported, not hidden.
            problems.push(Problem::general(format!(
                "the settings could not be layered: {error}"
            )));
            return Merged::new();
        }
    };
    let mut flat = Vec::new();
    flatten("", table, &mut flat);
    let mut merged = Merged::new();
    for (key, value) in flat {
        match fields::by_key(&key) {
            Some(field) => {
                // A password written as a number or boolean reaches us re-formatted (`1e3` as `1000`),
                // which would fail authentication far from the cause, so credentials must be strings.
                let credential = [
                    &fields::PASSWORD,
                    &fields::USERNAME,
                    &fields::SENTINEL_PASSWORD,
                    &fields::SENTINEL_USERNAME,
                ]
                .contains(&field);
                let raw = match value.kind {
                    ValueKind::Nil | ValueKind::String(_) => to_raw(value),
                    _ if credential => Some(Raw::Unusable("a number, boolean or list; quote it in the file")),
                    _ => to_raw(value),
                };
                if let Some(raw) = raw {
                    merged.insert(field.key, (raw, origin_of(field.key, &file_path)));
                }
            }
            None => problems.push(unknown_key(&key, file_path.as_deref())),
        }
    }
    merged
}

fn flatten(prefix: &str, table: Map<String, Value>, out: &mut Vec<(String, Value)>) {
    for (key, value) in table {
        let key = if prefix.is_empty() {
            key
        } else {
            format!("{prefix}.{key}")
        };
        match value.kind {
            ValueKind::Table(inner) => flatten(&key, inner, out),
            _ => out.push((key, value)),
        }
    }
}

/// A file or layer value as [`Raw`]; `None` for a null, which YAML uses for "unset".
fn to_raw(value: Value) -> Option<Raw> {
    let scalar = |kind: ValueKind| match kind {
        ValueKind::String(text) => Some(text),
        ValueKind::Boolean(b) => Some(b.to_string()),
        ValueKind::I64(n) => Some(n.to_string()),
        ValueKind::I128(n) => Some(n.to_string()),
        ValueKind::U64(n) => Some(n.to_string()),
        ValueKind::U128(n) => Some(n.to_string()),
        ValueKind::Float(n) => Some(n.to_string()),
        ValueKind::Nil | ValueKind::Table(_) | ValueKind::Array(_) => None,
    };
    match value.kind {
        ValueKind::Nil => None,
        ValueKind::Array(items) => {
            let texts: Option<Vec<String>> = items.into_iter().map(|item| scalar(item.kind)).collect();
            Some(texts.map_or(Raw::Unusable("a list holding lists or tables"), Raw::List))
        }
        ValueKind::Table(_) => Some(Raw::Unusable("a table")),
        kind => Some(scalar(kind).map_or(Raw::Unusable("an unusable value"), Raw::Text)),
    }
}

fn unknown_key(key: &str, file: Option<&Path>) -> Problem {
    let place = file.map_or_else(String::new, |path| format!(" in {}", path.display()));
    // A key that extends or truncates a real one (`pool`, `metrics.enabled.on`) is most likely that
    // one; otherwise the nearest key, if it is near enough for the hint to help.
    let prefix = fields::FIELDS
        .iter()
        .find(|field| field.key.starts_with(key) || key.starts_with(field.key));
    let nearest = fields::FIELDS
        .iter()
        .map(|field| (edit_distance(key, field.key), field))
        .min_by_key(|(distance, _)| *distance)
        .filter(|(distance, _)| *distance <= (key.chars().count() / 3).max(1))
        .map(|(_, field)| field);
    let hint = match prefix.or(nearest) {
        Some(field) => format!("did you mean `{}`?", field.key),
        None => format!(
            "accepted keys are {}",
            fields::FIELDS
                .iter()
                .map(|field| format!("`{}`", field.key))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    Problem::general(format!("unknown file key `{key}`{place}; {hint}"))
}

/// Levenshtein distance, for "did you mean" hints.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

/// A path as the text the other layers carry. Settings are text (environment variables and files are),
/// so a path that is not UTF-8 is carried lossily and then fails validation as a missing file.
fn path_text(path: &std::path::Path) -> String {
    path.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distances() {
        let cases = [
            ("", "", 0),
            ("abc", "abc", 0),
            ("retry.max_retry", "retry.max_retries", 3),
            ("kitten", "sitting", 3),
            ("a", "", 1),
        ];
        for (a, b, expected) in cases {
            assert_eq!(edit_distance(a, b), expected, "{a} vs {b}");
        }
    }

    #[test]
    fn strips_quoted_source_lines() {
        let message = "TOML parse error at line 1, column 12\n  |\n1 | password = \"x\n  |            ^\n\
                       invalid basic string\n";
        assert_eq!(
            syntax_error_without_source(message),
            "TOML parse error at line 1, column 12 invalid basic string"
        );
    }

    #[test]
    fn empty_variables_are_unset_and_blanks_belong_to_passwords() {
        let layer = env_layer(vec![
            ("REDIS_MAX_RETRIES".into(), "  ".into()),
            ("REDIS_PASSWORD".into(), " ".into()),
            ("REDIS_USERNAME".into(), String::new()),
            ("REDIS_CONFIG_FILE".into(), " cache.toml ".into()),
            ("HOME".into(), "/root".into()),
        ]);
        let keys: Vec<_> = layer.values.keys().copied().collect();
        assert_eq!(keys, ["auth.password"]);
        assert_eq!(layer.config_file, Some(PathBuf::from("cache.toml")));
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_values_are_problems() {
        use std::os::unix::ffi::OsStringExt;
        let mut problems = Vec::new();
        let vars = utf8_settings(
            vec![
                ("REDIS_MAX_RETRIES".into(), OsString::from_vec(vec![0xff, 0xfe])),
                ("REDIS_MODE".into(), "cluster".into()),
                ("PATH".into(), "/bin".into()),
            ],
            &mut problems,
        );
        assert_eq!(vars, [("REDIS_MODE".to_owned(), "cluster".to_owned())]);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].env_var(), Some("REDIS_MAX_RETRIES"));
    }
}
