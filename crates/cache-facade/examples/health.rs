//! The cluster's health: a summary, per-node memory, alerts.
//!
//! ```sh
//! export REDIS_CLUSTER_NODES=...    # from `cargo xtask cluster-up`
//! cargo run -p cache-facade --example health
//! ```

use cache_facade::Cache;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cache = Cache::from_env().await?;
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
