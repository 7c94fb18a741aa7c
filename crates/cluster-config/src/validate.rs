//! Parsing the merged layers into a [`ClusterConfig`], collecting every problem on the way.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Origin, Problem};
use crate::fields::{self, Field};
use crate::node::{NodeAddr, Scheme, parse_sentinel_node, parse_weighted_node};
use crate::secret::{Password, REDACTED};
use crate::settings::{
    ClusterConfig, Limits, MetricsConfig, Mode, ReplicaReadMode, ReplicaReads, RetryConfig, SentinelConfig,
    ShardingConfig, ShardingStrategy, Timeouts, TlsConfig, accepted,
};
use crate::sources::{Merged, Raw};

/// The shortest health interval: each round polls every node (PING, INFO, CLUSTER INFO/NODES) and
/// keeps a trend sample, so a 1 ms interval would flood the nodes and fill the trend ring with tens of
/// millions of samples.
pub(crate) const MIN_HEALTH_INTERVAL_MS: u64 = 100;

/// The longest duration of any setting: `u32::MAX` milliseconds (about 49.7 days), so that every
/// duration fits the client's `u32` milliseconds and no deadline arithmetic overflows.
pub(crate) const MAX_MILLIS: u64 = u32::MAX as u64;

/// Redis refuses strings above 512 MiB (`proto-max-bulk-len`), so larger limits are mistakes.
const REDIS_MAX_BULK_BYTES: u64 = 512 * 1024 * 1024;

/// Parses and checks every setting, then the rules between settings; returns every problem at once.
pub(crate) fn validate(merged: &Merged, problems: Vec<Problem>) -> Result<ClusterConfig, Error> {
    let mut r = Reader { merged, problems };
    // Sentinel mode reads its nodes from the sentinels, so whether REDIS_CLUSTER_NODES is required
    // depends on the mode; a mode that does not parse is reported below, where it is read.
    let sentinel_mode = matches!(merged.get(fields::MODE.key), Some((Raw::Text(text), _))
        if Mode::parse(text) == Some(Mode::Sentinel));
    let nodes = r.nodes(sentinel_mode);
    let mode = r.choice(&fields::MODE, Mode::parse, Mode::ACCEPTED);
    let sharding_enabled = r.boolean(&fields::SHARDING_ENABLED);
    let strategy = r.choice(
        &fields::SHARDING_STRATEGY,
        ShardingStrategy::parse,
        ShardingStrategy::ACCEPTED,
    );
    let pool_size = r.uint(&fields::POOL_SIZE, 1..=1024, "connections per node");
    let max_retries = r.u32(&fields::MAX_RETRIES, 0, "retries");
    let initial_delay = r.millis(&fields::RETRY_INITIAL_DELAY);
    let max_delay = r.millis(&fields::RETRY_MAX_DELAY);
    let multiplier = r.u32(
        &fields::RETRY_BACKOFF_MULTIPLIER,
        1,
        "(a whole factor: fred's backoff base is an integer)",
    );
    let read_key_max_retries = r.u32(&fields::READ_KEY_MAX_RETRIES, 0, "retries");
    let command = r.millis(&fields::COMMAND_TIMEOUT);
    let connect = r.millis(&fields::CONNECT_TIMEOUT);
    let unresponsive = r.millis(&fields::UNRESPONSIVE_TIMEOUT);
    let topology_refresh = r.millis(&fields::TOPOLOGY_REFRESH);
    let replica_mode = r.choice(
        &fields::REPLICA_READS,
        ReplicaReadMode::parse,
        ReplicaReadMode::ACCEPTED,
    );
    let max_lag = r
        .uint(&fields::MAX_REPLICA_LAG, 0..=MAX_MILLIS, "milliseconds")
        .map(Duration::from_millis);
    let key_max = r.uint(
        &fields::KEY_MAX_BYTES,
        1..=REDIS_MAX_BULK_BYTES,
        "bytes (512 MiB is Redis's limit)",
    );
    let value_max = r.uint(
        &fields::VALUE_MAX_BYTES,
        1..=REDIS_MAX_BULK_BYTES,
        "bytes (512 MiB is Redis's limit)",
    );
    let health = r
        .uint(
            &fields::HEALTH_INTERVAL,
            MIN_HEALTH_INTERVAL_MS..=MAX_MILLIS,
            "milliseconds (each round polls every node)",
        )
        .map(Duration::from_millis);
    let metrics_enabled = r.boolean(&fields::METRICS_ENABLED);
    let metrics_listen = r.socket_addr(&fields::METRICS_LISTEN);
    let username = r.username(&fields::USERNAME);
    let password = r.password(&fields::PASSWORD);
    let tls_flag = r.boolean(&fields::TLS);
    let sentinel = r.sentinel(mode);
    let tls_files = r.tls_files();

    // Rules between settings run only on settings that parsed, so one typo yields one problem.
    if let Some((nodes, schemes, _)) = &nodes {
        r.node_rules(nodes, schemes, mode, sharding_enabled);
        if let (Some(flag), Some(files)) = (tls_flag, &tls_files) {
            let on = flag || schemes.contains(&Scheme::Tls);
            r.tls_rules(on, files);
        }
    }
    if let Some((initial, max)) = initial_delay
        .zip(max_delay)
        .filter(|(initial, max)| initial > max)
    {
        r.problem(
            &fields::RETRY_INITIAL_DELAY,
            format!(
                "the initial delay {} ms is above the max delay {} ms ({} / `{}`); lower one or raise the other",
                initial.as_millis(),
                max.as_millis(),
                fields::RETRY_MAX_DELAY.env,
                fields::RETRY_MAX_DELAY.key
            ),
        );
    }
    if let Some((command, unresponsive)) = command.zip(unresponsive).filter(|(command, unr)| unr < command) {
        r.problem(
            &fields::UNRESPONSIVE_TIMEOUT,
            format!(
                "{} ms is below the command timeout of {} ms ({} / `{}`), so slow but healthy replies would cost \
                 reconnections; raise it to at least the command timeout",
                unresponsive.as_millis(),
                command.as_millis(),
                fields::COMMAND_TIMEOUT.env,
                fields::COMMAND_TIMEOUT.key
            ),
        );
    }
    if replica_mode == Some(ReplicaReadMode::Prefer) {
        if let Some(mode @ (Mode::Standalone | Mode::Sharded)) = mode {
            r.problem(
                &fields::REPLICA_READS,
                format!(
                    "`prefer` needs replicas, which a client learns from a cluster, but REDIS_MODE is `{mode}`; \
                     set it to `off` or use `cluster` or `auto` mode"
                ),
            );
        }
        if max_lag == Some(Duration::ZERO) {
            r.problem(
                &fields::MAX_REPLICA_LAG,
                "0 ms lets no replica serve a read although REDIS_REPLICA_READS is `prefer`; allow some lag, \
                 such as 1000, or set REDIS_REPLICA_READS to `off`",
            );
        }
    }
    if username.as_ref().is_some_and(Option::is_some) && password.as_ref().is_some_and(Option::is_none) {
        r.problem(
            &fields::USERNAME,
            "an ACL user needs a password too; set REDIS_PASSWORD (file key `auth.password`), or any password \
             for a `nopass` user",
        );
    }

    if !r.problems.is_empty() {
        return Err(Error::Invalid { problems: r.problems });
    }
    let Some(sentinel) = sentinel else {
        // `sentinel` is `None` only after it recorded a problem, so this is unreachable; still no panic.
        return Err(Error::Invalid {
            problems: vec![Problem::general(
                "a sentinel setting failed to parse without a message; please report this",
            )],
        });
    };
    let parsed = (
        nodes,
        mode,
        sharding_enabled,
        strategy,
        pool_size,
        (
            max_retries,
            initial_delay,
            max_delay,
            multiplier,
            read_key_max_retries,
        ),
        (command, connect, unresponsive),
        topology_refresh,
        (replica_mode, max_lag),
        (key_max, value_max),
        health,
        (metrics_enabled, metrics_listen),
        (username, password, tls_flag, tls_files),
    );
    let (
        Some((nodes, schemes, node_weights)),
        Some(mode),
        Some(enabled),
        Some(strategy),
        Some(pool_size),
        (
            Some(max_retries),
            Some(initial_delay),
            Some(max_delay),
            Some(backoff_multiplier),
            Some(read_key_max_retries),
        ),
        (Some(command), Some(connect), Some(unresponsive)),
        Some(topology_refresh_interval),
        (Some(replica_mode), Some(max_lag)),
        (Some(key_max_bytes), Some(value_max_bytes)),
        Some(health_interval),
        (Some(metrics_enabled), Some(listen)),
        (Some(username), Some(password), Some(tls_flag), Some(tls_files)),
    ) = parsed
    else {
        // Every `None` above recorded a problem, so this is unreachable; it is still an error, not a panic.
        return Err(Error::Invalid {
            problems: vec![Problem::general(
                "a setting failed to parse without a message; please report this",
            )],
        });
    };
    Ok(ClusterConfig {
        nodes,
        node_weights,
        mode,
        sharding: ShardingConfig { enabled, strategy },
        pool_size: to_usize(pool_size),
        retry: RetryConfig {
            max_retries,
            initial_delay,
            max_delay,
            backoff_multiplier,
            read_key_max_retries,
        },
        timeouts: Timeouts {
            command,
            connect,
            unresponsive,
        },
        topology_refresh_interval,
        replica_reads: ReplicaReads {
            mode: replica_mode,
            max_lag,
        },
        limits: Limits {
            key_max_bytes: to_usize(key_max_bytes),
            value_max_bytes: to_usize(value_max_bytes),
        },
        health_interval,
        metrics: MetricsConfig {
            enabled: metrics_enabled,
            listen,
        },
        username,
        password,
        tls: (tls_flag || schemes.contains(&Scheme::Tls)).then_some(tls_files),
        sentinel,
    })
}

/// Limits are at most 512 MiB, which fits `usize` on every supported target.
fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

struct Reader<'a> {
    merged: &'a Merged,
    problems: Vec<Problem>,
}

impl Reader<'_> {
    fn origin(&self, field: &Field) -> Origin {
        match (self.merged.get(field.key), field.default) {
            (Some((_, origin)), _) => origin.clone(),
            (None, Some(_)) => Origin::Default,
            (None, None) => Origin::Unset,
        }
    }

    fn problem(&mut self, field: &Field, message: impl Into<String>) {
        let origin = self.origin(field);
        self.problems.push(Problem::new(field, origin, message));
    }

    /// The layered value, else the default; `None` if the setting is unset or not a single value.
    fn text(&mut self, field: &Field) -> Option<String> {
        match self.merged.get(field.key) {
            Some((Raw::Text(text), _)) => Some(text.clone()),
            Some((Raw::List(_), _)) => {
                self.problem(field, "expected one value, found a list");
                None
            }
            Some((Raw::Unusable(what), _)) => {
                self.problem(field, format!("expected one value, found {what}"));
                None
            }
            None => field.default.map(str::to_owned),
        }
    }

    fn uint(&mut self, field: &Field, range: RangeInclusive<u64>, unit: &str) -> Option<u64> {
        let text = self.text(field)?;
        let text = text.trim();
        let (low, high) = (range.start(), range.end());
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) && text.parse::<u64>().is_err() {
            // Digits only, yet too many for a u64 (such as `Duration::MAX` in milliseconds).
            self.problem(
                field,
                format!("{text} is out of range; use {low} to {high} {unit}"),
            );
            return None;
        }
        let number = text.parse::<u64>().ok().or_else(|| {
            // A file may say `2.0`; a whole float is accepted, a fraction is not.
            let float = text.parse::<f64>().ok()?;
            (float.is_finite() && float >= 0.0 && float.fract() == 0.0 && float <= u64::MAX as f64)
                .then_some(float as u64)
        });
        match number {
            Some(n) if range.contains(&n) => Some(n),
            Some(n) => {
                self.problem(field, format!("{n} is out of range; use {low} to {high} {unit}"));
                None
            }
            None => {
                self.problem(
                    field,
                    format!("`{text}` is not a whole number; use {low} to {high} {unit}"),
                );
                None
            }
        }
    }

    fn u32(&mut self, field: &Field, min: u32, unit: &str) -> Option<u32> {
        let n = self.uint(field, u64::from(min)..=u64::from(u32::MAX), unit)?;
        u32::try_from(n).ok()
    }

    /// Milliseconds, at least 1: a zero timeout or interval would disable or spin what it paces.
    fn millis(&mut self, field: &Field) -> Option<Duration> {
        self.uint(field, 1..=MAX_MILLIS, "milliseconds")
            .map(Duration::from_millis)
    }

    fn boolean(&mut self, field: &Field) -> Option<bool> {
        let text = self.text(field)?;
        match text.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Some(true),
            "false" | "0" | "no" | "off" => Some(false),
            other => {
                let other = other.to_owned();
                self.problem(
                    field,
                    format!("`{other}` is not a boolean; use `true` or `false`"),
                );
                None
            }
        }
    }

    fn choice<T>(
        &mut self,
        field: &Field,
        parse: fn(&str) -> Option<T>,
        accepted_values: &[&str],
    ) -> Option<T> {
        let text = self.text(field)?;
        let parsed = parse(&text);
        if parsed.is_none() {
            self.problem(
                field,
                format!("`{}` is not one of {}", text.trim(), accepted(accepted_values)),
            );
        }
        parsed
    }

    fn socket_addr(&mut self, field: &Field) -> Option<SocketAddr> {
        let text = self.text(field)?;
        let parsed = text.trim().parse::<SocketAddr>().ok();
        if parsed.is_none() {
            self.problem(
                field,
                format!(
                    "`{}` is not a socket address; use `ip:port`, such as `0.0.0.0:9192`",
                    text.trim()
                ),
            );
        }
        parsed
    }

    /// `Some(None)` when unset, `None` after a problem.
    fn username(&mut self, field: &Field) -> Option<Option<String>> {
        let Some(text) = self.text(field) else {
            return if self.merged.contains_key(field.key) {
                None
            } else {
                Some(None)
            };
        };
        let name = text.trim();
        if name.is_empty() {
            return Some(None);
        }
        if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            self.problem(
                field,
                format!("{name:?} contains blanks or control characters, which ACL names cannot"),
            );
            return None;
        }
        Some(Some(name.to_owned()))
    }

    /// `Some(None)` when unset, `None` after a problem. Never puts the password in a message.
    fn password(&mut self, field: &Field) -> Option<Option<Password>> {
        match self.merged.get(field.key) {
            None => Some(None),
            Some((Raw::Text(text), _)) if text.is_empty() => Some(None),
            Some((Raw::Text(text), _)) if text == REDACTED => {
                self.problem(
                    field,
                    format!(
                        "the password is the placeholder `{REDACTED}`, so a redacted rendering was loaded; set the \
                         real password"
                    ),
                );
                None
            }
            Some((Raw::Text(text), _)) => Some(Some(Password::new(text.clone()))),
            Some((Raw::List(_), _)) => {
                self.problem(field, "expected a string, found a list");
                None
            }
            Some((Raw::Unusable(what), _)) => {
                self.problem(field, format!("expected a string, found {what}"));
                None
            }
        }
    }

    /// Parses the node list (with each node's weight, 1 unless given); `None` after a problem with the
    /// list itself.
    fn nodes(&mut self, sentinel_mode: bool) -> Option<(Vec<NodeAddr>, Vec<Scheme>, Vec<u32>)> {
        let field = &fields::NODES;
        let entries: Vec<String> = match self.merged.get(field.key) {
            None => Vec::new(),
            Some((Raw::Text(text), _)) => text.split(',').map(str::to_owned).collect(),
            Some((Raw::List(items), _)) => items.clone(),
            Some((Raw::Unusable(what), _)) => {
                self.problem(field, format!("expected a list of nodes, found {what}"));
                return None;
            }
        };
        let blank = entries.iter().all(|entry| entry.trim().is_empty());
        if sentinel_mode {
            // The sentinels name the primary and its replicas; a node list beside them would be a second,
            // stale truth, so it is refused rather than silently ignored.
            if !blank {
                self.problem(
                    field,
                    "REDIS_MODE is `sentinel`, which asks the sentinels for the primary and replicas, so this                      list is not used; unset REDIS_CLUSTER_NODES and list the sentinels in REDIS_SENTINEL_NODES",
                );
                return None;
            }
            return Some((Vec::new(), Vec::new(), Vec::new()));
        }
        // Only blanks (an empty list, `,`) means no nodes at all, which gets one problem, not one per blank.
        if blank {
            self.problem(
                field,
                "no nodes are listed; give at least one `host:port`, such as `127.0.0.1:6379`, comma-separated",
            );
            return None;
        }
        let total = entries.len();
        let mut parsed = Vec::new();
        let mut bad = false;
        for (index, entry) in entries.iter().enumerate() {
            match parse_weighted_node(entry) {
                Ok((node, scheme, weight)) => parsed.push((node, scheme, weight)),
                Err(message) => {
                    bad = true;
                    self.problem(field, format!("entry {} of {total}: {message}", index + 1));
                }
            }
        }
        if bad {
            return None;
        }
        let mut counts: BTreeMap<(String, u16), usize> = BTreeMap::new();
        for (node, _, _) in &parsed {
            *counts.entry(node.identity()).or_default() += 1;
        }
        let mut unique: Vec<NodeAddr> = Vec::new();
        let mut schemes = Vec::new();
        let mut weights = Vec::new();
        for (node, scheme, weight) in parsed {
            schemes.push(scheme);
            if unique.iter().any(|seen| seen.identity() == node.identity()) {
                continue;
            }
            let count = counts.get(&node.identity()).copied().unwrap_or(1);
            if count > 1 {
                self.problem(
                    field,
                    format!("`{node}` is listed {count} times; list each node once"),
                );
            }
            unique.push(node);
            weights.push(weight);
        }
        // Duplicates are already problems; the rules between settings still run on the distinct nodes.
        Some((unique, schemes, weights))
    }

    /// The sentinel settings; in sentinel mode the sentinels and the master name are required, in any
    /// other mode none may be set. `None` after a problem.
    fn sentinel(&mut self, mode: Option<Mode>) -> Option<SentinelConfig> {
        let nodes = self.sentinel_nodes();
        let master = self.text(&fields::SENTINEL_MASTER).map(|t| t.trim().to_owned());
        let master = match master {
            Some(name) if name.is_empty() => None,
            Some(name) if name.chars().any(|c| c.is_whitespace() || c.is_control()) => {
                self.problem(
                    &fields::SENTINEL_MASTER,
                    format!(
                        "{name:?} contains blanks or control characters, which a sentinel master name cannot"
                    ),
                );
                return None;
            }
            other => other,
        };
        let username = self.username(&fields::SENTINEL_USERNAME);
        let password = self.password(&fields::SENTINEL_PASSWORD);
        let (nodes, username, password) = (nodes?, username?, password?);
        let mut ok = true;
        if username.is_some() && password.is_none() {
            self.problem(
                &fields::SENTINEL_USERNAME,
                "a sentinel ACL user needs a password too; set REDIS_SENTINEL_PASSWORD (file key \
                 `sentinel.password`)",
            );
            ok = false;
        }
        match mode {
            Some(Mode::Sentinel) => {
                if nodes.is_empty() {
                    self.problem(
                        &fields::SENTINEL_NODES,
                        "REDIS_MODE is `sentinel` but no sentinel is listed; set REDIS_SENTINEL_NODES to the \
                         sentinels' `host:port`, comma-separated, such as `10.0.0.1:26379,10.0.0.2:26379`",
                    );
                    ok = false;
                }
                if master.is_none() {
                    self.problem(
                        &fields::SENTINEL_MASTER,
                        "REDIS_MODE is `sentinel` but no master name is given; set REDIS_SENTINEL_MASTER to the \
                         name the sentinels monitor (the `<name>` of `sentinel monitor <name> ...`)",
                    );
                    ok = false;
                }
            }
            Some(mode) => {
                let set: Vec<&str> = [
                    (!nodes.is_empty(), fields::SENTINEL_NODES.env),
                    (master.is_some(), fields::SENTINEL_MASTER.env),
                    (username.is_some(), fields::SENTINEL_USERNAME.env),
                    (password.is_some(), fields::SENTINEL_PASSWORD.env),
                ]
                .into_iter()
                .filter_map(|(is_set, env)| is_set.then_some(env))
                .collect();
                if let Some(first) = set.first() {
                    let field = fields::by_env(first).unwrap_or(&fields::SENTINEL_NODES);
                    self.problem(
                        field,
                        format!(
                            "{} {} only in sentinel mode but REDIS_MODE is `{mode}`; set REDIS_MODE to \
                             `sentinel`, or unset {}",
                            set.join(", "),
                            if set.len() == 1 { "applies" } else { "apply" },
                            if set.len() == 1 { "it" } else { "them" }
                        ),
                    );
                    ok = false;
                }
            }
            // The mode did not parse and has its problem already.
            None => ok = false,
        }
        ok.then_some(SentinelConfig {
            nodes,
            master,
            username,
            password,
        })
    }

    /// The sentinel list, each entry `host:port` (port 26379 when left out); empty when unset.
    fn sentinel_nodes(&mut self) -> Option<Vec<NodeAddr>> {
        let field = &fields::SENTINEL_NODES;
        let entries: Vec<String> = match self.merged.get(field.key) {
            None => return Some(Vec::new()),
            Some((Raw::Text(text), _)) => text.split(',').map(str::to_owned).collect(),
            Some((Raw::List(items), _)) => items.clone(),
            Some((Raw::Unusable(what), _)) => {
                self.problem(field, format!("expected a list of sentinels, found {what}"));
                return None;
            }
        };
        if entries.iter().all(|entry| entry.trim().is_empty()) {
            return Some(Vec::new());
        }
        let total = entries.len();
        let mut nodes: Vec<NodeAddr> = Vec::with_capacity(total);
        let mut bad = false;
        for (index, entry) in entries.iter().enumerate() {
            match parse_sentinel_node(entry) {
                Ok((_, Scheme::Tls)) => {
                    bad = true;
                    self.problem(
                        field,
                        format!(
                            "entry {} of {total}: rediss:// is not supported for sentinels yet; give `host:port`",
                            index + 1
                        ),
                    );
                }
                Ok((node, Scheme::Plain)) if nodes.iter().any(|seen| seen.identity() == node.identity()) => {
                    bad = true;
                    self.problem(
                        field,
                        format!("`{node}` is listed twice; list each sentinel once"),
                    );
                }
                Ok((node, Scheme::Plain)) => nodes.push(node),
                Err(message) => {
                    bad = true;
                    self.problem(field, format!("entry {} of {total}: {message}", index + 1));
                }
            }
        }
        (!bad).then_some(nodes)
    }

    /// A path to a file that must exist and be readable now, so that a typo fails at start-up rather than
    /// at the first connection; `Some(None)` when unset, `None` after a problem.
    fn readable_file(&mut self, field: &Field) -> Option<Option<PathBuf>> {
        let unset = !self.merged.contains_key(field.key);
        let text = self.text(field);
        let Some(text) = text else {
            return unset.then_some(None);
        };
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Some(None);
        }
        let path = PathBuf::from(trimmed);
        let outcome = std::fs::metadata(&path).and_then(|meta| {
            if meta.is_dir() {
                Err(std::io::Error::other("it is a directory"))
            } else {
                std::fs::File::open(&path).map(drop)
            }
        });
        match outcome {
            Ok(()) => Some(Some(path)),
            Err(error) => {
                self.problem(
                    field,
                    format!(
                        "cannot read `{}`: {error}; give the path of a readable PEM file",
                        path.display()
                    ),
                );
                None
            }
        }
    }

    /// The TLS files and server name, whether or not TLS is on (the rules between settings check that).
    fn tls_files(&mut self) -> Option<TlsConfig> {
        let ca_file = self.readable_file(&fields::TLS_CA_FILE);
        let cert_file = self.readable_file(&fields::TLS_CERT_FILE);
        let key_file = self.readable_file(&fields::TLS_KEY_FILE);
        let server_name = self.server_name();
        let (ca_file, cert_file, key_file, server_name) = (ca_file?, cert_file?, key_file?, server_name?);
        let client_auth = match (cert_file, key_file) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            (Some(_), None) => {
                self.problem(
                    &fields::TLS_CERT_FILE,
                    "a client certificate needs its private key; set REDIS_TLS_KEY_FILE (file key \
                     `tls.key_file`) too, or unset the certificate",
                );
                return None;
            }
            (None, Some(_)) => {
                self.problem(
                    &fields::TLS_KEY_FILE,
                    "a private key needs its client certificate; set REDIS_TLS_CERT_FILE (file key \
                     `tls.cert_file`) too, or unset the key",
                );
                return None;
            }
        };
        Some(TlsConfig {
            ca_file,
            client_auth,
            server_name,
        })
    }

    /// `Some(None)` when unset, `None` after a problem.
    fn server_name(&mut self) -> Option<Option<String>> {
        let field = &fields::TLS_SERVER_NAME;
        let unset = !self.merged.contains_key(field.key);
        let Some(text) = self.text(field) else {
            return unset.then_some(None);
        };
        let name = text.trim();
        if name.is_empty() {
            return Some(None);
        }
        if name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '/')
        {
            self.problem(
                field,
                format!(
                    "{name:?} is not a DNS name or IP address; give the name the servers' certificates carry"
                ),
            );
            return None;
        }
        Some(Some(name.to_owned()))
    }

    /// TLS files named while TLS is off would be silently ignored, which hides a forgotten switch.
    fn tls_rules(&mut self, on: bool, files: &TlsConfig) {
        if on {
            return;
        }
        let named = [
            (&fields::TLS_CA_FILE, files.ca_file.is_some()),
            (&fields::TLS_CERT_FILE, files.client_auth.is_some()),
            (&fields::TLS_SERVER_NAME, files.server_name.is_some()),
        ];
        for (field, set) in named {
            if set {
                self.problem(
                    field,
                    "is set but TLS is off; set REDIS_TLS=true (file key `tls.enabled`) or list the nodes as \
                     rediss://host:port, or unset it",
                );
            }
        }
    }

    fn node_rules(
        &mut self,
        nodes: &[NodeAddr],
        schemes: &[Scheme],
        mode: Option<Mode>,
        sharding_enabled: Option<bool>,
    ) {
        let tls_nodes = schemes.iter().filter(|s| **s == Scheme::Tls).count();
        if tls_nodes > 0 && tls_nodes < schemes.len() {
            self.problem(
                &fields::NODES,
                format!(
                    "{tls_nodes} of {} entries use rediss:// (TLS) and the rest plain TCP; a deployment speaks \
                     one or the other, so use one scheme for every node",
                    schemes.len()
                ),
            );
        }
        match mode {
            Some(Mode::Standalone) if nodes.len() > 1 => self.problem(
                &fields::MODE,
                format!(
                    "`standalone` uses one node but REDIS_CLUSTER_NODES lists {}; use `sharded` to spread keys over \
                     them, or list one node",
                    nodes.len()
                ),
            ),
            Some(Mode::Sharded) if nodes.len() < 2 => self.problem(
                &fields::MODE,
                "`sharded` spreads keys over several standalone nodes but REDIS_CLUSTER_NODES lists one; list \
                 them all, or use `standalone`",
            ),
            Some(Mode::Sharded) if sharding_enabled == Some(false) => self.problem(
                &fields::SHARDING_ENABLED,
                "false contradicts REDIS_MODE `sharded`; set it to true, or choose another mode",
            ),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ClusterConfigBuilder;

    /// Builds from environment variables and returns the (env var, message) of every problem.
    fn problems(vars: &[(&str, &str)]) -> Vec<(Option<&'static str>, String)> {
        match ClusterConfigBuilder::default()
            .env_vars(vars.iter().copied())
            .build()
        {
            Ok(_) => Vec::new(),
            Err(error) => error
                .problems()
                .iter()
                .map(|p| (p.env_var(), p.message().to_owned()))
                .collect(),
        }
    }

    /// Every listed variable plus a valid node list must yield exactly one problem, on `env`, whose message
    /// contains `fragment`.
    fn check(vars: &[(&str, &str)], env: &str, fragment: &str) {
        let mut all = vec![("REDIS_CLUSTER_NODES", "a:1,b:2")];
        all.retain(|(name, _)| !vars.iter().any(|(n, _)| n == name));
        all.extend_from_slice(vars);
        let found = problems(&all);
        assert_eq!(found.len(), 1, "{vars:?}: expected one problem, got {found:?}");
        assert_eq!(found[0].0, Some(env), "{vars:?}: {found:?}");
        assert!(
            found[0].1.contains(fragment),
            "{vars:?}: `{}` lacks `{fragment}`",
            found[0].1
        );
    }

    #[test]
    fn every_validation_error() {
        let n = "REDIS_CLUSTER_NODES";
        check(&[(n, "")], n, "no nodes are listed");
        check(&[(n, " , ")], n, "no nodes are listed");
        check(
            &[(n, "a:1,b:2,")],
            n,
            "entry 3 of 3: an entry is empty; remove the doubled or trailing comma",
        );
        check(&[(n, "a:1,,b:2")], n, "entry 2 of 3: an entry is empty");
        check(&[(n, "a b:1")], n, "host `a b`");
        check(&[(n, "a:x")], n, "port `x`");
        check(&[(n, "a:1=0,b:2")], n, "entry 1 of 2: `a:1=0` has weight 0");
        check(
            &[(n, "a:1,b:2=many")],
            n,
            "entry 2 of 2: `b:2=many` has weight `many`",
        );
        check(&[(n, "a:1,b:2=2000000")], n, "above the largest weight 1000000");
        check(&[(n, "a:1=2,a:1=3")], n, "`a:1` is listed 2 times");
        check(&[(n, "a:0")], n, "port 0");
        check(&[(n, "a:70000")], n, "not a number from 1 to 65535");
        check(&[(n, "a:1,A:1")], n, "`a:1` is listed 2 times");
        check(&[(n, "ftp://a:1")], n, "scheme `ftp://`");
        check(&[(n, "redis://u:p@a:1")], n, "credentials");
        check(&[(n, "rediss://a:1,b:2")], n, "1 of 2 entries use rediss://");
        check(
            &[
                ("REDIS_TLS_CA_FILE", "/nonexistent/ca.pem"),
                ("REDIS_TLS", "true"),
            ],
            "REDIS_TLS_CA_FILE",
            "cannot read `/nonexistent/ca.pem`",
        );
        check(
            &[("REDIS_TLS_CA_FILE", "/"), ("REDIS_TLS", "true")],
            "REDIS_TLS_CA_FILE",
            "it is a directory",
        );
        let pem = tempfile::NamedTempFile::new().unwrap_or_else(|error| panic!("{error}"));
        let pem = pem
            .path()
            .to_str()
            .unwrap_or_else(|| panic!("temp path is not UTF-8"));
        check(
            &[("REDIS_TLS_CERT_FILE", pem), ("REDIS_TLS", "true")],
            "REDIS_TLS_CERT_FILE",
            "needs its private key; set REDIS_TLS_KEY_FILE",
        );
        check(
            &[("REDIS_TLS_KEY_FILE", pem), ("REDIS_TLS", "true")],
            "REDIS_TLS_KEY_FILE",
            "needs its client certificate",
        );
        check(&[("REDIS_TLS_CA_FILE", pem)], "REDIS_TLS_CA_FILE", "TLS is off");
        check(
            &[("REDIS_TLS_SERVER_NAME", "a b"), ("REDIS_TLS", "true")],
            "REDIS_TLS_SERVER_NAME",
            "not a DNS name",
        );
        check(&[("REDIS_TLS", "maybe")], "REDIS_TLS", "`maybe` is not a boolean");
        check(
            &[("REDIS_MODE", "clustered")],
            "REDIS_MODE",
            "`auto`, `cluster`, `standalone`, `sharded` or `sentinel`",
        );
        check(&[("REDIS_MODE", "standalone")], "REDIS_MODE", "lists 2");
        check(
            &[(n, "a:1"), ("REDIS_MODE", "sharded")],
            "REDIS_MODE",
            "lists one",
        );
        check(
            &[("REDIS_MODE", "sharded"), ("REDIS_ENABLE_SHARDING", "false")],
            "REDIS_ENABLE_SHARDING",
            "contradicts",
        );
        check(
            &[("REDIS_SHARDING_STRATEGY", "crc16")],
            "REDIS_SHARDING_STRATEGY",
            "`consistent-hash` or `key-range`",
        );
        check(
            &[("REDIS_CONNECTION_POOL_SIZE", "0")],
            "REDIS_CONNECTION_POOL_SIZE",
            "0 is out of range; use 1 to 1024",
        );
        check(
            &[("REDIS_CONNECTION_POOL_SIZE", "5000")],
            "REDIS_CONNECTION_POOL_SIZE",
            "use 1 to 1024",
        );
        check(
            &[("REDIS_MAX_RETRIES", "-1")],
            "REDIS_MAX_RETRIES",
            "`-1` is not a whole number",
        );
        check(
            &[("REDIS_MAX_RETRIES", "5000000000")],
            "REDIS_MAX_RETRIES",
            "out of range",
        );
        check(
            &[("REDIS_RETRY_BACKOFF_MULTIPLIER", "0")],
            "REDIS_RETRY_BACKOFF_MULTIPLIER",
            "use 1 to",
        );
        check(
            &[("REDIS_RETRY_BACKOFF_MULTIPLIER", "0.5")],
            "REDIS_RETRY_BACKOFF_MULTIPLIER",
            "not a whole number",
        );
        check(
            &[("REDIS_RETRY_BACKOFF_MULTIPLIER", "1.5")],
            "REDIS_RETRY_BACKOFF_MULTIPLIER",
            "whole factor",
        );
        check(
            &[("REDIS_RETRY_INITIAL_DELAY_MS", "0")],
            "REDIS_RETRY_INITIAL_DELAY_MS",
            "use 1 to",
        );
        check(
            &[("REDIS_RETRY_INITIAL_DELAY_MS", "5000")],
            "REDIS_RETRY_INITIAL_DELAY_MS",
            "5000 ms is above the max delay 3000 ms (REDIS_RETRY_MAX_DELAY_MS",
        );
        check(
            &[("REDIS_RETRY_MAX_DELAY_MS", "50")],
            "REDIS_RETRY_INITIAL_DELAY_MS",
            "above the max delay 50 ms",
        );
        check(
            &[("REDIS_MAX_RETRIES_READ_KEY", "x")],
            "REDIS_MAX_RETRIES_READ_KEY",
            "`x` is not a whole number",
        );
        check(
            &[("REDIS_COMMAND_TIMEOUT_MS", "0")],
            "REDIS_COMMAND_TIMEOUT_MS",
            "out of range",
        );
        check(
            &[("REDIS_COMMAND_TIMEOUT_MS", "5000")],
            "REDIS_UNRESPONSIVE_TIMEOUT_MS",
            "below the command timeout",
        );
        check(
            &[("REDIS_CONNECT_TIMEOUT_MS", "0")],
            "REDIS_CONNECT_TIMEOUT_MS",
            "out of range",
        );
        check(
            &[("REDIS_UNRESPONSIVE_TIMEOUT_MS", "0")],
            "REDIS_UNRESPONSIVE_TIMEOUT_MS",
            "out of range",
        );
        check(
            &[("REDIS_TOPOLOGY_REFRESH_INTERVAL_MS", "0")],
            "REDIS_TOPOLOGY_REFRESH_INTERVAL_MS",
            "out of range",
        );
        check(
            &[("REDIS_HEALTH_INTERVAL_MS", "0")],
            "REDIS_HEALTH_INTERVAL_MS",
            "out of range",
        );
        check(
            &[("REDIS_REPLICA_READS", "always")],
            "REDIS_REPLICA_READS",
            "`off` or `prefer`",
        );
        check(
            &[
                ("REDIS_REPLICA_READS", "prefer"),
                ("REDIS_MAX_REPLICA_LAG_MS", "0"),
            ],
            "REDIS_MAX_REPLICA_LAG_MS",
            "lets no replica serve",
        );
        check(
            &[("REDIS_REPLICA_READS", "prefer"), ("REDIS_MODE", "sharded")],
            "REDIS_REPLICA_READS",
            "needs replicas",
        );
        check(
            &[("REDIS_KEY_MAX_BYTES", "0")],
            "REDIS_KEY_MAX_BYTES",
            "out of range",
        );
        check(
            &[("REDIS_VALUE_MAX_BYTES", "0")],
            "REDIS_VALUE_MAX_BYTES",
            "out of range",
        );
        check(
            &[("REDIS_VALUE_MAX_BYTES", "1073741824")],
            "REDIS_VALUE_MAX_BYTES",
            "512 MiB",
        );
        check(
            &[("REDIS_CLUSTER_METRICS", "yep")],
            "REDIS_CLUSTER_METRICS",
            "not a boolean",
        );
        check(
            &[("REDIS_METRICS_LISTEN", "localhost:9192")],
            "REDIS_METRICS_LISTEN",
            "not a socket address",
        );
        check(
            &[("REDIS_USERNAME", "bob smith"), ("REDIS_PASSWORD", "pw")],
            "REDIS_USERNAME",
            "blanks",
        );
        check(&[("REDIS_USERNAME", "bob")], "REDIS_USERNAME", "needs a password");
        check(
            &[("REDIS_PASSWORD", "[redacted]")],
            "REDIS_PASSWORD",
            "placeholder",
        );
    }

    /// Sentinel mode: the checks of [`check`], without a REDIS_CLUSTER_NODES added.
    fn check_sentinel(vars: &[(&str, &str)], env: &str, fragment: &str) {
        let mut all = vec![
            ("REDIS_MODE", "sentinel"),
            ("REDIS_SENTINEL_NODES", "s1:26379,s2"),
            ("REDIS_SENTINEL_MASTER", "mymaster"),
        ];
        all.retain(|(name, _)| !vars.iter().any(|(n, _)| n == name));
        all.extend_from_slice(vars);
        all.retain(|(_, value)| !value.is_empty());
        let found = problems(&all);
        assert_eq!(found.len(), 1, "{vars:?}: expected one problem, got {found:?}");
        assert_eq!(found[0].0, Some(env), "{vars:?}: {found:?}");
        assert!(
            found[0].1.contains(fragment),
            "{vars:?}: `{}` lacks `{fragment}`",
            found[0].1
        );
    }

    #[test]
    fn sentinel_validation_errors() {
        let nodes = "REDIS_SENTINEL_NODES";
        let master = "REDIS_SENTINEL_MASTER";
        check_sentinel(
            &[(nodes, "")],
            nodes,
            "no sentinel is listed; set REDIS_SENTINEL_NODES",
        );
        check_sentinel(
            &[(master, "")],
            master,
            "no master name is given; set REDIS_SENTINEL_MASTER",
        );
        check_sentinel(&[(master, "my master")], master, "blanks");
        check_sentinel(&[(nodes, "s1,s1:26379")], nodes, "`s1:26379` is listed twice");
        check_sentinel(&[(nodes, "s1:x")], nodes, "entry 1 of 1: `s1:x` has port `x`");
        check_sentinel(&[(nodes, "rediss://s1")], nodes, "not supported for sentinels");
        check_sentinel(
            &[("REDIS_CLUSTER_NODES", "a:1")],
            "REDIS_CLUSTER_NODES",
            "unset REDIS_CLUSTER_NODES and list the sentinels in REDIS_SENTINEL_NODES",
        );
        check_sentinel(
            &[("REDIS_SENTINEL_USERNAME", "watcher")],
            "REDIS_SENTINEL_USERNAME",
            "set REDIS_SENTINEL_PASSWORD",
        );
        check_sentinel(
            &[("REDIS_SENTINEL_PASSWORD", "[redacted]")],
            "REDIS_SENTINEL_PASSWORD",
            "placeholder",
        );
        check(
            &[(master, "mymaster")],
            master,
            "REDIS_SENTINEL_MASTER applies only in sentinel mode but REDIS_MODE is `auto`; set REDIS_MODE to `sentinel`, or unset it",
        );
        check(
            &[("REDIS_MODE", "cluster"), (nodes, "s:1")],
            nodes,
            "REDIS_MODE is `cluster`",
        );
    }

    #[test]
    fn sentinel_mode_needs_no_cluster_nodes() {
        let config = ClusterConfigBuilder::default()
            .env_vars([
                ("REDIS_MODE", "Sentinel"),
                ("REDIS_SENTINEL_NODES", " s1 , 10.0.0.2:26380 "),
                ("REDIS_SENTINEL_MASTER", " mymaster "),
                ("REDIS_SENTINEL_USERNAME", "watcher"),
                ("REDIS_SENTINEL_PASSWORD", "s3cret"),
                ("REDIS_REPLICA_READS", "prefer"),
            ])
            .build()
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(config.mode(), Mode::Sentinel);
        assert!(config.nodes().is_empty());
        let sentinel = config.sentinel();
        let nodes: Vec<_> = sentinel.nodes.iter().map(ToString::to_string).collect();
        assert_eq!(nodes, ["s1:26379", "10.0.0.2:26380"]);
        assert_eq!(sentinel.master.as_deref(), Some("mymaster"));
        assert_eq!(sentinel.username.as_deref(), Some("watcher"));
        assert_eq!(sentinel.password.as_ref().map(Password::expose), Some("s3cret"));
        assert!(!format!("{config:?}").contains("s3cret"));
        let revealed = config.to_env_vars(crate::SecretExport::Reveal);
        assert_eq!(
            ClusterConfigBuilder::default().env_vars(revealed).build().ok(),
            Some(config.clone())
        );
        let dir = tempfile::tempdir().unwrap_or_else(|error| panic!("{error}"));
        let path = dir.path().join("sentinel.toml");
        std::fs::write(&path, config.to_toml(crate::SecretExport::Reveal))
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(
            ClusterConfigBuilder::default().file(&path).build().ok(),
            Some(config)
        );
    }

    #[test]
    fn lists_every_problem_at_once() {
        let found = problems(&[
            ("REDIS_CLUSTER_NODES", "a:0,b:1,b:1"),
            ("REDIS_CONNECTION_POOL_SIZE", "0"),
            ("REDIS_RETRY_BACKOFF_MULTIPLIER", "0.5"),
            ("REDIS_SHARDING_STRATEGY", "ring"),
            ("REDIS_MODE", "everything"),
        ]);
        let envs: Vec<_> = found.iter().filter_map(|(env, _)| *env).collect();
        assert_eq!(
            envs,
            [
                "REDIS_CLUSTER_NODES",
                "REDIS_MODE",
                "REDIS_SHARDING_STRATEGY",
                "REDIS_CONNECTION_POOL_SIZE",
                "REDIS_RETRY_BACKOFF_MULTIPLIER"
            ],
            "{found:?}"
        );
    }

    #[test]
    fn duplicates_do_not_hide_the_rules_between_settings() {
        let found = problems(&[
            ("REDIS_CLUSTER_NODES", "a:1,a:1,rediss://b:2"),
            ("REDIS_MODE", "standalone"),
        ]);
        let messages: Vec<_> = found.iter().map(|(_, message)| message.as_str()).collect();
        assert_eq!(messages.len(), 3, "{messages:#?}");
        assert!(messages[0].contains("`a:1` is listed 2 times"), "{messages:#?}");
        assert!(
            messages[1].contains("1 of 3 entries use rediss://"),
            "{messages:#?}"
        );
        assert!(messages[2].contains("lists 2"), "{messages:#?}");
    }

    #[test]
    fn weights_come_from_the_environment_and_files_alike() {
        let from_env = ClusterConfigBuilder::default()
            .env_vars([("REDIS_CLUSTER_NODES", "a:1=3, b:2 ,c:3=1")])
            .build()
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(from_env.node_weights(), &[3, 1, 1]);
        let dir = tempfile::tempdir().unwrap_or_else(|error| panic!("{error}"));
        let path = dir.path().join("cache.toml");
        std::fs::write(&path, "nodes = [\"a:1=3\", \"b:2\", \"c:3=1\"]\n")
            .unwrap_or_else(|error| panic!("{error}"));
        let from_file = ClusterConfigBuilder::default()
            .env_vars(std::iter::empty::<(&str, &str)>())
            .file(&path)
            .build()
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(from_file, from_env);
        // Weight 1 is the default and is not written out, so a rendering without weights stays as it was.
        let toml = from_env.to_toml(crate::SecretExport::Redact);
        assert!(
            toml.starts_with("nodes = [\"a:1=3\", \"b:2\", \"c:3\"]\n"),
            "{toml}"
        );
    }

    #[test]
    fn tls_settings_are_read_from_every_layer() {
        let dir = tempfile::tempdir().unwrap_or_else(|error| panic!("{error}"));
        let file = |name: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, "not parsed here").unwrap_or_else(|error| panic!("{error}"));
            path
        };
        let (ca, cert, key) = (file("ca.pem"), file("client.pem"), file("client.key"));
        let config = ClusterConfigBuilder::default()
            .env_vars([("REDIS_CLUSTER_NODES", "rediss://a:1,rediss://b:2")])
            .tls_ca_file(&ca)
            .tls_cert_file(&cert)
            .tls_key_file(&key)
            .tls_server_name("cache.internal")
            .build()
            .unwrap_or_else(|error| panic!("{error}"));
        assert!(config.tls());
        let tls = config.tls_config().unwrap_or_else(|| panic!("TLS is on"));
        assert_eq!(tls.ca_file(), Some(ca.as_path()));
        assert_eq!(tls.client_auth(), Some((cert.as_path(), key.as_path())));
        assert_eq!(tls.server_name(), Some("cache.internal"));
        // The rendering reads back to the same configuration, from the environment and from a file.
        let vars = config.to_env_vars(crate::SecretExport::Redact);
        assert!(vars.contains(&("REDIS_TLS".into(), "true".into())), "{vars:?}");
        assert_eq!(
            crate::ClusterConfig::from_env_vars(vars).ok().as_ref(),
            Some(&config)
        );
        let toml = dir.path().join("cache.toml");
        std::fs::write(&toml, config.to_toml(crate::SecretExport::Redact))
            .unwrap_or_else(|error| panic!("{error}"));
        let from_file = ClusterConfigBuilder::default()
            .env_vars(std::iter::empty::<(&str, &str)>())
            .file(&toml)
            .build()
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(from_file, config);
        // REDIS_TLS alone switches TLS on, with no files: the system's roots are trusted.
        let flag = ClusterConfigBuilder::default()
            .env_vars([("REDIS_CLUSTER_NODES", "a:1"), ("REDIS_TLS", "true")])
            .build()
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(flag.tls_config(), Some(&TlsConfig::default()));
        let plain = ClusterConfigBuilder::default()
            .env_vars([("REDIS_CLUSTER_NODES", "a:1")])
            .build()
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(plain.tls_config(), None);
    }

    #[test]
    fn accepted_spellings() {
        let config = ClusterConfigBuilder::default()
            .env_vars([
                ("REDIS_CLUSTER_NODES", " a:1 , redis://B:2/ "),
                ("REDIS_MODE", "Cluster"),
                ("REDIS_ENABLE_SHARDING", "OFF"),
                ("REDIS_RETRY_BACKOFF_MULTIPLIER", "3.0"),
                ("REDIS_CLUSTER_METRICS", "1"),
                ("REDIS_USERNAME", " bob "),
                ("REDIS_PASSWORD", " spaced "),
            ])
            .build()
            .unwrap_or_else(|error| panic!("{error}"));
        let nodes: Vec<_> = config.nodes().iter().map(ToString::to_string).collect();
        assert_eq!(nodes, ["a:1", "B:2"]);
        assert_eq!(config.mode(), Mode::Cluster);
        assert!(!config.sharding().enabled);
        assert_eq!(config.retry().backoff_multiplier, 3);
        assert!(config.metrics().enabled);
        assert_eq!(config.username(), Some("bob"));
        assert_eq!(config.password().map(Password::expose), Some(" spaced "));
    }
}
