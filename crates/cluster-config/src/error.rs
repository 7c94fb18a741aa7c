//! The crate's error type and the problems it lists.

use std::fmt;
use std::path::PathBuf;

use crate::fields::Field;
use crate::settings::{Mode, ServerKind};

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration has one or more problems; each names the environment variable or file key
    /// to fix. Validation collects every problem before returning, so one round of fixes suffices.
    #[error("invalid redis cluster configuration, {} to fix:{}", count(.problems.len()), list(.problems))]
    Invalid {
        /// Every problem found, in setting order.
        problems: Vec<Problem>,
    },
    /// `mode` asked for one kind of deployment and the nodes turned out to be another.
    #[error(
        "REDIS_MODE (file key `mode`) is `{configured}` but the nodes answer as {found}; {}",
        mismatch_hint(*.configured, *.found)
    )]
    ModeMismatch {
        /// The configured mode.
        configured: Mode,
        /// What the nodes are.
        found: ServerKind,
    },
    /// The nodes are several standalone servers, `mode` is `auto` and sharding is switched off, so there
    /// is no way to use them all.
    #[error(
        "the {nodes} nodes in REDIS_CLUSTER_NODES are standalone servers and REDIS_ENABLE_SHARDING (file key \
         `sharding.enabled`) is false; set it to true to spread keys over them, or list one node"
    )]
    ShardingDisabled {
        /// How many standalone nodes were listed.
        nodes: usize,
    },
}

impl Error {
    /// Every problem listed by an [`Error::Invalid`]; empty for other variants.
    pub fn problems(&self) -> &[Problem] {
        match self {
            Self::Invalid { problems } => problems,
            _ => &[],
        }
    }
}

fn count(n: usize) -> String {
    if n == 1 {
        "1 problem".to_owned()
    } else {
        format!("{n} problems")
    }
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|problem| format!("\n  - {problem}"))
        .collect()
}

fn mismatch_hint(configured: Mode, found: ServerKind) -> &'static str {
    match (configured, found) {
        (Mode::Sentinel, _) => {
            "sentinel mode serves a standalone primary and its replicas, but the sentinels named a cluster node; \
             point REDIS_SENTINEL_NODES at sentinels that watch standalone servers, or use `cluster` mode"
        }
        (_, ServerKind::Cluster) => {
            "set REDIS_MODE to `cluster` or `auto`, or list standalone servers in REDIS_CLUSTER_NODES"
        }
        (_, ServerKind::Standalone) => {
            "set REDIS_MODE to `standalone`, `sharded` or `auto`, or list cluster nodes in REDIS_CLUSTER_NODES"
        }
    }
}

/// Where the value of a setting came from.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Origin {
    /// Nothing set it, and it has no default.
    Unset,
    /// The built-in default.
    Default,
    /// A TOML or YAML file.
    File(PathBuf),
    /// An environment variable (from the process, or given to `env_vars`).
    Environment,
    /// A [`ClusterConfigBuilder`](crate::ClusterConfigBuilder) method.
    Builder,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unset => f.write_str("unset"),
            Self::Default => f.write_str("default value"),
            Self::File(path) => write!(f, "from file {}", path.display()),
            Self::Environment => f.write_str("from the environment"),
            Self::Builder => f.write_str("from the builder"),
        }
    }
}

/// One thing wrong with a configuration: which setting, where its value came from, and what to do.
///
/// Messages never contain the password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    env_var: Option<&'static str>,
    file_key: Option<&'static str>,
    origin: Option<Origin>,
    message: String,
}

impl Problem {
    pub(crate) fn new(field: &Field, origin: Origin, message: impl Into<String>) -> Self {
        Self {
            env_var: Some(field.env),
            file_key: Some(field.key),
            origin: Some(origin),
            message: message.into(),
        }
    }

    /// A problem that belongs to no single setting: an unreadable file, an unknown file key, a node
    /// address parsed outside a configuration.
    pub(crate) fn general(message: impl Into<String>) -> Self {
        Self {
            env_var: None,
            file_key: None,
            origin: None,
            message: message.into(),
        }
    }

    /// The environment variable to fix, if the problem belongs to a setting.
    pub fn env_var(&self) -> Option<&'static str> {
        self.env_var
    }

    /// The file key to fix, if the problem belongs to a setting.
    pub fn file_key(&self) -> Option<&'static str> {
        self.file_key
    }

    /// Where the offending value came from, if the problem belongs to a setting.
    pub fn origin(&self) -> Option<&Origin> {
        self.origin.as_ref()
    }

    /// What is wrong and how to fix it, without the setting's name.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.env_var, self.file_key, &self.origin) {
            (Some(env), Some(key), Some(origin)) => {
                write!(f, "{env} (file key `{key}`, {origin}): {}", self.message)
            }
            _ => f.write_str(&self.message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fields;

    fn check(error: Error, expected: &str) {
        assert_eq!(error.to_string(), expected);
    }

    #[test]
    fn messages() {
        check(
            Error::Invalid {
                problems: vec![Problem::new(
                    &fields::POOL_SIZE,
                    Origin::Environment,
                    "must be at least 1",
                )],
            },
            "invalid redis cluster configuration, 1 problem to fix:\n  - REDIS_CONNECTION_POOL_SIZE (file key \
             `pool_size`, from the environment): must be at least 1",
        );
        check(
            Error::Invalid {
                problems: vec![
                    Problem::general("unknown file key `x`"),
                    Problem::new(&fields::MODE, Origin::File("a.toml".into()), "bad"),
                ],
            },
            "invalid redis cluster configuration, 2 problems to fix:\n  - unknown file key `x`\n  - REDIS_MODE \
             (file key `mode`, from file a.toml): bad",
        );
        check(
            Error::ModeMismatch {
                configured: Mode::Cluster,
                found: ServerKind::Standalone,
            },
            "REDIS_MODE (file key `mode`) is `cluster` but the nodes answer as standalone servers; set REDIS_MODE \
             to `standalone`, `sharded` or `auto`, or list cluster nodes in REDIS_CLUSTER_NODES",
        );
        check(
            Error::ShardingDisabled { nodes: 3 },
            "the 3 nodes in REDIS_CLUSTER_NODES are standalone servers and REDIS_ENABLE_SHARDING (file key \
             `sharding.enabled`) is false; set it to true to spread keys over them, or list one node",
        );
    }
}
