//! What a versioned write costs the server, per key, against a plain `SET`.
//!
//! 1. Execution, from the server's own accounting (`INFO commandstats`: microseconds per call) on a
//!    fresh local cluster of one primary and its replica, values with a TTL: plain `SET`; one
//!    `LWW_SCRIPT` call per key, journaled (it reads `INFO replication`) and not; `LWW_MANY_SCRIPT`
//!    in calls of 1, 2, 8 and 64 keys, for absent keys and for keys holding an older version.
//!    Parsing requests and writing replies come on top for every command alike.
//! 2. The ceiling of any script-based write, in keys/s, with `redis-benchmark` against one
//!    standalone node (`-c 50`, 124-byte values, 20,000 keys, 3 runs, medians): `SET -P 16`, the
//!    batch baseline of `cargo xtask load`, against scripts that do nothing but the commands a
//!    last-write-wins write cannot do without, 64 keys a call: one `SET` a key (the most a script
//!    can do for a key), and `SET NX GET` then `SET` (what a write over a stored value needs: read
//!    it to compare, then write). No version decision, no journal, no client work: a real versioned
//!    write costs more than these.
//!
//! Run with `cargo run --release -p consistency --example script_cost`.

use bytes::Bytes;
use cluster_client::{ClusterClient, Script};
use cluster_config::ClusterConfig;
use consistency::{Envelope, LWW_MANY_SCRIPT, LWW_SCRIPT, Version};
use local_cluster::{LocalCluster, LocalClusterConfig, LocalStandalone, Node};

const KEYS: usize = 64_000;
/// Keys per `LWW_MANY_SCRIPT` call: single writes of concurrent tasks meet in small groups, batches in full ones.
const GROUPS: [usize; 4] = [1, 2, 8, 64];
const CHUNK: usize = 1_000;

/// `usec_per_call` of `command` since the last `CONFIG RESETSTAT`.
async fn usec_per_call(node: &Node, command: &str) -> f64 {
    let stats: String = node.command(["INFO", "commandstats"]).await.expect("INFO");
    stats
        .lines()
        .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:")))
        .and_then(|fields| fields.split(',').find_map(|f| f.strip_prefix("usec_per_call=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

async fn reset(node: &Node, flush: bool) {
    if flush {
        node.command::<(), _, _>(["FLUSHALL"]).await.expect("FLUSHALL");
    }
    node.command::<(), _, _>(["CONFIG", "RESETSTAT"])
        .await
        .expect("RESETSTAT");
}

fn envelope(version: Version) -> Vec<u8> {
    Envelope::Value {
        version,
        payload: &[b'x'; 100],
    }
    .encode()
}

async fn single(client: &ClusterClient, script: &Script, keys: &[Vec<u8>], values: &[Vec<u8>], mark: bool) {
    for (keys, values) in keys.chunks(CHUNK).zip(values.chunks(CHUNK)) {
        let calls: Vec<(&[u8], Vec<&[u8]>)> = keys
            .iter()
            .zip(values)
            .map(|(k, v)| {
                let mut args: Vec<&[u8]> = vec![v, b"0", b"newer"];
                if mark {
                    args.push(b"mark");
                }
                (&k[..], args)
            })
            .collect();
        for reply in client.eval_many(script, &calls).await {
            reply.expect("LWW_SCRIPT");
        }
    }
}

async fn grouped(
    client: &ClusterClient,
    script: &Script,
    keys: &[Vec<u8>],
    values: &[Vec<u8>],
    group: usize,
) {
    for (keys, values) in keys.chunks(CHUNK).zip(values.chunks(CHUNK)) {
        let groups = client
            .eval_grouped(script, keys, group, |indexes| {
                let mut args: Vec<Bytes> = vec![Bytes::from_static(b"newer"), Bytes::from_static(b"mark")];
                for &i in indexes {
                    args.extend([
                        Bytes::copy_from_slice(&keys[i]),
                        Bytes::copy_from_slice(&values[i]),
                        Bytes::from_static(b"600000"),
                    ]);
                }
                args
            })
            .await
            .expect("no reshard");
        for group in groups {
            group.result.expect("LWW_MANY_SCRIPT");
        }
    }
}

#[tokio::main]
async fn main() {
    let cluster = LocalCluster::start(LocalClusterConfig {
        masters: 1,
        replicas_per_master: 1,
        ..LocalClusterConfig::default()
    })
    .await
    .expect("a one-primary cluster starts");
    let node = &cluster.nodes()[0];
    let config = ClusterConfig::builder()
        .nodes(cluster.seeds())
        .build()
        .expect("config");
    let client = ClusterClient::connect(config).await.expect("connects");
    let keys: Vec<Vec<u8>> = (0..KEYS).map(|i| format!("cost:{i}").into_bytes()).collect();
    let version = |millis: u64| Version::new(consistency::Hlc::new(millis, 0), consistency::WriterId(7));
    let older: Vec<Vec<u8>> = (0..KEYS).map(|_| envelope(version(1_000))).collect();
    let newer: Vec<Vec<u8>> = (0..KEYS).map(|_| envelope(version(2_000))).collect();
    let (one, many) = (Script::new(LWW_SCRIPT), Script::new(LWW_MANY_SCRIPT));

    println!("server execution per key ({KEYS} keys, 124-byte envelopes, `INFO commandstats`):");
    reset(node, true).await;
    for (keys, values) in keys.chunks(CHUNK).zip(older.chunks(CHUNK)) {
        let entries: Vec<(&[u8], &[u8], Option<std::time::Duration>)> = keys
            .iter()
            .zip(values)
            .map(|(k, v)| (&k[..], &v[..], None))
            .collect();
        for result in client.set_many(&entries).await {
            result.expect("SET");
        }
    }
    let set = usec_per_call(node, "set").await;
    println!("  plain SET                                  {set:6.2} µs");
    for (mark, name) in [
        (false, "LWW_SCRIPT, no journal"),
        (true, "LWW_SCRIPT, journaled (INFO)"),
    ] {
        reset(node, true).await;
        single(&client, &one, &keys, &older, mark).await;
        let cost = usec_per_call(node, "evalsha").await;
        println!("  {name:<42} {cost:6.2} µs  ({:.1}x SET)", cost / set);
    }
    for group in GROUPS {
        reset(node, true).await;
        grouped(&client, &many, &keys, &older, group).await;
        let absent = usec_per_call(node, "evalsha").await / group as f64;
        reset(node, false).await;
        grouped(&client, &many, &keys, &newer, group).await;
        let present = usec_per_call(node, "evalsha").await / group as f64;
        println!(
            "  LWW_MANY_SCRIPT, {group:>2} a call: absent {absent:6.2} µs ({:.1}x SET), older stored {present:6.2} µs ({:.1}x SET)",
            absent / set,
            present / set
        );
    }
    client.close().await;
    drop(cluster);
    ceiling().await;
}

/// Scripts that only run the commands a versioned write needs, `GROUP` keys a call (`ARGV`: key,
/// value, key, value, ...).
const ONE_SET: &str =
    "for i = 1, #ARGV, 2 do redis.pcall('SET', ARGV[i], ARGV[i + 1], 'PX', 600000) end return 1";
const READ_THEN_SET: &str = "for i = 1, #ARGV, 2 do \
    redis.pcall('SET', ARGV[i], ARGV[i + 1], 'PX', 600000, 'NX', 'GET') \
    redis.pcall('SET', ARGV[i], ARGV[i + 1], 'PX', 600000) end return 1";
const GROUP: usize = 64;
const RUNS: usize = 3;

/// Requests per second `redis-benchmark` reports for `args` against `port`.
fn benchmark(port: u16, args: &[String]) -> f64 {
    let output = std::process::Command::new("redis-benchmark")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-c",
            "50",
            "-r",
            "20000",
            "--csv",
        ])
        .args(args)
        .output()
        .expect("redis-benchmark runs (Debian package redis-tools, installed with redis-server)");
    let text = String::from_utf8_lossy(&output.stdout);
    // `"test","rps",...`: the second field of the last line.
    text.lines()
        .last()
        .and_then(|line| line.split(',').nth(1))
        .and_then(|rps| rps.trim_matches('"').parse().ok())
        .unwrap_or_else(|| panic!("no rate in redis-benchmark's output: {text}"))
}

fn median(mut runs: Vec<f64>) -> f64 {
    runs.sort_by(f64::total_cmp);
    runs[runs.len() / 2]
}

async fn ceiling() {
    let node = LocalStandalone::start(1).await.expect("a standalone node starts");
    let port = node.nodes()[0].port();
    let value = "x".repeat(124);
    let set: Vec<String> = [
        "-P",
        "16",
        "-n",
        "1000000",
        "SET",
        "key:__rand_int__",
        &value,
        "PX",
        "600000",
    ]
    .map(String::from)
    .to_vec();
    let set_rate = median((0..RUNS).map(|_| benchmark(port, &set)).collect());
    println!(
        "\nthe ceiling of script-based writes (one standalone node, redis-benchmark -c 50, {GROUP} keys a call, medians of {RUNS}):"
    );
    println!(
        "  SET -P 16                                {:8.0} keys/s",
        set_rate
    );
    for (name, script) in [
        ("one SET a key", ONE_SET),
        ("SET NX GET, then SET, a key", READ_THEN_SET),
    ] {
        let sha: String = node.nodes()[0]
            .command(["SCRIPT", "LOAD", script])
            .await
            .expect("SCRIPT LOAD");
        let mut args: Vec<String> = ["-n", "20000", "EVALSHA", &sha, "0"].map(String::from).to_vec();
        for i in 0..GROUP {
            args.extend([format!("k{i}:__rand_int__"), value.clone()]);
        }
        let keys = median((0..RUNS).map(|_| benchmark(port, &args) * GROUP as f64).collect());
        println!(
            "  script: {name:<32} {keys:8.0} keys/s  ({:.2}x SET -P 16)",
            keys / set_rate
        );
    }
}
