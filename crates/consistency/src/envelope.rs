//! The stored format of a versioned value.
//!
//! ```text
//! offset  size  field
//!      0     4  magic      FF 4C 57 57 ("\xFFLWW"; 0xFF never starts UTF-8 text)
//!      4     1  format     1
//!      5     1  flags      bit 0: tombstone (a delete); every other bit is 0
//!      6     2  reserved   0
//!      8     8  hlc        big-endian u64: milliseconds << 16 | logical counter
//!     16     8  writer     big-endian u64
//!     24     …  payload    the caller's bytes (empty for a tombstone)
//! ```
//!
//! Bytes 8..24 compare, byte by byte, exactly as versions do, which is what the server-side script
//! relies on. A value that does not start with the magic was written by a plain client and decodes as
//! [`Envelope::Unversioned`]; a value that starts with the magic but breaks a rule above is an
//! [`EnvelopeProblem`], never a guess.

use std::fmt;

use crate::version::Version;

/// The first four bytes of every versioned value.
pub const MAGIC: [u8; 4] = [0xFF, b'L', b'W', b'W'];
/// The format this release writes and reads.
pub const FORMAT_VERSION: u8 = 1;
/// Bytes before the payload.
pub const HEADER_LEN: usize = 24;
/// Where the 16 version bytes start.
pub(crate) const VERSION_OFFSET: usize = 8;

const FLAG_TOMBSTONE: u8 = 0b0000_0001;
const KNOWN_FLAGS: u8 = FLAG_TOMBSTONE;

/// Why bytes that start with [`MAGIC`] are not a valid envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EnvelopeProblem {
    /// Shorter than the 24-byte header.
    Truncated {
        /// The length found.
        len: usize,
    },
    /// A format this release does not read (written by a newer release).
    UnsupportedFormat {
        /// The format byte found.
        format: u8,
    },
    /// Flag bits this format does not define.
    UnknownFlags {
        /// The flags byte found.
        flags: u8,
    },
    /// The reserved header bytes are not zero.
    ReservedNotZero,
    /// A tombstone that carries a payload.
    TombstoneWithPayload {
        /// The payload's length.
        len: usize,
    },
}

impl fmt::Display for EnvelopeProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvelopeProblem::Truncated { len } => {
                write!(f, "is {len} bytes, shorter than the {HEADER_LEN}-byte header")
            }
            EnvelopeProblem::UnsupportedFormat { format } => write!(
                f,
                "has format {format} while this release reads format {FORMAT_VERSION} (upgrade the reader)"
            ),
            EnvelopeProblem::UnknownFlags { flags } => write!(f, "has unknown flag bits {flags:#010b}"),
            EnvelopeProblem::ReservedNotZero => write!(f, "has non-zero reserved header bytes"),
            EnvelopeProblem::TombstoneWithPayload { len } => {
                write!(f, "is a tombstone carrying a {len}-byte payload")
            }
        }
    }
}

/// The fixed-size part of an envelope: the version and whether it marks a delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// The version of the write.
    pub version: Version,
    /// Whether the write was a delete (the stored value is a tombstone).
    pub tombstone: bool,
}

impl Header {
    /// The header's bytes, as stored.
    pub fn to_bytes(self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..4].copy_from_slice(&MAGIC);
        out[4] = FORMAT_VERSION;
        out[5] = if self.tombstone { FLAG_TOMBSTONE } else { 0 };
        out[VERSION_OFFSET..].copy_from_slice(&self.version.to_bytes());
        out
    }

    /// Reads the header at the start of `bytes` (a whole value, or only its first 24 bytes).
    ///
    /// `Ok(None)` means the bytes do not start with [`MAGIC`]: a plain, unversioned value. Payload
    /// rules (a tombstone has none) are checked by [`Envelope::decode`], which sees the whole value.
    pub fn parse(bytes: &[u8]) -> Result<Option<Header>, EnvelopeProblem> {
        if !bytes.starts_with(&MAGIC) {
            return Ok(None);
        }
        if bytes.len() < HEADER_LEN {
            return Err(EnvelopeProblem::Truncated { len: bytes.len() });
        }
        if bytes[4] != FORMAT_VERSION {
            return Err(EnvelopeProblem::UnsupportedFormat { format: bytes[4] });
        }
        let flags = bytes[5];
        if flags & !KNOWN_FLAGS != 0 {
            return Err(EnvelopeProblem::UnknownFlags { flags });
        }
        if bytes[6..8] != [0, 0] {
            return Err(EnvelopeProblem::ReservedNotZero);
        }
        let mut version = [0u8; Version::LEN];
        version.copy_from_slice(&bytes[VERSION_OFFSET..HEADER_LEN]);
        Ok(Some(Header {
            version: Version::from_bytes(version),
            tombstone: flags & FLAG_TOMBSTONE != 0,
        }))
    }
}

/// A stored value, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Envelope<'a> {
    /// A versioned value.
    Value {
        /// Its version.
        version: Version,
        /// The caller's bytes.
        payload: &'a [u8],
    },
    /// A delete, kept for a short while so that an older set cannot bring the key back.
    Tombstone {
        /// The delete's version.
        version: Version,
    },
    /// A value written without an envelope (by a plain client), returned as it is.
    Unversioned(&'a [u8]),
}

impl<'a> Envelope<'a> {
    /// Decodes a stored value. Only bytes that start with [`MAGIC`] can fail.
    pub fn decode(bytes: &'a [u8]) -> Result<Envelope<'a>, EnvelopeProblem> {
        let Some(header) = Header::parse(bytes)? else {
            return Ok(Envelope::Unversioned(bytes));
        };
        let payload = &bytes[HEADER_LEN..];
        if header.tombstone {
            if !payload.is_empty() {
                return Err(EnvelopeProblem::TombstoneWithPayload { len: payload.len() });
            }
            return Ok(Envelope::Tombstone {
                version: header.version,
            });
        }
        Ok(Envelope::Value {
            version: header.version,
            payload,
        })
    }

    /// The stored bytes: header and payload, or an unversioned value as it is.
    pub fn encode(&self) -> Vec<u8> {
        match *self {
            Envelope::Value { version, payload } => {
                let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
                out.extend_from_slice(
                    &Header {
                        version,
                        tombstone: false,
                    }
                    .to_bytes(),
                );
                out.extend_from_slice(payload);
                out
            }
            Envelope::Tombstone { version } => Header {
                version,
                tombstone: true,
            }
            .to_bytes()
            .to_vec(),
            Envelope::Unversioned(bytes) => bytes.to_vec(),
        }
    }

    /// The version, unless the value is unversioned.
    pub fn version(&self) -> Option<Version> {
        match *self {
            Envelope::Value { version, .. } | Envelope::Tombstone { version } => Some(version),
            Envelope::Unversioned(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::version::{Hlc, WriterId, test_version as version};

    fn check(bytes: &[u8], want: Result<Envelope<'_>, EnvelopeProblem>) {
        assert_eq!(Envelope::decode(bytes), want, "decoding {bytes:02x?}");
    }

    #[test]
    fn decoding_follows_the_documented_layout() {
        let v = version(1_700_000_000_000, 2, 7);
        let mut value = Header {
            version: v,
            tombstone: false,
        }
        .to_bytes()
        .to_vec();
        value.extend_from_slice(b"payload");
        let tombstone = Header {
            version: v,
            tombstone: true,
        }
        .to_bytes();
        let mut bad_format = tombstone;
        bad_format[4] = 2;
        let mut bad_flags = tombstone;
        bad_flags[5] = 0b11;
        let mut bad_reserved = tombstone;
        bad_reserved[7] = 1;
        let mut tombstone_with_payload = tombstone.to_vec();
        tombstone_with_payload.push(0);

        check(
            &value,
            Ok(Envelope::Value {
                version: v,
                payload: b"payload",
            }),
        );
        check(
            &value[..HEADER_LEN],
            Ok(Envelope::Value {
                version: v,
                payload: b"",
            }),
        );
        check(&tombstone, Ok(Envelope::Tombstone { version: v }));
        check(b"plain text", Ok(Envelope::Unversioned(b"plain text")));
        check(b"", Ok(Envelope::Unversioned(b"")));
        check(b"\xFFLW", Ok(Envelope::Unversioned(b"\xFFLW")));
        check(&value[..10], Err(EnvelopeProblem::Truncated { len: 10 }));
        check(&bad_format, Err(EnvelopeProblem::UnsupportedFormat { format: 2 }));
        check(&bad_flags, Err(EnvelopeProblem::UnknownFlags { flags: 0b11 }));
        check(&bad_reserved, Err(EnvelopeProblem::ReservedNotZero));
        check(
            &tombstone_with_payload,
            Err(EnvelopeProblem::TombstoneWithPayload { len: 1 }),
        );
    }

    #[test]
    fn the_header_bytes_are_the_documented_ones() {
        let header = Header {
            version: version(1, 2, 3),
            tombstone: true,
        };
        let want: [u8; HEADER_LEN] = [
            0xFF, b'L', b'W', b'W', 1, 1, 0, 0, // magic, format, flags, reserved
            0, 0, 0, 0, 0, 1, 0, 2, // hlc: 1 ms, counter 2
            0, 0, 0, 0, 0, 0, 0, 3, // writer 3
        ];
        assert_eq!(header.to_bytes(), want);
        assert_eq!(Header::parse(&want), Ok(Some(header)));
    }

    #[test]
    fn problems_explain_themselves() {
        let text = EnvelopeProblem::UnsupportedFormat { format: 9 }.to_string();
        assert!(text.contains("format 9") && text.contains("upgrade"), "{text}");
    }

    proptest! {
        #[test]
        fn versioned_values_round_trip(millis in 0..=Hlc::MAX_MILLIS, logical: u16, writer: u64,
                                       payload in proptest::collection::vec(any::<u8>(), 0..200), deleted: bool) {
            let version = Version::new(Hlc::new(millis, logical), WriterId(writer));
            let envelope = if deleted {
                Envelope::Tombstone { version }
            } else {
                Envelope::Value { version, payload: &payload }
            };
            let bytes = envelope.encode();
            prop_assert_eq!(Envelope::decode(&bytes), Ok(envelope));
            prop_assert_eq!(envelope.version(), Some(version));
        }

        /// A plain value is never misread as a version: it decodes as itself, or (only if it starts with
        /// the magic) as a typed problem.
        #[test]
        fn plain_values_are_never_misread(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            match Envelope::decode(&bytes) {
                Ok(Envelope::Unversioned(raw)) => prop_assert_eq!(raw, &bytes[..]),
                Ok(_) | Err(_) => prop_assert!(bytes.starts_with(&MAGIC)),
            }
        }

        /// Comparing the 16 version bytes compares versions: the server-side script relies on it.
        #[test]
        fn version_bytes_order_like_versions(a: (u64, u64), b: (u64, u64)) {
            let va = Version::new(Hlc::from_raw(a.0), WriterId(a.1));
            let vb = Version::new(Hlc::from_raw(b.0), WriterId(b.1));
            let ha = Header { version: va, tombstone: false }.to_bytes();
            let hb = Header { version: vb, tombstone: true }.to_bytes();
            prop_assert_eq!(va.cmp(&vb), ha[VERSION_OFFSET..].cmp(&hb[VERSION_OFFSET..]));
        }
    }
}
