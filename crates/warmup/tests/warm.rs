//! Warm-ups on a shared 3 + 3 cluster of real processes (no faults).

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster_client::{Bytes, Ttl};
use consistency::{ConsistencyConfig, Hlc, Version, Versioned, WriteOptions};
use local_cluster::{LocalCluster, test_lock};
use warmup::{Entry, Phase, Priority, Progress, Source, ValidationConfig, Warmup, WarmupConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_entries_are_readable_on_primaries_and_replicas() {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let client = common::client(&cluster).await;
    let prefix = common::unique("bulk");
    let seen: Arc<Mutex<Vec<Progress>>> = Arc::default();
    let sink = seen.clone();
    let warmup = Warmup::new(
        client.clone(),
        WarmupConfig::default().progress_interval(Duration::from_millis(20)),
    )
    .unwrap()
    .on_progress(move |p| sink.lock().unwrap().push(p.clone()));
    let watch = warmup.subscribe();

    let total = 100_000usize;
    let value = |i: usize| format!("value-{i:06}-{}", "x".repeat(i % 50));
    let entries = (0..total)
        .map(|i| {
            Entry::new(format!("{prefix}:{i}"), value(i)).ttl(Duration::from_secs(600 + (i % 60) as u64))
        })
        .collect::<Vec<_>>();
    let report = warmup.run(Source::entries(entries)).await.unwrap();

    assert_eq!(report.read, total as u64);
    assert_eq!(report.written, total as u64, "{report}");
    assert!(report.is_clean(), "{report}");
    let validation = report.validation.as_ref().expect("validation is on by default");
    assert_eq!(
        (validation.sampled, validation.bad_entries),
        (total as u64, 0),
        "{validation:?}"
    );
    // Every copy on every replica (one per shard here) was read.
    assert_eq!(validation.checked, total as u64);
    assert!(
        validation.acks.iter().all(|a| a.acked == Some(1)),
        "{:?}",
        validation.acks
    );
    assert_eq!(report.shards.len(), 3);
    assert_eq!(report.shards.iter().map(|s| s.written).sum::<u64>(), total as u64);

    // Independently of the warm-up's own validation: every copy, on primaries and replicas.
    let keys: Vec<Bytes> = (0..total).map(|i| Bytes::from(format!("{prefix}:{i}"))).collect();
    let copies = common::copies(&client, &keys).await;
    assert_eq!(copies.len(), 6, "three primaries and three replicas hold copies");
    for (node, pairs) in &copies {
        let wrong: Vec<&(Bytes, Option<Bytes>)> = pairs
            .iter()
            .filter(|(key, got)| {
                let i: usize = std::str::from_utf8(&key[prefix.len() + 1..])
                    .unwrap()
                    .parse()
                    .unwrap();
                got.as_deref() != Some(value(i).as_bytes())
            })
            .collect();
        assert!(
            wrong.is_empty(),
            "{node}: {} wrong copies, first {:?}",
            wrong.len(),
            wrong.first()
        );
    }
    assert_eq!(copies.values().map(Vec::len).sum::<usize>(), total * 2);
    match client.pttl(&keys[59]).await.unwrap() {
        Ttl::Expires(left) => assert!(
            left > Duration::from_secs(600) && left <= Duration::from_secs(659),
            "{left:?}"
        ),
        other => panic!("{other:?}"),
    }

    // Progress went forward and ended done.
    let seen = seen.lock().unwrap().clone();
    assert!(seen.len() > 3, "{} progress updates", seen.len());
    assert!(
        seen.windows(2)
            .all(|w| w[0].written <= w[1].written && w[0].elapsed <= w[1].elapsed)
    );
    let phases: Vec<Phase> = seen.iter().map(|p| p.phase).collect();
    let at = |phase: Phase| {
        phases
            .iter()
            .position(|p| *p == phase)
            .unwrap_or_else(|| panic!("{phase:?} in {phases:?}"))
    };
    assert!(at(Phase::Writing(Priority::Normal)) < at(Phase::Validating));
    assert!(at(Phase::Validating) < at(Phase::Done));
    let last = seen.last().unwrap();
    assert_eq!(
        (last.phase, last.written, last.planned),
        (Phase::Done, total as u64, total as u64)
    );
    assert_eq!(last.eta, Some(Duration::ZERO));
    assert_eq!(last.validated, total as u64);
    assert!(last.entries_per_second > 0.0 && last.bytes_per_second > last.entries_per_second);
    assert_eq!(*watch.borrow(), *last);
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_critical_entry_is_written_before_the_first_normal_one() {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let client = common::client(&cluster).await;
    let prefix = common::unique("prio");
    let primaries: Vec<String> = client
        .topology()
        .shards()
        .iter()
        .map(|s| s.primary.clone())
        .collect();
    let monitor = common::Monitor::start(&primaries, &prefix).await;

    // Critical entries are scattered through the input; the warm-up must still write them first.
    let total = 3_000;
    let is_critical = |i: usize| i % 10 == 7;
    let entries = (0..total)
        .map(|i| {
            let kind = if is_critical(i) { "critical" } else { "normal" };
            let entry = Entry::new(format!("{prefix}:{kind}:{i}"), format!("v{i}"));
            if is_critical(i) {
                entry.priority(Priority::Critical)
            } else {
                entry
            }
        })
        .collect::<Vec<_>>();
    let warmup = Warmup::new(client.clone(), WarmupConfig::default().validation(None)).unwrap();
    let report = warmup.run(Source::entries(entries)).await.unwrap();
    assert_eq!(report.written, total as u64, "{report}");

    // The servers' own clocks say when each key was written (one machine, one clock).
    let lines = monitor.stop().await;
    let mut critical_last = f64::MIN;
    let mut normal_first = f64::MAX;
    let mut keys_seen = std::collections::HashSet::new();
    for (time, line) in &lines {
        for arg in common::monitor_args(line)
            .into_iter()
            .filter(|a| a.starts_with(&prefix))
        {
            if arg.contains(":critical:") {
                critical_last = critical_last.max(*time);
            } else {
                normal_first = normal_first.min(*time);
            }
            keys_seen.insert(arg);
        }
    }
    assert_eq!(keys_seen.len(), total, "MONITOR saw every key written");
    assert!(
        critical_last < normal_first,
        "last critical write at {critical_last}, first normal write at {normal_first}"
    );
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_reported_with_its_line_and_the_rest_is_written() {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let config = cluster_config::ClusterConfig::builder()
        .nodes(cluster.seeds())
        .value_max_bytes(1024)
        .build()
        .unwrap();
    let client = cluster_client::ClusterClient::connect(config).await.unwrap();
    let prefix = common::unique("input");
    let mut file = tempfile::NamedTempFile::new().unwrap();
    let big = "b".repeat(2_000);
    let lines = [
        format!(r#"{{"key": "{prefix}:1", "value": "one"}}"#),
        format!(r#"{{"key": "{prefix}:2", "value": "#),
        String::new(),
        format!(r#"{{"key": "{prefix}:4", "value": {{"n": 4}}, "ttl_ms": 90000}}"#),
        format!(r#"{{"key": "{prefix}:5", "value": "{big}"}}"#),
        "not json at all".to_string(),
        format!(r#"{{"key": "{prefix}:7", "value": "seven", "priority": "critical"}}"#),
    ];
    for line in &lines {
        writeln!(file, "{line}").unwrap();
    }
    file.flush().unwrap();

    let warmup = Warmup::new(client.clone(), WarmupConfig::default()).unwrap();
    let report = warmup.run(Source::json_lines(file.path())).await.unwrap();

    assert_eq!(
        (report.read, report.written, report.rejected, report.failed),
        (6, 3, 3, 0),
        "{report}"
    );
    let rejected: Vec<(Option<u64>, Option<Bytes>)> = report
        .rejections
        .iter()
        .map(|r| (r.line, r.key.clone()))
        .collect();
    assert_eq!(
        rejected,
        [
            (Some(2), None),
            (Some(5), Some(Bytes::from(format!("{prefix}:5")))),
            (Some(6), None),
        ]
    );
    assert!(
        report.rejections[1]
            .reason
            .contains("over the limit of 1024 bytes"),
        "{}",
        report.rejections[1]
    );
    assert!(
        report.rejections[0]
            .to_string()
            .starts_with("line 2: not a warm-up entry"),
        "{}",
        report.rejections[0]
    );
    for (key, want) in [
        ("1", Some("one")),
        ("4", Some(r#"{"n":4}"#)),
        ("5", None),
        ("7", Some("seven")),
    ] {
        let got = client.get(format!("{prefix}:{key}").as_bytes()).await.unwrap();
        assert_eq!(got.as_deref(), want.map(str::as_bytes), "key {key}");
    }
    match client.pttl(format!("{prefix}:4").as_bytes()).await.unwrap() {
        Ttl::Expires(left) => assert!(
            left > Duration::from_secs(85) && left <= Duration::from_secs(90),
            "{left:?}"
        ),
        other => panic!("{other:?}"),
    }
    // A file that is not there fails before anything is written.
    let error = warmup
        .run(Source::json_lines("/nonexistent/entries.jsonl"))
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("/nonexistent/entries.jsonl"),
        "{error}"
    );
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versioned_warm_ups_never_overwrite_a_newer_value() {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let client = common::client(&cluster).await;
    let prefix = common::unique("versioned");
    let store = Versioned::new(client.clone(), ConsistencyConfig::default().journal(None)).unwrap();
    // Someone stored a value whose version is 30 s ahead of the warm-up's clock (within the default
    // 1 min drift bound, so the store accepts it; a version further ahead is refused as clock skew).
    let future = Version::new(
        Hlc::new(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64
                + 30_000,
            0,
        ),
        store.writer(),
    );
    let newer = format!("{prefix}:0");
    store
        .set_with_version(newer.as_bytes(), b"newer", future, None, WriteOptions::default())
        .await
        .unwrap();

    let entries: Vec<Entry> = (0..500)
        .map(|i| Entry::new(format!("{prefix}:{i}"), format!("warm {i}")))
        .collect();
    let warmup = Warmup::versioned(store.clone(), WarmupConfig::default()).unwrap();
    let report = warmup.run(Source::entries(entries)).await.unwrap();

    assert_eq!(
        (report.written, report.skipped, report.failed),
        (499, 1, 0),
        "{report}"
    );
    let validation = report.validation.as_ref().unwrap();
    assert_eq!(
        (validation.sampled, validation.bad_entries),
        (499, 0),
        "{validation:?}"
    );
    let kept = store.get(newer.as_bytes()).await.unwrap().unwrap();
    assert_eq!(
        (kept.value().as_ref(), kept.version()),
        (&b"newer"[..], Some(future))
    );
    let warmed = store
        .get(format!("{prefix}:7").as_bytes())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(warmed.value().as_ref(), b"warm 7");
    assert!(
        warmed.version().is_some(),
        "the warm-up wrote a versioned envelope"
    );
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sampled_validation_reads_back_about_the_share_asked() {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let client = common::client(&cluster).await;
    let prefix = common::unique("sample");
    let config = WarmupConfig::default()
        .validation(Some(ValidationConfig::default().sample(0.1)))
        .shard_parallelism(1)
        .batch_size(64)
        .ttl_jitter(0.5);
    let entries: Vec<Entry> = (0..5_000)
        .map(|i| Entry::new(format!("{prefix}:{i}"), "v").ttl(Duration::from_secs(100)))
        .collect();
    let report = Warmup::new(client.clone(), config)
        .unwrap()
        .run(Source::entries(entries))
        .await
        .unwrap();
    assert!(report.is_clean(), "{report}");
    let sampled = report.validation.as_ref().unwrap().sampled;
    assert!((350..=650).contains(&sampled), "{sampled} of 5000 sampled at 10%");
    // Jitter shortened the TTLs to between 50 s and 100 s.
    let mut ttls = Vec::new();
    for i in 0..20 {
        match client.pttl(format!("{prefix}:{i}").as_bytes()).await.unwrap() {
            Ttl::Expires(left) => ttls.push(left),
            other => panic!("{other:?}"),
        }
    }
    assert!(
        ttls.iter()
            .all(|t| *t >= Duration::from_secs(45) && *t <= Duration::from_secs(100)),
        "{ttls:?}"
    );
    assert!(
        ttls.iter().any(|t| *t < Duration::from_secs(90)),
        "jitter shortened some TTLs: {ttls:?}"
    );
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_mset_and_scripts_every_entry_is_written_key_by_key() {
    let _lock = test_lock::shared().await.unwrap();
    // A server whose ACL-less stand-in for "this user may not batch": the commands do not exist.
    let mut settings = local_cluster::NodeConfig::test_defaults();
    settings.set("rename-command", "MSET \"\"");
    settings.set("rename-command", "EVALSHA \"\"");
    let standalone = local_cluster::LocalStandalone::start_with(1, settings)
        .await
        .unwrap();
    let config = cluster_config::ClusterConfig::builder()
        .nodes(standalone.addrs())
        .build()
        .unwrap();
    let client = cluster_client::ClusterClient::connect(config).await.unwrap();
    let entries: Vec<Entry> = (0..2_000)
        .map(|i| {
            let entry = Entry::new(format!("plain:{i}"), format!("v{i}"));
            if i % 2 == 0 {
                entry.ttl(Duration::from_secs(60))
            } else {
                entry
            }
        })
        .collect();
    let report = Warmup::new(client.clone(), WarmupConfig::default())
        .unwrap()
        .run(Source::entries(entries))
        .await
        .unwrap();
    assert_eq!((report.written, report.failed), (2_000, 0), "{report}");
    assert!(report.is_clean(), "{report}");
    // Without replicas, validation read the primary.
    let validation = report.validation.as_ref().unwrap();
    assert_eq!((validation.checked, validation.acks[0].replicas), (2_000, 0));
    assert_eq!(
        client.get(b"plain:1999").await.unwrap().as_deref(),
        Some(&b"v1999"[..])
    );
    assert!(matches!(
        client.pttl(b"plain:1998").await.unwrap(),
        Ttl::Expires(_)
    ));
    assert_eq!(client.pttl(b"plain:1999").await.unwrap(), Ttl::Persistent);
    client.close().await;
}
