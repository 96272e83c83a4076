#!lua
-- release.lua — let go of an execution lease without committing (shutdown, or a function this
-- worker does not have), so another worker can claim it at once. Fenced by the counter.
--
-- KEYS[1] vow:{T}:x:<id>
-- ARGV[1] fencing counter
-- Returns 1 when released, 0 when the lease was no longer held with this counter.

local x = redis.call('HMGET', KEYS[1], 'c', 'o')
if x[1] ~= ARGV[1] or not x[2] then return 0 end
redis.call('HDEL', KEYS[1], 'o', 'l', 'w')
return 1
