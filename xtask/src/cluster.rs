//! `cluster-up`, `cluster-down` and `cluster-status`: a detached local cluster for development.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use local_cluster::{
    ClusterNode, LocalCluster, LocalClusterConfig, LocalSentinel, LocalSentinelConfig, TlsClientAuth,
    state_path,
};

use crate::prerequisites;

/// Options of `cargo xtask cluster-up`.
#[derive(Debug, clap::Args)]
pub(crate) struct UpArgs {
    /// Number of primaries.
    #[arg(long, default_value_t = 3)]
    masters: usize,
    /// Replicas per primary.
    #[arg(long, default_value_t = 1)]
    replicas: usize,
    /// Node i listens on base-port + i (default: free ports chosen at random).
    #[arg(long)]
    base_port: Option<u16>,
    /// Extra cluster-enabled nodes started beside the cluster but not joined to it, for `cluster-scale
    /// --add-primaries` (each new primary takes one spare, and one more per replica). The default, 2, is
    /// enough to add one primary with one replica.
    #[arg(long, default_value_t = 2)]
    spares: usize,
    /// Start a Sentinel deployment instead (1 primary, `--replicas` replicas, at least 2 when left at
    /// 1, and 3 sentinels), print the variables for `REDIS_MODE=sentinel`, and keep it running in the
    /// foreground until Ctrl-C, which stops every process.
    #[arg(long, conflicts_with = "tls")]
    sentinel: bool,
    /// TLS-only nodes (`tls-cluster yes`, `tls-replication yes`, plain ports closed) with a CA, server
    /// and client certificates generated in the state directory; prints the `REDIS_TLS_*` variables.
    #[arg(long)]
    tls: bool,
    /// With `--tls`: the nodes require a client certificate (`tls-auth-clients yes`).
    #[arg(long, requires = "tls")]
    tls_require_client_cert: bool,
}

/// Where the detached cluster lives: `target/local-cluster/`.
pub(crate) fn state_dir() -> PathBuf {
    crate::workspace_root().join("target").join("local-cluster")
}

/// The detached cluster, if one is running (at least one of its nodes is alive).
pub(crate) fn running() -> Result<Option<LocalCluster>> {
    let dir = state_dir();
    if !state_path(&dir).exists() {
        return Ok(None);
    }
    let cluster = LocalCluster::attach(&dir)?;
    if cluster.nodes().iter().any(|n| n.is_running()) {
        Ok(Some(cluster))
    } else {
        Ok(None)
    }
}

pub(crate) fn up(args: &UpArgs) -> Result<()> {
    if args.sentinel {
        return sentinel_up(args);
    }
    prerequisites::ensure_redis()?;
    runtime()?.block_on(async {
        if let Some(cluster) = running()? {
            println!(
                "A local cluster is already up (state in {}):",
                state_dir().display()
            );
            print_status(&cluster).await?;
            print_env(&cluster);
            return Ok(());
        }
        let dir = state_dir();
        if dir.exists() {
            // Left over from a cluster whose processes are all gone (a reboot, a kill by hand).
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing stale {}", dir.display()))?;
        }
        let spec = LocalClusterConfig {
            masters: args.masters,
            replicas_per_master: args.replicas,
            base_port: args.base_port,
            spares: args.spares,
            tls: args.tls.then_some(if args.tls_require_client_cert {
                TlsClientAuth::Required
            } else {
                TlsClientAuth::Optional
            }),
            ..LocalClusterConfig::default()
        };
        let started = Instant::now();
        let cluster = LocalCluster::start_detached(spec, &dir).await?;
        println!(
            "Started a {}{}-primary, {}-replica cluster and {} spare node(s) in {:.2} s (state in {}).",
            if args.tls { "TLS " } else { "" },
            args.masters,
            args.masters * args.replicas,
            args.spares,
            started.elapsed().as_secs_f64(),
            dir.display()
        );
        print_status(&cluster).await?;
        print_env(&cluster);
        println!("Stop it with `cargo xtask cluster-down`.");
        Ok(())
    })
}

/// `cluster-up --sentinel`: a foreground Sentinel deployment. Its processes belong to this command
/// (stopped by PID when it ends), so there is nothing for `cluster-down` to clean up.
fn sentinel_up(args: &UpArgs) -> Result<()> {
    prerequisites::ensure_sentinel()?;
    runtime()?.block_on(async {
        let spec = LocalSentinelConfig {
            replicas: args.replicas.max(2),
            ..LocalSentinelConfig::default()
        };
        let started = Instant::now();
        println!(
            "Starting 1 primary, {} replicas and {} sentinels ...",
            spec.replicas, spec.sentinels
        );
        let deployment = LocalSentinel::start(spec).await?;
        println!(
            "Ready in {:.2} s: every sentinel sees the primary {}, its replicas and the other sentinels.",
            started.elapsed().as_secs_f64(),
            deployment.primary_addr().await?
        );
        println!("\nexport REDIS_MODE=sentinel");
        println!(
            "export REDIS_SENTINEL_NODES={}",
            deployment.sentinel_addrs().join(",")
        );
        println!("export REDIS_SENTINEL_MASTER={}", deployment.master_name());
        println!("unset REDIS_CLUSTER_NODES");
        println!("\nPress Ctrl-C to stop every process.");
        tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
        drop(deployment);
        println!("Stopped.");
        Ok(())
    })
}

fn print_env(cluster: &LocalCluster) {
    println!("\nexport REDIS_CLUSTER_NODES={}", cluster.nodes_env());
    if let Some(tls) = cluster.tls() {
        println!("export REDIS_TLS=true");
        println!("export REDIS_TLS_CA_FILE={}", tls.ca_file().display());
        println!("export REDIS_TLS_CERT_FILE={}", tls.client_cert_file().display());
        println!("export REDIS_TLS_KEY_FILE={}", tls.client_key_file().display());
        println!(
            "# redis-cli: redis-cli -c -p {} --tls --cacert {} --cert {} --key {}",
            cluster.nodes()[0].port(),
            tls.ca_file().display(),
            tls.client_cert_file().display(),
            tls.client_key_file().display()
        );
    }
}

pub(crate) fn down() -> Result<()> {
    let dir = state_dir();
    if !state_path(&dir).exists() {
        println!("No local cluster is running (no {}).", state_path(&dir).display());
        return Ok(());
    }
    let cluster = LocalCluster::attach(&dir)?;
    let alive = cluster
        .nodes()
        .iter()
        .chain(cluster.spares())
        .filter(|n| n.is_running())
        .count();
    cluster.shutdown()?;
    println!(
        "Stopped {alive} redis-server process(es) and removed {}.",
        dir.display()
    );
    Ok(())
}

pub(crate) fn status() -> Result<()> {
    runtime()?.block_on(async {
        let Some(cluster) = running()? else {
            bail!("no local cluster is running; start one with `cargo xtask cluster-up`");
        };
        print_status(&cluster).await
    })
}

/// The cluster as the running node (spares included) that knows the most nodes sees it: once
/// `cluster-scale` removed a primary, that node answers `CLUSTER NODES` with itself alone.
pub(crate) async fn widest_topology(cluster: &LocalCluster) -> Result<Vec<ClusterNode>> {
    let mut widest: Option<Vec<ClusterNode>> = None;
    for node in cluster
        .nodes()
        .iter()
        .chain(cluster.spares())
        .filter(|n| n.is_running())
    {
        let Ok(text) = node.command::<String, _, _>(["CLUSTER", "NODES"]).await else {
            continue;
        };
        let view = replies::parse_cluster_nodes(&text)
            .with_context(|| format!("reading CLUSTER NODES of {}", node.addr()))?;
        if widest.as_ref().is_none_or(|w| view.len() > w.len()) {
            widest = Some(view);
        }
    }
    widest.context("no node of the local cluster answers")
}

/// A table of node, role, slot ranges, link state, memory, keys; then `cluster_state`.
pub(crate) async fn print_status(cluster: &LocalCluster) -> Result<()> {
    let topology = widest_topology(cluster).await?;
    println!(
        "\n{:<17} {:<8} {:<7} {:<22} {:<13} {:>10} {:>9}",
        "node", "pid", "role", "slots", "link", "memory", "keys"
    );
    // Spares come last; once `cluster-scale` joined one, the topology shows its role like any node's.
    for node in cluster.nodes().iter().chain(cluster.spares()) {
        let entry = topology.iter().find(|e| e.port == Some(node.port()));
        let pid = node.pid().map(|p| p.to_string()).unwrap_or_else(|| "-".into());
        let (memory, keys) = if node.is_running() {
            match (node.info("memory").await, node.info("keyspace").await) {
                (Ok(mem), Ok(space)) => (
                    mem.get("used_memory_human").unwrap_or("?").to_string(),
                    space
                        .keyspace
                        .iter()
                        .find(|db| db.db == 0)
                        .map_or(0, |db| db.keys)
                        .to_string(),
                ),
                _ => ("?".into(), "?".into()),
            }
        } else {
            ("-".into(), "-".into())
        };
        println!(
            "{:<17} {:<8} {:<7} {:<22} {:<13} {:>10} {:>9}",
            node.addr(),
            pid,
            entry.map(role).unwrap_or("-"),
            entry.map(slot_ranges).unwrap_or_default(),
            entry.map(link).unwrap_or("not joined"),
            memory,
            keys
        );
    }
    // From a member: a node that left the cluster reports its own, empty one.
    let member = |n: &&local_cluster::Node| topology.iter().any(|e| e.port == Some(n.port()));
    let state = match cluster
        .nodes()
        .iter()
        .chain(cluster.spares())
        .filter(|n| n.is_running())
        .find(member)
    {
        Some(node) => node
            .cluster_info()
            .await?
            .get("cluster_state")
            .unwrap_or("?")
            .to_string(),
        None => "down".into(),
    };
    println!("\ncluster_state: {state}");
    let unjoined: Vec<String> = cluster
        .spares()
        .iter()
        .filter(|n| n.is_running() && !topology.iter().any(|e| e.port == Some(n.port())))
        .map(|n| n.addr())
        .collect();
    if !unjoined.is_empty() {
        println!(
            "spares (running, not joined): {}; add them with `cargo xtask cluster-scale --add-primaries 1`",
            unjoined.join(" ")
        );
    }
    Ok(())
}

fn role(entry: &ClusterNode) -> &'static str {
    if entry.is_primary() { "primary" } else { "replica" }
}

fn link(entry: &ClusterNode) -> &'static str {
    match (
        entry.is_failing(),
        entry.link_connected || entry.has_flag("myself"),
    ) {
        (true, _) => "failing",
        (false, true) => "connected",
        (false, false) => "disconnected",
    }
}

fn slot_ranges(entry: &ClusterNode) -> String {
    entry
        .slots
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}
