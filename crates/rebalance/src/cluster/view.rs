//! The live topology as the nodes themselves tell it (`CLUSTER NODES`), and the admin command helpers
//! every other room uses.

use std::collections::HashMap;
use std::time::Duration;

use cluster_client::{Admin, ClusterClient, Deployment, FromValue, Value};
use futures::future::join_all;
use replies::{ClusterNode, SlotMigration};
use sharding::{SlotRange, SlotTable};

use crate::Error;

/// Admin commands with one timeout.
#[derive(Clone, Copy)]
pub(crate) struct Ops<'a> {
    pub(crate) admin: &'a Admin,
    pub(crate) timeout: Duration,
}

impl Ops<'_> {
    /// One command of words on `node`.
    pub(crate) async fn words<R: FromValue>(&self, node: &str, words: &[&str]) -> Result<R, Error> {
        let args = words.iter().map(|w| Value::from(*w)).collect();
        Ok(self.admin.command(node, args, self.timeout).await?)
    }

    /// One command of arbitrary arguments on `node`.
    pub(crate) async fn args<R: FromValue>(&self, node: &str, args: Vec<Value>) -> Result<R, Error> {
        Ok(self.admin.command(node, args, self.timeout).await?)
    }

    /// `CLUSTER NODES` of `node`, parsed.
    pub(crate) async fn cluster_nodes(&self, node: &str) -> Result<Vec<ClusterNode>, Error> {
        let text: String = self.words(node, &["CLUSTER", "NODES"]).await?;
        replies::parse_cluster_nodes(&text).map_err(|e| Error::Reply {
            node: node.into(),
            command: "CLUSTER NODES".into(),
            detail: e.to_string(),
        })
    }

    /// `INFO section` of `node`, parsed.
    pub(crate) async fn info(&self, node: &str, section: &str) -> Result<replies::Info, Error> {
        let text: String = self.words(node, &["INFO", section]).await?;
        Ok(replies::Info::parse(&text))
    }
}

/// The address of a `CLUSTER NODES` line, in cluster-client's spelling (`host:port`); `fallback` is
/// the address the line came from, for a `myself` line that does not know its own ip yet.
pub(crate) fn addr_of(node: &ClusterNode, fallback: Option<&str>) -> Option<String> {
    match (&node.addr, fallback) {
        (Some(addr), _) => Some(addr.to_string()),
        (None, Some(fallback)) if node.has_flag("myself") => Some(fallback.to_string()),
        _ => None,
    }
}

/// One node of the cluster, as the reference node lists it.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub(crate) addr: String,
    pub(crate) line: ClusterNode,
}

/// The cluster as its primaries describe it at one moment.
#[derive(Debug, Clone)]
pub(crate) struct View {
    /// Every node the reference primary knows (failing and handshaking ones left out).
    pub(crate) members: Vec<Member>,
    /// Each primary's own line (`myself`), by address: its slots, epoch and migration markers.
    pub(crate) own: HashMap<String, ClusterNode>,
}

impl View {
    /// Reads `CLUSTER NODES` from one primary the client knows (the first that answers), then from
    /// every primary that one lists, concurrently.
    pub(crate) async fn load(client: &ClusterClient, ops: Ops<'_>) -> Result<View, Error> {
        let topology = client.topology();
        if topology.deployment() != Deployment::Cluster {
            return Err(Error::NotACluster {
                deployment: format!("{:?}", topology.deployment()).to_lowercase(),
            });
        }
        let mut candidates: Vec<String> = topology.shards().iter().map(|s| s.primary.clone()).collect();
        candidates.extend(topology.nodes().map(str::to_string));
        candidates.extend(client.config().nodes().iter().map(|n| n.to_string()));
        let mut last = None;
        let mut reference = None;
        for candidate in &candidates {
            match ops.cluster_nodes(candidate).await {
                Ok(lines) => {
                    reference = Some((candidate.clone(), lines));
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let Some((reference_addr, lines)) = reference else {
            return Err(last.unwrap_or_else(|| Error::Inconsistent("the client knows no node".into())));
        };
        let members: Vec<Member> = lines
            .into_iter()
            .filter(|line| !line.has_flag("fail") && !line.has_flag("handshake") && !line.has_flag("noaddr"))
            .filter_map(|line| {
                let addr = addr_of(&line, Some(&reference_addr))?;
                Some(Member { addr, line })
            })
            .collect();
        let primaries: Vec<String> = members
            .iter()
            .filter(|m| m.line.is_primary())
            .map(|m| m.addr.clone())
            .collect();
        let answers = join_all(primaries.iter().map(|p| ops.cluster_nodes(p))).await;
        let mut own = HashMap::new();
        for (primary, answer) in primaries.iter().zip(answers) {
            let lines = answer?;
            let mine = lines
                .into_iter()
                .find(|line| line.has_flag("myself"))
                .ok_or_else(|| Error::Reply {
                    node: primary.clone(),
                    command: "CLUSTER NODES".into(),
                    detail: "no `myself` line".into(),
                })?;
            // A node's own line is the truth about its role: the reference node may not have heard
            // yet that a node it lists as a primary became a replica.
            if mine.is_primary() {
                own.insert(primary.clone(), mine);
            }
        }
        Ok(View { members, own })
    }

    /// The primaries, by address, sorted.
    pub(crate) fn primaries(&self) -> Vec<String> {
        let mut primaries: Vec<String> = self.own.keys().cloned().collect();
        primaries.sort();
        primaries
    }

    /// The member at `addr`.
    pub(crate) fn member(&self, addr: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.addr == addr)
    }

    /// The node id of `addr`.
    pub(crate) fn id_of(&self, addr: &str) -> Option<&str> {
        self.own
            .get(addr)
            .map(|line| line.id.as_str())
            .or_else(|| self.member(addr).map(|m| m.line.id.as_str()))
    }

    /// The address of node `id`.
    pub(crate) fn addr_of_id(&self, id: &str) -> Option<&str> {
        self.members
            .iter()
            .find(|m| m.line.id == id)
            .map(|m| m.addr.as_str())
    }

    /// Replicas of the primary at `addr`, by address.
    pub(crate) fn replicas_of(&self, addr: &str) -> Vec<String> {
        let Some(id) = self.id_of(addr) else {
            return Vec::new();
        };
        self.members
            .iter()
            .filter(|m| !m.line.is_primary() && m.line.primary_id.as_deref() == Some(id))
            .map(|m| m.addr.clone())
            .collect()
    }

    /// Who owns each slot, by each primary's own claim; two claims of one slot (the moment between
    /// `SETSLOT NODE` on a target and on its source) go to the higher configuration epoch, as Redis
    /// decides.
    pub(crate) fn slot_table(&self) -> Result<SlotTable, Error> {
        let mut claims: Vec<(&String, &ClusterNode)> = self.own.iter().collect();
        // Lower epochs first, so that a higher epoch's claim overwrites.
        claims.sort_by(|a, b| a.1.config_epoch.cmp(&b.1.config_epoch).then(a.0.cmp(b.0)));
        let mut table = SlotTable::empty();
        for (addr, line) in claims {
            for &range in &line.slots {
                table.assign(range, addr)?;
            }
        }
        Ok(table)
    }

    /// Every open migration, as `(primary, marker)`.
    pub(crate) fn migrations(&self) -> Vec<(String, SlotMigration)> {
        let mut open: Vec<(String, SlotMigration)> = self
            .own
            .iter()
            .flat_map(|(addr, line)| line.migrations.iter().map(|m| (addr.clone(), m.clone())))
            .collect();
        open.sort_by(|a, b| (a.1.slot, &a.0).cmp(&(b.1.slot, &b.0)));
        open
    }

    /// Whether `addr` owns `slot` by its own claim.
    pub(crate) fn claims(&self, addr: &str, slot: u16) -> bool {
        self.own
            .get(addr)
            .is_some_and(|line| line.slots.iter().any(|r: &SlotRange| r.contains(slot)))
    }
}
