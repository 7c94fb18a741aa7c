use cluster_client::{Bytes, ClusterClient};
use local_cluster::{ClusterSpec, LocalCluster};
use warmup::{Entry, Source, Warmup, WarmupConfig};
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cluster = LocalCluster::start(ClusterSpec::default()).await?;
    let client = ClusterClient::connect(cluster_config::ClusterConfig::builder().nodes(cluster.seeds()).build()?).await?;
    let w = Warmup::new(client.clone(), WarmupConfig::default().validation(None))?;
    let value = Bytes::from(vec![b'x'; 100]);
    let sets: Vec<Vec<Entry>> = (0..3).map(|_| (0..1_000_000).map(|i| Entry::new(format!("warm:{i:07}"), value.clone())).collect()).collect();
    eprintln!("ready {}", std::process::id());
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    for s in sets {
        let t = std::time::Instant::now();
        let r = w.run(Source::entries(s)).await?;
        eprintln!("{:.0}/s {:?}", r.entries_per_second(), t.elapsed());
    }
    Ok(())
}
