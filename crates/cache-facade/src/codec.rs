//! How values are stored: a serde codec, optional LZ4 compression, and a two-byte frame that also marks
//! remembered absences ("negative" entries) and load leases.
//!
//! Frame: `kind` (`V` value, `N` known absent, `L` lease), then for `V` one byte of codec id (low bits)
//! and a compression flag (`0x80`), then the payload. A lease is `L` and a random token.

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
    /// postcard: compact binary, about 2–4× smaller than JSON for numeric structs.
    Binary,
}

impl Codec {
    fn id(self) -> u8 {
        match self {
            Codec::Json => 1,
            Codec::Binary => 2,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Codec::Json => "json",
            Codec::Binary => "postcard",
        }
    }

    fn from_id(id: u8) -> Option<Codec> {
        match id {
            1 => Some(Codec::Json),
            2 => Some(Codec::Binary),
            _ => None,
        }
    }
}

const VALUE: u8 = b'V';
const ABSENT: u8 = b'N';
const LEASE: u8 = b'L';
const COMPRESSED: u8 = 0x80;

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

/// Encodes `value` and frames it; compresses when the encoding is at least `compress_at` bytes.
pub(crate) fn encode<T: Serialize + ?Sized>(
    key: &[u8],
    value: &T,
    codec: Codec,
    compress_at: Option<usize>,
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
        Codec::Binary => postcard::to_extend(value, header).map_err(|e| e.to_string()),
    };
    let mut out = written.map_err(|detail| Error::Encode {
        key: cluster_client::printable_key(key),
        codec: codec.name(),
        detail,
    })?;
    if compress_at.is_some_and(|at| out.len() - 2 >= at) {
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

/// The frame of a lease with `token`.
pub(crate) fn lease(token: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(token.len() + 1);
    out.push(LEASE);
    out.extend_from_slice(token);
    out
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
        [LEASE, token @ ..] => Ok(Stored::Lease(token)),
        [VALUE, flags, payload @ ..] => {
            let codec = Codec::from_id(flags & !COMPRESSED)
                .ok_or_else(|| bad(format!("unknown codec id {}", flags & !COMPRESSED)))?;
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

/// Decodes a framed value as `T`.
pub(crate) fn decode<T: DeserializeOwned>(
    key: &[u8],
    codec: Codec,
    compressed: bool,
    payload: &[u8],
) -> Result<T, Error> {
    let wanted = std::any::type_name::<T>();
    let bad = |detail: String| Error::Decode {
        key: cluster_client::printable_key(key),
        wanted,
        detail,
    };
    let inflated;
    let raw = if compressed {
        inflated = lz4_flex::decompress_size_prepended(payload)
            .map_err(|e| bad(format!("corrupt compressed data: {e}")))?;
        &inflated[..]
    } else {
        payload
    };
    match codec {
        Codec::Json => serde_json::from_slice(raw).map_err(|e| bad(format!("json: {e}"))),
        Codec::Binary => postcard::from_bytes(raw).map_err(|e| bad(format!("postcard: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let bytes = encode(b"k", &value, codec, compress_at).unwrap();
        match parse(b"k", &bytes, "T").unwrap() {
            Stored::Value {
                codec: c,
                compressed: z,
                payload,
            } => {
                assert_eq!((c, z), (codec, compressed));
                assert_eq!(decode::<T>(b"k", c, z, payload).unwrap(), value);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn round_trips() {
        let user = User {
            id: 7,
            name: "Ada ✓".into(),
            tags: vec!["x".repeat(3000)],
        };
        check(42u32, Codec::Json, None, false);
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
        check(user, Codec::Json, Some(1024), true);
        assert_eq!(parse(b"k", &absent(), "T").unwrap(), Stored::Absent);
        assert_eq!(parse(b"k", &lease(b"tok"), "T").unwrap(), Stored::Lease(b"tok"));
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
        let bytes = encode(b"k", "text", Codec::Json, None).unwrap();
        let Stored::Value {
            codec,
            compressed,
            payload,
        } = parse(b"k", &bytes, "u32").unwrap()
        else {
            panic!()
        };
        let error = decode::<u32>(b"k", codec, compressed, payload).unwrap_err();
        assert!(
            error.to_string().contains("u32") && error.to_string().contains("left untouched"),
            "{error}"
        );
    }
}
