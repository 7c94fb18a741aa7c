//! Load-on-miss with single flight: 100 concurrent callers, one loader run.
//!
//! ```sh
//! export REDIS_CLUSTER_NODES=...    # from `cargo xtask cluster-up`
//! cargo run -p cache-facade --example get_or_load
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cache_facade::Cache;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cache = Cache::from_env().await?;
    cache.delete("report:today").await?;
    let loads = Arc::new(AtomicUsize::new(0));
    let callers = (0..100).map(|_| {
        let cache = cache.clone();
        let loads = loads.clone();
        tokio::spawn(async move {
            cache
                .get_or_load("report:today", Some(Duration::from_secs(60)), || async move {
                    loads.fetch_add(1, Ordering::SeqCst);
                    // Stands in for a slow database query.
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Ok::<_, std::io::Error>(vec![1u32, 2, 3])
                })
                .await
        })
    });
    for result in futures::future::join_all(callers).await {
        result??;
    }
    println!("100 callers, loader ran {} time(s)", loads.load(Ordering::SeqCst));
    println!("stats: {:?}", cache.stats());
    Ok(())
}
