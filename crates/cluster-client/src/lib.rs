#![doc = include_str!("../README.md")]
#![warn(missing_docs, unreachable_pub)]

mod batch;
mod bulk;
mod client;
mod durations;
mod error;
mod events;
mod fred_config;
mod lane;
mod node;
mod probe;
mod recent;
mod script;
mod telemetry;
#[cfg(feature = "tls")]
mod tls;
mod topology;
mod tracking;
mod value;
mod wait;

pub use bytes::Bytes;
pub use sharding::SlotRange;

pub use crate::{
    batch::GroupReply,
    client::{
        Admin, CallOptions, ClusterClient, MigrateReply, ReadFrom, Reshard, ReshardMove, SetCondition,
        SetOptions, Ttl,
    },
    durations::{MAX_TIMEOUT, MAX_TTL, MIN_TIMEOUT},
    error::{Error, printable_key},
    events::ClientEvent,
    node::{LANE_DEPTH, NodeStats},
    probe::{ClusterView, NodeProbe, NodeProber},
    script::Script,
    telemetry::{
        COMMAND_DURATION_METRIC, COMMANDS_METRIC, DURATION_BUCKETS_SECONDS, ERRORS_METRIC, METRICS,
        RECENT_WRITES_BYTES_METRIC, REDIRECTS_METRIC, describe_metrics,
    },
    topology::{Deployment, ShardInfo, Topology},
    tracking::{HEARTBEAT, InvalidationSink, TrackToken, TrackedGet, Tracking, TrackingMode},
    value::{FromValue, Value},
    wait::WaitOutcome,
};
