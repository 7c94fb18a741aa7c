//! Rebalancing real clusters (started by each test, with spare nodes) under load through
//! cluster-client: add and remove primaries, weighted rebalance, resume after a dropped future, keys
//! the target already holds, and bad input.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use cluster_client::{ClusterClient, SetOptions, Value};
use cluster_config::ClusterConfig;
use local_cluster::{LocalCluster, LocalClusterConfig, LocalStandalone, Node, Role};
use rebalance::{BusyKeyPolicy, Error, RebalanceConfig, Rebalancer, Weights};

async fn start(masters: usize, replicas: usize, spares: usize) -> LocalCluster {
    LocalCluster::start(LocalClusterConfig {
        masters,
        replicas_per_master: replicas,
        spares,
        ..LocalClusterConfig::default()
    })
    .await
    .expect("cluster starts")
}

async fn client(cluster: &LocalCluster) -> ClusterClient {
    let config = ClusterConfig::builder()
        .nodes(cluster.seeds())
        .command_timeout(Duration::from_secs(1))
        .build()
        .expect("valid config");
    ClusterClient::connect(config).await.expect("client connects")
}

/// Writes `count` keys of 100 bytes (`{prefix}:i` → the value of [`value_of`]).
async fn preload(client: &ClusterClient, prefix: &str, count: usize) {
    for chunk in (0..count).collect::<Vec<_>>().chunks(500) {
        let writes = chunk.iter().map(|&i| {
            let key = format!("{prefix}:{i}");
            let value = value_of(prefix, i);
            async move {
                client
                    .set(key.as_bytes(), value.as_bytes(), SetOptions::default())
                    .await
            }
        });
        for result in futures::future::join_all(writes).await {
            result.expect("preload write");
        }
    }
}

fn value_of(prefix: &str, i: usize) -> String {
    format!("{prefix}:{i}:{}", "v".repeat(80))
}

async fn check_preloaded(client: &ClusterClient, prefix: &str, count: usize) {
    for i in 0..count {
        let key = format!("{prefix}:{i}");
        let value = client.get(key.as_bytes()).await.expect("read back");
        assert_eq!(
            value.as_deref(),
            Some(value_of(prefix, i).as_bytes()),
            "key {key} after the move"
        );
    }
}

/// One load task's problems, and each of its keys' last acknowledged value.
type Outcome = (Vec<String>, HashMap<String, String>);

/// Writer+reader tasks through cluster-client: each task owns its keys, writes a new value, reads
/// it back; every error and every wrong read is kept.
struct Load {
    stop: Arc<AtomicBool>,
    calls: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<Outcome>>,
}

impl Load {
    fn start(client: &ClusterClient, tasks: usize, keys_per_task: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let calls = Arc::new(AtomicUsize::new(0));
        let tasks = (0..tasks)
            .map(|task| {
                let (client, stop, calls) = (client.clone(), stop.clone(), calls.clone());
                tokio::spawn(async move {
                    let mut problems = Vec::new();
                    let mut last = HashMap::new();
                    let mut round = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        for k in 0..keys_per_task {
                            let key = format!("load:{task}:{k}");
                            let value = format!("{task}:{k}:{round}");
                            match client
                                .set(key.as_bytes(), value.as_bytes(), SetOptions::default())
                                .await
                            {
                                Ok(_) => {
                                    last.insert(key.clone(), value.clone());
                                }
                                Err(e) => problems.push(format!("SET {key}: {e}")),
                            }
                            match client.get(key.as_bytes()).await {
                                Ok(read) if read.as_deref() == Some(value.as_bytes()) => {}
                                Ok(read) => problems.push(format!("GET {key}: {read:?} instead of {value}")),
                                Err(e) => problems.push(format!("GET {key}: {e}")),
                            }
                            calls.fetch_add(2, Ordering::Relaxed);
                        }
                        round += 1;
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    (problems, last)
                })
            })
            .collect();
        Load { stop, calls, tasks }
    }

    /// Stops the tasks; returns every problem and each key's last acknowledged value.
    async fn stop(self) -> (usize, Vec<String>, HashMap<String, String>) {
        self.stop.store(true, Ordering::Relaxed);
        let mut problems = Vec::new();
        let mut last = HashMap::new();
        for task in self.tasks {
            let (p, l) = task.await.expect("load task");
            problems.extend(p);
            last.extend(l);
        }
        (self.calls.load(Ordering::Relaxed), problems, last)
    }
}

async fn check_last_values(client: &ClusterClient, last: &HashMap<String, String>) {
    for (key, value) in last {
        let read = client.get(key.as_bytes()).await.expect("read back");
        assert_eq!(read.as_deref(), Some(value.as_bytes()), "{key} after the move");
    }
}

/// Slot counts per primary, by each primary's own `CLUSTER NODES` line.
async fn slot_counts(cluster: &LocalCluster) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for node in cluster.nodes().iter().chain(cluster.spares()) {
        let text: String = node.command(["CLUSTER", "NODES"]).await.expect("cluster nodes");
        let lines = replies::parse_cluster_nodes(&text).expect("parse");
        if let Some(me) = lines.iter().find(|l| l.has_flag("myself"))
            && me.is_primary()
            && me.slot_count() > 0
        {
            counts.insert(node.addr(), me.slot_count());
        }
    }
    counts
}

/// Slot counts of `primaries` only.
async fn primary_slots(cluster: &LocalCluster, primaries: &[String]) -> Vec<usize> {
    let counts = slot_counts(cluster).await;
    primaries
        .iter()
        .map(|p| counts.get(p).copied().unwrap_or(0))
        .collect()
}

/// Waits until every node of `nodes` agrees on every slot's owner and the cluster is `ok`.
async fn wait_agreement(nodes: &[&Node]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut views = Vec::new();
        let mut ok = true;
        for node in nodes {
            let text: String = node.command(["CLUSTER", "NODES"]).await.expect("cluster nodes");
            let mut owners: Vec<(u16, String)> = replies::parse_cluster_nodes(&text)
                .expect("parse")
                .into_iter()
                .flat_map(|l| {
                    let id = l.id.clone();
                    l.slots.into_iter().flat_map(move |r| {
                        let id = id.clone();
                        r.slots().map(move |s| (s, id.clone()))
                    })
                })
                .collect();
            owners.sort();
            views.push(owners);
            let info = node.cluster_info().await.expect("cluster info");
            ok &= info.get("cluster_state") == Some("ok");
        }
        if ok && views.windows(2).all(|w| w[0] == w[1]) && views[0].len() == 16384 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nodes did not agree on slot owners in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn config() -> RebalanceConfig {
    RebalanceConfig::builder().build().expect("valid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_a_primary_with_a_replica_under_load() {
    let _lock = local_cluster::test_lock::exclusive().await.expect("lock");
    let cluster = start(3, 1, 2).await;
    let client = client(&cluster).await;
    preload(&client, "pre", 5_000).await;
    let (primary, replica) = (cluster.spares()[0].addr(), cluster.spares()[1].addr());

    let load = Load::start(&client, 8, 50);
    let progress_calls = Arc::new(AtomicUsize::new(0));
    let seen = progress_calls.clone();
    let rebalancer = Rebalancer::new(client.clone(), config()).on_progress(move |p| {
        assert!(p.slots_done <= p.slots_total);
        seen.fetch_add(1, Ordering::Relaxed);
    });
    let report = rebalancer
        .add_primary(&primary, &[replica.as_str()])
        .await
        .expect("add primary");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (calls, problems, last) = load.stop().await;
    println!("{report}; {calls} calls under load");

    assert!(
        problems.is_empty(),
        "{} problems, first: {:?}",
        problems.len(),
        &problems[..problems.len().min(5)]
    );
    assert!(calls > 1_000, "the load ran ({calls} calls)");
    check_preloaded(&client, "pre", 5_000).await;
    check_last_values(&client, &last).await;

    // A quarter of the slots moved to the new primary, and every primary is within 2% of 4096.
    assert!((4000..=4200).contains(&report.slot_count()), "{report}");
    assert!(report.slots.iter().all(|s| s.to == primary));
    assert!(report.keys > 1_000, "{report}");
    assert!(progress_calls.load(Ordering::Relaxed) >= report.slot_count());
    let counts = slot_counts(&cluster).await;
    assert_eq!(counts.len(), 4, "{counts:?}");
    for (node, count) in &counts {
        assert!((4014..=4178).contains(count), "{node} holds {count} slots");
    }
    let check = rebalancer
        .validate_distribution(&Weights::new())
        .await
        .expect("check");
    assert!(check.slots.verdict.is_balanced(), "{:?}", check.slots);
    assert!(check.keys.verdict.is_balanced(), "{:?}", check.keys);
    println!("memory: {:?}", check.memory.verdict);
    assert_eq!(check.primaries.len(), 4);

    // The replica follows the new primary with its link up.
    let replica_node = &cluster.spares()[1];
    assert_eq!(replica_node.role().await.expect("role"), Role::Replica);
    let info = replica_node.info("replication").await.expect("info");
    assert_eq!(info.master_port, Some(cluster.spares()[0].port()));
    assert_eq!(info.master_link_up, Some(true));
    let mut all: Vec<&Node> = cluster.nodes().iter().collect();
    all.extend(cluster.spares());
    wait_agreement(&all).await;
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_a_primary_under_load() {
    let _lock = local_cluster::test_lock::exclusive().await.expect("lock");
    let cluster = start(4, 1, 0).await;
    let client = client(&cluster).await;
    preload(&client, "pre", 4_000).await;
    let removed = cluster.primaries().await.expect("primaries")[1];
    let removed_addr = removed.addr();
    let removed_id = removed.node_id().await.expect("id");
    let replica = cluster.replicas_of(removed).await.expect("replicas")[0];
    // Another process's client, idle during the move and refreshing its slot table only every 10
    // minutes: it still routes the removed primary's slots there afterwards, and that node, reset,
    // answers CLUSTERDOWN. Its calls must find the new owners within their deadline.
    let bystander = ClusterClient::connect(
        ClusterConfig::builder()
            .nodes(cluster.seeds())
            .command_timeout(Duration::from_secs(1))
            .topology_refresh_interval(Duration::from_secs(600))
            .build()
            .expect("valid config"),
    )
    .await
    .expect("client connects");

    let load = Load::start(&client, 8, 50);
    let rebalancer = Rebalancer::new(client.clone(), config());
    let report = rebalancer
        .remove_primary(&removed_addr)
        .await
        .expect("remove primary");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (calls, problems, last) = load.stop().await;
    println!("{report}; {calls} calls under load");

    assert!(
        problems.is_empty(),
        "{} problems, first: {:?}",
        problems.len(),
        &problems[..problems.len().min(5)]
    );
    check_preloaded(&client, "pre", 4_000).await;
    check_preloaded(&bystander, "pre", 4_000).await;
    bystander.close().await;
    check_last_values(&client, &last).await;
    assert_eq!(report.slot_count(), 4096, "{report}");
    assert!(report.slots.iter().all(|s| s.from == removed_addr));

    // It no longer knows the cluster, and no other node knows it.
    let keys: i64 = removed.command(["DBSIZE"]).await.expect("dbsize");
    assert_eq!(keys, 0);
    let text: String = removed.command(["CLUSTER", "NODES"]).await.expect("nodes");
    assert_eq!(
        text.trim().lines().count(),
        1,
        "the removed node still knows others:\n{text}"
    );
    let others: Vec<&Node> = cluster
        .nodes()
        .iter()
        .filter(|n| n.port() != removed.port())
        .collect();
    for node in &others {
        let text: String = node.command(["CLUSTER", "NODES"]).await.expect("nodes");
        assert!(
            !text.contains(&removed_id),
            "{} still knows the removed node:\n{text}",
            node.addr()
        );
    }
    // Its replica now follows another primary, and the client no longer routes to it.
    let info = replica.info("replication").await.expect("info");
    assert_ne!(info.master_port, Some(removed.port()));
    assert_eq!(info.master_link_up, Some(true));
    assert!(
        client.topology().nodes().all(|n| n != removed_addr),
        "{:?}",
        client.topology()
    );
    let counts = slot_counts(&cluster).await;
    assert_eq!(counts.len(), 3);
    assert!(counts.values().all(|&c| (5461..=5462).contains(&c)), "{counts:?}");
    wait_agreement(&others).await;
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_rebalance_with_byte_bounded_batches() {
    let _lock = local_cluster::test_lock::exclusive().await.expect("lock");
    let cluster = start(3, 0, 0).await;
    let client = client(&cluster).await;
    preload(&client, "pre", 3_000).await;
    let primaries: Vec<String> = cluster
        .primaries()
        .await
        .expect("primaries")
        .iter()
        .map(|n| n.addr())
        .collect();
    // Up to 100,000 keys per MIGRATE, but at most 1 KiB: the byte bound cuts every batch to a few keys.
    let config = RebalanceConfig::builder()
        .keys_per_batch(100_000)
        .bytes_per_batch(1024)
        .build()
        .expect("valid");
    let rebalancer = Rebalancer::new(client.clone(), config);
    let weights = Weights::new().with(primaries[0].clone(), 2.0);
    let plan = rebalancer.plan(&weights).await.expect("plan");
    assert_eq!(
        plan.shares()
            .iter()
            .find(|s| s.node == primaries[0])
            .map(|s| s.slots_after),
        Some(8192)
    );
    let report = rebalancer.rebalance(&weights).await.expect("rebalance");
    println!("{report}");
    assert_eq!(report.slot_count(), plan.moved_slot_count());
    check_preloaded(&client, "pre", 3_000).await;
    let counts = slot_counts(&cluster).await;
    assert_eq!(counts[&primaries[0]], 8192, "{counts:?}");
    let check = rebalancer.validate_distribution(&weights).await.expect("check");
    assert!(check.slots.verdict.is_balanced(), "{:?}", check.slots);
    assert!(check.keys.verdict.is_balanced(), "{:?}", check.keys);
    // Against equal weights the same cluster is skewed, which the check says.
    let skewed = rebalancer
        .validate_distribution(&Weights::new())
        .await
        .expect("check");
    assert!(!skewed.slots.verdict.is_balanced());
    // Planning again with the same weights moves nothing.
    assert!(rebalancer.plan(&weights).await.expect("plan").is_empty());

    // Weight 0 drains a primary. Redis turns a primary that lost its last slot into a replica of the
    // node that took it (`cluster-allow-replica-migration`, on by default), possibly before our
    // `SETSLOT NODE` for that last slot reaches it; the move is complete all the same.
    let drain = weights.clone().with(primaries[2].clone(), 0.0);
    let report = rebalancer.rebalance(&drain).await.expect("a drain to weight 0");
    assert!(report.slot_count() > 0, "{report}");
    check_preloaded(&client, "pre", 3_000).await;
    let counts = slot_counts(&cluster).await;
    assert_eq!(counts.get(&primaries[2]).copied().unwrap_or(0), 0, "{counts:?}");
    client.close().await;
}

/// A key in `slot`: `{prefix}:n` for the first n that hashes there.
fn key_in_slot(prefix: &str, slot: u16) -> String {
    (0u64..)
        .map(|n| format!("{{{prefix}-{n}}}"))
        .find(|k| sharding::key_slot(k.as_bytes()) == slot)
        .expect("a key for every slot")
}

/// The lowest slot `node` serves.
async fn lowest_slot(node: &Node) -> u16 {
    let text: String = node.command(["CLUSTER", "NODES"]).await.expect("nodes");
    let lines = replies::parse_cluster_nodes(&text).expect("parse");
    lines.iter().find(|l| l.has_flag("myself")).expect("myself").slots[0].start()
}

/// Runs `rebalance(weights)` and drops its future (the "crash") once `keys` keys moved.
async fn crash_mid_slot(client: &ClusterClient, config: &RebalanceConfig, weights: &Weights, keys: u64) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let rebalancer = Rebalancer::new(client.clone(), config.clone()).on_progress(move |p| {
        if p.keys_moved >= keys {
            let _ = tx.send(());
        }
    });
    tokio::select! {
        result = rebalancer.rebalance(weights) => panic!("the move ended before it was dropped: {result:?}"),
        _ = rx.recv() => {}
    }
}

/// Every key `{tag}:i` of 0..count holds `value i`.
async fn check_tagged(client: &ClusterClient, tag: &str, count: usize) {
    for i in 0..count {
        let key = format!("{tag}:{i}");
        let value = client.get(key.as_bytes()).await.expect("get");
        assert_eq!(value.as_deref(), Some(format!("value {i}").as_bytes()), "{key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_finishes_a_move_whose_future_was_dropped() {
    let _lock = local_cluster::test_lock::exclusive().await.expect("lock");
    let cluster = start(2, 0, 0).await;
    let client = client(&cluster).await;
    let primaries = cluster.primaries().await.expect("primaries");
    let a = primaries[0].addr();
    // Draining b moves its lowest slots first: fill the two lowest with 400 keys each (hash tags).
    let first = lowest_slot(primaries[1]).await;
    let tags = [key_in_slot("t", first), key_in_slot("t", first + 1)];
    for tag in &tags {
        for i in 0..400 {
            let key = format!("{tag}:{i}");
            let value = format!("value {i}");
            client
                .set(key.as_bytes(), value.as_bytes(), SetOptions::default())
                .await
                .expect("set");
        }
    }
    let config = RebalanceConfig::builder()
        .keys_per_batch(5)
        .batches_in_flight(1)
        .concurrent_slots(1)
        .build()
        .expect("valid");
    let drain_b = Weights::new().with(primaries[1].addr(), 0.0);

    // First crash: the slot is left migrating; a new rebalancer (a new process) finishes it.
    crash_mid_slot(&client, &config, &drain_b, 20).await;
    let text: String = primaries[1].command(["CLUSTER", "NODES"]).await.expect("nodes");
    assert!(
        text.contains(&format!("[{first}->-")),
        "slot {first} is not left migrating:\n{text}"
    );
    let rebalancer = Rebalancer::new(client.clone(), config.clone());
    let report = rebalancer
        .resume()
        .await
        .unwrap_or_else(|e| panic!("resume: {e}"));
    assert_eq!((report.slot_count(), report.resumed_count()), (1, 1), "{report}");
    assert_eq!(
        (report.slots[0].slot, report.slots[0].to.as_str()),
        (first, a.as_str())
    );
    assert!(report.keys > 0 && report.keys < 400, "{report}");
    for node in &primaries {
        let text: String = node.command(["CLUSTER", "NODES"]).await.expect("nodes");
        assert!(
            !text.contains("->-") && !text.contains("-<-"),
            "open migration left:\n{text}"
        );
    }
    let on_a: i64 = primaries[0]
        .command(["CLUSTER", "COUNTKEYSINSLOT", &first.to_string()])
        .await
        .expect("count");
    let on_b: i64 = primaries[1]
        .command(["CLUSTER", "COUNTKEYSINSLOT", &first.to_string()])
        .await
        .expect("count");
    assert_eq!(
        (on_a, on_b),
        (400, 0),
        "every key of the slot is on its new owner"
    );
    wait_agreement(&primaries).await;
    check_tagged(&client, &tags[0], 400).await;

    // Second crash, on the next slot: the next mutating call finishes it before anything else, and
    // then has nothing to do (both primaries are within 2% of an even share).
    crash_mid_slot(&client, &config, &drain_b, 20).await;
    let report = rebalancer
        .rebalance(&Weights::new())
        .await
        .unwrap_or_else(|e| panic!("rebalance after the second crash: {e}"));
    assert_eq!((report.slot_count(), report.resumed_count()), (1, 1), "{report}");
    assert_eq!(report.slots[0].slot, first + 1);
    wait_agreement(&primaries).await;
    client.refresh_topology().await.expect("refresh");
    for slot in [first, first + 1] {
        let owner = client.topology().shard_for_slot(slot).map(|s| s.primary.clone());
        assert_eq!(owner.as_deref(), Some(a.as_str()), "slot {slot}");
    }
    check_tagged(&client, &tags[0], 400).await;
    check_tagged(&client, &tags[1], 400).await;
    client.close().await;
}

/// Puts `slot` half-way into a move from `a` to `b` (`b` importing), with `key` on both: "old" on
/// `a`, and "new" on `b`, written through ASKING as a client redirected by ASK would.
async fn key_on_both(client: &ClusterClient, a: &Node, b: &Node, slot: u16, key: &str) {
    let a_id = a.node_id().await.expect("id");
    client
        .set(key.as_bytes(), b"old", SetOptions::default())
        .await
        .expect("set old");
    for i in 0..20 {
        let other = format!("{key}:other:{i}");
        client
            .set(other.as_bytes(), b"x", SetOptions::default())
            .await
            .expect("set");
    }
    let s = slot.to_string();
    b.command::<(), _, _>(["CLUSTER", "SETSLOT", s.as_str(), "IMPORTING", a_id.as_str()])
        .await
        .expect("importing");
    let admin = client.admin();
    let timeout = Duration::from_secs(1);
    let _: Value = admin
        .command(&b.addr(), vec!["ASKING".into()], timeout)
        .await
        .expect("asking");
    let _: Value = admin
        .command(&b.addr(), vec!["SET".into(), key.into(), "new".into()], timeout)
        .await
        .expect("set new on the target");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_the_target_already_holds_keeps_the_targets_copy() {
    let _lock = local_cluster::test_lock::exclusive().await.expect("lock");
    let cluster = start(2, 0, 0).await;
    let client = client(&cluster).await;
    let primaries = cluster.primaries().await.expect("primaries");
    let (a, b) = (primaries[0], primaries[1]);
    let (slot, abort_slot) = (100u16, 101u16);
    let key = key_in_slot("busy", slot);
    key_on_both(&client, a, b, slot, &key).await;

    // Abort: the move stops with a typed error and touches neither copy.
    let abort_key = key_in_slot("busy", abort_slot);
    key_on_both(&client, a, b, abort_slot, &abort_key).await;
    let abort = RebalanceConfig::builder()
        .busy_key_policy(BusyKeyPolicy::Abort)
        .build()
        .expect("valid");
    // Only the abort slot is open for this run: the other one is set back to the plain state first.
    b.command::<(), _, _>(["CLUSTER", "SETSLOT", &slot.to_string(), "STABLE"])
        .await
        .expect("stable");
    let error = Rebalancer::new(client.clone(), abort)
        .resume()
        .await
        .expect_err("abort");
    assert!(
        matches!(error, Error::BusyKey { slot: s, .. } if s == abort_slot),
        "{error}"
    );
    let old: Option<Vec<u8>> = a.command(["GET", abort_key.as_str()]).await.expect("get on a");
    assert_eq!(old.as_deref(), Some(&b"old"[..]));

    // KeepTarget (the default): the target's copy stays, the source's goes, the other keys move.
    b.command::<(), _, _>([
        "CLUSTER",
        "SETSLOT",
        &slot.to_string(),
        "IMPORTING",
        &a.node_id().await.expect("id"),
    ])
    .await
    .expect("importing again");
    let rebalancer = Rebalancer::new(client.clone(), config());
    let report = rebalancer.resume().await.expect("resume");
    println!("{report}");
    assert_eq!(report.slot_count(), 2, "{report}");
    let busy: Vec<&[u8]> = report.busy_keys.iter().map(|k| &k.key[..]).collect();
    assert_eq!(busy.len(), 2, "{report}");
    assert!(busy.contains(&key.as_bytes()) && busy.contains(&abort_key.as_bytes()));
    for (k, s) in [(&key, slot), (&abort_key, abort_slot)] {
        client.refresh_topology().await.expect("refresh");
        assert_eq!(
            client.get(k.as_bytes()).await.expect("get").as_deref(),
            Some(&b"new"[..]),
            "{k}"
        );
        let on_b: i64 = b
            .command(["CLUSTER", "COUNTKEYSINSLOT", &s.to_string()])
            .await
            .expect("count");
        assert_eq!(on_b, 21);
        let on_a: i64 = a
            .command(["CLUSTER", "COUNTKEYSINSLOT", &s.to_string()])
            .await
            .expect("count");
        assert_eq!(on_a, 0);
    }
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gives_typed_errors_and_changes_nothing() {
    let _lock = local_cluster::test_lock::exclusive().await.expect("lock");
    let cluster = start(2, 0, 3).await;
    let client = client(&cluster).await;
    let rebalancer = Rebalancer::new(client.clone(), config());
    let primaries: Vec<String> = cluster
        .primaries()
        .await
        .expect("primaries")
        .iter()
        .map(|n| n.addr())
        .collect();
    let before = primary_slots(&cluster, &primaries).await;

    let e = rebalancer.remove_primary("127.0.0.1:1").await.unwrap_err();
    assert!(matches!(e, Error::UnknownPrimary { .. }), "{e}");
    assert!(e.to_string().contains(&primaries[0]), "{e}");
    let e = rebalancer.add_primary("127.0.0.1:1", &[]).await.unwrap_err();
    assert!(matches!(e, Error::NodeUnreachable { .. }), "{e}");
    let e = rebalancer.add_primary(&primaries[1], &[]).await.unwrap_err();
    assert!(matches!(e, Error::AlreadyMember { role: "primary", .. }), "{e}");

    // A spare serving a slot is not empty; two spares that met are in another cluster.
    let spares = cluster.spares();
    spares[0]
        .command::<(), _, _>(["CLUSTER", "ADDSLOTS", "5"])
        .await
        .expect("addslots");
    let e = rebalancer.add_primary(&spares[0].addr(), &[]).await.unwrap_err();
    assert!(matches!(e, Error::NodeNotEmpty { slots: 1, .. }), "{e}");
    let port = spares[2].port().to_string();
    spares[1]
        .command::<(), _, _>(["CLUSTER", "MEET", "127.0.0.1", port.as_str()])
        .await
        .expect("meet");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let e = loop {
        let e = rebalancer.add_primary(&spares[1].addr(), &[]).await.unwrap_err();
        if matches!(e, Error::NodeInOtherCluster { .. }) || tokio::time::Instant::now() > deadline {
            break e;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(matches!(e, Error::NodeInOtherCluster { .. }), "{e}");
    // A replica that is the new primary itself, or named twice.
    let e = rebalancer
        .add_primary(&spares[2].addr(), &[spares[2].addr().as_str()])
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::InvalidConfig {
                field: "replicas",
                ..
            }
        ),
        "{e}"
    );

    let e = rebalancer
        .rebalance(&Weights::new().with(primaries[0].clone(), -1.0))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidWeight { .. }), "{e}");
    let e = rebalancer
        .rebalance(&Weights::new().with("127.0.0.1:1", 1.0))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidWeight { .. }), "{e}");
    let zero = Weights::new()
        .with(primaries[0].clone(), 0.0)
        .with(primaries[1].clone(), 0.0);
    assert!(matches!(
        rebalancer.rebalance(&zero).await.unwrap_err(),
        Error::NoWeight
    ));
    assert_eq!(
        primary_slots(&cluster, &primaries).await,
        before,
        "bad input changed the cluster"
    );
    client.close().await;
    drop(cluster);

    // The last primary cannot be removed.
    let single = start(1, 0, 0).await;
    let client = self::client(&single).await;
    let e = Rebalancer::new(client.clone(), config())
        .remove_primary(&single.nodes()[0].addr())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::LastPrimary { .. }), "{e}");
    client.close().await;

    // A standalone server is not a cluster.
    let standalone = LocalStandalone::start(1).await.expect("standalone");
    let config = ClusterConfig::builder()
        .nodes(standalone.addrs())
        .build()
        .expect("config");
    let client = ClusterClient::connect(config).await.expect("connect");
    let e = Rebalancer::new(client.clone(), self::config())
        .plan(&Weights::new())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NotACluster { .. }), "{e}");
    client.close().await;
}
