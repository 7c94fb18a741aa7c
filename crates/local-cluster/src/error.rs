use std::path::PathBuf;
use std::time::Duration;

/// What can go wrong while starting, driving or stopping local Redis processes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The `redis-server` binary is not installed (or not on `PATH`).
    #[error(
        "redis-server was not found (looked for `{binary}` on PATH); install it with \
         `sudo apt-get install -y redis-server` (Debian/Ubuntu package `redis-server`, Redis 7.0+), \
         or point REDIS_SERVER_BIN at the binary"
    )]
    RedisServerMissing {
        /// The binary name or path that was looked for.
        binary: String,
    },
    /// The `redis-sentinel` binary is not installed (or not on `PATH`).
    #[error(
        "redis-sentinel was not found (looked for `{binary}` on PATH); install it with \
         `sudo apt-get install -y redis-sentinel` (Debian/Ubuntu package `redis-sentinel`), or point \
         REDIS_SENTINEL_BIN at the binary"
    )]
    RedisSentinelMissing {
        /// The binary name or path that was looked for.
        binary: String,
    },
    /// A `redis-server` process exited or never answered while starting.
    #[error("redis-server on 127.0.0.1:{port} did not start: {reason}; last lines of {log}:\n{log_tail}")]
    Start {
        /// The port the node was to listen on.
        port: u16,
        /// Why the start is considered failed.
        reason: String,
        /// The node's log file.
        log: PathBuf,
        /// The last lines of that log file.
        log_tail: String,
    },
    /// A wait for a cluster condition ran past its deadline.
    #[error("timed out after {waited:?} waiting for {what}; last seen: {last_seen}")]
    Timeout {
        /// What was waited for.
        what: String,
        /// How long it waited.
        waited: Duration,
        /// The last state observed, to tell what was missing.
        last_seen: String,
    },
    /// A Redis command sent to a node failed: no connection, no reply in time, or an error reply.
    #[error("`{command}` on {addr} failed: {detail}")]
    Command {
        /// The node's address.
        addr: String,
        /// The command, first words only.
        command: String,
        /// What went wrong: the connection's failure or the server's error reply.
        detail: String,
    },
    /// A node's reply could not be understood.
    #[error("unexpected reply from {addr} to `{command}`: {detail}")]
    Reply {
        /// The node's address.
        addr: String,
        /// The command.
        command: String,
        /// What was wrong with the reply.
        detail: String,
    },
    /// A file-system or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The requested cluster shape or operation makes no sense.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// A signal could not be delivered to a node process.
    #[error("could not send {signal} to pid {pid}: {source}")]
    Signal {
        /// The signal's name.
        signal: &'static str,
        /// The target process.
        pid: u32,
        /// The OS error.
        #[source]
        source: nix::Error,
    },
    /// The state file of a detached cluster is missing or unreadable.
    #[error("state file {path}: {detail}")]
    State {
        /// The state file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
