//! The server-side last-write-wins script, a Rust model of its decision, and the parsing of its reply.
//!
//! Every versioned write goes through [`LWW_SCRIPT`], so the comparison and the write happen atomically
//! on the primary that owns the key: no read-modify-write race between clients can let an older
//! version overwrite a newer one.

use cluster_client::Value;

use crate::envelope::{EnvelopeProblem, HEADER_LEN, Header, MAGIC};

/// The Lua both scripts share: the lease rule, the envelope check, the byte-wise version order, the
/// decision, and the write.
macro_rules! lww_lua_functions {
    () => {
        r#"
local byte, sub, unpack = string.byte, string.sub, struct.unpack

-- A cache-facade load lease carrying the tombstone it replaced counts as that tombstone.
local function carried(stored)
  if stored and #stored == 57 and byte(stored, 1) == 76 and sub(stored, 34, 37) == '\255LWW'
      and byte(stored, 39) == 1 then
    return sub(stored, 34)
  end
  return stored
end

-- 'plain' for an absent or unversioned value, 'ok' for a valid envelope, 'tombstone' for a valid
-- tombstone, 'invalid' otherwise.
local function kind(v)
  if not v or sub(v, 1, 4) ~= '\255LWW' then return 'plain' end
  local len = #v
  if len < 24 then return 'invalid' end
  local format, flags, r1, r2 = byte(v, 5, 8)
  if format ~= 1 or flags > 1 or r1 ~= 0 or r2 ~= 0 then return 'invalid' end
  if flags == 1 then
    if len ~= 24 then return 'invalid' end
    return 'tombstone'
  end
  return 'ok'
end

-- Compares the versions (hlc then writer, big-endian, bytes 9 to 24) as four unsigned 32-bit
-- numbers, exact in Lua's doubles. Lua's `<` on strings goes through the server's collation locale,
-- so it is not a reliable byte order.
local function compare(a, b)
  local a1, a2, a3, a4 = unpack('>I4I4I4I4', a, 9)
  local b1, b2, b3, b4 = unpack('>I4I4I4I4', b, 9)
  if a1 ~= b1 then if a1 < b1 then return -1 end return 1 end
  if a2 ~= b2 then if a2 < b2 then return -1 end return 1 end
  if a3 ~= b3 then if a3 < b3 then return -1 end return 1 end
  if a4 ~= b4 then if a4 < b4 then return -1 end return 1 end
  return 0
end

-- The decision, and the stored value's kind. The decision is nil when the write goes ahead;
-- otherwise the reply that refuses it ({0, header}: the stored version wins; {2, header, length}:
-- the stored value is not a valid envelope), or 'bad incoming'.
local function decide(stored, incoming, mode)
  local current = kind(stored)
  if current == 'invalid' then
    return {2, sub(stored, 1, 24), #stored}, current
  end
  local versioned = current == 'ok' or current == 'tombstone'
  if mode == 'plain' then
    if versioned then return {0, sub(stored, 1, 24)}, current end
    return nil, current
  end
  local theirs = kind(incoming)
  if theirs ~= 'ok' and theirs ~= 'tombstone' then return 'bad incoming', current end
  if versioned then
    local order = compare(incoming, stored)
    if order < 0 or (order == 0 and mode ~= 'equal') then
      return {0, sub(stored, 1, 24)}, current
    end
  end
  return nil, current
end

-- 1 if a live value (anything but a tombstone) was stored before the write, 0 otherwise.
local function existed(stored, current)
  if stored and current ~= 'tombstone' then return 1 end
  return 0
end

-- `SET NX GET`: writes `value` if the key is absent (nil back), else returns the stored value and
-- changes nothing; an error comes back as a table.
local function set_absent(key, value, ttl)
  if ttl == 'keep' or ttl == '0' then return redis.pcall('SET', key, value, 'NX', 'GET') end
  return redis.pcall('SET', key, value, 'PX', ttl, 'NX', 'GET')
end

local function set(key, value, ttl, call)
  if ttl == 'keep' then return call('SET', key, value, 'KEEPTTL') end
  if ttl == '0' then return call('SET', key, value) end
  return call('SET', key, value, 'PX', ttl)
end

-- The primary's replication id and offset, nil if it refuses INFO (an ACL user without it). Plain
-- `string.find`s: a pattern search over the section costs the server more than INFO itself.
local function mark()
  local info = redis.pcall('INFO', 'replication')
  if type(info) ~= 'string' then return nil end
  local _, id_end = string.find(info, 'master_replid:', 1, true)
  if not id_end then return nil end
  local replid = sub(info, id_end + 1, id_end + 40)
  if #replid ~= 40 or not string.find(replid, '^%x+$') then return nil end
  local _, offset_end = string.find(info, 'master_repl_offset:', id_end, true)
  if not offset_end then return nil end
  local offset = string.match(info, '^%d+', offset_end + 1)
  if not offset then return nil end
  return {replid, offset}
end
"#
    };
}

/// The Lua source of the last-write-wins write.
///
/// `KEYS[1]` is the key. `ARGV[1]` is the value to store: an envelope, or plain bytes in mode `plain`.
/// `ARGV[2]` is the TTL in milliseconds, `0` for none, or `keep` to keep the current TTL. `ARGV[3]` is
/// the mode: `newer` writes only if the incoming version is newer than the stored one; `equal` also
/// writes when it is equal (a repair re-sends a write through replication); `plain` stores a plain
/// value only where no versioned value is stored. `ARGV[4]`, optional, is `mark`: the script then
/// also reads the primary's `INFO replication` just before it writes, and replies `{1, replid,
/// offset}` (the replication id and `master_repl_offset`, both strings) instead of `{1}`; a node
/// that refuses `INFO` (an ACL user without it) still writes and replies without them. The reply is
/// `{1, existed}` (or `{1, existed, replid, offset}`) when written, where `existed` is 1 if a live
/// value (anything but a tombstone) was stored before the write, 0 otherwise (so that a delete says
/// whether it removed something without a read of its own); `{0, header}` when the stored version
/// wins; and `{2, header, length}` when the stored value starts with the magic but is not a valid
/// envelope (it is left alone).
///
/// A load lease that `cache-facade` stored over a tombstone (its `lease.rs`: `L`, a 16-byte token, a
/// 16-digit expiry, then the 24-byte tombstone it replaced) counts as that tombstone: while a loader
/// holds the lease, a write older than the delete is still refused, and a newer one replaces the lease
/// (whose fill then finds it gone). Without this, the lease would hide the delete from this script and
/// an older write would bring the deleted value back.
///
/// Reading the offset inside the script is what makes it evidence: nothing else runs on the node
/// between the read and the write, and a script's writes reach the replication stream right after
/// it, so the write's bytes start exactly after that offset.
pub const LWW_SCRIPT: &str = concat!(
    "-- consistency: last-write-wins write, envelope format 1\n",
    lww_lua_functions!(),
    r#"
local stored = carried(redis.call('GET', KEYS[1]))
local incoming = ARGV[1]
local verdict, current = decide(stored, incoming, ARGV[3])
if verdict == 'bad incoming' then
  return redis.error_reply('ERR consistency: the value to write is not a valid envelope')
end
if verdict then return verdict end
local landed = nil
if ARGV[4] == 'mark' then landed = mark() end
set(KEYS[1], incoming, ARGV[2], redis.call)
if landed then return {1, existed(stored, current), landed[1], landed[2]} end
return {1, existed(stored, current)}
"#
);

/// The Lua source of the last-write-wins write of many keys of one node in one execution (see
/// `ClusterClient::eval_grouped`): each key decided exactly as [`LWW_SCRIPT`] decides it.
///
/// It declares no key. `ARGV[1]` is the mode (as `ARGV[3]` of [`LWW_SCRIPT`]), `ARGV[2]` is `mark`
/// or empty, then three arguments per key: the key, the value to store, the TTL (as `ARGV[2]` of
/// [`LWW_SCRIPT`]). The reply is `{replid, offset, replies}`: with `mark`, the primary's replication
/// id and `master_repl_offset` read once, before the call touches any key (both empty when the node
/// refused `INFO`); `replies` holds one reply per key, in order,
/// shaped as [`LWW_SCRIPT`]'s (`{1, existed}`, `{0, header}`, `{2, header, length}`), or
/// `{3, error}` when the key's command failed (a key this node does not serve, which Redis refuses
/// to a script, a cluster that is down, a wrong type) or the value is not an envelope: that key is
/// left as it was, and the caller sends it again on its own.
///
/// A key is first written with `SET ... NX GET`, which stores the value only where the key is absent
/// (so a cold cluster's warm-up costs one command a key) and otherwise returns the stored value for
/// the decision, then `SET` if the write wins. Every write of one call enters the replication stream
/// as one `MULTI`/`EXEC` block right after the offset read, and a replica applies the block whole or not at all, so each written key's
/// write ends no earlier than the offset plus the bytes of all the call's `SET`s.
pub const LWW_MANY_SCRIPT: &str = concat!(
    "-- consistency: last-write-wins writes of many keys, envelope format 1\n",
    lww_lua_functions!(),
    r#"
local mode, want_mark = ARGV[1], ARGV[2] == 'mark'
local landed = nil
if want_mark then landed = mark() end
local replies = {}
for i = 3, #ARGV - 2, 3 do
  local key, incoming, ttl = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local reply
  local theirs = kind(incoming)
  if mode ~= 'plain' and theirs ~= 'ok' and theirs ~= 'tombstone' then
    reply = {3, 'ERR consistency: the value to write is not a valid envelope'}
  else
    -- Absent keys (a cold cache's warm-up) are written by this one command; a stored value comes
    -- back unchanged, to be decided on.
    local got = set_absent(key, incoming, ttl)
    if type(got) == 'table' then
      reply = {3, got.err or 'ERR SET failed'}
    elseif not got then
      reply = {1, 0}
    else
      local stored = carried(got)
      local current
      reply, current = decide(stored, incoming, mode)
      if reply == 'bad incoming' then
        reply = {3, 'ERR consistency: the value to write is not a valid envelope'}
      elseif not reply then
        local written = set(key, incoming, ttl, redis.pcall)
        if type(written) == 'table' and written.err then
          reply = {3, written.err}
        else
          reply = {1, existed(stored, current)}
        end
      end
    end
  end
  replies[#replies + 1] = reply
end
if landed then return {landed[1], landed[2], replies} end
return {'', '', replies}
"#
);

/// When the script writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteMode {
    /// Only if the incoming version is newer than the stored one.
    Newer,
    /// Also if it is equal: re-sends a write so that replication carries it again.
    Equal,
    /// A plain value, only where no versioned value is stored.
    Plain,
}

impl WriteMode {
    pub(crate) fn as_arg(self) -> &'static str {
        match self {
            WriteMode::Newer => "newer",
            WriteMode::Equal => "equal",
            WriteMode::Plain => "plain",
        }
    }
}

/// What the script did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScriptOutcome {
    /// The value was stored.
    Written,
    /// The stored value wins; its header.
    Kept(Header),
    /// The stored value starts with the magic but is not a valid envelope; nothing was written.
    StoredInvalid(EnvelopeProblem),
}

/// The script's decision, computed in Rust. The integration tests check the real script against it;
/// `incoming` must be a valid envelope unless `mode` is [`WriteMode::Plain`].
#[cfg(test)]
pub(crate) fn decide(stored: Option<&[u8]>, incoming: &[u8], mode: WriteMode) -> ScriptOutcome {
    use crate::envelope::{Envelope, VERSION_OFFSET};

    let stored = stored.map(carried_tombstone);
    let stored_header = match stored.map(Envelope::decode) {
        None | Some(Ok(Envelope::Unversioned(_))) => None,
        Some(Err(problem)) => return ScriptOutcome::StoredInvalid(problem),
        Some(Ok(_)) => stored.and_then(|s| Header::parse(s).ok().flatten()),
    };
    let Some(stored_header) = stored_header else {
        return ScriptOutcome::Written;
    };
    if mode == WriteMode::Plain {
        return ScriptOutcome::Kept(stored_header);
    }
    let order = incoming[VERSION_OFFSET..HEADER_LEN].cmp(&stored_header.to_bytes()[VERSION_OFFSET..]);
    match order {
        std::cmp::Ordering::Greater => ScriptOutcome::Written,
        std::cmp::Ordering::Equal if mode == WriteMode::Equal => ScriptOutcome::Written,
        _ => ScriptOutcome::Kept(stored_header),
    }
}

/// The bytes the script compares against: a cache-facade lease carrying a tombstone stands for that
/// tombstone (see [`LWW_SCRIPT`]); anything else as it is.
#[cfg(test)]
pub(crate) fn carried_tombstone(stored: &[u8]) -> &[u8] {
    match stored {
        [b'L', ..] if stored.len() == 57 && stored[33..37] == MAGIC && stored[38] == 1 => &stored[33..],
        _ => stored,
    }
}

/// The replication id and offset a written reply of a `mark` call carries, if it carries them.
pub(crate) fn parse_mark(reply: &Value) -> Option<(Vec<u8>, u64)> {
    let Value::Array(items) = reply else {
        return None;
    };
    if items.first().and_then(Value::as_i64) != Some(1) {
        return None;
    }
    let replid = items.get(2)?.as_bytes()?.to_vec();
    let offset = items.get(3)?.as_str()?.parse().ok()?;
    Some((replid, offset))
}

/// The code of one key's reply (`1` written, `0` kept, `2` stored invalid, `3` left alone).
pub(crate) fn reply_code(reply: &Value) -> Option<i64> {
    match reply {
        Value::Array(items) => items.first().and_then(Value::as_i64),
        _ => None,
    }
}

/// Where a write landed: the primary's replication id and its offset just before the write.
pub(crate) type Landed = (Vec<u8>, u64);

/// Reads a [`LWW_MANY_SCRIPT`] reply of `keys` keys: the mark (replication id and offset), if the
/// call read one, and the per-key replies.
pub(crate) fn parse_many(reply: &Value, keys: usize) -> Result<(Option<Landed>, &[Value]), String> {
    let Value::Array(items) = reply else {
        return Err(format!("expected an array, got {reply:?}"));
    };
    let [replid, offset, Value::Array(replies)] = items.as_slice() else {
        return Err(format!("expected {{replid, offset, replies}}, got {reply:?}"));
    };
    if replies.len() != keys {
        return Err(format!("{} replies for {keys} keys", replies.len()));
    }
    let replid = replid.as_bytes().unwrap_or_default();
    let mark = match offset.as_str().filter(|_| !replid.is_empty()) {
        Some(offset) => Some((
            replid.to_vec(),
            offset
                .parse()
                .map_err(|_| format!("offset {offset:?} is not a number"))?,
        )),
        None => None,
    };
    Ok((mark, replies))
}

/// Whether a written reply says a live value (not a tombstone) was stored before the write.
pub(crate) fn parse_existed(reply: &Value) -> bool {
    matches!(reply, Value::Array(items)
        if items.first().and_then(Value::as_i64) == Some(1)
            && items.get(1).and_then(Value::as_i64) == Some(1))
}

/// Parses the script's reply; the error text says what was unexpected.
pub(crate) fn parse_reply(reply: &Value) -> Result<ScriptOutcome, String> {
    let Value::Array(items) = reply else {
        return Err(format!("expected an array, got {reply:?}"));
    };
    let code = items.first().and_then(Value::as_i64);
    let header = items.get(1).and_then(Value::as_bytes);
    match (code, header) {
        (Some(1), _) => Ok(ScriptOutcome::Written),
        (Some(0), Some(bytes)) => match Header::parse(bytes) {
            Ok(Some(header)) => Ok(ScriptOutcome::Kept(header)),
            other => Err(format!(
                "the stored header {bytes:02x?} does not parse ({other:?})"
            )),
        },
        (Some(2), Some(bytes)) => {
            let stored_len = items.get(2).and_then(Value::as_i64).unwrap_or(0);
            Ok(ScriptOutcome::StoredInvalid(stored_problem(bytes, stored_len)))
        }
        _ => Err(format!("unknown reply {reply:?}")),
    }
}

/// The problem with a stored value the script called invalid, from its first bytes and its length.
fn stored_problem(prefix: &[u8], stored_len: i64) -> EnvelopeProblem {
    match Header::parse(prefix) {
        Err(problem) => problem,
        // The header alone is fine, so the script objected to a tombstone's payload.
        Ok(_) => EnvelopeProblem::TombstoneWithPayload {
            len: usize::try_from(stored_len)
                .unwrap_or(0)
                .saturating_sub(HEADER_LEN),
        },
    }
}

/// Whether `bytes` start like an envelope, so a plain copy would be misread later.
pub(crate) fn looks_versioned(bytes: &[u8]) -> bool {
    bytes.starts_with(&MAGIC)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_lease_carrying_a_tombstone_decides_as_the_tombstone() {
        use crate::envelope::Envelope;
        use crate::version::test_version;
        let tombstone = Envelope::Tombstone {
            version: test_version(10, 0, 1),
        }
        .encode();
        let mut lease = b"L0123456789abcdef0000000000000042".to_vec();
        lease.extend_from_slice(&tombstone);
        let value = |millis| {
            Envelope::Value {
                version: test_version(millis, 0, 1),
                payload: b"v",
            }
            .encode()
        };
        let header = Header::parse(&tombstone).unwrap().unwrap();
        assert_eq!(carried_tombstone(&lease), &tombstone[..]);
        assert_eq!(
            decide(Some(&lease), &value(5), WriteMode::Newer),
            ScriptOutcome::Kept(header)
        );
        assert_eq!(
            decide(Some(&lease), &value(11), WriteMode::Newer),
            ScriptOutcome::Written
        );
        // Other bytes starting with 'L' are what they are.
        assert_eq!(carried_tombstone(b"London"), b"London");
    }
    use crate::envelope::{Envelope, VERSION_OFFSET};
    use crate::version::test_version as version;

    fn value(millis: u64, writer: u64) -> Vec<u8> {
        Envelope::Value {
            version: version(millis, 0, writer),
            payload: b"x",
        }
        .encode()
    }

    fn tombstone(millis: u64, writer: u64) -> Vec<u8> {
        Envelope::Tombstone {
            version: version(millis, 0, writer),
        }
        .encode()
    }

    fn header(millis: u64, writer: u64, tombstone: bool) -> Header {
        Header {
            version: version(millis, 0, writer),
            tombstone,
        }
    }

    fn check(stored: Option<&[u8]>, incoming: &[u8], mode: WriteMode, want: ScriptOutcome) {
        assert_eq!(
            decide(stored, incoming, mode),
            want,
            "stored {stored:02x?}, mode {mode:?}"
        );
    }

    #[test]
    fn newer_versions_win() {
        use ScriptOutcome::{Kept, StoredInvalid, Written};
        use WriteMode::{Equal, Newer, Plain};
        let (v5, v6) = (value(5, 1), value(6, 1));
        check(None, &v5, Newer, Written);
        check(Some(b"plain"), &v5, Newer, Written);
        check(Some(&v5), &v6, Newer, Written);
        check(Some(&v6), &v5, Newer, Kept(header(6, 1, false)));
        check(Some(&v5), &v5, Newer, Kept(header(5, 1, false)));
        check(Some(&v5), &v5, Equal, Written);
        check(Some(&v6), &v5, Equal, Kept(header(6, 1, false)));
        // The writer id breaks ties between equal clock values.
        check(Some(&value(5, 2)), &value(5, 1), Newer, Kept(header(5, 2, false)));
        check(Some(&value(5, 1)), &value(5, 2), Newer, Written);
        // A tombstone holds its version like a value does.
        check(Some(&tombstone(7, 1)), &v6, Newer, Kept(header(7, 1, true)));
        check(Some(&v6), &tombstone(7, 1), Newer, Written);
        // Plain copies never replace a versioned value.
        check(None, b"plain", Plain, Written);
        check(Some(b"old plain"), b"plain", Plain, Written);
        check(Some(&v5), b"plain", Plain, Kept(header(5, 1, false)));
        check(
            Some(&v5[..9]),
            &v6,
            Newer,
            StoredInvalid(EnvelopeProblem::Truncated { len: 9 }),
        );
    }

    fn reply(items: Vec<Value>) -> Value {
        Value::Array(items)
    }

    #[test]
    fn replies_parse() {
        let h = header(9, 3, true);
        let bytes = Bytes::copy_from_slice(&h.to_bytes());
        let cases: Vec<(Value, Result<ScriptOutcome, ()>)> = vec![
            (reply(vec![Value::Integer(1)]), Ok(ScriptOutcome::Written)),
            (
                reply(vec![Value::Integer(0), Value::Bytes(bytes.clone())]),
                Ok(ScriptOutcome::Kept(h)),
            ),
            (
                reply(vec![
                    Value::Integer(2),
                    Value::Bytes(bytes.clone()),
                    Value::Integer(30),
                ]),
                Ok(ScriptOutcome::StoredInvalid(
                    EnvelopeProblem::TombstoneWithPayload { len: 6 },
                )),
            ),
            (
                reply(vec![
                    Value::Integer(2),
                    Value::Bytes(Bytes::from_static(b"\xFFLWW\x07")),
                ]),
                Ok(ScriptOutcome::StoredInvalid(EnvelopeProblem::Truncated {
                    len: 5,
                })),
            ),
            (
                reply(vec![Value::Integer(0), Value::Bytes(Bytes::from_static(b"junk"))]),
                Err(()),
            ),
            (reply(vec![Value::Integer(7)]), Err(())),
            (Value::Integer(1), Err(())),
        ];
        for (input, want) in cases {
            assert_eq!(parse_reply(&input).map_err(|_| ()), want, "{input:?}");
        }
    }

    #[test]
    fn the_script_matches_the_documented_layout() {
        // The script hard-codes the magic, the format, the header length and the version's offset.
        assert!(LWW_SCRIPT.contains(r"'\255LWW'"));
        assert_eq!(MAGIC, [255, b'L', b'W', b'W']);
        assert!(
            LWW_SCRIPT.contains("unpack('>I4I4I4I4', a, 9)") && VERSION_OFFSET + 1 == 9 && HEADER_LEN == 24
        );
        assert!(LWW_SCRIPT.contains("format ~= 1") && crate::envelope::FORMAT_VERSION == 1);
    }

    proptest! {
        /// Last-write-wins is order-independent: applying the same writes in any order leaves the
        /// newest one stored.
        #[test]
        fn lww_ends_with_the_newest_write_in_any_order(
            writes in proptest::collection::vec((0u64..50, 0u64..3, any::<bool>()), 1..40),
            seed: u64,
        ) {
            let encoded: Vec<Vec<u8>> = writes
                .iter()
                .map(|&(millis, writer, delete)| if delete { tombstone(millis, writer) } else { value(millis, writer) })
                .collect();
            let mut shuffled = encoded.clone();
            // A seeded Fisher–Yates shuffle, so that a failure reproduces.
            let mut state = seed | 1;
            for i in (1..shuffled.len()).rev() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                shuffled.swap(i, (state % (i as u64 + 1)) as usize);
            }
            let apply = |order: &[Vec<u8>]| {
                let mut stored: Option<Vec<u8>> = None;
                for write in order {
                    if decide(stored.as_deref(), write, WriteMode::Newer) == ScriptOutcome::Written {
                        stored = Some(write.clone());
                    }
                }
                stored.map(|s| Header::parse(&s).unwrap().unwrap().version)
            };
            let newest = writes.iter().map(|&(m, w, _)| version(m, 0, w)).max();
            prop_assert_eq!(apply(&encoded), newest);
            prop_assert_eq!(apply(&shuffled), newest);
        }
    }
}
