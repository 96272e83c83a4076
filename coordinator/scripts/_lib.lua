#!lua
-- _lib.lua — helpers shared by the promise scripts. The loader inserts this file (without this
-- first line) right after each script's own shebang line; it defines locals only and touches no
-- key by itself.
--
-- Promise scripts share the first eight KEYS, all in the promise's partition (one hash tag):
--   KEYS[1] record   vow:{T}:p:<id>        KEYS[5] index all       vow:{T}:idx:all
--   KEYS[2] callbacks vow:{T}:cb:<id>      KEYS[6] index pending   vow:{T}:idx:pending
--   KEYS[3] subscriptions vow:{T}:sub:<id> KEYS[7] index resolved  vow:{T}:idx:resolved
--   KEYS[4] timeouts vow:{T}:timeouts      KEYS[8] index rejected  vow:{T}:idx:rejected
-- Firing a callback XADDs to the task stream key stored in the callback value, and firing a
-- subscription RPUSHes to the inbox key stored in the subscription value; both keys were built by
-- coordinator/keys.py in this same partition when they were registered.

local INBOX_TTL_MS = 600000

local function clock(arg)
  if arg ~= nil and arg ~= '' then return tonumber(arg) end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function ms(n)
  return string.format('%d', n)
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

-- Turn every callback into a task message on its stream and notify every subscriber; delete both.
local function fire(K, id)
  local cbs = redis.call('HGETALL', K.cb)
  for i = 2, #cbs, 2 do
    local v = cbs[i]
    local nl = string.find(v, '\n', 1, true)
    if nl then
      redis.call('XADD', string.sub(v, 1, nl - 1), '*', 'm', string.sub(v, nl + 1))
    end
  end
  if #cbs > 0 then redis.call('DEL', K.cb) end
  local subs = redis.call('HGETALL', K.sub)
  for i = 2, #subs, 2 do
    redis.call('RPUSH', subs[i], id)
    redis.call('PEXPIRE', subs[i], INBOX_TTL_MS)
  end
  if #subs > 0 then redis.call('DEL', K.sub) end
end

-- Bookkeeping shared by every move out of PENDING: indexes, timeout index, callbacks.
local function settle(K, id, state)
  redis.call('ZREM', K.timeouts, id)
  redis.call('ZREM', K.pending, id)
  local created = redis.call('HGET', K.p, 'co')
  if created then redis.call('ZADD', family_key(K, state), created, id) end
  fire(K, id)
end

-- Apply the timeout of a due PENDING promise. Returns true when it moved.
local function timeout_if_due(K, id, now)
  local f = redis.call('HMGET', K.p, 'state', 'to', 'timer')
  if f[1] ~= 'PENDING' then return false end
  local to = tonumber(f[2])
  if to == nil or now < to then return false end
  local state = 'REJECTED_TIMEDOUT'
  if f[3] == '1' then state = 'RESOLVED' end
  redis.call('HSET', K.p, 'state', state, 'cd', f[2])
  redis.call('HDEL', K.p, 'vh', 'vd', 'ikv', 'rqv')
  settle(K, id, state)
  return true
end

local function record(K)
  return redis.call('HGETALL', K.p)
end
