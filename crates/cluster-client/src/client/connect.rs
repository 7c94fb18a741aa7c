//! Connecting: opening the seeds, detecting whether they form a cluster (the deployment), loading the
//! first topology, and starting the background refresh.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::{ArcSwap, ArcSwapOption};
use cluster_config::{ClusterConfig, Mode, ReplicaReadMode, ResolvedMode, ServerKind, ShardingStrategy};
use tokio::sync::{Notify, broadcast};

use super::refresh::{discover, refresh_loop};
use super::replica_reads::ReplicaLag;
use super::routing::{Routing, raw};
use super::sentinel::Sentinels;
use super::{CallOptions, ClusterClient, Cmd, Inner};
use crate::Error;
use crate::node::NodeHandle;
use crate::recent::RecentWrites;
use crate::topology::Topology;

/// What to fix, for the connection errors that do not say it themselves: a server that speaks TLS
/// resets a plain connection, and one that requires client certificates ends the handshake with an
/// alert.
fn hint(config: &ClusterConfig, message: &str) -> &'static str {
    if !config.tls() && !message.contains("refused") {
        " (if the servers listen for TLS only, list them as rediss://host:port or set REDIS_TLS=true)"
    } else if message.contains("CertificateRequired") {
        " (the server requires a client certificate: set REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE)"
    } else {
        ""
    }
}

/// Whether a connection error is a refused server certificate; never true without TLS support.
#[cfg(feature = "tls")]
fn is_untrusted_certificate(message: &str) -> bool {
    crate::tls::is_untrusted_certificate(message)
}

#[cfg(not(feature = "tls"))]
fn is_untrusted_certificate(_: &str) -> bool {
    false
}

impl ClusterClient {
    /// Connects to the configured nodes, finds out whether they form a cluster, loads the topology and
    /// starts the background refresh.
    pub async fn connect(config: ClusterConfig) -> Result<ClusterClient, Error> {
        if config.mode() == Mode::Sentinel {
            return Self::connect_sentinel(config).await;
        }
        let seeds: Vec<String> = config.nodes().iter().map(|n| n.to_string()).collect();
        let mut handles = Vec::with_capacity(seeds.len());
        for seed in &seeds {
            handles.push(NodeHandle::open(seed, &config)?);
        }
        let connect_timeout = config.timeouts().connect;
        let waits = handles.iter().map(|h| h.connect_outcome(connect_timeout));
        let outcomes = futures::future::join_all(waits).await;
        let connected: Vec<bool> = outcomes.iter().map(Result::is_ok).collect();

        let mut kind = None;
        let mut last_error = String::from("no seed connected");
        for (handle, outcome) in handles.iter().zip(&outcomes) {
            match outcome {
                Ok(()) => {}
                Err(None) => {
                    last_error = format!("{} did not connect within {connect_timeout:?}", handle.addr);
                    continue;
                }
                Err(Some(message)) => {
                    // A certificate the client does not trust will not become trusted by retrying:
                    // say so now, rather than letting the caller wait for a timeout.
                    if config.tls() && is_untrusted_certificate(message) {
                        for h in &handles {
                            h.close();
                        }
                        return Err(Error::TlsUntrusted {
                            node: handle.addr.clone(),
                            detail: message.clone(),
                        });
                    }
                    last_error = format!("{}: {message}{}", handle.addr, hint(&config, message));
                    continue;
                }
            }
            // `CLUSTER INFO` rather than `INFO cluster`: INFO is in the @dangerous ACL category, which a
            // cache's ACL user usually lacks.
            match raw::<String>(
                handle,
                Cmd::custom("CLUSTER", vec!["INFO".into()]),
                connect_timeout,
            )
            .await
            {
                Ok(_) => {
                    kind = Some(ServerKind::Cluster);
                    break;
                }
                Err(Error::Server { message, .. }) if message.contains("cluster support disabled") => {
                    kind = Some(ServerKind::Standalone);
                    break;
                }
                Err(e) => last_error = e.to_string(),
            }
        }
        let Some(kind) = kind else {
            for h in &handles {
                h.close();
            }
            return Err(Error::NoSeedReachable {
                tried: seeds.join(","),
                last: last_error,
            });
        };
        let mode = config.resolve_mode(kind)?;
        let nodes: HashMap<String, Arc<NodeHandle>> =
            handles.iter().map(|h| (h.addr.clone(), h.clone())).collect();
        let topology = match mode {
            ResolvedMode::Cluster => {
                let mut found = None;
                for (handle, up) in handles.iter().zip(&connected) {
                    if *up && let Ok(t) = discover(handle, connect_timeout).await {
                        found = Some(t);
                        break;
                    }
                }
                found.ok_or_else(|| Error::NoSeedReachable {
                    tried: seeds.join(","),
                    last: "no seed answered CLUSTER SHARDS or CLUSTER SLOTS".into(),
                })?
            }
            ResolvedMode::Standalone => {
                let up = handles
                    .iter()
                    .zip(&connected)
                    .find(|(_, up)| **up)
                    .map(|(h, _)| h.addr.clone());
                Topology::standalone(up.unwrap_or_else(|| seeds[0].clone()))
            }
            ResolvedMode::Sharded(ShardingStrategy::KeyRange) => {
                Topology::key_range(weighted_seeds(&seeds, &config)).map_err(|e| Error::Reply {
                    node: seeds.join(","),
                    command: "key-range".into(),
                    detail: e.to_string(),
                })?
            }
            ResolvedMode::Sharded(_) => {
                Topology::ketama(weighted_seeds(&seeds, &config)).map_err(|e| Error::Reply {
                    node: seeds.join(","),
                    command: "ketama".into(),
                    detail: e.to_string(),
                })?
            }
            // `resolve_mode` answers Sentinel only in sentinel mode, which connected above.
            ResolvedMode::Sentinel => {
                // Only sentinel mode resolves to Sentinel, and it connects through the sentinels.
                for h in &handles {
                    h.close();
                }
                return Self::connect_sentinel(config).await;
            }
        };
        ClusterClient::start(config, seeds, nodes, topology, mode, None).await
    }

    /// Builds the shared state around a first topology, connects the nodes it names, and starts the
    /// background refresh (cluster and sentinel deployments, whose topology changes under the client).
    pub(super) async fn start(
        config: ClusterConfig,
        seeds: Vec<String>,
        nodes: HashMap<String, Arc<NodeHandle>>,
        topology: Topology,
        mode: ResolvedMode,
        sentinels: Option<Arc<Sentinels>>,
    ) -> Result<ClusterClient, Error> {
        let connect_timeout = config.timeouts().connect;
        let (tx, _) = broadcast::channel(1024);
        let inner = Arc::new(Inner {
            config,
            seeds,
            routing: ArcSwap::from_pointee(Routing {
                topology: Arc::new(topology.clone()),
                primaries: vec![],
                replicas: vec![],
            }),
            nodes: Mutex::new(nodes),
            refresh_wanted: Arc::new(Notify::new()),
            events: tx,
            closed: AtomicBool::new(false),
            tasks: Mutex::new(Vec::new()),
            replica_reads_since: Mutex::new(None),
            replica_reads_on: AtomicBool::new(false),
            fresh_replicas: ArcSwap::from_pointee(HashSet::new()),
            recent_writes: Mutex::new(RecentWrites::new()),
            lag: Mutex::new(ReplicaLag::default()),
            last_refresh: Mutex::new(Instant::now()),
            reshard: ArcSwapOption::empty(),
            sentinels,
            tracking: std::sync::OnceLock::new(),
        });
        inner.install(topology)?;
        // Nodes first seen in the topology (replicas, or nodes missing from the seeds) connect now, so
        // that the first calls do not fail fast on connections that are still being opened.
        let fresh: Vec<Arc<NodeHandle>> = inner
            .nodes
            .lock()
            .map(|n| n.values().cloned().collect())
            .unwrap_or_default();
        futures::future::join_all(fresh.iter().map(|n| n.wait_connected(connect_timeout))).await;
        let client = ClusterClient {
            inner,
            options: CallOptions::default(),
        };
        if client.inner.config.replica_reads().mode == ReplicaReadMode::Prefer {
            client.inner.enable_replica_reads();
        }
        if matches!(mode, ResolvedMode::Cluster | ResolvedMode::Sentinel) {
            let task = tokio::spawn(refresh_loop(
                Arc::downgrade(&client.inner),
                client.inner.refresh_wanted.clone(),
            ));
            client.inner.push_task(task);
        }
        Ok(client)
    }
}

/// The seeds with the weights configured for them (`host:port=weight`), for client-side sharding.
fn weighted_seeds(seeds: &[String], config: &ClusterConfig) -> Vec<(String, u32)> {
    seeds
        .iter()
        .cloned()
        .zip(config.node_weights().iter().copied())
        .collect()
}
