#!lua
-- heartbeat.lua — extend an execution lease, only for the holder of the current counter.
--
-- KEYS[1] vow:{T}:x:<id>   KEYS[2] vow:{T}:leases
-- ARGV[1] now   ARGV[2] request id   ARGV[3] promise id   ARGV[4] fencing counter
-- ARGV[5] lease, ms
-- Returns 1 when extended, 0 when the lease was lost (a newer claim fenced this one).
-- Resend: extending twice is the same extension (idempotent by nature).

local X, LEASES = KEYS[1], KEYS[2]
local now = clock(ARGV[1])
if not holds(X, ARGV[4]) then return 0 end
local until_ms = ms(now + tonumber(ARGV[5]))
redis.call('HSET', X, 'l', until_ms)
redis.call('ZADD', LEASES, until_ms, ARGV[3])
return 1
