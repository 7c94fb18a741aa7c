//! What a versioned write costs the server, per key, against a plain `SET`, read from the server's
//! own accounting (`INFO commandstats`: microseconds of execution per call) on a fresh one-primary
//! local cluster: plain `SET`; one `LWW_SCRIPT` call per key, journaled (it reads `INFO replication`)
//! and not; `LWW_MANY_SCRIPT` over groups of 64 keys, for absent keys and for keys holding an older
//! version. Execution only: parsing requests and writing replies come on top for every command alike.
//!
//! Run with `cargo run --release -p consistency --example script_cost`.

use bytes::Bytes;
use cluster_client::{ClusterClient, Script};
use cluster_config::ClusterConfig;
use consistency::{Envelope, LWW_MANY_SCRIPT, LWW_SCRIPT, Version};
use local_cluster::{LocalCluster, LocalClusterConfig, Node};

const KEYS: usize = 64_000;
const GROUP: usize = 64;
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

async fn grouped(client: &ClusterClient, script: &Script, keys: &[Vec<u8>], values: &[Vec<u8>]) {
    for (keys, values) in keys.chunks(CHUNK).zip(values.chunks(CHUNK)) {
        let groups = client
            .eval_grouped(script, keys, GROUP, |indexes| {
                let mut args: Vec<Bytes> = vec![Bytes::from_static(b"newer"), Bytes::from_static(b"mark")];
                for &i in indexes {
                    args.extend([
                        Bytes::copy_from_slice(&keys[i]),
                        Bytes::copy_from_slice(&values[i]),
                        Bytes::from_static(b"0"),
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
        replicas_per_master: 0,
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
    reset(node, true).await;
    grouped(&client, &many, &keys, &older).await;
    let absent = usec_per_call(node, "evalsha").await / GROUP as f64;
    println!(
        "  LWW_MANY_SCRIPT, 64 a call, absent keys    {absent:6.2} µs  ({:.1}x SET)",
        absent / set
    );
    reset(node, false).await;
    grouped(&client, &many, &keys, &newer).await;
    let present = usec_per_call(node, "evalsha").await / GROUP as f64;
    println!(
        "  LWW_MANY_SCRIPT, 64 a call, older stored   {present:6.2} µs  ({:.1}x SET)",
        present / set
    );
    client.close().await;
}
