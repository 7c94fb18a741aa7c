//! The write journal's memory is bounded in bytes, not only in entries: 200 KB values written faster
//! than the journal ages them out must not grow it past its budget. The shared cluster is enough.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use consistency::{
    ConsistencyConfig, ENTRY_OVERHEAD_BYTES, Journal, JournalConfig, JournalEntry, Version, Versioned,
    WriteOptions,
};
use futures::StreamExt;
use local_cluster::{LocalCluster, test_lock};

/// The value bytes the journal would hand to a repair.
fn retained_value_bytes(journal: &Journal) -> usize {
    journal
        .latest()
        .iter()
        .map(|e| e.value.as_ref().map_or(0, Bytes::len))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_values_at_a_high_rate_stay_within_the_default_budget() {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let client = common::client(cluster.seeds()).await;
    let store = Versioned::new(client.clone(), ConsistencyConfig::default()).unwrap();
    let journal = store.journal().expect("the default keeps a journal");
    let budget = 64 * 1024 * 1024;
    let prefix = common::prefix("budget");
    let value = vec![b'j'; 200 * 1024];

    // 400 writes of 200 KB: 80 MB of values, well within the default count and age bounds.
    futures::stream::iter(0..400)
        .for_each_concurrent(8, |i| {
            let (store, value, key) = (&store, &value, format!("{prefix}:{i}"));
            async move {
                let outcome = store
                    .set(
                        key.as_bytes(),
                        value,
                        Some(Duration::from_secs(120)),
                        WriteOptions::default(),
                    )
                    .await
                    .unwrap();
                assert!(outcome.is_written(), "{outcome:?}");
            }
        })
        .await;
    let retained = retained_value_bytes(journal);
    assert!(
        retained <= budget,
        "the journal keeps {retained} bytes of values, over its 64 MiB budget"
    );
    assert!(journal.bytes() <= budget, "{} bytes", journal.bytes());
    assert_eq!(journal.len(), 400, "every write is still checkable");
    assert!(journal.values_dropped() > 0);
    // The newest writes keep their values: they are the ones a failover may have lost.
    let latest = journal.latest();
    assert!(latest.last().unwrap().value.is_some());
    assert!(latest.first().unwrap().value.is_none());
    client.close().await;
}

fn entry(key: String, value_len: usize) -> JournalEntry {
    JournalEntry {
        key: Bytes::from(key),
        version: Version::default(),
        deleted: false,
        value: Some(Bytes::from(vec![0u8; value_len])),
        ttl: None,
        written_at: Instant::now(),
        mark: None,
    }
}

#[test]
fn values_go_first_then_the_oldest_entries() {
    let config = JournalConfig {
        max_bytes: 1024 * 1024,
        ..JournalConfig::default()
    };
    let journal = Journal::new(config).unwrap();
    // 20 values of 200 KB: 4 MB into a 1 MiB budget.
    for i in 0..20 {
        journal.track_write(entry(format!("v{i}"), 200 * 1024));
        assert!(journal.bytes() <= 1024 * 1024, "after {i}: {}", journal.bytes());
    }
    assert_eq!(journal.len(), 20, "dropping values was enough");
    assert_eq!(journal.values_dropped(), 15);
    assert_eq!(journal.entries_dropped(), 0);
    let kept: Vec<bool> = journal.latest().iter().map(|e| e.value.is_some()).collect();
    assert_eq!(kept, [[false; 15].as_slice(), &[true; 5]].concat());

    // Keys alone over the budget: the oldest entries go.
    let key_bytes = 64 * 1024;
    for i in 0..40 {
        journal.track_write(entry(format!("{i:05}{}", "k".repeat(key_bytes - 5)), 0));
        assert!(
            journal.bytes() <= 1024 * 1024,
            "after key {i}: {}",
            journal.bytes()
        );
    }
    assert!(journal.entries_dropped() > 0);
    let per_entry = ENTRY_OVERHEAD_BYTES + key_bytes;
    assert_eq!(journal.len(), 1024 * 1024 / per_entry);
    // A single value larger than the whole budget is not kept, the write still is.
    journal.clear();
    assert_eq!(journal.bytes(), 0);
    journal.track_write(entry("huge".into(), 2 * 1024 * 1024));
    assert_eq!(journal.len(), 1);
    assert!(journal.latest()[0].value.is_none());
    assert!(journal.bytes() <= 1024 * 1024);
}
