//! `CLUSTER NODES` parsing: who is primary of which slots, who replicates whom.

use crate::Error;

/// One line of `CLUSTER NODES`, as one node sees the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEntry {
    /// The node's cluster ID.
    pub id: String,
    /// The client port.
    pub port: u16,
    /// Flags such as `myself`, `master`, `slave`, `fail?`, `fail`, `handshake`, `noaddr`.
    pub flags: Vec<String>,
    /// The primary's ID for a replica.
    pub primary_id: Option<String>,
    /// Whether the cluster bus link is `connected`.
    pub connected: bool,
    /// Slot ranges served (inclusive), for a primary.
    pub slots: Vec<(u16, u16)>,
}

impl NodeEntry {
    /// Whether the entry has the given flag.
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    /// Whether the node is a primary (`master` flag).
    pub fn is_primary(&self) -> bool {
        self.has_flag("master")
    }

    /// Whether the node is marked failing (`fail` or `fail?`).
    pub fn is_failing(&self) -> bool {
        self.has_flag("fail") || self.has_flag("fail?")
    }

    /// Number of slots served.
    pub fn slot_count(&self) -> usize {
        self.slots.iter().map(|(a, b)| (*b - *a) as usize + 1).sum()
    }
}

/// Parses the text reply of `CLUSTER NODES`.
pub fn parse_cluster_nodes(text: &str) -> Result<Vec<NodeEntry>, Error> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Result<NodeEntry, Error> {
    let bad = |detail: &str| Error::Reply {
        addr: String::new(),
        command: "CLUSTER NODES".into(),
        detail: format!("{detail} in line `{line}`"),
    };
    let words: Vec<&str> = line.split_whitespace().collect();
    if words.len() < 8 {
        return Err(bad("fewer than 8 fields"));
    }
    // `ip:port@cport[,hostname]`; the port of a node that is not yet known can be 0.
    let addr = words[1].split(['@', ',']).next().unwrap_or_default();
    let port = addr
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| bad("no port"))?;
    let mut slots = Vec::new();
    for word in &words[8..] {
        if word.starts_with('[') {
            // A migrating/importing marker, not an owned range.
            continue;
        }
        let (a, b) = word.split_once('-').unwrap_or((word, word));
        let a: u16 = a.parse().map_err(|_| bad("bad slot"))?;
        let b: u16 = b.parse().map_err(|_| bad("bad slot"))?;
        slots.push((a, b));
    }
    Ok(NodeEntry {
        id: words[0].to_string(),
        port,
        flags: words[2].split(',').map(str::to_string).collect(),
        primary_id: (words[3] != "-").then(|| words[3].to_string()),
        connected: words[7] == "connected",
        slots,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_real_lines() {
        let text = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,host slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460 7000 [5461->-abc]
6ec23923021cf3ffec47632106199cb7f496ce01 :0@0 master,fail?,noaddr - 1 2 3 disconnected
";
        let nodes = parse_cluster_nodes(text).unwrap();
        assert_eq!(nodes.len(), 3);
        assert_eq!(nodes[0].port, 30004);
        assert_eq!(
            nodes[0].primary_id.as_deref(),
            Some("e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca")
        );
        assert!(!nodes[0].is_primary());
        assert_eq!(nodes[1].slots, vec![(0, 5460), (7000, 7000)]);
        assert_eq!(nodes[1].slot_count(), 5462);
        assert!(nodes[1].has_flag("myself"));
        assert!(nodes[2].is_failing() && !nodes[2].connected && nodes[2].port == 0);
        assert!(parse_cluster_nodes("abc 1.2.3.4:5 master").is_err());
    }
}
