//! A rollback must only undo the warm-up's own writes: keys another client changed after the warm-up
//! wrote them keep the other client's value, and keys the warm-up did not write are never touched.
//!
//! Each test runs a warm-up whose first window (the keys another client will overwrite) is written,
//! then holds the source back until a concurrent writer has overwritten those keys, then lets the
//! warm-up go on. One entry is a `DUMP` payload the server refuses, so the write genuinely fails and a
//! threshold of 0 rolls the warm-up back.

mod common;

use std::time::Duration;

use cluster_client::{ClusterClient, SetOptions};
use consistency::{ConsistencyConfig, Hlc, Version, Versioned, WriteOptions};
use futures::StreamExt;
use local_cluster::{LocalCluster, test_lock};
use warmup::{Entry, Source, Warmup, WarmupConfig};

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
    let store = Versioned::new(client.clone(), ConsistencyConfig::default().journal(None)).unwrap();
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
    // Versioned mode: a value an hour ahead of the warm-up's clock, so its write comes back stale.
    let future_ms = now_ms() + 3_600_000;
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

    // The first window: the hot keys, the refused `DUMP` payload, and (versioned) the stale write.
    let mut first: Vec<Entry> = (0..HOT)
        .map(|i| Entry::new(hot(i), format!("warm hot {i}")))
        .collect();
    first.push(Entry::from_dump(bad.clone(), &b"not a DUMP payload"[..]));
    if mode == Mode::Versioned {
        first.push(Entry::new(future_key.clone(), "warm future"));
    }
    let window = first.len();
    let rest: Vec<Entry> = (0..COLD)
        .map(|i| Entry::new(cold(i), format!("warm cold {i}")))
        .collect();
    let (first_written, first_written_rx) = tokio::sync::oneshot::channel::<()>();
    let (overwritten, overwritten_rx) = tokio::sync::oneshot::channel::<()>();
    // The source asks for its second window only after the first one is written.
    let held_back = futures::stream::once(async move {
        let _ = first_written.send(());
        // A writer that failed drops its sender: the warm-up goes on and the test fails on its join.
        let _ = overwritten_rx.await;
        futures::stream::iter(rest)
    })
    .flatten();
    let source = Source::stream(futures::stream::iter(first).chain(held_back));

    let writer = {
        let (app_client, app_store) = (app_client.clone(), app_store.clone());
        let (hot, bad, future_key) = (hot.clone(), bad.clone(), future_key.clone());
        tokio::spawn(async move {
            tokio::time::timeout(Duration::from_secs(60), first_written_rx)
                .await
                .expect("the warm-up wrote its first window within 60 s")
                .expect("the source was read");
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
            let _ = overwritten.send(());
        })
    };

    let config = WarmupConfig::default()
        .window_entries(window)
        .rollback_above(0.0);
    let warmup = match mode {
        Mode::Plain => Warmup::new(client.clone(), config).unwrap(),
        Mode::Versioned => Warmup::versioned(store.clone(), config).unwrap(),
    };
    let report = tokio::time::timeout(Duration::from_secs(120), warmup.run(source))
        .await
        .expect("the warm-up ends within 120 s")
        .unwrap();
    writer.await.expect("the concurrent writer finished");

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
        assert_eq!(
            read(&client, &store, mode, &cold(i)).await,
            want,
            "{}",
            cold(i)
        );
    }
    assert_eq!(
        (rollback.restored, rollback.deleted, rollback.failed),
        ((COLD / 2) as u64, (COLD / 2) as u64, 0),
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
