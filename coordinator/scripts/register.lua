#!lua
-- register.lua — register a callback or a subscription on a promise, unless it is completed
-- (then nothing is written and the completed record is returned, so the caller proceeds).
--
-- KEYS[1..8]  the promise keys (see _lib.lua)
-- ARGV[1] now, epoch ms ('' = server TIME)   ARGV[2] promise id
-- ARGV[3] kind: cb | sub
-- ARGV[4] field: root id (cb) or listener id (sub)
-- ARGV[5] value: "<task stream key>\n<task message>" (cb) or the inbox key (sub)
-- Returns {status, record fields}: registered | completed | notfound.

local K = promise_keys(1)
if redis.call('EXISTS', K.p) == 0 then return {'notfound', {}} end
timeout_if_due(K, ARGV[2], clock(ARGV[1]))
if redis.call('HGET', K.p, 'state') ~= 'PENDING' then return {'completed', record(K)} end
if ARGV[3] == 'cb' then
  redis.call('HSET', K.cb, ARGV[4], ARGV[5])
else
  redis.call('HSET', K.sub, ARGV[4], ARGV[5])
end
return {'registered', record(K)}
