//! The crate's one error type.

#[cfg(feature = "prometheus")]
use std::net::SocketAddr;

/// What can go wrong in `health`.
///
/// A node that does not answer is not an error: it is a fact recorded in the snapshot (and usually an
/// alert). Errors are for configuration mistakes and for the metrics endpoint.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A threshold or option is out of range.
    #[error("invalid health setting {name}: {problem}")]
    Invalid {
        /// The field, e.g. `thresholds.memory_used_max_ratio`.
        name: &'static str,
        /// What is wrong and what would be accepted.
        problem: String,
    },
    /// A node's reply could not be read as the reply of that command.
    #[error("unreadable {command} reply: {detail}; is this node a Redis server of version 7 or later?")]
    Reply {
        /// The command, e.g. `CLUSTER NODES`.
        command: &'static str,
        /// What was wrong, quoting the reply.
        detail: String,
    },
    /// Another metrics recorder is already installed in this process.
    #[cfg(feature = "prometheus")]
    #[error(
        "a metrics recorder is already installed in this process; call health::install_prometheus once, at \
         start-up, and nothing else that installs a global recorder"
    )]
    RecorderAlreadyInstalled,
    /// The Prometheus endpoint could not be started.
    #[cfg(feature = "prometheus")]
    #[error(
        "cannot serve Prometheus metrics on {addr}: {detail}; pick a free address (REDIS_METRICS_LISTEN)"
    )]
    Listen {
        /// The address asked for.
        addr: SocketAddr,
        /// Why it failed.
        detail: String,
    },
}
