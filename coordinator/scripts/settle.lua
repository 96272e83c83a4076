#!lua
-- settle.lua — commit a finished execution: complete the driven promise (firing its callbacks
-- and subscriptions), end the execution record, and acknowledge + delete the task's stream entry
-- when it lives in this partition. Fenced: a holder of a stale counter changes nothing.
--
-- KEYS[1..8]  the promise keys of the driven promise (see _lib.lua)
-- KEYS[9]     vow:{T}:x:<id>
-- KEYS[10]    vow:{T}:q:<group> holding the task entry (same partition), or any same-slot key
--             when ARGV[10] is ''
-- ARGV[1] now ('' = server TIME)   ARGV[2] request id   ARGV[3] promise id   ARGV[4] fencing counter
-- ARGV[5] state: RESOLVED | REJECTED   ARGV[6] value headers (msgpack)
-- ARGV[7] value data present ('1'/'0')   ARGV[8] value data
-- ARGV[9] consumer group   ARGV[10] entry id ('' = the entry is in another partition)
-- Returns 'ok' | 'fenced' (the caller needs no record back: it is the one that just wrote it).

local K = promise_keys(1)
local X = KEYS[9]
local now = clock(ARGV[1])
local id = ARGV[3]
local x = redis.call('HMGET', X, 'c', 'o')
if x[1] ~= ARGV[4] or not x[2] then
  if redis.call('HGET', K.p, 'rqv') == ARGV[2] then return 'ok' end  -- a resend
  return 'fenced'
end
if redis.call('EXISTS', K.p) == 1 then
  timeout_if_due(K, id, now)
  if redis.call('HGET', K.p, 'state') == 'PENDING' then
    redis.call('HSET', K.p, 'state', ARGV[5], 'cd', ms(now), 'vh', ARGV[6], 'rqv', ARGV[2])
    if ARGV[7] == '1' then redis.call('HSET', K.p, 'vd', ARGV[8]) end
    settle(K, id, ARGV[5])
  end
end
redis.call('DEL', X)
if ARGV[10] ~= '' then
  redis.call('XACK', KEYS[10], ARGV[9], ARGV[10])
  redis.call('XDEL', KEYS[10], ARGV[10])
end
return 'ok'
