//! Helpers shared by the cluster-client integration tests: a client for a local cluster, keys for given
//! slots, and a load generator that records every call's outcome.

#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cluster_client::{ClusterClient, SetOptions};
use cluster_config::ClusterConfig;
use local_cluster::LocalCluster;

/// A client for `cluster` with a 1 s command timeout.
pub async fn client(cluster: &LocalCluster) -> ClusterClient {
    let config = ClusterConfig::builder()
        .nodes(cluster.seeds())
        .command_timeout(Duration::from_secs(1))
        .build()
        .expect("valid config");
    ClusterClient::connect(config).await.expect("client connects")
}

/// A key (`{prefix}:n`) whose slot is `slot`.
pub fn key_for_slot(prefix: &str, slot: u16) -> Vec<u8> {
    (0u64..)
        .map(|n| format!("{prefix}:{n}").into_bytes())
        .find(|k| sharding::key_slot(k) == slot)
        .expect("some key hashes to every slot")
}

/// One finished call.
#[derive(Debug, Clone)]
pub struct Call {
    pub key: usize,
    pub started: Instant,
    pub took: Duration,
    pub ok: bool,
    pub error: Option<String>,
}

/// Tasks writing then reading `keys` in a loop until stopped.
pub struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Vec<Call>>>,
}

impl Load {
    /// Starts `tasks` workers over `keys` (each worker takes every `tasks`-th key).
    pub fn start(client: &ClusterClient, keys: Arc<Vec<Vec<u8>>>, tasks: usize, pause: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let handles = (0..tasks)
            .map(|worker| {
                let client = client.clone();
                let keys = keys.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    let mut calls = Vec::new();
                    let mut round = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        for index in (worker..keys.len()).step_by(tasks) {
                            if stop.load(Ordering::Relaxed) {
                                break;
                            }
                            let value = format!("{index}:{round}");
                            let started = Instant::now();
                            let result = client
                                .set(&keys[index], value.as_bytes(), SetOptions::default())
                                .await;
                            let result = match result {
                                Ok(_) => client.get(&keys[index]).await.map(|v| {
                                    assert_eq!(v.as_deref(), Some(value.as_bytes()), "read back {index}");
                                }),
                                Err(e) => Err(e),
                            };
                            calls.push(Call {
                                key: index,
                                started,
                                took: started.elapsed(),
                                ok: result.is_ok(),
                                error: result.err().map(|e| e.to_string()),
                            });
                            if !pause.is_zero() {
                                tokio::time::sleep(pause).await;
                            }
                        }
                        round += 1;
                    }
                    calls
                })
            })
            .collect();
        Load { stop, tasks: handles }
    }

    /// Stops the workers and returns every call, in no particular order.
    pub async fn stop(self) -> Vec<Call> {
        self.stop.store(true, Ordering::Relaxed);
        let mut calls = Vec::new();
        for task in self.tasks {
            calls.extend(task.await.expect("load worker panicked"));
        }
        calls
    }
}

/// `count` keys spread over every slot range.
pub fn keys(prefix: &str, count: usize) -> Arc<Vec<Vec<u8>>> {
    Arc::new((0..count).map(|i| format!("{prefix}:{i}").into_bytes()).collect())
}
