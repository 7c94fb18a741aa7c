//! Sentinel mode: the sentinels name the primary (`SENTINEL get-master-addr-by-name`) and its replicas
//! (`SENTINEL replicas`); `ROLE` confirms the primary before writes go there; a `+switch-master`
//! subscription on every sentinel asks for a refresh the moment a failover ends.
//!
//! The sentinels are only asked; the data nodes are served by the same per-node handles, routing,
//! replica-read lag guard and failover marks (`replaced`) as every other deployment. Sentinel
//! connections log in with the sentinel credentials, data nodes with `REDIS_USERNAME`/`REDIS_PASSWORD`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster_config::{ClusterConfig, NodeAddr, ResolvedMode, ServerKind};
use fred::prelude::*;
use fred::types::{ClusterHash, CustomCommand};
use tokio::sync::Notify;
use tokio::sync::broadcast::error::RecvError;

use super::{ClusterClient, Cmd};
use crate::Error;
use crate::fred_config::node_builder;
use crate::node::NodeHandle;
use crate::topology::{Topology, node_addr};

/// The channel on which a sentinel announces the end of a failover:
/// `<master name> <old ip> <old port> <new ip> <new port>`.
const SWITCH_MASTER: &str = "+switch-master";

/// Replica flags that mean the sentinel cannot reach the replica, which then serves no reads.
const UNUSABLE_REPLICA_FLAGS: [&str; 3] = ["s_down", "o_down", "disconnected"];

/// What one sentinel says about the master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SentinelView {
    /// The primary's `host:port`.
    pub(super) primary: String,
    /// Replicas the sentinel does not flag as down or disconnected.
    pub(super) replicas: Vec<String>,
}

/// Connections to the sentinels: one for questions and one subscribed to `+switch-master`, each.
pub(crate) struct Sentinels {
    master: String,
    asked: Vec<(String, Client)>,
    watchers: Vec<Client>,
    /// Tasks that follow the subscriptions; aborted when the client closes.
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Sentinels {
    /// Opens connections to every configured sentinel (reconnecting in the background, like node
    /// connections), with the sentinel credentials.
    fn open(config: &ClusterConfig) -> Result<Sentinels, Error> {
        let sentinel = config.sentinel();
        let master = sentinel.master.clone().unwrap_or_default();
        let build = |addr: &NodeAddr| -> Result<Client, Error> {
            let mut builder = node_builder(config, addr)?;
            builder.with_config(|c| {
                c.username = sentinel.username.clone();
                c.password = sentinel.password.as_ref().map(|p| p.expose().to_owned());
            });
            let client = builder.build().map_err(|e| Error::Connection {
                node: addr.to_string(),
                command: "connect".into(),
                message: e.details().to_string(),
            })?;
            client.connect();
            Ok(client)
        };
        let mut asked = Vec::with_capacity(sentinel.nodes.len());
        let mut watchers = Vec::with_capacity(sentinel.nodes.len());
        for addr in &sentinel.nodes {
            asked.push((addr.to_string(), build(addr)?));
            watchers.push(build(addr)?);
        }
        Ok(Sentinels {
            master,
            asked,
            watchers,
            tasks: Mutex::new(Vec::new()),
        })
    }

    /// The master name the sentinels are asked about.
    pub(super) fn master(&self) -> &str {
        &self.master
    }

    fn addrs(&self) -> String {
        self.asked
            .iter()
            .map(|(addr, _)| addr.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Waits up to `timeout` for every sentinel's first connection, all at once.
    async fn wait_connected(&self, timeout: Duration) {
        let waits = self
            .asked
            .iter()
            .map(|(_, client)| tokio::time::timeout(timeout, client.wait_for_connect()));
        futures::future::join_all(waits).await;
    }

    /// Asks the sentinels in order; the first that names the primary is believed (no quorum: the
    /// sentinels agreed among themselves when they failed over, and `ROLE` confirms the answer). A
    /// sentinel that is down, slow or errs is skipped.
    pub(super) async fn ask(&self, timeout: Duration) -> Result<SentinelView, Error> {
        let mut last = String::from("no sentinel is configured");
        let mut unknown = Vec::new();
        for (addr, client) in &self.asked {
            if !client.is_connected() {
                last = format!("{addr} is not connected");
                continue;
            }
            let reply = sentinel_command(client, "get-master-addr-by-name", &self.master, timeout).await;
            let primary = match reply.map(|value| parse_master_addr(&value)) {
                Ok(Ok(Some(primary))) => primary,
                Ok(Ok(None)) => {
                    unknown.push(addr.clone());
                    continue;
                }
                Ok(Err(detail)) => {
                    last = format!("{addr} answered get-master-addr-by-name with {detail}");
                    continue;
                }
                Err(error) => {
                    last = format!("{addr}: {}", error.details());
                    continue;
                }
            };
            // Without the replica list the primary is still right; reads then stay on it.
            let replicas = match sentinel_command(client, "replicas", &self.master, timeout).await {
                Ok(value) => parse_replicas(&value),
                Err(error) => {
                    tracing::debug!(sentinel = %addr, error = %error.details(), "SENTINEL replicas failed");
                    Vec::new()
                }
            };
            return Ok(SentinelView { primary, replicas });
        }
        if unknown.is_empty() {
            Err(Error::NoSentinelReachable {
                master: self.master.clone(),
                tried: self.addrs(),
                last,
            })
        } else {
            Err(Error::UnknownSentinelMaster {
                master: self.master.clone(),
                answered: unknown.join(","),
            })
        }
    }

    /// Subscribes every watcher connection to `+switch-master` (again after each reconnect, which may
    /// have lost a message, so a reconnect asks for a refresh too) and wakes `wanted` when this
    /// master switches.
    fn watch(&self, wanted: Arc<Notify>) {
        let mut tasks = Vec::with_capacity(self.watchers.len());
        for client in &self.watchers {
            let client = client.clone();
            let wanted = wanted.clone();
            let master = self.master.clone();
            tasks.push(tokio::spawn(async move {
                let mut messages = client.message_rx();
                let mut reconnects = client.reconnect_rx();
                // Connected before this task started: the first reconnect event is already gone.
                if client.is_connected() {
                    let _ = client.subscribe(SWITCH_MASTER).await;
                }
                loop {
                    tokio::select! {
                        message = messages.recv() => match message {
                            Ok(message) => {
                                let text = message.value.as_string().unwrap_or_default();
                                if message.channel == SWITCH_MASTER && switch_is_for(&text, &master) {
                                    tracing::info!(switch = %text, "sentinel announced +switch-master");
                                    wanted.notify_one();
                                }
                            }
                            Err(RecvError::Lagged(_)) => wanted.notify_one(),
                            Err(RecvError::Closed) => return,
                        },
                        reconnect = reconnects.recv() => match reconnect {
                            Ok(_) | Err(RecvError::Lagged(_)) => {
                                let _ = client.subscribe(SWITCH_MASTER).await;
                                wanted.notify_one();
                            }
                            Err(RecvError::Closed) => return,
                        },
                    }
                }
            }));
        }
        if let Ok(mut held) = self.tasks.lock() {
            held.extend(tasks);
        }
    }

    /// Stops the subscriptions and closes every sentinel connection.
    pub(crate) fn close(&self) {
        if let Ok(mut tasks) = self.tasks.lock() {
            for task in tasks.drain(..) {
                task.abort();
            }
        }
        for client in self.asked.iter().map(|(_, c)| c).chain(&self.watchers) {
            let client = client.clone();
            if tokio::runtime::Handle::try_current().is_ok() {
                tokio::spawn(async move {
                    let _ = client.quit().await;
                });
            }
        }
    }
}

impl Drop for Sentinels {
    fn drop(&mut self) {
        self.close();
    }
}

/// `SENTINEL <subcommand> <master>` with a timeout, on one attempt.
async fn sentinel_command(
    client: &Client,
    subcommand: &'static str,
    master: &str,
    timeout: Duration,
) -> Result<Value, fred::error::Error> {
    let options = Options {
        timeout: Some(timeout),
        fail_fast: true,
        max_attempts: Some(1),
        ..Options::default()
    };
    let command = CustomCommand::new_static("SENTINEL", ClusterHash::Random, false);
    client
        .with_options(&options)
        .custom::<Value, _>(command, vec![subcommand.to_owned(), master.to_owned()])
        .await
}

/// Asks `node` for its `ROLE`; only a node that answers `master` gets writes.
pub(super) async fn confirm_primary(node: &NodeHandle, master: &str, timeout: Duration) -> Result<(), Error> {
    let reply = super::routing::raw::<Value>(node, Cmd::custom("ROLE", vec![]), timeout).await?;
    match role_of(&reply) {
        Some(role) if role == "master" => Ok(()),
        role => Err(Error::SentinelPrimaryUnconfirmed {
            master: master.to_owned(),
            node: node.addr.clone(),
            role: role.unwrap_or_else(|| "an unreadable reply".into()),
        }),
    }
}

impl ClusterClient {
    /// Sentinel mode's connect: ask the sentinels for the primary and replicas, confirm the primary,
    /// then serve it like any deployment, with the refresh loop asking the sentinels.
    pub(super) async fn connect_sentinel(config: ClusterConfig) -> Result<ClusterClient, Error> {
        let sentinels = Arc::new(Sentinels::open(&config)?);
        let connect_timeout = config.timeouts().connect;
        sentinels.wait_connected(connect_timeout).await;
        let view = match sentinels.ask(connect_timeout).await {
            Ok(view) => view,
            Err(error) => {
                sentinels.close();
                return Err(error);
            }
        };
        let master = sentinels.master.clone();
        let primary = match NodeHandle::open(&view.primary, &config) {
            Ok(primary) => primary,
            Err(error) => {
                sentinels.close();
                return Err(error);
            }
        };
        let confirmed = if primary.wait_connected(connect_timeout).await {
            confirm_primary(&primary, &master, connect_timeout).await
        } else {
            Err(Error::Connection {
                node: view.primary.clone(),
                command: "connect".into(),
                message: format!(
                    "the primary the sentinels named did not connect within {connect_timeout:?}"
                ),
            })
        };
        if let Err(error) = confirmed {
            primary.close();
            sentinels.close();
            return Err(error);
        }
        // The sentinels watch standalone servers: a cluster node here is refused with the usual message.
        let mode = config.resolve_mode(ServerKind::Standalone)?;
        debug_assert_eq!(mode, ResolvedMode::Sentinel);
        let nodes = HashMap::from([(primary.addr.clone(), primary)]);
        let topology = Topology::sentinel(view.primary, view.replicas);
        let client =
            ClusterClient::start(config, Vec::new(), nodes, topology, mode, Some(sentinels.clone())).await?;
        sentinels.watch(client.inner.refresh_wanted.clone());
        Ok(client)
    }
}

/// The `host:port` in a `get-master-addr-by-name` reply; `None` for nil (the sentinel monitors no
/// such master).
fn parse_master_addr(value: &Value) -> Result<Option<String>, String> {
    match value {
        Value::Null => Ok(None),
        Value::Array(parts) => match parts.as_slice() {
            [host, port] => {
                let host = host.as_string().ok_or("a host that is not text")?;
                let port = port
                    .as_string()
                    .and_then(|p| p.parse::<u16>().ok())
                    .ok_or("a port that is not a number")?;
                Ok(Some(node_addr(&host, port)))
            }
            other => Err(format!("{} elements instead of host and port", other.len())),
        },
        _ => Err("a reply that is not a host and port".into()),
    }
}

/// The usable replicas in a `SENTINEL replicas` reply: each entry is a flat `[field, value, ...]` list
/// (RESP2) or a map (RESP3); entries flagged down or disconnected are left out.
fn parse_replicas(value: &Value) -> Vec<String> {
    let Value::Array(entries) = value else {
        return Vec::new();
    };
    let mut replicas = Vec::new();
    for entry in entries {
        let fields: Vec<(String, String)> = match entry {
            Value::Array(flat) => flat
                .chunks_exact(2)
                .filter_map(|pair| Some((pair[0].as_string()?, pair[1].as_string()?)))
                .collect(),
            Value::Map(map) => map
                .clone()
                .inner()
                .into_iter()
                .filter_map(|(key, value)| Some((key.as_str()?.to_owned(), value.as_string()?)))
                .collect(),
            _ => continue,
        };
        let get = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let flags = get("flags").unwrap_or_default();
        if flags
            .split(',')
            .any(|flag| UNUSABLE_REPLICA_FLAGS.contains(&flag))
        {
            continue;
        }
        if let (Some(ip), Some(port)) = (get("ip"), get("port").and_then(|p| p.parse::<u16>().ok())) {
            replicas.push(node_addr(ip, port));
        }
    }
    replicas.sort();
    replicas.dedup();
    replicas
}

/// The first element of a `ROLE` reply: `master`, `slave` or `sentinel`.
fn role_of(value: &Value) -> Option<String> {
    match value {
        Value::Array(parts) => parts.first()?.as_string(),
        _ => None,
    }
}

/// Whether a `+switch-master` message is about `master` (its first word).
fn switch_is_for(message: &str, master: &str) -> bool {
    message.split_whitespace().next() == Some(master)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(t: &str) -> Value {
        Value::String(t.into())
    }

    fn flat(pairs: &[(&str, &str)]) -> Value {
        Value::Array(pairs.iter().flat_map(|(k, v)| [text(k), text(v)]).collect())
    }

    #[test]
    fn master_addresses() {
        let check = |value: Value, expected: Result<Option<&str>, &str>| {
            let actual = parse_master_addr(&value);
            match expected {
                Ok(addr) => assert_eq!(actual, Ok(addr.map(str::to_owned))),
                Err(fragment) => assert!(actual.as_ref().is_err_and(|e| e.contains(fragment)), "{actual:?}"),
            }
        };
        check(
            Value::Array(vec![text("127.0.0.1"), text("6380")]),
            Ok(Some("127.0.0.1:6380")),
        );
        check(
            Value::Array(vec![text("::1"), text("6380")]),
            Ok(Some("[::1]:6380")),
        );
        check(Value::Null, Ok(None));
        check(Value::Array(vec![text("h"), text("port")]), Err("not a number"));
        check(Value::Array(vec![text("h")]), Err("1 elements"));
        check(text("OK"), Err("not a host and port"));
    }

    #[test]
    fn replicas_flagged_down_are_left_out() {
        let reply = Value::Array(vec![
            flat(&[("ip", "127.0.0.1"), ("port", "7002"), ("flags", "slave")]),
            flat(&[("ip", "127.0.0.1"), ("port", "7001"), ("flags", "slave")]),
            flat(&[
                ("ip", "127.0.0.1"),
                ("port", "7000"),
                ("flags", "s_down,slave,disconnected"),
            ]),
            flat(&[("ip", "127.0.0.1"), ("port", "7003"), ("flags", "slave,o_down")]),
            flat(&[("ip", "127.0.0.1"), ("flags", "slave")]),
            text("junk"),
        ]);
        assert_eq!(parse_replicas(&reply), ["127.0.0.1:7001", "127.0.0.1:7002"]);
        assert!(parse_replicas(&Value::Null).is_empty());
    }

    #[test]
    fn roles_and_switch_messages() {
        let role = Value::Array(vec![text("master"), Value::Integer(10), Value::Array(vec![])]);
        assert_eq!(role_of(&role).as_deref(), Some("master"));
        assert_eq!(role_of(&text("master")), None);
        assert!(switch_is_for(
            "mymaster 127.0.0.1 7000 127.0.0.1 7001",
            "mymaster"
        ));
        assert!(!switch_is_for(
            "mymaster2 127.0.0.1 7000 127.0.0.1 7001",
            "mymaster"
        ));
        assert!(!switch_is_for("", "mymaster"));
    }
}
