//! Criterion benchmarks for the workspace; see `benches/`.
