//! Warm-ups through faults, each on a cluster of its own: replicas that do not answer (and the
//! rollback that follows), and slots that migrate in the middle of a warm-up.

mod common;

use std::time::{Duration, Instant};

use cluster_client::{Bytes, ClusterClient, Ttl, Value};
use local_cluster::{LocalCluster, LocalClusterConfig, test_lock};
use warmup::{Entry, Priority, Source, ValidationConfig, ValidationProblem, Warmup, WarmupConfig};

/// What a key holds before the warm-up, in a form to compare after the rollback.
#[derive(Debug, Clone, PartialEq)]
enum Held {
    Absent,
    String(Bytes),
    Hash(Vec<String>),
}

async fn held(client: &ClusterClient, key: &str) -> Held {
    let node = client
        .topology()
        .shard_for_key(key.as_bytes())
        .unwrap()
        .primary
        .clone();
    let kind: String = client
        .node_command(&node, vec!["TYPE".into(), key.into()])
        .await
        .unwrap();
    match kind.as_str() {
        "none" => Held::Absent,
        "string" => Held::String(client.get(key.as_bytes()).await.unwrap().unwrap()),
        "hash" => {
            let mut fields: Vec<String> = client
                .node_command(&node, vec!["HGETALL".into(), key.into()])
                .await
                .unwrap();
            fields.sort();
            Held::Hash(fields)
        }
        other => panic!("{key} holds a {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_restores_every_touched_key_with_its_value_and_ttl() {
    let _lock = test_lock::exclusive().await.unwrap();
    let cluster = LocalCluster::start(LocalClusterConfig::default()).await.unwrap();
    let client = common::client(&cluster).await;
    let total = 2_000;
    let key = |i: usize| format!("rb:{i}");

    // Before: a quarter strings with a TTL, a quarter strings without, a quarter hashes with a TTL, a
    // quarter absent.
    let mut writes = Vec::new();
    for i in 0..total {
        let k = key(i);
        match i % 4 {
            0 => writes.push(vec![
                "SET".to_string(),
                k,
                format!("old {i}"),
                "PX".into(),
                (300_000 + i * 10).to_string(),
            ]),
            1 => writes.push(vec!["SET".to_string(), k, format!("old {i}")]),
            2 => {
                writes.push(vec![
                    "HSET".to_string(),
                    k.clone(),
                    "field".into(),
                    format!("old {i}"),
                ]);
                writes.push(vec!["PEXPIRE".to_string(), k, (200_000 + i * 10).to_string()]);
            }
            _ => {}
        }
    }
    let topology = client.topology();
    for command in &writes {
        let node = &topology.shard_for_key(command[1].as_bytes()).unwrap().primary;
        let args: Vec<Value> = command.iter().map(|a| Value::from(a.as_str())).collect();
        client.node_command::<Value>(node, args).await.unwrap();
    }
    let mut before = Vec::with_capacity(total);
    for i in 0..total {
        let ttl = client.pttl(key(i).as_bytes()).await.unwrap();
        before.push((held(&client, &key(i)).await, ttl, Instant::now()));
    }

    // Replicas hold every client's commands for longer than the warm-up and its validation take: no
    // entry can be read back, so the whole warm-up must roll back.
    for replica in cluster.nodes().iter().skip(cluster.masters()) {
        replica.client_pause(Duration::from_secs(15)).await.unwrap();
    }
    let config = WarmupConfig::default()
        .validation(Some(
            ValidationConfig::default()
                .wait_timeout(Duration::from_millis(300))
                .replica_catch_up(Duration::from_millis(300)),
        ))
        .rollback_above(0.01);
    let entries: Vec<Entry> = (0..total)
        .map(|i| {
            let entry = Entry::new(key(i), format!("new {i}")).ttl(Duration::from_secs(30));
            if i % 3 == 0 {
                entry.priority(Priority::High)
            } else {
                entry
            }
        })
        .collect();
    let report = Warmup::new(client.clone(), config)
        .unwrap()
        .run(Source::entries(entries))
        .await
        .unwrap();

    assert_eq!(report.written, total as u64, "{report}");
    let validation = report.validation.as_ref().unwrap();
    assert_eq!(validation.bad_entries, total as u64, "{report}");
    assert!(
        validation
            .problems
            .iter()
            .all(|p| p.problem == ValidationProblem::Unreadable),
        "{validation:?}"
    );
    let rollback = report.rollback.as_ref().expect("the warm-up rolled back");
    assert_eq!(
        (rollback.restored, rollback.deleted, rollback.failed),
        ((total - total / 4) as u64, (total / 4) as u64, 0),
        "{report}"
    );

    // After: every key as it was, TTLs within a second of where they would be without the warm-up.
    for (i, (held_before, ttl_before, read_at)) in before.into_iter().enumerate() {
        let k = key(i);
        assert_eq!(held(&client, &k).await, held_before, "{k}");
        let ttl_after = client.pttl(k.as_bytes()).await.unwrap();
        let elapsed = read_at.elapsed();
        match (ttl_before, ttl_after) {
            (Ttl::Missing, Ttl::Missing) | (Ttl::Persistent, Ttl::Persistent) => {}
            (Ttl::Expires(was), Ttl::Expires(now)) => {
                let expected = was.saturating_sub(elapsed);
                let gap = now.abs_diff(expected);
                assert!(
                    gap <= Duration::from_secs(1),
                    "{k}: TTL {now:?}, expected {expected:?}"
                );
            }
            other => panic!("{k}: TTL before and after differ: {other:?}"),
        }
    }
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resharding_a_hundred_slots_in_the_middle_of_a_warm_up_loses_nothing() {
    let _lock = test_lock::exclusive().await.unwrap();
    let cluster = LocalCluster::start(LocalClusterConfig::default()).await.unwrap();
    let client = common::client(&cluster).await;
    let total = 60_000usize;
    // Paced, so that the migration surely runs while entries are still being written.
    let config = WarmupConfig::default().max_entries_per_second(15_000);
    let warmup = Warmup::new(client.clone(), config).unwrap();
    let mut progress = warmup.subscribe();
    let entries: Vec<Entry> = (0..total)
        .map(|i| Entry::new(format!("reshard:{i}"), format!("v{i}")))
        .collect();
    let started = Instant::now();
    let run = tokio::spawn(async move { (warmup.run(Source::entries(entries)).await, Instant::now()) });

    // Start moving slots once a tenth is written.
    progress
        .wait_for(|p| p.written >= total as u64 / 10)
        .await
        .expect("the warm-up reports progress");
    let from = cluster.primary_for_slot(0).await.unwrap();
    let to = cluster.primary_for_slot(16_383).await.unwrap();
    let migration_started = Instant::now();
    let moved = cluster.migrate_slots(100, from, to).await.unwrap();
    let (report, finished) = run.await.unwrap();
    let report = report.unwrap();

    assert!(
        started < migration_started && migration_started < finished,
        "the migration overlapped the warm-up"
    );
    assert_eq!(moved.len(), 100);
    assert_eq!((report.written, report.failed), (total as u64, 0), "{report}");
    assert!(report.is_clean(), "{report}");
    // The moved slots really changed hands, and the client followed.
    for &slot in &moved {
        assert_eq!(
            cluster.primary_for_slot(slot).await.unwrap().port(),
            to.port(),
            "slot {slot}"
        );
    }
    let redirects: u64 = client.node_stats().iter().map(|s| s.redirects).sum();
    assert!(
        redirects > 0 || report.replans > 0,
        "the warm-up saw the migration: {report}"
    );

    // Every entry is there, on its primary and on its replica.
    let keys: Vec<Bytes> = (0..total).map(|i| Bytes::from(format!("reshard:{i}"))).collect();
    let copies = common::copies(&client, &keys).await;
    let mut in_moved_slots = 0;
    for (node, pairs) in &copies {
        for (key, got) in pairs {
            let i: usize = std::str::from_utf8(&key[8..]).unwrap().parse().unwrap();
            assert_eq!(
                got.as_deref(),
                Some(format!("v{i}").as_bytes()),
                "{key:?} on {node}"
            );
            if node == &to.addr() && moved.contains(&sharding::key_slot(key)) {
                in_moved_slots += 1;
            }
        }
    }
    assert_eq!(copies.values().map(Vec::len).sum::<usize>(), total * 2);
    assert!(
        in_moved_slots > 0,
        "entries of the moved slots are on their new primary"
    );
    client.close().await;
}
