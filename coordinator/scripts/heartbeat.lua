#!lua
-- heartbeat.lua — extend an execution lease, only for the holder of the current counter.
--
-- KEYS[1] vow:{T}:x:<id>
-- ARGV[1] now, epoch ms ('' = server TIME)   ARGV[2] fencing counter   ARGV[3] lease, ms
-- Returns 1 when extended, 0 when the lease was lost (a newer claim fenced this one).

local X = KEYS[1]
local now = clock(ARGV[1])
if redis.call('HGET', X, 'c') ~= ARGV[2] or not redis.call('HGET', X, 'o') then return 0 end
redis.call('HSET', X, 'l', ms(now + tonumber(ARGV[3])))
return 1
