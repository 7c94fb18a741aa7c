//! `INFO` replies (and every reply in its `field:value` format, such as `CLUSTER INFO`).
//!
//! One pass reads the fields the workspace uses into typed fields; every other field stays readable as
//! text through [`Info::get`], [`Info::fields`] and [`Info::section`]. Parsing never fails: a line
//! that is not `field:value` is skipped and a value that does not read as its type is `None`, because
//! every line of an `INFO` reply stands alone and a new server version may add or change any of them.

use cluster_config::NodeAddr;

use crate::Role;

/// A parsed `INFO` reply (any sections), or any reply of `field:value` lines such as `CLUSTER INFO`.
///
/// Typed fields are `None` when the reply lacks them (a section not asked for) or when their value does
/// not read as their type.
///
/// ```
/// let info = replies::Info::parse(
///     "# Replication\r\nrole:master\r\nconnected_slaves:1\r\n\
///      slave0:ip=10.0.0.2,port=7001,state=online,offset=120,lag=0\r\nmaster_repl_offset:128\r\n",
/// );
/// assert_eq!(info.role, Some(replies::Role::Primary));
/// assert_eq!(info.master_repl_offset, Some(128));
/// assert_eq!(info.replicas[0].addr().map(|a| a.to_string()).as_deref(), Some("10.0.0.2:7001"));
/// assert_eq!(info.get_u64("connected_slaves"), Some(1)); // any other field, by name
/// assert_eq!(info.section("replication").map(|s| s.count()), Some(4));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Info {
    /// The reply as received, so that fields without a typed home stay readable.
    text: String,
    /// `role`.
    pub role: Option<Role>,
    /// `redis_version`.
    pub redis_version: Option<String>,
    /// `run_id`: changes when the process restarts.
    pub run_id: Option<String>,
    /// `uptime_in_seconds`.
    pub uptime_seconds: Option<u64>,
    /// `cluster_enabled:1`.
    pub cluster_enabled: Option<bool>,
    /// `loading:1`: the node is loading its data set (after a restart or a full resync).
    pub loading: Option<bool>,
    /// `used_memory`, in bytes.
    pub used_memory_bytes: Option<u64>,
    /// `maxmemory`, in bytes; 0 means no limit.
    pub maxmemory_bytes: Option<u64>,
    /// `instantaneous_ops_per_sec`.
    pub ops_per_sec: Option<u64>,
    /// `connected_clients`.
    pub connected_clients: Option<u64>,
    /// `evicted_keys` since start.
    pub evicted_keys: Option<u64>,
    /// `keyspace_hits` since start.
    pub keyspace_hits: Option<u64>,
    /// `keyspace_misses` since start.
    pub keyspace_misses: Option<u64>,
    /// `master_repl_offset`: how far this node's replication stream has gone (on a replica, how far
    /// the stream it copies has gone, as far as it knows).
    pub master_repl_offset: Option<u64>,
    /// `master_replid`: the ID of the replication history this node is in.
    pub master_replid: Option<String>,
    /// `master_replid2`: the history this node continued from after a promotion (all zeros if never).
    pub master_replid2: Option<String>,
    /// `second_repl_offset`: where that previous history ends (-1 if never promoted).
    pub second_repl_offset: Option<i64>,
    /// `master_host`, on a replica: its primary's host as the replica was told.
    pub master_host: Option<String>,
    /// `master_port`, on a replica.
    pub master_port: Option<u16>,
    /// `master_link_status:up`, on a replica.
    pub master_link_up: Option<bool>,
    /// `slave_repl_offset`, on a replica: how much of its primary's stream it has applied.
    pub replica_repl_offset: Option<u64>,
    /// On a primary, its replicas as it sees them (`slaveN:` lines), in `N` order.
    pub replicas: Vec<ReplicaInfo>,
    /// `dbN:` lines of the `Keyspace` section, in `N` order.
    pub keyspace: Vec<KeyspaceInfo>,
}

/// A replica as its primary sees it: `slaveN:ip=..,port=..,state=..,offset=..,lag=..`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplicaInfo {
    /// `N` of `slaveN`.
    pub index: u32,
    /// The replica's IP address as the primary sees it (IPv6 without brackets); may be empty.
    pub ip: String,
    /// The replica's port, when readable.
    pub port: Option<u16>,
    /// `online`, `wait_bgsave`, `send_bulk`, ...
    pub state: String,
    /// The replication offset the replica last acknowledged (0 when unreadable).
    pub offset: u64,
    /// Seconds since the replica's last acknowledgement (0 when unreadable).
    pub lag_seconds: u64,
}

impl ReplicaInfo {
    /// The replica's address, when both its IP and port are known.
    pub fn addr(&self) -> Option<NodeAddr> {
        match self.port {
            Some(port) if !self.ip.is_empty() => Some(NodeAddr::new(self.ip.as_str(), port)),
            _ => None,
        }
    }

    /// Whether the primary streams to it (`state=online`).
    pub fn is_online(&self) -> bool {
        self.state == "online"
    }
}

/// A replica's link to its primary: `master_host`, `master_port`, `master_link_status`,
/// `slave_repl_offset`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PrimaryLink {
    /// The primary's address, when its host and port are known.
    pub addr: Option<NodeAddr>,
    /// `master_link_status:up`.
    pub link_up: bool,
    /// `slave_repl_offset` (0 when absent).
    pub offset: u64,
}

/// One `dbN:keys=..,expires=..,avg_ttl=..` line of `INFO keyspace`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyspaceInfo {
    /// Database number.
    pub db: u32,
    /// Keys.
    pub keys: u64,
    /// Keys with a TTL.
    pub expires: u64,
    /// Average TTL of the keys with one, in milliseconds.
    pub avg_ttl_ms: u64,
}

impl Info {
    /// Reads an `INFO`-style reply. Never fails; see the module docs.
    pub fn parse(text: &str) -> Info {
        let mut info = Info {
            text: text.to_owned(),
            ..Info::default()
        };
        for (name, value) in fields(text) {
            info.read_field(name, value);
        }
        info.replicas.sort_by_key(|r| r.index);
        info.keyspace.sort_by_key(|db| db.db);
        info
    }

    fn read_field(&mut self, name: &str, value: &str) {
        let number = || value.parse::<u64>().ok();
        let flag = || Some(value == "1");
        match name {
            "role" => self.role = Role::from_server(value),
            "redis_version" => self.redis_version = Some(value.to_owned()),
            "run_id" => self.run_id = Some(value.to_owned()),
            "uptime_in_seconds" => self.uptime_seconds = number(),
            "cluster_enabled" => self.cluster_enabled = flag(),
            "loading" => self.loading = flag(),
            "used_memory" => self.used_memory_bytes = number(),
            "maxmemory" => self.maxmemory_bytes = number(),
            "instantaneous_ops_per_sec" => self.ops_per_sec = number(),
            "connected_clients" => self.connected_clients = number(),
            "evicted_keys" => self.evicted_keys = number(),
            "keyspace_hits" => self.keyspace_hits = number(),
            "keyspace_misses" => self.keyspace_misses = number(),
            "master_repl_offset" => self.master_repl_offset = number(),
            "master_replid" => self.master_replid = Some(value.to_owned()),
            "master_replid2" => self.master_replid2 = Some(value.to_owned()),
            "second_repl_offset" => self.second_repl_offset = value.parse().ok(),
            "master_host" => self.master_host = Some(value.to_owned()),
            "master_port" => self.master_port = value.parse().ok(),
            "master_link_status" => self.master_link_up = Some(value == "up"),
            "slave_repl_offset" => self.replica_repl_offset = number(),
            _ => {
                if let Some(index) = name.strip_prefix("slave").and_then(|i| i.parse::<u32>().ok()) {
                    let get = |key: &str| pair(value, key).unwrap_or("");
                    self.replicas.push(ReplicaInfo {
                        index,
                        ip: get("ip").to_owned(),
                        port: get("port").parse().ok(),
                        state: get("state").to_owned(),
                        offset: get("offset").parse().unwrap_or(0),
                        lag_seconds: get("lag").parse().unwrap_or(0),
                    });
                } else if let Some(db) = name.strip_prefix("db").and_then(|d| d.parse::<u32>().ok()) {
                    let get = |key: &str| pair(value, key).and_then(|v| v.parse().ok()).unwrap_or(0);
                    self.keyspace.push(KeyspaceInfo {
                        db,
                        keys: get("keys"),
                        expires: get("expires"),
                        avg_ttl_ms: get("avg_ttl"),
                    });
                }
            }
        }
    }

    /// The replication offset this node has reached: a replica's `slave_repl_offset` (what it has
    /// applied), otherwise a primary's `master_repl_offset`.
    pub fn replication_offset(&self) -> Option<u64> {
        self.replica_repl_offset.or(self.master_repl_offset)
    }

    /// On a node that was promoted, the replication history it continued from and where that history
    /// ends: `master_replid2` and `second_repl_offset`. `None` for a node never promoted (Redis reports
    /// a `master_replid2` of zeros and a `second_repl_offset` of -1).
    pub fn previous_replication(&self) -> Option<(&str, u64)> {
        let id = self.master_replid2.as_deref()?;
        let offset = u64::try_from(self.second_repl_offset?).ok()?;
        id.bytes().any(|b| b != b'0').then_some((id, offset))
    }

    /// On a replica, its link to its primary; `None` on a primary or when the role is unknown.
    pub fn primary_link(&self) -> Option<PrimaryLink> {
        if self.role != Some(Role::Replica) {
            return None;
        }
        let addr = match (self.master_host.as_deref(), self.master_port) {
            (Some(host), Some(port)) if !host.is_empty() => Some(NodeAddr::new(host, port)),
            _ => None,
        };
        Some(PrimaryLink {
            addr,
            link_up: self.master_link_up.unwrap_or(false),
            offset: self.replica_repl_offset.unwrap_or(0),
        })
    }

    /// Keys in every database.
    pub fn keys(&self) -> u64 {
        self.keyspace.iter().map(|db| db.keys).sum()
    }

    /// The raw value of any field (the first, should a reply repeat one), trimmed.
    pub fn get(&self, field: &str) -> Option<&str> {
        self.fields()
            .find(|(name, _)| *name == field)
            .map(|(_, value)| value)
    }

    /// Any field read as an unsigned integer.
    pub fn get_u64(&self, field: &str) -> Option<u64> {
        self.get(field)?.parse().ok()
    }

    /// Every `field:value` pair in reply order, section headers left out.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &str)> {
        fields(&self.text)
    }

    /// The fields of one section (`# Replication` is `"replication"`; case does not matter), or `None`
    /// when the reply has no such section.
    pub fn section(&self, name: &str) -> Option<impl Iterator<Item = (&str, &str)>> {
        let mut lines = self.text.lines().map(str::trim);
        lines.by_ref().find(|line| {
            line.strip_prefix('#')
                .is_some_and(|h| h.trim().eq_ignore_ascii_case(name))
        })?;
        Some(lines.take_while(|line| !line.starts_with('#')).filter_map(field))
    }

    /// The reply as received.
    pub fn as_text(&self) -> &str {
        &self.text
    }
}

/// The `field:value` lines of a reply, trimmed, headers and blank lines skipped.
fn fields(text: &str) -> impl Iterator<Item = (&str, &str)> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#'))
        .filter_map(field)
}

fn field(line: &str) -> Option<(&str, &str)> {
    let (name, value) = line.split_once(':')?;
    Some((name, value.trim()))
}

/// The value of `key` in a `key=value,key=value` list (the format of `slaveN:` and `dbN:` values).
fn pair<'a>(list: &'a str, key: &str) -> Option<&'a str> {
    list.split(',')
        .filter_map(|kv| kv.split_once('='))
        .find_map(|(k, v)| (k == key).then_some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real `INFO` reply of a Redis 7.0 primary with two replicas, trimmed to a few sections.
    const PRIMARY: &str = "# Server\r\nredis_version:7.0.15\r\nrun_id:5b1c5d3e0f\r\nuptime_in_seconds:73\r\n\
        # Clients\r\nconnected_clients:3\r\n# Memory\r\nused_memory:1614392\r\nmaxmemory:104857600\r\n\
        # Persistence\r\nloading:0\r\n# Stats\r\ninstantaneous_ops_per_sec:17\r\nevicted_keys:4\r\n\
        keyspace_hits:10\r\nkeyspace_misses:2\r\n# Replication\r\nrole:master\r\nconnected_slaves:2\r\n\
        slave1:ip=::1,port=30005,state=wait_bgsave,offset=0,lag=0\r\n\
        slave0:ip=127.0.0.1,port=30004,state=online,offset=5000,lag=1\r\n\
        master_replid:bbbb\r\nmaster_replid2:0000\r\nmaster_repl_offset:5012\r\nsecond_repl_offset:-1\r\n\
        # Cluster\r\ncluster_enabled:1\r\n# Keyspace\r\ndb3:keys=5,expires=0,avg_ttl=0\r\ndb0:keys=120,expires=20,avg_ttl=1000\r\n";

    #[test]
    fn a_primary_reply_reads_into_typed_fields() {
        let info = Info::parse(PRIMARY);
        let expected = Info {
            text: PRIMARY.to_owned(),
            role: Some(Role::Primary),
            redis_version: Some("7.0.15".into()),
            run_id: Some("5b1c5d3e0f".into()),
            uptime_seconds: Some(73),
            cluster_enabled: Some(true),
            loading: Some(false),
            used_memory_bytes: Some(1_614_392),
            maxmemory_bytes: Some(104_857_600),
            ops_per_sec: Some(17),
            connected_clients: Some(3),
            evicted_keys: Some(4),
            keyspace_hits: Some(10),
            keyspace_misses: Some(2),
            master_repl_offset: Some(5012),
            master_replid: Some("bbbb".into()),
            master_replid2: Some("0000".into()),
            second_repl_offset: Some(-1),
            replicas: vec![
                ReplicaInfo {
                    index: 0,
                    ip: "127.0.0.1".into(),
                    port: Some(30004),
                    state: "online".into(),
                    offset: 5000,
                    lag_seconds: 1,
                },
                ReplicaInfo {
                    index: 1,
                    ip: "::1".into(),
                    port: Some(30005),
                    state: "wait_bgsave".into(),
                    offset: 0,
                    lag_seconds: 0,
                },
            ],
            keyspace: vec![
                KeyspaceInfo {
                    db: 0,
                    keys: 120,
                    expires: 20,
                    avg_ttl_ms: 1000,
                },
                KeyspaceInfo {
                    db: 3,
                    keys: 5,
                    expires: 0,
                    avg_ttl_ms: 0,
                },
            ],
            ..Info::default()
        };
        assert_eq!(info, expected);
        assert_eq!(info.keys(), 125);
        assert_eq!(info.replication_offset(), Some(5012));
        assert_eq!(
            info.previous_replication(),
            None,
            "a replid2 of zeros: never promoted"
        );
        assert_eq!(info.primary_link(), None);
        assert_eq!(
            info.replicas[1].addr().map(|a| a.to_string()).as_deref(),
            Some("[::1]:30005"),
            "IPv6 replicas get brackets"
        );
        assert!(info.replicas[0].is_online() && !info.replicas[1].is_online());
    }

    #[test]
    fn a_replica_reply_reads_its_link() {
        let info = Info::parse(
            "role:slave\nmaster_host:::1\nmaster_port:30001\nmaster_link_status:up\nslave_repl_offset:7\n\
             master_repl_offset:9\nmaster_replid:bbbb\nmaster_replid2:aaaa\nsecond_repl_offset:4001\n",
        );
        assert_eq!(info.role, Some(Role::Replica));
        let link = info.primary_link().expect("a replica has a link");
        assert_eq!(
            (link.addr.map(|a| a.to_string()), link.link_up, link.offset),
            (Some("[::1]:30001".into()), true, 7)
        );
        assert_eq!(info.replication_offset(), Some(7), "a replica's applied offset");
        assert_eq!(info.previous_replication(), Some(("aaaa", 4001)));
        let down = Info::parse("role:slave\nmaster_link_status:down\n").primary_link();
        assert_eq!(
            down,
            Some(PrimaryLink {
                addr: None,
                link_up: false,
                offset: 0
            })
        );
    }

    #[test]
    fn other_fields_and_sections_stay_readable() {
        let info = Info::parse(PRIMARY);
        assert_eq!(info.get("connected_slaves"), Some("2"));
        assert_eq!(info.get_u64("connected_slaves"), Some(2));
        assert_eq!(info.get("redis_version"), Some("7.0.15"));
        assert_eq!(info.get("missing"), None);
        let memory: Vec<(&str, &str)> = info.section("MEMORY").expect("a memory section").collect();
        assert_eq!(memory, [("used_memory", "1614392"), ("maxmemory", "104857600")]);
        assert!(info.section("sentinel").is_none());
        // CLUSTER INFO has no headers: every field is still reachable.
        let cluster = Info::parse("cluster_state:ok\r\ncluster_slots_assigned:16384\r\n");
        assert_eq!(cluster.get("cluster_state"), Some("ok"));
        assert_eq!(cluster.get_u64("cluster_slots_assigned"), Some(16_384));
        assert_eq!(
            cluster.as_text(),
            "cluster_state:ok\r\ncluster_slots_assigned:16384\r\n"
        );
    }

    #[test]
    fn garbage_reads_as_absent() {
        let info = Info::parse("used_memory:lots\nslaveX:ip=1\ndbZ:keys=1\n:::\nrole:sentinel\nno colon\n");
        assert_eq!(
            info,
            Info {
                text: info.text.clone(),
                ..Info::default()
            }
        );
        assert_eq!(Info::parse(""), Info::default());
        let odd = Info::parse("slave0:ip=,port=x,state=online\n");
        assert_eq!((odd.replicas[0].addr(), odd.replicas[0].offset), (None, 0));
    }
}
