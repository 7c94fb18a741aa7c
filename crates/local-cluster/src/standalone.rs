//! Independent standalone Redis nodes (no cluster mode).

use std::sync::Arc;

use crate::node::Node;
use crate::server::NodeConfig;
use crate::tls::{TlsClientAuth, TlsFiles};
use crate::{Error, Role};

/// `n` independent standalone `redis-server` processes, for standalone and client-sharded modes.
///
/// Dropping it kills every process (by PID).
#[derive(Debug)]
pub struct LocalStandalone {
    nodes: Vec<Node>,
    tls: Option<Arc<TlsFiles>>,
    _dir: tempfile::TempDir,
}

impl LocalStandalone {
    /// Starts `n` standalone nodes with the test settings.
    pub async fn start(n: usize) -> Result<LocalStandalone, Error> {
        Self::start_with(n, NodeConfig::test_defaults()).await
    }

    /// Starts `n` standalone nodes with the given `redis.conf` directives.
    pub async fn start_with(n: usize, settings: NodeConfig) -> Result<LocalStandalone, Error> {
        Self::start_inner(n, settings, None).await
    }

    /// Starts `n` standalone TLS-only nodes with the test settings and certificates generated in their
    /// directory (see [`LocalStandalone::tls`] and [`LocalStandalone::config_builder`]).
    pub async fn start_tls(n: usize, client_auth: TlsClientAuth) -> Result<LocalStandalone, Error> {
        Self::start_inner(n, NodeConfig::test_defaults(), Some(client_auth)).await
    }

    async fn start_inner(
        n: usize,
        settings: NodeConfig,
        tls: Option<TlsClientAuth>,
    ) -> Result<LocalStandalone, Error> {
        if n == 0 {
            return Err(Error::Invalid("start at least one standalone node".into()));
        }
        let dir = tempfile::Builder::new()
            .prefix("local-standalone-")
            .tempdir()
            .map_err(|e| Error::io("creating a temporary directory", e))?;
        let tls = match tls {
            Some(auth) => Some(Arc::new(TlsFiles::generate(&dir.path().join("tls"), auth)?)),
            None => None,
        };
        let mut nodes = Vec::with_capacity(n);
        for index in 0..n {
            let node_dir = dir.path().join(format!("node-{index}"));
            // On error, `nodes` drops and each started node is killed.
            let node = Node::start(
                node_dir,
                &settings,
                false,
                Role::Primary,
                false,
                None,
                tls.clone(),
            )
            .await?;
            nodes.push(node);
        }
        Ok(LocalStandalone {
            nodes,
            tls,
            _dir: dir,
        })
    }

    /// The nodes, in start order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// `host:port` of every node.
    pub fn addrs(&self) -> Vec<String> {
        self.nodes.iter().map(Node::addr).collect()
    }

    /// The certificates of TLS nodes; `None` for plain ones.
    pub fn tls(&self) -> Option<&TlsFiles> {
        self.tls.as_deref()
    }

    /// A configuration builder listing every node (`rediss://` for TLS nodes, with the CA and the
    /// client certificate and key). The environment is not read.
    pub fn config_builder(&self) -> cluster_config::ClusterConfigBuilder {
        let scheme = if self.tls.is_some() { "rediss://" } else { "" };
        let nodes: Vec<String> = self.addrs().iter().map(|a| format!("{scheme}{a}")).collect();
        let builder = cluster_config::ClusterConfig::builder().nodes(nodes);
        match &self.tls {
            Some(tls) => tls.configure(builder),
            None => builder,
        }
    }
}

impl Drop for LocalStandalone {
    fn drop(&mut self) {
        for node in &self.nodes {
            node.stop();
        }
    }
}
