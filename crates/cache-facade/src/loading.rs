//! `get_or_load`: single-flight loads within the process (cross-process leases are in `lease.rs`),
//! negative caching and the fail-safe mode.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use consistency::{Version, Versioned};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::OnceCell;

use crate::Error;
use crate::cache::Cache;
use crate::calls::Write;
use crate::codec::{self, Stored};
use crate::lease::{HeldLease, LeaseOutcome};

pub(crate) type Flight = Arc<OnceCell<Bytes>>;

impl Cache {
    /// How many `get_or_load` flights (single-flight entries) are open in this process. For tests and
    /// diagnostics: it returns to zero once no call is loading, cancelled calls included.
    #[doc(hidden)]
    pub fn loads_in_flight(&self) -> usize {
        self.inner.flights.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    // ----- get_or_load -----

    /// The cached value, or the loader's value (cached for `ttl`). Within this process at most one loader
    /// runs per key at a time; with [`CacheConfig::lease`](crate::CacheConfig::lease), at most one across processes.
    pub async fn get_or_load<T, F, Fut, E>(
        &self,
        key: impl AsRef<[u8]>,
        ttl: Option<Duration>,
        loader: F,
    ) -> Result<T, Error>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let key_text = String::from_utf8_lossy(key.as_ref()).into_owned();
        let found = self
            .get_or_load_optional(key, ttl, || async { loader().await.map(Some) })
            .await?;
        found.ok_or_else(|| Error::Loader {
            key: key_text,
            source: "the key is remembered as absent (negative cache)".into(),
        })
    }

    /// Like [`Cache::get_or_load`] for loaders that may find nothing: `Ok(None)` is remembered for
    /// [`CacheConfig::negative_ttl`](crate::CacheConfig::negative_ttl).
    pub async fn get_or_load_optional<T, F, Fut, E>(
        &self,
        key: impl AsRef<[u8]>,
        ttl: Option<Duration>,
        loader: F,
    ) -> Result<Option<T>, Error>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<T>, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let key = self.full_key(key);
        match self.read(&key).await {
            Ok(Some(bytes)) => match codec::parse(&key, &bytes, std::any::type_name::<T>())? {
                Stored::Value {
                    codec,
                    compressed,
                    payload,
                } => {
                    self.inner
                        .stats
                        .bump(&self.inner.stats.hits, crate::stats::HITS_METRIC);
                    return self.decode_value(&key, codec, compressed, payload).map(Some);
                }
                Stored::Absent => {
                    self.inner
                        .stats
                        .bump(&self.inner.stats.hits, crate::stats::HITS_METRIC);
                    return Ok(None);
                }
                Stored::Lease(_) => {}
            },
            Ok(None) => {}
            Err(e) if e.is_unavailable() && self.inner.config.fail_safe => {
                return self.fail_safe(&key, loader).await;
            }
            Err(e) => return Err(e),
        }
        self.inner
            .stats
            .bump(&self.inner.stats.misses, crate::stats::MISSES_METRIC);

        let flight = FlightGuard::join(&self.inner.flights, &key);
        let mut loader = Some(loader);
        let result = flight
            .cell()
            .get_or_try_init(|| self.load(&key, ttl, loader.take().expect("runs once")))
            .await
            .cloned();
        // Leaving the flight here, or on any early drop of this future, removes the map entry once no
        // caller holds it: a cancelled call leaves nothing behind.
        drop(flight);
        let frame = match result {
            Ok(frame) => frame,
            Err(e) if e.is_unavailable() && self.inner.config.fail_safe => match loader.take() {
                Some(loader) => return self.fail_safe(&key, loader).await,
                None => return Err(e),
            },
            Err(e) => return Err(e),
        };
        match codec::parse(&key, &frame, std::any::type_name::<T>())? {
            Stored::Value {
                codec,
                compressed,
                payload,
            } => self.decode_value(&key, codec, compressed, payload).map(Some),
            _ => Ok(None),
        }
    }

    /// Runs the loader and stores its result; returns the stored frame.
    async fn load<T, F, Fut, E>(&self, key: &[u8], ttl: Option<Duration>, loader: F) -> Result<Bytes, Error>
    where
        T: Serialize,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<T>, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        // The version is taken before the loader runs: a delete or a newer write made while it runs
        // has a newer version, and the loaded (possibly stale) value is refused.
        let version = self.inner.versioned.as_ref().map(Versioned::next_version);
        let mut lease = match self.inner.config.lease {
            Some(lease_ttl) => match self.take_lease(key, lease_ttl).await? {
                LeaseOutcome::Mine(held) => Some(held),
                LeaseOutcome::Filled(frame) => return Ok(frame),
            },
            None => None,
        };
        let result = self
            .load_and_store(key, ttl, loader, version, lease.as_mut())
            .await;
        if let Some(held) = lease.as_mut()
            && !held.done
        {
            // Nothing filled the lease (the loader failed, found nothing to remember, or its value
            // was refused): give it back now, so that another caller can load at once.
            if let Err(error) = self.fill_lease(key, &held.prefix, None, None, None).await {
                tracing::debug!(%error, "giving a lease back failed; it ends at its expiry");
            }
            held.done = true;
        }
        result
    }

    /// The part of [`Cache::load`] that runs while the lease (if any) is held.
    async fn load_and_store<T, F, Fut, E>(
        &self,
        key: &[u8],
        ttl: Option<Duration>,
        loader: F,
        version: Option<Version>,
        lease: Option<&mut HeldLease>,
    ) -> Result<Bytes, Error>
    where
        T: Serialize,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<T>, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.inner
            .stats
            .bump(&self.inner.stats.loads, crate::stats::LOADS_METRIC);
        let loaded = match loader().await {
            Ok(value) => value,
            Err(e) => {
                self.inner
                    .stats
                    .bump(&self.inner.stats.load_errors, crate::stats::LOAD_ERRORS_METRIC);
                return Err(Error::Loader {
                    key: cluster_client::printable_key(key),
                    source: e.into(),
                });
            }
        };
        let (frame, ttl) = match &loaded {
            Some(value) => (self.encode(key, value)?, self.jitter(ttl)),
            None => match self.inner.config.negative_ttl {
                Some(negative) => (codec::absent(), Some(negative)),
                None => return Ok(Bytes::from(codec::absent())),
            },
        };
        let outcome = match lease {
            Some(held) => {
                let outcome = self
                    .fill_lease(key, &held.prefix, Some(&frame), ttl, version)
                    .await?;
                held.done = true;
                outcome
            }
            None => self.write(key, &frame, ttl, version).await?,
        };
        if outcome == Write::Stale {
            self.inner.stats.bump(
                &self.inner.stats.stale_refused,
                crate::stats::STALE_REFUSED_METRIC,
            );
        }
        Ok(Bytes::from(frame))
    }

    async fn fail_safe<T, F, Fut, E>(&self, key: &[u8], loader: F) -> Result<Option<T>, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<T>, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.inner
            .stats
            .bump(&self.inner.stats.fail_safe, crate::stats::FAIL_SAFE_METRIC);
        tracing::warn!(key = %String::from_utf8_lossy(key), "redis unreachable; serving from the loader");
        loader().await.map_err(|e| Error::Loader {
            key: cluster_client::printable_key(key),
            source: e.into(),
        })
    }
}

/// This caller's share of a single-flight entry. Dropping it (when the call ends, or when its future is
/// dropped mid-load) removes the map entry once no other caller holds it, so the map holds only keys
/// being loaded right now.
struct FlightGuard<'a> {
    flights: &'a Mutex<HashMap<Vec<u8>, Flight>>,
    key: &'a [u8],
    flight: Option<Flight>,
}

impl<'a> FlightGuard<'a> {
    fn join(flights: &'a Mutex<HashMap<Vec<u8>, Flight>>, key: &'a [u8]) -> FlightGuard<'a> {
        let flight = {
            let mut map = flights.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(key.to_vec()).or_default().clone()
        };
        FlightGuard {
            flights,
            key,
            flight: Some(flight),
        }
    }

    fn cell(&self) -> &OnceCell<Bytes> {
        self.flight.as_deref().expect("present until drop")
    }
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        let mut map = self.flights.lock().unwrap_or_else(|p| p.into_inner());
        // Every clone and every drop of a flight happens under this lock, so once ours is gone a count
        // of one means only the map still holds the entry.
        drop(self.flight.take());
        if map.get(self.key).is_some_and(|f| Arc::strong_count(f) == 1) {
            map.remove(self.key);
        }
    }
}
