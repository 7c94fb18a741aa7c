//! TLS on real `redis-server --tls-port` processes (`tls-cluster yes`, `tls-replication yes`, plain
//! ports closed) with certificates generated at start: every operation, discovery of the TLS ports, a
//! kill -9 under load, a wrong CA, mutual TLS, standalone and sharded modes, and a plain client against a
//! TLS port.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use cluster_client::{ClusterClient, Deployment, Error, Script, SetOptions, Ttl};
use cluster_config::ClusterConfig;
use local_cluster::{LocalCluster, LocalClusterConfig, LocalStandalone, TlsClientAuth, test_lock};

/// Well under any connect timeout used here: a refused certificate must fail at once, not time out.
const FAST: Duration = Duration::from_millis(1500);

async fn tls_cluster() -> LocalCluster {
    LocalCluster::start(LocalClusterConfig {
        tls: Some(TlsClientAuth::Optional),
        ..LocalClusterConfig::default()
    })
    .await
    .expect("a TLS 3+3 cluster starts (needs redis-server built with TLS, as Debian's is)")
}

async fn connect(config: ClusterConfig) -> ClusterClient {
    ClusterClient::connect(config)
        .await
        .unwrap_or_else(|error| panic!("client connects: {error}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_runs_over_tls_and_discovery_keeps_the_tls_ports() {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = tls_cluster().await;
    // One seed only: every other node, replicas included, is learned from the cluster.
    let tls = cluster.tls().expect("TLS cluster");
    let config = ClusterConfig::builder()
        .nodes([format!("rediss://{}", cluster.seeds()[0])])
        .tls_ca_file(tls.ca_file())
        .command_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let client = connect(config).await;
    assert_eq!(client.deployment(), Deployment::Cluster);

    // The nodes the client learned are exactly the TLS ports the nodes listen on.
    let learned: BTreeSet<String> = client.topology().nodes().map(str::to_owned).collect();
    let started: BTreeSet<String> = cluster.seeds().into_iter().collect();
    assert_eq!(learned, started);

    let keys: Vec<Vec<u8>> = (0..200).map(|i| format!("tls:op:{i}").into_bytes()).collect();
    for key in &keys {
        assert!(client.set(key, b"v1", SetOptions::default()).await.unwrap());
    }
    for key in &keys {
        assert_eq!(client.get(key).await.unwrap().as_deref(), Some(&b"v1"[..]));
    }
    assert!(client.exists(&keys[0]).await.unwrap());
    assert!(client.pexpire(&keys[0], Duration::from_secs(60)).await.unwrap());
    assert!(matches!(client.pttl(&keys[0]).await.unwrap(), Ttl::Expires(_)));
    let script = Script::new("return redis.call('GET', KEYS[1])");
    let value = client.eval(&script, &[&keys[1]], &[]).await.unwrap();
    assert!(format!("{value:?}").contains("v1"), "{value:?}");
    let entries: Vec<(Vec<u8>, Vec<u8>, Option<Duration>)> =
        keys.iter().map(|k| (k.clone(), b"v2".to_vec(), None)).collect();
    for result in client.set_many(&entries).await {
        result.unwrap();
    }
    for result in client.get_many(&keys).await {
        assert_eq!(result.unwrap().as_deref(), Some(&b"v2"[..]));
    }
    // WAIT reaches the replicas, which replicate over TLS.
    assert!(client.wait(&keys[2], 1, Duration::from_secs(5)).await.unwrap() >= 1);
    assert!(client.del(&keys[0]).await.unwrap());
    for result in client.del_many(&keys[1..]).await {
        assert!(result.unwrap());
    }
    assert_eq!(client.get(&keys[3]).await.unwrap(), None);
    // Every node, replicas included, was reached over TLS.
    assert_eq!(client.node_stats().len(), 6);
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_primary_is_replaced_over_tls_within_the_failover_bounds() {
    let _lock = test_lock::exclusive().await.unwrap();
    let cluster = tls_cluster().await;
    let config = cluster
        .config_builder()
        .command_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let client = connect(config).await;
    let keys = common::keys("tls-kill", 3000);
    let victim = cluster.primary_for_slot(0).await.unwrap();
    let topology = client.topology();
    let victim_addr = victim.addr();
    let dead_shard: Vec<usize> = (0..keys.len())
        .filter(|&i| topology.shard_for_key(&keys[i]).unwrap().primary == victim_addr)
        .collect();
    assert!(!dead_shard.is_empty() && dead_shard.len() < keys.len());

    let load = common::Load::start(&client, keys.clone(), 8, Duration::ZERO);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let killed = Instant::now();
    victim.kill().unwrap();
    cluster
        .wait_for_promotion(victim, Duration::from_secs(20))
        .await
        .unwrap();
    let promoted_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let calls = load.stop().await;

    let healthy_failures = calls
        .iter()
        .filter(|c| !c.ok && !dead_shard.contains(&c.key))
        .count();
    let first_success_after = calls
        .iter()
        .filter(|c| c.ok && dead_shard.contains(&c.key) && c.started > killed)
        .map(|c| c.started)
        .min()
        .expect("the dead shard serves again");
    let longest = calls.iter().map(|c| c.took).max().unwrap();
    eprintln!(
        "TLS kill -9 drill: {} calls, {healthy_failures} failed on healthy shards, promotion seen {:?} after \
         the kill, first success on the dead shard {:?} after the kill, longest call {longest:?}",
        calls.len(),
        promoted_at - killed,
        first_success_after - killed,
    );
    assert_eq!(healthy_failures, 0, "healthy shards kept serving");
    assert!(
        first_success_after <= promoted_at + Duration::from_secs(1),
        "the dead shard served again {:?} after the promotion was seen",
        first_success_after.saturating_duration_since(promoted_at)
    );
    assert!(
        longest <= Duration::from_millis(1300),
        "no call beyond its 1 s timeout (+300 ms scheduling slack): {longest:?}"
    );
    client.close().await;
}

/// A CA that signed nothing the servers use.
fn other_ca(dir: &std::path::Path) -> std::path::PathBuf {
    let ca = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let path = dir.join("other-ca.crt");
    std::fs::write(&path, ca.cert.pem()).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_is_refused_at_once_with_a_typed_error() {
    let _lock = test_lock::shared().await.unwrap();
    let nodes = LocalStandalone::start_tls(1, TlsClientAuth::Optional)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = ClusterConfig::builder()
        .nodes([format!("rediss://{}", nodes.addrs()[0])])
        .tls_ca_file(other_ca(dir.path()))
        .connect_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let started = Instant::now();
    let result = ClusterClient::connect(config).await;
    let took = started.elapsed();
    let error = result.expect_err("an untrusted certificate is refused");
    let message = error.to_string();
    eprintln!("wrong CA refused in {took:?}: {message}");
    assert!(matches!(error, Error::TlsUntrusted { .. }), "{error:?}");
    assert!(message.contains("REDIS_TLS_CA_FILE"), "{message}");
    assert!(message.contains("not trusted"), "{message}");
    assert!(
        took < FAST,
        "refused after {took:?}, well under the 5 s connect timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_needs_the_client_certificate_in_standalone_mode() {
    let _lock = test_lock::shared().await.unwrap();
    let nodes = LocalStandalone::start_tls(1, TlsClientAuth::Required)
        .await
        .unwrap();
    let tls = nodes.tls().unwrap();
    let without = ClusterConfig::builder()
        .nodes([format!("rediss://{}", nodes.addrs()[0])])
        .tls_ca_file(tls.ca_file())
        .connect_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let started = Instant::now();
    let refused = ClusterClient::connect(without).await;
    let took = started.elapsed();
    let message = refused
        .expect_err("no client certificate, no connection")
        .to_string();
    eprintln!("without a client certificate, refused in {took:?}: {message}");
    assert!(message.contains("REDIS_TLS_CERT_FILE"), "{message}");
    assert!(took < FAST, "refused after {took:?}");

    let client = connect(
        nodes
            .config_builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .unwrap(),
    )
    .await;
    assert_eq!(client.deployment(), Deployment::Standalone);
    assert!(
        client
            .set(b"tls:mutual", b"yes", SetOptions::default())
            .await
            .unwrap()
    );
    assert_eq!(
        client.get(b"tls:mutual").await.unwrap().as_deref(),
        Some(&b"yes"[..])
    );
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_mode_spreads_keys_over_tls_nodes() {
    let _lock = test_lock::shared().await.unwrap();
    let nodes = LocalStandalone::start_tls(2, TlsClientAuth::Optional)
        .await
        .unwrap();
    let client = connect(nodes.config_builder().build().unwrap()).await;
    assert_eq!(client.deployment(), Deployment::ShardedKetama);
    let keys: Vec<Vec<u8>> = (0..100).map(|i| format!("tls:shard:{i}").into_bytes()).collect();
    for key in &keys {
        assert!(client.set(key, b"s", SetOptions::default()).await.unwrap());
        assert_eq!(client.get(key).await.unwrap().as_deref(), Some(&b"s"[..]));
    }
    for node in nodes.nodes() {
        let size: i64 = node.command(["DBSIZE"]).await.unwrap();
        assert!(size > 0, "{} holds none of the keys", node.addr());
    }
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_client_against_a_tls_port_gets_a_clear_error_at_once() {
    let _lock = test_lock::shared().await.unwrap();
    let nodes = LocalStandalone::start_tls(1, TlsClientAuth::Optional)
        .await
        .unwrap();
    let config = ClusterConfig::builder()
        .nodes(nodes.addrs())
        .connect_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let started = Instant::now();
    let result = ClusterClient::connect(config).await;
    let took = started.elapsed();
    let message = result
        .expect_err("a plain client cannot talk to a TLS port")
        .to_string();
    eprintln!("plain client against a TLS port, refused in {took:?}: {message}");
    assert!(message.contains("rediss://"), "{message}");
    assert!(
        took < FAST,
        "refused after {took:?}, well under the 5 s connect timeout"
    );
}
