//! Checks that the files in `docker/` agree with each other: the compose file, the six node configs
//! and the Prometheus config. Nothing here needs Docker; the files are parsed, never run.
//!
//! Every test collects all the problems it finds and fails once, listing each one, so a broken file
//! is fixed in one round.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::PathBuf;

use serde_norway::{Mapping, Value};

const COMPOSE_FILE: &str = "docker-compose.redis-cluster.yml";
const PROMETHEUS_FILE: &str = "prometheus.yml";
/// The host ports of the six nodes, in service order (redis-1 ... redis-6).
const NODE_PORTS: [u16; 6] = [6379, 6380, 6381, 6382, 6383, 6384];
/// Redis Cluster's bus port is always the client port plus this.
const BUS_PORT_OFFSET: u16 = 10_000;
/// Where every node's config is mounted and what its command hands to redis-server.
const CONF_TARGET: &str = "/usr/local/etc/redis/redis.conf";
/// The cache's own metrics endpoint as seen from the Prometheus container.
const CACHE_METRICS_TARGET: &str = "host.docker.internal:9121";
const CACHE_JOB: &str = "redis-cluster-cache";

fn docker_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docker")
}

fn read_docker_file(name: &str) -> String {
    let path = docker_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn parse_yaml(name: &str) -> Value {
    let mut value: Value = serde_norway::from_str(&read_docker_file(name))
        .unwrap_or_else(|e| panic!("docker/{name} is not valid YAML: {e}"));
    // Compose applies `<<: *anchor` merge keys; do the same so shared settings count.
    value
        .apply_merge()
        .unwrap_or_else(|e| panic!("docker/{name} has a bad `<<` merge key: {e}"));
    value
}

/// Fails the test with every problem found, one per line.
fn assert_no_problems(what: &str, problems: &[String]) {
    if !problems.is_empty() {
        let mut message = format!("{what}: {} problem(s)\n", problems.len());
        for problem in problems {
            let _ = writeln!(message, "  - {problem}");
        }
        panic!("{message}");
    }
}

// ------------------------------------------------------------------------------------------------
// The compose file.

/// The parsed compose file, services in file order.
struct Compose {
    services: Vec<(String, Value)>,
    root: Value,
}

impl Compose {
    fn load() -> Self {
        let root = parse_yaml(COMPOSE_FILE);
        let services = root
            .get("services")
            .and_then(Value::as_mapping)
            .unwrap_or_else(|| panic!("docker/{COMPOSE_FILE} has no `services:` mapping"))
            .iter()
            .map(|(name, service)| {
                (
                    name.as_str().unwrap_or("<non-string name>").to_owned(),
                    service.clone(),
                )
            })
            .collect();
        Self { services, root }
    }

    /// Services that run redis-server itself (the init service runs a shell instead).
    fn redis_nodes(&self) -> Vec<(&str, &Value)> {
        self.services
            .iter()
            .filter(|(_, service)| {
                service.get("entrypoint").is_none()
                    && words(service.get("command")).first().map(String::as_str) == Some("redis-server")
            })
            .map(|(name, service)| (name.as_str(), service))
            .collect()
    }

    fn service(&self, name: &str) -> Option<&Value> {
        self.services
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, service)| service)
    }
}

/// The words of a `command`/`entrypoint`, written either as a list or as one string.
fn words(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(text)) => text.split_whitespace().map(str::to_owned).collect(),
        Some(Value::Sequence(items)) => items
            .iter()
            .map(|item| item.as_str().map_or_else(|| format!("{item:?}"), str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// One entry of a service's `ports:`.
#[derive(Debug, PartialEq, Eq)]
struct PortMapping {
    /// The host port; `None` when Docker picks one.
    published: Option<u16>,
    /// The port inside the container.
    target: u16,
}

/// Parses the short syntax (`"6379"`, `"6379:6379"`, `"IP:6379:6379"`, optionally `/tcp`). The host
/// IP may be a `${VAR:-default}` with colons of its own, so the ports are taken from the right.
fn parse_short_port(spec: &str) -> Result<PortMapping, String> {
    let spec = spec.strip_suffix("/tcp").unwrap_or(spec);
    let mut parts = spec.rsplitn(3, ':');
    let port = |part: Option<&str>| -> Result<Option<u16>, String> {
        part.map(|p| {
            p.parse::<u16>()
                .map_err(|_| format!("`{spec}`: `{p}` is not a single port number"))
        })
        .transpose()
    };
    let target = port(parts.next())?.ok_or_else(|| format!("`{spec}` names no port"))?;
    let published = port(parts.next())?;
    Ok(PortMapping { published, target })
}

fn port_mappings(service: &Value) -> Result<Vec<PortMapping>, String> {
    let Some(ports) = service.get("ports") else {
        return Ok(Vec::new());
    };
    let ports = ports.as_sequence().ok_or("`ports:` is not a list")?;
    ports
        .iter()
        .map(|entry| match entry {
            Value::String(spec) => parse_short_port(spec),
            Value::Number(n) => {
                let target = n.as_u64().and_then(|n| u16::try_from(n).ok());
                target
                    .map(|target| PortMapping {
                        published: None,
                        target,
                    })
                    .ok_or(format!("bad port {n}"))
            }
            Value::Mapping(long) => {
                let number = |key: &str| match long.get(key) {
                    None => Ok(None),
                    Some(Value::Number(n)) => n
                        .as_u64()
                        .and_then(|n| u16::try_from(n).ok())
                        .map(Some)
                        .ok_or(format!("bad {key}")),
                    Some(Value::String(s)) => s.parse().map(Some).map_err(|_| format!("bad {key} `{s}`")),
                    Some(other) => Err(format!("bad {key} {other:?}")),
                };
                Ok(PortMapping {
                    published: number("published")?,
                    target: number("target")?.ok_or("no target")?,
                })
            }
            other => Err(format!("unreadable `ports:` entry {other:?}")),
        })
        .collect()
}

/// One entry of a service's `volumes:`.
#[derive(Debug, PartialEq, Eq)]
struct Mount {
    /// `bind` for a host path, `volume` for a named volume.
    kind: String,
    source: String,
    target: String,
}

fn mounts(service: &Value) -> Result<Vec<Mount>, String> {
    let Some(volumes) = service.get("volumes") else {
        return Ok(Vec::new());
    };
    let volumes = volumes.as_sequence().ok_or("`volumes:` is not a list")?;
    volumes
        .iter()
        .map(|entry| match entry {
            // Short syntax: SOURCE:TARGET[:MODE]; a source that looks like a path is a bind mount.
            Value::String(spec) => {
                let mut parts = spec.splitn(3, ':');
                let (Some(source), Some(target)) = (parts.next(), parts.next()) else {
                    return Err(format!("`{spec}` is not SOURCE:TARGET"));
                };
                let kind = if source.starts_with(['.', '/', '~']) {
                    "bind"
                } else {
                    "volume"
                };
                Ok(Mount {
                    kind: kind.to_owned(),
                    source: source.to_owned(),
                    target: target.to_owned(),
                })
            }
            Value::Mapping(long) => {
                let field = |key: &str| long.get(key).and_then(Value::as_str).map(str::to_owned);
                Ok(Mount {
                    kind: field("type").ok_or("a long-syntax volume has no `type`")?,
                    source: field("source").unwrap_or_default(),
                    target: field("target").ok_or("a long-syntax volume has no `target`")?,
                })
            }
            other => Err(format!("unreadable `volumes:` entry {other:?}")),
        })
        .collect()
}

/// A bind source relative to `docker/`, normalised so `./a.conf` and `a.conf` compare equal.
fn bind_source(source: &str) -> &str {
    source.strip_prefix("./").unwrap_or(source)
}

/// The service names a service waits for, with the condition of each.
fn depends_on(service: &Value) -> BTreeMap<String, String> {
    match service.get("depends_on") {
        Some(Value::Sequence(names)) => names
            .iter()
            .filter_map(Value::as_str)
            .map(|name| (name.to_owned(), "service_started".to_owned()))
            .collect(),
        Some(Value::Mapping(map)) => map
            .iter()
            .filter_map(|(name, options)| {
                let condition = options
                    .get("condition")
                    .and_then(Value::as_str)
                    .unwrap_or("service_started");
                Some((name.as_str()?.to_owned(), condition.to_owned()))
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

// ------------------------------------------------------------------------------------------------
// redis.conf files.

/// The directives of a redis.conf, in order; a directive may repeat (`save`, `client-output-buffer-limit`).
struct RedisConf {
    file: String,
    directives: Vec<(String, String)>,
}

impl RedisConf {
    fn load(file: &str) -> Self {
        Self::parse(file, &read_docker_file(file))
    }

    fn parse(file: &str, text: &str) -> Self {
        let directives = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(|line| {
                let (name, args) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
                // Redis reads directive names case-insensitively.
                (name.to_ascii_lowercase(), args.trim().to_owned())
            })
            .collect();
        Self {
            file: file.to_owned(),
            directives,
        }
    }

    /// The value of a directive that must appear exactly once.
    fn single(&self, name: &str) -> Result<&str, String> {
        let mut values = self
            .directives
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str());
        match (values.next(), values.next()) {
            (Some(value), None) => Ok(value),
            (None, _) => Err(format!("{}: `{name}` is missing", self.file)),
            (Some(_), Some(_)) => Err(format!("{}: `{name}` appears more than once", self.file)),
        }
    }

    fn port(&self, name: &str) -> Result<u16, String> {
        let value = self.single(name)?;
        value
            .parse()
            .map_err(|_| format!("{}: `{name} {value}` is not a port number", self.file))
    }

    /// Records a problem unless `name` is set exactly once, to `expected`.
    fn expect(&self, name: &str, expected: &str, problems: &mut Vec<String>) {
        match self.single(name) {
            Ok(value) if value.eq_ignore_ascii_case(expected) => {}
            Ok(value) => problems.push(format!(
                "{}: `{name} {value}`, expected `{name} {expected}`",
                self.file
            )),
            Err(problem) => problems.push(problem),
        }
    }
}

/// The names of the node configs on disk: `redis-cluster-*.conf` in `docker/`, sorted.
fn conf_files_on_disk() -> Vec<String> {
    let dir = docker_dir();
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    let mut names: Vec<String> = entries
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with("redis-cluster-") && name.ends_with(".conf"))
        .collect();
    names.sort();
    names
}

/// Each redis node service with the config it mounts at [`CONF_TARGET`].
fn nodes_with_confs(
    compose: &Compose,
    problems: &mut Vec<String>,
) -> Vec<(String, RedisConf, Vec<PortMapping>)> {
    let mut nodes = Vec::new();
    for (name, service) in compose.redis_nodes() {
        let command = words(service.get("command"));
        if command.get(1).map(String::as_str) != Some(CONF_TARGET) {
            problems.push(format!(
                "{name}: command should be `redis-server {CONF_TARGET} ...`, is {command:?}"
            ));
        }
        let mounts = match mounts(service) {
            Ok(mounts) => mounts,
            Err(problem) => {
                problems.push(format!("{name}: {problem}"));
                continue;
            }
        };
        let Some(conf) = mounts
            .iter()
            .find(|m| m.kind == "bind" && m.target == CONF_TARGET)
        else {
            problems.push(format!("{name}: mounts no config file at {CONF_TARGET}"));
            continue;
        };
        let ports = match port_mappings(service) {
            Ok(ports) => ports,
            Err(problem) => {
                problems.push(format!("{name}: {problem}"));
                continue;
            }
        };
        nodes.push((name.to_owned(), RedisConf::load(bind_source(&conf.source)), ports));
    }
    nodes
}

// ------------------------------------------------------------------------------------------------
// The checks.

#[test]
fn compose_defines_six_redis_nodes() {
    let compose = Compose::load();
    let nodes: Vec<&str> = compose.redis_nodes().into_iter().map(|(name, _)| name).collect();
    let mut problems = Vec::new();
    if nodes.len() != NODE_PORTS.len() {
        problems.push(format!(
            "expected 6 services running redis-server (3 masters + 3 replicas), found {nodes:?}"
        ));
    }
    for (name, service) in compose.redis_nodes() {
        match service.get("image").and_then(Value::as_str) {
            Some(image) if image.starts_with("redis:7.0") => {}
            other => problems.push(format!("{name}: image should be redis:7.0, is {other:?}")),
        }
    }
    assert_no_problems(COMPOSE_FILE, &problems);
}

#[test]
fn nodes_publish_ports_6379_to_6384_each_once() {
    let compose = Compose::load();
    let mut problems = Vec::new();
    let mut owners: BTreeMap<u16, Vec<String>> = BTreeMap::new();
    for (name, conf, ports) in nodes_with_confs(&compose, &mut problems) {
        let Ok(port) = conf.port("port") else {
            problems.push(format!("{name}: {} sets no valid `port`", conf.file));
            continue;
        };
        // The announced ports only reach the node if host port == container port.
        for mapping in &ports {
            if mapping.published != Some(mapping.target) {
                problems.push(format!(
                    "{name}: publishes {mapping:?}; the host port must equal the container port, \
                     because the node announces the container port to clients"
                ));
            }
        }
        let published: BTreeSet<u16> = ports.iter().filter_map(|m| m.published).collect();
        let expected = BTreeSet::from([port, port + BUS_PORT_OFFSET]);
        if published != expected {
            problems.push(format!(
                "{name}: publishes host ports {published:?}, expected exactly {expected:?} (client and bus port)"
            ));
        }
        owners.entry(port).or_default().push(name);
    }
    for port in NODE_PORTS {
        match owners.get(&port).map(Vec::as_slice) {
            Some([_]) => {}
            None | Some([]) => problems.push(format!("no redis node publishes port {port}")),
            Some(names) => problems.push(format!("port {port} is published by several nodes: {names:?}")),
        }
    }
    let unexpected: Vec<u16> = owners
        .keys()
        .copied()
        .filter(|port| !NODE_PORTS.contains(port))
        .collect();
    if !unexpected.is_empty() {
        problems.push(format!(
            "redis nodes use client ports {unexpected:?} outside {NODE_PORTS:?}"
        ));
    }
    assert_no_problems(COMPOSE_FILE, &problems);
}

#[test]
fn every_conf_port_matches_its_service_and_announces_it() {
    let compose = Compose::load();
    let mut problems = Vec::new();
    for (name, conf, ports) in nodes_with_confs(&compose, &mut problems) {
        let port = match conf.port("port") {
            Ok(port) => port,
            Err(problem) => {
                problems.push(problem);
                continue;
            }
        };
        if !ports
            .iter()
            .any(|m| m.published == Some(port) && m.target == port)
        {
            problems.push(format!(
                "{name}: {} says `port {port}` but the service does not publish {port}:{port}",
                conf.file
            ));
        }
        for (directive, expected) in [
            ("cluster-announce-port", port),
            ("cluster-announce-bus-port", port + BUS_PORT_OFFSET),
        ] {
            match conf.port(directive) {
                Ok(announced) if announced == expected => {}
                Ok(announced) => problems.push(format!(
                    "{}: `{directive} {announced}`, expected {expected}",
                    conf.file
                )),
                Err(problem) => problems.push(problem),
            }
        }
        if !ports.iter().any(|m| m.published == Some(port + BUS_PORT_OFFSET)) {
            problems.push(format!(
                "{name}: does not publish its cluster bus port {}, so the other nodes cannot reach the address \
                 it announces",
                port + BUS_PORT_OFFSET
            ));
        }
        if !words(compose.service(&name).and_then(|s| s.get("command")))
            .iter()
            .any(|w| w == "--cluster-announce-ip")
        {
            problems.push(format!("{name}: command sets no --cluster-announce-ip"));
        }
    }
    assert_no_problems(COMPOSE_FILE, &problems);
}

#[test]
fn every_conf_is_mounted_by_exactly_one_service() {
    let compose = Compose::load();
    let confs = conf_files_on_disk();
    let mut problems = Vec::new();
    let expected: Vec<String> = (1..=6).map(|n| format!("redis-cluster-{n}.conf")).collect();
    if confs != expected {
        problems.push(format!(
            "docker/ holds node configs {confs:?}, expected {expected:?}"
        ));
    }
    let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, service) in &compose.services {
        match mounts(service) {
            Ok(mounts) => {
                for mount in mounts.iter().filter(|m| m.kind == "bind") {
                    users
                        .entry(bind_source(&mount.source).to_owned())
                        .or_default()
                        .push(name.clone());
                }
            }
            Err(problem) => problems.push(format!("{name}: {problem}")),
        }
    }
    for conf in &confs {
        match users.get(conf).map(Vec::as_slice) {
            Some([_]) => {}
            None | Some([]) => problems.push(format!("{conf} is mounted by no service")),
            Some(names) => problems.push(format!("{conf} is mounted by several services: {names:?}")),
        }
    }
    for source in users
        .keys()
        .filter(|s| s.ends_with(".conf") && !confs.contains(s))
    {
        problems.push(format!("a service mounts {source}, which is not in docker/"));
    }
    assert_no_problems(COMPOSE_FILE, &problems);
}

#[test]
fn init_service_creates_the_cluster_from_all_six_healthy_nodes() {
    let compose = Compose::load();
    let mut problems = Vec::new();
    let creators: Vec<&(String, Value)> = compose
        .services
        .iter()
        .filter(|(_, service)| {
            let script = [words(service.get("entrypoint")), words(service.get("command"))]
                .concat()
                .join(" ");
            script.contains("--cluster create")
        })
        .collect();
    let [(name, init)] = creators.as_slice() else {
        let names: Vec<&str> = creators.iter().map(|(name, _)| name.as_str()).collect();
        panic!(
            "{COMPOSE_FILE}: expected exactly one service running `redis-cli --cluster create`, found {names:?}"
        );
    };
    let script = [words(init.get("entrypoint")), words(init.get("command"))]
        .concat()
        .join(" ");
    // The create command runs from `--cluster create` to its last option.
    let create = script.split_once("--cluster create").map_or("", |(_, rest)| rest);
    let create = create
        .find("--cluster-yes")
        .map_or(create, |end| &create[..end + "--cluster-yes".len()]);
    for needle in ["--cluster-replicas 1", "--cluster-yes"] {
        if !create.contains(needle) {
            problems.push(format!("{name}: the create command lacks `{needle}`: {create:?}"));
        }
    }
    let listed: BTreeSet<u16> = create
        .split(|c: char| c.is_whitespace() || c == '"' || c == '\'')
        .filter_map(|word| word.rsplit_once(':')?.1.parse().ok())
        .collect();
    for port in NODE_PORTS {
        if !listed.contains(&port) {
            problems.push(format!(
                "{name}: the create command does not list the node on port {port}; it lists ports {listed:?}"
            ));
        }
    }
    let waits_for = depends_on(init);
    for (node, _) in compose.redis_nodes() {
        match waits_for.get(node).map(String::as_str) {
            Some("service_healthy") => {}
            other => problems.push(format!(
                "{name}: must wait for {node} with `condition: service_healthy`, has {other:?}"
            )),
        }
    }
    assert_no_problems(COMPOSE_FILE, &problems);
}

#[test]
fn every_service_has_a_healthcheck() {
    let compose = Compose::load();
    let mut problems = Vec::new();
    for (name, service) in &compose.services {
        let Some(check) = service.get("healthcheck") else {
            problems.push(format!("{name}: no healthcheck"));
            continue;
        };
        let test = words(check.get("test"));
        let disabled = check.get("disable").and_then(Value::as_bool) == Some(true);
        if disabled || test.is_empty() || test == ["NONE"] {
            problems.push(format!(
                "{name}: the healthcheck runs nothing (test {test:?}, disable {disabled})"
            ));
        }
    }
    assert_no_problems(COMPOSE_FILE, &problems);
}

#[test]
fn every_redis_node_persists_to_its_own_volume_on_the_cluster_network() {
    let compose = Compose::load();
    let mut problems = Vec::new();
    let declared_volumes = compose
        .root
        .get("volumes")
        .and_then(Value::as_mapping)
        .cloned()
        .unwrap_or_default();
    let declared_networks = compose
        .root
        .get("networks")
        .and_then(Value::as_mapping)
        .cloned()
        .unwrap_or_default();
    let mut volume_owners: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for (name, service) in compose.redis_nodes() {
        match mounts(service) {
            Ok(mounts) => match mounts.iter().find(|m| m.target == "/data") {
                Some(m) if m.kind == "volume" && declared_volumes.contains_key(m.source.as_str()) => {
                    volume_owners.entry(m.source.clone()).or_default().push(name);
                }
                Some(m) => problems.push(format!(
                    "{name}: /data is {m:?}, expected a volume declared under `volumes:`"
                )),
                None => problems.push(format!(
                    "{name}: nothing is mounted at /data, so its data dies with the container"
                )),
            },
            Err(problem) => problems.push(format!("{name}: {problem}")),
        }
    }
    for (volume, owners) in &volume_owners {
        if owners.len() > 1 {
            problems.push(format!(
                "volume {volume} is shared by {owners:?}; every node needs its own"
            ));
        }
    }
    for (name, service) in &compose.services {
        let networks: Vec<String> = match service.get("networks") {
            Some(Value::Sequence(names)) => names
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            Some(Value::Mapping(map)) => map.keys().filter_map(Value::as_str).map(str::to_owned).collect(),
            _ => Vec::new(),
        };
        if networks.is_empty()
            || networks
                .iter()
                .any(|n| !declared_networks.contains_key(n.as_str()))
        {
            problems.push(format!(
                "{name}: networks {networks:?}; every service belongs on the file's own network, declared under \
                 `networks:` ({:?})",
                declared_networks.keys().filter_map(Value::as_str).collect::<Vec<_>>()
            ));
        }
    }
    assert_no_problems(COMPOSE_FILE, &problems);
}

#[test]
fn prometheus_mounts_its_config_and_the_alert_rules() {
    let compose = Compose::load();
    let mut problems = Vec::new();
    let prometheus: Vec<&(String, Value)> = compose
        .services
        .iter()
        .filter(|(_, s)| {
            s.get("image")
                .and_then(Value::as_str)
                .is_some_and(|i| i.starts_with("prom/prometheus"))
        })
        .collect();
    let [(name, service)] = prometheus.as_slice() else {
        panic!(
            "{COMPOSE_FILE}: expected exactly one prom/prometheus service, found {}",
            prometheus.len()
        );
    };
    let mounts = mounts(service).unwrap_or_else(|problem| panic!("{name}: {problem}"));
    for (source, target) in [
        ("prometheus.yml", "/etc/prometheus/prometheus.yml"),
        ("../docs/alerts.yml", "/etc/prometheus/alerts.yml"),
    ] {
        if !mounts
            .iter()
            .any(|m| m.kind == "bind" && bind_source(&m.source) == source && m.target == target)
        {
            problems.push(format!(
                "{name}: does not mount {source} at {target}; mounts {mounts:?}"
            ));
        }
    }
    let extra_hosts = words(service.get("extra_hosts"));
    if !extra_hosts
        .iter()
        .any(|h| h == "host.docker.internal:host-gateway" || h == "host.docker.internal=host-gateway")
    {
        problems.push(format!(
            "{name}: needs extra_hosts host.docker.internal:host-gateway to scrape the cache on the host, has \
             {extra_hosts:?}"
        ));
    }
    match port_mappings(service) {
        Ok(ports) if ports.iter().any(|m| m.published == Some(9090)) => {}
        Ok(ports) => problems.push(format!("{name}: should publish port 9090, publishes {ports:?}")),
        Err(problem) => problems.push(format!("{name}: {problem}")),
    }
    assert_no_problems(COMPOSE_FILE, &problems);
}

#[test]
fn redis_commander_is_published_on_8081() {
    let compose = Compose::load();
    let commander = compose.services.iter().find(|(_, s)| {
        s.get("image")
            .and_then(Value::as_str)
            .is_some_and(|i| i.contains("redis-commander"))
    });
    let Some((name, service)) = commander else {
        panic!("{COMPOSE_FILE}: no redis-commander service")
    };
    let ports = port_mappings(service).unwrap_or_else(|problem| panic!("{name}: {problem}"));
    assert!(
        ports.iter().any(|m| m.published == Some(8081)),
        "{COMPOSE_FILE}: {name} should publish port 8081, publishes {ports:?}"
    );
}

#[test]
fn every_conf_has_the_cluster_and_cache_settings() {
    let mut problems = Vec::new();
    let confs = conf_files_on_disk();
    if confs.is_empty() {
        problems.push("docker/ holds no redis-cluster-*.conf".to_owned());
    }
    for file in &confs {
        let conf = RedisConf::load(file);
        conf.expect("cluster-enabled", "yes", &mut problems);
        // Otherwise one failed shard makes every node refuse every key.
        conf.expect("cluster-require-full-coverage", "no", &mut problems);
        conf.expect("cluster-node-timeout", "15000", &mut problems);
        conf.expect("maxmemory-policy", "allkeys-lru", &mut problems);
        conf.expect("appendonly", "yes", &mut problems);
        for name in ["maxmemory", "repl-backlog-size", "cluster-config-file"] {
            if let Err(problem) = conf.single(name) {
                problems.push(problem);
            }
        }
        let replica_limit = conf.directives.iter().any(|(n, v)| {
            n == "client-output-buffer-limit" && v.split_whitespace().next() == Some("replica")
        });
        if !replica_limit {
            problems.push(format!("{file}: no `client-output-buffer-limit replica ...`"));
        }
    }
    assert_no_problems("docker/redis-cluster-*.conf", &problems);
}

#[test]
fn prometheus_config_scrapes_the_cache_and_every_node_and_loads_alerts() {
    let config = parse_yaml(PROMETHEUS_FILE);
    let mut problems = Vec::new();
    let rule_files = words(config.get("rule_files"));
    if !rule_files
        .iter()
        .any(|f| f == "alerts.yml" || f == "/etc/prometheus/alerts.yml")
    {
        problems.push(format!(
            "rule_files is {rule_files:?}, expected it to load alerts.yml"
        ));
    }
    let jobs: Vec<&Mapping> = config
        .get("scrape_configs")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .filter_map(Value::as_mapping)
        .collect();
    let targets = |job: &Mapping| -> Vec<String> {
        job.get("static_configs")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
            .flat_map(|group| words(group.get("targets")))
            .collect()
    };
    let mut names = BTreeSet::new();
    for job in &jobs {
        let name = job.get("job_name").and_then(Value::as_str).unwrap_or("<unnamed>");
        if !names.insert(name) {
            problems.push(format!("job_name {name} is used twice"));
        }
    }
    match jobs
        .iter()
        .find(|job| job.get("job_name").and_then(Value::as_str) == Some(CACHE_JOB))
    {
        Some(job) => {
            if !targets(job).iter().any(|t| t == CACHE_METRICS_TARGET) {
                problems.push(format!(
                    "job {CACHE_JOB} should scrape {CACHE_METRICS_TARGET}, scrapes {:?}",
                    targets(job)
                ));
            }
            let path = job
                .get("metrics_path")
                .and_then(Value::as_str)
                .unwrap_or("/metrics");
            if path != "/metrics" {
                problems.push(format!(
                    "job {CACHE_JOB} scrapes {path}, but the cache serves /metrics"
                ));
            }
        }
        None => problems.push(format!(
            "no scrape job named {CACHE_JOB} (the cache's own /metrics)"
        )),
    }
    let all_targets: Vec<String> = jobs.iter().flat_map(|job| targets(job)).collect();
    for port in NODE_PORTS {
        if !all_targets.iter().any(|t| t.ends_with(&format!(":{port}"))) {
            problems.push(format!("no scrape target for the redis node on port {port}"));
        }
    }
    assert_no_problems(PROMETHEUS_FILE, &problems);
}

// ------------------------------------------------------------------------------------------------
// The parsers above, on inputs the real files do not happen to contain.

#[test]
fn parse_short_port_reads_every_short_syntax() {
    fn check(spec: &str, expected: Result<(Option<u16>, u16), ()>) {
        let got = parse_short_port(spec)
            .map(|m| (m.published, m.target))
            .map_err(|_| ());
        assert_eq!(got, expected, "parse_short_port({spec:?})");
    }
    check("6379", Ok((None, 6379)));
    check("6380:6379", Ok((Some(6380), 6379)));
    check("127.0.0.1:6379:6379", Ok((Some(6379), 6379)));
    check(
        "${REDIS_ANNOUNCE_IP:-172.30.0.1}:16379:16379",
        Ok((Some(16379), 16379)),
    );
    check("6379:6379/tcp", Ok((Some(6379), 6379)));
    check("6379-6384:6379-6384", Err(()));
    check("", Err(()));
}

#[test]
fn redis_conf_parsing_handles_comments_case_and_repeats() {
    fn check(text: &str, name: &str, expected: Result<&str, ()>) {
        let conf = RedisConf::parse("test.conf", text);
        assert_eq!(
            conf.single(name).map_err(|_| ()),
            expected,
            "single({name:?}) of {text:?}"
        );
    }
    check("port 6379\n", "port", Ok("6379"));
    check("  PORT   6380  \n", "port", Ok("6380"));
    check("# port 6379\n", "port", Err(()));
    check("port 1\nport 2\n", "port", Err(()));
    check("save \"\"\n", "save", Ok("\"\""));
    check(
        "client-output-buffer-limit replica 256mb 64mb 60\n",
        "client-output-buffer-limit",
        Ok("replica 256mb 64mb 60"),
    );
}
