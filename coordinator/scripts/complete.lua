#!lua
-- complete.lua — resolve, reject or cancel a promise (Resonate v0.8.2 semantics, see states.py).
-- Completing fires every callback (task messages) and subscription in the same step.
--
-- KEYS[1..8]  the promise keys (see _lib.lua)
-- ARGV[1] now   ARGV[2] request id   ARGV[3] promise id
-- ARGV[4] requested state: RESOLVED | REJECTED | REJECTED_CANCELED
-- ARGV[5] complete idempotency key ('' = none)   ARGV[6] strict ('1'/'0')
-- ARGV[7] value headers (msgpack)   ARGV[8] value data present ('1'/'0')   ARGV[9] value data
-- Returns {status, record fields}: completed | dedup | timedout | already | notfound.
-- Resend: the record's completion request id (rqv) is this request's: answered 'completed'.

local K = promise_keys(1)
local now = clock(ARGV[1])
local rid, id, state, ikey, strict = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6] == '1'

if redis.call('EXISTS', K.p) == 0 then return {'notfound', {}} end

local f = redis.call('HMGET', K.p, 'state', 'to', 'rqv', 'ikv')
if f[1] == 'PENDING' then
  local to = tonumber(f[2])
  if to ~= nil and now < to then
    write_value(K, state, now, ARGV[7], ARGV[8], ARGV[9], ikey, rid)
    leave_pending(K, id, state)
    return {'completed', record(K)}
  end
  timeout_if_due(K, id, now)
  if strict or redis.call('HGET', K.p, 'state') == 'RESOLVED' then return {'already', record(K)} end
  return {'timedout', record(K)}
end

if f[3] == rid then return {'completed', record(K)} end
if ikey ~= '' and f[4] == ikey and ((not strict) or state == f[1]) then return {'dedup', record(K)} end
if (not strict) and f[1] == 'REJECTED_TIMEDOUT' then return {'timedout', record(K)} end
return {'already', record(K)}
