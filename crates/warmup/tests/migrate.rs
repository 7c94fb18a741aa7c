//! The spec's migration path: a standalone Redis copied to the cluster, then audited.

mod common;

use std::time::Duration;

use cluster_client::{Bytes, ClusterClient, Ttl, Value};
use consistency::{AuditOptions, SyncHistory, audit_between};
use local_cluster::{LocalCluster, LocalStandalone, test_lock};
use warmup::{RedisSource, Source, Warmup, WarmupConfig};

/// Reads a key's contents in a type-independent, comparable form.
async fn contents(client: &ClusterClient, node: &str, key: &[u8]) -> (String, Vec<String>) {
    let arg = || Value::Bytes(Bytes::copy_from_slice(key));
    let kind: String = client
        .node_command(node, vec!["TYPE".into(), arg()])
        .await
        .unwrap();
    let mut items: Vec<String> = match kind.as_str() {
        "string" => vec![
            client
                .node_command(node, vec!["GET".into(), arg()])
                .await
                .unwrap(),
        ],
        "hash" => client
            .node_command(node, vec!["HGETALL".into(), arg()])
            .await
            .unwrap(),
        "list" => client
            .node_command(node, vec!["LRANGE".into(), arg(), "0".into(), "-1".into()])
            .await
            .unwrap(),
        "set" => client
            .node_command(node, vec!["SMEMBERS".into(), arg()])
            .await
            .unwrap(),
        "zset" => client
            .node_command(
                node,
                vec![
                    "ZRANGE".into(),
                    arg(),
                    "0".into(),
                    "-1".into(),
                    "WITHSCORES".into(),
                ],
            )
            .await
            .unwrap(),
        other => panic!("unexpected type {other}"),
    };
    // Hash fields and set members come back in no fixed order.
    if matches!(kind.as_str(), "set") {
        items.sort();
    }
    if kind == "hash" {
        let mut pairs: Vec<(String, String)> =
            items.chunks(2).map(|p| (p[0].clone(), p[1].clone())).collect();
        pairs.sort();
        items = pairs.into_iter().flat_map(|(f, v)| [f, v]).collect();
    }
    (kind, items)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_redis_is_copied_to_the_cluster_with_every_type_and_ttl() {
    let _lock = test_lock::shared().await.unwrap();
    let standalone = LocalStandalone::start(1).await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let source_config = cluster_config::ClusterConfig::builder()
        .nodes(standalone.addrs())
        .build()
        .unwrap();
    let source = ClusterClient::connect(source_config).await.unwrap();
    let target = common::client(&cluster).await;
    let node = standalone.addrs()[0].clone();
    let prefix = common::unique("mig");

    // 200 keys of each type; every other key of each type expires.
    let per_type = 200;
    let mut keys = Vec::new();
    let mut writes = Vec::new();
    for i in 0..per_type {
        let k = |t: &str| format!("{prefix}:{t}:{i}");
        let commands: Vec<Vec<String>> = vec![
            vec!["SET".into(), k("string"), format!("value {i}")],
            vec![
                "HSET".into(),
                k("hash"),
                "name".into(),
                format!("n{i}"),
                "count".into(),
                i.to_string(),
            ],
            vec!["RPUSH".into(), k("list"), "a".into(), format!("b{i}"), "c".into()],
            vec!["SADD".into(), k("set"), "x".into(), format!("y{i}"), "z".into()],
            vec![
                "ZADD".into(),
                k("zset"),
                "1".into(),
                "one".into(),
                format!("{i}"),
                format!("m{i}"),
            ],
        ];
        for command in commands {
            keys.push(command[1].clone());
            if i % 2 == 0 {
                writes.push(vec![
                    "PEXPIRE".to_string(),
                    command[1].clone(),
                    (300_000 + i * 100).to_string(),
                ]);
            }
            writes.insert(writes.len() - usize::from(i % 2 == 0), command);
        }
    }
    for chunk in writes.chunks(200) {
        futures::future::join_all(chunk.iter().map(|command| {
            let args: Vec<Value> = command.iter().map(|a| Value::from(a.as_str())).collect();
            source.node_command::<Value>(&node, args)
        }))
        .await
        .into_iter()
        .for_each(|r| {
            r.unwrap();
        });
    }
    // A key outside the pattern stays behind.
    source
        .node_command::<Value>(&node, vec!["SET".into(), "other:key".into(), "x".into()])
        .await
        .unwrap();

    let warmup = Warmup::new(target.clone(), WarmupConfig::default()).unwrap();
    let options = RedisSource::default()
        .pattern(format!("{prefix}:*"))
        .scan_count(100);
    let report = warmup.run(Source::redis(source.clone(), options)).await.unwrap();
    assert_eq!(report.written, keys.len() as u64, "{report}");
    assert!(report.is_clean(), "{report}");
    assert_eq!(target.get(b"other:key").await.unwrap(), None);

    // The cross-deployment audit of `consistency` finds no difference.
    let history = SyncHistory::new(100);
    let audit = audit_between(
        &source,
        &target,
        &AuditOptions::default().pattern(format!("{prefix}:*")),
        &history,
        |_| {},
    )
    .await
    .unwrap();
    assert!(audit.is_clean(), "{audit}");
    assert!(audit.counts.consistent >= keys.len() as u64, "{audit}");

    // The audit compares string bytes only: compare every type's contents and TTL here.
    let topology = target.topology();
    for key in &keys {
        let on_target = &topology.shard_for_key(key.as_bytes()).unwrap().primary;
        let want = contents(&source, &node, key.as_bytes()).await;
        let got = contents(&target, on_target, key.as_bytes()).await;
        assert_eq!(got, want, "{key}");
        let (source_ttl, target_ttl) = (
            source.pttl(key.as_bytes()).await.unwrap(),
            target.pttl(key.as_bytes()).await.unwrap(),
        );
        match (source_ttl, target_ttl) {
            (Ttl::Persistent, Ttl::Persistent) => {}
            (Ttl::Expires(a), Ttl::Expires(b)) => {
                let gap = a.abs_diff(b);
                assert!(gap < Duration::from_secs(1), "{key}: source {a:?}, target {b:?}");
            }
            other => panic!("{key}: TTLs differ: {other:?}"),
        }
    }
    source.close().await;
    target.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_value_over_the_limit_is_refused_by_its_size_without_being_read() {
    let _lock = test_lock::shared().await.unwrap();
    let standalone = LocalStandalone::start(1).await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let source_config = cluster_config::ClusterConfig::builder()
        .nodes(standalone.addrs())
        .value_max_bytes(4096)
        .build()
        .unwrap();
    let source = ClusterClient::connect(source_config).await.unwrap();
    let target = common::client(&cluster).await;
    let prefix = common::unique("mig-limit");
    let node = standalone.addrs()[0].clone();
    // Incompressible, so that its `DUMP` payload is about as large as the value.
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let big: Vec<u8> = (0..100_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b'!' + (x % 90) as u8
        })
        .collect();
    let (big_key, small_key) = (format!("{prefix}:big"), format!("{prefix}:small"));
    source
        .node_command::<Value>(
            &node,
            vec![
                "SET".into(),
                big_key.as_str().into(),
                Value::Bytes(Bytes::from(big)),
            ],
        )
        .await
        .unwrap();
    source
        .node_command::<Value>(
            &node,
            vec!["SET".into(), small_key.as_str().into(), "small".into()],
        )
        .await
        .unwrap();

    let options = RedisSource::default().pattern(format!("{prefix}:*"));
    let report = Warmup::new(target.clone(), WarmupConfig::default())
        .unwrap()
        .run(Source::redis(source.clone(), options))
        .await
        .unwrap();

    assert_eq!((report.written, report.rejected), (1, 1), "{report}");
    let rejected = &report.rejections[0];
    assert_eq!(rejected.key.as_deref(), Some(big_key.as_bytes()));
    assert!(
        rejected.reason.contains("over the limit of 4096 bytes") && rejected.reason.contains("not read"),
        "{rejected}"
    );
    assert_eq!(target.get(big_key.as_bytes()).await.unwrap(), None);
    assert_eq!(
        target.get(small_key.as_bytes()).await.unwrap().as_deref(),
        Some(&b"small"[..])
    );
    source.close().await;
    target.close().await;
}
