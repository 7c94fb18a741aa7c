//! Shard-aware, parallel, priority-ordered cache warming with validation and rollback, including migration from a standalone Redis.
//!
//! This crate is being built; see `docs/ARCHITECTURE.md` for its place in the workspace.
#![warn(missing_docs, unreachable_pub)]
