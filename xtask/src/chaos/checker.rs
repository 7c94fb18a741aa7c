//! The rules `chaos safety` checks over a whole history, per key, as plain functions over plain data.
//!
//! Definitions:
//! - A write is **acknowledged** when the caller was told it is stored ([`Outcome::Ok`](super::history::Outcome::Ok)); it is
//!   **WAIT-acknowledged** when, in addition, `WAIT 1` reported at least one replica. WAIT-acknowledged
//!   writes are the product's promise. Writes acknowledged without `WAIT` may be lost when a replica is
//!   promoted (Redis replicates asynchronously and documents this), so a loss of one is flagged only
//!   where no fault that promotes a replica ([`FaultKind::may_lose_unwaited_writes`](super::history::FaultKind::may_lose_unwaited_writes)) could explain it.
//! - Versions are compared as ranges ([`Span`]): "older" means older for every version in the range,
//!   so a cache write whose exact version is unknown is never blamed on a guess.
//! - A read's version is the one it returned (versioned reads) or the version of the write whose unique
//!   value it returned.
//!
//! The checks:
//! 1. **lost write**: after a set WAIT-acknowledged with version v completed, every read that starts
//!    later returns v or newer, or absent only if a delete that may be newer than v was invoked before
//!    the read completed.
//! 2. **regression**: once a client has read version v of an acknowledged write, none of its later
//!    reads (started after that read completed) returns an older version, or absent without a delete
//!    that may be newer than v. Excused when v's write was not WAIT-acknowledged and a fault that
//!    promotes a replica overlapped the two reads.
//! 3. **delete undone**: after a delete WAIT-acknowledged with version vd completed, a read that starts
//!    later returns absent or a version newer than vd.
//! 4. **deadline**: no call takes longer than its deadline (the sum of its commands' timeouts) plus
//!    [`DEADLINE_SLACK`].
//! 6. **clock**: no version issued by this process's clock is more than [`CLOCK_BOUND_MS`] ahead of the
//!    wall clock when its write completed (a far-future version seen elsewhere must not be adopted).
//! 7. **unknown value**: every value read maps back to a write of this run.
//!
//! Check 5 (memory) is measured by the runner, not over the history.
//! fred's plain operations (the contrast) are checked by 1, 3 and 4 only, with real-time intervals in
//! place of versions.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use super::history::{FOREIGN, History, Kind, Op, Path, Span, ValueId};

/// Scheduling slack on top of a call's deadline: two cores run six servers, the clients and the faults.
pub(super) const DEADLINE_SLACK: Duration = Duration::from_millis(300);
/// How far ahead of the wall clock a version from this process's clock may be: far above any real
/// drift between the clock reads, far below the skewed client's 10 minutes.
pub(super) const CLOCK_BOUND_MS: u64 = 60_000;

/// The checks, numbered as in the module doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum Check {
    LostWrite,
    Regression,
    DeleteUndone,
    Deadline,
    Memory,
    Clock,
    UnknownValue,
}

impl Check {
    pub(super) const EVERY: [Check; 7] = [
        Check::LostWrite,
        Check::Regression,
        Check::DeleteUndone,
        Check::Deadline,
        Check::Memory,
        Check::Clock,
        Check::UnknownValue,
    ];

    pub(super) fn name(self) -> &'static str {
        match self {
            Check::LostWrite => "1 no WAIT-acked write lost",
            Check::Regression => "2 no read regression",
            Check::DeleteUndone => "3 no key back after a WAIT-acked delete",
            Check::Deadline => "4 no call past its deadline",
            Check::Memory => "5 memory bounded",
            Check::Clock => "6 process clock near the wall clock",
            Check::UnknownValue => "7 every value read was written",
        }
    }
}

/// One violation: the operation that shows it and, where there is one, the operation it contradicts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Anomaly {
    pub(super) check: Check,
    pub(super) key: u16,
    /// Index into `History::ops`.
    pub(super) op: usize,
    pub(super) cause: Option<usize>,
    pub(super) text: String,
}

/// Every anomaly of checks 1–4, 6 and 7 in `history`, ordered by key and operation.
pub(super) fn check(history: &History) -> Vec<Anomaly> {
    let ops = &history.ops;
    let mut written: HashMap<ValueId, usize> = HashMap::new();
    let mut by_key: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
    for (i, op) in ops.iter().enumerate() {
        if op.kind == Kind::Set
            && let Some(value) = op.value
        {
            written.insert(value, i);
        }
        by_key.entry(op.key).or_default().push(i);
    }
    let mut anomalies = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        if let Some(a) = deadline(i, op) {
            anomalies.push(a);
        }
    }
    for (&key, indices) in &mut by_key {
        indices.sort_by_key(|&i| (ops[i].invoke_us, i));
        let reads = resolve_reads(ops, indices, &written, &mut anomalies);
        anomalies.extend(check_key(history, key, indices, &reads));
    }
    anomalies.extend(clock_ahead(history));
    anomalies.sort_by_key(|a| (a.key, a.op, a.check));
    anomalies
}

fn deadline(i: usize, op: &Op) -> Option<Anomaly> {
    if op.budget_ms == 0 {
        return None;
    }
    let bound = Duration::from_millis(u64::from(op.budget_ms)) + DEADLINE_SLACK;
    let took = Duration::from_micros(op.duration_us());
    (took > bound).then(|| Anomaly {
        check: Check::Deadline,
        key: op.key,
        op: i,
        cause: None,
        text: format!(
            "call took {} ms, its deadline is {} ms (+{} ms slack)",
            took.as_millis(),
            op.budget_ms,
            DEADLINE_SLACK.as_millis()
        ),
    })
}

/// A successful read's result: `None` for absent, else the version it returned and the write behind it.
type ReadResult = Option<(Span, Option<usize>)>;

/// The result of each successful read of a key (failed reads say nothing); unknown values are anomalies.
fn resolve_reads(
    ops: &[Op],
    indices: &[usize],
    written: &HashMap<ValueId, usize>,
    anomalies: &mut Vec<Anomaly>,
) -> HashMap<usize, ReadResult> {
    let mut reads = HashMap::new();
    for &i in indices {
        let op = &ops[i];
        if !op.is_read() || !op.outcome.acknowledged() {
            continue;
        }
        let Some(value) = op.value else {
            reads.insert(i, None);
            continue;
        };
        let write = written.get(&value).copied().filter(|&w| ops[w].key == op.key);
        let span = op.version.or_else(|| write.and_then(|w| ops[w].version));
        match span {
            Some(span) if value != FOREIGN => {
                reads.insert(i, Some((span, write)));
            }
            _ => anomalies.push(Anomaly {
                check: Check::UnknownValue,
                key: op.key,
                op: i,
                cause: None,
                text: if value == FOREIGN {
                    "read returned bytes no writer of this run wrote".into()
                } else {
                    format!(
                        "read returned {}, which no write of this key carried",
                        value.text()
                    )
                },
            }),
        }
    }
    reads
}

/// The newest (by lowest version bound) of `writes` that completed before `before_us`.
struct Newest {
    /// (completed at, index), by completion time.
    done: Vec<(u64, usize)>,
    /// Per position in `done`: the index with the highest `lo` up to there.
    best: Vec<usize>,
}

impl Newest {
    fn new(ops: &[Op], writes: impl Iterator<Item = usize>) -> Newest {
        let mut done: Vec<(u64, usize)> = writes.map(|i| (ops[i].complete_us, i)).collect();
        done.sort_unstable();
        let mut best: Vec<usize> = Vec::with_capacity(done.len());
        for &(_, i) in &done {
            let keep = match best.last() {
                Some(&b) if span(&ops[b]).lo >= span(&ops[i]).lo => b,
                _ => i,
            };
            best.push(keep);
        }
        Newest { done, best }
    }

    fn before(&self, before_us: u64) -> Option<usize> {
        let n = self.done.partition_point(|&(at, _)| at < before_us);
        n.checked_sub(1).map(|p| self.best[p])
    }
}

fn span(op: &Op) -> Span {
    op.version.unwrap_or(Span { lo: 0, hi: 0 })
}

fn check_key(
    history: &History,
    key: u16,
    indices: &[usize],
    reads: &HashMap<usize, ReadResult>,
) -> Vec<Anomaly> {
    let ops = &history.ops;
    let has_version = |i: &usize| ops[*i].version.is_some();
    let acked_sets = Newest::new(
        ops,
        indices
            .iter()
            .copied()
            .filter(has_version)
            .filter(|&i| ops[i].kind == Kind::Set && ops[i].outcome.wait_acknowledged()),
    );
    let acked_deletes = Newest::new(
        ops,
        indices
            .iter()
            .copied()
            .filter(has_version)
            .filter(|&i| ops[i].kind == Kind::Delete && ops[i].outcome.wait_acknowledged()),
    );
    let deletes: Vec<usize> = indices
        .iter()
        .copied()
        .filter(|&i| ops[i].kind == Kind::Delete && ops[i].outcome.may_have_written())
        .collect();
    // A delete that may be newer than `than` was invoked before `by_us`: absence is explained.
    let deleted_after = |than: Span, by_us: u64| {
        deletes
            .iter()
            .any(|&d| ops[d].invoke_us < by_us && ops[d].version.is_none_or(|v| v.hi > than.lo))
    };
    let mut anomalies = Vec::new();
    let mut flagged: HashSet<(Check, usize)> = HashSet::new();
    // Per client: the newest acknowledged version it read so far, and that read.
    let mut seen: HashMap<u16, (Span, usize, usize)> = HashMap::new();
    for &r in indices {
        let Some(result) = reads.get(&r) else { continue };
        let read = &ops[r];
        if let Some(w) = acked_sets.before(read.invoke_us) {
            let lost = match result {
                Some((got, _)) => got.older_than(span(&ops[w])),
                None => !deleted_after(span(&ops[w]), read.complete_us),
            };
            if lost && flagged.insert((Check::LostWrite, w)) {
                anomalies.push(Anomaly {
                    check: Check::LostWrite,
                    key,
                    op: r,
                    cause: Some(w),
                    text: format!(
                        "read started after op {w} (set with WAIT, acked) completed but returned {}",
                        describe(result)
                    ),
                });
            }
        }
        if let Some(d) = acked_deletes.before(read.invoke_us)
            && let Some((got, _)) = result
            && got.older_than(span(&ops[d]))
            && flagged.insert((Check::DeleteUndone, d))
        {
            anomalies.push(Anomaly {
                check: Check::DeleteUndone,
                key,
                op: r,
                cause: Some(d),
                text: format!(
                    "read started after op {d} (delete with WAIT, acked) completed but returned {}",
                    describe(result)
                ),
            });
        }
        if read.path == Path::Fred {
            continue;
        }
        if let Some(&(best, best_read, best_write)) = seen.get(&read.client) {
            let older = match result {
                Some((got, _)) => got.older_than(best),
                None => !deleted_after(best, read.complete_us),
            };
            let excused = !ops[best_write].outcome.wait_acknowledged()
                && history.faults.iter().any(|f| {
                    f.kind.may_lose_unwaited_writes()
                        && f.start_us < read.complete_us
                        && f.end_us > ops[best_read].invoke_us
                });
            if older && !excused {
                anomalies.push(Anomaly {
                    check: Check::Regression,
                    key,
                    op: r,
                    cause: Some(best_read),
                    text: format!(
                        "client c{} read op {best_write}'s value at op {best_read}, then {} here",
                        read.client,
                        describe(result)
                    ),
                });
            }
            if older {
                // Start over from what it reads now, so one event is reported once per client.
                seen.remove(&read.client);
            }
        }
        if let Some((got, Some(w))) = result
            && ops[*w].outcome.acknowledged()
            && seen.get(&read.client).is_none_or(|(best, _, _)| got.lo > best.lo)
        {
            seen.insert(read.client, (*got, r, *w));
        }
    }
    anomalies
}

fn describe(result: &ReadResult) -> String {
    match result {
        None => "absent, with no newer delete invoked".into(),
        Some((_, Some(w))) => format!("the older value of op {w}"),
        Some((_, None)) => "an older value".into(),
    }
}

/// Check 6: writes whose version from this process's clock runs ahead of the wall clock; one per key.
fn clock_ahead(history: &History) -> Vec<Anomaly> {
    let mut flagged = HashSet::new();
    let mut anomalies = Vec::new();
    // In time order, so that each key's first such write is the one shown.
    let mut order: Vec<usize> = (0..history.ops.len()).collect();
    order.sort_by_key(|&i| (history.ops[i].complete_us, i));
    for i in order {
        let op = &history.ops[i];
        let Some(version) = op.version else { continue };
        if !op.is_write() || !op.path.honest_clock() {
            continue;
        }
        let wall = history.start_wall_ms + op.complete_us / 1000;
        let ahead = version.lo_millis().saturating_sub(wall);
        if ahead > CLOCK_BOUND_MS && flagged.insert(op.key) {
            anomalies.push(Anomaly {
                check: Check::Clock,
                key: op.key,
                op: i,
                cause: None,
                text: format!(
                    "this process issued a version {:.1} s ahead of the wall clock (bound {} s): its clock \
                     adopted a far-future version",
                    ahead as f64 / 1000.0,
                    CLOCK_BOUND_MS / 1000
                ),
            });
        }
    }
    anomalies
}

/// Rows of the key's history around an anomaly: the operations near it in time and the one it
/// contradicts.
pub(super) fn context(history: &History, anomaly: &Anomaly) -> Vec<usize> {
    let ops = &history.ops;
    let mut on_key: Vec<usize> = (0..ops.len()).filter(|&i| ops[i].key == anomaly.key).collect();
    on_key.sort_by_key(|&i| (ops[i].invoke_us, i));
    let at = on_key.iter().position(|&i| i == anomaly.op).unwrap_or(0);
    let mut rows: Vec<usize> = on_key[at.saturating_sub(8)..(at + 3).min(on_key.len())].to_vec();
    if let Some(cause) = anomaly.cause
        && !rows.contains(&cause)
    {
        rows.push(cause);
    }
    rows.sort_by_key(|&i| (ops[i].invoke_us, i));
    rows
}

#[cfg(test)]
mod tests {
    use consistency::{Hlc, Version, WriterId};

    use super::super::history::{FaultKind, FaultWindow, Outcome};
    use super::*;

    /// Builds ops on key 0 with exact versions `(hlc millis)` for versioned paths.
    struct H {
        history: History,
    }

    const ACK: Outcome = Outcome::Ok { acks: Some(1) };
    const OK: Outcome = Outcome::Ok { acks: None };

    impl H {
        fn new() -> H {
            H {
                history: History {
                    start_wall_ms: 1_000_000,
                    ..History::default()
                },
            }
        }

        fn op(
            &mut self,
            client: u16,
            kind: Kind,
            at_ms: (u64, u64),
            value: Option<u32>,
            version: Option<u64>,
            outcome: Outcome,
        ) -> usize {
            let path = if client >= 100 {
                Path::Fred
            } else {
                Path::Versioned
            };
            let version = match path {
                Path::Fred if kind != Kind::Get => Some(Span {
                    lo: u128::from(at_ms.0 * 1000),
                    hi: u128::from(at_ms.1 * 1000),
                }),
                _ => version.map(|ms| Span::exact(Version::new(Hlc::new(ms, 0), WriterId(1)))),
            };
            self.history.ops.push(Op {
                client,
                path,
                key: 0,
                kind,
                wait: matches!(outcome, Outcome::Ok { acks: Some(_) }),
                invoke_us: at_ms.0 * 1000,
                complete_us: at_ms.1 * 1000,
                budget_ms: 1_000,
                value: value.map(|seq| ValueId {
                    client: if kind == Kind::Get { 0 } else { client },
                    seq,
                }),
                version,
                outcome,
            });
            self.history.ops.len() - 1
        }

        fn set(&mut self, client: u16, at: (u64, u64), seq: u32, version: u64, outcome: Outcome) -> usize {
            self.op(client, Kind::Set, at, Some(seq), Some(version), outcome)
        }

        fn delete(&mut self, client: u16, at: (u64, u64), version: u64, outcome: Outcome) -> usize {
            self.op(client, Kind::Delete, at, None, Some(version), outcome)
        }

        /// A read by `client` that returned the value of the write `(writer, seq)`, or absent.
        fn get(&mut self, client: u16, at: (u64, u64), returned: Option<(u16, u32)>) -> usize {
            let i = self.op(client, Kind::Get, at, None, None, OK);
            self.history.ops[i].value = returned.map(|(client, seq)| ValueId { client, seq });
            i
        }

        fn fault(&mut self, kind: FaultKind, at: (u64, u64)) {
            self.history.faults.push(FaultWindow {
                kind,
                start_us: at.0 * 1000,
                end_us: at.1 * 1000,
                detail: String::new(),
            });
        }
    }

    /// Checks that `history` has exactly the anomalies `want` (check, op index).
    fn check_anomalies(h: &H, want: &[(Check, usize)]) {
        let got: Vec<(Check, usize)> = check(&h.history).iter().map(|a| (a.check, a.op)).collect();
        assert_eq!(got, want, "{:#?}", check(&h.history));
    }

    #[test]
    fn a_clean_history_passes() {
        let mut h = H::new();
        h.set(1, (0, 5), 1, 1_000_001, ACK);
        h.get(2, (6, 7), Some((1, 1)));
        h.set(2, (8, 9), 1, 1_000_009, OK);
        h.get(1, (10, 11), Some((2, 1)));
        h.delete(1, (12, 13), 1_000_012, ACK);
        h.get(2, (14, 15), None);
        // A concurrent older write that lost is a stale outcome, and a read during the write may see
        // either value.
        h.set(3, (16, 20), 1, 1_000_016, ACK);
        h.get(1, (17, 18), None);
        h.get(2, (21, 22), Some((3, 1)));
        check_anomalies(&h, &[]);
    }

    #[test]
    fn a_lost_wait_acked_write_is_flagged() {
        let mut h = H::new();
        h.set(1, (0, 1), 1, 1_000_000, OK);
        let acked = h.set(1, (2, 5), 2, 1_000_002, ACK);
        let read = h.get(2, (6, 7), Some((1, 1)));
        let absent = h.get(3, (8, 9), None);
        let a = check(&h.history);
        assert_eq!(a.len(), 1, "one anomaly per lost write: {a:#?}");
        assert_eq!(
            (a[0].check, a[0].op, a[0].cause),
            (Check::LostWrite, read, Some(acked))
        );
        // Absent, without a delete, is a loss too.
        let mut h = H::new();
        let acked = h.set(1, (2, 5), 2, 1_000_002, ACK);
        h.get(3, (8, 9), None);
        assert_eq!(check(&h.history)[0].cause, Some(acked));
        let _ = absent;
    }

    #[test]
    fn absence_after_a_newer_delete_is_not_a_loss() {
        let mut h = H::new();
        h.set(1, (2, 5), 2, 1_000_002, ACK);
        // Not acknowledged (it timed out), but invoked before the read completed: it may have won.
        h.delete(2, (6, 9), 1_000_006, Outcome::Timeout(0));
        h.get(3, (7, 8), None);
        check_anomalies(&h, &[]);
        // An older delete explains nothing.
        let mut h = H::new();
        h.delete(2, (0, 1), 999_000, OK);
        let acked = h.set(1, (2, 5), 2, 1_000_002, ACK);
        let read = h.get(3, (7, 8), None);
        check_anomalies(&h, &[(Check::LostWrite, read)]);
        let _ = acked;
    }

    #[test]
    fn a_loss_without_wait_is_not_flagged_across_a_failover() {
        // Redis documents that a write acknowledged without WAIT may be lost when a replica is promoted.
        let mut h = H::new();
        h.set(1, (0, 1), 1, 1_000_000, OK);
        h.set(1, (2, 3), 2, 1_000_002, OK);
        h.get(2, (4, 5), Some((1, 2)));
        h.fault(FaultKind::KillMaster, (6, 20));
        h.get(2, (21, 22), Some((1, 1)));
        check_anomalies(&h, &[]);
        // The only write of a key, lost: absent after the failover.
        let mut h = H::new();
        h.set(1, (0, 1), 1, 1_000_000, OK);
        h.get(2, (4, 5), Some((1, 1)));
        h.fault(FaultKind::PauseMaster, (6, 20));
        h.get(2, (21, 22), None);
        check_anomalies(&h, &[]);
    }

    #[test]
    fn a_regression_is_flagged_without_a_failover_or_with_wait() {
        // No fault: a rollback-like undo of an acknowledged write.
        let mut h = H::new();
        h.set(1, (0, 1), 1, 1_000_000, OK);
        h.set(1, (2, 3), 2, 1_000_002, OK);
        h.get(2, (4, 5), Some((1, 2)));
        let back = h.get(2, (6, 7), Some((1, 1)));
        h.get(2, (8, 9), Some((1, 1)));
        check_anomalies(&h, &[(Check::Regression, back)]);
        // A fault that promotes a replica does not excuse losing a WAIT-acknowledged write: the read
        // after it is flagged by check 2 (the read saw it) and by check 1 (it had completed).
        let mut h = H::new();
        h.set(1, (0, 1), 1, 1_000_000, OK);
        h.set(1, (2, 3), 2, 1_000_002, ACK);
        h.get(2, (4, 5), Some((1, 2)));
        h.fault(FaultKind::PauseMaster, (6, 20));
        let back = h.get(2, (21, 22), Some((1, 1)));
        check_anomalies(&h, &[(Check::LostWrite, back), (Check::Regression, back)]);
        // A fault that promotes nothing excuses nothing.
        let mut h = H::new();
        h.set(1, (2, 3), 2, 1_000_002, OK);
        h.get(2, (4, 5), Some((1, 2)));
        h.fault(FaultKind::MigrateSlots, (6, 20));
        let gone = h.get(2, (21, 22), None);
        check_anomalies(&h, &[(Check::Regression, gone)]);
    }

    #[test]
    fn a_key_back_after_a_wait_acked_delete_is_flagged() {
        let mut h = H::new();
        h.set(1, (0, 1), 1, 1_000_000, OK);
        let deleted = h.delete(2, (2, 5), 1_000_002, ACK);
        let back = h.get(3, (6, 7), Some((1, 1)));
        let a = check(&h.history);
        assert_eq!(
            a.iter().map(|a| (a.check, a.op, a.cause)).collect::<Vec<_>>(),
            vec![(Check::DeleteUndone, back, Some(deleted))]
        );
        // A newer set after the delete is fine.
        let mut h = H::new();
        h.delete(2, (2, 5), 1_000_002, ACK);
        h.set(1, (6, 7), 1, 1_000_006, OK);
        h.get(3, (8, 9), Some((1, 1)));
        check_anomalies(&h, &[]);
    }

    #[test]
    fn a_call_past_its_deadline_is_flagged() {
        let mut h = H::new();
        h.get(1, (0, 1_000 + DEADLINE_SLACK.as_millis() as u64), None);
        let late = h.get(1, (2_000, 3_000 + DEADLINE_SLACK.as_millis() as u64 + 1), None);
        check_anomalies(&h, &[(Check::Deadline, late)]);
    }

    #[test]
    fn a_process_clock_far_ahead_is_flagged() {
        let mut h = H::new();
        // start_wall_ms is 1_000_000: a version 59 s ahead passes, one 10 minutes ahead does not.
        h.set(1, (0, 1), 1, 1_059_000, OK);
        let ahead = h.set(1, (2, 3), 2, 1_600_000, Outcome::Stale);
        check_anomalies(&h, &[(Check::Clock, ahead)]);
    }

    #[test]
    fn values_never_written_are_flagged() {
        let mut h = H::new();
        let read = h.get(1, (0, 1), Some((5, 5)));
        let foreign = h.get(1, (2, 3), None);
        h.history.ops[foreign].value = Some(FOREIGN);
        check_anomalies(&h, &[(Check::UnknownValue, read), (Check::UnknownValue, foreign)]);
    }

    #[test]
    fn fred_contrast_uses_real_time_order() {
        // Client ids from 100 go through fred: plain SET+WAIT, GET, DEL; the write's span is its call.
        let mut h = H::new();
        h.set(100, (0, 1), 1, 0, OK);
        let acked = h.set(101, (2, 5), 1, 0, ACK);
        // Concurrent with the acked write: may have been applied after it.
        h.set(102, (3, 8), 1, 0, OK);
        h.get(103, (9, 10), Some((102, 1)));
        check_anomalies(&h, &[]);
        let lost = h.get(103, (11, 12), Some((100, 1)));
        check_anomalies(&h, &[(Check::LostWrite, lost)]);
        let _ = acked;
        // Regressions are not checked for fred (no versions: its contrast is checks 1, 3, 4).
        let mut h = H::new();
        h.set(100, (0, 1), 1, 0, OK);
        h.set(100, (2, 3), 2, 0, OK);
        h.get(103, (4, 5), Some((100, 2)));
        h.get(103, (6, 7), Some((100, 1)));
        check_anomalies(&h, &[]);
    }

    #[test]
    fn context_shows_the_key_around_the_anomaly_and_its_cause() {
        let mut h = H::new();
        let acked = h.set(1, (0, 5), 1, 1_000_000, ACK);
        for i in 0..20 {
            h.get(2, (10 + 2 * i, 11 + 2 * i), Some((1, 1)));
        }
        h.set(3, (60, 61), 1, 999_000, OK);
        let bad = h.get(4, (70, 71), Some((3, 1)));
        let a = check(&h.history);
        assert_eq!(a.len(), 1, "{a:#?}");
        let rows = context(&h.history, &a[0]);
        assert!(rows.contains(&acked) && rows.contains(&bad), "{rows:?}");
        assert!(rows.len() <= 12, "{rows:?}");
        let text = super::super::history::table(&h.history, &rows, &[bad], &|k| format!("k{k}"));
        assert!(text.contains(">>") && text.contains("set+WAIT"), "{text}");
    }
}
