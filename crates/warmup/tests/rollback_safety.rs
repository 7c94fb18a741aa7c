//! A rollback must only undo the warm-up's own writes: keys another client changed after the warm-up
//! wrote them keep the other client's value, and keys the warm-up did not write are never touched.
//!
//! Each test runs a warm-up, and another client overwrites some of the keys once the warm-up wrote
//! them, before it validates. One entry is a `DUMP` payload the server refuses, so its write genuinely
//! fails and a threshold of 0 rolls the warm-up back.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cluster_client::{ClusterClient, SetOptions};
use consistency::{ConsistencyConfig, Hlc, Version, Versioned, WriteOptions};
use local_cluster::{LocalCluster, test_lock};
use warmup::{Entry, Phase, Progress, Source, Warmup, WarmupConfig};

/// Keys another client overwrites right after the warm-up wrote them.
const HOT: usize = 50;
/// Keys nobody else touches: half held a value before the warm-up, half did not exist.
const COLD: usize = 200;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Plain,
    Versioned,
}

/// Reads a key as the mode stores it: the plain bytes, or the versioned value's bytes.
async fn read(client: &ClusterClient, store: &Versioned, mode: Mode, key: &str) -> Option<String> {
    let bytes = match mode {
        Mode::Plain => client.get(key.as_bytes()).await.unwrap(),
        Mode::Versioned => store
            .get(key.as_bytes())
            .await
            .unwrap()
            .map(|v| v.value().clone()),
    };
    bytes.map(|b| String::from_utf8_lossy(&b).into_owned())
}

async fn write(client: &ClusterClient, store: &Versioned, mode: Mode, key: &str, value: &str) {
    match mode {
        Mode::Plain => {
            client
                .set(key.as_bytes(), value.as_bytes(), SetOptions::default())
                .await
                .unwrap();
        }
        Mode::Versioned => {
            store
                .set(key.as_bytes(), value.as_bytes(), None, WriteOptions::default())
                .await
                .unwrap();
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

async fn concurrent_writes_survive_a_rollback(mode: Mode) {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let client = common::client(&cluster).await;
    let prefix = common::unique(&format!("rbsafe-{mode:?}"));
    let hot = {
        let prefix = prefix.clone();
        move |i: usize| format!("{prefix}:hot:{i}")
    };
    let cold = |i: usize| format!("{prefix}:cold:{i}");
    let bad = format!("{prefix}:bad");
    let future_key = format!("{prefix}:future");
    // The warm-up's store keeps the default write journal (as the cache's does), so the test can check
    // that a rolled-back write is not left for failover repair to write again.
    let store = Versioned::new(client.clone(), ConsistencyConfig::default()).unwrap();
    // The other application: its own client and versioned handle.
    let app_client = common::client(&cluster).await;
    let app_store = Versioned::new(app_client.clone(), ConsistencyConfig::default().journal(None)).unwrap();

    // Before: every other hot and cold key holds an old value; the key whose write fails holds one too.
    for i in (0..HOT).step_by(2) {
        write(&client, &store, mode, &hot(i), &format!("old hot {i}")).await;
    }
    for i in (0..COLD).step_by(2) {
        write(&client, &store, mode, &cold(i), &format!("old cold {i}")).await;
    }
    client
        .set(bad.as_bytes(), b"old bad", SetOptions::default())
        .await
        .unwrap();
    // Versioned mode: a value 30 s ahead of the warm-up's clock (inside the 1 min drift bound), so its
    // write comes back stale.
    let future_ms = now_ms() + 30_000;
    let future = Version::new(Hlc::new(future_ms, 0), store.writer());
    if mode == Mode::Versioned {
        store
            .set_with_version(
                future_key.as_bytes(),
                b"future",
                future,
                None,
                WriteOptions::default(),
            )
            .await
            .unwrap();
    }

    let mut entries: Vec<Entry> = (0..HOT)
        .map(|i| Entry::new(hot(i), format!("warm hot {i}")))
        .collect();
    entries.push(Entry::from_dump(bad.clone(), &b"not a DUMP payload"[..]));
    if mode == Mode::Versioned {
        entries.push(Entry::new(future_key.clone(), "warm future"));
    }
    entries.extend((0..COLD).map(|i| Entry::new(cold(i), format!("warm cold {i}"))));

    // The other application writes once the warm-up has written everything and before it validates:
    // the progress callback runs on the warm-up's task, so the warm-up waits for it.
    let overwrite = {
        let (app_client, app_store) = (app_client.clone(), app_store.clone());
        let (hot, bad, future_key) = (hot.clone(), bad.clone(), future_key.clone());
        move || async move {
            for i in 0..HOT {
                let key = hot(i);
                assert_eq!(
                    read(&app_client, &app_store, mode, &key).await.as_deref(),
                    Some(format!("warm hot {i}").as_str()),
                    "the warm-up wrote {key} before the application overwrote it"
                );
                write(&app_client, &app_store, mode, &key, &format!("app hot {i}")).await;
            }
            // Keys the warm-up did not write change too: it must not put them back either.
            app_client
                .set(bad.as_bytes(), b"app bad", SetOptions::default())
                .await
                .unwrap();
            if mode == Mode::Versioned {
                let newer = Version::new(Hlc::new(future_ms + 1, 0), app_store.writer());
                app_store
                    .set_with_version(
                        future_key.as_bytes(),
                        b"app future",
                        newer,
                        None,
                        WriteOptions::default(),
                    )
                    .await
                    .unwrap();
            }
        }
    };
    let overwritten = Arc::new(AtomicBool::new(false));
    let on_progress = {
        let overwritten = overwritten.clone();
        let runtime = tokio::runtime::Handle::current();
        let overwrite = std::sync::Mutex::new(Some(overwrite));
        move |p: &Progress| {
            if p.phase != Phase::Validating {
                return;
            }
            let overwrite = overwrite.lock().unwrap().take();
            if let Some(overwrite) = overwrite {
                overwritten.store(true, Ordering::SeqCst);
                tokio::task::block_in_place(|| {
                    runtime.block_on(async {
                        tokio::time::timeout(Duration::from_secs(60), overwrite())
                            .await
                            .expect("the application wrote within 60 s")
                    })
                });
            }
        }
    };

    let config = WarmupConfig::default().rollback_above(0.0);
    let warmup = match mode {
        Mode::Plain => Warmup::new(client.clone(), config).unwrap(),
        Mode::Versioned => Warmup::versioned(store.clone(), config).unwrap(),
    }
    .on_progress(on_progress);
    let run = tokio::spawn(async move { warmup.run(Source::entries(entries)).await });
    let report = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the warm-up ends within 120 s")
        .expect("the warm-up and the application's writes did not panic")
        .unwrap();
    assert!(overwritten.load(Ordering::SeqCst), "the application wrote");

    // The refused payload failed for good, so a threshold of 0 rolled the warm-up back.
    assert_eq!(report.failed, 1, "{report}");
    let rollback = report.rollback.as_ref().expect("the warm-up rolled back");

    // Every application write survived.
    let mut lost = Vec::new();
    for i in 0..HOT {
        let got = read(&client, &store, mode, &hot(i)).await;
        if got.as_deref() != Some(format!("app hot {i}").as_str()) {
            lost.push((hot(i), got));
        }
    }
    assert!(
        lost.is_empty(),
        "{} of {HOT} application writes were lost, first {:?}; {report}",
        lost.len(),
        lost.first()
    );
    // Keys the warm-up did not write hold what the application wrote last.
    assert_eq!(
        client.get(bad.as_bytes()).await.unwrap().as_deref(),
        Some(&b"app bad"[..]),
        "the key whose write failed"
    );
    if mode == Mode::Versioned {
        assert_eq!(
            read(&client, &store, mode, &future_key).await.as_deref(),
            Some("app future"),
            "the key whose versioned write came back stale"
        );
    }
    // Keys nobody else touched are rolled back: old values restored, new keys deleted.
    for i in 0..COLD {
        let want = (i % 2 == 0).then(|| format!("old cold {i}"));
        assert_eq!(read(&client, &store, mode, &cold(i)).await, want, "{}", cold(i));
    }
    assert_eq!(
        (rollback.restored, rollback.deleted, rollback.failed),
        ((COLD / 2) as u64, (COLD / 2) as u64, 0),
        "{report}"
    );
    // A rolled-back write is forgotten by the journal: failover repair would otherwise find the
    // restored (older) state on a promoted primary and write the warm-up's value back.
    if mode == Mode::Versioned {
        let journaled: std::collections::HashSet<bytes::Bytes> = store
            .journal()
            .expect("the default config keeps a journal")
            .latest()
            .into_iter()
            .filter(|entry| !entry.deleted)
            .map(|entry| entry.key)
            .collect();
        let left: Vec<String> = (0..COLD)
            .map(cold)
            .filter(|key| journaled.contains(key.as_bytes()))
            .collect();
        assert!(left.is_empty(), "rolled-back writes still journaled: {left:?}");
    }
    // The overwritten keys were left alone and counted, and validation did not call them bad: another
    // client's newer write is not a bad copy of the warm-up's.
    assert_eq!(rollback.skipped_changed, HOT as u64, "{report}");
    assert_eq!(rollback.changed_keys.len(), HOT, "{report}");
    let validation = report.validation.as_ref().unwrap();
    assert_eq!(
        (validation.superseded, validation.bad_entries),
        (HOT as u64, 0),
        "{report}"
    );
    // Only the failed write counts as bad.
    let attempted = report.written + report.failed;
    assert!(
        (report.bad_share - 1.0 / attempted as f64).abs() < 1e-9,
        "{report}"
    );
    client.close().await;
    app_client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_rollback_keeps_concurrent_writes() {
    concurrent_writes_survive_a_rollback(Mode::Plain).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_versioned_rollback_keeps_concurrent_writes() {
    concurrent_writes_survive_a_rollback(Mode::Versioned).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_undo_capture_stays_within_its_byte_budget() {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let client = common::client(&cluster).await;
    let prefix = common::unique("undo-budget");
    let key = |i: usize| format!("{prefix}:{i}");
    let budget = 64 << 10;
    // 1 MiB of previous values: 256 keys of 4 KiB, each captured before it is overwritten.
    let keys = 256;
    // Incompressible (a `DUMP` compresses repetitive strings with LZF): 4 KiB from a xorshift.
    let old = |i: usize| -> String {
        let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ (i as u64 + 1);
        (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from(b'!' + (x % 90) as u8)
            })
            .collect()
    };
    for i in 0..keys {
        client
            .set(key(i).as_bytes(), old(i).as_bytes(), SetOptions::default())
            .await
            .unwrap();
    }
    let mut entries: Vec<Entry> = (0..keys)
        .map(|i| Entry::new(key(i), format!("new {i}")))
        .collect();
    // A write that genuinely fails, so that a threshold of 0 rolls back what was written.
    entries.push(Entry::from_dump(
        format!("{prefix}:bad"),
        &b"not a DUMP payload"[..],
    ));
    let config = WarmupConfig::default()
        .undo_budget_bytes(budget)
        .rollback_above(0.0);
    let report = Warmup::new(client.clone(), config)
        .unwrap()
        .run(Source::entries(entries))
        .await
        .unwrap();

    let undo = report.undo.as_ref().expect("rollback capture was on");
    assert_eq!(undo.budget_bytes, budget as u64);
    assert!(
        undo.peak_bytes > 0 && undo.peak_bytes <= budget as u64,
        "held {} bytes at most, budget {budget}",
        undo.peak_bytes
    );
    // Most previous values did not fit: those entries were not written, and the report says so.
    assert!(
        undo.refused >= (keys / 2) as u64 && report.written > 0,
        "{report}"
    );
    assert_eq!(
        report.written + undo.refused + report.failed,
        keys as u64 + 1,
        "{report}"
    );
    assert!(!report.is_clean());
    assert!(report.to_string().contains("undo budget"), "{report}");
    let rollback = report.rollback.as_ref().expect("the warm-up rolled back");
    assert_eq!(
        (rollback.restored, rollback.failed, rollback.skipped_changed),
        (report.written, 0, 0),
        "{report}"
    );
    // Every key holds its old value again: refused keys were never written, written ones were put
    // back.
    for i in 0..keys {
        assert_eq!(
            client.get(key(i).as_bytes()).await.unwrap().as_deref(),
            Some(old(i).as_bytes()),
            "{}",
            key(i)
        );
    }
    client.close().await;
}
