//! Cross-process load leases for `get_or_load`, kept in the key itself.
//!
//! A lease is a frame of kind `L` (see `codec.rs`) stored under the key while one process loads it:
//!
//! ```text
//! offset  size  field
//!      0     1  kind       'L'
//!      1    16  token      random alphanumeric bytes naming the holder
//!     17    16  expires    server time (ms since the epoch) when the lease ends, 16 ASCII digits
//!     33  0|24  tombstone  the 24-byte versioned tombstone the lease replaced, or nothing
//! ```
//!
//! Two rules make the lease safe (both decided on the server, in one script each):
//! - A delete is a state to preserve, not an absence to fill. A versioned delete leaves a tombstone
//!   (consistency's envelope: magic `FF 4C 57 57`, format 1, flags 1, 16 version bytes at offset 8,
//!   no payload; see `crates/consistency/src/envelope.rs`). Taking a lease over a tombstone keeps the
//!   tombstone inside the marker, and the key keeps at least the tombstone's remaining TTL. The fill
//!   stores only a versioned value newer than that tombstone; otherwise, and when the lease is given
//!   back, the tombstone is put back.
//! - Other writers see the carried tombstone too: consistency's last-write-wins script reads a lease
//!   of this exact layout (57 bytes with a tombstone) as the tombstone, so a versioned write older than
//!   the delete is refused while the lease is held (`consistency::LWW_SCRIPT`). Change this layout
//!   only together with that script.
//! - A holder that stops (crash, stuck loader) cannot block the key: once `expires` has passed on
//!   the server's clock, the next taker replaces the marker and inherits its tombstone. A late fill
//!   from the old holder then finds another token and is refused.
//!
//! The version bytes compare as versions byte by byte (big-endian HLC, then writer), as
//! consistency's own write script relies on; the comparison here is the same unsigned byte loop.

use std::time::{Duration, Instant};

use bytes::Bytes;
use cluster_client::{ClusterClient, Script, Value};
use cluster_config::Backoff;
use consistency::{Envelope, Version};

use crate::Error;
use crate::cache::Cache;
use crate::calls::Write;

/// Bytes of a marker before its expiry: the kind and the token.
pub(crate) const PREFIX_LEN: usize = 17;

/// Takes the lease if the key is absent, holds a tombstone, or holds an expired lease.
///
/// `KEYS[1]` is the key, `ARGV[1]` the 17-byte marker prefix (`L` and the token), `ARGV[2]` the lease
/// in milliseconds. Replies `{1, marker}` when taken, `{0}` while another lease is live, and
/// `{2, stored}` when the key holds something else (a value, a remembered absence, foreign bytes).
const TAKE: &str = r#"-- cache-facade: take a load lease (marker layout in cache-facade/src/lease.rs)
local stored = redis.call('GET', KEYS[1])
local lease_ms = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

-- A versioned tombstone, as consistency's envelope.rs lays it out: magic, format 1, flags 1
-- (tombstone), two zero bytes, 16 version bytes, no payload.
local function is_tombstone(v)
  return string.len(v) == 24 and string.sub(v, 1, 4) == '\255LWW' and string.byte(v, 5) == 1
    and string.byte(v, 6) == 1 and string.byte(v, 7) == 0 and string.byte(v, 8) == 0
end

local tombstone = ''
if stored then
  if is_tombstone(stored) then
    tombstone = stored
  elseif string.sub(stored, 1, 1) == 'L' and (string.len(stored) == 33 or string.len(stored) == 57)
      and string.find(string.sub(stored, 2, 17), '^%w+$') and string.find(string.sub(stored, 18, 33), '^%d+$') then
    -- Only bytes of exactly a marker's shape (kind, 16 alphanumeric token bytes, 16 digits, an
    -- optional 24-byte tombstone) are a lease; any other value starting with 'L' is foreign.
    local expires = tonumber(string.sub(stored, 18, 33))
    if expires > now then return {0} end
    tombstone = string.sub(stored, 34)
    if not is_tombstone(tombstone) then tombstone = '' end
  else
    return {2, stored}
  end
end

local marker = ARGV[1] .. string.format('%016.0f', now + lease_ms) .. tombstone
-- The key lives at least as long as the lease, and never shorter than the tombstone it carries.
local keep = lease_ms
if tombstone ~= '' then
  local left = redis.call('PTTL', KEYS[1])
  if left == -1 then keep = -1 elseif left > keep then keep = left end
end
if keep == -1 then
  redis.call('SET', KEYS[1], marker)
else
  redis.call('SET', KEYS[1], marker, 'PX', keep)
end
return {1, marker}
"#;

/// Fills the key with a loaded value, or gives the lease back, if the key still holds this lease.
///
/// `KEYS[1]` is the key, `ARGV[1]` the marker prefix, `ARGV[2]` the value to store (empty to give the
/// lease back), `ARGV[3]` the TTL in milliseconds (`0` for none). Replies `1` when stored (or given
/// back), `0` when the lease is gone, `2` when the carried tombstone is newer than the value (the
/// tombstone is put back).
const FILL: &str = r#"-- cache-facade: fill or give back a load lease (marker layout in cache-facade/src/lease.rs)
local stored = redis.call('GET', KEYS[1])
if not stored or string.len(stored) < 33 or string.sub(stored, 1, 17) ~= ARGV[1] then return 0 end
local tombstone = string.sub(stored, 34)

local function restore()
  if tombstone == '' then
    redis.call('DEL', KEYS[1])
  else
    redis.call('SET', KEYS[1], tombstone, 'KEEPTTL')
  end
end

-- Compares the version bytes (offsets 9..24, 1-based) one unsigned byte at a time.
local function newer(a, b)
  for i = 9, 24 do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x > y end
  end
  return false
end

local value = ARGV[2]
if value == '' then
  restore()
  return 1
end
if tombstone ~= '' then
  local versioned = string.len(value) >= 24 and string.sub(value, 1, 4) == '\255LWW'
  if not versioned or not newer(value, tombstone) then
    restore()
    return 2
  end
end
if ARGV[3] == '0' then
  redis.call('SET', KEYS[1], value)
else
  redis.call('SET', KEYS[1], value, 'PX', ARGV[3])
end
return 1
"#;

/// The two lease scripts, loaded once per cache.
#[derive(Debug)]
pub(crate) struct Scripts {
    take: Script,
    fill: Script,
}

impl Scripts {
    pub(crate) fn new() -> Scripts {
        Scripts {
            take: Script::new(TAKE),
            fill: Script::new(FILL),
        }
    }
}

/// What one attempt to take the lease found.
#[derive(Debug)]
pub(crate) enum Attempt {
    /// The lease is ours.
    Taken,
    /// Another holder's lease is live.
    Held,
    /// The key holds something other than a lease or a tombstone: the raw stored bytes.
    Stored(Bytes),
}

/// What a fill did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Filled {
    /// Stored (or, for a give-back, released).
    Done,
    /// The lease was gone: deleted or overwritten, or taken over after it expired.
    LeaseLost,
    /// A delete newer than the load's version was kept.
    DeleteKept,
}

/// A new marker prefix: the kind byte and a random token.
pub(crate) fn new_prefix() -> Vec<u8> {
    let mut prefix = Vec::with_capacity(PREFIX_LEN);
    prefix.push(b'L');
    prefix.extend((1..PREFIX_LEN).map(|_| fastrand::alphanumeric() as u8));
    prefix
}

/// One attempt to take the lease of `key` for `lease_ms`.
pub(crate) async fn try_take(
    client: &ClusterClient,
    scripts: &Scripts,
    key: &[u8],
    prefix: &[u8],
    lease_ms: u64,
) -> Result<Attempt, Error> {
    let lease_ms = lease_ms.to_string();
    let reply = client
        .eval(&scripts.take, &[key], &[prefix, lease_ms.as_bytes()])
        .await?;
    let unexpected = || Error::Decode {
        key: cluster_client::printable_key(key),
        wanted: "lease reply",
        detail: format!("the lease script answered {reply:?}; check that nothing replaced it"),
    };
    let Value::Array(items) = &reply else {
        return Err(unexpected());
    };
    match items.first().and_then(Value::as_i64) {
        Some(1) => Ok(Attempt::Taken),
        Some(0) => Ok(Attempt::Held),
        Some(2) => match items.get(1).and_then(Value::as_bytes) {
            Some(stored) => Ok(Attempt::Stored(Bytes::copy_from_slice(stored))),
            None => Err(unexpected()),
        },
        _ => Err(unexpected()),
    }
}

/// Stores `value` (already enveloped when writes are versioned) in place of this lease, or gives the
/// lease back when `value` is empty.
pub(crate) async fn fill(
    client: &ClusterClient,
    scripts: &Scripts,
    key: &[u8],
    prefix: &[u8],
    value: &[u8],
    ttl_ms: Option<u64>,
) -> Result<Filled, Error> {
    let ttl_ms = ttl_ms.map_or_else(|| "0".to_string(), |ms| ms.max(1).to_string());
    let reply = client
        .eval(&scripts.fill, &[key], &[prefix, value, ttl_ms.as_bytes()])
        .await?;
    match reply.as_i64() {
        Some(1) => Ok(Filled::Done),
        Some(0) => Ok(Filled::LeaseLost),
        Some(2) => Ok(Filled::DeleteKept),
        _ => Err(Error::Decode {
            key: cluster_client::printable_key(key),
            wanted: "lease reply",
            detail: format!("the lease fill script answered {reply:?}; check that nothing replaced it"),
        }),
    }
}

/// The first pause between two attempts to take a lease held by another process; it doubles up to
/// [`LEASE_POLL_MAX`].
const LEASE_POLL_MIN: Duration = Duration::from_millis(5);
/// The longest pause between two attempts to take a lease.
const LEASE_POLL_MAX: Duration = Duration::from_millis(50);

/// The pauses between two attempts to take a lease: [`LEASE_POLL_MIN`], doubling up to
/// [`LEASE_POLL_MAX`]. Short at first because most loads take milliseconds; capped so that a value
/// filled during a long load is seen within 50 ms.
fn lease_poll() -> Backoff {
    Backoff::new(LEASE_POLL_MIN, 2, LEASE_POLL_MAX)
}

impl Cache {
    /// Takes the key's lease, or waits for the holder's value. A tombstone counts as "no value, may
    /// load" (the lease keeps it, see `lease.rs`); a live lease of another process is waited on, with
    /// a growing pause, until it is filled, given back or expires, and at most twice the lease.
    pub(crate) async fn take_lease(&self, key: &[u8], lease_ttl: Duration) -> Result<LeaseOutcome, Error> {
        let prefix = new_prefix();
        let lease_ms = u64::try_from(lease_ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let started = Instant::now();
        // `validate` bounds the lease to 10 min, so this cannot overflow; saturating keeps it so.
        let wait = lease_ttl.saturating_mul(2);
        let mut pauses = lease_poll();
        // The guard gives the lease back if this future is dropped from here until the fill.
        let mut held = HeldLease {
            cache: self.clone(),
            key: key.to_vec(),
            prefix,
            done: true,
        };
        loop {
            // Armed before the await: a cancellation while the script runs may leave the lease taken.
            held.done = false;
            let _near = self.near_guard(key);
            let attempt = try_take(
                &self.inner.client,
                &self.inner.lease_scripts,
                key,
                &held.prefix,
                lease_ms,
            )
            .await;
            held.done = true;
            match attempt? {
                Attempt::Taken => {
                    held.done = false;
                    return Ok(LeaseOutcome::Mine(held));
                }
                Attempt::Stored(raw) => {
                    if let Some(frame) = self.unwrap_envelope(key, Some(raw))? {
                        return Ok(LeaseOutcome::Filled(frame));
                    }
                }
                Attempt::Held => {}
            }
            let waited = started.elapsed();
            let Some(left) = wait.checked_sub(waited).filter(|left| !left.is_zero()) else {
                return Err(Error::LeaseWait {
                    key: cluster_client::printable_key(key),
                    waited,
                });
            };
            tokio::time::sleep(pauses.next_delay().min(left)).await;
        }
    }

    /// Replaces the lease with `frame` (or gives the lease back when `frame` is `None`) if the key still
    /// holds it; `Stale` when the lease is gone (deleted or overwritten meanwhile) or a delete newer
    /// than `version` is kept.
    pub(crate) async fn fill_lease(
        &self,
        key: &[u8],
        prefix: &[u8],
        frame: Option<&[u8]>,
        ttl: Option<Duration>,
        version: Option<Version>,
    ) -> Result<Write, Error> {
        let stored = match (frame, version) {
            (Some(frame), Some(version)) => Envelope::Value {
                version,
                payload: frame,
            }
            .encode(),
            (Some(frame), None) => frame.to_vec(),
            (None, _) => Vec::new(),
        };
        // The same refusal, before a byte is sent, as the plain write path gives.
        let max = self.inner.client.config().limits().value_max_bytes;
        if stored.len() > max {
            let error = cluster_client::Error::ValueTooLarge {
                len: stored.len(),
                max,
            };
            return Err(match version {
                Some(_) => consistency::Error::from(error).into(),
                None => error.into(),
            });
        }
        let ttl_ms = ttl.map(|ttl| u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        let _near = self.near_guard(key);
        let filled = fill(
            &self.inner.client,
            &self.inner.lease_scripts,
            key,
            prefix,
            &stored,
            ttl_ms,
        )
        .await?;
        Ok(match filled {
            Filled::Done => Write::Written,
            Filled::LeaseLost | Filled::DeleteKept => Write::Stale,
        })
    }
}

pub(crate) enum LeaseOutcome {
    Mine(HeldLease),
    Filled(Bytes),
}

/// A lease this process holds (or may hold: a take was under way). Dropped before the lease was
/// filled or given back (the `get_or_load` future was cancelled), it gives the lease back from a
/// spawned task, so that other processes need not wait for its expiry.
pub(crate) struct HeldLease {
    cache: Cache,
    key: Vec<u8>,
    pub(crate) prefix: Vec<u8>,
    /// Filled or given back: nothing left to do on drop.
    pub(crate) done: bool,
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // No runtime to give it back from: the lease ends at its expiry.
        };
        let cache = self.cache.clone();
        let key = std::mem::take(&mut self.key);
        let prefix = std::mem::take(&mut self.prefix);
        runtime.spawn(async move {
            if let Err(error) = cache.fill_lease(&key, &prefix, None, None, None).await {
                tracing::debug!(%error, "giving a cancelled call's lease back failed; it ends at its expiry");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_a_kind_byte_and_a_fresh_token() {
        let a = new_prefix();
        let b = new_prefix();
        assert_eq!((a.len(), a[0]), (PREFIX_LEN, b'L'));
        assert!(a[1..].iter().all(u8::is_ascii_alphanumeric));
        assert_ne!(a, b, "tokens are random");
    }

    #[test]
    fn lease_polls_double_from_5_ms_to_50_ms() {
        let pauses: Vec<u128> = lease_poll().take(6).map(|p| p.as_millis()).collect();
        assert_eq!(pauses, [5, 10, 20, 40, 50, 50]);
    }
}
