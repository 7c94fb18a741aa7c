//! Typed calls: get, set, delete and their batches, and the plumbing they share (envelope, codec,
//! TTL jitter, the write path).

use std::time::{Duration, Instant};

use bytes::Bytes;
use cluster_client::{SetOptions, Ttl};
use consistency::{Envelope, Version, WriteOptions, WriteOutcome};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;
use crate::cache::Cache;
use crate::codec::{self, Codec, Stored};

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Write {
    /// The value is stored.
    Written,
    /// A newer value (or a newer delete) was already stored; nothing changed.
    Stale,
}

/// A write ready to send: full key, framed value, TTL after jitter.
type Framed = (Vec<u8>, Vec<u8>, Option<Duration>);

impl Cache {
    // ----- reads -----

    /// The value under `key` as `T`, or `None` (absent, deleted, remembered as absent, or being loaded).
    pub async fn get<T: DeserializeOwned>(&self, key: impl AsRef<[u8]>) -> Result<Option<T>, Error> {
        let started = Instant::now();
        let key = self.full_key(key);
        let stored = self.read(&key).await?;
        let result = self.decode_hit(&key, stored.as_deref());
        metrics::histogram!(crate::stats::OPERATION_DURATION_METRIC, "op" => "get")
            .record(started.elapsed().as_secs_f64());
        result
    }

    /// Like [`get`](Self::get), but past the near cache (when one is configured): the value the key's
    /// node holds now, and nothing kept in memory.
    pub async fn get_fresh<T: DeserializeOwned>(&self, key: impl AsRef<[u8]>) -> Result<Option<T>, Error> {
        let key = self.full_key(key);
        let raw = self.inner.client.get(&key).await?;
        let stored = self.unwrap_envelope(&key, raw)?;
        self.decode_hit(&key, stored.as_deref())
    }

    /// Many values at once (one pipeline per node), in input order.
    pub async fn get_many<T: DeserializeOwned, K: AsRef<[u8]>>(
        &self,
        keys: &[K],
    ) -> Vec<Result<Option<T>, Error>> {
        let full: Vec<Vec<u8>> = keys.iter().map(|k| self.full_key(k)).collect();
        let raw = self.inner.client.get_many(&full).await;
        full.iter()
            .zip(raw)
            .map(|(key, bytes)| {
                let payload = self.unwrap_envelope(key, bytes?)?;
                self.decode_hit(key, payload.as_deref())
            })
            .collect()
    }

    /// Whether `key` holds a value (a remembered absence or a lease does not count).
    pub async fn exists(&self, key: impl AsRef<[u8]>) -> Result<bool, Error> {
        let key = self.full_key(key);
        Ok(match self.read(&key).await? {
            Some(bytes) => matches!(codec::parse(&key, &bytes, "value")?, Stored::Value { .. }),
            None => false,
        })
    }

    /// The remaining time to live of `key`.
    pub async fn ttl(&self, key: impl AsRef<[u8]>) -> Result<Ttl, Error> {
        Ok(self.inner.client.pttl(&self.full_key(key)).await?)
    }

    // ----- writes -----

    /// Stores `value` for `ttl` (with jitter), or without expiry.
    pub async fn set<T: Serialize + ?Sized>(
        &self,
        key: impl AsRef<[u8]>,
        value: &T,
        ttl: Option<Duration>,
    ) -> Result<Write, Error> {
        let started = Instant::now();
        let key = self.full_key(key);
        let frame = self.encode(&key, value)?;
        let result = self.write(&key, &frame, self.jitter(ttl), None).await;
        metrics::histogram!(crate::stats::OPERATION_DURATION_METRIC, "op" => "set")
            .record(started.elapsed().as_secs_f64());
        result
    }

    /// Stores many `(key, value, ttl)` entries; per-entry results in input order.
    pub async fn set_many<T: Serialize, K: AsRef<[u8]>>(
        &self,
        entries: &[(K, T, Option<Duration>)],
    ) -> Vec<Result<Write, Error>> {
        let framed: Vec<Result<Framed, Error>> = entries
            .iter()
            .map(|(k, v, ttl)| {
                let key = self.full_key(k);
                let frame = self.encode(&key, v)?;
                Ok((key, frame, self.jitter(*ttl)))
            })
            .collect();
        let ok: Vec<(&[u8], &[u8], Option<Duration>)> = framed
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .map(|(key, frame, ttl)| (&key[..], &frame[..], *ttl))
            .collect();
        let _near = self.near_guard_many(&ok.iter().map(|(key, _, _)| *key).collect::<Vec<_>>());
        let mut written: Box<dyn Iterator<Item = Result<Write, Error>>> = match &self.inner.versioned {
            // One script execution per group of a node's keys (see `Versioned::set_many`).
            Some(versioned) => Box::new(
                versioned
                    .set_many(&ok, WriteOptions::default())
                    .await
                    .into_iter()
                    .map(|r| Ok(write_of(r?))),
            ),
            None => Box::new(
                self.inner
                    .client
                    .set_many(&ok)
                    .await
                    .into_iter()
                    .map(|r| Ok(r.map(|()| Write::Written)?)),
            ),
        };
        framed
            .into_iter()
            .map(|r| match r {
                Ok(_) => written
                    .next()
                    .unwrap_or(Err(Error::from(cluster_client::Error::Closed))),
                Err(e) => Err(e),
            })
            .collect()
    }

    /// Deletes `key`; whether a value was there. With versioned writes the delete leaves a short-lived
    /// tombstone, so a load that started before it cannot bring the old value back.
    pub async fn delete(&self, key: impl AsRef<[u8]>) -> Result<bool, Error> {
        let key = self.full_key(key);
        let _near = self.near_guard(&key);
        match &self.inner.versioned {
            // The script says whether a live value was there: no read of its own.
            Some(versioned) => {
                let mut outcomes = versioned.delete_many(&[&key], WriteOptions::default()).await;
                Ok(outcomes
                    .pop()
                    .unwrap_or(Err(cluster_client::Error::Closed.into()))?
                    .existed)
            }
            None => Ok(self.inner.client.del(&key).await?),
        }
    }

    /// Deletes many keys; per-key results in input order. One pipeline per node, nodes concurrently
    /// (with versioned writes, one pipelined script call per key).
    pub async fn delete_many<K: AsRef<[u8]>>(&self, keys: &[K]) -> Vec<Result<bool, Error>> {
        let full: Vec<Vec<u8>> = keys.iter().map(|k| self.full_key(k)).collect();
        let _near = self.near_guard_many(&full);
        match &self.inner.versioned {
            Some(versioned) => versioned
                .delete_many(&full, WriteOptions::default())
                .await
                .into_iter()
                .map(|r| Ok(r?.existed))
                .collect(),
            None => self
                .inner
                .client
                .del_many(&full)
                .await
                .into_iter()
                .map(|r| Ok(r?))
                .collect(),
        }
    }

    // ----- plumbing -----

    /// The stored frame under the full key (envelope removed, tombstones as absent).
    pub(crate) async fn read(&self, key: &[u8]) -> Result<Option<Bytes>, Error> {
        let raw = match &self.inner.near {
            Some(near) => near.get(key).await?,
            None => self.inner.client.get(key).await?,
        };
        self.unwrap_envelope(key, raw)
    }

    pub(crate) fn unwrap_envelope(&self, key: &[u8], raw: Option<Bytes>) -> Result<Option<Bytes>, Error> {
        let Some(raw) = raw else { return Ok(None) };
        if self.inner.versioned.is_none() {
            return Ok(Some(raw));
        }
        match Envelope::decode(&raw) {
            Ok(Envelope::Value { payload, .. }) => Ok(Some(raw.slice_ref(payload))),
            Ok(Envelope::Tombstone { .. }) => Ok(None),
            Ok(Envelope::Unversioned(_)) => Ok(Some(raw)),
            Err(problem) => Err(Error::Decode {
                key: cluster_client::printable_key(key),
                wanted: "versioned value",
                detail: problem.to_string(),
            }),
        }
    }

    pub(crate) fn decode_hit<T: DeserializeOwned>(
        &self,
        key: &[u8],
        stored: Option<&[u8]>,
    ) -> Result<Option<T>, Error> {
        let stats = &self.inner.stats;
        let Some(bytes) = stored else {
            stats.bump(&stats.misses, crate::stats::MISSES_METRIC);
            return Ok(None);
        };
        match codec::parse(key, bytes, std::any::type_name::<T>())? {
            Stored::Value {
                codec,
                compressed,
                payload,
            } => {
                stats.bump(&stats.hits, crate::stats::HITS_METRIC);
                self.decode_value(key, codec, compressed, payload).map(Some)
            }
            Stored::Absent => {
                stats.bump(&stats.hits, crate::stats::HITS_METRIC);
                Ok(None)
            }
            Stored::Lease(_) => {
                stats.bump(&stats.misses, crate::stats::MISSES_METRIC);
                Ok(None)
            }
        }
    }

    pub(crate) async fn write(
        &self,
        key: &[u8],
        frame: &[u8],
        ttl: Option<Duration>,
        version: Option<Version>,
    ) -> Result<Write, Error> {
        let _near = self.near_guard(key);
        let Some(versioned) = &self.inner.versioned else {
            self.inner
                .client
                .set(key, frame, ttl.map(SetOptions::ttl).unwrap_or_default())
                .await?;
            return Ok(Write::Written);
        };
        let outcome = match version {
            Some(version) => {
                versioned
                    .set_with_version(key, frame, version, ttl, WriteOptions::default())
                    .await?
            }
            None => versioned.set(key, frame, ttl, WriteOptions::default()).await?,
        };
        Ok(write_of(outcome))
    }

    /// Shortens `ttl` by a random share of up to [`CacheConfig::ttl_jitter`](crate::CacheConfig::ttl_jitter).
    pub(crate) fn jitter(&self, ttl: Option<Duration>) -> Option<Duration> {
        jitter(ttl, self.inner.config.ttl_jitter)
    }

    /// Encodes and frames `value` with this cache's configuration.
    pub(crate) fn encode<T: Serialize + ?Sized>(&self, key: &[u8], value: &T) -> Result<Vec<u8>, Error> {
        let config = &self.inner.config;
        codec::encode(
            key,
            value,
            config.codec,
            config.compress_at_bytes,
            config.decompressed_max_bytes,
        )
    }

    /// Decodes a stored value's payload, within this cache's decompression limit.
    pub(crate) fn decode_value<T: DeserializeOwned>(
        &self,
        key: &[u8],
        codec: Codec,
        compressed: bool,
        payload: &[u8],
    ) -> Result<T, Error> {
        let max = self.inner.config.decompressed_max_bytes;
        codec::decode(key, codec, compressed, payload, max)
    }
}

/// What a versioned write's outcome means to a cache user.
fn write_of(outcome: WriteOutcome) -> Write {
    match outcome {
        WriteOutcome::Written { .. } => Write::Written,
        WriteOutcome::Stale { .. } => Write::Stale,
    }
}

/// `ttl` shortened by a random share in `[0, share)`: the one meaning of `ttl_jitter`, which
/// `warmup::WarmupConfig::ttl_jitter` shares. Jitter only shortens, so that no value outlives the TTL its
/// writer asked for. Any `ttl` is accepted: `share` is at most 0.5 (checked in the config), so the cut
/// is at most half of it, computed without overflow even for `Duration::MAX`.
fn jitter(ttl: Option<Duration>, share: f64) -> Option<Duration> {
    ttl.map(|ttl| jittered(ttl, share * fastrand::f64()))
}

/// `ttl` shortened by `cut` (a share from 0 to 1), at least 1 ms; no overflow for any `ttl`.
fn jittered(ttl: Duration, cut: f64) -> Duration {
    // The product is at most `ttl` (rounded through f64): one that does not fit a Duration is all of it.
    let cut = Duration::try_from_secs_f64(ttl.as_secs_f64() * cut).unwrap_or(ttl);
    ttl.saturating_sub(cut).max(Duration::from_millis(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_accepts_zero_and_maximal_ttls() {
        let ms = Duration::from_millis;
        for (ttl, cut, want) in [
            (Duration::ZERO, 0.5, ms(1)),
            (ms(1), 0.5, ms(1)),
            (ms(1_000), 0.0, ms(1_000)),
            (ms(1_000), 0.1, ms(900)),
            (Duration::MAX, 0.0, Duration::MAX),
            (Duration::MAX, 1.0, ms(1)),
        ] {
            assert_eq!(jittered(ttl, cut), want, "{ttl:?} cut by {cut}");
        }
        let half = jittered(Duration::MAX, 0.5);
        assert!(half < Duration::MAX && half > Duration::MAX / 3, "{half:?}");
    }

    #[test]
    fn jitter_only_shortens_and_by_at_most_the_share() {
        let ttl = Duration::from_secs(100);
        assert_eq!(jitter(None, 0.5), None);
        assert_eq!(jitter(Some(ttl), 0.0), Some(ttl));
        for share in [0.1, 0.2, 0.5] {
            let jittered: Vec<Duration> = (0..1_000).map(|_| jitter(Some(ttl), share).unwrap()).collect();
            let shortest = ttl.mul_f64(1.0 - share);
            assert!(
                jittered.iter().all(|t| *t <= ttl && *t >= shortest),
                "share {share}: every TTL within [{shortest:?}, {ttl:?}]"
            );
            assert!(
                jittered.iter().any(|t| *t < ttl.mul_f64(1.0 - share / 2.0)),
                "share {share}: some TTLs are shortened by more than half the share"
            );
        }
    }
}
