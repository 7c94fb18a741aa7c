//! `CLUSTER NODES` replies: one line per node the answering node knows, with its view of their roles,
//! flags, links and slots.

use cluster_config::NodeAddr;
use sharding::SlotRange;

use crate::{Error, Role};

/// One line of a `CLUSTER NODES` reply, as the answering node sees that node.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterNode {
    /// The 40-character node ID.
    pub id: String,
    /// `ip:port`; `None` when the answering node does not know it yet (`:0@0`, flag `noaddr`, or
    /// `:port` for a node that has not met another node and so does not know its own IP).
    pub addr: Option<NodeAddr>,
    /// The client port, also when the host is not known yet (`:port`); `None` for `:0`.
    pub port: Option<u16>,
    /// The hostname after the cluster-bus port (`ip:port@cport,hostname`), when announced.
    pub hostname: Option<String>,
    /// Every flag as printed (`myself`, `master`, `slave`, `fail?`, `fail`, `handshake`, `noaddr`,
    /// `nofailover`), `noflags` left out.
    pub flags: Vec<String>,
    /// Primary or replica: from the `master`/`slave` flag, else from whether it names a primary.
    pub role: Role,
    /// For a replica, its primary's node ID.
    pub primary_id: Option<String>,
    /// The node's configuration epoch (0 when unreadable).
    pub config_epoch: u64,
    /// Whether the answering node's cluster-bus link to it is `connected`.
    pub link_connected: bool,
    /// The slot ranges it serves, in reply order.
    pub slots: Vec<SlotRange>,
    /// Slots moving in or out of it (`[slot->-id]`, `[slot-<-id]`); the answering node prints these
    /// only for itself. The slots still belong to [`ClusterNode::slots`] until the move ends.
    pub migrations: Vec<SlotMigration>,
}

/// A slot being moved, as `CLUSTER NODES` prints it in brackets.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SlotMigration {
    /// The slot.
    pub slot: u16,
    /// Whether it leaves or arrives.
    pub direction: MigrationDirection,
    /// The node ID at the other end.
    pub peer_id: String,
}

/// Which way a slot moves, from the listed node's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MigrationDirection {
    /// `[slot->-id]`: the listed node is sending the slot to `id` (`SETSLOT MIGRATING`).
    Migrating,
    /// `[slot-<-id]`: the listed node is receiving the slot from `id` (`SETSLOT IMPORTING`).
    Importing,
}

impl ClusterNode {
    /// Whether the line has `flag`.
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    /// Whether the node is a primary.
    pub fn is_primary(&self) -> bool {
        self.role == Role::Primary
    }

    /// Whether the answering node flags it failing: `fail?` (PFAIL) or `fail`.
    pub fn is_failing(&self) -> bool {
        self.has_flag("fail") || self.has_flag("fail?")
    }

    /// Number of slots served.
    pub fn slot_count(&self) -> usize {
        self.slots.iter().map(|r| r.len()).sum()
    }
}

/// Parses a `CLUSTER NODES` reply into one entry per line, in reply order.
///
/// A line with fewer than the 8 fixed fields, or a slot range that is not one, is an error naming the
/// line. Fields that only inform (ping times, the epoch, migration markers) read leniently.
///
/// ```
/// let nodes = replies::parse_cluster_nodes(
///     "07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected\n\
///      e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460\n",
/// )?;
/// assert_eq!(nodes[1].slots, vec![sharding::SlotRange::new(0, 5460)?]);
/// assert_eq!(nodes[0].primary_id.as_deref(), Some(nodes[1].id.as_str()));
/// assert_eq!(nodes[0].role, replies::Role::Replica);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn parse_cluster_nodes(text: &str) -> Result<Vec<ClusterNode>, Error> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Result<ClusterNode, Error> {
    let words: Vec<&str> = line.split_whitespace().collect();
    if words.len() < 8 {
        return Err(Error::cluster_nodes(
            line,
            format!("{} fields instead of at least 8", words.len()),
        ));
    }
    // `ip:port@cport[,hostname]`; a node without a known address prints `:0@0`.
    let (addr, rest) = words[1].split_once('@').unwrap_or((words[1], ""));
    let hostname = rest
        .split_once(',')
        .map(|(_, name)| name.to_owned())
        .filter(|name| !name.is_empty());
    let addr_text = addr.split(',').next().unwrap_or_default();
    let port = NodeAddr::announced_port(addr_text);
    let addr = NodeAddr::parse_announced(addr_text);
    let flags: Vec<String> = words[2]
        .split(',')
        .filter(|flag| !matches!(*flag, "noflags" | ""))
        .map(str::to_owned)
        .collect();
    let primary_id = (words[3] != "-").then(|| words[3].to_owned());
    let role = flags
        .iter()
        .find_map(|flag| match flag.as_str() {
            "master" => Some(Role::Primary),
            "slave" => Some(Role::Replica),
            _ => None,
        })
        .unwrap_or(if primary_id.is_some() {
            Role::Replica
        } else {
            Role::Primary
        });
    let mut slots = Vec::new();
    let mut migrations = Vec::new();
    for word in &words[8..] {
        if let Some(marker) = word.strip_prefix('[') {
            // Informational: a marker that does not read is left out rather than failing the reply.
            migrations.extend(migration(marker));
            continue;
        }
        let (first, last) = word.split_once('-').unwrap_or((word, word));
        let range = match (first.parse::<u16>(), last.parse::<u16>()) {
            (Ok(first), Ok(last)) => SlotRange::new(first, last).ok(),
            _ => None,
        };
        match range {
            Some(range) => slots.push(range),
            None => {
                return Err(Error::cluster_nodes(
                    line,
                    format!("unreadable slot range {word:?} (slots are 0 to 16383, first-last)"),
                ));
            }
        }
    }
    Ok(ClusterNode {
        id: words[0].to_owned(),
        addr,
        port,
        hostname,
        flags,
        role,
        primary_id,
        config_epoch: words[6].parse().unwrap_or(0),
        link_connected: words[7] == "connected",
        slots,
        migrations,
    })
}

/// `slot->-id]` or `slot-<-id]`.
fn migration(marker: &str) -> Option<SlotMigration> {
    let marker = marker.strip_suffix(']')?;
    let (slot, direction, peer) = if let Some((slot, peer)) = marker.split_once("->-") {
        (slot, MigrationDirection::Migrating, peer)
    } else {
        let (slot, peer) = marker.split_once("-<-")?;
        (slot, MigrationDirection::Importing, peer)
    };
    let slot = slot.parse::<u16>().ok().filter(|s| *s < sharding::SLOT_COUNT)?;
    Some(SlotMigration {
        slot,
        direction,
        peer_id: peer.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODES: &str = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,host-4 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 master,fail? - 0 1426238316232 2 disconnected 5461-10922 [10923->-292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f]
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@31003 master - 0 1426238318243 3 connected 10923-16382 16383 [5-<-67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1] [bad
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca ::1:30001@31001 myself,master - 0 0 1 connected 0-5460
6ec23923021cf3ffec47632106199cb7f496ce01 :0@0 slave,fail,noaddr 67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 0 1426238316232 5 disconnected
";

    fn range(first: u16, last: u16) -> SlotRange {
        SlotRange::new(first, last).expect("a slot range")
    }

    #[test]
    fn a_real_reply_parses_roles_flags_links_and_slots() {
        let nodes = parse_cluster_nodes(NODES).expect("a real reply parses");
        type Line = (Option<String>, Role, Vec<String>, bool, Vec<SlotRange>, u64);
        let summary: Vec<Line> = nodes
            .iter()
            .map(|n| {
                (
                    n.addr.as_ref().map(ToString::to_string),
                    n.role,
                    n.flags.clone(),
                    n.link_connected,
                    n.slots.clone(),
                    n.config_epoch,
                )
            })
            .collect();
        let s = |v: &[&str]| v.iter().map(|f| f.to_string()).collect::<Vec<_>>();
        assert_eq!(
            summary,
            vec![
                (
                    Some("127.0.0.1:30004".into()),
                    Role::Replica,
                    s(&["slave"]),
                    true,
                    vec![],
                    4
                ),
                (
                    Some("127.0.0.1:30002".into()),
                    Role::Primary,
                    s(&["master", "fail?"]),
                    false,
                    vec![range(5461, 10922)],
                    2
                ),
                (
                    Some("127.0.0.1:30003".into()),
                    Role::Primary,
                    s(&["master"]),
                    true,
                    vec![range(10923, 16382), range(16383, 16383)],
                    3
                ),
                (
                    Some("[::1]:30001".into()),
                    Role::Primary,
                    s(&["myself", "master"]),
                    true,
                    vec![range(0, 5460)],
                    1
                ),
                (
                    None,
                    Role::Replica,
                    s(&["slave", "fail", "noaddr"]),
                    false,
                    vec![],
                    5
                ),
            ]
        );
        assert_eq!(nodes[0].hostname.as_deref(), Some("host-4"));
        assert_eq!((nodes[0].port, nodes[4].port), (Some(30004), None));
        let alone = parse_cluster_nodes("aa :7000@17000 myself,master - 0 0 0 connected\n").expect("parses");
        assert_eq!(
            (alone[0].addr.clone(), alone[0].port),
            (None, Some(7000)),
            "a node that met no other node does not know its IP yet"
        );
        assert_eq!(nodes[1].hostname, None);
        assert_eq!(
            nodes[0].primary_id.as_deref(),
            Some("e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca")
        );
        assert_eq!(
            nodes[1].migrations,
            [SlotMigration {
                slot: 10923,
                direction: MigrationDirection::Migrating,
                peer_id: "292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f".into()
            }]
        );
        assert_eq!(
            nodes[2].migrations,
            [SlotMigration {
                slot: 5,
                direction: MigrationDirection::Importing,
                peer_id: "67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1".into()
            }],
            "an unreadable marker is left out"
        );
        assert_eq!(nodes[2].slot_count(), 5461);
        assert!(nodes[1].is_failing() && nodes[4].is_failing() && !nodes[0].is_failing());
        assert!(nodes[3].has_flag("myself") && nodes[3].is_primary());
    }

    #[test]
    fn a_role_without_its_flag_follows_the_primary_id() {
        let nodes = parse_cluster_nodes(
            "a 127.0.0.1:1@2 handshake b 0 0 0 connected\nb 127.0.0.1:2@3 noflags - 0 0 0 connected\n",
        )
        .expect("parses");
        assert_eq!((nodes[0].role, nodes[1].role), (Role::Replica, Role::Primary));
        assert!(nodes[1].flags.is_empty());
    }

    #[test]
    fn malformed_lines_are_errors_that_quote_the_line() {
        for bad in [
            "abc 127.0.0.1:1@2 master",
            "id 127.0.0.1:1@2 master - 0 0 1 connected 5-2",
            "id a:1 master - 0 0 1 connected 99999",
            "id a:1 master - 0 0 1 connected 16384",
            "id a:1 master - 0 0 1 connected x-1",
        ] {
            let error = parse_cluster_nodes(bad).expect_err(bad).to_string();
            assert!(
                error.contains("CLUSTER NODES") && error.contains(&bad[..5]),
                "{error}"
            );
        }
        assert_eq!(parse_cluster_nodes("").expect("empty parses"), Vec::new());
        assert_eq!(parse_cluster_nodes(" \n\r\n").expect("blank parses"), Vec::new());
    }
}
