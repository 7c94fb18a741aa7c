//! The fault drills. Each starts its own cluster ([`Stage::start`]), runs the three loads, injects one
//! fault through local-cluster, keeps the loads going past the recovery, and turns the tallies into
//! figures: targets for our client, fred's and redis-rs's figures beside them as the baselines.

use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use cache_facade::{CacheConfig, CallOptions, ReadFrom};
use cluster_client::ClientEvent;
use consistency::Failover;
use local_cluster::{FailoverKind, Role};

use super::report::{DrillReport, Figure};
use super::stage::{Stage, current_epoch, rss_bytes, spinner, wait_for_role};
use super::traffic::{COMMAND_TIMEOUT, Mix, Peers, Tallies, Tally};
use super::write_loss::{self, LossWriters};

/// Load before a fault, so that every client is warm and every shard has traffic.
const WARM: Duration = Duration::from_secs(3);
/// Load after a fault has passed.
const AFTER: Duration = Duration::from_secs(3);
/// Scheduling slack on top of the command timeout: two cores run six servers and three loads.
const SLACK: Duration = Duration::from_millis(300);
/// How long a drill waits for a promotion.
const PROMOTION_TIMEOUT: Duration = Duration::from_secs(30);
/// A client counts as recovered after this long without a failed call.
const QUIET: Duration = Duration::from_secs(2);
/// How long a drill waits for every client to recover (fred's cluster client may take many seconds).
const RECOVERY_MAX: Duration = Duration::from_secs(20);

fn micros(d: Duration) -> u64 {
    d.as_micros() as u64
}

/// `1234 ms`.
fn ms(us: u64) -> String {
    format!("{} ms", (us + 500) / 1000)
}

/// Milliseconds from `from` to `to` (both µs since the drill started), or "never".
fn ms_after(to: Option<u64>, from: u64) -> String {
    match to {
        Some(to) => {
            let delta = to as i64 - from as i64;
            let rounded = (delta.abs() + 500) / 1000;
            if delta < 0 {
                format!("-{rounded} ms")
            } else {
                format!("{rounded} ms")
            }
        }
        None => "never".into(),
    }
}

/// Whether `to - from` exists and is at most `bound`.
fn within(to: Option<u64>, from: u64, bound: Duration) -> bool {
    to.is_some_and(|to| to <= from + micros(bound))
}

fn calls(tally: &Tally) -> String {
    format!("{} ok, {} failed", tally.ok(), tally.failed())
}

/// A figure shown for information, each load's value read from its tally by `value`.
pub(super) fn info_each(name: &str, tallies: &Tallies, value: impl Fn(&Tally) -> String) -> Figure {
    Figure::info(
        name,
        value(&tallies.ours),
        value(&tallies.fred),
        value(&tallies.redis_rs),
    )
}

/// A figure with a target for ours, each load's value read from its tally by `value`.
pub(super) fn target_each(
    name: &str,
    tallies: &Tallies,
    value: impl Fn(&Tally) -> String,
    target: &str,
    pass: bool,
) -> Figure {
    Figure::target(
        name,
        value(&tallies.ours),
        value(&tallies.fred),
        value(&tallies.redis_rs),
        target,
        pass,
    )
}

/// The target of drills that must surface no error at all.
pub(super) fn no_failed_calls(t: &Tallies) -> Figure {
    target_each(
        "failed calls",
        t,
        |tally| tally.failed().to_string(),
        "0",
        t.ours.failed() == 0,
    )
}

/// The longest call, against the command timeout plus scheduling slack.
fn longest(t: &Tallies) -> Figure {
    let bound = COMMAND_TIMEOUT + SLACK;
    target_each(
        "longest call",
        t,
        |tally| ms(tally.longest_us()),
        &format!("≤ {} (timeout + slack)", ms(micros(bound))),
        t.ours.longest_us() <= micros(bound),
    )
}

/// Successful calls per second on some shards between two instants, against the same shards' rate in
/// the warm-up before the fault.
fn throughput(
    name: &str,
    tallies: &Tallies,
    shards: impl Fn(usize) -> bool + Copy,
    from: u64,
    to: u64,
) -> Figure {
    info_each(name, tallies, |tally| {
        let before = tally.ok_per_second(shards, from.saturating_sub(micros(WARM)), from);
        match (tally.ok_per_second(shards, from, to), before) {
            (Some(during), Some(before)) => format!("{during:.0}/s (before: {before:.0}/s)"),
            (Some(during), None) => format!("{during:.0}/s"),
            (None, _) => "-".into(),
        }
    })
}

/// The most frequent errors of each client, as notes.
pub(super) fn error_notes(report: &mut DrillReport, tallies: &Tallies) {
    for (who, tally) in tallies.named() {
        let top = tally.top_errors(3);
        if !top.is_empty() {
            report.notes.push(format!("{who} errors: {}", top.join("; ")));
        }
    }
}

/// How a drill that must surface no error ended: failed calls, longest call, redirects followed, filled
/// keys missing at the end, and the call counts.
fn no_errors_outcome(report: &mut DrillReport, t: &Tallies, redirects: u64, missing: Peers<usize>) {
    let f = &mut report.figures;
    f.push(no_failed_calls(t));
    f.push(longest(t));
    f.push(Figure::info("redirects followed", redirects, "-", "-"));
    f.push(Figure::target(
        "filled keys missing at the end",
        missing.ours,
        missing.fred,
        missing.redis_rs,
        "0",
        missing.ours == 0,
    ));
    f.push(info_each("calls", t, calls));
    error_notes(report, t);
}

/// One run of kill-master: kill -9 the primary of slot 0 under load.
pub(super) async fn kill_master(rate: u32) -> Result<DrillReport> {
    let stage = Stage::start(rate, CacheConfig::default()).await?;
    let victim = stage.cluster.primary_for_slot(0).await?;
    let victim_addr = victim.addr();
    let dead = stage.shard_of(victim)?;
    let slots = stage.topology.shards()[dead].slots.clone();
    let mut events = stage.clients.raw().subscribe();
    let load = stage.load(Mix::SetGet);
    let writers = LossWriters::start(
        stage.clients.raw(),
        &stage.clients.fred,
        &stage.clients.redis_rs,
        &victim_addr,
    )?;
    load.hold("load before the kill", WARM).await;

    writers.halt();
    victim.kill()?;
    // The mark follows the kill, so that no call counted as "after the fault" reached the victim.
    let killed = Instant::now();
    let killed_wall = SystemTime::now();
    load.mark(killed);
    let waiting = spinner(&format!("kill -9 {victim_addr}; waiting for a promotion"));
    let promoted = stage.cluster.wait_for_promotion(victim, PROMOTION_TIMEOUT).await;
    waiting.finish_and_clear();
    let promoted = promoted?;
    let promoted_at = Instant::now();
    let acked = writers.join().await;
    load.until_recovered(QUIET, RECOVERY_MAX).await;
    let t = load.stop().await;

    let mut seen = None;
    while let Ok(event) = events.try_recv() {
        if let ClientEvent::FailoverObserved { old_primary, at, .. } = event
            && old_primary == victim_addr
            && seen.is_none()
        {
            seen = at.duration_since(killed_wall).ok();
        }
    }
    let failover = Failover {
        old_primary: victim_addr.clone(),
        new_primary: promoted.addr(),
        slots: slots.clone(),
    };
    let measuring = spinner("counting lost writes and repairing from the journal");
    let loss = write_loss::measure(stage.clients.raw(), acked, &failover).await;
    measuring.finish_and_clear();
    let loss = loss?;
    stage.close().await;

    let kill_us = t.ours.at(killed);
    let promoted_us = t.ours.at(promoted_at);
    let mut report = DrillReport::new("kill-master");
    let f = &mut report.figures;
    f.push(Figure::info(
        "promotion visible on every node, after the kill",
        ms(promoted_us - kill_us),
        "(same cluster)",
        "(same cluster)",
    ));
    f.push(Figure::info(
        "failover seen by the client, after the kill",
        seen.map_or("not seen".into(), |d| ms(micros(d))),
        "-",
        "-",
    ));
    f.push(target_each(
        "failed calls on healthy shards",
        &t,
        |tally| tally.failed_except(dead).to_string(),
        "0",
        t.ours.failed_except(dead) == 0,
    ));
    f.push(info_each("failed calls on the dead shard", &t, |tally| {
        tally.failed_in(dead).to_string()
    }));
    f.push(throughput(
        "healthy shards: successful calls/s, kill to promotion",
        &t,
        |shard| shard != dead,
        kill_us,
        promoted_us,
    ));
    f.push(info_each("dead shard: kill to first success", &t, |tally| {
        ms_after(tally.first_ok_after_mark(dead), kill_us)
    }));
    f.push(target_each(
        "dead shard serving again, after promotion visible",
        &t,
        |tally| ms_after(tally.first_ok_after_mark(dead), promoted_us),
        "≤ 1000 ms",
        within(
            t.ours.first_ok_after_mark(dead),
            promoted_us,
            Duration::from_secs(1),
        ),
    ));
    f.push(longest(&t));
    f.push(info_each("calls", &t, calls));
    f.push(Figure::info(
        "acked writes lost, no WAIT",
        format!("{} of {}", loss.nowait_lost, loss.nowait_acked),
        format!("{} of {}", loss.fred_lost, loss.fred_acked),
        format!("{} of {}", loss.redis_rs_lost, loss.redis_rs_acked),
    ));
    f.push(Figure::info(
        "lost writes the journal found, repaired",
        format!("found {}, repaired {}", loss.journal_found, loss.repaired),
        "no journal",
        "no journal",
    ));
    f.push(Figure::target(
        "acked writes still missing after repair",
        loss.remaining,
        loss.fred_lost,
        loss.redis_rs_lost,
        "0",
        loss.remaining == 0,
    ));
    f.push(Figure::target(
        "acked writes lost, WAIT 1",
        format!("{} of {}", loss.wait_lost, loss.wait_acked),
        "-",
        "-",
        "0",
        loss.wait_lost == 0,
    ));
    if loss.nowait_lost == 0 {
        report.notes.push(format!(
            "no acknowledged write was lost: the journal check after the failover read {} journaled \
             writes on the promoted replica and had nothing to repair",
            loss.journal_checked
        ));
    }
    if loss.wait_unconfirmed > 0 {
        report.notes.push(format!(
            "{} versioned writes with WAIT 1 were stored but not confirmed by a replica within {:?}; \
             they are not counted as acknowledged",
            loss.wait_unconfirmed,
            Duration::from_millis(500)
        ));
    }
    if loss.read_errors > 0 {
        report.notes.push(format!(
            "{} reads or repairs failed while counting lost writes",
            loss.read_errors
        ));
    }
    error_notes(&mut report, &t);
    Ok(report)
}

/// How long pause-master stops its primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PauseLength {
    /// 6 s, past the node timeout (2 s): the replica is promoted.
    Long,
    /// 1 s, below the node timeout: no failover may happen.
    Short,
}

/// SIGSTOP the primary of the last slot for `pause`: 6 s (past the node timeout: its replica takes
/// over) or 1 s (below it: no failover).
pub(super) async fn pause_master(rate: u32, length: PauseLength) -> Result<DrillReport> {
    let long = length == PauseLength::Long;
    let pause = match length {
        PauseLength::Long => Duration::from_secs(6),
        PauseLength::Short => Duration::from_secs(1),
    };
    let stage = Stage::start(rate, CacheConfig::default()).await?;
    let victim = stage.cluster.primary_for_slot(16_383).await?;
    let paused = stage.shard_of(victim)?;
    let epoch_before = current_epoch(&stage.cluster).await?;
    let load = stage.load(Mix::SetGet);
    load.hold("load before the pause", WARM).await;

    victim.pause()?;
    let paused_at = Instant::now();
    load.mark(paused_at);
    let label = format!("SIGSTOP {} for {pause:?}", victim.addr());
    let (promoted_at, ()) = tokio::join!(
        async {
            if long {
                let promoted = stage.cluster.wait_for_promotion(victim, PROMOTION_TIMEOUT).await;
                Some(promoted.map(|_| Instant::now()))
            } else {
                None
            }
        },
        load.hold(&label, pause)
    );
    victim.resume()?;
    let promoted_at = promoted_at.transpose()?;
    if long {
        let waiting = spinner("waiting for the cluster to be healthy again");
        let healthy = stage.cluster.wait_until_healthy(Duration::from_secs(30)).await;
        waiting.finish_and_clear();
        healthy?;
        load.until_recovered(QUIET, RECOVERY_MAX).await;
    } else {
        // Long enough for a failure report that the pause might have caused to turn into a failover.
        load.hold("load after the pause", AFTER).await;
    }
    let t = load.stop().await;
    let role = victim.role().await?;
    let epoch_after = current_epoch(&stage.cluster).await?;
    stage.close().await;

    let pause_us = t.ours.at(paused_at);
    let name = if long {
        "pause-master-long"
    } else {
        "pause-master-short"
    };
    let mut report = DrillReport::new(name);
    let f = &mut report.figures;
    f.push(longest(&t));
    f.push(target_each(
        "failed calls on other shards",
        &t,
        |tally| tally.failed_except(paused).to_string(),
        "0",
        t.ours.failed_except(paused) == 0,
    ));
    f.push(info_each("failed calls on the paused shard", &t, |tally| {
        tally.failed_in(paused).to_string()
    }));
    if let Some(promoted_at) = promoted_at {
        let promoted_us = t.ours.at(promoted_at);
        f.push(throughput(
            "other shards: successful calls/s during the pause",
            &t,
            |shard| shard != paused,
            pause_us,
            pause_us + micros(pause),
        ));
        f.push(Figure::info(
            "promotion visible on every node, after the pause began",
            ms(promoted_us - pause_us),
            "(same cluster)",
            "(same cluster)",
        ));
        f.push(info_each(
            "paused shard: first call served, after promotion visible",
            &t,
            |tally| ms_after(tally.first_ok_after_mark(paused), promoted_us),
        ));
    }
    let failover = format!(
        "epoch {epoch_before} → {epoch_after}, paused node now {}",
        match role {
            Role::Primary => "primary",
            Role::Replica => "replica",
        }
    );
    if long {
        f.push(Figure::info(
            "failover",
            failover,
            "(same cluster)",
            "(same cluster)",
        ));
    } else {
        f.push(Figure::target(
            "no failover",
            failover,
            "(same cluster)",
            "(same cluster)",
            "epoch unchanged, still primary",
            epoch_after == epoch_before && role == Role::Primary,
        ));
    }
    f.push(info_each("calls", &t, calls));
    error_notes(&mut report, &t);
    Ok(report)
}

/// CLUSTER FAILOVER on the replica of slot 8000's primary, under load.
pub(super) async fn manual_failover(rate: u32) -> Result<DrillReport> {
    let stage = Stage::start(rate, CacheConfig::default()).await?;
    let primary = stage.cluster.primary_for_slot(8_000).await?;
    let replica = *stage
        .cluster
        .replicas_of(primary)
        .await?
        .first()
        .context("the primary has no replica")?;
    let load = stage.load(Mix::SetGet);
    load.hold("load before the failover", WARM).await;

    let started = Instant::now();
    load.mark(started);
    replica.failover(FailoverKind::Graceful).await?;
    wait_for_role(replica, Role::Primary, Duration::from_secs(15)).await?;
    let took = started.elapsed();
    load.hold("load after the failover", AFTER).await;
    let t = load.stop().await;
    let redirects: u64 = stage.clients.raw().node_stats().iter().map(|s| s.redirects).sum();
    let missing = stage.missing_keys().await;
    stage.close().await;

    let mut report = DrillReport::new("manual-failover");
    let f = &mut report.figures;
    f.push(Figure::info(
        "CLUSTER FAILOVER to replica serving as primary",
        ms(micros(took)),
        "(same cluster)",
        "(same cluster)",
    ));
    no_errors_outcome(&mut report, &t, redirects, missing);
    Ok(report)
}

/// Moves 100 slots from the primary of slot 0 to the primary of the last slot, under load.
pub(super) async fn reshard(rate: u32) -> Result<DrillReport> {
    let stage = Stage::start(rate, CacheConfig::default()).await?;
    let from = stage.cluster.primary_for_slot(0).await?;
    let to = stage.cluster.primary_for_slot(16_383).await?;
    let load = stage.load(Mix::SetGet);
    load.hold("load before resharding", WARM).await;

    let started = Instant::now();
    load.mark(started);
    let migrating = spinner(&format!("moving 100 slots from {} to {}", from.addr(), to.addr()));
    let moved = stage.cluster.migrate_slots(100, from, to).await;
    migrating.finish_and_clear();
    let moved = moved?;
    let took = started.elapsed();
    load.hold("load after resharding", AFTER).await;
    let t = load.stop().await;
    let redirects: u64 = stage.clients.raw().node_stats().iter().map(|s| s.redirects).sum();
    let missing = stage.missing_keys().await;
    stage.close().await;

    let mut report = DrillReport::new("reshard");
    let f = &mut report.figures;
    f.push(Figure::info(
        "slots moved / migration time",
        format!("{} / {}", moved.len(), ms(micros(took))),
        "(same cluster)",
        "(same cluster)",
    ));
    no_errors_outcome(&mut report, &t, redirects, missing);
    Ok(report)
}

/// kill -9 the primary of slot 0 while the clients are idle; traffic starts after the promotion.
pub(super) async fn failover_while_idle(rate: u32) -> Result<DrillReport> {
    let stage = Stage::start(rate, CacheConfig::default()).await?;
    let victim = stage.cluster.primary_for_slot(0).await?;
    let dead = stage.shard_of(victim)?;
    let victim_addr = victim.addr();
    let mut events = stage.clients.raw().subscribe();
    victim.kill()?;
    let killed = Instant::now();
    let killed_wall = SystemTime::now();
    let waiting = spinner(&format!(
        "kill -9 {} (no traffic); waiting for a promotion",
        victim.addr()
    ));
    let promoted = stage.cluster.wait_for_promotion(victim, PROMOTION_TIMEOUT).await;
    waiting.finish_and_clear();
    promoted?;
    let promotion = killed.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;

    let load = stage.load(Mix::SetGet);
    let traffic_at = Instant::now();
    let traffic_wall = SystemTime::now();
    load.mark(traffic_at);
    load.hold("traffic after the idle failover", Duration::from_secs(5))
        .await;
    let t = load.stop().await;
    stage.close().await;

    let mut seen = None;
    while let Ok(event) = events.try_recv() {
        if let ClientEvent::FailoverObserved { old_primary, at, .. } = event
            && old_primary == victim_addr
            && seen.is_none()
        {
            seen = Some(at);
        }
    }
    let seen = match seen {
        Some(at) => format!(
            "{} ({} traffic)",
            at.duration_since(killed_wall)
                .map_or("at once".into(), |d| ms(micros(d))),
            if at < traffic_wall { "before" } else { "after" }
        ),
        None => "not seen".into(),
    };
    let start_us = t.ours.at(traffic_at);
    let mut report = DrillReport::new("failover-while-idle");
    let f = &mut report.figures;
    f.push(Figure::info(
        "promotion visible on every node, after the kill",
        ms(micros(promotion)),
        "(same cluster)",
        "(same cluster)",
    ));
    f.push(Figure::info(
        "failover seen by the client, after the kill",
        seen,
        "-",
        "-",
    ));
    f.push(target_each(
        "failed calls on the failed-over shard",
        &t,
        |tally| tally.failed_in(dead).to_string(),
        "0",
        t.ours.failed_in(dead) == 0,
    ));
    f.push(target_each(
        "failed calls on other shards",
        &t,
        |tally| tally.failed_except(dead).to_string(),
        "0",
        t.ours.failed_except(dead) == 0,
    ));
    f.push(info_each(
        "failed-over shard: traffic start to first success",
        &t,
        |tally| ms_after(tally.first_ok_after_mark(dead), start_us),
    ));
    f.push(longest(&t));
    f.push(info_each("calls", &t, calls));
    error_notes(&mut report, &t);
    Ok(report)
}

/// kill -9 every node, restart them all, under load.
pub(super) async fn whole_cluster_restart(rate: u32) -> Result<DrillReport> {
    let stage = Stage::start(rate, CacheConfig::default()).await?;
    let load = stage.load(Mix::SetGet);
    load.hold("load before the restart", WARM).await;

    for node in stage.cluster.nodes() {
        node.kill()?;
    }
    let killed = Instant::now();
    load.mark(killed);
    load.hold("every node killed", Duration::from_secs(1)).await;
    let restarting = spinner("restarting every node and waiting for the cluster to be healthy");
    let restarted = async {
        // Primaries first (the cluster lists them first), so that no replica starts an election.
        for node in stage.cluster.nodes() {
            node.restart().await?;
        }
        stage.cluster.wait_until_healthy(Duration::from_secs(60)).await
    }
    .await;
    restarting.finish_and_clear();
    restarted?;
    let healthy_at = Instant::now();
    load.until_recovered(QUIET, RECOVERY_MAX).await;
    let t = load.stop().await;
    stage.close().await;

    let kill_us = t.ours.at(killed);
    let healthy_us = t.ours.at(healthy_at);
    let mut report = DrillReport::new("whole-cluster-restart");
    let f = &mut report.figures;
    f.push(Figure::info(
        "kill to cluster healthy again",
        ms(healthy_us - kill_us),
        "(same cluster)",
        "(same cluster)",
    ));
    f.push(target_each(
        "every shard serving again, after healthy",
        &t,
        |tally| ms_after(tally.all_served_after_mark(), healthy_us),
        "≤ 1000 ms",
        within(t.ours.all_served_after_mark(), healthy_us, Duration::from_secs(1)),
    ));
    f.push(info_each("failed calls", &t, |tally| tally.failed().to_string()));
    f.push(longest(&t));
    f.push(info_each("calls", &t, calls));
    error_notes(&mut report, &t);
    Ok(report)
}

/// CLIENT PAUSE 5 s ALL on every node, under load.
pub(super) async fn client_pause(rate: u32) -> Result<DrillReport> {
    let pause = Duration::from_secs(5);
    let stage = Stage::start(rate, CacheConfig::default()).await?;
    let load = stage.load(Mix::SetGet);
    load.hold("load before the pause", WARM).await;

    // Three pauses. In each, besides the paced loads, clients also get calls fired without waiting
    // for earlier ones, so that thousands of calls wait in each at once: every client in the first two,
    // ours alone in the third. The first pause pays one-time costs (allocator arenas, runtime slabs,
    // timers). The clients share the process, so growth is not split between them: the second pause
    // shows all three together, and ours' memory is bounded if the third, where only ours fires its
    // burst, adds nothing more. (With redis-rs's burst in it, the second pause grew by 13–19 MB: the
    // bound is ours', so it is measured without the peers' bursts.) The calls in flight per client show
    // that none keeps calls past their timeout.
    let mut peaks = Peers::<u64>::default();
    let mut growth = [0u64; 3];
    for (round, label) in [
        "first CLIENT PAUSE on every node",
        "second CLIENT PAUSE on every node",
        "third CLIENT PAUSE on every node (ours' burst only)",
    ]
    .into_iter()
    .enumerate()
    {
        let rss_before = rss_bytes();
        let mut rss_max = rss_before;
        let paused_at = Instant::now();
        if round == 0 {
            load.mark(paused_at);
        }
        for node in stage.cluster.nodes() {
            node.client_pause(pause).await?;
        }
        if round < 2 {
            let bursts = stage.bursts(&load);
            let left = pause.saturating_sub(paused_at.elapsed());
            load.hold_sampling(label, left, || rss_max = rss_max.max(rss_bytes()))
                .await;
            let (ours, fred, redis_rs) =
                tokio::join!(bursts.ours.stop(), bursts.fred.stop(), bursts.redis_rs.stop());
            peaks = Peers {
                ours: peaks.ours.max(ours),
                fred: peaks.fred.max(fred),
                redis_rs: peaks.redis_rs.max(redis_rs),
            };
        } else {
            let burst = stage.burst_ours(&load);
            let left = pause.saturating_sub(paused_at.elapsed());
            load.hold_sampling(label, left, || rss_max = rss_max.max(rss_bytes()))
                .await;
            peaks.ours = peaks.ours.max(burst.stop().await);
        }
        growth[round] = rss_max.saturating_sub(rss_before);
        load.until_recovered(QUIET, RECOVERY_MAX).await;
    }
    let t = load.stop().await;
    stage.close().await;

    let tolerance = Duration::from_millis(50);
    let (low, high) = (COMMAND_TIMEOUT - tolerance, COMMAND_TIMEOUT + tolerance);
    let range = |t: &Tally| match t.failed_range_us() {
        Some((min, max)) => format!("{} to {}", ms(min), ms(max)),
        None => "no failed call".into(),
    };
    let at_timeout = t.ours.failed() > 0
        && t.ours
            .failed_range_us()
            .is_some_and(|(min, max)| min >= micros(low) && max <= micros(high));
    let mb = |bytes: u64| bytes as f64 / 1_048_576.0;
    // Calls leave the client at their timeout, so at most a timeout's worth of calls is ever in flight.
    let most_in_flight = (f64::from(rate) * COMMAND_TIMEOUT.as_secs_f64() * 1.1) as u64 + 100;
    let mut report = DrillReport::new("client-pause");
    let f = &mut report.figures;
    f.push(info_each("failed calls", &t, |tally| tally.failed().to_string()));
    f.push(target_each(
        "failed call durations",
        &t,
        range,
        "timeout ± 50 ms",
        at_timeout,
    ));
    // The ±50 ms is about calls that fail; a call that succeeds as the pause ends may finish a little
    // past its timeout while thousands of replies arrive at once, hence the usual slack.
    f.push(longest(&t));
    f.push(Figure::target(
        &format!("most calls in flight (open loop at {rate}/s)"),
        peaks.ours,
        peaks.fred,
        peaks.redis_rs,
        &format!("≤ {most_in_flight} (rate × timeout + 10%)"),
        peaks.ours <= most_in_flight,
    ));
    f.push(Figure::info(
        "process memory growth, first pause (all three clients)",
        format!("{:.1} MB", mb(growth[0])),
        "(same process)",
        "(same process)",
    ));
    f.push(Figure::info(
        "process memory growth, second pause (all three clients)",
        format!("{:.1} MB", mb(growth[1])),
        "(same process)",
        "(same process)",
    ));
    f.push(Figure::target(
        "process memory growth, third pause (ours' burst only)",
        format!("{:.1} MB", mb(growth[2])),
        "-",
        "-",
        "< 8 MB (bounded)",
        growth[2] < 8 * 1_048_576,
    ));
    f.push(info_each("calls", &t, calls));
    error_notes(&mut report, &t);
    Ok(report)
}

/// kill -9 the replica that serves reads for slot 0's shard, with reads from replicas.
pub(super) async fn kill_read_replica(rate: u32) -> Result<DrillReport> {
    let settings = CacheConfig::builder()
        .call(CallOptions::default().read_from(ReadFrom::Replica))
        .build()?;
    let stage = Stage::start(rate, settings).await?;
    let primary = stage.cluster.primary_for_slot(0).await?;
    let shard = stage.shard_of(primary)?;
    let replica = *stage
        .cluster
        .replicas_of(primary)
        .await?
        .first()
        .context("the primary has no replica")?;
    let load = stage.load(Mix::GetOnly);
    // Replica reads start once the client has sampled replica lag and waited out its read-your-writes
    // window (twice the max lag, 2 s by default).
    load.hold("reads before the kill", WARM + Duration::from_secs(2))
        .await;
    let replica_reads = stage
        .clients
        .raw()
        .node_stats()
        .iter()
        .find(|s| s.node == replica.addr())
        .map_or(0, |s| s.commands);

    replica.kill()?;
    load.mark(Instant::now());
    load.hold(&format!("kill -9 replica {}", replica.addr()), AFTER)
        .await;
    let t = load.stop().await;
    stage.close().await;

    let mut report = DrillReport::new("kill-read-replica");
    let f = &mut report.figures;
    f.push(Figure::target(
        "reads the replica served before the kill",
        replica_reads,
        "0 (reads primaries)",
        "0 (reads primaries)",
        "> 0 (replica reads in use)",
        replica_reads > 0,
    ));
    f.push(target_each(
        "failed reads on the replica's shard",
        &t,
        |tally| tally.failed_in(shard).to_string(),
        "0",
        t.ours.failed_in(shard) == 0,
    ));
    f.push(target_each(
        "failed reads on other shards",
        &t,
        |tally| tally.failed_except(shard).to_string(),
        "0",
        t.ours.failed_except(shard) == 0,
    ));
    f.push(target_each(
        "longest read on that shard ending after the kill",
        &t,
        |tally| ms(tally.longest_after_mark_in(shard)),
        "≤ 1000 ms (falls back within 1 s)",
        t.ours.longest_after_mark_in(shard) <= micros(Duration::from_secs(1)),
    ));
    f.push(info_each("reads", &t, calls));
    report.notes.push(
        "fred's cluster client is built without fred's `replicas` feature, and redis-rs's with its default \
         read routing (no `read_routing_strategy`), so both read from primaries: their columns show what a \
         replica's death does to a client that does not read from it"
            .into(),
    );
    error_notes(&mut report, &t);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_after(to: Option<u64>, from: u64, want: &str) {
        assert_eq!(ms_after(to, from), want, "{to:?} - {from}");
    }

    #[test]
    fn durations_print_signed_and_rounded() {
        check_after(Some(2_000_000), 1_000_000, "1000 ms");
        check_after(Some(1_000_400), 1_000_000, "0 ms");
        check_after(Some(1_000_600), 1_000_000, "1 ms");
        check_after(Some(900_000), 1_000_000, "-100 ms");
        check_after(None, 5, "never");
        assert_eq!(ms(1_499), "1 ms");
        assert!(within(Some(2_000_000), 1_000_000, Duration::from_secs(1)));
        assert!(!within(Some(2_000_001), 1_000_000, Duration::from_secs(1)));
        assert!(!within(None, 0, Duration::from_secs(1)));
    }
}
