"""The Lua scripts of the Redis store. Each one touches the keys of ONE stream (one hash slot).

Every stream has keys sharing the hash tag ``{<stream>}`` (see ``store._StreamKeys``):

* ``<prefix>:{<stream>}:events``: the Redis stream. Entry fields: ``d`` the JSON data, then
  one ``r`` field per room and one ``x`` field per excluded sid (repeated fields; past
  :data:`INLINE_LIMIT` of them, one ``R`` / ``X`` field holding a JSON array instead).
* ``<prefix>:{<stream>}:meta``: a hash: ``epoch`` (random tag of this incarnation of the
  stream), ``last`` (id of the newest entry ever added, ``0-0`` before the first),
  ``lwm`` (low-water mark: id of the newest entry retention removed), ``ix`` (every entry
  after this id is in the room index; streams written before the index have the entries
  up to it unindexed, and reads from before it scan) and ``ig`` (index entries up to this
  id are left overs of an earlier epoch of a wiped stream, ignored).
* ``<prefix>:{<stream>}:r:<room>``: the room index of ``<room>``, a Redis stream holding
  the id of every event addressed to it (same id, one empty field ``e``), and
  ``<prefix>:{<stream>}:all``: the same for events addressed to everyone. Written by the
  persist script with the event, trimmed by retention with it (the trimmed entries' rooms
  name the index keys to trim; an emptied room index is deleted). The scripts build these
  names from the meta key, so they share its hash tag (one cluster slot).
* ``<prefix>:{<stream>}:w:<writer>``: the last batch one store object appended (its token
  and the ids it got), for 60 s, so a batch re-sent after a lost reply is not appended twice.

Entries are only ever removed from the front (retention), so "events after offset X were
removed" is exactly ``X < lwm``.

A session is ONE string key, ``<prefix>:session:<key>`` (so it needs no hash tag): the
record's JSON (always an object, so it starts with ``{``), or, while a claim leases it,
``l:<until ms>|<JSON>`` (``until``: server time, ms since the epoch, when the lease runs
out). The key's own ``PX`` is the record's TTL, kept through a lease (``KEEPTTL``), so a
lease never outlives the record, and ``save_session`` (a plain ``SET ... PX``) replaces
the record and ends the lease in one command. ``save_session(..., lease=...)`` writes the
same leased form in one script (:data:`SAVE_LEASED`: ``SET ... PX`` with the lease's end
taken from the server's clock). Records of earlier versions are plain JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from hashlib import sha1

__all__ = [
    "CLAIM",
    "FETCH",
    "INLINE_LIMIT",
    "LAST",
    "PERSIST",
    "RELEASE",
    "RESERVE",
    "SAVE_LEASED",
    "TRIM",
    "Script",
]

#: Rooms (or excluded sids) of one event stored as repeated fields up to this many, else as JSON.
INLINE_LIMIT = 100


@dataclass(frozen=True)
class Script:
    """A Lua script and its SHA1 (for ``EVALSHA``; ``EVAL`` when the server lost it)."""

    name: str
    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", sha1(self.source.encode()).hexdigest())


_COMMON = r"""
local function split_id(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end

local function id_lt(a, b)
  local am, as = split_id(a)
  local bm, bs = split_id(b)
  return am < bm or (am == bm and as < bs)
end

local function succ(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return ms .. '-' .. string.format('%.0f', tonumber(seq) + 1)
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The room index: one Redis stream per room, '<base>r:<room>', and one for the events to
-- everyone, '<base>all', holding the event ids (same id, one empty field). <base> is the
-- stream's key prefix with its hash tag, so every index key is in the stream's slot.
local function base_of(meta)
  return string.sub(meta, 1, #meta - 4)
end

-- The rooms of an entry's fields (repeated 'r' fields, or one 'R' JSON array).
local function rooms_of(f)
  local rooms = {}
  for j = 1, #f, 2 do
    if f[j] == 'r' then
      rooms[#rooms + 1] = f[j + 1]
    elseif f[j] == 'R' then
      for _, room in ipairs(cjson.decode(f[j + 1])) do rooms[#rooms + 1] = room end
    end
  end
  return rooms
end

local function index_add(key, id)
  local ok = redis.pcall('XADD', key, id, 'e', '')
  if type(ok) == 'table' and ok.err then
    -- Left over from an earlier epoch with later ids (a clock that went back): start it again.
    redis.call('DEL', key)
    redis.call('XADD', key, id, 'e', '')
  end
end

-- Drop the index entries of the stream entries up to `cut` (`entries`: those entries).
local function index_trim(meta, entries, cut)
  local base, seen = base_of(meta), {}
  local floor = succ(cut)
  for _, e in ipairs(entries) do
    local rooms = rooms_of(e[2])
    if #rooms == 0 then rooms = {false} end
    for _, room in ipairs(rooms) do
      if not seen[room] then
        seen[room] = true
        local key = room and (base .. 'r:' .. room) or (base .. 'all')
        redis.call('XTRIM', key, 'MINID', floor)
        if room and redis.call('XLEN', key) == 0 then redis.call('DEL', key) end
      end
    end
  end
end

-- The stream's epoch, or false when it has none or its entries vanished (deleted, evicted).
local function current_epoch(stream, meta)
  local m = redis.call('HMGET', meta, 'epoch', 'last')
  if m[1] and m[2] and m[2] ~= '0-0' and redis.call('EXISTS', stream) == 0 then
    return false
  end
  return m[1]
end

local function ensure_epoch(stream, meta, candidate)
  local epoch = current_epoch(stream, meta)
  if not epoch then
    -- A new epoch starts after whatever the stream holds (it holds entries only when the
    -- meta hash alone was lost): offsets of the new epoch never point before them.
    local top = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
    local last = '0-0'
    if #top > 0 then last = top[1][1] end
    redis.call('DEL', meta)
    -- 'ig': index entries up to it are left overs of an earlier epoch (the index keys of a
    -- wiped stream may survive it); 'ix': every entry after it is indexed.
    local ig = string.format('%.0f', now_ms() - 1) .. '-999999999999'
    redis.call('HSET', meta, 'epoch', candidate, 'last', last, 'ix', last, 'ig', ig)
    epoch = candidate
  end
  return epoch
end

-- Retention: drop the oldest entries, those beyond the newest `maxlen` (at most `chunk` of
-- them per call) and those older than `age` ms. Nothing happens until the excess passes
-- `slack_n` entries / `slack_ms` ms (0: exact). The newest dropped id becomes 'lwm'.
-- Returns gone, more (count excess left for another call).
local function trim(stream, meta, maxlen, age, chunk, slack_n, slack_ms)
  local cut, more = nil, false
  if maxlen > 0 then
    local excess = redis.call('XLEN', stream) - maxlen
    if excess > slack_n then
      local n = math.min(excess, chunk)
      more = excess > chunk
      local es = redis.call('XRANGE', stream, '-', '+', 'COUNT', n)
      if #es > 0 then cut = es[#es][1] end
    end
  end
  if age > 0 then
    local cutoff = now_ms() - age
    -- The oldest entry first (O(1)): when it is recent enough there is nothing to look for,
    -- and a reverse range from the cutoff would walk the whole stream to find nothing.
    local first = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)
    local first_ms = #first > 0 and tonumber(string.match(first[1][1], '^(%d+)')) or nil
    if first_ms and first_ms < cutoff - slack_ms and cutoff - slack_ms > 0 then
      local old = redis.call('XREVRANGE', stream,
        '(' .. string.format('%.0f', cutoff - slack_ms) .. '-0', '-', 'COUNT', 1)
      if #old > 0 and slack_ms > 0 then
        old = redis.call('XREVRANGE', stream, '(' .. string.format('%.0f', cutoff) .. '-0', '-', 'COUNT', 1)
      end
      if #old > 0 and (not cut or id_lt(cut, old[1][1])) then cut = old[1][1] end
    end
  end
  if not cut then return 0, more end
  if redis.call('HEXISTS', meta, 'ix') == 1 then
    -- The dropped entries' rooms say which index streams to trim: at most `chunk` per call.
    local doomed = redis.call('XRANGE', stream, '-', cut, 'COUNT', chunk)
    if #doomed == chunk and doomed[#doomed][1] ~= cut then
      cut = doomed[#doomed][1]
      more = true
    end
    index_trim(meta, doomed, cut)
  end
  local gone = redis.call('XTRIM', stream, 'MINID', succ(cut))
  redis.call('HSET', meta, 'lwm', cut)
  return gone, more
end
"""

#: KEYS: events, meta, writer. ARGV: epoch candidate, batch token, maxlen (0: none),
#: max age ms (0: none), trim chunk, slack entries, slack ms, then per event: data,
#: n rooms (-1: one JSON array follows), rooms..., n excluded (same), excluded...
#: Returns {epoch, id, id, ...}; the same answer again for a re-sent batch.
PERSIST = Script(
    "persist",
    _COMMON
    + r"""
local stream, meta, writer = KEYS[1], KEYS[2], KEYS[3]
local token = ARGV[2]
local prev = redis.call('GET', writer)
if prev then
  local sep = string.find(prev, '|', 1, true)
  if sep and string.sub(prev, 1, sep - 1) == token then
    local out = {}
    for part in string.gmatch(string.sub(prev, sep + 1), '[^,]+') do out[#out + 1] = part end
    return out
  end
end
local out = {ensure_epoch(stream, meta, ARGV[1])}
if redis.call('HEXISTS', meta, 'ix') == 0 then
  -- A stream written before the index existed: entries after 'ix' are indexed from now on.
  redis.call('HSET', meta, 'ix', redis.call('HGET', meta, 'last') or '0-0')
end
local base = base_of(meta)
local i = 8
while i <= #ARGV do
  local f = {'d', ARGV[i]}
  i = i + 1
  for _, tag in ipairs({'r', 'x'}) do
    local n = tonumber(ARGV[i])
    i = i + 1
    if n < 0 then
      f[#f + 1] = string.upper(tag)
      f[#f + 1] = ARGV[i]
      i = i + 1
    else
      for j = i, i + n - 1 do
        f[#f + 1] = tag
        f[#f + 1] = ARGV[j]
      end
      i = i + n
    end
  end
  local id = redis.call('XADD', stream, '*', unpack(f))
  out[#out + 1] = id
  local rooms, seen = rooms_of(f), {}
  if #rooms == 0 then index_add(base .. 'all', id) end
  for _, room in ipairs(rooms) do
    if not seen[room] then
      seen[room] = true
      index_add(base .. 'r:' .. room, id)
    end
  end
end
redis.call('HSET', meta, 'last', out[#out])
redis.call('SET', writer, token .. '|' .. table.concat(out, ','), 'PX', 60000)
trim(stream, meta, tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]),
  tonumber(ARGV[6]), tonumber(ARGV[7]))
return out
""",
)

#: KEYS: events, meta. ARGV: maxlen (0: none), max age ms (0: none), chunk.
#: Exact retention; returns {gone, more (0/1)}.
TRIM = Script(
    "trim",
    _COMMON
    + r"""
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, 0} end
local gone, more = trim(KEYS[1], KEYS[2], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), 0, 0)
if more then return {gone, 1} end
return {gone, 0}
""",
)

#: KEYS: events, meta. ARGV: epoch candidate. Returns {epoch, newest id or '0-0'}.
LAST = Script(
    "last",
    _COMMON
    + r"""
local epoch = ensure_epoch(KEYS[1], KEYS[2], ARGV[1])
return {epoch, redis.call('HGET', KEYS[2], 'last') or '0-0'}
""",
)

#: KEYS: events, meta. ARGV: start ('-' or '(id'), entries to examine, limit,
#: filter ('0'/'1'), wanted rooms...
#: Returns {epoch|nil, lwm|nil, last|nil, last examined id|nil, examined, {entries}, indexed}.
#: Filtering a stream whose room index covers everything after start (``indexed`` = 1): the
#: k + 1 index ranges (the wanted rooms' and everyone's) are read from start, at most
#: ``limit`` ids each, merged, and the page's entries fetched by id: O((k + 1) limit), a
#: complete page (fewer than ``limit``: nothing more). Otherwise (a stream written before the
#: index, read from before it) ``entries to examine`` entries are scanned and filtered.
FETCH = Script(
    "fetch",
    _COMMON
    + r"""
local stream, meta = KEYS[1], KEYS[2]
local epoch = current_epoch(stream, meta)
if not epoch then return {false, false, false, false, 0, {}, 0} end
local m = redis.call('HMGET', meta, 'lwm', 'last', 'ix', 'ig')
local window, limit = tonumber(ARGV[2]), tonumber(ARGV[3])

local function indexed_from(start)
  local ix = m[3]
  if not ix then return false end
  if start == '-' then return ix == '0-0' or (m[1] and not id_lt(m[1], ix)) end
  return not id_lt(string.sub(start, 2), ix)
end

if ARGV[4] == '1' and indexed_from(ARGV[1]) then
  -- The exclusive lower bound: after start, after what retention removed, after left overs.
  local lo = false
  if ARGV[1] ~= '-' then lo = string.sub(ARGV[1], 2) end
  for _, bound in ipairs({m[1] or false, m[4] or false}) do
    if bound and (not lo or id_lt(lo, bound)) then lo = bound end
  end
  local from = lo and ('(' .. lo) or '-'
  local base, keys = base_of(meta), {}
  keys[1] = base .. 'all'
  for i = 5, #ARGV do keys[#keys + 1] = base .. 'r:' .. ARGV[i] end
  local ids, seen = {}, {}
  for _, key in ipairs(keys) do
    for _, e in ipairs(redis.call('XRANGE', key, from, '+', 'COUNT', limit)) do
      if not seen[e[1]] then
        seen[e[1]] = true
        local ms, seq = split_id(e[1])
        ids[#ids + 1] = {ms, seq, e[1]}
      end
    end
  end
  table.sort(ids, function(a, b) return a[1] < b[1] or (a[1] == b[1] and a[2] < b[2]) end)
  local out = {}
  for n = 1, math.min(limit, #ids) do
    local e = redis.call('XRANGE', stream, ids[n][3], ids[n][3])
    if #e > 0 then out[#out + 1] = e[1] end
  end
  local cursor = false
  if #out > 0 then cursor = out[#out][1] end
  return {epoch, m[1], m[2], cursor, #out, out, 1}
end

local entries = redis.call('XRANGE', stream, ARGV[1], '+', 'COUNT', window)
if ARGV[4] ~= '1' then
  local cursor = false
  if #entries > 0 then cursor = entries[#entries][1] end
  return {epoch, m[1], m[2], cursor, #entries, entries, 0}
end
local wanted = {}
for i = 5, #ARGV do wanted[ARGV[i]] = true end
local out, cursor, examined = {}, false, 0
for _, e in ipairs(entries) do
  examined = examined + 1
  cursor = e[1]
  local f, addressed, keep = e[2], false, false
  for j = 1, #f, 2 do
    local k = f[j]
    if k == 'r' then
      addressed = true
      if wanted[f[j + 1]] then keep = true; break end
    elseif k == 'R' then
      addressed = true
      for _, room in ipairs(cjson.decode(f[j + 1])) do
        if wanted[room] then keep = true; break end
      end
      if keep then break end
    end
  end
  if keep or not addressed then
    out[#out + 1] = e
    if #out >= limit then break end
  end
end
return {epoch, m[1], m[2], cursor, examined, out, 0}
""",
)

#: KEYS: session key. ARGV: lease ms (0: none). Returns nil when absent (or expired),
#: {'busy'} while a lease holds it, else {'ok', record JSON}: the key is then deleted
#: (no lease) or rewritten as leased until now + lease, keeping its TTL.
CLAIM = Script(
    "claim",
    r"""
local v = redis.call('GET', KEYS[1])
if not v then return false end
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local record = v
if string.sub(v, 1, 2) == 'l:' then
  local sep = string.find(v, '|', 3, true)
  local leased = tonumber(string.sub(v, 3, sep - 1))
  if now < leased then return {'busy', tostring(leased - now)} end
  record = string.sub(v, sep + 1)
end
local lease = tonumber(ARGV[1])
if lease > 0 then
  redis.call('SET', KEYS[1], 'l:' .. string.format('%.0f', now + lease) .. '|' .. record, 'KEEPTTL')
else
  redis.call('DEL', KEYS[1])
end
return {'ok', record}
""",
)

#: KEYS: session key. ARGV: record JSON, ttl ms, lease ms. Stores the record leased until
#: now + lease (server time) with the TTL, replacing any record and lease. Returns 1.
SAVE_LEASED = Script(
    "save_leased",
    r"""
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local until_ms = string.format('%.0f', now + tonumber(ARGV[3]))
redis.call('SET', KEYS[1], 'l:' .. until_ms .. '|' .. ARGV[1], 'PX', ARGV[2])
return 1
""",
)

#: KEYS: key. ARGV: holder token, lease ms. Returns nil when the caller holds the key
#: (also when its own earlier attempt took it), else the stored value ('p:...' or 'd:...').
RESERVE = Script(
    "reserve",
    r"""
local mine = 'p:' .. ARGV[1]
local v = redis.call('GET', KEYS[1])
if v and v ~= mine then return v end
redis.call('SET', KEYS[1], mine, 'PX', ARGV[2])
return false
""",
)

#: KEYS: key. Deletes it only while pending. Returns 1 when deleted.
RELEASE = Script(
    "release",
    r"""
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, 2) == 'p:' then return redis.call('DEL', KEYS[1]) end
return 0
""",
)
