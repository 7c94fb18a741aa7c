//! Sentinel mode on real processes: 1 primary + 2 replicas + 3 sentinels from `local-cluster`.
//!
//! Every operation through the sentinels; a sentinel down at connect; a wrong master name; and the
//! failover drill: kill -9 of the primary under load, followed within 1 s of the sentinels' switch,
//! no call outliving its timeout, and no acknowledged write lost.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cluster_client::{
    CallOptions, ClientEvent, ClusterClient, Deployment, Error, ReadFrom, Script, SetOptions, Value,
};
use cluster_config::{ClusterConfig, Mode};
use fred::prelude::{ClientLike, EventInterface, PubsubInterface};
use local_cluster::{LocalSentinel, LocalSentinelConfig, test_lock};

/// The command timeout of the drill's client.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(1);

/// Scheduling slack on the two shared cores for "no call outlives its timeout" and for "the client
/// follows within 1 s of the switch": a test process, six Redis processes and the load compete there,
/// and a timer can fire late by tens of milliseconds under that load.
const MARGIN: Duration = Duration::from_millis(250);

fn config(deployment: &LocalSentinel, master: &str) -> ClusterConfig {
    ClusterConfig::builder()
        .mode(Mode::Sentinel)
        .sentinel_nodes(deployment.sentinel_addrs())
        .sentinel_master(master)
        .command_timeout(COMMAND_TIMEOUT)
        .build()
        .expect("valid sentinel config")
}

async fn client(deployment: &LocalSentinel) -> ClusterClient {
    ClusterClient::connect(config(deployment, deployment.master_name()))
        .await
        .expect("client connects through the sentinels")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_through_the_sentinels() {
    let _lock = test_lock::shared().await.unwrap();
    let deployment = LocalSentinel::start(LocalSentinelConfig::default())
        .await
        .unwrap();
    let client = client(&deployment).await;
    assert_eq!(client.deployment(), Deployment::Sentinel);
    let topology = client.topology();
    assert_eq!(topology.shards().len(), 1);
    assert_eq!(
        topology.shards()[0].primary,
        deployment.primary_addr().await.unwrap()
    );
    let mut replicas = topology.shards()[0].replicas.clone();
    replicas.sort();
    let mut expected: Vec<String> = deployment.nodes()[1..].iter().map(|n| n.addr()).collect();
    expected.sort();
    assert_eq!(replicas, expected);

    assert!(client.set(b"s:a", b"1", SetOptions::default()).await.unwrap());
    assert_eq!(client.get(b"s:a").await.unwrap().as_deref(), Some(&b"1"[..]));
    assert!(client.exists(b"s:a").await.unwrap());
    assert!(client.del(b"s:a").await.unwrap());
    assert_eq!(client.get(b"s:a").await.unwrap(), None);

    let entries: Vec<(String, String, Option<Duration>)> = (0..50)
        .map(|i| (format!("s:batch:{i}"), format!("v{i}"), None))
        .collect();
    assert!(client.set_many(&entries).await.iter().all(Result::is_ok));
    let keys: Vec<&str> = entries.iter().map(|(k, _, _)| k.as_str()).collect();
    let values = client.get_many(&keys).await;
    for (i, value) in values.into_iter().enumerate() {
        assert_eq!(value.unwrap().as_deref(), Some(format!("v{i}").as_bytes()));
    }
    assert!(
        client
            .del_many(&keys)
            .await
            .into_iter()
            .all(|r| matches!(r, Ok(true)))
    );

    let script = Script::new("redis.call('SET', KEYS[1], ARGV[1]); return redis.call('GET', KEYS[1])");
    let reply = client.eval(&script, &[b"s:script"], &[b"x"]).await.unwrap();
    assert_eq!(reply, Value::from("x"));

    // A replica read is served (by a replica within the lag bound, else the primary).
    client
        .set(b"s:replica", b"r", SetOptions::default())
        .await
        .unwrap();
    let replica_reads = client.with_options(CallOptions::default().read_from(ReadFrom::Replica));
    assert_eq!(
        replica_reads.get(b"s:replica").await.unwrap().as_deref(),
        Some(&b"r"[..])
    );
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_down_at_connect_is_skipped_and_a_wrong_master_is_named() {
    let _lock = test_lock::shared().await.unwrap();
    let deployment = LocalSentinel::start(LocalSentinelConfig::default())
        .await
        .unwrap();
    deployment.sentinels()[0].kill().unwrap();
    let client = client(&deployment).await;
    client.set(b"s:down", b"1", SetOptions::default()).await.unwrap();
    assert_eq!(client.get(b"s:down").await.unwrap().as_deref(), Some(&b"1"[..]));
    client.close().await;

    let wrong = ClusterClient::connect(config(&deployment, "nosuchmaster")).await;
    match wrong {
        Err(error @ Error::UnknownSentinelMaster { .. }) => {
            let message = error.to_string();
            assert!(message.contains("REDIS_SENTINEL_MASTER"), "{message}");
            assert!(message.contains("`nosuchmaster`"), "{message}");
        }
        other => panic!("expected UnknownSentinelMaster, got {other:?}"),
    }

    let mut nobody = config(&deployment, deployment.master_name()).sentinel().clone();
    nobody.nodes.truncate(1);
    let only_dead = ClusterConfig::builder()
        .mode(Mode::Sentinel)
        .sentinel_nodes(nobody.nodes.iter().map(ToString::to_string))
        .sentinel_master(deployment.master_name())
        .connect_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    match ClusterClient::connect(only_dead).await {
        Err(error @ Error::NoSentinelReachable { .. }) => {
            assert!(error.to_string().contains("REDIS_SENTINEL_NODES"), "{error}");
        }
        other => panic!("expected NoSentinelReachable, got {other:?}"),
    }
}

/// The first `+switch-master` any sentinel publishes, as a plain subscriber sees it.
async fn watch_switch(
    deployment: &LocalSentinel,
) -> (Arc<Mutex<Option<Instant>>>, Vec<fred::prelude::Client>) {
    let seen = Arc::new(Mutex::new(None));
    let mut clients = Vec::new();
    for sentinel in deployment.sentinels() {
        let config = fred::prelude::Config {
            server: fred::prelude::ServerConfig::new_centralized("127.0.0.1", sentinel.port()),
            ..Default::default()
        };
        let client = fred::prelude::Builder::from_config(config).build().unwrap();
        client.init().await.unwrap();
        let first = seen.clone();
        client.on_message(move |_| {
            let first = first.clone();
            async move {
                let mut first = first.lock().unwrap();
                first.get_or_insert_with(Instant::now);
                Ok(())
            }
        });
        client.subscribe("+switch-master").await.unwrap();
        clients.push(client);
    }
    (seen, clients)
}

/// One write's outcome in the drill.
struct Write {
    value: u64,
    acknowledged: bool,
    started: Instant,
    finished: Instant,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_primary_under_load_is_followed_within_a_second_of_the_switch() {
    let _lock = test_lock::exclusive().await.unwrap();
    eprintln!("drill: lock held, starting 1 primary + 2 replicas + 3 sentinels");
    let deployment = LocalSentinel::start(LocalSentinelConfig::default())
        .await
        .unwrap();
    let client = client(&deployment).await;
    eprintln!("drill: client connected; starting the load");
    let mut events = client.subscribe();
    let (switched, _watchers) = watch_switch(&deployment).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let longest = Arc::new(Mutex::new(Duration::ZERO));
    let failed_calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for task in 0..8 {
        let (client, stop, longest, failed) = (
            client.clone(),
            stop.clone(),
            longest.clone(),
            failed_calls.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let keys: Vec<String> = (0..20).map(|k| format!("drill:{task}:{k}")).collect();
            let mut history: HashMap<String, Vec<Write>> = HashMap::new();
            let mut value = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for key in &keys {
                    value += 1;
                    let started = Instant::now();
                    let written = client
                        .set(
                            key.as_bytes(),
                            value.to_string().as_bytes(),
                            SetOptions::default(),
                        )
                        .await;
                    let took = started.elapsed();
                    let read = client.get(key.as_bytes()).await;
                    let read_took = started.elapsed() - took;
                    {
                        let mut longest = longest.lock().unwrap();
                        *longest = (*longest).max(took).max(read_took);
                    }
                    let failures = usize::from(written.is_err()) + usize::from(read.is_err());
                    if failures > 0 {
                        failed.fetch_add(failures, std::sync::atomic::Ordering::Relaxed);
                        // While the shard has no primary, calls fail fast without awaiting anything;
                        // a caller that retried at once would spin and starve the runtime's two
                        // threads, so it pauses as a real caller's backoff would.
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    history.entry(key.clone()).or_default().push(Write {
                        value,
                        acknowledged: written.is_ok(),
                        started,
                        finished: started + took,
                    });
                }
            }
            history
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let old = deployment.primary_addr().await.unwrap();
    deployment.kill_primary().await.unwrap();
    // After the kill returned (the process is reaped): no write started from here on can have been
    // acknowledged by the old primary.
    let killed_at = Instant::now();
    eprintln!("drill: killed the primary {old}; waiting for the sentinels' failover");
    let promoted = deployment
        .wait_for_failover(&old, Duration::from_secs(20))
        .await
        .unwrap();
    eprintln!("drill: sentinels promoted {promoted}; load runs 1.5 s more");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut history: HashMap<String, Vec<Write>> = HashMap::new();
    for task in tasks {
        history.extend(task.await.unwrap());
    }
    eprintln!("drill: load stopped; checking the history");
    let switch_at = switched
        .lock()
        .unwrap()
        .expect("a sentinel published +switch-master");

    // The first acknowledged write started after the kill went to the new primary: the old one was dead.
    let first_success = history
        .values()
        .flatten()
        .filter(|w| w.acknowledged && w.started > killed_at)
        .map(|w| w.finished)
        .min()
        .expect("writes succeed after the failover");
    let followed = first_success.saturating_duration_since(switch_at);
    let longest = *longest.lock().unwrap();
    let failed = failed_calls.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "sentinel drill: switch {:?} after the kill; first write success {:?} after the kill and {followed:?} \
         after the switch; {failed} failed calls; longest call {longest:?}",
        switch_at - killed_at,
        first_success - killed_at,
    );
    assert!(
        followed < Duration::from_secs(1) + MARGIN,
        "the client followed the switch only after {followed:?}"
    );
    assert!(longest <= COMMAND_TIMEOUT + MARGIN, "a call took {longest:?}");
    assert_eq!(client.topology().shards()[0].primary, promoted);

    // No acknowledged write is lost: each key holds its last acknowledged value, or a later one whose
    // write failed (a failed write may still have been applied).
    let reader = client.with_options(CallOptions::default().read_from(ReadFrom::Primary));
    for (key, writes) in &history {
        let stored = reader.get(key.as_bytes()).await.unwrap();
        let stored: Option<u64> = stored.and_then(|b| std::str::from_utf8(&b).ok()?.parse().ok());
        let last_acknowledged = writes.iter().filter(|w| w.acknowledged).map(|w| w.value).max();
        match (stored, last_acknowledged) {
            (Some(stored), Some(acked)) if stored == acked => {}
            (Some(stored), Some(acked)) if stored > acked => assert!(
                writes.iter().any(|w| w.value == stored && !w.acknowledged),
                "{key} holds {stored}, which no failed write carried (last acknowledged {acked})"
            ),
            (stored, acked) => panic!("{key}: acknowledged write {acked:?} lost, the key holds {stored:?}"),
        }
    }
    let mut failover_seen = false;
    while let Ok(event) = events.try_recv() {
        if let ClientEvent::FailoverObserved {
            old_primary,
            new_primary,
            ..
        } = event
        {
            assert_eq!(
                (old_primary.as_str(), new_primary.as_str()),
                (old.as_str(), promoted.as_str())
            );
            failover_seen = true;
        }
    }
    assert!(failover_seen, "the client reported the failover");
    client.close().await;
}
