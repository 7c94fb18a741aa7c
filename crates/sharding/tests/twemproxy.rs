//! `KetamaRing` against a real twemproxy (`nutcracker`, `distribution: ketama`, `hash: md5`) in front of
//! standalone `redis-server` nodes started by local-cluster: keys are written through the proxy, then
//! each node is asked which keys it holds, and every key must sit where `KetamaRing::node_for` says.
//!
//! Servers are listed without names (`127.0.0.1:PORT:WEIGHT`), so twemproxy hashes `127.0.0.1:PORT-i`
//! as libmemcached does; a named server would hash its name instead.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use local_cluster::LocalStandalone;
use sharding::KetamaRing;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Where Debian's `nutcracker` package installs the binary.
const NUTCRACKER: &str = "/usr/sbin/nutcracker";

/// A running nutcracker, killed by PID when dropped (also when the test panics).
struct Nutcracker {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Nutcracker {
    fn drop(&mut self) {
        // `Child::kill` sends SIGKILL to this child's PID only.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nutcracker_binary() -> PathBuf {
    let installed = Path::new(NUTCRACKER);
    if installed.exists() {
        return installed.to_path_buf();
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("nutcracker"))
        .find(|candidate| candidate.exists());
    on_path.unwrap_or_else(|| {
        panic!("nutcracker (twemproxy) is not installed; run `apt-get install -y nutcracker` and re-run this test")
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("binding a free loopback port")
}

impl Nutcracker {
    /// Starts nutcracker over `servers` (`host:port`, weight) and waits until it accepts connections.
    async fn start(servers: &[(String, u32)]) -> Nutcracker {
        let binary = nutcracker_binary();
        let dir = tempfile::Builder::new()
            .prefix("nutcracker-")
            .tempdir()
            .expect("creating a temp dir");
        let port = free_port();
        let stats_port = free_port();
        let mut config = format!(
            "ketama:\n  listen: 127.0.0.1:{port}\n  hash: md5\n  distribution: ketama\n  redis: true\n  \
             auto_eject_hosts: false\n  preconnect: true\n  timeout: 5000\n  servers:\n"
        );
        for (addr, weight) in servers {
            config.push_str(&format!("   - {addr}:{weight}\n"));
        }
        let config_path = dir.path().join("nutcracker.yml");
        std::fs::write(&config_path, config).expect("writing nutcracker.yml");
        let log = dir.path().join("nutcracker.log");
        let child = Command::new(&binary)
            .arg("--conf-file")
            .arg(&config_path)
            .arg("--output")
            .arg(&log)
            .arg("--stats-port")
            .arg(stats_port.to_string())
            .arg("--stats-addr")
            .arg("127.0.0.1")
            .arg("--pid-file")
            .arg(dir.path().join("nutcracker.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        let mut proxy = Nutcracker {
            child,
            port,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = proxy.child.try_wait() {
                panic!(
                    "nutcracker exited with {status} before listening; its log:\n{}",
                    proxy.log_text()
                );
            }
            if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return proxy;
            }
            assert!(
                Instant::now() < deadline,
                "nutcracker did not listen on 127.0.0.1:{port} within 10 s; its log:\n{}",
                proxy.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_else(|e| format!("(no log: {e})"))
    }

    /// Sends `SET key 1` for every key through the proxy as one pipeline and checks every reply is `+OK`.
    async fn set_all(&self, keys: &[Vec<u8>]) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))
            .await
            .expect("connecting to nutcracker");
        let mut request = Vec::new();
        for key in keys {
            request.extend_from_slice(format!("*3\r\n$3\r\nSET\r\n${}\r\n", key.len()).as_bytes());
            request.extend_from_slice(key);
            request.extend_from_slice(b"\r\n$1\r\n1\r\n");
        }
        let (mut reader, mut writer) = stream.split();
        let expected = b"+OK\r\n".repeat(keys.len());
        let mut replies = vec![0u8; expected.len()];
        let (written, read) = tokio::join!(writer.write_all(&request), async {
            tokio::time::timeout(Duration::from_secs(30), reader.read_exact(&mut replies)).await
        });
        written.expect("writing SETs to nutcracker");
        let read = read.unwrap_or_else(|_| {
            panic!(
                "no complete reply from nutcracker in 30 s; log:\n{}",
                self.log_text()
            )
        });
        read.unwrap_or_else(|e| panic!("reading replies from nutcracker: {e}; log:\n{}", self.log_text()));
        assert!(
            replies == expected,
            "nutcracker answered something other than +OK: {}",
            String::from_utf8_lossy(&replies)
        );
    }
}

/// Distinct keys of varied shapes: short, long, binary, with braces (twemproxy hashes the whole key
/// when no `hash_tag` is configured), and multi-byte UTF-8.
fn keys(case: &str, count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| match i % 5 {
            0 => format!("{case}:user:{i}").into_bytes(),
            1 => format!("{case}:{{tag}}:{i}").into_bytes(),
            2 => format!("{case}:ключ:{i}:{}", "x".repeat(i % 200)).into_bytes(),
            3 => [
                format!("{case}:bin:{i}:").into_bytes(),
                vec![0, 255, 13, 10, (i % 256) as u8],
            ]
            .concat(),
            _ => format!("{case}{i}").into_bytes(),
        })
        .collect()
}

/// Writes keys through nutcracker over fresh standalone nodes with `weights` and compares placement.
async fn check_against_twemproxy(case: &str, weights: &[u32], key_count: usize) {
    let standalone = LocalStandalone::start(weights.len())
        .await
        .expect("starting standalone redis-server nodes with local-cluster (is redis-server installed?)");
    let servers: Vec<(String, u32)> = standalone
        .addrs()
        .into_iter()
        .zip(weights.iter().copied())
        .collect();
    let ring = KetamaRing::new(servers.clone()).expect("a valid ring");
    let proxy = Nutcracker::start(&servers).await;
    let keys = keys(case, key_count);
    proxy.set_all(&keys).await;

    let mut holder: HashMap<Vec<u8>, String> = HashMap::new();
    for node in standalone.nodes() {
        let held: Vec<local_cluster::Reply> = node
            .command(["KEYS", "*"])
            .await
            .expect("KEYS * on a standalone node");
        for key in held {
            let key = key.as_bytes().expect("KEYS returns byte strings").to_vec();
            if let Some(other) = holder.insert(key.clone(), node.addr()) {
                panic!(
                    "{:?} is on both {other} and {}",
                    String::from_utf8_lossy(&key),
                    node.addr()
                );
            }
        }
    }
    assert_eq!(
        holder.len(),
        keys.len(),
        "{case}: nodes hold {} keys, {} were written",
        holder.len(),
        keys.len()
    );

    let mut per_node: HashMap<&str, usize> = HashMap::new();
    let mut wrong = Vec::new();
    for key in &keys {
        let ours = ring.node_for(key);
        *per_node.entry(ours).or_default() += 1;
        match holder.get(key) {
            Some(actual) if actual == ours => {}
            actual => wrong.push(format!(
                "{:?}: twemproxy {actual:?}, ours {ours}",
                String::from_utf8_lossy(key)
            )),
        }
    }
    assert!(
        wrong.is_empty(),
        "{case}: {} of {} keys placed differently from twemproxy:\n{}",
        wrong.len(),
        keys.len(),
        wrong.iter().take(20).cloned().collect::<Vec<_>>().join("\n")
    );
    // The comparison only means something if every node received keys.
    assert_eq!(
        per_node.len(),
        weights.len(),
        "{case}: some node got no keys: {per_node:?}"
    );
}

#[tokio::test]
async fn three_equal_nodes_place_keys_as_twemproxy_does() {
    let _lock = local_cluster::test_lock::shared()
        .await
        .expect("taking the shared test lock");
    check_against_twemproxy("equal3", &[1, 1, 1], 3_000).await;
}

#[tokio::test]
async fn six_weighted_nodes_place_keys_as_twemproxy_does() {
    let _lock = local_cluster::test_lock::shared()
        .await
        .expect("taking the shared test lock");
    // Unequal weights whose point counts go through libmemcached's f32 rounding: 7/19 × 40 × 6 etc.
    check_against_twemproxy("weighted6", &[1, 2, 3, 1, 5, 7], 4_000).await;
}

#[tokio::test]
async fn twenty_five_equal_nodes_get_156_points_as_in_twemproxy() {
    let _lock = local_cluster::test_lock::shared()
        .await
        .expect("taking the shared test lock");
    // 25 equal nodes is the smallest count where libmemcached's f32 rounding gives 156 points instead
    // of 160, so this case checks that arithmetic, not only the md5 layout.
    check_against_twemproxy("equal25", &[1; 25], 5_000).await;
    let ring =
        KetamaRing::new((0..25).map(|i| (format!("127.0.0.1:{}", 20_000 + i), 1))).expect("a valid ring");
    assert_eq!(ring.point_count_of(0), 156);
}
