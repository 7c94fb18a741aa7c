//! Health probes of one node: through a client's node connections and through a `NodeProber`.

mod common;

use std::time::{Duration, Instant};

use cluster_client::{Error, NodeProbe, NodeProber};
use cluster_config::ClusterConfig;
use local_cluster::{LocalCluster, LocalStandalone, test_lock};

const TIMEOUT: Duration = Duration::from_secs(2);

fn check_cluster_node(node: &str, probe: &NodeProbe) {
    assert!(
        probe.ping > Duration::ZERO && probe.ping < TIMEOUT,
        "{node}: {probe:?}"
    );
    assert!(
        probe
            .info
            .as_deref()
            .unwrap_or_default()
            .contains("cluster_enabled:1"),
        "{node}: {probe:?}"
    );
    let view = probe
        .cluster
        .as_ref()
        .unwrap_or_else(|| panic!("{node}: no cluster view"));
    assert!(view.info.contains("cluster_state:ok"), "{node}: {view:?}");
    let me = view.nodes.lines().find(|line| line.contains("myself"));
    assert!(me.is_some_and(|line| line.contains(node)), "{node}: {view:?}");
}

/// A loopback port nothing listens on.
fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let addr = listener.local_addr().expect("its address");
    drop(listener);
    addr.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_probes_known_and_unknown_nodes_on_connections_of_their_own() {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let client = common::client(&cluster).await;
    let nodes: Vec<String> = client.topology().nodes().map(str::to_owned).collect();
    assert_eq!(nodes.len(), 6, "{nodes:?}");
    for node in &nodes {
        let probe = client.probe_node(node, TIMEOUT).await.unwrap();
        check_cluster_node(node, &probe);
        // The second probe reuses the probe connection and answers the same way.
        check_cluster_node(node, &client.probe_node(node, TIMEOUT).await.unwrap());
    }
    // Probes go on connections no call uses: a node's routed calls and counters are untouched.
    let commands: u64 = client.node_stats().iter().map(|s| s.commands).sum();
    assert_eq!(commands, 0, "{:?}", client.node_stats());

    // A node the client does not know is opened for the probe, as a node named by MOVED would be.
    let standalone = LocalStandalone::start(1).await.unwrap();
    let other = standalone.addrs()[0].clone();
    let probe = client.probe_node(&other, TIMEOUT).await.unwrap();
    assert!(
        probe
            .info
            .as_deref()
            .unwrap_or_default()
            .contains("cluster_enabled:0")
            && probe.cluster.is_none(),
        "{probe:?}"
    );

    // Nothing listening: a connection error at once, not a wait for the timeout.
    let started = Instant::now();
    let error = client.probe_node(&closed_port(), TIMEOUT).await.unwrap_err();
    assert!(matches!(error, Error::Connection { .. }), "{error:?}");
    assert!(started.elapsed() < TIMEOUT, "{:?}", started.elapsed());

    let error = client.probe_node(&nodes[0], Duration::ZERO).await.unwrap_err();
    assert!(matches!(error, Error::InvalidDuration { .. }), "{error:?}");
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prober_needs_no_client_and_reports_unreachable_nodes_as_errors() {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let dead = closed_port();
    // A prober starts whether or not any node answers: it opens nothing until asked.
    let config = ClusterConfig::builder().nodes([dead.clone()]).build().unwrap();
    let prober = NodeProber::new(&config);
    let error = prober.probe(&dead, TIMEOUT).await.unwrap_err();
    assert!(matches!(error, Error::Connection { .. }), "{error:?}");
    for node in cluster.seeds() {
        let probe = prober.probe(&node, TIMEOUT).await.unwrap();
        check_cluster_node(&node, &probe);
    }
    let error = prober.probe("not an address", TIMEOUT).await.unwrap_err();
    assert!(matches!(error, Error::UnknownNode { .. }), "{error:?}");
    prober.close();
}
