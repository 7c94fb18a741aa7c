//! The near cache's rules on real `redis-server` processes: invalidation by another client, a read
//! racing writes, own writes, a killed tracking connection, a flushed tracking table, a migrating slot,
//! the modes, the size bounds; and, on private clusters, kill -9 and SIGSTOP of the key's primary.
//! Every test writes through a second client (other connections), so the near cache learns of changes
//! only from the servers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cluster_client::{ClusterClient, SetOptions, TrackingMode};
use cluster_config::ClusterConfig;
use local_cluster::{LocalCluster, LocalClusterConfig, test_lock};
use near_cache::{NearCache, NearSettings};

async fn client(cluster: &LocalCluster) -> ClusterClient {
    let config = ClusterConfig::builder()
        .nodes(cluster.seeds())
        .command_timeout(Duration::from_secs(1))
        .build()
        .expect("valid config");
    ClusterClient::connect(config).await.expect("client connects")
}

async fn near(cluster: &LocalCluster, settings: NearSettings) -> NearCache {
    NearCache::new(client(cluster).await, settings).expect("near cache")
}

async fn set(writer: &ClusterClient, key: &[u8], value: &str) {
    writer
        .set(key, value.as_bytes(), SetOptions::default())
        .await
        .expect("write");
}

/// Polls `near` until it returns `want`; how long that took. Fails after `bound`.
async fn until_seen(near: &NearCache, key: &[u8], want: &str, bound: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let got = near.get(key).await.expect("read");
        if got.as_deref() == Some(want.as_bytes()) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < bound,
            "the near cache still served {got:?} {:?} after the write of {want:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_are_kept_and_invalidated_by_another_clients_writes() {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let near = near(&cluster, NearSettings::default()).await;
    let writer = client(&cluster).await;
    let keys: Vec<Vec<u8>> = (0..300).map(|i| format!("near:inv:{i}").into_bytes()).collect();
    for key in &keys {
        set(&writer, key, "v1").await;
    }
    for key in &keys {
        assert_eq!(near.get(key).await.unwrap().as_deref(), Some(&b"v1"[..]));
    }
    let before = near.stats();
    for key in &keys {
        assert_eq!(near.get(key).await.unwrap().as_deref(), Some(&b"v1"[..]));
    }
    let after = near.stats();
    // All of it unless a tracking connection was dropped meanwhile (a heartbeat missed on a machine
    // starved by other tests), which rightly turns its keys into misses.
    assert!(
        after.hits - before.hits >= keys.len() as u64 * 9 / 10,
        "the second pass is served from memory: {before:?} then {after:?}"
    );
    assert_eq!(after.misses, before.misses);

    let mut delays = Vec::new();
    for key in &keys {
        set(&writer, key, "v2").await;
        delays.push(until_seen(&near, key, "v2", Duration::from_secs(1)).await);
    }
    delays.sort();
    let p99 = delays[delays.len() * 99 / 100];
    eprintln!(
        "invalidation seen after p50 {:?}, p99 {p99:?}",
        delays[delays.len() / 2]
    );
    assert!(near.stats().invalidations >= keys.len() as u64);
    // Absent keys are kept too, and invalidated when they appear.
    assert_eq!(near.get(b"near:inv:absent").await.unwrap(), None);
    assert_eq!(near.lookup(b"near:inv:absent"), Some(None));
    set(&writer, b"near:inv:absent", "here").await;
    until_seen(&near, b"near:inv:absent", "here", Duration::from_secs(1)).await;
}

/// A writer counts up on one key while readers read it through the near cache: no read that starts
/// after a value was acknowledged (plus the invalidation bound) returns an older one, and once the
/// writer stops every reader converges on the last value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_racing_writes_never_keep_an_older_value() {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let near = near(&cluster, NearSettings::default()).await;
    let writer = client(&cluster).await;
    let key = b"near:race";
    set(&writer, key, "0").await;
    let origin = Instant::now();
    // acked[n] = microseconds after `origin` when value n was acknowledged.
    let acked: Arc<Vec<AtomicU64>> = Arc::new((0..=2000).map(|_| AtomicU64::new(u64::MAX)).collect());
    acked[0].store(0, Ordering::SeqCst);
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..4 {
        let near = near.clone();
        let stop = stop.clone();
        readers.push(tokio::spawn(async move {
            let mut reads = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let started = origin.elapsed().as_micros() as u64;
                let value = near.get(key).await.expect("read").expect("present");
                let n: usize = std::str::from_utf8(&value).unwrap().parse().unwrap();
                reads.push((started, n));
                tokio::task::yield_now().await;
            }
            reads
        }));
    }
    for n in 1..=2000usize {
        set(&writer, key, &n.to_string()).await;
        acked[n].store(origin.elapsed().as_micros() as u64, Ordering::SeqCst);
    }
    stop.store(true, Ordering::Relaxed);
    let mut reads = Vec::new();
    for reader in readers {
        reads.extend(reader.await.unwrap());
    }
    // Generous for a machine that also runs other tests: a value kept for good would be stale for
    // seconds.
    let bound_us = 200_000;
    let mut stale = 0;
    let mut late = Vec::new();
    for &(started, n) in &reads {
        // The newest value acknowledged before this read started.
        let newest = (n + 1..=2000)
            .rev()
            .find(|&m| acked[m].load(Ordering::SeqCst) < started);
        if let Some(m) = newest {
            let lag = started - acked[n + 1].load(Ordering::SeqCst);
            late.push(lag);
            if lag > bound_us {
                stale += 1;
                eprintln!("read at {started} µs returned {n}, but {m} was acknowledged before it");
            }
        }
    }
    late.sort();
    eprintln!(
        "{} reads, {} behind an acknowledged write (max lag {:?} µs), {stale} past {bound_us} µs; {:?}",
        reads.len(),
        late.len(),
        late.last(),
        near.stats()
    );
    assert_eq!(stale, 0);
    assert!(near.stats().hits > 0, "some reads were served from memory");
    until_seen(&near, key, "2000", Duration::from_secs(1)).await;
    // Settled: the kept value is the last one, served from memory.
    assert_eq!(near.get(key).await.unwrap().as_deref(), Some(&b"2000"[..]));
    assert_eq!(near.lookup(key), Some(Some(Bytes::from_static(b"2000"))));
}

/// Own writes, with the guard, are read back at once, including after a write whose future was
/// dropped mid-flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_writes_are_read_back_before_the_write_returns() {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let near = near(&cluster, NearSettings::default()).await;
    let client = near.client().clone();
    let key = b"near:own";
    for n in 0..500 {
        {
            let _guard = near.write_guard(key);
            set(&client, key, &n.to_string()).await;
        }
        let got = near.get(key).await.unwrap();
        assert_eq!(
            got.as_deref(),
            Some(n.to_string().as_bytes()),
            "own write {n} read back"
        );
    }
    // A cancelled write: the guard is dropped with the future, the kept "499" is gone. (A read right
    // after a write often keeps nothing: the write's own invalidation push races it. Read until kept.)
    kept(&near, key).await;
    assert_eq!(near.lookup(key), Some(Some(Bytes::from_static(b"499"))));
    // Inside the guard a read keeps the old value again (the server still has it); the cancelled
    // write's guard must evict it when the future is dropped.
    let write = {
        let near = near.clone();
        let client = client.clone();
        async move {
            let _guard = near.write_guard(key);
            kept(&near, key).await;
            tokio::time::sleep(Duration::from_secs(5)).await;
            set(&client, key, "cancelled").await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(300), write).await;
    assert_eq!(
        near.lookup(key),
        None,
        "the cancelled write's guard evicted the key"
    );
}

/// `CLIENT KILL` of the tracking connection: its invalidations are lost, so nothing it read is served
/// once the drop is seen, and a write made right after the kill is read back within the bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_tracking_connection_stops_serving_what_it_tracked() {
    // Exclusive: it kills every tracking connection of a primary, other tests' too.
    let _lock = test_lock::exclusive().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let near = near(&cluster, NearSettings::default()).await;
    let writer = client(&cluster).await;
    let key = b"near:kill";
    set(&writer, key, "before").await;
    assert_eq!(near.get(key).await.unwrap().as_deref(), Some(&b"before"[..]));
    assert!(near.lookup(key).is_some());
    let primary = cluster.primary_for_slot(sharding_slot(key)).await.unwrap();
    let list: String = primary.command(["CLIENT", "LIST"]).await.unwrap();
    let tracking: Vec<&str> = list
        .lines()
        .filter(|l| l.split(' ').any(|f| f.starts_with("flags=") && f.contains('t')))
        .filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("id=")))
        .collect();
    assert!(!tracking.is_empty(), "a tracking connection is listed: {list}");
    for id in tracking {
        let _: i64 = primary.command(["CLIENT", "KILL", "ID", id]).await.unwrap();
    }
    // Written by another connection at once: the tracking connection is gone, no push will come.
    set(&writer, key, "after").await;
    let took = until_seen(&near, key, "after", Duration::from_secs(1)).await;
    eprintln!("after CLIENT KILL, the new value was served {took:?} after the write");
    assert!(
        near.stats().dropped >= 1,
        "the kept value was dropped for its token: {:?}",
        near.stats()
    );
}

/// `FLUSHALL` makes the server flush its tracking table (a `null` invalidation): nothing kept is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flushed_tracking_table_drops_everything_its_connection_read() {
    let _lock = test_lock::exclusive().await.unwrap();
    let cluster = LocalCluster::start(LocalClusterConfig {
        masters: 1,
        replicas_per_master: 0,
        ..Default::default()
    })
    .await
    .unwrap();
    let near = near(&cluster, NearSettings::default()).await;
    let writer = client(&cluster).await;
    for i in 0..50 {
        set(&writer, format!("near:flush:{i}").as_bytes(), "kept").await;
        kept(&near, format!("near:flush:{i}").as_bytes()).await;
    }
    let _: String = cluster.nodes()[0].command(["FLUSHALL"]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    for i in 0..50 {
        assert_eq!(
            near.get(format!("near:flush:{i}").as_bytes()).await.unwrap(),
            None
        );
    }
}

/// A slot that is migrating answers `ASK` for a key already moved: that read is served (through the
/// target) but not kept; once the slot has moved, a write on the new owner is read back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migrating_slot_is_not_cached() {
    let _lock = test_lock::exclusive().await.unwrap();
    let cluster = LocalCluster::start(LocalClusterConfig {
        replicas_per_master: 0,
        ..Default::default()
    })
    .await
    .unwrap();
    let near = near(&cluster, NearSettings::default()).await;
    let writer = client(&cluster).await;
    let key = b"near:migrate";
    let slot = sharding_slot(key);
    set(&writer, key, "on source").await;
    assert_eq!(near.get(key).await.unwrap().as_deref(), Some(&b"on source"[..]));
    let source = cluster.primary_for_slot(slot).await.unwrap();
    let target = cluster
        .primaries()
        .await
        .unwrap()
        .into_iter()
        .find(|n| n.addr() != source.addr())
        .unwrap();
    let (source_id, target_id) = (source.node_id().await.unwrap(), target.node_id().await.unwrap());
    let slot_text = slot.to_string();
    let _: String = target
        .command(["CLUSTER", "SETSLOT", &slot_text, "IMPORTING", &source_id])
        .await
        .unwrap();
    let _: String = source
        .command(["CLUSTER", "SETSLOT", &slot_text, "MIGRATING", &target_id])
        .await
        .unwrap();
    let port = target.port().to_string();
    let _: String = source
        .command([
            "MIGRATE",
            "127.0.0.1",
            &port,
            "",
            "0",
            "5000",
            "KEYS",
            "near:migrate",
        ])
        .await
        .unwrap();
    // MIGRATE deleted the key on the source: its invalidation reaches the near cache (on the
    // tracking connection, a moment after MIGRATE's own reply on another connection).
    let migrated = Instant::now();
    while near.lookup(key).is_some() {
        assert!(
            migrated.elapsed() < Duration::from_secs(1),
            "MIGRATE's delete invalidated the key"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let before = near.stats();
    for _ in 0..3 {
        assert_eq!(
            near.get(key).await.unwrap().as_deref(),
            Some(&b"on source"[..]),
            "read via ASK"
        );
    }
    let after = near.stats();
    assert_eq!(
        after.hits, before.hits,
        "nothing served from memory while the slot migrates"
    );
    assert_eq!(after.not_kept - before.not_kept, 3, "the ASK reads were not kept");
    assert_eq!(near.lookup(key), None);
    for node in cluster.primaries().await.unwrap() {
        let _: String = node
            .command(["CLUSTER", "SETSLOT", &slot_text, "NODE", &target_id])
            .await
            .unwrap();
    }
    set(&writer, key, "on target").await;
    until_seen(&near, key, "on target", Duration::from_secs(2)).await;
    // Kept again, now under the target's tracking connection, and invalidated by it.
    near.get(key).await.unwrap();
    set(&writer, key, "newer").await;
    until_seen(&near, key, "newer", Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opt_in_and_broadcast_modes_invalidate_too() {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let writer = client(&cluster).await;
    for (mode, prefix) in [
        (TrackingMode::OptIn, "near:optin"),
        (
            TrackingMode::Broadcast {
                prefixes: vec![Bytes::from_static(b"near:bcast")],
            },
            "near:bcast",
        ),
    ] {
        let near = near(
            &cluster,
            NearSettings {
                mode: mode.clone(),
                ..NearSettings::default()
            },
        )
        .await;
        keep_then_invalidate(&writer, &near, prefix, 100).await;
        if let TrackingMode::Broadcast { .. } = mode {
            // A key outside the prefixes would never be invalidated: it is read, never kept.
            set(&writer, b"near:other", "x").await;
            for _ in 0..3 {
                assert_eq!(near.get(b"near:other").await.unwrap().as_deref(), Some(&b"x"[..]));
            }
            assert_eq!(near.lookup(b"near:other"), None, "outside the broadcast prefixes");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_within_the_entry_and_byte_bounds() {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let writer = client(&cluster).await;
    let near = near(
        &cluster,
        NearSettings {
            max_entries: 500,
            max_bytes: 256 * 1024,
            ..NearSettings::default()
        },
    )
    .await;
    let big = "x".repeat(2000);
    for i in 0..2000 {
        let key = format!("near:bound:{i}");
        set(&writer, key.as_bytes(), if i % 2 == 0 { "small" } else { &big }).await;
        near.get(key.as_bytes()).await.unwrap();
    }
    let stats = near.stats();
    eprintln!("{stats:?}");
    assert!(stats.entries <= 500, "{stats:?}");
    assert!(stats.bytes <= 256 * 1024, "{stats:?}");
    assert!(stats.entries > 50, "still caching: {stats:?}");
    assert!(stats.evictions >= 1_000, "evictions counted: {stats:?}");
}

/// kill -9 and SIGSTOP of the key's primary: values it tracked stop being served before the promoted
/// replica accepts a write, and writes on the new primary are read back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_drops_the_values_of_the_failed_primary() {
    let _lock = test_lock::exclusive().await.unwrap();
    let cluster = LocalCluster::start(LocalClusterConfig::default()).await.unwrap();
    let near = near(&cluster, NearSettings::default()).await;
    let writer = client(&cluster).await;
    let keys: Vec<Vec<u8>> = (0..200).map(|i| format!("near:fail:{i}").into_bytes()).collect();
    for (round, fault) in ["kill -9", "SIGSTOP", "manual failover"].into_iter().enumerate() {
        let old = format!("old{round}");
        let mut slowest = Duration::ZERO;
        for key in &keys {
            set(&writer, key, &old).await;
            // Another client's write reaches this one as a push on another connection: a read right
            // after the write's acknowledgement may still see the kept value, within the bound.
            slowest = slowest.max(until_seen(&near, key, &old, Duration::from_secs(1)).await);
            kept(&near, key).await;
        }
        eprintln!("{fault}: before the fault, invalidations seen within {slowest:?}");
        let key = &keys[0];
        let victim = cluster.primary_for_slot(sharding_slot(key)).await.unwrap();
        let started = Instant::now();
        let promoted = match fault {
            "manual failover" => {
                // The old primary stays up, its tracking connection too: it becomes a replica and
                // applies the new primary's writes, which invalidate what it tracked.
                let replica = cluster.replicas_of(victim).await.unwrap()[0];
                replica
                    .failover(local_cluster::FailoverKind::Graceful)
                    .await
                    .unwrap();
                while replica.role().await.ok() != Some(local_cluster::Role::Primary) {
                    assert!(
                        started.elapsed() < Duration::from_secs(20),
                        "the manual failover ends"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                replica
            }
            _ => {
                if fault == "kill -9" {
                    victim.kill().unwrap();
                } else {
                    victim.pause().unwrap();
                }
                cluster
                    .wait_for_promotion(victim, Duration::from_secs(20))
                    .await
                    .unwrap()
            }
        };
        eprintln!(
            "{fault}: {} promoted after {:?}",
            promoted.addr(),
            started.elapsed()
        );
        let new = format!("new{round}");
        let written = loop {
            if writer
                .set(key, new.as_bytes(), SetOptions::default())
                .await
                .is_ok()
            {
                break Instant::now();
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the new primary takes writes"
            );
        };
        if fault == "manual failover" {
            // The old primary learns of the write through replication, a moment after the new
            // primary acknowledged it: within the bound.
            let took = until_seen(&near, key, &new, Duration::from_secs(1)).await;
            eprintln!("{fault}: the write was seen through the near cache {took:?} after it");
        }
        // The reading client may not know of the promotion yet (it fails fast, then refreshes): every
        // read that succeeds returns the new value.
        let mut failed = 0;
        let got = loop {
            match near.get(key).await {
                Ok(value) => break value,
                Err(_) if written.elapsed() < Duration::from_secs(10) => failed += 1,
                Err(e) => panic!("{fault}: reads still fail: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        eprintln!(
            "{fault}: first near read after the write: {got:?} ({:?} after it, {failed} failed reads before)",
            written.elapsed()
        );
        assert_eq!(
            got.as_deref(),
            Some(new.as_bytes()),
            "{fault}: no stale read after the failover"
        );
        // Every key of the failed shard: old values are gone or updated, never served stale after a write.
        for other in &keys {
            while writer
                .set(other, new.as_bytes(), SetOptions::default())
                .await
                .is_err()
            {
                assert!(started.elapsed() < Duration::from_secs(30), "writes resume");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            until_seen(&near, other, &new, Duration::from_secs(2)).await;
        }
        match fault {
            "SIGSTOP" => victim.resume().unwrap(),
            "kill -9" => victim.restart().await.unwrap(),
            _ => {}
        }
        cluster.wait_until_healthy(Duration::from_secs(30)).await.unwrap();
    }
}

/// For `count` keys under `prefix`: write v1, read it back, read until kept, write v2 through `writer`, and wait (1 s
/// at most) until the near cache serves v2.
async fn keep_then_invalidate(writer: &ClusterClient, near: &NearCache, prefix: &str, count: usize) {
    for i in 0..count {
        let key = format!("{prefix}:{i}");
        set(writer, key.as_bytes(), "v1").await;
        assert_eq!(
            near.get(key.as_bytes()).await.unwrap().as_deref(),
            Some(&b"v1"[..])
        );
        kept(near, key.as_bytes()).await;
        set(writer, key.as_bytes(), "v2").await;
        until_seen(near, key.as_bytes(), "v2", Duration::from_secs(1)).await;
    }
}

/// Reads `key` until the near cache keeps it (a read racing an invalidation keeps nothing).
async fn kept(near: &NearCache, key: &[u8]) {
    for _ in 0..100 {
        if near.lookup(key).is_some() {
            return;
        }
        near.get(key).await.unwrap();
    }
    panic!(
        "{:?} was never kept: {:?}",
        String::from_utf8_lossy(key),
        near.stats()
    );
}

fn sharding_slot(key: &[u8]) -> u16 {
    sharding::key_slot(key)
}

/// The local TTL cap: a kept value is not served past it, whatever the servers say.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_served_past_the_local_ttl_cap() {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let writer = client(&cluster).await;
    let near = near(
        &cluster,
        NearSettings {
            ttl_cap: Duration::from_millis(300),
            ..NearSettings::default()
        },
    )
    .await;
    set(&writer, b"near:cap", "v").await;
    kept(&near, b"near:cap").await;
    // The cap counts from before the read was sent, so from before this instant: past 300 ms from
    // here the value is gone, however late this task runs.
    let kept_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let early = near.lookup(b"near:cap");
    if kept_at.elapsed() < Duration::from_millis(250) {
        assert!(early.is_some(), "not dropped early");
    }
    tokio::time::sleep_until((kept_at + Duration::from_millis(300)).into()).await;
    assert_eq!(near.lookup(b"near:cap"), None, "served past the 300 ms cap");
    assert!(near.stats().dropped >= 1);
}

/// Tasks reading hot keys in a loop (every read a hit, none awaiting anything) on a 2-thread runtime:
/// the tracking connections' tasks still run, so a miss and another client's write are served, not
/// timed out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_looping_on_hits_do_not_starve_the_tracking_connections() {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let writer = client(&cluster).await;
    let near = near(&cluster, NearSettings::default()).await;
    for i in 0..100 {
        let key = format!("near:spin:{i}");
        set(&writer, key.as_bytes(), "hot").await;
        kept(&near, key.as_bytes()).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    // Wall time from before the spinners start: a starved runtime also starves this task's timers.
    let began = Instant::now();
    let spinners: Vec<_> = (0..8)
        .map(|t| {
            let (near, stop) = (near.clone(), stop.clone());
            tokio::spawn(async move {
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    i = (i + 1) % 100;
                    near.get(format!("near:spin:{i}").as_bytes()).await.unwrap();
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    set(&writer, b"near:spin:cold", "cold").await;
    let cold = near.get(b"near:spin:cold").await;
    set(&writer, b"near:spin:7", "changed").await;
    let seen = until_seen(&near, b"near:spin:7", "changed", Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for s in spinners {
        s.await.unwrap();
    }
    assert_eq!(cold.unwrap().as_deref(), Some(&b"cold"[..]));
    eprintln!(
        "with 8 tasks spinning on hits: a miss and a write seen in {:?} ({seen:?} for the write)",
        started.elapsed()
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "starved for {:?}",
        began.elapsed()
    );
}

/// One standalone server with a least-privilege ACL user (no `@dangerous`): the tracking connection
/// authenticates through `HELLO 3 AUTH`, may turn tracking on, and invalidations arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_server_and_an_acl_user_without_dangerous_commands() {
    let _lock = test_lock::shared().await.unwrap();
    let mut settings = local_cluster::NodeConfig::test_defaults();
    settings.set("user", "cache on >near-secret ~* &* +@all -@dangerous");
    let servers = local_cluster::LocalStandalone::start_with(1, settings)
        .await
        .unwrap();
    let config = || {
        ClusterConfig::builder()
            .nodes(servers.addrs())
            .username("cache")
            .password(cluster_config::Password::new("near-secret"))
            .build()
            .unwrap()
    };
    let writer = ClusterClient::connect(config()).await.unwrap();
    let near = NearCache::new(
        ClusterClient::connect(config()).await.unwrap(),
        NearSettings::default(),
    )
    .unwrap();
    keep_then_invalidate(&writer, &near, "near:acl", 50).await;
    let debug = format!("{near:?} {:?}", near.client());
    assert!(!debug.contains("near-secret"), "no password in Debug: {debug}");
}

/// A key with a TTL on the server is not kept past it: the server invalidates an expired key only when
/// it deletes it, and a plain GET would already miss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_value_does_not_outlive_its_ttl_on_the_server() {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let writer = client(&cluster).await;
    let near = near(&cluster, NearSettings::default()).await;
    writer
        .set(b"near:ttl", b"short", SetOptions::ttl(Duration::from_millis(300)))
        .await
        .unwrap();
    let written = Instant::now();
    kept(&near, b"near:ttl").await;
    // A kept value expires at most the key's PTTL after its read was sent, so by 300 ms after the
    // write it is gone (and the server, asked after that, has expired the key too).
    tokio::time::sleep_until((written + Duration::from_millis(300)).into()).await;
    assert_eq!(near.lookup(b"near:ttl"), None, "kept past the key's 300 ms TTL");
    assert_eq!(
        near.get(b"near:ttl").await.unwrap(),
        None,
        "expired on the server too"
    );
}

/// Mutual TLS: the tracking connection opens its own TLS session (the client certificate, the CA)
/// and says `HELLO 3` over it; values are kept and invalidated as in plain text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tracking_connection_speaks_mutual_tls() {
    let _lock = test_lock::shared().await.unwrap();
    let nodes = local_cluster::LocalStandalone::start_tls(1, local_cluster::TlsClientAuth::Required)
        .await
        .unwrap();
    let config = || nodes.config_builder().build().unwrap();
    let writer = ClusterClient::connect(config()).await.unwrap();
    let near = NearCache::new(
        ClusterClient::connect(config()).await.unwrap(),
        NearSettings::default(),
    )
    .unwrap();
    keep_then_invalidate(&writer, &near, "near:tls", 50).await;
    assert!(near.stats().invalidations >= 50, "{:?}", near.stats());
}
