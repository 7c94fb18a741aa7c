//! Versioned batches run one script per group of keys a primary serves (`LWW_MANY_SCRIPT`). These
//! tests hold Redis to what that relies on, on the shared 3 + 3 cluster under the exclusive test lock
//! (they change slot states and read replication offsets, which other tests' writes would move):
//!
//! - the script cannot touch a key its node does not serve: a key of another node, a key of a
//!   migrating slot that already left, a key of a slot being imported. It leaves such a key alone and
//!   says so, and `set_many` then writes it through the single-key path, on the node that serves it;
//! - a group's journal marks are a lower bound of where its writes end in the replication stream,
//!   and not much lower: what failover repair needs to call a write lost only when it was.

mod common;

use std::time::Duration;

use bytes::Bytes;
use cluster_client::{ClusterClient, Script, Value};
use consistency::{ConsistencyConfig, LWW_MANY_SCRIPT, Versioned, WriteOptions, WriteOutcome};
use local_cluster::{LocalCluster, Node, test_lock};

/// `LWW_MANY_SCRIPT`'s arguments for `keys`, each with a fresh version's envelope.
fn many_args(store: &Versioned, keys: &[Vec<u8>], value: &[u8]) -> Vec<Vec<u8>> {
    let mut args = vec![b"newer".to_vec(), b"mark".to_vec()];
    for key in keys {
        args.push(key.clone());
        args.push(
            consistency::Envelope::Value {
                version: store.next_version(),
                payload: value,
            }
            .encode(),
        );
        args.push(b"0".to_vec());
    }
    args
}

/// Runs `LWW_MANY_SCRIPT` on `node` for `keys`; the per-key replies as `(code, detail)`.
async fn run_on(
    client: &ClusterClient,
    store: &Versioned,
    node: &str,
    keys: &[Vec<u8>],
) -> Vec<(i64, String)> {
    let script = Script::new(LWW_MANY_SCRIPT);
    let args = many_args(store, keys, b"v");
    let args: Vec<&[u8]> = args.iter().map(|a| &a[..]).collect();
    let reply = client
        .eval_on_node(node, &script, &[], &args)
        .await
        .expect("the script runs");
    let Value::Array(items) = reply else {
        panic!("not an array: {reply:?}");
    };
    let Some(Value::Array(replies)) = items.get(2) else {
        panic!("no replies: {items:?}");
    };
    replies
        .iter()
        .map(|r| match r {
            Value::Array(parts) => (
                parts[0].as_i64().expect("a code"),
                parts.get(1).and_then(Value::as_string).unwrap_or_default(),
            ),
            other => panic!("not a reply: {other:?}"),
        })
        .collect()
}

/// Whether `node` itself holds `key`, whatever the state of its slot there (`CLUSTER
/// GETKEYSINSLOT` answers on any node; `EXISTS` would be redirected).
async fn held_by(node: &Node, key: &[u8]) -> bool {
    let slot = sharding::key_slot(key).to_string();
    let keys: Vec<Vec<u8>> = node
        .command(["CLUSTER", "GETKEYSINSLOT", slot.as_str(), "100000"])
        .await
        .expect("CLUSTER GETKEYSINSLOT answers");
    keys.iter().any(|k| k == key)
}

async fn set_slot(node: &Node, slot: u16, state: &str, id: Option<&str>) {
    let slot = slot.to_string();
    let mut args = vec!["CLUSTER", "SETSLOT", slot.as_str(), state];
    args.extend(id);
    node.command::<(), _, _>(args).await.expect("CLUSTER SETSLOT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_script_leaves_keys_its_node_does_not_serve_and_set_many_writes_them_where_they_belong() {
    let _lock = test_lock::exclusive().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let client = common::client(cluster.seeds()).await;
    let store = Versioned::new(client.clone(), ConsistencyConfig::default()).unwrap();
    let primaries = cluster.primaries().await.unwrap();
    let (a, b) = (primaries[0], primaries[1]);
    let prefix = common::prefix("group-routing");

    // Keys of another node: refused to the script, left alone, reported.
    let mine = common::keys_on(&client, &format!("{prefix}:a"), &a.addr(), 3);
    let theirs = common::keys_on(&client, &format!("{prefix}:b"), &b.addr(), 3);
    let mixed: Vec<Vec<u8>> = mine.iter().chain(&theirs).cloned().collect();
    let replies = run_on(&client, &store, &a.addr(), &mixed).await;
    for (key, (code, detail)) in mine.iter().zip(&replies) {
        assert_eq!(*code, 1, "{}: {detail}", String::from_utf8_lossy(key));
        assert!(held_by(a, key).await);
    }
    for (key, (code, detail)) in theirs.iter().zip(&replies[3..]) {
        assert_eq!(*code, 3, "a key of another node must be left alone: {detail}");
        assert!(detail.contains("non local key"), "{detail}");
        assert!(
            !held_by(a, key).await && !held_by(b, key).await,
            "nothing was written"
        );
    }

    // A slot migrating from a to b: a key still on a is decided there; a key that already left
    // (absent on a) is refused (Redis would answer ASK); b refuses the slot until it owns it.
    let slot_keys: Vec<Vec<u8>> = {
        let first = common::keys_on(&client, &format!("{prefix}:m"), &a.addr(), 1).remove(0);
        let slot = sharding::key_slot(&first);
        let tag = String::from_utf8_lossy(&first).into_owned();
        (0..3)
            .map(|i| format!("{{{tag}}}:{i}").into_bytes())
            .inspect(|k| assert_eq!(sharding::key_slot(k), slot))
            .collect()
    };
    let slot = sharding::key_slot(&slot_keys[0]);
    let (present, absent, later) = (&slot_keys[0], &slot_keys[1], &slot_keys[2]);
    client.set(present, b"plain", Default::default()).await.unwrap();
    let (a_id, b_id) = (a.node_id().await.unwrap(), b.node_id().await.unwrap());
    set_slot(b, slot, "IMPORTING", Some(&a_id)).await;
    set_slot(a, slot, "MIGRATING", Some(&b_id)).await;
    let on_a = run_on(&client, &store, &a.addr(), &[present.clone(), absent.clone()]).await;
    let on_b = run_on(&client, &store, &b.addr(), std::slice::from_ref(later)).await;
    assert_eq!(
        on_a[0].0, 1,
        "a key still on the migrating node is written there: {:?}",
        on_a[0]
    );
    assert_eq!(
        on_a[1].0, 3,
        "a key absent from a migrating slot is left alone: {:?}",
        on_a[1]
    );
    assert_eq!(on_b[0].0, 3, "an importing node refuses the slot: {:?}", on_b[0]);
    assert!(held_by(a, present).await && !held_by(a, absent).await && !held_by(b, later).await);

    // Through `set_many`: the refused keys go again alone, follow ASK, and land on b, importing;
    // the key still on a is written on a. Every entry is written, none twice.
    let entries: Vec<(&[u8], &[u8], Option<Duration>)> = slot_keys
        .iter()
        .map(|k| (&k[..], &b"batched"[..], None))
        .chain(theirs.iter().map(|k| (&k[..], &b"batched"[..], None)))
        .collect();
    let outcomes = store.set_many(&entries, WriteOptions::default()).await;
    for ((key, _, _), outcome) in entries.iter().zip(&outcomes) {
        assert!(
            matches!(outcome, Ok(WriteOutcome::Written { .. })),
            "{}: {outcome:?}",
            String::from_utf8_lossy(key)
        );
    }
    assert!(held_by(a, present).await, "the key that had not left stays on a");
    assert!(
        held_by(b, absent).await && held_by(b, later).await,
        "new keys of the slot go to b"
    );
    assert!(!held_by(a, absent).await && !held_by(a, later).await);
    for key in &theirs {
        assert!(held_by(b, key).await);
    }

    // Finish the migration, as a resharding tool would: the key left on a moves to b, then b owns
    // the slot on both sides.
    let (host, port) = b
        .addr()
        .rsplit_once(':')
        .map(|(h, p)| (h.to_string(), p.to_string()))
        .unwrap();
    let args: [&[u8]; 6] = [
        b"MIGRATE",
        host.as_bytes(),
        port.as_bytes(),
        present,
        b"0",
        b"5000",
    ];
    a.command::<(), _, _>(args).await.expect("MIGRATE");
    set_slot(b, slot, "NODE", Some(&b_id)).await;
    set_slot(a, slot, "NODE", Some(&b_id)).await;
    assert!(held_by(b, present).await && !held_by(a, present).await);
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_groups_journal_marks_bound_where_its_writes_end_in_the_replication_stream() {
    let _lock = test_lock::exclusive().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let client = common::client(cluster.seeds()).await;
    let store = common::versioned(&client);
    let primary = cluster.primaries().await.unwrap()[2];
    let prefix = common::prefix("group-marks");
    // Fewer keys than one group, so that one execution writes them all; values of mixed sizes.
    let keys = common::keys_on(&client, &prefix, &primary.addr(), 40);
    let values: Vec<Vec<u8>> = (0..keys.len()).map(|i| vec![b'x'; 10 + 37 * i]).collect();
    let entries: Vec<(&[u8], &[u8], Option<Duration>)> = keys
        .iter()
        .zip(&values)
        .enumerate()
        .map(|(i, (k, v))| (&k[..], &v[..], (i % 2 == 0).then_some(Duration::from_secs(600))))
        .collect();
    let before = primary
        .info("replication")
        .await
        .unwrap()
        .master_repl_offset
        .unwrap();
    let outcomes = store.set_many(&entries, WriteOptions::default()).await;
    let after = primary
        .info("replication")
        .await
        .unwrap()
        .master_repl_offset
        .unwrap();
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, Ok(WriteOutcome::Written { .. }))),
        "{outcomes:?}"
    );

    let journal = store.journal().unwrap().latest();
    let marks: Vec<_> = keys
        .iter()
        .map(|k| {
            journal
                .iter()
                .find(|e| e.key == Bytes::copy_from_slice(k))
                .and_then(|e| e.mark)
                .expect("every write is journaled with a mark")
        })
        .collect();
    let first = marks[0];
    assert!(
        marks.iter().all(|m| *m == first),
        "one execution, one mark: {marks:?}"
    );
    assert!(
        first.offset >= before,
        "the mark is read after the stream stood at {before}"
    );
    // Sound: a replica that applied the block is at or past `offset + min_len`.
    assert!(
        first.offset + first.min_len <= after,
        "min_len {} reaches past the stream's end ({} bytes written)",
        first.min_len,
        after - first.offset
    );
    // Useful: the block is the SETs plus MULTI/EXEC, a SELECT, the TTL arguments (PX and the
    // milliseconds, or KEEPTTL) and a PING the primary may send its replicas meanwhile.
    let slack = after - first.offset - first.min_len;
    let allowed = 15 + 14 + 23 + 14 + 32 * keys.len() as u64;
    assert!(
        slack <= allowed,
        "min_len {} is {slack} bytes short of the block (allowed {allowed})",
        first.min_len
    );
    eprintln!(
        "{} writes in one execution: stream +{} bytes, min_len {} ({slack} short)",
        keys.len(),
        after - before,
        first.min_len
    );
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_single_writes_share_executions_and_a_cancelled_caller_stops_no_one_else() {
    let _lock = test_lock::exclusive().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let client = common::client(cluster.seeds()).await;
    let store = common::versioned(&client);
    let prefix = common::prefix("coalesced");
    let keys: Vec<Vec<u8>> = (0..400).map(|i| format!("{prefix}:{i}").into_bytes()).collect();
    let calls = |client: &ClusterClient| -> u64 {
        client
            .node_stats()
            .iter()
            .flat_map(|n| n.connection_calls.iter())
            .sum()
    };

    // 400 writes at once: every one is written with its own version, in fewer executions than
    // writes; every other caller gives up at once (its future is dropped after one poll).
    let before = calls(&client);
    let writes = keys.iter().enumerate().map(|(i, key)| {
        let store = &store;
        async move {
            let value = format!("value {i}");
            let write = store.set(key, value.as_bytes(), None, WriteOptions::default());
            if i % 2 == 1 {
                (i, tokio::time::timeout(Duration::ZERO, write).await.ok())
            } else {
                (i, Some(write.await))
            }
        }
    });
    let outcomes = futures::future::join_all(writes).await;
    let sent = calls(&client) - before;
    for (i, outcome) in &outcomes {
        let stored = client.get(&keys[*i]).await.unwrap();
        match outcome {
            Some(result) => {
                assert!(
                    matches!(result, Ok(WriteOutcome::Written { .. })),
                    "write {i}: {result:?}"
                );
                let value = store.get(&keys[*i]).await.unwrap().expect("written");
                assert_eq!(value.value(), format!("value {i}").as_bytes());
            }
            // A cancelled caller's write may or may not have been made; never anything else.
            None => {
                if stored.is_some() {
                    let value = store.get(&keys[*i]).await.unwrap().expect("versioned");
                    assert_eq!(value.value(), format!("value {i}").as_bytes());
                }
            }
        }
    }
    assert!(
        sent < keys.len() as u64 / 2,
        "{sent} calls for {} concurrent writes: they were not grouped",
        keys.len()
    );

    // Nothing is left waiting: later writes, alone and concurrent, go through at once.
    let later = tokio::time::timeout(Duration::from_secs(5), async {
        let alone = store.set(&keys[1], b"later", None, WriteOptions::default()).await;
        let together = futures::future::join_all(
            keys[..20]
                .iter()
                .map(|k| store.set(k, b"together", None, WriteOptions::default())),
        )
        .await;
        (alone, together)
    })
    .await
    .expect("writes after cancelled ones do not hang");
    assert!(matches!(later.0, Ok(WriteOutcome::Written { .. })));
    assert!(
        later
            .1
            .iter()
            .all(|r| matches!(r, Ok(WriteOutcome::Written { .. })))
    );
    eprintln!("{} concurrent writes in {sent} calls", keys.len());
    client.close().await;
}
