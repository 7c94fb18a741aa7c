//! The Prometheus endpoint over real HTTP. In a test binary of its own because `metrics` allows one
//! global recorder per process.
#![cfg(feature = "prometheus")]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use cluster_client::{ClusterClient, SetOptions};
use cluster_config::ClusterConfig;
use health::{Error, HealthChecker, HealthConfig, HealthStatus, install_prometheus};
use local_cluster::{LocalCluster, test_lock};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// One sample of the text exposition format.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the text exposition format (what `/metrics` serves): `# TYPE` lines and samples.
fn parse_exposition(text: &str) -> (BTreeMap<String, String>, Vec<Sample>) {
    let mut types = BTreeMap::new();
    let mut samples = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest
                .split_once(' ')
                .unwrap_or_else(|| panic!("bad TYPE line {line:?}"));
            types.insert(name.to_string(), kind.to_string());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad sample {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|e| panic!("bad value in {line:?}: {e}"));
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let body = rest
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("unclosed labels in {line:?}"));
                let labels = body
                    .split("\",")
                    .filter(|kv| !kv.is_empty())
                    .map(|kv| {
                        let (k, v) = kv
                            .split_once("=\"")
                            .unwrap_or_else(|| panic!("bad label {kv:?} in {line:?}"));
                        (k.to_string(), v.trim_end_matches('"').to_string())
                    })
                    .collect();
                (name, labels)
            }
            None => (series, BTreeMap::new()),
        };
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    (types, samples)
}

/// `GET path` over a plain TCP connection; returns the status line and the body (de-chunked).
async fn http_get(addr: SocketAddr, path: &str) -> Result<(String, String), Box<dyn std::error::Error>> {
    let mut stream =
        tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr)).await??;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut raw)).await??;
    let text = String::from_utf8(raw)?;
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no end of headers")?;
    let status = head.lines().next().unwrap_or_default().to_string();
    let chunked = head
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding: chunked"));
    if !chunked {
        return Ok((status, body.to_string()));
    }
    let mut decoded = String::new();
    let mut rest = body;
    loop {
        let (size, after) = rest.split_once("\r\n").ok_or("bad chunk header")?;
        let size = usize::from_str_radix(size.trim(), 16)?;
        if size == 0 {
            break;
        }
        decoded.push_str(after.get(..size).ok_or("short chunk")?);
        rest = after.get(size + 2..).ok_or("short chunk trailer")?;
    }
    Ok((status, decoded))
}

fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    listener.local_addr().expect("a bound address")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_over_http_with_the_cluster_values() -> TestResult {
    let addr = free_addr();
    let handle = install_prometheus(addr)?;
    // A second recorder is refused with an error, not a panic.
    assert!(matches!(
        install_prometheus(free_addr()),
        Err(Error::RecorderAlreadyInstalled)
    ));

    let _lock = test_lock::shared().await?;
    let cluster = LocalCluster::shared().await?;
    let config = ClusterConfig::builder().nodes(cluster.seeds()).build()?;
    let client = ClusterClient::connect(config.clone()).await?;
    // The shared cluster of this test binary holds only these keys.
    for i in 0..100 {
        client
            .set(
                format!("health:prometheus:{i}").as_bytes(),
                b"v",
                SetOptions::default(),
            )
            .await?;
    }
    let health = HealthConfig::from_config(&config)
        .to_builder()
        .record_metrics(true)
        .build()?;
    let checker = HealthChecker::for_client(&client, health)?;
    let round = checker.check_now().await;
    assert_eq!(
        round.summary.status,
        HealthStatus::Healthy,
        "{:#?}",
        round.summary.active_alerts
    );

    let (status, body) = http_get(addr, "/metrics").await?;
    assert!(status.contains(" 200"), "{status}");
    let (types, samples) = parse_exposition(&body);
    // The handle renders the same series (values may move between the two reads).
    let names = |samples: &[Sample]| {
        samples
            .iter()
            .map(|s| s.name.clone())
            .collect::<std::collections::BTreeSet<_>>()
    };
    assert_eq!(names(&parse_exposition(&handle.render()).1), names(&samples));
    let per_node = |name: &str| -> BTreeMap<String, f64> {
        samples
            .iter()
            .filter(|s| s.name == name)
            .map(|s| (s.labels.get("node").cloned().unwrap_or_default(), s.value))
            .collect()
    };
    let one = |name: &str| -> f64 {
        let matching: Vec<&Sample> = samples.iter().filter(|s| s.name == name).collect();
        assert_eq!(matching.len(), 1, "{name}: {matching:?}");
        matching[0].value
    };
    let mut nodes = cluster.seeds();
    nodes.sort();
    for (metric, expected) in [
        ("rcc_node_up", 1.0),
        ("rcc_node_cluster_state_ok", 1.0),
        ("rcc_node_cluster_slots_assigned", 16_384.0),
        ("rcc_node_cluster_slots_ok", 16_384.0),
        ("rcc_node_cluster_slots_pfail", 0.0),
        ("rcc_node_cluster_slots_fail", 0.0),
        ("rcc_node_cluster_known_nodes", 6.0),
        ("rcc_node_cluster_size", 3.0),
    ] {
        let values = per_node(metric);
        assert_eq!(
            values.keys().cloned().collect::<Vec<_>>(),
            nodes,
            "{metric}: one series per node"
        );
        assert!(
            values.values().all(|v| *v == expected),
            "{metric}: {values:?}, expected {expected}"
        );
    }
    let primaries: Vec<String> = cluster.primaries().await?.iter().map(|n| n.addr()).collect();
    let slaves = per_node("rcc_node_connected_replicas");
    for (node, count) in &slaves {
        let expected = if primaries.contains(node) { 1.0 } else { 0.0 };
        assert_eq!(*count, expected, "rcc_node_connected_replicas of {node}");
    }
    let keys: f64 = samples
        .iter()
        .filter(|s| s.name == "rcc_node_db_keys" && primaries.contains(&s.labels["node"]))
        .map(|s| s.value)
        .sum();
    assert_eq!(keys, 100.0, "keys on the primaries");
    for node in &primaries {
        let dbsize: u64 = cluster
            .node_by_port(node.rsplit(':').next().unwrap_or_default().parse()?)
            .ok_or("a node")?
            .command(["DBSIZE"])
            .await?;
        let exported = samples
            .iter()
            .find(|s| s.name == "rcc_node_db_keys" && s.labels["node"] == *node && s.labels["db"] == "db0")
            .map_or(0.0, |s| s.value);
        assert_eq!(
            exported, dbsize as f64,
            "rcc_node_db_keys of {node} against DBSIZE"
        );
    }
    assert_eq!(one("rcc_slots_covered"), 16_384.0);
    assert_eq!(one("rcc_nodes_connected"), 6.0);
    assert_eq!(one("rcc_nodes_total"), 6.0);
    assert_eq!(one("rcc_health_status"), 0.0);
    assert_eq!(one("rcc_replicas_per_primary"), 1.0);
    // The client's own series, recorded by cluster-client as the calls happened.
    let commands: f64 = per_node("rcc_client_commands_total").values().sum();
    assert!(commands >= 100.0, "the client's commands: {commands}");
    for (name, kind) in [
        ("rcc_node_up", "gauge"),
        ("rcc_node_keyspace_hits_total", "counter"),
        ("rcc_failovers_total", "counter"),
        // Latency is a histogram with buckets (install_prometheus sets them), never precomputed
        // quantiles that cannot be aggregated.
        ("rcc_client_command_duration_seconds", "histogram"),
    ] {
        assert_eq!(
            types.get(name).map(String::as_str),
            Some(kind),
            "# TYPE of {name}"
        );
    }
    assert!(
        samples
            .iter()
            .any(|s| s.name == "rcc_client_command_duration_seconds_bucket"
                && s.labels.get("le").map(String::as_str) == Some("0.001")),
        "the latency histogram has the configured buckets"
    );
    assert!(
        !samples.iter().any(|s| s.labels.contains_key("quantile")),
        "no precomputed quantiles are exported"
    );
    assert!(
        body.contains("# HELP rcc_node_cluster_slots_ok"),
        "descriptions are served"
    );

    // A second round updates the same series in place.
    checker.check_now().await;
    let (_, again) = http_get(addr, "/metrics").await?;
    let (_, samples) = parse_exposition(&again);
    let rounds = samples
        .iter()
        .find(|s| s.name == "rcc_health_rounds_total")
        .map(|s| s.value);
    assert_eq!(rounds, Some(2.0));
    client.close().await;
    Ok(())
}
