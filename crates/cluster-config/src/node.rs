//! Node addresses: parsing `host:port`, `redis://host:port` and `rediss://host:port`.

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

use crate::error::{Error, Problem};

/// The port a node listens on when its address gives none, as in Redis.
pub(crate) const DEFAULT_PORT: u16 = 6379;
/// The port a sentinel listens on unless told otherwise.
pub(crate) const DEFAULT_SENTINEL_PORT: u16 = 26379;

/// The address of one Redis node.
///
/// Displays as `host:port` (`[v6]:port` for an IPv6 address), which is also the form `FromStr`
/// accepts, alongside `redis://host:port`.
///
/// ```
/// use cluster_config::NodeAddr;
///
/// let node: NodeAddr = "redis://10.0.0.7:7001".parse()?;
/// assert_eq!((node.host(), node.port()), ("10.0.0.7", 7001));
/// assert_eq!(node.to_string(), "10.0.0.7:7001");
/// assert_eq!("[::1]:7000".parse::<NodeAddr>()?.host(), "::1");
/// # Ok::<(), cluster_config::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeAddr {
    host: String,
    port: u16,
}

impl NodeAddr {
    /// An address from a host name or IP address (IPv6 without brackets) and a port, as a node reports
    /// them in `CLUSTER SHARDS`. It is not validated: the server said so.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
        }
    }

    /// The host name or IP address, IPv6 without brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// An address as a Redis server prints it in its own replies (`CLUSTER NODES`, `MOVED`, `INFO`):
    /// `host:port`, where an IPv6 host may come without brackets (`::1:7000`), since the port is always
    /// the part after the last colon. `None` when the host is empty or the port is missing, 0 or not a
    /// number: that is how a server writes a node whose address it does not know (`:0`).
    ///
    /// Unlike [`FromStr`], which reads what a person configured and explains every mistake, this reads
    /// what a server announced, so it never fails loudly.
    ///
    /// ```
    /// use cluster_config::NodeAddr;
    ///
    /// assert_eq!(NodeAddr::parse_announced("10.0.0.7:7001"), Some(NodeAddr::new("10.0.0.7", 7001)));
    /// assert_eq!(NodeAddr::parse_announced("::1:7001"), Some(NodeAddr::new("::1", 7001)));
    /// assert_eq!(NodeAddr::parse_announced("[::1]:7001"), Some(NodeAddr::new("::1", 7001)));
    /// assert_eq!(NodeAddr::parse_announced(":0"), None);
    /// ```
    pub fn parse_announced(text: &str) -> Option<NodeAddr> {
        let (host, port) = split_announced(text)?;
        let port = port.parse::<u16>().ok().filter(|port| *port != 0)?;
        (!host.is_empty()).then(|| NodeAddr::new(host, port))
    }

    /// The port of an address a server printed, even when its host is not known yet: a cluster node
    /// that has not met another node prints itself as `:port`. `None` when the port is missing, 0 or
    /// not a number.
    ///
    /// ```
    /// use cluster_config::NodeAddr;
    ///
    /// assert_eq!(NodeAddr::announced_port(":7001"), Some(7001));
    /// assert_eq!(NodeAddr::announced_port("::1:7001"), Some(7001));
    /// assert_eq!(NodeAddr::announced_port(":0"), None);
    /// ```
    pub fn announced_port(text: &str) -> Option<u16> {
        let (_, port) = split_announced(text)?;
        port.parse::<u16>().ok().filter(|port| *port != 0)
    }

    /// The key used to spot duplicates: host names are case-insensitive.
    pub(crate) fn identity(&self) -> (String, u16) {
        (self.host.to_ascii_lowercase(), self.port)
    }
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for NodeAddr {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match parse_node(s) {
            Ok((node, Scheme::Plain)) => Ok(node),
            Ok((_, Scheme::Tls)) => Err(Error::Invalid {
                problems: vec![Problem::general(format!(
                    "node `{}` uses rediss://, which a bare address cannot carry; give `host:port`",
                    s.trim()
                ))],
            }),
            Err(message) => Err(Error::Invalid {
                problems: vec![Problem::general(message)],
            }),
        }
    }
}

/// `host:port` as a server prints it: the port is after the last colon, and an IPv6 host may or may
/// not have brackets.
fn split_announced(text: &str) -> Option<(&str, &str)> {
    let (host, port) = text.trim().rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    Some((host, port))
}

/// Whether a node address asked for TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scheme {
    /// `host:port` or `redis://`.
    Plain,
    /// `rediss://`.
    Tls,
}

/// The largest weight a node may have in the node list (`host:port=weight`).
///
/// Weights only matter for client-side sharding: a ketama ring gives a node points in proportion to its
/// weight, a key-range layout slots in proportion. Operators who weigh nodes by memory in MiB
/// (as libmemcached users often do) stay well below this bound, and it keeps the ring's arithmetic far
/// from overflow.
pub const MAX_NODE_WEIGHT: u32 = 1_000_000;

/// Parses one entry of a node list that may end in `=weight` (`10.0.0.1:6379=3`); without one the
/// weight is 1. Errors name the entry and say how to fix it.
pub(crate) fn parse_weighted_node(entry: &str) -> Result<(NodeAddr, Scheme, u32), String> {
    let trimmed = entry.trim();
    // A host name, an IP address and a port never contain `=`, so the last one starts the weight.
    let Some((address, weight)) = trimmed.rsplit_once('=') else {
        let (node, scheme) = parse_node(trimmed)?;
        return Ok((node, scheme, 1));
    };
    let (node, scheme) = parse_node(address)?;
    let weight = weight.trim();
    match weight.parse::<u64>() {
        Ok(0) => Err(format!(
            "`{trimmed}` has weight 0, which would give the node no keys; use 1 to {MAX_NODE_WEIGHT}, or leave \
             the node out"
        )),
        Ok(w) if w <= u64::from(MAX_NODE_WEIGHT) => Ok((node, scheme, w as u32)),
        Ok(_) => Err(format!(
            "`{trimmed}` has weight {weight}, above the largest weight {MAX_NODE_WEIGHT}; scale every weight \
             down by the same factor"
        )),
        Err(_) => Err(format!(
            "`{trimmed}` has weight `{weight}`, which is not a whole number; write `host:port=weight` with a \
             weight from 1 to {MAX_NODE_WEIGHT}"
        )),
    }
}

/// Parses one entry of a node list. The message of an error names the entry but never repeats
/// anything that looks like credentials.
pub(crate) fn parse_node(entry: &str) -> Result<(NodeAddr, Scheme), String> {
    parse_node_or_port(entry, DEFAULT_PORT)
}

/// Parses one entry of a sentinel list: like [`parse_node`], but a missing port is the sentinel's
/// 26379.
pub(crate) fn parse_sentinel_node(entry: &str) -> Result<(NodeAddr, Scheme), String> {
    parse_node_or_port(entry, DEFAULT_SENTINEL_PORT)
}

fn parse_node_or_port(entry: &str, default_port: u16) -> Result<(NodeAddr, Scheme), String> {
    let entry = entry.trim();
    if entry.is_empty() {
        return Err("an entry is empty; remove the doubled or trailing comma".to_owned());
    }
    if entry.contains('@') {
        // Whatever precedes the '@' is probably a password, so the entry is not repeated.
        return Err(
            "an entry carries credentials (`user:password@`); move them to REDIS_USERNAME and \
                    REDIS_PASSWORD, which are kept secret"
                .to_owned(),
        );
    }
    let (scheme, rest) = match entry.split_once("://") {
        None => (Scheme::Plain, entry),
        Some((scheme, rest)) => match scheme.to_ascii_lowercase().as_str() {
            "redis" => (Scheme::Plain, rest),
            "rediss" => (Scheme::Tls, rest),
            _ => {
                return Err(format!(
                    "`{entry}` has scheme `{scheme}://`; accepted are `host:port`, `redis://host:port` and \
                     `rediss://host:port`"
                ));
            }
        },
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '?', '#']) {
        return Err(format!(
            "`{entry}` has a path or query; give only `host:port` (cluster mode has no database to select)"
        ));
    }
    let (host, port) = split_host_port(entry, rest)?;
    let port = match port {
        None => default_port,
        Some(port) => parse_port(entry, port)?,
    };
    Ok((NodeAddr { host, port }, scheme))
}

fn split_host_port<'a>(entry: &str, rest: &'a str) -> Result<(String, Option<&'a str>), String> {
    if let Some(bracketed) = rest.strip_prefix('[') {
        let Some((host, after)) = bracketed.split_once(']') else {
            return Err(format!(
                "`{entry}` opens `[` without closing it; write IPv6 as `[::1]:6379`"
            ));
        };
        if host.parse::<Ipv6Addr>().is_err() {
            return Err(format!(
                "`{entry}` has `{host}` in brackets, which is not an IPv6 address"
            ));
        }
        return match after {
            "" => Ok((host.to_owned(), None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host.to_owned(), Some(port))),
                None => Err(format!(
                    "`{entry}` has `{after}` after the IPv6 address; expected `:port`"
                )),
            },
        };
    }
    if rest.matches(':').count() > 1 {
        return Err(format!(
            "`{entry}` looks like an IPv6 address; put it in brackets, as in `[::1]:6379`"
        ));
    }
    let (host, port) = match rest.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (rest, None),
    };
    if host.is_empty() {
        return Err(format!("`{entry}` has no host; write `host:port`"));
    }
    if let Some(bad) = host
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
    {
        return Err(format!(
            "`{entry}` has host `{host}` with the character {bad:?}; a host is a DNS name or an IP address"
        ));
    }
    Ok((host.to_owned(), port))
}

fn parse_port(entry: &str, port: &str) -> Result<u16, String> {
    match port.parse::<u16>() {
        Ok(0) => Err(format!(
            "`{entry}` has port 0, which no server listens on; use 1 to 65535"
        )),
        Ok(port) => Ok(port),
        Err(_) => Err(format!(
            "`{entry}` has port `{port}`, which is not a number from 1 to 65535"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(entry: &str, expected: Result<(&str, u16, Scheme), &str>) {
        let actual = parse_node(entry);
        match (actual, expected) {
            (Ok((node, scheme)), Ok((host, port, want_scheme))) => {
                assert_eq!(
                    (node.host(), node.port(), scheme),
                    (host, port, want_scheme),
                    "{entry}"
                );
            }
            (Err(message), Err(fragment)) => {
                assert!(
                    message.contains(fragment),
                    "{entry}: `{message}` lacks `{fragment}`"
                );
            }
            (actual, expected) => panic!("{entry}: got {actual:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn parses_node_entries() {
        check("127.0.0.1:7000", Ok(("127.0.0.1", 7000, Scheme::Plain)));
        check(
            "  cache-1.internal:6380 ",
            Ok(("cache-1.internal", 6380, Scheme::Plain)),
        );
        check("host", Ok(("host", 6379, Scheme::Plain)));
        check("redis://host:7001", Ok(("host", 7001, Scheme::Plain)));
        check("REDIS://host:7001/", Ok(("host", 7001, Scheme::Plain)));
        check("rediss://host", Ok(("host", 6379, Scheme::Tls)));
        check("[::1]:7000", Ok(("::1", 7000, Scheme::Plain)));
        check("redis://[fe80::1]", Ok(("fe80::1", 6379, Scheme::Plain)));
        check("", Err("empty"));
        check("host:0", Err("port 0"));
        check("host:65536", Err("not a number from 1 to 65535"));
        check("host:abc", Err("port `abc`"));
        check("host:", Err("port ``"));
        check(":7000", Err("no host"));
        check("my host:7000", Err("' '"));
        check("::1:7000", Err("brackets"));
        check("[::1:7000", Err("without closing"));
        check("[nope]:7000", Err("not an IPv6 address"));
        check("[::1]x", Err("expected `:port`"));
        check("http://host:80", Err("scheme `http://`"));
        check("redis-cluster://host:80", Err("scheme `redis-cluster://`"));
        check("redis://host:7000/1", Err("path or query"));
        check("redis://host:7000?node=a", Err("path or query"));
    }

    #[test]
    fn weights_follow_the_address() {
        fn check(entry: &str, expected: Result<(&str, u16, u32), &str>) {
            match (parse_weighted_node(entry), expected) {
                (Ok((node, _, weight)), Ok(want)) => {
                    assert_eq!((node.host(), node.port(), weight), want, "{entry}");
                }
                (Err(message), Err(fragment)) => {
                    assert!(
                        message.contains(fragment),
                        "{entry}: `{message}` lacks `{fragment}`"
                    );
                }
                (got, want) => panic!("{entry}: got {got:?}, expected {want:?}"),
            }
        }
        check("10.0.0.1:6379", Ok(("10.0.0.1", 6379, 1)));
        check("10.0.0.1:6379=3", Ok(("10.0.0.1", 6379, 3)));
        check(" redis://h:7000 = 12 ", Ok(("h", 7000, 12)));
        check("[::1]:7000=2", Ok(("::1", 7000, 2)));
        check("h=5", Ok(("h", 6379, 5)));
        check("h:1=1000000", Ok(("h", 1, 1_000_000)));
        check("h:1=0", Err("weight 0"));
        check("h:1=1000001", Err("above the largest weight 1000000"));
        check("h:1=99999999999999999999", Err("not a whole number"));
        check("h:1=-2", Err("not a whole number"));
        check("h:1=", Err("not a whole number"));
        check("h:1=x", Err("not a whole number"));
        check("h:1=2.5", Err("not a whole number"));
        check("h:1=2=3", Err("port `1=2`"));
        check("=3", Err("empty"));
    }

    #[test]
    fn credentials_are_refused_without_being_repeated() {
        for entry in [
            "redis://user:canary-91@host:7000",
            "user:canary-91@host:7000",
            ":canary-91@h",
        ] {
            let message = parse_node(entry).err().unwrap_or_default();
            assert!(message.contains("REDIS_PASSWORD"), "{entry}: {message}");
            assert!(!message.contains("canary-91"), "{entry}: {message}");
        }
    }

    #[test]
    fn display_round_trips() {
        for entry in ["h:1", "10.1.2.3:65535", "[::1]:7000", "[2001:db8::7]:6379"] {
            let node: NodeAddr = entry.parse().expect(entry);
            assert_eq!(node.to_string(), entry);
        }
        assert!("rediss://h:1".parse::<NodeAddr>().is_err());
    }

    #[test]
    fn announced_addresses_parse_or_are_unknown() {
        let check = |text: &str, want: Option<(&str, u16)>| {
            let got = NodeAddr::parse_announced(text);
            assert_eq!(got.as_ref().map(|a| (a.host(), a.port())), want, "{text:?}");
        };
        check("127.0.0.1:30001", Some(("127.0.0.1", 30001)));
        check("host-4:1", Some(("host-4", 1)));
        check("::1:30001", Some(("::1", 30001)));
        check("[2001:db8::7]:6379", Some(("2001:db8::7", 6379)));
        check(":0", None);
        check(":7000", None);
        check("h:0", None);
        check("h:x", None);
        check("h", None);
        check("", None);
        assert_eq!(NodeAddr::announced_port(":7000"), Some(7000));
        assert_eq!(NodeAddr::announced_port("h:x"), None);
    }
}
