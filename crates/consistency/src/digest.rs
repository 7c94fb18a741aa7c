//! Type-aware fingerprints of a key's content, so that a cross-deployment audit compares hashes,
//! lists, sets, sorted sets and streams, not only strings.
//!
//! A fingerprint is the key's type plus a 128-bit digest of its content, read in bounded chunks
//! (`HSCAN`, `SSCAN`, `ZSCAN` with a `COUNT` hint, `LRANGE` and `XRANGE` pages, `GETRANGE` pages for
//! a string too large to read whole): memory stays bounded
//! whatever the key's size, and the two sides are compared without ever holding either whole.
//! Unordered types (hash, set, sorted set) sum a digest per element, so the order in which each
//! server's encoding returns the elements does not matter; lists and streams digest their elements
//! in order. `DUMP` payloads are not compared: two servers holding the same hash can encode it
//! differently (listpack or hash table, in any bucket order), which would report false mismatches.

use std::hash::{Hash, Hasher};

use bytes::Bytes;
use cluster_client::{ClusterClient, Value};

/// Elements asked per page.
const PAGE: i64 = 200;
/// Pages read at most per key, so that a key that keeps changing (or a hostile server that never
/// ends a scan) cannot hold the audit forever. 200 × 50,000 = 10 million elements.
const MAX_PAGES: usize = 50_000;

/// What a key holds, beyond strings: its type and a digest of its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Fingerprint {
    /// The type `TYPE` reports, as a known name.
    pub(crate) kind: &'static str,
    /// Elements digested.
    pub(crate) elements: u64,
    /// The content's digest.
    pub(crate) digest: u128,
}

/// An order-independent (sum) or ordered (chained) 128-bit digest.
#[derive(Default)]
struct Digest {
    sum: u128,
    chain: u128,
    elements: u64,
}

impl Digest {
    /// The 128-bit digest of one element: two SipHash runs with different prefixes. `DefaultHasher::new`
    /// uses fixed keys, so both sides of a comparison (in this process) digest alike.
    fn of(parts: &[&Value]) -> u128 {
        let run = |seed: u8| {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            seed.hash(&mut hasher);
            for part in parts {
                feed(&mut hasher, part);
            }
            hasher.finish()
        };
        (u128::from(run(1)) << 64) | u128::from(run(2))
    }

    fn add_unordered(&mut self, parts: &[&Value]) {
        self.sum = self.sum.wrapping_add(Digest::of(parts));
        self.elements += 1;
    }

    fn add_ordered(&mut self, parts: &[&Value]) {
        let element = Digest::of(parts);
        // Position matters: rotate the running value before mixing in the next element.
        self.chain =
            self.chain.rotate_left(7) ^ element.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835);
        self.elements += 1;
    }

    fn finish(&self, kind: &'static str) -> Fingerprint {
        Fingerprint {
            kind,
            elements: self.elements,
            digest: self.sum ^ self.chain,
        }
    }
}

/// Feeds a reply value into a hasher with its shape, so that `["ab", "c"]` and `["a", "bc"]` differ.
fn feed(hasher: &mut impl Hasher, value: &Value) {
    match value {
        Value::Array(items) => {
            hasher.write_u8(b'*');
            hasher.write_usize(items.len());
            for item in items {
                feed(hasher, item);
            }
        }
        Value::Integer(i) => {
            hasher.write_u8(b':');
            hasher.write_i64(*i);
        }
        Value::Double(d) => {
            // Scores arrive as text over RESP2 and as doubles over RESP3: digest both as text.
            let text = d.to_string();
            hasher.write_u8(b'$');
            hasher.write_usize(text.len());
            hasher.write(text.as_bytes());
        }
        Value::Null => hasher.write_u8(b'_'),
        other => {
            let bytes = other.as_bytes().unwrap_or_default();
            hasher.write_u8(b'$');
            hasher.write_usize(bytes.len());
            hasher.write(bytes);
        }
    }
}

/// The known name of a `TYPE` reply.
fn kind_of(reply: &str) -> Option<&'static str> {
    Some(match reply {
        "string" => "string",
        "hash" => "hash",
        "list" => "list",
        "set" => "set",
        "zset" => "zset",
        "stream" => "stream",
        "none" => "none",
        _ => return None,
    })
}

fn bad(node: &str, command: &str, detail: &str) -> cluster_client::Error {
    cluster_client::Error::Reply {
        node: node.into(),
        command: command.into(),
        detail: detail.into(),
    }
}

/// The fingerprint of a non-string `key` on `node`; `Ok(None)` if the key is gone or is a string
/// (strings are compared by their bytes).
pub(crate) async fn fingerprint(
    client: &ClusterClient,
    node: &str,
    key: &Bytes,
) -> Result<Option<Fingerprint>, cluster_client::Error> {
    let key_arg = || Value::Bytes(key.clone());
    let reply: String = client.node_command(node, vec!["TYPE".into(), key_arg()]).await?;
    let kind = kind_of(&reply).ok_or_else(|| bad(node, "TYPE", &format!("unknown type {reply}")))?;
    let mut digest = Digest::default();
    match kind {
        "none" | "string" => Ok(None),
        "hash" | "set" | "zset" => {
            let command = match kind {
                "hash" => "HSCAN",
                "set" => "SSCAN",
                _ => "ZSCAN",
            };
            let stride = if kind == "set" { 1 } else { 2 };
            let mut cursor = String::from("0");
            for _ in 0..MAX_PAGES {
                let args = vec![
                    command.into(),
                    key_arg(),
                    cursor.as_str().into(),
                    "COUNT".into(),
                    Value::Integer(PAGE),
                ];
                let reply: Value = client.node_command(node, args).await?;
                let Value::Array(mut parts) = reply else {
                    return Err(bad(node, command, "not an array"));
                };
                let items = match parts.pop() {
                    Some(Value::Array(items)) if parts.len() == 1 => items,
                    _ => return Err(bad(node, command, "not a [cursor, items] pair")),
                };
                for element in items.chunks(stride) {
                    let element: Vec<&Value> = element.iter().collect();
                    digest.add_unordered(&element);
                }
                cursor = parts[0]
                    .as_string()
                    .ok_or_else(|| bad(node, command, "bad cursor"))?;
                if cursor == "0" {
                    return Ok(Some(digest.finish(kind)));
                }
            }
            Err(bad(node, command, "the scan did not end within its page limit"))
        }
        "list" => {
            let mut start = 0i64;
            for _ in 0..MAX_PAGES {
                let args = vec![
                    "LRANGE".into(),
                    key_arg(),
                    Value::Integer(start),
                    Value::Integer(start + PAGE - 1),
                ];
                let items: Vec<Value> = client.node_command::<Value>(node, args).await?.into_array();
                for item in &items {
                    digest.add_ordered(&[item]);
                }
                if (items.len() as i64) < PAGE {
                    return Ok(Some(digest.finish(kind)));
                }
                start += PAGE;
            }
            Err(bad(node, "LRANGE", "the list did not end within its page limit"))
        }
        _ => {
            // A stream, page by page of entry ids: XRANGE key (last +.
            let mut from = String::from("-");
            for _ in 0..MAX_PAGES {
                let args = vec![
                    "XRANGE".into(),
                    key_arg(),
                    from.as_str().into(),
                    "+".into(),
                    "COUNT".into(),
                    Value::Integer(PAGE),
                ];
                let entries: Vec<Value> = client.node_command::<Value>(node, args).await?.into_array();
                for entry in &entries {
                    digest.add_ordered(&[entry]);
                }
                let last = entries.last().and_then(|e| match e {
                    Value::Array(parts) => parts.first().and_then(Value::as_string),
                    _ => None,
                });
                match last {
                    Some(id) if entries.len() as i64 == PAGE => from = format!("({id}"),
                    _ => return Ok(Some(digest.finish(kind))),
                }
            }
            Err(bad(
                node,
                "XRANGE",
                "the stream did not end within its page limit",
            ))
        }
    }
}

/// The fingerprint of a string of `len` bytes too large to read whole, digested in pages of
/// `GETRANGE`.
pub(crate) async fn string_fingerprint(
    client: &ClusterClient,
    node: &str,
    key: &Bytes,
    len: u64,
) -> Result<Fingerprint, cluster_client::Error> {
    const STRING_PAGE: u64 = 64 * 1024;
    let mut digest = Digest::default();
    let mut start = 0;
    for _ in 0..MAX_PAGES {
        if start >= len {
            return Ok(digest.finish("string"));
        }
        let end = (start + STRING_PAGE).min(len) - 1;
        let args = vec![
            "GETRANGE".into(),
            Value::Bytes(key.clone()),
            Value::Integer(start as i64),
            Value::Integer(end as i64),
        ];
        let page: Value = client.node_command(node, args).await?;
        digest.add_ordered(&[&page]);
        start = end + 1;
    }
    Err(bad(
        node,
        "GETRANGE",
        "the string did not end within its page limit",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Value {
        Value::Bytes(Bytes::copy_from_slice(text.as_bytes()))
    }

    fn unordered(elements: &[(&str, &str)]) -> Fingerprint {
        let mut digest = Digest::default();
        for (field, value) in elements {
            digest.add_unordered(&[&v(field), &v(value)]);
        }
        digest.finish("hash")
    }

    fn ordered(elements: &[&str]) -> Fingerprint {
        let mut digest = Digest::default();
        for element in elements {
            digest.add_ordered(&[&v(element)]);
        }
        digest.finish("list")
    }

    #[test]
    fn hashes_compare_by_content_in_any_order() {
        let a = unordered(&[("f1", "x"), ("f2", "y")]);
        assert_eq!(a, unordered(&[("f2", "y"), ("f1", "x")]));
        assert_ne!(a, unordered(&[("f1", "x")]), "a missing field");
        assert_ne!(a, unordered(&[("f1", "x"), ("f2", "z")]), "a changed value");
        assert_ne!(
            unordered(&[("ab", "c")]),
            unordered(&[("a", "bc")]),
            "boundaries count"
        );
    }

    #[test]
    fn lists_compare_in_order() {
        assert_eq!(ordered(&["a", "b"]), ordered(&["a", "b"]));
        assert_ne!(ordered(&["a", "b"]), ordered(&["b", "a"]));
        assert_ne!(ordered(&["a", "b"]), ordered(&["a"]));
        assert_ne!(ordered(&["a", "a"]), ordered(&[]), "repeats do not cancel out");
    }

    #[test]
    fn types_are_known_by_name() {
        assert_eq!(kind_of("hash"), Some("hash"));
        assert_eq!(kind_of("stream"), Some("stream"));
        assert_eq!(kind_of("ReJSON-RL"), None);
    }
}
