//! A test process that panics while it holds a cluster leaves no `redis-server` behind.
//!
//! This binary plays both parts (`harness = false`): run plainly, it is the parent and runs itself
//! again as a child with `LOCAL_CLUSTER_PANIC_CHILD` set; the child starts a cluster and standalone
//! nodes, prints their PIDs, and panics. The parent then checks the child failed and every PID is gone.

use std::process::Command;
use std::time::{Duration, Instant};

use local_cluster::{LocalCluster, LocalClusterConfig, LocalStandalone};

const CHILD_VAR: &str = "LOCAL_CLUSTER_PANIC_CHILD";

fn main() {
    if std::env::var_os(CHILD_VAR).is_some() {
        child();
    } else {
        parent();
    }
}

#[tokio::main(flavor = "current_thread")]
async fn child() {
    let _lock = local_cluster::test_lock::exclusive().await.unwrap();
    let cluster = LocalCluster::start(LocalClusterConfig {
        masters: 3,
        replicas_per_master: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    let standalone = LocalStandalone::start(2).await.unwrap();
    for node in cluster.nodes().iter().chain(standalone.nodes()) {
        println!("pid {}", node.pid().unwrap());
    }
    panic!(
        "deliberate panic with {} nodes running",
        cluster.nodes().len() + standalone.nodes().len()
    );
}

fn parent() {
    let exe = std::env::current_exe().expect("path of this test binary");
    let output = Command::new(exe)
        .env(CHILD_VAR, "1")
        .output()
        .expect("running the child test process");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "the child was meant to panic; stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stderr.contains("deliberate panic"),
        "the child failed for another reason:\n{stderr}"
    );
    let pids: Vec<u32> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("pid "))
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(
        pids.len(),
        8,
        "the child reports 6 cluster + 2 standalone PIDs:\n{stdout}"
    );
    // The child reaped its processes before exiting, so they are gone by now; allow a moment anyway.
    let deadline = Instant::now() + Duration::from_secs(2);
    let alive = |pid: &u32| {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains("redis"))
    };
    while pids.iter().any(alive) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let leaked: Vec<&u32> = pids.iter().filter(|p| alive(p)).collect();
    assert!(
        leaked.is_empty(),
        "redis-server processes outlived the panicking test: {leaked:?}"
    );
    println!("panic_cleanup: 1 passed, 0 failed");
}
