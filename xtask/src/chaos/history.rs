//! What `chaos safety` records: one [`Op`] per call (invoke and completion time, client, key, kind,
//! value and version written or read, outcome), the fault windows, and the readable table of a key's
//! history that an anomaly is printed with.
//!
//! Records are small plain values (no strings: error texts are interned, values are ids) so that the
//! history of a long run stays within its budget ([`OP_BUDGET`] operations).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use consistency::Version;

/// Most operations a run records. At about 100 bytes each this bounds the history to about 200 MB;
/// the clients stop (and the run says so) when it is reached, rather than growing without bound.
pub(super) const OP_BUDGET: usize = 2_000_000;
/// Distinct error kinds kept; further kinds share one "other" entry.
const ERROR_KINDS: usize = 64;

/// Client ids of the writers that are not load clients.
pub(super) const FILL_CLIENT: u16 = 9_000;
pub(super) const WARMUP_CLIENT: u16 = 9_001;
pub(super) const SKEWED_CLIENT: u16 = 9_002;

/// Which API an operation went through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Path {
    /// `cache_facade::Cache` with its default (versioned) settings.
    Cache,
    /// `consistency::Versioned` directly, versions from the process clock.
    Versioned,
    /// `consistency::Versioned::set_with_version` with versions from a clock 10 minutes ahead.
    Skewed,
    /// An entry of a warm-up (with rollback) through `Cache::warm_up`.
    Warmup,
    /// fred's cluster client: plain SET/GET/DEL and WAIT, the contrast.
    Fred,
}

impl Path {
    fn name(self) -> &'static str {
        match self {
            Path::Cache => "cache",
            Path::Versioned => "versioned",
            Path::Skewed => "skewed+10min",
            Path::Warmup => "warm-up",
            Path::Fred => "fred",
        }
    }

    /// Whether this path's versions come from this process's clock (and so must stay near the wall
    /// clock).
    pub(super) fn honest_clock(self) -> bool {
        matches!(self, Path::Cache | Path::Versioned | Path::Warmup)
    }
}

/// What an operation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Get,
    Set,
    Delete,
}

/// A written value: the writing client and its sequence number, so every read maps back to exactly
/// one write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct ValueId {
    pub(super) client: u16,
    pub(super) seq: u32,
}

impl ValueId {
    /// The text stored as the value.
    pub(super) fn text(self) -> String {
        format!("{}.{}", self.client, self.seq)
    }

    /// The inverse of [`ValueId::text`]; `None` for text no writer of this run produced.
    pub(super) fn parse(text: &str) -> Option<ValueId> {
        let (client, seq) = text.split_once('.')?;
        Some(ValueId {
            client: client.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

/// A version, exactly (`lo == hi`) or as bounds: versions ordered as one integer (clock value, then
/// writer id). A write through the cache does not return its version, but the process clock is read
/// before and after the call, and the version was issued in between. fred's plain writes have no
/// version: their span is the call's real-time interval (microseconds), which orders them only where
/// one call ended before the other began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Span {
    pub(super) lo: u128,
    pub(super) hi: u128,
}

impl Span {
    pub(super) fn exact(version: Version) -> Span {
        let v = version_key(version);
        Span { lo: v, hi: v }
    }

    /// Whether every version in `self` is older than every version in `other`.
    pub(super) fn older_than(self, other: Span) -> bool {
        self.hi < other.lo
    }

    /// The milliseconds of the clock value of `lo` (for versions, not for fred's spans).
    pub(super) fn lo_millis(self) -> u64 {
        (self.lo >> 80) as u64
    }

    fn render(self, path: Path) -> String {
        if path == Path::Fred {
            return String::new();
        }
        let part = |v: u128| format!("{}.{}", (v >> 80) as u64, ((v >> 64) & 0xFFFF) as u16);
        if self.lo == self.hi {
            part(self.lo)
        } else {
            format!("{}..{}", part(self.lo), part(self.hi))
        }
    }
}

/// A version as one integer in version order.
pub(super) fn version_key(version: Version) -> u128 {
    (u128::from(version.hlc.as_raw()) << 64) | u128::from(version.writer.0)
}

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Done: a read answered, a write stored (with `acks` replicas confirming, when it asked to WAIT).
    Ok { acks: Option<u8> },
    /// A versioned write that found a newer (or equal) version stored: nothing changed.
    Stale,
    /// Failed; the error kind's index in [`History::errors`].
    Error(u16),
    /// Failed because its deadline passed; the error kind's index.
    Timeout(u16),
    /// A warm-up entry: the warm-up reports counts, not which entry it wrote or rolled back.
    Unknown,
}

impl Outcome {
    /// A write the caller was told is stored.
    pub(super) fn acknowledged(self) -> bool {
        matches!(self, Outcome::Ok { .. })
    }

    /// A write acknowledged by its primary and, through `WAIT`, by at least one replica: the product's
    /// promise.
    pub(super) fn wait_acknowledged(self) -> bool {
        matches!(self, Outcome::Ok { acks: Some(n) } if n >= 1)
    }

    /// A write that may be stored (acknowledged, failed on the way, or a warm-up entry).
    pub(super) fn may_have_written(self) -> bool {
        !matches!(self, Outcome::Stale)
    }
}

/// One call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Op {
    pub(super) client: u16,
    pub(super) path: Path,
    pub(super) key: u16,
    pub(super) kind: Kind,
    /// Whether the write asked for `WAIT 1`.
    pub(super) wait: bool,
    /// Microseconds since the run started.
    pub(super) invoke_us: u64,
    pub(super) complete_us: u64,
    /// The call's deadline (the sum of the timeouts of the commands it sends); 0 for none.
    pub(super) budget_ms: u32,
    /// A set's value; a read's value (`None`: absent). `Some` with an unknown id when a read returned
    /// bytes no writer of this run wrote.
    pub(super) value: Option<ValueId>,
    /// A write's version (or bounds); a read's version when the path returns it.
    pub(super) version: Option<Span>,
    pub(super) outcome: Outcome,
}

impl Op {
    pub(super) fn is_read(&self) -> bool {
        self.kind == Kind::Get
    }

    pub(super) fn is_write(&self) -> bool {
        !self.is_read()
    }

    pub(super) fn duration_us(&self) -> u64 {
        self.complete_us.saturating_sub(self.invoke_us)
    }
}

/// The kinds of fault the schedule injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum FaultKind {
    KillMaster,
    PauseMaster,
    PauseReplica,
    ManualFailover,
    MigrateSlots,
    WarmupRollback,
    SkewedClock,
}

impl FaultKind {
    pub(super) const EVERY: [FaultKind; 7] = [
        FaultKind::KillMaster,
        FaultKind::PauseMaster,
        FaultKind::PauseReplica,
        FaultKind::ManualFailover,
        FaultKind::MigrateSlots,
        FaultKind::WarmupRollback,
        FaultKind::SkewedClock,
    ];

    pub(super) fn name(self) -> &'static str {
        match self {
            FaultKind::KillMaster => "kill -9 master (then restart)",
            FaultKind::PauseMaster => "SIGSTOP master past node timeout",
            FaultKind::PauseReplica => "SIGSTOP replica",
            FaultKind::ManualFailover => "manual failover",
            FaultKind::MigrateSlots => "slot migration",
            FaultKind::WarmupRollback => "warm-up with rollback",
            FaultKind::SkewedClock => "client clock 10 min ahead",
        }
    }

    /// Faults after which Redis documents that writes acknowledged without `WAIT` may be gone: a
    /// replica promoted without the primary's last writes (asynchronous replication).
    pub(super) fn may_lose_unwaited_writes(self) -> bool {
        matches!(self, FaultKind::KillMaster | FaultKind::PauseMaster)
    }
}

/// When a fault was in effect: from its injection until the cluster was healthy again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FaultWindow {
    pub(super) kind: FaultKind,
    pub(super) start_us: u64,
    pub(super) end_us: u64,
    pub(super) detail: String,
}

/// Everything a run recorded.
#[derive(Debug, Clone, Default)]
pub(super) struct History {
    pub(super) ops: Vec<Op>,
    pub(super) faults: Vec<FaultWindow>,
    /// Interned error kinds, indexed by [`Outcome::Error`] and [`Outcome::Timeout`].
    pub(super) errors: Vec<String>,
    /// Wall-clock milliseconds since the Unix epoch when the run started (time zero of the ops).
    pub(super) start_wall_ms: u64,
}

/// Error texts folded into kinds, shared by every client; and the operation budget.
#[derive(Debug, Default)]
pub(super) struct Recorder {
    errors: Mutex<Vec<String>>,
    recorded: AtomicUsize,
}

impl Recorder {
    /// The outcome of a failed call: a timeout when the text says so, else an error.
    pub(super) fn failure(&self, text: &str) -> Outcome {
        let kind = super::traffic::error_kind(text);
        let lower = kind.to_ascii_lowercase();
        let index = {
            let mut errors = self.errors.lock().unwrap_or_else(PoisonError::into_inner);
            match errors.iter().position(|e| *e == kind) {
                Some(i) => i,
                None if errors.len() < ERROR_KINDS - 1 => {
                    errors.push(kind);
                    errors.len() - 1
                }
                None => {
                    let other = "(other error kinds)".to_string();
                    match errors.iter().position(|e| *e == other) {
                        Some(i) => i,
                        None => {
                            errors.push(other);
                            errors.len() - 1
                        }
                    }
                }
            }
        } as u16;
        if lower.contains("timed out") || lower.contains("timeout") {
            Outcome::Timeout(index)
        } else {
            Outcome::Error(index)
        }
    }

    /// Counts `n` recorded operations; `false` once the budget is spent (the caller stops).
    pub(super) fn admit(&self, n: usize) -> bool {
        self.recorded.fetch_add(n, Ordering::Relaxed) + n <= OP_BUDGET
    }

    pub(super) fn recorded(&self) -> usize {
        self.recorded.load(Ordering::Relaxed)
    }

    pub(super) fn errors(&self) -> Vec<String> {
        self.errors.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// A readable table of the operations `rows` (indices into `history.ops`), marking `marked` ones.
pub(super) fn table(
    history: &History,
    rows: &[usize],
    marked: &[usize],
    keys: &dyn Fn(u16) -> String,
) -> String {
    let headers = [
        "",
        "#",
        "invoke ms",
        "done ms",
        "client",
        "path",
        "op",
        "key",
        "value",
        "version",
        "outcome",
    ];
    let cells: Vec<[String; 11]> = rows
        .iter()
        .map(|&i| {
            let op = &history.ops[i];
            let kind = match (op.kind, op.wait) {
                (Kind::Get, _) => "get",
                (Kind::Set, false) => "set",
                (Kind::Set, true) => "set+WAIT",
                (Kind::Delete, false) => "delete",
                (Kind::Delete, true) => "delete+WAIT",
            };
            let value = match (op.kind, op.value) {
                (Kind::Delete, _) => String::new(),
                (Kind::Get, None) => "(absent)".into(),
                (_, Some(FOREIGN)) => "(foreign bytes)".into(),
                (_, Some(v)) => v.text(),
                (Kind::Set, None) => String::new(),
            };
            let error = |i: u16| history.errors.get(usize::from(i)).cloned().unwrap_or_default();
            let outcome = match op.outcome {
                Outcome::Ok { acks: Some(n) } => format!("ok, {n} replica(s) acked"),
                Outcome::Ok { acks: None } => "ok".into(),
                Outcome::Stale => "stale (newer stored)".into(),
                Outcome::Error(i) => format!("error: {}", error(i)),
                Outcome::Timeout(i) => format!("timeout: {}", error(i)),
                Outcome::Unknown => "written or skipped; maybe rolled back".into(),
            };
            [
                if marked.contains(&i) {
                    ">>".into()
                } else {
                    String::new()
                },
                i.to_string(),
                format!("{:.1}", op.invoke_us as f64 / 1000.0),
                format!("{:.1}", op.complete_us as f64 / 1000.0),
                client_name(op.client),
                op.path.name().into(),
                kind.into(),
                keys(op.key),
                value,
                op.version.map(|s| s.render(op.path)).unwrap_or_default(),
                outcome,
            ]
        })
        .collect();
    let mut widths = headers.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |row: &[String]| {
        let mut text = String::new();
        for (cell, width) in row.iter().zip(widths) {
            let _ = write!(text, "{cell:<width$}  ");
        }
        out.push_str("    ");
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&headers.map(String::from));
    for row in &cells {
        line(row);
    }
    out
}

fn client_name(client: u16) -> String {
    match client {
        FILL_CLIENT => "fill".into(),
        WARMUP_CLIENT => "warm-up".into(),
        SKEWED_CLIENT => "skewed".into(),
        c => format!("c{c}"),
    }
}

/// The value id recorded for bytes that no writer of this run wrote.
pub(super) const FOREIGN: ValueId = ValueId {
    client: u16::MAX,
    seq: u32::MAX,
};

#[cfg(test)]
mod tests {
    use consistency::{Hlc, WriterId};

    use super::*;

    #[test]
    fn values_round_trip_and_spans_order() {
        let id = ValueId { client: 7, seq: 42 };
        assert_eq!(ValueId::parse(&id.text()), Some(id));
        assert_eq!(ValueId::parse("fill"), None);
        assert_eq!(ValueId::parse("1.x"), None);
        let old = Span::exact(Version::new(Hlc::new(1_000, 0), WriterId(9)));
        let new = Span::exact(Version::new(Hlc::new(1_000, 1), WriterId(1)));
        assert!(old.older_than(new));
        assert!(!new.older_than(old));
        let wide = Span {
            lo: old.lo,
            hi: new.hi,
        };
        assert!(!wide.older_than(new), "overlapping bounds are not older");
        assert_eq!(new.lo_millis(), 1_000);
    }

    #[test]
    fn failures_fold_into_bounded_kinds() {
        let recorder = Recorder::default();
        assert!(matches!(
            recorder.failure("Request timed out after 1000 ms"),
            Outcome::Timeout(0)
        ));
        assert!(matches!(
            recorder.failure("Request timed out after 999 ms"),
            Outcome::Timeout(0)
        ));
        assert!(matches!(
            recorder.failure("connection refused"),
            Outcome::Error(1)
        ));
        for i in 0..200 {
            let _ = recorder.failure(&format!("kind {}", "x".repeat(i)));
        }
        assert_eq!(recorder.errors().len(), ERROR_KINDS);
    }
}
