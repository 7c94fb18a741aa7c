//! `key_slot` against a real Redis: every vector is generated here and answered by `CLUSTER KEYSLOT` on a
//! cluster-enabled `redis-server` started by local-cluster (one primary, no replicas).

use fred::prelude::{Builder, ClientLike, ClusterInterface, Config};
use local_cluster::{LocalCluster, LocalClusterConfig};
use sharding::key_slot;

/// Keys that exercise every rule of Redis's hash-tag parsing, binary bytes and lengths.
fn vectors() -> Vec<Vec<u8>> {
    let mut keys: Vec<Vec<u8>> = [
        &b""[..],
        b"{",
        b"}",
        b"{}",
        b"}{",
        b"{{",
        b"}}",
        b"{}}",
        b"{{}",
        b"{{}}",
        b"{a",
        b"a}",
        b"{a}",
        b"a{b}",
        b"a{b}c",
        b"foo{}{bar}",
        b"foo{{bar}}zap",
        b"foo{bar}{zap}",
        b"{a}{b}",
        b"{b}{a}",
        b"}{a}",
        b"{}{a}",
        b"x{}",
        b"x{}y",
        b"{user1000}.following",
        b"{user1000}.followers",
        b"8xjx7vWrfPq54mKfFD3Y1CcjjofpnAcQ",
        b"\x00",
        b"\x00{\x00}\x00",
        b"\xff{\xfe\xfd}",
        b"{\r\n}",
        b"key with spaces",
    ]
    .iter()
    .map(|k| k.to_vec())
    .collect();
    // Multi-byte UTF-8 inside and around tags.
    for text in ["{ключ}значение", "日本{語}", "{😀}", "{é}{è}", "ü{}ö", "{ü", "ä}"] {
        keys.push(text.as_bytes().to_vec());
    }
    // Every single byte, and every byte inside a tag.
    for byte in 0..=255u8 {
        keys.push(vec![byte]);
        keys.push(vec![b'{', byte, b'}', b'x']);
    }
    // Long keys: 64 KiB with and without a tag at either end, and lengths around the CRC's 16-byte steps.
    let long: Vec<u8> = (0..65_536u32)
        .map(|i| b"abcdefghijklmnopqrstuvwxyz0123456789"[(i % 36) as usize])
        .collect();
    keys.push(long.clone());
    keys.push([b"{tag}".as_slice(), long.as_slice()].concat());
    keys.push([long.as_slice(), b"{tag}".as_slice()].concat());
    keys.push([b"{".as_slice(), long.as_slice(), b"}".as_slice()].concat());
    for len in 0..=70 {
        keys.push(long[..len].to_vec());
    }
    // Pseudo-random keys over an alphabet rich in braces, so tags of every shape come up.
    let alphabet: &[u8] = b"{}{}ab\x00\xff\xc3\xa9-";
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    for _ in 0..3_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let len = (state % 24) as usize;
        let key = (0..len)
            .map(|i| alphabet[((state >> (i * 2 % 56)) as usize + i) % alphabet.len()])
            .collect();
        keys.push(key);
    }
    keys
}

#[tokio::test]
async fn key_slot_equals_cluster_keyslot_of_a_real_redis() {
    let _lock = local_cluster::test_lock::shared()
        .await
        .expect("taking the shared test lock");
    let cluster = LocalCluster::start(LocalClusterConfig {
        masters: 1,
        replicas_per_master: 0,
        ..Default::default()
    })
    .await
    .expect("starting a 1-primary cluster with local-cluster (is redis-server installed?)");
    let addr = cluster.nodes()[0].addr();
    let config = Config::from_url_centralized(&format!("redis://{addr}")).expect("a valid redis URL");
    let client = Builder::from_config(config)
        .build()
        .expect("building a fred client");
    client.init().await.expect("connecting to the cluster node");

    let keys = vectors();
    let mut mismatches = Vec::new();
    for key in &keys {
        let redis: u16 = client
            .cluster_keyslot(key.as_slice())
            .await
            .expect("CLUSTER KEYSLOT");
        if redis != key_slot(key) {
            mismatches.push(format!(
                "{:?}: redis {redis}, ours {}",
                String::from_utf8_lossy(&key[..key.len().min(40)]),
                key_slot(key)
            ));
        }
    }
    client.quit().await.ok();
    assert!(keys.len() > 3_500, "the vector set shrank to {}", keys.len());
    assert!(
        mismatches.is_empty(),
        "{} of {} keys differ from Redis:\n{}",
        mismatches.len(),
        keys.len(),
        mismatches.join("\n")
    );
}
