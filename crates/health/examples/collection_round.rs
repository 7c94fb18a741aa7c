//! Measures one health collection round on a local 3 + 3 cluster, against a baseline in the same run:
//! the same commands (PING, INFO, CLUSTER INFO, CLUSTER NODES on all six nodes, concurrently) sent over
//! raw fred clients without parsing, judging or exporting anything.
//!
//! ```text
//! cargo run -p health --release --example collection_round [rounds]
//! ```
//!
//! Prints wall time per round (median and p99) and CPU time per round for both, and what the health
//! loop costs at the default 30 s interval.

use std::time::{Duration, Instant};

use cluster_config::{ClusterConfig, NodeAddr};
use fred::prelude::{Builder, Client, ClientLike, ClusterInterface, Config, ServerConfig, TcpConfig};
use health::{HealthChecker, HealthConfig, HealthStatus, install_prometheus};
use local_cluster::{LocalCluster, LocalClusterConfig, test_lock};

/// CPU time (user + system) this process used so far, from `/proc/self/stat`.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of the whole line, 11 and 12 after the name; Linux counts
    // them in USER_HZ, which is 100.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

struct Figures {
    p50: Duration,
    p99: Duration,
    cpu_per_round: Duration,
}

fn figures(mut walls: Vec<Duration>, cpu: Duration) -> Figures {
    walls.sort_unstable();
    let rounds = walls.len().max(1);
    Figures {
        p50: walls[walls.len() / 2],
        p99: walls[(walls.len() * 99 / 100).min(walls.len() - 1)],
        cpu_per_round: cpu / rounds as u32,
    }
}

async fn baseline_round(clients: &[Client]) -> Result<(), fred::error::Error> {
    let rounds = clients.iter().map(|client| async move {
        client.ping::<String>(None).await?;
        let (info, cluster_info, cluster_nodes) = tokio::join!(
            client.info::<String>(None),
            client.cluster_info::<String>(),
            client.cluster_nodes::<String>()
        );
        info?;
        cluster_info?;
        cluster_nodes?;
        Ok::<_, fred::error::Error>(())
    });
    for result in futures::future::join_all(rounds).await {
        result?;
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(300);
    let _lock = test_lock::exclusive().await?;
    let cluster = LocalCluster::start(LocalClusterConfig::default()).await?;
    // A deadline, so that whatever happens the cluster is dropped and its processes stopped.
    tokio::time::timeout(Duration::from_secs(300), measure(&cluster, rounds))
        .await
        .map_err(|_| "the measurement did not finish within 300 s")?
}

async fn measure(cluster: &LocalCluster, rounds: usize) -> Result<(), Box<dyn std::error::Error>> {
    let config = ClusterConfig::builder().nodes(cluster.seeds()).build()?;

    // Metrics are recorded into a real Prometheus recorder, as in production.
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    drop(listener);
    install_prometheus(addr)?;

    let mut clients = Vec::new();
    for seed in cluster.seeds() {
        // The settings of health's probe connections: fail fast, one attempt, TCP_NODELAY (the local
        // cluster has no password).
        let node: NodeAddr = seed.parse()?;
        let node_config = Config {
            server: ServerConfig::new_centralized(node.host(), node.port()),
            fail_fast: true,
            ..Config::default()
        };
        let client = Builder::from_config(node_config)
            .with_connection_config(|c| {
                c.max_command_attempts = 1;
                c.tcp = TcpConfig {
                    nodelay: Some(true),
                    ..TcpConfig::default()
                };
            })
            .with_performance_config(|p| p.default_command_timeout = Duration::from_secs(1))
            .build()?;
        tokio::time::timeout(Duration::from_secs(5), client.init()).await??;
        clients.push(client);
    }

    let checker = HealthChecker::new(&config, HealthConfig::from_config(&config))?;
    let warm = checker.check_now().await;
    assert_eq!(
        warm.summary.status,
        HealthStatus::Healthy,
        "{:#?}",
        warm.summary.active_alerts
    );
    baseline_round(&clients).await?;

    // Interleaved in blocks, so that both see the same machine.
    let mut health_walls = Vec::with_capacity(rounds);
    let mut baseline_walls = Vec::with_capacity(rounds);
    let (mut health_cpu, mut baseline_cpu) = (Duration::ZERO, Duration::ZERO);
    for block in 0..10 {
        let per_block = rounds / 10 + usize::from(block < rounds % 10);
        let cpu = cpu_time();
        for _ in 0..per_block {
            let started = Instant::now();
            baseline_round(&clients).await?;
            baseline_walls.push(started.elapsed());
        }
        baseline_cpu += cpu_time() - cpu;
        let cpu = cpu_time();
        for _ in 0..per_block {
            let started = Instant::now();
            let round = checker.check_now().await;
            health_walls.push(started.elapsed());
            assert_eq!(round.snapshot.nodes.len(), 6);
        }
        health_cpu += cpu_time() - cpu;
    }
    let health = figures(health_walls, health_cpu);
    let baseline = figures(baseline_walls, baseline_cpu);
    let interval = Duration::from_secs(30);
    println!("one collection round on 6 nodes ({rounds} rounds each, interleaved):");
    println!(
        "  health round (poll + parse + judge + metrics): p50 {:?}, p99 {:?}, CPU {:?}/round",
        health.p50, health.p99, health.cpu_per_round
    );
    println!(
        "  baseline (same commands, raw fred, no parsing):  p50 {:?}, p99 {:?}, CPU {:?}/round",
        baseline.p50, baseline.p99, baseline.cpu_per_round
    );
    println!(
        "  ratio health/baseline: wall p50 {:.2}x, CPU {:.2}x",
        health.p50.as_secs_f64() / baseline.p50.as_secs_f64(),
        health.cpu_per_round.as_secs_f64() / baseline.cpu_per_round.as_secs_f64().max(1e-9)
    );
    println!(
        "  at a {interval:?} interval the health loop uses {:.4}% of one core",
        health.cpu_per_round.as_secs_f64() / interval.as_secs_f64() * 100.0
    );
    for client in clients {
        client.quit().await?;
    }
    checker.close();
    Ok(())
}
