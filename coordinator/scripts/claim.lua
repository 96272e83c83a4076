#!lua
-- claim.lua — take the execution lease of the promise a task drives (a root workflow or an
-- invoked function). At most one live lease per promise: a second claimer sets the wake flag
-- instead, so the lease holder drives the workflow once more before it lets go.
--
-- KEYS[1..8]  the promise keys of the driven promise (see _lib.lua)
-- KEYS[9]     vow:{T}:x:<id>     the execution record (fields in _lib.lua)
-- KEYS[10]    vow:{T}:leases     zset: id -> lease end, for the orphan sweep (orphans.lua)
-- ARGV[1] now   ARGV[2] request id   ARGV[3] promise id   ARGV[4] consumer   ARGV[5] lease, ms
-- ARGV[6] logic group   ARGV[7] the task message that drives this promise again if orphaned
-- Returns {'ok', counter, record fields} | {'busy', 0, {}} | {'done', 0, record fields}
--       | {'gone', 0, {}} (no such promise).
-- Resend: the claim that took the lease is recognised by its request id and answered 'ok' with
-- the same counter (a resent claim must never find its own lease and answer 'busy').

local K = promise_keys(1)
local X, LEASES = KEYS[9], KEYS[10]
local now = clock(ARGV[1])
local rid, id, consumer = ARGV[2], ARGV[3], ARGV[4]
if redis.call('EXISTS', K.p) == 0 then return {'gone', 0, {}} end
local x = redis.call('HMGET', X, 'c', 'o', 'l', 'q')
if x[4] == rid and x[2] == consumer then return {'ok', tonumber(x[1]), record(K)} end
timeout_if_due(K, id, now)
if redis.call('HGET', K.p, 'state') ~= 'PENDING' then
  redis.call('DEL', X)
  redis.call('ZREM', LEASES, id)
  return {'done', 0, record(K)}
end
if x[2] and tonumber(x[3]) and tonumber(x[3]) > now then
  redis.call('HSET', X, 'w', '1')
  return {'busy', 0, {}}
end
local counter = redis.call('HINCRBY', X, 'c', 1)
local until_ms = now + tonumber(ARGV[5])
redis.call('HSET', X, 'o', consumer, 'l', ms(until_ms), 'w', '0', 'g', ARGV[6], 'm', ARGV[7])
answer(X, rid, 'ok')
redis.call('ZADD', LEASES, ms(until_ms), id)
return {'ok', counter, record(K)}
