#!lua
-- get.lua — read a promise, applying its timeout first if it is due (which fires its callbacks).
--
-- KEYS[1..8]  the promise keys (see _lib.lua)
-- ARGV[1] now   ARGV[2] request id   ARGV[3] promise id
-- Returns {status, record fields}: ok | notfound.
-- Resend: a timeout applies once; a resend reads the same record.

local K = promise_keys(1)
if redis.call('EXISTS', K.p) == 0 then return {'notfound', {}} end
timeout_if_due(K, ARGV[3], clock(ARGV[1]))
return {'ok', record(K)}
