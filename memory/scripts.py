"""Lua scripts: each multi-key update of a stream is one atomic, idempotent server-side step.

Atomic, so a crash or a dropped connection never leaves a chunk blob without its index entry or a
byte counter that disagrees with the blobs. Idempotent, so the writer can simply run a step again
after a connection error without knowing whether the first attempt was applied (a reply can be
lost after the server executed the script). Every stream step refuses to run on a stream whose hash is
gone (deleted or expired) instead of resurrecting half of it. Every Lua script SceneKV runs is
here, the placement hash's compare-and-set (workers/placement.py) included.
"""


# Writer lease: a step given an owner token refuses to run while the stream's :owner key holds
# another token (another process took the stream over). No token ('') = not a stream writer (qa/
# captions, the CLI): no check. An expired lease (no key) does not block its last holder.
def _owner_check(key: str, arg: str) -> str:
    return f"""
if {arg} ~= '' then
  local cur = redis.call('GET', {key})
  if cur and cur ~= {arg} then
    return redis.error_reply('NOTOWNER another process took over this stream')
  end
end
"""


# Scene chunk lists are JSON arrays kept server-side, so the writer and retention never race on them.
_LIST_HELPERS = """
local function list_get(key)
  local cur = redis.call('HGET', key, 'chunks')
  if not cur or cur == '' or cur == '{}' then return {} end
  return cjson.decode(cur)
end
local function list_put(key, list)
  if #list == 0 then redis.call('HSET', key, 'chunks', '[]')
  else redis.call('HSET', key, 'chunks', cjson.encode(list)) end
end
"""

# KEYS: chunk, chunk_key, chunks zset, chunkmeta, stream hash, scene hash, owner
# ARGV: blob, key blob, first_pts, cid, meta json, ttl_ms, '1' = add to the scene's list, owner token,
#       field/value...
WRITE_CHUNK = (
    _LIST_HELPERS
    + """
if redis.call('EXISTS', KEYS[5]) == 0 then return redis.error_reply('NOSTREAM stream is gone') end
"""
    + _owner_check("KEYS[7]", "ARGV[8]")
    + """
local old = 0
if redis.call('EXISTS', KEYS[1]) == 1 then
  old = redis.call('STRLEN', KEYS[1]) + redis.call('STRLEN', KEYS[2])
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2])
local n = string.len(ARGV[1]) + string.len(ARGV[2])
redis.call('HINCRBY', KEYS[5], 'bytes', n - old)
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])
redis.call('HSET', KEYS[4], ARGV[4], ARGV[5])
if ARGV[7] == '1' and redis.call('EXISTS', KEYS[6]) == 1 then
  local list = list_get(KEYS[6])
  local present = false
  for _, c in ipairs(list) do if c == ARGV[4] then present = true end end
  if not present then table.insert(list, ARGV[4]); list_put(KEYS[6], list) end
end
for i = 9, #ARGV, 2 do redis.call('HSET', KEYS[5], ARGV[i], ARGV[i + 1]) end
redis.call('HSET', KEYS[5], 'chunks', redis.call('ZCARD', KEYS[3]))
local ttl = tonumber(ARGV[6])
if ttl > 0 then
  for i = 1, 6 do redis.call('PEXPIRE', KEYS[i], ttl) end
end
return n
"""
)

# KEYS: chunk, chunk_key, chunks zset, chunkmeta, stream hash, scene hash, owner; ARGV: cid, owner token
DROP_CHUNK = (
    _LIST_HELPERS
    + """
if redis.call('EXISTS', KEYS[5]) == 0 then return redis.error_reply('NOSTREAM stream is gone') end
"""
    + _owner_check("KEYS[7]", "ARGV[2]")
    + """
local n = redis.call('STRLEN', KEYS[1]) + redis.call('STRLEN', KEYS[2])
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('HINCRBY', KEYS[5], 'bytes', -n)
redis.call('HSET', KEYS[5], 'chunks', redis.call('ZCARD', KEYS[3]))
if redis.call('EXISTS', KEYS[6]) == 1 then
  local list, kept = list_get(KEYS[6]), {}
  for _, c in ipairs(list) do if c ~= ARGV[1] then table.insert(kept, c) end end
  if #kept ~= #list then list_put(KEYS[6], kept) end
end
return n
"""
)

# KEYS: scene hash, scenes zset, events, stream hash, owner
# ARGV: scene id, start, ttl_ms, event type ('' = none), event data json, events maxlen, owner token,
#       '1' = only if new (an existing record is left as it is), field/value...
# An event is added at most once per (scene, type): retries and replays do not duplicate it.
# The chunk list is owned by WRITE_CHUNK / DROP_CHUNK: callers never pass 'chunks' here.
PUT_SCENE = (
    """
if redis.call('EXISTS', KEYS[4]) == 0 then return redis.error_reply('NOSTREAM stream is gone') end
"""
    + _owner_check("KEYS[5]", "ARGV[7]")
    + """
if ARGV[8] ~= '1' or redis.call('EXISTS', KEYS[1]) == 0 then
  for i = 9, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
if redis.call('HEXISTS', KEYS[1], 'chunks') == 0 then redis.call('HSET', KEYS[1], 'chunks', '[]') end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
local id = false
if ARGV[4] ~= '' then
  local mark = 'event:' .. ARGV[4]
  id = redis.call('HGET', KEYS[1], mark)
  if not id then
    id = redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[6], '*', 'type', ARGV[4], 'data', ARGV[5])
    redis.call('HSET', KEYS[1], mark, id)
  end
end
redis.call('HSET', KEYS[4], 'scenes', redis.call('ZCARD', KEYS[2]))
local ttl = tonumber(ARGV[3])
if ttl > 0 then
  for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ttl) end
end
return id
"""
)

# KEYS: scene hash, scenes zset, stream hash, events, owner
# ARGV: scene id, owner token, event type ('' = none), event data json, events maxlen
# The event is added only by the call that removed the scene: a repeat finds nothing and adds none.
DROP_SCENE = (
    """
if redis.call('EXISTS', KEYS[3]) == 0 then return redis.error_reply('NOSTREAM stream is gone') end
"""
    + _owner_check("KEYS[5]", "ARGV[2]")
    + """
local n = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[3], 'scenes', redis.call('ZCARD', KEYS[2]))
if n == 1 and ARGV[3] ~= '' then
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[5], '*', 'type', ARGV[3], 'data', ARGV[4])
end
return n
"""
)

# KEYS: stream hash, events; ARGV: sid, ttl_ms, event data, maxlen, field/value...
# (the registry is updated by the caller, outside the stream's slot: store.create_stream)
CREATE_STREAM = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
for i = 5, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'type', 'stream.created', 'data', ARGV[3])
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
end
return 1
"""

# KEYS: stream hash, chunks, chunkmeta, scenes, events; ARGV: key base, sid
DELETE_STREAM = """
local base = ARGV[1]
local n = 0
for _, cid in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  n = n + redis.call('DEL', base .. ':chunk:' .. cid, base .. ':chunk:' .. cid .. ':key')
end
for _, sc in ipairs(redis.call('ZRANGE', KEYS[4], 0, -1)) do
  n = n + redis.call('DEL', base .. ':scene:' .. sc)
end
for _, label in ipairs(redis.call('HKEYS', base .. ':labels')) do
  n = n + redis.call('DEL', base .. ':idx:' .. label)
end
n = n + redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], base .. ':owner',
                   base .. ':eventmarks', base .. ':readings', base .. ':captionwords', base .. ':labels',
                   base .. ':watches', base .. ':watchhits', base .. ':watchorder')
return n
"""

# KEYS: stream hash, chunks, chunkmeta, scenes, events, eventmarks; ARGV: key base, ttl_ms (0 = persist)
# Every key of the stream (the content index's too) except the writer lease (:owner), which keeps its
# own expiry.
TOUCH_STREAM = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local base = ARGV[1]
local ttl = tonumber(ARGV[2])
local function set(key)
  if ttl > 0 then redis.call('PEXPIRE', key, ttl) else redis.call('PERSIST', key) end
end
for _, cid in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  set(base .. ':chunk:' .. cid)
  set(base .. ':chunk:' .. cid .. ':key')
end
for _, sc in ipairs(redis.call('ZRANGE', KEYS[4], 0, -1)) do set(base .. ':scene:' .. sc) end
for _, label in ipairs(redis.call('HKEYS', base .. ':labels')) do set(base .. ':idx:' .. label) end
for _, key in ipairs({'readings', 'captionwords', 'labels', 'watches', 'watchhits', 'watchorder'}) do
  set(base .. ':' .. key)
end
for i = 1, #KEYS do set(KEYS[i]) end
return 1
"""

# KEYS: stream hash, events, eventmarks, owner
# ARGV: ttl_ms, event type ('' = none), event data, maxlen, owner token, event key, field/value...
# With an event key the event is added at most once per key (eventmarks remembers the keys applied),
# so the writer may repeat the step after a lost reply.
UPDATE_STREAM = (
    """
if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('NOSTREAM stream is gone') end
"""
    + _owner_check("KEYS[4]", "ARGV[5]")
    + """
for i = 7, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
local id = false
if ARGV[2] ~= '' then
  if ARGV[6] ~= '' then id = redis.call('HGET', KEYS[3], ARGV[6]) end
  if not id then
    id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'type', ARGV[2], 'data', ARGV[3])
    if ARGV[6] ~= '' then redis.call('HSET', KEYS[3], ARGV[6], id) end
  end
end
local ttl = tonumber(ARGV[1])
if ttl > 0 then
  for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ttl) end
end
return id
"""
)

# The content index (content_index.py). An entry is one read frame (or one captioned scene): a member
# "pts|label|label..." of an entries zset scored by pts; each label also has its own zset
# (base .. label: score = member = pts) and a count in the labels hash, so the labels a stream has and
# where one was read are lookups, not scans. Labels are [a-z0-9_:] only, so '|' never occurs in one.
_ENTRY_HELPERS = """
local function unindex(labels, base, member)
  local pts, first = nil, true
  for part in string.gmatch(member, '[^|]+') do
    if first then pts, first = part, false else
      redis.call('ZREM', base .. part, pts)
      if redis.call('HINCRBY', labels, part, -1) <= 0 then redis.call('HDEL', labels, part) end
    end
  end
end
"""

# KEYS: entries zset, labels hash, stream hash; ARGV: label key base, pts, member, ttl_ms, label...
# Idempotent: the same entry again changes nothing; another entry at the same pts (a frame read again)
# replaces the old one and its labels, so a re-read frame is never counted twice.
INDEX_PUT = (
    _ENTRY_HELPERS
    + """
if redis.call('EXISTS', KEYS[3]) == 0 then return redis.error_reply('NOSTREAM stream is gone') end
local old = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[2], ARGV[2])
for _, m in ipairs(old) do if m == ARGV[3] then return 0 end end
for _, m in ipairs(old) do
  unindex(KEYS[2], ARGV[1], m)
  redis.call('ZREM', KEYS[1], m)
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
local ttl = tonumber(ARGV[4])
for i = 5, #ARGV do
  local key = ARGV[1] .. ARGV[i]
  redis.call('ZADD', key, ARGV[2], ARGV[2])
  redis.call('HINCRBY', KEYS[2], ARGV[i], 1)
  if ttl > 0 then redis.call('PEXPIRE', key, ttl) end
end
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
end
return 1
"""
)

# KEYS: entries zset, labels hash; ARGV: label key base, bound (exclusive: "(pts")
# Entries before the bound go with their labels (retention dropped what they describe).
INDEX_TRIM = (
    _ENTRY_HELPERS
    + """
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
for _, m in ipairs(old) do unindex(KEYS[2], ARGV[1], m) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
return #old
"""
)

# KEYS: entries zset, then the zsets of the labels asked about; ARGV: lo, hi (score bounds)
# Returns {entries, then per distinct pts of any label in [lo, hi]: pts, its rank among all entries
# (how many entries come before it), the next entry's pts ('' for the newest)}: what `when` needs to
# tell consecutive read frames from frames with others between them, in one round trip.
INDEX_HITS = """
local out, seen = {redis.call('ZCARD', KEYS[1])}, {}
for i = 2, #KEYS do
  for _, pts in ipairs(redis.call('ZRANGEBYSCORE', KEYS[i], ARGV[1], ARGV[2])) do
    if not seen[pts] then
      seen[pts] = true
      local nxt = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. pts, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
      table.insert(out, pts)
      table.insert(out, redis.call('ZCOUNT', KEYS[1], '-inf', '(' .. pts))
      table.insert(out, nxt[2] or '')
    end
  end
end
return out
"""

# Watches (watches.py): standing questions stored with the stream, and their hits. Each change is
# announced in the stream's event log by the step that makes it, so every gateway's clients learn of
# it, once, whichever process made it.

# New keys take the stream's own remaining TTL (TOUCH_STREAM refreshes them with the rest), so a watch
# added to an idle stream goes with it.
_STREAM_TTL = """
local function like_stream(stream, key)
  local ttl = redis.call('PTTL', stream)
  if ttl > 0 then redis.call('PEXPIRE', key, ttl) end
end
"""

# KEYS: stream hash, watches hash, events; ARGV: watch id, record JSON, max watches, events maxlen
# Returns 1 (added: watch.added logged), 0 (a watch with this id and the same text, webhook and
# cooldown is there already: nothing changes); errors WATCHEXISTS (one with other settings has this
# id) and WATCHFULL (the stream holds the most it may).
WATCH_ADD = (
    _STREAM_TTL
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('NOSTREAM stream is gone') end
local cur = redis.call('HGET', KEYS[2], ARGV[1])
if cur then
  local old, new = cjson.decode(cur), cjson.decode(ARGV[2])
  for _, k in ipairs({'text', 'webhook', 'cooldown_s'}) do
    if tostring(old[k]) ~= tostring(new[k]) then
      return redis.error_reply('WATCHEXISTS another watch has this id')
    end
  end
  return 0
end
if redis.call('HLEN', KEYS[2]) >= tonumber(ARGV[3]) then
  return redis.error_reply('WATCHFULL the stream has as many watches as it may')
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', 'type', 'watch.added', 'data', ARGV[2])
like_stream(KEYS[1], KEYS[2])
return 1
"""
)

# KEYS: watches hash, hits hash, hit order zset, events; ARGV: watch id, event data JSON, events maxlen
# The watch goes with its hits (watch.removed logged); 0 when there was no such watch. Watch ids hold
# no '|', so "<id>|" prefixes only this watch's hits.
WATCH_REMOVE = """
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
local prefix = ARGV[1] .. '|'
for _, field in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
  if string.sub(field, 1, #prefix) == prefix then
    redis.call('ZREM', KEYS[3], field)
    redis.call('HDEL', KEYS[2], field)
  end
end
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[3], '*', 'type', 'watch.removed', 'data', ARGV[2])
return 1
"""

# KEYS: stream hash, watches hash, hits hash, hit order zset, events
# ARGV: watch id, the watch record it was found for, start, hit JSON, '1' = the hit has its end,
#       events maxlen, hits kept, '1' = quiet (inside the watch's cooldown: kept, not told)
# Idempotent: a hit is known by (watch, start). A new one is stored and logged (1); its end, once,
# when it was stored without one (2); anything else changes nothing (0): a frame read again, an
# encoder that replays readings after a restart. A watch removed or replaced meanwhile gets no hit.
# A quiet hit is stored (a restarted encoder must know the appearance is under way) but not logged.
# The oldest hits beyond ``hits kept`` go.
WATCH_HIT = (
    _STREAM_TTL
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('NOSTREAM stream is gone') end
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end
local field = ARGV[1] .. '|' .. ARGV[3]
local cur = redis.call('HGET', KEYS[3], field)
local result = 1
if cur then
  if ARGV[5] ~= '1' or cjson.decode(cur)['end'] ~= nil then return 0 end
  result = 2
end
redis.call('HSET', KEYS[3], field, ARGV[4])
redis.call('ZADD', KEYS[4], ARGV[3], field)
if ARGV[8] ~= '1' then
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[6], '*', 'type', 'watch.hit', 'data', ARGV[4])
end
local extra = redis.call('ZCARD', KEYS[4]) - tonumber(ARGV[7])
if extra > 0 then
  for _, old in ipairs(redis.call('ZRANGE', KEYS[4], 0, extra - 1)) do redis.call('HDEL', KEYS[3], old) end
  redis.call('ZREMRANGEBYRANK', KEYS[4], 0, extra - 1)
end
like_stream(KEYS[1], KEYS[3])
like_stream(KEYS[1], KEYS[4])
return result
"""
)

# KEYS: owner key; ARGV: token, lease_ms, '1' = take over from another owner
# Returns 1 when ``token`` holds the lease afterwards, 0 when another owner holds it.
CLAIM_OWNER = """
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] and ARGV[3] ~= '1' then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

# KEYS: owner key; ARGV: token
RELEASE_OWNER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# Placement (workers/placement.py): compare-and-set of one stream's encoder in the placement hash.
# KEYS[1] the hash; ARGV: sid, the name the caller saw ("" = none), the name to put instead.
# Returns the stream's encoder afterwards: ARGV[3] if the caller's view was current, else the winner's.
MOVE_PLACEMENT = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if (not cur and ARGV[2] == '') or cur == ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  return ARGV[3]
end
return cur or ''
"""

# The places' steps share these (KEYS: the push, file and live sets, the touched zset, the holders
# hash). Whether a place's holder is alive: its liveness key, the holders hash's name + ':' + holder
# (the same hash tag, so the same slot on a Redis Cluster); a place with no holder (taken before
# holders were kept) has none. Whether a stream has a place of any kind. A stream's last use, never
# moved back (ZADD GT without Redis 6.2). Every key kept for so many seconds more.
_PLACE_HELPERS = """
local function holder_alive(holders, sid)
  local holder = redis.call('HGET', holders, sid)
  return holder and redis.call('EXISTS', holders .. ':' .. holder) == 1, holder
end
local function has_place(sid)
  for i = 1, 3 do
    if redis.call('SISMEMBER', KEYS[i], sid) == 1 then return true end
  end
  return false
end
local function used_at(sid, t, add_new)
  local cur = redis.call('ZSCORE', KEYS[4], sid)
  if (cur and tonumber(cur) < tonumber(t)) or (not cur and add_new) then
    redis.call('ZADD', KEYS[4], t, sid)
  end
end
local function keep_for(seconds)
  for i = 1, 5 do redis.call('EXPIRE', KEYS[i], seconds) end
end
"""

# A place for a stream of one kind on a pool (workers/stream_caps.py). KEYS: the push, file and live
# sets, the touched zset, the holders hash; ARGV: sid, kind index (1-3), cap (0: none), now, holder,
# seconds the records are kept. 0: held already (any kind; the caller holds it from now on only if
# its holder is gone), 1: taken, -1: that kind is full. One step, so gateways starting streams at
# once never pass the cap.
TAKE_STREAM_PLACE = (
    _PLACE_HELPERS
    + """
local held = has_place(ARGV[1])
local k = tonumber(ARGV[2])
local cap = tonumber(ARGV[3])
if not held then
  if cap > 0 and redis.call('SCARD', KEYS[k]) >= cap then return -1 end
  redis.call('SADD', KEYS[k], ARGV[1])
end
used_at(ARGV[1], ARGV[4], true)
if not held or not holder_alive(KEYS[5], ARGV[1]) then redis.call('HSET', KEYS[5], ARGV[1], ARGV[5]) end
keep_for(ARGV[6])
if held then return 0 end
return 1
"""
)

# Last use of streams holding a place (a stream given back gets no entry). KEYS: as
# TAKE_STREAM_PLACE's; ARGV: seconds kept, then sid, unix time pairs.
TOUCH_STREAM_PLACES = (
    _PLACE_HELPERS
    + """
for i = 2, #ARGV, 2 do used_at(ARGV[i], ARGV[i + 1], false) end
keep_for(ARGV[1])
return 0
"""
)

# Adopt a place whose holder is gone (its liveness key expired, or it has none) and that was last
# used before ARGV[3]. ARGV: sid, new holder, before. 1: adopted.
ADOPT_STREAM_PLACE = (
    _PLACE_HELPERS
    + """
local held = has_place(ARGV[1])
if not held or holder_alive(KEYS[5], ARGV[1]) then return 0 end
local used = redis.call('ZSCORE', KEYS[4], ARGV[1])
if used and tonumber(used) >= tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[5], ARGV[1], ARGV[2])
return 1
"""
)

# Record the model ``auto`` resolved to (ARGV[2]) in the shared pool's record if it is still pool
# ARGV[1]'s and says "auto".
SETTLE_POOL_MODEL = """
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
local record = cjson.decode(cur)
if record['id'] ~= ARGV[1] or record['model'] ~= 'auto' then return 0 end
record['model'] = ARGV[2]
redis.call('SET', KEYS[1], cjson.encode(record))
return 1
"""

# Drop the shared pool's record if it is still pool ARGV[1]'s (another may have replaced it).
DROP_POOL_RECORD = """
local cur = redis.call('GET', KEYS[1])
if cur and cjson.decode(cur)['id'] == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""
