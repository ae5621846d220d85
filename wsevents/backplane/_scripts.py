"""The Lua scripts of the Redis backplane: history topics and presence.

Each runs in one step on the Redis that holds its keys. The backplane
registers them with redis-py (``register_script``), which keeps each one's
SHA and loads it again where Redis answers ``NOSCRIPT``.
"""

from __future__ import annotations

__all__ = [
    "APPEND",
    "ONCE_CLAIM",
    "ONCE_KEEP",
    "ONCE_RELEASE",
    "ONCE_RENEW",
    "PRESENCE_CHANGES",
    "PRESENCE_COUNT",
    "PRESENCE_MEMBERS",
    "PRESENCE_REMOVE",
    "PRESENCE_SET",
    "READ",
    "RENEW",
    "field",
    "mapping",
    "text",
]


def _failover_guard(flag: int) -> str:
    """Lua that forgets ``epoch`` when the history was written under another master.

    Where ``ARGV[flag]`` is ``'1'`` (a backplane whose Redis fails over: Sentinel),
    the master's replication id is kept beside the epoch (``r``). A promoted
    replica has an id of its own: a history written under the old master may
    have lost the writes the replica had not got, so it starts a new epoch
    (clients get ``recovered: false``, never another publication under an
    offset they hold). A history with no id kept takes this master's.
    """
    return f"""
if ARGV[{flag}] == '1' then
  local id = string.match(redis.call('info', 'replication'), 'master_replid:(%x+)')
  local kept = redis.call('hget', KEYS[1], 'r')
  if epoch and kept and kept ~= id then epoch = false end
  if kept ~= id then redis.call('hset', KEYS[1], 'r', id) end
end
"""


# History, as Centrifugo keeps it in Redis: a hash holds the topic's epoch ("e")
# and last offset ("s"), a stream its publications, each at ID "<offset>-0".
# One script gives the offset, keeps the publication and publishes it: every
# process hears a topic's publications in offset order. A third key remembers
# an append's result for a while, so that a retry is not kept twice.
#   KEYS: meta, stream, result     ARGV: payload, size, ttl (ms), channel,
#   new epoch, meta ttl (s), result ttl (ms), failover guard, how to publish ('p':
#   PUBLISH on the channel; 's': SPUBLISH on it, Redis Cluster's sharded pub/sub;
#   'sp': SPUBLISH, and PUBLISH on the cluster-wide channel too, where a process
#   holds a pattern that matches), the cluster-wide channel; returns {offset, epoch}
APPEND = (
    """
local known = redis.call('hmget', KEYS[3], 'e', 's')
if known[1] then return {tonumber(known[2]), known[1]} end
local epoch = redis.call('hget', KEYS[1], 'e')
"""
    + _failover_guard(8)
    + """
if not epoch then
  epoch = ARGV[5]
  redis.call('del', KEYS[2])
  redis.call('hset', KEYS[1], 'e', epoch, 's', 0)
end
local offset = redis.call('hincrby', KEYS[1], 's', 1)
redis.call('expire', KEYS[1], ARGV[6])
redis.call('xadd', KEYS[2], 'MAXLEN', ARGV[2], offset .. '-0', 'd', ARGV[1])
redis.call('pexpire', KEYS[2], ARGV[3])
local message = 'H' .. offset .. ':' .. epoch .. ':' .. ARGV[1]
if ARGV[9] == 'p' then redis.call('publish', ARGV[4], message) else
  redis.call('spublish', ARGV[4], message)
  if ARGV[9] == 'sp' then redis.call('publish', ARGV[10], message) end
end
redis.call('hset', KEYS[3], 'e', epoch, 's', offset)
redis.call('pexpire', KEYS[3], ARGV[7])
return {offset, epoch}
"""
)
#   KEYS: meta, stream     ARGV: first ID (or '-'), limit, new epoch, meta ttl (s),
#   failover guard; returns {offset, epoch, entries}; a topic without an epoch gets one
READ = (
    """
local meta = redis.call('hmget', KEYS[1], 'e', 's')
local epoch, offset = meta[1], tonumber(meta[2])
"""
    + _failover_guard(5)
    + """
if not epoch then
  epoch, offset = ARGV[3], 0
  redis.call('del', KEYS[2])
  redis.call('hset', KEYS[1], 'e', epoch, 's', 0)
  redis.call('expire', KEYS[1], ARGV[4])
end
local entries = {}
if tonumber(ARGV[2]) > 0 then
  entries = redis.call('xrange', KEYS[2], ARGV[1], '+', 'COUNT', ARGV[2])
end
return {offset, epoch, entries}
"""
)
#   KEYS: meta, stream     ARGV: delivered epoch, delivered offset, new epoch, meta ttl (s),
#   failover guard; returns {offset, epoch}: a new epoch where the topic has none or
#   stands behind
RENEW = (
    """
local meta = redis.call('hmget', KEYS[1], 'e', 's')
local epoch = meta[1]
"""
    + _failover_guard(5)
    + """
if not epoch or (epoch == ARGV[1] and tonumber(meta[2]) < tonumber(ARGV[2])) then
  redis.call('del', KEYS[2])
  redis.call('hset', KEYS[1], 'e', ARGV[3], 's', 0)
  redis.call('expire', KEYS[1], ARGV[4])
  return {0, ARGV[3]}
end
return {tonumber(meta[2]), meta[1]}
"""
)

# Presence, as Centrifugo keeps it: a sorted set of members by expiry (ms, Redis'
# clock) and a hash of their info; and, for the diffs, a counter of changes and a
# stream of them, each at ID "<number>-0". Every script removes expired members
# first, logging each as left with its info.
#   KEYS: expiries, infos, log, counter
PRESENCE_COMMON = """
local t = redis.call('time')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function change(kind, member, info)
  local seq = redis.call('incr', KEYS[4])
  redis.call('xadd', KEYS[3], 'MAXLEN', '~', 10000, seq .. '-0', 'k', kind, 'm', member, 'i', info)
end
local gone = redis.call('zrangebyscore', KEYS[1], '-inf', now)
for _, member in ipairs(gone) do
  change('l', member, redis.call('hget', KEYS[2], member) or '{}')
  redis.call('hdel', KEYS[2], member)
end
if #gone > 0 then redis.call('zremrangebyscore', KEYS[1], '-inf', now) end
local function keep(seconds)
  for i = 1, 4 do redis.call('expire', KEYS[i], seconds) end
end
"""
#   ARGV: ttl (ms), keys' ttl (s), 'r' (a refresh: a member there keeps its info) or 'j',
#   then member, info, member, info...
PRESENCE_SET = (
    PRESENCE_COMMON
    + """
local expiry = now + tonumber(ARGV[1])
local refresh = ARGV[3] == 'r'
for i = 4, #ARGV, 2 do
  local member, info = ARGV[i], ARGV[i + 1]
  local added = redis.call('zadd', KEYS[1], expiry, member) == 1
  if (added or not refresh) and redis.call('hget', KEYS[2], member) ~= info then
    redis.call('hset', KEYS[2], member, info)
    change('j', member, info)
  end
end
keep(ARGV[2])
return tonumber(redis.call('get', KEYS[4]) or '0')
"""
)
#   ARGV: members...
PRESENCE_REMOVE = (
    PRESENCE_COMMON
    + """
for i = 1, #ARGV do
  local info = redis.call('hget', KEYS[2], ARGV[i])
  if info then
    redis.call('hdel', KEYS[2], ARGV[i])
    redis.call('zrem', KEYS[1], ARGV[i])
    change('l', ARGV[i], info)
  end
end
return 0
"""
)
#   ARGV: after, limit; returns {seq, entries} (entries false: read the members)
PRESENCE_CHANGES = (
    PRESENCE_COMMON
    + """
local seq = tonumber(redis.call('get', KEYS[4]) or '0')
local after = tonumber(ARGV[1])
if after == seq then return {seq, {}} end
if after > seq or seq - after > tonumber(ARGV[2]) then return {seq, false} end
local entries = redis.call('xrange', KEYS[3], after .. '-1', '+', 'COUNT', ARGV[2])
if #entries ~= seq - after then return {seq, false} end
return {seq, entries}
"""
)
#   returns {seq, {member, info, ...}}
PRESENCE_MEMBERS = (
    PRESENCE_COMMON
    + """
return {tonumber(redis.call('get', KEYS[4]) or '0'), redis.call('hgetall', KEYS[2])}
"""
)
#   KEYS: expiries; returns the members that have not expired, without reading them
PRESENCE_COUNT = """
local t = redis.call('time')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('zcount', KEYS[1], '(' .. now, '+inf')
"""


# What the scripts answer, read: RESP2 gives flat lists, RESP3 mappings.


# Once requests (section 12): one key per request, "R<owner>" while a run holds it
# (expiring with its lease), then "D<answer>" for the request window.
#   KEYS: the request's key     ARGV: owner, lease (ms)
#   returns {"run"} (claimed now), {"done", answer} or {"running"}
ONCE_CLAIM = """
local held = redis.call('get', KEYS[1])
if not held then
  redis.call('set', KEYS[1], 'R' .. ARGV[1], 'px', ARGV[2])
  return {'run'}
end
if string.sub(held, 1, 1) == 'D' then return {'done', string.sub(held, 2)} end
return {'running'}
"""

# Keep a run's answer, unless another run's is kept already.
#   KEYS: the request's key     ARGV: owner, answer, window (ms)
ONCE_KEEP = """
local held = redis.call('get', KEYS[1])
if held and string.sub(held, 1, 1) == 'D' then return 0 end
redis.call('set', KEYS[1], 'D' .. ARGV[2], 'px', ARGV[3])
return 1
"""

# Extend a run's lease while it runs; 0 when the claim is not this owner's any more.
#   KEYS: the request's key     ARGV: owner, lease (ms)
ONCE_RENEW = """
if redis.call('get', KEYS[1]) == 'R' .. ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""

# Let a run's claim go (a run cancelled at shutdown): the request may run again.
#   KEYS: the request's key     ARGV: owner
ONCE_RELEASE = """
if redis.call('get', KEYS[1]) == 'R' .. ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


def mapping(fields: list[bytes] | dict[bytes, bytes]) -> dict[bytes, bytes]:
    """A flat list of keys and values, or a mapping (RESP3), as a mapping."""
    if isinstance(fields, dict):
        return fields
    return dict(zip(fields[::2], fields[1::2], strict=True))


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def field(fields: list[bytes] | dict[bytes, bytes]) -> bytes:
    """The payload of a stream entry, as a flat list or a mapping (RESP3)."""
    if isinstance(fields, dict):
        return fields[b"d"]
    return fields[1]
