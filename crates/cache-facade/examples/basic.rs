//! Typed reads and writes against a running cluster.
//!
//! ```sh
//! cargo xtask cluster-up            # prints the export line
//! export REDIS_CLUSTER_NODES=...    # as printed
//! cargo run -p cache-facade --example basic
//! ```

use std::time::Duration;

use cache_facade::Cache;

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Session {
    user: u64,
    roles: Vec<String>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cache = Cache::from_env().await?;
    let session = Session {
        user: 42,
        roles: vec!["admin".into()],
    };
    cache
        .set("session:abc", &session, Some(Duration::from_secs(600)))
        .await?;
    let back: Option<Session> = cache.get("session:abc").await?;
    println!("read back: {back:?}");
    println!("ttl: {:?}", cache.ttl("session:abc").await?);

    let many = cache
        .get_many::<Session, _>(&["session:abc", "session:none"])
        .await;
    println!("get_many: {many:?}");
    println!("deleted: {}", cache.delete("session:abc").await?);
    println!("stats: {:?}", cache.stats());
    Ok(())
}
