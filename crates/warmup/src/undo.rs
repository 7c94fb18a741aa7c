//! Rollback: each touched key's previous value and TTL, captured before the warm-up overwrites it, and
//! put back (or the key deleted, if it did not exist) when validation finds too many bad entries.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cluster_client::Value;

use crate::write::{Io, Restore};

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
}

/// Previous states of every key touched so far. A key is captured once: a second entry for it (in a
/// later window) must not capture what the warm-up itself wrote.
#[derive(Debug, Default)]
pub(crate) struct Captured {
    keys: Mutex<HashMap<Bytes, Previous>>,
}

impl Captured {
    /// The keys of `keys` not captured yet.
    pub(crate) fn missing(&self, keys: &[&Bytes]) -> Vec<bool> {
        let captured = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        keys.iter().map(|k| !captured.contains_key(*k)).collect()
    }

    pub(crate) fn insert(&self, key: Bytes, previous: Previous) {
        self.keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_insert(previous);
    }

    pub(crate) fn take(&self) -> Vec<(Bytes, Previous)> {
        std::mem::take(&mut *self.keys.lock().unwrap_or_else(|p| p.into_inner()))
            .into_iter()
            .collect()
    }
}

/// Reads the previous state of `keys` (one shard's, whose primary is `primary`, in slot order, with
/// their slots): one `DUMP`+`PTTL` script call per slot group, each key atomically, sent straight to
/// the primary; a group whose call fails goes through the routed `eval` instead. Results in input
/// order.
pub(crate) async fn capture(
    io: &Io,
    primary: &str,
    slots: &[u16],
    keys: &[Bytes],
) -> Vec<Result<Previous, cluster_client::Error>> {
    let calls = io.runs(slots).into_iter().map(|run| async move {
        let part = &keys[run.clone()];
        if let Ok(previous) = capture_on(io, primary, part).await {
            return (run, previous.into_iter().map(Ok).collect());
        }
        match capture_call(io, part).await {
            Ok(previous) => (run, previous.into_iter().map(Ok).collect()),
            Err(_) => {
                // One key per call always routes (through ASK while its slot moves).
                let single = part.iter().map(|key| async move {
                    capture_call(io, std::slice::from_ref(key))
                        .await
                        .and_then(|mut p| p.pop().ok_or_else(|| bad_reply("empty reply".into())))
                });
                (run, futures::future::join_all(single).await)
            }
        }
    });
    let mut out: Vec<Option<Result<Previous, cluster_client::Error>>> =
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

fn bad_reply(detail: String) -> cluster_client::Error {
    cluster_client::Error::Reply {
        node: String::new(),
        command: "capture script".into(),
        detail,
    }
}

/// The capture script on `node` itself, keys handed over without copies.
async fn capture_on(io: &Io, node: &str, keys: &[Bytes]) -> Result<Vec<Previous>, cluster_client::Error> {
    let mut args: Vec<Value> = Vec::with_capacity(3 + keys.len());
    args.push("EVALSHA".into());
    args.push(io.scripts.capture.sha().into());
    args.push(Value::Integer(keys.len() as i64));
    args.extend(keys.iter().map(|k| Value::Bytes(k.clone())));
    let reply = match io.client.node_command::<Value>(node, args).await {
        Err(error) if crate::write::is_noscript(&error) => {
            // Loaded once per node; this group goes the routed way meanwhile.
            let load = vec!["SCRIPT".into(), "LOAD".into(), io.scripts.capture.source().into()];
            io.client.node_command::<Value>(node, load).await?;
            return Err(bad_reply("the capture script was not loaded yet".into()));
        }
        other => other?,
    };
    let read_at = Instant::now();
    parse_capture(reply, keys.len(), read_at).map_err(bad_reply)
}

async fn capture_call(io: &Io, keys: &[Bytes]) -> Result<Vec<Previous>, cluster_client::Error> {
    let refs: Vec<&[u8]> = keys.iter().map(|k| &k[..]).collect();
    let reply = io.client.eval(&io.scripts.capture, &refs, &[]).await?;
    let read_at = Instant::now();
    parse_capture(reply, keys.len(), read_at).map_err(bad_reply)
}

/// Parses the capture script's reply: per key `[payload, pttl]`.
pub(crate) fn parse_capture(reply: Value, keys: usize, read_at: Instant) -> Result<Vec<Previous>, String> {
    let Value::Array(items) = reply else {
        return Err(format!("not an array: {reply:?}"));
    };
    if items.len() != keys {
        return Err(format!("{} replies for {keys} keys", items.len()));
    }
    items
        .into_iter()
        .map(|item| {
            let Value::Array(mut pair) = item else {
                return Err(format!("not a [payload, pttl] pair: {item:?}"));
            };
            if pair.len() != 2 {
                return Err(format!("not a [payload, pttl] pair: {pair:?}"));
            }
            let pttl = pair
                .pop()
                .and_then(|v| v.as_i64())
                .ok_or("pttl is not an integer")?;
            let payload = pair.pop().and_then(|v| v.into_bytes()).unwrap_or_default();
            Ok(match pttl {
                -1 => Previous::Present {
                    payload,
                    expires_at: None,
                },
                ms if ms > 0 && !payload.is_empty() => Previous::Present {
                    payload,
                    expires_at: Some(read_at + Duration::from_millis(ms as u64)),
                },
                _ => Previous::Absent,
            })
        })
        .collect()
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
        let reply = Value::Array(vec![pair(b"p1", -1), pair(b"", -2), pair(b"p3", 5000)]);
        assert_eq!(
            parse_capture(reply, 3, now),
            Ok(vec![
                Previous::Present {
                    payload: Bytes::from_static(b"p1"),
                    expires_at: None
                },
                Previous::Absent,
                Previous::Present {
                    payload: Bytes::from_static(b"p3"),
                    expires_at: Some(now + Duration::from_secs(5))
                },
            ])
        );
        let check_bad = |reply: Value, keys: usize, want: &str| {
            let error = parse_capture(reply, keys, now).expect_err("malformed");
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
    }

    #[test]
    fn a_key_is_captured_once() {
        let captured = Captured::default();
        let key = Bytes::from_static(b"k");
        assert_eq!(captured.missing(&[&key]), [true]);
        captured.insert(key.clone(), Previous::Absent);
        captured.insert(
            key.clone(),
            Previous::Present {
                payload: Bytes::from_static(b"warm-up's own value"),
                expires_at: None,
            },
        );
        assert_eq!(captured.missing(&[&key]), [false]);
        assert_eq!(captured.take(), [(key, Previous::Absent)]);
    }
}
