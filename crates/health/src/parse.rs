//! Parsing the text replies of `INFO`, `CLUSTER INFO` and `CLUSTER NODES`.
//!
//! These are pure functions over the text a node sent, so they are tested on canned replies and never
//! panic: a field that is missing or unreadable takes its default, and only a reply that is not the
//! command's reply at all is an error.

use replies::Info;

use crate::error::Error;
use crate::snapshot::{ClusterInfo, DbKeys, PrimaryLink, ReplicaLink, Role, ServerInfo, TopologyNode};

/// Parses an `INFO` reply (any sections; the ones missing leave their fields at their defaults).
///
/// ```
/// let info = health::parse_info("# Replication\r\nrole:slave\r\nmaster_host:10.0.0.1\r\nmaster_port:7000\r\n\
///                                master_link_status:up\r\nslave_repl_offset:42\r\n# Keyspace\r\ndb0:keys=7,expires=1,avg_ttl=0\r\n");
/// assert_eq!(info.role, health::Role::Replica);
/// assert_eq!(info.primary_link.as_ref().map(|l| (l.addr.as_str(), l.link_up, l.offset)), Some(("10.0.0.1:7000", true, 42)));
/// assert_eq!(info.keys(), 7);
/// ```
pub fn parse_info(text: &str) -> ServerInfo {
    let info = Info::parse(text);
    // `host:port` as the rest of the workspace spells a node (`NodeAddr`'s display): an IPv6 host, which
    // `INFO` prints raw (`ip=::1`), gets brackets, so that it matches the same node's address elsewhere.
    let addr = |addr: Option<cluster_config::NodeAddr>| addr.map(|a| a.to_string()).unwrap_or_default();
    ServerInfo {
        // Anything but a replica serves writes, as a standalone server does.
        role: info.role.unwrap_or(Role::Primary),
        redis_version: info.redis_version.clone().unwrap_or_default(),
        run_id: info.run_id.clone().unwrap_or_default(),
        uptime_seconds: info.uptime_seconds.unwrap_or(0),
        cluster_enabled: info.cluster_enabled.unwrap_or(false),
        loading: info.loading.unwrap_or(false),
        used_memory_bytes: info.used_memory_bytes.unwrap_or(0),
        maxmemory_bytes: info.maxmemory_bytes.unwrap_or(0),
        ops_per_sec: info.ops_per_sec.unwrap_or(0),
        connected_clients: info.connected_clients.unwrap_or(0),
        keyspace: info
            .keyspace
            .iter()
            .map(|db| DbKeys {
                db: db.db,
                keys: db.keys,
                expires: db.expires,
            })
            .collect(),
        evicted_keys: info.evicted_keys.unwrap_or(0),
        keyspace_hits: info.keyspace_hits.unwrap_or(0),
        keyspace_misses: info.keyspace_misses.unwrap_or(0),
        master_repl_offset: info.master_repl_offset.unwrap_or(0),
        replicas: info
            .replicas
            .iter()
            .map(|replica| ReplicaLink {
                addr: addr(replica.addr()),
                state: replica.state.clone(),
                offset: replica.offset,
                lag_seconds: replica.lag_seconds,
            })
            .collect(),
        primary_link: info.primary_link().map(|link| PrimaryLink {
            addr: addr(link.addr),
            link_up: link.link_up,
            offset: link.offset,
        }),
    }
}

/// Parses a `CLUSTER INFO` reply.
///
/// ```
/// let info = health::parse_cluster_info("cluster_state:ok\r\ncluster_slots_assigned:16384\r\ncluster_slots_ok:16384\r\n")?;
/// assert!(info.state_ok);
/// assert_eq!(info.slots_ok, 16_384);
/// assert!(health::parse_cluster_info("ERR This instance has cluster support disabled").is_err());
/// # Ok::<(), health::Error>(())
/// ```
pub fn parse_cluster_info(text: &str) -> Result<ClusterInfo, Error> {
    let info = Info::parse(text);
    let state = info.get("cluster_state").ok_or_else(|| Error::Reply {
        command: "CLUSTER INFO",
        detail: format!("no cluster_state field in {:?}", excerpt(text)),
    })?;
    let number = |name: &str| info.get(name).and_then(|v| v.parse().ok()).unwrap_or_default();
    let wide = |name: &str| info.get_u64(name).unwrap_or_default();
    Ok(ClusterInfo {
        state_ok: state == "ok",
        slots_assigned: number("cluster_slots_assigned"),
        slots_ok: number("cluster_slots_ok"),
        slots_pfail: number("cluster_slots_pfail"),
        slots_fail: number("cluster_slots_fail"),
        known_nodes: number("cluster_known_nodes"),
        size: number("cluster_size"),
        current_epoch: wide("cluster_current_epoch"),
        my_epoch: wide("cluster_my_epoch"),
    })
}

/// Parses a `CLUSTER NODES` reply into one entry per line. Slots being imported or migrated
/// (`[slot->-id]`) are left out: they still belong to the listed owner.
///
/// Failure reports are counted as this one view says: 1 if it flags the node, 0 otherwise.
///
/// ```
/// let text = "07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected\n\
///             e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460\n";
/// let nodes = health::parse_cluster_nodes(text)?;
/// assert_eq!(nodes[1].slots, vec![sharding::SlotRange::new(0, 5460)?]);
/// assert_eq!(nodes[0].primary_id.as_deref(), Some(nodes[1].id.as_str()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn parse_cluster_nodes(text: &str) -> Result<Vec<TopologyNode>, Error> {
    let nodes = replies::parse_cluster_nodes(text).map_err(|error| Error::Reply {
        command: "CLUSTER NODES",
        detail: error.to_string(),
    })?;
    Ok(nodes
        .into_iter()
        .map(|node| {
            // The role is a field of its own; the other flags are kept as printed.
            let flags: Vec<String> = node
                .flags
                .into_iter()
                .filter(|flag| !matches!(flag.as_str(), "master" | "slave"))
                .collect();
            let pfail = flags.iter().any(|f| f == "fail?");
            let fail = flags.iter().any(|f| f == "fail");
            TopologyNode {
                id: node.id,
                addr: node.addr.map(|a| a.to_string()).unwrap_or_default(),
                role: node.role,
                primary_id: node.primary_id,
                flags,
                link_connected: node.link_connected,
                config_epoch: node.config_epoch,
                slots: node.slots,
                pfail_reports: u32::from(pfail),
                fail_reports: u32::from(fail),
            }
        })
        .collect())
}

/// The start of a reply, for error messages.
fn excerpt(text: &str) -> String {
    text.chars().take(120).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real `INFO` reply of a Redis 7.0 primary with one replica, trimmed to the sections used.
    const PRIMARY_INFO: &str = "# Server\r\nredis_version:7.0.15\r\nrun_id:5b1c5d3e0f\r\nuptime_in_seconds:73\r\n\
        # Clients\r\nconnected_clients:3\r\n# Memory\r\nused_memory:1614392\r\nmaxmemory:104857600\r\n\
        # Persistence\r\nloading:0\r\n# Stats\r\ninstantaneous_ops_per_sec:17\r\nevicted_keys:4\r\n\
        keyspace_hits:10\r\nkeyspace_misses:2\r\n# Replication\r\nrole:master\r\nconnected_slaves:2\r\n\
        slave0:ip=127.0.0.1,port=30004,state=online,offset=5000,lag=1\r\n\
        slave1:ip=127.0.0.1,port=30005,state=wait_bgsave,offset=0,lag=0\r\nmaster_repl_offset:5012\r\n\
        # Cluster\r\ncluster_enabled:1\r\n# Keyspace\r\ndb0:keys=120,expires=20,avg_ttl=1000\r\ndb3:keys=5,expires=0,avg_ttl=0\r\n";

    fn check_info(text: &str, expected: ServerInfo) {
        assert_eq!(parse_info(text), expected, "parsing {text:?}");
    }

    #[test]
    fn info_replies_parse_into_the_fields_used() {
        check_info(
            PRIMARY_INFO,
            ServerInfo {
                role: Role::Primary,
                redis_version: "7.0.15".into(),
                run_id: "5b1c5d3e0f".into(),
                uptime_seconds: 73,
                cluster_enabled: true,
                loading: false,
                used_memory_bytes: 1_614_392,
                maxmemory_bytes: 104_857_600,
                ops_per_sec: 17,
                connected_clients: 3,
                keyspace: vec![
                    DbKeys {
                        db: 0,
                        keys: 120,
                        expires: 20,
                    },
                    DbKeys {
                        db: 3,
                        keys: 5,
                        expires: 0,
                    },
                ],
                evicted_keys: 4,
                keyspace_hits: 10,
                keyspace_misses: 2,
                master_repl_offset: 5012,
                replicas: vec![
                    ReplicaLink {
                        addr: "127.0.0.1:30004".into(),
                        state: "online".into(),
                        offset: 5000,
                        lag_seconds: 1,
                    },
                    ReplicaLink {
                        addr: "127.0.0.1:30005".into(),
                        state: "wait_bgsave".into(),
                        offset: 0,
                        lag_seconds: 0,
                    },
                ],
                primary_link: None,
            },
        );
        check_info(
            "role:slave\nmaster_host:127.0.0.1\nmaster_port:30001\nmaster_link_status:down\nslave_repl_offset:7\nloading:1\n",
            ServerInfo {
                role: Role::Replica,
                loading: true,
                primary_link: Some(PrimaryLink {
                    addr: "127.0.0.1:30001".into(),
                    link_up: false,
                    offset: 7,
                }),
                ..ServerInfo::default()
            },
        );
        check_info(
            "role:slave\nmaster_host:::1\nmaster_port:30001\nmaster_link_status:up\n",
            ServerInfo {
                role: Role::Replica,
                primary_link: Some(PrimaryLink {
                    addr: "[::1]:30001".into(),
                    link_up: true,
                    offset: 0,
                }),
                ..ServerInfo::default()
            },
        );
        let v6 = parse_info("role:master\nslave0:ip=::1,port=30004,state=online,offset=9,lag=0\n");
        assert_eq!(v6.replicas[0].addr, "[::1]:30004", "IPv6 replicas get brackets");
        // Garbage and empty replies leave every field at its default rather than failing.
        check_info("", ServerInfo::default());
        check_info(
            "used_memory:lots\nslaveX:ip=1\ndbZ:keys=1\n:::\n",
            ServerInfo::default(),
        );
    }

    fn check_cluster_info(text: &str, expected: Option<ClusterInfo>) {
        assert_eq!(parse_cluster_info(text).ok(), expected, "parsing {text:?}");
    }

    #[test]
    fn cluster_info_replies_parse_and_other_replies_do_not() {
        check_cluster_info(
            "cluster_enabled:1\r\ncluster_state:fail\r\ncluster_slots_assigned:16384\r\ncluster_slots_ok:10923\r\n\
             cluster_slots_pfail:0\r\ncluster_slots_fail:5461\r\ncluster_known_nodes:6\r\ncluster_size:3\r\n\
             cluster_current_epoch:7\r\ncluster_my_epoch:2\r\n",
            Some(ClusterInfo {
                state_ok: false,
                slots_assigned: 16_384,
                slots_ok: 10_923,
                slots_pfail: 0,
                slots_fail: 5461,
                known_nodes: 6,
                size: 3,
                current_epoch: 7,
                my_epoch: 2,
            }),
        );
        check_cluster_info(
            "cluster_state:ok\n",
            Some(ClusterInfo {
                state_ok: true,
                ..ClusterInfo::default()
            }),
        );
        check_cluster_info("", None);
        check_cluster_info("ERR This instance has cluster support disabled", None);
    }

    const NODES: &str = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,host-4 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 master,fail? - 0 1426238316232 2 disconnected 5461-10922 [10923->-292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f]
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@31003 master - 0 1426238318243 3 connected 10923-16382 16383
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460
6ec23923021cf3ffec47632106199cb7f496ce01 :0@0 slave,fail,noaddr 67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 0 1426238316232 5 disconnected
";

    #[test]
    fn cluster_nodes_replies_parse_roles_flags_links_and_slots() {
        let nodes = parse_cluster_nodes(NODES).expect("a real reply parses");
        type Line<'a> = (&'a str, Role, Vec<&'a str>, bool, Vec<(u16, u16)>, u32, u32);
        let pairs = |ranges: &[sharding::SlotRange]| ranges.iter().map(|r| (r.start(), r.end())).collect();
        let summary: Vec<Line<'_>> = nodes
            .iter()
            .map(|n| {
                (
                    n.addr.as_str(),
                    n.role,
                    n.flags.iter().map(String::as_str).collect(),
                    n.link_connected,
                    pairs(&n.slots),
                    n.pfail_reports,
                    n.fail_reports,
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("127.0.0.1:30004", Role::Replica, vec![], true, vec![], 0, 0),
                (
                    "127.0.0.1:30002",
                    Role::Primary,
                    vec!["fail?"],
                    false,
                    vec![(5461, 10922)],
                    1,
                    0
                ),
                (
                    "127.0.0.1:30003",
                    Role::Primary,
                    vec![],
                    true,
                    vec![(10923, 16382), (16383, 16383)],
                    0,
                    0
                ),
                (
                    "127.0.0.1:30001",
                    Role::Primary,
                    vec!["myself"],
                    true,
                    vec![(0, 5460)],
                    0,
                    0
                ),
                ("", Role::Replica, vec!["fail", "noaddr"], false, vec![], 0, 1),
            ]
        );
        assert_eq!(
            nodes[0].primary_id.as_deref(),
            Some("e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca")
        );
        assert_eq!(nodes[2].config_epoch, 3);
    }

    #[test]
    fn malformed_cluster_nodes_lines_are_errors_that_quote_the_line() {
        for bad in [
            "abc 127.0.0.1:1@2 master",
            "id 127.0.0.1:1@2 master - 0 0 1 connected 5-2",
            "id a:1 master - 0 0 1 connected 99999",
        ] {
            let error = parse_cluster_nodes(bad).expect_err(bad).to_string();
            assert!(
                error.contains("CLUSTER NODES") && error.contains(&bad[..5]),
                "{error}"
            );
        }
        assert_eq!(parse_cluster_nodes("").expect("empty parses"), Vec::new());
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(text in "\\PC{0,400}") {
            let _ = parse_info(&text);
            let _ = parse_cluster_info(&text);
            let _ = parse_cluster_nodes(&text);
        }

        #[test]
        fn cluster_nodes_slot_ranges_round_trip(ranges in proptest::collection::vec((0u16..16_384, 0u16..100), 0..8)) {
            let slots: Vec<(u16, u16)> = ranges.iter().map(|&(a, len)| (a, a.saturating_add(len).min(16_383))).collect();
            let words: Vec<String> = slots.iter().map(|(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") }).collect();
            let line = format!("id 127.0.0.1:7000@17000 master - 0 0 1 connected {}", words.join(" "));
            let parsed = parse_cluster_nodes(&line).expect("generated line parses");
            let read: Vec<(u16, u16)> = parsed[0].slots.iter().map(|r| (r.start(), r.end())).collect();
            proptest::prop_assert_eq!(read, slots);
        }
    }
}
