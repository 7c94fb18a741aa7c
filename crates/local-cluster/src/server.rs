//! Finding `redis-server`, picking free loopback ports and writing node config files.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU16, Ordering};

use crate::Error;

/// The redis-server binary: `REDIS_SERVER_BIN` when set, else `redis-server` found on `PATH`.
pub(crate) fn redis_server_binary() -> Result<PathBuf, Error> {
    let wanted = std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".to_string());
    let candidate = Path::new(&wanted);
    if candidate.components().count() > 1 {
        return if candidate.is_file() {
            Ok(candidate.to_path_buf())
        } else {
            Err(Error::RedisServerMissing { binary: wanted })
        };
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(&wanted))
        .find(|p| p.is_file())
        .ok_or(Error::RedisServerMissing { binary: wanted })
}

/// The redis-sentinel binary: `REDIS_SENTINEL_BIN` when set, else `redis-sentinel` found on `PATH`
/// (Debian's `redis-sentinel` package; it is the same program as `redis-server --sentinel`).
pub(crate) fn redis_sentinel_binary() -> Result<PathBuf, Error> {
    let wanted = std::env::var("REDIS_SENTINEL_BIN").unwrap_or_else(|_| "redis-sentinel".to_string());
    find_binary(&wanted).ok_or(Error::RedisSentinelMissing { binary: wanted })
}

/// `wanted` itself when it is a path to a file, else the first `wanted` on `PATH`.
fn find_binary(wanted: &str) -> Option<PathBuf> {
    let candidate = Path::new(wanted);
    if candidate.components().count() > 1 {
        return candidate.is_file().then(|| candidate.to_path_buf());
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(wanted))
        .find(|p| p.is_file())
}

/// Hands out loopback ports that were free a moment ago.
///
/// Each process starts at its own pseudo-random offset so that parallel test processes rarely meet; a
/// port that was taken in the meantime makes the node fail to bind, and the caller retries on another.
pub(crate) fn free_port(with_cluster_bus: bool) -> Result<u16, Error> {
    static NEXT: OnceLock<AtomicU16> = OnceLock::new();
    // Client ports live in 20000..40000 so that the cluster bus port (+10000) stays below 50000,
    // away from the kernel's ephemeral range (32768.. on Linux is partly overlapped; bind checks below
    // catch any collision).
    const LOW: u16 = 20_000;
    const SPAN: u16 = 20_000;
    let next = NEXT.get_or_init(|| {
        let seed = std::process::id() as u64
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos() as u64)
                .unwrap_or(0);
        AtomicU16::new((seed % SPAN as u64) as u16)
    });
    for _ in 0..SPAN {
        let offset = next.fetch_add(1, Ordering::Relaxed) % SPAN;
        let port = LOW + offset;
        if bindable(port) && (!with_cluster_bus || bindable(port + 10_000)) {
            return Ok(port);
        }
    }
    Err(Error::Invalid(
        "no free loopback port pair found in 20000..50000".into(),
    ))
}

fn bindable(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// Settings written into every node's `redis.conf`, in order; a later line for the same directive wins.
///
/// A test tool's settings, so no builder: start from [`NodeConfig::test_defaults`] (also its
/// [`Default`]) and change directives with [`NodeConfig::set`], which are `redis.conf` lines that
/// `redis-server` itself checks at start-up.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    lines: Vec<(String, String)>,
}

impl NodeConfig {
    /// The settings the tests and `cargo xtask cluster-up` use.
    ///
    /// `cluster-node-timeout 2000` makes failovers quick; `cluster-require-full-coverage no` keeps the
    /// healthy shards serving while one is down; `repl-diskless-sync-delay 0` links replicas at once.
    pub fn test_defaults() -> NodeConfig {
        let lines = [
            ("cluster-node-timeout", "2000"),
            ("cluster-require-full-coverage", "no"),
            ("repl-diskless-sync-delay", "0"),
            ("enable-debug-command", "local"),
            ("save", "\"\""),
            ("appendonly", "no"),
        ];
        NodeConfig {
            lines: lines
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// Sets (or overrides) one directive, e.g. `("appendonly", "yes")` or `("user", "cache on >pw ~* +@all")`.
    ///
    /// Directives that may repeat (`user`, `save`, `rename-command`) are appended; others replace an
    /// earlier value.
    pub fn set(&mut self, directive: impl Into<String>, value: impl Into<String>) -> &mut Self {
        let directive = directive.into();
        let repeatable = matches!(directive.as_str(), "user" | "rename-command");
        if !repeatable {
            self.lines.retain(|(k, _)| *k != directive);
        }
        self.lines.push((directive, value.into()));
        self
    }

    /// The value of a directive, if set.
    pub fn get(&self, directive: &str) -> Option<&str> {
        self.lines
            .iter()
            .rev()
            .find(|(k, _)| k == directive)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn render(&self, port: u16, dir: &Path, cluster: bool) -> String {
        let mut out = String::new();
        out.push_str(&format!("port {port}\nbind 127.0.0.1\ndir {}\n", dir.display()));
        out.push_str(&format!("logfile {}\n", dir.join("redis.log").display()));
        out.push_str("daemonize no\n");
        if cluster {
            out.push_str("cluster-enabled yes\ncluster-config-file nodes.conf\n");
        }
        for (k, v) in &self.lines {
            out.push_str(&format!("{k} {v}\n"));
        }
        out
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig::test_defaults()
    }
}

/// The last `n` lines of a log file, or a note that it could not be read.
pub(crate) fn log_tail(path: &Path, n: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(e) => format!("(log unreadable: {e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_override_and_repeat() {
        let mut s = NodeConfig::test_defaults();
        s.set("appendonly", "yes").set("user", "a on").set("user", "b on");
        let text = s.render(7000, Path::new("/tmp/x"), true);
        assert_eq!(text.matches("appendonly").count(), 1, "{text}");
        assert!(text.contains("appendonly yes"));
        assert_eq!(text.matches("\nuser ").count(), 2, "{text}");
        assert!(text.contains("cluster-enabled yes"));
        assert!(
            !NodeConfig::test_defaults()
                .render(1, Path::new("/d"), false)
                .contains("cluster-enabled")
        );
    }

    #[test]
    fn free_ports_differ_and_bind() {
        let a = free_port(true).unwrap();
        let b = free_port(true).unwrap();
        assert_ne!(a, b);
        assert!(bindable(a) && bindable(a + 10_000));
    }
}
