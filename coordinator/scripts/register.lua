#!lua
-- register.lua — register a callback or a subscription on a promise, unless it is completed
-- (then nothing is written and the completed record is returned, so the caller proceeds).
--
-- KEYS[1..8]  the promise keys (see _lib.lua)
-- ARGV[1] now   ARGV[2] request id   ARGV[3] promise id   ARGV[4] kind: cb | sub
-- ARGV[5] field: root id (cb) or listener id (sub)
-- ARGV[6] value: "<logic group>\n<task message>" (cb) or '1' (sub)
-- Returns {status, record fields}: registered | completed | notfound.
-- Resend: registering twice stores the same field once. A resend after the promise completed
-- answers 'completed': the first run's callback has fired by then, so the caller proceeding with
-- the completed promise is what it would have done after hearing that callback.

local K = promise_keys(1)
if redis.call('EXISTS', K.p) == 0 then return {'notfound', {}} end
timeout_if_due(K, ARGV[3], clock(ARGV[1]))
if redis.call('HGET', K.p, 'state') ~= 'PENDING' then return {'completed', record(K)} end
if ARGV[4] == 'cb' then
  redis.call('HSET', K.cb, ARGV[5], ARGV[6])
else
  redis.call('HSET', K.sub, ARGV[5], ARGV[6])
end
return {'registered', record(K)}
