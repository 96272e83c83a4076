#!lua
-- claim.lua — take the execution lease of the promise a task drives (a root workflow or an
-- invoked function). At most one live lease per promise: a second claimer sets the wake flag
-- instead, so the lease holder drives the workflow once more before it lets go.
--
-- KEYS[1..8]  the promise keys of the driven promise (see _lib.lua)
-- KEYS[9]     vow:{T}:x:<id>   the execution record: c (fencing counter), o (owner), l (lease
--             until, epoch ms), w (wake flag)
-- ARGV[1] now, epoch ms ('' = server TIME)   ARGV[2] promise id   ARGV[3] consumer name
-- ARGV[4] lease, ms
-- Returns {'ok', counter, record fields} | {'busy', 0, {}} | {'done', 0, record fields}
--       | {'gone', 0, {}} (no such promise).

local K = promise_keys(1)
local X = KEYS[9]
local now = clock(ARGV[1])
if redis.call('EXISTS', K.p) == 0 then return {'gone', 0, {}} end
timeout_if_due(K, ARGV[2], now)
if redis.call('HGET', K.p, 'state') ~= 'PENDING' then
  redis.call('DEL', X)
  return {'done', 0, record(K)}
end
local x = redis.call('HMGET', X, 'o', 'l')
if x[1] and tonumber(x[2]) and tonumber(x[2]) > now then
  redis.call('HSET', X, 'w', '1')
  return {'busy', 0, {}}
end
local counter = redis.call('HINCRBY', X, 'c', 1)
redis.call('HSET', X, 'o', ARGV[3], 'l', ms(now + tonumber(ARGV[4])), 'w', '0')
return {'ok', counter, record(K)}
