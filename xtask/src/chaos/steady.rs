//! The steady drill: no fault for minutes. Nothing may fail, no failover may happen, and once the load
//! stops and replication catches up, every primary and its replica hold the same data (`DEBUG DIGEST`).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cache_facade::CacheConfig;
use cluster_client::ClientEvent;
use local_cluster::{LocalCluster, Node};

use super::drills::{error_notes, info_each, no_failed_calls};
use super::report::{DrillReport, Figure};
use super::stage::{Stage, current_epoch, rss_bytes, spinner};
use super::traffic::{Mix, Tally};

/// How long replicas may take to catch up once the load stops.
const CATCH_UP: Duration = Duration::from_secs(15);

pub(super) async fn steady(rate: u32, minutes: u64) -> Result<DrillReport> {
    let stage = Stage::start(rate, CacheConfig::default()).await?;
    let epoch_before = current_epoch(&stage.cluster).await?;
    let mut events = stage.clients.raw().subscribe();
    let rss_start = rss_bytes();
    let load = stage.load(Mix::SetGet);
    load.hold(
        &format!("steady load for {minutes} min"),
        Duration::from_secs(minutes * 60),
    )
    .await;
    let t = load.stop().await;
    let rss_end = rss_bytes();
    let epoch_after = current_epoch(&stage.cluster).await?;
    let mut failovers = 0;
    while let Ok(event) = events.try_recv() {
        if matches!(event, ClientEvent::FailoverObserved { .. }) {
            failovers += 1;
        }
    }
    let comparing = spinner("waiting for replicas to catch up, then comparing digests");
    let digests = compare_digests(&stage.cluster).await;
    comparing.finish_and_clear();
    let (equal, shards, differing) = digests?;
    stage.close().await;

    let mut report = DrillReport::new("steady");
    let f = &mut report.figures;
    f.push(Figure::info("minutes of load", minutes, minutes, minutes));
    f.push(info_each("calls completed", &t, |tally| tally.ok().to_string()));
    f.push(no_failed_calls(&t));
    f.push(info_each("latency p50 / p99 / p99.9", &t, |tally| {
        format!(
            "{} / {} / {} µs",
            tally.quantile_us(0.5),
            tally.quantile_us(0.99),
            tally.quantile_us(0.999)
        )
    }));
    f.push(info_each("longest call", &t, |tally| {
        format!("{} ms", tally.longest_us() / 1000)
    }));
    f.push(info_each("fewest calls in one second", &t, |tally: &Tally| {
        tally.slowest_second().map_or("-".into(), |n| n.to_string())
    }));
    f.push(Figure::target(
        "cluster_current_epoch before → after",
        format!("{epoch_before} → {epoch_after}"),
        "(same cluster)",
        "(same cluster)",
        "unchanged",
        epoch_before == epoch_after,
    ));
    f.push(Figure::info("failovers seen by the client", failovers, "-", "-"));
    f.push(Figure::target(
        "shards whose primary and replica digests are equal",
        format!("{equal} of {shards}"),
        "(same cluster)",
        "(same cluster)",
        "all",
        equal == shards && shards > 0,
    ));
    f.push(Figure::info(
        "process memory at start → end (all three clients)",
        format!(
            "{:.1} → {:.1} MB",
            rss_start as f64 / 1_048_576.0,
            rss_end as f64 / 1_048_576.0
        ),
        "(same process)",
        "(same process)",
    ));
    for shard in differing {
        report.notes.push(format!("digests differ: {shard}"));
    }
    error_notes(&mut report, &t);
    Ok(report)
}

/// For every primary: waits until its replica has applied everything, then compares `DEBUG DIGEST`.
/// Returns (equal shards, shards, descriptions of the differing ones).
async fn compare_digests(cluster: &LocalCluster) -> Result<(usize, usize, Vec<String>)> {
    let primaries = cluster.primaries().await?;
    let mut equal = 0;
    let mut differing = Vec::new();
    for primary in &primaries {
        let replica = *cluster
            .replicas_of(primary)
            .await?
            .first()
            .with_context(|| format!("{} has no replica", primary.addr()))?;
        wait_caught_up(primary, replica).await?;
        let mine: String = primary.command(["DEBUG", "DIGEST"]).await?;
        let theirs: String = replica.command(["DEBUG", "DIGEST"]).await?;
        if mine == theirs {
            equal += 1;
        } else {
            differing.push(format!(
                "{} {mine} vs replica {} {theirs}",
                primary.addr(),
                replica.addr()
            ));
        }
    }
    Ok((equal, primaries.len(), differing))
}

/// Waits until `replica` has processed its primary's whole replication stream.
async fn wait_caught_up(primary: &Node, replica: &Node) -> Result<()> {
    let until = Instant::now() + CATCH_UP;
    loop {
        let wanted = primary
            .info("replication")
            .await?
            .master_repl_offset
            .context("the primary reports no master_repl_offset")?;
        let applied = replica
            .info("replication")
            .await?
            .replication_offset()
            .context("the replica reports no replication offset")?;
        if applied >= wanted {
            return Ok(());
        }
        if Instant::now() >= until {
            bail!(
                "replica {} is at offset {applied}, its primary {} at {wanted}, after {CATCH_UP:?}",
                replica.addr(),
                primary.addr()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
