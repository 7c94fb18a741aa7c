//! Validation: per shard, `WAIT` for the replicas, then read the written entries back from every
//! replica (the primary for shards without replicas) and compare. A copy that disagrees is read again
//! once its node has caught up with the primary's replication offset, so lag is not called damage.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cluster_client::{CallOptions, ShardInfo, Value};
use consistency::Envelope;
use futures::StreamExt;

use crate::config::ValidationConfig;
use crate::progress::Tracker;
use crate::report::{BadEntry, ShardAck, ValidationProblem, ValidationReport};
use crate::write::{Expect, Io};

/// Keys per read round on one node.
const READ_CHUNK: usize = 512;
/// How often a node's replication offset is polled while waiting for it to catch up.
const CATCH_UP_POLL: Duration = Duration::from_millis(10);
/// Most key names tried to find a key a given primary owns, for `WAIT`.
const WAIT_KEY_TRIES: u32 = 100_000;

/// A copy's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Ok,
    /// Another client replaced the warm-up's write after it was made: not a bad copy.
    Superseded,
    Bad(ValidationProblem),
}

/// How a stored value compares with what was written. For `DUMP` payloads a mismatch may still be
/// fine (the server may re-encode a value it restored): the caller compares with the primary's copy.
pub(crate) fn compare(expect: &Expect, got: Option<&[u8]>) -> Verdict {
    let Some(got) = got else {
        return Verdict::Bad(ValidationProblem::Missing);
    };
    let ok = match expect {
        Expect::Bytes(value) | Expect::Dump(value) => got == &value[..],
        Expect::Versioned { version, value } => match Envelope::decode(got) {
            Ok(Envelope::Value { version: stored, .. }) if stored > *version => return Verdict::Superseded,
            Ok(Envelope::Value {
                version: stored,
                payload,
            }) => stored == *version && payload == &value[..],
            // A newer delete superseded the write.
            Ok(Envelope::Tombstone { version: stored }) if stored > *version => return Verdict::Superseded,
            Ok(Envelope::Tombstone { .. } | Envelope::Unversioned(_)) | Err(_) => false,
        },
    };
    if ok {
        Verdict::Ok
    } else {
        Verdict::Bad(ValidationProblem::Mismatched)
    }
}

/// Whether a copy that still disagrees after its node caught up was replaced by another client: the
/// primary holds a value the warm-up did not write (for a versioned write, anything but an older or
/// equal version: those mean the warm-up's write was lost). A primary without the key, or holding the
/// warm-up's value, says the copy is bad.
pub(crate) fn primary_supersedes(expect: &Expect, on_primary: Option<&[u8]>) -> bool {
    let Some(got) = on_primary else {
        return false;
    };
    match compare(expect, Some(got)) {
        Verdict::Superseded => true,
        Verdict::Ok => false,
        Verdict::Bad(_) => match expect {
            Expect::Bytes(_) => true,
            Expect::Versioned { .. } => !matches!(
                Envelope::decode(got),
                Ok(Envelope::Value { .. } | Envelope::Tombstone { .. })
            ),
            // A `DUMP` is not canonical: a different payload on the primary may still be the warm-up's
            // value, so a dump copy is never called superseded.
            Expect::Dump(_) => false,
        },
    }
}

/// Adds one window's validation to the run's so far: counts add up, each primary keeps its fewest
/// acknowledgements, problems stay within `max_problems`.
pub(crate) fn merge(
    mut so_far: ValidationReport,
    window: ValidationReport,
    max_problems: usize,
) -> ValidationReport {
    so_far.sampled += window.sampled;
    so_far.checked += window.checked;
    so_far.matched += window.matched;
    so_far.superseded += window.superseded;
    so_far.mismatched += window.mismatched;
    so_far.missing += window.missing;
    so_far.unreadable += window.unreadable;
    so_far.bad_entries += window.bad_entries;
    so_far.elapsed += window.elapsed;
    for ack in window.acks {
        match so_far.acks.iter_mut().find(|a| a.primary == ack.primary) {
            Some(known) => {
                known.replicas = known.replicas.max(ack.replicas);
                known.acked = known.acked.zip(ack.acked).map(|(a, b)| a.min(b));
            }
            None => so_far.acks.push(ack),
        }
    }
    so_far.acks.sort_by(|a, b| a.primary.cmp(&b.primary));
    let room = max_problems.saturating_sub(so_far.problems.len());
    so_far.problems.extend(window.problems.into_iter().take(room));
    so_far
}

/// Validates `checks` (deduplicated: one expectation per key).
pub(crate) async fn validate(
    io: &Io,
    config: &ValidationConfig,
    checks: Vec<(u16, Bytes, Expect)>,
    parallelism: usize,
    max_problems: usize,
    tracker: &Tracker,
) -> ValidationReport {
    let started = Instant::now();
    let mut report = ValidationReport {
        sampled: checks.len() as u64,
        ..ValidationReport::default()
    };
    // Written entries may have moved (a migration during the warm-up): route them as of now.
    let _ = io.client.refresh_topology().await;
    let topology = io.client.topology();
    let mut by_shard: BTreeMap<String, (ShardInfo, Vec<Check>)> = BTreeMap::new();
    let mut verdicts: Vec<(Bytes, String, Verdict)> = Vec::new();
    for (slot, key, expect) in checks {
        match topology.shard_for_key(&key) {
            Some(shard) => by_shard
                .entry(shard.primary.clone())
                .or_insert_with(|| (shard.clone(), Vec::new()))
                .1
                .push((slot, key, expect)),
            None => verdicts.push((key, String::new(), Verdict::Bad(ValidationProblem::Unreadable))),
        }
    }
    let shards = futures::stream::iter(by_shard.into_values())
        .map(|(shard, checks)| validate_shard(io, config, shard, checks, tracker))
        .buffer_unordered(parallelism.max(1))
        .collect::<Vec<_>>()
        .await;
    let mut expectations: HashMap<Bytes, (u16, Expect)> = HashMap::new();
    for (ack, shard_verdicts, checks) in shards {
        report.acks.push(ack);
        verdicts.extend(shard_verdicts);
        expectations.extend(
            checks
                .into_iter()
                .map(|(slot, key, expect)| (key, (slot, expect))),
        );
    }
    report.acks.sort_by(|a, b| a.primary.cmp(&b.primary));
    let verdicts = recheck(io, config, verdicts, &expectations).await;
    let verdicts = supersede(io, verdicts, &expectations).await;
    tally(&mut report, verdicts, max_problems);
    report.elapsed = started.elapsed();
    report
}

/// Counts copies and keys, keeping the first `max_problems` bad copies.
fn tally(report: &mut ValidationReport, verdicts: Vec<(Bytes, String, Verdict)>, max_problems: usize) {
    let mut bad_keys: std::collections::HashSet<Bytes> = std::collections::HashSet::new();
    for (key, node, verdict) in verdicts {
        report.checked += 1;
        match verdict {
            Verdict::Ok => report.matched += 1,
            Verdict::Superseded => report.superseded += 1,
            Verdict::Bad(problem) => {
                match problem {
                    ValidationProblem::Mismatched => report.mismatched += 1,
                    ValidationProblem::Missing => report.missing += 1,
                    ValidationProblem::Unreadable => report.unreadable += 1,
                }
                if report.problems.len() < max_problems {
                    report.problems.push(BadEntry {
                        key: key.clone(),
                        node,
                        problem,
                    });
                }
                bad_keys.insert(key);
            }
        }
    }
    report.bad_entries = bad_keys.len() as u64;
}

/// A key to read back: its slot, the key, and what it should hold.
type Check = (u16, Bytes, Expect);

type ShardOutcome = (ShardAck, Vec<(Bytes, String, Verdict)>, Vec<Check>);

async fn validate_shard(
    io: &Io,
    config: &ValidationConfig,
    shard: ShardInfo,
    checks: Vec<Check>,
    tracker: &Tracker,
) -> ShardOutcome {
    let acked = wait_for_replicas(io, &shard, config.wait_timeout).await;
    let ack = ShardAck {
        primary: shard.primary.clone(),
        replicas: shard.replicas.len(),
        acked,
    };
    let nodes: Vec<String> = if shard.replicas.is_empty() {
        vec![shard.primary.clone()]
    } else {
        shard.replicas.clone()
    };
    let mut verdicts = Vec::with_capacity(checks.len() * nodes.len());
    for node in &nodes {
        for chunk in checks.chunks(READ_CHUNK) {
            let read = read_and_compare(io, node, &shard.primary, chunk).await;
            tracker.validated(read.len() as u64);
            verdicts.extend(
                read.into_iter()
                    .zip(chunk)
                    .map(|(v, (_, key, _))| (key.clone(), node.clone(), v)),
            );
        }
    }
    (ack, verdicts, checks)
}

/// `WAIT` on every connection to the shard's primary that carried writes (each carries its own share:
/// the routed connections, through `ClusterClient::wait`, and the node's own connection used by
/// batched writes); the fewest acknowledgements, or `None` when a `WAIT` failed.
async fn wait_for_replicas(io: &Io, shard: &ShardInfo, timeout: Duration) -> Option<u32> {
    if shard.replicas.is_empty() {
        return Some(0);
    }
    let replicas = shard.replicas.len() as u32;
    let key = shard_key(io, shard);
    let routed = key
        .iter()
        .map(|key| io.client.wait(key.as_bytes(), replicas, timeout));
    let direct = async {
        let args = vec![
            "WAIT".into(),
            Value::Integer(i64::from(replicas)),
            Value::Integer(timeout.as_millis() as i64),
        ];
        io.client
            .with_options(CallOptions::timeout(timeout + Duration::from_millis(500)))
            .node_command::<i64>(&shard.primary, args)
            .await
            .map(|n| n.max(0) as u32)
    };
    let (mut acks, direct) = futures::future::join(futures::future::join_all(routed), direct).await;
    acks.push(direct);
    let mut fewest = replicas;
    for ack in acks {
        match ack {
            Ok(n) => fewest = fewest.min(n),
            Err(error) => {
                tracing::debug!(primary = %shard.primary, %error, "WAIT failed");
                return None;
            }
        }
    }
    Some(fewest)
}

/// A key the shard's primary owns: `cluster-client`'s `wait` for it asks every routed connection of
/// that primary.
fn shard_key(io: &Io, shard: &ShardInfo) -> Option<String> {
    let topology = io.client.topology();
    (0..WAIT_KEY_TRIES)
        .map(|n| format!("warmup:wait:{n}"))
        .find(|key| {
            topology
                .shard_for_key(key.as_bytes())
                .is_some_and(|s| s.primary == shard.primary)
        })
}

/// Reads `checks` on `node` and compares; results in order.
async fn read_and_compare(io: &Io, node: &str, primary: &str, checks: &[Check]) -> Vec<Verdict> {
    let mut verdicts = vec![Verdict::Bad(ValidationProblem::Unreadable); checks.len()];
    let strings: Vec<usize> = (0..checks.len())
        .filter(|&i| !matches!(checks[i].2, Expect::Dump(_)))
        .collect();
    let dumps: Vec<usize> = (0..checks.len())
        .filter(|&i| matches!(checks[i].2, Expect::Dump(_)))
        .collect();
    let slots: Vec<u16> = strings.iter().map(|&i| checks[i].0).collect();
    let mgets = io.runs(&slots).into_iter().map(|run| {
        let members: Vec<usize> = strings[run].to_vec();
        async move {
            let mut args: Vec<Value> = Vec::with_capacity(members.len() + 1);
            args.push("MGET".into());
            args.extend(members.iter().map(|&i| Value::Bytes(checks[i].1.clone())));
            let reply = io.client.node_command::<Vec<Option<Bytes>>>(node, args).await;
            (members, reply)
        }
    });
    let dump_reads = dumps.iter().map(|&i| async move {
        let (_, key, expect) = &checks[i];
        (i, dump_verdict(io, node, primary, key, expect).await)
    });
    let (mgets, dump_reads) = futures::future::join(
        futures::future::join_all(mgets),
        futures::future::join_all(dump_reads),
    )
    .await;
    for (members, reply) in mgets {
        match reply {
            Ok(values) if values.len() == members.len() => {
                for (i, value) in members.into_iter().zip(values) {
                    verdicts[i] = compare(&checks[i].2, value.as_deref());
                }
            }
            Ok(_) => {}
            Err(error) => tracing::debug!(%node, %error, "validation read failed"),
        }
    }
    for (i, verdict) in dump_reads {
        verdicts[i] = verdict;
    }
    verdicts
}

async fn dump_verdict(io: &Io, node: &str, primary: &str, key: &Bytes, expect: &Expect) -> Verdict {
    let got = match io
        .client
        .node_command::<Option<Bytes>>(node, vec!["DUMP".into(), Value::Bytes(key.clone())])
        .await
    {
        Ok(got) => got,
        Err(_) => return Verdict::Bad(ValidationProblem::Unreadable),
    };
    let verdict = compare(expect, got.as_deref());
    if verdict != Verdict::Bad(ValidationProblem::Mismatched) || node == primary {
        return verdict;
    }
    // A `DUMP` is not canonical: a set or hash in a hash table dumps its members in the table's order,
    // which differs from process to process. The copy is right if it holds what its primary (which
    // restored the payload) holds.
    let (on_node, on_primary) =
        futures::future::join(contents(io, node, key), contents(io, primary, key)).await;
    match (on_node, on_primary) {
        (Ok(Some(a)), Ok(Some(b))) if a == b => Verdict::Ok,
        (Ok(None), _) => Verdict::Bad(ValidationProblem::Missing),
        (Ok(_), Ok(_)) => verdict,
        (Err(_), _) | (_, Err(_)) => Verdict::Bad(ValidationProblem::Unreadable),
    }
}

/// A value's type and contents in a form that compares equal across nodes: members of sets and
/// fields of hashes sorted. `None` when the key does not exist.
async fn contents(
    io: &Io,
    node: &str,
    key: &Bytes,
) -> Result<Option<(String, Vec<Bytes>)>, cluster_client::Error> {
    let kind: String = io
        .client
        .node_command(node, vec!["TYPE".into(), Value::Bytes(key.clone())])
        .await?;
    let (command, extra): (&str, &[&str]) = match kind.as_str() {
        "none" => return Ok(None),
        "string" => ("GET", &[]),
        "list" => ("LRANGE", &["0", "-1"]),
        "hash" => ("HGETALL", &[]),
        "set" => ("SMEMBERS", &[]),
        "zset" => ("ZRANGE", &["0", "-1", "WITHSCORES"]),
        "stream" => ("XRANGE", &["-", "+"]),
        _ => ("DUMP", &[]),
    };
    let mut args: Vec<Value> = vec![command.into(), Value::Bytes(key.clone())];
    args.extend(extra.iter().map(|a| Value::from(*a)));
    let reply: Value = io.client.node_command(node, args).await?;
    let mut items = flatten(reply);
    match kind.as_str() {
        "set" => items.sort(),
        "hash" => {
            let mut pairs: Vec<(Bytes, Bytes)> = items
                .chunks(2)
                .map(|p| (p[0].clone(), p.get(1).cloned().unwrap_or_default()))
                .collect();
            pairs.sort();
            items = pairs.into_iter().flat_map(|(f, v)| [f, v]).collect();
        }
        _ => {}
    }
    Ok(Some((kind, items)))
}

/// The leaves of a reply, in order (a map's keys and values alternate).
fn flatten(value: Value) -> Vec<Bytes> {
    match value {
        Value::Array(items) => items.into_iter().flat_map(flatten).collect(),
        Value::Map(map) => map
            .into_iter()
            .flat_map(|(k, v)| {
                let mut out = flatten(k);
                out.extend(flatten(v));
                out
            })
            .collect(),
        Value::Null => vec![Bytes::new()],
        other => vec![other.into_bytes().unwrap_or_default()],
    }
}

/// Reads every bad copy again, on the node that holds its key now (after a topology refresh), once
/// that node has caught up with its primary's replication offset.
async fn recheck(
    io: &Io,
    config: &ValidationConfig,
    verdicts: Vec<(Bytes, String, Verdict)>,
    expectations: &HashMap<Bytes, (u16, Expect)>,
) -> Vec<(Bytes, String, Verdict)> {
    let (good, bad): (Vec<_>, Vec<_>) = verdicts
        .into_iter()
        .partition(|(_, _, v)| !matches!(v, Verdict::Bad(_)));
    if bad.is_empty() {
        return good;
    }
    let _ = io.client.refresh_topology().await;
    let topology = io.client.topology();
    // (node, primary) → keys to read there again.
    let mut again: BTreeMap<(String, String), Vec<Check>> = BTreeMap::new();
    let mut out = good;
    for (key, node, verdict) in bad {
        let (Some(shard), Some((slot, expect))) = (topology.shard_for_key(&key), expectations.get(&key))
        else {
            out.push((key, node, verdict));
            continue;
        };
        // The same node if it still serves the key, else the copy's counterpart in the key's shard now.
        let target = if node == shard.primary || shard.replicas.contains(&node) {
            node
        } else {
            shard
                .replicas
                .first()
                .cloned()
                .unwrap_or_else(|| shard.primary.clone())
        };
        again
            .entry((target, shard.primary.clone()))
            .or_default()
            .push((*slot, key, expect.clone()));
    }
    let rounds = again.into_iter().map(|((node, primary), checks)| async move {
        if node != primary {
            wait_caught_up(io, &node, &primary, config.replica_catch_up).await;
        }
        let mut verdicts = Vec::with_capacity(checks.len());
        for chunk in checks.chunks(READ_CHUNK) {
            let read = read_and_compare(io, &node, &primary, chunk).await;
            verdicts.extend(
                read.into_iter()
                    .zip(chunk)
                    .map(|(v, (_, key, _))| (key.clone(), node.clone(), v)),
            );
        }
        verdicts
    });
    for verdicts in futures::future::join_all(rounds).await {
        out.extend(verdicts);
    }
    out
}

/// Reads, on its primary, every key whose copy still disagrees after the recheck, and calls the copy
/// superseded when the primary holds a value the warm-up did not write ([`primary_supersedes`]).
async fn supersede(
    io: &Io,
    verdicts: Vec<(Bytes, String, Verdict)>,
    expectations: &HashMap<Bytes, (u16, Expect)>,
) -> Vec<(Bytes, String, Verdict)> {
    let topology = io.client.topology();
    let mut out = Vec::with_capacity(verdicts.len());
    // primary → (slot, key, copy's node) of the copies to decide there.
    let mut by_primary: BTreeMap<String, Vec<(u16, Bytes, String)>> = BTreeMap::new();
    for (key, node, verdict) in verdicts {
        let candidate = verdict == Verdict::Bad(ValidationProblem::Mismatched)
            && expectations
                .get(&key)
                .is_some_and(|(_, expect)| !matches!(expect, Expect::Dump(_)));
        match (candidate, topology.shard_for_key(&key)) {
            (true, Some(shard)) => by_primary.entry(shard.primary.clone()).or_default().push((
                key_slot_of(expectations, &key),
                key,
                node,
            )),
            _ => out.push((key, node, verdict)),
        }
    }
    let reads = by_primary.into_iter().map(|(primary, mut copies)| async move {
        copies.sort_by_key(|(slot, ..)| *slot);
        let slots: Vec<u16> = copies.iter().map(|(slot, ..)| *slot).collect();
        let mut decided = Vec::with_capacity(copies.len());
        for run in io.runs(&slots) {
            let part = &copies[run];
            let mut args: Vec<Value> = Vec::with_capacity(part.len() + 1);
            args.push("MGET".into());
            args.extend(part.iter().map(|(_, key, _)| Value::Bytes(key.clone())));
            let reply = io.client.node_command::<Vec<Option<Bytes>>>(&primary, args).await;
            let values = match reply {
                Ok(values) if values.len() == part.len() => values.into_iter().map(Some).collect(),
                // The primary could not say: the copies stay as they were judged.
                _ => vec![None; part.len()],
            };
            for ((_, key, node), value) in part.iter().zip(values) {
                let superseded = value.is_some_and(|value| {
                    expectations
                        .get(key)
                        .is_some_and(|(_, expect)| primary_supersedes(expect, value.as_deref()))
                });
                let verdict = if superseded {
                    Verdict::Superseded
                } else {
                    Verdict::Bad(ValidationProblem::Mismatched)
                };
                decided.push((key.clone(), node.clone(), verdict));
            }
        }
        decided
    });
    for decided in futures::future::join_all(reads).await {
        out.extend(decided);
    }
    out
}

fn key_slot_of(expectations: &HashMap<Bytes, (u16, Expect)>, key: &Bytes) -> u16 {
    expectations
        .get(key)
        .map_or_else(|| sharding::key_slot(key), |(slot, _)| *slot)
}

/// Waits (at most `timeout`) until `replica` has applied what `primary` had written when this began.
async fn wait_caught_up(io: &Io, replica: &str, primary: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let info = |node: String| async move {
        io.client
            .node_command::<String>(&node, vec!["INFO".into(), "replication".into()])
            .await
            .ok()
    };
    let Some(target) = info(primary.to_string())
        .await
        .and_then(|i| replies::Info::parse(&i).master_repl_offset)
    else {
        return false;
    };
    loop {
        let reached = info(replica.to_string())
            .await
            .and_then(|i| replies::Info::parse(&i).replica_repl_offset);
        if reached.is_some_and(|r| r >= target) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(CATCH_UP_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use consistency::{Hlc, Version, WriterId};

    fn version(ms: u64) -> Version {
        Version::new(Hlc::new(ms, 0), WriterId(1))
    }

    fn envelope(ms: u64, payload: &[u8]) -> Vec<u8> {
        Envelope::Value {
            version: version(ms),
            payload,
        }
        .encode()
    }

    #[test]
    fn copies_compare_with_what_was_written() {
        use ValidationProblem::*;
        let bytes = Expect::Bytes(Bytes::from_static(b"v"));
        let versioned = Expect::Versioned {
            version: version(10),
            value: Bytes::from_static(b"v"),
        };
        let dump = Expect::Dump(Bytes::from_static(b"payload"));
        let tombstone = |ms| Envelope::Tombstone { version: version(ms) }.encode();
        let cases: Vec<(&Expect, Option<Vec<u8>>, Verdict)> = vec![
            (&bytes, Some(b"v".to_vec()), Verdict::Ok),
            (&bytes, Some(b"w".to_vec()), Verdict::Bad(Mismatched)),
            (&bytes, None, Verdict::Bad(Missing)),
            (&versioned, Some(envelope(10, b"v")), Verdict::Ok),
            (&versioned, Some(envelope(10, b"w")), Verdict::Bad(Mismatched)),
            (&versioned, Some(envelope(11, b"newer")), Verdict::Superseded),
            (&versioned, Some(envelope(9, b"v")), Verdict::Bad(Mismatched)),
            (&versioned, Some(tombstone(11)), Verdict::Superseded),
            (&versioned, Some(tombstone(9)), Verdict::Bad(Mismatched)),
            (&versioned, Some(b"v".to_vec()), Verdict::Bad(Mismatched)),
            (
                &versioned,
                Some(b"\xFFLWW\x01".to_vec()),
                Verdict::Bad(Mismatched),
            ),
            (&versioned, None, Verdict::Bad(Missing)),
            (&dump, Some(b"payload".to_vec()), Verdict::Ok),
            (&dump, Some(b"other".to_vec()), Verdict::Bad(Mismatched)),
        ];
        for (expect, got, want) in cases {
            assert_eq!(compare(expect, got.as_deref()), want, "{expect:?} vs {got:?}");
        }
    }

    #[test]
    fn a_copy_is_superseded_only_when_the_primary_holds_another_write() {
        let bytes = Expect::Bytes(Bytes::from_static(b"v"));
        let versioned = Expect::Versioned {
            version: version(10),
            value: Bytes::from_static(b"v"),
        };
        let dump = Expect::Dump(Bytes::from_static(b"payload"));
        let cases: Vec<(&Expect, Option<Vec<u8>>, bool)> = vec![
            // The primary holds the warm-up's value: the copy is bad.
            (&bytes, Some(b"v".to_vec()), false),
            (&versioned, Some(envelope(10, b"v")), false),
            // The primary lost the key: bad, not superseded.
            (&bytes, None, false),
            (&versioned, None, false),
            // Another client wrote.
            (&bytes, Some(b"app".to_vec()), true),
            (&versioned, Some(envelope(11, b"app")), true),
            (
                &versioned,
                Some(Envelope::Tombstone { version: version(12) }.encode()),
                true,
            ),
            (&versioned, Some(b"plain app value".to_vec()), true),
            // An older version on the primary: the warm-up's write was lost.
            (&versioned, Some(envelope(9, b"old")), false),
            (&dump, Some(b"other".to_vec()), false),
        ];
        for (expect, primary, want) in cases {
            assert_eq!(
                primary_supersedes(expect, primary.as_deref()),
                want,
                "{expect:?} vs {primary:?}"
            );
        }
    }

    #[test]
    fn window_reports_merge() {
        let ack = |primary: &str, acked: Option<u32>| ShardAck {
            primary: primary.into(),
            replicas: 1,
            acked,
        };
        let problem = |key: &'static str| BadEntry {
            key: Bytes::from_static(key.as_bytes()),
            node: "r".into(),
            problem: ValidationProblem::Missing,
        };
        let first = ValidationReport {
            sampled: 10,
            checked: 10,
            matched: 8,
            superseded: 1,
            missing: 1,
            bad_entries: 1,
            acks: vec![ack("a", Some(1)), ack("b", Some(1))],
            problems: vec![problem("k1")],
            ..ValidationReport::default()
        };
        let second = ValidationReport {
            sampled: 5,
            checked: 5,
            matched: 3,
            missing: 2,
            bad_entries: 2,
            acks: vec![ack("a", None), ack("c", Some(0))],
            problems: vec![problem("k2"), problem("k3")],
            ..ValidationReport::default()
        };
        let merged = merge(first, second, 2);
        assert_eq!(
            (
                merged.sampled,
                merged.checked,
                merged.matched,
                merged.superseded,
                merged.missing,
                merged.bad_entries
            ),
            (15, 15, 11, 1, 3, 3)
        );
        assert_eq!(
            merged.acks,
            [ack("a", None), ack("b", Some(1)), ack("c", Some(0))]
        );
        assert_eq!(merged.problems, [problem("k1"), problem("k2")]);
    }

    #[test]
    fn tally_counts_copies_and_keys() {
        use ValidationProblem::*;
        let key = |k: &'static str| Bytes::from_static(k.as_bytes());
        let verdicts = vec![
            (key("a"), "r1".to_string(), Verdict::Ok),
            (key("a"), "r2".to_string(), Verdict::Bad(Missing)),
            (key("b"), "r1".to_string(), Verdict::Bad(Mismatched)),
            (key("b"), "r2".to_string(), Verdict::Bad(Unreadable)),
            (key("c"), "r1".to_string(), Verdict::Ok),
        ];
        let mut report = ValidationReport::default();
        tally(&mut report, verdicts, 2);
        assert_eq!(
            (
                report.checked,
                report.matched,
                report.missing,
                report.mismatched,
                report.unreadable,
                report.bad_entries
            ),
            (5, 2, 1, 1, 1, 2)
        );
        assert_eq!(report.problems.len(), 2);
        assert_eq!(report.problems[0].node, "r2");
    }

    #[test]
    fn info_fields_parse() {
        let info = "# Replication\r\nrole:slave\r\nslave_repl_offset:1200\r\nmaster_repl_offset:1300\r\n";
        let info = replies::Info::parse(info);
        assert_eq!(info.replica_repl_offset, Some(1200));
        assert_eq!(info.master_repl_offset, Some(1300));
        assert_eq!(info.get_u64("missing"), None);
    }
}
