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

/// `RESTORE … REPLACE` or `DEL` of each key: `ARGV` holds `action, ttl_ms, payload` per key, `action`
/// `restore` or `delete`, `ttl_ms` 0 for no expiry. Answers per key `OK` or the error's text, so one
/// bad payload does not hide the others' outcome.
pub(crate) const RESTORE: &str = r"
local out = {}
for i, key in ipairs(KEYS) do
  local reply
  if ARGV[3 * i - 2] == 'delete' then
    reply = redis.pcall('DEL', key)
  else
    reply = redis.pcall('RESTORE', key, ARGV[3 * i - 1], ARGV[3 * i], 'REPLACE')
  end
  if type(reply) == 'table' and reply.err then
    out[i] = reply.err
  else
    out[i] = 'OK'
  end
end
return out
";

/// `DUMP` and `PTTL` of each key, read in one atomic step: per key `{payload, pttl}`, or `{'', -2}`
/// when the key does not exist.
pub(crate) const CAPTURE: &str = r"
local out = {}
for i, key in ipairs(KEYS) do
  local payload = redis.call('DUMP', key)
  if payload then
    out[i] = {payload, redis.call('PTTL', key)}
  else
    out[i] = {'', -2}
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
}

impl Scripts {
    pub(crate) fn new() -> Scripts {
        Scripts {
            set: Script::new(SET),
            restore: Script::new(RESTORE),
            capture: Script::new(CAPTURE),
        }
    }
}
