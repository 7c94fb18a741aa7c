//! Online ring changes of client-sharded deployments, without a mover: what every call does with a
//! key whose owner changed while the reshard is in progress, and what finishing and aborting do.

use std::time::Duration;

use cluster_client::{ClusterClient, Error, SetCondition, SetOptions, Ttl};
use cluster_config::{ClusterConfig, Mode};
use local_cluster::{LocalStandalone, test_lock};

type TestResult = Result<(), Box<dyn std::error::Error>>;

async fn on_node(
    cluster: &LocalStandalone,
    addr: &str,
    key: &str,
) -> Result<Option<Vec<u8>>, Box<dyn std::error::Error>> {
    let node = cluster
        .nodes()
        .iter()
        .find(|n| n.addr() == addr)
        .ok_or("not a test node")?;
    Ok(node.command(["GET", key]).await?)
}

fn ring(addrs: &[String]) -> Vec<(String, u32)> {
    addrs.iter().map(|a| (a.clone(), 1)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_on_moved_keys_use_both_owners_until_the_ring_switches() -> TestResult {
    let _lock = test_lock::exclusive().await?;
    let cluster = LocalStandalone::start(3).await?;
    let addrs = cluster.addrs();
    let config = ClusterConfig::builder()
        .nodes(&addrs[..2])
        .mode(Mode::Sharded)
        .build()?;
    let client = ClusterClient::connect(config).await?;
    let keys: Vec<String> = (0..1_000).map(|i| format!("k:{i}")).collect();
    for key in &keys {
        client
            .set(
                key.as_bytes(),
                key.as_bytes(),
                SetOptions::ttl(Duration::from_secs(600)),
            )
            .await?;
    }

    let reshard = client.begin_reshard(ring(&addrs)).await?;
    assert_eq!(client.topology().shards().len(), 3);
    let moved: Vec<&String> = keys
        .iter()
        .filter(|k| reshard.moved(k.as_bytes()).is_some())
        .collect();
    assert!(moved.len() > 200 && moved.len() < 500, "{}", moved.len());
    assert!(
        moved
            .iter()
            .all(|k| reshard.moved(k.as_bytes()).is_some_and(|m| m.to == addrs[2]))
    );

    // Nothing is copied, yet every read finds every key: single and batched, GET, EXISTS and PTTL.
    for key in &moved {
        assert_eq!(client.get(key.as_bytes()).await?.as_deref(), Some(key.as_bytes()));
        assert!(client.exists(key.as_bytes()).await?);
        assert!(matches!(client.pttl(key.as_bytes()).await?, Ttl::Expires(_)));
    }
    for (key, value) in keys.iter().zip(client.get_many(&keys).await) {
        assert_eq!(value?.as_deref(), Some(key.as_bytes()));
    }
    assert_eq!(client.get(b"k:absent").await?, None);

    // A write goes to the new owner and deletes the old copy; a delete removes both.
    let (written, deleted) = (moved[0].as_str(), moved[1].as_str());
    let old = reshard.moved(written.as_bytes()).ok_or("moved")?.from;
    client
        .set(written.as_bytes(), b"new", SetOptions::default())
        .await?;
    assert_eq!(
        on_node(&cluster, &addrs[2], written).await?.as_deref(),
        Some(&b"new"[..])
    );
    assert_eq!(on_node(&cluster, &old, written).await?, None);
    // A key only on its old owner exists for conditional sets.
    let (nx, xx) = (moved[10].as_str(), moved[11].as_str());
    assert!(
        !client
            .set(
                nx.as_bytes(),
                b"nx",
                SetOptions::default().condition(SetCondition::IfAbsent)
            )
            .await?
    );
    assert_eq!(client.get(nx.as_bytes()).await?.as_deref(), Some(nx.as_bytes()));
    assert!(
        client
            .set(
                xx.as_bytes(),
                b"xx",
                SetOptions::default().condition(SetCondition::IfPresent)
            )
            .await?
    );
    assert_eq!(client.get(xx.as_bytes()).await?.as_deref(), Some(&b"xx"[..]));
    assert!(
        client
            .set(
                b"k:brand-new",
                b"nx",
                SetOptions::default().condition(SetCondition::IfAbsent)
            )
            .await?
    );
    assert!(
        !client
            .set(
                b"k:never",
                b"xx",
                SetOptions::default().condition(SetCondition::IfPresent)
            )
            .await?
    );
    assert!(client.del(deleted.as_bytes()).await?);
    assert_eq!(client.get(deleted.as_bytes()).await?, None);
    assert!(!client.del(deleted.as_bytes()).await?);

    // The same in batches.
    let batch: Vec<(String, String, Option<Duration>)> = moved[2..6]
        .iter()
        .map(|k| (k.to_string(), format!("batched {k}"), None))
        .collect();
    for result in client.set_many(&batch).await {
        result?;
    }
    for (key, value, _) in &batch {
        let from = reshard.moved(key.as_bytes()).ok_or("moved")?.from;
        assert_eq!(on_node(&cluster, &from, key).await?, None, "{key}: old copy left");
        assert_eq!(
            on_node(&cluster, &addrs[2], key).await?.as_deref(),
            Some(value.as_bytes())
        );
    }
    let gone: Vec<&String> = moved[6..10].to_vec();
    let existed = client.del_many(&gone).await;
    assert!(existed.iter().all(|r| matches!(r, Ok(true))), "{existed:?}");
    for value in client.get_many(&gone).await {
        assert_eq!(value?, None);
    }

    // Turning around: the old ring serves again and still sees the write made on the new owner.
    let reverse = reshard.abort()?;
    assert_eq!(client.topology().shards().len(), 2);
    assert_eq!(
        client.get(written.as_bytes()).await?.as_deref(),
        Some(&b"new"[..])
    );
    assert_eq!(client.get(deleted.as_bytes()).await?, None);
    assert!(matches!(
        client.begin_reshard(ring(&addrs)).await,
        Err(Error::ReshardInProgress { .. })
    ));
    // Finishing without copying is a plain ring switch: the keys left on the new node are lost to it.
    reverse.finish()?;
    assert!(client.reshard_in_progress().is_none());
    assert_eq!(client.get(written.as_bytes()).await?, None);
    client.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_client_sharded_deployments_reshard() -> TestResult {
    let _lock = test_lock::exclusive().await?;
    let cluster = LocalStandalone::start(1).await?;
    let client = ClusterClient::connect(ClusterConfig::builder().nodes(cluster.addrs()).build()?).await?;
    let error = client
        .begin_reshard(vec![(cluster.addrs()[0].clone(), 1)])
        .await
        .err()
        .ok_or("a standalone client resharded")?;
    assert!(matches!(error, Error::NotSharded { .. }), "{error}");
    assert!(error.to_string().contains("client-sharded"), "{error}");
    client.close().await;
    Ok(())
}
