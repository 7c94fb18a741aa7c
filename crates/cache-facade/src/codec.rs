//! How values are stored: a serde codec, optional LZ4 compression, and a two-byte frame that also marks
//! remembered absences ("negative" entries) and load leases.
//!
//! Frame: `kind` (`V` value, `N` known absent, `L` lease), then for `V` one byte of codec id (low bits)
//! and a compression flag (`0x80`), then the payload. A lease is `L` and its marker (layout in
//! `lease.rs`).
//!
//! A compressed payload is an LZ4 block after its decompressed size (4 bytes, little-endian). That
//! size comes from whoever wrote the key, so it is checked before anything is allocated: against the
//! cache's decompression limit, and against what the block's length can expand to at all.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;

/// How values are turned into bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Codec {
    /// JSON (serde_json): readable with redis-cli, the default.
    #[default]
    Json,
    /// postcard: compact binary, about 2–4× smaller than JSON for numeric structs. Only with the
    /// `postcard` feature.
    #[cfg(feature = "postcard")]
    Binary,
}

impl Codec {
    fn id(self) -> u8 {
        match self {
            Codec::Json => 1,
            #[cfg(feature = "postcard")]
            Codec::Binary => 2,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Codec::Json => "json",
            #[cfg(feature = "postcard")]
            Codec::Binary => "postcard",
        }
    }

    /// The codec of a stored id, or what is wrong with the id.
    fn from_id(id: u8) -> Result<Codec, String> {
        match id {
            1 => Ok(Codec::Json),
            #[cfg(feature = "postcard")]
            2 => Ok(Codec::Binary),
            #[cfg(not(feature = "postcard"))]
            2 => Err(
                "the value was written with the postcard codec; enable cache-facade's postcard feature \
                      to read it"
                    .into(),
            ),
            _ => Err(format!("unknown codec id {id}")),
        }
    }
}

const VALUE: u8 = b'V';
const ABSENT: u8 = b'N';
const LEASE: u8 = b'L';
const COMPRESSED: u8 = 0x80;
/// No LZ4 block expands more than this: a match length grows by at most 255 per input byte.
#[cfg(feature = "lz4")]
const LZ4_MAX_RATIO: usize = 255;

/// What a stored frame holds.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Stored<'a> {
    Value {
        codec: Codec,
        compressed: bool,
        payload: &'a [u8],
    },
    Absent,
    Lease(&'a [u8]),
}

/// Encodes `value` and frames it; compresses when the encoding is at least `compress_at` bytes. An
/// encoding that would be compressed but is over `decompressed_max` bytes is refused: no reader with
/// the same limit could decompress it.
pub(crate) fn encode<T: Serialize + ?Sized>(
    key: &[u8],
    value: &T,
    codec: Codec,
    compress_at: Option<usize>,
    decompressed_max: usize,
) -> Result<Vec<u8>, Error> {
    // Header first, then the value serialized straight after it: one buffer, no copy.
    let header = vec![VALUE, codec.id()];
    let written = match codec {
        Codec::Json => {
            let mut out = header;
            serde_json::to_writer(&mut out, value)
                .map(|()| out)
                .map_err(|e| e.to_string())
        }
        #[cfg(feature = "postcard")]
        Codec::Binary => postcard::to_extend(value, header).map_err(|e| e.to_string()),
    };
    let out = written.map_err(|detail| Error::Encode {
        key: cluster_client::printable_key(key),
        codec: codec.name(),
        detail,
    })?;
    compress(key, codec, out, compress_at, decompressed_max)
}

/// Without LZ4 nothing is compressed: the configuration has no `compress_at_bytes` to set.
#[cfg(not(feature = "lz4"))]
fn compress(
    _key: &[u8],
    _codec: Codec,
    frame: Vec<u8>,
    _compress_at: Option<usize>,
    _decompressed_max: usize,
) -> Result<Vec<u8>, Error> {
    Ok(frame)
}

/// The frame `out` with its payload LZ4-compressed in place when it is at least `compress_at` bytes;
/// refused when no reader with the same `decompressed_max` could decompress it.
#[cfg(feature = "lz4")]
fn compress(
    key: &[u8],
    codec: Codec,
    mut out: Vec<u8>,
    compress_at: Option<usize>,
    decompressed_max: usize,
) -> Result<Vec<u8>, Error> {
    if compress_at.is_some_and(|at| out.len() - 2 >= at) {
        if out.len() - 2 > decompressed_max {
            return Err(Error::Encode {
                key: cluster_client::printable_key(key),
                codec: codec.name(),
                detail: format!(
                    "the encoding is {} bytes, over the decompression limit of {decompressed_max} bytes; \
                     raise CacheConfig::decompressed_max_bytes or store a smaller value",
                    out.len() - 2
                ),
            });
        }
        let compressed = lz4_flex::compress_prepend_size(&out[2..]);
        out.truncate(2);
        out[1] |= COMPRESSED;
        out.extend_from_slice(&compressed);
    }
    Ok(out)
}

/// The frame of a remembered absence.
pub(crate) fn absent() -> Vec<u8> {
    vec![ABSENT]
}

/// Whether the bytes after a frame's `L` have a lease marker's shape (see lease.rs, whose take script
/// checks the same): 16 alphanumeric token bytes, a 16-digit expiry, and an optional 24-byte tombstone.
fn is_lease_marker(rest: &[u8]) -> bool {
    (rest.len() == 32 || rest.len() == 56)
        && rest[..16].iter().all(u8::is_ascii_alphanumeric)
        && rest[16..32].iter().all(u8::is_ascii_digit)
}

/// Reads a frame; bytes not written by this cache are a decode error naming the key.
pub(crate) fn parse<'a>(key: &[u8], bytes: &'a [u8], wanted: &'static str) -> Result<Stored<'a>, Error> {
    let bad = |detail: String| Error::Decode {
        key: cluster_client::printable_key(key),
        wanted,
        detail,
    };
    match bytes {
        [ABSENT] => Ok(Stored::Absent),
        // Only a marker's exact shape is a lease (see lease.rs: token and expiry, and an optional
        // tombstone); other bytes starting with 'L' are foreign.
        [LEASE, rest @ ..] if is_lease_marker(rest) => Ok(Stored::Lease(rest)),
        [VALUE, flags, payload @ ..] => {
            let codec = Codec::from_id(flags & !COMPRESSED).map_err(bad)?;
            Ok(Stored::Value {
                codec,
                compressed: flags & COMPRESSED != 0,
                payload,
            })
        }
        _ => Err(bad(
            "the bytes were not written by this cache (no frame header)".into()
        )),
    }
}

/// Decodes a framed value as `T`; a compressed payload may expand to at most `decompressed_max` bytes.
pub(crate) fn decode<T: DeserializeOwned>(
    key: &[u8],
    codec: Codec,
    compressed: bool,
    payload: &[u8],
    decompressed_max: usize,
) -> Result<T, Error> {
    let wanted = std::any::type_name::<T>();
    let bad = |detail: String| Error::Decode {
        key: cluster_client::printable_key(key),
        wanted,
        detail,
    };
    let inflated;
    let raw = if compressed {
        inflated = decompress(payload, decompressed_max).map_err(bad)?;
        &inflated[..]
    } else {
        payload
    };
    match codec {
        Codec::Json => serde_json::from_slice(raw).map_err(|e| bad(format!("json: {e}"))),
        #[cfg(feature = "postcard")]
        Codec::Binary => postcard::from_bytes(raw).map_err(|e| bad(format!("postcard: {e}"))),
    }
}

/// Without LZ4 a compressed value cannot be read: a typed error says which feature reads it.
#[cfg(not(feature = "lz4"))]
fn decompress(_payload: &[u8], _max: usize) -> Result<Vec<u8>, String> {
    Err("the value is LZ4-compressed; enable cache-facade's lz4 feature to read it".into())
}

/// Decompresses a size-prefixed LZ4 block, checking the declared size before allocating for it.
#[cfg(feature = "lz4")]
fn decompress(payload: &[u8], max: usize) -> Result<Vec<u8>, String> {
    let (declared, block) =
        lz4_flex::block::uncompressed_size(payload).map_err(|e| format!("corrupt compressed data: {e}"))?;
    if declared > max {
        return Err(format!(
            "the compressed data declares {declared} bytes, over the decompression limit of {max} bytes \
             (CacheConfig::decompressed_max_bytes)"
        ));
    }
    let possible = block.len().saturating_mul(LZ4_MAX_RATIO);
    if declared > possible {
        return Err(format!(
            "the compressed data declares {declared} bytes, more than its {} bytes can expand to",
            block.len()
        ));
    }
    let mut out = vec![0; declared];
    let written = lz4_flex::block::decompress_into(block, &mut out)
        .map_err(|e| format!("corrupt compressed data: {e}"))?;
    if written != declared {
        return Err(format!(
            "the compressed data declares {declared} bytes but holds {written}"
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Every codec this build has.
    const CODECS: &[Codec] = &[
        Codec::Json,
        #[cfg(feature = "postcard")]
        Codec::Binary,
    ];

    /// The decompression limit of these tests: the default's 64 MiB.
    const MAX: usize = 64 * 1024 * 1024;

    #[cfg(any(feature = "postcard", feature = "lz4"))]
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct User {
        id: u64,
        name: String,
        tags: Vec<String>,
    }

    fn check<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(
        value: T,
        codec: Codec,
        compress_at: Option<usize>,
        compressed: bool,
    ) {
        let bytes = encode(b"k", &value, codec, compress_at, MAX).unwrap();
        match parse(b"k", &bytes, "T").unwrap() {
            Stored::Value {
                codec: c,
                compressed: z,
                payload,
            } => {
                assert_eq!((c, z), (codec, compressed));
                assert_eq!(decode::<T>(b"k", c, z, payload, MAX).unwrap(), value);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn round_trips() {
        check(42u32, Codec::Json, None, false);
        #[cfg(feature = "postcard")]
        {
            check("héllo".to_string(), Codec::Binary, Some(1024), false);
            check(
                User {
                    id: 1,
                    name: "a".into(),
                    tags: vec![],
                },
                Codec::Binary,
                None,
                false,
            );
        }
        #[cfg(feature = "lz4")]
        {
            let user = User {
                id: 7,
                name: "Ada ✓".into(),
                tags: vec!["x".repeat(3000)],
            };
            check(user, Codec::Json, Some(1024), true);
        }
        assert_eq!(parse(b"k", &absent(), "T").unwrap(), Stored::Absent);
        let marker = b"Labcdefghijklmnop0000001700000000";
        assert_eq!(parse(b"k", marker, "T").unwrap(), Stored::Lease(&marker[1..]));
        assert!(matches!(
            parse(b"k", b"London calling", "T"),
            Err(Error::Decode { .. })
        ));
    }

    #[test]
    fn foreign_and_mismatched_bytes_are_typed_errors() {
        assert!(matches!(
            parse(b"k", b"plain redis value", "u32"),
            Err(Error::Decode { .. })
        ));
        assert!(matches!(parse(b"k", b"", "u32"), Err(Error::Decode { .. })));
        assert!(matches!(
            parse(b"k", &[b'V', 9, 1], "u32"),
            Err(Error::Decode { .. })
        ));
        let bytes = encode(b"k", "text", Codec::Json, None, MAX).unwrap();
        let Stored::Value {
            codec,
            compressed,
            payload,
        } = parse(b"k", &bytes, "u32").unwrap()
        else {
            panic!()
        };
        let error = decode::<u32>(b"k", codec, compressed, payload, MAX).unwrap_err();
        assert!(
            error.to_string().contains("u32") && error.to_string().contains("left untouched"),
            "{error}"
        );
    }

    /// A compressed payload (size prefix and block) declaring `declared` bytes.
    fn declaring(declared: u32, block: &[u8]) -> Vec<u8> {
        let mut payload = declared.to_le_bytes().to_vec();
        payload.extend_from_slice(block);
        payload
    }

    #[cfg(feature = "lz4")]
    #[test]
    fn declared_sizes_are_checked_before_allocating() {
        let check = |payload: &[u8], max: usize, want: &str| {
            let error = decode::<String>(b"k", Codec::Json, true, payload, max).unwrap_err();
            assert!(
                matches!(&error, Error::Decode { detail, .. } if detail.contains(want)),
                "{payload:02x?}: {error}"
            );
        };
        // A hostile 4 GiB prefix in front of 5 bytes: refused by the limit, then by the ratio.
        check(
            &declaring(u32::MAX, &[0x10, b'x', 0, 0, 0]),
            MAX,
            "decompression limit",
        );
        check(
            &declaring(u32::MAX, &[0x10, b'x', 0, 0, 0]),
            usize::MAX,
            "can expand to",
        );
        // A prefix that is smaller or larger than the data: never trusted, never a panic.
        let real = lz4_flex::compress_prepend_size(b"\"some text, some text, some text\"");
        let mut short = real.clone();
        short[..4].copy_from_slice(&3u32.to_le_bytes());
        check(&short, MAX, "corrupt compressed data");
        let mut long = real.clone();
        long[..4].copy_from_slice(&40u32.to_le_bytes());
        check(&long, MAX, "holds");
        check(&[1, 0], MAX, "corrupt compressed data");
        assert_eq!(
            decode::<String>(b"k", Codec::Json, true, &real, MAX).unwrap(),
            "some text, some text, some text"
        );
    }

    #[cfg(all(feature = "lz4", feature = "postcard"))]
    #[test]
    fn the_most_compressible_values_still_decode() {
        // Zeros compress at LZ4's best ratio: the plausibility bound must not refuse them.
        let zeros = vec![0u8; 4 * 1024 * 1024];
        check(zeros, Codec::Binary, Some(1024), true);
    }

    #[cfg(feature = "lz4")]
    #[test]
    fn encodings_over_the_decompression_limit_are_refused_on_write() {
        let big = "x".repeat(5_000);
        let error = encode(b"k", &big, Codec::Json, Some(1024), 4_096).unwrap_err();
        assert!(
            matches!(&error, Error::Encode { detail, .. } if detail.contains("decompression limit")),
            "{error}"
        );
        // Uncompressed values are bounded by the value size limit instead.
        assert!(encode(b"k", &big, Codec::Json, None, 4_096).is_ok());
    }

    proptest! {
        /// Whatever bytes are stored, parsing and decoding answer with a value or a typed error.
        #[test]
        fn arbitrary_stored_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(Stored::Value { codec, compressed, payload }) = parse(b"k", &bytes, "T") {
                let _ = decode::<Vec<String>>(b"k", codec, compressed, payload, MAX);
                let _ = decode::<u64>(b"k", codec, compressed, payload, MAX);
            }
        }

        /// Arbitrary compressed payloads behind a compressed-value header never panic either.
        #[test]
        fn arbitrary_compressed_payloads_never_panic(declared: u32, block in proptest::collection::vec(any::<u8>(), 0..256)) {
            let payload = declaring(declared, &block);
            for &codec in CODECS {
                let _ = decode::<String>(b"k", codec, true, &payload, MAX);
            }
        }
    }

    /// Without a feature, what it would read is a decode error naming the feature, never a panic.
    #[test]
    fn values_of_a_left_out_feature_are_typed_errors() {
        let compressed = [&[b'V', 1 | COMPRESSED][..], &declaring(8, b"\x80junk")].concat();
        let read = parse(b"k", &compressed, "String").and_then(|stored| match stored {
            Stored::Value {
                codec,
                compressed,
                payload,
            } => decode::<String>(b"k", codec, compressed, payload, MAX),
            other => panic!("{other:?}"),
        });
        if cfg!(feature = "lz4") {
            assert!(!matches!(&read, Err(Error::Decode { detail, .. }) if detail.contains("feature")));
        } else {
            assert!(
                matches!(&read, Err(Error::Decode { detail, .. }) if detail.contains("lz4 feature")),
                "{read:?}"
            );
        }
        let binary = parse(b"k", &[b'V', 2, 0x2a], "u8");
        if cfg!(feature = "postcard") {
            assert!(matches!(binary, Ok(Stored::Value { .. })), "{binary:?}");
        } else {
            assert!(
                matches!(&binary, Err(Error::Decode { detail, .. }) if detail.contains("postcard feature")),
                "{binary:?}"
            );
        }
    }
}
