//! Failover write-loss repair: check the journal's writes on the promoted primary and write again
//! what it can show was lost.
//!
//! # When a key counts as lost
//!
//! A key the new primary lacks is not proof of a loss: another client may have deleted it with a
//! plain `DEL`, the server may have evicted it, another writer's tombstone may have expired. Writing
//! it again would bring deleted data back. So a journaled write is written again only when its loss
//! is *shown*:
//!
//! - **Older**: the primary holds a version older than the journaled one. Nothing can make a key go
//!   back in version except a write that never arrived, so the journaled write was lost.
//! - **Missing, with replication-offset evidence.** Every journaled write carries a
//!   [`ReplicationMark`](crate::ReplicationMark): the primary's replication id and
//!   `master_repl_offset` read by the write script itself just before it wrote (no other command
//!   runs in between, and the script's write enters the replication stream right after it), plus
//!   the fewest bytes the write takes in that stream. A promoted replica reports in `INFO
//!   replication` the history it continues (`master_replid2`) and the offset at which it took over
//!   (`second_repl_offset`, one past the last byte it had applied). If the mark's replication id is
//!   that history and `offset + min_len >= second_repl_offset`, the replica took over before it had
//!   the whole write: the write never reached it, and its absence is a loss. Otherwise the write had
//!   reached the replica (a write acknowledged by `WAIT` always has), so the key's absence is a later
//!   delete, eviction or expiry, and the key is left alone.
//!
//! Everything else is reported in [`JournalCheck::unproven`] and never rewritten: a missing key
//! without such evidence (a write on the node's own current history, a mark from a history the node
//! does not continue, or no mark because the server refused `INFO` to the script), and a key holding
//! an unversioned value (another client's plain write). A key whose newer state is a delete is
//! present, not lost: a tombstone at or above the journaled version counts as present, and the
//! journal offers only each key's latest write, so a later journaled delete hides earlier sets (even
//! after its tombstone expired). The same rule applies to [`Versioned::repair_journal`], the
//! whole-journal check run when failover events were missed: each key is judged against its current
//! primary's history, never rewritten blindly.
//!
//! The evidence costs one `INFO replication` inside each journaled write's script (a few
//! microseconds on the server, no extra round trip) and one `INFO replication` per node checked.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use cluster_client::{CallOptions, ClientEvent};
use sharding::SlotRange;
use tokio::sync::broadcast::error::RecvError;

use crate::audit::Repair;
use crate::envelope::Envelope;
use crate::error::{Error, printable_key};
use crate::history::{SyncEvent, SyncSource};
use crate::journal::{JournalEntry, ReplicationMark};
use crate::reads::{read_copies, read_lineage};
use crate::report::RepairCounts;
use crate::script::{ScriptOutcome, WriteMode};
use crate::state::Observed;
use crate::versioned::{TtlArg, Versioned, run_script};

/// Keys read per round trip while checking the journal.
const CHECK_BATCH: usize = 500;
/// Checks kept by a [`FailoverRepairTask`].
const KEPT_CHECKS: usize = 64;

/// A failover as `cluster-client` reports it: slots that moved from a primary to its replica.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Failover {
    /// The primary that served the slots before.
    pub old_primary: String,
    /// The former replica that serves them now.
    pub new_primary: String,
    /// The slot ranges that moved.
    pub slots: Vec<SlotRange>,
}

impl Failover {
    /// The failover an event reports, if it reports one.
    pub fn from_event(event: &ClientEvent) -> Option<Failover> {
        match event {
            ClientEvent::FailoverObserved {
                old_primary,
                new_primary,
                slots,
                ..
            } => Some(Failover {
                old_primary: old_primary.clone(),
                new_primary: new_primary.clone(),
                // The client reports valid ranges; one that is not a slot range cannot hold a key.
                slots: slots
                    .iter()
                    .filter_map(|&(first, last)| SlotRange::new(first, last).ok())
                    .collect(),
            }),
            _ => None,
        }
    }
}

/// What a check of the journal found and, when repairing, did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JournalCheck {
    /// The failover checked (`None` for a check of every journaled key on its current primary).
    pub failover: Option<Failover>,
    /// Journaled keys checked (the latest write of each).
    pub checked: u64,
    /// Keys the primary holds at the journaled version or a newer one.
    pub present: u64,
    /// Keys the primary lacks, whose write the replication offsets show never reached it (see the
    /// module's rule).
    pub missing: Vec<Bytes>,
    /// Keys the primary holds at an older version.
    pub older: Vec<Bytes>,
    /// Keys the primary lacks (or holds an unversioned value for) without evidence that a failover
    /// lost the write: most likely deleted, evicted or expired since. Never rewritten.
    pub unproven: Vec<Bytes>,
    /// What the repairs did (all zero for a check only).
    pub repairs: RepairCounts,
    /// Reads or writes that failed.
    pub errors: Vec<String>,
}

impl JournalCheck {
    /// Acknowledged writes the primary was shown to lack: missing plus older.
    pub fn lost(&self) -> usize {
        self.missing.len() + self.older.len()
    }
}

/// Whether a pass only checks, or also writes again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Check,
    Repair,
}

/// How a journaled write fares on the primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// The primary holds the journaled version or a newer one (a tombstone counts).
    Present,
    /// Absent, and the offsets show the write never reached the primary.
    Missing,
    /// The primary holds an older version.
    Older,
    /// Absent or unversioned, and no evidence that the write was lost.
    Unproven,
}

/// What a node's `INFO replication` says about the replication history it continues.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Lineage {
    /// `master_replid`: the node's current history.
    pub(crate) replid: Vec<u8>,
    /// `master_replid2` and `second_repl_offset`: the history it continued when it was promoted,
    /// and the offset one past the last byte of it that the node had applied.
    pub(crate) previous: Option<(Vec<u8>, u64)>,
}

impl Lineage {
    /// Whether the offsets show that the write marked `mark` never reached this node.
    fn shows_loss(&self, mark: &ReplicationMark) -> bool {
        match &self.previous {
            Some((replid, took_over_at)) if replid.as_slice() == mark.replid.as_slice() => {
                // The node applied the bytes before `took_over_at`; the write ends no earlier than
                // `offset + min_len`, so if that is not before `took_over_at`, it was incomplete.
                mark.offset.saturating_add(mark.min_len) >= *took_over_at
            }
            _ => false,
        }
    }
}

fn verdict(entry: &JournalEntry, observed: Observed, lineage: Option<&Lineage>) -> Verdict {
    match observed {
        Observed::Absent => {
            let shown = entry
                .mark
                .as_ref()
                .zip(lineage)
                .is_some_and(|(mark, lineage)| lineage.shows_loss(mark));
            if shown {
                Verdict::Missing
            } else {
                Verdict::Unproven
            }
        }
        o => match o.version() {
            Some(v) if v >= entry.version => Verdict::Present,
            Some(_) => Verdict::Older,
            // Another client's plain value: nothing says ours is the newer write.
            None => Verdict::Unproven,
        },
    }
}

fn journaled(entry: &JournalEntry) -> Observed {
    if entry.deleted {
        Observed::Tombstone(entry.version)
    } else {
        Observed::Value(entry.version)
    }
}

impl Versioned {
    /// Reports which journaled writes in the failed-over slots the new primary lacks (or holds an
    /// older version of). Writes nothing.
    pub async fn check_after_failover(&self, failover: &Failover) -> Result<JournalCheck, Error> {
        self.journal_pass(Some(failover), Action::Check).await
    }

    /// [`Versioned::check_after_failover`], then writes again (with last-write-wins, so nothing newer
    /// is overwritten) every journaled write the new primary lacks, recording each in the sync
    /// history. Writes whose value the journal did not keep are counted as unrepairable.
    pub async fn repair_after_failover(&self, failover: &Failover) -> Result<JournalCheck, Error> {
        self.journal_pass(Some(failover), Action::Repair).await
    }

    /// Checks every journaled write on its key's current primary and writes again what is missing,
    /// as [`Versioned::repair_after_failover`] does for one failover. For when failover events were
    /// missed.
    pub async fn repair_journal(&self) -> Result<JournalCheck, Error> {
        self.journal_pass(None, Action::Repair).await
    }

    async fn journal_pass(&self, failover: Option<&Failover>, action: Action) -> Result<JournalCheck, Error> {
        let journal = self.journal().ok_or(Error::NoJournal)?;
        let entries = match failover {
            Some(failover) => journal.latest_in_slots(&failover.slots),
            None => journal.latest(),
        };
        let mut check = JournalCheck {
            failover: failover.cloned(),
            ..JournalCheck::default()
        };
        // Group by the node to read: the promoted primary, or each key's current primary.
        let topology = self.client().topology();
        let mut by_node: Vec<(String, Vec<JournalEntry>)> = Vec::new();
        for entry in entries {
            let node = match failover {
                Some(failover) => failover.new_primary.clone(),
                None => match topology.shard_for_key(&entry.key) {
                    Some(shard) => shard.primary.clone(),
                    None => {
                        check
                            .errors
                            .push(format!("no shard serves {}", printable_key(&entry.key)));
                        continue;
                    }
                },
            };
            match by_node.iter_mut().find(|(n, _)| *n == node) {
                Some((_, group)) => group.push(entry),
                None => by_node.push((node, vec![entry])),
            }
        }
        for (node, entries) in by_node {
            // The node's history decides whether an absence is a loss; without it, none is.
            let lineage = match read_lineage(self.client(), &node).await {
                Ok(lineage) => Some(lineage),
                Err(error) => {
                    check
                        .errors
                        .push(format!("reading INFO replication on {node}: {error}"));
                    None
                }
            };
            for batch in entries.chunks(CHECK_BATCH) {
                let keys: Vec<Bytes> = batch.iter().map(|e| e.key.clone()).collect();
                let reads = read_copies(self.client(), &node, &keys).await;
                for (entry, read) in batch.iter().zip(reads) {
                    check.checked += 1;
                    let observed = match read {
                        Ok(observed) => observed,
                        Err(error) => {
                            check.errors.push(format!(
                                "reading {} on {node}: {error}",
                                printable_key(&entry.key)
                            ));
                            continue;
                        }
                    };
                    match verdict(entry, observed, lineage.as_ref()) {
                        Verdict::Present => {
                            check.present += 1;
                            continue;
                        }
                        Verdict::Unproven => {
                            check.unproven.push(entry.key.clone());
                            continue;
                        }
                        Verdict::Missing => check.missing.push(entry.key.clone()),
                        Verdict::Older => check.older.push(entry.key.clone()),
                    }
                    if action == Action::Repair {
                        let repair = self.rewrite(entry, observed, &node).await;
                        if let Repair::Failed(error) = &repair {
                            check
                                .errors
                                .push(format!("repairing {}: {error}", printable_key(&entry.key)));
                        }
                        repair.count(&mut check.repairs);
                    }
                }
            }
        }
        Ok(check)
    }

    /// Writes a journaled write again, with last-write-wins.
    async fn rewrite(&self, entry: &JournalEntry, before: Observed, node: &str) -> Repair {
        let Ok(ttl) = entry.remaining_ttl(Instant::now()) else {
            // It expired meanwhile: nothing is lost any more.
            return Repair::Superseded;
        };
        let stored = match (&entry.value, entry.deleted) {
            (_, true) => Envelope::Tombstone {
                version: entry.version,
            }
            .encode(),
            (Some(value), false) => Envelope::Value {
                version: entry.version,
                payload: value,
            }
            .encode(),
            (None, false) => return Repair::Unrepairable,
        };
        // Right after a failover the client may still be switching to the promoted primary: wait for
        // it rather than failing fast.
        let client = self
            .client()
            .with_options(CallOptions::default().wait_for_failover(true));
        let outcome = run_script(
            &client,
            &self.inner.script,
            &entry.key,
            &stored,
            TtlArg::from(ttl),
            WriteMode::Newer,
        )
        .await;
        match outcome {
            Ok(ScriptOutcome::Written) => {
                self.inner.history.record(SyncEvent {
                    key: entry.key.clone(),
                    before,
                    after: journaled(entry),
                    source: SyncSource::FailoverRepair {
                        new_primary: node.to_string(),
                    },
                    at: SystemTime::now(),
                });
                Repair::Repaired
            }
            Ok(ScriptOutcome::Kept(_)) => Repair::Superseded,
            Ok(ScriptOutcome::StoredInvalid(problem)) => Repair::Failed(Error::Envelope {
                key: printable_key(&entry.key),
                problem,
            }),
            Err(error) => Repair::Failed(error),
        }
    }

    /// Repairs after every failover the client reports, in the background, until the returned task
    /// is dropped or stopped. If events were missed (the receiver lagged), every journaled write is
    /// checked on its current primary instead.
    pub fn spawn_failover_repair(&self) -> FailoverRepairTask {
        let mut events = self.client().subscribe();
        let checks: Arc<Mutex<VecDeque<JournalCheck>>> = Arc::default();
        let kept = Arc::clone(&checks);
        let versioned = self.clone();
        let task = tokio::spawn(async move {
            loop {
                let result = match events.recv().await {
                    Ok(event) => match Failover::from_event(&event) {
                        Some(failover) => versioned.repair_after_failover(&failover).await,
                        None => continue,
                    },
                    Err(RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "missed client events; checking the whole journal");
                        versioned.repair_journal().await
                    }
                    Err(RecvError::Closed) => break,
                };
                match result {
                    Ok(check) => {
                        tracing::info!(
                            checked = check.checked,
                            lost = check.lost(),
                            unproven = check.unproven.len(),
                            repaired = check.repairs.repaired,
                            "checked the journal after a failover"
                        );
                        let mut checks = kept.lock().unwrap_or_else(PoisonError::into_inner);
                        if checks.len() == KEPT_CHECKS {
                            checks.pop_front();
                        }
                        checks.push_back(check);
                    }
                    Err(error) => tracing::warn!(%error, "failover repair failed"),
                }
            }
        });
        FailoverRepairTask { task, checks }
    }
}

/// The background failover repair; dropping it stops the task.
#[derive(Debug)]
pub struct FailoverRepairTask {
    task: tokio::task::JoinHandle<()>,
    checks: Arc<Mutex<VecDeque<JournalCheck>>>,
}

impl FailoverRepairTask {
    /// The last checks made (up to 64), oldest first.
    pub fn checks(&self) -> Vec<JournalCheck> {
        let checks = self.checks.lock().unwrap_or_else(PoisonError::into_inner);
        checks.iter().cloned().collect()
    }

    /// Stops the task.
    pub fn stop(self) {
        self.task.abort();
    }
}

impl Drop for FailoverRepairTask {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::version::test_version;

    const OLD: [u8; 40] = [b'a'; 40];
    const OTHER: [u8; 40] = [b'b'; 40];

    fn entry(millis: u64, deleted: bool, mark: Option<(u64, [u8; 40])>) -> JournalEntry {
        JournalEntry {
            key: Bytes::from_static(b"k"),
            version: test_version(millis, 0, 1),
            deleted,
            value: None,
            ttl: Some(Duration::from_secs(1)),
            written_at: Instant::now(),
            mark: mark.map(|(offset, replid)| ReplicationMark {
                replid,
                offset,
                min_len: 40,
            }),
        }
    }

    /// A node promoted at offset 1,000 of history `OLD`, now on history `OTHER`.
    fn promoted() -> Lineage {
        Lineage {
            replid: OTHER.to_vec(),
            previous: Some((OLD.to_vec(), 1_000)),
        }
    }

    fn check(entry: &JournalEntry, observed: Observed, lineage: Option<&Lineage>, want: Verdict) {
        assert_eq!(
            verdict(entry, observed, lineage),
            want,
            "{entry:?} vs {observed} on {lineage:?}"
        );
    }

    #[test]
    fn journaled_writes_are_judged_by_version() {
        let lineage = promoted();
        let on = Some(&lineage);
        let set = entry(5, false, Some((2_000, OLD)));
        let delete = entry(5, true, Some((2_000, OLD)));
        check(&set, Observed::Value(test_version(5, 0, 1)), on, Verdict::Present);
        check(
            &set,
            Observed::Tombstone(test_version(6, 0, 1)),
            on,
            Verdict::Present,
        );
        check(&set, Observed::Value(test_version(4, 0, 1)), on, Verdict::Older);
        check(&set, Observed::Unversioned, on, Verdict::Unproven);
        check(
            &delete,
            Observed::Value(test_version(4, 9, 9)),
            on,
            Verdict::Older,
        );
        check(
            &delete,
            Observed::Tombstone(test_version(5, 0, 1)),
            on,
            Verdict::Present,
        );
        assert_eq!(journaled(&delete), Observed::Tombstone(test_version(5, 0, 1)));
    }

    #[test]
    fn an_absent_key_is_lost_only_if_the_offsets_show_it() {
        let lineage = promoted();
        let on = Some(&lineage);
        let absent = Observed::Absent;
        // The write started after the replica took over: lost.
        check(&entry(5, false, Some((2_000, OLD))), absent, on, Verdict::Missing);
        // It started before, but could not have ended before (offset + 40 bytes >= 1,000): lost.
        check(&entry(5, false, Some((960, OLD))), absent, on, Verdict::Missing);
        check(&entry(5, false, Some((999, OLD))), absent, on, Verdict::Missing);
        // It could have ended before: the replica had it, so the absence is a later delete.
        check(&entry(5, false, Some((959, OLD))), absent, on, Verdict::Unproven);
        check(&entry(5, false, Some((0, OLD))), absent, on, Verdict::Unproven);
        // Written on the node's own history, or on a history it does not continue, or unmarked.
        check(
            &entry(5, false, Some((2_000, OTHER))),
            absent,
            on,
            Verdict::Unproven,
        );
        check(
            &entry(5, false, Some((2_000, [b'c'; 40]))),
            absent,
            on,
            Verdict::Unproven,
        );
        check(&entry(5, false, None), absent, on, Verdict::Unproven);
        // No INFO from the node, or a node never promoted.
        check(
            &entry(5, false, Some((2_000, OLD))),
            absent,
            None,
            Verdict::Unproven,
        );
        let never = Lineage {
            replid: OLD.to_vec(),
            previous: None,
        };
        check(
            &entry(5, false, Some((2_000, OLD))),
            absent,
            Some(&never),
            Verdict::Unproven,
        );
    }

    #[test]
    fn only_failover_events_are_failovers() {
        let event = ClientEvent::FailoverObserved {
            old_primary: "a:1".into(),
            new_primary: "b:2".into(),
            slots: vec![(0, 5460)],
            at: SystemTime::now(),
        };
        let failover = Failover::from_event(&event).unwrap();
        assert_eq!(
            (failover.new_primary.as_str(), failover.slots),
            ("b:2", vec![SlotRange::new(0, 5460).unwrap()])
        );
        let other = ClientEvent::NodeDown {
            node: "a:1".into(),
            at: SystemTime::now(),
        };
        assert_eq!(Failover::from_event(&other), None);
    }
}
