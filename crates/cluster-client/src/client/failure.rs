//! How one attempt on one node failed (fred's error, classified), and what a failure becomes as the
//! public [`Error`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use fred::prelude::*;

use super::Inner;
use crate::Error;
use crate::node::NodeHandle;
use crate::topology::reported_addr;

/// How one attempt on one node ended, when it did not succeed.
#[derive(Debug)]
pub(crate) enum Failure {
    Moved {
        addr: String,
    },
    Ask {
        addr: String,
    },
    /// TRYAGAIN, CLUSTERDOWN, LOADING: the same node may succeed shortly.
    Retry(String),
    /// The connection failed or the node is known to be down.
    Down(String),
    Timeout,
    Server(String),
}

pub(crate) fn classify(error: &fred::error::Error, node_host: &str) -> Failure {
    let details = error.details();
    // `MOVED 3999 127.0.0.1:7001`, `MOVED 3999 ::1:7001` (Redis prints an IPv6 ip raw), or
    // `MOVED 3999 :7001` (the node does not know its own ip: it is the one that answered).
    let redirect_target = || {
        let target = details.split_whitespace().nth(2).unwrap_or_default();
        reported_addr(target, node_host).unwrap_or_else(|| target.to_string())
    };
    match error.kind() {
        ErrorKind::Cluster if error.is_moved() => Failure::Moved {
            addr: redirect_target(),
        },
        ErrorKind::Cluster if error.is_ask() => Failure::Ask {
            addr: redirect_target(),
        },
        ErrorKind::Cluster => Failure::Retry(details.to_string()),
        ErrorKind::Timeout => Failure::Timeout,
        ErrorKind::IO | ErrorKind::Canceled | ErrorKind::Routing => Failure::Down(details.to_string()),
        _ if details.starts_with("TRYAGAIN") || details.starts_with("LOADING") => {
            Failure::Retry(details.to_string())
        }
        // A primary demoted by Sentinel refuses writes with READONLY (nothing was written). It is no
        // longer the primary: the node counts as down for this call, which asks for a refresh, so the
        // next call goes to the primary the sentinels name now.
        _ if details.starts_with("READONLY") => Failure::Down(details.to_string()),
        // fred's own words when a command could not be written to a connection that just broke.
        _ if details.contains("not initialized")
            || details.contains("Failed to send command")
            || details.contains("Failed to route command") =>
        {
            Failure::Down(details.to_string())
        }
        _ => Failure::Server(details.to_string()),
    }
}

impl Failure {
    /// The one mapping from a failure that ends a call to the public [`Error`]. A timeout or a broken
    /// connection counts against the node; `after` is how long the call ran (or the timeout it had).
    ///
    /// Redirects become [`Error::Server`] saying where they pointed: only the routing loop follows
    /// them, and the batch module retries a key whose error says `redirected` through that loop.
    pub(crate) fn into_error(self, node: &NodeHandle, command: &str, after: Duration) -> Error {
        if matches!(self, Failure::Timeout | Failure::Down(_)) {
            node.record_error();
        }
        self.into_error_at(&node.addr, command, after)
    }

    /// The same mapping for a connection outside the routed node handles (a probe, an admin
    /// connection), which keeps no per-node error count.
    pub(crate) fn into_error_at(self, node: &str, command: &str, after: Duration) -> Error {
        let node = node.to_string();
        let command = command.to_string();
        match self {
            Failure::Timeout => Error::Timeout { command, node, after },
            Failure::Down(message) => Error::Connection {
                node,
                command,
                message,
            },
            Failure::Server(message) | Failure::Retry(message) => Error::Server {
                node,
                command,
                message,
            },
            Failure::Moved { addr } | Failure::Ask { addr } => Error::Server {
                node,
                command,
                message: format!("redirected to {addr}"),
            },
        }
    }
}

impl Inner {
    /// A failed call on `node` as the public [`Error`]; a broken connection also marks the node down
    /// (a `NodeDown` event and a topology refresh).
    pub(super) fn to_error(
        &self,
        node: &Arc<NodeHandle>,
        command: &str,
        error: &fred::error::Error,
        started: Instant,
    ) -> Error {
        let failure = classify(error, node.host());
        let down = matches!(failure, Failure::Down(_));
        let error = failure.into_error(node, command, started.elapsed());
        if down {
            self.node_failed(node);
        }
        error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(kind: ErrorKind, details: &str, expected: &str) {
        let failure = classify(&fred::error::Error::new(kind, details.to_string()), "10.0.0.9");
        assert_eq!(format!("{failure:?}"), expected, "{details}");
    }

    #[test]
    fn classifies_server_replies() {
        check(
            ErrorKind::Cluster,
            "MOVED 3999 127.0.0.1:6381",
            r#"Moved { addr: "127.0.0.1:6381" }"#,
        );
        check(
            ErrorKind::Cluster,
            "MOVED 3999 :6381",
            r#"Moved { addr: "10.0.0.9:6381" }"#,
        );
        check(
            ErrorKind::Cluster,
            "MOVED 3999 ::1:6381",
            r#"Moved { addr: "[::1]:6381" }"#,
        );
        check(
            ErrorKind::Cluster,
            "ASK 3999 2001:db8::7:6381",
            r#"Ask { addr: "[2001:db8::7]:6381" }"#,
        );
        check(
            ErrorKind::Cluster,
            "ASK 3999 127.0.0.1:6381",
            r#"Ask { addr: "127.0.0.1:6381" }"#,
        );
        check(
            ErrorKind::Cluster,
            "CLUSTERDOWN The cluster is down",
            r#"Retry("CLUSTERDOWN The cluster is down")"#,
        );
        check(
            ErrorKind::Unknown,
            "TRYAGAIN Multiple keys request during rehashing of slot",
            r#"Retry("TRYAGAIN Multiple keys request during rehashing of slot")"#,
        );
        check(
            ErrorKind::Unknown,
            "LOADING Redis is loading the dataset in memory",
            r#"Retry("LOADING Redis is loading the dataset in memory")"#,
        );
        check(
            ErrorKind::Canceled,
            "Connection closed unexpectedly.",
            r#"Down("Connection closed unexpectedly.")"#,
        );
        check(
            ErrorKind::IO,
            "Connection reset by peer",
            r#"Down("Connection reset by peer")"#,
        );
        check(ErrorKind::Timeout, "Request timed out.", "Timeout");
        check(
            ErrorKind::InvalidArgument,
            "WRONGTYPE Operation against a key",
            r#"Server("WRONGTYPE Operation against a key")"#,
        );
        check(
            ErrorKind::Unknown,
            "NOSCRIPT No matching script.",
            r#"Server("NOSCRIPT No matching script.")"#,
        );
        check(
            ErrorKind::Unknown,
            "READONLY You can't write against a read only replica.",
            r#"Down("READONLY You can't write against a read only replica.")"#,
        );
    }

    #[tokio::test]
    async fn one_mapping_from_failure_to_error() {
        // No server listens on port 1: the handle only gives the mapping a node to name and count.
        let config = cluster_config::ClusterConfig::builder()
            .nodes(["127.0.0.1:1"])
            .build()
            .unwrap();
        let node = NodeHandle::open("127.0.0.1:1", &config).unwrap();
        let after = Duration::from_millis(7);
        let cases = [
            (
                Failure::Timeout,
                "Timeout { command: \"GET\", node: \"127.0.0.1:1\", after: 7ms }",
            ),
            (
                Failure::Down("reset".into()),
                "Connection { node: \"127.0.0.1:1\", command: \"GET\", message: \"reset\" }",
            ),
            (
                Failure::Server("WRONGTYPE x".into()),
                "Server { node: \"127.0.0.1:1\", command: \"GET\", message: \"WRONGTYPE x\" }",
            ),
            (
                Failure::Retry("TRYAGAIN x".into()),
                "Server { node: \"127.0.0.1:1\", command: \"GET\", message: \"TRYAGAIN x\" }",
            ),
            (
                Failure::Moved {
                    addr: "127.0.0.1:2".into(),
                },
                "Server { node: \"127.0.0.1:1\", command: \"GET\", message: \"redirected to 127.0.0.1:2\" }",
            ),
            (
                Failure::Ask {
                    addr: "127.0.0.1:2".into(),
                },
                "Server { node: \"127.0.0.1:1\", command: \"GET\", message: \"redirected to 127.0.0.1:2\" }",
            ),
        ];
        for (failure, expected) in cases {
            let error = failure.into_error(&node, "GET", after);
            assert_eq!(format!("{error:?}"), expected);
        }
        // Only the timeout and the broken connection count against the node.
        assert_eq!(node.stats(false).errors, 2);
        node.close();
    }
}
