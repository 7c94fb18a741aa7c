//! Checks that the files in `docker/` agree with each other: the compose file, the one node config the
//! six nodes share, the Prometheus config, and Grafana's provisioning and dashboard. Nothing here needs
//! Docker; the files are parsed, never run.
//!
//! The six node services are compared with one template ([`expected_node`]): what differs between
//! them is their port, and everything that follows from it is written there once. The files are read
//! into typed structs of the shapes they use, so a file that changes shape fails with serde's message
//! instead of being skipped. Every test collects all the problems it finds and fails once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::Deserialize;
use serde::de::DeserializeOwned;

const COMPOSE_FILE: &str = "docker-compose.redis-cluster.yml";
const PROMETHEUS_FILE: &str = "prometheus.yml";
/// The config every node mounts at [`CONF_TARGET`].
const NODE_CONF: &str = "redis-node.conf";
/// Where every node's config is mounted and what its command hands to redis-server.
const CONF_TARGET: &str = "/usr/local/etc/redis/redis.conf";
/// The host ports of the six nodes, in service order (redis-1 ... redis-6).
const NODE_PORTS: [u16; 6] = [6379, 6380, 6381, 6382, 6383, 6384];
/// Redis Cluster's bus port is always the client port plus this.
const BUS_PORT_OFFSET: u16 = 10_000;
/// The address every node announces, and the host address its ports are published on.
const ANNOUNCE_IP: &str = "${REDIS_ANNOUNCE_IP:-172.30.0.1}";
/// The cache's own metrics endpoint as seen from the Prometheus container.
const CACHE_METRICS_TARGET: &str = "host.docker.internal:9192";
const CACHE_JOB: &str = "redis-cluster-cache";
/// Grafana's provisioning (datasources, dashboard providers) and the dashboards it loads.
const GRAFANA_DATASOURCE: &str = "grafana/provisioning/datasources/prometheus.yml";
const GRAFANA_PROVIDER: &str = "grafana/provisioning/dashboards/redis-cluster-cache.yml";
const GRAFANA_DASHBOARD: &str = "grafana/dashboards/redis-cluster-cache.json";

fn docker_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../docker")
        .join(name)
}

fn read_docker_file(name: &str) -> String {
    let path = docker_path(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn parse_yaml<T: DeserializeOwned>(name: &str) -> T {
    let mut value: serde_norway::Value = serde_norway::from_str(&read_docker_file(name))
        .unwrap_or_else(|e| panic!("docker/{name} is not valid YAML: {e}"));
    // Compose applies `<<: *anchor` merge keys; do the same so shared settings count.
    value
        .apply_merge()
        .unwrap_or_else(|e| panic!("docker/{name} has a bad `<<` merge key: {e}"));
    serde_norway::from_value(value).unwrap_or_else(|e| panic!("docker/{name} has an unexpected shape: {e}"))
}

/// The problems a test found; it fails once, listing them all, so a broken file is fixed in one round.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn check(&mut self, ok: bool, problem: impl FnOnce() -> String) {
        if !ok {
            self.0.push(problem());
        }
    }

    fn assert_none(self, file: &str) {
        let Self(problems) = self;
        assert!(
            problems.is_empty(),
            "{file}: {} problem(s)\n  - {}",
            problems.len(),
            problems.join("\n  - ")
        );
    }
}

// ------------------------------------------------------------------------------------------------
// The files' shapes.

#[derive(Deserialize)]
struct Compose {
    services: BTreeMap<String, Service>,
    #[serde(default)]
    volumes: BTreeMap<String, serde_norway::Value>,
    #[serde(default)]
    networks: BTreeMap<String, serde_norway::Value>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default)]
struct Service {
    image: String,
    command: Words,
    entrypoint: Words,
    /// Short syntax (`HOST_IP:PUBLISHED:TARGET`).
    ports: Vec<String>,
    /// Long syntax on purpose: a missing bind source is then an error, not an empty directory.
    volumes: Vec<Mount>,
    healthcheck: Option<Healthcheck>,
    depends_on: BTreeMap<String, DependsOn>,
    networks: Vec<String>,
    extra_hosts: Vec<String>,
}

/// A `command`/`entrypoint`/`test`, written either as a list or as one string.
#[derive(Deserialize, Default, Debug)]
#[serde(from = "OneOrMany")]
struct Words(Vec<String>);

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl From<OneOrMany> for Words {
    fn from(value: OneOrMany) -> Self {
        match value {
            OneOrMany::One(line) => Self(line.split_whitespace().map(str::to_owned).collect()),
            OneOrMany::Many(words) => Self(words),
        }
    }
}

#[derive(Deserialize, Debug)]
struct Mount {
    /// `bind` for a host path (relative to `docker/`), `volume` for a named volume.
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    source: String,
    target: String,
    #[serde(default)]
    read_only: bool,
}

#[derive(Deserialize, Debug)]
struct Healthcheck {
    #[serde(default)]
    test: Words,
    #[serde(default)]
    disable: bool,
}

#[derive(Deserialize, Debug)]
struct DependsOn {
    condition: String,
}

/// The host port of a short-syntax `ports:` entry (`[IP:]PUBLISHED:TARGET[/tcp]`), taken from the
/// right because the IP may be a `${VAR:-default}` with colons of its own.
fn published_port(spec: &str) -> Option<u16> {
    let spec = spec.strip_suffix("/tcp").unwrap_or(spec);
    spec.rsplit(':').nth(1)?.parse().ok()
}

/// The directives of a redis.conf, in order; a directive may repeat (`save`,
/// `client-output-buffer-limit`).
fn parse_redis_conf(text: &str) -> Vec<(String, String)> {
    let lines = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'));
    let directive = |line: &str| {
        let (name, args) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        // Redis reads directive names case-insensitively.
        (name.to_ascii_lowercase(), args.trim().to_owned())
    };
    lines.map(directive).collect()
}

/// The value of a directive that must appear exactly once.
fn single<'a>(directives: &'a [(String, String)], name: &str) -> Result<&'a str, String> {
    let mut values = directives
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_str());
    match (values.next(), values.next()) {
        (Some(value), None) => Ok(value),
        (None, _) => Err(format!("`{name}` is missing")),
        (Some(_), Some(_)) => Err(format!("`{name}` appears more than once")),
    }
}

// ------------------------------------------------------------------------------------------------
// The template of a node service.

/// What the compose file must say for the node on `port`. Each node listens on its own port inside its
/// container too and is published on the same host port, because it announces that port to clients
/// (CLUSTER SHARDS, MOVED, ASK); likewise its cluster bus port (port + 10000), which the other nodes
/// dial for gossip and failover votes. Everything else comes from the one shared config.
fn expected_node(n: usize, port: u16) -> Service {
    let bus = port + BUS_PORT_OFFSET;
    let words = |words: &[&str]| Words(words.iter().map(|w| w.to_string()).collect());
    let mount = |kind: &str, source: String, target: &str, read_only| Mount {
        kind: kind.into(),
        source,
        target: target.into(),
        read_only,
    };
    let (port_arg, bus_arg) = (port.to_string(), bus.to_string());
    Service {
        image: "redis:7.0".into(),
        command: words(&[
            "redis-server",
            CONF_TARGET,
            "--cluster-announce-ip",
            ANNOUNCE_IP,
            "--port",
            &port_arg,
            "--cluster-announce-port",
            &port_arg,
            "--cluster-announce-bus-port",
            &bus_arg,
            "--cluster-config-file",
            &format!("nodes-{port}.conf"),
        ]),
        ports: vec![
            format!("127.0.0.1:{port}:{port}"),
            format!("{ANNOUNCE_IP}:{port}:{port}"),
            format!("{ANNOUNCE_IP}:{bus}:{bus}"),
        ],
        // Every node its own data volume: AOF and nodes-*.conf, so it keeps its identity on restart.
        volumes: vec![
            mount("bind", format!("./{NODE_CONF}"), CONF_TARGET, true),
            mount("volume", format!("redis-{n}-data"), "/data", false),
        ],
        healthcheck: Some(Healthcheck {
            test: words(&["CMD-SHELL", &format!("redis-cli -p {port} ping | grep -q PONG")]),
            disable: false,
        }),
        ..Service::default()
    }
}

// ------------------------------------------------------------------------------------------------
// The checks.

#[test]
fn the_six_redis_7_0_nodes_follow_one_template() {
    let compose: Compose = parse_yaml(COMPOSE_FILE);
    let mut problems = Problems::default();
    let runs_redis =
        |s: &Service| s.entrypoint.0.is_empty() && s.command.0.first().is_some_and(|w| w == "redis-server");
    let nodes: Vec<&String> = compose
        .services
        .iter()
        .filter(|(_, s)| runs_redis(s))
        .map(|(n, _)| n)
        .collect();
    let expected_names: Vec<String> = (1..=NODE_PORTS.len()).map(|n| format!("redis-{n}")).collect();
    problems.check(nodes == expected_names.iter().collect::<Vec<_>>(), || {
        format!("expected 6 services running redis-server (3 masters + 3 replicas), {expected_names:?}, found {nodes:?}")
    });
    for (n, port) in (1..).zip(NODE_PORTS) {
        let name = format!("redis-{n}");
        let Some(node) = compose.services.get(&name) else {
            continue;
        };
        let expected = expected_node(n, port);
        // Compared field by field through their Debug text, so a message shows both sides.
        let fields = |s: &Service| {
            let test = s.healthcheck.as_ref().map(|h| &h.test.0);
            [
                ("image", format!("{:?}", s.image)),
                ("command", format!("{:?}", s.command.0)),
                ("ports", format!("{:?}", s.ports)),
                ("volumes", format!("{:?}", s.volumes)),
                ("healthcheck test", format!("{test:?}")),
            ]
        };
        for ((field, found), (_, wanted)) in fields(node).into_iter().zip(fields(&expected)) {
            problems.check(found == wanted, || {
                format!("{name}: {field} is {found}, expected {wanted}")
            });
        }
        let volume = &expected.volumes[1].source;
        problems.check(compose.volumes.contains_key(volume), || {
            format!("{name}: volume {volume} is not declared under `volumes:`")
        });
    }
    // The one shared config is what every node runs; no stale per-node configs lie next to it.
    let dir = docker_path(".");
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    let confs: Vec<String> = entries
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".conf"))
        .collect();
    problems.check(confs == [NODE_CONF], || {
        format!("docker/ holds configs {confs:?}, expected only {NODE_CONF}")
    });
    problems.assert_none(COMPOSE_FILE);
}

#[test]
fn the_shared_node_config_has_the_cluster_and_cache_settings() {
    let directives = parse_redis_conf(&read_docker_file(NODE_CONF));
    let mut problems = Problems::default();
    for (name, expected) in [
        ("cluster-enabled", "yes"),
        // Otherwise one failed shard makes every node refuse every key.
        ("cluster-require-full-coverage", "no"),
        ("cluster-node-timeout", "15000"),
        ("maxmemory-policy", "allkeys-lru"),
        ("appendonly", "yes"),
    ] {
        let found = single(&directives, name);
        problems.check(
            found.as_ref().is_ok_and(|v| v.eq_ignore_ascii_case(expected)),
            || format!("`{name}` is {found:?}, expected `{expected}`"),
        );
    }
    for name in ["maxmemory", "repl-backlog-size"] {
        if let Err(problem) = single(&directives, name) {
            problems.0.push(problem);
        }
    }
    let replica_limit = directives
        .iter()
        .any(|(n, v)| n == "client-output-buffer-limit" && v.split_whitespace().next() == Some("replica"));
    problems.check(replica_limit, || {
        "no `client-output-buffer-limit replica ...`".to_owned()
    });
    // What the template passes as flags would be set twice, and silently overridden, if the file set
    // it too.
    for (name, _) in &directives {
        let per_node = [
            "port",
            "cluster-announce-ip",
            "cluster-announce-port",
            "cluster-announce-bus-port",
            "cluster-config-file",
        ];
        problems.check(!per_node.contains(&name.as_str()), || {
            format!("sets `{name}`, which differs per node and belongs in the node's command")
        });
    }
    problems.assert_none(NODE_CONF);
}

#[test]
fn init_service_creates_the_cluster_from_all_six_healthy_nodes() {
    let compose: Compose = parse_yaml(COMPOSE_FILE);
    let mut problems = Problems::default();
    let script = |s: &Service| [&s.entrypoint.0[..], &s.command.0[..]].concat().join(" ");
    let creators: Vec<_> = compose
        .services
        .iter()
        .filter(|(_, s)| script(s).contains("--cluster create"))
        .collect();
    let [(name, init)] = creators.as_slice() else {
        let names: Vec<&String> = creators.iter().map(|(name, _)| *name).collect();
        panic!(
            "{COMPOSE_FILE}: expected exactly one service running `redis-cli --cluster create`, found {names:?}"
        );
    };
    let script = script(init);
    // The create command runs from `--cluster create` to its last option.
    let create = script.split_once("--cluster create").map_or("", |(_, rest)| rest);
    let create = create
        .find("--cluster-yes")
        .map_or(create, |end| &create[..end + "--cluster-yes".len()]);
    for needle in ["--cluster-replicas 1", "--cluster-yes"] {
        problems.check(create.contains(needle), || {
            format!("{name}: the create command lacks `{needle}`: {create:?}")
        });
    }
    // Each node is listed by its announced address, which proves that address works from a container.
    let listed: BTreeSet<u16> = create
        .split(|c: char| c.is_whitespace() || c == '"' || c == '\'')
        .filter_map(|word| word.strip_prefix("$$ANNOUNCE_IP:")?.parse().ok())
        .collect();
    for (n, port) in (1..).zip(NODE_PORTS) {
        problems.check(listed.contains(&port), || {
            format!(
                "{name}: the create command does not list $$ANNOUNCE_IP:{port}; it lists ports {listed:?}"
            )
        });
        let condition = init
            .depends_on
            .get(&format!("redis-{n}"))
            .map(|d| d.condition.as_str());
        problems.check(condition == Some("service_healthy"), || {
            format!("{name}: must wait for redis-{n} with `condition: service_healthy`, has {condition:?}")
        });
    }
    problems.assert_none(COMPOSE_FILE);
}

#[test]
fn every_service_has_a_healthcheck_and_joins_the_declared_network() {
    let compose: Compose = parse_yaml(COMPOSE_FILE);
    let mut problems = Problems::default();
    for (name, service) in &compose.services {
        let runs = service
            .healthcheck
            .as_ref()
            .filter(|h| !h.disable)
            .map(|h| &h.test.0);
        problems.check(
            runs.is_some_and(|test| !test.is_empty() && test != &["NONE"]),
            || format!("{name}: no healthcheck that runs something (test {runs:?})"),
        );
        let networks = &service.networks;
        problems.check(!networks.is_empty() && networks.iter().all(|n| compose.networks.contains_key(n)), || {
            format!("{name}: networks {networks:?}; every service belongs on the file's own network, declared under `networks:`")
        });
    }
    problems.assert_none(COMPOSE_FILE);
}

#[test]
fn prometheus_and_redis_commander_are_published_and_mounted() {
    let compose: Compose = parse_yaml(COMPOSE_FILE);
    let mut problems = Problems::default();
    let by_image = |image: &str| -> Vec<(&String, &Service)> {
        compose
            .services
            .iter()
            .filter(|(_, s)| s.image.starts_with(image))
            .collect()
    };
    let [(name, prometheus)] = by_image("prom/prometheus")[..] else {
        panic!("expected one prom/prometheus service")
    };
    for (source, target) in [
        ("./prometheus.yml", "/etc/prometheus/prometheus.yml"),
        ("../docs/alerts.yml", "/etc/prometheus/alerts.yml"),
    ] {
        let mounts = &prometheus.volumes;
        problems.check(
            mounts
                .iter()
                .any(|m| m.kind == "bind" && m.source == source && m.target == target && m.read_only),
            || format!("{name}: does not mount {source} at {target} read-only; mounts {mounts:?}"),
        );
    }
    let hosts = &prometheus.extra_hosts;
    let gateway =
        |h: &String| h == "host.docker.internal:host-gateway" || h == "host.docker.internal=host-gateway";
    problems.check(hosts.iter().any(gateway), || {
        format!("{name}: needs extra_hosts host.docker.internal:host-gateway to scrape the cache on the host, has {hosts:?}")
    });
    let [(commander_name, commander)] = by_image("ghcr.io/joeferner/redis-commander")[..] else {
        panic!("expected one redis-commander service")
    };
    for (name, service, port) in [(name, prometheus, 9090), (commander_name, commander, 8081)] {
        let ports = &service.ports;
        problems.check(ports.iter().any(|p| published_port(p) == Some(port)), || {
            format!("{name}: should publish port {port}, publishes {ports:?}")
        });
    }
    problems.assert_none(COMPOSE_FILE);
}

#[test]
fn prometheus_config_scrapes_the_cache_and_every_node_and_loads_alerts() {
    #[derive(Deserialize)]
    struct Prometheus {
        #[serde(default)]
        rule_files: Vec<String>,
        scrape_configs: Vec<Job>,
    }
    #[derive(Deserialize)]
    struct Job {
        job_name: String,
        metrics_path: Option<String>,
        #[serde(default)]
        static_configs: Vec<Targets>,
    }
    #[derive(Deserialize)]
    struct Targets {
        targets: Vec<String>,
    }
    let config: Prometheus = parse_yaml(PROMETHEUS_FILE);
    let mut problems = Problems::default();
    let rules = &config.rule_files;
    problems.check(
        rules
            .iter()
            .any(|f| f == "alerts.yml" || f == "/etc/prometheus/alerts.yml"),
        || format!("rule_files is {rules:?}, expected it to load alerts.yml"),
    );
    let mut names = BTreeSet::new();
    for job in &config.scrape_configs {
        problems.check(names.insert(&job.job_name), || {
            format!("job_name {} is used twice", job.job_name)
        });
    }
    let targets = |job: &Job| -> Vec<String> {
        job.static_configs
            .iter()
            .flat_map(|g| g.targets.clone())
            .collect()
    };
    match config.scrape_configs.iter().find(|job| job.job_name == CACHE_JOB) {
        Some(job) => {
            let scraped = targets(job);
            problems.check(scraped.iter().any(|t| t == CACHE_METRICS_TARGET), || {
                format!("job {CACHE_JOB} should scrape {CACHE_METRICS_TARGET}, scrapes {scraped:?}")
            });
            let path = job.metrics_path.as_deref().unwrap_or("/metrics");
            problems.check(path == "/metrics", || {
                format!("job {CACHE_JOB} scrapes {path}, but the cache serves /metrics")
            });
        }
        None => problems.0.push(format!(
            "no scrape job named {CACHE_JOB} (the cache's own /metrics)"
        )),
    }
    let all_targets: Vec<String> = config.scrape_configs.iter().flat_map(targets).collect();
    for port in NODE_PORTS {
        problems.check(
            all_targets.iter().any(|t| t.ends_with(&format!(":{port}"))),
            || format!("no scrape target for the redis node on port {port}"),
        );
    }
    problems.assert_none(PROMETHEUS_FILE);
}

#[test]
fn grafana_is_provisioned_with_the_prometheus_datasource_and_the_dashboard() {
    #[derive(Deserialize)]
    struct Datasources {
        datasources: Vec<Datasource>,
    }
    #[derive(Deserialize)]
    struct Datasource {
        uid: String,
        #[serde(rename = "type")]
        kind: String,
        url: String,
    }
    #[derive(Deserialize)]
    struct Providers {
        providers: Vec<Provider>,
    }
    #[derive(Deserialize)]
    struct Provider {
        #[serde(rename = "type")]
        kind: String,
        options: ProviderOptions,
    }
    #[derive(Deserialize)]
    struct ProviderOptions {
        path: String,
    }
    let compose: Compose = parse_yaml(COMPOSE_FILE);
    let mut problems = Problems::default();
    let grafana: Vec<(&String, &Service)> = compose
        .services
        .iter()
        .filter(|(_, s)| s.image.starts_with("grafana/grafana:"))
        .collect();
    let [(name, grafana)] = grafana[..] else {
        panic!("expected one grafana/grafana service with a pinned tag")
    };
    let ports = &grafana.ports;
    problems.check(
        ports
            .iter()
            .any(|p| published_port(p) == Some(3000) && p.starts_with("127.0.0.1:")),
        || format!("{name}: should publish 3000 on 127.0.0.1 only, publishes {ports:?}"),
    );
    let prometheus_service = compose
        .services
        .iter()
        .find(|(_, s)| s.image.starts_with("prom/prometheus"))
        .map(|(n, _)| n.clone())
        .expect("a prometheus service");
    let waits = grafana
        .depends_on
        .get(&prometheus_service)
        .map(|d| d.condition.as_str());
    problems.check(waits == Some("service_healthy"), || {
        format!("{name}: should wait for {prometheus_service} to be healthy, waits {waits:?}")
    });
    let mounted = |source: &str| -> Option<String> {
        grafana
            .volumes
            .iter()
            .find(|m| m.kind == "bind" && m.source == source && m.read_only)
            .map(|m| m.target.clone())
    };
    for (source, target) in [
        (
            "./grafana/provisioning/datasources",
            "/etc/grafana/provisioning/datasources",
        ),
        (
            "./grafana/provisioning/dashboards",
            "/etc/grafana/provisioning/dashboards",
        ),
    ] {
        problems.check(mounted(source).as_deref() == Some(target), || {
            format!("{name}: should mount {source} read-only at {target}")
        });
    }
    let dashboards_at = mounted("./grafana/dashboards");

    let datasources: Datasources = parse_yaml(GRAFANA_DATASOURCE);
    let prometheus_url = format!("http://{prometheus_service}:9090");
    let uids: BTreeSet<&str> = datasources
        .datasources
        .iter()
        .filter(|d| d.kind == "prometheus" && d.url == prometheus_url)
        .map(|d| d.uid.as_str())
        .collect();
    problems.check(!uids.is_empty(), || {
        format!("{GRAFANA_DATASOURCE}: no prometheus datasource at {prometheus_url}")
    });
    let providers: Providers = parse_yaml(GRAFANA_PROVIDER);
    problems.check(
        providers
            .providers
            .iter()
            .any(|p| p.kind == "file" && Some(&p.options.path) == dashboards_at.as_ref()),
        || format!("{GRAFANA_PROVIDER}: no file provider reading where ./grafana/dashboards is mounted ({dashboards_at:?})"),
    );

    let dashboard: serde_json::Value = serde_json::from_str(&read_docker_file(GRAFANA_DASHBOARD))
        .unwrap_or_else(|e| panic!("docker/{GRAFANA_DASHBOARD} is not JSON: {e}"));
    let panels = dashboard["panels"].as_array().expect("a panels list");
    let mut queried = 0;
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        let title = panel["title"].as_str().unwrap_or("?");
        let uid = panel["datasource"]["uid"].as_str().unwrap_or("");
        problems.check(uids.contains(uid), || {
            format!("panel {title:?}: datasource uid {uid:?} is not provisioned ({uids:?})")
        });
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap_or("");
            queried += 1;
            problems.check(expr.contains(&format!("job=\"{CACHE_JOB}\"")), || {
                format!("panel {title:?}: {expr:?} is not scoped by job=\"{CACHE_JOB}\"")
            });
        }
    }
    problems.check(queried > 0, || "the dashboard queries nothing".into());
    problems.assert_none(GRAFANA_DASHBOARD);
}

// ------------------------------------------------------------------------------------------------
// The parsers above, on inputs the real files do not happen to contain.

#[test]
fn published_port_reads_every_short_syntax() {
    for (spec, expected) in [
        ("6379", None),
        ("6380:6379", Some(6380)),
        ("127.0.0.1:6379:6379", Some(6379)),
        ("${REDIS_ANNOUNCE_IP:-172.30.0.1}:16379:16379", Some(16379)),
        ("6379:6379/tcp", Some(6379)),
        ("6379-6384:6379-6384", None),
        ("", None),
    ] {
        assert_eq!(published_port(spec), expected, "published_port({spec:?})");
    }
}

#[test]
fn redis_conf_parsing_handles_comments_case_and_repeats() {
    for (text, name, expected) in [
        ("port 6379\n", "port", Ok("6379")),
        ("  PORT   6380  \n", "port", Ok("6380")),
        ("# port 6379\n", "port", Err(())),
        ("port 1\nport 2\n", "port", Err(())),
        ("save \"\"\n", "save", Ok("\"\"")),
        (
            "client-output-buffer-limit replica 256mb 64mb 60\n",
            "client-output-buffer-limit",
            Ok("replica 256mb 64mb 60"),
        ),
    ] {
        let directives = parse_redis_conf(text);
        assert_eq!(
            single(&directives, name).map_err(|_| ()),
            expected,
            "single({name:?}) of {text:?}"
        );
    }
}
