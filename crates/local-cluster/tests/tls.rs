//! TLS-only nodes: a 3 + 3 cluster formed over TLS (cluster bus and replication included), and
//! standalone nodes that require a client certificate.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use local_cluster::{LocalCluster, LocalClusterConfig, LocalStandalone, Role, TlsClientAuth, test_lock};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_forms_replicates_and_closes_its_plain_ports() {
    let _lock = test_lock::shared().await.unwrap();
    let started = Instant::now();
    let cluster = LocalCluster::start(LocalClusterConfig {
        tls: Some(TlsClientAuth::Optional),
        ..LocalClusterConfig::default()
    })
    .await
    .unwrap();
    eprintln!("TLS 3+3 cluster ready in {:?}", started.elapsed());
    let tls = cluster.tls().expect("a TLS cluster has certificates");
    assert!(tls.ca_file().is_file() && tls.client_key_file().is_file());
    assert!(cluster.nodes_env().starts_with("rediss://127.0.0.1:"));
    // The ports the nodes announce are the TLS ports the cluster was started on.
    let topology = cluster.topology().await.unwrap();
    let mut announced: Vec<u16> = topology
        .iter()
        .filter_map(|n| n.addr.as_ref().map(|a| a.port()))
        .collect();
    let mut ports: Vec<u16> = cluster.nodes().iter().map(|n| n.port()).collect();
    announced.sort_unstable();
    ports.sort_unstable();
    assert_eq!(announced, ports);
    // Replication runs over TLS: every replica's link is up (the start already waited for it).
    for node in cluster.nodes() {
        if node.initial_role() == Role::Replica {
            let info = node.info("replication").await.unwrap();
            assert_eq!(info.get("master_link_status"), Some("up"), "{}", node.addr());
        }
    }
    // The plain port is closed; a plain-text PING on the TLS port gets no reply.
    let node = &cluster.nodes()[0];
    let mut plain = tokio::net::TcpStream::connect(("127.0.0.1", node.port()))
        .await
        .unwrap();
    plain.write_all(b"PING\r\n").await.unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(2), plain.read(&mut buf)).await;
    assert!(
        !matches!(read, Ok(Ok(n)) if buf[..n].starts_with(b"+PONG")),
        "a TLS port answered plain text"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_nodes_can_require_client_certificates() {
    let _lock = test_lock::shared().await.unwrap();
    let nodes = LocalStandalone::start_tls(2, TlsClientAuth::Required)
        .await
        .unwrap();
    let pong: String = nodes.nodes()[1].command(["PING"]).await.unwrap();
    assert_eq!(pong, "PONG");
    let config = nodes.config_builder().build().unwrap();
    assert!(config.tls());
    assert_eq!(config.nodes().len(), 2);
}
