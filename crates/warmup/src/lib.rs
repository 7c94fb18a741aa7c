#![doc = include_str!("../README.md")]
#![warn(missing_docs, unreachable_pub)]

mod config;
mod digest;
mod entry;
mod error;
mod plan;
mod progress;
mod report;
mod run;
mod script;
mod source;
mod telemetry;
mod undo;
mod validate;
mod write;

pub use crate::{
    config::{ValidationConfig, WarmupConfig},
    entry::{Entry, Payload, Priority},
    error::Error,
    progress::{Phase, Progress},
    report::{
        BadEntry, KeyFailure, Rejected, Report, RollbackReport, ShardAck, ShardCounts, UndoReport,
        ValidationProblem, ValidationReport,
    },
    run::Warmup,
    source::{RedisSource, Source},
    telemetry::{
        ENTRIES_METRIC, METRICS, PHASE_METRIC, UNDO_BYTES_METRIC, WRITTEN_BYTES_METRIC, describe_metrics,
    },
};
