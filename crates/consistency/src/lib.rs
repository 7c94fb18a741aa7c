//! Versioned last-write-wins writes decided on the server, failover write-loss repair, and audits across replicas and deployments.
//!
//! This crate is being built; see `docs/ARCHITECTURE.md` for its place in the workspace.
#![warn(missing_docs, unreachable_pub)]
