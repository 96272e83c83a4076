#!lua
-- settle.lua — commit a finished execution: complete the driven promise (firing its callbacks
-- and subscriptions), end the execution record, and acknowledge + delete the task's stream entry
-- when it lives in this partition. Fenced: a holder of a stale counter changes nothing.
--
-- KEYS[1..8]  the promise keys of the driven promise (see _lib.lua)
-- KEYS[9]     vow:{T}:x:<id>   KEYS[10] vow:{T}:leases
-- KEYS[11]    vow:{T}:q:<group> holding the task entry (same partition); any same-slot key
--             when ARGV[10] is ''
-- ARGV[1] now   ARGV[2] request id   ARGV[3] promise id   ARGV[4] fencing counter
-- ARGV[5] state: RESOLVED | REJECTED   ARGV[6] value headers (msgpack)
-- ARGV[7] value data present ('1'/'0')   ARGV[8] value data
-- ARGV[9] consumer group   ARGV[10] entry id ('' = the entry is in another partition)
-- Returns 'ok' | 'fenced' (the caller needs no record back: it is the one that just wrote it).
-- Resend: the record's completion request id (rqv) is this request's: answered 'ok'.

local K = promise_keys(1)
local X, LEASES = KEYS[9], KEYS[10]
local now = clock(ARGV[1])
local rid, id = ARGV[2], ARGV[3]
if not holds(X, ARGV[4]) then
  if redis.call('HGET', K.p, 'rqv') == rid then return 'ok' end
  return 'fenced'
end
if redis.call('EXISTS', K.p) == 1 then
  timeout_if_due(K, id, now)
  if redis.call('HGET', K.p, 'state') == 'PENDING' then
    write_value(K, ARGV[5], now, ARGV[6], ARGV[7], ARGV[8], '', rid)
    leave_pending(K, id, ARGV[5])
  end
end
redis.call('DEL', X)
redis.call('ZREM', LEASES, id)
if ARGV[10] ~= '' then ack_entry(KEYS[11], ARGV[9], ARGV[10]) end
return 'ok'
