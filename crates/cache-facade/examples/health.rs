//! The cluster's health: a summary, per-node memory, alerts; and, with `REDIS_CLUSTER_METRICS=true`,
//! Prometheus metrics on `REDIS_METRICS_LISTEN` (default 127.0.0.1:9192) while it runs.
//!
//! ```sh
//! export REDIS_CLUSTER_NODES=...    # from `cargo xtask cluster-up`
//! cargo run -p cache-facade --example health
//! ```

use cache_facade::{Cache, ClusterConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = ClusterConfig::from_env()?;
    // Installing the process's one metrics recorder is the application's call, made once at start-up;
    // the cache only records through the `metrics` facade.
    if config.metrics().enabled {
        cache_facade::install_prometheus(config.metrics().listen)?;
    }
    let cache = Cache::connect(config).await?;
    let summary = cache
        .cluster_health_summary()
        .await
        .ok_or("health collection is turned off")?;
    println!(
        "status {:?}: {}/{} nodes, slots {:?}/{}, {} keys, {} ops/s",
        summary.status,
        summary.nodes_connected,
        summary.nodes_total,
        summary.slots_covered,
        summary.slots_total,
        summary.keys,
        summary.ops_per_sec
    );
    for node in &summary.memory {
        println!("  {:<22} {:>10} bytes used", node.addr, node.used_bytes);
    }
    for alert in &summary.active_alerts {
        println!("  ALERT {alert:?}");
    }
    if summary.active_alerts.is_empty() {
        println!("  no active alerts");
    }
    Ok(())
}
