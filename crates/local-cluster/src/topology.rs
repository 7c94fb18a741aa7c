//! Reading `CLUSTER NODES` entries the way this crate locates nodes: by client port, since every node
//! here listens on 127.0.0.1.

use replies::ClusterNode;

/// The client port of an entry, also for a node that does not know its own IP yet (`:port`, before it
/// met another node); 0 while the answering node does not know the port (`:0@0`), which matches no
/// node of ours.
pub(crate) fn port(entry: &ClusterNode) -> u16 {
    entry.port.unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_located_by_port() {
        let text = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,host slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
6ec23923021cf3ffec47632106199cb7f496ce01 :0@0 master,fail?,noaddr - 1 2 3 disconnected
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca :30001@31001 myself,master - 0 0 0 connected
";
        let nodes = replies::parse_cluster_nodes(text).unwrap();
        assert_eq!(port(&nodes[0]), 30004);
        assert_eq!(port(&nodes[1]), 0, "a node without a known address");
        assert!(nodes[1].is_failing() && !nodes[1].link_connected);
        assert_eq!(port(&nodes[2]), 30001, "a lone node prints no IP for itself");
    }
}
