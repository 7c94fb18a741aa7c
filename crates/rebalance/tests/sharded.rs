//! Client-sharded rebalancing on real standalone redis-server processes: nodes added, removed and
//! reweighted under a reader/writer load, with no misses, no errors and every value intact.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cluster_client::{ClusterClient, SetOptions};
use cluster_config::{ClusterConfig, Mode, ShardingStrategy};
use local_cluster::{LocalStandalone, test_lock};
use rebalance::sharded::{MovePhase, MoveReport, ShardedMoveConfig, ShardedRebalancer};
use sharding::{KetamaRing, KeyMovePlan, KeyRange};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const KEYS: usize = 20_000;

async fn connect(
    nodes: &[String],
    strategy: ShardingStrategy,
) -> Result<ClusterClient, Box<dyn std::error::Error>> {
    let config = ClusterConfig::builder()
        .nodes(nodes)
        .mode(Mode::Sharded)
        .sharding_strategy(strategy)
        .build()?;
    Ok(ClusterClient::connect(config).await?)
}

fn key(i: usize) -> String {
    format!("key:{i}")
}

fn base_value(i: usize) -> String {
    format!("v0:{i}:{}", "x".repeat(64))
}

async fn fill(client: &ClusterClient, count: usize) -> TestResult {
    for chunk in (0..count).collect::<Vec<_>>().chunks(1_000) {
        let entries: Vec<(String, String, Option<Duration>)> =
            chunk.iter().map(|&i| (key(i), base_value(i), None)).collect();
        for result in client.set_many(&entries).await {
            result?;
        }
    }
    Ok(())
}

/// What the load saw and wrote: misses and errors surfaced, and the last value written per key.
#[derive(Default)]
struct Load {
    stop: AtomicBool,
    reads: AtomicU64,
    misses: AtomicU64,
    errors: AtomicU64,
    wrong: AtomicU64,
    writes: AtomicU64,
    /// The last value each writer task wrote per key it owns (writers own disjoint keys).
    written: Mutex<HashMap<String, String>>,
    /// Keys deleted during the move; they must stay deleted.
    deleted: Mutex<Vec<String>>,
    first_problem: Mutex<Option<String>>,
}

impl Load {
    fn problem(&self, counter: &AtomicU64, what: String) {
        counter.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut first) = self.first_problem.lock() {
            first.get_or_insert(what);
        }
    }
}

/// Readers (single keys and batches) check that every base key is there with a value of its own;
/// writers overwrite every tenth key and write new keys (single and batched); a deleter deletes keys
/// `key:i` with `i % 10 == 5`, which readers do not read.
fn start_load(client: &ClusterClient, load: &Arc<Load>) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for reader in 0..4usize {
        let (client, load) = (client.clone(), load.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = reader * 7_919;
            while !load.stop.load(Ordering::Relaxed) {
                n = (n + 7_919) % KEYS;
                let batch: Vec<usize> = (0..8)
                    .map(|j| (n + j * 131) % KEYS)
                    .filter(|i| i % 10 != 5)
                    .collect();
                let results = if reader % 2 == 0 {
                    let mut out = Vec::new();
                    for &i in &batch {
                        out.push(client.get(key(i).as_bytes()).await);
                    }
                    out
                } else {
                    let keys: Vec<String> = batch.iter().map(|&i| key(i)).collect();
                    client.get_many(&keys).await
                };
                for (&i, result) in batch.iter().zip(results) {
                    load.reads.fetch_add(1, Ordering::Relaxed);
                    match result {
                        Ok(Some(value)) => {
                            let text = String::from_utf8_lossy(&value);
                            if !text.contains(&format!(":{i}:")) {
                                load.problem(&load.wrong, format!("{} holds {text}", key(i)));
                            }
                        }
                        Ok(None) => load.problem(&load.misses, format!("{} missed", key(i))),
                        Err(error) => load.problem(&load.errors, format!("{}: {error}", key(i))),
                    }
                }
            }
        }));
    }
    for writer in 0..2usize {
        let (client, load) = (client.clone(), load.clone());
        tasks.push(tokio::spawn(async move {
            let mut round = 0usize;
            while !load.stop.load(Ordering::Relaxed) {
                round += 1;
                // Writer w owns keys i with i % 10 == 0 and (i / 10) % 2 == w, plus its new keys.
                let owned: Vec<usize> = (0..16)
                    .map(|j| ((round * 16 + j) * 20 + writer * 10) % KEYS)
                    .collect();
                let entries: Vec<(String, String, Option<Duration>)> = owned
                    .iter()
                    .map(|&i| (key(i), format!("w{writer}r{round}:{i}:"), None))
                    .chain((0..4).map(|j| {
                        let i = KEYS + writer * 1_000_000 + round * 4 + j;
                        (key(i), format!("new{round}:{i}:"), None)
                    }))
                    .collect();
                let results = if round.is_multiple_of(2) {
                    client.set_many(&entries).await
                } else {
                    let mut out = Vec::new();
                    for (k, v, _) in &entries {
                        out.push(
                            client
                                .set(k.as_bytes(), v.as_bytes(), SetOptions::default())
                                .await
                                .map(|_| ()),
                        );
                    }
                    out
                };
                let mut written = load.written.lock().unwrap_or_else(|e| e.into_inner());
                for ((k, v, _), result) in entries.iter().zip(results) {
                    match result {
                        Ok(()) => {
                            load.writes.fetch_add(1, Ordering::Relaxed);
                            written.insert(k.clone(), v.clone());
                        }
                        Err(error) => load.problem(&load.errors, format!("set {k}: {error}")),
                    }
                }
            }
        }));
    }
    {
        let (client, load) = (client.clone(), load.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0usize;
            while !load.stop.load(Ordering::Relaxed) && n * 10 + 5 < KEYS {
                let keys: Vec<String> = (0..4).map(|j| key((n + j) * 10 + 5)).collect();
                n += 4;
                let results = if n.is_multiple_of(8) {
                    client.del_many(&keys).await
                } else {
                    let mut out = Vec::new();
                    for k in &keys {
                        out.push(client.del(k.as_bytes()).await);
                    }
                    out
                };
                for (k, result) in keys.iter().zip(results) {
                    match result {
                        Ok(_) => load
                            .deleted
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(k.clone()),
                        Err(error) => load.problem(&load.errors, format!("del {k}: {error}")),
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }));
    }
    tasks
}

async fn stop_load(load: &Arc<Load>, tasks: Vec<tokio::task::JoinHandle<()>>) -> TestResult {
    load.stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await?;
    }
    Ok(())
}

/// After a finished move: every key is on its owner in the client's (new) ring with the value the load
/// left, deleted keys stay deleted, and no node holds a key it does not own.
async fn check_final_state(
    client: &ClusterClient,
    cluster: &LocalStandalone,
    load: &Load,
    base_keys: usize,
) -> TestResult {
    let written = load.written.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let deleted: std::collections::HashSet<String> = load
        .deleted
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .cloned()
        .collect();
    let mut expected: HashMap<String, String> = (0..base_keys).map(|i| (key(i), base_value(i))).collect();
    for k in &deleted {
        expected.remove(k);
    }
    expected.extend(written);
    let keys: Vec<&String> = expected.keys().collect();
    let values = client.get_many(&keys).await;
    let mut bad = Vec::new();
    for (k, value) in keys.iter().zip(values) {
        let value = value?;
        if value.as_deref() != Some(expected[*k].as_bytes()) {
            bad.push(format!(
                "{k}: {:?}",
                value.map(|v| String::from_utf8_lossy(&v).into_owned())
            ));
        }
    }
    assert!(
        bad.is_empty(),
        "{} keys wrong, first: {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
    let topology = client.topology();
    for k in deleted.iter().take(200) {
        for node in cluster.nodes() {
            let found: Option<Vec<u8>> = node.command(["GET", k.as_str()]).await?;
            assert!(found.is_none(), "deleted {k} is back on {}", node.addr());
        }
    }
    // Every key lives on its owner only: the node sizes add up to the live keys, and each owner holds
    // its keys.
    let mut total = 0i64;
    for node in cluster.nodes() {
        total += node.command::<i64, _, _>(["DBSIZE"]).await?;
    }
    assert_eq!(total as usize, expected.len(), "old copies were left behind");
    for k in keys.iter().take(500) {
        let owner = &topology.shard_for_key(k.as_bytes()).ok_or("no owner")?.primary;
        let node = cluster
            .nodes()
            .iter()
            .find(|n| &n.addr() == owner)
            .ok_or("owner is not a test node")?;
        let found: Option<Vec<u8>> = node.command(["GET", k.as_str()]).await?;
        assert_eq!(found.as_deref(), Some(expected[*k].as_bytes()), "{k} on {owner}");
    }
    Ok(())
}

fn assert_clean(load: &Load, what: &str) {
    let first = load
        .first_problem
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let (misses, errors, wrong) = (
        load.misses.load(Ordering::Relaxed),
        load.errors.load(Ordering::Relaxed),
        load.wrong.load(Ordering::Relaxed),
    );
    println!(
        "{what}: {} reads, {} writes, {misses} misses, {errors} errors, {wrong} wrong values",
        load.reads.load(Ordering::Relaxed),
        load.writes.load(Ordering::Relaxed)
    );
    assert_eq!(
        (misses, errors, wrong),
        (0, 0, 0),
        "{what}: first problem: {first:?}"
    );
    assert!(load.reads.load(Ordering::Relaxed) > 0 && load.writes.load(Ordering::Relaxed) > 0);
}

fn all_keys() -> Vec<String> {
    (0..KEYS).map(key).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_a_ketama_node_under_load_misses_nothing() -> TestResult {
    let _lock = test_lock::exclusive().await?;
    let cluster = LocalStandalone::start(4).await?;
    let addrs = cluster.addrs();
    let client = connect(&addrs[..3], ShardingStrategy::ConsistentHash).await?;
    fill(&client, KEYS).await?;
    let before = KetamaRing::new(addrs[..3].iter().map(|a| (a.clone(), 1)))?;
    let after = before.with_node(&addrs[3], 1)?;
    let predicted = KeyMovePlan::between(&before, &after, &all_keys()).moved_count();

    let load = Arc::new(Load::default());
    let tasks = start_load(&client, &load);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let phases = Arc::new(Mutex::new(Vec::new()));
    let seen = phases.clone();
    let rebalancer = ShardedRebalancer::new(
        client.clone(),
        ShardedMoveConfig::builder().batch_keys(200).build()?,
    )?
    .on_progress(move |p| seen.lock().unwrap_or_else(|e| e.into_inner()).push(p.phase));
    let report = rebalancer.add_node(&addrs[3], 1).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop_load(&load, tasks).await?;
    println!("add node: {report}; plan predicted {predicted} of {KEYS} keys");
    assert_clean(&load, "add a 4th ketama node");

    let phases = phases.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert_eq!(phases.first(), Some(&MovePhase::Settling));
    assert_eq!(phases.last(), Some(&MovePhase::Finished));
    assert!(phases.contains(&MovePhase::Copying));
    // The plan says about a quarter; the move copies exactly the planned keys the load did not rewrite
    // (a rewrite lands on the new owner and removes the old copy before the scan finds it) or delete.
    assert!(
        (0.15..0.35).contains(&(predicted as f64 / KEYS as f64)),
        "{predicted}"
    );
    let copied = report.keys_moved + report.keys_skipped_newer;
    assert!(copied as usize <= predicted, "{report}");
    assert!(
        copied as f64 >= predicted as f64 * 0.75,
        "{report}, predicted {predicted}"
    );
    assert!(
        report
            .flows
            .iter()
            .all(|f| f.to.as_deref() == Some(addrs[3].as_str())),
        "{:?}",
        report.flows
    );
    assert_eq!(client.topology().shards().len(), 4);
    assert!(client.reshard_in_progress().is_none());
    check_final_state(&client, &cluster, &load, KEYS).await?;
    client.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_ketama_node_under_load_misses_nothing() -> TestResult {
    let _lock = test_lock::exclusive().await?;
    let cluster = LocalStandalone::start(4).await?;
    let addrs = cluster.addrs();
    let client = connect(&addrs, ShardingStrategy::ConsistentHash).await?;
    fill(&client, KEYS).await?;
    let before = KetamaRing::new(addrs.iter().map(|a| (a.clone(), 1)))?;
    let held = all_keys()
        .iter()
        .filter(|k| before.node_for(k.as_bytes()) == addrs[1])
        .count();

    let load = Arc::new(Load::default());
    let tasks = start_load(&client, &load);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rebalancer = ShardedRebalancer::new(client.clone(), ShardedMoveConfig::default())?;
    let report = rebalancer.remove_node(&addrs[1]).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop_load(&load, tasks).await?;
    println!("remove node: {report}; {held} keys were on it");
    assert_clean(&load, "remove a ketama node");
    assert!(
        report
            .flows
            .iter()
            .all(|f| f.from.as_deref() == Some(addrs[1].as_str()))
    );
    assert!(
        (report.keys_moved + report.keys_skipped_newer) as f64 >= held as f64 * 0.75,
        "{report}"
    );
    let left: i64 = cluster.nodes()[1].command(["DBSIZE"]).await?;
    assert_eq!(left, 0, "the removed node still holds keys");
    assert!(client.topology().shards().iter().all(|s| s.primary != addrs[1]));
    check_final_state(&client, &cluster, &load, KEYS).await?;
    client.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_a_key_range_node_under_load_misses_nothing() -> TestResult {
    let _lock = test_lock::exclusive().await?;
    let cluster = LocalStandalone::start(3).await?;
    let addrs = cluster.addrs();
    let client = connect(&addrs[..2], ShardingStrategy::KeyRange).await?;
    fill(&client, KEYS).await?;
    let before = KeyRange::new(addrs[..2].iter().map(|a| (a.clone(), 1)))?;
    let after = KeyRange::new(addrs.iter().map(|a| (a.clone(), 1)))?;
    let predicted = KeyMovePlan::between(&before, &after, &all_keys()).moved_count();

    let load = Arc::new(Load::default());
    let tasks = start_load(&client, &load);
    // A byte budget of about 20 values per script call: batches are copied in several calls.
    let config = ShardedMoveConfig::builder().batch_bytes(2_000).build()?;
    let report = ShardedRebalancer::new(client.clone(), config)?
        .add_node(&addrs[2], 1)
        .await?;
    stop_load(&load, tasks).await?;
    println!("key-range add: {report}; plan predicted {predicted}");
    assert_clean(&load, "add a key-range node");
    // Boundaries shift: half of the keys change owner when a third node joins two.
    let copied = report.keys_moved + report.keys_skipped_newer;
    assert!(
        copied as usize <= predicted && copied as f64 >= predicted as f64 * 0.75,
        "{report}"
    );
    check_final_state(&client, &cluster, &load, KEYS).await?;
    client.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weighted_ring_places_keys_in_proportion_and_as_libmemcached() -> TestResult {
    let _lock = test_lock::exclusive().await?;
    let cluster = LocalStandalone::start(3).await?;
    let addrs = cluster.addrs();
    let weighted: Vec<String> = addrs
        .iter()
        .zip([1, 1, 2])
        .map(|(a, w)| format!("{a}={w}"))
        .collect();
    let client = connect(&weighted, ShardingStrategy::ConsistentHash).await?;
    fill(&client, KEYS).await?;
    let ring = KetamaRing::new(addrs.iter().cloned().zip([1, 1, 2]))?;
    for (index, node) in cluster.nodes().iter().enumerate() {
        let size: i64 = node.command(["DBSIZE"]).await?;
        let share = size as f64 / KEYS as f64;
        let expected = [0.25, 0.25, 0.5][index];
        println!(
            "{} (weight {}): {size} keys, {share:.3}",
            node.addr(),
            [1, 1, 2][index]
        );
        assert!((share - expected).abs() < 0.06, "{share} vs {expected}");
    }
    for i in (0..KEYS).step_by(97) {
        let owner = ring.node_for(key(i).as_bytes());
        let node = cluster
            .nodes()
            .iter()
            .find(|n| n.addr() == owner)
            .ok_or("owner")?;
        let found: Option<Vec<u8>> = node.command(["GET", key(i).as_str()]).await?;
        assert!(
            found.is_some(),
            "{} is not where libmemcached would put it",
            key(i)
        );
    }
    // Reweighting moves keys to the heavier node, with no miss.
    let before_weights = ring.clone();
    let after_weights = ring.with_weight(&addrs[0], 2)?;
    let predicted = KeyMovePlan::between(&before_weights, &after_weights, &all_keys()).moved_count();
    let report = ShardedRebalancer::new(client.clone(), ShardedMoveConfig::default())?
        .set_weights(&[(addrs[0].as_str(), 2)])
        .await?;
    assert_eq!(report.keys_moved as usize, predicted, "{report}");
    let values = client.get_many(&all_keys()).await;
    assert!(values.iter().all(|v| matches!(v, Ok(Some(_)))));
    assert_eq!(client.topology().weighted_nodes()[0].1, 2);
    client.close().await;
    Ok(())
}

/// The figure: misses during a node add with this crate's move against a plain ring switch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misses_during_a_node_add_reshard_versus_plain_switch() -> TestResult {
    let _lock = test_lock::exclusive().await?;
    let mut misses = Vec::new();
    for plain in [true, false] {
        let cluster = LocalStandalone::start(4).await?;
        let addrs = cluster.addrs();
        let client = connect(&addrs[..3], ShardingStrategy::ConsistentHash).await?;
        fill(&client, KEYS).await?;
        let reader = {
            let client = client.clone();
            tokio::spawn(async move {
                // One pass over every key while the node is added.
                let mut missed = 0usize;
                for chunk in all_keys().chunks(100) {
                    for result in client.get_many(chunk).await {
                        if !matches!(result, Ok(Some(_))) {
                            missed += 1;
                        }
                    }
                }
                missed
            })
        };
        let start = Instant::now();
        if plain {
            // A plain ring switch: the new ring at once, nothing copied.
            client.begin_reshard(ring_plus(&addrs)).await?.finish()?;
        } else {
            ShardedRebalancer::new(client.clone(), ShardedMoveConfig::default())?
                .add_node(&addrs[3], 1)
                .await?;
        }
        let missed = reader.await?;
        let after: usize = client
            .get_many(&all_keys())
            .await
            .iter()
            .filter(|r| !matches!(r, Ok(Some(_))))
            .count();
        println!(
            "{}: {missed} misses while adding a node, {after} of {KEYS} keys missing afterwards ({:.2?})",
            if plain { "plain ring switch" } else { "reshard" },
            start.elapsed()
        );
        misses.push(after.max(missed));
        client.close().await;
    }
    let plain = misses[0] as f64 / KEYS as f64;
    assert!(
        (0.15..0.35).contains(&plain),
        "a plain switch should miss about a quarter: {plain}"
    );
    assert_eq!(misses[1], 0, "the reshard missed keys");
    Ok(())
}

fn ring_plus(addrs: &[String]) -> Vec<(String, u32)> {
    addrs.iter().map(|a| (a.clone(), 1)).collect()
}

/// The mover "crashes" (its future is dropped) mid-move: the client keeps serving every key, and
/// `resume` completes the move.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_move_leaves_every_key_served_and_resumes() -> TestResult {
    let _lock = test_lock::exclusive().await?;
    let cluster = LocalStandalone::start(4).await?;
    let addrs = cluster.addrs();
    let client = connect(&addrs[..3], ShardingStrategy::ConsistentHash).await?;
    fill(&client, KEYS).await?;
    let copied = Arc::new(AtomicU64::new(0));
    let seen = copied.clone();
    let rebalancer = ShardedRebalancer::new(
        client.clone(),
        ShardedMoveConfig::builder().batch_keys(1).build()?,
    )?
    .on_progress(move |p| seen.store(p.keys_moved, Ordering::Relaxed));
    // Boxed, so that dropping it really drops the move's state, as a crashed mover would.
    let mut mover = Box::pin(rebalancer.add_node(&addrs[3], 1));
    // Drop the move once some keys were copied, mid-batch-stream.
    tokio::select! {
        result = &mut mover => panic!("the move ended before it was dropped: {result:?}"),
        () = async { while copied.load(Ordering::Relaxed) < 50 { tokio::time::sleep(Duration::from_millis(1)).await } } => {}
    }
    drop(mover);
    assert!(client.reshard_in_progress().is_some());
    let values = client.get_many(&all_keys()).await;
    let missing = values.iter().filter(|v| !matches!(v, Ok(Some(_)))).count();
    assert_eq!(missing, 0, "keys missed while the move was dropped");
    // A key written now goes to the new owner and stays the newest.
    let moved = all_keys()
        .into_iter()
        .find(|k| {
            client
                .reshard_in_progress()
                .and_then(|r| r.moved(k.as_bytes()))
                .is_some()
        })
        .ok_or("no moved key")?;
    client
        .set(moved.as_bytes(), b"newer", SetOptions::default())
        .await?;
    let report = ShardedRebalancer::new(client.clone(), ShardedMoveConfig::default())?
        .resume()
        .await?
        .ok_or("no reshard to resume")?;
    println!("resumed: {report}");
    assert!(client.reshard_in_progress().is_none());
    assert_eq!(
        client.get(moved.as_bytes()).await?.as_deref(),
        Some(&b"newer"[..])
    );
    let load = Load::default();
    load.written
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(moved.clone(), "newer".into());
    check_final_state(&client, &cluster, &load, KEYS).await?;
    client.close().await;
    Ok(())
}

/// A write that reaches the new owner before the copy wins (BUSYKEY), a delete during the move is not
/// undone, an abort turns the move around without losing either, and a resumed reverse move finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_writes_and_deletes_survive_the_copy_and_an_abort() -> TestResult {
    let _lock = test_lock::exclusive().await?;
    let cluster = LocalStandalone::start(3).await?;
    let addrs = cluster.addrs();
    let client = connect(&addrs[..2], ShardingStrategy::ConsistentHash).await?;
    fill(&client, 2_000).await?;
    let reshard = client.begin_reshard(ring_plus(&addrs)).await?;
    let moved: Vec<String> = (0..2_000)
        .map(key)
        .filter(|k| reshard.moved(k.as_bytes()).is_some())
        .take(3)
        .collect();
    assert_eq!(moved.len(), 3);
    // Before any copy: a write to the new owner, a delete, and a TTL that must carry over.
    client
        .set(moved[0].as_bytes(), b"newer", SetOptions::default())
        .await?;
    assert!(client.del(moved[1].as_bytes()).await?);
    assert!(
        client
            .pexpire(moved[2].as_bytes(), Duration::from_secs(300))
            .await?
    );
    assert_eq!(client.get(moved[1].as_bytes()).await?, None);
    // Abort: the old ring serves again and still sees the newer write (the old copy was deleted when
    // it was written, so reads fall back to the new owner).
    let reverse = reshard.abort()?;
    assert_eq!(
        client.get(moved[0].as_bytes()).await?.as_deref(),
        Some(&b"newer"[..])
    );
    assert_eq!(client.get(moved[1].as_bytes()).await?, None);
    assert_eq!(client.topology().shards().len(), 2);
    drop(reverse);
    let report = ShardedRebalancer::new(client.clone(), ShardedMoveConfig::default())?
        .resume()
        .await?
        .ok_or("no reverse move")?;
    println!("reverse move: {report}");
    assert!(report.keys_moved >= 1, "the newer write is copied back: {report}");
    // Now the real move, which keeps the TTL and the newer value.
    let report = ShardedRebalancer::new(client.clone(), ShardedMoveConfig::default())?
        .add_node(&addrs[2], 1)
        .await?;
    println!("move: {report}");
    assert_eq!(
        client.get(moved[0].as_bytes()).await?.as_deref(),
        Some(&b"newer"[..])
    );
    assert_eq!(client.get(moved[1].as_bytes()).await?, None);
    match client.pttl(moved[2].as_bytes()).await? {
        cluster_client::Ttl::Expires(ttl) => assert!(ttl > Duration::from_secs(290), "{ttl:?}"),
        other => panic!("the TTL was lost: {other:?}"),
    }
    let owner = client
        .topology()
        .shard_for_key(moved[2].as_bytes())
        .ok_or("owner")?
        .primary
        .clone();
    assert_eq!(owner, addrs[2]);
    // A write on the new owner before its copy lands is kept over the older copy.
    let reshard = client.begin_reshard(ring_plus(&addrs[..2])).await?;
    let back = (0..2_000)
        .map(key)
        .find(|k| reshard.moved(k.as_bytes()).is_some())
        .ok_or("no key")?;
    client
        .set(back.as_bytes(), b"newest", SetOptions::default())
        .await?;
    let report = ShardedRebalancer::new(client.clone(), ShardedMoveConfig::default())?
        .resume()
        .await?
        .ok_or("no move")?;
    assert_eq!(
        client.get(back.as_bytes()).await?.as_deref(),
        Some(&b"newest"[..])
    );
    assert_eq!(report.old_copies_changed, 0, "{report}");
    client.close().await;
    Ok(())
}

/// Bad input: a second reshard, a node already in the ring or not in it, a node that does not answer,
/// and a cluster deployment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_moves_are_typed_errors_and_change_nothing() -> TestResult {
    let _lock = test_lock::exclusive().await?;
    let cluster = LocalStandalone::start(3).await?;
    let addrs = cluster.addrs();
    let client = connect(&addrs[..2], ShardingStrategy::ConsistentHash).await?;
    let rebalancer = ShardedRebalancer::new(client.clone(), ShardedMoveConfig::default())?;
    let error = rebalancer.add_node(&addrs[0], 1).await.unwrap_err();
    assert!(error.to_string().contains("already in the ring"), "{error}");
    let error = rebalancer.remove_node("127.0.0.1:1").await.unwrap_err();
    assert!(error.to_string().contains("is not in the ring"), "{error}");
    let error = rebalancer.add_node("127.0.0.1:1", 1).await.unwrap_err();
    assert!(error.to_string().contains("did not connect"), "{error}");
    let error = rebalancer.add_node(&addrs[2], 0).await.unwrap_err();
    assert!(error.to_string().contains("weight 0"), "{error}");
    assert!(client.reshard_in_progress().is_none());
    assert_eq!(client.topology().shards().len(), 2);
    let reshard = client.begin_reshard(ring_plus(&addrs)).await?;
    let error = client.begin_reshard(ring_plus(&addrs[..1])).await.unwrap_err();
    assert!(error.to_string().contains("already in progress"), "{error}");
    let stale = reshard.clone();
    reshard.finish()?;
    assert!(matches!(stale.finish(), Err(cluster_client::Error::ReshardOver)));
    let report: Option<MoveReport> = rebalancer.resume().await?;
    assert!(report.is_none());
    client.close().await;
    Ok(())
}

/// `warmupWithRebalancing`: a warm-up running while a node is added lands on the new owners, and
/// nothing it wrote, nor anything stored before, is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_up_during_a_node_add_lands_on_the_new_owners() -> TestResult {
    let _lock = test_lock::exclusive().await?;
    let cluster = LocalStandalone::start(4).await?;
    let addrs = cluster.addrs();
    let client = connect(&addrs[..3], ShardingStrategy::ConsistentHash).await?;
    fill(&client, KEYS).await?;
    let warmup = warmup::Warmup::new(
        client.clone(),
        warmup::WarmupConfig::default().validation(None).batch_size(100),
    )?;
    // Half the warm-up overwrites stored keys, half writes new ones.
    let entries: Vec<warmup::Entry> = (0..KEYS / 2)
        .map(|i| warmup::Entry::new(key(i * 2), format!("warm:{}:", i * 2)))
        .chain((0..5_000).map(|i| warmup::Entry::new(format!("warm:{i}"), format!("warm:{i}:"))))
        .collect();
    let rebalancer = ShardedRebalancer::new(
        client.clone(),
        ShardedMoveConfig::builder().batch_keys(100).build()?,
    )?;
    let (warmed, moved) = tokio::join!(
        warmup.run(warmup::Source::entries(entries)),
        rebalancer.add_node(&addrs[3], 1)
    );
    let (warmed, moved) = (warmed?, moved?);
    println!("warm-up: {} written; move: {moved}", warmed.written);
    assert_eq!(warmed.written as usize, KEYS / 2 + 5_000);
    let topology = client.topology();
    assert_eq!(topology.shards().len(), 4);
    let mut on_new = 0;
    for i in 0..KEYS {
        let k = key(i);
        let want = if i % 2 == 0 {
            format!("warm:{i}:")
        } else {
            base_value(i)
        };
        let owner = &topology.shard_for_key(k.as_bytes()).ok_or("owner")?.primary;
        let node = cluster
            .nodes()
            .iter()
            .find(|n| &n.addr() == owner)
            .ok_or("node")?;
        let found: Option<Vec<u8>> = node.command(["GET", k.as_str()]).await?;
        assert_eq!(
            found.as_deref(),
            Some(want.as_bytes()),
            "{k} on its owner {owner}"
        );
        on_new += usize::from(owner == &addrs[3]);
    }
    for i in 0..5_000 {
        let k = format!("warm:{i}");
        let owner = &topology.shard_for_key(k.as_bytes()).ok_or("owner")?.primary;
        let node = cluster
            .nodes()
            .iter()
            .find(|n| &n.addr() == owner)
            .ok_or("node")?;
        let found: Option<Vec<u8>> = node.command(["GET", k.as_str()]).await?;
        assert_eq!(
            found.as_deref(),
            Some(format!("warm:{i}:").as_bytes()),
            "{k} on {owner}"
        );
    }
    assert!(on_new > KEYS / 8, "only {on_new} keys are on the new node");
    let mut total = 0i64;
    for node in cluster.nodes() {
        total += node.command::<i64, _, _>(["DBSIZE"]).await?;
    }
    assert_eq!(total as usize, KEYS + 5_000, "old copies were left behind");
    client.close().await;
    Ok(())
}
