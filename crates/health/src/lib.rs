//! Cluster metrics, anomaly detection, alerts, 24-hour trends and a Prometheus endpoint.
//!
//! This crate is being built; see `docs/ARCHITECTURE.md` for its place in the workspace.
#![warn(missing_docs, unreachable_pub)]
