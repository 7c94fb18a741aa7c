//! A ketama consistent-hash ring that places keys exactly as libmemcached and twemproxy do.

use std::fmt;

use md5::{Digest, Md5};

use crate::nodes::Nodes;
use crate::{Error, Sharder};

/// Points each node gets at equal weights: 40 md5 digests × 4 points per digest.
const POINTS_PER_SERVER: u32 = 160;
/// Ring points cut from one md5 digest (four little-endian `u32`s).
const POINTS_PER_HASH: u32 = 4;
/// libmemcached and twemproxy leave the port out of the point strings of nodes on memcached's port.
const DEFAULT_MEMCACHED_PORT_SUFFIX: &str = ":11211";

/// A weighted ketama ring over standalone nodes, compatible with libmemcached 1.x in
/// `MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED` mode and with twemproxy's `distribution: ketama` + `hash: md5`.
///
/// Built from the same ordered `host:port` list and weights a libmemcached or twemproxy user has
/// today, it sends every key to the same node they do, so moving to this crate starts with a warm
/// cache. The details that make this exact:
///
/// - every node gets `floor(weight / total × 40 × node_count) × 4` points, computed in `f32` exactly as
///   the C code does (so 25 nodes of equal weight get 156 points each, not 160);
/// - the points of a node are the four little-endian `u32`s of `md5("host:port-i")`, `i` from 0, with
///   `:11211` left out (`"host-i"`);
/// - a key hashes to the first four bytes of `md5(key)`, little-endian, and belongs to the node of the
///   first point at or after that hash, wrapping to the first point.
///
/// Node names are the strings hashed. For a twemproxy server configured with a name
/// (`127.0.0.1:6379:1 cache-a`) twemproxy hashes the name, so pass the name here.
///
/// If points of two nodes collide (about 1 in 10,000 rings of 6 nodes), libmemcached and twemproxy
/// leave their order to `qsort`; this ring puts the lower node index first.
///
/// ```
/// use sharding::KetamaRing;
///
/// let ring = KetamaRing::new([
///     ("10.0.0.1:6379".to_string(), 1),
///     ("10.0.0.2:6379".to_string(), 1),
///     ("10.0.0.3:6379".to_string(), 2),
/// ])?;
/// let node = ring.node_for(b"user:42");
/// assert!(node.starts_with("10.0.0."));
/// assert_eq!(ring.point_count_of(2), 2 * ring.point_count_of(0)); // Twice the weight, twice the points.
/// # Ok::<(), sharding::Error>(())
/// ```
#[derive(Clone)]
pub struct KetamaRing {
    nodes: Nodes,
    /// Ring points in ascending order.
    points: Vec<u32>,
    /// `owners[i]` is the node index owning `points[i]`.
    owners: Vec<u32>,
    /// Number of points of each node.
    point_counts: Vec<u32>,
    /// `buckets[b]` is the index of the first point `>= b << bucket_shift`; it narrows each search to
    /// the one or two points sharing the hash's top bits.
    buckets: Vec<u32>,
    bucket_shift: u32,
}

impl KetamaRing {
    /// The most nodes a ring accepts (a ring of 10,000 nodes holds 1.6 million points).
    pub const MAX_NODES: usize = 10_000;

    /// Builds the ring from `(host:port, weight)` pairs, in server order (order matters for exact
    /// placement only when points collide, and for node indices).
    ///
    /// Fails on an empty list, an empty or repeated name, a weight of 0, more than
    /// [`MAX_NODES`](KetamaRing::MAX_NODES) nodes, or a weight so small next to the rest that
    /// libmemcached would give that node no points at all.
    pub fn new(nodes: impl IntoIterator<Item = (String, u32)>) -> Result<KetamaRing, Error> {
        let nodes = Nodes::validate(nodes, KetamaRing::MAX_NODES)?;
        let node_count = nodes.names.len();
        let mut point_counts = Vec::with_capacity(node_count);
        for (name, &weight) in nodes.names.iter().zip(&nodes.weights) {
            let count = points_for(weight, nodes.total_weight, node_count);
            if count == 0 {
                return Err(Error::WeightTooSmall {
                    node: name.clone(),
                    weight,
                    total_weight: nodes.total_weight,
                });
            }
            point_counts.push(count);
        }

        let total_points: usize = point_counts.iter().map(|&c| c as usize).sum();
        let mut ring: Vec<(u32, u32)> = Vec::with_capacity(total_points);
        for (index, (name, &count)) in nodes.names.iter().zip(&point_counts).enumerate() {
            let base = name.strip_suffix(DEFAULT_MEMCACHED_PORT_SUFFIX).unwrap_or(name);
            let mut point_string = String::with_capacity(base.len() + 8);
            for digest_index in 0..count / POINTS_PER_HASH {
                point_string.clear();
                point_string.push_str(base);
                point_string.push('-');
                point_string.push_str(&digest_index.to_string());
                let digest: [u8; 16] = Md5::digest(point_string.as_bytes()).into();
                for word in digest.chunks_exact(4) {
                    let point = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
                    // Node indices are below MAX_NODES, so they fit in u32.
                    ring.push((point, index as u32));
                }
            }
        }
        ring.sort_unstable();

        let points: Vec<u32> = ring.iter().map(|&(point, _)| point).collect();
        let owners: Vec<u32> = ring.iter().map(|&(_, owner)| owner).collect();
        let bucket_bits = points.len().max(2).ilog2().min(24);
        let bucket_shift = 32 - bucket_bits;
        let buckets: Vec<u32> = (0..=(1u64 << bucket_bits))
            .map(|bucket| {
                let floor = bucket << bucket_shift;
                // At most 1.6 million points, so the index fits in u32.
                points.partition_point(|&point| u64::from(point) < floor) as u32
            })
            .collect();
        Ok(KetamaRing {
            nodes,
            points,
            owners,
            point_counts,
            buckets,
            bucket_shift,
        })
    }

    /// The name (`host:port`) of the node `key` belongs to.
    #[inline]
    pub fn node_for(&self, key: &[u8]) -> &str {
        &self.nodes.names[self.node_index_for(key)]
    }

    /// The index (position in the list given to [`new`](KetamaRing::new)) of the node `key` belongs to.
    #[inline]
    pub fn node_index_for(&self, key: &[u8]) -> usize {
        self.node_index_for_hash(KetamaRing::key_hash(key))
    }

    /// The index of the node owning ring position `hash` (from [`key_hash`](KetamaRing::key_hash)).
    #[inline]
    pub fn node_index_for_hash(&self, hash: u32) -> usize {
        let bucket = (hash >> self.bucket_shift) as usize;
        let low = self.buckets[bucket] as usize;
        let high = self.buckets[bucket + 1] as usize;
        let found = low + self.points[low..high].partition_point(|&point| point < hash);
        // Past the last point the ring wraps around to the first.
        let position = if found == self.points.len() { 0 } else { found };
        self.owners[position] as usize
    }

    /// A key's position on the ring: the first four bytes of its md5 digest, little-endian
    /// (libmemcached's and twemproxy's `hash: md5`).
    #[inline]
    pub fn key_hash(key: &[u8]) -> u32 {
        let digest: [u8; 16] = Md5::digest(key).into();
        u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]])
    }

    /// The nodes as `(name, weight)`, in the order given.
    pub fn nodes(&self) -> impl ExactSizeIterator<Item = (&str, u32)> + '_ {
        self.nodes
            .names
            .iter()
            .map(String::as_str)
            .zip(self.nodes.weights.iter().copied())
    }

    /// Number of nodes.
    pub fn node_count(&self) -> usize {
        self.nodes.names.len()
    }

    /// Number of ring points node `node` got (0 for an unknown index).
    pub fn point_count_of(&self, node: usize) -> usize {
        self.point_counts.get(node).map_or(0, |&c| c as usize)
    }

    /// The ring with `name` appended at `weight` (what a newly added server does in libmemcached).
    pub fn with_node(&self, name: &str, weight: u32) -> Result<KetamaRing, Error> {
        let nodes = self
            .owned_nodes()
            .chain(std::iter::once((name.to_string(), weight)));
        KetamaRing::new(nodes)
    }

    /// The ring without node `name`; the others keep their order.
    pub fn without_node(&self, name: &str) -> Result<KetamaRing, Error> {
        self.find(name)?;
        KetamaRing::new(self.owned_nodes().filter(|(node, _)| node != name))
    }

    /// The ring with node `name` at a new weight.
    pub fn with_weight(&self, name: &str, weight: u32) -> Result<KetamaRing, Error> {
        self.find(name)?;
        KetamaRing::new(
            self.owned_nodes()
                .map(|(node, w)| if node == name { (node, weight) } else { (node, w) }),
        )
    }

    fn find(&self, name: &str) -> Result<usize, Error> {
        self.nodes
            .names
            .iter()
            .position(|node| node == name)
            .ok_or_else(|| Error::UnknownNode {
                node: name.to_string(),
            })
    }

    fn owned_nodes(&self) -> impl Iterator<Item = (String, u32)> + '_ {
        self.nodes().map(|(name, weight)| (name.to_string(), weight))
    }
}

/// libmemcached's `pointer_per_server` in weighted mode, with the same `f32` rounding steps:
/// `floorf((float)(pct * 160 / 4 * (float)n + 0.0000000001)) * 4`, where the constant is a `double`.
fn points_for(weight: u32, total_weight: u64, node_count: usize) -> u32 {
    let pct = weight as f32 / total_weight as f32;
    let per_hash_f32 = pct * POINTS_PER_SERVER as f32 / POINTS_PER_HASH as f32 * node_count as f32;
    let nudged = (f64::from(per_hash_f32) + 0.000_000_000_1) as f32;
    (nudged.floor() as u32).saturating_mul(POINTS_PER_HASH)
}

/// Lists nodes, weights and point counts instead of every ring point.
impl fmt::Debug for KetamaRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for (index, (name, weight)) in self.nodes().enumerate() {
            list.entry(&format_args!(
                "{name} weight {weight} points {}",
                self.point_counts[index]
            ));
        }
        list.finish()
    }
}

impl Sharder for KetamaRing {
    fn shard_count(&self) -> usize {
        self.node_count()
    }

    fn shard_name(&self, shard: usize) -> Option<&str> {
        self.nodes.names.get(shard).map(String::as_str)
    }

    fn shard_weight(&self, shard: usize) -> f64 {
        self.nodes.weights.get(shard).map_or(0.0, |&w| f64::from(w))
    }

    #[inline]
    fn shard_of(&self, key: &[u8]) -> Option<usize> {
        Some(self.node_index_for(key))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn ring(nodes: &[(&str, u32)]) -> Result<KetamaRing, Error> {
        KetamaRing::new(nodes.iter().map(|(n, w)| (n.to_string(), *w)))
    }

    /// The ring as libmemcached builds it, written out the slow and obvious way: every point string,
    /// a sort by (point, index), and a linear scan for the first point at or after the hash.
    fn reference_lookup(nodes: &[(&str, u32)], key: &[u8]) -> usize {
        let total: u64 = nodes.iter().map(|(_, w)| u64::from(*w)).sum();
        let mut ring = Vec::new();
        for (index, (name, weight)) in nodes.iter().enumerate() {
            let base = name.strip_suffix(":11211").unwrap_or(name);
            for i in 0..points_for(*weight, total, nodes.len()) / 4 {
                let digest = Md5::digest(format!("{base}-{i}").as_bytes());
                for x in 0..4 {
                    let point = u32::from_le_bytes(digest[x * 4..x * 4 + 4].try_into().unwrap());
                    ring.push((point, index));
                }
            }
        }
        ring.sort();
        let hash = KetamaRing::key_hash(key);
        ring.iter()
            .find(|(point, _)| *point >= hash)
            .unwrap_or(&ring[0])
            .1
    }

    #[test]
    fn points_per_server_follow_libmemcached_float_steps() {
        fn check(weights: &[u32], expected: &[u32]) {
            let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
            let got: Vec<u32> = weights
                .iter()
                .map(|&w| points_for(w, total, weights.len()))
                .collect();
            assert_eq!(got, expected, "weights {weights:?}");
        }
        check(&[1], &[160]);
        check(&[1, 1, 1], &[160, 160, 160]);
        // 1/25 in f32 is slightly below 0.04, so 0.04 × 40 × 25 lands just under 40 and floors to 39.
        check(&[1; 25], &[156; 25]);
        check(&[1, 2, 3], &[80, 160, 240]);
        check(&[1, 1000], &[0, 316]);
        // libmemcached's weighted test pool (`10.0.1.1:11211 600,...` in its ketama tests), worked out
        // by hand: floor(w / 4300 × 40 × 8) × 4.
        check(
            &[600, 300, 200, 350, 1000, 800, 950, 100],
            &[176, 88, 56, 104, 296, 236, 280, 28],
        );
    }

    #[test]
    fn point_strings_drop_the_memcached_port() {
        let with_port = ring(&[("10.0.0.1:11211", 1), ("10.0.0.2:6379", 1)]).unwrap();
        let key_hash = KetamaRing::key_hash(b"10.0.0.1-0");
        // The first digest of node 0 is md5("10.0.0.1-0"), so its first word is one of node 0's points.
        assert_eq!(with_port.node_index_for_hash(key_hash), 0);
        for key in [&b"a"[..], b"b", b"c", b"d"] {
            assert_eq!(
                with_port.node_index_for(key),
                reference_lookup(&[("10.0.0.1:11211", 1), ("10.0.0.2:6379", 1)], key)
            );
        }
    }

    #[test]
    fn every_construction_error() {
        fn check(nodes: &[(&str, u32)], expected: Error) {
            assert_eq!(ring(nodes).unwrap_err(), expected, "{nodes:?}");
        }
        check(&[], Error::NoNodes);
        check(&[("a:1", 0)], Error::ZeroWeight { node: "a:1".into() });
        check(
            &[("a:1", 1), ("a:1", 1)],
            Error::DuplicateNode { node: "a:1".into() },
        );
        check(&[("", 1)], Error::EmptyNodeName { index: 0 });
        check(
            &[("a:1", 1), ("b:1", 1000)],
            Error::WeightTooSmall {
                node: "a:1".into(),
                weight: 1,
                total_weight: 1001,
            },
        );
        let too_many: Vec<(String, u32)> = (0..=KetamaRing::MAX_NODES)
            .map(|i| (format!("n{i}:1"), 1))
            .collect();
        assert_eq!(
            KetamaRing::new(too_many).unwrap_err(),
            Error::TooManyNodes {
                count: KetamaRing::MAX_NODES + 1,
                max: KetamaRing::MAX_NODES
            }
        );
        let base = ring(&[("a:1", 1)]).unwrap();
        assert_eq!(
            base.without_node("b:1").unwrap_err(),
            Error::UnknownNode { node: "b:1".into() }
        );
        assert_eq!(
            base.with_weight("b:1", 2).unwrap_err(),
            Error::UnknownNode { node: "b:1".into() }
        );
        assert_eq!(base.without_node("a:1").unwrap_err(), Error::NoNodes);
        assert_eq!(
            base.with_node("a:1", 1).unwrap_err(),
            Error::DuplicateNode { node: "a:1".into() }
        );
    }

    #[test]
    fn wraps_past_the_last_point() {
        let ring = ring(&[("a:1", 1), ("b:1", 1), ("c:1", 1)]).unwrap();
        let last = *ring.points.last().unwrap();
        assert_eq!(ring.node_index_for_hash(u32::MAX), ring.owners[0] as usize);
        assert_eq!(
            ring.node_index_for_hash(last),
            *ring.owners.last().unwrap() as usize
        );
        assert_eq!(ring.node_index_for_hash(0), ring.owners[0] as usize);
        assert_eq!(ring.point_count_of(99), 0);
        assert_eq!(
            format!("{ring:?}"),
            "[a:1 weight 1 points 160, b:1 weight 1 points 160, c:1 weight 1 points 160]"
        );
    }

    #[test]
    fn keys_land_in_proportion_to_weights() {
        let weights = [1u32, 2, 3];
        let built = ring(&[("10.0.0.1:6379", 1), ("10.0.0.2:6379", 2), ("10.0.0.3:6379", 3)]).unwrap();
        let mut counts = [0usize; 3];
        for i in 0..60_000 {
            counts[built.node_index_for(format!("key:{i}").as_bytes())] += 1;
        }
        for (node, &count) in counts.iter().enumerate() {
            let expected = 60_000.0 * f64::from(weights[node]) / 6.0;
            let off = (count as f64 - expected).abs() / expected;
            // 80 to 240 points per node keep a ketama ring within about 15% of its weights.
            assert!(
                off < 0.15,
                "node {node}: {count} keys, expected about {expected}: {counts:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn bucketed_lookup_equals_linear_reference(
            weights in proptest::collection::vec(1u32..6, 1..8),
            keys in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..24), 1..30),
        ) {
            let names: Vec<String> = (0..weights.len()).map(|i| format!("10.1.0.{i}:6379")).collect();
            let nodes: Vec<(&str, u32)> = names.iter().map(String::as_str).zip(weights.iter().copied()).collect();
            let built = ring(&nodes).unwrap();
            for key in &keys {
                prop_assert_eq!(built.node_index_for(key), reference_lookup(&nodes, key));
            }
        }

        #[test]
        fn lookup_by_hash_equals_linear_scan(hash in any::<u32>()) {
            let built = ring(&[("a:1", 1), ("b:1", 3), ("c:1", 2), ("d:1", 1)]).unwrap();
            let position = built.points.iter().position(|&p| p >= hash).unwrap_or(0);
            prop_assert_eq!(built.node_index_for_hash(hash), built.owners[position] as usize);
        }
    }
}
