//! The Lua scripts that carry many keys of one slot in one command.
//!
//! `cluster-client` has no routed raw command and no batched `DUMP`/`RESTORE`. Every key of one script
//! call is in one slot, so one call serves them all on the node that owns the slot, and one call per
//! slot group costs far less than one command per key. Plain writes send the `SET` script straight to
//! the shard's primary (`node_command`), falling back to `set_many` on any error; `DUMP`/`RESTORE`
//! calls go through `ClusterClient::eval`, which routes by the first key and follows MOVED and ASK
//! (sending `ASKING` on the same connection).

use cluster_client::Script;

/// `SET` of each key: `ARGV` holds `value, ttl_ms` per key, `ttl_ms` 0 for no expiry.
pub(crate) const SET: &str = r"
for i, key in ipairs(KEYS) do
  local ttl = ARGV[2 * i]
  if ttl == '0' then
    redis.call('SET', key, ARGV[2 * i - 1])
  else
    redis.call('SET', key, ARGV[2 * i - 1], 'PX', ttl)
  end
end
return #KEYS
";

/// `RESTORE … REPLACE` of each key: `ARGV[1]` is `digest` to answer the SHA-1 of each key's `DUMP`
/// right after it was restored (taken in the same atomic step, so it is what the warm-up left there),
/// or `none`; then `ttl_ms, payload` per key, `ttl_ms` 0 for no expiry. Answers per key `{1, digest}`
/// (empty without `digest`) or `{0, error}`, so one bad payload does not hide the others' outcome.
pub(crate) const RESTORE: &str = r"
local digests = ARGV[1] == 'digest'
local out = {}
for i, key in ipairs(KEYS) do
  local reply = redis.pcall('RESTORE', key, ARGV[2 * i], ARGV[2 * i + 1], 'REPLACE')
  if type(reply) == 'table' and reply.err then
    out[i] = {0, reply.err}
  elseif digests then
    out[i] = {1, redis.sha1hex(redis.call('DUMP', key))}
  else
    out[i] = {1, ''}
  end
end
return out
";

/// `DUMP` and `PTTL` of each key, read in one atomic step. `ARGV[1]` is the most payload bytes the
/// call may answer in all (the undo budget the caller reserved): a payload that does not fit is not
/// sent, only its size. Per key `{payload, pttl}`, `{'', -2}` when the key does not exist, or
/// `{'', -3, size}` when its payload did not fit.
pub(crate) const CAPTURE: &str = r"
local allowance = tonumber(ARGV[1]) or 0
local used = 0
local out = {}
for i, key in ipairs(KEYS) do
  local payload = redis.call('DUMP', key)
  if not payload then
    out[i] = {'', -2}
  elseif used + #payload > allowance then
    out[i] = {'', -3, #payload}
  else
    used = used + #payload
    out[i] = {payload, redis.call('PTTL', key)}
  end
end
return out
";

/// The rollback: puts each key back only if it still holds exactly what the warm-up wrote, decided on
/// the server in one atomic step per call. `ARGV` holds per key `read_as, digest, action, ttl_ms,
/// payload`: `read_as` is `get` (a string value: compare the SHA-1 of its bytes) or `dump` (compare the
/// SHA-1 of its `DUMP`), `digest` the hex SHA-1 of what the warm-up wrote, `action` `restore`
/// (`RESTORE … REPLACE` with `ttl_ms`, 0 for no expiry, and `payload`) or `delete`. Answers per key
/// `{1}` when done, `{2}` when the key holds something else now (another client wrote or deleted it
/// since: left alone), or `{0, error}`.
pub(crate) const ROLLBACK: &str = r"
local out = {}
for i, key in ipairs(KEYS) do
  local b = 5 * (i - 1)
  local current
  if ARGV[b + 1] == 'get' then
    current = redis.pcall('GET', key)
  else
    current = redis.call('DUMP', key)
  end
  if type(current) ~= 'string' or redis.sha1hex(current) ~= ARGV[b + 2] then
    out[i] = {2}
  else
    local reply
    if ARGV[b + 3] == 'delete' then
      reply = redis.pcall('DEL', key)
    else
      reply = redis.pcall('RESTORE', key, ARGV[b + 4], ARGV[b + 5], 'REPLACE')
    end
    if type(reply) == 'table' and reply.err then
      out[i] = {0, reply.err}
    else
      out[i] = {1}
    end
  end
end
return out
";

/// The most keys in one script call.
pub(crate) const MAX_KEYS: usize = 1_000;

/// The scripts, hashed once per warm-up.
#[derive(Debug)]
pub(crate) struct Scripts {
    pub(crate) set: Script,
    pub(crate) restore: Script,
    pub(crate) capture: Script,
    pub(crate) rollback: Script,
}

impl Scripts {
    pub(crate) fn new() -> Scripts {
        Scripts {
            set: Script::new(SET),
            restore: Script::new(RESTORE),
            capture: Script::new(CAPTURE),
            rollback: Script::new(ROLLBACK),
        }
    }
}
