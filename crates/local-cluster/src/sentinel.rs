//! A Sentinel-managed deployment: one primary, its replicas (standalone `redis-server`s) and the
//! `redis-sentinel` processes that watch them and fail the primary over.

use std::path::Path;
use std::time::Duration;

use crate::cluster::wait_until;
use crate::node::Node;
use crate::reply::Reply;
use crate::server::NodeConfig;
use crate::{Error, Role};

/// How long [`LocalSentinel::start`] waits for the replicas to link and for every sentinel to see
/// the primary, the replicas and the other sentinels. Sentinels find each other through hello
/// messages sent every 2 s, so a few rounds of those fit well inside it.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The shape and timings of a [`LocalSentinel`]: a test tool's settings, so public fields and a
/// [`Default`], no builder.
#[derive(Debug, Clone)]
pub struct LocalSentinelConfig {
    /// Replicas of the primary (default 2).
    pub replicas: usize,
    /// Sentinel processes (default 3); the failover quorum is a majority of them.
    pub sentinels: usize,
    /// The name the sentinels monitor the primary under (default `mymaster`).
    pub master_name: String,
    /// `down-after-milliseconds`: how long the primary must be unreachable before a sentinel thinks
    /// it down (default 1 s, to keep failover drills short).
    pub down_after: Duration,
    /// `failover-timeout` (default 3 s): also the time before a failed failover is tried again.
    pub failover_timeout: Duration,
    /// The data nodes' `redis.conf` directives.
    pub node: NodeConfig,
}

impl Default for LocalSentinelConfig {
    fn default() -> Self {
        LocalSentinelConfig {
            replicas: 2,
            sentinels: 3,
            master_name: "mymaster".into(),
            down_after: Duration::from_millis(1000),
            failover_timeout: Duration::from_millis(3000),
            node: NodeConfig::test_defaults(),
        }
    }
}

/// One primary, its replicas and the sentinels watching them, as real processes on free loopback
/// ports in a temporary directory; every sentinel has its own generated `sentinel.conf`.
///
/// Dropping it kills every process by PID, also while a test unwinds from a panic.
#[derive(Debug)]
pub struct LocalSentinel {
    nodes: Vec<Node>,
    sentinels: Vec<Node>,
    master_name: String,
    _dir: tempfile::TempDir,
}

impl LocalSentinel {
    /// Starts the data nodes, links the replicas to the primary, starts the sentinels and returns once
    /// every sentinel sees the primary, every replica and every other sentinel.
    pub async fn start(config: LocalSentinelConfig) -> Result<LocalSentinel, Error> {
        if config.sentinels == 0 {
            return Err(Error::Invalid("start at least one sentinel".into()));
        }
        let name = config.master_name.trim().to_owned();
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(Error::Invalid(format!(
                "master name {:?} must be one word, as `sentinel monitor` takes it",
                config.master_name
            )));
        }
        let dir = tempfile::Builder::new()
            .prefix("local-sentinel-")
            .tempdir()
            .map_err(|e| Error::io("creating a temporary directory", e))?;
        let mut nodes = Vec::with_capacity(1 + config.replicas);
        // On any error below, `nodes` and `sentinels` drop and each started process is killed.
        nodes.push(
            Node::start(
                dir.path().join("node-0"),
                &config.node,
                false,
                Role::Primary,
                false,
                None,
                None,
            )
            .await?,
        );
        let primary_port = nodes[0].port();
        let mut replica_settings = config.node.clone();
        replica_settings.set("replicaof", format!("127.0.0.1 {primary_port}"));
        for index in 1..=config.replicas {
            let node_dir = dir.path().join(format!("node-{index}"));
            nodes.push(
                Node::start(
                    node_dir,
                    &replica_settings,
                    false,
                    Role::Replica,
                    false,
                    None,
                    None,
                )
                .await?,
            );
        }
        let replicas = config.replicas;
        wait_until("the replicas to link to the primary", READY_TIMEOUT, || {
            let primary = &nodes[0];
            async move {
                let info = primary.info("replication").await?;
                let linked = info.get("connected_slaves").and_then(|n| n.parse::<usize>().ok());
                Ok(if linked == Some(replicas) {
                    Ok(())
                } else {
                    Err(format!("connected_slaves: {linked:?} of {replicas}"))
                })
            }
        })
        .await?;
        let mut sentinels = Vec::with_capacity(config.sentinels);
        let quorum = config.sentinels / 2 + 1;
        for index in 0..config.sentinels {
            let render =
                |port: u16, dir: &Path| sentinel_conf(port, dir, &name, primary_port, quorum, &config);
            sentinels
                .push(Node::start_sentinel(dir.path().join(format!("sentinel-{index}")), &render).await?);
        }
        let deployment = LocalSentinel {
            nodes,
            sentinels,
            master_name: name,
            _dir: dir,
        };
        deployment.wait_until_ready(READY_TIMEOUT).await?;
        Ok(deployment)
    }

    /// The data nodes, in start order: the first was the initial primary (failovers change that; see
    /// [`LocalSentinel::primary`]).
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The sentinel processes, in start order.
    pub fn sentinels(&self) -> &[Node] {
        &self.sentinels
    }

    /// `host:port` of every sentinel, for `REDIS_SENTINEL_NODES`.
    pub fn sentinel_addrs(&self) -> Vec<String> {
        self.sentinels.iter().map(Node::addr).collect()
    }

    /// The name the sentinels monitor the primary under, for `REDIS_SENTINEL_MASTER`.
    pub fn master_name(&self) -> &str {
        &self.master_name
    }

    /// The primary's `host:port` as the first running sentinel that answers says
    /// (`SENTINEL get-master-addr-by-name`).
    pub async fn primary_addr(&self) -> Result<String, Error> {
        let mut last = Error::Invalid("no sentinel is running".into());
        for sentinel in self.sentinels.iter().filter(|s| s.is_running()) {
            match self.primary_addr_from(sentinel).await {
                Ok(addr) => return Ok(addr),
                Err(error) => last = error,
            }
        }
        Err(last)
    }

    /// The primary's address as one sentinel says.
    pub async fn primary_addr_from(&self, sentinel: &Node) -> Result<String, Error> {
        let reply: Vec<String> = sentinel
            .command(["SENTINEL", "get-master-addr-by-name", self.master_name.as_str()])
            .await?;
        match reply.as_slice() {
            [host, port] => {
                Ok(cluster_config::NodeAddr::new(host.as_str(), port.parse().unwrap_or(0)).to_string())
            }
            other => Err(Error::Reply {
                addr: sentinel.addr(),
                command: "SENTINEL get-master-addr-by-name".into(),
                detail: format!("expected host and port, got {other:?}"),
            }),
        }
    }

    /// The data node the sentinels name as the primary.
    pub async fn primary(&self) -> Result<&Node, Error> {
        let addr = self.primary_addr().await?;
        self.node(&addr)
    }

    /// The data node at `addr`.
    pub fn node(&self, addr: &str) -> Result<&Node, Error> {
        self.nodes
            .iter()
            .find(|n| n.addr() == addr)
            .ok_or_else(|| Error::Invalid(format!("{addr} is none of this deployment's data nodes")))
    }

    /// `kill -9` of the node the sentinels name as the primary; returns it.
    pub async fn kill_primary(&self) -> Result<&Node, Error> {
        let primary = self.primary().await?;
        primary.kill()?;
        Ok(primary)
    }

    /// Waits until every running sentinel names a primary other than `old` and that node says it is a
    /// primary (`INFO replication`); returns its address.
    pub async fn wait_for_failover(&self, old: &str, timeout: Duration) -> Result<String, Error> {
        let what = format!("the sentinels to fail {old} over");
        wait_until(&what, timeout, || async {
            let mut named = Vec::new();
            for sentinel in self.sentinels.iter().filter(|s| s.is_running()) {
                named.push(self.primary_addr_from(sentinel).await?);
            }
            let Some(new) = named.first().cloned() else {
                return Ok(Err("no sentinel is running".into()));
            };
            if new == old || named.iter().any(|n| *n != new) {
                return Ok(Err(format!("sentinels name {named:?}")));
            }
            let role = self.node(&new)?.role().await?;
            Ok(if role == Role::Primary {
                Ok(new)
            } else {
                Err(format!("sentinels name {new}, which is still a {role:?}"))
            })
        })
        .await
    }

    /// Waits until every running sentinel sees the primary as up, all its live replicas, and every
    /// other running sentinel.
    pub async fn wait_until_ready(&self, timeout: Duration) -> Result<(), Error> {
        let running: Vec<&Node> = self.sentinels.iter().filter(|s| s.is_running()).collect();
        let replicas = self
            .nodes
            .iter()
            .filter(|n| n.is_running())
            .count()
            .saturating_sub(1);
        let others = running.len().saturating_sub(1);
        wait_until(
            "every sentinel to see the primary, its replicas and the other sentinels",
            timeout,
            || {
                let running = &running;
                async move {
                    for sentinel in running {
                        let reply: Reply = sentinel
                            .command(["SENTINEL", "MASTER", self.master_name.as_str()])
                            .await?;
                        let fields = pairs(&reply);
                        let get = |key: &str| fields.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
                        let flags = get("flags").unwrap_or_default();
                        let seen_replicas = get("num-slaves").and_then(|n| n.parse::<usize>().ok());
                        let seen_others = get("num-other-sentinels").and_then(|n| n.parse::<usize>().ok());
                        if flags != "master" || seen_replicas != Some(replicas) || seen_others != Some(others)
                        {
                            return Ok(Err(format!(
                                "{} sees flags {flags:?}, {seen_replicas:?} of {replicas} replicas, \
                             {seen_others:?} of {others} other sentinels",
                                sentinel.addr()
                            )));
                        }
                    }
                    Ok(Ok(()))
                }
            },
        )
        .await
    }
}

impl Drop for LocalSentinel {
    fn drop(&mut self) {
        // Sentinels first, so that none starts a failover while the data nodes go.
        for node in self.sentinels.iter().chain(&self.nodes) {
            node.stop();
        }
    }
}

/// A sentinel's `sentinel.conf`. Sentinel rewrites this file as it learns, so it lives in the
/// sentinel's own directory.
fn sentinel_conf(
    port: u16,
    dir: &Path,
    name: &str,
    primary_port: u16,
    quorum: usize,
    config: &LocalSentinelConfig,
) -> String {
    let down_after = config.down_after.as_millis().max(1);
    let failover_timeout = config.failover_timeout.as_millis().max(1);
    format!(
        "port {port}\nbind 127.0.0.1\ndir {dir}\nlogfile {log}\ndaemonize no\n\
         sentinel monitor {name} 127.0.0.1 {primary_port} {quorum}\n\
         sentinel down-after-milliseconds {name} {down_after}\n\
         sentinel failover-timeout {name} {failover_timeout}\n\
         sentinel parallel-syncs {name} 1\n",
        dir = dir.display(),
        log = dir.join("sentinel.log").display(),
    )
}

/// A flat `[key, value, key, value, ...]` reply (RESP2 `SENTINEL MASTER`) as text pairs.
fn pairs(reply: &Reply) -> Vec<(String, String)> {
    let Reply::Array(items) = reply else {
        return Vec::new();
    };
    items
        .chunks_exact(2)
        .filter_map(|pair| Some((pair[0].to_text()?, pair[1].to_text()?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_conf_monitors_the_primary_with_the_quorum() {
        let conf = sentinel_conf(
            26000,
            Path::new("/d"),
            "m",
            7000,
            2,
            &LocalSentinelConfig::default(),
        );
        assert!(conf.contains("sentinel monitor m 127.0.0.1 7000 2\n"), "{conf}");
        assert!(
            conf.contains("sentinel down-after-milliseconds m 1000\n"),
            "{conf}"
        );
        assert!(conf.contains("sentinel failover-timeout m 3000\n"), "{conf}");
        assert!(conf.starts_with("port 26000\nbind 127.0.0.1\ndir /d\n"), "{conf}");
    }

    #[test]
    fn flat_replies_become_pairs() {
        let text = |t: &str| Reply::Bytes(t.as_bytes().to_vec());
        let reply = Reply::Array(vec![
            text("name"),
            text("m"),
            text("num-slaves"),
            Reply::Int(2),
            text("odd"),
        ]);
        assert_eq!(
            pairs(&reply),
            [("name".into(), "m".into()), ("num-slaves".into(), "2".into())]
        );
        assert!(pairs(&Reply::Nil).is_empty());
    }
}
