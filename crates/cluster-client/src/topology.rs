//! Who serves which keys: the cluster's shards from `CLUSTER SHARDS` (or `CLUSTER SLOTS`), or the
//! client-side sharder over standalone nodes.

use std::collections::BTreeMap;
use std::fmt;

use cluster_config::NodeAddr;
use fred::prelude::Value;
use sharding::{KetamaRing, KeyRange, Sharder, SlotRange, SlotTable, key_slot};

/// What the client is connected to, and so how keys are mapped to nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Deployment {
    /// Redis Cluster: the servers' hash slots.
    Cluster,
    /// One standalone server.
    Standalone,
    /// Client-side consistent hashing (ketama) over standalone servers.
    ShardedKetama,
    /// Client-side key ranges (contiguous slot ranges) over standalone servers.
    ShardedKeyRange,
    /// A primary and its replicas, named by Redis Sentinel: one shard serving every slot.
    Sentinel,
}

/// One shard: a primary, its replicas, and the slots it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardInfo {
    /// The primary's `host:port`.
    pub primary: String,
    /// Replicas that are not failed (`host:port`); replica reads further require a sampled lag.
    pub replicas: Vec<String>,
    /// Slot ranges served. In client-sharded modes: the key-range slots, or empty for ketama.
    pub slots: Vec<SlotRange>,
}

impl ShardInfo {
    /// The slot ranges as text, e.g. `0-5460,7000`.
    pub fn ranges_text(&self) -> String {
        if self.slots.is_empty() {
            return "all".into();
        }
        self.slots
            .iter()
            .map(SlotRange::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Router {
    Slots(SlotTable),
    Single,
    Ketama(KetamaRing),
    KeyRange(KeyRange),
}

/// A consistent picture of the deployment at one moment. Cheap to clone behind an `Arc`.
#[derive(Clone)]
pub struct Topology {
    deployment: Deployment,
    shards: Vec<ShardInfo>,
    router: Router,
    /// Cluster `currentEpoch`-free fingerprint for change detection: shard → primary.
    unassigned: usize,
}

impl fmt::Debug for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Topology")
            .field("deployment", &self.deployment)
            .field("shards", &self.shards)
            .finish()
    }
}

impl Topology {
    pub(crate) fn standalone(node: String) -> Topology {
        Topology {
            deployment: Deployment::Standalone,
            shards: vec![ShardInfo {
                primary: node,
                replicas: Vec::new(),
                slots: Vec::new(),
            }],
            router: Router::Single,
            unassigned: 0,
        }
    }

    /// The primary and replicas the sentinels name: one shard that owns every slot, so that the
    /// failover diff and the slot-based helpers work as for a one-shard cluster.
    pub(crate) fn sentinel(primary: String, replicas: Vec<String>) -> Topology {
        let every_slot =
            SlotRange::new(0, sharding::SLOT_COUNT - 1).map_or_else(|_| Vec::new(), |range| vec![range]);
        Topology {
            deployment: Deployment::Sentinel,
            shards: vec![ShardInfo {
                primary,
                replicas,
                slots: every_slot,
            }],
            router: Router::Single,
            unassigned: 0,
        }
    }

    /// A ketama ring over `(host:port, weight)` pairs, in the order given.
    pub(crate) fn ketama(nodes: Vec<(String, u32)>) -> Result<Topology, sharding::Error> {
        let ring = KetamaRing::new(nodes.iter().cloned())?;
        let shards = nodes.into_iter().map(|(primary, _)| ShardInfo {
            primary,
            replicas: vec![],
            slots: vec![],
        });
        Ok(Topology {
            deployment: Deployment::ShardedKetama,
            shards: shards.collect(),
            router: Router::Ketama(ring),
            unassigned: 0,
        })
    }

    /// Slot ranges over `(host:port, weight)` pairs, in proportion to the weights.
    pub(crate) fn key_range(nodes: Vec<(String, u32)>) -> Result<Topology, sharding::Error> {
        let ranges = KeyRange::new(nodes.iter().cloned())?;
        let shards = nodes
            .into_iter()
            .enumerate()
            .map(|(i, (primary, _))| {
                let slots = ranges.range_of(i).map(|range| vec![range]).unwrap_or_default();
                ShardInfo {
                    primary,
                    replicas: vec![],
                    slots,
                }
            })
            .collect();
        Ok(Topology {
            deployment: Deployment::ShardedKeyRange,
            shards,
            router: Router::KeyRange(ranges),
            unassigned: 0,
        })
    }

    /// The same client-sharded deployment (ketama or key-range) over other nodes; `None` for a cluster
    /// or a standalone server, whose keys are not placed by the client.
    pub(crate) fn resharded(&self, nodes: Vec<(String, u32)>) -> Option<Result<Topology, sharding::Error>> {
        match self.deployment {
            Deployment::ShardedKetama => Some(Topology::ketama(nodes)),
            Deployment::ShardedKeyRange => Some(Topology::key_range(nodes)),
            Deployment::Cluster | Deployment::Standalone | Deployment::Sentinel => None,
        }
    }

    /// Builds a cluster topology from shards; each shard's slots must not overlap another's.
    pub(crate) fn cluster(mut shards: Vec<ShardInfo>) -> Result<Topology, sharding::Error> {
        shards.retain(|s| !s.slots.is_empty());
        shards.sort_by_key(|s| s.slots.iter().map(|r| r.start()).min());
        let table = SlotTable::from_ranges(shards.iter().flat_map(|s| {
            s.slots
                .iter()
                .map(move |range| (range.slots(), s.primary.as_str()))
        }))?;
        // SlotTable numbers shards in order of first appearance, which is `shards` order.
        let unassigned = sharding::SLOT_COUNT as usize - table.assigned_slot_count();
        Ok(Topology {
            deployment: Deployment::Cluster,
            shards,
            router: Router::Slots(table),
            unassigned,
        })
    }

    /// What the client is connected to, which decides how keys are routed.
    pub fn deployment(&self) -> Deployment {
        self.deployment
    }

    /// Every shard.
    pub fn shards(&self) -> &[ShardInfo] {
        &self.shards
    }

    /// Number of slots no shard serves (cluster mode).
    pub fn unassigned_slots(&self) -> usize {
        self.unassigned
    }

    /// The nodes and their weights in client-sharded deployments (ketama or key-range), in ring
    /// order; empty for a cluster or a standalone server.
    pub fn weighted_nodes(&self) -> Vec<(String, u32)> {
        match &self.router {
            Router::Ketama(ring) => ring.nodes().map(|(n, w)| (n.to_string(), w)).collect(),
            Router::KeyRange(ranges) => ranges.nodes().map(|(n, w)| (n.to_string(), w)).collect(),
            Router::Slots(_) | Router::Single => Vec::new(),
        }
    }

    /// How keys map to shards, as a [`Sharder`] (for plans such as [`sharding::KeyMovePlan`]); shard
    /// numbers are indices into [`shards`](Topology::shards). `None` for a standalone server.
    pub fn sharder(&self) -> Option<&dyn Sharder> {
        match &self.router {
            Router::Slots(table) => Some(table),
            Router::Ketama(ring) => Some(ring),
            Router::KeyRange(ranges) => Some(ranges),
            Router::Single => None,
        }
    }

    /// The index of the shard serving `key`.
    pub(crate) fn shard_index(&self, key: &[u8], slot: u16) -> Option<usize> {
        match &self.router {
            Router::Slots(table) => table.shard_of_slot(slot),
            Router::Single => Some(0),
            Router::Ketama(ring) => ring.shard_of(key),
            Router::KeyRange(ranges) => ranges.shard_of(key),
        }
    }

    /// The shard serving `key`.
    pub fn shard_for_key(&self, key: &[u8]) -> Option<&ShardInfo> {
        self.shard_index(key, key_slot(key)).map(|i| &self.shards[i])
    }

    /// The shard serving `slot` (cluster and key-range modes).
    pub fn shard_for_slot(&self, slot: u16) -> Option<&ShardInfo> {
        match &self.router {
            Router::Slots(table) => table.shard_of_slot(slot).map(|i| &self.shards[i]),
            Router::Single => self.shards.first(),
            Router::KeyRange(_) => self
                .shards
                .iter()
                .find(|s| s.slots.iter().any(|range| range.contains(slot))),
            Router::Ketama(_) => None,
        }
    }

    /// Every node address (primaries and replicas).
    pub fn nodes(&self) -> impl Iterator<Item = &str> {
        self.shards
            .iter()
            .flat_map(|s| std::iter::once(s.primary.as_str()).chain(s.replicas.iter().map(String::as_str)))
    }

    /// `slot ranges → primary`, for comparing two topologies.
    pub(crate) fn owners(&self) -> BTreeMap<SlotRange, &str> {
        self.shards
            .iter()
            .flat_map(|s| s.slots.iter().map(move |r| (*r, s.primary.as_str())))
            .collect()
    }
}

/// A node's address as this crate spells it everywhere (topology, node handles, redirects, lag
/// sampling): `host:port`, with brackets around an IPv6 host (`[::1]:7000`), so that an address from
/// one source matches the same node from another. `host` may come bracketed or not.
pub(crate) fn node_addr(host: &str, port: u16) -> String {
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    NodeAddr::new(host, port).to_string()
}

/// An address as a server prints it (a `MOVED`/`ASK` target: `ip:port`, where Redis writes an IPv6
/// ip raw, as in `::1:7000`, or `:port` when it does not know its own ip), in this crate's spelling.
/// [`NodeAddr::parse_announced`] reads it; an empty (or `?`) host is `fallback_host`'s.
pub(crate) fn reported_addr(text: &str, fallback_host: &str) -> Option<String> {
    let port = NodeAddr::announced_port(text)?;
    Some(match NodeAddr::parse_announced(text) {
        Some(addr) if addr.host() != "?" => addr.to_string(),
        _ => node_addr(fallback_host, port),
    })
}

/// A node as `CLUSTER SHARDS` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShardNode {
    pub(crate) addr: String,
    pub(crate) primary: bool,
    pub(crate) health: String,
}

/// Parses a `CLUSTER SHARDS` reply (RESP2 arrays of alternating names and values, or RESP3 maps).
///
/// `tls` picks each node's `tls-port` (else its `port`): `CLUSTER SHARDS` lists both ports of a node
/// that has both, and a TLS client must reach the TLS one. (`CLUSTER SLOTS` and redirects already name
/// the port of the asking connection's kind.)
pub(crate) fn parse_cluster_shards(
    reply: &Value,
    fallback_host: &str,
    tls: bool,
) -> Result<Vec<ShardInfo>, String> {
    let Value::Array(shards) = reply else {
        return Err(format!("expected an array, got {reply:?}"));
    };
    let mut out = Vec::new();
    for shard in shards {
        let shard_fields = fields(shard)?;
        let slots = match lookup(&shard_fields, "slots") {
            Some(Value::Array(bounds)) => {
                let numbers: Vec<u16> = bounds.iter().filter_map(as_u16).collect();
                if !numbers.len().is_multiple_of(2) {
                    return Err("odd number of slot bounds".into());
                }
                numbers
                    .chunks(2)
                    .map(|c| SlotRange::new(c[0], c[1]).map_err(|e| format!("bad slot range: {e}")))
                    .collect::<Result<_, _>>()?
            }
            _ => Vec::new(),
        };
        let Some(Value::Array(nodes)) = lookup(&shard_fields, "nodes") else {
            return Err("shard without nodes".into());
        };
        let mut parsed = Vec::new();
        for node in nodes {
            let f = fields(node)?;
            let text = |name: &str| lookup(&f, name).and_then(|v| v.as_string()).unwrap_or_default();
            let (wanted, other) = if tls {
                ("tls-port", "port")
            } else {
                ("port", "tls-port")
            };
            let port = lookup(&f, wanted)
                .and_then(as_u16)
                .filter(|port| *port != 0)
                .or_else(|| lookup(&f, other).and_then(as_u16))
                .ok_or("node without port")?;
            let mut host = text("ip");
            if host.is_empty() || host == "?" {
                host = text("endpoint");
            }
            if host.is_empty() || host == "?" {
                host = fallback_host.to_string();
            }
            parsed.push(ShardNode {
                addr: node_addr(&host, port),
                primary: text("role") == "master",
                health: text("health"),
            });
        }
        let primary = parsed
            .iter()
            .find(|n| n.primary && n.health != "fail" && n.health != "failed");
        let Some(primary) = primary.or_else(|| parsed.iter().find(|n| n.primary)) else {
            continue;
        };
        // Redis 7.0 reports a replica as `loading` until the answering node has heard its replication
        // offset by gossip, which can take seconds after the replica linked: it is still a member of
        // the shard. Replica reads go only to replicas the lag sampler has seen caught up.
        let replicas = parsed
            .iter()
            .filter(|n| !n.primary && (n.health == "online" || n.health == "loading"))
            .map(|n| n.addr.clone())
            .collect();
        out.push(ShardInfo {
            primary: primary.addr.clone(),
            replicas,
            slots,
        });
    }
    Ok(out)
}

/// Parses a `CLUSTER SLOTS` reply: `[[start, end, [ip, port, id], [replica...]...]...]`.
pub(crate) fn parse_cluster_slots(reply: &Value, fallback_host: &str) -> Result<Vec<ShardInfo>, String> {
    let Value::Array(ranges) = reply else {
        return Err(format!("expected an array, got {reply:?}"));
    };
    let mut by_primary: BTreeMap<String, ShardInfo> = BTreeMap::new();
    for range in ranges {
        let Value::Array(items) = range else {
            return Err("range is not an array".into());
        };
        if items.len() < 3 {
            return Err("range with fewer than 3 items".into());
        }
        let (Some(start), Some(end)) = (as_u16(&items[0]), as_u16(&items[1])) else {
            return Err("bad slot bounds".into());
        };
        let addr = |v: &Value| -> Option<String> {
            let Value::Array(parts) = v else { return None };
            let mut host = parts.first()?.as_string()?;
            if host.is_empty() || host == "?" {
                host = fallback_host.to_string();
            }
            Some(node_addr(&host, as_u16(parts.get(1)?)?))
        };
        let primary = addr(&items[2]).ok_or("bad primary address")?;
        let entry = by_primary.entry(primary.clone()).or_insert_with(|| ShardInfo {
            primary,
            replicas: items[3..].iter().filter_map(addr).collect(),
            slots: Vec::new(),
        });
        entry
            .slots
            .push(SlotRange::new(start, end).map_err(|e| format!("bad slot range: {e}"))?);
    }
    Ok(by_primary.into_values().collect())
}

fn fields(value: &Value) -> Result<Vec<(String, &Value)>, String> {
    match value {
        Value::Array(items) if items.len().is_multiple_of(2) => Ok(items
            .chunks(2)
            .map(|c| (c[0].as_string().unwrap_or_default(), &c[1]))
            .collect()),
        Value::Map(map) => Ok(map
            .iter()
            .map(|(k, v)| (k.as_str().map(|s| s.to_string()).unwrap_or_default(), v))
            .collect()),
        other => Err(format!("expected name/value pairs, got {other:?}")),
    }
}

fn lookup<'a>(fields: &[(String, &'a Value)], name: &str) -> Option<&'a Value> {
    fields.iter().find(|(k, _)| k == name).map(|(_, v)| *v)
}

fn as_u16(value: &Value) -> Option<u16> {
    match value {
        Value::Integer(i) => u16::try_from(*i).ok(),
        other => other.as_string()?.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Value {
        Value::from(text)
    }

    fn node(ip: &str, port: i64, role: &str, health: &str) -> Value {
        Value::Array(vec![
            s("id"),
            s("abc"),
            s("port"),
            Value::Integer(port),
            s("ip"),
            s(ip),
            s("endpoint"),
            s(ip),
            s("role"),
            s(role),
            s("replication-offset"),
            Value::Integer(1),
            s("health"),
            s(health),
        ])
    }

    #[test]
    fn parses_cluster_shards() {
        let reply = Value::Array(vec![
            Value::Array(vec![
                s("slots"),
                Value::Array(vec![Value::Integer(0), Value::Integer(5460)]),
                s("nodes"),
                Value::Array(vec![
                    node("127.0.0.1", 7000, "master", "online"),
                    node("127.0.0.1", 7003, "replica", "online"),
                    node("127.0.0.1", 7006, "replica", "loading"),
                    node("127.0.0.1", 7008, "replica", "fail"),
                ]),
            ]),
            Value::Array(vec![
                s("slots"),
                Value::Array(vec![Value::Integer(5461), Value::Integer(16383)]),
                s("nodes"),
                Value::Array(vec![
                    node("127.0.0.1", 7001, "master", "failed"),
                    node("", 7004, "master", "online"),
                ]),
            ]),
            // A failed primary that lost its slots: no shard.
            Value::Array(vec![
                s("slots"),
                Value::Array(vec![]),
                s("nodes"),
                Value::Array(vec![node("127.0.0.1", 7009, "master", "failed")]),
            ]),
        ]);
        let shards = parse_cluster_shards(&reply, "10.0.0.1", false).unwrap();
        let topology = Topology::cluster(shards).unwrap();
        assert_eq!(topology.shards().len(), 2);
        assert_eq!(topology.shards()[0].primary, "127.0.0.1:7000");
        assert_eq!(
            topology.shards()[0].replicas,
            vec!["127.0.0.1:7003".to_string(), "127.0.0.1:7006".to_string()],
            "loading replicas are members, failed ones are not"
        );
        assert_eq!(
            topology.shards()[1].primary,
            "10.0.0.1:7004",
            "the healthy primary wins; empty ip uses the fallback host"
        );
        assert_eq!(topology.unassigned_slots(), 0);
        assert_eq!(topology.shard_for_slot(5461).unwrap().primary, "10.0.0.1:7004");
        assert_eq!(
            topology.shard_for_key(b"foo").unwrap().primary,
            "10.0.0.1:7004",
            "foo is slot 12182"
        );
    }

    #[test]
    fn ipv6_addresses_get_brackets_everywhere() {
        assert_eq!(node_addr("::1", 7000), "[::1]:7000");
        assert_eq!(node_addr("[::1]", 7000), "[::1]:7000");
        assert_eq!(node_addr("10.0.0.1", 7000), "10.0.0.1:7000");
        assert_eq!(node_addr("cache-1", 7000), "cache-1:7000");
        // The host of an address in this spelling, as `NodeHandle::open` reads it.
        let addr_host = |addr: &str| addr.parse::<NodeAddr>().map(|a| a.host().to_owned()).unwrap();
        assert_eq!(addr_host("[::1]:7000"), "::1");
        assert_eq!(addr_host("[2001:db8::7]:6379"), "2001:db8::7");
        assert_eq!(addr_host("10.0.0.1:7000"), "10.0.0.1");
        let reported = |text: &str| reported_addr(text, "::1");
        assert_eq!(reported("::1:7000").as_deref(), Some("[::1]:7000"));
        assert_eq!(reported("[::1]:7000").as_deref(), Some("[::1]:7000"));
        assert_eq!(
            reported("2001:db8::7:6379").as_deref(),
            Some("[2001:db8::7]:6379")
        );
        assert_eq!(reported("127.0.0.1:7001").as_deref(), Some("127.0.0.1:7001"));
        assert_eq!(reported(":7001").as_deref(), Some("[::1]:7001"));
        assert_eq!(reported("7001"), None);
        assert_eq!(reported("::1:port"), None);
        assert_eq!(reported("::1:0"), None);

        let v6 = |port: i64, role: &str| node("::1", port, role, "online");
        let reply = Value::Array(vec![Value::Array(vec![
            s("slots"),
            Value::Array(vec![Value::Integer(0), Value::Integer(16383)]),
            s("nodes"),
            Value::Array(vec![v6(7000, "master"), v6(7001, "replica")]),
        ])]);
        let shards = parse_cluster_shards(&reply, "::1", false).unwrap();
        assert_eq!(shards[0].primary, "[::1]:7000");
        assert_eq!(shards[0].replicas, vec!["[::1]:7001".to_string()]);
        let addr = |ip: &str, port: i64| Value::Array(vec![s(ip), Value::Integer(port), s("id")]);
        let reply = Value::Array(vec![Value::Array(vec![
            Value::Integer(0),
            Value::Integer(16383),
            addr("::1", 7000),
            addr("", 7001),
        ])]);
        let shards = parse_cluster_slots(&reply, "[::1]").unwrap();
        assert_eq!(shards[0].primary, "[::1]:7000");
        assert_eq!(shards[0].replicas, vec!["[::1]:7001".to_string()]);
        for shard in &shards {
            for addr in std::iter::once(&shard.primary).chain(&shard.replicas) {
                let parsed: NodeAddr = addr.parse().expect("cluster-config reads it back");
                assert_eq!(parsed.host(), "::1");
            }
        }
    }

    #[test]
    fn sharded_topologies_keep_their_weights_and_reshard_alike() {
        let nodes = vec![("a:1".to_string(), 1), ("b:1".to_string(), 3)];
        let ketama = Topology::ketama(nodes.clone()).unwrap();
        assert_eq!(ketama.weighted_nodes(), nodes);
        let ring = KetamaRing::new(nodes.clone()).unwrap();
        for key in ["x", "y", "user:42"] {
            assert_eq!(
                ketama.shard_for_key(key.as_bytes()).unwrap().primary,
                ring.node_for(key.as_bytes())
            );
        }
        let grown = ketama
            .resharded(vec![("a:1".into(), 1), ("b:1".into(), 3), ("c:1".into(), 2)])
            .unwrap()
            .unwrap();
        assert_eq!(grown.deployment(), Deployment::ShardedKetama);
        assert_eq!(grown.shards().len(), 3);
        let ranges = Topology::key_range(nodes.clone()).unwrap();
        assert_eq!(ranges.shards()[0].ranges_text(), "0-4095");
        assert_eq!(ranges.sharder().map(|s| s.shard_count()), Some(2));
        let shrunk = ranges.resharded(vec![("a:1".into(), 1)]).unwrap().unwrap();
        assert_eq!(shrunk.deployment(), Deployment::ShardedKeyRange);
        assert!(ranges.resharded(vec![]).unwrap().is_err());
        let single = Topology::standalone("a:1".into());
        assert!(single.resharded(nodes).is_none());
        assert!(single.weighted_nodes().is_empty());
        assert!(single.sharder().is_none());
    }

    #[test]
    fn parses_cluster_slots_and_reports_gaps() {
        let addr = |port: i64| Value::Array(vec![s("127.0.0.1"), Value::Integer(port), s("id")]);
        let reply = Value::Array(vec![
            Value::Array(vec![
                Value::Integer(0),
                Value::Integer(99),
                addr(7000),
                addr(7003),
            ]),
            Value::Array(vec![Value::Integer(200), Value::Integer(16383), addr(7001)]),
            Value::Array(vec![
                Value::Integer(100),
                Value::Integer(149),
                addr(7000),
                addr(7003),
            ]),
        ]);
        let topology = Topology::cluster(parse_cluster_slots(&reply, "h").unwrap()).unwrap();
        assert_eq!(topology.shards().len(), 2);
        let range = |start, end| SlotRange::new(start, end).unwrap();
        assert_eq!(topology.shards()[0].slots, vec![range(0, 99), range(100, 149)]);
        assert_eq!(topology.shards()[0].ranges_text(), "0-99,100-149");
        assert_eq!(topology.unassigned_slots(), 50);
        assert!(topology.shard_for_slot(170).is_none());
        assert!(parse_cluster_slots(&Value::Integer(1), "h").is_err());
    }
}
