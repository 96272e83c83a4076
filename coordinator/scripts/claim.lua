#!lua
-- claim.lua — take the execution leases of the promises a batch of tasks drives (root workflows
-- or invoked functions), all for one consumer. At most one live lease per promise: a second
-- claimer sets the wake flag instead, so the lease holder drives the workflow once more before
-- it lets go.
--
-- KEYS, ten per task i (base b = 10(i-1)):
--   KEYS[b+1..b+8]  the promise keys of the driven promise (see _lib.lua)
--   KEYS[b+9]       vow:{T}:x:<id>     the execution record (fields in _lib.lua)
--   KEYS[b+10]      vow:{T}:leases     zset: id -> lease end, for the orphan sweep (orphans.lua)
-- On a cluster every key of one call is in one partition (the caller batches per partition).
-- ARGV[1] now   ARGV[2] request id   ARGV[3] consumer   ARGV[4] lease, ms   ARGV[5] logic group
-- ARGV[4+2i] promise id of task i   ARGV[5+2i] the task message that drives it again if orphaned
-- Returns, three entries per task: 'ok', counter, record fields | 'busy', 0, {}
--   | 'done', 0, record fields | 'gone', 0, {} (no such promise).
-- Resend: the claim that took a lease is recognised by its request id ("<request id>:<i>") and
-- answered 'ok' with the same counter (a resent claim must never find its own lease: 'busy').

local now = clock(ARGV[1])
local consumer, lease_ms, group = ARGV[3], tonumber(ARGV[4]), ARGV[5]

local function claim(base, rid, id, message)
  local K = promise_keys(base + 1)
  local X, LEASES = KEYS[base + 9], KEYS[base + 10]
  if redis.call('EXISTS', K.p) == 0 then return 'gone', 0, {} end
  local x = redis.call('HMGET', X, 'c', 'o', 'l', 'q')
  if x[4] == rid and x[2] == consumer then return 'ok', tonumber(x[1]), record(K) end
  timeout_if_due(K, id, now)
  if redis.call('HGET', K.p, 'state') ~= 'PENDING' then
    redis.call('DEL', X)
    redis.call('ZREM', LEASES, id)
    return 'done', 0, record(K)
  end
  if x[2] and tonumber(x[3]) and tonumber(x[3]) > now then
    redis.call('HSET', X, 'w', '1')
    return 'busy', 0, {}
  end
  local counter = redis.call('HINCRBY', X, 'c', 1)
  local until_ms = now + lease_ms
  redis.call('HSET', X, 'o', consumer, 'l', ms(until_ms), 'w', '0', 'g', group, 'm', message)
  answer(X, rid, 'ok')
  redis.call('ZADD', LEASES, ms(until_ms), id)
  return 'ok', counter, record(K)
end

local out = {}
for i = 1, #KEYS / 10 do
  local word, counter, fields = claim(10 * (i - 1), ARGV[2] .. ':' .. i, ARGV[4 + 2 * i], ARGV[5 + 2 * i])
  out[#out + 1] = word
  out[#out + 1] = counter
  out[#out + 1] = fields
end
return out
