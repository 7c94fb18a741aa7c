//! One driver per kind of client: each sends the workload's calls through its client under the harness.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use cache_facade::Cache;
use cluster_client::{ClusterClient, SetOptions};
use cluster_config::ClusterConfig;
use fred::prelude::*;

use super::calls::{Call, Lww, Rng, key};
use super::harness::{RunResult, progress_bar, run};
use super::{ClientKind, LoadArgs, Workload};
use crate::fred_baseline;
use crate::redis_rs_baseline::RedisRs;

/// fred's own cluster client, configured the way cluster-client configures its connections (every
/// node a seed, reconnect policy, timeouts), over TLS when the configuration says so.
pub(crate) async fn fred_cluster_client(config: &ClusterConfig) -> Result<Client> {
    let mut builder = fred_baseline::cluster_builder(config);
    if let Some(tls) = config.tls_config() {
        let tls = fred_tls(tls)?;
        builder.with_config(|fred| fred.tls = Some(tls));
    }
    let client = builder.build()?;
    client.init().await.context("connecting fred's cluster client")?;
    Ok(client)
}

/// fred's TLS settings as its users build them (rustls's client configuration from the CA and client
/// certificate PEM files, turned into fred's connector), kept here rather than in `fred_baseline`,
/// which the benches include without fred's TLS feature.
pub(super) fn fred_tls(tls: &cluster_config::TlsConfig) -> Result<fred::types::config::TlsConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    let ca = tls
        .ca_file()
        .context("the fred TLS baseline needs REDIS_TLS_CA_FILE")?;
    for cert in CertificateDer::pem_file_iter(ca)? {
        roots.add(cert?)?;
    }
    // The ring provider, as fred's `enable-rustls-ring` feature builds its own default connector.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let client = match tls.client_auth() {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?;
            builder.with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(key)?)?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(fred::types::config::TlsConfig {
        connector: fred::types::config::TlsConnector::from(client),
        hostnames: fred::types::config::TlsHostMapping::None,
    })
}

pub(super) async fn fill(client: &ClusterClient, keys: usize, value: &[u8]) -> Result<()> {
    fill_with(keys, "filling the key space", |range| async move {
        let entries: Vec<(String, &[u8], Option<Duration>)> = range.map(|i| (key(i), value, None)).collect();
        for result in client.set_many(&entries).await {
            result?;
        }
        Ok(())
    })
    .await
}

/// Fills the cache's key space with `String` values of `value_size` characters.
pub(super) async fn fill_cache(cache: &Cache, keys: usize, value_size: usize) -> Result<()> {
    let value = "x".repeat(value_size);
    let value = value.as_str();
    fill_with(keys, "filling the cache's key space", |range| async move {
        let entries: Vec<(String, &str, Option<Duration>)> = range.map(|i| (key(i), value, None)).collect();
        for result in cache.set_many(&entries).await {
            result?;
        }
        Ok(())
    })
    .await
}

/// Writes keys `0..keys` in chunks of 1,000 with `write`, under a progress bar.
async fn fill_with<F, Fut>(keys: usize, label: &str, write: F) -> Result<()>
where
    F: Fn(std::ops::Range<usize>) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let bar = progress_bar(keys as u64, label);
    for start in (0..keys).step_by(1000) {
        let range = start..(start + 1000).min(keys);
        let written = range.len() as u64;
        write(range).await?;
        bar.inc(written);
    }
    bar.finish_and_clear();
    Ok(())
}

/// The typed cache, `String` values (JSON), same calls as the other clients.
pub(super) async fn run_cache(cache: &Cache, label: &str, workload: Workload, args: &LoadArgs) -> RunResult {
    let keys = args.keys;
    let cache = cache.clone();
    let value = Arc::new("x".repeat(args.value_size));
    let mut result = run(workload, label, args, move |rng: &mut Rng| {
        let cache = cache.clone();
        let value = value.clone();
        let call = Call::next(workload, rng, keys);
        async move {
            match call {
                Call::Set(k) | Call::VersionedSet(k) => cache.set(&k, value.as_str(), None).await.is_ok(),
                Call::Get(k) => matches!(cache.get::<String>(&k).await, Ok(Some(_))),
                Call::GetMany(many) => cache
                    .get_many::<String, _>(&many)
                    .await
                    .iter()
                    .all(|r| matches!(r, Ok(Some(_)))),
                Call::SetMany(many) => {
                    let entries: Vec<(String, &str, Option<Duration>)> =
                        many.into_iter().map(|k| (k, value.as_str(), None)).collect();
                    cache.set_many(&entries).await.iter().all(Result::is_ok)
                }
                Call::DelMany(many) => cache.delete_many(&many).await.iter().all(Result::is_ok),
            }
        }
    })
    .await;
    result.kind = if label.contains("versioned") {
        ClientKind::Cache
    } else {
        ClientKind::CachePlain
    };
    result
}

pub(super) async fn run_ours(
    client: &ClusterClient,
    workload: Workload,
    args: &LoadArgs,
    value: Arc<Vec<u8>>,
) -> RunResult {
    let keys = args.keys;
    let client = client.clone();
    let lww = Lww::new();
    run(workload, "cluster-client", args, move |rng: &mut Rng| {
        let client = client.clone();
        let value = value.clone();
        let call = Call::next(workload, rng, keys);
        let lww = lww.clone();
        async move {
            match call {
                Call::VersionedSet(k) => {
                    let envelope = lww.envelope(&value);
                    client
                        .eval(&lww.script, &[k.as_bytes()], &[&envelope, b"0", b"newer"])
                        .await
                        .is_ok_and(|reply| lww.decided_reply(&reply))
                }
                Call::Set(k) => client
                    .set(k.as_bytes(), &value, SetOptions::default())
                    .await
                    .is_ok(),
                Call::Get(k) => client.get(k.as_bytes()).await.is_ok(),
                Call::GetMany(many) => client.get_many(&many).await.iter().all(Result::is_ok),
                Call::SetMany(many) => {
                    let entries: Vec<(String, &[u8], Option<Duration>)> =
                        many.into_iter().map(|k| (k, value.as_slice(), None)).collect();
                    client.set_many(&entries).await.iter().all(Result::is_ok)
                }
                Call::DelMany(many) => client.del_many(&many).await.iter().all(Result::is_ok),
            }
        }
    })
    .await
}

/// fred's cluster client under the label the demo and the older reports use.
pub(crate) async fn run_fred(
    client: &Client,
    workload: Workload,
    args: &LoadArgs,
    value: Arc<Vec<u8>>,
) -> RunResult {
    run_fred_clients(
        std::slice::from_ref(client),
        "fred cluster client",
        workload,
        args,
        value,
    )
    .await
}

/// fred through `clients` in turn (one client, or the clients of a `Pool`, which fred's `Pool::next`
/// also hands out round-robin).
pub(super) async fn run_fred_clients(
    clients: &[Client],
    label: &str,
    workload: Workload,
    args: &LoadArgs,
    value: Arc<Vec<u8>>,
) -> RunResult {
    let keys = args.keys;
    let clients: Arc<Vec<Client>> = Arc::new(clients.to_vec());
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let lww = Lww::new();
    if workload == Workload::VersionedSet {
        for client in clients.iter() {
            let _ = client.script_load_cluster::<(), _>(consistency::LWW_SCRIPT).await;
        }
    }
    let mut result = run(workload, label, args, move |rng: &mut Rng| {
        let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % clients.len();
        let client = clients[index].clone();
        let value = value.clone();
        let call = Call::next(workload, rng, keys);
        let lww = lww.clone();
        async move {
            match call {
                Call::VersionedSet(k) => {
                    let envelope = lww.envelope(&value);
                    client
                        .evalsha::<Value, _, _, _>(
                            lww.script.sha(),
                            vec![k],
                            vec![Value::Bytes(envelope.into()), "0".into(), "newer".into()],
                        )
                        .await
                        .is_ok_and(|reply| lww.decided(&reply))
                }
                Call::Set(k) => client
                    .set::<(), _, _>(k, value.as_slice(), None, None, false)
                    .await
                    .is_ok(),
                Call::Get(k) => client.get::<Option<Vec<u8>>, _>(k).await.is_ok(),
                Call::GetMany(many) => {
                    let pipeline = client.pipeline();
                    for k in many {
                        let _: Result<(), _> = pipeline.get(k).await;
                    }
                    pipeline
                        .try_all::<Option<Vec<u8>>>()
                        .await
                        .iter()
                        .all(Result::is_ok)
                }
                Call::SetMany(many) => {
                    let pipeline = client.pipeline();
                    for k in many {
                        let _: Result<(), _> = pipeline.set(k, value.as_slice(), None, None, false).await;
                    }
                    pipeline.try_all::<Value>().await.iter().all(Result::is_ok)
                }
                Call::DelMany(many) => {
                    let pipeline = client.pipeline();
                    for k in many {
                        let _: Result<(), _> = pipeline.del(k).await;
                    }
                    pipeline.try_all::<i64>().await.iter().all(Result::is_ok)
                }
            }
        }
    })
    .await;
    result.kind = ClientKind::Fred;
    result
}

/// Plain fred centralized clients, one per primary, routed by a slot table and nothing else.
pub(super) async fn run_per_node(
    ours: &ClusterClient,
    config: &ClusterConfig,
    workload: Workload,
    args: &LoadArgs,
    value: Arc<Vec<u8>>,
) -> Result<RunResult> {
    let topology = ours.topology();
    let mut clients = Vec::new();
    let mut owner = vec![0usize; usize::from(sharding::SLOT_COUNT)];
    for (index, shard) in topology.shards().iter().enumerate() {
        let addr: cluster_config::NodeAddr = shard.primary.parse()?;
        let client = fred_baseline::node_builder(config, &addr).build()?;
        client.init().await?;
        clients.push(client);
        for range in &shard.slots {
            for slot in range.slots() {
                owner[slot as usize] = index;
            }
        }
    }
    let clients = Arc::new(clients);
    let owner = Arc::new(owner);
    let keys = args.keys;
    let run_clients = clients.clone();
    let result = run(workload, "fred per-node, bare", args, move |rng: &mut Rng| {
        let clients = run_clients.clone();
        let owner = owner.clone();
        let value = value.clone();
        let k = key(rng.next(keys));
        async move {
            let client = &clients[owner[usize::from(sharding::key_slot(k.as_bytes()))]];
            match workload {
                Workload::Set => client
                    .set::<(), _, _>(k, value.as_slice(), None, None, false)
                    .await
                    .is_ok(),
                _ => client.get::<Option<Vec<u8>>, _>(k).await.is_ok(),
            }
        }
    })
    .await;
    for client in clients.iter() {
        let _ = client.quit().await;
    }
    Ok(result)
}

/// redis-rs's cluster client (one variant: `peer`), same calls as the others, written the way its
/// users write them: a get-many is one MGET and a set-many one MSET, which redis-rs splits per slot
/// and sends to the nodes concurrently; a versioned write is a `redis::Script` (EVALSHA, loading the
/// script on NOSCRIPT).
pub(super) async fn run_redis_rs(
    peer: Arc<RedisRs>,
    label: &str,
    workload: Workload,
    args: &LoadArgs,
    value: Arc<Vec<u8>>,
) -> RunResult {
    use redis::AsyncCommands;

    let keys = args.keys;
    let lww = Lww::new();
    let script = Arc::new(redis::Script::new(consistency::LWW_SCRIPT));
    let mut result = run(workload, label, args, move |rng: &mut Rng| {
        let mut connection = peer.connection();
        let value = value.clone();
        let call = Call::next(workload, rng, keys);
        let lww = lww.clone();
        let script = script.clone();
        async move {
            match call {
                Call::VersionedSet(k) => {
                    let envelope = lww.envelope(&value);
                    script
                        .key(k)
                        .arg(envelope)
                        .arg(0)
                        .arg("newer")
                        .invoke_async::<redis::Value>(&mut connection)
                        .await
                        .is_ok_and(|reply| decided_redis_rs(&reply))
                }
                Call::Set(k) => connection.set::<_, _, ()>(k, value.as_slice()).await.is_ok(),
                Call::Get(k) => connection.get::<_, Option<Vec<u8>>>(k).await.is_ok(),
                Call::GetMany(many) => connection
                    .mget::<_, Vec<Option<Vec<u8>>>>(&many)
                    .await
                    .is_ok_and(|values| values.len() == many.len()),
                Call::SetMany(many) => {
                    let pairs: Vec<(String, &[u8])> =
                        many.into_iter().map(|k| (k, value.as_slice())).collect();
                    connection.mset::<_, _, ()>(&pairs).await.is_ok()
                }
                Call::DelMany(many) => connection.del::<_, i64>(&many).await.is_ok(),
            }
        }
    })
    .await;
    result.kind = ClientKind::RedisRs;
    result
}

/// [`Lww::decided`] for redis-rs's reply type.
fn decided_redis_rs(reply: &redis::Value) -> bool {
    matches!(reply, redis::Value::Array(parts) if matches!(parts.first(), Some(redis::Value::Int(0 | 1))))
}

/// The near cache: reads through `near` (memory when tracked), writes through `writer`, another
/// cluster-client with its own connections, so every invalidation comes from the servers. Batches go
/// through `writer`.
pub(super) async fn run_near(
    near: &near_cache::NearCache,
    writer: &ClusterClient,
    workload: Workload,
    args: &LoadArgs,
    value: Arc<Vec<u8>>,
) -> RunResult {
    let keys = args.keys;
    let before = near.stats();
    let (reader, writer) = (near.clone(), writer.clone());
    let mut result = run(workload, "near cache", args, move |rng: &mut Rng| {
        let near = reader.clone();
        let writer = writer.clone();
        let value = value.clone();
        let call = Call::next(workload, rng, keys);
        async move {
            match call {
                Call::Get(k) => near.get(k.as_bytes()).await.is_ok(),
                Call::Set(k) | Call::VersionedSet(k) => writer
                    .set(k.as_bytes(), &value, SetOptions::default())
                    .await
                    .is_ok(),
                Call::GetMany(many) => writer.get_many(&many).await.iter().all(Result::is_ok),
                Call::SetMany(many) => {
                    let entries: Vec<(String, &[u8], Option<Duration>)> =
                        many.into_iter().map(|k| (k, value.as_slice(), None)).collect();
                    writer.set_many(&entries).await.iter().all(Result::is_ok)
                }
                Call::DelMany(many) => writer.del_many(&many).await.iter().all(Result::is_ok),
            }
        }
    })
    .await;
    let after = near.stats();
    let (hits, misses) = (after.hits - before.hits, after.misses - before.misses);
    result.hit_ratio = (hits + misses > 0).then(|| hits as f64 / (hits + misses) as f64);
    result.kind = ClientKind::Near;
    result
}

/// redis-rs with its client-side cache: reads through `cached`, writes through `writer` (redis-rs as
/// its users build it, another connection), so invalidations come from the servers.
pub(super) async fn run_redis_rs_cached(
    cached: Arc<RedisRs>,
    writer: Arc<RedisRs>,
    workload: Workload,
    args: &LoadArgs,
    value: Arc<Vec<u8>>,
) -> RunResult {
    use redis::AsyncCommands;

    let keys = args.keys;
    let before = cached.cache_hits_misses().unwrap_or((0, 0));
    let reader = cached.clone();
    let mut result = run(workload, "redis-rs (cached)", args, move |rng: &mut Rng| {
        let mut reads = reader.connection();
        let mut writes = writer.connection();
        let value = value.clone();
        let call = Call::next(workload, rng, keys);
        async move {
            match call {
                Call::Get(k) => reads.get::<_, Option<Vec<u8>>>(k).await.is_ok(),
                Call::Set(k) | Call::VersionedSet(k) => {
                    writes.set::<_, _, ()>(k, value.as_slice()).await.is_ok()
                }
                Call::GetMany(many) => reads
                    .mget::<_, Vec<Option<Vec<u8>>>>(&many)
                    .await
                    .is_ok_and(|values| values.len() == many.len()),
                Call::SetMany(many) => {
                    let pairs: Vec<(String, &[u8])> =
                        many.into_iter().map(|k| (k, value.as_slice())).collect();
                    writes.mset::<_, _, ()>(&pairs).await.is_ok()
                }
                Call::DelMany(many) => writes.del::<_, i64>(&many).await.is_ok(),
            }
        }
    })
    .await;
    let after = cached.cache_hits_misses().unwrap_or((0, 0));
    let (hits, misses) = (after.0 - before.0, after.1 - before.1);
    result.hit_ratio = (hits + misses > 0).then(|| hits as f64 / (hits + misses) as f64);
    result.kind = ClientKind::RedisRsCached;
    result
}
