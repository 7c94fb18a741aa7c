//! What one node holds for a key, how the copies of a key compare, and what repairs them. Pure
//! functions over plain data: the I/O layer reads the nodes and acts on the plans.

use std::fmt;

use crate::digest::Fingerprint;
use crate::envelope::{EnvelopeProblem, Header};
use crate::version::Version;

/// What one node holds for a key, as far as versions go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    /// No value (never written, expired, or deleted by a plain client).
    Absent,
    /// A versioned value.
    Value(Version),
    /// A versioned delete (a tombstone).
    Tombstone(Version),
    /// A value without an envelope (written by a plain client), or a key of another type.
    Unversioned,
    /// A value that starts like an envelope but is not a valid one.
    Invalid(EnvelopeProblem),
}

impl Observed {
    /// What a stored value (whole, or only its first 24 bytes) says; `None` means the key is absent.
    pub fn from_stored(stored: Option<&[u8]>) -> Observed {
        match stored.map(Header::parse) {
            None => Observed::Absent,
            Some(Ok(None)) => Observed::Unversioned,
            Some(Ok(Some(header))) if header.tombstone => Observed::Tombstone(header.version),
            Some(Ok(Some(header))) => Observed::Value(header.version),
            Some(Err(problem)) => Observed::Invalid(problem),
        }
    }

    /// The version, for a versioned value or tombstone.
    pub fn version(&self) -> Option<Version> {
        match *self {
            Observed::Value(v) | Observed::Tombstone(v) => Some(v),
            _ => None,
        }
    }

    /// Whether a node holds something for the key (a tombstone counts).
    pub fn is_present(&self) -> bool {
        !matches!(self, Observed::Absent)
    }

    /// The last-write-wins order: absent < unversioned (or invalid) < versioned, by version.
    fn rank(&self) -> (u8, Option<Version>) {
        match self {
            Observed::Absent => (0, None),
            Observed::Unversioned | Observed::Invalid(_) => (1, None),
            Observed::Value(v) | Observed::Tombstone(v) => (2, Some(*v)),
        }
    }
}

impl fmt::Display for Observed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Observed::Absent => write!(f, "absent"),
            Observed::Value(v) => write!(f, "value {v}"),
            Observed::Tombstone(v) => write!(f, "tombstone {v}"),
            Observed::Unversioned => write!(f, "unversioned"),
            Observed::Invalid(problem) => write!(f, "invalid envelope ({problem})"),
        }
    }
}

/// How the copies of one key compare. Variants are ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeyState {
    /// Every copy holds the same version (a tombstone counts), or no copy holds the key.
    Consistent,
    /// A replica holds an older version, or lacks the key, because it has not caught up with its
    /// primary yet; replication will fix it without help.
    ReplicaLagging,
    /// One copy lacks the key while another holds it, and lag does not explain it.
    Missing,
    /// Copies hold different versions (or a different unversioned value), and lag does not explain it.
    Diverged,
    /// The primary (or either side of a cross-deployment check) holds a value without a version, so
    /// last-write-wins cannot compare the copies.
    Unversioned,
}

impl KeyState {
    /// Every state, in order.
    pub const ALL: [KeyState; 5] = [
        KeyState::Consistent,
        KeyState::ReplicaLagging,
        KeyState::Missing,
        KeyState::Diverged,
        KeyState::Unversioned,
    ];

    /// A short lowercase name (`consistent`, `replica_lagging`, ...), as used in reports and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Consistent => "consistent",
            KeyState::ReplicaLagging => "replica_lagging",
            KeyState::Missing => "missing",
            KeyState::Diverged => "diverged",
            KeyState::Unversioned => "unversioned",
        }
    }
}

impl fmt::Display for KeyState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A replica's copy, and whether the replica had applied everything its primary had when the primary
/// was read (so that an older copy is no longer explained by lag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReplicaCopy {
    pub(crate) observed: Observed,
    pub(crate) caught_up: bool,
}

/// Whether copy `a` wins over copy `b` by last-write-wins.
pub(crate) fn outranks(a: Observed, b: Observed) -> bool {
    a.rank() > b.rank()
}

/// How one replica's copy compares with its primary's.
fn replica_state(primary: Observed, replica: ReplicaCopy) -> KeyState {
    let ReplicaCopy { observed, caught_up } = replica;
    if same(primary, observed) {
        return KeyState::Consistent;
    }
    let behind = primary.rank() > observed.rank();
    if behind && !caught_up {
        return KeyState::ReplicaLagging;
    }
    if !primary.is_present() && !caught_up {
        // The primary dropped the key (expiry, plain DEL) and the replica has not seen it yet.
        return KeyState::ReplicaLagging;
    }
    if primary.is_present() != observed.is_present() {
        KeyState::Missing
    } else {
        KeyState::Diverged
    }
}

/// Whether two copies are the same for versioning purposes.
fn same(a: Observed, b: Observed) -> bool {
    match (a, b) {
        (Observed::Unversioned | Observed::Invalid(_), Observed::Unversioned | Observed::Invalid(_)) => true,
        _ => a == b,
    }
}

/// The state of a key from its primary's copy and its replicas' copies: the worst replica's state,
/// or [`KeyState::Unversioned`] when the primary's copy carries no version.
pub(crate) fn classify(primary: Observed, replicas: &[ReplicaCopy]) -> KeyState {
    if matches!(primary, Observed::Unversioned | Observed::Invalid(_)) {
        return KeyState::Unversioned;
    }
    replicas
        .iter()
        .map(|&replica| replica_state(primary, replica))
        .max()
        .unwrap_or(KeyState::Consistent)
}

/// What repairs a key in a cluster whose copies disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplicaRepair {
    /// Nothing to do.
    Nothing,
    /// The primary's copy wins: write it again on the primary (same version) so that replication
    /// carries it to the replicas that lack it.
    ResendPrimary,
    /// A replica's copy wins (index into the replicas): write it on the primary, with last-write-wins.
    CopyFromReplica(usize),
    /// No copy can win by version.
    Unrepairable(&'static str),
}

/// Last-write-wins across a primary and its replicas: the copy with the greatest rank wins.
pub(crate) fn plan_replica_repair(primary: Observed, replicas: &[Observed]) -> ReplicaRepair {
    if replicas.iter().all(|&r| same(primary, r)) {
        return ReplicaRepair::Nothing;
    }
    let best = replicas
        .iter()
        .enumerate()
        .max_by_key(|(_, r)| r.rank())
        .filter(|(_, r)| r.rank() > primary.rank());
    match best {
        Some((index, replica)) if replica.version().is_some() => ReplicaRepair::CopyFromReplica(index),
        Some(_) => ReplicaRepair::Unrepairable("a replica holds an unversioned value the primary lacks"),
        None if primary.version().is_some() => ReplicaRepair::ResendPrimary,
        None if primary.is_present() => ReplicaRepair::Unrepairable("the primary's value is unversioned"),
        None => ReplicaRepair::Unrepairable("the primary lacks the key and no replica holds a version"),
    }
}

/// Which way a cross-deployment sync may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SyncDirection {
    /// Only the target is written: it receives every source copy that wins (or that it lacks).
    #[default]
    SourceToTarget,
    /// Either side is written: each key ends with the copy that wins by last-write-wins.
    BothWays,
}

/// A copy on one side of a cross-deployment comparison. Unversioned values carry their bytes (a
/// string) or their fingerprint (another type), since only equality can compare them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SideCopy<'a> {
    pub(crate) observed: Observed,
    pub(crate) bytes: Option<&'a [u8]>,
    /// The type and content digest of a key that is not a string.
    pub(crate) fingerprint: Option<Fingerprint>,
    /// Whether the key has a TTL.
    pub(crate) expiring: bool,
}

/// How the source's and the target's copies of a key compare: versions, or for unversioned copies
/// their type and content; and whether each has a TTL (a copy that lost its TTL never expires).
pub(crate) fn compare_sides(source: SideCopy<'_>, target: SideCopy<'_>) -> KeyState {
    let same_ttl = source.expiring == target.expiring;
    match (source.observed, target.observed) {
        (Observed::Absent, Observed::Absent) => KeyState::Consistent,
        (Observed::Absent, _) | (_, Observed::Absent) => KeyState::Missing,
        (s, t) if s.version().is_some() && t.version().is_some() => {
            if s == t && same_ttl {
                KeyState::Consistent
            } else {
                KeyState::Diverged
            }
        }
        (s, t) if s.version().is_none() && t.version().is_none() => {
            if source.bytes == target.bytes && source.fingerprint == target.fingerprint && same_ttl {
                KeyState::Consistent
            } else {
                KeyState::Unversioned
            }
        }
        _ => KeyState::Unversioned,
    }
}

/// What a cross-deployment sync does for one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SyncPlan {
    /// The copies agree.
    Nothing,
    /// Write the source's copy on the target.
    CopyToTarget,
    /// Write the target's copy on the source.
    CopyToSource,
    /// Leave both: the reason says why.
    Leave(&'static str),
}

/// Last-write-wins between two deployments. Where neither side has a version, the source is the
/// authority in a one-way sync (it is the deployment being migrated from) and nothing is decided in a
/// two-way sync.
pub(crate) fn plan_sync(source: SideCopy<'_>, target: SideCopy<'_>, direction: SyncDirection) -> SyncPlan {
    if compare_sides(source, target) == KeyState::Consistent {
        return SyncPlan::Nothing;
    }
    let (s, t) = (source.observed.rank(), target.observed.rank());
    let one_way = direction == SyncDirection::SourceToTarget;
    if s > t {
        SyncPlan::CopyToTarget
    } else if t > s {
        if one_way {
            SyncPlan::Leave("the target's copy is newer and a one-way sync never writes the source")
        } else {
            SyncPlan::CopyToSource
        }
    } else if source.observed.version().is_some() {
        // Equal ranks with versions means equal versions, which compare_sides calls consistent.
        SyncPlan::Nothing
    } else if one_way {
        SyncPlan::CopyToTarget
    } else {
        SyncPlan::Leave("both sides hold different unversioned values, so no copy wins by version")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Envelope;
    use crate::version::test_version;

    fn v(millis: u64) -> Version {
        test_version(millis, 0, 1)
    }

    const A: Observed = Observed::Absent;
    const U: Observed = Observed::Unversioned;

    fn val(millis: u64) -> Observed {
        Observed::Value(v(millis))
    }

    fn tomb(millis: u64) -> Observed {
        Observed::Tombstone(v(millis))
    }

    fn lag(observed: Observed) -> ReplicaCopy {
        ReplicaCopy {
            observed,
            caught_up: false,
        }
    }

    fn synced(observed: Observed) -> ReplicaCopy {
        ReplicaCopy {
            observed,
            caught_up: true,
        }
    }

    #[test]
    fn stored_bytes_are_observed_by_their_header() {
        let value = Envelope::Value {
            version: v(3),
            payload: b"p",
        }
        .encode();
        let tombstone = Envelope::Tombstone { version: v(4) }.encode();
        let cases: [(Option<&[u8]>, Observed); 5] = [
            (None, A),
            (Some(b"plain"), U),
            (Some(&value), val(3)),
            (Some(&tombstone[..]), tomb(4)),
            (
                Some(&value[..5]),
                Observed::Invalid(EnvelopeProblem::Truncated { len: 5 }),
            ),
        ];
        for (stored, want) in cases {
            assert_eq!(Observed::from_stored(stored), want, "{stored:02x?}");
        }
    }

    fn check(primary: Observed, replicas: &[ReplicaCopy], want: KeyState) {
        assert_eq!(
            classify(primary, replicas),
            want,
            "primary {primary}, replicas {replicas:?}"
        );
    }

    #[test]
    fn classification_tells_lag_from_divergence() {
        use KeyState::*;
        check(val(5), &[], Consistent);
        check(val(5), &[synced(val(5)), lag(val(5))], Consistent);
        check(A, &[synced(A)], Consistent);
        check(tomb(5), &[synced(tomb(5))], Consistent);
        // Older or absent on a replica that has not caught up: lag.
        check(val(5), &[lag(val(4))], ReplicaLagging);
        check(val(5), &[lag(A)], ReplicaLagging);
        check(val(5), &[lag(U)], ReplicaLagging);
        check(A, &[lag(val(4))], ReplicaLagging);
        // The same after the replica caught up: no longer lag.
        check(val(5), &[synced(val(4))], Diverged);
        check(val(5), &[synced(A)], Missing);
        check(val(5), &[synced(U)], Diverged);
        check(A, &[synced(val(4))], Missing);
        check(val(5), &[synced(tomb(5 + 1))], Diverged);
        // Newer on a replica is never lag.
        check(val(5), &[lag(val(6))], Diverged);
        // The worst replica decides.
        check(val(5), &[synced(val(5)), lag(val(4)), synced(A)], Missing);
        // An unversioned primary cannot be compared.
        check(U, &[synced(val(9))], Unversioned);
        check(
            Observed::Invalid(EnvelopeProblem::ReservedNotZero),
            &[],
            Unversioned,
        );
    }

    #[test]
    fn replica_repairs_follow_last_write_wins() {
        use ReplicaRepair::*;
        let cases: Vec<(Observed, Vec<Observed>, ReplicaRepair)> = vec![
            (val(5), vec![val(5)], Nothing),
            (val(5), vec![val(4)], ResendPrimary),
            (val(5), vec![A, val(5)], ResendPrimary),
            (tomb(5), vec![U], ResendPrimary),
            (val(5), vec![val(4), val(7), val(6)], CopyFromReplica(1)),
            (A, vec![tomb(2)], CopyFromReplica(0)),
            (U, vec![val(1)], CopyFromReplica(0)),
            (
                A,
                vec![U],
                Unrepairable("a replica holds an unversioned value the primary lacks"),
            ),
            (U, vec![A], Unrepairable("the primary's value is unversioned")),
        ];
        for (primary, replicas, want) in cases {
            assert_eq!(
                plan_replica_repair(primary, &replicas),
                want,
                "{primary} vs {replicas:?}"
            );
        }
    }

    fn side(observed: Observed, bytes: Option<&'static [u8]>) -> SideCopy<'static> {
        SideCopy {
            observed,
            bytes,
            fingerprint: None,
            expiring: false,
        }
    }

    fn hash(digest: u128) -> SideCopy<'static> {
        SideCopy {
            fingerprint: Some(Fingerprint {
                kind: "hash",
                elements: 2,
                digest,
            }),
            ..side(U, None)
        }
    }

    #[test]
    fn deployments_compare_types_contents_and_ttls() {
        let expiring = |copy: SideCopy<'static>| SideCopy {
            expiring: true,
            ..copy
        };
        let cases = [
            (hash(1), hash(1), KeyState::Consistent),
            (hash(1), hash(2), KeyState::Unversioned),
            (hash(1), side(U, Some(b"a")), KeyState::Unversioned),
            (hash(1), expiring(hash(1)), KeyState::Unversioned),
            (
                side(val(3), None),
                expiring(side(val(3), None)),
                KeyState::Diverged,
            ),
            (
                expiring(side(val(3), None)),
                expiring(side(val(3), None)),
                KeyState::Consistent,
            ),
        ];
        for (source, target, want) in cases {
            assert_eq!(compare_sides(source, target), want, "{source:?} vs {target:?}");
        }
    }

    #[test]
    fn deployments_compare_and_sync_by_last_write_wins() {
        use SyncDirection::*;
        use SyncPlan::*;
        let plain_a = side(U, Some(b"a"));
        let plain_b = side(U, Some(b"b"));
        let absent = side(A, None);
        let cases: Vec<(
            SideCopy<'static>,
            SideCopy<'static>,
            SyncDirection,
            KeyState,
            SyncPlan,
        )> = vec![
            (
                side(val(3), None),
                side(val(3), None),
                BothWays,
                KeyState::Consistent,
                Nothing,
            ),
            (plain_a, plain_a, SourceToTarget, KeyState::Consistent, Nothing),
            (
                side(val(3), None),
                absent,
                SourceToTarget,
                KeyState::Missing,
                CopyToTarget,
            ),
            (plain_a, absent, SourceToTarget, KeyState::Missing, CopyToTarget),
            (
                absent,
                side(val(3), None),
                BothWays,
                KeyState::Missing,
                CopyToSource,
            ),
            (
                side(val(4), None),
                side(val(3), None),
                SourceToTarget,
                KeyState::Diverged,
                CopyToTarget,
            ),
            (
                side(tomb(4), None),
                side(val(3), None),
                SourceToTarget,
                KeyState::Diverged,
                CopyToTarget,
            ),
            (
                side(val(3), None),
                side(val(4), None),
                BothWays,
                KeyState::Diverged,
                CopyToSource,
            ),
            (
                plain_a,
                plain_b,
                SourceToTarget,
                KeyState::Unversioned,
                CopyToTarget,
            ),
            (
                plain_a,
                side(val(1), None),
                BothWays,
                KeyState::Unversioned,
                CopyToSource,
            ),
        ];
        for (source, target, direction, state, plan) in cases {
            assert_eq!(compare_sides(source, target), state, "{source:?} vs {target:?}");
            assert_eq!(
                plan_sync(source, target, direction),
                plan,
                "{source:?} vs {target:?}, {direction:?}"
            );
        }
        assert!(matches!(
            plan_sync(side(val(3), None), side(val(4), None), SourceToTarget),
            Leave(_)
        ));
        assert!(matches!(plan_sync(plain_a, plain_b, BothWays), Leave(_)));
    }
}
