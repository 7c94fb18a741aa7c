//! The typed cache API that wires configuration, the cluster client, consistency, warm-up and health together.
//!
//! This crate is being built; see `docs/ARCHITECTURE.md` for its place in the workspace.
#![warn(missing_docs, unreachable_pub)]
