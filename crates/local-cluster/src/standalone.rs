//! Independent standalone Redis nodes (no cluster mode).

use crate::node::Node;
use crate::server::NodeConfig;
use crate::{Error, Role};

/// `n` independent standalone `redis-server` processes, for standalone and client-sharded modes.
///
/// Dropping it kills every process (by PID).
#[derive(Debug)]
pub struct LocalStandalone {
    nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

impl LocalStandalone {
    /// Starts `n` standalone nodes with the test settings.
    pub async fn start(n: usize) -> Result<LocalStandalone, Error> {
        Self::start_with(n, NodeConfig::test_defaults()).await
    }

    /// Starts `n` standalone nodes with the given `redis.conf` directives.
    pub async fn start_with(n: usize, settings: NodeConfig) -> Result<LocalStandalone, Error> {
        if n == 0 {
            return Err(Error::Invalid("start at least one standalone node".into()));
        }
        let dir = tempfile::Builder::new()
            .prefix("local-standalone-")
            .tempdir()
            .map_err(|e| Error::io("creating a temporary directory", e))?;
        let mut nodes = Vec::with_capacity(n);
        for index in 0..n {
            let node_dir = dir.path().join(format!("node-{index}"));
            // On error, `nodes` drops and each started node is killed.
            nodes.push(Node::start(node_dir, &settings, false, Role::Primary, false, None).await?);
        }
        Ok(LocalStandalone { nodes, _dir: dir })
    }

    /// The nodes, in start order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// `host:port` of every node.
    pub fn addrs(&self) -> Vec<String> {
        self.nodes.iter().map(Node::addr).collect()
    }
}

impl Drop for LocalStandalone {
    fn drop(&mut self) {
        for node in &self.nodes {
            node.stop();
        }
    }
}
