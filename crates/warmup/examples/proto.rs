use std::time::{Duration, Instant};
use futures::StreamExt;
use cluster_client::{Value, Script, Bytes};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cluster = local_cluster::LocalCluster::start(local_cluster::ClusterSpec::default()).await?;
    let port = cluster.nodes()[0].port();
    let out = std::process::Command::new("redis-benchmark")
        .args(["--cluster", "-h", "127.0.0.1", "-p", &port.to_string(), "-t", "set", "-n", "1000000", "-d", "100", "-P", "16", "-c", "50", "-r", "1000000", "-q"])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout); println!("bench: {}", text.rsplit('\r').next().unwrap_or(""));
    let client = cluster_client::ClusterClient::connect(cluster_config::ClusterConfig::builder().nodes(cluster.seeds()).build()?).await?;
    let script = Script::new("for i, key in ipairs(KEYS) do local t = ARGV[2*i] if t == '0' then redis.call('SET', key, ARGV[2*i-1]) else redis.call('SET', key, ARGV[2*i-1], 'PX', t) end end return #KEYS");
    let value = Bytes::from(vec![b'x'; 100]);
    let total = 1_000_000usize;
    let keys: Vec<Bytes> = (0..total).map(|i| Bytes::from(format!("k:{i}"))).collect();
    let topo = client.topology();
    // slot groups
    let mut slots: std::collections::BTreeMap<u16, Vec<Bytes>> = Default::default();
    for k in &keys { slots.entry(sharding::key_slot(k)).or_default().push(k.clone()); }
    for mode in ["mset", "lua", "lua-ttl"] {
        for n in cluster.nodes() { let _ : Value = n.command(["FLUSHALL"]).await.unwrap_or(Value::Null); }
        let groups: Vec<(u16, Vec<Bytes>)> = slots.iter().map(|(s, k)| (*s, k.clone())).collect();
        let started = Instant::now();
        let c = &client; let v = &value; let sc = &script; let topo = &topo;
        let errs: usize = futures::stream::iter(groups).map(|(_slot, ks)| async move {
            match mode {
                "mset" => {
                    let node = topo.shard_for_key(&ks[0]).unwrap().primary.clone();
                    let mut args: Vec<Value> = vec!["MSET".into()];
                    for k in &ks { args.push(Value::Bytes(k.clone())); args.push(Value::Bytes(v.clone())); }
                    c.node_command::<Value>(&node, args).await.is_err() as usize
                }
                _ => {
                    let ttl: &[u8] = if mode == "lua" { b"0" } else { b"3600000" };
                    let kr: Vec<&[u8]> = ks.iter().map(|k| &k[..]).collect();
                    let mut ar: Vec<&[u8]> = Vec::new();
                    for _ in &ks { ar.push(&v[..]); ar.push(ttl); }
                    c.eval(sc, &kr, &ar).await.is_err() as usize
                }
            }
        }).buffer_unordered(64).fold(0, |a, e| async move { a + e }).await;
        let el = started.elapsed();
        println!("{mode}: {:.0}/s errs {errs}", total as f64 / el.as_secs_f64());
    }
    let _ = Duration::ZERO;
    Ok(())
}
