//! Warm a cold cluster: 100,000 typed entries, critical ones first, with progress.
//!
//! ```sh
//! export REDIS_CLUSTER_NODES=...    # from `cargo xtask cluster-up`
//! cargo run --release -p cache-facade --example warm_up
//! ```

use std::time::Duration;

use cache_facade::{Cache, Priority, WarmupConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cache = Cache::from_env().await?;
    let mut entries = Vec::with_capacity(100_000);
    for i in 0..100_000u32 {
        let priority = if i < 1_000 {
            Priority::Critical
        } else {
            Priority::Normal
        };
        // Encoded with the cache's codec (and namespace), so `get` reads it back typed.
        let entry = cache.entry(format!("price:{i}"), &(i * 3))?;
        entries.push(entry.ttl(Duration::from_secs(3600)).priority(priority));
    }
    let report = cache
        .warm_up_with_progress(entries, WarmupConfig::default(), |p| {
            eprint!(
                "\r{} written, {:.0} entries/s   ",
                p.written, p.entries_per_second
            );
        })
        .await?;
    eprintln!();
    println!(
        "written {}, failed {}, rejected {}, {:.0} entries/s; validation: {:?}",
        report.written,
        report.failed,
        report.rejected,
        report.entries_per_second(),
        report.validation.map(|v| (v.checked, v.bad_entries))
    );
    println!("price:7 = {:?}", cache.get::<u32>("price:7").await?);
    Ok(())
}
