//! Rollback: each touched key's previous value and TTL, captured before the warm-up overwrites it, and
//! put back (or the key deleted, if it did not exist) when validation finds too many bad entries.
//!
//! The undo is conditional, decided on the server: a key is put back only if it still holds exactly
//! what the warm-up wrote (the SHA-1 of its bytes, or of its `DUMP`, against the digest kept when the
//! warm-up wrote it). A key another client wrote or deleted since is left alone and counted. Keys the
//! warm-up did not write (skipped, failed, a versioned write that found a newer version) are never
//! touched.
//!
//! What the capture holds is bounded by [`WarmupConfig::undo_budget_bytes`](crate::WarmupConfig):
//! payloads are only answered by the server when they fit in the bytes reserved for them, and a key
//! whose previous value does not fit is not written at all (the warm-up never overwrites a value it
//! could not put back).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cluster_client::Value;

use crate::write::{Io, Outcome, Wrote, is_noscript, script_reply_error};

/// What one captured key costs besides its key and payload bytes: the map's entry, the `Bytes`
/// handles, the deadline and the digest. An estimate on the high side, so the budget bounds the real
/// memory.
pub(crate) const RECORD_OVERHEAD: usize = 128;

/// The gauge of the bytes the undo capture holds.
pub(crate) const UNDO_BYTES_GAUGE: &str = crate::telemetry::UNDO_BYTES_METRIC;

fn describe_metrics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(crate::telemetry::describe_metrics);
}

/// What a key held before the warm-up touched it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Previous {
    /// The key did not exist.
    Absent,
    /// Its `DUMP` payload, and when it was due to expire.
    Present {
        payload: Bytes,
        expires_at: Option<Instant>,
    },
}

/// How the rollback puts a key back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Restore {
    /// `RESTORE key ttl payload REPLACE`.
    Put { payload: Bytes, ttl: Option<Duration> },
    /// `DEL key`.
    Delete,
}

impl Previous {
    /// The action that puts the key back as it was, at `now`.
    pub(crate) fn restore_at(&self, now: Instant) -> Restore {
        match self {
            Previous::Absent => Restore::Delete,
            Previous::Present {
                payload,
                expires_at: None,
            } => Restore::Put {
                payload: payload.clone(),
                ttl: None,
            },
            // The key would have expired by now: it stays gone.
            Previous::Present {
                expires_at: Some(at), ..
            } if *at <= now + Duration::from_millis(1) => Restore::Delete,
            Previous::Present {
                payload,
                expires_at: Some(at),
            } => Restore::Put {
                payload: payload.clone(),
                ttl: Some(*at - now),
            },
        }
    }

    pub(crate) fn payload_len(&self) -> usize {
        match self {
            Previous::Absent => 0,
            Previous::Present { payload, .. } => payload.len(),
        }
    }
}

/// The bytes the undo capture may hold, and holds. Reservations are taken before the server is asked
/// for a payload, so what is held (and in flight) never passes the limit.
#[derive(Debug)]
pub(crate) struct UndoBudget {
    limit: usize,
    held: AtomicUsize,
    peak: AtomicUsize,
}

impl UndoBudget {
    pub(crate) fn new(limit: usize) -> UndoBudget {
        describe_metrics();
        UndoBudget {
            limit,
            held: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        }
    }

    /// Reserves up to `wanted` bytes (what is left when less); returns how many were reserved.
    pub(crate) fn reserve_up_to(&self, wanted: usize) -> usize {
        let mut got = 0;
        let _ = self
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                got = wanted.min(self.limit.saturating_sub(held));
                Some(held + got)
            });
        self.reserved(got);
        got
    }

    /// Reserves exactly `bytes`, or nothing.
    pub(crate) fn try_reserve(&self, bytes: usize) -> bool {
        let ok = self
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(bytes).filter(|&after| after <= self.limit)
            })
            .is_ok();
        if ok {
            self.reserved(bytes);
        }
        ok
    }

    fn reserved(&self, bytes: usize) {
        if bytes > 0 {
            self.peak
                .fetch_max(self.held.load(Ordering::Acquire), Ordering::AcqRel);
            metrics::gauge!(UNDO_BYTES_GAUGE).increment(bytes as f64);
        }
    }

    pub(crate) fn release(&self, bytes: usize) {
        if bytes > 0 {
            self.held.fetch_sub(bytes, Ordering::AcqRel);
            metrics::gauge!(UNDO_BYTES_GAUGE).decrement(bytes as f64);
        }
    }

    pub(crate) fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }

    /// The most bytes held at once.
    pub(crate) fn peak(&self) -> usize {
        self.peak.load(Ordering::Acquire)
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }
}

/// One key's undo: what it held before, and what the warm-up left there (`None` until written).
#[derive(Debug)]
struct Record {
    previous: Previous,
    wrote: Option<Wrote>,
    cost: usize,
}

/// What the rollback may undo: a key's previous state and what the warm-up wrote over it.
pub(crate) type Undo = (Bytes, Previous, Wrote);

/// Previous states of the keys touched so far, within the budget. A key is captured once: a second
/// entry for it (in a later window) must not capture what the warm-up itself wrote.
#[derive(Debug)]
pub(crate) struct UndoLog {
    keys: Mutex<HashMap<Bytes, Record>>,
    pub(crate) budget: UndoBudget,
}

impl UndoLog {
    pub(crate) fn new(budget_bytes: usize) -> UndoLog {
        UndoLog {
            keys: Mutex::new(HashMap::new()),
            budget: UndoBudget::new(budget_bytes),
        }
    }

    fn keys(&self) -> std::sync::MutexGuard<'_, HashMap<Bytes, Record>> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The keys of `keys` not captured yet.
    pub(crate) fn missing(&self, keys: &[&Bytes]) -> Vec<bool> {
        let captured = self.keys();
        keys.iter().map(|k| !captured.contains_key(*k)).collect()
    }

    /// Keeps `previous` for `key`, whose `cost` bytes the caller reserved; a key captured already
    /// keeps its first capture and the reservation is given back.
    pub(crate) fn insert(&self, key: Bytes, previous: Previous, cost: usize) {
        let mut keys = self.keys();
        if keys.contains_key(&key) {
            drop(keys);
            self.budget.release(cost);
            return;
        }
        keys.insert(
            key,
            Record {
                previous,
                wrote: None,
                cost,
            },
        );
    }

    /// Records what the warm-up wrote under `key`: from now on the rollback may undo it.
    pub(crate) fn wrote(&self, key: &Bytes, wrote: Wrote) {
        if let Some(record) = self.keys().get_mut(key) {
            record.wrote = Some(wrote);
        }
    }

    /// Forgets a key the warm-up did not write (skipped, failed) and never wrote before: it must never
    /// be rolled back, and its bytes go back to the budget.
    pub(crate) fn discard_unwritten(&self, key: &Bytes) {
        let mut keys = self.keys();
        if keys.get(key).is_some_and(|r| r.wrote.is_none())
            && let Some(record) = keys.remove(key)
        {
            drop(keys);
            self.budget.release(record.cost);
        }
    }

    /// Every key the warm-up wrote, with its previous state and what was written; the log is emptied
    /// (its bytes stay reserved until the log is dropped, since the rollback still holds them).
    pub(crate) fn take_written(&self) -> Vec<Undo> {
        std::mem::take(&mut *self.keys())
            .into_iter()
            // Not written: the key is not the warm-up's to change.
            .filter_map(|(key, record)| record.wrote.map(|wrote| (key, record.previous, wrote)))
            .collect()
    }
}

impl Drop for UndoLog {
    fn drop(&mut self) {
        // Everything held goes back, so the gauge falls to what other runs hold.
        self.budget.release(self.budget.held());
    }
}

/// A key's capture: its previous state, or the size of a payload that did not fit in the allowance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Captured {
    Previous(Previous),
    TooBig(usize),
}

/// Reads the previous state of `keys` (one shard's, whose primary is `primary`, in slot order, with
/// their slots): one `DUMP`+`PTTL` script call per slot group, each key atomically, sent straight to
/// the primary; a group whose call fails goes through the routed `eval` instead. Up to `share` payload
/// bytes are reserved from `budget` before anything is sent, split between the calls; each call gives
/// back what it did not use. Results in input order.
pub(crate) async fn capture(
    io: &Io,
    primary: &str,
    slots: &[u16],
    keys: &[Bytes],
    budget: &UndoBudget,
    share: usize,
) -> Vec<Result<Captured, cluster_client::Error>> {
    let runs = io.runs(slots);
    let reserved = budget.reserve_up_to(share);
    let per_call = reserved / runs.len().max(1);
    budget.release(reserved - per_call * runs.len());
    let calls = runs.into_iter().map(|run| async move {
        let part = &keys[run.clone()];
        let (results, used) = capture_run(io, primary, part, per_call).await;
        budget.release(per_call - used.min(per_call));
        (run, results)
    });
    let mut out: Vec<Option<Result<Captured, cluster_client::Error>>> =
        (0..keys.len()).map(|_| None).collect();
    for (run, results) in futures::future::join_all(calls).await {
        for (index, result) in run.zip(results) {
            out[index] = Some(result);
        }
    }
    out.into_iter()
        .map(|r| r.unwrap_or_else(|| Err(bad_reply("no reply for the key".into()))))
        .collect()
}

/// Captures one slot group within `allowance` payload bytes; returns the results and the payload bytes
/// they hold.
pub(crate) async fn capture_run(
    io: &Io,
    primary: &str,
    part: &[Bytes],
    allowance: usize,
) -> (Vec<Result<Captured, cluster_client::Error>>, usize) {
    let held = |results: &[Result<Captured, cluster_client::Error>]| -> usize {
        results
            .iter()
            .map(|r| match r {
                Ok(Captured::Previous(previous)) => previous.payload_len(),
                _ => 0,
            })
            .sum()
    };
    if let Ok(previous) = capture_on(io, primary, part, allowance).await {
        let results: Vec<_> = previous.into_iter().map(Ok).collect();
        let used = held(&results);
        return (results, used);
    }
    if let Ok(previous) = capture_call(io, part, allowance).await {
        let results: Vec<_> = previous.into_iter().map(Ok).collect();
        let used = held(&results);
        return (results, used);
    }
    // One key per call always routes (through ASK while its slot moves). One after the other, so the
    // allowance is shared out as it is used.
    let mut results = Vec::with_capacity(part.len());
    let mut used = 0;
    for key in part {
        let result = capture_call(io, std::slice::from_ref(key), allowance - used)
            .await
            .and_then(|mut p| p.pop().ok_or_else(|| bad_reply("empty reply".into())));
        if let Ok(Captured::Previous(previous)) = &result {
            used += previous.payload_len();
        }
        results.push(result);
    }
    (results, used)
}

fn bad_reply(detail: String) -> cluster_client::Error {
    script_reply_error("capture script", detail)
}

fn capture_args(io: &Io, keys: &[Bytes], allowance: usize) -> Vec<Value> {
    let mut args: Vec<Value> = Vec::with_capacity(4 + keys.len());
    args.push("EVALSHA".into());
    args.push(io.scripts.capture.sha().into());
    args.push(Value::Integer(keys.len() as i64));
    args.extend(keys.iter().map(|k| Value::Bytes(k.clone())));
    args.push(Value::Bytes(Bytes::from(allowance.to_string())));
    args
}

/// The capture script on `node` itself, keys handed over without copies.
async fn capture_on(
    io: &Io,
    node: &str,
    keys: &[Bytes],
    allowance: usize,
) -> Result<Vec<Captured>, cluster_client::Error> {
    let reply = match io
        .client
        .node_command::<Value>(node, capture_args(io, keys, allowance))
        .await
    {
        Err(error) if is_noscript(&error) => {
            // Loaded once per node; this group goes the routed way meanwhile.
            let load = vec!["SCRIPT".into(), "LOAD".into(), io.scripts.capture.source().into()];
            io.client.node_command::<Value>(node, load).await?;
            return Err(bad_reply("the capture script was not loaded yet".into()));
        }
        other => other?,
    };
    let read_at = Instant::now();
    parse_capture(reply, keys.len(), allowance, read_at).map_err(bad_reply)
}

async fn capture_call(
    io: &Io,
    keys: &[Bytes],
    allowance: usize,
) -> Result<Vec<Captured>, cluster_client::Error> {
    let refs: Vec<&[u8]> = keys.iter().map(|k| &k[..]).collect();
    let allowance_arg = allowance.to_string();
    let reply = io
        .client
        .eval(&io.scripts.capture, &refs, &[allowance_arg.as_bytes()])
        .await?;
    let read_at = Instant::now();
    parse_capture(reply, keys.len(), allowance, read_at).map_err(bad_reply)
}

/// Parses the capture script's reply: per key `[payload, pttl]` or `['', -3, size]`. Nothing in it is
/// trusted: payloads past the allowance, unknown PTTLs and deadlines past what a clock can hold are
/// refused, not allocated again nor added to an `Instant`.
pub(crate) fn parse_capture(
    reply: Value,
    keys: usize,
    allowance: usize,
    read_at: Instant,
) -> Result<Vec<Captured>, String> {
    let Value::Array(items) = reply else {
        return Err(format!("not an array: {reply:?}"));
    };
    if items.len() != keys {
        return Err(format!("{} replies for {keys} keys", items.len()));
    }
    let mut used = 0usize;
    items
        .into_iter()
        .map(|item| {
            let Value::Array(mut pair) = item else {
                return Err(format!("not a [payload, pttl] pair: {item:?}"));
            };
            if !(2..=3).contains(&pair.len()) {
                return Err(format!("not a [payload, pttl] pair: {pair:?}"));
            }
            let size = if pair.len() == 3 { pair.pop() } else { None };
            let pttl = pair
                .pop()
                .and_then(|v| v.as_i64())
                .ok_or("pttl is not an integer")?;
            let payload = pair.pop().and_then(|v| v.into_bytes()).unwrap_or_default();
            used = used.saturating_add(payload.len());
            if used > allowance {
                return Err(format!(
                    "the server answered {used} payload bytes, more than the {allowance} allowed"
                ));
            }
            Ok(match pttl {
                -3 => {
                    let size = size
                        .and_then(|v| v.as_i64())
                        .and_then(|n| usize::try_from(n).ok())
                        .ok_or("a payload over the allowance came without its size")?;
                    Captured::TooBig(size)
                }
                -1 => Captured::Previous(Previous::Present {
                    payload,
                    expires_at: None,
                }),
                ms if ms > 0 && !payload.is_empty() => {
                    let expires_at = read_at
                        .checked_add(Duration::from_millis(ms as u64))
                        .ok_or_else(|| format!("pttl {ms} ms is past what this clock can hold"))?;
                    Captured::Previous(Previous::Present {
                        payload,
                        expires_at: Some(expires_at),
                    })
                }
                -2 | 0 => Captured::Previous(Previous::Absent),
                ms if ms > 0 => Captured::Previous(Previous::Absent),
                other => return Err(format!("pttl {other} is not a PTTL reply")),
            })
        })
        .collect()
}

/// What the rollback did to one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Undone {
    /// Put back (restored or deleted).
    Done,
    /// Left alone: it holds something other than what the warm-up wrote.
    Changed,
}

/// One key to roll back: its slot, key, what the warm-up wrote, and how to put it back.
pub(crate) type RollbackAction = (u16, Bytes, Wrote, Restore);

/// Rolls back `actions` of one shard, in slot order: one compare-and-restore script call per slot
/// group (single keys when a group's call fails); results in input order.
pub(crate) async fn roll_back(io: &Io, actions: &[RollbackAction]) -> Vec<Result<Undone, Outcome>> {
    let slots: Vec<u16> = actions.iter().map(|(slot, ..)| *slot).collect();
    let calls = io.runs(&slots).into_iter().map(|run| async move {
        let part = &actions[run.clone()];
        match rollback_call(io, part).await {
            Ok(results) => (run, results),
            Err(_) => {
                let single = part.iter().map(|action| async move {
                    match rollback_call(io, std::slice::from_ref(action)).await {
                        Ok(mut results) => results
                            .pop()
                            .unwrap_or(Err(Outcome::Failed("empty reply".into()))),
                        Err(error) => Err(crate::write::outcome_of_error(&error)),
                    }
                });
                (run, futures::future::join_all(single).await)
            }
        }
    });
    let mut out: Vec<Result<Undone, Outcome>> = (0..actions.len())
        .map(|_| Err(Outcome::Failed("internal: no outcome".into())))
        .collect();
    for (run, results) in futures::future::join_all(calls).await {
        for (index, result) in run.zip(results) {
            out[index] = result;
        }
    }
    out
}

async fn rollback_call(
    io: &Io,
    part: &[RollbackAction],
) -> Result<Vec<Result<Undone, Outcome>>, cluster_client::Error> {
    let keys: Vec<&[u8]> = part.iter().map(|(_, k, ..)| &k[..]).collect();
    let mut owned: Vec<Bytes> = Vec::with_capacity(part.len() * 5);
    for (_, _, wrote, restore) in part {
        owned.push(Bytes::from_static(wrote.read_as.as_str().as_bytes()));
        owned.push(Bytes::from(wrote.digest.hex()));
        match restore {
            Restore::Put { payload, ttl } => {
                owned.push(Bytes::from_static(b"restore"));
                owned.push(Bytes::from(
                    ttl.map_or(0, |ttl| ttl.as_millis().max(1)).to_string(),
                ));
                owned.push(payload.clone());
            }
            Restore::Delete => {
                owned.push(Bytes::from_static(b"delete"));
                owned.push(Bytes::from_static(b"0"));
                owned.push(Bytes::new());
            }
        }
    }
    let args: Vec<&[u8]> = owned.iter().map(|b| &b[..]).collect();
    let reply = io.client.eval(&io.scripts.rollback, &keys, &args).await?;
    parse_rollback(reply, part.len()).map_err(|detail| script_reply_error("rollback script", detail))
}

/// Parses the rollback script's reply: per key `{1}`, `{2}` or `{0, error}`.
fn parse_rollback(reply: Value, keys: usize) -> Result<Vec<Result<Undone, Outcome>>, String> {
    Ok(crate::write::per_key_replies(reply, keys)?
        .into_iter()
        .map(|reply| {
            let Value::Array(items) = reply else {
                return Err(Outcome::Failed(format!("unexpected reply {reply:?}")));
            };
            match items.first().and_then(Value::as_i64) {
                Some(1) => Ok(Undone::Done),
                Some(2) => Ok(Undone::Changed),
                Some(0) => Err(Outcome::Failed(
                    items
                        .get(1)
                        .and_then(Value::as_bytes)
                        .map(|e| String::from_utf8_lossy(e).into_owned())
                        .unwrap_or_else(|| "the rollback failed".into()),
                )),
                _ => Err(Outcome::Failed(format!("unexpected reply {items:?}"))),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previous_states_restore_as_they_were() {
        let now = Instant::now();
        let payload = Bytes::from_static(b"dump");
        let check =
            |previous: Previous, want: Restore| assert_eq!(previous.restore_at(now), want, "{previous:?}");
        check(Previous::Absent, Restore::Delete);
        check(
            Previous::Present {
                payload: payload.clone(),
                expires_at: None,
            },
            Restore::Put {
                payload: payload.clone(),
                ttl: None,
            },
        );
        check(
            Previous::Present {
                payload: payload.clone(),
                expires_at: Some(now + Duration::from_secs(30)),
            },
            Restore::Put {
                payload: payload.clone(),
                ttl: Some(Duration::from_secs(30)),
            },
        );
        check(
            Previous::Present {
                payload,
                expires_at: Some(now),
            },
            Restore::Delete,
        );
    }

    #[test]
    fn capture_replies_parse() {
        let now = Instant::now();
        let pair = |payload: &'static [u8], pttl: i64| {
            Value::Array(vec![
                Value::Bytes(Bytes::from_static(payload)),
                Value::Integer(pttl),
            ])
        };
        let too_big = |size: i64| {
            Value::Array(vec![
                Value::Bytes(Bytes::new()),
                Value::Integer(-3),
                Value::Integer(size),
            ])
        };
        let reply = Value::Array(vec![
            pair(b"p1", -1),
            pair(b"", -2),
            pair(b"p3", 5000),
            too_big(1 << 20),
        ]);
        assert_eq!(
            parse_capture(reply, 4, 4, now),
            Ok(vec![
                Captured::Previous(Previous::Present {
                    payload: Bytes::from_static(b"p1"),
                    expires_at: None
                }),
                Captured::Previous(Previous::Absent),
                Captured::Previous(Previous::Present {
                    payload: Bytes::from_static(b"p3"),
                    expires_at: Some(now + Duration::from_secs(5))
                }),
                Captured::TooBig(1 << 20),
            ])
        );
        let check_bad = |reply: Value, keys: usize, want: &str| {
            let error = parse_capture(reply, keys, 100, now).expect_err("malformed");
            assert!(error.contains(want), "{error}");
        };
        check_bad(Value::Integer(1), 1, "not an array");
        check_bad(Value::Array(vec![]), 1, "0 replies for 1 keys");
        check_bad(
            Value::Array(vec![Value::Integer(1)]),
            1,
            "not a [payload, pttl] pair",
        );
        check_bad(Value::Array(vec![pair(b"p", -1), pair(b"q", -1)]), 1, "2 replies");
        // Hostile replies: more bytes than allowed, a size-less refusal, a PTTL no reply has.
        check_bad(
            Value::Array(vec![pair(&[b'x'; 101], -1)]),
            1,
            "more than the 100 allowed",
        );
        check_bad(Value::Array(vec![pair(b"p", -3)]), 1, "without its size");
        check_bad(Value::Array(vec![pair(b"p", -7)]), 1, "not a PTTL reply");
    }

    #[test]
    fn a_hostile_pttl_is_refused_not_a_panic() {
        // The largest PTTL a server can answer: the deadline is past what some clocks hold, and adding
        // it to an `Instant` must never panic.
        let now = Instant::now();
        let reply = Value::Array(vec![Value::Array(vec![
            Value::Bytes(Bytes::from_static(b"p")),
            Value::Integer(i64::MAX),
        ])]);
        match parse_capture(reply, 1, 10, now) {
            Ok(captured) => assert!(
                matches!(
                    &captured[..],
                    [Captured::Previous(Previous::Present {
                        expires_at: Some(_),
                        ..
                    })]
                ),
                "{captured:?}"
            ),
            Err(error) => assert!(error.contains("past what this clock can hold"), "{error}"),
        }
    }

    #[test]
    fn the_budget_never_hands_out_more_than_its_limit() {
        let budget = UndoBudget::new(100);
        assert_eq!(budget.reserve_up_to(60), 60);
        assert_eq!(budget.reserve_up_to(60), 40);
        assert_eq!(budget.reserve_up_to(1), 0);
        assert!(!budget.try_reserve(1));
        assert!(!budget.try_reserve(usize::MAX));
        budget.release(50);
        assert!(budget.try_reserve(50));
        assert!(!budget.try_reserve(1));
        assert_eq!((budget.held(), budget.peak()), (100, 100));
    }

    /// A recorder that keeps the undo gauge's value.
    #[derive(Debug, Default)]
    struct GaugeRecorder {
        value: std::sync::Arc<Mutex<f64>>,
    }

    #[derive(Debug)]
    struct GaugeCell(std::sync::Arc<Mutex<f64>>);

    impl metrics::GaugeFn for GaugeCell {
        fn increment(&self, value: f64) {
            *self.0.lock().unwrap() += value;
        }
        fn decrement(&self, value: f64) {
            *self.0.lock().unwrap() -= value;
        }
        fn set(&self, value: f64) {
            *self.0.lock().unwrap() = value;
        }
    }

    impl metrics::Recorder for GaugeRecorder {
        fn describe_counter(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
        fn describe_gauge(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
        fn describe_histogram(
            &self,
            _: metrics::KeyName,
            _: Option<metrics::Unit>,
            _: metrics::SharedString,
        ) {
        }
        fn register_counter(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
            metrics::Counter::noop()
        }
        fn register_gauge(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
            assert_eq!(key.name(), UNDO_BYTES_GAUGE);
            metrics::Gauge::from_arc(std::sync::Arc::new(GaugeCell(self.value.clone())))
        }
        fn register_histogram(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Histogram {
            metrics::Histogram::noop()
        }
    }

    #[test]
    fn the_gauge_follows_the_bytes_held() {
        let recorder = GaugeRecorder::default();
        let gauge = || *recorder.value.lock().unwrap();
        metrics::with_local_recorder(&recorder, || {
            let log = UndoLog::new(1000);
            assert!(log.budget.try_reserve(300));
            assert_eq!(log.budget.reserve_up_to(1000), 700);
            assert_eq!(gauge(), 1000.0);
            log.budget.release(600);
            assert_eq!(gauge(), 400.0);
            // A finished run gives everything back.
            drop(log);
            assert_eq!(gauge(), 0.0);
        });
    }

    #[test]
    fn only_written_keys_are_rolled_back_and_each_is_captured_once() {
        let log = UndoLog::new(10_000);
        let key = |k: &'static str| Bytes::from_static(k.as_bytes());
        let wrote = Wrote {
            read_as: crate::write::ReadAs::Get,
            digest: crate::digest::Digest::of(b"warm"),
            version: None,
        };
        for k in ["written", "skipped", "failed"] {
            assert!(log.budget.try_reserve(200));
            log.insert(key(k), Previous::Absent, 200);
        }
        // A second capture of a key keeps the first and gives its reservation back.
        assert!(log.budget.try_reserve(200));
        log.insert(
            key("written"),
            Previous::Present {
                payload: Bytes::from_static(b"warm-up's own value"),
                expires_at: None,
            },
            200,
        );
        assert_eq!(log.missing(&[&key("written"), &key("other")]), [false, true]);
        log.wrote(&key("written"), wrote);
        log.discard_unwritten(&key("skipped"));
        log.discard_unwritten(&key("written"));
        assert_eq!(log.budget.held(), 400);
        let undo = log.take_written();
        assert_eq!(undo, [(key("written"), Previous::Absent, wrote)]);
        drop(log);
    }
}
