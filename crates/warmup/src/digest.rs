//! A fixed-size fingerprint of what the warm-up stored under a key: the SHA-1 that the server's
//! `redis.sha1hex` computes too, so a script can tell on the server whether a key still holds exactly
//! what the warm-up wrote, and the client keeps 20 bytes per key instead of the value.

use sha1::{Digest as _, Sha1};

/// The SHA-1 of a stored value (its bytes as `GET` returns them, or its `DUMP` payload).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Digest([u8; 20]);

impl std::fmt::Debug for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.hex())
    }
}

impl Digest {
    /// The digest of `bytes`.
    pub(crate) fn of(bytes: &[u8]) -> Digest {
        Digest::of_parts(&[bytes])
    }

    /// The digest of the concatenation of `parts`, without building it.
    pub(crate) fn of_parts(parts: &[&[u8]]) -> Digest {
        let mut hasher = Sha1::new();
        for part in parts {
            hasher.update(part);
        }
        Digest(hasher.finalize().into())
    }

    /// Lowercase hex, as `redis.sha1hex` answers.
    pub(crate) fn hex(&self) -> String {
        let mut out = String::with_capacity(40);
        for byte in self.0 {
            out.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
            out.push(char::from(b"0123456789abcdef"[usize::from(byte & 0xf)]));
        }
        out
    }

    /// Parses `redis.sha1hex`'s answer; `None` for anything else (a hostile or broken reply).
    pub(crate) fn from_hex(hex: &[u8]) -> Option<Digest> {
        if hex.len() != 40 {
            return None;
        }
        let nibble = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        let mut out = [0u8; 20];
        for (i, pair) in hex.chunks_exact(2).enumerate() {
            out[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
        }
        Some(Digest(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_match_redis_sha1hex() {
        // `redis-cli EVAL "return redis.sha1hex(ARGV[1])" 0 ""` and `… 0 "hello"` answer these.
        let check = |parts: &[&[u8]], want: &str| {
            let digest = Digest::of_parts(parts);
            assert_eq!(digest.hex(), want, "{parts:?}");
            assert_eq!(Digest::from_hex(want.as_bytes()), Some(digest));
        };
        check(&[b""], "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        check(&[b"hello"], "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d");
        check(&[b"he", b"llo"], "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d");
        assert_eq!(Digest::from_hex(b"not hex"), None);
        assert_eq!(Digest::from_hex(&[b'A'; 40]), None);
    }
}
