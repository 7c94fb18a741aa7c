//! Redis Cluster key slots: CRC16-XMODEM of the key (or of its hash tag) modulo 16,384.

use std::fmt;
use std::ops::RangeInclusive;

use crate::Error;

/// Number of hash slots in a Redis Cluster.
pub const SLOT_COUNT: u16 = 16_384;

/// The slot Redis Cluster stores `key` in, exactly as `CLUSTER KEYSLOT` answers.
///
/// If the key holds a hash tag (a `{`, then the first `}` after it, with at least one byte between),
/// only the bytes between the braces are hashed, so `{user:42}:name` and `{user:42}:mail` share a slot.
///
/// ```
/// use sharding::key_slot;
///
/// assert_eq!(key_slot(b"{user:42}:name"), key_slot(b"user:42"));
/// assert!(key_slot(b"any key at all") < sharding::SLOT_COUNT);
/// ```
#[inline]
pub fn key_slot(key: &[u8]) -> u16 {
    crc16_xmodem(hash_tag(key)) & (SLOT_COUNT - 1)
}

/// The part of `key` that Redis hashes: the hash tag if the key has a non-empty one, else the whole key.
///
/// This follows `keyHashSlot` in Redis's `cluster.c`: find the first `{`; find the first `}` after
/// it; if there is none, or nothing lies between them, hash the whole key.
///
/// ```
/// use sharding::hash_tag;
///
/// assert_eq!(hash_tag(b"foo{bar}zap"), b"bar");
/// assert_eq!(hash_tag(b"foo{}{bar}"), b"foo{}{bar}");
/// assert_eq!(hash_tag(b"foo{{bar}}zap"), b"{bar");
/// ```
#[inline]
pub fn hash_tag(key: &[u8]) -> &[u8] {
    let Some(open) = memchr::memchr(b'{', key) else {
        return key;
    };
    let after_open = &key[open + 1..];
    match memchr::memchr(b'}', after_open) {
        Some(close) if close > 0 => &after_open[..close],
        _ => key,
    }
}

/// CRC16-XMODEM (polynomial 0x1021, initial value 0, no reflection), the checksum Redis Cluster uses.
///
/// Sixteen bytes are folded per step through sixteen 256-entry tables ("slicing-by-16"), so a
/// 16-byte key costs one step and a 1 KiB key 64; the tables are built at compile time and take 8 KiB.
///
/// ```
/// // The standard check value for CRC16-XMODEM.
/// assert_eq!(sharding::crc16_xmodem(b"123456789"), 0x31C3);
/// ```
#[inline]
pub fn crc16_xmodem(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    let mut chunks = data.chunks_exact(16);
    for chunk in &mut chunks {
        // With a non-reflected CRC the 16-bit register lines up with the next two message bytes, so
        // it is folded into them before the table look-ups: table k holds the CRC of a byte followed
        // by k zero bytes, and byte j of the chunk is followed by 15 - j more.
        let [hi, lo] = crc.to_be_bytes();
        crc = TABLES[15][usize::from(chunk[0] ^ hi)]
            ^ TABLES[14][usize::from(chunk[1] ^ lo)]
            ^ TABLES[13][usize::from(chunk[2])]
            ^ TABLES[12][usize::from(chunk[3])]
            ^ TABLES[11][usize::from(chunk[4])]
            ^ TABLES[10][usize::from(chunk[5])]
            ^ TABLES[9][usize::from(chunk[6])]
            ^ TABLES[8][usize::from(chunk[7])]
            ^ TABLES[7][usize::from(chunk[8])]
            ^ TABLES[6][usize::from(chunk[9])]
            ^ TABLES[5][usize::from(chunk[10])]
            ^ TABLES[4][usize::from(chunk[11])]
            ^ TABLES[3][usize::from(chunk[12])]
            ^ TABLES[2][usize::from(chunk[13])]
            ^ TABLES[1][usize::from(chunk[14])]
            ^ TABLES[0][usize::from(chunk[15])];
    }
    let mut rest = chunks.remainder();
    if rest.len() >= 8 {
        let [hi, lo] = crc.to_be_bytes();
        crc = TABLES[7][usize::from(rest[0] ^ hi)]
            ^ TABLES[6][usize::from(rest[1] ^ lo)]
            ^ TABLES[5][usize::from(rest[2])]
            ^ TABLES[4][usize::from(rest[3])]
            ^ TABLES[3][usize::from(rest[4])]
            ^ TABLES[2][usize::from(rest[5])]
            ^ TABLES[1][usize::from(rest[6])]
            ^ TABLES[0][usize::from(rest[7])];
        rest = &rest[8..];
    }
    for &byte in rest {
        crc = (crc << 8) ^ TABLES[0][usize::from((crc >> 8) as u8 ^ byte)];
    }
    crc
}

/// `TABLES[k][b]` is the CRC register after feeding byte `b` followed by `k` zero bytes.
static TABLES: [[u16; 256]; 16] = crc_tables();

const fn crc_tables() -> [[u16; 256]; 16] {
    const POLY: u16 = 0x1021;
    let mut tables = [[0u16; 256]; 16];
    let mut byte = 0;
    while byte < 256 {
        let mut crc = (byte as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ POLY
            } else {
                crc << 1
            };
            bit += 1;
        }
        tables[0][byte] = crc;
        byte += 1;
    }
    let mut k = 1;
    while k < 16 {
        let mut byte = 0;
        while byte < 256 {
            let prev = tables[k - 1][byte];
            tables[k][byte] = (prev << 8) ^ tables[0][(prev >> 8) as usize];
            byte += 1;
        }
        k += 1;
    }
    tables
}

/// A contiguous, non-empty range of slots, both ends included (as `CLUSTER SLOTS` writes them).
///
/// ```
/// use sharding::SlotRange;
///
/// let range = SlotRange::new(0, 5460)?;
/// assert_eq!(range.len(), 5461);
/// assert_eq!(range.to_string(), "0-5460");
/// assert!(SlotRange::new(10, 9).is_err());
/// # Ok::<(), sharding::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SlotRange {
    start: u16,
    end: u16,
}

impl SlotRange {
    /// The range `start..=end`; fails if `end < start` or `end` is not a slot.
    pub fn new(start: u16, end: u16) -> Result<SlotRange, Error> {
        if end >= SLOT_COUNT {
            return Err(Error::SlotOutOfRange { slot: u32::from(end) });
        }
        if end < start {
            return Err(Error::InvertedSlotRange { start, end });
        }
        Ok(SlotRange { start, end })
    }

    /// The range holding one slot.
    pub fn single(slot: u16) -> Result<SlotRange, Error> {
        SlotRange::new(slot, slot)
    }

    /// All 16,384 slots.
    pub fn all() -> SlotRange {
        SlotRange {
            start: 0,
            end: SLOT_COUNT - 1,
        }
    }

    /// First slot of the range.
    pub fn start(self) -> u16 {
        self.start
    }

    /// Last slot of the range (included).
    pub fn end(self) -> u16 {
        self.end
    }

    /// Number of slots in the range (at least 1).
    #[allow(clippy::len_without_is_empty)] // A `SlotRange` is never empty by construction.
    pub fn len(self) -> usize {
        usize::from(self.end - self.start) + 1
    }

    /// Whether `slot` lies in the range.
    pub fn contains(self, slot: u16) -> bool {
        (self.start..=self.end).contains(&slot)
    }

    /// The slots of the range, in order.
    pub fn slots(self) -> RangeInclusive<u16> {
        self.start..=self.end
    }
}

impl TryFrom<RangeInclusive<u16>> for SlotRange {
    type Error = Error;

    fn try_from(range: RangeInclusive<u16>) -> Result<SlotRange, Error> {
        SlotRange::new(*range.start(), *range.end())
    }
}

impl fmt::Display for SlotRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

/// Collapses ascending slot numbers into ranges (used for reports and plans).
pub(crate) fn ranges_from_sorted(slots: impl IntoIterator<Item = u16>) -> Vec<SlotRange> {
    let mut ranges: Vec<SlotRange> = Vec::new();
    for slot in slots {
        match ranges.last_mut() {
            Some(last) if last.end.checked_add(1) == Some(slot) => last.end = slot,
            _ => ranges.push(SlotRange {
                start: slot,
                end: slot,
            }),
        }
    }
    ranges
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Bit-at-a-time CRC16-XMODEM, straight from the definition, to check the sliced tables against.
    fn crc16_bitwise(data: &[u8]) -> u16 {
        let mut crc: u16 = 0;
        for &byte in data {
            crc ^= u16::from(byte) << 8;
            for _ in 0..8 {
                crc = if crc & 0x8000 != 0 {
                    (crc << 1) ^ 0x1021
                } else {
                    crc << 1
                };
            }
        }
        crc
    }

    fn check_tag(key: &[u8], tag: &[u8]) {
        assert_eq!(
            hash_tag(key),
            tag,
            "hash tag of {:?}",
            String::from_utf8_lossy(key)
        );
        assert_eq!(
            key_slot(key),
            crc16_bitwise(tag) % SLOT_COUNT,
            "slot of {:?}",
            String::from_utf8_lossy(key)
        );
    }

    #[test]
    fn hash_tag_follows_redis_rules() {
        // The cases documented in the Redis Cluster specification, plus every brace edge case.
        let table: &[(&[u8], &[u8])] = &[
            (b"", b""),
            (b"{", b"{"),
            (b"}", b"}"),
            (b"{}", b"{}"),
            (b"}{", b"}{"),
            (b"{a", b"{a"),
            (b"a}", b"a}"),
            (b"{a}", b"a"),
            (b"{user1000}.following", b"user1000"),
            (b"foo{}{bar}", b"foo{}{bar}"),
            (b"foo{{bar}}zap", b"{bar"),
            (b"foo{bar}{zap}", b"bar"),
            (b"{a}{b}", b"a"),
            (b"}{a}", b"a"),
            (b"{{}}", b"{"),
            (b"x{}", b"x{}"),
            ("{ключ}значение".as_bytes(), "ключ".as_bytes()),
            (b"\x00{\xff\xfe}\x00", b"\xff\xfe"),
        ];
        for (key, tag) in table {
            check_tag(key, tag);
        }
    }

    #[test]
    fn crc16_matches_the_bitwise_definition_at_every_length() {
        // Lengths 0..=80 cover every path through the 16- and 8-byte steps and the byte tail.
        let data: Vec<u8> = (0..80u32)
            .map(|i| (i.wrapping_mul(151) ^ (i >> 3)) as u8)
            .collect();
        for len in 0..=data.len() {
            assert_eq!(
                crc16_xmodem(&data[..len]),
                crc16_bitwise(&data[..len]),
                "length {len}"
            );
        }
        assert_eq!(crc16_xmodem(b"123456789"), 0x31C3);
    }

    #[test]
    fn slot_range_rejects_bad_bounds() {
        fn check(start: u16, end: u16, expected: Result<usize, Error>) {
            assert_eq!(
                SlotRange::new(start, end).map(SlotRange::len),
                expected,
                "{start}-{end}"
            );
        }
        check(0, 16_383, Ok(16_384));
        check(7, 7, Ok(1));
        check(8, 7, Err(Error::InvertedSlotRange { start: 8, end: 7 }));
        check(0, 16_384, Err(Error::SlotOutOfRange { slot: 16_384 }));
    }

    #[test]
    fn ranges_collapse_runs() {
        let ranges = ranges_from_sorted([0, 1, 2, 5, 7, 8, 16_383]);
        let shown: Vec<String> = ranges.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["0-2", "5", "7-8", "16383"]);
    }

    proptest! {
        #[test]
        fn tagged_key_hashes_like_its_tag(tag in proptest::collection::vec(any::<u8>().prop_filter("no }", |b| *b != b'}'), 1..40),
                                          rest in proptest::collection::vec(any::<u8>(), 0..40)) {
            let mut key = b"{".to_vec();
            key.extend_from_slice(&tag);
            key.push(b'}');
            key.extend_from_slice(&rest);
            prop_assert_eq!(key_slot(&key), key_slot(&tag));
        }

        #[test]
        fn sliced_crc_equals_bitwise_crc(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(crc16_xmodem(&data), crc16_bitwise(&data));
        }

        #[test]
        fn slot_is_always_in_range(key in proptest::collection::vec(any::<u8>(), 0..100)) {
            prop_assert!(key_slot(&key) < SLOT_COUNT);
        }
    }
}
