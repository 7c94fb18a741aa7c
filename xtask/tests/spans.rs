//! The `tracing` spans operators can turn on: one `rcc.call` per public call, one `rcc.refresh` per
//! topology refresh, and a span per warm-up phase, seen by a subscriber installed for this test only.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use cache_facade::{Cache, CacheConfig, ClusterConfig, WarmupConfig};
use local_cluster::{LocalCluster, test_lock};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Counts the spans created, by name, at every level.
#[derive(Default)]
struct SpanCounter {
    next: AtomicU64,
    seen: Arc<Mutex<BTreeMap<&'static str, usize>>>,
}

impl Subscriber for SpanCounter {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        *self
            .seen
            .lock()
            .expect("the counter lock")
            .entry(span.metadata().name())
            .or_default() += 1;
        Id::from_u64(self.next.fetch_add(1, Ordering::Relaxed) + 1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &Event<'_>) {}
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

// A current-thread runtime: the subscriber is this thread's default, and every task runs here.
#[tokio::test]
async fn calls_refreshes_and_warm_up_phases_have_spans() -> TestResult {
    let counter = SpanCounter::default();
    let seen = counter.seen.clone();
    let _default = tracing::subscriber::set_default(counter);
    let count = |name: &str| {
        seen.lock()
            .expect("the counter lock")
            .get(name)
            .copied()
            .unwrap_or(0)
    };

    let _lock = test_lock::shared().await?;
    let cluster = LocalCluster::shared().await?;
    let config = ClusterConfig::builder().nodes(cluster.seeds()).build()?;
    let cache = Cache::with_config(config, CacheConfig::builder().health(false).build()?).await?;
    let client = cache.client();

    let calls = count("rcc.call");
    for i in 0..10 {
        client.get(format!("xtask:spans:{i}").as_bytes()).await?;
    }
    assert_eq!(count("rcc.call") - calls, 10, "one span per call: {seen:?}");

    let refreshes = count("rcc.refresh");
    client.refresh_topology().await?;
    assert!(count("rcc.refresh") > refreshes, "{seen:?}");

    let entries = (0u64..20)
        .map(|i| cache.entry(format!("xtask:spans:w{i}"), &i))
        .collect::<Result<Vec<_>, _>>()?;
    cache.warm_up(entries, WarmupConfig::default()).await?;
    for phase in ["warmup.run", "warmup.write", "warmup.validate"] {
        assert!(count(phase) >= 1, "no {phase} span: {seen:?}");
    }
    client.close().await;
    Ok(())
}
