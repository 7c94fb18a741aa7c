//! The one way bytes reach Redis: per-node fred clients with our own slot routing, redirects and failure isolation, for Redis Cluster, one standalone node, or client-side sharding over standalone nodes.
//!
//! This crate is being built; see `docs/ARCHITECTURE.md` for its place in the workspace.
#![warn(missing_docs, unreachable_pub)]
