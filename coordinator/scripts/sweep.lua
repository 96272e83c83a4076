#!lua
-- sweep.lua — time out the due pending promises of one partition, at most ARGV[3] per call,
-- firing their callbacks and subscriptions. Cost is O(due) (ZRANGEBYSCORE on the timeout index).
-- Concurrent sweepers are harmless (each transition happens once); the lock only saves work.
--
-- KEYS[1] vow:{T}:timeouts   KEYS[2] vow:{T}:idx:pending   KEYS[3] vow:{T}:idx:resolved
-- KEYS[4] vow:{T}:idx:rejected   KEYS[5] vow:{T}:sweep (lock)
-- ARGV[1] now   ARGV[2] request id   ARGV[3] limit   ARGV[4] lock ms ('0' = no lock)
-- The record, callbacks and subscriptions of a due id are derive()d from KEYS[1].
-- Returns {timed out count, more due ('1'/'0'), skipped because locked ('1'/'0')}.
-- Resend: a promise times out once; a resend finds nothing more due.

local now = clock(ARGV[1])
local lock_ms = tonumber(ARGV[4])
if lock_ms > 0 then
  if not redis.call('SET', KEYS[5], '1', 'NX', 'PX', lock_ms) then return {0, '0', '1'} end
end
local limit = tonumber(ARGV[3])
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ms(now), 'LIMIT', 0, limit + 1)
local count = 0
for i = 1, math.min(#due, limit) do
  local id = due[i]
  local K = {
    p = derive(KEYS[1], 'p:' .. id), cb = derive(KEYS[1], 'cb:' .. id), sub = derive(KEYS[1], 'sub:' .. id),
    timeouts = KEYS[1], pending = KEYS[2], resolved = KEYS[3], rejected = KEYS[4],
  }
  -- a key of another type under the record's name is left alone (readers report it as corrupt)
  if redis.call('TYPE', K.p)['ok'] == 'hash' and timeout_if_due(K, id, now) then
    count = count + 1
  else
    -- not pending any more (or not a well-formed record): it does not belong in the index
    redis.call('ZREM', KEYS[1], id)
  end
end
local more = '0'
if #due > limit then more = '1' end
return {count, more, '0'}
