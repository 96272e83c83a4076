#!lua
-- _lib.lua — the fragments every script shares. The loader inserts this file (without this first
-- line) right after each script's own shebang line; it defines locals only and touches no key.
--
-- Every script takes ARGV[1] = now (epoch ms; '' = the server's TIME) and ARGV[2] = the request
-- id the Python wrapper (coordinator/lua.py) draws for each call, so a resend of the same call
-- (redis-py resends after a lost reply) can be recognised and answered as the first run was.
--
-- Promise scripts share the first eight KEYS, all in the promise's partition (one hash tag):
--   KEYS[1] record        vow:{T}:p:<id>      KEYS[5] index all       vow:{T}:idx:all
--   KEYS[2] callbacks     vow:{T}:cb:<id>     KEYS[6] index pending   vow:{T}:idx:pending
--   KEYS[3] subscriptions vow:{T}:sub:<id>    KEYS[7] index resolved  vow:{T}:idx:resolved
--   KEYS[4] timeouts      vow:{T}:timeouts    KEYS[8] index rejected  vow:{T}:idx:rejected
--
-- Keys a script is not passed are named only by derive() below, from a KEYS entry of the same
-- partition: a callback's task stream, a subscription's inbox, the sweeps' per-id keys, and the
-- partition's expiry index (vow:{T}:expiry: completed promise id -> when it expires, epoch ms).

-- An unread notification is kept this long: a waiter blocked on its inbox pops it at once, and
-- one that comes later subscribes anew (answered at once: the promise is completed), so this
-- bounds only memory (a fire-and-forget rpc's notification) and costs no correctness.
local INBOX_TTL_MS = 10000
-- A notification carries the completed record when its fields take at most this many bytes
-- (else only the id: the listener reads the record itself).
local NOTE_MAX_BYTES = 65536

local function clock(arg)
  if arg ~= nil and arg ~= '' then return tonumber(arg) end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function ms(n)
  return string.format('%d', n)
end

-- The one way a script names a key it was not passed: the partition base of a KEYS entry
-- ("vow:{T}:", up to and including the hash tag's closing brace and colon) followed by a suffix
-- laid out as in coordinator/keys.py: p:<id>, cb:<id>, sub:<id>, x:<id>, q:<group>,
-- dead:<group>, inbox:<listener>, and the partition's own expiry, timeouts, leases and idx:<family>.
-- Same base, same hash tag, same slot.
local function derive(key, suffix)
  local close = string.find(key, '}:', 1, true)
  return string.sub(key, 1, close + 1) .. suffix
end

local function promise_keys(base)
  return {
    p = KEYS[base], cb = KEYS[base + 1], sub = KEYS[base + 2], timeouts = KEYS[base + 3],
    all = KEYS[base + 4], pending = KEYS[base + 5], resolved = KEYS[base + 6], rejected = KEYS[base + 7],
  }
end

local function family_key(K, state)
  if state == 'PENDING' then return K.pending end
  if state == 'RESOLVED' then return K.resolved end
  return K.rejected
end

-- What a subscriber's inbox receives: NUL, then the completed record's fields and values as
-- netstrings ("<length>:<bytes>" each; coordinator/notes.py reads them); or the bare id (never
-- starts with NUL) when the record is over NOTE_MAX_BYTES.
local function notification(K, id)
  local f = redis.call('HGETALL', K.p)
  local parts, size = {'\0'}, 0
  for i = 1, #f do
    size = size + #f[i]
    if size > NOTE_MAX_BYTES then return id end
    parts[i + 1] = #f[i] .. ':' .. f[i]
  end
  return table.concat(parts)
end

-- Turn every callback ("<group>\n<task message>") into a task on that group's stream in this
-- partition, and notify every subscriber's inbox (notification above); delete both.
local function fire(K, id)
  local cbs = redis.call('HGETALL', K.cb)
  for i = 2, #cbs, 2 do
    local v = cbs[i]
    local nl = string.find(v, '\n', 1, true)
    if nl then
      redis.call('XADD', derive(K.p, 'q:' .. string.sub(v, 1, nl - 1)), '*', 'm', string.sub(v, nl + 1))
    end
  end
  if #cbs > 0 then redis.call('DEL', K.cb) end
  local subs = redis.call('HGETALL', K.sub)
  if #subs == 0 then return end
  local note = notification(K, id)
  for i = 1, #subs, 2 do
    local inbox = derive(K.p, 'inbox:' .. subs[i])
    redis.call('RPUSH', inbox, note)
    redis.call('PEXPIRE', inbox, INBOX_TTL_MS)
  end
  redis.call('DEL', K.sub)
end

-- A completed promise expires its retention (field rn, ms; absent = kept for ever) after its
-- completion: the expiry pass (expire.lua) removes it then.
local function expire_later(K, id, completed_on, rn)
  if rn == nil then rn = redis.call('HGET', K.p, 'rn') end
  rn = tonumber(rn)
  if rn and completed_on then redis.call('ZADD', derive(K.p, 'expiry'), ms(completed_on + rn), id) end
end

-- Bookkeeping of every move out of PENDING: indexes, timeout index, expiry, callbacks,
-- subscriptions.
local function leave_pending(K, id, state)
  redis.call('ZREM', K.timeouts, id)
  redis.call('ZREM', K.pending, id)
  local f = redis.call('HMGET', K.p, 'co', 'cd', 'rn')  -- (a script cannot roll back: never fail here)
  local created = tonumber(f[1])
  if created then redis.call('ZADD', family_key(K, state), ms(created), id) end
  expire_later(K, id, tonumber(f[2]), f[3] or '')
  fire(K, id)
end

-- Every key and index entry of a promise, gone (base: any key of its partition). The execution
-- record and lease of an id go with it: a completed promise is driven no more.
local function forget(base, id)
  redis.call('DEL', derive(base, 'p:' .. id), derive(base, 'cb:' .. id), derive(base, 'sub:' .. id),
    derive(base, 'x:' .. id))
  for _, suffix in ipairs({'idx:all', 'idx:pending', 'idx:resolved', 'idx:rejected', 'timeouts', 'leases',
      'expiry'}) do
    redis.call('ZREM', derive(base, suffix), id)
  end
end

-- The completion write shared by complete, settle and create (a recorded step): the new state,
-- its value, the complete idempotency key, the request id that wrote it (resend detection).
local function write_value(K, state, now, headers, has_data, data, ikey, rid)
  redis.call('HSET', K.p, 'state', state, 'cd', ms(now), 'vh', headers, 'rqv', rid)
  if has_data == '1' then redis.call('HSET', K.p, 'vd', data) end
  if ikey ~= '' then redis.call('HSET', K.p, 'ikv', ikey) end
end

-- Apply the timeout of a due PENDING promise. Returns true when it moved.
local function timeout_if_due(K, id, now)
  local f = redis.call('HMGET', K.p, 'state', 'to', 'timer', 'co')
  if f[1] ~= 'PENDING' then return false end
  local to = tonumber(f[2])
  -- a record Vow did not write in its shape is left alone (readers report it as corrupt)
  if to == nil or tonumber(f[4]) == nil or now < to then return false end
  local state = 'REJECTED_TIMEDOUT'
  if f[3] == '1' then state = 'RESOLVED' end
  redis.call('HSET', K.p, 'state', state, 'cd', f[2])
  redis.call('HDEL', K.p, 'vh', 'vd', 'ikv', 'rqv')
  leave_pending(K, id, state)
  return true
end

local function record(K)
  return redis.call('HGETALL', K.p)
end

-- Executions (vow:{T}:x:<id>): c fencing counter, o owner, l lease end (ms), w wake flag,
-- g group, m the task message that drives it again, r orphan re-queues since the last progress,
-- q/a the request id and answer of the holder's last lease-changing call (resend detection).

-- Ownership of a stream entry: this consumer has it in the group's pending entries list.
local function owns(stream, group, consumer, entry)
  local p = redis.call('XPENDING', stream, group, entry, entry, 1)
  return p[1] ~= nil and p[1][2] == consumer
end

-- Whether a stream entry is no longer pending to anyone (acknowledged, by us or by a taker).
local function settled_entry(stream, group, entry)
  return redis.call('XPENDING', stream, group, entry, entry, 1)[1] == nil
end

local function ack_entry(stream, group, entry)
  redis.call('XACK', stream, group, entry)
  redis.call('XDEL', stream, entry)
end

-- Fencing: the caller holds the execution's lease under this counter.
local function holds(X, counter)
  local x = redis.call('HMGET', X, 'c', 'o')
  return x[1] == counter and x[2] ~= false
end

-- The answer this request already got, if it is a resend of the holder's last call.
local function replayed(X, rid)
  local x = redis.call('HMGET', X, 'q', 'a')
  if x[1] == rid then return x[2] end
  return nil
end

local function answer(X, rid, reply)
  redis.call('HSET', X, 'q', rid, 'a', reply)
  return reply
end

-- The id of the entry a resent move already added to `stream` (it carries the request id).
local function moved_by(stream, rid)
  local recent = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 16)
  for i = 1, #recent do
    local fields = recent[i][2]
    for j = 1, #fields, 2 do
      if fields[j] == 'rq' and fields[j + 1] == rid then return recent[i][1] end
    end
  end
  return nil
end
