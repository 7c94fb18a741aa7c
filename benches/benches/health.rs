//! `health`'s pure core against baselines measured in the same run.
//!
//! - `rules/*`: every anomaly rule (`health::evaluate`) over a healthy and a degraded snapshot of a
//!   3 + 3 cluster and of a 30 + 30 cluster, against cloning the same snapshot (one pass that touches
//!   every node and topology entry, allocations included).
//! - `observe/*`: a whole judgement (`Monitor::observe`: failover detection, rules, alert manager,
//!   latency baseline, summary, trend ring) of the 3 + 3 snapshot, against the same clone.
//! - `parse/*`: `parse_info` on a real 7.0 `INFO` reply and `parse_cluster_nodes` on a 6-node reply,
//!   against splitting the same text into lines.

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use health::{
    ClientNodeStats, ClusterInfo, DbKeys, LatencyBaseline, Monitor, NodeSnapshot, PrimaryLink, ReplicaLink,
    Role, RuleInput, ServerInfo, Snapshot, Thresholds, TopologyNode, TrendRing, evaluate,
    parse_cluster_nodes, parse_info,
};

/// Every slot of the cluster.
const SLOTS: u32 = sharding::SLOT_COUNT as u32;

/// A cluster of `primaries` primaries with one replica each, every field filled as a real round would.
fn cluster(primaries: u16, at_secs: u64) -> Snapshot {
    let mut snapshot = Snapshot {
        taken_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + at_secs),
        round_duration: Duration::from_millis(5),
        cluster_mode: true,
        topology_from: Some("127.0.0.1:7000".into()),
        ..Snapshot::default()
    };
    let per_primary = SLOTS / u32::from(primaries);
    for i in 0..primaries * 2 {
        let primary = i < primaries;
        let port = 7000 + i;
        let addr = format!("127.0.0.1:{port}");
        let first = u32::from(i) * per_primary;
        let last = if i + 1 == primaries {
            SLOTS - 1
        } else {
            first + per_primary - 1
        };
        snapshot.topology.push(TopologyNode {
            id: format!("{port:040}"),
            addr: addr.clone(),
            role: if primary { Role::Primary } else { Role::Replica },
            primary_id: (!primary).then(|| format!("{:040}", port - primaries)),
            link_connected: true,
            slots: if primary {
                vec![sharding::SlotRange::new(first as u16, last as u16).expect("a slot range")]
            } else {
                vec![]
            },
            ..TopologyNode::default()
        });
        snapshot.nodes.push(NodeSnapshot {
            addr: addr.clone(),
            id: Some(format!("{port:040}")),
            reachable: true,
            ping: Some(Duration::from_micros(180)),
            info: Some(ServerInfo {
                role: if primary { Role::Primary } else { Role::Replica },
                redis_version: "7.0.15".into(),
                cluster_enabled: true,
                used_memory_bytes: 50_000_000,
                maxmemory_bytes: 100_000_000,
                ops_per_sec: 20_000,
                connected_clients: 40,
                keyspace: vec![DbKeys {
                    db: 0,
                    keys: 1_000_000,
                    expires: 900_000,
                }],
                master_repl_offset: 9_000_000,
                replicas: if primary {
                    vec![ReplicaLink {
                        addr: format!("127.0.0.1:{}", port + primaries),
                        state: "online".into(),
                        offset: 8_999_000,
                        lag_seconds: 0,
                    }]
                } else {
                    vec![]
                },
                primary_link: (!primary).then(|| PrimaryLink {
                    addr: format!("127.0.0.1:{}", port - primaries),
                    link_up: true,
                    offset: 8_999_000,
                }),
                ..ServerInfo::default()
            }),
            cluster_info: Some(ClusterInfo {
                state_ok: true,
                slots_assigned: SLOTS,
                slots_ok: SLOTS,
                known_nodes: u32::from(primaries) * 2,
                size: u32::from(primaries),
                ..ClusterInfo::default()
            }),
            client: Some(ClientNodeStats {
                latency_p50: Some(Duration::from_micros(150)),
                latency_p99: Some(Duration::from_micros(600)),
                commands: 1_000_000,
                errors: 3,
                redirects: 10,
            }),
            error: None,
            info_denied: false,
        });
    }
    snapshot
}

/// The same cluster with its first primary down and flagged, and one node near maxmemory: most rules
/// find something.
fn degraded(primaries: u16) -> Snapshot {
    let mut snapshot = cluster(primaries, 30);
    let down = &mut snapshot.nodes[0];
    down.reachable = false;
    down.info = None;
    down.cluster_info = None;
    down.error = Some("connection refused".into());
    snapshot.topology[0].fail_reports = u32::from(primaries) * 2 - 1;
    if let Some(info) = snapshot.nodes[1].info.as_mut() {
        info.used_memory_bytes = 95_000_000;
    }
    snapshot
}

fn bench_rules(c: &mut Criterion) {
    let thresholds = Thresholds::default();
    let mut group = c.benchmark_group("rules");
    for (name, primaries) in [("3+3", 3u16), ("30+30", 30)] {
        let previous = cluster(primaries, 0);
        let mut baseline = LatencyBaseline::for_thresholds(&thresholds);
        for _ in 0..5 {
            baseline.observe(&previous);
        }
        for (state, current) in [
            ("healthy", cluster(primaries, 30)),
            ("degraded", degraded(primaries)),
        ] {
            let input = RuleInput {
                current: &current,
                previous: Some(&previous),
                baseline: &baseline,
                failovers: &[],
            };
            group.bench_function(format!("evaluate/{name}/{state}"), |b| {
                b.iter(|| evaluate(black_box(&input), &thresholds))
            });
            group.bench_function(format!("baseline_clone/{name}/{state}"), |b| {
                b.iter(|| black_box(&current).clone())
            });
        }
    }
    group.finish();
}

fn bench_observe(c: &mut Criterion) {
    let mut group = c.benchmark_group("observe");
    let mut monitor =
        Monitor::new(Thresholds::default(), TrendRing::new(2_880)).expect("default thresholds are valid");
    for i in 0..10 {
        monitor.observe(cluster(3, i * 30));
    }
    let mut round = 10;
    group.bench_function("monitor/3+3", |b| {
        b.iter_batched(
            || {
                round += 1;
                cluster(3, round * 30)
            },
            |snapshot| monitor.observe(snapshot),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("baseline_clone/3+3", |b| {
        let snapshot = cluster(3, 0);
        b.iter(|| black_box(&snapshot).clone())
    });
    group.finish();
}

/// A real `INFO` reply of a Redis 7.0.15 cluster primary (default sections), trimmed of host details.
const INFO: &str = r#"# Server
redis_version:7.0.15
redis_git_sha1:00000000
redis_git_dirty:0
redis_build_id:ae4d7c971a948f0
redis_mode:cluster
os:Linux 6.18.44-fc-v669 x86_64
arch_bits:64
monotonic_clock:POSIX clock_gettime
multiplexing_api:epoll
atomicvar_api:c11-builtin
gcc_version:12.2.0
process_supervised:no
run_id:42ece7ceed195c61325ce9bf33c3d48d0912558d
server_time_usec:1795677057793686
uptime_in_seconds:0
uptime_in_days:0
hz:10
configured_hz:10
lru_clock:514945
io_threads_active:0

# Clients
connected_clients:1
cluster_connections:0
maxclients:10000
client_recent_max_input_buffer:0
client_recent_max_output_buffer:0
blocked_clients:0
tracking_clients:0
clients_in_timeout_table:0

# Memory
used_memory:1665360
used_memory_human:1.59M
used_memory_rss:12546048
used_memory_rss_human:11.96M
used_memory_peak:1665360
used_memory_peak_human:1.59M
used_memory_peak_perc:100.14%
used_memory_overhead:1600104
used_memory_startup:1599904
used_memory_dataset:65256
used_memory_dataset_perc:99.69%
allocator_allocated:2411744
allocator_active:2555904
allocator_resident:5226496
total_system_memory:25276502016
total_system_memory_human:23.54G
used_memory_lua:32768
used_memory_vm_eval:32768
used_memory_lua_human:32.00K
used_memory_scripts_eval:0
number_of_cached_scripts:0
number_of_functions:0
number_of_libraries:0
used_memory_vm_functions:33792
used_memory_vm_total:66560
used_memory_vm_total_human:65.00K
used_memory_functions:200
used_memory_scripts:200
used_memory_scripts_human:200B
maxmemory:0
maxmemory_human:0B
maxmemory_policy:noeviction
allocator_frag_ratio:1.06
allocator_frag_bytes:144160
allocator_rss_ratio:2.04
allocator_rss_bytes:2670592
rss_overhead_ratio:2.40
rss_overhead_bytes:7319552
mem_fragmentation_ratio:7.84
mem_fragmentation_bytes:10946000
mem_not_counted_for_evict:0
mem_replication_backlog:0
mem_total_replication_buffers:0
mem_clients_slaves:0
mem_clients_normal:0
mem_cluster_links:0
mem_aof_buffer:0
mem_allocator:jemalloc-5.3.0
active_defrag_running:0
lazyfree_pending_objects:0
lazyfreed_objects:0

# Persistence
loading:0
async_loading:0
current_cow_peak:0
current_cow_size:0
current_cow_size_age:0
current_fork_perc:0.00
current_save_keys_processed:0
current_save_keys_total:0
rdb_changes_since_last_save:0
rdb_bgsave_in_progress:0
rdb_last_save_time:1795677057
rdb_last_bgsave_status:ok
rdb_last_bgsave_time_sec:-1
rdb_current_bgsave_time_sec:-1
rdb_saves:0
rdb_last_cow_size:0
rdb_last_load_keys_expired:0
rdb_last_load_keys_loaded:0
aof_enabled:0
aof_rewrite_in_progress:0
aof_rewrite_scheduled:0
aof_last_rewrite_time_sec:-1
aof_current_rewrite_time_sec:-1
aof_last_bgrewrite_status:ok
aof_rewrites:0
aof_rewrites_consecutive_failures:0
aof_last_write_status:ok
aof_last_cow_size:0
module_fork_in_progress:0
module_fork_last_cow_size:0

# Stats
total_connections_received:2
total_commands_processed:1
instantaneous_ops_per_sec:0
total_net_input_bytes:68
total_net_output_bytes:5
total_net_repl_input_bytes:0
total_net_repl_output_bytes:0
instantaneous_input_kbps:0.00
instantaneous_output_kbps:0.00
instantaneous_input_repl_kbps:0.00
instantaneous_output_repl_kbps:0.00
rejected_connections:0
sync_full:0
sync_partial_ok:0
sync_partial_err:0
expired_keys:0
expired_stale_perc:0.00
expired_time_cap_reached_count:0
expire_cycle_cpu_milliseconds:0
evicted_keys:0
evicted_clients:0
total_eviction_exceeded_time:0
current_eviction_exceeded_time:0
keyspace_hits:0
keyspace_misses:0
pubsub_channels:0
pubsub_patterns:0
pubsubshard_channels:0
latest_fork_usec:0
total_forks:0
migrate_cached_sockets:0
slave_expires_tracked_keys:0
active_defrag_hits:0
active_defrag_misses:0
active_defrag_key_hits:0
active_defrag_key_misses:0
total_active_defrag_time:0
current_active_defrag_time:0
tracking_total_keys:0
tracking_total_items:0
tracking_total_prefixes:0
unexpected_error_replies:0
total_error_replies:0
dump_payload_sanitizations:0
total_reads_processed:3
total_writes_processed:1
io_threaded_reads_processed:0
io_threaded_writes_processed:0
reply_buffer_shrinks:0
reply_buffer_expands:0

# Replication
role:master
connected_slaves:1
slave0:ip=127.0.0.1,port=30004,state=online,offset=98213,lag=0
master_failover_state:no-failover
master_replid:557474e616481d2959b9e26cb7b152a624e77b3c
master_replid2:0000000000000000000000000000000000000000
master_repl_offset:0
second_repl_offset:-1
repl_backlog_active:0
repl_backlog_size:1048576
repl_backlog_first_byte_offset:0
repl_backlog_histlen:0

# CPU
used_cpu_sys:0.009826
used_cpu_user:0.000000
used_cpu_sys_children:0.000000
used_cpu_user_children:0.000000
used_cpu_sys_main_thread:0.009727
used_cpu_user_main_thread:0.000000

# Modules

# Errorstats

# Cluster
cluster_enabled:1

# Keyspace
db0:keys=331,expires=300,avg_ttl=59211
"#;

const CLUSTER_NODES: &str = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@40004 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@40002 master - 0 1426238316232 2 connected 5461-10922
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@40003 master - 0 1426238318243 3 connected 10923-16383
6ec23923021cf3ffec47632106199cb7f496ce01 127.0.0.1:30005@40005 slave 67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 0 1426238316232 5 connected
824fe116063bc5fcf9f4ffd895bc17aee7731ac3 127.0.0.1:30006@40006 slave 292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 0 1426238317741 6 connected
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-5460
";

fn bench_parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    group.bench_function("info", |b| b.iter(|| parse_info(black_box(INFO))));
    group.bench_function("baseline_lines/info", |b| {
        b.iter(|| black_box(INFO).lines().count())
    });
    group.bench_function("cluster_nodes/6", |b| {
        b.iter(|| parse_cluster_nodes(black_box(CLUSTER_NODES)))
    });
    group.bench_function("baseline_lines/cluster_nodes/6", |b| {
        b.iter(|| black_box(CLUSTER_NODES).lines().count())
    });
    group.finish();
}

criterion_group!(benches, bench_rules, bench_observe, bench_parse);
criterion_main!(benches);
