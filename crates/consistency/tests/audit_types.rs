//! The cross-deployment audit compares every type, not only strings: a hash missing a field on one
//! side, a key of another type, a reordered list, a changed score, a shorter stream and a lost TTL
//! are all reported; identical keys (in whatever order their fields were written, and large enough
//! to be read in several pages) pass. A standalone node is the source, the shared cluster the target.

mod common;

use std::collections::BTreeSet;

use cluster_client::{ClusterClient, Value};
use consistency::{AuditMode, AuditOptions, KeyState, SyncHistory, audit_between};
use local_cluster::{LocalCluster, LocalStandalone, test_lock};

/// Runs a command for `key` on the primary that serves it.
async fn run(client: &ClusterClient, key: &str, args: &[&str]) {
    let node = client
        .topology()
        .shard_for_key(key.as_bytes())
        .expect("a shard serves the key")
        .primary
        .clone();
    let args: Vec<Value> = args.iter().map(|&a| Value::from(a)).collect();
    client
        .node_command::<Value>(&node, args)
        .await
        .unwrap_or_else(|e| panic!("{key}: {e}"));
}

/// Writes `args` (starting with the command name, then the key) on both sides.
async fn both(source: &ClusterClient, target: &ClusterClient, args: &[&str]) {
    run(source, args[1], args).await;
    run(target, args[1], args).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_between_deployments_compares_every_type() {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let standalone = LocalStandalone::start(1).await.unwrap();
    let source = common::client(standalone.addrs()).await;
    let target = common::client(cluster.seeds()).await;
    let p = common::prefix("types");
    let key = |name: &str| format!("{p}:{name}");
    let (s, t) = (&source, &target);

    // Identical content; the small hash written in a different field order on each side.
    let k = key("same-hash");
    run(s, &k, &["HSET", &k, "f1", "a", "f2", "b", "f3", "c"]).await;
    run(t, &k, &["HSET", &k, "f3", "c", "f1", "a", "f2", "b"]).await;
    both(s, t, &["RPUSH", &key("same-list"), "a", "b", "c"]).await;
    both(s, t, &["SADD", &key("same-set"), "x", "y", "z"]).await;
    both(s, t, &["ZADD", &key("same-zset"), "1", "a", "2.5", "b"]).await;
    both(s, t, &["XADD", &key("same-stream"), "1-1", "f", "v"]).await;
    both(s, t, &["XADD", &key("same-stream"), "2-1", "f", "w"]).await;
    let k = key("same-ttl-hash");
    both(s, t, &["HSET", &k, "f", "v"]).await;
    both(s, t, &["PEXPIRE", &k, "600000"]).await;
    // Large enough to take several pages (200 elements each).
    for chunk in 0..5 {
        let mut hash = vec!["HSET".to_string(), key("big-hash")];
        let mut list = vec!["RPUSH".to_string(), key("big-list")];
        for i in chunk * 200..(chunk + 1) * 200 {
            hash.extend([format!("field-{i}"), format!("value-{i}")]);
            list.push(format!("item-{i}"));
        }
        let hash: Vec<&str> = hash.iter().map(String::as_str).collect();
        let list: Vec<&str> = list.iter().map(String::as_str).collect();
        both(s, t, &hash).await;
        both(s, t, &list).await;
    }

    // Strings too large to be read whole: equal, one byte apart, and only on the source.
    let big = "b".repeat(200 * 1024);
    let mut other = big.clone();
    other.replace_range(big.len() - 1.., "c");
    both(s, t, &["SET", &key("big-string"), &big]).await;
    run(s, &key("big-changed"), &["SET", &key("big-changed"), &big]).await;
    run(t, &key("big-changed"), &["SET", &key("big-changed"), &other]).await;
    run(
        s,
        &key("big-source-only"),
        &["SET", &key("big-source-only"), &big],
    )
    .await;

    // Different content.
    let k = key("truncated-hash");
    run(s, &k, &["HSET", &k, "f1", "a", "f2", "b", "f3", "c"]).await;
    run(t, &k, &["HSET", &k, "f1", "a", "f2", "b"]).await;
    let k = key("changed-hash");
    run(s, &k, &["HSET", &k, "f1", "a"]).await;
    run(t, &k, &["HSET", &k, "f1", "b"]).await;
    let k = key("type");
    run(s, &k, &["HSET", &k, "f1", "a"]).await;
    run(t, &k, &["SET", &k, "a"]).await;
    let k = key("reordered-list");
    run(s, &k, &["RPUSH", &k, "a", "b", "c"]).await;
    run(t, &k, &["RPUSH", &k, "a", "c", "b"]).await;
    let k = key("changed-set");
    run(s, &k, &["SADD", &k, "x", "y"]).await;
    run(t, &k, &["SADD", &k, "x", "z"]).await;
    let k = key("changed-score");
    run(s, &k, &["ZADD", &k, "1", "a"]).await;
    run(t, &k, &["ZADD", &k, "2", "a"]).await;
    let k = key("short-stream");
    both(s, t, &["XADD", &k, "1-1", "f", "v"]).await;
    run(s, &k, &["XADD", &k, "2-1", "f", "w"]).await;
    let k = key("lost-ttl");
    both(s, t, &["HSET", &k, "f", "v"]).await;
    run(s, &k, &["PEXPIRE", &k, "600000"]).await;
    let k = key("lost-ttl-string");
    both(s, t, &["SET", &k, "v"]).await;
    run(s, &k, &["PEXPIRE", &k, "600000"]).await;

    let options = AuditOptions::default()
        .pattern(format!("{p}:*"))
        .sample_limit(1_000);
    let history = SyncHistory::new(100);
    let report = audit_between(&source, &target, &options, &history, |_| {})
        .await
        .unwrap();
    eprintln!("{report}");
    assert!(report.complete, "{report}");
    let reported: BTreeSet<String> = report
        .samples
        .iter()
        .map(|r| {
            assert_ne!(r.state, KeyState::Consistent);
            String::from_utf8_lossy(&r.key)
                .trim_start_matches(&format!("{p}:"))
                .to_string()
        })
        .collect();
    let want: BTreeSet<String> = [
        "truncated-hash",
        "changed-hash",
        "type",
        "reordered-list",
        "changed-set",
        "changed-score",
        "short-stream",
        "lost-ttl",
        "lost-ttl-string",
        "big-changed",
        "big-source-only",
    ]
    .map(String::from)
    .into();
    assert_eq!(reported, want, "{report}");
    assert_eq!(report.counts.get(KeyState::Consistent), 9, "{report}");

    // A one-way sync never overwrites a key of another type with a string, nor copies one.
    let resolve = options.clone().mode(AuditMode::Resolve);
    let report = audit_between(&source, &target, &resolve, &history, |_| {})
        .await
        .unwrap();
    assert_eq!(report.repairs.failed, 0, "{report}");
    // Large strings are copied whole (read only when copied).
    let copied = target.get(key("big-source-only").as_bytes()).await.unwrap();
    assert_eq!(copied.as_deref(), Some(big.as_bytes()));
    let kept: String = target
        .node_command(
            &target
                .topology()
                .shard_for_key(key("type").as_bytes())
                .unwrap()
                .primary,
            vec!["TYPE".into(), key("type").into()],
        )
        .await
        .unwrap();
    assert_eq!(kept, "string");
    source.close().await;
    target.close().await;
}
