//! Hostile stored bytes, written raw to a real cluster: a read must answer with a typed error, quickly,
//! without trusting sizes the bytes declare. The bytes are LZ4 frames: only with the `lz4` feature.
#![cfg(feature = "lz4")]

use std::time::{Duration, Instant};

use cache_facade::{Cache, CacheConfig, ClusterConfig, Error};
use local_cluster::{LocalCluster, test_lock};

/// The peak virtual memory of this process (`VmPeak` in /proc/self/status), in bytes. A buffer of the
/// size a hostile prefix declares shows here even when the kernel never backs its zeroed pages, which
/// is why it is measured rather than the resident size.
fn peak_virtual_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("reading /proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmPeak:"))
        .expect("VmPeak in /proc/self/status");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmPeak in kB");
    kib * 1024
}

/// Growth of the peak virtual memory that a read may cause: thread stacks and allocator arenas of a
/// few new threads, far below the 4 GiB a trusted prefix would ask for.
const PEAK_GROWTH_MAX: u64 = 1024 * 1024 * 1024;

/// A compressed JSON frame (kind `V`, codec 1 with the compression bit) whose LZ4 size prefix
/// declares `declared` bytes, followed by a few bytes of junk.
fn compressed_frame(declared: u32) -> Vec<u8> {
    let mut frame = vec![b'V', 1 | 0x80];
    frame.extend_from_slice(&declared.to_le_bytes());
    frame.extend_from_slice(&[0x10, b'x', 0, 0, 0]);
    frame
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_lz4_size_prefix_is_a_decode_error_without_a_big_allocation() {
    let _lock = test_lock::shared().await.unwrap();
    let cluster = LocalCluster::shared().await.unwrap();
    let settings = CacheConfig::builder().namespace("hostile");
    #[cfg(feature = "health")]
    let settings = settings.health(false);
    let settings = settings.build().unwrap();
    let cache = Cache::with_config(
        ClusterConfig::builder().nodes(cluster.seeds()).build().unwrap(),
        settings,
    )
    .await
    .unwrap();
    let cases = [
        ("four-gib", compressed_frame(u32::MAX)),
        // Under the value limit, but far beyond what 5 compressed bytes can expand to.
        ("implausible-ratio", compressed_frame(8 * 1024 * 1024)),
    ];
    for (name, frame) in cases {
        let key = cache.full_key(name);
        // Written by a plain client, as an attacker or a buggy writer would.
        cache
            .client()
            .set(&key, &frame, cluster_client::SetOptions::default())
            .await
            .unwrap();
        let peak_before = peak_virtual_bytes();
        let started = Instant::now();
        let read = cache.get::<String>(name).await;
        let growth = peak_virtual_bytes() - peak_before;
        assert!(
            growth < PEAK_GROWTH_MAX,
            "{name}: the read grew the peak virtual memory by {growth} bytes"
        );
        match read {
            Err(Error::Decode { detail, .. }) => {
                assert!(detail.contains("declares"), "{name}: {detail}")
            }
            other => panic!("{name}: expected a decode error, got {other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{name}: {:?}",
            started.elapsed()
        );
        // get_or_load reads through the same decoder.
        let peak_before = peak_virtual_bytes();
        let loaded = cache
            .get_or_load(name, None, || async { Ok::<_, std::io::Error>("x".to_string()) })
            .await;
        assert!(matches!(loaded, Err(Error::Decode { .. })), "{name}: {loaded:?}");
        assert!(peak_virtual_bytes() - peak_before < PEAK_GROWTH_MAX, "{name}");
        // The key was left as it is.
        assert_eq!(
            cache.client().get(&key).await.unwrap().as_deref(),
            Some(&frame[..])
        );
        cache.client().del(&key).await.unwrap();
    }
}
