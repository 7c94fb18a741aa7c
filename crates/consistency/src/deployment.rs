//! The cross-deployment audit and sync: the same keys in two deployments (for example the standalone
//! Redis being migrated from, and the cluster being migrated to), compared and synced by
//! last-write-wins.

use std::time::SystemTime;

use bytes::Bytes;
use cluster_client::{ClusterClient, Script, ShardInfo, Ttl, Value};

use crate::audit::{AuditMode, AuditOptions, Pacer, Repair, Tally};
use crate::digest::{Fingerprint, fingerprint, string_fingerprint};
use crate::error::{Error, printable_key};
use crate::history::{SyncEvent, SyncHistory, SyncSource};
use crate::report::{AuditProgress, AuditReport, CopyRole, KeyReport, NodeCopy, RepairCounts};
use crate::script::{LWW_SCRIPT, ScriptOutcome, WriteMode, looks_versioned};
use crate::state::{KeyState, Observed, SideCopy, SyncPlan, compare_sides, plan_sync};
use crate::versioned::{TtlArg, run_script};

/// One deployment of the two.
#[derive(Clone, Copy)]
struct Side<'a> {
    client: &'a ClusterClient,
    label: &'static str,
    role: CopyRole,
}

/// A key's copy on one side: what it holds, its bytes (`None` if absent or not a string), the
/// fingerprint of a key of another type, and whether it has a TTL.
struct Fetched {
    observed: Observed,
    bytes: Option<Bytes>,
    fingerprint: Option<Fingerprint>,
    expiring: bool,
}

impl Fetched {
    fn side_copy(&self) -> SideCopy<'_> {
        SideCopy {
            observed: self.observed,
            bytes: self.bytes.as_deref(),
            fingerprint: self.fingerprint,
            expiring: self.expiring,
        }
    }
}

/// Strings up to this size are read whole; larger ones are compared by a digest read page by page,
/// so that an audit never holds a whole large value (a batch holds at most this per key and side).
const WHOLE_STRING_MAX: usize = 64 * 1024;

fn is_wrong_type(error: &cluster_client::Error) -> bool {
    matches!(error, cluster_client::Error::Server { message, .. } if message.starts_with("WRONGTYPE"))
}

/// A key's whole copy on one side: a string's bytes (up to [`WHOLE_STRING_MAX`], else its digest),
/// or the content fingerprint of a key of another type, and whether it has a TTL.
async fn read_side(side: Side<'_>, key: &Bytes) -> Result<Fetched, cluster_client::Error> {
    let node = node_of(side, key);
    let key_arg = || Value::Bytes(key.clone());
    let command = |args: Vec<Value>| side.client.node_command::<Option<Bytes>>(&node, args);
    let first = command(vec![
        "GETRANGE".into(),
        key_arg(),
        Value::Integer(0),
        Value::Integer(WHOLE_STRING_MAX as i64 - 1),
    ])
    .await;
    let mut copy = Fetched {
        observed: Observed::Absent,
        bytes: None,
        fingerprint: None,
        expiring: false,
    };
    match first {
        Ok(prefix) => {
            let prefix = prefix.unwrap_or_default();
            if prefix.is_empty() {
                // GETRANGE answers "" both for a missing key and for an empty string.
                let exists: i64 = side
                    .client
                    .node_command(&node, vec!["EXISTS".into(), key_arg()])
                    .await?;
                if exists == 0 {
                    return Ok(copy);
                }
            }
            copy.observed = Observed::from_stored(Some(&prefix));
            let len: i64 = if prefix.len() < WHOLE_STRING_MAX {
                prefix.len() as i64
            } else {
                side.client
                    .node_command(&node, vec!["STRLEN".into(), key_arg()])
                    .await?
            };
            if len as usize <= WHOLE_STRING_MAX {
                copy.bytes = Some(prefix);
            } else if copy.observed.version().is_none() {
                // A versioned value compares by its version; only a plain one needs its content.
                copy.fingerprint = Some(string_fingerprint(side.client, &node, key, len as u64).await?);
            }
        }
        // A hash, list or other type: present, compared by its fingerprint.
        Err(error) if is_wrong_type(&error) => {
            copy.observed = Observed::Unversioned;
            copy.fingerprint = fingerprint(side.client, &node, key).await?;
        }
        Err(error) => return Err(error),
    }
    copy.expiring = matches!(side.client.pttl(key).await?, Ttl::Expires(_));
    Ok(copy)
}

fn node_of(side: Side<'_>, key: &[u8]) -> String {
    side.client
        .topology()
        .shard_for_key(key)
        .map(|s| s.primary.clone())
        .unwrap_or_default()
}

struct Run<'a, P> {
    source: Side<'a>,
    target: Side<'a>,
    options: &'a AuditOptions,
    history: &'a SyncHistory,
    script: Script,
    pacer: Pacer,
    tally: Tally,
    progress: P,
}

impl<P: Fn(&AuditProgress) + Sync> Run<'_, P> {
    /// Scans one primary of `scanned`; `first_pass` compares every key, the second pass only keys the
    /// other side lacks (the first pass compared the rest).
    async fn scan(&self, scanned: Side<'_>, other: Side<'_>, shard: &ShardInfo, first_pass: bool) {
        let mut cursor = 0;
        loop {
            if self.tally.exhausted() {
                break;
            }
            let step = scanned
                .client
                .scan_node(
                    &shard.primary,
                    cursor,
                    self.options.pattern.as_deref(),
                    self.options.scan_count,
                )
                .await;
            let (next, keys) = match step {
                Ok(step) => step,
                Err(error) => {
                    self.tally
                        .error(&format!("scanning {} {}", scanned.label, shard.primary), &error);
                    self.tally.incomplete();
                    break;
                }
            };
            if !keys.is_empty() {
                self.pacer.admit(keys.len()).await;
                self.batch(scanned, other, &shard.primary, keys, first_pass).await;
                (self.progress)(&self.tally.progress());
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        self.tally.shard_done();
        (self.progress)(&self.tally.progress());
    }

    async fn batch(
        &self,
        scanned: Side<'_>,
        other: Side<'_>,
        node: &str,
        keys: Vec<Bytes>,
        first_pass: bool,
    ) {
        let mine = keys.iter().map(|key| read_side(scanned, key));
        let theirs = keys.iter().map(|key| read_side(other, key));
        let (mine, theirs) =
            futures::future::join(futures::future::join_all(mine), futures::future::join_all(theirs)).await;
        let mut repairs = RepairCounts::default();
        for ((key, mine), theirs) in keys.iter().zip(mine).zip(theirs) {
            let (mine, theirs) = match (mine, theirs) {
                (Ok(mine), Ok(theirs)) => (mine, theirs),
                (Err(error), _) | (_, Err(error)) => {
                    self.tally
                        .error(&format!("reading {}", printable_key(key)), &error);
                    continue;
                }
            };
            if !first_pass && theirs.observed.is_present() {
                continue;
            }
            let other_node = node_of(other, key);
            let (source, target, source_node, target_node) = if scanned.role == CopyRole::Source {
                (mine, theirs, node.to_string(), other_node)
            } else {
                (theirs, mine, other_node, node.to_string())
            };
            let state = compare_sides(source.side_copy(), target.side_copy());
            if self.options.mode == AuditMode::Resolve && state != KeyState::Consistent {
                let repair = self.sync(key, &source, &target).await;
                if let Repair::Failed(error) = &repair {
                    self.tally
                        .error(&format!("syncing {}", printable_key(key)), error);
                }
                repair.count(&mut repairs);
            }
            self.tally.key(KeyReport {
                key: key.clone(),
                state,
                copies: vec![
                    NodeCopy {
                        node: source_node,
                        role: CopyRole::Source,
                        observed: source.observed,
                    },
                    NodeCopy {
                        node: target_node,
                        role: CopyRole::Target,
                        observed: target.observed,
                    },
                ],
            });
        }
        self.tally.repairs(&repairs);
    }

    async fn sync(&self, key: &Bytes, source: &Fetched, target: &Fetched) -> Repair {
        match plan_sync(
            source.side_copy(),
            target.side_copy(),
            self.options.sync_direction,
        ) {
            SyncPlan::Nothing => Repair::Superseded,
            SyncPlan::Leave(reason) => {
                tracing::debug!(key = %printable_key(key), reason, "sync leaves a key");
                Repair::Left
            }
            SyncPlan::CopyToTarget => self.copy(key, (self.source, source), (self.target, target)).await,
            SyncPlan::CopyToSource => self.copy(key, (self.target, target), (self.source, source)).await,
        }
    }

    /// A large string to copy, read whole only now and only if the destination accepts its size.
    async fn read_large(&self, from: Side<'_>, to: Side<'_>, key: &Bytes) -> Result<Option<Bytes>, Repair> {
        let node = node_of(from, key);
        let len: i64 = from
            .client
            .node_command(&node, vec!["STRLEN".into(), Value::Bytes(key.clone())])
            .await
            .map_err(|error| Repair::Failed(error.into()))?;
        if len as usize > to.client.config().limits().value_max_bytes {
            tracing::info!(key = %printable_key(key), len, "a string too large for the target is not copied");
            return Err(Repair::Unrepairable);
        }
        from.client
            .get(key)
            .await
            .map_err(|error| Repair::Failed(error.into()))
    }

    /// Writes the winning copy on the other side, with its remaining TTL, through last-write-wins
    /// (plain values only where no versioned value is stored).
    async fn copy(&self, key: &Bytes, from: (Side<'_>, &Fetched), to: (Side<'_>, &Fetched)) -> Repair {
        let (from, winner) = from;
        let (to, loser) = to;
        // Only strings are copied; a key of another type on either side is reported, not overwritten.
        let is_other_type = |copy: &Fetched| copy.fingerprint.is_some_and(|f| f.kind != "string");
        if is_other_type(winner) || is_other_type(loser) {
            return Repair::Unrepairable;
        }
        let large;
        let bytes = match &winner.bytes {
            Some(bytes) => bytes,
            None => match self.read_large(from, to, key).await {
                Ok(Some(bytes)) => {
                    large = bytes;
                    &large
                }
                Ok(None) => return Repair::Superseded,
                Err(repair) => return repair,
            },
        };
        let mode = if winner.observed.version().is_some() {
            WriteMode::Newer
        } else if looks_versioned(bytes) {
            // An invalid envelope: copying it would only spread the damage.
            return Repair::Unrepairable;
        } else {
            WriteMode::Plain
        };
        let ttl = match from.client.pttl(key).await {
            Ok(Ttl::Missing) => return Repair::Superseded,
            Ok(Ttl::Persistent) => None,
            Ok(Ttl::Expires(left)) => Some(left),
            Err(error) => return Repair::Failed(error.into()),
        };
        match run_script(to.client, &self.script, key, bytes, TtlArg::from(ttl), mode).await {
            Ok(ScriptOutcome::Written) => {
                self.history.record(SyncEvent {
                    key: key.clone(),
                    before: loser.observed,
                    after: winner.observed,
                    source: SyncSource::DeploymentSync {
                        from: from.label.into(),
                        to: to.label.into(),
                    },
                    at: SystemTime::now(),
                });
                Repair::Repaired
            }
            Ok(ScriptOutcome::Kept(_)) => Repair::Superseded,
            Ok(ScriptOutcome::StoredInvalid(problem)) => Repair::Failed(Error::Envelope {
                key: printable_key(key),
                problem,
            }),
            Err(error) => Repair::Failed(error),
        }
    }
}

/// Compares every key of two deployments: each key of `source` with the same key in `target`, then
/// the keys only `target` holds. Versioned copies compare by version; unversioned strings by their
/// bytes; hashes, lists, sets, sorted sets and streams by their type and a digest of their content
/// read in bounded pages (so a truncated hash or a key of another type is reported, and no key is
/// ever held whole); and every copy by whether it has a TTL. A difference between unversioned copies
/// is reported as [`KeyState::Unversioned`], one between versioned copies (including a lost TTL) as
/// [`KeyState::Diverged`].
///
/// In [`AuditMode::Resolve`] the differences are synced by last-write-wins in the direction of
/// [`AuditOptions::sync_direction`]: a versioned copy beats an unversioned one, which beats absence.
/// Where neither side has a version, a one-way sync copies the source's value (the source is the
/// deployment being migrated from) and a two-way sync leaves both. Copies keep their remaining TTL.
/// Only strings are copied: a key of another type on either side counts as unrepairable.
/// Every copy is recorded in `history` (the spec's migration path: warm the cluster, then verify
/// with this audit before switching).
pub async fn audit_between<P>(
    source: &ClusterClient,
    target: &ClusterClient,
    options: &AuditOptions,
    history: &SyncHistory,
    progress: P,
) -> Result<AuditReport, Error>
where
    P: Fn(&AuditProgress) + Sync,
{
    options.validate()?;
    let source_topology = source.topology();
    let target_topology = target.topology();
    let run = Run {
        source: Side {
            client: source,
            label: "source",
            role: CopyRole::Source,
        },
        target: Side {
            client: target,
            label: "target",
            role: CopyRole::Target,
        },
        options,
        history,
        script: Script::new(LWW_SCRIPT),
        pacer: Pacer::new(options.max_keys_per_second),
        tally: Tally::new(
            source_topology.shards().len() + target_topology.shards().len(),
            options,
        ),
        progress,
    };
    let first = source_topology
        .shards()
        .iter()
        .map(|shard| run.scan(run.source, run.target, shard, true));
    futures::future::join_all(first).await;
    let second = target_topology
        .shards()
        .iter()
        .map(|shard| run.scan(run.target, run.source, shard, false));
    futures::future::join_all(second).await;
    Ok(run.tally.finish())
}
