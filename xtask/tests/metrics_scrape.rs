//! Every series the Grafana dashboard (docker/grafana/dashboards/) and the alert rules
//! (docs/alerts.yml) query is one the product really exports: a real cluster, a cache doing real
//! calls, one warm-up, one health round, then a scrape of the real `/metrics` endpoint. In a test
//! binary of its own because `metrics` allows one global recorder per process.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use cache_facade::{Cache, ClusterConfig, WarmupConfig};
use local_cluster::{LocalCluster, test_lock};
use regex::Regex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../docker/grafana/dashboards/redis-cluster-cache.json"
);
const ALERTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/alerts.yml");

fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    listener.local_addr().expect("a bound address")
}

/// `GET /metrics` over a plain HTTP/1.0 connection (no chunking); returns the body.
async fn scrape(addr: SocketAddr) -> Result<String, Box<dyn std::error::Error>> {
    let mut stream =
        tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr)).await??;
    stream
        .write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut raw)).await??;
    let text = String::from_utf8(raw)?;
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no end of headers")?;
    assert!(head.starts_with("HTTP/1.") && head.contains(" 200"), "{head}");
    Ok(body.to_string())
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// The `rcc_` series names PromQL expressions query (metric names are their only `rcc_` words).
fn series_in<'a>(exprs: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    let name = Regex::new(r"\brcc_[a-z0-9_]+").expect("a valid pattern");
    exprs
        .into_iter()
        .flat_map(|expr| name.find_iter(expr).map(|m| m.as_str().to_string()))
        .collect()
}

/// The series the dashboard's panels query (`panels[].targets[].expr`).
fn dashboard_series() -> BTreeSet<String> {
    let dashboard: serde_json::Value = serde_json::from_str(&read(DASHBOARD)).expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("a panels list");
    series_in(
        panels
            .iter()
            .flat_map(|p| p["targets"].as_array().into_iter().flatten())
            .filter_map(|t| t["expr"].as_str()),
    )
}

/// The series the alert rules query (`groups[].rules[].expr`).
fn alert_series() -> BTreeSet<String> {
    let alerts: serde_norway::Value = serde_norway::from_str(&read(ALERTS)).expect("the rules are YAML");
    let groups = alerts["groups"].as_sequence().expect("a groups list");
    series_in(
        groups
            .iter()
            .flat_map(|g| g["rules"].as_sequence().into_iter().flatten())
            .filter_map(|r| r["expr"].as_str()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_series_the_dashboard_and_the_alerts_query_is_exported() -> TestResult {
    let addr = free_addr();
    let _handle = cache_facade::install_prometheus(addr)?;
    let _lock = test_lock::shared().await?;
    let cluster = LocalCluster::shared().await?;
    let config = ClusterConfig::builder()
        .nodes(cluster.seeds())
        .metrics_enabled(true)
        .build()?;
    let cache = Cache::connect(config).await?;

    // One warm-up, then reads that hit and miss and a write, then one health round.
    let entries = (0u64..200)
        .map(|i| cache.entry(format!("xtask:scrape:{i}"), &i))
        .collect::<Result<Vec<_>, _>>()?;
    let report = cache.warm_up(entries, WarmupConfig::default()).await?;
    assert_eq!(report.written, 200, "{report:?}");
    for i in 0u64..200 {
        assert_eq!(cache.get::<u64>(format!("xtask:scrape:{i}")).await?, Some(i));
    }
    assert_eq!(cache.get::<u64>("xtask:scrape:absent").await?, None);
    cache.set("xtask:scrape:written", &1u64, None).await?;
    cache
        .cluster_health_summary()
        .await
        .ok_or("health collection is on by default")?;

    let body = scrape(addr).await?;
    let exported: BTreeSet<&str> = body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let mut missing = Vec::new();
    for (file, names) in [("dashboard", dashboard_series()), ("alerts", alert_series())] {
        assert!(!names.is_empty(), "no rcc_ series found in the {file}");
        for name in names {
            if !exported.contains(name.as_str()) {
                missing.push(format!("{file}: {name}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "queried but not exported: {missing:#?}\nexported: {exported:#?}"
    );

    // Every series of the product has the one prefix, latency is a histogram (buckets, no
    // precomputed quantiles), and no label that names a node is empty.
    let ours: Vec<&str> = body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    for line in &ours {
        assert!(
            line.starts_with("rcc_"),
            "a series without the rcc_ prefix: {line}"
        );
        assert!(!line.contains("quantile=\""), "a precomputed quantile: {line}");
        for label in ["node=\"\"", "replica=\"\"", "subject=\"\""] {
            assert!(!line.contains(label), "an empty label: {line}");
        }
    }
    for histogram in [
        "rcc_client_command_duration_seconds",
        "rcc_cache_operation_duration_seconds",
    ] {
        assert!(
            body.contains(&format!("# TYPE {histogram} histogram")),
            "{histogram} is not a histogram:\n{body}"
        );
    }
    assert!(
        body.contains("# HELP rcc_client_commands_total") && body.contains("# HELP rcc_warmup_entries"),
        "the descriptions are served"
    );
    cache.client().close().await;
    Ok(())
}
