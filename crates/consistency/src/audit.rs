//! The cluster audit: SCAN every primary, compare each key's version on the primary and its replicas,
//! count states, and in resolve mode repair by last-write-wins.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use cluster_client::{ClusterClient, Script, ShardInfo};

use crate::error::{Error, printable_key};
use crate::history::{SyncEvent, SyncHistory, SyncSource};
use crate::reads::{read_copies, read_value, replication_offset, wait_caught_up};
use crate::report::{AuditProgress, AuditReport, KeyReport, RepairCounts, StateCounts};
use crate::script::{ScriptOutcome, WriteMode};
use crate::state::{
    KeyState, Observed, ReplicaCopy, ReplicaRepair, SyncDirection, outranks, plan_replica_repair,
};
use crate::versioned::{MAX_REPLICA_CATCH_UP, TtlArg, Versioned, check_duration, key_report, run_script};

/// Whether an audit only reports, or also repairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AuditMode {
    /// Read and report; write nothing.
    #[default]
    ReportOnly,
    /// Also repair every missing or diverged key by last-write-wins, and record each repair in the
    /// sync history.
    Resolve,
}

/// How an audit runs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditOptions {
    /// Report only, or also repair.
    pub mode: AuditMode,
    /// The `COUNT` hint of each `SCAN` step: keys checked per batch, roughly.
    pub scan_count: u32,
    /// Only keys matching this `SCAN MATCH` pattern.
    pub pattern: Option<Bytes>,
    /// The most keys checked per second over all shards (`None`: as fast as the nodes answer).
    pub max_keys_per_second: Option<u32>,
    /// Stop after about this many keys (`None`: every key). A stopped audit is marked incomplete.
    pub max_keys: Option<u64>,
    /// Keys kept in the report's samples, and errors kept in its error list.
    pub sample_limit: usize,
    /// How long to wait for a replica to catch up with its primary before an older copy counts as
    /// lag rather than divergence.
    pub replica_catch_up: Duration,
    /// Which way a cross-deployment audit in resolve mode may write (cluster audits ignore it).
    pub sync_direction: SyncDirection,
    /// Whether a cluster audit also scans every replica, to find keys a replica holds and its primary
    /// lacks (which no scan of the primaries can see). Costs a second scan of each shard.
    pub scan_replicas: bool,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            mode: AuditMode::ReportOnly,
            scan_count: 500,
            pattern: None,
            max_keys_per_second: None,
            max_keys: None,
            sample_limit: 100,
            replica_catch_up: Duration::from_secs(1),
            sync_direction: SyncDirection::SourceToTarget,
            scan_replicas: true,
        }
    }
}

impl AuditOptions {
    /// Sets the mode.
    pub fn mode(mut self, mode: AuditMode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets the `SCAN COUNT` hint (at least 1).
    pub fn scan_count(mut self, count: u32) -> Self {
        self.scan_count = count.max(1);
        self
    }

    /// Only keys matching a `SCAN MATCH` pattern.
    pub fn pattern(mut self, pattern: impl Into<Bytes>) -> Self {
        self.pattern = Some(pattern.into());
        self
    }

    /// Limits the keys checked per second (0 means no limit).
    pub fn max_keys_per_second(mut self, keys: u32) -> Self {
        self.max_keys_per_second = (keys > 0).then_some(keys);
        self
    }

    /// Stops after about this many keys.
    pub fn max_keys(mut self, keys: u64) -> Self {
        self.max_keys = Some(keys);
        self
    }

    /// Sets how many bad keys and errors the report keeps.
    pub fn sample_limit(mut self, keys: usize) -> Self {
        self.sample_limit = keys;
        self
    }

    /// Sets how long to wait for replicas to catch up.
    pub fn replica_catch_up(mut self, wait: Duration) -> Self {
        self.replica_catch_up = wait;
        self
    }

    /// Sets whether a cluster audit scans replicas too.
    pub fn scan_replicas(mut self, scan: bool) -> Self {
        self.scan_replicas = scan;
        self
    }

    /// Sets which way a cross-deployment sync writes.
    pub fn sync_direction(mut self, direction: SyncDirection) -> Self {
        self.sync_direction = direction;
        self
    }

    /// Checks the options an audit cannot run with.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        check_duration(
            "AuditOptions::replica_catch_up",
            self.replica_catch_up,
            Duration::ZERO,
            MAX_REPLICA_CATCH_UP,
            "a second is plenty for a healthy replica (default 1 s)",
        )
    }
}

/// Reads `keys` on the shard's primary, then on each replica once it caught up with what the primary
/// had (or the wait ran out), and classifies each key.
pub(crate) async fn read_shard(
    client: &ClusterClient,
    shard: &ShardInfo,
    keys: &[Bytes],
    catch_up: Duration,
) -> Vec<Result<KeyReport, Error>> {
    let primary = read_copies(client, &shard.primary, keys).await;
    let replicas = read_replicas_after(client, shard, keys, catch_up).await;
    combine(keys, &shard.primary, primary, replicas, Vec::new())
}

/// Reads `keys` again, more carefully: replicas first, then the primary, then the replicas again once
/// caught up. A replica copy newer than what the primary held *afterwards* is divergence for certain;
/// an older one after catching up is too. Concurrent writes cannot fake either.
pub(crate) async fn recheck_shard(
    client: &ClusterClient,
    shard: &ShardInfo,
    keys: &[Bytes],
    catch_up: Duration,
) -> Vec<Result<KeyReport, Error>> {
    let mut before = Vec::with_capacity(shard.replicas.len());
    for node in &shard.replicas {
        before.push(read_copies(client, node, keys).await);
    }
    let primary = read_copies(client, &shard.primary, keys).await;
    let replicas = read_replicas_after(client, shard, keys, catch_up).await;
    combine(keys, &shard.primary, primary, replicas, before)
}

/// One node's read of one key.
type Read = Result<Observed, cluster_client::Error>;
/// One node's reads of a batch of keys, in order.
type Reads = Vec<Read>;

/// Reads every replica once it has applied what the primary had just now (or the wait ran out).
async fn read_replicas_after<'a>(
    client: &ClusterClient,
    shard: &'a ShardInfo,
    keys: &[Bytes],
    catch_up: Duration,
) -> Vec<(&'a str, bool, Reads)> {
    // Read after the primary's values, the offset covers every write they reflect.
    let offset = replication_offset(client, &shard.primary).await;
    let mut replicas = Vec::with_capacity(shard.replicas.len());
    for node in &shard.replicas {
        let caught_up = match &offset {
            Ok(offset) => wait_caught_up(client, node, *offset, catch_up).await,
            Err(_) => false,
        };
        replicas.push((node.as_str(), caught_up, read_copies(client, node, keys).await));
    }
    replicas
}

/// Turns per-node reads into per-key reports. `before` holds replica reads made before the primary
/// was read (empty on a first pass).
fn combine(
    keys: &[Bytes],
    primary_node: &str,
    primary: Reads,
    replicas: Vec<(&str, bool, Reads)>,
    before: Vec<Reads>,
) -> Vec<Result<KeyReport, Error>> {
    let mut replicas: Vec<_> = replicas
        .into_iter()
        .map(|(node, caught_up, reads)| (node, caught_up, reads.into_iter()))
        .collect();
    let mut before: Vec<_> = before.into_iter().map(Vec::into_iter).collect();
    let mut out = Vec::with_capacity(keys.len());
    for (key, primary) in keys.iter().zip(primary) {
        let earlier: Vec<Option<Observed>> = before
            .iter_mut()
            .map(|reads| reads.next().and_then(Result::ok))
            .collect();
        let row: Vec<_> = replicas
            .iter_mut()
            .map(|(node, caught_up, reads)| (*node, *caught_up, reads.next()))
            .collect();
        out.push(key_from_reads(key, primary_node, primary, row, &earlier));
    }
    out
}

fn key_from_reads(
    key: &Bytes,
    primary_node: &str,
    primary: Read,
    replicas: Vec<(&str, bool, Option<Read>)>,
    earlier: &[Option<Observed>],
) -> Result<KeyReport, Error> {
    let primary = primary?;
    let mut copies = Vec::with_capacity(replicas.len());
    for (position, (node, caught_up, read)) in replicas.into_iter().enumerate() {
        // Every node was asked for every key, so each has a read for this one.
        let Some(read) = read else { continue };
        let after = read?;
        let copy = match earlier.get(position).copied().flatten() {
            // Held before the primary was read, and newer than what the primary held after: the
            // replica has a write its primary never had. (An absent primary may just have expired
            // the key, so that case waits for the caught-up read.)
            Some(earlier) if primary.is_present() && outranks(earlier, primary) => ReplicaCopy {
                observed: earlier,
                caught_up: true,
            },
            _ => ReplicaCopy {
                observed: after,
                caught_up,
            },
        };
        copies.push((node.to_string(), copy));
    }
    Ok(key_report(key, (primary_node, primary), &copies))
}

/// Spaces batches so that keys are checked at most at the configured rate.
pub(crate) struct Pacer {
    started: Instant,
    per_second: Option<u32>,
    admitted: AtomicU64,
}

impl Pacer {
    pub(crate) fn new(per_second: Option<u32>) -> Pacer {
        Pacer {
            started: Instant::now(),
            per_second,
            admitted: AtomicU64::new(0),
        }
    }

    /// Waits until `keys` more keys fit in the rate.
    pub(crate) async fn admit(&self, keys: usize) {
        let Some(rate) = self.per_second else {
            return;
        };
        let total = self.admitted.fetch_add(keys as u64, Ordering::Relaxed) + keys as u64;
        let due = self.started + Duration::from_secs_f64(total as f64 / f64::from(rate.max(1)));
        tokio::time::sleep_until(due.into()).await;
    }
}

/// What an audit has found so far, shared by the shards' scans.
#[derive(Default)]
struct TallyState {
    counts: StateCounts,
    samples: Vec<KeyReport>,
    repairs: RepairCounts,
    errors: Vec<String>,
    error_count: u64,
    keys_scanned: u64,
    shards_done: usize,
    incomplete: bool,
}

/// The running totals of an audit.
pub(crate) struct Tally {
    state: Mutex<TallyState>,
    started: Instant,
    started_at: SystemTime,
    shards_total: usize,
    sample_limit: usize,
    max_keys: Option<u64>,
}

impl Tally {
    pub(crate) fn new(shards_total: usize, options: &AuditOptions) -> Tally {
        Tally {
            state: Mutex::new(TallyState::default()),
            started: Instant::now(),
            started_at: SystemTime::now(),
            shards_total,
            sample_limit: options.sample_limit,
            max_keys: options.max_keys,
        }
    }

    fn lock(&self) -> MutexGuard<'_, TallyState> {
        // The totals stay meaningful even if a progress callback panicked while they were locked.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn error(&self, context: &str, error: &dyn std::fmt::Display) {
        let mut state = self.lock();
        state.error_count += 1;
        if state.errors.len() < self.sample_limit {
            state.errors.push(format!("{context}: {error}"));
        }
    }

    pub(crate) fn incomplete(&self) {
        self.lock().incomplete = true;
    }

    /// Whether the key limit is reached; marks the audit incomplete if so.
    pub(crate) fn exhausted(&self) -> bool {
        let mut state = self.lock();
        let done = self.max_keys.is_some_and(|max| state.keys_scanned >= max);
        if done {
            state.incomplete = true;
        }
        done
    }

    pub(crate) fn key(&self, report: KeyReport) {
        let mut state = self.lock();
        state.keys_scanned += 1;
        state.counts.add(report.state);
        if report.state != KeyState::Consistent && state.samples.len() < self.sample_limit {
            state.samples.push(report);
        }
    }

    pub(crate) fn repairs(&self, repairs: &RepairCounts) {
        self.lock().repairs.merge(repairs);
    }

    pub(crate) fn shard_done(&self) {
        self.lock().shards_done += 1;
    }

    pub(crate) fn progress(&self) -> AuditProgress {
        let state = self.lock();
        AuditProgress {
            shards_total: self.shards_total,
            shards_done: state.shards_done,
            keys_scanned: state.keys_scanned,
            keys_bad: state.counts.bad(),
            elapsed: self.started.elapsed(),
        }
    }

    pub(crate) fn finish(self) -> AuditReport {
        let elapsed = self.started.elapsed();
        let state = self.state.into_inner().unwrap_or_else(PoisonError::into_inner);
        AuditReport {
            started_at: self.started_at,
            elapsed,
            keys_scanned: state.keys_scanned,
            counts: state.counts,
            samples: state.samples,
            repairs: state.repairs,
            errors: state.errors,
            error_count: state.error_count,
            complete: !state.incomplete && state.error_count == 0,
        }
    }
}

/// How one repair ended.
#[derive(Debug)]
pub(crate) enum Repair {
    Repaired,
    Superseded,
    Unrepairable,
    Left,
    Failed(Error),
}

impl Repair {
    pub(crate) fn count(&self, counts: &mut RepairCounts) {
        match self {
            Repair::Repaired => counts.repaired += 1,
            Repair::Superseded => counts.superseded += 1,
            Repair::Unrepairable => counts.unrepairable += 1,
            Repair::Left => counts.left += 1,
            Repair::Failed(_) => counts.failed += 1,
        }
    }
}

/// Repairs one key of a cluster shard by last-write-wins, recording the repair in `history`.
pub(crate) async fn repair_in_shard(
    client: &ClusterClient,
    script: &Script,
    history: &SyncHistory,
    report: &KeyReport,
) -> Repair {
    let Some((primary, replicas)) = report.copies.split_first() else {
        return Repair::Unrepairable;
    };
    let observed: Vec<Observed> = replicas.iter().map(|c| c.observed).collect();
    let (from, mode, ttl_from_source) = match plan_replica_repair(primary.observed, &observed) {
        ReplicaRepair::Nothing => return Repair::Superseded,
        ReplicaRepair::Unrepairable(reason) => {
            tracing::info!(key = %printable_key(&report.key), reason, "audit cannot repair a key");
            return Repair::Unrepairable;
        }
        ReplicaRepair::ResendPrimary => (primary, WriteMode::Equal, false),
        ReplicaRepair::CopyFromReplica(index) => (&replicas[index], WriteMode::Newer, true),
    };
    let stored = match read_value(client, &from.node, &report.key).await {
        Ok(Some(stored)) => stored,
        Ok(None) => return Repair::Superseded,
        Err(error) => return Repair::Failed(error.into()),
    };
    // The copy must still be the one the plan chose; anything else means a write got there first.
    if Observed::from_stored(Some(&stored.0)) != from.observed {
        return Repair::Superseded;
    }
    let ttl = if ttl_from_source {
        TtlArg::from(stored.1)
    } else {
        TtlArg::Keep
    };
    match run_script(client, script, &report.key, &stored.0, ttl, mode).await {
        Ok(ScriptOutcome::Written) => {
            let before = if mode == WriteMode::Equal {
                // The primary's copy is rewritten as it was: what changes are the replicas that
                // lacked it; the first of them stands for "before".
                observed
                    .iter()
                    .copied()
                    .find(|&o| o != primary.observed)
                    .unwrap_or(primary.observed)
            } else {
                primary.observed
            };
            history.record(SyncEvent {
                key: report.key.clone(),
                before,
                after: from.observed,
                source: SyncSource::AuditRepair {
                    primary: primary.node.clone(),
                },
                at: SystemTime::now(),
            });
            Repair::Repaired
        }
        Ok(ScriptOutcome::Kept(_)) => Repair::Superseded,
        Ok(ScriptOutcome::StoredInvalid(problem)) => Repair::Failed(Error::Envelope {
            key: printable_key(&report.key),
            problem,
        }),
        Err(error) => Repair::Failed(error),
    }
}

/// Checks one batch of keys a shard's primary holds, rechecks the suspicious ones, counts, and repairs.
async fn check_batch(
    versioned: &Versioned,
    shard: &ShardInfo,
    keys: Vec<Bytes>,
    options: &AuditOptions,
    tally: &Tally,
) {
    let client = versioned.client();
    let mut reports = read_shard(client, shard, &keys, options.replica_catch_up).await;
    let suspicious: Vec<usize> = reports
        .iter()
        .enumerate()
        .filter(|(_, r)| matches!(r, Ok(r) if matches!(r.state, KeyState::Missing | KeyState::Diverged)))
        .map(|(i, _)| i)
        .collect();
    if !suspicious.is_empty() {
        let again: Vec<Bytes> = suspicious.iter().map(|&i| keys[i].clone()).collect();
        let rechecked = recheck_shard(client, shard, &again, options.replica_catch_up).await;
        for (index, report) in suspicious.into_iter().zip(rechecked) {
            reports[index] = report;
        }
    }
    account(versioned, &keys, reports, options, tally).await;
}

/// Checks one batch of keys a replica holds: only those its primary lacks are new to the audit (the
/// scan of the primary counted the others).
async fn check_replica_batch(
    versioned: &Versioned,
    shard: &ShardInfo,
    keys: Vec<Bytes>,
    options: &AuditOptions,
    tally: &Tally,
) {
    let client = versioned.client();
    let on_primary = read_copies(client, &shard.primary, &keys).await;
    let mut absent = Vec::new();
    for (key, read) in keys.into_iter().zip(on_primary) {
        match read {
            Ok(Observed::Absent) => absent.push(key),
            Ok(_) => {}
            Err(error) => tally.error(&format!("reading {}", printable_key(&key)), &error),
        }
    }
    if absent.is_empty() {
        return;
    }
    let reports = recheck_shard(client, shard, &absent, options.replica_catch_up).await;
    account(versioned, &absent, reports, options, tally).await;
}

/// Counts the reports of a batch and, in resolve mode, repairs the keys that need it.
async fn account(
    versioned: &Versioned,
    keys: &[Bytes],
    reports: Vec<Result<KeyReport, Error>>,
    options: &AuditOptions,
    tally: &Tally,
) {
    let client = versioned.client();
    let mut repairs = RepairCounts::default();
    for (key, report) in keys.iter().zip(reports) {
        match report {
            Ok(report) => {
                if options.mode == AuditMode::Resolve
                    && matches!(report.state, KeyState::Missing | KeyState::Diverged)
                {
                    let repair =
                        repair_in_shard(client, &versioned.inner.script, versioned.history(), &report).await;
                    if let Repair::Failed(error) = &repair {
                        tally.error(&format!("repairing {}", printable_key(key)), error);
                    }
                    repair.count(&mut repairs);
                }
                tally.key(report);
            }
            Err(error) => tally.error(&format!("reading {}", printable_key(key)), &error),
        }
    }
    tally.repairs(&repairs);
}

/// Which node of a shard a scan walks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Walk {
    Primary,
    Replica,
}

/// Scans one node of a shard to the end (or the key limit), checking batch after batch.
async fn scan_node<P>(
    versioned: &Versioned,
    shard: &ShardInfo,
    node: &str,
    walk: Walk,
    run: (&AuditOptions, &Pacer, &Tally, &P),
) where
    P: Fn(&AuditProgress) + Sync,
{
    let (options, pacer, tally, progress) = run;
    let client = versioned.client();
    let mut cursor = 0;
    loop {
        if tally.exhausted() {
            break;
        }
        let step = client
            .scan_node(node, cursor, options.pattern.as_deref(), options.scan_count)
            .await;
        let (next, keys) = match step {
            Ok(step) => step,
            Err(error) => {
                tally.error(&format!("scanning {node}"), &error);
                tally.incomplete();
                break;
            }
        };
        if !keys.is_empty() {
            pacer.admit(keys.len()).await;
            match walk {
                Walk::Primary => check_batch(versioned, shard, keys, options, tally).await,
                Walk::Replica => check_replica_batch(versioned, shard, keys, options, tally).await,
            }
            progress(&tally.progress());
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
}

async fn audit_shard<P>(
    versioned: &Versioned,
    shard: &ShardInfo,
    options: &AuditOptions,
    pacer: &Pacer,
    tally: &Tally,
    progress: &P,
) where
    P: Fn(&AuditProgress) + Sync,
{
    let run = (options, pacer, tally, progress);
    scan_node(versioned, shard, &shard.primary, Walk::Primary, run).await;
    if options.scan_replicas {
        for replica in &shard.replicas {
            scan_node(versioned, shard, replica, Walk::Replica, run).await;
        }
    }
    tally.shard_done();
    progress(&tally.progress());
}

impl Versioned {
    /// Audits every key of every primary (as `SCAN` finds them): each key's version on the primary
    /// and on every replica, counted per state, with a sample of the keys that disagree. In
    /// [`AuditMode::Resolve`], missing and diverged keys are repaired by last-write-wins and each
    /// repair is recorded in the sync history.
    ///
    /// Shards are scanned concurrently; `progress` is called after every batch. Errors (a node that
    /// does not answer) are counted in the report, which is then marked incomplete. Options out of
    /// range fail before anything is read.
    pub async fn audit<P>(&self, options: &AuditOptions, progress: P) -> Result<AuditReport, Error>
    where
        P: Fn(&AuditProgress) + Sync,
    {
        options.validate()?;
        let topology = self.client().topology();
        let shards = topology.shards();
        let tally = Tally::new(shards.len(), options);
        let pacer = Pacer::new(options.max_keys_per_second);
        let scans = shards
            .iter()
            .map(|shard| audit_shard(self, shard, options, &pacer, &tally, &progress));
        futures::future::join_all(scans).await;
        Ok(tally.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_pacer_holds_the_rate() {
        let pacer = Pacer::new(Some(100));
        let started = tokio::time::Instant::now();
        for _ in 0..4 {
            pacer.admit(50).await;
        }
        // 200 keys at 100 keys/s take two seconds.
        assert_eq!(started.elapsed().as_secs(), 2);
        let unlimited = Pacer::new(None);
        let started = tokio::time::Instant::now();
        unlimited.admit(1_000_000).await;
        assert_eq!(started.elapsed().as_secs(), 0);
    }

    fn check(options: &AuditOptions, keys: u64, want_exhausted: bool) {
        let tally = Tally::new(1, options);
        for _ in 0..keys {
            tally.key(KeyReport {
                key: Bytes::from_static(b"k"),
                state: KeyState::Diverged,
                copies: vec![],
            });
        }
        assert_eq!(tally.exhausted(), want_exhausted, "{keys} keys");
        let report = tally.finish();
        assert_eq!(report.complete, !want_exhausted);
        assert_eq!(report.samples.len() as u64, keys.min(options.sample_limit as u64));
    }

    #[test]
    fn the_tally_stops_at_the_key_limit_and_keeps_samples() {
        let options = AuditOptions::default().max_keys(3).sample_limit(2);
        check(&options, 0, false);
        check(&options, 2, false);
        check(&options, 3, true);
        check(&AuditOptions::default(), 5, false);
    }

    #[test]
    fn catch_up_waits_are_bounded() {
        for (wait, ok) in [
            (Duration::ZERO, true),
            (MAX_REPLICA_CATCH_UP, true),
            (MAX_REPLICA_CATCH_UP + Duration::from_millis(1), false),
            (Duration::MAX, false),
        ] {
            let result = AuditOptions::default().replica_catch_up(wait).validate();
            assert_eq!(result.is_ok(), ok, "{wait:?}: {result:?}");
        }
    }

    #[test]
    fn option_setters_clamp() {
        let options = AuditOptions::default().scan_count(0).max_keys_per_second(0);
        assert_eq!((options.scan_count, options.max_keys_per_second), (1, None));
    }
}
