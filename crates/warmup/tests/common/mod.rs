//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::time::Duration;

use cluster_client::{Bytes, ClusterClient, Value};
use local_cluster::LocalCluster;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// A client for `cluster` with the default settings.
pub async fn client(cluster: &LocalCluster) -> ClusterClient {
    let config = cluster_config::ClusterConfig::builder()
        .nodes(cluster.seeds())
        .build()
        .expect("a valid config");
    ClusterClient::connect(config).await.expect("the cluster answers")
}

/// A prefix no other test run uses.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{prefix}:{}:{nanos}", std::process::id())
}

/// What each node that should hold a key (its shard's primary and every replica) holds for it, read
/// with one `MGET` per slot on each node. Keys are grouped by the topology as it is now.
pub async fn copies(client: &ClusterClient, keys: &[Bytes]) -> BTreeMap<String, Vec<(Bytes, Option<Bytes>)>> {
    client.refresh_topology().await.expect("topology refresh");
    let topology = client.topology();
    let mut by_slot: BTreeMap<u16, Vec<Bytes>> = BTreeMap::new();
    for key in keys {
        by_slot
            .entry(sharding::key_slot(key))
            .or_default()
            .push(key.clone());
    }
    let mut reads = Vec::new();
    for (slot, keys) in by_slot {
        let shard = topology.shard_for_slot(slot).expect("every slot is served");
        for node in std::iter::once(&shard.primary).chain(&shard.replicas) {
            reads.push((node.clone(), keys.clone()));
        }
    }
    let mut out: BTreeMap<String, Vec<(Bytes, Option<Bytes>)>> = BTreeMap::new();
    for chunk in reads.chunks(256) {
        let replies = futures::future::join_all(chunk.iter().map(|(node, keys)| async move {
            let mut args: Vec<Value> = vec!["MGET".into()];
            args.extend(keys.iter().map(|k| Value::Bytes(k.clone())));
            let values: Vec<Option<Bytes>> = client.node_command(node, args).await.expect("MGET answers");
            (node.clone(), keys.iter().cloned().zip(values).collect::<Vec<_>>())
        }))
        .await;
        for (node, pairs) in replies {
            out.entry(node).or_default().extend(pairs);
        }
    }
    out
}

/// Commands seen by `MONITOR` on a set of nodes: `(server time in seconds, line)` for every line that
/// contains `needle`.
pub struct Monitor {
    tasks: Vec<tokio::task::JoinHandle<Vec<(f64, String)>>>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Monitor {
    /// Starts `MONITOR` on every node in `nodes` (`host:port`).
    pub async fn start(nodes: &[String], needle: &str) -> Monitor {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        for node in nodes {
            let mut stream = tokio::net::TcpStream::connect(node)
                .await
                .expect("the node accepts connections");
            stream.write_all(b"MONITOR\r\n").await.expect("MONITOR sent");
            let mut reader = BufReader::new(stream);
            let mut ok = String::new();
            reader.read_line(&mut ok).await.expect("MONITOR answers");
            assert_eq!(ok.trim(), "+OK", "MONITOR on {node}");
            let needle = needle.to_string();
            let mut stopped = stopped.clone();
            tasks.push(tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut line = String::new();
                loop {
                    line.clear();
                    tokio::select! {
                        read = reader.read_line(&mut line) => {
                            if read.unwrap_or(0) == 0 {
                                break;
                            }
                            if line.contains(&needle) {
                                let text = line.trim_start_matches('+');
                                let time = text
                                    .split_whitespace()
                                    .next()
                                    .and_then(|t| t.parse::<f64>().ok())
                                    .expect("a MONITOR line starts with the time");
                                seen.push((time, text.to_string()));
                            }
                        }
                        _ = stopped.changed() => break,
                    }
                }
                seen
            }));
        }
        // MONITOR is on once +OK came back; nothing else to wait for.
        Monitor { tasks, stop }
    }

    /// Stops monitoring (after a short grace for lines in flight) and returns what was seen.
    pub async fn stop(self) -> Vec<(f64, String)> {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let _ = self.stop.send(true);
        let mut all = Vec::new();
        for task in self.tasks {
            all.extend(task.await.expect("the monitor task ends"));
        }
        all
    }
}

/// The quoted arguments of a `MONITOR` line.
pub fn monitor_args(line: &str) -> Vec<String> {
    line.split('"')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_string())
        .collect()
}
